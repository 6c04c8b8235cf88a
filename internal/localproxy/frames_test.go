package localproxy

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/wire"
)

// Frames the official proxy sent in the captures (shared/reference/captures).
const (
	capStreamStartV3   = "000c080210012a04485454503801" // a: stream 1, conn 1, HTTP
	capConnStartV3     = "000c080610012a04485454503802" // b: conn 2
	capConnResetV3c1   = "000c080710012a04485454503801" // a: conn 1
	capConnResetV3c2   = "000c080710012a04485454503802"
	capStreamStartV2   = "000a080210012a0448545450" // d2
	capStreamResetV2   = "000a080310012a0448545450" // d2, and e (destination dial failure)
	capStreamStartV2s2 = "000a080210022a0448545450"
	capStreamStartV1   = "000408021001" // d1c
	capStreamResetV1   = "000408031001"
)

func dialLocal(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func checkRaw(t *testing.T, f recFrame, wantHex string) {
	t.Helper()
	if got := hex.EncodeToString(f.raw); got != wantHex {
		t.Errorf("frame %v = %s, want %s", f, got, wantHex)
	}
}

func readAllTimeout(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// readUntilReset reads c until it fails, which must be with a TCP reset: a
// connection that was cut off, not one that ended.
func readUntilReset(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %q, then %v; want a connection reset", b, err)
	}
	return string(b)
}

func dataFrom(r *testRelay, mode string, conn uint32, payload string) func() bool {
	return func() bool {
		for _, f := range r.frames {
			if f.mode == mode && f.msg.Type == wire.TypeData && f.msg.ConnectionID == conn && string(f.msg.Payload) == payload {
				return true
			}
		}
		return false
	}
}

// TestSourceFramesV3 plays the destination and checks the source's frames
// byte for byte against the captures.
func TestSourceFramesV3(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	p := startProxy(t, r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"}))
	addr := p.addrs(t)["HTTP"]

	c1 := dialLocal(t, addr)
	checkRaw(t, r.waitControl("source", 1)[0], capStreamStartV3)
	c2 := dialLocal(t, addr) // simultaneous: joins stream 1 as connection 2
	checkRaw(t, r.waitControl("source", 2)[1], capConnStartV3)

	if _, err := c1.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	r.waitFor("DATA hello on conn 1", dataFrom(r, "source", 1, "hello"))
	for _, f := range r.framesFrom("source", true) {
		if f.msg.Type == wire.TypeData && (f.msg.StreamID != 1 || f.msg.ServiceID != "HTTP") {
			t.Errorf("DATA frame %v", f)
		}
	}

	// The peer sends data and closes connection 2: the client gets every
	// byte, then end of stream; when it closes, the source answers with
	// its own CONNECTION_RESET.
	r.send("source",
		wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2, Payload: []byte("world")},
		wire.Message{Type: wire.TypeConnectionReset, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2})
	if got := readAllTimeout(t, c2); got != "world" {
		t.Errorf("conn 2 read %q", got)
	}
	c2.Close()
	checkRaw(t, r.waitControl("source", 3)[2], capConnResetV3c2)

	// Half-close: the client shuts its write side; the source says so with
	// CONNECTION_RESET and still delivers what the peer sends afterwards.
	if err := c1.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	checkRaw(t, r.waitControl("source", 4)[3], capConnResetV3c1)
	r.send("source",
		wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1, Payload: []byte("late reply")},
		wire.Message{Type: wire.TypeConnectionReset, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1})
	if got := readAllTimeout(t, c1); got != "late reply" {
		t.Errorf("conn 1 read %q after half-close", got)
	}

	// The stream stays open: the next connection is CONNECTION_START 3.
	c3 := dialLocal(t, addr)
	f := r.waitControl("source", 5)[4]
	if f.msg.Type != wire.TypeConnectionStart || f.msg.StreamID != 1 || f.msg.ConnectionID != 3 {
		t.Errorf("third connection started with %v", f)
	}
	// STREAM_RESET closes it without an answer, with a TCP reset (the
	// stream was cut off); the next connection starts stream 2 with the
	// next connection id.
	r.send("source", wire.Message{Type: wire.TypeStreamReset, StreamID: 1, ServiceID: "HTTP"})
	if got := readUntilReset(t, c3); got != "" {
		t.Errorf("conn 3 read %q", got)
	}
	dialLocal(t, addr)
	f = r.waitControl("source", 6)[5]
	if f.msg.Type != wire.TypeStreamStart || f.msg.StreamID != 2 || f.msg.ConnectionID != 4 {
		t.Errorf("after STREAM_RESET the next connection sent %v", f)
	}
	if n := len(r.framesFrom("source", false)); n != 6 {
		t.Errorf("source sent %d control frames, want 6: %v", n, r.framesFrom("source", false))
	}
	// A stale STREAM_RESET (old stream id) is ignored.
	r.send("source", wire.Message{Type: wire.TypeStreamReset, StreamID: 1, ServiceID: "HTTP"})
}

