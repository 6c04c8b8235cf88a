// Package fairq is the send queue in front of one WebSocket writer, in the
// relay and in the local proxy. It owns the order in which queued tunnel
// frames leave and the bound on how much may wait:
//
//   - Memory is bounded in bytes: a producer waits while the queue holds its
//     budget (counted as the buffers' memory, not the frames' length), and a
//     flow (one TCP connection) may hold at most its own share. A waiting
//     producer is backpressure: it stops reading its socket.
//   - DATA frames of different flows are sent in deficit round robin, with
//     flows that just became active served first, so a keystroke waits for
//     at most one frame of each bulk transfer, never behind megabytes.
//   - Order is never changed where the protocol needs it: a flow's frames
//     leave in the order they came, and a control frame (every frame that is
//     not DATA: starts, resets) is a barrier. It leaves after every frame
//     queued before it and before every frame queued after it, so a
//     CONNECTION_START never overtakes its STREAM_START, DATA never overtakes
//     its start, and no reset overtakes DATA it would cut off.
//
// It does not own the buffers' contents nor the WebSocket: the writer Takes a
// batch, writes it, and Releases it, which frees the buffers.
package fairq

import (
	"context"
	"errors"
	"sync"

	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/wire"
)

// ErrClosed is returned by pushes to a closed queue: the writer is gone.
var ErrClosed = errors.New("fairq: queue closed")

// Quantum is the bytes a flow may send per round: one frame of any size.
const Quantum = wire.LengthPrefixSize + wire.MaxFrame

// Config bounds a Queue.
type Config struct {
	Budget  int // bytes of buffers all queued frames may hold
	FlowMax int // bytes of buffers one flow's queued frames may hold
	Control int // control frames that may wait
}

type item struct {
	buf   *framepool.Buf
	epoch uint64 // control frames pushed before this one
	// before counts, for a control frame, the DATA frames queued before it
	// (since the previous control frame) that have not left yet.
	before int
}

type flow struct {
	key     uint64
	q       ring[item]
	bytes   int // cost of queued frames
	deficit int
	listed  bool // on newFlows or oldFlows
}

// Queue is safe for one writer and any number of producers.
type Queue struct {
	cfg Config

	mu     sync.Mutex
	closed bool
	used   int              // cost of every frame queued or being written
	flows  map[uint64]*flow // flows with queued frames
	spare  []*flow
	newFl  ring[*flow]
	oldFl  ring[*flow]
	epoch  uint64
	tail   int // queued DATA frames of the current epoch
	ctl    ring[item]
	booked int  // control slots reserved by ReserveControl
	busy   bool // a batch is taken and being written

	ready   chan struct{}
	waiters ring[*waiter] // producers waiting for room, oldest first
}

// waiter is a producer waiting for room: for a DATA frame of cost bytes
// in flow key, or (control) for a control slot.
type waiter struct {
	ch      chan struct{} // signalled once when room was found for it
	key     uint64
	cost    int
	control bool
}

var waiters = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

// New returns an empty queue.
func New(cfg Config) *Queue {
	return &Queue{cfg: cfg, flows: map[uint64]*flow{}, ready: make(chan struct{}, 1)}
}

// Ready is signalled when frames may be waiting; Take waits on it.
func (q *Queue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// fits reports whether a DATA frame of cost bytes for flow key may be
// queued now, given extra bytes already promised to woken waiters.
func (q *Queue) fits(key uint64, cost, extra int) bool {
	used := q.used + extra
	flowBytes := 0
	if f := q.flows[key]; f != nil {
		flowBytes = f.bytes
	}
	return (used == 0 || used+cost <= q.cfg.Budget) && (flowBytes == 0 || flowBytes+cost <= q.cfg.FlowMax)
}

func (q *Queue) controlFits(extra int) bool { return q.ctl.len()+q.booked+extra < q.cfg.Control }

// wait releases q.mu, waits until roomFreed finds room for w (or ctx is
// done), and retakes q.mu. Waiters are woken one by one, oldest first, and
// only when their frame fits: a freed frame wakes one producer, not all.
func (q *Queue) wait(ctx context.Context, key uint64, cost int, control bool) error {
	w := waiters.Get().(*waiter)
	w.key, w.cost, w.control = key, cost, control
	q.waiters.push(w)
	q.mu.Unlock()
	var err error
	select {
	case <-w.ch:
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	if err != nil {
		// Leave the list, unless roomFreed already took us off it.
		for i := range q.waiters.len() {
			if q.waiters.at(i) == w {
				q.waiters.removeAt(i)
				break
			}
		}
		select {
		case <-w.ch:
			q.roomFreed() // the room we were given goes to the next
		default:
		}
	}
	waiters.Put(w)
	return err
}

// roomFreed wakes the waiters whose frames now fit, oldest first. Call with
// q.mu held.
func (q *Queue) roomFreed() {
	extra, extraCtl := 0, 0
	for i := 0; i < q.waiters.len(); {
		w := q.waiters.at(i)
		ok := q.closed
		if !ok && w.control {
			ok = q.controlFits(extraCtl)
		} else if !ok {
			ok = q.fits(w.key, w.cost, extra)
		}
		if !ok {
			i++
			continue
		}
		q.waiters.removeAt(i)
		if w.control {
			extraCtl++
		} else {
			extra += w.cost
		}
		w.ch <- struct{}{}
	}
}

// Push queues a DATA frame of flow key, waiting while the queue or the flow
// is full. The queue owns buf afterwards, unless an error is returned.
func (q *Queue) Push(ctx context.Context, key uint64, buf *framepool.Buf) error {
	cost := buf.Cost()
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			return ErrClosed
		}
		if q.fits(key, cost, 0) {
			break
		}
		if err := q.wait(ctx, key, cost, false); err != nil {
			return err
		}
	}
	q.add(key, buf)
	return nil
}

