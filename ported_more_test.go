package redpipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// The tests here hold cases that coredis's and redis-py's suites check
// about connections, retries, timeouts, scripts and the CLIENT commands
// (coredis's test_connection.py, test_pipeline.py and test_scripting.py;
// redis-py's test_connection.py, test_retry.py, test_connection_pool.py,
// test_scripting.py, test_lock.py and the client cases of
// test_commands.py), written against redpipe's API and run on real
// servers. Where redpipe's documented behaviour differs from the peer's,
// the test checks redpipe's and says why.

// waitUntil checks cond every 10ms until it holds, failing the test if
// ctx ends first.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	waitForServer(t, ctx, what, func() (bool, string) { return cond(), "" })
}

// normalClients counts the server's normal client connections, the one
// asking included.
func normalClients(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	v, err := srv.Do("CLIENT", "LIST", "TYPE", "normal")
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	s, _ := v.(string)
	return strings.Count(strings.TrimSpace(s), "\n") + 1
}

// TestServerTimeoutClosesIdleConnections: the server closes connections
// idle for longer than its timeout setting (CONFIG SET timeout 1); calls
// made after that, writes included, on the shared connection, on a pooled
// one (Watch) and in a pipeline, go over new connections and succeed,
// with no retry allowed: the client sees such a connection closed before
// it sends anything on it. From redis-py's and coredis's cases of a
// connection that the server dropped while it sat in the pool and is
// replaced on its next use. It runs with the connection read by its
// callers (the default), by its callers asleep on the socket (PollWait
// -1: nothing watches an idle connection then either) and by a goroutine
// of its own (a Dialer).
func TestServerTimeoutClosesIdleConnections(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, how := range []string{"callers read", "callers read asleep", "reader goroutine"} {
		t.Run(how, func(t *testing.T) {
			opt := Options{Addr: srv.Addr, MaxRetries: -1}
			switch how {
			case "callers read asleep":
				opt.PollWait = -1
			case "reader goroutine":
				var d net.Dialer
				opt.Dialer = d.DialContext
			}
			c, err := NewClient(opt)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := ctxT(t)
			if err := c.Set(ctx, "k", "0"); err != nil {
				t.Fatal(err)
			}
			tx, err := c.Watch(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Close(); err != nil {
				t.Fatal(err)
			}
			srv.MustDo(t, "CONFIG", "SET", "timeout", "1")
			defer srv.Do("CONFIG", "SET", "timeout", "0")
			// Only the CLIENT LIST's own connection is left once the
			// server has closed the client's shared and pooled ones.
			closed := func() bool {
				if normalClients(t, srv) != 1 {
					return false
				}
				// A reader goroutine sees the end by itself, soon after.
				cn := c.shared.Load()
				return how != "reader goroutine" || cn == nil || !cn.Alive()
			}
			waitUntil(t, ctx, "the server to close the idle connections", closed)

			if err := c.Set(ctx, "k", "1"); err != nil {
				t.Errorf("SET on a shared connection the server closed while idle: %v", err)
			}
			if tx, err := c.Watch(ctx, "k"); err != nil {
				t.Errorf("Watch on a pooled connection the server closed while idle: %v", err)
			} else {
				if _, err := tx.Multi().Incr("k").Exec(ctx); err != nil {
					t.Errorf("a transaction after Watch: %v", err)
				}
				tx.Close()
			}
			waitUntil(t, ctx, "the server to close the idle connections again", closed)
			if _, err := c.Pipeline(NoTransaction).Incr("k").Incr("k").Exec(ctx); err != nil {
				t.Errorf("a pipeline on a shared connection the server closed while idle: %v", err)
			}
			waitUntil(t, ctx, "the server to close the idle connections again", closed)
			if _, err := c.Pipeline().Incr("k").Incr("k").Exec(ctx); err != nil {
				t.Errorf("a transaction on a shared connection the server closed while idle: %v", err)
			}
			if got, err := c.Get(ctx, "k"); err != nil || got != "6" {
				t.Errorf("k = %q, %v after SET 1 and five INCRs, want 6", got, err)
			}
		})
	}
}

// TestDatabaseKeptAfterReconnect: a client of a database other than 0
// whose connections the server killed (CLIENT KILL TYPE normal) selects
// that database again on the new ones, shared and pooled, and names them
// again: its reads and writes never land in database 0. From redis-py's cases of a connection
// re-established with the pool's db, and coredis's connection tests that
// check db in every new connection.
func TestDatabaseKeptAfterReconnect(t *testing.T) {
	c, srv := newTestClient(t, Options{DB: 5, ClientName: "five"})
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "five"); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	tx.Close()
	for round := 0; round < 2; round++ {
		srv.MustDo(t, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
		// A read is sent again on a new connection if the first finds its
		// connection dead.
		if got, err := c.Get(ctx, "k"); err != nil || got != "five" {
			t.Fatalf("round %d: GET after the kill = %q, %v; want five from db 5", round, got, err)
		}
		if err := c.Set(ctx, "w", round); err != nil {
			t.Fatalf("round %d: SET after the kill: %v", round, err)
		}
		tx, err := c.Watch(ctx, "k")
		if err != nil {
			t.Fatalf("round %d: Watch after the kill: %v", round, err)
		}
		if got, err := tx.Get(ctx, "k"); err != nil || got != "five" {
			t.Errorf("round %d: GET on the Tx after the kill = %q, %v; want five from db 5", round, got, err)
		}
		if _, err := tx.Multi().Set("t", round).Exec(ctx); err != nil {
			t.Errorf("round %d: transaction after the kill: %v", round, err)
		}
		tx.Close()
		if info, err := c.ClientInfo(ctx); err != nil || !strings.Contains(info, " db=5 ") || !strings.Contains(info, " name=five ") {
			t.Errorf("round %d: CLIENT INFO = %q, %v; want db=5 and name=five", round, info, err)
		}
	}
	out, err := srv.Pipeline([]string{"DBSIZE"}, []string{"SELECT", "5"}, []string{"MGET", "k", "w", "t"})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := out[0].(int64); n != 0 {
		t.Errorf("db 0 holds %d keys, want none", n)
	}
	if got := fmt.Sprint(out[2]); got != "[five 1 1]" {
		t.Errorf("MGET k w t in db 5 = %s, want [five 1 1]", got)
	}
}

// TestClientKillsItsOwnConnectionInPipeline: a pipeline that holds CLIENT
// KILL ... SKIPME no of its own connection keeps the replies of the
// commands up to the kill, which the server answers before it closes the
// connection without running those after it; they and Exec have errors
// of unknown outcome that hold the connection's; in a transaction, which runs whole while the server cuts EXEC's reply
// short, with an *OutcomeError of unknown outcome. The client goes on
// over a new connection. From redis-py's
// test_client_kill and coredis's kill of the client's own connection,
// which expect the next call to reconnect.
func TestClientKillsItsOwnConnectionInPipeline(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	for _, transaction := range []bool{false, true} {
		t.Run(fmt.Sprintf("transaction=%v", transaction), func(t *testing.T) {
			if err := c.FlushDB(ctx); err != nil {
				t.Fatal(err)
			}
			id := must(c.ClientID(ctx))
			var p *Pipeline
			if transaction {
				p = c.Pipeline()
			} else {
				p = c.Pipeline(NoTransaction)
			}
			p.Set("before", 1).Do("CLIENT", "KILL", "ID", id, "SKIPME", "no").Set("after", 1)
			replies, err := p.Exec(ctx)
			if transaction {
				// EXEC runs every command, but the server adds no reply
				// once the kill has marked its connection to close: EXEC's
				// array comes cut short, and the outcome is unknown.
				var oe *OutcomeError
				if replies != nil || !errors.As(err, &oe) || OutcomeOf(err) != OutcomeUnknown {
					t.Fatalf("Exec = %v, %v (outcome %v); want no replies and an *OutcomeError of unknown outcome", replies, err, OutcomeOf(err))
				}
			} else {
				// The connection ends before the batch has every reply:
				// Exec keeps those read (the SET before, and the kill,
				// which the server answers before it closes), and the
				// SET after has an error reply of unknown outcome, as
				// has Exec, for that command, holding the connection's
				// error.
				var ce *ConnError
				var cmd *CommandError
				if len(replies) != 3 || !errors.As(err, &ce) || !errors.As(err, &cmd) || cmd.Index != 2 || OutcomeOf(err) != OutcomeUnknown {
					t.Fatalf("Exec = %v, %v (outcome %v); want 3 replies and a *CommandError for command 2, of unknown outcome, holding a *ConnError", replies, err, OutcomeOf(err))
				}
				if replies[0].String() != "OK" || replies[1].Err() != nil {
					t.Errorf("the replies of the SET before and of the kill = %v; want them as the server sent them", replies[:2])
				}
				if e := replies[2].Err(); !errors.As(e, &ce) || OutcomeOf(e) != OutcomeUnknown {
					t.Errorf("the reply of the SET after = %v (outcome %v); want an error of unknown outcome holding a *ConnError", e, OutcomeOf(e))
				}
				if _, err := c.Get(ctx, "after"); !errors.Is(err, ErrNil) {
					t.Errorf("GET after = %v; want ErrNil, the server having closed before running it", err)
				}
			}
			if n := must(c.ClientID(ctx)); n == id {
				t.Errorf("the shared connection is still %d after it was killed", id)
			}
			if got, err := c.Get(ctx, "before"); err != nil || got != "1" {
				t.Errorf("GET before = %q, %v", got, err)
			}
		})
	}
}

// TestClientPauseHoldsCalls: calls made while the server is paused by
// CLIENT PAUSE, from another client or from this one, wait and each gets
// its own reply once it ends; a call whose context ends meanwhile fails
// with the context's error and takes no other call's reply. From redis-py's
// test_client_pause and test_client_unpause, and coredis's
// test_client_pause.
func TestClientPauseHoldsCalls(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)

	// Paused by this client itself: the pause holds the writes that
	// follow it on the same connection too.
	if err := c.ClientPause(ctx, 300, "WRITE"); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	got := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.Incr(ctx, "paused")
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("INCR %d during a pause: %v", i, errs[i])
		}
		seen[got[i]] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct INCR replies of %d during a pause: %v", len(seen), n, got)
	}

	// Paused by another client: a call that gives up gets its context's
	// error, and the calls after it on the same connection their own
	// replies.
	srv.MustDo(t, "CLIENT", "PAUSE", "30000", "WRITE")
	t.Cleanup(func() { srv.Do("CLIENT", "UNPAUSE") })
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := c.Incr(short, "paused")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || OutcomeOf(err) != OutcomeUnknown {
		t.Errorf("INCR whose context ends in a pause = %v (outcome %v); want DeadlineExceeded of unknown outcome", err, OutcomeOf(err))
	}
	done := make(chan error, 1)
	go func() {
		v, err := c.Incr(ctx, "other")
		if err == nil && v != 1 {
			err = fmt.Errorf("INCR other = %d, want 1", v)
		}
		done <- err
	}()
	// Reads go on in a WRITE pause, behind the held INCR on the shared
	// connection: they wait for it.
	srv.MustDo(t, "CLIENT", "UNPAUSE")
	if err := <-done; err != nil {
		t.Errorf("INCR after the pause: %v", err)
	}
	if v, err := c.Get(ctx, "paused"); err != nil || v != strconv.Itoa(n+1) {
		t.Errorf("GET paused = %q, %v; want %d (the abandoned INCR ran)", v, err, n+1)
	}
}

