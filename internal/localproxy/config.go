package localproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Version is the proxy's version, reported by -V and in the User-Agent.
// Release builds set it with -ldflags "-X ...localproxy.Version=v1.2.3".
var Version = "dev"

// Mode is the side of the tunnel a local proxy serves.
type Mode int

// Modes, as the relay's local-proxy-mode query parameter names them.
const (
	ModeSource Mode = iota + 1
	ModeDestination
)

func (m Mode) String() string {
	switch m {
	case ModeSource:
		return "source"
	case ModeDestination:
		return "destination"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Protocol is the tunnel message format a local proxy speaks: V3 (connection
// ids, the default), V2 (service ids, one connection per stream) or V1 (bare
// stream ids, one service). It is chosen with -y and lowered to what the
// relay answers as subprotocol.
type Protocol int

// Message formats. The zero value means V3.
const (
	V1 Protocol = 1
	V2 Protocol = 2
	V3 Protocol = 3
)

func (p Protocol) String() string {
	if p == 0 {
		p = V3
	}
	return fmt.Sprintf("V%d", int(p))
}

// Config is everything Run needs. Package proxycli builds one from a command
// line; an embedding program may fill one by hand (zero values take
// defaults).
type Config struct {
	Mode        Mode
	AccessToken string
	// ClientToken lets the relay accept the same access token again after a
	// reconnect. Run generates one when it is empty.
	ClientToken string
	// Endpoint is host[:port] of the relay (port 443 by default). A ws:// or
	// wss:// prefix is accepted; ws:// disables TLS (for tests and demos).
	Endpoint string
	// Services maps service id to a listen port or host:port (source) or to
	// a port, host:port or unix socket path (destination). The key "" is the
	// unnamed mapping (-s 5555 / -d 22), which adopts the tunnel's only
	// service. Listen port 0 picks a free port.
	Services map[string]string
	// ConfigFiles hold service mappings (--config-dir), read when Services is
	// empty and the tunnel's service ids arrive.
	ConfigFiles     []string
	BindAddress     string // -b: listen address (source) or default target host (destination)
	CAPath          string // -c: a PEM file or a directory of them, trusted besides the system roots
	NoSSLHostVerify bool   // -k: do not verify the relay's certificate
	Protocol        Protocol
	WebProxy        *url.URL // HTTPS_PROXY: an http:// proxy to reach the relay through
	Settings        Settings
	// PartialMapping (destination only) lets Services name only some of the
	// tunnel's services, at least one: the others are refused, a start for
	// one answered with a reset, instead of Run ending with
	// ErrServiceMismatch. The device agent sets it.
	PartialMapping bool
	Logger         *slog.Logger
	// Ready, if set, is called once the tunnel's service ids arrived and the
	// proxy is ready: in source mode with service id -> listen address, in
	// destination mode with service id -> target. It must not block.
	Ready func(addrs map[string]string)
}

const defaultEndpointPort = 443

var (
	endpointPattern = regexp.MustCompile(`^[a-zA-Z0-9.:\[\]-]{1,253}$`)
	hostPattern     = regexp.MustCompile(`^[a-zA-Z0-9.:\[\]-]{1,253}$`)
)

// The checks Run applies to a Config, exported so that a command line
// rejects bad values up front with the same messages.

// ValidateAccessToken checks an access token: 1 to 4096 bytes, no control
// characters.
func ValidateAccessToken(tok string) error {
	switch {
	case tok == "":
		return errors.New("access token is empty")
	case len(tok) > 4096:
		return errors.New("access token is longer than 4096 bytes")
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < 0x20 || tok[i] == 0x7f {
			return errors.New("access token contains control characters")
		}
	}
	return nil
}

// ValidateEndpoint checks a relay endpoint: host[:port], with an optional
// ws:// or wss:// prefix.
func ValidateEndpoint(ep string) error {
	_, _, _, err := parseEndpoint(ep)
	return err
}

// parseEndpoint splits a relay endpoint into scheme (ws or wss), host and port.
func parseEndpoint(ep string) (scheme, host string, port int, err error) {
	scheme = "wss"
	rest := ep
	if r, ok := strings.CutPrefix(ep, "wss://"); ok {
		rest = r
	} else if r, ok := strings.CutPrefix(ep, "ws://"); ok {
		scheme, rest = "ws", r
	}
	rest = strings.TrimSuffix(rest, "/")
	if !endpointPattern.MatchString(rest) {
		return "", "", 0, fmt.Errorf("invalid endpoint %q", ep)
	}
	host, portStr := rest, ""
	if strings.HasPrefix(rest, "[") { // [v6] or [v6]:port
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", "", 0, fmt.Errorf("invalid endpoint %q", ep)
		}
		host, portStr = rest[1:end], rest[end+1:]
		if portStr != "" {
			var ok bool
			if portStr, ok = strings.CutPrefix(portStr, ":"); !ok {
				return "", "", 0, fmt.Errorf("invalid endpoint %q", ep)
			}
		}
	} else if h, p, ok := strings.Cut(rest, ":"); ok {
		host, portStr = h, p
		if portStr == "" {
			return "", "", 0, fmt.Errorf("invalid endpoint %q: empty port", ep)
		}
	}
	port = defaultEndpointPort
	if scheme == "ws" {
		port = 80
	}
	if portStr != "" {
		n, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			return "", "", 0, fmt.Errorf("invalid endpoint %q: bad port", ep)
		}
		port = int(n)
	}
	if host == "" {
		return "", "", 0, fmt.Errorf("invalid endpoint %q: empty host", ep)
	}
	return scheme, host, port, nil
}

// ValidHost reports whether host is acceptable as a bind address or as the
// host of a mapping: 1-253 characters of a host name or an IP address (IPv6
// with or without brackets).
func ValidHost(host string) bool { return hostPattern.MatchString(host) }

// ValidateMappingEndpoint accepts PORT or HOST:PORT, and for destinations a
// unix socket path (anything with a '/'). Listen port 0 picks a free port.
func ValidateMappingEndpoint(ep string, mode Mode) error {
	if ep == "" {
		return errors.New("empty endpoint")
	}
	if mode == ModeDestination && strings.Contains(ep, "/") {
		return nil
	}
	host, port := "", ep
	if i := strings.LastIndexByte(ep, ':'); i >= 0 {
		host, port = ep[:i], ep[i+1:]
		if host == "" || !hostPattern.MatchString(host) {
			return fmt.Errorf("invalid host in %q", ep)
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || port == "" || strings.ContainsAny(port, "+-") {
		return fmt.Errorf("invalid port in %q: want a number 1-65535", ep)
	}
	if n == 0 && mode == ModeDestination {
		return fmt.Errorf("invalid port in %q: want a number 1-65535", ep)
	}
	return nil
}
