package redpipe

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// stallTestDuration is how long TestStalledServerKeepsMemoryBounded keeps
// the server stalled under load: 10s as in the probe, 3s with
// -short, or the Go duration in REDPIPE_STALL_TEST. Why not shorter by
// default: under the race detector a client without the bound grows its
// heap past the limit only after 3 to 5s on a loaded two-core machine (the
// detector's cost of copying the growing queue slows it down).
func stallTestDuration(t *testing.T) time.Duration {
	s := os.Getenv("REDPIPE_STALL_TEST")
	switch {
	case s != "":
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 10*time.Minute {
			t.Fatalf("REDPIPE_STALL_TEST=%q: want a duration such as 10s, at most 10m", s)
		}
		return d
	case testing.Short():
		return 3 * time.Second
	}
	return 10 * time.Second
}

// TestStalledServerKeepsMemoryBounded: the server stops reading (the proxy
// holds both directions) while 512 goroutines send 4 KB SETs with 10ms
// deadlines, and with ReplyTimeout off nothing ends the connection. The
// heap must stay within the connection's queue bound (4 MiB) plus 64 MiB,
// every call must return while the server still reads nothing, with an
// error that says it was not sent or may have run, and once the server
// reads again the client works. Bounded in goroutines, sends and time.
//
// No call is held to a bound on its own time: on a loaded machine (other
// test binaries, the race detector, 512 goroutines on one CPU) a call has
// returned 6s after its 10ms deadline with nothing wrong but the wait for
// a CPU. A call that waited for the server instead would never return
// while the stall lasts, and the stall lasts until every call returned.
func TestStalledServerKeepsMemoryBounded(t *testing.T) {
	const (
		senders  = 512
		maxSends = 100_000 // per sender
		timeout  = 10 * time.Millisecond
		queue    = 4 << 20 // the connection's bound on queued bytes
		limit    = queue + 64<<20
	)
	c, px, _ := proxiedClient(t, Options{ReplyTimeout: -1})
	ctx := ctxT(t)
	if err := c.Set(ctx, "warm", 1); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	px.Stall(redistest.Both, true)
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	var peak atomic.Uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if grown := ms.HeapInuse - min(ms.HeapInuse, base); grown > peak.Load() {
				peak.Store(grown)
				if grown > limit {
					halt() // no need to eat the machine's memory to fail
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	val := strings.Repeat("v", 4<<10)
	var notSent, unknown, sends, slowest atomic.Int64
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "stall:" + strconv.Itoa(g)
			for range maxSends {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				start := time.Now()
				err := c.Set(cctx, key, val)
				took := time.Since(start)
				cancel()
				sends.Add(1)
				switch {
				case err == nil:
					t.Errorf("a SET succeeded while the server was stalled")
					return
				case OutcomeOf(err) == OutcomeNotSent:
					notSent.Add(1)
				case OutcomeOf(err) == OutcomeUnknown:
					unknown.Add(1)
				default:
					t.Errorf("SET while stalled: %v (outcome %v), want not sent or unknown", err, OutcomeOf(err))
					return
				}
				if int64(took) > slowest.Load() {
					slowest.Store(int64(took)) // for the log: a lost update does no harm
				}
			}
		}()
	}
	select {
	case <-time.After(stallTestDuration(t)):
	case <-stop:
	}
	halt()
	returned := make(chan struct{})
	go func() { wg.Wait(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(60 * time.Second):
		t.Fatal("calls still waiting 60s after the last was made, with the server stalled: they wait for its replies, not their deadline")
	}
	<-sampled
	t.Logf("%d sends: %d not sent, %d of unknown outcome, the slowest returned after %v; heap grew by at most %d MiB (from %d MiB)",
		sends.Load(), notSent.Load(), unknown.Load(), time.Duration(slowest.Load()), peak.Load()>>20, base>>20)
	if peak.Load() > limit {
		t.Fatalf("the heap grew by %d MiB while the server was stalled, more than the queue bound plus 64 MiB (%d MiB)",
			peak.Load()>>20, limit>>20)
	}
	if notSent.Load() == 0 {
		t.Fatal("no send failed as not sent: the queue never filled")
	}

	px.Reset()
	if err := c.Set(ctx, "after", "works"); err != nil {
		t.Fatalf("SET once the server reads again: %v", err)
	}
	if v, err := c.Get(ctx, "after"); err != nil || v != "works" {
		t.Fatalf("GET once the server reads again = %q, %v", v, err)
	}
}

// stalledCall runs call, which the proxy's stall keeps from its replies,
// and returns its error and how long it took. A call still waiting after
// 15s fails the test; closing the client then ends it.
func stalledCall(t *testing.T, c *Client, call func() error) (time.Duration, error) {
	t.Helper()
	type result struct {
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		err := call()
		done <- result{err, time.Since(start)}
	}()
	select {
	case r := <-done:
		return r.took, r.err
	case <-time.After(15 * time.Second):
		c.Close()
		<-done
		t.Fatal("the call was still waiting after 15s with the server's replies stalled")
		return 0, nil
	}
}

// expectStallError checks that err is the stall guard's, which ended the
// connection after limit without a reply, and not before.
func expectStallError(t *testing.T, took time.Duration, err error, limit time.Duration) {
	t.Helper()
	t.Logf("returned after %v: %v", took, err)
	if err == nil || !strings.Contains(err.Error(), "no reply") || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("error %v does not say that no reply arrived in time", err)
	}
	if took < limit-limit/20 {
		t.Fatalf("the call failed after %v, before the %v it was allowed", took, limit)
	}
}

