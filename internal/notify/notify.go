// Package notify owns telling a device of its tunnel: the notification AWS
// IoT Secure Tunneling publishes to $aws/things/<thingName>/tunnels/notify,
// a bounded queue with one goroutine that publishes each with a few retries
// (so an API call never waits for, nor fails because of, a broker), and the
// publisher to an external MQTT broker (External). It does not decide when
// a device is notified (the api package does) nor run the embedded broker
// (mqttbroker, which is a Sender too).
package notify

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// Notification is the message a device's destination local proxy is started
// from, as AWS sends it.
type Notification struct {
	ClientAccessToken string   `json:"clientAccessToken"`
	ClientMode        string   `json:"clientMode"` // "destination"
	Region            string   `json:"region"`
	Services          []string `json:"services"`
}

// ModeDestination is the clientMode of a destination's notification.
const ModeDestination = "destination"

// Topic is the topic a thing's tunnel notifications are published to.
func Topic(thingName string) string { return "$aws/things/" + thingName + "/tunnels/notify" }

// Sender publishes one message with QoS 1, returning once the broker took it
// (or failed to).
type Sender interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Config configures a Publisher. Sender is required; the rest has defaults.
type Config struct {
	Sender Sender
	Logger *slog.Logger
	// QueueSize bounds the notifications waiting to be published; past it
	// a notification is dropped (and logged). Default 256.
	QueueSize int
	// Attempts is how many times a notification is tried (default 5), with
	// a pause of Backoff (default 500 ms) after the first failure, doubling
	// after each; each try may take AttemptTimeout (default 5 s).
	Attempts       int
	Backoff        time.Duration
	AttemptTimeout time.Duration
}

// DefaultConfig is the configuration of `warren serve`'s publisher.
func DefaultConfig() Config {
	return Config{QueueSize: 256, Attempts: 5, Backoff: 500 * time.Millisecond, AttemptTimeout: 5 * time.Second}
}

// Publisher publishes notifications in the background. Its methods are safe
// for concurrent use.
type Publisher struct {
	cfg    Config
	log    *slog.Logger
	queue  chan message
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type message struct {
	thing, mode string
	payload     []byte
}

// New starts a publisher; Close stops it.
func New(cfg Config) *Publisher {
	def := DefaultConfig()
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = def.QueueSize
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = def.Attempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = def.Backoff
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = def.AttemptTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{cfg: cfg, log: cfg.Logger, queue: make(chan message, cfg.QueueSize), ctx: ctx, cancel: cancel}
	p.wg.Add(1)
	go p.run()
	return p
}

// Notify queues a notification for thingName's device and returns at once.
// When the queue is full or the publisher closed, the notification is
// dropped and logged: the tunnel works all the same, and its destination
// token can still be handed to the device another way.
func (p *Publisher) Notify(_ context.Context, thingName string, n Notification) {
	payload, err := json.Marshal(n)
	if err != nil { // a struct of strings always marshals
		p.log.Error("encode tunnel notification", "thing", thingName, "err", err)
		return
	}
	m := message{thing: thingName, mode: n.ClientMode, payload: payload}
	select {
	case <-p.ctx.Done():
		p.log.Warn("tunnel notification dropped: the publisher is closed", "thing", thingName)
		return
	default:
	}
	select {
	case p.queue <- m:
	default:
		p.log.Warn("tunnel notification dropped: too many waiting to be published", "thing", thingName, "queue", cap(p.queue))
	}
}

// Close stops publishing, dropping what still waits, and waits for the
// publisher's goroutine.
func (p *Publisher) Close() {
	p.cancel()
	p.wg.Wait()
	if n := len(p.queue); n > 0 {
		p.log.Warn("tunnel notifications dropped at shutdown", "count", n)
	}
}

func (p *Publisher) run() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case m := <-p.queue:
			p.publish(m)
		}
	}
}

// publish tries m up to Attempts times. The log names the thing and the
// error, never the payload: it holds an access token.
func (p *Publisher) publish(m message) {
	topic := Topic(m.thing)
	pause := p.cfg.Backoff
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.AttemptTimeout)
		err := p.cfg.Sender.Publish(ctx, topic, m.payload)
		cancel()
		if err == nil {
			p.log.Info("tunnel notification published", "thing", m.thing, "clientMode", m.mode, "topic", topic, "attempt", attempt)
			return
		}
		if p.ctx.Err() != nil {
			p.log.Warn("tunnel notification dropped at shutdown", "thing", m.thing, "err", err)
			return
		}
		if attempt >= p.cfg.Attempts {
			p.log.Error("tunnel notification not published; giving up", "thing", m.thing, "topic", topic, "attempts", attempt, "err", err)
			return
		}
		p.log.Warn("tunnel notification not published; retrying", "thing", m.thing, "topic", topic, "attempt", attempt, "retry_in", pause, "err", err)
		select {
		case <-p.ctx.Done():
			p.log.Warn("tunnel notification dropped at shutdown", "thing", m.thing)
			return
		case <-time.After(pause):
		}
		pause *= 2
	}
}
