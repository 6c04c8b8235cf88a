// Package nodelink owns the links between the nodes of a Warren cluster:
// one mutually authenticated TLS connection per pair of nodes (each node's
// certificate is signed by the cluster CA and names the node), which
// carries the messages of every tunnel whose two peers sit on those two
// nodes, and the framing of those messages.
//
// A link's send queue is the data path's fair queue (package fairq): it is
// bounded in bytes, a sender waits while it is full (backpressure), tunnel
// DATA of different connections leaves in deficit round robin, and every
// other message is a barrier that keeps its place. A received message is
// handed to the Handler in the link's reader goroutine, which must not
// block: the relay bounds what another node may send it per tunnel side
// with credit, so it can always queue what arrives.
//
// Of the two connections two nodes may dial at once, the one dialed by the
// node with the smaller id wins: the accepting node answers each dial with
// one byte, yes or no, before any message, so both nodes agree. It does not
// know tunnels' rules or where peers are (that is the relay's and the
// store's); it knows nodes by id and finds their addresses with Resolve.
package nodelink

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrentunnel/warren/internal/fairq"
	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/wire"
)

// Kind is what a message says.
type Kind uint8

// Message kinds. Frame carries a tunnel frame toward Side's peer; the
// others carry no frame.
const (
	KindPing   Kind = 1 // keeps an idle link's read deadline moving
	KindAttach Kind = 2 // the sender now holds Side's peer of Tunnel
	KindDetach Kind = 3 // the sender no longer holds Side's peer (or never did)
	KindFrame  Kind = 4 // a tunnel frame for the receiver's Side peer
	KindCredit Kind = 5 // Arg more bytes of frames toward Side's peer were written
	KindClose  Kind = 6 // Tunnel was closed: drop its peers with a close frame
	KindRotate Kind = 7 // Tunnel's tokens were rotated: Arg bit 0 source, bit 1 destination
)

// Message is one message between two nodes.
type Message struct {
	Kind   Kind
	Side   uint8
	Tunnel string
	Arg    uint64
	// Frame (KindFrame) is the tunnel frame with its length prefix, and
	// Wire what it decodes to. On receipt the Handler owns Frame.
	Frame *framepool.Buf
	Wire  wire.Message
}

// maxTunnelID bounds a message's tunnel id (tunnel ids are 32 or 36
// characters).
const maxTunnelID = 64

// headerSize is a message's header: kind, side, tunnel id length, the id
// and Arg.
func headerSize(id string) int { return 3 + len(id) + 8 }

// Handler takes what links bring.
type Handler interface {
	// Receive is called in the link's reader goroutine, in the order the
	// messages were sent; it must not block.
	Receive(from string, m *Message)
	// LinkUp is called when a link to node is up, before any message
	// from it is received.
	LinkUp(node string)
	// LinkDown is called once a link to node has ended, after every
	// message it brought was received.
	LinkDown(node string)
}

// Config configures Links.
type Config struct {
	ID   string          // this node
	Cert tls.Certificate // this node's, signed by the cluster CA, CommonName = ID
	CA   *x509.CertPool  // the cluster CA
	// Resolve returns the address node listens on for links.
	Resolve func(ctx context.Context, node string) (string, error)
	Handler Handler
	// QueueBytes bounds each link's send queue (0: DefaultQueueBytes).
	QueueBytes int
	Logger     *slog.Logger
}

// DefaultQueueBytes is a link's send queue budget.
const DefaultQueueBytes = 16 * framepool.LargeSize

// Timeouts of a link.
const (
	dialTimeout  = 3 * time.Second
	pingEvery    = time.Second
	silenceLimit = 5 * time.Second // no message at all for this long: the link is dead
	writeTimeout = 10 * time.Second
)

// ErrClosed is returned once Links is closed.
var ErrClosed = errors.New("nodelink: closed")

// A dial that loses to the other node's: its link comes up instead.
var (
	errRefused = errors.New("the node has a link to this one already, or is dialing it")
	errLost    = errors.New("the other node's dial won")
)

// linkWait bounds how long a sender waits for the other node's dial after
// its own lost.
const linkWait = 5 * time.Second