// TestMaxClientsReached: a server that has reached maxclients refuses a
// new connection with its own error, which it sends as it accepts the
// connection, before the client has said anything; the call gets that
// error, in the server's words, as the refusal of the connection's setup,
// not sent, with what to do about it, as when the refusal comes after
// HELLO was sent. Once a client leaves, the next call connects. From
// redis-py's and coredis's handling of "max number of clients reached" as
// a connection error. It runs with the connection read by its callers
// (the default) and by a goroutine of its own (a Dialer); each dial waits
// until the server's refusal has come, the order in which a connection
// read by its callers took the refusal for a malformed reply.
func TestMaxClientsReached(t *testing.T) {
	srv := redistest.Start(t)
	for _, how := range []string{"callers read", "reader goroutine"} {
		t.Run(how, func(t *testing.T) {
			ctx := ctxT(t)
			srv.MustDo(t, "CONFIG", "SET", "maxclients", "2")
			defer srv.Do("CONFIG", "SET", "maxclients", "10000")
			var held []net.Conn
			for range 2 {
				nc, err := net.Dial("tcp", srv.Addr)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				if _, err := nc.Write([]byte("PING\r\n")); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 64)
				n, err := nc.Read(buf)
				if err != nil || string(buf[:n]) != "+PONG\r\n" {
					t.Fatalf("PING on a held connection = %q, %v", buf[:n], err)
				}
				held = append(held, nc)
			}
			var full atomic.Bool
			full.Store(true)
			opt := Options{Addr: srv.Addr, MaxRetries: -1}
			if how == "reader goroutine" {
				opt.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
					var d net.Dialer
					nc, err := d.DialContext(ctx, network, addr)
					if err == nil && full.Load() {
						awaitReadable(t, nc)
					}
					return nc, err
				}
			} else {
				netDialed.set(func(nc net.Conn) {
					if full.Load() {
						awaitReadable(t, nc)
					}
				})
				defer netDialed.set(nil)
			}
			c, err := NewClient(opt)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, call := range []struct {
				what string
				do   func() error
			}{
				{"SET", func() error { return c.Set(ctx, "k", "v") }},
				{"Watch", func() error { _, err := c.Watch(ctx, "k"); return err }},
			} {
				err := call.do()
				var he *HandshakeError
				var se *Error
				if !errors.As(err, &he) || !errors.As(err, &se) || se.Prefix != "ERR" || se.Msg != "ERR max number of clients reached" {
					t.Errorf("%s on a full server = %v; want a *HandshakeError with the server's max number of clients error", call.what, err)
				}
				if !strings.Contains(fmt.Sprint(err), "maxclients") {
					t.Errorf("%s on a full server = %v; want it to name the maxclients setting", call.what, err)
				}
				if OutcomeOf(err) != OutcomeNotSent {
					t.Errorf("%s on a full server: %v has outcome %v, want not sent", call.what, err, OutcomeOf(err))
				}
			}
			full.Store(false)
			held[0].Close()
			waitUntil(t, ctx, "a call to connect once a client left", func() bool { return c.Set(ctx, "k", "v") == nil })
			if got, err := c.Get(ctx, "k"); err != nil || got != "v" {
				t.Errorf("GET k = %q, %v", got, err)
			}
		})
	}
}

