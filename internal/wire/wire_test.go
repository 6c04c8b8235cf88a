package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// Frames exactly as the official local proxy v3.3.1 sent or accepted them
// (shared/reference/captures/README.md).
var captured = []struct {
	name string
	hex  string
	msg  Message
}{
	{"SERVICE_IDS [HTTP]", "00080805320448545450", Message{Type: TypeServiceIDs, AvailableServiceIDs: []string{"HTTP"}}},
	{"SERVICE_IDS [ECHO HTTP]", "000e08053204454348 4f320448545450", Message{Type: TypeServiceIDs, AvailableServiceIDs: []string{"ECHO", "HTTP"}}},
	{"STREAM_START v3", "000c080210012a04485454503801", Message{Type: TypeStreamStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1}},
	{"CONNECTION_START 2", "000c080610012a04485454503802", Message{Type: TypeConnectionStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2}},
	{"CONNECTION_RESET 1", "000c080710012a04485454503801", Message{Type: TypeConnectionReset, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1}},
	{"STREAM_RESET", "000a080310012a0448545450", Message{Type: TypeStreamReset, StreamID: 1, ServiceID: "HTTP"}},
	{"STREAM_START v2", "000a080210012a0448545450", Message{Type: TypeStreamStart, StreamID: 1, ServiceID: "HTTP"}},
	{"STREAM_START v1", "000408021001", Message{Type: TypeStreamStart, StreamID: 1}},
	{"DATA", "000b080110012203616263 3801", Message{Type: TypeData, StreamID: 1, Payload: []byte("abc"), ConnectionID: 1}},
}

func unhex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCapturedFramesRoundTrip(t *testing.T) {
	for _, c := range captured {
		t.Run(c.name, func(t *testing.T) {
			want := unhex(t, c.hex)
			got, err := AppendFrame(nil, &c.msg)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("encode = %x, %v; want %x", got, err, want)
			}
			var m Message
			raw, err := NewReader(bytes.NewReader(want)).ReadFrame(&m)
			if err != nil || !bytes.Equal(raw, want) {
				t.Fatalf("read = %x, %v", raw, err)
			}
			again, _ := AppendFrame(nil, &m)
			if !bytes.Equal(again, want) {
				t.Fatalf("decoded %+v re-encodes to %x", m, again)
			}
		})
	}
}

// Frames may be split across reads (WebSocket messages) at any byte.
func TestReaderAcrossSplits(t *testing.T) {
	var stream []byte
	for _, c := range captured {
		stream = append(stream, unhex(t, c.hex)...)
	}
	r := NewReader(iotest.OneByteReader(bytes.NewReader(stream)))
	for _, c := range captured {
		var m Message
		if _, err := r.ReadFrame(&m); err != nil || m.Type != c.msg.Type {
			t.Fatalf("%s: %v %v", c.name, m.Type, err)
		}
	}
	var m Message
	if _, err := r.ReadFrame(&m); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
	_, err := NewReader(bytes.NewReader(stream[:5])).ReadFrame(&m)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: %v", err)
	}
}

func TestRejects(t *testing.T) {
	cases := map[string]struct {
		body []byte
		err  error
	}{
		"unknown field 8":         {[]byte{0x08, 0x01, 0x40, 0x01}, ErrUnknownField},
		"truncated varint":        {[]byte{0x08, 0x80}, ErrMalformed},
		"bytes as varint":         {[]byte{0x22, 0x01}, ErrMalformed},
		"type with bytes wiretyp": {[]byte{0x0a, 0x00}, ErrMalformed},
	}
	for name, c := range cases {
		var m Message
		if err := Unmarshal(c.body, &m); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", name, err, c.err)
		}
	}
	big := Message{Type: TypeData, StreamID: 1, Payload: make([]byte, MaxPayload+1)}
	if _, err := AppendFrame(nil, &big); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("oversized payload: %v", err)
	}
	big.Payload = big.Payload[:MaxPayload]
	b, err := AppendFrame(nil, &big)
	if err != nil {
		t.Fatal(err)
	}
	var m Message
	if _, err := NewReader(bytes.NewReader(b)).ReadFrame(&m); err != nil || len(m.Payload) != MaxPayload {
		t.Fatalf("max payload: %v", err)
	}
	// A body with a payload over the limit is rejected on decode too.
	body := AppendMessage(nil, &Message{Type: TypeData, StreamID: 1, Payload: make([]byte, MaxPayload+1)})
	if err := Unmarshal(body, &m); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("decode oversized: %v", err)
	}
}

