package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/warrentunnel/warren/internal/framepool"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/warrentunnel/warren/internal/bandwidth"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

func TestForwardBothWays(t *testing.T) {
	e := newEnv(t, Config{})
	tn, tok := e.newTunnel("SSH", "HTTP")
	src, dst := e.pair(tn, tok)
	if got := src.resp.Header.Get("Sec-WebSocket-Protocol"); got != "aws.iot.securetunneling-3.0" {
		t.Errorf("subprotocol %q", got)
	}
	if src.resp.Header.Get(channelIDHeader) == "" || src.resp.Header.Get(channelIDHeader) == dst.resp.Header.Get(channelIDHeader) {
		t.Errorf("channel ids %q and %q", src.resp.Header.Get(channelIDHeader), dst.resp.Header.Get(channelIDHeader))
	}
	if ext := src.resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Errorf("extensions negotiated: %q", ext)
	}
	if s, d := e.relay.Connected(tn.ID); !s || !d {
		t.Fatalf("Connected = %v, %v", s, d)
	}
	if got := e.tunnel(tn.ID); !got.Source.Connected || !got.Destination.Connected {
		t.Fatalf("store: source %v destination %v", got.Source.Connected, got.Destination.Connected)
	}

	// Several frames in one message, and one frame split over messages.
	start := streamStart("HTTP", 1, 1)
	req := data("HTTP", 1, 1, pattern(1, 5000))
	src.send(start, req[:100])
	src.send(req[100:])
	dst.expect(start, req)

	resp := data("HTTP", 1, 1, pattern(2, wire.MaxPayload))
	dst.send(resp)
	src.expect(resp)

	src.ping("1795767944609")
	dst.ping("")
	if got := src.syncPongs(); len(got) != 2 || got[0] != "1795767944609" {
		t.Errorf("source pongs %q", got)
	}
	if got := dst.syncPongs(); len(got) != 2 || got[0] != "" {
		t.Errorf("destination pongs %q", got)
	}
	if src.pings+dst.pings != 0 || src.texts+dst.texts != 0 {
		t.Errorf("relay sent pings or text messages")
	}
}

// Frames for an absent peer are dropped, and a start is answered with its
// reset so the source closes its client's socket instead of leaving it hang.
func TestFramesForAbsentPeerAreDropped(t *testing.T) {
	e := newEnv(t, Config{})
	_, tok := e.newTunnel("HTTP")
	src := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source})
	src.expect(serviceIDs("HTTP"))
	src.send(streamStart("HTTP", 1, 1), data("HTTP", 1, 1, []byte("lost")))
	src.expect(streamReset("HTTP", 1))
	connStart := frame(wire.Message{Type: wire.TypeConnectionStart, StreamID: 2, ServiceID: "HTTP", ConnectionID: 2})
	src.send(connStart)
	src.expect(frame(wire.Message{Type: wire.TypeConnectionReset, StreamID: 2, ServiceID: "HTTP", ConnectionID: 2}))
	src.syncPongs() // the relay has read the frames
	if n := e.relay.stats.droppedFrames.Load(); n != 3 {
		t.Fatalf("dropped %d frames, want 3", n)
	}
	if n := src.pending(); n != 0 {
		t.Fatalf("%d more frames for the source", n)
	}
	dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination})
	dst.expect(serviceIDs("HTTP"))
	later := data("HTTP", 1, 1, []byte("kept"))
	src.send(later)
	dst.expect(later)
}

