package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// mosquittoAddr is the machine's MQTT broker (plain, anonymous), which the
// device agent's tests publish their notifications through.
const mosquittoAddr = "127.0.0.1:1883"

// needMosquitto fails the test, saying what is missing, unless the broker
// answers.
func needMosquitto(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", mosquittoAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("the device agent's tests need an MQTT broker on %s (Debian: apt-get install mosquitto; .ci/run starts one): %v", mosquittoAddr, err)
	}
	c.Close()
}

// uniqueThing is a thing name no other test run uses, so that runs sharing
// the broker never see each other's notifications.
func uniqueThing(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// notify publishes a tunnel notification, as AWS does, with QoS 1.
func notify(t *testing.T, broker, thing, token string, services ...string) {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{
		"clientAccessToken": token, "clientMode": "destination", "region": "us-east-1", "services": services,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", broker)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, ClientID: uniqueThing("publisher")})
	if _, err := c.Connect(ctx, &paho.Connect{KeepAlive: 30, CleanStart: true}); err != nil {
		conn.Close()
		t.Fatalf("publish: connect: %v", err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "$aws/things/" + thing + "/tunnels/notify", QoS: 1, Payload: payload}); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// tcpRelay forwards a loopback port to target; cut closes its listener and
// every connection (the broker "goes away"), restore listens again on the
// same port.
type tcpRelay struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
	wg           sync.WaitGroup
}

func newTCPRelay(t *testing.T, target string) *tcpRelay {
	r := &tcpRelay{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(func() { r.cut(); r.wg.Wait() })
	return r
}

func (r *tcpRelay) serve(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", r.target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns[c], r.conns[up] = true, true
			r.mu.Unlock()
			for _, p := range [][2]net.Conn{{c, up}, {up, c}} {
				r.wg.Add(1)
				go func() {
					defer r.wg.Done()
					io.Copy(p[0], p[1])
					p[0].Close()
					p[1].Close()
				}()
			}
		}
	}()
}

func (r *tcpRelay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
	r.conns = map[net.Conn]bool{}
}

func (r *tcpRelay) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("restore the broker's port: %v", err)
	}
	r.serve(ln)
}

// startAgent runs `localproxy agent` (cmd: the binary, after a qemu
// emulator when cross-built) for thing with the broker endpoint given (e.g.
// mqtt://127.0.0.1:1883, or host:port with --cert, --key and --ca in args)
// against s's relay, at the most verbose log level, and waits until it has
// subscribed.
func startAgent(t *testing.T, s *service, endpoint, thing string, cmd []string, args ...string) *proc {
	t.Helper()
	base := append(cmd[1:], "agent", "--endpoint", endpoint, "--thing-name", thing,
		"-e", s.addr, "-c", filepath.Join(s.dir, "ca.pem"), "-v", "6")
	p := start(t, "localproxy agent", nil, cmd[0], append(base, args...)...)
	p.waitLog(t, 60*time.Second, "subscribed to tunnel notifications", 1)
	return p
}

// waitLog waits until the process's output has n lines matching pattern.
func (p *proc) waitLog(t *testing.T, d time.Duration, pattern string, n int) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	waitFor(t, d, fmt.Sprintf("%d lines of %q in %s's log", n, pattern, p.name), func() bool {
		return len(re.FindAllString(p.output(), -1)) >= n
	})
}

// destinationConnected waits for the tunnel's destination to be connected.
func (s *service) destinationConnected(t *testing.T, tunnelID string, want string) {
	t.Helper()
	waitFor(t, 60*time.Second, "destination "+want, func() bool {
		var d describeOut
		s.warren(t, &d, "describe-tunnel", "--tunnel-id", tunnelID)
		return d.Tunnel.DestinationConnectionState.Status == want
	})
}

// openMore opens another tunnel to an existing thing.
func (s *service) openMore(t *testing.T, thing string, services ...string) openTunnelOut {
	t.Helper()
	var out openTunnelOut
	s.warren(t, &out, "open-tunnel", "--destination-config", "thingName="+thing+",services="+strings.Join(services, ","))
	return out
}

