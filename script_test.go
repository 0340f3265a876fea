package redpipe

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/redistest"
)

// A script that writes, then returns an error of its own that starts with
// NOSCRIPT, ran: Script.Run does not take that error for the server's and
// run the script again with EVAL, and wherever the script runs (Run on a
// Client or a Tx, Eval, FCall, Do, a pipeline, a transaction) its error
// is of unknown outcome, not "not applied". The server's own NOSCRIPT
// still makes Run fall back to EVAL, once.
func TestScriptOwnNoScriptError(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			c, _ := newTestClient(t, Options{Protocol: proto})
			ctx := ctxT(t)
			const src = "redis.call('INCR', KEYS[1]); return redis.error_reply('NOSCRIPT made up')"
			s := NewScript(src)
			runs := 0
			check := func(how string, err error) {
				t.Helper()
				runs++
				var se *Error
				if !errors.As(err, &se) || se.Msg != "NOSCRIPT made up" || OutcomeOf(err) != OutcomeUnknown ||
					SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
					t.Errorf("%s: %v (outcome %v); want the script's NOSCRIPT, of unknown outcome: its INCR ran", how, err, OutcomeOf(err))
				}
				if n, err := c.Get(ctx, "n"); err != nil || n != strconv.Itoa(runs) {
					t.Fatalf("%s: n = %q, %v; want %d: the script ran more than once", how, n, err, runs)
				}
			}
			// Not loaded yet: EVALSHA is refused by the server and EVAL runs it.
			_, err := s.Run(ctx, c, []string{"n"})
			check("Run of a script the server did not have", err)
			// Loaded: EVALSHA runs it, and its NOSCRIPT is its reply.
			_, err = s.Run(ctx, c, []string{"n"})
			check("Run of a loaded script", err)
			tx, err := c.Watch(ctx, "w")
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Run(ctx, tx, []string{"n"})
			tx.Close()
			check("Run on a Tx", err)
			_, err = c.Eval(ctx, src, 1, "n")
			check("Eval", err)
			_, err = c.EvalSha(ctx, s.Hash(), 1, "n")
			check("EvalSha", err)
			v, err := c.Do(ctx, "EVAL", src, 1, "n")
			if err != nil {
				t.Fatal(err)
			}
			check("Do EVAL", v.Err())
			for name, opts := range map[string][]PipelineOption{"transaction": nil, "pipeline": {NoTransaction}} {
				replies, err := c.Pipeline(opts...).RunScript(s, []string{"n"}).Exec(ctx)
				if len(replies) != 1 || errors.Is(err, ErrNotApplied) {
					t.Fatalf("RunScript in a %s = %v, %v", name, replies, err)
				}
				check("RunScript in a "+name, replies[0].Err())
			}
			const lib = "#!lua name=nslib\nredis.register_function('nsf', function(keys) " +
				"redis.call('INCR', keys[1]); return redis.error_reply('NOSCRIPT made up') end)"
			if _, err := c.Do(ctx, "FUNCTION", "LOAD", "REPLACE", lib); err != nil {
				t.Fatal(err)
			}
			_, err = c.FCall(ctx, "nsf", 1, "n")
			check("FCall", err)

			// The server's NOSCRIPT ran nothing.
			if err := c.ScriptFlush(ctx); err != nil {
				t.Fatal(err)
			}
			var se *Error
			if _, err := c.EvalSha(ctx, s.Hash(), 1, "n"); !errors.As(err, &se) || se.Prefix != "NOSCRIPT" || OutcomeOf(err) != OutcomeNotApplied {
				t.Errorf("EvalSha of a flushed script = %v (outcome %v), want NOSCRIPT, not applied", err, OutcomeOf(err))
			}
			inc := NewScript("return redis.call('INCR', KEYS[1])")
			if v, err := inc.Run(ctx, c, []string{"m"}); err != nil || v.String() != "1" {
				t.Errorf("Run of a script the server did not have = %v, %v; want 1 from one run by EVAL", v, err)
			}
		})
	}
}

