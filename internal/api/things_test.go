package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	iotv2 "github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"
	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/iot"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// httpStatus is the HTTP status of an aws-sdk-go-v2 error.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// TestThingsSDKv2 drives the thing registry with aws-sdk-go-v2 over HTTPS.
func TestThingsSDKv2(t *testing.T) {
	f := newFixtureTLS(t, true)
	ctx := context.Background()
	c := f.iotV2(f.acct)
	attrs := map[string]string{"model": "x1", "site": "lab/2"}

	created, err := c.CreateThing(ctx, &iotv2.CreateThingInput{
		ThingName:        awsv2.String("robot:1"), // ':' is escaped in the path and in the signature
		AttributePayload: &iottypes.AttributePayload{Attributes: attrs},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := f.proto.Load(); p != 2 {
		t.Errorf("request made over HTTP/%d, want HTTP/2", p)
	}
	wantARN := fmt.Sprintf("arn:aws:iot:%s:%s:thing/robot:1", testRegion, f.acct.ID)
	if awsv2.ToString(created.ThingName) != "robot:1" || awsv2.ToString(created.ThingArn) != wantARN || len(awsv2.ToString(created.ThingId)) != 36 {
		t.Fatalf("CreateThing: %+v", created)
	}

	// Same configuration again: the same thing, like AWS.
	again, err := c.CreateThing(ctx, &iotv2.CreateThingInput{ThingName: awsv2.String("robot:1"), AttributePayload: &iottypes.AttributePayload{Attributes: attrs}})
	if err != nil || awsv2.ToString(again.ThingId) != awsv2.ToString(created.ThingId) {
		t.Fatalf("repeated CreateThing: %+v, %v", again, err)
	}
	// Another configuration: a conflict that names the thing there is.
	_, err = c.CreateThing(ctx, &iotv2.CreateThingInput{ThingName: awsv2.String("robot:1")})
	var exists *iottypes.ResourceAlreadyExistsException
	if !errors.As(err, &exists) || httpStatus(err) != http.StatusConflict ||
		awsv2.ToString(exists.ResourceId) != awsv2.ToString(created.ThingId) || awsv2.ToString(exists.ResourceArn) != wantARN {
		t.Fatalf("conflicting CreateThing: %v", err)
	}

	d, err := c.DescribeThing(ctx, &iotv2.DescribeThingInput{ThingName: awsv2.String("robot:1")})
	if err != nil {
		t.Fatal(err)
	}
	if awsv2.ToString(d.ThingName) != "robot:1" || awsv2.ToString(d.DefaultClientId) != "robot:1" ||
		awsv2.ToString(d.ThingId) != awsv2.ToString(created.ThingId) || awsv2.ToString(d.ThingArn) != wantARN ||
		!maps.Equal(d.Attributes, attrs) || d.Version != 1 {
		t.Fatalf("DescribeThing: %+v", d)
	}

	_, err = c.DescribeThing(ctx, &iotv2.DescribeThingInput{ThingName: awsv2.String("ghost")})
	var nf *iottypes.ResourceNotFoundException
	if !errors.As(err, &nf) || httpStatus(err) != http.StatusNotFound || !strings.Contains(nf.ErrorMessage(), "ghost") {
		t.Fatalf("DescribeThing of a missing thing: %v", err)
	}

	// A stale expectedVersion conflicts; the right one deletes.
	_, err = c.DeleteThing(ctx, &iotv2.DeleteThingInput{ThingName: awsv2.String("robot:1"), ExpectedVersion: awsv2.Int64(7)})
	var vc *iottypes.VersionConflictException
	if !errors.As(err, &vc) || httpStatus(err) != http.StatusConflict {
		t.Fatalf("DeleteThing with a stale version: %v", err)
	}
	if _, err := c.DeleteThing(ctx, &iotv2.DeleteThingInput{ThingName: awsv2.String("robot:1"), ExpectedVersion: awsv2.Int64(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeThing(ctx, &iotv2.DescribeThingInput{ThingName: awsv2.String("robot:1")}); !errors.As(err, &nf) {
		t.Fatalf("deleted thing: %v", err)
	}
	// Deleting a thing that does not exist succeeds, as AWS documents.
	if _, err := c.DeleteThing(ctx, &iotv2.DeleteThingInput{ThingName: awsv2.String("robot:1")}); err != nil {
		t.Fatalf("DeleteThing of a missing thing: %v", err)
	}
}

func TestListThingsPagination(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.iotV2(f.acct)
	var want []string
	for i := range 5 {
		name := fmt.Sprintf("dev-%d", i)
		color := []string{"red", "blue"}[i%2]
		_, err := c.CreateThing(ctx, &iotv2.CreateThingInput{ThingName: &name,
			AttributePayload: &iottypes.AttributePayload{Attributes: map[string]string{"color": color}}})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	f.createThing(f.other, "someone-elses")

	var got []string
	pages := 0
	p := iotv2.NewListThingsPaginator(c, &iotv2.ListThingsInput{MaxResults: awsv2.Int32(2)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, th := range out.Things {
			got = append(got, awsv2.ToString(th.ThingName))
			if awsv2.ToString(th.ThingArn) == "" || th.Version != 1 || th.Attributes["color"] == "" {
				t.Errorf("thing %+v", th)
			}
		}
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("%d pages: %v, want %v", pages, got, want)
	}

	// Attribute filter, paged: dev-0, dev-2, dev-4 are red.
	got = nil
	p = iotv2.NewListThingsPaginator(c, &iotv2.ListThingsInput{MaxResults: awsv2.Int32(2),
		AttributeName: awsv2.String("color"), AttributeValue: awsv2.String("red")})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, th := range out.Things {
			got = append(got, awsv2.ToString(th.ThingName))
		}
	}
	if !slices.Equal(got, []string{"dev-0", "dev-2", "dev-4"}) {
		t.Fatalf("filtered: %v", got)
	}
	out, err := c.ListThings(ctx, &iotv2.ListThingsInput{AttributeName: awsv2.String("color"), AttributeValue: awsv2.String("bl"), UsePrefixAttributeValue: true})
	if err != nil || len(out.Things) != 2 {
		t.Fatalf("prefix filter: %+v, %v", out, err)
	}
	out, err = c.ListThings(ctx, &iotv2.ListThingsInput{ThingTypeName: awsv2.String("sensor")})
	if err != nil || len(out.Things) != 0 || out.Things == nil {
		t.Fatalf("thing type filter: %+v, %v", out, err)
	}
}

func TestThingValidation(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"bad name", http.MethodPost, "/things/a%20b", `{}`, 400, codeInvalidRequest},
		{"long name", http.MethodPost, "/things/" + strings.Repeat("n", 129), `{}`, 400, codeInvalidRequest},
		{"four attributes", http.MethodPost, "/things/t", `{"attributePayload":{"attributes":{"a":"1","b":"2","c":"3","d":"4"}}}`, 400, codeInvalidRequest},
		{"bad attribute name", http.MethodPost, "/things/t", `{"attributePayload":{"attributes":{"a b":"1"}}}`, 400, codeInvalidRequest},
		{"bad attribute value", http.MethodPost, "/things/t", `{"attributePayload":{"attributes":{"a":"x y"}}}`, 400, codeInvalidRequest},
		{"thing type", http.MethodPost, "/things/t", `{"thingTypeName":"sensor"}`, 404, codeNotFound},
		{"billing group", http.MethodPost, "/things/t", `{"billingGroupName":"g"}`, 404, codeNotFound},
		{"not JSON", http.MethodPost, "/things/t", `{`, 400, codeSerialization},
		{"maxResults 0", http.MethodGet, "/things?maxResults=0", ``, 400, codeInvalidRequest},
		{"maxResults 251", http.MethodGet, "/things?maxResults=251", ``, 400, codeInvalidRequest},
		{"maxResults x", http.MethodGet, "/things?maxResults=x", ``, 400, codeInvalidRequest},
		{"bad nextToken", http.MethodGet, "/things?nextToken=%21%21", ``, 400, codeInvalidRequest},
		{"value without name", http.MethodGet, "/things?attributeValue=x", ``, 400, codeInvalidRequest},
		{"bad expectedVersion", http.MethodDelete, "/things/t?expectedVersion=x", ``, 400, codeInvalidRequest},
		{"describe missing", http.MethodGet, "/things/t", ``, 404, codeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, signRaw{method: tc.method, path: tc.path, body: []byte(tc.body), service: signingNameIoT,
				header: map[string]string{"Content-Type": "application/json"}})
			wantError(t, r, tc.status, tc.code)
		})
	}
	if things, _ := f.store.Things(context.Background(), f.acct.ID, "", 10); len(things) != 0 {
		t.Errorf("invalid requests created %d things", len(things))
	}
}

// TestThingsSDKv1 drives the thing registry with aws-sdk-go (v1), whose
// signer leaves content-length unsigned.
func TestThingsSDKv1(t *testing.T) {
	f := newFixture(t)
	c := f.iotV1(f.acct)
	created, err := c.CreateThing(&iot.CreateThingInput{ThingName: aws.String("cam-1"),
		AttributePayload: &iot.AttributePayload{Attributes: aws.StringMap(map[string]string{"floor": "3"})}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeThing(&iot.DescribeThingInput{ThingName: aws.String("cam-1")})
	if err != nil || aws.StringValue(d.ThingId) != aws.StringValue(created.ThingId) || aws.StringValue(d.Attributes["floor"]) != "3" {
		t.Fatalf("DescribeThing: %v, %v", d, err)
	}
	l, err := c.ListThings(&iot.ListThingsInput{})
	if err != nil || len(l.Things) != 1 || aws.StringValue(l.Things[0].ThingName) != "cam-1" {
		t.Fatalf("ListThings: %v, %v", l, err)
	}
	if _, err := c.DeleteThing(&iot.DeleteThingInput{ThingName: aws.String("cam-1")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeThing(&iot.DescribeThingInput{ThingName: aws.String("cam-1")})
	var ae awserr.RequestFailure
	if !errors.As(err, &ae) || ae.Code() != iot.ErrCodeResourceNotFoundException || ae.StatusCode() != http.StatusNotFound {
		t.Fatalf("deleted thing: %v", err)
	}
	// The v2 SDK sees the same error through its generic API error too.
	_, err = f.iotV2(f.acct).DescribeThing(context.Background(), &iotv2.DescribeThingInput{ThingName: awsv2.String("cam-1")})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != codeNotFound {
		t.Fatalf("v2 error: %v", err)
	}
}
