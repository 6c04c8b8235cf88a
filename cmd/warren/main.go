// Command warren is the Warren service (`warren serve`), its demo
// (`warren demo`), its benchmark (`warren bench`), the local proxy
// (`warren localproxy`, the same as the localproxy binary) and the admin
// commands (`warren open-tunnel`, ...). It holds flags and wiring only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/warrentunnel/warren/internal/admin"
	"github.com/warrentunnel/warren/internal/benchmark"
	"github.com/warrentunnel/warren/internal/demo"
	"github.com/warrentunnel/warren/internal/proxycli"
	"github.com/warrentunnel/warren/internal/server"
	"github.com/warrentunnel/warren/internal/tunnel"
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "localproxy":
		stopDebug, err := startDebug()
		if err != nil {
			fmt.Fprintln(stderr, "warren localproxy:", err)
			return 1
		}
		defer stopDebug()
		return proxycli.Main(ctx, args[1:], os.Getenv, stdout, stderr)
	case "bench-hop":
		// A hop of `warren bench`'s floor chain; not for users.
		return benchmark.HopMain(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-V":
		fmt.Fprintln(stdout, "warren", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	for _, c := range admin.Commands() {
		if c == args[0] {
			return admin.Run(ctx, args, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "warren: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage: warren <command> [flags]

Service:
  serve      run the management API and the tunnel relay (see warren serve -h)
  demo       run a complete tunnel on loopback and time a page load through it
  bench      measure the data path against direct TCP and a minimal TLS relay (see warren bench -h)
  localproxy the local proxy (the localproxy binary's flags)

Admin commands (AWS CLI flag names; endpoint, region, credentials and CA from the AWS environment):
  %s
`, strings.Join(admin.Commands(), "\n  "))
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	return newFormatLogger(w, level, "text")
}

// newFormatLogger is a logger writing to w at level, as text (key=value)
// or as JSON lines.
func newFormatLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func serve(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "address of the HTTPS listener (API and /tunnel)")
	fs.StringVar(&cfg.DataDir, "data-dir", "./warren-data", "directory of the store, certificates and credentials")
	fs.StringVar(&cfg.Store, "store", "", "database: empty for SQLite in --data-dir, or postgres://user@host:5432/db?sslmode=... for PostgreSQL, which several servers may share (--data-dir still keeps the TLS material and credentials)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate to serve (default: one generated in the data directory)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.BoolVar(&cfg.Plaintext, "plaintext", false, "serve HTTP/WS without TLS (only behind a TLS-terminating load balancer)")
	fs.StringVar(&cfg.Region, "region", "us-east-1", "region used in ARNs and SigV4 scopes")
	cfg.DefaultBandwidth = 800_000 // the described service's 800 KB/s per account
	fs.Func("default-account-bandwidth", "bandwidth limit of an account without one of its own, in each direction: bytes per second with optional units (800KB, 4MB, 1.5MiB; KB = 1000 bytes), 0 for unlimited (default 800KB)", func(v string) error {
		n, err := tunnel.ParseBandwidth(v)
		if err != nil {
			return err
		}
		if n < 0 {
			return errors.New("the server's default cannot itself be \"default\"")
		}
		cfg.DefaultBandwidth = n
		return nil
	})
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text (key=value) or json (one JSON object a line)")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address of a plain-HTTP listener for Prometheus (/metrics) and health checks (/healthz, /readyz); port 0 picks one and logs it (default: none)")
	q := server.DefaultQuotas()
	fs.IntVar(&q.TunnelsPerAccount, "max-tunnels-per-account", q.TunnelsPerAccount,
		"open tunnels an account may have; OpenTunnel past it is LimitExceededException (0: no limit)")
	fs.IntVar(&q.ConnectionsPerTunnel, "max-connections-per-tunnel", q.ConnectionsPerTunnel,
		"simultaneous TCP connections of a tunnel; a client past it has its socket closed at once (0: no limit)")
	fs.Float64Var(&q.APIRate, "api-rate", q.APIRate,
		"API requests per second of an account; past it (and the burst), ThrottlingException, HTTP 429 (0: no limit)")
	fs.IntVar(&q.APIBurst, "api-burst", q.APIBurst, "API requests an account may make in a burst, before --api-rate paces it")
	fs.Float64Var(&q.HandshakeFailureRate, "handshake-failure-rate", q.HandshakeFailureRate,
		"failed tunnel handshakes (bad access or client token) per second from one IP address; past it (and the burst), HTTP 429 (0: no limit)")
	fs.IntVar(&q.HandshakeFailureBurst, "handshake-failure-burst", q.HandshakeFailureBurst,
		"failed tunnel handshakes one IP address may make in a burst, before --handshake-failure-rate paces it")
	cfg.Quotas = &q
	fs.StringVar(&cfg.MQTT.Listen, "mqtt-listen", "", "address of the embedded MQTT broker (MQTT over TLS, devices authenticate with certificates from create-keys-and-certificate); it notifies devices of their tunnels")
	fs.StringVar(&cfg.MQTT.URL, "mqtt-url", "", "external MQTT broker to publish tunnel notifications to instead: mqtt://[user:password@]host[:1883] or mqtts://...")
	fs.StringVar(&cfg.MQTT.Username, "mqtt-username", "", "user name for --mqtt-url")
	fs.StringVar(&cfg.MQTT.Password, "mqtt-password", "", "password for --mqtt-url (default: $WARREN_MQTT_PASSWORD)")
	fs.StringVar(&cfg.MQTT.CAFile, "mqtt-ca", "", "PEM CA bundle that verifies an mqtts:// broker (default: the system's roots)")
	fs.StringVar(&cfg.Cluster.Listen, "node-listen", "", "several nodes: this node's listener for links from the other nodes (mutual TLS with the cluster CA the store keeps); needs a PostgreSQL --store shared by every node, with any TCP load balancer in front of their --listen (see the README's \"Several nodes\")")
	fs.StringVar(&cfg.Cluster.Address, "node-address", "", "host:port the other nodes dial to reach --node-listen (default: --node-listen's, with the port it bound)")
	fs.StringVar(&cfg.Cluster.ID, "node-id", "", "this node's name among the nodes, at most 64 characters (default: random at each start)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "warren serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if cfg.MQTT.Password == "" {
		cfg.MQTT.Password = os.Getenv("WARREN_MQTT_PASSWORD")
	}
	log, err := newFormatLogger(stderr, *level, *format)
	if err != nil {
		fmt.Fprintln(stderr, "warren serve:", err)
		return 2
	}
	cfg.Logger = log
	stopDebug, err := startDebug()
	if err != nil {
		fmt.Fprintln(stderr, "warren serve:", err)
		return 1
	}
	defer stopDebug()
	srv, err := server.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "warren serve:", err)
		return 1
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintln(stderr, "warren serve:", err)
		srv.Shutdown(context.Background())
		return 1
	}
	<-ctx.Done()
	log.Info("shutting down")
	// Within the 5 s a process supervisor usually waits after SIGTERM.
	sctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg demo.Config
	fs.IntVar(&cfg.Port, "port", 5555, "source local proxy port to open in a browser (0: any free port)")
	fs.IntVar(&cfg.Resources, "resources", 100, "resources on the sample page")
	fs.IntVar(&cfg.Parallel, "parallel", 16, "simultaneous connections for the parallel page load")
	fs.BoolVar(&cfg.Exit, "exit", false, "exit after the page loads instead of waiting for Ctrl-C")
	cfg.Bandwidth = 800_000
	fs.Func("default-account-bandwidth", "the server's default account bandwidth limit, as for warren serve (0: unlimited) (default 800KB)", func(v string) error {
		n, err := tunnel.ParseBandwidth(v)
		if err == nil && n < 0 {
			err = errors.New("want a limit or 0")
		}
		cfg.Bandwidth = max(n, 0)
		return err
	})
	level := fs.String("log-level", "warn", "log level of the embedded server and proxies")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "warren demo:", err)
		return 2
	}
	cfg.Logger = log
	cfg.Out = stdout
	if err := demo.Run(ctx, cfg); err != nil {
		fmt.Fprintln(stderr, "warren demo:", err)
		return 1
	}
	return 0
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg benchmark.Config
	fs.BoolVar(&cfg.Quick, "quick", false, "a short run for CI: small sizes, one sample, 100 where the full run uses 1000")
	fs.IntVar(&cfg.Samples, "samples", 0, "repetitions of each throughput and page-load figure, whose median is printed (default 3; 1 with --quick)")
	fs.StringVar(&cfg.JSONPath, "json", "", "also write the table to this file as JSON")
	fs.StringVar(&cfg.LocalProxy, "localproxy", "", "run this local proxy binary (e.g. the official one) instead of warren localproxy")
	fs.StringVar(&cfg.Postgres, "postgres", "", "PostgreSQL server on which the nodes rows (two warren nodes) create and drop a scratch database (default $WARREN_TEST_POSTGRES, else "+benchmark.DefaultPostgres+"; without a server there the rows are left out)")
	only := fs.String("only", "", "measure only these comma-separated groups of rows: bulk, rss, latency, simultaneous, page, nodes, idle")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "warren bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "warren bench:", err)
		return 1
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.Exe, cfg.Out, cfg.Progress = exe, stdout, stderr
	if err := benchmark.Run(ctx, cfg); err != nil {
		fmt.Fprintln(stderr, "warren bench:", err)
		return 1
	}
	return 0
}

// startDebug serves net/http/pprof on the loopback address in
// $WARREN_DEBUG_ADDR, when it is set: `warren bench` reads goroutine counts
// there. The returned func stops it.
func startDebug() (stop func(), err error) {
	addr := os.Getenv(benchmark.DebugAddrEnv)
	if addr == "" {
		return func() {}, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s=%q: want a loopback IP address and port", benchmark.DebugAddrEnv, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", benchmark.DebugAddrEnv, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	return func() {
		srv.Close()
		<-done
	}, nil
}
