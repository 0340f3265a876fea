package redpipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// heldLen is the length of the pipelines that queueHeld makes.
const heldLen = 262

// queueHeld queues on p pre SETs of key(0) to key(pre-1), a BLPOP of
// list that blocks, and then SETs of key(pre+1) to key(n-1), each of 256
// KiB. With n heldLen, far more than the sockets hold: behind a Proxy
// passing the client's first MiB, the client is still writing them when
// the BLPOP blocks.
func queueHeld(p *Pipeline, pre, n int, list string, key func(int) string) {
	for i := 0; i < pre; i++ {
		p.Set(key(i), "v")
	}
	p.Do("BLPOP", list, "0")
	big := strings.Repeat("x", 256<<10)
	for i := pre + 1; i < n; i++ {
		p.Set(key(i), big)
	}
}

// checkHeldCut checks what Exec returned for a pipeline of queueHeld, of
// n commands, cut (by the network, or by its context if ended) while its
// BLPOP blocked: one reply per command, the pre SETs as read, the BLPOP
// and the commands behind it that the socket took of unknown outcome,
// the rest not sent, and Exec's error for the BLPOP, which says which
// were not sent. srv, once the BLPOP's connection is gone (px, if not
// nil, is cut for that), holds the keys of the pre SETs, and none of
// those said not sent.
func checkHeldCut(t *testing.T, ctx context.Context, srv *redistest.Server, px *redistest.Proxy, r execResult, pre, n int, ended bool, key func(int) string) {
	t.Helper()
	if ended {
		checkCtxCutErr(t, r.err, pre, "BLPOP")
	} else {
		checkCutErr(t, r.err, pre, "BLPOP")
	}
	if !strings.Contains(fmt.Sprint(r.err), "were not sent") {
		t.Errorf("Exec error %q does not say which commands were not sent", r.err)
	}
	if len(r.replies) != n {
		t.Fatalf("Exec returned %d replies for %d commands (error %v); want every one", len(r.replies), n, r.err)
	}
	if e := r.replies[pre].Err(); e == nil || OutcomeOf(e) != OutcomeUnknown {
		t.Errorf("reply %d, the BLPOP the server took = %v (%v); want unknown outcome", pre, e, OutcomeOf(e))
	}
	var unsent []int
	checkCutInOrder(t, r.replies, pre, func(i int, e error, notSent bool) {
		if ended {
			if !errors.Is(e, context.Canceled) {
				t.Fatalf("reply %d, not answered = %v: want an error matching context.Canceled", i, e)
			}
			if notSent && !strings.Contains(e.Error(), "context ended") {
				t.Fatalf("reply %d, not sent = %q: want it to say that the context ended", i, e)
			}
		}
		var connErr *ConnError
		if !errors.As(e, &connErr) || connErr.Unsent != notSent {
			t.Fatalf("reply %d, not answered = %v: want an error holding the *ConnError, Unsent %v", i, e, notSent)
		}
		if notSent {
			unsent = append(unsent, i)
		}
	})
	if px != nil {
		// The Proxy, holding what it took, keeps its side open after a
		// cancel: closed, it ends the server's connection too.
		px.Cut(redistest.CutFIN)
	}
	waitBLPOPGone(t, ctx, srv)
	checkRan(t, srv, r.replies, pre, key)
	for _, i := range unsent {
		if n, _ := srv.MustDo(t, "EXISTS", key(i)).(int64); n != 0 {
			t.Fatalf("the key of SET %d, said not sent, is on the server", i)
		}
	}
}

