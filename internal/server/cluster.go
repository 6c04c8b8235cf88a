package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/warrentunnel/warren/internal/nodelink"
	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// Cluster configures a node of several sharing one PostgreSQL store
// (docs/architecture.md, "Several nodes").
type Cluster struct {
	// Listen is the address of this node's listener for links from the
	// other nodes; "" for a server on its own.
	Listen string
	// Address is the address the other nodes dial; default: Listen's, as
	// bound (a port 0 becomes the port chosen).
	Address string
	// ID names the node; default: random at each start.
	ID string
}

// Heartbeats: a node writes its heartbeat every heartbeatEvery; a node
// whose heartbeat is older than deadAfter is dead, and whichever node sees
// it first removes it and records its peers as disconnected.
const (
	heartbeatEvery = time.Second
	deadAfter      = 10 * time.Second
)

// Names of the shared secrets a cluster's nodes keep in the store.
const (
	linkCASecret   = "node-link-ca"
	httpsCASecret  = "https-ca"
	deviceCASecret = "device-ca"
)

// cluster is this node's part of a cluster: its registration and heartbeat
// in the store, and its links to the other nodes. It is the relay's Nodes.
type cluster struct {
	cfg   Cluster
	store *store.Store
	log   *slog.Logger
	links *nodelink.Links
	ln    net.Listener
	relay relayNode

	mu    sync.Mutex
	nodes map[string]string // the live nodes' link addresses, this one's included

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// newCluster prepares a node: its id and link certificate from the
// cluster CA the store keeps. Handler (the relay) is set by startCluster.
func newCluster(ctx context.Context, cfg Cluster, st *store.Store, log *slog.Logger) (*cluster, error) {
	if cfg.ID == "" {
		cfg.ID = "node-" + tunnel.RandomHex(4)
	}
	if len(cfg.ID) > 64 {
		return nil, errors.New("--node-id must be at most 64 characters")
	}
	return &cluster{cfg: cfg, store: st, log: log, nodes: map[string]string{}}, nil
}

// relayNode is what the cluster needs of the relay: it takes what links
// bring, and drops its peers when the other nodes took this one for dead.
type relayNode interface {
	nodelink.Handler
	Reconnect(reason string)
}

// start listens for links, registers the node and starts its heartbeat.
func (c *cluster) start(ctx context.Context, h relayNode) error {
	c.relay = h
	bundle, err := c.store.SecretOrMake(ctx, linkCASecret, nodelink.NewCA)
	if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	caCert, caKey, err := nodelink.ParseCA(bundle)
	if err != nil {
		return err
	}
	cert, err := nodelink.NodeCertificate(caCert, caKey, c.cfg.ID)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	ln, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("--node-listen: %w", err)
	}
	addr := c.cfg.Address
	if addr == "" {
		host, _, _ := net.SplitHostPort(c.cfg.Listen)
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			ln.Close()
			return errors.New("--node-listen on every interface needs --node-address, the address the other nodes dial")
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		addr = net.JoinHostPort(host, port)
	}
	c.cfg.Address = addr
	c.ln = ln
	c.links = nodelink.New(nodelink.Config{
		ID: c.cfg.ID, Cert: cert, CA: pool, Resolve: c.resolve, Handler: h,
		Logger: c.log,
	})
	now := time.Now()
	// A node restarted under its old id holds none of the peers the store
	// may still credit it with; the first node of a cluster (no other is
	// alive) holds none of any, whatever an earlier server recorded.
	live, err := c.store.Nodes(ctx)
	if err == nil {
		live = slices.DeleteFunc(live, func(n store.Node) bool { return n.ID == c.cfg.ID || now.Sub(n.HeartbeatAt) > deadAfter })
		if len(live) == 0 {
			err = c.store.MarkAllDisconnected(ctx, now)
		} else {
			err = c.store.MarkNodeDisconnected(ctx, c.cfg.ID, now)
		}
	}
	if err != nil {
		ln.Close()
		return err
	}
	if err := c.store.RegisterNode(ctx, store.Node{ID: c.cfg.ID, Address: addr, StartedAt: now, HeartbeatAt: now}); err != nil {
		ln.Close()
		return err
	}
	c.links.Serve(ln)
	c.refresh(ctx)
	c.stop, c.done = make(chan struct{}), make(chan struct{})
	go c.heartbeat()
	c.log.Info("cluster node up", "node", c.cfg.ID, "link_address", addr)
	return nil
}

// heartbeat keeps the node registered, removes dead nodes and follows the
// live ones, until stopped.
func (c *cluster) heartbeat() {
	defer close(c.done)
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), heartbeatEvery*3)
		c.beat(ctx)
		cancel()
	}
}

