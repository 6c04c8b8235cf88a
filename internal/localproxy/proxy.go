// Package localproxy owns Warren's local proxy engine: the source and
// destination engines that carry local TCP connections over a tunnel's
// WebSocket, their service mapping, stream and connection bookkeeping,
// keepalive and reconnects. It runs a Config. It does not own the command
// line, --config or --settings-json files of the official AWS IoT Secure
// Tunneling local proxy (package proxycli turns those into a Config), nor the
// frame codec (package wire), nor anything on the relay's side.
//
// Goroutines: Run owns the reconnect loop and the source listeners' accept
// loops; each WebSocket connection (a session) owns one reader, one writer
// and one pinger goroutine; each local connection owns a reader (socket to
// tunnel) and a writer (tunnel to socket). Everything is stopped and waited
// for before Run returns.
package localproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"github.com/warrentunnel/warren/internal/wire"
	"github.com/warrentunnel/warren/internal/wsbatch"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Errors Run returns; the binary maps them to exit statuses.
var (
	// ErrTunnelClosed: the relay sent a WebSocket close frame, which ends the
	// proxy for good (exit status 0, like the official proxy).
	ErrTunnelClosed = errors.New("tunnel closed by the relay")
	// ErrServiceMismatch: the tunnel's service ids do not match the
	// configured mapping (exit status 1).
	ErrServiceMismatch = errors.New("wrong configuration: the local proxy's service ids do not match the tunnel's")
)

// HandshakeError is a non-101 answer to the WebSocket upgrade. Run returns
// it for 4xx (and other non-5xx) answers: the relay refused this access
// token, mode or client token, and retrying will not help. 5xx are retried.
type HandshakeError struct {
	Status int    // HTTP status code
	Reason string // HTTP status line, e.g. "401 Unauthorized"
	Body   string // start of the response body
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("relay rejected the WebSocket upgrade: (HTTP %s) %q", e.Reason, e.Body)
}

// Run connects to the relay and serves the tunnel until ctx is done (nil),
// the relay closes the tunnel (ErrTunnelClosed), rejects the handshake
// (*HandshakeError), the service ids do not match (ErrServiceMismatch) or a
// local listener cannot be opened.
func Run(ctx context.Context, cfg Config) error {
	cfg, err := cfg.prepare()
	if err != nil {
		return err
	}
	tlsConf, err := tlsConfig(cfg)
	if err != nil {
		return err
	}
	e := &engine{cfg: cfg, log: cfg.Logger, tls: tlsConf, mapping: cfg.Services, ids: map[string]*idCounter{}}
	defer e.closeListeners()
	return e.loop(ctx)
}

// prepare checks cfg and fills defaults.
func (cfg Config) prepare() (Config, error) {
	if cfg.Mode != ModeSource && cfg.Mode != ModeDestination {
		return cfg, errors.New("localproxy: mode must be source or destination")
	}
	if err := ValidateAccessToken(cfg.AccessToken); err != nil {
		return cfg, err
	}
	if _, _, _, err := parseEndpoint(cfg.Endpoint); err != nil {
		return cfg, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Protocol == 0 {
		cfg.Protocol = V3
	}
	cfg.Settings = cfg.Settings.withDefaults()
	if cfg.ClientToken == "" {
		// Always send a client token: without one the relay spends the access
		// token on the first handshake and a reconnect would be refused.
		cfg.ClientToken = newClientToken()
	}
	m := make(map[string]string, len(cfg.Services))
	for k, v := range cfg.Services {
		if err := ValidateMappingEndpoint(v, cfg.Mode); err != nil {
			return cfg, fmt.Errorf("service %q: %w", k, err)
		}
		m[k] = v
	}
	cfg.Services = m
	return cfg, nil
}

// newClientToken returns a random UUID-shaped token (36 characters).
func newClientToken() string { return uuid.NewString() }

func tlsConfig(cfg Config) (*tls.Config, error) {
	_, host, _, _ := parseEndpoint(cfg.Endpoint)
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, InsecureSkipVerify: cfg.NoSSLHostVerify}
	if cfg.CAPath == "" {
		return conf, nil // nil RootCAs: the system roots
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	files := []string{cfg.CAPath}
	if st, err := os.Stat(cfg.CAPath); err != nil {
		return nil, fmt.Errorf("capath: %w", err)
	} else if st.IsDir() {
		entries, err := os.ReadDir(cfg.CAPath)
		if err != nil {
			return nil, fmt.Errorf("capath: %w", err)
		}
		files = files[:0]
		for _, en := range entries {
			if en.Type().IsRegular() {
				files = append(files, filepath.Join(cfg.CAPath, en.Name()))
			}
		}
	}
	added := 0
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("capath: %w", err)
		}
		if pool.AppendCertsFromPEM(pem) {
			added++
		}
	}
	if added == 0 {
		return nil, fmt.Errorf("capath %s: no PEM certificates found", cfg.CAPath)
	}
	conf.RootCAs = pool
	return conf, nil
}

