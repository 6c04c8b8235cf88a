// Package relay is Warren's data plane: the WebSocket endpoint (/tunnel) that
// admits a tunnel's source and destination local proxies, pairs them and
// forwards their tunnel frames, enforcing the protocol's rules and limits.
// It owns the live connections and their goroutines and per-tunnel stream
// bookkeeping (to reset a peer's streams when the other end goes away). It
// does not own tunnels: it reads and updates them through Store, the token
// rules are tunnel.Admit's, and tunnels whose lifetime ends are closed by
// the expiry sweeper, which disconnects their peers with CloseTunnel. In a
// cluster (Config.Nodes) a tunnel's other peer may be on another node: the
// relay then exchanges the tunnel's frames with that node's relay over
// their node link (nodes.go).
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/warrentunnel/warren/internal/bandwidth"
	"github.com/warrentunnel/warren/internal/fairq"
	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/nodelink"
	"github.com/warrentunnel/warren/internal/ratelimit"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// Store is what the relay needs of the store; *store.Store satisfies it.
type Store interface {
	TunnelByToken(ctx context.Context, tokenHash []byte) (tunnel.Tunnel, tunnel.Mode, error)
	UpdateTunnel(ctx context.Context, id string, fn func(*tunnel.Tunnel) error) (tunnel.Tunnel, error)
}

// Config configures a Relay. Only Store is required.
type Config struct {
	Store  Store
	Logger *slog.Logger     // nil discards logs
	Now    func() time.Time // nil is time.Now
	// SendQueueBytes is how much memory frames waiting for a peer's writer
	// may hold before the other peer's reader blocks (and with it, through
	// TCP, that peer).
	SendQueueBytes int
	// Bandwidth paces each account's DATA to its limit; nil forwards
	// without limit.
	Bandwidth *bandwidth.Limiter

	// MaxConnections is how many TCP connections a tunnel may carry at
	// once: a STREAM_START or CONNECTION_START past it is not forwarded
	// but answered with its reset, so the source closes that client's
	// socket. 0: no limit.
	MaxConnections int
	// HandshakeFailureRate and HandshakeFailureBurst are each client
	// address's token bucket of failed handshakes (an unknown access token,
	// a wrong client token): failures per second, and how many may come at
	// once. While an address's bucket is empty its handshakes get 429
	// before their token is looked up, so tokens cannot be guessed at
	// speed. The address is the connection's (RemoteAddr), never a header.
	// HandshakeFailureRate 0: no limit; a burst below 1 counts as 1.
	HandshakeFailureRate  float64
	HandshakeFailureBurst int

	// PeerSilence is how long a peer may send nothing at all (no frame,
	// no ping) before the relay drops it as gone. Local proxies ping every
	// 20 s by default (Warren's and the official one). 0 is
	// DefaultPeerSilence; negative: never.
	PeerSilence time.Duration

	// Nodes, in a cluster, reaches the other nodes (nodes.go); nil: this
	// is the only node.
	Nodes Nodes
}

// DefaultPeerSilence is Config.PeerSilence's default: six of the local
// proxies' default ping periods.
const DefaultPeerSilence = 2 * time.Minute

// DefaultSendQueueBytes is Config.SendQueueBytes's default: four of the
// largest frames, enough to keep the writer busy while the reader reads.
const DefaultSendQueueBytes = 4 * framepool.LargeSize

// controlQueue is how many frames other than DATA may wait for a peer's
// writer; each holds a small buffer.
const controlQueue = 64

// Timeouts of the relay's own I/O. They are generous: the official proxy
// stops reading its WebSocket for 12.5 s while it retries a refused target.
const (
	writeTimeout     = 60 * time.Second // one WebSocket message or control frame
	closeTimeout     = 5 * time.Second  // the close frame of a closed tunnel
	handshakeTimeout = 10 * time.Second // writing the 101
	storeTimeout     = 10 * time.Second // bookkeeping writes after a disconnect
)

// readBufferSize is each peer's WebSocket read buffer: an idle peer keeps it.
const readBufferSize = 1 << 10

// writeBufferSize is the size of the WebSocket write buffers, which are
// pooled: a peer holds one only while it writes a message. A WebSocket
// frame header and a full buffer fill one TLS record exactly; larger frames
// are written from their own buffers, copied only up to this size.
const writeBufferSize = 16<<10 - 14

