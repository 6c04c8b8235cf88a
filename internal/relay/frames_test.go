package relay

import (
	"bytes"
	"encoding/hex"
	"github.com/warrentunnel/warren/internal/framepool"
	"testing"
	"unicode/utf8"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/wire"
)

func TestCheckFrame(t *testing.T) {
	services := []string{"SSH", "HTTP"}
	src, dst := tunnel.ModeSource, tunnel.ModeDestination
	tests := []struct {
		name string
		mode tunnel.Mode
		m    wire.Message
		ok   bool
	}{
		{"data", dst, wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("x")}, true},
		{"data without service (V1)", src, wire.Message{Type: wire.TypeData, StreamID: 1, Payload: []byte("x")}, true},
		{"stream start", src, wire.Message{Type: wire.TypeStreamStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1}, true},
		{"connection start", src, wire.Message{Type: wire.TypeConnectionStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2}, true},
		{"stream reset from destination", dst, wire.Message{Type: wire.TypeStreamReset, StreamID: 1, ServiceID: "HTTP"}, true},
		{"connection reset from destination", dst, wire.Message{Type: wire.TypeConnectionReset, StreamID: 1, ServiceID: "HTTP", ConnectionID: 1}, true},
		{"negative stream id", src, wire.Message{Type: wire.TypeStreamStart, StreamID: -5}, true},

		{"stream start from destination", dst, wire.Message{Type: wire.TypeStreamStart, StreamID: 1, ServiceID: "HTTP"}, false},
		{"connection start from destination", dst, wire.Message{Type: wire.TypeConnectionStart, StreamID: 1, ServiceID: "HTTP", ConnectionID: 2}, false},
		{"session reset", src, wire.Message{Type: wire.TypeSessionReset}, false},
		{"service ids", dst, wire.Message{Type: wire.TypeServiceIDs, AvailableServiceIDs: []string{"SSH"}}, false},
		{"unknown type", src, wire.Message{Type: wire.TypeUnknown, StreamID: 1}, false},
		{"undefined type", src, wire.Message{Type: 8, StreamID: 1}, false},
		{"undefined type marked ignorable", dst, wire.Message{Type: 8, Ignorable: true}, true},
		{"unknown type marked ignorable", src, wire.Message{Type: wire.TypeUnknown, Ignorable: true}, false},
		{"data on stream 0", src, wire.Message{Type: wire.TypeData, Payload: []byte("x")}, false},
		{"stream start on stream 0", src, wire.Message{Type: wire.TypeStreamStart, ServiceID: "SSH"}, false},
		{"stream reset on stream 0", dst, wire.Message{Type: wire.TypeStreamReset, ServiceID: "SSH"}, false},
		{"connection start on stream 0", src, wire.Message{Type: wire.TypeConnectionStart, ServiceID: "SSH", ConnectionID: 2}, false},
		{"connection reset on stream 0", dst, wire.Message{Type: wire.TypeConnectionReset, ServiceID: "SSH", ConnectionID: 2}, false},
		{"unknown service", src, wire.Message{Type: wire.TypeStreamStart, StreamID: 1, ServiceID: "RDP"}, false},
		{"service case differs", dst, wire.Message{Type: wire.TypeData, StreamID: 1, ServiceID: "ssh"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := checkFrame(&tt.m, tt.mode, services)
			if (v == nil) != tt.ok {
				t.Fatalf("checkFrame = %v, want ok=%v", v, tt.ok)
			}
			if v != nil && (v.code == 0 || v.reason == "") {
				t.Fatalf("violation without code or reason: %+v", v)
			}
		})
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Relay-originated frames are exactly the bytes the official proxy was
// shown to accept (captures README).
func TestRelayFrames(t *testing.T) {
	check := func(name string, f *framepool.Buf, want []byte) {
		t.Helper()
		if !bytes.Equal(f.B, want) {
			t.Errorf("%s = % x, want % x", name, f.B, want)
		}
		f.Free()
	}
	check("SERVICE_IDS [HTTP]", serviceIDsFrame([]string{"HTTP"}), mustHex("00080805320448545450"))
	check("SERVICE_IDS [ECHO HTTP]", serviceIDsFrame([]string{"ECHO", "HTTP"}), mustHex("000e080532044543484f320448545450"))
	check("STREAM_RESET", streamResetFrame(activeStream{"HTTP", 1}), mustHex("000a080310012a0448545450"))
	check("V1 STREAM_RESET", streamResetFrame(activeStream{"", 1}), mustHex("000408031001"))
}

func TestEncodeFor(t *testing.T) {
	start := mustHex("000c080210012a04485454503801") // STREAM_START conn 1 (capture a)
	var m wire.Message
	if err := wire.Unmarshal(start[2:], &m); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		version int
		want    []byte
	}{{3, start}, {2, mustHex("000a080210012a0448545450")}, {1, start}} {
		f := framepool.Get(len(start))
		f.B = append(f.Mem[:0], start...)
		got := encodeFor(c.version, f, &m)
		if !bytes.Equal(got.B, c.want) {
			t.Errorf("toward %d.0: % x, want % x", c.version, got.B, c.want)
		}
		got.Free()
	}
}

func TestTrackStreams(t *testing.T) {
	ts := &tunnelState{}
	ts.track(&wire.Message{Type: wire.TypeStreamStart, StreamID: 1, ServiceID: "A", ConnectionID: 1}, 0)
	ts.track(&wire.Message{Type: wire.TypeStreamStart, StreamID: 1, ServiceID: "B", ConnectionID: 1}, 0)
	ts.track(&wire.Message{Type: wire.TypeConnectionStart, StreamID: 1, ServiceID: "A", ConnectionID: 2}, 0)
	ts.track(&wire.Message{Type: wire.TypeStreamStart, StreamID: 2, ServiceID: "A", ConnectionID: 3}, 0)
	ts.track(&wire.Message{Type: wire.TypeStreamReset, StreamID: 1, ServiceID: "A"}, 0) // stale: ignored
	ts.track(&wire.Message{Type: wire.TypeStreamReset, StreamID: 1, ServiceID: "B"}, 0)
	want := activeStream{"A", 2}
	if len(ts.services) != 1 || ts.services[0].activeStream != want || ts.services[0].conns != nil || ts.live != 0 {
		t.Fatalf("services = %v, live %d; want only %v and no connections counted without a limit", ts.services, ts.live, want)
	}
}

func TestTruncateUTF8(t *testing.T) {
	s := "service \"ÄÖÜ\" " + string(make([]byte, 200))
	got := truncateUTF8(s, 10)
	if len(got) > 10 || !utf8.ValidString(got) {
		t.Fatalf("%q", got)
	}
	if truncateUTF8("short", maxCloseText) != "short" {
		t.Fatal("short text changed")
	}
}
