package relay

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// The official proxy's request heads, header order and case as captured
// (a-v3-single-get.jsonl), with fake tokens of the captured lengths.
const (
	fakeSourceToken      = "SRCt" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO" // 55 bytes
	fakeDestinationToken = "DSTt" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO"
	fakeClientToken      = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d" // 36 bytes

	officialDestinationHead = "GET /tunnel?local-proxy-mode=destination HTTP/1.1\r\n" +
		"Host: 127.0.0.1\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: upgrade\r\n" +
		"Sec-WebSocket-Key: OUId+2J6iYoqRejMLFzwRA==\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: aws.iot.securetunneling-3.0\r\n" +
		"access-token: " + fakeDestinationToken + "\r\n" +
		"User-Agent: localproxy linux 64-bit/boost-1.74.0/openssl-3.0.0/protobuf-3.21.12\r\n" +
		"\r\n"
	officialSourceHead = "GET /tunnel?local-proxy-mode=source HTTP/1.1\r\n" +
		"Host: 127.0.0.1\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: upgrade\r\n" +
		"Sec-WebSocket-Key: +O/bt18yLRPAsfDzF0NUyQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: aws.iot.securetunneling-3.0\r\n" +
		"access-token: " + fakeSourceToken + "\r\n" +
		"client-token: " + fakeClientToken + "\r\n" +
		"User-Agent: localproxy linux 64-bit/boost-1.74.0/openssl-3.0.0/protobuf-3.21.12\r\n" +
		"\r\n"
)

func readRequest(t testing.TB, head string) *http.Request {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
	if err != nil {
		t.Fatalf("read request: %v", err)
	}
	return req
}

// edit returns head with header lines changed: a value of "" removes the
// header, a key not present is added before the blank line.
func edit(head string, set map[string]string) string {
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	var out []string
	done := map[string]bool{}
	for _, l := range lines {
		k, _, _ := strings.Cut(l, ":")
		if v, ok := set[k]; ok {
			done[k] = true
			if v == "" {
				continue
			}
			l = k + ": " + v
		}
		out = append(out, l)
	}
	for k, v := range set {
		if !done[k] && v != "" {
			out = append(out, k+": "+v)
		}
	}
	return strings.Join(out, "\r\n") + "\r\n\r\n"
}

func withRequestLine(head, line string) string {
	_, rest, _ := strings.Cut(head, "\r\n")
	return line + "\r\n" + rest
}

