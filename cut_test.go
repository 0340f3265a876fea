package redpipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// killBlockedClient waits until a client of srv is blocked in BLPOP and
// kills its connection with CLIENT KILL, from another connection.
func killBlockedClient(t *testing.T, ctx context.Context, srv *redistest.Server) {
	t.Helper()
	killBlockedIn(t, ctx, srv, "blpop")
}

// killBlockedIn waits until a client of srv is blocked in cmd (lower
// case, as CLIENT LIST names it) and kills its connection with CLIENT
// KILL, from another connection; it returns the client's id. killed
// are the ids of clients already killed, which it passes over.
func killBlockedIn(t *testing.T, ctx context.Context, srv *redistest.Server, cmd string, killed ...string) string {
	t.Helper()
	var id string
	waitForServer(t, ctx, "a client blocked in "+cmd, func() (bool, string) {
		clients := serverClients(t, srv)
		for _, cl := range clients {
			if cl["cmd"] == cmd && strings.Contains(cl["flags"], "b") && !slices.Contains(killed, cl["id"]) {
				id = cl["id"]
				return true, ""
			}
		}
		return false, fmt.Sprint(clients)
	})
	srv.MustDo(t, "CLIENT", "KILL", "ID", id)
	return id
}

// checkRan checks that replies[:k] are the OK of SETs that ran, and that
// the server holds exactly k keys: theirs.
func checkRan(t *testing.T, srv *redistest.Server, replies []Value, k int, key func(int) string) {
	t.Helper()
	for i := 0; i < k; i++ {
		if err := replies[i].Err(); err != nil || replies[i].String() != "OK" {
			t.Errorf("reply %d, of a SET answered before the cut = %q, %v; want OK", i, replies[i].String(), err)
		}
		if n, _ := srv.MustDo(t, "EXISTS", key(i)).(int64); n != 1 {
			t.Errorf("the key of SET %d, answered, is not on the server", i)
		}
	}
	if n, _ := srv.MustDo(t, "DBSIZE").(int64); n != int64(k) {
		t.Errorf("the server holds %d keys, want %d: those of the SETs answered", n, k)
	}
}

// checkCutErr checks the error of a batch cut after the replies of its
// first at commands: of unknown outcome, never not applied, for command
// at, and the connection's failure.
func checkCutErr(t *testing.T, err error, at int, name string) {
	t.Helper()
	if err == nil {
		t.Fatal("Exec of a pipeline whose connection was killed returned no error")
	}
	if o := OutcomeOf(err); o != OutcomeUnknown || SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
		t.Errorf("Exec error %v: outcome %v, SafeToRetry %v; want unknown, not safe", err, o, SafeToRetry(err))
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != at || ce.Command != name {
		t.Errorf("Exec error %v: want a *CommandError for command %d (%s), the first not answered", err, at, name)
	}
	var connErr *ConnError
	if !errors.As(err, &connErr) {
		t.Errorf("Exec error %v does not hold the connection's *ConnError", err)
	}
}

// TestPipelineCutKeepsRepliesRead: a plain pipeline whose connection the
// server kills (CLIENT KILL) while a BLPOP holds it halfway keeps the
// replies of the SETs before it, which ran, and gives the BLPOP and the
// SETs after it, sent but never answered, error replies of unknown
// outcome. The Exec error says so, for the BLPOP. The server holds
// exactly the keys of the SETs answered.
func TestPipelineCutKeepsRepliesRead(t *testing.T) {
	c, srv := newTestClient(t, Options{MaxRetries: -1})
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("cut:%d", i) }

	p := c.Pipeline(NoTransaction)
	for i := 0; i < 5; i++ {
		p.Set(key(i), "v")
	}
	p.Do("BLPOP", "cut:list", "0")
	for i := 6; i < 11; i++ {
		p.Set(key(i), "v")
	}
	done := execAsync(ctx, p)
	killBlockedClient(t, ctx, srv)
	r := awaitExec(t, ctx, done, "its connection was killed")

	checkCutErr(t, r.err, 5, "BLPOP")
	if len(r.replies) != 11 {
		t.Fatalf("Exec returned %d replies for 11 commands (error %v); want every one, the first 5 as read", len(r.replies), r.err)
	}
	checkRan(t, srv, r.replies, 5, key)
	for i := 5; i < 11; i++ {
		err := r.replies[i].Err()
		var connErr *ConnError
		if err == nil || OutcomeOf(err) != OutcomeUnknown || !errors.As(err, &connErr) || connErr.Unsent {
			t.Errorf("reply %d, sent and not answered = %q, %v: want an error of unknown outcome holding the *ConnError", i, r.replies[i].String(), err)
		}
	}

	// The client goes on over a new connection.
	if err := c.Set(ctx, "after", "v"); err != nil {
		t.Fatalf("SET after the cut: %v", err)
	}
}

