package redpipe

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// A NaN or infinite double reads alike from a RESP3 server, from a RESP2
// one (which sends its text as a bulk string) and when built: Text and
// String agree, both spell it as the server does, and Float64 gives the
// number back under either protocol.
func TestDoubleTextAgreesAcrossProtocolsAndNewValue(t *testing.T) {
	scripts := map[string]string{
		"nan":  "return {double=0/0}",
		"inf":  "return {double=1/0}",
		"-inf": "return {double=-1/0}",
		"0.1":  "return {double=0.1}",
	}
	texts := map[int]map[string]string{}
	for _, proto := range []int{2, 3} {
		c, _ := newTestClient(t, Options{Protocol: proto})
		ctx := ctxT(t)
		texts[proto] = map[string]string{}
		for name, script := range scripts {
			v, err := c.Do(ctx, "EVAL", script, "0")
			if err != nil {
				t.Fatalf("RESP%d %s: %v", proto, name, err)
			}
			s, err := v.Text()
			if err != nil {
				t.Fatalf("RESP%d %s: Text: %v", proto, name, err)
			}
			if got := v.String(); got != s {
				t.Errorf("RESP%d %s: String() = %q, Text() = %q", proto, name, got, s)
			}
			f, err := v.Float64()
			if err != nil {
				t.Errorf("RESP%d %s (%v reply %q): Float64: %v", proto, name, v.Kind(), s, err)
			}
			if name == "nan" && !math.IsNaN(f) {
				t.Errorf("RESP%d nan: Float64 = %v, want NaN", proto, f)
			}
			texts[proto][name] = s
		}
	}
	for name := range scripts {
		if texts[2][name] != texts[3][name] {
			t.Errorf("%s: RESP2 text %q, RESP3 text %q", name, texts[2][name], texts[3][name])
		}
	}

	for _, tc := range []struct {
		f    float64
		want string
	}{
		{math.NaN(), "nan"},
		{math.Inf(1), "inf"},
		{math.Inf(-1), "-inf"},
		{1.5, "1.5"},
	} {
		v := NewValue(tc.f)
		s, err := v.Text()
		if err != nil || s != tc.want {
			t.Errorf("NewValue(%v).Text() = %q, %v; want %q", tc.f, s, err, tc.want)
		}
		if got := v.String(); got != tc.want {
			t.Errorf("NewValue(%v).String() = %q, want %q", tc.f, got, tc.want)
		}
	}
	_, err := NewValue(math.NaN()).Int64()
	if err == nil || !strings.Contains(err.Error(), "nan is not an integer") {
		t.Errorf("Int64 of a NaN double: %v", err)
	}
}

