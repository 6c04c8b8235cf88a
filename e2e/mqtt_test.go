package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// tunnelNotification is the message a device's tunnel notification topic
// carries, as AWS sends it.
type tunnelNotification struct {
	ClientAccessToken string   `json:"clientAccessToken"`
	ClientMode        string   `json:"clientMode"`
	Region            string   `json:"region"`
	Services          []string `json:"services"`
}

func notifyTopic(thing string) string { return "$aws/things/" + thing + "/tunnels/notify" }

// mqttClient is a paho MQTT 5 client that keeps what it receives.
type mqttClient struct {
	c    *paho.Client
	msgs chan *paho.Publish
	ack  *paho.Connack
}

// dialMQTT connects to addr; tlsCfg nil means plain TCP. It returns the
// connect error (a refused CONNACK, a failed handshake) rather than failing.
func dialMQTT(t *testing.T, addr string, tlsCfg *tls.Config, clientID string) (*mqttClient, error) {
	t.Helper()
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: 10 * time.Second}
	if tlsCfg != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tlsCfg)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	m := &mqttClient{msgs: make(chan *paho.Publish, 16)}
	// paho writes a packet in several writes; the wrapper keeps its
	// pinger's from interleaving with them.
	m.c = paho.NewClient(paho.ClientConfig{ClientID: clientID, Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case m.msgs <- pr.Packet:
			default:
				t.Errorf("MQTT client %s: too many messages unread", clientID)
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	m.ack, err = m.c.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true})
	if err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() {
		m.c.Disconnect(&paho.Disconnect{})
		<-m.c.Done()
	})
	return m, nil
}

func (m *mqttClient) subscribe(topic string) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, err := m.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}})
	if sa != nil && len(sa.Reasons) == 1 {
		return sa.Reasons[0], err
	}
	return 0xff, err
}

// next waits for the next message.
func (m *mqttClient) next(t *testing.T, d time.Duration) *paho.Publish {
	t.Helper()
	select {
	case p := <-m.msgs:
		return p
	case <-time.After(d):
		t.Fatalf("no MQTT message within %v", d)
		return nil
	}
}

// none checks that no message arrives for d.
func (m *mqttClient) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case p := <-m.msgs:
		t.Fatalf("unexpected MQTT message on %s: %s", p.Topic, p.Payload)
	case <-time.After(d):
	}
}

