package api

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// boto3Script drives the test server with boto3: the thing and tunnel
// operations, and the errors as botocore (and so the AWS CLI) shows them.
const boto3Script = `
import json, os, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

url = os.environ["WARREN_URL"]
cfg = Config(retries={"max_attempts": 1, "mode": "standard"})
def client(name, secret=None):
    return boto3.client(name, endpoint_url=url, region_name="us-east-1", config=cfg,
        aws_access_key_id=os.environ["WARREN_AKID"],
        aws_secret_access_key=secret or os.environ["WARREN_SECRET"])
def err(e):
    return {"code": e.response["Error"]["Code"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"], "text": str(e)}

out = {}
iot = client("iot")
t = iot.create_thing(thingName="py-thing", attributePayload={"attributes": {"k": "v"}})
out["thing"] = {k: t[k] for k in ("thingName", "thingArn", "thingId")}
d = iot.describe_thing(thingName="py-thing")
out["describeThing"] = {k: d[k] for k in ("thingName", "thingId", "attributes", "version", "defaultClientId")}
try:
    iot.create_thing(thingName="py-thing")
except ClientError as e:
    out["conflict"] = err(e)

st = client("iotsecuretunneling")
o = st.open_tunnel(destinationConfig={"thingName": "py-thing", "services": ["SSH"]},
    timeoutConfig={"maxLifetimeTimeoutMinutes": 60}, description="from boto3")
out["open"] = {k: o[k] for k in ("tunnelId", "tunnelArn")}
out["tokens"] = bool(o["sourceAccessToken"]) and bool(o["destinationAccessToken"])
tn = st.describe_tunnel(tunnelId=o["tunnelId"])["tunnel"]
out["tunnel"] = {"status": tn["status"], "thingName": tn["destinationConfig"]["thingName"],
    "services": tn["destinationConfig"]["services"], "lifetime": tn["timeoutConfig"]["maxLifetimeTimeoutMinutes"],
    "description": tn["description"], "source": tn["sourceConnectionState"]["status"],
    "createdAt": tn["createdAt"].timestamp()}
out["listed"] = [s["tunnelId"] for s in st.list_tunnels(thingName="py-thing")["tunnelSummaries"]]
try:
    st.describe_tunnel(tunnelId="0123456789abcdef0123456789abcdef")
except ClientError as e:
    out["missing"] = err(e)
try:
    client("iotsecuretunneling", secret="wrong").list_tunnels()
except ClientError as e:
    out["wrongSecret"] = err(e)
json.dump(out, sys.stdout)
`

func requirePython(t *testing.T) {
	t.Helper()
	if err := exec.Command("python3", "-c", "import boto3").Run(); err != nil {
		skipOutsideCI(t, "python3 with boto3 is not available: %v", err)
	}
}

