package localproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/warrentunnel/warren/internal/tunnel"
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

// Config is everything Run needs. ParseArgs builds one from a command line;
// an embedding program may fill one by hand (zero values take defaults).
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
	Verbosity       int // -v: 0 off .. 6 trace; see NewLogger
	Logger          *slog.Logger
	// Ready, if set, is called once the tunnel's service ids arrived and the
	// proxy is ready: in source mode with service id -> listen address, in
	// destination mode with service id -> target. It must not block.
	Ready func(addrs map[string]string)
	// ExportSettingsPath is set by --export-default-settings: the caller
	// writes the default settings there (ExportDefaultSettings) and exits.
	ExportSettingsPath string
	// Warnings are notes ParseArgs has for the user (e.g. a token given on
	// the command line); the caller logs them.
	Warnings []string
}

// Errors ParseArgs returns for the informational flags.
var (
	ErrHelp    = errors.New("help requested")
	ErrVersion = errors.New("version requested")
)

// Environment variables, as the official local proxy reads them.
const (
	envAccessToken = "AWSIOT_TUNNEL_ACCESS_TOKEN"
	envClientToken = "AWSIOT_TUNNEL_CLIENT_TOKEN"
	envEndpoint    = "AWSIOT_TUNNEL_ENDPOINT"
	envRegion      = "AWSIOT_TUNNEL_REGION"
	envAWSRegion   = "AWS_REGION"
)

const defaultEndpointPort = 443

var (
	regionPattern   = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	endpointPattern = regexp.MustCompile(`^[a-zA-Z0-9.:\[\]-]{1,253}$`)
	hostPattern     = regexp.MustCompile(`^[a-zA-Z0-9.:\[\]-]{1,253}$`)
)

// ParseArgs parses a command line (without the program name) the way the
// official local proxy does: options on the command line win over a --config
// file, which wins over the environment. env looks up environment variables
// (os.Getenv; nil means none). It returns ErrHelp or ErrVersion for -h and -V.
func ParseArgs(args []string, env func(string) string) (Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	cli, err := parseCommandLine(args)
	if err != nil {
		return Config{}, err
	}
	if _, ok := cli["version"]; ok {
		return Config{}, ErrVersion
	}
	if _, ok := cli["help"]; ok {
		return Config{}, ErrHelp
	}
	if p, ok := cli["export-default-settings"]; ok {
		if p == "" {
			return Config{}, errors.New("--export-default-settings needs a file name")
		}
		return Config{ExportSettingsPath: p}, nil
	}
	cfg := Config{Verbosity: 4, Settings: DefaultSettings()}
	if v, ok := cli["verbose"]; ok {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return Config{}, fmt.Errorf("invalid value %q for --verbose: want a number 0-6", v)
		}
		cfg.Verbosity = min(int(n), 6)
	}
	_, tokenOnCLI := cli["access-token"]

	vals := cli
	if p, ok := cli["config"]; ok {
		file, err := parseConfigFile(p)
		if err != nil {
			return Config{}, err
		}
		for k, v := range file {
			if _, set := vals[k]; !set {
				vals[k] = v
			}
		}
	}
	for name, key := range map[string]string{
		"access-token": envAccessToken, "client-token": envClientToken,
		"proxy-endpoint": envEndpoint, "region": envRegion,
	} {
		if _, set := vals[name]; !set {
			if v := env(key); v != "" {
				vals[name] = v
			}
		}
	}
	if p, ok := vals["settings-json"]; ok {
		if err := loadSettingsJSON(p, &cfg.Settings); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.applyValues(vals, env); err != nil {
		return Config{}, err
	}
	if tokenOnCLI {
		cfg.Warnings = append(cfg.Warnings, "access token given on the command line; consider "+envAccessToken+" instead")
	}
	if cfg.NoSSLHostVerify {
		cfg.Warnings = append(cfg.Warnings, "SECURITY WARNING: TLS certificate verification of the relay is disabled (-k); never use this in production")
	}
	return cfg, nil
}

// applyValues validates the merged option values into cfg.
func (cfg *Config) applyValues(vals map[string]string, env func(string) string) error {
	tok, ok := vals["access-token"]
	if !ok {
		return fmt.Errorf("missing access token: give -t/--access-token or set %s", envAccessToken)
	}
	if err := validateAccessToken(tok); err != nil {
		return err
	}
	cfg.AccessToken = tok
	if ct, ok := vals["client-token"]; ok && ct != "" {
		if !tunnel.ValidClientToken(ct) {
			return errors.New("invalid client token: want 32 to 128 characters of [a-zA-Z0-9-]")
		}
		cfg.ClientToken = ct
	}

	if err := cfg.applyEndpoint(vals, env); err != nil {
		return err
	}
	if err := cfg.applyMode(vals); err != nil {
		return err
	}
	if v, ok := vals["destination-client-type"]; ok {
		switch v {
		case "V1":
			cfg.Protocol = V1
		case "V2":
			cfg.Protocol = V2
		case "V3":
			cfg.Protocol = V3
		default:
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("unknown destination client type %q; using V3", v))
		}
	}
	if b, ok := vals["local-bind-address"]; ok {
		if !hostPattern.MatchString(b) {
			return fmt.Errorf("invalid local bind address %q", b)
		}
		cfg.BindAddress = b
	}
	if c, ok := vals["capath"]; ok {
		if c == "" {
			return errors.New("--capath needs a path")
		}
		cfg.CAPath = c
	}
	if v, ok := vals["no-ssl-host-verify"]; ok && v == "true" {
		cfg.NoSSLHostVerify = true
	}
	if err := cfg.applyConfigDir(vals); err != nil {
		return err
	}
	return cfg.applyWebProxy(env)
}

