package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

func TestAbandonedCallKeepsOrder(t *testing.T) {
	c, _ := dialReal(t, Options{})
	ctx := context.Background()
	// Started first, the sleep is in line ahead of the ECHO, which
	// therefore cannot be answered before its deadline.
	sleep, err := c.Start(ctx, encode("DEBUG", "SLEEP", "0.1"), make([]resp.Value, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer sleep.Wait(ctx)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := c.DoOne(cctx, encode("ECHO", "abandoned")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if c.Idle() {
		t.Fatal("connection idle while a reply is still due")
	}
	v, err := c.DoOne(ctx, encode("ECHO", "mine"))
	if err != nil || v.Str != "mine" {
		t.Fatalf("next call got %q, %v", v.Str, err)
	}
	if !c.Idle() {
		t.Fatal("connection not idle once every reply arrived")
	}
}

func TestProtocolErrorIsSticky(t *testing.T) {
	read := make(chan struct{}, 2) // the server read a command
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for range 2 {
			if _, err := readCommand(r); err != nil {
				return
			}
			read <- struct{}{}
		}
		io.WriteString(w, "+OK\r\n?garbage\r\n")
		drain(r)
	})
	c := New(nc, Options{})
	defer c.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.DoOne(ctx, encode("PING"))
		}()
		signalled(t, read, fmt.Sprintf("the server to read command %d", i+1))
	}
	wg.Wait()
	if errs[0] != nil {
		t.Fatalf("first call: %v, want it answered", errs[0])
	}
	var pe *resp.ProtocolError
	if !errors.As(errs[1], &pe) {
		t.Fatalf("second call: %v, want a protocol error", errs[1])
	}
	if !strings.Contains(errs[1].Error(), "byte 5") {
		t.Fatalf("protocol error does not name the offset: %v", errs[1])
	}
	// Sticky: the next call fails at once, marked as never sent.
	_, err := c.DoOne(ctx, encode("PING"))
	var ce *Error
	if !errors.As(err, &ce) || !ce.Unsent || c.Alive() {
		t.Fatalf("call after the failure: %v (alive %v), want an unsent *Error", err, c.Alive())
	}
}

func TestUnsolicitedReplyKillsConnection(t *testing.T) {
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		io.WriteString(w, "+SURPRISE\r\n")
		drain(r)
	})
	c := New(nc, Options{})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.Alive() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	err := c.Err()
	if err == nil || !strings.Contains(err.Error(), "no command was waiting") {
		t.Fatalf("err = %v, want a protocol error about a reply nobody asked for", err)
	}
}

// TestPushBetweenRepliesOfAbandonedCall: a push message arriving while the
// call at the head of the line has been abandoned is not taken for that
// call's reply, which would hand every later reply to the wrong call.
func TestPushBetweenRepliesOfAbandonedCall(t *testing.T) {
	read := make(chan struct{}, 3) // the server read a command
	ready := make(chan struct{})
	release := sync.OnceFunc(func() { close(ready) })
	defer release() // a failed test does not leave the server waiting
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for range 3 {
			if _, err := readCommand(r); err != nil {
				return
			}
			read <- struct{}{}
		}
		<-ready // the second call has been abandoned
		io.WriteString(w, "+A\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+B\r\n+C\r\n")
		drain(r)
	})
	c := New(nc, Options{})
	defer c.Close()
	ctx := context.Background()
	first, third := make(chan string, 1), make(chan string, 1)
	go func() { v, _ := c.DoOne(ctx, encode("ECHO", "A")); first <- v.Str }()
	signalled(t, read, "the server to read the first command")
	short, cancel := context.WithCancel(ctx)
	defer cancel()
	second := make(chan error, 1)
	go func() { _, err := c.DoOne(short, encode("ECHO", "B")); second <- err }()
	// In line after the first, before the third, and sent: when its
	// context ends it can only be abandoned.
	signalled(t, read, "the server to read the second command")
	go func() { v, _ := c.DoOne(ctx, encode("ECHO", "C")); third <- v.Str }()
	signalled(t, read, "the server to read the third command")
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("second call: %v", err)
	}
	release()
	if a, c3 := <-first, <-third; a != "A" || c3 != "C" {
		t.Fatalf("first got %q, third got %q; want A and C", a, c3)
	}
}

