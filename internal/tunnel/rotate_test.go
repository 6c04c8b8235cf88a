package tunnel

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestRotate(t *testing.T) {
	now := time.Now()
	const ct = "0123456789abcdef0123456789abcdef"
	open := func(p OpenParams) (Tunnel, Tokens) {
		tu, tok, err := New("1", "us-east-1", p, now)
		if err != nil {
			t.Fatal(err)
		}
		return tu, tok
	}
	withDest := OpenParams{ThingName: "dev", Services: []string{"HTTP"}}

	t.Run("each mode replaces only its sides' tokens", func(t *testing.T) {
		for _, modes := range [][]Mode{{ModeSource}, {ModeDestination}, {ModeSource, ModeDestination}} {
			tu, old := open(withDest)
			if err := Admit(&tu, ModeSource, HashToken(old.Source), "", now); err != nil {
				t.Fatal(err)
			}
			if err := Admit(&tu, ModeDestination, HashToken(old.Destination), ct, now); err != nil {
				t.Fatal(err)
			}
			tok, err := Rotate(&tu, modes, nil, now)
			if err != nil {
				t.Fatalf("%v: %v", modes, err)
			}
			src, dst := slices.Contains(modes, ModeSource), slices.Contains(modes, ModeDestination)
			if (tok.Source != "") != src || (tok.Destination != "") != dst {
				t.Fatalf("%v: tokens %+v", modes, tok)
			}
			for _, c := range []struct {
				mode    Mode
				rotated bool
				old     string
				new     string
			}{{ModeSource, src, old.Source, tok.Source}, {ModeDestination, dst, old.Destination, tok.Destination}} {
				side := tu.Side(c.mode)
				if !c.rotated {
					if !side.Connected || string(side.TokenHash) != string(HashToken(c.old)) {
						t.Fatalf("%v: side %s changed: %+v", modes, c.mode, side)
					}
					continue
				}
				if side.Connected || side.Spent || side.ClientTokenHash != nil {
					t.Fatalf("%v: side %s not reset: %+v", modes, c.mode, side)
				}
				if err := Admit(&tu, c.mode, HashToken(c.old), ct, now); !errors.Is(err, ErrNotFound) {
					t.Fatalf("%v: old %s token: %v", modes, c.mode, err)
				}
				if err := Admit(&tu, c.mode, HashToken(c.new), "", now); err != nil {
					t.Fatalf("%v: new %s token: %v", modes, c.mode, err)
				}
			}
		}
	})
	t.Run("destination config", func(t *testing.T) {
		bare, _ := open(OpenParams{})
		if _, err := Rotate(&bare, []Mode{ModeDestination}, nil, now); !errors.Is(err, ErrInvalid) {
			t.Fatalf("destination of a tunnel without config, no config: %v", err)
		}
		if _, err := Rotate(&bare, []Mode{ModeSource}, &Destination{Services: []string{"SSH"}}, now); !errors.Is(err, ErrInvalid) {
			t.Fatalf("config with SOURCE: %v", err)
		}
		if _, err := Rotate(&bare, []Mode{ModeDestination}, &Destination{}, now); !errors.Is(err, ErrInvalid) {
			t.Fatalf("config without services: %v", err)
		}
		if _, err := Rotate(&bare, []Mode{ModeSource}, nil, now); err != nil {
			t.Fatalf("source of a tunnel without config: %v", err)
		}
		tok, err := Rotate(&bare, []Mode{ModeSource, ModeDestination}, &Destination{ThingName: "dev", Services: []string{"SSH", "HTTP"}}, now)
		if err != nil {
			t.Fatal(err)
		}
		if bare.ThingName != "dev" || !slices.Equal(bare.Services, []string{"SSH", "HTTP"}) {
			t.Fatalf("config %q %v", bare.ThingName, bare.Services)
		}
		if err := Admit(&bare, ModeDestination, HashToken(tok.Destination), "", now); err != nil {
			t.Fatal(err)
		}
		// A new config replaces the old one; a thing may go.
		if _, err := Rotate(&bare, []Mode{ModeDestination}, &Destination{Services: []string{"VNC"}}, now); err != nil {
			t.Fatal(err)
		}
		if bare.ThingName != "" || !slices.Equal(bare.Services, []string{"VNC"}) {
			t.Fatalf("config %q %v", bare.ThingName, bare.Services)
		}
	})
	t.Run("closed and expired", func(t *testing.T) {
		tu, _ := open(withDest)
		if _, err := Rotate(&tu, []Mode{ModeSource}, nil, now.Add(13*time.Hour)); !errors.Is(err, ErrClosed) {
			t.Fatalf("expired: %v", err)
		}
		tu.Close(now)
		if _, err := Rotate(&tu, []Mode{ModeSource}, nil, now); !errors.Is(err, ErrClosed) {
			t.Fatalf("closed: %v", err)
		}
	})
}

func TestAdmitWithoutDestination(t *testing.T) {
	now := time.Now()
	tu, tok, err := New("1", "us-east-1", OpenParams{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := Admit(&tu, ModeSource, HashToken(tok.Source), "", now); !errors.Is(err, ErrNoDestination) {
		t.Fatalf("source: %v", err)
	}
	if err := Admit(&tu, ModeDestination, HashToken(tok.Destination), "", now); !errors.Is(err, ErrNoDestination) {
		t.Fatalf("destination: %v", err)
	}
	if err := Admit(&tu, ModeSource, HashToken("nope"), "", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	if tu.Source.Spent || tu.Destination.Spent {
		t.Fatal("a refused handshake spent a token")
	}
}
