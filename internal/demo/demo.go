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
		Targets: map[string]string{"HTTP": dev.Addr()},
		Ports:   map[string]int{"HTTP": port},
		Logger:  cfg.Logger,
	})
	if err != nil {
		return err
	}
	defer tun.Close()
	base := "http://" + tun.Sources["HTTP"]
	fmt.Fprintf(out, "warren server      %s (data in %s)\n", tun.Endpoint, tun.DataDir)
	fmt.Fprintf(out, "thing DemoDevice, tunnel %s with service HTTP\n", tun.ID)
	fmt.Fprintf(out, "source local proxy listens on %s; the destination local proxy connects to the device\n\n", tun.Sources["HTTP"])

	one, err := LoadPage(ctx, base, 1)
	if err != nil {
		return fmt.Errorf("page load with 1 connection: %w", err)
	}
	fmt.Fprintf(out, "page + %d resources through the tunnel, 1 connection:                %8.1f ms\n", cfg.Resources, ms(one))
	many, err := LoadPage(ctx, base, cfg.Parallel)
	if err != nil {
		return fmt.Errorf("page load with %d connections: %w", cfg.Parallel, err)
	}
	fmt.Fprintf(out, "page + %d resources through the tunnel, %d simultaneous connections: %8.1f ms (%.1fx faster)\n",
		cfg.Resources, cfg.Parallel, ms(many), float64(one)/float64(many))
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
