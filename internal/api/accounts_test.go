package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/iot"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"

	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// fakeBandwidth is a limiter that records the limits it is given and reports
// them, the server default for the default, with fixed rates.
type fakeBandwidth struct {
	mu     sync.Mutex
	limits map[string]int64
	calls  []string // "accountID=limit"
}

const (
	fakeServerDefault = 2_000_000
	fakeRateOut       = 1500.5
	fakeRateBack      = 250
)

func (b *fakeBandwidth) SetLimit(accountID string, limit int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.limits == nil {
		b.limits = map[string]int64{}
	}
	b.limits[accountID] = limit
	b.calls = append(b.calls, fmt.Sprintf("%s=%d", accountID, limit))
}

func (b *fakeBandwidth) Usage(accountID string) (int64, float64, float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit, ok := b.limits[accountID]
	if !ok || limit == tunnel.BandwidthDefault {
		limit = fakeServerDefault
	}
	return limit, fakeRateOut, fakeRateBack
}

func (b *fakeBandwidth) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// callAccounts makes a WarrenAccounts call signed with acct's keys.
func (f *fixture) callAccounts(t testing.TB, acct tunnel.Account, op, body string) rawReply {
	t.Helper()
	return f.do(t, signRaw{
		header:  map[string]string{"X-Amz-Target": accountsTargetPrefix + op, "Content-Type": "application/x-amz-json-1.1"},
		body:    []byte(body),
		service: signingNameWarren,
		akid:    acct.AccessKeyID, secret: acct.SecretAccessKey,
	})
}

// ok checks that r succeeded and decodes its body into v (if not nil).
func ok(t *testing.T, r rawReply, v any) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if v != nil {
		if err := json.Unmarshal(r.Body, v); err != nil {
			t.Fatalf("decode %s: %v", r.Body, err)
		}
	}
}

type describedAccount struct {
	AccountID               string   `json:"accountId"`
	AccountName             string   `json:"accountName"`
	Admin                   bool     `json:"admin"`
	CreatedAt               float64  `json:"createdAt"`
	BandwidthLimit          *int64   `json:"bandwidthLimit"`
	EffectiveBandwidthLimit *int64   `json:"effectiveBandwidthLimit"`
	CurrentRate             *rateOut `json:"currentRate"`
	OpenTunnels             *int     `json:"openTunnels"`
}

type rateOut struct {
	SourceToDestination float64 `json:"sourceToDestination"`
	DestinationToSource float64 `json:"destinationToSource"`
}

