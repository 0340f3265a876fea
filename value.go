package redpipe

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/redpipe/redpipe/internal/resp"
)

// Kind is the RESP type of a reply.
type Kind byte

// The kinds of reply. RESP2 servers only produce KindSimpleString,
// KindError, KindInteger, KindBulkString, KindArray and KindNull; the rest
// are RESP3.
const (
	KindSimpleString Kind = Kind(resp.SimpleString)
	KindError        Kind = Kind(resp.Error) // both simple and bulk errors
	KindInteger      Kind = Kind(resp.Integer)
	KindBulkString   Kind = Kind(resp.BulkString)
	KindArray        Kind = Kind(resp.Array)
	KindNull         Kind = Kind(resp.Null)
	KindBoolean      Kind = Kind(resp.Boolean)
	KindDouble       Kind = Kind(resp.Double)
	KindBigNumber    Kind = Kind(resp.BigNumber)
	KindVerbatim     Kind = Kind(resp.Verbatim)
	KindMap          Kind = Kind(resp.Map)
	KindSet          Kind = Kind(resp.Set)
	KindPush         Kind = Kind(resp.Push)
)

func (k Kind) String() string { return resp.Kind(k).String() }

// Value is one reply from the server. Its accessors convert it to Go types
// and return an error rather than panic when the reply is of another type:
// the server's own error (*Error) if the reply is an error, ErrNil if it is
// nil, or a *TypeError.
//
// The zero Value is a nil reply.
type Value struct {
	v resp.Value
}

// values views decoded replies as Values without copying; Value has the
// same layout as resp.Value by construction.
func values(vs []resp.Value) []Value {
	if len(vs) == 0 {
		return nil
	}
	return unsafe.Slice((*Value)(unsafe.Pointer(unsafe.SliceData(vs))), len(vs))
}

// Kind tells the type of the reply. A RESP3 bulk error reports KindError.
func (v Value) Kind() Kind {
	switch v.v.Kind {
	case 0:
		return KindNull
	case resp.BulkError:
		return KindError
	}
	return Kind(v.v.Kind)
}

// IsNil reports whether the reply is nil (RESP3 null, or a RESP2 nil bulk
// string or nil array).
func (v Value) IsNil() bool { return v.v.Kind == resp.Null || v.v.Kind == 0 }

// Err returns the server's error if the reply is one, as an *Error, and nil
// otherwise. A nil reply is not an error here; see ErrNil. The reply of a
// cluster command split by slot one of whose parts failed may hold an
// error that wraps the part's *Error and says what became of the rest;
// so may that of a write for every master (FUNCTION LOAD, FLUSHALL) in a
// pipeline or a stream that some masters refused and others ran.
func (v Value) Err() error {
	if v.isErr() {
		return v.replyErr()
	}
	return nil
}

// isErr reports whether the reply is an error, without making one.
func (v Value) isErr() bool { return v.v.Kind == resp.Error || v.v.Kind == resp.BulkError }

// replyErr is the error of an error reply: the one the client kept in a
// reply it made (madeErrorValue), or an *Error of the server's text.
func (v Value) replyErr() error {
	if v.v.Aux != nil {
		if m, ok := v.v.Aux.Extra.(madeErr); ok {
			return m.err
		}
	}
	return newError(v.v.Str)
}

// madeErr is kept in the Aux of an error reply that the client made
// rather than read, such as the reply of a split cluster command one of
// whose parts failed, or whose error it settled when it read it (a
// script's, a read's on the Tx of a Transaction); Err and the accessors
// return its err.
type madeErr struct{ err error }

// madeErrorValue makes an error reply that stands for err.
func madeErrorValue(err error) resp.Value {
	return resp.Value{Kind: resp.Error, Str: err.Error(), Aux: &resp.Aux{Extra: madeErr{err}}}
}

// check returns the error an accessor reports before converting.
func (v Value) check() error {
	switch v.v.Kind {
	case resp.Error, resp.BulkError:
		return v.replyErr()
	case resp.Null, 0:
		return ErrNil
	}
	return nil
}

func (v Value) typeErr(want string) error {
	return &TypeError{Want: want, Got: v.Kind().String()}
}

// unreadable is the *TypeError of a reply of a kind want can be read from
// whose content cannot be: text that is not a number, say. cause, if not
// nil, is kept for errors.Is and errors.As; the message says what in the
// reply stood in the way.
func (v Value) unreadable(want string, cause error, format string, args ...any) error {
	return &TypeError{Want: want, Got: v.Kind().String(), Err: cause, why: fmt.Sprintf(format, args...)}
}

