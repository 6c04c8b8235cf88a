// Package wire owns the tunnel frame format shared by the relay and the local
// proxy: the protobuf Message of the AWS IoT Secure Tunneling protocol and its
// 2-byte big-endian length prefix. It knows nothing about WebSockets, tunnels
// or sockets; it turns bytes into messages and back, and enforces the size
// limits of the protocol. Everything here parses untrusted bytes and is fuzzed.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Type is the Message.Type enum of Message.proto.
type Type int32

// Message types, numbered as in Message.proto.
const (
	TypeUnknown         Type = 0
	TypeData            Type = 1
	TypeStreamStart     Type = 2
	TypeStreamReset     Type = 3
	TypeSessionReset    Type = 4
	TypeServiceIDs      Type = 5
	TypeConnectionStart Type = 6
	TypeConnectionReset Type = 7

	// TypeWindowUpdate is Warren's extension, always sent with Ignorable
	// set (the protocol lets a peer that does not know a type ignore it; the
	// official proxy does): its 4-byte big-endian payload is how many more
	// bytes the sender's local socket has taken of a connection, which lets
	// a Warren peer keep each connection within its window.
	TypeWindowUpdate Type = 100

	// TypeLinkCredit is Warren's extension from the relay to a Warren local
	// proxy that asked for it (header LinkCreditHeader), always sent with
	// Ignorable set: how many DATA payload bytes the proxy may have sent in
	// all on this WebSocket (a limit that moves up as the relay forwards),
	// and how large a DATA frame should be, while the account's bandwidth
	// is limited. Its payload is LinkCredit's encoding.
	TypeLinkCredit Type = 101
)

// LinkCreditHeader, set to "1" in a local proxy's handshake, asks the relay
// for TypeLinkCredit messages.
const LinkCreditHeader = "X-Warren-Link-Credit"

// LinkCredit is the content of a TypeLinkCredit message.
type LinkCredit struct {
	// Limit is the total of DATA payload bytes the proxy may have sent on
	// this WebSocket; negative: no limit.
	Limit int64
	// Chunk is the most payload a DATA frame should carry.
	Chunk uint32
}

// LinkCreditSize is the length of LinkCredit's encoding.
const LinkCreditSize = 12

// Encode appends the 12-byte big-endian encoding of c to b.
func (c LinkCredit) Encode(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(c.Limit))
	return binary.BigEndian.AppendUint32(b, c.Chunk)
}

// DecodeLinkCredit decodes a TypeLinkCredit payload.
func DecodeLinkCredit(p []byte) (LinkCredit, bool) {
	if len(p) != LinkCreditSize {
		return LinkCredit{}, false
	}
	return LinkCredit{Limit: int64(binary.BigEndian.Uint64(p)), Chunk: binary.BigEndian.Uint32(p[8:])}, true
}

var typeNames = [...]string{"UNKNOWN", "DATA", "STREAM_START", "STREAM_RESET", "SESSION_RESET", "SERVICE_IDS", "CONNECTION_START", "CONNECTION_RESET"}

func (t Type) String() string {
	if t >= 0 && int(t) < len(typeNames) {
		return typeNames[t]
	}
	switch t {
	case TypeWindowUpdate:
		return "WINDOW_UPDATE"
	case TypeLinkCredit:
		return "LINK_CREDIT"
	}
	return fmt.Sprintf("Type(%d)", int32(t))
}

// Protocol limits. The payload limit is the one the official local proxy
// enforces (63 KiB); the frame limit follows from the 2-byte length prefix.
const (
	MaxPayload       = 64512
	MaxFrame         = 65535 // largest value of the 2-byte length prefix
	LengthPrefixSize = 2
	// MaxWebSocketMessage is the largest WebSocket message payload a peer may
	// send (the official proxy's read buffer).
	MaxWebSocketMessage = 131076
)

// Field numbers of Message.proto.
const (
	fieldType                = 1
	fieldStreamID            = 2
	fieldIgnorable           = 3
	fieldPayload             = 4
	fieldServiceID           = 5
	fieldAvailableServiceIDs = 6
	fieldConnectionID        = 7
)

// Message is one tunnel frame's body. Zero values are not encoded, as in proto3.
type Message struct {
	Type                Type
	StreamID            int32
	Ignorable           bool
	Payload             []byte
	ServiceID           string
	AvailableServiceIDs []string
	ConnectionID        uint32
}

// Errors callers branch on.
var (
	ErrFrameTooLarge   = errors.New("wire: tunnel frame too large")
	ErrPayloadTooLarge = errors.New("wire: payload larger than 64512 bytes")
	ErrUnknownField    = errors.New("wire: unknown protobuf field")
	ErrMalformed       = errors.New("wire: malformed protobuf message")
)

