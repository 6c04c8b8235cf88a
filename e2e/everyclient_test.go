package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/smithy-go"
)

// apiCaller calls one operation of the thing API ("iot") or the tunnel API
// ("iotsecuretunneling") by its service-model name, with its input in the
// model's JSON member names, and returns the output as JSON, or the error
// code the service answered.
type apiCaller func(t *testing.T, service, operation string, input map[string]any) (out []byte, errCode string)

// apiResult holds what the tests read of any operation's output. JSON
// member names match case-insensitively, so the CLIs' and boto3's
// camelCase output and the Go SDKs' exported field names both decode.
type apiResult struct {
	ThingName, ThingArn    string
	Things                 []struct{ ThingName string }
	TunnelID               string `json:"tunnelId"`
	TunnelArn              string
	SourceAccessToken      string
	DestinationAccessToken string
	Tunnel                 struct {
		Status            string
		DestinationConfig struct {
			ThingName string
			Services  []string
		}
		Tags []apiTag
	}
	TunnelSummaries []struct {
		TunnelID string `json:"tunnelId"`
	}
	Tags []apiTag
}

type apiTag struct{ Key, Value string }

// Every operation of both APIs through each client users have: the AWS CLI
// v2 (Debian's) and v1 (the machine's Python), boto3, and the Go SDKs
// (aws-sdk-go v1 for the tunnel API, aws-sdk-go-v2 service/iot for the thing
// API), each the same way: the thing's life, a tunnel opened with tags,
// described, listed, its destination token rotated, tagged and untagged by
// ARN, a model violation, closed, deleted.
func TestEveryOperationEveryClient(t *testing.T) {
	s := startService(t)
	callers := map[string]apiCaller{"boto3": s.boto3Caller(), "go-sdk": s.goSDKCaller(t)}
	for name, cli := range awsCLIs(t) {
		callers["aws-cli-"+name] = s.cliCaller(cli)
	}
	for name, call := range callers {
		t.Run(name, func(t *testing.T) { driveEveryOperation(t, call, "Device-"+name) })
	}
}

