// Package ratelimit keeps the token buckets of Warren's rate quotas, one per
// key (an account id, a client address): a bucket is made on first use and
// forgotten once idle, and their number is bounded, so a flood of new keys
// costs bounded memory. It owns no goroutine: idle buckets go as new ones
// come. It does not know what the keys are nor what a refusal looks like;
// the API and the relay decide that.
package ratelimit

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is Config.MaxKeys's default. A bucket costs a few hundred
// bytes, so a full set stays within a few MiB.
const DefaultMaxKeys = 10000

// Config configures Buckets.
type Config struct {
	Rate    float64 // tokens added per second to each bucket; 0 or less: no limit
	Burst   int     // tokens a bucket holds; less than 1 counts as 1
	MaxKeys int     // buckets kept at most; DefaultMaxKeys if 0
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Buckets is a bounded set of token buckets by key. It is safe for
// concurrent use. A nil *Buckets is no limit: it allows everything.
type Buckets struct {
	rate    rate.Limit
	burst   int
	maxKeys int
	now     func() time.Time
	// refill is how long an unused bucket takes to fill up from empty: one
	// unused that long is the same as a new one, so forgetting it changes
	// nothing.
	refill time.Duration

	mu    sync.Mutex
	byKey map[string]*list.Element // of *bucket
	lru   list.List                // most recently used at the front
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	used time.Time
}

// New returns the buckets cfg describes, or nil (no limit) if cfg.Rate is
// not positive.
func New(cfg Config) *Buckets {
	if cfg.Rate <= 0 {
		return nil
	}
	b := &Buckets{
		rate:    rate.Limit(cfg.Rate),
		burst:   max(cfg.Burst, 1),
		maxKeys: cfg.MaxKeys,
		now:     cfg.Now,
		byKey:   map[string]*list.Element{},
	}
	if b.maxKeys <= 0 {
		b.maxKeys = DefaultMaxKeys
	}
	if b.now == nil {
		b.now = time.Now
	}
	b.refill = time.Duration(float64(b.burst) / cfg.Rate * float64(time.Second))
	return b
}

// Allow takes a token from key's bucket and reports whether there was one.
func (b *Buckets) Allow(key string) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.forgetIdle(now)
	e := b.byKey[key]
	if e == nil {
		if b.lru.Len() >= b.maxKeys {
			// Every bucket is in use: the least recently used one goes
			// early, and its key starts over with a full bucket.
			b.remove(b.lru.Back())
		}
		e = b.lru.PushFront(&bucket{key: key, lim: rate.NewLimiter(b.rate, b.burst)})
		b.byKey[key] = e
	} else {
		b.lru.MoveToFront(e)
	}
	bk := e.Value.(*bucket)
	bk.used = now
	return bk.lim.AllowN(now, 1)
}

// Empty reports whether key's bucket holds less than one token, without
// taking one. A key without a bucket has a full one.
func (b *Buckets) Empty(key string) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.byKey[key]
	if e == nil {
		return false
	}
	return e.Value.(*bucket).lim.TokensAt(b.now()) < 1
}

// Len is how many buckets are kept.
func (b *Buckets) Len() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lru.Len()
}

// forgetIdle drops the buckets, least recently used first, that have not
// been used for as long as they take to fill up. Each bucket is dropped at
// most once, so the work is constant per call on average.
func (b *Buckets) forgetIdle(now time.Time) {
	for e := b.lru.Back(); e != nil; e = b.lru.Back() {
		if now.Sub(e.Value.(*bucket).used) < b.refill {
			return
		}
		b.remove(e)
	}
}

func (b *Buckets) remove(e *list.Element) {
	delete(b.byKey, e.Value.(*bucket).key)
	b.lru.Remove(e)
}
