// Package expiry ends tunnels whose maximum lifetime is over. A server runs
// one Sweeper: at each tunnel's deadline (a timer to the earliest one) it
// marks the tunnel CLOSED in the store, as of its deadline, and has the
// relay disconnect its local proxies. It is the only part of Warren that
// closes a tunnel for its age; the API reports the status it leaves, and
// admission refuses a CLOSED tunnel (and, between a deadline and its sweep,
// one that tunnel.Expired says is over: the same rule). It does not own the
// rule itself (tunnel.Expired) or the tunnels (the store).
package expiry

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// Store is what the sweeper needs of the store; *store.Store satisfies it.
type Store interface {
	OpenTunnels(ctx context.Context) ([]tunnel.Tunnel, error)
	UpdateTunnel(ctx context.Context, id string, fn func(*tunnel.Tunnel) error) (tunnel.Tunnel, error)
}

// Relay disconnects the local proxies of a closed tunnel; *relay.Relay
// satisfies it.
type Relay interface {
	CloseTunnel(tunnelID string)
}

// MaxWait is the longest a sweeper sleeps between looks at the store. It is
// no longer than the shortest lifetime a tunnel can have (a minute), so a
// tunnel opened after a look always expires after the next one, which arms
// the timer for it: nobody needs to tell the sweeper of new tunnels.
const MaxWait = time.Minute

// storeTimeout bounds one sweep's store calls.
const storeTimeout = 30 * time.Second

// retryWait is how soon a sweep that failed (the store was unavailable) is
// tried again.
const retryWait = 5 * time.Second

// Config configures a Sweeper. Store and Relay are required.
type Config struct {
	Store  Store
	Relay  Relay
	Logger *slog.Logger     // nil discards logs
	Now    func() time.Time // nil is time.Now
}

// Sweeper closes expired tunnels. Start it once; Stop ends it.
type Sweeper struct {
	store Store
	relay Relay
	log   *slog.Logger
	now   func() time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Sweeper that is not running yet.
func New(cfg Config) *Sweeper {
	s := &Sweeper{store: cfg.Store, relay: cfg.Relay, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Start sweeps at once (tunnels that expired while the server was down are
// closed first thing) and then at every deadline, until Stop.
func (s *Sweeper) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(ctx)
	}()
}

// Stop ends the sweeper and waits for a sweep under way.
func (s *Sweeper) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

func (s *Sweeper) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := retryWait
		next, err := s.Sweep(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Error("expiry: sweep failed; trying again", "err", err, "in", wait)
		default:
			wait = MaxWait
			if !next.IsZero() {
				wait = min(max(next.Sub(s.now()), 0), MaxWait)
			}
		}
		t.Reset(wait)
	}
}

// Sweep closes every open tunnel whose lifetime is over now, and returns
// the earliest deadline of those still open (zero if none).
func (s *Sweeper) Sweep(ctx context.Context) (next time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	open, err := s.store.OpenTunnels(ctx)
	if err != nil {
		return time.Time{}, err
	}
	now := s.now()
	var errs []error
	for _, t := range open {
		if !t.Expired(now) {
			if at := t.ExpiresAt(); next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		if err := s.close(ctx, t.ID, now); err != nil {
			errs = append(errs, err)
		}
	}
	return next, errors.Join(errs...)
}

// close marks an expired tunnel closed as of its deadline (not when the
// sweep came by) and disconnects its peers.
func (s *Sweeper) close(ctx context.Context, id string, now time.Time) error {
	closed := false
	t, err := s.store.UpdateTunnel(ctx, id, func(t *tunnel.Tunnel) error {
		if t.Status == tunnel.StatusOpen && t.Expired(now) {
			t.Close(t.ExpiresAt())
			closed = true
		}
		return nil
	})
	if errors.Is(err, tunnel.ErrNotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	if closed {
		s.log.Info("tunnel lifetime reached; closed", "account", t.AccountID, "tunnel", t.ID, "expired_at", t.ExpiresAt().UTC())
	}
	// Always: a peer must never outlive its tunnel.
	s.relay.CloseTunnel(id)
	return nil
}
