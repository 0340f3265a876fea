//go:build unix

package conn

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
)

// TestPollTakesSequentialReplies: a caller sending one command after
// another gets its replies from the polling read, not from a thread
// wake-up, and gets the right ones.
func TestPollTakesSequentialReplies(t *testing.T) {
	// A generous budget, so that a loaded machine does not turn the
	// count below into a measure of its load: without polling it is 0.
	c, _ := dialReal(t, Options{Poll: 20 * time.Millisecond})
	ctx := context.Background()
	const n = 200
	for i := 1; i <= n; i++ {
		v, err := c.DoOne(ctx, encode("INCR", "seq"))
		if err != nil || v.Int != int64(i) {
			t.Fatalf("INCR %d = %v, %v", i, v.Int, err)
		}
	}
	c.Close()
	if c.poll == nil {
		t.Fatal("no poller on a TCP connection")
	}
	if c.poll.hits < n/2 {
		t.Fatalf("%d of %d replies were taken by polling; want most", c.poll.hits, n)
	}
}

// TestPollBacksOffOnSlowLink: when replies take longer than the budget,
// polling stops paying: after a few empty polls most reads go straight to
// the runtime's poller.
func TestPollBacksOffOnSlowLink(t *testing.T) {
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for {
			if _, err := readCommand(r); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
			if _, err := io.WriteString(w, "+PONG\r\n"); err != nil {
				return
			}
		}
	})
	c := New(nc, Options{Poll: 100 * time.Microsecond})
	ctx := context.Background()
	const n = 100
	for i := range n {
		v, err := c.DoOne(ctx, encode("PING"))
		if err != nil || v.Str != "PONG" {
			t.Fatalf("PING %d = %v, %v", i, v, err)
		}
	}
	c.Close()
	// Empty polls come at calls 1, 3, 7, 15, 31, 63 and then every 65th.
	if c.poll.emptyDue > 10 {
		t.Fatalf("%d of %d waits polled in vain; want a handful", c.poll.emptyDue, n)
	}
	if c.poll.emptyDue == 0 {
		t.Fatal("no poll ended empty, though every reply took 2ms")
	}
}

// TestPollWaitsOutLargeBatches: while the first call in line still waits
// for more replies than the server sends within the budget, the reader
// waits in the runtime's poller instead of polling between the chunks of
// replies; a single command is polled for. The fake server sends a batch's
// 1000 replies in four chunks 5ms apart, far longer than the budget, so a
// poll between them would end empty.
func TestPollWaitsOutLargeBatches(t *testing.T) {
	const n, chunks = 1000, 4
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for range n {
			if _, err := readCommand(r); err != nil {
				return
			}
		}
		for range chunks {
			time.Sleep(5 * time.Millisecond)
			if _, err := io.WriteString(w, strings.Repeat("+PONG\r\n", n/chunks)); err != nil {
				return
			}
		}
	})
	c := New(nc, Options{Poll: 100 * time.Microsecond})
	ctx := context.Background()
	var cmds []byte
	for range n {
		cmds = append(cmds, encode("PING")...)
	}
	replies := make([]resp.Value, n)
	pending, err := c.Start(ctx, cmds, replies)
	if err != nil {
		t.Fatal(err)
	}
	if d := c.due(c.poll.maxSoon); d != dueLater {
		t.Fatalf("with %d replies due the poller is told %d, want dueLater", n, d)
	}
	if err := pending.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for i, v := range replies {
		if v.Str != "PONG" {
			t.Fatalf("reply %d = %+v", i, v)
		}
	}
	if d := c.due(c.poll.maxSoon); d != dueNone {
		t.Fatalf("with no call in line the poller is told %d, want dueNone", d)
	}
	c.Close()
	if c.poll.maxSoon != 200 {
		t.Fatalf("a 100µs budget counts %d replies as soon, want 200", c.poll.maxSoon)
	}
	if c.poll.emptyDue != 0 {
		t.Fatalf("%d polls ended empty between the chunks of a large batch", c.poll.emptyDue)
	}

	// One command is polled for: its server never answers, so it stays due.
	nc1, _ := socketPair(t, "tcp", "127.0.0.1:0")
	c1 := New(nc1, Options{Poll: 100 * time.Microsecond})
	defer c1.Close()
	if _, err := c1.Start(ctx, encode("PING"), replies[:1]); err != nil {
		t.Fatal(err)
	}
	if d := c1.due(c1.poll.maxSoon); d != dueSoon {
		t.Fatalf("with one reply due the poller is told %d, want dueSoon", d)
	}
}

