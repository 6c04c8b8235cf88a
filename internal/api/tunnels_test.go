package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"

	"github.com/warrentunnel/warren/internal/expiry"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// awsCode is the error code of an aws-sdk-go (v1) error.
func awsCode(t *testing.T, err error) string {
	t.Helper()
	var ae awserr.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an AWS error", err)
	}
	return ae.Code()
}

func TestTunnelLifecycleSDK(t *testing.T) {
	f := newFixture(t)
	f.createThing(f.acct, "robot-1")
	api := f.tunnels(f.acct)
	before := f.clock.Now().Add(-time.Second)

	open, err := api.OpenTunnel(&iotsecuretunneling.OpenTunnelInput{
		Description: aws.String("ssh to robot 1"),
		DestinationConfig: &iotsecuretunneling.DestinationConfig{
			ThingName: aws.String("robot-1"),
			Services:  aws.StringSlice([]string{"SSH", "HTTP"}),
		},
		Tags:          []*iotsecuretunneling.Tag{{Key: aws.String("team"), Value: aws.String("ops")}},
		TimeoutConfig: &iotsecuretunneling.TimeoutConfig{MaxLifetimeTimeoutMinutes: aws.Int64(30)},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.StringValue(open.TunnelId)
	if want := fmt.Sprintf("arn:aws:iot:%s:%s:tunnel/%s", testRegion, f.acct.ID, id); aws.StringValue(open.TunnelArn) != want {
		t.Errorf("tunnelArn %q, want %q", aws.StringValue(open.TunnelArn), want)
	}
	// Only the tokens' hashes are stored, and they are the returned tokens'.
	stored, err := f.store.Tunnel(context.Background(), f.acct.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(stored.Source.TokenHash) != string(tunnel.HashToken(aws.StringValue(open.SourceAccessToken))) ||
		string(stored.Destination.TokenHash) != string(tunnel.HashToken(aws.StringValue(open.DestinationAccessToken))) {
		t.Error("stored token hashes are not those of the returned tokens")
	}

	d, err := api.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if err != nil {
		t.Fatal(err)
	}
	tn := d.Tunnel
	if aws.StringValue(tn.TunnelId) != id || aws.StringValue(tn.Status) != "OPEN" ||
		aws.StringValue(tn.Description) != "ssh to robot 1" ||
		aws.StringValue(tn.DestinationConfig.ThingName) != "robot-1" ||
		!slices.Equal(aws.StringValueSlice(tn.DestinationConfig.Services), []string{"SSH", "HTTP"}) ||
		aws.Int64Value(tn.TimeoutConfig.MaxLifetimeTimeoutMinutes) != 30 ||
		len(tn.Tags) != 1 || aws.StringValue(tn.Tags[0].Key) != "team" ||
		aws.StringValue(tn.SourceConnectionState.Status) != "DISCONNECTED" ||
		aws.StringValue(tn.DestinationConnectionState.Status) != "DISCONNECTED" {
		t.Fatalf("DescribeTunnel: %v", tn)
	}
	if c := aws.TimeValue(tn.CreatedAt); c.Before(before) || c.After(f.clock.Now().Add(time.Second)) {
		t.Errorf("createdAt %v is not about now", c)
	}
	if tn.SourceConnectionState.LastUpdatedAt == nil || tn.LastUpdatedAt == nil {
		t.Error("DescribeTunnel lacks lastUpdatedAt")
	}

	list, err := api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{ThingName: aws.String("robot-1")})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.TunnelSummaries) != 1 || aws.StringValue(list.TunnelSummaries[0].TunnelId) != id || list.NextToken != nil {
		t.Fatalf("ListTunnels: %v", list)
	}

	if _, err := api.CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: open.TunnelId}); err != nil {
		t.Fatal(err)
	}
	if got := f.relay.Closed(); !slices.Equal(got, []string{id}) {
		t.Errorf("relay closed %v, want [%s]", got, id)
	}
	d, err = api.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if err != nil || aws.StringValue(d.Tunnel.Status) != "CLOSED" {
		t.Fatalf("after CloseTunnel: %v, %v", d, err)
	}
	// Closing a closed tunnel is fine; deleting removes it.
	if _, err := api.CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: open.TunnelId}); err != nil {
		t.Fatalf("closing a closed tunnel: %v", err)
	}
	if _, err := api.CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: open.TunnelId, Delete: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	_, err = api.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if code := awsCode(t, err); code != iotsecuretunneling.ErrCodeResourceNotFoundException {
		t.Fatalf("deleted tunnel: %v", err)
	}
	if _, err := f.store.Tunnel(context.Background(), f.acct.ID, id); !errors.Is(err, tunnel.ErrNotFound) {
		t.Errorf("deleted tunnel still stored: %v", err)
	}
}

