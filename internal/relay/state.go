package relay

import (
	"sync"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

// side indexes a tunnel's two ends.
type side int

const (
	sourceSide      side = 0
	destinationSide side = 1
)

func sideOf(m tunnel.Mode) side {
	if m == tunnel.ModeSource {
		return sourceSide
	}
	return destinationSide
}

func (s side) other() side { return 1 - s }

func (s side) mode() tunnel.Mode {
	if s == sourceSide {
		return tunnel.ModeSource
	}
	return tunnel.ModeDestination
}

// activeStream is a service's current stream, as the source started it.
type activeStream struct {
	serviceID string // "" for V1 peers
	streamID  int32
}

// tunnelState is the relay's in-memory view of a tunnel that has peers or
// handshakes under way. Relay.mu guards refs; mu guards the rest.
type tunnelState struct {
	id   string
	refs int

	// admitting serializes, per side, handshakes and the bookkeeping of a
	// peer's end, so that the store's Connected flag follows the last event.
	admitting [2]sync.Mutex

	mu      sync.Mutex
	peers   [2]*peer
	streams []activeStream // at most one per service
	expiry  *time.Timer
	closed  bool // tunnel closed or expired: a new peer gets a close frame
	dropped bool // relay shutting down: a new peer is dropped
}

func (ts *tunnelState) peer(sd side) *peer {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.peers[sd]
}

// register makes p its side's peer and arms the lifetime timer. It reports
// whether the tunnel was closed or the relay is shutting down meanwhile.
func (ts *tunnelState) register(p *peer, now, expiresAt time.Time, expire func()) (closed, dropped bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.peers[p.side] = p
	if ts.expiry != nil {
		ts.expiry.Stop()
	}
	ts.expiry = time.AfterFunc(max(expiresAt.Sub(now), 0), expire)
	return ts.closed, ts.dropped
}

func (ts *tunnelState) stopTimer() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.expiry != nil {
		ts.expiry.Stop()
		ts.expiry = nil
	}
}

// closeAll stops both peers: with a close frame (code != 0) when the tunnel
// ended, without one when the relay shuts down.
func (ts *tunnelState) closeAll(code int, text string, shutdown bool) {
	ts.mu.Lock()
	if shutdown {
		ts.dropped = true
	} else {
		ts.closed = true
	}
	peers := ts.peers
	ts.mu.Unlock()
	for _, p := range peers {
		if p != nil {
			p.stop(code, text)
		}
	}
}

// track follows the services' current streams: the source's STREAM_START
// opens one, a STREAM_RESET of it from either side ends it.
func (ts *tunnelState) track(m *wire.Message) {
	if m.Type != wire.TypeStreamStart && m.Type != wire.TypeStreamReset {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	i := -1
	for j, s := range ts.streams {
		if s.serviceID == m.ServiceID {
			i = j
		}
	}
	switch {
	case m.Type == wire.TypeStreamStart && i >= 0:
		ts.streams[i].streamID = m.StreamID
	case m.Type == wire.TypeStreamStart:
		ts.streams = append(ts.streams, activeStream{serviceID: m.ServiceID, streamID: m.StreamID})
	case i >= 0 && ts.streams[i].streamID == m.StreamID:
		ts.streams = append(ts.streams[:i], ts.streams[i+1:]...)
	}
}

// detach removes p, which has ended, and takes the streams it leaves
// behind. It returns the other peer, which must be told they are reset.
func (ts *tunnelState) detach(p *peer) (other *peer, streams []activeStream) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.peers[p.side] == p {
		ts.peers[p.side] = nil
	}
	streams, ts.streams = ts.streams, nil
	return ts.peers[p.side.other()], streams
}
