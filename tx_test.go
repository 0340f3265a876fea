package redpipe

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// clientID is the server's id of the connection a Tx holds.
func clientID(t *testing.T, ctx context.Context, tx *Tx) int64 {
	t.Helper()
	v, err := tx.Do(ctx, "CLIENT", "ID")
	if err != nil {
		t.Fatal(err)
	}
	return must(v.Int64())
}

// waitBlockedIn waits until the server shows a connection blocked in cmd
// (CLIENT LIST: cmd=cmd, flags with b), the one with the given id unless
// id is empty, so that a test can act while that call is in flight.
func waitBlockedIn(t *testing.T, ctx context.Context, srv *redistest.Server, cmd, id string) {
	t.Helper()
	waitForServer(t, ctx, "a connection blocked in "+cmd, func() (bool, string) {
		var seen []string
		for _, cl := range serverClients(t, srv) {
			if id != "" && cl["id"] != id {
				continue
			}
			if cl["cmd"] == cmd && strings.Contains(cl["flags"], "b") {
				return true, ""
			}
			seen = append(seen, "id="+cl["id"]+" cmd="+cl["cmd"]+" flags="+cl["flags"])
		}
		return false, strings.Join(seen, "; ")
	})
}

// assertCleanConnection takes a connection from the pool and shows it has
// no WATCH armed and no MULTI open: a write to key by another client does
// not make its next transaction fail, and a command runs at once instead of
// being QUEUED.
func assertCleanConnection(t *testing.T, ctx context.Context, c *Client, key string) {
	t.Helper()
	tx, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	info, err := tx.Do(ctx, "CLIENT", "INFO")
	if err != nil {
		t.Fatal(err)
	}
	if s := info.String(); !strings.Contains(s, " multi=-1 ") || strings.Contains(s, "flags=x") {
		t.Fatalf("pooled connection is inside MULTI: %s", s)
	}
	if s, err := tx.Ping(ctx); err != nil || s != "PONG" {
		t.Fatalf("PING on the pooled connection = %q, %v", s, err)
	}
	if err := c.Set(ctx, key, "changed-by-another-client"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Multi().Set("clean-check", "1").Exec(ctx); err != nil {
		t.Fatalf("a stale WATCH on %s survived on the pooled connection: %v", key, err)
	}
}

func TestWatchImmediateThenMulti(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	c.Set(ctx, "OUR-SEQUENCE-KEY", "41")
	tx, err := c.Watch(ctx, "OUR-SEQUENCE-KEY")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	id := clientID(t, ctx, tx)
	// Immediate: the reply is here before any Exec.
	cur, err := tx.Get(ctx, "OUR-SEQUENCE-KEY")
	if err != nil || cur != "41" {
		t.Fatalf("Get = %q, %v", cur, err)
	}
	// A plain batch of reads on the same connection before MULTI.
	reads, err := tx.Pipeline().Get("OUR-SEQUENCE-KEY").Do("CLIENT", "ID").Exec(ctx)
	if err != nil || reads[0].String() != "41" || must(reads[1].Int64()) != id {
		t.Fatalf("read batch = %v, %v", reads, err)
	}
	next := must(strconv.Atoi(cur)) + 1
	replies, err := tx.Multi().Set("OUR-SEQUENCE-KEY", next).Do("CLIENT", "ID").Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if replies[0].String() != "OK" || must(replies[1].Int64()) != id {
		t.Fatalf("EXEC replies %v: MULTI did not run on the watched connection %d", replies, id)
	}
	if v, _ := c.Get(ctx, "OUR-SEQUENCE-KEY"); v != "42" {
		t.Fatalf("value = %s", v)
	}
}

func TestWatchConflict(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	c.Set(ctx, "k", "1")
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	// A second client changes the key between WATCH and EXEC.
	other, err := Connect(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Set(ctx, "k", "2"); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Multi().Set("k", "from-tx").Set("side", "effect").Exec(ctx)
	if !errors.Is(err, ErrWatch) || !errors.Is(err, ErrNotApplied) {
		t.Fatalf("Exec after a conflicting write: %v, want ErrWatch", err)
	}
	if v, _ := c.Get(ctx, "k"); v != "2" {
		t.Fatalf("k = %s: the transaction was applied", v)
	}
	if _, err := c.Get(ctx, "side"); !errors.Is(err, ErrNil) {
		t.Fatal("half of a failed transaction was applied")
	}
	tx.Close()
	assertCleanConnection(t, ctx, c, "k")
}

func TestUnwatch(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.Unwatch(ctx); err != nil {
		t.Fatal(err)
	}
	c.Set(ctx, "k", "changed")
	if _, err := tx.Multi().Set("k2", "v").Exec(ctx); err != nil {
		t.Fatalf("Exec after Unwatch failed: %v", err)
	}
}

// TestInsufficientFundsBranch is seed 004's branch: read, decide not to
// write, UNWATCH, and give the connection back clean.
func TestInsufficientFundsBranch(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	c.Set(ctx, "account_a", 5)
	tx, err := c.Watch(ctx, "account_a")
	if err != nil {
		t.Fatal(err)
	}
	bal := must(strconv.Atoi(must(tx.Get(ctx, "account_a"))))
	if bal >= 10 {
		t.Fatal("setup")
	}
	if err := tx.Unwatch(ctx); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	assertCleanConnection(t, ctx, c, "account_a")
}

func TestTxMisuse(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 2})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	first := tx.Multi().Set("k", 1)
	var ue *UsageError
	// Nested MULTI.
	if _, err := tx.Multi().Set("k", 2).Exec(ctx); !errors.As(err, &ue) || !strings.Contains(err.Error(), "MULTI on a Tx while its Multi pipeline is open") {
		t.Fatalf("nested Multi: %v", err)
	}
	// WATCH after MULTI.
	if err := tx.Watch(ctx, "other"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "WATCH on a Tx while its Multi pipeline is open") {
		t.Fatalf("Watch after Multi: %v", err)
	}
	if _, err := tx.Do(ctx, "WATCH", "other"); !errors.As(err, &ue) {
		t.Fatalf("Do(WATCH) after Multi: %v", err)
	}
	if _, err := tx.Do(ctx, "MULTI"); !errors.As(err, &ue) {
		t.Fatalf("Do(MULTI) on a Tx: %v", err)
	}
	// The refusals refused the open Multi too, until it is discarded.
	first.Discard()
	if replies, err := first.Set("k", 1).Exec(ctx); err != nil || replies[0].String() != "OK" {
		t.Fatalf("first Multi Exec = %v, %v", replies, err)
	}
	if err := tx.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := tx.Reset(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reset after Close: %v, want ErrClosed", err)
	}
	// Use after Close.
	if _, err := tx.Get(ctx, "k"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "after Close") {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, err := tx.Multi().Set("k", 3).Exec(ctx); !errors.As(err, &ue) {
		t.Fatalf("Multi Exec after Close: %v", err)
	}
	if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
		t.Fatalf("pool open=%d idle=%d after Close, want the connection back", open, idle)
	}
}

