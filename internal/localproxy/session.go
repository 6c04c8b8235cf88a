package localproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/warrentunnel/warren/internal/fairq"
	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/wire"
	"github.com/warrentunnel/warren/internal/wsbatch"
)

const (
	// writeTimeout bounds one write to the relay; a relay that takes longer
	// to accept a frame is treated as gone and we reconnect.
	writeTimeout = 30 * time.Second
)

// sendQueue bounds the frames waiting for the WebSocket writer: the memory
// all connections' DATA may hold, one connection's share of it, and the
// control frames (starts and resets) that may wait. Local readers block when
// their share or the whole is used: backpressure onto the local sockets.
var sendQueue = fairq.Config{
	Budget:  16 * framepool.LargeSize,
	FlowMax: 2 * framepool.LargeSize,
	Control: 1024,
}

// smallFrame is the largest frame the writer copies into a message it
// shares with other frames; larger ones are messages of their own.
const smallFrame = 16 << 10

var errTextMessage = errors.New("relay sent a text message; the protocol is binary only")

// session is one WebSocket connection to the relay and the local
// connections that live on it. It ends when the WebSocket does; its local
// connections cannot outlive it.
type session struct {
	e     *engine
	ws    *websocket.Conn
	log   *slog.Logger
	proto Protocol
	set   Settings

	ctx    context.Context
	cancel context.CancelCauseFunc
	q      *fairq.Queue // frames for the writer goroutine
	link   link         // the relay's link credit

	mu      sync.Mutex
	closing bool
	streams map[string]*stream // by service id of the mapping
	// closedBy is set by the close handler, which runs on the reader
	// goroutine, and read there.
	closedBy error
	wg       sync.WaitGroup // local connection and dial goroutines
}

// stream is a service's current stream on this session.
type stream struct {
	id    int32 // 0: none
	fmt   frameFormat
	conns map[uint32]*localConn // by connection id; 0 for V1/V2 streams
}

// key is the map key of a connection id in this stream: V3 treats id 0 as 1,
// V1/V2 streams have a single connection keyed 0.
func (st *stream) key(connID uint32) uint32 {
	if !st.fmt.conn {
		return 0
	}
	if connID == 0 {
		return 1
	}
	return connID
}

func newSession(e *engine, ws *websocket.Conn, proto Protocol) *session {
	return &session{
		e:       e,
		ws:      ws,
		log:     e.log,
		proto:   proto,
		set:     e.cfg.Settings,
		q:       fairq.New(sendQueue),
		streams: map[string]*stream{},
	}
}

// run serves the session until the WebSocket fails, the relay closes it, a
// fatal configuration error, or ctx is done.
func (s *session) run(ctx context.Context, subprotocol string) error {
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	s.ws.SetReadLimit(wire.MaxWebSocketMessage)
	s.ws.SetPingHandler(func(data string) error {
		s.alive()
		// One pong echoing the payload (the official proxy sends two).
		// Bounded wait: this runs on the reader goroutine.
		err := s.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
		if err != nil {
			s.log.Debug("pong not sent", "err", err)
		}
		return nil
	})
	// A WebSocket that went silent (the relay's host vanished, or a
	// middlebox stopped forwarding without closing) is noticed by its read
	// deadline: anything from the relay, a pong to our pings included,
	// moves it on.
	s.alive()
	s.ws.SetPongHandler(func(data string) error {
		s.alive()
		if ms, err := strconv.ParseInt(data, 10, 64); err == nil {
			s.log.Log(s.ctx, LevelTrace, "pong", "latency_ms", time.Now().UnixMilli()-ms)
		} else {
			s.log.Debug("unsolicited pong ignored", "payload", data)
		}
		return nil
	})

	s.ws.SetCloseHandler(func(code int, text string) error {
		// A close frame ends the tunnel for good (a dropped connection, which
		// gorilla also reports as a CloseError with code 1006, does not).
		s.closedBy = fmt.Errorf("%w (code %d %q)", ErrTunnelClosed, code, text)
		msg := websocket.FormatCloseMessage(code, "")
		_ = s.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		return nil
	})

	var loops sync.WaitGroup
	readDone := make(chan error, 1)
	loops.Add(3)
	go func() { defer loops.Done(); s.writeLoop() }()
	go func() { defer loops.Done(); s.pingLoop() }()
	go func() { defer loops.Done(); readDone <- s.readLoop(subprotocol) }()

	var err error
	select {
	case err = <-readDone:
	case <-s.ctx.Done():
		err = context.Cause(s.ctx)
	}
	s.cancel(err)
	s.q.Close()
	s.e.deactivate(s)
	s.shutdown()
	if ctx.Err() != nil {
		// We are stopping: say so rather than vanish.
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = s.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	}
	s.ws.Close()
	loops.Wait()
	return err
}

