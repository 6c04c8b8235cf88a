package e2e

import (
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/iot"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
	_ "modernc.org/sqlite"
)

// openStoreReadOnly opens the server's SQLite file read-only, as an
// operator inspecting it would, and checks its integrity.
func (s *service) openStoreReadOnly(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.dir, "warren.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var res string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
		t.Fatalf("PRAGMA integrity_check: %q, %v", res, err)
	}
	return db
}

// SIGTERM: `warren serve` drops its peers (the local proxies see their
// WebSockets end at once, their clients' transfers are reset, and they go
// on trying to reconnect), leaves a consistent store (integrity ok, its
// log checkpointed, no tunnel recorded as connected) and exits with status
// 0 within 5 s.
func TestSIGTERMClosesCleanly(t *testing.T) {
	s := startService(t)
	dev := faultDevice(t)
	_, ports, src, dst := s.tunnelPair(t, "term", []string{"BULK"}, []string{dev})
	var downloads []*download
	for i := range 2 {
		d := startDownload(t, ports[0])
		d.flowing(t, fmt.Sprintf("download %d", i))
		downloads = append(downloads, d)
	}

	start := time.Now()
	s.p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("warren serve still runs 5 s after SIGTERM")
	}
	took := time.Since(start)
	if s.p.err != nil {
		t.Fatalf("warren serve exited with %v after SIGTERM", s.p.err)
	}
	t.Logf("warren serve exited with status 0 %v after SIGTERM", took.Round(time.Millisecond))
	for i, d := range downloads {
		d.wasReset(t, fmt.Sprintf("download %d", i), 5*time.Second)
	}
	if src.exited() || dst.exited() {
		t.Fatal("a local proxy exited; it should keep trying to reconnect")
	}

	if fi, err := os.Stat(filepath.Join(s.dir, "warren.db-wal")); err == nil && fi.Size() > 0 {
		t.Errorf("the write-ahead log holds %d bytes after a clean exit", fi.Size())
	}
	db := s.openStoreReadOnly(t)
	var tunnels, connected int
	if err := db.QueryRow(`SELECT COUNT(*), COALESCE(SUM(json_extract(data, '$.Source.Connected') OR json_extract(data, '$.Destination.Connected')), 0) FROM tunnels`).
		Scan(&tunnels, &connected); err != nil {
		t.Fatal(err)
	}
	if tunnels != 1 || connected != 0 {
		t.Fatalf("after SIGTERM the store has %d tunnels, %d recorded as connected; want 1, 0", tunnels, connected)
	}
}

// sdkSession is an aws-sdk-go (v1) session against s with the admin's
// keys, retrying nothing, so that every success is one acknowledged write.
func (s *service) sdkSession(t *testing.T) *session.Session {
	t.Helper()
	// The SDK trusts AWS_CA_BUNDLE's certificates, and only those, when
	// the variable is set.
	t.Setenv("AWS_CA_BUNDLE", filepath.Join(s.dir, "ca.pem"))
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return session.Must(session.NewSession(&aws.Config{
		Region:      aws.String("us-east-1"),
		Endpoint:    aws.String("https://" + s.addr),
		Credentials: credentials.NewSharedCredentials(filepath.Join(s.dir, "credentials"), "default"),
		HTTPClient:  &http.Client{Transport: tr, Timeout: 10 * time.Second},
		MaxRetries:  aws.Int(0),
	}))
}

