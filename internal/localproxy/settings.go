package localproxy

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
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
	// one local socket (tcp.write_buffer_size). When it is full the tunnel
	// reader waits up to StallTimeout (tcp.write_stall_timeout_ms) for the
	// socket to take some, then resets that connection.
	QueueBytes   int
	StallTimeout time.Duration
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
		QueueBytes:           256 << 10,
		StallTimeout:         10 * time.Second,
	}
}

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
	return s
}

func (s Settings) regionEndpoint(region string) string {
	if ep, ok := s.RegionEndpointOverrides[region]; ok {
		return ep
	}
	return strings.Replace(s.EndpointFormat, "%s", region, 1)
}

const keyPrefix = "tunneling.proxy."

// settingsEntries lists every key with its current value as a string, the
// shape the official proxy exports. Keys Warren reads but does not act on
// (buffer sizes of the official implementation) are kept so that a file
// exported by either proxy round-trips.
func (s Settings) entries() map[string]string {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	retries := -1
	if s.MaxConnectAttempts > 0 {
		retries = s.MaxConnectAttempts - 1
	}
	e := map[string]string{
		"default_bind_address":              s.DefaultBindAddress,
		"endpoint_format":                   s.EndpointFormat,
		"message.data_length_size":          "2",
		"message.data_frame_max_size":       "65538",
		"message.max_payload_size":          strconv.Itoa(s.MaxPayload),
		"message.max_size":                  "65536",
		"tcp.connection_retry_count":        strconv.Itoa(s.DialRetries),
		"tcp.connection_retry_delay_ms":     ms(s.DialRetryDelay),
		"tcp.connect_timeout_ms":            ms(s.DialTimeout),
		"tcp.max_active_connections":        strconv.Itoa(s.MaxActiveConnections),
		"tcp.read_buffer_size":              "131076",
		"tcp.write_buffer_size":             strconv.Itoa(s.QueueBytes),
		"tcp.write_stall_timeout_ms":        ms(s.StallTimeout),
		"websocket.ping_period_ms":          ms(s.PingPeriod),
		"websocket.retry_delay_ms":          ms(s.RetryDelay),
		"websocket.connect_retry_count":     strconv.Itoa(retries),
		"websocket.reconnect_on_data_error": "true",
		"websocket.subprotocol":             s.Subprotocol,
		"websocket.max_frame_size":          "131076",
		"websocket.write_buffer_size":       "131076",
		"websocket.read_buffer_size":        "131076",
	}
	for r, ep := range s.RegionEndpointOverrides {
		e["region_endpoint_overrides."+r] = ep
	}
	return e
}

// ExportDefaultSettings writes the default settings as JSON to path, nested
// by key path with string values like the official proxy's export.
func ExportDefaultSettings(path string) error {
	root := map[string]any{}
	entries := DefaultSettings().entries()
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		node := root
		parts := strings.Split(keyPrefix+k, ".")
		for _, p := range parts[:len(parts)-1] {
			child, ok := node[p].(map[string]any)
			if !ok {
				child = map[string]any{}
				node[p] = child
			}
			node = child
		}
		node[parts[len(parts)-1]] = entries[k]
	}
	data, err := json.MarshalIndent(root, "", "    ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("export settings: %w", err)
	}
	return nil
}

// loadSettingsJSON applies a --settings-json file over s. Unknown keys are
// ignored, as the official proxy ignores them; bad values are errors.
func loadSettingsJSON(path string, s *Settings) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("settings file: %w", err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("settings file %s: %w", path, err)
	}
	flat := map[string]string{}
	flatten("", root, flat)
	for k, v := range flat {
		key, ok := strings.CutPrefix(k, keyPrefix)
		if !ok {
			continue
		}
		if err := s.set(key, v); err != nil {
			return fmt.Errorf("settings file %s: %s%s: %w", path, keyPrefix, key, err)
		}
	}
	return nil
}

func flatten(prefix string, v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, c, out)
		}
	case string:
		out[prefix] = t
	case float64:
		out[prefix] = strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		out[prefix] = strconv.FormatBool(t)
	}
}

func (s *Settings) set(key, v string) error {
	num := func(lo, hi int) (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("%q is not a number in %d..%d", v, lo, hi)
		}
		return n, nil
	}
	msDur := func(lo int) (time.Duration, error) {
		n, err := num(lo, 1<<30)
		return time.Duration(n) * time.Millisecond, err
	}
	var err error
	switch key {
	case "default_bind_address":
		s.DefaultBindAddress = v
	case "endpoint_format":
		s.EndpointFormat = v
	case "websocket.subprotocol":
		s.Subprotocol = v
	case "websocket.ping_period_ms":
		s.PingPeriod, err = msDur(1)
	case "websocket.retry_delay_ms":
		s.RetryDelay, err = msDur(1)
	case "websocket.connect_retry_count":
		var n int
		if n, err = num(-1, 1<<30); err == nil {
			s.MaxConnectAttempts = 0
			if n >= 0 {
				s.MaxConnectAttempts = n + 1
			}
		}
	case "message.max_payload_size":
		s.MaxPayload, err = num(1, wire.MaxPayload)
	case "tcp.max_active_connections":
		s.MaxActiveConnections, err = num(1, 1<<20)
	case "tcp.connection_retry_count":
		s.DialRetries, err = num(-1, 1<<30)
	case "tcp.connection_retry_delay_ms":
		s.DialRetryDelay, err = msDur(1)
	case "tcp.connect_timeout_ms":
		s.DialTimeout, err = msDur(1)
	case "tcp.write_buffer_size":
		s.QueueBytes, err = num(wire.MaxPayload, 1<<30)
	case "tcp.write_stall_timeout_ms":
		s.StallTimeout, err = msDur(1)
	default:
		if r, ok := strings.CutPrefix(key, "region_endpoint_overrides."); ok {
			m := map[string]string{}
			for k, ep := range s.RegionEndpointOverrides {
				m[k] = ep
			}
			m[r] = v
			s.RegionEndpointOverrides = m
		}
	}
	return err
}
