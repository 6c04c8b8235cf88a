package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Faults: a relay killed and started again, a WebSocket cut or silenced
// between a local proxy and the relay, a device service that refuses or
// dies. Each is driven with the real binaries and real sockets.

// reconnectLimit is how soon after the relay is back (or a WebSocket was
// lost) new connections through the tunnel must work.
const reconnectLimit = 10 * time.Second

// faultDevice is the device service of the fault tests. A client's first
// byte says what it wants: 'D' an endless download of the pattern; 'E'
// echoes until the client half-closes; 'X' sends 64 KiB of the pattern and
// then dies (closes with a TCP reset).
func faultDevice(t *testing.T) string {
	t.Helper()
	return tcpDevice(t, func(c *net.TCPConn) {
		var cmd [1]byte
		if _, err := io.ReadFull(c, cmd[:]); err != nil {
			return
		}
		switch cmd[0] {
		case 'D':
			io.Copy(c, &patternReader{})
		case 'E':
			io.Copy(c, c)
			c.CloseWrite()
		case 'X':
			io.Copy(c, io.LimitReader(&patternReader{}, 64<<10))
			c.SetLinger(0)
		}
	})
}

// download is a client reading the device's endless download, counting
// the bytes and checking them, until its connection ends.
type download struct {
	c    net.Conn
	n    atomic.Int64
	done chan struct{}
	err  error // how the connection ended; set before done closes
}

func startDownload(t *testing.T, port int) *download {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte{'D'}); err != nil {
		t.Fatal(err)
	}
	d := &download{c: c, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		buf := make([]byte, 64<<10)
		var off int64
		for {
			n, err := c.Read(buf)
			for i := range n {
				if buf[i] != byte((off+int64(i))%251) {
					d.err = fmt.Errorf("byte %d is %d, want %d", off+int64(i), buf[i], (off+int64(i))%251)
					return
				}
			}
			off += int64(n)
			d.n.Store(off)
			if err != nil {
				d.err = err
				return
			}
		}
	}()
	return d
}

// flowing waits until the download has moved more bytes than it had.
func (d *download) flowing(t *testing.T, what string) {
	t.Helper()
	from := d.n.Load()
	waitFor(t, 20*time.Second, what+" to move bytes", func() bool { return d.n.Load() > from+(256<<10) })
}

// wasReset waits for the download to end and checks that it ended the way
// a cut-off transfer must: with a TCP reset (ECONNRESET), which no client
// can take for the end of a complete transfer.
func (d *download) wasReset(t *testing.T, what string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-d.done:
	case <-time.After(within):
		t.Fatalf("%s: still open %v after the fault (%d bytes read)", what, within, d.n.Load())
	}
	if !errors.Is(d.err, syscall.ECONNRESET) {
		t.Fatalf("%s: ended after %d bytes with %v; want a connection reset", what, d.n.Load(), d.err)
	}
	return time.Since(start)
}

// echoWorks reports whether one connection through port carries a small
// echo round trip.
func echoWorks(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := []byte("Eare you there?")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(got) != string(msg[1:]) {
		return fmt.Errorf("echo %q", got)
	}
	return nil
}

// waitEcho waits until a new connection through port works and returns how
// long that took.
func waitEcho(t *testing.T, port int, within time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		if err = echoWorks(port); err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: no working connection within %v: %v", what, within, err)
	return 0
}

// pairVia starts a destination and a source local proxy for tun's one
// service svc, each reaching the relay through the given endpoint (the
// relay's own address, or a TCP proxy in front of it), and waits until the
// source's port accepts and both are connected.
func (s *service) pairVia(t *testing.T, tun openTunnelOut, svc, target, srcEndpoint, dstEndpoint string, extra ...string) (port int, src, dst *proc) {
	t.Helper()
	ca := filepath.Join(s.dir, "ca.pem")
	port = freePort(t)
	dst = start(t, "destination localproxy", nil, bin.localproxy,
		append([]string{"-e", dstEndpoint, "-c", ca, "-d", svc + "=" + target, "-t", tun.DestinationAccessToken}, extra...)...)
	src = start(t, "source localproxy", nil, bin.localproxy,
		append([]string{"-e", srcEndpoint, "-c", ca, "-s", fmt.Sprintf("%s=%d", svc, port), "-t", tun.SourceAccessToken}, extra...)...)
	waitPort(t, port)
	s.waitConnected(t, tun.TunnelID)
	return port, src, dst
}

