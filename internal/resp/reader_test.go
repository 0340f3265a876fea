package resp

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"unsafe"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func str(k Kind, s string) Value { return Value{Kind: k, Str: s} }
func num(i int64) Value          { return Value{Kind: Integer, Int: i} }

// dbl is a double read from the wire in a form other than its shortest,
// which keeps the server's text.
func dbl(text string, f float64) Value {
	v := DoubleValue(f)
	v.Str = text
	return v
}
func agg(k Kind, e ...Value) Value {
	if e == nil {
		e = []Value{}
	}
	return Value{Kind: k, Elems: e}
}

// readerKinds runs f against readers that deliver the same input in
// different ways, so that buffer refills land everywhere.
func readerKinds(input string) map[string]*Reader {
	return map[string]*Reader{
		"whole":   NewReader(strings.NewReader(input), Limits{}),
		"onebyte": NewReaderSize(iotest.OneByteReader(strings.NewReader(input)), 16, Limits{}),
		"dataerr": NewReaderSize(iotest.DataErrReader(strings.NewReader(input)), 16, Limits{}),
	}
}

func TestReadValue(t *testing.T) {
	binary := "a\r\n\x00b\r!"
	tests := []struct {
		name  string
		input string
		want  Value
	}{
		{"simple", "+OK\r\n", str(SimpleString, "OK")},
		{"simple other", "+hello world\r\n", str(SimpleString, "hello world")},
		{"simple empty", "+\r\n", str(SimpleString, "")},
		{"error", "-ERR bad thing\r\n", str(Error, "ERR bad thing")},
		{"integer", ":1000\r\n", num(1000)},
		{"integer neg", ":-42\r\n", num(-42)},
		{"integer plus", ":+7\r\n", num(7)},
		{"integer max", ":9223372036854775807\r\n", num(math.MaxInt64)},
		{"integer min", ":-9223372036854775808\r\n", num(math.MinInt64)},
		{"bulk", "$5\r\nhello\r\n", str(BulkString, "hello")},
		{"bulk empty", "$0\r\n\r\n", str(BulkString, "")},
		{"bulk binary", "$7\r\n" + binary + "\r\n", str(BulkString, binary)},
		{"resp2 null bulk", "$-1\r\n", Value{Kind: Null}},
		{"resp2 null array", "*-1\r\n", Value{Kind: Null}},
		{"null", "_\r\n", Value{Kind: Null}},
		{"true", "#t\r\n", Value{Kind: Boolean, Int: 1}},
		{"false", "#f\r\n", Value{Kind: Boolean}},
		{"double", ",1.23\r\n", DoubleValue(1.23)},
		{"double int", ",10\r\n", DoubleValue(10)},
		{"double neg exp", ",-1.5e-3\r\n", dbl("-1.5e-3", -1.5e-3)},
		{"double exp plus", ",1E+2\r\n", dbl("1E+2", 100)},
		{"double fraction only", ",.5\r\n", dbl(".5", 0.5)},
		{"double inf", ",inf\r\n", dbl("inf", math.Inf(1))},
		{"double -inf", ",-inf\r\n", dbl("-inf", math.Inf(-1))},
		{"double overflow", ",1e400\r\n", dbl("1e400", math.Inf(1))},
		// The text RESP2 sends for the same number: Text returns it.
		{"double 17 digits", ",0.10000000000000001\r\n", dbl("0.10000000000000001", 0.1)},
		{"big number", "(3492890328409238509324850943850943825024385\r\n", str(BigNumber, "3492890328409238509324850943850943825024385")},
		{"big number neg", "(-1\r\n", str(BigNumber, "-1")},
		{"bulk error", "!21\r\nSYNTAX invalid syntax\r\n", str(BulkError, "SYNTAX invalid syntax")},
		{"verbatim", "=15\r\ntxt:Some string\r\n", Value{Kind: Verbatim, Str: "Some string", Aux: &Aux{Format: "txt"}}},
		{"verbatim empty", "=4\r\nmkd:\r\n", Value{Kind: Verbatim, Str: "", Aux: &Aux{Format: "mkd"}}},
		{"array", "*2\r\n$3\r\nfoo\r\n:1\r\n", agg(Array, str(BulkString, "foo"), num(1))},
		{"array empty", "*0\r\n", agg(Array)},
		{"array with null", "*3\r\n$-1\r\n_\r\n*-1\r\n", agg(Array, Value{Kind: Null}, Value{Kind: Null}, Value{Kind: Null})},
		{"map", "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", agg(Map, str(SimpleString, "first"), num(1), str(SimpleString, "second"), num(2))},
		{"map empty", "%0\r\n", agg(Map)},
		{"set", "~2\r\n+a\r\n+b\r\n", agg(Set, str(SimpleString, "a"), str(SimpleString, "b"))},
		{"set empty", "~0\r\n", agg(Set)},
		{"push", ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", agg(Push, str(BulkString, "message"), str(BulkString, "ch"), str(BulkString, "hi"))},
		{"nested map in array", "*2\r\n%1\r\n+k\r\n*1\r\n:1\r\n~0\r\n",
			agg(Array, agg(Map, str(SimpleString, "k"), agg(Array, num(1))), agg(Set))},
		{"attribute", "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
			Value{Kind: Array, Elems: []Value{num(2039123), num(9543892)}, Aux: &Aux{Attrs: []Value{
				str(SimpleString, "key-popularity"),
				agg(Map, str(BulkString, "a"), DoubleValue(0.1923), str(BulkString, "b"), DoubleValue(0.0012)),
			}}}},
		{"attribute on element", "*2\r\n:1\r\n|1\r\n+ttl\r\n:3\r\n:2\r\n",
			agg(Array, num(1), Value{Kind: Integer, Int: 2, Aux: &Aux{Attrs: []Value{str(SimpleString, "ttl"), num(3)}}})},
		{"attributes merged", "|1\r\n+a\r\n:1\r\n|1\r\n+b\r\n:2\r\n_\r\n",
			Value{Kind: Null, Aux: &Aux{Attrs: []Value{str(SimpleString, "a"), num(1), str(SimpleString, "b"), num(2)}}}},
		{"attribute empty", "|0\r\n+OK\r\n", Value{Kind: SimpleString, Str: "OK", Aux: &Aux{Attrs: []Value{}}}},
	}
	for _, tt := range tests {
		for how, r := range readerKinds(tt.input + ":99\r\n") {
			got, err := r.ReadValue()
			if err != nil {
				t.Errorf("%s/%s: %v", tt.name, how, err)
				continue
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s/%s:\n got %#v\nwant %#v", tt.name, how, got, tt.want)
			}
			if off := r.Offset(); off != int64(len(tt.input)) {
				t.Errorf("%s/%s: Offset %d, want %d", tt.name, how, off, len(tt.input))
			}
			// The reader must stop exactly at the end of the value.
			if next, err := r.ReadValue(); err != nil || !next.Equal(num(99)) {
				t.Errorf("%s/%s: next value %#v, %v", tt.name, how, next, err)
			}
			if _, err := r.ReadValue(); err != io.EOF {
				t.Errorf("%s/%s: at end got %v, want io.EOF", tt.name, how, err)
			}
		}
		// Skip must consume the same bytes.
		r := NewReader(strings.NewReader(tt.input+":99\r\n"), Limits{})
		if err := r.Skip(); err != nil || r.Offset() != int64(len(tt.input)) {
			t.Errorf("%s: Skip: %v at offset %d", tt.name, err, r.Offset())
		}
	}
}

func TestReadNaN(t *testing.T) {
	for _, in := range []string{",nan\r\n", ",-nan\r\n", ",NaN\r\n"} {
		v, err := NewReader(strings.NewReader(in), Limits{}).ReadValue()
		if err != nil || v.Kind != Double || !math.IsNaN(v.Float()) {
			t.Errorf("%q: got %#v, %v", in, v, err)
		}
	}
}

func TestReadLargeBulk(t *testing.T) {
	// Larger than both the buffer and the preallocation cap, so every
	// path of the payload reader is used.
	payload := strings.Repeat("0123456789abcdef\r\n", 200000)
	input := string(AppendBulkString(nil, payload)) + "+OK\r\n"
	for how, r := range map[string]*Reader{
		"whole":   NewReader(strings.NewReader(input), Limits{}),
		"small":   NewReaderSize(strings.NewReader(input), 16, Limits{}),
		"onebyte": NewReaderSize(iotest.OneByteReader(strings.NewReader(input)), 64, Limits{}),
		"half":    NewReaderSize(iotest.HalfReader(strings.NewReader(input)), 1000, Limits{}),
	} {
		v, err := r.ReadValue()
		if err != nil || v.Kind != BulkString || v.Str != payload {
			t.Fatalf("%s: kind %v len %d err %v", how, v.Kind, len(v.Str), err)
		}
		if v, err := r.ReadValue(); err != nil || v.Str != "OK" {
			t.Fatalf("%s: after bulk: %#v, %v", how, v, err)
		}
		if r.Offset() != int64(len(input)) {
			t.Fatalf("%s: offset %d, want %d", how, r.Offset(), len(input))
		}
	}
	r := NewReaderSize(strings.NewReader(input), 16, Limits{})
	if err := r.Skip(); err != nil || r.Offset() != int64(len(input)-5) {
		t.Fatalf("Skip: %v at %d", err, r.Offset())
	}
}

func TestReadLongSimpleString(t *testing.T) {
	long := strings.Repeat("x", 100)
	r := NewReaderSize(strings.NewReader("+"+long+"\r\n+OK\r\n"), 16, Limits{})
	for _, want := range []string{long, "OK"} {
		v, err := r.ReadValue()
		if err != nil || v.Str != want {
			t.Fatalf("got %#v, %v; want %q", v, err, want)
		}
	}
}

func TestReaderBufferedOffsetReset(t *testing.T) {
	r := NewReader(strings.NewReader("+OK\r\n:1\r\n"), Limits{})
	if _, err := r.ReadValue(); err != nil {
		t.Fatal(err)
	}
	if r.Offset() != 5 || r.Buffered() != 4 {
		t.Fatalf("Offset %d Buffered %d, want 5 and 4", r.Offset(), r.Buffered())
	}
	r.Reset(strings.NewReader("$1\r\nx\r\n"))
	if r.Offset() != 0 || r.Buffered() != 0 {
		t.Fatalf("after Reset: Offset %d Buffered %d", r.Offset(), r.Buffered())
	}
	if v, err := r.ReadValue(); err != nil || v.Str != "x" || r.Offset() != 7 {
		t.Fatalf("after Reset: %#v, %v, offset %d", v, err, r.Offset())
	}
}

func TestReadMalformed(t *testing.T) {
	tests := []struct {
		input    string
		offset   int64
		expected string // substring of Expected
		found    string
	}{
		{"x\r\n", 0, "RESP type byte", "'x'"},
		{"\r\n", 0, "RESP type byte", `'\r'`},
		{"+OK\n", 3, "CR before LF", `'\n'`},
		{"\n", 0, "CR before LF", `'\n'`},
		{"+O\rK\r\n", 3, "LF after CR", "'K'"},
		{"+OK\r\r\n", 4, "LF after CR", `'\r'`},
		{":12a\r\n", 3, "digit in integer", "'a'"},
		{":\r\n", 1, "digit in integer", `'\r'`},
		{":-\r\n", 2, "digit in integer", `'\r'`},
		{": 1\r\n", 1, "digit in integer", "' '"},
		{":9223372036854775808\r\n", 1, "integer in the int64 range", `"9223372036854775808"`},
		{":-9223372036854775809\r\n", 1, "integer in the int64 range", `"-9223372036854775809"`},
		{"$-2\r\n", 1, "bulk string length of 0 or more", "'-'"},
		{"$x\r\n", 1, "digit in length", "'x'"},
		{"$99999999999999999999\r\n", 1, "length in the int64 range", `"99999999999999999999"`},
		{"$3\r\nfoox\r\n", 7, "CRLF after bulk string", "'x'"},
		{"$3\r\nfoo\rx\r\n", 8, "CRLF after bulk string", "'x'"},
		{"$0\r\n\n\n", 4, "CRLF after bulk string", `'\n'`},
		{"!3\r\nfoox\r\n", 7, "CRLF after bulk error", "'x'"},
		{"!-1\r\n", 1, "bulk error length of 0 or more", "'-'"},
		{"=3\r\ntxt\r\n", 1, "verbatim string length of at least 4", "'3'"},
		{"=-1\r\n", 1, "verbatim string length of 0 or more", "'-'"},
		{"=5\r\ntxtxy\r\n", 7, "':' after the verbatim string format", "'x'"},
		{"=4\r\ntxt:x\r\n", 8, "CRLF after verbatim string", "'x'"},
		{"*-2\r\n", 1, "array length of 0 or more", "'-'"},
		{"*1x\r\n", 2, "digit in length", "'x'"},
		{"%-1\r\n", 1, "map length of 0 or more", "'-'"},
		{"~-1\r\n", 1, "set length of 0 or more", "'-'"},
		{">-1\r\n", 1, "push length of 0 or more", "'-'"},
		{"|-1\r\n", 1, "attribute length of 0 or more", "'-'"},
		{"*2\r\n:1\r\n?\r\n", 8, "RESP type byte", "'?'"},
		{"_x\r\n", 1, "CRLF after null", "'x'"},
		{"#x\r\n", 1, "'t' or 'f'", "'x'"},
		{"#\r\n", 1, "'t' or 'f'", `'\r'`},
		{"#tt\r\n", 2, "CRLF after boolean", "'t'"},
		{",\r\n", 1, "digit in double", `'\r'`},
		{",1.2.3\r\n", 4, "CRLF after double", "'.'"},
		{",1e\r\n", 3, "digit in double exponent", `'\r'`},
		{",0x10\r\n", 2, "CRLF after double", "'x'"},
		{",infinity\r\n", 1, "digit in double", "'i'"},
		{",1_000\r\n", 2, "CRLF after double", "'_'"},
		{"(\r\n", 1, "digit in big number", `'\r'`},
		{"(-\r\n", 2, "digit in big number", `'\r'`},
		{"(12a\r\n", 3, "digit in big number", "'a'"},
		{"$?\r\n", 1, "streamed types are not supported", "'?'"},
		{"*?\r\n", 1, "streamed types are not supported", "'?'"},
		{"%?\r\n", 1, "streamed types are not supported", "'?'"},
		{";4\r\nHell\r\n", 0, "streamed types are not supported", "';'"},
		{".\r\n", 0, "streamed types are not supported", "'.'"},
		{"\x00\r\n", 0, "RESP type byte", `'\x00'`},
		{"\xff\r\n", 0, "RESP type byte", `'\xff'`},
		{"*2\r\n>1\r\n+invalidate\r\n+OK\r\n", 4, "a value other than a push inside an aggregate", "'>'"},
		{"%1\r\n+k\r\n>0\r\n", 8, "a value other than a push inside an aggregate", "'>'"},
		{"*1\r\n|1\r\n+k\r\n:1\r\n>0\r\n", 16, "a value other than a push inside an aggregate", "'>'"},
		{"|1\r\n+k\r\n>0\r\n+OK\r\n", 8, "a value other than a push inside an aggregate", "'>'"},
		{">1\r\n>0\r\n", 4, "a value other than a push inside an aggregate", "'>'"},
	}
	for _, tt := range tests {
		for _, skip := range []bool{false, true} {
			r := NewReader(strings.NewReader(tt.input), Limits{})
			var err error
			if skip {
				err = r.Skip()
			} else {
				var v Value
				v, err = r.ReadValue()
				if err != nil && !reflect.DeepEqual(v, Value{}) && v.Kind != 0 {
					t.Errorf("%q: value %#v returned with error", tt.input, v)
				}
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Errorf("%q (skip=%v): got %v, want *ProtocolError", tt.input, skip, err)
				continue
			}
			if pe.Offset != tt.offset || !strings.Contains(pe.Expected, tt.expected) || pe.Found != tt.found {
				t.Errorf("%q (skip=%v): got offset %d expected %q found %q; want %d, %q, %q",
					tt.input, skip, pe.Offset, pe.Expected, pe.Found, tt.offset, tt.expected, tt.found)
			}
		}
	}
}

func TestProtocolErrorMessage(t *testing.T) {
	input := "*2\r\n$3\r\nfoo\r\n$0\r\nx\r\n"
	_, err := NewReader(strings.NewReader(input), Limits{}).ReadValue()
	want := "resp: malformed reply at byte 17: expected CRLF after bulk string, found 'x'"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	pe := &ProtocolError{Offset: 3, Expected: "something"}
	if pe.Error() != "resp: malformed reply at byte 3: expected something" {
		t.Fatalf("no Found: %s", pe.Error())
	}
}

func TestReadLimits(t *testing.T) {
	deep := strings.Repeat("*1\r\n", 10000) + ":1\r\n"
	tests := []struct {
		name  string
		input string
		lim   Limits
		want  LimitError
		text  string
	}{
		{"bulk default", "$1073741824\r\n", Limits{},
			LimitError{0, "bulk string length", 1 << 30, 512 << 20},
			"resp: bulk string length 1073741824 at byte 0 exceeds the limit of 536870912"},
		{"bulk", "*1\r\n$11\r\nhello world\r\n", Limits{MaxBulkLen: 10},
			LimitError{4, "bulk string length", 11, 10}, ""},
		{"bulk error", "!11\r\nhello world\r\n", Limits{MaxBulkLen: 10},
			LimitError{0, "bulk error length", 11, 10}, ""},
		{"verbatim", "=15\r\ntxt:Some string\r\n", Limits{MaxBulkLen: 10},
			LimitError{0, "verbatim string length", 15, 10}, ""},
		{"array default", "*4294967296\r\n", Limits{},
			LimitError{0, "array length", 1 << 32, 1<<32 - 1}, ""},
		{"array", "*3\r\n:1\r\n:2\r\n:3\r\n", Limits{MaxArrayLen: 2},
			LimitError{0, "array length", 3, 2}, ""},
		{"map pairs", "%3\r\n", Limits{MaxArrayLen: 2},
			LimitError{0, "map length", 3, 2}, ""},
		{"map pairs ok", "%2\r\n:1\r\n:2\r\n~3\r\n", Limits{MaxArrayLen: 2},
			LimitError{12, "set length", 3, 2}, ""},
		{"attribute", "|3\r\n", Limits{MaxArrayLen: 2},
			LimitError{0, "attribute length", 3, 2}, ""},
		{"depth default", deep, Limits{},
			LimitError{128 * 4, "nesting depth", 129, 128},
			"resp: nesting depth 129 at byte 512 exceeds the limit of 128"},
		{"depth", "*1\r\n*1\r\n*1\r\n:1\r\n", Limits{MaxDepth: 2},
			LimitError{8, "nesting depth", 3, 2}, ""},
		{"depth map", "%1\r\n%1\r\n:1\r\n:1\r\n:1\r\n", Limits{MaxDepth: 1},
			LimitError{4, "nesting depth", 2, 1}, ""},
		{"depth attribute", "*1\r\n|1\r\n+a\r\n+b\r\n:1\r\n", Limits{MaxDepth: 1},
			LimitError{4, "nesting depth", 2, 1}, ""},
	}
	for _, tt := range tests {
		for _, skip := range []bool{false, true} {
			r := NewReader(strings.NewReader(tt.input), tt.lim)
			var err error
			if skip {
				err = r.Skip()
			} else {
				_, err = r.ReadValue()
			}
			var le *LimitError
			if !errors.As(err, &le) {
				t.Errorf("%s (skip=%v): got %v, want *LimitError", tt.name, skip, err)
				continue
			}
			if *le != tt.want {
				t.Errorf("%s (skip=%v): got %+v, want %+v", tt.name, skip, *le, tt.want)
			}
			if tt.text != "" && err.Error() != tt.text {
				t.Errorf("%s: message %q, want %q", tt.name, err.Error(), tt.text)
			}
		}
	}

	// At the limit is fine.
	r := NewReader(strings.NewReader("*2\r\n$10\r\n0123456789\r\n*1\r\n:1\r\n"), Limits{MaxBulkLen: 10, MaxArrayLen: 2, MaxDepth: 2})
	if _, err := r.ReadValue(); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	// A null array is not a nesting level.
	r = NewReader(strings.NewReader("*1\r\n*-1\r\n"), Limits{MaxDepth: 1})
	if v, err := r.ReadValue(); err != nil || v.Elems[0].Kind != Null {
		t.Fatalf("null array at the depth limit: %#v, %v", v, err)
	}
}

func TestReadLineLimit(t *testing.T) {
	long := strings.Repeat("x", minMaxLine+1)
	for _, size := range []int{16, 1 << 20} {
		r := NewReaderSize(strings.NewReader("+"+long+"\r\n"), size, Limits{MaxBulkLen: 10})
		_, err := r.ReadValue()
		var le *LimitError
		if !errors.As(err, &le) || le.What != "line length" || le.Limit != minMaxLine {
			t.Fatalf("buffer %d: got %v", size, err)
		}
	}
	r := NewReaderSize(strings.NewReader("+"+long[2:]+"\r\n"), 16, Limits{MaxBulkLen: 10})
	if v, err := r.ReadValue(); err != nil || len(v.Str) != minMaxLine-1 {
		t.Fatalf("just under the line limit: %v", err)
	}
}

// TestSetLimits: limits given by SetLimits apply from the next value,
// ReadBuffered's included, and from a value whose bytes arrive while
// another goroutine waits in a read begun under the old limits.
func TestSetLimits(t *testing.T) {
	r := NewReader(strings.NewReader("*3\r\n:1\r\n:2\r\n:3\r\n*3\r\n:1\r\n:2\r\n:3\r\n$4\r\nabcd\r\n"), Limits{})
	if _, err := r.ReadValue(); err != nil {
		t.Fatalf("under the first limits: %v", err)
	}
	r.SetLimits(Limits{MaxArrayLen: 2, MaxBulkLen: 3})
	var le *LimitError
	if _, _, err := r.ReadBuffered(); !errors.As(err, &le) || le.What != "array length" || le.Limit != 2 {
		t.Fatalf("ReadBuffered after SetLimits: %v, want the array over the new limit", err)
	}

	pr, pw := io.Pipe()
	r = NewReaderSize(pr, 16, Limits{})
	got := make(chan error, 1)
	go func() {
		_, err := r.ReadValue()
		got <- err
	}()
	// The reader waits for the value's first byte, under the old limits.
	r.SetLimits(Limits{MaxDepth: 1})
	if _, err := pw.Write([]byte("*1\r\n*1\r\n:1\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.As(err, &le) || le.What != "nesting depth" || le.Limit != 1 {
		t.Fatalf("a value that arrived after SetLimits: %v, want it over the new depth limit", err)
	}
}

// A hostile header must not make the reader allocate for data that has not
// arrived.
func TestHugeHeadersDoNotPreallocate(t *testing.T) {
	nested := strings.Repeat("*2000000000\r\n", 128)
	for _, input := range []string{"*2000000000\r\n", "%2000000000\r\n", "~2000000000\r\n", "$536870912\r\n", "|2000000000\r\n", nested} {
		var ms0, ms1 runtimeMem
		ms0.read()
		_, err := NewReader(strings.NewReader(input), Limits{}).ReadValue()
		ms1.read()
		if err != io.ErrUnexpectedEOF {
			t.Errorf("%.20q: got %v, want io.ErrUnexpectedEOF", input, err)
		}
		if grew := ms1.total - ms0.total; grew > 2<<20 {
			t.Errorf("%.20q: allocated %d bytes", input, grew)
		}
	}
}

func TestTruncated(t *testing.T) {
	values := []Value{
		str(SimpleString, "OK"),
		str(Error, "ERR x"),
		num(-12),
		str(BulkString, "hello\r\nworld"),
		str(BulkString, ""),
		{Kind: Null},
		{Kind: Boolean, Int: 1},
		DoubleValue(-2.5e-10),
		str(BigNumber, "123456789012345678901234567890"),
		str(BulkError, "ERR long"),
		{Kind: Verbatim, Str: "text", Aux: &Aux{Format: "txt"}},
		agg(Array, num(1), agg(Map, str(SimpleString, "k"), str(BulkString, "v")), agg(Set)),
		agg(Push, str(BulkString, "message")),
		{Kind: Integer, Int: 7, Aux: &Aux{Attrs: []Value{str(SimpleString, "a"), agg(Array, num(1))}}},
	}
	var stream []byte
	ends := map[int]bool{0: true}
	for _, v := range values {
		stream = AppendValue(stream, v)
		ends[len(stream)] = true
	}
	stream = append(stream, "$-1\r\n*-1\r\n"...)
	ends[len(stream)-5] = true
	ends[len(stream)] = true

	for n := 0; n < len(stream); n++ {
		for how, mk := range map[string]func(io.Reader) *Reader{
			"whole":   func(rd io.Reader) *Reader { return NewReader(rd, Limits{}) },
			"onebyte": func(rd io.Reader) *Reader { return NewReaderSize(iotest.OneByteReader(rd), 16, Limits{}) },
		} {
			for _, skip := range []bool{false, true} {
				r := mk(bytes.NewReader(stream[:n]))
				var err error
				for i := 0; ; i++ {
					if skip {
						err = r.Skip()
					} else {
						var v Value
						v, err = r.ReadValue()
						if err == nil && i < len(values) && !v.Equal(values[i]) {
							t.Fatalf("prefix %d/%s: value %d is %#v, want %#v", n, how, i, v, values[i])
						}
					}
					if err != nil {
						break
					}
				}
				want := io.ErrUnexpectedEOF
				if ends[n] {
					want = io.EOF
				}
				if err != want {
					t.Fatalf("prefix %d/%s (skip=%v): got %v, want %v", n, how, skip, err, want)
				}
			}
		}
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestUnderlyingErrorsPassThrough(t *testing.T) {
	boom := errors.New("boom")
	for _, input := range []string{"", "+OK", "$10\r\nabc", "*2\r\n:1\r\n"} {
		r := NewReaderSize(&failingReader{data: []byte(input), err: boom}, 16, Limits{})
		if _, err := r.ReadValue(); !errors.Is(err, boom) {
			t.Errorf("%q: got %v, want boom", input, err)
		}
	}
	r := NewReader(&failingReader{data: []byte("+OK\r\n")}, Limits{})
	if _, err := r.ReadValue(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadValue(); err != io.ErrNoProgress {
		t.Errorf("empty reads: got %v, want io.ErrNoProgress", err)
	}
}

func TestRoundTrip(t *testing.T) {
	values := []Value{
		str(SimpleString, "OK"),
		str(SimpleString, ""),
		str(Error, "WRONGTYPE Operation against a key"),
		num(0), num(math.MinInt64), num(math.MaxInt64),
		str(BulkString, ""),
		str(BulkString, "\x00\r\n\xff"),
		{Kind: Null},
		{Kind: Boolean, Int: 1},
		{Kind: Boolean},
		DoubleValue(0),
		DoubleValue(math.Copysign(0, -1)),
		DoubleValue(math.Pi),
		DoubleValue(1e-320),
		DoubleValue(math.MaxFloat64),
		DoubleValue(math.Inf(1)),
		DoubleValue(math.Inf(-1)),
		DoubleValue(math.NaN()),
		str(BigNumber, "-98765432109876543210"),
		str(BulkError, "ERR multi\r\nline"),
		{Kind: Verbatim, Str: "# title\r\n", Aux: &Aux{Format: "mkd"}},
		agg(Array),
		agg(Map),
		agg(Set),
		agg(Push),
		agg(Array, agg(Array, agg(Array, num(1))), Value{Kind: Null}),
		agg(Map, str(BulkString, "k"), agg(Set, num(1), num(2)), num(3), Value{Kind: Boolean, Int: 1}),
		agg(Push, str(BulkString, "invalidate"), agg(Array, str(BulkString, "key"))),
		{Kind: Array, Elems: []Value{{Kind: Integer, Int: 1, Aux: &Aux{Attrs: []Value{str(SimpleString, "x"), {Kind: Null}}}}},
			Aux: &Aux{Attrs: []Value{str(BulkString, "meta"), agg(Map)}}},
	}
	var stream []byte
	for _, v := range values {
		stream = AppendValue(stream, v)
	}
	r := NewReaderSize(iotest.HalfReader(bytes.NewReader(stream)), 16, Limits{})
	for i, want := range values {
		got, err := r.ReadValue()
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if !got.Equal(want) {
			t.Errorf("value %d: got %#v, want %#v", i, got, want)
		}
		if want.Kind == Double && math.Signbit(want.Float()) != math.Signbit(got.Float()) && !math.IsNaN(want.Float()) {
			t.Errorf("value %d: sign of %v lost", i, want.Float())
		}
	}
	if _, err := r.ReadValue(); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
}

func TestValueEqual(t *testing.T) {
	a := agg(Array, num(1), DoubleValue(math.NaN()))
	b := agg(Array, num(1), DoubleValue(math.NaN()))
	if !a.Equal(b) {
		t.Error("NaN elements should be equal")
	}
	for _, c := range []Value{
		agg(Array, num(2), DoubleValue(math.NaN())),
		agg(Set, num(1), DoubleValue(math.NaN())),
		agg(Array, num(1)),
		{Kind: Array, Elems: a.Elems, Aux: &Aux{Attrs: []Value{num(1), num(2)}}},
	} {
		if a.Equal(c) {
			t.Errorf("%#v should differ from %#v", a, c)
		}
	}
	if !(Value{Kind: Array}).Equal(agg(Array)) {
		t.Error("nil and empty Elems should be equal")
	}
}

func TestValueEqualAux(t *testing.T) {
	for _, c := range []struct {
		a, b Value
		want bool
	}{
		{Value{Kind: Null}, Value{Kind: Null, Aux: &Aux{}}, true},
		{Value{Kind: Null}, Value{Kind: Null, Aux: &Aux{Attrs: []Value{}}}, true},
		{num(1), Value{Kind: Integer, Int: 1, Aux: &Aux{Extra: "decoded"}}, true},
		{num(1), Value{Kind: Integer, Int: 1, Aux: &Aux{Attrs: []Value{num(1), num(2)}}}, false},
		{Value{Kind: Verbatim, Str: "x", Aux: &Aux{Format: "txt"}}, Value{Kind: Verbatim, Str: "x", Aux: &Aux{Format: "mkd"}}, false},
		{Value{Kind: Verbatim, Str: "x", Aux: &Aux{Format: "txt"}}, Value{Kind: Verbatim, Str: "x"}, false},
		{DoubleValue(0), DoubleValue(math.Copysign(0, -1)), true},
		{DoubleValue(math.NaN()), DoubleValue(-math.NaN()), true},
		{DoubleValue(math.NaN()), DoubleValue(math.Inf(1)), false},
		{DoubleValue(1), num(int64(math.Float64bits(1))), false},
	} {
		if got := c.a.Equal(c.b); got != c.want {
			t.Errorf("%#v.Equal(%#v) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := c.b.Equal(c.a); got != c.want {
			t.Errorf("%#v.Equal(%#v) = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

func TestValueAccessors(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), -1.5, math.Pi, math.SmallestNonzeroFloat64, math.MaxFloat64, math.Inf(1), math.Inf(-1)} {
		got := DoubleValue(f).Float()
		if got != f || math.Signbit(got) != math.Signbit(f) {
			t.Errorf("DoubleValue(%v).Float() = %v", f, got)
		}
	}
	if !math.IsNaN(DoubleValue(math.NaN()).Float()) {
		t.Error("DoubleValue(NaN).Float() is not NaN")
	}
	if f := num(int64(math.Float64bits(2))).Float(); f != 0 {
		t.Errorf("Float of an integer = %v, want 0", f)
	}
	var zero Value
	if zero.Attrs() != nil || zero.Format() != "" || zero.Float() != 0 {
		t.Errorf("zero Value: Attrs %v, Format %q, Float %v", zero.Attrs(), zero.Format(), zero.Float())
	}
	v := Value{Kind: Verbatim, Str: "x", Aux: &Aux{Format: "mkd", Attrs: []Value{num(1), num(2)}}}
	if v.Format() != "mkd" || len(v.Attrs()) != 2 {
		t.Errorf("Format %q, Attrs %v", v.Format(), v.Attrs())
	}
}

// TestValueSize pins the size of Value: a pipeline holds one per command,
// so every byte here is multiplied by the pipeline length. The root package
// also relies on its Value having exactly this layout.
func TestValueSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the size is pinned for 64-bit platforms")
	}
	if n := unsafe.Sizeof(Value{}); n != 64 {
		t.Errorf("unsafe.Sizeof(Value{}) = %d, want 64", n)
	}
}

func TestKindString(t *testing.T) {
	want := map[Kind]string{
		SimpleString: "simple string", Error: "error", Integer: "integer", BulkString: "bulk string",
		Array: "array", Null: "null", Boolean: "boolean", Double: "double", BigNumber: "big number",
		BulkError: "bulk error", Verbatim: "verbatim string", Map: "map", Set: "set",
		Attribute: "attribute", Push: "push", 'x': "kind('x')", 0: `kind('\x00')`,
	}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("Kind(%q).String() = %q, want %q", byte(k), k.String(), s)
		}
	}
}

func TestReaderAllocs(t *testing.T) {
	cases := []struct {
		input string
		want  float64
	}{
		{"+OK\r\n", 0},
		{"+QUEUED\r\n", 0},
		{"+PONG\r\n", 0},
		{":1\r\n", 0},
		{":-9223372036854775808\r\n", 0},
		{"_\r\n", 0},
		{"$-1\r\n", 0},
		{"*-1\r\n", 0},
		{"#t\r\n", 0},
		{",3.14159\r\n", 0},
		{",-inf\r\n", 0},
		{"$0\r\n\r\n", 0},
		{"$5\r\nhello\r\n", 1},
		{",nan\r\n", 0},
		{",0.10000000000000001\r\n", 1},   // the text, as it is not the shortest
		{"=15\r\ntxt:Some string\r\n", 2}, // payload and Aux for the format
		{"|1\r\n+a\r\n:1\r\n:2\r\n", 2},   // Aux and its attribute list
		{"*3\r\n:1\r\n:2\r\n:3\r\n", 1},
		{"*2\r\n$2\r\nab\r\n$2\r\ncd\r\n", 3},
	}
	for _, c := range cases {
		r := NewReader(&repeatReader{pattern: []byte(c.input)}, Limits{})
		n := testing.AllocsPerRun(200, func() {
			if _, err := r.ReadValue(); err != nil {
				t.Fatal(err)
			}
		})
		if n != c.want {
			t.Errorf("ReadValue(%q) allocates %v times, want %v", c.input, n, c.want)
		}
		n = testing.AllocsPerRun(200, func() {
			if err := r.Skip(); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("Skip(%q) allocates %v times, want 0", c.input, n)
		}
	}
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.total = ms.TotalAlloc
}

func TestKindAggregate(t *testing.T) {
	for _, k := range []Kind{SimpleString, Error, Integer, BulkString, Array, Null, Boolean, Double, BigNumber, BulkError, Verbatim, Map, Set, Attribute, Push} {
		want := k == Array || k == Map || k == Set || k == Attribute || k == Push
		if k.Aggregate() != want {
			t.Errorf("%s: Aggregate() = %v", k, !want)
		}
	}
}

// doubleText keeps a double's text exactly when it is not the shortest 'g'
// format of its value, whichever way it finds out: checked here against
// that definition for the forms servers write (C's %.17g, shortest digits
// laid out plainly, integers) and odd ones.
func TestDoubleText(t *testing.T) {
	texts := []string{
		"0", "-0", "1", "-3", "10", "1.5", "0.1", "0.0001", "0.00001", "123456", "1234567",
		"1700000000", "0.10000000000000001", "1.1000000000000001", "2.2999999999999998",
		"1e+18", "1e18", "1E+2", ".5", "1.", "1.50", "01", "+1", "-1.5e-3", "inf", "-inf", "nan",
		"Inf", "123456.78901234", "0.000123456789012345", "9007199254740993", "1e400",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		switch rng.IntN(4) {
		case 1:
			f = math.Round(f) // integers, mostly huge
		case 2:
			f = float64(rng.Int64N(1e12)) / float64(int64(1)<<rng.IntN(30)) // moderate magnitudes
		case 3:
			f = float64(rng.Int64N(1e15))
		}
		texts = append(texts,
			strconv.FormatFloat(f, 'g', 17, 64), strconv.FormatFloat(f, 'g', -1, 64),
			strconv.FormatFloat(f, 'f', -1, 64), strconv.FormatFloat(f, 'e', -1, 64))
	}
	for _, text := range texts {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			t.Fatalf("%q: %v", text, err)
		}
		want := text
		if strconv.FormatFloat(f, 'g', -1, 64) == text {
			want = ""
		}
		if got := doubleText([]byte(text), f); got != want {
			t.Errorf("doubleText(%q) = %q, want %q", text, got, want)
		}
	}
}
