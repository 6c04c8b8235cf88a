package localproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/wire"
)

// frameFormat says which optional fields a stream's frames carry: V3 has
// both, V2 only the service id, V1 neither. A destination answers in the
// format the source's STREAM_START used.
type frameFormat struct {
	svc  bool // serviceId
	conn bool // connectionId; without it a stream has one connection
}

func formatFor(p Protocol) frameFormat {
	return frameFormat{svc: p >= V2, conn: p >= V3}
}

// localConn is one local TCP (or unix) connection carried on a stream.
//
// Closing follows the captures: each side sends one CONNECTION_RESET per
// connection, when its local socket reports end of stream. Warren reads a
// CONNECTION_RESET as the peer's end of stream, like a TCP FIN: it writes
// out what already arrived, shuts down the local socket's write side, and
// keeps carrying what the local application still sends until it closes too;
// then it answers with its own CONNECTION_RESET. So a half-closed client
// (shutdown(SHUT_WR) after its request) still gets its whole answer, and
// bytes in flight are never dropped. An official peer closes its socket on
// our reset and answers at once, which ends the connection the same way.
// When the local socket fails instead (the application closed it while the
// peer still sends, or a write to it failed), a side sends a second
// CONNECTION_RESET after its first, unless the peer has ended too: a peer
// that gets a second reset closes its socket at once, so it does not carry
// data nobody will read (the official proxy ignores the extra reset).
// V1/V2 streams have no per-direction close: a STREAM_RESET, either way,
// ends the connection once what already arrived is written.
type localConn struct {
	s        *session
	log      *slog.Logger
	service  string // mapped service id
	wireSvc  string // service id as put in frames ("" when the format has none)
	streamID int32
	connID   uint32 // as on the wire (0 in V1/V2 formats)
	key      uint32 // key in stream.conns
	fmt      frameFormat
	flow     uint64       // this connection's flow in the session's send queue
	dataMsg  wire.Message // the fields of this connection's DATA frames
	in       *inbox       // tunnel -> local socket

	// direct writes from the tunnel reader (writeNow); wraw is set with nc
	wraw  syscall.RawConn
	wfn   func(fd uintptr) bool
	wbuf  []byte
	wn    int
	wfail error

	// opened wakes a reader waiting for the peer's window to open or for
	// its turn at the link credit.
	opened chan struct{}
	// The reader's own, for the link credit: it holds a reservation, and
	// its socket had more than it could send.
	linkHeld   bool
	backlogged bool

	mu sync.Mutex
	// What this connection sends: once the peer announced a window, at
	// most avail more bytes (sent counts every byte read from the socket).
	windowed bool
	avail    int64
	sent     int64
	unacked  int // bytes written to the socket not yet announced to the peer
	// announced: this side told the peer its window (a source does at once;
	// a destination only once the source has shown it knows windows, so an
	// official source never sees a window update).
	announced bool

	nc      net.Conn // nil while a destination is still dialing
	aborted bool
	// hard: the connection ended abnormally (its stream or the WebSocket
	// was lost), so its socket is closed with a TCP reset, which the local
	// application sees as an error, rather than with the FIN of a complete
	// transfer.
	hard      bool
	silent    bool // the stream is gone: never send a reset for this connection
	resetSent bool
	abortSent bool // a second reset: the local socket is gone
	peerEnded bool // the peer's CONNECTION_RESET came
	live      int  // running goroutines of this connection
}

func (s *session) newConn(service string, st *stream, connID uint32) *localConn {
	lc := &localConn{
		s:        s,
		service:  service,
		streamID: st.id,
		connID:   connID,
		key:      st.key(connID),
		fmt:      st.fmt,
		in:       newInbox(s.set.QueueBytes),
		opened:   make(chan struct{}, 1),
	}
	if !st.fmt.conn {
		lc.connID = 0
	}
	if st.fmt.svc {
		lc.wireSvc = service
	}
	lc.flow = s.e.nextFlow()
	lc.dataMsg = frameMessage(wire.TypeData, lc.streamID, lc.wireSvc, lc.connID, lc.fmt)
	lc.log = s.log.With("service", service, "stream", st.id, "conn", lc.connID)
	return lc
}

