package redpipe

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
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
	if err == nil || !strings.Contains(err.Error(), "reply nan is not an integer") {
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
