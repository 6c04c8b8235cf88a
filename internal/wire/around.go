package wire

import (
	"encoding/binary"
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// HeaderRoom is the most bytes FrameAround writes before a payload: the
// length prefix and the fields that precede the payload (type, stream id,
// ignorable) and the payload's own tag and length. A payload read into a
// buffer at this offset can become a frame without being copied.
const HeaderRoom = LengthPrefixSize + (1 + 10) /* type: tag, varint */ + (1 + 10) /* stream id */ +
	2 /* ignorable */ + (1 + 3) /* payload tag, length of at most MaxPayload */

// ErrNoRoom is returned by FrameAround when the buffer lacks room around
// the payload for the frame's other fields.
var ErrNoRoom = errors.New("wire: no room around the payload")

// FrameAround completes a frame around a payload that already sits at
// buf[off:off+n]: it writes the length prefix and the fields that precede the
// payload just before it, and those that follow it (service id, connection
// id) just after it, within buf's capacity. The result is buf[start:end], the
// same bytes AppendFrame makes of m with that payload (m.Payload is ignored).
// With off >= HeaderRoom the head always fits; the tail needs
// TailSize(m) bytes of capacity after the payload.
func FrameAround(buf []byte, off, n int, m *Message) ([]byte, error) {
	if n > MaxPayload {
		return nil, ErrPayloadTooLarge
	}
	var head [HeaderRoom - LengthPrefixSize]byte
	h := appendHead(head[:0], m, n)
	tail := TailSize(m)
	body := len(h) + n + tail
	if body > MaxFrame {
		return nil, ErrFrameTooLarge
	}
	start := off - LengthPrefixSize - len(h)
	end := off + n + tail
	if start < 0 || end > cap(buf) {
		return nil, ErrNoRoom
	}
	buf = buf[:end]
	binary.BigEndian.PutUint16(buf[start:], uint16(body))
	copy(buf[start+LengthPrefixSize:], h)
	appendTail(buf[:off+n], m)
	return buf[start:end], nil
}

// appendHead appends the fields before the payload and, for n > 0, the
// payload's tag and length.
func appendHead(b []byte, m *Message, n int) []byte {
	if m.Type != 0 {
		b = protowire.AppendTag(b, fieldType, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(m.Type)))
	}
	if m.StreamID != 0 {
		b = protowire.AppendTag(b, fieldStreamID, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(m.StreamID)))
	}
	if m.Ignorable {
		b = protowire.AppendTag(b, fieldIgnorable, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if n > 0 {
		b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
	}
	return b
}

// TailSize is how many bytes the fields after the payload take.
func TailSize(m *Message) int {
	n := 0
	if m.ServiceID != "" {
		n += 1 + protowire.SizeBytes(len(m.ServiceID))
	}
	for _, s := range m.AvailableServiceIDs {
		n += 1 + protowire.SizeBytes(len(s))
	}
	if m.ConnectionID != 0 {
		n += 1 + protowire.SizeVarint(uint64(m.ConnectionID))
	}
	return n
}

func appendTail(b []byte, m *Message) []byte {
	if m.ServiceID != "" {
		b = protowire.AppendTag(b, fieldServiceID, protowire.BytesType)
		b = protowire.AppendString(b, m.ServiceID)
	}
	for _, s := range m.AvailableServiceIDs {
		b = protowire.AppendTag(b, fieldAvailableServiceIDs, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	if m.ConnectionID != 0 {
		b = protowire.AppendTag(b, fieldConnectionID, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.ConnectionID))
	}
	return b
}
