// Package server assembles `warren serve`: the data directory (store, TLS
// material, admin credentials, and the check of their permissions), the
// management API and the relay behind one HTTPS listener with its limits, the
// health checks, the optional metrics listener, and their orderly shutdown;
// and, for a node of several on one PostgreSQL store (cluster.go), its
// registration and heartbeat, its links to the other nodes and the
// configuration they share through the store. It owns the wiring, not the
// rules: those live in api, relay and tunnel.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/warrentunnel/warren/internal/wsbatch"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrentunnel/warren/internal/api"
	"github.com/warrentunnel/warren/internal/bandwidth"
	"github.com/warrentunnel/warren/internal/expiry"
	"github.com/warrentunnel/warren/internal/metrics"
	"github.com/warrentunnel/warren/internal/mqttbroker"
	"github.com/warrentunnel/warren/internal/notify"
	"github.com/warrentunnel/warren/internal/relay"
	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// Config of a server. Zero values give the defaults of `warren serve`.
type Config struct {
	Listen  string // default 127.0.0.1:8443
	DataDir string // default ./warren-data
	// Store is the database: "" for SQLite in the data directory, or a
	// postgres:// (postgresql://) URL that several servers may share. The
	// data directory keeps the TLS material and the credentials file
	// either way.
	Store     string
	TLSCert   string // with TLSKey: use this certificate instead of the generated one
	TLSKey    string
	Plaintext bool   // serve HTTP/WS without TLS (behind a TLS-terminating load balancer)
	Region    string // default us-east-1
	// DefaultBandwidth is the bandwidth limit of an account without one of
	// its own, in bytes per second in each direction. Unlike the flag's
	// (800 KB/s, as the described service), the zero value is unlimited.
	DefaultBandwidth int64
	Logger           *slog.Logger
	Quotas           *Quotas // nil: DefaultQuotas()
	MQTT             MQTT
	// MetricsListen is the address of a plain-HTTP listener of its own for
	// Prometheus (/metrics) and the health checks (/healthz, /readyz); ""
	// for none (the health checks are on the main listener too).
	MetricsListen string
	// ReadHeaderTimeout is how long a client may take to send a request's
	// head; default DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// ReadBodyTimeout is how long an API request's body may take to
	// arrive; default DefaultReadBodyTimeout.
	ReadBodyTimeout time.Duration
	// Cluster makes the server one node of several on a PostgreSQL Store
	// (cluster.go); its zero value: a server on its own.
	Cluster Cluster
}

// Limits of the listeners.
const (
	// DefaultReadHeaderTimeout ends a connection whose request head takes
	// longer (slowloris).
	DefaultReadHeaderTimeout = 10 * time.Second
	// MaxHeaderBytes bounds a request head: a larger one gets 431. The
	// relay limits the handshake's head to 4 KiB itself, with a clear
	// answer; this is the outer guard.
	MaxHeaderBytes = 16 << 10
	// DefaultReadBodyTimeout is how long an API request's body may take
	// to arrive.
	DefaultReadBodyTimeout = 30 * time.Second
)

// tlsCipherSuites are the TLS 1.2 suites the server accepts: ECDHE key
// exchange (forward secrecy) with AEAD ciphers only, no CBC. TLS 1.3's
// suites are all of that kind and not configurable.
func tlsCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// MQTT configures where tunnel notifications go: an embedded broker
// (Listen), an external one (URL), or nowhere (neither).
type MQTT struct {
	// Listen is the embedded broker's MQTT over TLS address; devices
	// authenticate with certificates of the device CA (device-ca.pem).
	Listen string
	// URL of an external broker, mqtt://host[:port] or mqtts://...,
	// optionally with user:password@; Username and Password win over it.
	URL                string
	Username, Password string
	// CAFile is a PEM bundle that verifies an mqtts:// broker (default: the
	// system's roots).
	CAFile string
}

