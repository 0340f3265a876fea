package conn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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

func TestLargeSendInParts(t *testing.T) {
	// A tiny MaxPending forces the batch through the writer in many parts;
	// without DirectWrite the caller would write it all at once.
	c, _ := dialReal(t, Options{MaxPending: 1 << 10, DirectWrite: -1})
	ctx := context.Background()
	const n = 20000
	var batch []byte
	for i := range n {
		batch = append(batch, encode("ECHO", fmt.Sprint(i))...)
	}
	replies := make([]resp.Value, n)
	if err := c.Do(ctx, batch, replies); err != nil {
		t.Fatal(err)
	}
	for i, v := range replies {
		if v.Str != fmt.Sprint(i) {
			t.Fatalf("reply %d = %q", i, v.Str)
		}
	}
	if !c.Idle() {
		t.Fatal("connection not idle after the batch")
	}
}

// Small sends skip the send semaphore, so this checks that none of them
// lands between two parts of a large send, which would cut a command in
// the stream: every reply, the batch's and the single ECHOs', must be its
// own.
func TestSmallSendsStayOutOfLargeSendParts(t *testing.T) {
	// The stall timeout bounds a run in which a cut command left the
	// server owing fewer replies than there are calls.
	c, _ := dialReal(t, Options{MaxPending: 1 << 10, DirectWrite: -1, StallTimeout: 10 * time.Second})
	ctx := context.Background()
	const n, rounds = 2000, 20
	var batch []byte
	for i := range n {
		batch = append(batch, encode("ECHO", fmt.Sprint("batch-", i))...)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var singles atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1_000_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				want := fmt.Sprintf("one-%d-%d", g, i)
				v, err := c.DoOne(ctx, encode("ECHO", want))
				if err != nil || v.Str != want {
					t.Errorf("ECHO %s = %q, %v", want, v.Str, err)
					return
				}
				singles.Add(1)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	replies := make([]resp.Value, n)
	for r := range rounds {
		if err := c.Do(ctx, batch, replies); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		for i, v := range replies {
			if want := fmt.Sprint("batch-", i); v.Str != want {
				t.Fatalf("round %d: reply %d = %q, want %q", r, i, v.Str, want)
			}
		}
	}
	if singles.Load() == 0 {
		t.Fatal("no single command ran beside the large sends")
	}
}

// TestConcurrentCallsShareWrites: calls made while the writer is busy
// writing wait for it, then go out together in its next write: the large
// SET in one write, the 20 ECHOs and the PING queued behind it in one
// more. (How many commands a write carries when many goroutines call at
// once is BenchmarkConcurrentCalls'.) The fake server reads nothing until
// released, so the large write blocks (a real one cannot be held).
func TestConcurrentCallsShareWrites(t *testing.T) {
	nc, release, seen := dialHeld(t)
	// Not a plain socket: every send goes through the writer goroutine.
	// The large SET is one part.
	cc := &countingConn{Conn: nc}
	c := New(cc, Options{MaxPending: 64 << 20})
	defer c.Close()
	ctx := context.Background()
	big := make(chan error, 1)
	go func() { _, err := c.DoOne(ctx, bigSet()); big <- err }()
	untilWriting(t, c)

	const callers = 20
	var pend []Pending
	for i := range callers + 1 {
		cmd := encode("ECHO", fmt.Sprint(i))
		if i == callers {
			cmd = encode("PING") // the fake server answers once it reads PING
		}
		p, err := c.Start(ctx, cmd, make([]resp.Value, 1))
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, p)
	}
	close(release)
	if err := <-big; err != nil {
		t.Fatalf("the large SET: %v", err)
	}
	for i, p := range pend {
		if err := p.Wait(ctx); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if names := <-seen; len(names) != callers+2 {
		t.Fatalf("the server read %d commands, want %d", len(names), callers+2)
	}
	if w := cc.writes.Load(); w != 2 {
		t.Fatalf("%d writes; want 2: the large SET, then the %d calls queued behind it together", w, callers+1)
	}
}

// TestLargeSendWrittenDirect: a large send with nothing ahead of it is
// written from the caller's buffer, never copied for the writer, and
// callers that come meanwhile keep their order.
func TestLargeSendWrittenDirect(t *testing.T) {
	c, _ := dialReal(t, Options{})
	ctx := context.Background()
	const n = 40000
	val := strings.Repeat("v", 100)
	var batch []byte
	for i := range n {
		batch = append(batch, encode("ECHO", val+fmt.Sprint(i))...)
	}
	if len(batch) < 4*(1<<20) {
		t.Fatalf("batch of %d bytes is not larger than MaxPending several times", len(batch))
	}
	replies := make([]resp.Value, n)
	if err := c.Do(ctx, batch, replies); err != nil {
		t.Fatal(err)
	}
	for i, v := range replies {
		if v.Str != val+fmt.Sprint(i) {
			t.Fatalf("reply %d = %q", i, v.Str)
		}
	}
	c.mu.Lock()
	held := max(cap(c.wbuf), cap(c.spare))
	c.mu.Unlock()
	if held >= 1<<20 {
		t.Fatalf("the writer's buffers grew to %d bytes: the batch was copied", held)
	}

	// Small callers alongside large sends: every reply to its caller.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if g == 0 && i%20 == 0 {
					got := make([]resp.Value, n)
					if err := c.Do(ctx, batch, got); err != nil || got[n-1].Str != val+fmt.Sprint(n-1) {
						t.Errorf("large send: last reply %q, %v", got[n-1].Str, err)
						return
					}
					continue
				}
				want := fmt.Sprintf("%d/%d", g, i)
				if v, err := c.DoOne(ctx, encode("ECHO", want)); err != nil || v.Str != want {
					t.Errorf("ECHO %s = %q, %v", want, v.Str, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if !c.Idle() {
		t.Fatal("connection not idle after the sends")
	}
}

// TestDirectWriteCutByContext: a server that reads nothing (a fake: a real
// one always reads) stalls a large write; the caller's context ends it, and
// the connection, cut inside a command with more than MaxPending left,
// dies.
func TestDirectWriteCutByContext(t *testing.T) {
	stop := make(chan struct{})
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) { <-stop })
	t.Cleanup(func() { close(stop) })
	c := New(nc, Options{})
	defer c.Close()
	batch := make([]byte, 64<<20) // more than loopback's socket buffers hold
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Do(ctx, batch, make([]resp.Value, 1)) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a stalled write succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write was not cut by its context")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Alive() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "send cut short") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("connection error = %v; want the send cut short by the deadline", err)
	}
}

