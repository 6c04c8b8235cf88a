// Package benchmark is `warren bench`: it measures the data path as users
// run it and prints one table in which every figure was measured in the
// same run three ways: direct (loopback TCP to the target, no tunnel),
// through the floor (a minimal chain of three TLS-forwarding processes,
// see hop.go), and through Warren (`warren serve` and a destination and a
// source local proxy, each a process, with the tunnel opened through the
// API). The nodes rows put Warren's figures for a tunnel whose peers are
// on the same node beside one whose peers are on two nodes that share a
// scratch PostgreSQL database (see nodes.go).
//
// The processes are this binary re-executed (`warren serve`, `warren
// localproxy`, `warren bench-hop`), so nothing else must be built; the
// targets (a sink, an echo server and the demo's device web server) run in
// the bench's own process. It owns the measurements and their processes,
// not what they measure: the in-process `go test -bench` benchmarks live
// in the top-level bench package.
package benchmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/warrentunnel/warren/internal/demo"
)

// Config of a bench run.
type Config struct {
	Exe        string // the warren binary to re-execute
	LocalProxy string // another local proxy binary (e.g. the official one); "": `Exe localproxy`
	Quick      bool   // a short run for CI: small sizes, few samples, every row
	Samples    int    // repetitions of each throughput and page figure (0: 3, or 1 with Quick)
	JSONPath   string // also write the table here as JSON
	// Postgres is the PostgreSQL server on which the nodes rows create
	// (and drop) a database of their own; "": $WARREN_TEST_POSTGRES, or
	// DefaultPostgres. Only a server named here must answer: without one
	// the rows are left out, unless Only asks for them.
	Postgres string
	// Only names the groups of rows to measure (bulk, rss, latency,
	// simultaneous, page, nodes, idle); empty measures all.
	Only     []string
	Out      io.Writer
	Progress io.Writer
}

// sizes of one run's workloads.
type sizes struct {
	samples      int
	bulkBytes    int64 // per throughput sample, over all connections
	roundTrips   int
	tripTime     time.Duration // at most this long per round-trip figure
	connects     int
	loadedTrips  int // round trips under bulk load
	loaders      int // bulk connections of the load
	simultaneous int
	idleTunnels  int
	resources    int // on the device's page
}

func sizesFor(cfg Config) sizes {
	s := sizes{samples: 3, bulkBytes: 1 << 30, roundTrips: 5000, tripTime: 5 * time.Second, connects: 1000, loadedTrips: 2000,
		loaders: 8, simultaneous: 1000, idleTunnels: 1000, resources: 100}
	if cfg.Quick {
		s = sizes{samples: 1, bulkBytes: 32 << 20, roundTrips: 300, tripTime: time.Second, connects: 100, loadedTrips: 200,
			loaders: 8, simultaneous: 100, idleTunnels: 100, resources: 100}
	}
	if cfg.Samples > 0 {
		s.samples = cfg.Samples
	}
	return s
}

// path is one way from the bench's client to its targets.
type path struct {
	name             string
	bulk, echo, page string   // addresses that reach the sink, the echo server and the device
	procs            []*child // the processes that carry it, source side first
}

// cpu is the CPU time the path's processes have used.
func (p path) cpu() (float64, error) {
	var sum float64
	for _, c := range p.procs {
		s, err := cpuSeconds(c.pid())
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}

// bench is one run.
type bench struct {
	cfg    Config
	dir    string // the run's temporary directory
	sz     sizes
	direct path
	floor  path
	warren path
	w      *warrenPath
	f      *floorPath
}

func (b *bench) paths() []path { return []path{b.direct, b.floor, b.warren} }

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.cfg.Progress, "bench: "+format+"\n", args...)
}

// Run measures, prints the table to cfg.Out, and stops every process and
// goroutine it started before it returns.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Exe == "" {
		return errors.New("benchmark: Config.Exe is required")
	}
	b := &bench{cfg: cfg, sz: sizesFor(cfg)}
	start := time.Now()
	dir, err := os.MkdirTemp("", "warren-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b.dir = dir

	sinkT, err := startTarget(sink)
	if err != nil {
		return err
	}
	defer sinkT.close()
	echoT, err := startTarget(echo)
	if err != nil {
		return err
	}
	defer echoT.close()
	dev, err := demo.StartDevice(b.sz.resources)
	if err != nil {
		return err
	}
	defer dev.Close()
	b.direct = path{name: "direct", bulk: sinkT.addr(), echo: echoT.addr(), page: dev.Addr()}

	b.progress("starting the floor chain (3 processes)")
	certFile, keyFile, err := writeChainCert(dir)
	if err != nil {
		return fmt.Errorf("floor certificate: %w", err)
	}
	b.f, err = startFloor(ctx, cfg.Exe, certFile, keyFile, []string{sinkT.addr(), echoT.addr(), dev.Addr()})
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	defer b.f.stop()
	b.floor = path{name: "floor", bulk: b.f.sources[0], echo: b.f.sources[1], page: b.f.sources[2], procs: b.f.procs()}

	b.progress("starting warren serve and both local proxies")
	b.w, err = startWarren(ctx, cfg.Exe, cfg.LocalProxy, dir,
		map[string]string{"BULK": sinkT.addr(), "ECHO": echoT.addr(), "HTTP": dev.Addr()},
		max(128, 2*b.sz.simultaneous))
	if err != nil {
		return fmt.Errorf("warren: %w", err)
	}
	defer b.w.stop()
	b.warren = path{name: "warren", bulk: b.w.sources["BULK"], echo: b.w.sources["ECHO"], page: b.w.sources["HTTP"], procs: b.w.procs()}

	t := &Table{Quick: cfg.Quick}
	for _, step := range []struct {
		group string
		rows  func(context.Context) ([]Row, error)
	}{
		{"bulk", b.bulkRows}, {"rss", b.rssRows}, {"latency", b.latencyRows},
		{"simultaneous", b.simultaneousRows}, {"page", b.pageRows}, {"nodes", b.nodeRows}, {"idle", b.idleRows},
	} {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, step.group) {
			continue
		}
		rows, err := step.rows(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		if err != nil {
			return err
		}
		t.Rows = append(t.Rows, rows...)
		for _, c := range append(b.f.procs(), b.w.procs()...) {
			if c.exited() {
				return c.failure()
			}
		}
	}
	b.progress("done in %v", time.Since(start).Round(100*time.Millisecond))
	if err := t.Write(cfg.Out); err != nil {
		return err
	}
	if cfg.JSONPath != "" {
		if err := t.WriteJSON(cfg.JSONPath); err != nil {
			return err
		}
	}
	for _, r := range t.Rows {
		if !r.OK {
			b.progress("CHECK FAILED: %s: %s", r.Name, r.Note)
		}
	}
	return nil
}
