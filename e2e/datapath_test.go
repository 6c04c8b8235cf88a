package e2e

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// bulkDevice is a device service for the data path tests. A client's first
// byte says what it wants: 'D' downloads size bytes of a pattern; 'U'
// uploads until it shuts down its side and gets the count back; 's' is the
// same upload read slowly for its first 8 seconds (4 KiB every 20 ms), a
// device application that falls behind, then at full speed; 'E' echoes;
// 'd' downloads at 100 KB/s (5000 bytes every 50 ms) until the client
// closes.
func bulkDevice(t *testing.T, size int64) string {
	t.Helper()
	return tcpDevice(t, func(c *net.TCPConn) {
		var cmd [1]byte
		if _, err := io.ReadFull(c, cmd[:]); err != nil {
			return
		}
		switch cmd[0] {
		case 'D':
			io.Copy(c, io.LimitReader(&patternReader{}, size))
		case 'E':
			io.Copy(c, c)
		case 'd':
			var p patternReader
			buf := make([]byte, 5000)
			for {
				p.Read(buf)
				if _, err := c.Write(buf); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		case 'U', 's':
			var n int64
			buf := make([]byte, 64<<10)
			slowUntil := time.Now().Add(8 * time.Second)
			for {
				if cmd[0] == 's' && time.Now().Before(slowUntil) {
					time.Sleep(20 * time.Millisecond)
					buf = buf[:4<<10]
				} else {
					buf = buf[:cap(buf)]
				}
				m, err := c.Read(buf)
				n += int64(m)
				if err != nil {
					break
				}
			}
			binary.Write(c, binary.BigEndian, n)
		}
	})
}

// patternReader yields byte i = i mod 251 of an endless stream.
type patternReader struct{ off int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte((p.off + int64(i)) % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}

// checkPattern reads exactly size bytes of the pattern from r.
func checkPattern(r io.Reader, size int64) error {
	buf := make([]byte, 64<<10)
	var off int64
	for off < size {
		n, err := r.Read(buf[:min(int64(len(buf)), size-off)])
		for i := range n {
			if buf[i] != byte((off+int64(i))%251) {
				return fmt.Errorf("byte %d is %d, want %d", off+int64(i), buf[i], (off+int64(i))%251)
			}
		}
		off += int64(n)
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", off, size, err)
		}
	}
	return nil
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// A connection whose reader falls behind (a client that stops reading a
// download, a device application that reads an upload slowly) slows only
// itself: the other connections of the tunnel keep their speed, every
// process's memory stays bounded, and the slow connections lose nothing.
// Warren's local proxies keep each connection within the window its reader
// announced, so a full connection never holds up the tunnel's reader.
func TestSlowReaderBesideFastOnes(t *testing.T) {
	const (
		size    = 16 << 20
		fast    = 4
		rssMax  = 96.0 // MiB, each process
		timeout = 60 * time.Second
	)
	s := startService(t)
	dev := bulkDevice(t, size)
	_, ports, src, dst := s.tunnelPair(t, "bulk", []string{"BULK"}, []string{dev})
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	dial := func(cmd byte) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write([]byte{cmd}); err != nil {
			t.Fatal(err)
		}
		return c
	}

	// The slow ones: a download nobody reads, an upload read slowly.
	slowDown := dial('D')
	slowUp := dial('s')
	var slowSent atomic.Int64
	stopSlow := make(chan struct{})
	slowDone := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			select {
			case <-stopSlow:
				slowDone <- slowUp.(*net.TCPConn).CloseWrite()
				return
			default:
			}
			slowUp.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := slowUp.Write(chunk)
			slowSent.Add(int64(n))
			if err != nil && !os.IsTimeout(err) {
				slowDone <- err
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // let them fill what they can

	// Memory of the three processes, sampled while the fast ones run.
	procs := map[string]int{"warren serve": s.p.cmd.Process.Pid, "source": src.cmd.Process.Pid, "destination": dst.cmd.Process.Pid}
	peak := map[string]float64{}
	var peakMu sync.Mutex
	stopSample := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			peakMu.Lock()
			for name, pid := range procs {
				peak[name] = max(peak[name], rssMiB(pid))
			}
			peakMu.Unlock()
			select {
			case <-stopSample:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	var g errgroup.Group
	for i := range fast {
		g.Go(func() error {
			c := dial('D')
			c.SetDeadline(time.Now().Add(timeout))
			if err := checkPattern(c, size); err != nil {
				return fmt.Errorf("fast download %d: %w", i, err)
			}
			return nil
		})
		g.Go(func() error {
			c := dial('U')
			c.SetDeadline(time.Now().Add(timeout))
			if _, err := io.Copy(c, io.LimitReader(&patternReader{}, size)); err != nil {
				return fmt.Errorf("fast upload %d: %w", i, err)
			}
			c.(*net.TCPConn).CloseWrite()
			var n int64
			if err := binary.Read(c, binary.BigEndian, &n); err != nil || n != size {
				return fmt.Errorf("fast upload %d: device counted %d bytes (%v), want %d", i, n, err, size)
			}
			return nil
		})
	}
	err := g.Wait()
	elapsed := time.Since(start)
	close(stopSample)
	sampler.Wait()
	if err != nil {
		t.Fatal(err)
	}
	mb := float64(2*fast*size) / 1e6
	t.Logf("%d fast connections moved %.0f MB beside 2 slow ones in %v (%.0f MB/s)", 2*fast, mb, elapsed.Round(time.Millisecond), mb/elapsed.Seconds())
	for name, mib := range peak {
		t.Logf("peak RSS of %s: %.1f MiB (bound %.0f MiB)", name, mib, rssMax)
		if mib > rssMax {
			t.Errorf("%s used %.1f MiB, more than %.0f MiB", name, mib, rssMax)
		}
	}

	// The slow ones were only slow: nothing was lost or reset.
	slowDown.SetDeadline(time.Now().Add(timeout))
	if err := checkPattern(slowDown, size); err != nil {
		t.Fatalf("the download nobody read for a while: %v", err)
	}
	close(stopSlow)
	if err := <-slowDone; err != nil {
		t.Fatalf("slow upload: %v", err)
	}
	slowUp.SetDeadline(time.Now().Add(timeout))
	var n int64
	if err := binary.Read(slowUp, binary.BigEndian, &n); err != nil || n != slowSent.Load() {
		t.Fatalf("slow upload: device counted %d bytes (%v), the client sent %d", n, err, slowSent.Load())
	}
	t.Logf("the slow upload delivered all its %d bytes", n)
}
