package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/warrentunnel/warren/internal/notify"
	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// Device identities, with the iot model's REST shapes: CreateKeysAndCertificate,
// DescribeCertificate, UpdateCertificate, Attach/Detach/ListThingPrincipals and
// DescribeEndpoint (the MQTT broker's address), and the tunnel notifications
// OpenTunnel and RotateTunnelAccessToken send to a destination's device.

// DeviceCA signs device certificates.
type DeviceCA interface {
	// Issue makes a key pair and a certificate for it.
	Issue() (IssuedCertificate, error)
}

// IssuedCertificate is a new device certificate with its key pair, in PEM.
type IssuedCertificate struct {
	ID             string // hex SHA-256 of the DER certificate
	CertificatePEM string
	PublicKeyPEM   string
	PrivateKeyPEM  string
}

// Notifier tells a thing's device of a tunnel's destination access token.
// It must not block: the API calls it inline.
type Notifier interface {
	Notify(ctx context.Context, thingName string, n notify.Notification)
}

// CertificateBroker is the MQTT broker as the API sees it: it drops the
// clients of a certificate that stopped being ACTIVE.
type CertificateBroker interface {
	DisconnectCertificate(id string)
}

// maxPrincipalsPage is ListThingPrincipals' largest page (RegistryMaxResults).
const maxPrincipalsPage = 250

// routeCertificates finds the device identity operations of r.
func (a *API) routeCertificates(r *http.Request) (string, func(context.Context, *call) (any, error)) {
	path := r.URL.Path
	switch {
	case path == "/keys-and-certificate" && r.Method == http.MethodPost:
		return "CreateKeysAndCertificate", a.createKeysAndCertificate
	case path == "/endpoint" && r.Method == http.MethodGet:
		return "DescribeEndpoint", a.describeEndpoint
	case strings.HasPrefix(path, "/certificates/") && !strings.Contains(path[len("/certificates/"):], "/"):
		switch r.Method {
		case http.MethodGet:
			return "DescribeCertificate", a.describeCertificate
		case http.MethodPut:
			return "UpdateCertificate", a.updateCertificate
		}
	case strings.HasPrefix(path, "/things/") && strings.HasSuffix(path, "/principals"):
		switch r.Method {
		case http.MethodPut:
			return "AttachThingPrincipal", a.attachThingPrincipal
		case http.MethodDelete:
			return "DetachThingPrincipal", a.detachThingPrincipal
		case http.MethodGet:
			return "ListThingPrincipals", a.listThingPrincipals
		}
	}
	return "", nil
}

func errCertState(format string, args ...any) *apiError {
	return newError(http.StatusNotAcceptable, "CertificateStateException", format, args...)
}

func (a *API) certificateARN(accountID, id string) string {
	return tunnel.CertificateARN(a.region, accountID, id)
}

func (a *API) createKeysAndCertificate(ctx context.Context, c *call) (any, error) {
	active := false
	if s := c.r.URL.Query().Get("setAsActive"); s != "" {
		v, err := strconv.ParseBool(s)
		if err != nil {
			return nil, errInvalid("setAsActive must be true or false, not %q", s)
		}
		active = v
	}
	if a.deviceCA == nil {
		return nil, errInvalid("this server issues no device certificates (it was started without a device CA)")
	}
	issued, err := a.deviceCA.Issue()
	if err != nil {
		return nil, err
	}
	status := tunnel.CertInactive
	if active {
		status = tunnel.CertActive
	}
	cert := tunnel.Certificate{ID: issued.ID, AccountID: c.account.ID, PEM: issued.CertificatePEM, Status: status, CreatedAt: a.now().UTC()}
	if err := a.store.CreateCertificate(ctx, cert); err != nil {
		return nil, err
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "device certificate created", slog.String("account", c.account.ID),
		slog.String("certificate", cert.ID), slog.String("status", string(status)))
	type keyPair struct {
		PublicKey  string `json:"PublicKey"`
		PrivateKey string `json:"PrivateKey"`
	}
	return struct {
		CertificateArn string  `json:"certificateArn"`
		CertificateID  string  `json:"certificateId"`
		CertificatePem string  `json:"certificatePem"`
		KeyPair        keyPair `json:"keyPair"`
	}{a.certificateARN(c.account.ID, cert.ID), cert.ID, cert.PEM, keyPair{issued.PublicKeyPEM, issued.PrivateKeyPEM}}, nil
}