func (s *service) waitConnected(t *testing.T, id string) {
	t.Helper()
	waitFor(t, 30*time.Second, "both peers connected", func() bool {
		var d describeOut
		s.warren(t, &d, "describe-tunnel", "--tunnel-id", id)
		return d.Tunnel.SourceConnectionState.Status == "CONNECTED" && d.Tunnel.DestinationConnectionState.Status == "CONNECTED"
	})
}

// The relay is SIGKILLed during transfers and started again on the same
// port and data directory: the transfers end with a reset at both local
// proxies' clients, both local proxies reconnect by themselves with their
// tokens, and new connections work within reconnectLimit of the restart.
func TestRelayKilledDuringTransfers(t *testing.T) {
	s := startService(t)
	dev := faultDevice(t)
	tun, ports, src, dst := s.tunnelPair(t, "killed", []string{"BULK"}, []string{dev})
	var downloads []*download
	for i := range 4 {
		d := startDownload(t, ports[0])
		d.flowing(t, fmt.Sprintf("download %d", i))
		downloads = append(downloads, d)
	}

	s.p.kill()
	for i, d := range downloads {
		d.wasReset(t, fmt.Sprintf("download %d", i), 10*time.Second)
	}
	t.Logf("4 downloads cut by the SIGKILL after %d-%d KiB, each ended with a reset", minRead(downloads)>>10, maxRead(downloads)>>10)

	s.start(t)
	back := time.Now()
	took := waitEcho(t, ports[0], reconnectLimit, "after the restart")
	t.Logf("a new connection worked %v after the relay listened again", took.Round(time.Millisecond))
	if src.exited() || dst.exited() {
		t.Fatal("a local proxy exited instead of reconnecting")
	}
	s.waitConnected(t, tun.TunnelID)
	d := startDownload(t, ports[0])
	d.flowing(t, "a download after the restart")
	t.Logf("both proxies reconnected with their tokens; a download flows again %v after the restart", time.Since(back).Round(time.Millisecond))
}

func minRead(ds []*download) int64 {
	m := ds[0].n.Load()
	for _, d := range ds {
		m = min(m, d.n.Load())
	}
	return m
}

func maxRead(ds []*download) int64 {
	var m int64
	for _, d := range ds {
		m = max(m, d.n.Load())
	}
	return m
}

// tcpCut is a TCP proxy of the test's own between a local proxy and the
// relay, which can drop the connections it carries (cut) or stop
// forwarding them without closing them (freeze), the way a NAT or
// firewall that lost its state does. Connections made after either are
// forwarded normally.
type tcpCut struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	pairs  []*cutPair
	wg     sync.WaitGroup
	closed chan struct{}
}

type cutPair struct {
	a, b   net.Conn
	frozen atomic.Bool
}

func newTCPCut(t *testing.T, target string) *tcpCut {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpCut{ln: ln, target: target, closed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		close(p.closed)
		p.mu.Lock()
		for _, cp := range p.pairs {
			cp.a.Close()
			cp.b.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *tcpCut) addr() string { return p.ln.Addr().String() }

func (p *tcpCut) accept() {
	defer p.wg.Done()
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			a.Close()
			continue
		}
		cp := &cutPair{a: a, b: b}
		p.mu.Lock()
		p.pairs = append(p.pairs, cp)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.forward(cp, a, b)
		go p.forward(cp, b, a)
	}
}

// forward copies from one end to the other until either fails; once the
// pair is frozen it neither reads nor writes again, and keeps both open.
func (p *tcpCut) forward(cp *cutPair, from, to net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if cp.frozen.Load() {
			<-p.closed
			return
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			from.Close()
			to.Close()
			return
		}
	}
}

// cut closes every connection the proxy carries now.
func (p *tcpCut) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cp := range p.pairs {
		cp.a.Close()
		cp.b.Close()
	}
	n := len(p.pairs)
	p.pairs = nil
	return n
}

// freeze stops forwarding every connection the proxy carries now, without
// closing any.
func (p *tcpCut) freeze() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cp := range p.pairs {
		cp.frozen.Store(true)
	}
	n := len(p.pairs)
	p.pairs = nil
	return n
}

