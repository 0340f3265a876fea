package redpipe

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// dbsize asks the server, over a connection of its own, how many keys it
// holds.
func dbsize(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	v, err := srv.Do("DBSIZE")
	if err != nil {
		t.Fatal(err)
	}
	return int(v.(int64))
}

// commandCalls asks the server how many times it has run the command
// named cmd, in lower case (INFO commandstats).
func commandCalls(t *testing.T, srv *redistest.Server, cmd string) int {
	t.Helper()
	info, _ := srv.MustDo(t, "INFO", "commandstats").(string)
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			calls, _, _ := strings.Cut(rest, ",")
			n, err := strconv.Atoi(calls)
			if err != nil {
				t.Fatalf("INFO commandstats: %q", line)
			}
			return n
		}
	}
	return 0
}

// TestStreamSendsWhileQueueing: a stream of 200,000 SETs hands every reply
// to each, in order and exactly once, sends chunks before Close (the server
// holds keys and each has run while commands are still being queued), and
// its buffers stay at a few chunks, where a plain pipeline's would hold
// the whole batch.
func TestStreamSendsWhileQueueing(t *testing.T) {
	t.Parallel()
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	const n = 200_000
	next := 0
	var bad error
	s := c.Stream(ctx, func(i int, v Value) error {
		if i != next && bad == nil {
			bad = fmt.Errorf("reply %d handed out when %d was due", i, next)
		}
		next = i + 1
		if txt, err := v.Text(); (txt != "OK" || err != nil) && bad == nil {
			bad = fmt.Errorf("reply %d = %q, %v", i, txt, err)
		}
		return nil
	})
	maxBuf, maxInflight, maxReplies := 0, 0, 0
	for i := range n {
		s.Set("s:"+strconv.Itoa(i), "v"+strconv.Itoa(i))
		maxBuf = max(maxBuf, cap(s.p.w.buf))
		maxInflight = max(maxInflight, len(s.inflight))
		for _, ch := range append(s.inflight, s.free...) {
			maxReplies = max(maxReplies, cap(ch.replies))
		}
		if i == n/2 {
			if next == 0 {
				t.Fatal("halfway through queueing, no reply has been handed out: the stream is not sending")
			}
			if got := dbsize(t, srv); got < next {
				t.Fatalf("halfway through queueing the server holds %d keys, fewer than the %d replies seen", got, next)
			}
		}
	}
	if s.Len() != n {
		t.Fatalf("Len = %d, want %d", s.Len(), n)
	}
	sent, err := s.Close(ctx)
	if err != nil || sent != n {
		t.Fatalf("Close = %d, %v; want %d, nil", sent, err, n)
	}
	if bad != nil {
		t.Fatal(bad)
	}
	if next != n {
		t.Fatalf("each saw %d replies, want %d", next, n)
	}
	if got := dbsize(t, srv); got != n {
		t.Fatalf("server holds %d keys, want %d", got, n)
	}
	for _, i := range []int{0, 1, n / 3, n - 1} {
		if v, err := c.Get(ctx, "s:"+strconv.Itoa(i)); err != nil || v != "v"+strconv.Itoa(i) {
			t.Fatalf("GET s:%d = %q, %v", i, v, err)
		}
	}
	// A plain pipeline of the same batch would grow to several MiB of
	// encoding and n replies.
	if maxBuf > 2*streamChunk || maxInflight > 2 || maxReplies > streamChunk/16 {
		t.Fatalf("stream held up to %d bytes of encoding, %d chunks in flight, %d replies per chunk", maxBuf, maxInflight, maxReplies)
	}
	// A closed stream sends nothing more and says so.
	next = 0
	s.Incr("after")
	if got := s.Len(); got != n {
		t.Errorf("Len after Close and one more command = %d, want the %d sent", got, n)
	}
	if _, err := s.Close(ctx); !errors.Is(err, ErrClosed) || next != 0 {
		t.Fatalf("Close of a closed stream = %v, each saw %d replies; want ErrClosed and none", err, next)
	}
	// Another stream counts from 0.
	first := -1
	s2 := c.Stream(ctx, func(i int, v Value) error { first = i; return nil })
	s2.Incr("after")
	if _, err := s2.Close(ctx); err != nil || first != 0 {
		t.Fatalf("a second stream: %v, each saw index %d", err, first)
	}
	if v, _ := c.Get(ctx, "after"); v != "1" {
		t.Fatalf("after = %q, want 1", v)
	}
}

