package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

// capturesDir holds the official proxy's wire captures (the .jsonl relay
// logs of shared/reference/captures, copied as recorded data), so the tests
// pass in a clone with nothing beside it.
const capturesDir = "testdata/captures"

// capEvent is one line of a capture's relay log (captures/README.md).
type capEvent struct {
	Ev                  string      `json:"ev"`
	Conn                int         `json:"conn"`
	Mode                tunnel.Mode `json:"mode"`
	Args                []string    `json:"args"`
	RequestLine         string      `json:"request_line"`
	Headers             [][2]string `json:"headers"`
	HeadBytes           int         `json:"head_bytes"`
	Status              int         `json:"status"`
	Subprotocol         string      `json:"subprotocol"`
	Dir                 string      `json:"dir"`
	Op                  string      `json:"op"`
	Msg                 *int        `json:"msg"`
	Len                 int         `json:"len"`
	Payload             string      `json:"payload"`
	FrameSizes          []string    `json:"frame_sizes"`
	Type                string      `json:"type"`
	StreamID            int32       `json:"streamId"`
	ConnectionID        uint32      `json:"connectionId"`
	ServiceID           string      `json:"serviceId"`
	Ignorable           bool        `json:"ignorable"`
	AvailableServiceIDs []string    `json:"availableServiceIds"`
	PayloadLen          int         `json:"payload_len"`
	PayloadHead         string      `json:"payload_head"`
	FrameLen            int         `json:"frame_len"`
	Fields              []int       `json:"fields"`
	RawHex              string      `json:"raw_hex"`
}