// Relay is the WebSocket endpoint of the data plane. It is an http.Handler.
type Relay struct {
	store    Store
	log      *slog.Logger
	now      func() time.Time
	queue    fairq.Config
	bw       *bandwidth.Limiter
	upgrader websocket.Upgrader

	maxConns     int
	silence      time.Duration // 0: no limit
	failureRate  float64
	failureBurst int
	failures     *ratelimit.Buckets // by client address; nil: no limit
	nodes        Nodes              // nil: one node
	self         string             // this node's id; "" without nodes

	mu      sync.Mutex
	closed  bool
	tunnels map[string]*tunnelState // tunnels with peers or handshakes under way

	wg sync.WaitGroup // every goroutine the relay runs or runs in

	stats counters
}

// New returns a Relay.
func New(cfg Config) *Relay {
	r := &Relay{
		store:   cfg.Store,
		log:     cfg.Logger,
		now:     cfg.Now,
		queue:   fairq.Config{Budget: cfg.SendQueueBytes, FlowMax: cfg.SendQueueBytes, Control: controlQueue},
		bw:      cfg.Bandwidth,
		tunnels: map[string]*tunnelState{},

		maxConns:     max(cfg.MaxConnections, 0),
		silence:      cfg.PeerSilence,
		failureRate:  cfg.HandshakeFailureRate,
		failureBurst: max(cfg.HandshakeFailureBurst, 1),
		failures:     ratelimit.New(ratelimit.Config{Rate: cfg.HandshakeFailureRate, Burst: cfg.HandshakeFailureBurst}),
		nodes:        cfg.Nodes,
	}
	if r.nodes != nil {
		r.self = r.nodes.Self()
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.now == nil {
		r.now = time.Now
	}
	switch {
	case r.silence == 0:
		r.silence = DefaultPeerSilence
	case r.silence < 0:
		r.silence = 0
	}
	if r.queue.Budget < 1 {
		r.queue.Budget = DefaultSendQueueBytes
		r.queue.FlowMax = DefaultSendQueueBytes
	}
	r.upgrader = websocket.Upgrader{
		HandshakeTimeout: handshakeTimeout,
		// A small read buffer of its own rather than the HTTP server's 4 KiB
		// one: it holds WebSocket headers and small frames, while large
		// frames are read past it straight into their pooled buffers.
		ReadBufferSize:  readBufferSize,
		WriteBufferSize: writeBufferSize,
		WriteBufferPool: &sync.Pool{},
		// Access tokens are bearer credentials, and browser clients connect
		// from other origins (as to AWS): any Origin is accepted.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return r
}

// ServeHTTP handles a local proxy's WebSocket handshake and, once admitted,
// runs its connection until it ends.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	channelID := tunnel.RandomHex(16)
	h, err := parseHandshake(req)
	if err != nil {
		herr := reject(http.StatusBadRequest, "%s", err.Error())
		errors.As(err, &herr)
		r.reject(w, req, channelID, h.mode, herr)
		return
	}
	client := clientAddr(req.RemoteAddr)
	if r.failures.Empty(client) {
		r.stats.throttled.Add(1)
		r.reject(w, req, channelID, h.mode, reject(http.StatusTooManyRequests,
			"too many failed handshakes from your address (this server allows %d at once, then %g per second); wait, then connect with a valid access token",
			r.failureBurst, r.failureRate))
		return
	}
	if !r.enter() {
		r.reject(w, req, channelID, h.mode, reject(http.StatusServiceUnavailable, "relay is shutting down; try again later"))
		return
	}
	handedOff := false
	defer func() {
		if !handedOff {
			r.wg.Done()
		}
	}()

	t, _, err := r.store.TunnelByToken(req.Context(), tunnel.HashToken(h.token))
	if err != nil {
		herr := admissionError(err, h.mode)
		if herr.status >= 500 {
			r.log.Error("relay: find tunnel by token", "err", err)
		}
		r.countFailure(client, err)
		r.reject(w, req, channelID, h.mode, herr)
		return
	}
	ts := r.acquire(t.ID)
	if ts == nil {
		r.reject(w, req, channelID, h.mode, reject(http.StatusServiceUnavailable, "relay is shutting down; try again later"))
		return
	}
	p, err := r.admit(w, req, ts, h, channelID, client)
	switch {
	case p == nil:
		r.release(ts)
	case err != nil:
		p.end(err) // the upgrade failed; the request has been answered
		r.release(ts)
	default:
		// The peer's reader gets a goroutine of its own, and this handler
		// returns: the HTTP server's goroutine, whose stack grew for the TLS
		// handshake, and its buffers go, so an idle peer holds little.
		handedOff = true
		go func() {
			defer r.wg.Done()
			defer r.release(ts)
			p.attachRemote(p.otherNode)
			p.run()
		}()
	}
}

// reject answers a refused handshake with its status and a plain-text body.
func (r *Relay) reject(w http.ResponseWriter, req *http.Request, channelID string, mode tunnel.Mode, e *handshakeError) {
	r.stats.handshake(resultOf(e.status))
	r.log.Info("relay: handshake rejected", "status", e.status, "reason", e.msg, "mode", string(mode),
		"remote", req.RemoteAddr, "channel", channelID)
	w.Header()[channelIDHeader] = []string{channelID}
	// The connection ends with the answer: a client whose upgrade was
	// refused has no use for it, and one guessing tokens must not keep it
	// (and a server goroutine) idle until the keep-alive timeout.
	w.Header().Set("Connection", "close")
	http.Error(w, e.msg, e.status)
}

// admit applies the token rules, registers the peer and upgrades the
// connection. Handshakes for one side of a tunnel run one at a time, so that
// two cannot both be admitted and race to become that side's peer. The peer
// is registered before the 101 goes out: once a proxy sees its handshake
// succeed, frames the other peer sends are queued for it, not dropped. It
// returns nil after answering a refused request, and the registered peer
// with an error if the upgrade failed.
func (r *Relay) admit(w http.ResponseWriter, req *http.Request, ts *tunnelState, h handshake, channelID, client string) (*peer, error) {
	sd := sideOf(h.mode)
	ts.admitting[sd].Lock()
	defer ts.admitting[sd].Unlock()
	// Until the peer is registered, another node told of it (it reads the
	// store) finds it being admitted.
	ts.mu.Lock()
	ts.pending[sd]++
	ts.mu.Unlock()
	defer func() {
		ts.mu.Lock()
		ts.pending[sd]--
		ts.mu.Unlock()
	}()

	now := r.now()
	hash := tunnel.HashToken(h.token)
	var otherNode string
	t, err := r.store.UpdateTunnel(req.Context(), ts.id, func(t *tunnel.Tunnel) error {
		if err := tunnel.Admit(t, h.mode, hash, h.clientToken, now); err != nil {
			return err
		}
		// In a cluster the side records its node, and the other side's
		// peer, if another node holds it, is told of this one.
		t.Side(h.mode).Node = r.self
		if o := t.Side(sd.other().mode()); o.Connected && o.Node != r.self {
			otherNode = o.Node
		}
		return nil
	})
	if err != nil {
		herr := admissionError(err, h.mode)
		if herr.status >= 500 {
			r.log.Error("relay: admit handshake", "tunnel", ts.id, "mode", string(h.mode), "err", err)
		}
		r.countFailure(client, err)
		r.reject(w, req, channelID, h.mode, herr)
		return nil, nil
	}

	p := newPeer(r, ts, sd, t, h, channelID)
	p.otherNode = otherNode
	if old := ts.peer(sd); old != nil {
		// Drop without close frame: a close frame makes the official proxy
		// exit for good. Wait until the other peer has its stream resets,
		// so that they arrive before anything from the new peer.
		old.stop(0, reasonReplaced)
		<-old.detached
	}
	closed, dropped := ts.register(p)
	switch {
	case dropped:
		p.stop(0, reasonShutdown)
	case closed:
		p.stop(websocket.CloseNormalClosure, reasonTunnelClosed)
	}

	hdr := http.Header{}
	hdr.Set("Sec-WebSocket-Protocol", h.subprotocol)
	hdr[channelIDHeader] = []string{channelID}
	conn, err := r.upgrader.Upgrade(w, req, hdr)
	if err != nil {
		close(p.writerDone) // no writer was started
		r.stats.handshake(resultUpgradeFailed)
		return p, fmt.Errorf("upgrade: %w", err)
	}
	p.attach(conn)
	r.stats.handshake(resultOK)
	r.wg.Add(1)
	go p.writeLoop()
	p.writable.Store(true)
	p.startPacing(req.Context())
	p.log.Info("relay: peer connected", "subprotocol", h.subprotocol, "client_token", h.clientToken != "", "remote", req.RemoteAddr)
	return p, nil
}

// countFailure counts a handshake refused for a token that could be a
// guess (none matches, or the client token is not the bound one) against
// the client's address. Spent tokens, closed tunnels and wrong modes name a
// real token, and server faults are nobody's: they do not count.
func (r *Relay) countFailure(client string, err error) {
	if errors.Is(err, tunnel.ErrNotFound) || errors.Is(err, tunnel.ErrClientToken) {
		r.failures.Allow(client)
	}
}

// clientAddr is the key of a client's handshake failures: the IP address
// the connection comes from (an IPv6 address's /64, which one host
// usually has to itself). Only the connection counts: a header such as
// X-Forwarded-For is the client's to write. Behind a proxy or load
// balancer every client shares its address.
func clientAddr(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	a := ap.Addr().Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// enter registers a goroutine with the relay's WaitGroup unless the relay is
// shutting down.
func (r *Relay) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
}

// acquire returns the state of tunnel id, creating it, and holds it until
// release. It returns nil once the relay is shutting down.
func (r *Relay) acquire(id string) *tunnelState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	ts := r.tunnels[id]
	if ts == nil {
		ts = &tunnelState{id: id}
		r.tunnels[id] = ts
	}
	ts.refs++
	return ts
}

