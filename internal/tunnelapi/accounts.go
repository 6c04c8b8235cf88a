package tunnelapi

import (
	"encoding/json"
	"time"
)

// The shapes of the account administration API. Bandwidth is in bytes per
// second; an account's own BandwidthLimit is 0 for unlimited and absent (nil)
// when the server's default applies; -1 sets it back to the default.

// CreateAccountInput is the input of CreateAccount. A nil BandwidthLimit is
// the server's default.
type CreateAccountInput struct {
	AccountName    *string `json:"accountName,omitempty"`
	BandwidthLimit *int64  `json:"bandwidthLimit,omitempty"`
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
	MaxResults *int32  `json:"maxResults,omitempty"`
	NextToken  *string `json:"nextToken,omitempty"`
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
	AccountID *string `json:"accountId,omitempty"`
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
	AccountID      *string `json:"accountId,omitempty"`
	BandwidthLimit *int64  `json:"bandwidthLimit,omitempty"`
}

// DeleteAccountInput is the input of DeleteAccount.
type DeleteAccountInput struct {
	AccountID *string `json:"accountId,omitempty"`
}

// DeleteAccountOutput is the (empty) output of DeleteAccount.
type DeleteAccountOutput struct{}

// MarshalJSON writes the wire form, timestamps as epoch seconds.
func (s AccountSummary) MarshalJSON() ([]byte, error) {
	type plain AccountSummary
	return json.Marshal(struct {
		plain
		CreatedAt *EpochTime `json:"createdAt,omitempty"`
	}{plain(s), NewEpoch(s.CreatedAt)})
}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (s *AccountSummary) UnmarshalJSON(b []byte) error {
	type plain AccountSummary
	aux := struct {
		*plain
		CreatedAt *EpochTime `json:"createdAt"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	s.CreatedAt = aux.CreatedAt.Time()
	return nil
}

// MarshalJSON writes the wire form, timestamps as epoch seconds.
func (d DescribeAccountOutput) MarshalJSON() ([]byte, error) {
	type plain DescribeAccountOutput
	return json.Marshal(struct {
		plain
		CreatedAt *EpochTime `json:"createdAt,omitempty"`
	}{plain(d), NewEpoch(d.CreatedAt)})
}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (d *DescribeAccountOutput) UnmarshalJSON(b []byte) error {
	type plain DescribeAccountOutput
	aux := struct {
		*plain
		CreatedAt *EpochTime `json:"createdAt"`
	}{plain: (*plain)(d)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	d.CreatedAt = aux.CreatedAt.Time()
	return nil
}