func (c *cluster) beat(ctx context.Context) {
	now := time.Now()
	err := c.store.HeartbeatNode(ctx, c.cfg.ID, now)
	if errors.Is(err, tunnel.ErrNotFound) {
		// Another node took this one for dead (the store was out of reach
		// for longer than deadAfter) and recorded its peers as
		// disconnected; they are still here, but reconnect at their next
		// drop. Register again.
		// The others recorded this node's peers as gone and let go of
		// their sides: the peers connect again and are admitted afresh.
		c.log.Warn("cluster: this node was taken for dead; registering again and dropping its peers, which reconnect", "node", c.cfg.ID)
		err = c.store.RegisterNode(ctx, store.Node{ID: c.cfg.ID, Address: c.cfg.Address, StartedAt: now, HeartbeatAt: now})
		if err == nil {
			c.relay.Reconnect("this node was taken for dead")
		}
	}
	if err != nil {
		c.log.Error("cluster: heartbeat", "err", err)
		return
	}
	dead, err := c.store.ReleaseDeadNodes(ctx, now.Add(-deadAfter), now)
	if err != nil {
		c.log.Error("cluster: remove dead nodes", "err", err)
	}
	for _, id := range dead {
		c.log.Warn("cluster: node dead; its peers are recorded as disconnected", "node", id)
	}
	c.refresh(ctx)
}

// refresh reads the live nodes and ends links to nodes no longer among
// them.
func (c *cluster) refresh(ctx context.Context) {
	nodes, err := c.store.Nodes(ctx)
	if err != nil {
		c.log.Error("cluster: list nodes", "err", err)
		return
	}
	live := make(map[string]string, len(nodes))
	for _, n := range nodes {
		live[n.ID] = n.Address
	}
	c.mu.Lock()
	old := c.nodes
	c.nodes = live
	c.mu.Unlock()
	for id := range old {
		if _, ok := live[id]; !ok {
			c.links.Drop(id)
		}
	}
	// The node with the smaller id links up with each other node ahead of
	// need (the other way round, the two dials would race).
	for id := range live {
		if c.cfg.ID < id {
			c.links.Connect(id)
		}
	}
}

// resolve is a node's link address.
func (c *cluster) resolve(ctx context.Context, id string) (string, error) {
	c.mu.Lock()
	addr, ok := c.nodes[id]
	c.mu.Unlock()
	if ok {
		return addr, nil
	}
	n, err := c.store.Node(ctx, id)
	if err != nil {
		return "", err
	}
	return n.Address, nil
}

// shutdown stops the heartbeat, ends the links and removes the node from
// the store, recording its peers as disconnected.
func (c *cluster) shutdown(ctx context.Context) error {
	if c.links == nil {
		return nil // never started
	}
	c.stopBeating()
	c.links.Close()
	return c.store.RemoveNode(ctx, c.cfg.ID, time.Now())
}

// stopBeating stops the heartbeat and waits for it.
func (c *cluster) stopBeating() {
	c.stopOnce.Do(func() {
		close(c.stop)
		<-c.done
	})
}

// Stats are the links' figures for the metrics (none before start).
func (c *cluster) Stats() []nodelink.LinkStats {
	if c.links == nil {
		return nil
	}
	return c.links.Stats()
}

// The relay's Nodes.

func (c *cluster) Self() string { return c.cfg.ID }

func (c *cluster) Send(ctx context.Context, node string, m *nodelink.Message, flow uint64, orderFree bool) error {
	return c.links.Send(ctx, node, m, flow, orderFree)
}

func (c *cluster) SendNoWait(node string, m *nodelink.Message) bool {
	return c.links.SendNoWait(node, m)
}

func (c *cluster) Others() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.nodes))
	for id := range c.nodes {
		if id != c.cfg.ID {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// shareCAFiles makes the CA in certPath and keyPath the one the store keeps
// under name for every node of a cluster: the first node to start puts its
// own there (made now if it had none), the others take it.
func shareCAFiles(ctx context.Context, st *store.Store, name, certPath, keyPath, commonName string) error {
	bundle, err := st.SecretOrMake(ctx, name, func() ([]byte, error) {
		if _, _, err := loadOrCreateCAFiles(certPath, keyPath, commonName); err != nil {
			return nil, err
		}
		c, err1 := os.ReadFile(certPath)
		k, err2 := os.ReadFile(keyPath)
		return append(c, k...), errors.Join(err1, err2)
	})
	if err != nil {
		return fmt.Errorf("shared CA %s: %w", name, err)
	}
	certPEM, keyPEM, err := splitCABundle(bundle)
	if err != nil {
		return fmt.Errorf("shared CA %s: %w", name, err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{keyPath, keyPEM, 0o600}, {certPath, certPEM, 0o644}} {
		if cur, err := os.ReadFile(f.path); err == nil && string(cur) == string(f.data) {
			continue
		}
		if err := writeFileAtomic(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// splitCABundle separates a CA's certificate and key PEM blocks.
func splitCABundle(bundle []byte) (certPEM, keyPEM []byte, err error) {
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certPEM = append(certPEM, pem.EncodeToMemory(b)...)
		} else {
			keyPEM = append(keyPEM, pem.EncodeToMemory(b)...)
		}
	}
	if certPEM == nil || keyPEM == nil {
		return nil, nil, errors.New("want a certificate and a private key")
	}
	return certPEM, keyPEM, nil
}
