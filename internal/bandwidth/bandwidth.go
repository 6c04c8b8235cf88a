// Package bandwidth is the relay's per-account bandwidth limit: a pacer for
// each account and direction (source to destination, destination to
// source) that lets an account's DATA through no faster than its limit, the
// measurement of each account's current rates, and the notice to whoever
// forwards an account's frames when its limit changes.
//
// Pacing never drops data: Wait blocks the caller (the relay's reader of a
// peer), which stops reading its WebSocket, and TCP holds the sender back.
// Waiters of one account and direction are served one at a time in arrival
// order, each for one frame, so the account's tunnels share its limit
// frame by frame; a tunnel that needs less than its share leaves the rest
// to the others. Accounts never wait for each other.
//
// Across nodes (cluster.go; off unless Config names a Coordinator and a
// node id): several servers on one store share each account's limit. Every
// roundEvery (0.5 s) each node reports, per account with live peers on it
// and per direction, the rate it let through and whether its pacer held
// traffic back, reads the other nodes' reports no older than reportStale
// (3 s), and sets its pacers to its share of a max-min fair division of the
// limit that every node computes alike: a node not held back gets what it
// sent plus headroom, the rest goes equally to the nodes held back (to
// every node if none was). The shares add up to no more than the limit, so
// the account's aggregate rate holds once the rounds settle; a node alone
// has the whole limit. Account.Limit is this node's limit in force, and
// share changes reach subscribers as limit changes.
//
// It does not own the limits' persistence: Lookup reads an account's own
// limit from the store when the account's first peer arrives, and SetLimit
// is told of changes (with coordination, Lookup also runs again every few
// seconds, for changes made through other nodes).
package bandwidth

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Default is an account limit that means "the server's default".
const Default = -1

// Direction of a tunnel's traffic.
type Direction int

// Directions, named by where the bytes go.
const (
	ToDestination Direction = 0 // from the source local proxy to the destination
	ToSource      Direction = 1 // from the destination local proxy to the source
)

// BurstTime is how much of its limit an account may send at once after
// being idle: a fifth of a second's worth.
const BurstTime = 200 * time.Millisecond

// slackTime is how far into debt (at the rate) frames pass before a
// waiter sleeps.
const slackTime = 10 * time.Millisecond

// sampleEvery is how often the rates are measured and pacing is logged.
const sampleEvery = time.Second

// quietSamples is how many samples without pacing end a paced spell.
const quietSamples = 5

// idleEvict is how long an account with no peers keeps its entry.
const idleEvict = time.Minute

// Config configures a Limiter.
type Config struct {
	// Default is the limit of an account without one of its own, in bytes
	// per second; 0 is unlimited.
	Default int64
	// Lookup returns an account's own limit (Default: the server's default;
	// 0: unlimited). nil: every account has the default.
	Lookup func(ctx context.Context, accountID string) (int64, error)
	Logger *slog.Logger     // nil discards
	Now    func() time.Time // nil is time.Now

	// Coordinator and NodeID, both set, share each account's limit with
	// the other nodes reporting to the same Coordinator (cluster.go); nil
	// or "": this server has each account's whole limit to itself.
	Coordinator Coordinator
	NodeID      string

	round time.Duration // tests: how often the coordination runs (0: roundEvery)
}

// Limiter holds the pacers of the accounts with live peers. It is safe for
// concurrent use. Close stops its sampling goroutine.
type Limiter struct {
	def    int64
	lookup func(ctx context.Context, accountID string) (int64, error)
	log    *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	accounts map[string]*Account

	// coordination (cluster.go); coord nil: none
	coord     Coordinator
	node      string
	round     time.Duration
	ctx       context.Context // cancelled by Close: ends a round's store calls
	cancel    context.CancelFunc
	coordDone chan struct{}

	stop chan struct{}
	done chan struct{}
}

