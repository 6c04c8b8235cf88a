package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testCertID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// certificatesAPI answers the device identity operations with fixed JSON.
func certificatesAPI(r recorded, _ int) reply {
	switch {
	case r.Method == "POST" && r.Path == "/keys-and-certificate":
		return reply{body: `{"certificateArn":"arn:aws:iot:eu-central-1:123456789012:cert/` + testCertID + `","certificateId":"` + testCertID +
			`","certificatePem":"CERT\n","keyPair":{"PublicKey":"PUB\n","PrivateKey":"PRIV\n"}}`}
	case r.Method == "PUT" && r.Path == "/certificates/"+testCertID:
		return reply{body: `{}`}
	case r.Path == "/things/dev/principals" && (r.Method == "PUT" || r.Method == "DELETE"):
		return reply{body: `{}`}
	case r.Method == "GET" && r.Path == "/things/dev/principals":
		return reply{body: `{"principals":["arn:aws:iot:eu-central-1:123456789012:cert/` + testCertID + `"]}`}
	case r.Method == "GET" && r.Path == "/endpoint":
		return reply{body: `{"endpointAddress":"broker.example:8883"}`}
	}
	return reply{status: 404, header: map[string]string{"X-Amzn-ErrorType": "ResourceNotFoundException"}, body: `{"message":"no"}`}
}

// The device identity commands send the iot REST requests the AWS CLI
// sends, print its output, and write the key files.
func TestRunCertificateCommands(t *testing.T) {
	isolateAWSEnv(t)
	setTestCreds(t)
	svc := newFakeService(t, certificatesAPI)
	ep := "--endpoint-url=" + svc.URL
	dir := t.TempDir()
	certFile, pubFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "pub.pem"), filepath.Join(dir, "k.pem")

	out := mustRun(t, "create-keys-and-certificate", ep, "--set-as-active",
		"--certificate-pem-outfile", certFile, "--public-key-outfile", pubFile, "--private-key-outfile", keyFile)
	if want := `{
    "certificateArn": "arn:aws:iot:eu-central-1:123456789012:cert/` + testCertID + `",
    "certificateId": "` + testCertID + `",
    "certificatePem": "CERT\n",
    "keyPair": {
        "PublicKey": "PUB\n",
        "PrivateKey": "PRIV\n"
    }
}
`; out != want {
		t.Errorf("create-keys-and-certificate output:\n%s\nwant:\n%s", out, want)
	}
	for f, want := range map[string]string{certFile: "CERT\n", pubFile: "PUB\n", keyFile: "PRIV\n"} {
		if b, err := os.ReadFile(f); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", f, b, err)
		}
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key file mode %v", fi.Mode().Perm())
	}
	arn := "arn:aws:iot:eu-central-1:123456789012:cert/" + testCertID
	if out := mustRun(t, "attach-thing-principal", ep, "--thing-name", "dev", "--principal", arn); out != "" {
		t.Errorf("attach-thing-principal printed %q", out)
	}
	mustRun(t, "detach-thing-principal", ep, "--thing-name", "dev", "--principal", arn)
	if out := mustRun(t, "list-thing-principals", ep, "--thing-name", "dev"); !strings.Contains(out, `"principals": [`+"\n        \""+arn) {
		t.Errorf("list-thing-principals output:\n%s", out)
	}
	mustRun(t, "update-certificate", ep, "--certificate-id", testCertID, "--new-status", "REVOKED")
	if out := mustRun(t, "describe-endpoint", ep, "--endpoint-type", "iot:Data-ATS"); out != "{\n    \"endpointAddress\": \"broker.example:8883\"\n}\n" {
		t.Errorf("describe-endpoint output %q", out)
	}
	want := []string{
		"POST /keys-and-certificate setAsActive=true",
		"PUT /things/dev/principals ",
		"DELETE /things/dev/principals ",
		"GET /things/dev/principals ",
		"PUT /certificates/" + testCertID + " newStatus=REVOKED",
		"GET /endpoint endpointType=iot%3AData-ATS",
	}
	got := svc.recorded()
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d", len(got), len(want))
	}
	for i, r := range got {
		if s := r.Method + " " + r.Path + " " + r.RawQuery; s != want[i] {
			t.Errorf("request %d: %q, want %q", i, s, want[i])
		}
	}
	checkSigned(t, svc)

	// A missing required flag is a usage error, before any request.
	if _, stderr, code := run(t, "attach-thing-principal", ep, "--thing-name", "dev"); code != exitUsage || !strings.Contains(stderr, "--principal") {
		t.Errorf("missing --principal: exit %d, %q", code, stderr)
	}
}
