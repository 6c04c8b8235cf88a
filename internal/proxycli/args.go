// The official proxy's command line turned into a localproxy.Config:
// options from the command line, a --config file and the environment, in
// that order of precedence.

package proxycli

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/warrentunnel/warren/internal/localproxy"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// Options is a parsed command line: the Config the engine runs with, and
// what the command line asks of the program around the engine.
type Options struct {
	localproxy.Config
	Verbosity int // -v: 0 off .. 6 trace; see localproxy.NewLogger
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

var regionPattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// ParseArgs parses a command line (without the program name) the way the
// official local proxy does: options on the command line win over a --config
// file, which wins over the environment. env looks up environment variables
// (os.Getenv; nil means none). It returns ErrHelp or ErrVersion for -h and -V.
func ParseArgs(args []string, env func(string) string) (Options, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	cli, err := options.parseCommandLine(args)
	if err != nil {
		return Options{}, err
	}
	if _, ok := cli["version"]; ok {
		return Options{}, ErrVersion
	}
	if _, ok := cli["help"]; ok {
		return Options{}, ErrHelp
	}
	if p, ok := cli["export-default-settings"]; ok {
		if p == "" {
			return Options{}, errors.New("--export-default-settings needs a file name")
		}
		return Options{ExportSettingsPath: p}, nil
	}
	cfg := Options{Verbosity: 4}
	cfg.Settings = localproxy.DefaultSettings()
	if v, ok := cli["verbose"]; ok {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return Options{}, fmt.Errorf("invalid value %q for --verbose: want a number 0-6", v)
		}
		cfg.Verbosity = min(int(n), 6)
	}
	_, tokenOnCLI := cli["access-token"]

	vals := cli
	if p, ok := cli["config"]; ok {
		file, err := options.parseConfigFile(p)
		if err != nil {
			return Options{}, err
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
			return Options{}, err
		}
	}
	if err := cfg.applyValues(vals, env); err != nil {
		return Options{}, err
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
func (cfg *Options) applyValues(vals map[string]string, env func(string) string) error {
	tok, ok := vals["access-token"]
	if !ok {
		return fmt.Errorf("missing access token: give -t/--access-token or set %s", envAccessToken)
	}
	if err := localproxy.ValidateAccessToken(tok); err != nil {
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
			cfg.Protocol = localproxy.V1
		case "V2":
			cfg.Protocol = localproxy.V2
		case "V3":
			cfg.Protocol = localproxy.V3
		default:
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("unknown destination client type %q; using V3", v))
		}
	}
	if b, ok := vals["local-bind-address"]; ok {
		if !localproxy.ValidHost(b) {
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

func (cfg *Options) applyEndpoint(vals map[string]string, env func(string) string) error {
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
		ep = regionEndpoint(cfg.Settings, region)
	}
	ep = strings.ToLower(ep)
	if err := localproxy.ValidateEndpoint(ep); err != nil {
		return err
	}
	cfg.Endpoint = ep
	return nil
}

func (cfg *Options) applyMode(vals map[string]string) error {
	src, hasSrc := vals["source-listen-port"]
	dst, hasDst := vals["destination-app"]
	mode, hasMode := vals["mode"]
	switch {
	case hasSrc && hasDst:
		return errors.New("give only one of -s/--source-listen-port and -d/--destination-app")
	case !hasSrc && !hasDst && !hasMode:
		return errors.New("give one of -s/--source-listen-port, -d/--destination-app or -m/--mode")
	}
	cfg.Mode = localproxy.ModeSource
	if hasDst {
		cfg.Mode = localproxy.ModeDestination
	}
	if hasMode {
		switch mode {
		case "src", "source":
			if hasDst {
				return errors.New("-d/--destination-app conflicts with --mode " + mode)
			}
			cfg.Mode = localproxy.ModeSource
		case "dst", "destination":
			if hasSrc {
				return errors.New("-s/--source-listen-port conflicts with --mode " + mode)
			}
			cfg.Mode = localproxy.ModeDestination
		default:
			return fmt.Errorf("invalid mode %q: want src, source, dst or destination", mode)
		}
	}
	spec, has := src, hasSrc
	if cfg.Mode == localproxy.ModeDestination {
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
func ParseMapping(spec string, mode localproxy.Mode) (map[string]string, []string, error) {
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
				if err := localproxy.ValidateMappingEndpoint(ep, mode); err != nil {
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
		if err := localproxy.ValidateMappingEndpoint(ep, mode); err != nil {
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

func (cfg *Options) applyConfigDir(vals map[string]string) error {
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
func (cfg *Options) applyWebProxy(env func(string) string) error {
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
