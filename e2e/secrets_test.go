package e2e

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A whole session at the highest log verbosity of every process (`warren
// serve --log-level debug`, the local proxies at -v 6): a second account
// made with create-account, a thing and a tunnel through the AWS CLI, both
// local proxies carrying bytes (one given its token with -t, the other in
// the environment), a local proxy and a bare handshake with a wrong token,
// a rotation of both tokens and both proxies back with the new ones, then
// the tunnel's close. No log, no error output and no output of a command
// that is not there to show a secret contains a secret: an access token
// (old, rotated or wrong), a secret access key or a private key; and the
// store's files hold no access token in clear.
func TestSecretsNeverLogged(t *testing.T) {
	clis := awsCLIs(t)
	cli, ok := clis["v2"]
	if !ok {
		cli = clis["v1"]
	}
	s := startService(t)
	var outputs []named // every output to search
	var procs []*proc   // their output is searched once they are stopped
	mayFail := false
	run := func(secretStdout bool, path string, args ...string) string {
		t.Helper()
		if path != bin.warren && cli[0] == "/usr/bin/aws" {
			args = append(args, "--endpoint-url", "https://"+s.addr)
		}
		if path != bin.warren {
			path, args = cli[0], append(slices.Clone(cli[1:]), args...)
		}
		stdout, stderr, err := s.run(path, args...)
		name := filepath.Base(path) + " " + strings.Join(args[:min(2, len(args))], " ")
		outputs = append(outputs, named{name + " (stderr)", stderr})
		if !secretStdout {
			outputs = append(outputs, named{name + " (stdout)", stdout})
		}
		if err != nil && !mayFail {
			t.Fatalf("%s: %v\n%s%s", name, err, stdout, stderr)
		}
		return stdout
	}
	decode := func(out string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
	}

	var bob struct{ AccessKeyID, SecretAccessKey string }
	decode(run(true, bin.warren, "create-account", "--account-name", "bob",
		"--credentials-file", filepath.Join(s.dir, "credentials"), "--profile", "bob"), &bob)
	s.env = append(s.env, "AWS_PROFILE=bob")
	run(false, "aws", "iot", "create-thing", "--thing-name", "secret-dev")
	var tun openTunnelOut
	decode(run(true, "aws", "iotsecuretunneling", "open-tunnel", "--destination-config", "thingName=secret-dev,services=ECHO"), &tun)

	device := echoDevice(t)
	port := freePort(t)
	startPair := func(tok openTunnelOut) (*proc, *proc) {
		t.Helper()
		ca := filepath.Join(s.dir, "ca.pem")
		dst := start(t, "destination localproxy -v 6", nil, bin.localproxy,
			"-e", s.addr, "-c", ca, "-v", "6", "-d", "ECHO="+device, "-t", tok.DestinationAccessToken)
		src := start(t, "source localproxy -v 6", []string{"AWSIOT_TUNNEL_ACCESS_TOKEN=" + tok.SourceAccessToken}, bin.localproxy,
			"-e", s.addr, "-c", ca, "-v", "6", "-s", fmt.Sprintf("ECHO=%d", port))
		procs = append(procs, dst, src)
		waitPort(t, port)
		waitFor(t, 20*time.Second, "both peers connected", func() bool {
			var d describeOut
			s.warren(t, &d, "describe-tunnel", "--tunnel-id", tok.TunnelID)
			return d.Tunnel.SourceConnectionState.Status == "CONNECTED" && d.Tunnel.DestinationConnectionState.Status == "CONNECTED"
		})
		echoThrough(t, port, "through the tunnel with tokens "+tok.TunnelID)
		return src, dst
	}
	src, dst := startPair(tun)

	// A wrong token, from a local proxy and from a bare handshake.
	wrong := "AQGAAXiWrongTokenForTheSecretsTest0123456789abcdefABCDEF"
	bad := start(t, "localproxy with a wrong token (-v 6)", nil, bin.localproxy,
		"-e", s.addr, "-c", filepath.Join(s.dir, "ca.pem"), "-v", "6", "-s", fmt.Sprint(freePort(t)), "-t", wrong)
	procs = append(procs, bad)
	waitFor(t, 20*time.Second, "the local proxy with the wrong token to be refused", func() bool {
		return strings.Contains(bad.output(), "access token is not valid")
	})
	h := newHostileTLS(t, s)

	if _, err := h.refusedUpgrade("source", wrong+"-bare", nil, 401); err != nil {
		t.Fatal(err)
	}

	// Rotation: both proxies are told to go; new ones connect with the new tokens.
	var rot rotateOut
	decode(run(true, "aws", "iotsecuretunneling", "rotate-tunnel-access-token", "--tunnel-id", tun.TunnelID,
		"--client-mode", "ALL", "--destination-config", "thingName=secret-dev,services=ECHO"), &rot)
	for _, p := range []*proc{src, dst} {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s still runs after its token was rotated", p.name)
		}
	}
	rotated := openTunnelOut{TunnelID: tun.TunnelID, SourceAccessToken: rot.SourceAccessToken, DestinationAccessToken: rot.DestinationAccessToken}
	startPair(rotated)

	run(false, bin.warren, "describe-tunnel", "--tunnel-id", tun.TunnelID)
	run(false, "aws", "iotsecuretunneling", "list-tunnels")
	run(false, bin.warren, "close-tunnel", "--tunnel-id", tun.TunnelID)
	// Error output too: calls the server refuses.
	mayFail = true
	run(false, "aws", "iotsecuretunneling", "rotate-tunnel-access-token", "--tunnel-id", tun.TunnelID, "--client-mode", "ALL")
	run(false, bin.warren, "rotate-tunnel-access-token", "--tunnel-id", tun.TunnelID, "--client-mode", "SOURCE")
	run(false, "aws", "iotsecuretunneling", "describe-tunnel", "--tunnel-id", "no-such-tunnel")
	for _, p := range procs {
		p.stop()
		outputs = append(outputs, named{p.name, p.output()})
	}
	s.p.stop()
	outputs = append(outputs, named{"warren serve --log-level debug", s.p.output()})

	secrets := []named{
		{"the source access token", tun.SourceAccessToken},
		{"the destination access token", tun.DestinationAccessToken},
		{"the rotated source access token", rot.SourceAccessToken},
		{"the rotated destination access token", rot.DestinationAccessToken},
		{"the wrong access token", wrong},
		{"bob's secret access key", bob.SecretAccessKey},
		{"the admin's secret access key", adminSecret(t, s.dir)},
	}
	for _, f := range []string{"server-key.pem", "ca-key.pem"} {
		secrets = append(secrets, privateKeyParts(t, filepath.Join(s.dir, f))...)
	}
	for _, sec := range secrets {
		if len(sec.text) < 16 {
			t.Fatalf("%s is only %q", sec.name, sec.text)
		}
	}
	total := 0
	for _, out := range outputs {
		total += len(out.text)
		for _, sec := range secrets {
			if i := strings.Index(out.text, sec.text); i >= 0 {
				t.Errorf("the output of %s contains %s: ...%s...", out.name, sec.name,
					out.text[max(0, i-200):i])
			}
		}
	}
	t.Logf("searched %d outputs (%d bytes) for %d secrets", len(outputs), total, len(secrets))

	// The store keeps only the tokens' hashes. (It must keep the secret
	// access keys themselves: SigV4 signatures are checked with them.)
	dbFiles, _ := filepath.Glob(filepath.Join(s.dir, "warren.db*"))
	if len(dbFiles) == 0 {
		t.Fatal("no store files in the data directory")
	}
	for _, f := range dbFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, sec := range secrets[:4] {
			if strings.Contains(string(b), sec.text) {
				t.Errorf("the store's file %s holds %s in clear", filepath.Base(f), sec.name)
			}
		}
	}
	// The logs were as verbose as they get: the search means something.
	for _, out := range outputs {
		if strings.HasPrefix(out.name, "warren serve") && !strings.Contains(out.text, "level=DEBUG") ||
			strings.HasSuffix(out.name, "-v 6") && !strings.Contains(out.text, "level=DEBUG") {
			t.Errorf("%s logged nothing at debug level:\n%s", out.name, out.text)
		}
	}
}

type named struct{ name, text string }

// echoThrough sends a line through the source proxy on port and expects it back.
func echoThrough(t *testing.T, port int, line string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintln(c, line)
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(got) != line {
		t.Fatalf("echo through the tunnel: %q, %v", got, err)
	}
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
}

// adminSecret reads the admin's secret access key from the credentials file.
func adminSecret(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "aws_secret_access_key" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no aws_secret_access_key in the credentials file")
	return ""
}

// privateKeyParts are the lines of a PEM private key's base64 body: none
// may appear in any output (a line is 64 characters).
func privateKeyParts(t *testing.T, path string) []named {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || !strings.Contains(blk.Type, "PRIVATE KEY") {
		t.Fatalf("%s is not a PEM private key", path)
	}
	var parts []named
	for i, line := range strings.Split(string(b), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			parts = append(parts, named{fmt.Sprintf("line %d of %s", i+1, filepath.Base(path)), line})
		}
	}
	return parts
}
