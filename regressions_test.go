package redpipe

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/redistest"
)

func TestStateSubcommandAsBytesRefused(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	var ue *UsageError
	if _, err := c.Do(ctx, "CLIENT", []byte("REPLY"), "SKIP"); !errors.As(err, &ue) {
		t.Fatalf("CLIENT REPLY given as []byte: %v, want a usage error", err)
	}
	if _, err := c.Pipeline(NoTransaction).Do("client", []byte("tracking"), "on").Exec(ctx); !errors.As(err, &ue) {
		t.Fatalf("CLIENT TRACKING in a pipeline: %v, want a usage error", err)
	}
	if s, err := c.Echo(ctx, "still in step"); err != nil || s != "still in step" {
		t.Fatalf("Echo = %q, %v", s, err)
	}
}

// SCRIPT DEBUG turns the connection's next EVAL into a debugging session,
// whose output would reach every caller sharing the connection: it is
// refused wherever other state-changing commands are.
func TestScriptDebugRefused(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	var ue *UsageError
	if _, err := c.Do(ctx, "SCRIPT", "DEBUG", "SYNC"); !errors.As(err, &ue) {
		t.Fatalf("SCRIPT DEBUG on the shared connection: %v, want a usage error", err)
	}
	if _, err := c.Pipeline(NoTransaction).Do("script", "debug", "yes").Exec(ctx); !errors.As(err, &ue) {
		t.Fatalf("SCRIPT DEBUG in a pipeline: %v, want a usage error", err)
	}
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := tx.Do(ctx, "SCRIPT", "DEBUG", "SYNC"); !errors.As(err, &ue) {
		t.Fatalf("SCRIPT DEBUG on a Tx: %v, want a usage error", err)
	}
	if v, err := c.Do(ctx, "EVAL", "return 1", 0); err != nil || v.String() != "1" {
		t.Fatalf("EVAL after the refusals = %v, %v; want 1", v, err)
	}
}

