package relay

import (
	"context"
	"sync"
	"time"

	"github.com/warrentunnel/warren/internal/wire"
)

// While an account's bandwidth is limited, the relay paces the DATA each of
// its peers sends (bandwidth.Account.Wait, in the peer's reader). Paced
// bytes wait upstream: in the sending local proxy, and in the socket
// buffers between it and the relay, which are first in, first out, so a
// keystroke would wait behind everything in them. A Warren local proxy that
// asks for it therefore gets link credit: it sends no more DATA than the
// relay has let through plus a window of creditTime at the limit, in
// frames of chunkTime at the limit, and its own scheduler (which serves
// new connections first) decides what goes next. The official proxy does
// not ask; the limit holds for it all the same, with the latency of its
// buffers.
const (
	creditTime = 30 * time.Millisecond
	chunkTime  = 5 * time.Millisecond
	minCredit  = 4 << 10
	minChunk   = 1 << 10
)

// creditFlow is the send-queue flow of link credit frames: apart from
// every connection's, and order-free like them.
const creditFlow = ^uint64(0)

// linkCredit is what a peer may send while its account is limited.
type linkCredit struct {
	wanted bool // the peer asked for link credit

	mu      sync.Mutex
	limited bool  // the peer was told of a limit
	through int64 // DATA payload bytes forwarded
	granted int64 // what the peer may have sent in all
	window  int64
}

// creditFor is the window and the chunk of an account limit.
func creditFor(limit int64) (window int64, chunk uint32) {
	window = max(int64(float64(limit)*creditTime.Seconds()), minCredit)
	c := int64(float64(limit) * chunkTime.Seconds())
	return window, uint32(min(max(c, minChunk), wire.MaxPayload))
}

// startPacing looks up the peer's account limit and, for a peer that asked
// for link credit, gives it its first credit and follows the limit's
// changes.
func (p *peer) startPacing(ctx context.Context) {
	if p.r.bw == nil {
		return
	}
	p.acct = p.r.bw.Acquire(ctx, p.accountID)
	if !p.credit.wanted {
		return
	}
	p.sub = p.acct.Subscribe(func() { p.sendCredit(true) })
	// The write loop runs already and sends it.
	p.sendCredit(true)
}

func (p *peer) stopPacing() {
	if p.sub != nil {
		p.sub.Cancel()
	}
	if p.acct != nil {
		p.r.bw.Release(p.acct)
	}
}

// forwarded counts n DATA payload bytes let through and tops up the peer's
// credit once half of its window is spent.
func (p *peer) forwarded(n int) {
	c := &p.credit
	c.mu.Lock()
	c.through += int64(n)
	due := c.limited && c.granted-c.through <= c.window/2 || !c.limited && p.acct.Limit() > 0
	c.mu.Unlock()
	if due && p.sendCredit(false) {
		p.batch = p.flush(p.batch)
	}
}

// sendCredit tells the peer what it may send under the account's limit in
// force: a new window beyond what went through, or no limit. force sends
// even when the window is not half spent (the limit changed). It reports
// whether it queued a credit; the write loop or a flush sends it.
func (p *peer) sendCredit(force bool) bool {
	limit := p.acct.Limit()
	c := &p.credit
	c.mu.Lock()
	defer c.mu.Unlock()
	var lc wire.LinkCredit
	switch {
	case limit == 0 && !c.limited:
		return false
	case limit == 0:
		c.limited = false
		lc.Limit = -1
	default:
		window, chunk := creditFor(limit)
		if c.limited && !force && c.granted-c.through > window/2 {
			return false
		}
		c.limited, c.window = true, window
		c.granted = c.through + window
		lc = wire.LinkCredit{Limit: c.granted, Chunk: chunk}
	}
	// Queued under c.mu, so that credits leave in the order they were
	// computed; PushNoWait never blocks, and at most one credit is queued
	// per half window forwarded (or per limit change).
	m := wire.Message{Type: wire.TypeLinkCredit, Ignorable: true, Payload: lc.Encode(make([]byte, 0, wire.LinkCreditSize))}
	f := controlFrame(&m)
	if err := p.q.PushNoWait(creditFlow, f); err != nil {
		f.Free()
		return false
	}
	return true
}