// TestStreamErrors: a command's error stays with its reply and Close names
// it by its place in the whole stream; ErrorsInReplies leaves it there;
// an error from each stops the calls but not the reading; the connection
// goes back to the pool clean after all of them (PoolSize 1 would make
// the next stream wait forever otherwise).
func TestStreamErrors(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	if err := c.Set(ctx, "str", "x"); err != nil {
		t.Fatal(err)
	}
	const n, bad = 30_000, 20_000
	queue := func(s *Stream) {
		for i := range n {
			if i == bad {
				s.Incr("str")
			} else {
				s.Set("e:"+strconv.Itoa(i), "v")
			}
		}
	}
	errAt := -1
	s := c.Stream(ctx, func(i int, v Value) error {
		if v.Err() != nil && errAt < 0 {
			errAt = i
		}
		return nil
	})
	queue(s)
	if s.Err() != nil {
		t.Fatalf("Err = %v: a command's own error does not stop a stream", s.Err())
	}
	_, err := s.Close(ctx)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != bad || ce.Command != "INCR" || errAt != bad {
		t.Fatalf("Close = %v (index %v), each saw the error at %d; want INCR at %d", err, ce, errAt, bad)
	}
	var se *Error
	if !errors.As(err, &se) || se.Prefix != "ERR" {
		t.Fatalf("the command's error is not the server's: %v", err)
	}

	s = c.Stream(ctx, nil, ErrorsInReplies)
	queue(s)
	if _, err := s.Close(ctx); err != nil {
		t.Fatalf("with ErrorsInReplies Close = %v, want nil", err)
	}

	stop := errors.New("enough")
	calls := 0
	s = c.Stream(ctx, func(i int, v Value) error {
		calls++
		if i == 100 {
			return stop
		}
		return nil
	})
	for range n {
		s.Incr("counted")
	}
	if !errors.Is(s.Err(), stop) {
		t.Fatalf("Err = %v while queueing after each failed; want the error of each", s.Err())
	}
	if sent, err := s.Close(ctx); !errors.Is(err, stop) || calls != 101 || sent != n {
		t.Fatalf("Close = %d, %v after %d calls of each; want %d sent and the error of each after 101", sent, err, calls, n)
	}
	if v, _ := c.Get(ctx, "counted"); v != strconv.Itoa(n) {
		t.Fatalf("counted = %q: every command of the stream should have run", v)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s = c.Stream(short, nil)
	if _, err := s.Incr("counted").Close(short); err != nil {
		t.Fatalf("a stream after the others (pool of 1): %v", err)
	}
}

// streamUnderWay starts a stream and queues 10,000 SETs of keys with the
// given prefix, so that some chunks have gone out; it returns the stream
// and how many commands were sent.
func streamUnderWay(t *testing.T, c *Client, ctx context.Context, prefix string) (*Stream, int) {
	t.Helper()
	s := c.Stream(ctx, nil)
	for i := range 10_000 {
		s.Set(prefix+strconv.Itoa(i), "v")
	}
	sent := s.sent
	if sent == 0 {
		t.Fatal("nothing sent after 10,000 commands")
	}
	return s, sent
}

// TestStreamRefusals: a command that cannot be queued stops the stream at
// its chunk: what went before ran, nothing after, and the error says the
// outcome is unknown once something was sent.
func TestStreamRefusals(t *testing.T) {
	t.Parallel()
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	s, sent := streamUnderWay(t, c, ctx, "r:")
	s.Do("SET", "only-key")
	for i := 10_000; i < 20_000; i++ {
		s.Set("r:"+strconv.Itoa(i), "v")
	}
	_, err := s.Close(ctx)
	var ae *ArityError
	var ce *CommandError
	if !errors.As(err, &ae) || !errors.As(err, &ce) || ce.Index != 10_000 {
		t.Fatalf("Close = %v; want an arity error of command 10000", err)
	}
	if OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("OutcomeOf = %v, want Unknown: %d commands had run", OutcomeOf(err), sent)
	}
	if got := dbsize(t, srv); got < sent || got > 10_000 {
		t.Fatalf("server holds %d keys; want the %d sent, up to the 10,000 before the bad command", got, sent)
	}
	// Close waited for what was sent, so the connection went back clean.
	if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
		t.Fatalf("after a refused command the pool has %d connections, %d idle; want the stream's back", open, idle)
	}

	// Err reports the refusal as soon as the command is queued, not once
	// its chunk fills; it once said nil until then.
	s, _ = streamUnderWay(t, c, ctx, "r2:")
	s.Set("r2:more", "v").Do("SET", "only-key")
	sent = s.sent
	if err := s.Err(); !errors.As(err, &ae) || !errors.As(err, &ce) || ce.Index != 10_001 || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("Err after an arity error = %v; want an arity error of command 10001, of unknown outcome", err)
	}
	if n, err := s.Close(ctx); !errors.As(err, &ce) || ce.Index != 10_001 || n != sent {
		t.Fatalf("Close = %d, %v; want the %d sent and the arity error of command 10001", n, err, sent)
	}

	s = c.Stream(ctx, nil)
	s.Do("SELECT", 2)
	if err := s.Err(); !errors.As(err, new(*UsageError)) || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("Err after SELECT in a stream: %v (%v); want a usage error, not sent", err, OutcomeOf(err))
	}
	if _, err := s.Close(ctx); !errors.As(err, new(*UsageError)) || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("SELECT in a stream: %v (%v); want a usage error, not sent", err, OutcomeOf(err))
	}

	t.Run("Cluster", func(t *testing.T) {
		c, ctx := connectedCluster(t)
		s := c.Stream(ctx, nil)
		for i := range 100 {
			s.Set("rc:"+strconv.Itoa(i), "v")
		}
		s.Do("SET", "only-key")
		if err := s.Err(); !errors.As(err, &ae) || !errors.As(err, &ce) || ce.Index != 100 || OutcomeOf(err) != OutcomeNotSent {
			t.Fatalf("Err after an arity error = %v; want an arity error of command 100, not sent", err)
		}
		if n, err := s.Close(ctx); !errors.As(err, &ce) || ce.Index != 100 || n != 0 {
			t.Fatalf("Close = %d, %v; want none sent and the arity error of command 100", n, err)
		}
	})
}

