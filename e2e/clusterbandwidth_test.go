package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// An account's bandwidth limit is the account's across the nodes: two of
// its tunnels, each with both peers on a node of its own (n1 and n3, so
// only the store connects them), move no more than the limit together, and
// one alone gets about all of it.
func TestClusterBandwidthLimitAcrossNodes(t *testing.T) {
	const limit = 2_000_000
	c := startCluster(t)
	c.lb.warren(t, nil, "create-account", "--account-name", "limited", "--bandwidth-limit", "2MB",
		"--credentials-file", filepath.Join(c.lb.dir, "credentials"), "--profile", "limited")
	dev := bulkDevice(t, 1<<40)
	var ports []int
	for _, i := range []int{0, 2} {
		s := c.direct(i)
		s.env = append(s.env, "AWS_PROFILE=limited")
		_, p, _, _ := s.tunnelPair(t, fmt.Sprintf("limited-device-%d", i+1), []string{"BULK"}, []string{dev})
		ports = append(ports, p[0])
	}

	const settle, window = 2 * time.Second, 4 * time.Second
	d1 := startDownloads(t, ports[0], 4, 'D')
	d3 := startDownloads(t, ports[1], 4, 'D')
	time.Sleep(settle) // the nodes share out the limit every 0.5 s
	a1, a3 := d1.total(), d3.total()
	time.Sleep(window)
	r1 := float64(d1.total()-a1) / window.Seconds()
	r3 := float64(d3.total()-a3) / window.Seconds()
	both := r1 + r3
	t.Logf("limit %d B/s; tunnel on n1 %.0f B/s, tunnel on n3 %.0f B/s, together %.0f B/s (%.1f%% of the limit)",
		limit, r1, r3, both, 100*both/limit)
	if both > 1.1*limit || both < 0.8*limit {
		t.Errorf("the account's two tunnels on two nodes moved %.0f B/s together, want within 10%% of %d (and at least 80%%)", both, limit)
	}
	if min(r1, r3) < 0.25*limit {
		t.Errorf("one node's tunnel got %.0f B/s of the shared %d", min(r1, r3), limit)
	}

	// n1's tunnel stops: n3's gets the whole limit back.
	d1.stop()
	time.Sleep(settle)
	alone := d3.rate(window)
	t.Logf("the tunnel on n3 alone: %.0f B/s (%.1f%% of the limit)", alone, 100*alone/limit)
	if alone > 1.1*limit || alone < 0.8*limit {
		t.Errorf("alone, the tunnel on n3 moved %.0f B/s, want about %d", alone, limit)
	}
}
