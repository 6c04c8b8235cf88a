package relay

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// rotate does what the API's RotateTunnelAccessToken does: new tokens in
// the store, then the relay told.
func (e *env) rotate(id string, dest *tunnel.Destination, modes ...tunnel.Mode) tunnel.Tokens {
	e.t.Helper()
	var tok tunnel.Tokens
	if _, err := e.store.UpdateTunnel(context.Background(), id, func(t *tunnel.Tunnel) error {
		var err error
		tok, err = tunnel.Rotate(t, modes, dest, e.clock.now())
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	e.tokens.mu.Lock()
	for _, s := range []string{tok.Source, tok.Destination} {
		if s != "" {
			e.tokens.list = append(e.tokens.list, s)
		}
	}
	e.tokens.mu.Unlock()
	e.relay.RotateTunnel(id, modes...)
	return tok
}

// TestRotateTunnel: the peer of a rotated side gets a close frame (the
// official proxy exits instead of retrying a dead token), the other peer
// its streams' resets; the old token is refused, the new one admitted.
func TestRotateTunnel(t *testing.T) {
	for _, c := range []struct {
		name  string
		modes []tunnel.Mode
	}{
		{"SOURCE", []tunnel.Mode{tunnel.ModeSource}},
		{"DESTINATION", []tunnel.Mode{tunnel.ModeDestination}},
		{"ALL", []tunnel.Mode{tunnel.ModeSource, tunnel.ModeDestination}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			tn, old := e.newTunnel("HTTP", "ECHO")
			src, dst := e.pair(tn, old)
			src.send(streamStart("HTTP", 1, 1), streamStart("ECHO", 1, 1))
			dst.expect(streamStart("HTTP", 1, 1), streamStart("ECHO", 1, 1))

			tok := e.rotate(tn.ID, nil, c.modes...)
			rotated := map[tunnel.Mode]bool{}
			for _, m := range c.modes {
				rotated[m] = true
			}
			peers := map[tunnel.Mode]*client{tunnel.ModeSource: src, tunnel.ModeDestination: dst}
			for m, p := range peers {
				if !rotated[m] {
					// The streams the rotated peer leaves behind.
					p.expectSet(streamReset("HTTP", 1), streamReset("ECHO", 1))
					continue
				}
				if text := p.expectClose(websocket.CloseNormalClosure); text != "access token rotated" {
					t.Errorf("%s: close text %q", m, text)
				}
			}
			e.ended(int64(len(c.modes)))
			got := e.tunnel(tn.ID)
			if got.Source.Connected == rotated[tunnel.ModeSource] || got.Destination.Connected == rotated[tunnel.ModeDestination] {
				t.Fatalf("store: source %v destination %v", got.Source.Connected, got.Destination.Connected)
			}

			oldTok := map[tunnel.Mode]string{tunnel.ModeSource: old.Source, tunnel.ModeDestination: old.Destination}
			newTok := map[tunnel.Mode]string{tunnel.ModeSource: tok.Source, tunnel.ModeDestination: tok.Destination}
			for _, m := range c.modes {
				// The source's old token had a client token bound: with it,
				// it would have reconnected.
				if status, _ := e.dialStatus(dialOpts{mode: m, token: oldTok[m], clientToken: testClientToken}); status != http.StatusUnauthorized {
					t.Fatalf("%s: old token got %d, want 401", m, status)
				}
				p := e.mustDial(dialOpts{mode: m, token: newTok[m]})
				p.expect(serviceIDs("HTTP", "ECHO"))
				peers[m] = p
			}
			// Traffic flows again between the new peer(s) and any that stayed.
			peers[tunnel.ModeSource].send(streamStart("HTTP", 2, 1), data("HTTP", 2, 1, []byte("again")))
			peers[tunnel.ModeDestination].expect(streamStart("HTTP", 2, 1), data("HTTP", 2, 1, []byte("again")))
			for _, p := range peers {
				p.syncPongs()
				if n := p.pending(); n != 0 {
					t.Fatalf("%d unexpected bytes", n)
				}
			}
		})
	}
}

// TestRotateWithoutPeers changes nothing in the relay, and a rotation of a
// tunnel the relay never saw is harmless.
func TestRotateWithoutPeers(t *testing.T) {
	e := newEnv(t, Config{})
	tn, _ := e.newTunnel("HTTP")
	tok := e.rotate(tn.ID, nil, tunnel.ModeSource, tunnel.ModeDestination)
	src, dst := e.pair(tn, tok)
	src.send(streamStart("HTTP", 1, 1))
	dst.expect(streamStart("HTTP", 1, 1))
	e.relay.RotateTunnel("no-such-tunnel", tunnel.ModeSource)
}

// TestNoDestinationConfig: a tunnel opened without destination config
// refuses both sides with a 4xx that says what to do, and spends no token;
// once a rotation of the destination gives it services, both connect.
func TestNoDestinationConfig(t *testing.T) {
	e := newEnv(t, Config{})
	tn, tok := e.newTunnel()
	for _, o := range []dialOpts{{mode: tunnel.ModeSource, token: tok.Source}, {mode: tunnel.ModeDestination, token: tok.Destination}} {
		status, body := e.dialStatus(o)
		if status != http.StatusConflict || !strings.Contains(body, "RotateTunnelAccessToken") {
			t.Fatalf("%s: got %d %q", o.mode, status, body)
		}
	}
	dtok := e.rotate(tn.ID, &tunnel.Destination{ThingName: "dev", Services: []string{"SSH"}}, tunnel.ModeDestination)
	dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: dtok.Destination})
	dst.expect(serviceIDs("SSH"))
	src := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source})
	src.expect(serviceIDs("SSH"))
	src.send(streamStart("SSH", 1, 1), data("SSH", 1, 1, []byte("hi")))
	dst.expect(streamStart("SSH", 1, 1), data("SSH", 1, 1, []byte("hi")))
}
