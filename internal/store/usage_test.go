package store

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Two servers on one database: each replaces its own rows, reads every
// node's fresh rows of the accounts it names, purges stale rows and deletes
// its own.
func TestAccountUsage(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, open func(*testing.T) *Store) {
		ctx := context.Background()
		a, b := open(t), open(t)
		t0 := time.Unix(1_800_000_000, 0)
		row := func(acct string, dir int, demand int64, sat bool, at time.Time) AccountUsage {
			return AccountUsage{AccountID: acct, Direction: dir, Demand: demand, Saturated: sat, UpdatedAt: at}
		}
		if err := a.ReportAccountUsage(ctx, "n1", []AccountUsage{row("x", 0, 100, true, t0), row("x", 1, 5, false, t0), row("y", 0, 7, false, t0)}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := b.ReportAccountUsage(ctx, "n2", []AccountUsage{row("x", 0, 200, false, t0.Add(time.Second))}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		got := func(s *Store, ids []string, since time.Time) []string {
			t.Helper()
			rows, err := s.AccountUsage(ctx, ids, since)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range rows {
				out = append(out, strings.Join([]string{r.NodeID, r.AccountID, itoa(int64(r.Direction)), itoa(r.Demand), map[bool]string{true: "sat", false: "-"}[r.Saturated], itoa(r.UpdatedAt.Sub(t0).Milliseconds())}, " "))
			}
			slices.Sort(out)
			return out
		}
		want := []string{"n1 x 0 100 sat 0", "n1 x 1 5 - 0", "n2 x 0 200 - 1000"}
		if g := got(b, []string{"x", "z"}, t0.Add(-time.Millisecond)); !slices.Equal(g, want) {
			t.Fatalf("rows of x: %q, want %q", g, want)
		}
		if g := got(a, []string{"x"}, t0); !slices.Equal(g, want[2:]) {
			t.Fatalf("rows of x newer than t0: %q", g)
		}
		// A new report replaces the node's rows: y is gone.
		if err := a.ReportAccountUsage(ctx, "n1", []AccountUsage{row("x", 0, 300, true, t0.Add(2*time.Second))}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if g := got(b, []string{"x", "y"}, time.Time{}); !slices.Equal(g, []string{"n1 x 0 300 sat 2000", "n2 x 0 200 - 1000"}) {
			t.Fatalf("after the second report: %q", g)
		}
		// Many accounts take several statements.
		var many []AccountUsage
		var ids []string
		for i := range 2*usageChunk + 3 {
			id := "m" + itoa(int64(i))
			ids = append(ids, id)
			many = append(many, row(id, 1, int64(i), false, t0.Add(3*time.Second)))
		}
		// The purge takes the rows of every node older than its time: n1's.
		if err := b.ReportAccountUsage(ctx, "n2", many, t0.Add(2500*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if rows, err := a.AccountUsage(ctx, ids, time.Time{}); err != nil || len(rows) != len(many) {
			t.Fatalf("%d rows of %d accounts (%v)", len(rows), len(ids), err)
		}
		if g := got(a, []string{"x"}, time.Time{}); len(g) != 0 {
			t.Fatalf("after the purge: %q", g)
		}
		if err := b.DeleteAccountUsage(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		if rows, err := a.AccountUsage(ctx, ids, time.Time{}); err != nil || len(rows) != 0 {
			t.Fatalf("%d rows after the delete (%v)", len(rows), err)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
