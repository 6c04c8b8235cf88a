package relay

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/nodelink"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

// In a cluster a tunnel's two peers may be admitted by different nodes.
// Each node checks and tracks the frames of its own peer and forwards them
// to the node that holds the other peer over their node link (package
// nodelink); it tracks the frames it delivers too, so that when the other
// node says its peer left (DETACH, or the link went down) it resets its
// own peer's streams itself, as when a peer on this node leaves. The
// store's Side.Node says which node holds a side: a node that admits a peer
// records itself there and tells the node of the other side (ATTACH).
//
// Frames toward another node are bounded per tunnel side by credit: a node
// sends at most remoteWindow bytes (counted as the buffers they arrive in)
// beyond what the other node's peer has written out, which it returns with
// CREDIT messages. So a link's reader can always queue what arrives without
// waiting, and one slow peer never stalls the other tunnels on its link.

// Nodes is how the relay reaches the other nodes of its cluster.
type Nodes interface {
	// Self is this node's id.
	Self() string
	// Send queues m for node, waiting while the link's queue is full.
	Send(ctx context.Context, node string, m *nodelink.Message, flow uint64, orderFree bool) error
	// SendNoWait queues a small control message if the link to node is
	// up, without waiting; it reports whether it did.
	SendNoWait(node string, m *nodelink.Message) bool
	// Others lists the other live nodes.
	Others() []string
}

// remoteWindow is the credit a node has toward a tunnel side held by
// another node.
const remoteWindow = 512 << 10

// attachTimeout bounds telling another node of a peer (dialing it if need
// be) and of a peer's end.
const attachTimeout = 5 * time.Second

// remoteSide is a tunnel side whose peer another node holds.
type remoteSide struct {
	node string
	win  *window // what may still be sent toward it
	// lost: the link to node went down (or could not be made). Frames
	// toward the side are dropped; if the link comes back, this node
	// attaches its peer again.
	lost bool
}

// window is credit in bytes; take waits for it. It ends when the side
// leaves the node (or the node is gone): no credit will come back.
type window struct {
	mu    sync.Mutex
	avail int
	ended bool
	wake  chan struct{}
}

// errWindowEnded: the side a frame waited to be sent to is no longer on
// that node.
var errWindowEnded = errors.New("the other side left its node")

func newWindow() *window { return &window{avail: remoteWindow, wake: make(chan struct{}, 1)} }

// endedWindow is the window toward a lost side: nothing may be sent.
func endedWindow() *window {
	w := newWindow()
	w.ended = true
	return w
}

func (w *window) take(ctx context.Context, n int) error {
	for {
		w.mu.Lock()
		if w.ended {
			w.mu.Unlock()
			w.signal() // for the next waiter
			return errWindowEnded
		}
		if w.avail >= n {
			w.avail -= n
			more := w.avail > 0
			w.mu.Unlock()
			if more {
				w.signal()
			}
			return nil
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *window) give(n int) {
	w.mu.Lock()
	w.avail = min(w.avail+n, remoteWindow)
	w.mu.Unlock()
	w.signal()
}

// end wakes the waiters for good.
func (w *window) end() {
	w.mu.Lock()
	w.ended = true
	w.mu.Unlock()
	w.signal()
}

func (w *window) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// remotePeer returns the node holding side sd's peer and the window toward
// it ("" when no other node holds it).
func (ts *tunnelState) remotePeer(sd side) (string, *window) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.remote[sd].node, ts.remote[sd].win
}

// remoteLost reports whether side sd's remote peer is behind a link that
// went down.
func (ts *tunnelState) remoteLost(sd side) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.remote[sd].lost
}

// setRemote records that node holds side sd's peer, with a full window.
func (ts *tunnelState) setRemote(sd side, node string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.endRemote(sd)
	ts.remote[sd] = remoteSide{node: node, win: newWindow()}
}

// endRemote forgets side sd's remote peer, ending the window a reader may
// wait on. Call with mu held.
func (ts *tunnelState) endRemote(sd side) {
	if w := ts.remote[sd].win; w != nil {
		w.end()
	}
	ts.remote[sd] = remoteSide{}
}

