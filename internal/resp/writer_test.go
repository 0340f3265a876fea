package resp

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWriterExactBytes(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"array len 0", AppendArrayLen(nil, 0), "*0\r\n"},
		{"array len 3", AppendArrayLen(nil, 3), "*3\r\n"},
		{"array len 12", AppendArrayLen(nil, 12), "*12\r\n"},
		{"array len -1", AppendArrayLen(nil, -1), "*-1\r\n"},
		{"bulk", AppendBulk(nil, []byte("hello")), "$5\r\nhello\r\n"},
		{"bulk empty", AppendBulk(nil, nil), "$0\r\n\r\n"},
		{"bulk binary", AppendBulk(nil, []byte("a\r\n\x00b")), "$5\r\na\r\n\x00b\r\n"},
		{"bulk string", AppendBulkString(nil, "SET"), "$3\r\nSET\r\n"},
		{"bulk string long", AppendBulkString(nil, "0123456789ab"), "$12\r\n0123456789ab\r\n"},
		{"bulk string appends", AppendBulkString([]byte("x"), "y"), "x$1\r\ny\r\n"},
		{"int 0", AppendBulkInt(nil, 0), "$1\r\n0\r\n"},
		{"int neg", AppendBulkInt(nil, -42), "$3\r\n-42\r\n"},
		{"int min", AppendBulkInt(nil, math.MinInt64), "$20\r\n-9223372036854775808\r\n"},
		{"uint max", AppendBulkUint(nil, math.MaxUint64), "$20\r\n18446744073709551615\r\n"},
		{"float", AppendBulkFloat(nil, 1.5), "$3\r\n1.5\r\n"},
		{"float int", AppendBulkFloat(nil, 3), "$1\r\n3\r\n"},
		{"float neg", AppendBulkFloat(nil, -0.25), "$5\r\n-0.25\r\n"},
		{"float big no exponent", AppendBulkFloat(nil, 1e21), "$22\r\n1000000000000000000000\r\n"},
		{"float small no exponent", AppendBulkFloat(nil, 1e-7), "$9\r\n0.0000001\r\n"},
		{"float inf", AppendBulkFloat(nil, math.Inf(1)), "$3\r\ninf\r\n"},
		{"float -inf", AppendBulkFloat(nil, math.Inf(-1)), "$4\r\n-inf\r\n"},
		{"float nan", AppendBulkFloat(nil, math.NaN()), "$3\r\nnan\r\n"},
		{"bool true", AppendBulkBool(nil, true), "$1\r\n1\r\n"},
		{"bool false", AppendBulkBool(nil, false), "$1\r\n0\r\n"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestAppendBulkFloatExtremes(t *testing.T) {
	for _, f := range []float64{math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64} {
		b := AppendBulkFloat(nil, f)
		r := NewReader(bytesReader(b), Limits{})
		v, err := r.ReadValue()
		if err != nil {
			t.Fatalf("%g: %v", f, err)
		}
		if v.Kind != BulkString {
			t.Fatalf("%g: kind %v", f, v.Kind)
		}
		for _, c := range v.Str {
			if c == 'e' || c == 'E' {
				t.Fatalf("%g: exponent in %q", f, v.Str)
			}
		}
	}
}

// Types with their own encodings, each method giving away which it is.
type (
	marshaler struct {
		b   []byte
		err error
	}
	texter   struct{ s string }
	stringer int
	// binText has both marshalers, textStringer a marshaler and String:
	// the first in the order Binary, Text, String is used.
	binText      struct{}
	textStringer struct{}
	// ptrStringer has its method on the pointer.
	ptrStringer struct{ s string }
)

func (m marshaler) MarshalBinary() ([]byte, error) { return m.b, m.err }
func (t texter) MarshalText() ([]byte, error)      { return []byte("text:" + t.s), nil }
func (s stringer) String() string                  { return "str:" + strconv.Itoa(int(s)) }
func (binText) MarshalBinary() ([]byte, error)     { return []byte("binary"), nil }
func (binText) MarshalText() ([]byte, error)       { return []byte("text"), nil }
func (textStringer) MarshalText() ([]byte, error)  { return []byte("text"), nil }
func (textStringer) String() string                { return "string" }
func (p *ptrStringer) String() string              { return "ptr:" + p.s }

func TestAppendArg(t *testing.T) {
	tests := []struct {
		arg  any
		want string
	}{
		{"key", "$3\r\nkey\r\n"},
		{"", "$0\r\n\r\n"},
		{[]byte("v\x00"), "$2\r\nv\x00\r\n"},
		{[]byte(nil), "$0\r\n\r\n"},
		{int(-7), "$2\r\n-7\r\n"},
		{int8(-128), "$4\r\n-128\r\n"},
		{int16(300), "$3\r\n300\r\n"},
		{int32(-70000), "$6\r\n-70000\r\n"},
		{int64(math.MaxInt64), "$19\r\n9223372036854775807\r\n"},
		{uint(7), "$1\r\n7\r\n"},
		{uint8(255), "$3\r\n255\r\n"},
		{uint16(65535), "$5\r\n65535\r\n"},
		{uint32(4000000000), "$10\r\n4000000000\r\n"},
		{uint64(math.MaxUint64), "$20\r\n18446744073709551615\r\n"},
		{float32(0.1), "$3\r\n0.1\r\n"},
		{float64(0.1), "$3\r\n0.1\r\n"},
		{float32(float32(math.Inf(-1))), "$4\r\n-inf\r\n"},
		{true, "$1\r\n1\r\n"},
		{false, "$1\r\n0\r\n"},
	}
	for _, tt := range tests {
		got, err := AppendArg([]byte("pre"), tt.arg)
		if err != nil {
			t.Errorf("%T(%v): %v", tt.arg, tt.arg, err)
			continue
		}
		if string(got) != "pre"+tt.want {
			t.Errorf("%T(%v): got %q, want %q", tt.arg, tt.arg, got, "pre"+tt.want)
		}
	}
}

// TestAppendArgMarshalers: a type without a built-in encoding is encoded by
// its MarshalBinary, MarshalText or String, the first it has in that order;
// time.Time as RFC 3339 text whatever its methods.
func TestAppendArgMarshalers(t *testing.T) {
	tm := time.Date(2024, 5, 6, 7, 8, 9, 10, time.FixedZone("", 2*3600))
	tests := []struct {
		arg  any
		want string
	}{
		{marshaler{b: []byte("bin\r\n\x00")}, "$6\r\nbin\r\n\x00\r\n"},
		{marshaler{}, "$0\r\n\r\n"},
		{&marshaler{b: []byte("p")}, "$1\r\np\r\n"},
		{texter{"x"}, "$6\r\ntext:x\r\n"},
		{stringer(42), "$6\r\nstr:42\r\n"},
		{binText{}, "$6\r\nbinary\r\n"},
		{textStringer{}, "$4\r\ntext\r\n"},
		{&ptrStringer{"y"}, "$5\r\nptr:y\r\n"},
		{tm, "$34\r\n2024-05-06T07:08:09.00000001+02:00\r\n"},
		{&tm, "$34\r\n2024-05-06T07:08:09.00000001+02:00\r\n"},
		{time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), "$20\r\n2024-05-06T07:08:09Z\r\n"},
	}
	for _, tt := range tests {
		got, err := AppendArg([]byte("pre"), tt.arg)
		if err != nil || string(got) != "pre"+tt.want {
			t.Errorf("%T: got %q, %v; want %q", tt.arg, got, err, "pre"+tt.want)
		}
	}
}

