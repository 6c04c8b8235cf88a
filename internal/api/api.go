// Package api is Warren's AWS-compatible management API: the AWS JSON 1.1
// protocol of AWS IoT Secure Tunneling (OpenTunnel, CloseTunnel, ...), the
// REST JSON protocol of the AWS IoT thing registry (CreateThing, ...) and
// Warren's own account administration in AWS JSON 1.1 (WarrenAccounts.*,
// admin accounts only), all authenticated with AWS Signature Version 4
// against the accounts in the store. It owns request parsing, validation
// beyond the domain's rules, signature checking and the mapping of errors to
// AWS's error shapes. It does not own the data plane (/tunnel) nor
// persistence: it tells the relay when a tunnel closes and keeps everything
// in the store.
package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/google/uuid"
	"github.com/warrentunnel/warren/internal/ratelimit"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// MaxBodyBytes bounds a request body. The largest legitimate request, an
// OpenTunnel with 200 tags and a 2048-character description, is far smaller.
const MaxBodyBytes = 1 << 20

// DefaultRegion is the region of ARNs and of credential scopes when the
// configuration names none.
const DefaultRegion = "us-east-1"

// Store is the part of *store.Store the API uses. Every call of the thing
// and tunnel operations names the calling account, so an account only ever
// sees its own records; the account methods serve the admin account's
// account administration.
type Store interface {
	AccountByAccessKey(ctx context.Context, accessKeyID string) (tunnel.Account, error)

	CreateThing(ctx context.Context, t tunnel.Thing) error
	Thing(ctx context.Context, accountID, name string) (tunnel.Thing, error)
	Things(ctx context.Context, accountID, after string, limit int) ([]tunnel.Thing, error)
	DeleteThing(ctx context.Context, accountID, name string) error

	// CreateTunnelWithin adds t unless its account has maxOpen open
	// tunnels already (tunnel.ErrLimitExceeded), atomically: two
	// concurrent calls cannot both take the last place.
	CreateTunnelWithin(ctx context.Context, t tunnel.Tunnel, maxOpen int) error
	Tunnel(ctx context.Context, accountID, id string) (tunnel.Tunnel, error)
	// Tunnels lists an account's tunnels newest first, from the place
	// after (the zero Position: the start).
	Tunnels(ctx context.Context, accountID, thingName string, after tunnel.Position, limit int) ([]tunnel.Tunnel, error)
	UpdateTunnel(ctx context.Context, id string, fn func(*tunnel.Tunnel) error) (tunnel.Tunnel, error)
	DeleteTunnel(ctx context.Context, accountID, id string) error

	CreateAccount(ctx context.Context, a tunnel.Account) error
	Account(ctx context.Context, id string) (tunnel.Account, error)
	// Accounts lists the accounts oldest first, from the place after.
	Accounts(ctx context.Context, after tunnel.Position, limit int) ([]tunnel.Account, error)
	UpdateAccount(ctx context.Context, id string, fn func(*tunnel.Account) error) (tunnel.Account, error)
	// DeleteAccount deletes an account with its things and tunnels and
	// returns the ids of the tunnels that were open.
	DeleteAccount(ctx context.Context, id string) (openTunnels []string, err error)
	AccountOpenTunnels(ctx context.Context, accountID string) ([]tunnel.Tunnel, error)

	// Device certificates, and their attachments to things, of an account.
	CreateCertificate(ctx context.Context, c tunnel.Certificate) error
	Certificate(ctx context.Context, accountID, id string) (tunnel.Certificate, error)
	UpdateCertificate(ctx context.Context, accountID, id string, fn func(*tunnel.Certificate) error) (tunnel.Certificate, error)
	AttachThingPrincipal(ctx context.Context, accountID, thingName, certID string) error
	DetachThingPrincipal(ctx context.Context, accountID, thingName, certID string) error
	ThingPrincipals(ctx context.Context, accountID, thingName, after string, limit int) ([]string, error)
	AccountCertificateIDs(ctx context.Context, accountID string) ([]string, error)
}

// Relay disconnects the peers of a tunnel that was closed, and those of
// the sides of a tunnel whose access tokens were rotated.
type Relay interface {
	CloseTunnel(tunnelID string)
	RotateTunnel(tunnelID string, modes ...tunnel.Mode)
}

