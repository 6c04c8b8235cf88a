package api

import (
	"context"
	"errors"
	"log/slog"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// clientModes are RotateTunnelAccessToken's clientMode values and the sides
// each rotates.
var clientModes = map[string][]tunnel.Mode{
	"SOURCE":      {tunnel.ModeSource},
	"DESTINATION": {tunnel.ModeDestination},
	"ALL":         {tunnel.ModeSource, tunnel.ModeDestination},
}

// rotateTunnelAccessToken replaces the access tokens of one or both sides
// of an open tunnel, and with the destination's, optionally, its destination
// config. The store has the new tokens' hashes before the relay cuts off
// the peers that used the old ones, so a peer cannot come back with them.
func (a *API) rotateTunnelAccessToken(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.RotateTunnelAccessTokenInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	id, err := tunnelID(in.TunnelID)
	if err != nil {
		return nil, err
	}
	if in.ClientMode == nil || *in.ClientMode == "" {
		return nil, required("clientMode (SOURCE, DESTINATION or ALL)")
	}
	modes, ok := clientModes[*in.ClientMode]
	if !ok {
		return nil, errInvalid("clientMode %q must be SOURCE, DESTINATION or ALL", *in.ClientMode)
	}
	dest, err := destination(in.DestinationConfig)
	if err != nil {
		return nil, err
	}
	if _, err := a.tunnel(ctx, c.account.ID, &id); err != nil {
		return nil, err
	}
	if dest != nil && dest.ThingName != "" {
		if _, err := a.store.Thing(ctx, c.account.ID, dest.ThingName); errors.Is(err, tunnel.ErrNotFound) {
			return nil, errNotFound("destinationConfig.thingName: thing %q does not exist in this account; create it first with CreateThing", dest.ThingName)
		} else if err != nil {
			return nil, err
		}
	}
	var tok tunnel.Tokens
	now := a.now()
	t, err := a.store.UpdateTunnel(ctx, id, func(t *tunnel.Tunnel) (err error) {
		if t.AccountID != c.account.ID {
			return tunnel.ErrNotFound
		}
		tok, err = tunnel.Rotate(t, modes, dest, now)
		return err
	})
	switch {
	case errors.Is(err, tunnel.ErrNotFound):
		return nil, errTunnelNotFound(id)
	case errors.Is(err, tunnel.ErrClosed):
		// The model names no other error for this operation.
		return nil, errNotFound("tunnel %s is closed; the access tokens of a closed tunnel cannot be rotated (open a new tunnel)", id)
	case err != nil:
		return nil, err
	}
	a.relay.RotateTunnel(id, modes...)
	a.notifyDestination(ctx, t, tok.Destination)
	a.log.LogAttrs(ctx, slog.LevelInfo, "tunnel access tokens rotated", slog.String("account", c.account.ID),
		slog.String("tunnel", id), slog.String("clientMode", *in.ClientMode), slog.Bool("destinationConfig", dest != nil))
	// Only the rotated sides' tokens, as AWS answers.
	return tunnelapi.RotateTunnelAccessTokenOutput{TunnelArn: t.ARN,
		SourceAccessToken: tok.Source, DestinationAccessToken: tok.Destination}, nil
}
