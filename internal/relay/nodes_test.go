package relay

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/nodelink"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

// testNodes is a node of a test cluster: real node links over loopback
// TLS, the other nodes known by address.
type testNodes struct {
	id    string
	links *nodelink.Links
	mu    sync.Mutex
	addrs map[string]string // every node's
}

func (n *testNodes) Self() string { return n.id }

func (n *testNodes) Send(ctx context.Context, node string, m *nodelink.Message, flow uint64, orderFree bool) error {
	return n.links.Send(ctx, node, m, flow, orderFree)
}

func (n *testNodes) SendNoWait(node string, m *nodelink.Message) bool {
	return n.links.SendNoWait(node, m)
}

func (n *testNodes) Others() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for id := range n.addrs {
		if id != n.id {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// newNodeEnvs starts count relays (nodes n1, n2, ...) on one store, linked
// to one another.
func newNodeEnvs(t *testing.T, count int, cfg Config) []*env {
	t.Helper()
	bundle, err := nodelink.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ca, key, err := nodelink.ParseCA(bundle)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	addrs := map[string]string{}
	var mu sync.Mutex
	var envs []*env
	for i := range count {
		id := fmt.Sprintf("n%d", i+1)
		n := &testNodes{id: id, addrs: addrs}
		c := cfg
		c.Nodes = n
		if i > 0 {
			c.Store = envs[0].store
		}
		e := newEnv(t, c)
		if i > 0 {
			e.store = envs[0].store
			e.tokens = envs[0].tokens
		}
		cert, err := nodelink.NodeCertificate(ca, key, id)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		addrs[id] = ln.Addr().String()
		mu.Unlock()
		n.mu = sync.Mutex{}
		n.links = nodelink.New(nodelink.Config{ID: id, Cert: cert, CA: pool, Handler: e.relay,
			Resolve: func(_ context.Context, node string) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				if a, ok := addrs[node]; ok {
					return a, nil
				}
				return "", fmt.Errorf("no node %s", node)
			}})
		n.links.Serve(ln)
		t.Cleanup(n.links.Close)
		envs = append(envs, e)
	}
	return envs
}

// crossPair connects the destination to one node and the source to
// another.
func crossPair(dn, sn *env, tn tunnel.Tunnel, tok tunnel.Tokens) (src, dst *client) {
	dst = dn.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, clientToken: testClientToken})
	dst.expect(serviceIDs(tn.Services...))
	src = sn.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, clientToken: testClientToken})
	src.expect(serviceIDs(tn.Services...))
	return src, dst
}

