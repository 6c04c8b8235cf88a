// The --settings-json file and --export-default-settings: the official
// proxy's tunneling.proxy.* keys mapped onto localproxy.Settings.

package proxycli

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/warrentunnel/warren/internal/localproxy"
	"github.com/warrentunnel/warren/internal/wire"
)

// regionEndpoint is the relay endpoint of an AWS region (-r).
func regionEndpoint(s localproxy.Settings, region string) string {
	return s.RegionEndpoint(region)
}

const keyPrefix = "tunneling.proxy."

// settingsEntries lists every key with its current value as a string, the
// shape the official proxy exports. Keys Warren reads but does not act on
// (buffer sizes of the official implementation) are kept so that a file
// exported by either proxy round-trips.
func settingsEntries(s localproxy.Settings) map[string]string {
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
		"tcp.window_size":                   strconv.Itoa(s.Window),
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
	entries := settingsEntries(localproxy.DefaultSettings())
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
func loadSettingsJSON(path string, s *localproxy.Settings) error {
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
		if err := setSetting(s, key, v); err != nil {
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

func setSetting(s *localproxy.Settings, key, v string) error {
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
	case "tcp.window_size":
		s.Window, err = num(-1, 1<<30)
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
