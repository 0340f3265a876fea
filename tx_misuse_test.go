package redpipe

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// exists reads whether key exists, over a connection of the server's own.
func exists(t *testing.T, srv *redistest.Server, key string) bool {
	t.Helper()
	v, err := srv.Do("EXISTS", key)
	if err != nil {
		t.Fatal(err)
	}
	return v.(int64) == 1
}

// Once Multi is open, the Tx runs nothing: every way of sending on it is
// refused before a byte goes out, and the open transaction is refused
// with it, since it was meant to include what was refused.
func TestTxCallsWhileMultiOpenAreRefused(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	srv.MustDo(t, "CONFIG", "RESETSTAT")
	p := tx.Multi().Set("k", "in")

	var ue *UsageError
	calls := map[string]func() error{
		"Set":      func() error { return tx.Set(ctx, "outside", "x") },
		"Get":      func() error { _, err := tx.Get(ctx, "k"); return err },
		"Do":       func() error { _, err := tx.Do(ctx, "SET", "outside", "x"); return err },
		"Watch":    func() error { return tx.Watch(ctx, "other") },
		"Unwatch":  func() error { return tx.Unwatch(ctx) },
		"Pipeline": func() error { _, err := tx.Pipeline().Set("outside", "x").Exec(ctx); return err },
		"Multi":    func() error { _, err := tx.Multi().Set("outside", "x").Exec(ctx); return err },
		"Script":   func() error { _, err := NewScript("return 1").Run(ctx, tx, nil); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.As(err, &ue) || !strings.Contains(err.Error(), "Multi") {
			t.Errorf("%s while Multi is open = %v, want a *UsageError", name, err)
		}
		if SafeToRetry(call()) != true {
			t.Errorf("%s while Multi is open is not reported as certainly not sent", name)
		}
	}
	for _, cmd := range []string{"set", "get", "watch", "unwatch", "evalsha", "eval", "multi"} {
		if n := cmdCalls(t, srv, cmd); n != 0 {
			t.Errorf("the server ran %s %d times while the Tx should have sent nothing", cmd, n)
		}
	}
	if !tx.Watching() {
		t.Fatal("a refused Unwatch cleared Watching")
	}

	// The open transaction now fails, certainly not applied.
	_, err = p.Exec(ctx)
	if !errors.Is(err, ErrNotApplied) || !errors.As(err, &ue) {
		t.Fatalf("Exec of the transaction the Tx was refused beside = %v, want a usage error matching ErrNotApplied", err)
	}
	if exists(t, srv, "k") || exists(t, srv, "outside") {
		t.Fatal("a refused transaction wrote")
	}

	// A Discard clears the refusal along with the commands.
	p2 := tx.Multi().Set("k", "a")
	if _, err := tx.Get(ctx, "k"); !errors.As(err, &ue) {
		t.Fatalf("Get while the second Multi is open = %v", err)
	}
	p2.Discard()
	if replies, err := p2.Set("k", "b").Exec(ctx); err != nil || len(replies) != 1 {
		t.Fatalf("Exec after Discard = %v, %v", replies, err)
	}
	if v, _ := srv.Do("GET", "k"); v != "b" {
		t.Fatalf("k = %v, want b", v)
	}
}

// Inside Transaction the same misuse ends the call with an error that is
// true: nothing ran, on any attempt, whether fn returns the refusal or
// ignores it.
func TestTransactionCommandOnTxAfterMulti(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "CONFIG", "RESETSTAT")
	for _, ignore := range []bool{false, true} {
		attempts := 0
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			attempts++
			tx.Multi().Set("a", "1")
			err := tx.Set(ctx, "b", "2")
			if ignore {
				return nil
			}
			return err
		}, "a")
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Fatalf("ignore=%v: Transaction = %v, want the *UsageError", ignore, err)
		}
		if ignore && !errors.Is(err, ErrNotApplied) {
			t.Fatalf("Transaction whose fn ignored the refusal = %v, want ErrNotApplied", err)
		}
		if attempts != 1 {
			t.Fatalf("fn ran %d times for a usage error", attempts)
		}
	}
	if exists(t, srv, "a") || exists(t, srv, "b") {
		t.Fatal("a refused transaction wrote")
	}
	if n := cmdCalls(t, srv, "set"); n != 0 {
		t.Fatalf("the server ran SET %d times", n)
	}
}

// A write on the Tx of a Transaction runs at once and again on every
// retry, so it is refused; reads are what the Tx is for.
func TestTransactionRefusesWritesOutsideMulti(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "SET", "n", "1")
	srv.MustDo(t, "CONFIG", "RESETSTAT")
	var ue *UsageError
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		if _, err := tx.Get(ctx, "n"); err != nil {
			return err
		}
		if _, err := tx.Pipeline().Get("n").Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.Pipeline().Incr("n").Exec(ctx); !errors.As(err, &ue) {
			t.Errorf("a write in the Tx's Pipeline = %v, want a *UsageError", err)
		}
		return tx.Set(ctx, "n", "2")
	}, "n")
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "every retry") {
		t.Fatalf("Transaction with a write on its Tx = %v", err)
	}
	if n := cmdCalls(t, srv, "set") + cmdCalls(t, srv, "incr"); n != 0 {
		t.Fatalf("the server ran %d writes", n)
	}
	// A Tx from Watch is the caller's to drive: a write runs, as documented.
	tx, err := c.Watch(ctx, "n")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.Set(ctx, "n", "3"); err != nil {
		t.Fatalf("a write on a Watch session: %v", err)
	}
}

// A blocking command on a session whose context ends while the server is
// still blocked in it: the session's connection is closed, so that the
// block takes nothing (an element pushed later stays in the list) and
// holds up nothing. The session reports its connection gone, and works
// again after Reset. Alone and in a session's pipeline.
func TestTxBlockingCallCancelled(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	for name, block := range map[string]func(ctx context.Context, tx *Tx) error{
		"BLPop": func(ctx context.Context, tx *Tx) error { _, err := tx.BLPop(ctx, 0, "q"); return err },
		"Pipeline": func(ctx context.Context, tx *Tx) error {
			_, err := tx.Pipeline(NoTransaction).BLPop(0, "q").Exec(ctx)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			tx, err := c.Watch(ctx, "w")
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			err = block(short, tx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s past its context = %v, want the deadline", name, err)
			}
			srv.MustDo(t, "RPUSH", "q", "kept")
			waitForServer(t, ctx, "the connection of the block to be closed", func() (bool, string) {
				n, _ := srv.MustDo(t, "LLEN", "q").(int64)
				info, _ := srv.MustDo(t, "INFO", "clients").(string)
				blocked := ""
				for line := range strings.Lines(info) {
					if v, ok := strings.CutPrefix(strings.TrimSpace(line), "blocked_clients:"); ok {
						blocked = v
					}
				}
				return n == 1 && blocked == "0", fmt.Sprintf("LLEN q = %d, %s clients blocked", n, blocked)
			})
			var ue *UsageError
			if _, err := tx.Get(ctx, "g"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "Reset") || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Get on the session after its block was cut = %v, want a *UsageError that says to Reset", err)
			}
			if err := tx.Reset(); err != nil {
				t.Fatal(err)
			}
			if s, err := tx.Ping(ctx); err != nil || s != "PONG" {
				t.Fatalf("Ping after Reset = %q, %v", s, err)
			}
			srv.MustDo(t, "DEL", "q")
		})
	}
}

// A script run on the Tx of a Transaction may write as surely as SET, though
// EVAL and FCALL carry no write flag: it is refused too, as are the
// Script helpers on that Tx. Read-only scripts (EVAL_RO) run.
func TestTransactionRefusesScriptsOutsideMulti(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "SET", "w", "0")
	incr := NewScript("return redis.call('INCR', KEYS[1])")
	attempts := 0
	replies, err := c.Transaction(WithTxOptions(ctx, TxOptions{MaxAttempts: 3}), func(tx *Tx) error {
		attempts++
		var ue *UsageError
		if _, err := tx.Do(ctx, "EVAL", "return redis.call('INCR', KEYS[1])", 1, "side"); !errors.As(err, &ue) {
			t.Errorf("EVAL on the Tx = %v, want a *UsageError", err)
		}
		if _, err := incr.Run(ctx, tx, []string{"side"}); !errors.As(err, &ue) {
			t.Errorf("Script.Run on the Tx = %v, want a *UsageError", err)
		}
		if _, err := tx.Do(ctx, "FCALL", "nosuch", 1, "side"); !errors.As(err, &ue) {
			t.Errorf("FCALL on the Tx = %v, want a *UsageError", err)
		}
		// Nor does any other command that is not read-only: PUBLISH
		// reaches subscribers, and a command the table does not know (a
		// module's) may write.
		if _, err := tx.Do(ctx, "PUBLISH", "ch", "m"); !errors.As(err, &ue) {
			t.Errorf("PUBLISH on the Tx = %v, want a *UsageError", err)
		}
		if _, err := tx.Do(ctx, "NOSUCHMODULE.SET", "side", "1"); !errors.As(err, &ue) {
			t.Errorf("an unknown command on the Tx = %v, want a *UsageError", err)
		}
		if _, err := tx.Pipeline().Get("w").Do("PUBLISH", "ch", "m").Exec(ctx); !errors.As(err, &ue) {
			t.Errorf("PUBLISH in a pipeline on the Tx = %v, want a *UsageError", err)
		}
		if v, err := tx.Do(ctx, "EVAL_RO", "return redis.call('GET', KEYS[1])", 1, "w"); err != nil || v.String() == "" {
			t.Errorf("EVAL_RO on the Tx = %v, %v; want it run", v, err)
		}
		// Commands that change no data run: more keys to watch, PING,
		// TIME, alone or in a pipeline.
		if err := tx.Watch(ctx, "w2"); err != nil {
			t.Errorf("Watch on the Tx = %v", err)
		}
		if _, err := tx.Ping(ctx); err != nil {
			t.Errorf("Ping on the Tx = %v", err)
		}
		if _, err := tx.Pipeline().Ping().Do("TIME").Get("w").Exec(ctx); err != nil {
			t.Errorf("a pipeline of PING, TIME and GET on the Tx = %v", err)
		}
		if attempts < 3 {
			srv.MustDo(t, "SET", "w", strconv.Itoa(attempts)) // spoils the WATCH
		}
		tx.Multi().Set("w", "done")
		return nil
	}, "w")
	if err != nil || len(replies) != 1 || attempts != 3 {
		t.Fatalf("Transaction = %v, %v after %d attempts; want one reply after 3", replies, err, attempts)
	}
	if v, _ := srv.Do("GET", "side"); v != nil {
		t.Fatalf("side = %v: a script on the Tx ran outside the transaction", v)
	}
}

