package tunnel

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// CertStatus is a device certificate's status, as AWS IoT names it.
type CertStatus string

// The statuses a device certificate can have here. Only an ACTIVE
// certificate connects to the MQTT broker; REVOKED is final.
const (
	CertActive   CertStatus = "ACTIVE"
	CertInactive CertStatus = "INACTIVE"
	CertRevoked  CertStatus = "REVOKED"
)

// Certificate is a device certificate an account created: what identifies a
// device to the MQTT broker. Its private key is never kept.
type Certificate struct {
	ID        string // hex SHA-256 of the DER certificate, as AWS IoT's certificate ids
	AccountID string
	PEM       string
	Status    CertStatus
	CreatedAt time.Time
}

// ErrCertRevoked is a change of a revoked certificate's status.
var ErrCertRevoked = errors.New("the certificate is revoked; a revoked certificate cannot be activated again")

var certIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidCertificateID reports whether s has the form of a certificate id (64
// lowercase hex digits).
func ValidCertificateID(s string) bool { return certIDPattern.MatchString(s) }

// CertificateARN is the ARN of a device certificate.
func CertificateARN(region, accountID, id string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:cert/%s", region, accountID, id)
}

// CertificateIDFromARN is the certificate id at the end of a certificate
// ARN; false if arn is not one.
func CertificateIDFromARN(arn string) (string, bool) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iot" {
		return "", false
	}
	id, ok := strings.CutPrefix(parts[5], "cert/")
	if !ok || !ValidCertificateID(id) {
		return "", false
	}
	return id, true
}

// UpdateCertStatus checks a change of a certificate's status: a revoked
// certificate stays revoked.
func UpdateCertStatus(from, to CertStatus) error {
	switch to {
	case CertActive, CertInactive, CertRevoked:
	default:
		return fmt.Errorf("%w: newStatus %q must be ACTIVE, INACTIVE or REVOKED", ErrInvalid, to)
	}
	if from == CertRevoked && to != CertRevoked {
		return ErrCertRevoked
	}
	return nil
}
