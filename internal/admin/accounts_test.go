package admin

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iot"

	"github.com/warrentunnel/warren/internal/server"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// accountsAPI answers the account operations with fixed JSON.
func accountsAPI(r recorded, _ int) reply {
	switch r.Target {
	case "WarrenAccounts.CreateAccount":
		return reply{body: `{"accountId":"210987654321","accountName":"bob","accessKeyId":"AKIABOB","secretAccessKey":"bob/secret"}`}
	case "WarrenAccounts.ListAccounts":
		return reply{body: `{"accounts":[{"accountId":"123456789012","accountName":"admin","admin":true,"createdAt":1795770000},
			{"accountId":"210987654321","accountName":"bob","admin":false,"bandwidthLimit":800000,"createdAt":1795770060.5}],"nextToken":"n2"}`}
	case "WarrenAccounts.DescribeAccount", "WarrenAccounts.UpdateAccount":
		return reply{body: `{"accountId":"210987654321","accountName":"bob","admin":false,"createdAt":1795770060.5,"bandwidthLimit":800000,
			"effectiveBandwidthLimit":800000,"currentRate":{"sourceToDestination":1500.5,"destinationToSource":0},"openTunnels":2}`}
	case "WarrenAccounts.DeleteAccount":
		return reply{body: `{}`}
	}
	return reply{status: 404, body: `{"__type":"UnknownOperationException","message":"no"}`}
}