// frame encodes a message of this connection (without payload) in its
// stream's format.
func (lc *localConn) frame(t wire.Type) *framepool.Buf {
	return encodeFrame(t, lc.streamID, lc.wireSvc, lc.connID, lc.fmt)
}

// frameMessage is a message of a stream in format f.
func frameMessage(t wire.Type, streamID int32, svc string, connID uint32, f frameFormat) wire.Message {
	m := wire.Message{Type: t, StreamID: streamID}
	if f.svc {
		m.ServiceID = svc
	}
	if f.conn && t != wire.TypeStreamReset {
		m.ConnectionID = connID
	}
	return m
}

// windowFrame encodes a window update of inc bytes for this connection.
func (lc *localConn) windowFrame(inc int) *framepool.Buf {
	m := frameMessage(wire.TypeWindowUpdate, lc.streamID, lc.wireSvc, lc.connID, lc.fmt)
	m.Ignorable = true
	b := framepool.Get(framepool.SmallSize)
	p := b.Mem[wire.HeaderRoom : wire.HeaderRoom+4]
	binary.BigEndian.PutUint32(p, uint32(inc))
	frame, err := wire.FrameAround(b.Mem, wire.HeaderRoom, 4, &m)
	if err != nil {
		panic("localproxy: " + err.Error()) // a short frame always fits
	}
	b.B = frame
	return b
}

// encodeFrame encodes a frame without payload into a pooled buffer.
func encodeFrame(t wire.Type, streamID int32, svc string, connID uint32, f frameFormat) *framepool.Buf {
	m := frameMessage(t, streamID, svc, connID, f)
	b := framepool.Get(framepool.SmallSize)
	var err error
	if b.B, err = wire.AppendFrame(b.Mem[:0], &m); err != nil || len(b.B) > len(b.Mem) {
		// Service ids are checked to be short when the mapping is parsed.
		panic("localproxy: control frame does not fit a small buffer")
	}
	return b
}

// resetFrame is how this connection's end is announced: CONNECTION_RESET
// in V3, STREAM_RESET for V1/V2 streams.
func (lc *localConn) resetFrame() *framepool.Buf {
	if lc.fmt.conn {
		return lc.frame(wire.TypeConnectionReset)
	}
	return lc.frame(wire.TypeStreamReset)
}

// start runs the connection's goroutines on nc. If the connection was
// aborted while its target was being dialed, nc is closed instead.
func (lc *localConn) start(nc net.Conn) {
	lc.mu.Lock()
	if lc.aborted {
		lc.mu.Unlock()
		nc.Close()
		lc.sendReset()
		return
	}
	lc.nc = nc
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			lc.wraw, lc.wfn = raw, lc.writeRaw
		}
	}
	lc.live = 2
	lc.mu.Unlock()
	// The caller holds a wg count (accept path: added with these; dial
	// path: the dial goroutine's), so Add cannot race with Wait at zero.
	lc.s.wg.Add(2)
	go lc.readLoop()
	go lc.writeLoop()
}

