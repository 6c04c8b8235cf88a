// Package wsbatch owns how a batch of queued tunnel frames becomes WebSocket
// messages, for the relay's and the local proxy's writers. Peers read tunnel
// frames as one byte stream, so frames need not align with messages: a run
// of small frames shares one message (one write, one TLS record), and a
// large frame is a message of its own, written from its pooled buffer
// rather than copied into a write buffer first where the library allows.
// It also bounds the kernel buffers of the sockets under those WebSockets.
package wsbatch

import (
	"syscall"

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

// SocketBuffer is the kernel send and receive buffer size set on WebSocket
// sockets (Linux doubles it). Left alone, the kernel grows a busy socket's
// buffers to megabytes, a queue the fair scheduler cannot see: a keystroke
// written behind them waits for all of it. This bound keeps loopback and
// LAN throughput while keeping that wait to a millisecond or so.
const SocketBuffer = 128 << 10

// BoundBuffers is a net.Dialer or net.ListenConfig Control function that sets
// SocketBuffer on a socket before it connects or listens (accepted sockets
// inherit a listener's sizes).
func BoundBuffers(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, SocketBuffer); serr != nil {
			return
		}
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, SocketBuffer)
	})
	if err != nil {
		return err
	}
	return serr
}
