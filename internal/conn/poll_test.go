//go:build unix

package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// TestPollTakesSequentialReplies: a caller sending one command after
// another on a polled TCP connection gets the right replies, also when
// the poll offers the CPU to other threads between its reads, as it does
// in a process that may run on one CPU only. How many of them the polling
// read takes is BenchmarkPollSequentialReplies'.
func TestPollTakesSequentialReplies(t *testing.T) {
	for _, share := range []bool{false, true} {
		t.Run(fmt.Sprintf("shareCPU=%v", share), func(t *testing.T) {
			c, _ := dialReal(t, Options{Poll: 20 * time.Millisecond})
			if c.poll == nil {
				t.Fatal("no poller on a TCP connection")
			}
			if c.poll.shareCPU != (runtime.NumCPU() == 1) {
				t.Fatalf("shareCPU %v with %d CPUs", c.poll.shareCPU, runtime.NumCPU())
			}
			c.poll.shareCPU = share
			ctx := context.Background()
			const n = 200
			for i := 1; i <= n; i++ {
				v, err := c.DoOne(ctx, encode("INCR", "seq"))
				if err != nil || v.Int != int64(i) {
					t.Fatalf("INCR %d = %v, %v", i, v.Int, err)
				}
			}
			if c.poll.hits == 0 {
				t.Fatalf("no poll took a reply in %d calls back to back", n)
			}
		})
	}
}

// TestPollBacksOffOnSlowLink: a poll that ends empty while a reply is due
// sends the next reads straight to the runtime's poller, without touching
// the socket, twice as many after each such poll in a row (1, 3, 7, ... up
// to maxSkip), so that a slow link, where replies take longer than the
// budget, does not pay for polling it never profits from; a poll that
// takes a reply ends the back-off. How often polls end empty on such a
// link is BenchmarkPollSlowLink's.
func TestPollBacksOffOnSlowLink(t *testing.T) {
	nc, sc := socketPair(t, "tcp", "127.0.0.1:0")
	p := newPoller(nc, time.Millisecond, func(int) due { return dueSoon })
	buf := make([]byte, 16)
	emptyPoll := func(k int) {
		t.Helper()
		if n, err, ok := p.read(buf); ok {
			t.Fatalf("poll %d with nothing to read = %q, %v; want it to hand over to the blocking read", k, buf[:n], err)
		}
		if want := min(1<<k-1, maxSkip); p.misses != k || p.skip != want {
			t.Fatalf("after %d empty polls in a row: misses %d, skip %d; want %d, %d", k, p.misses, p.skip, k, want)
		}
	}
	skipped := func() {
		t.Helper()
		for p.skip > 0 {
			if n, err, ok := p.read(buf); ok {
				t.Fatalf("a read to be skipped polled: %q, %v", buf[:n], err)
			}
		}
	}

	emptyPoll(1)
	if _, err := sc.Write([]byte("+OK\r\n")); err != nil {
		t.Fatal(err)
	}
	skipped() // leaves the reply waiting
	p.budget = 10 * time.Second
	if n, err, ok := p.read(buf); !ok || err != nil || string(buf[:n]) != "+OK\r\n" {
		t.Fatalf("poll after the skipped read = %q, %v, %v; want the +OK it left waiting", buf[:n], err, ok)
	}
	if p.misses != 0 || p.skip != 0 {
		t.Fatalf("after a poll took a reply: misses %d, skip %d; want the back-off ended", p.misses, p.skip)
	}
	p.budget = time.Millisecond
	for k := 1; k <= 8; k++ {
		emptyPoll(k)
		skipped()
	}
}

