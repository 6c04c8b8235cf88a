package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
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

	// send queues whole frames for the write loop. A full queue blocks the
	// other peer's reader: backpressure instead of growth.
	send chan []byte

	ctx    context.Context // done when the peer is stopped
	cancel context.CancelFunc

	stopOnce   sync.Once
	closeCode  int    // close frame to send, 0 for none; set by stop
	closeText  string // reason text of that close frame
	stopReason string // why someone else stopped the peer

	writerDone chan struct{}
	detached   chan struct{} // closed once the other peer has its resets
}

func newPeer(r *Relay, ts *tunnelState, sd side, t tunnel.Tunnel, h handshake, channelID string) *peer {
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{
		r:          r,
		ts:         ts,
		side:       sd,
		mode:       h.mode,
		accountID:  t.AccountID,
		services:   t.Services,
		version:    h.version,
		log:        r.log.With("tunnel", t.ID, "mode", string(h.mode), "channel", channelID),
		send:       make(chan []byte, r.queue),
		ctx:        ctx,
		cancel:     cancel,
		writerDone: make(chan struct{}),
		detached:   make(chan struct{}),
	}
	if h.version >= 2 {
		// Nothing happens until SERVICE_IDS arrives: the source opens its
		// ports only then. 1.0 peers do not know the message.
		p.send <- serviceIDsFrame(t.Services)
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
	p.logEnd(err)

	other, streams := p.ts.detach(p)
	if other != nil {
		for _, s := range streams {
			p.r.relayFrame(other, streamResetFrame(s))
		}
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
		p.r.stats.violations.Add(1)
		p.log.Warn("relay: peer closed for a protocol violation", "reason", v.reason)
	case p.stopReason != "":
		p.log.Info("relay: peer disconnected", "reason", p.stopReason)
	default:
		p.log.Info("relay: peer disconnected", "reason", err.Error())
	}
}

// readLoop reads the peer's frames and forwards them until an error.
func (p *peer) readLoop() error {
	p.conn.SetReadLimit(wire.MaxWebSocketMessage)
	p.conn.SetPingHandler(p.answerPing)
	in := &messageStream{conn: p.conn}
	var fr *frameReader
	defer func() {
		if fr != nil {
			fr.giveBack()
		}
	}()
	var m wire.Message
	for {
		if p.ctx.Err() != nil {
			return errors.New("stopped")
		}
		if fr == nil {
			// Wait for the next message without holding a frame buffer.
			if err := in.next(); err != nil {
				return readError(err)
			}
			fr = borrowFrameReader(in)
		}
		raw, err := fr.r.ReadFrame(&m)
		if err != nil {
			return readError(err)
		}
		if v := checkFrame(&m, p.mode, p.services); v != nil {
			return v
		}
		p.ts.track(&m)
		if err := p.forward(raw, &m); err != nil {
			return err
		}
		if in.drained() {
			fr.giveBack()
			fr = nil
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

// answerPing echoes a ping's payload byte for byte in exactly one pong: the
// official proxy parses it as its clock to measure latency.
func (p *peer) answerPing(data string) error {
	err := p.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
	if errors.Is(err, websocket.ErrCloseSent) {
		return nil
	}
	return err
}

// forward hands a checked frame to the other peer's queue, waiting while
// it is full; with no other peer the frame is dropped.
func (p *peer) forward(raw []byte, m *wire.Message) error {
	if m.Type == wire.TypeData && p.r.pacer != nil {
		if err := p.r.pacer.Wait(p.ctx, p.accountID, len(raw)); err != nil {
			return fmt.Errorf("pacer: %w", err)
		}
	}
	other := p.ts.peer(p.side.other())
	if other == nil {
		p.r.dropped(len(raw))
		p.log.Debug("relay: frame dropped: no peer", "type", m.Type.String(), "bytes", len(raw))
		p.refuseStart(m)
		return nil
	}
	frame := encodeFor(other.version, raw, m)
	select {
	case other.send <- frame:
		p.r.stats.forwardedFrames.Add(1)
		return nil
	default:
	}
	p.r.stats.sendStalls.Add(1)
	select {
	case other.send <- frame:
		p.r.stats.forwardedFrames.Add(1)
		return nil
	case <-other.ctx.Done():
		p.r.dropped(len(frame))
		return nil
	case <-p.ctx.Done():
		return fmt.Errorf("stopped while forwarding: %w", context.Cause(p.ctx))
	}
}

// refuseStart answers a stream or connection start that found no peer (the
// other local proxy is not connected) with its reset, so that the sender
// closes its client's socket at once instead of leaving it waiting for an
// answer that cannot come.
func (p *peer) refuseStart(m *wire.Message) {
	var reset wire.Message
	switch m.Type {
	case wire.TypeStreamStart:
		reset = wire.Message{Type: wire.TypeStreamReset, StreamID: m.StreamID, ServiceID: m.ServiceID}
	case wire.TypeConnectionStart:
		reset = wire.Message{Type: wire.TypeConnectionReset, StreamID: m.StreamID, ServiceID: m.ServiceID, ConnectionID: m.ConnectionID}
	default:
		return
	}
	if p.version == 2 {
		reset.ConnectionID = 0
	}
	p.ts.track(&reset)
	frame, err := wire.AppendFrame(nil, &reset)
	if err != nil {
		panic(err) // no payload: always fits
	}
	p.r.relayFrame(p, frame)
}

// relayFrame queues a frame the relay itself originates.
func (r *Relay) relayFrame(to *peer, frame []byte) {
	select {
	case to.send <- frame:
	case <-to.ctx.Done():
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
	var next []byte
	for {
		if next == nil {
			select {
			case next = <-p.send:
			case <-p.ctx.Done():
				p.finish()
				return
			}
		}
		var err error
		if next, err = p.writeMessage(next); err != nil {
			p.stop(0, "")
			return
		}
	}
}

// writeMessage writes first and whatever else is queued, up to the largest
// message a peer accepts, as one binary message (the official proxy does not
// need frames aligned to messages). It returns a queued frame that did not
// fit, for the next message.
func (p *peer) writeMessage(first []byte) (carry []byte, err error) {
	p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	w, err := p.conn.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return nil, err
	}
	n := 0
	frame := first
	for frame != nil {
		if _, err := w.Write(frame); err != nil {
			return nil, err
		}
		n += len(frame)
		frame = nil
		select {
		case f := <-p.send:
			if n+len(f) <= wire.MaxWebSocketMessage {
				frame = f
			} else {
				carry = f
			}
		default:
		}
	}
	return carry, w.Close()
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