func TestTokenRules(t *testing.T) {
	e0 := newEnv(t, Config{})
	tn, tok := e0.newTunnel("HTTP")
	src, dst := e0.pair(tn, tok)

	t.Run("spent token", func(t *testing.T) {
		e := e0.withT(t)
		// The destination connected without client token: its token is spent.
		status, body := e.dialStatus(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination})
		if status != http.StatusConflict || !strings.Contains(body, "already used") {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("different client token", func(t *testing.T) {
		e := e0.withT(t)
		status, body := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: tok.Source, clientToken: strings.Repeat("b", 32)})
		if status != http.StatusConflict || !strings.Contains(body, "client token") {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("no client token after one was bound", func(t *testing.T) {
		e := e0.withT(t)
		if status, _ := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: tok.Source}); status != http.StatusConflict {
			t.Fatalf("got %d", status)
		}
	})
	t.Run("wrong mode", func(t *testing.T) {
		e := e0.withT(t)
		status, body := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: tok.Destination})
		if status != http.StatusForbidden || !strings.Contains(body, "local-proxy-mode=source") {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		e := e0.withT(t)
		if status, body := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: "AQ-not-a-token"}); status != http.StatusUnauthorized || strings.Contains(body, "AQ-not") {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("client token reconnect replaces", func(t *testing.T) {
		e := e0.withT(t)
		src.t, dst.t = t, t
		src.send(streamStart("HTTP", 1, 1))
		dst.expect(streamStart("HTTP", 1, 1))
		src2 := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, clientToken: testClientToken})
		src.expectDrop()
		dst.expect(streamReset("HTTP", 1))
		src2.expect(serviceIDs("HTTP"))
		e.ended(1)
		if got := e.tunnel(tn.ID); !got.Source.Connected {
			t.Fatal("store says the source is disconnected after its replacement")
		}
		more := data("HTTP", 2, 1, []byte("after"))
		src2.send(streamStart("HTTP", 2, 1), more)
		dst.expect(streamStart("HTTP", 2, 1), more)
	})
	t.Run("closed tunnel", func(t *testing.T) {
		e := e0.withT(t)
		tn2, tok2 := e.newTunnel("HTTP")
		if _, err := e.store.UpdateTunnel(context.Background(), tn2.ID, func(t *tunnel.Tunnel) error {
			t.Close(time.Now())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if status, body := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: tok2.Source}); status != http.StatusGone || !strings.Contains(body, "closed") {
			t.Fatalf("got %d %q", status, body)
		}
	})
}

// Handshakes for one side that race each other are admitted one at a time:
// each replaces the one before, and one connection remains.
func TestConcurrentHandshakesOfOneSide(t *testing.T) {
	e := newEnv(t, Config{})
	tn, tok := e.newTunnel("HTTP")
	const n = 5
	clients := make([]*client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, resp, err := e.dial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, clientToken: testClientToken})
			if err != nil {
				err = fmt.Errorf("%v (%s)", err, respText(resp))
			}
			clients[i], errs[i] = c, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	e.ended(n - 1)
	// The relay has cleaned up after the replaced connections; their clients
	// learn of it when their reads fail.
	alive := func() int {
		n := 0
		for _, c := range clients {
			c.mu.Lock()
			if c.err == nil {
				n++
			} else if c.gotClose {
				t.Error("a replaced connection got a close frame")
			}
			c.mu.Unlock()
		}
		return n
	}
	eventually(t, "one connection left alive", func() bool { return alive() == 1 })
	if s, _ := e.relay.Connected(tn.ID); !s || !e.tunnel(tn.ID).Source.Connected {
		t.Fatal("source not connected")
	}
}

// A peer's loss resets its streams at the other peer (capture f5: without
// it the source keeps a dead connection) and is recorded in the store.
func TestDisconnectResetsOtherPeer(t *testing.T) {
	e := newEnv(t, Config{})
	tn, tok := e.newTunnel("ECHO", "HTTP")
	src, dst := e.pair(tn, tok)
	src.send(streamStart("HTTP", 1, 1), streamStart("ECHO", 1, 1), frame(wire.Message{Type: wire.TypeConnectionStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2}))
	dst.expect(streamStart("HTTP", 1, 1), streamStart("ECHO", 1, 1), frame(wire.Message{Type: wire.TypeConnectionStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2}))
	dst.send(streamReset("ECHO", 1)) // the destination ended ECHO's stream itself
	src.expect(streamReset("ECHO", 1))

	dst.close()
	src.expect(streamReset("HTTP", 1))
	e.ended(1)
	if s, d := e.relay.Connected(tn.ID); !s || d {
		t.Fatalf("Connected = %v, %v", s, d)
	}
	got := e.tunnel(tn.ID)
	if got.Destination.Connected || !got.Source.Connected {
		t.Fatalf("store: source %v destination %v", got.Source.Connected, got.Destination.Connected)
	}
	src.syncPongs()
	if n := src.pending(); n != 0 {
		t.Fatalf("%d unexpected bytes at the source", n)
	}
}

