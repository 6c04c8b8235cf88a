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
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// fuzzOps are the operations FuzzAPIRequest reaches: AWS JSON 1.1 targets
// (POST /) and REST routes of the thing API (method and path prefix).
var fuzzOps = []struct {
	target, method, path, service string
}{
	{target: targetPrefix + "OpenTunnel"},
	{target: targetPrefix + "CloseTunnel"},
	{target: targetPrefix + "DescribeTunnel"},
	{target: targetPrefix + "ListTunnels"},
	{target: targetPrefix + "TagResource"},
	{target: targetPrefix + "UntagResource"},
	{target: targetPrefix + "ListTagsForResource"},
	{target: targetPrefix + "RotateTunnelAccessToken"},
	{target: targetPrefix + "NoSuchOperation"},
	{target: accountsTargetPrefix + "CreateAccount", service: signingNameWarren},
	{target: accountsTargetPrefix + "ListAccounts", service: signingNameWarren},
	{target: accountsTargetPrefix + "DescribeAccount", service: signingNameWarren},
	{target: accountsTargetPrefix + "UpdateAccount", service: signingNameWarren},
	{target: accountsTargetPrefix + "DeleteAccount", service: signingNameWarren},
	{method: http.MethodPost, path: "/things/"},
	{method: http.MethodGet, path: "/things/"},
	{method: http.MethodDelete, path: "/things/"},
	{method: http.MethodGet, path: "/things"},
	{method: http.MethodPut, path: "/"},
}

// FuzzAPIRequest sends the API correctly signed requests (the admin
// account's, so that every operation is reached) with fuzzed bodies, thing
// names and query strings, against a real store. Whatever the input, the
// API must not panic nor fail internally (500), and every refusal must be
// an AWS error the SDKs parse: a JSON object whose __type matches the
// x-amzn-ErrorType header, with a message.
func FuzzAPIRequest(f *testing.F) {
	st, err := store.Open(filepath.Join(f.TempDir(), "warren.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	admin := tunnel.Account{ID: "999988887777", Name: "admin", Admin: true, AccessKeyID: "AKIAWARRENFUZZADMIN",
		SecretAccessKey: "fuzz-secret-" + tunnel.RandomHex(16), BandwidthLimit: tunnel.BandwidthDefault, CreatedAt: time.Now()}
	if err := st.CreateAccount(context.Background(), admin); err != nil {
		f.Fatal(err)
	}
	a := New(Config{Store: st, Region: testRegion, Logger: slog.New(slog.DiscardHandler), CursorKey: testCursorKey})
	signer := v4.NewSigner()
	creds := awsv2.Credentials{AccessKeyID: admin.AccessKeyID, SecretAccessKey: admin.SecretAccessKey}

	for i, body := range []string{
		`{"destinationConfig":{"thingName":"t1","services":["SSH","HTTP"]},"tags":[{"key":"k","value":"v"}],"timeoutConfig":{"maxLifetimeTimeoutMinutes":5}}`,
		`{"tunnelId":"00000000-0000-4000-8000-000000000000","delete":true}`,
		`{"tunnelId":"` + strings.Repeat("a", 32) + `"}`,
		`{"maxResults":1,"nextToken":"AAAA","thingName":"t1"}`,
		`{"resourceArn":"arn:aws:iot:us-east-1:999988887777:tunnel/x","tags":[{"key":"","value":"v"}]}`,
		`{"resourceArn":"arn:aws:iot:us-east-1:999988887777:tunnel/x","tagKeys":["k"]}`,
		`{"resourceArn":7}`,
		`{"tunnelId":"x","clientMode":"ALL","destinationConfig":{"services":["S"]}}`,
		``,
		`{"accountName":"bob","bandwidthLimit":800000}`,
		`{"maxResults":0}`,
		`{"accountId":"999988887777"}`,
		`{"accountId":"x","bandwidthLimit":-1}`,
		`{"accountId":"999988887777"}`,
		`{"attributePayload":{"attributes":{"a":"b"}}}`,
		`{}`,
		`[]`,
		`{"x":`,
		`null`,
	} {
		f.Add(uint8(i), "t1", "maxResults=2&nextToken=%00", []byte(body))
	}
	// The thing t1 exists now (seed 14): a tunnel opens, and is rotated.
	f.Add(uint8(0), "", "", []byte(`{"destinationConfig":{"thingName":"t1","services":["SSH"]}}`))
	f.Add(uint8(3), "", "", []byte(`{"thingName":"t1","maxResults":1}`))
	f.Add(uint8(14), strings.Repeat("n", 129), "", []byte(`{"thingTypeName":"x"}`))
	f.Add(uint8(0), "", "", []byte(`{"destinationConfig":{"services":["`+strings.Repeat("s", 200)+`"]},"description":"\u0000"}`))

	f.Fuzz(func(t *testing.T, opIndex uint8, name, query string, body []byte) {
		op := fuzzOps[int(opIndex)%len(fuzzOps)]
		u := &url.URL{Scheme: "http", Host: "warren.test", Path: "/", RawQuery: query}
		method, service := http.MethodPost, op.service
		if op.target == "" {
			method, service = op.method, signingNameIoT
			u.Path = op.path
			if strings.HasSuffix(op.path, "/") && op.path != "/" {
				u.Path += name
			}
		} else if service == "" {
			service = signingNameTunnels
		}
		req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
		if err != nil {
			return // not a request any client could send
		}
		if op.target != "" {
			req.Header.Set("X-Amz-Target", op.target)
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		}
		sum := sha256.Sum256(body)
		if err := signer.SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), service, testRegion, time.Now()); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		res := rec.Result()
		out, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 && res.StatusCode != http.StatusNotImplemented {
			t.Fatalf("%s %s %q: internal failure %d: %s", method, u, body, res.StatusCode, out)
		}
		if bytes.Contains(out, []byte(admin.SecretAccessKey)) {
			t.Fatalf("the response repeats the caller's secret access key: %s", out)
		}
		var doc map[string]any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("%s %s %q: %d with a body that is no JSON object: %v: %s", method, u, body, res.StatusCode, err, out)
		}
		if res.StatusCode < 300 {
			return
		}
		code, _ := doc["__type"].(string)
		msg, _ := doc["message"].(string)
		if code == "" || code != res.Header.Get("x-amzn-ErrorType") || msg == "" {
			t.Fatalf("%s %s %q: %d is not an AWS error (__type %q, header %q, message %q)", method, u, body,
				res.StatusCode, code, res.Header.Get("x-amzn-ErrorType"), msg)
		}
	})
}
