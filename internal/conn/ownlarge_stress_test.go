//go:build unix

package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

// markedBatch is a batch that first increments key, then echoes tag and
// the index of each command after it; pad lengthens every echo, so that
// the batch may be larger than the socket takes at once.
func markedBatch(key, tag string, n int, pad string) []byte {
	b := encode("INCR", key)
	for j := 1; j < n; j++ {
		b = append(b, encode("ECHO", fmt.Sprint(tag, j, pad))...)
	}
	return b
}

// checkMarked reports what is wrong with the replies of a markedBatch
// that succeeded, if anything: a reply that went to the wrong call shows
// as another call's echo, and one that ran twice as an INCR past 1.
func checkMarked(replies []resp.Value, tag string, n int, pad string) error {
	if len(replies) != n {
		return fmt.Errorf("%d replies, want %d", len(replies), n)
	}
	if replies[0].Kind != resp.Integer || replies[0].Int != 1 {
		return fmt.Errorf("INCR = %v %d %q, want 1", replies[0].Kind, replies[0].Int, replies[0].Str)
	}
	for j := 1; j < n; j++ {
		if want := fmt.Sprint(tag, j, pad); replies[j].Str != want {
			return fmt.Errorf("reply %d = %.40q, want %.40q", j, replies[j].Str, want)
		}
	}
	return nil
}