func TestSourceFramesV2(t *testing.T) {
	for _, tc := range []struct {
		name   string
		proto  Protocol
		answer string
	}{
		{"flag -y V2", V2, ""},
		{"relay answers 2.0", V3, "aws.iot.securetunneling-2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRelay(t, "HTTP")
			r.subprotocol = tc.answer
			cfg := r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"})
			cfg.Protocol = tc.proto
			p := startProxy(t, cfg)
			addr := p.addrs(t)["HTTP"]
			c1 := dialLocal(t, addr)
			checkRaw(t, r.waitControl("source", 1)[0], capStreamStartV2)
			c1.Write([]byte("x"))
			c1.Close()
			checkRaw(t, r.waitControl("source", 2)[1], capStreamResetV2)
			dialLocal(t, addr)
			checkRaw(t, r.waitControl("source", 3)[2], capStreamStartV2s2)
			for _, f := range r.framesFrom("source", true) {
				if f.msg.ConnectionID != 0 || f.msg.ServiceID != "HTTP" {
					t.Errorf("V2 frame %v", f)
				}
			}
		})
	}
}

func TestSourceFramesV1(t *testing.T) {
	for _, tc := range []struct {
		name    string
		proto   Protocol
		answer  string
		sendIDs bool
	}{
		{"flag -y V1 waits for SERVICE_IDS", V1, "", true},
		{"relay answers 1.0 without SERVICE_IDS", V3, "aws.iot.securetunneling-1.0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRelay(t, "HTTP")
			r.subprotocol, r.sendIDs = tc.answer, tc.sendIDs
			cfg := r.proxyConfig(ModeSource, map[string]string{"": "0"})
			cfg.Protocol = tc.proto
			p := startProxy(t, cfg)
			var addr string
			for _, a := range p.addrs(t) {
				addr = a
			}
			c1 := dialLocal(t, addr)
			checkRaw(t, r.waitControl("source", 1)[0], capStreamStartV1)
			c1.Write([]byte("x"))
			r.waitFor("DATA", func() bool { return len(r.frames) >= 2 })
			r.send("source", wire.Message{Type: wire.TypeData, StreamID: 1, Payload: []byte("v1 reply")})
			buf := make([]byte, 8)
			c1.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c1, buf); err != nil || string(buf) != "v1 reply" {
				t.Errorf("read %q, %v", buf, err)
			}
			c1.Close()
			checkRaw(t, r.waitControl("source", 2)[1], capStreamResetV1)
			for _, f := range r.framesFrom("source", true) {
				if f.msg.ConnectionID != 0 || f.msg.ServiceID != "" {
					t.Errorf("V1 frame %v", f)
				}
			}
		})
	}
}

func TestUnnamedMappingAdoptsService(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	p := startProxy(t, r.proxyConfig(ModeSource, map[string]string{"": "0"}))
	addr, ok := p.addrs(t)["HTTP"]
	if !ok {
		t.Fatal("Ready did not name the adopted service")
	}
	dialLocal(t, addr)
	checkRaw(t, r.waitControl("source", 1)[0], capStreamStartV3)
}

