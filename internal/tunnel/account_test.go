package tunnel

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseBandwidth(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  string // part of the error, "" for success
	}{
		{"0", 0, ""},
		{"0/s", 0, ""},
		{"default", BandwidthDefault, ""},
		{"Unlimited", 0, ""},
		{" DEFAULT ", BandwidthDefault, ""},
		{"65536", 65536, ""},
		{"100B", 100, ""},
		{"100b/s", 100, ""},
		{"800KB", 800_000, ""},
		{"800kb", 800_000, ""},
		{"800KB/s", 800_000, ""},
		{"800 KB/S", 800_000, ""},
		{"4MB", 4_000_000, ""},
		{"4mb/s", 4_000_000, ""},
		{"2GB", 2_000_000_000, ""},
		{"1KiB", 1024, ""},
		{"1kib", 1024, ""},
		{"1.5MiB", 1_572_864, ""},
		{"1.5mib/s", 1_572_864, ""},
		{"3GiB", 3 << 30, ""},
		{"0.5KB", 500, ""},
		{"1.0005KB", 1001, ""}, // 1000.5 rounds half up
		{"0.5", 1, ""},
		{"0.4", 0, "less than 1 byte"},
		{"0.001KB", 1, ""},
		{"", 0, "want a number"},
		{"-1", 0, "want a number"},
		{"-5MB", 0, "want a number"},
		{"fast", 0, "want a number"},
		{"1e6", 0, "want a number"},
		{"10Mbit", 0, "unknown unit"},
		{"10 MB per second", 0, "want a number"},
		{"1.", 0, "want a number"},
		{".5MB", 0, "want a number"},
		{"0x10", 0, "want a number"},
		{"12parsecs", 0, "unknown unit"},
		{"/s", 0, "want a number"},
		{"99999999999GB", 0, "too large"},
		{"9223372036854775807", 9223372036854775807, ""},
		{"9223372036854775808", 0, "too large"},
	}
	for _, c := range cases {
		got, err := ParseBandwidth(c.in)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("ParseBandwidth(%q): %v", c.in, err)
		case c.err == "" && got != c.want:
			t.Errorf("ParseBandwidth(%q) = %d, want %d", c.in, got, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseBandwidth(%q) = %d, %v; want an error with %q", c.in, got, err, c.err)
		}
	}
}

func TestFormatBandwidth(t *testing.T) {
	cases := []struct {
		in   int64
		want string
	}{
		{BandwidthDefault, "default"},
		{0, "unlimited"},
		{1, "1B/s"},
		{999, "999B/s"},
		{1000, "1KB/s"},
		{1024, "1KiB/s"},
		{800_000, "800KB/s"},
		{1_500_000, "1.5MB/s"},
		{1_572_864, "1.5MiB/s"},
		{4_000_000, "4MB/s"},
		{1_536_000, "1536KB/s"},
		{1_234_567, "1234567B/s"},
		{3 << 30, "3GiB/s"},
		{2_500_000_000, "2.5GB/s"},
	}
	for _, c := range cases {
		got := FormatBandwidth(c.in)
		if got != c.want {
			t.Errorf("FormatBandwidth(%d) = %q, want %q", c.in, got, c.want)
		}
		// What is written reads back as the same limit.
		back, err := ParseBandwidth(got)
		if want := c.in; err != nil || back != want {
			t.Errorf("ParseBandwidth(FormatBandwidth(%d) = %q) = %d, %v", c.in, got, back, err)
		}
	}
}

func TestNewAccount(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, err := NewAccount("alice@example.com", false, 800_000, now)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidAccountID(a.ID) || !strings.HasPrefix(a.AccessKeyID, "AKIA") || len(a.AccessKeyID) != 20 ||
		len(a.SecretAccessKey) != 40 || a.Name != "alice@example.com" || a.Admin || a.BandwidthLimit != 800_000 || !a.CreatedAt.Equal(now) {
		t.Fatalf("NewAccount: %+v", a)
	}
	b, _ := NewAccount("bob", true, BandwidthDefault, now)
	if b.ID == a.ID || b.AccessKeyID == a.AccessKeyID || b.SecretAccessKey == a.SecretAccessKey || !b.Admin {
		t.Fatal("two accounts share an id or a key")
	}
	for _, bad := range []struct {
		name  string
		limit int64
	}{
		{"", 0}, {strings.Repeat("a", 129), 0}, {"a b", 0}, {"a/b", 0}, {"ü", 0}, {"[default]", 0}, {"ok", -2},
	} {
		if _, err := NewAccount(bad.name, false, bad.limit, now); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewAccount(%q, %d): %v, want ErrInvalid", bad.name, bad.limit, err)
		}
	}
	if !ValidAccountName(strings.Repeat("a", 128)) || !ValidAccountName("a.b_c-d@e") {
		t.Error("valid names refused")
	}
	for _, id := range []string{"12345678901", "1234567890123", "12345678901a", ""} {
		if ValidAccountID(id) {
			t.Errorf("ValidAccountID(%q)", id)
		}
	}
}