// Close or Reset on the Tx of a Transaction, even a deferred Close out of
// habit, would drop the Multi pipeline fn queued, and Transaction would
// report a transaction that never ran as done. Both are refused and the
// transaction runs.
func TestTransactionRefusesCloseAndReset(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	for name, end := range map[string]func(*Tx) error{"Close": (*Tx).Close, "Reset": (*Tx).Reset} {
		key := "ended:" + name
		var endErr error
		replies, err := c.Transaction(ctx, func(tx *Tx) error {
			tx.Multi().Set(key, "1")
			endErr = end(tx)
			return nil
		}, key)
		var ue *UsageError
		if !errors.As(endErr, &ue) {
			t.Errorf("%s on the Tx of a Transaction = %v, want a *UsageError", name, endErr)
		}
		if err != nil || len(replies) != 1 || !exists(t, srv, key) {
			t.Errorf("Transaction after %s = %v, %v; want the Multi run", name, replies, err)
		}
	}
	// Once Transaction has returned, the Tx is closed and Close does nothing.
	var kept *Tx
	if _, err := c.Transaction(ctx, func(tx *Tx) error { kept = tx; return nil }, "k"); err != nil {
		t.Fatal(err)
	}
	if err := kept.Close(); err != nil {
		t.Fatalf("Close after Transaction = %v, want nil", err)
	}
}

// A Multi pipeline may be discarded and used again, as the Pipeline docs
// promise; inside Transaction what comes after the Discard is the
// transaction, never dropped.
func TestMultiDiscardThenExec(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	p := tx.Multi()
	p.Set("k", "1").Discard()
	replies, err := p.Set("k", "2").Exec(ctx)
	if err != nil || len(replies) != 1 || replies[0].String() != "OK" {
		t.Fatalf("Set, Discard, Set, Exec = %v, %v; want one OK", replies, err)
	}
	if v, _ := srv.Do("GET", "k"); v != "2" {
		t.Fatalf("k = %v, want 2", v)
	}

	replies, err = c.Transaction(ctx, func(tx *Tx) error {
		p := tx.Multi().Set("a", "1")
		p.Discard()
		p.Set("b", "2").Incr("n")
		return nil
	}, "b")
	if err != nil || len(replies) != 2 || replies[1].String() != "1" {
		t.Fatalf("Transaction with a Discard = %v, %v; want the two commands after it", replies, err)
	}
	if exists(t, srv, "a") || !exists(t, srv, "b") {
		t.Fatal("the Discard did not drop a, or b was lost")
	}

	// After its Exec a Multi pipeline is finished: EXEC ended the watch.
	var ue *UsageError
	if _, err := p.Set("k", "3").Exec(ctx); !errors.As(err, &ue) || !errors.Is(err, ErrNotApplied) {
		t.Fatalf("a second Exec of one Multi = %v, want a usage error", err)
	}
}

// Commands queued after fn's own Exec would go nowhere: the call fails, and
// since that Exec may have applied, it does not claim otherwise.
func TestTransactionCommandsAfterOwnExec(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	attempts := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		attempts++
		p := tx.Multi().Set("first", "1")
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		p.Set("second", "2")
		return nil
	}, "first")
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "not sent: 1 command queued") {
		t.Fatalf("Transaction = %v, want a usage error about the unsent command", err)
	}
	if errors.Is(err, ErrNotApplied) || SafeToRetry(err) || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("the error claims nothing applied, yet fn's own Exec did: %v (%v)", err, OutcomeOf(err))
	}
	if attempts != 1 || !exists(t, srv, "first") || exists(t, srv, "second") {
		t.Fatalf("attempts=%d first=%v second=%v", attempts, exists(t, srv, "first"), exists(t, srv, "second"))
	}

	// fn's own Exec met a watch conflict, which fn went past: nothing was
	// applied, and the error says so rather than an unknown outcome.
	attempts = 0
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		attempts++
		srv.MustDo(t, "SET", "first", "other")
		p := tx.Multi().Set("first", "mine")
		if _, err := p.Exec(ctx); !errors.Is(err, ErrWatch) {
			t.Errorf("fn's own Exec after a conflict = %v, want ErrWatch", err)
		}
		p.Set("second", "2")
		return nil
	}, "first")
	if !errors.As(err, &ue) || !errors.Is(err, ErrNotApplied) || !SafeToRetry(err) || attempts != 1 {
		t.Fatalf("Transaction whose fn queued after its own Exec that was not applied = %v (outcome %v) after %d attempts; "+
			"want the usage error, not applied, fn run once", err, OutcomeOf(err), attempts)
	}
	if v := srv.MustDo(t, "GET", "first"); v != "other" || exists(t, srv, "second") {
		t.Fatalf("first = %v, second exists %v; want other, no second", v, exists(t, srv, "second"))
	}
}

// Reset leaves the session reusable, as redis-py users loop with it:
// watch, read, multi, exec or fail, reset, and again.
func TestTxResetReusesSession(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	srv.MustDo(t, "SET", "seq", "0")
	for i := 1; i <= 3; i++ {
		if err := tx.Watch(ctx, "seq"); err != nil {
			t.Fatalf("turn %d: Watch after Reset: %v", i, err)
		}
		if !tx.Watching() {
			t.Fatalf("turn %d: Watching false after WATCH", i)
		}
		cur := must(tx.Get(ctx, "seq"))
		if cur != strconv.Itoa(i-1) {
			t.Fatalf("turn %d: seq = %s", i, cur)
		}
		if _, err := tx.Multi().Set("seq", strconv.Itoa(i)).Exec(ctx); err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
		if err := tx.Reset(); err != nil {
			t.Fatal(err)
		}
	}

	// Reset drops an open Multi unsent and UNWATCHes: a change to the key
	// it watched no longer spoils the next transaction.
	if err := tx.Watch(ctx, "seq"); err != nil {
		t.Fatal(err)
	}
	dropped := tx.Multi().Set("dropped", "1")
	if err := tx.Reset(); err != nil {
		t.Fatal(err)
	}
	if tx.Watching() {
		t.Fatal("Watching after Reset")
	}
	srv.MustDo(t, "SET", "seq", "by-another-client")
	if _, err := tx.Multi().Set("after-reset", "1").Exec(ctx); err != nil {
		t.Fatalf("a transaction after Reset met the old watch: %v", err)
	}
	var ue *UsageError
	if _, err := dropped.Exec(ctx); !errors.As(err, &ue) {
		t.Fatalf("Exec of the Multi a Reset dropped = %v, want a usage error", err)
	}
	if exists(t, srv, "dropped") {
		t.Fatal("Reset sent the open Multi")
	}

	// A session whose connection failed comes back to life on a new one.
	id := clientID(t, ctx, tx)
	srv.MustDo(t, "CLIENT", "KILL", "ID", strconv.FormatInt(id, 10))
	if _, err := tx.Get(ctx, "seq"); err == nil {
		t.Fatal("Get on a killed connection succeeded")
	}
	if err := tx.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Watch(ctx, "seq"); err != nil {
		t.Fatalf("Watch after resetting a failed session: %v", err)
	}
	if id2 := clientID(t, ctx, tx); id2 == id {
		t.Fatal("the failed connection was kept")
	}
	if open, _ := c.pool.Stats(); open != 1 {
		t.Fatalf("%d pooled connections open, want the one the session holds", open)
	}

	// Close still ends it.
	tx.Close()
	if err := tx.Reset(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reset after Close = %v, want ErrClosed", err)
	}
}

// Every call on a closed Tx fails with an error matching ErrClosed that
// still says what was misused, the Exec of a Multi pipeline left open at
// Close included (it said the pipeline was finished, not matching
// ErrClosed).
func TestClosedTxMatchesErrClosed(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	open := tx.Multi().Set("k", "1")
	tx.Close()
	errs := map[string]error{
		"Get":   func() error { _, err := tx.Get(ctx, "k"); return err }(),
		"Watch": tx.Watch(ctx, "k"),
		"Multi": func() error { _, err := tx.Multi().Set("k", "1").Exec(ctx); return err }(),
		// A Multi after Close, left unsent, made the next one a second
		// Multi, refused for that alone, not matching ErrClosed.
		"Multi again": func() error {
			tx.Multi().Set("k", "1")
			_, err := tx.Multi().Set("k", "2").Exec(ctx)
			return err
		}(),
		"open": func() error { _, err := open.Exec(ctx); return err }(),
		"Pipeline": func() error {
			_, err := tx.Pipeline().Get("k").Exec(ctx)
			return err
		}(),
	}
	for name, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%s after Close = %v, want a *UsageError", name, err)
		}
		if name != "Multi" && name != "Multi again" && name != "open" && !strings.Contains(err.Error(), "after Close") {
			t.Errorf("%s after Close = %q, want the usage message", name, err)
		}
	}
}

