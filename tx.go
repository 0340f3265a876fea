package redpipe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/resp"
)

// Tx is an optimistic-locking session: a connection of its own, on which
// WATCH has been sent. Its command methods run immediately and return their
// replies, so the values a transaction depends on can be read; Multi then
// starts the buffered, transactional part, which Exec sends as
// MULTI ... EXEC on the same connection. If a watched key changed in
// between, Exec fails with ErrWatch and nothing is applied.
//
// Always Close a Tx (defer tx.Close()): it sends UNWATCH if a watch may
// still be armed and gives the connection back to the pool. A Tx is not
// safe for concurrent use.
type Tx struct {
	cmds
	c *Client
	d *dedicated

	watching bool      // a WATCH may be armed on the connection
	multi    *Pipeline // the open Multi pipeline, until Exec or Discard
	closed   bool
	broken   error // the connection failed: the Tx can only be closed
	turn     *turn // a Transaction's turn on its keys, given back once EXEC is written
}

// Watch lends a dedicated connection, sends WATCH keys on it and returns
// the session. With no keys it just binds the connection.
func (c *Client) Watch(ctx context.Context, keys ...string) (*Tx, error) {
	var t *Tx
	// WATCH changes no data, so a connection that turns out dead (closed by
	// the server while idle in the pool) is retried like a read.
	err := c.retry(ctx, true, func() error {
		d, err := c.getDedicated(ctx)
		if err != nil {
			return err
		}
		t = &Tx{c: c, d: d}
		t.cmds = cmds{r: t}
		if len(keys) > 0 {
			if err := t.Watch(ctx, keys...); err != nil {
				t.closeWith(ctx)
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Watch adds keys to the watched set. It is an error once Multi was called.
func (t *Tx) Watch(ctx context.Context, keys ...string) error {
	if t.multi != nil {
		return &UsageError{Msg: "WATCH after MULTI: watch every key before calling Multi"}
	}
	w := getBuf()
	w.start(cmdWatch, 1+len(keys))
	w.strs(keys)
	w.end()
	t.watching = true // set before sending: a failed send may still have armed it
	return okReply(t.run(ctx, w))
}

// Unwatch forgets every watched key.
func (t *Tx) Unwatch(ctx context.Context) error {
	if t.multi != nil {
		return &UsageError{Msg: "UNWATCH after MULTI: call Discard on the Multi pipeline first"}
	}
	w := getBuf()
	w.start(cmdUnwatch, 1)
	w.end()
	err := okReply(t.run(ctx, w))
	if err == nil {
		t.watching = false
	}
	return err
}

// Multi starts the transaction: the returned Pipeline buffers commands, and
// its Exec sends MULTI, the commands and EXEC on this connection in one
// write. Calling Multi again before that Exec (or Discard) is an error,
// reported by the second pipeline's Exec.
func (t *Tx) Multi() *Pipeline {
	p := newPipeline(t.c, t, true)
	p.multi = true
	p.reset()
	if t.multi != nil {
		p.broken = &UsageError{Msg: "MULTI inside MULTI: Exec or Discard the first Multi pipeline before starting another"}
		p.multi = false // its Exec must not close the first one
		return p
	}
	t.multi = p
	return p
}

// Pipeline returns a plain (non-transactional) batch on this connection,
// for reading many watched values in one round trip before Multi.
func (t *Tx) Pipeline(opts ...PipelineOption) *Pipeline {
	p := newPipeline(t.c, t, false)
	for _, o := range opts {
		o(p)
	}
	p.transaction = false
	return p
}

// Do runs any command on the session's connection immediately.
func (t *Tx) Do(ctx context.Context, args ...any) (Value, error) {
	w := getBuf()
	w.do(args)
	return t.run(ctx, w)
}

// usable tells why the session cannot send, if it cannot.
func (t *Tx) usable() error {
	switch {
	case t.closed:
		return &UsageError{Msg: "Tx used after Close"}
	case t.broken != nil:
		return &OutcomeError{NotApplied: true, Err: fmt.Errorf("the connection was lost while watching: %w", t.broken)}
	}
	return nil
}

func (t *Tx) run(ctx context.Context, w *cmdBuf) (Value, error) {
	defer putBuf(w)
	if w.err != nil {
		return Value{}, w.err
	}
	if err := t.usable(); err != nil {
		return Value{}, err
	}
	if ci := w.cmds[0].info(); ci.has(flagConnState) {
		switch ci.Name {
		case "WATCH":
			if t.multi != nil {
				return Value{}, &UsageError{Msg: "WATCH after MULTI: watch every key before calling Multi"}
			}
			t.watching = true
		case "UNWATCH":
		default:
			return Value{}, &UsageError{Msg: ci.Name + " cannot run on a Tx; use its Multi, Exec and Close methods"}
		}
	}
	v, err := t.d.WithGrace(w.grace).DoOne(ctx, w.buf)
	if err != nil {
		t.lost(err)
		return Value{}, err
	}
	return t.c.decode(w, Value{v}, nil)
}

// do runs a batch on the session's connection; grace is how long its
// blocking commands may keep the server quiet. The batch of a transaction
// (exec) gives the session's turn away once it is written: the next
// transaction on the same keys may read while this one's EXEC runs.
func (t *Tx) do(ctx context.Context, buf []byte, replies []resp.Value, exec bool, grace conn.Grace) error {
	p, err := t.d.WithGrace(grace).Start(ctx, buf, replies)
	if exec {
		t.releaseTurn()
	}
	if err == nil {
		err = p.Wait(ctx)
	}
	if err != nil {
		t.lost(err)
	}
	return err
}

// lost records a connection failure, after which the session can only be
// closed: whatever was watched is gone with the connection. A call
// abandoned on its context is not one: the connection drops its late reply
// and stays in step, and Close sends UNWATCH after it.
func (t *Tx) lost(err error) {
	var ce *conn.Error
	if t.broken == nil && errors.As(err, &ce) && ce.Op != "send" {
		t.broken = err
	}
}

// Close ends the session: UNWATCH if a watch may be armed, then the
// connection goes back to the pool, or is closed if anything is left on it
// (a reply still due, a failed connection). Calling Close again does
// nothing.
func (t *Tx) Close() error { return t.closeWith(context.Background()) }

// closeWith is Close bounded by ctx: a caller whose context has ended does
// not wait for UNWATCH; its connection is closed instead, which ends the
// WATCH as surely.
func (t *Tx) closeWith(ctx context.Context) error {
	if t.closed {
		return nil
	}
	if t.multi != nil {
		t.multi.reset()
		t.multi = nil
	}
	t.releaseTurn()
	clean := t.broken == nil && t.d.Idle()
	if clean && t.watching {
		if ctx.Err() != nil {
			clean = false
		} else {
			uctx, cancel := context.WithTimeout(ctx, t.c.opt.DialTimeout)
			clean = t.Unwatch(uctx) == nil
			cancel()
		}
	}
	t.closed = true
	t.c.pool.Put(t.d, clean && !t.watching)
	return nil
}

// Reset is Close, by the name redis-py users know.
func (t *Tx) Reset() error { return t.Close() }

// TxOptions bound the retries of Client.Transaction. The zero value means
// the documented defaults.
type TxOptions struct {
	// MaxAttempts is how many times fn runs at most (default 16). The
	// context's deadline may stop it sooner.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the pause before a retry (defaults
	// 100µs and 100ms). The pause starts at the failed attempt's own
	// duration, or MinBackoff if that is longer, doubles with each further
	// attempt up to 16 times that, and is jittered, so that contending
	// clients spread out instead of colliding again, on a fast local link
	// and a slow remote one alike.
	MinBackoff, MaxBackoff time.Duration
	// WatchDelay, when set, replaces the backoff with this fixed pause, as
	// redis-py's watch_delay does.
	WatchDelay time.Duration
	// OnRetry, when set, is called before each retry with the number of
	// the attempt that failed (from 1) and its error.
	OnRetry func(attempt int, err error)
}

func (o TxOptions) defaults() TxOptions {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 16
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Microsecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	return o
}

// maxBackoffDoublings bounds how far the pause grows with the attempts: a
// contender that waits many times longer than an attempt takes leaves the
// keys idle rather than easing the contention.
const maxBackoffDoublings = 4

// pause is the wait before retry number attempt (from 1), after an
// attempt that took took. A conflict means another client committed
// within about one attempt's time, so the pause is measured in attempts:
// it suits a fast local link and a slow remote one alike.
func (o TxOptions) pause(attempt int, took time.Duration) time.Duration {
	if o.WatchDelay > 0 {
		return o.WatchDelay
	}
	d := max(o.MinBackoff, took) << min(attempt-1, maxBackoffDoublings)
	if d > o.MaxBackoff || d <= 0 {
		d = o.MaxBackoff
	}
	// Half fixed, half random: spreads contenders without collapsing to 0.
	return d/2 + rand.N(d/2+1)
}

// TxRetryError is the error of a Transaction that gave up on watch
// conflicts. It matches ErrWatch.
type TxRetryError struct {
	Attempts int
	Err      error // the last attempt's error
}

func (e *TxRetryError) Error() string {
	return fmt.Sprintf("redpipe: transaction gave up after %d attempts: %v", e.Attempts, e.Err)
}

func (e *TxRetryError) Unwrap() error { return e.Err }

// Transaction runs the optimistic-locking loop: WATCH keys, call fn with
// the session, and Exec the pipeline fn opened with Multi. When a watched
// key changed (ErrWatch) it runs fn again, up to the options' attempts,
// pausing between attempts, and never past ctx's deadline. It returns
// EXEC's replies; nil if fn opened no Multi.
//
// fn reads through the Tx, then calls tx.Multi() and queues the writes; it
// should not call Exec itself, but may (an ErrWatch it returns is retried
// too). Any other error from fn ends the loop with that error. A panic in
// fn closes the session cleanly and goes on up.
//
// Transactions of one Client on the same keys (the same keys in the same
// order) take turns: the next one starts once the last has written its
// EXEC, rather than spoiling each other's WATCH, and a turn is not waited
// for longer than 50ms (a slow fn, a Transaction nested in fn). Other
// clients still meet WATCH, the retries and the backoff.
func (c *Client) Transaction(ctx context.Context, fn func(*Tx) error, keys ...string) ([]Value, error) {
	return c.TransactionWith(ctx, c.opt.Tx, fn, keys...)
}

// TransactionWith is Transaction with its own retry options.
func (c *Client) TransactionWith(ctx context.Context, o TxOptions, fn func(*Tx) error, keys ...string) ([]Value, error) {
	if fn == nil {
		return nil, &UsageError{Msg: "Transaction needs a function"}
	}
	_, replies, err := transact(ctx, c, o, func(t *Tx) (struct{}, error) { return struct{}{}, fn(t) }, keys)
	return replies, err
}

// TransactionValue is Transaction for an fn that computes a value, which it
// returns once the transaction is applied (redis-py's value_from_callable).
func TransactionValue[T any](ctx context.Context, c *Client, fn func(*Tx) (T, error), keys ...string) (T, error) {
	return TransactionValueWith(ctx, c, c.opt.Tx, fn, keys...)
}

// TransactionValueWith is TransactionValue with its own retry options.
func TransactionValueWith[T any](ctx context.Context, c *Client, o TxOptions, fn func(*Tx) (T, error), keys ...string) (T, error) {
	v, _, err := transact(ctx, c, o, fn, keys)
	return v, err
}

func transact[T any](ctx context.Context, c *Client, o TxOptions, fn func(*Tx) (T, error), keys []string) (T, []Value, error) {
	o = o.defaults()
	var zero T
	if fn == nil {
		return zero, nil, &UsageError{Msg: "Transaction needs a function"}
	}
	var last error
	for attempt := 1; ; attempt++ {
		v, replies, took, err := attemptTx(ctx, c, fn, keys)
		if err == nil {
			return v, replies, nil
		}
		if !errors.Is(err, ErrWatch) {
			return zero, nil, err
		}
		last = err
		if attempt >= o.MaxAttempts {
			return zero, nil, &TxRetryError{Attempts: attempt, Err: last}
		}
		if o.OnRetry != nil {
			o.OnRetry(attempt, err)
		}
		pause := o.pause(attempt, took)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < pause {
			return zero, nil, &TxRetryError{Attempts: attempt, Err: fmt.Errorf("%w (the context's deadline leaves no time to retry)", last)}
		}
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return zero, nil, &TxRetryError{Attempts: attempt, Err: fmt.Errorf("%w (stopped: %w)", last, ctx.Err())}
		}
	}
}

// attemptTx is one round of the loop; the deferred Close also runs when fn
// panics, so the connection never goes back with a WATCH armed.
func attemptTx[T any](ctx context.Context, c *Client, fn func(*Tx) (T, error), keys []string) (v T, replies []Value, took time.Duration, err error) {
	turn, err := c.turns.take(ctx, keys, c.turnWait)
	if err != nil {
		return v, nil, 0, err
	}
	// The attempt's time, which the pause after a conflict is measured
	// in, runs from WATCH to EXEC: a wait for the turn is not part of it.
	start := time.Now()
	defer func() { took = time.Since(start) }()
	t, err := c.Watch(ctx, keys...)
	if err != nil {
		if turn != nil {
			c.turns.give(turn)
		}
		return v, nil, 0, err
	}
	t.turn = turn
	defer t.closeWith(ctx)
	v, err = fn(t)
	if err != nil {
		var zero T
		return zero, nil, 0, err
	}
	if t.multi == nil {
		return v, nil, 0, nil
	}
	replies, err = t.multi.Exec(ctx)
	if err != nil {
		var zero T
		return zero, nil, 0, err
	}
	return v, replies, 0, nil
}
