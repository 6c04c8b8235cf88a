package admin

import (
	"bytes"
	"context"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// isolateAWSEnv clears every AWS setting the machine may have and points the
// shared files at nothing, so tests see only what they set.
func isolateAWSEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IOT",
		"AWS_ENDPOINT_URL_IOTSECURETUNNELING", "AWS_CA_BUNDLE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
		"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
	} {
		t.Setenv(k, "") // restores the old value after the test
		os.Unsetenv(k)
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func setTestCreds(t *testing.T) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
	t.Setenv("AWS_REGION", testRegion)
}

func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	stdout, stderr, code := run(t, args...)
	if code != 0 {
		t.Fatalf("warren %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
	}
	if stderr != "" {
		t.Errorf("warren %s: stderr %q", strings.Join(args, " "), stderr)
	}
	return stdout
}

func checkSigned(t *testing.T, svc *fakeService) {
	t.Helper()
	for _, r := range svc.recorded() {
		if r.SigErr != nil {
			t.Errorf("%s %s %s: %v", r.Method, r.Path, r.Target, r.SigErr)
		}
	}
}

// tunnelAPI answers the tunnel operations with fixed JSON.
func tunnelAPI(r recorded, _ int) reply {
	switch r.Target {
	case "IoTSecuredTunneling.OpenTunnel":
		return reply{body: `{"tunnelId":"t-1","tunnelArn":"arn:aws:iot:eu-central-1:123456789012:tunnel/t-1","sourceAccessToken":"src-token","destinationAccessToken":"dst-token"}`}
	case "IoTSecuredTunneling.DescribeTunnel":
		if strings.Contains(string(r.Body), "missing") {
			return reply{status: 404, body: `{"__type":"ResourceNotFoundException","message":"Tunnel missing not found"}`}
		}
		return reply{body: `{"tunnel":{"lastUpdatedAt":1795770060,"createdAt":1795770000.123,"tunnelId":"t-1",
			"tunnelArn":"arn:aws:iot:eu-central-1:123456789012:tunnel/t-1","status":"OPEN",
			"destinationConnectionState":{"status":"DISCONNECTED"},
			"sourceConnectionState":{"status":"CONNECTED","lastUpdatedAt":1795770000.5},
			"description":"lab <&> ü","destinationConfig":{"services":["SSH","HTTP"],"thingName":"dev"},
			"timeoutConfig":{"maxLifetimeTimeoutMinutes":60},"tags":[],"somethingNew":true}}`}
	case "IoTSecuredTunneling.ListTunnels":
		return reply{body: `{"tunnelSummaries":[{"tunnelId":"t-2","status":"CLOSED","createdAt":1795770000,"lastUpdatedAt":1795770000.25}],"nextToken":"page-2"}`}
	case "IoTSecuredTunneling.CloseTunnel":
		return reply{body: `{}`}
	case "IoTSecuredTunneling.RotateTunnelAccessToken":
		return reply{body: `{"tunnelArn":"arn:aws:iot:eu-central-1:123456789012:tunnel/t-1","destinationAccessToken":"dst-token-2"}`}
	}
	return thingsAPI(r)
}

// thingsAPI answers the registry's REST operations with fixed JSON.
func thingsAPI(r recorded) reply {
	switch {
	case r.Method == "POST" && r.Path == "/things/dev":
		return reply{body: `{"thingName":"dev","thingArn":"arn:aws:iot:eu-central-1:123456789012:thing/dev","thingId":"id-1"}`}
	case r.Method == "GET" && r.Path == "/things/dev":
		return reply{body: `{"thingName":"dev","thingId":"id-1","thingArn":"arn:aws:iot:eu-central-1:123456789012:thing/dev","defaultClientId":"dev","attributes":{"size":"2","color":"red"},"version":3}`}
	case r.Method == "GET" && r.Path == "/things":
		return reply{body: `{"things":[{"thingName":"dev","thingArn":"arn:aws:iot:eu-central-1:123456789012:thing/dev","attributes":{},"version":1}],"nextToken":"p2"}`}
	case r.Method == "DELETE" && r.Path == "/things/dev":
		return reply{body: `{}`}
	}
	return reply{status: 404, header: map[string]string{"X-Amzn-ErrorType": "ResourceNotFoundException"},
		body: `{"message":"Thing ` + strings.TrimPrefix(r.Path, "/things/") + ` not found"}`}
}