// TestAppendArgRefusesMarshalers: a time.Duration, whose String form is
// not what commands take, a nil pointer and a failing marshaler are
// refused, and nothing is appended.
func TestAppendArgRefusesMarshalers(t *testing.T) {
	boom := errors.New("boom")
	d := 1500 * time.Millisecond
	tests := []struct {
		arg  any
		text string
	}{
		{d, "resp: cannot encode argument of type time.Duration: Redis takes a number of seconds or milliseconds"},
		{&d, "resp: cannot encode argument of type *time.Duration: Redis takes"},
		{(*marshaler)(nil), "resp: cannot encode argument of type *resp.marshaler: it is a nil pointer"},
		{(*ptrStringer)(nil), "resp: cannot encode argument of type *resp.ptrStringer: it is a nil pointer"},
		{(*time.Time)(nil), "resp: cannot encode argument of type *time.Time: it is a nil pointer"},
		{marshaler{err: boom}, "resp: MarshalBinary of resp.marshaler failed: boom"},
	}
	for _, tt := range tests {
		got, err := AppendArg([]byte("pre"), tt.arg)
		var ae *ArgError
		if !errors.As(err, &ae) || string(got) != "pre" || !strings.HasPrefix(err.Error(), tt.text) {
			t.Errorf("%T: got %q, %v; want an *ArgError starting %q", tt.arg, got, err, tt.text)
		}
	}
	if _, err := AppendArg(nil, marshaler{err: boom}); !errors.Is(err, boom) {
		t.Errorf("the marshaler's error is not reachable from %v", err)
	}
	if _, err := AppendArg(nil, d); !strings.Contains(err.Error(), "d.Milliseconds() or d.Seconds()") {
		t.Errorf("the error for a time.Duration does not say what to pass: %v", err)
	}
}