// Links is this node's links to the other nodes. Close ends them.
type Links struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	links  map[string]*link
	lns    []net.Listener

	wg sync.WaitGroup
}

// New returns Links; Serve accepts other nodes' dials.
func New(cfg Config) *Links {
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Links{cfg: cfg, log: cfg.Logger, links: map[string]*link{}}
}

// link is the connection to one node: state dialing (up closed when
// established or failed) or up.
type link struct {
	node   string
	dialer bool // this node dialed it
	up     chan struct{}
	err    error // why dialing failed; set before up is closed
	conn   net.Conn
	q      *fairq.Queue
	done   chan struct{} // closed once the link is down

	sent, received atomic.Uint64 // bytes of messages, for Stats
}

func (ln *link) isUp() bool {
	select {
	case <-ln.up:
		return ln.err == nil
	default:
		return false
	}
}

func (l *Links) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{l.cfg.Cert},
		RootCAs:      l.cfg.CA,
		ClientCAs:    l.cfg.CA,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// Serve accepts links on ln until Close.
func (l *Links) Serve(ln net.Listener) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		ln.Close()
		return
	}
	l.lns = append(l.lns, ln)
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				l.accept(c)
			}()
		}
	}()
}

// accept authenticates a dialing node and answers yes unless this node has
// a link to it already or is dialing it and has the smaller id.
func (l *Links) accept(raw net.Conn) {
	c := tls.Server(raw, l.tlsConfig())
	c.SetDeadline(time.Now().Add(dialTimeout))
	if err := c.Handshake(); err != nil {
		l.log.Warn("node link: refused a connection", "remote", raw.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	node := c.ConnectionState().PeerCertificates[0].Subject.CommonName
	if node == "" || node == l.cfg.ID {
		l.log.Warn("node link: refused a connection naming no other node", "remote", raw.RemoteAddr().String(), "node", node)
		c.Close()
		return
	}
	l.mu.Lock()
	cur := l.links[node]
	yes := !l.closed && (cur == nil || !cur.isUp() && cur.dialer && node < l.cfg.ID)
	var ln *link
	if yes {
		// Our own dial, if any, loses: it finds itself replaced.
		ln = l.newLink(node, false)
		l.links[node] = ln
	}
	l.mu.Unlock()
	answer := []byte{0}
	if yes {
		answer[0] = 1
	}
	if _, err := c.Write(answer); err != nil || !yes {
		c.Close()
		if yes {
			l.fail(ln, fmt.Errorf("answer: %w", err))
		}
		return
	}
	c.SetDeadline(time.Time{})
	l.run(ln, c)
}

func (l *Links) newLink(node string, dialer bool) *link {
	return &link{node: node, dialer: dialer, up: make(chan struct{}), done: make(chan struct{}),
		q: fairq.New(fairq.Config{Budget: l.cfg.QueueBytes, FlowMax: l.cfg.QueueBytes / 4, Control: 256})}
}

// fail ends a link that never came up.
func (l *Links) fail(ln *link, err error) {
	l.mu.Lock()
	if l.links[ln.node] == ln {
		delete(l.links, ln.node)
	}
	l.mu.Unlock()
	if ln.err == nil {
		ln.err = err
	}
	ln.q.Close()
	close(ln.up)
	close(ln.done)
}

// get returns the link to node, dialing it if there is none, and waits
// until it is up. When its dial loses to the other node's, it waits (at
// most linkWait) for that one.
func (l *Links) get(ctx context.Context, node string) (*link, error) {
	start := time.Now()
	for {
		ln, err := l.connect(node)
		if err != nil {
			return nil, err
		}
		select {
		case <-ln.up:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if ln.err == nil {
			return ln, nil
		}
		if !errors.Is(ln.err, errRefused) && !errors.Is(ln.err, errLost) || time.Since(start) > linkWait {
			return nil, fmt.Errorf("link to node %s: %w", node, ln.err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Connect starts dialing node, unless a link to it is up or being made,
// without waiting: nodes link up before a tunnel needs it.
func (l *Links) Connect(node string) { l.connect(node) }

// connect returns the link to node, up or on its way, starting a dial if
// there is none.
func (l *Links) connect(node string) (*link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	ln := l.links[node]
	if ln == nil {
		ln = l.newLink(node, true)
		l.links[node] = ln
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.dial(ln)
		}()
	}
	return ln, nil
}

// dial connects to node and runs the link if the node says yes.
func (l *Links) dial(ln *link) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	addr, err := l.cfg.Resolve(ctx, ln.node)
	if err != nil {
		l.fail(ln, fmt.Errorf("find node %s: %w", ln.node, err))
		return
	}
	cfg := l.tlsConfig()
	// The certificate must name the node dialed, whatever the address.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return verifyNode(cs, l.cfg.CA, ln.node)
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: cfg}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		l.fail(ln, err)
		return
	}
	c := raw.(*tls.Conn)
	c.SetDeadline(time.Now().Add(dialTimeout))
	var answer [1]byte
	if _, err := io.ReadFull(c, answer[:]); err != nil || answer[0] != 1 {
		c.Close()
		if err == nil {
			err = errRefused
		}
		l.fail(ln, err)
		return
	}
	c.SetDeadline(time.Time{})
	l.mu.Lock()
	replaced := l.links[ln.node] != ln
	l.mu.Unlock()
	if replaced {
		// The other node's dial was accepted meanwhile (it has the smaller
		// id); it will see this connection end unused.
		c.Close()
		l.fail(ln, errLost)
		return
	}
	l.run(ln, c)
}

// verifyNode checks that the peer's certificate chains to the cluster CA
// and names node.
func verifyNode(cs tls.ConnectionState, roots *x509.CertPool, node string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return err
	}
	if leaf.Subject.CommonName != node {
		return fmt.Errorf("certificate names node %q, not %q", leaf.Subject.CommonName, node)
	}
	return nil
}

// run serves an established link until it ends: a writer and a pinger
// goroutine, and the reader in this one.
func (l *Links) run(ln *link, c net.Conn) {
	ln.conn = c
	close(ln.up)
	l.log.Info("node link up", "node", ln.node, "dialed", ln.dialer)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		l.writeLoop(ln)
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(pingEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				f := encode(&Message{Kind: KindPing})
				if ln.q.PushControlNoWait(f) != nil {
					f.Free()
					return
				}
			}
		}
	}()
	l.cfg.Handler.LinkUp(ln.node)
	err := l.readLoop(ln)
	close(stop)
	ln.q.Close()
	c.Close()
	wg.Wait()
	l.mu.Lock()
	if l.links[ln.node] == ln {
		delete(l.links, ln.node)
	}
	l.mu.Unlock()
	close(ln.done)
	l.log.Info("node link down", "node", ln.node, "err", err)
	l.cfg.Handler.LinkDown(ln.node)
}