// TestStreamDiscard: Discard keeps what was sent (it ran) and drops the
// rest; the connection goes back to the pool.
func TestStreamDiscard(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	s := c.Stream(ctx, nil)
	for i := range 10_000 {
		s.Set("d:"+strconv.Itoa(i), "v")
	}
	sent := s.sent
	s.Discard()
	if got := dbsize(t, srv); got != sent || sent == 0 || sent == 10_000 {
		t.Fatalf("after Discard the server holds %d keys; %d were sent of 10,000", got, sent)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.Stream(short, nil).Incr("n").Close(short); err != nil {
		t.Fatalf("a stream after Discard (pool of 1): %v", err)
	}
	if _, err := s.Close(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after Discard = %v, want ErrClosed", err)
	}
}

// TestStreamBlockingCommandHoldsBackTheRest: a blocking command in a
// stream runs on the stream's connection, so the command queued after it
// that would feed it runs only once it has timed out, as the Stream doc
// says.
func TestStreamBlockingCommandHoldsBackTheRest(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	var got []Value
	s := c.Stream(ctx, func(i int, v Value) error { got = append(got, v); return nil })
	s.BLPop(0.2, "sb:q").RPush("sb:q", "x").LLen("sb:q")
	if n, err := s.Close(ctx); n != 3 || err != nil {
		t.Fatalf("Close = %d, %v", n, err)
	}
	if len(got) != 3 || !got[0].IsNil() {
		t.Fatalf("replies %v: want BLPOP's timeout (nil) first", got)
	}
	if n, err := got[2].Int64(); n != 1 || err != nil {
		t.Fatalf("LLEN after the stream = %d, %v; want 1: the RPUSH ran after the BLPOP gave up", n, err)
	}
}

// TestStreamConnectionLost: the connection dies with chunks in flight;
// Close returns, the outcome is unknown, and the client goes on.
func TestStreamConnectionLost(t *testing.T) {
	c, px, srv := proxiedClient(t, Options{})
	ctx := ctxT(t)
	s := c.Stream(ctx, nil)
	for i := range 5_000 {
		s.Set("l:"+strconv.Itoa(i), "v")
	}
	px.Stall(redistest.ServerToClient, true)
	sent := s.sent
	done := make(chan error, 1)
	go func() {
		for i := range 20_000 {
			s.Set("l:"+strconv.Itoa(i), "v")
		}
		_, err := s.Close(ctx)
		done <- err
	}()
	// Once the server has run more SETs than were sent before the stall,
	// a chunk sent since is in flight: its replies are held in the proxy.
	waitForServer(t, ctx, "a chunk sent after the stall to reach the server", func() (bool, string) {
		n := commandCalls(t, srv, "set")
		return n > sent, fmt.Sprintf("the server ran %d SETs, %d were sent before the stall", n, sent)
	})
	px.Cut(redistest.CutRST)
	px.Reset()
	select {
	case err := <-done:
		if err == nil || OutcomeOf(err) != OutcomeUnknown {
			t.Fatalf("Close after the cut = %v (%v); want an error of unknown outcome", err, OutcomeOf(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream still waiting 10s after its connection was cut")
	}
	if err := c.Set(ctx, "after", "1"); err != nil {
		t.Fatalf("client after a lost stream: %v", err)
	}
}

// TestStreamCancelled: the stream's context ends while commands are being
// queued; Close reports it and the connection, if replies were left
// unread, is not lent again.
func TestStreamCancelled(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	sctx, cancel := context.WithCancel(ctx)
	seen := 0
	s := c.Stream(sctx, func(int, Value) error { seen++; return nil })
	for i := range 5_000 {
		s.Set("c:"+strconv.Itoa(i), "v")
	}
	cancel()
	for i := range 5_000 {
		s.Set("c:"+strconv.Itoa(i), "v")
	}
	if !errors.Is(s.Err(), context.Canceled) {
		t.Fatalf("Err = %v after the stream's context ended, want context.Canceled", s.Err())
	}
	sent, err := s.Close(sctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	// The replies of the chunk in flight as the context ended may all be
	// in, and then handed out: only then may the connection be lent again.
	if _, idle := c.pool.Stats(); idle != 0 && seen != sent {
		t.Fatalf("%d idle connections after a cancelled stream that left %d of %d replies unread; its connection must be closed", idle, sent-seen, sent)
	}
	if _, err := c.Stream(ctx, nil).Incr("n").Close(ctx); err != nil {
		t.Fatalf("a stream after a cancelled one: %v", err)
	}
	if got := dbsize(t, srv); got > 10_001 {
		t.Fatalf("server holds %d keys", got)
	}
}

// TestStreamQueueFromEach: commands that each queues, as replies are handed
// out from the command methods and from Close, run once each, after what
// was queued before them, and every reply reaches its own command, on one
// node and on a cluster. On one node a command queued from each once went
// out with the bytes of the chunk just sent, which then ran twice.
func TestStreamQueueFromEach(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, c *Client, get func(key string) any) {
		ctx := ctxT(t)
		const n, more = 20_000, 3_000 // more: over a chunk, queued from Close
		var s *Stream
		var bad error
		next, ctr, ctr2, oks := 0, int64(0), int64(0), 0
		s = c.Stream(ctx, func(i int, v Value) error {
			if i != next && bad == nil {
				bad = fmt.Errorf("reply %d handed out when %d was due", i, next)
			}
			next = i + 1
			if txt, err := v.Text(); err == nil && txt == "OK" {
				oks++
				return nil
			}
			got, err := v.Int64()
			switch {
			case err != nil:
				bad = fmt.Errorf("reply %d: %v", i, err)
			case ctr < n:
				if ctr++; got != ctr && bad == nil {
					bad = fmt.Errorf("reply %d: INCR ctr gave %d, want %d", i, got, ctr)
				}
			default:
				if ctr2++; got != ctr2 && bad == nil {
					bad = fmt.Errorf("reply %d: INCR ctr2 gave %d, want %d", i, got, ctr2)
				}
			}
			if i == 0 {
				s.Set("follow", "x")
			}
			if ctr == n && ctr2 == 0 && got == n {
				for range more {
					s.Incr("ctr2")
				}
			}
			return nil
		})
		for range n {
			s.Incr("ctr")
		}
		sent, err := s.Close(ctx)
		if err != nil || sent != n+1+more {
			t.Fatalf("Close = %d, %v; want %d, nil", sent, err, n+1+more)
		}
		if bad != nil {
			t.Fatal(bad)
		}
		if next != n+1+more || oks != 1 {
			t.Errorf("each saw %d replies, %d of them OK; want %d and 1", next, oks, n+1+more)
		}
		for key, want := range map[string]string{"ctr": strconv.Itoa(n), "ctr2": strconv.Itoa(more), "follow": "x"} {
			if got := get(key); got != want {
				t.Errorf("%s = %v, want %s", key, got, want)
			}
		}

		// A command queued on the very last reply Close hands out, here
		// that of a value larger than a chunk, which Close waits for
		// alone, is sent too.
		big := strings.Repeat("v", 3<<20)
		s = c.Stream(ctx, func(i int, v Value) error {
			switch i {
			case 0:
				s.Set("big", big)
			case 1:
				s.Set("last", "y")
			}
			return nil
		})
		s.Set("first", "x")
		if sent, err := s.Close(ctx); err != nil || sent != 3 {
			t.Fatalf("Close = %d, %v; want 3, nil", sent, err)
		}
		if got := get("last"); got != "y" {
			t.Errorf("last = %v, want y: the command queued on the last reply was dropped", got)
		}
	}
	t.Run("Node", func(t *testing.T) {
		c, srv := newTestClient(t, Options{})
		run(t, c, func(key string) any { return srv.MustDo(t, "GET", key) })
	})
	t.Run("Cluster", func(t *testing.T) {
		c, _ := connectedCluster(t)
		run(t, c, func(key string) any {
			v, err := c.Do(context.Background(), "GET", key)
			if err != nil {
				return err
			}
			s, _ := v.Text()
			return s
		})
	})
}

// TestStreamCloseFromEach: Close called from within each would finish the
// stream under the replies being handed out, which then came out of order
// or twice: it is refused, and the stream goes on. Discard there stops the
// stream, and the caller's Close reports it. On one node and on a cluster.
func TestStreamCloseFromEach(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, c *Client) {
		ctx := ctxT(t)
		const n = 20_000
		var s *Stream
		next, closeErr := 0, error(nil)
		var bad error
		s = c.Stream(ctx, func(i int, v Value) error {
			if i != next && bad == nil {
				bad = fmt.Errorf("reply %d handed out when %d was due", i, next)
			}
			next = i + 1
			if i == 10 {
				_, closeErr = s.Close(ctx)
			}
			return nil
		})
		for range n {
			s.Incr("closed-from-each")
		}
		sent, err := s.Close(ctx)
		var ue *UsageError
		if !errors.As(closeErr, &ue) {
			t.Errorf("Close from within each = %v, want a *UsageError", closeErr)
		}
		if err != nil || sent != n || next != n || bad != nil {
			t.Fatalf("Close = %d, %v after %d replies (%v); want %d, nil, all in order", sent, err, next, bad, n)
		}

		after := 0
		s = c.Stream(ctx, func(i int, v Value) error {
			if i > 10 {
				after++
			}
			if i == 10 {
				s.Discard()
			}
			return nil
		})
		for range n {
			s.Incr("discarded-from-each")
		}
		sent, err = s.Close(ctx)
		if !errors.As(err, &ue) || sent >= n || OutcomeOf(err) != OutcomeUnknown {
			t.Fatalf("Close after Discard from within each = %d, %v (outcome %v); want fewer than %d sent, a *UsageError of unknown outcome",
				sent, err, OutcomeOf(err), n)
		}
		if _, err := s.Close(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("a second Close = %v, want ErrClosed", err)
		}
		if after != 0 {
			t.Errorf("each was called %d times after Discard from within it, want none", after)
		}
	}
	onNodeAndCluster(t, run)
}

// TestStreamEachErrorOutcome: an error from each stops the calls of each,
// not the stream, whose commands run all the same. Whatever the error of
// each says of its own (here that of a call each made, refused before it
// was sent), Close's error is of unknown outcome and not safe to retry:
// it once said OutcomeNotSent, and a caller retrying on SafeToRetry would
// have run the whole stream twice. On one node and on a cluster.
func TestStreamEachErrorOutcome(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, c *Client) {
		ctx := ctxT(t)
		const n = 20_000
		s := c.Stream(ctx, func(i int, v Value) error {
			if i == 100 {
				_, err := c.Do(ctx, "SET", "only-key") // refused: one word short
				return err
			}
			return nil
		})
		for range n {
			s.Incr("each-err")
		}
		sent, err := s.Close(ctx)
		var ae *ArityError
		if !errors.As(err, &ae) || sent != n {
			t.Fatalf("Close = %d, %v; want %d sent and the arity error each returned", sent, err, n)
		}
		if o := OutcomeOf(err); o != OutcomeUnknown || SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
			t.Fatalf("Close = %v: outcome %v, safe to retry %v; want unknown: %d commands ran", err, o, SafeToRetry(err), n)
		}
		if o := OutcomeOf(s.Err()); o != OutcomeUnknown {
			t.Fatalf("Err = %v: outcome %v, want unknown", s.Err(), o)
		}
		if v, err := c.Get(ctx, "each-err"); err != nil || v != strconv.Itoa(n) {
			t.Fatalf("each-err = %q, %v; want %d", v, err, n)
		}
	}
	onNodeAndCluster(t, run)
}

// TestStreamEachPanics: a panic in each reaches the caller of the command
// method (or Close) that handed the reply out; the stream then takes it
// for an error of each: each is not called again, no reply is handed out
// twice, the commands queued still run, and Close, deferred or called after a
// recover, reads every reply, gives the connections back and reports it.
// Before, Close called each again on the replies that followed, on a
// cluster with the very reply it had panicked on, and reported nothing.
// So for a panic of a Decoder, after which each once went on with the
// rest of the chunk's replies skipped. On one node and on a cluster.
func TestStreamEachPanics(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, c *Client, pooled func() bool) {
		ctx := ctxT(t)
		const n, at = 20_000, 100
		boom := errors.New("boom")
		total := 0
		for _, deferred := range []bool{false, true} {
			var s *Stream
			calls, after := 0, 0
			seen := make(map[int]bool)
			var twice []int
			s = c.Stream(ctx, func(i int, v Value) error {
				calls++
				if seen[i] {
					twice = append(twice, i)
				}
				seen[i] = true
				if calls > at+1 || i > at {
					after++
				}
				if i == at {
					panic(boom)
				}
				return nil
			})
			var sent, queued int
			var err error
			var recovered any
			func() {
				defer func() { recovered = recover() }()
				if deferred {
					defer func() { sent, err = s.Close(ctx) }()
				}
				for range n {
					queued++ // before: the command that meets the panic was queued
					s.Incr("each-panics")
				}
				if !deferred {
					s.Close(ctx)
				}
			}()
			if recovered != boom {
				t.Fatalf("deferred Close %v: recovered %v, want the panic of each", deferred, recovered)
			}
			if !deferred {
				sent, err = s.Close(ctx)
			}
			if after > 0 || len(twice) > 0 {
				t.Errorf("deferred Close %v: each was called %d times after it panicked; replies handed out twice: %v", deferred, after, twice)
			}
			total += queued
			if err == nil || !strings.Contains(err.Error(), "panicked") || OutcomeOf(err) != OutcomeUnknown || sent != queued {
				t.Errorf("deferred Close %v: Close = %d, %v (outcome %v); want the %d queued sent, an error that says each panicked, of unknown outcome",
					deferred, sent, err, OutcomeOf(err), queued)
			}
			if !pooled() {
				t.Errorf("deferred Close %v: the stream's connections did not go back to the pool", deferred)
			}
		}
		if v, err := c.Get(ctx, "each-panics"); err != nil || v != strconv.Itoa(total) {
			t.Fatalf("each-panics = %q, %v; want %d: every command queued runs", v, err, total)
		}

		// So does a panic of a decoder, before each is given the reply.
		calls, queued := 0, 0
		s := c.Stream(ctx, func(i int, v Value) error { calls++; return nil },
			WithDecoder("INCR", func(v Value) (any, error) {
				if n, _ := v.Int64(); n == at+1 {
					panic(boom)
				}
				return nil, nil
			}))
		func() {
			defer func() { recover() }()
			for range n {
				queued++
				s.Incr("decoder-panics")
			}
		}()
		sent, err := s.Close(ctx)
		if calls != at || err == nil || !strings.Contains(err.Error(), "decoder panicked") || sent != queued {
			t.Errorf("a decoder panicked on reply %d: each was called %d times, Close = %d, %v; want %d calls, the %d queued sent, an error that says the decoder panicked",
				at, calls, sent, err, at, queued)
		}
		if !pooled() {
			t.Errorf("after a decoder panicked, the stream's connections did not go back to the pool")
		}
	}
	t.Run("Node", func(t *testing.T) {
		c, _ := newTestClient(t, Options{})
		run(t, c, func() bool { open, idle := c.pool.Stats(); return open == 1 && idle == 1 })
	})
	t.Run("Cluster", func(t *testing.T) {
		c, _ := connectedCluster(t)
		run(t, c, func() bool { idle(t, c); return true })
	})
}

