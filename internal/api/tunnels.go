package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// ListTunnels page sizes (model: MaxResults 1..100).
const (
	maxTunnelsPage     = 100
	defaultTunnelsPage = 100
)

func (a *API) tunnelOps() map[string]jsonOp {
	return map[string]jsonOp{
		"OpenTunnel":              a.openTunnel,
		"CloseTunnel":             a.closeTunnel,
		"DescribeTunnel":          a.describeTunnel,
		"ListTunnels":             a.listTunnels,
		"TagResource":             a.tagResource,
		"UntagResource":           a.untagResource,
		"ListTagsForResource":     a.listTagsForResource,
		"RotateTunnelAccessToken": a.rotateTunnelAccessToken,
	}
}

func (a *API) openTunnel(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.OpenTunnelInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	p, err := openParams(&in)
	if err != nil {
		return nil, err
	}
	if p.ThingName != "" {
		if _, err := a.store.Thing(ctx, c.account.ID, p.ThingName); errors.Is(err, tunnel.ErrNotFound) {
			return nil, errNotFound("destinationConfig.thingName: thing %q does not exist in this account; create it first with CreateThing", p.ThingName)
		} else if err != nil {
			return nil, err
		}
	}
	t, tok, err := tunnel.New(c.account.ID, a.region, p, a.now())
	if err != nil {
		return nil, err
	}
	// The AWS SDKs count LimitExceededException among throttling errors and
	// retry it a few times before reporting it, as they would with AWS.
	if err := a.store.CreateTunnelWithin(ctx, t, a.maxTunnels); errors.Is(err, tunnel.ErrLimitExceeded) {
		return nil, newError(http.StatusBadRequest, codeLimitExceeded,
			"the limit of open tunnels per account on this server is %d, and this account has reached it; close a tunnel (CloseTunnel) before opening another", a.maxTunnels)
	} else if err != nil {
		return nil, err
	}
	if err := a.ownerExists(ctx, t); err != nil {
		return nil, err
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "tunnel opened", slog.String("account", t.AccountID),
		slog.String("tunnel", t.ID), slog.String("thing", t.ThingName), slog.Any("services", t.Services))
	a.notifyDestination(ctx, t, tok.Destination)
	return tunnelapi.OpenTunnelOutput{TunnelID: t.ID, TunnelArn: t.ARN,
		SourceAccessToken: tok.Source, DestinationAccessToken: tok.Destination}, nil
}

// ownerExists makes sure the account of a tunnel just created was not
// deleted after the request was authenticated: DeleteAccount, which removes
// an account's tunnels, cannot have seen this one, so it is removed here and
// its tokens never handed out.
func (a *API) ownerExists(ctx context.Context, t tunnel.Tunnel) error {
	_, err := a.store.Account(ctx, t.AccountID)
	if !errors.Is(err, tunnel.ErrNotFound) {
		return err
	}
	if err := a.store.DeleteTunnel(ctx, t.AccountID, t.ID); err != nil && !errors.Is(err, tunnel.ErrNotFound) {
		return err
	}
	return errAuth(codeUnrecognizedClient, "account %s was deleted", t.AccountID)
}

// openParams checks OpenTunnel's members the domain's Validate does not
// (presence, explicit zero values, tag patterns) and builds its params.
func openParams(in *tunnelapi.OpenTunnelInput) (tunnel.OpenParams, error) {
	var p tunnel.OpenParams
	// Without destinationConfig the tunnel has no thing and no services
	// until RotateTunnelAccessToken gives it them.
	dest, err := destination(in.DestinationConfig)
	if err != nil {
		return p, err
	}
	if dest != nil {
		p.ThingName, p.Services = dest.ThingName, dest.Services
	}
	if in.Description != nil {
		if !tunnel.ValidDescription(*in.Description) {
			return p, errInvalid("description must be 1 to %d characters, none of them control characters", tunnel.MaxDescription)
		}
		p.Description = *in.Description
	}
	if tc := in.TimeoutConfig; tc != nil && tc.MaxLifetimeTimeoutMinutes != nil {
		if err := intRange("timeoutConfig.maxLifetimeTimeoutMinutes", tc.MaxLifetimeTimeoutMinutes, 1, tunnel.MaxLifetimeMinutes); err != nil {
			return p, err
		}
		p.LifetimeMinutes = int(*tc.MaxLifetimeTimeoutMinutes)
	}
	tags := domainTags(in.Tags)
	if err := validTags(tags); err != nil {
		return p, err
	}
	p.Tags = tags
	return p, p.Validate()
}

// destination checks a destinationConfig member (OpenTunnel's, and
// RotateTunnelAccessToken's); nil stays nil.
func destination(dc *tunnelapi.DestinationConfig) (*tunnel.Destination, error) {
	if dc == nil {
		return nil, nil
	}
	if len(dc.Services) == 0 {
		return nil, required("destinationConfig.services (at least one service name)")
	}
	d := &tunnel.Destination{Services: dc.Services}
	if dc.ThingName != nil {
		if !tunnel.ValidName(*dc.ThingName) {
			return nil, errInvalid("destinationConfig.thingName %q must be 1 to 128 characters of a-z A-Z 0-9 : _ -", *dc.ThingName)
		}
		d.ThingName = *dc.ThingName
	}
	return d, nil
}