func TestCloseTunnel(t *testing.T) {
	e := newEnv(t, Config{})
	tn, tok := e.newTunnel("HTTP")
	src, dst := e.pair(tn, tok)
	if _, err := e.store.UpdateTunnel(context.Background(), tn.ID, func(t *tunnel.Tunnel) error {
		t.Close(time.Now())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.relay.CloseTunnel(tn.ID)
	for _, c := range []*client{src, dst} {
		if text := c.expectClose(websocket.CloseNormalClosure); text != "tunnel closed" {
			t.Errorf("close text %q", text)
		}
	}
	e.ended(2)
	if s, d := e.relay.Connected(tn.ID); s || d {
		t.Fatalf("Connected = %v, %v", s, d)
	}
	if status, _ := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: tok.Source, clientToken: testClientToken}); status != http.StatusGone {
		t.Fatalf("reconnect got %d, want 410", status)
	}
	e.relay.CloseTunnel("no-such-tunnel")
}

// A tunnel past its lifetime that the expiry sweeper has not closed yet is
// refused at admission all the same (tunnel.Expired, the one rule). The
// relay closes nothing by itself: the sweeper closes the tunnel and calls
// CloseTunnel, which sends the close frames.
func TestLifetimeExpiry(t *testing.T) {
	e := newEnv(t, Config{})
	created := time.Now()
	tn, tok := e.newTunnelAt(created, 1, "HTTP")
	dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination})
	e.clock.set(created.Add(time.Minute))
	if status, _ := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: tok.Source}); status != http.StatusGone {
		t.Fatalf("handshake after the lifetime got %d, want 410", status)
	}
	if got := e.tunnel(tn.ID); got.Status != tunnel.StatusOpen || !got.Destination.Connected {
		t.Fatalf("the relay changed the tunnel by itself: %s, destination connected %v", got.Status, got.Destination.Connected)
	}
	if _, err := e.store.UpdateTunnel(context.Background(), tn.ID, func(t *tunnel.Tunnel) error {
		t.Close(t.ExpiresAt())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.relay.CloseTunnel(tn.ID)
	if text := dst.expectClose(websocket.CloseNormalClosure); text != "tunnel closed" {
		t.Errorf("close text %q", text)
	}
	e.ended(1)
}

func TestShutdownDropsWithoutCloseFrame(t *testing.T) {
	e := newEnv(t, Config{})
	tn, tok := e.newTunnel("HTTP")
	src, dst := e.pair(tn, tok)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := e.relay.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	src.expectDrop()
	dst.expectDrop()
	_, tok2 := e.newTunnel("HTTP")
	if status, _ := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: tok2.Source}); status != http.StatusServiceUnavailable {
		t.Fatalf("handshake after shutdown got %d, want 503", status)
	}
}

// Toward a 2.0 peer connection ids are stripped; a 1.0 peer gets no
// SERVICE_IDS.
func TestOlderSubprotocols(t *testing.T) {
	e := newEnv(t, Config{})
	_, tok := e.newTunnel("HTTP")
	dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, subprotocols: []string{"aws.iot.securetunneling-2.0"}})
	if got := dst.conn.Subprotocol(); got != "aws.iot.securetunneling-2.0" {
		t.Fatalf("subprotocol %q", got)
	}
	dst.expect(serviceIDs("HTTP"))
	src := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source})
	src.expect(serviceIDs("HTTP"))

	src.send(mustHex("000c080210012a04485454503801"), data("HTTP", 1, 1, []byte("GET /")))
	dst.expect(mustHex("000a080210012a0448545450"), data("HTTP", 1, 0, []byte("GET /")))
	v2 := data("HTTP", 1, 0, []byte("200 OK"))
	dst.send(v2)
	src.expect(v2)

	_, tok1 := e.newTunnel("HTTP")
	v1 := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok1.Destination, subprotocols: []string{"aws.iot.securetunneling-1.0"}})
	if got := v1.conn.Subprotocol(); got != "aws.iot.securetunneling-1.0" {
		t.Fatalf("subprotocol %q", got)
	}
	src1 := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok1.Source})
	src1.expect(serviceIDs("HTTP"))
	start := mustHex("000408021001") // V1 STREAM_START
	src1.send(start)
	v1.expect(start) // and no SERVICE_IDS before it
}