// TestDoNCountsErrors: DoN counts the error replies of a batch, simple and
// RESP3 bulk errors alike (a fake server: a real one is not made to send
// a bulk error at will).
func TestDoNCountsErrors(t *testing.T) {
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for range 4 {
			if _, err := readCommand(r); err != nil {
				return
			}
		}
		io.WriteString(w, "-ERR one\r\n+OK\r\n!7\r\nERR two\r\n*1\r\n-ERR nested\r\n")
		readCommand(r) // until the client is done
	})
	c := New(nc, Options{})
	defer c.Close()
	var batch []byte
	for range 4 {
		batch = append(batch, encode("PING")...)
	}
	replies, errs, err := c.DoN(context.Background(), batch, 4)
	if err != nil || len(replies) != 4 {
		t.Fatalf("DoN = %d replies, %v", len(replies), err)
	}
	// The error inside the array is its element's, not a reply's.
	if errs != 2 {
		t.Fatalf("DoN counted %d errors, want 2: %+v", errs, replies)
	}
}

// TestPushHandledBetweenItsNeighbours: replies and a push message that
// arrive in one read are handed out in stream order: the push after the
// reply before it has reached its call and before the reply after it has.
// A client-side cache depends on this, since an invalidation must not pass
// the read it precedes.
func TestPushHandledBetweenItsNeighbours(t *testing.T) {
	ready := make(chan struct{})
	release := sync.OnceFunc(func() { close(ready) })
	defer release()
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for range 2 {
			if _, err := readCommand(r); err != nil {
				return
			}
		}
		<-ready
		io.WriteString(w, "+A\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+B\r\n")
		drain(r)
	})
	var first, second Pending
	seen := make(chan [2]bool, 1)
	c := New(nc, Options{OnPush: func(resp.Value) {
		seen <- [2]bool{first.Ready(), second.Ready()}
	}})
	defer c.Close()
	ctx := context.Background()
	a, b := make([]resp.Value, 1), make([]resp.Value, 1)
	var err error
	if first, err = c.Start(ctx, encode("ECHO", "A"), a); err != nil {
		t.Fatal(err)
	}
	if second, err = c.Start(ctx, encode("ECHO", "B"), b); err != nil {
		t.Fatal(err)
	}
	release()
	if err := first.Wait(ctx); err != nil || a[0].Str != "A" {
		t.Fatalf("first = %q, %v", a[0].Str, err)
	}
	if err := second.Wait(ctx); err != nil || b[0].Str != "B" {
		t.Fatalf("second = %q, %v", b[0].Str, err)
	}
	if got := <-seen; got != [2]bool{true, false} {
		t.Fatalf("when the push was handled the calls before and after it were ready: %v, want [true false]", got)
	}
}

