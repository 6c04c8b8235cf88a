package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/restjson"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// The tunnel service's identity in the AWS model: the SDK ID names the
// service-specific endpoint setting (AWS_ENDPOINT_URL_IOTSECURETUNNELING, the
// "iotsecuretunneling" services section of the shared config), the signing
// name goes into the SigV4 scope and the target prefix into X-Amz-Target.
const (
	tunnelSDKID        = "IoTSecureTunneling"
	tunnelSigningName  = "IoTSecuredTunneling"
	tunnelTargetPrefix = "IoTSecuredTunneling."
	tunnelContentType  = "application/x-amz-json-1.1"
	tunnelEndpointEnv  = "AWS_ENDPOINT_URL_IOTSECURETUNNELING"
	globalEndpointEnv  = "AWS_ENDPOINT_URL"
	maxTunnelRespBytes = 8 << 20 // no sane response comes near this
)

// TunnelOptions overrides what NewTunnelClient takes from the aws.Config.
type TunnelOptions struct {
	// BaseEndpoint, when set, wins over every configured endpoint.
	BaseEndpoint *string
	Region       string
	Credentials  aws.CredentialsProvider
	HTTPClient   aws.HTTPClient
	// Retryer decides which failures are retried and how long to wait; the
	// SDK's standard retryer when nil.
	Retryer aws.Retryer
}

// TunnelClient calls the IoT Secure Tunneling management API (AWS JSON 1.1)
// the way the AWS SDKs do: SigV4 signed, retried with the SDK's retryer,
// errors decoded into *APIError. Safe for concurrent use.
type TunnelClient struct {
	endpoint    string
	region      string
	credentials aws.CredentialsProvider
	httpClient  aws.HTTPClient
	retryer     aws.Retryer
	signer      *v4.Signer
}

// NewTunnelClient returns a client configured from cfg: region, credentials,
// HTTP client (and so any CA bundle), retryer, and the endpoint, resolved as
// the SDK resolves a service's endpoint (service-specific setting, then
// cfg.BaseEndpoint, then the AWS default for the region).
func NewTunnelClient(cfg aws.Config, optFns ...func(*TunnelOptions)) *TunnelClient {
	o := TunnelOptions{
		Region:      cfg.Region,
		Credentials: cfg.Credentials,
		HTTPClient:  cfg.HTTPClient,
	}
	if ep, ok := resolveTunnelEndpoint(cfg); ok {
		o.BaseEndpoint = &ep
	}
	for _, fn := range optFns {
		fn(&o)
	}
	if o.Retryer == nil {
		o.Retryer = defaultRetryer(cfg)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = awshttp.NewBuildableClient()
	}
	switch o.Credentials.(type) {
	case nil, aws.AnonymousCredentials, *aws.AnonymousCredentials:
		// No credentials means unsigned requests, as in the SDK.
		o.Credentials = nil
	case *aws.CredentialsCache:
	default:
		o.Credentials = aws.NewCredentialsCache(o.Credentials)
	}
	c := &TunnelClient{
		region:      o.Region,
		credentials: o.Credentials,
		httpClient:  o.HTTPClient,
		retryer:     o.Retryer,
		signer:      v4.NewSigner(),
	}
	if o.BaseEndpoint != nil {
		c.endpoint = *o.BaseEndpoint
	} else if o.Region != "" {
		c.endpoint = "https://api.tunneling.iot." + o.Region + ".amazonaws.com"
	}
	return c
}

// defaultRetryer mirrors what SDK clients do with cfg.Retryer and
// cfg.RetryMaxAttempts (AWS_MAX_ATTEMPTS, max_attempts).
func defaultRetryer(cfg aws.Config) aws.Retryer {
	var r aws.Retryer
	if cfg.Retryer != nil {
		r = cfg.Retryer()
	}
	if r == nil {
		r = retry.NewStandard()
	}
	if cfg.RetryMaxAttempts > 0 {
		r = retry.AddWithMaxAttempts(r, cfg.RetryMaxAttempts)
	}
	return r
}

// serviceEndpointSource is implemented by the config sources
// config.LoadDefaultConfig records (environment, shared config files).
type serviceEndpointSource interface {
	GetServiceBaseEndpoint(ctx context.Context, sdkID string) (string, bool, error)
}

type ignoreEndpointsSource interface {
	GetIgnoreConfiguredEndpoints(ctx context.Context) (bool, bool, error)
}

