package benchmark

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/warrentunnel/warren/internal/server"
)

// DefaultPostgres is the PostgreSQL server of the nodes rows when neither
// Config.Postgres nor $WARREN_TEST_POSTGRES names one: the one the store's
// tests use.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// nodesPath is two `warren serve` nodes on one scratch PostgreSQL database
// and two tunnels through them: "same node" has both local proxies on node
// 1, "cross node" its source on node 1 and its destination on node 2, so
// its frames cross the link between the nodes.
type nodesPath struct {
	db          *scratchDB
	nodes       []*child
	same, cross *proxyPair
}

// stop ends the local proxies, then the nodes; the database stays.
func (n *nodesPath) stop() {
	for _, p := range []*proxyPair{n.same, n.cross} {
		if p != nil {
			p.stop()
		}
	}
	for i := len(n.nodes) - 1; i >= 0; i-- {
		n.nodes[i].stop()
	}
}

// procs are the processes of both tunnels.
func (n *nodesPath) procs() []*child {
	var cs []*child
	for _, p := range []*proxyPair{n.same, n.cross} {
		if p != nil {
			cs = append(cs, p.src, p.dst)
		}
	}
	return append(cs, n.nodes...)
}

// startNodes starts node 1 and node 2 on db, opens the two tunnels through
// node 1's API and starts their local proxies.
func startNodes(ctx context.Context, exe, localProxy, dir string, db *scratchDB, targets map[string]string) (_ *nodesPath, err error) {
	n := &nodesPath{db: db}
	defer func() {
		if err != nil {
			n.stop()
		}
	}()
	// Node 1 first: it creates what the nodes share (the admin account,
	// the CAs, the nextToken key) in the store, and node 2 finds it there.
	var at []proxyTarget
	for i := 1; i <= 2; i++ {
		dataDir := filepath.Join(dir, fmt.Sprintf("node%d", i))
		c, endpoint, err := startServe(ctx, fmt.Sprintf("warren serve (node %d)", i), exe, dataDir,
			"--store", n.db.url, "--node-listen", "127.0.0.1:0", "--node-id", fmt.Sprintf("bench-node-%d", i))
		if err != nil {
			return n, err
		}
		n.nodes = append(n.nodes, c)
		at = append(at, proxyTarget{endpoint: endpoint, caDir: filepath.Join(dataDir, server.CADir)})
	}
	api := &warrenPath{endpoint: at[0].endpoint, dataDir: filepath.Join(dir, "node1")}
	if err := api.connectAPI(ctx); err != nil {
		return n, err
	}
	settings, err := writeProxySettings(dir, 128)
	if err != nil {
		return n, err
	}
	services := []string{"BULK", "ECHO"}
	tun, err := api.openTunnel(ctx, services)
	if err != nil {
		return n, err
	}
	if n.same, err = startPair(ctx, exe, localProxy, settings, api.tc, tun, targets, at[0], at[0]); err != nil {
		return n, fmt.Errorf("same-node tunnel: %w", err)
	}
	if tun, err = api.openTunnel(ctx, services); err != nil {
		return n, err
	}
	if n.cross, err = startPair(ctx, exe, localProxy, settings, api.tc, tun, targets, at[1], at[0]); err != nil {
		return n, fmt.Errorf("cross-node tunnel: %w", err)
	}
	return n, nil
}

// scratchDB is a database of the bench's own on a PostgreSQL server,
// dropped when the bench ends, as the store's tests do.
type scratchDB struct {
	server *sql.DB // connected to the server's database named in the bench's URL
	name   string
	url    string // the scratch database's URL
}

func createScratchDB(ctx context.Context, serverURL string) (*scratchDB, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL URL does not parse: %w", err)
	}
	db, err := sql.Open("pgx", serverURL)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL at %s: %w", u.Redacted(), err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(cctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("PostgreSQL at %s does not answer (--postgres names another): %w: %w", u.Redacted(), errNoPostgres, err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := "warren_bench_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(cctx, `CREATE DATABASE `+name); err != nil {
		db.Close()
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return &scratchDB{server: db, name: name, url: u.String()}, nil
}

