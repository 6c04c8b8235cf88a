package relay

import (
	"fmt"
	"io"
	"slices"

	"github.com/gorilla/websocket"
	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

// violation is a peer breaking the protocol: the relay closes that peer's
// connection (and only that one) with code, unless code is 0 because the
// WebSocket library already sent its own close frame.
type violation struct {
	code   int
	reason string
}

func (v *violation) Error() string { return "protocol violation: " + v.reason }

func violated(code int, format string, args ...any) *violation {
	return &violation{code: code, reason: fmt.Sprintf(format, args...)}
}

// checkFrame applies the protocol's rules to a decoded frame from a peer in
// mode, on a tunnel with services.
func checkFrame(m *wire.Message, mode tunnel.Mode, services []string) *violation {
	switch m.Type {
	case wire.TypeData, wire.TypeStreamReset, wire.TypeConnectionReset:
	case wire.TypeStreamStart, wire.TypeConnectionStart:
		if mode == tunnel.ModeDestination {
			return violated(websocket.CloseProtocolError, "%s from the destination", m.Type)
		}
	case wire.TypeSessionReset, wire.TypeServiceIDs, wire.TypeLinkCredit:
		return violated(websocket.CloseProtocolError, "%s may only be sent by the service", m.Type)
	default:
		// The protocol guide lets a message of a type one does not know
		// through when its sender marked it ignorable: a newer peer's
		// extension reaches the other peer, which may skip it.
		if m.Ignorable && m.Type != wire.TypeUnknown {
			return nil
		}
		return violated(websocket.CloseProtocolError, "message type %s", m.Type)
	}
	if m.StreamID == 0 {
		return violated(websocket.CloseProtocolError, "%s with stream id 0", m.Type)
	}
	// An empty service id is allowed: V1 peers send none.
	if m.ServiceID != "" && !slices.Contains(services, m.ServiceID) {
		return violated(websocket.CloseProtocolError, "%s for service %q, which the tunnel does not have", m.Type, m.ServiceID)
	}
	return nil
}

// serviceIDsFrame is the SERVICE_IDS frame a 2.0 or 3.0 peer gets at once.
func serviceIDsFrame(services []string) *framepool.Buf {
	return controlFrame(&wire.Message{Type: wire.TypeServiceIDs, AvailableServiceIDs: services})
}

// streamResetFrame ends a stream of the other peer. It carries no
// connection id: a stream reset closes all of the stream's connections.
func streamResetFrame(s activeStream) *framepool.Buf {
	return controlFrame(&wire.Message{Type: wire.TypeStreamReset, StreamID: s.streamID, ServiceID: s.serviceID})
}

// controlFrame encodes a frame without payload into a pooled buffer.
func controlFrame(m *wire.Message) *framepool.Buf {
	b := framepool.Get(framepool.SmallSize)
	var err error
	if b.B, err = wire.AppendFrame(b.Mem[:0], m); err != nil || len(b.B) > len(b.Mem) {
		// Service ids are at most 128 bytes, three to a tunnel.
		panic("relay: control frame does not fit a small buffer")
	}
	return b
}

// encodeFor returns the frame to queue toward a peer of the given protocol
// version: the frame read, or, toward 2.0, the frame re-encoded without its
// connection id (2.0 peers have none), in a new buffer (f is freed).
func encodeFor(version int, f *framepool.Buf, m *wire.Message) *framepool.Buf {
	if version != 2 || m.ConnectionID == 0 {
		return f
	}
	mm := *m
	mm.ConnectionID = 0
	out := framepool.Get(len(f.B))
	var err error
	if out.B, err = wire.AppendFrame(out.Mem[:0], &mm); err != nil {
		panic("relay: " + err.Error()) // dropping a field only shrinks a valid frame
	}
	f.Free()
	return out
}

// orderFree reports whether a frame may be reordered against frames of
// other connections: DATA, and the ignorable extensions of one connection
// (Warren's window updates). Every other frame starts or ends streams and
// connections and keeps its place (fairq's control frames).
func orderFree(m *wire.Message) bool {
	switch m.Type {
	case wire.TypeData:
		return true
	case wire.TypeStreamStart, wire.TypeStreamReset, wire.TypeSessionReset, wire.TypeServiceIDs,
		wire.TypeConnectionStart, wire.TypeConnectionReset, wire.TypeUnknown:
		return false
	}
	return m.Ignorable
}

// flowKey names the connection a frame belongs to, for the fair queue:
// its service (by index in the tunnel's services), stream and connection.
func flowKey(services []string, m *wire.Message) uint64 {
	svc := uint64(0)
	for i, s := range services {
		if s == m.ServiceID {
			svc = uint64(i + 1)
		}
	}
	return svc<<56 | uint64(uint32(m.StreamID))<<24 ^ uint64(m.ConnectionID)
}

// messageStream is a peer's WebSocket messages as one byte stream: tunnel
// frames may span messages, so the relay does not require alignment.
type messageStream struct {
	conn *websocket.Conn
	cur  io.Reader // the message being read; nil between messages
	// alive, if set, moves the read deadline on before each message.
	alive func()
}

// next waits for the next message, which must be binary.
func (s *messageStream) next() error {
	if s.alive != nil {
		s.alive()
	}
	typ, r, err := s.conn.NextReader()
	if err != nil {
		return err
	}
	if typ != websocket.BinaryMessage {
		return violated(websocket.CloseUnsupportedData, "text message; only binary messages are allowed")
	}
	s.cur = r
	return nil
}

func (s *messageStream) Read(b []byte) (int, error) {
	for {
		if s.cur == nil {
			if err := s.next(); err != nil {
				return 0, err
			}
		}
		n, err := s.cur.Read(b)
		if err == io.EOF {
			s.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// drained reports whether the current message has been read to its end.
// A zero-length read does not block while the message's last WebSocket frame
// has bytes left or is finished.
func (s *messageStream) drained() bool {
	if s.cur == nil {
		return true
	}
	if _, err := s.cur.Read(nil); err == io.EOF {
		s.cur = nil
		return true
	}
	return false
}
