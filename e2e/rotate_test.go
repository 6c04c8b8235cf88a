package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"
)

type rotateOut struct {
	TunnelArn              string `json:"tunnelArn"`
	SourceAccessToken      string `json:"sourceAccessToken"`
	DestinationAccessToken string `json:"destinationAccessToken"`
}

// rotation is a tunnel with both Warren local proxies connected, whose
// tokens the tests rotate.
type rotation struct {
	s        *service
	tun      openTunnelOut
	device   string
	port     int // the source proxy's listening port
	src, dst *proc
}

func newRotation(t *testing.T, s *service, thing string) *rotation {
	t.Helper()
	device := httpDevice(t, "hello from "+thing)
	tun, ports, src, dst := s.tunnelPair(t, thing, []string{"HTTP"}, []string{device})
	r := &rotation{s: s, tun: tun, device: device, port: ports[0], src: src, dst: dst}
	r.get(t)
	return r
}

func (r *rotation) get(t *testing.T) {
	t.Helper()
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/x", r.port)); !strings.HasSuffix(got, " /x") {
		t.Fatalf("through the tunnel: %q", got)
	}
}

// hold opens a keep-alive HTTP connection through the tunnel and answers
// one request on it; the returned channel yields once the connection ends.
func (r *rotation) hold(t *testing.T) <-chan error {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprint(c, "GET /held HTTP/1.1\r\nHost: device\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("held connection: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	ended := make(chan error, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := br.ReadByte()
		ended <- err
	}()
	return ended
}

// rotated checks what a rotation of mode did: only the rotated sides'
// tokens came back, their local proxies exited (they got a close frame: a
// dropped connection would have made them reconnect), the other's kept
// running, and a connection through the tunnel was ended. It then checks
// the old tokens are refused, starts local proxies with the new ones and
// gets a page through the tunnel again.
func (r *rotation) rotated(t *testing.T, mode string, out rotateOut, held <-chan error) {
	t.Helper()
	src, dst := mode != "DESTINATION", mode != "SOURCE"
	if out.TunnelArn != r.tun.TunnelArn || (out.SourceAccessToken != "") != src || (out.DestinationAccessToken != "") != dst {
		t.Fatalf("%s: rotation answered %+v", mode, out)
	}
	for _, p := range []struct {
		p       *proc
		rotated bool
	}{{r.src, src}, {r.dst, dst}} {
		if p.rotated {
			waitFor(t, 20*time.Second, p.p.name+" to exit", p.p.exited)
			if out := p.p.output(); !strings.Contains(out, "access token rotated") {
				t.Errorf("%s: %s's output does not tell why it ended:\n%s", mode, p.p.name, out)
			}
		}
	}
	select {
	case err := <-held:
		if err == nil {
			t.Fatalf("%s: the held connection got more bytes", mode)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: the held connection was not ended", mode)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: the held connection was not ended", mode)
	}
	if !src && r.src.exited() || !dst && r.dst.exited() {
		t.Fatalf("%s: the side that was not rotated exited", mode)
	}

	if src {
		old := r.s.localproxy(t, "source localproxy with the old token", "-s", fmt.Sprintf("HTTP=%d", freePort(t)), "-t", r.tun.SourceAccessToken)
		waitFor(t, 20*time.Second, "the old source token to be refused", old.exited)
		r.tun.SourceAccessToken = out.SourceAccessToken
		r.port = freePort(t)
		r.src = r.s.localproxy(t, "source localproxy", "-s", fmt.Sprintf("HTTP=%d", r.port), "-t", r.tun.SourceAccessToken)
	}
	if dst {
		old := r.s.localproxy(t, "destination localproxy with the old token", "-d", "HTTP="+r.device, "-t", r.tun.DestinationAccessToken)
		waitFor(t, 20*time.Second, "the old destination token to be refused", old.exited)
		r.tun.DestinationAccessToken = out.DestinationAccessToken
		r.dst = r.s.localproxy(t, "destination localproxy", "-d", "HTTP="+r.device, "-t", r.tun.DestinationAccessToken)
	}
	waitPort(t, r.port)
	waitFor(t, 20*time.Second, "both peers connected", func() bool {
		var d describeOut
		r.s.warren(t, &d, "describe-tunnel", "--tunnel-id", r.tun.TunnelID)
		return d.Tunnel.SourceConnectionState.Status == "CONNECTED" && d.Tunnel.DestinationConnectionState.Status == "CONNECTED"
	})
	r.get(t)
}

// Each client mode in turn while both Warren local proxies are connected:
// the rotated side is cut off for good and its old token refused, the
// other keeps running, and the new token connects.
func TestRotateAccessTokens(t *testing.T) {
	s := startService(t)
	r := newRotation(t, s, "RotatingDevice")
	for _, mode := range []string{"SOURCE", "DESTINATION", "ALL"} {
		held := r.hold(t)
		var out rotateOut
		s.warren(t, &out, "rotate-tunnel-access-token", "--tunnel-id", r.tun.TunnelID, "--client-mode", mode)
		r.rotated(t, mode, out, held)
	}
}

// The same rotation through the AWS CLIs and boto3; boto3 also opens a
// tunnel with no destination config and gives it one by rotation.
func TestRotateAccessTokensAWSClients(t *testing.T) {
	s := startService(t)
	for name, cli := range awsCLIs(t) {
		t.Run("aws-cli-"+name, func(t *testing.T) {
			r := newRotation(t, s, "CLIDevice-"+name)
			held := r.hold(t)
			var out rotateOut
			s.aws(t, cli, &out, "iotsecuretunneling", "rotate-tunnel-access-token", "--tunnel-id", r.tun.TunnelID, "--client-mode", "DESTINATION")
			r.rotated(t, "DESTINATION", out, held)
		})
	}
	t.Run("boto3", func(t *testing.T) {
		r := newRotation(t, s, "PyRotatingDevice")
		held := r.hold(t)
		script := `
import boto3, json, sys
st = boto3.client("iotsecuretunneling")
r = st.rotate_tunnel_access_token(tunnelId=sys.argv[1], clientMode="ALL")
r.pop("ResponseMetadata")
print(json.dumps(r))
`
		stdout, stderr, err := s.run("python3", "-c", script, r.tun.TunnelID)
		if err != nil {
			t.Fatalf("boto3: %v\n%s", err, stderr)
		}
		var out rotateOut
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("boto3 said %q: %v", stdout, err)
		}
		r.rotated(t, "ALL", out, held)
	})
	t.Run("go-sdk", func(t *testing.T) {
		r := newRotation(t, s, "GoRotatingDevice")
		held := r.hold(t)
		res, err := s.sdkTunnels(t).RotateTunnelAccessToken(&iotsecuretunneling.RotateTunnelAccessTokenInput{
			TunnelId: aws.String(r.tun.TunnelID), ClientMode: aws.String("SOURCE")})
		if err != nil {
			t.Fatal(err)
		}
		r.rotated(t, "SOURCE", rotateOut{TunnelArn: aws.StringValue(res.TunnelArn),
			SourceAccessToken: aws.StringValue(res.SourceAccessToken), DestinationAccessToken: aws.StringValue(res.DestinationAccessToken)}, held)
	})
	t.Run("boto3 open without destination", func(t *testing.T) {
		script := `
import boto3, json
st = boto3.client("iotsecuretunneling")
t = st.open_tunnel()
d = st.describe_tunnel(tunnelId=t["tunnelId"])["tunnel"]
r = st.rotate_tunnel_access_token(tunnelId=t["tunnelId"], clientMode="DESTINATION",
    destinationConfig={"services": ["HTTP"]})
d2 = st.describe_tunnel(tunnelId=t["tunnelId"])["tunnel"]
print(json.dumps({"tunnel": t["tunnelId"], "source": t["sourceAccessToken"], "destination": r["destinationAccessToken"],
    "before": "destinationConfig" in d, "after": d2["destinationConfig"]["services"]}))
`
		stdout, stderr, err := s.run("python3", "-c", script)
		if err != nil {
			t.Fatalf("boto3: %v\n%s", err, stderr)
		}
		var got struct {
			Tunnel, Source, Destination string
			Before                      bool
			After                       []string
		}
		if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Before || strings.Join(got.After, ",") != "HTTP" {
			t.Fatalf("boto3 said %q (%v)", stdout, err)
		}
		device := httpDevice(t, "configured later")
		port := freePort(t)
		s.localproxy(t, "destination localproxy", "-d", "HTTP="+device, "-t", got.Destination)
		s.localproxy(t, "source localproxy", "-s", fmt.Sprintf("HTTP=%d", port), "-t", got.Source)
		waitPort(t, port)
		// The source listens as soon as it is connected; a request before
		// the destination is connected too would be reset.
		waitFor(t, 20*time.Second, "both peers connected", func() bool {
			var d describeOut
			s.warren(t, &d, "describe-tunnel", "--tunnel-id", got.Tunnel)
			return d.Tunnel.SourceConnectionState.Status == "CONNECTED" && d.Tunnel.DestinationConnectionState.Status == "CONNECTED"
		})
		if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/late", port)); body != "configured later /late" {
			t.Fatalf("through the tunnel: %q", body)
		}
	})
}
