package resp

import (
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"unsafe"
)

// Limits bound what the reader accepts. Zero or negative fields mean the
// defaults: MaxBulkLen 512 MiB, MaxArrayLen 1<<32 - 1, MaxDepth 128.
//
// Lines (simple strings, simple errors, headers) may be up to
// max(MaxBulkLen, 64 KiB) bytes; a longer one is a LimitError with What
// "line length".
//
// Whatever the limits, the reader never allocates much more than the bytes
// that have actually arrived: a huge length in a header is only trusted as
// the payload comes in.
type Limits struct {
	MaxBulkLen  int64 // longest bulk string / verbatim / bulk error in bytes
	MaxArrayLen int64 // most elements in one aggregate (a map counts its pairs)
	MaxDepth    int   // deepest nesting of aggregates (a top-level array is depth 1)
}

const (
	defaultBufSize     = 32 << 10
	minBufSize         = 16
	defaultMaxBulkLen  = 512 << 20
	defaultMaxArrayLen = 1<<32 - 1
	defaultMaxDepth    = 128

	// minMaxLine is the smallest cap on a header or simple string line, so
	// that a tiny MaxBulkLen does not also reject ordinary status replies.
	minMaxLine = 64 << 10
	// maxPrealloc bounds what is allocated on the strength of a length
	// header alone; bigger payloads and aggregates grow as data arrives.
	maxPreallocBytes = 1 << 20
	maxPreallocElems = 1024
	minPreallocElems = 64
	maxEmptyReads    = 100
)

func (l Limits) normalized() Limits {
	if l.MaxBulkLen <= 0 {
		l.MaxBulkLen = defaultMaxBulkLen
	}
	if l.MaxArrayLen <= 0 {
		l.MaxArrayLen = defaultMaxArrayLen
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = defaultMaxDepth
	}
	// Keep lengths representable as int (plus CRLF, and a map's doubled
	// element count) so that 32-bit platforms cannot overflow.
	l.MaxBulkLen = min(l.MaxBulkLen, int64(math.MaxInt-2))
	l.MaxArrayLen = min(l.MaxArrayLen, int64(math.MaxInt/2))
	return l
}

// Reader decodes RESP2 and RESP3 values from a byte stream. It buffers its
// input, so the underlying reader must not be read by anyone else.
//
// After any error other than io.EOF between values the stream position is
// undefined and the stream should be abandoned.
type Reader struct {
	rd      io.Reader
	buf     []byte
	r, w    int   // buf[r:w] is read but not yet consumed
	base    int64 // stream offset of buf[0]
	err     error // error from rd held back until the data before it is consumed
	lim     Limits
	maxLine int
	lineOff int64 // stream offset of the last line returned by readLine
	probe   bool  // a view for HasValue and ReadBuffered: never reads, moves or grows buf
	// next holds limits SetLimits gave, until the reading goroutine takes
	// them into lim and maxLine, which it alone uses. Nil in a view.
	next *atomic.Pointer[Limits]
}

// NewReader returns a Reader with a 32 KiB buffer.
func NewReader(r io.Reader, lim Limits) *Reader {
	return NewReaderSize(r, defaultBufSize, lim)
}

// NewReaderSize returns a Reader whose buffer starts at size bytes (at
// least 16). The buffer grows only for a line longer than itself.
func NewReaderSize(r io.Reader, size int, lim Limits) *Reader {
	size = max(size, minBufSize)
	lim = lim.normalized()
	return &Reader{
		rd:      r,
		buf:     make([]byte, size),
		lim:     lim,
		maxLine: int(max(lim.MaxBulkLen, minMaxLine)),
		next:    new(atomic.Pointer[Limits]),
	}
}

// SetLimits replaces the reader's limits. It may be called while another
// goroutine reads: the reader takes the new limits before it checks the
// next line it reads against them, a line that has arrived already
// included, so a value whose first byte arrives after SetLimits returns is
// read under them.
func (r *Reader) SetLimits(lim Limits) {
	lim = lim.normalized()
	r.next.Store(&lim)
}

// adopt takes the limits SetLimits gave, if any.
func (r *Reader) adopt() {
	if r.next == nil || r.next.Load() == nil {
		return
	}
	if lim := r.next.Swap(nil); lim != nil {
		r.lim, r.maxLine = *lim, int(max(lim.MaxBulkLen, minMaxLine))
	}
}

