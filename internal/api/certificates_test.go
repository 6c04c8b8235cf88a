package api

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	iotv2 "github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
	"github.com/aws/smithy-go"

	"github.com/warrentunnel/warren/internal/notify"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// fakeCA issues certificates with random ids and recognisable PEM.
type fakeCA struct{}

func (fakeCA) Issue() (IssuedCertificate, error) {
	id := tunnel.RandomHex(32)
	return IssuedCertificate{ID: id, CertificatePEM: "CERT " + id, PublicKeyPEM: "PUBLIC " + id, PrivateKeyPEM: "PRIVATE " + id}, nil
}

// recorder is the API's Notifier and CertificateBroker.
type recorder struct {
	mu           sync.Mutex
	notes        []string // thing + " " + token + " " + mode + " " + region + " " + services
	disconnected []string
}

func (r *recorder) Notify(_ context.Context, thing string, n notify.Notification) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, strings.Join([]string{thing, n.ClientAccessToken, n.ClientMode, n.Region, strings.Join(n.Services, ",")}, " "))
}

func (r *recorder) DisconnectCertificate(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.disconnected = append(r.disconnected, id)
}

func (r *recorder) take() (notes, disconnected []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	notes, disconnected = r.notes, r.disconnected
	r.notes, r.disconnected = nil, nil
	return
}

func apiCode(t *testing.T, err error) string {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an API error, got %v", err)
	}
	return ae.ErrorCode()
}

// The device identity operations through the Go SDK v2's IoT client, per
// account, and the broker told of a certificate that stops being ACTIVE.
func TestDeviceCertificates(t *testing.T) {
	rec := &recorder{}
	f := newFixtureWith(t, false, func(c *Config) {
		c.DeviceCA, c.Notifier, c.Broker, c.MQTTEndpoint = fakeCA{}, rec, rec, "mqtt.example:8883"
	})
	ctx := context.Background()
	iot, other := f.iotV2(f.acct), f.iotV2(f.other)
	f.createThing(f.acct, "dev")
	f.createThing(f.other, "dev")

	kc, err := iot.CreateKeysAndCertificate(ctx, &iotv2.CreateKeysAndCertificateInput{SetAsActive: true})
	if err != nil {
		t.Fatal(err)
	}
	id := awsv2.ToString(kc.CertificateId)
	arn := "arn:aws:iot:us-east-1:" + f.acct.ID + ":cert/" + id
	if awsv2.ToString(kc.CertificateArn) != arn || awsv2.ToString(kc.KeyPair.PrivateKey) != "PRIVATE "+id || awsv2.ToString(kc.CertificatePem) != "CERT "+id {
		t.Fatalf("CreateKeysAndCertificate: %+v", kc)
	}
	d, err := iot.DescribeCertificate(ctx, &iotv2.DescribeCertificateInput{CertificateId: &id})
	if err != nil || d.CertificateDescription.Status != iottypes.CertificateStatusActive || awsv2.ToString(d.CertificateDescription.OwnedBy) != f.acct.ID {
		t.Fatalf("DescribeCertificate: %+v %v", d, err)
	}
	inactive, err := iot.CreateKeysAndCertificate(ctx, &iotv2.CreateKeysAndCertificateInput{})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := iot.DescribeCertificate(ctx, &iotv2.DescribeCertificateInput{CertificateId: inactive.CertificateId}); d.CertificateDescription.Status != iottypes.CertificateStatusInactive {
		t.Fatalf("without setAsActive: %s", d.CertificateDescription.Status)
	}

	if _, err := iot.AttachThingPrincipal(ctx, &iotv2.AttachThingPrincipalInput{ThingName: awsv2.String("dev"), Principal: &arn}); err != nil {
		t.Fatal(err)
	}
	lp, err := iot.ListThingPrincipals(ctx, &iotv2.ListThingPrincipalsInput{ThingName: awsv2.String("dev")})
	if err != nil || !slices.Equal(lp.Principals, []string{arn}) {
		t.Fatalf("ListThingPrincipals: %v %v", lp, err)
	}
	// Another account sees neither the certificate nor can it attach it.
	if _, err := other.DescribeCertificate(ctx, &iotv2.DescribeCertificateInput{CertificateId: &id}); apiCode(t, err) != "ResourceNotFoundException" {
		t.Fatalf("other account describes: %v", err)
	}
	if _, err := other.AttachThingPrincipal(ctx, &iotv2.AttachThingPrincipalInput{ThingName: awsv2.String("dev"), Principal: &arn}); apiCode(t, err) != "ResourceNotFoundException" {
		t.Fatalf("other account attaches: %v", err)
	}
	if _, err := other.UpdateCertificate(ctx, &iotv2.UpdateCertificateInput{CertificateId: &id, NewStatus: iottypes.CertificateStatusRevoked}); apiCode(t, err) != "ResourceNotFoundException" {
		t.Fatalf("other account revokes: %v", err)
	}
	if lp, _ := other.ListThingPrincipals(ctx, &iotv2.ListThingPrincipalsInput{ThingName: awsv2.String("dev")}); len(lp.Principals) != 0 {
		t.Fatalf("other account's thing has %v", lp.Principals)
	}
	for _, bad := range []string{"nope", "arn:aws:iot:us-east-1:" + f.acct.ID + ":cert/xyz", "arn:aws:iot:us-east-1:" + f.acct.ID + ":thing/dev"} {
		if _, err := iot.AttachThingPrincipal(ctx, &iotv2.AttachThingPrincipalInput{ThingName: awsv2.String("dev"), Principal: awsv2.String(bad)}); apiCode(t, err) != "InvalidRequestException" {
			t.Errorf("principal %q: %v", bad, err)
		}
	}

	ep, err := iot.DescribeEndpoint(ctx, &iotv2.DescribeEndpointInput{EndpointType: awsv2.String("iot:Data-ATS")})
	if err != nil || awsv2.ToString(ep.EndpointAddress) != "mqtt.example:8883" {
		t.Fatalf("DescribeEndpoint: %v %v", ep, err)
	}
	if _, err := iot.DescribeEndpoint(ctx, &iotv2.DescribeEndpointInput{EndpointType: awsv2.String("iot:Jobs")}); apiCode(t, err) != "InvalidRequestException" {
		t.Fatalf("DescribeEndpoint iot:Jobs: %v", err)
	}

	if _, err := iot.UpdateCertificate(ctx, &iotv2.UpdateCertificateInput{CertificateId: &id, NewStatus: iottypes.CertificateStatusPendingTransfer}); apiCode(t, err) != "InvalidRequestException" {
		t.Fatalf("PENDING_TRANSFER: %v", err)
	}
	if _, err := iot.UpdateCertificate(ctx, &iotv2.UpdateCertificateInput{CertificateId: &id, NewStatus: iottypes.CertificateStatusRevoked}); err != nil {
		t.Fatal(err)
	}
	if _, disc := rec.take(); !slices.Equal(disc, []string{id}) {
		t.Fatalf("broker told to disconnect %v", disc)
	}
	if _, err := iot.UpdateCertificate(ctx, &iotv2.UpdateCertificateInput{CertificateId: &id, NewStatus: iottypes.CertificateStatusActive}); apiCode(t, err) != "CertificateStateException" {
		t.Fatalf("reactivating a revoked certificate: %v", err)
	}
	// Deleting an account drops its devices' clients too.
	otherCert, err := other.CreateKeysAndCertificate(ctx, &iotv2.CreateKeysAndCertificateInput{SetAsActive: true})
	if err != nil {
		t.Fatal(err)
	}
	ok(t, f.callAccounts(t, f.admin, "DeleteAccount", `{"accountId":"`+f.other.ID+`"}`), nil)
	if _, disc := rec.take(); !slices.Equal(disc, []string{awsv2.ToString(otherCert.CertificateId)}) {
		t.Fatalf("after DeleteAccount the broker was told to disconnect %v", disc)
	}
	if _, err := iot.DetachThingPrincipal(ctx, &iotv2.DetachThingPrincipalInput{ThingName: awsv2.String("dev"), Principal: &arn}); err != nil {
		t.Fatal(err)
	}
	if lp, _ := iot.ListThingPrincipals(ctx, &iotv2.ListThingPrincipalsInput{ThingName: awsv2.String("dev")}); len(lp.Principals) != 0 {
		t.Fatalf("after detach: %v", lp.Principals)
	}
}

