package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/warrentunnel/warren/internal/store/storetest"
)

// `warren serve --store postgres://...`: the README's session on a
// PostgreSQL store (a thing, a tunnel, two local proxies, a page through
// them), and a restart that keeps the tunnel and its tokens: the proxies
// reconnect with the tokens they had.
func TestPostgresStoreSession(t *testing.T) {
	url := storetest.PostgresDatabase(t)
	s := startService(t, "--store", url)
	device := httpDevice(t, "on postgres")
	tun, ports, src, dst := s.tunnelPair(t, "pgdev", []string{"HTTP"}, []string{device})
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/a", ports[0])); got != "on postgres /a" {
		t.Fatal(got)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "warren.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("warren.db in the data directory of a PostgreSQL store: %v", err)
	}
	var things struct {
		Things []struct {
			ThingName string `json:"thingName"`
		} `json:"things"`
	}
	s.warren(t, &things, "list-things")
	if len(things.Things) != 1 || things.Things[0].ThingName != "pgdev" {
		t.Fatalf("list-things: %+v", things)
	}

	s.restartKeepsTunnel(t, tun, ports[0], src, dst, "on postgres")
	var d describeOut
	s.warren(t, &d, "describe-tunnel", "--tunnel-id", tun.TunnelID)
	if d.Tunnel.DestinationConfig.ThingName != "pgdev" {
		t.Fatalf("after restart: %+v", d.Tunnel)
	}
}