// An account's DATA goes no faster than its limit, in each direction, and
// whatever else the tunnel carries is not paced.
func TestBandwidthLimitPacesData(t *testing.T) {
	const limit = 200_000
	bw := bandwidth.New(bandwidth.Config{Default: limit})
	t.Cleanup(bw.Close)
	e := newEnv(t, Config{Bandwidth: bw})
	tn, tok := e.newTunnel("HTTP")
	src, dst := e.pair(tn, tok)
	src.send(streamStart("HTTP", 1, 1))
	dst.expect(streamStart("HTTP", 1, 1))

	// The burst allowance passes at once; then the pacer holds the rest.
	const total = 200_000
	burst := int(limit * bandwidth.BurstTime.Seconds())
	var frames [][]byte
	for i := 0; i < total/10_000; i++ {
		frames = append(frames, data("HTTP", 1, 1, pattern(i, 10_000)))
	}
	start := time.Now()
	go func() {
		for _, f := range frames {
			dst.send(f)
		}
	}()
	src.expect(frames...)
	elapsed := time.Since(start)
	least := time.Duration(float64(total-burst-10_000) / limit * float64(time.Second))
	if elapsed < least {
		t.Fatalf("%d bytes at %d B/s took %v; pacing needs at least %v", total, limit, elapsed, least)
	}
}

// A peer that asks for link credit gets it after SERVICE_IDS while its
// account is limited, a new one when the limit changes, and "no limit"
// when it is lifted; a peer that does not ask gets none; a peer may not
// send one.
func TestLinkCredit(t *testing.T) {
	bw := bandwidth.New(bandwidth.Config{Default: 800_000})
	t.Cleanup(bw.Close)
	e := newEnv(t, Config{Bandwidth: bw})
	_, tok := e.newTunnel("HTTP")
	hdr := http.Header{wire.LinkCreditHeader: {"1"}}
	dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, header: hdr})
	window, chunk := creditFor(800_000)
	dst.expect(serviceIDs("HTTP"), linkCreditFrame(window, chunk))
	src := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, clientToken: testClientToken})
	src.expect(serviceIDs("HTTP"))

	// Half the window through the relay tops the credit up.
	src.send(streamStart("HTTP", 1, 1))
	dst.expect(streamStart("HTTP", 1, 1))
	d := data("HTTP", 1, 1, pattern(1, int(window/2)))
	dst.send(d)
	src.expect(d)
	dst.expect(linkCreditFrame(window/2+window, chunk))

	bw.SetLimit(testAccount, 4_000_000)
	w2, c2 := creditFor(4_000_000)
	dst.expect(linkCreditFrame(window/2+w2, c2))
	bw.SetLimit(testAccount, 0)
	dst.expect(linkCreditFrame(-1, 0))
	if n := src.pending(); n != 0 {
		t.Fatalf("the source, which did not ask, got %d bytes", n)
	}

	// Link credit comes from the relay only.
	src.send(linkCreditFrame(1, 1))
	src.expectClose(websocket.CloseProtocolError)
}

func linkCreditFrame(limit int64, chunk uint32) []byte {
	lc := wire.LinkCredit{Limit: limit, Chunk: chunk}
	return frame(wire.Message{Type: wire.TypeLinkCredit, Ignorable: true, Payload: lc.Encode(nil)})
}

// failingStore fails every call, like a store that lost its disk.
type failingStore struct{}

var errStoreDown = errors.New("store is down")

func (failingStore) TunnelByToken(context.Context, []byte) (tunnel.Tunnel, tunnel.Mode, error) {
	return tunnel.Tunnel{}, "", errStoreDown
}