func TestConnectionLostWhileWatching(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	id := clientID(t, ctx, tx)
	if _, err := srv.Do("CLIENT", "KILL", "ID", strconv.FormatInt(id, 10)); err != nil {
		t.Fatal(err)
	}
	// The next read finds the connection gone.
	if _, err := tx.Get(ctx, "k"); err == nil {
		t.Fatal("Get on a killed connection succeeded")
	}
	_, err = tx.Multi().Set("k", "v").Exec(ctx)
	if !errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), "not applied") {
		t.Fatalf("Exec after the connection died: %v, want a not-applied error", err)
	}
	tx.Close()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrNil) {
		t.Fatal("k was written")
	}
	assertCleanConnection(t, ctx, c, "k")
}

func TestPoolNeverReusesDirtyConnection(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	wire := func(d *dedicated, args ...any) Value {
		w := getBuf()
		defer putBuf(w)
		w.do(args)
		v, err := d.DoOne(ctx, w.buf)
		if err != nil {
			t.Fatal(err)
		}
		return Value{v}
	}
	id := func(d *dedicated) int64 { return must(wire(d, "CLIENT", "ID").Int64()) }

	d, err := c.pool.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := id(d)
	c.pool.Put(d, true)
	d, _ = c.pool.Get(ctx)
	if id(d) != first {
		t.Fatal("a clean connection was not reused")
	}
	// Armed WATCH: the owner says it is not reusable, so it is closed.
	wire(d, "WATCH", "k")
	c.pool.Put(d, false)
	d, _ = c.pool.Get(ctx)
	second := id(d)
	if second == first {
		t.Fatal("a connection with an armed WATCH was reused")
	}
	// Open MULTI.
	wire(d, "MULTI")
	c.pool.Put(d, false)
	d, _ = c.pool.Get(ctx)
	third := id(d)
	if third == second {
		t.Fatal("a connection with an open MULTI was reused")
	}
	// A reply still due: even when the owner claims it clean, the pool sees
	// the call in flight and closes it. The call is abandoned while the
	// server holds it blocked, so its reply is certainly still due.
	slow, cancel := context.WithCancel(ctx)
	defer cancel()
	w := getBuf()
	w.do([]any{"BLPOP", "never-pushed", "10"})
	blpop := make(chan error, 1)
	go func() {
		_, err := d.DoOne(slow, w.buf)
		blpop <- err
	}()
	waitBlockedIn(t, ctx, srv, "blpop", strconv.FormatInt(third, 10))
	cancel()
	if err := <-blpop; !errors.Is(err, context.Canceled) {
		t.Fatalf("BLPOP: %v", err)
	}
	putBuf(w)
	c.pool.Put(d, true)
	d, _ = c.pool.Get(ctx)
	if id(d) == third {
		t.Fatal("a connection with a reply still due was reused")
	}
	c.pool.Put(d, true)
	// Through the public API: a Tx closed with a WATCH armed returns its
	// connection clean (UNWATCH), checked by behaviour.
	tx, _ := c.Watch(ctx, "k")
	tx.Close()
	assertCleanConnection(t, ctx, c, "k")
}

