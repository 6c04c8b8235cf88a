package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/demo"
	"golang.org/x/sync/errgroup"
)

// The README's session, as real processes: serve, create-thing, open-tunnel,
// two localproxies, and the device's web server reached through the tunnel.
func TestReadmeSession(t *testing.T) {
	s := startService(t)
	if fi, err := os.Stat(filepath.Join(s.dir, "credentials")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}
	device := httpDevice(t, "hello from the device")
	tun, ports, _, _ := s.tunnelPair(t, "RemoteDevice1", []string{"HTTP"}, []string{device})
	got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/index.html", ports[0]))
	if got != "hello from the device /index.html" {
		t.Fatalf("through the tunnel: %q", got)
	}
	var d describeOut
	s.warren(t, &d, "describe-tunnel", "--tunnel-id", tun.TunnelID)
	if d.Tunnel.Status != "OPEN" || d.Tunnel.DestinationConfig.ThingName != "RemoteDevice1" {
		t.Fatalf("describe: %+v", d.Tunnel)
	}
	// close-tunnel ends both proxies for good: the relay sends close frames.
	s.warren(t, nil, "close-tunnel", "--tunnel-id", tun.TunnelID)
	s.warren(t, &d, "describe-tunnel", "--tunnel-id", tun.TunnelID)
	if d.Tunnel.Status != "CLOSED" || d.Tunnel.SourceConnectionState.Status != "DISCONNECTED" {
		t.Fatalf("after close: %+v", d.Tunnel)
	}
}