// Quotas are the limits the server sets per account, per tunnel and per
// client address. A zero field means no limit.
type Quotas struct {
	// TunnelsPerAccount is how many open tunnels an account may have;
	// OpenTunnel past it is LimitExceededException.
	TunnelsPerAccount int
	// ConnectionsPerTunnel is how many TCP connections a tunnel carries at
	// once; the source's client past it has its socket closed at once.
	ConnectionsPerTunnel int
	// APIRate and APIBurst: each account's API requests per second, and
	// how many may come at once; past it, ThrottlingException (429).
	APIRate  float64
	APIBurst int
	// HandshakeFailureRate and HandshakeFailureBurst: the failed data-plane
	// handshakes (unknown access token, wrong client token) allowed per
	// second from one client IP address, and at once; past it the
	// address's handshakes get 429 for a while.
	HandshakeFailureRate  float64
	HandshakeFailureBurst int
}

// DefaultQuotas are `warren serve`'s quotas.
func DefaultQuotas() Quotas {
	return Quotas{
		TunnelsPerAccount:     1000,
		ConnectionsPerTunnel:  1000,
		APIRate:               20,
		APIBurst:              40,
		HandshakeFailureRate:  10,
		HandshakeFailureBurst: 20,
	}
}

// Validate checks that every quota is zero (no limit) or sensible.
func (q Quotas) Validate() error {
	switch {
	case q.TunnelsPerAccount < 0:
		return errors.New("--max-tunnels-per-account must be 0 (no limit) or more")
	case q.ConnectionsPerTunnel < 0:
		return errors.New("--max-connections-per-tunnel must be 0 (no limit) or more")
	}
	for _, r := range []struct {
		name, burstName string
		rate            float64
		burst           int
	}{
		{"--api-rate", "--api-burst", q.APIRate, q.APIBurst},
		{"--handshake-failure-rate", "--handshake-failure-burst", q.HandshakeFailureRate, q.HandshakeFailureBurst},
	} {
		switch {
		case r.rate < 0 || math.IsNaN(r.rate) || math.IsInf(r.rate, 0):
			return fmt.Errorf("%s must be a number of requests per second, or 0 for no limit", r.name)
		case r.rate > 0 && r.burst < 1:
			return fmt.Errorf("%s must be at least 1 when %s is set", r.burstName, r.name)
		}
	}
	return nil
}

// Files in the data directory.
const (
	DBFile          = "warren.db"
	CredentialsFile = "credentials"
	CAFile          = caCertFile
)

// AdminAccountName is the name of the admin account the first start creates.
const AdminAccountName = "admin"

// Server is a running (or ready to run) Warren service.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	relay   *relay.Relay
	sweep   *expiry.Sweeper
	bw      *bandwidth.Limiter
	metrics *metrics.Metrics // nil without MetricsListen
	http    *http.Server
	mhttp   *http.Server // the metrics listener's
	tls     *tls.Config
	ln      net.Listener
	mln     net.Listener
	admin   tunnel.Account
	serving atomic.Bool // between Start and Shutdown
	wg      sync.WaitGroup
	errMu   sync.Mutex
	err     error

	cluster *cluster // nil for a server on its own

	// Device identities and tunnel notifications (mqtt.go); nil when off.
	deviceCA *deviceCA
	broker   *mqttbroker.Broker
	external *notify.External
	notifier *notify.Publisher
}

