package api

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// Thing registry limits (iot model and AWS IoT quotas).
const (
	maxThingsPage     = 250 // RegistryMaxResults
	defaultThingsPage = 50
	// maxUntypedAttributes: a thing without a thing type has at most three
	// attributes, and Warren has no thing types.
	maxUntypedAttributes = 3
)

var (
	attrNamePattern  = regexp.MustCompile(`^[a-zA-Z0-9_.,@/:#-]{1,128}$`)
	attrValuePattern = regexp.MustCompile(`^[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}$`)
)

// routeREST finds the iot REST operation of r.
func (a *API) routeREST(r *http.Request) (string, func(context.Context, *call) (any, error)) {
	if op, h := a.routeCertificates(r); h != nil {
		return op, h
	}
	path := r.URL.Path
	if path == "/things" || path == "/things/" {
		if r.Method == http.MethodGet {
			return "ListThings", a.listThings
		}
		return "", nil
	}
	name, ok := strings.CutPrefix(path, "/things/")
	if !ok || strings.Contains(name, "/") {
		return "", nil
	}
	switch r.Method {
	case http.MethodPost:
		return "CreateThing", a.createThing
	case http.MethodGet:
		return "DescribeThing", a.describeThing
	case http.MethodDelete:
		return "DeleteThing", a.deleteThing
	}
	return "", nil
}

// thingName is the {thingName} of the request path, checked.
func thingName(r *http.Request) (string, error) {
	name := strings.TrimPrefix(r.URL.Path, "/things/")
	if !tunnel.ValidName(name) {
		return "", errInvalid("thing name %q must be 1 to 128 characters of a-z A-Z 0-9 : _ -", name)
	}
	return name, nil
}

// Shapes of the iot model.
type (
	attributePayload struct {
		Attributes map[string]string `json:"attributes"`
		Merge      *bool             `json:"merge"`
	}
	thingAttribute struct {
		ThingName  string            `json:"thingName"`
		ThingARN   string            `json:"thingArn"`
		Attributes map[string]string `json:"attributes"`
		Version    int64             `json:"version"`
	}
)

func (a *API) createThing(ctx context.Context, c *call) (any, error) {
	name, err := thingName(c.r)
	if err != nil {
		return nil, err
	}
	var in struct {
		ThingTypeName    *string           `json:"thingTypeName"`
		AttributePayload *attributePayload `json:"attributePayload"`
		BillingGroupName *string           `json:"billingGroupName"`
	}
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	// Warren has no thing types nor billing groups, so any named one does
	// not exist, as AWS answers for one never created.
	if in.ThingTypeName != nil {
		return nil, errNotFound("thing type %q does not exist: this server has no thing types", *in.ThingTypeName)
	}
	if in.BillingGroupName != nil {
		return nil, errNotFound("billing group %q does not exist: this server has no billing groups", *in.BillingGroupName)
	}
	attrs := map[string]string{}
	if in.AttributePayload != nil && in.AttributePayload.Attributes != nil {
		attrs = in.AttributePayload.Attributes
	}
	if err := validAttributes(attrs); err != nil {
		return nil, err
	}
	t := tunnel.Thing{
		AccountID:  c.account.ID,
		Name:       name,
		ID:         newUUID(),
		ARN:        tunnel.ThingARN(a.region, c.account.ID, name),
		Attributes: attrs,
		Version:    1,
		CreatedAt:  a.now().UTC(),
	}
	err = a.store.CreateThing(ctx, t)
	if errors.Is(err, tunnel.ErrExists) {
		t, err = a.existingThing(ctx, c.account.ID, name, attrs)
	} else if err == nil {
		a.log.LogAttrs(ctx, slog.LevelInfo, "thing created", slog.String("account", t.AccountID), slog.String("thing", name))
	}
	if err != nil {
		return nil, err
	}
	return struct {
		ThingName string `json:"thingName"`
		ThingARN  string `json:"thingArn"`
		ThingID   string `json:"thingId"`
	}{t.Name, t.ARN, t.ID}, nil
}

// existingThing answers a CreateThing of a name that exists: the same
// configuration succeeds with the thing there is, another is a conflict.
func (a *API) existingThing(ctx context.Context, accountID, name string, attrs map[string]string) (tunnel.Thing, error) {
	t, err := a.store.Thing(ctx, accountID, name)
	if err != nil {
		return t, err
	}
	if !maps.Equal(t.Attributes, attrs) {
		e := newError(http.StatusConflict, codeExists, "thing %s already exists with different attributes", name)
		e.resourceID, e.resourceARN = t.ID, t.ARN
		return t, e
	}
	return t, nil
}

func validAttributes(attrs map[string]string) error {
	if len(attrs) > maxUntypedAttributes {
		return errInvalid("a thing without a thing type can have at most %d attributes, not %d", maxUntypedAttributes, len(attrs))
	}
	for k, v := range attrs {
		if !attrNamePattern.MatchString(k) {
			return errInvalid("attribute name %q must be 1 to 128 characters of [a-zA-Z0-9_.,@/:#-]", k)
		}
		if !attrValuePattern.MatchString(v) {
			return errInvalid("the value of attribute %q must be at most 800 characters of [a-zA-Z0-9_.,@/:#=[]-]", k)
		}
	}
	return nil
}

