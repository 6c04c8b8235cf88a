package tunnel

import "time"

// Position is a place in a list ordered by creation time, then id: an
// account's tunnels (newest first: the list goes on with the tunnels created
// before CreatedAt, and those created at that same instant whose ID sorts
// before ID) or the accounts (oldest first, the other way round). It names a
// place, not a record, so it stays valid when the record it was taken from
// is deleted. The zero Position is the start of the list.
type Position struct {
	CreatedAt time.Time
	ID        string
}

// IsStart reports whether p is the start of the list.
func (p Position) IsStart() bool { return p.ID == "" }

// PositionAfter is the place right after t in its account's list.
func PositionAfter(t Tunnel) Position { return Position{CreatedAt: t.CreatedAt, ID: t.ID} }

// AccountPositionAfter is the place right after a in the list of accounts.
func AccountPositionAfter(a Account) Position { return Position{CreatedAt: a.CreatedAt, ID: a.ID} }