// Text returns a string, bulk string, verbatim string or big number reply
// as a string; an integer, double or boolean reply as its decimal text. A
// boolean reads as 1 or 0, the integer RESP2 sends for it. A double reads
// as the server wrote it, which is also what RESP2 sends for it; one built
// with NewValue as its shortest form, with inf, -inf and nan as RESP3
// spells them. String shows a double the same way.
func (v Value) Text() (string, error) {
	// The common kinds are answered here, in a method small enough to be
	// inlined: a caller checking a batch's replies then reads the fields in
	// place instead of copying each Value into a call.
	if plainText[v.v.Kind] {
		return v.v.Str, nil
	}
	return v.text()
}

// plainText marks the kinds whose text is their Str as it is.
var plainText = [256]bool{resp.SimpleString: true, resp.BulkString: true, resp.Verbatim: true, resp.BigNumber: true}

func (v Value) text() (string, error) {
	if err := v.check(); err != nil {
		return "", err
	}
	switch v.v.Kind {
	case resp.SimpleString, resp.BulkString, resp.Verbatim, resp.BigNumber:
		return v.v.Str, nil
	case resp.Integer:
		return strconv.FormatInt(v.v.Int, 10), nil
	case resp.Double:
		return v.doubleText(), nil
	case resp.Boolean:
		return strconv.FormatInt(v.v.Int, 10), nil
	}
	return "", v.typeErr("string")
}

// doubleText is the text of a double reply: the server's own, which is
// also what it sends for the same reply under RESP2, or, for a double
// built with NewValue or whose text is the shortest form of its value,
// that form with infinities and NaN spelled as RESP3 spells them.
func (v Value) doubleText() string {
	if v.v.Str != "" {
		return v.v.Str
	}
	return formatDouble(v.v.Float())
}