// New returns a Limiter and starts its sampler.
func New(cfg Config) *Limiter {
	l := &Limiter{
		def:      max(cfg.Default, 0),
		lookup:   cfg.Lookup,
		log:      cfg.Logger,
		now:      cfg.Now,
		accounts: map[string]*Account{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.sampleLoop()
	if cfg.Coordinator != nil && cfg.NodeID != "" {
		l.coord, l.node, l.round = cfg.Coordinator, cfg.NodeID, cmp.Or(cfg.round, roundEvery)
		l.coordDone = make(chan struct{})
		go l.coordinateLoop()
	}
	return l
}

// Close stops the sampler and the coordination, whose last act is to
// delete this node's reports.
func (l *Limiter) Close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
		l.cancel()
	}
	<-l.done
	if l.coordDone != nil {
		<-l.coordDone
	}
}

// DefaultLimit is the server's default limit (0: unlimited).
func (l *Limiter) DefaultLimit() int64 { return l.def }

// Acquire returns account's pacers for one peer; Release gives them back.
// The account's own limit is looked up when the limiter does not hold the
// account, and with coordination the other nodes' reports of it.
func (l *Limiter) Acquire(ctx context.Context, accountID string) *Account {
	l.mu.Lock()
	a := l.accounts[accountID]
	if a != nil {
		a.refs++
		l.mu.Unlock()
		return a
	}
	l.mu.Unlock()
	own := int64(Default)
	if l.lookup != nil {
		v, err := l.lookup(ctx, accountID)
		if err != nil {
			l.log.Warn("bandwidth: cannot read the account's limit; using the default", "account", accountID, "err", err)
		} else {
			own = v
		}
	}
	first, ok := l.firstShares(ctx, accountID, l.effective(own))
	l.mu.Lock()
	defer l.mu.Unlock()
	if a = l.accounts[accountID]; a == nil {
		// SetLimit may have made the entry meanwhile; its value is newer.
		a = l.newAccount(accountID, own)
		if ok {
			a.setShares(first, l.now())
		}
	}
	a.refs++
	return a
}

// Release gives back what Acquire returned.
func (l *Limiter) Release(a *Account) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a.refs--
	a.idleSince = l.now()
}

func (l *Limiter) newAccount(id string, own int64) *Account {
	now := l.now()
	a := &Account{l: l, id: id, own: own, idleSince: now, marksAt: now}
	for d := range a.dirs {
		a.dirs[d].turn = make(chan struct{}, 1)
		a.dirs[d].changed = make(chan struct{})
	}
	a.setFull(l.effective(own), now)
	l.accounts[id] = a
	return a
}

func (l *Limiter) effective(own int64) int64 {
	if own < 0 {
		return l.def
	}
	return own
}

// SetLimit applies an account's own limit (Default: the server's default;
// 0: unlimited) to its live tunnels at once.
func (l *Limiter) SetLimit(accountID string, limit int64) {
	l.mu.Lock()
	a := l.accounts[accountID]
	if a == nil {
		a = l.newAccount(accountID, limit)
	}
	a.own = limit
	a.ownSet++
	a.setFull(l.effective(limit), l.now())
	subs := a.subscribers()
	l.mu.Unlock()
	for _, fn := range subs {
		fn()
	}
}

// Usage reports an account's limit (0: unlimited) and its rates over the
// last second, in bytes per second; with coordination, the rates add the
// other nodes' latest reports.
func (l *Limiter) Usage(accountID string) (limit int64, toDestination, toSource float64) {
	l.mu.Lock()
	a := l.accounts[accountID]
	if a != nil {
		defer l.mu.Unlock()
		return a.full, a.dirs[ToDestination].rate1s + a.remote[ToDestination], a.dirs[ToSource].rate1s + a.remote[ToSource]
	}
	l.mu.Unlock()
	own := int64(Default)
	if l.lookup != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if v, err := l.lookup(ctx, accountID); err == nil {
			own = v
		}
	}
	return l.effective(own), 0, 0
}