// TestTransactionHelperContended: 8 goroutines on two clients increment
// one counter 250 times each. Within a client transactions take turns;
// between the two they meet WATCH conflicts and retry. No increment is
// lost or doubled.
func TestTransactionHelperContended(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 8})
	c2, err := NewClient(Options{Addr: srv.Addr, PoolSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ctx := ctxT(t)
	const workers, each = 8, 250
	calls, retries := incrementConcurrently(t, ctx, []*Client{c, c2}, "counter", workers, each)
	if v, _ := c.Get(ctx, "counter"); v != "2000" {
		t.Fatalf("counter = %s, want 2000", v)
	}
	if calls != workers*each+retries {
		t.Fatalf("fn ran %d times for %d transactions and %d retries", calls, workers*each, retries)
	}
	t.Logf("2000 transactions, %d retries on watch conflicts", retries)
}

// incrementConcurrently runs workers goroutines, worker w on clients[w %
// len(clients)], each making each Transactions that add one to key, and
// returns how many times their fns ran and how many retries there were.
func incrementConcurrently(t *testing.T, ctx context.Context, clients []*Client, key string, workers, each int) (calls, retries int64) {
	t.Helper()
	var nCalls, nRetries atomic.Int64
	opts := TxOptions{MaxAttempts: 1000, OnRetry: func(int, error) { nRetries.Add(1) }}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		c := clients[w%len(clients)]
		go func() {
			defer wg.Done()
			for range each {
				_, err := c.Transaction(WithTxOptions(ctx, opts), func(tx *Tx) error {
					nCalls.Add(1)
					cur, err := tx.Get(ctx, key)
					if err != nil && !errors.Is(err, ErrNil) {
						return err
					}
					n, _ := strconv.Atoi(cur)
					tx.Multi().Set(key, n+1)
					return nil
				}, key)
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return nCalls.Load(), nRetries.Load()
}

func TestTransactionHelperGivesUp(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 2})
	ctx := ctxT(t)
	attempts := 0
	// Every attempt is spoiled by a write from another connection.
	fn := func(tx *Tx) error {
		attempts++
		if _, err := srv.Do("INCR", "hot"); err != nil {
			return err
		}
		tx.Multi().Set("hot", 0)
		return nil
	}
	_, err := c.Transaction(WithTxOptions(ctx, TxOptions{MaxAttempts: 3, MinBackoff: time.Millisecond}), fn, "hot")
	var re *TxRetryError
	if !errors.As(err, &re) || re.Attempts != 3 || attempts != 3 || !errors.Is(err, ErrWatch) {
		t.Fatalf("err = %v (attempts %d), want a TxRetryError after 3 attempts matching ErrWatch", err, attempts)
	}
	if !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("error %q does not say how many attempts", err)
	}
	// The context's deadline stops it before MaxAttempts.
	attempts = 0
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = c.Transaction(WithTxOptions(dctx, TxOptions{MaxAttempts: 1 << 20, WatchDelay: 20 * time.Millisecond}), fn, "hot")
	// The deadline ends it between attempts (a TxRetryError of the last
	// conflict) or, on a loaded machine, during one (that attempt's
	// context error); either way nothing was applied.
	if !errors.Is(err, ErrNotApplied) || attempts > 4 || attempts < 1 ||
		!(errors.As(err, &re) && errors.Is(err, ErrWatch) || errors.Is(err, context.DeadlineExceeded)) {
		t.Fatalf("with a deadline: err = %v after %d attempts", err, attempts)
	}
	assertCleanConnection(t, ctx, c, "hot")
}

// TestOnRetryOnlyBeforeARetry: OnRetry is called once per retry. When a
// conflict's pause would outlast the context's deadline, Transaction gives
// up without a retry, and OnRetry is not called: it was, so a count of its
// calls, the count of retries it is for, was one too many.
func TestOnRetryOnlyBeforeARetry(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 2})
	ctx := ctxT(t) // a deadline far shorter than the WatchDelay below
	attempts, retries := 0, 0
	opts := TxOptions{MaxAttempts: 5, WatchDelay: time.Hour, OnRetry: func(int, error) { retries++ }}
	_, err := c.Transaction(WithTxOptions(ctx, opts), func(tx *Tx) error {
		attempts++
		srv.MustDo(t, "INCR", "retried") // spoils the watch
		tx.Multi().Set("retried", 0)
		return nil
	}, "retried")
	var re *TxRetryError
	if !errors.As(err, &re) || re.Attempts != 1 || !errors.Is(err, ErrWatch) || attempts != 1 || retries != 0 {
		t.Fatalf("Transaction = %v after %d attempts and %d calls of OnRetry; "+
			"want a TxRetryError after 1 attempt, with no retry and no call of OnRetry", err, attempts, retries)
	}

	// A retry that happens is announced.
	attempts, retries = 0, 0
	opts.WatchDelay = time.Millisecond
	_, err = c.Transaction(WithTxOptions(ctx, opts), func(tx *Tx) error {
		attempts++
		if attempts == 1 {
			srv.MustDo(t, "INCR", "retried")
		}
		tx.Multi().Set("retried", 0)
		return nil
	}, "retried")
	if err != nil || attempts != 2 || retries != 1 {
		t.Fatalf("Transaction = %v after %d attempts and %d calls of OnRetry; want success after 2, with 1 call", err, attempts, retries)
	}
}

func TestTransactionValue(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	c.Set(ctx, "balance", 100)
	got, err := TransactionValue(ctx, c, func(tx *Tx) (int, error) {
		bal, err := strconv.Atoi(must(tx.Get(ctx, "balance")))
		if err != nil {
			return 0, err
		}
		tx.Multi().DecrBy("balance", 30)
		return bal - 30, nil
	}, "balance")
	if err != nil || got != 70 {
		t.Fatalf("TransactionValue = %d, %v", got, err)
	}
	if v, _ := c.Get(ctx, "balance"); v != "70" {
		t.Fatalf("balance = %s", v)
	}
	// An error from fn ends the loop with it and applies nothing.
	boom := errors.New("boom")
	if _, err := c.Transaction(ctx, func(tx *Tx) error { tx.Multi().Set("balance", 0); return boom }, "balance"); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want fn's error", err)
	}
	if v, _ := c.Get(ctx, "balance"); v != "70" {
		t.Fatalf("balance = %s after fn failed", v)
	}
}

