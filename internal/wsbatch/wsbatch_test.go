package wsbatch

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/warrentunnel/warren/internal/framepool"
)

// Write makes a message of each large frame and joins runs of small ones,
// up to MaxMessage a message; the bytes arrive whole and in order.
func TestWriteJoinsSmallFrames(t *testing.T) {
	got := make(chan [][]byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		var msgs [][]byte
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				got <- msgs
				return
			}
			msgs = append(msgs, m)
		}
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := func(size int, b byte) *framepool.Buf {
		f := framepool.Get(size)
		f.B = bytes.Repeat([]byte{b}, size)
		return f
	}
	// 3 small, 1 large, then 40 small of 3000 bytes: 120000 bytes, more
	// than one message may hold.
	batch := []*framepool.Buf{frame(10, 1), frame(20, 2), frame(30, 3), frame(60000, 4)}
	for range 40 {
		batch = append(batch, frame(3000, 5))
	}
	if err := Write(c, batch, 16<<10); err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, f := range batch {
		want = append(want, f.B...)
		f.Free()
	}
	c.Close()
	msgs := <-got
	if len(msgs) != 4 || len(msgs[0]) != 60 || len(msgs[1]) != 60000 {
		lens := []int{}
		for _, m := range msgs {
			lens = append(lens, len(m))
		}
		t.Fatalf("message sizes %v, want [60 60000 <=%d ...] in 4 messages", lens, MaxMessage)
	}
	for _, m := range msgs[2:] {
		if len(m) > MaxMessage {
			t.Fatalf("a message of %d bytes", len(m))
		}
	}
	if all := bytes.Join(msgs, nil); !bytes.Equal(all, want) {
		t.Fatal("the bytes did not arrive whole and in order")
	}
}

// BoundBuffers sets both kernel buffers (Linux reports twice the value).
func TestBoundBuffers(t *testing.T) {
	lc := net.ListenConfig{Control: BoundBuffers}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		for _, opt := range []int{syscall.SO_SNDBUF, syscall.SO_RCVBUF} {
			v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt)
			if err != nil || v < SocketBuffer || v > 2*SocketBuffer {
				t.Errorf("option %d = %d, %v; want %d (doubled by the kernel)", opt, v, err, SocketBuffer)
			}
		}
	})
}