// Bytes is Text as a byte slice, a copy the caller owns.
func (v Value) Bytes() ([]byte, error) {
	s, err := v.Text()
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// Int64 returns an integer reply, or a string reply that holds a decimal
// integer (GET of a counter). A verbatim string is a string here too, as
// RESP2 sends it as a bulk string. The text of a string is read as the
// server reads a counter's for INCR: an optional '-' and decimal digits,
// without a '+', spaces, leading zeros or "-0", so that what the server
// would not count with is not read as an integer either.
func (v Value) Int64() (int64, error) {
	if v.v.Kind == resp.Integer { // inlined, as in Text
		return v.v.Int, nil
	}
	return v.int64()
}

func (v Value) int64() (int64, error) {
	if err := v.check(); err != nil {
		return 0, err
	}
	switch v.v.Kind {
	case resp.Integer:
		return v.v.Int, nil
	case resp.Boolean:
		return v.v.Int, nil
	case resp.SimpleString, resp.BulkString, resp.Verbatim, resp.BigNumber:
		var n int64
		var err error
		if v.v.Kind == resp.BigNumber {
			// The RESP reader checked its digits, and RESP allows a '+'.
			n, err = strconv.ParseInt(v.v.Str, 10, 64)
		} else {
			n, err = parseServerInt(v.v.Str)
		}
		if errors.Is(err, strconv.ErrRange) {
			return 0, v.unreadable("int64", err, "%q is an integer outside the int64 range", clip(v.v.Str))
		}
		if err != nil {
			return 0, v.unreadable("int64", err, "%q is not an integer", clip(v.v.Str))
		}
		return n, nil
	case resp.Double:
		f := v.v.Float()
		switch {
		case f != math.Trunc(f) || math.IsInf(f, 0):
			return 0, v.unreadable("int64", nil, "%s is not an integer", v.doubleText())
		case f < -(1<<63) || f >= 1<<63:
			// -2^63 is an int64; 2^63 is not.
			return 0, v.unreadable("int64", strconv.ErrRange, "%s is an integer outside the int64 range", v.doubleText())
		}
		return int64(f), nil
	}
	return 0, v.typeErr("int64")
}

// Float64 returns a double or integer reply, or a string reply holding a
// number (ZSCORE under RESP2, INCRBYFLOAT). As in Int64, a verbatim string
// is a string, and a boolean reads as 1 or 0, as RESP2 sends them. The
// text of a number is read as the server writes one: decimal digits with
// an optional sign, fraction and exponent, or inf, -inf or nan, the text
// RESP2 sends for a double that RESP3 sends as a double; a number beyond
// the float64 range, such as a huge big number, is an error.
func (v Value) Float64() (float64, error) {
	if err := v.check(); err != nil {
		return 0, err
	}
	switch v.v.Kind {
	case resp.Double:
		return v.v.Float(), nil
	case resp.Integer, resp.Boolean:
		return float64(v.v.Int), nil
	case resp.SimpleString, resp.BulkString, resp.Verbatim, resp.BigNumber:
		f, err := parseDouble(v.v.Str)
		if errors.Is(err, errFloatRange) {
			return 0, v.unreadable("float64", &strconv.NumError{Func: "ParseFloat", Num: v.v.Str, Err: strconv.ErrRange},
				"%q is a number outside the float64 range", clip(v.v.Str))
		}
		if err != nil {
			return 0, v.unreadable("float64", &strconv.NumError{Func: "ParseFloat", Num: v.v.Str, Err: strconv.ErrSyntax},
				"%q is not a number", clip(v.v.Str))
		}
		return f, nil
	}
	return 0, v.typeErr("float64")
}

// Bool returns a boolean reply, an integer reply as non-zero, or an OK
// status as true: the forms Redis uses for yes/no answers.
func (v Value) Bool() (bool, error) {
	if err := v.check(); err != nil {
		return false, err
	}
	switch v.v.Kind {
	case resp.Boolean, resp.Integer:
		return v.v.Int != 0, nil
	case resp.SimpleString:
		if v.v.Str == "OK" {
			return true, nil
		}
		// Another status, such as QUEUED, is most likely the reply of
		// another command: its text helps tell which.
		return false, v.unreadable("bool", nil, "%q is not OK", clip(v.v.Str))
	}
	return false, v.typeErr("bool")
}

// Slice returns the elements of an array, set or push reply. A map reply
// gives its keys and values interleaved. An empty reply gives an empty
// slice, not nil, as Strings and the other list readers do: nil stays
// the mark of no list at all.
func (v Value) Slice() ([]Value, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	switch v.v.Kind {
	case resp.Array, resp.Set, resp.Push, resp.Map:
		if len(v.v.Elems) == 0 {
			return []Value{}, nil
		}
		return values(v.v.Elems), nil
	}
	return nil, v.typeErr("slice")
}

// Len returns the number of elements of an aggregate reply (pairs, for a
// map) and 0 for any other reply. It counts what the server sent, which
// depends on the protocol: HGETALL's map, or ZRANGE WITHSCORES's list of
// pairs, comes under RESP2 as a flat array of twice as many elements.
// Map, StringMap and Strings read both forms alike.
func (v Value) Len() int {
	switch v.v.Kind {
	case resp.Map:
		return len(v.v.Elems) / 2
	case resp.Array, resp.Set, resp.Push:
		return len(v.v.Elems)
	}
	return 0
}

// Strings returns an array or set of strings. A nil or error element is an
// error that names its position. A RESP3 list of pairs, such as ZRANGE
// WITHSCORES sends, is read as the flat list RESP2 sends instead:
// [[a, 1], [b, 2]] as [a 1 b 2].
func (v Value) Strings() ([]string, error) { return elemsOf(v.unpaired(), Value.Text) }

// unpaired returns v with a list of pairs, an array whose elements are all
// arrays of two, made flat: that is how RESP3 sends what RESP2 sends as
// one array of alternating items (ZRANGE WITHSCORES, HRANDFIELD
// WITHVALUES), and the readers of lists and maps take both alike. Any
// other reply is returned as it is.
func (v Value) unpaired() Value {
	if v.v.Kind != resp.Array || len(v.v.Elems) == 0 {
		return v
	}
	for _, e := range v.v.Elems {
		if e.Kind != resp.Array || len(e.Elems) != 2 {
			return v
		}
	}
	flat := make([]resp.Value, 0, 2*len(v.v.Elems))
	for _, e := range v.v.Elems {
		flat = append(flat, e.Elems...)
	}
	return Value{resp.Value{Kind: resp.Array, Elems: flat}}
}

// Int64s returns an array or set of integers. Like Strings, it reads a
// RESP3 list of pairs as the flat list RESP2 sends.
func (v Value) Int64s() ([]int64, error) { return elemsOf(v.unpaired(), Value.Int64) }

// elemsOf converts every element of an array or set reply with conv; an
// element it refuses is an error that names its position.
func elemsOf[T any](v Value, conv func(Value) (T, error)) ([]T, error) {
	elems, err := v.Slice()
	if err != nil {
		return nil, err
	}
	out := make([]T, len(elems))
	for i, e := range elems {
		x, err := conv(e)
		if err != nil {
			return nil, fmt.Errorf("redpipe: element %d: %w", i, err)
		}
		out[i] = x
	}
	return out, nil
}

// pairs returns the key/value elements of a RESP3 map, of a RESP2 flat
// array of alternating keys and values, which is how RESP2 sends maps, or
// of a RESP3 list of pairs (see unpaired).
func (v Value) pairs(want string) ([]Value, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	v = v.unpaired()
	switch v.v.Kind {
	case resp.Map:
		return values(v.v.Elems), nil
	case resp.Array:
		if len(v.v.Elems)%2 != 0 {
			return nil, v.unreadable(want, nil, "%d elements are not a list of pairs", len(v.v.Elems))
		}
		return values(v.v.Elems), nil
	}
	return nil, v.typeErr(want)
}

// Scored is a sorted set member with its score, as the replies of
// ZRANGE WITHSCORES, ZPOPMIN and the like give them.
type Scored struct {
	Member string
	Score  float64
}

// Scored reads a reply of members and their scores, in the order the
// server sent them: a RESP2 flat array of alternating members and scores,
// or the RESP3 list of pairs, alike. A score of inf or -inf reads as an
// infinity. An element that is not a member followed by its score is an
// error that names its position.
func (v Value) Scored() ([]Scored, error) {
	kv, err := v.pairs("scored members")
	if err != nil {
		return nil, err
	}
	out := make([]Scored, len(kv)/2)
	for i := range out {
		m, err := kv[2*i].Text()
		if err != nil {
			return nil, fmt.Errorf("redpipe: member %d: %w", i, err)
		}
		f, err := kv[2*i+1].Float64()
		if err != nil {
			return nil, fmt.Errorf("redpipe: score of member %d: %w", i, err)
		}
		out[i] = Scored{Member: m, Score: f}
	}
	return out, nil
}

// Map returns a map reply (or a RESP2 array of alternating keys and
// values) keyed by the keys' text. A key that comes more than once, as a
// field may in the reply of HRANDFIELD with a negative count, keeps the
// value that comes last; read the reply with Slice to see every pair.
func (v Value) Map() (map[string]Value, error) {
	kv, err := v.pairs("map")
	if err != nil {
		return nil, err
	}
	out := make(map[string]Value, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, err := kv[i].Text()
		if err != nil {
			return nil, fmt.Errorf("redpipe: map key %d: %w", i/2, err)
		}
		out[k] = kv[i+1]
	}
	return out, nil
}

// StringMap is Map with every value read as text (HGETALL, CONFIG GET),
// and as in Map, a key that comes more than once keeps its last value.
func (v Value) StringMap() (map[string]string, error) {
	kv, err := v.pairs("map")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, err := kv[i].Text()
		if err != nil {
			return nil, fmt.Errorf("redpipe: map key %d: %w", i/2, err)
		}
		s, err := kv[i+1].Text()
		if err != nil {
			return nil, fmt.Errorf("redpipe: map value of %q: %w", clip(k), err)
		}
		out[k] = s
	}
	return out, nil
}

