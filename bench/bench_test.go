// Package bench measures Warren's data path against its baseline, in the
// same run: every iteration moves the same bytes once over direct loopback
// TCP and once through a complete loopback tunnel (server, relay, both local
// proxies over TLS WebSockets), and reports both and their ratio. Run it
// with scripts/bench.sh, which prints medians over several runs.
package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/warrentunnel/warren/internal/demo"
)

// target is a TCP server on loopback: "sink" reads everything and answers
// with the byte count, "echo" echoes.
type target struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startTarget(b *testing.B, echo bool) *target {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	t := &target{ln: ln}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				defer c.Close()
				if echo {
					io.Copy(c, c)
					return
				}
				n, _ := io.Copy(io.Discard, c)
				binary.Write(c, binary.BigEndian, n)
			}()
		}
	}()
	b.Cleanup(func() { ln.Close(); t.wg.Wait() })
	return t
}

// tunnelTo opens a loopback tunnel whose service reaches addr.
func tunnelTo(b *testing.B, addr string) string {
	tun, err := demo.OpenTunnel(context.Background(), demo.TunnelConfig{Targets: map[string]string{"BENCH": addr}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tun.Close() })
	return tun.Sources["BENCH"]
}

var chunk = make([]byte, 256<<10)

// send writes size bytes to a sink at addr and waits for its count.
func send(addr string, size int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	for left := size; left > 0; {
		n := min(left, int64(len(chunk)))
		if _, err := c.Write(chunk[:n]); err != nil {
			return err
		}
		left -= n
	}
	c.(*net.TCPConn).CloseWrite()
	var got int64
	if err := binary.Read(c, binary.BigEndian, &got); err != nil {
		return fmt.Errorf("read count: %w", err)
	}
	if got != size {
		return fmt.Errorf("sink got %d bytes, want %d", got, size)
	}
	return nil
}

// compare runs op against the direct and the tunnelled address once per
// iteration and reports both times per op and their ratio.
func compare(b *testing.B, direct, tunnelled string, bytesPerOp int64, op func(addr string) error) {
	var dDirect, dTunnel time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := op(direct); err != nil {
			b.Fatal("direct:", err)
		}
		t1 := time.Now()
		if err := op(tunnelled); err != nil {
			b.Fatal("tunnel:", err)
		}
		dDirect += t1.Sub(t0)
		dTunnel += time.Since(t1)
	}
	n := float64(b.N)
	if bytesPerOp > 0 {
		b.ReportMetric(float64(bytesPerOp)*n/dDirect.Seconds()/1e6, "direct-MB/s")
		b.ReportMetric(float64(bytesPerOp)*n/dTunnel.Seconds()/1e6, "tunnel-MB/s")
	} else {
		b.ReportMetric(float64(dDirect.Microseconds())/n, "direct-µs/op")
		b.ReportMetric(float64(dTunnel.Microseconds())/n, "tunnel-µs/op")
	}
	b.ReportMetric(dTunnel.Seconds()/dDirect.Seconds(), "tunnel/direct-time")
}

// One connection moving 32 MiB one way.
func BenchmarkThroughput(b *testing.B) {
	sink := startTarget(b, false)
	tun := tunnelTo(b, sink.ln.Addr().String())
	const size = 32 << 20
	compare(b, sink.ln.Addr().String(), tun, size, func(addr string) error { return send(addr, size) })
}

// 16 simultaneous connections moving 4 MiB each.
func BenchmarkParallel16(b *testing.B) {
	sink := startTarget(b, false)
	tun := tunnelTo(b, sink.ln.Addr().String())
	const conns, size = 16, 4 << 20
	compare(b, sink.ln.Addr().String(), tun, conns*size, func(addr string) error {
		var g errgroup.Group
		for i := 0; i < conns; i++ {
			g.Go(func() error { return send(addr, size) })
		}
		return g.Wait()
	})
}

// A 64-byte request and its echo on an open connection: latency.
func BenchmarkRoundTrip(b *testing.B) {
	echo := startTarget(b, true)
	tun := tunnelTo(b, echo.ln.Addr().String())
	conns := map[string]net.Conn{}
	for _, addr := range []string{echo.ln.Addr().String(), tun} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.(*net.TCPConn).SetNoDelay(true)
		conns[addr] = c
		b.Cleanup(func() { c.Close() })
	}
	msg, buf := make([]byte, 64), make([]byte, 64)
	compare(b, echo.ln.Addr().String(), tun, 0, func(addr string) error {
		c := conns[addr]
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err := io.ReadFull(c, buf)
		return err
	})
}

// Connection setup: connect, one request/echo, close.
func BenchmarkConnect(b *testing.B) {
	echo := startTarget(b, true)
	tun := tunnelTo(b, echo.ln.Addr().String())
	msg := make([]byte, 64)
	compare(b, echo.ln.Addr().String(), tun, 0, func(addr string) error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 64))
		return err
	})
}
