package admin

import (
	"strings"
	"testing"
)

// tagsAPI answers the tag operations with fixed JSON.
func tagsAPI(r recorded, _ int) reply {
	switch r.Target {
	case "IoTSecuredTunneling.ListTagsForResource":
		if strings.Contains(string(r.Body), "tunnel/bare") {
			return reply{body: `{"tags":[]}`}
		}
		if strings.Contains(string(r.Body), "tunnel/missing") {
			return reply{status: 400, body: `{"__type":"ResourceNotFoundException","message":"resource arn:aws:iot:eu-central-1:123456789012:tunnel/missing does not exist in this account"}`}
		}
		return reply{body: `{"tags":[{"key":"team","value":"edge"},{"key":"env","value":""}]}`}
	case "IoTSecuredTunneling.TagResource", "IoTSecuredTunneling.UntagResource":
		return reply{body: `{}`}
	}
	return reply{status: 400, body: `{"__type":"UnknownOperationException","message":"no"}`}
}

func TestRunTagCommands(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newFakeService(t, tagsAPI)
	ep := "--endpoint-url=" + svc.URL
	const arn = "arn:aws:iot:eu-central-1:123456789012:tunnel/b2de92a3-b8ff-46c0-b0f2-afa28b00cecd"

	for _, args := range [][]string{
		{"tag-resource", "--resource-arn", arn, "--tags", "key=team,value=edge", "Key=env,Value=", ep},
		{"tag-resource", "--resource-arn", arn, "--tags", `[{"key":"a","value":"b"}]`, ep},
		{"untag-resource", "--resource-arn", arn, "--tag-keys", "team", "env", ep},
		{"untag-resource", "--resource-arn=" + arn, "--tag-keys", `["a", "b"]`, ep},
		{"untag-resource", "--resource-arn", arn, "--tag-keys", "only", ep},
	} {
		if out := mustRun(t, args...); out != "" {
			t.Errorf("%v printed %q, want nothing", args, out)
		}
	}
	out := mustRun(t, "list-tags-for-resource", "--resource-arn", arn, ep)
	want := `{
    "tags": [
        {
            "key": "team",
            "value": "edge"
        },
        {
            "key": "env",
            "value": ""
        }
    ]
}
`
	if out != want {
		t.Errorf("list-tags-for-resource output:\n%s\nwant:\n%s", out, want)
	}
	out = mustRun(t, "list-tags-for-resource", "--resource-arn", "arn:aws:iot:eu-central-1:123456789012:tunnel/bare", ep)
	if want := "{\n    \"tags\": []\n}\n"; out != want {
		t.Errorf("no tags: %q, want %q", out, want)
	}

	reqs := svc.recorded()
	wantBodies := []string{
		`{"resourceArn":"` + arn + `","tags":[{"key":"team","value":"edge"},{"key":"env","value":""}]}`,
		`{"resourceArn":"` + arn + `","tags":[{"key":"a","value":"b"}]}`,
		`{"resourceArn":"` + arn + `","tagKeys":["team","env"]}`,
		`{"resourceArn":"` + arn + `","tagKeys":["a","b"]}`,
		`{"resourceArn":"` + arn + `","tagKeys":["only"]}`,
		`{"resourceArn":"` + arn + `"}`,
		`{"resourceArn":"arn:aws:iot:eu-central-1:123456789012:tunnel/bare"}`,
	}
	if len(reqs) != len(wantBodies) {
		t.Fatalf("service saw %d requests, want %d", len(reqs), len(wantBodies))
	}
	for i, r := range reqs {
		jsonEqual(t, r.Target+" body", r.Body, wantBodies[i])
	}
	checkSigned(t, svc)
}

func TestRunTagCommandErrors(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newFakeService(t, tagsAPI)
	ep := "--endpoint-url=" + svc.URL
	tests := []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"tag-resource", "--tags", "key=a,value=b", ep}, exitUsage, "the following arguments are required: --resource-arn"},
		{[]string{"tag-resource", "--resource-arn", "x", ep}, exitUsage, "--tags"},
		{[]string{"untag-resource", "--resource-arn", "x", ep}, exitUsage, "--tag-keys"},
		{[]string{"untag-resource", "--resource-arn", "x", "--tag-keys", ep}, exitUsage, "expected at least one argument"},
		{[]string{"untag-resource", "--resource-arn", "x", "--tag-keys", `["a", 1]`, ep}, exitUsage, "Invalid type for parameter tagKeys[1]"},
		{[]string{"tag-resource", "--resource-arn", "x", "--tags", "key=a", ep}, exitUsage, `Missing required parameter in tags[0]: "value"`},
		{[]string{"list-tags-for-resource", ep}, exitUsage, "--resource-arn"},
		{[]string{"list-tags-for-resource", "--resource-arn", "arn:aws:iot:eu-central-1:123456789012:tunnel/missing", ep}, exitService,
			"An error occurred (ResourceNotFoundException) when calling the ListTagsForResource operation: resource arn:aws:iot:eu-central-1:123456789012:tunnel/missing does not exist"},
	}
	for _, tc := range tests {
		_, stderr, code := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.inStderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.inStderr)
		}
	}
}