func TestOpenTunnelWithoutThing(t *testing.T) {
	f := newFixture(t)
	open := f.openTunnel(f.acct, "", "SSH")
	d, err := f.tunnels(f.acct).DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if err != nil {
		t.Fatal(err)
	}
	if d.Tunnel.DestinationConfig.ThingName != nil || aws.Int64Value(d.Tunnel.TimeoutConfig.MaxLifetimeTimeoutMinutes) != 720 {
		t.Errorf("tunnel without thing: %v", d.Tunnel)
	}
}

func TestCloseTunnelDeleteOpen(t *testing.T) {
	f := newFixture(t)
	open := f.openTunnel(f.acct, "", "SSH")
	if _, err := f.tunnels(f.acct).CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: open.TunnelId, Delete: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if got := f.relay.Closed(); len(got) != 1 || got[0] != aws.StringValue(open.TunnelId) {
		t.Errorf("relay closed %v", got)
	}
	if _, err := f.store.Tunnel(context.Background(), f.acct.ID, aws.StringValue(open.TunnelId)); !errors.Is(err, tunnel.ErrNotFound) {
		t.Errorf("deleted tunnel still stored: %v", err)
	}
}

func TestTunnelValidation(t *testing.T) {
	f := newFixture(t)
	f.createThing(f.acct, "robot-1")
	long := strings.Repeat("x", 2049)
	manyTags := make([]string, 201)
	for i := range manyTags {
		manyTags[i] = fmt.Sprintf(`{"key":"k%d","value":"v"}`, i)
	}
	tests := []struct {
		name, op, body string
		code           string
		inMessage      string
	}{
		{"no services", "OpenTunnel", `{"destinationConfig":{"thingName":"robot-1"}}`, codeValidation, "services"},
		{"empty services", "OpenTunnel", `{"destinationConfig":{"services":[]}}`, codeValidation, "services"},
		{"bad service name", "OpenTunnel", `{"destinationConfig":{"services":["ss h"]}}`, codeValidation, "ss h"},
		{"long service name", "OpenTunnel", `{"destinationConfig":{"services":["` + strings.Repeat("s", 129) + `"]}}`, codeValidation, "service"},
		{"too many services", "OpenTunnel", `{"destinationConfig":{"services":["a","b","c","d"]}}`, codeValidation, "at most 3"},
		{"duplicate services", "OpenTunnel", `{"destinationConfig":{"services":["a","a"]}}`, codeValidation, "twice"},
		{"lifetime 0", "OpenTunnel", `{"destinationConfig":{"services":["SSH"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":0}}`, codeValidation, "between 1 and 720"},
		{"lifetime 721", "OpenTunnel", `{"destinationConfig":{"services":["SSH"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":721}}`, codeValidation, "between 1 and 720"},
		{"lifetime not a number", "OpenTunnel", `{"destinationConfig":{"services":["SSH"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":"ten"}}`, codeSerialization, "maxLifetimeTimeoutMinutes"},
		{"missing thing", "OpenTunnel", `{"destinationConfig":{"thingName":"nobody","services":["SSH"]}}`, codeNotFound, "nobody"},
		{"bad thing name", "OpenTunnel", `{"destinationConfig":{"thingName":"a/b","services":["SSH"]}}`, codeValidation, "thingName"},
		{"control char in description", "OpenTunnel", `{"description":"a\u0007b","destinationConfig":{"services":["SSH"]}}`, codeValidation, "description"},
		{"long description", "OpenTunnel", `{"description":"` + long + `","destinationConfig":{"services":["SSH"]}}`, codeValidation, "description"},
		{"too many tags", "OpenTunnel", `{"tags":[` + strings.Join(manyTags, ",") + `],"destinationConfig":{"services":["SSH"]}}`, codeValidation, "200"},
		{"bad tag key", "OpenTunnel", `{"tags":[{"key":"a*b","value":"v"}],"destinationConfig":{"services":["SSH"]}}`, codeValidation, "a*b"},
		{"empty tag key", "OpenTunnel", `{"tags":[{"key":"","value":"v"}],"destinationConfig":{"services":["SSH"]}}`, codeValidation, "tag key"},
		{"not JSON", "OpenTunnel", `{"destinationConfig":`, codeSerialization, "JSON"},
		{"trailing data", "OpenTunnel", `{} {}`, codeSerialization, "after"},
		{"describe without id", "DescribeTunnel", `{}`, codeValidation, "tunnelId"},
		{"describe bad id", "DescribeTunnel", `{"tunnelId":"a b"}`, codeValidation, "tunnelId"},
		{"describe unknown", "DescribeTunnel", `{"tunnelId":"0123456789abcdef0123456789abcdef"}`, codeNotFound, "0123456789abcdef0123456789abcdef"},
		{"close unknown", "CloseTunnel", `{"tunnelId":"0123456789abcdef0123456789abcdef"}`, codeNotFound, "does not exist"},
		{"close without id", "CloseTunnel", `{"delete":true}`, codeValidation, "tunnelId"},
		{"list maxResults 0", "ListTunnels", `{"maxResults":0}`, codeValidation, "maxResults"},
		{"list maxResults 101", "ListTunnels", `{"maxResults":101}`, codeValidation, "maxResults"},
		{"list bad thing", "ListTunnels", `{"thingName":"a b"}`, codeValidation, "thingName"},
		{"list bad nextToken", "ListTunnels", `{"nextToken":"not a token!"}`, codeValidation, "nextToken"},
		{"list foreign nextToken", "ListTunnels", `{"nextToken":"` + newCursors(testCursorKey).encode("thing", []byte("robot-1")) + `"}`, codeValidation, "nextToken"},
		{"unknown operation", "DoSomething", `{}`, codeUnknownOperation, "DoSomething"},
		{"rotate without id", "RotateTunnelAccessToken", `{"clientMode":"ALL"}`, codeValidation, "tunnelId"},
		{"rotate without clientMode", "RotateTunnelAccessToken", `{"tunnelId":"0123456789abcdef0123456789abcdef"}`, codeValidation, "clientMode"},
		{"rotate bad clientMode", "RotateTunnelAccessToken", `{"tunnelId":"0123456789abcdef0123456789abcdef","clientMode":"BOTH"}`, codeValidation, "SOURCE, DESTINATION or ALL"},
		{"rotate config without services", "RotateTunnelAccessToken", `{"tunnelId":"0123456789abcdef0123456789abcdef","clientMode":"ALL","destinationConfig":{"thingName":"robot-1"}}`, codeValidation, "services"},
		{"rotate unknown", "RotateTunnelAccessToken", `{"tunnelId":"0123456789abcdef0123456789abcdef","clientMode":"ALL"}`, codeNotFound, "does not exist"},
		{"tag without arn", "TagResource", `{"tags":[{"key":"a","value":"b"}]}`, codeValidation, "resourceArn"},
		{"tag bad arn", "TagResource", `{"resourceArn":"arn:aws:iot:us-east-1:111122223333:thing/x","tags":[{"key":"a","value":"b"}]}`, codeValidation, "tunnel ARN"},
		{"tag unknown arn", "ListTagsForResource", `{"resourceArn":"arn:aws:iot:us-east-1:111122223333:tunnel/abc"}`, codeNotFound, "abc"},
		{"untag without keys", "UntagResource", `{"resourceArn":"arn:aws:iot:us-east-1:111122223333:tunnel/abc"}`, codeValidation, "tagKeys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.callJSON(t, tc.op, tc.body)
			wantError(t, r, http.StatusBadRequest, tc.code)
			if !strings.Contains(r.Message, tc.inMessage) {
				t.Errorf("message %q does not mention %q", r.Message, tc.inMessage)
			}
		})
	}
	if n, err := f.store.Tunnels(context.Background(), f.acct.ID, "", tunnel.Position{}, 10); err != nil || len(n) != 0 {
		t.Errorf("invalid requests left tunnels: %d, %v", len(n), err)
	}
}

