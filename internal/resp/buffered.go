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
	p := Reader{buf: r.buf[r.r:r.w], w: r.w - r.r, base: r.base + int64(r.r),
		lim: r.lim, maxLine: r.maxLine, probe: true}
	var v Value
	return p.read(&v, 0, false) != errProbe
}

// errProbe is what a probe (HasValue) gets where the decoder would read
// the stream.
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
