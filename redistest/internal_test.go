package redistest

import (
	"bufio"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestTailBufferKeepsTheTail(t *testing.T) {
	b := newTailBuffer(8)
	b.Write([]byte("abc"))
	m := b.mark()
	b.Write([]byte("defgh"))
	if got := b.String(); got != "abcdefgh" {
		t.Errorf("String() = %q", got)
	}
	b.Write([]byte("ij"))
	if got := b.String(); got != "cdefghij" {
		t.Errorf("String() after overflow = %q", got)
	}
	if got := b.since(m); got != "defghij" {
		t.Errorf("since(mark) = %q", got)
	}
	b.Write([]byte("0123456789"))
	if got := b.String(); got != "23456789" {
		t.Errorf("String() after a write larger than the buffer = %q", got)
	}
	if got := b.since(m); got != "23456789" {
		t.Errorf("since(mark) once mark is gone = %q", got)
	}
}

func TestFormatOutputShowsLastLines(t *testing.T) {
	var sb strings.Builder
	for i := range 30 {
		fmt.Fprintf(&sb, "line %d\n\n", i)
	}
	got := formatOutput(sb.String())
	if strings.Contains(got, "line 9\n") || !strings.Contains(got, "line 10\n") || !strings.HasSuffix(got, "line 29") {
		t.Errorf("formatOutput kept the wrong lines:\n%s", got)
	}
	if got := formatOutput(""); !strings.Contains(got, "printed nothing") {
		t.Errorf("formatOutput(\"\") = %q", got)
	}
}

func TestReadReplyRESP3(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{"+OK\r\n", "OK"},
		{"-ERR bad\r\n", ReplyError("ERR bad")},
		{":-42\r\n", int64(-42)},
		{"$-1\r\n", nil},
		{"$0\r\n\r\n", ""},
		{"*-1\r\n", nil},
		{"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", []any{"a", []any{int64(1)}}},
		{"_\r\n", nil},
		{"#t\r\n", true},
		{",1.5\r\n", 1.5},
		{"(123456789012345678901234567890\r\n", "123456789012345678901234567890"},
		{"=7\r\ntxt:abc\r\n", "abc"},
		{"!5\r\nERR x\r\n", ReplyError("ERR x")},
		{"%1\r\n+k\r\n:1\r\n", []any{"k", int64(1)}},
		{"~1\r\n+m\r\n", []any{"m"}},
		{"|1\r\n+ttl\r\n:3\r\n+value\r\n", "value"},
	}
	for _, c := range cases {
		v, err := readReply(bufio.NewReader(strings.NewReader(c.in)))
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(v, c.want) {
			t.Errorf("%q decoded to %#v (%T), want %#v (%T)", c.in, v, v, c.want, c.want)
		}
	}
	for _, in := range []string{"", "+OK\n", "$5\r\nab\r\n", "*x\r\n", "?\r\n", "$3\r\nabcXY"} {
		if v, err := readReply(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("%q decoded to %#v, want an error", in, v)
		}
	}
	if v, _ := readReply(bufio.NewReader(strings.NewReader("-NOAUTH x\r\n"))); v.(ReplyError).Prefix() != "NOAUTH" {
		t.Errorf("Prefix of %#v", v)
	}
}