// TestLargeBatchOutcomesUnderFailures: callers sending large batches that
// they read themselves, batches larger than the socket takes at once,
// small calls and batches started and waited for later, with contexts
// that end at any point, on a shared connection to a real server that is
// now and then closed by its owner or cut by the server (CLIENT KILL) at
// any point of a batch, and replaced. Every call that succeeds got its own
// replies, each command run once; every call that fails as unsent (a
// "not sent" error, or a connection error with Unsent) ran none of its
// commands; no call hangs; a connection that survives still answers in
// order. Bounded in time.
func TestLargeBatchOutcomesUnderFailures(t *testing.T) {
	srv := redistest.Start(t)
	opt := Options{Poll: 200 * time.Microsecond, StallTimeout: 10 * time.Second}

	var mu sync.Mutex
	var cur *Conn
	var curID int64
	var all []*Conn
	defer func() {
		for _, c := range all {
			c.Close()
		}
	}()
	// shared returns the connection in use, replacing it when it failed.
	shared := func() (*Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if cur != nil && cur.Alive() {
			return cur, nil
		}
		nc, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			return nil, err
		}
		c := New(nc, opt)
		all = append(all, c)
		v, err := c.DoOne(context.Background(), encode("CLIENT", "ID"))
		if err != nil {
			return nil, err
		}
		cur, curID = c, v.Int
		return c, nil
	}

	end := time.Now().Add(1500 * time.Millisecond)
	stop := make(chan struct{})
	var unsentMu sync.Mutex
	var unsent []string       // keys of calls that failed as unsent
	var stats [4]atomic.Int64 // succeeded, unsent, unknown outcome, contexts
	var wg sync.WaitGroup
	const goroutines = 6
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 7))
			big := strings.Repeat("p", 200)
			for i := 0; time.Now().Before(end); i++ {
				c, err := shared()
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if rnd.IntN(3) == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rnd.IntN(2000))*time.Microsecond)
				}
				key, tag := fmt.Sprintf("k/%d/%d", g, i), fmt.Sprintf("%d/%d/", g, i)
				var replies []resp.Value
				n, pad := 1, ""
				switch k := rnd.IntN(8); {
				case k < 4: // large enough to be written directly, read by its caller when alone
					n = 800 + rnd.IntN(2000)
					replies, _, err = c.DoN(ctx, markedBatch(key, tag, n, pad), n)
				case k == 4: // larger than the socket takes at once
					n, pad = 2000+rnd.IntN(2000), big
					replies, _, err = c.DoN(ctx, markedBatch(key, tag, n, pad), n)
				case k == 5:
					n = 800 + rnd.IntN(1000)
					replies = make([]resp.Value, n)
					var p Pending
					if p, err = c.Start(ctx, markedBatch(key, tag, n, pad), replies); err == nil {
						err = p.Wait(ctx)
					}
				default:
					var v resp.Value
					v, err = c.DoOne(ctx, encode("INCR", key))
					replies = []resp.Value{v}
				}
				cancel()
				var ce *Error
				switch {
				case err == nil:
					if bad := checkMarked(replies, tag, n, pad); bad != nil {
						t.Errorf("call %s: %v", tag, bad)
						return
					}
					stats[0].Add(1)
				case errors.As(err, &ce) && ce.Unsent:
					unsentMu.Lock()
					unsent = append(unsent, key)
					unsentMu.Unlock()
					stats[1].Add(1)
				case errors.As(err, &ce):
					stats[2].Add(1)
				case errors.Is(err, context.DeadlineExceeded):
					stats[3].Add(1)
				default:
					t.Errorf("call %s: %v (%T)", tag, err, err)
					return
				}
			}
		}()
	}
	// The disruptor closes the connection or has the server cut it, at
	// random points of whatever is under way.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rnd := rand.New(rand.NewPCG(99, 7))
		// It stops a while before the callers, so that they see its last
		// cut, and the connection they leave is the one checked below.
		for time.Now().Before(end.Add(-200 * time.Millisecond)) {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(5+rnd.IntN(40)) * time.Millisecond):
			}
			mu.Lock()
			c, id := cur, curID
			mu.Unlock()
			if c == nil {
				continue
			}
			if rnd.IntN(2) == 0 {
				c.Close()
			} else {
				srv.Do("CLIENT", "KILL", "ID", fmt.Sprint(id))
			}
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		close(stop)
		buf := make([]byte, 1<<20)
		t.Fatalf("calls still under way after 60s:\n%s", buf[:runtime.Stack(buf, true)])
	}
	for _, key := range unsent {
		if v, err := srv.Do("EXISTS", key); err != nil || v != int64(0) {
			t.Errorf("a call on %s failed as unsent, but the key exists: %v, %v", key, v, err)
		}
	}
	for _, c := range all {
		if !c.Alive() {
			continue
		}
		if v, err := c.DoOne(context.Background(), encode("ECHO", "last")); err != nil || v.Str != "last" {
			var ce *Error
			t.Errorf("last call on a live connection = %q, %v (unsent: %v)", v.Str, err, errors.As(err, &ce) && ce.Unsent)
		}
	}
	t.Logf("%d connections; calls: %d succeeded, %d unsent, %d of unknown outcome, %d left for their contexts",
		len(all), stats[0].Load(), stats[1].Load(), stats[2].Load(), stats[3].Load())
}