// engine is the state that outlives one WebSocket connection: the service
// mapping as resolved from the first SERVICE_IDS, the source listeners, and
// the per-service id counters (ids are never reused within a Run).
type engine struct {
	cfg Config
	log *slog.Logger
	tls *tls.Config

	mapping  map[string]string // service id -> endpoint; resolved once
	resolved bool
	readied  bool

	mu        sync.Mutex
	cur       *session // the session accepted connections go to, nil between sessions
	listeners []serviceListener
	acceptWG  sync.WaitGroup

	idsMu sync.Mutex
	ids   map[string]*idCounter
	flows uint64 // last flow number given to a connection
}

// nextFlow numbers a new connection's flow in the send queue.
func (e *engine) nextFlow() uint64 {
	e.idsMu.Lock()
	defer e.idsMu.Unlock()
	e.flows++
	return e.flows
}

type idCounter struct {
	stream int32
	conn   uint32
}

// nextStreamID returns a fresh stream id for service (1, 2, ...).
func (e *engine) nextStreamID(service string) int32 {
	e.idsMu.Lock()
	defer e.idsMu.Unlock()
	c := e.counter(service)
	if c.stream == 1<<31-1 {
		c.stream = 0
	}
	c.stream++
	return c.stream
}

// nextConnID returns a fresh connection id for service (1, 2, ...).
func (e *engine) nextConnID(service string) uint32 {
	e.idsMu.Lock()
	defer e.idsMu.Unlock()
	c := e.counter(service)
	if c.conn == 1<<32-1 {
		c.conn = 0
	}
	c.conn++
	return c.conn
}

func (e *engine) counter(service string) *idCounter {
	c := e.ids[service]
	if c == nil {
		c = &idCounter{}
		e.ids[service] = c
	}
	return c
}

// loop connects, serves and reconnects until a reason to stop.
func (e *engine) loop(ctx context.Context) error {
	delay := e.cfg.Settings.RetryDelay
	failures := 0
	lastQuick := false
	for {
		if ctx.Err() != nil {
			return nil
		}
		ws, proto, err := e.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Like the official proxy, retry only server errors (5xx) and
			// network failures; any other answer is final.
			var he *HandshakeError
			if errors.As(err, &he) && (he.Status < 500 || he.Status > 599) {
				e.log.Error("relay rejected the handshake; not retrying", "status", he.Reason, "body", he.Body)
				return he
			}
			failures++
			if max := e.cfg.Settings.MaxConnectAttempts; max > 0 && failures >= max {
				return fmt.Errorf("giving up after %d failed connection attempts: %w", failures, err)
			}
			e.log.Error("cannot connect to the relay; retrying", "err", err, "in", delay)
			if !sleep(ctx, delay) {
				return nil
			}
			continue
		}
		failures = 0
		started := time.Now()
		err = e.serve(ctx, ws, proto)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrTunnelClosed):
			e.log.Info("tunnel closed", "reason", err)
			return err
		case isFatal(err):
			e.log.Log(ctx, LevelFatal, "stopping", "err", err)
			return err
		}
		e.log.Warn("lost the tunnel connection; reconnecting", "err", err)
		// Reconnect at once, as the official proxy does, unless the previous
		// connection also died right away: then a relay that drops us on
		// sight would make this a tight loop.
		quick := time.Since(started) < delay
		if quick && lastQuick && !sleep(ctx, delay) {
			return nil
		}
		lastQuick = quick
	}
}