// TestPollLingerBacksOffWhenIdle: a linger that no call comes to end (a
// caller pacing its calls, or none at all) makes the next reads with no
// reply due go straight to the runtime's poller, twice as many after each
// such linger in a row (1, 3, 7, ... up to maxSkip), while a read with a
// reply due still polls; a call that comes while the reader lingers ends
// the back-off. What lingering costs a paced caller is bench's S8.
func TestPollLingerBacksOffWhenIdle(t *testing.T) {
	nc, sc := socketPair(t, "tcp", "127.0.0.1:0")
	var (
		asked   int       // calls of due in this read
		callAt  = -1      // the call of due at which a call joins the line
		pending = dueNone // what due says from then on
	)
	p := newPoller(nc, time.Millisecond, func(int) due {
		asked++
		if asked == callAt {
			if _, err := sc.Write([]byte("+OK\r\n")); err != nil {
				t.Error(err)
			}
			pending = dueSoon
		}
		return pending
	})
	buf := make([]byte, 16)
	read := func(call int) (string, bool) {
		t.Helper()
		asked, callAt, pending = 0, call, dueNone
		n, err, ok := p.read(buf)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(buf[:n]), ok
	}
	emptyLinger := func(k int) {
		t.Helper()
		before := p.emptyLinger
		if got, ok := read(-1); ok {
			t.Fatalf("linger %d with nothing to read = %q; want it to hand over to the blocking read", k, got)
		}
		if want := min(1<<k-1, maxSkip); p.emptyLinger != before+1 || p.idleMisses != k || p.idleSkip != want {
			t.Fatalf("after %d empty lingers in a row: %d more, misses %d, skip %d; want 1, %d, %d",
				k, p.emptyLinger-before, p.idleMisses, p.idleSkip, k, want)
		}
	}
	skipped := func() {
		t.Helper()
		for p.idleSkip > 0 {
			before, skip := p.emptyLinger, p.idleSkip
			if got, ok := read(-1); ok || p.emptyLinger != before || p.idleSkip != skip-1 {
				t.Fatalf("an idle read to be skipped: %q, %v, lingered %d, skip %d -> %d",
					got, ok, p.emptyLinger-before, skip, p.idleSkip)
			}
		}
	}

	emptyLinger(1)
	// While idle reads are skipped, one with a reply due still polls.
	p.idleSkip = 3
	if got, ok := read(1); !ok || got != "+OK\r\n" || p.idleSkip != 3 {
		t.Fatalf("read with a call in line while idle reads are skipped = %q, %v, skip %d; want +OK, skip still 3", got, ok, p.idleSkip)
	}
	p.idleSkip = 1
	skipped()
	emptyLinger(2)
	skipped()
	// A call that comes while the reader lingers ends the back-off.
	if got, ok := read(2); !ok || got != "+OK\r\n" || p.idleMisses != 0 || p.idleSkip != 0 {
		t.Fatalf("read with a call coming during the linger = %q, %v, misses %d, skip %d; want +OK and the back-off ended",
			got, ok, p.idleMisses, p.idleSkip)
	}
	for k := 1; k <= 8; k++ {
		emptyLinger(k)
		skipped()
	}
}

// TestPollWaitsOutLargeBatches: while the first call in line still waits
// for more replies than the server sends within the budget, the poller is
// told so (dueLater) and hands the read to the runtime's poller at once,
// counting no empty poll, rather than polling between the chunks of
// replies; once the call's last replies are near it is told to poll
// (dueSoon), and with no call in line that none are due. How many polls
// end empty on such a batch is BenchmarkPollLargeBatch's.
func TestPollWaitsOutLargeBatches(t *testing.T) {
	const n, last = 1000, 100
	sendFirst, sendLast := make(chan struct{}), make(chan struct{})
	releaseFirst := sync.OnceFunc(func() { close(sendFirst) })
	releaseLast := sync.OnceFunc(func() { close(sendLast) })
	defer releaseFirst() // a failed test does not leave the server waiting
	defer releaseLast()
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for range n {
			if _, err := readCommand(r); err != nil {
				return
			}
		}
		<-sendFirst
		if _, err := io.WriteString(w, strings.Repeat("+PONG\r\n", n-last)); err != nil {
			return
		}
		<-sendLast
		io.WriteString(w, strings.Repeat("+PONG\r\n", last))
	})
	c := New(nc, Options{Poll: 100 * time.Microsecond})
	defer c.Close()
	if c.poll.maxSoon != 200 {
		t.Fatalf("a 100µs budget counts %d replies as soon, want 200", c.poll.maxSoon)
	}
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
	releaseFirst()
	waitFor(t, fmt.Sprintf("the first %d replies to be read", n-last), func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		got := c.queue[c.head].got
		return got == n-last, fmt.Sprintf("%d read", got)
	})
	if d := c.due(c.poll.maxSoon); d != dueSoon {
		t.Fatalf("with %d replies due the poller is told %d, want dueSoon", last, d)
	}
	releaseLast()
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

	// Told dueLater, a poll hands over at once, and an empty one is not
	// counted against the link.
	nc2, _ := socketPair(t, "tcp", "127.0.0.1:0")
	p := newPoller(nc2, time.Second, func(int) due { return dueLater })
	if n, err, ok := p.read(make([]byte, 16)); ok {
		t.Fatalf("poll told dueLater = %d bytes, %v; want it to hand over to the blocking read", n, err)
	}
	if p.misses != 0 || p.skip != 0 {
		t.Fatalf("poll told dueLater counted as empty: misses %d, skip %d", p.misses, p.skip)
	}
}

