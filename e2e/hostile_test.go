package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/wire"
)

// Bounds of TestHostileClients.
const (
	hostileWorkers  = 16
	hostileTunnels  = 6     // tunnels whose valid tokens the hostile clients use
	hostileRSSBound = 256.0 // MiB; the race-built server peaks near 140
	// legitRate is the pace of each direction of the legitimate transfer,
	// bytes per second: enough to see it go on throughout, little enough
	// to leave the CPU to the hostile clients.
	legitRate = 2 << 20
	// closeWithin is how long the server may take to close a connection
	// whose input was wrong; slowWithin, one that never finished its
	// handshake (the server's handshake and header timeouts are 10 s).
	closeWithin = 20 * time.Second
	slowWithin  = 40 * time.Second
	// lingerWithin bounds the wait of a client the server has no reason
	// to close before its tunnel closes, after the flood.
	lingerWithin = 3 * time.Minute
)

// A running relay under a flood of hostile clients: thousands of malformed
// handshakes and frames (random bytes, wrong and huge lengths, message types
// of the other side, unknown fields, text messages, ping floods,
// handshakes never finished), while a legitimate tunnel carries a transfer
// each way. The transfer arrives intact (SHA-256 of both directions), the
// server's memory stays within a bound, the server closes every hostile
// connection, and its file descriptors and goroutines come back to where
// they were.
func TestHostileClients(t *testing.T) {
	debugAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	t.Setenv("WARREN_DEBUG_ADDR", debugAddr) // only `warren serve` reads it
	// No quota on failed handshakes: this test makes thousands on purpose.
	s := startService(t, "--handshake-failure-rate", "0")
	pid := s.p.cmd.Process.Pid

	results := make(chan hashResult, 2)
	dev := hashDevice(t, results)
	_, ports, _, _ := s.tunnelPair(t, "legit", []string{"DATA"}, []string{dev})
	h := newHostile(t, s)

	time.Sleep(time.Second)
	baseFDList := fdTargets(t, pid)
	baseSockets, baseGoroutines := countSockets(baseFDList), goroutineCount(t, debugAddr)
	baseRSS := rssMiB(pid)
	t.Logf("baseline: %d sockets, %d fds in all, %d goroutines, %.1f MiB RSS", baseSockets, len(baseFDList), baseGoroutines, baseRSS)

	// The legitimate transfer, both ways, until the flood is over.
	legit := startLegit(t, fmt.Sprintf("127.0.0.1:%d", ports[0]))

	var peak atomic.Int64 // KiB
	stopSample := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			if kib := int64(rssMiB(pid) * 1024); kib > peak.Load() {
				peak.Store(kib)
			}
			select {
			case <-stopSample:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	h.flood()
	floodTook := time.Since(start)
	// The connections still open hold valid tokens of the hostile tunnels
	// (each was replaced by the next on its side, the last ones wait):
	// closing the tunnels ends them.
	runAll(t, len(h.tunnels), func(i int) (string, error) {
		_, stderr, err := s.run(bin.warren, "close-tunnel", "--tunnel-id", h.tunnels[i].TunnelID)
		return stderr, err
	})
	h.lingering.Wait()
	t.Logf("%d hostile connections in %v (lingering ones closed after %v)", h.total(), floodTook.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	h.report()

	legit.stop()
	close(stopSample)
	sampler.Wait()
	legit.check(t, results)

	peakMiB := float64(peak.Load()) / 1024
	t.Logf("server RSS: %.1f MiB at the start, %.1f MiB at the peak (bound %.0f MiB)", baseRSS, peakMiB, hostileRSSBound)
	if peakMiB > hostileRSSBound {
		t.Errorf("the server's RSS reached %.1f MiB, more than %.0f MiB", peakMiB, hostileRSSBound)
	}

	// Everything the hostile clients held is released: the server's
	// sockets and goroutines are back where they were. (Its other file
	// descriptors may stay a few more: those of the store's pool of SQLite
	// connections, which the flood of handshakes filled, up to its bound.)
	var sockets, fds, goroutines int
	deadline := time.Now().Add(30 * time.Second)
	for {
		fdList := fdTargets(t, pid)
		sockets, fds, goroutines = countSockets(fdList), len(fdList), goroutineCount(t, debugAddr)
		if sockets <= baseSockets+2 && goroutines <= baseGoroutines+5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("after: %d sockets (baseline %d), %d fds in all (baseline %d), %d goroutines (baseline %d)",
		sockets, baseSockets, fds, len(baseFDList), goroutines, baseGoroutines)
	if sockets > baseSockets+2 || goroutines > baseGoroutines+5 || fds > len(baseFDList)+2*store.MaxConnections {
		t.Errorf("the server holds %d sockets, %d fds and %d goroutines, %d, %d and %d at the start; fds then %q, now %q",
			sockets, fds, goroutines, baseSockets, len(baseFDList), baseGoroutines, baseFDList, fdTargets(t, pid))
	}
	if s.p.exited() {
		t.Fatalf("warren serve exited: %v", s.p.err)
	}
}

// runAll runs n admin commands at once (each is a process that takes a
// while to start), failing the test if one fails.
func runAll(t *testing.T, n int, run func(i int) (stderr string, err error)) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if stderr, err := run(i); err != nil {
				errs[i] = fmt.Errorf("%w: %s", err, stderr)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// countSockets counts the sockets among fdTargets' answer.
func countSockets(targets []string) int {
	n := 0
	for _, l := range targets {
		if strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// fdTargets is what each open file descriptor of process pid refers to.
func fdTargets(t *testing.T, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(filepath.Join(dir, e.Name()))
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// goroutineCount reads a process's goroutine count from its pprof endpoint.
func goroutineCount(t *testing.T, debugAddr string) int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + debugAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total ")))
	if err != nil {
		t.Fatalf("goroutine profile: %q", line)
	}
	return n
}

// hashResult is what the hash device saw of one transfer.
type hashResult struct {
	n   int64
	sum [sha256.Size]byte
}

// hashDevice is a device service for a transfer of unknown length checked
// by SHA-256. 'D' then an 8-byte seed: the device sends the seed's ChaCha8
// stream at legitRate until the client shuts down its side, then shuts down
// its own and reports what it sent on results. 'U': the device reads until
// the client shuts down its side and answers the SHA-256 and length of
// what it read.
func hashDevice(t *testing.T, results chan<- hashResult) string {
	t.Helper()
	return tcpDevice(t, func(c *net.TCPConn) {
		var cmd [1]byte
		if _, err := io.ReadFull(c, cmd[:]); err != nil {
			return
		}
		switch cmd[0] {
		case 'D':
			var seed [8]byte
			if _, err := io.ReadFull(c, seed[:]); err != nil {
				return
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				io.Copy(io.Discard, c)
			}()
			h := sha256.New()
			n, _ := pacedCopy(io.MultiWriter(c, h), seed, done)
			c.CloseWrite()
			select {
			case <-done:
			case <-time.After(closeWithin):
				c.Close()
				<-done
			}
			var r hashResult
			r.n = n
			h.Sum(r.sum[:0])
			results <- r
		case 'U':
			h := sha256.New()
			n, _ := io.Copy(h, c)
			var out [sha256.Size + 8]byte
			h.Sum(out[:0])
			binary.BigEndian.PutUint64(out[sha256.Size:], uint64(n))
			c.Write(out[:])
			c.CloseWrite()
		}
	})
}

// pacedCopy writes seed's ChaCha8 stream to w at legitRate until stop is
// closed or a write fails, and returns how much it wrote.
func pacedCopy(w io.Writer, seed [8]byte, stop <-chan struct{}) (int64, error) {
	var key [32]byte
	copy(key[:], seed[:])
	rng := rand.NewChaCha8(key)
	buf := make([]byte, 32<<10)
	var n int64
	start := time.Now()
	for {
		select {
		case <-stop:
			return n, nil
		default:
		}
		rng.Read(buf)
		m, err := w.Write(buf)
		n += int64(m)
		if err != nil {
			return n, err
		}
		if ahead := time.Duration(float64(n)/legitRate*float64(time.Second)) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
}

// legitTransfer is a download and an upload through the legitimate tunnel.
type legitTransfer struct {
	stopUp   chan struct{}
	down, up net.Conn
	wg       sync.WaitGroup

	downN         int64
	downSum       [sha256.Size]byte
	downErr       error
	upN           int64
	upSum, upEcho [sha256.Size + 8]byte
	upErr         error
	lastProgress  atomic.Int64 // unix nanoseconds of the last byte read
	longestStall  atomic.Int64 // nanoseconds
}

func startLegit(t *testing.T, addr string) *legitTransfer {
	t.Helper()
	l := &legitTransfer{stopUp: make(chan struct{})}
	l.lastProgress.Store(time.Now().UnixNano())
	dial := func(hello []byte) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		return c
	}
	l.down = dial(append([]byte{'D'}, "download"...))
	l.up = dial([]byte{'U'})
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		h := sha256.New()
		buf := make([]byte, 64<<10)
		for {
			n, err := l.down.Read(buf)
			h.Write(buf[:n])
			l.downN += int64(n)
			if n > 0 {
				now := time.Now().UnixNano()
				if gap := now - l.lastProgress.Swap(now); gap > l.longestStall.Load() {
					l.longestStall.Store(gap)
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					l.downErr = err
				}
				break
			}
		}
		h.Sum(l.downSum[:0])
	}()
	go func() {
		defer l.wg.Done()
		h := sha256.New()
		l.upN, l.upErr = pacedCopy(io.MultiWriter(l.up, h), [8]byte{'u', 'p', 'l', 'o', 'a', 'd'}, l.stopUp)
		h.Sum(l.upSum[:0])
		binary.BigEndian.PutUint64(l.upSum[sha256.Size:], uint64(l.upN))
		if l.upErr == nil {
			l.upErr = l.up.(*net.TCPConn).CloseWrite()
		}
		if l.upErr == nil {
			l.up.SetReadDeadline(time.Now().Add(closeWithin))
			_, l.upErr = io.ReadFull(l.up, l.upEcho[:])
		}
	}()
	return l
}

// stop ends both transfers (the download by shutting down the client's
// side, which the device sees) and waits for them.
func (l *legitTransfer) stop() {
	close(l.stopUp)
	l.down.(*net.TCPConn).CloseWrite()
	l.down.SetReadDeadline(time.Now().Add(closeWithin))
	l.wg.Wait()
}

func (l *legitTransfer) check(t *testing.T, results <-chan hashResult) {
	t.Helper()
	t.Logf("legitimate transfer: %d bytes down, %d bytes up; longest pause in the download %v",
		l.downN, l.upN, time.Duration(l.longestStall.Load()).Round(time.Millisecond))
	if l.downErr != nil || l.upErr != nil {
		t.Fatalf("legitimate transfer: download %v, upload %v", l.downErr, l.upErr)
	}
	var sent hashResult
	select {
	case sent = <-results:
	case <-time.After(closeWithin):
		t.Fatal("the device did not report its download")
	}
	if sent.n != l.downN || sent.sum != l.downSum {
		t.Errorf("download: the device sent %d bytes with SHA-256 %x, the client got %d with %x", sent.n, sent.sum, l.downN, l.downSum)
	}
	if l.upEcho != l.upSum {
		t.Errorf("upload: the client sent %d bytes with SHA-256 %x, the device got %d with %x",
			l.upN, l.upSum[:sha256.Size], binary.BigEndian.Uint64(l.upEcho[sha256.Size:]), l.upEcho[:sha256.Size])
	}
	if l.downN < 1<<20 || l.upN < 1<<20 {
		t.Errorf("the legitimate transfer hardly moved: %d bytes down, %d up", l.downN, l.upN)
	}
	if stall := time.Duration(l.longestStall.Load()); stall > 15*time.Second {
		t.Errorf("the download stalled for %v", stall)
	}
}

// hostile runs the hostile clients against s and keeps their tally.
type hostile struct {
	t       *testing.T
	s       *service
	tls     *tls.Config
	tunnels []openTunnelOut

	mu       sync.Mutex
	counts   map[string]int
	outcomes map[string]map[string]int // kind -> how the server ended it -> count
	failures []string

	lingering sync.WaitGroup // connections awaited in the background
}

// newHostileTLS is a hostile client of s that trusts its CA, without
// tunnels of its own.
func newHostileTLS(t *testing.T, s *service) *hostile {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &hostile{t: t, s: s, tls: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		counts: map[string]int{}, outcomes: map[string]map[string]int{}}
}

// newHostile is a hostile client of s with hostileTunnels tunnels whose
// valid tokens it abuses.
func newHostile(t *testing.T, s *service) *hostile {
	t.Helper()
	h := newHostileTLS(t, s)
	s.warren(t, nil, "create-thing", "--thing-name", "hostile")
	h.tunnels = make([]openTunnelOut, hostileTunnels)
	runAll(t, len(h.tunnels), func(i int) (string, error) {
		stdout, stderr, err := s.run(bin.warren, "open-tunnel", "--destination-config", "thingName=hostile,services=SSH,HTTP")
		if err == nil {
			err = json.Unmarshal([]byte(stdout), &h.tunnels[i])
		}
		return stderr, err
	})
	// Bind each side's client token first: a hostile client without one
	// must find its token spent, not spend it.
	for i := range h.tunnels {
		for _, mode := range []string{"source", "destination"} {
			ws, err := h.dialValid(i, mode)
			if err != nil {
				t.Fatal(err)
			}
			ws.Close()
		}
	}
	return h
}

// clientToken is the client token of the hostile clients on a side of
// tunnel i: the first binds it, the later ones replace each other.
func clientToken(i int, mode string) string {
	return fmt.Sprintf("hostile-client-token-%02d-%s-0123456789", i, mode)
}

// kind is a sort of hostile client: run does its thing and returns how the
// server ended its connection ("" when the test did not get that far), or
// an error when the server misbehaved. linger: the server has no reason to
// end the connection soon (the client left it waiting), so it is awaited
// in the background.
type kind struct {
	name   string
	count  int
	linger bool
	run    func(h *hostile, rng *rand.Rand) (string, error)
}

func (h *hostile) kinds() []kind {
	return []kind{
		{"tcp: random bytes", 250, false, func(h *hostile, rng *rand.Rand) (string, error) {
			c, err := net.Dial("tcp", h.s.addr)
			if err != nil {
				return "", err
			}
			defer c.Close()
			c.Write(randBytes(rng, 1+rng.IntN(4096)))
			return awaitEnd(c, closeWithin)
		}},
		{"tcp: silent", 60, true, func(h *hostile, rng *rand.Rand) (string, error) {
			c, err := net.Dial("tcp", h.s.addr)
			if err != nil {
				return "", err
			}
			defer c.Close()
			return awaitEnd(c, slowWithin)
		}},
		{"tls: a ClientHello never finished", 40, true, func(h *hostile, rng *rand.Rand) (string, error) {
			c, err := net.Dial("tcp", h.s.addr)
			if err != nil {
				return "", err
			}
			defer c.Close()
			c.Write(append([]byte{0x16, 0x03, 0x01, 0x01, 0xf4}, randBytes(rng, 20)...))
			return awaitEnd(c, slowWithin)
		}},
		{"tls: random bytes", 200, false, func(h *hostile, rng *rand.Rand) (string, error) {
			c, err := h.dialTLS()
			if err != nil {
				return "", err
			}
			defer c.Close()
			c.Write(append(randBytes(rng, 1+rng.IntN(8192)), "\r\n\r\n"...))
			return awaitEnd(c, closeWithin)
		}},
		{"http: head never finished", 60, true, func(h *hostile, rng *rand.Rand) (string, error) {
			c, err := h.dialTLS()
			if err != nil {
				return "", err
			}
			defer c.Close()
			io.WriteString(c, "GET /tunnel?local-proxy-mode=source HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
			return awaitEnd(c, slowWithin)
		}},
		{"http: malformed request", 250, false, func(h *hostile, rng *rand.Rand) (string, error) {
			reqs := []string{
				"GARBAGE\r\n\r\n",
				"GET /tunnel HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
				"GET /tunnel HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\n\r\n",
				"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: " + strings.Repeat("h", 20<<10) + "\r\n\r\n",
				"GET /tunnel?local-proxy-mode=source HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Big: " + strings.Repeat("b", 6<<10) + "\r\n\r\n",
				"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{",
				"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
				"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
				"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
				"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + string(randBytes(rng, 100)),
			}
			c, err := h.dialTLS()
			if err != nil {
				return "", err
			}
			defer c.Close()
			io.WriteString(c, reqs[rng.IntN(len(reqs))])
			return awaitHTTPRefusal(c)
		}},
		{"websocket: unknown access token", 400, false, func(h *hostile, rng *rand.Rand) (string, error) {
			return h.refusedUpgrade(randMode(rng), "AQGAAXi"+base64.RawURLEncoding.EncodeToString(randBytes(rng, 1+rng.IntN(300))), nil, http.StatusUnauthorized)
		}},
		{"websocket: a spent token, no client token", 80, false, func(h *hostile, rng *rand.Rand) (string, error) {
			i, mode := h.bind(rng)
			return h.refusedUpgrade(mode, h.token(i, mode), nil, http.StatusConflict)
		}},
		{"websocket: a wrong client token", 80, false, func(h *hostile, rng *rand.Rand) (string, error) {
			i, mode := h.bind(rng)
			return h.refusedUpgrade(mode, h.token(i, mode), http.Header{"Client-Token": {clientToken(i, mode) + "x"}}, http.StatusConflict)
		}},
		{"websocket: a token of the other side", 60, false, func(h *hostile, rng *rand.Rand) (string, error) {
			i, mode := h.bind(rng)
			other := "source"
			if mode == "source" {
				other = "destination"
			}
			return h.refusedUpgrade(mode, h.token(i, other), nil, http.StatusForbidden)
		}},
		{"websocket: a malformed upgrade", 150, false, func(h *hostile, rng *rand.Rand) (string, error) {
			hdr := http.Header{}
			status := http.StatusBadRequest
			switch rng.IntN(5) {
			case 0:
				hdr.Set("Sec-WebSocket-Protocol", "chat")
			case 1:
				hdr.Set("Sec-WebSocket-Version", "8")
			case 2:
				hdr.Set("Sec-WebSocket-Key", "short")
			case 3:
				hdr["Access-Token"] = []string{"a", "b"}
			case 4:
				hdr.Set("X-Pad", strings.Repeat("p", 5000))
				status = http.StatusRequestHeaderFieldsTooLarge
			}
			return h.refusedUpgrade(randMode(rng), "AQGAAXi-not-a-token", hdr, status)
		}},
		// With a valid token: each of these replaces the previous client
		// on its side of its tunnel.
		{"frame: undecodable protobuf", 80, false, h.framesKind(closeWithin, func(rng *rand.Rand, mode string) [][]byte {
			body := append([]byte{0x08, 0x01, 0x22, 0xff, 0xff, 0xff}, randBytes(rng, rng.IntN(50))...)
			return [][]byte{prefixed(body)}
		})},
		{"frame: unknown field", 60, false, h.framesKind(closeWithin, func(rng *rand.Rand, mode string) [][]byte {
			body := wire.AppendMessage(nil, &wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "SSH", Payload: []byte("x")})
			body = append(body, 15<<3, 1) // field 15, varint 1
			return [][]byte{prefixed(body)}
		})},
		{"frame: payload larger than the protocol allows", 40, false, h.framesKind(closeWithin, func(rng *rand.Rand, mode string) [][]byte {
			body := wire.AppendMessage(nil, &wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "SSH", Payload: make([]byte, 65000)})
			return [][]byte{prefixed(body)}
		})},
		{"frame: a type of the other side", 100, false, h.framesKind(closeWithin, func(rng *rand.Rand, mode string) [][]byte {
			types := []wire.Type{wire.TypeSessionReset, wire.TypeServiceIDs, wire.TypeLinkCredit}
			if mode == "destination" {
				types = append(types, wire.TypeStreamStart, wire.TypeConnectionStart)
			}
			f, _ := wire.AppendFrame(nil, &wire.Message{Type: types[rng.IntN(len(types))], StreamID: 1, ServiceID: "SSH", AvailableServiceIDs: []string{"SSH"}})
			return [][]byte{f}
		})},
		{"frame: unknown type, stream 0, unknown service", 100, false, h.framesKind(closeWithin, func(rng *rand.Rand, mode string) [][]byte {
			ms := []wire.Message{
				{Type: wire.TypeUnknown, StreamID: 1},
				{Type: wire.Type(77), StreamID: 1, ServiceID: "SSH"},
				{Type: wire.TypeData, StreamID: 0, ServiceID: "SSH", Payload: []byte("x")},
				{Type: wire.TypeData, StreamID: 1, ServiceID: "NOPE", Payload: []byte("x")},
			}
			f, _ := wire.AppendFrame(nil, &ms[rng.IntN(len(ms))])
			return [][]byte{f}
		})},
		{"websocket: a text message", 60, false, h.wsKind(closeWithin, func(rng *rand.Rand, ws *websocket.Conn) error {
			return ws.WriteMessage(websocket.TextMessage, []byte("hello relay"))
		})},
		{"websocket: a message larger than the limit", 30, false, h.wsKind(closeWithin, func(rng *rand.Rand, ws *websocket.Conn) error {
			// Valid DATA frames, more of them than a message may hold.
			f, _ := wire.AppendFrame(nil, &wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "SSH", Payload: make([]byte, 60000)})
			return ws.WriteMessage(websocket.BinaryMessage, bytes.Repeat(f, 3))
		})},
		{"websocket: a frame declaring 2^40 bytes", 40, false, h.wsKind(closeWithin, func(rng *rand.Rand, ws *websocket.Conn) error {
			hdr := []byte{0x82, 0x80 | 127}
			hdr = binary.BigEndian.AppendUint64(hdr, 1<<40)
			hdr = append(hdr, 1, 2, 3, 4) // the mask
			_, err := ws.UnderlyingConn().Write(append(hdr, randBytes(rng, 100)...))
			return err
		})},
		{"websocket: a ping flood", 20, false, h.wsKind(closeWithin, func(rng *rand.Rand, ws *websocket.Conn) error {
			for range 2000 {
				if err := ws.WriteControl(websocket.PingMessage, []byte("1795767944609"), time.Now().Add(closeWithin)); err != nil {
					return nil // closed by the server
				}
			}
			return nil
		})},
		// Left waiting: the server keeps these (a peer may be idle, a frame
		// may span messages) until the next client on the side replaces
		// them or the tunnel closes.
		{"frame: truncated, then silence", 60, true, h.framesKind(lingerWithin, func(rng *rand.Rand, mode string) [][]byte {
			return [][]byte{{0x03, 0xe8, 0x08, 0x01}}
		})},
		{"frame: random bytes", 60, true, h.framesKind(lingerWithin, func(rng *rand.Rand, mode string) [][]byte {
			return [][]byte{randBytes(rng, 1+rng.IntN(2000))}
		})},
		{"websocket: valid token, then silence", 40, true, h.wsKind(lingerWithin, func(rng *rand.Rand, ws *websocket.Conn) error { return nil })},
	}
}

// flood runs every kind's clients, shuffled, on a pool of workers, and
// returns when all but the lingering ones are done.
func (h *hostile) flood() {
	seed := uint64(time.Now().UnixNano())
	h.t.Logf("hostile clients: seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var jobs []kind
	for _, k := range h.kinds() {
		for range k.count {
			jobs = append(jobs, k)
		}
	}
	rng.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	// The slow ones go first, so that their wait overlaps the rest.
	slow := func(k kind) int {
		if k.linger && !strings.Contains(k.name, "token") && !strings.HasPrefix(k.name, "frame") {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(jobs, func(a, b kind) int { return slow(b) - slow(a) })
	ch := make(chan kind)
	var workers sync.WaitGroup
	for w := range hostileWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			wrng := rand.New(rand.NewPCG(seed, uint64(w)+2))
			for k := range ch {
				if k.linger {
					// Each gets a generator of its own: wrng is this worker's.
					krng := rand.New(rand.NewPCG(wrng.Uint64(), wrng.Uint64()))
					h.lingering.Add(1)
					go func() {
						defer h.lingering.Done()
						h.record(k, krng)
					}()
					continue
				}
				h.record(k, wrng)
			}
		}()
	}
	for _, k := range jobs {
		ch <- k
	}
	close(ch)
	workers.Wait()
}

func (h *hostile) record(k kind, rng *rand.Rand) {
	// A kind that failed a few times is not run again: its failures would
	// each wait out their deadline, and the test would outlast its timeout.
	h.mu.Lock()
	skip := h.outcomes[k.name]["FAILED"] >= 3
	h.mu.Unlock()
	how, err := "skipped after 3 failures", error(nil)
	if !skip {
		how, err = k.run(h, rng)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[k.name]++
	if err != nil {
		if len(h.failures) < 20 {
			h.failures = append(h.failures, fmt.Sprintf("%s: %v", k.name, err))
		}
		how = "FAILED"
	}
	if h.outcomes[k.name] == nil {
		h.outcomes[k.name] = map[string]int{}
	}
	h.outcomes[k.name][how]++
}

func (h *hostile) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.counts {
		n += c
	}
	return n
}

// report logs how the server ended each kind's connections and fails the
// test for every one it left open or answered wrongly.
func (h *hostile) report() {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.counts))
	for n := range h.counts {
		names = append(names, n)
	}
	sort.Strings(names)
	failed := 0
	for _, n := range names {
		var parts []string
		for how, c := range h.outcomes[n] {
			parts = append(parts, fmt.Sprintf("%s ×%d", how, c))
		}
		sort.Strings(parts)
		h.t.Logf("  %-50s %4d: %s", n, h.counts[n], strings.Join(parts, ", "))
		failed += h.outcomes[n]["FAILED"]
	}
	for _, f := range h.failures {
		h.t.Error(f)
	}
	// The violations are recognised as such: most of their clients get the
	// close code of their fault (the others were replaced by the next
	// client on their side first, or their close frame was lost to the
	// reset of what the server left unread).
	for name, want := range map[string]struct {
		code  string
		share float64
	}{
		"frame: a type of the other side":                {"close 1002", 0.5},
		"frame: undecodable protobuf":                    {"close 1002", 0.5},
		"frame: unknown field":                           {"close 1002", 0.5},
		"frame: unknown type, stream 0, unknown service": {"close 1002", 0.5},
		"frame: payload larger than the protocol allows": {"close 1009", 0.5},
		"websocket: a frame declaring 2^40 bytes":        {"close 1009", 0.5},
		"websocket: a message larger than the limit":     {"close 1009", 0.5},
		"websocket: a text message":                      {"close 1003", 0.5},
		"websocket: a ping flood":                        {"close 1008", 0.05},
	} {
		got := 0
		for how, c := range h.outcomes[name] {
			if strings.HasPrefix(how, want.code+",") {
				got += c
			}
		}
		if float64(got) < want.share*float64(h.counts[name]) {
			h.t.Errorf("%s: %d of %d got %s, want at least %.0f%%", name, got, h.counts[name], want.code, want.share*100)
		}
	}
	if failed > 0 {
		h.t.Errorf("%d hostile connections were not ended as they should", failed)
	}
}

func (h *hostile) dialTLS() (*tls.Conn, error) {
	d := &net.Dialer{Timeout: closeWithin}
	c, err := tls.DialWithDialer(d, "tcp", h.s.addr, h.tls)
	if err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return c, nil
}

// bind picks a hostile tunnel and side whose token a client token holds.
func (h *hostile) bind(rng *rand.Rand) (int, string) {
	return rng.IntN(len(h.tunnels)), randMode(rng)
}

func (h *hostile) token(i int, mode string) string {
	if mode == "source" {
		return h.tunnels[i].SourceAccessToken
	}
	return h.tunnels[i].DestinationAccessToken
}

func randMode(rng *rand.Rand) string {
	if rng.IntN(2) == 0 {
		return "source"
	}
	return "destination"
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// prefixed puts the 2-byte length prefix before a frame body.
func prefixed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...)
}

// refusedUpgrade sends a WebSocket upgrade by hand and expects the status
// want, then the end of the connection.
func (h *hostile) refusedUpgrade(mode, token string, extra http.Header, want int) (string, error) {
	c, err := h.dialTLS()
	if err != nil {
		return "", err
	}
	defer c.Close()
	hdr := http.Header{
		"Host":                   {h.s.addr},
		"Connection":             {"Upgrade"},
		"Upgrade":                {"websocket"},
		"Sec-Websocket-Version":  {"13"},
		"Sec-Websocket-Key":      {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Protocol": {"aws.iot.securetunneling-3.0"},
		"Access-Token":           {token},
	}
	for k, v := range extra {
		hdr[http.CanonicalHeaderKey(k)] = v
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET /tunnel?local-proxy-mode=%s HTTP/1.1\r\n", mode)
	hdr.Write(&b)
	b.WriteString("\r\n")
	if _, err := c.Write(b.Bytes()); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(closeWithin))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", fmt.Errorf("no answer to the upgrade: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return "", fmt.Errorf("upgrade answered %d, want %d", resp.StatusCode, want)
	}
	how, err := awaitEnd(readerConn{c, br}, closeWithin)
	return fmt.Sprintf("%d, %s", resp.StatusCode, how), err
}

// readerConn reads through a bufio.Reader that may hold what was read.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// upgrade connects a hostile client with a valid token and the side's
// client token, replacing the one before it.
func (h *hostile) upgrade(rng *rand.Rand) (*websocket.Conn, string, error) {
	i, mode := h.bind(rng)
	ws, err := h.dialValid(i, mode)
	return ws, mode, err
}

func (h *hostile) dialValid(i int, mode string) (*websocket.Conn, error) {
	d := websocket.Dialer{
		TLSClientConfig:  h.tls,
		Subprotocols:     []string{"aws.iot.securetunneling-3.0"},
		HandshakeTimeout: closeWithin,
	}
	hdr := http.Header{"access-token": {h.token(i, mode)}, "client-token": {clientToken(i, mode)}}
	ws, resp, err := d.Dial(fmt.Sprintf("wss://%s/tunnel?local-proxy-mode=%s", h.s.addr, mode), hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, fmt.Errorf("handshake with a valid token (%s of tunnel %d): %d %w", mode, i, status, err)
	}
	return ws, nil
}

// framesKind sends each of frames' results as one binary message.
func (h *hostile) framesKind(within time.Duration, frames func(rng *rand.Rand, mode string) [][]byte) func(*hostile, *rand.Rand) (string, error) {
	return func(h *hostile, rng *rand.Rand) (string, error) {
		ws, mode, err := h.upgrade(rng)
		if err != nil {
			return "", err
		}
		defer ws.Close()
		for _, f := range frames(rng, mode) {
			if err := ws.WriteMessage(websocket.BinaryMessage, f); err != nil {
				break // ended already
			}
		}
		return awaitWSEnd(ws, within)
	}
}

// wsKind does act on an upgraded connection.
func (h *hostile) wsKind(within time.Duration, act func(rng *rand.Rand, ws *websocket.Conn) error) func(*hostile, *rand.Rand) (string, error) {
	return func(h *hostile, rng *rand.Rand) (string, error) {
		ws, _, err := h.upgrade(rng)
		if err != nil {
			return "", err
		}
		defer ws.Close()
		act(rng, ws) // a write fails when the server has ended the connection already
		return awaitWSEnd(ws, within)
	}
}

// awaitEnd reads c until the server ends it, and says how; an error if it
// is still open after within.
func awaitEnd(c net.Conn, within time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	n := 0
	for {
		m, err := c.Read(buf)
		n += m
		if err == nil {
			continue
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return "", fmt.Errorf("still open after %v (%d bytes read)", within, n)
		case errors.Is(err, io.EOF):
			return "closed", nil
		default:
			return "reset", nil
		}
	}
}

// awaitHTTPRefusal expects a 4xx answer, then the end of the connection.
func awaitHTTPRefusal(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(closeWithin))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		// A TLS alert or a reset before any answer also ends it.
		how, err := awaitEnd(readerConn{c, br}, closeWithin)
		return "no answer, " + how, err
	}
	if !strings.HasPrefix(line, "HTTP/1.1 4") && !strings.HasPrefix(line, "HTTP/1.1 505") {
		return "", fmt.Errorf("answered %q, want a 4xx or 505", strings.TrimSpace(line))
	}
	how, err := awaitEnd(readerConn{c, br}, closeWithin)
	return strings.Fields(line)[1] + ", " + how, err
}

// awaitWSEnd reads ws until the server ends it, and says how: its close
// code, or "dropped" (replaced by the next client on the side, or a close
// frame lost to a reset).
func awaitWSEnd(ws *websocket.Conn, within time.Duration) (string, error) {
	raw := ws.UnderlyingConn()
	raw.SetReadDeadline(time.Now().Add(within))
	ws.SetPingHandler(func(string) error { return nil })
	for {
		_, _, err := ws.NextReader()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		var ne net.Error
		switch {
		case errors.As(err, &ce):
			// The server closes the TCP connection after its close frame.
			how, err := awaitEnd(raw, closeWithin)
			return fmt.Sprintf("close %d, %s", ce.Code, how), err
		case errors.As(err, &ne) && ne.Timeout():
			return "", fmt.Errorf("still open after %v", within)
		default:
			return "dropped", nil
		}
	}
}
