package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"go.uber.org/goleak"

	"github.com/warrentunnel/warren/internal/localproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBrokerURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"broker.example:8883", "mqtts://broker.example:8883"},
		{"broker.example", "mqtts://broker.example:8883"},
		{"mqtts://10.0.0.1:9000", "mqtts://10.0.0.1:9000"},
		{"mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"},
		{"MQTT://127.0.0.1", "mqtt://127.0.0.1:1883"},
		{"[::1]:8883", "mqtts://[::1]:8883"},
		{"ws://h:1", ""},
		{"mqtt://", ""},
		{"h:1:2", ""},
		{"mqtt://user@h:1", ""},
		{"h:", ""},
	} {
		u, err := BrokerURL(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%q: accepted as %s", c.in, u)
		case c.want != "" && (err != nil || u.String() != c.want):
			t.Errorf("%q: %v, %v; want %s", c.in, u, err, c.want)
		}
	}
}

func TestParseNotification(t *testing.T) {
	tok := "AQGAAXiSecretTokenValue"
	for _, c := range []struct {
		payload string
		ok      bool
	}{
		{`{"clientAccessToken":"` + tok + `","clientMode":"destination","region":"us-east-1","services":["SSH","HTTP","SSH"]}`, true},
		{`{"clientAccessToken":"` + tok + `","clientMode":"destination","services":["HTTP"],"extra":1}`, true},
		{`{"clientAccessToken":"","clientMode":"destination","services":["HTTP"]}`, false},
		{`{"clientAccessToken":"` + tok + `","region":"US EAST","services":["HTTP"]}`, false},
		{`{"clientAccessToken":"` + tok + `","services":["bad service"]}`, false},
		{`{"clientAccessToken":"` + tok + `","services":"HTTP"}`, false},
		{`{"clientAccessToken":"` + tok + `"`, false},
		{`[]`, false},
		{`{"clientAccessToken":"` + strings.Repeat("a", maxNotification) + `"}`, false},
	} {
		n, err := ParseNotification([]byte(c.payload))
		if (err == nil) != c.ok {
			t.Errorf("%.80s: err %v, want ok=%v", c.payload, err, c.ok)
		}
		if err != nil && strings.Contains(err.Error(), tok) {
			t.Errorf("the error quotes the token: %v", err)
		}
		if err == nil && !slices.Equal(n.Services, []string{"HTTP", "SSH"}) && !slices.Equal(n.Services, []string{"HTTP"}) {
			t.Errorf("services %v", n.Services)
		}
	}
}