func (a *API) describeThing(ctx context.Context, c *call) (any, error) {
	name, err := thingName(c.r)
	if err != nil {
		return nil, err
	}
	t, err := a.store.Thing(ctx, c.account.ID, name)
	if errors.Is(err, tunnel.ErrNotFound) {
		return nil, errNotFound("thing %s does not exist in this account", name)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		DefaultClientID string            `json:"defaultClientId"`
		ThingName       string            `json:"thingName"`
		ThingID         string            `json:"thingId"`
		ThingARN        string            `json:"thingArn"`
		Attributes      map[string]string `json:"attributes"`
		Version         int64             `json:"version"`
	}{t.Name, t.Name, t.ID, t.ARN, nonNil(t.Attributes), t.Version}, nil
}

func (a *API) deleteThing(ctx context.Context, c *call) (any, error) {
	name, err := thingName(c.r)
	if err != nil {
		return nil, err
	}
	var expected *int64
	if s := c.r.URL.Query().Get("expectedVersion"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, errInvalid("expectedVersion %q is not an integer", s)
		}
		expected = &v
	}
	t, err := a.store.Thing(ctx, c.account.ID, name)
	if errors.Is(err, tunnel.ErrNotFound) {
		// AWS answers success for a thing that does not exist.
		return struct{}{}, nil
	}
	if err != nil {
		return nil, err
	}
	if expected != nil && *expected != t.Version {
		return nil, newError(http.StatusConflict, codeVersionConflict, "thing %s is at version %d, not the expected %d", name, t.Version, *expected)
	}
	if err := a.store.DeleteThing(ctx, c.account.ID, name); err != nil && !errors.Is(err, tunnel.ErrNotFound) {
		return nil, err
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "thing deleted", slog.String("account", c.account.ID), slog.String("thing", name))
	return struct{}{}, nil
}

func (a *API) listThings(ctx context.Context, c *call) (any, error) {
	q := c.r.URL.Query()
	limit := defaultThingsPage
	if s := q.Get("maxResults"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxThingsPage {
			return nil, errInvalid("maxResults must be an integer between 1 and %d, not %q", maxThingsPage, s)
		}
		limit = n
	}
	after := ""
	if tok := q.Get("nextToken"); tok != "" {
		name, ok := a.cursors.decode("thing", tok)
		if after = string(name); !ok || !tunnel.ValidName(after) {
			return nil, errInvalid("nextToken is not valid: pass the nextToken of a previous ListThings response")
		}
	}
	match, err := thingFilter(q.Get("attributeName"), q.Get("attributeValue"), q.Get("thingTypeName"), q.Get("usePrefixAttributeValue"))
	if err != nil {
		return nil, err
	}
	things, more, err := a.scanThings(ctx, c.account.ID, after, limit, match)
	if err != nil {
		return nil, err
	}
	var out struct {
		Things    []thingAttribute `json:"things"`
		NextToken string           `json:"nextToken,omitempty"`
	}
	out.Things = make([]thingAttribute, 0, len(things))
	for _, t := range things {
		out.Things = append(out.Things, thingAttribute{t.Name, t.ARN, nonNil(t.Attributes), t.Version})
	}
	if more {
		out.NextToken = a.cursors.encode("thing", []byte(things[len(things)-1].Name))
	}
	return out, nil
}

// scanThings collects up to limit things after `after` that match, reading
// the store page by page, and reports whether more would follow.
func (a *API) scanThings(ctx context.Context, accountID, after string, limit int, match func(tunnel.Thing) bool) ([]tunnel.Thing, bool, error) {
	page := limit + 1
	if match != nil {
		page = maxThingsPage
	}
	var out []tunnel.Thing
	for {
		batch, err := a.store.Things(ctx, accountID, after, page)
		if err != nil {
			return nil, false, err
		}
		for _, t := range batch {
			if match != nil && !match(t) {
				continue
			}
			if len(out) == limit {
				return out, true, nil
			}
			out = append(out, t)
		}
		if len(batch) < page {
			return out, false, nil
		}
		after = batch[len(batch)-1].Name
	}
}

// thingFilter is ListThings' attribute and thing type filter; nil when none
// is asked for.
func thingFilter(name, value, thingType, prefix string) (func(tunnel.Thing) bool, error) {
	if thingType != "" {
		// No thing has a type here.
		return func(tunnel.Thing) bool { return false }, nil
	}
	if name == "" && value == "" {
		return nil, nil
	}
	if name == "" {
		return nil, errInvalid("attributeValue needs attributeName")
	}
	usePrefix := prefix == "true"
	if prefix != "" && prefix != "true" && prefix != "false" {
		return nil, errInvalid("usePrefixAttributeValue must be true or false, not %q", prefix)
	}
	return func(t tunnel.Thing) bool {
		v, ok := t.Attributes[name]
		switch {
		case !ok:
			return false
		case value == "":
			return true
		case usePrefix:
			return strings.HasPrefix(v, value)
		}
		return v == value
	}, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