// drop removes the database, cutting the connections of any node that is
// still there.
func (d *scratchDB) drop() error {
	defer d.server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.server.ExecContext(ctx, `DROP DATABASE IF EXISTS `+d.name+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	return nil
}

// errNoPostgres is a PostgreSQL server that does not answer.
var errNoPostgres = errors.New("no PostgreSQL")

// postgresURL is the server the nodes rows use.
func postgresURL(cfg Config) string {
	switch {
	case cfg.Postgres != "":
		return cfg.Postgres
	case os.Getenv("WARREN_TEST_POSTGRES") != "":
		return os.Getenv("WARREN_TEST_POSTGRES")
	}
	return DefaultPostgres
}

// nodeRows: two nodes on one scratch PostgreSQL database, a tunnel with
// both peers on node 1 beside one whose destination is on node 2: bulk
// throughput over one connection (median of the samples), the CPU its
// processes spent per GB, and 64-byte round trips, with direct and the
// floor measured in the same run. Without a
// PostgreSQL server the rows are left out, unless the run asked for them
// (--postgres, or --only nodes).
func (b *bench) nodeRows(ctx context.Context) (_ []Row, err error) {
	db, err := createScratchDB(ctx, postgresURL(b.cfg))
	if errors.Is(err, errNoPostgres) && b.cfg.Postgres == "" && !slices.Contains(b.cfg.Only, "nodes") {
		b.progress("no nodes rows: %v", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	defer func() {
		if derr := db.drop(); derr != nil {
			err = errors.Join(err, fmt.Errorf("nodes: %w", derr))
		}
	}()
	b.progress("starting 2 warren nodes on PostgreSQL (database %s), 2 tunnels and their local proxies", db.name)
	dir := filepath.Join(b.dir, "nodes")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	n, err := startNodes(ctx, b.cfg.Exe, b.cfg.LocalProxy, dir, db,
		map[string]string{"BULK": b.direct.bulk, "ECHO": b.direct.echo})
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	defer n.stop()

	// The processes a tunnel's bytes pass through: node 2 only for the
	// crossing tunnel.
	paths := []path{b.direct, b.floor,
		{name: "same node", bulk: n.same.sources["BULK"], echo: n.same.sources["ECHO"],
			procs: []*child{n.same.src, n.nodes[0], n.same.dst}},
		{name: "cross node", bulk: n.cross.sources["BULK"], echo: n.cross.sources["ECHO"],
			procs: []*child{n.cross.src, n.nodes[0], n.nodes[1], n.cross.dst}}}
	mbps := make([][]float64, len(paths))
	cpu := make([]float64, len(paths))
	for s := range b.sz.samples {
		var figs []string
		for i, p := range paths {
			c0, err := p.cpu()
			if err != nil {
				return nil, err
			}
			d, err := bulk(ctx, p.bulk, 1, b.sz.bulkBytes)
			if err != nil {
				return nil, fmt.Errorf("bulk through %s: %w", p.name, err)
			}
			c1, err := p.cpu()
			if err != nil {
				return nil, err
			}
			cpu[i] += c1 - c0
			mbps[i] = append(mbps[i], float64(b.sz.bulkBytes)/1e6/d.Seconds())
			figs = append(figs, fmt.Sprintf("%s %.0f", p.name, last(mbps[i])))
		}
		b.progress("bulk, 1 connection, sample %d/%d: %s MB/s", s+1, b.sz.samples, strings.Join(figs, ", "))
	}
	p50, p99 := make([]float64, len(paths)), make([]float64, len(paths))
	for i, p := range paths {
		ds, err := roundTrips(ctx, p.echo, b.sz.roundTrips, b.sz.tripTime)
		if err != nil {
			return nil, fmt.Errorf("64 B round trips through %s: %w", p.name, err)
		}
		p50[i], p99[i] = micros(percentile(ds, 50)), micros(percentile(ds, 99))
	}
	for _, c := range n.procs() {
		if c.exited() {
			return nil, c.failure()
		}
	}

	// Each row is one tunnel beside direct and the floor; the cross-node
	// row says what crossing the nodes' link costs against the same node.
	bulkRow := func(i int, name string) Row {
		return newRow("bulk throughput, 1 conn, "+name, "MB/s", median(mbps[0]), median(mbps[1]), median(mbps[i]), true, false)
	}
	// CPU per GB of the path's processes, over all samples.
	perGB := func(i int) float64 { return cpu[i] / (float64(b.sz.bulkBytes) * float64(b.sz.samples) / 1e9) }
	cpuRow := func(i int, name string) Row {
		return newRow(fmt.Sprintf("CPU per GB, 1 conn, %s (%d procs)", name, len(paths[i].procs)), "CPU-s/GB", -1, perGB(1), perGB(i), false, false)
	}
	tripRow := func(i int, name, pct string, figs []float64) Row {
		return newRow("64 B round trip, "+name+", "+pct, "µs", figs[0], figs[1], figs[i], false, true)
	}
	same := []Row{bulkRow(2, "same node"), cpuRow(2, "same node"), tripRow(2, "same node", "p50", p50), tripRow(2, "same node", "p99", p99)}
	for i := range same {
		same[i].Note = "2 nodes on PostgreSQL, both peers on node 1"
	}
	cross := []Row{bulkRow(3, "cross node"), cpuRow(3, "cross node"), tripRow(3, "cross node", "p50", p50), tripRow(3, "cross node", "p99", p99)}
	const where = "source on node 1, destination on node 2: "
	cross[0].Note = fmt.Sprintf(where+"%.0f%% of same node", 100*median(mbps[3])/median(mbps[2]))
	cross[1].Note = fmt.Sprintf(where+"%.2fx same node", perGB(3)/perGB(2))
	cross[2].Note = fmt.Sprintf(where+"%.2fx same node", p50[3]/p50[2])
	cross[3].Note = fmt.Sprintf(where+"%.2fx same node", p99[3]/p99[2])
	b.progress("same node / cross node: bulk %.0f / %.0f MB/s, %.2f / %.2f CPU-s/GB, round trip p50 %.0f / %.0f µs",
		median(mbps[2]), median(mbps[3]), perGB(2), perGB(3), p50[2], p50[3])
	var rows []Row
	for i := range same {
		rows = append(rows, same[i], cross[i])
	}
	return rows, nil
}