// Open prepares the data directory (creating the store, certificates and the
// admin account on first run) and builds the service. Start listens.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8443"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "warren-data"
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.Quotas == nil {
		q := DefaultQuotas()
		cfg.Quotas = &q
	}
	if err := cfg.Quotas.Validate(); err != nil {
		return nil, err
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.ReadBodyTimeout <= 0 {
		cfg.ReadBodyTimeout = DefaultReadBodyTimeout
	}
	if cfg.Cluster.Listen != "" && !store.IsPostgresURL(cfg.Store) {
		return nil, errors.New("--node-listen needs a PostgreSQL --store that every node shares")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	dbPath := filepath.Join(cfg.DataDir, DBFile)
	private := []string{filepath.Join(cfg.DataDir, CredentialsFile)}
	if cfg.Store == "" {
		private = append(private, dbPath)
	}
	keys := []string{filepath.Join(cfg.DataDir, caKeyFile), filepath.Join(cfg.DataDir, serverKeyFile)}
	if cfg.TLSKey != "" {
		keys = append(keys, cfg.TLSKey)
	}
	if err := checkPermissions(cfg.Logger, cfg.DataDir, keys, private); err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.Store, dbPath)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, store: st}
	if err := s.prepare(ctx); err != nil {
		s.closeNotifications(ctx)
		st.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) prepare(ctx context.Context) error {
	now := time.Now()
	if s.cfg.Cluster.Listen != "" {
		c, err := newCluster(ctx, s.cfg.Cluster, s.store, s.log.With("component", "cluster"))
		if err != nil {
			return err
		}
		s.cluster = c
		// Every node serves certificates of one CA, and signs device
		// certificates with one device CA.
		if !s.cfg.Plaintext && s.cfg.TLSCert == "" {
			if err := shareCAFiles(ctx, s.store, httpsCASecret, filepath.Join(s.cfg.DataDir, caCertFile), filepath.Join(s.cfg.DataDir, caKeyFile), "Warren local CA"); err != nil {
				return err
			}
		}
		if err := shareCAFiles(ctx, s.store, deviceCASecret, filepath.Join(s.cfg.DataDir, DeviceCAFile), filepath.Join(s.cfg.DataDir, deviceCAKeyFile), "Warren device CA"); err != nil {
			return err
		}
	} else if err := s.store.MarkAllDisconnected(ctx, now); err != nil {
		// A server that starts holds no connections, whatever was
		// recorded before a crash. (A cluster node clears only its own
		// records; a dead node's are cleared by the others.)
		return err
	}
	admin, err := s.ensureAdmin(ctx, now)
	if err != nil {
		return err
	}
	s.admin = admin
	if !s.cfg.Plaintext {
		host, _, err := net.SplitHostPort(s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("--listen %q: %w", s.cfg.Listen, err)
		}
		var cert tls.Certificate
		if s.cfg.TLSCert != "" {
			cert, err = tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		} else {
			cert, err = ensureCertificates(s.cfg.DataDir, host, s.mqttHost())
		}
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tlsCipherSuites(), Certificates: []tls.Certificate{cert}}
	}
	// In a cluster the nodes share each account's limit through the store.
	var bwNode string
	if s.cluster != nil {
		bwNode = s.cluster.cfg.ID
	}
	s.bw = bandwidth.New(bandwidth.Config{
		Default: s.cfg.DefaultBandwidth,
		Lookup: func(ctx context.Context, id string) (int64, error) {
			a, err := s.store.Account(ctx, id)
			return a.BandwidthLimit, err
		},
		Logger:      s.log.With("component", "bandwidth"),
		Coordinator: s.store,
		NodeID:      bwNode,
	})
	q := s.cfg.Quotas
	var nodes relay.Nodes
	if s.cluster != nil {
		nodes = s.cluster
	}
	s.relay = relay.New(relay.Config{
		Nodes:                 nodes,
		Store:                 s.store,
		Logger:                s.log.With("component", "relay"),
		Bandwidth:             s.bw,
		MaxConnections:        q.ConnectionsPerTunnel,
		HandshakeFailureRate:  q.HandshakeFailureRate,
		HandshakeFailureBurst: q.HandshakeFailureBurst,
	})
	// The one place that closes tunnels whose lifetime is over.
	s.sweep = expiry.New(expiry.Config{Store: s.store, Relay: s.relay, Logger: s.log.With("component", "expiry")})
	if err := s.prepareMQTT(); err != nil {
		return err
	}
	var apiMetrics api.Metrics
	if s.cfg.MetricsListen != "" {
		var links metrics.Links
		if s.cluster != nil {
			links = s.cluster
		}
		s.metrics = metrics.New(metrics.Config{Relay: s.relay, Bandwidth: s.bw, Store: s.store, Links: links, Logger: s.log.With("component", "metrics")})
		apiMetrics = s.metrics
	}
	// The key that signs the API's nextTokens is the store's, so that a
	// token survives a restart.
	cursorKey, err := s.store.Secret(ctx, "api-next-token", api.CursorKeySize)
	if err != nil {
		return err
	}
	// One handler serves every management API, the account administration
	// included.
	a := api.New(api.Config{
		Store:          s.store,
		Relay:          s.relay,
		Bandwidth:      s.bw,
		Region:         s.cfg.Region,
		Logger:         s.log.With("component", "api"),
		MaxOpenTunnels: q.TunnelsPerAccount,
		RequestRate:    q.APIRate,
		RequestBurst:   q.APIBurst,
		CursorKey:      cursorKey,
		DeviceCA:       s.deviceCA,
		Notifier:       s.apiNotifier(),
		Broker:         s.apiBroker(),
		MQTTEndpoint:   s.mqttEndpoint(),
		Metrics:        apiMetrics,
	})
	mux := http.NewServeMux()
	mux.Handle("/tunnel", s.relay)
	mux.Handle("/", bodyDeadline(a, s.cfg.ReadBodyTimeout))
	s.health(mux)
	s.http = s.newHTTPServer(mux)
	s.http.TLSConfig = s.tls
	if s.metrics != nil {
		mmux := http.NewServeMux()
		mmux.Handle("/metrics", s.metrics.Handler())
		s.health(mmux)
		s.mhttp = s.newHTTPServer(mmux)
	}
	return nil
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// bodyDeadline gives a request's body d to arrive, so that a client
// trickling a body (slowloris past the head) does not hold its connection
// and goroutine for long. The relay's WebSocket connections are not
// wrapped: a read deadline would outlive their upgrade.
func bodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		h.ServeHTTP(w, r)
	})
}