// Reset discards any buffered data and makes r read from rd, with the
// offset back at 0.
func (r *Reader) Reset(rd io.Reader) {
	r.rd = rd
	r.r, r.w = 0, 0
	r.base = 0
	r.err = nil
	r.lineOff = 0
}

// Offset returns the number of bytes consumed from the stream so far.
func (r *Reader) Offset() int64 { return r.base + int64(r.r) }

// Buffered returns the number of bytes read from the underlying reader but
// not yet consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// PeekKind returns the type byte of the next value if it is already
// buffered, without reading from the stream; ok is false when nothing is
// buffered.
func (r *Reader) PeekKind() (k Kind, ok bool) {
	if r.w == r.r {
		return 0, false
	}
	return Kind(r.buf[r.r]), true
}

// NextKind is PeekKind past attributes: the type byte of the value whose
// bytes come next, past the attribute maps before it that are wholly
// buffered. It reports Attribute when one is not, or is malformed, since
// only what follows an attribute tells which value it belongs to; ok is
// false when nothing is buffered. Like PeekKind it never reads the stream.
//
// Why: a push message may carry attributes too, and one that arrives
// while no reply is due must not be taken for an unasked reply.
func (r *Reader) NextKind() (k Kind, ok bool) {
	if k, ok = r.PeekKind(); !ok || k != Attribute {
		return k, ok
	}
	p := r.view()
	for range maxAttrPeek {
		if p.r == p.w {
			return Attribute, true
		}
		if k = Kind(p.buf[p.r]); k != Attribute {
			return k, true
		}
		line, err := p.readLine()
		if err != nil {
			return Attribute, true
		}
		n, err := p.aggLen(line, 0, false)
		if err != nil {
			return Attribute, true
		}
		if _, err = p.readElems(nil, 2*n, 1, false); err != nil {
			return Attribute, true
		}
	}
	return Attribute, true
}

// maxAttrPeek bounds the attribute maps NextKind looks past; a value
// preceded by more is reported as an attribute, as one not all buffered.
const maxAttrPeek = 16

// ReadValue reads one whole value. It returns io.EOF only when the stream
// ends cleanly between values; a stream that ends inside a value gives
// io.ErrUnexpectedEOF.
func (r *Reader) ReadValue() (Value, error) {
	var v Value
	if err := r.start(); err != nil {
		return v, err
	}
	err := r.read(&v, 0, true)
	return v, err
}

// Skip reads and discards one whole value, with its attributes. It checks
// the input exactly as ReadValue does but allocates nothing for payloads.
func (r *Reader) Skip() error {
	if err := r.start(); err != nil {
		return err
	}
	var v Value
	return r.read(&v, 0, false)
}

// start makes sure at least one byte is buffered, so that io.EOF here means
// the stream ended on a value boundary.
func (r *Reader) start() error {
	if r.r < r.w {
		return nil
	}
	r.compact()
	return r.fill()
}

