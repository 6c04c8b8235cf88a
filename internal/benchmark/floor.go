package benchmark

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// floorPath is the floor chain: three `warren bench-hop` processes.
type floorPath struct {
	src, relay, dst *child
	sources         []string // the source hop's address for each target, in order
}

// procs are the chain's three processes, source side first.
func (f *floorPath) procs() []*child { return []*child{f.src, f.relay, f.dst} }

// startFloor starts the chain from the destination end, each hop
// forwarding to the addresses the next one printed.
func startFloor(ctx context.Context, exe, certFile, keyFile string, targets []string) (_ *floorPath, err error) {
	f := &floorPath{}
	defer func() {
		if err != nil {
			f.stop()
		}
	}()
	to := targets
	for _, h := range []struct {
		mode string
		c    **child
	}{{hopDestination, &f.dst}, {hopRelay, &f.relay}, {hopSource, &f.src}} {
		lw := &lineWriter{line: make(chan string, 1)}
		c, err := startChild(ctx, "floor "+h.mode+" hop", nil, lw, exe, "bench-hop",
			"--mode", h.mode, "--to", strings.Join(to, ","), "--cert", certFile, "--key", keyFile)
		if err != nil {
			return f, err
		}
		*h.c = c
		select {
		case line := <-lw.line:
			addrs, ok := strings.CutPrefix(line, "listening ")
			if !ok {
				return f, fmt.Errorf("%s printed %q", c.name, line)
			}
			to = strings.Split(addrs, ",")
		case <-c.done:
			return f, c.failure()
		case <-time.After(30 * time.Second):
			return f, fmt.Errorf("%s did not start listening within 30 s", c.name)
		case <-ctx.Done():
			return f, ctx.Err()
		}
	}
	f.sources = to
	return f, nil
}

func (f *floorPath) stop() {
	for _, c := range []*child{f.src, f.relay, f.dst} {
		if c != nil {
			c.stop()
		}
	}
}

// lineWriter passes on the first line written to it and drops the rest.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	sent bool
	line chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent {
		return len(p), nil
	}
	w.buf.Write(p)
	if line, _, ok := bytes.Cut(w.buf.Bytes(), []byte("\n")); ok {
		w.sent = true
		w.line <- string(line)
	}
	return len(p), nil
}
