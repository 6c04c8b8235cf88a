package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestEpochTime(t *testing.T) {
	for in, want := range map[time.Time]string{
		time.Unix(1700000000, 123456789): "1700000000.123",
		time.Unix(1700000000, 0):         "1700000000",
		time.Unix(1700000000, 500e6):     "1700000000.5",
	} {
		b, err := json.Marshal(epochTime(in))
		if err != nil || string(b) != want {
			t.Errorf("epochTime(%v) = %s, %v; want %s", in, b, err, want)
		}
	}
}

func TestJSONTooDeep(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for body, want := range map[string]bool{
		`{"tags":[{"key":"k","value":"v"}]}`: false,
		deep(MaxJSONDepth):                   false,
		deep(MaxJSONDepth + 1):               true,
		strings.Repeat("[", 10000):           true,
		// Brackets in strings, escaped quotes included, do not nest.
		`{"a":"` + strings.Repeat("[", 100) + `\"` + strings.Repeat("{", 100) + `"}`: false,
		`{"a":"\\"}` + deep(MaxJSONDepth+1):                                          true,
	} {
		if got := jsonTooDeep([]byte(body), MaxJSONDepth); got != want {
			t.Errorf("jsonTooDeep(%.60q) = %v, want %v", body, got, want)
		}
	}
	err := decodeJSON([]byte(strings.Repeat("[", 10000)), &struct{}{})
	if e, ok := errorsAsAPI(err); !ok || e.code != codeSerialization || !strings.Contains(e.message, "32 deep") {
		t.Fatalf("decodeJSON of 10000 [: %v", err)
	}
}