func TestRefusedWatchIsAnError(t *testing.T) {
	srv := newACLServer(t, "app", "pw", "+@all", "-watch")
	c, err := Connect(ctxT(t), "redis://app:pw@"+srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var se *Error
	if _, err := c.Watch(ctxT(t), "k"); !errors.As(err, &se) || se.Prefix != "NOPERM" {
		t.Fatalf("Watch refused by ACL: %v, want NOPERM", err)
	}
}

func TestRefusedMultiIsUncertain(t *testing.T) {
	srv := newACLServer(t, "app", "pw", "+@all", "-multi")
	ctx := ctxT(t)
	c, err := Connect(ctx, "redis://app:pw@"+srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Pipeline().Set("mr", "applied").Exec(ctx)
	if err == nil || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
		t.Fatalf("MULTI refused: %v (outcome %v), want an error of unknown outcome", err, OutcomeOf(err))
	}
	if v, _ := c.Get(ctx, "mr"); v != "applied" {
		t.Fatalf("mr = %q; the test expects the command to have run without MULTI", v)
	}
}

func newACLServer(t *testing.T, user, pw string, rules ...string) *redistest.Server {
	t.Helper()
	srv := redistest.Start(t)
	args := append([]string{"ACL", "SETUSER", user, "on", ">" + pw, "~*", "&*"}, rules...)
	srv.MustDo(t, args...)
	return srv
}

func TestRetryKeepsTheWorstOutcome(t *testing.T) {
	c, err := NewClient(Options{Addr: "127.0.0.1:1", MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	attempts := 0
	err = c.retry(context.Background(), true, func() error {
		attempts++
		if attempts == 1 {
			return &conn.Error{Op: "read", Err: io.EOF} // sent, outcome unknown
		}
		return notSent(&DialError{Addr: "x", Err: io.EOF})
	})
	if attempts != 4 || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Fatalf("after %d attempts: %v (outcome %v), want unknown: the first attempt may have run", attempts, err, OutcomeOf(err))
	}
}

func TestScriptErrorsAreUncertain(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	c.Set(ctx, "str", "x")
	// The script increments, then fails on a key of the wrong type: the
	// increment stays.
	_, err := c.Eval(ctx, `redis.call('INCR', KEYS[1]); return redis.call('LPUSH', KEYS[2], 'v')`, 2, "ctr", "str")
	var se *Error
	if !errors.As(err, &se) || se.Prefix != "WRONGTYPE" {
		t.Fatalf("err = %v, want WRONGTYPE from inside the script", err)
	}
	if OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Fatalf("a script's error is classified %v; it ran part of its writes", OutcomeOf(err))
	}
	if v, _ := c.Get(ctx, "ctr"); v != "1" {
		t.Fatalf("ctr = %q", v)
	}
	// An error the script returns, rather than raises, bears no mark of
	// the writes before it: any error of a script that may write is of
	// unknown outcome, through Eval, EvalSha, FCall and Script.Run.
	// NOSCRIPT, answered before any script runs, is not applied.
	for i, src := range []string{
		`redis.call('INCR', KEYS[1]); return redis.error_reply('OOM not really')`,
		`redis.call('INCR', KEYS[1]); return redis.pcall('LPUSH', KEYS[2], 'a')`,
		`redis.call('INCR', KEYS[1]); return {err='NOPERM made up'}`,
	} {
		_, err := c.Eval(ctx, src, 2, "ctr", "str")
		_, err2 := NewScript(src).Run(ctx, c, []string{"ctr", "str"})
		for _, e := range []error{err, err2} {
			if e == nil || OutcomeOf(e) != OutcomeUnknown || SafeToRetry(e) || !errors.As(e, &se) {
				t.Errorf("script %d: %v (outcome %v), want the server's error, of unknown outcome", i, e, OutcomeOf(e))
			}
		}
	}
	if v, _ := c.Get(ctx, "ctr"); v != "7" {
		t.Fatalf("ctr = %q, want 7: each script ran its INCR", v)
	}
	if _, err := c.EvalSha(ctx, strings.Repeat("0", 40), 0); !errors.As(err, &se) || se.Prefix != "NOSCRIPT" || OutcomeOf(err) != OutcomeNotApplied {
		t.Fatalf("EvalSha of an unknown script = %v (outcome %v), want NOSCRIPT, not applied", err, OutcomeOf(err))
	}
	c.Do(ctx, "FUNCTION", "LOAD", "REPLACE", "#!lua name=errlib\nredis.register_function('ef', function(keys) redis.call('INCR', keys[1]); return redis.error_reply('WRONGTYPE made up') end)")
	if _, err := c.FCall(ctx, "ef", 1, "ctr"); OutcomeOf(err) != OutcomeUnknown || !errors.As(err, &se) {
		t.Fatalf("FCall of a function that wrote, then returned an error = %v (outcome %v), want unknown", err, OutcomeOf(err))
	}
}

func TestBlockingAndLargeCommandsLeaveTheSharedConnection(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	if _, err := c.Pipeline(NoTransaction).Do("BLPOP", "nothing", 0.05).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if open, _ := c.pool.Stats(); open != 1 {
		t.Fatalf("a pipeline with BLPOP used %d dedicated connections, want 1", open)
	}
	big := strings.Repeat("x", largePipeline+1)
	if err := c.Set(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "big"); err != nil || len(v) != len(big) {
		t.Fatalf("GET big: %d bytes, %v", len(v), err)
	}
	if _, idle := c.pool.Stats(); idle != 1 {
		t.Fatalf("the large SET did not go through the pool (idle %d)", idle)
	}
}

func TestPipelineMisuseGivesErrors(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 2})
	ctx := ctxT(t)
	var ue *UsageError
	if _, err := c.Pipeline().Do().Exec(ctx); !errors.As(err, &ue) {
		t.Fatalf("Do() with no words: %v", err)
	}
	if _, err := c.Pipeline().Do(42, "x").Exec(ctx); !errors.As(err, &ue) {
		t.Fatalf("Do(42): %v", err)
	}
	var ce *CommandError
	if _, err := c.Pipeline().Do("GET").Set("a", 1).Exec(ctx); !errors.As(err, &ce) || ce.Index != 0 || ce.Command != "GET" {
		t.Fatalf("arity error of the first command blamed on %v", err)
	}
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := tx.Multi().Do().Exec(ctx); !errors.As(err, &ue) {
		t.Fatalf("Multi().Do(): %v", err)
	}
	m := tx.Multi()
	m.Set("k", 1).Discard()
	if replies, err := m.Exec(ctx); err != nil || len(replies) != 0 {
		t.Fatalf("Exec of a discarded Multi: %v, %v, want an empty transaction", replies, err)
	}
	m2 := tx.Multi()
	if _, err := m2.Set("k", 2).Exec(ctx); err != nil {
		t.Fatalf("a new Multi after Exec: %v", err)
	}
	if _, err := m2.Exec(ctx); !errors.As(err, &ue) {
		t.Fatalf("a second Exec of one Multi: %v, want a usage error", err)
	}
	if _, err := (*Script)(nil).Run(ctx, c, nil); !errors.As(err, &ue) {
		t.Fatalf("nil Script: %v", err)
	}
	if _, err := c.Transaction(ctx, nil, "k"); !errors.As(err, &ue) {
		t.Fatalf("nil fn: %v", err)
	}
}

