package tunnelapi

import (
	"encoding/json"
	"fmt"
	"time"
)

// The request and response shapes of the IoT Secure Tunneling API
// (2018-10-05), with the API's JSON member names. Fields are declared in the
// model's member order, so warren's CLI output lists them in the order the
// AWS CLI does. Timestamps are *time.Time in Go and epoch seconds on the wire.
// As in the AWS SDKs, an input's optional scalar members are pointers, so
// that the server tells a member left out from one given empty; both the
// server (internal/api) and warren's admin client (internal/admin) use these
// shapes.

// TunnelStatus is the state of a tunnel.
type TunnelStatus string

// Tunnel states.
const (
	TunnelStatusOpen   TunnelStatus = "OPEN"
	TunnelStatusClosed TunnelStatus = "CLOSED"
)

// ConnectionStatus is the state of one side of a tunnel.
type ConnectionStatus string

// Connection states.
const (
	ConnectionStatusConnected    ConnectionStatus = "CONNECTED"
	ConnectionStatusDisconnected ConnectionStatus = "DISCONNECTED"
)

// Tag is a resource tag. Both members are required: decoding a tag without
// one fails with a *MissingMemberError (a value may be empty, but not left
// out).
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// MissingMemberError is a required member left out of a decoded shape.
type MissingMemberError struct {
	Member string // the member's JSON name, such as "value"
	Of     string // what it is missing from, such as `tag "env"`
}

func (e *MissingMemberError) Error() string {
	return e.Of + ": " + e.Member + " is required"
}