// notification decodes a tunnel notification and checks its shape.
func notification(t *testing.T, p *paho.Publish, thing string, services ...string) tunnelNotification {
	t.Helper()
	if p.Topic != notifyTopic(thing) || p.QoS != 1 {
		t.Fatalf("notification on topic %q with QoS %d, want %q with QoS 1", p.Topic, p.QoS, notifyTopic(thing))
	}
	var n tunnelNotification
	dec := json.NewDecoder(strings.NewReader(string(p.Payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&n); err != nil {
		t.Fatalf("notification %s: %v", p.Payload, err)
	}
	if n.ClientMode != "destination" || n.Region != "us-east-1" || !slices.Equal(n.Services, services) || n.ClientAccessToken == "" {
		t.Fatalf("notification %s: want clientMode destination, region us-east-1, services %v and a token", p.Payload, services)
	}
	return n
}

// deviceTLS is the TLS configuration of a device with the certificate and
// key files given, trusting the server's CA (ca.pem of the data directory).
func (s *service) deviceTLS(t *testing.T, certFile, keyFile string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem: %v", err)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

type keysAndCert struct {
	CertificateArn string `json:"certificateArn"`
	CertificateID  string `json:"certificateId"`
	CertificatePem string `json:"certificatePem"`
	KeyPair        struct{ PublicKey, PrivateKey string }
}

// checkNoToken fails if the server's log holds any of the tokens.
func checkNoToken(t *testing.T, s *service, tokens ...string) {
	t.Helper()
	out := s.p.output()
	for _, tok := range tokens {
		if tok != "" && strings.Contains(out, tok) {
			t.Fatalf("the server's log holds an access token")
		}
	}
}

// A device's certificate (made, attached and checked with the AWS CLI v2)
// subscribes to its thing's notification topic on the embedded broker over
// mutual TLS; OpenTunnel sends it the destination token, which a local
// proxy started from the notification uses to carry traffic; a rotation of
// the destination sends the new token.
func TestMQTTNotifyEmbedded(t *testing.T) {
	clis := awsCLIs(t)
	cli, ok := clis["v2"]
	if !ok {
		t.Fatal("this test drives the AWS CLI v2 (/usr/bin/aws, Debian's awscli); .ci/run installs it")
	}
	mqttAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := startService(t, "--mqtt-listen", mqttAddr)
	s.warren(t, nil, "create-thing", "--thing-name", "NotifiedDevice")

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	var kc keysAndCert
	s.aws(t, cli, &kc, "iot", "create-keys-and-certificate", "--set-as-active",
		"--certificate-pem-outfile", certFile, "--private-key-outfile", keyFile)
	if len(kc.CertificateID) != 64 || kc.CertificateArn != "arn:aws:iot:us-east-1:"+strings.Split(kc.CertificateArn, ":")[4]+":cert/"+kc.CertificateID ||
		!strings.Contains(kc.KeyPair.PrivateKey, "PRIVATE KEY") || !strings.Contains(kc.KeyPair.PublicKey, "PUBLIC KEY") {
		t.Fatalf("create-keys-and-certificate: %+v", kc)
	}
	if b, err := os.ReadFile(certFile); err != nil || string(b) != kc.CertificatePem {
		t.Fatalf("--certificate-pem-outfile: %v", err)
	}
	if db, _ := os.ReadFile(filepath.Join(s.dir, "warren.db")); strings.Contains(string(db), strings.TrimSpace(kc.KeyPair.PrivateKey)[40:90]) {
		t.Fatal("the store holds the private key")
	}
	s.aws(t, cli, nil, "iot", "attach-thing-principal", "--thing-name", "NotifiedDevice", "--principal", kc.CertificateArn)
	var principals struct{ Principals []string }
	s.aws(t, cli, &principals, "iot", "list-thing-principals", "--thing-name", "NotifiedDevice")
	if !slices.Equal(principals.Principals, []string{kc.CertificateArn}) {
		t.Fatalf("list-thing-principals: %v", principals.Principals)
	}
	var ep struct{ EndpointAddress string }
	s.aws(t, cli, &ep, "iot", "describe-endpoint", "--endpoint-type", "iot:Data-ATS")
	if ep.EndpointAddress != mqttAddr {
		t.Fatalf("describe-endpoint: %q, want %q", ep.EndpointAddress, mqttAddr)
	}

	dev, err := dialMQTT(t, ep.EndpointAddress, s.deviceTLS(t, certFile, keyFile), "NotifiedDevice")
	if err != nil {
		t.Fatalf("device connects with its certificate: %v", err)
	}
	if code, err := dev.subscribe(notifyTopic("NotifiedDevice")); err != nil || code != 1 {
		t.Fatalf("subscribe to its own notify topic: reason %#x, %v", code, err)
	}

	var open openTunnelOut
	s.warren(t, &open, "open-tunnel", "--destination-config", "thingName=NotifiedDevice,services=ECHO")
	n := notification(t, dev.next(t, 20*time.Second), "NotifiedDevice", "ECHO")
	if n.ClientAccessToken != open.DestinationAccessToken {
		t.Fatal("the notification's token is not the tunnel's destination token")
	}

	// The device starts its destination local proxy from the notification.
	echo := echoDevice(t)
	s.localproxy(t, "destination localproxy (from MQTT)", "-d", "ECHO="+echo, "-t", n.ClientAccessToken)
	port := freePort(t)
	s.localproxy(t, "source localproxy", "-s", fmt.Sprintf("ECHO=%d", port), "-t", open.SourceAccessToken)
	waitPort(t, port)
	waitFor(t, 20*time.Second, "both peers connected", func() bool {
		var d describeOut
		s.warren(t, &d, "describe-tunnel", "--tunnel-id", open.TunnelID)
		return d.Tunnel.SourceConnectionState.Status == "CONNECTED" && d.Tunnel.DestinationConnectionState.Status == "CONNECTED"
	})
	if err := echoRoundTrip(fmt.Sprintf("127.0.0.1:%d", port), 64<<10); err != nil {
		t.Fatalf("through the tunnel the notification set up: %v", err)
	}

	var rot rotateOut
	s.warren(t, &rot, "rotate-tunnel-access-token", "--tunnel-id", open.TunnelID, "--client-mode", "DESTINATION")
	n2 := notification(t, dev.next(t, 20*time.Second), "NotifiedDevice", "ECHO")
	if n2.ClientAccessToken != rot.DestinationAccessToken || n2.ClientAccessToken == n.ClientAccessToken {
		t.Fatal("the rotation's notification does not carry the new destination token")
	}
	// A rotation of the source alone tells the device nothing.
	s.warren(t, &rot, "rotate-tunnel-access-token", "--tunnel-id", open.TunnelID, "--client-mode", "SOURCE")
	dev.none(t, time.Second)
	checkNoToken(t, s, open.DestinationAccessToken, open.SourceAccessToken, n2.ClientAccessToken)
}

// Only a device with an ACTIVE certificate of the device CA connects; it
// gets only its own things' topics; a certificate that becomes REVOKED or
// INACTIVE drops its client at once and cannot connect again. Driven with
// warren's admin commands.
func TestMQTTDeviceIdentities(t *testing.T) {
	mqttAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := startService(t, "--mqtt-listen", mqttAddr)
	dir := t.TempDir()
	type device struct {
		thing, cert, key string
		kc               keysAndCert
	}
	devices := map[string]*device{}
	for _, thing := range []string{"ThingA", "ThingB"} {
		d := &device{thing: thing, cert: filepath.Join(dir, thing+".pem"), key: filepath.Join(dir, thing+"-key.pem")}
		s.warren(t, nil, "create-thing", "--thing-name", thing)
		s.warren(t, &d.kc, "create-keys-and-certificate", "--set-as-active",
			"--certificate-pem-outfile", d.cert, "--private-key-outfile", d.key, "--public-key-outfile", filepath.Join(dir, thing+"-pub.pem"))
		if fi, err := os.Stat(d.key); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("--private-key-outfile: %v %v", fi, err)
		}
		s.warren(t, nil, "attach-thing-principal", "--thing-name", thing, "--principal", d.kc.CertificateArn)
		devices[thing] = d
	}
	a, b := devices["ThingA"], devices["ThingB"]
	var principals struct{ Principals []string }
	s.warren(t, &principals, "list-thing-principals", "--thing-name", "ThingB")
	if !slices.Equal(principals.Principals, []string{b.kc.CertificateArn}) {
		t.Fatalf("list-thing-principals: %v", principals.Principals)
	}
	var ep struct{ EndpointAddress string }
	s.warren(t, &ep, "describe-endpoint", "--endpoint-type", "iot:Data-ATS")
	if ep.EndpointAddress != mqttAddr {
		t.Fatalf("describe-endpoint: %q", ep.EndpointAddress)
	}

	// B's certificate: its own topic yes, A's no, and nothing of A's arrives.
	cb, err := dialMQTT(t, mqttAddr, s.deviceTLS(t, b.cert, b.key), "B")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := cb.subscribe(notifyTopic("ThingA")); err == nil || code != 0x87 {
		t.Fatalf("B subscribing to A's topic: reason %#x, %v; want 0x87 (not authorized)", code, err)
	}
	if code, err := cb.subscribe("$aws/things/+/tunnels/notify"); err == nil || code < 0x80 {
		t.Fatalf("B subscribing to every thing's topic: reason %#x, %v", code, err)
	}
	if code, err := cb.subscribe(notifyTopic("ThingB")); err != nil || code != 1 {
		t.Fatalf("B subscribing to its own topic: reason %#x, %v", code, err)
	}
	// A client that names A's client id does not take over A's session.
	ca, err := dialMQTT(t, mqttAddr, s.deviceTLS(t, a.cert, a.key), "shared-id")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := ca.subscribe(notifyTopic("ThingA")); err != nil || code != 1 {
		t.Fatalf("A subscribing: %#x %v", code, err)
	}
	if _, err := dialMQTT(t, mqttAddr, s.deviceTLS(t, b.cert, b.key), "shared-id"); err != nil {
		t.Fatal(err)
	}
	var open openTunnelOut
	s.warren(t, &open, "open-tunnel", "--destination-config", "thingName=ThingA,services=SSH")
	if n := notification(t, ca.next(t, 20*time.Second), "ThingA", "SSH"); n.ClientAccessToken != open.DestinationAccessToken {
		t.Fatal("A's notification carries another token")
	}
	cb.none(t, time.Second)

	// No certificate, or one from another CA: no connection.
	if _, err := dialMQTT(t, mqttAddr, s.deviceTLS(t, "", ""), "anon"); err == nil {
		t.Fatal("a client without a certificate connected")
	}
	if _, err := dialMQTT(t, mqttAddr, foreignCertTLS(t, s.deviceTLS(t, "", "")), "foreign"); err == nil {
		t.Fatal("a client with a certificate of another CA connected")
	}
	// A certificate created without --set-as-active is INACTIVE.
	var inactive keysAndCert
	s.warren(t, &inactive, "create-keys-and-certificate", "--certificate-pem-outfile", filepath.Join(dir, "i.pem"), "--private-key-outfile", filepath.Join(dir, "i-key.pem"))
	if _, err := dialMQTT(t, mqttAddr, s.deviceTLS(t, filepath.Join(dir, "i.pem"), filepath.Join(dir, "i-key.pem")), "inactive"); err == nil {
		t.Fatal("an INACTIVE certificate connected")
	}

	// Revoking A's certificate drops A's client at once; it cannot come back.
	start := time.Now()
	s.warren(t, nil, "update-certificate", "--certificate-id", a.kc.CertificateID, "--new-status", "REVOKED")
	select {
	case <-ca.c.Done():
		t.Logf("revoked client dropped %v after update-certificate was started", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the client of a revoked certificate is still connected")
	}
	if _, err := dialMQTT(t, mqttAddr, s.deviceTLS(t, a.cert, a.key), "A-again"); err == nil {
		t.Fatal("a revoked certificate connected")
	}
	_, stderr, err := s.run(bin.warren, "update-certificate", "--certificate-id", a.kc.CertificateID, "--new-status", "ACTIVE")
	if err == nil || !strings.Contains(stderr, "CertificateStateException") {
		t.Fatalf("reactivating a revoked certificate: %v %s", err, stderr)
	}
	// INACTIVE drops B too, ACTIVE lets it back; detaching takes its topics.
	s.warren(t, nil, "update-certificate", "--certificate-id", b.kc.CertificateID, "--new-status", "INACTIVE")
	select {
	case <-cb.c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the client of an INACTIVE certificate is still connected")
	}
	s.warren(t, nil, "update-certificate", "--certificate-id", b.kc.CertificateID, "--new-status", "ACTIVE")
	cb2, err := dialMQTT(t, mqttAddr, s.deviceTLS(t, b.cert, b.key), "B")
	if err != nil {
		t.Fatalf("reactivated certificate: %v", err)
	}
	s.warren(t, nil, "detach-thing-principal", "--thing-name", "ThingB", "--principal", b.kc.CertificateArn)
	if code, err := cb2.subscribe(notifyTopic("ThingB")); err == nil || code != 0x87 {
		t.Fatalf("subscribing after detach: %#x %v", code, err)
	}
	s.warren(t, &principals, "list-thing-principals", "--thing-name", "ThingB")
	if len(principals.Principals) != 0 {
		t.Fatalf("after detach: %v", principals.Principals)
	}
	checkNoToken(t, s, open.DestinationAccessToken, open.SourceAccessToken)
}

// foreignCertTLS adds to cfg a client certificate of a CA the server does
// not know.
func foreignCertTLS(t *testing.T, cfg *tls.Config) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "stranger"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}
	return cfg
}

// With --mqtt-url the notification goes to an external broker (the
// machine's Mosquitto), where any subscriber gets it.
func TestMQTTNotifyExternalBroker(t *testing.T) {
	if c, err := net.DialTimeout("tcp", mosquittoAddr, 5*time.Second); err != nil {
		t.Fatalf("this test needs the Mosquitto MQTT broker on %s (anonymous access), which the CI machine runs as a service: %v", mosquittoAddr, err)
	} else {
		c.Close()
	}
	s := startService(t, "--mqtt-url", "mqtt://"+mosquittoAddr)
	thing := fmt.Sprintf("ExternalDevice-%d", time.Now().UnixNano())
	sub, err := dialMQTT(t, mosquittoAddr, nil, "warren-e2e-"+thing)
	if err != nil {
		t.Fatalf("subscriber on Mosquitto %s: %v", mosquittoAddr, err)
	}
	if code, err := sub.subscribe(notifyTopic(thing)); err != nil || code != 1 {
		t.Fatalf("subscribe on Mosquitto: %#x %v", code, err)
	}
	open := s.openTunnel(t, thing, "SSH", "HTTP")
	n := notification(t, sub.next(t, 30*time.Second), thing, "SSH", "HTTP")
	if n.ClientAccessToken != open.DestinationAccessToken {
		t.Fatal("the notification's token is not the tunnel's destination token")
	}
	var ep struct{ EndpointAddress string }
	s.warren(t, &ep, "describe-endpoint")
	if ep.EndpointAddress != mosquittoAddr {
		t.Fatalf("describe-endpoint with --mqtt-url: %q", ep.EndpointAddress)
	}
	checkNoToken(t, s, open.DestinationAccessToken, open.SourceAccessToken)
}

// A broker that is down neither fails nor slows OpenTunnel; the server logs
// that it could not publish, without the token, and keeps retrying.
func TestMQTTBrokerDown(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	s := startService(t, "--mqtt-url", "mqtt://user:secretpw@"+dead)
	s.warren(t, nil, "create-thing", "--thing-name", "Offline")
	api := s.sdkTunnels(t)
	var tokens []string
	for i := range 3 {
		start := time.Now()
		open, err := api.OpenTunnel(&iotsecuretunneling.OpenTunnelInput{
			DestinationConfig: &iotsecuretunneling.DestinationConfig{ThingName: aws.String("Offline"), Services: []*string{aws.String("SSH")}}})
		if err != nil {
			t.Fatalf("OpenTunnel %d with the broker down: %v", i, err)
		}
		// A publication that waited for the broker would take its 5 s
		// attempt timeout at least.
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("OpenTunnel %d took %v with the broker down", i, took)
		}
		tokens = append(tokens, aws.StringValue(open.DestinationAccessToken), aws.StringValue(open.SourceAccessToken))
	}
	waitFor(t, 30*time.Second, "the server to log the failed publication", func() bool {
		return strings.Contains(s.p.output(), "tunnel notification not published; retrying")
	})
	checkNoToken(t, s, tokens...)
	if strings.Contains(s.p.output(), "secretpw") {
		t.Fatal("the server's log holds the broker's password")
	}
}