// On a single node too, a script's own error that reads as a cluster's
// redirection (TRYAGAIN, CLUSTERDOWN) is of unknown outcome in the reply
// of EVAL through Do or a pipeline: the script ran. Only the server's
// words would say it was turned away.
func TestScriptRedirectLookalikeError(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	for _, text := range []string{"TRYAGAIN the lock is taken", "CLUSTERDOWN made up"} {
		src := "redis.call('INCR', KEYS[1]); return redis.error_reply('" + text + "')"
		v, err := c.Do(ctx, "EVAL", src, 1, "n")
		if err != nil {
			t.Fatal(err)
		}
		replies, _ := c.Pipeline(NoTransaction).Eval(src, 1, "n").Exec(ctx)
		if len(replies) != 1 {
			t.Fatalf("a pipeline of EVAL = %v", replies)
		}
		for _, e := range []error{v.Err(), replies[0].Err()} {
			var se *Error
			if !errors.As(e, &se) || se.Msg != text || OutcomeOf(e) != OutcomeUnknown || errors.Is(e, ErrNotApplied) {
				t.Errorf("a script that returns %q after its write: %v (outcome %v); want its error, of unknown outcome", text, e, OutcomeOf(e))
			}
		}
	}
	if n, err := c.Get(ctx, "n"); err != nil || n != "4" {
		t.Errorf("n = %q, %v; want 4: each script ran once", n, err)
	}
}

// In the replies of a transaction's EXEC, a script's error that reads as
// a redirection in the server's own words (MOVED or ASK for any slot,
// TRYAGAIN of a rehashing) is the script's, of unknown outcome: a server
// redirects or refuses a transaction as a whole, before EXEC runs
// anything, never one command in EXEC's replies. Read as the server's,
// it said the script was not applied, though its INCR was.
func TestScriptRedirectLookalikeErrorInExec(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	texts := []string{
		"MOVED 3999 127.0.0.1:1",
		"ASK 3999 127.0.0.1:1",
		"TRYAGAIN Multiple keys request during rehashing of slot",
	}
	for _, text := range texts {
		src := "redis.call('INCR', KEYS[1]); return redis.error_reply('" + text + "')"
		replies, err := c.Pipeline(ErrorsInReplies).Eval(src, 1, "n").Exec(ctx)
		if err != nil || len(replies) != 1 {
			t.Fatalf("a transaction of EVAL = %v, %v", replies, err)
		}
		e := replies[0].Err()
		var se *Error
		if !errors.As(e, &se) || se.Msg != text || OutcomeOf(e) != OutcomeUnknown || errors.Is(e, ErrNotApplied) {
			t.Errorf("a script in a transaction that returns %q after its write: %v (outcome %v); want its error, of unknown outcome",
				text, e, OutcomeOf(e))
		}
	}
	if n, err := c.Get(ctx, "n"); err != nil || n != strconv.Itoa(len(texts)) {
		t.Errorf("n = %q, %v; want %d: each script ran once", n, err, len(texts))
	}
}

// A script or function call whose numkeys the server would refuse (not a
// count, or more than the words after it) is refused before it is sent,
// with an *ArgError that names numkeys, in every form: sent, the server's
// refusal read as the script's own error, "maybe after some of its
// writes", though nothing ran.
func TestScriptNumKeysRefused(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	const src = "return redis.call('INCR', KEYS[1])"
	srv.MustDo(t, "CONFIG", "RESETSTAT")
	check := func(how string, err error) {
		t.Helper()
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Index != 2 || !strings.Contains(err.Error(), "numkeys") || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("%s: %v (outcome %v); want an *ArgError for numkeys, not sent", how, err, OutcomeOf(err))
		}
	}
	for _, args := range [][]any{
		{"EVAL", src, -1, "n"},
		{"EVAL", src, "x", "n"},
		{"EVAL", src, 2, "n"},
		// The server reads no leading zero in a count.
		{"EVAL", src, "01", "n"},
		{"FCALL", "f", "00"},
		{"EVALSHA", NewScript(src).Hash(), 3, "n", "m"},
		{"EVAL_RO", "return 1", 1},
		{"FCALL", "f", 2, "n"},
	} {
		_, err := c.Do(ctx, args...)
		check(fmt.Sprint("Do ", args), err)
	}
	_, err := c.Eval(ctx, src, 2, "n")
	check("Eval", err)
	for name, opts := range map[string][]PipelineOption{"transaction": nil, "pipeline": {NoTransaction}} {
		_, err := c.Pipeline(opts...).Incr("n").Eval(src, 5, "n").Exec(ctx)
		check("Eval in a "+name, err)
	}
	for _, cmd := range []string{"eval", "evalsha", "eval_ro", "fcall", "incr", "multi"} {
		if n := cmdCalls(t, srv, cmd); n != 0 {
			t.Errorf("the server ran %s %d times; want nothing sent", cmd, n)
		}
	}
	// Valid counts still go: no keys, and as many as follow.
	if v, err := c.Eval(ctx, "return #KEYS", 0); err != nil || v.String() != "0" {
		t.Errorf("Eval with no keys = %v, %v", v, err)
	}
	if v, err := c.Do(ctx, "EVAL", "return #KEYS", 2, "a", "b"); err != nil || v.String() != "2" {
		t.Errorf("EVAL with every word a key = %v, %v", v, err)
	}
	if v, err := c.Do(ctx, "EVAL", "return #KEYS", "0"); err != nil || v.String() != "0" {
		t.Errorf("EVAL with numkeys \"0\" = %v, %v", v, err)
	}
}

