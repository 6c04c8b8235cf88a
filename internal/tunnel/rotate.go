package tunnel

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoDestination refuses a handshake on a tunnel that was opened without a
// destination config: it has no services to carry until a rotation of its
// destination token gives it one.
var ErrNoDestination = errors.New("tunnel has no destination config (no services) yet; give it one with RotateTunnelAccessToken (clientMode DESTINATION or ALL, with a destinationConfig), then connect")

// Destination is a tunnel's destination config: the thing (optional) and
// the services.
type Destination struct {
	ThingName string
	Services  []string
}

// Rotate gives the sides in modes new access tokens, which replace the old
// ones at once: each rotated side starts afresh (not spent, no client token,
// disconnected; the relay cuts off its peer). dest, when not nil, replaces
// the destination config; it may only come with the destination's token,
// and must where the tunnel has none. Only the rotated sides' tokens are set
// in the returned Tokens. The caller must persist t.
func Rotate(t *Tunnel, modes []Mode, dest *Destination, now time.Time) (Tokens, error) {
	if t.Status != StatusOpen || t.Expired(now) {
		return Tokens{}, ErrClosed
	}
	var source, destination bool
	for _, m := range modes {
		switch m {
		case ModeSource:
			source = true
		case ModeDestination:
			destination = true
		default:
			return Tokens{}, fmt.Errorf("%w: mode %q", ErrInvalid, m)
		}
	}
	if !source && !destination {
		return Tokens{}, fmt.Errorf("%w: no side to rotate", ErrInvalid)
	}
	switch {
	case dest != nil && !destination:
		return Tokens{}, fmt.Errorf("%w: destinationConfig may only be given when the destination's token is rotated (clientMode DESTINATION or ALL)", ErrInvalid)
	case dest == nil && destination && len(t.Services) == 0:
		return Tokens{}, fmt.Errorf("%w: destinationConfig (with its services) is required: the tunnel has no destination config yet", ErrInvalid)
	case dest != nil:
		if err := validDestination(dest.ThingName, dest.Services); err != nil {
			return Tokens{}, err
		}
	}
	var tok Tokens
	var err error
	now = now.UTC()
	if source {
		if tok.Source, err = NewAccessToken(); err != nil {
			return Tokens{}, err
		}
		t.Source = Side{TokenHash: HashToken(tok.Source), LastUpdatedAt: now}
	}
	if destination {
		if tok.Destination, err = NewAccessToken(); err != nil {
			return Tokens{}, err
		}
		t.Destination = Side{TokenHash: HashToken(tok.Destination), LastUpdatedAt: now}
	}
	if dest != nil {
		t.ThingName = dest.ThingName
		t.Services = append([]string(nil), dest.Services...)
	}
	t.LastUpdatedAt = now
	return tok, nil
}

// validDestination checks a destination config: at least one service.
func validDestination(thingName string, services []string) error {
	if len(services) == 0 {
		return fmt.Errorf("%w: destinationConfig.services must name at least one service", ErrInvalid)
	}
	if len(services) > MaxServices {
		return fmt.Errorf("%w: destinationConfig.services has %d services; at most %d are allowed", ErrInvalid, len(services), MaxServices)
	}
	seen := map[string]bool{}
	for _, s := range services {
		if !ValidName(s) {
			return fmt.Errorf("%w: destinationConfig.services: service %q must be 1 to 128 characters of a-z A-Z 0-9 : _ -", ErrInvalid, s)
		}
		if seen[s] {
			return fmt.Errorf("%w: service %q is listed twice", ErrInvalid, s)
		}
		seen[s] = true
	}
	if thingName != "" && !ValidName(thingName) {
		return fmt.Errorf("%w: destinationConfig.thingName must be 1 to 128 characters of a-z A-Z 0-9 : _ -", ErrInvalid)
	}
	return nil
}