func loadCapture(t *testing.T, name string) []capEvent {
	t.Helper()
	f, err := os.Open(filepath.Join(capturesDir, name+".jsonl"))
	if err != nil {
		t.Fatalf("capture %s: %v", name, err)
	}
	defer f.Close()
	var evs []capEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var kind struct{ Ev string }
		if err := json.Unmarshal(sc.Bytes(), &kind); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if kind.Ev == "control" {
			continue // the capturing relay's own fault injections
		}
		var ev capEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

var typeByName = map[string]wire.Type{}

func init() {
	for t := wire.TypeUnknown; t <= wire.TypeConnectionReset; t++ {
		typeByName[t.String()] = t
	}
}

// captureFrame rebuilds a tunnel frame the proxy sent: raw_hex where the
// capture has it; DATA from its fields, with a payload of the recorded
// length that starts with the recorded first bytes.
func captureFrame(t *testing.T, ev capEvent) []byte {
	t.Helper()
	if ev.RawHex != "" {
		b, err := hex.DecodeString(ev.RawHex)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	payload := pattern(int(ev.StreamID), ev.PayloadLen)
	phead, err := hex.DecodeString(ev.PayloadHead)
	if err != nil {
		t.Fatal(err)
	}
	copy(payload, phead)
	m := wire.Message{Type: typeByName[ev.Type], StreamID: ev.StreamID, Ignorable: ev.Ignorable, Payload: payload,
		ServiceID: ev.ServiceID, AvailableServiceIDs: ev.AvailableServiceIDs, ConnectionID: ev.ConnectionID}
	if !slices.IsSorted(ev.Fields) {
		t.Fatalf("fields %v not in field order: cannot rebuild the frame", ev.Fields)
	}
	b := frame(m)
	if len(b) != ev.FrameLen+2 {
		t.Fatalf("rebuilt %s frame is %d bytes, capture says %d", ev.Type, len(b)-2, ev.FrameLen)
	}
	return b
}

// captureHead is the captured request head with real tokens, the offered
// subprotocol replaced if offer is set, and a placeholder for the key.
func captureHead(ev capEvent, accessToken, clientToken, offer string) string {
	var b strings.Builder
	b.WriteString(ev.RequestLine + "\r\n")
	for _, h := range ev.Headers {
		k, v := h[0], h[1]
		switch strings.ToLower(k) {
		case "access-token":
			v = accessToken
		case "client-token":
			v = clientToken
		case "sec-websocket-key":
			v = "{{KEY}}"
		case "sec-websocket-protocol":
			if offer != "" {
				v = offer
			}
		}
		b.WriteString(k + ": " + v + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// expandSizes turns ["4096x15","3090"] into the frame sizes.
func expandSizes(t *testing.T, spec []string) []int {
	var out []int
	for _, s := range spec {
		size, count, ok := strings.Cut(s, "x")
		n, err := strconv.Atoi(size)
		if err != nil {
			t.Fatalf("frame size %q", s)
		}
		c := 1
		if ok {
			if c, err = strconv.Atoi(count); err != nil {
				t.Fatalf("frame size %q", s)
			}
		}
		for range c {
			out = append(out, n)
		}
	}
	return out
}

// frameLog records the payload sizes of the data frames (not control
// frames) a test client writes, to check it fragments like the official
// proxy.
type frameLog struct {
	mu        sync.Mutex
	hdr       []byte
	remaining int
	sizes     []int
}

func (l *frameLog) write(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(p) > 0 {
		if l.remaining > 0 {
			n := min(len(p), l.remaining)
			l.remaining -= n
			p = p[n:]
			continue
		}
		l.hdr = append(l.hdr, p[0])
		p = p[1:]
		if len(l.hdr) < 2 {
			continue
		}
		n, size := int(l.hdr[1]&0x7f), 2
		switch n {
		case 126:
			size = 4
		case 127:
			size = 10
		}
		if l.hdr[1]&0x80 != 0 {
			size += 4
		}
		if len(l.hdr) < size {
			continue
		}
		switch n {
		case 126:
			n = int(binary.BigEndian.Uint16(l.hdr[2:]))
		case 127:
			n = int(binary.BigEndian.Uint64(l.hdr[2:]))
		}
		if l.hdr[0]&0x08 == 0 { // not a control frame
			l.sizes = append(l.sizes, n)
		}
		l.remaining = n
		l.hdr = l.hdr[:0]
	}
}

func (l *frameLog) take() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sizes
	l.sizes = nil
	return s
}

type replayOpts struct {
	maxConns int    // replay only the first connections (k3 has 133)
	offer    string // Sec-WebSocket-Protocol to offer instead of the captured one
	// replace: the source reconnects before its old connection is gone,
	// so Warren must replace it.
	replace bool
	// rejected: connections that Warren must refuse with this status
	// (where the capturing relay was laxer); the proxy then exits, so the
	// replay ends there.
	rejected map[int]int
	// destinationClientToken adds a client-token header to the
	// destination's requests, so that it may reconnect.
	destinationClientToken bool
}

type replayConn struct {
	num     int
	side    side
	c       *client
	log     *frameLog
	version int
	pings   []string
}

// replayer plays the official proxies' side of a capture against Warren and
// checks what a correct relay must answer.
type replayer struct {
	t        *testing.T
	e        *env
	opts     replayOpts
	services []string
	tn       tunnel.Tunnel
	tok      tunnel.Tokens
	events   []capEvent
	frames   map[[2]int][][]byte // (conn, msg) → frames of a proxy's message
	conns    map[int]*replayConn
	live     [2]*replayConn
	streams  []activeStream // what Warren must reset when a peer goes
	resets   [][]byte       // the resets Warren sent
	peers    int64          // connections that ended
	ended    bool           // a proxy exited: the rest of the capture does not apply
	sent     int            // proxy messages replayed
	checked  int            // frames checked at the other peer
	pings    int
}

func replay(t *testing.T, name string, opts replayOpts) *replayer {
	r := &replayer{t: t, opts: opts, events: loadCapture(t, name), frames: map[[2]int][][]byte{}, conns: map[int]*replayConn{}}
	args := r.events[0].Args
	if i := slices.Index(args, "-services"); i >= 0 {
		r.services = strings.Split(args[i+1], ",")
	} else {
		t.Fatalf("%s names no services", name)
	}
	for _, ev := range r.events {
		if ev.Ev == "tf" && ev.Dir == "in" {
			k := [2]int{ev.Conn, *ev.Msg}
			r.frames[k] = append(r.frames[k], captureFrame(t, ev))
		}
	}
	// At a connection limit of the captures' most simultaneous connections
	// (four, in b and c; three fails them), counting changes nothing.
	r.e = newEnv(t, Config{MaxConnections: 4})
	r.tn, r.tok = r.e.newTunnel(r.services...)
	r.run()
	return r
}

func (r *replayer) run() {
	for _, ev := range r.events {
		if r.ended {
			break
		}
		switch {
		case ev.Ev == "http_request":
			if r.opts.maxConns > 0 && ev.Conn > r.opts.maxConns {
				r.finish()
				return
			}
			r.connect(ev)
		case ev.Ev == "ws" && ev.Dir == "in":
			r.receive(ev)
		case ev.Ev == "fault_drop" && !(r.opts.replace && ev.Mode == tunnel.ModeSource):
			r.drop(ev.Conn) // the capturing relay dropped it; here the proxy does
		case ev.Ev == "disconnect":
			r.drop(ev.Conn)
		}
	}
	r.finish()
}

func (r *replayer) connect(ev capEvent) {
	t := r.t
	sd := sideOf(ev.Mode)
	token := r.tok.Source
	if sd == destinationSide {
		token = r.tok.Destination
	}
	head := captureHead(ev, token, testClientToken, r.opts.offer)
	if sd == destinationSide && r.opts.destinationClientToken {
		head = strings.Replace(head, "\r\nUser-Agent:", "\r\nclient-token: "+testClientToken+"\r\nUser-Agent:", 1)
	}
	if status, ok := r.opts.rejected[ev.Conn]; ok {
		got, body := r.e.dialStatus(dialOpts{rawHead: head})
		if got != status {
			t.Fatalf("conn %d: got %d %q, want %d", ev.Conn, got, body, status)
		}
		r.ended = true
		return
	}
	want := "aws.iot.securetunneling-3.0"
	if r.opts.offer != "" {
		want = r.opts.offer
	}
	old := r.live[sd]
	if old != nil {
		r.checkPongs(old)
	}
	log := &frameLog{}
	c, resp, err := r.e.dial(dialOpts{rawHead: head, onWrite: log.write})
	if err != nil {
		t.Fatalf("conn %d (%s): %v (%s)", ev.Conn, ev.Mode, err, respText(resp))
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != want {
		t.Fatalf("conn %d: 101 with subprotocol %q, want %q", ev.Conn, got, want)
	}
	if resp.Header.Get(channelIDHeader) == "" {
		t.Fatalf("conn %d: 101 without channel-id", ev.Conn)
	}
	rc := &replayConn{num: ev.Conn, side: sd, c: c, log: log, version: int(want[len(want)-3] - '0')}
	r.conns[ev.Conn] = rc
	if old != nil {
		// Replaced: dropped without close frame, the other side reset.
		old.c.expectDrop()
		r.live[sd] = nil
		r.peerGone(sd)
	}
	if rc.version >= 2 {
		sids := serviceIDs(r.services...)
		for _, out := range r.events {
			if out.Ev == "tf" && out.Dir == "out" && out.Conn == ev.Conn && out.Type == "SERVICE_IDS" && !bytes.Equal(mustHex(out.RawHex), sids) {
				t.Fatalf("conn %d: SERVICE_IDS % x, capture has %s", ev.Conn, sids, out.RawHex)
			}
		}
		c.expect(sids)
	}
	r.live[sd] = rc
}

// receive plays a message the proxy sent.
func (r *replayer) receive(ev capEvent) {
	rc := r.conns[ev.Conn]
	if rc == nil || r.live[rc.side] != rc {
		return // a connection this replay no longer runs
	}
	switch ev.Op {
	case "ping":
		rc.c.ping(ev.Payload)
		rc.pings = append(rc.pings, ev.Payload)
		r.pings++
	case "pong": // answers to the capturing relay's pings: tolerated
		if err := rc.c.conn.WriteControl(0xA, []byte(ev.Payload), time.Now().Add(waitLimit)); err != nil {
			r.t.Fatal(err)
		}
	case "binary":
		r.forward(rc, ev)
	}
}

func (r *replayer) forward(rc *replayConn, ev capEvent) {
	t := r.t
	frames := r.frames[[2]int{ev.Conn, *ev.Msg}]
	msg := bytes.Join(frames, nil)
	if len(msg) != ev.Len {
		t.Fatalf("conn %d msg %d: rebuilt %d bytes, capture says %d", ev.Conn, *ev.Msg, len(msg), ev.Len)
	}
	rc.c.send(msg)
	r.sent++
	want := []int{ev.Len}
	if ev.FrameSizes != nil {
		want = expandSizes(t, ev.FrameSizes)
	}
	if got := rc.log.take(); !slices.Equal(got, want) {
		t.Fatalf("conn %d msg %d went out in WebSocket frames %v, the official proxy used %v", ev.Conn, *ev.Msg, got, want)
	}
	other := r.live[rc.side.other()]
	for _, f := range frames {
		var m wire.Message
		if err := wire.Unmarshal(f[2:], &m); err != nil {
			t.Fatal(err)
		}
		r.track(rc.side, &m)
		if other == nil {
			// Dropped by the relay, as in the capture (drop_no_peer); a
			// start is answered with its reset, which the capturing relay
			// did not send.
			if reset, ok := refusal(&m, rc.version); ok {
				r.track(rc.side.other(), &reset)
				rc.c.expect(frame(reset))
			}
			continue
		}
		if other.version == 2 && m.ConnectionID != 0 {
			m.ConnectionID = 0
			f = frame(m)
		}
		other.c.expect(f)
		r.checked++
	}
}

// track is the replay's own model of active streams.
func (r *replayer) track(from side, m *wire.Message) {
	i := slices.IndexFunc(r.streams, func(s activeStream) bool { return s.serviceID == m.ServiceID })
	switch {
	case m.Type == wire.TypeStreamStart && from == sourceSide && i >= 0:
		r.streams[i].streamID = m.StreamID
	case m.Type == wire.TypeStreamStart && from == sourceSide:
		r.streams = append(r.streams, activeStream{m.ServiceID, m.StreamID})
	case m.Type == wire.TypeStreamReset && i >= 0 && r.streams[i].streamID == m.StreamID:
		r.streams = slices.Delete(r.streams, i, i+1)
	}
}

// drop ends a connection the way a killed proxy does: TCP closed, no close
// frame.
func (r *replayer) drop(conn int) {
	rc := r.conns[conn]
	if rc == nil || r.live[rc.side] != rc {
		return
	}
	r.checkPongs(rc)
	rc.c.close()
	r.live[rc.side] = nil
	r.peerGone(rc.side)
	r.e.ended(r.peers)
	if s, d := r.e.relay.Connected(r.tn.ID); (rc.side == sourceSide && s) || (rc.side == destinationSide && d) {
		r.t.Fatalf("conn %d: relay still has its side connected", conn)
	}
	if tn := r.e.tunnel(r.tn.ID); tn.Side(rc.side.mode()).Connected {
		r.t.Fatalf("conn %d: store still says %s connected", conn, rc.side.mode())
	}
}

// peerGone checks that the other peer gets a STREAM_RESET for each active
// stream (capture f3 shows the official proxy needs it).
func (r *replayer) peerGone(sd side) {
	r.peers++
	var want [][]byte
	for _, s := range r.streams {
		want = append(want, streamReset(s.serviceID, s.streamID))
	}
	r.streams = nil
	if other := r.live[sd.other()]; other != nil && len(want) > 0 {
		other.c.expectSet(want...)
		r.resets = append(r.resets, want...)
	}
}

// checkPongs: exactly one pong per ping, echoing its payload byte for byte.
func (r *replayer) checkPongs(rc *replayConn) {
	got := rc.c.syncPongs()
	want := append(slices.Clone(rc.pings), got[len(got)-1])
	if !slices.Equal(got, want) {
		r.t.Fatalf("conn %d: pongs %q, want %q", rc.num, got, want)
	}
}

func (r *replayer) finish() {
	for _, rc := range r.live {
		if rc != nil {
			r.drop(rc.num)
		}
	}
	for _, rc := range r.conns {
		if n := rc.c.pending(); n != 0 {
			r.t.Fatalf("conn %d received %d bytes nobody expected", rc.num, n)
		}
	}
}

// capturedResets are the STREAM_RESETs the capturing relay sent.
func (r *replayer) capturedResets() [][]byte {
	var out [][]byte
	for _, ev := range r.events {
		if ev.Ev == "tf" && ev.Dir == "out" && ev.Type == "STREAM_RESET" {
			out = append(out, mustHex(ev.RawHex))
		}
	}
	return out
}

func TestCaptureReplay(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts replayOpts
	}{
		{"a-v3-single-get", replayOpts{}},
		{"b-v3-six-simultaneous", replayOpts{}},
		{"c-v3-two-services", replayOpts{}},
		{"d1-v1-forced-1.0", replayOpts{}},
		{"d1b-v1-forced-1.0-with-serviceids", replayOpts{}},
		{"d1c-v1-source-compat-v1style-destination", replayOpts{}},
		{"d2-v2-forced-2.0", replayOpts{}},
		{"d2-v2-forced-2.0", replayOpts{offer: "aws.iot.securetunneling-2.0"}},
		{"d2b-v2-simultaneous-connections", replayOpts{}},
		{"e-destination-port-closed", replayOpts{}},
		{"f-source-tcp-drop", replayOpts{}},
		{"f2-destination-ws-close-frame", replayOpts{}},
		{"f3-source-tcp-drop-relay-sends-stream-reset", replayOpts{}},
		{"f3-source-tcp-drop-relay-sends-stream-reset", replayOpts{replace: true}},
		{"f4-source-ws-close-frame", replayOpts{}},
		// Without a client token the destination's token is spent by its
		// first connection: Warren refuses the reconnect, like AWS.
		{"f5-destination-tcp-drop", replayOpts{rejected: map[int]int{3: 409}}},
		{"f5-destination-tcp-drop", replayOpts{destinationClientToken: true}},
		{"h-idle-keepalive", replayOpts{}},
		{"h2-relay-pings", replayOpts{}},
		{"i1-serviceids-extra-service", replayOpts{}},
		{"i2-serviceids-missing-service", replayOpts{}},
		{"i3-serviceids-disjoint", replayOpts{}},
		{"i4-unnamed-mapping-one-service", replayOpts{}},
		{"j1-relay-rechunks-1000", replayOpts{}},
		{"j2-relay-coalesces-30ms", replayOpts{}},
		{"k1-unsolicited-pong-and-text", replayOpts{}},
		{"k2-session-reset-to-source", replayOpts{}},
		{"k3-101-without-subprotocol", replayOpts{maxConns: 8}}, // Warren's 101 always names the subprotocol
	} {
		name := tt.name
		if tt.opts.offer != "" {
			name += "/offer-" + tt.opts.offer[len(tt.opts.offer)-3:]
		}
		if tt.opts.replace {
			name += "/replace"
		}
		if tt.opts.rejected != nil {
			name += "/rejected"
		}
		if tt.opts.destinationClientToken {
			name += "/destination-client-token"
		}
		t.Run(name, func(t *testing.T) {
			r := replay(t, tt.name, tt.opts)
			t.Logf("%d connections, %d messages sent, %d frames checked at the other peer, %d pings, %d stream resets",
				len(r.conns), r.sent, r.checked, r.pings, len(r.resets))
			if strings.HasPrefix(tt.name, "f3-") {
				// Warren sends what the capturing relay was made to send.
				want := r.capturedResets()
				if len(want) == 0 || len(r.resets) < len(want) {
					t.Fatalf("Warren sent resets %x, capture %x", r.resets, want)
				}
				for _, w := range want {
					if indexFrame(r.resets, w) < 0 {
						t.Fatalf("capture's reset % x not sent (sent %x)", w, r.resets)
					}
				}
			}
		})
	}
}

// The g captures: the capturing relay rejected every handshake. Warren
// answers the same status classes where the request deserves them, with a
// body saying why (the official proxy logs it): 4xx ends the proxy, 5xx
// makes it retry.
func TestCaptureHandshakeRejections(t *testing.T) {
	for _, status := range []int{401, 403, 409, 410, 500, 503} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			evs := loadCapture(t, fmt.Sprintf("g-handshake-reject-%d", status))
			var req capEvent
			for _, ev := range evs {
				if ev.Ev == "http_request" {
					req = ev
					break
				}
			}
			cfg := Config{}
			if status == 500 {
				cfg.Store = failingStore{}
			}
			e := newEnv(t, cfg)
			tn, tok := e.newTunnel("HTTP")
			token := tok.Source // the captured request is the source's
			switch status {
			case 401:
				token = "AQ" + strings.Repeat("x", 53)
			case 403:
				token = tok.Destination
			case 409:
				// Another proxy bound the token to its client token first.
				e.mustDial(dialOpts{mode: tunnel.ModeSource, token: tok.Source, clientToken: strings.Repeat("f", 36)})
			case 410:
				e.store.UpdateTunnel(context.Background(), tn.ID, func(t *tunnel.Tunnel) error {
					t.Close(time.Now())
					return nil
				})
			case 503:
				ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				defer cancel()
				if err := e.relay.Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
			}
			got, body := e.dialStatus(dialOpts{rawHead: captureHead(req, token, testClientToken, "")})
			if got != status {
				t.Fatalf("status %d (%q), want %d", got, body, status)
			}
			if body == "" || strings.Contains(body, token) || strings.Contains(body, testClientToken) {
				t.Fatalf("body %q", body)
			}
		})
	}
}

func TestCaptureHeadsAreExact(t *testing.T) {
	// The replay sends the captured bytes: as long as recorded when the
	// tokens and key have the recorded lengths.
	for _, ev := range loadCapture(t, "a-v3-single-get") {
		if ev.Ev != "http_request" {
			continue
		}
		head := captureHead(ev, strings.Repeat("t", 55), strings.Repeat("c", 36), "")
		head = strings.Replace(head, "{{KEY}}", "OUId+2J6iYoqRejMLFzwRA==", 1)
		if len(head) != ev.HeadBytes {
			t.Fatalf("conn %d: head %d bytes, capture %d", ev.Conn, len(head), ev.HeadBytes)
		}
	}
}

// refusal is the reset Warren answers a start with when the other peer is
// not connected.
func refusal(m *wire.Message, version int) (wire.Message, bool) {
	var reset wire.Message
	switch m.Type {
	case wire.TypeStreamStart:
		reset = wire.Message{Type: wire.TypeStreamReset, StreamID: m.StreamID, ServiceID: m.ServiceID}
	case wire.TypeConnectionStart:
		reset = wire.Message{Type: wire.TypeConnectionReset, StreamID: m.StreamID, ServiceID: m.ServiceID, ConnectionID: m.ConnectionID}
	default:
		return reset, false
	}
	if version == 2 {
		reset.ConnectionID = 0
	}
	return reset, true
}
