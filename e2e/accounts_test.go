package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A second account, as the README's Accounts section sets it up: the admin
// creates it into a profile of the credentials file, the account uses its
// profile with the AWS CLIs and with warren, its tunnel carries traffic
// between two local proxies, and deleting the account disconnects both and
// refuses its keys.
func TestSecondAccount(t *testing.T) {
	s := startService(t)
	var alice struct{ AccountID, AccountName, AccessKeyID, SecretAccessKey string }
	s.warren(t, &alice, "create-account", "--account-name", "alice", "--bandwidth-limit", "4MB",
		"--credentials-file", filepath.Join(s.dir, "credentials"), "--profile", "alice")
	if alice.AccountName != "alice" || len(alice.AccountID) != 12 || alice.SecretAccessKey == "" {
		t.Fatalf("create-account: %+v", alice)
	}
	// AWS_PROFILE=alice: the same environment, signing as alice.
	as := *s
	as.env = append(slices.Clone(s.env), "AWS_PROFILE=alice")

	t.Run("AWS CLI", func(t *testing.T) {
		for name, cli := range awsCLIs(t) {
			var th struct{ ThingArn string }
			as.aws(t, cli, &th, "iot", "create-thing", "--thing-name", "alice-cli-"+name)
			if !strings.Contains(th.ThingArn, ":"+alice.AccountID+":thing/") {
				t.Fatalf("%s: alice's thing %s", name, th.ThingArn)
			}
			var list struct{ TunnelSummaries []struct{ TunnelID string } }
			as.aws(t, cli, &list, "iotsecuretunneling", "list-tunnels")
		}
	})

	device := httpDevice(t, "alice's device")
	tun, ports, src, dst := as.tunnelPair(t, "alice-device", []string{"HTTP"}, []string{device})
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/x", ports[0])); got != "alice's device /x" {
		t.Fatalf("through alice's tunnel: %q", got)
	}
	var mine struct{ TunnelSummaries []struct{ TunnelID string } }
	s.warren(t, &mine, "list-tunnels")
	if len(mine.TunnelSummaries) != 0 {
		t.Fatalf("the admin lists alice's tunnels: %+v", mine)
	}
	var d struct {
		BandwidthLimit int64
		OpenTunnels    int
	}
	s.warren(t, &d, "describe-account", "--account-id", alice.AccountID)
	if d.BandwidthLimit != 4_000_000 || d.OpenTunnels != 1 {
		t.Fatalf("describe-account: %+v", d)
	}
	if _, stderr, err := as.run(bin.warren, "list-accounts"); err == nil || !strings.Contains(stderr, "AccessDeniedException") {
		t.Fatalf("alice lists accounts: %v %s", err, stderr)
	}

	s.warren(t, nil, "delete-account", "--account-id", alice.AccountID)
	waitFor(t, 10*time.Second, "both of alice's local proxies to exit", func() bool { return src.exited() && dst.exited() })
	if out := s.p.output(); strings.Contains(out, "level=ERROR") {
		t.Errorf("the server logged errors:\n%s", out)
	}
	if _, stderr, err := as.run(bin.warren, "describe-tunnel", "--tunnel-id", tun.TunnelID); err == nil || !strings.Contains(stderr, "UnrecognizedClientException") {
		t.Fatalf("alice's keys after delete-account: %v %s", err, stderr)
	}
}
