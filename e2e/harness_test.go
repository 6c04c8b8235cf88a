// Package e2e drives Warren the way its users do: the real `warren` and
// `localproxy` binaries as processes, real sockets, real HTTP servers on the
// "device", and the real AWS clients.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var bin struct {
	warren, localproxy string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "warren-e2e-bin")
	if err != nil {
		panic(err)
	}
	bin.warren = filepath.Join(dir, "warren")
	bin.localproxy = filepath.Join(dir, "localproxy")
	for out, pkg := range map[string]string{bin.warren: "../cmd/warren", bin.localproxy: "../cmd/localproxy"} {
		cmd := exec.Command("go", "build", "-race", "-o", out, pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a background process whose output is kept for the test log.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(t *testing.T, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, p.output())
		}
	})
	return p
}

// stop ends the process with SIGTERM (SIGKILL after 5 s) and waits.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// service is a running `warren serve` with the environment its users export.
type service struct {
	dir, addr string
	env       []string
	args      []string // `warren serve` flags, kept over restarts
	name      string   // the process's name in the test log; "warren serve" if empty
	p         *proc
}

// startService runs `warren serve` with an unlimited default account
// bandwidth (the tests of the limit set it with flags), the other defaults,
// and flags.
func startService(t *testing.T, flags ...string) *service {
	t.Helper()
	s := &service{dir: t.TempDir(), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		args: append([]string{"--default-account-bandwidth", "0"}, flags...)}
	s.env = clientEnv(s.dir, s.addr)
	s.start(t)
	return s
}

// clientEnv is the environment of the AWS clients and admin commands of
// the service at addr whose data directory (credentials, ca.pem) is dir.
func clientEnv(dir, addr string) []string {
	return []string{
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "credentials"),
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "no-config"),
		"AWS_CA_BUNDLE=" + filepath.Join(dir, "ca.pem"),
		"AWS_ENDPOINT_URL=https://" + addr,
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1", // botocore (AWS CLI v1, boto3) reads this one
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
	}
}

func (s *service) start(t *testing.T) {
	t.Helper()
	args := append([]string{"serve", "--listen", s.addr, "--data-dir", s.dir, "--log-level", "debug"}, s.args...)
	name := s.name
	if name == "" {
		name = "warren serve"
	}
	s.p = start(t, name, nil, bin.warren, args...)
	waitFor(t, 20*time.Second, "warren serve to listen", func() bool {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// warren runs an admin command and decodes its JSON output into out.
func (s *service) warren(t *testing.T, out any, args ...string) {
	t.Helper()
	stdout, stderr, err := s.run(bin.warren, args...)
	if err != nil {
		t.Fatalf("warren %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			t.Fatalf("warren %s: output is not JSON: %v\n%s", args[0], err, stdout)
		}
	}
}

func (s *service) run(path string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), s.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

type openTunnelOut struct {
	TunnelID               string `json:"tunnelId"`
	TunnelArn              string `json:"tunnelArn"`
	SourceAccessToken      string `json:"sourceAccessToken"`
	DestinationAccessToken string `json:"destinationAccessToken"`
}

type describeOut struct {
	Tunnel struct {
		TunnelID                   string                  `json:"tunnelId"`
		Status                     string                  `json:"status"`
		SourceConnectionState      struct{ Status string } `json:"sourceConnectionState"`
		DestinationConnectionState struct{ Status string } `json:"destinationConnectionState"`
		DestinationConfig          struct {
			ThingName string   `json:"thingName"`
			Services  []string `json:"services"`
		} `json:"destinationConfig"`
	} `json:"tunnel"`
}

// openTunnel creates a thing and a tunnel to it with the admin commands.
func (s *service) openTunnel(t *testing.T, thing string, services ...string) openTunnelOut {
	t.Helper()
	var thingOut map[string]any
	s.warren(t, &thingOut, "create-thing", "--thing-name", thing)
	var out openTunnelOut
	s.warren(t, &out, "open-tunnel", "--destination-config", "thingName="+thing+",services="+strings.Join(services, ","))
	if out.TunnelID == "" || out.SourceAccessToken == "" || out.DestinationAccessToken == "" {
		t.Fatalf("open-tunnel output incomplete: %+v", out)
	}
	return out
}

// localproxy starts the warren localproxy binary against s.
func (s *service) localproxy(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	base := []string{"-e", s.addr, "-c", filepath.Join(s.dir, "ca.pem")}
	return start(t, name, nil, bin.localproxy, append(base, args...)...)
}

// tunnelPair opens a tunnel for services and starts a destination proxy
// mapping each service to targets[i] and a source proxy listening on the
// returned ports, waiting until every source port accepts connections.
func (s *service) tunnelPair(t *testing.T, thing string, services []string, targets []string) (openTunnelOut, []int, *proc, *proc) {
	t.Helper()
	tun := s.openTunnel(t, thing, services...)
	var dmap, smap []string
	ports := make([]int, len(services))
	for i, svc := range services {
		dmap = append(dmap, svc+"="+targets[i])
		ports[i] = freePort(t)
		smap = append(smap, fmt.Sprintf("%s=%d", svc, ports[i]))
	}
	dst := s.localproxy(t, "destination localproxy", "-d", strings.Join(dmap, ","), "-t", tun.DestinationAccessToken)
	src := s.localproxy(t, "source localproxy", "-s", strings.Join(smap, ","), "-t", tun.SourceAccessToken)
	for _, p := range ports {
		waitPort(t, p)
	}
	waitFor(t, 20*time.Second, "both peers connected", func() bool {
		var d describeOut
		s.warren(t, &d, "describe-tunnel", "--tunnel-id", tun.TunnelID)
		return d.Tunnel.SourceConnectionState.Status == "CONNECTED" && d.Tunnel.DestinationConnectionState.Status == "CONNECTED"
	})
	return tun, ports, src, dst
}

func waitPort(t *testing.T, port int) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("port %d to accept", port), func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpDevice is a real HTTP server standing in for the device's web server.
func httpDevice(t *testing.T, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body+" "+r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// tcpDevice serves handle on a loopback listener, one goroutine per
// connection (closed when handle returns), until the test ends.
func tcpDevice(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// echoDevice is a TCP echo server that echoes until the client half-closes.
func echoDevice(t *testing.T) string {
	t.Helper()
	return tcpDevice(t, func(c *net.TCPConn) {
		io.Copy(c, bufio.NewReader(c))
		c.CloseWrite()
	})
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}