func (a *API) closeTunnel(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.CloseTunnelInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	id, err := tunnelID(in.TunnelID)
	if err != nil {
		return nil, err
	}
	now := a.now().UTC()
	_, err = a.store.UpdateTunnel(ctx, id, func(t *tunnel.Tunnel) error {
		if t.AccountID != c.account.ID {
			return tunnel.ErrNotFound
		}
		t.Close(now)
		return nil
	})
	if errors.Is(err, tunnel.ErrNotFound) {
		return nil, errTunnelNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	// Always, even for a tunnel that was closed already: disconnecting
	// nobody is harmless, and a peer must never outlive its tunnel.
	a.relay.CloseTunnel(id)
	deleted := in.Delete != nil && *in.Delete
	if deleted {
		if err := a.store.DeleteTunnel(ctx, c.account.ID, id); err != nil && !errors.Is(err, tunnel.ErrNotFound) {
			return nil, err
		}
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "tunnel closed", slog.String("account", c.account.ID),
		slog.String("tunnel", id), slog.Bool("deleted", deleted))
	return tunnelapi.CloseTunnelOutput{}, nil
}

func (a *API) describeTunnel(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.DescribeTunnelInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	t, err := a.tunnel(ctx, c.account.ID, in.TunnelID)
	if err != nil {
		return nil, err
	}
	return tunnelapi.DescribeTunnelOutput{Tunnel: describe(t)}, nil
}

func (a *API) listTunnels(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.ListTunnelsInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	thing := ""
	if in.ThingName != nil {
		if !tunnel.ValidName(*in.ThingName) {
			return nil, errInvalid("thingName %q must be 1 to 128 characters of a-z A-Z 0-9 : _ -", *in.ThingName)
		}
		thing = *in.ThingName
	}
	if err := intRange("maxResults", in.MaxResults, 1, maxTunnelsPage); err != nil {
		return nil, err
	}
	limit := defaultTunnelsPage
	if in.MaxResults != nil {
		limit = int(*in.MaxResults)
	}
	after, err := a.tunnelsCursor(in.NextToken)
	if err != nil {
		return nil, err
	}
	// One more than asked tells whether another page follows.
	ts, err := a.store.Tunnels(ctx, c.account.ID, thing, after, limit+1)
	if err != nil {
		return nil, err
	}
	out := tunnelapi.ListTunnelsOutput{TunnelSummaries: []tunnelapi.TunnelSummary{}}
	if len(ts) > limit {
		ts = ts[:limit]
		out.NextToken = a.cursors.encode("tunnel", encodePosition(tunnel.PositionAfter(ts[limit-1])))
	}
	for _, t := range ts {
		out.TunnelSummaries = append(out.TunnelSummaries, tunnelapi.TunnelSummary{
			TunnelID: t.ID, TunnelArn: t.ARN, Status: tunnelapi.TunnelStatus(t.Status), Description: t.Description,
			CreatedAt: millis(t.CreatedAt), LastUpdatedAt: millis(t.LastUpdatedAt),
		})
	}
	return out, nil
}

// tunnelsCursor decodes ListTunnels' nextToken into the place in the list
// where the previous page ended.
func (a *API) tunnelsCursor(token *string) (tunnel.Position, error) {
	if token == nil {
		return tunnel.Position{}, nil
	}
	b, ok := a.cursors.decode("tunnel", *token)
	p, okPos := decodePosition(b, tunnel.ValidTunnelID)
	if !ok || !okPos {
		return p, errInvalid("nextToken is not valid: pass the nextToken of a previous ListTunnels response, unchanged")
	}
	return p, nil
}

// tunnel reads a tunnel of account. Its status is the store's: the expiry
// sweeper closes a tunnel at the end of its lifetime.
func (a *API) tunnel(ctx context.Context, accountID string, rawID *string) (tunnel.Tunnel, error) {
	id, err := tunnelID(rawID)
	if err != nil {
		return tunnel.Tunnel{}, err
	}
	t, err := a.store.Tunnel(ctx, accountID, id)
	if errors.Is(err, tunnel.ErrNotFound) {
		return t, errTunnelNotFound(id)
	}
	return t, err
}

func describe(t tunnel.Tunnel) *tunnelapi.Tunnel {
	minutes := int32(t.LifetimeMinutes)
	d := &tunnelapi.Tunnel{
		TunnelID:                   t.ID,
		TunnelArn:                  t.ARN,
		Status:                     tunnelapi.TunnelStatus(t.Status),
		SourceConnectionState:      state(t.Source),
		DestinationConnectionState: state(t.Destination),
		Description:                t.Description,
		TimeoutConfig:              &tunnelapi.TimeoutConfig{MaxLifetimeTimeoutMinutes: &minutes},
		CreatedAt:                  millis(t.CreatedAt),
		LastUpdatedAt:              millis(t.LastUpdatedAt),
	}
	for _, tag := range t.Tags {
		d.Tags = append(d.Tags, tunnelapi.Tag(tag))
	}
	if len(t.Services) > 0 || t.ThingName != "" {
		d.DestinationConfig = &tunnelapi.DestinationConfig{Services: t.Services}
		if t.ThingName != "" {
			d.DestinationConfig.ThingName = &t.ThingName
		}
	}
	return d
}

func state(s tunnel.Side) *tunnelapi.ConnectionState {
	st := tunnelapi.ConnectionStatusDisconnected
	if s.Connected {
		st = tunnelapi.ConnectionStatusConnected
	}
	return &tunnelapi.ConnectionState{Status: st, LastUpdatedAt: millis(s.LastUpdatedAt)}
}

// tunnelID checks a required tunnelId member.
func tunnelID(id *string) (string, error) {
	if id == nil || *id == "" {
		return "", required("tunnelId")
	}
	if !tunnel.ValidTunnelID(*id) {
		return "", errInvalid("tunnelId %q must be 1 to 128 characters of a-z A-Z 0-9 _ - + = :", *id)
	}
	return *id, nil
}

func errTunnelNotFound(id string) error {
	return errNotFound("tunnel %s does not exist in this account", id)
}