// TestTransactionCommandFailedAsItRan: a transaction that EXEC ran, one
// command of which failed as it ran (WRONGTYPE) or whose Decoder failed,
// was applied but for that command. Transaction returns EXEC's replies
// with the *CommandError of the first, as Exec does, and TransactionValue
// fn's value; it is not run again. Both once returned nil, and the caller
// of an applied transaction could not tell what its other commands did.
func TestTransactionCommandFailedAsItRan(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	if err := c.Set(ctx, "ran:str", "x"); err != nil {
		t.Fatal(err)
	}
	calls := 0
	replies, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		tx.Multi().Incr("ran:n").LPush("ran:str", "a").Get("ran:str")
		return nil
	}, "ran:n")
	var ce *CommandError
	var se *Error
	if !errors.As(err, &ce) || ce.Index != 1 || !errors.As(err, &se) || se.Prefix != "WRONGTYPE" || calls != 1 {
		t.Fatalf("Transaction = %v after %d calls of fn; want the WRONGTYPE of command 1, fn run once", err, calls)
	}
	if got := fmt.Sprint(replies); len(replies) != 3 || replies[0].String() != "1" || replies[2].String() != "x" || replies[1].Err() == nil {
		t.Fatalf("Transaction's replies = %s; want EXEC's three, the second an error", got)
	}

	// A Decoder that fails: GET ran, and so did the INCR before it.
	c.SetDecoder("GET", func(v Value) (any, error) { return nil, errors.New("undecodable") })
	got, err := TransactionValue(ctx, c, func(tx *Tx) (string, error) {
		tx.Multi().Incr("ran:n").Get("ran:str")
		return "fn's value", nil
	}, "ran:n")
	var de *DecodeError
	if !errors.As(err, &de) || !errors.As(err, &ce) || ce.Index != 1 || got != "fn's value" {
		t.Fatalf("TransactionValue = %q, %v; want fn's value and the decoding error of command 1", got, err)
	}
	c.SetDecoder("GET", nil)
	if n, err := c.Get(ctx, "ran:n"); err != nil || n != "2" {
		t.Fatalf("ran:n = %q, %v; want 2: each transaction ran once", n, err)
	}
}

// decoderOwnError is an error type of a Decoder's own, which errors.As
// must still find through a *DecodeError.
type decoderOwnError struct{ why string }

func (e *decoderOwnError) Error() string { return e.why }

// TestDecoderErrorTellsNoOutcome: a Decoder's error speaks of the
// decoding, not of the command, which ran. One that wraps redpipe's own
// errors (ErrWatch, a *UsageError of a call the Decoder made) did make
// Transaction run an applied transaction again and again, and made Exec,
// Transaction and a plain call report as not applied or not sent a
// command that ran. The Decoder's own errors are still found.
func TestDecoderErrorTellsNoOutcome(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	mine := errors.New("the decoder's own")
	c.SetDecoder("GET", func(v Value) (any, error) {
		return nil, fmt.Errorf("odd reply: %w; %w", mine, ErrWatch)
	})
	_, misuse := c.Do(ctx) // a *UsageError, not sent
	c.SetDecoder("INCR", func(v Value) (any, error) {
		return nil, fmt.Errorf("lookup: %w; %w", misuse, &decoderOwnError{"own"})
	})
	calls := 0
	_, txErr := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		tx.Multi().Set("dec:n", "1").Get("dec:n")
		return nil
	}, "dec:n")
	if calls != 1 {
		t.Errorf("fn ran %d times: the transaction was applied each time", calls)
	}
	_, pipeErr := c.Pipeline().Set("dec:m", "1").Get("dec:m").Exec(ctx)
	_, callErr := c.Incr(ctx, "dec:i")
	for _, tt := range []struct {
		name string
		err  error
		own  func(error) bool
	}{
		{"Transaction", txErr, func(err error) bool { return errors.Is(err, mine) }},
		{"Exec", pipeErr, func(err error) bool { return errors.Is(err, mine) }},
		{"Incr", callErr, func(err error) bool { var oe *decoderOwnError; return errors.As(err, &oe) && oe.why == "own" }},
	} {
		var de *DecodeError
		var ue *UsageError
		switch {
		case !errors.As(tt.err, &de):
			t.Errorf("%s: %v, want a *DecodeError", tt.name, tt.err)
		case errors.Is(tt.err, ErrWatch), errors.Is(tt.err, ErrNotApplied), errors.As(tt.err, &ue):
			t.Errorf("%s: %v reads as not applied or not sent", tt.name, tt.err)
		case OutcomeOf(tt.err) != OutcomeUnknown, SafeToRetry(tt.err):
			t.Errorf("%s: outcome %v, safe to retry %v; want unknown, not safe", tt.name, OutcomeOf(tt.err), SafeToRetry(tt.err))
		case !tt.own(tt.err):
			t.Errorf("%s: %v: the decoder's own error is not found", tt.name, tt.err)
		}
	}
	c.SetDecoder("GET", nil)
	c.SetDecoder("INCR", nil)
	if n, err := c.Get(ctx, "dec:i"); err != nil || n != "1" {
		t.Fatalf("dec:i = %q, %v; want 1", n, err)
	}
}