// shutdown closes every local connection (they cannot survive the
// WebSocket) and waits for their goroutines.
func (s *session) shutdown() {
	s.mu.Lock()
	s.closing = true
	var all []*localConn
	for _, st := range s.streams {
		for _, c := range st.conns {
			all = append(all, c)
		}
		st.conns = map[uint32]*localConn{}
		st.id = 0
	}
	s.mu.Unlock()
	for _, c := range all {
		c.lost()
	}
	s.wg.Wait()
}

// sendData queues a connection's DATA frame for the relay, waiting for
// room, and writes what waits if nobody else is writing; false if the
// session is over (f is then freed). scratch is the caller's batch buffer.
func (s *session) sendData(flow uint64, f *framepool.Buf, scratch *[]*framepool.Buf) bool {
	if err := s.q.Push(s.ctx, flow, f); err != nil {
		f.Free()
		return false
	}
	s.flush(scratch)
	return true
}

// sendControl queues a frame other than DATA for the relay, after every
// frame queued before it; false if the session is over (f is then freed).
func (s *session) sendControl(f *framepool.Buf) bool {
	if err := s.q.PushControlWait(s.ctx, f); err != nil {
		f.Free()
		return false
	}
	s.flush(nil)
	return true
}

// sendWindow queues a window update for lc; only a caller that may wait on
// the writer (not the tunnel reader) writes it at once.
func (s *session) sendWindow(lc *localConn, inc int, mayWait bool) {
	f := lc.windowFrame(inc)
	if err := s.q.PushNoWait(lc.flow, f); err != nil {
		f.Free()
		return
	}
	if mayWait {
		s.flush(nil)
	}
}

// flush writes what waits in the send queue from the calling goroutine,
// unless the writer (or another flush) is writing: a frame that finds the
// WebSocket idle leaves at once, without a goroutine switch.
func (s *session) flush(scratch *[]*framepool.Buf) {
	var batch []*framepool.Buf
	if scratch != nil {
		batch = (*scratch)[:0]
	}
	batch, ok := s.q.TakeIfIdle(batch, wsbatch.MaxMessage)
	if ok {
		s.write(batch)
	}
	if scratch != nil {
		*scratch = batch[:0]
	}
}

// write writes a batch taken from the send queue and releases it.
func (s *session) write(batch []*framepool.Buf) bool {
	_ = s.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	err := wsbatch.Write(s.ws, batch, smallFrame)
	s.q.Release(batch)
	if err != nil {
		s.cancel(fmt.Errorf("write to relay: %w", err))
		return false
	}
	return true
}

// writeLoop is the only writer of data messages. It takes frames from the
// send queue, fairly between connections, and writes them: each large frame
// as a message of its own, as the official proxy sends them, and runs of
// small ones together.
func (s *session) writeLoop() {
	var batch []*framepool.Buf
	for {
		var err error
		batch, err = s.q.Take(s.ctx, batch[:0], wsbatch.MaxMessage)
		if err != nil || !s.write(batch) {
			return
		}
	}
}