// replyWatch is a Dialer whose connections note what they read, so that a
// test can wait for the client to have read the replies it expects
// before it cuts the connection.
type replyWatch struct {
	mu   sync.Mutex
	read []byte
}

func (w *replyWatch) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: nc, w: w}, nil
}

// count tells how many times s was read, over every connection.
func (w *replyWatch) count(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Count(w.read, []byte(s))
}

type watchedConn struct {
	net.Conn
	w *replyWatch
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.w.mu.Lock()
	c.w.read = append(c.w.read, p[:n]...)
	c.w.mu.Unlock()
	return n, err
}

// TestLargePipelineCutTellsUnsent: a pipeline too large for the shared
// connection, cut by the network (a Proxy that passes its first MiB and
// then closes both sides) while a BLPOP holds it on the server, keeps the
// replies of the SETs before the BLPOP. The commands the socket took are
// of unknown outcome, those it never took (the client was still writing)
// say they were not sent, and are safe to send again. The server holds
// exactly the keys of the SETs answered.
func TestLargePipelineCutTellsUnsent(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	w := &replyWatch{}
	c, err := NewClient(Options{Addr: px.Addr, Dialer: w.dial, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("cut:%d", i) }

	const n = 262
	big := strings.Repeat("x", 256<<10) // n of them are far more than the sockets hold
	p := c.Pipeline(NoTransaction)
	for i := 0; i < 5; i++ {
		p.Set(key(i), "v")
	}
	p.Do("BLPOP", "cut:list", "0")
	for i := 6; i < n; i++ {
		p.Set(key(i), big)
	}
	px.PassBytes(1<<20, redistest.ClientToServer)
	done := execAsync(ctx, p)
	waitForServer(t, ctx, "the replies of the SETs before the BLPOP", func() (bool, string) {
		got := w.count("+OK\r\n")
		return got >= 5, fmt.Sprintf("%d replies OK read", got)
	})
	// FIN, so that the client reads the end of the stream after the
	// replies it read, before its write meets the reset that follows.
	px.Cut(redistest.CutFIN)
	r := awaitExec(t, ctx, done, "its connection was cut")

	checkCutErr(t, r.err, 5, "BLPOP")
	t.Logf("Exec error: %v", r.err)
	if !strings.Contains(fmt.Sprint(r.err), "were not sent") {
		t.Errorf("Exec error %q does not say which commands were not sent", r.err)
	}
	if len(r.replies) != n {
		t.Fatalf("Exec returned %d replies for %d commands (error %v); want every one, the first 5 as read", len(r.replies), n, r.err)
	}
	checkRan(t, srv, r.replies, 5, key)
	checkCutInOrder(t, r.replies, 5, func(i int, err error, notSent bool) {
		var connErr *ConnError
		if !errors.As(err, &connErr) || connErr.Unsent != notSent {
			t.Fatalf("reply %d, not answered = %v: want an error holding the *ConnError, Unsent %v", i, err, notSent)
		}
	})
	if r.replies[5].Err() == nil || OutcomeOf(r.replies[5].Err()) != OutcomeUnknown {
		t.Errorf("the BLPOP, which the server took, = %v; want unknown outcome", r.replies[5].Err())
	}
}

// TestPipelineStalledKeepsRepliesRead: a plain pipeline whose replies
// stop coming halfway (a Proxy passes those of the first 3 SETs, then
// holds the rest back), so that the stall guard (ReplyTimeout) ends its
// connection, keeps the 3 replies read; the SETs after them, sent and not
// answered, are of unknown outcome (the server did run them).
func TestPipelineStalledKeepsRepliesRead(t *testing.T) {
	c, px, srv := proxiedClient(t, Options{ReplyTimeout: 100 * time.Millisecond, MaxRetries: -1})
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("stall:%d", i) }
	if _, err := c.Ping(ctx); err != nil { // the shared connection, whose handshake is done
		t.Fatal(err)
	}
	px.PassBytes(int64(3*len("+OK\r\n")), redistest.ServerToClient)

	p := c.Pipeline(NoTransaction)
	for i := 0; i < 7; i++ {
		p.Set(key(i), "v")
	}
	replies, err := p.Exec(ctx)
	checkCutErr(t, err, 3, "SET")
	if len(replies) != 7 {
		t.Fatalf("Exec returned %d replies for 7 commands (error %v); want every one, the first 3 as read", len(replies), err)
	}
	for i := 0; i < 7; i++ {
		if n, _ := srv.MustDo(t, "EXISTS", key(i)).(int64); n != 1 {
			t.Errorf("the key of SET %d is not on the server, which ran every SET", i)
		}
		e := replies[i].Err()
		switch {
		case i < 3 && (e != nil || replies[i].String() != "OK"):
			t.Errorf("reply %d, of a SET answered before the stall = %q, %v; want OK", i, replies[i].String(), e)
		case i >= 3 && (e == nil || OutcomeOf(e) != OutcomeUnknown || SafeToRetry(e)):
			t.Errorf("reply %d, sent and not answered = %q, %v: want an error of unknown outcome", i, replies[i].String(), e)
		}
	}
}