// linkFlow names a connection of a tunnel among all a link carries.
func linkFlow(tunnelID string, key uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(tunnelID))
	return h.Sum64() ^ key
}

// forwardRemote sends a checked frame of p's toward the other side's peer,
// which node holds, once the window allows. The frame's buffer is freed.
func (p *peer) forwardRemote(node string, win *window, f *framepool.Buf, m *wire.Message) error {
	defer f.Free()
	if err := win.take(p.ctx, framepool.CostOf(len(f.B))); errors.Is(err, errWindowEnded) {
		// The other side left while this frame waited: as with no peer.
		p.r.dropped(len(f.B))
		p.refuseStart(m)
		return nil
	} else if err != nil {
		return errors.New("stopped while waiting for the other node's credit")
	}
	msg := nodelink.Message{Kind: nodelink.KindFrame, Side: uint8(p.side.other()), Tunnel: p.ts.id, Frame: f}
	if err := p.r.nodes.Send(p.ctx, node, &msg, linkFlow(p.ts.id, flowKey(p.services, m)), orderFree(m)); err != nil {
		if p.ctx.Err() != nil {
			return errors.New("stopped while forwarding to another node")
		}
		// The other node is unreachable: its peer is gone for us.
		p.log.Warn("relay: link to the other peer's node failed", "node", node, "err", err)
		p.r.dropped(len(f.B))
		p.r.remoteGone(p.ts, p.side.other(), node, true)
		return nil
	}
	p.r.stats.forwarded(p.side, len(f.B))
	return nil
}

// attachRemote tells the node holding the other side's peer (as the store
// said at admission) that this node holds p's side now.
func (p *peer) attachRemote(node string) {
	if node == "" {
		return
	}
	other := p.side.other()
	p.ts.setRemote(other, node)
	p.log.Debug("relay: the other side's peer is on another node", "node", node)
	ctx, cancel := context.WithTimeout(p.ctx, attachTimeout)
	defer cancel()
	msg := nodelink.Message{Kind: nodelink.KindAttach, Side: uint8(p.side), Tunnel: p.ts.id}
	if err := p.r.nodes.Send(ctx, node, &msg, 0, false); err != nil {
		p.log.Warn("relay: the other peer's node is unreachable", "node", node, "err", err)
		p.r.remoteGone(p.ts, other, node, true)
	}
}

// detachRemote tells node that p, which has ended, is gone.
func (p *peer) detachRemote(node string) {
	ctx, cancel := context.WithTimeout(context.Background(), attachTimeout)
	defer cancel()
	msg := nodelink.Message{Kind: nodelink.KindDetach, Side: uint8(p.side), Tunnel: p.ts.id}
	if err := p.r.nodes.Send(ctx, node, &msg, 0, false); err != nil {
		p.log.Debug("relay: could not tell the other peer's node of the end", "node", node, "err", err)
	}
}

// returnCredit gives the node that sent frames p has written their credit
// back, a quarter window at a time.
func (p *peer) returnCredit(n int) {
	if n == 0 {
		return
	}
	owed := p.owed.Add(int64(n))
	if owed < remoteWindow/4 {
		return
	}
	node, _ := p.ts.remotePeer(p.side.other())
	if node == "" || !p.owed.CompareAndSwap(owed, 0) {
		return
	}
	msg := nodelink.Message{Kind: nodelink.KindCredit, Side: uint8(p.side), Tunnel: p.ts.id, Arg: uint64(owed)}
	p.r.nodes.SendNoWait(node, &msg)
}

// creditOf is the node-link credit a written batch held.
func creditOf(batch []*framepool.Buf) int {
	n := 0
	for _, b := range batch {
		n += b.Credit
	}
	return n
}

