package relay

import (
	"slices"
	"sync"

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

// connRef names a connection within a service.
type connRef struct {
	stream int32
	conn   uint32 // 1 for the one connection of a V1/V2 stream
}

// serviceState is what the relay follows of one service of a tunnel: its
// current stream, and, when the relay counts connections, the service's
// live connections (on whichever stream the source started them).
type serviceState struct {
	activeStream                      // streamID 0: none (it was reset)
	conns        map[connRef]struct{} // nil when empty
}

// tunnelState is the relay's in-memory view of a tunnel that has peers or
// handshakes under way. Relay.mu guards refs; mu guards the rest.
type tunnelState struct {
	id   string
	refs int

	// admitting serializes, per side, handshakes and the bookkeeping of a
	// peer's end, so that the store's Connected flag follows the last event.
	admitting [2]sync.Mutex

	mu       sync.Mutex
	peers    [2]*peer
	remote   [2]remoteSide  // sides whose peer another node holds (nodes.go)
	pending  [2]int         // handshakes of each side being admitted
	services []serviceState // at most one per service
	live     int            // connections in services' conns
	closed   bool           // tunnel closed (or expired): a new peer gets a close frame
	dropped  bool           // relay shutting down: a new peer is dropped
}

// beingAdmitted reports whether a handshake of side sd is being admitted
// (its peer may be in the store and not registered yet).
func (ts *tunnelState) beingAdmitted(sd side) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.pending[sd] > 0
}

func (ts *tunnelState) peer(sd side) *peer {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.peers[sd]
}

// register makes p its side's peer. It reports whether the tunnel was
// closed or the relay is shutting down meanwhile.
func (ts *tunnelState) register(p *peer) (closed, dropped bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.peers[p.side] = p
	return ts.closed, ts.dropped
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

// track follows the services' streams and connections through the starts
// and resets either peer sends, and admits the source's starts: it returns
// false for a start that would give the tunnel more than limit live
// connections (limit 0: no limit, and no connection is remembered), and then
// changes nothing.
//
// The source's STREAM_START opens a service's stream with its first
// connection, replacing the service's previous stream and its connections
// (V1/V2 peers carry one connection per service that way); CONNECTION_START
// adds one (V3). A connection ends with the first CONNECTION_RESET of it
// from either side (each side sends one, the second finds it gone) or a
// STREAM_RESET of its stream; all of them end when a peer leaves (detach).
// Connection id 0 is 1, as in the protocol.
func (ts *tunnelState) track(m *wire.Message, limit int) bool {
	switch m.Type {
	case wire.TypeStreamStart, wire.TypeConnectionStart, wire.TypeStreamReset, wire.TypeConnectionReset:
	default:
		return true
	}
	ref := connRef{stream: m.StreamID, conn: max(m.ConnectionID, 1)}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	i := slices.IndexFunc(ts.services, func(s serviceState) bool { return s.serviceID == m.ServiceID })
	var s *serviceState
	if i >= 0 {
		s = &ts.services[i]
	}
	switch m.Type {
	case wire.TypeStreamStart:
		replaced := 0
		if s != nil {
			replaced = len(s.conns)
		}
		if limit > 0 && ts.live-replaced >= limit {
			return false
		}
		if s == nil {
			s = ts.addService(m.ServiceID)
		}
		s.streamID = m.StreamID
		ts.live -= replaced
		s.conns = nil
		if limit > 0 {
			s.conns = map[connRef]struct{}{ref: {}}
			ts.live++
		}
	case wire.TypeConnectionStart:
		if limit <= 0 {
			return true
		}
		if s != nil {
			if _, ok := s.conns[ref]; ok {
				return true // a repeated start: the same connection
			}
		}
		if ts.live >= limit {
			return false
		}
		if s == nil {
			s = ts.addService(m.ServiceID)
		}
		if s.conns == nil {
			s.conns = map[connRef]struct{}{}
		}
		s.conns[ref] = struct{}{}
		ts.live++
	case wire.TypeStreamReset:
		if s == nil {
			return true
		}
		for c := range s.conns {
			if c.stream == m.StreamID {
				delete(s.conns, c)
				ts.live--
			}
		}
		if s.streamID == m.StreamID {
			s.streamID = 0
		}
		ts.forgetIfDone(i)
	case wire.TypeConnectionReset:
		if s == nil {
			return true
		}
		if _, ok := s.conns[ref]; ok {
			delete(s.conns, ref)
			ts.live--
		}
		ts.forgetIfDone(i)
	}
	return true
}

// addService starts following service id. Call with mu held.
func (ts *tunnelState) addService(id string) *serviceState {
	ts.services = append(ts.services, serviceState{activeStream: activeStream{serviceID: id}})
	return &ts.services[len(ts.services)-1]
}

// forgetIfDone drops service i once it has neither stream nor connections;
// an empty map goes too, so an idle tunnel holds none. Call with mu held.
func (ts *tunnelState) forgetIfDone(i int) {
	s := &ts.services[i]
	if len(s.conns) == 0 {
		s.conns = nil
	}
	if s.streamID == 0 && s.conns == nil {
		ts.services = slices.Delete(ts.services, i, i+1)
	}
}

// connections is how many live connections the tunnel has (counted only
// under a limit).
func (ts *tunnelState) connections() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.live
}

// detach removes p, which has ended, and takes the streams it leaves
// behind: the services' current streams and any other stream a live
// connection was started on. They end with all their connections. It
// returns the other peer, which must be told they are reset.
func (ts *tunnelState) detach(p *peer) (other *peer, streams []activeStream) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.peers[p.side] == p {
		ts.peers[p.side] = nil
	}
	return ts.peers[p.side.other()], ts.takeStreams()
}

// takeStreams returns the streams the services have and forgets them all,
// as when a peer leaves. Call with mu held.
func (ts *tunnelState) takeStreams() (streams []activeStream) {
	for _, s := range ts.services {
		if s.streamID != 0 {
			streams = append(streams, s.activeStream)
		}
		for c := range s.conns {
			st := activeStream{serviceID: s.serviceID, streamID: c.stream}
			if !slices.Contains(streams, st) {
				streams = append(streams, st)
			}
		}
	}
	ts.services, ts.live = nil, 0
	return streams
}
