package tunnel

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"
)

// BandwidthDefault as an account's BandwidthLimit means the server's default
// limit applies to it. 0 means unlimited; a positive limit is in bytes per
// second.
const BandwidthDefault int64 = -1

// Account owns tunnels and things. Its secret key is kept in the clear
// because SigV4 verification needs it, like AWS's own key store.
type Account struct {
	ID              string // 12 digits, as an AWS account id
	Name            string // unique; see ValidAccountName
	Admin           bool   // may administer accounts
	AccessKeyID     string
	SecretAccessKey string
	// BandwidthLimit is the account's own limit: BandwidthDefault, 0
	// (unlimited) or bytes per second.
	BandwidthLimit int64
	CreatedAt      time.Time
}

var (
	accountNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.@-]{1,128}$`)
	accountIDPattern   = regexp.MustCompile(`^[0-9]{12}$`)
)

// ValidAccountName checks an account name: 1 to 128 of a-z, A-Z, 0-9 and
// _ . @ -, so that it can also name a profile in an AWS credentials file.
func ValidAccountName(s string) bool { return accountNamePattern.MatchString(s) }

// ValidAccountID checks the shape of an account id: 12 digits.
func ValidAccountID(s string) bool { return accountIDPattern.MatchString(s) }

// ValidBandwidthLimit checks an account's own bandwidth limit.
func ValidBandwidthLimit(n int64) bool { return n >= BandwidthDefault }

// NewAccount builds an account with a fresh random id and key pair, in the
// forms AWS uses (12-digit id, AKIA... key id, 40-character secret).
func NewAccount(name string, admin bool, bandwidthLimit int64, now time.Time) (Account, error) {
	if !ValidAccountName(name) {
		return Account{}, fmt.Errorf("%w: account name %q must be 1 to 128 of the characters a-z A-Z 0-9 _ . @ -", ErrInvalid, name)
	}
	if !ValidBandwidthLimit(bandwidthLimit) {
		return Account{}, fmt.Errorf("%w: bandwidth limit %d must be -1 (the server's default), 0 (unlimited) or bytes per second", ErrInvalid, bandwidthLimit)
	}
	return Account{
		ID:              randomFrom("0123456789", 12),
		Name:            name,
		Admin:           admin,
		AccessKeyID:     "AKIA" + randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
		SecretAccessKey: randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40),
		BandwidthLimit:  bandwidthLimit,
		CreatedAt:       now.UTC(),
	}, nil
}

// randomFrom returns n symbols of alphabet drawn from crypto/rand.
func randomFrom(alphabet string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	for i, c := range b {
		// 256 is not a multiple of every alphabet's size; the slight bias is
		// irrelevant for identifiers, and the secret's alphabet has 64
		// symbols, which divide 256.
		b[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(b)
}

// bandwidthUnits are the units ParseBandwidth accepts and FormatBandwidth
// writes, largest first, decimal before binary of the same magnitude.
var bandwidthUnits = []struct {
	name  string
	bytes int64
}{
	{"GB", 1e9}, {"GiB", 1 << 30},
	{"MB", 1e6}, {"MiB", 1 << 20},
	{"KB", 1e3}, {"KiB", 1 << 10},
	{"B", 1},
}

var bandwidthPattern = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)$`)

// ParseBandwidth parses a bandwidth limit: "default" (BandwidthDefault),
// "0" or "unlimited" (0), or a number of bytes per second with an optional unit
// (B, KB=1000, MB, GB, KiB=1024, MiB, GiB; any case) and an optional "/s":
// "800KB", "4MB/s", "1.5MiB", "65536". A fraction is rounded to the nearest
// byte.
func ParseBandwidth(s string) (int64, error) {
	v := strings.TrimSpace(s)
	switch {
	case strings.EqualFold(v, "default"):
		return BandwidthDefault, nil
	case strings.EqualFold(v, "unlimited"):
		return 0, nil
	}
	if len(v) >= 2 && strings.EqualFold(v[len(v)-2:], "/s") {
		v = strings.TrimSpace(v[:len(v)-2])
	}
	m := bandwidthPattern.FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("bandwidth %q: want a number of bytes per second with an optional unit (800KB, 4MB, 1.5MiB), 0 or unlimited, or default", s)
	}
	unit := int64(1)
	if m[2] != "" {
		unit = 0
		for _, u := range bandwidthUnits {
			if strings.EqualFold(m[2], u.name) {
				unit = u.bytes
			}
		}
		if unit == 0 {
			return 0, fmt.Errorf("bandwidth %q: unknown unit %q: use B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024)", s, m[2])
		}
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("bandwidth %q: %q is not a number", s, m[1])
	}
	r.Mul(r, new(big.Rat).SetInt64(unit))
	// Round half up: floor(r + 1/2).
	r.Add(r, big.NewRat(1, 2))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, fmt.Errorf("bandwidth %q is too large", s)
	}
	if n.Sign() == 0 && r.Cmp(big.NewRat(1, 2)) != 0 {
		return 0, fmt.Errorf("bandwidth %q is less than 1 byte per second; 0 means unlimited", s)
	}
	return n.Int64(), nil
}

// FormatBandwidth writes a limit as ParseBandwidth reads it: "default",
// "unlimited", or the shortest exact form in bytes per second ("800KB/s",
// "1.5MiB/s", "1234B/s").
func FormatBandwidth(n int64) string {
	switch {
	case n < 0:
		return "default"
	case n == 0:
		return "unlimited"
	}
	best := fmt.Sprintf("%dB/s", n)
	for _, u := range bandwidthUnits[:len(bandwidthUnits)-1] {
		if n < u.bytes {
			continue
		}
		whole, rest := n/u.bytes, n%u.bytes
		// At most three decimals, and only if they are exact.
		if rest*1000%u.bytes != 0 {
			continue
		}
		s := fmt.Sprint(whole)
		if rest != 0 {
			s += strings.TrimRight(fmt.Sprintf(".%03d", rest*1000/u.bytes), "0")
		}
		if s += u.name + "/s"; len(s) < len(best) {
			best = s
		}
	}
	return best
}