// TestDestinationReportsFailedDial: a refused STREAM_START is answered with
// STREAM_RESET (as the official proxy does, but at once), a refused
// CONNECTION_START with CONNECTION_RESET.
func TestDestinationReportsFailedDial(t *testing.T) {
	closed := freePort(t)
	r := newTestRelay(t, "HTTP")
	d := startProxy(t, r.proxyConfig(ModeDestination, map[string]string{"HTTP": closed}))
	d.addrs(t)
	r.send("destination", wire.Message{Type: wire.TypeStreamStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1})
	checkRaw(t, r.waitControl("destination", 1)[0], capStreamResetV2)

	// A target that takes one connection, then goes away.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	r2 := newTestRelay(t, "HTTP")
	d2 := startProxy(t, r2.proxyConfig(ModeDestination, map[string]string{"HTTP": ln.Addr().String()}))
	d2.addrs(t)
	r2.send("destination", wire.Message{Type: wire.TypeStreamStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1},
		wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1, Payload: []byte("buffered while dialing")})
	c := <-accepted
	ln.Close()
	defer c.Close()
	buf := make([]byte, len("buffered while dialing"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	r2.send("destination", wire.Message{Type: wire.TypeConnectionStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2})
	checkRaw(t, r2.waitControl("destination", 1)[0], capConnResetV3c2)
	// The first connection is unaffected: closing it locally resets conn 1.
	c.Close()
	checkRaw(t, r2.waitControl("destination", 2)[1], capConnResetV3c1)
}

// TestDestinationV2Peer: a STREAM_START without connection id comes from a
// V2 source; the destination answers in the V2 format.
func TestDestinationV2Peer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // says hello, then closes
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("bye"))
		c.Close()
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	r := newTestRelay(t, "HTTP")
	d := startProxy(t, r.proxyConfig(ModeDestination, map[string]string{"HTTP": ln.Addr().String()}))
	d.addrs(t)
	r.send("destination", wire.Message{Type: wire.TypeStreamStart, StreamID: 1, ServiceID: "HTTP"})
	checkRaw(t, r.waitControl("destination", 1)[0], capStreamResetV2)
	data := r.framesFrom("destination", true)[0]
	if data.msg.Type != wire.TypeData || string(data.msg.Payload) != "bye" || data.msg.ConnectionID != 0 || data.msg.ServiceID != "HTTP" {
		t.Errorf("V2 DATA %v", data)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

func TestHandshake(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	cfg := r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"})
	p := startProxy(t, cfg)
	p.addrs(t)
	r.mu.Lock()
	h := r.handshakes[0]
	r.mu.Unlock()
	want(t, h.mode, "source")
	want(t, h.host, "127.0.0.1") // without the port, like the official proxy
	want(t, h.header.Get("access-token"), "token-source")
	want(t, h.header.Get("Sec-WebSocket-Protocol"), "aws.iot.securetunneling-3.0")
	if ct := h.header.Get("client-token"); !regexp.MustCompile(`^[a-zA-Z0-9-]{32,128}$`).MatchString(ct) {
		t.Errorf("client-token %q", ct)
	}
	if ua := h.header.Get("User-Agent"); !strings.HasPrefix(ua, "localproxy ") || !strings.Contains(ua, "-bit/warren-") {
		t.Errorf("User-Agent %q", ua)
	}
	if h.header.Get("Sec-WebSocket-Extensions") != "" || h.header.Get("Cookie") != "" {
		t.Errorf("unexpected headers %v", h.header)
	}
}

func TestHandshakeRejected(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	r.reject, r.rejectBody = 403, "token spent"
	p := startProxy(t, r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"}))
	err := p.wait(t)
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != 403 || he.Body != "token spent" {
		t.Fatalf("Run = %v, want a 403 HandshakeError", err)
	}
	if n := r.handshakeCount("source"); n != 1 {
		t.Errorf("%d handshakes after a 4xx, want 1", n)
	}
}

func TestHandshakeServerErrorRetries(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	r.reject = 503
	p := startProxy(t, r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"}))
	r.waitFor("3 handshakes", func() bool { return len(r.handshakes) >= 3 })
	r.mu.Lock()
	r.reject = 0
	first := r.handshakes[0].header.Get("client-token")
	r.mu.Unlock()
	p.addrs(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.handshakes {
		if h.header.Get("client-token") != first || h.header.Get("access-token") != "token-source" {
			t.Errorf("retry changed tokens: %v", h.header)
		}
	}
}

func TestNoSubprotocolRetries(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	r.noSubprotocol = true
	p := startProxy(t, r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"}))
	r.waitFor("2 handshakes", func() bool { return len(r.handshakes) >= 2 })
	r.mu.Lock()
	r.noSubprotocol = false
	r.mu.Unlock()
	p.addrs(t)
}

func TestPings(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	p := startProxy(t, r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"}))
	r.waitFor("a ping", func() bool { return len(r.pings) >= 1 })
	r.mu.Lock()
	first := r.pings[0]
	r.mu.Unlock()
	if !regexp.MustCompile(`^[0-9]{13}$`).MatchString(first) {
		t.Errorf("ping payload %q, want Unix milliseconds", first)
	}
	p.addrs(t)
	peer := r.peer("source")
	for _, payload := range []string{"wirecap-ping-1", "2"} {
		if err := peer.ws.WriteControl(9, []byte(payload), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		r.waitFor("pong "+payload, func() bool { return len(r.pongs) > 0 && r.pongs[len(r.pongs)-1] == payload })
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want(t, r.pongs, []string{"wirecap-ping-1", "2"}) // one pong per ping
}

func TestCloseFrameEndsRun(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	p := startProxy(t, r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"}))
	addr := p.addrs(t)["HTTP"]
	c := dialLocal(t, addr)
	r.waitControl("source", 1)
	r.closeFrame("source")
	if err := p.wait(t); !errors.Is(err, ErrTunnelClosed) {
		t.Fatalf("Run = %v, want ErrTunnelClosed", err)
	}
	if got := readUntilReset(t, c); got != "" {
		t.Errorf("open connection read %q", got)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("listener still open after the tunnel closed")
	}
	if n := r.handshakeCount("source"); n != 1 {
		t.Errorf("%d handshakes, want no reconnect", n)
	}
}

func TestServiceIDsMismatch(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured map[string]string
		ids        []string
	}{
		{"extra", map[string]string{"HTTP": "0"}, []string{"HTTP", "EXTRA"}},
		{"missing", map[string]string{"HTTP": "0", "EXTRA": "0"}, []string{"HTTP"}},
		{"disjoint", map[string]string{"HTTP": "0"}, []string{"OTHER"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRelay(t, tc.ids...)
			p := startProxy(t, r.proxyConfig(ModeSource, tc.configured))
			if err := p.wait(t); !errors.Is(err, ErrServiceMismatch) {
				t.Fatalf("Run = %v, want ErrServiceMismatch", err)
			}
		})
	}
}

// TestTLSVerification: without the relay's CA the handshake fails (and is
// retried, up to MaxConnectAttempts here); -k skips verification; a capath
// directory works like a file.
func TestTLSVerification(t *testing.T) {
	r := newTestRelay(t, "HTTP")
	cfg := r.proxyConfig(ModeSource, map[string]string{"HTTP": "0"})
	cfg.CAPath = ""
	cfg.Settings.MaxConnectAttempts = 2
	err := Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Run without the CA = %v, want a certificate error", err)
	}

	cfg.NoSSLHostVerify = true
	startProxy(t, cfg).addrs(t)

	dir := t.TempDir()
	data, _ := os.ReadFile(r.caFile)
	writeFile(t, filepath.Join(dir, "relay.pem"), string(data))
	writeFile(t, filepath.Join(dir, "README"), "not a certificate")
	cfg.NoSSLHostVerify = false
	cfg.CAPath = dir
	startProxy(t, cfg).addrs(t)

	cfg.CAPath = filepath.Join(dir, "README")
	if err := Run(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "no PEM certificates") {
		t.Errorf("Run with a capath without certificates = %v", err)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf, 2)
	l.Warn("hidden")
	l.Error("shown")
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "shown") {
		t.Errorf("-v 2 logged %q", s)
	}
	buf.Reset()
	NewLogger(&buf, 6).Log(t.Context(), LevelTrace, "fine")
	if s := buf.String(); !strings.Contains(s, "level=TRACE") {
		t.Errorf("-v 6 logged %q", s)
	}
	buf.Reset()
	NewLogger(&buf, 0).Error("nothing")
	if buf.Len() != 0 {
		t.Errorf("-v 0 logged %q", buf.String())
	}
}

// A destination sends window updates only to a source that sent one first:
// an official source never sees one. Once the source announces its window,
// the destination answers with its own, and keeps what it sends within the
// source's window until the source's updates open it again.
func TestDestinationWindows(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	r := newTestRelay(t, "HTTP")
	d := startProxy(t, r.proxyConfig(ModeDestination, map[string]string{"HTTP": ln.Addr().String()}))
	d.addrs(t)

	// An official source: no window updates either way.
	r.send("destination", wire.Message{Type: wire.TypeStreamStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1})
	c1 := <-accepted
	defer c1.Close()
	c1.Write([]byte("hello"))
	r.waitFor("DATA of connection 1", func() bool { return len(r.frames) > 0 })
	r.mu.Lock()
	n := len(r.windows)
	r.mu.Unlock()
	if n != 0 {
		t.Fatalf("the destination sent %d window updates to a source that sent none", n)
	}

	// A Warren source announces a window of 1000 bytes for connection 2,
	// after a malformed update (and one for a connection that does not
	// exist), which are ignored.
	r.send("destination", wire.Message{Type: wire.TypeConnectionStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2})
	r.send("destination", wire.Message{Type: wire.TypeWindowUpdate, Ignorable: true, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2, Payload: []byte{0, 0, 1}})
	r.send("destination", wire.Message{Type: wire.TypeWindowUpdate, Ignorable: true, StreamID: 1, ServiceID: "HTTP", ConnectionID: 99, Payload: []byte{0, 0, 1, 0}})
	r.send("destination", wire.Message{Type: wire.TypeWindowUpdate, Ignorable: true, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2, Payload: []byte{0, 0, 0x03, 0xe8}})
	c2 := <-accepted
	defer c2.Close()
	r.waitFor("the destination's own window update", func() bool { return len(r.windows) == 1 })
	r.mu.Lock()
	w := r.windows[0]
	r.mu.Unlock()
	if w.msg.ConnectionID != 2 || !w.msg.Ignorable || w.payload != 4 {
		t.Fatalf("window update %v", w)
	}
	sentOn2 := func() int { // with r.mu held
		n := 0
		for _, f := range r.frames {
			if f.msg.Type == wire.TypeData && f.msg.ConnectionID == 2 {
				n += f.payload
			}
		}
		return n
	}
	c2.Write(make([]byte, 5000))
	r.waitFor("1000 bytes of connection 2", func() bool { return sentOn2() == 1000 })
	time.Sleep(100 * time.Millisecond)
	r.mu.Lock()
	got := sentOn2()
	r.mu.Unlock()
	if got != 1000 {
		t.Fatalf("the destination sent %d bytes in a window of 1000", got)
	}
	r.send("destination", wire.Message{Type: wire.TypeWindowUpdate, Ignorable: true, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2, Payload: []byte{0, 0, 0x0f, 0xa0}})
	r.waitFor("the rest once the window opened", func() bool { return sentOn2() == 5000 })
}
