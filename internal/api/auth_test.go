package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
)

func TestWrongSecretRefused(t *testing.T) {
	f := newFixture(t)
	api := iotsecuretunneling.New(f.v1Session(f.acct.AccessKeyID, "not-the-secret"))
	_, err := api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{})
	var rf awserr.RequestFailure
	if !awserrAs(err, &rf) || rf.Code() != codeInvalidSig || rf.StatusCode() != http.StatusForbidden {
		t.Fatalf("wrong secret: %v", err)
	}
	// A key of one account with the secret of another is no better.
	api = iotsecuretunneling.New(f.v1Session(f.acct.AccessKeyID, f.other.SecretAccessKey))
	if _, err := api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{}); !awserrAs(err, &rf) || rf.Code() != codeInvalidSig {
		t.Fatalf("another account's secret: %v", err)
	}
}

func awserrAs(err error, target *awserr.RequestFailure) bool {
	rf, ok := err.(awserr.RequestFailure)
	if ok {
		*target = rf
	}
	return ok
}

func TestAuthFailures(t *testing.T) {
	f := newFixture(t)
	listTunnels := map[string]string{"X-Amz-Target": targetPrefix + "ListTunnels", "Content-Type": "application/x-amz-json-1.1"}
	tests := []struct {
		name string
		req  signRaw
		code string
		msg  string
	}{
		{"unsigned", signRaw{header: listTunnels}, codeMissingAuth, "not signed"},
		{"unknown key", signRaw{header: listTunnels, service: signingNameTunnels, akid: "AKIAUNKNOWN", secret: "x"}, codeUnrecognizedClient, "AKIAUNKNOWN"},
		{"stale date", signRaw{header: listTunnels, service: signingNameTunnels, at: time.Now().Add(-6 * time.Minute)}, codeInvalidSig, "expired"},
		{"future date", signRaw{header: listTunnels, service: signingNameTunnels, at: time.Now().Add(6 * time.Minute)}, codeInvalidSig, "not yet current"},
		{"iot scope for tunnels", signRaw{header: listTunnels, service: signingNameIoT}, codeInvalidSig, "IoTSecuredTunneling"},
		{"tunnels scope for things", signRaw{method: http.MethodGet, path: "/things", service: signingNameTunnels}, codeInvalidSig, "'iot'"},
		{"other service", signRaw{header: listTunnels, service: "execute-api"}, codeInvalidSig, "execute-api"},
		{"wrong region", signRaw{header: listTunnels, service: signingNameTunnels, region: "eu-west-1"}, codeInvalidSig, "eu-west-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.body = []byte(`{}`)
			r := f.do(t, tc.req)
			wantError(t, r, http.StatusForbidden, tc.code)
			if !strings.Contains(r.Message, tc.msg) {
				t.Errorf("message %q does not mention %q", r.Message, tc.msg)
			}
		})
	}
}

// signed returns a request to the test server signed over body.
func (f *fixture) signed(t *testing.T, body []byte, tamper func(*http.Request)) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Target", targetPrefix+"ListTunnels")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	sum := sha256.Sum256(body)
	creds := awsv2.Credentials{AccessKeyID: f.acct.AccessKeyID, SecretAccessKey: f.acct.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), signingNameTunnels, testRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		tamper(req)
	}
	return req
}

