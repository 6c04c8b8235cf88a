package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// describe writes the bytes it wrote before the response shapes moved to
// tunnelapi: every member of a full tunnel, and the members a bare one has.
func TestDescribeWire(t *testing.T) {
	at := time.Unix(1795770000, 123456789)
	for _, tc := range []struct {
		in   tunnel.Tunnel
		want string
	}{
		{tunnel.Tunnel{
			ID: "t-1", ARN: "arn:aws:iot:us-east-1:123456789012:tunnel/t-1", Description: "d",
			ThingName: "thing", Services: []string{"SSH", "HTTP"}, Tags: []tunnel.Tag{{Key: "k", Value: ""}},
			Status: tunnel.StatusOpen, LifetimeMinutes: 720, CreatedAt: at, LastUpdatedAt: at.Add(1500 * time.Millisecond),
			Source: tunnel.Side{Connected: true, LastUpdatedAt: at}, Destination: tunnel.Side{LastUpdatedAt: time.Unix(-2, 1e6)},
		}, `{"tunnelId":"t-1","tunnelArn":"arn:aws:iot:us-east-1:123456789012:tunnel/t-1","status":"OPEN","sourceConnectionState":{"status":"CONNECTED","lastUpdatedAt":1795770000.123},"destinationConnectionState":{"status":"DISCONNECTED","lastUpdatedAt":-1.999},"description":"d","destinationConfig":{"thingName":"thing","services":["SSH","HTTP"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":720},"tags":[{"key":"k","value":""}],"createdAt":1795770000.123,"lastUpdatedAt":1795770001.623}`},
		{tunnel.Tunnel{ID: "t-2", ARN: "a", Status: tunnel.StatusClosed, Tags: []tunnel.Tag{}, Services: []string{"SSH"}}, `{"tunnelId":"t-2","tunnelArn":"a","status":"CLOSED","sourceConnectionState":{"status":"DISCONNECTED","lastUpdatedAt":-62135596800},"destinationConnectionState":{"status":"DISCONNECTED","lastUpdatedAt":-62135596800},"destinationConfig":{"services":["SSH"]},"timeoutConfig":{"maxLifetimeTimeoutMinutes":0},"createdAt":-62135596800,"lastUpdatedAt":-62135596800}`},
	} {
		b, err := json.Marshal(describe(tc.in))
		if err != nil || string(b) != tc.want {
			t.Errorf("describe = %s, %v;\nwant %s", b, err, tc.want)
		}
	}
}