func driveEveryOperation(t *testing.T, call apiCaller, thing string) {
	must := func(service, op string, in map[string]any) apiResult {
		t.Helper()
		out, code := call(t, service, op, in)
		if code != "" {
			t.Fatalf("%s %v: %s", op, in, code)
		}
		var r apiResult
		if len(out) > 0 {
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("%s: output is not JSON: %v\n%s", op, err, out)
			}
		}
		return r
	}
	refused := func(want, service, op string, in map[string]any) {
		t.Helper()
		if _, code := call(t, service, op, in); code != want {
			t.Fatalf("%s %v: want %s, got %q", op, in, want, code)
		}
	}
	const st = "iotsecuretunneling"

	if r := must("iot", "CreateThing", map[string]any{"thingName": thing}); r.ThingName != thing || !strings.HasPrefix(r.ThingArn, "arn:aws:iot:us-east-1:") {
		t.Fatalf("CreateThing: %+v", r)
	}
	if r := must("iot", "DescribeThing", map[string]any{"thingName": thing}); r.ThingName != thing {
		t.Fatalf("DescribeThing: %+v", r)
	}
	if r := must("iot", "ListThings", map[string]any{}); !slices.ContainsFunc(r.Things, func(x struct{ ThingName string }) bool { return x.ThingName == thing }) {
		t.Fatalf("ListThings: %+v", r)
	}

	open := must(st, "OpenTunnel", map[string]any{
		"destinationConfig": map[string]any{"thingName": thing, "services": []string{"SSH", "HTTP"}},
		"timeoutConfig":     map[string]any{"maxLifetimeTimeoutMinutes": 30},
		"description":       "every operation",
		"tags":              []map[string]string{{"key": "k1", "value": "v1"}},
	})
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(open.TunnelID) ||
		!strings.HasSuffix(open.TunnelArn, ":tunnel/"+open.TunnelID) || open.SourceAccessToken == "" || open.DestinationAccessToken == "" {
		t.Fatalf("OpenTunnel: %+v", open)
	}
	id := map[string]any{"tunnelId": open.TunnelID}
	arn := map[string]any{"resourceArn": open.TunnelArn}
	d := must(st, "DescribeTunnel", id).Tunnel
	if d.Status != "OPEN" || d.DestinationConfig.ThingName != thing || strings.Join(d.DestinationConfig.Services, ",") != "SSH,HTTP" ||
		!reflect.DeepEqual(d.Tags, []apiTag{{"k1", "v1"}}) {
		t.Fatalf("DescribeTunnel: %+v", d)
	}
	if r := must(st, "ListTunnels", map[string]any{"thingName": thing}); len(r.TunnelSummaries) != 1 || r.TunnelSummaries[0].TunnelID != open.TunnelID {
		t.Fatalf("ListTunnels: %+v", r)
	}

	rot := must(st, "RotateTunnelAccessToken", map[string]any{"tunnelId": open.TunnelID, "clientMode": "DESTINATION"})
	if rot.TunnelArn != open.TunnelArn || rot.SourceAccessToken != "" || rot.DestinationAccessToken == "" || rot.DestinationAccessToken == open.DestinationAccessToken {
		t.Fatalf("RotateTunnelAccessToken: %+v", rot)
	}
	refused("ValidationException", st, "RotateTunnelAccessToken", map[string]any{"tunnelId": open.TunnelID, "clientMode": "SOURCE",
		"destinationConfig": map[string]any{"services": []string{"HTTP"}}})

	must(st, "TagResource", map[string]any{"resourceArn": open.TunnelArn, "tags": []map[string]string{{"key": "k2", "value": "v2"}}})
	must(st, "UntagResource", map[string]any{"resourceArn": open.TunnelArn, "tagKeys": []string{"k1"}})
	if r := must(st, "ListTagsForResource", arn); !reflect.DeepEqual(r.Tags, []apiTag{{"k2", "v2"}}) {
		t.Fatalf("ListTagsForResource after tagging k2 and untagging k1: %+v", r.Tags)
	}
	refused("ValidationException", st, "TagResource", map[string]any{"resourceArn": open.TunnelArn, "tags": []map[string]string{{"key": "a#b", "value": "v"}}})

	must(st, "CloseTunnel", id)
	if d := must(st, "DescribeTunnel", id).Tunnel; d.Status != "CLOSED" {
		t.Fatalf("DescribeTunnel after CloseTunnel: %+v", d)
	}
	must(st, "CloseTunnel", map[string]any{"tunnelId": open.TunnelID, "delete": true})
	refused("ResourceNotFoundException", st, "DescribeTunnel", id)
	refused("ResourceNotFoundException", st, "ListTagsForResource", arn)

	must("iot", "DeleteThing", map[string]any{"thingName": thing})
	refused("ResourceNotFoundException", "iot", "DescribeThing", map[string]any{"thingName": thing})
}

var cliErrorCode = regexp.MustCompile(`An error occurred \(([A-Za-z]+)\)`)

// cliCaller runs `aws SERVICE OPERATION --cli-input-json INPUT`.
func (s *service) cliCaller(cli []string) apiCaller {
	return func(t *testing.T, service, op string, input map[string]any) ([]byte, string) {
		t.Helper()
		in, _ := json.Marshal(input)
		args := append(slices.Clone(cli[1:]), service, kebab(op), "--cli-input-json", string(in), "--output", "json")
		if cli[0] == "/usr/bin/aws" {
			// Debian's CLI v2 (2.9) predates AWS_ENDPOINT_URL; v1 uses the variable.
			args = append(args, "--endpoint-url", "https://"+s.addr)
		}
		stdout, stderr, err := s.run(cli[0], args...)
		if err != nil {
			m := cliErrorCode.FindStringSubmatch(stderr)
			if m == nil {
				t.Fatalf("aws %s %s: %v\n%s%s", service, kebab(op), err, stdout, stderr)
			}
			return nil, m[1]
		}
		return []byte(stdout), ""
	}
}

func kebab(op string) string {
	return strings.ToLower(regexp.MustCompile(`([a-z])([A-Z])`).ReplaceAllString(op, "$1-$2"))
}

