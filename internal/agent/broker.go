package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Default broker ports: MQTT over TLS (as AWS IoT Core) and plain MQTT.
const (
	defaultTLSPort   = "8883"
	defaultPlainPort = "1883"
)

// BrokerURL parses the --endpoint of the MQTT broker: host[:port] and
// mqtts://host[:port] are MQTT over TLS (port 8883 by default),
// mqtt://host[:port] plain MQTT over TCP (port 1883 by default).
func BrokerURL(endpoint string) (*url.URL, error) {
	scheme, hostPort := "mqtts", endpoint
	if s, rest, ok := strings.Cut(endpoint, "://"); ok {
		scheme, hostPort = strings.ToLower(s), rest
		if scheme != "mqtt" && scheme != "mqtts" {
			return nil, fmt.Errorf("broker endpoint %q: want host:port, mqtts://host:port or mqtt://host:port", endpoint)
		}
	}
	hostPort = strings.TrimSuffix(hostPort, "/")
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		// No port: the scheme's default.
		host, port = strings.Trim(hostPort, "[]"), defaultTLSPort
		if strings.Contains(host, ":") && net.ParseIP(host) == nil {
			return nil, fmt.Errorf("broker endpoint %q: want host:port, mqtts://host:port or mqtt://host:port", endpoint)
		}
		if scheme == "mqtt" {
			port = defaultPlainPort
		}
	}
	if host == "" || strings.ContainsAny(host, "/?#@ ") || strings.Contains(port, ":") {
		return nil, fmt.Errorf("broker endpoint %q: want host:port, mqtts://host:port or mqtt://host:port", endpoint)
	}
	if port == "" {
		return nil, fmt.Errorf("broker endpoint %q: empty port", endpoint)
	}
	return &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}, nil
}

// BrokerTLS is the TLS configuration of an MQTT over TLS connection: the
// device's client certificate and key (PEM files; both or neither) and the
// CA certificates that verify the broker (a PEM file or a directory of them;
// the system roots when empty).
func BrokerTLS(broker *url.URL, certFile, keyFile, caPath string) (*tls.Config, error) {
	if broker.Scheme != "mqtts" {
		if certFile != "" || keyFile != "" || caPath != "" {
			return nil, errors.New("--cert, --key and --ca are for a TLS broker endpoint (host:port or mqtts://), not mqtt://")
		}
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: broker.Hostname()}
	switch {
	case certFile != "" && keyFile != "":
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	case certFile != "" || keyFile != "":
		return nil, errors.New("give both --cert and --key, or neither")
	}
	if caPath != "" {
		pool, err := loadCAs(caPath)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// loadCAs reads the PEM certificates of a file or of a directory's regular
// files. Unlike the relay's -c, the broker's CA replaces the system roots:
// a device trusts its own broker's CA and nothing else.
func loadCAs(path string) (*x509.CertPool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		files = files[:0]
		for _, e := range entries {
			if e.Type().IsRegular() {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	pool := x509.NewCertPool()
	added := 0
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if pool.AppendCertsFromPEM(pem) {
			added++
		}
	}
	if added == 0 {
		return nil, fmt.Errorf("%s: no PEM certificates found", path)
	}
	return pool, nil
}
