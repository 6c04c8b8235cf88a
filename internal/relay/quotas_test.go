package relay

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

// The bookkeeping behind the connection limit, frame by frame.
func TestTrackConnections(t *testing.T) {
	type step struct {
		m     wire.Message
		admit bool
		live  int
	}
	start := func(svc string, s int32, c uint32) wire.Message {
		return wire.Message{Type: wire.TypeStreamStart, ServiceID: svc, StreamID: s, ConnectionID: c}
	}
	join := func(svc string, s int32, c uint32) wire.Message {
		return wire.Message{Type: wire.TypeConnectionStart, ServiceID: svc, StreamID: s, ConnectionID: c}
	}
	end := func(svc string, s int32, c uint32) wire.Message {
		return wire.Message{Type: wire.TypeConnectionReset, ServiceID: svc, StreamID: s, ConnectionID: c}
	}
	reset := func(svc string, s int32) wire.Message {
		return wire.Message{Type: wire.TypeStreamReset, ServiceID: svc, StreamID: s}
	}
	for _, c := range []struct {
		name  string
		limit int
		steps []step
	}{
		{"V3 connections of one stream", 3, []step{
			{start("A", 1, 1), true, 1},
			{join("A", 1, 2), true, 2},
			{join("A", 1, 3), true, 3},
			{join("A", 1, 4), false, 3},
			{join("A", 1, 2), true, 3}, // repeated: the same connection
			{end("A", 1, 2), true, 2},
			{end("A", 1, 2), true, 2}, // the other side's reset of it
			{join("A", 1, 5), true, 3},
			{wire.Message{Type: wire.TypeData, ServiceID: "A", StreamID: 1, ConnectionID: 9}, true, 3},
			{start("B", 1, 1), false, 3},
			{reset("A", 1), true, 0},
			{start("B", 1, 1), true, 1},
		}},
		{"connection id 0 is 1", 2, []step{
			{start("A", 1, 0), true, 1},
			{join("A", 1, 1), true, 1},
			{join("A", 1, 2), true, 2},
			{end("A", 1, 0), true, 1},
			{end("A", 1, 2), true, 0},
		}},
		{"V1/V2: a new stream replaces the service's", 1, []step{
			{start("A", 1, 0), true, 1},
			{start("A", 2, 0), true, 1},
			{start("B", 1, 0), false, 1},
			{reset("A", 1), true, 1}, // stale: stream 2 lives on
			{reset("A", 2), true, 0},
			{start("B", 1, 0), true, 1},
			{start("", 1, 0), false, 1}, // V1, no service id
		}},
		{"a new V3 stream ends the old one's connections", 3, []step{
			{start("A", 1, 1), true, 1},
			{join("A", 1, 2), true, 2},
			{join("B", 7, 1), true, 3}, // on a stream never started: counted
			{start("A", 2, 3), true, 2},
			{reset("B", 7), true, 1},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := &tunnelState{}
			for i, s := range c.steps {
				if got := ts.track(&s.m, c.limit); got != s.admit || ts.connections() != s.live {
					t.Fatalf("step %d (%s %s/%d/%d): admitted %v, %d live; want %v, %d",
						i+1, s.m.Type, s.m.ServiceID, s.m.StreamID, s.m.ConnectionID, got, ts.connections(), s.admit, s.live)
				}
			}
		})
	}

	// A peer's end ends every connection; the other peer resets each
	// stream they were on.
	ts := &tunnelState{}
	for _, m := range []wire.Message{start("A", 1, 1), join("A", 1, 2), join("B", 4, 1), reset("A", 9)} {
		ts.track(&m, 5)
	}
	_, streams := ts.detach(&peer{side: sourceSide})
	if ts.connections() != 0 || len(ts.services) != 0 {
		t.Fatalf("after detach: %d live, services %v", ts.connections(), ts.services)
	}
	if want := []activeStream{{"A", 1}, {"B", 4}}; fmt.Sprint(streams) != fmt.Sprint(want) {
		t.Fatalf("streams to reset %v, want %v", streams, want)
	}
}

