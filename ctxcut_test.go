package redpipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// takenWatch is a Dialer whose connections note what they read, read by
// read, and how many reads began, so that a test can wait for the client
// to have taken in the replies it expects, not only read their bytes:
// the reader takes in what a read brought before it reads again.
type takenWatch struct {
	mu    sync.Mutex
	conns []*takenConn
}

type takenConn struct {
	net.Conn
	w       *takenWatch
	log     []byte
	ends    []int // where the log ended after each read
	entered int   // reads begun
	mark    int   // where the log was at the watch's last mark
}

func (w *takenWatch) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &takenConn{Conn: nc, w: w}
	w.mu.Lock()
	w.conns = append(w.conns, c)
	w.mu.Unlock()
	return c, nil
}

func (c *takenConn) Read(p []byte) (int, error) {
	c.w.mu.Lock()
	c.entered++
	c.w.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.w.mu.Lock()
	c.log = append(c.log, p[:n]...)
	c.ends = append(c.ends, len(c.log))
	c.w.mu.Unlock()
	return n, err
}

// mark makes awaitTaken count from what was read until now.
func (w *takenWatch) mark() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.conns {
		c.mark = len(c.log)
	}
}

// awaitTaken waits until one connection has read s want times since the
// mark, and has begun a read after the one that brought the last of them.
func (w *takenWatch) awaitTaken(t *testing.T, ctx context.Context, s string, want int) {
	t.Helper()
	waitForServer(t, ctx, fmt.Sprintf("%d replies %q taken in", want, s), func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		best := 0
		for _, c := range w.conns {
			for i, e := range c.ends {
				if e <= c.mark {
					continue
				}
				n := bytes.Count(c.log[c.mark:e], []byte(s))
				best = max(best, n)
				if n >= want {
					if c.entered > i+1 {
						return true, ""
					}
					break
				}
			}
		}
		return false, fmt.Sprintf("%d read", best)
	})
}

// checkCtxCutErr checks the error of a batch whose context was cancelled
// after the replies of its first at commands were read: a *CommandError
// for command at, of unknown outcome, that matches context.Canceled.
func checkCtxCutErr(t *testing.T, err error, at int, name string) {
	t.Helper()
	if err == nil {
		t.Fatal("Exec of a pipeline whose context was cancelled returned no error")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Exec error %v does not match context.Canceled", err)
	}
	if o := OutcomeOf(err); o != OutcomeUnknown || SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
		t.Errorf("Exec error %v: outcome %v, SafeToRetry %v; want unknown, not safe", err, o, SafeToRetry(err))
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != at || ce.Command != name {
		t.Errorf("Exec error %v: want a *CommandError for command %d (%s), the first not answered", err, at, name)
	}
	if !strings.Contains(err.Error(), "context ended") {
		t.Errorf("Exec error %q does not say the context ended", err)
	}
}

// checkUnknown checks that replies[from:to] are error replies of unknown
// outcome that match context.Canceled.
func checkUnknown(t *testing.T, replies []Value, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		e := replies[i].Err()
		if e == nil || OutcomeOf(e) != OutcomeUnknown || SafeToRetry(e) || !errors.Is(e, context.Canceled) {
			t.Errorf("reply %d, sent and not answered = %q, %v: want an error of unknown outcome matching context.Canceled", i, replies[i].String(), e)
		}
	}
}

// cancelBehindBLPOP queues on p five SETs of key(0) to key(4), a BLPOP
// that blocks, and five SETs of key(6) to key(10); runs it, cancels its
// context once the client has taken the five OKs, and checks what Exec
// returns: a reply per command, the first five as read, the rest of
// unknown outcome, with an error naming the BLPOP.
func cancelBehindBLPOP(t *testing.T, ctx context.Context, srv *redistest.Server, w *takenWatch, p *Pipeline, key func(int) string) execResult {
	t.Helper()
	for i := 0; i < 5; i++ {
		p.Set(key(i), "v")
	}
	p.Do("BLPOP", "ctxcut:list", "0")
	for i := 6; i < 11; i++ {
		p.Set(key(i), "v")
	}
	w.mark()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := execAsync(cctx, p)
	waitBlockedIn(t, ctx, srv, "blpop", "")
	w.awaitTaken(t, ctx, "+OK\r\n", 5)
	cancel()
	r := awaitExec(t, ctx, done, "its context was cancelled")
	t.Logf("Exec error: %v", r.err)

	checkCtxCutErr(t, r.err, 5, "BLPOP")
	if len(r.replies) != 11 {
		t.Fatalf("Exec returned %d replies for 11 commands (error %v); want every one, the first 5 as read", len(r.replies), r.err)
	}
	checkUnknown(t, r.replies, 5, 11)
	return r
}