func (l *Links) writeLoop(ln *link) {
	w := bufio.NewWriterSize(ln.conn, 64<<10)
	var batch []*framepool.Buf
	for {
		var err error
		batch, err = ln.q.Take(context.Background(), batch[:0], 256<<10)
		if err != nil {
			return
		}
		ln.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		for _, b := range batch {
			if _, err = w.Write(b.B); err != nil {
				break
			}
			ln.sent.Add(uint64(len(b.B)))
		}
		if err == nil {
			err = w.Flush()
		}
		ln.q.Release(batch)
		if err != nil {
			ln.conn.Close() // the reader ends the link
			return
		}
	}
}

func (l *Links) readLoop(ln *link) error {
	r := bufio.NewReaderSize(ln.conn, 64<<10)
	var hdr [3 + maxTunnelID + 8]byte
	var m Message
	for {
		ln.conn.SetReadDeadline(time.Now().Add(silenceLimit))
		if _, err := io.ReadFull(r, hdr[:3]); err != nil {
			return err
		}
		n := int(hdr[2])
		if n > maxTunnelID {
			return fmt.Errorf("tunnel id of %d bytes", n)
		}
		if _, err := io.ReadFull(r, hdr[3:3+n+8]); err != nil {
			return err
		}
		m = Message{Kind: Kind(hdr[0]), Side: hdr[1], Tunnel: string(hdr[3 : 3+n]), Arg: binary.BigEndian.Uint64(hdr[3+n:])}
		switch m.Kind {
		case KindPing:
			continue
		case KindFrame:
			f, err := framepool.ReadFrame(r, &m.Wire)
			if err != nil {
				if f != nil {
					f.Free()
				}
				return fmt.Errorf("tunnel frame: %w", err)
			}
			m.Frame = f
		case KindAttach, KindDetach, KindCredit, KindClose, KindRotate:
		default:
			return fmt.Errorf("message kind %d", m.Kind)
		}
		size := 3 + n + 8
		if m.Frame != nil {
			size += len(m.Frame.B)
		}
		ln.received.Add(uint64(size))
		l.cfg.Handler.Receive(ln.node, &m)
	}
}

