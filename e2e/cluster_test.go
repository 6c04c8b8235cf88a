package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
	"github.com/warrentunnel/warren/internal/store/storetest"
)

// Cluster mode (issue 15) the way an operator runs it: three `warren
// serve` nodes on one PostgreSQL store, Debian's HAProxy in front in TCP
// round-robin mode with TLS passthrough and health checks, the admin
// commands and the local proxies going through HAProxy (or, where a test
// needs a side on a given node, straight to that node).

const clusterSize = 3

// clusterNode is one `warren serve` of a cluster.
type clusterNode struct {
	*service
	id      string
	metrics string // --metrics-listen: /metrics and /readyz
}

// cluster is three nodes on one fresh PostgreSQL database behind HAProxy.
type cluster struct {
	nodes []*clusterNode
	// lb is the clients' view of the cluster: admin commands and local
	// proxies reach it through HAProxy, with node 1's credentials and CA.
	lb      *service
	haproxy *proc
	stats   string // HAProxy's stats socket
}

// startCluster starts the nodes one after the other (node 1 creates the
// store's shared material), waits until each is ready, and puts HAProxy in
// front of them.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	began := time.Now()
	store := storetest.PostgresDatabase(t)
	c := &cluster{}
	for i := range clusterSize {
		n := &clusterNode{id: fmt.Sprintf("n%d", i+1), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		// No API rate limit: the tests open tunnels fast, and they are about
		// the data path.
		flags := []string{"--default-account-bandwidth", "0", "--api-rate", "0", "--store", store,
			"--metrics-listen", n.metrics, "--log-format", "json",
			"--node-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--node-id", n.id}
		n.service = &service{dir: t.TempDir(), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), args: flags, name: "warren serve " + n.id}
		n.env = clientEnv(n.dir, n.addr)
		n.start(t)
		n.waitReady(t)
		c.nodes = append(c.nodes, n)
	}
	// The HTTPS CA comes from the store: every node's ca.pem is the same.
	ca, err := os.ReadFile(filepath.Join(c.nodes[0].dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes[1:] {
		if other, err := os.ReadFile(filepath.Join(n.dir, "ca.pem")); err != nil || !bytes.Equal(other, ca) {
			t.Fatalf("%s's ca.pem differs from n1's (%v)", n.id, err)
		}
	}
	c.startHAProxy(t)
	t.Logf("3 nodes and HAProxy up in %v", time.Since(began).Round(time.Millisecond))
	return c
}

// start runs the node again on its port, data directory and flags (after
// kill) and waits until it is ready.
func (n *clusterNode) restart(t *testing.T) {
	t.Helper()
	n.start(t)
	n.waitReady(t)
}

func (n *clusterNode) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, 20*time.Second, n.id+"'s /readyz", func() bool {
		resp, err := http.Get("http://" + n.metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// kill ends the node with SIGKILL.
func (n *clusterNode) kill() { n.p.kill() }

// peers is the number of local proxies connected to the node, from its
// /metrics.
func (n *clusterNode) peers(t *testing.T) int {
	t.Helper()
	return int(max(0, value(scrape(t, n.metrics), "warren_relay_peers")))
}

// direct is the clients' view of node i alone, without HAProxy.
func (c *cluster) direct(i int) *service {
	dir := c.lb.dir
	return &service{dir: dir, addr: c.nodes[i].addr, env: clientEnv(dir, c.nodes[i].addr)}
}

func haproxyBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	t.Fatal("haproxy is not installed (bash .ci/run installs Debian's)")
	return ""
}

// haproxyConfig is HAProxy as an operator would put it in front of the
// nodes: TCP mode (TLS passes through to the nodes), round robin, a health
// check of each node's /readyz every 500 ms that takes a node out after
// three failures (a dead node's refused connections fail at once; a slow
// answer has 3 s: /readyz asks the store, slow on a loaded machine), and
// a connection refused by a dead node retried on another at once.
const haproxyConfig = `global
	stats socket %s level admin
	maxconn 4000

defaults
	mode tcp
	timeout connect 1s
	timeout client 10m
	timeout server 10m
	timeout check 3s
	retries 2
	option redispatch 1

frontend warren
	bind %s
	default_backend nodes

backend nodes
	balance roundrobin
	option httpchk GET /readyz
`

func (c *cluster) startHAProxy(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	c.stats = filepath.Join(dir, "stats.sock")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var cfg strings.Builder
	fmt.Fprintf(&cfg, haproxyConfig, c.stats, addr)
	for _, n := range c.nodes {
		_, mport, _ := net.SplitHostPort(n.metrics)
		fmt.Fprintf(&cfg, "\tserver %s %s check port %s inter 500ms fall 3 rise 1\n", n.id, n.addr, mport)
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.haproxy = start(t, "haproxy", nil, haproxyBinary(t), "-f", path, "-db")
	waitFor(t, 20*time.Second, "HAProxy to see every node up", func() bool {
		if c.haproxy.exited() {
			t.Fatalf("haproxy exited: %v\n%s", c.haproxy.err, c.haproxy.output())
		}
		st, err := c.serverStates()
		if err != nil {
			return false
		}
		for _, n := range c.nodes {
			if st[n.id].status != "UP" {
				return false
			}
		}
		return true
	})
	dir1 := c.nodes[0].dir
	c.lb = &service{dir: dir1, addr: addr, env: clientEnv(dir1, addr)}
}

// serverState is a node as HAProxy's `show stat` reports it.
type serverState struct {
	status   string // UP, DOWN, ...
	sessions string // connections sent to it so far (stot)
}

// serverStates asks HAProxy's stats socket for its view of the nodes.
func (c *cluster) serverStates() (map[string]serverState, error) {
	conn, err := net.DialTimeout("unix", c.stats, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(b), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("show stat: %q (%v)", b, err)
	}
	col := func(name string) int { return slices.Index(rows[0], name) }
	px, sv, status, stot := col("pxname"), col("svname"), col("status"), col("stot")
	if px < 0 || sv < 0 || status < 0 || stot < 0 {
		return nil, fmt.Errorf("show stat: header %q", rows[0])
	}
	states := map[string]serverState{}
	for _, row := range rows[1:] {
		if len(row) > max(px, sv, status, stot) && row[px] == "nodes" {
			states[row[sv]] = serverState{status: row[status], sessions: row[stot]}
		}
	}
	return states, nil
}

// holders says which node each tunnel side last connected to, from the
// nodes' "relay: peer connected" log lines: tunnel id, then mode, to node
// id.
func (c *cluster) holders(t *testing.T) map[string]map[string]string {
	t.Helper()
	type seen struct {
		node string
		at   time.Time
	}
	last := map[[2]string]seen{}
	for _, n := range c.nodes {
		for _, l := range logLines(t, n.p.output()) {
			if l["msg"] != "relay: peer connected" {
				continue
			}
			id, _ := l["tunnel"].(string)
			mode, _ := l["mode"].(string)
			ts, _ := l["time"].(string)
			at, err := time.Parse(time.RFC3339Nano, ts)
			if id == "" || mode == "" || err != nil {
				t.Fatalf("%s logged a peer without tunnel, mode or time: %v", n.id, l)
			}
			if k := [2]string{id, mode}; at.After(last[k].at) {
				last[k] = seen{n.id, at}
			}
		}
	}
	out := map[string]map[string]string{}
	for k, s := range last {
		if out[k[0]] == nil {
			out[k[0]] = map[string]string{}
		}
		out[k[0]][k[1]] = s.node
	}
	return out
}

// clusterDevice is the device service of the cluster tests. A client's
// first byte says what it wants: 'E' echoes until the client half-closes;
// 'D' downloads the pattern at about 1.3 MB/s (32 KiB every 25 ms) until
// the client closes, a transfer that flows without taking the machine's
// CPUs from the rest of the test.
func clusterDevice(t *testing.T) string {
	t.Helper()
	return tcpDevice(t, func(c *net.TCPConn) {
		var cmd [1]byte
		if _, err := io.ReadFull(c, cmd[:]); err != nil {
			return
		}
		switch cmd[0] {
		case 'E':
			io.Copy(c, c)
			c.CloseWrite()
		case 'D':
			var p patternReader
			buf := make([]byte, 32<<10)
			for {
				p.Read(buf)
				if _, err := c.Write(buf); err != nil {
					return
				}
				time.Sleep(25 * time.Millisecond)
			}
		}
	})
}

// shaEcho sends size random bytes through a new connection to port to the
// clusterDevice's echo and checks that the same bytes (by SHA-256) come
// back, all within the given time.
func shaEcho(port int, size int64, within time.Duration) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), within)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(within))
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte{'E'})
		if err == nil {
			_, err = io.CopyN(io.MultiWriter(c, sent), rand.Reader, size)
		}
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("send: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("receive after %d bytes: %w", n, err)
	}
	if n != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		return fmt.Errorf("echo returned %d bytes, sha256 %x; sent %d bytes, sha256 %x", n, got.Sum(nil), size, sent.Sum(nil))
	}
	return nil
}

