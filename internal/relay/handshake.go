package relay

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/websocket"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

// Names on the wire of the handshake, as the official local proxy and the
// AWS service spell them.
const (
	modeParam         = "local-proxy-mode"
	tokenHeader       = "access-token"
	tokenCookie       = "awsiot-tunnel-token"
	clientTokenHeader = "client-token"
	channelIDHeader   = "channel-id"

	// maxHead is the largest request head (request line and headers) the
	// service accepts.
	maxHead = 4096
)

// Subprotocols Warren speaks. 2.0 and 3.0 interoperate: toward a 2.0 peer
// the relay strips connection ids.
var subprotocols = [...]struct {
	name    string
	version int
}{
	{"aws.iot.securetunneling-3.0", 3},
	{"aws.iot.securetunneling-2.0", 2},
	{"aws.iot.securetunneling-1.0", 1},
}

// handshake is what a valid upgrade request asks for.
type handshake struct {
	mode        tunnel.Mode
	token       string
	clientToken string // "" when none was sent
	subprotocol string
	version     int // 1, 2 or 3
	// linkCredit: a Warren local proxy asked for link credit while its
	// account's bandwidth is limited (wire.LinkCreditHeader).
	linkCredit bool
}

// handshakeError is a rejected handshake: the HTTP status and a short
// message for the response body. The official proxy logs the body, so it
// says what is wrong; it never contains a token.
type handshakeError struct {
	status int
	msg    string
}

func (e *handshakeError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.msg)
}

func reject(status int, format string, args ...any) *handshakeError {
	return &handshakeError{status: status, msg: fmt.Sprintf(format, args...)}
}

// parseHandshake checks an upgrade request against the data plane's rules
// without touching the store. It is pure, so it is fuzzed.
func parseHandshake(req *http.Request) (handshake, error) {
	var h handshake
	if n := headSize(req); n > maxHead {
		return h, reject(http.StatusRequestHeaderFieldsTooLarge, "request head is %d bytes; at most %d are allowed", n, maxHead)
	}
	if err := checkUpgrade(req); err != nil {
		return h, err
	}
	mode, err := parseMode(req)
	if err != nil {
		return h, err
	}
	h.mode = mode
	h.subprotocol, h.version = chooseSubprotocol(req)
	if h.version == 0 {
		return h, reject(http.StatusBadRequest, "no supported subprotocol offered in Sec-WebSocket-Protocol; use %s, %s or %s",
			subprotocols[0].name, subprotocols[1].name, subprotocols[2].name)
	}
	if h.token, err = accessToken(req); err != nil {
		return h, err
	}
	if h.clientToken, err = clientToken(req); err != nil {
		return h, err
	}
	h.linkCredit = req.Header.Get(wire.LinkCreditHeader) == "1"
	return h, nil
}

// headSize is the size of the request line and headers as the client sent
// them (give or take optional whitespace, which the parser drops).
func headSize(req *http.Request) int {
	uri := req.RequestURI
	if uri == "" {
		uri = req.URL.RequestURI()
	}
	n := len(req.Method) + 1 + len(uri) + 1 + len(req.Proto) + 2
	if _, ok := req.Header["Host"]; !ok && req.Host != "" {
		// The server moves Host out of the header map.
		n += len("Host: ") + len(req.Host) + 2
	}
	for k, vs := range req.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}

// checkUpgrade repeats the checks of websocket.Upgrader.Upgrade, so that an
// admitted handshake (whose token may now be spent) never fails to upgrade
// for a reason that could have been seen before.
func checkUpgrade(req *http.Request) error {
	const notWS = "not a WebSocket upgrade: "
	switch {
	case req.Method != http.MethodGet:
		return reject(http.StatusBadRequest, notWS+"method is %s, not GET", req.Method)
	case !headerHasToken(req.Header, "Connection", "upgrade"):
		return reject(http.StatusBadRequest, notWS+"the Connection header does not contain 'upgrade'")
	case !headerHasToken(req.Header, "Upgrade", "websocket"):
		return reject(http.StatusBadRequest, notWS+"the Upgrade header does not contain 'websocket'")
	case !headerHasToken(req.Header, "Sec-Websocket-Version", "13"):
		return reject(http.StatusBadRequest, notWS+"Sec-WebSocket-Version must be 13")
	case !validKey(req.Header.Values("Sec-Websocket-Key")):
		return reject(http.StatusBadRequest, notWS+"Sec-WebSocket-Key must be one base64-encoded 16-byte value")
	}
	return nil
}

