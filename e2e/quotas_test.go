package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The server's quotas through the real binaries: `warren open-tunnel`
// past --max-tunnels-per-account fails with LimitExceededException until
// a tunnel closes, and past --max-connections-per-tunnel the source local
// proxy's extra client is closed at once while the others keep echoing;
// once one of them ends, a new client gets through.
func TestQuotas(t *testing.T) {
	s := startService(t, "--max-tunnels-per-account", "2", "--max-connections-per-tunnel", "3")
	echo := echoDevice(t)
	first, ports, _, _ := s.tunnelPair(t, "echo", []string{"ECHO"}, []string{echo})
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])

	// Open tunnels.
	var second openTunnelOut
	s.warren(t, &second, "open-tunnel", "--destination-config", "thingName=echo,services=ECHO")
	stdout, stderr, err := s.run(bin.warren, "open-tunnel", "--destination-config", "thingName=echo,services=ECHO")
	if err == nil || !strings.Contains(stderr, "LimitExceededException") || !strings.Contains(stderr, "open tunnels per account on this server is 2") {
		t.Fatalf("third open-tunnel: %v\n%s%s", err, stdout, stderr)
	}
	s.warren(t, nil, "close-tunnel", "--tunnel-id", second.TunnelID)
	s.warren(t, nil, "open-tunnel", "--destination-config", "thingName=echo,services=ECHO")

	// Simultaneous connections.
	var live []*echoClient
	for i := range 3 {
		c := dialEcho(t, addr)
		if err := c.roundTrip(i); err != nil {
			t.Fatalf("client %d of 3: %v", i+1, err)
		}
		live = append(live, c)
	}
	start := time.Now()
	// The proxy resets the client as soon as the relay refuses it, which on
	// a loaded machine can come before the dial has looked at its socket.
	if extra, err := net.Dial("tcp", addr); errors.Is(err, syscall.ECONNRESET) {
		t.Log("the fourth client was reset before its dial returned")
	} else if err != nil {
		t.Fatal(err)
	} else {
		defer extra.Close()
		if err := (&echoClient{extra}).closedByProxy(5 * time.Second); err != nil {
			t.Fatalf("the fourth client: %v", err)
		}
	}
	t.Logf("the fourth client was closed %v after it connected", time.Since(start).Round(time.Millisecond))
	for round := range 3 {
		for i, c := range live {
			if err := c.roundTrip(10*round + i); err != nil {
				t.Fatalf("client %d after the refusal: %v", i+1, err)
			}
		}
	}

	// One ends; a new client fits (it may come before the proxy has seen
	// the end, so it tries again, as a user would).
	live[0].Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			c := &echoClient{nc}
			t.Cleanup(func() { c.Close() })
			if err = c.roundTrip(99); err == nil {
				live[0] = c
				break
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new client after one ended: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, c := range live {
		if err := c.roundTrip(100 + i); err != nil {
			t.Fatalf("client %d at the end: %v", i+1, err)
		}
	}
	if out := s.p.output(); !strings.Contains(out, "connection refused") || strings.Contains(out, first.SourceAccessToken) {
		t.Fatalf("the server's log lacks the refusal or shows a token:\n%s", out)
	}
}

// echoClient is a client of the echo device through the source proxy.
type echoClient struct{ net.Conn }

func dialEcho(t *testing.T, addr string) *echoClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &echoClient{c}
}

// roundTrip sends 64 KiB that say seed and reads them back.
func (c *echoClient) roundTrip(seed int) error {
	msg := bytes.Repeat([]byte(fmt.Sprintf("[%d]", seed)), 64<<10/8)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	_, rerr := io.ReadFull(c, got)
	if err := errors.Join(<-errc, rerr); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("the echo differs")
	}
	return nil
}

// closedByProxy waits at most d for the proxy to end the connection: a
// read gets end of stream (or a reset) and no byte.
func (c *echoClient) closedByProxy(d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
	c.Write([]byte("hello?"))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	switch {
	case n > 0:
		return fmt.Errorf("got %d bytes, want the connection closed", n)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("still open after %v", d)
	case err == nil:
		return errors.New("read nothing and no error")
	}
	return nil
}
