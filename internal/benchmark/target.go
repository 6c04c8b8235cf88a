package benchmark

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
)

// target is a loopback TCP server inside the bench process: a sink (reads
// an 8-byte length and that many bytes, answers with the 8-byte count) or
// an echo server.
type target struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startTarget(handle func(net.Conn)) (*target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &target{ln: ln, conns: map[net.Conn]struct{}{}}
	t.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.mu.Lock()
			if t.conns == nil {
				t.mu.Unlock()
				c.Close()
				return
			}
			t.conns[c] = struct{}{}
			t.mu.Unlock()
			t.wg.Go(func() {
				handle(c)
				t.mu.Lock()
				delete(t.conns, c)
				t.mu.Unlock()
				c.Close()
			})
		}
	})
	return t, nil
}

func (t *target) addr() string { return t.ln.Addr().String() }

// close stops accepting, closes every connection and waits.
func (t *target) close() {
	t.ln.Close()
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.conns = nil
	t.mu.Unlock()
	t.wg.Wait()
}

func sink(c net.Conn) {
	var n uint64
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		return
	}
	got, _ := io.CopyN(io.Discard, c, int64(n))
	binary.Write(c, binary.BigEndian, uint64(got))
}

func echo(c net.Conn) { io.Copy(c, c) }