// Float64 reads text as the server writes numbers: it refuses what only
// Go's parser takes (underscores, hex floats, "Infinity") instead of
// reading "1_0" as 10, takes "-nan", the text of a NaN double under
// RESP2, and says a number too large for a float64 is out of range rather
// than not a number.
func TestFloat64ReadsNumbersAsTheServerWritesThem(t *testing.T) {
	for _, proto := range []int{2, 3} {
		c, _ := newTestClient(t, Options{Protocol: proto})
		ctx := ctxT(t)
		for _, tc := range []struct {
			text    string
			want    float64
			wantErr string
		}{
			{"1.5", 1.5, ""},
			{"-0", 0, ""},
			{"+2e3", 2000, ""},
			{".5", 0.5, ""},
			{"5.", 5, ""},
			{"-INF", math.Inf(-1), ""},
			{"nan", math.NaN(), ""},
			{"-nan", math.NaN(), ""},
			{"1e-400", 0, ""},
			{"1_0", 0, "is not a number"},
			{"0x1p4", 0, "is not a number"},
			{"Infinity", 0, "is not a number"},
			{"1e", 0, "is not a number"},
			{" 1", 0, "is not a number"},
			{"1e400", 0, "outside the float64 range"},
		} {
			if _, err := c.Do(ctx, "SET", "k", tc.text); err != nil {
				t.Fatal(err)
			}
			v, err := c.Do(ctx, "GET", "k")
			if err != nil {
				t.Fatal(err)
			}
			f, err := v.Float64()
			switch {
			case tc.wantErr == "" && (err != nil || f != tc.want && !(math.IsNaN(f) && math.IsNaN(tc.want))):
				t.Errorf("RESP%d Float64 of %q = %v, %v; want %v", proto, tc.text, f, err, tc.want)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("RESP%d Float64 of %q = %v, %v; want an error saying %q", proto, tc.text, f, err, tc.wantErr)
			}
		}

		v, err := c.Do(ctx, "EVAL", "return {big_number='1'..string.rep('0', 400)}", "0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := v.Float64()
		if err == nil || !strings.Contains(err.Error(), "outside the float64 range") {
			t.Errorf("RESP%d Float64 of a 401-digit big number = %v, %v; want an out-of-range error", proto, f, err)
		}
	}
}

// NewValue takes integers of every size, as its doc says, instead of
// panicking on all but int and int64.
func TestNewValueIntegersOfEverySize(t *testing.T) {
	for _, tc := range []struct {
		x    any
		want int64
	}{
		{int8(-8), -8}, {int16(-16), -16}, {int32(-32), -32}, {int64(-64), -64},
		{uint(1), 1}, {uint8(8), 8}, {uint16(16), 16}, {uint32(32), 32}, {uint64(math.MaxInt64), math.MaxInt64},
	} {
		v := NewValue(tc.x)
		n, err := v.Int64()
		if v.Kind() != KindInteger || err != nil || n != tc.want {
			t.Errorf("NewValue(%T(%v)): kind %v, Int64 %d, %v; want integer %d", tc.x, tc.x, v.Kind(), n, err, tc.want)
		}
	}
	big := NewValue(uint64(math.MaxUint64))
	s, err := big.Text()
	if big.Kind() != KindBigNumber || err != nil || s != "18446744073709551615" {
		t.Errorf("NewValue(MaxUint64): kind %v, Text %q, %v", big.Kind(), s, err)
	}
	if _, err := big.Int64(); err == nil {
		t.Error("Int64 of MaxUint64 gave no error")
	}
	if f, err := NewValue(float32(1.5)).Float64(); err != nil || f != 1.5 {
		t.Errorf("NewValue(float32(1.5)).Float64() = %v, %v", f, err)
	}
}

// String keeps the shape of an aggregate visible: an element whose text
// holds a space, is empty, reads "nil" or does not print is quoted, so
// that it cannot pass for two elements, for none or for a nil reply, and
// so is a key or value of a map that holds a colon.
// Strings outside an aggregate print as they are.
func TestStringQuotesAmbiguousElements(t *testing.T) {
	for _, proto := range []int{2, 3} {
		c, _ := newTestClient(t, Options{Protocol: proto})
		ctx := ctxT(t)
		v, err := c.Do(ctx, "EVAL", `return {1, "x y", "", "nil", "a\0b\n", "[z]", "user:1", {"k:v", redis.error_reply("ERR no way")}, false}`, "0")
		if err != nil {
			t.Fatal(err)
		}
		want := `[1 "x y" "" "nil" "a\x00b\n" "[z]" user:1 [k:v (error) "ERR no way"] nil]`
		if got := v.String(); got != want {
			t.Errorf("RESP%d: String() = %s\nwant %s", proto, got, want)
		}
		if _, err := c.Do(ctx, "HSET", "h", "a:b", "c", "d", "e f"); err != nil {
			t.Fatal(err)
		}
		v, err = c.Do(ctx, "HGETALL", "h")
		if err != nil {
			t.Fatal(err)
		}
		wantMap := map[int]string{2: `[a:b c d "e f"]`, 3: `map["a:b":c d:"e f"]`}[proto]
		if got := v.String(); got != wantMap {
			t.Errorf("RESP%d: String() of HGETALL = %s, want %s", proto, got, wantMap)
		}
		v, err = c.Do(ctx, "EVAL", `return "x y"`, "0")
		if err != nil {
			t.Fatal(err)
		}
		if got := v.String(); got != "x y" {
			t.Errorf("RESP%d: String() of a plain string = %q, want it as it is", proto, got)
		}
	}
	v := NewValue([]any{"a b", nil, []any{"", 2}})
	if got, want := v.String(), `["a b" nil ["" 2]]`; got != want {
		t.Errorf("built: String() = %s, want %s", got, want)
	}
	if got, want := fmt.Sprintf("%q", v), strconv.Quote(`["a b" nil ["" 2]]`); got != want {
		t.Errorf("built: %%q = %s, want %s", got, want)
	}
}

// Every reader of a reply that cannot read it as the type asked for
// returns a *TypeError, which names the reply's kind, the type wanted and
// what stood in the way, and keeps strconv's cause for errors.Is and
// errors.As: a string that is not a number is no different from an array
// read as one, for a caller who tests errors with errors.As.
func TestAccessorsReportTypeErrors(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "SET", "word", "abc")
	srv.MustDo(t, "SET", "big", "99999999999999999999")
	srv.MustDo(t, "SET", "huge", "1e400")
	srv.MustDo(t, "RPUSH", "odd", "a", "1", "b")
	srv.MustDo(t, "RPUSH", "mixed", "1", "abc")
	srv.MustDo(t, "ZADD", "z", "1.5", "frac")
	for _, proto := range []int{2, 3} {
		c, ctx := protocolClient(t, srv.Addr, proto), ctxT(t)
		rs, err := c.Pipeline(NoTransaction).Get("word").Get("big").Get("huge").Do("LRANGE", "odd", 0, -1).
			Do("LRANGE", "mixed", 0, -1).Ping().ZScore("z", "frac").Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		word, big, huge, odd, mixed, pong, frac := rs[0], rs[1], rs[2], rs[3], rs[4], rs[5], rs[6]
		fracKind := "bulk string"
		if proto == 3 {
			fracKind = "double"
		}
		for _, tt := range []struct {
			what  string
			read  func() error
			got   string // the kind the error names
			want  string // the type it names
			says  string // in the message
			cause error  // reached with errors.Is, if not nil
		}{
			{"Int64 of \"abc\"", func() error { _, err := word.Int64(); return err }, "bulk string", "int64", `"abc" is not an integer`, strconv.ErrSyntax},
			{"Int64 of 20 nines", func() error { _, err := big.Int64(); return err }, "bulk string", "int64", "outside the int64 range", strconv.ErrRange},
			{"Int64 of 1.5", func() error { _, err := frac.Int64(); return err }, fracKind, "int64", "1.5", nil},
			{"Float64 of \"abc\"", func() error { _, err := word.Float64(); return err }, "bulk string", "float64", `"abc" is not a number`, strconv.ErrSyntax},
			{"Float64 of 1e400", func() error { _, err := huge.Float64(); return err }, "bulk string", "float64", "outside the float64 range", strconv.ErrRange},
			{"Bool of \"abc\"", func() error { _, err := word.Bool(); return err }, "bulk string", "bool", "", nil},
			{"Bool of PONG", func() error { _, err := pong.Bool(); return err }, "simple string", "bool", `"PONG" is not OK`, nil},
			{"Slice of \"abc\"", func() error { _, err := word.Slice(); return err }, "bulk string", "slice", "", nil},
			{"Text of an array", func() error { _, err := odd.Text(); return err }, "array", "string", "", nil},
			{"Bytes of an array", func() error { _, err := odd.Bytes(); return err }, "array", "string", "", nil},
			{"Map of 3 elements", func() error { _, err := odd.Map(); return err }, "array", "map", "3 elements are not a list of pairs", nil},
			{"StringMap of 3 elements", func() error { _, err := odd.StringMap(); return err }, "array", "map", "3 elements are not a list of pairs", nil},
			{"Scored of 3 elements", func() error { _, err := odd.Scored(); return err }, "array", "scored members", "3 elements are not a list of pairs", nil},
			{"Scored of \"abc\"", func() error { _, err := word.Scored(); return err }, "bulk string", "scored members", "", nil},
			{"Int64s of [1 abc]", func() error { _, err := mixed.Int64s(); return err }, "bulk string", "int64", `element 1: redpipe: cannot read a bulk string reply as int64: "abc" is not an integer`, strconv.ErrSyntax},
			{"Strings of \"abc\"", func() error { _, err := word.Strings(); return err }, "bulk string", "slice", "", nil},
			{"Scored of [a 1 b abc]", func() error {
				_, err := NewValue([]any{"a", "1", "b", "abc"}).Scored()
				return err
			}, "bulk string", "float64", `score of member 1: redpipe: cannot read a bulk string reply as float64: "abc" is not a number`, strconv.ErrSyntax},
			{"DecodeInfo of \"abc\"", func() error { _, err := DecodeInfo(word); return err }, "bulk string", "INFO sections", `line "abc" has no colon`, nil},
		} {
			err := tt.read()
			var te *TypeError
			if !errors.As(err, &te) || te.Got != tt.got || te.Want != tt.want {
				t.Errorf("RESP%d %s: error %v (%T); want a *TypeError of %s reply read as %s", proto, tt.what, err, err, withArticle(tt.got), tt.want)
				continue
			}
			if !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "cannot read "+withArticle(tt.got)+" reply as "+tt.want) {
				t.Errorf("RESP%d %s: error %q; want it to name the kind, the type and say %q", proto, tt.what, err, tt.says)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Errorf("RESP%d %s: error %v does not match %v", proto, tt.what, err, tt.cause)
			}
			var ne *strconv.NumError
			if tt.cause != nil && tt.got == "bulk string" && (!errors.As(err, &ne) || ne.Num == "") {
				t.Errorf("RESP%d %s: error %v holds no *strconv.NumError", proto, tt.what, err)
			}
		}
		// A Decoder's TypeError reaches the caller through its DecodeError.
		c.SetDecoder("GET", DecodeInfo)
		_, err = c.Get(ctx, "word")
		var de *DecodeError
		var te *TypeError
		if !errors.As(err, &de) || !errors.As(err, &te) || te.Want != "INFO sections" {
			t.Errorf("RESP%d GET decoded by DecodeInfo: %v; want a DecodeError holding a *TypeError", proto, err)
		}
	}
}