// resolveTunnelEndpoint applies the SDK's rules for configured endpoints: a
// service-specific setting overrides cfg.BaseEndpoint, except that a global
// AWS_ENDPOINT_URL in the environment beats a service-specific entry in a
// config file; AWS_IGNORE_CONFIGURED_ENDPOINT_URLS turns file/env lookup off.
func resolveTunnelEndpoint(cfg aws.Config) (string, bool) {
	ep, found := "", false
	if cfg.BaseEndpoint != nil {
		ep, found = *cfg.BaseEndpoint, true
	}
	_, global := os.LookupEnv(globalEndpointEnv)
	_, specific := os.LookupEnv(tunnelEndpointEnv)
	if global && !specific {
		return ep, found
	}
	ctx := context.Background()
	for _, src := range cfg.ConfigSources {
		if p, ok := src.(ignoreEndpointsSource); ok {
			if ignore, ok, err := p.GetIgnoreConfiguredEndpoints(ctx); err == nil && ok && ignore {
				return ep, found
			}
		}
	}
	for _, src := range cfg.ConfigSources {
		p, ok := src.(serviceEndpointSource)
		if !ok {
			continue
		}
		v, ok, err := p.GetServiceBaseEndpoint(ctx, tunnelSDKID)
		if err != nil {
			break
		}
		if ok {
			return v, true
		}
	}
	return ep, found
}

// Endpoint is the base URL the client sends requests to.
func (c *TunnelClient) Endpoint() string { return c.endpoint }

// OpenTunnel creates a tunnel and returns its access tokens.
func (c *TunnelClient) OpenTunnel(ctx context.Context, in *OpenTunnelInput) (*OpenTunnelOutput, error) {
	out := new(OpenTunnelOutput)
	return out, c.call(ctx, "OpenTunnel", orEmpty(in), out)
}

// DescribeTunnel returns a tunnel's description.
func (c *TunnelClient) DescribeTunnel(ctx context.Context, in *DescribeTunnelInput) (*DescribeTunnelOutput, error) {
	out := new(DescribeTunnelOutput)
	return out, c.call(ctx, "DescribeTunnel", orEmpty(in), out)
}

// ListTunnels returns one page of tunnel summaries.
func (c *TunnelClient) ListTunnels(ctx context.Context, in *ListTunnelsInput) (*ListTunnelsOutput, error) {
	out := new(ListTunnelsOutput)
	return out, c.call(ctx, "ListTunnels", orEmpty(in), out)
}

// CloseTunnel closes a tunnel, and deletes it when in.Delete is true.
func (c *TunnelClient) CloseTunnel(ctx context.Context, in *CloseTunnelInput) (*CloseTunnelOutput, error) {
	out := new(CloseTunnelOutput)
	return out, c.call(ctx, "CloseTunnel", orEmpty(in), out)
}

// orEmpty sends {} for a nil input, as the SDKs do.
func orEmpty[T any](in *T) *T {
	if in == nil {
		return new(T)
	}
	return in
}

// call runs one operation with the SDK's retry protocol: a retry token per
// retried attempt from the retryer's quota, the retryer's backoff between
// attempts, and a *retry.MaxAttemptsError once the attempts are used up.
func (c *TunnelClient) call(ctx context.Context, op string, in, out any) error {
	if c.endpoint == "" {
		return fmt.Errorf("%s: no endpoint: set a region or an endpoint URL", op)
	}
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: encode request: %w", op, err)
	}
	invocationID := newInvocationID()
	maxAttempts := c.retryer.MaxAttempts()
	release := c.initialToken(ctx)
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if waitErr := c.backoff(ctx, attempt, err); waitErr != nil {
				return waitErr
			}
		}
		err = c.attempt(ctx, op, body, out, invocationID, attempt, maxAttempts)
		_ = release(err)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !c.retryer.IsErrorRetryable(err) {
			return err
		}
		if attempt >= maxAttempts {
			return &retry.MaxAttemptsError{Attempt: attempt, Err: err}
		}
		var tokenErr error
		release, tokenErr = c.retryer.GetRetryToken(ctx, err)
		if tokenErr != nil {
			// The retry quota is spent: fail with the operation's error,
			// as the SDK does.
			return err
		}
	}
}

func (c *TunnelClient) initialToken(ctx context.Context) func(error) error {
	if r, ok := c.retryer.(aws.RetryerV2); ok {
		if fn, err := r.GetAttemptToken(ctx); err == nil {
			return fn
		}
	}
	return c.retryer.GetInitialToken()
}

// backoff waits the retryer's delay before the given attempt; the previous
// attempt's error is passed through when the retryer refuses to go on.
func (c *TunnelClient) backoff(ctx context.Context, attempt int, lastErr error) error {
	delay, err := c.retryer.RetryDelay(attempt, lastErr)
	if err != nil {
		return lastErr
	}
	if delay <= 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return &smithy.CanceledError{Err: ctx.Err()}
	}
}