// Every transaction refused before sending is certainly not applied, and
// says so.
func TestTransactionRefusedBeforeSendingIsNotApplied(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "CONFIG", "RESETSTAT")
	check := func(name string, err error) {
		t.Helper()
		var ae *ArityError
		if !errors.Is(err, ErrNotApplied) || !errors.As(err, &ae) || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("%s = %v (%v), want an *ArityError matching ErrNotApplied, not sent", name, err, OutcomeOf(err))
		}
	}
	_, err := c.Pipeline().Set("k", "1").Do("GET").Exec(ctx)
	check("client transaction", err)
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Multi().Set("k", "1").Do("GET", "a", "b").Exec(ctx)
	check("Multi", err)
	tx.Close()
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		tx.Multi().Set("k", "1").Do("INCR")
		return nil
	}, "k")
	check("Transaction", err)
	if n := cmdCalls(t, srv, "multi") + cmdCalls(t, srv, "set"); n != 0 {
		t.Fatalf("refused transactions sent %d commands", n)
	}
	// A plain batch is no transaction, and says nothing of one.
	if _, err := c.Pipeline(NoTransaction).Do("GET").Exec(ctx); errors.Is(err, ErrNotApplied) {
		t.Fatalf("a refused plain batch matches ErrNotApplied: %v", err)
	}
}

// A WATCH the server refused arms nothing, so no UNWATCH follows it.
func TestFailedWatchSendsNoUnwatch(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "limited", "on", ">pw", "~allowed:*", "+@all")
	c, err := NewClient(Options{Addr: srv.Addr, Username: "limited", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	srv.MustDo(t, "CONFIG", "RESETSTAT")
	var se *Error
	if _, err := c.Watch(ctx, "forbidden"); !errors.As(err, &se) || se.Prefix != "NOPERM" {
		t.Fatalf("Watch of a forbidden key = %v, want NOPERM", err)
	}
	if n := cmdCalls(t, srv, "unwatch"); n != 0 {
		t.Fatalf("UNWATCH sent %d times after a refused WATCH", n)
	}

	// A refused WATCH leaves an armed one armed: Close still UNWATCHes.
	tx, err := c.Watch(ctx, "allowed:k")
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Watch(ctx, "forbidden"); !errors.As(err, &se) {
		t.Fatalf("second Watch = %v, want NOPERM", err)
	}
	if !tx.Watching() {
		t.Fatal("a refused WATCH disarmed the one before it")
	}
	tx.Close()
	if n := cmdCalls(t, srv, "unwatch"); n != 1 {
		t.Fatalf("UNWATCH sent %d times on Close with a watch armed, want 1", n)
	}
}

// Pipeline options are values given when a pipeline is made; none can be
// applied to one already made, where MULTI may already be in its buffer.
func TestPipelineOptionsOnlyAtConstruction(t *testing.T) {
	for name, o := range map[string]any{"NoTransaction": NoTransaction, "ErrorsInReplies": ErrorsInReplies, "WithDecoder": WithDecoder("GET", nil)} {
		if reflect.TypeOf(o).Kind() == reflect.Func {
			t.Errorf("%s is a function a caller can apply to a made Pipeline", name)
		}
	}
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "CONFIG", "RESETSTAT")
	replies, err := c.Pipeline(NoTransaction, ErrorsInReplies, PipelineOption{}).Set("k", "v").Incr("k").Exec(ctx)
	if err != nil || len(replies) != 2 || replies[1].Err() == nil {
		t.Fatalf("plain batch with errors in replies = %v, %v", replies, err)
	}
	if n := cmdCalls(t, srv, "multi"); n != 0 {
		t.Fatalf("a NoTransaction pipeline sent MULTI %d times", n)
	}
}

func TestTxWatchingAndPipelineCommands(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if tx.Watching() {
		t.Fatal("Watching with no keys watched")
	}
	tx.Watch(ctx, "k")
	if !tx.Watching() {
		t.Fatal("not Watching after WATCH")
	}
	p := tx.Multi().Set("k", "1").ConfigGet("maxmemory").Do("get", "k")
	if got, want := p.Commands(), []string{"SET", "CONFIG GET", "GET"}; !slices.Equal(got, want) {
		t.Fatalf("Commands() = %q, want %q", got, want)
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if tx.Watching() {
		t.Fatal("Watching after EXEC, which ends every watch")
	}
	if len(p.Commands()) != 0 {
		t.Fatal("Commands() not empty after Exec")
	}
	tx.Watch(ctx, "k")
	tx.Unwatch(ctx)
	if tx.Watching() {
		t.Fatal("Watching after UNWATCH")
	}
}

// TestTxNotWatchingAfterLostConnection: a session whose connection failed
// while it watched can have no watch armed once Reset let that connection
// go, or Close closed it, and Watching says so. It went on saying true.
func TestTxNotWatchingAfterLostConnection(t *testing.T) {
	c, srv := newTestClient(t, Options{MaxRetries: -1})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "lost")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for _, end := range []string{"Reset", "Close"} {
		if err := tx.Watch(ctx, "lost"); err != nil {
			t.Fatal(err)
		}
		srv.MustDo(t, "CLIENT", "KILL", "TYPE", "normal")
		if _, err := tx.Get(ctx, "lost"); err == nil {
			t.Fatal("Get on a killed connection succeeded")
		}
		if end == "Reset" {
			if err := tx.Reset(); err != nil {
				t.Fatal(err)
			}
		} else {
			tx.Close()
		}
		if tx.Watching() {
			t.Errorf("Watching after %s of a session whose connection failed", end)
		}
	}
}

// An Exec that fn runs itself may apply. If fn then fails, on a watch
// conflict of a second Multi say, the attempt is not run again, which
// would apply the first Exec again, and the error says the outcome is
// unknown rather than not applied.
func TestTransactionAfterOwnExecApplied(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := WithTxOptions(ctxT(t), TxOptions{MaxAttempts: 3})
	calls := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		if _, err := tx.Multi().Incr("own").Exec(ctx); err != nil {
			return err
		}
		if err := tx.Watch(ctx, "spoiled"); err != nil {
			return err
		}
		srv.MustDo(t, "SET", "spoiled", strconv.Itoa(calls))
		_, err := tx.Multi().Incr("second").Exec(ctx)
		return err
	}, "own")
	if v, _ := srv.Do("GET", "own"); v != "1" || calls != 1 {
		t.Fatalf("own = %v after %d runs of fn, want 1 after one", v, calls)
	}
	if err == nil || errors.Is(err, ErrNotApplied) || errors.Is(err, ErrWatch) || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("Transaction = %v (outcome %v), want an error of unknown outcome", err, OutcomeOf(err))
	}

	// The same when the conflict meets the Exec that follows fn.
	calls = 0
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		calls++
		if _, err := tx.Multi().Incr("own2").Exec(ctx); err != nil {
			return err
		}
		if err := tx.Watch(ctx, "spoiled"); err != nil {
			return err
		}
		srv.MustDo(t, "SET", "spoiled", strconv.Itoa(calls))
		tx.Multi().Incr("second")
		return nil
	}, "own2")
	if v, _ := srv.Do("GET", "own2"); v != "1" || calls != 1 {
		t.Fatalf("own2 = %v after %d runs of fn, want 1 after one", v, calls)
	}
	if err == nil || errors.Is(err, ErrNotApplied) || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("Transaction = %v (outcome %v), want an error of unknown outcome", err, OutcomeOf(err))
	}

	// An empty Multi of fn's applies nothing: a conflict after it is
	// retried as any.
	calls = 0
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		calls++
		if _, err := tx.Multi().Exec(ctx); err != nil {
			return err
		}
		// EXEC ended the watch: watch again, and spoil it once.
		if err := tx.Watch(ctx, "empty"); err != nil {
			return err
		}
		if calls == 1 {
			srv.MustDo(t, "SET", "empty", "spoiled")
		}
		tx.Multi().Incr("third")
		return nil
	}, "empty")
	if err != nil || calls != 2 {
		t.Fatalf("Transaction after an empty Multi = %v after %d runs of fn, want success after 2", err, calls)
	}
}

// What keeps a Transaction from reaching EXEC, a server that cannot be
// reached or a connection lost while fn reads, leaves it certainly not
// applied, and its error says so as a transactional Pipeline's does. fn's
// own errors are its own.
func TestTransactionFailedBeforeExecIsNotApplied(t *testing.T) {
	c, srv := newTestClient(t, Options{MaxRetries: -1})
	ctx := ctxT(t)
	srv.MustDo(t, "SET", "n", "1")
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		srv.MustDo(t, "CLIENT", "KILL", "TYPE", "normal")
		_, err := tx.Get(ctx, "n")
		return err
	}, "n")
	if !errors.Is(err, ErrNotApplied) {
		t.Errorf("Transaction whose connection was lost as fn read = %v, want it to match ErrNotApplied", err)
	}
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		_, err := tx.Do(ctx, "LPUSH", "n", "x") // refused: a write on the Tx
		return err
	}, "n")
	if !errors.Is(err, ErrNotApplied) || strings.Count(err.Error(), "not applied") != 1 {
		t.Errorf("Transaction whose fn met a refusal = %v, want it to match ErrNotApplied, said once", err)
	}
	mine := errors.New("insufficient funds")
	if _, err := c.Transaction(ctx, func(tx *Tx) error { return mine }, "n"); err != mine {
		t.Errorf("Transaction whose fn failed = %v, want fn's own error as it is", err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.Transaction(short, func(tx *Tx) error { tx.Multi().Incr("n"); return nil }, "n")
	if !errors.Is(err, ErrNotApplied) {
		t.Errorf("Transaction with the server down = %v, want it to match ErrNotApplied", err)
	}
	if _, err := c.Pipeline().Incr("n").Exec(short); !errors.Is(err, ErrNotApplied) {
		t.Errorf("a transactional Pipeline with the server down = %v, want it to match ErrNotApplied", err)
	}
}

// TestTransactionReadAbandonedIsNotApplied: a read on the Tx of a
// Transaction that ends on its context after it was sent (a blocking
// XREAD, a GET the paused server has not answered) is of unknown outcome
// as a call, yet fn can only have read: when fn returns it, Transaction
// says the transaction was not applied, as it does for the same read in a
// Pipeline of the Tx. It reported the read's own unknown outcome.
func TestTransactionReadAbandonedIsNotApplied(t *testing.T) {
	c, srv := newTestClient(t, Options{PoolSize: 2})
	ctx := ctxT(t)
	calls := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		id := strconv.FormatInt(clientID(t, ctx, tx), 10)
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			waitBlockedIn(t, ctx, srv, "xread", id)
			cancel()
		}()
		_, err := tx.Do(rctx, "XREAD", "BLOCK", "0", "STREAMS", "abandoned", "$")
		return err
	}, "abandoned")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrNotApplied) || OutcomeOf(err) != OutcomeNotApplied || calls != 1 {
		t.Errorf("Transaction whose blocking read was cancelled = %v (outcome %v) after %d calls of fn; "+
			"want the cancellation, not applied, fn run once", err, OutcomeOf(err), calls)
	}

	calls = 0
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		calls++
		// Every client is paused, the one that would unpause included:
		// the pause ends by itself, long after the read's deadline.
		srv.MustDo(t, "CLIENT", "PAUSE", "500", "ALL")
		rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := tx.Get(rctx, "abandoned")
		if OutcomeOf(err) != OutcomeUnknown {
			t.Errorf("GET that timed out on a paused server = %v (outcome %v), want an unknown outcome", err, OutcomeOf(err))
		}
		return err
	}, "abandoned")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotApplied) || calls != 1 {
		t.Errorf("Transaction whose read timed out = %v (outcome %v) after %d calls of fn; "+
			"want the deadline, not applied, fn run once", err, OutcomeOf(err), calls)
	}
	assertCleanConnection(t, ctx, c, "abandoned")
}