// TestConnectionStateCommandsRefused: RESET, CLIENT SETNAME and CLIENT
// REPLY, which redis-py and coredis send on a connection of their own
// (test_reset, test_client_setname, test_client_reply), would change
// the state of a connection redpipe shares or pools; they are refused
// unsent on a Client, in pipelines and on a Tx, and the connection's
// database and name stay as Options say.
func TestConnectionStateCommandsRefused(t *testing.T) {
	c, _ := newTestClient(t, Options{DB: 3, ClientName: "ported"})
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]any{{"RESET"}, {"CLIENT", "SETNAME", "other"}, {"CLIENT", "REPLY", "OFF"}} {
		_, err := c.Do(ctx, args...)
		var ue *UsageError
		if !errors.As(err, &ue) || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("Do%v = %v; want a *UsageError, not sent", args, err)
		}
		for _, p := range []*Pipeline{c.Pipeline(), c.Pipeline(NoTransaction)} {
			_, err := p.Get("k").Do(args...).Exec(ctx)
			if !errors.As(err, &ue) || OutcomeOf(err) != OutcomeNotSent {
				t.Errorf("pipeline with %v = %v; want a *UsageError, not sent", args, err)
			}
		}
		tx, err := c.Watch(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Do(ctx, args...); !errors.As(err, &ue) {
			t.Errorf("Tx.Do%v = %v; want a *UsageError", args, err)
		}
		if got, err := tx.Get(ctx, "k"); err != nil || got != "v" {
			t.Errorf("GET on the Tx after %v was refused = %q, %v", args, got, err)
		}
		tx.Close()
	}
	if got, err := c.Get(ctx, "k"); err != nil || got != "v" {
		t.Errorf("GET k in db 3 = %q, %v", got, err)
	}
	if name, err := c.ClientGetName(ctx); err != nil || name != "ported" {
		t.Errorf("CLIENT GETNAME = %q, %v; want ported", name, err)
	}
}