// read decodes one value, including any attributes before it, into v.
// depth is the nesting depth of the enclosing aggregate. With keep false
// nothing is stored and nothing is allocated.
func (r *Reader) read(v *Value, depth int, keep bool) error {
	line, err := r.readLine()
	if err != nil {
		return err
	}
	for Kind(line[0]) == Attribute {
		n, err := r.aggLen(line, depth, false)
		if err != nil {
			return err
		}
		if !keep {
			if _, err = r.readElems(nil, 2*n, depth+1, false); err != nil {
				return err
			}
		} else {
			// Several attribute maps before one value accumulate in one
			// list.
			if v.Aux == nil {
				v.Aux = &Aux{Attrs: make([]Value, 0, r.prealloc(2*n, depth))}
			}
			if v.Aux.Attrs, err = r.readElems(v.Aux.Attrs, 2*n, depth+1, true); err != nil {
				return err
			}
		}
		if line, err = r.readLine(); err != nil {
			return err
		}
	}

	k := Kind(line[0])
	switch k {
	case SimpleString:
		if keep {
			v.Str = intern(line[1:])
		}
	case Error:
		if keep {
			v.Str = string(line[1:])
		}
	case Integer:
		if v.Int, err = r.parseInt(line, "integer"); err != nil {
			return err
		}
	case Null:
		if len(line) != 1 {
			return r.lineErr(line, 1, "CRLF after null")
		}
	case Boolean:
		switch {
		case len(line) < 2 || (line[1] != 't' && line[1] != 'f'):
			return r.lineErr(line, 1, "'t' or 'f' in boolean")
		case len(line) > 2:
			return r.lineErr(line, 2, "CRLF after boolean")
		}
		if line[1] == 't' {
			v.Int = 1
		}
	case Double:
		f, err := r.parseDouble(line)
		if err != nil {
			return err
		}
		v.Int = int64(math.Float64bits(f))
		if keep {
			v.Str = doubleText(line[1:], f)
		}
	case BigNumber:
		i := 1
		if len(line) > 1 && (line[1] == '-' || line[1] == '+') {
			i++
		}
		if i == len(line) {
			return r.lineErr(line, i, "digit in big number")
		}
		for ; i < len(line); i++ {
			if line[i]-'0' > 9 {
				return r.lineErr(line, i, "digit in big number")
			}
		}
		if keep {
			v.Str = string(line[1:])
		}
	case BulkString, BulkError, Verbatim:
		if len(line) > 1 && line[1] == '?' {
			return r.lineErr(line, 1, "a length (streamed types are not supported)")
		}
		n, err := r.parseInt(line, "length")
		if err != nil {
			return err
		}
		switch {
		case n == -1 && k == BulkString:
			k = Null
		case n < 0:
			return r.lineErr(line, 1, "a "+k.String()+" length of 0 or more")
		case n > r.lim.MaxBulkLen:
			return &LimitError{Offset: r.lineOff, What: k.String() + " length", Size: n, Limit: r.lim.MaxBulkLen}
		case n < 4 && k == Verbatim:
			return r.lineErr(line, 1, "a verbatim string length of at least 4")
		}
		if k != Null {
			s, err := r.readPayload(int(n), k, keep)
			if err != nil {
				return err
			}
			if keep && k == Verbatim {
				// The only allocation beyond the payload: verbatim
				// strings are too rare to give the format a field of
				// its own in every Value.
				if v.Aux == nil {
					v.Aux = &Aux{}
				}
				v.Aux.Format, s = s[:3], s[4:]
			}
			v.Str = s
		}
	case Array, Map, Set, Push:
		if k == Push && depth > 0 {
			// A push is out of band and comes only between replies. One
			// inside an aggregate (Redis 7.0 writes DEBUG PROTOCOL push
			// queued in MULTI into EXEC's array, uncounted, with the
			// command's own reply after it) would be taken for an
			// element, and every later element and reply would belong to
			// the one before it.
			return r.lineErr(line, 0, "a value other than a push inside an aggregate (push messages come only between replies)")
		}
		n, err := r.aggLen(line, depth, k == Array)
		if err != nil {
			return err
		}
		if n < 0 {
			k = Null
			break
		}
		if k == Map {
			n *= 2
		}
		var elems []Value
		if keep {
			elems = make([]Value, 0, r.prealloc(n, depth))
		}
		if v.Elems, err = r.readElems(elems, n, depth+1, keep); err != nil {
			return err
		}
	case ';', '.':
		return r.lineErr(line, 0, "a value of fixed size (streamed types are not supported)")
	default:
		return r.lineErr(line, 0, "a RESP type byte")
	}
	v.Kind = k
	return nil
}

// aggLen parses and checks the count in an aggregate or attribute header
// that opens a new nesting level below depth. With null it accepts the
// RESP2 null array and returns -1 for it.
func (r *Reader) aggLen(line []byte, depth int, null bool) (int, error) {
	k := Kind(line[0])
	if len(line) > 1 && line[1] == '?' {
		return 0, r.lineErr(line, 1, "a length (streamed types are not supported)")
	}
	n, err := r.parseInt(line, "length")
	if err != nil {
		return 0, err
	}
	if n < 0 {
		if n == -1 && null {
			return -1, nil
		}
		return 0, r.lineErr(line, 1, "a "+k.String()+" length of 0 or more")
	}
	if n > r.lim.MaxArrayLen {
		return 0, &LimitError{Offset: r.lineOff, What: k.String() + " length", Size: n, Limit: r.lim.MaxArrayLen}
	}
	if depth >= r.lim.MaxDepth {
		return 0, &LimitError{Offset: r.lineOff, What: "nesting depth", Size: int64(depth) + 1, Limit: int64(r.lim.MaxDepth)}
	}
	return int(n), nil
}

