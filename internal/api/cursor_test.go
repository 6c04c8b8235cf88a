package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/iot"
	"github.com/aws/aws-sdk-go/service/iotsecuretunneling"

	"github.com/warrentunnel/warren/internal/tunnel"
)

func TestCursorRoundTrip(t *testing.T) {
	c := newCursors(testCursorKey)
	pos := tunnel.Position{CreatedAt: time.Unix(1795770000, 123456789).UTC(), ID: "b2de92a3-b8ff-46c0-b0f2-afa28b00cecd"}
	tok := c.encode("tunnel", encodePosition(pos))
	if !nextTokenPattern.MatchString(tok) || len(tok) > maxNextToken {
		t.Fatalf("token %q does not fit the model's NextToken", tok)
	}
	b, ok := c.decode("tunnel", tok)
	got, okPos := decodePosition(b, tunnel.ValidTunnelID)
	if !ok || !okPos || got != pos {
		t.Fatalf("decoded %v (%v %v), want %v", got, ok, okPos, pos)
	}
	// Padded base64 is the same token.
	if _, ok := c.decode("tunnel", tok+"=="); !ok {
		t.Error("padded token refused")
	}
}

func TestCursorTamperRefused(t *testing.T) {
	c := newCursors(testCursorKey)
	pos := encodePosition(tunnel.Position{CreatedAt: time.Unix(1795770000, 0), ID: "b2de92a3-b8ff-46c0-b0f2-afa28b00cecd"})
	tok := c.encode("tunnel", pos)
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	bad := map[string]string{
		"empty":          "",
		"not base64url":  "!!",
		"too short":      tok[:10],
		"other listing":  c.encode("thing", pos),
		"other key":      newCursors([]byte("another key of thirty-two bytes!")).encode("tunnel", pos),
		"too long":       strings.Repeat("A", maxNextToken+1),
		"truncated":      tok[:len(tok)-1],
		"extra byte":     base64.RawURLEncoding.EncodeToString(append(append([]byte(nil), raw...), 0)),
		"unsigned plain": base64.RawURLEncoding.EncodeToString(pos),
	}
	// Every single changed byte, in the position and in the MAC.
	for i := range raw {
		m := append([]byte(nil), raw...)
		m[i] ^= 0x01
		bad["byte "+string(rune('0'+i%10))+"/"+string(rune('a'+i/10))] = base64.RawURLEncoding.EncodeToString(m)
	}
	for name, tok := range bad {
		if _, ok := c.decode("tunnel", tok); ok {
			t.Errorf("%s: token %q accepted", name, tok)
		}
	}
}