// One local proxy's WebSocket is cut mid-transfer by a TCP proxy between
// it and the relay: first the destination's connection is dropped, then
// the source's stops forwarding without closing (half-open). Each time
// the interrupted transfers end with a reset at the client, the cut proxy
// reconnects by itself, and new connections work within reconnectLimit.
// The silent connection is found by the source's pings: with a ping period
// of 1 s the limit is two periods, asserted with a margin for a loaded
// machine.
func TestWebSocketCutMidTransfer(t *testing.T) {
	const pingPeriod = time.Second
	s := startService(t)
	dev := faultDevice(t)
	tun := s.openTunnel(t, "cut", "BULK")
	srcCut, dstCut := newTCPCut(t, s.addr), newTCPCut(t, s.addr)
	settings := filepath.Join(t.TempDir(), "settings.json")
	os.WriteFile(settings, []byte(fmt.Sprintf(`{"tunneling":{"proxy":{"websocket":{"ping_period_ms":"%d"}}}}`, pingPeriod.Milliseconds())), 0o644)
	port, src, dst := s.pairVia(t, tun, "BULK", dev, srcCut.addr(), dstCut.addr(), "--settings-json", settings)

	// The destination's WebSocket is dropped: the relay resets the
	// source's streams, whose clients see the reset at once.
	d := startDownload(t, port)
	d.flowing(t, "the first download")
	if n := dstCut.cut(); n != 1 {
		t.Fatalf("the destination had %d connections through the cut proxy", n)
	}
	took := d.wasReset(t, "download across the dropped destination", 10*time.Second)
	t.Logf("destination's WebSocket dropped: the client's download was reset after %v", took.Round(time.Millisecond))
	took = waitEcho(t, port, reconnectLimit, "after the destination's WebSocket dropped")
	t.Logf("a new connection worked %v after the drop", took.Round(time.Millisecond))
	s.waitConnected(t, tun.TunnelID)

	// The source's WebSocket goes silent without closing: only the pings
	// can tell. Its clients are reset when the source gives it up.
	d = startDownload(t, port)
	d.flowing(t, "the second download")
	frozen := time.Now()
	if n := srcCut.freeze(); n != 1 {
		t.Fatalf("the source had %d connections through the cut proxy", n)
	}
	limit := 2 * pingPeriod // localproxy.Settings.SilenceLimit
	took = d.wasReset(t, "download across the silent WebSocket", limit+8*time.Second)
	t.Logf("source's WebSocket silenced: detected and the client's download reset after %v (limit %v)", took.Round(time.Millisecond), limit)
	if took < limit/4 {
		t.Errorf("the silent WebSocket was given up after %v, before the %v limit: something else ended it", took, limit)
	}
	took = waitEcho(t, port, reconnectLimit, "after the source's WebSocket went silent")
	t.Logf("a new connection worked %v after the source gave the silent WebSocket up (%v after it went silent)",
		took.Round(time.Millisecond), time.Since(frozen).Round(time.Millisecond))
	if !strings.Contains(src.output(), "lost the tunnel connection") {
		t.Error("the source did not log the lost connection")
	}
	if src.exited() || dst.exited() {
		t.Fatal("a local proxy exited instead of reconnecting")
	}
}

// The device's service refuses a connection, or dies in the middle of one:
// that client's socket closes, and the tunnel's other connections carry on
// undisturbed.
func TestDeviceServiceRefusesOrDies(t *testing.T) {
	s := startService(t)
	dev := faultDevice(t)
	refusing := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	_, ports, _, _ := s.tunnelPair(t, "flaky", []string{"BULK", "DOWN"}, []string{dev, refusing})
	var bystanders []*download
	for i := range 3 {
		d := startDownload(t, ports[0])
		d.flowing(t, fmt.Sprintf("download %d", i))
		bystanders = append(bystanders, d)
	}
	closes := func(what string, c net.Conn) []byte {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		b, err := io.ReadAll(c)
		if os.IsTimeout(err) {
			t.Fatalf("%s: the client's socket is still open after 15 s", what)
		}
		return b
	}

	// A refused connection. The source proxy resets its client's socket as
	// soon as the relay answers, which on a loaded machine can come before
	// the dial has looked at its socket: the dial itself then sees the reset.
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[1])); errors.Is(err, syscall.ECONNRESET) {
		t.Log("the refused connection was reset before the dial returned")
	} else if err != nil {
		t.Fatal(err)
	} else {
		defer c.Close()
		c.Write([]byte("hello?"))
		if b := closes("refused", c); len(b) != 0 {
			t.Fatalf("the refused connection read %d bytes", len(b))
		}
	}

	// Connections whose service dies after 64 KiB, several at once.
	for i := range 4 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{'X'})
		if b := closes(fmt.Sprintf("dying service %d", i), c); len(b) > 64<<10 {
			t.Fatalf("dying service %d: read %d bytes, more than it sent", i, len(b))
		}
	}

	for i, d := range bystanders {
		select {
		case <-d.done:
			t.Fatalf("download %d ended with %v after %d bytes", i, d.err, d.n.Load())
		default:
		}
		d.flowing(t, fmt.Sprintf("download %d, afterwards", i))
	}
	if err := echoWorks(ports[0]); err != nil {
		t.Fatalf("a new connection afterwards: %v", err)
	}
}