// TestDirectWriteStoppedByContextKeepsConnection: when the caller's context
// stops a direct write with no more than MaxPending left, the rest goes to
// the writer, so the stream stays whole and the connection usable; a
// caller that came meanwhile is queued behind it, and one that left
// meanwhile is not written at all. The fake server reads nothing until
// released (a real one cannot be held).
func TestDirectWriteStoppedByContextKeepsConnection(t *testing.T) {
	nc, release, seen := dialHeld(t)
	stoppedWriteKeepsConnection(t, nc, release, seen)
}

// TestStoppedWriteKeepsTLSConnection: the same over TLS, where a write
// stopped by a deadline would corrupt the connection's state, so sends
// are copied for the writer rather than written directly.
func TestStoppedWriteKeepsTLSConnection(t *testing.T) {
	cert := selfSignedCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	release, seen := heldServer(t, ln)
	nc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	stoppedWriteKeepsConnection(t, nc, release, seen)
}

func stoppedWriteKeepsConnection(t *testing.T, nc net.Conn, release chan struct{}, seen chan []string) {
	t.Helper()
	c := New(nc, Options{MaxPending: 64 << 20})
	defer c.Close()
	const n = 32 << 10 // 32 MiB: more than the socket buffers of a peer that reads nothing
	val := strings.Repeat("v", 1000)
	var batch []byte
	for i := range n {
		batch = append(batch, encode("SET", fmt.Sprint(i), val)...)
	}
	// Ended by hand once the batch is being written: a batch whose context
	// ends before it is taken for writing is never written at all.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Do(ctx, batch, make([]resp.Value, n)) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		writing := c.writing
		c.mu.Unlock()
		if writing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch was not being written after 10s")
		}
	}
	// While the batch is being written, two callers queue behind it: one
	// waits for its reply, the other leaves first and is never sent.
	behind, err := c.Start(context.Background(), encode("ECHO", "behind"), make([]resp.Value, 1))
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer gcancel()
	_, err = c.DoOne(gctx, encode("GET", "left"))
	if ce := (*Error)(nil); !errors.As(err, &ce) || ce.Op != "send" || !ce.Unsent || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GET that left behind the batch = %v, want a not-sent error for its deadline", err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Do = %v, want the context's cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write was not stopped by its context")
	}
	if !c.Alive() {
		t.Fatalf("connection ended: %v", c.Err())
	}
	close(release)
	v, err := c.DoOne(context.Background(), encode("PING"))
	if err != nil || v.Str != "PONG" {
		t.Fatalf("PING after the stopped write = %q, %v (connection: %v)", v.Str, err, c.Err())
	}
	if err := behind.Wait(context.Background()); err != nil {
		t.Fatalf("ECHO queued behind the batch: %v", err)
	}
	names := <-seen
	if len(names) != n+2 || names[n-1] != "SET" || names[n] != "ECHO" {
		t.Fatalf("server read %d commands, with %q after the batch; want the %d SETs, the ECHO queued behind them, then PING",
			len(names), names[min(n, len(names)-1)], n)
	}
}

