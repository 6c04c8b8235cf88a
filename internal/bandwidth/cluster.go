package bandwidth

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/warrentunnel/warren/internal/store"
)

// Coordinator is where the nodes sharing one database report their
// accounts' traffic and read each other's reports; *store.Store is one.
type Coordinator interface {
	// ReportAccountUsage replaces the node's reports with rows, and
	// deletes every node's reports older than purgeBefore (zero: none).
	ReportAccountUsage(ctx context.Context, nodeID string, rows []store.AccountUsage, purgeBefore time.Time) error
	// AccountUsage returns every node's reports of these accounts newer
	// than since.
	AccountUsage(ctx context.Context, accountIDs []string, since time.Time) ([]store.AccountUsage, error)
	// DeleteAccountUsage deletes the node's reports.
	DeleteAccountUsage(ctx context.Context, nodeID string) error
}

// The coordination's timing.
const (
	// roundEvery is how often a node reports and takes its shares.
	roundEvery = 500 * time.Millisecond
	// reportStale is the age past which a report is ignored: its node is
	// gone, or lost the store.
	reportStale = 3 * time.Second
	// purgeAfter is the age past which any node deletes a report (of a
	// node that stopped without deleting its own); purgeRounds is how
	// often it tries.
	purgeAfter  = time.Minute
	purgeRounds = 60
	// refreshRounds is how often the limits of the accounts with live
	// peers are read again, so a limit changed through another node holds
	// here too.
	refreshRounds = 10
	// storeTimeout bounds a round's store calls.
	storeTimeout = 2 * time.Second
)

// How a node that is not held back asks for a share: what it sent plus
// headroom, headroomFraction of its rate or minShareFraction of the
// account's limit, whichever is more. The headroom lets its rate grow
// until its pacer waits, after which it asks for as much as it can get;
// the minimum is what a node with idle peers keeps from a busy one.
const (
	headroomFraction = 0.1
	minShareFraction = 0.02
)

// demand is one node's report of an account in one direction.
type demand struct {
	rate      float64 // bytes per second
	saturated bool    // its pacer held traffic back
}

// allocate divides limit among the nodes of ds, max-min fair (water
// filling): a node that was not held back gets what it sent plus headroom
// if that is no more than an equal part of what the smaller askers left;
// the rest goes in equal parts to the others, the saturated ones, or if
// there are none, to every node. A node alone gets the whole limit. Every node computes the same division from
// the same reports, the shares add up to no more than the limit (but for
// the 1 byte/s each gets at least), and the order of ds does not matter.
func allocate(limit int64, ds []demand) []int64 {
	out := make([]int64, len(ds))
	if len(ds) == 1 {
		out[0] = limit
		return out
	}
	lim := float64(limit)
	want := make([]float64, len(ds))
	order := make([]int, len(ds))
	for i, d := range ds {
		order[i] = i
		want[i] = math.Inf(1)
		if !d.saturated {
			want[i] = d.rate + max(d.rate*headroomFraction, lim*minShareFraction)
		}
	}
	slices.SortStableFunc(order, func(i, j int) int {
		switch {
		case want[i] < want[j]:
			return -1
		case want[i] > want[j]:
			return 1
		}
		return 0
	})
	give := make([]float64, len(ds))
	left := lim
	for k, i := range order {
		give[i] = min(want[i], left/float64(len(ds)-k))
		left -= give[i]
	}
	// With no node held back, what none asked for is split equally too,
	// so a node whose peers start sending has more than the minimum
	// before the next round.
	for i := range give {
		out[i] = max(int64(give[i]+left/float64(len(ds))), 1)
	}
	return out
}

// coordinateLoop runs a round every roundEvery until Close, then deletes
// this node's reports.
func (l *Limiter) coordinateLoop() {
	defer close(l.coordDone)
	t := time.NewTicker(l.round)
	defer t.Stop()
	failing := false
	for round := 1; ; round++ {
		select {
		case <-l.stop:
			l.leave()
			return
		case <-t.C:
		}
		err := l.coordinate(round)
		switch {
		case err != nil && !failing && l.ctx.Err() == nil:
			l.log.Warn("bandwidth: cannot share the accounts' limits with the other nodes; keeping this node's shares", "err", err)
		case err == nil && failing:
			l.log.Info("bandwidth: sharing the accounts' limits with the other nodes again")
		}
		failing = err != nil
	}
}

// leave deletes this node's reports, so the other nodes take its shares at
// their next round instead of after reportStale.
func (l *Limiter) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := l.coord.DeleteAccountUsage(ctx, l.node); err != nil {
		l.log.Warn("bandwidth: cannot delete this node's usage reports; they expire", "err", err)
	}
}

