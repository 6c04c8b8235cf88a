package api

import (
	"encoding/json"
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