// TestPollLeavesDeadlineToStallGuard: a read deadline armed by the stall
// guard long ago may pass while replies are still flowing through polls.
// The poll then hands over to the blocking read, which re-arms it, rather
// than failing the connection with a timeout that is not a stall.
func TestPollLeavesDeadlineToStallGuard(t *testing.T) {
	nc, sc := socketPair(t, "tcp", "127.0.0.1:0")
	if _, err := sc.Write([]byte("+OK\r\n")); err != nil {
		t.Fatal(err)
	}
	p := newPoller(nc, time.Second, func(int) due { return dueSoon })
	buf := make([]byte, 16)
	n, err, ok := p.read(buf)
	if !ok || err != nil || string(buf[:n]) != "+OK\r\n" {
		t.Fatalf("poll = %q, %v, %v; want +OK", buf[:n], err, ok)
	}
	sc.Write([]byte("+OK\r\n"))
	nc.SetReadDeadline(time.Now().Add(-time.Second))
	if n, err, ok := p.read(buf); ok {
		t.Fatalf("poll past the deadline = %q, %v; want it to hand over to the blocking read", buf[:n], err)
	}
}

// TestPollOnlyPlainSockets: polling reads the socket under the Conn's
// net.Conn, so it is only done where that is the whole protocol: plain
// TCP and Unix sockets, not wrappers (TLS, a custom Dialer's conn).
func TestPollOnlyPlainSockets(t *testing.T) {
	tcp, _ := socketPair(t, "tcp", "127.0.0.1:0")
	unix, _ := socketPair(t, "unix", filepath.Join(t.TempDir(), "s"))
	due := func(int) due { return dueNone }
	for _, tc := range []struct {
		name   string
		nc     net.Conn
		budget time.Duration
		want   bool
	}{
		{"tcp", tcp, time.Millisecond, true},
		{"unix", unix, time.Millisecond, true},
		{"wrapped tcp", struct{ net.Conn }{tcp}, time.Millisecond, false},
		{"tcp with polling off", tcp, 0, false},
	} {
		if got := newPoller(tc.nc, tc.budget, due) != nil; got != tc.want {
			t.Errorf("%s: polling %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestPollReportsEndAndReset: a poll tells a closed stream (io.EOF) from a
// reset one, which it reports as the blocking read would, as a read
// *net.OpError that matches ECONNRESET.
func TestPollReportsEndAndReset(t *testing.T) {
	due := func(int) due { return dueSoon }
	nc, sc := socketPair(t, "tcp", "127.0.0.1:0")
	sc.Close()
	p := newPoller(nc, time.Second, due)
	if _, err, ok := p.read(make([]byte, 16)); !ok || err != io.EOF {
		t.Fatalf("poll of a closed stream = %v, %v; want io.EOF", err, ok)
	}

	nc, sc = socketPair(t, "tcp", "127.0.0.1:0")
	sc.(*net.TCPConn).SetLinger(0) // close with a reset
	sc.Close()
	p = newPoller(nc, time.Second, due)
	_, err, ok := p.read(make([]byte, 16))
	var oe *net.OpError
	if !ok || !errors.As(err, &oe) || oe.Op != "read" || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("poll of a reset stream = %v (%T), %v; want a read *net.OpError matching ECONNRESET", err, err, ok)
	}
}