// Account is the pacers of one account, shared by its live peers.
type Account struct {
	l    *Limiter
	id   string
	dirs [2]pacer

	// guarded by l.mu
	own       int64
	ownSet    int   // SetLimit calls, so a refresh does not undo a newer one
	full      int64 // the account's limit (own or the default); 0 unlimited
	refs      int
	idleSince time.Time
	subs      map[*Subscription]func()
	// share is this node's part of full per direction, which its pacers
	// let through: full itself without coordination. remote is the other
	// nodes' rates at the last round (cluster.go).
	share  [2]int64
	remote [2]float64
	// the coordination's marks: totals and waits at marksAt
	marksAt time.Time
	marks   [2]struct{ total, waited int64 }

	limit atomic.Int64 // in force on this node (the larger share); 0 unlimited
}

// ID is the account's id.
func (a *Account) ID() string { return a.id }

// Limit is the limit in force on this node, in bytes per second (0:
// unlimited): the account's limit, or with coordination the larger of this
// node's shares of it in the two directions. It sizes a peer's link credit,
// which a larger share than the peer's direction has only makes a little
// longer; the pacers hold each direction to its own share.
func (a *Account) Limit() int64 { return a.limit.Load() }

// setFull sets the account's limit. With coordination, the node's shares
// keep their part of the limit until the next round recomputes them. Call
// with l.mu held.
func (a *Account) setFull(full int64, now time.Time) {
	old := a.full
	a.full = full
	share := [2]int64{full, full}
	if a.l.coord != nil && old > 0 && full > 0 {
		for d := range share {
			share[d] = max(int64(float64(a.share[d])*float64(full)/float64(old)), 1)
		}
	}
	a.setShares(share, now)
}

// setShares sets this node's shares (0: unlimited) and reports whether the
// limit in force changed. Call with l.mu held.
func (a *Account) setShares(share [2]int64, now time.Time) bool {
	for d := range a.dirs {
		if share[d] != a.share[d] || !a.dirs[d].rateSet {
			a.dirs[d].set(share[d], now)
		}
	}
	a.share = share
	limit := max(share[0], share[1])
	return a.limit.Swap(limit) != limit
}

// Subscription is a registration for limit changes.
type Subscription struct{ a *Account }

// Subscribe calls fn (from SetLimit's goroutine, which must not wait long)
// whenever the account's limit changes, until Cancel.
func (a *Account) Subscribe(fn func()) *Subscription {
	s := &Subscription{a: a}
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	if a.subs == nil {
		a.subs = map[*Subscription]func(){}
	}
	a.subs[s] = fn
	return s
}

// Cancel ends the subscription.
func (s *Subscription) Cancel() {
	s.a.l.mu.Lock()
	defer s.a.l.mu.Unlock()
	delete(s.a.subs, s)
}

func (a *Account) subscribers() []func() {
	out := make([]func(), 0, len(a.subs))
	for _, fn := range a.subs {
		out = append(out, fn)
	}
	return out
}

// Wait returns when n more bytes may go in direction d, or with ctx's
// error. Unlimited accounts only count the bytes.
func (a *Account) Wait(ctx context.Context, d Direction, n int) error {
	if a.limit.Load() == 0 {
		a.dirs[d].total.Add(int64(n))
		return nil
	}
	return a.dirs[d].wait(ctx, n, a.l.now)
}

// pacer is a token bucket whose waiters take turns: one waiter at a time
// holds the turn, sleeps until the bucket is no longer in debt, and takes
// its bytes (the bucket may go into debt by one frame, so frames of any
// size pass). Go serves a channel's waiters in arrival order.
type pacer struct {
	total atomic.Int64 // bytes through, for the rates
	waits atomic.Int64 // times a waiter slept since the last sample
	// waited and waitedNanos count every frame that waited for the limit
	// and how long, since the pacer was made (for metrics).
	waited      atomic.Int64
	waitedNanos atomic.Int64

	turn chan struct{} // a token while someone holds the turn

	mu      sync.Mutex
	rate    float64 // bytes per second; 0 unlimited
	burst   float64
	tokens  float64
	last    time.Time
	rateSet bool
	changed chan struct{} // closed and replaced when the limit changes

	// sampler's (l.mu)
	lastTotal int64
	lastAt    time.Time
	rate1s    float64 // bytes per second over the last sample
	paced     bool
	quiet     int // samples without a wait while paced
}