// readLoop carries the local socket's bytes to the tunnel, at most
// MaxPayload per DATA frame, read straight into pooled frame buffers. It is
// the only sender of this connection's DATA and reset frames, so the reset
// always follows the last DATA.
func (lc *localConn) readLoop() {
	defer lc.exit()
	r := newSocketReader(lc.nc)
	r.limit = lc.reserve
	r.unused = lc.unreserve
	var batch []*framepool.Buf
	for {
		max := lc.waitCredit()
		if max == 0 {
			if lc.s.ctx.Err() != nil {
				return // the session is over
			}
			lc.sendAbort(true)
			lc.abort(false)
			return
		}
		f, err := r.readFrame(max, &lc.dataMsg)
		if errors.Is(err, errNoCredit) {
			continue
		}
		if f != nil {
			lc.spent(len(f.Payload))
			if !lc.s.sendData(lc.flow, f, &batch) {
				return // the session is over
			}
		}
		if err == nil {
			continue
		}
		switch {
		case errors.Is(err, io.EOF) && lc.fmt.conn && !lc.isAborted():
			// End of stream from the local application: tell the peer, and
			// keep writing what it still sends until it ends too.
			lc.log.Debug("local side closed")
			lc.sendReset()
		case errors.Is(err, io.EOF):
			lc.log.Debug("local side closed")
			if lc.isAborted() {
				// A write to the socket failed first; the writer left the
				// second reset to this reader, which had not sent its first.
				lc.sendAbort(true)
			} else {
				lc.sendReset()
			}
			lc.in.finish(stateDrainClose)
		default:
			if !lc.isAborted() {
				lc.log.Debug("local socket error", "err", err)
			}
			lc.sendAbort(true)
			lc.abort(false)
		}
		return
	}
}

// writeLoop writes what the tunnel delivers to the local socket.
func (lc *localConn) writeLoop() {
	defer lc.exit()
	// A write that failed here or on the tunnel reader (writeNow) aborted
	// the connection: the peer must stop sending.
	defer func() {
		if lc.isAborted() {
			lc.sendAbort(false)
		}
	}()
	var (
		frames []*framepool.Buf
		vec    net.Buffers
	)
	for {
		var state int
		frames, state = lc.in.take(frames[:0])
		if len(frames) > 0 {
			vec = vec[:0]
			for _, f := range frames {
				vec = append(vec, f.Payload)
			}
			// WriteTo consumes its receiver; keep vec's array for reuse.
			nb := vec
			n, err := nb.WriteTo(lc.nc)
			lc.in.release(frames)
			if err != nil {
				if !lc.isAborted() {
					lc.log.Debug("local socket write failed", "err", err)
				}
				lc.abort(false)
				return
			}
			lc.consumed(int(n), true)
			continue
		}
		switch state {
		case statePeerEOF:
			if cw, ok := lc.nc.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		case stateDrainClose:
			lc.abort(true)
		}
		return
	}
}

// exit ends one of the connection's goroutines; the last one closes the
// socket and removes the connection from its stream.
func (lc *localConn) exit() {
	lc.mu.Lock()
	lc.live--
	last := lc.live == 0
	lc.mu.Unlock()
	if last {
		lc.nc.Close()
		lc.in.abort()
		lc.s.link.forget(lc)
		lc.s.forget(lc)
		lc.log.Debug("connection closed")
	}
	lc.s.wg.Done()
}

func (lc *localConn) isAborted() bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.aborted
}

// sendReset announces the connection's end once, unless its stream is gone.
func (lc *localConn) sendReset() {
	lc.mu.Lock()
	skip := lc.silent || lc.resetSent
	lc.resetSent = true
	lc.mu.Unlock()
	if !skip {
		lc.s.sendControl(lc.resetFrame())
	}
}

// sendAbort tells the peer that the connection is gone (its local socket
// failed or was closed, not just shut for writing), so the peer stops
// sending: the usual CONNECTION_RESET, which a Warren peer reads as end of
// stream, and a second one, which it reads as the end of the connection.
// The second is not needed when the peer has sent its own already. The
// reader, which sends the connection's DATA, calls it; the writer calls it
// (byReader false) only once the reader has sent its end of stream and
// stopped, so no reset ever goes before the connection's last DATA.
func (lc *localConn) sendAbort(byReader bool) {
	lc.mu.Lock()
	if lc.silent || lc.abortSent || !byReader && !lc.resetSent {
		lc.mu.Unlock()
		return
	}
	lc.abortSent = true
	n := 0
	if !lc.resetSent {
		lc.resetSent = true
		n++
	}
	if lc.fmt.conn && !lc.peerEnded {
		n++
	}
	lc.mu.Unlock()
	for range n {
		lc.s.sendControl(lc.resetFrame())
	}
}

