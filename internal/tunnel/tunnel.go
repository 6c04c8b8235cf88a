// Package tunnel is Warren's domain: accounts, things, tunnels and their
// access tokens, with the rules that govern them (validation, token admission,
// lifetimes). It does no I/O: the store persists these types, the API and the
// relay apply these rules.
package tunnel

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Status of a tunnel.
type Status string

// Tunnel statuses, spelled as the API spells them.
const (
	StatusOpen   Status = "OPEN"
	StatusClosed Status = "CLOSED"
)

// Mode is the side of a tunnel a local proxy connects as.
type Mode string

// Modes, spelled as the data plane's local-proxy-mode query parameter.
const (
	ModeSource      Mode = "source"
	ModeDestination Mode = "destination"
)

// Limits of the described service.
const (
	DefaultLifetimeMinutes = 720
	MaxLifetimeMinutes     = 720
	MaxServices            = 3 // AWS allows up to three services per tunnel
	MaxDescription         = 2048
	MaxTags                = 200
)

// Thing is a registered device; a tunnel's destination names one.
type Thing struct {
	AccountID  string
	Name       string
	ID         string
	ARN        string
	Attributes map[string]string
	Version    int64
	CreatedAt  time.Time
}

// Tag is a key/value pair on a tunnel.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Side is the state of one end of a tunnel.
type Side struct {
	// TokenHash is the SHA-256 of the side's access token; the token itself
	// is never stored.
	TokenHash []byte
	// ClientTokenHash is the SHA-256 of the client token presented at the
	// first successful handshake, if any.
	ClientTokenHash []byte
	// Spent is set when a handshake without client token succeeded: the
	// access token may not be used again.
	Spent         bool
	Connected     bool
	LastUpdatedAt time.Time
	// Node is the id of the cluster node that holds this side's peer; ""
	// when none does, and always on a server that is not in a cluster
	// (omitted from the JSON then, so a single server's rows read as
	// before).
	Node string `json:",omitempty"`
}

// Tunnel is one tunnel of an account.
type Tunnel struct {
	AccountID       string
	ID              string
	ARN             string
	Description     string
	ThingName       string
	Services        []string
	Tags            []Tag
	Status          Status
	LifetimeMinutes int
	CreatedAt       time.Time
	LastUpdatedAt   time.Time
	Source          Side
	Destination     Side
}

// Side returns the side for mode.
func (t *Tunnel) Side(m Mode) *Side {
	if m == ModeSource {
		return &t.Source
	}
	return &t.Destination
}

// ExpiresAt is when the tunnel's maximum lifetime is reached.
func (t *Tunnel) ExpiresAt() time.Time {
	return t.CreatedAt.Add(time.Duration(t.LifetimeMinutes) * time.Minute)
}

// Expired reports whether an open tunnel has outlived its lifetime at now.
func (t *Tunnel) Expired(now time.Time) bool {
	return !now.Before(t.ExpiresAt())
}

// Close marks the tunnel closed and both sides disconnected, held by no
// node.
func (t *Tunnel) Close(now time.Time) {
	if t.Status == StatusClosed {
		return
	}
	t.Status = StatusClosed
	t.LastUpdatedAt = now
	for _, s := range []*Side{&t.Source, &t.Destination} {
		if s.Connected {
			s.Connected = false
			s.LastUpdatedAt = now
		}
		s.Node = ""
	}
}

// Errors the API and the relay branch on.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrInvalid       = errors.New("invalid request")
	ErrClosed        = errors.New("tunnel is closed")
	ErrWrongMode     = errors.New("access token is not valid for this mode")
	ErrTokenSpent    = errors.New("access token was already used; reconnecting needs the client token of the first connection")
	ErrClientToken   = errors.New("client token does not match the one this access token was first used with")
	ErrLimitExceeded = errors.New("limit exceeded")
)

var (
	namePattern        = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
	clientTokenPattern = regexp.MustCompile(`^[a-zA-Z0-9-]{32,128}$`)
	tunnelIDPattern    = regexp.MustCompile(`^[a-zA-Z0-9_\-+=:]{1,128}$`)
)

// ValidName checks a thing name or service name.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// ValidClientToken checks a local proxy's client token.
func ValidClientToken(s string) bool { return clientTokenPattern.MatchString(s) }

// ValidTunnelID checks the shape of a tunnel id.
func ValidTunnelID(s string) bool { return tunnelIDPattern.MatchString(s) }

// ValidDescription checks a tunnel description: 1..2048 characters, none of
// them control or other non-printing (Unicode category C).
func ValidDescription(s string) bool {
	n := 0
	for _, r := range s {
		n++
		if unicode.In(r, unicode.C) || r == unicode.ReplacementChar {
			return false
		}
	}
	return n >= 1 && n <= MaxDescription
}

// OpenParams is what OpenTunnel asks for.
type OpenParams struct {
	Description     string
	ThingName       string
	Services        []string
	Tags            []Tag
	LifetimeMinutes int // 0 means the default
}

