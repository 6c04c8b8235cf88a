package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// Account administration is Warren's own AWS JSON 1.1 service: X-Amz-Target
// WarrenAccounts.<Operation>, signed for the service "warren". Only an admin
// account may call it. Its errors keep their REST status: 400
// ValidationException, 403 AccessDeniedException, 404
// ResourceNotFoundException, 409 ResourceAlreadyExistsException.

// ListAccounts page sizes.
const (
	maxAccountsPage     = 100
	defaultAccountsPage = 100
)

func (a *API) accountOps() map[string]jsonOp {
	return map[string]jsonOp{
		"CreateAccount":   a.adminOnly(a.createAccount),
		"ListAccounts":    a.adminOnly(a.listAccounts),
		"DescribeAccount": a.adminOnly(a.describeAccount),
		"UpdateAccount":   a.adminOnly(a.updateAccount),
		"DeleteAccount":   a.adminOnly(a.deleteAccount),
	}
}

// adminOnly refuses op to every account but an admin one.
func (a *API) adminOnly(op jsonOp) jsonOp {
	return func(ctx context.Context, c *call) (any, error) {
		if !c.account.Admin {
			return nil, newError(http.StatusForbidden, codeAccessDenied,
				"account %s (%s) is not allowed to call %s: only the admin account administers accounts", c.account.ID, c.account.Name, c.op)
		}
		return op(ctx, c)
	}
}

func (a *API) createAccount(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.CreateAccountInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	if in.AccountName == nil || *in.AccountName == "" {
		return nil, errValidation("accountName is required")
	}
	if !tunnel.ValidAccountName(*in.AccountName) {
		return nil, errValidation("accountName %q must be 1 to 128 of the characters a-z A-Z 0-9 _ . @ -", *in.AccountName)
	}
	limit := tunnel.BandwidthDefault
	if in.BandwidthLimit != nil {
		if err := validLimit(*in.BandwidthLimit); err != nil {
			return nil, err
		}
		limit = *in.BandwidthLimit
	}
	acct, err := tunnel.NewAccount(*in.AccountName, false, limit, a.now())
	if err != nil {
		return nil, err
	}
	if err := a.store.CreateAccount(ctx, acct); errors.Is(err, tunnel.ErrExists) {
		return nil, &apiError{status: http.StatusConflict, code: codeExists, resourceID: acct.Name,
			message: "an account named " + acct.Name + " already exists"}
	} else if err != nil {
		return nil, err
	}
	if a.bandwidth != nil {
		a.bandwidth.SetLimit(acct.ID, acct.BandwidthLimit)
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "account created", slog.String("account", acct.ID), slog.String("name", acct.Name),
		slog.String("access_key_id", acct.AccessKeyID), slog.String("bandwidth_limit", tunnel.FormatBandwidth(acct.BandwidthLimit)),
		slog.String("by", c.account.ID))
	return tunnelapi.CreateAccountOutput{AccountID: acct.ID, AccountName: acct.Name,
		AccessKeyID: acct.AccessKeyID, SecretAccessKey: acct.SecretAccessKey}, nil
}

func (a *API) listAccounts(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.ListAccountsInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	limit := defaultAccountsPage
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > maxAccountsPage {
			return nil, errValidation("maxResults must be between 1 and %d, not %d", maxAccountsPage, *in.MaxResults)
		}
		limit = int(*in.MaxResults)
	}
	var after tunnel.Position
	if in.NextToken != nil {
		b, ok := a.cursors.decode("account", *in.NextToken)
		p, okPos := decodePosition(b, tunnel.ValidAccountID)
		if !ok || !okPos {
			return nil, errValidation("nextToken is not valid: pass the nextToken of a previous ListAccounts response, unchanged")
		}
		after = p
	}
	// One more than asked tells whether another page follows.
	accts, err := a.store.Accounts(ctx, after, limit+1)
	if err != nil {
		return nil, err
	}
	var out tunnelapi.ListAccountsOutput
	if len(accts) > limit {
		accts = accts[:limit]
		out.NextToken = a.cursors.encode("account", encodePosition(tunnel.AccountPositionAfter(accts[limit-1])))
	}
	out.Accounts = make([]tunnelapi.AccountSummary, len(accts))
	for i, acct := range accts {
		out.Accounts[i] = tunnelapi.AccountSummary{
			AccountID: acct.ID, AccountName: acct.Name, Admin: acct.Admin,
			BandwidthLimit: ownLimit(acct), CreatedAt: millis(acct.CreatedAt),
		}
	}
	return out, nil
}

func (a *API) describeAccount(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.DescribeAccountInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	acct, err := a.account(ctx, in.AccountID)
	if err != nil {
		return nil, err
	}
	return a.describe(ctx, acct)
}

