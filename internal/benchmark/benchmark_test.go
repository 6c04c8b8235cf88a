package benchmark

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFloorChain runs the three hops in this process (so the race detector
// sees them) and checks that bytes, echoes, many connections and half
// closes all make it through two TLS legs.
func TestFloorChain(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := writeChainCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	sinkT, err := startTarget(sink)
	if err != nil {
		t.Fatal(err)
	}
	defer sinkT.close()
	echoT, err := startTarget(echo)
	if err != nil {
		t.Fatal(err)
	}
	defer echoT.close()

	ctx, cancel := context.WithCancel(context.Background())
	var hops sync.WaitGroup
	defer func() {
		cancel()
		hops.Wait()
	}()
	to := []string{sinkT.addr(), echoT.addr()}
	for _, mode := range []string{hopDestination, hopRelay, hopSource} {
		h, err := newHop(mode, to, certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if to, err = h.listen(); err != nil {
			t.Fatal(err)
		}
		hops.Go(func() { h.serve(ctx) })
	}

	if _, err := bulk(ctx, to[0], 4, 8<<20); err != nil {
		t.Fatalf("bulk through the chain: %v", err)
	}
	if rtts, err := roundTrips(ctx, to[1], 50, time.Minute); err != nil || len(rtts) != 50 {
		t.Fatalf("round trips through the chain: %d, %v", len(rtts), err)
	}
	if ok, _, err := simultaneous(ctx, to[1], 50); ok != 50 {
		t.Fatalf("%d of 50 simultaneous echoes through the chain: %v", ok, err)
	}
	// A half close travels the whole chain: the echo server sees EOF, ends
	// its copy, and its close comes back as EOF after the echo.
	c, err := net.Dial("tcp", to[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	msg := bytes.Repeat([]byte("warren "), 10000)
	go func() {
		c.Write(msg)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo after half close: %d of %d bytes, %v", len(got), len(msg), err)
	}
}

func TestCountsFromProc(t *testing.T) {
	pid := os.Getpid()
	if cpu, err := cpuSeconds(pid); err != nil || cpu < 0 {
		t.Errorf("cpuSeconds = %v, %v", cpu, err)
	}
	if rss, err := rssKiB(pid); err != nil || rss <= 0 {
		t.Errorf("rssKiB = %v, %v", rss, err)
	}
	if n, err := fdCount(pid); err != nil || n < 3 {
		t.Errorf("fdCount = %v, %v", n, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if !listening(port) {
		t.Errorf("listening(%d) = false for an open listener", port)
	}
	ln.Close()
	if listening(port) {
		t.Errorf("listening(%d) = true after close", port)
	}
}

// TestQuickRun builds warren and runs `warren bench --quick` for real:
// every row is there, every figure and ratio is a positive number, and
// every check passed. Its nodes rows need PostgreSQL ($WARREN_TEST_POSTGRES
// or the default), which CI runs.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole quick bench (about 30 s)")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "warren")
	build := exec.Command("go", "build", "-o", exe, "../../cmd/warren")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	jsonFile := filepath.Join(dir, "bench.json")
	cmd := exec.CommandContext(ctx, exe, "bench", "--quick", "--json", jsonFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("warren bench --quick: %v\n%s", err, stderr.String())
	}
	data, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var tab Table
	if err := json.Unmarshal(data, &tab); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bulk throughput, 1 conn", "bulk throughput, 16 conn", "CPU per GB, 1 conn", "CPU per GB, 16 conn",
		"RSS after bulk, source side", "RSS after bulk, relay", "RSS after bulk, destination side",
		"64 B round trip, p50", "64 B round trip, p99", "connect to first byte, p50", "connect to first byte, p99",
		"64 B round trip, 8 bulk conns, p50", "64 B round trip, 8 bulk conns, p99",
		"100 simultaneous echoes, run 1", "100 simultaneous echoes, run 2",
		"page + 100 resources, 1 conn", "page + 100 resources, 16 conn",
		"bulk throughput, 1 conn, same node", "bulk throughput, 1 conn, cross node",
		"CPU per GB, 1 conn, same node", "CPU per GB, 1 conn, cross node",
		"64 B round trip, same node, p50", "64 B round trip, cross node, p50",
		"64 B round trip, same node, p99", "64 B round trip, cross node, p99",
		"server RSS per open tunnel", "server RSS per idle connected tunnel",
	}
	if len(tab.Rows) != len(want) {
		t.Errorf("%d rows, want %d", len(tab.Rows), len(want))
	}
	for i, r := range tab.Rows {
		if i < len(want) && !strings.HasPrefix(r.Name, want[i]) {
			t.Errorf("row %d is %q, want %q", i, r.Name, want[i])
		}
		if !strings.Contains(stdout.String(), r.Name) {
			t.Errorf("the printed table has no row %q", r.Name)
		}
		if !r.OK {
			t.Errorf("%s: check failed: %s", r.Name, r.Note)
		}
		for name, v := range map[string]*float64{"warren": r.Warren, "direct": r.Direct, "floor": r.Floor,
			"warren/floor": r.WarrenPerFloor, "warren/direct": r.WarrenPerDirect} {
			if v != nil && *v <= 0 {
				t.Errorf("%s: %s = %v, want a positive number", r.Name, name, *v)
			}
		}
		if r.Warren == nil {
			t.Errorf("%s: no figure for warren", r.Name)
		}
		// Every row compares Warren with something, except the server's
		// memory per tunnel, which only Warren has.
		if r.WarrenPerFloor == nil && !strings.HasPrefix(r.Name, "server RSS") {
			t.Errorf("%s: no warren/floor ratio", r.Name)
		}
	}
}
