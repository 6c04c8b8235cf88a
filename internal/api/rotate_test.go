package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"

	"github.com/warrentunnel/warren/internal/tunnel"
)

func TestRotateTunnelAccessTokenSDK(t *testing.T) {
	f := newFixture(t)
	f.createThing(f.acct, "robot-1")
	api := f.tunnels(f.acct)
	open := f.openTunnel(f.acct, "robot-1", "SSH")
	id := aws.StringValue(open.TunnelId)
	src, dst := aws.StringValue(open.SourceAccessToken), aws.StringValue(open.DestinationAccessToken)

	for _, c := range []struct {
		mode     string
		src, dst bool
	}{
		{iotsecuretunneling.ClientModeSource, true, false},
		{iotsecuretunneling.ClientModeDestination, false, true},
		{iotsecuretunneling.ClientModeAll, true, true},
	} {
		out, err := api.RotateTunnelAccessToken(&iotsecuretunneling.RotateTunnelAccessTokenInput{
			TunnelId: open.TunnelId, ClientMode: aws.String(c.mode),
		})
		if err != nil {
			t.Fatalf("%s: %v", c.mode, err)
		}
		if aws.StringValue(out.TunnelArn) != aws.StringValue(open.TunnelArn) ||
			(out.SourceAccessToken != nil) != c.src || (out.DestinationAccessToken != nil) != c.dst {
			t.Fatalf("%s: %v", c.mode, out)
		}
		stored, err := f.store.Tunnel(context.Background(), f.acct.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		if c.src {
			if n := aws.StringValue(out.SourceAccessToken); n == src || string(stored.Source.TokenHash) != string(tunnel.HashToken(n)) {
				t.Fatalf("%s: source token not replaced", c.mode)
			}
			src = aws.StringValue(out.SourceAccessToken)
		} else if string(stored.Source.TokenHash) != string(tunnel.HashToken(src)) {
			t.Fatalf("%s: source token changed", c.mode)
		}
		if c.dst {
			if n := aws.StringValue(out.DestinationAccessToken); n == dst || string(stored.Destination.TokenHash) != string(tunnel.HashToken(n)) {
				t.Fatalf("%s: destination token not replaced", c.mode)
			}
			dst = aws.StringValue(out.DestinationAccessToken)
		} else if string(stored.Destination.TokenHash) != string(tunnel.HashToken(dst)) {
			t.Fatalf("%s: destination token changed", c.mode)
		}
		// Without destinationConfig the tunnel keeps its own.
		if stored.ThingName != "robot-1" || !slices.Equal(stored.Services, []string{"SSH"}) {
			t.Fatalf("%s: destination config %q %v", c.mode, stored.ThingName, stored.Services)
		}
	}
	if got, want := f.relay.Rotated(), []string{id + " SOURCE", id + " DESTINATION", id + " SOURCE", id + " DESTINATION"}; !slices.Equal(got, want) {
		t.Fatalf("relay told %v, want %v", got, want)
	}

	// A new destination config with the destination's token; the thing
	// must exist.
	f.createThing(f.acct, "robot-2")
	if _, err := api.RotateTunnelAccessToken(&iotsecuretunneling.RotateTunnelAccessTokenInput{
		TunnelId: open.TunnelId, ClientMode: aws.String("DESTINATION"),
		DestinationConfig: &iotsecuretunneling.DestinationConfig{ThingName: aws.String("robot-2"), Services: aws.StringSlice([]string{"HTTP", "VNC"})},
	}); err != nil {
		t.Fatal(err)
	}
	d, err := api.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if err != nil {
		t.Fatal(err)
	}
	if aws.StringValue(d.Tunnel.DestinationConfig.ThingName) != "robot-2" ||
		!slices.Equal(aws.StringValueSlice(d.Tunnel.DestinationConfig.Services), []string{"HTTP", "VNC"}) {
		t.Fatalf("destination config %v", d.Tunnel.DestinationConfig)
	}
	list, err := api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{ThingName: aws.String("robot-2")})
	if err != nil || len(list.TunnelSummaries) != 1 {
		t.Fatalf("ListTunnels by the new thing: %v, %v", list, err)
	}
	_, err = api.RotateTunnelAccessToken(&iotsecuretunneling.RotateTunnelAccessTokenInput{
		TunnelId: open.TunnelId, ClientMode: aws.String("ALL"),
		DestinationConfig: &iotsecuretunneling.DestinationConfig{ThingName: aws.String("ghost"), Services: aws.StringSlice([]string{"SSH"})},
	})
	if code := awsCode(t, err); code != iotsecuretunneling.ErrCodeResourceNotFoundException || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("unknown thing: %v", err)
	}

	// Another account's tunnel does not exist for this one.
	_, err = f.tunnels(f.other).RotateTunnelAccessToken(&iotsecuretunneling.RotateTunnelAccessTokenInput{TunnelId: open.TunnelId, ClientMode: aws.String("ALL")})
	if code := awsCode(t, err); code != iotsecuretunneling.ErrCodeResourceNotFoundException {
		t.Fatalf("other account: %v", err)
	}

	// A closed tunnel cannot be rotated.
	if _, err := api.CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: open.TunnelId}); err != nil {
		t.Fatal(err)
	}
	_, err = api.RotateTunnelAccessToken(&iotsecuretunneling.RotateTunnelAccessTokenInput{TunnelId: open.TunnelId, ClientMode: aws.String("SOURCE")})
	if code := awsCode(t, err); code != iotsecuretunneling.ErrCodeResourceNotFoundException || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("closed tunnel: %v", err)
	}
}