// TestScriptKilledInTransaction: a script stopped by SCRIPT KILL inside
// MULTI/EXEC fails its own command only; EXEC ran the others, whose
// replies come back with a *CommandError for the script, of unknown
// outcome. A Script run on a Watch session after SCRIPT FLUSH loads
// itself again there. From coredis's and redis-py's script cases in
// pipelines (test_script_object_in_pipeline, the error-in-lua cases).
func TestScriptKilledInTransaction(t *testing.T) {
	t.Parallel()
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	done := make(chan error, 1)
	var replies []Value
	go func() {
		var err error
		replies, err = c.Pipeline().Set("a", 1).
			Eval("local i = 0 while i < 2e9 do i = i + 1 end return i", 0).
			Set("b", 1).Exec(ctx)
		done <- err
	}()
	waitUntil(t, ctx, "the script to run", func() bool {
		v, err := srv.Do("SCRIPT", "KILL")
		if err != nil {
			t.Fatal(err)
		}
		_, notBusy := v.(redistest.ReplyError)
		return !notBusy
	})
	err := <-done
	var cmd *CommandError
	if !errors.As(err, &cmd) || cmd.Index != 1 || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("Exec of a transaction whose script was killed = %v (outcome %v); want a *CommandError for command 1, of unknown outcome", err, OutcomeOf(err))
	}
	if len(replies) != 3 || replies[0].String() != "OK" || replies[2].String() != "OK" || replies[1].Err() == nil {
		t.Errorf("replies = %v; want OK, the script's error, OK", replies)
	}
	if n := must(c.Exists(ctx, "a", "b")); n != 2 {
		t.Errorf("EXISTS a b = %d, want 2: EXEC ran the commands around the script", n)
	}

	s := NewScript(multiplyScript)
	tx, err := c.Watch(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := c.ScriptFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Run(ctx, tx, []string{"a"}, 3); err != nil || must(v.Int64()) != 3 {
		t.Errorf("Script.Run on a Tx after SCRIPT FLUSH = %v, %v; want 3", v, err)
	}
	if _, err := tx.Multi().Set("a", 2).Exec(ctx); err != nil {
		t.Errorf("the Tx's transaction after the script: %v", err)
	}
}