// Bandwidth is the relay's per-account bandwidth limiter as the API sees it.
type Bandwidth interface {
	// SetLimit applies an account's own limit (tunnel.BandwidthDefault: the server default) to its live tunnels.
	SetLimit(accountID string, limit int64)
	// Usage reports the limit in force (0 = unlimited) and the current rates in bytes per second.
	Usage(accountID string) (limit int64, sourceToDestination, destinationToSource float64)
}

// Metrics observes every request: its operation (one the API serves, or
// "Unknown"), the error code it was answered with ("OK" for none) and how
// long it took. *metrics.Metrics satisfies it.
type Metrics interface {
	ObserveRequest(operation, code string, took time.Duration)
}

// UnknownOperation is the operation Metrics sees for a request that names
// none the API serves, so that clients cannot make up label values.
const UnknownOperation = "Unknown"

// Config configures the API. Store is required; the rest has defaults.
// The quotas' zero values mean no limit; `warren serve` sets its defaults.
type Config struct {
	Store Store
	Relay Relay // nil: nobody to disconnect
	// Bandwidth nil: no limiter; DescribeAccount reports an account's own
	// limit as the one in force (the default as unlimited) and no traffic.
	Bandwidth Bandwidth
	Metrics   Metrics          // nil: none
	Region    string           // DefaultRegion if empty
	Logger    *slog.Logger     // slog.Default() if nil
	Now       func() time.Time // time.Now if nil

	// MaxOpenTunnels is how many open tunnels an account may have:
	// OpenTunnel beyond it fails with LimitExceededException.
	MaxOpenTunnels int
	// RequestRate and RequestBurst are each account's token bucket for
	// API requests (requests per second, and how many may come at once):
	// beyond it a request fails with ThrottlingException (429), which the
	// AWS SDKs retry after a pause. RequestBurst below 1 counts as 1.
	RequestRate  float64
	RequestBurst int

	// CursorKey signs the nextTokens of the List operations (CursorKeySize
	// random bytes, kept by the store so that tokens survive a restart);
	// nil: a random key of this API's own.
	CursorKey []byte

	// DeviceCA signs CreateKeysAndCertificate's certificates; nil: that
	// operation is refused.
	DeviceCA DeviceCA
	// Notifier is told of every destination access token a tunnel with a
	// thing gets (OpenTunnel, RotateTunnelAccessToken); nil: no one is.
	Notifier Notifier
	// Broker drops the clients of a certificate that stops being ACTIVE;
	// nil: no embedded broker.
	Broker CertificateBroker
	// MQTTEndpoint is DescribeEndpoint's answer (host:port of the MQTT
	// broker devices use); "": the server has none.
	MQTTEndpoint string
}

// API serves the management API. It is safe for concurrent use.
type API struct {
	store     Store
	relay     Relay
	bandwidth Bandwidth // nil: none
	metrics   Metrics   // nil: none
	region    string
	log       *slog.Logger
	now       func() time.Time
	signer    *v4.Signer

	maxTunnels int
	rate       float64
	burst      int
	requests   *ratelimit.Buckets // by account id; nil: no limit
	cursors    cursors

	deviceCA     DeviceCA
	notifier     Notifier
	broker       CertificateBroker
	mqttEndpoint string

	jsonOps map[string]jsonOp
}

