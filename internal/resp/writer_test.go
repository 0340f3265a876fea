package resp

import (
	"errors"
	"math"
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

type marshaler struct {
	b   []byte
	err error
}

func (m marshaler) MarshalBinary() ([]byte, error) { return m.b, m.err }

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

// TestAppendArgRefusesMethods: a type that could encode itself is refused,
// because calling its method would make every argument escape.
func TestAppendArgRefusesMethods(t *testing.T) {
	for _, arg := range []any{time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC), marshaler{b: []byte("bin")}} {
		got, err := AppendArg([]byte("pre"), arg)
		var ae *ArgError
		if !errors.As(err, &ae) || string(got) != "pre" || !strings.Contains(err.Error(), "MarshalBinary") {
			t.Errorf("%T: got %q, %v", arg, got, err)
		}
	}
}

// TestAppendArgDoesNotAllocate: a non-constant string or slice boxed into
// the argument stays on the caller's stack.
func TestAppendArgDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 256)
	s := strings.Repeat("v", 16)
	b := []byte(s)
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = AppendArg(buf[:0], s)
		buf, _ = AppendArg(buf, b)
		buf, _ = AppendArg(buf, len(s))
	})
	if allocs != 0 {
		t.Fatalf("AppendArg allocated %v times", allocs)
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