// Attrs returns the RESP3 attributes the server sent with this reply, keys
// and values interleaved, or nil.
func (v Value) Attrs() []Value { return values(v.v.Attrs()) }

// String formats the reply for people, roughly as redis-cli does: strings
// as they are, nil as "nil", errors with an "(error)" mark, aggregates in
// brackets. Inside an aggregate, a string or error text that is empty,
// reads "nil", or holds a space, a bracket, a quote or a byte that does
// not print, or, in a map, a colon, is quoted as Go quotes strings, so
// that ["a b"] does not print as [a b], the form of two elements. It is
// not a conversion: use Text for that.
func (v Value) String() string {
	var b strings.Builder
	v.format(&b, top)
	return b.String()
}

// Format prints v under fmt's verbs as a reply reads, never as the
// fields that hold it: %v and %s print String, with %q, %x and %X
// applied to it; %#v adds the reply's kind, which String does not tell
// ("42" is an integer or text), quoting text: redpipe.Value(bulk string
// "42"). %d, %b, %o and %O print what Int64 returns, the floating-point
// verbs what Float64 returns and %t what Bool returns, with fmt's flags,
// width and precision; a reply they cannot read prints as fmt prints a
// wrong verb, %!d(redpipe.Value=abc).
func (v Value) Format(f fmt.State, verb rune) {
	switch verb {
	case 'v':
		if f.Flag('#') {
			fmt.Fprintf(f, "redpipe.Value(%s)", v.goString())
			return
		}
		fmt.Fprintf(f, fmt.FormatString(f, 's'), v.String())
		return
	case 's', 'q', 'x', 'X':
		fmt.Fprintf(f, fmt.FormatString(f, verb), v.String())
		return
	case 'd', 'b', 'o', 'O':
		if n, err := v.Int64(); err == nil {
			fmt.Fprintf(f, fmt.FormatString(f, verb), n)
			return
		}
	case 'e', 'E', 'f', 'F', 'g', 'G':
		if x, err := v.Float64(); err == nil {
			fmt.Fprintf(f, fmt.FormatString(f, verb), x)
			return
		}
	case 't':
		if b, err := v.Bool(); err == nil {
			fmt.Fprintf(f, fmt.FormatString(f, verb), b)
			return
		}
	}
	fmt.Fprintf(f, "%%!%c(redpipe.Value=%s)", verb, v.String())
}

