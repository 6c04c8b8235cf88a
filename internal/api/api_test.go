package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	credsv2 "github.com/aws/aws-sdk-go-v2/credentials"
	iotv2 "github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/iot"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
	"go.uber.org/goleak"

	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/tunnel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testRegion = "us-east-1"

// clock is real time plus an offset the test moves forward, so SDK
// signatures (made with the real clock) stay valid while lifetimes pass.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// recordingRelay records the tunnels it was told to close, and the
// rotations it was told of ("id SOURCE", "id DESTINATION").
type recordingRelay struct {
	mu      sync.Mutex
	closed  []string
	rotated []string
}

func (r *recordingRelay) RotateTunnel(id string, modes ...tunnel.Mode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range modes {
		r.rotated = append(r.rotated, id+" "+strings.ToUpper(string(m)))
	}
}

func (r *recordingRelay) Rotated() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rotated)
}

func (r *recordingRelay) CloseTunnel(id string) {
	r.mu.Lock()
	r.closed = append(r.closed, id)
	r.mu.Unlock()
}

func (r *recordingRelay) Closed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.closed)
}

type fixture struct {
	t     *testing.T
	store *store.Store
	srv   *httptest.Server
	relay *recordingRelay
	bw    *fakeBandwidth
	clock *clock
	admin tunnel.Account // the admin account, for account administration
	acct  tunnel.Account
	other tunnel.Account // a second account, for isolation checks
	proto atomic.Int32   // HTTP major version of the last request (TLS fixture)
}

// testCursorKey signs the fixture API's nextTokens, so tests can make
// tokens of their own.
var testCursorKey = []byte("0123456789abcdef0123456789abcdef")

func newFixture(t *testing.T) *fixture { return newFixtureTLS(t, false) }

func newFixtureTLS(t *testing.T, useTLS bool) *fixture { return newFixtureWith(t, useTLS, nil) }

// newFixtureWith lets tune change the API's Config (quotas) first.
func newFixtureWith(t *testing.T, useTLS bool, tune func(*Config)) *fixture {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "warren.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, store: st, relay: &recordingRelay{}, bw: &fakeBandwidth{}, clock: &clock{}}
	f.admin = f.createAccount("999988887777", "AKIAWARRENTESTADMIN")
	f.admin, _ = st.UpdateAccount(context.Background(), f.admin.ID, func(a *tunnel.Account) error {
		a.Name, a.Admin = "admin", true
		return nil
	})
	f.acct = f.createAccount("111122223333", "AKIAWARRENTESTONE")
	f.other = f.createAccount("444455556666", "AKIAWARRENTESTTWO")
	cfg := Config{
		Store:     st,
		Relay:     f.relay,
		Bandwidth: f.bw,
		Region:    testRegion,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:       f.clock.Now,
		CursorKey: testCursorKey,
	}
	if tune != nil {
		tune(&cfg)
	}
	a := New(cfg)
	if useTLS {
		// HTTPS and HTTP/2, as a production listener serves.
		f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.proto.Store(int32(r.ProtoMajor))
			a.ServeHTTP(w, r)
		}))
		f.srv.EnableHTTP2 = true
		f.srv.StartTLS()
	} else {
		f.srv = httptest.NewServer(a)
	}
	t.Cleanup(func() {
		f.srv.Client().CloseIdleConnections()
		f.srv.Close()
	})
	return f
}

func (f *fixture) createAccount(id, akid string) tunnel.Account {
	a := tunnel.Account{ID: id, Name: "account-" + id, AccessKeyID: akid, SecretAccessKey: "secret-" + tunnel.RandomHex(16),
		BandwidthLimit: tunnel.BandwidthDefault, CreatedAt: time.Now()}
	if err := f.store.CreateAccount(context.Background(), a); err != nil {
		f.t.Fatal(err)
	}
	return a
}

// v1Session is an aws-sdk-go (v1) session for acct against the test server.
func (f *fixture) v1Session(akid, secret string) *session.Session {
	return session.Must(session.NewSession(&aws.Config{
		Region:      aws.String(testRegion),
		Endpoint:    aws.String(f.srv.URL),
		Credentials: credentials.NewStaticCredentials(akid, secret, ""),
		HTTPClient:  f.srv.Client(),
		MaxRetries:  aws.Int(0),
	}))
}

func (f *fixture) tunnels(acct tunnel.Account) *iotsecuretunneling.IoTSecureTunneling {
	return iotsecuretunneling.New(f.v1Session(acct.AccessKeyID, acct.SecretAccessKey))
}

