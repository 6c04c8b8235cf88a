package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// The constraints of the IoT Secure Tunneling model, at and past each bound.
// A request past a bound is refused with HTTP 400 ValidationException naming
// the member; one at the bound passes validation (it succeeds, or fails for
// another reason: the tunnel or thing does not exist).
func TestTunnelConstraintBounds(t *testing.T) {
	f := newFixture(t)
	thing128 := strings.Repeat("t", 128)
	f.createThing(f.acct, thing128)
	open := f.openTunnel(f.acct, "", "SSH")
	arn := *open.TunnelArn

	svc := func(s string) string { return `{"destinationConfig":{"services":[` + s + `]}` }
	openWith := func(member string) string { return `{"destinationConfig":{"services":["SSH"]},` + member + `}` }
	tags := func(n int) string {
		ts := make([]string, n)
		for i := range ts {
			ts[i] = fmt.Sprintf(`{"key":"k%d","value":"v"}`, i)
		}
		return `"tags":[` + strings.Join(ts, ",") + `]`
	}
	keys := func(n int) string {
		ks := make([]string, n)
		for i := range ks {
			ks[i] = fmt.Sprintf(`"k%d"`, i)
		}
		return `[` + strings.Join(ks, ",") + `]`
	}
	q := func(s string) string { return `"` + s + `"` }
	tests := []struct {
		name, op, body string
		code           string // "" for success
		inMessage      string
	}{
		// OpenTunnel: services 1..3, each 1..128 of [a-zA-Z0-9:_-].
		{"services 1", "OpenTunnel", svc(q("a")) + `}`, "", ""},
		{"services 3", "OpenTunnel", svc(`"a","b","c"`) + `}`, "", ""},
		{"services 4", "OpenTunnel", svc(`"a","b","c","d"`) + `}`, codeValidation, "services"},
		{"services none", "OpenTunnel", svc(``) + `}`, codeValidation, "services"},
		{"service 128", "OpenTunnel", svc(q(strings.Repeat("s", 128))) + `}`, "", ""},
		{"service 129", "OpenTunnel", svc(q(strings.Repeat("s", 129))) + `}`, codeValidation, "service"},
		{"service empty", "OpenTunnel", svc(q("")) + `}`, codeValidation, "service"},
		{"service pattern", "OpenTunnel", svc(q("a.b")) + `}`, codeValidation, "a.b"},
		{"service twice", "OpenTunnel", svc(`"a","a"`) + `}`, codeValidation, "twice"},
		// thingName 1..128 of [a-zA-Z0-9:_-].
		{"thingName 128", "OpenTunnel", `{"destinationConfig":{"thingName":"` + thing128 + `","services":["SSH"]}}`, "", ""},
		{"thingName 129", "OpenTunnel", `{"destinationConfig":{"thingName":"` + thing128 + `x","services":["SSH"]}}`, codeValidation, "thingName"},
		{"thingName empty", "OpenTunnel", `{"destinationConfig":{"thingName":"","services":["SSH"]}}`, codeValidation, "thingName"},
		// maxLifetimeTimeoutMinutes 1..720.
		{"lifetime 1", "OpenTunnel", openWith(`"timeoutConfig":{"maxLifetimeTimeoutMinutes":1}`), "", ""},
		{"lifetime 720", "OpenTunnel", openWith(`"timeoutConfig":{"maxLifetimeTimeoutMinutes":720}`), "", ""},
		{"lifetime 0", "OpenTunnel", openWith(`"timeoutConfig":{"maxLifetimeTimeoutMinutes":0}`), codeValidation, "maxLifetimeTimeoutMinutes"},
		{"lifetime 721", "OpenTunnel", openWith(`"timeoutConfig":{"maxLifetimeTimeoutMinutes":721}`), codeValidation, "maxLifetimeTimeoutMinutes"},
		{"lifetime -1", "OpenTunnel", openWith(`"timeoutConfig":{"maxLifetimeTimeoutMinutes":-1}`), codeValidation, "maxLifetimeTimeoutMinutes"},
		// description 1..2048, no control characters.
		{"description 1", "OpenTunnel", openWith(`"description":"d"`), "", ""},
		{"description 2048", "OpenTunnel", openWith(`"description":"` + strings.Repeat("é", 2048) + `"`), "", ""},
		{"description 2049", "OpenTunnel", openWith(`"description":"` + strings.Repeat("é", 2049) + `"`), codeValidation, "description"},
		{"description empty", "OpenTunnel", openWith(`"description":""`), codeValidation, "description"},
		{"description newline", "OpenTunnel", openWith(`"description":"a\nb"`), codeValidation, "description"},
		// tags 1..200; keys 1..128, values 0..256 of the tag pattern; both required.
		{"tags 1", "OpenTunnel", openWith(tags(1)), "", ""},
		{"tags 200", "OpenTunnel", openWith(tags(200)), "", ""},
		{"tags 201", "OpenTunnel", openWith(tags(201)), codeValidation, "200"},
		{"tags none", "OpenTunnel", openWith(tags(0)), codeValidation, "tags"},
		{"tag key 128", "OpenTunnel", openWith(`"tags":[{"key":"` + strings.Repeat("k", 128) + `","value":""}]`), "", ""},
		{"tag key 129", "OpenTunnel", openWith(`"tags":[{"key":"` + strings.Repeat("k", 129) + `","value":""}]`), codeValidation, "tag key"},
		{"tag key empty", "OpenTunnel", openWith(`"tags":[{"key":"","value":"v"}]`), codeValidation, "tag key"},
		{"tag key pattern", "OpenTunnel", openWith(`"tags":[{"key":"a#b","value":"v"}]`), codeValidation, "a#b"},
		{"tag key unicode", "OpenTunnel", openWith(`"tags":[{"key":"Größe ü @:/=+-_.","value":"v"}]`), "", ""},
		{"tag value 256", "OpenTunnel", openWith(`"tags":[{"key":"k","value":"` + strings.Repeat("v", 256) + `"}]`), "", ""},
		{"tag value 257", "OpenTunnel", openWith(`"tags":[{"key":"k","value":"` + strings.Repeat("v", 257) + `"}]`), codeValidation, "value"},
		{"tag value pattern", "OpenTunnel", openWith(`"tags":[{"key":"k","value":"a*b"}]`), codeValidation, "value"},
		{"tag without value", "OpenTunnel", openWith(`"tags":[{"key":"k"}]`), codeValidation, `tags: tag "k": value is required`},
		{"tag without key", "OpenTunnel", openWith(`"tags":[{"value":"v"}]`), codeValidation, "tags: a tag: key is required"},
		{"tag key twice", "OpenTunnel", openWith(`"tags":[{"key":"k","value":"a"},{"key":"k","value":"b"}]`), codeValidation, "twice"},
		// tunnelId 1..128 of [a-zA-Z0-9_\-+=:].
		{"tunnelId 128", "DescribeTunnel", `{"tunnelId":"` + strings.Repeat("a", 128) + `"}`, codeNotFound, "does not exist"},
		{"tunnelId 129", "DescribeTunnel", `{"tunnelId":"` + strings.Repeat("a", 129) + `"}`, codeValidation, "tunnelId"},
		{"tunnelId pattern", "CloseTunnel", `{"tunnelId":"a/b"}`, codeValidation, "tunnelId"},
		{"tunnelId all characters", "CloseTunnel", `{"tunnelId":"aZ09_-+=:"}`, codeNotFound, "does not exist"},
		{"tunnelId missing", "CloseTunnel", `{}`, codeValidation, "tunnelId"},
		// ListTunnels: maxResults 1..100, thingName, nextToken 1..4096 of [a-zA-Z0-9_=-].
		{"maxResults 1", "ListTunnels", `{"maxResults":1}`, "", ""},
		{"maxResults 100", "ListTunnels", `{"maxResults":100}`, "", ""},
		{"maxResults 0", "ListTunnels", `{"maxResults":0}`, codeValidation, "maxResults"},
		{"maxResults 101", "ListTunnels", `{"maxResults":101}`, codeValidation, "maxResults"},
		{"list thingName 128", "ListTunnels", `{"thingName":"` + thing128 + `"}`, "", ""},
		{"list thingName 129", "ListTunnels", `{"thingName":"` + thing128 + `x"}`, codeValidation, "thingName"},
		{"nextToken empty", "ListTunnels", `{"nextToken":""}`, codeValidation, "nextToken"},
		{"nextToken 4097", "ListTunnels", `{"nextToken":"` + strings.Repeat("A", 4097) + `"}`, codeValidation, "nextToken"},
		{"nextToken pattern", "ListTunnels", `{"nextToken":"a.b"}`, codeValidation, "nextToken"},
		// resourceArn 1..1011; TagResource tags 1..200; UntagResource tagKeys 0..200 of TagKey.
		{"arn 1011", "ListTagsForResource", `{"resourceArn":"arn:aws:iot:us-east-1:111122223333:tunnel/` + strings.Repeat("a", 1011-len("arn:aws:iot:us-east-1:111122223333:tunnel/")) + `"}`, codeNotFound, "does not exist"},
		{"arn 1012", "ListTagsForResource", `{"resourceArn":"arn:aws:iot:us-east-1:111122223333:tunnel/` + strings.Repeat("a", 1012-len("arn:aws:iot:us-east-1:111122223333:tunnel/")) + `"}`, codeValidation, "resourceArn"},
		{"arn empty", "ListTagsForResource", `{"resourceArn":""}`, codeValidation, "resourceArn"},
		{"tag resource 1", "TagResource", `{"resourceArn":"` + arn + `",` + tags(1) + `}`, "", ""},
		{"tag resource 200", "TagResource", `{"resourceArn":"` + arn + `",` + tags(200) + `}`, "", ""},
		{"tag resource 201", "TagResource", `{"resourceArn":"` + arn + `",` + tags(201) + `}`, codeValidation, "200"},
		{"tag resource none", "TagResource", `{"resourceArn":"` + arn + `",` + tags(0) + `}`, codeValidation, "tags"},
		{"tag resource no value", "TagResource", `{"resourceArn":"` + arn + `","tags":[{"key":"k"}]}`, codeValidation, "value"},
		{"untag 0 keys", "UntagResource", `{"resourceArn":"` + arn + `","tagKeys":[]}`, "", ""},
		{"untag 200 keys", "UntagResource", `{"resourceArn":"` + arn + `","tagKeys":` + keys(200) + `}`, "", ""},
		{"untag 201 keys", "UntagResource", `{"resourceArn":"` + arn + `","tagKeys":` + keys(201) + `}`, codeValidation, "200"},
		{"untag empty key", "UntagResource", `{"resourceArn":"` + arn + `","tagKeys":[""]}`, codeValidation, "tagKeys"},
		{"untag key 129", "UntagResource", `{"resourceArn":"` + arn + `","tagKeys":["` + strings.Repeat("k", 129) + `"]}`, codeValidation, "tagKeys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.callJSON(t, tc.op, tc.body)
			if tc.code == "" {
				if r.Status != http.StatusOK {
					t.Fatalf("refused: %d %s", r.Status, r.Body)
				}
				return
			}
			wantError(t, r, http.StatusBadRequest, tc.code)
			if !strings.Contains(r.Message, tc.inMessage) {
				t.Errorf("message %q does not mention %q", r.Message, tc.inMessage)
			}
		})
	}
}
