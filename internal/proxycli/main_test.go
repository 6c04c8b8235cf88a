package proxycli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/warrentunnel/warren/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := Main(ctx, args, func(string) string { return "" }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestInformationalFlags(t *testing.T) {
	if code, _, errOut := runMain(t, "--help"); code != 0 || !strings.Contains(errOut, "--access-token") {
		t.Errorf("--help: %d %q", code, errOut)
	}
	if code, out, _ := runMain(t, "-V"); code != 0 || !strings.Contains(out, "Warren local proxy") {
		t.Errorf("-V: %d %q", code, out)
	}
	p := filepath.Join(t.TempDir(), "settings.json")
	if code, _, errOut := runMain(t, "--export-default-settings", p); code != 0 {
		t.Fatalf("--export-default-settings: %d %q", code, errOut)
	}
	var v map[string]any
	data, _ := os.ReadFile(p)
	if err := json.Unmarshal(data, &v); err != nil || v["tunneling"] == nil {
		t.Errorf("exported settings %s: %v", data, err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-t", "tok", "-e", "h", "-s", "1", "-d", "2"},
		{"-t", "tok", "-e", "h", "-s", "99999"},
		{"-e", "h", "-s", "1"},
		{"--nope"},
	} {
		code, _, errOut := runMain(t, args...)
		if code != 1 || !strings.Contains(errOut, "localproxy: ") || !strings.Contains(errOut, "--help") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// relay is a minimal WebSocket relay: it rejects with status, or upgrades,
// sends SERVICE_IDS and then, if closeAfter, a close frame.
func relay(t *testing.T, status int, ids []string, closeAfter bool) string {
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		if status != 0 {
			http.Error(w, "go away", status)
			return
		}
		hdr := http.Header{"Sec-Websocket-Protocol": {r.Header.Get("Sec-WebSocket-Protocol")}}
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, hdr)
		if err != nil {
			return
		}
		defer ws.Close()
		f, _ := wire.AppendFrame(nil, &wire.Message{Type: wire.TypeServiceIDs, AvailableServiceIDs: ids})
		ws.WriteMessage(websocket.BinaryMessage, f)
		if closeAfter {
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(time.Second))
		}
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return "ws://" + strings.TrimPrefix(srv.URL, "http://")
}

func TestExitStatuses(t *testing.T) {
	tests := []struct {
		name   string
		ep     string
		code   int
		stderr string
	}{
		{"handshake rejected", relay(t, 401, nil, false), 0, "401"},
		{"service ids mismatch", relay(t, 0, []string{"HTTP", "EXTRA"}, false), 1, "service ids"},
		{"tunnel closed", relay(t, 0, []string{"HTTP"}, true), 0, "tunnel closed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runMain(t, "-t", "tok", "-e", tc.ep, "-s", "HTTP=0", "-v", "0")
			if code != tc.code || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d (want %d), stderr %q", code, tc.code, errOut)
			}
		})
	}
}
