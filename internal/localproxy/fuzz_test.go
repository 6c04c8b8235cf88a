package localproxy

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigDir resolves a tunnel's service ids (comma-separated) against
// two --config-dir mapping files of fuzzed content, in both modes. It must
// never panic; a resolved mapping names exactly the tunnel's services, each
// with an endpoint ValidateMappingEndpoint accepts, and resolves the same
// way again (a reconnect); a refusal is ErrServiceMismatch or names the
// file at fault.
func FuzzConfigDir(f *testing.F) {
	f.Add([]byte("; services\nHTTP=8080\n[other]\nSSH=22\n"), []byte("SSH = 127.0.0.1:22\n"), "HTTP,SSH", false)
	f.Add([]byte("HTTP=8080\nHTTP=8081\n"), []byte("HTTP=/run/app.sock\n"), "HTTP", true)
	f.Add([]byte("[unterminated\nA=1\n"), []byte("# c\nA=host.example:99999\n"), "A", true)
	f.Add([]byte("no equals sign\n"), []byte("B=0\n"), "B,A,B", false)
	f.Add([]byte(strings.Repeat("X", 70000)), []byte("=\n = 1\n"), "", true)
	f.Fuzz(func(t *testing.T, file1, file2 []byte, ids string, destination bool) {
		dir := t.TempDir()
		files := []string{filepath.Join(dir, "a.ini"), filepath.Join(dir, "b.ini")}
		for i, b := range [][]byte{file1, file2} {
			if err := os.WriteFile(files[i], b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		mode := ModeSource
		if destination {
			mode = ModeDestination
		}
		var list []string
		if ids != "" {
			list = strings.Split(ids, ",")
		}
		e := &engine{cfg: Config{Mode: mode, ConfigFiles: files}, log: slog.New(slog.DiscardHandler)}
		err := e.resolve(list)
		if err != nil {
			if !errors.Is(err, ErrServiceMismatch) && !strings.Contains(err.Error(), "configuration file "+dir) {
				t.Fatalf("refusal neither a mismatch nor naming its file: %v", err)
			}
			return
		}
		want := dedupe(list)
		if len(e.mapping) != len(want) {
			t.Fatalf("mapping %v for services %v", e.mapping, want)
		}
		for _, id := range want {
			ep, ok := e.mapping[id]
			if !ok {
				t.Fatalf("service %q missing from %v", id, e.mapping)
			}
			if err := ValidateMappingEndpoint(ep, mode); err != nil {
				t.Fatalf("service %q mapped to %q: %v", id, ep, err)
			}
		}
		if err := e.resolve(list); err != nil {
			t.Fatalf("resolving the same services again: %v", err)
		}
	})
}