func TestListTunnelsPagination(t *testing.T) {
	f := newFixture(t)
	f.createThing(f.acct, "robot-1")
	var want []string // newest first
	for i := range 7 {
		thing := ""
		if i%2 == 0 {
			thing = "robot-1"
		}
		out := f.openTunnel(f.acct, thing, "SSH")
		want = append([]string{aws.StringValue(out.TunnelId)}, want...)
		f.clock.Advance(time.Millisecond) // distinct creation times
	}
	api := f.tunnels(f.acct)

	var got []string
	pages := 0
	err := api.ListTunnelsPages(&iotsecuretunneling.ListTunnelsInput{MaxResults: aws.Int64(3)},
		func(p *iotsecuretunneling.ListTunnelsOutput, last bool) bool {
			pages++
			for _, s := range p.TunnelSummaries {
				got = append(got, aws.StringValue(s.TunnelId))
			}
			return true
		})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("paged over %d pages: %v, want newest first %v", pages, got, want)
	}

	// The thingName filter pages too: tunnels 0, 2, 4, 6 name robot-1.
	got = nil
	var token *string
	for {
		p, err := api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{ThingName: aws.String("robot-1"), MaxResults: aws.Int64(2), NextToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.TunnelSummaries {
			got = append(got, aws.StringValue(s.TunnelId))
		}
		if token = p.NextToken; token == nil {
			break
		}
	}
	if wantThing := []string{want[0], want[2], want[4], want[6]}; !slices.Equal(got, wantThing) {
		t.Fatalf("filtered: %v, want %v", got, wantThing)
	}

	// A page that ends exactly at the end has no nextToken.
	p, err := api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{MaxResults: aws.Int64(7)})
	if err != nil || len(p.TunnelSummaries) != 7 || p.NextToken != nil {
		t.Fatalf("full page: %v, %v", p, err)
	}
}