// TestTransactionReadDecodeFailureIsNotApplied: a read on the Tx of a
// Transaction whose reply its Decoder refuses ran, yet only read: when fn
// returns that *DecodeError, Transaction says the transaction was not
// applied, as it does for the same read in a Pipeline of the Tx. It
// reported an unknown outcome, the DecodeError's own.
func TestTransactionReadDecodeFailureIsNotApplied(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 2})
	ctx := ctxT(t)
	refused := errors.New("refused by the decoder")
	c.SetDecoder("GET", func(Value) (any, error) { return nil, refused })
	for _, viaPipeline := range []bool{false, true} {
		calls := 0
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			calls++
			if viaPipeline {
				p := tx.Pipeline()
				p.Do("GET", "decoded")
				_, err := p.Exec(ctx)
				return err
			}
			_, err := tx.Do(ctx, "GET", "decoded")
			return err
		}, "decoded")
		var de *DecodeError
		if !errors.As(err, &de) || !errors.Is(err, refused) || !errors.Is(err, ErrNotApplied) || calls != 1 {
			t.Errorf("Transaction whose read failed to decode (pipeline %v) = %v (outcome %v) after %d calls of fn; "+
				"want the DecodeError, not applied, fn run once", viaPipeline, err, OutcomeOf(err), calls)
		}
	}
	assertCleanConnection(t, ctx, c, "decoded")
}

// TestTransactionReadErrorReplyIsNotApplied: a read on the Tx of a
// Transaction that the server answers with an error of its own (here ERR,
// whose outcome alone is unknown) only read: when fn returns the reply's
// Err, Transaction says the transaction was not applied, as it does for
// the same read in a Pipeline of the Tx. It reported an unknown outcome.
func TestTransactionReadErrorReplyIsNotApplied(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 2})
	ctx := ctxT(t)
	calls := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		v, err := tx.Do(ctx, "LRANGE", "erred", "first", "last")
		if err != nil {
			return err
		}
		if v.Err() == nil {
			t.Errorf("LRANGE with words for indexes = %v, want an error reply", v)
		}
		return v.Err()
	}, "erred")
	var se *Error
	if !errors.As(err, &se) || se.Prefix != "ERR" || !errors.Is(err, ErrNotApplied) || calls != 1 {
		t.Errorf("Transaction whose read was refused = %v (outcome %v) after %d calls of fn; "+
			"want the server's ERR, not applied, fn run once", err, OutcomeOf(err), calls)
	}
	assertCleanConnection(t, ctx, c, "erred")
}

// TestTransactionRefusesNegativeTxOptions: TxOptions under WithTxOptions
// with a negative field are refused before fn runs. A MaxAttempts of -1,
// which Options.MaxRetries would read as "none", was taken for the
// default of 16, and the others for their defaults.
func TestTransactionRefusesNegativeTxOptions(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	for _, tc := range []struct {
		o     TxOptions
		field string
	}{
		{TxOptions{MaxAttempts: -1}, "TxOptions.MaxAttempts"},
		{TxOptions{MinBackoff: -time.Millisecond}, "TxOptions.MinBackoff"},
		{TxOptions{MaxBackoff: -time.Millisecond}, "TxOptions.MaxBackoff"},
		{TxOptions{WatchDelay: -time.Millisecond}, "TxOptions.WatchDelay"},
		{TxOptions{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "TxOptions.MaxBackoff"},
	} {
		calls := 0
		_, err := c.Transaction(WithTxOptions(ctxT(t), tc.o), func(tx *Tx) error {
			calls++
			_, err := tx.Multi().Incr("n").Exec(ctxT(t))
			return err
		}, "n")
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != tc.field || calls != 0 {
			t.Errorf("Transaction with %+v = %v after %d runs of fn; want an *OptionError for %s, fn not run", tc.o, err, calls, tc.field)
		}
	}
}

// TestCloseEndsTransactionPause closes the client while Transaction
// pauses between attempts after a watch conflict. The pause (WatchDelay
// here) ran to its end whatever Close did: the call stayed in flight,
// for ten minutes with this WatchDelay, before its next attempt found the
// client closed. It now ends at Close, with ErrClosed.
func TestCloseEndsTransactionPause(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	// No deadline, which would leave no time for the pause; the test's
	// own waits are bounded by bound.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bound := time.After(30 * time.Second)
	pausing := make(chan struct{})
	opts := TxOptions{MaxAttempts: 3, WatchDelay: 10 * time.Minute, OnRetry: func(int, error) { close(pausing) }}
	done := make(chan error, 1)
	go func() {
		_, err := c.Transaction(WithTxOptions(ctx, opts), func(tx *Tx) error {
			srv.MustDo(t, "SET", "watched", "changed") // spoils the watch
			_, err := tx.Multi().Incr("n").Exec(ctx)
			return err
		}, "watched")
		done <- err
	}()
	select {
	case <-pausing:
	case err := <-done:
		t.Fatalf("Transaction = %v before any watch conflict", err)
	case <-bound:
		t.Fatal("no watch conflict")
	}
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Transaction cut short by Close = %v, want ErrClosed", err)
		}
	case <-bound:
		cancel()
		<-done
		t.Fatal("Transaction still pausing long after Close")
	}
}

// TestCloseEndsTurnWait: Close ends the wait of a Transaction for its turn
// on keys that another Transaction of the client holds, which then fails
// with ErrClosed, not sent. The wait ran to its end whatever Close did
// (turnWait, an hour here to show it).
func TestCloseEndsTurnWait(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	c.turnWait = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bound := time.After(30 * time.Second)
	holding, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			close(holding)
			<-release
			return nil
		}, "turned")
		first <- err
	}()
	defer func() {
		close(release)
		<-first
	}()
	<-holding
	second := make(chan error, 1)
	go func() {
		_, err := c.Transaction(ctx, func(tx *Tx) error { return nil }, "turned")
		second <- err
	}()
	waitForServer(t, ctxT(t), "the second transaction to wait for the turn", func() (bool, string) {
		n := blockedTakingTurns()
		return n == 1, strconv.Itoa(n) + " goroutines waiting for a turn"
	})
	c.Close()
	select {
	case err := <-second:
		if !errors.Is(err, ErrClosed) || OutcomeOf(err) != OutcomeNotSent {
			t.Fatalf("Transaction waiting for its turn at Close = %v (outcome %v), want ErrClosed, not sent", err, OutcomeOf(err))
		}
	case <-bound:
		cancel()
		t.Fatal("Transaction still waiting for its turn long after Close")
	}
}

// fn is given a new Tx on every attempt of a Transaction. A Tx, or a
// pipeline of one, that fn kept from an earlier attempt is closed: using
// it in a later attempt is refused with an error matching ErrClosed that
// says so, and fails the Transaction, not applied, even when fn drops the
// refusal. Such a use was refused with "Tx used after Close" alone, and a
// Multi on the old Tx, or commands queued on its Multi pipeline, went
// nowhere while the Transaction reported success.
func TestTransactionStaleTxFromEarlierAttempt(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	uses := map[string]func(stale *Tx, staleMulti *Pipeline, tx *Tx, key string){
		"Multi": func(stale *Tx, _ *Pipeline, _ *Tx, key string) { stale.Multi().Set(key, "mine") },
		"Get": func(stale *Tx, _ *Pipeline, tx *Tx, key string) {
			stale.Get(ctx, key)
			tx.Multi().Set(key, "mine")
		},
		"Do": func(stale *Tx, _ *Pipeline, tx *Tx, key string) {
			stale.Do(ctx, "GET", key)
			tx.Multi().Set(key, "mine")
		},
		"Pipeline": func(stale *Tx, _ *Pipeline, tx *Tx, key string) {
			stale.Pipeline().Get(key).Exec(ctx)
			tx.Multi().Set(key, "mine")
		},
		"Multi pipeline": func(_ *Tx, staleMulti *Pipeline, _ *Tx, key string) { staleMulti.Set(key, "mine") },
		"Multi pipeline Exec": func(_ *Tx, staleMulti *Pipeline, _ *Tx, key string) {
			staleMulti.Set(key, "mine").Exec(ctx)
		},
	}
	for name, use := range uses {
		key := "stale:" + name
		var stale *Tx
		var staleMulti *Pipeline
		attempts := 0
		replies, err := c.Transaction(ctx, func(tx *Tx) error {
			attempts++
			if attempts == 1 {
				stale, staleMulti = tx, tx.Multi().Set(key, "first")
				srv.MustDo(t, "SET", key, "other") // between WATCH and EXEC: a retry
				return nil
			}
			use(stale, staleMulti, tx, key)
			return nil
		}, key)
		var ue *UsageError
		if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotApplied) || !errors.As(err, &ue) || !strings.Contains(err.Error(), "earlier attempt") {
			t.Errorf("%s on the Tx of an earlier attempt: Transaction = %v, %v; want the misuse, matching ErrClosed, not applied", name, replies, err)
		}
		if v := srv.MustDo(t, "GET", key); v != "other" || attempts != 2 {
			t.Errorf("%s on the Tx of an earlier attempt: %s = %v after %d attempts; want other, after 2", name, key, v, attempts)
		}
	}

	// After Transaction returned, its Tx and pipelines say so.
	var kept *Tx
	var keptMulti *Pipeline
	if _, err := c.Transaction(ctx, func(tx *Tx) error {
		kept, keptMulti = tx, tx.Multi().Set("stale:after", "1")
		return nil
	}, "stale:after"); err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{
		"Get":   func() error { _, err := kept.Get(ctx, "stale:after"); return err }(),
		"Multi": func() error { _, err := kept.Multi().Set("stale:after", "2").Exec(ctx); return err }(),
		"Multi pipeline": func() error {
			_, err := keptMulti.Set("stale:after", "3").Exec(ctx)
			return err
		}(),
	}
	for name, err := range errs {
		if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "after Transaction returned") {
			t.Errorf("%s on the Tx of a Transaction that returned = %v; want ErrClosed, saying so", name, err)
		}
	}
	if v := srv.MustDo(t, "GET", "stale:after"); v != "1" {
		t.Errorf("stale:after = %v, want 1", v)
	}
}

