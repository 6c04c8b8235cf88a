package benchmark

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/warrentunnel/warren/internal/admin"
	"github.com/warrentunnel/warren/internal/server"
	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// benchThing is the thing every tunnel of the bench reaches.
const benchThing = "BenchDevice"

// warrenPath is Warren as users run it: `warren serve` on a fresh data
// directory and a destination and a source local proxy, each a process,
// with one tunnel whose services reach the bench's targets.
type warrenPath struct {
	endpoint string // host:port of warren serve
	dataDir  string
	rootCAs  *x509.CertPool
	tc       *admin.TunnelClient
	server   *child
	dst, src *child
	sources  map[string]string // service → the source local proxy's address
}

// procs are the path's three processes, source side first.
func (w *warrenPath) procs() []*child { return []*child{w.src, w.server, w.dst} }

// startWarren starts the server and opens the tunnel with the admin API,
// starts the local proxies (this binary's `warren localproxy`, or
// localProxy when set), and returns when both are connected and the source
// listens for every service.
func startWarren(ctx context.Context, exe, localProxy, dir string, targets map[string]string, maxConns int) (_ *warrenPath, err error) {
	w := &warrenPath{dataDir: filepath.Join(dir, "warren-data")}
	defer func() {
		if err != nil {
			w.stop()
		}
	}()
	if w.server, w.endpoint, err = startServe(ctx, "warren serve", exe, w.dataDir); err != nil {
		return w, err
	}
	if err := w.connectAPI(ctx); err != nil {
		return w, err
	}
	services := slices.Sorted(maps.Keys(targets))
	tun, err := w.openTunnel(ctx, services)
	if err != nil {
		return w, err
	}
	settings, err := writeProxySettings(dir, maxConns)
	if err != nil {
		return w, err
	}
	at := proxyTarget{endpoint: w.endpoint, caDir: filepath.Join(w.dataDir, server.CADir)}
	pair, err := startPair(ctx, exe, localProxy, settings, w.tc, tun, targets, at, at)
	if err != nil {
		return w, err
	}
	w.dst, w.src, w.sources = pair.dst, pair.src, pair.sources
	return w, nil
}

// startServe runs `warren serve` on dataDir with the bench's settings and
// extra flags, and returns it and its endpoint once it listens and has
// written its admin credentials. The bench opens tunnels through the API
// as fast as it answers and polls DescribeTunnel: past the default quotas
// of tunnels and API requests per account, so those two are lifted. The
// connections per tunnel keep their default (1000), which the 1000
// simultaneous echoes reach exactly. The data path runs at full speed: no
// account bandwidth limit.
func startServe(ctx context.Context, name, exe, dataDir string, extra ...string) (*child, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	endpoint := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := slices.Concat([]string{"serve", "--listen", endpoint, "--data-dir", dataDir, "--log-level", "warn",
		"--max-tunnels-per-account", "0", "--api-rate", "0", "--default-account-bandwidth", "0"}, extra)
	c, err := startDebuggable(ctx, name, exe, args...)
	if err != nil {
		return nil, "", err
	}
	if err := waitUntil(ctx, 30*time.Second, c, name+" to listen", func() bool {
		_, err := os.Stat(filepath.Join(dataDir, server.CredentialsFile))
		return err == nil && listening(port)
	}); err != nil {
		c.stop()
		return nil, "", err
	}
	return c, endpoint, nil
}

// connectAPI makes the admin API client of the server's data directory and
// creates the thing every tunnel of the bench reaches.
func (w *warrenPath) connectAPI(ctx context.Context) error {
	awsCfg, err := w.clientConfig()
	if err != nil {
		return err
	}
	if _, err := iot.NewFromConfig(awsCfg).CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(benchThing)}); err != nil {
		return fmt.Errorf("create thing: %w", err)
	}
	w.tc = admin.NewTunnelClient(awsCfg)
	return nil
}

// writeProxySettings writes the local proxies' --settings-json file, which
// lets maxConns connections through a tunnel at once.
func writeProxySettings(dir string, maxConns int) (string, error) {
	settings := filepath.Join(dir, "localproxy-settings.json")
	body := fmt.Sprintf(`{"tunneling":{"proxy":{"tcp":{"max_active_connections":"%d"}}}}`+"\n", maxConns)
	return settings, os.WriteFile(settings, []byte(body), 0o600)
}

// proxyTarget is where a local proxy connects: a server's endpoint and the
// CA directory that verifies it.
type proxyTarget struct{ endpoint, caDir string }

// proxyPair is one tunnel's destination and source local proxies.
type proxyPair struct {
	dst, src *child
	sources  map[string]string // service → the source local proxy's address
}

