package relay

import (
	"net/http"
	"sync/atomic"
)

// Why a relay ended a peer's connection: the texts of stop's reasons, which
// the log shows, and the names the relay's statistics count them by.
const (
	reasonReplaced     = "replaced by a new connection"
	reasonShutdown     = "relay is shutting down"
	reasonTunnelClosed = "tunnel closed"
	reasonRotated      = "access token rotated"
	reasonViolation    = "protocol violation" // the violation's own text is logged
)

// DisconnectReasons are the names, in Stats.Disconnects' order, of why peers' connections
// ended: the other end closed it or the network failed (connection_ended), a
// protocol violation, a newer connection of the same side, the tunnel closed
// (close-tunnel, its lifetime, its account deleted), its access token rotated,
// or the relay shut down.
func DisconnectReasons() [numReasons]string {
	return [...]string{"connection_ended", "protocol_violation", "replaced", "tunnel_closed", "token_rotated", "shutdown"}
}

const numReasons = 6

func disconnectIndex(reason string) int {
	switch reason {
	case reasonViolation:
		return 1
	case reasonReplaced:
		return 2
	case reasonTunnelClosed:
		return 3
	case reasonRotated:
		return 4
	case reasonShutdown:
		return 5
	}
	return 0
}

// HandshakeResults are the names, in Stats.Handshakes' order, of how the relay answered
// local proxies' handshakes: admitted (ok), or refused with 400 (a malformed
// upgrade), 431 (a head too large), 401 (no access token, or none that
// matches), 403 (a token of the other mode), 409 (a spent token, a wrong
// client token, a tunnel without destination), 410 (a closed tunnel), 429
// (the address's failures are throttled), 503 (shutting down), 500 (a
// server fault), or an upgrade that failed after admission.
func HandshakeResults() [numResults]string {
	return [...]string{"ok", "bad_request", "too_large", "unauthorized", "forbidden", "conflict", "gone", "throttled", "unavailable", "error", "upgrade_failed"}
}

const (
	numResults          = 11
	resultOK            = 0
	resultUpgradeFailed = numResults - 1
)

func resultOf(status int) int {
	switch status {
	case http.StatusBadRequest:
		return 1
	case http.StatusRequestHeaderFieldsTooLarge:
		return 2
	case http.StatusUnauthorized:
		return 3
	case http.StatusForbidden:
		return 4
	case http.StatusConflict:
		return 5
	case http.StatusGone:
		return 6
	case http.StatusTooManyRequests:
		return 7
	case http.StatusServiceUnavailable:
		return 8
	}
	return 9
}

// counters count what the relay does, drops and refuses; atomics, read by
// Stats for metrics. The data path adds to them once per frame and keeps
// no other state for them.
type counters struct {
	forwardedFrames [2]atomic.Int64 // by sending side
	forwardedBytes  [2]atomic.Int64 // tunnel frames as written to the receiver
	droppedFrames   atomic.Int64    // frames for an absent peer
	droppedBytes    atomic.Int64
	peersEnded      atomic.Int64 // connections fully cleaned up after
	refusedStarts   atomic.Int64 // starts past the tunnel's connection limit
	throttled       atomic.Int64 // handshakes refused for their address's failures
	handshakes      [numResults]atomic.Int64
	disconnects     [numReasons]atomic.Int64
}

func (c *counters) forwarded(from side, n int) {
	c.forwardedFrames[from].Add(1)
	c.forwardedBytes[from].Add(int64(n))
}

func (c *counters) handshake(result int)       { c.handshakes[result].Add(1) }
func (c *counters) disconnected(reason string) { c.disconnects[disconnectIndex(reason)].Add(1) }

// Stats is a snapshot of the relay's counters (totals since it started)
// and of its live connections. Index 0 of the per-direction arrays is
// source to destination, 1 destination to source.
type Stats struct {
	ForwardedFrames [2]int64
	ForwardedBytes  [2]int64 // tunnel frames, payload and framing
	// DroppedFrames arrived for a peer that was not connected (or left
	// while they waited); RefusedStarts were connection starts past the
	// tunnel's limit, answered with a reset.
	DroppedFrames, DroppedBytes, RefusedStarts int64
	Handshakes                                 [numResults]int64
	Disconnects                                [numReasons]int64

	// Peers is the connected local proxies, [source, destination].
	Peers [2]int
	// Connections is the TCP connections (streams, or connections of a
	// stream) the tunnels carry, as the relay follows their starts and
	// resets; it follows them only under a connection limit
	// (Config.MaxConnections), and ConnectionsCounted says so.
	Connections        int
	ConnectionsCounted bool
}

// Stats returns the relay's statistics. It walks the live tunnels, so it
// suits a metrics scrape, not a data path.
func (r *Relay) Stats() Stats {
	var s Stats
	c := &r.stats
	for i := range 2 {
		s.ForwardedFrames[i] = c.forwardedFrames[i].Load()
		s.ForwardedBytes[i] = c.forwardedBytes[i].Load()
	}
	s.DroppedFrames, s.DroppedBytes = c.droppedFrames.Load(), c.droppedBytes.Load()
	s.RefusedStarts = c.refusedStarts.Load()
	for i := range c.handshakes {
		s.Handshakes[i] = c.handshakes[i].Load()
	}
	for i := range c.disconnects {
		s.Disconnects[i] = c.disconnects[i].Load()
	}
	s.ConnectionsCounted = r.maxConns > 0
	r.mu.Lock()
	states := make([]*tunnelState, 0, len(r.tunnels))
	for _, ts := range r.tunnels {
		states = append(states, ts)
	}
	r.mu.Unlock()
	for _, ts := range states {
		ts.mu.Lock()
		for sd, p := range ts.peers {
			if p != nil {
				s.Peers[sd]++
			}
		}
		s.Connections += ts.live
		ts.mu.Unlock()
	}
	return s
}