func FuzzParseNotification(f *testing.F) {
	f.Add([]byte(`{"clientAccessToken":"tok","clientMode":"destination","region":"us-east-1","services":["HTTP","SSH"]}`))
	f.Add([]byte(`{"clientAccessToken":"t\u0000","services":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNotification(b)
		if err != nil {
			return
		}
		if localproxy.ValidateAccessToken(n.ClientAccessToken) != nil || !slices.IsSorted(n.Services) || len(slices.Compact(slices.Clone(n.Services))) != len(n.Services) {
			t.Fatalf("accepted %+v", n)
		}
	})
}

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type pki struct {
	pool                      *x509.CertPool
	server                    tls.Certificate
	caFile, certFile, keyFile string
	otherCAFile               string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(0)
	sign := func(tmpl, parent *x509.Certificate, pub, signer any) (*x509.Certificate, []byte) {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, der
	}
	caKey := newKey()
	ca, caDER := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, &caKey.PublicKey, caKey)
	p := &pki{pool: x509.NewCertPool(), caFile: write("ca.pem", "CERTIFICATE", caDER)}
	p.pool.AddCert(ca)
	otherKey := newKey()
	_, otherDER := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "other CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, &otherKey.PublicKey, otherKey)
	p.otherCAFile = write("other-ca.pem", "CERTIFICATE", otherDER)

	srvKey := newKey()
	_, srvDER := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "broker"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, &srvKey.PublicKey, caKey)
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}

	cliKey := newKey()
	_, cliDER := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "Device1"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, &cliKey.PublicKey, caKey)
	p.certFile = write("device.pem", "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	p.keyFile = write("device.key", "PRIVATE KEY", keyDER)
	return p
}

// mtlsBroker is an in-test MQTT broker on a TLS listener that requires a
// client certificate of the pki's CA. It records the clients that
// connected.
func mtlsBroker(t *testing.T, p *pki) (*mqtt.Server, string) {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "mtls", Address: "127.0.0.1:0", TLSConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool,
	}})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Address()
}

// fakeRelay accepts a destination's WebSocket and holds it open, or answers
// 401 for the token "refused"; it records the access tokens it was shown.
type fakeRelay struct {
	*httptest.Server
	mu     sync.Mutex
	tokens []string
	conns  sync.WaitGroup
}

func newFakeRelay(t *testing.T) *fakeRelay {
	r := &fakeRelay{}
	up := websocket.Upgrader{Subprotocols: []string{"aws.iot.securetunneling-3.0"}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tok := req.Header.Get("access-token")
		r.mu.Lock()
		r.tokens = append(r.tokens, tok+" "+req.URL.Query().Get("local-proxy-mode"))
		r.mu.Unlock()
		if tok == "refused" {
			http.Error(w, "token refused", http.StatusUnauthorized)
			return
		}
		ws, err := up.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			if _, _, err := ws.NextReader(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *fakeRelay) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.tokens)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a log sink safe for the agent's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMutualTLS runs the agent against a broker that requires a client
// certificate: with the device's certificate it subscribes and starts a
// destination per notification, which shows the relay the notification's
// token; past MaxTunnels the oldest destination stops; a repeated, a source
// and a malformed notification start nothing; a refused token's destination
// stops; and Run returns promptly, with every goroutine gone, when its
// context ends. Without the right CA it never subscribes.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	broker, addr := mtlsBroker(t, p)
	relay := newFakeRelay(t)
	logs := &syncBuffer{}
	u, err := BrokerURL(addr)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := BrokerTLS(u, p.certFile, p.keyFile, p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{
		Broker: u, TLS: tlsConf, ThingName: "Device1",
		Services:   map[string]string{"HTTP": "127.0.0.1:1", "SSH": "22"},
		Proxy:      localproxy.Config{Endpoint: "ws://" + relay.Listener.Addr().String()},
		MaxTunnels: 2,
		Logger:     localproxy.NewLogger(logs, 6),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, "the subscription", func() bool { return strings.Contains(logs.String(), "subscribed to tunnel notifications") })

	publish := func(tok, mode string, services ...string) {
		t.Helper()
		b, _ := json.Marshal(Notification{ClientAccessToken: tok, ClientMode: mode, Region: "us-east-1", Services: services})
		if err := broker.Publish(NotifyTopic("Device1"), b, false, 1); err != nil {
			t.Fatal(err)
		}
	}
	ids := func() []uint64 {
		var out []uint64
		for _, tu := range a.Tunnels() {
			out = append(out, tu.ID)
		}
		return out
	}
	publish("token-one", "destination", "HTTP")
	waitFor(t, "the first destination at the relay", func() bool { return slices.Contains(relay.seen(), "token-one destination") })
	publish("token-two", "destination", "HTTP", "SSH")
	publish("token-three", "destination", "SSH", "TELNET")
	waitFor(t, "the oldest destination to stop", func() bool { return slices.Equal(ids(), []uint64{2, 3}) })
	if got := a.Tunnels()[1].Services; !slices.Equal(got, []string{"SSH"}) {
		t.Errorf("the third destination serves %v, want [SSH]", got)
	}
	publish("token-three", "destination", "SSH", "TELNET") // a repeated delivery
	publish("token-four", "source", "HTTP")
	if err := broker.Publish(NotifyTopic("Device1"), []byte(`{"clientAccessToken": 7}`), false, 1); err != nil {
		t.Fatal(err)
	}
	publish("refused", "destination", "HTTP")
	// It took the place of the oldest (2), and then ended.
	waitFor(t, "the refused token's destination to stop", func() bool {
		return strings.Contains(logs.String(), "the relay refused the token") && slices.Equal(ids(), []uint64{3})
	})
	for _, want := range []string{"ignoring a repeated tunnel notification", "not for the destination", "ignoring a malformed tunnel notification",
		`service has no mapping on this device; refusing it" service=TELNET`, "at --max-tunnels; stopping the oldest destination"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	if n := strings.Count(strings.Join(relay.seen(), ","), "token-three"); n != 1 {
		t.Errorf("token-three reached the relay %d times, want once", n)
	}
	if s := strings.Join(relay.seen(), ","); strings.Contains(s, "token-four") {
		t.Errorf("a source notification reached the relay: %s", s)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of its context's end")
	}
	if len(a.Tunnels()) != 0 {
		t.Errorf("destinations left after Run: %v", a.Tunnels())
	}
	for _, tok := range []string{"token-one", "token-two", "token-three", "token-four"} {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("the log contains the token %s", tok)
		}
	}

	// A broker the device's CA does not vouch for is never trusted.
	wrong, err := BrokerTLS(u, p.certFile, p.keyFile, p.otherCAFile)
	if err != nil {
		t.Fatal(err)
	}
	logs2 := &syncBuffer{}
	a2, err := New(Config{Broker: u, TLS: wrong, ThingName: "Device1", Services: map[string]string{"HTTP": "80"}, Logger: localproxy.NewLogger(logs2, 6)})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	a2.Run(ctx2)
	if out := logs2.String(); !strings.Contains(out, "cannot connect to the broker") || strings.Contains(out, "subscribed") {
		t.Errorf("with the wrong CA:\n%s", out)
	}
}

