//go:build unix

package conn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
)

// ownReadModes are the two ways a caller reads its own reply: polling the
// socket for a while, or asleep on it from the start (SelfRead without
// Poll, as PollWait -1 makes it).
var ownReadModes = []struct {
	name string
	opt  Options
}{
	{"poll", Options{Poll: time.Millisecond}},
	{"sleep", Options{SelfRead: true}},
}

// TestCallerReadsOwnReplyWithoutPolling: with SelfRead and no Poll, a lone
// call's caller reads its reply itself, asleep on the socket, and never
// polls; without SelfRead the reader goroutine reads every reply.
func TestCallerReadsOwnReplyWithoutPolling(t *testing.T) {
	for _, self := range []bool{true, false} {
		t.Run(fmt.Sprintf("SelfRead=%v", self), func(t *testing.T) {
			c, _ := dialReal(t, Options{SelfRead: self})
			ctx := context.Background()
			const calls = 200
			for i := range calls {
				want := fmt.Sprint(i)
				v, err := c.DoOne(ctx, encode("ECHO", want))
				if err != nil || v.Str != want {
					t.Fatalf("ECHO %s = %q, %v", want, v.Str, err)
				}
			}
			if c.Polls() {
				t.Fatal("the connection says it polls")
			}
			want := uint64(0)
			if self {
				want = calls
				if p := c.poll; p.hits+p.emptyDue+p.emptyLinger != 0 {
					t.Fatalf("the connection polled: %d hits, %d empty polls, %d lingers", p.hits, p.emptyDue, p.emptyLinger)
				}
			}
			if c.ownReads != want {
				t.Fatalf("callers read %d of %d replies themselves, want %d", c.ownReads, calls, want)
			}
		})
	}
}

// TestCallerReadsOwnReply: with polling, a lone call's caller reads its
// reply itself, and a call sent with Start, which is waited for later,
// leaves it to the reader goroutine.
func TestCallerReadsOwnReply(t *testing.T) {
	c, _ := dialReal(t, Options{Poll: time.Millisecond})
	ctx := context.Background()
	const calls = 200
	// As after empty polls: the next reads go without polling, and then
	// polling resumes.
	c.poll.skip = 3
	// Polling is the way chosen, and no trial comes in these calls: one
	// that found sleeping quicker on this host would have the rest sleep.
	c.poll.way = wayChooser{interval: wayLast, left: wayLast}
	for i := range calls {
		want := fmt.Sprint(i)
		v, err := c.DoOne(ctx, encode("ECHO", want))
		if err != nil || v.Str != want {
			t.Fatalf("ECHO %s = %q, %v", want, v.Str, err)
		}
	}
	replies, _, err := c.DoN(ctx, append(encode("INCR", "n"), encode("INCR", "n")...), 2)
	if err != nil || replies[0].Int != 1 || replies[1].Int != 2 {
		t.Fatalf("pipeline = %v, %v", replies, err)
	}
	own := c.ownReads
	p, err := c.Start(ctx, encode("INCR", "n"), make([]resp.Value, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if c.ownReads != own {
		t.Fatalf("a Start call was read by its caller (%d own reads, %d before)", c.ownReads, own)
	}
	if own != calls+2 {
		t.Fatalf("callers read %d of %d replies themselves", own, calls+2)
	}
	// Calls back to back poll for their replies; a poll may come up empty
	// on a busy machine, but most find theirs.
	if c.poll.hits < calls/2 {
		t.Fatalf("%d of %d calls back to back found their replies polling", c.poll.hits, calls)
	}
}

// TestOwnReadLeavesWhenContextEnds: a caller reading its own reply, asleep
// on the socket or polling it (the poll budget being far longer), stops
// when its context ends, and the reader goroutine then takes the late
// reply, so the next call gets its own.
func TestOwnReadLeavesWhenContextEnds(t *testing.T) {
	for _, poll := range []bool{false, true} {
		for _, partial := range []bool{false, true} {
			for _, never := range []bool{false, true} {
				if poll && never {
					continue
				}
				t.Run(fmt.Sprintf("poll=%v/partial=%v/neverPoll=%v", poll, partial, never), func(t *testing.T) {
					release := make(chan struct{})
					nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
						if poll {
							readCommand(r)
							io.WriteString(w, "+warm\r\n")
						}
						readCommand(r)
						if partial {
							io.WriteString(w, "$10\r\nhello") // half a reply: nothing to decode yet
						}
						<-release
						if partial {
							io.WriteString(w, "world\r\n")
						} else {
							io.WriteString(w, "+late\r\n")
						}
						readCommand(r)
						io.WriteString(w, "+mine\r\n")
						drain(r)
					})
					// A call that follows another within the budget polls; the
					// first sleeps.
					const budget = 10 * time.Second
					opt := Options{Poll: budget}
					if never {
						opt = Options{SelfRead: true}
					}
					c := New(nc, opt)
					defer c.Close()
					if poll {
						if v, err := c.DoOne(context.Background(), encode("GET", "w")); err != nil || v.Str != "warm" {
							t.Fatalf("first call = %q, %v", v.Str, err)
						}
					}
					ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
					defer cancel()
					start := time.Now()
					if _, err := c.DoOne(ctx, encode("GET", "k")); !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("err = %v, want the context's", err)
					}
					if took := time.Since(start); took >= budget {
						t.Fatalf("the call returned after %v, once the poll budget had run out, not when its context ended", took)
					}
					close(release)
					v, err := c.DoOne(context.Background(), encode("GET", "j"))
					if err != nil || v.Str != "mine" {
						t.Fatalf("next call = %q, %v; want its own reply", v.Str, err)
					}
				})
			}
		}
	}
}

