package benchmark

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sync/errgroup"
)

// idleCost is what idle tunnels cost the server, in KiB of resident memory
// per tunnel.
type idleCost struct {
	openKiB      float64 // per tunnel opened through the API, no peer connected
	connectedKiB float64 // per tunnel once both its peers are connected
}

// idleTunnels opens n more tunnels, connects both peers of each with a
// bare WebSocket client in this process (no streams, no data), and reads
// the server's RSS before, after the opens and after the connects. The
// Go runtime of the server decides when to collect, so the figures are
// what a user's `ps` would show, not live heap.
func idleTunnels(ctx context.Context, w *warrenPath, n int, progress func(string, ...any)) (idleCost, error) {
	var cost idleCost
	settle := func() (int64, error) {
		time.Sleep(1500 * time.Millisecond)
		return rssKiB(w.server.pid())
	}
	before, err := settle()
	if err != nil {
		return cost, err
	}
	tokens := make([][2]string, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			out, err := w.openTunnel(gctx, []string{"IDLE"})
			if err != nil {
				return err
			}
			tokens[i] = [2]string{out.SourceAccessToken, out.DestinationAccessToken}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return cost, err
	}
	opened, err := settle()
	if err != nil {
		return cost, err
	}
	progress("opened %d tunnels; connecting %d peers", n, 2*n)

	d := &websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: w.rootCAs, MinVersion: tls.VersionTLS12},
		Subprotocols:     []string{"aws.iot.securetunneling-3.0"},
		HandshakeTimeout: 30 * time.Second,
	}
	var (
		mu      sync.Mutex
		conns   []*websocket.Conn
		readers sync.WaitGroup
	)
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		readers.Wait()
	}()
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		for side, mode := range []string{"source", "destination"} {
			g.Go(func() error {
				h := http.Header{}
				h.Set("access-token", tokens[i][side])
				h.Set("client-token", clientToken())
				c, resp, err := d.DialContext(gctx, "wss://"+w.endpoint+"/tunnel?local-proxy-mode="+mode, h)
				if err != nil {
					if resp != nil {
						return fmt.Errorf("tunnel %d %s peer: %w (%s)", i, mode, err, resp.Status)
					}
					return fmt.Errorf("tunnel %d %s peer: %w", i, mode, err)
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				// Read (and drop) what the relay sends, so its control
				// frames and pings are answered as a real peer would.
				readers.Go(func() {
					for {
						if _, _, err := c.NextReader(); err != nil {
							return
						}
					}
				})
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return cost, err
	}
	connected, err := settle()
	if err != nil {
		return cost, err
	}
	cost.openKiB = float64(opened-before) / float64(n)
	cost.connectedKiB = float64(connected-opened) / float64(n)
	return cost, nil
}
