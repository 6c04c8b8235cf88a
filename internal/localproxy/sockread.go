package localproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/warrentunnel/warren/internal/framepool"
	"github.com/warrentunnel/warren/internal/wire"
)

// socketReader reads a local connection's bytes into DATA frames. On TCP and
// unix sockets it waits for the socket to become readable before it takes a
// buffer from the pool, so an idle connection holds no buffer; a short read
// (a keystroke, a request) moves into a small buffer at once, so it does not
// hold 64 KiB while it waits in the send queue.
type socketReader struct {
	nc  net.Conn
	raw syscall.RawConn // nil: read through nc
	fn  func(fd uintptr) bool
	// set by the raw read callback
	f   *framepool.Buf
	n   int
	err error
	max int
	// limit, if set, is asked when the socket is readable how much may be
	// read now (the peer's window may have closed while we waited); 0 makes
	// readFrame return errNoCredit without reading.
	limit func(most int) int
	// unused, if set, is given back what limit allowed and the read did
	// not use.
	unused func(n int)
}

// errNoCredit: the peer's window closed while the socket became readable.
var errNoCredit = errors.New("no window to send in")

func newSocketReader(nc net.Conn) *socketReader {
	r := &socketReader{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			r.raw = raw
			r.fn = r.readRaw // made once: a method value passed on allocates
		}
	}
	return r
}

// readFrame reads up to max bytes and returns them as a DATA frame with m's
// fields, or nil and the error (io.EOF at the end of the stream). A frame
// may come with an error only when the read itself returned data and an
// error.
func (r *socketReader) readFrame(max int, m *wire.Message) (*framepool.Buf, error) {
	r.max = max
	var f *framepool.Buf
	var n int
	var err error
	if r.raw != nil {
		if rerr := r.raw.Read(r.fn); rerr != nil {
			err = rerr
		} else {
			f, n, err = r.f, r.n, r.err
		}
		r.f = nil
	} else {
		if r.limit != nil {
			if m := r.limit(max); m == 0 {
				return nil, errNoCredit
			} else if m < max {
				max = m
			}
		}
		f = framepool.Get(framepool.LargeSize)
		n, err = r.nc.Read(f.Mem[wire.HeaderRoom : wire.HeaderRoom+max])
		if r.unused != nil {
			r.unused(max - n)
		}
	}
	if n == 0 {
		if f != nil {
			f.Free()
		}
		return nil, err
	}
	return finishFrame(f, n, m), err
}

// readRaw is the RawConn callback: false asks to wait for readability.
func (r *socketReader) readRaw(fd uintptr) bool {
	if r.limit != nil {
		if m := r.limit(r.max); m == 0 {
			r.f, r.n, r.err = nil, 0, errNoCredit
			return true
		} else if m < r.max {
			r.max = m
		}
	}
	f := framepool.Get(framepool.LargeSize)
	for {
		n, err := syscall.Read(int(fd), f.Mem[wire.HeaderRoom:wire.HeaderRoom+r.max])
		if r.unused != nil && err != syscall.EINTR {
			r.unused(r.max - max(n, 0))
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			f.Free()
			return false
		case err != nil:
			f.Free()
			r.f, r.n, r.err = nil, 0, os.NewSyscallError("read", err)
		case n == 0:
			f.Free()
			r.f, r.n, r.err = nil, 0, io.EOF
		default:
			r.f, r.n, r.err = f, n, nil
		}
		return true
	}
}

// finishFrame completes the frame around the n payload bytes in f, moving
// a short payload to a smaller buffer.
func finishFrame(f *framepool.Buf, n int, m *wire.Message) *framepool.Buf {
	if size := wire.HeaderRoom + n + wire.TailSize(m); size <= framepool.MediumSize {
		fit := framepool.Get(size)
		copy(fit.Mem[wire.HeaderRoom:], f.Mem[wire.HeaderRoom:wire.HeaderRoom+n])
		f.Free()
		f = fit
	}
	b, err := wire.FrameAround(f.Mem, wire.HeaderRoom, n, m)
	if err != nil {
		// Payloads are at most MaxPayload and service ids are short.
		panic("localproxy: " + err.Error())
	}
	f.B = b
	f.Payload = f.Mem[wire.HeaderRoom : wire.HeaderRoom+n]
	return f
}
