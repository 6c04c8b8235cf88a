package admin

import (
	"bytes"
	"context"
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
	"github.com/google/uuid"
)

// A small client of AWS JSON 1.1 services, for the services whose generated
// SDK client is not available (IoT Secure Tunneling) or does not exist
// (Warren's own): TunnelClient and AccountClient are this client with their
// service's identity and operations.

const (
	jsonContentType   = "application/x-amz-json-1.1"
	globalEndpointEnv = "AWS_ENDPOINT_URL"
	maxJSONRespBytes  = 8 << 20 // no sane response comes near this
)

// jsonService is a service's identity in its API model.
type jsonService struct {
	// sdkID names the service-specific endpoint settings: the environment
	// variable AWS_ENDPOINT_URL_<SDK ID> and the shared config's services
	// section of the lowercased SDK ID.
	sdkID        string
	signingName  string // the service of the SigV4 scope
	targetPrefix string // of X-Amz-Target, with its dot
	apiName      string // the User-Agent's api/<name>
	// defaultEndpoint is the endpoint of a region when none is configured;
	// nil for a service without one.
	defaultEndpoint func(region string) string
	// modeledErrors are the error codes the service's model defines.
	modeledErrors map[string]bool
}

// endpointEnv is the service-specific endpoint variable, as the SDK derives
// it from the SDK ID.
func (s *jsonService) endpointEnv() string {
	return globalEndpointEnv + "_" + strings.ToUpper(strings.ReplaceAll(s.sdkID, " ", "_"))
}

// ClientOptions overrides what NewTunnelClient and NewAccountClient take from
// the aws.Config.
type ClientOptions struct {
	// BaseEndpoint, when set, wins over every configured endpoint.
	BaseEndpoint *string
	Region       string
	Credentials  aws.CredentialsProvider
	HTTPClient   aws.HTTPClient
	// Retryer decides which failures are retried and how long to wait; the
	// SDK's standard retryer when nil.
	Retryer aws.Retryer
}

// jsonClient calls one AWS JSON 1.1 service the way the AWS SDKs do: SigV4
// signed, retried with the SDK's retryer, errors decoded into *APIError.
// Safe for concurrent use.
type jsonClient struct {
	svc         *jsonService
	endpoint    string
	region      string
	credentials aws.CredentialsProvider
	httpClient  aws.HTTPClient
	retryer     aws.Retryer
	signer      *v4.Signer
}

// newJSONClient returns a client of svc configured from cfg: region,
// credentials, HTTP client (and so any CA bundle), retryer, and the endpoint,
// resolved as the SDK resolves a service's endpoint (service-specific
// setting, then cfg.BaseEndpoint, then the service's default for the region).
func newJSONClient(svc *jsonService, cfg aws.Config, optFns []func(*ClientOptions)) *jsonClient {
	o := ClientOptions{
		Region:      cfg.Region,
		Credentials: cfg.Credentials,
		HTTPClient:  cfg.HTTPClient,
	}
	if ep, ok := resolveEndpoint(svc, cfg); ok {
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
	c := &jsonClient{
		svc:         svc,
		region:      o.Region,
		credentials: o.Credentials,
		httpClient:  o.HTTPClient,
		retryer:     o.Retryer,
		signer:      v4.NewSigner(),
	}
	if o.BaseEndpoint != nil {
		c.endpoint = *o.BaseEndpoint
	} else if o.Region != "" && svc.defaultEndpoint != nil {
		c.endpoint = svc.defaultEndpoint(o.Region)
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

// resolveEndpoint applies the SDK's rules for configured endpoints: a
// service-specific setting overrides cfg.BaseEndpoint, except that a global
// AWS_ENDPOINT_URL in the environment beats a service-specific entry in a
// config file; AWS_IGNORE_CONFIGURED_ENDPOINT_URLS turns file/env lookup off.
func resolveEndpoint(svc *jsonService, cfg aws.Config) (string, bool) {
	ep, found := "", false
	if cfg.BaseEndpoint != nil {
		ep, found = *cfg.BaseEndpoint, true
	}
	_, global := os.LookupEnv(globalEndpointEnv)
	_, specific := os.LookupEnv(svc.endpointEnv())
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
		v, ok, err := p.GetServiceBaseEndpoint(ctx, svc.sdkID)
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
func (c *jsonClient) Endpoint() string { return c.endpoint }

// call runs one operation with the SDK's retry protocol: a retry token per
// retried attempt from the retryer's quota, the retryer's backoff between
// attempts, and a *retry.MaxAttemptsError once the attempts are used up.
func (c *jsonClient) call(ctx context.Context, op string, in, out any) error {
	if c.endpoint == "" {
		if c.svc.defaultEndpoint == nil {
			return fmt.Errorf("%s: no endpoint: set AWS_ENDPOINT_URL or --endpoint-url to the server's URL", op)
		}
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

func (c *jsonClient) initialToken(ctx context.Context) func(error) error {
	if r, ok := c.retryer.(aws.RetryerV2); ok {
		if fn, err := r.GetAttemptToken(ctx); err == nil {
			return fn
		}
	}
	return c.retryer.GetInitialToken()
}

// backoff waits the retryer's delay before the given attempt; the previous
// attempt's error is passed through when the retryer refuses to go on.
func (c *jsonClient) backoff(ctx context.Context, attempt int, lastErr error) error {
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
func (c *jsonClient) attempt(ctx context.Context, op string, body []byte, out any, invocationID string, attempt, maxAttempts int) error {
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
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONRespBytes+1))
	if err != nil {
		// A body cut short is a transport failure, retried like one.
		return &smithyhttp.RequestSendError{Err: fmt.Errorf("read %s response: %w", op, err)}
	}
	if len(data) > maxJSONRespBytes {
		return fmt.Errorf("%s: response larger than %d bytes", op, maxJSONRespBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(c.svc, op, resp, data)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
}

func (c *jsonClient) newRequest(ctx context.Context, op string, body []byte, invocationID string, attempt, maxAttempts int) (*http.Request, error) {
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
	req.Header.Set("Content-Type", jsonContentType)
	req.Header.Set("X-Amz-Target", c.svc.targetPrefix+op)
	req.Header.Set("User-Agent", "warren-admin aws-sdk-go-v2 (api/"+c.svc.apiName+")")
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
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), c.svc.signingName, c.region, time.Now().UTC()); err != nil {
		return nil, fmt.Errorf("%s: sign request: %w", op, err)
	}
	return req, nil
}

func newInvocationID() string { return uuid.NewString() }

// APIError is an error answer of a JSON service. Its Error text is the
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
func decodeAPIError(svc *jsonService, op string, resp *http.Response, body []byte) error {
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
	if e.StatusCode == http.StatusTooManyRequests && !svc.modeledErrors[e.Code] {
		return &unmodeledThrottle{e}
	}
	return e
}

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