// coordinate is one round: measure this node's limited accounts with live
// peers, report them, read the other nodes' fresh reports of them, and set
// this node's shares.
func (l *Limiter) coordinate(round int) error {
	now := l.now()
	rows, own := l.measure(now)
	ctx, cancel := context.WithTimeout(l.ctx, storeTimeout)
	defer cancel()
	var purge time.Time
	if round%purgeRounds == 0 {
		purge = now.Add(-purgeAfter)
	}
	if err := l.coord.ReportAccountUsage(ctx, l.node, rows, purge); err != nil {
		return err
	}
	if round%refreshRounds == 0 {
		l.refreshLimits(ctx, own)
	}
	if len(own) == 0 {
		return nil
	}
	ids := make([]string, 0, len(own))
	for id := range own {
		ids = append(ids, id)
	}
	reports, err := l.coord.AccountUsage(ctx, ids, now.Add(-reportStale))
	if err != nil {
		return err
	}
	others := map[string]*[2][]demand{}
	for _, r := range reports {
		if r.NodeID == l.node || r.Direction < 0 || r.Direction >= 2 {
			continue
		}
		o := others[r.AccountID]
		if o == nil {
			o = &[2][]demand{}
			others[r.AccountID] = o
		}
		o[r.Direction] = append(o[r.Direction], demand{rate: float64(r.Demand), saturated: r.Saturated})
	}
	var notify []func()
	l.mu.Lock()
	for id, mine := range own {
		a := l.accounts[id]
		if a == nil || a.full == 0 {
			continue // forgotten or unlimited meanwhile
		}
		var share [2]int64
		var remote [2]float64
		o := others[id]
		for d := range share {
			ds := []demand{mine[d]}
			if o != nil {
				ds = append(ds, o[d]...)
				for _, x := range o[d] {
					remote[d] += x.rate
				}
			}
			share[d] = allocate(a.full, ds)[0]
		}
		a.remote = remote
		if a.setShares(share, now) {
			notify = append(notify, a.subscribers()...)
		}
	}
	l.mu.Unlock()
	// The relay's link credit follows the limit in force (Subscribe).
	for _, fn := range notify {
		fn()
	}
	return nil
}

// measure takes every account's rates and waits since the last round, and
// returns the reports of the limited accounts with live peers.
func (l *Limiter) measure(now time.Time) ([]store.AccountUsage, map[string][2]demand) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var rows []store.AccountUsage
	own := map[string][2]demand{}
	for id, a := range l.accounts {
		el := now.Sub(a.marksAt).Seconds()
		a.marksAt = now
		var ds [2]demand
		for d := range a.dirs {
			total, waited := a.dirs[d].total.Load(), a.dirs[d].waited.Load()
			m := &a.marks[d]
			if el > 0 {
				ds[d].rate = float64(total-m.total) / el
			}
			ds[d].saturated = waited > m.waited
			m.total, m.waited = total, waited
		}
		if a.refs == 0 || a.full == 0 {
			a.remote = [2]float64{}
			continue
		}
		own[id] = ds
		for d := range ds {
			rows = append(rows, store.AccountUsage{AccountID: id, Direction: d, Demand: int64(ds[d].rate), Saturated: ds[d].saturated, UpdatedAt: now})
		}
	}
	return rows, own
}

// firstShares are the shares of an account's first peer on this node,
// taken from the other nodes' fresh reports as if this node were held back
// already, so that it does not start with the whole limit while others use
// it; ok is false without coordination, a limit, or the reports.
func (l *Limiter) firstShares(ctx context.Context, accountID string, limit int64) (share [2]int64, ok bool) {
	if l.coord == nil || limit == 0 {
		return share, false
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	reports, err := l.coord.AccountUsage(ctx, []string{accountID}, l.now().Add(-reportStale))
	if err != nil {
		l.log.Warn("bandwidth: cannot read the other nodes' usage of the account; starting with its whole limit", "account", accountID, "err", err)
		return share, false
	}
	var ds [2][]demand
	for d := range ds {
		ds[d] = []demand{{saturated: true}}
	}
	for _, r := range reports {
		if r.NodeID != l.node && r.Direction >= 0 && r.Direction < 2 {
			ds[r.Direction] = append(ds[r.Direction], demand{rate: float64(r.Demand), saturated: r.Saturated})
		}
	}
	for d := range share {
		share[d] = allocate(limit, ds[d])[0]
	}
	return share, true
}

// refreshLimits reads the limits of the accounts in own again and applies
// those that changed (through another node's API).
func (l *Limiter) refreshLimits(ctx context.Context, own map[string][2]demand) {
	if l.lookup == nil {
		return
	}
	for id := range own {
		l.mu.Lock()
		a := l.accounts[id]
		if a == nil {
			l.mu.Unlock()
			continue
		}
		seq, cur := a.ownSet, a.own
		l.mu.Unlock()
		v, err := l.lookup(ctx, id)
		if err != nil {
			continue // the account may be gone; the next refresh tries again
		}
		if v == cur {
			continue
		}
		l.mu.Lock()
		if l.accounts[id] != a || a.ownSet != seq {
			l.mu.Unlock()
			continue // SetLimit's value is newer
		}
		a.own = v
		a.setFull(l.effective(v), l.now())
		subs := a.subscribers()
		l.mu.Unlock()
		for _, fn := range subs {
			fn()
		}
	}
}
