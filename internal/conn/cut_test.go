package conn

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// TestDoNCutCountsBytesWrittenAfterTheFirst: a batch its caller writes
// itself, of which the socket (its send buffer made small) takes only the
// first bytes at once and the rest while the caller is still writing, is
// cut by the network (a Proxy that passes its first 120 KiB to a real
// server, then closes both sides) once the server ran more of it than the
// socket took at once. The count of bytes sent that DoNCut returns covers
// every command the server ran: those written after the first bytes are
// sent too, not "not sent".
func TestDoNCutCountsBytesWrittenAfterTheFirst(t *testing.T) {
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	nc, err := net.Dial("tcp", px.Addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.(*net.TCPConn).SetWriteBuffer(8 << 10)
	c := New(nc, Options{Poll: time.Millisecond, StallTimeout: time.Minute})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.DoOne(ctx, encode("PING")); err != nil {
		t.Fatal(err)
	}

	const n = 230
	val := strings.Repeat("x", 1<<10)
	var batch []byte
	for i := range n {
		batch = append(batch, encode("SET", fmt.Sprintf("k:%03d", i), val)...)
	}
	cmdLen := len(batch) / n
	px.PassBytes(120<<10, redistest.ClientToServer)
	type result struct {
		got, cut int
		err      error
	}
	done := make(chan result, 1)
	go func() {
		replies, _, cut, err := c.DoNCut(ctx, batch, n)
		done <- result{len(replies), cut, err}
	}()
	waitFor(t, "the SETs passed to run", func() (bool, string) {
		keys, _ := srv.MustDo(t, "DBSIZE").(int64)
		return keys > 100, fmt.Sprintf("%d keys", keys)
	})
	px.Cut(redistest.CutFIN)
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("DoNCut did not return after its connection was cut")
	}
	if r.err == nil || r.got == 0 {
		t.Fatalf("DoNCut = %d replies, %v; want some replies and the error of the cut", r.got, r.err)
	}
	waitFor(t, "the server to close the cut connection", func() (bool, string) {
		clients, _ := srv.MustDo(t, "CLIENT", "LIST").(string)
		return strings.Count(clients, "\n") <= 1, clients
	})
	keys, _ := srv.MustDo(t, "DBSIZE").(int64)
	t.Logf("%d replies read, %d SETs ran, %d bytes (%d commands) counted as sent", r.got, keys, r.cut, r.cut/cmdLen)
	if int(keys)*cmdLen > r.cut {
		t.Fatalf("DoNCut counts %d bytes as sent, %d commands, but the server ran %d: those past the count are taken for not sent", r.cut, (r.cut+cmdLen-1)/cmdLen, keys)
	}
}