func (f *fixture) iotV1(acct tunnel.Account) *iot.IoT {
	return iot.New(f.v1Session(acct.AccessKeyID, acct.SecretAccessKey))
}

func (f *fixture) iotV2(acct tunnel.Account) *iotv2.Client {
	return iotv2.New(iotv2.Options{
		Region:       testRegion,
		BaseEndpoint: awsv2.String(f.srv.URL),
		Credentials:  credsv2.NewStaticCredentialsProvider(acct.AccessKeyID, acct.SecretAccessKey, ""),
		HTTPClient:   f.srv.Client(),
		Retryer:      awsv2.NopRetryer{},
	})
}

// createThing registers a thing for acct through the v1 SDK.
func (f *fixture) createThing(acct tunnel.Account, name string) {
	f.t.Helper()
	if _, err := f.iotV1(acct).CreateThing(&iot.CreateThingInput{ThingName: aws.String(name)}); err != nil {
		f.t.Fatalf("CreateThing %s: %v", name, err)
	}
}

// openTunnel opens a tunnel for acct through the v1 SDK.
func (f *fixture) openTunnel(acct tunnel.Account, thing string, services ...string) *iotsecuretunneling.OpenTunnelOutput {
	f.t.Helper()
	in := &iotsecuretunneling.OpenTunnelInput{DestinationConfig: &iotsecuretunneling.DestinationConfig{Services: aws.StringSlice(services)}}
	if thing != "" {
		in.DestinationConfig.ThingName = aws.String(thing)
	}
	out, err := f.tunnels(acct).OpenTunnel(in)
	if err != nil {
		f.t.Fatalf("OpenTunnel: %v", err)
	}
	return out
}

// rawReply is a response read by the raw helpers.
type rawReply struct {
	Status    int
	ErrorType string // x-amzn-ErrorType header
	Type      string `json:"__type"`
	Message   string `json:"message"`
	Body      []byte
}

// signRaw builds a request signed like an SDK would, with explicit signing
// parameters so tests can get them wrong on purpose.
type signRaw struct {
	method, path string
	header       map[string]string
	body         []byte
	service      string
	region       string
	at           time.Time
	akid, secret string
}

func (f *fixture) do(t testing.TB, s signRaw) rawReply {
	t.Helper()
	if s.method == "" {
		s.method = http.MethodPost
	}
	if s.path == "" {
		s.path = "/"
	}
	if s.region == "" {
		s.region = testRegion
	}
	if s.at.IsZero() {
		s.at = time.Now()
	}
	if s.akid == "" {
		s.akid, s.secret = f.acct.AccessKeyID, f.acct.SecretAccessKey
	}
	req, err := http.NewRequest(s.method, f.srv.URL+s.path, bytes.NewReader(s.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range s.header {
		req.Header.Set(k, v)
	}
	if s.service != "" {
		sum := sha256.Sum256(s.body)
		err := v4.NewSigner().SignHTTP(context.Background(), awsv2.Credentials{AccessKeyID: s.akid, SecretAccessKey: s.secret},
			req, hex.EncodeToString(sum[:]), s.service, s.region, s.at)
		if err != nil {
			t.Fatal(err)
		}
	}
	return f.send(t, req)
}

func (f *fixture) send(t testing.TB, req *http.Request) rawReply {
	t.Helper()
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r rawReply
	r.Body, _ = io.ReadAll(resp.Body)
	_ = json.Unmarshal(r.Body, &r)
	r.Status = resp.StatusCode
	r.ErrorType = resp.Header.Get("x-amzn-ErrorType")
	return r
}

// callJSON makes a signed AWS JSON 1.1 call of op with body.
func (f *fixture) callJSON(t testing.TB, op, body string) rawReply {
	t.Helper()
	return f.do(t, signRaw{
		header:  map[string]string{"X-Amz-Target": targetPrefix + op, "Content-Type": "application/x-amz-json-1.1"},
		body:    []byte(body),
		service: signingNameTunnels,
	})
}

// wantError checks that r is the error code with status.
func wantError(t *testing.T, r rawReply, status int, code string) {
	t.Helper()
	if r.Status != status || r.Type != code || r.ErrorType != code {
		t.Fatalf("got status %d, __type %q, x-amzn-ErrorType %q (%s); want %d %s", r.Status, r.Type, r.ErrorType, r.Body, status, code)
	}
	if r.Message == "" {
		t.Fatalf("error %s has no message", code)
	}
}