// mosquittoWithPasswords starts a private Mosquitto that admits only user
// "warren" with password pw, on two free loopback ports: MQTT, and MQTT over
// TLS with a certificate of a CA of its own (PEM file caFile).
func mosquittoWithPasswords(t *testing.T, pw string) (addr, tlsAddr, caFile string) {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			t.Fatal("this test runs the mosquitto broker (Debian's mosquitto package, which .ci/run installs): not found")
		}
		bin = "/usr/sbin/mosquitto"
	}
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "passwords")
	if out, err := exec.Command("mosquitto_passwd", "-c", "-b", pwFile, "warren", pw).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	tlsAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, port, _ := net.SplitHostPort(addr)
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	caFile, certFile, keyFile := writeBrokerCerts(t, dir)
	conf := filepath.Join(dir, "mosquitto.conf")
	cfg := "per_listener_settings false\nallow_anonymous false\npassword_file " + pwFile + "\npersistence false\n" +
		"listener " + port + " 127.0.0.1\n" +
		"listener " + tlsPort + " 127.0.0.1\ncertfile " + certFile + "\nkeyfile " + keyFile + "\n"
	if os.Geteuid() == 0 {
		// Started as root, Mosquitto becomes user mosquitto, who cannot
		// read the test's private directory.
		cfg += "user root\n"
	}
	os.WriteFile(conf, []byte(cfg), 0o600)
	start(t, "mosquitto", nil, bin, "-c", conf)
	waitPort(t, mustAtoi(t, port))
	waitPort(t, mustAtoi(t, tlsPort))
	return addr, tlsAddr, caFile
}

