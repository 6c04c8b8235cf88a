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