func (p *pacer) set(limit int64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refill(now)
	p.rate = float64(limit)
	p.burst = p.rate * BurstTime.Seconds()
	if !p.rateSet {
		p.tokens = p.burst
		p.rateSet = true
	}
	p.tokens = math.Min(p.tokens, p.burst)
	close(p.changed)
	p.changed = make(chan struct{})
}

// refill adds the tokens earned since last. Call with p.mu held.
func (p *pacer) refill(now time.Time) {
	if !p.last.IsZero() && p.rate > 0 {
		p.tokens = math.Min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	}
	p.last = now
}

func (p *pacer) wait(ctx context.Context, n int, now func() time.Time) error {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.turn }()
	var slept time.Time // zero: did not sleep
	for {
		p.mu.Lock()
		p.refill(now())
		// Frames pass while the debt is under slackTime at the rate; a
		// waiter then sleeps until it is paid, so a paced account sleeps
		// once per slackTime, not once per frame.
		if p.rate == 0 || p.tokens >= -p.rate*slackTime.Seconds() {
			p.tokens -= float64(n)
			p.mu.Unlock()
			p.total.Add(int64(n))
			if !slept.IsZero() {
				p.waits.Add(1)
				p.waited.Add(1)
				p.waitedNanos.Add(int64(now().Sub(slept)))
			}
			return nil
		}
		d := time.Duration(-p.tokens / p.rate * float64(time.Second))
		changed := p.changed
		p.mu.Unlock()
		if slept.IsZero() {
			slept = now()
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-changed:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (l *Limiter) sampleLoop() {
	defer close(l.done)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.sample()
		}
	}
}

// sample measures every live account's rates, logs when an account starts
// or stops being paced, and forgets accounts idle for a while.
func (l *Limiter) sample() {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, a := range l.accounts {
		if a.refs == 0 && now.Sub(a.idleSince) > idleEvict {
			delete(l.accounts, id)
			continue
		}
		for d := range a.dirs {
			p := &a.dirs[d]
			total := p.total.Load()
			if !p.lastAt.IsZero() {
				if el := now.Sub(p.lastAt).Seconds(); el > 0 {
					p.rate1s = float64(total-p.lastTotal) / el
				}
			}
			p.lastTotal, p.lastAt = total, now
			// Starting is logged at once; stopping after quietSamples
			// without a wait, so an account that hovers at its limit does
			// not log every second.
			paced := p.waits.Swap(0) > 0
			if paced {
				p.quiet = 0
			} else if p.paced {
				p.quiet++
			}
			if paced && !p.paced || !paced && p.paced && p.quiet >= quietSamples {
				p.paced = paced
				dir := "source to destination"
				if Direction(d) == ToSource {
					dir = "destination to source"
				}
				if paced {
					l.log.Info("bandwidth: account is being paced at its limit", "account", id, "direction", dir, "limit_bytes_per_second", a.full, "node_share_bytes_per_second", a.share[d])
				} else {
					l.log.Info("bandwidth: account is no longer paced", "account", id, "direction", dir)
				}
			}
		}
	}
}

// AccountStats is what an account's pacers have seen since the account's
// first live peer (an account idle for a minute is forgotten, and starts
// again from zero). Index 0 of the arrays is source to destination, 1
// destination to source.
type AccountStats struct {
	ID    string
	Limit int64 // the account's, bytes per second; 0 unlimited
	Bytes [2]int64
	// Waits is how many frames waited for the limit, and Waited how long
	// they waited in all.
	Waits  [2]int64
	Waited [2]time.Duration
}

// Stats returns the statistics of the accounts the limiter holds: those
// with live peers, and for a minute after their last one left.
func (l *Limiter) Stats() []AccountStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]AccountStats, 0, len(l.accounts))
	for id, a := range l.accounts {
		s := AccountStats{ID: id, Limit: a.full}
		for d := range a.dirs {
			p := &a.dirs[d]
			s.Bytes[d] = p.total.Load()
			s.Waits[d] = p.waited.Load()
			s.Waited[d] = time.Duration(p.waitedNanos.Load())
		}
		out = append(out, s)
	}
	return out
}
