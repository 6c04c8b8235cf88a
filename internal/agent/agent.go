// Package agent owns the device agent (`localproxy agent`): it keeps an MQTT
// connection to a broker, subscribes to the thing's tunnel notifications
// ($aws/things/<thing>/tunnels/notify, the JSON AWS IoT Secure Tunneling
// publishes) and, for each notification for the destination side, runs a
// destination engine of package localproxy in process, with the access
// token from the notification and the device's own service mapping. It does
// not own the engine (package localproxy), the command line (package
// proxycli) or the broker.
//
// Which engine a notification replaces: AWS notifications carry no tunnel
// id, so the agent does not guess. Every new notification starts a
// destination of its own; the relay ends the old one (a rotation or close
// disconnects the old token's WebSocket with a close frame, and a token the
// relay no longer accepts is refused at a reconnect with a 4xx, which the
// engine treats as final), so a rotated or closed tunnel's engine stops by
// itself. Several tunnels may run at once, up to Config.MaxTunnels; a
// notification past it stops the oldest destination (the newest notification
// is the one an operator is waiting on). A notification whose token is
// already running or was seen recently (QoS 1 may deliver a message twice)
// is ignored.
//
// Goroutines: Run owns autopaho's connection manager (which reconnects with
// backoff), its own loop, and one goroutine per running destination; it
// stops and waits for all of them before it returns.
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/warrentunnel/warren/internal/localproxy"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// Defaults of Config.
const (
	DefaultMaxTunnels = 10
	DefaultKeepAlive  = 60 * time.Second
)

// sessionExpiry keeps the broker's session (the subscription and the QoS 1
// messages queued for it) over a reconnect, so a notification published
// while the connection was down is delivered when it is back.
const sessionExpiry = 3600

// recentTokens bounds the hashes of tokens remembered after their
// destination ended, to ignore a repeated delivery of their notification.
const recentTokens = 64

// Config is what Run needs.
type Config struct {
	Broker   *url.URL    // mqtt:// or mqtts:// (see BrokerURL)
	TLS      *tls.Config // for mqtts://: client certificate and broker CA (see BrokerTLS)
	ClientID string      // MQTT client id; the thing name when empty
	// ThingName names the topic to subscribe to.
	ThingName string
	// Services maps a service name to its destination: a port, host:port or
	// unix socket path (as the local proxy's -d). ConfigFiles (--config-dir)
	// are looked up for services Services does not name.
	Services    map[string]string
	ConfigFiles []string
	// Proxy is the template of each destination engine: Endpoint (empty:
	// derived from the notification's region with Settings.EndpointFormat),
	// CAPath, BindAddress, Settings, WebProxy. Mode, AccessToken, Services
	// and Logger are set per notification.
	Proxy      localproxy.Config
	MaxTunnels int           // destinations running at once (DefaultMaxTunnels when 0)
	KeepAlive  time.Duration // MQTT keep alive (DefaultKeepAlive when 0)
	Logger     *slog.Logger
}

// Agent runs destinations for a thing's tunnel notifications.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	topic string

	notes chan []byte   // payloads from paho's callback to the loop
	up    chan struct{} // a connection came up: (re)subscribe

	mu      sync.Mutex
	next    uint64
	running []*destination // oldest first
	recent  [][32]byte     // token hashes of ended destinations, at most recentTokens
	engines sync.WaitGroup
}

// destination is one running engine.
type destination struct {
	id       uint64
	services []string
	token    [32]byte // SHA-256 of the access token; the token itself is not kept
	started  time.Time
	cancel   context.CancelFunc
}

// Tunnel describes a running destination (Agent.Tunnels).
type Tunnel struct {
	ID       uint64   // the agent's own number, in the order notifications arrived
	Services []string // the services it serves
	Started  time.Time
}

// New checks cfg.
func New(cfg Config) (*Agent, error) {
	if cfg.Broker == nil || (cfg.Broker.Scheme != "mqtt" && cfg.Broker.Scheme != "mqtts") {
		return nil, errors.New("agent: a broker endpoint (mqtt:// or mqtts://) is required")
	}
	if !tunnel.ValidName(cfg.ThingName) {
		return nil, errors.New("agent: invalid thing name: want 1-128 of [a-zA-Z0-9:_-]")
	}
	if len(cfg.Services) == 0 && len(cfg.ConfigFiles) == 0 {
		return nil, errors.New("agent: map at least one service (--destination-app or --config-dir)")
	}
	for svc, ep := range cfg.Services {
		if !tunnel.ValidName(svc) {
			return nil, fmt.Errorf("agent: invalid service name %q", svc)
		}
		if err := localproxy.ValidateMappingEndpoint(ep, localproxy.ModeDestination); err != nil {
			return nil, fmt.Errorf("agent: service %s: %w", svc, err)
		}
	}
	if cfg.Proxy.Endpoint != "" {
		if err := localproxy.ValidateEndpoint(cfg.Proxy.Endpoint); err != nil {
			return nil, fmt.Errorf("agent: relay endpoint: %w", err)
		}
	}
	if cfg.ClientID == "" {
		cfg.ClientID = cfg.ThingName
	}
	if cfg.MaxTunnels <= 0 {
		cfg.MaxTunnels = DefaultMaxTunnels
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Agent{
		cfg:   cfg,
		log:   cfg.Logger,
		topic: NotifyTopic(cfg.ThingName),
		notes: make(chan []byte, 16),
		up:    make(chan struct{}, 1),
	}, nil
}

// Tunnels lists the running destinations, oldest first.
func (a *Agent) Tunnels() []Tunnel {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Tunnel, 0, len(a.running))
	for _, d := range a.running {
		out = append(out, Tunnel{ID: d.id, Services: slices.Clone(d.services), Started: d.started})
	}
	return out
}