// TestStreamCutHandsOutRepliesRead: a Stream whose connection the server
// kills while a BLPOP holds it halfway hands each the replies of the SETs
// before the BLPOP, which ran, and Close reports the failure, of unknown
// outcome. The server holds exactly the keys of the SETs answered.
func TestStreamCutHandsOutRepliesRead(t *testing.T) {
	c, srv := newTestClient(t, Options{MaxRetries: -1})
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("cut:%d", i) }

	var got []Value // written by each, read once Close has returned
	s := c.Stream(ctx, func(i int, v Value) error {
		if i != len(got) {
			return fmt.Errorf("reply %d handed out after %d replies", i, len(got))
		}
		got = append(got, v)
		return nil
	})
	for i := 0; i < 5; i++ {
		s.Do("SET", key(i), "v")
	}
	s.Do("BLPOP", "cut:list", "0")
	for i := 6; i < 11; i++ {
		s.Do("SET", key(i), "v")
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Close(ctx)
		done <- result{n, err}
	}()
	killBlockedClient(t, ctx, srv)
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("Close did not return after the stream's connection was killed")
	}
	if r.err == nil || OutcomeOf(r.err) != OutcomeUnknown || SafeToRetry(r.err) || errors.Is(r.err, ErrNotApplied) {
		t.Errorf("Close = %d, %v; want an error of unknown outcome", r.n, r.err)
	}
	var connErr *ConnError
	if !errors.As(r.err, &connErr) {
		t.Errorf("Close error %v does not hold the connection's *ConnError", r.err)
	}
	if len(got) != 5 {
		t.Fatalf("each had %d replies; want the 5 of the SETs answered before the connection was killed", len(got))
	}
	checkRan(t, srv, got, 5, key)
}

// TestReadPipelineCutTwiceKeepsRepliesRead: a plain pipeline of reads,
// which the retry rules send again after its connection fails, is cut
// twice (CLIENT KILL while an XREAD BLOCK holds it halfway, on each
// attempt). The error of the last attempt says an earlier one may have
// run, and wraps the cut: the replies the last attempt read are returned
// all the same, in their places, and the commands after them are of
// unknown outcome.
func TestReadPipelineCutTwiceKeepsRepliesRead(t *testing.T) {
	c, srv := newTestClient(t, Options{MaxRetries: 1})
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("cut:%d", i) }
	for i := 0; i < 4; i++ {
		srv.MustDo(t, "SET", key(i), fmt.Sprint("v", i))
	}

	p := c.Pipeline(NoTransaction)
	for i := 0; i < 4; i++ {
		p.Get(key(i))
	}
	p.Do("XREAD", "BLOCK", "0", "STREAMS", "cut:stream", "$")
	p.Get(key(0))
	done := execAsync(ctx, p)
	first := killBlockedIn(t, ctx, srv, "xread") // the first attempt
	killBlockedIn(t, ctx, srv, "xread", first)   // the retry
	r := awaitExec(t, ctx, done, "its connection was killed twice")

	checkCutErr(t, r.err, 4, "XREAD")
	if !strings.Contains(fmt.Sprint(r.err), "earlier attempt") {
		t.Errorf("Exec error %q does not say the batch was sent twice: the test does not test what it means to", r.err)
	}
	if len(r.replies) != 6 {
		t.Fatalf("Exec returned %d replies for 6 commands (error %v); want every one, the first 4 as read", len(r.replies), r.err)
	}
	for i := 0; i < 4; i++ {
		if got, err := r.replies[i].Err(), r.replies[i].String(); got != nil || err != fmt.Sprint("v", i) {
			t.Errorf("reply %d, of a GET answered before the cut = %q, %v; want %q", i, err, got, fmt.Sprint("v", i))
		}
	}
	for i := 4; i < 6; i++ {
		if err := r.replies[i].Err(); err == nil || OutcomeOf(err) != OutcomeUnknown {
			t.Errorf("reply %d, sent and not answered = %q, %v: want an error of unknown outcome", i, r.replies[i].String(), err)
		}
	}
}

