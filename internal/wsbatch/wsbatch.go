// Package wsbatch owns how a batch of queued tunnel frames becomes WebSocket
// messages, for the relay's and the local proxy's writers. Peers read tunnel
// frames as one byte stream, so frames need not align with messages: a run
// of small frames shares one message (one write, one TLS record), and a
// large frame is a message of its own, written from its pooled buffer
// rather than copied into a write buffer first where the library allows.
package wsbatch

import (
	"github.com/gorilla/websocket"

	"github.com/warrentunnel/warren/internal/framepool"
)

// MaxMessage is the largest message Write makes of small frames; it is well
// under what the official proxy and the relay accept (wire.MaxWebSocketMessage).
const MaxMessage = 64 << 10

// Write writes batch to conn. Frames longer than small are messages of
// their own; runs of others are joined into messages of at most MaxMessage.
func Write(conn *websocket.Conn, batch []*framepool.Buf, small int) error {
	for i := 0; i < len(batch); {
		if len(batch[i].B) > small {
			if err := conn.WriteMessage(websocket.BinaryMessage, batch[i].B); err != nil {
				return err
			}
			i++
			continue
		}
		w, err := conn.NextWriter(websocket.BinaryMessage)
		if err != nil {
			return err
		}
		for n := 0; i < len(batch) && len(batch[i].B) <= small && n+len(batch[i].B) <= MaxMessage; i++ {
			if _, err := w.Write(batch[i].B); err != nil {
				return err
			}
			n += len(batch[i].B)
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	return nil
}
