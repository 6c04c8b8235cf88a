package tunnel

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// uuidPattern is the form of AWS's tunnel ids: a version 4 UUID, lower case.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestValidate(t *testing.T) {
	ok := OpenParams{ThingName: "RemoteDevice1", Services: []string{"HTTP", "SSH"}}
	cases := []struct {
		name string
		mut  func(p *OpenParams)
		ok   bool
	}{
		{"valid", func(p *OpenParams) {}, true},
		{"thing without services", func(p *OpenParams) { p.Services = nil }, false},
		{"no destination config", func(p *OpenParams) { p.Services, p.ThingName = nil, "" }, true},
		{"four services", func(p *OpenParams) { p.Services = []string{"A", "B", "C", "D"} }, false},
		{"bad service name", func(p *OpenParams) { p.Services = []string{"HT TP"} }, false},
		{"duplicate service", func(p *OpenParams) { p.Services = []string{"A", "A"} }, false},
		{"long service", func(p *OpenParams) { p.Services = []string{strings.Repeat("a", 129)} }, false},
		{"bad thing", func(p *OpenParams) { p.ThingName = "a/b" }, false},
		{"lifetime 721", func(p *OpenParams) { p.LifetimeMinutes = 721 }, false},
		{"lifetime 1", func(p *OpenParams) { p.LifetimeMinutes = 1 }, true},
		{"control char in description", func(p *OpenParams) { p.Description = "a\x01b" }, false},
		{"unicode description", func(p *OpenParams) { p.Description = "Gerät im Keller ✓" }, true},
		{"too long description", func(p *OpenParams) { p.Description = strings.Repeat("x", 2049) }, false},
		{"empty tag key", func(p *OpenParams) { p.Tags = []Tag{{Key: "", Value: "v"}} }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := ok
			p.Services = append([]string(nil), ok.Services...)
			c.mut(&p)
			err := p.Validate()
			if (err == nil) != c.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestNewKeepsOnlyHashes(t *testing.T) {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	tu, tok, err := New("123456789012", "eu-west-1", OpenParams{Services: []string{"HTTP"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Source == tok.Destination || len(tok.Source) < 43 {
		t.Fatalf("weak tokens: %q %q", tok.Source, tok.Destination)
	}
	if string(tu.Source.TokenHash) != string(HashToken(tok.Source)) {
		t.Fatal("source hash mismatch")
	}
	if tu.ARN != "arn:aws:iot:eu-west-1:123456789012:tunnel/"+tu.ID || !uuidPattern.MatchString(tu.ID) {
		t.Fatalf("arn %q id %q", tu.ARN, tu.ID)
	}
	if tu.LifetimeMinutes != 720 || !tu.ExpiresAt().Equal(now.Add(12*time.Hour)) {
		t.Fatalf("lifetime %d expires %v", tu.LifetimeMinutes, tu.ExpiresAt())
	}
}

func TestAdmit(t *testing.T) {
	now := time.Now()
	const ct = "0123456789abcdef0123456789abcdef"
	fresh := func() (Tunnel, Tokens) {
		tu, tok, err := New("1", "us-east-1", OpenParams{Services: []string{"HTTP"}, LifetimeMinutes: 1}, now)
		if err != nil {
			t.Fatal(err)
		}
		return tu, tok
	}
	t.Run("without client token the token is spent", func(t *testing.T) {
		tu, tok := fresh()
		if err := Admit(&tu, ModeDestination, HashToken(tok.Destination), "", now); err != nil {
			t.Fatal(err)
		}
		if !tu.Destination.Connected || !tu.Destination.Spent {
			t.Fatalf("side %+v", tu.Destination)
		}
		if err := Admit(&tu, ModeDestination, HashToken(tok.Destination), "", now); !errors.Is(err, ErrTokenSpent) {
			t.Fatalf("second use: %v", err)
		}
		if err := Admit(&tu, ModeDestination, HashToken(tok.Destination), ct, now); !errors.Is(err, ErrTokenSpent) {
			t.Fatalf("second use with a client token: %v", err)
		}
	})
	t.Run("client token allows reconnects with the same client token only", func(t *testing.T) {
		tu, tok := fresh()
		for i := 0; i < 2; i++ {
			if err := Admit(&tu, ModeSource, HashToken(tok.Source), ct, now); err != nil {
				t.Fatalf("use %d: %v", i, err)
			}
		}
		if err := Admit(&tu, ModeSource, HashToken(tok.Source), ct+"x", now); !errors.Is(err, ErrClientToken) {
			t.Fatalf("other client token: %v", err)
		}
		if err := Admit(&tu, ModeSource, HashToken(tok.Source), "", now); !errors.Is(err, ErrTokenSpent) {
			t.Fatalf("no client token: %v", err)
		}
	})
	t.Run("wrong mode and unknown token", func(t *testing.T) {
		tu, tok := fresh()
		if err := Admit(&tu, ModeSource, HashToken(tok.Destination), "", now); !errors.Is(err, ErrWrongMode) {
			t.Fatalf("wrong mode: %v", err)
		}
		if err := Admit(&tu, ModeSource, HashToken("nope"), "", now); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
	})
	t.Run("closed and expired", func(t *testing.T) {
		tu, tok := fresh()
		if err := Admit(&tu, ModeSource, HashToken(tok.Source), "", now.Add(time.Minute)); !errors.Is(err, ErrClosed) {
			t.Fatalf("expired: %v", err)
		}
		tu.Close(now)
		if err := Admit(&tu, ModeSource, HashToken(tok.Source), "", now); !errors.Is(err, ErrClosed) {
			t.Fatalf("closed: %v", err)
		}
	})
}

// Closing a tunnel disconnects both sides and leaves them held by no node,
// whether or not a peer was connected.
func TestCloseClearsNodes(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tu, _, err := New("1", "us-east-1", OpenParams{Services: []string{"HTTP"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	tu.Source.Connected, tu.Source.Node = true, "n1"
	tu.Destination.Node = "n2" // a claim left without a connection
	later := now.Add(time.Minute)
	tu.Close(later)
	if tu.Status != StatusClosed || tu.Source.Connected || tu.Source.Node != "" || tu.Destination.Node != "" {
		t.Fatalf("after Close: status %s, source %+v, destination %+v", tu.Status, tu.Source, tu.Destination)
	}
	if !tu.Source.LastUpdatedAt.Equal(later) {
		t.Fatalf("source LastUpdatedAt %v, want %v", tu.Source.LastUpdatedAt, later)
	}
}

// A side's Node is in its JSON only when set: a single server's rows keep
// the shape they had before clusters.
func TestSideNodeJSON(t *testing.T) {
	b, err := json.Marshal(Side{Connected: true})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "Node") {
		t.Fatalf("a side without a node marshals as %s", b)
	}
	b, err = json.Marshal(Side{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"Node":"n1"`) {
		t.Fatalf("a side held by n1 marshals as %s", b)
	}
	var back Side
	if err := json.Unmarshal(b, &back); err != nil || back.Node != "n1" {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}