// goString is what %#v prints inside redpipe.Value(...): the kind, then
// the text quoted or the rest as String prints it.
func (v Value) goString() string {
	switch v.v.Kind {
	case resp.Null, 0:
		return "nil"
	case resp.SimpleString, resp.BulkString, resp.Verbatim, resp.Error, resp.BulkError:
		kind := resp.Kind(v.v.Kind).String()
		return kind + " " + strconv.Quote(v.v.Str)
	}
	return v.Kind().String() + " " + v.String()
}

// Where format writes a value: at the top, where text is written as it
// is, or in an array or a map, where some text needs quotes.
const (
	top = iota
	inArray
	inMap
)

// format writes v for String, in the place where says.
func (v Value) format(b *strings.Builder, where int) {
	switch v.v.Kind {
	case resp.Null, 0:
		b.WriteString("nil")
	case resp.Error, resp.BulkError:
		b.WriteString("(error) ")
		writeText(b, v.v.Str, where)
	case resp.Integer:
		b.WriteString(strconv.FormatInt(v.v.Int, 10))
	case resp.Boolean:
		b.WriteString(strconv.FormatBool(v.v.Int != 0))
	case resp.Double:
		b.WriteString(v.doubleText())
	case resp.Array, resp.Set, resp.Push:
		b.WriteByte('[')
		for i, e := range values(v.v.Elems) {
			if i > 0 {
				b.WriteByte(' ')
			}
			e.format(b, inArray)
		}
		b.WriteByte(']')
	case resp.Map:
		b.WriteString("map[")
		for i, e := range values(v.v.Elems) {
			switch {
			case i == 0:
			case i%2 == 1:
				b.WriteByte(':')
			default:
				b.WriteByte(' ')
			}
			e.format(b, inMap)
		}
		b.WriteByte(']')
	default:
		writeText(b, v.v.Str, where)
	}
}

// writeText writes s, quoted if it is in an aggregate and would
// otherwise be mistaken for another element, for nil, or for the
// aggregate's own punctuation, or would not print. A colon, common in
// key names, needs quotes only in a map, where it parts keys from values.
func writeText(b *strings.Builder, s string, where int) {
	if where != top && needsQuotes(s, where == inMap) {
		b.WriteString(strconv.Quote(s))
		return
	}
	b.WriteString(s)
}

func needsQuotes(s string, colon bool) bool {
	if s == "" || s == "nil" || !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		switch {
		case r == ' ', r == '[', r == ']', r == '"', r == ':' && colon:
			return true
		case !unicode.IsPrint(r):
			return true
		}
	}
	return false
}