// fn that runs Exec on its Multi pipeline itself, meets a watch conflict
// and returns nil has not had its transaction applied: Transaction runs
// it again, and reports the conflict when no attempt is left, instead of
// a success for a transaction that never ran (nil replies, nil error).
func TestTransactionOwnExecFailedIsNotSuccess(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	attempts := 0
	own := func(tx *Tx) error {
		attempts++
		if attempts == 1 {
			srv.MustDo(t, "SET", "own", "other")
		}
		tx.Multi().Set("own", "mine").Exec(ctx) // its error dropped
		return nil
	}
	if _, err := c.Transaction(ctx, own, "own"); err != nil || attempts != 2 {
		t.Fatalf("Transaction = %v after %d attempts; want success on the second", err, attempts)
	}
	if v := srv.MustDo(t, "GET", "own"); v != "mine" {
		t.Fatalf("own = %v, want mine", v)
	}

	attempts = 0
	_, err := c.Transaction(WithTxOptions(ctx, TxOptions{MaxAttempts: 1}), own, "own")
	if !errors.Is(err, ErrWatch) || attempts != 1 {
		t.Fatalf("Transaction of one attempt = %v after %d attempts; want ErrWatch after 1", err, attempts)
	}
	if v := srv.MustDo(t, "GET", "own"); v != "other" {
		t.Fatalf("own = %v, want other", v)
	}

	// Applied, with a command that failed as it ran: as when Transaction
	// runs the Exec, the replies come back with that command's error.
	replies, err := c.Transaction(ctx, func(tx *Tx) error {
		tx.Multi().Set("own", "x").Incr("own").Exec(ctx)
		return nil
	}, "own")
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 1 || len(replies) != 2 || replies[0].String() != "OK" {
		t.Fatalf("Transaction whose own Exec had a command fail = %v, %v; want both replies and the *CommandError of the INCR", replies, err)
	}
}

// EXEC ends every WATCH. fn that runs Exec itself, then opens another
// Multi without watching again, would have that Multi applied whatever
// the keys became: it was sent unguarded and reported done, a lost
// update. After a watch conflict of fn's own Exec the attempt is retried;
// after an Exec that applied, the Transaction fails with an error of
// unknown outcome that names the misuse, the second Multi unsent.
func TestTransactionMultiAfterOwnExecUnwatched(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	attempts := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		attempts++
		n, err := tx.Get(ctx, "unguarded")
		if err != nil && !errors.Is(err, ErrNil) {
			return err
		}
		if attempts == 1 {
			srv.MustDo(t, "SET", "unguarded", "10")
		}
		if _, err := tx.Multi().Set("unguarded", n+"1").Exec(ctx); errors.Is(err, ErrWatch) {
			tx.Multi().Set("unguarded", n+"2") // fn's own retry, on the value it read before
		}
		return nil
	}, "unguarded")
	if err != nil || attempts != 2 {
		t.Fatalf("Transaction = %v after %d attempts; want success on the second", err, attempts)
	}
	if v := srv.MustDo(t, "GET", "unguarded"); v != "101" {
		t.Fatalf("unguarded = %v, want 101, written on the value read in the second attempt", v)
	}

	attempts = 0
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		attempts++
		if _, err := tx.Multi().Set("first", "1").Exec(ctx); err != nil {
			return err
		}
		srv.MustDo(t, "SET", "unguarded", "other")
		tx.Multi().Set("unguarded", "mine")
		return nil
	}, "unguarded")
	if err == nil || !strings.Contains(err.Error(), "without watching again") || OutcomeOf(err) != OutcomeUnknown || attempts != 1 {
		t.Fatalf("Transaction = %v (outcome %v) after %d attempts; want the misuse, of unknown outcome, after 1", err, OutcomeOf(err), attempts)
	}
	if v := srv.MustDo(t, "GET", "unguarded"); v != "other" {
		t.Fatalf("unguarded = %v, want other: the second Multi was sent unwatched", v)
	}
}

// Calls on one Tx from several goroutines take turns: fn may read on two
// at once, or open its Multi on one while reading on another, and each
// call sees the session as the last left it. The Multi and the read
// raced on the session's state (a data race under -race), and a read
// could pass the check for an open Multi as the Multi opened.
func TestTxCallsFromSeveralGoroutines(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "SET", "par:a", "1")
	srv.MustDo(t, "SET", "par:b", "2")
	for i := range 20 {
		key := "par:" + strconv.Itoa(i)
		var getErr error
		replies, err := c.Transaction(ctx, func(tx *Tx) error {
			done := make(chan error, 2)
			for _, k := range []string{"par:a", "par:b"} {
				go func() {
					v, err := tx.Get(ctx, k)
					if err == nil && v != map[string]string{"par:a": "1", "par:b": "2"}[k] {
						err = fmt.Errorf("%s read %q", k, v)
					}
					done <- err
				}()
			}
			for range 2 {
				if err := <-done; err != nil {
					return err
				}
			}
			go func() { tx.Multi().Set(key, "1"); done <- nil }()
			go func() { _, getErr = tx.Get(ctx, "par:a"); done <- nil }()
			<-done
			<-done
			return nil
		}, "par:a", "par:b")
		// The read went first, and the Multi was applied; or the Multi,
		// and the read was refused with it.
		var ue *UsageError
		switch {
		case getErr == nil && err == nil && len(replies) == 1:
			if !exists(t, srv, key) {
				t.Fatalf("round %d: applied, yet %s is missing", i, key)
			}
		case errors.As(getErr, &ue) && errors.Is(err, ErrNotApplied):
			if exists(t, srv, key) {
				t.Fatalf("round %d: not applied, yet %s exists", i, key)
			}
		default:
			t.Fatalf("round %d: Transaction = %v, %v; the read = %v", i, replies, err, getErr)
		}
	}
}

// fn may leave a call running on another goroutine when it returns: here
// its own Exec of its Multi, which the server takes a while to run. The
// Transaction looked at the Multi, found it open, then ran Exec on it
// after fn's had applied it, and said not applied, as for a finished
// Multi. Whichever Exec comes first now, the Transaction's or fn's, what
// each reports is true.
func TestTransactionExecLeftRunningByFn(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	for i := range 3 {
		key := "left:" + strconv.Itoa(i)
		done := make(chan error, 1)
		replies, err := c.Transaction(ctx, func(tx *Tx) error {
			p := tx.Multi().Do("DEBUG", "SLEEP", "0.2").Set(key, "1")
			go func() {
				_, err := p.Exec(ctx)
				done <- err
			}()
			time.Sleep(20 * time.Millisecond) // lets that Exec start first, most of the time
			return nil
		}, key)
		leftErr := <-done
		applied := exists(t, srv, key)
		switch {
		case err == nil && !applied, errors.Is(err, ErrNotApplied) && applied:
			t.Fatalf("round %d: Transaction = %v, %v, yet %s applied: %v (fn's own Exec: %v)", i, replies, err, key, applied, leftErr)
		case leftErr == nil && !applied, errors.Is(leftErr, ErrNotApplied) && applied && err != nil:
			t.Fatalf("round %d: fn's own Exec = %v, yet %s applied: %v (Transaction: %v)", i, leftErr, key, applied, err)
		}
	}
}

// blockedClients reads blocked_clients from the server's INFO.
func blockedClients(t *testing.T, srv *redistest.Server) string {
	t.Helper()
	info, _ := srv.MustDo(t, "INFO", "clients").(string)
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "blocked_clients:"); ok {
			return v
		}
	}
	return ""
}

// A blocking command with no timeout, run on a Tx by one goroutine, kept
// Watching, Close and Reset of another waiting for ever once calls took
// turns under the session's lock: Watching now reads without the lock,
// and Close and Reset end the block by failing its connection.
func TestTxEndsBlockOfAnotherGoroutine(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	for _, end := range []string{"Close", "Reset"} {
		t.Run(end, func(t *testing.T) {
			tx, err := c.Watch(ctx, "w")
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			// Ended by the test's end at worst, so that a failure here
			// leaves no goroutine behind.
			bctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			blocked := make(chan error, 1)
			go func() {
				_, err := tx.Do(bctx, "XREAD", "BLOCK", "0", "STREAMS", "none", "$")
				blocked <- err
			}()
			waitForServer(t, ctx, "the XREAD to block", func() (bool, string) {
				n := blockedClients(t, srv)
				return n == "1", n + " clients blocked"
			})
			done := make(chan bool, 1)
			go func() { done <- tx.Watching() }()
			select {
			case w := <-done:
				if !w {
					t.Fatal("Watching = false during the block, after WATCH w")
				}
			case <-time.After(10 * time.Second):
				cancel()
				t.Fatal("Watching still waits for the blocking call of another goroutine")
			}
			ended := make(chan error, 1)
			go func() {
				if end == "Close" {
					ended <- tx.Close()
				} else {
					ended <- tx.Reset()
				}
			}()
			select {
			case err := <-ended:
				if err != nil {
					t.Fatalf("%s = %v", end, err)
				}
			case <-time.After(10 * time.Second):
				cancel()
				<-ended
				t.Fatalf("%s still waits for the blocking call of another goroutine", end)
			}
			if err := <-blocked; !errors.Is(err, ErrClosed) || bctx.Err() != nil {
				t.Fatalf("the blocking call ended by %s = %v, want an error matching ErrClosed", end, err)
			}
			if tx.Watching() {
				t.Fatalf("Watching = true after %s", end)
			}
			waitForServer(t, ctx, "the block to end", func() (bool, string) {
				n := blockedClients(t, srv)
				return n == "0", n + " clients blocked"
			})
			if end == "Reset" {
				if s, err := tx.Ping(ctx); err != nil || s != "PONG" {
					t.Fatalf("Ping after Reset = %q, %v", s, err)
				}
			}
		})
	}
}

