package proxycli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warrentunnel/warren/internal/localproxy"
)

// fuzzSecret is the access token the fuzzed command lines get from the
// environment: no error or warning may repeat it.
const fuzzSecret = "AQGAAXiFuzzSecretAccessToken0123456789"

// FuzzParseArgs feeds ParseArgs command lines (arguments separated by NUL
// bytes) with a --config file and a --settings-json file of fuzzed
// content: the words @config and @settings stand for their paths. It must
// never panic; what it accepts must pass the checks the engine applies;
// what it refuses, it refuses without repeating the access token.
func FuzzParseArgs(f *testing.F) {
	for _, seed := range []struct {
		args           string
		config, settng string
	}{
		{"-s\x005555", "", ""},
		{"-e\x00relay.example:8443\x00-d\x00HTTP=80,SSH=127.0.0.1:22\x00-v\x006", "", ""},
		{"--config\x00@config", "proxy-endpoint = wss://relay.example\nsource-listen-port = HTTP=5555\n# comment\n[x]\n", ""},
		{"--config\x00@config\x00-r\x00us-east-1", "destination-app=22\nverbose=6\nno-ssl-host-verify = yes\n", ""},
		{"-r\x00cn-north-1\x00-m\x00src\x00--settings-json\x00@settings", "", `{"tunneling":{"proxy":{"websocket":{"ping_period_ms":5000},"tcp":{"window_size":-1},"region_endpoint_overrides":{"x":"y"}}}}`},
		{"-e\x00[::1]:1\x00-s\x00A=0,B=1,A=2\x00-b\x00::1\x00-i\x000123456789abcdef0123456789abcdef", "", ""},
		{"--settings-json\x00@settings\x00-e\x00h\x00-s\x001", "", `{"tunneling.proxy.message.max_payload_size": 99999999}`},
		{"-t\x00\x01\x00-e\x00h\x00-s\x001", "", ""},
		{"--export-default-settings\x00x", "", ""},
		{"-h", "", ""},
	} {
		f.Add(seed.args, []byte(seed.config), []byte(seed.settng))
	}
	f.Fuzz(func(t *testing.T, cmdline string, config, settings []byte) {
		if strings.Contains(cmdline, fuzzSecret) || strings.Contains(string(config), fuzzSecret) || strings.Contains(string(settings), fuzzSecret) {
			return // the input itself carries the secret; errors may quote the input
		}
		dir := t.TempDir()
		configPath, settingsPath := filepath.Join(dir, "config"), filepath.Join(dir, "settings.json")
		if err := os.WriteFile(configPath, config, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(settingsPath, settings, 0o600); err != nil {
			t.Fatal(err)
		}
		var args []string
		if cmdline != "" {
			args = strings.Split(cmdline, "\x00")
		}
		for i, a := range args {
			switch a {
			case "@config":
				args[i] = configPath
			case "@settings":
				args[i] = settingsPath
			default:
				if strings.Contains(a, "/") {
					return // no files of the machine's own (/dev/zero would never end)
				}
			}
		}
		env := func(k string) string {
			if k == envAccessToken {
				return fuzzSecret
			}
			return ""
		}
		opts, err := ParseArgs(args, env)
		if err != nil {
			if strings.Contains(err.Error(), fuzzSecret) {
				t.Fatalf("the error repeats the access token: %v", err)
			}
			return
		}
		for _, w := range opts.Warnings {
			if strings.Contains(w, fuzzSecret) {
				t.Fatalf("a warning repeats the access token: %s", w)
			}
		}
		if opts.ExportSettingsPath != "" {
			return
		}
		checkOptions(t, opts)
	})
}

// checkOptions asserts what every accepted command line gives the engine.
func checkOptions(t *testing.T, o Options) {
	t.Helper()
	if o.Verbosity < 0 || o.Verbosity > 6 {
		t.Fatalf("verbosity %d outside 0..6", o.Verbosity)
	}
	if err := localproxy.ValidateAccessToken(o.AccessToken); err != nil {
		t.Fatalf("accepted access token: %v", err)
	}
	if err := localproxy.ValidateEndpoint(o.Endpoint); err != nil {
		t.Fatalf("accepted endpoint: %v", err)
	}
	if o.Mode != localproxy.ModeSource && o.Mode != localproxy.ModeDestination {
		t.Fatalf("mode %v", o.Mode)
	}
	for id, ep := range o.Services {
		if err := localproxy.ValidateMappingEndpoint(ep, o.Mode); err != nil {
			t.Fatalf("accepted mapping %s=%s: %v", id, ep, err)
		}
	}
	s := o.Settings
	switch {
	case s.MaxPayload < 1 || s.MaxPayload > 64512:
		t.Fatalf("max payload %d", s.MaxPayload)
	case s.PingPeriod <= 0, s.RetryDelay <= 0, s.DialTimeout <= 0, s.StallTimeout <= 0, s.DialRetryDelay <= 0:
		t.Fatalf("a non-positive duration in %+v", s)
	case s.MaxActiveConnections < 1:
		t.Fatalf("max active connections %d", s.MaxActiveConnections)
	}
}