// TestQuietCallsAreNotPolledFor: nobody polls for the replies of a quiet
// call, neither the reader goroutine (a batch handed over by Start) nor a
// caller reading its own replies (DoOne, DoN), while the same calls made without
// Quiet are polled for: the server answers each well within the poll
// budget, so a poll takes its reply (hits), and a quiet call's reply is
// taken by a read that sleeps instead. The server answers after a pause,
// and a batch handed over by Start only once the test has seen what the
// poller is told of it.
func TestQuietCallsAreNotPolledFor(t *testing.T) {
	const calls, pause = 10, 10 * time.Millisecond
	for _, how := range []string{"Start", "DoOne", "DoN"} {
		for _, quiet := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/quiet=%v", how, quiet), func(t *testing.T) {
				release := make(chan struct{}, calls)
				nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
					for {
						if _, err := readCommand(r); err != nil {
							return
						}
						if how == "Start" {
							select {
							case <-release:
							case <-time.After(5 * time.Second):
								return
							}
						}
						time.Sleep(pause) // past the reader's linger after the last reply
						if _, err := io.WriteString(w, "+PONG\r\n"); err != nil {
							return
						}
					}
				})
				c := New(nc, Options{Poll: 5 * pause})
				defer c.Close()
				k := c.WithGrace(0)
				if quiet {
					k = c.Quiet()
				}
				ctx := context.Background()
				for i := range calls {
					var v resp.Value
					switch how {
					case "Start":
						replies := make([]resp.Value, 1)
						pending, err := k.Start(ctx, encode("PING"), replies)
						if err != nil {
							t.Fatal(err)
						}
						want := dueSoon
						if quiet {
							want = dueLater
						}
						if d := c.due(c.poll.maxSoon); d != want {
							t.Fatalf("call %d: with its reply due the poller is told %d, want %d", i, d, want)
						}
						release <- struct{}{}
						if err := pending.Wait(ctx); err != nil {
							t.Fatal(err)
						}
						v = replies[0]
					case "DoOne":
						var err error
						if v, err = k.DoOne(ctx, encode("PING")); err != nil {
							t.Fatal(err)
						}
					case "DoN":
						replies, _, err := k.DoN(ctx, encode("PING"), 1)
						if err != nil || len(replies) != 1 {
							t.Fatal(replies, err)
						}
						v = replies[0]
					}
					if v.Str != "PONG" {
						t.Fatalf("call %d: reply %+v", i, v)
					}
				}
				c.Close()
				switch hits := c.poll.hits; {
				case quiet && hits != 0:
					t.Fatalf("polls took %d replies of %d quiet calls", hits, calls)
				case !quiet && hits == 0:
					t.Fatalf("no poll took a reply of %d calls", calls)
				}
			})
		}
	}
}

