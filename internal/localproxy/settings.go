package localproxy

import (
	"strings"
	"time"

	"github.com/warrentunnel/warren/internal/wire"
)

// Settings are the fine-grained knobs of --settings-json, under the official
// proxy's key names where it has one. Zero fields take their defaults.
type Settings struct {
	DefaultBindAddress      string            // tunneling.proxy.default_bind_address
	EndpointFormat          string            // tunneling.proxy.endpoint_format, %s = region
	RegionEndpointOverrides map[string]string // tunneling.proxy.region_endpoint_overrides.<region>

	PingPeriod time.Duration // tunneling.proxy.websocket.ping_period_ms
	RetryDelay time.Duration // tunneling.proxy.websocket.retry_delay_ms
	// MaxConnectAttempts bounds consecutive failed connects to the relay
	// (websocket.connect_retry_count + 1); 0 retries forever.
	MaxConnectAttempts int
	Subprotocol        string // tunneling.proxy.websocket.subprotocol

	MaxPayload           int // tunneling.proxy.message.max_payload_size, at most 64512
	MaxActiveConnections int // tunneling.proxy.tcp.max_active_connections, per service

	// Destination dials: timeout per attempt, retries after a failure and the
	// delay between them (tcp.connect_timeout_ms, tcp.connection_retry_count,
	// tcp.connection_retry_delay_ms). The official proxy retries 5 times
	// 2.5 s apart while its whole tunnel waits; Warren fails fast by default
	// so the source's client learns promptly that the target is down.
	DialTimeout    time.Duration
	DialRetries    int // -1 retries until the tunnel connection ends
	DialRetryDelay time.Duration

	// QueueBytes bounds the bytes from the tunnel waiting to be written to
	// one local socket (tcp.write_buffer_size; 1 MiB, so that a window of
	// three quarters of it keeps one connection near the path's speed; it
	// fills only behind a local application slower than the tunnel). When
	// it is full the tunnel reader waits up to StallTimeout
	// (tcp.write_stall_timeout_ms) for the socket to take some, then resets
	// that connection.
	QueueBytes   int
	StallTimeout time.Duration

	// Window is how many payload bytes a peer may send one connection ahead
	// of what this side has written to its socket (tcp.window_size, Warren's
	// own key). It is announced to the peer with Warren's window updates,
	// which a Warren peer obeys and the official proxy ignores, so that a
	// slow local application slows only its own connection, not the tunnel.
	// 0 is three quarters of QueueBytes; -1 sends no window updates.
	Window int
}

// DefaultSettings returns the settings used when nothing overrides them.
func DefaultSettings() Settings {
	return Settings{
		DefaultBindAddress: "localhost",
		EndpointFormat:     "data.tunneling.iot.%s.amazonaws.com",
		RegionEndpointOverrides: map[string]string{
			"cn-north-1":     "data.tunneling.iot.cn-north-1.amazonaws.com.cn",
			"cn-northwest-1": "data.tunneling.iot.cn-northwest-1.amazonaws.com.cn",
		},
		PingPeriod:           20 * time.Second,
		RetryDelay:           2500 * time.Millisecond,
		Subprotocol:          "aws.iot.securetunneling-3.0",
		MaxPayload:           wire.MaxPayload,
		MaxActiveConnections: 128,
		DialTimeout:          5 * time.Second,
		DialRetryDelay:       2500 * time.Millisecond,
		QueueBytes:           1 << 20,
		StallTimeout:         10 * time.Second,
	}
}

// SilenceLimit is how long the WebSocket may stay silent (no message and
// no pong to the pings sent every PingPeriod) before the relay is taken
// for gone: two ping periods, 40 s by default.
func (s Settings) SilenceLimit() time.Duration { return 2 * s.PingPeriod }

// withDefaults fills zero fields from DefaultSettings.
func (s Settings) withDefaults() Settings {
	d := DefaultSettings()
	if s.DefaultBindAddress == "" {
		s.DefaultBindAddress = d.DefaultBindAddress
	}
	if s.EndpointFormat == "" {
		s.EndpointFormat = d.EndpointFormat
	}
	if s.RegionEndpointOverrides == nil {
		s.RegionEndpointOverrides = d.RegionEndpointOverrides
	}
	if s.PingPeriod <= 0 {
		s.PingPeriod = d.PingPeriod
	}
	if s.RetryDelay <= 0 {
		s.RetryDelay = d.RetryDelay
	}
	if s.Subprotocol == "" {
		s.Subprotocol = d.Subprotocol
	}
	if s.MaxPayload <= 0 || s.MaxPayload > wire.MaxPayload {
		s.MaxPayload = d.MaxPayload
	}
	if s.MaxActiveConnections <= 0 {
		s.MaxActiveConnections = d.MaxActiveConnections
	}
	if s.DialTimeout <= 0 {
		s.DialTimeout = d.DialTimeout
	}
	if s.DialRetryDelay <= 0 {
		s.DialRetryDelay = d.DialRetryDelay
	}
	if s.QueueBytes <= 0 {
		s.QueueBytes = d.QueueBytes
	}
	if s.StallTimeout <= 0 {
		s.StallTimeout = d.StallTimeout
	}
	if s.Window == 0 || s.Window > s.QueueBytes {
		s.Window = s.QueueBytes * 3 / 4
	}
	return s
}

// RegionEndpoint is the relay endpoint of an AWS region: its override, or
// EndpointFormat with the region in place of %s.
func (s Settings) RegionEndpoint(region string) string {
	s = s.withDefaults()
	if ep, ok := s.RegionEndpointOverrides[region]; ok {
		return ep
	}
	return strings.Replace(s.EndpointFormat, "%s", region, 1)
}
