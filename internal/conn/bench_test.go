package conn

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// BenchmarkLargeBatch is one round trip of 10,000 SETs (450 KiB) already
// encoded, written from the caller's buffer (direct) or copied for the
// writer goroutine first (copied); ns/cmd is per command.
func BenchmarkLargeBatch(b *testing.B) {
	srv := redistest.Start(b)
	const n = 10000
	var batch []byte
	for i := range n {
		batch = append(batch, encode("SET", "key:"+strconv.Itoa(i), "0123456789abcdef")...)
	}
	for _, tc := range []struct {
		name   string
		direct int
	}{{"direct", 0}, {"copied", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			nc, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				b.Fatal(err)
			}
			c := New(nc, Options{DirectWrite: tc.direct, Poll: 100e3})
			defer c.Close()
			replies := make([]resp.Value, n)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Do(ctx, batch, replies); err != nil {
					b.Fatal(err)
				}
				if replies[n-1].Str != "OK" {
					b.Fatalf("last reply %+v", replies[n-1])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/cmd")
		})
	}
}

// BenchmarkConcurrentCalls: 100 goroutines per core call at once through
// one connection to a real server; cmds/write is how many commands each
// write to the socket carried on average (the writer gathers the callers'
// commands: TestConcurrentCallsShareWrites), writes/op its inverse.
func BenchmarkConcurrentCalls(b *testing.B) {
	srv := redistest.Start(b)
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		b.Fatal(err)
	}
	cc := &countingConn{Conn: nc}
	c := New(cc, Options{})
	defer c.Close()
	ctx := context.Background()
	cmd := encode("ECHO", "hello")
	b.SetParallelism(100)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v, err := c.DoOne(ctx, cmd); err != nil || v.Str != "hello" {
				b.Errorf("ECHO = %q, %v", v.Str, err)
				return
			}
		}
	})
	writes := float64(cc.writes.Load())
	b.ReportMetric(float64(b.N)/writes, "cmds/write")
	b.ReportMetric(writes/float64(b.N), "writes/op")
}
