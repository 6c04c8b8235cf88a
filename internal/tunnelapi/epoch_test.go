package tunnelapi

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

func TestEpochTimeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		out  string
	}{
		{"1795770000", time.Unix(1795770000, 0), "1795770000"},
		{"1795770000.123", time.Unix(1795770000, 123e6), "1795770000.123"},
		{"1795770000.000001", time.Unix(1795770000, 1000), "1795770000.000001"},
		{"1.795770000123E9", time.Unix(1795770000, 123e6), "1795770000.123"},
	} {
		var e EpochTime
		if err := json.Unmarshal([]byte(tc.in), &e); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got := time.Time(e); !got.Equal(tc.want) {
			t.Errorf("%s decoded as %v, want %v", tc.in, got, tc.want)
		}
		b, _ := json.Marshal(e)
		if string(b) != tc.out {
			t.Errorf("%s encoded as %s, want %s", tc.in, b, tc.out)
		}
	}
	var e EpochTime
	if err := json.Unmarshal([]byte(`"yesterday"`), &e); err == nil {
		t.Error("a string decoded as epoch seconds")
	}
}

// Whole milliseconds encode as the float formatting the server used before
// it shared this type, before the epoch too.
func TestEpochTimeMillis(t *testing.T) {
	for _, ms := range []int64{0, 1, -1, 999, -999, 1000, -1000, -1500, -1501, 1700000000123, -1700000000123, 253402300799999} {
		b, err := json.Marshal(EpochTime(time.UnixMilli(ms)))
		if want := strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64); err != nil || string(b) != want {
			t.Errorf("%d ms encoded as %s, %v; want %s", ms, b, err, want)
		}
	}
}
