package admin

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseShorthand(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]any
	}{
		{"thingName=t1", map[string]any{"thingName": "t1"}},
		{"thingName=t1,services=SSH", map[string]any{"thingName": "t1", "services": "SSH"}},
		{"thingName=t1,services=HTTP,SSH", map[string]any{"thingName": "t1", "services": []any{"HTTP", "SSH"}}},
		{"services=HTTP,SSH,RDP,thingName=t1", map[string]any{"services": []any{"HTTP", "SSH", "RDP"}, "thingName": "t1"}},
		{"thingName=t1,services=[HTTP,SSH]", map[string]any{"thingName": "t1", "services": []any{"HTTP", "SSH"}}},
		{"services=[HTTP],thingName=t1", map[string]any{"services": []any{"HTTP"}, "thingName": "t1"}},
		{"services=[]", map[string]any{"services": []any{}}},
		{" thingName = t1 , services = [ HTTP , SSH ] ", map[string]any{"thingName": "t1", "services": []any{"HTTP", "SSH"}}},
		{"key=a,value=", map[string]any{"key": "a", "value": ""}},
		{"key=a,value=b=c", map[string]any{"key": "a", "value": "b=c"}},
		{`services="A,B",C`, map[string]any{"services": []any{"A,B", "C"}}},
		{`services='it''s'`, nil}, // adjacent quotes are not concatenated
		{`value='it\'s'`, map[string]any{"value": "it's"}},
		{`value="say \"hi\""`, map[string]any{"value": `say "hi"`}},
		{`value=a\,b`, map[string]any{"value": "a,b"}},
		{`value=a b  c  `, map[string]any{"value": "a b  c"}},
		{"attributes={k=v,k2=v2}", map[string]any{"attributes": map[string]any{"k": "v", "k2": "v2"}}},
		{"attributes={},merge=true", map[string]any{"attributes": map[string]any{}, "merge": "true"}},
		{"attributes={k=[a,b],n={x=1}}", map[string]any{"attributes": map[string]any{"k": []any{"a", "b"}, "n": map[string]any{"x": "1"}}}},
		{"a=[{k=v},{k=w}]", map[string]any{"a": []any{map[string]any{"k": "v"}, map[string]any{"k": "w"}}}},
		{"a=[[x,y],z]", map[string]any{"a": []any{[]any{"x", "y"}, "z"}}},
		{"maxLifetimeTimeoutMinutes=30", map[string]any{"maxLifetimeTimeoutMinutes": "30"}},
		{"arn=arn:aws:iot:us-east-1:1:thing/t", map[string]any{"arn": "arn:aws:iot:us-east-1:1:thing/t"}},
	}
	for _, tt := range tests {
		got, err := parseShorthand(tt.in)
		if tt.want == nil {
			if err == nil {
				t.Errorf("parseShorthand(%q) = %v, want error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseShorthand(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseShorthand(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestParseShorthandErrors(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"", "expected a key"},
		{"thingName", "expected '=' after key"},
		{"=x", "expected a key"},
		{"thingName=x,", "expected a value after ','"},
		{"services=A,,B", "expected a value after ','"},
		{"services=[A,B", "unterminated list"},
		{"services=[A B] x", "expected ','"},
		{"attributes={k=v", "unterminated hash"},
		{`value="abc`, "unterminated quoted string"},
		{`value="abc"def`, "after quoted value"},
		{"a=1,a=2", "given twice"},
		{"a=1 b=2", ""}, // bare text may hold spaces: one value "1 b=2"
	}
	for _, tt := range tests {
		got, err := parseShorthand(tt.in)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("parseShorthand(%q): unexpected error %v", tt.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("parseShorthand(%q) = %v, want error containing %q", tt.in, got, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseShorthand(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
		}
	}
}

func FuzzParseShorthand(f *testing.F) {
	for _, s := range []string{"a=b", "a=[b,c],d={e=f}", `a="x\"y",b='z'`, "a=1,2,3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseShorthand(s) // must not panic
	})
}