// fatalError marks session errors that end Run instead of reconnecting.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// userAgent mirrors the official form "localproxy <platform> <bits>-bit/<libs>".
func userAgent() string {
	return fmt.Sprintf("localproxy %s %d-bit/warren-%s", runtime.GOOS, strconv.IntSize, Version)
}

// connect performs the WebSocket handshake. It returns the negotiated
// subprotocol.
func (e *engine) connect(ctx context.Context) (*websocket.Conn, string, error) {
	scheme, host, port, err := parseEndpoint(e.cfg.Endpoint)
	if err != nil {
		return nil, "", err
	}
	hostPort := net.JoinHostPort(host, strconv.Itoa(port))
	d := websocket.Dialer{
		NetDialContext: (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
			Control: wsbatch.BoundBuffers}).DialContext,
		TLSClientConfig:  e.tls,
		HandshakeTimeout: 30 * time.Second,
		Subprotocols:     []string{e.cfg.Settings.Subprotocol},
		// Small: it holds WebSocket headers and small frames; large frames
		// are read past it straight into their pooled buffers, where a
		// buffer as large as a frame would copy every byte once more.
		ReadBufferSize: 1 << 10,
		// Big enough that a full DATA frame goes out as one WebSocket frame.
		WriteBufferSize: 64<<10 + 64,
	}
	if e.cfg.WebProxy != nil {
		d.Proxy = http.ProxyURL(e.cfg.WebProxy)
	}
	hostHeader := host
	if strings.Contains(host, ":") {
		hostHeader = "[" + host + "]"
	}
	// Header names are set directly (not canonicalised) so they go out in
	// the official proxy's case: access-token, client-token.
	hdr := http.Header{}
	hdr["Host"] = []string{hostHeader} // without the port, like the official proxy
	hdr["access-token"] = []string{e.cfg.AccessToken}
	hdr["client-token"] = []string{e.cfg.ClientToken}
	hdr["User-Agent"] = []string{userAgent()}
	hdr[wire.LinkCreditHeader] = []string{"1"}
	u := url.URL{Scheme: scheme, Host: hostPort, Path: "/tunnel", RawQuery: "local-proxy-mode=" + e.cfg.Mode.String()}

	e.log.Info("connecting to the relay", "url", u.String())
	ws, resp, err := d.DialContext(ctx, u.String(), hdr)
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
			body := make([]byte, 1024)
			n, _ := resp.Body.Read(body)
			return nil, "", &HandshakeError{Status: resp.StatusCode, Reason: resp.Status, Body: strings.TrimSpace(string(body[:n]))}
		}
		return nil, "", fmt.Errorf("connect to %s: %w", hostPort, err)
	}
	proto := resp.Header.Get("Sec-WebSocket-Protocol")
	if proto == "" {
		ws.Close()
		return nil, "", errors.New("relay answered the upgrade without Sec-WebSocket-Protocol")
	}
	e.log.Info("connected to the relay", "channel-id", resp.Header.Get("channel-id"), "subprotocol", proto)
	return ws, proto, nil
}

// protocolFor lowers the configured format to what the relay negotiated.
func (e *engine) protocolFor(subprotocol string) Protocol {
	p := e.cfg.Protocol
	switch {
	case strings.HasSuffix(subprotocol, "-1.0"):
		p = V1
	case strings.HasSuffix(subprotocol, "-2.0") && p > V2:
		p = V2
	}
	return p
}

// serve runs one session on ws until it ends.
func (e *engine) serve(ctx context.Context, ws *websocket.Conn, subprotocol string) error {
	s := newSession(e, ws, e.protocolFor(subprotocol))
	return s.run(ctx, subprotocol)
}

// setSession makes s the session accepted connections go to (nil: none).
func (e *engine) setSession(s *session) {
	e.mu.Lock()
	e.cur = s
	e.mu.Unlock()
}

func (e *engine) session() *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cur
}

// ready calls cfg.Ready once.
func (e *engine) ready(addrs map[string]string) {
	if e.readied {
		return
	}
	e.readied = true
	e.log.Info("tunnel ready", "services", addrs)
	if e.cfg.Ready != nil {
		e.cfg.Ready(addrs)
	}
}