// The life of a second account, through the API as an admin and the new
// account's own SDK clients would drive it.
func TestSecondAccountLifecycle(t *testing.T) {
	f := newFixture(t)

	var created struct {
		AccountID, AccountName, AccessKeyID, SecretAccessKey string
	}
	ok(t, f.callAccounts(t, f.admin, "CreateAccount", `{"accountName":"alice@example.com","bandwidthLimit":800000}`), &created)
	if !tunnel.ValidAccountID(created.AccountID) || created.AccountName != "alice@example.com" ||
		!strings.HasPrefix(created.AccessKeyID, "AKIA") || len(created.SecretAccessKey) != 40 {
		t.Fatalf("CreateAccount: %+v", created)
	}
	if got, want := f.bw.Calls(), []string{created.AccountID + "=800000"}; !slices.Equal(got, want) {
		t.Fatalf("SetLimit calls %v, want %v", got, want)
	}
	alice := tunnel.Account{ID: created.AccountID, AccessKeyID: created.AccessKeyID, SecretAccessKey: created.SecretAccessKey}

	// Alice's keys work for things and tunnels, which are hers alone.
	f.createThing(alice, "alices-robot")
	open := f.openTunnel(alice, "alices-robot", "SSH")
	if want := fmt.Sprintf("arn:aws:iot:%s:%s:tunnel/", testRegion, alice.ID); !strings.HasPrefix(aws.StringValue(open.TunnelArn), want) {
		t.Errorf("tunnelArn %s is not in alice's account", aws.StringValue(open.TunnelArn))
	}
	closed := f.openTunnel(alice, "", "HTTP")
	if _, err := f.tunnels(alice).CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: closed.TunnelId}); err != nil {
		t.Fatal(err)
	}
	mine, err := f.tunnels(alice).ListTunnels(&iotsecuretunneling.ListTunnelsInput{})
	if err != nil || len(mine.TunnelSummaries) != 2 {
		t.Fatalf("alice's tunnels: %v %v", mine, err)
	}
	for _, acct := range []tunnel.Account{f.admin, f.acct} {
		ts, err := f.tunnels(acct).ListTunnels(&iotsecuretunneling.ListTunnelsInput{})
		if err != nil || len(ts.TunnelSummaries) != 0 {
			t.Fatalf("%s sees tunnels: %v %v", acct.Name, ts, err)
		}
		things, err := f.iotV1(acct).ListThings(&iot.ListThingsInput{})
		if err != nil || len(things.Things) != 0 {
			t.Fatalf("%s sees things: %v %v", acct.Name, things, err)
		}
		if _, err := f.tunnels(acct).DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId}); awsCode(t, err) != codeNotFound {
			t.Fatalf("%s describes alice's tunnel: %v", acct.Name, err)
		}
	}

	// Alice is no admin.
	for _, op := range []string{"CreateAccount", "ListAccounts", "DescribeAccount", "UpdateAccount", "DeleteAccount"} {
		r := f.callAccounts(t, alice, op, `{"accountName":"mallory","accountId":"`+alice.ID+`","bandwidthLimit":0}`)
		wantError(t, r, http.StatusForbidden, codeAccessDenied)
		if !strings.Contains(r.Message, "only the admin account") {
			t.Errorf("%s: AccessDenied message %q", op, r.Message)
		}
	}

	var d describedAccount
	ok(t, f.callAccounts(t, f.admin, "DescribeAccount", `{"accountId":"`+alice.ID+`"}`), &d)
	if d.AccountID != alice.ID || d.AccountName != "alice@example.com" || d.Admin || d.CreatedAt == 0 ||
		d.BandwidthLimit == nil || *d.BandwidthLimit != 800_000 || *d.EffectiveBandwidthLimit != 800_000 ||
		*d.CurrentRate != (rateOut{fakeRateOut, fakeRateBack}) || *d.OpenTunnels != 1 {
		t.Fatalf("DescribeAccount: %s", f.callAccounts(t, f.admin, "DescribeAccount", `{"accountId":"`+alice.ID+`"}`).Body)
	}

	// Back to the server's default: bandwidthLimit is absent, and the
	// limiter is told.
	r := f.callAccounts(t, f.admin, "UpdateAccount", `{"accountId":"`+alice.ID+`","bandwidthLimit":-1}`)
	d = describedAccount{}
	ok(t, r, &d)
	if strings.Contains(string(r.Body), `"bandwidthLimit"`) || *d.EffectiveBandwidthLimit != fakeServerDefault || *d.OpenTunnels != 1 {
		t.Fatalf("UpdateAccount to the default: %s", r.Body)
	}
	ok(t, f.callAccounts(t, f.admin, "UpdateAccount", `{"accountId":"`+alice.ID+`","bandwidthLimit":0}`), nil)
	d = describedAccount{}
	ok(t, f.callAccounts(t, f.admin, "DescribeAccount", `{"accountId":"`+alice.ID+`"}`), &d)
	if d.BandwidthLimit == nil || *d.BandwidthLimit != 0 || *d.EffectiveBandwidthLimit != 0 {
		t.Fatalf("unlimited: %+v", d)
	}
	if got, want := f.bw.Calls(), []string{alice.ID + "=800000", alice.ID + "=-1", alice.ID + "=0"}; !slices.Equal(got, want) {
		t.Fatalf("SetLimit calls %v, want %v", got, want)
	}

	// Deleting alice closes her open tunnel at the relay and refuses her
	// keys from then on; everything she had is gone.
	ok(t, f.callAccounts(t, f.admin, "DeleteAccount", `{"accountId":"`+alice.ID+`"}`), nil)
	if got := f.relay.Closed(); !slices.Contains(got, aws.StringValue(open.TunnelId)) {
		t.Fatalf("relay closed %v, not alice's open tunnel %s", got, aws.StringValue(open.TunnelId))
	}
	if _, err := f.tunnels(alice).ListTunnels(&iotsecuretunneling.ListTunnelsInput{}); awsCode(t, err) != codeUnrecognizedClient {
		t.Fatalf("deleted account's keys: %v", err)
	}
	if _, err := f.iotV1(alice).ListThings(&iot.ListThingsInput{}); awsCode(t, err) != codeUnrecognizedClient {
		t.Fatalf("deleted account's keys (iot): %v", err)
	}
	if ts, _ := f.store.Tunnels(t.Context(), alice.ID, "", tunnel.Position{}, 10); len(ts) != 0 {
		t.Fatalf("%d of alice's tunnels remain", len(ts))
	}
	wantError(t, f.callAccounts(t, f.admin, "DescribeAccount", `{"accountId":"`+alice.ID+`"}`), http.StatusNotFound, codeNotFound)
	wantError(t, f.callAccounts(t, f.admin, "DeleteAccount", `{"accountId":"`+alice.ID+`"}`), http.StatusNotFound, codeNotFound)
	// Her name is free again.
	ok(t, f.callAccounts(t, f.admin, "CreateAccount", `{"accountName":"alice@example.com"}`), nil)
}