func (failingStore) UpdateTunnel(context.Context, string, func(*tunnel.Tunnel) error) (tunnel.Tunnel, error) {
	return tunnel.Tunnel{}, errStoreDown
}

func TestStoreFailureIs500(t *testing.T) {
	e := newEnv(t, Config{Store: failingStore{}})
	status, body := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: "AQsomething"})
	if status != http.StatusInternalServerError || strings.Contains(body, errStoreDown.Error()) {
		t.Fatalf("got %d %q", status, body)
	}
}

// pump keeps a second tunnel busy while bad input hits the first: every
// frame must arrive intact.
type pump struct {
	src, dst *client
	stop     chan struct{}
	done     chan struct{}
	n        int
	err      error
}

func (e *env) startPump() *pump {
	e.t.Helper()
	tn, tok := e.newTunnel("PUMP")
	p := &pump{stop: make(chan struct{}), done: make(chan struct{})}
	p.src, p.dst = e.pair(tn, tok)
	p.src.send(streamStart("PUMP", 1, 1))
	p.dst.expect(streamStart("PUMP", 1, 1))
	go p.run()
	return p
}

func (p *pump) run() {
	defer close(p.done)
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		default:
		}
		f := data("PUMP", 1, 1, pattern(i, 1+i*997%20000))
		if err := p.src.conn.WriteMessage(websocket.BinaryMessage, f); err != nil {
			p.err = err
			return
		}
		got, err := p.dst.nextFrame()
		if err != nil {
			p.err = err
			return
		}
		if !bytes.Equal(got, f) {
			p.err = fmt.Errorf("frame %d arrived changed", i)
			return
		}
		p.n++
	}
}

func (p *pump) finish(t *testing.T) {
	t.Helper()
	close(p.stop)
	<-p.done
	if p.err != nil {
		t.Fatalf("second tunnel disturbed: %v", p.err)
	}
	if p.n == 0 {
		t.Fatal("second tunnel carried nothing")
	}
	t.Logf("second tunnel carried %d frames meanwhile", p.n)
}