// add queues buf in flow key. Call with q.mu held.
func (q *Queue) add(key uint64, buf *framepool.Buf) {
	cost := buf.Cost()
	f := q.flows[key]
	if f == nil {
		if n := len(q.spare); n > 0 {
			f, q.spare = q.spare[n-1], q.spare[:n-1]
		} else {
			f = new(flow)
		}
		f.key = key
		q.flows[key] = f
	}
	f.q.push(item{buf: buf, epoch: q.epoch})
	f.bytes += cost
	q.used += cost
	q.tail++
	if !f.listed {
		f.listed = true
		f.deficit = Quantum
		q.newFl.push(f)
	}
	q.wake()
}

// PushNoWait queues a small DATA-like frame of flow key at once, beyond
// the queue's and the flow's bounds: for frames whose number the caller
// bounds itself (window updates, at most a few per connection), sent from
// goroutines that must never wait on the writer.
func (q *Queue) PushNoWait(key uint64, buf *framepool.Buf) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	q.add(key, buf)
	return nil
}

// ReserveControl books room for one control frame, waiting while the
// control frames queue is full, so that PushControl can then be called under
// a lock without blocking.
func (q *Queue) ReserveControl(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			return ErrClosed
		}
		if q.controlFits(0) {
			q.booked++
			return nil
		}
		if err := q.wait(ctx, 0, 0, true); err != nil {
			return err
		}
	}
}

// Unreserve gives back a reservation that will not be used.
func (q *Queue) Unreserve() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.booked--
	q.roomFreed()
}

// PushControl queues a control frame in a slot booked by ReserveControl; it
// never blocks. On a closed queue buf is freed.
func (q *Queue) PushControl(buf *framepool.Buf) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.booked--
	if q.closed {
		buf.Free()
		return
	}
	q.addControl(buf)
}

// addControl queues a control frame. Call with q.mu held.
func (q *Queue) addControl(buf *framepool.Buf) {
	q.ctl.push(item{buf: buf, epoch: q.epoch, before: q.tail})
	q.used += buf.Cost()
	q.tail = 0
	q.epoch++
	q.wake()
}

// PushControlNoWait queues a control frame at once, beyond the control
// frames' bound: for frames whose number or bytes the caller bounds itself
// (a node link's credit bounds what another node may send), pushed from
// goroutines that must never wait on the writer. It returns ErrClosed on a
// closed queue, which then does not own buf.
func (q *Queue) PushControlNoWait(buf *framepool.Buf) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	q.addControl(buf)
	return nil
}

// PushControlWait reserves a slot and queues a control frame in it.
func (q *Queue) PushControlWait(ctx context.Context, buf *framepool.Buf) error {
	if err := q.ReserveControl(ctx); err != nil {
		return err
	}
	q.PushControl(buf)
	return nil
}

// Take waits for queued frames and appends up to about max bytes of them to
// dst, in the order they must leave (at least one frame). The caller writes
// them and then calls Release; until then nobody else may take a batch, so
// batches are written in the order they were taken. It returns ErrClosed
// once the queue is closed, or ctx's error, with dst unchanged.
func (q *Queue) Take(ctx context.Context, dst []*framepool.Buf, max int) ([]*framepool.Buf, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return dst, ErrClosed
		}
		start := len(dst)
		if !q.busy {
			dst = q.takeBatch(dst, max)
		}
		q.mu.Unlock()
		if len(dst) > start {
			return dst, nil
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}