// Past the tunnel's limit, a CONNECTION_START is answered with its reset
// and not forwarded; the live connections carry on, and once one ends a
// new one is admitted.
func TestConnectionLimit(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 3})
	tn, tok := e.newTunnel("HTTP")
	dialDst := func() *client {
		dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, clientToken: testClientToken})
		dst.expect(serviceIDs(tn.Services...))
		return dst
	}
	dst := dialDst()
	src := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source})
	src.expect(serviceIDs(tn.Services...))

	src.send(streamStart("HTTP", 1, 1), connStart("HTTP", 1, 2), connStart("HTTP", 1, 3))
	dst.expect(streamStart("HTTP", 1, 1), connStart("HTTP", 1, 2), connStart("HTTP", 1, 3))

	// (DATA is not checked against the live connections: what a source
	// sends for a refused one before its reset arrives reaches the
	// destination, which drops it like any frame of a connection it does
	// not have.)
	src.send(connStart("HTTP", 1, 4))
	src.expect(connReset("HTTP", 1, 4))
	for c := uint32(1); c <= 3; c++ {
		d := data("HTTP", 1, c, pattern(int(c), 1000))
		src.send(d)
		dst.expect(d) // and not the refused start
		back := data("HTTP", 1, c, pattern(int(c)+10, 1000))
		dst.send(back)
		src.expect(back)
	}
	if n := e.relay.stats.refusedStarts.Load(); n != 1 {
		t.Fatalf("%d starts refused, want 1", n)
	}
	if l := e.logs.lines("connection refused", "limit=3", "conn=4"); len(l) != 1 {
		t.Fatalf("%d log lines of the refusal, want 1:\n%s", len(l), e.logs)
	}

	// The destination ends connection 2; the source's own reset of it
	// follows. A new connection fits again, and only one.
	dst.send(connReset("HTTP", 1, 2))
	src.expect(connReset("HTTP", 1, 2))
	src.send(connReset("HTTP", 1, 2), connStart("HTTP", 1, 5), connStart("HTTP", 1, 6))
	dst.expect(connReset("HTTP", 1, 2), connStart("HTTP", 1, 5))
	src.expect(connReset("HTTP", 1, 6))

	// A STREAM_RESET ends all of the stream's connections.
	dst.send(streamReset("HTTP", 1))
	src.expect(streamReset("HTTP", 1))
	src.send(streamStart("HTTP", 2, 7), connStart("HTTP", 2, 8), connStart("HTTP", 2, 9), connStart("HTTP", 2, 10))
	dst.expect(streamStart("HTTP", 2, 7), connStart("HTTP", 2, 8), connStart("HTTP", 2, 9))
	src.expect(connReset("HTTP", 2, 10))

	// So does a peer's end: the new destination finds the tunnel empty.
	dst.close()
	src.expect(streamReset("HTTP", 2))
	e.ended(1)
	dst = dialDst()
	src.send(streamStart("HTTP", 3, 11), connStart("HTTP", 3, 12), connStart("HTTP", 3, 13))
	dst.expect(streamStart("HTTP", 3, 11), connStart("HTTP", 3, 12), connStart("HTTP", 3, 13))
	src.syncPongs()
	if n := src.pending(); n != 0 {
		t.Fatalf("%d unexpected bytes at the source", n)
	}
}

// V2 sources carry one connection per service, each a stream of its own
// that replaces the previous: a new stream of a service always fits, a
// stream of another service only under the limit. The reset is in V2's
// format.
func TestConnectionLimitV2(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 1})
	tn, tok := e.newTunnel("A", "B")
	dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination})
	dst.expect(serviceIDs(tn.Services...))
	v2 := []string{"aws.iot.securetunneling-2.0"}
	src := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, subprotocols: v2})
	src.expect(serviceIDs(tn.Services...))

	src.send(streamStart("A", 1, 0))
	dst.expect(streamStart("A", 1, 0))
	src.send(streamStart("B", 1, 0))
	src.expect(streamReset("B", 1))
	src.send(streamStart("A", 2, 0))
	dst.expect(streamStart("A", 2, 0))
	src.send(streamReset("A", 2), streamStart("B", 2, 0))
	dst.expect(streamReset("A", 2), streamStart("B", 2, 0))
}

