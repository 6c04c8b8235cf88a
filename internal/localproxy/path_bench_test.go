package localproxy

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/fairq"
	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/wire"
)

// BenchmarkConnPath is a local connection's work per frame without the
// WebSocket library, both ways. Sending: read a real loopback socket into a
// pooled buffer, build the DATA frame around the payload, queue it in the
// session's fair queue, take and release it as the writer does. Receiving:
// read a frame into a pooled buffer, queue it in the connection's inbox,
// take and release it as the socket writer does.
func BenchmarkConnPath(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() { // an application that writes as fast as it can
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		chunk := make([]byte, wire.MaxPayload)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { nc.Close(); <-done }()

	ctx := context.Background()
	q := fairq.New(sendQueue)
	defer q.Close()
	in := newInbox(256 << 10)
	r := newSocketReader(nc)
	msg := wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 7}
	var (
		batch  []*framepool.Buf
		frames []*framepool.Buf
		m      wire.Message
		total  int64
		wireIn bytesReader
	)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f, err := r.readFrame(wire.MaxPayload, &msg)
		if err != nil {
			b.Fatal(err)
		}
		total += int64(len(f.Payload))
		if err := q.Push(ctx, 7, f); err != nil {
			b.Fatal(err)
		}
		var ok bool
		if batch, ok = q.TakeIfIdle(batch[:0], 64<<10); !ok {
			b.Fatal("nothing queued")
		}
		// The receiving side gets the same frame off the wire.
		wireIn.b = batch[0].B
		g, err := framepool.ReadFrame(&wireIn, &m)
		if err != nil {
			b.Fatal(err)
		}
		q.Release(batch)
		if err := in.push(ctx, g, time.Second); err != nil {
			b.Fatal(err)
		}
		var state int
		frames, state = in.take(frames[:0])
		if state != stateOpen || len(frames) != 1 {
			b.Fatal("inbox")
		}
		in.release(frames)
	}
	b.SetBytes(total / int64(b.N))
}

// bytesReader reads b once; unlike bytes.Reader it is reset without
// allocating.
type bytesReader struct {
	b []byte
}

func (r *bytesReader) Read(p []byte) (int, error) {
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