const multiplyScript = "return tonumber(redis.call('GET', KEYS[1])) * tonumber(ARGV[1])"

// TestScriptFlushBetweenCalls: a script flushed from the server's cache
// (SCRIPT FLUSH) between calls fails EVALSHA with NOSCRIPT, not applied,
// while Script.Run and a pipeline's RunScript load it again and run it,
// in a transaction and without. From coredis's test_evalsha_script_not_loaded,
// test_script_loading and test_script_object_in_pipeline, and redis-py's
// test_script_object and test_script_object_in_pipeline.
func TestScriptFlushBetweenCalls(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	if err := c.Set(ctx, "a", 2); err != nil {
		t.Fatal(err)
	}
	s := NewScript(multiplyScript)
	sha := must(c.ScriptLoad(ctx, multiplyScript))
	if sha != s.Hash() {
		t.Fatalf("SCRIPT LOAD = %s, Hash = %s", sha, s.Hash())
	}
	if v, err := c.EvalSha(ctx, sha, 1, "a", 3); err != nil || must(v.Int64()) != 6 {
		t.Fatalf("EVALSHA = %v, %v; want 6", v, err)
	}
	if err := c.ScriptFlush(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := c.EvalSha(ctx, sha, 1, "a", 3)
	serverErr(t, "EVALSHA after SCRIPT FLUSH", err, "NOSCRIPT", "")
	if OutcomeOf(err) != OutcomeNotApplied {
		t.Errorf("EVALSHA after SCRIPT FLUSH: outcome %v, want not applied", OutcomeOf(err))
	}
	if ex := must(c.ScriptExists(ctx, sha)); len(ex) != 1 || ex[0] != 0 {
		t.Errorf("SCRIPT EXISTS after the flush = %v, want [0]", ex)
	}
	if v, err := s.Run(ctx, c, []string{"a"}, 3); err != nil || must(v.Int64()) != 6 {
		t.Errorf("Script.Run after SCRIPT FLUSH = %v, %v; want 6", v, err)
	}
	if ex := must(c.ScriptExists(ctx, sha)); len(ex) != 1 || ex[0] != 1 {
		t.Errorf("SCRIPT EXISTS after Run = %v, want [1]", ex)
	}
	for _, opts := range [][]PipelineOption{nil, {NoTransaction}} {
		if err := c.ScriptFlush(ctx, "SYNC"); err != nil {
			t.Fatal(err)
		}
		replies, err := c.Pipeline(opts...).Set("a", 2).Get("a").RunScript(s, []string{"a"}, 3).Exec(ctx)
		if err != nil || len(replies) != 3 || replies[1].String() != "2" || must(replies[2].Int64()) != 6 {
			t.Errorf("pipeline %v after SCRIPT FLUSH = %v, %v; want [OK 2 6]", opts, replies, err)
		}
	}
	// A script that fails as it runs fails its pipeline's command, and
	// the pipeline's Exec with it.
	broken := NewScript("return 'hello ' .. missing")
	replies, err := c.Pipeline(NoTransaction).RunScript(broken, nil).Get("a").Exec(ctx)
	var cmd *CommandError
	if !errors.As(err, &cmd) || cmd.Index != 0 || replies[1].String() != "2" {
		t.Errorf("pipeline with a script that fails = %v, %v; want a *CommandError for command 0, and GET's reply", replies, err)
	}
}

// TestScriptKilled: a script stopped by SCRIPT KILL fails its call with
// the server's error, of unknown outcome; while it ran, another client's
// call got BUSY, not applied; and the connection that ran it goes on.
// SCRIPT KILL with no script running is the server's NOTBUSY. From
// coredis's test_script_kill_no_scripts and redis-py's
// test_script_kill_in_use / test_eval_same_slot busy cases.
func TestScriptKilled(t *testing.T) {
	t.Parallel()
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	err := c.ScriptKill(ctx)
	serverErr(t, "SCRIPT KILL with no script running", err, "NOTBUSY", "")

	id := must(c.ClientID(ctx))
	done := make(chan error, 1)
	go func() {
		// Reads only, so SCRIPT KILL may stop it; bounded so that a test
		// that fails does not hold the server for long.
		_, err := c.Eval(ctx, "local i = 0 while i < 2e9 do i = i + 1 end return i", 0)
		done <- err
	}()
	other, err := NewClient(Options{Addr: srv.Addr, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var busy error
	waitUntil(t, ctx, "the script to run", func() bool {
		_, busy = other.Get(ctx, "k")
		var se *Error
		return errors.As(busy, &se) && se.Prefix == "BUSY"
	})
	if OutcomeOf(busy) != OutcomeNotApplied {
		t.Errorf("GET while a script runs = %v, outcome %v; want not applied", busy, OutcomeOf(busy))
	}
	if err := other.ScriptKill(ctx); err != nil {
		t.Fatalf("SCRIPT KILL: %v", err)
	}
	err = <-done
	var se *Error
	if !errors.As(err, &se) || !strings.Contains(se.Msg, "killed") {
		t.Errorf("EVAL of the killed script = %v; want the server's error that says it was killed", err)
	}
	if OutcomeOf(err) != OutcomeUnknown {
		t.Errorf("EVAL of the killed script: outcome %v, want unknown", OutcomeOf(err))
	}
	if n, err := c.ClientID(ctx); err != nil || n != id {
		t.Errorf("CLIENT ID after the kill = %d, %v; want the same connection %d", n, err, id)
	}
	if _, err := other.Get(ctx, "k"); !errors.Is(err, ErrNil) {
		t.Errorf("GET after the script was killed = %v, want ErrNil", err)
	}
}

// TestLockPattern: the lock that redis-py's Lock and coredis's LuaLock
// build: SET NX PX with a token takes it, a second taker fails, release
// and extend are scripts that act only for the token's holder, and the
// lock expires on its own. From redis-py's test_lock.py (test_lock,
// test_competing_locks, test_releasing_lock_no_longer_owned_raises_error,
// test_extend_lock, test_timeout) and coredis's test_lua_lock.py.
func TestLockPattern(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	release := NewScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
	extend := NewScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0")

	take := func(token string, ms int) bool {
		err := c.Set(ctx, "lock", token, "NX", "PX", ms)
		if err != nil && !errors.Is(err, ErrNil) {
			t.Fatalf("SET NX PX: %v", err)
		}
		return err == nil
	}
	if !take("a", 60000) {
		t.Fatal("a free lock was not taken")
	}
	if take("b", 60000) {
		t.Fatal("a held lock was taken again")
	}
	if n := must(release.Run(ctx, c, []string{"lock"}, "b")); must(n.Int64()) != 0 {
		t.Errorf("release by another token = %v, want 0", n)
	}
	if n := must(extend.Run(ctx, c, []string{"lock"}, "b", 10)); must(n.Int64()) != 0 {
		t.Errorf("extend by another token = %v, want 0", n)
	}
	if n := must(extend.Run(ctx, c, []string{"lock"}, "a", 120000)); must(n.Int64()) != 1 {
		t.Errorf("extend by the holder = %v, want 1", n)
	}
	if ms := must(c.PTTL(ctx, "lock")); ms <= 60000 {
		t.Errorf("PTTL after extend = %d, want above 60000", ms)
	}
	if n := must(release.Run(ctx, c, []string{"lock"}, "a")); must(n.Int64()) != 1 {
		t.Errorf("release by the holder = %v, want 1", n)
	}
	if !take("b", 50) {
		t.Fatal("a released lock was not taken")
	}
	waitUntil(t, ctx, "the lock to expire", func() bool { return must(c.Exists(ctx, "lock")) == 0 })
	if !take("c", 60000) {
		t.Fatal("an expired lock was not taken")
	}

	// Competing takers: exactly one wins each round.
	const takers = 8
	for round := range 5 {
		release.Run(ctx, c, []string{"lock"}, "c")
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for i := range takers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if take(fmt.Sprint(round, i), 60000) {
					mu.Lock()
					won++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("round %d: %d takers won the lock, want 1", round, won)
		}
		c.Del(ctx, "lock")
	}
}

// TestWatchSessionClosedByServerTimeout: a Watch session left idle past
// the server's timeout setting has its connection closed, and with it the
// WATCH: the next call on the Tx fails instead of running unwatched, and
// its transaction is not applied (ErrNotApplied), since nothing of it was
// sent. So is a Transaction whose fn waits longer than the timeout
// between its read and its Exec, which the caller may run again. From
// redis-py's cases of a pipeline whose watched connection was lost
// (test_watch_reset_unwatch, the connection-error cases of
// test_pipeline.py) with the server's idle timeout as the cause.
func TestWatchSessionClosedByServerTimeout(t *testing.T) {
	t.Parallel()
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	srv.MustDo(t, "CONFIG", "SET", "timeout", "1")
	defer srv.Do("CONFIG", "SET", "timeout", "0")
	closed := func() bool { return normalClients(t, srv) == 1 }

	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	waitUntil(t, ctx, "the server to close the idle connections", closed)
	_, err = tx.Multi().Set("k", "2").Exec(ctx)
	if !errors.Is(err, ErrNotApplied) || OutcomeOf(err) == OutcomeUnknown {
		t.Errorf("Exec on a Tx whose connection the server closed = %v (outcome %v); want not applied", err, OutcomeOf(err))
	}
	if got, err := c.Get(ctx, "k"); err != nil || got != "1" {
		t.Errorf("k = %q, %v; want 1, unchanged", got, err)
	}

	// Transaction retries watch conflicts only: an attempt whose
	// connection was lost is returned, not applied, for the caller to run
	// again (redis-py turns such a loss into a WatchError, which its
	// transaction helper retries).
	attempts := 0
	incr := func(tx *Tx) error {
		attempts++
		if _, err := tx.Get(ctx, "k"); err != nil {
			return err
		}
		if attempts == 1 {
			waitUntil(t, ctx, "the server to close the idle connections", closed)
		}
		tx.Multi().Incr("k")
		return nil
	}
	_, err = c.Transaction(ctx, incr, "k")
	if !errors.Is(err, ErrNotApplied) || OutcomeOf(err) != OutcomeNotApplied || attempts != 1 {
		t.Errorf("Transaction whose connection the server closed = %v (outcome %v, %d attempts); want not applied after 1", err, OutcomeOf(err), attempts)
	}
	replies, err := c.Transaction(ctx, incr, "k")
	if err != nil || len(replies) != 1 || must(replies[0].Int64()) != 2 {
		t.Errorf("Transaction run again = %v, %v; want [2]", replies, err)
	}
}

// TestPipelineCommandNotPermitted: a user whose ACL refuses one command
// of a batch gets NOPERM for that command alone: in a transaction the
// server refuses it as it is queued and EXEC aborts the whole (an
// *ExecAbortError naming it, nothing applied); in a NoTransaction
// pipeline the others run; in a script, the refusal comes as the
// script runs, of unknown outcome. From coredis's
// test_pipeline_no_permission and redis-py's ACL cases of
// test_commands.py.
func TestPipelineCommandNotPermitted(t *testing.T) {
	srv := newACLServer(t, "limited", "pw", "+@all", "-incr")
	c, err := NewClient(Options{Addr: srv.Addr, Username: "limited", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)

	_, err = c.Pipeline().Set("a", 1).Incr("b").Set("c", 1).Exec(ctx)
	var ea *ExecAbortError
	if !errors.As(err, &ea) || !errors.Is(err, ErrNotApplied) || len(ea.Failed) != 1 || ea.Failed[0].Index != 1 {
		t.Fatalf("transaction with a command not permitted = %v; want an *ExecAbortError naming command 1, not applied", err)
	}
	serverErr(t, "the refused command's cause", ea.Failed[0].Err, "NOPERM", "incr")
	if n := must(c.Exists(ctx, "a", "c")); n != 0 {
		t.Errorf("EXISTS a c = %d after an aborted transaction, want 0", n)
	}

	replies, err := c.Pipeline(NoTransaction).Set("a", 1).Incr("b").Set("c", 1).Exec(ctx)
	var cmd *CommandError
	if !errors.As(err, &cmd) || cmd.Index != 1 || len(replies) != 3 || replies[0].String() != "OK" || replies[2].String() != "OK" {
		t.Fatalf("pipeline with a command not permitted = %v, %v; want a *CommandError for command 1 and the others' replies", replies, err)
	}
	serverErr(t, "the refused command's reply", replies[1].Err(), "NOPERM", "incr")
	if OutcomeOf(replies[1].Err()) != OutcomeNotApplied {
		t.Errorf("NOPERM of a plain command: outcome %v, want not applied", OutcomeOf(replies[1].Err()))
	}

	_, err = c.Eval(ctx, "redis.call('SET', 'd', 1) return redis.call('INCR', 'b')", 0)
	var se *Error
	if !errors.As(err, &se) || !strings.Contains(se.Msg, "script") || OutcomeOf(err) != OutcomeUnknown {
		t.Errorf("a script refused a command as it ran = %v (outcome %v); want the server's error, of unknown outcome", err, OutcomeOf(err))
	}
	if got, err := c.Get(ctx, "d"); err != nil || got != "1" {
		t.Errorf("GET d = %q, %v; the script wrote it before its refused command", got, err)
	}
}

// TestClientKillsItsOwnConnectionAlone: CLIENT KILL ... SKIPME no of the
// client's own shared connection, run alone, gets its reply (one client
// killed), and the client goes on over a new connection. The server
// closes the connection just after that reply, and a call sent meanwhile
// may reach it closing: a read is sent again (MaxRetries), as the next
// call here is; a write would fail with an unknown outcome. From
// redis-py's test_client_kill_filter_by_id with SKIPME no.
func TestClientKillsItsOwnConnectionAlone(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	id := must(c.ClientID(ctx))
	v, err := c.ClientKill(ctx, "ID", id, "SKIPME", "no")
	if err != nil || must(v.Int64()) != 1 {
		t.Fatalf("CLIENT KILL of its own connection = %v, %v; want 1", v, err)
	}
	if got, err := c.Get(ctx, "k"); err != nil || got != "v" {
		t.Errorf("GET after the client killed its own connection = %q, %v", got, err)
	}
	if n := must(c.ClientID(ctx)); n == id {
		t.Errorf("the shared connection is still %d after it was killed", id)
	}
	if err := c.Set(ctx, "k", "w"); err != nil {
		t.Errorf("SET on the new connection: %v", err)
	}
}

// TestStreamIdlePastServerTimeout: a Stream whose connection sat idle,
// every chunk sent answered, past the server's timeout setting, has its
// connection closed by the server. A Stream runs on one connection to
// keep its order, and stops when that connection fails: Close reports
// the commands sent before, which ran, with the connection's error, and
// the command queued after is not sent. From coredis's and redis-py's
// cases of a connection dropped while idle, applied to redpipe's Stream.
func TestStreamIdlePastServerTimeout(t *testing.T) {
	t.Parallel()
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	big := strings.Repeat("x", 64<<10)
	s := c.Stream(ctx, nil)
	for i := range 4 {
		s.Do("SET", fmt.Sprint("before", i), big)
	}
	srv.MustDo(t, "CONFIG", "SET", "timeout", "1")
	defer srv.Do("CONFIG", "SET", "timeout", "0")
	// The server closes a connection only once it has answered all it
	// read and heard nothing more for its timeout.
	waitUntil(t, ctx, "the server to close the idle connections", func() bool { return normalClients(t, srv) == 1 })
	s.Do("SET", "after", 1)
	n, err := s.Close(ctx)
	var ce *ConnError
	if n != 4 || !errors.As(err, &ce) {
		t.Errorf("Close = %d, %v; want 4 sent and the connection's error", n, err)
	}
	if got := must(c.Exists(ctx, "before0", "before1", "before2", "before3", "after")); got != 4 {
		t.Errorf("EXISTS of the keys before and after = %d, want the 4 before", got)
	}
}
