package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/warrentunnel/warren/internal/tunnel"
)

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDateForm  = "20060102T150405Z"
	// maxClockSkew is how far a request's signing time may be from the
	// server's clock, as AWS allows.
	maxClockSkew = 5 * time.Minute
)

// sigV4Auth is a parsed SigV4 Authorization header.
type sigV4Auth struct {
	accessKeyID   string
	date          string // YYYYMMDD of the credential scope
	region        string
	service       string
	signedHeaders []string
	signature     string
}

// parseAuthorization parses `AWS4-HMAC-SHA256 Credential=AKID/date/region/
// service/aws4_request, SignedHeaders=a;b, Signature=hex`.
func parseAuthorization(h string) (sigV4Auth, error) {
	var s sigV4Auth
	alg, rest, _ := strings.Cut(h, " ")
	if alg != sigAlgorithm {
		return s, errAuth(codeIncompleteSig, "the Authorization header must use the %s algorithm (AWS Signature Version 4)", sigAlgorithm)
	}
	params := map[string]string{}
	for _, p := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return s, errAuth(codeIncompleteSig, "the Authorization header has a malformed parameter %q", p)
		}
		params[k] = v
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if params[k] == "" {
			return s, errAuth(codeIncompleteSig, "the Authorization header needs a %s parameter", k)
		}
	}
	scope := strings.Split(params["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || slices.Contains(scope, "") {
		return s, errAuth(codeIncompleteSig, "the Authorization header's Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request")
	}
	s.accessKeyID, s.date, s.region, s.service = scope[0], scope[1], scope[2], scope[3]
	s.signedHeaders = strings.Split(params["SignedHeaders"], ";")
	s.signature = params["Signature"]
	return s, nil
}

// authenticate checks r's SigV4 signature over body for service and returns
// the signing account.
func (a *API) authenticate(ctx context.Context, r *http.Request, body []byte, service string) (tunnel.Account, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return tunnel.Account{}, errAuth(codeMissingAuth, "the request is not signed: sign it with AWS Signature Version 4 using the access key of a Warren account")
	}
	s, err := parseAuthorization(h)
	if err != nil {
		return tunnel.Account{}, err
	}
	signedAt, err := a.checkScope(r, s, service)
	if err != nil {
		return tunnel.Account{}, err
	}
	acct, err := a.store.AccountByAccessKey(ctx, s.accessKeyID)
	if errors.Is(err, tunnel.ErrNotFound) {
		return tunnel.Account{}, errAuth(codeUnrecognizedClient, "the access key ID %s is not known to this server", s.accessKeyID)
	}
	if err != nil {
		return tunnel.Account{}, err
	}
	ok, err := a.signatureMatches(ctx, r, body, s, acct, signedAt)
	if err != nil {
		return tunnel.Account{}, err
	}
	if !ok {
		return tunnel.Account{}, errAuth(codeInvalidSig, "signature mismatch: the request's signature was not made with the secret access key of %s, or the request changed after signing", s.accessKeyID)
	}
	return acct, nil
}

// checkScope checks the signing date, region and service, and returns the
// signing time.
func (a *API) checkScope(r *http.Request, s sigV4Auth, service string) (time.Time, error) {
	if !slices.Contains(s.signedHeaders, "host") || !slices.Contains(s.signedHeaders, "x-amz-date") {
		return time.Time{}, errAuth(codeIncompleteSig, "the signature must cover the host and x-amz-date headers")
	}
	amzDate := r.Header.Get("X-Amz-Date")
	signedAt, err := time.Parse(amzDateForm, amzDate)
	if err != nil {
		return time.Time{}, errAuth(codeIncompleteSig, "the X-Amz-Date header must hold the signing time as YYYYMMDD'T'HHMMSS'Z'")
	}
	if s.date != amzDate[:8] {
		return time.Time{}, errAuth(codeInvalidSig, "the credential scope's date %s is not the date of X-Amz-Date %s", s.date, amzDate)
	}
	// Older AWS CLI v2 releases (Debian's 2.9) sign IoT's REST calls with
	// the signing name execute-api, as IoT's model once said.
	if !strings.EqualFold(s.service, service) && !(service == "iot" && s.service == "execute-api") {
		return time.Time{}, errAuth(codeInvalidSig, "the credential should be scoped to service '%s', not '%s'", service, s.service)
	}
	if s.region != a.region {
		return time.Time{}, errAuth(codeInvalidSig, "the credential should be scoped to this server's region '%s', not '%s'", a.region, s.region)
	}
	now := a.now().UTC()
	switch {
	case signedAt.Before(now.Add(-maxClockSkew)):
		return time.Time{}, errAuth(codeInvalidSig, "signature expired: %s is more than 5 minutes before the server's time %s", amzDate, now.Format(amzDateForm))
	case signedAt.After(now.Add(maxClockSkew)):
		return time.Time{}, errAuth(codeInvalidSig, "signature not yet current: %s is more than 5 minutes after the server's time %s", amzDate, now.Format(amzDateForm))
	}
	return signedAt, nil
}

// signatureMatches signs again, with the account's secret, a copy of r that
// holds only the headers the client signed, and compares the signatures.
func (a *API) signatureMatches(ctx context.Context, r *http.Request, body []byte, s sigV4Auth, acct tunnel.Account, signedAt time.Time) (bool, error) {
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	creds := aws.Credentials{AccessKeyID: acct.AccessKeyID, SecretAccessKey: acct.SecretAccessKey}
	want, err := hex.DecodeString(s.signature)
	if err != nil {
		return false, nil
	}
	for _, host := range hostVariants(r.Host) {
		clone := signedCopy(r, s.signedHeaders, host)
		if err := a.signer.SignHTTP(ctx, creds, clone, payloadHash, s.service, s.region, signedAt); err != nil {
			return false, err
		}
		got, err := hex.DecodeString(signatureOf(clone.Header.Get("Authorization")))
		if err != nil {
			return false, err
		}
		if subtle.ConstantTimeCompare(got, want) == 1 {
			return true, nil
		}
	}
	return false, nil
}

// signedCopy is a request the SDK's signer signs exactly as the client did:
// same method, path, query and signed headers, and nothing else. The signer
// adds host and, when the length is positive, content-length on its own, so
// the length is kept only if the client signed it.
func signedCopy(r *http.Request, signed []string, host string) *http.Request {
	u := *r.URL
	u.Scheme, u.Host = "", host
	c := &http.Request{Method: r.Method, URL: &u, Host: host, Header: http.Header{}}
	for _, name := range signed {
		switch name {
		case "host":
		case "content-length":
			c.ContentLength = r.ContentLength
		default:
			if v := r.Header.Values(name); len(v) > 0 {
				c.Header[http.CanonicalHeaderKey(name)] = v
			}
		}
	}
	return c
}

// hostVariants are the host header values a client may have signed: clients
// leave a default port (80, 443) out of the signature even where they send it.
func hostVariants(host string) []string {
	h, port, err := net.SplitHostPort(host)
	if err != nil || (port != "80" && port != "443") {
		return []string{host}
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return []string{host, h}
}

// signatureOf extracts the Signature parameter of an Authorization header.
func signatureOf(h string) string {
	_, sig, _ := strings.Cut(h, "Signature=")
	return sig
}