// certificateID is the {certificateId} of the request path, checked.
func certificateID(r *http.Request) (string, error) {
	id := strings.TrimPrefix(r.URL.Path, "/certificates/")
	if !tunnel.ValidCertificateID(id) {
		return "", errInvalid("certificateId %q must be 64 lowercase hexadecimal digits", id)
	}
	return id, nil
}

func errCertNotFound(id string) *apiError {
	return errNotFound("certificate %s does not exist in this account", id)
}

func (a *API) describeCertificate(ctx context.Context, c *call) (any, error) {
	id, err := certificateID(c.r)
	if err != nil {
		return nil, err
	}
	cert, err := a.store.Certificate(ctx, c.account.ID, id)
	if errors.Is(err, tunnel.ErrNotFound) {
		return nil, errCertNotFound(id)
	} else if err != nil {
		return nil, err
	}
	type description struct {
		CertificateArn string              `json:"certificateArn"`
		CertificateID  string              `json:"certificateId"`
		Status         string              `json:"status"`
		CertificatePem string              `json:"certificatePem"`
		OwnedBy        string              `json:"ownedBy"`
		CreationDate   tunnelapi.EpochTime `json:"creationDate"`
	}
	return struct {
		CertificateDescription description `json:"certificateDescription"`
	}{description{a.certificateARN(c.account.ID, id), id, string(cert.Status), cert.PEM, c.account.ID, epochTime(cert.CreatedAt)}}, nil
}

func (a *API) updateCertificate(ctx context.Context, c *call) (any, error) {
	id, err := certificateID(c.r)
	if err != nil {
		return nil, err
	}
	to := tunnel.CertStatus(c.r.URL.Query().Get("newStatus"))
	if to == "" {
		return nil, required("newStatus (ACTIVE, INACTIVE or REVOKED)")
	}
	_, err = a.store.UpdateCertificate(ctx, c.account.ID, id, func(cert *tunnel.Certificate) error {
		if err := tunnel.UpdateCertStatus(cert.Status, to); err != nil {
			return err
		}
		cert.Status = to
		return nil
	})
	switch {
	case errors.Is(err, tunnel.ErrNotFound):
		return nil, errCertNotFound(id)
	case errors.Is(err, tunnel.ErrCertRevoked):
		return nil, errCertState("certificate %s is REVOKED; a revoked certificate cannot be activated again (create a new one)", id)
	case err != nil:
		return nil, err
	}
	// The store says it is no longer active before the broker drops its
	// clients, so a client cannot reconnect in between.
	if to != tunnel.CertActive && a.broker != nil {
		a.broker.DisconnectCertificate(id)
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "device certificate updated", slog.String("account", c.account.ID),
		slog.String("certificate", id), slog.String("status", string(to)))
	return struct{}{}, nil
}

// principal reads the principal (a certificate ARN of the account) of the
// x-amzn-principal header and the {thingName} of a .../principals path.
func (a *API) principal(c *call) (thing, certID string, err error) {
	thing = strings.TrimSuffix(strings.TrimPrefix(c.r.URL.Path, "/things/"), "/principals")
	if !tunnel.ValidName(thing) {
		return "", "", errInvalid("thing name %q must be 1 to 128 characters of a-z A-Z 0-9 : _ -", thing)
	}
	arn := c.r.Header.Get("x-amzn-principal")
	if arn == "" {
		return "", "", required("principal (the x-amzn-principal header: a certificate ARN)")
	}
	certID, ok := tunnel.CertificateIDFromARN(arn)
	if !ok {
		return "", "", errInvalid("principal %q is not a certificate ARN (arn:aws:iot:REGION:ACCOUNT:cert/ID); this server has no other principals", arn)
	}
	if arn != a.certificateARN(c.account.ID, certID) {
		return "", "", errNotFound("principal %s is not a certificate of this account", arn)
	}
	return thing, certID, nil
}