// TestLeftCallIsNeverWritten: calls queue behind a write the peer does not
// read; the one whose context ends while its bytes wait is taken out of
// line and its bytes are never written, while the calls around it are
// written in order and answered. Written from the caller's buffer or by
// the writer goroutine alike. The fake server reads nothing until released
// (a real one cannot be held).
func TestLeftCallIsNeverWritten(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
	}{
		{"direct", Options{}},
		{"writer", Options{DirectWrite: -1, MaxPending: 64 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, release, seen := dialHeld(t)
			c := New(nc, tc.opt)
			defer c.Close()
			ctx := context.Background()
			big := make(chan error, 1)
			go func() { _, err := c.DoOne(ctx, bigSet()); big <- err }()
			untilWriting(t, c)

			before, err := c.Start(ctx, encode("ECHO", "before"), make([]resp.Value, 1))
			if err != nil {
				t.Fatal(err)
			}
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			if _, err := c.DoOne(short, encode("GET", "left")); !isNotSent(err) {
				t.Fatalf("GET whose context ended in the queue = %v, want a not-sent error", err)
			}
			after, err := c.Start(ctx, encode("INCR", "after"), make([]resp.Value, 1))
			if err != nil {
				t.Fatal(err)
			}
			close(release)
			// The fake server sends its replies when it reads PING.
			if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "PONG" {
				t.Fatalf("PING = %q, %v", v.Str, err)
			}
			if err := <-big; err != nil {
				t.Fatalf("the large SET: %v", err)
			}
			if err := before.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if err := after.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if names := <-seen; strings.Join(names, " ") != "SET ECHO INCR PING" {
				t.Fatalf("the server read %q, want SET ECHO INCR PING: the GET was written", names)
			}
		})
	}
}