// Peers admitted by different nodes exchange frames over the node link,
// in order, both ways, V3 connections included; the store names the node
// of each side.
func TestCrossNodeForwarding(t *testing.T) {
	envs := newNodeEnvs(t, 2, Config{})
	dumpLogs(t, envs)
	n1, n2 := envs[0], envs[1]
	tn, tok := n1.newTunnel("SSH", "HTTP")
	src, dst := crossPair(n1, n2, tn, tok)
	if got := n1.tunnel(tn.ID); got.Destination.Node != "n1" || got.Source.Node != "n2" || !got.Source.Connected {
		t.Fatalf("store: destination on %q, source on %q (connected %v)", got.Destination.Node, got.Source.Node, got.Source.Connected)
	}
	start := streamStart("HTTP", 1, 1)
	req := data("HTTP", 1, 1, pattern(1, 5000))
	src.send(start, req[:100])
	src.send(req[100:])
	dst.expect(start, req)
	resp := data("HTTP", 1, 1, pattern(2, wire.MaxPayload))
	dst.send(resp)
	src.expect(resp)

	// A second connection and a lot of data each way.
	src.send(connStart("HTTP", 1, 2))
	dst.expect(connStart("HTTP", 1, 2))
	var up, down [][]byte
	for i := range 40 {
		up = append(up, data("HTTP", 1, uint32(1+i%2), pattern(10+i, wire.MaxPayload)))
	}
	for i := range 40 {
		down = append(down, data("HTTP", 1, uint32(1+i%2), pattern(100+i, 3000)))
	}
	var wg sync.WaitGroup
	for _, w := range []struct {
		c  *client
		fs [][]byte
	}{{src, up}, {dst, down}} {
		wg.Go(func() {
			for _, f := range w.fs {
				if err := w.c.conn.WriteMessage(websocket.BinaryMessage, f); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	defer wg.Wait()
	// DATA of different connections may interleave; each connection's
	// frames keep their order.
	dst.expectSet(up...)
	src.expectSet(down...)
}

// When the peer on one node leaves, the peer on the other has its streams
// reset, as within one node, and the store records the side disconnected.
func TestCrossNodePeerLeaves(t *testing.T) {
	envs := newNodeEnvs(t, 2, Config{})
	dumpLogs(t, envs)
	n1, n2 := envs[0], envs[1]
	tn, tok := n1.newTunnel("HTTP")
	src, dst := crossPair(n1, n2, tn, tok)
	src.send(streamStart("HTTP", 7, 1), data("HTTP", 7, 1, []byte("hello")))
	dst.expect(streamStart("HTTP", 7, 1), data("HTTP", 7, 1, []byte("hello")))
	dst.close()
	src.expect(streamReset("HTTP", 7))
	eventually(t, "the destination recorded disconnected", func() bool {
		got := n1.tunnel(tn.ID)
		return !got.Destination.Connected && got.Destination.Node == ""
	})
	// A new destination, on the source's node this time, works.
	dst2 := n2.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, clientToken: testClientToken})
	dst2.expect(serviceIDs("HTTP"))
	eventually(t, "the source's node to hold both", func() bool { s, d := n2.relay.Connected(tn.ID); return s && d })
	src.send(streamStart("HTTP", 8, 1))
	dst2.expect(streamStart("HTTP", 8, 1))
}

// A close or rotation on a node that holds neither peer reaches the nodes
// that do.
func TestCrossNodeCloseAndRotate(t *testing.T) {
	envs := newNodeEnvs(t, 3, Config{})
	dumpLogs(t, envs)
	n1, n2, n3 := envs[0], envs[1], envs[2]

	tn, tok := n1.newTunnel("HTTP")
	src, dst := crossPair(n2, n3, tn, tok)
	n1.relay.RotateTunnel(tn.ID, tunnel.ModeDestination)
	dst.expectClose(websocket.CloseNormalClosure)

	tn2, tok2 := n1.newTunnel("HTTP")
	src2, dst2 := crossPair(n2, n3, tn2, tok2)
	start := time.Now()
	n1.relay.CloseTunnel(tn2.ID)
	src2.expectClose(websocket.CloseNormalClosure)
	dst2.expectClose(websocket.CloseNormalClosure)
	t.Logf("both peers closed %v after the close on a third node", time.Since(start))
	// The rotation cut off only the destination.
	if s, d := n3.relay.Connected(tn.ID); !s || d {
		t.Fatalf("after rotating the destination: source connected %v, destination %v", s, d)
	}
	_ = src
}

// When a node's links go down (the node died), the peers on the other
// nodes whose partner it held have their streams reset at once.
func TestCrossNodeLinkDown(t *testing.T) {
	envs := newNodeEnvs(t, 2, Config{})
	dumpLogs(t, envs)
	n1, n2 := envs[0], envs[1]
	tn, tok := n1.newTunnel("HTTP")
	src, dst := crossPair(n1, n2, tn, tok)
	src.send(streamStart("HTTP", 3, 1))
	dst.expect(streamStart("HTTP", 3, 1))
	n1.relay.nodes.(*testNodes).links.Close()
	src.expect(streamReset("HTTP", 3))
}

// A destination that does not read stalls only its own tunnel: the node
// holds at most the credit window beyond the peer's queue, the source's
// node stops reading the source, and another tunnel on the same two nodes
// keeps flowing.
func TestCrossNodeBackpressure(t *testing.T) {
	envs := newNodeEnvs(t, 2, Config{})
	dumpLogs(t, envs)
	n1, n2 := envs[0], envs[1]
	tn, tok := n1.newTunnel("HTTP")
	stuck := n1.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, noRead: true, smallBuffers: true})
	src := n2.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, smallBuffers: true})
	src.expect(serviceIDs("HTTP"))
	src.send(streamStart("HTTP", 1, 1))
	sent := make(chan int, 1)
	go func() {
		// Far more than every buffer on the way can hold.
		n := 0
		src.conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
		for i := 0; i < 400; i++ {
			if err := src.conn.WriteMessage(websocket.BinaryMessage, data("HTTP", 1, 1, pattern(i, wire.MaxPayload))); err != nil {
				break
			}
			n++
		}
		sent <- n
	}()
	n := <-sent
	if n >= 400 {
		t.Fatalf("the source wrote all %d frames: no backpressure", n)
	}
	// The stuck destination's queue holds its budget and at most the
	// credit window from the link.
	ts := n1.relay.lookup(tn.ID)
	p := ts.peer(destinationSide)
	if used := p.q.Used(); used > DefaultSendQueueBytes+remoteWindow {
		t.Fatalf("the stuck peer's queue holds %d bytes, more than %d", used, DefaultSendQueueBytes+remoteWindow)
	}
	t.Logf("source wrote %d frames before blocking; the stuck peer's queue holds %d bytes", n, p.q.Used())

	// Another tunnel across the same nodes flows meanwhile.
	tn2, tok2 := n1.newTunnel("SSH")
	src2, dst2 := crossPair(n1, n2, tn2, tok2)
	for i := range 20 {
		f := data("SSH", 1, 1, pattern(i, 10000))
		if i == 0 {
			src2.send(streamStart("SSH", 1, 1))
			dst2.expect(streamStart("SSH", 1, 1))
		}
		src2.send(f)
		dst2.expect(f)
	}
	_ = stuck
}