func TestAccountIsolation(t *testing.T) {
	f := newFixture(t)
	f.createThing(f.acct, "robot-1")
	open := f.openTunnel(f.acct, "robot-1", "SSH")
	theirs := f.tunnels(f.other)

	_, err := theirs.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if awsCode(t, err) != codeNotFound {
		t.Errorf("describe another account's tunnel: %v", err)
	}
	_, err = theirs.CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: open.TunnelId, Delete: aws.Bool(true)})
	if awsCode(t, err) != codeNotFound {
		t.Errorf("close another account's tunnel: %v", err)
	}
	_, err = theirs.TagResource(&iotsecuretunneling.TagResourceInput{ResourceArn: open.TunnelArn,
		Tags: []*iotsecuretunneling.Tag{{Key: aws.String("a"), Value: aws.String("b")}}})
	if awsCode(t, err) != codeNotFound {
		t.Errorf("tag another account's tunnel: %v", err)
	}
	_, err = theirs.ListTagsForResource(&iotsecuretunneling.ListTagsForResourceInput{ResourceArn: open.TunnelArn})
	if awsCode(t, err) != codeNotFound {
		t.Errorf("list tags of another account's tunnel: %v", err)
	}
	list, err := theirs.ListTunnels(&iotsecuretunneling.ListTunnelsInput{})
	if err != nil || len(list.TunnelSummaries) != 0 {
		t.Errorf("another account lists %v, %v", list, err)
	}
	_, err = theirs.OpenTunnel(&iotsecuretunneling.OpenTunnelInput{DestinationConfig: &iotsecuretunneling.DestinationConfig{
		ThingName: aws.String("robot-1"), Services: aws.StringSlice([]string{"SSH"})}})
	if awsCode(t, err) != codeNotFound {
		t.Errorf("open a tunnel to another account's thing: %v", err)
	}
	// The owner still sees it open: nothing above touched it.
	d, err := f.tunnels(f.acct).DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if err != nil || aws.StringValue(d.Tunnel.Status) != "OPEN" || len(d.Tunnel.Tags) != 0 {
		t.Errorf("owner's tunnel changed: %v, %v", d, err)
	}
	if got := f.relay.Closed(); len(got) != 0 {
		t.Errorf("relay closed %v", got)
	}
}