// TestQueueBounded: with the socket full (the peer reads nothing), many
// callers keep sending; the bytes waiting for the writer never pass the
// bound, every caller leaves by its deadline with a not-sent error, and
// none of their commands is written. Bounded in callers, sends and time.
func TestQueueBounded(t *testing.T) {
	nc, release, seen := dialHeld(t)
	const maxPending = 64 << 10
	c := New(nc, Options{MaxPending: maxPending})
	defer c.Close()
	bound := queuedPerPending * maxPending
	ctx := context.Background()
	big := make(chan error, 1)
	go func() { _, err := c.DoOne(ctx, bigSet()); big <- err }()
	untilWriting(t, c)

	stop := make(chan struct{})
	var most atomic.Int64
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			c.mu.Lock()
			n := int64(len(c.wbuf))
			c.mu.Unlock()
			if n > most.Load() {
				most.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	const callers, each, timeout, slack = 64, 200, 10 * time.Millisecond, 2 * time.Second
	val := strings.Repeat("x", 4<<10)
	end := time.Now().Add(500 * time.Millisecond)
	var wg sync.WaitGroup
	var sends atomic.Int64
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each && time.Now().Before(end); i++ {
				cctx, cancel := context.WithTimeout(ctx, timeout)
				start := time.Now()
				_, err := c.DoOne(cctx, encode("SET", fmt.Sprint(g, "/", i), val))
				took := time.Since(start)
				cancel()
				sends.Add(1)
				if !isNotSent(err) {
					t.Errorf("send %d/%d = %v, want a not-sent error", g, i, err)
					return
				}
				if took > timeout+slack {
					t.Errorf("send %d/%d returned after %v, its deadline was %v", g, i, took, timeout)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	t.Logf("%d sends; at most %d bytes waited for the writer (bound %d)", sends.Load(), most.Load(), bound)
	if most.Load() > int64(bound) {
		t.Fatalf("%d bytes waited for the writer, more than the bound of %d", most.Load(), bound)
	}
	close(release)
	// The fake server sends its replies when it reads PING.
	if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "PONG" {
		t.Fatalf("PING = %q, %v", v.Str, err)
	}
	if err := <-big; err != nil {
		t.Fatalf("the large SET: %v", err)
	}
	if names := <-seen; len(names) != 2 {
		t.Fatalf("the server read %d commands, want the large SET and PING: sends that left were written", len(names))
	}
}

// TestLeftCallsKeepRepliesInOrder: through a proxy that holds the client's
// bytes back, callers that leave early (taken out of line, their bytes cut
// from the queue) mix with callers that wait; once the proxy lets go,
// every caller that waited gets its own reply. A real server, so the
// replies are real ECHOs. Bounded in callers, sends and time.
func TestLeftCallsKeepRepliesInOrder(t *testing.T) {
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	nc, err := net.Dial("tcp", px.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c := New(nc, Options{MaxPending: 64 << 10, StallTimeout: 20 * time.Second})
	defer c.Close()
	ctx := context.Background()
	px.Stall(redistest.ClientToServer, true)
	big := make(chan error, 1)
	go func() { _, err := c.DoOne(ctx, bigSet()); big <- err }()
	untilWriting(t, c)

	const callers, rounds = 32, 40
	var wg sync.WaitGroup
	var left, kept, parked atomic.Int64
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				want := fmt.Sprintf("%d/%d/%s", g, i, strings.Repeat("e", (g*7+i*13)%3000))
				// Mostly short deadlines; now and then one that outlasts
				// the stall, which parks the caller until the stall ends.
				// After the stall, both kinds meet a server that answers.
				d := time.Duration(1+(g+i)%5) * time.Millisecond
				long := (g+i)%7 == 0
				if long {
					d = 30 * time.Second
					parked.Add(1)
				}
				cctx, cancel := context.WithTimeout(ctx, d)
				v, err := c.DoOne(cctx, encode("ECHO", want))
				cancel()
				if long {
					parked.Add(-1)
				}
				switch {
				case err == nil && v.Str == want:
					kept.Add(1)
				case err == nil:
					t.Errorf("ECHO %.20s got %.20q: another call's reply", want, v.Str)
					return
				case errors.Is(err, context.DeadlineExceeded) && d < time.Second:
					left.Add(1)
				default:
					t.Errorf("ECHO %.20s: %v", want, err)
					return
				}
			}
		}()
	}
	// Once every caller waits on a call that outlasts the stall, the
	// others have left calls before theirs (each caller's first long call
	// comes after up to six short ones) and nothing changes until the
	// stall ends.
	waitFor(t, "every caller to wait on a call that outlasts the stall", func() (bool, string) {
		n := parked.Load()
		return n == callers, fmt.Sprintf("%d of %d callers waiting, %d calls left", n, callers, left.Load())
	})
	px.Stall(redistest.ClientToServer, false)
	wg.Wait()
	if err := <-big; err != nil {
		t.Fatalf("the large SET: %v", err)
	}
	t.Logf("%d calls answered, %d left early", kept.Load(), left.Load())
	if kept.Load() == 0 || left.Load() == 0 {
		t.Fatalf("%d calls answered and %d left: the test needs both", kept.Load(), left.Load())
	}
	if v, err := c.DoOne(ctx, encode("ECHO", "last")); err != nil || v.Str != "last" {
		t.Fatalf("ECHO after the rest = %q, %v", v.Str, err)
	}
}

// TestLeftFirstCallClearsStallDeadline: a call that joins an empty line
// arms the stall limit for the reader, already asleep in its read; when
// its caller leaves before its bytes are written, it leaves the line, and
// the limit must go with it: nothing is due, and the connection stays up
// however long it is idle. The limit stayed armed, and the connection
// failed once it passed ("no reply ... while replies were due"). The
// writer still holding the write role with nothing in line, the moment
// after a write all of whose replies came before it returned, is set by
// hand: a real write leaves it for too short a time to aim at.
func TestLeftFirstCallClearsStallDeadline(t *testing.T) {
	const stall = 100 * time.Millisecond
	c, _ := dialReal(t, Options{OnPush: func(resp.Value) {}, StallTimeout: stall})
	ctx := context.Background()
	if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "PONG" {
		t.Fatalf("PING = %q, %v", v.Str, err)
	}
	c.mu.Lock()
	c.writing = true
	c.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	p, err := c.Start(cctx, encode("PING"), make([]resp.Value, 1))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := p.Wait(cctx); !isNotSentCanceled(err) {
		t.Fatalf("call left before it was written = %v; want a not-sent error", err)
	}
	c.mu.Lock()
	c.writing = false
	c.mu.Unlock()
	time.Sleep(3 * stall)
	if !c.Alive() {
		t.Fatalf("connection with no call in line failed: %v", c.Err())
	}
	if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "PONG" {
		t.Fatalf("PING after = %q, %v", v.Str, err)
	}
}

func isNotSentCanceled(err error) bool {
	var ce *Error
	return errors.As(err, &ce) && ce.Op == "send" && ce.Unsent && errors.Is(err, context.Canceled)
}

// TestCloseDuringBlockedWriteSettlesByWhatWasWritten: the server stops
// reading (the proxy holds what the client sends) while calls of one size
// join the line one after another, until the queue is full; the proxy
// then lets through just enough for the writer to take the whole queue,
// and the write of it blocks. Close then fails every call: those of which
// the socket accepted a byte (and the server did not answer already) as of
// unknown outcome, the others, those the blocked write still held
// included, as not sent. Bounded in calls and time.
func TestCloseDuringBlockedWriteSettlesByWhatWasWritten(t *testing.T) {
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	nc, err := net.Dial("tcp", px.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c := New(nc, Options{DirectWrite: -1})
	defer c.Close()
	ping := encode("PING")
	if v, err := c.DoOne(context.Background(), ping); err != nil || v.Str != "PONG" {
		t.Fatalf("PING = %q, %v", v.Str, err)
	}
	px.PassBytes(0, redistest.ClientToServer)

	const maxCalls = 2000
	val := strings.Repeat("v", 64<<10)
	cmd := func(k int) []byte { return encode("SET", fmt.Sprintf("k%05d", k), val) }
	size := int64(len(cmd(0)))
	offsets := func() (written, taken int64) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.written, c.taken
	}
	full := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.writing && int64(len(c.wbuf))+size > int64(c.maxQueued)
	}
	// blocked waits until what the writer has written stays put.
	blocked := func() {
		var last int64 = -1
		for range 50 {
			time.Sleep(20 * time.Millisecond)
			if w, _ := offsets(); w == last {
				return
			} else {
				last = w
			}
		}
	}
	// Each call joins the line before the next is made, so the k-th starts
	// at len(ping) + k*size in the stream.
	var errs []chan error
	for k := 0; k < maxCalls && !full(); k++ {
		ch := make(chan error, 1)
		errs = append(errs, ch)
		go func() {
			_, err := c.DoOne(context.Background(), cmd(k))
			ch <- err
		}()
		waitFor(t, fmt.Sprintf("call %d in line or the queue full", k), func() (bool, string) {
			n := c.Pending()
			return n == k+1 || full(), fmt.Sprintf("%d calls in line", n)
		})
	}
	if !full() {
		t.Fatalf("the queue is not full after %d calls", len(errs))
	}
	blocked()
	// Enough for the write under way to end, so that the writer takes
	// the full queue, of which the socket can then accept little.
	w, tk := offsets()
	px.PassBytes(tk-w+1<<20, redistest.ClientToServer)
	// The kernel wakes a writer blocked on a full socket only once much of
	// the socket's buffer is free, which on a loaded machine, with larger
	// buffers, may take more than that: more is passed, a little at a
	// time, until the writer has taken the queue.
	for i := 0; ; i++ {
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if _, now := offsets(); now > tk {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, now := offsets(); now > tk {
			break
		}
		if i == 16 {
			t.Fatalf("the writer took nothing more after 16 more passes of 256 KiB (the socket accepted %d bytes, the writer took %d)", w, tk)
		}
		px.PassBytes(256<<10, redistest.ClientToServer)
	}
	waitFor(t, "the writer holding most of the queue", func() (bool, string) {
		w, tk := offsets()
		return tk-w > 2<<20, fmt.Sprintf("the socket accepted %d bytes, the writer took %d", w, tk)
	})
	blocked()
	c.Close()
	written, taken := offsets()
	t.Logf("%d calls; the socket accepted %d bytes, the writer took %d", len(errs), written, taken)
	answered, unknown, unsent := 0, 0, 0
	for k, ch := range errs {
		var err error
		select {
		case err = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("call %d still waiting 10s after Close", k)
		}
		start := int64(len(ping)) + int64(k)*size
		if err == nil && start < written {
			answered++ // the server had it, and answered before the close
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || !errors.Is(err, ErrClosed) {
			t.Fatalf("call %d failed with %v, want the connection's close", k, err)
		}
		if want := start >= written; ce.Unsent != want {
			t.Errorf("call %d, bytes %d to %d: Unsent = %v, want %v (the socket accepted %d bytes, the writer took %d)",
				k, start, start+size, ce.Unsent, want, written, taken)
		}
		if ce.Unsent {
			unsent++
		} else {
			unknown++
		}
	}
	t.Logf("%d answered, %d of unknown outcome, %d not sent", answered, unknown, unsent)
}

// endingWriteConn is a net.Conn of the user's whose Write, once how is
// set, ends its goroutine (runtime.Goexit, as t.FailNow calls) or panics.
type endingWriteConn struct {
	net.Conn
	how *atomic.Value
}

func (d endingWriteConn) Write(b []byte) (int, error) {
	switch d.how.Load() {
	case "goexit":
		runtime.Goexit()
	case "panic":
		panic("write refused")
	}
	return d.Conn.Write(b)
}

// TestWriteEndingGoroutineFailsConnection: a caller's inline write whose
// Write, of a net.Conn of the user's, ends the goroutine, or panics and
// the caller recovers, gives up the write role and fails the connection.
// After a panic the role used to stay held, and the next call waited for
// a write that nothing would make until its context ended. Bounded in
// time.
func TestWriteEndingGoroutineFailsConnection(t *testing.T) {
	for _, how := range []string{"goexit", "panic"} {
		t.Run(how, func(t *testing.T) {
			srv := redistest.Start(t)
			nc, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				t.Fatal(err)
			}
			var mode atomic.Value
			mode.Store("")
			c := New(endingWriteConn{nc, &mode}, Options{DirectWrite: 1 << 10})
			defer c.Close()
			if v, err := c.DoOne(context.Background(), encode("PING")); err != nil || v.Str != "PONG" {
				t.Fatalf("PING = %q, %v", v.Str, err)
			}
			mode.Store(how)
			done := make(chan any, 1)
			go func() {
				defer func() { done <- recover() }()
				c.DoOne(context.Background(), encode("SET", "k", strings.Repeat("v", 8<<10)))
			}()
			select {
			case p := <-done:
				if (p != nil) != (how == "panic") {
					t.Fatalf("the writing caller ended with %v", p)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the writing caller still running after 10s")
			}
			mode.Store("")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = c.DoOne(ctx, encode("PING"))
			var ce *Error
			if !errors.As(err, &ce) || ce.Op != "write" || !ce.Unsent || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("PING after the write ended: %v, want the failed write's error, not sent", err)
			}
			if err := c.Err(); err == nil {
				t.Fatal("the connection did not fail")
			}
		})
	}
}
