package admin

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// Warren's account administration service: AWS JSON 1.1 with X-Amz-Target
// WarrenAccounts.<Operation>, signed for the service "warren". It has no
// default endpoint; the SDK ID "Warren" names its own endpoint setting
// (AWS_ENDPOINT_URL_WARREN, the "warren" services section of the shared
// config), which AWS_ENDPOINT_URL stands in for.
var accountService = &jsonService{
	sdkID:        "Warren",
	signingName:  "warren",
	targetPrefix: "WarrenAccounts.",
	apiName:      "warrenaccounts",
	modeledErrors: map[string]bool{
		"ValidationException": true, "AccessDeniedException": true,
		"ResourceNotFoundException": true, "ResourceAlreadyExistsException": true,
	},
}

// AccountClient calls Warren's account administration API, which only the
// admin account may call. Safe for concurrent use.
type AccountClient struct{ *jsonClient }

// NewAccountClient returns a client configured from cfg as NewTunnelClient
// does, for the account administration service.
func NewAccountClient(cfg aws.Config, optFns ...func(*ClientOptions)) *AccountClient {
	return &AccountClient{newJSONClient(accountService, cfg, optFns)}
}

// CreateAccount creates an account and returns its keys (shown only once).
func (c *AccountClient) CreateAccount(ctx context.Context, in *tunnelapi.CreateAccountInput) (*tunnelapi.CreateAccountOutput, error) {
	out := new(tunnelapi.CreateAccountOutput)
	return out, c.call(ctx, "CreateAccount", orEmpty(in), out)
}

// ListAccounts returns one page of account summaries, oldest first.
func (c *AccountClient) ListAccounts(ctx context.Context, in *tunnelapi.ListAccountsInput) (*tunnelapi.ListAccountsOutput, error) {
	out := new(tunnelapi.ListAccountsOutput)
	return out, c.call(ctx, "ListAccounts", orEmpty(in), out)
}

// DescribeAccount returns an account's settings, bandwidth and open tunnels.
func (c *AccountClient) DescribeAccount(ctx context.Context, in *tunnelapi.DescribeAccountInput) (*tunnelapi.DescribeAccountOutput, error) {
	out := new(tunnelapi.DescribeAccountOutput)
	return out, c.call(ctx, "DescribeAccount", orEmpty(in), out)
}

// UpdateAccount sets an account's bandwidth limit and returns its
// description.
func (c *AccountClient) UpdateAccount(ctx context.Context, in *tunnelapi.UpdateAccountInput) (*tunnelapi.DescribeAccountOutput, error) {
	out := new(tunnelapi.DescribeAccountOutput)
	return out, c.call(ctx, "UpdateAccount", orEmpty(in), out)
}

// DeleteAccount deletes an account, closing its open tunnels.
func (c *AccountClient) DeleteAccount(ctx context.Context, in *tunnelapi.DeleteAccountInput) (*tunnelapi.DeleteAccountOutput, error) {
	out := new(tunnelapi.DeleteAccountOutput)
	return out, c.call(ctx, "DeleteAccount", orEmpty(in), out)
}