// AppendMessage appends the protobuf encoding of m (without length prefix),
// fields in field-number order as the official proxy writes them.
func AppendMessage(b []byte, m *Message) []byte {
	b = appendHead(b, m, len(m.Payload))
	b = append(b, m.Payload...)
	return appendTail(b, m)
}

// AppendFrame appends m as a complete tunnel frame: length prefix and body.
func AppendFrame(b []byte, m *Message) ([]byte, error) {
	if len(m.Payload) > MaxPayload {
		return b, ErrPayloadTooLarge
	}
	start := len(b)
	b = append(b, 0, 0)
	b = AppendMessage(b, m)
	n := len(b) - start - LengthPrefixSize
	if n > MaxFrame {
		return b[:start], ErrFrameTooLarge
	}
	binary.BigEndian.PutUint16(b[start:], uint16(n))
	return b, nil
}

// Unmarshal decodes a frame body (without length prefix). Unknown fields are
// an error (ErrUnknownField): the protocol guide says a peer that sends them
// is closed. Payload aliases body.
//
// A service id equal to m's before the call reuses that string, so decoding
// a stream of frames into one Message does not allocate.
func Unmarshal(body []byte, m *Message) error {
	prevService := m.ServiceID
	*m = Message{}
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return fmt.Errorf("%w: bad tag", ErrMalformed)
		}
		body = body[n:]
		switch num {
		case fieldType, fieldStreamID, fieldIgnorable, fieldConnectionID:
			if typ != protowire.VarintType {
				return fmt.Errorf("%w: field %d has wire type %d", ErrMalformed, num, typ)
			}
			v, n := protowire.ConsumeVarint(body)
			if n < 0 {
				return fmt.Errorf("%w: bad varint in field %d", ErrMalformed, num)
			}
			body = body[n:]
			switch num {
			case fieldType:
				m.Type = Type(int32(v))
			case fieldStreamID:
				m.StreamID = int32(v)
			case fieldIgnorable:
				m.Ignorable = v != 0
			case fieldConnectionID:
				m.ConnectionID = uint32(v)
			}
		case fieldPayload, fieldServiceID, fieldAvailableServiceIDs:
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: field %d has wire type %d", ErrMalformed, num, typ)
			}
			v, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return fmt.Errorf("%w: bad length in field %d", ErrMalformed, num)
			}
			body = body[n:]
			switch num {
			case fieldPayload:
				m.Payload = v
			case fieldServiceID:
				if !utf8.Valid(v) {
					return fmt.Errorf("%w: serviceId is not UTF-8", ErrMalformed)
				}
				if string(v) == prevService {
					m.ServiceID = prevService
				} else {
					m.ServiceID = string(v)
				}
			case fieldAvailableServiceIDs:
				if !utf8.Valid(v) {
					return fmt.Errorf("%w: availableServiceIds is not UTF-8", ErrMalformed)
				}
				m.AvailableServiceIDs = append(m.AvailableServiceIDs, string(v))
			}
		default:
			return fmt.Errorf("%w %d", ErrUnknownField, num)
		}
	}
	if len(m.Payload) > MaxPayload {
		return ErrPayloadTooLarge
	}
	return nil
}

// Reader splits a byte stream into tunnel frames. Frames may span reads (and
// WebSocket messages); Reader buffers at most one frame. It is the fuzzed
// reference reader: the relay and the local proxy read with
// framepool.ReadFrame, which a fuzz test holds to the same results.
type Reader struct {
	r   io.Reader
	buf []byte // holds one frame: prefix + body
}

// NewReader returns a Reader of tunnel frames from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r}
}

// ReadFrame reads the next frame. raw is the complete frame including its
// length prefix and is valid until the next call; m's Payload aliases raw.
// A body that does not decode returns the raw frame along with the error.
// io.EOF is returned only at a frame boundary; a stream that ends inside a
// frame returns io.ErrUnexpectedEOF.
func (fr *Reader) ReadFrame(m *Message) (raw []byte, err error) {
	var hdr [LengthPrefixSize]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if cap(fr.buf) < LengthPrefixSize+n {
		fr.buf = make([]byte, LengthPrefixSize+n, LengthPrefixSize+MaxFrame)
	}
	fr.buf = fr.buf[:LengthPrefixSize+n]
	copy(fr.buf, hdr[:])
	if _, err := io.ReadFull(fr.r, fr.buf[LengthPrefixSize:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if err := Unmarshal(fr.buf[LengthPrefixSize:], m); err != nil {
		return fr.buf, err
	}
	return fr.buf, nil
}