func TestAccountErrors(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		op, body string
		status   int
		code     string
	}{
		{"CreateAccount", `{}`, 400, codeValidation},
		{"CreateAccount", `{"accountName":""}`, 400, codeValidation},
		{"CreateAccount", `{"accountName":"with space"}`, 400, codeValidation},
		{"CreateAccount", `{"accountName":"` + strings.Repeat("a", 129) + `"}`, 400, codeValidation},
		{"CreateAccount", `{"accountName":"bob","bandwidthLimit":-2}`, 400, codeValidation},
		{"CreateAccount", `{"accountName":"bob","bandwidthLimit":1.5}`, 400, codeSerialization},
		{"CreateAccount", `{"accountName":"admin"}`, 409, codeExists},
		{"CreateAccount", `{"accountName":"account-111122223333"}`, 409, codeExists},
		{"DescribeAccount", `{}`, 400, codeValidation},
		{"DescribeAccount", `{"accountId":"12345"}`, 400, codeValidation},
		{"DescribeAccount", `{"accountId":"123456789012"}`, 404, codeNotFound},
		{"UpdateAccount", `{"accountId":"123456789012","bandwidthLimit":5}`, 404, codeNotFound},
		{"UpdateAccount", `{"accountId":"` + f.acct.ID + `"}`, 400, codeValidation},
		{"UpdateAccount", `{"accountId":"` + f.acct.ID + `","bandwidthLimit":-3}`, 400, codeValidation},
		{"DeleteAccount", `{"accountId":"123456789012"}`, 404, codeNotFound},
		{"DeleteAccount", `{"accountId":"` + f.admin.ID + `"}`, 400, codeValidation},
		{"ListAccounts", `{"maxResults":0}`, 400, codeValidation},
		{"ListAccounts", `{"maxResults":101}`, 400, codeValidation},
		{"ListAccounts", `{"nextToken":"bm90LWFuLWFjY291bnQ"}`, 400, codeValidation},
		{"ListAccounts", `{"nextToken":"` + newCursors(testCursorKey).encode("tunnel", []byte(f.acct.ID)) + `"}`, 400, codeValidation},
		{"NoSuchOperation", `{}`, 404, codeUnknownOperation},
	} {
		r := f.callAccounts(t, f.admin, c.op, c.body)
		t.Run(c.op+" "+c.body[:min(len(c.body), 40)], func(t *testing.T) { wantError(t, r, c.status, c.code) })
	}
	if r := f.callAccounts(t, f.admin, "DeleteAccount", `{"accountId":"`+f.admin.ID+`"}`); !strings.Contains(r.Message, "admin account") {
		t.Errorf("deleting the admin account: %q", r.Message)
	}
	if _, err := f.store.Account(t.Context(), f.admin.ID); err != nil {
		t.Fatalf("the admin account is gone: %v", err)
	}

	// The accounts service is signed for "warren", not for the tunnels'
	// service, and unsigned calls are refused before anything else.
	r := f.do(t, signRaw{
		header: map[string]string{"X-Amz-Target": accountsTargetPrefix + "ListAccounts"}, body: []byte(`{}`),
		service: signingNameTunnels, akid: f.admin.AccessKeyID, secret: f.admin.SecretAccessKey,
	})
	wantError(t, r, http.StatusForbidden, codeInvalidSig)
	r = f.do(t, signRaw{header: map[string]string{"X-Amz-Target": accountsTargetPrefix + "ListAccounts"}, body: []byte(`{}`)})
	wantError(t, r, http.StatusForbidden, codeMissingAuth)
}

