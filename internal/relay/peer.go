package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/warrentunnel/warren/internal/bandwidth"
	"github.com/warrentunnel/warren/internal/fairq"
	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
	"github.com/warrentunnel/warren/internal/wsbatch"
)

// peer is one admitted local proxy connection: a read loop (in the handler's
// goroutine) that checks frames and hands them to the other peer, and a
// write loop that drains this peer's bounded send queue onto its WebSocket.
type peer struct {
	r         *Relay
	ts        *tunnelState
	side      side
	mode      tunnel.Mode
	accountID string
	services  []string // as admitted; frames are checked against them
	version   int      // negotiated subprotocol version
	log       *slog.Logger

	// conn is set once the upgrade succeeded, after the peer was
	// registered; mu orders that with stop.
	mu   sync.Mutex
	conn *websocket.Conn

	// writable is set once conn is attached and the write loop runs: from
	// then on the other peer's reader may write to conn itself (flush).
	writable atomic.Bool
	// batch is the reader's scratch for flushing the other peer's queue.
	batch []*framepool.Buf

	// q holds the frames waiting for the write loop, bounded in bytes. A
	// full queue blocks the other peer's reader: backpressure instead of
	// growth. It is closed when the peer stops.
	q *fairq.Queue

	ctx    context.Context // done when the peer is stopped
	cancel context.CancelFunc

	stopOnce   sync.Once
	closeCode  int    // close frame to send, 0 for none; set by stop
	closeText  string // reason text of that close frame
	stopReason string // why someone else stopped the peer

	writerDone chan struct{}
	detached   chan struct{} // closed once the other peer has its resets

	// The account's pacer for the DATA this peer sends (nil: no limit),
	// and the link credit this peer gets while the account is limited.
	acct   *bandwidth.Account
	dir    bandwidth.Direction
	sub    *bandwidth.Subscription
	credit linkCredit

	// pings bounds the pings the peer may send (each costs a pong
	// written from the reader); only its reader uses it.
	pings *rate.Limiter

	// In a cluster: the node that held the other side's peer at admission
	// (told of this one once it runs), and the credit of frames from
	// another node written out and not yet returned (nodes.go).
	otherNode string
	owed      atomic.Int64
}

// A peer may ping in bursts of pingBurst, then pingRate times a second:
// the official proxy pings every 20 s (its ping_period_ms setting), so
// only a flood goes past that, and is closed with a policy violation
// instead of keeping the relay writing pongs.
const (
	pingRate  = 10
	pingBurst = 100
)

func newPeer(r *Relay, ts *tunnelState, sd side, t tunnel.Tunnel, h handshake, channelID string) *peer {
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{
		r:          r,
		dir:        bandwidth.ToDestination,
		credit:     linkCredit{wanted: h.linkCredit},
		ts:         ts,
		side:       sd,
		mode:       h.mode,
		accountID:  t.AccountID,
		services:   t.Services,
		version:    h.version,
		log:        r.log.With("tunnel", t.ID, "mode", string(h.mode), "channel", channelID),
		q:          fairq.New(r.queue),
		ctx:        ctx,
		cancel:     cancel,
		writerDone: make(chan struct{}),
		detached:   make(chan struct{}),
		pings:      rate.NewLimiter(pingRate, pingBurst),
	}
	if h.mode == tunnel.ModeDestination {
		p.dir = bandwidth.ToSource
	}
	if h.version >= 2 {
		// Nothing happens until SERVICE_IDS arrives: the source opens its
		// ports only then. 1.0 peers do not know the message.
		p.q.PushControlWait(ctx, serviceIDsFrame(t.Services))
	}
	return p
}

// stop ends the peer. With code 0 the connection is dropped at once (the
// official proxy then reconnects); otherwise the write loop sends a close
// frame first (the official proxy then exits). The first call wins.
func (p *peer) stop(code int, reason string) {
	p.stopOnce.Do(func() {
		p.closeCode, p.closeText, p.stopReason = code, reason, reason
		p.cancel()
		p.q.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		if code == 0 && p.conn != nil {
			p.conn.Close()
		}
	})
}

// attach gives the registered peer its upgraded connection. A peer stopped
// meanwhile without close frame is dropped at once; the write loop sends
// any close frame.
func (p *peer) attach(conn *websocket.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn = conn
	if p.ctx.Err() != nil && p.closeCode == 0 {
		conn.Close()
	}
}

// run serves the peer until its connection ends, then cleans up after it.
func (p *peer) run() {
	p.end(p.readLoop())
}