// A call that waits for its turn on a Tx while another goroutine's call
// runs, and whose context ends with a cause, gives that cause in its
// error's text, as every other call stopped by such a context does.
func TestTxTurnWaitGivesContextCause(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := tx.Do(ctx, "XREAD", "BLOCK", "0", "STREAMS", "none", "$")
		blocked <- err
	}()
	defer func() {
		tx.Close() // ends the block
		<-blocked
	}()
	waitForServer(t, ctx, "the XREAD to block", func() (bool, string) {
		n := blockedClients(t, srv)
		return n == "1", n + " clients blocked"
	})
	cause := errors.New("another read failed")
	wctx, cancel := context.WithCancelCause(ctx)
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	_, err = tx.Get(wctx, "k")
	if !errors.Is(err, context.Canceled) || !strings.Contains(fmt.Sprint(err), cause.Error()) || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("Get waiting for its turn = %v (outcome %v), want context canceled with its cause %q, not sent", err, OutcomeOf(err), cause)
	}
}

// A Decoder may ask the Tx whose call it decodes whether it is watching:
// Watching took the session's lock, which that call holds, and waited for
// ever.
func TestTxWatchingFromDecoder(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "SET", "dw", "1")
	var tx *Tx
	c.SetDecoder("GET", func(Value) (any, error) { return tx.Watching(), nil })
	var err error
	tx, err = c.Watch(ctx, "dw")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Value, 1)
	go func() {
		v, _ := tx.Do(ctx, "GET", "dw")
		done <- v
	}()
	select {
	case v := <-done:
		if x, err := v.Decoded(); x != true {
			t.Fatalf("Watching from the Decoder of a GET on a watching session = %v, %v; want true", x, err)
		}
	case <-time.After(10 * time.Second):
		// Not closed: Close would wait for the call stuck in its Decoder.
		t.Fatal("Watching from a Decoder waits for the call it decodes")
	}
	if err := tx.Close(); err != nil {
		t.Fatal(err)
	}
}

// An Exec of a Tx's pipeline whose context ends while another call holds
// the Tx (a BLPOP, here) sends nothing, and empties the pipeline as any
// failed Exec does: its commands were left queued, and a later Exec sent
// them, after the first had reported them not sent. The BLPOP has no
// timeout and ends when the test pushes to its list: one that timed out
// on its own could end before the Exec gave up, on a slow machine.
func TestTxPipelineExecThatGaveUpWaitingIsEmptied(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "wait:watched")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	held := make(chan error, 1)
	go func() {
		_, err := tx.Do(ctx, "BLPOP", "wait:list", "0")
		held <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if list, _ := srv.Do("CLIENT", "LIST"); strings.Contains(fmt.Sprint(list), "cmd=blpop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the BLPOP never reached the server")
		}
		time.Sleep(10 * time.Millisecond)
	}

	p := tx.Pipeline().Set("wait:k", "1").Incr("wait:n")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Exec(short); OutcomeOf(err) != OutcomeNotSent || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Exec while the Tx is held: %v (OutcomeOf %v); want not sent, with the deadline", err, OutcomeOf(err))
	}
	if n := p.Len(); n != 0 {
		t.Errorf("the pipeline holds %d commands after its Exec failed; want it emptied", n)
	}
	srv.MustDo(t, "RPUSH", "wait:list", "x")
	if err := <-held; err != nil {
		t.Fatalf("BLPOP: %v", err)
	}
	if replies, err := p.Exec(ctx); err != nil || len(replies) != 0 {
		t.Errorf("Exec of the emptied pipeline = %v, %v; want nothing sent", replies, err)
	}
	for _, k := range []string{"wait:k", "wait:n"} {
		if exists(t, srv, k) {
			t.Errorf("%s exists: a command reported not sent was sent", k)
		}
	}
}

// waitBlocked waits until the server has n clients blocked.
func waitBlocked(t *testing.T, ctx context.Context, srv *redistest.Server, n string) {
	t.Helper()
	waitForServer(t, ctx, n+" clients blocked", func() (bool, string) {
		got := blockedClients(t, srv)
		return got == n, got + " clients blocked"
	})
}

// Multi takes no context, and waited for its turn behind a blocking
// command that another goroutine ran on the Tx: behind BLPOP with no
// timeout, for ever. It now opens the transaction at once; its Exec,
// which has a context, takes the turn, and what the Tx runs after Multi
// is refused as before.
func TestTxMultiDoesNotWaitForBlockingCall(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "mb:w")
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := tx.Do(ctx, "BLPOP", "mb:never-pushed", "0")
		blocked <- err
	}()
	ended := false
	defer func() {
		tx.Close() // ends the block
		if !ended {
			<-blocked
		}
	}()
	waitBlocked(t, ctx, srv, "1")

	opened := make(chan *Pipeline, 1)
	go func() { opened <- tx.Multi() }()
	var p *Pipeline
	select {
	case p = <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("Multi waits for the blocking call of another goroutine")
	}
	p.Set("mb:k", "1")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Exec(short); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotApplied) {
		t.Fatalf("Exec of the Multi while the BLPOP holds the Tx = %v; want the deadline, not applied", err)
	}
	// A second Multi, made while the BLPOP still blocks, is refused, and
	// refuses the open one, once the BLPOP has ended.
	p2 := tx.Multi().Set("mb:k2", "1")
	srv.MustDo(t, "RPUSH", "mb:never-pushed", "x")
	ended = true
	if err := <-blocked; err != nil {
		t.Fatalf("BLPOP = %v", err)
	}
	var ue *UsageError
	if _, err := p2.Exec(ctx); !errors.As(err, &ue) || !errors.Is(err, ErrNotApplied) {
		t.Fatalf("Exec of a second Multi while one is open = %v; want a *UsageError, not applied", err)
	}
	if _, err := p.Exec(ctx); !errors.As(err, &ue) || !errors.Is(err, ErrNotApplied) {
		t.Fatalf("Exec of the Multi after a second Multi = %v; want it refused with a *UsageError, not applied", err)
	}
	for _, k := range []string{"mb:k", "mb:k2"} {
		if exists(t, srv, k) {
			t.Fatalf("%s exists: a refused transaction was applied", k)
		}
	}
}

// Multi while another goroutine's call holds the Tx opens the
// transaction at once: a call that comes after it is refused, and the
// Multi's Exec runs once the call under way has ended. The call is
// refused while the one under way still runs (a BLPOP with no timeout,
// here): it waited for its turn to be told, and behind such a BLPOP failed
// when its context ended, as not sent, the misuse unreported and the
// Multi left open.
func TestTxMultiWhileAnotherCallRuns(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "mr:w")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	held := make(chan error, 1)
	go func() {
		_, err := tx.Do(ctx, "BLPOP", "mr:list", "0") // until the push below
		held <- err
	}()
	waitBlocked(t, ctx, srv, "1")
	p := tx.Multi().Set("mr:k", "1")
	var ue *UsageError
	if _, err := tx.Get(ctx, "mr:w"); !errors.As(err, &ue) {
		t.Fatalf("Get after Multi = %v; want a *UsageError", err)
	}
	p.Discard() // the Get refused the transaction with it
	p.Set("mr:k", "1")
	srv.MustDo(t, "RPUSH", "mr:list", "x")
	replies, err := p.Exec(ctx)
	if err != nil || len(replies) != 1 {
		t.Fatalf("Exec of the Multi = %v, %v", replies, err)
	}
	if err := <-held; err != nil {
		t.Fatalf("BLPOP = %v", err)
	}
	if !exists(t, srv, "mr:k") {
		t.Fatal("mr:k is missing after its transaction was applied")
	}
}

