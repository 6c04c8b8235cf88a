package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestBurstThenRate(t *testing.T) {
	clk := newClock()
	b := New(Config{Rate: 10, Burst: 20, Now: clk.now})
	for i := range 20 {
		if !b.Allow("a") {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if b.Allow("a") {
		t.Fatal("request past the burst allowed")
	}
	if !b.Empty("a") {
		t.Fatal("Empty = false after the burst")
	}
	if !b.Allow("b") || b.Empty("b") {
		t.Fatal("another key is limited too")
	}
	clk.advance(100 * time.Millisecond) // one token at 10/s
	if b.Empty("a") || !b.Allow("a") || b.Allow("a") {
		t.Fatal("not one token after a tenth of a second")
	}
}

func TestNilIsNoLimit(t *testing.T) {
	b := New(Config{Rate: 0, Burst: 5})
	if b != nil {
		t.Fatal("New with rate 0 is not nil")
	}
	for range 1000 {
		if !b.Allow("a") || b.Empty("a") {
			t.Fatal("a nil Buckets limited")
		}
	}
	if b.Len() != 0 {
		t.Fatal("a nil Buckets has buckets")
	}
}

func TestEmptyDoesNotCreate(t *testing.T) {
	b := New(Config{Rate: 1, Burst: 1})
	if b.Empty("a") || b.Len() != 0 {
		t.Fatal("Empty of an unknown key made a bucket or said empty")
	}
}

// Idle buckets are full again, so they are forgotten as new keys come.
func TestIdleBucketsForgotten(t *testing.T) {
	clk := newClock()
	b := New(Config{Rate: 10, Burst: 20, Now: clk.now}) // full again after 2 s
	for i := range 100 {
		b.Allow(fmt.Sprint("k", i))
	}
	if b.Len() != 100 {
		t.Fatalf("Len = %d, want 100", b.Len())
	}
	clk.advance(time.Second)
	b.Allow("fresh")
	if b.Len() != 101 {
		t.Fatalf("Len = %d after 1 s, want 101: buckets not yet full were dropped", b.Len())
	}
	clk.advance(time.Second)
	b.Allow("fresh")
	if b.Len() != 1 {
		t.Fatalf("Len = %d after 2 s, want 1: idle buckets kept", b.Len())
	}
}

// At MaxKeys the least recently used bucket makes room, so memory is
// bounded whatever the keys; recently used buckets keep their state.
func TestMaxKeys(t *testing.T) {
	clk := newClock()
	b := New(Config{Rate: 1, Burst: 1, MaxKeys: 3, Now: clk.now})
	b.Allow("a")
	b.Allow("b")
	b.Allow("c")
	b.Allow("a") // refused, and a is now the most recently used
	b.Allow("d") // evicts b
	if b.Len() != 3 {
		t.Fatalf("Len = %d, want 3", b.Len())
	}
	if !b.Empty("a") || !b.Empty("c") || !b.Empty("d") {
		t.Fatal("a recently used bucket lost its state")
	}
	if b.Empty("b") {
		t.Fatal("the least recently used bucket was kept")
	}
}

func TestConcurrentUse(t *testing.T) {
	b := New(Config{Rate: 1, Burst: 50})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if b.Allow("shared") {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
				b.Empty("shared")
			}
		})
	}
	wg.Wait()
	// 50 from the burst, and at most a few refilled while the test ran.
	if allowed < 50 || allowed > 55 {
		t.Fatalf("%d of 800 allowed, want about 50", allowed)
	}
}