// awsEnv is an environment with no AWS configuration of the machine's own.
func awsEnv(extra ...string) []string {
	env := []string{"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func TestBoto3(t *testing.T) {
	requirePython(t)
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "-c", boto3Script)
	cmd.Env = awsEnv("WARREN_URL="+f.srv.URL, "WARREN_AKID="+f.acct.AccessKeyID, "WARREN_SECRET="+f.acct.SecretAccessKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("boto3 script: %v\n%s", err, stderr.String())
	}
	type pyErr struct {
		Code   string
		Status int
		Text   string
	}
	var out struct {
		Thing         struct{ ThingName, ThingArn, ThingID string }
		DescribeThing struct {
			ThingName, ThingID, DefaultClientID string
			Attributes                          map[string]string
			Version                             int
		}
		Conflict pyErr
		Open     struct{ TunnelID, TunnelArn string }
		Tokens   bool
		Tunnel   struct {
			Status, ThingName, Description, Source string
			Services                               []string
			Lifetime                               int
			CreatedAt                              float64
		}
		Listed      []string
		Missing     pyErr
		WrongSecret pyErr
	}
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("boto3 output %s: %v", stdout, err)
	}
	if out.Thing.ThingName != "py-thing" || out.DescribeThing.ThingID != out.Thing.ThingID ||
		out.DescribeThing.Attributes["k"] != "v" || out.DescribeThing.Version != 1 || out.DescribeThing.DefaultClientID != "py-thing" {
		t.Errorf("things: %+v %+v", out.Thing, out.DescribeThing)
	}
	if out.Conflict.Code != codeExists || out.Conflict.Status != 409 {
		t.Errorf("conflict: %+v", out.Conflict)
	}
	if out.Open.TunnelID == "" || !out.Tokens || !strings.HasSuffix(out.Open.TunnelArn, ":tunnel/"+out.Open.TunnelID) {
		t.Errorf("open: %+v, tokens %v", out.Open, out.Tokens)
	}
	tn := out.Tunnel
	if tn.Status != "OPEN" || tn.ThingName != "py-thing" || len(tn.Services) != 1 || tn.Services[0] != "SSH" ||
		tn.Lifetime != 60 || tn.Description != "from boto3" || tn.Source != "DISCONNECTED" {
		t.Errorf("tunnel: %+v", tn)
	}
	if d := time.Since(time.UnixMilli(int64(tn.CreatedAt * 1000))); d < -time.Minute || d > time.Minute {
		t.Errorf("createdAt %v is not about now", tn.CreatedAt)
	}
	if len(out.Listed) != 1 || out.Listed[0] != out.Open.TunnelID {
		t.Errorf("listed %v", out.Listed)
	}
	// What the AWS CLI prints is botocore's text of the error.
	if want := "An error occurred (ResourceNotFoundException) when calling the DescribeTunnel operation: tunnel 0123456789abcdef0123456789abcdef does not exist in this account"; out.Missing.Text != want {
		t.Errorf("missing tunnel: %q, want %q", out.Missing.Text, want)
	}
	if out.WrongSecret.Code != codeInvalidSig || out.WrongSecret.Status != 403 || !strings.Contains(out.WrongSecret.Text, "signature") {
		t.Errorf("wrong secret: %+v", out.WrongSecret)
	}
}

// TestAWSCLI runs the AWS CLI, when the machine has it, for one success and
// one error as a person would see them.
func TestAWSCLI(t *testing.T) {
	if _, err := exec.LookPath("aws"); err != nil {
		skipOutsideCI(t, "the aws CLI is not installed")
	}
	requirePython(t)
	f := newFixture(t)
	run := func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "aws", append([]string{"--endpoint-url", f.srv.URL, "--region", testRegion, "--output", "json"}, args...)...)
		cmd.Env = awsEnv("AWS_ACCESS_KEY_ID="+f.acct.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+f.acct.SecretAccessKey, "AWS_MAX_ATTEMPTS=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	stdout, stderr, err := run("iotsecuretunneling", "open-tunnel", "--destination-config", "services=SSH")
	if err != nil {
		t.Fatalf("open-tunnel: %v\n%s", err, stderr)
	}
	var open struct{ TunnelID string }
	if err := json.Unmarshal([]byte(stdout), &open); err != nil || open.TunnelID == "" {
		t.Fatalf("open-tunnel printed %q: %v", stdout, err)
	}
	_, stderr, err = run("iotsecuretunneling", "open-tunnel", "--destination-config", "services=SSH,thingName=ghost")
	if err == nil || !strings.Contains(stderr, `An error occurred (ResourceNotFoundException) when calling the OpenTunnel operation: destinationConfig.thingName: thing "ghost" does not exist in this account`) {
		t.Fatalf("open-tunnel to a missing thing: %v\n%s", err, stderr)
	}
}

// skipOutsideCI skips on a developer machine that lacks a client, but fails
// in CI, where .ci/run installs every client the tests drive.
func skipOutsideCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