// Int64 reads the text of a string as the server reads a counter's: it
// takes what INCRBY takes and refuses what INCRBY refuses ("+1", "01",
// "-0", spaces), so that a value the server would not count with is not
// read as an integer either. The server itself is the judge here.
func TestInt64ReadsTextAsTheServerCounts(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	for _, text := range []string{
		"0", "1", "-1", "10", "-10", "9223372036854775807", "-9223372036854775808",
		"+1", "01", "-01", "00", "-0", "+0", " 1", "1 ", "-", "+", "", "1-", "--1", "0x10", "1_0", "1.0",
		"9223372036854775808", "-9223372036854775809",
	} {
		if err := c.Set(ctx, "n", text); err != nil {
			t.Fatal(err)
		}
		_, srvErr := c.IncrBy(ctx, "n", 0)
		v, err := c.Do(ctx, "GET", "n")
		if err != nil {
			t.Fatal(err)
		}
		n, err := v.Int64()
		switch {
		case srvErr == nil && (err != nil || strconv.FormatInt(n, 10) != text):
			t.Errorf("Int64 of %q = %d, %v; the server counts with it", text, n, err)
		case srvErr != nil && err == nil:
			t.Errorf("Int64 of %q = %d; the server refuses to count with it (%v)", text, n, srvErr)
		case srvErr != nil:
			var te *TypeError
			if !errors.As(err, &te) || !errors.Is(err, strconv.ErrSyntax) && !errors.Is(err, strconv.ErrRange) {
				t.Errorf("Int64 of %q: error %v; want a *TypeError holding strconv's cause", text, err)
			}
		}
	}
}