// heldClient is a Client of a new server reached through a Proxy that
// passes the client's first MiB on each connection, with no retries.
func heldClient(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*Client, *redistest.Server, *redistest.Proxy) {
	t.Helper()
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	c, err := NewClient(Options{Addr: px.Addr, Dialer: dial, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	px.PassBytes(1<<20, redistest.ClientToServer)
	return c, srv, px
}

// TestLargePipelineCutBeforeReply: a pipeline too large for the shared
// connection, cut by the network (a Proxy that passes its first MiB, then
// closes both sides) while the BLPOP it begins with holds it on the
// server, before any reply came, returns a reply per command, as a
// cluster pipeline's part does: the commands the socket took are of
// unknown outcome, those it never took (the client was still writing)
// say they were not sent, and are safe to send again. Before, Exec
// returned no reply, only the connection's error, of unknown outcome.
func TestLargePipelineCutBeforeReply(t *testing.T) {
	t.Parallel()
	c, srv, px := heldClient(t, nil)
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("cut0:%d", i) }
	p := c.Pipeline(NoTransaction)
	queueHeld(p, 0, heldLen, "cut0:list", key)
	done := execAsync(ctx, p)
	waitBlockedIn(t, ctx, srv, "blpop", "")
	px.Cut(redistest.CutFIN)
	r := awaitExec(t, ctx, done, "its connection was cut")
	t.Logf("Exec error: %v", r.err)
	if !strings.Contains(fmt.Sprint(r.err), "before any of the") {
		t.Errorf("Exec error %q does not say that no command was answered", r.err)
	}
	checkHeldCut(t, ctx, srv, px, r, 0, heldLen, false, key)
}

// TestLargePipelineCancelledBeforeReply: the same pipeline, whose context
// is cancelled while the BLPOP holds it, before any reply came, on the
// connection of its own that is closed then: its commands the socket
// never took say they were not sent, and that the context ended; all of
// them match context.Canceled. Before, Exec returned only the context's
// error.
func TestLargePipelineCancelledBeforeReply(t *testing.T) {
	t.Parallel()
	c, srv, px := heldClient(t, nil)
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("ctxcut0:%d", i) }
	p := c.Pipeline(NoTransaction)
	queueHeld(p, 0, heldLen, "ctxcut0:list", key)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := execAsync(cctx, p)
	waitBlockedIn(t, ctx, srv, "blpop", "")
	cancel()
	r := awaitExec(t, ctx, done, "its context was cancelled")
	t.Logf("Exec error: %v", r.err)
	checkHeldCut(t, ctx, srv, px, r, 0, heldLen, true, key)
}

// TestTxPipelineCutBeforeReply: the plain Pipeline of a Watch session,
// cut by the network while the BLPOP it begins with holds it, before
// any reply came, returns a reply per command as a Client's does.
// Before, Exec returned only the connection's error.
func TestTxPipelineCutBeforeReply(t *testing.T) {
	t.Parallel()
	c, srv, px := heldClient(t, nil)
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("txcut0:%d", i) }
	tx, err := c.Watch(ctx, "txcut0:watched")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	p := tx.Pipeline(NoTransaction)
	queueHeld(p, 0, heldLen, "txcut0:list", key)
	done := execAsync(ctx, p)
	waitBlockedIn(t, ctx, srv, "blpop", "")
	px.Cut(redistest.CutFIN)
	r := awaitExec(t, ctx, done, "its connection was cut")
	t.Logf("Exec error: %v", r.err)
	checkHeldCut(t, ctx, srv, px, r, 0, heldLen, false, key)
}

// stallConn is a connection whose writes, once stall(n) is called, let
// n more bytes through and then block, as behind a network that stopped
// taking them, until the write deadline passes or the connection is
// closed: a stalled socket, which a real server cannot make on demand to
// the byte (on loopback, the kernel's buffers take megabytes).
type stallConn struct {
	net.Conn
	mu       sync.Mutex
	budget   int64 // bytes still let through; -1: no limit
	deadline time.Time
	closed   bool
	changed  chan struct{} // closed and replaced when the fields above change
	blocked  bool          // a write waits for budget
}

func newStallConn(nc net.Conn) *stallConn {
	return &stallConn{Conn: nc, budget: -1, changed: make(chan struct{})}
}

// changedLocked wakes a write that waits; mu is held.
func (c *stallConn) changedLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *stallConn) stall(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.budget = n
	c.changedLocked()
}

func (c *stallConn) isBlocked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blocked
}

func (c *stallConn) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return total, net.ErrClosed
		}
		k := int64(len(p))
		if c.budget >= 0 {
			k = min(k, c.budget)
		}
		if k == 0 {
			dl, changed := c.deadline, c.changed
			c.blocked = true
			c.mu.Unlock()
			var timeout <-chan time.Time
			if !dl.IsZero() {
				d := time.Until(dl)
				if d <= 0 {
					c.mu.Lock()
					c.blocked = false
					c.mu.Unlock()
					return total, os.ErrDeadlineExceeded
				}
				tm := time.NewTimer(d)
				timeout = tm.C
				defer tm.Stop()
			}
			select {
			case <-changed:
			case <-timeout:
			}
			c.mu.Lock()
			c.blocked = false
			c.mu.Unlock()
			continue
		}
		if c.budget >= 0 {
			c.budget -= k
		}
		c.mu.Unlock()
		n, err := c.Conn.Write(p[:k])
		total += n
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

func (c *stallConn) SetDeadline(t time.Time) error {
	c.setWriteDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.setWriteDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *stallConn) setWriteDeadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	c.changedLocked()
}

func (c *stallConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.changedLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}

