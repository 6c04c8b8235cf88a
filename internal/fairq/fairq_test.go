package fairq

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warrentunnel/warren/internal/framepool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// frame makes a buffer of size bytes tagged with (flow, seq); control
// frames use flow 0.
func frame(size int, flow uint64, seq uint32) *framepool.Buf {
	b := framepool.Get(size)
	b.B = b.Mem[:max(size, 12)]
	binary.BigEndian.PutUint64(b.B, flow)
	binary.BigEndian.PutUint32(b.B[8:], seq)
	return b
}

func tag(b *framepool.Buf) (flow uint64, seq uint32) {
	return binary.BigEndian.Uint64(b.B), binary.BigEndian.Uint32(b.B[8:])
}

func takeAll(t *testing.T, q *Queue) (out [][2]uint64) {
	t.Helper()
	for {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // take what is there without waiting
		bufs, err := q.Take(ctx, nil, 1)
		if err != nil {
			return out
		}
		for _, b := range bufs {
			f, s := tag(b)
			out = append(out, [2]uint64{f, uint64(s)})
		}
		q.Release(bufs)
	}
}

var big = Config{Budget: 64 << 20, FlowMax: 64 << 20, Control: 1 << 10}

// Frames of one flow keep their order; a control frame leaves after every
// frame queued before it and before every frame queued after it.
func TestOrderAndBarriers(t *testing.T) {
	ctx := context.Background()
	for trial := range 200 {
		rng := rand.New(rand.NewSource(int64(trial)))
		q := New(big)
		var seq [5]uint32
		type ev struct {
			flow uint64
			seq  uint32
		}
		var pushed []ev
		for range 60 {
			if rng.Intn(6) == 0 {
				seq[0]++
				if err := q.PushControlWait(ctx, frame(100, 0, seq[0])); err != nil {
					t.Fatal(err)
				}
				pushed = append(pushed, ev{0, seq[0]})
				continue
			}
			f := uint64(1 + rng.Intn(4))
			seq[f]++
			size := []int{100, 3000, 60000}[rng.Intn(3)]
			if err := q.Push(ctx, f, frame(size, f, seq[f])); err != nil {
				t.Fatal(err)
			}
			pushed = append(pushed, ev{f, seq[f]})
		}
		got := takeAll(t, q)
		q.Close()
		if len(got) != len(pushed) {
			t.Fatalf("trial %d: took %d frames, pushed %d", trial, len(got), len(pushed))
		}
		pos := map[ev]int{}
		for i, g := range got {
			pos[ev{g[0], uint32(g[1])}] = i
		}
		last := map[uint64]int{}
		for _, e := range pushed {
			p, ok := pos[e]
			if !ok {
				t.Fatalf("trial %d: frame %v never left", trial, e)
			}
			if l, ok := last[e.flow]; ok && p < l {
				t.Fatalf("trial %d: flow %d reordered", trial, e.flow)
			}
			last[e.flow] = p
		}
		// Barriers: everything pushed before a control frame leaves before it.
		for i, e := range pushed {
			if e.flow != 0 {
				continue
			}
			for _, b := range pushed[:i] {
				if pos[b] > pos[e] {
					t.Fatalf("trial %d: %v overtook control frame %v", trial, b, e)
				}
			}
			for _, a := range pushed[i+1:] {
				if pos[a] < pos[e] {
					t.Fatalf("trial %d: %v left before control frame %v", trial, a, e)
				}
			}
		}
	}
}