// abort closes the connection now, dropping queued bytes. silent: its stream
// is gone (reset, replaced, or the WebSocket lost), so no reset is sent;
// otherwise the reader sends one as it stops.
func (lc *localConn) abort(silent bool) {
	lc.mu.Lock()
	if silent {
		lc.silent = true
	}
	lc.aborted = true
	nc, hard := lc.nc, lc.hard
	lc.mu.Unlock()
	wake(lc.opened)
	lc.in.abort()
	if nc != nil {
		if hard {
			resetOnClose(nc)
		}
		nc.Close()
	}
}

// lost closes the connection at once with a TCP reset: the WebSocket that
// carried it is gone, and with it whatever was in flight.
func (lc *localConn) lost() {
	lc.mu.Lock()
	lc.hard = true
	lc.mu.Unlock()
	lc.abort(true)
}

// resetOnClose makes the socket's Close send a TCP reset (SO_LINGER 0)
// instead of a FIN, so that the application on the other end gets an
// error (ECONNRESET) rather than what looks like the end of a complete
// transfer.
func resetOnClose(nc net.Conn) {
	if tc, ok := nc.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
}

// deliver queues a DATA frame (its Payload) for the local socket; the
// connection owns f afterwards. The tunnel reader waits while the queue is
// full (backpressure on the relay, as the official proxy does for all its
// connections), but at most StallTimeout: a local application that stops
// reading then gets its connection reset instead of stalling every other
// connection of the tunnel for good.
func (lc *localConn) deliver(f *framepool.Buf) {
	if lc.writeNow(f) {
		return
	}
	n := len(f.Payload)
	err := lc.in.push(lc.s.ctx, f, lc.s.set.StallTimeout)
	if err != nil {
		f.Free()
	}
	switch {
	case err == nil:
	case errors.Is(err, errStalled):
		lc.log.Warn("local application is not reading; resetting its connection",
			"queued_bytes", lc.s.set.QueueBytes, "waited", lc.s.set.StallTimeout)
		lc.abort(false)
	default:
		lc.log.Log(lc.s.ctx, LevelTrace, "DATA for a closing connection dropped", "bytes", n)
	}
}

// writeNow writes f's payload straight to the local socket when nothing is
// queued for it and the socket takes it without blocking, which saves the
// switch to the connection's writer on every hop of a round trip. It
// reports whether f is dealt with (written, or the socket failed); a part
// the socket did not take stays in f to be queued.
func (lc *localConn) writeNow(f *framepool.Buf) bool {
	lc.mu.Lock()
	raw := lc.wraw
	lc.mu.Unlock()
	if raw == nil || !lc.in.idle() {
		return false
	}
	lc.wbuf, lc.wn, lc.wfail = f.Payload, 0, nil
	err := raw.Write(lc.wfn)
	lc.wbuf = nil
	if err == nil {
		err = lc.wfail
	}
	switch {
	case err != nil:
		f.Free()
		if !lc.isAborted() {
			lc.log.Debug("local socket write failed", "err", err)
		}
		lc.abort(false)
		return true
	case lc.wn == len(f.Payload):
		f.Free()
		lc.consumed(lc.wn, false)
		return true
	}
	lc.consumed(lc.wn, false)
	f.Payload = f.Payload[lc.wn:]
	return false
}