// TestTxPipelineCutKeepsRepliesRead: the plain Pipeline of a Watch
// session whose connection the server kills (CLIENT KILL) while a BLPOP
// holds it halfway keeps the replies of the SETs before the BLPOP, which
// ran, as a Client's does: the BLPOP and the SETs after it, sent and not
// answered, have error replies of unknown outcome, and Exec's error says
// so, for the BLPOP. Before, Exec returned no replies. The server holds
// exactly the keys of the SETs answered.
func TestTxPipelineCutKeepsRepliesRead(t *testing.T) {
	c, srv := newTestClient(t, Options{MaxRetries: -1})
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("cut:%d", i) }
	tx, err := c.Watch(ctx, "cut:watched")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	p := tx.Pipeline(NoTransaction)
	for i := 0; i < 5; i++ {
		p.Set(key(i), "v")
	}
	p.Do("BLPOP", "cut:list", "0")
	for i := 6; i < 11; i++ {
		p.Set(key(i), "v")
	}
	done := execAsync(ctx, p)
	killBlockedClient(t, ctx, srv)
	r := awaitExec(t, ctx, done, "its connection was killed")

	checkCutErr(t, r.err, 5, "BLPOP")
	if len(r.replies) != 11 {
		t.Fatalf("Exec returned %d replies for 11 commands (error %v); want every one, the first 5 as read", len(r.replies), r.err)
	}
	checkRan(t, srv, r.replies, 5, key)
	for i := 5; i < 11; i++ {
		if err := r.replies[i].Err(); err == nil || OutcomeOf(err) != OutcomeUnknown {
			t.Errorf("reply %d, sent and not answered = %q, %v: want an error of unknown outcome", i, r.replies[i].String(), err)
		}
	}
	// The session lost its watch with its connection: it says so.
	if _, err := tx.Get(ctx, key(0)); err == nil {
		t.Error("GET on the session after its connection was killed succeeded; want the failure")
	}
}

// TestStreamCutEachPanics: each panics on one of the replies a Stream
// hands out after its connection was killed (CLIENT KILL while a BLPOP
// held it halfway). Close, called again after the recover, reports the
// connection's failure, of unknown outcome: the commands after the
// replies read may have run. Before, it reported only that each had
// panicked, as if the stream had run through.
func TestStreamCutEachPanics(t *testing.T) {
	c, srv := newTestClient(t, Options{MaxRetries: -1})
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("cut:%d", i) }

	handed := 0 // written by each, read once Close has returned
	s := c.Stream(ctx, func(i int, v Value) error {
		handed++
		if i == 2 {
			panic("each panics on reply 2")
		}
		return nil
	})
	for i := 0; i < 5; i++ {
		s.Do("SET", key(i), "v")
	}
	s.Do("BLPOP", "cut:list", "0")
	s.Do("SET", key(6), "v")
	done := make(chan error, 1)
	go func() {
		defer func() {
			if recover() == nil {
				done <- errors.New("the first Close did not panic")
				return
			}
			_, err := s.Close(ctx)
			done <- err
		}()
		s.Close(ctx)
	}()
	killBlockedClient(t, ctx, srv)
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("Close did not return after the stream's connection was killed")
	}
	if handed != 3 {
		t.Errorf("each was called %d times; want 3, up to its panic", handed)
	}
	var connErr *ConnError
	if err == nil || OutcomeOf(err) != OutcomeUnknown || !errors.As(err, &connErr) {
		t.Fatalf("Close after each panicked on a reply read before the cut = %v (%v); want the connection's failure, of unknown outcome", err, OutcomeOf(err))
	}
}