// end cleans up after a peer whose reading ended with err: it stops the
// peer, resets the other peer's streams and records the disconnect.
func (p *peer) end(err error) {
	defer p.r.stats.peersEnded.Add(1)
	var v *violation
	if errors.As(err, &v) {
		p.stop(v.code, v.reason)
	} else {
		p.stop(0, "")
	}
	<-p.writerDone
	p.stopPacing()
	p.logEnd(err)

	other, streams := p.ts.detach(p)
	if other != nil {
		for _, s := range streams {
			p.r.relayFrame(other, streamResetFrame(s))
		}
	} else if node, _ := p.ts.remotePeer(p.side.other()); node != "" && !p.ts.remoteLost(p.side.other()) {
		p.detachRemote(node)
	}
	close(p.detached)

	// The store update waits for a handshake of this side under way, and
	// is skipped when a newer connection has taken over.
	p.ts.admitting[p.side].Lock()
	defer p.ts.admitting[p.side].Unlock()
	if p.ts.peer(p.side) == nil && !p.r.isClosed() {
		p.r.markDisconnected(p.ts.id, p.side)
	}
}

func (p *peer) logEnd(err error) {
	var v *violation
	switch {
	case errors.As(err, &v):
		p.r.stats.disconnected(reasonViolation)
		p.log.Warn("relay: peer closed for a protocol violation", "reason", v.reason)
	case p.stopReason != "":
		p.r.stats.disconnected(p.stopReason)
		p.log.Info("relay: peer disconnected", "reason", p.stopReason)
	default:
		p.r.stats.disconnected("")
		p.log.Info("relay: peer disconnected", "reason", err.Error())
	}
}

// readLoop reads the peer's frames and forwards them until an error. Each
// frame is read into a pooled buffer that travels to the other peer's
// queue and back to the pool once written; between messages the peer holds
// no frame buffer.
func (p *peer) readLoop() error {
	p.conn.SetReadLimit(wire.MaxWebSocketMessage)
	p.conn.SetPingHandler(p.answerPing)
	p.conn.SetPongHandler(func(string) error { p.alive(); return nil })
	in := &messageStream{conn: p.conn, alive: p.alive}
	var m wire.Message
	for {
		if p.ctx.Err() != nil {
			return errors.New("stopped")
		}
		if in.drained() {
			// Wait for the next message.
			if err := in.next(); err != nil {
				return readError(err)
			}
		}
		f, err := framepool.ReadFrame(in, &m)
		if err != nil {
			if f != nil {
				f.Free()
			}
			return readError(err)
		}
		if v := checkFrame(&m, p.mode, p.services); v != nil {
			f.Free()
			return v
		}
		if !p.ts.track(&m, p.r.maxConns) {
			p.refuseOverLimit(&m)
			f.Free()
			continue
		}
		if err := p.forward(f, &m); err != nil {
			return err
		}
	}
}

// readError turns what the frame reader returns into a violation where the
// peer is at fault.
func readError(err error) error {
	var v *violation
	switch {
	case errors.As(err, &v):
	case errors.Is(err, websocket.ErrReadLimit):
		// The library has sent close 1009 itself.
		v = violated(0, "WebSocket message larger than %d bytes", wire.MaxWebSocketMessage)
	case errors.Is(err, wire.ErrPayloadTooLarge):
		v = violated(websocket.CloseMessageTooBig, "tunnel frame payload larger than %d bytes", wire.MaxPayload)
	case errors.Is(err, wire.ErrUnknownField):
		v = violated(websocket.CloseProtocolError, "tunnel frame with an unknown protobuf field (%v)", err)
	case errors.Is(err, wire.ErrMalformed), errors.Is(err, wire.ErrFrameTooLarge):
		v = violated(websocket.CloseProtocolError, "undecodable tunnel frame (%v)", err)
	default:
		return fmt.Errorf("read: %w", err)
	}
	return v
}

// alive moves the read deadline to the silence limit from now: a peer
// that sends nothing for that long, not even its pings, is taken for gone
// (its host vanished, or a middlebox between us stopped forwarding without
// closing) and dropped like any other lost connection.
func (p *peer) alive() {
	if p.r.silence > 0 {
		_ = p.conn.SetReadDeadline(time.Now().Add(p.r.silence))
	}
}

// answerPing echoes a ping's payload byte for byte in exactly one pong: the
// official proxy parses it as its clock to measure latency.
func (p *peer) answerPing(data string) error {
	p.alive()
	if !p.pings.Allow() {
		return violated(websocket.ClosePolicyViolation, "ping flood: more than %d pings at once or %d a second", pingBurst, pingRate)
	}
	err := p.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
	if errors.Is(err, websocket.ErrCloseSent) {
		return nil
	}
	return err
}

// forward hands a checked frame to the other peer's queue, waiting while
// it is full; with no other peer the frame is dropped. The frame's buffer
// goes with it.
func (p *peer) forward(f *framepool.Buf, m *wire.Message) error {
	if m.Type == wire.TypeData && p.acct != nil {
		if err := p.acct.Wait(p.ctx, p.dir, len(m.Payload)); err != nil {
			f.Free()
			return errors.New("stopped while waiting for the account's bandwidth limit")
		}
		if p.credit.wanted {
			p.forwarded(len(m.Payload))
		}
	}
	other := p.ts.peer(p.side.other())
	if other == nil {
		if node, win := p.ts.remotePeer(p.side.other()); node != "" {
			return p.forwardRemote(node, win, f, m)
		}
		p.r.dropped(len(f.B))
		p.log.Debug("relay: frame dropped: no peer", "type", m.Type.String(), "bytes", len(f.B))
		f.Free()
		p.refuseStart(m)
		return nil
	}
	f = encodeFor(other.version, f, m)
	n := len(f.B)
	var err error
	if orderFree(m) {
		err = other.q.Push(p.ctx, flowKey(p.services, m), f)
	} else {
		err = other.q.PushControlWait(p.ctx, f)
	}
	switch {
	case err == nil:
		p.r.stats.forwarded(p.side, n)
		p.batch = other.flush(p.batch)
		return nil
	case errors.Is(err, fairq.ErrClosed):
		f.Free()
		p.r.dropped(n)
		return nil
	default:
		f.Free()
		return fmt.Errorf("stopped while forwarding: %w", context.Cause(p.ctx))
	}
}

