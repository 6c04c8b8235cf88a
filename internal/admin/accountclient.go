package admin

import (
	"context"
	"encoding/json"
	"time"

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
func (c *AccountClient) CreateAccount(ctx context.Context, in *CreateAccountInput) (*CreateAccountOutput, error) {
	out := new(CreateAccountOutput)
	return out, c.call(ctx, "CreateAccount", orEmpty(in), out)
}

// ListAccounts returns one page of account summaries, oldest first.
func (c *AccountClient) ListAccounts(ctx context.Context, in *ListAccountsInput) (*ListAccountsOutput, error) {
	out := new(ListAccountsOutput)
	return out, c.call(ctx, "ListAccounts", orEmpty(in), out)
}

// DescribeAccount returns an account's settings, bandwidth and open tunnels.
func (c *AccountClient) DescribeAccount(ctx context.Context, in *DescribeAccountInput) (*DescribeAccountOutput, error) {
	out := new(DescribeAccountOutput)
	return out, c.call(ctx, "DescribeAccount", orEmpty(in), out)
}

// UpdateAccount sets an account's bandwidth limit and returns its
// description.
func (c *AccountClient) UpdateAccount(ctx context.Context, in *UpdateAccountInput) (*DescribeAccountOutput, error) {
	out := new(DescribeAccountOutput)
	return out, c.call(ctx, "UpdateAccount", orEmpty(in), out)
}

// DeleteAccount deletes an account, closing its open tunnels.
func (c *AccountClient) DeleteAccount(ctx context.Context, in *DeleteAccountInput) (*DeleteAccountOutput, error) {
	out := new(DeleteAccountOutput)
	return out, c.call(ctx, "DeleteAccount", orEmpty(in), out)
}

// The shapes of the account administration API. Bandwidth is in bytes per
// second; an account's own BandwidthLimit is 0 for unlimited and absent (nil)
// when the server's default applies; -1 sets it back to the default.

// CreateAccountInput is the input of CreateAccount. A nil BandwidthLimit is
// the server's default.
type CreateAccountInput struct {
	AccountName    string `json:"accountName"`
	BandwidthLimit *int64 `json:"bandwidthLimit,omitempty"`
}

// CreateAccountOutput is the output of CreateAccount.
type CreateAccountOutput struct {
	AccountID       string `json:"accountId,omitempty"`
	AccountName     string `json:"accountName,omitempty"`
	AccessKeyID     string `json:"accessKeyId,omitempty"`
	SecretAccessKey string `json:"secretAccessKey,omitempty"`
}

// ListAccountsInput is the input of ListAccounts.
type ListAccountsInput struct {
	MaxResults *int32 `json:"maxResults,omitempty"`
	NextToken  string `json:"nextToken,omitempty"`
}

// AccountSummary is the short description ListAccounts returns.
type AccountSummary struct {
	AccountID      string     `json:"accountId,omitempty"`
	AccountName    string     `json:"accountName,omitempty"`
	Admin          bool       `json:"admin"`
	BandwidthLimit *int64     `json:"bandwidthLimit,omitempty"`
	CreatedAt      *time.Time `json:"createdAt,omitempty"`
}

// ListAccountsOutput is the output of ListAccounts.
type ListAccountsOutput struct {
	Accounts  []AccountSummary `json:"accounts,omitzero"`
	NextToken string           `json:"nextToken,omitempty"`
}

// DescribeAccountInput is the input of DescribeAccount.
type DescribeAccountInput struct {
	AccountID string `json:"accountId"`
}

// AccountRate is an account's current traffic, in bytes per second.
type AccountRate struct {
	SourceToDestination float64 `json:"sourceToDestination"`
	DestinationToSource float64 `json:"destinationToSource"`
}

// DescribeAccountOutput is the output of DescribeAccount and UpdateAccount.
// EffectiveBandwidthLimit is the limit in force (0: unlimited).
type DescribeAccountOutput struct {
	AccountID               string       `json:"accountId,omitempty"`
	AccountName             string       `json:"accountName,omitempty"`
	Admin                   bool         `json:"admin"`
	CreatedAt               *time.Time   `json:"createdAt,omitempty"`
	BandwidthLimit          *int64       `json:"bandwidthLimit,omitempty"`
	EffectiveBandwidthLimit int64        `json:"effectiveBandwidthLimit"`
	CurrentRate             *AccountRate `json:"currentRate,omitempty"`
	OpenTunnels             int64        `json:"openTunnels"`
}

// UpdateAccountInput is the input of UpdateAccount.
type UpdateAccountInput struct {
	AccountID      string `json:"accountId"`
	BandwidthLimit int64  `json:"bandwidthLimit"`
}

// DeleteAccountInput is the input of DeleteAccount.
type DeleteAccountInput struct {
	AccountID string `json:"accountId"`
}

// DeleteAccountOutput is the (empty) output of DeleteAccount.
type DeleteAccountOutput struct{}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (s *AccountSummary) UnmarshalJSON(b []byte) error {
	type plain AccountSummary
	aux := struct {
		*plain
		CreatedAt *tunnelapi.EpochTime `json:"createdAt"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	s.CreatedAt = aux.CreatedAt.Time()
	return nil
}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (d *DescribeAccountOutput) UnmarshalJSON(b []byte) error {
	type plain DescribeAccountOutput
	aux := struct {
		*plain
		CreatedAt *tunnelapi.EpochTime `json:"createdAt"`
	}{plain: (*plain)(d)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	d.CreatedAt = aux.CreatedAt.Time()
	return nil
}