// OpenTunnel with a thing and a rotation of its destination notify the
// thing's device with the destination token; other calls do not.
func TestTunnelNotifications(t *testing.T) {
	rec := &recorder{}
	f := newFixtureWith(t, false, func(c *Config) { c.Notifier = rec })
	f.createThing(f.acct, "dev")
	open := f.openTunnel(f.acct, "dev", "SSH", "HTTP")
	notes, _ := rec.take()
	if want := "dev " + *open.DestinationAccessToken + " destination us-east-1 SSH,HTTP"; !slices.Equal(notes, []string{want}) {
		t.Fatalf("OpenTunnel notified %q, want %q", notes, want)
	}
	api := f.tunnels(f.acct)
	for _, c := range []struct {
		mode   string
		notify bool
	}{{"SOURCE", false}, {"DESTINATION", true}, {"ALL", true}} {
		out, err := api.RotateTunnelAccessToken(&iotsecuretunneling.RotateTunnelAccessTokenInput{TunnelId: open.TunnelId, ClientMode: &c.mode})
		if err != nil {
			t.Fatal(err)
		}
		notes, _ := rec.take()
		if !c.notify {
			if len(notes) != 0 {
				t.Fatalf("%s notified %q", c.mode, notes)
			}
			continue
		}
		if want := "dev " + *out.DestinationAccessToken + " destination us-east-1 SSH,HTTP"; !slices.Equal(notes, []string{want}) {
			t.Fatalf("%s notified %q, want %q", c.mode, notes, want)
		}
	}
	f.openTunnel(f.acct, "", "SSH") // no thing: nobody to notify
	if notes, _ := rec.take(); len(notes) != 0 {
		t.Fatalf("a tunnel without a thing notified %q", notes)
	}
}
