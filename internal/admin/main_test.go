package admin

import (
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// testZone is the local zone for every test: output timestamps are local
// time, and a non-UTC offset shows the offset is written.
var testZone = time.FixedZone("IST", 5*3600+30*60)

func TestMain(m *testing.M) {
	time.Local = testZone
	goleak.VerifyTestMain(m)
	os.Exit(0) // not reached: VerifyTestMain exits
}
