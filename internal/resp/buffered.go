package resp

import "errors"

// HasValue reports whether ReadValue would return without reading the
// stream: the buffer holds the whole of the next value, or enough of it
// for the decoder to find what is wrong with it. It runs the decoder
// itself over a view of the buffer that cannot read, move or grow it, so
// the two cannot disagree, and allocates nothing for a well-formed value.
//
// Why: a caller that polls the socket for its own reply must decode only
// a reply that is all there, since a decode that has to wait for more
// bytes cannot be left halfway when the caller's context ends.
func (r *Reader) HasValue() bool {
	if r.r == r.w {
		return false
	}
	p := r.view()
	var v Value
	return p.read(&v, 0, false) != errProbe
}

// ReadBuffered decodes the next value if HasValue would be true, and
// reports whether it did; it never reads the stream, and consumes nothing
// when it does not decode. A scalar is decoded in one pass over a probe
// view, which gives up before allocating when its payload is not all
// there; an aggregate, whose elements are allocated as they are decoded,
// is checked with HasValue first.
func (r *Reader) ReadBuffered() (v Value, ok bool, err error) {
	if r.r == r.w {
		return v, false, nil
	}
	if Kind(r.buf[r.r]).Aggregate() {
		if !r.HasValue() {
			return v, false, nil
		}
	} else {
		p := r.view()
		switch err := p.read(&v, 0, true); err {
		case nil:
			r.r += p.r
			r.lineOff = p.lineOff
			return v, true, nil
		case errProbe:
			return Value{}, false, nil
		}
		// Malformed: the decoder below finds the same fault without
		// reading on, and leaves the reader as ReadValue does.
	}
	v, err = r.ReadValue()
	return v, err == nil, err
}

// view is a probe over what r has buffered.
func (r *Reader) view() Reader {
	r.adopt()
	return Reader{buf: r.buf[r.r:r.w], w: r.w - r.r, base: r.base + int64(r.r),
		lim: r.lim, maxLine: r.maxLine, probe: true}
}

// errProbe is what a probe (HasValue, ReadBuffered) gets where the decoder
// would read the stream.
var errProbe = errors.New("resp: probe needs more bytes")

// Spare returns the free space at the end of the buffer, moving what is
// buffered to the front first when that makes room; it is empty when the
// buffer is full. Bytes read into it from the stream count once Commit
// says how many there are.
func (r *Reader) Spare() []byte {
	if r.r > 0 && (r.r == r.w || r.w == len(r.buf)) {
		r.compact()
	}
	return r.buf[r.w:]
}

// Commit adds the first n bytes of the last Spare to the buffer.
func (r *Reader) Commit(n int) {
	r.w += n
}
