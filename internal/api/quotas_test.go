package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	iotv2 "github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
	"github.com/aws/smithy-go"
)

// The open tunnel quota: the third OpenTunnel of an account with two open
// is LimitExceededException (400, as AWS JSON 1.1 reports client errors),
// naming the limit; closing one frees its place; other accounts count
// their own tunnels.
func TestOpenTunnelLimit(t *testing.T) {
	f := newFixtureWith(t, false, func(c *Config) { c.MaxOpenTunnels = 2 })
	first := f.openTunnel(f.acct, "", "SSH")
	f.openTunnel(f.acct, "", "SSH")

	api := f.tunnels(f.acct)
	in := &iotsecuretunneling.OpenTunnelInput{DestinationConfig: &iotsecuretunneling.DestinationConfig{Services: aws.StringSlice([]string{"SSH"})}}
	_, err := api.OpenTunnel(in)
	var rf awserr.RequestFailure
	if !errors.As(err, &rf) || rf.Code() != codeLimitExceeded || rf.StatusCode() != http.StatusBadRequest {
		t.Fatalf("third OpenTunnel: %v, want %s with status 400", err, codeLimitExceeded)
	}
	if !strings.Contains(rf.Message(), "open tunnels per account on this server is 2") {
		t.Errorf("message %q does not name the limit", rf.Message())
	}
	var le *iotsecuretunneling.LimitExceededException
	if !errors.As(err, &le) {
		t.Errorf("the SDK did not decode the error as its LimitExceededException (%T)", err)
	}

	f.openTunnel(f.other, "", "SSH") // another account is not counted with this one

	if _, err := api.CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: first.TunnelId}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.OpenTunnel(in); err != nil {
		t.Fatalf("OpenTunnel after closing one: %v", err)
	}
	if _, err := api.OpenTunnel(in); awsCode(t, err) != codeLimitExceeded {
		t.Fatalf("OpenTunnel past the limit again: %v", err)
	}
}

// Concurrent OpenTunnels at the limit: exactly the free places are taken.
func TestOpenTunnelLimitConcurrent(t *testing.T) {
	const limit, tries = 3, 12
	f := newFixtureWith(t, false, func(c *Config) { c.MaxOpenTunnels = limit })
	var wg sync.WaitGroup
	replies := make(chan rawReply, tries)
	for range tries {
		wg.Go(func() {
			replies <- f.callJSON(t, "OpenTunnel", `{"destinationConfig":{"services":["SSH"]}}`)
		})
	}
	wg.Wait()
	close(replies)
	opened, refused := 0, 0
	for r := range replies {
		switch {
		case r.Status == http.StatusOK:
			opened++
		case r.Type == codeLimitExceeded && r.Status == http.StatusBadRequest:
			refused++
		default:
			t.Errorf("unexpected reply %d %s", r.Status, r.Body)
		}
	}
	if opened != limit || refused != tries-limit {
		t.Fatalf("%d opened, %d refused; want %d and %d", opened, refused, limit, tries-limit)
	}
}

// The request rate quota: past an account's burst, requests of either
// protocol are ThrottlingException with status 429, while another account
// is served; the AWS SDK's standard retryer gets through after a pause.
func TestRequestThrottling(t *testing.T) {
	const burst = 4
	f := newFixtureWith(t, false, func(c *Config) { c.RequestRate, c.RequestBurst = 2, burst })
	for i := range burst {
		if r := f.callJSON(t, "ListTunnels", `{}`); r.Status != http.StatusOK {
			t.Fatalf("request %d of the burst: %d %s", i+1, r.Status, r.Body)
		}
	}
	r := f.callJSON(t, "ListTunnels", `{}`)
	wantError(t, r, http.StatusTooManyRequests, codeThrottling)
	if !strings.Contains(r.Message, "2 API requests per second") {
		t.Errorf("message %q does not name the rate", r.Message)
	}
	// The REST iot API too, as the SDK sees it.
	_, err := f.iotV2(f.acct).ListThings(context.Background(), &iotv2.ListThingsInput{})
	var ae smithy.APIError
	var re *awshttp.ResponseError
	if !errors.As(err, &ae) || ae.ErrorCode() != codeThrottling || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusTooManyRequests {
		t.Fatalf("ListThings past the burst: %v, want %s with status 429", err, codeThrottling)
	}
	if _, ok := retry.DefaultThrottleErrorCodes[ae.ErrorCode()]; !ok {
		t.Errorf("the SDK's retryer does not take %s for throttling", ae.ErrorCode())
	}

	// Another account has its own bucket.
	if _, err := f.tunnels(f.other).ListTunnels(&iotsecuretunneling.ListTunnelsInput{}); err != nil {
		t.Fatalf("the other account was throttled: %v", err)
	}

	// The SDK retries throttling after a backoff; at 2 requests per second
	// a token is back within its attempts.
	c := iotv2.New(iotv2.Options{
		Region:       testRegion,
		BaseEndpoint: awsv2.String(f.srv.URL),
		Credentials:  f.iotV2(f.acct).Options().Credentials,
		HTTPClient:   f.srv.Client(),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 10
			o.MaxBackoff = time.Second
		}),
	})
	if _, err := c.ListThings(context.Background(), &iotv2.ListThingsInput{}); err != nil {
		t.Fatalf("the SDK's retries did not get through: %v", err)
	}
}