func TestSignatureCoversRequest(t *testing.T) {
	f := newFixture(t)
	// Untouched, the raw request passes: it signs content-length, which
	// the SDKs' own clients leave out (covered by the SDK tests).
	if r := f.send(t, f.signed(t, []byte(`{}`), nil)); r.Status != http.StatusOK {
		t.Fatalf("signed request: %d %s", r.Status, r.Body)
	}
	tampered := map[string]func(*http.Request){
		"body": func(r *http.Request) {
			b := []byte(`{"maxResults":1}`)
			r.Body, r.ContentLength = nopCloser{bytes.NewReader(b)}, int64(len(b))
		},
		"signed header": func(r *http.Request) { r.Header.Set("X-Amz-Target", targetPrefix+"OpenTunnel") },
		"body same length": func(r *http.Request) {
			r.Body = nopCloser{bytes.NewReader([]byte(`[]`))}
		},
		"query": func(r *http.Request) { r.URL.RawQuery = "x=1" },
		"signature": func(r *http.Request) {
			h := r.Header.Get("Authorization")
			r.Header.Set("Authorization", h[:len(h)-1]+string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", h[len(h)-1])+1)%16]))
		},
		"signature not hex": func(r *http.Request) {
			r.Header.Set("Authorization", r.Header.Get("Authorization")+"zz")
		},
	}
	for name, tamper := range tampered {
		t.Run(name, func(t *testing.T) {
			r := f.send(t, f.signed(t, []byte(`{}`), tamper))
			if r.Status != http.StatusForbidden || r.Type != codeInvalidSig {
				t.Fatalf("tampered %s: %d %s", name, r.Status, r.Body)
			}
		})
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func TestSignatureCoversPath(t *testing.T) {
	f := newFixture(t)
	sum := sha256.Sum256(nil)
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/things/a", nil)
	creds := awsv2.Credentials{AccessKeyID: f.acct.AccessKeyID, SecretAccessKey: f.acct.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), signingNameIoT, testRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	req.URL.Path = "/things/b"
	wantError(t, f.send(t, req), http.StatusForbidden, codeInvalidSig)
}

func TestSignatureHostWithDefaultPort(t *testing.T) {
	f := newFixture(t)
	// A client that sends Host with the default port signs it without.
	req := f.signed(t, []byte(`{}`), nil)
	req.Host = "warren.example"
	body := []byte(`{}`)
	sum := sha256.Sum256(body)
	creds := awsv2.Credentials{AccessKeyID: f.acct.AccessKeyID, SecretAccessKey: f.acct.SecretAccessKey}
	req.Header.Del("Authorization")
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), signingNameTunnels, testRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	req.Host = "warren.example:443"
	if r := f.send(t, req); r.Status != http.StatusOK {
		t.Fatalf("host with default port: %d %s", r.Status, r.Body)
	}
	// But another host than the one signed is refused.
	req = f.signed(t, body, func(r *http.Request) { r.Host = "evil.example" })
	if r := f.send(t, req); r.Status != http.StatusForbidden {
		t.Fatalf("other host: %d %s", r.Status, r.Body)
	}
}

func TestMalformedAuthorization(t *testing.T) {
	f := newFixture(t)
	for _, h := range []string{
		"AWS4-HMAC-SHA1 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=00",
		"AWS4-HMAC-SHA256",
		"AWS4-HMAC-SHA256 Credential=AKIA/20240101/us-east-1/iot/aws4_request, Signature=00",
		"AWS4-HMAC-SHA256 Credential=AKIA/20240101/us-east-1/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
		"AWS4-HMAC-SHA256 Credential=AKIA/20240101/us-east-1/iot/aws4_request SignedHeaders=host;x-amz-date Signature=00",
		"AWS4-HMAC-SHA256 Credential=AKIA/20240101/us-east-1/iot/aws4_request, SignedHeaders=host, Signature=00",
	} {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/things", nil)
		req.Header.Set("Authorization", h)
		req.Header.Set("X-Amz-Date", time.Now().UTC().Format(amzDateForm))
		r := f.send(t, req)
		wantError(t, r, http.StatusForbidden, codeIncompleteSig)
	}
	// A missing X-Amz-Date is incomplete too.
	req := f.signed(t, []byte(`{}`), func(r *http.Request) { r.Header.Del("X-Amz-Date") })
	wantError(t, f.send(t, req), http.StatusForbidden, codeIncompleteSig)
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t)
	big := []byte(`{"description":"` + strings.Repeat("x", MaxBodyBytes) + `"}`)
	r := f.send(t, f.signed(t, big, nil))
	wantError(t, r, http.StatusRequestEntityTooLarge, codeTooLarge)
	// Without a declared length the limit holds as well.
	req := f.signed(t, big, func(r *http.Request) { r.ContentLength = -1 })
	r = f.send(t, req)
	wantError(t, r, http.StatusRequestEntityTooLarge, codeTooLarge)
}

// TestErrorShapeJSON checks the error as the v1 JSON 1.1 client parses it,
// message included.
func TestErrorShapeJSON(t *testing.T) {
	f := newFixture(t)
	_, err := f.tunnels(f.acct).DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: aws.String("0123456789abcdef0123456789abcdef")})
	var rf awserr.RequestFailure
	if !awserrAs(err, &rf) || rf.Code() != codeNotFound || !strings.Contains(rf.Message(), "0123456789abcdef0123456789abcdef") || rf.RequestID() == "" {
		t.Fatalf("DescribeTunnel of a missing tunnel: %#v", err)
	}
}

func TestParseAuthorization(t *testing.T) {
	s, err := parseAuthorization("AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/iot/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=abcd")
	if err != nil {
		t.Fatal(err)
	}
	if s.accessKeyID != "AKID" || s.date != "20240102" || s.region != "us-east-1" || s.service != "iot" ||
		strings.Join(s.signedHeaders, ";") != "content-type;host;x-amz-date" || s.signature != "abcd" {
		t.Fatalf("parsed %+v", s)
	}
	// Without spaces after the commas, as some clients write it.
	if _, err := parseAuthorization("AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/iot/aws4_request,SignedHeaders=host;x-amz-date,Signature=abcd"); err != nil {
		t.Fatal(err)
	}
}

func TestHostVariants(t *testing.T) {
	for host, want := range map[string]string{
		"a.example":       "a.example",
		"a.example:8443":  "a.example:8443",
		"a.example:443":   "a.example:443 a.example",
		"127.0.0.1:80":    "127.0.0.1:80 127.0.0.1",
		"[::1]:443":       "[::1]:443 [::1]",
		"[::1]:9000":      "[::1]:9000",
		"not:a:host:port": "not:a:host:port",
	} {
		if got := strings.Join(hostVariants(host), " "); got != want {
			t.Errorf("hostVariants(%q) = %q, want %q", host, got, want)
		}
	}
}
