package proxycli

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/localproxy"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseArgs(t *testing.T) {
	const ct = "0b8a6b4e-3c1d-4f8e-9a2b-7c6d5e4f3a21"
	tests := []struct {
		name  string
		args  []string
		env   func(string) string
		check func(t *testing.T, c Options)
	}{
		{"short flags, unnamed source port", []string{"-t", "tok", "-e", "relay.example:8443", "-s", "5555"}, nil, func(t *testing.T, c Options) {
			want(t, c.Mode, localproxy.ModeSource)
			want(t, c.AccessToken, "tok")
			want(t, c.Endpoint, "relay.example:8443")
			want(t, c.Services, map[string]string{"": "5555"})
			want(t, c.Verbosity, 4)
		}},
		{"long flags with = and space", []string{"--access-token=tok", "--proxy-endpoint", "Relay.Example", "--destination-app=HTTP=80"}, nil, func(t *testing.T, c Options) {
			want(t, c.Mode, localproxy.ModeDestination)
			want(t, c.Endpoint, "relay.example") // lowercased, as the official proxy does
			want(t, c.Services, map[string]string{"HTTP": "80"})
		}},
		{"region builds the endpoint", []string{"-t", "tok", "-r", "us-east-1", "-s", "SSH1=5555,HTTP=8080"}, nil, func(t *testing.T, c Options) {
			want(t, c.Endpoint, "data.tunneling.iot.us-east-1.amazonaws.com")
			want(t, c.Services, map[string]string{"SSH1": "5555", "HTTP": "8080"})
		}},
		{"china region override", []string{"-t", "tok", "-r", "cn-north-1", "-s", "1"}, nil, func(t *testing.T, c Options) {
			want(t, c.Endpoint, "data.tunneling.iot.cn-north-1.amazonaws.com.cn")
		}},
		{"environment", []string{"-s", "1"}, envOf(envAccessToken, "envtok", envEndpoint, "env.example:1", envClientToken, ct), func(t *testing.T, c Options) {
			want(t, c.AccessToken, "envtok")
			want(t, c.Endpoint, "env.example:1")
			want(t, c.ClientToken, ct)
			want(t, len(c.Warnings), 0)
		}},
		{"command line wins over environment", []string{"-t", "clitok", "-s", "1"}, envOf(envAccessToken, "envtok", envRegion, "eu-west-1"), func(t *testing.T, c Options) {
			want(t, c.AccessToken, "clitok")
			want(t, c.Endpoint, "data.tunneling.iot.eu-west-1.amazonaws.com")
			want(t, len(c.Warnings), 1) // token on the command line
		}},
		{"AWS_REGION as last resort", []string{"-t", "tok", "-s", "1"}, envOf(envAWSRegion, "ap-south-1"), func(t *testing.T, c Options) {
			want(t, c.Endpoint, "data.tunneling.iot.ap-south-1.amazonaws.com")
		}},
		{"AWS_REGION does not conflict with -e", []string{"-t", "tok", "-e", "h", "-s", "1"}, envOf(envAWSRegion, "ap-south-1"), func(t *testing.T, c Options) {
			want(t, c.Endpoint, "h")
		}},
		{"destination endpoints", []string{"-t", "tok", "-e", "h", "-d", "HTTP=localhost:8080, SSH=22 ,SOCK=/run/app.sock"}, nil, func(t *testing.T, c Options) {
			want(t, c.Services, map[string]string{"HTTP": "localhost:8080", "SSH": "22", "SOCK": "/run/app.sock"})
		}},
		{"unnamed host:port destination", []string{"-t", "tok", "-e", "h", "-d", "10.0.0.1:22"}, nil, func(t *testing.T, c Options) {
			want(t, c.Services, map[string]string{"": "10.0.0.1:22"})
		}},
		{"adjacent short values and verbosity", []string{"-ttok", "-eh", "-v6", "-s5555"}, nil, func(t *testing.T, c Options) {
			want(t, c.AccessToken, "tok")
			want(t, c.Verbosity, 6)
		}},
		{"verbosity above 6 is trace", []string{"-t", "tok", "-e", "h", "-s", "1", "--verbose", "200"}, nil, func(t *testing.T, c Options) {
			want(t, c.Verbosity, 6)
		}},
		{"insecure flag warns", []string{"-t", "tok", "-e", "h", "-s", "1", "-k"}, nil, func(t *testing.T, c Options) {
			want(t, c.NoSSLHostVerify, true)
			want(t, len(c.Warnings), 2)
		}},
		{"grouped switches", []string{"-t", "tok", "-e", "h", "-s", "1", "--no-ssl-host-verify"}, nil, func(t *testing.T, c Options) {
			want(t, c.NoSSLHostVerify, true)
		}},
		{"mode dst with -d", []string{"-t", "tok", "-e", "h", "-m", "dst", "-d", "22"}, nil, func(t *testing.T, c Options) {
			want(t, c.Mode, localproxy.ModeDestination)
		}},
		{"mode source without mapping", []string{"-t", "tok", "-e", "h", "--mode", "source"}, nil, func(t *testing.T, c Options) {
			want(t, c.Mode, localproxy.ModeSource)
			want(t, len(c.Services), 0)
		}},
		{"client types", []string{"-t", "tok", "-e", "h", "-s", "1", "-y", "V2"}, nil, func(t *testing.T, c Options) {
			want(t, c.Protocol, localproxy.V2)
		}},
		{"V1 client type", []string{"-t", "tok", "-e", "h", "-s", "1", "--destination-client-type", "V1"}, nil, func(t *testing.T, c Options) {
			want(t, c.Protocol, localproxy.V1)
		}},
		{"unknown client type means V3", []string{"-t", "tok", "-e", "h", "-s", "1", "-y", "V7"}, nil, func(t *testing.T, c Options) {
			want(t, c.Protocol, localproxy.Protocol(0))
			want(t, len(c.Warnings), 2)
		}},
		{"client token, bind address, capath", []string{"-t", "tok", "-e", "h", "-s", "1", "-i", ct, "-b", "::1", "-c", "/etc/ca"}, nil, func(t *testing.T, c Options) {
			want(t, c.ClientToken, ct)
			want(t, c.BindAddress, "::1")
			want(t, c.CAPath, "/etc/ca")
		}},
		{"unique prefix of a long option", []string{"--access", "tok", "--proxy-e", "h", "-s", "1"}, nil, func(t *testing.T, c Options) {
			want(t, c.AccessToken, "tok")
		}},
		{"ws scheme endpoint", []string{"-t", "tok", "-e", "ws://127.0.0.1:8080", "-s", "1"}, nil, func(t *testing.T, c Options) {
			want(t, c.Endpoint, "ws://127.0.0.1:8080")
		}},
		{"listen port 0", []string{"-t", "tok", "-e", "h", "-s", "HTTP=0"}, nil, func(t *testing.T, c Options) {
			want(t, c.Services, map[string]string{"HTTP": "0"})
		}},
		{"duplicate mapping keeps the first", []string{"-t", "tok", "-e", "h", "-s", "A=1,A=2"}, nil, func(t *testing.T, c Options) {
			want(t, c.Services, map[string]string{"A": "1"})
			want(t, len(c.Warnings), 2)
		}},
		{"web proxy from the environment", []string{"-t", "tok", "-e", "h", "-s", "1"}, envOf("HTTPS_PROXY", "http://user:pw@proxy.local"), func(t *testing.T, c Options) {
			want(t, c.WebProxy.Host, "proxy.local:3128")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseArgs(tc.args, tc.env)
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tc.args, err)
			}
			tc.check(t, c)
		})
	}
}