func TestPipelineDecoderNilOverridesClient(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	c.SetDecoder("INFO", DecodeInfo)
	replies, err := c.Pipeline(WithDecoder("INFO", nil)).Info("server").Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := replies[0].Decoded(); d != nil {
		t.Fatal("WithDecoder(INFO, nil) did not turn off the client's decoder")
	}
}

// A Do refused for its name, queued between other commands, is the command
// the error names, not the one queued after it, in a pipeline and in a
// stream.
func TestDoWithoutNameIsBlamed(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	check := func(what string, err error) {
		t.Helper()
		var ce *CommandError
		var ue *UsageError
		if !errors.As(err, &ce) || !errors.As(err, &ue) || ce.Index != 1 || ce.Command != "Do" {
			t.Errorf("%s = %v, want a *CommandError for command 2, Do", what, err)
		}
	}
	_, err := c.Pipeline(NoTransaction).Set("a", 1).Do([]byte("GET"), "a").Incr("n").Exec(ctx)
	check("a pipeline with Do([]byte)", err)
	_, err = c.Pipeline().Set("a", 1).Do().Incr("n").Exec(ctx)
	check("a transaction with an empty Do", err)
	s := c.Stream(ctx, nil)
	s.Set("a", 1).Do(42, "a").Incr("n")
	_, err = s.Close(ctx)
	check("a stream with Do(42)", err)

	var ce *CommandError
	_, err = c.Pipeline().Set("a", 1).RunScript(nil, nil).Incr("n").Exec(ctx)
	if !errors.As(err, &ce) || ce.Index != 1 || ce.Command != "RunScript" {
		t.Errorf("a pipeline with RunScript(nil) = %v, want a *CommandError for command 2, RunScript", err)
	}
	// A subcommand read from its encoding is checked for its arity as
	// itself, and blamed at its own place.
	var ae *ArityError
	_, err = c.Pipeline().Set("a", 1).Do("CONFIG", wordArg("GET")).Incr("n").Exec(ctx)
	if !errors.As(err, &ce) || !errors.As(err, &ae) || ce.Index != 1 || ce.Command != "CONFIG GET" {
		t.Errorf("a pipeline with CONFIG GET short of words = %v, want an *ArityError for command 2, CONFIG GET", err)
	}
}

// WAIT counts the replicas that have the writes of its own connection. A
// call alone runs on a connection with no writes, where the server would
// count every replica at once, so it is refused; after the writes in a
// pipeline, or on the Tx that made them, it runs.
func TestWaitAloneRefused(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	var ue *UsageError
	if _, err := c.Wait(ctx, 0, 10); !errors.As(err, &ue) {
		t.Fatalf("Wait alone = %v, want a *UsageError", err)
	}
	if _, err := c.Do(ctx, "WAIT", 0, 10); !errors.As(err, &ue) {
		t.Fatalf("Do WAIT alone = %v, want a *UsageError", err)
	}
	if _, err := c.Do(ctx, "WAITAOF", 0, 0, 10); !errors.As(err, &ue) {
		t.Fatalf("Do WAITAOF alone = %v, want a *UsageError", err)
	}
	replies, err := c.Pipeline(NoTransaction).Set("w", 1).Wait(0, 10).Exec(ctx)
	if err != nil || len(replies) != 2 || replies[1].String() != "0" {
		t.Fatalf("Set and Wait in a pipeline = %v, %v; want 0 replicas", replies, err)
	}
	tx, err := c.Watch(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if n, err := tx.Wait(ctx, 0, 10); err != nil || n != 0 {
		t.Fatalf("Wait on a Tx = %d, %v", n, err)
	}
}