// TestUnaskedValueAmongReplies: a value that arrives, in one read with the
// reply before it, while no call is in line ends the connection with a
// protocol error whose offset points at that value, not past what came
// with it.
func TestUnaskedValueAmongReplies(t *testing.T) {
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		if _, err := readCommand(r); err != nil {
			return
		}
		io.WriteString(w, "+A\r\n:7\r\n:8\r\n")
		drain(r)
	})
	c := New(nc, Options{})
	defer c.Close()
	if v, err := c.DoOne(context.Background(), encode("PING")); err != nil || v.Str != "A" {
		t.Fatalf("PING = %q, %v", v.Str, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Alive() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	var pe *resp.ProtocolError
	if err := c.Err(); !errors.As(err, &pe) || !strings.Contains(err.Error(), "no command was waiting") {
		t.Fatalf("err = %v, want a protocol error about a value nobody asked for", err)
	}
	if pe.Offset != 4 && pe.Offset != 8 {
		t.Fatalf("the error is at byte %d; the unasked value is bytes 4 to 8", pe.Offset)
	}
}

// TestMalformedValueAfterReplyKeepsRole: when the value after a reply is
// malformed and the line then holds no call, the connection fails before
// the read role is given up: a role given up first would let the next
// caller write to, and read from, a stream known to be corrupt. The test
// holds the role itself and hands the reply out as its holder does.
func TestMalformedValueAfterReplyKeepsRole(t *testing.T) {
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) { drain(r) })
	c := New(nc, Options{Poll: time.Second})
	defer c.Close()
	if !c.selfRead {
		t.Fatal("callers do not read their own replies on a polled TCP connection")
	}
	// A call in line whose bytes count as written, answered by "+A"
	// followed by a malformed integer.
	cl := getCall()
	cl.replies, cl.n = cl.one[:], 1
	c.mu.Lock()
	c.reading = true
	cl.start, cl.size = c.offset, 14
	c.queue = append(c.queue, cl)
	c.offset += 14
	c.taken, c.written = c.offset, c.offset
	c.mu.Unlock()
	c.rd.Commit(copy(c.rd.Spare(), "+A\r\n:abc\r\n"))
	v, err := c.rd.ReadValue()
	if err != nil {
		t.Fatal(err)
	}
	ok, idle := c.takeBuffered(v, false)
	if ok || idle {
		t.Fatalf("takeBuffered = %v, %v; want the connection failed", ok, idle)
	}
	if cl.state.Load() != finished || cl.one[0].Str != "A" {
		t.Fatalf("the call before the malformed value got %q (state %d)", cl.one[0].Str, cl.state.Load())
	}
	c.mu.Lock()
	reading := c.reading
	c.mu.Unlock()
	if !reading {
		t.Fatal("the read role was given up on a stream known to be corrupt")
	}
	var pe *resp.ProtocolError
	if err := c.Err(); !errors.As(err, &pe) {
		t.Fatalf("connection error %v, want the decoder's protocol error", err)
	}
	// The caller is told as wait would tell it.
	<-cl.done
	putCall(cl)
}

// exitingDeadlineConn is a net.Conn of the user's whose SetReadDeadline
// ends its goroutine (runtime.Goexit, as t.FailNow calls) for the
// deadlines exitOn picks, once exit is set.
type exitingDeadlineConn struct {
	net.Conn
	exit   *atomic.Bool
	exitOn func(time.Time) bool
}

func (d exitingDeadlineConn) SetReadDeadline(t time.Time) error {
	if d.exit.Load() && d.exitOn(t) {
		runtime.Goexit()
	}
	return d.Conn.SetReadDeadline(t)
}

// TestReadDeadlineEndingSendInParts: a send written in parts whose
// caller's goroutine ends in the user's SetReadDeadline as it joins the
// line never gives back the turn of sends in parts. A later send in parts
// on the failed connection waited for that turn until its context ended
// (for ever without a deadline); it now fails at once, as not sent.
func TestReadDeadlineEndingSendInParts(t *testing.T) {
	srv := redistest.Start(t)
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var exit atomic.Bool
	c := New(exitingDeadlineConn{nc, &exit, func(t time.Time) bool { return !t.IsZero() }},
		Options{StallTimeout: 10 * time.Second, MaxPending: 1 << 10})
	defer c.Close()
	var batch []byte
	for i := range 200 {
		batch = append(batch, encode("ECHO", fmt.Sprint(i))...)
	}
	exit.Store(true)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		c.DoN(context.Background(), batch, 200) // ends this goroutine
	}()
	signalled(t, ended, "the send in parts to end its goroutine")
	exit.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err = c.DoN(ctx, batch, 200)
	var ce *Error
	if !errors.As(err, &ce) || !ce.Unsent || ctx.Err() != nil {
		t.Fatalf("a later send in parts = %v after %v; want the connection's error, not sent, before its context ends",
			err, time.Since(start).Round(time.Millisecond))
	}
}