func want[T any](t *testing.T, got, exp T) {
	t.Helper()
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("got %#v, want %#v", got, exp)
	}
}

func TestParseArgsErrors(t *testing.T) {
	base := []string{"-t", "tok", "-e", "h"}
	tests := []struct {
		name string
		args []string
		env  func(string) string
		msg  string
	}{
		{"missing token", []string{"-e", "h", "-s", "1"}, nil, "missing access token"},
		{"empty token", []string{"-t", "", "-e", "h", "-s", "1"}, nil, "access token is empty"},
		{"source and destination", append(base, "-s", "1", "-d", "2"), nil, "only one of -s"},
		{"no mode at all", base, nil, "give one of -s"},
		{"-s with mode dst", append(base, "-s", "1", "-m", "dst"), nil, "conflicts with --mode"},
		{"-d with mode src", append(base, "-d", "1", "-m", "src"), nil, "conflicts with --mode"},
		{"bad mode", append(base, "-m", "both"), nil, "invalid mode"},
		{"region and endpoint", append(base, "-r", "us-east-1", "-s", "1"), nil, "exactly one of -r"},
		{"endpoint from env and region", []string{"-t", "tok", "-r", "us-east-1", "-s", "1"}, envOf(envEndpoint, "h"), "exactly one of -r"},
		{"no region or endpoint", []string{"-t", "tok", "-s", "1"}, nil, "exactly one of -r"},
		{"port too big", append(base, "-s", "70000"), nil, "invalid port"},
		{"port not a number", append(base, "-s", "HTTP=abc"), nil, "invalid port"},
		{"destination port 0", append(base, "-d", "HTTP=0"), nil, "invalid port"},
		{"host without port", append(base, "-d", "HTTP=localhost"), nil, "invalid port"},
		{"mapping without service id", append(base, "-s", "HTTP=80,90"), nil, "wrong format"},
		{"mapping without endpoint", append(base, "-s", "HTTP="), nil, "wrong format"},
		{"bad service id", append(base, "-s", "H T=80"), nil, "invalid service id"},
		{"repeated option", append(base, "-s", "1", "-t", "other"), nil, "more than once"},
		{"unknown option", append(base, "-s", "1", "--bogus"), nil, "unrecognised option"},
		{"unknown short option", append(base, "-s", "1", "-q"), nil, "unrecognised option"},
		{"ambiguous prefix", append(base, "-s", "1", "--con", "x"), nil, "ambiguous"},
		{"missing value", append(base, "-s"), nil, "missing"},
		{"positional argument", append(base, "-s", "1", "extra"), nil, "unexpected argument"},
		{"switch with a value", append(base, "-s", "1", "--no-ssl-host-verify=yes"), nil, "takes no value"},
		{"bad verbosity", append(base, "-s", "1", "-v", "loud"), nil, "--verbose"},
		{"bad endpoint port", []string{"-t", "tok", "-e", "h:x", "-s", "1"}, nil, "invalid endpoint"},
		{"empty endpoint port", []string{"-t", "tok", "-e", "h:", "-s", "1"}, nil, "invalid endpoint"},
		{"endpoint with a path", []string{"-t", "tok", "-e", "h/x", "-s", "1"}, nil, "invalid endpoint"},
		{"bad region", []string{"-t", "tok", "-r", "US_EAST", "-s", "1"}, nil, "invalid region"},
		{"bad client token", append(base, "-s", "1", "-i", "short"), nil, "invalid client token"},
		{"bad bind address", append(base, "-s", "1", "-b", "a b"), nil, "bind address"},
		{"missing config dir", append(base, "-s", "1", "--config-dir", "/nonexistent/dir"), nil, "configuration directory"},
		{"missing config file", append(base, "-s", "1", "--config", "/nonexistent/file"), nil, "config file"},
		{"https web proxy", append(base, "-s", "1"), envOf("https_proxy", "https://p:1"), "only http://"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseArgs(tc.args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ParseArgs(%q) = %v, want an error containing %q", tc.args, err, tc.msg)
			}
		})
	}
}

