package relay

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/warrentunnel/warren/internal/fairq"
	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

// BenchmarkRelayThroughput forwards DATA frames from a source to a
// destination over loopback, one frame per WebSocket message like the
// official proxy. Bytes are payload bytes. Its allocations per frame are
// gorilla/websocket's (a reader per message read, and a few per large
// message written) and the test clients'; the relay's own are measured by
// BenchmarkForward.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10, wire.MaxPayload} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			e := newEnv(b, Config{})
			_, tok := e.newTunnel("HTTP")
			dst := e.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, noRead: true})
			src := e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source})
			src.expect(serviceIDs("HTTP"))

			f := data("HTTP", 1, 1, pattern(1, size))
			total := int64(len(serviceIDs("HTTP"))) + int64(len(f))*int64(b.N)
			done := make(chan error, 1)
			go func() {
				var n int64
				for n < total {
					_, r, err := dst.conn.NextReader()
					if err != nil {
						done <- err
						return
					}
					m, err := io.Copy(io.Discard, r)
					if err != nil {
						done <- err
						return
					}
					n += m
				}
				done <- nil
			}()

			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				if err := src.conn.WriteMessage(websocket.BinaryMessage, f); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case err := <-done:
				if err != nil {
					b.Fatal(err)
				}
			case <-time.After(waitLimit):
				dst.close()
				<-done
				b.Fatalf("the destination did not get every frame; relay log:\n%s", e.logs.String())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkForward is the relay's work per frame without the WebSocket
// library: read a frame into a pooled buffer, check it, track it, queue it
// for the other peer, and the other peer's writer taking and releasing it.
func BenchmarkForward(b *testing.B) {
	for _, size := range []int{64, wire.MaxPayload} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			r := New(Config{})
			ts := &tunnelState{id: "t"}
			ctx := context.Background()
			newSide := func(sd side) *peer {
				return &peer{r: r, ts: ts, side: sd, mode: sd.mode(), services: []string{"HTTP"}, version: 3,
					log: r.log, ctx: ctx, q: fairq.New(r.queue)}
			}
			src, dst := newSide(sourceSide), newSide(destinationSide)
			ts.peers = [2]*peer{src, dst}
			stream, err := wire.AppendFrame(nil, &wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1, Payload: make([]byte, size)})
			if err != nil {
				b.Fatal(err)
			}
			in := &repeat{b: stream}
			var m wire.Message
			var batch []*framepool.Buf
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for range b.N {
				f, err := framepool.ReadFrame(in, &m)
				if err != nil {
					b.Fatal(err)
				}
				if v := checkFrame(&m, src.mode, src.services); v != nil {
					b.Fatal(v)
				}
				ts.track(&m, 0)
				if err := src.forward(f, &m); err != nil {
					b.Fatal(err)
				}
				var ok bool
				if batch, ok = dst.q.TakeIfIdle(batch[:0], wire.MaxWebSocketMessage); !ok {
					b.Fatal("nothing queued")
				}
				dst.q.Release(batch)
			}
		})
	}
}

// repeat reads one byte sequence over and over.
type repeat struct {
	b   []byte
	off int
}

func (r *repeat) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}