// A script that cannot be loaded before a pipeline or transaction (it does
// not compile) does not cost the batch its replies: the server ran the
// rest, and Exec returns every reply. The command that runs the script has
// the load's error in its reply, still NOSCRIPT and not applied, and Exec
// names it as the batch's first error. It used to return no reply at all
// and an error of unknown outcome, though EXEC's replies told what ran.
func TestScriptLoadFailureKeepsReplies(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	bad := NewScript("return redis.call('INCR', KEYS[1]")
	good := NewScript("return redis.call('INCR', KEYS[1])")
	check := func(how string, replies []Value, err error, at int) {
		t.Helper()
		if len(replies) != 4 {
			t.Fatalf("%s: %v, %v; want 4 replies", how, replies, err)
		}
		if replies[0].String() != "OK" || replies[1].String() != "1" || replies[3].String() != "1" {
			t.Errorf("%s: replies %v; want OK, 1, the script's error, 1", how, replies)
		}
		rerr := replies[2].Err()
		var se *Error
		if !errors.As(rerr, &se) || se.Prefix != "NOSCRIPT" || !strings.Contains(rerr.Error(), "Error compiling script") ||
			OutcomeOf(rerr) != OutcomeNotApplied {
			t.Errorf("%s: the script's reply %v (outcome %v); want NOSCRIPT that gives the load's error, not applied", how, rerr, OutcomeOf(rerr))
		}
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Index != at || errors.Is(err, ErrNotApplied) || SafeToRetry(err) {
			t.Errorf("%s: Exec's error %v; want a *CommandError for command %d, the others having run", how, err, at+1)
		}
	}
	for name, opts := range map[string][]PipelineOption{"transaction": nil, "pipeline": {NoTransaction}} {
		c.Del(ctx, "a", "b")
		replies, err := c.Pipeline(opts...).Set("s", 1).RunScript(good, []string{"a"}).RunScript(bad, []string{"b"}).Incr("b").Exec(ctx)
		check("a "+name, replies, err, 2)
	}
	c.Del(ctx, "a", "b")
	tx, err := c.Watch(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	replies, err := tx.Multi().Set("s", 1).RunScript(good, []string{"a"}).RunScript(bad, []string{"b"}).Incr("b").Exec(ctx)
	check("a Tx's Multi", replies, err, 2)
}

// Script.Run hands out its reply decoded by the Decoder registered for
// EVALSHA, the command it runs, also when the server had lost the script
// (SCRIPT FLUSH after it was loaded) and Run ran it with EVAL instead:
// the caller sees one call either way, not a reply left undecoded or
// decoded by EVAL's Decoder. On a Client and on a Tx, and a Decoder's
// failure is the call's error either way.
func TestScriptRunDecodesTheFallbackReply(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	c.SetDecoder("EVALSHA", func(v Value) (any, error) {
		s, err := v.Text()
		if s == "refuse" {
			return nil, errors.New("refused")
		}
		return "by EVALSHA's decoder: " + s, err
	})
	c.SetDecoder("EVAL", func(v Value) (any, error) { return "by EVAL's decoder", nil })
	s := NewScript("redis.call('INCR', KEYS[1]); return ARGV[1]")
	tx, err := c.Watch(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	runs := 0
	for _, on := range []struct {
		name string
		d    Doer
	}{{"Client", c}, {"Tx", tx}} {
		for _, flushed := range []bool{false, true} {
			if flushed {
				if err := c.ScriptFlush(ctx); err != nil {
					t.Fatal(err)
				}
			} else if _, err := c.ScriptLoad(ctx, s.Source()); err != nil {
				t.Fatal(err)
			}
			how := fmt.Sprintf("Run on a %s, script flushed: %v", on.name, flushed)
			v, err := s.Run(ctx, on.d, []string{"n"}, "x")
			runs++
			got, derr := v.Decoded()
			if err != nil || derr != nil || got != "by EVALSHA's decoder: x" {
				t.Errorf("%s: %v, decoded %v, %v; want it decoded by EVALSHA's decoder", how, err, got, derr)
			}
			if flushed {
				if err := c.ScriptFlush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			_, err = s.Run(ctx, on.d, []string{"n"}, "refuse")
			runs++
			var de *DecodeError
			if !errors.As(err, &de) || de.Err.Error() != "refused" {
				t.Errorf("%s of a reply its decoder refuses: %v; want a *DecodeError", how, err)
			}
			if n, err := c.Get(ctx, "n"); err != nil || n != strconv.Itoa(runs) {
				t.Fatalf("%s: n = %q, %v; want %d", how, n, err, runs)
			}
		}
	}
}

// A plain Client on a cluster node that does not serve the key is
// answered MOVED before any script runs. Eval, EvalSha, FCall and
// Script.Run report that as not applied, as Do does, and not as the
// script's error of unknown outcome.
func TestScriptServerRedirectNotApplied(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := ctxT(t)
	const key = "n"
	owner, err := cl.SlotOwner(int(hashslot.Slot(key)))
	if err != nil {
		t.Fatal(err)
	}
	var other *redistest.Server
	for _, m := range cl.Masters {
		if m != owner {
			other = m
			break
		}
	}
	c, err := NewClient(Options{Addr: other.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewScript("return redis.call('INCR', KEYS[1])")
	if _, err := c.ScriptLoad(ctx, s.Source()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, "FUNCTION", "LOAD", "#!lua name=redir\nredis.register_function('incr', function(keys) return redis.call('INCR', keys[1]) end)"); err != nil {
		t.Fatal(err)
	}
	v, err := c.Do(ctx, "EVALSHA", s.Hash(), 1, key)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]func() error{
		"Do":  func() error { return v.Err() },
		"Run": func() error { _, err := s.Run(ctx, c, []string{key}); return err },
		"Eval": func() error {
			_, err := c.Eval(ctx, s.Source(), 1, key)
			return err
		},
		"EvalSha": func() error { _, err := c.EvalSha(ctx, s.Hash(), 1, key); return err },
		"FCall":   func() error { _, err := c.FCall(ctx, "incr", 1, key); return err },
	}
	for how, run := range runs {
		err := run()
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "MOVED" || OutcomeOf(err) != OutcomeNotApplied || !SafeToRetry(err) {
			t.Errorf("%s: %v (outcome %v); want the server's MOVED, not applied", how, err, OutcomeOf(err))
		}
	}
}

// A script or function called while the server runs another one is
// refused with BUSY before any of it runs: in the server's words that
// error is not applied and safe to send again, wherever the call was made
// (Script.Run, Eval, EvalSha, FCall, Do, a pipeline, a stream), not "the
// script failed, maybe after some of its writes". A BUSY the script
// returns itself, in other words, stays of unknown outcome.
func TestScriptBusyNotApplied(t *testing.T) {
	c, srv := newTestClient(t, Options{}, "--lua-time-limit", "50")
	ctx := ctxT(t)
	s := NewScript("return redis.call('INCR', KEYS[1])")
	if _, err := s.Run(ctx, c, []string{"other"}); err != nil { // loaded: EVALSHA finds it
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, "FUNCTION", "LOAD", "#!lua name=busylib\nredis.register_function('incr', function(keys) return redis.call('INCR', keys[1]) end)"); err != nil {
		t.Fatal(err)
	}
	own := NewScript("redis.call('INCR', KEYS[1]); return redis.error_reply('BUSY made up')")
	if _, err := own.Run(ctx, c, []string{"own"}); OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Errorf("a script's own BUSY after its write = %v (outcome %v), want unknown outcome", err, OutcomeOf(err))
	}

	// Another client runs a script that loops until SCRIPT KILL ends it.
	looper, err := NewClient(Options{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer looper.Close()
	loopDone := make(chan error, 1)
	go func() {
		_, err := looper.Eval(ctx, "while true do end", 0)
		loopDone <- err
	}()
	var se *Error
	waitUntil(t, ctx, "the server to answer BUSY", func() bool {
		_, err := c.Get(ctx, "n")
		return errors.As(err, &se) && se.Prefix == "BUSY"
	})

	check := func(how string, err error) {
		t.Helper()
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "BUSY" || OutcomeOf(err) != OutcomeNotApplied || !SafeToRetry(err) ||
			strings.Contains(err.Error(), "maybe after some of its writes") {
			t.Errorf("%s while another script runs = %v (outcome %v); want the server's BUSY, not applied", how, err, OutcomeOf(err))
		}
	}
	_, err = s.Run(ctx, c, []string{"n"})
	check("Script.Run", err)
	_, err = c.Eval(ctx, s.Source(), 1, "n")
	check("Eval", err)
	_, err = c.EvalSha(ctx, s.Hash(), 1, "n")
	check("EvalSha", err)
	_, err = c.FCall(ctx, "incr", 1, "n")
	check("FCall", err)
	v, err := c.Do(ctx, "EVALSHA", s.Hash(), 1, "n")
	if err != nil {
		t.Fatal(err)
	}
	check("Do EVALSHA", v.Err())
	replies, err := c.Pipeline(NoTransaction).RunScript(s, []string{"n"}).Do("EVAL", s.Source(), 1, "n").Exec(ctx)
	if len(replies) != 2 {
		t.Fatalf("RunScript in a pipeline = %v, %v", replies, err)
	}
	check("RunScript in a pipeline", replies[0].Err())
	check("EVAL in a pipeline", replies[1].Err())
	var streamed []Value
	if _, err := c.Stream(ctx, func(_ int, v Value) error { streamed = append(streamed, v); return nil }, ErrorsInReplies).
		Do("EVALSHA", s.Hash(), 1, "n").Close(ctx); err != nil || len(streamed) != 1 {
		t.Fatalf("EVALSHA in a stream = %v, %v", streamed, err)
	}
	check("EVALSHA in a stream", streamed[0].Err())

	waitUntil(t, ctx, "SCRIPT KILL to end the loop", func() bool { return c.ScriptKill(ctx) == nil })
	if err := <-loopDone; err == nil {
		t.Fatal("the looping script ended without an error; want the one SCRIPT KILL gives it")
	}
	if n, err := c.Get(ctx, "n"); !errors.Is(err, ErrNil) {
		t.Errorf("n = %q, %v; want no such key: no call refused with BUSY ran", n, err)
	}
}

// A script that does not compile never ran: the server's error for it
// ("ERR Error compiling script ...") is not applied, through Script.Run,
// Eval, Do, a pipeline, a transaction's EXEC (where EVAL compiles it) and
// a stream, rather than "the script failed, maybe after some of its
// writes". An error in the same words that a script returns after its
// writes through EVALSHA stays of unknown outcome.
func TestScriptCompileErrorNotApplied(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	const src = "redis.call('INCR', KEYS[1]) return ("
	check := func(how string, err error) {
		t.Helper()
		var se *Error
		if !errors.As(err, &se) || !strings.HasPrefix(se.Msg, "ERR Error compiling script") || OutcomeOf(err) != OutcomeNotApplied ||
			!SafeToRetry(err) || strings.Contains(err.Error(), "maybe after some of its writes") {
			t.Errorf("%s of a script that does not compile = %v (outcome %v); want the server's error, not applied", how, err, OutcomeOf(err))
		}
	}
	_, err := NewScript(src).Run(ctx, c, []string{"n"})
	check("Script.Run", err)
	_, err = c.Eval(ctx, src, 1, "n")
	check("Eval", err)
	v, err := c.Do(ctx, "EVAL", src, 1, "n")
	if err != nil {
		t.Fatal(err)
	}
	check("Do EVAL", v.Err())
	for name, opts := range map[string][]PipelineOption{"transaction": nil, "pipeline": {NoTransaction}} {
		replies, err := c.Pipeline(opts...).Set("k", "v").Do("EVAL", src, 1, "n").Exec(ctx)
		if len(replies) != 2 || OutcomeOf(err) != OutcomeUnknown {
			t.Fatalf("EVAL in a %s = %v, %v (outcome %v); want both replies, of unknown outcome as a whole: SET ran", name, replies, err, OutcomeOf(err))
		}
		check("EVAL in a "+name, replies[1].Err())
	}
	var streamed []Value
	if _, err := c.Stream(ctx, func(_ int, v Value) error { streamed = append(streamed, v); return nil }, ErrorsInReplies).
		Do("EVAL", src, 1, "n").Close(ctx); err != nil || len(streamed) != 1 {
		t.Fatalf("EVAL in a stream = %v, %v", streamed, err)
	}
	check("EVAL in a stream", streamed[0].Err())
	if n, err := c.Get(ctx, "n"); !errors.Is(err, ErrNil) {
		t.Errorf("n = %q, %v; want no such key: no script that failed to compile ran", n, err)
	}

	// A script that returns those words itself ran. Run by EVALSHA, which
	// the server never answers so, its error is of unknown outcome.
	own := NewScript("redis.call('INCR', KEYS[1]); return redis.error_reply('ERR Error compiling script (new function): made up')")
	if _, err := c.ScriptLoad(ctx, own.Source()); err != nil {
		t.Fatal(err)
	}
	if _, err := own.Run(ctx, c, []string{"own"}); OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Errorf("Script.Run of a script returning a compile error of its own after its write = %v (outcome %v), want unknown outcome", err, OutcomeOf(err))
	}
	if _, err := c.EvalSha(ctx, own.Hash(), 1, "own"); OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Errorf("EvalSha of a script returning a compile error of its own after its write = %v (outcome %v), want unknown outcome", err, OutcomeOf(err))
	}
	replies, err := c.Pipeline(NoTransaction).Do("EVALSHA", own.Hash(), 1, "own").Exec(ctx)
	if len(replies) != 1 || OutcomeOf(replies[0].Err()) != OutcomeUnknown {
		t.Errorf("EVALSHA in a pipeline of a script returning a compile error of its own = %v, %v; want a reply of unknown outcome", replies, err)
	}
}

// FCALL of a function the server does not have ran nothing: the server's
// "ERR Function not found" is not applied, through FCall, Do, a pipeline
// and a stream, rather than "the script failed, maybe after some of its
// writes". The same words returned by a script run with EVALSHA stay of
// unknown outcome.
func TestScriptFunctionNotFoundNotApplied(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	check := func(how string, err error) {
		t.Helper()
		var se *Error
		if !errors.As(err, &se) || se.Msg != "ERR Function not found" || OutcomeOf(err) != OutcomeNotApplied || !SafeToRetry(err) ||
			strings.Contains(err.Error(), "maybe after some of its writes") {
			t.Errorf("%s of a function the server does not have = %v (outcome %v); want the server's error, not applied", how, err, OutcomeOf(err))
		}
	}
	_, err := c.FCall(ctx, "nosuchfn", 1, "n")
	check("FCall", err)
	v, err := c.Do(ctx, "FCALL", "nosuchfn", 1, "n")
	if err != nil {
		t.Fatal(err)
	}
	check("Do FCALL", v.Err())
	for name, opts := range map[string][]PipelineOption{"transaction": nil, "pipeline": {NoTransaction}} {
		replies, err := c.Pipeline(opts...).Set("k", "v").FCall("nosuchfn", 1, "n").Exec(ctx)
		if len(replies) != 2 || OutcomeOf(err) != OutcomeUnknown {
			t.Fatalf("FCALL in a %s = %v, %v (outcome %v); want both replies, of unknown outcome as a whole: SET ran", name, replies, err, OutcomeOf(err))
		}
		check("FCALL in a "+name, replies[1].Err())
	}
	var streamed []Value
	if _, err := c.Stream(ctx, func(_ int, v Value) error { streamed = append(streamed, v); return nil }, ErrorsInReplies).
		Do("FCALL", "nosuchfn", 1, "n").Close(ctx); err != nil || len(streamed) != 1 {
		t.Fatalf("FCALL in a stream = %v, %v", streamed, err)
	}
	check("FCALL in a stream", streamed[0].Err())

	own := NewScript("redis.call('INCR', KEYS[1]); return redis.error_reply('ERR Function not found')")
	if _, err := c.ScriptLoad(ctx, own.Source()); err != nil {
		t.Fatal(err)
	}
	if _, err := own.Run(ctx, c, []string{"own"}); OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Errorf("Script.Run of a script returning \"ERR Function not found\" after its write = %v (outcome %v), want unknown outcome", err, OutcomeOf(err))
	}
	if n, err := c.Get(ctx, "own"); err != nil || n != "1" {
		t.Errorf("own = %q, %v; want 1: the script ran once", n, err)
	}
}

// A script's own error that begins as one of the server's refusals of the
// call but goes on in other words, returned after the script's writes, is
// of unknown outcome: only the server's whole text counts. The server's
// BUSY ends "You can only call SCRIPT KILL or SHUTDOWN NOSAVE." (or
// FUNCTION KILL), never anything else.
func TestScriptOwnBusyInOtherWords(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	own := NewScript("redis.call('INCR', KEYS[1]); " +
		"return redis.error_reply('BUSY Redis is busy running a script. You can only call me later.')")
	_, err := own.Run(ctx, c, []string{"own"})
	if OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) || !strings.Contains(err.Error(), "maybe after some of its writes") {
		t.Errorf("Script.Run of a script returning a BUSY of its own after its write = %v (outcome %v); want unknown outcome", err, OutcomeOf(err))
	}
	v, err := c.Do(ctx, "EVALSHA", own.Hash(), 1, "own")
	if err != nil {
		t.Fatal(err)
	}
	if OutcomeOf(v.Err()) != OutcomeUnknown {
		t.Errorf("EVALSHA of a script returning a BUSY of its own after its write = %v (outcome %v); want unknown outcome", v.Err(), OutcomeOf(v.Err()))
	}
	if n, err := c.Get(ctx, "own"); err != nil || n != "2" {
		t.Errorf("own = %q, %v; want 2: the script ran twice", n, err)
	}
}

// A script's own error that begins as the server's compile error but does
// not go on as the server's does ("(new function): " and Lua's message),
// returned by EVAL after the script's writes, is of unknown outcome.
func TestScriptOwnCompileErrorInOtherWords(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	const src = "redis.call('INCR', KEYS[1]); return redis.error_reply('ERR Error compiling script failed, said the script')"
	// First: the server has not seen the script, so Script.Run runs it
	// with EVAL after NOSCRIPT.
	_, err := NewScript(src).Run(ctx, c, []string{"own"})
	if OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Errorf("Script.Run (EVAL after NOSCRIPT) of a script returning a compile error of its own after its write = %v (outcome %v); want unknown outcome", err, OutcomeOf(err))
	}
	_, err = c.Eval(ctx, src, 1, "own")
	if OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) || !strings.Contains(err.Error(), "maybe after some of its writes") {
		t.Errorf("Eval of a script returning a compile error of its own after its write = %v (outcome %v); want unknown outcome", err, OutcomeOf(err))
	}
	replies, err := c.Pipeline(NoTransaction).Do("EVAL", src, 1, "own").Exec(ctx)
	if len(replies) != 1 || OutcomeOf(replies[0].Err()) != OutcomeUnknown {
		t.Errorf("EVAL in a pipeline of a script returning a compile error of its own = %v, %v; want a reply of unknown outcome", replies, err)
	}
	if n, err := c.Get(ctx, "own"); err != nil || n != "3" {
		t.Errorf("own = %q, %v; want 3: the script ran three times", n, err)
	}
}