// TestAppendArgAllocations: the built-in types are encoded without moving
// the argument to the heap, so a string or slice boxed for the call costs
// nothing. AppendArg calls methods of the types it does not know, so
// whatever is boxed for it escapes: one allocation (the box, not the
// bytes) for each argument that is not a constant. Constants cost nothing
// (TestWriterAllocs).
func TestAppendArgAllocations(t *testing.T) {
	buf := make([]byte, 0, 256)
	s := strings.Repeat("v", 16)
	b := []byte(s)
	n := len(s) * 1000 // past the integers Go boxes without allocating
	allocs := testing.AllocsPerRun(100, func() {
		var ok bool
		buf, ok = AppendBuiltin(buf[:0], s)
		buf, _ = AppendBuiltin(buf, b)
		buf, _ = AppendBuiltin(buf, n)
		if !ok {
			t.Fatal("AppendBuiltin refused a string")
		}
	})
	if allocs != 0 {
		t.Errorf("AppendBuiltin allocated %v times", allocs)
	}
	allocs = testing.AllocsPerRun(100, func() {
		buf, _ = AppendArg(buf[:0], s)
		buf, _ = AppendArg(buf, b)
		buf, _ = AppendArg(buf, n)
	})
	if allocs > 3 {
		t.Errorf("AppendArg of 3 arguments boxed at run time allocated %v times, want at most one each", allocs)
	}
}

func TestAppendArgErrors(t *testing.T) {
	tests := []struct {
		arg  any
		typ  string
		text string
	}{
		{nil, "nil", "resp: cannot encode argument of type nil"},
		{map[string]int{}, "map[string]int", "resp: cannot encode argument of type map[string]int"},
		{struct{}{}, "struct {}", "resp: cannot encode argument of type struct {}"},
		{[]string{"a"}, "[]string", "resp: cannot encode argument of type []string"},
		{new(string), "*string", "resp: cannot encode argument of type *string"},
	}
	for _, tt := range tests {
		dst := []byte("pre")
		got, err := AppendArg(dst, tt.arg)
		var ae *ArgError
		if !errors.As(err, &ae) {
			t.Errorf("%T: error %v is not an *ArgError", tt.arg, err)
			continue
		}
		if ae.Type != tt.typ || !strings.HasPrefix(err.Error(), tt.text+" (") {
			t.Errorf("%T: got Type %q, Error %q", tt.arg, ae.Type, err.Error())
		}
		if string(got) != "pre" {
			t.Errorf("%T: dst changed to %q", tt.arg, got)
		}
	}
}