func TestParseHandshake(t *testing.T) {
	tests := []struct {
		name        string
		head        string
		status      int // 0: accepted
		mode        tunnel.Mode
		token       string
		clientToken string
		subprotocol string
	}{
		{name: "official destination", head: officialDestinationHead,
			mode: tunnel.ModeDestination, token: fakeDestinationToken, subprotocol: "aws.iot.securetunneling-3.0"},
		{name: "official source with client token", head: officialSourceHead,
			mode: tunnel.ModeSource, token: fakeSourceToken, clientToken: fakeClientToken, subprotocol: "aws.iot.securetunneling-3.0"},
		{name: "host with port", head: edit(officialDestinationHead, map[string]string{"Host": "tunnel.example.com:8443"}),
			mode: tunnel.ModeDestination, token: fakeDestinationToken, subprotocol: "aws.iot.securetunneling-3.0"},
		{name: "token in cookie", head: edit(officialDestinationHead, map[string]string{"access-token": "", "Cookie": "a=b; awsiot-tunnel-token=" + fakeDestinationToken}),
			mode: tunnel.ModeDestination, token: fakeDestinationToken, subprotocol: "aws.iot.securetunneling-3.0"},
		{name: "highest subprotocol offered", head: edit(officialDestinationHead, map[string]string{"Sec-WebSocket-Protocol": "aws.iot.securetunneling-1.0, aws.iot.securetunneling-2.0"}),
			mode: tunnel.ModeDestination, token: fakeDestinationToken, subprotocol: "aws.iot.securetunneling-2.0"},
		{name: "3.0 among unknown", head: edit(officialDestinationHead, map[string]string{"Sec-WebSocket-Protocol": "chat, aws.iot.securetunneling-3.0"}),
			mode: tunnel.ModeDestination, token: fakeDestinationToken, subprotocol: "aws.iot.securetunneling-3.0"},

		{name: "no mode", head: withRequestLine(officialSourceHead, "GET /tunnel HTTP/1.1"), status: 400},
		{name: "bad mode", head: withRequestLine(officialSourceHead, "GET /tunnel?local-proxy-mode=Source HTTP/1.1"), status: 400},
		{name: "two modes", head: withRequestLine(officialSourceHead, "GET /tunnel?local-proxy-mode=source&local-proxy-mode=source HTTP/1.1"), status: 400},
		{name: "bad query", head: withRequestLine(officialSourceHead, "GET /tunnel?local-proxy-mode=%zz HTTP/1.1"), status: 400},
		{name: "no token", head: edit(officialSourceHead, map[string]string{"access-token": ""}), status: 401},
		{name: "empty token", head: edit(officialSourceHead, map[string]string{"access-token": " "}), status: 401},
		{name: "header and cookie", head: edit(officialSourceHead, map[string]string{"Cookie": "awsiot-tunnel-token=" + fakeSourceToken}), status: 400},
		{name: "two cookies", head: edit(officialSourceHead, map[string]string{"access-token": "", "Cookie": "awsiot-tunnel-token=a; awsiot-tunnel-token=b"}), status: 400},
		{name: "two headers", head: strings.Replace(officialSourceHead, "client-token", "access-token: other\r\nclient-token", 1), status: 400},
		{name: "short client token", head: edit(officialSourceHead, map[string]string{"client-token": "abc"}), status: 400},
		{name: "client token with bad characters", head: edit(officialSourceHead, map[string]string{"client-token": strings.Repeat("a_", 20)}), status: 400},
		{name: "two client tokens", head: strings.Replace(officialSourceHead, "client-token", "client-token: "+fakeClientToken+"\r\nclient-token", 1), status: 400},
		{name: "no subprotocol", head: edit(officialSourceHead, map[string]string{"Sec-WebSocket-Protocol": ""}), status: 400},
		{name: "unknown subprotocol", head: edit(officialSourceHead, map[string]string{"Sec-WebSocket-Protocol": "aws.iot.securetunneling-4.0"}), status: 400},
		{name: "POST", head: withRequestLine(officialSourceHead, "POST /tunnel?local-proxy-mode=source HTTP/1.1"), status: 400},
		{name: "no upgrade header", head: edit(officialSourceHead, map[string]string{"Upgrade": ""}), status: 400},
		{name: "no connection upgrade", head: edit(officialSourceHead, map[string]string{"Connection": "keep-alive"}), status: 400},
		{name: "connection token list", head: edit(officialSourceHead, map[string]string{"Connection": "keep-alive, Upgrade"}),
			mode: tunnel.ModeSource, token: fakeSourceToken, clientToken: fakeClientToken, subprotocol: "aws.iot.securetunneling-3.0"},
		{name: "websocket version 8", head: edit(officialSourceHead, map[string]string{"Sec-WebSocket-Version": "8"}), status: 400},
		{name: "bad key", head: edit(officialSourceHead, map[string]string{"Sec-WebSocket-Key": "c2hvcnQ="}), status: 400},
		{name: "head over 4 KiB", head: edit(officialSourceHead, map[string]string{"User-Agent": strings.Repeat("x", 3800)}), status: 431},
		{name: "head just under 4 KiB", head: edit(officialSourceHead, map[string]string{"User-Agent": strings.Repeat("x", 4096-len(officialSourceHead)+len("localproxy linux 64-bit/boost-1.74.0/openssl-3.0.0/protobuf-3.21.12"))}),
			mode: tunnel.ModeSource, token: fakeSourceToken, clientToken: fakeClientToken, subprotocol: "aws.iot.securetunneling-3.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := readRequest(t, tt.head)
			h, err := parseHandshake(req)
			if tt.status != 0 {
				var he *handshakeError
				if !errors.As(err, &he) {
					t.Fatalf("got %v, want a handshake error with status %d", err, tt.status)
				}
				if he.status != tt.status {
					t.Fatalf("status %d (%s), want %d", he.status, he.msg, tt.status)
				}
				if he.msg == "" || strings.Contains(he.msg, fakeSourceToken) {
					t.Fatalf("bad message %q", he.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if h.mode != tt.mode || h.token != tt.token || h.clientToken != tt.clientToken || h.subprotocol != tt.subprotocol {
				t.Fatalf("got %+v", h)
			}
		})
	}
}

// The computed head size matches what the capturing relay counted on the
// wire for the official proxy's requests.
func TestHeadSizeMatchesCaptures(t *testing.T) {
	for head, want := range map[string]int{officialDestinationHead: 388, officialSourceHead: 435} {
		if len(head) != want {
			t.Fatalf("test head is %d bytes, capture says %d", len(head), want)
		}
		if got := headSize(readRequest(t, head)); got != want {
			t.Errorf("headSize = %d, want %d", got, want)
		}
	}
}

func TestAdmissionError(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
	}{
		{tunnel.ErrNotFound, 401},
		{tunnel.ErrWrongMode, 403},
		{tunnel.ErrClosed, 410},
		{tunnel.ErrTokenSpent, 409},
		{tunnel.ErrClientToken, 409},
		{errors.New("disk on fire"), 500},
	} {
		if got := admissionError(tt.err, tunnel.ModeSource); got.status != tt.status || strings.Contains(got.msg, "fire") {
			t.Errorf("%v: got %d %q, want %d", tt.err, got.status, got.msg, tt.status)
		}
	}
}

// FuzzParseHandshake feeds request heads to the parser. Properties: no
// panic; rejections are 4xx with a message that does not depend on the
// access token's content; accepted handshakes are complete and within the
// size limit.
func FuzzParseHandshake(f *testing.F) {
	f.Add([]byte(officialSourceHead))
	f.Add([]byte(officialDestinationHead))
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		h, err := parseHandshake(req)
		if err != nil {
			var he *handshakeError
			if !errors.As(err, &he) {
				t.Fatalf("error %v is not a handshakeError", err)
			}
			if he.status < 400 || he.status > 499 || he.msg == "" {
				t.Fatalf("bad rejection %d %q", he.status, he.msg)
			}
			// Same request with other access tokens of the same lengths:
			// the answer must not change (so it cannot contain them).
			other := req.Clone(req.Context())
			vs := other.Header.Values(tokenHeader)
			masked := make([]string, len(vs))
			for i, v := range vs {
				masked[i] = strings.Repeat("x", len(v))
			}
			if len(vs) > 0 {
				other.Header[http.CanonicalHeaderKey(tokenHeader)] = masked
			}
			_, err2 := parseHandshake(other)
			if err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("answer depends on the token: %v vs %v", err, err2)
			}
			return
		}
		if h.mode != tunnel.ModeSource && h.mode != tunnel.ModeDestination {
			t.Fatalf("mode %q", h.mode)
		}
		if h.token == "" || h.version < 1 || h.version > 3 || subprotocols[3-h.version].name != h.subprotocol {
			t.Fatalf("incomplete handshake %+v", h)
		}
		if h.clientToken != "" && !tunnel.ValidClientToken(h.clientToken) {
			t.Fatalf("client token %q accepted", h.clientToken)
		}
		if n := headSize(req); n > maxHead {
			t.Fatalf("head of %d bytes accepted", n)
		}
	})
}