func (r *Relay) release(ts *tunnelState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ts.refs--
	if ts.refs == 0 {
		delete(r.tunnels, ts.id)
	}
}

func (r *Relay) lookup(id string) *tunnelState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tunnels[id]
}

func (r *Relay) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// markDisconnected records in the store that side sd of tunnel id has no
// connection.
func (r *Relay) markDisconnected(id string, sd side) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	now := r.now().UTC()
	_, err := r.store.UpdateTunnel(ctx, id, func(t *tunnel.Tunnel) error {
		s := t.Side(sd.mode())
		if s.Node != r.self {
			// Another node admitted a newer peer of the side.
			return errTakenOver
		}
		s.Connected = false
		s.Node = ""
		s.LastUpdatedAt = now
		return nil
	})
	// A tunnel deleted meanwhile (close-tunnel --delete, delete-account)
	// has no state left to record.
	if err != nil && !errors.Is(err, tunnel.ErrNotFound) && !errors.Is(err, errTakenOver) {
		r.log.Error("relay: record disconnect", "tunnel", id, "mode", string(sd.mode()), "err", err)
	}
}

// errTakenOver aborts recording a disconnect that a newer peer on another
// node has overtaken.
var errTakenOver = errors.New("the side's peer is on another node now")

// CloseTunnel ends the connections of a tunnel that was closed (by the API,
// or by the expiry sweeper when its lifetime ended): both peers get a close
// frame (which makes the official proxy exit instead of
// reconnecting), then their connections are closed. In a cluster every
// other node is told to do the same with its peers.
func (r *Relay) CloseTunnel(tunnelID string) {
	r.closeLocal(tunnelID)
	r.broadcast(nodelink.Message{Kind: nodelink.KindClose, Tunnel: tunnelID})
}