func TestRunTunnelCommands(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newFakeService(t, tunnelAPI)
	ep := "--endpoint-url=" + svc.URL

	out := mustRun(t, "open-tunnel", ep, "--description", "lab", "--destination-config", "thingName=dev,services=SSH,HTTP",
		"--timeout-config", "maxLifetimeTimeoutMinutes=60", "--tags", "Key=team,Value=edge", "key=env,value=")
	wantOpen := `{
    "tunnelId": "t-1",
    "tunnelArn": "arn:aws:iot:eu-central-1:123456789012:tunnel/t-1",
    "sourceAccessToken": "src-token",
    "destinationAccessToken": "dst-token"
}
`
	if out != wantOpen {
		t.Errorf("open-tunnel output:\n%s\nwant:\n%s", out, wantOpen)
	}

	out = mustRun(t, "describe-tunnel", "--tunnel-id", "t-1", ep, "--output", "json")
	wantDescribe := `{
    "tunnel": {
        "tunnelId": "t-1",
        "tunnelArn": "arn:aws:iot:eu-central-1:123456789012:tunnel/t-1",
        "status": "OPEN",
        "sourceConnectionState": {
            "status": "CONNECTED",
            "lastUpdatedAt": "2026-11-27T14:30:00.500000+05:30"
        },
        "destinationConnectionState": {
            "status": "DISCONNECTED"
        },
        "description": "lab <&> ü",
        "destinationConfig": {
            "thingName": "dev",
            "services": [
                "SSH",
                "HTTP"
            ]
        },
        "timeoutConfig": {
            "maxLifetimeTimeoutMinutes": 60
        },
        "tags": [],
        "createdAt": "2026-11-27T14:30:00.123000+05:30",
        "lastUpdatedAt": "2026-11-27T14:31:00+05:30"
    }
}
`
	if out != wantDescribe {
		t.Errorf("describe-tunnel output:\n%s\nwant:\n%s", out, wantDescribe)
	}

	out = mustRun(t, "list-tunnels", ep, "--thing-name", "dev", "--max-results", "5", "--next-token", "page-1")
	wantList := `{
    "tunnelSummaries": [
        {
            "tunnelId": "t-2",
            "status": "CLOSED",
            "createdAt": "2026-11-27T14:30:00+05:30",
            "lastUpdatedAt": "2026-11-27T14:30:00.250000+05:30"
        }
    ],
    "nextToken": "page-2"
}
`
	if out != wantList {
		t.Errorf("list-tunnels output:\n%s\nwant:\n%s", out, wantList)
	}

	for _, args := range [][]string{
		{"close-tunnel", "--tunnel-id", "t-1", "--delete", ep},
		{"close-tunnel", "--tunnel-id", "t-1", "--no-delete", ep},
		{"close-tunnel", "--tunnel-id", "t-1", ep},
	} {
		if out := mustRun(t, args...); out != "" {
			t.Errorf("%v printed %q, want nothing", args, out)
		}
	}

	reqs := svc.recorded()
	wantBodies := []string{
		`{"description":"lab","tags":[{"key":"team","value":"edge"},{"key":"env","value":""}],"destinationConfig":{"thingName":"dev","services":["SSH","HTTP"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":60}}`,
		`{"tunnelId":"t-1"}`,
		`{"thingName":"dev","maxResults":5,"nextToken":"page-1"}`,
		`{"tunnelId":"t-1","delete":true}`,
		`{"tunnelId":"t-1","delete":false}`,
		`{"tunnelId":"t-1"}`,
	}
	if len(reqs) != len(wantBodies) {
		t.Fatalf("service saw %d requests, want %d", len(reqs), len(wantBodies))
	}
	for i, r := range reqs {
		jsonEqual(t, r.Target+" body", r.Body, wantBodies[i])
	}
	checkSigned(t, svc)
}