// TestStreamPanicInClose: each, or a Decoder, that panics or ends its
// goroutine (runtime.Goexit, as t.FailNow calls) on a reply that a
// deferred Close hands out. The stream is finished before that goes on
// up: every command queued runs, the connections go back to the pool, and
// Err and a Close called after a recover report it. Before, the
// deferred Close was left half done and nothing called it again: its
// connection was kept out of the pool for good, and with PoolSize 1 every
// later Watch or stream waited for one until its context ended. On one
// node and on a cluster.
func TestStreamPanicInClose(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, c *Client, pooled func() bool) {
		ctx := ctxT(t)
		const n, at = 50, 20 // well within a chunk: Close hands out every reply
		for _, goexit := range []bool{false, true} {
			for _, inDecoder := range []bool{false, true} {
				name := fmt.Sprintf("goexit %v, in a decoder %v", goexit, inDecoder)
				key := fmt.Sprintf("close-panics:%v:%v", goexit, inDecoder)
				boom := func() {
					if goexit {
						runtime.Goexit()
					}
					panic("boom")
				}
				var opts []PipelineOption
				if inDecoder {
					opts = append(opts, WithDecoder("INCR", func(v Value) (any, error) {
						if got, _ := v.Int64(); got == at+1 {
							boom()
						}
						return nil, nil
					}))
				}
				s := c.Stream(ctx, func(i int, v Value) error {
					if !inDecoder && i == at {
						boom()
					}
					return nil
				}, opts...)
				err := callAlone(func() error {
					defer s.Close(ctx)
					for range n {
						s.Incr(key)
					}
					return nil
				})
				want := "it panicked: boom"
				if goexit {
					want = errEndedCaller.Error()
				}
				if err == nil || err.Error() != want {
					t.Errorf("%s: the deferred Close = %v, want %q", name, err, want)
				}
				if !pooled() {
					t.Errorf("%s: the stream's connections did not go back to the pool", name)
				}
				if v, err := c.Get(ctx, key); err != nil || v != strconv.Itoa(n) {
					t.Errorf("%s: %s = %q, %v; want %d: every command queued runs", name, key, v, err, n)
				}
				if err := s.Err(); err == nil || !strings.Contains(err.Error(), "ended its goroutine") || OutcomeOf(err) != OutcomeUnknown {
					t.Errorf("%s: Err = %v (outcome %v); want an error that says so, of unknown outcome", name, err, OutcomeOf(err))
				}
				// Close called after a recover reports what the one that
				// panicked could not; the next says the stream is closed.
				if sent, err := s.Close(ctx); sent != n || err == nil || !strings.Contains(err.Error(), "ended its goroutine") {
					t.Errorf("%s: a second Close = %d, %v; want the %d sent and the error", name, sent, err, n)
				}
				if _, err := s.Close(ctx); !errors.Is(err, ErrClosed) {
					t.Errorf("%s: a third Close = %v, want ErrClosed", name, err)
				}
			}
		}
		// The pool's connections are all there to lend.
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := c.Stream(short, nil).Incr("after-close-panics").Close(short); err != nil {
			t.Fatalf("a stream after them: %v", err)
		}
	}
	t.Run("Node", func(t *testing.T) {
		c, _ := newTestClient(t, Options{PoolSize: 1})
		run(t, c, func() bool { open, idle := c.pool.Stats(); return open == 1 && idle == 1 })
	})
	t.Run("Cluster", func(t *testing.T) {
		c, _ := connectedCluster(t)
		run(t, c, func() bool { idle(t, c); return !t.Failed() })
	})
}

