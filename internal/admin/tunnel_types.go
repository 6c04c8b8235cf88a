package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The request and response shapes of the IoT Secure Tunneling API
// (2018-10-05), with the API's JSON member names. Fields are declared in the
// model's member order, so the CLI output lists them in the order the AWS CLI
// does. Timestamps are *time.Time in Go and epoch seconds on the wire.

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

// Tag is a resource tag.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// DestinationConfig names the thing a tunnel's destination runs on and the
// services the tunnel carries.
type DestinationConfig struct {
	ThingName string   `json:"thingName,omitempty"`
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
	Description       string             `json:"description,omitempty"`
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
	TunnelID string `json:"tunnelId"`
}

// DescribeTunnelOutput is the output of DescribeTunnel.
type DescribeTunnelOutput struct {
	Tunnel *Tunnel `json:"tunnel,omitempty"`
}

// ListTunnelsInput is the input of ListTunnels.
type ListTunnelsInput struct {
	ThingName  string `json:"thingName,omitempty"`
	MaxResults *int32 `json:"maxResults,omitempty"`
	NextToken  string `json:"nextToken,omitempty"`
}

// ListTunnelsOutput is the output of ListTunnels.
type ListTunnelsOutput struct {
	TunnelSummaries []TunnelSummary `json:"tunnelSummaries,omitzero"`
	NextToken       string          `json:"nextToken,omitempty"`
}

// CloseTunnelInput is the input of CloseTunnel. Delete also removes the
// tunnel's record when true.
type CloseTunnelInput struct {
	TunnelID string `json:"tunnelId"`
	Delete   *bool  `json:"delete,omitempty"`
}

// CloseTunnelOutput is the (empty) output of CloseTunnel.
type CloseTunnelOutput struct{}

// epochTime carries a timestamp as the JSON protocols send it: a number of
// seconds since the Unix epoch, with an optional fraction.
type epochTime time.Time

func newEpoch(t *time.Time) *epochTime {
	if t == nil {
		return nil
	}
	e := epochTime(*t)
	return &e
}

func (e *epochTime) time() *time.Time {
	if e == nil {
		return nil
	}
	t := time.Time(*e)
	return &t
}

// MarshalJSON writes the seconds exactly, trimming trailing zero digits.
func (e epochTime) MarshalJSON() ([]byte, error) {
	t := time.Time(e)
	s := strconv.FormatInt(t.Unix(), 10)
	if ns := t.Nanosecond(); ns != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%09d", ns), "0")
	}
	return []byte(s), nil
}

// UnmarshalJSON reads epoch seconds. Plain decimals are parsed exactly, so
// "1795770000.123" is 123 ms and not the nearest float.
func (e *epochTime) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	t, err := parseEpochSeconds(string(b))
	if err != nil {
		return err
	}
	*e = epochTime(t)
	return nil
}

func parseEpochSeconds(s string) (time.Time, error) {
	if !strings.ContainsAny(s, "eE") {
		whole, frac, _ := strings.Cut(s, ".")
		sec, err := strconv.ParseInt(whole, 10, 64)
		if err == nil && len(frac) <= 9 && allDigits(frac) {
			ns, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
			if strings.HasPrefix(whole, "-") {
				ns = -ns
			}
			return time.Unix(sec, ns).UTC(), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, fmt.Errorf("timestamp %q is not epoch seconds", s)
	}
	// A float64 near today's epoch is good to about a microsecond; keep no
	// more than that, as Python's datetime does.
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC(), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// The three shapes with timestamps shadow their time fields with epochTime
// for the wire; everything else goes through the default encoding.

// MarshalJSON writes the wire form, timestamps as epoch seconds.
func (c ConnectionState) MarshalJSON() ([]byte, error) {
	type plain ConnectionState
	return json.Marshal(struct {
		plain
		LastUpdatedAt *epochTime `json:"lastUpdatedAt,omitempty"`
	}{plain(c), newEpoch(c.LastUpdatedAt)})
}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (c *ConnectionState) UnmarshalJSON(b []byte) error {
	type plain ConnectionState
	aux := struct {
		*plain
		LastUpdatedAt *epochTime `json:"lastUpdatedAt"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	c.LastUpdatedAt = aux.LastUpdatedAt.time()
	return nil
}

// MarshalJSON writes the wire form, timestamps as epoch seconds.
func (t Tunnel) MarshalJSON() ([]byte, error) {
	type plain Tunnel
	return json.Marshal(struct {
		plain
		CreatedAt     *epochTime `json:"createdAt,omitempty"`
		LastUpdatedAt *epochTime `json:"lastUpdatedAt,omitempty"`
	}{plain(t), newEpoch(t.CreatedAt), newEpoch(t.LastUpdatedAt)})
}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (t *Tunnel) UnmarshalJSON(b []byte) error {
	type plain Tunnel
	aux := struct {
		*plain
		CreatedAt     *epochTime `json:"createdAt"`
		LastUpdatedAt *epochTime `json:"lastUpdatedAt"`
	}{plain: (*plain)(t)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	t.CreatedAt, t.LastUpdatedAt = aux.CreatedAt.time(), aux.LastUpdatedAt.time()
	return nil
}

// MarshalJSON writes the wire form, timestamps as epoch seconds.
func (s TunnelSummary) MarshalJSON() ([]byte, error) {
	type plain TunnelSummary
	return json.Marshal(struct {
		plain
		CreatedAt     *epochTime `json:"createdAt,omitempty"`
		LastUpdatedAt *epochTime `json:"lastUpdatedAt,omitempty"`
	}{plain(s), newEpoch(s.CreatedAt), newEpoch(s.LastUpdatedAt)})
}

// UnmarshalJSON reads the wire form, timestamps as epoch seconds.
func (s *TunnelSummary) UnmarshalJSON(b []byte) error {
	type plain TunnelSummary
	aux := struct {
		*plain
		CreatedAt     *epochTime `json:"createdAt"`
		LastUpdatedAt *epochTime `json:"lastUpdatedAt"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	s.CreatedAt, s.LastUpdatedAt = aux.CreatedAt.time(), aux.LastUpdatedAt.time()
	return nil
}