func TestParseArgsInformational(t *testing.T) {
	if _, err := ParseArgs([]string{"-h"}, nil); !errors.Is(err, ErrHelp) {
		t.Errorf("-h: %v", err)
	}
	if _, err := ParseArgs([]string{"--help", "-t", "x"}, nil); !errors.Is(err, ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if _, err := ParseArgs([]string{"-V"}, nil); !errors.Is(err, ErrVersion) {
		t.Errorf("-V: %v", err)
	}
	c, err := ParseArgs([]string{"--export-default-settings", "out.json"}, nil)
	if err != nil || c.ExportSettingsPath != "out.json" {
		t.Errorf("--export-default-settings: %v %q", err, c.ExportSettingsPath)
	}
}

func TestConfigFileAndDir(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "lp.ini")
	writeFile(t, cfgFile, "# comment\nregion = us-west-2\naccess-token = filetok\nsource-listen-port = 6000\nno-ssl-host-verify = true\n")
	mapDir := filepath.Join(dir, "maps")
	writeFile(t, filepath.Join(mapDir, "a.ini"), "SSH1=3333\n")
	writeFile(t, filepath.Join(mapDir, "sub", "b.ini"), "SSH2 = 10.0.0.1:80\n")

	c, err := ParseArgs([]string{"--config", cfgFile, "-t", "clitok", "--config-dir", mapDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, c.AccessToken, "clitok") // the command line wins over the file
	want(t, c.Endpoint, "data.tunneling.iot.us-west-2.amazonaws.com")
	want(t, c.Services, map[string]string{"": "6000"})
	want(t, c.NoSSLHostVerify, true)
	want(t, len(c.ConfigFiles), 2)

	writeFile(t, cfgFile, "bogus-option = 1\n")
	if _, err := ParseArgs([]string{"--config", cfgFile}, nil); err == nil || !strings.Contains(err.Error(), "unrecognised option") {
		t.Errorf("unknown option in config file: %v", err)
	}
}

func TestSettingsExportRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "settings.json")
	if err := ExportDefaultSettings(p); err != nil {
		t.Fatal(err)
	}
	s := localproxy.Settings{}
	if err := loadSettingsJSON(p, &s); err != nil {
		t.Fatal(err)
	}
	want(t, s, localproxy.DefaultSettings()) // every setting is exported

	writeFile(t, p, `{"tunneling":{"proxy":{"websocket":{"ping_period_ms":"1500","retry_delay_ms":100,"connect_retry_count":"2"},"tcp":{"connection_retry_count":"3"},"region_endpoint_overrides":{"xx-test-1":"relay.test"}}}}`)
	c, err := ParseArgs([]string{"-t", "tok", "-r", "xx-test-1", "-s", "1", "--settings-json", p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, c.Settings.PingPeriod, 1500*time.Millisecond)
	want(t, c.Settings.RetryDelay, 100*time.Millisecond)
	want(t, c.Settings.MaxConnectAttempts, 3)
	want(t, c.Settings.DialRetries, 3)
	want(t, c.Endpoint, "relay.test")

	writeFile(t, p, `{"tunneling":{"proxy":{"websocket":{"ping_period_ms":"often"}}}}`)
	if _, err := ParseArgs([]string{"-t", "tok", "-e", "h", "-s", "1", "--settings-json", p}, nil); err == nil {
		t.Error("bad settings value accepted")
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