// warrenJSON runs an admin command against s and decodes its JSON output;
// unlike service.warren it may run on any goroutine.
func warrenJSON(s *service, out any, args ...string) error {
	stdout, stderr, err := s.run(bin.warren, args...)
	if err != nil {
		return fmt.Errorf("warren %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			return fmt.Errorf("warren %s: output is not JSON: %v\n%s", args[0], err, stdout)
		}
	}
	return nil
}

// api is an aws-sdk-go tunnel client of the admin account through
// HAProxy that opens a new connection for every request, so that round
// robin spreads its requests over the nodes.
func (c *cluster) api(t *testing.T) *iotsecuretunneling.IoTSecureTunneling {
	t.Helper()
	ca, err := os.Open(filepath.Join(c.lb.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	sess, err := session.NewSessionWithOptions(session.Options{
		Config: aws.Config{
			Region:      aws.String("us-east-1"),
			Endpoint:    aws.String("https://" + c.lb.addr),
			Credentials: credentials.NewSharedCredentials(filepath.Join(c.lb.dir, "credentials"), "default"),
			HTTPClient:  &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		},
		CustomCABundle: ca,
	})
	if err != nil {
		t.Fatal(err)
	}
	return iotsecuretunneling.New(sess)
}

// describe is describe-tunnel through s.
func describe(t *testing.T, s *service, id string) describeOut {
	t.Helper()
	var d describeOut
	s.warren(t, &d, "describe-tunnel", "--tunnel-id", id)
	return d
}

// The harness's own check, which holds with or without links between the
// nodes: three nodes on one store come up behind HAProxy, which sees them
// all up; admin commands through HAProxy (each a new connection, so spread
// over the nodes) and straight to each node see one set of things and
// tunnels; a tunnel whose two local proxies are on one node carries a
// SHA-checked transfer, and any node describes it connected.
func TestClusterNodesShareOneStore(t *testing.T) {
	c := startCluster(t)
	dev := clusterDevice(t)
	for i := range clusterSize {
		c.lb.warren(t, nil, "create-thing", "--thing-name", fmt.Sprintf("shared%d", i))
	}
	for i := range c.nodes {
		var things struct {
			Things []struct {
				ThingName string `json:"thingName"`
			} `json:"things"`
		}
		c.direct(i).warren(t, &things, "list-things")
		if len(things.Things) != clusterSize {
			t.Fatalf("%s lists %d things, want %d", c.nodes[i].id, len(things.Things), clusterSize)
		}
	}
	st, err := c.serverStates()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("HAProxy's connections to the nodes so far: n1 %s, n2 %s, n3 %s", st["n1"].sessions, st["n2"].sessions, st["n3"].sessions)
	for _, n := range c.nodes {
		if st[n.id].sessions == "0" {
			t.Errorf("HAProxy sent no connection to %s", n.id)
		}
	}

	tun := c.lb.openTunnel(t, "samenode", "BULK")
	n3 := c.direct(2)
	port, _, _ := c.lb.pairVia(t, tun, "BULK", dev, n3.addr, n3.addr)
	if err := shaEcho(port, 1<<20, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if h := c.holders(t)[tun.TunnelID]; h["source"] != "n3" || h["destination"] != "n3" {
		t.Fatalf("the tunnel's sides are on %v, want both on n3", h)
	}
	if got := c.nodes[2].peers(t); got != 2 {
		t.Fatalf("n3 counts %d peers, want 2", got)
	}
	d := describe(t, c.direct(0), tun.TunnelID)
	if d.Tunnel.SourceConnectionState.Status != "CONNECTED" || d.Tunnel.DestinationConnectionState.Status != "CONNECTED" {
		t.Fatalf("n1 describes the tunnel on n3 as %+v", d.Tunnel)
	}
}