func (a *API) updateAccount(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.UpdateAccountInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	id, err := accountID(in.AccountID)
	if err != nil {
		return nil, err
	}
	if in.BandwidthLimit == nil {
		return nil, errValidation("bandwidthLimit is required: bytes per second, 0 for unlimited or -1 for the server's default")
	}
	if err := validLimit(*in.BandwidthLimit); err != nil {
		return nil, err
	}
	acct, err := a.store.UpdateAccount(ctx, id, func(acct *tunnel.Account) error {
		acct.BandwidthLimit = *in.BandwidthLimit
		return nil
	})
	if errors.Is(err, tunnel.ErrNotFound) {
		return nil, errAccountNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	if a.bandwidth != nil {
		a.bandwidth.SetLimit(acct.ID, acct.BandwidthLimit)
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "account updated", slog.String("account", acct.ID),
		slog.String("bandwidth_limit", tunnel.FormatBandwidth(acct.BandwidthLimit)), slog.String("by", c.account.ID))
	return a.describe(ctx, acct)
}

func (a *API) deleteAccount(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.DeleteAccountInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	acct, err := a.account(ctx, in.AccountID)
	if err != nil {
		return nil, err
	}
	// Accounts are administered with the admin account's keys: deleting
	// it would leave the server with nobody to administer it.
	if acct.Admin {
		return nil, errValidation("account %s (%s) is the admin account, which cannot be deleted", acct.ID, acct.Name)
	}
	// Its devices' certificates, whose clients the broker drops once the
	// store has forgotten them.
	certs, err := a.store.AccountCertificateIDs(ctx, acct.ID)
	if err != nil {
		return nil, err
	}
	open, err := a.store.DeleteAccount(ctx, acct.ID)
	if errors.Is(err, tunnel.ErrNotFound) {
		return nil, errAccountNotFound(acct.ID)
	}
	if err != nil {
		return nil, err
	}
	// The store no longer knows the account's keys nor its tunnels' tokens;
	// what remains are the peers of its open tunnels.
	for _, id := range open {
		a.relay.CloseTunnel(id)
	}
	for _, id := range certs {
		if a.broker != nil {
			a.broker.DisconnectCertificate(id)
		}
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "account deleted", slog.String("account", acct.ID), slog.String("name", acct.Name),
		slog.Int("closed_tunnels", len(open)), slog.String("by", c.account.ID))
	return tunnelapi.DeleteAccountOutput{}, nil
}

// account reads the account a required accountId member names.
func (a *API) account(ctx context.Context, raw *string) (tunnel.Account, error) {
	id, err := accountID(raw)
	if err != nil {
		return tunnel.Account{}, err
	}
	acct, err := a.store.Account(ctx, id)
	if errors.Is(err, tunnel.ErrNotFound) {
		return acct, errAccountNotFound(id)
	}
	return acct, err
}

// describe is DescribeAccount's answer for acct: its settings, the limit in
// force, its current rates and how many of its tunnels are open.
func (a *API) describe(ctx context.Context, acct tunnel.Account) (tunnelapi.DescribeAccountOutput, error) {
	ts, err := a.store.AccountOpenTunnels(ctx, acct.ID)
	if err != nil {
		return tunnelapi.DescribeAccountOutput{}, err
	}
	open := len(ts) // the expiry sweeper closes tunnels at their deadline
	// Without a limiter nothing is limited beyond what the account's own
	// setting says, and nothing is measured.
	limit, s2d, d2s := max(acct.BandwidthLimit, 0), 0.0, 0.0
	if a.bandwidth != nil {
		limit, s2d, d2s = a.bandwidth.Usage(acct.ID)
	}
	return tunnelapi.DescribeAccountOutput{
		AccountID:               acct.ID,
		AccountName:             acct.Name,
		Admin:                   acct.Admin,
		CreatedAt:               millis(acct.CreatedAt),
		BandwidthLimit:          ownLimit(acct),
		EffectiveBandwidthLimit: limit,
		CurrentRate:             &tunnelapi.AccountRate{SourceToDestination: s2d, DestinationToSource: d2s},
		OpenTunnels:             int64(open),
	}, nil
}

// ownLimit is an account's bandwidthLimit member: nil for the default.
func ownLimit(acct tunnel.Account) *int64 {
	if acct.BandwidthLimit == tunnel.BandwidthDefault {
		return nil
	}
	n := acct.BandwidthLimit
	return &n
}

func validLimit(n int64) error {
	if !tunnel.ValidBandwidthLimit(n) {
		return errValidation("bandwidthLimit %d must be bytes per second, 0 for unlimited or -1 for the server's default", n)
	}
	return nil
}

// accountID checks a required accountId member.
func accountID(id *string) (string, error) {
	if id == nil || *id == "" {
		return "", errValidation("accountId is required")
	}
	if !tunnel.ValidAccountID(*id) {
		return "", errValidation("accountId %q must be 12 digits", *id)
	}
	return *id, nil
}

func errAccountNotFound(id string) error {
	return errNotFound("account %s does not exist", id)
}