// The expiry sweeper closes a tunnel whose lifetime ended, as of its
// deadline, and has the relay disconnect it; the API reports it CLOSED.
func TestExpiredTunnelReportedClosed(t *testing.T) {
	f := newFixture(t)
	api := f.tunnels(f.acct)
	open, err := api.OpenTunnel(&iotsecuretunneling.OpenTunnelInput{
		DestinationConfig: &iotsecuretunneling.DestinationConfig{Services: aws.StringSlice([]string{"SSH"})},
		TimeoutConfig:     &iotsecuretunneling.TimeoutConfig{MaxLifetimeTimeoutMinutes: aws.Int64(1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	keep := f.openTunnel(f.acct, "", "SSH") // default lifetime, stays open
	id := aws.StringValue(open.TunnelId)

	f.clock.Advance(90 * time.Second) // within the signature's 5 minutes
	// Until the sweeper comes by, the API reports what the store says.
	d, err := api.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if err != nil || aws.StringValue(d.Tunnel.Status) != "OPEN" {
		t.Fatalf("before the sweep: %v, %v", d, err)
	}
	sw := expiry.New(expiry.Config{Store: f.store, Relay: f.relay, Now: f.clock.Now})
	next, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := f.store.Tunnel(context.Background(), f.acct.ID, aws.StringValue(keep.TunnelId))
	if !next.Equal(kept.ExpiresAt()) {
		t.Errorf("next deadline %v, want the open tunnel's %v", next, kept.ExpiresAt())
	}
	list, err := api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, s := range list.TunnelSummaries {
		status[aws.StringValue(s.TunnelId)] = aws.StringValue(s.Status)
	}
	if status[id] != "CLOSED" || status[aws.StringValue(keep.TunnelId)] != "OPEN" {
		t.Fatalf("statuses after the lifetime: %v", status)
	}
	d, err = api.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if err != nil || aws.StringValue(d.Tunnel.Status) != "CLOSED" {
		t.Fatalf("expired tunnel: %v, %v", d, err)
	}
	stored, err := f.store.Tunnel(context.Background(), f.acct.ID, id)
	if err != nil || stored.Status != tunnel.StatusClosed {
		t.Fatalf("expiry not persisted: %v, %v", stored.Status, err)
	}
	if closedAt := aws.TimeValue(d.Tunnel.LastUpdatedAt); closedAt.Sub(stored.ExpiresAt()).Abs() > time.Millisecond {
		t.Errorf("lastUpdatedAt %v, want the expiry %v", closedAt, stored.ExpiresAt())
	}
	if got := f.relay.Closed(); !slices.Equal(got, []string{id}) {
		t.Errorf("relay closed %v, want only [%s]", got, id)
	}
}

func TestTunnelTags(t *testing.T) {
	f := newFixture(t)
	api := f.tunnels(f.acct)
	open, err := api.OpenTunnel(&iotsecuretunneling.OpenTunnelInput{
		DestinationConfig: &iotsecuretunneling.DestinationConfig{Services: aws.StringSlice([]string{"SSH"})},
		Tags:              []*iotsecuretunneling.Tag{{Key: aws.String("env"), Value: aws.String("dev")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tags := func() map[string]string {
		t.Helper()
		out, err := api.ListTagsForResource(&iotsecuretunneling.ListTagsForResourceInput{ResourceArn: open.TunnelArn})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, tg := range out.Tags {
			m[aws.StringValue(tg.Key)] = aws.StringValue(tg.Value)
		}
		return m
	}
	if got := tags(); len(got) != 1 || got["env"] != "dev" {
		t.Fatalf("tags %v", got)
	}
	_, err = api.TagResource(&iotsecuretunneling.TagResourceInput{ResourceArn: open.TunnelArn, Tags: []*iotsecuretunneling.Tag{
		{Key: aws.String("env"), Value: aws.String("prod")}, {Key: aws.String("owner"), Value: aws.String("ops team")}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := tags(); len(got) != 2 || got["env"] != "prod" || got["owner"] != "ops team" {
		t.Fatalf("after TagResource: %v", got)
	}
	if _, err := api.UntagResource(&iotsecuretunneling.UntagResourceInput{ResourceArn: open.TunnelArn, TagKeys: aws.StringSlice([]string{"env", "absent"})}); err != nil {
		t.Fatal(err)
	}
	if got := tags(); len(got) != 1 || got["owner"] != "ops team" {
		t.Fatalf("after UntagResource: %v", got)
	}
}

func TestUnknownRoute(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, signRaw{method: http.MethodGet, path: "/nothing-here", service: signingNameIoT})
	wantError(t, r, http.StatusNotFound, codeUnknownOperation)
	r = f.do(t, signRaw{method: http.MethodPatch, path: "/things/x", service: signingNameIoT})
	wantError(t, r, http.StatusNotFound, codeUnknownOperation)
}
