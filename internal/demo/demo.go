// Package demo is `warren demo`: a complete tunnel on loopback, built from
// the same pieces as the real binaries (the server, the admin clients, the
// local proxy engines), with a sample device web server and a timed page
// load with one and with many simultaneous connections. Benchmarks use its
// OpenTunnel too.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// Config of a demo run.
type Config struct {
	Port      int // source local proxy port (0: any free port; a busy port falls back to a free one)
	Resources int // resources on the sample page
	Parallel  int // simultaneous connections of the parallel load
	// Bandwidth is the server's default account bandwidth limit, bytes per
	// second (0: unlimited); the demo also loads the page without it.
	Bandwidth int64
	Exit      bool
	Logger    *slog.Logger
	Out       io.Writer
}

// Run runs the demo until ctx is done (or, with Exit, until the page loads).
func Run(ctx context.Context, cfg Config) error {
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
	dev, err := StartDevice(cfg.Resources)
	if err != nil {
		return err
	}
	defer dev.Close()
	fmt.Fprintf(out, "device web server  http://%s/ (a page with %d resources)\n", dev.Addr(), cfg.Resources)

	port, err := pickPort(cfg.Port)
	if err != nil {
		return err
	}
	tun, err := OpenTunnel(ctx, TunnelConfig{
		Targets:   map[string]string{"HTTP": dev.Addr()},
		Ports:     map[string]int{"HTTP": port},
		Bandwidth: cfg.Bandwidth,
		Logger:    cfg.Logger,
	})
	if err != nil {
		return err
	}
	defer tun.Close()
	base := "http://" + tun.Sources["HTTP"]
	fmt.Fprintf(out, "warren server      %s (data in %s)\n", tun.Endpoint, tun.DataDir)
	fmt.Fprintf(out, "thing DemoDevice, tunnel %s with service HTTP\n", tun.ID)
	fmt.Fprintf(out, "source local proxy listens on %s; the destination local proxy connects to the device\n\n", tun.Sources["HTTP"])

	if cfg.Bandwidth > 0 {
		fmt.Fprintf(out, "bandwidth limit in force: %s in each direction, the server's default for an account\n", tunnel.FormatBandwidth(cfg.Bandwidth))
		fmt.Fprintf(out, "(warren serve --default-account-bandwidth; warren update-account --bandwidth-limit for one account)\n")
		size := float64(cfg.Resources * resourceSize)
		fmt.Fprintf(out, "the page's resources are %.0f KB: at the limit they take %.1f s to send however many connections\n"+
			"carry them; simultaneous connections gain only on the device's think time and the round trips\n\n",
			size/1000, size/float64(cfg.Bandwidth))
		if err := loadBoth(ctx, out, base, cfg, "at the limit"); err != nil {
			return err
		}
		if err := tun.SetBandwidth(ctx, 0); err != nil {
			return fmt.Errorf("update-account: %w", err)
		}
		fmt.Fprintf(out, "\nwarren update-account --bandwidth-limit 0: the demo's account is now unlimited\n")
	}
	if err := loadBoth(ctx, out, base, cfg, "unlimited"); err != nil {
		return err
	}
	if cfg.Bandwidth > 0 {
		if err := tun.SetBandwidth(ctx, tunnel.BandwidthDefault); err != nil {
			return fmt.Errorf("update-account: %w", err)
		}
		fmt.Fprintf(out, "\nwarren update-account --bandwidth-limit default: back to %s for your browser\n", tunnel.FormatBandwidth(cfg.Bandwidth))
	}
	fmt.Fprintf(out, "(the device spends %v of think time on each resource)\n\n", thinkTime)
	fmt.Fprintf(out, "Open %s/ in a browser to load the device's page through the tunnel.\n", base)
	if cfg.Exit {
		return tun.Close()
	}
	fmt.Fprintln(out, "Press Ctrl-C to stop.")
	select {
	case <-ctx.Done():
	case <-tun.Done():
	}
	err = tun.Close()
	fmt.Fprintln(out, "\nstopped; removed", tun.DataDir)
	return err
}

// loadBoth loads the page with one connection and with cfg.Parallel, and
// prints both times.
func loadBoth(ctx context.Context, out io.Writer, base string, cfg Config, label string) error {
	one, err := LoadPage(ctx, base, 1)
	if err != nil {
		return fmt.Errorf("page load with 1 connection: %w", err)
	}
	fmt.Fprintf(out, "page + %d resources, %-12s  1 connection:  %8.1f ms\n", cfg.Resources, label+",", ms(one))
	many, err := LoadPage(ctx, base, cfg.Parallel)
	if err != nil {
		return fmt.Errorf("page load with %d connections: %w", cfg.Parallel, err)
	}
	fmt.Fprintf(out, "page + %d resources, %-12s %2d connections: %8.1f ms (%.1fx faster)\n",
		cfg.Resources, label+",", cfg.Parallel, ms(many), float64(one)/float64(many))
	return nil
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