// New returns an API serving cfg.Store's accounts.
func New(cfg Config) *API {
	a := &API{
		store:     cfg.Store,
		relay:     cfg.Relay,
		bandwidth: cfg.Bandwidth,
		metrics:   cfg.Metrics,
		region:    cfg.Region,
		log:       cfg.Logger,
		now:       cfg.Now,
		signer:    v4.NewSigner(),

		maxTunnels: cfg.MaxOpenTunnels,
		rate:       cfg.RequestRate,
		burst:      max(cfg.RequestBurst, 1),
		requests:   ratelimit.New(ratelimit.Config{Rate: cfg.RequestRate, Burst: cfg.RequestBurst}),
		cursors:    newCursors(cfg.CursorKey),

		deviceCA:     cfg.DeviceCA,
		notifier:     cfg.Notifier,
		broker:       cfg.Broker,
		mqttEndpoint: cfg.MQTTEndpoint,
	}
	if a.region == "" {
		a.region = DefaultRegion
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.relay == nil {
		a.relay = noRelay{}
	}
	a.jsonOps = map[string]jsonOp{}
	for prefix, ops := range map[string]map[string]jsonOp{targetPrefix: a.tunnelOps(), accountsTargetPrefix: a.accountOps()} {
		for name, op := range ops {
			a.jsonOps[prefix+name] = op
		}
	}
	return a
}

type noRelay struct{}

func (noRelay) CloseTunnel(string)                  {}
func (noRelay) RotateTunnel(string, ...tunnel.Mode) {}

// protocol is the wire protocol of a request: it decides the error format's
// status codes and the response content type.
type protocol int

const (
	protoJSON protocol = iota // AWS JSON 1.1, IoTSecuredTunneling
	protoREST                 // REST JSON, iot
	// protoWarrenJSON is AWS JSON 1.1 for Warren's own services, whose
	// errors keep their REST status (404 not found, 409 conflict).
	protoWarrenJSON
)

// Signing names of the services (as their API models spell them for AWS's
// own) and the X-Amz-Target prefixes of the JSON ones.
const (
	signingNameTunnels   = "IoTSecuredTunneling"
	signingNameIoT       = "iot"
	signingNameWarren    = "warren"
	targetPrefix         = signingNameTunnels + "."
	accountsTargetPrefix = "WarrenAccounts."
)

// call is one authenticated request on its way to its operation.
type call struct {
	r       *http.Request
	proto   protocol
	op      string
	known   bool // op is one the API serves
	body    []byte
	account tunnel.Account
}

// ServeHTTP serves every path except the data plane's /tunnel.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c := &call{r: r}
	w.Header().Set("x-amzn-RequestId", newUUID())
	// SDKs correct their clock from the Date of a refused request, so it must
	// be the clock the signature's date is checked against.
	w.Header().Set("Date", a.now().UTC().Format(http.TimeFormat))

	out, err := a.serve(r.Context(), c)
	status, code := http.StatusOK, "OK"
	if err != nil {
		status, code = a.writeError(w, c, err)
	} else {
		a.writeJSON(w, c.proto, http.StatusOK, out)
	}
	if a.metrics != nil {
		op := c.op
		if !c.known {
			op = UnknownOperation
		}
		a.metrics.ObserveRequest(op, code, time.Since(start))
	}
	a.log.LogAttrs(r.Context(), slog.LevelDebug, "api request",
		slog.String("op", c.op), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("account", c.account.ID), slog.Int("status", status),
		slog.Duration("took", time.Since(start)))
}

// serve routes, authenticates and runs one request.
func (a *API) serve(ctx context.Context, c *call) (any, error) {
	r := c.r
	var run func(context.Context, *call) (any, error)
	var service string
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		c.proto, service = protoJSON, signingNameTunnels
		c.op = strings.TrimPrefix(target, targetPrefix)
		if op, ok := strings.CutPrefix(target, accountsTargetPrefix); ok {
			c.proto, service, c.op = protoWarrenJSON, signingNameWarren, op
		}
		if r.Method != http.MethodPost || r.URL.Path != "/" {
			return nil, errUnknownOperation("AWS JSON 1.1 requests are POST /, not %s %s", r.Method, r.URL.Path)
		}
		_, c.known = a.jsonOps[target]
		run = a.runJSON
	} else {
		c.proto, service = protoREST, signingNameIoT
		op, h := a.routeREST(r)
		if h == nil {
			return nil, errUnknownOperation("no operation serves %s %s", r.Method, r.URL.Path)
		}
		c.op, c.known = op, true
		run = h
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	c.body = body
	if c.account, err = a.authenticate(ctx, r, body, service); err != nil {
		return nil, err
	}
	// Counted after authentication, against the signing account: an
	// unsigned or forged request cannot use up an account's requests.
	if !a.requests.Allow(c.account.ID) {
		return nil, errThrottled(a.rate, a.burst)
	}
	return run(ctx, c)
}

// readBody reads the whole body, refusing more than MaxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxBodyBytes {
		return nil, errTooLarge()
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, &apiError{status: http.StatusBadRequest, code: codeSerialization, message: fmt.Sprintf("reading the request body: %v", err)}
	}
	if len(body) > MaxBodyBytes {
		return nil, errTooLarge()
	}
	return body, nil
}

// newUUID returns a random (version 4) UUID, the form of AWS's request and
// thing ids. It panics only if crypto/rand fails, which it does not on
// supported platforms.
func newUUID() string { return uuid.NewString() }
