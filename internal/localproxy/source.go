package localproxy

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/warrentunnel/warren/internal/wire"
)

// listen opens the source listeners once, after the first SERVICE_IDS; they
// stay open across reconnects. It returns service id -> listen address.
func (e *engine) listen() (map[string]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	addrs := map[string]string{}
	if e.listeners != nil {
		for _, l := range e.listeners {
			addrs[l.service] = l.Addr().String()
		}
		return addrs, nil
	}
	var opened []serviceListener
	for svc, ep := range e.mapping {
		addr := e.listenAddr(ep)
		// net.Listen uses the system's normal backlog (the official proxy
		// listens with a backlog of 0, which drops simultaneous connects).
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range opened {
				l.Close()
			}
			return nil, fmt.Errorf("listen for service %q on %s: %w", svc, addr, err)
		}
		e.log.Info("listening", "service", svc, "addr", ln.Addr().String())
		opened = append(opened, serviceListener{Listener: ln, service: svc})
		addrs[svc] = ln.Addr().String()
	}
	e.listeners = opened
	for _, l := range opened {
		e.acceptWG.Add(1)
		go e.acceptLoop(l)
	}
	return addrs, nil
}

type serviceListener struct {
	net.Listener
	service string
}

func (e *engine) closeListeners() {
	e.mu.Lock()
	for _, l := range e.listeners {
		l.Close()
	}
	e.mu.Unlock()
	e.acceptWG.Wait()
}

func (e *engine) acceptLoop(l serviceListener) {
	defer e.acceptWG.Done()
	for {
		nc, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: slow down rather than spin.
			e.log.Warn("accept failed", "service", l.service, "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		setNoDelay(nc)
		s := e.session()
		if s == nil {
			e.log.Warn("not connected to the relay; refusing a local connection", "service", l.service, "from", nc.RemoteAddr().String())
			resetOnClose(nc)
			nc.Close()
			continue
		}
		s.openSource(nc, l.service)
	}
}

func setNoDelay(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}

// openSource starts carrying an accepted connection. In V3 the service's
// first connection starts a stream and later ones join it with fresh
// connection ids; in V1/V2 every connection is a stream of its own, which
// replaces the previous one (those peers carry one connection at a time).
func (s *session) openSource(nc net.Conn, svc string) {
	// Room for the start frame is booked before the session lock is taken:
	// nothing waits while holding it.
	if err := s.q.ReserveControl(s.ctx); err != nil {
		nc.Close()
		return
	}
	s.mu.Lock()
	st := s.streams[svc]
	if s.closing || st == nil {
		s.mu.Unlock()
		s.q.Unreserve()
		nc.Close()
		return
	}
	if len(st.conns) >= s.set.MaxActiveConnections {
		s.mu.Unlock()
		s.q.Unreserve()
		s.log.Warn("too many connections; refusing a local connection", "service", svc, "max", s.set.MaxActiveConnections)
		nc.Close()
		return
	}
	var (
		typ    = wire.TypeStreamStart
		connID uint32
		old    []*localConn
	)
	if s.proto >= V3 {
		connID = s.e.nextConnID(svc)
		if st.id == 0 {
			st.id, st.fmt = s.e.nextStreamID(svc), formatFor(V3)
		} else {
			typ = wire.TypeConnectionStart
		}
	} else {
		for _, c := range st.conns {
			old = append(old, c)
		}
		st.id, st.fmt, st.conns = s.e.nextStreamID(svc), formatFor(s.proto), map[uint32]*localConn{}
	}
	lc := s.newConn(svc, st, connID)
	st.conns[lc.key] = lc
	s.wg.Add(1) // held until the goroutines are running
	// Queued under s.mu so that start frames leave in the order connections
	// were accepted (a CONNECTION_START never overtakes its STREAM_START);
	// the booked slot makes this never wait.
	s.q.PushControl(lc.frame(typ))
	lc.announceWindow()
	s.mu.Unlock()
	defer s.wg.Done()

	if len(old) > 0 {
		s.log.Warn("a "+s.proto.String()+" peer carries one connection per service at a time; closing the previous one", "service", svc)
		for _, c := range old {
			c.abort(true)
		}
	}
	lc.log.Info("accepted local connection", "from", nc.RemoteAddr().String(), "start", typ)
	lc.start(nc)
}