// 100 concurrent HTTP requests through one tunnel all succeed, and the
// 100-resource page loads with 1 and with 16 parallel connections.
func TestSimultaneousConnections(t *testing.T) {
	s := startService(t)
	dev, err := demo.StartDevice(100)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	_, ports, _, _ := s.tunnelPair(t, "web", []string{"HTTP"}, []string{dev.Addr()})
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[0])

	var g errgroup.Group
	for i := 0; i < 100; i++ {
		g.Go(func() error {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
			if err != nil {
				return err
			}
			defer c.Close()
			fmt.Fprintf(c, "GET /r/%d.js HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n", i)
			b, err := io.ReadAll(c)
			if err != nil {
				return fmt.Errorf("request %d: %w", i, err)
			}
			if !strings.HasPrefix(string(b), "HTTP/1.1 200 OK") || !strings.HasSuffix(string(b), "/") {
				return fmt.Errorf("request %d: bad response (%d bytes)", i, len(b))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	one, err := demo.LoadPage(ctx, base, 1)
	if err != nil {
		t.Fatal(err)
	}
	sixteen, err := demo.LoadPage(ctx, base, 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("100-resource page through the tunnel: 1 connection %v, 16 connections %v (ratio %.1fx)", one, sixteen, float64(one)/float64(sixteen))
}

// 64 simultaneous connections each send 4 MiB of random bytes to an echo
// server and get the same SHA-256 back.
func TestIntegrity64x4MiB(t *testing.T) {
	s := startService(t)
	echo := echoDevice(t)
	_, ports, _, _ := s.tunnelPair(t, "echo", []string{"ECHO"}, []string{echo})
	const size = 4 << 20
	var g errgroup.Group
	for i := 0; i < 64; i++ {
		g.Go(func() error { return echoRoundTrip(fmt.Sprintf("127.0.0.1:%d", ports[0]), size) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func echoRoundTrip(addr string, size int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.MultiWriter(c, sent), rand.Reader, int64(size))
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("send: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("receive after %d bytes: %w", n, err)
	}
	if n != int64(size) || string(got.Sum(nil)) != string(sent.Sum(nil)) {
		return fmt.Errorf("echo returned %d bytes, sha256 %x, want %d bytes, %x", n, got.Sum(nil), size, sent.Sum(nil))
	}
	return nil
}

// One tunnel with services HTTP and ECHO carries both at once.
func TestMultiplexing(t *testing.T) {
	s := startService(t)
	web := httpDevice(t, "web")
	echo := echoDevice(t)
	_, ports, _, _ := s.tunnelPair(t, "multi", []string{"HTTP", "ECHO"}, []string{web, echo})
	var g errgroup.Group
	for i := 0; i < 8; i++ {
		g.Go(func() error {
			return echoRoundTrip(fmt.Sprintf("127.0.0.1:%d", ports[1]), 256<<10)
		})
	}
	var mu sync.Mutex
	for i := 0; i < 8; i++ {
		g.Go(func() error {
			got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/%d", ports[0], i))
			mu.Lock()
			defer mu.Unlock()
			if got != fmt.Sprintf("web /%d", i) {
				return fmt.Errorf("http: %q", got)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// After `warren serve` is SIGKILLed and started again, DescribeTunnel still
// shows the tunnel and both proxies reconnect by themselves with the same
// tokens and carry new connections.
func TestRestartKeepsTunnel(t *testing.T) {
	s := startService(t)
	device := httpDevice(t, "persistent")
	tun, ports, src, dst := s.tunnelPair(t, "dev", []string{"HTTP"}, []string{device})
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/a", ports[0])); got != "persistent /a" {
		t.Fatal(got)
	}
	s.restartKeepsTunnel(t, tun, ports[0], src, dst, "persistent")
}

// restartKeepsTunnel kills and restarts the server, and checks that the
// tunnel is still open, that both local proxies reconnect with the tokens
// they had, and that the device behind port answers "body /b" again.
func (s *service) restartKeepsTunnel(t *testing.T, tun openTunnelOut, port int, src, dst *proc, body string) {
	t.Helper()
	s.p.kill()
	s.start(t)
	var d describeOut
	s.warren(t, &d, "describe-tunnel", "--tunnel-id", tun.TunnelID)
	if d.Tunnel.Status != "OPEN" {
		t.Fatalf("after restart: %+v", d.Tunnel)
	}
	waitFor(t, 30*time.Second, "both proxies to reconnect", func() bool {
		s.warren(t, &d, "describe-tunnel", "--tunnel-id", tun.TunnelID)
		return d.Tunnel.SourceConnectionState.Status == "CONNECTED" && d.Tunnel.DestinationConnectionState.Status == "CONNECTED"
	})
	if src.exited() || dst.exited() {
		t.Fatal("a local proxy exited instead of reconnecting")
	}
	waitPort(t, port)
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/b", port)); got != body+" /b" {
		t.Fatal(got)
	}
}

// `warren demo` runs the whole demo, prints both load times and the URL,
// keeps serving until Ctrl-C, then cleans up.
func TestDemo(t *testing.T) {
	p := start(t, "warren demo", nil, bin.warren, "demo", "--port", "0")
	waitFor(t, 3*time.Minute, "the demo to print the URL", func() bool {
		return strings.Contains(p.output(), "Press Ctrl-C") || p.exited()
	})
	out := p.output()
	var url string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "Open "); ok {
			url, _, _ = strings.Cut(rest, " ")
		}
	}
	if url == "" {
		t.Fatalf("no URL in the demo's output:\n%s", out)
	}
	// The page the demo points at is served through the tunnel.
	if page := httpGet(t, url); !strings.Contains(page, "/r/99.js") {
		t.Fatalf("page at %s: %q", url, page)
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop on Ctrl-C")
	}
	out = p.output()
	if p.err != nil {
		t.Fatalf("demo failed: %v\n%s", p.err, out)
	}
	for _, want := range []string{"bandwidth limit in force: 800KB/s", "at the limit,  1 connection:", "at the limit, 16 connections:",
		"unlimited,    1 connection:", "unlimited,   16 connections:", "back to 800KB/s", "stopped; removed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	var dir string
	for _, line := range strings.Split(out, "\n") {
		if _, rest, ok := strings.Cut(line, "(data in "); ok {
			dir = strings.TrimSuffix(rest, ")")
		}
	}
	if _, err := os.Stat(dir); dir == "" || !os.IsNotExist(err) {
		t.Fatalf("data directory %q not removed: %v", dir, err)
	}
	t.Log(out)
}

// A connection made while the device's proxy is not connected is closed at
// once (the relay resets the stream) instead of hanging, and the tunnel
// works as soon as the device connects.
func TestSourceBeforeDestination(t *testing.T) {
	s := startService(t)
	device := httpDevice(t, "late device")
	tun := s.openTunnel(t, "late", "HTTP")
	port := freePort(t)
	s.localproxy(t, "source localproxy", "-s", fmt.Sprintf("HTTP=%d", port), "-t", tun.SourceAccessToken)
	waitPort(t, port)
	// Closed at once: EOF, or a reset (which may even beat the dial's own
	// look at its socket on a loaded machine).
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	} else if err == nil {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: device\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("without a device: read %d bytes, %v; want the connection closed", n, err)
		}
		c.Close()
	}
	s.localproxy(t, "destination localproxy", "-d", "HTTP="+device, "-t", tun.DestinationAccessToken)
	waitFor(t, 20*time.Second, "the destination to connect", func() bool {
		var d describeOut
		s.warren(t, &d, "describe-tunnel", "--tunnel-id", tun.TunnelID)
		return d.Tunnel.DestinationConnectionState.Status == "CONNECTED"
	})
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/x", port)); got != "late device /x" {
		t.Fatal(got)
	}
}