// TestCleanAfterEveryFailure: after a watch conflict, an EXECABORT, a
// cancelled context while watching and a panic inside fn, the next
// connection from the pool has no WATCH and no MULTI, and the panic
// reaches the caller.
func TestCleanAfterEveryFailure(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)

	// watch conflict
	_, err := c.Transaction(WithTxOptions(ctx, TxOptions{MaxAttempts: 1}), func(tx *Tx) error {
		srv.Do("SET", "w", "x")
		tx.Multi().Set("w", "y")
		return nil
	}, "w")
	if !errors.Is(err, ErrWatch) {
		t.Fatalf("watch conflict: %v", err)
	}
	assertCleanConnection(t, ctx, c, "w")

	// EXECABORT inside a watched transaction
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		tx.Multi().Set("a", 1).Do("NOSUCH")
		return nil
	}, "a")
	var ae *ExecAbortError
	if !errors.As(err, &ae) {
		t.Fatalf("EXECABORT: %v", err)
	}
	assertCleanConnection(t, ctx, c, "a")

	// cancelled context while watching: the cancel lands while a call of
	// fn's is blocked on the server
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cancelled := make(chan error, 1)
	go func() {
		_, err := c.Transaction(cctx, func(tx *Tx) error {
			_, err := tx.Do(cctx, "XREAD", "BLOCK", "10000", "STREAMS", "never-added", "$")
			return err
		}, "c")
		cancelled <- err
	}()
	waitBlockedIn(t, ctx, srv, "xread", "")
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	assertCleanConnection(t, ctx, c, "c")

	// panic inside fn
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the panic to propagate", r)
			}
		}()
		c.Transaction(ctx, func(tx *Tx) error {
			tx.Multi().Set("p", 1)
			panic("boom")
		}, "p")
		t.Fatal("Transaction returned after fn panicked")
	}()
	if _, err := c.Get(ctx, "p"); !errors.Is(err, ErrNil) {
		t.Fatal("the panicking transaction was applied")
	}
	assertCleanConnection(t, ctx, c, "p")
}

// TestTransactionsTakeTurns: while one Transaction of a client is between
// its WATCH and its EXEC, the next one on the same keys waits for it
// instead of spoiling it, and neither has to retry; a transaction on other
// keys does not wait; a context that ends while waiting gives a not-sent
// error.
func TestTransactionsTakeTurns(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	c.turnWait = time.Minute // only the turn order is under test here
	ctx := ctxT(t)
	var retries atomic.Int64
	opts := TxOptions{OnRetry: func(int, error) { retries.Add(1) }}
	incr := func(key string, inside func()) func(*Tx) error {
		return func(tx *Tx) error {
			cur, err := tx.Get(ctx, key)
			if err != nil && !errors.Is(err, ErrNil) {
				return err
			}
			inside()
			n, _ := strconv.Atoi(cur)
			tx.Multi().Set(key, n+1)
			return nil
		}
	}
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := c.Transaction(WithTxOptions(ctx, opts), incr("turn", func() { close(entered); <-release }), "turn")
		first <- err
	}()
	<-entered

	// secondIn: the second ran fn while the first, not yet released, was
	// certainly between its WATCH and its EXEC.
	var secondIn atomic.Bool
	second := make(chan error, 1)
	go func() {
		_, err := c.Transaction(WithTxOptions(ctx, opts), incr("turn", func() {
			select {
			case <-release:
			default:
				secondIn.Store(true)
			}
		}), "turn")
		second <- err
	}()
	// Transactions on other key sets, a set that includes "turn" among
	// them, do not wait for the turn on "turn" alone (which is held for
	// a minute's wait, so that waiting would show).
	for i := range 200 {
		other := "other" + strconv.Itoa(i)
		keys := []string{other}
		if i%2 == 1 {
			keys = append(keys, "turn")
		}
		if _, err := c.Transaction(WithTxOptions(ctx, opts), incr(other, func() {}), keys...); err != nil {
			t.Fatalf("a transaction on other keys: %v", err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err := c.Transaction(short, incr("turn", func() {}), "turn")
	if !errors.Is(err, context.DeadlineExceeded) || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("waiting for a turn past the deadline: %v (%v); want DeadlineExceeded, not sent", err, OutcomeOf(err))
	}
	// The second is waiting for the turn: blocked in take, with the short
	// one gone, so that it and the first are all that hold or wait for it.
	waitForServer(t, ctx, "the second transaction to wait for the turn", func() (bool, string) {
		c.turns.mu.Lock()
		users := 0
		if tr := c.turns.set["turn"]; tr != nil {
			users = tr.users
		}
		c.turns.mu.Unlock()
		blocked := blockedTakingTurns()
		return users == 2 && blocked == 1, fmt.Sprintf("%d transactions hold or wait for the turn, %d blocked waiting", users, blocked)
	})
	if secondIn.Load() {
		t.Fatal("a second transaction on the same keys ran while the first was between WATCH and EXEC")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if secondIn.Load() {
		t.Fatal("a second transaction on the same keys ran while the first was between WATCH and EXEC")
	}
	if v, _ := c.Get(ctx, "turn"); v != "2" || retries.Load() != 0 {
		t.Fatalf("turn = %s after %d retries; want 2 with none", v, retries.Load())
	}
	c.turns.mu.Lock()
	defer c.turns.mu.Unlock()
	if len(c.turns.set) != 0 {
		t.Fatalf("turns kept for key sets no transaction holds: %v", c.turns.set)
	}
}

// TestTransactionsOnKeysInAnotherOrderTakeTurns: the same keys given in
// another order, or one of them twice, are the same keys, as the package
// documentation says: the second Transaction waits for the first's turn
// instead of spoiling its WATCH.
func TestTransactionsOnKeysInAnotherOrderTakeTurns(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	c.turnWait = time.Minute // only the turn order is under test here
	ctx := ctxT(t)
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			close(entered)
			<-release
			tx.Multi().Incr("{k}a")
			return nil
		}, "{k}a", "{k}b")
		first <- err
	}()
	<-entered
	var secondIn atomic.Bool
	second := make(chan error, 1)
	go func() {
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			select {
			case <-release:
			default:
				secondIn.Store(true)
			}
			tx.Multi().Incr("{k}b")
			return nil
		}, "{k}b", "{k}a", "{k}b")
		second <- err
	}()
	waitForServer(t, ctx, "the second transaction to wait for the turn or run", func() (bool, string) {
		blocked := blockedTakingTurns()
		return blocked == 1 || secondIn.Load(), fmt.Sprintf("%d blocked waiting", blocked)
	})
	if secondIn.Load() {
		t.Fatal("a transaction on the same keys in another order ran while the first was between WATCH and EXEC")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
}

