package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"golang.org/x/sync/errgroup"

	"github.com/warrentunnel/warren/internal/admin"
	"github.com/warrentunnel/warren/internal/localproxy"
	"github.com/warrentunnel/warren/internal/proxycli"
	"github.com/warrentunnel/warren/internal/server"
	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// TunnelConfig describes a complete loopback tunnel: a server on a
// temporary data directory, a thing, a tunnel and both local proxies.
type TunnelConfig struct {
	// Targets maps each service to the address the destination local proxy
	// connects to.
	Targets map[string]string
	// Ports maps a service to the source local proxy's port (0 or absent:
	// any free port).
	Ports map[string]int
	// Bandwidth is the server's default account bandwidth limit, in bytes
	// per second (0: unlimited).
	Bandwidth int64
	Logger    *slog.Logger
}

// Tunnel is a running loopback tunnel.
type Tunnel struct {
	ID       string
	Endpoint string            // the server's URL
	DataDir  string            // removed by Close
	Sources  map[string]string // service → source local proxy's listen address

	srv       *server.Server
	aws       aws.Config // the admin account's clients
	closeOnce sync.Once
	closeErr  error
	stop      context.CancelFunc
	proxies   *errgroup.Group
	done      context.Context // done when a proxy ended
}

// OpenTunnel starts the server, creates a thing and opens a tunnel with the
// admin clients, and runs a destination and a source local proxy, built from
// command-line arguments exactly as the localproxy binary builds them. It
// returns once the source listens for every service.
func OpenTunnel(ctx context.Context, cfg TunnelConfig) (_ *Tunnel, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Targets) == 0 {
		return nil, errors.New("a tunnel needs at least one service")
	}
	dir, err := os.MkdirTemp("", "warren-demo-")
	if err != nil {
		return nil, err
	}
	t := &Tunnel{DataDir: dir}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	t.srv, err = server.Open(ctx, server.Config{Listen: "127.0.0.1:0", DataDir: dir, DefaultBandwidth: cfg.Bandwidth,
		Logger: cfg.Logger.With("component", "server")})
	if err != nil {
		return t, err
	}
	if err := t.srv.Start(); err != nil {
		return t, err
	}
	t.Endpoint = t.srv.Endpoint()
	awsCfg, err := clientConfig(t.srv, filepath.Join(dir, server.CAFile))
	if err != nil {
		return t, err
	}
	t.aws = awsCfg
	services := make([]string, 0, len(cfg.Targets))
	for s := range cfg.Targets {
		services = append(services, s)
	}
	sort.Strings(services)
	const thing = "DemoDevice"
	if _, err := iot.NewFromConfig(awsCfg).CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(thing)}); err != nil {
		return t, fmt.Errorf("create thing: %w", err)
	}
	tc := admin.NewTunnelClient(awsCfg)
	out, err := tc.OpenTunnel(ctx, &tunnelapi.OpenTunnelInput{
		Description:       aws.String("warren demo"),
		DestinationConfig: &tunnelapi.DestinationConfig{ThingName: aws.String(thing), Services: services},
	})
	if err != nil {
		return t, fmt.Errorf("open tunnel: %w", err)
	}
	t.ID = out.TunnelID

	var dmap, smap []string
	for _, s := range services {
		dmap = append(dmap, s+"="+cfg.Targets[s])
		smap = append(smap, s+"="+strconv.Itoa(cfg.Ports[s]))
	}
	ca := filepath.Join(dir, server.CADir)
	endpoint := t.srv.Addr()
	pctx, stop := context.WithCancel(context.Background())
	t.stop = stop
	g, gctx := errgroup.WithContext(pctx)
	t.proxies, t.done = g, gctx
	ready := make(chan map[string]string, 1)
	for _, p := range []struct {
		name string
		args []string
	}{
		{"destination", []string{"-e", endpoint, "-c", ca, "-d", strings.Join(dmap, ","), "-t", out.DestinationAccessToken}},
		{"source", []string{"-e", endpoint, "-c", ca, "-s", strings.Join(smap, ","), "-t", out.SourceAccessToken}},
	} {
		lc, err := proxycli.ParseArgs(p.args, func(string) string { return "" })
		if err != nil {
			return t, fmt.Errorf("%s local proxy: %w", p.name, err)
		}
		lc.Logger = cfg.Logger.With("component", p.name+" localproxy")
		if p.name == "source" {
			lc.Ready = func(addrs map[string]string) {
				select {
				case ready <- addrs:
				default:
				}
			}
		}
		g.Go(func() error {
			err := localproxy.Run(gctx, lc.Config)
			if err == nil {
				err = fmt.Errorf("%s local proxy stopped", p.name)
			}
			return fmt.Errorf("%s local proxy: %w", p.name, err)
		})
	}
	deadline := time.After(30 * time.Second)
	select {
	case t.Sources = <-ready:
	case <-gctx.Done():
		return t, t.Close()
	case <-ctx.Done():
		return t, ctx.Err()
	case <-deadline:
		return t, errors.New("the source local proxy did not start listening within 30 s")
	}
	// A connection made before the destination is connected would be
	// refused; wait until DescribeTunnel shows both sides connected,
	// asking no faster than the server's default API rate (20/s).
	for {
		d, err := tc.DescribeTunnel(ctx, &tunnelapi.DescribeTunnelInput{TunnelID: aws.String(t.ID)})
		if err != nil {
			return t, fmt.Errorf("describe tunnel: %w", err)
		}
		if connected(d.Tunnel.SourceConnectionState) && connected(d.Tunnel.DestinationConnectionState) {
			return t, nil
		}
		select {
		case <-gctx.Done():
			return t, t.Close()
		case <-ctx.Done():
			return t, ctx.Err()
		case <-deadline:
			return t, errors.New("the local proxies did not both connect within 30 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func connected(s *tunnelapi.ConnectionState) bool {
	return s != nil && s.Status == tunnelapi.ConnectionStatusConnected
}

// SetBandwidth sets the tunnel's account's own bandwidth limit with
// update-account (tunnel.BandwidthDefault: back to the server's default; 0:
// unlimited).
func (t *Tunnel) SetBandwidth(ctx context.Context, limit int64) error {
	_, err := admin.NewAccountClient(t.aws).UpdateAccount(ctx, &tunnelapi.UpdateAccountInput{
		AccountID:      aws.String(t.srv.Admin().ID),
		BandwidthLimit: &limit,
	})
	return err
}

// Done is closed when a local proxy has stopped; Close says why.
func (t *Tunnel) Done() <-chan struct{} { return t.done.Done() }

// Close stops the proxies and the server and removes the data directory. It
// returns why a proxy stopped, if one stopped by itself.
func (t *Tunnel) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.close() })
	return t.closeErr
}

func (t *Tunnel) close() error {
	var errs []error
	if t.stop != nil {
		early := t.done.Err() != nil
		t.stop()
		if err := t.proxies.Wait(); early {
			errs = append(errs, err)
		}
	}
	if t.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, t.srv.Shutdown(ctx))
		cancel()
	}
	errs = append(errs, os.RemoveAll(t.DataDir))
	return errors.Join(errs...)
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