// TestAgentEndToEnd drives the device agent as a device runs it: the real
// localproxy binary subscribed through Mosquitto (behind a TCP relay of the
// test's own, which it cuts and restores like a broker restart), with no
// token on its command line. Each tunnel's destination token arrives in an
// AWS-format notification, and a source local proxy fetches from the
// device's web server through the destination the agent started. Then: a
// rotation replaces the destination, closing the tunnel stops it, the
// broker comes back, a service without a mapping is refused while the
// mapped one works, a tunnel with none mapped starts nothing, no token is
// ever in the agent's log at -v 6, and SIGTERM stops it at once.
func TestAgentEndToEnd(t *testing.T) {
	needMosquitto(t)
	s := startService(t)
	broker := newTCPRelay(t, mosquittoAddr)
	thing := uniqueThing("agent")
	device := httpDevice(t, "hello from "+thing)
	tun := s.openTunnel(t, thing, "HTTP")
	agent := startAgent(t, s, "mqtt://"+broker.addr, thing, []string{bin.localproxy}, "-d", "HTTP="+device)
	var tokens []string

	notify(t, broker.addr, thing, tun.DestinationAccessToken, "HTTP")
	tokens = append(tokens, tun.DestinationAccessToken, tun.SourceAccessToken)
	s.destinationConnected(t, tun.TunnelID, "CONNECTED")
	port := freePort(t)
	s.localproxy(t, "source localproxy", "-s", fmt.Sprintf("HTTP=%d", port), "-t", tun.SourceAccessToken)
	waitPort(t, port)
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/first", port)); got != "hello from "+thing+" /first" {
		t.Fatalf("through the agent's destination: %q", got)
	}

	t.Log("rotation: the new token's notification starts destination 2, the relay ends destination 1")
	var rot rotateOut
	s.warren(t, &rot, "rotate-tunnel-access-token", "--tunnel-id", tun.TunnelID, "--client-mode", "DESTINATION")
	tokens = append(tokens, rot.DestinationAccessToken)
	agent.waitLog(t, 30*time.Second, `destination stopped" destination=1 `, 1)
	notify(t, broker.addr, thing, rot.DestinationAccessToken, "HTTP")
	agent.waitLog(t, 30*time.Second, `starting a destination for a tunnel notification" destination=2 `, 1)
	s.destinationConnected(t, tun.TunnelID, "CONNECTED")
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/rotated", port)); got != "hello from "+thing+" /rotated" {
		t.Fatalf("after the rotation: %q", got)
	}
	// A repeated delivery of the same notification starts nothing.
	notify(t, broker.addr, thing, rot.DestinationAccessToken, "HTTP")
	agent.waitLog(t, 30*time.Second, "ignoring a repeated tunnel notification", 1)

	t.Log("closing the tunnel stops its destination; the agent keeps running")
	s.warren(t, nil, "close-tunnel", "--tunnel-id", tun.TunnelID)
	agent.waitLog(t, 30*time.Second, `destination stopped" destination=2 `, 1)
	if agent.exited() {
		t.Fatal("the agent exited with its tunnel")
	}

	t.Log("the broker goes away; a notification published meanwhile arrives when it is back")
	broker.cut()
	agent.waitLog(t, 30*time.Second, "lost the broker connection", 1)
	tun2 := s.openMore(t, thing, "HTTP", "SSH")
	tokens = append(tokens, tun2.DestinationAccessToken, tun2.SourceAccessToken)
	notify(t, mosquittoAddr, thing, tun2.DestinationAccessToken, "HTTP", "SSH") // the broker queues it for the session
	time.Sleep(2 * time.Second)                                                 // a few failed attempts
	if strings.Contains(agent.output(), "destination=3") {
		t.Fatal("a notification reached the agent while its broker was cut off")
	}
	broker.restore(t)
	agent.waitLog(t, 90*time.Second, "subscribed to tunnel notifications", 2)

	t.Log("a tunnel with a service the device does not map: that one is refused, the mapped one works")
	agent.waitLog(t, 30*time.Second, `service has no mapping on this device; refusing it" service=SSH`, 1)
	s.destinationConnected(t, tun2.TunnelID, "CONNECTED")
	port2, sshPort := freePort(t), freePort(t)
	s.localproxy(t, "source localproxy 2", "-s", fmt.Sprintf("HTTP=%d,SSH=%d", port2, sshPort), "-t", tun2.SourceAccessToken)
	waitPort(t, port2)
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/two", port2)); got != "hello from "+thing+" /two" {
		t.Fatalf("the mapped service of a partly mapped tunnel: %q", got)
	}
	waitPort(t, sshPort)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", sshPort))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the unmapped service's connection was not refused: %d bytes, %v", n, err)
	}
	c.Close()

	t.Log("a tunnel with no mapped service starts nothing")
	tun3 := s.openMore(t, thing, "SSH")
	tokens = append(tokens, tun3.DestinationAccessToken, tun3.SourceAccessToken)
	notify(t, broker.addr, thing, tun3.DestinationAccessToken, "SSH")
	agent.waitLog(t, 30*time.Second, "no service of the tunnel is mapped on this device; no destination started", 1)
	if strings.Contains(agent.output(), "destination=4") {
		t.Fatal("a destination started for a tunnel without a mapped service")
	}

	t.Log("SIGTERM stops the agent and its destination at once")
	began := time.Now()
	agent.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-agent.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not exit within 10 s of SIGTERM")
	}
	if agent.err != nil {
		t.Fatalf("the agent's exit: %v", agent.err)
	}
	out := agent.output()
	if !strings.Contains(out, `destination stopped" destination=3`) || !strings.Contains(out, "device agent stopped") {
		t.Fatalf("the agent did not stop its destination and itself cleanly:\n%s", out)
	}
	t.Logf("the agent exited %v after SIGTERM", time.Since(began).Round(time.Millisecond))
	s.destinationConnected(t, tun2.TunnelID, "DISCONNECTED")
	for _, tok := range tokens {
		if strings.Contains(out, tok) {
			t.Fatalf("a token is in the agent's log")
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
