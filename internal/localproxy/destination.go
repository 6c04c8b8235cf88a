package localproxy

import (
	"net"

	"github.com/warrentunnel/warren/internal/wire"
)

// peerFormat is the format to answer a start message in: what the peer
// used, capped by our own protocol. A STREAM_START without connection id
// comes from a V2 peer, one without service id from a V1 peer.
func (s *session) peerFormat(m *wire.Message) frameFormat {
	f := formatFor(s.proto)
	return frameFormat{svc: f.svc && m.ServiceID != "", conn: f.conn && m.ConnectionID != 0}
}

// onStreamStart begins a new stream for a service: connections of its
// previous stream are stale and closed, and the first connection is dialed.
// A repeated stream id is a new stream too (a source that reconnected
// numbers its streams from 1 again).
func (s *session) onStreamStart(m *wire.Message) {
	if m.StreamID == 0 {
		s.log.Warn("STREAM_START without stream id ignored", "service", m.ServiceID)
		return
	}
	f := s.peerFormat(m)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	svc, st := s.serviceOf(m.ServiceID)
	if st == nil {
		s.mu.Unlock()
		s.log.Warn("STREAM_START for an unknown service; resetting it", "service", m.ServiceID, "stream", m.StreamID)
		s.sendControl(encodeFrame(wire.TypeStreamReset, m.StreamID, m.ServiceID, 0, f))
		return
	}
	if !f.conn && formatFor(s.proto).conn {
		s.log.Debug("peer uses the V2 message format", "service", svc)
	}
	old := st.conns
	st.id, st.fmt, st.conns = m.StreamID, f, map[uint32]*localConn{}
	lc := s.newConn(svc, st, m.ConnectionID)
	st.conns[lc.key] = lc
	s.wg.Add(1)
	s.mu.Unlock()
	for _, c := range old {
		c.abort(true)
	}
	go s.dial(lc, true)
}

// onConnectionStart adds a connection to the service's stream. If our stream
// differs (we reconnected, or the relay reset it) the source's word is taken:
// its stream is the live one.
func (s *session) onConnectionStart(m *wire.Message) {
	if m.StreamID == 0 {
		s.log.Warn("CONNECTION_START without stream id ignored", "service", m.ServiceID)
		return
	}
	f := s.peerFormat(m)
	f.conn = true
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	svc, st := s.serviceOf(m.ServiceID)
	if st == nil {
		s.mu.Unlock()
		s.log.Warn("CONNECTION_START for an unknown service; resetting it", "service", m.ServiceID, "stream", m.StreamID, "conn", m.ConnectionID)
		s.sendControl(encodeFrame(wire.TypeConnectionReset, m.StreamID, m.ServiceID, m.ConnectionID, f))
		return
	}
	var old []*localConn
	if st.id != m.StreamID {
		for _, c := range st.conns {
			old = append(old, c)
		}
		st.id, st.fmt, st.conns = m.StreamID, f, map[uint32]*localConn{}
	}
	key := st.key(m.ConnectionID)
	if prev := st.conns[key]; prev != nil {
		old = append(old, prev) // a repeated id replaces the old connection
	}
	if len(st.conns)-len(old) >= s.set.MaxActiveConnections {
		s.mu.Unlock()
		s.log.Warn("too many connections; resetting a new one", "service", svc, "max", s.set.MaxActiveConnections)
		s.sendControl(encodeFrame(wire.TypeConnectionReset, m.StreamID, m.ServiceID, m.ConnectionID, f))
		return
	}
	lc := s.newConn(svc, st, m.ConnectionID)
	st.conns[key] = lc
	s.wg.Add(1)
	s.mu.Unlock()
	for _, c := range old {
		c.abort(true)
	}
	go s.dial(lc, false)
}

// The tunnel reader queues its answers (resets of starts it refuses) with
// sendControl and may wait for room in the control queue. That cannot close
// a wait cycle through the relay: the source's reader never waits on its own
// writer (it only waits, for a bounded time, on its local sockets), and the
// control queue holds far more frames than a source has starts in flight.

// dial connects a destination connection to its target without holding up
// the tunnel reader; DATA that arrives meanwhile waits in the connection's
// queue. On failure the source is told promptly: STREAM_RESET when the
// stream's first connection failed, CONNECTION_RESET otherwise.
func (s *session) dial(lc *localConn, streamStart bool) {
	defer s.wg.Done()
	network, addr, err := s.e.target(lc.service)
	var nc net.Conn
	if err == nil {
		nc, err = s.dialTarget(lc, network, addr)
	}
	if err != nil {
		if s.ctx.Err() != nil || lc.isSilent() {
			lc.abort(true)
			return
		}
		lc.log.Warn("cannot connect to the target", "addr", addr, "err", err)
		if streamStart {
			s.failStream(lc)
		} else {
			s.failConn(lc)
		}
		return
	}
	setNoDelay(nc)
	lc.log.Info("connected to the target", "addr", addr)
	lc.start(nc)
}

// dialTarget connects, retrying as the settings say.
func (s *session) dialTarget(lc *localConn, network, addr string) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		d := net.Dialer{Timeout: s.set.DialTimeout}
		nc, err := d.DialContext(s.ctx, network, addr)
		if err == nil {
			return nc, nil
		}
		if s.ctx.Err() != nil || lc.isAborted() || (s.set.DialRetries >= 0 && attempt >= s.set.DialRetries) {
			return nil, err
		}
		lc.log.Info("cannot connect to the target; retrying", "addr", addr, "err", err, "in", s.set.DialRetryDelay)
		if !sleep(s.ctx, s.set.DialRetryDelay) {
			return nil, err
		}
	}
}

func (lc *localConn) isSilent() bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.silent
}

// failStream resets the stream whose first connection could not be made,
// closing the connections that joined it meanwhile.
func (s *session) failStream(lc *localConn) {
	s.mu.Lock()
	st := s.streams[lc.service]
	var conns map[uint32]*localConn
	if st != nil && st.id == lc.streamID {
		conns = st.conns
		st.id, st.conns = 0, map[uint32]*localConn{}
	}
	s.mu.Unlock()
	lc.abort(true)
	for _, c := range conns {
		c.abort(true)
	}
	if conns != nil {
		s.sendControl(lc.frame(wire.TypeStreamReset))
	}
}

// failConn resets one connection that could not be made.
func (s *session) failConn(lc *localConn) {
	s.forget(lc)
	lc.abort(true)
	s.sendControl(lc.resetFrame())
}