// The store survives a SIGKILL in the middle of a burst of API writes:
// every thing and tunnel whose create call returned success is there, in
// the SQLite file opened read-only right after the kill (whose integrity
// check is ok) and through the API after a restart.
func TestStoreSurvivesSIGKILLDuringWrites(t *testing.T) {
	const workers = 8
	s := startService(t, "--api-rate", "0", "--max-tunnels-per-account", "0")
	sess := s.sdkSession(t)
	things, tunnels := iot.New(sess), iotsecuretunneling.New(sess)

	var (
		mu         sync.Mutex
		ackThings  []string
		ackTunnels []string
		failed     atomic.Int64
		firstErr   error
		wg         sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		failed.Add(1)
		if firstErr == nil {
			firstErr = err
		}
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				name := fmt.Sprintf("burst-%d-%d", w, i)
				if _, err := things.CreateThing(&iot.CreateThingInput{ThingName: aws.String(name)}); err != nil {
					fail(err)
					return
				}
				mu.Lock()
				ackThings = append(ackThings, name)
				mu.Unlock()
				out, err := tunnels.OpenTunnel(&iotsecuretunneling.OpenTunnelInput{
					DestinationConfig: &iotsecuretunneling.DestinationConfig{ThingName: aws.String(name), Services: aws.StringSlice([]string{"SSH"})},
					Tags:              []*iotsecuretunneling.Tag{{Key: aws.String("burst"), Value: aws.String(name)}},
				})
				if err != nil {
					fail(err)
					return
				}
				mu.Lock()
				ackTunnels = append(ackTunnels, aws.StringValue(out.TunnelId))
				mu.Unlock()
			}
		}()
	}
	waitFor(t, 30*time.Second, "the burst to get going", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if firstErr != nil {
			t.Fatalf("a call failed before the kill: %v", firstErr.(awserr.Error).OrigErr())
		}
		return len(ackTunnels) >= 200
	})
	s.p.kill()
	wg.Wait()
	t.Logf("SIGKILL during the burst: %d things and %d tunnels acknowledged, %d calls in flight failed (%v)",
		len(ackThings), len(ackTunnels), failed.Load(), firstErr)

	db := s.openStoreReadOnly(t)
	for _, name := range ackThings {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM things WHERE name = ?`, name).Scan(&n); err != nil || n != 1 {
			t.Fatalf("acknowledged thing %s: %d rows, %v", name, n, err)
		}
	}
	for _, id := range ackTunnels {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM tunnels WHERE id = ? AND status = 'OPEN'`, id).Scan(&n); err != nil || n != 1 {
			t.Fatalf("acknowledged tunnel %s: %d open rows, %v", id, n, err)
		}
	}
	db.Close()

	s.start(t)
	for _, name := range ackThings {
		if _, err := things.DescribeThing(&iot.DescribeThingInput{ThingName: aws.String(name)}); err != nil {
			t.Fatalf("after the restart, thing %s: %v", name, err)
		}
	}
	for _, id := range ackTunnels {
		d, err := tunnels.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: aws.String(id)})
		if err != nil || aws.StringValue(d.Tunnel.Status) != "OPEN" || len(d.Tunnel.Tags) != 1 {
			t.Fatalf("after the restart, tunnel %s: %v, %v", id, d, err)
		}
	}
}

// A slow consumer (a client that reads its download at 1 KiB/s) beside
// fast downloads of the same tunnel: the fast ones keep their speed while
// it reads, every process's memory stays under a bound, and once the slow
// one closes, the fast ones are at full speed. (TestSlowReaderBesideFastOnes
// covers a client that stops reading and a slow device application.)
func TestSlowConsumerBesideFastOnes(t *testing.T) {
	const (
		fast   = 2
		window = 2 * time.Second
		rssMax = 96.0 // MiB, each process (race-enabled builds)
	)
	s := startService(t)
	dev := faultDevice(t)
	_, ports, src, dst := s.tunnelPair(t, "slow", []string{"BULK"}, []string{dev})
	var downloads []*download
	for i := range fast {
		d := startDownload(t, ports[0])
		d.flowing(t, fmt.Sprintf("download %d", i))
		downloads = append(downloads, d)
	}
	procs := map[string]int{"warren serve": s.p.cmd.Process.Pid, "source": src.cmd.Process.Pid, "destination": dst.cmd.Process.Pid}
	peak := map[string]float64{}
	sample := func() {
		for name, pid := range procs {
			peak[name] = max(peak[name], rssMiB(pid))
		}
	}
	// rate measures the fast downloads' bytes per second over window.
	rate := func() float64 {
		var from int64
		for _, d := range downloads {
			from += d.n.Load()
		}
		start := time.Now()
		for time.Since(start) < window {
			time.Sleep(100 * time.Millisecond)
			sample()
		}
		var to int64
		for _, d := range downloads {
			if isDone(d) {
				t.Fatalf("a fast download ended: %v", d.err)
			}
			to += d.n.Load()
		}
		return float64(to-from) / time.Since(start).Seconds() / 1e6
	}

	alone := rate()
	if alone <= 0 {
		t.Fatal("the fast downloads moved nothing")
	}

	slow, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte{'D'})
	var slowRead atomic.Int64
	slowDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<10)
		var off int64
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for range tick.C {
			n, err := slow.Read(buf)
			for i := range n {
				if buf[i] != byte((off+int64(i))%251) {
					slowDone <- fmt.Errorf("slow reader: byte %d is %d", off+int64(i), buf[i])
					return
				}
			}
			off += int64(n)
			slowRead.Store(off)
			if err != nil {
				slowDone <- nil // closed by the test
				return
			}
		}
	}()
	time.Sleep(time.Second) // its buffers fill at full speed first
	beside := rate()
	slow.Close()
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	// The better of two looks, so that a moment of load elsewhere on the
	// machine is not taken for the slow reader's doing.
	after := max(rate(), rate())

	t.Logf("%d fast downloads: %.0f MB/s alone, %.0f MB/s beside a 1 KiB/s reader (which read %d bytes), %.0f MB/s after it closed",
		fast, alone, beside, slowRead.Load(), after)
	for name, mib := range peak {
		t.Logf("peak RSS of %s: %.1f MiB (bound %.0f MiB)", name, mib, rssMax)
		if mib > rssMax {
			t.Errorf("%s used %.1f MiB, more than %.0f MiB", name, mib, rssMax)
		}
	}
	// Margins for a shared, noisy machine: the windows keep the slow
	// reader's bytes out of the way, so both should be near alone.
	if beside < alone/3 {
		t.Errorf("beside the slow reader the fast downloads fell to %.0f MB/s from %.0f", beside, alone)
	}
	if after < alone/2 {
		t.Errorf("after the slow reader closed the fast downloads moved %.0f MB/s, not back to %.0f", after, alone)
	}
}