// openStore opens the store --store names: SQLite at dbPath when it is "".
func openStore(ctx context.Context, url, dbPath string) (*store.Store, error) {
	switch {
	case url == "":
		if err := createPrivate(dbPath); err != nil {
			return nil, fmt.Errorf("create store: %w", err)
		}
		return store.Open(dbPath)
	case store.IsPostgresURL(url):
		return store.OpenPostgres(ctx, url)
	default:
		return nil, errors.New("--store must be empty (SQLite in the data directory) or a postgres:// URL")
	}
}

// ensureAdmin returns the admin account (the oldest account with the admin
// flag), creating it on first start, and (re)writes the credentials file when
// it is missing.
func (s *Server) ensureAdmin(ctx context.Context, now time.Time) (tunnel.Account, error) {
	a, err := s.findOrCreateAdmin(ctx, now)
	if errors.Is(err, tunnel.ErrExists) {
		// Another server on the database created it first: use that one.
		a, err = s.findOrCreateAdmin(ctx, now)
	}
	if err != nil {
		return a, err
	}
	path := filepath.Join(s.cfg.DataDir, CredentialsFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", a.AccessKeyID, a.SecretAccessKey)
		if err := writeFileAtomic(path, []byte(body), 0o600); err != nil {
			return a, fmt.Errorf("write credentials: %w", err)
		}
		s.log.Info("wrote admin credentials", "file", path)
	}
	return a, nil
}

// findOrCreateAdmin finds the admin account or creates it;
// tunnel.ErrExists if another server created one since it looked.
func (s *Server) findOrCreateAdmin(ctx context.Context, now time.Time) (tunnel.Account, error) {
	accts, err := s.store.Accounts(ctx, tunnel.Position{}, 0)
	if err != nil {
		return tunnel.Account{}, err
	}
	i := slices.IndexFunc(accts, func(a tunnel.Account) bool { return a.Admin })
	var a tunnel.Account
	switch {
	case i >= 0:
		a = accts[i]
	case len(accts) > 0:
		return a, fmt.Errorf("the store has %d accounts but no admin account", len(accts))
	default:
		if a, err = tunnel.NewAccount(AdminAccountName, true, tunnel.BandwidthDefault, now); err != nil {
			return a, err
		}
		if err := s.store.CreateAccount(ctx, a); err != nil {
			return a, err
		}
		s.log.Info("created admin account", "account", a.ID, "access_key_id", a.AccessKeyID)
	}
	return a, nil
}

// Admin is the admin account (its keys are in the credentials file).
func (s *Server) Admin() tunnel.Account { return s.admin }

