package bandwidth

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/store/storetest"
)

// The division of an account's limit among the nodes that report it.
func TestAllocate(t *testing.T) {
	const L = 1_000_000
	busy := demand{rate: 500_000, saturated: true}
	idle := demand{}
	light := func(rate float64) demand { return demand{rate: rate} }
	for _, c := range []struct {
		name string
		ds   []demand
		want []int64
	}{
		{"alone and saturated", []demand{busy}, []int64{L}},
		{"alone and idle", []demand{idle}, []int64{L}},
		{"one saturated, one idle", []demand{busy, idle}, []int64{980_000, 20_000}},
		{"one idle, one saturated", []demand{idle, busy}, []int64{20_000, 980_000}},
		{"two saturated", []demand{busy, {rate: 100, saturated: true}}, []int64{500_000, 500_000}},
		{"three saturated", []demand{busy, busy, busy}, []int64{333_333, 333_333, 333_333}},
		// The light node gets what it sent and a tenth more; the heavy
		// one the rest.
		{"one light, one heavy", []demand{light(200_000), busy}, []int64{220_000, 780_000}},
		// A light node asking for more than an equal part gets that.
		{"light asks for more than half", []demand{light(700_000), busy}, []int64{500_000, 500_000}},
		// The headroom is at least a fiftieth of the limit.
		{"light, idle and two heavy", []demand{light(100_000), idle, busy, busy}, []int64{120_000, 20_000, 430_000, 430_000}},
		// Nobody held back: the rest is split equally.
		{"two light", []demand{light(100_000), light(200_000)}, []int64{120_000 + 330_000, 220_000 + 330_000}},
		{"two idle", []demand{idle, idle}, []int64{500_000, 500_000}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := allocate(L, c.ds)
			if !slices.Equal(got, c.want) {
				t.Fatalf("allocate(%v) = %v, want %v", c.ds, got, c.want)
			}
			var sum int64
			for _, s := range got {
				sum += s
			}
			if sum > L {
				t.Fatalf("shares %v add up to %d, over the limit", got, sum)
			}
		})
	}
}