// TestPollForLongCallsBackToBack: whether a call is polled for depends on
// the gap since the last call ended, not since it began. A caller whose
// calls each keep the server busy for most of the budget (a batch of a
// hundred commands, say) and who sends the next at once is calling back
// to back, and polls for its replies, though each call starts more than
// the budget after the last one started; a caller who waits longer than
// the budget between calls sleeps on its reply instead.
func TestPollForLongCallsBackToBack(t *testing.T) {
	const (
		// Wide margins on both sides of the budget: on a loaded machine
		// a sleep or a wake-up may overrun by tens of milliseconds.
		budget = 400 * time.Millisecond
		delay  = 100 * time.Millisecond // the server's time per call
		calls  = 5
	)
	for _, tc := range []struct {
		name  string
		pause time.Duration // between a reply and the next call
		poll  bool
	}{
		{"back to back", 0, true},
		{"short pause", budget / 4, true}, // a call every delay+budget/4
		{"paced", budget * 3 / 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
				for {
					if _, err := readCommand(r); err != nil {
						return
					}
					time.Sleep(delay)
					if _, err := io.WriteString(w, "+OK\r\n"); err != nil {
						return
					}
				}
			})
			c := New(nc, Options{Poll: budget})
			defer c.Close()
			ctx := context.Background()
			for i := range calls {
				if i > 0 {
					time.Sleep(tc.pause)
				}
				if v, err := c.DoOne(ctx, encode("SET", "k", "v")); err != nil || v.Str != "OK" {
					t.Fatalf("call %d = %q, %v", i, v.Str, err)
				}
			}
			c.Close()
			// The first call follows none, so it is never polled for; a
			// poll may miss a reply the scheduler delays past the budget.
			switch hits := c.poll.hits; {
			case tc.poll && hits < calls/2:
				t.Fatalf("polls took %d replies of %d calls, each sent within %v of the last reply; want at least %d", hits, calls, tc.pause, calls/2)
			case !tc.poll && hits != 0:
				t.Fatalf("polls took %d replies of %d calls paced %v apart, beyond the %v budget; want none", hits, calls, tc.pause, budget)
			}
		})
	}
}

// BenchmarkPollSequentialReplies: one caller sends one PING after another
// to a real server; polled/op is the share of replies that the polling
// read took, the rest waking the reader from the runtime's poller. It
// depends on the cores free for the reader besides the server and the
// caller, which is why it is measured here rather than asserted by a test.
func BenchmarkPollSequentialReplies(b *testing.B) {
	srv := redistest.Start(b)
	for _, budget := range []time.Duration{100 * time.Microsecond, 20 * time.Millisecond} {
		b.Run(budget.String(), func(b *testing.B) {
			nc, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				b.Fatal(err)
			}
			c := New(nc, Options{Poll: budget})
			ctx := context.Background()
			cmd := encode("PING")
			for b.Loop() {
				if v, err := c.DoOne(ctx, cmd); err != nil || v.Str != "PONG" {
					b.Fatalf("PING = %v, %v", v, err)
				}
			}
			c.Close() // the stats are the reader's until it stops
			b.ReportMetric(float64(c.poll.hits)/float64(b.N), "polled/op")
		})
	}
}

// BenchmarkPollSlowLink: every reply takes 2ms, far longer than the 100µs
// budget; emptypolls/op is how many polls per call ended empty while the
// reply was due. With the back-off (TestPollBacksOffOnSlowLink) they come
// at calls 1, 3, 7, 15, 31, 63 and then every 65th: about 0.015/op over
// a long run, against 1/op without it.
func BenchmarkPollSlowLink(b *testing.B) {
	nc := fakeServer(b, func(r *resp.Reader, w io.Writer) {
		for {
			if _, err := readCommand(r); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond) // the slow link
			if _, err := io.WriteString(w, "+PONG\r\n"); err != nil {
				return
			}
		}
	})
	c := New(nc, Options{Poll: 100 * time.Microsecond})
	ctx := context.Background()
	cmd := encode("PING")
	for b.Loop() {
		if v, err := c.DoOne(ctx, cmd); err != nil || v.Str != "PONG" {
			b.Fatalf("PING = %v, %v", v, err)
		}
	}
	c.Close()
	b.ReportMetric(float64(c.poll.emptyDue)/float64(b.N), "emptypolls/op")
}