// panickyArg is an argument whose encoding panics.
type panickyArg struct{}

func (panickyArg) String() string { panic("panickyArg") }

// TestStreamArgumentPanics: a command whose argument's String method
// panics is left half encoded. Close, deferred or called after a recover,
// refuses it as it refuses any command that cannot be queued: the stream
// stops before the chunk holding it, with an error that names it, and
// the connection goes on. It was sent as it was: its header announced a
// word it did not have, so the server took the next command for it and
// dropped the connection, or, with nothing after it, waited for the rest
// until ReplyTimeout or the context ended, and replies already in were
// lost with the chunk. So with a pipeline, on the shared connection. On
// one node and on a cluster.
func TestStreamArgumentPanics(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, c *Client) {
		const n = 3000
		for _, deferred := range []bool{false, true} {
			ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
			next := 0
			var bad error
			s := c.Stream(ctx, func(i int, v Value) error {
				if txt, _ := v.Text(); (i != next || txt != "OK") && bad == nil {
					bad = fmt.Errorf("reply %d = %v when %d was due", i, v, next)
				}
				next++
				return nil
			})
			var sent int
			var err error
			start := time.Now()
			func() {
				defer func() { recover() }()
				if deferred {
					defer func() { sent, err = s.Close(ctx) }()
				}
				for i := range n {
					s.Set("arg-panics:"+strconv.Itoa(i), "v")
				}
				s.Set("arg-panics", panickyArg{})
			}()
			if !deferred {
				s.Incr("arg-panics:after")
				sent, err = s.Close(ctx)
			}
			cancel()
			var ce *CommandError
			var ue *UsageError
			if !errors.As(err, &ce) || !errors.As(err, &ue) || ce.Index != n || ce.Command != "SET" || !strings.Contains(err.Error(), "panicked") {
				t.Errorf("deferred Close %v: Close = %d, %v after %v; want a *UsageError for command %d, SET, that says its encoding panicked",
					deferred, sent, err, time.Since(start).Round(time.Millisecond), n)
			}
			if bad != nil || next != sent || sent > n {
				t.Errorf("deferred Close %v: %d sent, %d replies handed out (%v); want every reply of what was sent, in order, and none after command %d",
					deferred, sent, next, bad, n)
			}
		}
		ctx := ctxT(t)
		if err := c.Set(ctx, "arg-panics:later", 1); err != nil {
			t.Fatalf("a call after the streams: %v", err)
		}

		p := c.Pipeline(NoTransaction)
		func() {
			defer func() { recover() }()
			p.Set("arg-panics:p", 1).Set("arg-panics:p", panickyArg{})
		}()
		_, err := p.Incr("arg-panics:p").Exec(ctx)
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Index != 1 || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("Exec of a pipeline with a command half encoded = %v (outcome %v); want a *CommandError for command 2, not sent", err, OutcomeOf(err))
		}
		if v, err := c.Do(ctx, "EXISTS", "arg-panics:p"); err != nil || v.String() != "0" {
			t.Errorf("EXISTS arg-panics:p = %v, %v; want 0: nothing of the pipeline runs", v, err)
		}
	}
	t.Run("Node", func(t *testing.T) {
		c, _ := newTestClient(t, Options{ReplyTimeout: -1})
		run(t, c)
	})
	t.Run("Cluster", func(t *testing.T) {
		c, _ := connectedCluster(t)
		run(t, c)
	})
}

