package admin

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// The thing commands call the AWS IoT registry through the SDK. Their output
// types restate the SDK's results with the API's member names in model
// order, which is what the AWS CLI prints.

var thingNameParam = param{name: "thing-name", apiName: "thingName", kind: kindString, required: true, help: "The name of the thing."}

func int64p(n int64) *int64 { return &n }

var createThingCmd = &command{
	name:    "create-thing",
	summary: "Creates a thing in the registry (AWS IoT CreateThing).",
	params: []param{
		thingNameParam,
		{name: "thing-type-name", apiName: "thingTypeName", kind: kindString, help: "The thing type of the thing."},
		{name: "attribute-payload", apiName: "attributePayload", kind: kindStruct, shape: attributePayload,
			syntax: "attributes={k=v,k2=v2},merge=boolean | JSON", help: "The thing's attributes."},
	},
	run: createThing,
}

type createThingOutput struct {
	ThingName string `json:"thingName,omitempty"`
	ThingArn  string `json:"thingArn,omitempty"`
	ThingID   string `json:"thingId,omitempty"`
}

type attributePayloadInput struct {
	Attributes map[string]string `json:"attributes,omitempty"`
	Merge      bool              `json:"merge,omitempty"`
}

func createThing(ctx context.Context, e *env, a parsedArgs) (any, error) {
	in := &iot.CreateThingInput{ThingName: aws.String(a.str("thing-name"))}
	if a.has("thing-type-name") {
		in.ThingTypeName = aws.String(a.str("thing-type-name"))
	}
	if a.has("attribute-payload") {
		var ap attributePayloadInput
		if err := decodeInto(a["attribute-payload"], &ap); err != nil {
			return nil, &paramError{msg: "Error parsing parameter '--attribute-payload': " + err.Error()}
		}
		in.AttributePayload = &types.AttributePayload{Attributes: ap.Attributes, Merge: ap.Merge}
	}
	res, err := e.iot().CreateThing(ctx, in)
	if err != nil {
		return nil, err
	}
	return &createThingOutput{
		ThingName: aws.ToString(res.ThingName),
		ThingArn:  aws.ToString(res.ThingArn),
		ThingID:   aws.ToString(res.ThingId),
	}, nil
}

var describeThingCmd = &command{
	name:    "describe-thing",
	summary: "Describes a thing (AWS IoT DescribeThing).",
	params:  []param{thingNameParam},
	run:     describeThing,
}

type describeThingOutput struct {
	DefaultClientID  string            `json:"defaultClientId,omitempty"`
	ThingName        string            `json:"thingName,omitempty"`
	ThingID          string            `json:"thingId,omitempty"`
	ThingArn         string            `json:"thingArn,omitempty"`
	ThingTypeName    string            `json:"thingTypeName,omitempty"`
	Attributes       map[string]string `json:"attributes,omitempty"`
	Version          int64             `json:"version"`
	BillingGroupName string            `json:"billingGroupName,omitempty"`
}

func describeThing(ctx context.Context, e *env, a parsedArgs) (any, error) {
	res, err := e.iot().DescribeThing(ctx, &iot.DescribeThingInput{ThingName: aws.String(a.str("thing-name"))})
	if err != nil {
		return nil, err
	}
	return &describeThingOutput{
		DefaultClientID:  aws.ToString(res.DefaultClientId),
		ThingName:        aws.ToString(res.ThingName),
		ThingID:          aws.ToString(res.ThingId),
		ThingArn:         aws.ToString(res.ThingArn),
		ThingTypeName:    aws.ToString(res.ThingTypeName),
		Attributes:       res.Attributes,
		Version:          res.Version,
		BillingGroupName: aws.ToString(res.BillingGroupName),
	}, nil
}

var listThingsCmd = &command{
	name:    "list-things",
	summary: "Lists things, one page (AWS IoT ListThings).",
	params: []param{
		{name: "max-results", apiName: "maxResults", kind: kindInt, min: int64p(1), help: "The most things to return."},
		{name: "next-token", apiName: "nextToken", kind: kindString, help: "The token of the page to return, from a previous nextToken."},
	},
	run: listThings,
}

type thingAttribute struct {
	ThingName     string            `json:"thingName,omitempty"`
	ThingTypeName string            `json:"thingTypeName,omitempty"`
	ThingArn      string            `json:"thingArn,omitempty"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	Version       int64             `json:"version"`
}

type listThingsOutput struct {
	Things    []thingAttribute `json:"things,omitzero"`
	NextToken string           `json:"nextToken,omitempty"`
}

func listThings(ctx context.Context, e *env, a parsedArgs) (any, error) {
	in := &iot.ListThingsInput{}
	if n, ok := a["max-results"].(int64); ok {
		in.MaxResults = aws.Int32(int32(min(n, 1<<31-1)))
	}
	if a.has("next-token") {
		in.NextToken = aws.String(a.str("next-token"))
	}
	res, err := e.iot().ListThings(ctx, in)
	if err != nil {
		return nil, err
	}
	out := &listThingsOutput{NextToken: aws.ToString(res.NextToken)}
	if res.Things != nil {
		out.Things = make([]thingAttribute, len(res.Things))
	}
	for i, t := range res.Things {
		out.Things[i] = thingAttribute{
			ThingName:     aws.ToString(t.ThingName),
			ThingTypeName: aws.ToString(t.ThingTypeName),
			ThingArn:      aws.ToString(t.ThingArn),
			Attributes:    t.Attributes,
			Version:       t.Version,
		}
	}
	return out, nil
}

var deleteThingCmd = &command{
	name:    "delete-thing",
	summary: "Deletes a thing (AWS IoT DeleteThing). Prints nothing on success.",
	params:  []param{thingNameParam},
	run:     deleteThing,
}

func deleteThing(ctx context.Context, e *env, a parsedArgs) (any, error) {
	_, err := e.iot().DeleteThing(ctx, &iot.DeleteThingInput{ThingName: aws.String(a.str("thing-name"))})
	return nil, err
}