func TestRotateExpiredTunnel(t *testing.T) {
	f := newFixture(t)
	open, err := f.tunnels(f.acct).OpenTunnel(&iotsecuretunneling.OpenTunnelInput{
		DestinationConfig: &iotsecuretunneling.DestinationConfig{Services: aws.StringSlice([]string{"SSH"})},
		TimeoutConfig:     &iotsecuretunneling.TimeoutConfig{MaxLifetimeTimeoutMinutes: aws.Int64(1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(90 * time.Second) // within the signature's 5 minutes
	r := f.callJSON(t, "RotateTunnelAccessToken", `{"tunnelId":"`+aws.StringValue(open.TunnelId)+`","clientMode":"ALL"}`)
	wantError(t, r, http.StatusBadRequest, codeNotFound)
	if !strings.Contains(r.Message, "closed") {
		t.Fatalf("message %q", r.Message)
	}
	if got := f.relay.Rotated(); len(got) != 0 {
		t.Fatalf("relay told %v", got)
	}
}

// TestOpenTunnelWithoutDestination: every member of OpenTunnel is
// optional; the destination config comes later with the destination's
// token, and is required then.
func TestOpenTunnelWithoutDestination(t *testing.T) {
	f := newFixture(t)
	api := f.tunnels(f.acct)
	open, err := api.OpenTunnel(&iotsecuretunneling.OpenTunnelInput{})
	if err != nil {
		t.Fatal(err)
	}
	if open.SourceAccessToken == nil || open.DestinationAccessToken == nil {
		t.Fatalf("OpenTunnel: %v", open)
	}
	d, err := api.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if err != nil {
		t.Fatal(err)
	}
	if d.Tunnel.DestinationConfig != nil || aws.StringValue(d.Tunnel.Status) != "OPEN" {
		t.Fatalf("DescribeTunnel: %v", d.Tunnel)
	}
	id := aws.StringValue(open.TunnelId)
	for _, c := range []struct{ name, body, inMessage string }{
		{"destination without config", `{"tunnelId":"` + id + `","clientMode":"DESTINATION"}`, "destinationConfig"},
		{"all without config", `{"tunnelId":"` + id + `","clientMode":"ALL"}`, "destinationConfig"},
		{"config with source", `{"tunnelId":"` + id + `","clientMode":"SOURCE","destinationConfig":{"services":["SSH"]}}`, "DESTINATION or ALL"},
		{"bad service", `{"tunnelId":"` + id + `","clientMode":"DESTINATION","destinationConfig":{"services":["s s"]}}`, "s s"},
		{"bad thing name", `{"tunnelId":"` + id + `","clientMode":"DESTINATION","destinationConfig":{"thingName":"a/b","services":["SSH"]}}`, "thingName"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.callJSON(t, "RotateTunnelAccessToken", c.body)
			wantError(t, r, http.StatusBadRequest, codeValidation)
			if !strings.Contains(r.Message, c.inMessage) {
				t.Fatalf("message %q does not mention %q", r.Message, c.inMessage)
			}
		})
	}
	if got := f.relay.Rotated(); len(got) != 0 {
		t.Fatalf("refused rotations reached the relay: %v", got)
	}
	// SOURCE alone needs no config.
	if _, err := api.RotateTunnelAccessToken(&iotsecuretunneling.RotateTunnelAccessTokenInput{TunnelId: open.TunnelId, ClientMode: aws.String("SOURCE")}); err != nil {
		t.Fatal(err)
	}
	out, err := api.RotateTunnelAccessToken(&iotsecuretunneling.RotateTunnelAccessTokenInput{
		TunnelId: open.TunnelId, ClientMode: aws.String("DESTINATION"),
		DestinationConfig: &iotsecuretunneling.DestinationConfig{Services: aws.StringSlice([]string{"SSH"})},
	})
	if err != nil || out.SourceAccessToken != nil || out.DestinationAccessToken == nil {
		t.Fatalf("rotate with config: %v, %v", out, err)
	}
	d, err = api.DescribeTunnel(&iotsecuretunneling.DescribeTunnelInput{TunnelId: open.TunnelId})
	if err != nil {
		t.Fatal(err)
	}
	if dc := d.Tunnel.DestinationConfig; dc == nil || dc.ThingName != nil || !slices.Equal(aws.StringValueSlice(dc.Services), []string{"SSH"}) {
		t.Fatalf("destination config %v", dc)
	}
}