func dumpLogs(t *testing.T, envs []*env) {
	t.Cleanup(func() {
		if t.Failed() {
			for i, e := range envs {
				t.Logf("node %d log:\n%s", i+1, e.logs.String())
			}
		}
	})
}

// A peer that reconnects through another node replaces its old connection
// there: the other side's frames go to the new one, and what the old one
// still sends is not delivered.
func TestCrossNodePeerMoves(t *testing.T) {
	envs := newNodeEnvs(t, 3, Config{})
	dumpLogs(t, envs)
	n1, n2, n3 := envs[0], envs[1], envs[2]
	tn, tok := n1.newTunnel("HTTP")
	src, old := crossPair(n1, n2, tn, tok)
	src.send(streamStart("HTTP", 1, 1))
	old.expect(streamStart("HTTP", 1, 1))

	moved := n3.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, clientToken: testClientToken})
	moved.expect(serviceIDs("HTTP"))
	eventually(t, "the source's node to follow the destination to n3", func() bool {
		node, _ := n2.relay.lookup(tn.ID).remotePeer(destinationSide)
		return node == "n3"
	})
	// The old destination's stream is reset on its node.
	old.expect(streamReset("HTTP", 1))
	src.send(streamStart("HTTP", 2, 1), data("HTTP", 2, 1, []byte("to the new one")))
	moved.expect(streamStart("HTTP", 2, 1), data("HTTP", 2, 1, []byte("to the new one")))
	old.send(data("HTTP", 2, 1, []byte("stale")))
	moved.send(data("HTTP", 2, 1, []byte("fresh")))
	src.expect(data("HTTP", 2, 1, []byte("fresh")))
	if got := n1.tunnel(tn.ID); got.Destination.Node != "n3" || !got.Destination.Connected {
		t.Fatalf("store: destination on %q connected %v", got.Destination.Node, got.Destination.Connected)
	}
}

// A reader waiting for credit toward a node that dies is let go: the
// source's streams are reset, and a new destination elsewhere gets its
// frames.
func TestCrossNodeCreditWaiterFreedWhenNodeDies(t *testing.T) {
	envs := newNodeEnvs(t, 2, Config{})
	dumpLogs(t, envs)
	n1, n2 := envs[0], envs[1]
	tn, tok := n1.newTunnel("HTTP")
	stuck := n1.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, clientToken: testClientToken, noRead: true, smallBuffers: true})
	src := n2.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source})
	src.expect(serviceIDs("HTTP"))
	src.send(streamStart("HTTP", 1, 1))
	// Fill every buffer toward the stuck destination, until n2's reader of
	// the source waits for credit.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 0; i < 200; i++ {
			src.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := src.conn.WriteMessage(websocket.BinaryMessage, data("HTTP", 1, 1, pattern(i, wire.MaxPayload))); err != nil {
				return
			}
		}
	}()
	eventually(t, "n2's window toward n1 to run dry", func() bool {
		ts := n2.relay.lookup(tn.ID)
		if ts == nil {
			return false
		}
		_, w := ts.remotePeer(destinationSide)
		if w == nil {
			return false
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.avail < framepool.LargeSize
	})
	n1.relay.nodes.(*testNodes).links.Close() // n1 is gone
	src.expect(streamReset("HTTP", 1))
	<-wrote // the rest went nowhere
	src.conn.SetWriteDeadline(time.Time{})
	dst := n2.mustDial(dialOpts{mode: tunnel.ModeDestination, token: tok.Destination, clientToken: testClientToken})
	dst.expect(serviceIDs("HTTP"))
	src.send(streamStart("HTTP", 2, 1))
	// Frames of stream 1 the source wrote after the reset may still have
	// been on their way (in socket buffers): the new destination may see
	// them first, as on one node.
	want := streamStart("HTTP", 2, 1)
	for i := 0; ; i++ {
		f := dst.mustFrame()
		if bytes.Equal(f, want) {
			break
		}
		if i > 400 || !bytes.HasPrefix(f[2:], []byte{0x08, 0x01, 0x10, 0x01}) {
			t.Fatalf("frame %d before the new stream's start is not stream 1's DATA: % x", i, head(f))
		}
	}
	_ = stuck
}