// attempt sends one signed request and decodes its answer.
func (c *TunnelClient) attempt(ctx context.Context, op string, body []byte, out any, invocationID string, attempt, maxAttempts int) error {
	req, err := c.newRequest(ctx, op, body, invocationID, attempt, maxAttempts)
	if err != nil {
		return err
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return &smithy.CanceledError{Err: ctx.Err()}
		}
		return &smithyhttp.RequestSendError{Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTunnelRespBytes+1))
	if err != nil {
		// A body cut short is a transport failure, retried like one.
		return &smithyhttp.RequestSendError{Err: fmt.Errorf("read %s response: %w", op, err)}
	}
	if len(data) > maxTunnelRespBytes {
		return fmt.Errorf("%s: response larger than %d bytes", op, maxTunnelRespBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(op, resp, data)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
}

func (c *TunnelClient) newRequest(ctx context.Context, op string, body []byte, invocationID string, attempt, maxAttempts int) (*http.Request, error) {
	u, err := url.Parse(c.endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%s: invalid endpoint URL %q", op, c.endpoint)
	}
	// JSON protocols post to the endpoint's path, "/" when it has none.
	u.Path = strings.TrimSuffix(u.Path, "/") + "/"
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: build request: %w", op, err)
	}
	req.Header.Set("Content-Type", tunnelContentType)
	req.Header.Set("X-Amz-Target", tunnelTargetPrefix+op)
	req.Header.Set("User-Agent", "warren-admin aws-sdk-go-v2 (api/iotsecuretunneling)")
	req.Header.Set("Amz-Sdk-Invocation-Id", invocationID)
	req.Header.Set("Amz-Sdk-Request", fmt.Sprintf("attempt=%d; max=%d", attempt, maxAttempts))

	if c.credentials == nil {
		return req, nil
	}
	creds, err := c.credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: retrieve credentials: %w", op, err)
	}
	sum := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), tunnelSigningName, c.region, time.Now().UTC()); err != nil {
		return nil, fmt.Errorf("%s: sign request: %w", op, err)
	}
	return req, nil
}

func newInvocationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// APIError is an error answer of the tunnel service. Its Error text is the
// AWS CLI's. It implements smithy.APIError, and exposes the status code and
// error code the way the SDK's retryer looks for them, so throttling and 5xx
// answers are retried.
type APIError struct {
	Operation  string
	Code       string
	Message    string
	StatusCode int
	RequestID  string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("An error occurred (%s) when calling the %s operation: %s", e.Code, e.Operation, e.ErrorMessage())
}

// ErrorCode returns the error's type, such as ResourceNotFoundException.
func (e *APIError) ErrorCode() string { return e.Code }

// ErrorMessage returns the service's message, "Unknown" when it sent none
// (as botocore does).
func (e *APIError) ErrorMessage() string {
	if e.Message == "" {
		return "Unknown"
	}
	return e.Message
}

// ErrorFault says whether the caller or the service is at fault.
func (e *APIError) ErrorFault() smithy.ErrorFault {
	switch {
	case e.StatusCode >= 500:
		return smithy.FaultServer
	case e.StatusCode >= 400:
		return smithy.FaultClient
	}
	return smithy.FaultUnknown
}

// HTTPStatusCode returns the answer's status code.
func (e *APIError) HTTPStatusCode() int { return e.StatusCode }

var _ smithy.APIError = (*APIError)(nil)

// decodeAPIError reads the error type from X-Amzn-ErrorType or the body's
// __type/code, sanitized as the SDK does ("ns#Name:uri" → "Name"), and the
// message from the body. With neither, the code is the status code and the
// message its text, as botocore reports such answers.
func decodeAPIError(op string, resp *http.Response, body []byte) error {
	e := &APIError{
		Operation:  op,
		StatusCode: resp.StatusCode,
		RequestID:  resp.Header.Get("X-Amzn-Requestid"),
	}
	code, msg, err := restjson.GetErrorInfo(json.NewDecoder(bytes.NewReader(body)))
	if err != nil {
		code, msg = "", ""
	}
	if h := resp.Header.Get("X-Amzn-Errortype"); h != "" {
		code = restjson.SanitizeErrorCode(h)
	}
	if msg == "" {
		msg = resp.Header.Get("X-Amzn-Errormessage")
	}
	if code == "" {
		code = strconv.Itoa(resp.StatusCode)
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
	}
	e.Code, e.Message = code, msg
	if e.StatusCode == http.StatusTooManyRequests && !modeledTunnelErrors[e.Code] {
		return &unmodeledThrottle{e}
	}
	return e
}

// modeledTunnelErrors are the error shapes the tunneling API's model defines.
var modeledTunnelErrors = map[string]bool{"ResourceNotFoundException": true, "LimitExceededException": true}

// unmodeledThrottle marks a 429 whose error is not one of the API's modeled
// errors: the SDK retries those whatever their code, but it recognizes them
// by their being *smithy.GenericAPIError, which APIError is not.
type unmodeledThrottle struct{ *APIError }

func (e *unmodeledThrottle) Unwrap() error        { return e.APIError }
func (e *unmodeledThrottle) RetryableError() bool { return true }

// errorsAsAPI finds a smithy.APIError in err's chain.
func errorsAsAPI(err error) (smithy.APIError, bool) {
	var apiErr smithy.APIError
	ok := errors.As(err, &apiErr)
	return apiErr, ok
}