// A coordinated round on a SQLite store, by hand with a fake clock: this
// node reports its accounts, takes its share of the fresh reports of
// others, ignores stale ones, tells the link credit, reads changed limits
// again, and deletes its reports when it closes.
func TestCoordinateRound(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	var now atomic.Int64
	now.Store(time.Unix(1_800_000_000, 0).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	advance := func(d time.Duration) { now.Add(int64(d)) }
	var own atomic.Int64
	own.Store(Default)
	const L = 100_000
	l := New(Config{Default: L, Now: clock, Coordinator: st, NodeID: "a", round: time.Hour,
		Lookup: func(context.Context, string) (int64, error) { return own.Load(), nil }})
	closed := false
	defer func() {
		if !closed {
			l.Close()
		}
	}()
	a := l.Acquire(ctx, "acct")
	var notices atomic.Int32
	sub := a.Subscribe(func() { notices.Add(1) })
	defer sub.Cancel()
	if a.Limit() != L {
		t.Fatalf("a new account's limit in force %d, want the whole limit", a.Limit())
	}
	round := func(n int) {
		t.Helper()
		if err := l.coordinate(n); err != nil {
			t.Fatal(err)
		}
	}
	// Another node reports the account saturated in both directions.
	other := func(at time.Time) {
		t.Helper()
		rows := []store.AccountUsage{
			{AccountID: "acct", Direction: 0, Demand: 60_000, Saturated: true, UpdatedAt: at},
			{AccountID: "acct", Direction: 1, Demand: 30_000, Saturated: true, UpdatedAt: at},
		}
		if err := st.ReportAccountUsage(ctx, "b", rows, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	other(clock())
	if err := a.Wait(ctx, ToDestination, 10_000); err != nil {
		t.Fatal(err)
	}
	advance(500 * time.Millisecond)
	round(1)
	// 20 KB/s to the destination, not held back: that and a tenth more;
	// nothing to the source: the minimum.
	if got := a.share; got != [2]int64{22_000, 2_000} || a.Limit() != 22_000 || notices.Load() != 1 {
		t.Fatalf("shares %v, limit %d, %d notices", got, a.Limit(), notices.Load())
	}
	if _, toDst, toSrc := l.Usage("acct"); toDst != 60_000 || toSrc != 30_000 {
		t.Fatalf("usage adds the other node's rates: %v %v", toDst, toSrc)
	}
	rows, err := st.AccountUsage(ctx, []string{"acct"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var mine []store.AccountUsage
	for _, r := range rows {
		if r.NodeID == "a" {
			mine = append(mine, r)
		}
	}
	slices.SortFunc(mine, func(x, y store.AccountUsage) int { return x.Direction - y.Direction })
	if len(mine) != 2 || mine[0].Demand != 20_000 || mine[0].Saturated || mine[1].Demand != 0 || !mine[0].UpdatedAt.Equal(clock()) {
		t.Fatalf("this node's reports: %+v", mine)
	}
	// The other node's report grows stale: this node has the whole limit.
	advance(reportStale)
	round(2)
	if a.share != [2]int64{L, L} || a.Limit() != L || notices.Load() != 2 {
		t.Fatalf("after the other's report went stale: shares %v, limit %d, %d notices", a.share, a.Limit(), notices.Load())
	}
	round(3)
	if notices.Load() != 2 {
		t.Fatal("an unchanged share was noticed")
	}
	// The first peer of an account on this node, while the other node
	// reports it saturated to the destination, starts with an equal part.
	if err := st.ReportAccountUsage(ctx, "b", []store.AccountUsage{{AccountID: "new", Direction: 0, Demand: 90_000, Saturated: true, UpdatedAt: clock()}}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	b := l.Acquire(ctx, "new")
	if b.share != [2]int64{L / 2, L} || b.Limit() != L {
		t.Fatalf("a new account's shares %v, limit in force %d", b.share, b.Limit())
	}
	l.Release(b)
	// The limit changed through another node: read again at the refresh.
	own.Store(40_000)
	round(refreshRounds)
	if lim, _, _ := l.Usage("acct"); lim != 40_000 || a.Limit() != 40_000 {
		t.Fatalf("after the refresh: limit %d, in force %d", lim, a.Limit())
	}
	// No live peer: no report.
	reports := func() int {
		t.Helper()
		rows, err := st.AccountUsage(ctx, []string{"acct"}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range rows {
			if r.NodeID == "a" {
				n++
			}
		}
		return n
	}
	l.Release(a)
	round(refreshRounds + 1)
	if n := reports(); n != 0 {
		t.Fatalf("%d reports of an account without live peers", n)
	}
	a = l.Acquire(ctx, "acct")
	defer l.Release(a)
	round(refreshRounds + 2)
	if n := reports(); n != 2 {
		t.Fatalf("%d reports of an account with a live peer again", n)
	}
	l.Close()
	closed = true
	if n := reports(); n != 0 {
		t.Fatalf("%d reports after Close", n)
	}
}

// Two nodes on one PostgreSQL store push one account's traffic as fast as
// its limit lets them: together they get the limit, not twice it; when one
// stops sending the other gets nearly all of it, and when it leaves all.
func TestTwoNodesShareTheLimit(t *testing.T) {
	url := storetest.PostgresDatabase(t)
	ctx := context.Background()
	const L = 1_000_000
	const frame = 8 << 10
	type node struct {
		st     *store.Store
		l      *Limiter
		a      *Account
		bytes  atomic.Int64
		cancel context.CancelFunc
		wg     sync.WaitGroup
	}
	nodes := make([]*node, 2)
	for i := range nodes {
		st, err := store.OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		n := &node{st: st}
		n.l = New(Config{Default: L, Coordinator: st, NodeID: []string{"n1", "n2"}[i]})
		n.a = n.l.Acquire(ctx, "acct")
		nodes[i] = n
	}
	for _, n := range nodes {
		pctx, cancel := context.WithCancel(ctx)
		n.cancel = cancel
		// Two senders per node, as two tunnels would be.
		for range 2 {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				for n.a.Wait(pctx, ToDestination, frame) == nil {
					n.bytes.Add(frame)
				}
			}()
		}
	}
	stop := func(n *node) {
		n.cancel()
		n.wg.Wait()
	}
	closed := [2]bool{}
	defer func() {
		for i, n := range nodes {
			stop(n)
			if !closed[i] {
				n.l.Release(n.a)
				n.l.Close()
			}
			n.st.Close()
		}
	}()
	// rate measures over d the bytes of the nodes given, per second.
	rate := func(d time.Duration, ns ...*node) float64 {
		var before int64
		for _, n := range ns {
			before += n.bytes.Load()
		}
		start := time.Now()
		time.Sleep(d)
		var after int64
		for _, n := range ns {
			after += n.bytes.Load()
		}
		return float64(after-before) / time.Since(start).Seconds()
	}
	time.Sleep(time.Second) // settle: the first rounds
	both := rate(2*time.Second, nodes...)
	t.Logf("two nodes: %.0f B/s together (limit %d), shares %d and %d", both, L, nodes[0].a.Limit(), nodes[1].a.Limit())
	if both > 1.1*L || both < 0.8*L {
		t.Fatalf("two nodes sent %.0f B/s together; the limit is %d", both, L)
	}
	// The second node's senders stop; its peers stay.
	stop(nodes[1])
	time.Sleep(1500 * time.Millisecond)
	one := rate(time.Second, nodes[0])
	t.Logf("second node idle: the first sends %.0f B/s, share %d", one, nodes[0].a.Limit())
	if one > 1.1*L+BurstTime.Seconds()*L || one < 0.8*L {
		t.Fatalf("with the second node idle the first sent %.0f B/s; the limit is %d", one, L)
	}
	// The second node leaves: the first has the whole limit.
	nodes[1].l.Release(nodes[1].a)
	nodes[1].l.Close()
	closed[1] = true
	deadline := time.Now().Add(2 * time.Second)
	for nodes[0].a.Limit() != L && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := nodes[0].a.Limit(); got != L {
		t.Fatalf("2 s after the second node left the first's share is %d of %d", got, L)
	}
	alone := rate(time.Second, nodes[0])
	t.Logf("second node gone: the first sends %.0f B/s", alone)
	if alone > 1.1*L+BurstTime.Seconds()*L || alone < 0.85*L {
		t.Fatalf("alone the first node sent %.0f B/s; the limit is %d", alone, L)
	}
}
