package nodelink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/wire"
)

// recorder is a Handler that keeps what arrives.
type recorder struct {
	mu    sync.Mutex
	msgs  []Message // frames' payloads copied into Wire.Payload
	downs []string
	got   chan struct{}
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 1<<16)} }

func (r *recorder) Receive(from string, m *Message) {
	c := *m
	if m.Frame != nil {
		c.Wire.Payload = append([]byte(nil), m.Wire.Payload...)
		m.Frame.Free()
		c.Frame = nil
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, c)
	r.mu.Unlock()
	r.got <- struct{}{}
}

func (r *recorder) LinkUp(string) {}

func (r *recorder) LinkDown(node string) {
	r.mu.Lock()
	r.downs = append(r.downs, node)
	r.mu.Unlock()
}

func (r *recorder) wait(t *testing.T, n int) []Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("got %d of %d messages", i, n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

type node struct {
	id    string
	links *Links
	rec   *recorder
	addr  string
}

// cluster starts nodes with certificates of one CA, each listening on
// loopback, resolving one another by id.
func cluster(t *testing.T, ids ...string) map[string]*node {
	t.Helper()
	bundle, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ca, key, err := ParseCA(bundle)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	nodes := map[string]*node{}
	var mu sync.Mutex
	resolve := func(_ context.Context, id string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if n := nodes[id]; n != nil {
			return n.addr, nil
		}
		return "", fmt.Errorf("no node %s", id)
	}
	for _, id := range ids {
		cert, err := NodeCertificate(ca, key, id)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n := &node{id: id, rec: newRecorder(), addr: ln.Addr().String()}
		n.links = New(Config{ID: id, Cert: cert, CA: pool, Resolve: resolve, Handler: n.rec})
		n.links.Serve(ln)
		mu.Lock()
		nodes[id] = n
		mu.Unlock()
		t.Cleanup(n.links.Close)
	}
	return nodes
}

func frame(t *testing.T, payload string) *framepool.Buf {
	t.Helper()
	b := framepool.Get(framepool.LargeSize)
	var err error
	b.B, err = wire.AppendFrame(b.Mem[:0], &wire.Message{Type: wire.TypeData, StreamID: 1, ConnectionID: 1, Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Messages of every kind arrive in the order sent, frames decoded.
func TestMessagesArriveInOrder(t *testing.T) {
	ns := cluster(t, "a", "b")
	ctx := context.Background()
	const n = 200
	for i := 0; i < n; i++ {
		var m Message
		if i%3 == 0 {
			m = Message{Kind: KindCredit, Side: 1, Tunnel: "t1", Arg: uint64(i)}
		} else {
			f := frame(t, fmt.Sprintf("payload %d", i))
			m = Message{Kind: KindFrame, Side: 0, Tunnel: "t1", Arg: uint64(i), Frame: f}
			defer f.Free()
		}
		// One flow: order is kept among DATA of one connection and
		// around barriers.
		if err := ns["a"].links.Send(ctx, "b", &m, 7, m.Kind == KindFrame); err != nil {
			t.Fatal(err)
		}
	}
	got := ns["b"].rec.wait(t, n)
	if sa, sb := ns["a"].links.Stats(), ns["b"].links.Stats(); len(sa) != 1 || sa[0].Node != "b" || sa[0].Sent < 200*20 ||
		len(sb) != 1 || sb[0].Node != "a" || sb[0].Received < 200*20 {
		t.Fatalf("stats: a %+v, b %+v", sa, sb)
	}
	for i, m := range got {
		if m.Arg != uint64(i) || m.Tunnel != "t1" {
			t.Fatalf("message %d: arg %d tunnel %q", i, m.Arg, m.Tunnel)
		}
		if m.Kind == KindFrame && string(m.Wire.Payload) != fmt.Sprintf("payload %d", i) {
			t.Fatalf("message %d: payload %q", i, m.Wire.Payload)
		}
	}
}

// Two nodes dialing each other at once end with one link, which carries
// both ways.
func TestSimultaneousDialsMakeOneLink(t *testing.T) {
	for round := 0; round < 10; round++ {
		ns := cluster(t, "n1", "n2")
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for _, p := range [][2]string{{"n1", "n2"}, {"n2", "n1"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := Message{Kind: KindAttach, Tunnel: "x"}
				errs <- ns[p[0]].links.Send(context.Background(), p[1], &m, 0, false)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		ns["n1"].rec.wait(t, 1)
		ns["n2"].rec.wait(t, 1)
		ns["n1"].links.mu.Lock()
		l1 := ns["n1"].links.links["n2"]
		ns["n1"].links.mu.Unlock()
		ns["n2"].links.mu.Lock()
		l2 := ns["n2"].links.links["n1"]
		ns["n2"].links.mu.Unlock()
		if l1 == nil || l2 == nil || !l1.dialer || l2.dialer {
			t.Fatalf("round %d: want one link, dialed by n1 (the smaller id): n1's %+v, n2's %+v", round, l1, l2)
		}
		if l1.conn.LocalAddr().String() != l2.conn.RemoteAddr().String() {
			t.Fatalf("round %d: the nodes hold different connections", round)
		}
	}
}

// A node whose certificate is not the cluster CA's is refused, and a link
// that ends is reported down on both sides.
func TestForeignNodeRefusedAndLinkDown(t *testing.T) {
	ns := cluster(t, "a", "b")
	other := cluster(t, "c") // another CA
	m := Message{Kind: KindAttach, Tunnel: "x"}
	other["c"].links.cfg.Resolve = func(context.Context, string) (string, error) { return ns["a"].addr, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := other["c"].links.Send(ctx, "a", &m, 0, false); err == nil {
		t.Fatal("a node of another CA got a link")
	}
	// A raw TLS client without a certificate is refused too.
	c, err := tls.Dial("tcp", ns["a"].addr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		var b [1]byte
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(b[:]); err == nil {
			t.Fatal("a client without certificate was answered")
		}
		c.Close()
	}

	if err := ns["a"].links.Send(context.Background(), "b", &m, 0, false); err != nil {
		t.Fatal(err)
	}
	ns["b"].rec.wait(t, 1)
	ns["b"].links.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ns["a"].rec.mu.Lock()
		downs := append([]string(nil), ns["a"].rec.downs...)
		ns["a"].rec.mu.Unlock()
		if len(downs) == 1 && downs[0] == "b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a saw downs %v", downs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ns["a"].links.Up("b") {
		t.Fatal("the link is still up")
	}
}
