package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/warrentunnel/warren/internal/api"
	"github.com/warrentunnel/warren/internal/mqttbroker"
	"github.com/warrentunnel/warren/internal/notify"
)

// mqttHost is the host of --mqtt-listen, which the generated server
// certificate covers too; "" without an embedded broker.
func (s *Server) mqttHost() string {
	host, _, err := net.SplitHostPort(s.cfg.MQTT.Listen)
	if err != nil {
		return ""
	}
	return host
}

// prepareMQTT opens the device CA and builds the notification path the
// configuration asks for: the embedded broker (listening from Start) or a
// connection to an external one, behind one bounded publisher.
func (s *Server) prepareMQTT() error {
	ca, err := loadOrCreateDeviceCA(s.cfg.DataDir)
	if err != nil {
		return err
	}
	s.deviceCA = ca
	m := s.cfg.MQTT
	var sender notify.Sender
	switch {
	case m.Listen != "" && m.URL != "":
		return errors.New("--mqtt-listen and --mqtt-url exclude each other: notifications go to the embedded broker or to an external one")
	case m.Listen != "":
		if _, _, err := net.SplitHostPort(m.Listen); err != nil {
			return fmt.Errorf("--mqtt-listen %q: %w", m.Listen, err)
		}
		cert, err := s.mqttCertificate()
		if err != nil {
			return err
		}
		s.broker, err = mqttbroker.New(mqttbroker.Config{
			Listen: m.Listen, ServerCert: cert, DeviceCAs: ca.pool(), CipherSuites: tlsCipherSuites(), Identities: s.store,
			Logger: s.log.With("component", "mqtt"),
		})
		if err != nil {
			return err
		}
		sender = s.broker
	case m.URL != "":
		var tc *tls.Config
		if m.CAFile != "" {
			pem, err := os.ReadFile(m.CAFile)
			if err != nil {
				return fmt.Errorf("--mqtt-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--mqtt-ca %s: no PEM certificate in it", m.CAFile)
			}
			tc = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		}
		s.external, err = notify.DialExternal(notify.ExternalConfig{URL: m.URL, Username: m.Username, Password: m.Password,
			TLS: tc, Logger: s.log.With("component", "mqtt")})
		if err != nil {
			return fmt.Errorf("--mqtt-url: %w", err)
		}
		sender = s.external
	default:
		return nil
	}
	cfg := notify.DefaultConfig()
	cfg.Sender, cfg.Logger = sender, s.log.With("component", "notify")
	s.notifier = notify.New(cfg)
	return nil
}

// mqttCertificate is the embedded broker's TLS certificate: the HTTPS
// listener's (from the same CA, ca.pem, which devices trust), generated for
// it when the HTTPS listener has none (--plaintext).
func (s *Server) mqttCertificate() (tls.Certificate, error) {
	if s.tls != nil {
		return s.tls.Certificates[0], nil
	}
	cert, err := ensureCertificates(s.cfg.DataDir, s.mqttHost())
	if err != nil {
		return cert, fmt.Errorf("MQTT TLS certificate: %w", err)
	}
	return cert, nil
}

// startMQTT starts the embedded broker's listener, if there is one.
func (s *Server) startMQTT() error {
	if s.broker == nil {
		if s.external != nil {
			s.log.Info("tunnel notifications go to an external MQTT broker", "endpoint", s.mqttEndpoint())
		}
		return nil
	}
	if err := s.broker.Start(); err != nil {
		return err
	}
	s.log.Info("MQTT broker serving (TLS; devices present a certificate from create-keys-and-certificate and trust "+CAFile+")",
		"endpoint", s.broker.Addr(), "device_ca", DeviceCAFile)
	return nil
}

// closeNotifications stops the publisher (dropping what waits), then the
// broker or the external connection.
func (s *Server) closeNotifications(ctx context.Context) error {
	if s.notifier != nil {
		s.notifier.Close()
	}
	var errs []error
	if s.broker != nil {
		errs = append(errs, s.broker.Close())
	}
	if s.external != nil {
		errs = append(errs, s.external.Close(ctx))
	}
	return errors.Join(errs...)
}

// apiNotifier is the API's Notifier: nil (an interface without a value)
// when notifications are off.
func (s *Server) apiNotifier() api.Notifier {
	if s.notifier == nil {
		return nil
	}
	return s.notifier
}

func (s *Server) apiBroker() api.CertificateBroker {
	if s.broker == nil {
		return nil
	}
	return s.broker
}

// mqttEndpoint is DescribeEndpoint's answer: host:port of the broker
// devices use. An unspecified listen host becomes the machine's name.
func (s *Server) mqttEndpoint() string {
	switch {
	case s.cfg.MQTT.Listen != "":
		host, port, err := net.SplitHostPort(s.cfg.MQTT.Listen)
		if err != nil {
			return ""
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			if hn, err := os.Hostname(); err == nil {
				host = hn
			}
		}
		return net.JoinHostPort(host, port)
	case s.cfg.MQTT.URL != "":
		u, _, _, err := notify.ParseBrokerURL(s.cfg.MQTT.URL)
		if err != nil {
			return ""
		}
		return u.Host
	}
	return ""
}
