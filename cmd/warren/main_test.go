package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// --log-format picks the handler; anything else is refused before the
// server starts.
func TestLogFormat(t *testing.T) {
	var out bytes.Buffer
	log, err := newFormatLogger(&out, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "n", 1)
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line["msg"] != "hello" || line["n"] != 1.0 {
		t.Fatalf("json: %q, %v", out.String(), err)
	}
	out.Reset()
	log, _ = newFormatLogger(&out, "info", "text")
	log.Info("hello", "n", 1)
	if !strings.Contains(out.String(), "msg=hello n=1") {
		t.Fatalf("text: %q", out.String())
	}
	var stderr bytes.Buffer
	if code := run([]string{"serve", "--log-format", "xml", "--data-dir", t.TempDir()}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), `--log-format "xml": want text or json`) {
		t.Fatalf("--log-format xml: exit %d, %q", code, stderr.String())
	}
}