// closeLocal closes the tunnel's peers on this node.
func (r *Relay) closeLocal(tunnelID string) {
	if ts := r.lookup(tunnelID); ts != nil {
		ts.closeAll(websocket.CloseNormalClosure, reasonTunnelClosed, false)
	}
}

// RotateTunnel ends the connections of the sides of a tunnel whose access
// tokens were replaced (the store has the new ones already): each gets a
// close frame, so that the official proxy exits instead of reconnecting
// with a dead token, and the other side's streams are reset as when any
// peer ends. A handshake of a rotated side under way finishes first (its
// peer, admitted with the old token, is then cut off too); later ones find
// the new token in the store. The other side's peer keeps the services it
// was admitted with until it reconnects. In a cluster every other node is
// told to do the same with its peers.
func (r *Relay) RotateTunnel(tunnelID string, modes ...tunnel.Mode) {
	r.rotateLocal(tunnelID, modes...)
	var arg uint64
	for _, m := range modes {
		arg |= 1 << sideOf(m)
	}
	r.broadcast(nodelink.Message{Kind: nodelink.KindRotate, Tunnel: tunnelID, Arg: arg})
}

// rotateLocal cuts off the rotated sides' peers on this node.
func (r *Relay) rotateLocal(tunnelID string, modes ...tunnel.Mode) {
	ts := r.lookup(tunnelID)
	if ts == nil {
		return
	}
	for _, m := range modes {
		sd := sideOf(m)
		ts.admitting[sd].Lock()
		p := ts.peer(sd)
		ts.admitting[sd].Unlock()
		if p != nil {
			p.stop(websocket.CloseNormalClosure, reasonRotated)
		}
	}
}

// Connected reports which sides of a tunnel have a connection.
func (r *Relay) Connected(tunnelID string) (source, destination bool) {
	ts := r.lookup(tunnelID)
	if ts == nil {
		return false, false
	}
	return ts.peer(sourceSide) != nil, ts.peer(destinationSide) != nil
}

// Shutdown drops every connection without a close frame, so that the local
// proxies reconnect (to this or another node), and waits until every
// goroutine of the relay has ended or ctx is done. New handshakes get 503.
// Disconnects are not written to the store; a starting server marks all
// tunnels disconnected.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	states := make([]*tunnelState, 0, len(r.tunnels))
	for _, ts := range r.tunnels {
		states = append(states, ts)
	}
	r.mu.Unlock()
	for _, ts := range states {
		ts.closeAll(0, reasonShutdown, true)
	}
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("relay shutdown: %w", ctx.Err())
	}
}
