package admin

import (
	"bytes"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

func TestWriteOutput(t *testing.T) {
	ts := time.Date(2026, 11, 27, 9, 0, 0, 123456789, time.UTC)
	whole := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	type inner struct {
		When *time.Time `json:"when,omitempty"`
		N    int64      `json:"n"`
	}
	type resp struct {
		Text    string            `json:"text,omitempty"`
		Empty   string            `json:"empty,omitempty"`
		List    []string          `json:"list,omitzero"`
		NilList []string          `json:"nilList,omitzero"`
		Map     map[string]string `json:"map,omitempty"`
		Inner   *inner            `json:"inner,omitempty"`
		Absent  *inner            `json:"absent,omitempty"`
		Items   []inner           `json:"items"`
		skipped string
	}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"full", &resp{
			Text:  "a<b>&c \"q\" \\ é \u2028 \x01",
			List:  []string{},
			Map:   map[string]string{"z": "1", "a": "2"},
			Inner: &inner{When: &ts, N: 7},
			Items: []inner{{When: &whole}},
		}, `{
    "text": "a<b>&c \"q\" \\ é ` + "\u2028" + ` \u0001",
    "list": [],
    "map": {
        "a": "2",
        "z": "1"
    },
    "inner": {
        "when": "2026-11-27T14:30:00.123457+05:30",
        "n": 7
    },
    "items": [
        {
            "when": "2026-11-27T14:30:00+05:30",
            "n": 0
        }
    ]
}
`},
		{"empty response prints nothing", &tunnelapi.CloseTunnelOutput{}, ""},
		{"nil prints nothing", nil, ""},
		{"all members absent prints nothing", &tunnelapi.OpenTunnelOutput{}, ""},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := writeOutput(&buf, tt.v); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tt.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tt.name, buf.String(), tt.want)
		}
	}
}

func TestPythonFloat(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0, "0.0"}, {1, "1.0"}, {-2, "-2.0"}, {1500.5, "1500.5"}, {1234567, "1234567.0"}, {0.1, "0.1"},
		{0.0001, "0.0001"}, {0.00001, "1e-05"}, {1.5e-7, "1.5e-07"}, {1e15, "1000000000000000.0"}, {1e16, "1e+16"},
		{123456789012345678, "1.2345678901234568e+17"},
	} {
		if got := pythonFloat(c.in); got != c.want {
			t.Errorf("pythonFloat(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
