package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// awsCLIs are the AWS command lines the tests drive: Debian's v2 package
// (installed by .ci/run) and the v1 that ships with the machine's Python.
func awsCLIs(t *testing.T) map[string][]string {
	clis := map[string][]string{}
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		clis["v2"] = []string{"/usr/bin/aws"}
	} else if os.Getenv("CI") != "" {
		t.Fatal("AWS CLI v2 (/usr/bin/aws from Debian's awscli) is missing; .ci/run installs it")
	}
	if exec.Command("python3", "-c", "import awscli").Run() == nil {
		clis["v1"] = []string{"python3", "-m", "awscli"}
	} else if os.Getenv("CI") != "" {
		t.Fatal("AWS CLI v1 (python3 -m awscli) is missing")
	}
	if len(clis) == 0 {
		t.Skip("no AWS CLI on this machine; run `apt-get install awscli`")
	}
	return clis
}

func (s *service) aws(t *testing.T, cli []string, out any, args ...string) {
	t.Helper()
	args = append(args, "--output", "json")
	if cli[0] == "/usr/bin/aws" {
		// Debian's CLI v2 (2.9) predates AWS_ENDPOINT_URL; v1 uses the variable.
		args = append(args, "--endpoint-url", "https://"+s.addr)
	}
	stdout, stderr, err := s.run(cli[0], append(cli[1:], args...)...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", strings.Join(cli, " "), strings.Join(args, " "), err, stdout, stderr)
	}
	if out != nil && strings.TrimSpace(stdout) != "" {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			t.Fatalf("aws %s: not JSON: %v\n%s", args[0], err, stdout)
		}
	}
}

// Every management operation through the real AWS CLIs, SigV4 over TLS with
// Warren's CA, and a wrong secret refused. The endpoint reaches CLI v1
// through AWS_ENDPOINT_URL and v2 through --endpoint-url.
func TestAWSCLI(t *testing.T) {
	s := startService(t)
	for name, cli := range awsCLIs(t) {
		t.Run(name, func(t *testing.T) {
			thing := "Device-" + name
			var th struct{ ThingName, ThingArn string }
			s.aws(t, cli, &th, "iot", "create-thing", "--thing-name", thing)
			if th.ThingName != thing || !strings.HasPrefix(th.ThingArn, "arn:aws:iot:us-east-1:") {
				t.Fatalf("create-thing: %+v", th)
			}
			var desc struct{ ThingName string }
			s.aws(t, cli, &desc, "iot", "describe-thing", "--thing-name", thing)
			var things struct{ Things []struct{ ThingName string } }
			s.aws(t, cli, &things, "iot", "list-things")
			found := false
			for _, x := range things.Things {
				found = found || x.ThingName == thing
			}
			if !found || desc.ThingName != thing {
				t.Fatalf("thing not listed/described: %+v %+v", things, desc)
			}
			var open openTunnelOut
			s.aws(t, cli, &open, "iotsecuretunneling", "open-tunnel", "--destination-config", "thingName="+thing+",services=SSH,HTTP", "--timeout-config", "maxLifetimeTimeoutMinutes=30", "--description", "from the AWS CLI "+name)
			if open.TunnelID == "" || !strings.HasSuffix(open.TunnelArn, "tunnel/"+open.TunnelID) || open.SourceAccessToken == "" {
				t.Fatalf("open-tunnel: %+v", open)
			}
			var d describeOut
			s.aws(t, cli, &d, "iotsecuretunneling", "describe-tunnel", "--tunnel-id", open.TunnelID)
			if d.Tunnel.Status != "OPEN" || strings.Join(d.Tunnel.DestinationConfig.Services, ",") != "SSH,HTTP" {
				t.Fatalf("describe-tunnel: %+v", d.Tunnel)
			}
			var list struct{ TunnelSummaries []struct{ TunnelID string } }
			s.aws(t, cli, &list, "iotsecuretunneling", "list-tunnels", "--thing-name", thing)
			if len(list.TunnelSummaries) != 1 || list.TunnelSummaries[0].TunnelID != open.TunnelID {
				t.Fatalf("list-tunnels: %+v", list)
			}
			s.aws(t, cli, nil, "iotsecuretunneling", "close-tunnel", "--tunnel-id", open.TunnelID)
			s.aws(t, cli, &d, "iotsecuretunneling", "describe-tunnel", "--tunnel-id", open.TunnelID)
			if d.Tunnel.Status != "CLOSED" {
				t.Fatalf("after close: %+v", d.Tunnel)
			}
			s.aws(t, cli, nil, "iotsecuretunneling", "close-tunnel", "--tunnel-id", open.TunnelID, "--delete")
			_, stderr, err := s.run(cli[0], append(cli[1:], "iotsecuretunneling", "describe-tunnel", "--tunnel-id", open.TunnelID, "--endpoint-url", "https://"+s.addr)...)
			if err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
				t.Fatalf("deleted tunnel still described: %v %s", err, stderr)
			}
			s.aws(t, cli, nil, "iot", "delete-thing", "--thing-name", thing)

			// A wrong secret is refused.
			bad := filepath.Join(t.TempDir(), "credentials")
			os.WriteFile(bad, []byte("[default]\naws_access_key_id = "+s.accessKey(t)+"\naws_secret_access_key = wrongwrongwrong\n"), 0o600)
			cmd := exec.Command(cli[0], append(cli[1:], "iotsecuretunneling", "list-tunnels", "--endpoint-url", "https://"+s.addr)...)
			cmd.Env = append(append(os.Environ(), s.env...), "AWS_SHARED_CREDENTIALS_FILE="+bad)
			outb, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(outb), "InvalidSignatureException") {
				t.Fatalf("wrong secret accepted or unclear: %v %s", err, outb)
			}
		})
	}
}

func (s *service) accessKey(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(s.dir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "aws_access_key_id" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no access key in credentials")
	return ""
}

// boto3, the Python SDK, opens and describes a tunnel.
func TestBoto3(t *testing.T) {
	s := startService(t)
	script := `
import boto3, json
iot = boto3.client("iot")
iot.create_thing(thingName="PyDevice")
st = boto3.client("iotsecuretunneling")
t = st.open_tunnel(destinationConfig={"thingName": "PyDevice", "services": ["HTTP"]})
d = st.describe_tunnel(tunnelId=t["tunnelId"])["tunnel"]
print(json.dumps({"id": t["tunnelId"], "status": d["status"], "thing": d["destinationConfig"]["thingName"]}))
`
	stdout, stderr, err := s.run("python3", "-c", script)
	if err != nil {
		t.Fatalf("boto3: %v\n%s", err, stderr)
	}
	var got struct{ ID, Status, Thing string }
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Status != "OPEN" || got.Thing != "PyDevice" {
		t.Fatalf("boto3 said %q (%v)", stdout, err)
	}
}