// Bulk flows share the writer in turns, and a flow that just became active
// (a keystroke) goes next, not behind the bulk frames.
func TestRoundRobinAndNewFlowsFirst(t *testing.T) {
	ctx := context.Background()
	q := New(big)
	defer q.Close()
	for seq := range uint32(10) {
		for f := uint64(1); f <= 3; f++ {
			if err := q.Push(ctx, f, frame(60000, f, seq)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Take a few, then a keystroke arrives.
	var order []uint64
	for range 4 {
		bufs, _ := q.Take(ctx, nil, 1)
		f, _ := tag(bufs[0])
		order = append(order, f)
		q.Release(bufs)
	}
	if err := q.Push(ctx, 9, frame(64, 9, 0)); err != nil {
		t.Fatal(err)
	}
	bufs, _ := q.Take(ctx, nil, 1)
	if f, _ := tag(bufs[0]); f != 9 {
		t.Errorf("keystroke waited: got flow %d first", f)
	}
	q.Release(bufs)
	rest := takeAll(t, q)
	for _, r := range rest {
		order = append(order, r[0])
	}
	// In any window of 3 consecutive bulk frames each flow appears once.
	for i := 0; i+3 <= len(order); i += 3 {
		seen := map[uint64]bool{}
		for _, f := range order[i : i+3] {
			seen[f] = true
		}
		if len(seen) != 3 {
			t.Fatalf("not round robin at %d: %v", i, order)
		}
	}
}

// Push waits while the queue holds its budget or the flow its share, and
// goes on once the writer releases frames.
func TestPushWaitsForRoom(t *testing.T) {
	q := New(Config{Budget: 3 * framepool.LargeSize, FlowMax: 2 * framepool.LargeSize, Control: 2})
	defer q.Close()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(q.Push(ctx, 1, frame(60000, 1, 0)))
	must(q.Push(ctx, 1, frame(60000, 1, 1)))
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	b := frame(60000, 1, 2)
	if err := q.Push(short, 1, b); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third frame of one flow: %v, want a wait", err)
	}
	cancel()
	must(q.Push(ctx, 2, b)) // another flow still has room in the budget
	short, cancel = context.WithTimeout(ctx, 30*time.Millisecond)
	b = frame(60000, 3, 0)
	if err := q.Push(short, 3, b); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("over budget: %v, want a wait", err)
	}
	cancel()
	if got := q.Used(); got != 3*framepool.LargeSize {
		t.Fatalf("used = %d", got)
	}
	done := make(chan error)
	go func() { done <- q.Push(ctx, 3, b) }()
	select {
	case err := <-done:
		t.Fatalf("push over budget returned %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	bufs, _ := q.Take(ctx, nil, 1)
	select {
	case err := <-done:
		t.Fatalf("room was taken before the frame was written: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	q.Release(bufs)
	must(<-done)
	// Control slots are bounded too.
	must(q.ReserveControl(ctx))
	must(q.ReserveControl(ctx))
	short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := q.ReserveControl(short); err == nil {
		t.Fatal("third control slot granted")
	}
	q.Unreserve()
	q.PushControl(frame(10, 0, 0))
}

func TestClose(t *testing.T) {
	q := New(big)
	ctx := context.Background()
	if err := q.Push(ctx, 1, frame(10, 1, 0)); err != nil {
		t.Fatal(err)
	}
	taken, _ := q.Take(ctx, nil, 1)
	if err := q.Push(ctx, 1, frame(10, 1, 1)); err != nil {
		t.Fatal(err)
	}
	q.Close()
	b := frame(10, 1, 2)
	if err := q.Push(ctx, 1, b); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after close: %v", err)
	}
	b.Free()
	if _, err := q.Take(ctx, nil, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("take after close: %v", err)
	}
	q.Release(taken)
	if q.Used() != 0 {
		t.Fatalf("closed queue holds %d bytes", q.Used())
	}
}

// The steady state allocates nothing per frame.
func BenchmarkPushTake(b *testing.B) {
	q := New(Config{Budget: 1 << 20, FlowMax: 256 << 10, Control: 64})
	defer q.Close()
	ctx := context.Background()
	dst := make([]*framepool.Buf, 0, 16)
	b.ReportAllocs()
	for i := range b.N {
		if err := q.Push(ctx, uint64(i%8), framepool.Get(100)); err != nil {
			b.Fatal(err)
		}
		if i%8 == 7 {
			var err error
			if dst, err = q.Take(ctx, dst[:0], 1<<20); err != nil {
				b.Fatal(err)
			}
			q.Release(dst)
		}
	}
}
