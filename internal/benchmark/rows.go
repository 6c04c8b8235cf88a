package benchmark

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/warrentunnel/warren/internal/demo"
)

// The steps of a run, in order; each returns its rows of the table.

// bulkRows: throughput with 1 and 16 connections (median of the samples),
// and the CPU the path's processes spent per GB moved.
func (b *bench) bulkRows(ctx context.Context) ([]Row, error) {
	var rows, cpuRows []Row
	for _, conns := range []int{1, 16} {
		var mbps [3][]float64
		var cpu, moved [3]float64
		for s := range b.sz.samples {
			// The paths take turns in each sample, so a noisy moment of
			// the machine does not land on one path only.
			for i, p := range b.paths() {
				c0, err := p.cpu()
				if err != nil {
					return nil, err
				}
				d, err := bulk(ctx, p.bulk, conns, b.sz.bulkBytes)
				if err != nil {
					return nil, fmt.Errorf("bulk %d connections through %s: %w", conns, p.name, err)
				}
				c1, err := p.cpu()
				if err != nil {
					return nil, err
				}
				n := float64(b.sz.bulkBytes / int64(conns) * int64(conns))
				mbps[i] = append(mbps[i], n/1e6/d.Seconds())
				cpu[i] += c1 - c0
				moved[i] += n
			}
			b.progress("bulk, %d connection(s), sample %d/%d: direct %.0f, floor %.0f, warren %.0f MB/s",
				conns, s+1, b.sz.samples, last(mbps[0]), last(mbps[1]), last(mbps[2]))
		}
		name := fmt.Sprintf("bulk throughput, %d conn", conns)
		rows = append(rows, newRow(name, "MB/s", median(mbps[0]), median(mbps[1]), median(mbps[2]), true, false))
		cpuRows = append(cpuRows, newRow(fmt.Sprintf("CPU per GB, %d conn (3 procs)", conns), "CPU-s/GB",
			-1, cpu[1]/(moved[1]/1e9), cpu[2]/(moved[2]/1e9), false, false))
	}
	return append(rows, cpuRows...), nil
}

func last(xs []float64) float64 { return xs[len(xs)-1] }

// rssRows: each process's resident memory after the bulk runs, the floor's
// hop beside the Warren process in the same place.
func (b *bench) rssRows(context.Context) ([]Row, error) {
	var rows []Row
	for i, where := range []string{"source side", "relay", "destination side"} {
		f, err := rssKiB(b.floor.procs[i].pid())
		if err != nil {
			return nil, err
		}
		w, err := rssKiB(b.warren.procs[i].pid())
		if err != nil {
			return nil, err
		}
		r := newRow("RSS after bulk, "+where, "MiB", -1, float64(f)/1024, float64(w)/1024, false, false)
		r.Note = b.floor.procs[i].name + " / " + b.warren.procs[i].name
		rows = append(rows, r)
	}
	return rows, nil
}