// TakeIfIdle is Take without waiting: it takes a batch only if frames are
// waiting and nobody is writing. A producer that has just pushed a frame
// calls it to write the frame itself instead of waking the writer, which
// saves a goroutine switch on every hop of a round trip.
func (q *Queue) TakeIfIdle(dst []*framepool.Buf, max int) ([]*framepool.Buf, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.busy {
		return dst, false
	}
	start := len(dst)
	dst = q.takeBatch(dst, max)
	return dst, len(dst) > start
}

// takeBatch appends up to about max bytes of frames to dst, in the order
// they must leave, and marks the queue busy if it took any. Call with q.mu
// held.
func (q *Queue) takeBatch(dst []*framepool.Buf, max int) []*framepool.Buf {
	n := 0
	start := len(dst)
	for n < max {
		if q.ctl.len() > 0 && q.ctl.front().before == 0 {
			it := q.ctl.pop()
			dst = append(dst, it.buf)
			n += len(it.buf.B)
			continue
		}
		buf := q.next()
		if buf == nil {
			break
		}
		dst = append(dst, buf)
		n += len(buf.B)
	}
	if len(dst) > start {
		q.busy = true
	}
	return dst
}

// next takes the next DATA frame in deficit round robin among the flows
// whose next frame is not behind a queued control frame; flows that just
// became active go first. Call with q.mu held.
func (q *Queue) next() *framepool.Buf {
	limit := q.epoch
	if q.ctl.len() > 0 {
		limit = q.ctl.front().epoch
	}
	// A top-up of one Quantum lets any flow send its next frame.
	for tries := 2*(q.newFl.len()+q.oldFl.len()) + 2; tries > 0; tries-- {
		list := &q.newFl
		i := eligible(list, limit)
		if i < 0 {
			list = &q.oldFl
			i = eligible(list, limit)
		}
		if i < 0 {
			return nil
		}
		f := list.at(i)
		if f.deficit < len(f.q.front().buf.B) {
			// Its turn is used up: top it up and send it to the back.
			list.removeAt(i)
			f.deficit += Quantum
			q.oldFl.push(f)
			continue
		}
		return q.serve(list, i, f)
	}
	return nil
}

// eligible returns the index of the first flow in list whose next frame may
// leave before the control frame of epoch limit, or -1.
func eligible(list *ring[*flow], limit uint64) int {
	for i := range list.len() {
		if list.at(i).q.front().epoch <= limit {
			return i
		}
	}
	return -1
}

// serve takes flow f's first frame; f is list's i-th.
func (q *Queue) serve(list *ring[*flow], i int, f *flow) *framepool.Buf {
	it := f.q.pop()
	f.deficit -= len(it.buf.B)
	f.bytes -= it.buf.Cost()
	if it.epoch == q.epoch {
		q.tail--
	} else {
		q.ctl.front().before--
	}
	if f.q.len() == 0 {
		list.removeAt(i)
		f.listed = false
		f.deficit = 0
		delete(q.flows, f.key)
		q.spare = append(q.spare, f)
	}
	q.roomFreed()
	return it.buf
}

// Release frees a batch that Take or TakeIfIdle returned, once it is
// written (or will not be), makes its room available and lets the next
// batch be taken.
func (q *Queue) Release(bufs []*framepool.Buf) {
	n := 0
	for i, b := range bufs {
		n += b.Cost()
		b.Free()
		bufs[i] = nil
	}
	q.mu.Lock()
	q.used -= n
	q.busy = false
	q.roomFreed()
	if len(q.flows) > 0 || q.ctl.len() > 0 {
		q.wake()
	}
	q.mu.Unlock()
}

// Close drops every queued frame and makes pushes fail; Take returns
// ErrClosed. Frames already taken are still Released by the writer.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	for _, f := range q.flows {
		for f.q.len() > 0 {
			it := f.q.pop()
			q.used -= it.buf.Cost()
			it.buf.Free()
		}
	}
	for q.ctl.len() > 0 {
		it := q.ctl.pop()
		q.used -= it.buf.Cost()
		it.buf.Free()
	}
	q.flows, q.spare = nil, nil
	q.newFl, q.oldFl = ring[*flow]{}, ring[*flow]{}
	q.roomFreed()
	q.wake()
}

// Used is the memory the queue holds, including frames being written.
func (q *Queue) Used() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.used
}
