// Package resp reads and writes the Redis serialization protocol, versions 2
// and 3. It works on byte streams and byte slices only; connection handling
// lives elsewhere.
package resp

import (
	"math"
	"strconv"
)

// Kind is the RESP type byte of a value.
type Kind byte

// The RESP2 and RESP3 type bytes.
const (
	SimpleString Kind = '+'
	Error        Kind = '-' // simple error
	Integer      Kind = ':'
	BulkString   Kind = '$'
	Array        Kind = '*'
	Null         Kind = '_' // RESP3 null; RESP2 "$-1\r\n" and "*-1\r\n" decode as this too
	Boolean      Kind = '#'
	Double       Kind = ','
	BigNumber    Kind = '('
	BulkError    Kind = '!'
	Verbatim     Kind = '='
	Map          Kind = '%'
	Set          Kind = '~'
	Attribute    Kind = '|' // never the Kind of a returned Value: attributes are attached to the value that follows
	Push         Kind = '>'
)

// Aggregate reports whether a value of kind k holds other values: an
// array, map, set or push, or the attributes that come before a value.
func (k Kind) Aggregate() bool {
	switch k {
	case Array, Map, Set, Push, Attribute:
		return true
	}
	return false
}

// String returns the spec's name for the kind, e.g. "bulk string".
func (k Kind) String() string {
	switch k {
	case SimpleString:
		return "simple string"
	case Error:
		return "error"
	case Integer:
		return "integer"
	case BulkString:
		return "bulk string"
	case Array:
		return "array"
	case Null:
		return "null"
	case Boolean:
		return "boolean"
	case Double:
		return "double"
	case BigNumber:
		return "big number"
	case BulkError:
		return "bulk error"
	case Verbatim:
		return "verbatim string"
	case Map:
		return "map"
	case Set:
		return "set"
	case Attribute:
		return "attribute"
	case Push:
		return "push"
	}
	return "kind(" + quoteByte(byte(k)) + ")"
}

// Value is one decoded reply.
//
// A pipeline keeps one Value per command until the caller is done with the
// replies, so the struct is kept to 64 bytes: the payload of the common
// kinds lives inline, and the fields only a few rare replies need are
// behind the Aux pointer, which is nil for almost every reply.
type Value struct {
	Kind Kind
	// Str holds the text of SimpleString, Error, BulkError (the whole text,
	// e.g. "ERR bad thing"), BulkString, Verbatim (the text after the
	// "txt:" prefix) and BigNumber (the digits, with any sign). For a
	// Double read from the wire it holds the server's text of the number
	// unless that is the shortest 'g' format of its value (strconv's
	// FormatFloat(f, 'g', -1, 64)). It is empty for the other kinds.
	Str string
	// Int holds an Integer, a Boolean as 1 or 0, or the IEEE 754 bits of a
	// Double (math.Float64bits; read it with Float, build one with
	// DoubleValue). A Double shares this field rather than having its own
	// because no reply is both.
	Int int64
	// Elems holds the elements of an Array, Set or Push, and the keys and
	// values of a Map interleaved as k0, v0, k1, v1, ...
	Elems []Value
	// Aux holds what only a few replies carry: attributes, a Verbatim
	// format, the client's decoded result. It is nil when there is none.
	Aux *Aux
}

// Aux is the rarely used part of a Value. Copying a Value copies the
// pointer, so an Aux may be shared by several Values: once it is attached,
// treat it as read-only, and to change a field attach a modified copy.
type Aux struct {
	// Attrs holds the attribute map that preceded the value, interleaved
	// like a Map. It is nil when there was none.
	Attrs []Value
	// Format is the 3-byte format of a Verbatim string, e.g. "txt" or "mkd".
	Format string
	// Extra is not part of the protocol: the reader leaves it nil, and the
	// client keeps what a reply decoder made of the value here.
	Extra any
}

// DoubleValue returns a Double holding f.
func DoubleValue(f float64) Value {
	return Value{Kind: Double, Int: int64(math.Float64bits(f))}
}

// Float returns the value of a Double, including ±Inf and NaN, and 0 for
// any other kind.
func (v Value) Float() float64 {
	if v.Kind != Double {
		return 0
	}
	return math.Float64frombits(uint64(v.Int))
}