// blockedTakingTurns counts the goroutines blocked in turns.take, waiting
// for a turn, from a dump of every goroutine's stack.
func blockedTakingTurns() int {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	blocked := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[select") && strings.Contains(g, "redpipe.(*turns).take(") {
			blocked++
		}
	}
	return blocked
}

// TestNestedTransactionDoesNotDeadlock: a Transaction inside fn on the same
// keys cannot get the turn its caller holds; it goes ahead after the
// bounded wait, and its write makes the outer one retry, as WATCH says.
func TestNestedTransactionDoesNotDeadlock(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	c.turnWait = 20 * time.Millisecond
	ctx := ctxT(t)
	attempts := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		attempts++
		if _, err := tx.Get(ctx, "nest"); err != nil && !errors.Is(err, ErrNil) {
			return err
		}
		if attempts == 1 {
			if _, err := c.Transaction(ctx, func(inner *Tx) error {
				inner.Multi().Set("nest", "inner")
				return nil
			}, "nest"); err != nil {
				return err
			}
		}
		tx.Multi().Set("nest", "outer")
		return nil
	}, "nest")
	if err != nil || attempts != 2 {
		t.Fatalf("outer transaction: %v after %d attempts; want success on the second", err, attempts)
	}
	if v, _ := c.Get(ctx, "nest"); v != "outer" {
		t.Fatalf("nest = %q, want outer", v)
	}
}

// TestTxPause: the pause before a retry starts at the failed attempt's
// own duration (or MinBackoff, whichever is longer), doubles for a few
// attempts and then stays, is jittered within its upper half, and never
// passes MaxBackoff; WatchDelay replaces it.
func TestTxPause(t *testing.T) {
	o := TxOptions{}.defaults()
	for _, tc := range []struct {
		attempt int
		took    time.Duration
		want    time.Duration // the upper bound; the pause is in (want/2, want]
	}{
		{1, 10 * time.Microsecond, 100 * time.Microsecond}, // MinBackoff
		{1, time.Millisecond, time.Millisecond},
		{2, time.Millisecond, 2 * time.Millisecond},
		{5, time.Millisecond, 16 * time.Millisecond},
		{9, time.Millisecond, 16 * time.Millisecond},       // stops doubling
		{3, 50 * time.Millisecond, 100 * time.Millisecond}, // MaxBackoff
	} {
		for range 50 {
			p := o.pause(tc.attempt, tc.took)
			if p < tc.want/2 || p > tc.want {
				t.Fatalf("pause(%d, %v) = %v, want within [%v, %v]", tc.attempt, tc.took, p, tc.want/2, tc.want)
			}
		}
	}
	o.WatchDelay = 3 * time.Millisecond
	if p := o.pause(4, time.Second); p != 3*time.Millisecond {
		t.Fatalf("pause with WatchDelay = %v, want 3ms", p)
	}
}

// TestTurnsAvoidRetriesWithinAClient: goroutines of one client contending
// on one key hardly ever conflict, as they take turns; the count is exact.
func TestTurnsAvoidRetriesWithinAClient(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 8})
	ctx := ctxT(t)
	const workers, each = 8, 100
	_, retries := incrementConcurrently(t, ctx, []*Client{c}, "one", workers, each)
	if v, _ := c.Get(ctx, "one"); v != strconv.Itoa(workers*each) {
		t.Fatalf("one = %s, want %d", v, workers*each)
	}
	// Only an EXEC that the server reaches after the next transaction's
	// WATCH makes one retry; without turns most attempts conflict.
	if retries > workers*each/10 {
		t.Fatalf("%d retries for %d transactions of one client", retries, workers*each)
	}
	t.Logf("%d transactions, %d retries", workers*each, retries)
}