// boto3Caller calls the operation with boto3, one Python process a call.
func (s *service) boto3Caller() apiCaller {
	const script = `
import boto3, botocore, json, sys
client = boto3.client(sys.argv[1])
try:
    out = getattr(client, botocore.xform_name(sys.argv[2]))(**json.loads(sys.argv[3]))
except botocore.exceptions.ClientError as e:
    print(json.dumps({"__error": e.response["Error"]["Code"]}))
else:
    out.pop("ResponseMetadata", None)
    print(json.dumps(out, default=str))
`
	return func(t *testing.T, service, op string, input map[string]any) ([]byte, string) {
		t.Helper()
		in, _ := json.Marshal(input)
		stdout, stderr, err := s.run("python3", "-c", script, service, op, string(in))
		if err != nil {
			t.Fatalf("boto3 %s: %v\n%s%s", op, err, stdout, stderr)
		}
		var e struct {
			Error string `json:"__error"`
		}
		if json.Unmarshal([]byte(stdout), &e) == nil && e.Error != "" {
			return nil, e.Error
		}
		return []byte(stdout), ""
	}
}

// goSDKCaller calls aws-sdk-go (v1) service/iotsecuretunneling for the
// tunnel API and aws-sdk-go-v2 service/iot for the thing API, each method
// found by the operation's name and its input decoded from the model's
// JSON (member names match the SDKs' fields case-insensitively).
func (s *service) goSDKCaller(t *testing.T) apiCaller {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion("us-east-1"),
		config.WithSharedCredentialsFiles([]string{filepath.Join(s.dir, "credentials")}),
		config.WithSharedConfigFiles([]string{filepath.Join(s.dir, "no-config")}),
		config.WithCustomCABundle(mustOpen(t, filepath.Join(s.dir, "ca.pem"))))
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]reflect.Value{
		"iot":                reflect.ValueOf(iot.NewFromConfig(cfg, func(o *iot.Options) { o.BaseEndpoint = aws.String("https://" + s.addr) })),
		"iotsecuretunneling": reflect.ValueOf(s.sdkTunnels(t)),
	}
	return func(t *testing.T, service, op string, input map[string]any) ([]byte, string) {
		t.Helper()
		m := clients[service].MethodByName(op)
		if !m.IsValid() {
			t.Fatalf("no Go SDK method %s.%s", service, op)
		}
		var args []reflect.Value
		if m.Type().In(0) == reflect.TypeFor[context.Context]() {
			args = append(args, reflect.ValueOf(ctx)) // aws-sdk-go-v2
		}
		in := reflect.New(m.Type().In(len(args)).Elem())
		b, _ := json.Marshal(input)
		if err := json.Unmarshal(b, in.Interface()); err != nil {
			t.Fatalf("%s input %s: %v", op, b, err)
		}
		res := m.Call(append(args, in))
		if err, _ := res[1].Interface().(error); err != nil {
			var v1 awserr.Error
			var v2 smithy.APIError
			switch {
			case errors.As(err, &v2):
				return nil, v2.ErrorCode()
			case errors.As(err, &v1):
				return nil, v1.Code()
			}
			t.Fatalf("Go SDK %s: %v", op, err)
		}
		out, err := json.Marshal(res[0].Interface())
		if err != nil {
			t.Fatalf("Go SDK %s output: %v", op, err)
		}
		return out, ""
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A wrong secret is refused, by every AWS CLI, with the code AWS uses.
func TestAWSCLIWrongSecret(t *testing.T) {
	s := startService(t)
	bad := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(bad, []byte("[default]\naws_access_key_id = "+s.accessKey(t)+"\naws_secret_access_key = wrongwrongwrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cli := range awsCLIs(t) {
		cmd := exec.Command(cli[0], append(cli[1:], "iotsecuretunneling", "list-tunnels", "--endpoint-url", "https://"+s.addr)...)
		cmd.Env = append(append(os.Environ(), s.env...), "AWS_SHARED_CREDENTIALS_FILE="+bad)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "InvalidSignatureException") {
			t.Fatalf("%s: wrong secret accepted or unclear: %v %s", name, err, out)
		}
	}
}