// recordingNodes is a Nodes that keeps what the relay sends.
type recordingNodes struct {
	mu   sync.Mutex
	sent []nodelink.Message
}

func (n *recordingNodes) Self() string { return "here" }
func (n *recordingNodes) Send(_ context.Context, _ string, m *nodelink.Message, _ uint64, _ bool) error {
	n.SendNoWait("", m)
	return nil
}
func (n *recordingNodes) SendNoWait(_ string, m *nodelink.Message) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, nodelink.Message{Kind: m.Kind, Side: m.Side, Tunnel: m.Tunnel})
	return true
}
func (n *recordingNodes) Others() []string { return nil }

// Another node that read the store may announce its peer while this
// node's peer of the other side is admitted but not yet registered: the
// announcement is kept, not refused (the pairing would be lost). With no
// such handshake it is refused with DETACH.
func TestAttachDuringAdmission(t *testing.T) {
	nodes := &recordingNodes{}
	e := newEnv(t, Config{Nodes: nodes})
	ts := e.relay.acquire("t1")
	defer e.relay.release(ts)

	ts.mu.Lock()
	ts.pending[sourceSide]++
	ts.mu.Unlock()
	e.relay.Receive("other", &nodelink.Message{Kind: nodelink.KindAttach, Side: uint8(destinationSide), Tunnel: "t1"})
	if node, _ := ts.remotePeer(destinationSide); node != "other" {
		t.Fatalf("an attach during the source's admission was not kept: remote %q", node)
	}
	ts.mu.Lock()
	ts.pending[sourceSide]--
	ts.mu.Unlock()
	nodes.mu.Lock()
	if len(nodes.sent) != 0 {
		t.Fatalf("sent %+v", nodes.sent)
	}
	nodes.mu.Unlock()

	e.relay.Receive("third", &nodelink.Message{Kind: nodelink.KindAttach, Side: uint8(destinationSide), Tunnel: "t2"})
	nodes.mu.Lock()
	defer nodes.mu.Unlock()
	if len(nodes.sent) != 1 || nodes.sent[0].Kind != nodelink.KindDetach || nodes.sent[0].Side != uint8(sourceSide) {
		t.Fatalf("an attach to a tunnel with no peer here was answered with %+v", nodes.sent)
	}
}

// A link that goes down between two live nodes resets the streams of the
// tunnels across it; when it comes back, the nodes attach their peers
// again and the tunnels carry new connections, without the local proxies
// reconnecting.
func TestCrossNodeLinkComesBack(t *testing.T) {
	envs := newNodeEnvs(t, 2, Config{})
	dumpLogs(t, envs)
	n1, n2 := envs[0], envs[1]
	tn, tok := n1.newTunnel("HTTP")
	src, dst := crossPair(n1, n2, tn, tok)
	src.send(streamStart("HTTP", 1, 1))
	dst.expect(streamStart("HTTP", 1, 1))
	l1 := n1.relay.nodes.(*testNodes).links
	l1.Drop("n2")
	src.expect(streamReset("HTTP", 1))
	dst.expect(streamReset("HTTP", 1))
	eventually(t, "the link to come back", func() bool {
		l1.Connect("n2")
		return l1.Up("n2") && n2.relay.nodes.(*testNodes).links.Up("n1")
	})
	eventually(t, "both nodes to attach again", func() bool {
		a, _ := n1.relay.lookup(tn.ID).remotePeer(sourceSide)
		b, _ := n2.relay.lookup(tn.ID).remotePeer(destinationSide)
		return a == "n2" && b == "n1" && !n1.relay.lookup(tn.ID).remoteLost(sourceSide) && !n2.relay.lookup(tn.ID).remoteLost(destinationSide)
	})
	src.send(streamStart("HTTP", 2, 1), data("HTTP", 2, 1, []byte("again")))
	dst.expect(streamStart("HTTP", 2, 1), data("HTTP", 2, 1, []byte("again")))
	dst.send(data("HTTP", 2, 1, []byte("back")))
	src.expect(data("HTTP", 2, 1, []byte("back")))
}

// Reconnect drops every peer without a close frame.
func TestReconnectDropsPeers(t *testing.T) {
	e := newEnv(t, Config{})
	tn, tok := e.newTunnel("HTTP")
	src, dst := e.pair(tn, tok)
	e.relay.Reconnect("test")
	src.expectDrop()
	dst.expectDrop()
}
