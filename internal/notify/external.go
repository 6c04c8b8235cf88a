package notify

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// ExternalConfig names an external MQTT broker (MQTT 5).
type ExternalConfig struct {
	// URL is mqtt://host[:1883] or mqtts://host[:8883], optionally with
	// user:password@ (Username and Password, when set, win).
	URL                string
	Username, Password string
	TLS                *tls.Config // for mqtts; nil: the system's roots
	Logger             *slog.Logger
}

// External publishes to an external MQTT broker, connecting in the
// background and reconnecting whenever the connection drops. It is a Sender.
type External struct {
	cm  *autopaho.ConnectionManager
	url string // without credentials, for messages
}

// ParseBrokerURL checks an --mqtt-url and splits off its credentials: the
// URL returned has a port and no user information.
func ParseBrokerURL(raw string) (u *url.URL, username, password string, err error) {
	u, err = url.Parse(raw)
	if err != nil {
		return nil, "", "", fmt.Errorf("MQTT broker URL: %w", err)
	}
	port := ""
	switch u.Scheme {
	case "mqtt", "tcp":
		u.Scheme, port = "mqtt", "1883"
	case "mqtts", "tls", "ssl":
		u.Scheme, port = "mqtts", "8883"
	default:
		return nil, "", "", fmt.Errorf("MQTT broker URL %q: the scheme must be mqtt:// or mqtts://", u.Redacted())
	}
	if u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, "", "", fmt.Errorf("MQTT broker URL %q: want mqtt[s]://[user:password@]host[:port]", u.Redacted())
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if u.User != nil {
		username = u.User.Username()
		password, _ = u.User.Password()
		u.User = nil
	}
	u.Path = ""
	return u, username, password, nil
}

// DialExternal starts connecting to the broker and returns at once; a
// broker that is down is retried in the background.
func DialExternal(cfg ExternalConfig) (*External, error) {
	u, user, pass, err := ParseBrokerURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Username != "" {
		user = cfg.Username
	}
	if cfg.Password != "" {
		pass = cfg.Password
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id := make([]byte, 8)
	rand.Read(id)
	pc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        cfg.TLS,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(500*time.Millisecond, 30*time.Second, time.Second, 2),
		ConnectTimeout:                5 * time.Second,
		ConnectUsername:               user,
		ConnectPassword:               []byte(pass),
		OnConnectionUp: func(*autopaho.ConnectionManager, *paho.Connack) {
			log.Info("connected to the MQTT broker", "broker", u.String())
		},
		OnConnectError: func(err error) {
			log.Warn("cannot connect to the MQTT broker; retrying", "broker", u.String(), "err", err)
		},
		ClientConfig: paho.ClientConfig{ClientID: "warren-" + hex.EncodeToString(id)},
	}
	// The connection manager lives until Close, not until the request that
	// created it ends.
	cm, err := autopaho.NewConnection(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("MQTT broker %s: %w", u, err)
	}
	return &External{cm: cm, url: u.String()}, nil
}

// Publish publishes with QoS 1, waiting (as long as ctx allows) for the
// connection and the broker's acknowledgement.
func (e *External) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := e.cm.AwaitConnection(ctx); err != nil {
		return fmt.Errorf("not connected to the MQTT broker %s: %w", e.url, err)
	}
	res, err := e.cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: payload})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", e.url, err)
	}
	if res != nil && res.ReasonCode >= 0x80 {
		return fmt.Errorf("publish to %s: refused by the broker (reason code %#x)", e.url, res.ReasonCode)
	}
	return nil
}

// Close disconnects and waits for the connection's goroutines.
func (e *External) Close(ctx context.Context) error {
	err := e.cm.Disconnect(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
