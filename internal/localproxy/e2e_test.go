package localproxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/wire"
)

// testServer is a local TCP server run by a test; handle runs per connection.
type testServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func newTestServer(t testing.TB, handle func(c *net.TCPConn)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln}
	var mu sync.Mutex
	var conns []net.Conn
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *testServer) addr() string { return s.ln.Addr().String() }

// echo copies everything back and closes after the client's end of stream.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// tunnelPair starts a relay, a destination mapping services to targets and
// a source listening on free ports; it returns the source's listen addresses.
func tunnelPair(t *testing.T, targets map[string]string, tune func(*Settings)) (*testRelay, map[string]string) {
	t.Helper()
	ids := make([]string, 0, len(targets))
	src := map[string]string{}
	for id := range targets {
		ids = append(ids, id)
		src[id] = "0"
	}
	r := newTestRelay(t, ids...)
	dcfg := r.proxyConfig(ModeDestination, targets)
	scfg := r.proxyConfig(ModeSource, src)
	if tune != nil {
		tune(&dcfg.Settings)
		tune(&scfg.Settings)
	}
	d := startProxy(t, dcfg)
	d.addrs(t)
	s := startProxy(t, scfg)
	return r, s.addrs(t)
}

// roundTrip sends data through addr to an echo target and checks it comes
// back intact, writing and reading at once.
func roundTrip(addr string, data []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, rerr := io.Copy(h, c)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read after %d bytes: %w", n, rerr)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) || n != int64(len(data)) {
		return fmt.Errorf("echo of %d bytes came back as %d bytes with another SHA-256", len(data), n)
	}
	return nil
}

func TestEchoManyConnections(t *testing.T) {
	const conns, size = 64, 1 << 20
	srv := newTestServer(t, echo)
	r, addrs := tunnelPair(t, map[string]string{"ECHO": srv.addr()}, nil)

	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		go func() {
			data := make([]byte, size)
			rand.Read(data)
			errs <- roundTrip(addrs["ECHO"], data)
		}()
	}
	for i := 0; i < conns; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// Every connection got its own id on the one stream.
	starts := 0
	for _, f := range r.framesFrom("source", false) {
		switch f.msg.Type {
		case wire.TypeStreamStart:
			starts++
			if f.msg.StreamID != 1 || f.msg.ConnectionID != 1 {
				t.Errorf("first start %v", f)
			}
		case wire.TypeConnectionStart:
			starts++
		}
	}
	if starts != conns {
		t.Errorf("%d start frames for %d connections", starts, conns)
	}
	for _, f := range r.framesFrom("source", true) {
		if f.payload > wire.MaxPayload {
			t.Errorf("payload of %d bytes", f.payload)
		}
	}
}

func TestTwoServices(t *testing.T) {
	a := newTestServer(t, echo)
	b := newTestServer(t, func(c *net.TCPConn) { // answers in upper case
		data, _ := io.ReadAll(c)
		c.Write(bytes.ToUpper(data))
	})
	r, addrs := tunnelPair(t, map[string]string{"ECHO": a.addr(), "UPPER": b.addr()}, nil)
	for i := 0; i < 2; i++ {
		for svc, want := range map[string]string{"ECHO": "hello", "UPPER": "HELLO"} {
			c := dialLocal(t, addrs[svc])
			c.Write([]byte("hello"))
			c.CloseWrite()
			if got := readAllTimeout(t, c); got != want {
				t.Errorf("%s answered %q", svc, got)
			}
		}
	}
	// Each service has its own stream 1 and its own connection ids.
	next := map[string]uint32{}
	for _, f := range r.framesFrom("source", false) {
		if f.msg.Type != wire.TypeStreamStart && f.msg.Type != wire.TypeConnectionStart {
			continue
		}
		next[f.msg.ServiceID]++
		if f.msg.StreamID != 1 || f.msg.ConnectionID != next[f.msg.ServiceID] {
			t.Errorf("start frame %v", f)
		}
	}
	if next["ECHO"] != 2 || next["UPPER"] != 2 {
		t.Errorf("start frames per service: %v", next)
	}
}

// TestHalfClose: a client that shuts down its write side after its request
// still gets the whole answer, which the target sends only after it saw the
// end of the request.
func TestHalfClose(t *testing.T) {
	srv := newTestServer(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		time.Sleep(50 * time.Millisecond)
		fmt.Fprintf(c, "got %d bytes", n)
	})
	_, addrs := tunnelPair(t, map[string]string{"SVC": srv.addr()}, nil)
	c := dialLocal(t, addrs["SVC"])
	if _, err := c.Write(make([]byte, 300_000)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if got := readAllTimeout(t, c); got != "got 300000 bytes" {
		t.Errorf("answer %q", got)
	}
}

// TestTargetClosesFirst: the destination's target closes; the source's
// client sees the end of stream, and both sides send one CONNECTION_RESET.
func TestTargetClosesFirst(t *testing.T) {
	srv := newTestServer(t, func(c *net.TCPConn) { c.Write([]byte("banner")) })
	r, addrs := tunnelPair(t, map[string]string{"HTTP": srv.addr()}, nil)
	c := dialLocal(t, addrs["HTTP"])
	if got := readAllTimeout(t, c); got != "banner" {
		t.Errorf("read %q", got)
	}
	c.Close()
	checkRaw(t, r.waitControl("destination", 1)[0], capConnResetV3c1)
	fs := r.waitControl("source", 2)
	checkRaw(t, fs[1], capConnResetV3c1)
}

