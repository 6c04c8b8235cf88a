package localproxy

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/warrentunnel/warren/internal/wire"
)

// testRelay is a tiny relay for tests: it upgrades /tunnel over TLS, pairs
// one source with one destination, sends SERVICE_IDS, forwards binary
// messages between them, answers pings, and records every handshake and
// tunnel frame. Tests can also play the peer themselves (inject frames).
type testRelay struct {
	t        testing.TB
	srv      *httptest.Server
	caFile   string
	endpoint string

	mu            sync.Mutex
	serviceIDs    []string
	sendIDs       bool
	subprotocol   string // answered subprotocol; "" echoes the offered one
	noSubprotocol bool
	silent        bool // answer no pings: a relay gone quiet
	reject        int  // answer handshakes with this status
	rejectBody    string
	peers         map[string]*relayPeer
	conns         int
	handshakes    []handshake
	frames        []recFrame
	windows       []recFrame // window updates
	pings         []string   // payloads of pings from proxies
	pongs         []string   // payloads of pongs from proxies
	closed        map[string]int
	changed       chan struct{}
	wg            sync.WaitGroup
}

type handshake struct {
	mode   string
	host   string
	header http.Header
}

type relayPeer struct {
	mode string
	conn int
	ws   *websocket.Conn
	wmu  sync.Mutex
}

type recFrame struct {
	mode    string // sender's mode
	conn    int    // relay connection number
	msg     wire.Message
	raw     []byte // whole frame for non-DATA frames
	payload int
}

func (f recFrame) String() string {
	return fmt.Sprintf("%s#%d %s s=%d c=%d svc=%q len=%d", f.mode, f.conn, f.msg.Type, f.msg.StreamID, f.msg.ConnectionID, f.msg.ServiceID, f.payload)
}

func newTestRelay(t testing.TB, serviceIDs ...string) *testRelay {
	r := &testRelay{
		t:          t,
		serviceIDs: serviceIDs,
		sendIDs:    true,
		peers:      map[string]*relayPeer{},
		closed:     map[string]int{},
		changed:    make(chan struct{}),
	}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(r.handle))
	r.caFile = filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
	if err := os.WriteFile(r.caFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	r.endpoint = strings.TrimPrefix(r.srv.URL, "https://")
	t.Cleanup(r.close)
	return r
}

func (r *testRelay) close() {
	r.srv.Close()
	r.mu.Lock()
	for _, p := range r.peers {
		p.ws.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// notify wakes waitFor callers; call with r.mu held.
func (r *testRelay) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitFor waits until cond (called with r.mu held) is true.
func (r *testRelay) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			r.t.Fatalf("timed out waiting for %s; frames: %v", what, r.frames)
		}
	}
}

func (r *testRelay) handle(w http.ResponseWriter, req *http.Request) {
	r.wg.Add(1)
	defer r.wg.Done()
	mode := req.URL.Query().Get("local-proxy-mode")
	r.mu.Lock()
	r.handshakes = append(r.handshakes, handshake{mode: mode, host: req.Host, header: req.Header.Clone()})
	r.conns++
	n := r.conns
	reject, body := r.reject, r.rejectBody
	proto := r.subprotocol
	if proto == "" {
		proto = req.Header.Get("Sec-WebSocket-Protocol")
	}
	if r.noSubprotocol {
		proto = ""
	}
	ids, sendIDs := r.serviceIDs, r.sendIDs
	r.notify()
	r.mu.Unlock()
	if reject != 0 {
		http.Error(w, body, reject)
		return
	}
	hdr := http.Header{}
	hdr.Set("channel-id", fmt.Sprintf("test-%d", n))
	if proto != "" {
		hdr.Set("Sec-WebSocket-Protocol", proto)
	}
	up := websocket.Upgrader{ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	ws, err := up.Upgrade(w, req, hdr)
	if err != nil {
		return
	}
	p := &relayPeer{mode: mode, conn: n, ws: ws}
	ws.SetPingHandler(func(data string) error {
		r.mu.Lock()
		r.pings = append(r.pings, data)
		r.notify()
		silent := r.silent
		r.mu.Unlock()
		if silent {
			return nil
		}
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	ws.SetPongHandler(func(data string) error {
		r.mu.Lock()
		r.pongs = append(r.pongs, data)
		r.notify()
		r.mu.Unlock()
		return nil
	})
	r.mu.Lock()
	if old := r.peers[mode]; old != nil {
		old.ws.Close()
	}
	r.peers[mode] = p
	r.notify()
	r.mu.Unlock()
	if sendIDs {
		f, _ := wire.AppendFrame(nil, &wire.Message{Type: wire.TypeServiceIDs, AvailableServiceIDs: ids})
		p.write(f)
	}
	r.readLoop(p)
	r.mu.Lock()
	if r.peers[mode] == p {
		delete(r.peers, mode)
	}
	r.notify()
	r.mu.Unlock()
	ws.Close()
}

func (p *relayPeer) write(msg []byte) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.WriteMessage(websocket.BinaryMessage, msg)
}

func (r *testRelay) readLoop(p *relayPeer) {
	for {
		typ, data, err := p.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				r.mu.Lock()
				r.closed[p.mode]++
				r.notify()
				r.mu.Unlock()
			}
			return
		}
		if typ != websocket.BinaryMessage {
			r.t.Errorf("proxy sent a %d message", typ)
			continue
		}
		fr := wire.NewReader(bytes.NewReader(data))
		r.mu.Lock()
		for {
			var m wire.Message
			raw, err := fr.ReadFrame(&m)
			if err == io.EOF {
				break
			}
			if err != nil {
				r.t.Errorf("undecodable frame from %s: %v", p.mode, err)
				break
			}
			f := recFrame{mode: p.mode, conn: p.conn, msg: m, payload: len(m.Payload)}
			if m.Type == wire.TypeWindowUpdate {
				// Warren's extension, checked on its own: the other frames
				// are compared with what the official proxy sends.
				f.raw = bytes.Clone(raw)
				r.windows = append(r.windows, f)
				continue
			}
			f.msg.Payload = nil
			if m.Type != wire.TypeData {
				f.raw = bytes.Clone(raw)
			} else if len(m.Payload) <= 4096 {
				f.msg.Payload = bytes.Clone(m.Payload)
			}
			r.frames = append(r.frames, f)
		}
		other := r.peers[otherMode(p.mode)]
		r.notify()
		r.mu.Unlock()
		if other != nil {
			other.write(data)
		}
	}
}