func TestRunStructuredParamForms(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newFakeService(t, tunnelAPI)
	dir := t.TempDir()
	tagsFile := filepath.Join(dir, "tags.json")
	if err := os.WriteFile(tagsFile, []byte(`[{"key":"a","value":"b"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	forms := []struct {
		args []string
		want string
	}{
		{[]string{"--destination-config", "thingName=dev,services=[SSH,HTTP]"}, `{"destinationConfig":{"thingName":"dev","services":["SSH","HTTP"]}}`},
		{[]string{"--destination-config", `{"thingName":"dev","services":["SSH"]}`}, `{"destinationConfig":{"thingName":"dev","services":["SSH"]}}`},
		{[]string{"--destination-config=services=SSH"}, `{"destinationConfig":{"services":["SSH"]}}`},
		{[]string{"--timeout-config", `{"maxLifetimeTimeoutMinutes":5}`}, `{"timeoutConfig":{"maxLifetimeTimeoutMinutes":5}}`},
		{[]string{"--tags", `[{"key":"a","value":"b"},{"key":"c","value":"d"}]`}, `{"tags":[{"key":"a","value":"b"},{"key":"c","value":"d"}]}`},
		{[]string{"--tags", "file://" + tagsFile}, `{"tags":[{"key":"a","value":"b"}]}`},
		{nil, `{}`},
	}
	for _, f := range forms {
		mustRun(t, append([]string{"open-tunnel", "--endpoint-url", svc.URL}, f.args...)...)
		reqs := svc.recorded()
		jsonEqual(t, strings.Join(f.args, " "), reqs[len(reqs)-1].Body, f.want)
	}
}

func TestRunThingCommands(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newFakeService(t, func(r recorded, _ int) reply { return thingsAPI(r) })
	ep := "--endpoint-url=" + svc.URL

	out := mustRun(t, "create-thing", ep, "--thing-name", "dev", "--attribute-payload", "attributes={color=red,size=2}")
	wantCreate := `{
    "thingName": "dev",
    "thingArn": "arn:aws:iot:eu-central-1:123456789012:thing/dev",
    "thingId": "id-1"
}
`
	if out != wantCreate {
		t.Errorf("create-thing output:\n%s\nwant:\n%s", out, wantCreate)
	}
	out = mustRun(t, "describe-thing", ep, "--thing-name", "dev")
	wantDescribe := `{
    "defaultClientId": "dev",
    "thingName": "dev",
    "thingId": "id-1",
    "thingArn": "arn:aws:iot:eu-central-1:123456789012:thing/dev",
    "attributes": {
        "color": "red",
        "size": "2"
    },
    "version": 3
}
`
	if out != wantDescribe {
		t.Errorf("describe-thing output:\n%s\nwant:\n%s", out, wantDescribe)
	}
	out = mustRun(t, "list-things", ep, "--max-results", "10", "--next-token", "p1")
	wantList := `{
    "things": [
        {
            "thingName": "dev",
            "thingArn": "arn:aws:iot:eu-central-1:123456789012:thing/dev",
            "attributes": {},
            "version": 1
        }
    ],
    "nextToken": "p2"
}
`
	if out != wantList {
		t.Errorf("list-things output:\n%s\nwant:\n%s", out, wantList)
	}
	if out := mustRun(t, "delete-thing", ep, "--thing-name", "dev"); out != "" {
		t.Errorf("delete-thing printed %q", out)
	}

	reqs := svc.recorded()
	want := []struct{ method, path string }{{"POST", "/things/dev"}, {"GET", "/things/dev"}, {"GET", "/things"}, {"DELETE", "/things/dev"}}
	if len(reqs) != len(want) {
		t.Fatalf("service saw %d requests, want %d", len(reqs), len(want))
	}
	for i, w := range want {
		if reqs[i].Method != w.method || reqs[i].Path != w.path {
			t.Errorf("request %d: %s %s, want %s %s", i, reqs[i].Method, reqs[i].Path, w.method, w.path)
		}
	}
	jsonEqual(t, "create-thing body", reqs[0].Body, `{"attributePayload":{"attributes":{"color":"red","size":"2"}}}`)
	if q, _ := url.ParseQuery(reqs[2].RawQuery); q.Get("maxResults") != "10" || q.Get("nextToken") != "p1" {
		t.Errorf("list-things query %q", reqs[2].RawQuery)
	}
	checkSigned(t, svc)
}

func TestRunErrors(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newFakeService(t, tunnelAPI)
	broken := newFakeService(t, func(recorded, int) reply {
		return reply{status: 500, body: `{"__type":"InternalFailureException","message":"boom"}`}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + l.Addr().String()
	l.Close()

	tests := []struct {
		name       string
		args       []string
		code       int
		wantStderr string // exact, unless prefix is set
		prefix     bool
	}{
		{"tunnel not found", []string{"describe-tunnel", "--tunnel-id", "missing", "--endpoint-url", svc.URL}, 254,
			"\nAn error occurred (ResourceNotFoundException) when calling the DescribeTunnel operation: Tunnel missing not found\n", false},
		{"thing not found", []string{"describe-thing", "--thing-name", "ghost", "--endpoint-url", svc.URL}, 254,
			"\nAn error occurred (ResourceNotFoundException) when calling the DescribeThing operation: Thing ghost not found\n", false},
		{"retries exhausted", []string{"describe-tunnel", "--tunnel-id", "t-1", "--endpoint-url", broken.URL}, 254,
			"\nAn error occurred (InternalFailureException) when calling the DescribeTunnel operation (reached max retries: 2): boom\n", false},
		{"connection refused", []string{"list-tunnels", "--endpoint-url", closedURL}, 255,
			"\nCould not connect to the endpoint URL: \"" + closedURL + "/\"", true},
		{"missing argument", []string{"close-tunnel", "--endpoint-url", svc.URL}, 252,
			"usage: warren close-tunnel --tunnel-id <value> [--delete | --no-delete] [global options]\nwarren close-tunnel: error: the following arguments are required: --tunnel-id\n", false},
		{"unknown option", []string{"list-tunnels", "--thingname", "x"}, 252,
			"usage: warren list-tunnels [--thing-name <value>] [--max-results <value>] [--next-token <value>] [global options]\nwarren list-tunnels: error: Unknown options: --thingname, x\n", false},
		{"bad shorthand", []string{"open-tunnel", "--destination-config", "thingName"}, 252,
			"\nError parsing parameter '--destination-config': expected '=' after key \"thingName\"", true},
		{"validation", []string{"list-tunnels", "--max-results", "0"}, 252,
			"\nParameter validation failed:\nInvalid value for parameter maxResults, value: 0, valid min value: 1\n", false},
		{"output format", []string{"list-tunnels", "--output", "text"}, 252,
			"usage: warren list-tunnels", true},
		{"endpoint without scheme", []string{"list-tunnels", "--endpoint-url", "localhost:1234"}, 252,
			"\nBad value for --endpoint-url \"localhost:1234\": scheme is missing", true},
		{"unknown command", []string{"make-tunnel"}, 252, "usage: warren <command> [parameters]\nwarren: error: unknown command \"make-tunnel\"", true},
		{"no command", nil, 252, "usage: warren <command> [parameters]\n", true},
		{"unknown profile", []string{"list-tunnels", "--profile", "nope", "--endpoint-url", svc.URL}, 253, "\nThe config profile (nope) could not be found\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if tt.prefix && !strings.HasPrefix(stderr, tt.wantStderr) || !tt.prefix && stderr != tt.wantStderr {
				t.Errorf("stderr:\n%q\nwant:\n%q", stderr, tt.wantStderr)
			}
		})
	}
	if n := len(broken.recorded()); n != 3 {
		t.Errorf("a failing service got %d attempts, want 3", n)
	}
}

func TestRunConfigErrors(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
	_, stderr, code := run(t, "list-tunnels", "--endpoint-url", "http://127.0.0.1:9")
	if code != 253 || !strings.HasPrefix(stderr, "\nYou must specify a region.") {
		t.Errorf("without a region: exit %d, stderr %q", code, stderr)
	}

	isolateAWSEnv(t)
	_, stderr, code = run(t, "list-tunnels", "--region", testRegion, "--endpoint-url", "http://127.0.0.1:9")
	if code != 253 || !strings.HasPrefix(stderr, "\nUnable to locate credentials.") {
		t.Errorf("without credentials: exit %d, stderr %q", code, stderr)
	}
}

func TestRunHelp(t *testing.T) {
	for _, name := range Commands() {
		stdout, stderr, code := run(t, name, "--help")
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "usage: warren "+name) || !strings.Contains(stdout, "--endpoint-url") {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", name, code, stdout, stderr)
		}
	}
	if stdout, _, code := run(t, "open-tunnel", "-h"); code != 0 || !strings.Contains(stdout, "--destination-config thingName=string,services=string,string | JSON") {
		t.Errorf("open-tunnel -h: exit %d, stdout %q", code, stdout)
	}
}

func TestRunOverview(t *testing.T) {
	stdout, _, code := run(t, "--help")
	if code != 0 || !strings.Contains(stdout, "  open-tunnel ") || !strings.Contains(stdout, "  delete-thing ") {
		t.Errorf("--help: exit %d, stdout %q", code, stdout)
	}
}

func TestCommands(t *testing.T) {
	want := []string{"create-thing", "describe-thing", "list-things", "delete-thing",
		"create-keys-and-certificate", "describe-certificate", "update-certificate",
		"attach-thing-principal", "detach-thing-principal", "list-thing-principals", "describe-endpoint",
		"open-tunnel", "describe-tunnel", "list-tunnels", "close-tunnel", "rotate-tunnel-access-token",
		"tag-resource", "untag-resource", "list-tags-for-resource",
		"create-account", "list-accounts", "describe-account", "update-account", "delete-account"}
	if got := Commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("Commands() = %v, want %v", got, want)
	}
}

// TestRunEndpointPrecedence: the service-specific variable beats
// AWS_ENDPOINT_URL, and --endpoint-url beats both, for each client.
func TestRunEndpointPrecedence(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	global := newFakeService(t, tunnelAPI)
	tunnels := newFakeService(t, tunnelAPI)
	flag := newFakeService(t, tunnelAPI)
	t.Setenv("AWS_ENDPOINT_URL", global.URL)
	t.Setenv("AWS_ENDPOINT_URL_IOTSECURETUNNELING", tunnels.URL)

	mustRun(t, "describe-tunnel", "--tunnel-id", "t-1")
	mustRun(t, "describe-thing", "--thing-name", "dev")
	if len(tunnels.recorded()) != 1 || len(global.recorded()) != 1 {
		t.Fatalf("tunnel service got %d requests, global %d; want 1 and 1", len(tunnels.recorded()), len(global.recorded()))
	}
	if r := global.recorded()[0]; r.Path != "/things/dev" {
		t.Errorf("global endpoint got %s %s, want the thing call", r.Method, r.Path)
	}
	mustRun(t, "describe-tunnel", "--tunnel-id", "t-1", "--endpoint-url", flag.URL)
	mustRun(t, "describe-thing", "--thing-name", "dev", "--endpoint-url", flag.URL)
	if len(flag.recorded()) != 2 || len(tunnels.recorded()) != 1 || len(global.recorded()) != 1 {
		t.Errorf("--endpoint-url did not win: flag %d, tunnels %d, global %d requests",
			len(flag.recorded()), len(tunnels.recorded()), len(global.recorded()))
	}
	checkSigned(t, flag)
}

// TestRunProfile reads region, credentials and the tunnel endpoint from a
// named profile in the shared files.
func TestRunProfile(t *testing.T) {
	isolateAWSEnv(t)
	svc := newFakeService(t, tunnelAPI)
	cfgFile := "[profile lab]\nregion = " + testRegion + "\nservices = lab-services\n\n" +
		"[services lab-services]\niotsecuretunneling =\n  endpoint_url = " + svc.URL + "\n"
	credFile := "[lab]\naws_access_key_id = " + testAccessKey + "\naws_secret_access_key = " + testSecretKey + "\n"
	if err := os.WriteFile(os.Getenv("AWS_CONFIG_FILE"), []byte(cfgFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv("AWS_SHARED_CREDENTIALS_FILE"), []byte(credFile), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "list-tunnels", "--profile", "lab")
	t.Setenv("AWS_PROFILE", "lab")
	mustRun(t, "list-tunnels")
	if n := len(svc.recorded()); n != 2 {
		t.Fatalf("service got %d requests, want 2", n)
	}
	checkSigned(t, svc)
}

// TestRunTLS checks that a CA bundle (flag or AWS_CA_BUNDLE) reaches both
// clients' HTTP transport, and that --no-verify-ssl skips verification.
func TestRunTLS(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newTLSFakeService(t, tunnelAPI)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: svc.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ep := "--endpoint-url=" + svc.URL

	_, stderr, code := run(t, "describe-tunnel", "--tunnel-id", "t-1", ep)
	if code != 255 || !strings.Contains(stderr, "Could not connect to the endpoint URL") || !strings.Contains(stderr, "certificate") {
		t.Errorf("untrusted certificate: exit %d, stderr %q", code, stderr)
	}
	mustRun(t, "describe-tunnel", "--tunnel-id", "t-1", ep, "--ca-bundle", caFile)
	mustRun(t, "describe-thing", "--thing-name", "dev", ep, "--ca-bundle", caFile)
	mustRun(t, "describe-tunnel", "--tunnel-id", "t-1", ep, "--no-verify-ssl")
	t.Setenv("AWS_CA_BUNDLE", caFile)
	mustRun(t, "describe-tunnel", "--tunnel-id", "t-1", ep)
	mustRun(t, "list-things", ep)
	checkSigned(t, svc)
}