// TestOwnReadStall: a caller asleep on the socket for its own reply ends
// the connection when nothing comes for the stall limit, as the reader
// goroutine would.
func TestOwnReadStall(t *testing.T) {
	for _, mode := range ownReadModes {
		t.Run(mode.name, func(t *testing.T) {
			nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
				readCommand(r)
				io.WriteString(w, "$10\r\nhello") // then nothing
				drain(r)
			})
			opt := mode.opt
			opt.StallTimeout = 50 * time.Millisecond
			c := New(nc, opt)
			defer c.Close()
			_, err := c.DoOne(context.Background(), encode("GET", "k"))
			var ce *Error
			if !errors.As(err, &ce) || ce.Op != "read" || ce.Unsent || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v, want a read *Error for the stall", err)
			}
			if c.Alive() {
				t.Fatal("connection alive after a stall")
			}
		})
	}
}

// TestOwnReadStallCountsFromLastByte: a reply that comes in parts, each
// within the stall limit of the last but the whole over a longer time,
// does not end the connection of a caller asleep on it. The pauses are a
// small share of the limit, so that a loaded machine, which may hold the
// fake server back a while, does not stretch one past it; their sum is
// over the limit however late the parts come.
func TestOwnReadStallCountsFromLastByte(t *testing.T) {
	const stall = time.Second
	parts := []string{"$10\r\nab", "cd", "ef", "gh", "ij\r\n"}
	const pause = 300 * time.Millisecond // four of them: more than the limit in all
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		readCommand(r)
		for i, part := range parts {
			if i > 0 {
				time.Sleep(pause)
			}
			io.WriteString(w, part)
		}
		drain(r)
	})
	c := New(nc, Options{SelfRead: true, StallTimeout: stall})
	defer c.Close()
	v, err := c.DoOne(context.Background(), encode("GET", "k"))
	if err != nil || v.Str != "abcdefghij" {
		t.Fatalf("reply = %q, %v", v.Str, err)
	}
	if c.ownReads != 1 {
		t.Fatalf("callers read %d replies themselves, want 1", c.ownReads)
	}
}