func TestAppendValueExactBytes(t *testing.T) {
	nested := Value{Kind: Array, Elems: []Value{
		{Kind: Map, Elems: []Value{
			{Kind: SimpleString, Str: "k"}, {Kind: Integer, Int: 1},
		}},
		{Kind: Null},
	}}
	tests := []struct {
		name         string
		v            Value
		resp3, resp2 string
	}{
		{"simple", Value{Kind: SimpleString, Str: "OK"}, "+OK\r\n", "+OK\r\n"},
		{"error", Value{Kind: Error, Str: "ERR x"}, "-ERR x\r\n", "-ERR x\r\n"},
		{"integer", Value{Kind: Integer, Int: -3}, ":-3\r\n", ":-3\r\n"},
		{"bulk", Value{Kind: BulkString, Str: "a\r\nb"}, "$4\r\na\r\nb\r\n", "$4\r\na\r\nb\r\n"},
		{"null", Value{Kind: Null}, "_\r\n", "$-1\r\n"},
		{"true", Value{Kind: Boolean, Int: 1}, "#t\r\n", ":1\r\n"},
		{"false", Value{Kind: Boolean}, "#f\r\n", ":0\r\n"},
		{"double", DoubleValue(1.25), ",1.25\r\n", "$4\r\n1.25\r\n"},
		{"double exp", DoubleValue(1e300), ",1e+300\r\n", "$6\r\n1e+300\r\n"},
		{"double inf", DoubleValue(math.Inf(1)), ",inf\r\n", "$3\r\ninf\r\n"},
		{"double -inf", DoubleValue(math.Inf(-1)), ",-inf\r\n", "$4\r\n-inf\r\n"},
		{"double nan", DoubleValue(math.NaN()), ",nan\r\n", "$3\r\nnan\r\n"},
		{"big", Value{Kind: BigNumber, Str: "-123456789012345678901234567890"}, "(-123456789012345678901234567890\r\n", "$31\r\n-123456789012345678901234567890\r\n"},
		{"bulk error", Value{Kind: BulkError, Str: "SYNTAX x\r\ny"}, "!11\r\nSYNTAX x\r\ny\r\n", "-SYNTAX x  y\r\n"},
		{"verbatim", Value{Kind: Verbatim, Str: "Some string", Aux: &Aux{Format: "txt"}}, "=15\r\ntxt:Some string\r\n", "$11\r\nSome string\r\n"},
		{"verbatim bad format", Value{Kind: Verbatim, Str: "x", Aux: &Aux{Format: "markdown"}}, "=5\r\ntxt:x\r\n", "$1\r\nx\r\n"},
		{"empty array", Value{Kind: Array}, "*0\r\n", "*0\r\n"},
		{"set", Value{Kind: Set, Elems: []Value{{Kind: Integer, Int: 1}}}, "~1\r\n:1\r\n", "*1\r\n:1\r\n"},
		{"push", Value{Kind: Push, Elems: []Value{{Kind: BulkString, Str: "message"}}}, ">1\r\n$7\r\nmessage\r\n", "*1\r\n$7\r\nmessage\r\n"},
		{"map odd", Value{Kind: Map, Elems: []Value{{Kind: Integer, Int: 1}}}, "%1\r\n:1\r\n_\r\n", "*2\r\n:1\r\n$-1\r\n"},
		{"nested", nested, "*2\r\n%1\r\n+k\r\n:1\r\n_\r\n", "*2\r\n*2\r\n+k\r\n:1\r\n$-1\r\n"},
		{"attrs", Value{Kind: Integer, Int: 5, Aux: &Aux{Attrs: []Value{{Kind: SimpleString, Str: "ttl"}, {Kind: Integer, Int: 3}}}},
			"|1\r\n+ttl\r\n:3\r\n:5\r\n", ":5\r\n"},
		{"empty attrs", Value{Kind: Null, Aux: &Aux{Attrs: []Value{}}}, "|0\r\n_\r\n", "$-1\r\n"},
		{"unknown kind", Value{Kind: Attribute}, "_\r\n", "$-1\r\n"},
	}
	for _, tt := range tests {
		if got := AppendValue(nil, tt.v); string(got) != tt.resp3 {
			t.Errorf("%s: AppendValue = %q, want %q", tt.name, got, tt.resp3)
		}
		if got := AppendValue2(nil, tt.v); string(got) != tt.resp2 {
			t.Errorf("%s: AppendValue2 = %q, want %q", tt.name, got, tt.resp2)
		}
	}
}

func TestWriterAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	key, val := "key", "value"
	n := testing.AllocsPerRun(100, func() {
		buf = AppendArrayLen(buf[:0], 3)
		buf = AppendBulkString(buf, "SET")
		buf = AppendBulkString(buf, key)
		buf = AppendBulkString(buf, val)
		buf = AppendBulkInt(buf, 12345)
		buf = AppendBulkUint(buf, 12345)
		buf = AppendBulkFloat(buf, 3.25)
		buf = AppendBulkBool(buf, true)
	})
	if n != 0 {
		t.Errorf("encoding SET allocates %v times, want 0", n)
	}
	n = testing.AllocsPerRun(100, func() {
		buf, _ = AppendArg(buf[:0], "SET")
		buf, _ = AppendArg(buf, 42)
		buf, _ = AppendArg(buf, []byte(nil))
	})
	if n != 0 {
		t.Errorf("AppendArg with constant arguments allocates %v times, want 0", n)
	}
}