// A Decoder runs on the goroutine of the call whose reply it decodes,
// which held the Tx: a call on that Tx from the Decoder waited for the
// turn that its own call held, Close and Reset for ever, the others until
// their context ended. The Tx is now free while a Decoder runs: the
// call's work on it is done, and what the Decoder asks runs after it.
func TestTxCallsFromOwnDecoder(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "SET", "od:v", "1")
	calls := map[string]func(context.Context, *Tx) (Value, error){
		"Get": func(ctx context.Context, tx *Tx) (Value, error) { return tx.Do(ctx, "GET", "od:v") },
		"Pipeline Exec": func(ctx context.Context, tx *Tx) (Value, error) {
			r, err := tx.Pipeline().Get("od:v").Exec(ctx)
			if len(r) != 1 {
				return Value{}, fmt.Errorf("%d replies, %w", len(r), err)
			}
			return r[0], err
		},
		"Multi Exec": func(ctx context.Context, tx *Tx) (Value, error) {
			r, err := tx.Multi().Get("od:v").Exec(ctx)
			if len(r) != 1 {
				return Value{}, fmt.Errorf("%d replies, %w", len(r), err)
			}
			return r[0], err
		},
	}
	// Each action runs under a context without a deadline, as a Decoder,
	// which is given none, may well use.
	bg := context.Background()
	actions := map[string]struct {
		do    func(*Tx) error
		check func(t *testing.T, ctx context.Context, tx *Tx)
	}{
		"Close": {func(tx *Tx) error { return tx.Close() }, func(t *testing.T, ctx context.Context, tx *Tx) {
			if _, err := tx.Ping(ctx); !errors.Is(err, ErrClosed) {
				t.Errorf("Ping after Close = %v; want ErrClosed", err)
			}
		}},
		"Reset": {func(tx *Tx) error { return tx.Reset() }, func(t *testing.T, ctx context.Context, tx *Tx) {
			if tx.Watching() {
				t.Error("Watching after Reset")
			}
			if s, err := tx.Ping(ctx); err != nil || s != "PONG" {
				t.Errorf("Ping after Reset = %q, %v", s, err)
			}
		}},
		"Unwatch": {func(tx *Tx) error { return tx.Unwatch(bg) }, func(t *testing.T, ctx context.Context, tx *Tx) {
			if tx.Watching() {
				t.Error("Watching after Unwatch")
			}
		}},
		"Ping": {func(tx *Tx) error { _, err := tx.Ping(bg); return err }, nil},
		"Pipeline Exec": {func(tx *Tx) error {
			_, err := tx.Pipeline().Exists("od:v").Exec(bg)
			return err
		}, nil},
		"Multi Exec": {func(tx *Tx) error {
			_, err := tx.Multi().Set("od:set", "1").Exec(bg)
			return err
		}, func(t *testing.T, ctx context.Context, tx *Tx) {
			if !exists(t, srv, "od:set") {
				t.Error("od:set is missing: the Decoder's transaction was not applied")
			}
		}},
	}
	for cname, call := range calls {
		for aname, a := range actions {
			t.Run(cname+"/"+aname, func(t *testing.T) {
				ctx := ctxT(t)
				srv.MustDo(t, "DEL", "od:set")
				c, err := NewClient(Options{Addr: srv.Addr})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				var tx *Tx
				ran := make(chan error, 1)
				c.SetDecoder("GET", func(v Value) (any, error) {
					select {
					case ran <- a.do(tx):
					default: // once only
					}
					return v.Text()
				})
				if tx, err = c.Watch(ctx, "od:w"); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() {
					v, err := call(ctx, tx)
					if err == nil {
						if x, _ := v.Decoded(); x != "1" {
							err = fmt.Errorf("decoded %v, want 1", x)
						}
					}
					done <- err
				}()
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("the call whose Decoder ran %s = %v", aname, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s from the Decoder of a %s on the same Tx never returns", aname, cname)
				}
				if err := <-ran; err != nil {
					t.Fatalf("%s from the Decoder = %v", aname, err)
				}
				if a.check != nil {
					a.check(t, ctx, tx)
				}
				if err := tx.Close(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// Close and Reset send UNWATCH, and held the Tx while a Decoder of
// UNWATCH ran, since they went on with it afterwards: a call on the Tx
// from that Decoder waited for them for ever, and then was refused with a
// *UsageError that blamed the Decoder, as was a call from another
// goroutine, which had done nothing wrong and, after Reset, would have
// run. The Decoder now runs once the session is closed, or reset, and
// given up: a call from it, or from another goroutine meanwhile, finds
// the session closed (an error matching ErrClosed) or reset (it runs),
// and Close from it closes the session.
func TestTxCallsFromDecoderOfUnwatch(t *testing.T) {
	srv := redistest.Start(t)
	for _, end := range []string{"Close", "Reset"} {
		t.Run(end, func(t *testing.T) {
			ctx := ctxT(t)
			c, err := NewClient(Options{Addr: srv.Addr})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var tx *Tx
			var pingErr, otherErr, closeErr error
			var ping, other string
			c.SetDecoder("UNWATCH", func(v Value) (any, error) {
				// Another goroutine's call, made while this Decoder runs.
				otherDone := make(chan struct{})
				go func() {
					defer close(otherDone)
					other, otherErr = tx.Ping(ctx)
				}()
				select {
				case <-otherDone:
				case <-time.After(10 * time.Second):
					otherErr = errors.New("still waiting after 10s")
				}
				ping, pingErr = tx.Ping(context.Background())
				closeErr = tx.Close()
				return nil, nil
			})
			if tx, err = c.Watch(ctx, "du:w"); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				if end == "Close" {
					done <- tx.Close()
				} else {
					done <- tx.Reset()
				}
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("%s = %v", end, err)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s never returns when the Decoder of its UNWATCH uses the Tx", end)
			}
			c.SetDecoder("UNWATCH", nil)
			if closeErr != nil {
				t.Errorf("Close from the Decoder of UNWATCH in %s = %v, want nil", end, closeErr)
			}
			if _, err := tx.Ping(ctx); !errors.Is(err, ErrClosed) {
				t.Errorf("Ping after the Decoder closed the Tx = %v; want ErrClosed", err)
			}
			for _, call := range []struct {
				who   string
				reply string
				err   error
			}{{"the Decoder of UNWATCH", ping, pingErr}, {"another goroutine", other, otherErr}} {
				if end == "Reset" {
					if call.err != nil || call.reply != "PONG" {
						t.Errorf("Ping from %s in Reset = %q, %v; want PONG: the session is reset", call.who, call.reply, call.err)
					}
					continue
				}
				var ue *UsageError
				if !errors.As(call.err, &ue) || !errors.Is(call.err, ErrClosed) || strings.Contains(call.err.Error(), "Decoder") {
					t.Errorf("Ping from %s in Close = %q, %v; want a *UsageError matching ErrClosed that says the Tx is closed", call.who, call.reply, call.err)
				}
			}
		})
	}
}

// Discard of an open Multi pipeline on one goroutine, while a call on the
// Tx on another is refused and refuses that Multi, changed the same
// field of the pipeline, one of them without the Tx's lock: a data race.
func TestTxMultiDiscardWhileRefused(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "dr:w")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	p := tx.Multi()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			p.Discard()
		}
	}()
	var ue *UsageError
	for range 50 {
		if _, err := tx.Get(ctx, "dr:w"); !errors.As(err, &ue) {
			t.Errorf("Get while a Multi is open = %v; want a *UsageError", err)
			break
		}
	}
	<-done
	p.Discard()
	if _, err := p.Set("dr:k", "1").Exec(ctx); err != nil {
		t.Fatalf("Exec of the Multi after Discard = %v", err)
	}
}

// The Decoder of a read that fn makes on a Transaction's Tx, and the one
// of a reply of the EXEC that Transaction sends, may call that Tx: Close
// is refused as it is from fn, and a read runs. Both waited for the turn
// that the decoded call held, Close for ever.
func TestTransactionTxCalledFromDecoder(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "SET", "td:a", "1")
	var tx *Tx
	var closeErr, pingErr error
	c.SetDecoder("GET", func(v Value) (any, error) {
		closeErr = tx.Close()
		_, pingErr = tx.Ping(context.Background())
		return v.Text()
	})
	done := make(chan error, 1)
	go func() {
		replies, err := c.Transaction(ctx, func(t *Tx) error {
			tx = t
			if _, err := t.Get(ctx, "td:a"); err != nil {
				return err
			}
			var ue *UsageError
			if !errors.As(closeErr, &ue) || pingErr != nil {
				return fmt.Errorf("from the Decoder of fn's read: Close = %v, want a *UsageError; Ping = %v", closeErr, pingErr)
			}
			closeErr, pingErr = nil, nil
			t.Multi().Set("td:b", "2").Get("td:a")
			return nil
		}, "td:a")
		if err == nil && len(replies) != 2 {
			err = fmt.Errorf("%d replies", len(replies))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Transaction = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Transaction whose Decoder calls its Tx never returns")
	}
	var ue *UsageError
	if !errors.As(closeErr, &ue) || pingErr != nil {
		t.Fatalf("from the Decoder of a reply of EXEC: Close = %v, want a *UsageError; Ping = %v", closeErr, pingErr)
	}
	if !exists(t, srv, "td:b") {
		t.Fatal("td:b is missing after the Transaction")
	}
}

// Close from another goroutine while a Decoder of a call on the Tx runs
// closes the session without waiting for the Decoder, whose call has
// done its work on the Tx: that call still returns its decoded reply.
func TestTxCloseWhileDecoderRuns(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "SET", "cd:a", "1")
	entered, leave := make(chan struct{}), make(chan struct{})
	c.SetDecoder("GET", func(v Value) (any, error) {
		close(entered)
		<-leave
		return v.Text()
	})
	tx, err := c.Watch(ctx, "cd:a")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Value, 1)
	go func() {
		v, _ := tx.Do(ctx, "GET", "cd:a")
		got <- v
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- tx.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close while a Decoder runs = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Close waits for a Decoder of a call that has done its work on the Tx")
		close(leave)
		<-closed
		return
	}
	close(leave)
	if x, err := (<-got).Decoded(); x != "1" || err != nil {
		t.Errorf("the decoded reply = %v, %v; want 1", x, err)
	}
	if _, err := tx.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close = %v; want ErrClosed", err)
	}
}

// Close and Reset on one goroutine, while another queues on the Tx's open
// Multi pipeline and a third reads on the Tx, emptied that pipeline's
// buffers under its owner, handing them back to the buffer pools as the
// owner went on writing into them: a data race, which panicked with an
// index out of range in the owner's next command. Close and Reset now
// finish the Multi without touching what it holds; its Exec is refused,
// not applied.
func TestTxMultiQueuedWhileClosedOrReset(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "qc:w")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	// Values large enough that the Multi's buffer grows through the pools.
	val := strings.Repeat("v", 200)
	const rounds, perRound = 60, 40
	outcome := make([]error, rounds)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range rounds {
			m := tx.Multi()
			for range perRound {
				m.RPush("qc:l:"+strconv.Itoa(i), val)
			}
			replies, err := m.Exec(ctx)
			if err == nil && len(replies) != perRound {
				err = fmt.Errorf("%d replies for %d commands", len(replies), perRound)
			}
			outcome[i] = err
		}
		close(done)
	}()
	go func() {
		defer wg.Done()
		for range 200 {
			select {
			case <-done:
				return
			default:
			}
			tx.Get(ctx, "qc:w")
		}
	}()