// TestLargeBatchesAmongPushes: on a RESP3 connection with client tracking
// and no push handler, invalidations come at any point of the stream:
// between replies of a large batch its caller reads itself, of one the
// reader goroutine reads, and while no call is in line. Each is dropped
// in stream order and every call gets its own replies. Bounded in time.
func TestLargeBatchesAmongPushes(t *testing.T) {
	c, srv := dialReal(t, Options{Poll: 200 * time.Microsecond})
	ctx := context.Background()
	if v, err := c.DoOne(ctx, encode("HELLO", "3")); err != nil || v.Kind != resp.Map {
		t.Fatalf("HELLO 3 = %v, %v", v.Kind, err)
	}
	if v, err := c.DoOne(ctx, encode("CLIENT", "TRACKING", "ON")); err != nil || v.Str != "OK" {
		t.Fatalf("CLIENT TRACKING ON = %q, %v", v.Str, err)
	}
	const keys = 50
	end := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // invalidates the keys the connection read
		defer wg.Done()
		for i := 0; time.Now().Before(end); i++ {
			if _, err := srv.Do("SET", fmt.Sprint("t/", i%keys), fmt.Sprint(i)); err != nil {
				t.Errorf("SET: %v", err)
				return
			}
		}
	}()
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 3))
			for i := 0; time.Now().Before(end); i++ {
				tag := fmt.Sprintf("%d/%d/", g, i)
				n := 1
				if rnd.IntN(3) > 0 {
					n = 600 + rnd.IntN(1500)
				}
				var b []byte
				for j := range n {
					if j%2 == 0 {
						b = append(b, encode("GET", fmt.Sprint("t/", rnd.IntN(keys)))...)
					} else {
						b = append(b, encode("ECHO", fmt.Sprint(tag, j))...)
					}
				}
				replies, _, err := c.DoN(ctx, b, n)
				if err != nil {
					t.Errorf("batch %s: %v", tag, err)
					return
				}
				for j, v := range replies {
					if j%2 == 0 && v.Kind != resp.BulkString && v.Kind != resp.Null ||
						j%2 == 1 && v.Str != fmt.Sprint(tag, j) {
						t.Errorf("reply %d of %s = %v %.40q", j, tag, v.Kind, v.Str)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if !c.Alive() {
		t.Fatalf("connection ended: %v", c.Err())
	}
	t.Logf("callers read %d values themselves", c.ownReads)
}

// TestOwnLargeBatchSlowRepliesWithinStallLimit: the replies of a large
// batch its caller reads itself come in chunks, each well within the
// stall limit of the last, over several times that limit: the limit
// counts from the last byte, whether the caller sleeps for its replies,
// polls for them, or polls for its last ones only; the connection
// survives and the next call gets its own reply. (A fake server: a real
// one cannot be made to pause between replies of one batch.) Each pause is
// a small share of the limit, so that a loaded machine, which may hold the
// fake server back a while, does not stretch one past it; their sum is
// over the limit however late the replies come.
func TestOwnLargeBatchSlowRepliesWithinStallLimit(t *testing.T) {
	const n, chunks = 1000, 20
	const stall = time.Second
	const pause = stall / 16 // 20 of them: 1.25 times the limit in all
	for _, poll := range []time.Duration{time.Hour, 10 * time.Microsecond} {
		t.Run(fmt.Sprint("poll=", poll), func(t *testing.T) {
			nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
				readCommand(r)
				io.WriteString(w, "+first\r\n")
				for i := range n {
					if _, err := readCommand(r); err != nil {
						return
					}
					if i%(n/chunks) == 0 {
						time.Sleep(pause)
					}
					io.WriteString(w, ":1\r\n")
				}
				readCommand(r)
				io.WriteString(w, "+last\r\n")
				drain(r)
			})
			c := New(nc, Options{Poll: poll, StallTimeout: stall})
			defer c.Close()
			ctx := context.Background()
			if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "first" {
				t.Fatalf("first call = %q, %v", v.Str, err)
			}
			var batch []byte
			for range n {
				batch = append(batch, encode("INCR", "counter:abc")...)
			}
			if len(batch) < inlineMax {
				t.Fatalf("a batch of %d bytes is written inline, not directly", len(batch))
			}
			if _, _, err := c.DoN(ctx, batch, n); err != nil {
				t.Fatalf("batch whose replies never pause for the stall limit: %v", err)
			}
			if c.ownReads != n+1 {
				t.Fatalf("callers read %d of %d replies themselves", c.ownReads, n+1)
			}
			if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "last" {
				t.Fatalf("last call = %q, %v", v.Str, err)
			}
		})
	}
}

