package relay

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

// BenchmarkRelayThroughput forwards DATA frames from a source to a
// destination over loopback, one frame per WebSocket message like the
// official proxy. Bytes are payload bytes.
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
