package admin

import (
	"strings"
	"testing"
)

func TestRunRotateTunnelAccessToken(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newFakeService(t, tunnelAPI)
	ep := "--endpoint-url=" + svc.URL

	out := mustRun(t, "rotate-tunnel-access-token", ep, "--tunnel-id", "t-1", "--client-mode", "DESTINATION",
		"--destination-config", "thingName=dev,services=SSH,HTTP")
	want := `{
    "tunnelArn": "arn:aws:iot:eu-central-1:123456789012:tunnel/t-1",
    "destinationAccessToken": "dst-token-2"
}
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	mustRun(t, "rotate-tunnel-access-token", ep, "--tunnel-id", "t-1", "--client-mode", "ALL",
		"--destination-config", `{"services":["SSH"]}`)
	mustRun(t, "rotate-tunnel-access-token", ep, "--tunnel-id=t-1", "--client-mode=SOURCE")

	wantBodies := []string{
		`{"tunnelId":"t-1","clientMode":"DESTINATION","destinationConfig":{"thingName":"dev","services":["SSH","HTTP"]}}`,
		`{"tunnelId":"t-1","clientMode":"ALL","destinationConfig":{"services":["SSH"]}}`,
		`{"tunnelId":"t-1","clientMode":"SOURCE"}`,
	}
	reqs := svc.recorded()
	if len(reqs) != len(wantBodies) {
		t.Fatalf("service saw %d requests, want %d", len(reqs), len(wantBodies))
	}
	for i, r := range reqs {
		if r.Target != "IoTSecuredTunneling.RotateTunnelAccessToken" {
			t.Errorf("target %q", r.Target)
		}
		jsonEqual(t, r.Target+" body", r.Body, wantBodies[i])
	}
	checkSigned(t, svc)

	// --client-mode is required, as the AWS CLI has it.
	_, stderr, code := run(t, "rotate-tunnel-access-token", ep, "--tunnel-id", "t-1")
	if code != 252 || !strings.Contains(stderr, "--client-mode") {
		t.Errorf("without --client-mode: exit %d, stderr %q", code, stderr)
	}
}