// headerHasToken reports whether a comma-separated header contains token,
// ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func validKey(vs []string) bool {
	if len(vs) != 1 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(vs[0])
	return err == nil && len(b) == 16
}

func parseMode(req *http.Request) (tunnel.Mode, error) {
	q, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		return "", reject(http.StatusBadRequest, "malformed query string")
	}
	vs := q[modeParam]
	if len(vs) != 1 {
		return "", reject(http.StatusBadRequest, "the query must have exactly one %s parameter (source or destination)", modeParam)
	}
	switch m := tunnel.Mode(vs[0]); m {
	case tunnel.ModeSource, tunnel.ModeDestination:
		return m, nil
	}
	return "", reject(http.StatusBadRequest, "%s must be source or destination", modeParam)
}

// chooseSubprotocol picks the highest version the client offered.
func chooseSubprotocol(req *http.Request) (string, int) {
	offered := websocket.Subprotocols(req)
	for _, sp := range subprotocols {
		for _, o := range offered {
			if o == sp.name {
				return sp.name, sp.version
			}
		}
	}
	return "", 0
}

// accessToken finds the one access token of the request, in the header or
// the cookie.
func accessToken(req *http.Request) (string, error) {
	vals := req.Header.Values(tokenHeader)
	for _, c := range req.Cookies() {
		if c.Name == tokenCookie {
			vals = append(vals, c.Value)
		}
	}
	switch {
	case len(vals) == 0:
		return "", reject(http.StatusUnauthorized, "no access token: send it in the %s header or the %s cookie", tokenHeader, tokenCookie)
	case len(vals) > 1:
		return "", reject(http.StatusBadRequest, "%d access tokens sent; send exactly one, in the %s header or the %s cookie", len(vals), tokenHeader, tokenCookie)
	case vals[0] == "":
		return "", reject(http.StatusUnauthorized, "the access token is empty")
	}
	return vals[0], nil
}

func clientToken(req *http.Request) (string, error) {
	vs := req.Header.Values(clientTokenHeader)
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", reject(http.StatusBadRequest, "%d %s headers sent; at most one is allowed", len(vs), clientTokenHeader)
	case !tunnel.ValidClientToken(vs[0]):
		return "", reject(http.StatusBadRequest, "%s must match ^[a-zA-Z0-9-]{32,128}$", clientTokenHeader)
	}
	return vs[0], nil
}

// admissionError maps the store's and tunnel.Admit's errors to the HTTP
// answer. 4xx makes the official proxy give up, 5xx makes it retry.
func admissionError(err error, mode tunnel.Mode) *handshakeError {
	switch {
	case errors.Is(err, tunnel.ErrNotFound):
		return reject(http.StatusUnauthorized, "access token is not valid")
	case errors.Is(err, tunnel.ErrWrongMode):
		return reject(http.StatusForbidden, "access token is not valid for %s=%s", modeParam, mode)
	case errors.Is(err, tunnel.ErrClosed):
		return reject(http.StatusGone, "tunnel is closed")
	case errors.Is(err, tunnel.ErrNoDestination):
		// A 4xx: the official proxy exits instead of retrying a tunnel that
		// needs an API call first.
		return reject(http.StatusConflict, "%s", err.Error())
	case errors.Is(err, tunnel.ErrTokenSpent), errors.Is(err, tunnel.ErrClientToken):
		return reject(http.StatusConflict, "%s", err.Error())
	}
	return reject(http.StatusInternalServerError, "internal error; try again later")
}
