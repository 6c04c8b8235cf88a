package localproxy

import (
	"slices"
	"sync"

	"github.com/warrentunnel/warren/internal/wire"
)

// link is the relay's link credit (wire.TypeLinkCredit): while the
// account's bandwidth is limited, the relay lets this session have sent at
// most limit bytes of DATA payload in all, in frames of at most chunk. The
// bytes the relay would pace then wait here, where connections take turns,
// instead of in the socket buffers to the relay, where a keystroke would
// queue behind everything sent before it.
//
// Connections reserve credit when their socket is readable, at most a chunk
// at a time, and give back what the read did not use. When credit runs
// out they wait in line: a connection with more to send (backlogged) joins
// the back, one whose last read emptied its socket (a request, a
// keystroke) joins in front of those, so it waits for one window, not for
// every bulk connection's turn.
type link struct {
	mu      sync.Mutex
	limited bool
	limit   int64
	sent    int64
	chunk   int
	line    []*localConn // waiting for credit, in turn order
	urgent  int          // how many at the front of line joined as not backlogged
}

// set applies a credit from the relay.
func (l *link) set(c wire.LinkCredit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Limit < 0 {
		l.limited = false
		for _, lc := range l.line {
			wake(lc.opened)
		}
		l.line, l.urgent = l.line[:0], 0
		return
	}
	l.limited = true
	l.limit = c.Limit
	l.chunk = max(int(c.Chunk), 1)
	l.wakeHead()
}

// wakeHead wakes the first connection in line if there is credit for it.
// Call with l.mu held.
func (l *link) wakeHead() {
	if len(l.line) > 0 && l.limit > l.sent {
		wake(l.line[0].opened)
	}
}

// ready reports whether lc may reserve credit now; if not, lc is in line
// and will be woken through lc.opened.
func (l *link) ready(lc *localConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.limited {
		return true
	}
	i := slices.Index(l.line, lc)
	if l.limit > l.sent && (i == 0 || i < 0 && (len(l.line) == 0 || !lc.backlogged)) {
		return true
	}
	if i < 0 {
		l.join(lc)
	}
	return false
}

// join puts lc in line. Call with l.mu held.
func (l *link) join(lc *localConn) {
	if lc.backlogged {
		l.line = append(l.line, lc)
		return
	}
	l.line = slices.Insert(l.line, l.urgent, lc)
	l.urgent++
}

// leave takes lc out of line (its turn passed, or it ended). Call with
// l.mu held.
func (l *link) leave(lc *localConn) {
	if i := slices.Index(l.line, lc); i >= 0 {
		l.line = slices.Delete(l.line, i, i+1)
		if i < l.urgent {
			l.urgent--
		}
	}
}

// forget takes an ending connection out of line.
func (l *link) forget(lc *localConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leave(lc)
	l.wakeHead()
}

// reserve takes up to want bytes of credit for lc (all of want when the
// link is not limited). It returns how many, and whether they came out of
// the link's credit (to give back what is not used).
func (l *link) reserve(lc *localConn, want int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.limited {
		return want, false
	}
	i := slices.Index(l.line, lc)
	avail := l.limit - l.sent
	if avail <= 0 || i > 0 || i < 0 && len(l.line) > 0 && lc.backlogged {
		if i < 0 {
			l.join(lc)
		}
		lc.backlogged = true
		return 0, false
	}
	l.leave(lc)
	n := int(min(int64(min(want, l.chunk)), avail))
	l.sent += int64(n)
	lc.backlogged = n < want
	l.wakeHead()
	return n, true
}

// unused gives back n reserved bytes that a read did not use.
func (l *link) unused(lc *localConn, n int) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lc.backlogged = false // the socket had less than the credit allowed
	if l.limited {
		l.sent -= int64(n)
		l.wakeHead()
	}
}