// writeBrokerCerts writes a CA and a server certificate for 127.0.0.1 it
// signed, with its key, into dir.
func writeBrokerCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "broker-ca.pem"), filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker-key.pem")
	for f, blk := range map[string]*pem.Block{caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(f, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// An external broker that wants credentials gets them from the URL or from
// --mqtt-username and --mqtt-password, over MQTT or over TLS (mqtts://, its
// CA from --mqtt-ca); wrong ones are logged, the API call succeeds all the
// same, and neither the password nor a token is logged.
func TestMQTTExternalBrokerCredentials(t *testing.T) {
	const pw = "s3cret-pw"
	addr, tlsAddr, brokerCA := mosquittoWithPasswords(t, pw)
	sub, err := dialMQTTAuth(t, addr, "warren", pw)
	if err != nil {
		t.Fatalf("subscriber with the password: %v", err)
	}
	if _, err := dialMQTTAuth(t, addr, "warren", "wrong"); err == nil {
		t.Fatal("the private Mosquitto admits a wrong password: the test proves nothing")
	}
	for _, c := range []struct {
		name  string
		flags []string
	}{
		{"url", []string{"--mqtt-url", "mqtt://warren:" + pw + "@" + addr}},
		{"flags", []string{"--mqtt-url", "mqtt://" + addr, "--mqtt-username", "warren", "--mqtt-password", pw}},
		{"mqtts", []string{"--mqtt-url", "mqtts://warren:" + pw + "@" + tlsAddr, "--mqtt-ca", brokerCA}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startService(t, c.flags...)
			thing := "Cred-" + c.name
			if code, err := sub.subscribe(notifyTopic(thing)); err != nil || code != 1 {
				t.Fatalf("subscribe: %#x %v", code, err)
			}
			open := s.openTunnel(t, thing, "SSH")
			if n := notification(t, sub.next(t, 30*time.Second), thing, "SSH"); n.ClientAccessToken != open.DestinationAccessToken {
				t.Fatal("wrong token")
			}
			checkNoToken(t, s, open.DestinationAccessToken, open.SourceAccessToken, pw)
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		s := startService(t, "--mqtt-url", "mqtt://"+addr, "--mqtt-username", "warren", "--mqtt-password", "not-"+pw)
		open := s.openTunnel(t, "CredWrong", "SSH")
		waitFor(t, 30*time.Second, "the server to log the refused connection", func() bool {
			return strings.Contains(s.p.output(), "cannot connect to the MQTT broker")
		})
		checkNoToken(t, s, open.DestinationAccessToken, open.SourceAccessToken, "not-"+pw)
	})
}

// dialMQTTAuth connects to a plain-TCP broker with a user name and password.
func dialMQTTAuth(t *testing.T, addr, user, pw string) (*mqttClient, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	m := &mqttClient{msgs: make(chan *paho.Publish, 16)}
	m.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			m.msgs <- pr.Packet
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	m.ack, err = m.c.Connect(ctx, &paho.Connect{ClientID: "sub-" + user + fmt.Sprint(time.Now().UnixNano()), KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pw)})
	if err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() {
		m.c.Disconnect(&paho.Disconnect{})
		<-m.c.Done()
	})
	return m, nil
}