// writeWatch is a Dialer whose connections note what they read, as
// replyWatch's do, and how many bytes each took from the client.
type writeWatch struct {
	replyWatch
	wrote []int64 // per connection, in the order they were made
}

func (w *writeWatch) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := w.replyWatch.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wrote = append(w.wrote, 0)
	return &countedConn{Conn: nc, w: w, i: len(w.wrote) - 1}, nil
}

// last returns how many connections were made, and how many bytes the
// last took.
func (w *writeWatch) last() (int, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.wrote) == 0 {
		return 0, 0
	}
	return len(w.wrote), w.wrote[len(w.wrote)-1]
}

// cutAgain tells whether one connection took total bytes or more (a
// batch written whole) and a later one took some but fewer (its retry,
// cut while it wrote).
func (w *writeWatch) cutAgain(total int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	whole := false
	for _, n := range w.wrote {
		switch {
		case n >= total:
			whole = true
		case whole && n > 0:
			return true
		}
	}
	return false
}

type countedConn struct {
	net.Conn
	w *writeWatch
	i int
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.mu.Lock()
	c.w.wrote[c.i] += int64(n)
	c.w.mu.Unlock()
	return n, err
}

// execCutTwice runs p, whose last command is a BLPOP that blocks on srv,
// marked Idempotent so that its connection's failure sends it again, and
// returns what Exec returns once both attempts are cut: the first by the
// server, which kills the connection while the BLPOP blocks (every
// command before it ran); the retry by the network, px passing its first
// MiB to srv and closing both sides once the retry's first n-1 replies
// of OK are read (w watches the client's connections).
func execCutTwice(t *testing.T, ctx context.Context, p *Pipeline, srv *redistest.Server, px *redistest.Proxy, w *writeWatch, n int) ([]Value, error) {
	t.Helper()
	done := execAsync(Idempotent(ctx), p)
	// The first attempt ran every SET and blocks in the BLPOP, its last
	// command: the retry, on a new connection, gets its first MiB through.
	waitForServer(t, ctx, "a client blocked in blpop", func() (bool, string) {
		for _, cl := range serverClients(t, srv) {
			if cl["cmd"] == "blpop" && strings.Contains(cl["flags"], "b") {
				return true, ""
			}
		}
		return false, "none"
	})
	px.PassBytes(1<<20, redistest.ClientToServer)
	killBlockedIn(t, ctx, srv, "blpop")
	waitForServer(t, ctx, "the replies of the retry's first SETs", func() (bool, string) {
		got := w.count("+OK\r\n")
		return got > n-1, fmt.Sprintf("%d replies OK read", got)
	})
	px.Cut(redistest.CutFIN)
	r := awaitExec(t, ctx, done, "its connection was cut twice")
	t.Logf("Exec error: %v", r.err)
	return r.replies, r.err
}

// execResult is what an Exec run by execAsync returned.
type execResult struct {
	replies []Value
	err     error
}

// execAsync runs p's Exec under ctx on a goroutine of its own, for a test
// to cut its connection meanwhile; awaitExec waits for it.
func execAsync(ctx context.Context, p *Pipeline) <-chan execResult {
	done := make(chan execResult, 1)
	go func() {
		replies, err := p.Exec(ctx)
		done <- execResult{replies, err}
	}()
	return done
}

// awaitExec waits for the Exec that execAsync started, failing the test
// if ctx ends first; after names what should have ended it.
func awaitExec(t *testing.T, ctx context.Context, done <-chan execResult, after string) execResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		t.Fatalf("Exec did not return after %s", after)
		return execResult{}
	}
}

