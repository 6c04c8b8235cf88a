package tunnel

import (
	"errors"
	"strings"
	"testing"
)

func TestCertificateIDFromARN(t *testing.T) {
	id := strings.Repeat("ab", 32)
	for _, c := range []struct {
		arn string
		ok  bool
	}{
		{CertificateARN("us-east-1", "123456789012", id), true},
		{"arn:aws:iot:eu-west-1:1:cert/" + id, true},
		{"arn:aws:iot:us-east-1:123456789012:cert/" + strings.ToUpper(id), false},
		{"arn:aws:iot:us-east-1:123456789012:cert/" + id[:62], false},
		{"arn:aws:iot:us-east-1:123456789012:thing/" + id, false},
		{"arn:aws:s3:us-east-1:123456789012:cert/" + id, false},
		{"arn:aws:iot:us-east-1:123456789012:cert/" + id + ":x", false},
		{"", false},
	} {
		got, ok := CertificateIDFromARN(c.arn)
		if ok != c.ok || (ok && got != id) {
			t.Errorf("%q: %q %v, want ok=%v", c.arn, got, ok, c.ok)
		}
	}
}

func TestUpdateCertStatus(t *testing.T) {
	for _, c := range []struct {
		from, to CertStatus
		err      error
	}{
		{CertActive, CertInactive, nil},
		{CertInactive, CertActive, nil},
		{CertActive, CertRevoked, nil},
		{CertRevoked, CertRevoked, nil},
		{CertRevoked, CertActive, ErrCertRevoked},
		{CertRevoked, CertInactive, ErrCertRevoked},
		{CertActive, "PENDING_TRANSFER", ErrInvalid},
		{CertActive, "active", ErrInvalid},
	} {
		if err := UpdateCertStatus(c.from, c.to); !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%s -> %s: %v, want %v", c.from, c.to, err, c.err)
		}
	}
}
