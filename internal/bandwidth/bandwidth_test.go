package bandwidth

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newLimiter(t *testing.T, cfg Config) *Limiter {
	l := New(cfg)
	t.Cleanup(l.Close)
	return l
}

// Two waiters of one account and direction share its limit evenly, and
// together get no more than the limit (plus the burst).
func TestWaitersShareTheLimit(t *testing.T) {
	const limit = 400_000
	l := newLimiter(t, Config{Default: limit})
	a := l.Acquire(context.Background(), "acct")
	defer l.Release(a)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var got [2]atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a.Wait(ctx, ToSource, 4000) == nil {
				got[i].Add(4000)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	total := got[0].Load() + got[1].Load()
	if most := limit*el + limit*BurstTime.Seconds() + 8000; float64(total) > most {
		t.Fatalf("%d bytes in %.2fs, more than the limit allows (%.0f)", total, el, most)
	}
	if total < limit/2 {
		t.Fatalf("only %d bytes in %.2fs", total, el)
	}
	// Turns alternate, but a waiter may have had the burst to itself
	// before the other came, and on a loaded machine one may take a few
	// turns in a row while the other is not yet scheduled: neither may be
	// starved. (The end-to-end tests measure the shares through real
	// sockets.)
	for i := range got {
		if share := float64(got[i].Load()) / float64(total); share < 0.3 {
			t.Fatalf("waiter %d got %.0f%% of %d bytes", i, 100*share, total)
		}
	}
}

// A limit change reaches a waiter at once; another account and the other
// direction never wait for a limited one.
func TestLimitChangesAndIsolation(t *testing.T) {
	l := newLimiter(t, Config{Default: 1000})
	ctx := context.Background()
	a := l.Acquire(ctx, "slow")
	defer l.Release(a)
	b := l.Acquire(ctx, "other")
	defer l.Release(b)
	l.SetLimit("other", 0)
	if err := a.Wait(ctx, ToDestination, 5000); err != nil { // the burst is in debt now
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Wait(ctx, ToDestination, 10) }()
	select {
	case err := <-done:
		t.Fatalf("a paced account's waiter did not wait (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	for range 100 {
		if err := b.Wait(ctx, ToDestination, 64<<10); err != nil {
			t.Fatal(err)
		}
	}
	var changes atomic.Int32
	sub := a.Subscribe(func() { changes.Add(1) })
	l.SetLimit("slow", 0)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("lifting the limit did not release the waiter")
	}
	if a.Limit() != 0 || changes.Load() != 1 {
		t.Fatalf("limit %d, %d notices", a.Limit(), changes.Load())
	}
	sub.Cancel()
	l.SetLimit("slow", Default)
	if a.Limit() != 1000 || changes.Load() != 1 {
		t.Fatalf("back to the default: limit %d, %d notices", a.Limit(), changes.Load())
	}
}

// Usage reports the limit in force and the rates measured over the last
// second; accounts not live are looked up.
func TestUsage(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	lookup := func(_ context.Context, id string) (int64, error) {
		if id == "own" {
			return 5_000_000, nil
		}
		return Default, nil
	}
	l := newLimiter(t, Config{Default: 800_000, Lookup: lookup, Now: clock})
	if lim, _, _ := l.Usage("own"); lim != 5_000_000 {
		t.Fatalf("own limit %d", lim)
	}
	if lim, _, _ := l.Usage("dflt"); lim != 800_000 {
		t.Fatalf("default limit %d", lim)
	}
	a := l.Acquire(context.Background(), "own")
	defer l.Release(a)
	l.sample()
	a.Wait(context.Background(), ToSource, 300_000)
	a.Wait(context.Background(), ToDestination, 1000)
	now.Add(int64(time.Second))
	l.sample()
	lim, toDst, toSrc := l.Usage("own")
	if lim != 5_000_000 || toDst != 1000 || toSrc != 300_000 {
		t.Fatalf("usage %d %v %v", lim, toDst, toSrc)
	}
}

// Waiting ends with the context, and the turn passes on.
func TestWaitCancelled(t *testing.T) {
	l := newLimiter(t, Config{Default: 1000})
	a := l.Acquire(context.Background(), "x")
	defer l.Release(a)
	a.Wait(context.Background(), ToSource, 10_000)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Wait(ctx, ToSource, 1); err == nil {
		t.Fatal("a cancelled wait succeeded")
	}
	l.SetLimit("x", 0)
	if err := a.Wait(context.Background(), ToSource, 1); err != nil {
		t.Fatal(err)
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The limiter logs once when an account starts being paced and once when it
// stops, not per frame.
func TestPacingLoggedOnce(t *testing.T) {
	var logs logBuffer
	l := newLimiter(t, Config{Default: 100_000, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	a := l.Acquire(context.Background(), "acct")
	defer l.Release(a)
	for range 10 {
		a.Wait(context.Background(), ToSource, 10_000)
	}
	l.sample()
	for range 5 {
		a.Wait(context.Background(), ToSource, 10_000)
	}
	l.sample()
	for range quietSamples - 1 { // nothing waited since
		l.sample()
	}
	if out := logs.String(); strings.Contains(out, "no longer paced") {
		t.Fatalf("a short pause ended the paced spell:\n%s", out)
	}
	l.sample()
	out := logs.String()
	if strings.Count(out, "account is being paced") != 1 || strings.Count(out, "no longer paced") != 1 ||
		!strings.Contains(out, "direction=\"destination to source\"") {
		t.Fatalf("logs:\n%s", out)
	}
}

// Stats counts an account's bytes, and the frames that waited for its limit
// and how long, per direction.
func TestStatsCountWaits(t *testing.T) {
	const limit = 100_000
	l := newLimiter(t, Config{Default: limit})
	a := l.Acquire(context.Background(), "acct")
	defer l.Release(a)
	// The burst (20 KB) and the slack pass at once; 30 KB more wait about
	// 0.2 s.
	start := time.Now()
	for range 10 {
		if err := a.Wait(context.Background(), ToDestination, 5000); err != nil {
			t.Fatal(err)
		}
	}
	el := time.Since(start)
	st := l.Stats()
	if len(st) != 1 || st[0].ID != "acct" || st[0].Limit != limit {
		t.Fatalf("stats %+v", st)
	}
	s := st[0]
	if s.Bytes != [2]int64{50_000, 0} {
		t.Fatalf("bytes %v, want 50000 to the destination", s.Bytes)
	}
	if s.Waits[ToDestination] < 1 || s.Waits[ToSource] != 0 {
		t.Fatalf("waits %v, want some to the destination only", s.Waits)
	}
	if w := s.Waited[ToDestination]; w < 100*time.Millisecond || w > el {
		t.Fatalf("waited %v in %v", w, el)
	}
}
