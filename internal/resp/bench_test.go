package resp

import (
	"strconv"
	"testing"
	"time"
)

// repeatReader endlessly returns its pattern, so that reader benchmarks
// measure decoding rather than input setup.
type repeatReader struct {
	pattern []byte
	off     int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.pattern[r.off:])
		n += c
		r.off = (r.off + c) % len(r.pattern)
	}
	return n, nil
}

func BenchmarkAppendSet(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf = AppendArrayLen(buf[:0], 3)
		buf = AppendBulkString(buf, "SET")
		buf = AppendBulkString(buf, "key")
		buf = AppendBulkString(buf, "value")
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkAppendArg encodes one argument boxed in an any, as Do and the
// typed methods' value arguments pass it. "const" boxes a constant, which
// needs no allocation wherever the argument goes; the others box values
// known only at run time. "binary" (a MarshalBinary returning a slice it
// holds) and "time" take the path of types without a built-in encoding.
func BenchmarkAppendArg(b *testing.B) {
	s := strconv.Itoa(1234567890)
	bs := []byte(s)
	n := len(s) * 100003
	tm := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		arg  func([]byte) ([]byte, error)
	}{
		{"const", func(dst []byte) ([]byte, error) { return AppendArg(dst, "0123456789") }},
		{"string", func(dst []byte) ([]byte, error) { return AppendArg(dst, s) }},
		{"bytes", func(dst []byte) ([]byte, error) { return AppendArg(dst, bs) }},
		{"int", func(dst []byte) ([]byte, error) { return AppendArg(dst, n) }},
		{"binary", func(dst []byte) ([]byte, error) { return AppendArg(dst, marshaler{b: bs}) }},
		{"time", func(dst []byte) ([]byte, error) { return AppendArg(dst, tm) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 64)
			for b.Loop() {
				buf, _ = tc.arg(buf[:0])
			}
		})
	}
}

func benchmarkRead(b *testing.B, input string) {
	b.ReportAllocs()
	b.SetBytes(int64(len(input)))
	r := NewReader(&repeatReader{pattern: []byte(input)}, Limits{})
	for b.Loop() {
		if _, err := r.ReadValue(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadOK(b *testing.B)     { benchmarkRead(b, "+OK\r\n") }
func BenchmarkReadInt(b *testing.B)    { benchmarkRead(b, ":1234567\r\n") }
func BenchmarkReadBulk(b *testing.B)   { benchmarkRead(b, "$16\r\n0123456789abcdef\r\n") }
func BenchmarkReadDouble(b *testing.B) { benchmarkRead(b, ",3.14159\r\n") }
func BenchmarkReadVerbatim(b *testing.B) {
	benchmarkRead(b, "=15\r\ntxt:Some string\r\n")
}
func BenchmarkReadArray10(b *testing.B) {
	benchmarkRead(b, "*10\r\n$1\r\n0\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n$1\r\n5\r\n$1\r\n6\r\n$1\r\n7\r\n$1\r\n8\r\n$1\r\n9\r\n")
}

func BenchmarkSkipArray10(b *testing.B) {
	input := "*10\r\n$1\r\n0\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n$1\r\n5\r\n$1\r\n6\r\n$1\r\n7\r\n$1\r\n8\r\n$1\r\n9\r\n"
	b.ReportAllocs()
	b.SetBytes(int64(len(input)))
	r := NewReader(&repeatReader{pattern: []byte(input)}, Limits{})
	for b.Loop() {
		if err := r.Skip(); err != nil {
			b.Fatal(err)
		}
	}
}
