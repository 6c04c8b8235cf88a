package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds every wait of the tests; reaching it is a failure, not a
// measurement.
const waitLimit = 15 * time.Second

const testAccount = "123456789012"

// env is a relay on a real listener with a real store.
type env struct {
	t     testing.TB
	store *store.Store
	relay *Relay
	srv   *httptest.Server
	url   string // ws://127.0.0.1:port/tunnel
	logs  *syncBuffer
	clock *clock

	tokens *tokenList // every token handed out, to check that none is logged
}

type tokenList struct {
	mu   sync.Mutex
	list []string
}

// withT returns the env for a subtest: clients it dials report to t.
func (e *env) withT(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// envOpts tune the test server.
type envOpts struct {
	// smallBuffers shrinks the server's socket buffers, so that a stalled
	// receiver stalls the relay after few bytes.
	smallBuffers bool
}

// clock is an adjustable Config.Now; zero offset is the real time.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) set(t time.Time)         { c.offset.Store(int64(time.Until(t))) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the log lines containing all of the given strings.
func (s *syncBuffer) lines(contains ...string) []string {
	var out []string
	for _, l := range strings.Split(s.String(), "\n") {
		ok := l != ""
		for _, c := range contains {
			ok = ok && strings.Contains(l, c)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	return newEnvWith(t, cfg, envOpts{})
}

func newEnvWith(t testing.TB, cfg Config, o envOpts) *env {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "warren.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st, logs: &syncBuffer{}, clock: &clock{}, tokens: &tokenList{}}
	t.Cleanup(func() {
		// Runs last: after the relay has shut down.
		logs := e.logs.String()
		e.tokens.mu.Lock()
		defer e.tokens.mu.Unlock()
		for _, tok := range e.tokens.list {
			if strings.Contains(logs, tok) {
				t.Errorf("a token was logged")
			}
		}
	})
	if cfg.Store == nil {
		cfg.Store = st
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.Now == nil {
		cfg.Now = e.clock.now
	}
	e.relay = New(cfg)
	mux := http.NewServeMux()
	mux.Handle("/tunnel", e.relay)
	e.srv = httptest.NewUnstartedServer(mux)
	if o.smallBuffers {
		e.srv.Listener = smallBufferListener{e.srv.Listener}
	}
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := e.relay.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	e.url = "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/tunnel"
	return e
}

// newTunnel opens a tunnel with services in the store.
func (e *env) newTunnel(services ...string) (tunnel.Tunnel, tunnel.Tokens) {
	e.t.Helper()
	return e.newTunnelAt(e.clock.now(), 0, services...)
}

func (e *env) newTunnelAt(created time.Time, lifetime int, services ...string) (tunnel.Tunnel, tunnel.Tokens) {
	e.t.Helper()
	t, tok, err := tunnel.New(testAccount, "us-east-1", tunnel.OpenParams{Services: services, LifetimeMinutes: lifetime}, created)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.CreateTunnel(context.Background(), t); err != nil {
		e.t.Fatal(err)
	}
	e.tokens.mu.Lock()
	e.tokens.list = append(e.tokens.list, tok.Source, tok.Destination)
	e.tokens.mu.Unlock()
	return t, tok
}

func (e *env) tunnel(id string) tunnel.Tunnel {
	e.t.Helper()
	t, err := e.store.Tunnel(context.Background(), testAccount, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// smallBuffer bounds socket buffers (no autotuning) yet stays above the
// loopback MSS (64 KiB), below which TCP crawls on delayed ACKs.
const smallBuffer = 256 << 10

type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(smallBuffer)
		tc.SetWriteBuffer(smallBuffer)
	}
	return c, err
}

// eventually polls cond until it holds; for state the relay does not
// announce on the wire (store rows, goroutines that finished).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ended waits until n peers have finished all their cleanup.
func (e *env) ended(n int64) {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("%d peers to end", n), func() bool { return e.relay.stats.peersEnded.Load() >= n })
}

// dialOpts describe a test client's handshake.
type dialOpts struct {
	mode         tunnel.Mode
	token        string
	clientToken  string
	subprotocols []string     // default: 3.0 only, like the official proxy
	header       http.Header  // extra headers
	rawHead      string       // exact request head to send instead; {{KEY}} is the WebSocket key
	noRead       bool         // do not start reading (call startReading)
	smallBuffers bool         // small socket buffers
	onWrite      func([]byte) // sees the bytes written after a rawHead
	localIP      string       // dial from this (loopback) address
}

// client is a test local proxy: a gorilla WebSocket client that writes in
// 4096-byte WebSocket frames like the official proxy and collects what it
// receives as one byte stream of tunnel frames.
type client struct {
	t    testing.TB
	conn *websocket.Conn
	resp *http.Response

	mu        sync.Mutex
	buf       []byte // received binary bytes not yet consumed
	texts     int
	pongs     []string
	pings     int
	gotClose  bool
	closeCode int
	closeText string
	err       error // why the read loop ended

	notify  chan struct{}
	done    chan struct{}
	started bool
	syncN   int
}

// dial connects a client; a failed handshake returns the response.
func (e *env) dial(o dialOpts) (*client, *http.Response, error) {
	e.t.Helper()
	d := websocket.Dialer{
		WriteBufferSize:  4096,
		HandshakeTimeout: waitLimit,
		Subprotocols:     o.subprotocols,
	}
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := &net.Dialer{}
		if o.localIP != "" {
			nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.localIP)}
		}
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok && o.smallBuffers {
			tc.SetReadBuffer(smallBuffer)
			tc.SetWriteBuffer(smallBuffer)
		}
		if o.rawHead != "" {
			return &headConn{Conn: c, head: o.rawHead, onWrite: o.onWrite}, nil
		}
		return c, nil
	}
	if o.rawHead == "" && o.subprotocols == nil {
		d.Subprotocols = []string{"aws.iot.securetunneling-3.0"}
	}
	h := http.Header{}
	for k, vs := range o.header {
		h[k] = vs
	}
	if o.token != "" {
		h["access-token"] = []string{o.token}
	}
	if o.clientToken != "" {
		h["client-token"] = []string{o.clientToken}
	}
	u := e.url
	if o.mode != "" {
		u += "?local-proxy-mode=" + string(o.mode)
	}
	conn, resp, err := d.Dial(u, h)
	if err != nil {
		return nil, resp, err
	}
	c := &client{t: e.t, conn: conn, resp: resp, notify: make(chan struct{}, 1), done: make(chan struct{})}
	conn.SetPongHandler(func(s string) error {
		c.mu.Lock()
		c.pongs = append(c.pongs, s)
		c.mu.Unlock()
		c.signal()
		return nil
	})
	conn.SetPingHandler(func(string) error {
		c.mu.Lock()
		c.pings++
		c.mu.Unlock()
		return nil
	})
	conn.SetCloseHandler(func(code int, text string) error {
		// Like the official proxy: note it, answer nothing.
		c.mu.Lock()
		c.gotClose, c.closeCode, c.closeText = true, code, text
		c.mu.Unlock()
		return nil
	})
	e.t.Cleanup(c.close)
	if !o.noRead {
		c.startReading()
	}
	return c, resp, nil
}