func (a *API) attachThingPrincipal(ctx context.Context, c *call) (any, error) {
	thing, certID, err := a.principal(c)
	if err != nil {
		return nil, err
	}
	if q := c.r.URL.Query().Get("thingPrincipalType"); q != "" && q != "EXCLUSIVE_THING" && q != "NON_EXCLUSIVE_THING" {
		return nil, errInvalid("thingPrincipalType must be EXCLUSIVE_THING or NON_EXCLUSIVE_THING, not %q", q)
	}
	if err := a.store.AttachThingPrincipal(ctx, c.account.ID, thing, certID); errors.Is(err, tunnel.ErrNotFound) {
		return nil, errNotFound("thing %s or certificate %s does not exist in this account", thing, certID)
	} else if err != nil {
		return nil, err
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "certificate attached to thing", slog.String("account", c.account.ID),
		slog.String("thing", thing), slog.String("certificate", certID))
	return struct{}{}, nil
}

func (a *API) detachThingPrincipal(ctx context.Context, c *call) (any, error) {
	thing, certID, err := a.principal(c)
	if err != nil {
		return nil, err
	}
	if _, err := a.store.Thing(ctx, c.account.ID, thing); errors.Is(err, tunnel.ErrNotFound) {
		return nil, errNotFound("thing %s does not exist in this account", thing)
	} else if err != nil {
		return nil, err
	}
	if err := a.store.DetachThingPrincipal(ctx, c.account.ID, thing, certID); err != nil {
		return nil, err
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "certificate detached from thing", slog.String("account", c.account.ID),
		slog.String("thing", thing), slog.String("certificate", certID))
	return struct{}{}, nil
}

func (a *API) listThingPrincipals(ctx context.Context, c *call) (any, error) {
	thing := strings.TrimSuffix(strings.TrimPrefix(c.r.URL.Path, "/things/"), "/principals")
	if !tunnel.ValidName(thing) {
		return nil, errInvalid("thing name %q must be 1 to 128 characters of a-z A-Z 0-9 : _ -", thing)
	}
	q := c.r.URL.Query()
	limit := maxPrincipalsPage
	if s := q.Get("maxResults"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPrincipalsPage {
			return nil, errInvalid("maxResults must be an integer between 1 and %d, not %q", maxPrincipalsPage, s)
		}
		limit = n
	}
	after := ""
	if tok := q.Get("nextToken"); tok != "" {
		id, ok := a.cursors.decode("principal", tok)
		if after = string(id); !ok || !tunnel.ValidCertificateID(after) {
			return nil, errInvalid("nextToken is not valid: pass the nextToken of a previous ListThingPrincipals response")
		}
	}
	if _, err := a.store.Thing(ctx, c.account.ID, thing); errors.Is(err, tunnel.ErrNotFound) {
		return nil, errNotFound("thing %s does not exist in this account", thing)
	} else if err != nil {
		return nil, err
	}
	ids, err := a.store.ThingPrincipals(ctx, c.account.ID, thing, after, limit+1)
	if err != nil {
		return nil, err
	}
	var out struct {
		Principals []string `json:"principals"`
		NextToken  string   `json:"nextToken,omitempty"`
	}
	if len(ids) > limit {
		ids = ids[:limit]
		out.NextToken = a.cursors.encode("principal", []byte(ids[limit-1]))
	}
	out.Principals = make([]string, len(ids))
	for i, id := range ids {
		out.Principals[i] = a.certificateARN(c.account.ID, id)
	}
	return out, nil
}

func (a *API) describeEndpoint(_ context.Context, c *call) (any, error) {
	switch t := c.r.URL.Query().Get("endpointType"); t {
	case "", "iot:Data", "iot:Data-ATS":
	default:
		return nil, errInvalid("endpointType %q: this server has only the MQTT data endpoint (iot:Data-ATS)", t)
	}
	if a.mqttEndpoint == "" {
		return nil, errInvalid("this server has no MQTT broker: start warren serve with --mqtt-listen or --mqtt-url")
	}
	return struct {
		EndpointAddress string `json:"endpointAddress"`
	}{a.mqttEndpoint}, nil
}

// notifyDestination tells a tunnel's destination device of its new access
// token, if the tunnel has a thing and the server a notifier.
func (a *API) notifyDestination(ctx context.Context, t tunnel.Tunnel, token string) {
	if a.notifier == nil || t.ThingName == "" || token == "" {
		return
	}
	a.notifier.Notify(ctx, t.ThingName, notify.Notification{
		ClientAccessToken: token,
		ClientMode:        notify.ModeDestination,
		Region:            a.region,
		Services:          append([]string{}, t.Services...),
	})
}
