// Package framepool owns the buffers tunnel frames travel in through the
// relay and the local proxy: a frame is read (or built around a payload read
// from a socket) into a pooled buffer, waits in a send queue, is written out,
// and its buffer goes back to the pool, so the steady state allocates
// nothing. Buffers come in two size classes, so that a keystroke does not
// hold 64 KiB while it waits. It knows the frame format only through package
// wire.
package framepool

import (
	"encoding/binary"
	"io"
	"sync"

	"github.com/warrentunnel/warren/internal/wire"
)

// Size classes. Large holds any frame, and a payload of wire.MaxPayload with
// wire.HeaderRoom before it and a tail (service id, connection id) after,
// and any frame behind a node link's header (LinkRoom); a frame never takes
// a buffer more than 8 times its size.
const (
	SmallSize  = 2 << 10
	MediumSize = 17 << 10
	LargeSize  = wire.HeaderRoom + wire.MaxPayload + 1024 + LinkRoom
)

// LinkRoom is the most bytes a node link puts before a frame it carries.
const LinkRoom = 128

// Buf is a pooled buffer. B is the part in use (a frame, usually); Mem is
// the whole buffer. A Buf belongs to one owner at a time, which must Free it
// exactly once.
type Buf struct {
	B   []byte
	Mem []byte
	// Payload is a frame's payload within Mem, set by ReadFrame for DATA.
	Payload []byte
	// Credit is the node-link credit a frame that came from another node
	// holds until it is written (see package nodelink); 0 for others.
	Credit int
}

var (
	small  = sync.Pool{New: func() any { return &Buf{Mem: make([]byte, SmallSize)} }}
	medium = sync.Pool{New: func() any { return &Buf{Mem: make([]byte, MediumSize)} }}
	large  = sync.Pool{New: func() any { return &Buf{Mem: make([]byte, LargeSize)} }}
)

// Get returns a buffer of at least n bytes (n <= LargeSize), with B empty.
func Get(n int) *Buf {
	var b *Buf
	switch {
	case n <= SmallSize:
		b = small.Get().(*Buf)
	case n <= MediumSize:
		b = medium.Get().(*Buf)
	case n <= LargeSize:
		b = large.Get().(*Buf)
	default:
		panic("framepool: buffer larger than a frame")
	}
	b.B = b.Mem[:0]
	return b
}

// Cost is the memory a buffer holds, what queues bounded in bytes count.
func (b *Buf) Cost() int { return cap(b.Mem) }

// CostOf is the Cost of the buffer Get(n) returns.
func CostOf(n int) int {
	switch {
	case n <= SmallSize:
		return SmallSize
	case n <= MediumSize:
		return MediumSize
	}
	return LargeSize
}

// Free returns b to its pool.
func (b *Buf) Free() {
	b.B, b.Payload, b.Credit = nil, nil, 0
	switch cap(b.Mem) {
	case SmallSize:
		small.Put(b)
	case MediumSize:
		medium.Put(b)
	default:
		large.Put(b)
	}
}

// ReadFrame reads one length-prefixed tunnel frame from r into a pooled
// buffer of the frame's size class and decodes it into m, whose Payload
// aliases the buffer. The frame is returned even when its body does not
// decode (with the error); the caller frees it in every case but a read
// error, when nil is returned. io.EOF is returned only between frames.
func ReadFrame(r io.Reader, m *wire.Message) (*Buf, error) {
	b := Get(SmallSize)
	if _, err := io.ReadFull(r, b.Mem[:wire.LengthPrefixSize]); err != nil {
		b.Free()
		return nil, err
	}
	size := wire.LengthPrefixSize + int(binary.BigEndian.Uint16(b.Mem))
	if size > SmallSize {
		big := Get(size)
		copy(big.Mem, b.Mem[:wire.LengthPrefixSize])
		b.Free()
		b = big
	}
	b.B = b.Mem[:size]
	if _, err := io.ReadFull(r, b.B[wire.LengthPrefixSize:]); err != nil {
		b.Free()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	err := wire.Unmarshal(b.B[wire.LengthPrefixSize:], m)
	b.Payload = m.Payload
	return b, err
}