func isDone(d *download) bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Tunnels close at the end of their lifetime, decided in one place (the
// expiry sweeper of `warren serve`): one whose lifetime ended while the
// server was down is CLOSED as soon as it is back, and one whose lifetime
// ends while both local proxies carry a transfer is closed at its
// deadline: the transfer is reset, both proxies get the close frame and
// exit, and the API reports it CLOSED. A minute is too long to wait in a
// test, so while the server is stopped the test moves the tunnels'
// creation back in the store, as if that time had passed.
func TestLifetimeEndsWhileConnected(t *testing.T) {
	s := startService(t)
	dev := faultDevice(t)
	var thing map[string]any
	s.warren(t, &thing, "create-thing", "--thing-name", "brief")
	var live, stale openTunnelOut
	for _, out := range []*openTunnelOut{&live, &stale} {
		s.warren(t, out, "open-tunnel", "--destination-config", "thingName=brief,services=BULK",
			"--timeout-config", "maxLifetimeTimeoutMinutes=1")
	}
	port, src, dst := s.pairVia(t, live, "BULK", dev, s.addr, s.addr)
	s.p.stop() // the local proxies wait for it to come back

	const left = 8 * time.Second // of the live tunnel's minute, from now
	deadline := time.Now().Add(left)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.dir, "warren.db"))
	if err != nil {
		t.Fatal(err)
	}
	for id, created := range map[string]time.Time{live.TunnelID: deadline.Add(-time.Minute), stale.TunnelID: time.Now().Add(-time.Hour)} {
		if _, err := db.Exec(`UPDATE tunnels SET created_at = ?, data = json_set(data, '$.CreatedAt', ?) WHERE id = ?`,
			created.UnixNano(), created.UTC().Format(time.RFC3339Nano), id); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s.start(t)

	status := func(id string) string {
		var d describeOut
		s.warren(t, &d, "describe-tunnel", "--tunnel-id", id)
		return d.Tunnel.Status
	}
	if got := status(stale.TunnelID); got != "CLOSED" {
		t.Fatalf("the tunnel whose lifetime ended while the server was down is %s", got)
	}
	s.waitConnected(t, live.TunnelID)
	d := startDownload(t, port)
	d.flowing(t, "the download")
	if time.Until(deadline) < time.Second {
		t.Fatalf("the proxies reconnected too late to see the deadline (%v left)", time.Until(deadline))
	}
	t.Logf("both proxies reconnected and a download flows %v before the deadline", time.Until(deadline).Round(time.Millisecond))
	if got := status(live.TunnelID); got != "OPEN" {
		t.Fatalf("before its deadline the tunnel is %s", got)
	}
	d.wasReset(t, "the download at the deadline", time.Until(deadline)+10*time.Second)
	late := time.Since(deadline)
	t.Logf("the transfer was reset %v after the tunnel's deadline", late.Round(time.Millisecond))
	if late < -500*time.Millisecond {
		t.Fatalf("the tunnel ended %v before its deadline", -late)
	}
	for _, p := range []*proc{src, dst} {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still runs after the tunnel's lifetime ended", p.name)
		}
		// The close frame, or, when a write of the proxy's own met the
		// closed connection first, the refusal of its reconnection (410).
		if out := p.output(); !strings.Contains(out, "tunnel closed") && !strings.Contains(out, "tunnel is closed") {
			t.Errorf("%s did not say the tunnel closed", p.name)
		}
	}
	if got := status(live.TunnelID); got != "CLOSED" {
		t.Fatalf("after its deadline the tunnel is %s", got)
	}
	if !strings.Contains(s.p.output(), "tunnel lifetime reached") {
		t.Error("the server did not log the expiry")
	}
}
