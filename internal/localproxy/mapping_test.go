package localproxy

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestResolveServices(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.ini"), "no equals sign\n")
	writeFile(t, filepath.Join(dir, "map.ini"), "; services\nHTTP=8080\n[other]\nSSH=22\n")
	tests := []struct {
		name    string
		mode    Mode
		mapping map[string]string
		files   []string
		ids     []string
		want    map[string]string
		fail    bool
	}{
		{"same ids", ModeSource, map[string]string{"A": "1", "B": "2"}, nil, []string{"B", "A"}, map[string]string{"A": "1", "B": "2"}, false},
		{"duplicates in the list count once", ModeSource, map[string]string{"A": "1"}, nil, []string{"A", "A"}, map[string]string{"A": "1"}, false},
		{"extra service", ModeSource, map[string]string{"HTTP": "1"}, nil, []string{"HTTP", "EXTRA"}, nil, true},
		{"missing service", ModeDestination, map[string]string{"HTTP": "1", "EXTRA": "2"}, nil, []string{"HTTP"}, nil, true},
		{"disjoint", ModeSource, map[string]string{"HTTP": "1"}, nil, []string{"OTHER"}, nil, true},
		{"unnamed adopts the only service", ModeSource, map[string]string{"": "5"}, nil, []string{"HTTP"}, map[string]string{"HTTP": "5"}, false},
		{"unnamed with no services", ModeDestination, map[string]string{"": "5"}, nil, nil, map[string]string{"": "5"}, false},
		{"unnamed with two services", ModeSource, map[string]string{"": "5"}, nil, []string{"A", "B"}, nil, true},
		{"files for a destination", ModeDestination, nil, []string{filepath.Join(dir, "bad.ini"), filepath.Join(dir, "map.ini")}, []string{"HTTP"}, map[string]string{"HTTP": "8080"}, false},
		{"files miss a destination service", ModeDestination, nil, []string{filepath.Join(dir, "map.ini")}, []string{"HTTP", "SSH"}, nil, true},
		{"no mapping for a destination", ModeDestination, nil, nil, []string{"HTTP"}, nil, true},
		{"source picks free ports", ModeSource, nil, []string{filepath.Join(dir, "map.ini")}, []string{"HTTP", "SSH"}, map[string]string{"HTTP": "8080", "SSH": "0"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &engine{cfg: Config{Mode: tc.mode, ConfigFiles: tc.files}, log: slog.New(slog.DiscardHandler), mapping: tc.mapping}
			err := e.resolve(tc.ids)
			if tc.fail {
				if !errors.Is(err, ErrServiceMismatch) {
					t.Fatalf("resolve = %v, want ErrServiceMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want(t, e.mapping, tc.want)
			// A reconnect must bring the same services.
			if err := e.resolve(tc.ids); err != nil {
				t.Errorf("second resolve: %v", err)
			}
			if err := e.resolve(append(tc.ids, "NEW")); !errors.Is(err, ErrServiceMismatch) {
				t.Errorf("changed services accepted: %v", err)
			}
		})
	}
}

// TestResolvePartialMapping: with Config.PartialMapping a destination serves
// the mapped services the tunnel has and refuses its others.
func TestResolvePartialMapping(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    Mode
		mapping map[string]string
		ids     []string
		want    map[string]string
		fail    bool
	}{
		{"an unmapped service is refused", ModeDestination, map[string]string{"HTTP": "1"}, []string{"SSH", "HTTP"}, map[string]string{"HTTP": "1"}, false},
		{"a mapped service the tunnel lacks is dropped", ModeDestination, map[string]string{"HTTP": "1", "SSH": "2"}, []string{"SSH"}, map[string]string{"SSH": "2"}, false},
		{"none mapped", ModeDestination, map[string]string{"HTTP": "1"}, []string{"SSH"}, nil, true},
		{"only for destinations", ModeSource, map[string]string{"HTTP": "1"}, []string{"HTTP", "SSH"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &engine{cfg: Config{Mode: tc.mode, PartialMapping: true}, log: slog.New(slog.DiscardHandler), mapping: tc.mapping}
			err := e.resolve(tc.ids)
			if tc.fail {
				if !errors.Is(err, ErrServiceMismatch) {
					t.Fatalf("resolve = %v, want ErrServiceMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want(t, e.mapping, tc.want)
			// A reconnect may bring another unmapped service, not lose a served one.
			if err := e.resolve(append(tc.ids, "NEW")); err != nil {
				t.Errorf("a reconnect with another unmapped service: %v", err)
			}
			if err := e.resolve([]string{"OTHER"}); !errors.Is(err, ErrServiceMismatch) {
				t.Errorf("a reconnect without the served services accepted: %v", err)
			}
		})
	}
}

func want[T any](t *testing.T, got, exp T) {
	t.Helper()
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("got %#v, want %#v", got, exp)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