// NewValue makes a Value from a Go value, for tests and reply decoders:
// nil, string, []byte, integers of any size (an unsigned one beyond the
// int64 range becomes a big number), float32 and float64, bool, error,
// []Value and []any. Other types panic, as this is meant for literals.
func NewValue(x any) Value {
	switch x := x.(type) {
	case nil:
		return Value{resp.Value{Kind: resp.Null}}
	case Value:
		return x
	case string:
		return Value{resp.Value{Kind: resp.BulkString, Str: x}}
	case []byte:
		return Value{resp.Value{Kind: resp.BulkString, Str: string(x)}}
	case int:
		return intValue(int64(x))
	case int8:
		return intValue(int64(x))
	case int16:
		return intValue(int64(x))
	case int32:
		return intValue(int64(x))
	case int64:
		return intValue(x)
	case uint:
		return uintValue(uint64(x))
	case uint8:
		return uintValue(uint64(x))
	case uint16:
		return uintValue(uint64(x))
	case uint32:
		return uintValue(uint64(x))
	case uint64:
		return uintValue(x)
	case float32:
		return Value{resp.DoubleValue(float64(x))}
	case float64:
		return Value{resp.DoubleValue(x)}
	case bool:
		var n int64
		if x {
			n = 1
		}
		return Value{resp.Value{Kind: resp.Boolean, Int: n}}
	case error:
		return Value{resp.Value{Kind: resp.Error, Str: x.Error()}}
	case []Value:
		elems := make([]resp.Value, len(x))
		for i, e := range x {
			elems[i] = e.v
		}
		return Value{resp.Value{Kind: resp.Array, Elems: elems}}
	case []any:
		elems := make([]resp.Value, len(x))
		for i, e := range x {
			elems[i] = NewValue(e).v
		}
		return Value{resp.Value{Kind: resp.Array, Elems: elems}}
	}
	panic(fmt.Sprintf("redpipe: NewValue of unsupported type %T", x))
}

func intValue(n int64) Value { return Value{resp.Value{Kind: resp.Integer, Int: n}} }

// uintValue makes an integer reply of n, or a big number when n is beyond
// the int64 range of a RESP integer, as the server itself would send it.
func uintValue(n uint64) Value {
	if n > math.MaxInt64 {
		return Value{resp.Value{Kind: resp.BigNumber, Str: strconv.FormatUint(n, 10)}}
	}
	return intValue(int64(n))
}

// formatDouble spells f as the server does in RESP3, where infinities
// are inf and -inf and NaN is nan, rather than as strconv does.
func formatDouble(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// errFloatRange marks text that is a number too large for a float64.
var errFloatRange = errors.New("outside the float64 range")

// parseDouble reads the text of a number as the server writes one: an
// optional sign, decimal digits with an optional fraction and exponent,
// or inf or nan in any case with an optional sign (a NaN double comes
// under RESP2 as "nan" or "-nan"). strconv alone would also take hex
// floats, underscores between digits and "infinity", none of which a
// server means as a number, and so read "1_0" as 10.
func parseDouble(s string) (float64, error) {
	body := s
	if body != "" && (body[0] == '+' || body[0] == '-') {
		body = body[1:]
	}
	switch strings.ToLower(body) {
	case "inf":
		if s[0] == '-' {
			return math.Inf(-1), nil
		}
		return math.Inf(1), nil
	case "nan":
		return math.NaN(), nil
	}
	if n, missing := resp.ScanDecimal(body); missing != "" || n != len(body) {
		return 0, strconv.ErrSyntax
	}
	f, err := strconv.ParseFloat(s, 64)
	if errors.Is(err, strconv.ErrRange) && math.IsInf(f, 0) {
		return 0, errFloatRange
	}
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, err
	}
	// An underflow reads as the zero or the tiny number it rounds to.
	return f, nil
}

// parseServerInt reads s as the server reads the value of a key for INCR
// (string2ll): "0", or an optional '-' then digits that do not start with
// 0, in the int64 range. strconv.ParseInt would also take "+1", "01" and
// "-0", whose keys INCR refuses. Its errors are strconv's.
func parseServerInt(s string) (int64, error) {
	if s == "0" {
		return 0, nil
	}
	digits := s
	if digits != "" && digits[0] == '-' {
		digits = digits[1:]
	}
	if digits == "" || digits[0] < '1' || digits[0] > '9' {
		return 0, &strconv.NumError{Func: "ParseInt", Num: s, Err: strconv.ErrSyntax}
	}
	for i := 1; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, &strconv.NumError{Func: "ParseInt", Num: s, Err: strconv.ErrSyntax}
		}
	}
	// Only digits are left, with an optional '-': strconv gives the range.
	return strconv.ParseInt(s, 10, 64)
}

// clip shortens a reply quoted in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