// mustDial dials and fails the test unless the handshake succeeds.
func (e *env) mustDial(o dialOpts) *client {
	e.t.Helper()
	c, resp, err := e.dial(o)
	if err != nil {
		e.t.Fatalf("dial %s: %v (%s)", o.mode, err, respText(resp))
	}
	return c
}

// dialStatus dials expecting a rejection and returns status and body.
func (e *env) dialStatus(o dialOpts) (int, string) {
	e.t.Helper()
	c, resp, err := e.dial(o)
	if err == nil {
		c.close()
		e.t.Fatalf("dial %s: handshake succeeded, want a rejection", o.mode)
	}
	if resp == nil {
		e.t.Fatalf("dial %s: %v", o.mode, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func respText(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%s: %q", resp.Status, body)
}

func (c *client) startReading() {
	c.started = true
	go c.readLoop()
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		typ, r, err := c.conn.NextReader()
		if err == nil {
			var b []byte
			b, err = io.ReadAll(r)
			c.mu.Lock()
			if typ == websocket.TextMessage {
				c.texts++
			}
			c.buf = append(c.buf, b...)
			c.mu.Unlock()
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			c.signal()
			return
		}
		c.signal()
	}
}

func (c *client) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// close drops the TCP connection without a close frame, like a killed
// proxy, and waits for the read loop.
func (c *client) close() {
	c.conn.Close()
	if c.started {
		<-c.done
	}
}

// await waits until cond (called with c.mu held) holds.
func (c *client) await(what string, cond func() bool) error {
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ok, err := cond(), c.err
		c.mu.Unlock()
		if ok {
			return nil
		}
		if err != nil {
			return fmt.Errorf("waiting for %s: connection ended: %w", what, err)
		}
		select {
		case <-c.notify:
		case <-timer.C:
			return fmt.Errorf("timed out waiting for %s", what)
		}
	}
}

// nextFrame returns the next complete tunnel frame received.
func (c *client) nextFrame() ([]byte, error) {
	var f []byte
	err := c.await("a tunnel frame", func() bool {
		if len(c.buf) < 2 {
			return false
		}
		n := 2 + int(binary.BigEndian.Uint16(c.buf))
		if len(c.buf) < n {
			return false
		}
		f = append([]byte(nil), c.buf[:n]...)
		c.buf = c.buf[n:]
		return true
	})
	return f, err
}

func (c *client) mustFrame() []byte {
	c.t.Helper()
	f, err := c.nextFrame()
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

// expect fails unless the next frames are exactly want, in order.
func (c *client) expect(want ...[]byte) {
	c.t.Helper()
	for i, w := range want {
		got := c.mustFrame()
		if !bytes.Equal(got, w) {
			c.t.Fatalf("frame %d of %d:\n got % x\nwant % x", i+1, len(want), head(got), head(w))
		}
	}
}

// expectSet fails unless the next len(want) frames are want in any order.
func (c *client) expectSet(want ...[]byte) {
	c.t.Helper()
	left := append([][]byte(nil), want...)
	for range want {
		got := c.mustFrame()
		i := indexFrame(left, got)
		if i < 0 {
			c.t.Fatalf("unexpected frame % x; still expecting %d frames", head(got), len(left))
		}
		left = append(left[:i], left[i+1:]...)
	}
}

func indexFrame(fs [][]byte, f []byte) int {
	for i, g := range fs {
		if bytes.Equal(g, f) {
			return i
		}
	}
	return -1
}

func head(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// pending is how many received bytes were not consumed.
func (c *client) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

func (c *client) send(frames ...[]byte) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.BinaryMessage, bytes.Join(frames, nil)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) ping(payload string) {
	c.t.Helper()
	if err := c.conn.WriteControl(websocket.PingMessage, []byte(payload), time.Now().Add(waitLimit)); err != nil {
		c.t.Fatalf("ping: %v", err)
	}
}

// syncPongs pings with a fresh payload, waits for its pong (the relay answers
// pings in order) and returns every pong received, that last one included.
func (c *client) syncPongs() []string {
	c.t.Helper()
	c.syncN++
	payload := fmt.Sprintf("%013d", 9000000000000+c.syncN)
	c.ping(payload)
	if err := c.await("pong "+payload, func() bool {
		return len(c.pongs) > 0 && c.pongs[len(c.pongs)-1] == payload
	}); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.pongs...)
}

// ended waits for the connection to end and reports whether a close frame
// came first, and its code and text.
func (c *client) ended() (closeFrame bool, code int, text string) {
	c.t.Helper()
	if err := c.await("the connection to end", func() bool { return c.err != nil }); err != nil && !strings.Contains(err.Error(), "connection ended") {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gotClose, c.closeCode, c.closeText
}

// expectClose fails unless the relay closed the connection with a close
// frame of code.
func (c *client) expectClose(code int) string {
	c.t.Helper()
	got, gotCode, text := c.ended()
	if !got || gotCode != code {
		c.t.Fatalf("connection ended with close frame %v code %d (%q), want close code %d", got, gotCode, text, code)
	}
	return text
}

// expectDrop fails unless the connection ended without a close frame.
func (c *client) expectDrop() {
	c.t.Helper()
	if got, code, text := c.ended(); got {
		c.t.Fatalf("connection ended with close frame %d %q, want a plain drop", code, text)
	}
}

// headConn replaces the request head gorilla writes with an exact one (the
// official proxy's header order and case), keeping gorilla's WebSocket key.
type headConn struct {
	net.Conn
	head    string
	onWrite func([]byte)
	buf     []byte
	sent    bool
}

func (c *headConn) Write(p []byte) (int, error) {
	if c.sent {
		if c.onWrite != nil {
			c.onWrite(p)
		}
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	end := bytes.Index(c.buf, []byte("\r\n\r\n"))
	if end < 0 {
		return len(p), nil
	}
	key := ""
	for _, line := range strings.Split(string(c.buf[:end]), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Key") {
			key = strings.TrimSpace(v)
		}
	}
	if key == "" {
		return 0, errors.New("headConn: no Sec-WebSocket-Key in the request")
	}
	c.sent = true
	rest := c.buf[end+4:]
	if _, err := c.Conn.Write([]byte(strings.ReplaceAll(c.head, "{{KEY}}", key))); err != nil {
		return 0, err
	}
	if len(rest) > 0 {
		if _, err := c.Conn.Write(rest); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Frame builders.

func frame(m wire.Message) []byte {
	b, err := wire.AppendFrame(nil, &m)
	if err != nil {
		panic(err)
	}
	return b
}

func serviceIDs(services ...string) []byte {
	return frame(wire.Message{Type: wire.TypeServiceIDs, AvailableServiceIDs: services})
}

func streamStart(svc string, stream int32, conn uint32) []byte {
	return frame(wire.Message{Type: wire.TypeStreamStart, StreamID: stream, ServiceID: svc, ConnectionID: conn})
}

func streamReset(svc string, stream int32) []byte {
	return frame(wire.Message{Type: wire.TypeStreamReset, StreamID: stream, ServiceID: svc})
}

func connStart(svc string, stream int32, conn uint32) []byte {
	return frame(wire.Message{Type: wire.TypeConnectionStart, StreamID: stream, ServiceID: svc, ConnectionID: conn})
}

func connReset(svc string, stream int32, conn uint32) []byte {
	return frame(wire.Message{Type: wire.TypeConnectionReset, StreamID: stream, ServiceID: svc, ConnectionID: conn})
}

func data(svc string, stream int32, conn uint32, payload []byte) []byte {
	return frame(wire.Message{Type: wire.TypeData, StreamID: stream, ServiceID: svc, ConnectionID: conn, Payload: payload})
}

// pattern is a deterministic payload of n bytes.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*7 + i>>8)
	}
	return b
}

// pair connects a tunnel's destination and source (3.0) and consumes their
// SERVICE_IDS.
func (e *env) pair(t tunnel.Tunnel, tok tunnel.Tokens) (src, dst *client) {
	e.t.Helper()
	dst = e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination})
	dst.expect(serviceIDs(t.Services...))
	src = e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, clientToken: testClientToken})
	src.expect(serviceIDs(t.Services...))
	return src, dst
}

const testClientToken = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
