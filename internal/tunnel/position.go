package tunnel

import "time"

// Position is a place in an account's list of tunnels, which runs newest
// first: the list goes on with the tunnels created before CreatedAt, and
// those created at that same instant whose ID sorts before ID. It names a
// place, not a tunnel, so it stays valid when the tunnel it was taken from
// is deleted. The zero Position is the start of the list.
type Position struct {
	CreatedAt time.Time
	ID        string
}

// IsStart reports whether p is the start of the list.
func (p Position) IsStart() bool { return p.ID == "" }

// PositionAfter is the place right after t in its account's list.
func PositionAfter(t Tunnel) Position { return Position{CreatedAt: t.CreatedAt, ID: t.ID} }