// The usual clean-up loop: list a page, close and delete each of its
// tunnels, ask for the next page with the nextToken of the page before. It
// works, the pages come newest first, and every tunnel is deleted once.
func TestListTunnelsCleanupLoop(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 250
	created := map[string]bool{}
	for i := range n {
		// Threes share a creation time, so ids break ties too.
		tu, _, err := tunnel.New(f.acct.ID, testRegion, tunnel.OpenParams{Services: []string{"SSH"}}, f.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := f.store.CreateTunnel(ctx, tu); err != nil {
			t.Fatal(err)
		}
		created[tu.ID] = true
		if i%3 == 2 {
			f.clock.Advance(time.Millisecond)
		}
	}
	api := f.tunnels(f.acct)
	deleted := 0
	pages := 0
	var token *string
	var last *iotsecuretunneling.TunnelSummary
	for {
		p, err := api.ListTunnels(&iotsecuretunneling.ListTunnelsInput{MaxResults: aws.Int64(100), NextToken: token})
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		for _, s := range p.TunnelSummaries {
			id := aws.StringValue(s.TunnelId)
			if !created[id] {
				t.Fatalf("tunnel %s listed twice or never created", id)
			}
			if last != nil && aws.TimeValue(s.CreatedAt).After(aws.TimeValue(last.CreatedAt)) {
				t.Fatalf("tunnel %s is newer than the one before it", id)
			}
			last = s
			delete(created, id)
			if _, err := api.CloseTunnel(&iotsecuretunneling.CloseTunnelInput{TunnelId: s.TunnelId, Delete: aws.Bool(true)}); err != nil {
				t.Fatal(err)
			}
			deleted++
		}
		if token = p.NextToken; token == nil {
			break
		}
	}
	if deleted != n || pages != 3 || len(created) != 0 {
		t.Fatalf("deleted %d in %d pages, %d left; want %d in 3", deleted, pages, len(created), n)
	}
	if left, err := f.store.Tunnels(ctx, f.acct.ID, "", tunnel.Position{}, 10); err != nil || len(left) != 0 {
		t.Fatalf("%d tunnels left, %v", len(left), err)
	}
}

func TestListTunnelsTamperedToken(t *testing.T) {
	f := newFixture(t)
	f.openTunnel(f.acct, "", "SSH")
	f.clock.Advance(time.Millisecond)
	f.openTunnel(f.acct, "", "SSH")
	p, err := f.tunnels(f.acct).ListTunnels(&iotsecuretunneling.ListTunnelsInput{MaxResults: aws.Int64(1)})
	if err != nil || p.NextToken == nil {
		t.Fatalf("first page: %v, %v", p, err)
	}
	tok := []byte(aws.StringValue(p.NextToken))
	if tok[3] == 'A' { // another base64url letter
		tok[3] = 'B'
	} else {
		tok[3] = 'A'
	}
	r := f.callJSON(t, "ListTunnels", `{"nextToken":"`+string(tok)+`"}`)
	wantError(t, r, http.StatusBadRequest, codeValidation)
	if !strings.Contains(r.Message, "nextToken") {
		t.Errorf("message %q does not name nextToken", r.Message)
	}
}

// ListThings continues by name, so deleting the previous page's things does
// not break the next page; a changed token is InvalidRequestException there,
// as the iot API names bad input.
func TestListThingsCleanupLoop(t *testing.T) {
	f := newFixture(t)
	for i := range 7 {
		f.createThing(f.acct, fmt.Sprintf("dev-%d", i))
	}
	c := f.iotV1(f.acct)
	deleted := 0
	var token *string
	for {
		p, err := c.ListThings(&iot.ListThingsInput{MaxResults: aws.Int64(3), NextToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, th := range p.Things {
			if _, err := c.DeleteThing(&iot.DeleteThingInput{ThingName: th.ThingName}); err != nil {
				t.Fatal(err)
			}
			deleted++
		}
		if token = p.NextToken; token == nil {
			break
		}
		bad := []byte(*token)
		bad[0] = map[bool]byte{true: 'B', false: 'A'}[bad[0] == 'A']
		_, err = c.ListThings(&iot.ListThingsInput{NextToken: aws.String(string(bad))})
		if code := awsCode(t, err); code != codeInvalidRequest {
			t.Fatalf("changed token: %v", err)
		}
	}
	if deleted != 7 {
		t.Fatalf("deleted %d things, want 7", deleted)
	}
}

// A nextToken is untrusted input: decoding never panics, and whatever is
// accepted was made with the key, so it encodes back to the same token.
func FuzzCursorDecode(f *testing.F) {
	c := newCursors(testCursorKey)
	pos := encodePosition(tunnel.Position{CreatedAt: time.Unix(1795770000, 5), ID: "b2de92a3-b8ff-46c0-b0f2-afa28b00cecd"})
	f.Add(c.encode("tunnel", pos))
	f.Add(c.encode("thing", []byte("robot-1")))
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, kind := range []string{"tunnel", "thing", "account"} {
			b, ok := c.decode(kind, tok)
			if !ok {
				continue
			}
			if again := c.encode(kind, b); strings.TrimRight(tok, "=") != again {
				t.Fatalf("accepted %q, which encodes back as %q", tok, again)
			}
			if kind == "tunnel" {
				decodePosition(b, tunnel.ValidTunnelID)
			}
		}
	})
}