func TestBadInputIsRejectedAlone(t *testing.T) {
	e0 := newEnv(t, Config{})
	p := e0.startPump()

	handshakes := []struct {
		name   string
		opts   func(tok tunnel.Tokens) dialOpts
		status int
		body   string
	}{
		{"wrong token", func(tunnel.Tokens) dialOpts {
			return dialOpts{mode: tunnel.ModeSource, token: "AQwrongwrongwrong"}
		}, 401, "not valid"},
		{"wrong mode", func(tok tunnel.Tokens) dialOpts {
			return dialOpts{mode: tunnel.ModeDestination, token: tok.Source}
		}, 403, "local-proxy-mode=destination"},
		{"missing token", func(tunnel.Tokens) dialOpts {
			return dialOpts{mode: tunnel.ModeSource}
		}, 401, "no access token"},
		{"two tokens", func(tok tunnel.Tokens) dialOpts {
			return dialOpts{mode: tunnel.ModeSource, token: tok.Source, header: http.Header{"Cookie": {"awsiot-tunnel-token=" + tok.Source}}}
		}, 400, "exactly one"},
		{"oversized handshake", func(tok tunnel.Tokens) dialOpts {
			return dialOpts{mode: tunnel.ModeSource, token: tok.Source, header: http.Header{"User-Agent": {strings.Repeat("x", 4000)}}}
		}, 431, "at most 4096"},
		{"no subprotocol", func(tok tunnel.Tokens) dialOpts {
			return dialOpts{mode: tunnel.ModeSource, token: tok.Source, subprotocols: []string{}}
		}, 400, "subprotocol"},
	}
	for _, tt := range handshakes {
		t.Run(tt.name, func(t *testing.T) {
			e := e0.withT(t)
			tn, tok := e.newTunnel("HTTP")
			status, body := e.dialStatus(tt.opts(tok))
			if status != tt.status || !strings.Contains(body, tt.body) {
				t.Fatalf("got %d %q, want %d containing %q", status, body, tt.status, tt.body)
			}
			if strings.Contains(body, tok.Source) || strings.Contains(body, tok.Destination) {
				t.Fatal("token echoed")
			}
			// The tokens are unharmed by the rejection.
			e.pair(tn, tok)
		})
	}

	unknownField := protowire.AppendVarint(protowire.AppendTag(data("HTTP", 1, 1, []byte("x"))[2:], 8, protowire.VarintType), 1)
	bigPayload := wire.AppendMessage(nil, &wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", Payload: make([]byte, wire.MaxPayload+1)})
	violations := []struct {
		name   string
		from   tunnel.Mode
		send   func(c *client)
		code   int
		reason string
	}{
		{"text frame", tunnel.ModeSource, func(c *client) {
			c.conn.WriteMessage(websocket.TextMessage, []byte("hello"))
		}, websocket.CloseUnsupportedData, "text message"},
		{"garbage bytes", tunnel.ModeDestination, func(c *client) {
			c.send([]byte{0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff})
		}, websocket.CloseProtocolError, "undecodable"},
		{"oversized tunnel frame", tunnel.ModeSource, func(c *client) {
			c.send(append([]byte{byte(len(bigPayload) >> 8), byte(len(bigPayload))}, bigPayload...))
		}, websocket.CloseMessageTooBig, "payload larger than 64512"},
		{"oversized message", tunnel.ModeSource, func(c *client) {
			// Valid frames, but one byte too many for one message.
			full := data("HTTP", 1, 1, make([]byte, wire.MaxPayload))
			msg := bytes.Join([][]byte{full, full, full}, nil)[:wire.MaxWebSocketMessage+1]
			c.conn.WriteMessage(websocket.BinaryMessage, msg)
		}, websocket.CloseMessageTooBig, "larger than 131076"},
		{"stream start from destination", tunnel.ModeDestination, func(c *client) {
			c.send(streamStart("HTTP", 1, 1))
		}, websocket.CloseProtocolError, "STREAM_START from the destination"},
		{"unknown service", tunnel.ModeSource, func(c *client) {
			c.send(streamStart("RDP", 1, 1))
		}, websocket.CloseProtocolError, `RDP\", which the tunnel does not have`},
		{"unknown protobuf field", tunnel.ModeDestination, func(c *client) {
			c.send(append([]byte{0, byte(len(unknownField))}, unknownField...))
		}, websocket.CloseProtocolError, "unknown protobuf field"},
		{"session reset", tunnel.ModeSource, func(c *client) {
			c.send(frame(wire.Message{Type: wire.TypeSessionReset}))
		}, websocket.CloseProtocolError, "SESSION_RESET"},
		{"stream id 0", tunnel.ModeSource, func(c *client) {
			c.send(data("HTTP", 0, 1, []byte("x")))
		}, websocket.CloseProtocolError, "stream id 0"},
	}
	for _, tt := range violations {
		t.Run(tt.name, func(t *testing.T) {
			e := e0.withT(t)
			tn, tok := e.newTunnel("HTTP")
			src, dst := e.pair(tn, tok)
			bad, good := src, dst
			if tt.from == tunnel.ModeDestination {
				bad, good = dst, src
			}
			tt.send(bad)
			bad.expectClose(tt.code)
			eventually(t, "the bad peer to be gone", func() bool {
				s, d := e.relay.Connected(tn.ID)
				return (s != d) && (s == (tt.from == tunnel.ModeDestination))
			})
			lines := e.logs.lines("protocol violation", tn.ID, "mode="+string(tt.from))
			if len(lines) != 1 || !strings.Contains(lines[0], tt.reason) {
				t.Fatalf("violation log lines %q, want one containing %q", lines, tt.reason)
			}
			// The good peer is still served.
			good.ping("1795767944609")
			if pongs := good.syncPongs(); pongs[0] != "1795767944609" {
				t.Fatalf("pongs %q", pongs)
			}
		})
	}
	p.finish(t)
}

// A receiver that reads nothing stalls its sender: the relay holds at most
// SendQueueBytes for it and stops reading the sender (TCP backpressure).
// Nothing is lost once the receiver reads again.
func TestBackpressure(t *testing.T) {
	const queue = 4 * framepool.LargeSize
	e := newEnvWith(t, Config{SendQueueBytes: queue}, envOpts{smallBuffers: true})
	tn, tok := e.newTunnel("HTTP")
	dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, noRead: true, smallBuffers: true})
	src := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, smallBuffers: true})
	src.expect(serviceIDs("HTTP"))

	// Far more than the socket buffers and the queue can hold.
	const frames = 300
	frameAt := func(i int) []byte { return data("HTTP", 1, 1, pattern(i, 60000)) }
	var written atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		for i := range frames {
			if err := src.conn.WriteMessage(websocket.BinaryMessage, frameAt(i)); err != nil {
				writeErr <- err
				return
			}
			written.Add(1)
		}
		writeErr <- nil
	}()

	dp := e.relay.lookup(tn.ID).peer(destinationSide)
	last := int64(-1)
	eventually(t, "the source to stall", func() bool {
		time.Sleep(100 * time.Millisecond)
		n := written.Load()
		stalled := n == last
		last = n
		return stalled
	})
	if used := dp.q.Used(); used > queue+framepool.LargeSize {
		t.Fatalf("the queue holds %d bytes, more than its %d and one frame", used, queue)
	}
	if n := written.Load(); n >= frames/2 {
		t.Fatalf("the source wrote %d of %d frames to a receiver that reads nothing", n, frames)
	}
	t.Logf("source stalled after %d frames", written.Load())

	dst.startReading()
	dst.expect(serviceIDs("HTTP"))
	for i := range frames {
		dst.expect(frameAt(i))
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
}