// A relay that goes silent (no pong to the pings, no frame) is given up
// after SilenceLimit, two ping periods: the open connection is reset and
// the proxy reconnects.
func TestSilentRelayGivenUp(t *testing.T) {
	const period = 500 * time.Millisecond
	srv := newTestServer(t, echo)
	r, addrs := tunnelPair(t, map[string]string{"ECHO": srv.addr()}, func(s *Settings) { s.PingPeriod = period })
	held := dialLocal(t, addrs["ECHO"])
	if err := roundTrip(addrs["ECHO"], []byte("before")); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.silent = true
	r.mu.Unlock()
	start := time.Now()
	readUntilReset(t, held)
	took := time.Since(start)
	if took > 2*period+5*time.Second {
		t.Errorf("the silent relay was given up after %v; the limit is %v", took, 2*period)
	}
	deadline := time.Now().Add(20 * time.Second)
	for r.handshakeCount("source") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the source did not reconnect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the silent relay was given up after %v (limit %v)", took.Round(time.Millisecond), 2*period)
}

func TestReconnectAfterDrop(t *testing.T) {
	srv := newTestServer(t, echo)
	r, addrs := tunnelPair(t, map[string]string{"ECHO": srv.addr()}, nil)
	held := dialLocal(t, addrs["ECHO"])
	if err := roundTrip(addrs["ECHO"], []byte("before")); err != nil {
		t.Fatal(err)
	}

	r.drop("source")
	// The open connection cannot survive the WebSocket: it is reset.
	if got := readUntilReset(t, held); got != "" {
		t.Errorf("held connection read %q", got)
	}
	r.waitFor("source reconnect", func() bool {
		n := 0
		for _, h := range r.handshakes {
			if h.mode == "source" {
				n++
			}
		}
		return n >= 2 && r.peers["source"] != nil
	})
	var first, second handshake
	r.mu.Lock()
	for _, h := range r.handshakes {
		if h.mode == "source" {
			if first.header == nil {
				first = h
			} else {
				second = h
			}
		}
	}
	r.mu.Unlock()
	for _, k := range []string{"access-token", "client-token"} {
		if first.header.Get(k) == "" || first.header.Get(k) != second.header.Get(k) {
			t.Errorf("%s changed on reconnect: %q then %q", k, first.header.Get(k), second.header.Get(k))
		}
	}
	if err := retryRoundTrip(addrs["ECHO"], []byte("after source reconnect")); err != nil {
		t.Fatal(err)
	}

	r.drop("destination")
	r.waitFor("destination reconnect", func() bool {
		n := 0
		for _, h := range r.handshakes {
			if h.mode == "destination" {
				n++
			}
		}
		return n >= 2 && r.peers["destination"] != nil
	})
	if err := retryRoundTrip(addrs["ECHO"], []byte("after destination reconnect")); err != nil {
		t.Fatal(err)
	}
}

// retryRoundTrip allows for the moment between a reconnect and SERVICE_IDS,
// when the source refuses connections.
func retryRoundTrip(addr string, data []byte) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = roundTrip(addr, data); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// TestStalledClientIsReset: a local client that stops reading gets its
// connection reset once its queue stays full; the tunnel keeps working for
// the other connections meanwhile.
func TestStalledClientIsReset(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	cfg := r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"})
	cfg.Settings.QueueBytes = wire.MaxPayload
	cfg.Settings.StallTimeout = 300 * time.Millisecond
	p := startProxy(t, cfg)
	addr := p.addrs(t)["HTTP"]
	stalled := dialLocal(t, addr)
	stalled.SetReadBuffer(4096)
	r.waitControl("source", 1)
	other := dialLocal(t, addr)
	r.waitControl("source", 2)

	chunk := make([]byte, wire.MaxPayload)
	done := make(chan struct{})
	go func() { // the played destination floods connection 1
		defer close(done)
		for i := 0; i < 400; i++ {
			r.mu.Lock()
			reset := false
			for _, f := range r.frames {
				reset = reset || f.msg.Type == wire.TypeConnectionReset && f.msg.ConnectionID == 1
			}
			r.mu.Unlock()
			if reset {
				return
			}
			r.send("source", wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1, Payload: chunk})
		}
	}()
	r.waitFor("CONNECTION_RESET of the stalled connection", func() bool {
		for _, f := range r.frames {
			if f.msg.Type == wire.TypeConnectionReset && f.msg.ConnectionID == 1 {
				return true
			}
		}
		return false
	})
	<-done
	r.send("source", wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2, Payload: []byte("still here")})
	buf := make([]byte, 10)
	other.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(other, buf); err != nil || string(buf) != "still here" {
		t.Errorf("other connection read %q, %v", buf, err)
	}
}

// A client that closes its download while the device's application keeps
// sending (and never reads, so it never sees the end of stream the source
// passes on) ends the device's connection too: the source, whose writes to
// the closed client fail, tells the destination that the connection is gone,
// not just shut for writing, and the destination closes its device socket
// instead of carrying data nobody will read.
func TestClosedClientEndsDeviceConnection(t *testing.T) {
	gone := make(chan error, 1)
	dev := newTestServer(t, func(c *net.TCPConn) {
		buf := make([]byte, 16<<10)
		for {
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write(buf); err != nil {
				gone <- err
				return
			}
		}
	})
	_, src := tunnelPair(t, map[string]string{"BULK": dev.addr()}, nil)
	c, err := net.Dial("tcp", src["BULK"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-gone:
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the device's writes stalled instead of failing: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the device's connection outlived its client")
	}
}
