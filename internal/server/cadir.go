package server

import (
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CADir is the directory (inside the data directory) that holds the CA
// certificate under OpenSSL's hashed file name. The official local proxy's
// -c adds a verify *path* (OpenSSL's hash directory lookup), which finds a CA
// only as <subject-hash>.0, so `-c warren-data/ca` must look like that.
const CADir = "ca"

// writeCADir writes ca.pem and <hash>.0 (both the CA certificate) into dir.
func writeCADir(dir string, ca *x509.Certificate) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hash, err := subjectHash(ca)
	if err != nil {
		return err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	for _, name := range []string{caCertFile, fmt.Sprintf("%08x.0", hash)} {
		if err := writeFileAtomic(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// subjectHash is OpenSSL's X509_NAME_hash (what `openssl x509 -hash` prints):
// the first four bytes, little-endian, of the SHA-1 of the subject's
// canonical encoding. That encoding is each RDN's SET with every value as a
// UTF8String, ASCII-lowercased, trimmed and with inner whitespace runs
// collapsed, concatenated without the outer SEQUENCE.
func subjectHash(c *x509.Certificate) (uint32, error) {
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(c.RawSubject, &rdns); err != nil {
		return 0, fmt.Errorf("parse subject: %w", err)
	}
	type atv struct {
		Type  asn1.ObjectIdentifier
		Value string `asn1:"utf8"`
	}
	var canon []byte
	for _, rdn := range rdns {
		var set []byte
		for _, a := range rdn {
			s, ok := a.Value.(string)
			if !ok {
				return 0, fmt.Errorf("subject attribute %v is not a string", a.Type)
			}
			b, err := asn1.Marshal(atv{Type: a.Type, Value: canonicalValue(s)})
			if err != nil {
				return 0, err
			}
			set = append(set, b...)
		}
		b, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: set})
		if err != nil {
			return 0, err
		}
		canon = append(canon, b...)
	}
	sum := sha1.Sum(canon)
	return binary.LittleEndian.Uint32(sum[:4]), nil
}

func canonicalValue(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v'
	}), " ")
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
