package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeviceCPUs cross-builds localproxy for arm64 and armv7 with the release
// script (static, version stamped) and runs each under qemu user emulation
// the way a device runs it: first as the destination of a tunnel, with its
// token on the command line, then as the device agent, which starts its
// destination from a notification; each time a host-side source local proxy
// fetches the device's page through it.
func TestDeviceCPUs(t *testing.T) {
	needMosquitto(t)
	const version = "e2e-qemu"
	dir := t.TempDir()
	build := exec.Command("bash", "../scripts/release.sh", version, dir, "localproxy/arm64", "localproxy/armv7")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release.sh: %v\n%s", err, out)
	}
	s := startService(t)
	for _, c := range []struct{ cpu, qemu string }{{"arm64", "qemu-aarch64-static"}, {"armv7", "qemu-arm-static"}} {
		t.Run(c.cpu, func(t *testing.T) {
			emu, err := exec.LookPath(c.qemu)
			if err != nil {
				t.Fatalf("%s not found: install Debian's qemu-user-static (.ci/run does): %v", c.qemu, err)
			}
			lp := filepath.Join(dir, "localproxy-"+version+"-linux-"+c.cpu)
			out, err := exec.Command(emu, lp, "-V").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "Warren local proxy "+version {
				t.Fatalf("%s -V under %s: %v %q", lp, c.qemu, err, out)
			}
			if out, _ := exec.Command("file", lp).CombinedOutput(); len(out) > 0 && !strings.Contains(string(out), "statically linked") {
				t.Errorf("not a static binary: %s", out)
			}

			thing := uniqueThing("qemu-" + c.cpu)
			device := httpDevice(t, "hello from "+c.cpu)
			tun := s.openTunnel(t, thing, "HTTP")
			start(t, c.cpu+" destination localproxy", nil, emu, lp,
				"-e", s.addr, "-c", filepath.Join(s.dir, "ca.pem"), "-d", "HTTP="+device, "-t", tun.DestinationAccessToken)
			s.destinationConnected(t, tun.TunnelID, "CONNECTED")
			port := freePort(t)
			s.localproxy(t, "source localproxy", "-s", fmt.Sprintf("HTTP=%d", port), "-t", tun.SourceAccessToken)
			waitPort(t, port)
			if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/dst", port)); got != "hello from "+c.cpu+" /dst" {
				t.Fatalf("through the %s destination: %q", c.cpu, got)
			}

			tun2 := s.openMore(t, thing, "HTTP")
			agent := startAgent(t, s, "mqtt://"+mosquittoAddr, thing, []string{emu, lp}, "-d", "HTTP="+device)
			notify(t, mosquittoAddr, thing, tun2.DestinationAccessToken, "HTTP")
			s.destinationConnected(t, tun2.TunnelID, "CONNECTED")
			port2 := freePort(t)
			s.localproxy(t, "source localproxy 2", "-s", fmt.Sprintf("HTTP=%d", port2), "-t", tun2.SourceAccessToken)
			waitPort(t, port2)
			if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/agent", port2)); got != "hello from "+c.cpu+" /agent" {
				t.Fatalf("through the %s agent's destination: %q", c.cpu, got)
			}
			agent.stop()
			if !strings.Contains(agent.output(), "device agent stopped") {
				t.Fatalf("the %s agent did not stop cleanly:\n%s", c.cpu, agent.output())
			}
		})
	}
}