// TestWatchDecoderPanics: a Decoder registered for WATCH that panics on
// the first WATCH of a session, in Watch or Transaction, reaches the
// caller, who never gets the session. Its connection goes back to the
// pool and a Transaction's turn on its keys is given back: with PoolSize
// 1, every later session used to wait for the connection the panic kept,
// and every later Transaction on the keys for the turn.
func TestWatchDecoderPanics(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Watch", func() { c.Watch(ctx, "wd") }},
		{"Transaction", func() { c.Transaction(ctx, func(*Tx) error { return nil }, "wd") }},
	} {
		c.SetDecoder("WATCH", func(Value) (any, error) { panic(boom) })
		if p := probeRecover(tc.f); p != boom {
			t.Fatalf("%s: recovered %v, want the decoder's panic", tc.name, p)
		}
		c.SetDecoder("WATCH", nil)
		c.turns.mu.Lock()
		turns := len(c.turns.set)
		c.turns.mu.Unlock()
		if turns != 0 {
			t.Errorf("%s: a turn on the keys is still held after the panic", tc.name)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		tx, err := c.Watch(wctx, "wd")
		cancel()
		if err != nil {
			t.Fatalf("%s: Watch after the panic: %v; want a session (the panic kept the pool's one connection)", tc.name, err)
		}
		tx.Close()
		if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
			t.Fatalf("%s: pool: %d open, %d idle; want the one connection, idle", tc.name, open, idle)
		}
	}
}

// TestResetUnwatchDecoderPanics: a Decoder registered for UNWATCH that
// panics on the UNWATCH that Reset sends reaches the caller, and the
// session is reset all the same: the panic comes after the server ran
// UNWATCH, so the session keeps its connection, clean, for the next
// Watch, and Close gives it back to the pool.
func TestResetUnwatchDecoderPanics(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	boom := errors.New("boom")
	tx, err := c.Watch(ctx, "rd")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	c.SetDecoder("UNWATCH", func(Value) (any, error) { panic(boom) })
	p := probeRecover(func() { tx.Reset() })
	c.SetDecoder("UNWATCH", nil)
	if p != boom {
		t.Fatalf("Reset: recovered %v, want the decoder's panic", p)
	}
	if tx.Watching() {
		t.Errorf("Watching after the Reset that panicked = true; want false (UNWATCH ran)")
	}
	if err := c.Set(ctx, "rd", "other"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Watch(ctx, "rd"); err != nil {
		t.Fatalf("Watch after the Reset that panicked: %v; want the session usable", err)
	}
	if _, err := tx.Multi().Set("rd", "mine").Exec(ctx); err != nil {
		t.Fatalf("Exec after the Reset that panicked: %v; want it applied (the change before the new Watch does not count)", err)
	}
	if err := tx.Close(); err != nil {
		t.Fatal(err)
	}
	if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
		t.Errorf("pool: %d open, %d idle; want the session's connection back, idle", open, idle)
	}
}

// TestUnwatchDecoderPanics: a Decoder registered for UNWATCH that panics
// on the UNWATCH that Close sends, or Transaction when it ends a session
// whose fn failed, reaches the caller; the session is closed all the same
// and its connection is not kept by it. Transaction used to keep the
// connection for good: with PoolSize 1 every later session waited for
// it. The Decoder runs once the session is closed, its connection back
// in the pool with UNWATCH's reply read, so the panic leaves that
// connection as clean as it was.
func TestUnwatchDecoderPanics(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	boom := errors.New("boom")
	var tx *Tx
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Close", func() { tx.Close() }},
		{"Transaction", func() { c.Transaction(ctx, func(*Tx) error { return errors.New("fn failed") }, "ud") }},
	} {
		var err error
		if tx, err = c.Watch(ctx, "ud"); err != nil {
			t.Fatal(err)
		}
		if tc.name != "Close" {
			tx.Close()
		}
		c.SetDecoder("UNWATCH", func(Value) (any, error) { panic(boom) })
		p := probeRecover(tc.f)
		c.SetDecoder("UNWATCH", nil)
		if p != boom {
			t.Fatalf("%s: recovered %v, want the decoder's panic", tc.name, p)
		}
		if _, err := tx.Get(ctx, "ud"); tc.name == "Close" && !errors.Is(err, ErrClosed) {
			t.Errorf("Get after the Close that panicked: %v; want ErrClosed", err)
		}
		if open, idle := c.pool.Stats(); open > 1 || idle != open {
			t.Errorf("%s: pool: %d open, %d idle; want the session's connection back in the pool or closed", tc.name, open, idle)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		tx2, err := c.Watch(wctx, "ud")
		cancel()
		if err != nil {
			t.Fatalf("%s: Watch after the panic: %v; want a session (the panic kept the pool's one connection)", tc.name, err)
		}
		tx2.Close()
	}
}

// watchArg is an argument whose MarshalBinary fails with an error that
// wraps ErrWatch, as one that ran a Transaction of its own to find its
// value would, and wraps an error of its own type too.
type watchArg struct{}

func (watchArg) MarshalBinary() ([]byte, error) {
	return nil, fmt.Errorf("looking the value up: %w; %w", ErrWatch, &decoderOwnError{"marshaler's own"})
}

