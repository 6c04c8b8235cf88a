package mqttbroker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/goleak"

	"github.com/warrentunnel/warren/internal/tunnel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// identities is an in-memory Identities.
type identities struct {
	mu     sync.Mutex
	certs  map[string]tunnel.Certificate
	things map[string][]string
}

func (i *identities) CertificateThings(_ context.Context, id string) (tunnel.Certificate, []string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	c, ok := i.certs[id]
	if !ok {
		return c, nil, tunnel.ErrNotFound
	}
	return c, i.things[id], nil
}

func (i *identities) set(id string, status tunnel.CertStatus, things ...string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.certs[id] = tunnel.Certificate{ID: id, Status: status}
	i.things[id] = things
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// issue signs a leaf; server leaves cover 127.0.0.1.
func (ca *testCA) issue(t *testing.T, server bool) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

type client struct {
	c    *paho.Client
	msgs chan *paho.Publish
}

func connect(t *testing.T, addr string, roots *x509.CertPool, cert tls.Certificate, id string) (*client, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}})
	if err != nil {
		return nil, err
	}
	cl := &client{msgs: make(chan *paho.Publish, 8)}
	// paho writes a packet in several writes; the wrapper keeps its
	// pinger's from interleaving with them.
	cl.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { cl.msgs <- pr.Packet; return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}); err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { cl.c.Disconnect(&paho.Disconnect{}); <-cl.c.Done() })
	return cl, nil
}

func (cl *client) subscribe(t *testing.T, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, _ := cl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 {
		t.Fatalf("subscribe %s: no SUBACK", topic)
	}
	return sa.Reasons[0]
}

func (cl *client) next(d time.Duration) *paho.Publish {
	select {
	case p := <-cl.msgs:
		return p
	case <-time.After(d):
		return nil
	}
}

// A device gets in with an ACTIVE certificate of the device CA, uses only
// its things' topics (subscribing, publishing, receiving), keeps its
// session to itself, and is dropped when its certificate is deactivated.
func TestBrokerAuthAndACL(t *testing.T) {
	ca := newCA(t)
	serverCert, _ := ca.issue(t, true)
	ids := &identities{certs: map[string]tunnel.Certificate{}, things: map[string][]string{}}
	devCAs := x509.NewCertPool()
	devCAs.AddCert(ca.cert)
	b, err := New(Config{Listen: "127.0.0.1:0", ServerCert: serverCert, DeviceCAs: devCAs, Identities: ids, ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	certA, leafA := ca.issue(t, false)
	certB, leafB := ca.issue(t, false)
	ids.set(CertificateID(leafA), tunnel.CertActive, "A")
	ids.set(CertificateID(leafB), tunnel.CertActive, "B")

	a, err := connect(t, b.Addr(), devCAs, certA, "dev")
	if err != nil {
		t.Fatal(err)
	}
	bc, err := connect(t, b.Addr(), devCAs, certB, "dev") // the same client id: no takeover
	if err != nil {
		t.Fatal(err)
	}
	if code := a.subscribe(t, "$aws/things/A/tunnels/notify"); code != 1 {
		t.Fatalf("own topic: %#x", code)
	}
	for _, f := range []string{"$aws/things/B/tunnels/notify", "$aws/things/+/tunnels/notify", "#", "$aws/things/AB/x"} {
		if code := a.subscribe(t, f); code != 0x87 {
			t.Errorf("A subscribing to %s: %#x, want 0x87", f, code)
		}
	}
	if code := bc.subscribe(t, "$aws/things/B/#"); code != 1 {
		t.Fatalf("B's own filter: %#x", code)
	}
	// B publishing to A's topic is dropped; to its own, delivered.
	ctx := context.Background()
	bc.c.Publish(ctx, &paho.Publish{Topic: "$aws/things/A/tunnels/notify", QoS: 1, Payload: []byte("spoof")})
	if p := a.next(500 * time.Millisecond); p != nil {
		t.Fatalf("A received %s from B", p.Payload)
	}
	if err := b.Publish(ctx, "$aws/things/A/tunnels/notify", []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	if p := a.next(5 * time.Second); p == nil || string(p.Payload) != `{"x":1}` || p.QoS != 1 {
		t.Fatalf("A's notification: %+v", p)
	}
	if p := bc.next(300 * time.Millisecond); p != nil {
		t.Fatalf("B received A's notification")
	}

	// Unknown and inactive certificates do not connect.
	certC, leafC := ca.issue(t, false)
	if _, err := connect(t, b.Addr(), devCAs, certC, "c"); err == nil {
		t.Fatal("a certificate the store does not know connected")
	}
	ids.set(CertificateID(leafC), tunnel.CertInactive, "C")
	if _, err := connect(t, b.Addr(), devCAs, certC, "c"); err == nil {
		t.Fatal("an INACTIVE certificate connected")
	}

	// Deactivation: the store first, then the broker drops the client.
	ids.set(CertificateID(leafA), tunnel.CertRevoked, "A")
	b.DisconnectCertificate(CertificateID(leafA))
	select {
	case <-a.c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked certificate's client is still connected")
	}
	if _, err := connect(t, b.Addr(), devCAs, certA, "dev"); err == nil {
		t.Fatal("a revoked certificate reconnected")
	}
	select {
	case <-bc.c.Done():
		t.Fatal("B's client was dropped with A's")
	default:
	}
	// Admitted clients keep their connection past ConnectTimeout
	// (keepalive rules from CONNECT on); a silent one is closed at it.
	silent, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	if n, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatalf("a silent connection got %d bytes", n)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("a silent connection was closed after %v, not at ConnectTimeout", took)
	}
	select {
	case <-bc.c.Done():
		t.Fatal("B's client was dropped at ConnectTimeout")
	default:
	}
}
