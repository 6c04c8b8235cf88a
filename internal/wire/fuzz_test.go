package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// FuzzReader splits fuzz bytes into tunnel frames. The committed corpus
// (testdata/fuzz/FuzzReader) holds every distinct non-DATA frame of the
// official proxy's captures. Properties: no panic; frames are consecutive
// slices of the input; errors are the package's sentinels; a decoded frame
// re-encodes to its own bytes when its encoding is canonical, and in any
// case re-encoding is stable.
func FuzzReader(f *testing.F) {
	data, _ := AppendFrame(nil, &Message{Type: TypeData, StreamID: 1, Payload: []byte("GET / HTTP/1.1\r\n\r\n"), ServiceID: "HTTP", ConnectionID: 1})
	f.Add(data)
	f.Add(append(data, data[:5]...)) // a frame, then one cut short
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		off := 0
		for {
			var m Message
			raw, err := r.ReadFrame(&m)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				if err == io.EOF && off != len(in) {
					t.Fatalf("EOF after %d of %d bytes", off, len(in))
				}
				return
			}
			if raw == nil {
				t.Fatalf("error without frame: %v", err)
			}
			if len(raw) < LengthPrefixSize || len(raw) != LengthPrefixSize+int(binary.BigEndian.Uint16(raw)) {
				t.Fatalf("frame of %d bytes has length prefix %d", len(raw), binary.BigEndian.Uint16(raw))
			}
			if !bytes.Equal(raw, in[off:off+len(raw)]) {
				t.Fatalf("frame at %d is not the input's bytes", off)
			}
			off += len(raw)
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownField) && !errors.Is(err, ErrPayloadTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				continue
			}
			checkRoundTrip(t, raw, &m)
		}
	})
}

func checkRoundTrip(t *testing.T, raw []byte, m *Message) {
	t.Helper()
	canonical := isCanonical(raw[LengthPrefixSize:])
	enc, err := AppendFrame(nil, m)
	if err != nil {
		// Re-encoding sign-extends negative enum and int32 values to 10
		// bytes, which can push a non-canonical frame over the limit.
		if canonical || !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("re-encode: %v", err)
		}
		return
	}
	if canonical && !bytes.Equal(enc, raw) {
		t.Fatalf("canonical frame re-encodes differently:\n in % x\nout % x", raw, enc)
	}
	var m2 Message
	if err := Unmarshal(enc[LengthPrefixSize:], &m2); err != nil {
		t.Fatalf("re-encoded frame does not decode: %v", err)
	}
	if !sameMessage(m, &m2) {
		t.Fatalf("round trip changed the message: %+v vs %+v", m, &m2)
	}
	enc2, err := AppendFrame(nil, &m2)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("re-encoding is not stable: %v", err)
	}
}

func sameMessage(a, b *Message) bool {
	norm := func(m Message) Message {
		if len(m.Payload) == 0 {
			m.Payload = nil
		}
		if len(m.AvailableServiceIDs) == 0 {
			m.AvailableServiceIDs = nil
		}
		return m
	}
	return reflect.DeepEqual(norm(*a), norm(*b))
}

// isCanonical reports whether body is encoded exactly as AppendMessage
// would encode what it decodes to: fields in number order, each once (the
// repeated field in one run), minimal tags and varints, no default values,
// int32 values sign-extended as proto3 requires.
func isCanonical(body []byte) bool {
	last := protowire.Number(0)
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || n != protowire.SizeTag(num) {
			return false
		}
		if num < last || (num == last && num != fieldAvailableServiceIDs) {
			return false
		}
		last = num
		body = body[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(body)
			if n < 0 || n != protowire.SizeVarint(v) || v == 0 {
				return false
			}
			switch num {
			case fieldType, fieldStreamID:
				if v != uint64(int64(int32(v))) {
					return false
				}
			case fieldIgnorable:
				if v != 1 {
					return false
				}
			case fieldConnectionID:
				if v > math.MaxUint32 {
					return false
				}
			}
			body = body[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(body)
			if n < 0 || n != protowire.SizeBytes(len(v)) {
				return false
			}
			if len(v) == 0 && num != fieldAvailableServiceIDs {
				return false
			}
			body = body[n:]
		default:
			return false
		}
	}
	return true
}
