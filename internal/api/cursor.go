package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"regexp"
	"strings"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// The List operations' nextTokens are opaque to clients and tamper-proof: a
// token is its position and an HMAC over the listing's kind and the
// position, with a key of the server's (the store keeps it, so tokens
// survive restarts and hold across servers on one database). A token that
// was changed, or comes from another listing, is refused; the position is a
// value (the creation time and id of a tunnel or an account, a thing's
// name), so a token stays good when the rows of the page before it are
// deleted.

// nextTokenPattern is the model's NextToken pattern; its 4096 limit is
// checked apart, past Go's regexp repeat limit.
var nextTokenPattern = regexp.MustCompile(`^[a-zA-Z0-9_=-]+$`)

const (
	maxNextToken = 4096
	cursorMACLen = 16 // bytes of HMAC-SHA256 kept: 128 bits
	// CursorKeySize is the size of the key that signs nextTokens.
	CursorKeySize = 32
)

// cursors makes and checks nextTokens with one key.
type cursors struct{ key []byte }

// newCursors uses key, or a random key when there is none (then tokens last
// as long as the API).
func newCursors(key []byte) cursors {
	if len(key) == 0 {
		key = make([]byte, CursorKeySize)
		if _, err := rand.Read(key); err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
	}
	return cursors{key: append([]byte(nil), key...)}
}

func (c cursors) mac(kind string, pos []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write(pos)
	return m.Sum(nil)[:cursorMACLen]
}

// encode makes the nextToken of position pos in the listing kind.
func (c cursors) encode(kind string, pos []byte) string {
	return base64.RawURLEncoding.EncodeToString(append(append([]byte(nil), pos...), c.mac(kind, pos)...))
}

// decode returns the position of a nextToken of the listing kind; false for
// a token this server did not make for that listing, or an empty position.
func (c cursors) decode(kind, token string) ([]byte, bool) {
	if len(token) > maxNextToken || !nextTokenPattern.MatchString(token) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(token, "="))
	if err != nil || len(b) <= cursorMACLen {
		return nil, false
	}
	pos, sum := b[:len(b)-cursorMACLen], b[len(b)-cursorMACLen:]
	if !hmac.Equal(sum, c.mac(kind, pos)) {
		return nil, false
	}
	return pos, true
}

// encodePosition is a position as a cursor's bytes: the creation time in
// Unix nanoseconds (8 bytes, big-endian), then the id.
func encodePosition(p tunnel.Position) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(p.CreatedAt.UnixNano())), p.ID...)
}

// decodePosition reads encodePosition's bytes; validID checks the id.
func decodePosition(b []byte, validID func(string) bool) (tunnel.Position, bool) {
	if len(b) <= 8 {
		return tunnel.Position{}, false
	}
	p := tunnel.Position{
		CreatedAt: time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))).UTC(),
		ID:        string(b[8:]),
	}
	return p, validID(p.ID)
}
