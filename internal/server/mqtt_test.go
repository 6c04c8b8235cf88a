package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The embedded broker serves the HTTPS listener's certificate (ca.pem
// verifies it, no second server CA), asks devices for a certificate of the
// device CA (device-ca.pem, kept across restarts), and --plaintext still
// gets it a certificate.
func TestMQTTListenerTLS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, plaintext := range []bool{false, true} {
		mqttAddr := freeAddr(t)
		s, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: dir, Plaintext: plaintext, MQTT: MQTT{Listen: mqttAddr}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		caPEM, _ := os.ReadFile(filepath.Join(dir, CAFile))
		pool.AppendCertsFromPEM(caPEM)
		var asked []string
		c, err := tls.Dial("tcp", mqttAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
			GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
				for _, dn := range cri.AcceptableCAs {
					asked = append(asked, string(dn))
				}
				return &tls.Certificate{}, nil
			}})
		if err != nil {
			t.Fatalf("plaintext=%v: the broker's certificate does not verify with ca.pem: %v", plaintext, err)
		}
		mqttLeaf := c.ConnectionState().PeerCertificates[0]
		c.Close()
		if len(asked) != 1 || !strings.Contains(asked[0], "Warren device CA") {
			t.Fatalf("the broker asks for client certificates of %q, want the device CA", asked)
		}
		if !plaintext {
			hc, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			if !hc.ConnectionState().PeerCertificates[0].Equal(mqttLeaf) {
				t.Fatal("the MQTT listener's certificate is not the HTTPS listener's")
			}
			hc.Close()
		}
		if got := s.mqttEndpoint(); got != mqttAddr {
			t.Fatalf("endpoint %q, want %q", got, mqttAddr)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, DeviceCAFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: dir, MQTT: MQTT{Listen: freeAddr(t), URL: "mqtt://127.0.0.1"}}); err == nil ||
		!strings.Contains(err.Error(), "exclude each other") {
		t.Fatalf("both brokers: %v", err)
	}
}