// Start listens and serves in the background until Shutdown.
func (s *Server) Start() error {
	// Bounded socket buffers keep the relay's queues in its own fair
	// scheduler rather than in the kernel (the API's requests are small).
	lc := net.ListenConfig{Control: wsbatch.BoundBuffers}
	ln, err := lc.Listen(context.Background(), "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.ln = ln
	scheme := "https"
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	} else {
		scheme = "http"
		s.log.Warn("PLAINTEXT MODE: serving HTTP and WebSockets WITHOUT TLS; access tokens and traffic cross the network in the clear unless a TLS-terminating load balancer is in front", "listen", s.ln.Addr().String())
	}
	s.log.Info("warren serving", "endpoint", scheme+"://"+s.ln.Addr().String(), "data_dir", s.cfg.DataDir,
		"default_account_bandwidth", tunnel.FormatBandwidth(s.cfg.DefaultBandwidth))
	q := s.cfg.Quotas
	s.log.Info("quotas (0: no limit)", "tunnels_per_account", q.TunnelsPerAccount, "connections_per_tunnel", q.ConnectionsPerTunnel,
		"api_rate", q.APIRate, "api_burst", q.APIBurst,
		"handshake_failure_rate", q.HandshakeFailureRate, "handshake_failure_burst", q.HandshakeFailureBurst)
	if dir, err := filepath.Abs(s.cfg.DataDir); err == nil {
		env := fmt.Sprintf("export AWS_SHARED_CREDENTIALS_FILE=%s AWS_ENDPOINT_URL=%s://%s AWS_REGION=%s",
			filepath.Join(dir, CredentialsFile), scheme, s.ln.Addr(), s.cfg.Region)
		if s.tls != nil && s.cfg.TLSCert == "" {
			env += " AWS_CA_BUNDLE=" + filepath.Join(dir, CAFile)
		}
		s.log.Info("admin clients (warren, aws, boto3) find this server with: " + env)
	}
	if s.cluster != nil {
		if err := s.cluster.start(context.Background(), s.relay); err != nil {
			s.ln.Close()
			return err
		}
	}
	if err := s.startMQTT(); err != nil {
		s.ln.Close()
		return err
	}
	if s.mhttp != nil {
		mln, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			s.ln.Close()
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		s.mln = mln
		s.log.Info("metrics serving", "addr", mln.Addr().String(),
			"metrics", "http://"+mln.Addr().String()+"/metrics", "healthz", "/healthz", "readyz", "/readyz")
		s.serve(s.mhttp, mln)
	}
	s.sweep.Start()
	s.serve(s.http, ln)
	s.serving.Store(true)
	return nil
}

// serve runs srv on ln until Shutdown.
func (s *Server) serve(srv *http.Server, ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errMu.Lock()
			s.err = errors.Join(s.err, err)
			s.errMu.Unlock()
			s.log.Error("serve", "err", err)
		}
	}()
}

// MetricsAddr is the metrics listener's address (after Start), "" if none.
func (s *Server) MetricsAddr() string {
	if s.mln == nil {
		return ""
	}
	return s.mln.Addr().String()
}

// Addr is the listening address (after Start).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Endpoint is the URL clients use (after Start).
func (s *Server) Endpoint() string {
	if s.tls == nil {
		return "http://" + s.Addr()
	}
	return "https://" + s.Addr()
}

// Shutdown stops accepting, drops every tunnel peer without a close frame
// (so local proxies reconnect to the next server), waits for in-flight API
// requests (until ctx is done; then their connections are closed), records
// every tunnel as disconnected and closes the store, which checkpoints its
// write-ahead log.
func (s *Server) Shutdown(ctx context.Context) error {
	s.serving.Store(false)
	var errs []error
	if s.ln != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, err, s.http.Close())
		}
	}
	if s.mln != nil {
		errs = append(errs, s.mhttp.Shutdown(ctx))
	}
	s.sweep.Stop()
	errs = append(errs, s.relay.Shutdown(ctx))
	s.wg.Wait()
	errs = append(errs, s.closeNotifications(ctx))
	s.bw.Close()
	// The store is left as the next start would make it: nobody connected.
	// This gets a moment of its own even when ctx ran out.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if s.cluster != nil {
		errs = append(errs, s.cluster.shutdown(mctx))
	} else {
		errs = append(errs, s.store.MarkAllDisconnected(mctx, time.Now()))
	}
	s.errMu.Lock()
	errs = append(errs, s.store.Close(), s.err)
	s.errMu.Unlock()
	return errors.Join(errs...)
}
