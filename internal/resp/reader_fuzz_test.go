package resp

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

var fuzzSeeds = []string{
	"+OK\r\n",
	"-ERR bad thing\r\n",
	":-1234\r\n",
	"$5\r\nhello\r\n",
	"$0\r\n\r\n",
	"$-1\r\n",
	"*-1\r\n",
	"*3\r\n:1\r\n$3\r\nfoo\r\n_\r\n",
	"_\r\n",
	"#t\r\n#f\r\n",
	",3.14\r\n,-inf\r\n,nan\r\n,1e-5\r\n",
	"(-3492890328409238509324850943850943825024385\r\n",
	"!21\r\nSYNTAX invalid syntax\r\n",
	"=15\r\ntxt:Some string\r\n",
	"%2\r\n+first\r\n:1\r\n+second\r\n*1\r\n~1\r\n:2\r\n",
	"~2\r\n+a\r\n+b\r\n",
	"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n",
	">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
	"*1\r\n*1\r\n*1\r\n*1\r\n*0\r\n",
	"$3\r\na\r\n\r\n",
	"$?\r\n;4\r\nHell\r\n;0\r\n",
	"+OK\n",
	"*2000000000\r\n",
}

// FuzzReader checks that no input panics, that readers fed the same bytes
// in different chunk sizes and through Skip agree on every value and error,
// and that every decoded value survives a trip through AppendValue.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	lim := Limits{MaxDepth: 32, MaxArrayLen: 1 << 20, MaxBulkLen: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := NewReaderSize(bytes.NewReader(data), 4096, lim)
		bytewise := NewReaderSize(iotest.OneByteReader(bytes.NewReader(data)), 16, lim)
		skipper := NewReaderSize(iotest.HalfReader(bytes.NewReader(data)), 16, lim)
		again := NewReaderSize(nil, 256, lim)
		again2 := NewReaderSize(nil, 256, Limits{MaxDepth: lim.MaxDepth, MaxBulkLen: lim.MaxBulkLen})
		var enc, enc2 []byte
		for {
			v, err := whole.ReadValue()
			v2, err2 := bytewise.ReadValue()
			err3 := skipper.Skip()
			checkSameError(t, err, err2)
			checkSameError(t, err, err3)
			if err != nil {
				checkErrorClass(t, err)
				return
			}
			if !v.Equal(v2) {
				t.Fatalf("chunking changed the value:\n%#v\n%#v", v, v2)
			}
			if whole.Offset() != bytewise.Offset() || whole.Offset() != skipper.Offset() {
				t.Fatalf("offsets differ: %d, %d, skip %d", whole.Offset(), bytewise.Offset(), skipper.Offset())
			}
			if v.Kind == Attribute || v.Kind == 0 {
				t.Fatalf("returned kind %v", v.Kind)
			}
			checkAux(t, v)

			enc = AppendValue(enc[:0], v)
			r := again
			r.Reset(bytes.NewReader(enc))
			back, err := r.ReadValue()
			if err != nil {
				t.Fatalf("re-decoding %q: %v", enc, err)
			}
			if !back.Equal(v) {
				t.Fatalf("round trip via %q:\n got %#v\nwant %#v", enc, back, v)
			}
			if _, err := r.ReadValue(); err != io.EOF {
				t.Fatalf("re-decoding %q: trailing data: %v", enc, err)
			}

			enc2 = AppendValue2(enc2[:0], v)
			r = again2
			r.Reset(bytes.NewReader(enc2))
			if err := r.Skip(); err != nil {
				t.Fatalf("RESP2 form %q: %v", enc2, err)
			}
			if r.Offset() != int64(len(enc2)) {
				t.Fatalf("RESP2 form %q: stopped at %d", enc2, r.Offset())
			}
		}
	})
}

// checkAux checks that the reader attaches an Aux only to a value that
// needs one, so that common replies stay free of the extra allocation, and
// that it never fills Extra, which belongs to the client.
func checkAux(t *testing.T, v Value) {
	t.Helper()
	if a := v.Aux; a != nil {
		if a.Extra != nil || (a.Attrs == nil && v.Kind != Verbatim) {
			t.Fatalf("unexpected Aux %#v on a %v", *a, v.Kind)
		}
		if (a.Format != "") != (v.Kind == Verbatim) {
			t.Fatalf("format %q on a %v", a.Format, v.Kind)
		}
		for _, e := range a.Attrs {
			checkAux(t, e)
		}
	} else if v.Kind == Verbatim {
		t.Fatal("verbatim string without a format")
	}
	for _, e := range v.Elems {
		checkAux(t, e)
	}
}

func checkErrorClass(t *testing.T, err error) {
	t.Helper()
	var pe *ProtocolError
	var le *LimitError
	switch {
	case err == io.EOF, err == io.ErrUnexpectedEOF:
	case errors.As(err, &pe):
		if pe.Expected == "" || pe.Offset < 0 {
			t.Fatalf("incomplete error %+v", pe)
		}
	case errors.As(err, &le):
	default:
		t.Fatalf("unexpected error type %T: %v", err, err)
	}
}

func checkSameError(t *testing.T, a, b error) {
	t.Helper()
	var pa, pb *ProtocolError
	var la, lb *LimitError
	switch {
	case errors.As(a, &pa) && errors.As(b, &pb):
		if *pa != *pb {
			t.Fatalf("protocol errors differ: %v / %v", a, b)
		}
	case errors.As(a, &la) && errors.As(b, &lb):
		if la.What != lb.What || la.Offset != lb.Offset {
			t.Fatalf("limit errors differ: %v / %v", a, b)
		}
	case a != b:
		t.Fatalf("errors differ: %v / %v", a, b)
	}
}