// onNodeAndCluster runs run with a client of one node, then with one of a
// cluster, each in a subtest.
func onNodeAndCluster(t *testing.T, run func(t *testing.T, c *Client)) {
	t.Run("Node", func(t *testing.T) {
		c, _ := newTestClient(t, Options{})
		run(t, c)
	})
	t.Run("Cluster", func(t *testing.T) {
		c, _ := connectedCluster(t)
		run(t, c)
	})
}

// TestStreamQueuedAfterClose: commands queued on a stream after its Close
// are dropped, not sent, and Err says so with a *UsageError matching
// ErrClosed, counting them, also once they filled a chunk; before, Err
// said nil, and a loader checking it could not tell they were lost.
func TestStreamQueuedAfterClose(t *testing.T) {
	t.Parallel()
	onNodeAndCluster(t, func(t *testing.T, c *Client) {
		ctx := ctxT(t)
		s := c.Stream(ctx, nil)
		s.Set("before-close", "1")
		if sent, err := s.Close(ctx); err != nil || sent != 1 {
			t.Fatalf("Close = %d, %v", sent, err)
		}
		if err := s.Err(); err != nil {
			t.Fatalf("Err after a clean Close = %v, want nil", err)
		}
		// A second Close, or a Close after Discard, says what happened.
		discarded := c.Stream(ctx, nil)
		discarded.Discard()
		for name, st := range map[string]*Stream{"a second Close": s, "Close after Discard": discarded} {
			var ue *UsageError
			if sent, err := st.Close(ctx); sent != 0 || !errors.As(err, &ue) || !errors.Is(err, ErrClosed) ||
				!strings.Contains(err.Error(), "Close or Discard already finished") || !strings.Contains(err.Error(), "start a new one") {
				t.Fatalf("%s = %d, %v; want a *UsageError for ErrClosed that says the stream was finished and what to do", name, sent, err)
			}
		}
		check := func(n int) {
			t.Helper()
			var ue *UsageError
			err := s.Err()
			count := strconv.Itoa(n) + " commands queued on the Stream after Close or Discard were dropped"
			if n == 1 {
				count = "1 command queued on the Stream after Close or Discard was dropped"
			}
			if !errors.As(err, &ue) || !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), count) ||
				!strings.Contains(err.Error(), "start a new Stream") {
				t.Fatalf("Err after %d commands queued after Close = %v; want a *UsageError for ErrClosed counting them (%q) and saying what to do", n, err, count)
			}
		}
		s.Set("after-close", "x")
		check(1)
		for range 2 {
			s.Set("after-close", "x")
		}
		check(3)
		const many = 20_000 // more than a chunk: the buffer fills and is dropped
		for range many {
			s.Set("after-close", "0123456789abcdef")
		}
		check(3 + many)
		if s.Len() != 1 {
			t.Fatalf("Len = %d, want the 1 command sent", s.Len())
		}
		if n, err := c.Exists(ctx, "after-close"); err != nil || n != 0 {
			t.Fatalf("EXISTS after-close = %d, %v; want nothing sent", n, err)
		}
	})
}

