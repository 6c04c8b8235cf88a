package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Test credentials; the fake service verifies signatures made with them.
const (
	testAccessKey = "AKIDWARRENTEST"
	testSecretKey = "warren/test/secret/key"
	testRegion    = "eu-central-1"
)

var testCreds = aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}

// recorded is one request the fake service received.
type recorded struct {
	Method, Path, RawQuery string
	Target, ContentType    string
	SDKRequest             string // amz-sdk-request
	InvocationID           string // amz-sdk-invocation-id
	Body                   []byte
	SigErr                 error // nil when the SigV4 signature verified
}

// reply is the fake service's answer to one request.
type reply struct {
	status int
	header map[string]string
	body   string
	drop   bool // close the connection without answering
}

// fakeService answers the tunnel JSON API and the things REST API with
// replies chosen by the test, and records what it was sent. It only checks
// request shape; it is not a model of the service.
type fakeService struct {
	*httptest.Server
	signingName string // expected in the credential scope; by path when empty

	mu       sync.Mutex
	requests []recorded
	answer   func(r recorded, n int) reply // n counts requests, from 1
}

func newFakeService(t *testing.T, answer func(r recorded, n int) reply) *fakeService {
	f := &fakeService{answer: answer}
	f.Server = httptest.NewServer(f)
	t.Cleanup(f.Close)
	return f
}

func newTLSFakeService(t *testing.T, answer func(r recorded, n int) reply) *fakeService {
	f := &fakeService{answer: answer}
	f.Server = httptest.NewTLSServer(f)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec := recorded{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Target: r.Header.Get("X-Amz-Target"), ContentType: r.Header.Get("Content-Type"),
		SDKRequest: r.Header.Get("Amz-Sdk-Request"), InvocationID: r.Header.Get("Amz-Sdk-Invocation-Id"),
		Body: body,
	}
	service := "iot"
	switch {
	case strings.HasPrefix(rec.Target, accountService.targetPrefix):
		service = accountService.signingName
	case rec.Target != "":
		service = tunnelSigningName
	}
	rec.SigErr = verifySigV4(r, body, testCreds, service, testRegion)

	f.mu.Lock()
	f.requests = append(f.requests, rec)
	n := len(f.requests)
	f.mu.Unlock()

	rep := f.answer(rec, n)
	if rep.drop {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	if rep.status == 0 {
		rep.status = http.StatusOK
	}
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (f *fakeService) recorded() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.requests...)
}

// verifySigV4 recomputes the request's signature with the SDK's signer, over
// exactly the headers the client said it signed, and compares.
func verifySigV4(r *http.Request, body []byte, creds aws.Credentials, service, region string) error {
	auth := r.Header.Get("Authorization")
	fields, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return fmt.Errorf("authorization %q is not SigV4", auth)
	}
	var credential, signedHeaders string
	for _, f := range strings.Split(fields, ", ") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			signedHeaders = v
		}
	}
	date, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("X-Amz-Date: %w", err)
	}
	wantScope := fmt.Sprintf("%s/%s/%s/%s/aws4_request", creds.AccessKeyID, date.Format("20060102"), region, service)
	if credential != wantScope {
		return fmt.Errorf("credential scope %q, want %q", credential, wantScope)
	}
	check, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	for _, h := range strings.Split(signedHeaders, ";") {
		if h != "host" && h != "content-length" {
			check.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, check, hex.EncodeToString(sum[:]), service, region, date); err != nil {
		return err
	}
	if got := check.Header.Get("Authorization"); got != auth {
		return fmt.Errorf("signature mismatch:\n sent %s\n want %s", auth, got)
	}
	return nil
}