// Run connects to the broker (retrying with backoff for as long as it
// takes), subscribes to the thing's notify topic and runs a destination per
// notification until ctx is done; then it stops every destination, leaves
// the broker and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, a.clientConfig(ctx))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.log.Info("device agent started", "broker", a.cfg.Broker.String(), "thing", a.cfg.ThingName, "topic", a.topic)
	a.loop(ctx, cm)

	cancel() // stops the destinations and the connection manager
	a.engines.Wait()
	<-cm.Done()
	a.log.Info("device agent stopped")
	return nil
}

func (a *Agent) clientConfig(ctx context.Context) autopaho.ClientConfig {
	noExpiry := uint32(0)
	return autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{a.cfg.Broker},
		TlsCfg:                        a.cfg.TLS,
		KeepAlive:                     uint16(min(a.cfg.KeepAlive/time.Second, 65535)),
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         sessionExpiry,
		ReconnectBackoff:              backoff,
		ConnectTimeout:                10 * time.Second,
		OnConnectionUp: func(*autopaho.ConnectionManager, *paho.Connack) {
			a.log.Info("connected to the broker", "broker", a.cfg.Broker.String())
			select {
			case a.up <- struct{}{}:
			default: // a subscription is already due
			}
		},
		OnConnectionDown: func() bool {
			a.log.Warn("lost the broker connection; reconnecting")
			return true
		},
		OnConnectError: func(err error) {
			a.log.Warn("cannot connect to the broker; retrying", "err", err)
		},
		// Leaving on purpose ends the broker's session too: nothing should
		// be queued for an agent that was stopped.
		DisconnectPacketBuilder: func() *paho.Disconnect {
			return &paho.Disconnect{ReasonCode: 0, Properties: &paho.DisconnectProperties{SessionExpiryInterval: &noExpiry}}
		},
		ClientConfig: paho.ClientConfig{
			ClientID: a.cfg.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					if pr.Packet.Topic != a.topic {
						return false, nil
					}
					// Wait for the loop (backpressure onto the broker)
					// rather than drop a tunnel.
					select {
					case a.notes <- bytes.Clone(pr.Packet.Payload):
					case <-ctx.Done():
					}
					return true, nil
				},
			},
		},
	}
}

// backoff is the wait before connection attempt n to the broker: none
// before the first, then doubling from 0.5 s to at most 30 s, with jitter
// so that a fleet of devices does not reconnect in step after a broker
// restart.
func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := 30 * time.Second
	if n < 7 {
		d = 500 * time.Millisecond << (n - 1)
	}
	return d/2 + rand.N(d/2+1)
}

// loop subscribes when a connection comes up and acts on notifications
// until ctx is done.
func (a *Agent) loop(ctx context.Context, cm *autopaho.ConnectionManager) {
	var resubscribe <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.up:
			resubscribe = nil
			if !a.subscribe(ctx, cm) {
				resubscribe = time.After(5 * time.Second)
			}
		case <-resubscribe:
			resubscribe = nil
			if !a.subscribe(ctx, cm) {
				resubscribe = time.After(5 * time.Second)
			}
		case p := <-a.notes:
			a.handle(ctx, p)
		}
	}
}

// subscribe subscribes to the notify topic with QoS 1; false if it should
// be tried again.
func (a *Agent) subscribe(ctx context.Context, cm *autopaho.ConnectionManager) bool {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: a.topic, QoS: 1}}})
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("cannot subscribe to tunnel notifications; trying again", "topic", a.topic, "err", err)
		}
		return false
	}
	if len(ack.Reasons) == 0 || ack.Reasons[0] >= 0x80 {
		a.log.Error("the broker refused the subscription to tunnel notifications; trying again", "topic", a.topic, "reasons", ack.Reasons)
		return false
	}
	a.log.Info("subscribed to tunnel notifications", "topic", a.topic)
	return true
}

