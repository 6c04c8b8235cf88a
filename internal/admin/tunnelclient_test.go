package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// fastRetryer is the SDK's standard retryer with the backoff shortened, so
// retry tests do not sleep for seconds.
func fastRetryer(maxAttempts int) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	})
}

// testConfig is an aws.Config built by hand, as an in-process caller would.
func testConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       testRegion,
		Credentials:  credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, ""),
		BaseEndpoint: aws.String(endpoint),
		Retryer:      func() aws.Retryer { return fastRetryer(3) },
	}
}

func jsonEqual(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad expectation: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func TestTunnelClientRequestShape(t *testing.T) {
	svc := newFakeService(t, func(r recorded, _ int) reply {
		switch r.Target {
		case "IoTSecuredTunneling.OpenTunnel":
			return reply{body: `{"tunnelId":"t-1","tunnelArn":"arn:aws:iot:eu-central-1:123456789012:tunnel/t-1","sourceAccessToken":"src","destinationAccessToken":"dst"}`}
		case "IoTSecuredTunneling.DescribeTunnel":
			return reply{body: `{"tunnel":{"tunnelId":"t-1","status":"OPEN","createdAt":1795770000.123,"lastUpdatedAt":1795770060,
				"sourceConnectionState":{"status":"CONNECTED","lastUpdatedAt":1.7957700005E9},
				"destinationConfig":{"thingName":"dev","services":["SSH"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":60},"tags":[],"unknownField":1}}`}
		case "IoTSecuredTunneling.ListTunnels":
			return reply{body: `{"tunnelSummaries":[{"tunnelId":"t-1","status":"CLOSED","createdAt":1795770000}],"nextToken":"n2"}`}
		case "IoTSecuredTunneling.CloseTunnel":
			return reply{body: `{}`}
		}
		return reply{status: 400, body: `{"__type":"UnknownOperationException"}`}
	})
	c := NewTunnelClient(testConfig(svc.URL))
	ctx := context.Background()

	open, err := c.OpenTunnel(ctx, &tunnelapi.OpenTunnelInput{
		Description:       aws.String("lab"),
		Tags:              []tunnelapi.Tag{{Key: "team", Value: "edge"}},
		DestinationConfig: &tunnelapi.DestinationConfig{ThingName: aws.String("dev"), Services: []string{"SSH", "HTTP"}},
		TimeoutConfig:     &tunnelapi.TimeoutConfig{MaxLifetimeTimeoutMinutes: int32p(60)},
	})
	if err != nil {
		t.Fatalf("OpenTunnel: %v", err)
	}
	if open.TunnelID != "t-1" || open.SourceAccessToken != "src" || open.DestinationAccessToken != "dst" {
		t.Errorf("OpenTunnel = %+v", open)
	}
	desc, err := c.DescribeTunnel(ctx, &tunnelapi.DescribeTunnelInput{TunnelID: aws.String("t-1")})
	if err != nil {
		t.Fatalf("DescribeTunnel: %v", err)
	}
	tun := desc.Tunnel
	if tun == nil || tun.Status != tunnelapi.TunnelStatusOpen || tun.DestinationConfig.Services[0] != "SSH" ||
		*tun.TimeoutConfig.MaxLifetimeTimeoutMinutes != 60 || tun.Tags == nil || len(tun.Tags) != 0 {
		t.Fatalf("DescribeTunnel = %+v", tun)
	}
	if want := time.Unix(1795770000, 123e6); !tun.CreatedAt.Equal(want) {
		t.Errorf("createdAt = %v, want %v", tun.CreatedAt, want)
	}
	if want := time.Unix(1795770000, 5e8); !tun.SourceConnectionState.LastUpdatedAt.Equal(want) {
		t.Errorf("source lastUpdatedAt = %v, want %v", tun.SourceConnectionState.LastUpdatedAt, want)
	}
	if tun.DestinationConnectionState != nil {
		t.Errorf("absent destinationConnectionState decoded as %+v", tun.DestinationConnectionState)
	}
	list, err := c.ListTunnels(ctx, &tunnelapi.ListTunnelsInput{ThingName: aws.String("dev"), MaxResults: int32p(5), NextToken: aws.String("n1")})
	if err != nil {
		t.Fatalf("ListTunnels: %v", err)
	}
	if len(list.TunnelSummaries) != 1 || list.TunnelSummaries[0].Status != tunnelapi.TunnelStatusClosed || list.NextToken != "n2" {
		t.Errorf("ListTunnels = %+v", list)
	}
	del := true
	if _, err := c.CloseTunnel(ctx, &tunnelapi.CloseTunnelInput{TunnelID: aws.String("t-1"), Delete: &del}); err != nil {
		t.Fatalf("CloseTunnel: %v", err)
	}

	reqs := svc.recorded()
	wantBodies := []string{
		`{"description":"lab","tags":[{"key":"team","value":"edge"}],"destinationConfig":{"thingName":"dev","services":["SSH","HTTP"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":60}}`,
		`{"tunnelId":"t-1"}`,
		`{"thingName":"dev","maxResults":5,"nextToken":"n1"}`,
		`{"tunnelId":"t-1","delete":true}`,
	}
	ops := []string{"OpenTunnel", "DescribeTunnel", "ListTunnels", "CloseTunnel"}
	if len(reqs) != len(ops) {
		t.Fatalf("service saw %d requests, want %d", len(reqs), len(ops))
	}
	for i, r := range reqs {
		if r.Method != http.MethodPost || r.Path != "/" || r.RawQuery != "" {
			t.Errorf("%s: %s %s?%s, want POST /", ops[i], r.Method, r.Path, r.RawQuery)
		}
		if r.Target != "IoTSecuredTunneling."+ops[i] {
			t.Errorf("%s: X-Amz-Target %q", ops[i], r.Target)
		}
		if r.ContentType != "application/x-amz-json-1.1" {
			t.Errorf("%s: Content-Type %q", ops[i], r.ContentType)
		}
		if r.SigErr != nil {
			t.Errorf("%s: signature: %v", ops[i], r.SigErr)
		}
		if r.SDKRequest != "attempt=1; max=3" {
			t.Errorf("%s: amz-sdk-request %q", ops[i], r.SDKRequest)
		}
		jsonEqual(t, ops[i]+" body", r.Body, wantBodies[i])
	}
}

func TestTunnelClientNilInputSendsEmptyObject(t *testing.T) {
	svc := newFakeService(t, func(recorded, int) reply { return reply{body: `{"tunnelSummaries":[]}`} })
	out, err := NewTunnelClient(testConfig(svc.URL)).ListTunnels(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.TunnelSummaries == nil {
		t.Error("[] decoded as nil")
	}
	if got := string(svc.recorded()[0].Body); got != "{}" {
		t.Errorf("body %q, want {}", got)
	}
}

func TestTunnelClientRetries(t *testing.T) {
	tests := []struct {
		name     string
		failures []reply // answers before the success
	}{
		{"500", []reply{{status: 500, body: `{"__type":"InternalFailureException","message":"boom"}`}, {status: 500}}},
		{"503 without body", []reply{{status: 503}}},
		{"throttling", []reply{{status: 400, body: `{"__type":"ThrottlingException","message":"Rate exceeded"}`}}},
		{"throttling in header", []reply{{status: 400, header: map[string]string{"X-Amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/"}, body: `{}`}}},
		{"limit exceeded", []reply{{status: 400, body: `{"__type":"LimitExceededException","message":"too many"}`}}},
		{"dropped connection", []reply{{drop: true}, {drop: true}}},
		{"429 without a modeled error", []reply{{status: 429, body: `{"message":"slow down"}`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newFakeService(t, func(_ recorded, n int) reply {
				if n <= len(tt.failures) {
					return tt.failures[n-1]
				}
				return reply{body: `{"tunnel":{"tunnelId":"t-1"}}`}
			})
			out, err := NewTunnelClient(testConfig(svc.URL)).DescribeTunnel(context.Background(), &tunnelapi.DescribeTunnelInput{TunnelID: aws.String("t-1")})
			if err != nil {
				t.Fatalf("DescribeTunnel: %v", err)
			}
			if out.Tunnel.TunnelID != "t-1" {
				t.Errorf("tunnel = %+v", out.Tunnel)
			}
			reqs := svc.recorded()
			if len(reqs) != len(tt.failures)+1 {
				t.Fatalf("%d attempts, want %d", len(reqs), len(tt.failures)+1)
			}
			for i, r := range reqs {
				if want := fmt.Sprintf("attempt=%d; max=3", i+1); r.SDKRequest != want {
					t.Errorf("attempt %d: amz-sdk-request %q, want %q", i+1, r.SDKRequest, want)
				}
				if r.InvocationID != reqs[0].InvocationID || r.InvocationID == "" {
					t.Errorf("attempt %d: invocation id %q, first %q", i+1, r.InvocationID, reqs[0].InvocationID)
				}
				if r.SigErr != nil {
					t.Errorf("attempt %d: signature: %v", i+1, r.SigErr)
				}
			}
		})
	}
}

func TestTunnelClientGivesUp(t *testing.T) {
	svc := newFakeService(t, func(recorded, int) reply {
		return reply{status: 500, body: `{"__type":"InternalFailureException","message":"still broken"}`}
	})
	_, err := NewTunnelClient(testConfig(svc.URL)).OpenTunnel(context.Background(), &tunnelapi.OpenTunnelInput{})
	var maxErr *retry.MaxAttemptsError
	if !errors.As(err, &maxErr) || maxErr.Attempt != 3 {
		t.Fatalf("error %v, want MaxAttemptsError after 3 attempts", err)
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "InternalFailureException" || apiErr.StatusCode != 500 {
		t.Fatalf("error %v, want the service's InternalFailureException", err)
	}
	if n := len(svc.recorded()); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

func TestTunnelClientErrors(t *testing.T) {
	tests := []struct {
		name string
		rep  reply
		want APIError
	}{
		{"__type and message", reply{status: 404, header: map[string]string{"X-Amzn-RequestId": "req-1"},
			body: `{"__type":"ResourceNotFoundException","message":"Tunnel t-9 not found"}`},
			APIError{Operation: "DescribeTunnel", Code: "ResourceNotFoundException", Message: "Tunnel t-9 not found", StatusCode: 404, RequestID: "req-1"}},
		{"namespaced __type, capitalized Message", reply{status: 400,
			body: `{"__type":"com.amazonaws.iot.tunneling#ResourceNotFoundException","Message":"gone"}`},
			APIError{Operation: "DescribeTunnel", Code: "ResourceNotFoundException", Message: "gone", StatusCode: 400}},
		{"header wins over body", reply{status: 400, header: map[string]string{"X-Amzn-ErrorType": "ValidationException:http://internal/"},
			body: `{"__type":"Other","message":"bad id"}`},
			APIError{Operation: "DescribeTunnel", Code: "ValidationException", Message: "bad id", StatusCode: 400}},
		{"no message", reply{status: 403, body: `{"__type":"AccessDeniedException"}`},
			APIError{Operation: "DescribeTunnel", Code: "AccessDeniedException", StatusCode: 403}},
		{"not JSON", reply{status: 403, body: `<html>forbidden</html>`},
			APIError{Operation: "DescribeTunnel", Code: "403", Message: "Forbidden", StatusCode: 403}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newFakeService(t, func(recorded, int) reply { return tt.rep })
			_, err := NewTunnelClient(testConfig(svc.URL)).DescribeTunnel(context.Background(), &tunnelapi.DescribeTunnelInput{TunnelID: aws.String("t-9")})
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v (%T), want *APIError", err, err)
			}
			if *apiErr != tt.want {
				t.Errorf("error = %+v, want %+v", *apiErr, tt.want)
			}
			if n := len(svc.recorded()); n != 1 {
				t.Errorf("%d attempts for a client error, want 1", n)
			}
		})
	}

	e := &APIError{Operation: "DescribeTunnel", Code: "ResourceNotFoundException", Message: "Tunnel t-9 not found"}
	if want := "An error occurred (ResourceNotFoundException) when calling the DescribeTunnel operation: Tunnel t-9 not found"; e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

func TestTunnelClientCanceled(t *testing.T) {
	svc := newFakeService(t, func(recorded, int) reply { return reply{status: 500} })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewTunnelClient(testConfig(svc.URL)).DescribeTunnel(ctx, &tunnelapi.DescribeTunnelInput{TunnelID: aws.String("x")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestTunnelClientAnonymous(t *testing.T) {
	svc := newFakeService(t, func(recorded, int) reply { return reply{body: `{}`} })
	cfg := testConfig(svc.URL)
	cfg.Credentials = aws.AnonymousCredentials{}
	if _, err := NewTunnelClient(cfg).CloseTunnel(context.Background(), &tunnelapi.CloseTunnelInput{TunnelID: aws.String("x")}); err != nil {
		t.Fatal(err)
	}
	if r := svc.recorded()[0]; r.SigErr == nil || !strings.Contains(r.SigErr.Error(), "not SigV4") {
		t.Errorf("anonymous request was signed (%v)", r.SigErr)
	}
}

// TestTunnelEndpointResolution checks the SDK's precedence for the tunnel
// service's endpoint, through config.LoadDefaultConfig as the CLI uses it.
func TestTunnelEndpointResolution(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_REGION", "us-west-2")
	load := func() aws.Config {
		t.Helper()
		cfg, err := config.LoadDefaultConfig(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if got, want := NewTunnelClient(load()).Endpoint(), "https://api.tunneling.iot.us-west-2.amazonaws.com"; got != want {
		t.Errorf("default endpoint %q, want %q", got, want)
	}
	t.Setenv("AWS_ENDPOINT_URL", "http://global.example")
	if got := NewTunnelClient(load()).Endpoint(); got != "http://global.example" {
		t.Errorf("with AWS_ENDPOINT_URL: %q", got)
	}
	t.Setenv("AWS_ENDPOINT_URL_IOTSECURETUNNELING", "http://tunnels.example")
	if got := NewTunnelClient(load()).Endpoint(); got != "http://tunnels.example" {
		t.Errorf("with AWS_ENDPOINT_URL_IOTSECURETUNNELING: %q", got)
	}
	explicit := NewTunnelClient(load(), func(o *ClientOptions) { o.BaseEndpoint = aws.String("http://flag.example") })
	if got := explicit.Endpoint(); got != "http://flag.example" {
		t.Errorf("with an explicit BaseEndpoint: %q", got)
	}
	t.Setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
	if got := NewTunnelClient(load()).Endpoint(); got != "https://api.tunneling.iot.us-west-2.amazonaws.com" {
		t.Errorf("with AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: %q", got)
	}
}