func BenchmarkReadFrame(b *testing.B) {
	f, _ := AppendFrame(nil, &Message{Type: TypeData, StreamID: 1, ConnectionID: 3, Payload: make([]byte, MaxPayload)})
	stream := bytes.Repeat(f, 64)
	b.SetBytes(int64(len(stream)))
	var m Message
	for i := 0; i < b.N; i++ {
		r := NewReader(bytes.NewReader(stream))
		for {
			if _, err := r.ReadFrame(&m); err != nil {
				break
			}
		}
	}
}

// FrameAround makes the same bytes as AppendFrame, in place around the payload.
func TestFrameAroundMatchesAppendFrame(t *testing.T) {
	msgs := []Message{
		{Type: TypeData, StreamID: 1, Payload: []byte("abc"), ConnectionID: 1},
		{Type: TypeData, StreamID: 7, ServiceID: "HTTP", ConnectionID: 300, Payload: bytes.Repeat([]byte{7}, MaxPayload)},
		{Type: TypeData, StreamID: -1, Ignorable: true, ServiceID: "SSH", Payload: []byte{0}},
		{Type: TypeConnectionReset, StreamID: 2, ServiceID: "HTTP", ConnectionID: 2},
		{Type: Type(-5), StreamID: 1 << 30, Payload: bytes.Repeat([]byte{1}, 200), ConnectionID: 1<<32 - 1},
	}
	for _, m := range msgs {
		want, err := AppendFrame(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, HeaderRoom+len(m.Payload)+TailSize(&m))
		copy(buf[HeaderRoom:], m.Payload)
		got, err := FrameAround(buf[:HeaderRoom+len(m.Payload)], HeaderRoom, len(m.Payload), &m)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%v: FrameAround = %x, %v; want %x", m.Type, got, err, want)
		}
		if _, err := FrameAround(buf[:0:HeaderRoom+len(m.Payload)], HeaderRoom, len(m.Payload), &m); m.Type == TypeData && m.ConnectionID != 0 && err != ErrNoRoom {
			t.Errorf("%v: no room for the tail: err = %v", m.Type, err)
		}
	}
	if _, err := FrameAround(make([]byte, 100), HeaderRoom, MaxPayload+1, &Message{}); err != ErrPayloadTooLarge {
		t.Errorf("oversized payload: %v", err)
	}
}

func BenchmarkFrameAround(b *testing.B) {
	m := Message{Type: TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 3}
	buf := make([]byte, HeaderRoom+MaxPayload+TailSize(&m))
	b.ReportAllocs()
	b.SetBytes(MaxPayload)
	for range b.N {
		if _, err := FrameAround(buf, HeaderRoom, MaxPayload, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// Decoding a stream of frames into one Message allocates nothing per frame.
func BenchmarkUnmarshal(b *testing.B) {
	body, err := AppendFrame(nil, &Message{Type: TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 3, Payload: make([]byte, 1000)})
	if err != nil {
		b.Fatal(err)
	}
	body = body[LengthPrefixSize:]
	var m Message
	b.ReportAllocs()
	for range b.N {
		if err := Unmarshal(body, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// A link credit encodes in 12 bytes and decodes back; a payload of any
// other length is refused, so a malformed one is ignored, not misread.
func TestLinkCredit(t *testing.T) {
	for _, c := range []LinkCredit{{Limit: -1}, {Limit: 24_000, Chunk: 4000}, {Limit: 1 << 50, Chunk: MaxPayload}} {
		b := c.Encode(nil)
		got, ok := DecodeLinkCredit(b)
		if len(b) != LinkCreditSize || !ok || got != c {
			t.Fatalf("%+v: encoded %x, decoded %+v %v", c, b, got, ok)
		}
	}
	for _, n := range []int{0, 8, 11, 13} {
		if _, ok := DecodeLinkCredit(make([]byte, n)); ok {
			t.Fatalf("a %d-byte payload decoded", n)
		}
	}
	if TypeLinkCredit.String() != "LINK_CREDIT" {
		t.Fatal(TypeLinkCredit.String())
	}
}