// BenchmarkPollLargeBatch: a batch of 1000 PINGs whose replies the fake
// server sends in four chunks 5ms apart, far longer than the 100µs budget;
// emptypolls/op is how many polls per batch ended empty between the
// chunks: 0 when the reader waits the batch out in the runtime's poller,
// as due tells it to (TestPollWaitsOutLargeBatches).
func BenchmarkPollLargeBatch(b *testing.B) {
	const n, chunks = 1000, 4
	nc := fakeServer(b, func(r *resp.Reader, w io.Writer) {
		for {
			for range n {
				if _, err := readCommand(r); err != nil {
					return
				}
			}
			for range chunks {
				time.Sleep(5 * time.Millisecond) // the server's pace
				if _, err := io.WriteString(w, strings.Repeat("+PONG\r\n", n/chunks)); err != nil {
					return
				}
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
	for b.Loop() {
		if err := c.Do(ctx, cmds, replies); err != nil || replies[n-1].Str != "PONG" {
			b.Fatalf("last reply %+v, %v", replies[n-1], err)
		}
	}
	c.Close()
	b.ReportMetric(float64(c.poll.emptyDue)/float64(b.N), "emptypolls/op")
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
// TCP and Unix sockets, not wrappers (TLS, a custom Dialer's conn). With
// a budget of 0 the poller of a plain socket only sleeps on it: it never
// polls, even with bytes waiting.
func TestPollOnlyPlainSockets(t *testing.T) {
	tcp, peer := socketPair(t, "tcp", "127.0.0.1:0")
	unix, _ := socketPair(t, "unix", filepath.Join(t.TempDir(), "s"))
	none := func(int) due { return dueNone }
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
		p := newPoller(tc.nc, tc.budget, none)
		if got := p != nil && p.budget > 0; got != tc.want {
			t.Errorf("%s: polling %v, want %v", tc.name, got, tc.want)
		}
	}
	p := newPoller(tcp, 0, func(int) due { return dueSoon })
	if p == nil {
		t.Fatal("no poller to sleep on a plain socket with polling off")
	}
	if _, err := peer.Write([]byte("+OK\r\n")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	if n, err := p.waitRead(b); err != nil || string(b[:n]) != "+OK\r\n" {
		t.Fatalf("sleeping read = %q, %v", b[:n], err)
	}
	if _, err := peer.Write([]byte("+OK\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reply to arrive", func() (bool, string) {
		n, _ := peekSocket(t, tcp)
		return n > 0, fmt.Sprintf("%d bytes", n)
	})
	if p.mayPoll() {
		t.Fatal("a poller with no budget may poll")
	}
	if n, err, ok := p.read(b); ok || n != 0 || err != nil {
		t.Fatalf("a poller with no budget polled: %d bytes, %v", n, err)
	}
	if p.hits+p.emptyDue+p.emptyLinger != 0 {
		t.Fatalf("a poller with no budget counted polls: %d hits, %d empty, %d lingers", p.hits, p.emptyDue, p.emptyLinger)
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

// TestWriteNowOnClosedSocket: a write that does not wait, on a socket
// closed meanwhile (Close, from another goroutine), reports nothing
// written, however much the last read took. It reported the count of
// that read: more than the batch, which the caller then sliced past its
// end (a panic), or part of it, which it took for written.
func TestWriteNowOnClosedSocket(t *testing.T) {
	nc, sc := socketPair(t, "tcp", "127.0.0.1:0")
	const read = 40 << 10
	if _, err := sc.Write(make([]byte, read)); err != nil {
		t.Fatal(err)
	}
	p := newPoller(nc, time.Second, func(int) due { return dueSoon })
	buf := make([]byte, 64<<10)
	got := 0
	for deadline := time.Now().Add(10 * time.Second); got < read && time.Now().Before(deadline); {
		n, err := p.readNow(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	if got != read {
		t.Fatalf("read %d of %d bytes", got, read)
	}
	nc.Close()
	for _, size := range []int{100, read - 1, read, read + 1} {
		if n := p.writeNow(make([]byte, size)); n != 0 {
			t.Errorf("writeNow of %d bytes on a closed socket = %d; want 0", size, n)
		}
	}
}