// Attrs returns the attributes that preceded the value, interleaved like a
// Map, or nil.
func (v Value) Attrs() []Value {
	if v.Aux == nil {
		return nil
	}
	return v.Aux.Attrs
}

// Format returns the format of a Verbatim string, e.g. "txt", or "".
func (v Value) Format() string {
	if v.Aux == nil {
		return ""
	}
	return v.Aux.Format
}

// Equal reports whether v and w are the same reply. Unlike ==, it compares
// the elements and attributes, and it treats two NaN doubles as equal
// because a NaN from the wire is one value, not an absence of one. Doubles
// compare as numbers, whatever the server's text of them, so 0 equals -0.
// A nil and an empty slice are equal, and so are a nil Aux and an empty
// one; Extra is not compared, as it is not part of the reply.
func (v Value) Equal(w Value) bool {
	if v.Kind != w.Kind || (v.Str != w.Str && v.Kind != Double) || v.Format() != w.Format() {
		return false
	}
	if v.Kind == Double {
		f, g := v.Float(), w.Float()
		if f != g && !(math.IsNaN(f) && math.IsNaN(g)) {
			return false
		}
	} else if v.Int != w.Int {
		return false
	}
	return equalValues(v.Elems, w.Elems) && equalValues(v.Attrs(), w.Attrs())
}

func equalValues(a, b []Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// ProtocolError is malformed input. After one, the stream position is
// undefined and the connection should be discarded.
type ProtocolError struct {
	Offset   int64  // byte offset in the stream where the problem is
	Expected string // what the reader expected
	Found    string // what it found (quoted and short), may be ""
}

func (e *ProtocolError) Error() string {
	s := "resp: malformed reply at byte " + strconv.FormatInt(e.Offset, 10) + ": expected " + e.Expected
	if e.Found != "" {
		s += ", found " + e.Found
	}
	return s
}

// LimitError is input that is well formed but over a configured limit.
// Like a ProtocolError it leaves the stream position undefined.
type LimitError struct {
	Offset int64
	What   string // "bulk string length", "array length", "nesting depth", "line length"
	Size   int64
	Limit  int64
}

func (e *LimitError) Error() string {
	return "resp: " + e.What + " " + strconv.FormatInt(e.Size, 10) + " at byte " +
		strconv.FormatInt(e.Offset, 10) + " exceeds the limit of " + strconv.FormatInt(e.Limit, 10)
}

// ArgError is a command argument that cannot be encoded: its Go type has
// no encoding, the type is refused for the reason Why, or its own encoding
// method failed with Err.
type ArgError struct {
	Type   string // the Go type, as fmt's %T prints it
	Why    string // why a type that could be encoded is refused, if it is
	Method string // the encoding method that failed, with Err
	Err    error
}

func (e *ArgError) Error() string {
	switch {
	case e.Err != nil:
		return "resp: " + e.Method + " of " + e.Type + " failed: " + e.Err.Error()
	case e.Why != "":
		return "resp: cannot encode argument of type " + e.Type + ": " + e.Why
	}
	return "resp: cannot encode argument of type " + e.Type +
		" (use string, []byte, an integer, a float, a bool, time.Time, or a type with a MarshalBinary, MarshalText or String method)"
}

// Unwrap returns the error of the encoding method that failed, if one did.
func (e *ArgError) Unwrap() error { return e.Err }

// quoteByte renders one byte for an error message, escaping anything that
// is not printable ASCII so that binary garbage stays readable.
func quoteByte(c byte) string {
	switch {
	case c == '\'' || c == '\\':
		return `'\` + string(rune(c)) + `'`
	case c >= 0x20 && c < 0x7f:
		return "'" + string(rune(c)) + "'"
	case c == '\r':
		return `'\r'`
	case c == '\n':
		return `'\n'`
	case c == '\t':
		return `'\t'`
	}
	const hex = "0123456789abcdef"
	return `'\x` + string([]byte{hex[c>>4], hex[c&15]}) + "'"
}

// quoteBytes renders a short excerpt of b for an error message.
func quoteBytes(b []byte) string {
	const max = 24
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}
