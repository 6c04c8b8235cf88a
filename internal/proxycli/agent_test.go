package proxycli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAgentArgs(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent.conf")
	os.WriteFile(conf, []byte("# the device's agent\nthing-name = FromFile\nmax-tunnels = 3\ndestination-app = SSH=22\n"), 0o644)
	mapDir := filepath.Join(dir, "config")
	os.Mkdir(mapDir, 0o755)
	os.WriteFile(filepath.Join(mapDir, "services.ini"), []byte("HTTP = 8080\n"), 0o644)

	o, err := ParseAgentArgs([]string{"--endpoint", "mqtt://127.0.0.1:1883", "--thing-name", "Dev1", "-d", "HTTP=80,SSH=127.0.0.1:22",
		"-e", "relay.example:8443", "-c", dir, "-v", "6", "--max-tunnels", "2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, o.Broker.String(), "mqtt://127.0.0.1:1883")
	want(t, o.ThingName, "Dev1")
	want(t, o.Services, map[string]string{"HTTP": "80", "SSH": "127.0.0.1:22"})
	want(t, o.Proxy.Endpoint, "relay.example:8443")
	want(t, o.Proxy.CAPath, dir)
	want(t, o.MaxTunnels, 2)
	want(t, o.Verbosity, 6)
	if o.TLS != nil {
		t.Error("TLS for a plain mqtt:// broker")
	}

	// A --config file under the command line; --config-dir alone maps too;
	// host:port is TLS.
	o, err = ParseAgentArgs([]string{"--config", conf, "--endpoint", "broker.example", "--thing-name", "Dev2", "--config-dir", mapDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, o.ThingName, "Dev2")
	want(t, o.MaxTunnels, 3)
	want(t, o.Services, map[string]string{"SSH": "22"})
	want(t, len(o.ConfigFiles), 1)
	want(t, o.Broker.String(), "mqtts://broker.example:8883")
	if o.TLS == nil || o.TLS.ServerName != "broker.example" {
		t.Errorf("TLS config %+v", o.TLS)
	}

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--thing-name", "D", "-d", "HTTP=80"}, "missing --endpoint"},
		{[]string{"--endpoint", "mqtt://h", "-d", "HTTP=80"}, "missing --thing-name"},
		{[]string{"--endpoint", "mqtt://h", "--thing-name", "D"}, "map the device's services"},
		{[]string{"--endpoint", "mqtt://h", "--thing-name", "D", "-d", "80"}, "name each service"},
		{[]string{"--endpoint", "mqtt://h", "--thing-name", "D", "-d", "HTTP=80", "--cert", conf}, "TLS broker endpoint"},
		{[]string{"--endpoint", "h", "--thing-name", "D", "-d", "HTTP=80", "--cert", conf}, "both --cert and --key"},
		{[]string{"--endpoint", "ws://h", "--thing-name", "D", "-d", "HTTP=80"}, "broker endpoint"},
		{[]string{"--endpoint", "mqtt://h", "--thing-name", "D", "-d", "HTTP=80", "--max-tunnels", "0"}, "--max-tunnels"},
		{[]string{"--endpoint", "mqtt://h", "--thing-name", "D", "-d", "HTTP=80", "-e", "bad host"}, "--proxy-endpoint"},
		{[]string{"--endpoint", "mqtt://h", "--thing-name", "D", "-d", "HTTP=80", "-t", "tok"}, "unrecognised option '-t'"},
	} {
		if _, err := ParseAgentArgs(c.args, nil); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: %v, want an error with %q", c.args, err, c.msg)
		}
	}
}

func TestAgentMainUsage(t *testing.T) {
	if code, _, errOut := runMain(t, "agent", "--help"); code != 0 || !strings.Contains(errOut, "localproxy agent [options]") || !strings.Contains(errOut, "--thing-name") {
		t.Errorf("agent --help: %d %q", code, errOut)
	}
	if code, out, _ := runMain(t, "agent", "-V"); code != 0 || !strings.Contains(out, "Warren local proxy") {
		t.Errorf("agent -V: %d %q", code, out)
	}
	if code, _, errOut := runMain(t, "agent", "--endpoint", "mqtt://h"); code != 1 || !strings.Contains(errOut, "localproxy agent: missing --thing-name") {
		t.Errorf("agent without a thing: %d %q", code, errOut)
	}
	// The proxy's own help does not change.
	if code, _, errOut := runMain(t, "--help"); code != 0 || strings.Contains(errOut, "thing-name") {
		t.Errorf("--help: %d %q", code, errOut)
	}
}