// deviceSession is what a device with the agent sees, the way an operator
// drives it: the agent runs (subscribed already), open-tunnel alone brings up
// its destination and a page loads through a source local proxy; a rotation
// of the destination's token swaps the agent's destination for a new one
// (the old one stops on its close frame) and the page loads again through
// the same source; closing the tunnel stops the new one. No token is ever
// handed to the device, and none is in the agent's log.
func deviceSession(t *testing.T, s *service, agent *proc, thing, device string) {
	t.Helper()
	var open openTunnelOut
	s.warren(t, &open, "open-tunnel", "--destination-config", "thingName="+thing+",services=HTTP")
	agent.waitLog(t, 30*time.Second, `starting a destination for a tunnel notification" destination=1 `, 1)
	s.destinationConnected(t, open.TunnelID, "CONNECTED")
	port := freePort(t)
	s.localproxy(t, "source localproxy", "-s", fmt.Sprintf("HTTP=%d", port), "-t", open.SourceAccessToken)
	waitPort(t, port)
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/page", port)); got != "hello from "+thing+" /page" {
		t.Fatalf("through the agent's destination: %q", got)
	}

	var rot rotateOut
	s.warren(t, &rot, "rotate-tunnel-access-token", "--tunnel-id", open.TunnelID, "--client-mode", "DESTINATION")
	agent.waitLog(t, 30*time.Second, `destination stopped" destination=1 `, 1)
	agent.waitLog(t, 30*time.Second, `starting a destination for a tunnel notification" destination=2 `, 1)
	s.destinationConnected(t, open.TunnelID, "CONNECTED")
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/rotated", port)); got != "hello from "+thing+" /rotated" {
		t.Fatalf("through the rotated destination: %q", got)
	}

	s.warren(t, nil, "close-tunnel", "--tunnel-id", open.TunnelID)
	agent.waitLog(t, 30*time.Second, `destination stopped" destination=2 `, 1)
	if agent.exited() {
		t.Fatal("the agent exited with its tunnel's destination")
	}
	for _, tok := range []string{open.DestinationAccessToken, open.SourceAccessToken, rot.DestinationAccessToken} {
		if strings.Contains(agent.output(), tok) {
			t.Fatal("the agent's log holds an access token")
		}
	}
	checkNoToken(t, s, open.DestinationAccessToken, open.SourceAccessToken, rot.DestinationAccessToken)
}