func validateAccessToken(tok string) error {
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

func (cfg *Config) applyEndpoint(vals map[string]string, env func(string) string) error {
	ep, hasEP := vals["proxy-endpoint"]
	region, hasRegion := vals["region"]
	if !hasEP && !hasRegion {
		// AWS_REGION is the last resort: the official proxy does not read it,
		// so it must never conflict with an explicit endpoint.
		if r := env(envAWSRegion); r != "" {
			region, hasRegion = r, true
		}
	}
	if hasEP == hasRegion {
		return errors.New("give exactly one of -r/--region or -e/--proxy-endpoint")
	}
	if hasRegion {
		if !regionPattern.MatchString(region) {
			return fmt.Errorf("invalid region %q: want lowercase letters, digits and hyphens", region)
		}
		ep = cfg.Settings.regionEndpoint(region)
	}
	ep = strings.ToLower(ep)
	if _, _, _, err := parseEndpoint(ep); err != nil {
		return err
	}
	cfg.Endpoint = ep
	return nil
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

func (cfg *Config) applyMode(vals map[string]string) error {
	src, hasSrc := vals["source-listen-port"]
	dst, hasDst := vals["destination-app"]
	mode, hasMode := vals["mode"]
	switch {
	case hasSrc && hasDst:
		return errors.New("give only one of -s/--source-listen-port and -d/--destination-app")
	case !hasSrc && !hasDst && !hasMode:
		return errors.New("give one of -s/--source-listen-port, -d/--destination-app or -m/--mode")
	}
	cfg.Mode = ModeSource
	if hasDst {
		cfg.Mode = ModeDestination
	}
	if hasMode {
		switch mode {
		case "src", "source":
			if hasDst {
				return errors.New("-d/--destination-app conflicts with --mode " + mode)
			}
			cfg.Mode = ModeSource
		case "dst", "destination":
			if hasSrc {
				return errors.New("-s/--source-listen-port conflicts with --mode " + mode)
			}
			cfg.Mode = ModeDestination
		default:
			return fmt.Errorf("invalid mode %q: want src, source, dst or destination", mode)
		}
	}
	spec, has := src, hasSrc
	if cfg.Mode == ModeDestination {
		spec, has = dst, hasDst
	}
	if !has {
		return nil
	}
	m, warnings, err := ParseMapping(spec, cfg.Mode)
	if err != nil {
		return err
	}
	cfg.Services = m
	cfg.Warnings = append(cfg.Warnings, warnings...)
	return nil
}

// ParseMapping parses a -s or -d value: SERVICE=ENDPOINT pairs separated by
// commas, or a single ENDPOINT for one unnamed service (key ""). A repeated
// service id keeps its first endpoint, with a warning.
func ParseMapping(spec string, mode Mode) (map[string]string, []string, error) {
	var items []string
	for _, it := range strings.Split(spec, ",") {
		if it != "" {
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return nil, nil, errors.New("empty port mapping: want SERVICE=PORT[,SERVICE=PORT...] or a single PORT")
	}
	m := map[string]string{}
	var warnings []string
	for _, it := range items {
		var parts []string
		for _, p := range strings.Split(it, "=") {
			if p != "" {
				parts = append(parts, p)
			}
		}
		if len(parts) != 2 {
			if len(items) == 1 && len(parts) == 1 && !strings.Contains(it, "=") {
				ep := strings.TrimSpace(parts[0])
				if err := validateMappingEndpoint(ep, mode); err != nil {
					return nil, nil, err
				}
				return map[string]string{"": ep}, nil, nil
			}
			return nil, nil, fmt.Errorf("wrong format for the port mapping %q: example SSH1=5555,SSH2=6666", it)
		}
		id, ep := strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1])
		if !tunnel.ValidName(id) {
			return nil, nil, fmt.Errorf("invalid service id %q: want 1-128 of [a-zA-Z0-9:_-]", id)
		}
		if err := validateMappingEndpoint(ep, mode); err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", id, err)
		}
		if old, dup := m[id]; dup {
			warnings = append(warnings, fmt.Sprintf("duplicate mapping for service %s ignored; keeping %s", id, old))
			continue
		}
		m[id] = ep
	}
	return m, warnings, nil
}

// validateMappingEndpoint accepts PORT or HOST:PORT, and for destinations a
// unix socket path (anything with a '/'). Listen port 0 picks a free port.
func validateMappingEndpoint(ep string, mode Mode) error {
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

func (cfg *Config) applyConfigDir(vals map[string]string) error {
	dir, explicit := vals["config-dir"]
	if !explicit {
		wd, err := os.Getwd()
		if err != nil {
			return nil
		}
		dir = filepath.Join(wd, "config")
	}
	files, err := mappingFiles(dir)
	if err != nil {
		if explicit {
			return fmt.Errorf("invalid configuration directory %s: %w", dir, err)
		}
		return nil // the default directory is optional
	}
	cfg.ConfigFiles = files
	return nil
}

// mappingFiles lists the regular files under dir, which must be a non-empty
// directory.
func mappingFiles(dir string) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, errors.New("not a directory")
	}
	var files []string
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errors.New("no configuration files in it")
	}
	return files, nil
}

// applyWebProxy reads https_proxy / HTTPS_PROXY, as the official proxy does.
func (cfg *Config) applyWebProxy(env func(string) string) error {
	name, raw := "https_proxy", env("https_proxy")
	if raw == "" {
		name, raw = "HTTPS_PROXY", env("HTTPS_PROXY")
	}
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("cannot parse %s %q", name, raw)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%s: only http:// web proxies are supported, not %q", name, u.Scheme)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "3128")
	}
	cfg.WebProxy = u
	return nil
}
