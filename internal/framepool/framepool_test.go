package framepool

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/warrentunnel/warren/internal/wire"
)

func frames(t testing.TB, msgs ...wire.Message) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = wire.AppendFrame(b, &m); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// ReadFrame reads frames into buffers of their size class, with the
// payload aliasing the buffer, and tells a stream cut inside a frame from
// one that ends between frames.
func TestReadFrame(t *testing.T) {
	small := wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2, Payload: []byte("hi")}
	mid := wire.Message{Type: wire.TypeData, StreamID: 1, Payload: bytes.Repeat([]byte{1}, 10000)}
	big := wire.Message{Type: wire.TypeData, StreamID: 1, Payload: bytes.Repeat([]byte{2}, wire.MaxPayload)}
	stream := frames(t, small, mid, big)
	r := bytes.NewReader(stream)
	for _, c := range []struct {
		want wire.Message
		cost int
	}{{small, SmallSize}, {mid, MediumSize}, {big, LargeSize}} {
		var m wire.Message
		f, err := ReadFrame(r, &m)
		if err != nil {
			t.Fatal(err)
		}
		if f.Cost() != c.cost || !bytes.Equal(f.Payload, c.want.Payload) || m.ServiceID != c.want.ServiceID {
			t.Fatalf("frame of %d bytes: cost %d, payload %d bytes", len(f.B), f.Cost(), len(f.Payload))
		}
		f.Free()
	}
	if _, err := ReadFrame(r, new(wire.Message)); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
	if _, err := ReadFrame(bytes.NewReader(stream[:len(stream)-1]), new(wire.Message)); err != nil {
		t.Fatal(err) // the first frame is whole
	}
	cut := bytes.NewReader(stream[len(frames(t, small)) : len(frames(t, small))+100])
	if _, err := ReadFrame(cut, new(wire.Message)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut frame: %v", err)
	}
	bad := []byte{0, 2, 0xff, 0xff}
	f, err := ReadFrame(bytes.NewReader(bad), new(wire.Message))
	if err == nil || f == nil {
		t.Fatalf("undecodable frame: %v, %v", f, err)
	}
	f.Free()
}

// loop is an endless reader of one byte sequence.
type loop struct {
	b   []byte
	off int
}

func (l *loop) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

// Reading a stream of frames allocates nothing per frame.
func BenchmarkReadFrame(b *testing.B) {
	for _, size := range []int{64, 16 << 10, wire.MaxPayload} {
		stream := frames(b, wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 3, Payload: make([]byte, size)})
		b.Run(map[int]string{64: "64B", 16 << 10: "16KiB", wire.MaxPayload: "63KiB"}[size], func(b *testing.B) {
			r := &loop{b: stream}
			var m wire.Message
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for range b.N {
				f, err := ReadFrame(r, &m)
				if err != nil {
					b.Fatal(err)
				}
				f.Free()
			}
		})
	}
}

// FuzzReadFrame holds ReadFrame, the data path's reader, to wire.Reader,
// the fuzzed reference: on any bytes both see the same frames, messages and
// errors, and every buffer fits its frame's size class.
func FuzzReadFrame(f *testing.F) {
	data := frames(f, wire.Message{Type: wire.TypeData, StreamID: 1, Payload: []byte("GET /"), ServiceID: "HTTP", ConnectionID: 1})
	f.Add(data)
	f.Add(append(data, data[:5]...))
	f.Fuzz(func(t *testing.T, in []byte) {
		ref := wire.NewReader(bytes.NewReader(in))
		r := bytes.NewReader(in)
		for {
			var want, got wire.Message
			raw, werr := ref.ReadFrame(&want)
			fb, err := ReadFrame(r, &got)
			if (werr == nil) != (err == nil) || (werr != nil && !errors.Is(err, werr) && err.Error() != werr.Error()) {
				t.Fatalf("errors differ: reference %v, ReadFrame %v", werr, err)
			}
			if (raw == nil) != (fb == nil) {
				t.Fatalf("frame presence differs: reference %v, ReadFrame %v", raw != nil, fb != nil)
			}
			if fb != nil {
				if !bytes.Equal(fb.B, raw) || !bytes.Equal(fb.Payload, want.Payload) ||
					got.Type != want.Type || got.StreamID != want.StreamID || got.ServiceID != want.ServiceID ||
					got.ConnectionID != want.ConnectionID || got.Ignorable != want.Ignorable {
					t.Fatalf("frames differ: %x vs %x", fb.B, raw)
				}
				if len(fb.B) > fb.Cost() || (len(fb.B) <= SmallSize) != (fb.Cost() == SmallSize) {
					t.Fatalf("a frame of %d bytes in a buffer of %d", len(fb.B), fb.Cost())
				}
				fb.Free()
			}
			if werr != nil && raw == nil {
				return
			}
		}
	})
}