// countingStore counts token lookups.
type countingStore struct {
	Store
	lookups atomic.Int64
}

func (s *countingStore) TunnelByToken(ctx context.Context, hash []byte) (tunnel.Tunnel, tunnel.Mode, error) {
	s.lookups.Add(1)
	return s.Store.TunnelByToken(ctx, hash)
}

// Handshakes with unknown tokens count against the client's address; once
// its burst is spent, its handshakes get 429 before any token is looked
// up, whatever X-Forwarded-For says, while other addresses, with good or
// bad tokens, are served as before.
func TestHandshakeFailureLimit(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "counted.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	e := newEnv(t, Config{Store: cs, HandshakeFailureRate: 0.001, HandshakeFailureBurst: 3})
	e.store = st // the tunnels go where the relay looks
	tn, tok := e.newTunnel("HTTP")
	const attacker = "127.0.0.2"
	spoofed := http.Header{"X-Forwarded-For": {"127.0.0.9"}}
	bad := func(i int) string { return fmt.Sprintf("AQguessed-token-%d", i) }

	for i := range 3 {
		if status, _ := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: bad(i), localIP: attacker, header: spoofed}); status != http.StatusUnauthorized {
			t.Fatalf("bad token %d: %d, want 401", i+1, status)
		}
	}
	lookups := cs.lookups.Load()
	status, body := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: bad(3), localIP: attacker})
	if status != http.StatusTooManyRequests || !strings.Contains(body, "too many failed handshakes") {
		t.Fatalf("bad token past the burst: %d %q, want 429 saying why", status, body)
	}
	// Even the right token waits now: the address is not believed.
	if status, _ := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: tok.Source, localIP: attacker}); status != http.StatusTooManyRequests {
		t.Fatalf("good token from the throttled address: %d, want 429", status)
	}
	if n := cs.lookups.Load(); n != lookups {
		t.Fatalf("%d token lookups for throttled handshakes, want none", n-lookups)
	}

	// Another address is unaffected, whatever it claims to forward for.
	if status, _ := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: bad(4), localIP: "127.0.0.3"}); status != http.StatusUnauthorized {
		t.Fatalf("bad token from another address: %d, want 401", status)
	}
	src := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, localIP: "127.0.0.1",
		header: http.Header{"X-Forwarded-For": {attacker}}})
	src.expect(serviceIDs(tn.Services...))
	if n := e.relay.stats.throttled.Load(); n != 2 {
		t.Fatalf("%d handshakes throttled, want 2", n)
	}
}

// A wrong client token is a guess too; a spent token or a wrong mode names
// a real token and does not count.
func TestHandshakeFailuresCounted(t *testing.T) {
	e := newEnv(t, Config{HandshakeFailureRate: 0.001, HandshakeFailureBurst: 2})
	_, tok := e.newTunnel("HTTP")
	dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, clientToken: testClientToken, localIP: "127.0.0.4"})
	for range 3 {
		if status, _ := e.dialStatus(dialOpts{mode: tunnel.ModeSource, token: tok.Destination, localIP: "127.0.0.4"}); status != http.StatusForbidden {
			t.Fatalf("wrong mode: %d, want 403", status)
		}
	}
	other := strings.Repeat("b", 36)
	for i, want := range []int{http.StatusConflict, http.StatusConflict, http.StatusTooManyRequests} {
		if status, _ := e.dialStatus(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, clientToken: other, localIP: "127.0.0.4"}); status != want {
			t.Fatalf("wrong client token %d: %d, want %d", i+1, status, want)
		}
	}
	dst.close()
}

func TestClientAddr(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.7:443", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:80", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"not an address", "not an address"},
	} {
		if got := clientAddr(c.in); got != c.want {
			t.Errorf("clientAddr(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
