package redpipe

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
)

// repeater is an endless stream of one reply, for decoding benchmarks.
type repeater struct {
	b   []byte
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// encodeSetDecodeOK is the hot path of a SET: its encoding into a reused
// buffer and the decoding of its +OK.
func encodeSetDecodeOK(w *cmdBuf, rd *resp.Reader, key, val string) error {
	w.reset()
	encSet(w, key, val)
	if w.err != nil {
		return w.err
	}
	v, err := rd.ReadValue()
	if err != nil {
		return err
	}
	return okReply(Value{v}, nil)
}

// TestEncodeSetDecodeReplyAllocations: encoding a SET and decoding its
// reply allocates nothing but the box of a value made at run time, which
// escapes because an argument of a type without a built-in encoding is
// encoded by its methods. A constant value, whose box is static, costs
// nothing, nor does a command whose arguments are typed.
func TestEncodeSetDecodeReplyAllocations(t *testing.T) {
	w := &cmdBuf{}
	rd := resp.NewReader(&repeater{b: []byte("+OK\r\n")}, resp.Limits{})
	key, val := strconv.Itoa(12345), fmt.Sprint("value-", 1)
	bval := []byte(val)
	if err := encodeSetDecodeOK(w, rd, key, val); err != nil {
		t.Fatal(err)
	}
	if string(w.buf) != "*3\r\n$3\r\nSET\r\n$5\r\n12345\r\n$7\r\nvalue-1\r\n" {
		t.Fatalf("encoded %q", w.buf)
	}
	// run encodes with enc and decodes a reply as encodeSetDecodeOK does.
	run := func(enc func()) error {
		w.reset()
		enc()
		if w.err != nil {
			return w.err
		}
		v, err := rd.ReadValue()
		if err != nil {
			return err
		}
		return okReply(Value{v}, nil)
	}
	for _, tc := range []struct {
		name string
		max  float64
		run  func() error
	}{
		{"run-time value", 1, func() error { return encodeSetDecodeOK(w, rd, key, val) }},
		{"run-time []byte", 1, func() error { return run(func() { encSet(w, key, bval) }) }},
		{"constant value", 0, func() error { return run(func() { encSet(w, key, "value-1") }) }},
		{"typed", 0, func() error { return run(func() { encIncrBy(w, key, 12345) }) }},
	} {
		allocs := testing.AllocsPerRun(1000, func() {
			if err := tc.run(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > tc.max {
			t.Errorf("%s: encoding a SET and decoding its reply allocated %v times, want at most %v", tc.name, allocs, tc.max)
		}
	}
}

func BenchmarkEncodeSetDecodeReply(b *testing.B) {
	w := &cmdBuf{}
	rd := resp.NewReader(&repeater{b: []byte("+OK\r\n")}, resp.Limits{})
	key, val := "key:000001", "0123456789abcdef"
	b.ReportAllocs()
	for b.Loop() {
		if err := encodeSetDecodeOK(w, rd, key, val); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, tc := range []struct{ name, wire string }{
		{"status", "+OK\r\n"},
		{"int", ":123456\r\n"},
		{"bulk16", "$16\r\n0123456789abcdef\r\n"},
		{"null", "_\r\n"},
		{"double", ",3.25\r\n"},
		{"array3", "*3\r\n$1\r\na\r\n:1\r\n+OK\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			rd := resp.NewReader(&repeater{b: []byte(tc.wire)}, resp.Limits{})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rd.ReadValue(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReplyAccessors is the cost of reading typed replies out of a
// batch's Values, which every caller checking a pipeline's replies pays
// once per command; ns/op is per reply.
func BenchmarkReplyAccessors(b *testing.B) {
	const n = 1024
	ints := make([]Value, n)
	oks := make([]Value, n)
	bulks := make([]Value, n)
	for i := range n {
		ints[i] = Value{resp.Value{Kind: resp.Integer, Int: int64(i)}}
		oks[i] = Value{resp.Value{Kind: resp.SimpleString, Str: "OK"}}
		bulks[i] = Value{resp.Value{Kind: resp.BulkString, Str: "0123456789abcdef"}}
	}
	b.Run("Int64", func(b *testing.B) {
		for b.Loop() {
			for i := range ints {
				if v, err := ints[i].Int64(); err != nil || v != int64(i) {
					b.Fatal(i, v, err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/reply")
	})
	for _, tc := range []struct {
		name string
		vs   []Value
		want string
	}{{"Text-status", oks, "OK"}, {"Text-bulk", bulks, "0123456789abcdef"}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				for i := range tc.vs {
					if s, err := tc.vs[i].Text(); err != nil || s != tc.want {
						b.Fatal(i, s, err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/reply")
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	w := &cmdBuf{}
	b.ReportAllocs()
	key, val := "key:000001", "0123456789abcdef"
	for b.Loop() {
		w.reset()
		encSet(w, key, val, "EX", 60)
		encIncrBy(w, key, 42)
		encHGet(w, key, "field")
	}
}

// BenchmarkPipeline1000 is one round trip of 1000 SETs with every reply
// checked, on a real server; allocs/op divided by 1000 is per command.
func BenchmarkPipeline1000(b *testing.B) {
	for _, tc := range []struct {
		name  string
		opts  []PipelineOption
		fresh bool // a new pipeline per batch, or one used again
	}{{"plain", []PipelineOption{NoTransaction}, false}, {"plain-new", []PipelineOption{NoTransaction}, true}, {"multi", nil, false}} {
		b.Run(tc.name, func(b *testing.B) {
			c, _ := newTestClient(b, Options{})
			ctx := context.Background()
			keys := testKeys(1000)
			val := "0123456789abcdef"
			p := c.Pipeline(tc.opts...)
			b.ReportAllocs()
			for b.Loop() {
				if tc.fresh {
					p = c.Pipeline(tc.opts...)
				}
				execSets(b, ctx, p, keys, val)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/cmd")
		})
	}
}

// BenchmarkSequential is one caller waiting for each reply in turn: the
// latency of the path through the connection engine, with the reader
// polling the socket (the default) and sleeping in the runtime's poller.
func BenchmarkSequential(b *testing.B) {
	for _, tc := range []struct {
		name string
		poll time.Duration
	}{{"poll", 0}, {"nopoll", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			c, _ := newTestClient(b, Options{PollWait: tc.poll})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Incr(ctx, "n"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAutoPipelined is many goroutines sharing the client: their
// commands are written together.
func BenchmarkAutoPipelined(b *testing.B) {
	c, _ := newTestClient(b, Options{})
	ctx := context.Background()
	b.SetParallelism(32)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprintf("k%p", pb)
		for pb.Next() {
			if err := c.Set(ctx, key, "v"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStream is a bulk load of 100,000 SETs through a Stream, every
// reply checked; ns/op divided by 100,000 is per command. Its memory stays
// at a few chunks (B/op), where a pipeline would hold the whole batch.
func BenchmarkStream(b *testing.B) {
	c, _ := newTestClient(b, Options{})
	ctx := context.Background()
	keys := testKeys(100_000)
	val := "0123456789abcdef"
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		s := c.Stream(ctx, func(i int, v Value) error { n++; return okReply(v, nil) })
		for _, k := range keys {
			s.Set(k, val)
		}
		if _, err := s.Close(ctx); err != nil || n != len(keys) {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkPipelineIncr100k is seed 002's pipeline: 100,000 INCRs and a
// GET in one plain pipeline, every reply checked; ns/cmd is per command.
// after-collections empties the buffer pools first, as happens between a
// program's large batches, so it counts what the kept buffers save.
func BenchmarkPipelineIncr100k(b *testing.B) {
	c, _ := newTestClient(b, Options{})
	ctx := context.Background()
	const n = 100_000
	run := func(b *testing.B, collect bool) {
		b.ReportAllocs()
		for b.Loop() {
			if collect {
				// As between a program's large batches: its pools of
				// buffers have been emptied by collections.
				b.StopTimer()
				runtime.GC()
				runtime.GC()
				b.StartTimer()
			}
			c.Del(ctx, "n")
			p := c.Pipeline(NoTransaction)
			for range n {
				p.Incr("n")
			}
			p.Get("n")
			replies, err := p.Exec(ctx)
			if err != nil || len(replies) != n+1 {
				b.Fatal(len(replies), err)
			}
			for i := range n {
				if v, err := replies[i].Int64(); err != nil || v != int64(i+1) {
					b.Fatal(i, v, err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/cmd")
	}
	b.Run("back-to-back", func(b *testing.B) { run(b, false) })
	b.Run("after-collections", func(b *testing.B) { run(b, true) })
}