// Validate checks OpenTunnel's parameters against the API model's rules.
func (p *OpenParams) Validate() error {
	if p.Description != "" && !ValidDescription(p.Description) {
		return fmt.Errorf("%w: description must be 1 to 2048 printable characters", ErrInvalid)
	}
	// A tunnel may be opened without a destination config (no thing, no
	// services); a rotation of its destination token gives it one.
	if len(p.Services) > 0 || p.ThingName != "" {
		if err := validDestination(p.ThingName, p.Services); err != nil {
			return err
		}
	}
	if p.LifetimeMinutes < 0 || p.LifetimeMinutes > MaxLifetimeMinutes {
		return fmt.Errorf("%w: timeoutConfig.maxLifetimeTimeoutMinutes must be between 1 and 720", ErrInvalid)
	}
	if len(p.Tags) > MaxTags {
		return fmt.Errorf("%w: at most %d tags are allowed", ErrInvalid, MaxTags)
	}
	for _, t := range p.Tags {
		if k, v := utf8.RuneCountInString(t.Key), utf8.RuneCountInString(t.Value); k < 1 || k > 128 || v > 256 {
			return fmt.Errorf("%w: tag keys are 1 to 128 characters and values at most 256", ErrInvalid)
		}
	}
	return nil
}

// Tokens are the access tokens of a new tunnel, or the new ones of a
// rotation's sides; shown once.
type Tokens struct {
	Source      string
	Destination string
}

// New builds an open tunnel for account in region from validated params,
// with fresh random id and tokens. Only the tokens' hashes are kept in the
// returned Tunnel.
func New(accountID, region string, p OpenParams, now time.Time) (Tunnel, Tokens, error) {
	if err := p.Validate(); err != nil {
		return Tunnel{}, Tokens{}, err
	}
	id, err := newTunnelID()
	if err != nil {
		return Tunnel{}, Tokens{}, err
	}
	var tok Tokens
	if tok.Source, err = NewAccessToken(); err != nil {
		return Tunnel{}, Tokens{}, err
	}
	if tok.Destination, err = NewAccessToken(); err != nil {
		return Tunnel{}, Tokens{}, err
	}
	life := p.LifetimeMinutes
	if life == 0 {
		life = DefaultLifetimeMinutes
	}
	now = now.UTC()
	t := Tunnel{
		AccountID:       accountID,
		ID:              id,
		ARN:             fmt.Sprintf("arn:aws:iot:%s:%s:tunnel/%s", region, accountID, id),
		Description:     p.Description,
		ThingName:       p.ThingName,
		Services:        append([]string(nil), p.Services...),
		Tags:            append([]Tag(nil), p.Tags...),
		Status:          StatusOpen,
		LifetimeMinutes: life,
		CreatedAt:       now,
		LastUpdatedAt:   now,
		Source:          Side{TokenHash: HashToken(tok.Source), LastUpdatedAt: now},
		Destination:     Side{TokenHash: HashToken(tok.Destination), LastUpdatedAt: now},
	}
	return t, tok, nil
}

// ThingARN is the ARN of a thing.
func ThingARN(region, accountID, name string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:thing/%s", region, accountID, name)
}

// newTunnelID returns a random (version 4) UUID in lower case, the form of
// AWS's tunnel ids. Tunnels stored before ids were UUIDs keep their 32 hex
// digits: both fit the model's TunnelId pattern, which is all that is
// checked.
func newTunnelID() (string, error) {
	id, err := uuid.NewRandom()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// NewAccessToken returns a random access token of 384 bits, base64url.
func NewAccessToken() (string, error) {
	var b [48]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "AQ" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// RandomHex returns n random bytes as hex (ids, thing ids, access keys).
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// HashToken is how access and client tokens are stored and looked up.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Admit applies the data plane's token rules to a handshake on side mode of
// t, whose side's TokenHash the caller matched against tokenHash. clientToken
// may be empty. On success the side is updated (client token bound or token
// spent, connected) and the caller must persist t. A reconnect with the same
// client token replaces the connected peer; the caller drops the old one.
func Admit(t *Tunnel, mode Mode, tokenHash []byte, clientToken string, now time.Time) error {
	if t.Status != StatusOpen || t.Expired(now) {
		return ErrClosed
	}
	want := t.Side(mode)
	if subtle.ConstantTimeCompare(want.TokenHash, tokenHash) != 1 {
		other := t.Side(otherMode(mode))
		if subtle.ConstantTimeCompare(other.TokenHash, tokenHash) == 1 {
			return ErrWrongMode
		}
		return ErrNotFound
	}
	if len(t.Services) == 0 {
		// Refused before the token is spent, so that it still connects
		// once the tunnel has a destination config.
		return ErrNoDestination
	}
	switch {
	case want.Spent:
		return ErrTokenSpent
	case want.ClientTokenHash != nil:
		if clientToken == "" {
			return ErrTokenSpent
		}
		if subtle.ConstantTimeCompare(want.ClientTokenHash, HashToken(clientToken)) != 1 {
			return ErrClientToken
		}
	case clientToken != "":
		want.ClientTokenHash = HashToken(clientToken)
	default:
		want.Spent = true
	}
	want.Connected = true
	want.LastUpdatedAt = now.UTC()
	t.LastUpdatedAt = now.UTC()
	return nil
}

func otherMode(m Mode) Mode {
	if m == ModeSource {
		return ModeDestination
	}
	return ModeSource
}