// UnmarshalJSON decodes a tag, requiring both members.
func (t *Tag) UnmarshalJSON(b []byte) error {
	var raw struct {
		Key   *string `json:"key"`
		Value *string `json:"value"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	switch {
	case raw.Key == nil:
		return &MissingMemberError{Member: "key", Of: "a tag"}
	case raw.Value == nil:
		return &MissingMemberError{Member: "value", Of: fmt.Sprintf("tag %q", *raw.Key)}
	}
	*t = Tag{Key: *raw.Key, Value: *raw.Value}
	return nil
}

// DestinationConfig names the thing a tunnel's destination runs on and the
// services the tunnel carries.
type DestinationConfig struct {
	ThingName *string  `json:"thingName,omitempty"`
	Services  []string `json:"services,omitempty"`
}

// TimeoutConfig bounds a tunnel's lifetime.
type TimeoutConfig struct {
	MaxLifetimeTimeoutMinutes *int32 `json:"maxLifetimeTimeoutMinutes,omitempty"`
}

// ConnectionState is one side's connection state.
type ConnectionState struct {
	Status        ConnectionStatus `json:"status,omitempty"`
	LastUpdatedAt *time.Time       `json:"lastUpdatedAt,omitempty"`
}

// Tunnel is the full description of a tunnel.
type Tunnel struct {
	TunnelID                   string             `json:"tunnelId,omitempty"`
	TunnelArn                  string             `json:"tunnelArn,omitempty"`
	Status                     TunnelStatus       `json:"status,omitempty"`
	SourceConnectionState      *ConnectionState   `json:"sourceConnectionState,omitempty"`
	DestinationConnectionState *ConnectionState   `json:"destinationConnectionState,omitempty"`
	Description                string             `json:"description,omitempty"`
	DestinationConfig          *DestinationConfig `json:"destinationConfig,omitempty"`
	TimeoutConfig              *TimeoutConfig     `json:"timeoutConfig,omitempty"`
	Tags                       []Tag              `json:"tags,omitzero"`
	CreatedAt                  *time.Time         `json:"createdAt,omitempty"`
	LastUpdatedAt              *time.Time         `json:"lastUpdatedAt,omitempty"`
}

// TunnelSummary is the short description ListTunnels returns.
type TunnelSummary struct {
	TunnelID      string       `json:"tunnelId,omitempty"`
	TunnelArn     string       `json:"tunnelArn,omitempty"`
	Status        TunnelStatus `json:"status,omitempty"`
	Description   string       `json:"description,omitempty"`
	CreatedAt     *time.Time   `json:"createdAt,omitempty"`
	LastUpdatedAt *time.Time   `json:"lastUpdatedAt,omitempty"`
}

// OpenTunnelInput is the input of OpenTunnel.
type OpenTunnelInput struct {
	Description       *string            `json:"description,omitempty"`
	Tags              []Tag              `json:"tags,omitempty"`
	DestinationConfig *DestinationConfig `json:"destinationConfig,omitempty"`
	TimeoutConfig     *TimeoutConfig     `json:"timeoutConfig,omitempty"`
}

// OpenTunnelOutput is the output of OpenTunnel.
type OpenTunnelOutput struct {
	TunnelID               string `json:"tunnelId,omitempty"`
	TunnelArn              string `json:"tunnelArn,omitempty"`
	SourceAccessToken      string `json:"sourceAccessToken,omitempty"`
	DestinationAccessToken string `json:"destinationAccessToken,omitempty"`
}

// DescribeTunnelInput is the input of DescribeTunnel.
type DescribeTunnelInput struct {
	TunnelID *string `json:"tunnelId,omitempty"`
}

// DescribeTunnelOutput is the output of DescribeTunnel.
type DescribeTunnelOutput struct {
	Tunnel *Tunnel `json:"tunnel,omitempty"`
}

// ListTunnelsInput is the input of ListTunnels.
type ListTunnelsInput struct {
	ThingName  *string `json:"thingName,omitempty"`
	MaxResults *int32  `json:"maxResults,omitempty"`
	NextToken  *string `json:"nextToken,omitempty"`
}

// ListTunnelsOutput is the output of ListTunnels.
type ListTunnelsOutput struct {
	TunnelSummaries []TunnelSummary `json:"tunnelSummaries,omitzero"`
	NextToken       string          `json:"nextToken,omitempty"`
}

// CloseTunnelInput is the input of CloseTunnel. Delete also removes the
// tunnel's record when true.
type CloseTunnelInput struct {
	TunnelID *string `json:"tunnelId,omitempty"`
	Delete   *bool   `json:"delete,omitempty"`
}

// CloseTunnelOutput is the (empty) output of CloseTunnel.
type CloseTunnelOutput struct{}

// The three shapes with timestamps shadow their time fields with epochTime
// for the wire; everything else goes through the default encoding.

// MarshalJSON writes the wire form, timestamps as epoch seconds.
func (c ConnectionState) MarshalJSON() ([]byte, error) {
	type plain ConnectionState
	return json.Marshal(struct {
		plain
		LastUpdatedAt *EpochTime `json:"lastUpdatedAt,omitempty"`
	}{plain(c), NewEpoch(c.LastUpdatedAt)})
}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (c *ConnectionState) UnmarshalJSON(b []byte) error {
	type plain ConnectionState
	aux := struct {
		*plain
		LastUpdatedAt *EpochTime `json:"lastUpdatedAt"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	c.LastUpdatedAt = aux.LastUpdatedAt.Time()
	return nil
}

// MarshalJSON writes the wire form, timestamps as epoch seconds.
func (t Tunnel) MarshalJSON() ([]byte, error) {
	type plain Tunnel
	return json.Marshal(struct {
		plain
		CreatedAt     *EpochTime `json:"createdAt,omitempty"`
		LastUpdatedAt *EpochTime `json:"lastUpdatedAt,omitempty"`
	}{plain(t), NewEpoch(t.CreatedAt), NewEpoch(t.LastUpdatedAt)})
}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (t *Tunnel) UnmarshalJSON(b []byte) error {
	type plain Tunnel
	aux := struct {
		*plain
		CreatedAt     *EpochTime `json:"createdAt"`
		LastUpdatedAt *EpochTime `json:"lastUpdatedAt"`
	}{plain: (*plain)(t)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	t.CreatedAt, t.LastUpdatedAt = aux.CreatedAt.Time(), aux.LastUpdatedAt.Time()
	return nil
}

// MarshalJSON writes the wire form, timestamps as epoch seconds.
func (s TunnelSummary) MarshalJSON() ([]byte, error) {
	type plain TunnelSummary
	return json.Marshal(struct {
		plain
		CreatedAt     *EpochTime `json:"createdAt,omitempty"`
		LastUpdatedAt *EpochTime `json:"lastUpdatedAt,omitempty"`
	}{plain(s), NewEpoch(s.CreatedAt), NewEpoch(s.LastUpdatedAt)})
}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (s *TunnelSummary) UnmarshalJSON(b []byte) error {
	type plain TunnelSummary
	aux := struct {
		*plain
		CreatedAt     *EpochTime `json:"createdAt"`
		LastUpdatedAt *EpochTime `json:"lastUpdatedAt"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	s.CreatedAt, s.LastUpdatedAt = aux.CreatedAt.Time(), aux.LastUpdatedAt.Time()
	return nil
}
