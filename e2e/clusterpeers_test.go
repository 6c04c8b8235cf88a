package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
	"github.com/warrentunnel/warren/internal/demo"
)

// The cluster's data path: tunnels whose two local proxies are on
// different nodes, a node SIGKILLed under them, and the API of one node
// cutting peers held by the others.

// clusterTunnel is a tunnel with a destination and a source local proxy
// connected through HAProxy, serving BULK (the clusterDevice) and HTTP
// (the demo device's page) on the source's ports.
type clusterTunnel struct {
	tun        openTunnelOut
	bulk, http int
	src, dst   *proc
}

// Fifty tunnels opened through HAProxy, a destination and a source local
// proxy each, all through HAProxy: round robin spreads the 100 proxies
// over the three nodes, so that many tunnels have their sides on
// different nodes. Every tunnel carries a SHA-checked transfer both ways
// and a page load with parallel connections. Then node 2 is SIGKILLed
// while downloads flow: those across it end with a reset, those of
// tunnels not on it carry on, and every tunnel carries a new SHA-checked
// transfer within 10 s.
func TestClusterFiftyTunnels(t *testing.T) {
	const (
		tunnels      = 50
		echoSize     = 256 << 10
		recoverLimit = 10 * time.Second
	)
	began := time.Now()
	c := startCluster(t)
	dev := clusterDevice(t)
	web, err := demo.StartDevice(20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(web.Close)

	// Open the tunnels through HAProxy with the Go SDK (100 admin commands
	// would take a minute on a busy machine), a new connection for every
	// request: the API calls too land on every node.
	api := c.api(t)
	ts := make([]*clusterTunnel, tunnels)
	err = parallel(tunnels, 6, func(i int) error {
		out, err := api.OpenTunnel(&iotsecuretunneling.OpenTunnelInput{
			DestinationConfig: &iotsecuretunneling.DestinationConfig{Services: aws.StringSlice([]string{"BULK", "HTTP"})}})
		if err != nil {
			return fmt.Errorf("OpenTunnel %d: %w", i, err)
		}
		ts[i] = &clusterTunnel{tun: openTunnelOut{TunnelID: aws.StringValue(out.TunnelId), TunnelArn: aws.StringValue(out.TunnelArn),
			SourceAccessToken: aws.StringValue(out.SourceAccessToken), DestinationAccessToken: aws.StringValue(out.DestinationAccessToken)}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("50 tunnels opened through HAProxy %v after the start", time.Since(began).Round(time.Millisecond))
	// The source proxies listen on ports they pick (port 0) and log: ports
	// picked free beforehand may be taken, while a hundred proxies start,
	// by the many connections of the test.
	ca := filepath.Join(c.lb.dir, "ca.pem")
	var procs []*proc
	for _, ct := range ts {
		ct.dst = start(t, "destination localproxy "+ct.tun.TunnelID, nil, bin.localproxy, "-e", c.lb.addr, "-c", ca,
			"-d", "BULK="+dev+",HTTP="+web.Addr(), "-t", ct.tun.DestinationAccessToken)
		ct.src = start(t, "source localproxy "+ct.tun.TunnelID, nil, bin.localproxy, "-e", c.lb.addr, "-c", ca,
			"-s", "BULK=0,HTTP=0", "-t", ct.tun.SourceAccessToken)
		procs = append(procs, ct.dst, ct.src)
	}
	// Stop them all at once at the end: one after the other takes minutes.
	t.Cleanup(func() { stopAll(procs) })
	waitFor(t, 60*time.Second, "the source local proxies to listen", func() bool {
		for _, ct := range ts {
			if ct.bulk == 0 || ct.http == 0 {
				ports := listening(ct.src)
				ct.bulk, ct.http = ports["BULK"], ports["HTTP"]
				if ct.bulk == 0 || ct.http == 0 {
					return false
				}
			}
		}
		return true
	})
	perNode := c.waitPeers(t, 2*tunnels, 60*time.Second, 0, 1, 2)
	for i, n := range c.nodes {
		if perNode[i] == 0 {
			t.Errorf("%s holds no peer", n.id)
		}
	}
	holders := c.holders(t)
	cross, onN2 := 0, []int{}
	var bystanders []int // tunnels with no side on n2
	for i, ct := range ts {
		h := holders[ct.tun.TunnelID]
		if h["source"] == "" || h["destination"] == "" {
			t.Fatalf("tunnel %d: no node logged its sides' connections: %v", i, h)
		}
		if h["source"] != h["destination"] {
			cross++
		}
		if h["source"] == "n2" || h["destination"] == "n2" {
			onN2 = append(onN2, i)
		} else {
			bystanders = append(bystanders, i)
		}
	}
	t.Logf("100 local proxies connected %v after the start: %v peers on n1, n2, n3; %d of %d tunnels have their sides on different nodes",
		time.Since(began).Round(time.Millisecond), perNode, cross, tunnels)
	if cross < 10 {
		t.Fatalf("only %d tunnels have their sides on different nodes", cross)
	}

	// Every tunnel: 256 KiB each way, SHA-checked, and a page with 20
	// resources over 4 parallel connections.
	// A tunnel that fails is reported, and the test goes on to the kill
	// with the others, so that one run tells all it can.
	traffic := time.Now()
	trafficErr := make([]error, tunnels)
	parallel(tunnels, 8, func(i int) error {
		ct := ts[i]
		if err := shaEcho(ct.bulk, echoSize, 30*time.Second); err != nil {
			trafficErr[i] = fmt.Errorf("echo: %w", err)
		} else if _, err := demo.LoadPage(context.Background(), fmt.Sprintf("http://127.0.0.1:%d", ct.http), 4); err != nil {
			trafficErr[i] = fmt.Errorf("page: %w", err)
		}
		return nil
	})
	var failed []string
	for i, err := range trafficErr {
		if err != nil {
			id := ts[i].tun.TunnelID
			failed = append(failed, fmt.Sprintf("tunnel %d %s, sides %v: %v", i, id, holders[id], err))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d tunnels failed their transfer or page:\n%s", len(failed), strings.Join(failed, "\n"))
	}
	t.Logf("50 tunnels each carried 256 KiB each way (SHA-256 checked) and a 21-request page in %v (%d failed)",
		time.Since(traffic).Round(time.Millisecond), len(failed))
	works := func(i int) bool { return trafficErr[i] == nil }
	heldByN2 := len(onN2)
	onN2 = slices.DeleteFunc(onN2, func(i int) bool { return !works(i) })
	bystanders = slices.DeleteFunc(bystanders, func(i int) bool { return !works(i) })

	// Node 2 dies while downloads flow through tunnels with a side on it
	// and through tunnels without.
	var cut, kept []*download
	for _, i := range onN2[:min(10, len(onN2))] {
		cut = append(cut, startDownload(t, ts[i].bulk))
	}
	for _, i := range bystanders[:min(5, len(bystanders))] {
		kept = append(kept, startDownload(t, ts[i].bulk))
	}
	for i, d := range append(slices.Clone(cut), kept...) {
		d.flowing(t, fmt.Sprintf("download %d before the kill", i))
	}
	c.nodes[1].kill()
	killed := time.Now()

	// Every tunnel, at once: new connections until one carries a
	// SHA-checked transfer.
	recovered := make([]time.Duration, tunnels)
	lastErr := make([]error, tunnels)
	parallel(tunnels, tunnels, func(i int) error {
		for time.Since(killed) < recoverLimit+5*time.Second {
			if lastErr[i] = shaEcho(ts[i].bulk, 64<<10, 2*time.Second); lastErr[i] == nil {
				recovered[i] = time.Since(killed)
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return lastErr[i]
	})
	if slices.Contains(recovered, 0) {
		// Where each side is now: which moves of a side fail.
		after := c.holders(t)
		var failed []string
		for i, d := range recovered {
			if d == 0 {
				id := ts[i].tun.TunnelID
				failed = append(failed, fmt.Sprintf("tunnel %d %s: sides before the kill %v, now %v: %v", i, id, holders[id], after[id], lastErr[i]))
			}
		}
		t.Fatalf("%d tunnels carry no transfer %v after the kill:\n%s", len(failed), recoverLimit+5*time.Second, strings.Join(failed, "\n"))
	}
	worst := slices.Max(recovered)
	sorted := slices.Clone(recovered)
	slices.Sort(sorted)
	t.Logf("after SIGKILL of n2 (which held sides of %d tunnels): every tunnel carried a new SHA-checked transfer within %v (median %v)",
		heldByN2, worst.Round(time.Millisecond), sorted[len(sorted)/2].Round(time.Millisecond))
	if worst > recoverLimit {
		t.Errorf("the last tunnel worked again %v after the kill, more than %v", worst, recoverLimit)
	}
	for i, d := range cut {
		d.wasReset(t, fmt.Sprintf("download %d across n2", i), time.Second)
	}
	for i, d := range kept {
		select {
		case <-d.done:
			t.Fatalf("download %d on a tunnel without a side on n2 ended after the kill: %v", i, d.err)
		default:
		}
		d.flowing(t, fmt.Sprintf("download %d on a tunnel without a side on n2, after the kill", i))
	}
	c.waitPeers(t, 2*tunnels, 20*time.Second, 0, 2)
	if st, err := c.serverStates(); err != nil || st["n2"].status == "UP" {
		t.Errorf("HAProxy's view of n2 after its death: %+v (%v)", st["n2"], err)
	}
	for _, ct := range ts {
		if ct.src.exited() || ct.dst.exited() {
			t.Fatalf("a local proxy of tunnel %s exited", ct.tun.TunnelID)
		}
	}

	// n2 comes back on its port and data directory: HAProxy takes it in
	// again, and a tunnel with a side on it carries data across.
	c.nodes[1].restart(t)
	waitFor(t, 10*time.Second, "HAProxy to see n2 up again", func() bool {
		st, err := c.serverStates()
		return err == nil && st["n2"].status == "UP"
	})
	_, port, _, _ := c.crossPair(t, "after-restart", "BULK", dev, 1, 0)
	if err := shaEcho(port, echoSize, 20*time.Second); err != nil {
		t.Fatalf("a tunnel from the restarted n2 to n1: %v", err)
	}
	t.Logf("the whole test took %v", time.Since(began).Round(time.Millisecond))
}

// listenLine is a source local proxy's log line of a port it listens on.
var listenLine = regexp.MustCompile(`msg=listening service=(\S+) addr=127\.0\.0\.1:(\d+)`)

// listening is the ports the source local proxy p said it listens on, by
// service.
func listening(p *proc) map[string]int {
	ports := map[string]int{}
	for _, m := range listenLine.FindAllStringSubmatch(p.output(), -1) {
		ports[m[1]], _ = strconv.Atoi(m[2])
	}
	return ports
}

// stopAll stops the processes at once and waits for them.
func stopAll(ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// waitPeers waits until the given nodes hold want local proxies in all
// and returns how many each holds.
func (c *cluster) waitPeers(t *testing.T, want int, within time.Duration, nodes ...int) []int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var per []int
		sum := 0
		for _, i := range nodes {
			per = append(per, c.nodes[i].peers(t))
			sum += per[len(per)-1]
		}
		if sum == want {
			return per
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the nodes %v hold %v local proxies, want %d in all", within, nodes, per, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// crossPair opens a tunnel through HAProxy with service svc and connects
// its source local proxy straight to node si and its destination straight
// to node di, and checks from the nodes' logs that they are there.
func (c *cluster) crossPair(t *testing.T, thing, svc, target string, si, di int) (openTunnelOut, int, *proc, *proc) {
	t.Helper()
	tun := c.lb.openTunnel(t, thing, svc)
	port, src, dst := c.lb.pairVia(t, tun, svc, target, c.nodes[si].addr, c.nodes[di].addr)
	if h := c.holders(t)[tun.TunnelID]; h["source"] != c.nodes[si].id || h["destination"] != c.nodes[di].id {
		t.Fatalf("the tunnel's sides are on %v, want the source on %s and the destination on %s", h, c.nodes[si].id, c.nodes[di].id)
	}
	return tun, port, src, dst
}

// A tunnel whose source is on node 2 and destination on node 3 carries
// data across; close-tunnel through node 1's API ends both local proxies
// (a close frame: they exit rather than reconnect) and the transfer in
// flight within a few seconds, and node 3 describes the tunnel closed.
func TestClusterCloseCutsPeersOnOtherNodes(t *testing.T) {
	const limit = 5 * time.Second
	c := startCluster(t)
	dev := clusterDevice(t)
	tun, port, src, dst := c.crossPair(t, "closing", "BULK", dev, 1, 2)
	if err := shaEcho(port, 1<<20, 20*time.Second); err != nil {
		t.Fatalf("across n2 and n3: %v", err)
	}
	d := startDownload(t, port)
	d.flowing(t, "a download across n2 and n3")

	// Timed from the command's start: the admin command's own process
	// takes a good part of a second.
	closed := time.Now()
	c.direct(0).warren(t, nil, "close-tunnel", "--tunnel-id", tun.TunnelID)
	for _, p := range []*proc{src, dst} {
		select {
		case <-p.done:
		case <-time.After(limit - time.Since(closed)):
			t.Fatalf("%s still runs %v after close-tunnel through n1", p.name, limit)
		}
		if out := p.output(); !strings.Contains(out, "tunnel closed") && !strings.Contains(out, "tunnel is closed") {
			t.Errorf("%s did not say the tunnel closed", p.name)
		}
	}
	t.Logf("both local proxies exited within %v of the start of close-tunnel through n1", time.Since(closed).Round(time.Millisecond))
	select {
	case <-d.done:
	case <-time.After(limit - time.Since(closed)):
		t.Fatalf("the download is still open %v after close-tunnel", limit)
	}
	if got := describe(t, c.direct(2), tun.TunnelID).Tunnel; got.Status != "CLOSED" ||
		got.SourceConnectionState.Status != "DISCONNECTED" || got.DestinationConnectionState.Status != "DISCONNECTED" {
		t.Fatalf("n3 describes the closed tunnel as %+v", got)
	}
}

// A tunnel whose source is on node 2 and destination on node 3; rotating
// the destination's token through node 1's API ends the destination's
// local proxy (on its close frame) within a few seconds and a connection
// in flight, keeps the source, and a destination with the new token (now
// through HAProxy) makes the tunnel work again.
func TestClusterRotateCutsPeersOnOtherNodes(t *testing.T) {
	const limit = 5 * time.Second
	c := startCluster(t)
	device := httpDevice(t, "hello from rotating")
	tun, port, src, dst := c.crossPair(t, "rotating", "HTTP", device, 1, 2)
	r := &rotation{s: c.lb, tun: tun, device: device, port: port, src: src, dst: dst}
	r.get(t)
	held := r.hold(t)

	var out rotateOut
	rotated := time.Now() // the command's start, as above
	c.direct(0).warren(t, &out, "rotate-tunnel-access-token", "--tunnel-id", tun.TunnelID, "--client-mode", "DESTINATION")
	select {
	case <-dst.done:
	case <-time.After(limit - time.Since(rotated)):
		t.Fatalf("the destination on n3 still runs %v after the rotation through n1", limit)
	}
	t.Logf("the destination's local proxy on n3 exited within %v of the start of the rotation through n1", time.Since(rotated).Round(time.Millisecond))
	r.rotated(t, "DESTINATION", out, held)
}
