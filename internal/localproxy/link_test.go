package localproxy

import (
	"testing"

	"github.com/warrentunnel/warren/internal/wire"
)

func linkConn() *localConn { return &localConn{opened: make(chan struct{}, 1)} }

func woken(lc *localConn) bool {
	select {
	case <-lc.opened:
		return true
	default:
		return false
	}
}

// Without a limit the link lends whatever is asked; with one, at most a
// chunk at a time, within the credit, and connections that wait take turns:
// one whose socket was drained (a request) ahead of those with more to send.
func TestLinkCreditTurns(t *testing.T) {
	var l link
	bulk1, bulk2, req := linkConn(), linkConn(), linkConn()
	if n, held := l.reserve(bulk1, 50_000); n != 50_000 || held {
		t.Fatalf("unlimited: %d %v", n, held)
	}
	l.set(wire.LinkCredit{Limit: 3000, Chunk: 1000})
	if n, held := l.reserve(bulk1, 50_000); n != 1000 || !held || !bulk1.backlogged {
		t.Fatalf("first chunk: %d %v %v", n, held, bulk1.backlogged)
	}
	if n, _ := l.reserve(bulk2, 50_000); n != 1000 {
		t.Fatalf("second chunk: %d", n)
	}
	// A read that used less gives the rest back.
	l.unused(bulk2, 400)
	if bulk2.backlogged {
		t.Fatal("a connection whose read came short is still backlogged")
	}
	if n, _ := l.reserve(bulk1, 50_000); n != 1000 {
		t.Fatalf("third chunk: %d", n)
	}
	if n, _ := l.reserve(bulk2, 50_000); n != 400 {
		t.Fatalf("the rest: %d", n)
	}
	// Out of credit: both bulk connections wait in line; the request
	// (whose socket was drained before) goes ahead of them.
	if n, _ := l.reserve(bulk1, 50_000); n != 0 || l.ready(bulk2) || l.ready(bulk1) {
		t.Fatal("reserved beyond the credit")
	}
	req.backlogged = false
	if l.ready(req) {
		t.Fatal("ready without credit")
	}
	if len(l.line) != 3 || l.line[0] != req {
		t.Fatalf("line %v, want the request first", len(l.line))
	}
	l.set(wire.LinkCredit{Limit: 4000, Chunk: 1000})
	if !woken(req) || woken(bulk1) || !l.ready(req) || l.ready(bulk1) {
		t.Fatal("the credit did not go to the head of the line")
	}
	if n, _ := l.reserve(req, 64); n != 64 {
		t.Fatalf("request got %d", n)
	}
	if !woken(bulk1) || !l.ready(bulk1) || l.ready(bulk2) {
		t.Fatal("the next in line was not woken")
	}
	// A connection that ends leaves the line and wakes the next.
	l.forget(bulk1)
	if !woken(bulk2) || !l.ready(bulk2) {
		t.Fatal("forgetting the head did not pass the turn")
	}
	// Lifting the limit wakes everyone.
	l.reserve(bulk2, 50_000)
	l.reserve(bulk1, 50_000)
	l.set(wire.LinkCredit{Limit: -1})
	if !woken(bulk1) || len(l.line) != 0 || !l.ready(bulk1) {
		t.Fatal("lifting the limit left connections waiting")
	}
}