// pingLoop pings right away and then every ping period; the payload is the
// Unix time in milliseconds as ASCII digits, which relays echo in the pong.
func (s *session) pingLoop() {
	ping := func() bool {
		payload := strconv.AppendInt(nil, time.Now().UnixMilli(), 10)
		if err := s.ws.WriteControl(websocket.PingMessage, payload, time.Now().Add(writeTimeout)); err != nil {
			s.cancel(fmt.Errorf("ping relay: %w", err))
			return false
		}
		return true
	}
	if !ping() {
		return
	}
	t := time.NewTicker(s.set.PingPeriod)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if !ping() {
				return
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// alive moves the WebSocket's read deadline to SilenceLimit from now.
// The relay answers each ping at once and pings go out every ping period,
// so a live relay is never silent for longer than a period and a round
// trip; a connection silent for SilenceLimit is taken for dead, its local
// connections are reset and the proxy reconnects.
func (s *session) alive() {
	_ = s.ws.SetReadDeadline(time.Now().Add(s.set.SilenceLimit()))
}

// messageStream reads the binary WebSocket messages as one byte stream:
// tunnel frames may span messages.
type messageStream struct {
	s *session
	r io.Reader
}

func (m *messageStream) Read(p []byte) (int, error) {
	for {
		if m.r == nil {
			m.s.alive()
			typ, r, err := m.s.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errTextMessage
			}
			m.r = r
		}
		n, err := m.r.Read(p)
		if err == io.EOF {
			m.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// readLoop reads tunnel frames until the WebSocket fails. Nothing but
// SERVICE_IDS is acted on before SERVICE_IDS arrived, except on a V1 relay
// (subprotocol 1.0), which has no service ids.
func (s *session) readLoop(subprotocol string) error {
	in := &messageStream{s: s}
	started := false
	if isV1Subprotocol(subprotocol) {
		if err := s.start(nil, false); err != nil {
			return err
		}
		started = true
	}
	var m wire.Message
	for {
		f, err := framepool.ReadFrame(in, &m)
		if err != nil {
			if f != nil {
				s.log.Error("dropped a tunnel frame that does not decode", "err", err, "bytes", len(f.B))
				f.Free()
				continue
			}
			if s.closedBy != nil {
				return s.closedBy
			}
			return fmt.Errorf("read from relay: %w", err)
		}
		if !started {
			f.Free()
			if m.Type != wire.TypeServiceIDs {
				s.log.Debug("ignoring a frame that came before SERVICE_IDS", "type", m.Type)
				continue
			}
			if err := s.start(m.AvailableServiceIDs, true); err != nil {
				return err
			}
			started = true
			continue
		}
		s.dispatch(f, &m)
	}
}

func isV1Subprotocol(p string) bool { return strings.HasSuffix(p, "-1.0") }

// start validates the tunnel's services and opens for business.
func (s *session) start(ids []string, haveIDs bool) error {
	var err error
	if haveIDs {
		s.log.Debug("service ids received", "ids", ids)
		err = s.e.resolve(ids)
	} else {
		err = s.e.resolveWithoutServiceIDs()
	}
	if err != nil {
		return &fatalError{err}
	}
	s.mu.Lock()
	for id := range s.e.mapping {
		s.streams[id] = &stream{conns: map[uint32]*localConn{}}
	}
	s.mu.Unlock()

	addrs := map[string]string{}
	if s.e.cfg.Mode == ModeSource {
		if addrs, err = s.e.listen(); err != nil {
			return &fatalError{err}
		}
	} else {
		for id := range s.e.mapping {
			_, addr, _ := s.e.target(id)
			addrs[id] = addr
		}
	}
	s.e.activate(s)
	s.e.ready(addrs)
	return nil
}

// serviceOf maps a frame's service id to a mapped service. Frames without
// a service id (V1 format), and every frame of a V1 session, belong to the
// only service. Call with s.mu held.
func (s *session) serviceOf(id string) (string, *stream) {
	if s.proto != V1 {
		if st, ok := s.streams[id]; ok {
			return id, st
		}
	}
	if (id == "" || s.proto == V1) && len(s.streams) == 1 {
		for k, st := range s.streams {
			return k, st
		}
	}
	return "", nil
}

// dispatch acts on a frame; f's buffer goes to the connection for DATA and
// back to the pool otherwise.
func (s *session) dispatch(f *framepool.Buf, m *wire.Message) {
	if m.Type == wire.TypeData {
		s.onData(f, m)
		return
	}
	defer f.Free()
	switch m.Type {
	case wire.TypeStreamStart:
		if s.e.cfg.Mode == ModeSource {
			s.log.Warn("source got STREAM_START; ignored", "stream", m.StreamID, "service", m.ServiceID)
			return
		}
		s.onStreamStart(m)
	case wire.TypeConnectionStart:
		if s.e.cfg.Mode == ModeSource {
			s.log.Warn("source got CONNECTION_START; ignored", "stream", m.StreamID, "service", m.ServiceID)
			return
		}
		s.onConnectionStart(m)
	case wire.TypeStreamReset:
		s.onStreamReset(m)
	case wire.TypeConnectionReset:
		s.onConnectionReset(m)
	case wire.TypeSessionReset:
		s.log.Info("session reset by the relay; closing every connection")
		s.resetAll()
	case wire.TypeServiceIDs:
		s.log.Debug("SERVICE_IDS again; ignored", "ids", m.AvailableServiceIDs)
	case wire.TypeLinkCredit:
		if c, ok := wire.DecodeLinkCredit(m.Payload); ok {
			s.link.set(c)
		}
	case wire.TypeWindowUpdate:
		if lc := s.lookup(m); lc != nil && len(m.Payload) == 4 {
			lc.addCredit(binary.BigEndian.Uint32(m.Payload))
			lc.announceWindow() // a destination answers in kind
		}
	default:
		if !m.Ignorable {
			s.log.Warn("unknown message type ignored", "type", m.Type)
		}
	}
}

// lookup finds the connection a DATA or CONNECTION_RESET is for; nil for
// stale stream ids and unknown connections.
func (s *session) lookup(m *wire.Message) *localConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, st := s.serviceOf(m.ServiceID)
	if st == nil || st.id == 0 || st.id != m.StreamID {
		return nil
	}
	return st.conns[st.key(m.ConnectionID)]
}

func (s *session) onData(f *framepool.Buf, m *wire.Message) {
	lc := s.lookup(m)
	if lc == nil {
		s.log.Log(s.ctx, LevelTrace, "DATA for no live connection dropped", "service", m.ServiceID, "stream", m.StreamID, "conn", m.ConnectionID)
		f.Free()
		return
	}
	lc.deliver(f)
}

func (s *session) onConnectionReset(m *wire.Message) {
	lc := s.lookup(m)
	if lc == nil {
		s.log.Debug("CONNECTION_RESET for no live connection", "service", m.ServiceID, "stream", m.StreamID, "conn", m.ConnectionID)
		return
	}
	lc.peerReset()
}

// onStreamReset closes every connection of the stream after writing what
// already arrived for them; the next connection starts a new stream.
func (s *session) onStreamReset(m *wire.Message) {
	s.mu.Lock()
	svc, st := s.serviceOf(m.ServiceID)
	if st == nil || st.id == 0 || st.id != m.StreamID {
		s.mu.Unlock()
		s.log.Debug("stale STREAM_RESET ignored", "service", m.ServiceID, "stream", m.StreamID)
		return
	}
	conns := st.conns
	st.id, st.conns = 0, map[uint32]*localConn{}
	s.mu.Unlock()
	s.log.Debug("stream reset by peer", "service", svc, "stream", m.StreamID, "connections", len(conns))
	for _, c := range conns {
		c.streamReset()
	}
}

func (s *session) resetAll() {
	s.mu.Lock()
	var all []*localConn
	for _, st := range s.streams {
		for _, c := range st.conns {
			all = append(all, c)
		}
		st.id, st.conns = 0, map[uint32]*localConn{}
	}
	s.mu.Unlock()
	for _, c := range all {
		c.streamReset()
	}
}

// forget removes a finished connection from its stream.
func (s *session) forget(lc *localConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[lc.service]; st != nil && st.conns[lc.key] == lc {
		delete(st.conns, lc.key)
	}
}

func (e *engine) activate(s *session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.ctx.Err() == nil {
		e.cur = s
	}
}

func (e *engine) deactivate(s *session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == s {
		e.cur = nil
	}
}