func TestListAccountsPages(t *testing.T) {
	f := newFixture(t)
	for i := range 3 {
		ok(t, f.callAccounts(t, f.admin, "CreateAccount", fmt.Sprintf(`{"accountName":"user%d","bandwidthLimit":%d}`, i, i*1000)), nil)
	}
	type page struct {
		Accounts []struct {
			AccountID      string  `json:"accountId"`
			AccountName    string  `json:"accountName"`
			Admin          bool    `json:"admin"`
			BandwidthLimit *int64  `json:"bandwidthLimit"`
			CreatedAt      float64 `json:"createdAt"`
		} `json:"accounts"`
		NextToken string `json:"nextToken"`
	}
	var names []string
	token := ""
	for n := 0; ; n++ {
		body := `{"maxResults":2}`
		if token != "" {
			body = `{"maxResults":2,"nextToken":"` + token + `"}`
		}
		var p page
		ok(t, f.callAccounts(t, f.admin, "ListAccounts", body), &p)
		for _, a := range p.Accounts {
			names = append(names, a.AccountName)
			if a.Admin != (a.AccountName == "admin") || a.CreatedAt == 0 || !tunnel.ValidAccountID(a.AccountID) {
				t.Errorf("summary %+v", a)
			}
			if strings.HasPrefix(a.AccountName, "user") != (a.BandwidthLimit != nil) {
				t.Errorf("%s: bandwidthLimit %v", a.AccountName, a.BandwidthLimit)
			}
		}
		if token = p.NextToken; token == "" {
			break
		}
		if n > 5 {
			t.Fatal("paging does not end")
		}
	}
	want := []string{"admin", "account-111122223333", "account-444455556666", "user0", "user1", "user2"}
	if !slices.Equal(names, want) {
		t.Fatalf("listed %v, want %v", names, want)
	}
	var all page
	ok(t, f.callAccounts(t, f.admin, "ListAccounts", ``), &all)
	if len(all.Accounts) != len(want) || all.NextToken != "" {
		t.Fatalf("one page of all: %d, %q", len(all.Accounts), all.NextToken)
	}

	// A token still works when the account it was taken after is deleted.
	var first page
	ok(t, f.callAccounts(t, f.admin, "ListAccounts", `{"maxResults":4}`), &first)
	if len(first.Accounts) != 4 || first.Accounts[3].AccountName != "user0" || first.NextToken == "" {
		t.Fatalf("first page: %+v", first)
	}
	ok(t, f.callAccounts(t, f.admin, "DeleteAccount", `{"accountId":"`+first.Accounts[3].AccountID+`"}`), nil)
	var rest page
	ok(t, f.callAccounts(t, f.admin, "ListAccounts", `{"nextToken":"`+first.NextToken+`"}`), &rest)
	if len(rest.Accounts) != 2 || rest.Accounts[0].AccountName != "user1" || rest.Accounts[1].AccountName != "user2" {
		t.Fatalf("after deleting user0: %+v", rest)
	}
}

// Without a limiter, DescribeAccount reports the account's own limit as the
// one in force and no traffic, and nothing else changes.
func TestAccountsWithoutBandwidthLimiter(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(New(Config{Store: f.store, Region: testRegion, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()
	f.srv.Close()
	f.srv = srv
	for _, c := range []struct {
		limit, effective string
	}{{"-1", "0"}, {"0", "0"}, {"4000000", "4000000"}} {
		r := f.callAccounts(t, f.admin, "UpdateAccount", `{"accountId":"`+f.acct.ID+`","bandwidthLimit":`+c.limit+`}`)
		ok(t, r, nil)
		want := `"effectiveBandwidthLimit":` + c.effective + `,"currentRate":{"sourceToDestination":0,"destinationToSource":0},"openTunnels":0,`
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("limit %s: %s, want it to have %s", c.limit, r.Body, want)
		}
	}
}

// racingStore deletes a tunnel's account just before the tunnel is stored,
// as a DeleteAccount that commits while an OpenTunnel of that account is
// between its authentication and its write.
type racingStore struct{ *store.Store }

func (s racingStore) CreateTunnelWithin(ctx context.Context, t tunnel.Tunnel, maxOpen int) error {
	if _, err := s.DeleteAccount(ctx, t.AccountID); err != nil {
		return err
	}
	return s.Store.CreateTunnelWithin(ctx, t, maxOpen)
}

func TestOpenTunnelOfAccountDeletedMeanwhile(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(New(Config{Store: racingStore{f.store}, Region: testRegion, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()
	f.srv.Close()
	f.srv = srv
	_, err := f.tunnels(f.acct).OpenTunnel(&iotsecuretunneling.OpenTunnelInput{
		DestinationConfig: &iotsecuretunneling.DestinationConfig{Services: aws.StringSlice([]string{"SSH"})},
	})
	if awsCode(t, err) != codeUnrecognizedClient {
		t.Fatalf("OpenTunnel for a deleted account: %v", err)
	}
	if ts, _ := f.store.Tunnels(t.Context(), f.acct.ID, "", tunnel.Position{}, 10); len(ts) != 0 {
		t.Fatalf("the deleted account has %d tunnels", len(ts))
	}
}
