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

func TestCursor(t *testing.T) {
	tok := encodeCursor("tunnel", "0123abcd")
	if !nextTokenPattern.MatchString(tok) {
		t.Fatalf("token %q does not match the model's NextToken pattern", tok)
	}
	if id, ok := decodeCursor("tunnel", tok); !ok || id != "0123abcd" {
		t.Fatalf("decode: %q %v", id, ok)
	}
	for _, bad := range []string{"", "!!", encodeCursor("thing", "x"), encodeCursor("tunnel", ""), strings.Repeat("A", maxNextToken+1)} {
		if _, ok := decodeCursor("tunnel", bad); ok {
			t.Errorf("decodeCursor accepted %q", bad)
		}
	}
}