// Receive takes a message from another node (nodelink.Handler). It never
// waits: frames are queued beyond the peer's bound, which the sender's
// credit bounds.
func (r *Relay) Receive(from string, m *nodelink.Message) {
	if m.Side > 1 {
		if m.Frame != nil {
			m.Frame.Free()
		}
		r.log.Warn("relay: node link message for no side", "node", from, "side", m.Side)
		return
	}
	sd := side(m.Side)
	switch m.Kind {
	case nodelink.KindFrame:
		r.deliver(from, sd, m)
	case nodelink.KindAttach:
		r.remoteAttached(from, m.Tunnel, sd)
	case nodelink.KindDetach:
		if ts := r.lookup(m.Tunnel); ts != nil {
			r.remoteGone(ts, sd, from, false)
		}
	case nodelink.KindCredit:
		if ts := r.lookup(m.Tunnel); ts != nil {
			// The sender holds side sd's peer: our window toward it grows.
			if node, win := ts.remotePeer(sd); node == from {
				win.give(int(min(m.Arg, remoteWindow)))
			}
		}
	case nodelink.KindClose:
		r.closeLocal(m.Tunnel)
	case nodelink.KindRotate:
		var modes []tunnel.Mode
		for _, sd := range []side{sourceSide, destinationSide} {
			if m.Arg&(1<<sd) != 0 {
				modes = append(modes, sd.mode())
			}
		}
		r.rotateLocal(m.Tunnel, modes...)
	}
}

// deliver queues a frame from another node for this node's peer of side
// sd, or, with no such peer (or when the sender does not hold the other
// side as far as this node knows), tells the sender so.
func (r *Relay) deliver(from string, sd side, m *nodelink.Message) {
	f := m.Frame
	var p *peer
	ts := r.lookup(m.Tunnel)
	if ts != nil {
		p = ts.peer(sd)
		// Only the node that holds the other side may send: a peer another
		// node has replaced is cut off from this one.
		if node, _ := ts.remotePeer(sd.other()); node != from {
			p = nil
		}
	}
	if p == nil && ts != nil && ts.beingAdmitted(sd) {
		// The peer is in the store and not registered yet: the frame is
		// lost, as it would be a moment earlier, but the sender is right.
		r.dropped(len(f.B))
		f.Free()
		return
	}
	if p == nil {
		r.log.Debug("relay: frame from a node for a peer not here", "tunnel", m.Tunnel, "node", from, "mode", string(sd.mode()))
		r.dropped(len(f.B))
		f.Free()
		r.nodes.SendNoWait(from, &nodelink.Message{Kind: nodelink.KindDetach, Side: uint8(sd), Tunnel: m.Tunnel})
		return
	}
	credit := framepool.CostOf(len(f.B))
	ts.track(&m.Wire, r.maxConns)
	f = encodeFor(p.version, f, &m.Wire)
	f.Credit = credit
	var err error
	if orderFree(&m.Wire) {
		err = p.q.PushNoWait(flowKey(p.services, &m.Wire), f)
	} else {
		err = p.q.PushControlNoWait(f)
	}
	if err != nil {
		r.dropped(len(f.B))
		f.Free()
	}
}

// remoteAttached records that node from holds side sd's peer of tunnel id
// now. A peer of that side here was replaced; with no peer of the other
// side here, from is told so.
func (r *Relay) remoteAttached(from, id string, sd side) {
	ts := r.lookup(id)
	if ts == nil || ts.peer(sd.other()) == nil && !ts.beingAdmitted(sd.other()) {
		r.log.Debug("relay: a node attached a peer to a side this node does not hold", "tunnel", id, "node", from, "mode", string(sd.mode()))
		r.nodes.SendNoWait(from, &nodelink.Message{Kind: nodelink.KindDetach, Side: uint8(sd.other()), Tunnel: id})
		return
	}
	r.log.Debug("relay: the other side's peer joined on another node", "tunnel", id, "node", from, "mode", string(sd.mode()))
	if old := ts.peer(sd); old != nil {
		old.stop(0, reasonReplaced)
	}
	if prev, _ := ts.remotePeer(sd); prev != "" && prev != from {
		// The side's peer moved from node prev: its old peer there is
		// cut off from this node's (its streams are reset there).
		r.nodes.SendNoWait(prev, &nodelink.Message{Kind: nodelink.KindDetach, Side: uint8(sd.other()), Tunnel: id})
	}
	ts.setRemote(sd, from)
}

