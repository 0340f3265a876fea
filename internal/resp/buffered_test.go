package resp

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

var errMore = errors.New("the decoder read past the buffered bytes")

type noMore struct{}

func (noMore) Read([]byte) (int, error) { return 0, errMore }

// buffered returns a Reader whose buffer holds b and whose stream has
// nothing more to give.
func buffered(b []byte, lim Limits) *Reader {
	r := NewReaderSize(noMore{}, 4096, lim)
	r.Commit(copy(r.Spare(), b))
	return r
}

// checkHasValue checks HasValue against the decoder on every prefix of
// data: it says true exactly when decoding reads nothing more, whether it
// then succeeds or fails.
func checkHasValue(t *testing.T, data []byte, lim Limits) {
	t.Helper()
	for k := 0; k <= len(data); k++ {
		r := buffered(data[:k], lim)
		has := r.HasValue()
		_, err := r.ReadValue()
		if more := errors.Is(err, errMore); has == more {
			t.Fatalf("HasValue %v on %q, but decoding it gives %v", has, data[:k], err)
		}
	}
}

// checkReadBuffered checks ReadBuffered against the decoder on every
// prefix of data: it decodes exactly when HasValue is true, and then gives
// what ReadValue gives, value or error, having consumed as much; otherwise
// it consumes nothing.
func checkReadBuffered(t *testing.T, data []byte, lim Limits) {
	t.Helper()
	for k := 0; k <= len(data); k++ {
		r := buffered(data[:k], lim)
		has := r.HasValue()
		v, ok, err := r.ReadBuffered()
		want := buffered(data[:k], lim)
		wv, werr := want.ReadValue()
		if !has {
			if ok || err != nil || r.Buffered() != k {
				t.Fatalf("ReadBuffered on %q = %v, %v with %d of %d bytes left, but the value is not all there", data[:k], ok, err, r.Buffered(), k)
			}
			continue
		}
		if ok != (werr == nil) || fmt.Sprint(err) != fmt.Sprint(werr) || ok && !reflect.DeepEqual(v, wv) {
			t.Fatalf("ReadBuffered on %q = %+v, %v, %v; ReadValue gives %+v, %v", data[:k], v, ok, err, wv, werr)
		}
		if ok && r.Offset() != want.Offset() {
			t.Fatalf("ReadBuffered on %q consumed up to %d, ReadValue to %d", data[:k], r.Offset(), want.Offset())
		}
	}
}

// tightLimits make the decoder's limits show on short inputs.
var tightLimits = Limits{MaxDepth: 3, MaxArrayLen: 5, MaxBulkLen: 10}

func TestHasValue(t *testing.T) {
	lim := Limits{MaxDepth: 32, MaxArrayLen: 1 << 20, MaxBulkLen: 1 << 20}
	for _, s := range fuzzSeeds {
		checkHasValue(t, []byte(s), lim)
		checkHasValue(t, []byte(s), tightLimits)
		checkReadBuffered(t, []byte(s), lim)
		checkReadBuffered(t, []byte(s), tightLimits)
	}
	// What the decoder rejects at once is not waited on.
	for _, s := range []string{"$99999999999\r\n", "*6\r\n", "*1\r\n*1\r\n*1\r\n*1\r\n", "=3\r\n", "$?\r\n", "$3\nabc"} {
		if !buffered([]byte(s), tightLimits).HasValue() {
			t.Errorf("HasValue false on %q, which the decoder rejects as it is", s)
		}
	}
	// Whole values are recognised, however they are nested, and a strict
	// prefix of one never is.
	for _, s := range []string{
		"+OK\r\n",
		"$5\r\nhe\r\no\r\n",
		"*2\r\n$1\r\na\r\n*-1\r\n",
		"%1\r\n+k\r\n*2\r\n:1\r\n$-1\r\n",
		"|1\r\n+a\r\n+b\r\n:7\r\n",
		">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n",
		"*0\r\n",
	} {
		if !buffered([]byte(s), lim).HasValue() {
			t.Errorf("HasValue false on the whole of %q", s)
		}
		for k := range len(s) {
			if buffered([]byte(s[:k]), lim).HasValue() {
				t.Errorf("HasValue true on %q, a strict prefix of %q", s[:k], s)
			}
		}
	}
	// It runs for every reply a caller polls for: it must not allocate.
	for _, s := range []string{"*2\r\n$5\r\nhello\r\n:7\r\n", "*2\r\n$5\r\nhel"} {
		r := buffered([]byte(s), lim)
		if n := testing.AllocsPerRun(100, func() { r.HasValue() }); n != 0 {
			t.Errorf("HasValue on %q allocates %v times", s, n)
		}
	}
	// Nor does ReadBuffered on a value not all there, scalar or aggregate,
	// which it leaves for later.
	for _, s := range []string{"*2\r\n$5\r\nhello\r\n:7", "$11\r\nhello", "+OK\r", "%1\r\n+a\r\n"} {
		r := buffered([]byte(s), lim)
		if n := testing.AllocsPerRun(100, func() {
			if _, ok, err := r.ReadBuffered(); ok || err != nil {
				t.Fatalf("ReadBuffered on %q = %v, %v", s, ok, err)
			}
		}); n != 0 {
			t.Errorf("ReadBuffered on %q allocates %v times", s, n)
		}
	}
	// Two values buffered: the first is enough.
	if !buffered([]byte(":1\r\n:2"), lim).HasValue() {
		t.Error("HasValue false with a whole value and part of the next buffered")
	}
}