// TestReplyTimeoutOnDedicatedConnections: ReplyTimeout ends a silent
// connection lent from the pool as it does the shared one: a pipeline too
// large for the shared connection, a read on a Tx, a Stream, each made
// with no deadline, fail instead of waiting for ever.
func TestReplyTimeoutOnDedicatedConnections(t *testing.T) {
	t.Parallel()
	const rt = 500 * time.Millisecond
	opt := Options{ReplyTimeout: rt, MaxRetries: -1, PoolSize: 1}
	bg := context.Background()
	largeBatch := func(c *Client) *Pipeline {
		p := c.Pipeline(NoTransaction)
		val := strings.Repeat("v", 300)
		for i := range 1000 {
			p.Set("large:"+strconv.Itoa(i), val)
		}
		return p
	}

	t.Run("large pipeline", func(t *testing.T) {
		c, px, _ := proxiedClient(t, opt)
		// The pool's connection is dialed before the stall.
		if _, err := largeBatch(c).Exec(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		p := largeBatch(c)
		if p.w.err != nil || len(p.w.buf) <= largePipeline {
			t.Fatalf("the batch of %d bytes does not need a dedicated connection", len(p.w.buf))
		}
		px.Stall(redistest.ServerToClient, true)
		took, err := stalledCall(t, c, func() error { _, err := p.Exec(bg); return err })
		expectStallError(t, took, err, rt)
	})

	t.Run("tx read", func(t *testing.T) {
		c, px, _ := proxiedClient(t, opt)
		tx, err := c.Watch(ctxT(t), "k")
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		px.Stall(redistest.ServerToClient, true)
		took, err := stalledCall(t, c, func() error { _, err := tx.Get(bg, "k"); return err })
		expectStallError(t, took, err, rt)
	})

	t.Run("stream", func(t *testing.T) {
		c, px, _ := proxiedClient(t, opt)
		if _, err := c.Stream(ctxT(t), nil).Set("s", 1).Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		px.Stall(redistest.ServerToClient, true)
		took, err := stalledCall(t, c, func() error {
			s := c.Stream(bg, nil)
			for i := range 20_000 {
				s.Set("s:"+strconv.Itoa(i), "v")
			}
			_, err := s.Close(bg)
			return err
		})
		expectStallError(t, took, err, rt)
	})
}

// TestReplyTimeoutAllowsBlockingCommands: a blocking command is allowed its
// own timeout on top of ReplyTimeout. With the replies stalled, BLPOP with
// a 1s timeout and ReplyTimeout 1s fails once 2s have passed without a
// byte, not before and not never; on a server that answers, commands that
// block longer than ReplyTimeout, BLPOP 0 included, are not cut.
func TestReplyTimeoutAllowsBlockingCommands(t *testing.T) {
	t.Parallel()
	bg := context.Background()
	t.Run("stalled", func(t *testing.T) {
		c, px, _ := proxiedClient(t, Options{ReplyTimeout: time.Second, MaxRetries: -1, PoolSize: 1})
		// The pool's connection is dialed before the stall.
		if _, err := c.BLPop(ctxT(t), 0.01, "q"); err != nil && !errors.Is(err, ErrNil) {
			t.Fatal(err)
		}
		px.Stall(redistest.ServerToClient, true)
		took, err := stalledCall(t, c, func() error { _, err := c.BLPop(bg, 1, "q"); return err })
		expectStallError(t, took, err, 2*time.Second)
	})

	t.Run("answered", func(t *testing.T) {
		const rt = 300 * time.Millisecond
		c, srv := newTestClient(t, Options{ReplyTimeout: rt, MaxRetries: -1})
		ctx := ctxT(t)
		if _, err := c.BLPop(bg, 1, "empty"); !errors.Is(err, ErrNil) {
			t.Fatalf("BLPOP 1 on an empty list = %v, want ErrNil after its own timeout", err)
		}
		if v, err := c.Do(bg, "XREAD", "BLOCK", 800, "STREAMS", "st", "$"); err != nil || !v.IsNil() {
			t.Fatalf("XREAD BLOCK 800 = %v, %v; want nil after its own timeout", v, err)
		}
		if _, err := c.Pipeline(NoTransaction).Ping().BLPop(0.8, "empty").Exec(bg); err != nil {
			t.Fatalf("a pipeline with BLPOP 0.8: %v", err)
		}
		got := make(chan error, 1)
		go func() {
			kv, err := c.BLPop(bg, 0, "later")
			if err == nil && (len(kv) != 2 || kv[1].String() != "pushed") {
				err = errors.New("BLPOP 0 got " + NewValue(kv).String())
			}
			got <- err
		}()
		// Once it is blocked on the server, it stays so for four times
		// ReplyTimeout without being cut.
		waitBlockedIn(t, ctx, srv, "blpop", "")
		select {
		case err := <-got:
			t.Fatalf("BLPOP 0 returned before anything was pushed: %v", err)
		case <-time.After(4 * rt):
		}
		if _, err := c.RPush(ctx, "later", "pushed"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("BLPOP 0: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("BLPOP 0 was still waiting 15s after the push")
		}
	})
}

// TestReplyTimeoutEndsSlowCommand: ReplyTimeout cannot tell a live server
// busy with a slow command from a stalled one, as its documentation says.
// DEBUG SLEEP 0.3 under ReplyTimeout 100ms fails with the stall guard's
// error and an unknown outcome, and once the server is done the next call
// works on a new connection; under ReplyTimeout 2s, the same command succeeds.
func TestReplyTimeoutEndsSlowCommand(t *testing.T) {
	bg := context.Background()
	t.Run("shorter than the command", func(t *testing.T) {
		c, srv := newTestClient(t, Options{ReplyTimeout: 100 * time.Millisecond, MaxRetries: -1})
		ctx := ctxT(t)
		took, err := stalledCall(t, c, func() error { _, err := c.Do(bg, "DEBUG", "SLEEP", "0.3"); return err })
		expectStallError(t, took, err, 100*time.Millisecond)
		if o := OutcomeOf(err); o != OutcomeUnknown {
			t.Errorf("outcome of the slow command = %v, want %v", o, OutcomeUnknown)
		}
		// The server answers others once it has slept: a dial before
		// then would be taken for a stall as well.
		if _, err := srv.Do("PING"); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Do(ctx, "ECHO", "next"); err != nil || v.String() != "next" {
			t.Fatalf("the next call = %q, %v", v.String(), err)
		}
	})
	t.Run("longer than the command", func(t *testing.T) {
		c, _ := newTestClient(t, Options{ReplyTimeout: 2 * time.Second, MaxRetries: -1})
		if v, err := c.Do(ctxT(t), "DEBUG", "SLEEP", "0.3"); err != nil || v.String() != "OK" {
			t.Fatalf("DEBUG SLEEP 0.3 under ReplyTimeout 2s = %q, %v", v.String(), err)
		}
	})
}