// waitBLPOPGone waits until no client of srv is blocked in BLPOP: the
// connection that ran it was closed.
func waitBLPOPGone(t *testing.T, ctx context.Context, srv *redistest.Server) {
	t.Helper()
	waitForServer(t, ctx, "the blocked client gone", func() (bool, string) {
		for _, cl := range serverClients(t, srv) {
			if cl["cmd"] == "blpop" {
				return false, "still there"
			}
		}
		return true, ""
	})
}

// TestPipelineCancelledKeepsRepliesRead: a plain pipeline whose context
// is cancelled while a BLPOP holds it halfway, once the replies of the
// SETs before it were read, keeps those replies, which ran, and gives the
// BLPOP and the SETs after it, sent and not answered, error replies of
// unknown outcome. The Exec error matches context.Canceled and says so,
// for the BLPOP. The server holds exactly the keys of the SETs answered:
// the connection, of the pipeline alone, was closed. Before, Exec
// returned no reply, only the context's error.
func TestPipelineCancelledKeepsRepliesRead(t *testing.T) {
	w := &takenWatch{}
	c, srv := newTestClient(t, Options{Dialer: w.dial, MaxRetries: -1})
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("ctxcut:%d", i) }

	p := c.Pipeline(NoTransaction)
	r := cancelBehindBLPOP(t, ctx, srv, w, p, key)
	// The connection was closed: the block is over, and nothing after
	// it ran.
	waitBLPOPGone(t, ctx, srv)
	checkRan(t, srv, r.replies, 5, key)
	if err := c.Set(ctx, "after", "v"); err != nil {
		t.Fatalf("SET after the cancelled pipeline: %v", err)
	}
}