func TestRunAccountCommands(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newFakeService(t, accountsAPI)
	ep := "--endpoint-url=" + svc.URL

	out := mustRun(t, "create-account", ep, "--account-name", "bob", "--bandwidth-limit", "800KB/s")
	if want := `{
    "accountId": "210987654321",
    "accountName": "bob",
    "accessKeyId": "AKIABOB",
    "secretAccessKey": "bob/secret"
}
`; out != want {
		t.Errorf("create-account output:\n%s\nwant:\n%s", out, want)
	}
	out = mustRun(t, "list-accounts", ep, "--max-results", "2", "--next-token", "n1")
	if want := `{
    "accounts": [
        {
            "accountId": "123456789012",
            "accountName": "admin",
            "admin": true,
            "createdAt": "2026-11-27T14:30:00+05:30"
        },
        {
            "accountId": "210987654321",
            "accountName": "bob",
            "admin": false,
            "bandwidthLimit": 800000,
            "createdAt": "2026-11-27T14:31:00.500000+05:30"
        }
    ],
    "nextToken": "n2"
}
`; out != want {
		t.Errorf("list-accounts output:\n%s\nwant:\n%s", out, want)
	}
	wantDescribe := `{
    "accountId": "210987654321",
    "accountName": "bob",
    "admin": false,
    "createdAt": "2026-11-27T14:31:00.500000+05:30",
    "bandwidthLimit": 800000,
    "effectiveBandwidthLimit": 800000,
    "currentRate": {
        "sourceToDestination": 1500.5,
        "destinationToSource": 0.0
    },
    "openTunnels": 2
}
`
	if out := mustRun(t, "describe-account", ep, "--account-id", "210987654321"); out != wantDescribe {
		t.Errorf("describe-account output:\n%s\nwant:\n%s", out, wantDescribe)
	}
	if out := mustRun(t, "update-account", ep, "--account-id", "210987654321", "--bandwidth-limit", "1.5MiB"); out != wantDescribe {
		t.Errorf("update-account output:\n%s\nwant:\n%s", out, wantDescribe)
	}
	for _, limit := range []string{"default", "0", "unlimited"} {
		mustRun(t, "update-account", ep, "--account-id", "210987654321", "--bandwidth-limit", limit)
	}
	if out := mustRun(t, "delete-account", ep, "--account-id", "210987654321"); out != "" {
		t.Errorf("delete-account printed %q", out)
	}
	mustRun(t, "create-account", ep, "--account-name", "carol")

	wantBodies := []struct{ target, body string }{
		{"WarrenAccounts.CreateAccount", `{"accountName":"bob","bandwidthLimit":800000}`},
		{"WarrenAccounts.ListAccounts", `{"maxResults":2,"nextToken":"n1"}`},
		{"WarrenAccounts.DescribeAccount", `{"accountId":"210987654321"}`},
		{"WarrenAccounts.UpdateAccount", `{"accountId":"210987654321","bandwidthLimit":1572864}`},
		{"WarrenAccounts.UpdateAccount", `{"accountId":"210987654321","bandwidthLimit":-1}`},
		{"WarrenAccounts.UpdateAccount", `{"accountId":"210987654321","bandwidthLimit":0}`},
		{"WarrenAccounts.UpdateAccount", `{"accountId":"210987654321","bandwidthLimit":0}`},
		{"WarrenAccounts.DeleteAccount", `{"accountId":"210987654321"}`},
		{"WarrenAccounts.CreateAccount", `{"accountName":"carol"}`},
	}
	reqs := svc.recorded()
	if len(reqs) != len(wantBodies) {
		t.Fatalf("service saw %d requests, want %d", len(reqs), len(wantBodies))
	}
	for i, w := range wantBodies {
		if reqs[i].Target != w.target || string(reqs[i].Body) != w.body || reqs[i].ContentType != jsonContentType {
			t.Errorf("request %d: %s %s (%s), want %s %s", i, reqs[i].Target, reqs[i].Body, reqs[i].ContentType, w.target, w.body)
		}
	}
	checkSigned(t, svc) // for the service "warren"

	// Limits are checked before anything is sent.
	for _, args := range [][]string{
		{"update-account", ep, "--account-id", "210987654321", "--bandwidth-limit", "fast"},
		{"update-account", ep, "--account-id", "210987654321", "--bandwidth-limit", "-1"},
		{"create-account", ep, "--account-name", "dave", "--bandwidth-limit", "5 parsecs"},
	} {
		_, stderr, code := run(t, args...)
		if code != exitUsage || !strings.Contains(stderr, "Error parsing parameter '--bandwidth-limit'") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	if _, stderr, code := run(t, "update-account", ep, "--account-id", "210987654321"); code != exitUsage || !strings.Contains(stderr, "--bandwidth-limit") {
		t.Errorf("update-account without a limit: exit %d, stderr %q", code, stderr)
	}
	if n := len(svc.recorded()); n != len(wantBodies) {
		t.Errorf("refused command lines sent %d requests", n-len(wantBodies))
	}
}

// With --credentials-file, --profile names the profile to write, and the
// call is signed with the default credentials; without it, --profile is
// the signing profile as for every command.
func TestCreateAccountCredentialsFile(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	var makeDirAt string // set: CreateAccount's answer puts a directory there
	svc := newFakeService(t, func(r recorded, n int) reply {
		if makeDirAt != "" {
			os.Mkdir(makeDirAt, 0o700)
		}
		return accountsAPI(r, n)
	})
	ep := "--endpoint-url=" + svc.URL
	file := filepath.Join(t.TempDir(), "aws", "credentials")

	if _, stderr, code := run(t, "create-account", ep, "--account-name", "bob", "--profile", "bobs"); code != exitConfig || !strings.Contains(stderr, "The config profile (bobs) could not be found") {
		t.Fatalf("--profile without --credentials-file: exit %d, stderr %q", code, stderr)
	}
	out := mustRun(t, "create-account", ep, "--account-name", "bob", "--credentials-file", file, "--profile", "bobs")
	if !strings.Contains(out, `"secretAccessKey": "bob/secret"`) {
		t.Fatalf("output %q", out)
	}
	checkFile := func(want string) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("credentials file:\n%s\nwant:\n%s", b, want)
		}
		if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
			t.Errorf("credentials file mode %v", fi.Mode().Perm())
		}
	}
	checkFile("[bobs]\naws_access_key_id = AKIABOB\naws_secret_access_key = bob/secret\n")

	// Merged into an existing file: other profiles and the profile's other
	// settings stay; without --profile the profile is the account's name.
	existing := "# mine\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n\n" +
		"[bob]\nregion = eu-west-1\naws_access_key_id = AKIAOLD\naws_session_token = old\naws_secret_access_key = old\n\n[zed]\naws_access_key_id = Z"
	if err := os.WriteFile(file, []byte(existing), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "create-account", ep, "--account-name", "bob", "--credentials-file", file)
	checkFile("# mine\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n\n" +
		"[bob]\naws_access_key_id = AKIABOB\naws_secret_access_key = bob/secret\nregion = eu-west-1\n\n[zed]\naws_access_key_id = Z")

	// An unusable file is found before the account is created.
	before := len(svc.recorded())
	for _, args := range [][]string{
		{"--credentials-file", filepath.Dir(file)},
		{"--credentials-file", file, "--profile", "a]b"},
	} {
		_, stderr, code := run(t, append([]string{"create-account", ep, "--account-name", "bob"}, args...)...)
		if code != exitUsage || !strings.Contains(stderr, "Error parsing parameter") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	if n := len(svc.recorded()); n != before {
		t.Errorf("unusable credentials files: %d accounts created", n-before)
	}

	// A file that cannot be written after the account exists: the keys are
	// printed all the same.
	makeDirAt = filepath.Join(filepath.Dir(file), "later")
	stdout, stderr, code := run(t, "create-account", ep, "--account-name", "bob", "--credentials-file", makeDirAt)
	if code != exitFailure || !strings.Contains(stdout, `"secretAccessKey": "bob/secret"`) ||
		!strings.Contains(stderr, "account 210987654321 was created, but its keys could not be written") {
		t.Errorf("failed write: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestAccountsAgainstServer drives a real server as an operator would: the
// admin creates an account into a credentials profile, the account works
// with the SDK and the admin commands under that profile, and the admin
// limits and deletes it.
func TestAccountsAgainstServer(t *testing.T) {
	isolateAWSEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := server.Open(ctx, server.Config{Listen: "127.0.0.1:0", DataDir: dir, Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	creds := filepath.Join(dir, server.CredentialsFile)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	t.Setenv("AWS_ENDPOINT_URL", srv.Endpoint())
	t.Setenv("AWS_REGION", "us-east-1")
	decode := func(out string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}

	var alice tunnelapi.CreateAccountOutput
	decode(mustRun(t, "create-account", "--account-name", "alice", "--bandwidth-limit", "800KB",
		"--credentials-file", creds, "--profile", "alice"), &alice)
	if alice.AccountName != "alice" || len(alice.AccountID) != 12 || alice.SecretAccessKey == "" {
		t.Fatalf("create-account: %+v", alice)
	}
	b, _ := os.ReadFile(creds)
	if admin := srv.Admin(); !strings.HasPrefix(string(b), "[default]\naws_access_key_id = "+admin.AccessKeyID+"\n") ||
		!strings.HasSuffix(string(b), "\n[alice]\naws_access_key_id = "+alice.AccessKeyID+"\naws_secret_access_key = "+alice.SecretAccessKey+"\n") {
		t.Fatalf("credentials file:\n%s", b)
	}

	// The SDK finds alice's profile and her keys work.
	cfg, err := config.LoadDefaultConfig(ctx, config.WithSharedConfigProfile("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iot.NewFromConfig(cfg).CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String("alices-robot")}); err != nil {
		t.Fatalf("CreateThing with alice's profile: %v", err)
	}
	var opened tunnelapi.OpenTunnelOutput
	decode(mustRun(t, "open-tunnel", "--profile", "alice", "--destination-config", "thingName=alices-robot,services=SSH"), &opened)
	if !strings.Contains(opened.TunnelArn, ":"+alice.AccountID+":") {
		t.Fatalf("alice's tunnel %s", opened.TunnelArn)
	}
	if out := mustRun(t, "list-tunnels"); strings.Contains(out, opened.TunnelID) {
		t.Fatalf("the admin lists alice's tunnel: %s", out)
	}
	if out := mustRun(t, "list-things"); strings.Contains(out, "alices-robot") {
		t.Fatalf("the admin lists alice's thing: %s", out)
	}

	// Alice administers nothing.
	_, stderr, code := run(t, "create-account", "--profile", "alice", "--account-name", "mallory")
	if code != exitService || !strings.Contains(stderr, "An error occurred (AccessDeniedException) when calling the CreateAccount operation: ") {
		t.Fatalf("alice's create-account: exit %d, stderr %q", code, stderr)
	}

	// The printed form: timestamps in ISO 8601, numbers as numbers.
	type described struct {
		AccountID, AccountName, CreatedAt string
		Admin                             bool
		BandwidthLimit                    *int64
		EffectiveBandwidthLimit           int64
		CurrentRate                       *tunnelapi.AccountRate
		OpenTunnels                       int
	}
	var d described
	decode(mustRun(t, "describe-account", "--account-id", alice.AccountID), &d)
	if d.BandwidthLimit == nil || *d.BandwidthLimit != 800_000 || d.EffectiveBandwidthLimit != 800_000 || d.OpenTunnels != 1 ||
		d.CurrentRate == nil || !strings.HasPrefix(d.CreatedAt, "20") || d.Admin || d.AccountName != "alice" {
		t.Fatalf("describe-account: %+v", d)
	}
	d = described{}
	decode(mustRun(t, "update-account", "--account-id", alice.AccountID, "--bandwidth-limit", "1.5MiB"), &d)
	if d.BandwidthLimit == nil || *d.BandwidthLimit != 1_572_864 {
		t.Fatalf("update-account 1.5MiB: %+v", d)
	}
	if out := mustRun(t, "update-account", "--account-id", alice.AccountID, "--bandwidth-limit", "default"); strings.Contains(out, `"bandwidthLimit"`) {
		t.Fatalf("update-account default: %s", out)
	}
	var list struct {
		Accounts []struct {
			AccountID, AccountName string
			Admin                  bool
		}
	}
	decode(mustRun(t, "list-accounts"), &list)
	if len(list.Accounts) != 2 || list.Accounts[0].AccountName != server.AdminAccountName || !list.Accounts[0].Admin || list.Accounts[1].AccountID != alice.AccountID {
		t.Fatalf("list-accounts: %+v", list)
	}

	_, stderr, code = run(t, "delete-account", "--account-id", srv.Admin().ID)
	if code != exitService || !strings.Contains(stderr, "(ValidationException)") {
		t.Fatalf("deleting the admin account: exit %d, stderr %q", code, stderr)
	}
	if out := mustRun(t, "delete-account", "--account-id", alice.AccountID); out != "" {
		t.Fatalf("delete-account printed %q", out)
	}
	_, stderr, code = run(t, "list-tunnels", "--profile", "alice")
	if code != exitService || !strings.Contains(stderr, "(UnrecognizedClientException)") {
		t.Fatalf("deleted account's keys: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = run(t, "describe-account", "--account-id", alice.AccountID)
	if code != exitService || !strings.Contains(stderr, "(ResourceNotFoundException)") {
		t.Fatalf("describe a deleted account: exit %d, stderr %q", code, stderr)
	}
}

func TestMergeCredentials(t *testing.T) {
	keys := "aws_access_key_id = AK\naws_secret_access_key = SK\n"
	for _, c := range []struct{ in, want string }{
		{"", "[p]\n" + keys},
		{"[a]\nx = 1", "[a]\nx = 1\n\n[p]\n" + keys},
		{"[a]\nx = 1\n", "[a]\nx = 1\n\n[p]\n" + keys},
		{"[p]\naws_access_key_id=old\n[a]\naws_access_key_id = A\n", "[p]\n" + keys + "[a]\naws_access_key_id = A\n"},
		{"[ p ] ; mine\r\nAWS_Secret_Access_Key = old\r\nregion = x\r\n", "[ p ] ; mine\r\n" + keys + "region = x\r\n"},
		{"[p]\naws_access_key_id = 1\n[p]\naws_access_key_id = 2\n", "[p]\n" + keys + "[p]\n"},
		{"[profile p]\nregion = x\n", "[profile p]\nregion = x\n\n[p]\n" + keys},
	} {
		if got := mergeCredentials(c.in, "p", "AK", "SK"); got != c.want {
			t.Errorf("mergeCredentials(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
