package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/warrentunnel/warren/internal/store/storetest"
)

// forEachBackend runs fn on a fresh, empty store of each backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, s *Store)) {
	forEachDatabase(t, func(t *testing.T, open func(*testing.T) *Store) { fn(t, open(t)) })
}

// forEachDatabase runs fn with a fresh database of each backend; every call
// of open opens another Store on that database, as another server would.
func forEachDatabase(t *testing.T, fn func(t *testing.T, open func(*testing.T) *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "w.db")
		fn(t, func(t *testing.T) *Store {
			t.Helper()
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		url := storetest.PostgresDatabase(t)
		fn(t, func(t *testing.T) *Store {
			t.Helper()
			s, err := OpenPostgres(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}