// writeRaw is the RawConn callback of writeNow: it writes what the socket
// takes now and never asks to wait.
func (lc *localConn) writeRaw(fd uintptr) bool {
	for lc.wn < len(lc.wbuf) {
		n, err := syscall.Write(int(fd), lc.wbuf[lc.wn:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return true
		case err != nil:
			lc.wfail = os.NewSyscallError("write", err)
			return true
		}
		lc.wn += n
	}
	return true
}

// announceWindow tells the peer this connection's window, once, right
// after its start (the queue keeps the order); it never waits.
func (lc *localConn) announceWindow() {
	w := lc.s.set.Window
	if w <= 0 {
		return
	}
	lc.mu.Lock()
	first := !lc.announced
	lc.announced = true
	lc.mu.Unlock()
	if first {
		lc.s.sendWindow(lc, w, false)
	}
}

// credit returns how many bytes the peer's window lets this connection
// send now (at most MaxPayload; 0 when the window is closed or the
// connection aborted). A peer that never announced a window does not limit.
func (lc *localConn) credit() int {
	most := lc.s.set.MaxPayload
	lc.mu.Lock()
	defer lc.mu.Unlock()
	switch {
	case lc.aborted:
		return 0
	case !lc.windowed:
		return most
	}
	return int(min(max(lc.avail, 0), int64(most)))
}

// waitCredit waits until the peer's window lets this connection send, and
// returns how many bytes it may read now (0: the connection or the session
// ended meanwhile).
func (lc *localConn) waitCredit() int {
	for {
		n := lc.credit()
		if n == 0 && lc.isAborted() || n > 0 && lc.s.link.ready(lc) {
			return n
		}
		select {
		case <-lc.opened:
		case <-lc.s.ctx.Done():
			return 0
		}
	}
}

// reserve is how many bytes the connection may read now: within the
// peer's window and the relay's link credit, which it reserves.
func (lc *localConn) reserve(most int) int {
	c := min(lc.credit(), most)
	if c == 0 {
		return 0
	}
	n, fromLink := lc.s.link.reserve(lc, c)
	lc.linkHeld = fromLink
	return n
}

// unreserve gives back link credit a read did not use.
func (lc *localConn) unreserve(n int) {
	if lc.linkHeld {
		lc.linkHeld = false
		lc.s.link.unused(lc, n)
	}
}

// spent counts n bytes read from the socket against the peer's window.
func (lc *localConn) spent(n int) {
	lc.mu.Lock()
	lc.sent += int64(n)
	lc.avail -= int64(n)
	lc.mu.Unlock()
}

// addCredit takes a window update from the peer: the first turns windows
// on for this connection (what was sent before it counts against it).
func (lc *localConn) addCredit(inc uint32) {
	lc.mu.Lock()
	if !lc.windowed {
		lc.windowed = true
		lc.avail = -lc.sent
	}
	lc.avail += int64(inc)
	lc.mu.Unlock()
	wake(lc.opened)
}

// consumed counts n bytes written to the local socket and, every half
// window, tells the peer it may send that much more. mayWait is false on
// the tunnel reader, which must never wait on the writer: the update is
// then queued past the send queue's bounds (there are at most a few per
// connection in flight, since the peer sends no more than its window).
func (lc *localConn) consumed(n int, mayWait bool) {
	if lc.s.set.Window < 0 || n == 0 {
		return
	}
	lc.mu.Lock()
	lc.unacked += n
	inc := 0
	if lc.announced && lc.unacked >= lc.s.set.Window/2 {
		inc, lc.unacked = lc.unacked, 0
	}
	lc.mu.Unlock()
	if inc > 0 {
		lc.s.sendWindow(lc, inc, mayWait)
	}
}

// peerReset handles the peer's end of the connection.
func (lc *localConn) peerReset() {
	if lc.fmt.conn {
		lc.mu.Lock()
		again := lc.peerEnded
		lc.peerEnded = true
		lc.mu.Unlock()
		if again {
			// The peer's application is gone: stop reading and sending.
			lc.log.Debug("peer's connection is gone; closing")
			lc.abort(true)
			return
		}
		lc.log.Debug("peer closed its side")
		lc.in.finish(statePeerEOF)
		return
	}
	lc.streamReset()
}

// streamReset ends the connection after writing what already arrived,
// without announcing it: the peer ended the stream. A V3 connection ends
// with its own CONNECTION_RESETs, so a STREAM_RESET means it was cut off
// (the other local proxy's WebSocket was lost, or the relay refused it):
// its socket is then closed with a TCP reset. V1/V2 streams end that way
// normally, with a FIN.
func (lc *localConn) streamReset() {
	lc.mu.Lock()
	lc.silent = true
	if lc.fmt.conn {
		lc.hard = true
	}
	dialing := lc.nc == nil
	lc.mu.Unlock()
	if dialing {
		lc.abort(true)
		return
	}
	lc.in.finish(stateDrainClose)
}

// Inbox states.
const (
	stateOpen       = iota
	statePeerEOF    // drain, then shut down the socket's write side
	stateDrainClose // drain, then close the socket
	stateAborted    // drop everything
)

var (
	errStalled   = errors.New("local socket stalled")
	errQueueDone = errors.New("connection is closing")
)

// inbox is a connection's queue from the tunnel to its socket, bounded in
// payload bytes: what a window promises a peer. Frames sit in buffers of
// their size class, so the memory is at most a few times that.
type inbox struct {
	max   int
	ready chan struct{} // wakes the writer
	space chan struct{} // wakes a waiting pusher

	mu     sync.Mutex
	frames []*framepool.Buf
	n      int // payload bytes queued, including those being written
	state  int
}

func newInbox(max int) *inbox {
	return &inbox{max: max, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push queues f, waiting up to stall for room. One frame is always
// accepted into an empty queue, so the bound is max plus one frame.
func (q *inbox) push(ctx context.Context, f *framepool.Buf, stall time.Duration) error {
	var timer *time.Timer
	for {
		q.mu.Lock()
		if q.state != stateOpen {
			q.mu.Unlock()
			return errQueueDone
		}
		if q.n == 0 || q.n+len(f.Payload) <= q.max {
			q.frames = append(q.frames, f)
			q.n += len(f.Payload)
			q.mu.Unlock()
			wake(q.ready)
			return nil
		}
		q.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(stall)
			defer timer.Stop()
		}
		select {
		case <-q.space:
		case <-timer.C:
			return errStalled
		case <-ctx.Done():
			return errQueueDone
		}
	}
}

// idle reports whether nothing is queued or being written and the queue is
// open: the socket's write side is free.
func (q *inbox) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n == 0 && q.state == stateOpen
}

// take waits for queued frames, which it appends to dst, or a final state.
func (q *inbox) take(dst []*framepool.Buf) ([]*framepool.Buf, int) {
	for {
		q.mu.Lock()
		if q.state == stateAborted {
			q.mu.Unlock()
			return dst, stateAborted
		}
		if len(q.frames) > 0 {
			dst = append(dst, q.frames...)
			clear(q.frames)
			q.frames = q.frames[:0]
			q.mu.Unlock()
			return dst, stateOpen
		}
		state := q.state
		q.mu.Unlock()
		if state != stateOpen {
			return dst, state
		}
		<-q.ready
	}
}

// release frees written frames.
func (q *inbox) release(frames []*framepool.Buf) {
	n := 0
	for i, f := range frames {
		n += len(f.Payload)
		f.Free()
		frames[i] = nil
	}
	q.mu.Lock()
	q.n -= n
	q.mu.Unlock()
	wake(q.space)
}

// finish sets a draining end state (the first one wins).
func (q *inbox) finish(state int) {
	q.mu.Lock()
	if q.state == stateOpen {
		q.state = state
	}
	q.mu.Unlock()
	wake(q.ready)
}

// abort drops what is queued. Frames being written are released by the
// writer.
func (q *inbox) abort() {
	q.mu.Lock()
	q.state = stateAborted
	for _, f := range q.frames {
		q.n -= len(f.Payload)
		f.Free()
	}
	clear(q.frames)
	q.frames = nil
	q.mu.Unlock()
	wake(q.ready)
	wake(q.space)
}
