// Package demo is `warren demo`: a complete tunnel on loopback, built from
// the same pieces as the real binaries (the server, the admin clients, the
// local proxy engines), with a sample device web server and a timed page
// load with one and with many simultaneous connections.
package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"golang.org/x/sync/errgroup"

	"github.com/warrentunnel/warren/internal/admin"
	"github.com/warrentunnel/warren/internal/localproxy"
	"github.com/warrentunnel/warren/internal/server"
)

// Config of a demo run.
type Config struct {
	Port      int // source local proxy port (0: any free port; a busy port falls back to a free one)
	Resources int // resources on the sample page
	Parallel  int // simultaneous connections of the parallel load
	Exit      bool
	Logger    *slog.Logger
	Out       io.Writer
}

// Run runs the demo until ctx is done (or, with Exit, until the page loads).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Resources <= 0 {
		cfg.Resources = 100
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 16
	}
	out := cfg.Out
	dir, err := os.MkdirTemp("", "warren-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	srv, err := server.Open(ctx, server.Config{Listen: "127.0.0.1:0", DataDir: dir, Logger: cfg.Logger.With("component", "server")})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Fprintf(out, "warren server     %s (data in %s)\n", srv.Endpoint(), dir)

	dev, err := StartDevice(cfg.Resources)
	if err != nil {
		return err
	}
	defer dev.Close()
	fmt.Fprintf(out, "device web server http://%s/ (a page with %d resources)\n", dev.Addr(), cfg.Resources)

	awsCfg, err := clientConfig(srv, filepath.Join(dir, server.CAFile))
	if err != nil {
		return err
	}
	const thing = "DemoDevice"
	if _, err := iot.NewFromConfig(awsCfg).CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(thing)}); err != nil {
		return fmt.Errorf("create thing: %w", err)
	}
	tun, err := admin.NewTunnelClient(awsCfg).OpenTunnel(ctx, &admin.OpenTunnelInput{
		Description:       "warren demo",
		DestinationConfig: &admin.DestinationConfig{ThingName: thing, Services: []string{"HTTP"}},
	})
	if err != nil {
		return fmt.Errorf("open tunnel: %w", err)
	}
	fmt.Fprintf(out, "thing %s, tunnel %s\n", thing, tun.TunnelID)

	port, err := pickPort(cfg.Port)
	if err != nil {
		return err
	}
	endpoint := srv.Addr()
	ca := filepath.Join(dir, server.CAFile)
	dstArgs := []string{"-e", endpoint, "-c", ca, "-d", "HTTP=" + dev.Addr(), "-t", tun.DestinationAccessToken}
	srcArgs := []string{"-e", endpoint, "-c", ca, "-s", "HTTP=" + strconv.Itoa(port), "-t", tun.SourceAccessToken}

	pctx, stopProxies := context.WithCancel(ctx)
	defer stopProxies()
	g, gctx := errgroup.WithContext(pctx)
	ready := make(chan string, 1)
	for _, p := range []struct {
		name string
		args []string
	}{{"destination", dstArgs}, {"source", srcArgs}} {
		lc, err := localproxy.ParseArgs(p.args, func(string) string { return "" })
		if err != nil {
			return fmt.Errorf("%s local proxy: %w", p.name, err)
		}
		lc.Logger = cfg.Logger.With("component", p.name+" localproxy")
		if p.name == "source" {
			lc.Ready = func(addrs map[string]string) {
				select {
				case ready <- addrs["HTTP"]:
				default:
				}
			}
		}
		g.Go(func() error {
			err := localproxy.Run(gctx, lc)
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s local proxy: %w", p.name, err)
			}
			return nil
		})
	}
	fail := func(err error) error {
		stopProxies()
		g.Wait()
		return err
	}
	var addr string
	select {
	case addr = <-ready:
	case <-gctx.Done():
		if err := g.Wait(); err != nil {
			return err
		}
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fail(errors.New("the source local proxy did not start listening within 30 s"))
	}
	base := "http://" + addr
	fmt.Fprintf(out, "source local proxy listens on %s; the destination local proxy connects to the device\n\n", addr)

	one, err := LoadPage(ctx, base, 1)
	if err != nil {
		return fail(fmt.Errorf("page load with 1 connection: %w", err))
	}
	fmt.Fprintf(out, "page + %d resources through the tunnel, 1 connection:                %8.1f ms\n", cfg.Resources, ms(one))
	many, err := LoadPage(ctx, base, cfg.Parallel)
	if err != nil {
		return fail(fmt.Errorf("page load with %d connections: %w", cfg.Parallel, err))
	}
	fmt.Fprintf(out, "page + %d resources through the tunnel, %d simultaneous connections: %8.1f ms (%.1fx faster)\n",
		cfg.Resources, cfg.Parallel, ms(many), float64(one)/float64(many))
	fmt.Fprintf(out, "(each resource costs the device %v of think time)\n\n", thinkTime)
	fmt.Fprintf(out, "Open %s/ in a browser to load the device's page through the tunnel.\n", base)
	if cfg.Exit {
		stopProxies()
		return g.Wait()
	}
	fmt.Fprintln(out, "Press Ctrl-C to stop.")
	<-gctx.Done()
	stopProxies()
	err = g.Wait()
	fmt.Fprintln(out, "\nstopped; cleaned up", dir)
	return err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pickPort returns want if it is free, else any free port.
func pickPort(want int) (int, error) {
	if want > 0 {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", want)); err == nil {
			ln.Close()
			return want, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// clientConfig is the aws.Config an admin would have: the server's admin
// credentials, its endpoint, and its CA.
func clientConfig(srv *server.Server, caFile string) (aws.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return aws.Config{}, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return aws.Config{}, fmt.Errorf("no certificate in %s", caFile)
	}
	a := srv.Admin()
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(a.AccessKeyID, a.SecretAccessKey, ""),
		BaseEndpoint: aws.String(srv.Endpoint()),
		HTTPClient:   &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
	}, nil
}