// startPair starts tun's destination local proxy (connected to dstAt, its
// services reaching targets) and its source (connected to srcAt), and
// returns when the API says both are connected and the source listens for
// every service.
func startPair(ctx context.Context, exe, localProxy, settings string, tc *admin.TunnelClient, tun *tunnelapi.OpenTunnelOutput,
	targets map[string]string, dstAt, srcAt proxyTarget) (_ *proxyPair, err error) {
	p := &proxyPair{sources: map[string]string{}}
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	var dmap, smap []string
	var ports []int
	for _, s := range slices.Sorted(maps.Keys(targets)) {
		port, err := freePort()
		if err != nil {
			return p, err
		}
		ports = append(ports, port)
		dmap = append(dmap, s+"="+targets[s])
		smap = append(smap, s+"="+strconv.Itoa(port))
		p.sources[s] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	dargs := []string{"-e", dstAt.endpoint, "-c", dstAt.caDir, "--settings-json", settings,
		"-d", strings.Join(dmap, ","), "-t", tun.DestinationAccessToken, "-i", clientToken()}
	sargs := []string{"-e", srcAt.endpoint, "-c", srcAt.caDir, "--settings-json", settings,
		"-s", strings.Join(smap, ","), "-t", tun.SourceAccessToken, "-i", clientToken()}
	if p.dst, err = startProxy(ctx, "destination local proxy", exe, localProxy, dargs); err != nil {
		return p, err
	}
	if p.src, err = startProxy(ctx, "source local proxy", exe, localProxy, sargs); err != nil {
		return p, err
	}
	err = waitUntil(ctx, 30*time.Second, nil, "both local proxies to connect", func() bool {
		if p.dst.exited() || p.src.exited() {
			return true
		}
		d, err := tc.DescribeTunnel(ctx, &tunnelapi.DescribeTunnelInput{TunnelID: aws.String(tun.TunnelID)})
		return err == nil && connected(d.Tunnel.SourceConnectionState) && connected(d.Tunnel.DestinationConnectionState)
	})
	for _, c := range []*child{p.dst, p.src} {
		if c.exited() {
			return p, c.failure()
		}
	}
	if err != nil {
		return p, err
	}
	return p, waitUntil(ctx, 30*time.Second, p.src, "the source local proxy to listen", func() bool {
		for _, port := range ports {
			if !listening(port) {
				return false
			}
		}
		return true
	})
}

// stop ends the source first, so no new connection enters a tunnel whose
// far end is gone.
func (p *proxyPair) stop() {
	for _, c := range []*child{p.src, p.dst} {
		if c != nil {
			c.stop()
		}
	}
}

func (w *warrenPath) openTunnel(ctx context.Context, services []string) (*tunnelapi.OpenTunnelOutput, error) {
	out, err := w.tc.OpenTunnel(ctx, &tunnelapi.OpenTunnelInput{
		Description:       aws.String("warren bench"),
		DestinationConfig: &tunnelapi.DestinationConfig{ThingName: aws.String(benchThing), Services: services},
	})
	if err != nil {
		return nil, fmt.Errorf("open tunnel: %w", err)
	}
	return out, nil
}

func (w *warrenPath) stop() {
	// The source first, so no new connection enters a tunnel whose far end
	// is gone; the server last.
	for _, c := range []*child{w.src, w.dst, w.server} {
		if c != nil {
			c.stop()
		}
	}
}

func connected(s *tunnelapi.ConnectionState) bool {
	return s != nil && s.Status == tunnelapi.ConnectionStatusConnected
}

// clientConfig is what an admin of the data directory has: the admin
// credentials, the endpoint and the CA.
func (w *warrenPath) clientConfig() (aws.Config, error) {
	id, secret, err := readCredentials(filepath.Join(w.dataDir, server.CredentialsFile))
	if err != nil {
		return aws.Config{}, err
	}
	pem, err := os.ReadFile(filepath.Join(w.dataDir, server.CAFile))
	if err != nil {
		return aws.Config{}, err
	}
	w.rootCAs = x509.NewCertPool()
	if !w.rootCAs.AppendCertsFromPEM(pem) {
		return aws.Config{}, errors.New("no certificate in the server's CA file")
	}
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		BaseEndpoint: aws.String("https://" + w.endpoint),
		HTTPClient:   &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.rootCAs, MinVersion: tls.VersionTLS12}}},
	}, nil
}

// readCredentials reads the keys of the default profile the server wrote.
func readCredentials(path string) (id, secret string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("%s: no admin keys", path)
	}
	return id, secret, s.Err()
}

// startDebuggable runs `exe args...` with a pprof address of its own.
func startDebuggable(ctx context.Context, name, exe string, args ...string) (*child, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c, err := startChild(ctx, name, []string{DebugAddrEnv + "=" + addr}, nil, exe, args...)
	if err != nil {
		return nil, err
	}
	c.debugAddr = addr
	return c, nil
}

// startProxy runs `exe localproxy args...`, or another local proxy binary.
func startProxy(ctx context.Context, name, exe, other string, args []string) (*child, error) {
	if other != "" {
		return startChild(ctx, name, nil, nil, other, args...)
	}
	c, err := startDebuggable(ctx, name, exe, append([]string{"localproxy"}, args...)...)
	if err != nil {
		return nil, err
	}
	// The pprof listener comes up with the process; wait for it so the
	// first goroutine count does not fail.
	return c, waitUntil(ctx, 10*time.Second, c, name+"'s debug listener", func() bool {
		_, err := c.goroutines(ctx)
		return err == nil
	})
}

// clientToken is a fresh local proxy client token (32 hex digits).
func clientToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// freePort is a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitUntil polls cond every 20 ms until it holds, c (when not nil) exits,
// or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, c *child, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if c != nil && c.exited() {
			return c.failure()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
