package relay

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/warrentunnel/warren/internal/tunnel"
)

func indexOf(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	panic("no " + name)
}

// Stats counts what a session did: frames and bytes forwarded each way,
// handshakes by result, live peers and connections, and disconnects by
// reason.
func TestStatsOfASession(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 10})
	results, reasons := HandshakeResults(), DisconnectReasons()
	hs := func(r string) int64 {
		return e.relay.Stats().Handshakes[indexOf(results[:], r)]
	}
	dc := func(r string) int64 {
		return e.relay.Stats().Disconnects[indexOf(reasons[:], r)]
	}

	tn, tok := e.newTunnel("HTTP")
	src, dst := e.pair(tn, tok)
	start := streamStart("HTTP", 1, 1)
	req := data("HTTP", 1, 1, pattern(1, 5000))
	src.send(start, req)
	dst.expect(start, req)
	resp := data("HTTP", 1, 1, pattern(2, 20000))
	dst.send(resp)
	src.expect(resp)

	s := e.relay.Stats()
	if s.ForwardedFrames != [2]int64{2, 1} {
		t.Errorf("forwarded frames %v, want [2 1]", s.ForwardedFrames)
	}
	if want := [2]int64{int64(len(start) + len(req)), int64(len(resp))}; s.ForwardedBytes != want {
		t.Errorf("forwarded bytes %v, want %v", s.ForwardedBytes, want)
	}
	if s.Peers != [2]int{1, 1} || s.Connections != 1 || !s.ConnectionsCounted {
		t.Errorf("peers %v connections %d (%v), want [1 1] and 1", s.Peers, s.Connections, s.ConnectionsCounted)
	}
	if hs("ok") != 2 {
		t.Errorf("handshakes ok %d", hs("ok"))
	}

	for _, c := range []struct {
		opts   dialOpts
		result string
	}{
		{dialOpts{mode: tunnel.ModeSource, token: "AQwrongwrongwrong"}, "unauthorized"},
		{dialOpts{mode: tunnel.ModeDestination, token: tok.Source}, "forbidden"},
		{dialOpts{mode: tunnel.ModeSource, token: tok.Source}, "conflict"}, // spent
	} {
		before := hs(c.result)
		e.dialStatus(c.opts)
		if got := hs(c.result); got != before+1 {
			t.Errorf("handshakes %s: %d, want %d", c.result, got, before+1)
		}
	}

	// A protocol violation, then the tunnel's close.
	src.send(data("HTTP", 0, 1, []byte("x")))
	src.expectClose(websocket.CloseProtocolError)
	e.ended(1)
	if dc("protocol_violation") != 1 {
		t.Errorf("disconnects %v", e.relay.Stats().Disconnects)
	}
	e.store.UpdateTunnel(context.Background(), tn.ID, func(t *tunnel.Tunnel) error { t.Close(time.Now()); return nil })
	e.relay.CloseTunnel(tn.ID)
	dst.expectClose(websocket.CloseNormalClosure)
	e.ended(2)
	if dc("tunnel_closed") != 1 || dc("connection_ended") != 0 {
		t.Errorf("disconnects %v", e.relay.Stats().Disconnects)
	}
	if s := e.relay.Stats(); s.Peers != [2]int{} || s.Connections != 0 {
		t.Errorf("after the close: peers %v connections %d", s.Peers, s.Connections)
	}
}