// A device set up with the AWS CLI v2 (keys and certificate from Warren's
// device CA, attached to its thing, the broker's address from
// describe-endpoint) runs the agent against the embedded broker with mutual
// TLS: a device session (deviceSession), then revoking the certificate cuts
// the agent off the broker at once.
func TestAgentOnEmbeddedBroker(t *testing.T) {
	cli, ok := awsCLIs(t)["v2"]
	if !ok {
		t.Fatal("this test drives the AWS CLI v2 (/usr/bin/aws, Debian's awscli); .ci/run installs it")
	}
	mqttAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := startService(t, "--mqtt-listen", mqttAddr)
	thing := uniqueThing("AgentDevice")
	s.aws(t, cli, nil, "iot", "create-thing", "--thing-name", thing)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "device.pem"), filepath.Join(dir, "device-key.pem")
	var kc keysAndCert
	s.aws(t, cli, &kc, "iot", "create-keys-and-certificate", "--set-as-active", "--certificate-pem-outfile", certFile, "--private-key-outfile", keyFile)
	s.aws(t, cli, nil, "iot", "attach-thing-principal", "--thing-name", thing, "--principal", kc.CertificateArn)
	var ep struct{ EndpointAddress string }
	s.aws(t, cli, &ep, "iot", "describe-endpoint", "--endpoint-type", "iot:Data-ATS")

	device := httpDevice(t, "hello from "+thing)
	agent := startAgent(t, s, ep.EndpointAddress, thing, []string{bin.localproxy},
		"--cert", certFile, "--key", keyFile, "--ca", filepath.Join(s.dir, "ca.pem"), "-d", "HTTP="+device)
	deviceSession(t, s, agent, thing, device)

	// Revoking the device's certificate cuts it off the broker at once.
	s.aws(t, cli, nil, "iot", "update-certificate", "--certificate-id", kc.CertificateID, "--new-status", "REVOKED")
	waitFor(t, 20*time.Second, "the server to disconnect the agent", func() bool {
		return strings.Contains(s.p.output(), "disconnecting an MQTT client whose certificate is no longer active")
	})
	agent.waitLog(t, 30*time.Second, "lost the broker connection", 1)
}

// The same device session through the machine's Mosquitto: the server
// publishes there (--mqtt-url) and the agent subscribes there.
func TestAgentThroughMosquitto(t *testing.T) {
	needMosquitto(t)
	s := startService(t, "--mqtt-url", "mqtt://"+mosquittoAddr)
	thing := uniqueThing("MosquittoDevice")
	s.warren(t, nil, "create-thing", "--thing-name", thing)
	device := httpDevice(t, "hello from "+thing)
	agent := startAgent(t, s, "mqtt://"+mosquittoAddr, thing, []string{bin.localproxy}, "-d", "HTTP="+device)
	deviceSession(t, s, agent, thing, device)
}