// latencyRows: 64-byte round trips on a kept-alive connection, connection
// setup, and round trips while bulk connections fill the same tunnel.
func (b *bench) latencyRows(ctx context.Context) ([]Row, error) {
	type measure struct {
		name string
		run  func(p path) ([]time.Duration, error)
	}
	measures := []measure{
		{"64 B round trip", func(p path) ([]time.Duration, error) { return roundTrips(ctx, p.echo, b.sz.roundTrips, b.sz.tripTime) }},
		{"connect to first byte", func(p path) ([]time.Duration, error) { return connects(ctx, p.echo, b.sz.connects) }},
		{fmt.Sprintf("64 B round trip, %d bulk conns", b.sz.loaders), func(p path) ([]time.Duration, error) {
			return underLoad(ctx, p.bulk, p.echo, b.sz.loaders, b.sz.loadedTrips, b.sz.tripTime)
		}},
	}
	var rows []Row
	for _, m := range measures {
		var p50, p99 [3]float64
		for i, p := range b.paths() {
			ds, err := m.run(p)
			if err != nil {
				return nil, fmt.Errorf("%s through %s: %w", m.name, p.name, err)
			}
			p50[i], p99[i] = micros(percentile(ds, 50)), micros(percentile(ds, 99))
		}
		b.progress("%s p50: direct %.0f, floor %.0f, warren %.0f µs", m.name, p50[0], p50[1], p50[2])
		rows = append(rows,
			newRow(m.name+", p50", "µs", p50[0], p50[1], p50[2], false, true),
			newRow(m.name+", p99", "µs", p99[0], p99[1], p99[2], false, true))
	}
	return rows, nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// simultaneousRows: n connections open at once through each path, twice;
// after each run through Warren its processes' descriptors and goroutines
// must come back to what they were before the first.
func (b *bench) simultaneousRows(ctx context.Context) ([]Row, error) {
	n := b.sz.simultaneous
	start, err := b.counts(ctx)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for run := 1; run <= 2; run++ {
		var ms [3]float64
		var oks []string
		allOK := true
		for i, p := range b.paths() {
			ok, d, err := simultaneous(ctx, p.echo, n)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			ms[i] = float64(d) / float64(time.Millisecond)
			oks = append(oks, fmt.Sprint(ok))
			if ok != n {
				allOK = false
				b.progress("%d simultaneous through %s: %d of %d succeeded; first error: %v", n, p.name, ok, n, err)
			}
		}
		back, now, err := b.settle(ctx, start)
		if err != nil {
			return nil, err
		}
		r := newRow(fmt.Sprintf("%d simultaneous echoes, run %d", n, run), "ms", ms[0], ms[1], ms[2], false, true)
		r.OK = allOK && back
		state := "back to start"
		if !back {
			state = "NOT back, start " + start.String()
		}
		r.Note = fmt.Sprintf("ok %s of %d; warren fds/goroutines (src,serve,dst) %s %s", strings.Join(oks, "/"), n, now, state)
		b.progress("%s: %s", r.Name, r.Note)
		rows = append(rows, r)
	}
	return rows, nil
}

// counts of the Warren processes' descriptors and goroutines.
type counts struct{ fds, goroutines []int }

func (c counts) String() string {
	f := func(xs []int) string {
		var s []string
		for _, x := range xs {
			if x < 0 {
				s = append(s, "?")
			} else {
				s = append(s, fmt.Sprint(x))
			}
		}
		return strings.Join(s, ",")
	}
	return f(c.fds) + " / " + f(c.goroutines)
}

// atMost reports whether every count is at most start's.
func (c counts) atMost(start counts) bool {
	for i := range c.fds {
		if c.fds[i] > start.fds[i] || c.goroutines[i] > start.goroutines[i] {
			return false
		}
	}
	return true
}

func (b *bench) counts(ctx context.Context) (counts, error) {
	var c counts
	for _, p := range b.warren.procs {
		fds, err := fdCount(p.pid())
		if err != nil {
			return c, err
		}
		g, err := p.goroutines(ctx)
		if err != nil {
			return c, err
		}
		c.fds = append(c.fds, fds)
		c.goroutines = append(c.goroutines, g)
	}
	return c, nil
}

// settle polls the counts for up to 5 s until they are back to start.
func (b *bench) settle(ctx context.Context, start counts) (bool, counts, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := b.counts(ctx)
		if err != nil || now.atMost(start) || time.Now().After(deadline) {
			return err == nil && now.atMost(start), now, err
		}
		select {
		case <-ctx.Done():
			return false, now, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pageRows: the demo device's page and its resources, with 1 and 16
// connections (median of the samples).
func (b *bench) pageRows(ctx context.Context) ([]Row, error) {
	var rows []Row
	for _, conns := range []int{1, 16} {
		var ms [3][]float64
		for range b.sz.samples {
			for i, p := range b.paths() {
				d, err := demo.LoadPage(ctx, "http://"+p.page, conns)
				if err != nil {
					return nil, fmt.Errorf("page load through %s: %w", p.name, err)
				}
				ms[i] = append(ms[i], float64(d)/float64(time.Millisecond))
			}
		}
		r := newRow(fmt.Sprintf("page + %d resources, %d conn", b.sz.resources, conns), "ms",
			median(ms[0]), median(ms[1]), median(ms[2]), false, true)
		b.progress("%s: direct %.1f, floor %.1f, warren %.1f ms", r.Name, *r.Direct, *r.Floor, *r.Warren)
		rows = append(rows, r)
	}
	return rows, nil
}

// idleRows: what idle tunnels cost the server. It runs last: the tunnels
// stay open until the server stops.
func (b *bench) idleRows(ctx context.Context) ([]Row, error) {
	n := b.sz.idleTunnels
	b.progress("opening %d idle tunnels", n)
	cost, err := idleTunnels(ctx, b.w, n, b.progress)
	if err != nil {
		return nil, fmt.Errorf("idle tunnels: %w", err)
	}
	open := newRow(fmt.Sprintf("server RSS per open tunnel (%d, no peers)", n), "KiB", -1, -1, cost.openKiB, false, false)
	conn := newRow(fmt.Sprintf("server RSS per idle connected tunnel (%d)", n), "KiB", -1, -1, cost.connectedKiB, false, false)
	conn.Note = "both peers connected by bare WebSocket clients"
	b.progress("%s: %.1f KiB; %s: %.1f KiB", open.Name, cost.openKiB, conn.Name, cost.connectedKiB)
	return []Row{open, conn}, nil
}