// TestReadDeadlineEndingGoroutine: a net.Conn of the user's whose
// SetReadDeadline ends its goroutine, on a connection with a stall limit,
// which arms it on the caller's goroutine when a call joins an empty line
// and clears it on the reader's before a read with no call in line. The
// connection fails, and Close returns. The goroutine ended holding the
// connection's lock, so every later call, and Close, waited for ever.
func TestReadDeadlineEndingGoroutine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exitOn func(time.Time) bool
	}{
		{"caller", func(t time.Time) bool { return !t.IsZero() }},
		{"reader", time.Time.IsZero},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			nc, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				t.Fatal(err)
			}
			var exit atomic.Bool
			c := New(exitingDeadlineConn{nc, &exit, tc.exitOn}, Options{StallTimeout: 10 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "PONG" {
				t.Fatalf("PING = %q, %v", v.Str, err)
			}
			exit.Store(true)
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				c.DoOne(ctx, encode("PING")) // may end this goroutine
			}()
			signalled(t, ended, "the call to return or end its goroutine")
			// The reader's goroutine ends after it handed the reply out.
			waitFor(t, "the connection to fail", func() (bool, string) { return !c.Alive(), "alive" })
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				c.Close()
			}()
			signalled(t, closed, "Close to return")
			if err := c.Err(); err == nil || !strings.Contains(err.Error(), "SetReadDeadline ended its goroutine") {
				t.Fatalf("connection error = %v; want one that says SetReadDeadline ended its goroutine", err)
			}
		})
	}
}

// TestAttributedPushIsNotUnasked: a push message with attributes before
// it, which RESP3 allows before any value, is a push all the same: one
// arriving just behind the last reply due, or while no call is in line,
// is handed to OnPush (or dropped) like any other, not taken for a reply
// nobody asked for, which would fail a healthy connection. Both when the
// reader goroutine reads and when callers read their own replies.
func TestAttributedPushIsNotUnasked(t *testing.T) {
	const push = "|1\r\n+ttl\r\n:3600\r\n|1\r\n+k\r\n*0\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
	for _, selfRead := range []bool{false, true} {
		nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
			if _, err := readCommand(r); err != nil {
				return
			}
			io.WriteString(w, "+A\r\n"+push) // in one write, behind the reply
			if _, err := readCommand(r); err != nil {
				return
			}
			io.WriteString(w, "+B\r\n")
			time.Sleep(20 * time.Millisecond)
			io.WriteString(w, push) // while no call is in line
			if _, err := readCommand(r); err != nil {
				return
			}
			io.WriteString(w, "+C\r\n")
			drain(r)
		})
		var pushes atomic.Int32
		var attrs atomic.Int32
		opt := Options{OnPush: func(v resp.Value) {
			pushes.Add(1)
			attrs.Add(int32(len(v.Attrs())))
		}}
		if selfRead {
			opt = Options{Poll: time.Millisecond}
		}
		c := New(nc, opt)
		defer c.Close()
		if c.selfRead != selfRead {
			t.Fatalf("selfRead = %v, want %v", c.selfRead, selfRead)
		}
		for _, want := range []string{"A", "B", "C"} {
			if want == "C" {
				time.Sleep(60 * time.Millisecond) // the push has come meanwhile
			}
			v, err := c.DoOne(context.Background(), encode("ECHO", want))
			if err != nil || v.Str != want {
				t.Fatalf("selfRead %v: ECHO %s = %q, %v", selfRead, want, v.Str, err)
			}
		}
		if !selfRead && (pushes.Load() != 2 || attrs.Load() != 8) {
			t.Errorf("OnPush got %d pushes with %d attribute keys and values; want 2 with 8", pushes.Load(), attrs.Load())
		}
	}
}

// TestHugeStallTimeoutWithGrace: a StallTimeout near the largest Duration
// (a caller's way of saying "never") plus the Grace of a blocking command
// wrapped to a negative limit, which armed a read deadline in the past: a
// BLPOP with a 50ms timeout failed at once as stalled, and took its
// connection with it.
func TestHugeStallTimeoutWithGrace(t *testing.T) {
	for _, stall := range []time.Duration{math.MaxInt64, math.MaxInt64 - time.Second} {
		c, _ := dialReal(t, Options{StallTimeout: stall})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := c.WithGrace(Grace(50*time.Millisecond)).DoOne(ctx, encode("BLPOP", "empty-list", "0.05"))
		cancel()
		if err != nil || v.Kind != resp.Null {
			t.Fatalf("StallTimeout %v: BLPOP of an empty list = %v, %v; want a nil reply after its timeout", stall, v, err)
		}
		if !c.Alive() {
			t.Fatalf("StallTimeout %v: the connection failed after a BLPOP that timed out", stall)
		}
	}
}