// prealloc is the capacity to reserve for n elements of an aggregate below
// depth. Beyond a small floor it trusts n only as far as the bytes already
// buffered could hold that many elements (each takes at least 3). Nested
// aggregates share those bytes, so each level gets a share that shrinks with
// depth; otherwise a short run of nested huge headers would reserve the
// buffer's worth of elements once per level.
func (r *Reader) prealloc(n, depth int) int {
	return min(n, maxPreallocElems, max(minPreallocElems, (r.w-r.r)/(3*(depth+1))))
}

// readElems appends n values read at depth to dst. The slice grows as the
// values arrive rather than being sized from the untrusted header.
func (r *Reader) readElems(dst []Value, n, depth int, keep bool) ([]Value, error) {
	if !keep {
		var scratch Value
		for range n {
			scratch = Value{}
			if err := r.read(&scratch, depth, false); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	for range n {
		dst = append(dst, Value{})
		if err := r.read(&dst[len(dst)-1], depth, true); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// intern returns the common status replies without allocating.
func intern(b []byte) string {
	switch string(b) {
	case "OK":
		return "OK"
	case "QUEUED":
		return "QUEUED"
	case "PONG":
		return "PONG"
	}
	return string(b)
}

// doubleText is what a Double read from text b keeps as its Str: the
// server's own text, which is what it sends for the same reply under RESP2
// and which formatting f again may not give back (7.0 sends 0.1 as
// 0.10000000000000001, and every server sends 1700000000 where the
// shortest 'g' format is 1.7e+09). It is "" when b is the shortest 'g'
// format of f, which needs no allocation to keep, and the common names of
// infinity and NaN are constants.
func doubleText(b []byte, f float64) string {
	switch string(b) {
	case "inf":
		return "inf"
	case "-inf":
		return "-inf"
	case "nan":
		return "nan"
	}
	switch shortestForm(b) {
	case formShortest:
		return ""
	case formOther:
		return string(b)
	}
	var buf [32]byte
	if string(strconv.AppendFloat(buf[:0], f, 'g', -1, 64)) == string(b) {
		return ""
	}
	return string(b)
}

// The answers of shortestForm.
const (
	formUnknown  = iota // only formatting the number can tell
	formShortest        // b is the shortest 'g' format of its value
	formOther           // b is not
)

// shortestForm tells, without formatting the number, whether b is the
// shortest 'g' format of the number it denotes, for the forms servers send
// most: plain decimals without an exponent. One of at most 15 significant
// digits is the shortest text of its value (distinct decimals of 15 digits
// are distinct doubles), so it is the 'g' format if it is written as 'g'
// writes: no '+', no leading or trailing zero, and a decimal exponent from
// -4 to 5; outside that range 'g' writes an exponent, which b lacks.
func shortestForm(b []byte) int {
	i := 0
	if len(b) > 0 && b[0] == '-' {
		i++
	}
	intStart := i
	for i < len(b) && b[i]-'0' <= 9 {
		i++
	}
	intDigits := b[intStart:i]
	var frac []byte
	if i < len(b) && b[i] == '.' {
		i++
		fracStart := i
		for i < len(b) && b[i]-'0' <= 9 {
			i++
		}
		frac = b[fracStart:i]
		if len(frac) == 0 || frac[len(frac)-1] == '0' {
			return formOther // "1." or "1.50"
		}
	}
	switch {
	case i < len(b):
		return formUnknown // an exponent, or a '+'
	case len(intDigits) == 0:
		return formOther // ".5"
	case len(intDigits) > 1 && intDigits[0] == '0':
		return formOther // "01"
	}
	var sig, exp int
	if intDigits[0] != '0' {
		sig, exp = len(intDigits)+len(frac), len(intDigits)-1
	} else {
		if len(frac) == 0 {
			return formShortest // "0" or "-0"
		}
		zeros := 0
		for frac[zeros] == '0' {
			zeros++
		}
		sig, exp = len(frac)-zeros, -zeros-1
	}
	switch {
	case exp < -4 || exp > 5:
		return formOther
	case sig > 15:
		return formUnknown
	}
	return formShortest
}

// lineErr reports a problem at line[i]; i == len(line) points at the CR.
func (r *Reader) lineErr(line []byte, i int, expected string) error {
	c := byte('\r')
	if i < len(line) {
		c = line[i]
	}
	return &ProtocolError{Offset: r.lineOff + int64(i), Expected: expected, Found: quoteByte(c)}
}

// parseInt parses the line after its type byte as a signed decimal int64.
// what names the number in error messages.
func (r *Reader) parseInt(line []byte, what string) (int64, error) {
	start := 1
	b := line[start:]
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
		start++
	}
	if len(b) == 0 {
		return 0, r.lineErr(line, start, "digit in "+what)
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	var u uint64
	for i, c := range b {
		d := uint64(c - '0')
		if d > 9 {
			return 0, r.lineErr(line, start+i, "digit in "+what)
		}
		if u > (limit-d)/10 {
			return 0, &ProtocolError{Offset: r.lineOff + 1, Expected: what + " in the int64 range", Found: quoteBytes(line[1:])}
		}
		u = u*10 + d
	}
	if neg {
		return -int64(u), nil
	}
	return int64(u), nil
}

// ScanDecimal reads the start of s, which has no sign, as the digits of a
// decimal number: digits with an optional fraction, at least one digit in
// all, then an optional exponent with an optional sign. It returns where
// the number ends, and what was missing there ("digit in double" or
// "digit in double exponent"), or "" once it read one. The server writes
// numbers so; strconv alone would also take hex, underscores and
// "infinity".
func ScanDecimal[T string | []byte](s T) (end int, missing string) {
	i, digits := 0, 0
	for ; i < len(s) && s[i]-'0' <= 9; i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i]-'0' <= 9; i++ {
			digits++
		}
	}
	if digits == 0 {
		return i, "digit in double"
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		start := i
		for ; i < len(s) && s[i]-'0' <= 9; i++ {
		}
		if i == start {
			return i, "digit in double exponent"
		}
	}
	return i, ""
}

// parseDouble checks the RESP3 double grammar, which is stricter than
// strconv's (no hex, underscores or "infinity"), then converts.
func (r *Reader) parseDouble(line []byte) (float64, error) {
	b := line[1:]
	i := 0
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		i++
	}
	switch string(b[i:]) {
	case "inf", "Inf", "INF":
		if b[0] == '-' {
			return math.Inf(-1), nil
		}
		return math.Inf(1), nil
	case "nan", "NaN", "NAN":
		return math.NaN(), nil
	}
	n, missing := ScanDecimal(b[i:])
	i += n
	if missing != "" {
		return 0, r.lineErr(line, 1+i, missing)
	}
	if i < len(b) {
		return 0, r.lineErr(line, 1+i, "CRLF after double")
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		// Unreachable after the grammar check; kept so a strconv change
		// cannot turn into a silently wrong value.
		return 0, &ProtocolError{Offset: r.lineOff + 1, Expected: "a double", Found: quoteBytes(b)}
	}
	// Out-of-range values come back as ±Inf or 0, which is what the
	// server meant.
	return f, nil
}

// readLine returns the next line without its CRLF. The slice is valid
// until the next read. It records the line's offset in r.lineOff.
func (r *Reader) readLine() ([]byte, error) {
	scanned := 0
	for {
		r.adopt() // every check that a line, or what it heads, may make comes after
		if i := bytes.IndexByte(r.buf[r.r+scanned:r.w], '\n'); i >= 0 {
			end := r.r + scanned + i
			r.lineOff = r.base + int64(r.r)
			if end == r.r || r.buf[end-1] != '\r' {
				return nil, &ProtocolError{Offset: r.base + int64(end), Expected: "CR before LF", Found: `'\n'`}
			}
			line := r.buf[r.r : end-1]
			if j := bytes.IndexByte(line, '\r'); j >= 0 {
				return nil, &ProtocolError{Offset: r.lineOff + int64(j) + 1, Expected: "LF after CR", Found: quoteByte(r.buf[r.r+j+1])}
			}
			if len(line) == 0 {
				return nil, &ProtocolError{Offset: r.lineOff, Expected: "a RESP type byte", Found: `'\r'`}
			}
			if len(line) > r.maxLine {
				return nil, r.lineLimit(len(line))
			}
			r.r = end + 1
			return line, nil
		}
		scanned = r.w - r.r
		if scanned-1 > r.maxLine {
			// Even if the last byte is the CR, the line is too long.
			return nil, r.lineLimit(scanned - 1)
		}
		if r.w == len(r.buf) {
			if r.probe {
				return nil, errProbe
			}
			if r.r > 0 {
				r.compact()
			} else {
				r.buf = slices.Grow(r.buf, len(r.buf))[:2*len(r.buf)]
			}
		}
		if err := r.fill(); err != nil {
			return nil, noEOF(err)
		}
	}
}

// readPayload reads n bytes and the CRLF after them. With keep it returns
// them as a string built with a single allocation when n fits the buffer.
func (r *Reader) readPayload(n int, k Kind, keep bool) (string, error) {
	if k == Verbatim {
		// The separator is checked before the rest is read, whatever the
		// payload size, so that every buffer size reports the same error.
		if err := r.ensure(4); err != nil {
			return "", err
		}
		if r.buf[r.r+3] != ':' {
			return "", r.verbatimErr(r.r + 3)
		}
	}
	if r.probe && r.w-r.r < n+2 {
		return "", errProbe // a payload can be found wrong only once all of it is here
	}
	if n+2 <= len(r.buf) {
		if err := r.ensure(n + 2); err != nil {
			return "", err
		}
		if err := r.checkCRLF(r.r+n, k); err != nil {
			return "", err
		}
		var s string
		if keep {
			s = string(r.buf[r.r : r.r+n])
		}
		r.r += n + 2
		return s, nil
	}
	var b []byte
	if keep {
		b = make([]byte, 0, min(n, maxPreallocBytes))
	}
	for rem := n; rem > 0; {
		if r.r == r.w {
			r.compact()
			if keep && rem >= len(r.buf) {
				// Read straight into the result, bypassing the buffer.
				if len(b) == cap(b) {
					b = slices.Grow(b, min(len(b), rem))
				}
				m, err := r.readRaw(b[len(b):min(cap(b), len(b)+rem)])
				b = b[:len(b)+m]
				r.base += int64(m)
				rem -= m
				if err != nil {
					return "", noEOF(err)
				}
				continue
			}
			if err := r.fill(); err != nil {
				return "", noEOF(err)
			}
		}
		m := min(rem, r.w-r.r)
		if keep {
			if cap(b)-len(b) < m {
				b = slices.Grow(b, max(m, min(len(b), rem)))
			}
			b = append(b, r.buf[r.r:r.r+m]...)
		}
		r.r += m
		rem -= m
	}
	if err := r.ensure(2); err != nil {
		return "", err
	}
	if err := r.checkCRLF(r.r, k); err != nil {
		return "", err
	}
	r.r += 2
	if !keep {
		return "", nil
	}
	// b is never written again, so it can back the string directly and
	// save a copy of a large payload.
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

func (r *Reader) lineLimit(n int) error {
	return &LimitError{Offset: r.base + int64(r.r), What: "line length", Size: int64(n), Limit: int64(r.maxLine)}
}

func (r *Reader) checkCRLF(i int, k Kind) error {
	switch {
	case r.buf[i] != '\r':
	case r.buf[i+1] != '\n':
		i++
	default:
		return nil
	}
	return &ProtocolError{Offset: r.base + int64(i), Expected: "CRLF after " + k.String(), Found: quoteByte(r.buf[i])}
}

func (r *Reader) verbatimErr(i int) error {
	return &ProtocolError{Offset: r.base + int64(i), Expected: "':' after the verbatim string format", Found: quoteByte(r.buf[i])}
}

// ensure buffers at least n bytes, n <= len(r.buf).
func (r *Reader) ensure(n int) error {
	for r.w-r.r < n {
		if r.r+n > len(r.buf) {
			if r.probe {
				return errProbe
			}
			r.compact()
		}
		if err := r.fill(); err != nil {
			return noEOF(err)
		}
	}
	return nil
}

func (r *Reader) compact() {
	copy(r.buf, r.buf[r.r:r.w])
	r.base += int64(r.r)
	r.w -= r.r
	r.r = 0
}

// fill reads once into the free space at the end of the buffer.
func (r *Reader) fill() error {
	if r.probe {
		return errProbe
	}
	n, err := r.readRaw(r.buf[r.w:])
	r.w += n
	return err
}

var errBadRead = errors.New("resp: underlying reader returned an invalid count")

// readRaw reads at least one byte into p, unless it fails. When the
// underlying reader returns data and an error together, the error is held
// back until the data has been used.
func (r *Reader) readRaw(p []byte) (int, error) {
	if r.err != nil {
		err := r.err
		r.err = nil
		return 0, err
	}
	for range maxEmptyReads {
		n, err := r.rd.Read(p)
		if n < 0 || n > len(p) {
			return 0, errBadRead
		}
		if n > 0 {
			r.err = err
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, io.ErrNoProgress
}

// noEOF turns a clean end of stream into an unexpected one, for use once
// part of a value has been read.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