// TestIdempotentPipelineCutTwiceNotSentAgain: a plain pipeline of SETs
// marked Idempotent, which the retry rules send again after its
// connection fails, runs whole on the first attempt (the server kills
// the connection, CLIENT KILL, while the BLPOP at its end blocks). The
// retry is cut by the network partway through its write (a Proxy passes
// its first MiB, then closes both sides), after the server answered its
// first SETs. The SETs the retry never wrote ran all the same, on the
// first attempt: their replies are of unknown outcome, not "not sent".
// Before, they said they were not sent (OutcomeNotSent, SafeToRetry),
// while the server held their keys.
func TestIdempotentPipelineCutTwiceNotSentAgain(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	w := &writeWatch{}
	c, err := NewClient(Options{Addr: px.Addr, Dialer: w.dial, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	key := func(i int) string { return fmt.Sprintf("cut2:%d", i) }

	const n = 262
	big := strings.Repeat("x", 256<<10) // n of them are far more than the sockets hold
	p := c.Pipeline(NoTransaction)
	for i := 0; i < n-1; i++ {
		p.Set(key(i), big)
	}
	p.Do("BLPOP", "cut2:list", "0")
	replies, err := execCutTwice(t, ctx, p, srv, px, w, n)

	conns, wrote := w.last()
	if conns != 2 || wrote >= int64((n-1)*len(big)) {
		t.Fatalf("%d connections, the last of which took %d bytes: the retry was not cut partway through its write, and the test does not test what it means to", conns, wrote)
	}
	if err == nil || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) || !strings.Contains(err.Error(), "earlier attempt") {
		t.Fatalf("Exec error %v (%v): want one of unknown outcome that says an earlier attempt may have run", err, OutcomeOf(err))
	}
	if len(replies) != n {
		t.Fatalf("Exec returned %d replies for %d commands (error %v); want every one", len(replies), n, err)
	}
	answered := 0
	for i := 0; i < n-1; i++ {
		e := replies[i].Err()
		if e == nil {
			answered++
			continue
		}
		if n, _ := srv.MustDo(t, "EXISTS", key(i)).(int64); n != 1 {
			t.Fatalf("the key of SET %d is not on the server, which ran every SET on the first attempt", i)
		}
		if o := OutcomeOf(e); o != OutcomeUnknown || SafeToRetry(e) {
			t.Fatalf("reply %d = %v: outcome %v, SafeToRetry %v; want unknown, not safe: the first attempt ran it", i, e, o, SafeToRetry(e))
		}
	}
	if answered == 0 || answered == n-1 {
		t.Fatalf("the retry had %d of its SETs answered: the test does not test what it means to", answered)
	}
	checkNoCutRecord(t, err, replies)
}

// checkNoCutRecord checks that neither err nor any error reply among
// replies holds the record of a cut (*cutError), which keeps the replies
// of the attempt it was read in alive for as long as the caller keeps the
// error: the caller has those replies already.
func checkNoCutRecord(t *testing.T, err error, replies []Value) {
	t.Helper()
	var cut *cutError
	if errors.As(err, &cut) {
		t.Errorf("Exec error %v holds the record of the cut, with %d replies", err, len(cut.replies))
	}
	for i, v := range replies {
		if e := v.Err(); e != nil && errors.As(e, &cut) {
			t.Fatalf("reply %d = %v holds the record of the cut, with %d replies", i, e, len(cut.replies))
		}
	}
}

// checkCutInOrder checks replies[from:], those of a batch's commands left
// unanswered by a cut: each is an error, of unknown outcome and not safe
// to retry up to a point, then not sent and safe to retry, as the socket
// takes a batch in order; and some were not sent, or the batch did not
// outgrow the sockets and the test does not test what it means to. each,
// if given, checks every error further, told whether it says not sent.
func checkCutInOrder(t *testing.T, replies []Value, from int, each func(i int, err error, notSent bool)) {
	t.Helper()
	unsent := 0
	for i := from; i < len(replies); i++ {
		err := replies[i].Err()
		if err == nil {
			t.Fatalf("reply %d, not answered = %q: want an error", i, replies[i].String())
		}
		switch o := OutcomeOf(err); {
		case o == OutcomeNotSent && SafeToRetry(err):
			unsent++
		case o == OutcomeUnknown && !SafeToRetry(err):
			if unsent > 0 {
				t.Fatalf("reply %d is of unknown outcome after %d not sent: the socket takes a batch in order", i, unsent)
			}
		default:
			t.Fatalf("reply %d = %v: outcome %v, SafeToRetry %v", i, err, o, SafeToRetry(err))
		}
		if each != nil {
			each(i, err, OutcomeOf(err) == OutcomeNotSent)
		}
	}
	if unsent == 0 {
		t.Fatal("no command was reported not sent: the batch did not outgrow the sockets, and the test does not test what it means to")
	}
}
