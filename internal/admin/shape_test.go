package admin

import (
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/warrentunnel/warren/internal/tunnelapi"
)

func int32p(n int32) *int32 { return &n }

// TestStructuredParams runs the CLI forms of each structured parameter
// through parsing, validation and decoding into the typed request.
func TestStructuredParams(t *testing.T) {
	tests := []struct {
		name  string
		p     param
		args  []string
		want  any // pointer to the decoded value
		fresh func() any
	}{
		{"destination shorthand csv", openTunnelParam("destination-config"), []string{"thingName=t1,services=HTTP,SSH"},
			&tunnelapi.DestinationConfig{ThingName: aws.String("t1"), Services: []string{"HTTP", "SSH"}}, newDest},
		{"destination shorthand explicit list", openTunnelParam("destination-config"), []string{"thingName=t1,services=[HTTP,SSH]"},
			&tunnelapi.DestinationConfig{ThingName: aws.String("t1"), Services: []string{"HTTP", "SSH"}}, newDest},
		{"destination shorthand single service", openTunnelParam("destination-config"), []string{"services=SSH"},
			&tunnelapi.DestinationConfig{Services: []string{"SSH"}}, newDest},
		{"destination JSON", openTunnelParam("destination-config"), []string{` {"thingName":"t1","services":["SSH"]}`},
			&tunnelapi.DestinationConfig{ThingName: aws.String("t1"), Services: []string{"SSH"}}, newDest},
		{"timeout shorthand", openTunnelParam("timeout-config"), []string{"maxLifetimeTimeoutMinutes=30"},
			&tunnelapi.TimeoutConfig{MaxLifetimeTimeoutMinutes: int32p(30)}, newTimeout},
		{"timeout JSON", openTunnelParam("timeout-config"), []string{`{"maxLifetimeTimeoutMinutes": 720}`},
			&tunnelapi.TimeoutConfig{MaxLifetimeTimeoutMinutes: int32p(720)}, newTimeout},
		{"tags shorthand, CLI names", openTunnelParam("tags"), []string{"key=a,value=b", "key=c,value="},
			&[]tunnelapi.Tag{{Key: "a", Value: "b"}, {Key: "c", Value: ""}}, newTags},
		{"tags shorthand, capitalized names", openTunnelParam("tags"), []string{"Key=a,Value=b", "Key=c,Value=d"},
			&[]tunnelapi.Tag{{Key: "a", Value: "b"}, {Key: "c", Value: "d"}}, newTags},
		{"tags JSON list", openTunnelParam("tags"), []string{`[{"key":"a","value":"b"},{"Key":"c","Value":"d"}]`},
			&[]tunnelapi.Tag{{Key: "a", Value: "b"}, {Key: "c", Value: "d"}}, newTags},
		{"tags one JSON object", openTunnelParam("tags"), []string{`{"key":"a","value":"b"}`},
			&[]tunnelapi.Tag{{Key: "a", Value: "b"}}, newTags},
		{"attribute payload shorthand", createThingParam("attribute-payload"), []string{"attributes={color=red,size=2}"},
			&attributePayloadInput{Attributes: map[string]string{"color": "red", "size": "2"}}, newAttrs},
		{"attribute payload JSON", createThingParam("attribute-payload"), []string{`{"attributes":{"color":"red"},"merge":true}`},
			&attributePayloadInput{Attributes: map[string]string{"color": "red"}, Merge: true}, newAttrs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := convertParam(tt.p, append([]string(nil), tt.args...))
			if err != nil {
				t.Fatalf("convertParam: %v", err)
			}
			got := tt.fresh()
			if err := decodeInto(v, got); err != nil {
				t.Fatalf("decodeInto: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func newDest() any    { return new(tunnelapi.DestinationConfig) }
func newTimeout() any { return new(tunnelapi.TimeoutConfig) }
func newTags() any    { return new([]tunnelapi.Tag) }
func newAttrs() any   { return new(attributePayloadInput) }

func openTunnelParam(name string) param  { return findParam(openTunnelCmd, name) }
func createThingParam(name string) param { return findParam(createThingCmd, name) }

func findParam(c *command, name string) param {
	for _, p := range c.params {
		if p.name == name {
			return p
		}
	}
	panic("no parameter " + name)
}

// TestStructuredParamErrors checks the messages the CLI gives for values
// that parse but do not fit the shape, and for values that do not parse.
func TestStructuredParamErrors(t *testing.T) {
	tests := []struct {
		p    param
		args []string
		want string
	}{
		{openTunnelParam("destination-config"), []string{"thingName=t1"},
			"Parameter validation failed:\nMissing required parameter in destinationConfig: \"services\""},
		{openTunnelParam("destination-config"), []string{"foo=x"},
			"Parameter validation failed:\nMissing required parameter in destinationConfig: \"services\"\nUnknown parameter in destinationConfig: \"foo\", must be one of: thingName, services"},
		{openTunnelParam("destination-config"), []string{`{"services":"SSH","thingName":5}`},
			"Parameter validation failed:\nInvalid type for parameter destinationConfig.thingName, value: 5, type: number, valid types: string"},
		{openTunnelParam("timeout-config"), []string{"maxLifetimeTimeoutMinutes=abc"},
			"Parameter validation failed:\nInvalid type for parameter timeoutConfig.maxLifetimeTimeoutMinutes, value: abc, type: string, valid types: integer"},
		{openTunnelParam("timeout-config"), []string{"maxLifetimeTimeoutMinutes=0"},
			"Parameter validation failed:\nInvalid value for parameter timeoutConfig.maxLifetimeTimeoutMinutes, value: 0, valid min value: 1"},
		{openTunnelParam("tags"), []string{"key=a", "value=b"},
			"Parameter validation failed:\nMissing required parameter in tags[0]: \"value\"\nMissing required parameter in tags[1]: \"key\""},
		{openTunnelParam("tags"), []string{`[{"key":"a","value":"b"}`},
			"Error parsing parameter '--tags': Invalid JSON: unexpected EOF\nJSON received: [{\"key\":\"a\",\"value\":\"b\"}"},
		{openTunnelParam("destination-config"), []string{`{"services":["A"]} x`},
			"Error parsing parameter '--destination-config': Invalid JSON: extra data after the value"},
		{openTunnelParam("destination-config"), []string{"thingName=t1,"},
			"Error parsing parameter '--destination-config': expected a value after ','"},
		{createThingParam("attribute-payload"), []string{"attributes=x"},
			"Parameter validation failed:\nInvalid type for parameter attributePayload.attributes, value: x, type: string, valid types: map"},
		{createThingParam("attribute-payload"), []string{"merge=maybe"},
			"Parameter validation failed:\nInvalid type for parameter attributePayload.merge, value: maybe, type: string, valid types: boolean"},
	}
	for _, tt := range tests {
		_, err := convertParam(tt.p, append([]string(nil), tt.args...))
		if err == nil {
			t.Errorf("--%s %q: no error, want %q", tt.p.name, tt.args, tt.want)
			continue
		}
		if _, ok := err.(*paramError); !ok {
			t.Errorf("--%s %q: error %T, want *paramError", tt.p.name, tt.args, err)
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("--%s %q:\n got %q\nwant %q", tt.p.name, tt.args, err, tt.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	params := append(append([]param(nil), openTunnelCmd.params...), globalParams...)
	vals, help, err := parseArgs(params, []string{
		"--description=hello world", "--tags", "key=a,value=b", "key=c,value=d",
		"--region", "eu-west-1", "--no-verify-ssl", "--destination-config", "services=SSH",
	})
	if err != nil || help {
		t.Fatalf("parseArgs: help=%v err=%v", help, err)
	}
	if vals.str("description") != "hello world" || vals.str("region") != "eu-west-1" || vals["no-verify-ssl"] != true {
		t.Errorf("scalars: %#v", vals)
	}
	if tags, _ := vals["tags"].([]any); len(tags) != 2 {
		t.Errorf("tags = %#v, want two", vals["tags"])
	}

	closeParams := append(append([]param(nil), closeTunnelCmd.params...), globalParams...)
	for _, tc := range []struct {
		args []string
		want any
	}{
		{[]string{"--tunnel-id", "x", "--delete"}, true},
		{[]string{"--tunnel-id", "x", "--no-delete"}, false},
		{[]string{"--tunnel-id", "x"}, nil},
	} {
		vals, _, err := parseArgs(closeParams, tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got := vals["delete"]; got != tc.want {
			t.Errorf("%q: delete = %v, want %v", tc.args, got, tc.want)
		}
	}

	if _, help, _ := parseArgs(closeParams, []string{"--bogus", "-h"}); !help {
		t.Error("-h not recognized")
	}

	usage := []struct {
		params []param
		args   []string
		want   string
	}{
		{closeParams, nil, "the following arguments are required: --tunnel-id"},
		{closeParams, []string{"--tunnel-id"}, "argument --tunnel-id: expected one argument"},
		{closeParams, []string{"--tunnel-id", "--delete"}, "argument --tunnel-id: expected one argument"},
		{closeParams, []string{"--tunnel-id", "x", "--bogus", "1", "extra"}, "Unknown options: --bogus, 1, extra"},
		{closeParams, []string{"--tunnel-id", "x", "--delete=yes"}, "argument --delete: ignored explicit argument 'yes'"},
		{closeParams, []string{"--tunnel-id", "x", "--no-tunnel-id"}, "Unknown options: --no-tunnel-id"},
		{params, []string{"--tags"}, "argument --tags: expected at least one argument"},
		{append(append([]param(nil), listTunnelsCmd.params...), globalParams...), []string{"--max-results", "ten"},
			"argument --max-results: invalid integer value: 'ten'"},
	}
	for _, tc := range usage {
		_, _, err := parseArgs(tc.params, tc.args)
		if _, ok := err.(*usageError); !ok || err.Error() != tc.want {
			t.Errorf("%q: error %v (%T), want usage error %q", tc.args, err, err, tc.want)
		}
	}
}
