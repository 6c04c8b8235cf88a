package api

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// uuidPattern is the form of AWS's tunnel ids: a version 4 UUID, lower case.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestTunnelIDsAreUUIDs(t *testing.T) {
	f := newFixture(t)
	out := f.openTunnel(f.acct, "", "SSH")
	id := aws.StringValue(out.TunnelId)
	if !uuidPattern.MatchString(id) {
		t.Fatalf("tunnel id %q is not a lower-case version 4 UUID", id)
	}
	if want := fmt.Sprintf("arn:aws:iot:%s:%s:tunnel/%s", testRegion, f.acct.ID, id); aws.StringValue(out.TunnelArn) != want {
		t.Fatalf("tunnelArn %q, want %q", aws.StringValue(out.TunnelArn), want)
	}
}

// A tunnel stored before ids were UUIDs keeps its 32 hex digits, and every
// operation still finds it by them.
func TestLegacyHexTunnelID(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	legacy, _, err := tunnel.New(f.acct.ID, testRegion, tunnel.OpenParams{Services: []string{"SSH"}}, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	legacy.ID = "0123456789abcdef0123456789abcdef"
	legacy.ARN = fmt.Sprintf("arn:aws:iot:%s:%s:tunnel/%s", testRegion, f.acct.ID, legacy.ID)
	if err := f.store.CreateTunnel(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	api := f.tunnels(f.acct)
	d, err := api.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: aws.String(legacy.ID)})
	if err != nil || aws.StringValue(d.Tunnel.TunnelArn) != legacy.ARN {
		t.Fatalf("describe legacy tunnel: %v, %v", d, err)
	}
	if _, err := api.TagResource(&iotsecuretunneling.TagResourceInput{ResourceArn: aws.String(legacy.ARN),
		Tags: []*iotsecuretunneling.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}); err != nil {
		t.Fatalf("tag legacy tunnel: %v", err)
	}
	f.clock.Advance(1)
	f.openTunnel(f.acct, "", "SSH")
	p, err := api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{MaxResults: aws.Int64(1)})
	if err != nil || len(p.TunnelSummaries) != 1 || p.NextToken == nil {
		t.Fatalf("first page: %v, %v", p, err)
	}
	p, err = api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{MaxResults: aws.Int64(1), NextToken: p.NextToken})
	if err != nil || len(p.TunnelSummaries) != 1 || aws.StringValue(p.TunnelSummaries[0].TunnelId) != legacy.ID {
		t.Fatalf("second page: %v, %v", p, err)
	}
	if _, err := api.CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: aws.String(legacy.ID), Delete: aws.Bool(true)}); err != nil {
		t.Fatalf("close legacy tunnel: %v", err)
	}
}
