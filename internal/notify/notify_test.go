package notify

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// flakySender fails its first `fail` publications, then records them.
type flakySender struct {
	mu    sync.Mutex
	fail  int
	calls int
	got   []string // topic + " " + payload
	block chan struct{}
}

func (f *flakySender) Publish(ctx context.Context, topic string, payload []byte) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fail {
		return errors.New("broker down")
	}
	f.got = append(f.got, topic+" "+string(payload))
	return nil
}

func (f *flakySender) published() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func TestNotificationShape(t *testing.T) {
	b, err := json.Marshal(Notification{ClientAccessToken: "tok", ClientMode: ModeDestination, Region: "eu-west-1", Services: []string{"SSH"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"clientAccessToken":"tok","clientMode":"destination","region":"eu-west-1","services":["SSH"]}`; string(b) != want {
		t.Fatalf("%s, want %s", b, want)
	}
	if got := Topic("dev-1"); got != "$aws/things/dev-1/tunnels/notify" {
		t.Fatal(got)
	}
}

// A publication that fails is retried until it succeeds, within Attempts.
func TestPublisherRetries(t *testing.T) {
	s := &flakySender{fail: 2}
	p := New(Config{Sender: s, Backoff: time.Millisecond, Attempts: 3})
	defer p.Close()
	p.Notify(context.Background(), "dev", Notification{ClientAccessToken: "t", ClientMode: ModeDestination})
	deadline := time.Now().Add(10 * time.Second)
	for len(s.published()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := s.published()
	if len(got) != 1 || got[0] != `$aws/things/dev/tunnels/notify {"clientAccessToken":"t","clientMode":"destination","region":"","services":null}` {
		t.Fatalf("published %q", got)
	}
}

// Past Attempts a notification is given up, and the next one goes out.
func TestPublisherGivesUp(t *testing.T) {
	s := &flakySender{fail: 2}
	p := New(Config{Sender: s, Backoff: time.Millisecond, Attempts: 2})
	defer p.Close()
	p.Notify(context.Background(), "lost", Notification{})
	p.Notify(context.Background(), "kept", Notification{})
	deadline := time.Now().Add(10 * time.Second)
	for len(s.published()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.published(); len(got) != 1 || got[0][:len("$aws/things/kept/")] != "$aws/things/kept/" {
		t.Fatalf("published %q", got)
	}
}

// Notify never blocks: with the sender stuck, the queue fills and the rest
// is dropped; Close returns promptly all the same.
func TestPublisherNeverBlocks(t *testing.T) {
	s := &flakySender{block: make(chan struct{})}
	p := New(Config{Sender: s, QueueSize: 2, AttemptTimeout: time.Hour})
	start := time.Now()
	for range 100 {
		p.Notify(context.Background(), "dev", Notification{})
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("100 Notify calls took %v", took)
	}
	start = time.Now()
	p.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v", took)
	}
	p.Notify(context.Background(), "dev", Notification{}) // after Close: dropped, no panic
	if n := len(s.published()); n != 0 {
		t.Fatalf("%d published through a blocked sender", n)
	}
}

func TestParseBrokerURL(t *testing.T) {
	for _, c := range []struct{ in, url, user, pass, err string }{
		{in: "mqtt://127.0.0.1", url: "mqtt://127.0.0.1:1883"},
		{in: "mqtt://u:p@broker:1884", url: "mqtt://broker:1884", user: "u", pass: "p"},
		{in: "mqtts://broker", url: "mqtts://broker:8883"},
		{in: "tcp://broker:1", url: "mqtt://broker:1"},
		{in: "http://broker", err: "scheme"},
		{in: "mqtt://", err: "want"},
		{in: "mqtt://u:secret@broker/topic", err: "want"},
	} {
		u, user, pass, err := ParseBrokerURL(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: error %v, want one about %q without the password", c.in, err, c.err)
			}
			continue
		}
		if err != nil || u.String() != c.url || user != c.user || pass != c.pass {
			t.Errorf("%s: %v %q %q %v", c.in, u, user, pass, err)
		}
	}
}
