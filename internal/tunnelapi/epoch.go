// Package tunnelapi owns the wire shapes of the IoT Secure Tunneling API
// (2018-10-05) as the AWS model defines them, and of Warren's own account
// administration API (WarrenAccounts), for both Warren's server
// (internal/api) and its client (internal/admin).
package tunnelapi

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// EpochTime carries a timestamp as the JSON protocols send it: a number of
// seconds since the Unix epoch, with an optional fraction.
type EpochTime time.Time

// NewEpoch returns t as an EpochTime, or nil for nil.
func NewEpoch(t *time.Time) *EpochTime {
	if t == nil {
		return nil
	}
	e := EpochTime(*t)
	return &e
}

// Time returns e as a time, or nil for nil.
func (e *EpochTime) Time() *time.Time {
	if e == nil {
		return nil
	}
	t := time.Time(*e)
	return &t
}

// MarshalJSON writes the seconds exactly, trimming trailing zero digits.
func (e EpochTime) MarshalJSON() ([]byte, error) {
	t := time.Time(e)
	sec, ns := t.Unix(), int64(t.Nanosecond())
	sign := ""
	if sec < 0 && ns != 0 { // -1.5 s is Unix() -2 and 500 ms
		sign, sec, ns = "-", -(sec + 1), 1e9-ns
	}
	s := sign + strconv.FormatInt(sec, 10)
	if ns != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%09d", ns), "0")
	}
	return []byte(s), nil
}

// UnmarshalJSON reads epoch seconds. Plain decimals are parsed exactly, so
// "1795770000.123" is 123 ms and not the nearest float.
func (e *EpochTime) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	t, err := parseEpochSeconds(string(b))
	if err != nil {
		return err
	}
	*e = EpochTime(t)
	return nil
}

func parseEpochSeconds(s string) (time.Time, error) {
	if !strings.ContainsAny(s, "eE") {
		whole, frac, _ := strings.Cut(s, ".")
		sec, err := strconv.ParseInt(whole, 10, 64)
		if err == nil && len(frac) <= 9 && allDigits(frac) {
			ns, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
			if strings.HasPrefix(whole, "-") {
				ns = -ns
			}
			return time.Unix(sec, ns).UTC(), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, fmt.Errorf("timestamp %q is not epoch seconds", s)
	}
	// A float64 near today's epoch is good to about a microsecond; keep no
	// more than that, as Python's datetime does.
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC(), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