// TestOwnReadWholeReplyInParts: a reply that arrives in parts, the rest
// after the caller's poll budget, is read whole, by the caller or the
// reader goroutine.
func TestOwnReadWholeReplyInParts(t *testing.T) {
	for _, mode := range ownReadModes {
		t.Run(mode.name, func(t *testing.T) {
			nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
				readCommand(r)
				io.WriteString(w, "*2\r\n$5\r\nhel")
				time.Sleep(20 * time.Millisecond)
				io.WriteString(w, "lo\r\n:7\r\n")
				drain(r)
			})
			c := New(nc, mode.opt)
			defer c.Close()
			v, err := c.DoOne(context.Background(), encode("X"))
			if err != nil || len(v.Elems) != 2 || v.Elems[0].Str != "hello" || v.Elems[1].Int != 7 {
				t.Fatalf("reply = %v, %v", v, err)
			}
		})
	}
}

// TestIdleSocketCheckedBeforeCall: while no call is in line nobody reads
// the socket, so the next call looks at what came meanwhile before it is
// written. A connection the server closed fails it as not sent, bytes no
// command asked for fail it with a protocol error instead of passing for
// its reply, and a push message is left for the reader.
func TestIdleSocketCheckedBeforeCall(t *testing.T) {
	cases := []struct {
		name, after string // what the server sends after its first reply
		hangUp      bool
		check       func(t *testing.T, v resp.Value, err error)
	}{
		{name: "closed", hangUp: true, check: func(t *testing.T, v resp.Value, err error) {
			var ce *Error
			if !errors.As(err, &ce) || !ce.Unsent || !errors.Is(err, io.EOF) {
				t.Fatalf("call after the server hung up = %v, %v; want an unsent *Error for io.EOF", v, err)
			}
		}},
		{name: "stray", after: "+stray\r\n", check: func(t *testing.T, v resp.Value, err error) {
			var ce *Error
			var pe *resp.ProtocolError
			if !errors.As(err, &ce) || !ce.Unsent || !errors.As(err, &pe) {
				t.Fatalf("call after a stray reply = %q, %v; want an unsent protocol error", v.Str, err)
			}
		}},
		{name: "push", after: ">2\r\n+invalidate\r\n*0\r\n", check: func(t *testing.T, v resp.Value, err error) {
			if err != nil || v.Str != "second" {
				t.Fatalf("call after a push = %q, %v; want its own reply", v.Str, err)
			}
		}},
	}
	for _, mode := range []string{"poll", "sleep"} {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				answered, sent := make(chan struct{}), make(chan struct{})
				nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
					readCommand(r)
					io.WriteString(w, "+first\r\n")
					<-answered
					io.WriteString(w, tc.after)
					if tc.hangUp {
						w.(io.Closer).Close()
					}
					close(sent)
					if _, err := readCommand(r); err == nil {
						io.WriteString(w, "+second\r\n")
					}
					drain(r)
				})
				const budget = 100 * time.Microsecond
				opt := Options{Poll: budget}
				if mode == "sleep" {
					opt = Options{SelfRead: true} // the gap is backToBack, as long
				}
				c := New(nc, opt)
				defer c.Close()
				ctx := context.Background()
				if v, err := c.DoOne(ctx, encode("GET", "a")); err != nil || v.Str != "first" {
					t.Fatalf("first call = %q, %v", v.Str, err)
				}
				close(answered)
				signalled(t, sent, "the server's bytes after the first reply")
				waitFor(t, "the bytes to arrive", func() (bool, string) {
					n, end := peekSocket(t, nc)
					return n > 0 || end, fmt.Sprintf("%d bytes", n)
				})
				// A call within the poll budget of the last skips the check.
				time.Sleep(10 * budget)
				v, err := c.DoOne(ctx, encode("GET", "b"))
				tc.check(t, v, err)
			})
		}
	}
}