// TestArgErrorTellsNoOutcome: a marshaler's error speaks of the
// marshaler, not of the command, which was not sent. One that wraps
// ErrWatch made Transaction run fn again until it gave up, sixteen times,
// and report a watch conflict; the *ArgError is now returned at once. The
// marshaler's own errors are still found.
func TestArgErrorTellsNoOutcome(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	calls := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		tx.Multi().Set("argwatch:k", watchArg{})
		return nil
	}, "argwatch:k")
	var ae *ArgError
	var re *TxRetryError
	var own *decoderOwnError
	if calls != 1 || !errors.As(err, &ae) || errors.As(err, &re) || !errors.As(err, &own) || OutcomeOf(err) != OutcomeNotSent {
		t.Errorf("Transaction = %v (outcome %v) after %d calls of fn; want the *ArgError, not sent, fn run once, the marshaler's own error found",
			err, OutcomeOf(err), calls)
	}
	if err := c.Set(ctx, "argwatch:k", watchArg{}); errors.Is(err, ErrWatch) || errors.Is(err, ErrNotApplied) || !errors.As(err, &ae) {
		t.Errorf("Set = %v; want an *ArgError that does not match ErrWatch", err)
	}
}

// A Transaction allowed one attempt that meets a conflict says it gave up
// after 1 attempt, in the singular.
func TestTransactionGaveUpAfterOneAttempt(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	other, err := NewClient(c.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = c.Transaction(WithTxOptions(ctx, TxOptions{MaxAttempts: 1}), func(tx *Tx) error {
		if _, err := other.Incr(ctx, "k"); err != nil {
			return err
		}
		tx.Multi().Set("k", 0)
		return nil
	}, "k")
	var re *TxRetryError
	if !errors.As(err, &re) || re.Attempts != 1 || !strings.Contains(err.Error(), "gave up after 1 attempt:") {
		t.Fatalf("Transaction with MaxAttempts 1 on a conflict = %v; want a *TxRetryError that gave up after 1 attempt", err)
	}
}

// TestTransactionAllocations: a Transaction that reads a key and queues
// one SET allocates no more than it did before a Tx took turns between
// goroutines and kept what its attempts share: the turn takes no channel
// unless a call waits, and what the attempts share lives in the first
// session.
func TestTransactionAllocations(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := context.Background()
	srv.MustDo(t, "SET", "alloc:a", "1")
	fn := func(tx *Tx) error {
		if _, err := tx.Get(ctx, "alloc:a"); err != nil {
			return err
		}
		tx.Multi().Set("alloc:a", "1")
		return nil
	}
	run := func() {
		if replies, err := c.Transaction(ctx, fn, "alloc:a"); err != nil || len(replies) != 1 {
			t.Fatalf("Transaction = %v, %v", replies, err)
		}
	}
	run()
	n := testing.AllocsPerRun(100, run)
	if raceEnabled {
		// The command buffers come from a sync.Pool, which then drops
		// some at random: the count says nothing.
		t.Logf("a Transaction of one read and one SET allocated %v times under the race detector", n)
		return
	}
	if n > 10 {
		t.Errorf("a Transaction of one read and one SET allocated %v times, want at most 10", n)
	}
}

// TestTransactionFnErrorOfAWriteIsNotNotApplied: a read of fn's Tx
// abandoned on its deadline fails with context.DeadlineExceeded, and so
// does a write fn then makes through the Client, abandoned on its own
// deadline after the server received it. fn returns the write's error:
// it is fn's own, of something that ran, and must not be reported not
// applied because it wraps the same sentinel as the Tx's read error.
func TestTransactionFnErrorOfAWriteIsNotNotApplied(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	// The write sets its key, then keeps the server busy past its
	// caller's deadline; the script is bounded by its own clock.
	const slowSet = `redis.call('SET', KEYS[1], 'written')
local t0 = redis.call('TIME')
repeat
	local t = redis.call('TIME')
until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 300000
return 1`
	calls := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, rerr := tx.Do(rctx, "XREAD", "BLOCK", 5000, "STREAMS", "{t}stream", "$")
		if !errors.Is(rerr, context.DeadlineExceeded) {
			return fmt.Errorf("the read: %v; want it abandoned on its deadline", rerr)
		}
		wctx, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel2()
		_, werr := c.Do(wctx, "EVAL", slowSet, 1, "{t}written")
		return fmt.Errorf("the write: %w", werr)
	}, "{t}watched")
	if calls != 1 {
		t.Errorf("fn ran %d times", calls)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, gerr := c.Get(ctx, "{t}written")
		if gerr == nil && v == "written" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET of the written key: %q, %v; the write did not run, so the test proves nothing", v, gerr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Transaction: %v; want fn's error", err)
	}
	if errors.Is(err, ErrNotApplied) || OutcomeOf(err) == OutcomeNotApplied || OutcomeOf(err) == OutcomeNotSent {
		t.Errorf("Transaction: %v (OutcomeOf %v); it says not applied of a write that was applied", err, OutcomeOf(err))
	}

	// The read's own error, returned by fn, still says not applied.
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, rerr := tx.Do(rctx, "XREAD", "BLOCK", 5000, "STREAMS", "{t}stream", "$")
		return fmt.Errorf("the read: %w", rerr)
	}, "{t}watched")
	if !errors.Is(err, ErrNotApplied) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Transaction whose fn returned its Tx's read error: %v; want it not applied", err)
	}
}