// remoteGone ends side sd's remote peer, if node still holds it: this
// node's peer of the other side has its streams reset. lost: the link to
// node went down, not the peer; the side is remembered (lost), to attach
// again if the link comes back (LinkUp).
func (r *Relay) remoteGone(ts *tunnelState, sd side, node string, lost bool) {
	ts.mu.Lock()
	if ts.remote[sd].node != node || lost && ts.remote[sd].lost {
		ts.mu.Unlock()
		return
	}
	ts.endRemote(sd)
	if lost {
		ts.remote[sd] = remoteSide{node: node, win: endedWindow(), lost: true}
	}
	streams := ts.takeStreams()
	local := ts.peers[sd.other()]
	ts.mu.Unlock()
	r.log.Debug("relay: the other side's peer left its node", "tunnel", ts.id, "node", node, "mode", string(sd.mode()), "streams", len(streams), "link_lost", lost)
	if local == nil {
		return
	}
	for _, s := range streams {
		f := streamResetFrame(s)
		if local.q.PushControlNoWait(f) != nil {
			f.Free()
		}
	}
}

// LinkDown ends every remote peer the node held, remembering them as lost
// (nodelink.Handler).
func (r *Relay) LinkDown(node string) {
	for _, ts := range r.states() {
		for _, sd := range []side{sourceSide, destinationSide} {
			r.remoteGone(ts, sd, node, true)
		}
	}
}

// LinkUp attaches again, over a link that came back, this node's peers
// whose other side was on node when the link went down; node does the same
// with its own, and answers DETACH where it no longer holds the other side
// (nodelink.Handler).
func (r *Relay) LinkUp(node string) {
	for _, ts := range r.states() {
		for _, sd := range []side{sourceSide, destinationSide} {
			ts.mu.Lock()
			again := ts.remote[sd].node == node && ts.remote[sd].lost && ts.peers[sd.other()] != nil
			if again {
				ts.endRemote(sd)
				ts.remote[sd] = remoteSide{node: node, win: newWindow()}
			}
			ts.mu.Unlock()
			if again {
				r.log.Debug("relay: attaching a peer again over a link that came back", "tunnel", ts.id, "node", node)
				r.nodes.SendNoWait(node, &nodelink.Message{Kind: nodelink.KindAttach, Side: uint8(sd.other()), Tunnel: ts.id})
			}
		}
	}
}

// Reconnect drops every peer without a close frame, so that the local
// proxies connect again (through the balancer, to any node) and are
// admitted afresh. A cluster node does so when the other nodes took it
// for dead and recorded its peers as gone.
func (r *Relay) Reconnect(reason string) {
	for _, ts := range r.states() {
		ts.mu.Lock()
		peers := ts.peers
		ts.mu.Unlock()
		for _, p := range peers {
			if p != nil {
				p.stop(0, reason)
			}
		}
	}
}

// states is every tunnel state the relay holds.
func (r *Relay) states() []*tunnelState {
	r.mu.Lock()
	defer r.mu.Unlock()
	states := make([]*tunnelState, 0, len(r.tunnels))
	for _, ts := range r.tunnels {
		states = append(states, ts)
	}
	return states
}

// broadcast sends m to every other node, at once, waiting for all (each
// at most attachTimeout).
func (r *Relay) broadcast(m nodelink.Message) {
	if r.nodes == nil {
		return
	}
	var wg sync.WaitGroup
	for _, node := range r.nodes.Others() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), attachTimeout)
			defer cancel()
			msg := m
			if err := r.nodes.Send(ctx, node, &msg, 0, false); err != nil {
				r.log.Warn("relay: could not tell a node", "node", node, "tunnel", m.Tunnel, "err", err)
			}
		}()
	}
	wg.Wait()
}