// refuseStart answers a stream or connection start that found no peer (the
// other local proxy is not connected) with its reset, so that the sender
// closes its client's socket at once instead of leaving it waiting for an
// answer that cannot come. The start was tracked; its reset untracks it.
func (p *peer) refuseStart(m *wire.Message) {
	if reset, ok := resetOf(m); ok {
		p.ts.track(&reset, p.r.maxConns)
		p.sendReset(reset)
	}
}

// refuseOverLimit answers a start that would take the tunnel past its
// simultaneous connections with its reset, as when no peer is there: the
// source closes that one client's socket at once, the others carry on.
// The start was not tracked, so neither is its reset, which could
// otherwise end a live stream of the same id.
func (p *peer) refuseOverLimit(m *wire.Message) {
	p.r.stats.refusedStarts.Add(1)
	p.log.Info("relay: connection refused: the tunnel has as many simultaneous connections as it may",
		"limit", p.r.maxConns, "type", m.Type.String(), "service", m.ServiceID, "stream", m.StreamID, "conn", m.ConnectionID)
	if reset, ok := resetOf(m); ok {
		p.sendReset(reset)
	}
}

// resetOf is the reset that refuses start m.
func resetOf(m *wire.Message) (wire.Message, bool) {
	switch m.Type {
	case wire.TypeStreamStart:
		return wire.Message{Type: wire.TypeStreamReset, StreamID: m.StreamID, ServiceID: m.ServiceID}, true
	case wire.TypeConnectionStart:
		return wire.Message{Type: wire.TypeConnectionReset, StreamID: m.StreamID, ServiceID: m.ServiceID, ConnectionID: m.ConnectionID}, true
	}
	return wire.Message{}, false
}

// sendReset queues a reset the relay originates for p, in p's format.
func (p *peer) sendReset(reset wire.Message) {
	if p.version == 2 {
		reset.ConnectionID = 0
	}
	p.r.relayFrame(p, controlFrame(&reset))
}

// relayFrame queues a frame the relay itself originates, unless the peer
// has stopped.
func (r *Relay) relayFrame(to *peer, f *framepool.Buf) {
	if err := to.q.PushControlWait(to.ctx, f); err != nil {
		f.Free()
	}
}

func (r *Relay) dropped(n int) {
	r.stats.droppedFrames.Add(1)
	r.stats.droppedBytes.Add(int64(n))
}

// writeLoop writes queued frames until the peer is stopped, then sends the
// close frame stop asked for and closes the connection.
func (p *peer) writeLoop() {
	defer p.r.wg.Done()
	defer close(p.writerDone)
	var batch []*framepool.Buf
	for {
		var err error
		batch, err = p.q.Take(p.ctx, batch[:0], wire.MaxWebSocketMessage)
		if err != nil {
			p.finish()
			return
		}
		err = p.writeBatch(batch)
		credit := creditOf(batch)
		p.q.Release(batch)
		if err != nil {
			p.stop(0, "")
			return
		}
		p.returnCredit(credit)
	}
}

// flush writes what waits in p's queue from the calling goroutine (the
// other peer's reader, which has just queued a frame), unless p's write
// loop or another flush is writing. It returns scratch for reuse.
func (p *peer) flush(scratch []*framepool.Buf) []*framepool.Buf {
	if !p.writable.Load() {
		return scratch
	}
	batch, ok := p.q.TakeIfIdle(scratch[:0], wire.MaxWebSocketMessage)
	if !ok {
		return batch
	}
	err := p.writeBatch(batch)
	credit := creditOf(batch)
	p.q.Release(batch)
	if err != nil {
		p.stop(0, "")
	}
	p.returnCredit(credit)
	return batch[:0]
}

// writeBatch writes frames as WebSocket messages (the official proxy does
// not need frames aligned to messages).
func (p *peer) writeBatch(batch []*framepool.Buf) error {
	p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return wsbatch.Write(p.conn, batch, writeBufferSize)
}

func (p *peer) finish() {
	if p.closeCode != 0 {
		msg := websocket.FormatCloseMessage(p.closeCode, truncateUTF8(p.closeText, maxCloseText))
		p.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeTimeout))
	}
	p.conn.Close()
}

// maxCloseText is the most reason text a close frame has room for.
const maxCloseText = 123

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