// handle acts on one notification's payload.
func (a *Agent) handle(ctx context.Context, payload []byte) {
	n, err := ParseNotification(payload)
	if err != nil {
		a.log.Warn("ignoring a malformed tunnel notification", "err", err)
		return
	}
	if !strings.EqualFold(n.ClientMode, "destination") {
		a.log.Info("ignoring a tunnel notification that is not for the destination", "clientMode", n.ClientMode)
		return
	}
	hash := sha256.Sum256([]byte(n.ClientAccessToken))
	if a.seen(hash) {
		a.log.Info("ignoring a repeated tunnel notification", "services", n.Services)
		return
	}
	served, refused := a.mapping(n.Services)
	for _, svc := range refused {
		a.log.Warn("service has no mapping on this device; refusing it", "service", svc)
	}
	if len(served) == 0 {
		a.log.Error("no service of the tunnel is mapped on this device; no destination started", "services", n.Services)
		a.remember(hash)
		return
	}
	endpoint := a.cfg.Proxy.Endpoint
	if endpoint == "" {
		if n.Region == "" {
			a.log.Error("the notification names no region and no --proxy-endpoint is set; no destination started")
			a.remember(hash)
			return
		}
		endpoint = a.cfg.Proxy.Settings.RegionEndpoint(n.Region)
	}
	a.start(ctx, n.ClientAccessToken, hash, endpoint, served)
}

// mapping splits a notification's services into the mapped ones (with their
// destination) and the others.
func (a *Agent) mapping(services []string) (map[string]string, []string) {
	served := map[string]string{}
	var missing []string
	for _, svc := range services {
		if ep, ok := a.cfg.Services[svc]; ok {
			served[svc] = ep
		} else {
			missing = append(missing, svc)
		}
	}
	if len(missing) > 0 && len(a.cfg.ConfigFiles) > 0 {
		found, err := localproxy.MappingFromFiles(a.cfg.ConfigFiles, missing, localproxy.ModeDestination, a.log)
		if err != nil {
			a.log.Error("reading --config-dir", "err", err)
		}
		for svc, ep := range found {
			served[svc] = ep
		}
		missing = slices.DeleteFunc(missing, func(s string) bool { _, ok := found[s]; return ok })
	}
	return served, missing
}

// seen reports whether a destination with this token runs or ran recently.
func (a *Agent) seen(hash [32]byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range a.running {
		if d.token == hash {
			return true
		}
	}
	return slices.Contains(a.recent, hash)
}

// remember adds a token's hash to the recent ones, forgetting the oldest.
func (a *Agent) remember(hash [32]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rememberLocked(hash)
}

func (a *Agent) rememberLocked(hash [32]byte) {
	if slices.Contains(a.recent, hash) {
		return
	}
	if len(a.recent) == recentTokens {
		a.recent = slices.Delete(a.recent, 0, 1)
	}
	a.recent = append(a.recent, hash)
}

// start runs a destination engine for a token, stopping the oldest one
// first when MaxTunnels run.
func (a *Agent) start(ctx context.Context, token string, hash [32]byte, endpoint string, served map[string]string) {
	services := make([]string, 0, len(served))
	for svc := range served {
		services = append(services, svc)
	}
	slices.Sort(services)
	ectx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	a.next++
	d := &destination{id: a.next, services: services, token: hash, started: time.Now(), cancel: cancel}
	var evicted *destination
	if len(a.running) >= a.cfg.MaxTunnels {
		evicted = a.running[0]
		a.running = a.running[1:]
		a.rememberLocked(evicted.token)
	}
	a.running = append(a.running, d)
	a.engines.Add(1)
	a.mu.Unlock()
	if evicted != nil {
		a.log.Warn("at --max-tunnels; stopping the oldest destination", "max", a.cfg.MaxTunnels, "destination", evicted.id)
		evicted.cancel()
	}

	log := a.log.With("destination", d.id)
	pc := a.cfg.Proxy
	pc.Mode = localproxy.ModeDestination
	pc.AccessToken = token
	pc.ClientToken = "" // a fresh one per destination, kept over its reconnects
	pc.Endpoint = endpoint
	pc.Services = served
	pc.ConfigFiles = nil
	pc.PartialMapping = true
	pc.Logger = log
	log.Info("starting a destination for a tunnel notification", "services", served, "relay", endpoint)
	go func() {
		defer a.engines.Done()
		defer a.finish(d)
		err := localproxy.Run(ectx, pc)
		var he *localproxy.HandshakeError
		switch {
		case err == nil:
			log.Info("destination stopped")
		case errors.Is(err, localproxy.ErrTunnelClosed):
			log.Info("the relay closed the tunnel; destination stopped", "reason", err)
		case errors.As(err, &he):
			log.Warn("the relay refused the token (tunnel closed, expired or rotated); destination stopped", "status", he.Reason)
		default:
			log.Error("destination stopped", "err", err)
		}
	}()
}

// finish forgets an ended destination, remembering its token.
func (a *Agent) finish(d *destination) {
	d.cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running = slices.DeleteFunc(a.running, func(x *destination) bool { return x == d })
	a.rememberLocked(d.token)
}