// A Value prints under every fmt verb as the reply reads, never as the
// fields that hold it: %v, %s, %q print String; %#v adds the kind, which
// tells an integer from text; %d, %f and %t print what Int64, Float64 and
// Bool read, with flags and width, and a reply they cannot read prints as
// fmt prints a wrong verb.
func TestValueFormat(t *testing.T) {
	c, _ := newTestClient(t, Options{Protocol: 3})
	ctx := ctxT(t)
	rs, err := c.Pipeline(NoTransaction).Set("n", "42").Get("n").Incr("n").Do("RPUSH", "l", "a b", 7).
		Do("LRANGE", "l", 0, -1).Get("missing").Do("ZADD", "z", 1.5, "m").ZScore("z", "m").Ping().Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	text, integer, list, missing, double, pong := rs[1], rs[2], rs[4], rs[5], rs[7], rs[8]
	for _, tt := range []struct {
		format string
		v      any
		want   string
	}{
		{"%v", text, "42"},
		{"%s", list, `["a b" 7]`},
		{"%q", text, `"42"`},
		{"%q", list, `"[\"a b\" 7]"`},
		{"%+v", integer, "43"},
		{"[%5v]", integer, "[   43]"},
		{"[%-5s]", text, "[42   ]"},
		{"%x", pong, "504f4e47"},
		{"%#v", text, `redpipe.Value(bulk string "42")`},
		{"%#v", integer, "redpipe.Value(integer 43)"},
		{"%#v", list, `redpipe.Value(array ["a b" 7])`},
		{"%#v", missing, "redpipe.Value(nil)"},
		{"%#v", double, "redpipe.Value(double 1.5)"},
		{"%#v", pong, `redpipe.Value(simple string "PONG")`},
		{"%#v", []Value{integer, missing}, "[]redpipe.Value{redpipe.Value(integer 43), redpipe.Value(nil)}"},
		{"%d", integer, "43"},
		{"%d", text, "42"},
		{"%05d", integer, "00043"},
		{"%x", integer, "3433"}, // the text, as fmt prints a Stringer
		{"%.2f", double, "1.50"},
		{"%g", integer, "43"},
		{"%t", integer, "true"},
		{"%d", list, `%!d(redpipe.Value=["a b" 7])`},
		{"%d", double, "%!d(redpipe.Value=1.5)"},
		{"%d", missing, "%!d(redpipe.Value=nil)"},
		{"%f", pong, "%!f(redpipe.Value=PONG)"},
		{"%t", text, "%!t(redpipe.Value=42)"},
		{"%v", []Value{integer, missing}, "[43 nil]"},
	} {
		if got := fmt.Sprintf(tt.format, tt.v); got != tt.want {
			t.Errorf("Sprintf(%q, %s) = %q, want %q", tt.format, tt.v, got, tt.want)
		}
	}
}