func otherMode(m string) string {
	if m == "source" {
		return "destination"
	}
	return "source"
}

// send writes frames to the proxy of the given mode, as the relay or a
// played peer.
func (r *testRelay) send(mode string, msgs ...wire.Message) {
	r.t.Helper()
	var b []byte
	for i := range msgs {
		var err error
		if b, err = wire.AppendFrame(b, &msgs[i]); err != nil {
			r.t.Fatal(err)
		}
	}
	r.peer(mode).write(b)
}

func (r *testRelay) peer(mode string) *relayPeer {
	r.t.Helper()
	var p *relayPeer
	r.waitFor(mode+" connected", func() bool { p = r.peers[mode]; return p != nil })
	return p
}

// drop closes a proxy's TCP connection without a close frame.
func (r *testRelay) drop(mode string) {
	r.peer(mode).ws.NetConn().Close()
}

// closeFrame sends a WebSocket close frame, ending the tunnel for the proxy.
func (r *testRelay) closeFrame(mode string) {
	p := r.peer(mode)
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "tunnel closed")
	_ = p.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

// framesFrom returns the frames a mode sent, other than DATA unless withData.
func (r *testRelay) framesFrom(mode string, withData bool) []recFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recFrame
	for _, f := range r.frames {
		if f.mode == mode && (withData || f.msg.Type != wire.TypeData) {
			out = append(out, f)
		}
	}
	return out
}

// waitControl waits until mode sent at least n non-DATA frames and returns them.
func (r *testRelay) waitControl(mode string, n int) []recFrame {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("%d control frames from %s", n, mode), func() bool {
		c := 0
		for _, f := range r.frames {
			if f.mode == mode && f.msg.Type != wire.TypeData {
				c++
			}
		}
		return c >= n
	})
	return r.framesFrom(mode, false)
}

func (r *testRelay) handshakeCount(mode string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, h := range r.handshakes {
		if h.mode == mode {
			n++
		}
	}
	return n
}

// runningProxy is a Run in a goroutine.
type runningProxy struct {
	cancel context.CancelFunc
	done   chan error
	ready  chan map[string]string
}

func (p *runningProxy) stop(t testing.TB) error {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

// wait waits for Run to return by itself.
func (p *runningProxy) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// addrs waits for the Ready callback.
func (p *runningProxy) addrs(t testing.TB) map[string]string {
	t.Helper()
	select {
	case a := <-p.ready:
		return a
	case err := <-p.done:
		p.done <- err
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("proxy not ready")
	}
	return nil
}

func startProxy(t testing.TB, cfg Config) *runningProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &runningProxy{cancel: cancel, done: make(chan error, 1), ready: make(chan map[string]string, 1)}
	cfg.Ready = func(a map[string]string) { p.ready <- a }
	go func() { p.done <- Run(ctx, cfg) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// proxyConfig is a config for a proxy of the relay's tunnel.
func (r *testRelay) proxyConfig(mode Mode, services map[string]string) Config {
	set := DefaultSettings()
	set.RetryDelay = 100 * time.Millisecond
	set.DialTimeout = 2 * time.Second
	return Config{
		Mode:        mode,
		AccessToken: "token-" + mode.String(),
		Endpoint:    r.endpoint,
		CAPath:      r.caFile,
		Services:    services,
		Settings:    set,
		Logger:      testLogger(r.t, mode.String()),
	}
}

type testLogWriter struct {
	t      testing.TB
	prefix string
}

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB, prefix string) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t, prefix + ": "}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
