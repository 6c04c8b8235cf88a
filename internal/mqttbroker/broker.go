// Package mqttbroker is Warren's embedded MQTT broker (mochi-mqtt): MQTT over
// TLS with mutual authentication, where a device presents a certificate
// signed by Warren's device CA, is admitted only while that certificate is
// ACTIVE in the store, and may publish, subscribe and receive only on the
// topics of the things its certificate is attached to
// ($aws/things/<thing>/...). Warren itself publishes in-process (it is a
// notify.Sender). It owns the broker's listener and its rules, not the
// certificates (the store and the api package) nor what is published
// (notify).
package mqttbroker

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// Identities finds a device certificate by id, with the things it is
// attached to; tunnel.ErrNotFound for one the store does not know.
type Identities interface {
	CertificateThings(ctx context.Context, id string) (tunnel.Certificate, []string, error)
}

// Config configures a broker. Every field but Logger is required.
type Config struct {
	Listen     string          // host:port of the MQTT over TLS listener
	ServerCert tls.Certificate // the broker's certificate (the HTTPS listener's)
	DeviceCAs  *x509.CertPool  // the CAs that sign device certificates
	// CipherSuites are the TLS 1.2 suites accepted (nil: Go's defaults).
	CipherSuites []uint16
	Identities   Identities
	Logger       *slog.Logger
	// ConnectTimeout bounds the time from a connection's accept to its
	// CONNECT packet, TLS handshake included (default 10 s); mochi's
	// keepalive deadline takes over from there. Without it a client that
	// sends nothing would hold its goroutine for ever, uncounted, since
	// only admitted clients count against MaximumClients.
	ConnectTimeout time.Duration
}

// Broker is a running embedded broker.
type Broker struct {
	srv     *mqtt.Server
	listen  string
	tls     *tls.Config
	ln      net.Listener // after Start
	timeout time.Duration
	log     *slog.Logger
	started bool // set by Start, read by Close (their caller orders them)
}

// listenerID names the one listener in mochi's logs.
const listenerID = "mqtts"

// New builds a broker; Start listens. Publish works before Start (there is
// nobody to deliver to yet).
func New(cfg Config) (*Broker, error) {
	if cfg.Identities == nil || cfg.DeviceCAs == nil {
		return nil, errors.New("mqttbroker: Identities and DeviceCAs are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Capabilities: capabilities(), Logger: slog.New(quietHandler{log.Handler()})})
	if err := srv.AddHook(&authHook{ids: cfg.Identities, log: log}, nil); err != nil {
		return nil, err
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cfg.ServerCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cfg.DeviceCAs,
		CipherSuites: cfg.CipherSuites,
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	return &Broker{srv: srv, listen: cfg.Listen, tls: tc, timeout: cfg.ConnectTimeout, log: log}, nil
}

// Start listens on the configured address and serves until Close.
func (b *Broker) Start() error {
	ln, err := net.Listen("tcp", b.listen)
	if err != nil {
		return fmt.Errorf("MQTT listener: %w", err)
	}
	b.ln = ln
	if err := b.srv.AddListener(listeners.NewNet(listenerID, tls.NewListener(deadlineListener{ln, b.timeout}, b.tls))); err != nil {
		ln.Close()
		return err
	}
	b.started = true
	return b.srv.Serve()
}

// deadlineListener gives each accepted connection a deadline to complete
// its TLS handshake and send CONNECT.
type deadlineListener struct {
	net.Listener
	timeout time.Duration
}

func (l deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.SetDeadline(time.Now().Add(l.timeout))
	}
	return c, err
}

// Addr is the listener's address (host:port).
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// Publish publishes a message with QoS 1 to the devices subscribed to topic,
// through the broker's inline client (no network, no ACL).
func (b *Broker) Publish(_ context.Context, topic string, payload []byte) error {
	return b.srv.Publish(topic, payload, false, 1)
}

// DisconnectCertificate drops every client connected with certificate id at
// once (its status just left ACTIVE); the authentication hook refuses it
// from then on.
func (b *Broker) DisconnectCertificate(id string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Inline || certificateID(cl) != id {
			continue
		}
		b.log.Info("disconnecting an MQTT client whose certificate is no longer active", "client", cl.ID, "certificate", id)
		_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
}

// Close disconnects every client, stops listening and waits for the
// clients' goroutines.
func (b *Broker) Close() error {
	if !b.started {
		return nil
	}
	return b.srv.Close()
}

// certificateID is the id (hex SHA-256 of the DER) of the certificate a
// client presented; "" if it presented none.
func certificateID(cl *mqtt.Client) string {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return ""
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	return CertificateID(certs[0])
}

// CertificateID is a certificate's id as AWS IoT and Warren give it: the
// lowercase hex SHA-256 of its DER encoding.
func CertificateID(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Host returns the host part of a listen address, for the server
// certificate's names.
func Host(listen string) (string, error) {
	host, _, err := net.SplitHostPort(listen)
	return host, err
}

// quietHandler passes mochi's own log records on at debug level (errors
// stay errors): it logs every client's end as a warning with no message,
// where this package logs what matters (refusals, disconnections) itself.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, demote(l))
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as)}
}
func (h quietHandler) WithGroup(g string) slog.Handler { return quietHandler{h.Handler.WithGroup(g)} }

func demote(l slog.Level) slog.Level {
	if l >= slog.LevelError {
		return l
	}
	return slog.LevelDebug
}

// capabilities bound what one client may hold in the broker, with AWS IoT
// Core's limits where it has one: 128 KiB packets, 100 QoS 1 messages in
// flight from a client, sessions kept an hour after their client left.
func capabilities() *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumClients = 100_000
	c.MaximumPacketSize = 128 << 10
	c.ReceiveMaximum = 100
	c.MaximumInflight = 1024
	c.MaximumClientWritesPending = 256
	c.MaximumSessionExpiryInterval = 3600
	c.MaximumQos = 1 // as AWS IoT Core
	return c
}
