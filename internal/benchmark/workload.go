package benchmark

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// The workloads. Each takes the address of a path (the target itself, the
// floor's source hop, or the source local proxy) and measures what a
// client of that address sees.

// chunk is what bulk senders write: random, so that nothing on the path
// could gain from compressing it.
var chunk = func() []byte {
	b := make([]byte, 256<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

const ioTimeout = 2 * time.Minute

var dialer = net.Dialer{Timeout: 10 * time.Second}

// bulk sends total bytes to the sink at addr, split over conns
// simultaneous connections, and returns how long it took until every
// connection's count came back.
func bulk(ctx context.Context, addr string, conns int, total int64) (time.Duration, error) {
	per := total / int64(conns)
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range conns {
		g.Go(func() error { return send(gctx, addr, per) })
	}
	err := g.Wait()
	return time.Since(start), err
}

// send writes n bytes to the sink at addr and checks its count.
func send(ctx context.Context, addr string, n int64) error {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if err := binary.Write(c, binary.BigEndian, uint64(n)); err != nil {
		return err
	}
	for left := n; left > 0; {
		b := chunk[:min(left, int64(len(chunk)))]
		if _, err := c.Write(b); err != nil {
			return fmt.Errorf("bulk send: %w", err)
		}
		left -= int64(len(b))
	}
	var got uint64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		return fmt.Errorf("bulk send: reading the sink's count: %w", err)
	}
	if got != uint64(n) {
		return fmt.Errorf("bulk send: sink counted %d bytes of %d", got, n)
	}
	return nil
}

// stream writes to the sink at addr until ctx is done: the background load
// of the interactive measurement.
func stream(ctx context.Context, addr string) error {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := binary.Write(c, binary.BigEndian, uint64(1<<62)); err != nil {
		return err
	}
	for {
		if _, err := c.Write(chunk); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("background stream: %w", err)
		}
	}
}

// roundTrips times up to n round trips of a 64-byte message on one
// kept-alive connection to the echo server at addr, after a short warm-up,
// stopping early (with at least a few) when limit passes.
func roundTrips(ctx context.Context, addr string, n int, limit time.Duration) ([]time.Duration, error) {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.SetDeadline(time.Now().Add(ioTimeout))
	msg, buf := make([]byte, 64), make([]byte, 64)
	const warmup, least = 20, 20
	out := make([]time.Duration, 0, n)
	var end time.Time
	for i := 0; len(out) < n; i++ {
		if i == warmup {
			end = time.Now().Add(limit)
		} else if i > warmup && len(out) >= least && time.Now().After(end) {
			break
		}
		msg[0] = byte(i)
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, fmt.Errorf("round trip: %w", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, fmt.Errorf("round trip: %w", err)
		}
		d := time.Since(start)
		if buf[0] != msg[0] {
			return nil, errors.New("round trip: echo differs from the message")
		}
		if i >= warmup {
			out = append(out, d)
		}
	}
	return out, nil
}

// connects times n connection setups to the echo server at addr: from the
// dial until the first byte comes back.
func connects(ctx context.Context, addr string, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	b := []byte{'x'}
	for range n {
		start := time.Now()
		c, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = c.Write(b)
		if err == nil {
			_, err = io.ReadFull(c, b)
		}
		d := time.Since(start)
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("connection setup: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// underLoad times up to n round trips (for at most limit) on the echo
// server at echoAddr while loaders connections stream to the sink at
// bulkAddr.
func underLoad(ctx context.Context, bulkAddr, echoAddr string, loaders, n int, limit time.Duration) ([]time.Duration, error) {
	lctx, stop := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(lctx)
	for range loaders {
		g.Go(func() error { return stream(gctx, bulkAddr) })
	}
	// Let the streams fill the path's buffers first.
	time.Sleep(200 * time.Millisecond)
	rtts, err := roundTrips(gctx, echoAddr, n, limit)
	stop()
	return rtts, errors.Join(err, g.Wait())
}

// simultaneous opens n connections to the echo server at addr at once,
// echoes 64 bytes on each, and closes them only when every one has
// answered, so all n are open together. It returns how many succeeded and
// how long it took.
func simultaneous(ctx context.Context, addr string, n int) (int, time.Duration, error) {
	var (
		mu    sync.Mutex
		ok    int
		first error
		all   sync.WaitGroup
		wg    sync.WaitGroup
	)
	release := make(chan struct{})
	all.Add(n)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			err := echoOnce(ctx, addr, i, &all, release)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else if first == nil {
				first = err
			}
		})
	}
	all.Wait()
	d := time.Since(start)
	close(release)
	wg.Wait()
	return ok, d, first
}

func echoOnce(ctx context.Context, addr string, i int, answered *sync.WaitGroup, release <-chan struct{}) error {
	done := sync.OnceFunc(answered.Done)
	defer done()
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	msg, buf := make([]byte, 64), make([]byte, 64)
	binary.BigEndian.PutUint64(msg, uint64(i))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("connection %d: %w", i, err)
	}
	if string(buf) != string(msg) {
		return fmt.Errorf("connection %d: echo differs", i)
	}
	done()
	select {
	case <-release:
	case <-ctx.Done():
	}
	return nil
}

// percentile is the p-th percentile (0..100) of ds, which it sorts.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

// median of xs (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}
