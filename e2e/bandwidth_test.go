package e2e

import (
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// limitRun is what one account's traffic did under its limit: bytes per
// bulk download over the measured window, and the round trips of a small
// request on a connection of its own beside them.
type limitRun struct {
	perConn []int64
	window  time.Duration
	rtts    []time.Duration
}

func (r limitRun) total() int64 {
	var n int64
	for _, b := range r.perConn {
		n += b
	}
	return n
}

func (r limitRun) rate() float64 { return float64(r.total()) / r.window.Seconds() }

func (r limitRun) rttQuantile(q float64) time.Duration {
	s := slices.Clone(r.rtts)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// runDownloads starts n endless downloads through the source's port and an
// interactive echo beside them, lets them settle for warm, measures for
// window, and stops them.
func runDownloads(t *testing.T, port, n int, warm, window time.Duration) limitRun {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	counts := make([]atomic.Int64, n)
	var conns []net.Conn
	var wg sync.WaitGroup
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte{'D'}); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for {
				m, err := c.Read(buf)
				counts[i].Add(int64(m))
				if err != nil {
					return
				}
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()

	echo, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	if _, err := echo.Write([]byte{'E'}); err != nil {
		t.Fatal(err)
	}
	var run limitRun
	stop := make(chan struct{})
	echoDone := make(chan error, 1)
	measuring := atomic.Bool{}
	go func() {
		req, resp := make([]byte, 64), make([]byte, 64)
		for {
			select {
			case <-stop:
				echoDone <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
			echo.SetDeadline(time.Now().Add(10 * time.Second))
			t0 := time.Now()
			if _, err := echo.Write(req); err != nil {
				echoDone <- err
				return
			}
			if _, err := io.ReadFull(echo, resp); err != nil {
				echoDone <- err
				return
			}
			if measuring.Load() {
				run.rtts = append(run.rtts, time.Since(t0))
			}
		}
	}()

	time.Sleep(warm)
	before := make([]int64, n)
	for i := range counts {
		before[i] = counts[i].Load()
	}
	measuring.Store(true)
	t0 := time.Now()
	time.Sleep(window)
	run.window = time.Since(t0)
	measuring.Store(false)
	for i := range counts {
		run.perConn = append(run.perConn, counts[i].Load()-before[i])
	}
	close(stop)
	if err := <-echoDone; err != nil {
		t.Fatalf("interactive echo: %v", err)
	}
	return run
}

// An account at the default 800 KB/s limit, eight bulk downloads through
// one tunnel of Warren's local proxies: together they get the limit, each
// an even share, and a small request beside them is answered promptly.
func TestBandwidthLimitEightDownloads(t *testing.T) {
	const limit = 800_000
	s := startService(t, "--default-account-bandwidth", fmt.Sprint(limit))
	dev := bulkDevice(t, 1<<40)
	_, ports, _, _ := s.tunnelPair(t, "limited", []string{"BULK"}, []string{dev})
	run := runDownloads(t, ports[0], 8, 2*time.Second, 10*time.Second)

	rate := run.rate()
	t.Logf("8 downloads at an 800 KB/s limit: %.0f KB/s in all over %v; per connection (KB/s): %v",
		rate/1000, run.window.Round(time.Millisecond), perSecondKB(run))
	t.Logf("interactive round trip beside them: p50 %v, p99 %v (%d samples)",
		run.rttQuantile(0.5).Round(time.Millisecond), run.rttQuantile(0.99).Round(time.Millisecond), len(run.rtts))
	if rate < 0.95*limit || rate > 1.05*limit {
		t.Errorf("total %.0f B/s, want within 5%% of %d", rate, limit)
	}
	share := float64(run.total()) / float64(len(run.perConn))
	for i, b := range run.perConn {
		if float64(b) < 0.8*share || float64(b) > 1.2*share {
			t.Errorf("download %d moved %d bytes, want within 20%% of an even share (%.0f)", i, b, share)
		}
	}
	if p50, p99 := run.rttQuantile(0.5), run.rttQuantile(0.99); p50 > 100*time.Millisecond || p99 > 250*time.Millisecond {
		t.Errorf("interactive round trip p50 %v, p99 %v; want at most 100 ms and 250 ms", p50, p99)
	}
}

func perSecondKB(r limitRun) []int {
	out := make([]int, len(r.perConn))
	for i, b := range r.perConn {
		out[i] = int(float64(b) / r.window.Seconds() / 1000)
	}
	return out
}