func TestSpareCompacts(t *testing.T) {
	r := NewReaderSize(bytes.NewReader(nil), 16, Limits{})
	r.Commit(copy(r.Spare(), ":1\r\n:22\r\n:4444\r\n"))
	if len(r.Spare()) != 0 {
		t.Fatalf("Spare of a full buffer has %d bytes", len(r.Spare()))
	}
	if v, err := r.ReadValue(); err != nil || v.Int != 1 {
		t.Fatalf("ReadValue = %v, %v", v, err)
	}
	if got := len(r.Spare()); got != 4 {
		t.Fatalf("Spare after one value was taken from a full buffer has %d bytes, want 4", got)
	}
	r.Commit(copy(r.Spare(), ":4\r\n"))
	for _, want := range []int64{22, 4444, 4} {
		if v, err := r.ReadValue(); err != nil || v.Int != want {
			t.Fatalf("ReadValue = %v, %v; want %d", v, err, want)
		}
	}
}

// FuzzHasValue checks HasValue and ReadBuffered against the decoder on
// every prefix of any input.
func FuzzHasValue(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	lim := Limits{MaxDepth: 32, MaxArrayLen: 1 << 20, MaxBulkLen: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 2048 {
			data = data[:2048]
		}
		checkHasValue(t, data, lim)
		checkHasValue(t, data, tightLimits)
		checkReadBuffered(t, data, lim)
		checkReadBuffered(t, data, tightLimits)
	})
}

// NextKind tells the kind of the value whose bytes come next, past the
// attributes before it when they are all buffered, and says Attribute
// when they are not, or are malformed: only what follows an attribute
// tells which value it belongs to.
func TestNextKind(t *testing.T) {
	tests := []struct {
		in   string
		want Kind
		ok   bool
	}{
		{"", 0, false},
		{"+OK\r\n", SimpleString, true},
		{">", Push, true},
		{"|1\r\n+a\r\n:1\r\n>2\r\n", Push, true},
		{"|1\r\n+a\r\n:1\r\n>", Push, true},
		{"|1\r\n+a\r\n:1\r\n|1\r\n+b\r\n*1\r\n:2\r\n>1\r\n+x\r\n", Push, true},
		{"|1\r\n+a\r\n:1\r\n$1\r\nx\r\n", BulkString, true},
		{"|1\r\n+a\r\n:1\r\n", Attribute, true},
		{"|1\r\n+a\r\n", Attribute, true},
		{"|1\r\n+a\r\n:", Attribute, true},
		{"|x\r\n+a\r\n:1\r\n>0\r\n", Attribute, true},
		{strings.Repeat("|0\r\n", maxAttrPeek) + ">0\r\n", Attribute, true},
		{strings.Repeat("|0\r\n", maxAttrPeek-1) + ">0\r\n", Push, true},
	}
	for _, tt := range tests {
		r := buffered([]byte(tt.in), Limits{})
		k, ok := r.NextKind()
		if k != tt.want || ok != tt.ok {
			t.Errorf("NextKind of %q = %v, %v; want %v, %v", tt.in, k, ok, tt.want, tt.ok)
		}
		if r.Offset() != 0 || r.Buffered() != len(tt.in) {
			t.Errorf("NextKind of %q consumed bytes: offset %d, %d buffered", tt.in, r.Offset(), r.Buffered())
		}
	}
}