resets:
	for range 200 {
		select {
		case <-done:
			break resets
		default:
		}
		if err := tx.Reset(); err != nil {
			t.Errorf("Reset = %v", err)
			break
		}
		time.Sleep(time.Millisecond)
	}
	tx.Close() // the rounds left, if any, meet a closed Tx
	wg.Wait()
	for i, err := range outcome {
		n, _ := srv.MustDo(t, "LLEN", "qc:l:"+strconv.Itoa(i)).(int64)
		switch {
		case err == nil && n != perRound:
			t.Errorf("round %d: Exec succeeded, and the list has %d elements, want %d", i, n, perRound)
		case err != nil && !errors.Is(err, ErrNotApplied):
			t.Errorf("round %d: Exec = %v; want success or not applied", i, err)
		case err != nil && n != 0:
			t.Errorf("round %d: Exec = %v, not applied, and the list has %d elements", i, err, n)
		}
	}
}

// fn's own Exec, whose Decoder runs another Multi and its Exec on the Tx
// and then fails: the failure was noted for the Transaction after the
// Decoder's Exec had noted its replies, so the Transaction returned the
// error of fn's INCR with the reply of the Decoder's SET in its place.
// What the Transaction reports of the last Exec is now that Exec's own
// error and replies.
func TestTransactionOwnExecDecoderRunsAnotherExec(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	var tx *Tx
	var innerErr error
	ran := false
	c.SetDecoder("INCR", func(v Value) (any, error) {
		if !ran {
			ran = true
			_, innerErr = tx.Multi().Set("de:s", "x").Exec(context.Background())
		}
		return nil, errors.New("the INCR decoder refuses")
	})
	done := make(chan struct{})
	var replies []Value
	var err error
	go func() {
		defer close(done)
		replies, err = c.Transaction(ctx, func(t *Tx) error {
			tx = t
			t.Multi().Incr("de:n").Exec(ctx) // its error dropped: the Transaction tells the last Exec's
			return nil
		}, "de:n")
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a Transaction whose Decoder runs an Exec on its Tx never returns")
	}
	if innerErr != nil {
		t.Fatalf("Exec from the Decoder = %v", innerErr)
	}
	if !exists(t, srv, "de:s") || !exists(t, srv, "de:n") {
		t.Fatal("a key of the two transactions is missing")
	}
	if errors.Is(err, ErrNotApplied) {
		t.Fatalf("Transaction = %v; want no error that says not applied, both transactions were", err)
	}
	var ce *CommandError
	if errors.As(err, &ce) {
		// The error of the INCR, then with the INCR's own reply.
		if len(replies) != 1 || ce.Command != "INCR" {
			t.Fatalf("Transaction = %q, %v; the error of a command with the replies of another transaction", replies, err)
		}
		if n, e := replies[ce.Index].Int64(); e != nil || n != 1 {
			t.Fatalf("Transaction = %q, %v; the error of a command with the replies of another transaction", replies, err)
		}
	} else if err != nil || replies != nil {
		t.Fatalf("Transaction = %q, %v; want the Decoder's transaction, the last, as it ended", replies, err)
	}
}

// A Multi opened on the Tx of a Transaction once Transaction has taken
// its last look at it, by a Decoder of the EXEC that Transaction sends or
// by a goroutine fn left running, was left behind: with no Exec, its
// commands went nowhere and Transaction said nothing; with one, it ran
// as a transaction of its own, without the watch that EXEC had ended.
// That Multi is now refused, as one on a closed Tx is: its Exec fails
// with a *UsageError matching ErrClosed, and Transaction returns its
// replies with an error of unknown outcome that wraps it.
func TestTransactionMultiOpenedAfterItsLastLook(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	for _, by := range []string{"Decoder/Exec", "Decoder/no Exec", "goroutine/Exec"} {
		t.Run(by, func(t *testing.T) {
			ctx := ctxT(t)
			srv.MustDo(t, "DEL", "lm:a", "lm:b")
			var tx *Tx
			var lateErr error
			lateRan := false
			late := func() {
				p := tx.Multi().Set("lm:b", "late")
				if strings.HasSuffix(by, "/Exec") {
					_, lateErr = p.Exec(context.Background())
					lateRan = true
				}
			}
			if err := c.SetDecoder("INCR", func(v Value) (any, error) {
				if strings.HasPrefix(by, "Decoder") {
					late()
					return v.Int64()
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					late()
				}()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					lateErr = errors.New("the goroutine's Exec still waits after 10s")
				}
				return v.Int64()
			}); err != nil {
				t.Fatal(err)
			}
			defer c.SetDecoder("INCR", nil)
			done := make(chan struct{})
			var replies []Value
			var err error
			go func() {
				defer close(done)
				replies, err = c.Transaction(ctx, func(t *Tx) error {
					tx = t
					t.Multi().Incr("lm:a")
					return nil
				}, "lm:a")
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Transaction never returns")
			}
			var ue *UsageError
			if !errors.As(err, &ue) || !errors.Is(err, ErrClosed) || OutcomeOf(err) != OutcomeUnknown || len(replies) != 1 {
				t.Errorf("Transaction = %v, %v (outcome %v); want its one reply and an error of unknown outcome wrapping a *UsageError matching ErrClosed",
					replies, err, OutcomeOf(err))
			}
			if lateRan && (!errors.As(lateErr, &ue) || !errors.Is(lateErr, ErrClosed)) {
				t.Errorf("Exec of the Multi opened after Transaction's last look = %v; want a *UsageError matching ErrClosed", lateErr)
			}
			if !exists(t, srv, "lm:a") {
				t.Error("lm:a is missing: the Transaction did not apply")
			}
			if exists(t, srv, "lm:b") {
				t.Error("lm:b is set: the Multi opened after Transaction's last look ran")
			}
		})
	}
}

// fn reads with a Pipeline of its Tx whose Decoder queues a command on
// that same Pipeline, and returns the error of its Exec: of unknown
// outcome on its own, since the reads ran, and a read's failure, which
// Transaction reports as not applied, since fn ran nothing that writes
// and Transaction sent no EXEC. The error said both: errors.Is found
// ErrNotApplied, while OutcomeOf read the unknown outcome inside and
// SafeToRetry said no. A transaction's verdict that nothing was applied
// now decides OutcomeOf too.
func TestTransactionReadQueuedByDecoderNotApplied(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "SET", "rq:k", "v")
	var p *Pipeline
	queued := false
	dec := WithDecoder("GET", func(v Value) (any, error) {
		if !queued {
			queued = true
			p.Get("rq:queued") // on the Pipeline being decoded: not sent
		}
		return v.Text()
	})
	var readErr error
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		p = tx.Pipeline(dec)
		_, readErr = p.Get("rq:k").Exec(ctx)
		if readErr == nil {
			return errors.New("the Exec whose Decoder queued on its own Pipeline returned no error")
		}
		tx.Multi().Set("rq:k", "written")
		return readErr
	}, "rq:k")
	if OutcomeOf(readErr) != OutcomeUnknown {
		t.Errorf("the Exec's error %v is of outcome %v; want unknown, its reads ran", readErr, OutcomeOf(readErr))
	}
	if !errors.Is(err, ErrNotApplied) || OutcomeOf(err) != OutcomeNotApplied || !SafeToRetry(err) {
		t.Errorf("Transaction = %v: errors.Is ErrNotApplied %v, outcome %v, SafeToRetry %v; want not applied by all three",
			err, errors.Is(err, ErrNotApplied), OutcomeOf(err), SafeToRetry(err))
	}
	if got := srv.MustDo(t, "GET", "rq:k"); got != "v" {
		t.Errorf("rq:k = %v; want v, the transaction not applied", got)
	}
}

// A Pipeline of the Tx is refused once a Multi is open, as a command on
// the Tx is, and it can no more end that Multi than such a command can.
// Behind a BLPOP with no timeout, on the Tx itself or inside another
// Pipeline of it, its Exec waited for its turn until its context ended
// and failed as not sent, the misuse unreported and the Multi left open,
// to be applied by its Exec; and a command on the Tx behind such a
// Pipeline's Exec waited the same way. Both are now refused at once, and
// the open transaction with them.
func TestTxPipelineWhileMultiAndAnotherCallRuns(t *testing.T) {
	for _, holder := range []string{"command", "Pipeline"} {
		for _, waiter := range []string{"command", "Pipeline"} {
			if holder == "command" && waiter == "command" {
				continue // TestTxMultiWhileAnotherCallRuns
			}
			t.Run(holder+" holds/"+waiter+" waits", func(t *testing.T) {
				c, srv := newTestClient(t, Options{})
				ctx := ctxT(t)
				tx, err := c.Watch(ctx, "pm:w")
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Close()
				held := make(chan error, 1)
				go func() {
					var err error
					if holder == "command" {
						_, err = tx.Do(ctx, "BLPOP", "pm:list", "0") // until the push below
					} else {
						_, err = tx.Pipeline().Do("BLPOP", "pm:list", "0").Exec(ctx)
					}
					held <- err
				}()
				waitBlocked(t, ctx, srv, "1")
				p := tx.Multi().Set("pm:k", "1")
				// Bounded, so that a call that waits instead fails; the
				// refusal comes without waiting at all.
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if waiter == "command" {
					_, err = tx.Get(wctx, "pm:w")
				} else {
					_, err = tx.Pipeline().Get("pm:w").Exec(wctx)
				}
				var ue *UsageError
				if !errors.As(err, &ue) {
					t.Fatalf("%s on the Tx after Multi, behind a blocked %s = %v; want a *UsageError", waiter, holder, err)
				}
				srv.MustDo(t, "RPUSH", "pm:list", "x")
				if err := <-held; err != nil {
					t.Fatalf("BLPOP = %v", err)
				}
				if _, err := p.Exec(ctx); !errors.As(err, &ue) || !errors.Is(err, ErrNotApplied) {
					t.Fatalf("Exec of the Multi the refused %s was meant for = %v; want it refused too, not applied", waiter, err)
				}
				if exists(t, srv, "pm:k") {
					t.Fatal("pm:k is set: the Multi was applied without the call refused after it")
				}
			})
		}
	}
}