// encode puts a message (its header, then its frame, if any) in a buffer.
func encode(m *Message) *framepool.Buf {
	n := headerSize(m.Tunnel)
	if m.Frame != nil {
		n += len(m.Frame.B)
	}
	b := framepool.Get(n)
	b.B = append(b.Mem[:0], byte(m.Kind), m.Side, byte(len(m.Tunnel)))
	b.B = append(b.B, m.Tunnel...)
	b.B = binary.BigEndian.AppendUint64(b.B, m.Arg)
	if m.Frame != nil {
		b.B = append(b.B, m.Frame.B...)
	}
	return b
}

// Send queues m for node, dialing the node if no link is up, and waits
// while the link's queue is full. Frames whose DATA may be reordered
// against other connections' (orderFree) go in flow, fairly; any other
// message is a barrier. m.Frame stays the caller's.
func (l *Links) Send(ctx context.Context, node string, m *Message, flow uint64, orderFree bool) error {
	if len(m.Tunnel) > maxTunnelID {
		return fmt.Errorf("tunnel id of %d bytes", len(m.Tunnel))
	}
	if m.Frame != nil && headerSize(m.Tunnel) > framepool.LinkRoom {
		return errors.New("message header larger than framepool.LinkRoom")
	}
	ln, err := l.get(ctx, node)
	if err != nil {
		return err
	}
	b := encode(m)
	if orderFree {
		err = ln.q.Push(ctx, flow, b)
	} else {
		err = ln.q.PushControlWait(ctx, b)
	}
	if err != nil {
		b.Free()
		if errors.Is(err, fairq.ErrClosed) {
			return fmt.Errorf("link to node %s is down", node)
		}
		return err
	}
	return nil
}

// SendNoWait queues a control message for node at once if a link to it is
// up, beyond the queue's bound (for messages whose number the caller
// bounds), and reports whether it did.
func (l *Links) SendNoWait(node string, m *Message) bool {
	if len(m.Tunnel) > maxTunnelID || m.Frame != nil {
		return false
	}
	l.mu.Lock()
	ln := l.links[node]
	l.mu.Unlock()
	if ln == nil || !ln.isUp() {
		return false
	}
	b := encode(m)
	if ln.q.PushControlNoWait(b) != nil {
		b.Free()
		return false
	}
	return true
}

// LinkStats is what a link to one node carried.
type LinkStats struct {
	Node           string
	Sent, Received uint64 // bytes of messages, pings included
}

// Stats lists the links that are up, by node.
func (l *Links) Stats() []LinkStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LinkStats, 0, len(l.links))
	for node, ln := range l.links {
		if ln.isUp() {
			out = append(out, LinkStats{Node: node, Sent: ln.sent.Load(), Received: ln.received.Load()})
		}
	}
	slices.SortFunc(out, func(a, b LinkStats) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// Up reports whether a link to node is up.
func (l *Links) Up(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.links[node]
	return ln != nil && ln.isUp()
}

// Drop ends the link to node, if any (the node was declared dead).
func (l *Links) Drop(node string) {
	l.mu.Lock()
	ln := l.links[node]
	l.mu.Unlock()
	if ln != nil && ln.isUp() {
		ln.conn.Close()
	}
}

// Close ends every link and waits for their goroutines.
func (l *Links) Close() {
	l.mu.Lock()
	l.closed = true
	lns := l.lns
	var conns []net.Conn
	for _, ln := range l.links {
		if ln.isUp() {
			conns = append(conns, ln.conn)
		}
	}
	l.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	l.wg.Wait()
}