// TestLargePipelineCancelledTellsUnsent: a pipeline too large for the
// shared connection, whose context is cancelled while a BLPOP holds it
// and the network (a Proxy that passes its first MiB) holds the rest of
// its write, keeps the replies of the SETs before the BLPOP. The
// commands the socket took are of unknown outcome; those it never took
// say they were not sent, and are safe to send again: the connection,
// of the pipeline alone, is closed, and they never will be. The server
// holds exactly the keys of the SETs answered.
func TestLargePipelineCancelledTellsUnsent(t *testing.T) {
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	w := &takenWatch{}
	c, err := NewClient(Options{Addr: px.Addr, Dialer: w.dial, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("ctxcut:%d", i) }

	const n = 262
	big := strings.Repeat("x", 256<<10) // n of them are far more than the sockets hold
	p := c.Pipeline(NoTransaction)
	for i := 0; i < 5; i++ {
		p.Set(key(i), "v")
	}
	p.Do("BLPOP", "ctxcut:list", "0")
	for i := 6; i < n; i++ {
		p.Set(key(i), big)
	}
	px.PassBytes(1<<20, redistest.ClientToServer)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := execAsync(cctx, p)
	waitBlockedIn(t, ctx, srv, "blpop", "")
	w.awaitTaken(t, ctx, "+OK\r\n", 5)
	cancel()
	r := awaitExec(t, ctx, done, "its context was cancelled")
	t.Logf("Exec error: %v", r.err)

	checkCtxCutErr(t, r.err, 5, "BLPOP")
	if !strings.Contains(fmt.Sprint(r.err), "were not sent") {
		t.Errorf("Exec error %q does not say which commands were not sent", r.err)
	}
	if len(r.replies) != n {
		t.Fatalf("Exec returned %d replies for %d commands (error %v); want every one, the first 5 as read", len(r.replies), n, r.err)
	}
	checkCutInOrder(t, r.replies, 5, func(i int, e error, _ bool) {
		if !errors.Is(e, context.Canceled) {
			t.Fatalf("reply %d, not answered = %v: want an error matching context.Canceled", i, e)
		}
	})
	// The Proxy, holding what it took, keeps its side open: closed, it
	// ends the server's connection too.
	px.Cut(redistest.CutFIN)
	waitBLPOPGone(t, ctx, srv)
	checkRan(t, srv, r.replies, 5, key)
}

// TestSharedPipelineCancelledKeepsRepliesRead: a small plain pipeline,
// on the connection the client's callers share, whose context is
// cancelled once the replies of its first 3 SETs were read (a Proxy
// passes those, then holds the rest back) keeps those 3 replies; the
// SETs after them, sent, are of unknown outcome (the server did run
// them). The connection lives on: once the replies held back come, the
// reader drops them, and the next call on it gets its own reply.
func TestSharedPipelineCancelledKeepsRepliesRead(t *testing.T) {
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	w := &takenWatch{}
	c, err := NewClient(Options{Addr: px.Addr, Dialer: w.dial, MaxRetries: -1, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("ctxcut:%d", i) }
	if err := c.Set(ctx, "other", "o"); err != nil { // the shared connection, set up
		t.Fatal(err)
	}
	w.mark()
	px.PassBytes(int64(3*len("+OK\r\n")), redistest.ServerToClient)

	p := c.Pipeline(NoTransaction)
	for i := 0; i < 7; i++ {
		p.Set(key(i), "v")
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := execAsync(cctx, p)
	w.awaitTaken(t, ctx, "+OK\r\n", 3)
	cancel()
	r := awaitExec(t, ctx, done, "its context was cancelled")
	t.Logf("Exec error: %v", r.err)

	checkCtxCutErr(t, r.err, 3, "SET")
	if len(r.replies) != 7 {
		t.Fatalf("Exec returned %d replies for 7 commands (error %v); want every one, the first 3 as read", len(r.replies), r.err)
	}
	for i := 0; i < 3; i++ {
		if e := r.replies[i].Err(); e != nil || r.replies[i].String() != "OK" {
			t.Errorf("reply %d, of a SET answered before the cancel = %q, %v; want OK", i, r.replies[i].String(), e)
		}
	}
	checkUnknown(t, r.replies, 3, 7)
	for i := 0; i < 7; i++ {
		if n, _ := srv.MustDo(t, "EXISTS", key(i)).(int64); n != 1 {
			t.Errorf("the key of SET %d is not on the server, which ran every SET", i)
		}
	}

	px.Reset()
	if v, err := c.Get(ctx, "other"); err != nil || v != "o" {
		t.Errorf("GET after the cancelled pipeline = %q, %v; want \"o\": a late reply reached the wrong call", v, err)
	}
}

// TestTxPipelineCancelledKeepsRepliesRead: a plain Pipeline of a Tx
// whose context is cancelled while a BLPOP holds it halfway keeps the
// replies of the SETs before it, which ran, as on the Client.
func TestTxPipelineCancelledKeepsRepliesRead(t *testing.T) {
	w := &takenWatch{}
	c, srv := newTestClient(t, Options{Dialer: w.dial, MaxRetries: -1})
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("ctxcut:%d", i) }
	tx, err := c.Watch(ctx, "ctxcut:watched")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	p := tx.Pipeline(NoTransaction)
	r := cancelBehindBLPOP(t, ctx, srv, w, p, key)
	waitBLPOPGone(t, ctx, srv)
	checkRan(t, srv, r.replies, 5, key)
}

// testClusterPipelinePartCancelled: a cluster pipeline whose context is
// cancelled while a BLPOP holds its part on one master, once that master
// answered the part's first commands and the other masters their parts,
// returns a reply per command: those read, from every master, in their
// places, and for the BLPOP and the command behind it, an error reply of
// unknown outcome that matches context.Canceled, as does Exec's error.
// The held master holds what its replies say ran, and not what the BLPOP
// held back. Before, Exec returned no reply, only the context's error.
func testClusterPipelinePartCancelled(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	w := &takenWatch{}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{Dialer: w.dial, MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() {
		for _, m := range cl.Masters {
			m.MustDo(t, "FLUSHALL")
		}
	}()
	// Masters[i] serves the i-th third of the slots.
	a := keyIn(100, "ctxcut:a")
	b, b2, b3, list := keyIn(6000, "ctxcut:b"), keyIn(6001, "ctxcut:b"), keyIn(6002, "ctxcut:b"), keyIn(6003, "ctxcut:l")
	k := keyIn(12000, "ctxcut:c")
	held := cl.Masters[1]
	held.MustDo(t, "SET", b2, "x")
	w.mark()
	p := c.Pipeline(NoTransaction).
		IncrBy(a, 5).           // 0: Masters[0]
		Get(b2).                // 1: held, answered
		Set(b, "1").            // 2: held, answered
		Do("BLPOP", list, "0"). // 3: held, blocks
		Set(b3, "1").           // 4: held, behind the BLPOP
		IncrBy(k, 7)            // 5: Masters[2]
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := execAsync(cctx, p)
	waitBlockedIn(t, ctx, held, "blpop", "")
	w.awaitTaken(t, ctx, ":5\r\n", 1)
	w.awaitTaken(t, ctx, "$1\r\nx\r\n+OK\r\n", 1)
	w.awaitTaken(t, ctx, ":7\r\n", 1)
	cancel()
	r := awaitExec(t, ctx, done, "its context was cancelled")
	t.Logf("Exec error: %v", r.err)

	if r.err == nil || !errors.Is(r.err, context.Canceled) || OutcomeOf(r.err) != OutcomeUnknown || SafeToRetry(r.err) {
		t.Fatalf("Exec error %v (%v): want one of unknown outcome matching context.Canceled", r.err, OutcomeOf(r.err))
	}
	if len(r.replies) != 6 {
		t.Fatalf("Exec returned %d replies for 6 commands (error %v); want every one", len(r.replies), r.err)
	}
	for i, want := range map[int]string{0: "5", 1: "x", 2: "OK", 5: "7"} {
		if got, e := r.replies[i].String(), r.replies[i].Err(); got != want || e != nil {
			t.Errorf("reply %d, read before the cancel = %q, %v; want %s", i, got, e, want)
		}
	}
	checkUnknown(t, r.replies, 3, 5)
	waitForServer(t, ctx, "the blocked client gone", func() (bool, string) {
		for _, cl := range serverClients(t, held) {
			if cl["cmd"] == "blpop" {
				return false, "still there"
			}
		}
		return true, ""
	})
	for _, kv := range []struct {
		key  string
		want int64
	}{{b, 1}, {b3, 0}} {
		if n, _ := held.MustDo(t, "EXISTS", kv.key).(int64); n != kv.want {
			t.Errorf("EXISTS %s on the held master = %d; want %d", kv.key, n, kv.want)
		}
	}
}

// testClusterPipelinePartCancelledBeforeReply: a cluster pipeline whose
// context is cancelled while a BLPOP holds its part on one master, and
// the network (a Proxy in front of that master that passes the part's
// first MiB) holds the rest of the part's write, on the connection the
// part has of its own. The commands of the part that the socket took are
// of unknown outcome; those it never took say they were not sent, and
// that the context ended before they were written, as on one node; all
// of them match context.Canceled. The other master's command has its
// reply.
func testClusterPipelinePartCancelledBeforeReply(t *testing.T, cl *redistest.Cluster) {
	const n = heldPartLen
	ctx := clusterCtx(t)
	held := cl.Masters[1]
	px, p, _ := heldPartPipeline(t, cl, "ctxcut0")
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := execAsync(cctx, p)
	waitBlockedIn(t, ctx, held, "blpop", "")
	cancel()
	r := awaitExec(t, ctx, done, "its context was cancelled")
	t.Logf("Exec error: %v", r.err)

	if r.err == nil || !errors.Is(r.err, context.Canceled) || OutcomeOf(r.err) != OutcomeUnknown || SafeToRetry(r.err) {
		t.Fatalf("Exec error %v (%v): want one of unknown outcome matching context.Canceled", r.err, OutcomeOf(r.err))
	}
	if len(r.replies) != n {
		t.Fatalf("Exec returned %d replies for %d commands (error %v); want every one", len(r.replies), n, r.err)
	}
	if got, e := r.replies[0].String(), r.replies[0].Err(); got != "OK" || e != nil {
		t.Errorf("reply 0, of another master = %q, %v; want OK", got, e)
	}
	checkCutInOrder(t, r.replies, 1, func(i int, e error, notSent bool) {
		if !errors.Is(e, context.Canceled) {
			t.Fatalf("reply %d, not answered = %v: want an error matching context.Canceled", i, e)
		}
		if notSent && (strings.Contains(e.Error(), "connection failed") || !strings.Contains(e.Error(), "context ended")) {
			t.Fatalf("reply %d, not sent = %q: want it to say that the context ended, not that the connection failed", i, e)
		}
	})
	px.Cut(redistest.CutFIN)
}