func TestBrokerTLSErrors(t *testing.T) {
	p := newPKI(t)
	tlsURL, _ := BrokerURL("h:8883")
	plain, _ := BrokerURL("mqtt://h")
	if _, err := BrokerTLS(plain, p.certFile, p.keyFile, ""); err == nil {
		t.Error("a client certificate for a plain broker was accepted")
	}
	if _, err := BrokerTLS(tlsURL, p.certFile, "", ""); err == nil {
		t.Error("--cert without --key was accepted")
	}
	if _, err := BrokerTLS(tlsURL, p.certFile, p.certFile, ""); err == nil {
		t.Error("a certificate as its own key was accepted")
	}
	if _, err := BrokerTLS(tlsURL, "", "", p.keyFile); err == nil {
		t.Error("a CA file without certificates was accepted")
	}
	if c, err := BrokerTLS(tlsURL, p.certFile, p.keyFile, filepath.Dir(p.caFile)); err != nil || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Errorf("a CA directory: %v", err)
	}
}

// TestMapping: -d wins, --config-dir files fill in, the rest is refused.
func TestMapping(t *testing.T) {
	f := filepath.Join(t.TempDir(), "services.ini")
	if err := os.WriteFile(f, []byte("HTTP = 9\nSSH = 2222\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u, _ := BrokerURL("mqtt://127.0.0.1")
	a, err := New(Config{Broker: u, ThingName: "D", Services: map[string]string{"HTTP": "80"}, ConfigFiles: []string{f},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	served, refused := a.mapping([]string{"HTTP", "SSH", "TELNET"})
	if want := map[string]string{"HTTP": "80", "SSH": "2222"}; !maps.Equal(served, want) || !slices.Equal(refused, []string{"TELNET"}) {
		t.Errorf("mapping: %v, refused %v", served, refused)
	}
	for _, c := range []Config{
		{ThingName: "D", Services: map[string]string{"HTTP": "80"}},
		{Broker: u, ThingName: "bad thing", Services: map[string]string{"HTTP": "80"}},
		{Broker: u, ThingName: "D"},
		{Broker: u, ThingName: "D", Services: map[string]string{"HTTP": "99999"}},
		{Broker: u, ThingName: "D", Services: map[string]string{"HTTP": "80"}, Proxy: localproxy.Config{Endpoint: "bad host"}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
}