// TestTxBlockingPipelineCancelledTellsUnsent: the plain Pipeline of a
// Watch session holding a BLPOP, whose context is cancelled while the
// BLPOP holds it on the server and the network (a stalled socket, see
// stallConn) holds the rest of its write, which the client had all
// handed to its writer. The session's connection is closed to end the
// block, so the commands it never wrote never will be: they say they
// were not sent, and that the context ended; the BLPOP and what the
// socket took behind it are of unknown outcome, and the SETs answered
// before it (if any) have their replies. Before, every command not
// answered was of unknown outcome, or, with none answered, Exec returned
// only the context's error.
func TestTxBlockingPipelineCancelledTellsUnsent(t *testing.T) {
	t.Parallel()
	for _, pre := range []int{0, 5} {
		t.Run(fmt.Sprintf("after%d", pre), func(t *testing.T) {
			w := &takenWatch{}
			var mu sync.Mutex
			var conns []*stallConn
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := w.dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				sc := newStallConn(nc)
				mu.Lock()
				conns = append(conns, sc)
				mu.Unlock()
				return sc, nil
			}
			c, srv := newTestClient(t, Options{Dialer: dial, MaxRetries: -1})
			ctx := ctxT(t)
			key := func(i int) string { return fmt.Sprintf("txctxcut:%d", i) }
			tx, err := c.Watch(ctx, "txctxcut:watched")
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			mu.Lock()
			dialed := conns
			mu.Unlock()
			if len(dialed) != 1 {
				t.Fatalf("%d connections dialed for the session; want 1", len(dialed))
			}
			sc := dialed[0]
			// The BLPOP and the start of a SET of 256 KiB get through, not
			// the two after it; the batch, under the writer's part size (1 MiB),
			// is handed to it whole.
			const n = 4
			sc.stall(200 << 10)
			p := tx.Pipeline(NoTransaction)
			queueHeld(p, pre, pre+n, "txctxcut:list", key)
			w.mark()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := execAsync(cctx, p)
			waitBlockedIn(t, ctx, srv, "blpop", "")
			if pre > 0 {
				w.awaitTaken(t, ctx, "+OK\r\n", pre)
			}
			waitForServer(t, ctx, "the session's write stalled", func() (bool, string) { return sc.isBlocked(), "" })
			cancel()
			r := awaitExec(t, ctx, done, "its context was cancelled")
			t.Logf("Exec error: %v", r.err)
			checkHeldCut(t, ctx, srv, nil, r, pre, pre+n, true, key)
		})
	}
}

// TestLargePipelineCutWithRepliesHeld: a pipeline too large for the
// shared connection whose first SETs the server runs while the network
// holds their replies back (a Proxy passing the client's first MiB and
// none of the server's replies), and that is then cut, before any reply
// reached the client. The SETs that ran are among those of unknown
// outcome, and no SET that says it was not sent ran: the labels agree
// with what the server holds.
func TestLargePipelineCutWithRepliesHeld(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	// No PING on the pooled connection before it is lent: the proxy
	// would hold its reply back.
	c, err := NewClient(Options{Addr: px.Addr, MaxRetries: -1, IdleCheckAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("held:%d", i) }
	big := strings.Repeat("x", 256<<10)
	// A first large pipeline leaves its connection in the pool, where the
	// second takes it, with the proxy's limits on it.
	if _, err := c.Pipeline(NoTransaction).Set("held:warm", big).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	srv.MustDo(t, "FLUSHALL")
	const n = 40
	p := c.Pipeline(NoTransaction)
	for i := 0; i < n; i++ {
		p.Set(key(i), big)
	}
	px.PassBytes(0, redistest.ServerToClient)
	px.PassBytes(1<<20, redistest.ClientToServer)
	done := execAsync(ctx, p)
	// The first MiB holds three whole SETs of 256 KiB.
	waitForServer(t, ctx, "the SETs of the first MiB run", func() (bool, string) {
		k, _ := srv.MustDo(t, "DBSIZE").(int64)
		return k == 3, fmt.Sprintf("%d keys", k)
	})
	px.Cut(redistest.CutFIN)
	r := awaitExec(t, ctx, done, "its connection was cut")
	t.Logf("Exec error: %v", r.err)

	checkCutErr(t, r.err, 0, "SET")
	if len(r.replies) != n {
		t.Fatalf("Exec returned %d replies for %d commands (error %v); want every one", len(r.replies), n, r.err)
	}
	checkCutInOrder(t, r.replies, 0, func(i int, e error, notSent bool) {
		ran, _ := srv.MustDo(t, "EXISTS", key(i)).(int64)
		if notSent && ran != 0 {
			t.Fatalf("reply %d says the SET was not sent, but the server holds its key", i)
		}
		if i < 3 && notSent {
			t.Fatalf("reply %d says the SET was not sent, but the server ran it", i)
		}
	})
}