// TestOwnLargeBatchPushLargerThanBuffer: a push message larger than the
// read buffer comes in the middle of the replies of a large batch its
// caller reads itself, on a connection with no push handler: the caller
// hands the read role to the reader goroutine, which drops the push, and
// every reply still reaches its own command, as do those of the next
// batch. (A fake server: a real one sends pushes when it will.)
func TestOwnLargeBatchPushLargerThanBuffer(t *testing.T) {
	const n = 1000
	push := fmt.Sprintf(">2\r\n+invalidate\r\n*1\r\n$%d\r\n%s\r\n", 64<<10, strings.Repeat("k", 64<<10))
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		readCommand(r)
		io.WriteString(w, "+first\r\n")
		for range 2 {
			var out strings.Builder
			for i := range n {
				cmd, err := readCommand(r)
				if err != nil {
					return
				}
				if i == n/2 {
					out.WriteString(push)
				}
				fmt.Fprintf(&out, "+%s\r\n", cmd[1])
			}
			io.WriteString(w, out.String())
		}
		drain(r)
	})
	c := New(nc, Options{Poll: time.Millisecond, ReadBuffer: 4 << 10})
	defer c.Close()
	ctx := context.Background()
	if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "first" {
		t.Fatalf("first call = %q, %v", v.Str, err)
	}
	for b := range 2 {
		tag := fmt.Sprint(b, "/")
		replies, _, err := c.DoN(ctx, ownBatch(t, tag, n), n)
		if err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		for i, v := range replies {
			if v.Str != fmt.Sprint(tag, i) {
				t.Fatalf("reply %d of batch %d = %.20q", i, b, v.Str)
			}
		}
	}
	if c.ownReads == 0 {
		t.Fatal("the caller read none of its replies itself")
	}
}

// TestOwnLargeBatchClosedWhileUnderWay: Close while a lone caller's large
// batch is read by its caller, and while the caller still writes the part
// the socket did not take at once. The batch fails with ErrClosed, not as
// unsent (some of it was written); a call queued behind the write, none
// of whose bytes were, fails as unsent; Close returns with the reader and
// writer stopped. (Fake servers: one that never answers, one that reads
// nothing.)
func TestOwnLargeBatchClosedWhileUnderWay(t *testing.T) {
	check := func(t *testing.T, what string, err error, unsent bool) {
		t.Helper()
		var ce *Error
		if !errors.Is(err, ErrClosed) || !errors.As(err, &ce) || ce.Unsent != unsent {
			t.Errorf("%s = %v; want ErrClosed with Unsent %v", what, err, unsent)
		}
	}
	t.Run("read", func(t *testing.T) {
		nc := fakeServer(t, func(r *resp.Reader, w io.Writer) { drain(r) })
		c := New(nc, Options{Poll: time.Millisecond})
		res := make(chan error, 1)
		go func() {
			_, _, err := c.DoN(context.Background(), ownBatch(t, "x", 1000), 1000)
			res <- err
		}()
		waitFor(t, "the caller to write its batch and read for it", func() (bool, string) {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.written > 0 && len(c.readTurn) == 0 && c.reading, fmt.Sprintf("%d bytes written", c.written)
		})
		c.Close()
		select {
		case err := <-res:
			check(t, "batch", err, false)
		case <-time.After(10 * time.Second):
			t.Fatal("the batch did not end with the connection")
		}
	})
	t.Run("write", func(t *testing.T) {
		nc, release, _ := dialHeld(t)
		defer close(release) // lets the server end at once
		c := New(nc, Options{MaxPending: 64 << 20, Poll: time.Millisecond})
		res := make(chan error, 1)
		go func() { _, err := c.DoOne(context.Background(), bigSet()); res <- err }()
		// The write role is taken before any byte goes out: a Close in
		// between rightly fails the batch as unsent. Wait for the part
		// the socket took.
		waitFor(t, "the socket to take part of the batch", func() (bool, string) {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.writing && c.written > 0, fmt.Sprintf("writing %v, %d bytes written", c.writing, c.written)
		})
		behind, err := c.Start(context.Background(), encode("ECHO", "behind"), make([]resp.Value, 1))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		select {
		case err := <-res:
			check(t, "batch", err, false)
		case <-time.After(10 * time.Second):
			t.Fatal("the write did not end with the connection")
		}
		check(t, "call behind", behind.Wait(context.Background()), true)
	})
}