// peekSocket reports how many bytes nc has for reading, up to 64, without
// taking them, and whether the peer has hung up with none left.
func peekSocket(t *testing.T, nc net.Conn) (n int, end bool) {
	raw, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var b [64]byte
	var rerr error
	raw.Control(func(fd uintptr) {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	if rerr != nil {
		return 0, false
	}
	return n, n == 0
}

// TestCallerReadsOwnLargeBatch: a lone caller's batch large enough to be
// written from its own buffer (DirectWrite) is read by the caller too when
// the socket takes it whole at once, and so are the batches after it.
func TestCallerReadsOwnLargeBatch(t *testing.T) {
	for _, mode := range ownReadModes {
		t.Run(mode.name, func(t *testing.T) { callerReadsOwnLargeBatch(t, mode.opt) })
	}
}

func callerReadsOwnLargeBatch(t *testing.T, opt Options) {
	c, _ := dialReal(t, opt)
	ctx := context.Background()
	const n, batches = 2000, 5
	var batch []byte
	for i := range n {
		batch = append(batch, encode("ECHO", fmt.Sprint(i))...)
	}
	if len(batch) < inlineMax {
		t.Fatalf("a batch of %d bytes is written inline, not directly", len(batch))
	}
	for range batches {
		replies, _, err := c.DoN(ctx, batch, n)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range replies {
			if v.Str != fmt.Sprint(i) {
				t.Fatalf("reply %d = %q", i, v.Str)
			}
		}
	}
	if c.ownReads != n*batches {
		t.Fatalf("callers read %d of %d replies themselves", c.ownReads, n*batches)
	}
}

// TestLargeBatchReadWhileItIsWritten: a server that answers each command
// before it reads the next (a fake: a real one buffers its replies) and a
// batch larger than the sockets hold. The caller cannot write it all at
// once, and the replies that pile up meanwhile must be read, or the server
// stops reading and the write waits for ever: the caller gives the read
// role to the reader goroutine before it waits to write the rest.
func TestLargeBatchReadWhileItIsWritten(t *testing.T) {
	const n = 16 << 10
	reply := strings.Repeat("r", 8<<10)
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		bw := bufio.NewWriterSize(w, 64<<10)
		for {
			if _, err := readCommand(r); err != nil {
				return
			}
			fmt.Fprintf(bw, "$%d\r\n%s\r\n", len(reply), reply)
			// Send what is answered once no command waits, and whenever
			// 32 KiB are: a write that the client does not read blocks.
			if r.Buffered() == 0 || bw.Buffered() >= 32<<10 {
				if bw.Flush() != nil {
					return
				}
			}
		}
	})
	// One part, so that it goes the way of the batches that fit the
	// sockets (MaxPending).
	c := New(nc, Options{Poll: time.Millisecond, MaxPending: 64 << 20})
	defer c.Close()
	arg := strings.Repeat("a", 1<<10)
	var batch []byte
	for range n {
		batch = append(batch, encode("GET", arg)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != reply {
		t.Fatalf("first call = %.10q, %v", v.Str, err)
	}
	replies, _, err := c.DoN(ctx, batch, n)
	if err != nil {
		t.Fatalf("a batch of %d bytes whose replies pile up while it is written: %v", len(batch), err)
	}
	for i, v := range replies {
		if v.Str != reply {
			t.Fatalf("reply %d = %.10q", i, v.Str)
		}
	}
}

// TestLargeBatchPollsForItsLastReplies: a batch sent back to back that
// waits for more replies than come within the poll budget sleeps for them
// at first, and polls once only its last few are due, as the reader
// goroutine would: the server here holds its last replies back a while.
func TestLargeBatchPollsForItsLastReplies(t *testing.T) {
	const n, last = 100, 5
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		readCommand(r)
		io.WriteString(w, "+first\r\n")
		for i := range n {
			if _, err := readCommand(r); err != nil {
				return
			}
			if i == n-last {
				time.Sleep(20 * time.Millisecond)
			}
			io.WriteString(w, ":1\r\n")
		}
		drain(r)
	})
	c := New(nc, Options{Poll: time.Second, DirectWrite: 64})
	defer c.Close()
	c.poll.maxSoon = last // replies that come within the budget
	ctx := context.Background()
	if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "first" {
		t.Fatalf("first call = %q, %v", v.Str, err)
	}
	hits := c.poll.hits
	var batch []byte
	for range n {
		batch = append(batch, encode("INCR", "k")...)
	}
	if _, _, err := c.DoN(ctx, batch, n); err != nil {
		t.Fatal(err)
	}
	if c.ownReads != n+1 {
		t.Fatalf("callers read %d of %d replies themselves", c.ownReads, n+1)
	}
	if c.poll.hits == hits {
		t.Fatal("the last replies of a batch sent back to back were not polled for")
	}
}