// TestStreamLenAfterFailure: once a stream has failed, what is queued is
// dropped, so Len no longer counts it and agrees with what Close reports
// as sent; before, it went on counting the commands queued before and
// after the one that stopped the stream.
func TestStreamLenAfterFailure(t *testing.T) {
	t.Parallel()
	onNodeAndCluster(t, func(t *testing.T, c *Client) {
		ctx := ctxT(t)
		s := c.Stream(ctx, nil)
		for range 10 {
			s.Set("len-after-failure", "1")
		}
		s.Do("SET", "only-key") // refused: one word short
		for range 5 {
			s.Set("len-after-failure", "2")
		}
		var ae *ArityError
		if err := s.Err(); !errors.As(err, &ae) {
			t.Fatalf("Err = %v, want the arity error", err)
		}
		n := s.Len()
		sent, err := s.Close(ctx)
		if !errors.As(err, &ae) {
			t.Fatalf("Close = %d, %v; want the arity error", sent, err)
		}
		if n != sent || s.Len() != sent {
			t.Fatalf("Len = %d once the stream failed and %d after Close, which sent %d; want them equal", n, s.Len(), sent)
		}
	})
}

// TestStreamStoppedBetweenChunks: a stream stops as it sends a chunk (its
// context ended, or its Client was closed, between two chunks) while the
// chunk before is answered: each still gets those replies, in order, and
// Close counts them as sent. Before, the stream took the failed send for
// a failed connection and dropped the replies already in, though the
// commands had run.
func TestStreamStoppedBetweenChunks(t *testing.T) {
	// answered queues INCRs until a chunk has gone out, then waits for its
	// replies; it returns how many commands were sent.
	answered := func(t *testing.T, s *Stream) int {
		t.Helper()
		for i := 0; s.sent == 0 && i < 100_000; i++ {
			s.Incr("between")
		}
		if s.sent == 0 || len(s.inflight) != 1 {
			t.Fatalf("%d sent, %d chunks in flight after queueing; want one chunk out", s.sent, len(s.inflight))
		}
		for deadline := time.Now().Add(10 * time.Second); !s.inflight[0].pending.Ready(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the chunk sent has no replies 10s on")
			}
		}
		return s.sent
	}
	// more queues until the stream fails, as it sends the next chunk.
	more := func(t *testing.T, s *Stream) {
		t.Helper()
		for i := 0; s.Err() == nil && i < 100_000; i++ {
			s.Incr("between")
		}
		if s.Err() == nil {
			t.Fatal("the stream goes on after its context ended or its Client closed")
		}
	}
	counter := func(t *testing.T) (func(int, Value) error, *int) {
		seen := 0
		return func(i int, v Value) error {
			if i != seen {
				t.Errorf("reply %d handed out when %d was due", i, seen)
			}
			if n, err := v.Int64(); err != nil || n != int64(i+1) {
				t.Errorf("reply %d = %d, %v; want %d", i, n, err, i+1)
			}
			seen++
			return nil
		}, &seen
	}

	t.Run("ContextEnded", func(t *testing.T) {
		c, _ := newTestClient(t, Options{PoolSize: 1})
		ctx := ctxT(t)
		sctx, cancel := context.WithCancel(ctx)
		each, seen := counter(t)
		s := c.Stream(sctx, each)
		sent := answered(t, s)
		cancel()
		more(t, s)
		n, err := s.Close(ctx)
		if n != sent || !errors.Is(err, context.Canceled) || *seen != sent {
			t.Fatalf("Close = %d, %v; each saw %d replies; want the %d sent, context.Canceled, and each to see them all", n, err, *seen, sent)
		}
		// Every reply was read: the connection went back clean.
		if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
			t.Fatalf("pool has %d connections, %d idle; want the stream's back", open, idle)
		}
	})
	t.Run("ClientClosed", func(t *testing.T) {
		c, _ := newTestClient(t, Options{})
		ctx := ctxT(t)
		each, seen := counter(t)
		s := c.Stream(ctx, each)
		sent := answered(t, s)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		more(t, s)
		n, err := s.Close(ctx)
		if n != sent || !errors.Is(err, ErrClosed) || *seen != sent {
			t.Fatalf("Close = %d, %v; each saw %d replies; want the %d sent, ErrClosed, and each to see them all", n, err, *seen, sent)
		}
	})
}

// A stream stopped once its one command was sent says so in the singular,
// on one node and on a cluster: "after 1 command was sent".
func TestStreamStoppedAfterOneCommand(t *testing.T) {
	t.Parallel()
	single, _ := newTestClient(t, Options{})
	cluster, ctx := connectedCluster(t)
	for name, c := range map[string]*Client{"one node": single, "cluster": cluster} {
		var s *Stream
		s = c.Stream(ctx, func(int, Value) error { s.Discard(); return nil })
		s.Set("stopped", 1)
		n, err := s.Close(ctx)
		if n != 1 || err == nil || !strings.Contains(err.Error(), "stream stopped after 1 command was sent:") {
			t.Errorf("%s: a stream whose each stops it after its one command = %d, %v; want 1 and an error that says 1 command was sent", name, n, err)
		}
	}
}