// A peer that sends nothing for PeerSilence, not even a ping (its host is
// gone, or a middlebox stopped forwarding without closing), is dropped, and
// the store records it disconnected; a peer that pings stays.
func TestSilentPeerDropped(t *testing.T) {
	const silence = 500 * time.Millisecond
	e := newEnv(t, Config{PeerSilence: silence})
	tn, tok := e.newTunnel("HTTP")
	src, dst := e.pair(tn, tok)
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		for {
			select {
			case <-stop:
				return
			case <-time.After(silence / 5):
			}
			if err := src.conn.WriteControl(websocket.PingMessage, []byte("1"), time.Now().Add(waitLimit)); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	dst.expectDrop()
	took := time.Since(start)
	close(stop)
	<-pinged
	if took < silence-100*time.Millisecond || took > silence+5*time.Second {
		t.Errorf("the silent peer was dropped after %v; its limit is %v", took, silence)
	}
	eventually(t, "the store to record the silent peer disconnected", func() bool {
		return !e.tunnel(tn.ID).Destination.Connected
	})
	if got := e.tunnel(tn.ID); !got.Source.Connected {
		t.Error("the pinging peer was dropped too")
	}
}

// Pings within the allowance are answered one for one; a flood is closed
// as a policy violation (the close frame may be lost to the reset the
// flooder's unread pings cause), and the other peer carries on.
func TestPingFloodIsClosed(t *testing.T) {
	e := newEnv(t, Config{})
	tn, tok := e.newTunnel("SSH")
	src, dst := e.pair(tn, tok)
	for range pingBurst / 2 {
		src.ping("1795767944609")
	}
	if got := src.syncPongs(); len(got) != pingBurst/2+1 {
		t.Fatalf("%d pongs for %d pings", len(got), pingBurst/2+1)
	}
	for range 4 * pingBurst {
		if err := dst.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(waitLimit)); err != nil {
			break // closed already
		}
	}
	if got, code, _ := dst.ended(); got && code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d, want %d", code, websocket.ClosePolicyViolation)
	}
	for deadline := time.Now().Add(waitLimit); e.relay.stats.disconnects[disconnectIndex(reasonViolation)].Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.relay.stats.disconnects[disconnectIndex(reasonViolation)].Load(); n != 1 || !strings.Contains(e.logs.String(), "ping flood") {
		t.Fatalf("%d violations; log:\n%s", n, e.logs.String())
	}
	src.syncPongs() // still served
}
