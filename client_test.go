package redpipe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// newTestClient starts a real redis-server for the test and returns a
// client for it; both are closed when the test ends.
func newTestClient(t testing.TB, opt Options, serverArgs ...string) (*Client, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t, serverArgs...)
	opt.Addr = srv.Addr
	c, err := NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, srv
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestTypedCommandsAndDo(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)

	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Get(ctx, "k"); err != nil || s != "v" {
		t.Fatalf("Get = %q, %v; want v", s, err)
	}
	if _, err := c.Get(ctx, "missing"); !errors.Is(err, ErrNil) {
		t.Fatalf("Get of a missing key: err = %v, want ErrNil", err)
	}
	if n, err := c.Incr(ctx, "n"); err != nil || n != 1 {
		t.Fatalf("Incr = %d, %v", n, err)
	}
	if n, err := c.SAdd(ctx, "s", "a", "b", "c"); err != nil || n != 3 {
		t.Fatalf("SAdd = %d, %v", n, err)
	}
	if n, err := c.HSet(ctx, "h", "f1", "v1", "f2", 2); err != nil || n != 2 {
		t.Fatalf("HSet = %d, %v", n, err)
	}
	// A command with no typed wrapper goes through Do.
	v, err := c.Do(ctx, "OBJECT", "ENCODING", "n")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := v.Text(); s != "int" {
		t.Fatalf("OBJECT ENCODING = %v, want int", v)
	}
	// Do also runs typed commands, spelled in any case.
	v, err = c.Do(ctx, "get", "k")
	if s, _ := v.Text(); err != nil || s != "v" {
		t.Fatalf("Do get = %v, %v", v, err)
	}
	// A server error is an *Error with its prefix.
	_, err = c.Incr(ctx, "s")
	var se *Error
	if !errors.As(err, &se) || se.Prefix != "WRONGTYPE" {
		t.Fatalf("Incr on a set: err = %v, want a WRONGTYPE *Error", err)
	}
}

func TestArityRefusedBeforeSending(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	_, err := c.Do(ctx, "GET")
	var ae *ArityError
	if !errors.As(err, &ae) || ae.Command != "GET" || ae.Arity != 2 {
		t.Fatalf("Do(GET) err = %v, want *ArityError for GET arity 2", err)
	}
	if !strings.Contains(err.Error(), "GET") || !strings.Contains(err.Error(), "arity 2") {
		t.Fatalf("error %q does not name the command and its arity", err)
	}
	_, err = c.Del(ctx)
	if !errors.As(err, &ae) || ae.Command != "DEL" || ae.Arity != -2 {
		t.Fatalf("Del() err = %v, want *ArityError for DEL", err)
	}
	_, err = c.Do(ctx, "CONFIG", "GET")
	if !errors.As(err, &ae) || ae.Command != "CONFIG GET" {
		t.Fatalf("CONFIG GET with no parameter: err = %v, want *ArityError for CONFIG GET", err)
	}
	// Nothing was sent: the connection still answers in step.
	if s, err := c.Ping(ctx); err != nil || s != "PONG" {
		t.Fatalf("Ping after refused commands = %q, %v", s, err)
	}
}

// TestRESP3Types reads every RESP3 reply type through the accessors, and the
// same calls under a forced RESP2, where the server sends other types.
func TestRESP3Types(t *testing.T) {
	srv := redistest.Start(t)
	for _, proto := range []int{3, 2} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			c, err := NewClient(Options{Addr: srv.Addr, Protocol: proto})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := ctxT(t)
			if _, err := c.Do(ctx, "FLUSHDB"); err != nil {
				t.Fatal(err)
			}
			hello, err := c.Do(ctx, "CLIENT", "INFO")
			if err != nil {
				t.Fatal(err)
			}
			if info, _ := hello.Text(); !strings.Contains(info, fmt.Sprintf("resp=%d", proto)) {
				t.Fatalf("connection is not RESP%d: %s", proto, info)
			}

			// map: HGETALL
			c.HSet(ctx, "h", "a", "1", "b", "2")
			v, _ := c.Do(ctx, "HGETALL", "h")
			wantKind := KindMap
			if proto == 2 {
				wantKind = KindArray
			}
			if v.Kind() != wantKind {
				t.Fatalf("HGETALL kind = %v, want %v", v.Kind(), wantKind)
			}
			m, err := v.StringMap()
			if err != nil || m["a"] != "1" || m["b"] != "2" || len(m) != 2 {
				t.Fatalf("HGETALL = %v, %v", m, err)
			}
			if hm, err := c.HGetAll(ctx, "h"); err != nil || hm["b"] != "2" {
				t.Fatalf("HGetAll = %v, %v", hm, err)
			}

			// set: SMEMBERS
			c.SAdd(ctx, "s", "x", "y")
			v, _ = c.Do(ctx, "SMEMBERS", "s")
			if proto == 3 && v.Kind() != KindSet {
				t.Fatalf("SMEMBERS kind = %v, want set", v.Kind())
			}
			if ss, err := v.Strings(); err != nil || len(ss) != 2 {
				t.Fatalf("SMEMBERS = %v, %v", ss, err)
			}

			// double: ZSCORE, and inf
			c.ZAdd(ctx, "z", 1.5, "m", "+inf", "top")
			v, _ = c.Do(ctx, "ZSCORE", "z", "m")
			if proto == 3 && v.Kind() != KindDouble {
				t.Fatalf("ZSCORE kind = %v, want double", v.Kind())
			}
			if f, err := v.Float64(); err != nil || f != 1.5 {
				t.Fatalf("ZSCORE = %v, %v", f, err)
			}
			if f, err := c.ZScore(ctx, "z", "top"); err != nil || !math.IsInf(f, 1) {
				t.Fatalf("ZScore of +inf = %v, %v", f, err)
			}

			// big number, booleans, null through DEBUG PROTOCOL
			v, err = c.Do(ctx, "DEBUG", "PROTOCOL", "bignum")
			if err != nil {
				t.Fatal(err)
			}
			if proto == 3 && v.Kind() != KindBigNumber {
				t.Fatalf("bignum kind = %v", v.Kind())
			}
			if s, err := v.Text(); err != nil || s != "1234567999999999999999999999999999999" {
				t.Fatalf("bignum = %q, %v", s, err)
			}
			for _, b := range []bool{true, false} {
				v, err = c.Do(ctx, "DEBUG", "PROTOCOL", fmt.Sprint(b))
				if err != nil {
					t.Fatal(err)
				}
				if proto == 3 && v.Kind() != KindBoolean {
					t.Fatalf("boolean kind = %v", v.Kind())
				}
				if got, err := v.Bool(); err != nil || got != b {
					t.Fatalf("DEBUG PROTOCOL %v = %v, %v", b, got, err)
				}
			}
			v, err = c.Do(ctx, "DEBUG", "PROTOCOL", "null")
			if err != nil || !v.IsNil() {
				t.Fatalf("null = %v, %v", v, err)
			}
			if _, err := v.Text(); !errors.Is(err, ErrNil) {
				t.Fatalf("Text of null: %v, want ErrNil", err)
			}
			v, err = c.Do(ctx, "DEBUG", "PROTOCOL", "double")
			if f, ferr := v.Float64(); err != nil || ferr != nil || f != 3.141 {
				t.Fatalf("double = %v (%v, %v)", v, err, ferr)
			}
			v, err = c.Do(ctx, "DEBUG", "PROTOCOL", "verbatim")
			if s, serr := v.Text(); err != nil || serr != nil || !strings.Contains(s, "verbatim") {
				t.Fatalf("verbatim = %v (%v, %v)", v, err, serr)
			}
			// A wrong-type access is an error, not a panic.
			if _, err := v.Int64(); err == nil {
				t.Fatal("Int64 of a text reply succeeded")
			}
			var te *TypeError
			if _, err := (NewValue([]any{"a"})).Int64(); !errors.As(err, &te) {
				t.Fatalf("Int64 of an array: %v, want *TypeError", err)
			}
		})
	}
}

func TestACLAndWrongPassword(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "app", "on", ">s3cret", "~app:*", "+@all")
	ctx := ctxT(t)

	c, err := Connect(ctx, "redis://app:s3cret@"+srv.Addr)
	if err != nil {
		t.Fatalf("connect as app: %v", err)
	}
	defer c.Close()
	who, err := c.Do(ctx, "ACL", "WHOAMI")
	if s, _ := who.Text(); err != nil || s != "app" {
		t.Fatalf("ACL WHOAMI = %v, %v", who, err)
	}
	if err := c.Set(ctx, "app:x", 1); err != nil {
		t.Fatal(err)
	}

	_, err = Connect(ctx, "redis://app:wrong@"+srv.Addr)
	var he *HandshakeError
	var se *Error
	if !errors.As(err, &he) || !errors.As(err, &se) || se.Prefix != "WRONGPASS" {
		t.Fatalf("wrong password: err = %v, want a HandshakeError with WRONGPASS", err)
	}
	if strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), ":wrong@") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestSelectIsolatesKeys(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	c0, err := Connect(ctx, "redis://"+srv.Addr+"/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c0.Close()
	c3, err := Connect(ctx, "redis://"+srv.Addr+"/3")
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := c3.Set(ctx, "only-in-3", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c0.Get(ctx, "only-in-3"); !errors.Is(err, ErrNil) {
		t.Fatalf("db 0 sees db 3's key: %v", err)
	}
	if s, err := c3.Get(ctx, "only-in-3"); err != nil || s != "x" {
		t.Fatalf("db 3 Get = %q, %v", s, err)
	}
	if n, _ := c3.DBSize(ctx); n != 1 {
		t.Fatalf("db 3 size = %d", n)
	}
	// Dedicated connections select the database too.
	tx, err := c3.Watch(ctx, "only-in-3")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if s, err := tx.Get(ctx, "only-in-3"); err != nil || s != "x" {
		t.Fatalf("Tx on db 3: Get = %q, %v", s, err)
	}
}

// TestManyCallersGetTheirOwnReplies: 1000 goroutines × 100 commands on one
// client, each with unique values, every reply checked against its call.
func TestManyCallersGetTheirOwnReplies(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	const goroutines, perG = 1000, 100
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				want := fmt.Sprintf("g%d-i%d", g, i)
				// ECHO proves the reply is this call's own.
				got, err := c.Echo(ctx, want)
				if err != nil || got != want {
					errs <- fmt.Errorf("ECHO %s = %q, %v", want, got, err)
					return
				}
				if i%10 == 0 {
					if err := c.Set(ctx, want, want); err != nil {
						errs <- err
						return
					}
					if v, err := c.Get(ctx, want); err != nil || v != want {
						errs <- fmt.Errorf("GET %s = %q, %v", want, v, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// sharedID is the server's id of the client's shared connection.
func sharedID(t *testing.T, ctx context.Context, c *Client) string {
	t.Helper()
	v, err := c.Do(ctx, "CLIENT", "ID")
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(must(v.Int64()), 10)
}

// pauseWrites has the server hold every write command it reads (CLIENT
// PAUSE WRITE) until unpause is called or the test ends: a connection in a
// held command stays busy with it, and CLIENT LIST, which is no write,
// still answers meanwhile (a DEBUG SLEEP would hold the whole server).
func pauseWrites(t *testing.T, srv *redistest.Server) (unpause func()) {
	t.Helper()
	srv.MustDo(t, "CLIENT", "PAUSE", "30000", "WRITE")
	unpause = sync.OnceFunc(func() { srv.Do("CLIENT", "UNPAUSE") })
	t.Cleanup(unpause)
	return unpause
}

// TestCancelledCallDoesNotShiftReplies cancels a call whose reply is stuck
// behind another caller's command on the shared connection, a SET the
// server holds; it returns at once, the call queued behind it gets its own
// reply, and so do the calls after, on the same connection.
func TestCancelledCallDoesNotShiftReplies(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	if err := c.Set(ctx, "a", "A"); err != nil {
		t.Fatal(err)
	}
	id := sharedID(t, ctx, c)
	shared := c.shared.Load()
	// unread is how many bytes of the shared connection the server holds
	// unread behind the SET.
	unread := func() (int, string) {
		for _, cl := range serverClients(t, srv) {
			if cl["id"] == id {
				n, _ := strconv.Atoi(cl["qbuf"])
				return n, "qbuf=" + cl["qbuf"] + " cmd=" + cl["cmd"] + " flags=" + cl["flags"]
			}
		}
		return 0, "no connection with id " + id
	}
	unpause := pauseWrites(t, srv)
	setDone := make(chan error, 1)
	go func() { setDone <- c.Set(ctx, "b", "B") }()
	waitBlockedIn(t, ctx, srv, "set", id) // the SET goes first on the shared connection

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		_, err := c.Get(cctx, "a")
		got <- err
	}()
	// The GET is on the server, unread behind the held SET: it was sent,
	// and its reply will come.
	var held int
	waitForServer(t, ctx, "the GET to reach the server behind the SET", func() (bool, string) {
		n, seen := unread()
		held = n
		return n > 0, seen
	})
	cancel()
	err := <-got
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Get: err = %v, want context.Canceled", err)
	}
	// Had the call waited for its reply, it would have returned "A" with
	// no error: the reply comes only after the SET. A call queued behind
	// it before the reply comes must not get it.
	next := make(chan string, 1)
	go func() {
		got, err := c.Echo(ctx, "next")
		if err != nil {
			got = err.Error()
		}
		next <- got
	}()
	waitForServer(t, ctx, "the ECHO to reach the server behind the GET", func() (bool, string) {
		n, seen := unread()
		return n > held, seen
	})
	unpause()
	if err := <-setDone; err != nil {
		t.Fatal(err)
	}
	if got := <-next; got != "next" {
		t.Fatalf("ECHO queued behind the cancelled Get = %q, want its own reply", got)
	}
	for i := range 50 {
		want := fmt.Sprint("after-", i)
		if got, err := c.Echo(ctx, want); err != nil || got != want {
			t.Fatalf("call after the cancelled one: ECHO %s = %q, %v", want, got, err)
		}
	}
	if s, err := c.Get(ctx, "a"); err != nil || s != "A" {
		t.Fatalf("Get a = %q, %v", s, err)
	}
	if c.shared.Load() != shared || !shared.Alive() {
		t.Fatalf("the shared connection did not survive the cancelled call: %v", shared.Err())
	}
}

func TestClosedClient(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// A call in flight when Close comes fails with ErrClosed: a SET the
	// server holds.
	id := sharedID(t, ctx, c)
	pauseWrites(t, srv)
	inflight := make(chan error, 1)
	go func() { inflight <- c.Set(ctx, "held", "v") }()
	waitBlockedIn(t, ctx, srv, "set", id)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-inflight; !errors.Is(err, ErrClosed) {
		t.Fatalf("call in flight at Close: %v, want ErrClosed", err)
	}
	if _, err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCloseWhileCallsDial: calls that keep coming while Close runs, each
// of which may start a dial of the shared connection, fail with ErrClosed
// once it has begun, and Close neither panics nor leaves a connection
// behind. A dial counted as Close waited for dials used to break the
// WaitGroup's rules ("reused before previous Wait has returned"), which
// the race detector reports at once and a plain run only rarely.
func TestCloseWhileCallsDial(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 100 && time.Now().Before(deadline); i++ {
		c, err := NewClient(Options{Addr: srv.Addr})
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				for range 1000 {
					if _, err := c.Ping(ctx); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			if err := <-errs; err != nil && !errors.Is(err, ErrClosed) {
				t.Fatalf("round %d: a call as Close ran failed with %v, want ErrClosed", i, err)
			}
		}
		if _, err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("round %d: Ping after Close: %v, want ErrClosed", i, err)
		}
		c.mu.Lock()
		live := len(c.live)
		c.mu.Unlock()
		if live != 0 || c.shared.Load() != nil {
			t.Fatalf("round %d: %d connections live after Close, shared %v", i, live, c.shared.Load())
		}
	}
}

func TestStateCommandsRefusedOnSharedConnection(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	for _, cmd := range [][]any{{"WATCH", "k"}, {"MULTI"}, {"SELECT", 1}, {"SUBSCRIBE", "ch"}} {
		_, err := c.Do(ctx, cmd...)
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Fatalf("Do(%v) err = %v, want *UsageError", cmd, err)
		}
	}
	if s, err := c.Ping(ctx); err != nil || s != "PONG" {
		t.Fatalf("Ping = %q, %v", s, err)
	}
}

// TestBlockingCommandUsesDedicatedConnection: a BLPOP with no timeout
// holds neither the shared connection nor its own reply until the push: a
// BLPOP that timed out on its own could end before the test pushed, on a
// slow machine, and a Ping stuck behind it would only be late.
func TestBlockingCommandUsesDedicatedConnection(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	res := make(chan []Value, 1)
	go func() {
		v, err := c.BLPop(ctx, 0, "queue")
		if err != nil {
			t.Error(err)
		}
		res <- v
	}()
	waitBlockedIn(t, ctx, srv, "blpop", "")
	// The shared connection is not held up by BLPOP.
	if s, err := c.Ping(ctx); err != nil || s != "PONG" {
		t.Fatalf("Ping while BLPOP waits = %q, %v", s, err)
	}
	if _, err := c.RPush(ctx, "queue", "job"); err != nil {
		t.Fatal(err)
	}
	v := <-res
	if len(v) != 2 || v[1].String() != "job" {
		t.Fatalf("BLPOP = %v", v)
	}
}

// TestPollWaitChoosesPolling: the shared connection polls its socket by
// default; PollWait -1 turns that off, though a lone call's caller still
// reads its reply itself, asleep on the socket. A custom Dialer's
// connection, whose Read may be more than the socket's, is never polled,
// and read by the reader goroutine alone.
func TestPollWaitChoosesPolling(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	var d net.Dialer
	for _, tc := range []struct {
		name       string
		opt        Options
		want, self bool
	}{
		{"default", Options{}, true, true},
		{"PollWait -1", Options{PollWait: -1}, false, true},
		{"custom Dialer", Options{Dialer: d.DialContext}, false, false},
	} {
		tc.opt.Addr = srv.Addr
		c, err := NewClient(tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		cn, err := c.sharedConn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := cn.Polls(); got != tc.want {
			t.Errorf("%s: polls %v, want %v", tc.name, got, tc.want)
		}
		if got := cn.ReadsOwn(); got != tc.self {
			t.Errorf("%s: callers read their own replies %v, want %v", tc.name, got, tc.self)
		}
		if n, err := c.Incr(ctx, "poll"); err != nil || n < 1 {
			t.Errorf("%s: INCR = %d, %v", tc.name, n, err)
		}
		c.Close()
	}
}

// protocolClient returns a client of the server at addr speaking RESP
// version proto, closed when the test ends.
func protocolClient(t *testing.T, addr string, proto int) *Client {
	t.Helper()
	c, err := NewClient(Options{Addr: addr, Protocol: proto})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEmptyListsReadAsEmpty: an empty list reply reads as an empty slice,
// not nil, with Slice and the typed methods that return []Value, as it
// does with Strings; nil would read as no reply at all.
func TestEmptyListsReadAsEmpty(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "GEOADD", "g", "13.361389", "38.115556", "Palermo")
	for _, proto := range []int{2, 3} {
		c, ctx := protocolClient(t, srv.Addr, proto), ctxT(t)
		sorted, err := c.SortRO(ctx, "q")
		if err != nil || sorted == nil || len(sorted) != 0 {
			t.Errorf("RESP%d: SortRO of a missing key = %#v, %v; want an empty slice", proto, sorted, err)
		}
		pos, err := c.GeoPos(ctx, "g")
		if err != nil || pos == nil || len(pos) != 0 {
			t.Errorf("RESP%d: GeoPos of no member = %#v, %v; want an empty slice", proto, pos, err)
		}
		for _, args := range [][]any{{"LRANGE", "q", 0, -1}, {"SMEMBERS", "q"}, {"HGETALL", "q"}} {
			v, err := c.Do(ctx, args...)
			if err != nil {
				t.Fatal(err)
			}
			if vs, err := v.Slice(); err != nil || vs == nil || len(vs) != 0 {
				t.Errorf("RESP%d: Slice of %v = %#v, %v; want an empty slice", proto, args, vs, err)
			}
		}
	}
}

// TestPairsReadAlikeInBothProtocols: what RESP2 sends as one flat array of
// alternating items, RESP3 sends as a list of pairs (ZRANGE WITHSCORES,
// HRANDFIELD WITHVALUES). The typed methods and the list and map readers
// give the same results under both, as their docs show these options.
func TestPairsReadAlikeInBothProtocols(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ZADD", "z", "1.5", "a", "2", "b", "-3", "c")
	srv.MustDo(t, "ZADD", "z2", "1", "a")
	srv.MustDo(t, "ZADD", "ids", "10", "1", "20", "2")
	srv.MustDo(t, "HSET", "h", "f1", "v1", "f2", "v2")
	type result struct {
		zrange, zunion, zdiff []string
		scores, fields        map[string]string
		ids                   []int64
		scored, viaValue      []Scored
		rand                  []Scored
	}
	var got [2]result
	for i, proto := range []int{2, 3} {
		c, ctx := protocolClient(t, srv.Addr, proto), ctxT(t)
		var err error
		r := &got[i]
		if r.zrange, err = c.ZRange(ctx, "z", 0, -1, "WITHSCORES"); err != nil {
			t.Fatalf("RESP%d: ZRange WITHSCORES: %v", proto, err)
		}
		if r.zunion, err = c.ZUnion(ctx, 2, "z", "z2", "WITHSCORES"); err != nil {
			t.Fatalf("RESP%d: ZUnion WITHSCORES: %v", proto, err)
		}
		if r.zdiff, err = c.ZDiff(ctx, 2, "z", "z2", "WITHSCORES"); err != nil {
			t.Fatalf("RESP%d: ZDiff WITHSCORES: %v", proto, err)
		}
		if r.scored, err = c.ZRangeWithScores(ctx, "z", 0, -1); err != nil {
			t.Fatalf("RESP%d: ZRangeWithScores: %v", proto, err)
		}
		if r.rand, err = c.ZRandMemberWithScores(ctx, "z2", 1); err != nil {
			t.Fatalf("RESP%d: ZRandMemberWithScores: %v", proto, err)
		}
		v, err := c.Do(ctx, "ZRANGE", "z", 0, -1, "WITHSCORES")
		if err != nil {
			t.Fatal(err)
		}
		if r.scores, err = v.StringMap(); err != nil {
			t.Fatalf("RESP%d: ZRANGE WITHSCORES StringMap: %v", proto, err)
		}
		if r.viaValue, err = v.Scored(); err != nil {
			t.Fatalf("RESP%d: ZRANGE WITHSCORES Scored: %v", proto, err)
		}
		v, err = c.HRandFieldWithValues(ctx, "h", 5)
		if err != nil {
			t.Fatal(err)
		}
		if r.fields, err = v.StringMap(); err != nil {
			t.Fatalf("RESP%d: HRandFieldWithValues StringMap: %v", proto, err)
		}
		v, err = c.Do(ctx, "ZRANGE", "ids", 0, -1, "WITHSCORES")
		if err != nil {
			t.Fatal(err)
		}
		if r.ids, err = v.Int64s(); err != nil {
			t.Fatalf("RESP%d: ZRANGE WITHSCORES Int64s: %v", proto, err)
		}
	}
	want := result{
		zrange: []string{"c", "-3", "a", "1.5", "b", "2"},
		zunion: []string{"c", "-3", "b", "2", "a", "2.5"},
		zdiff:  []string{"c", "-3", "b", "2"},
		scores: map[string]string{"a": "1.5", "b": "2", "c": "-3"},
		fields: map[string]string{"f1": "v1", "f2": "v2"},
		ids:    []int64{1, 10, 2, 20},
		scored: []Scored{{"c", -3}, {"a", 1.5}, {"b", 2}},
		rand:   []Scored{{"a", 1}},
	}
	want.viaValue = want.scored
	for i, r := range got {
		if !reflect.DeepEqual(r, want) {
			t.Errorf("RESP%d: %+v, want %+v", i+2, r, want)
		}
	}
}

// TestScoredMembers: the WithScores methods and ZPOPMIN/ZPOPMAX return
// members with their scores in the server's order under both protocols,
// infinities included, as Value.Scored reads them from a pipeline's
// replies; a reply that is not members and scores is an error that says
// where, never a wrong pair.
func TestScoredMembers(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ZADD", "z", "-inf", "low", "0.5", "half", "2", "two", "+inf", "high")
	srv.MustDo(t, "HSET", "h", "f", "not a number")
	srv.MustDo(t, "RPUSH", "odd", "a", "b", "c")
	all := []Scored{{"low", math.Inf(-1)}, {"half", 0.5}, {"two", 2}, {"high", math.Inf(1)}}
	rev := []Scored{all[3], all[2], all[1], all[0]}
	for _, proto := range []int{2, 3} {
		c, ctx := protocolClient(t, srv.Addr, proto), ctxT(t)
		for _, tt := range []struct {
			name string
			got  func() ([]Scored, error)
			want []Scored
		}{
			{"ZRangeWithScores", func() ([]Scored, error) { return c.ZRangeWithScores(ctx, "z", 0, -1) }, all},
			{"ZRangeWithScores BYSCORE LIMIT", func() ([]Scored, error) {
				return c.ZRangeWithScores(ctx, "z", "(0", "+inf", "BYSCORE", "LIMIT", 0, 2)
			}, all[1:3]},
			{"ZRangeByScoreWithScores", func() ([]Scored, error) { return c.ZRangeByScoreWithScores(ctx, "z", "-inf", 1) }, all[:2]},
			{"ZRevRangeWithScores", func() ([]Scored, error) { return c.ZRevRangeWithScores(ctx, "z", 0, -1) }, rev},
			{"ZRevRangeByScoreWithScores", func() ([]Scored, error) { return c.ZRevRangeByScoreWithScores(ctx, "z", "+inf", 1) }, rev[:2]},
			{"ZRangeWithScores of a missing key", func() ([]Scored, error) { return c.ZRangeWithScores(ctx, "q", 0, -1) }, []Scored{}},
		} {
			got, err := tt.got()
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("RESP%d %s = %v, %v; want %v", proto, tt.name, got, err, tt.want)
			}
		}
		for _, p := range []*Pipeline{c.Pipeline(), c.Pipeline(NoTransaction)} {
			rs, err := p.ZRevRangeWithScores("z", 0, 1).ZRangeWithScores("z", 0, -1).Exec(ctx)
			if err != nil || len(rs) != 2 {
				t.Fatalf("RESP%d %s: %d replies, %v", proto, p.kind(), len(rs), err)
			}
			for i, want := range [][]Scored{rev[:2], all} {
				if got, err := rs[i].Scored(); err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("RESP%d %s reply %d: Scored = %v, %v; want %v", proto, p.kind(), i, got, err, want)
				}
			}
		}
		for _, tt := range []struct {
			args []any
			want string
		}{
			{[]any{"HGETALL", "h"}, "score of member 0"},
			{[]any{"LRANGE", "odd", 0, -1}, "3 elements are not a list of pairs"},
			{[]any{"GET", "q"}, ErrNil.Error()},
			{[]any{"ZADD", "h", 1, "m"}, "WRONGTYPE"},
		} {
			v, err := c.Do(ctx, tt.args...)
			if err == nil {
				_, err = v.Scored()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RESP%d %v: Scored error = %v; want one saying %q", proto, tt.args, err, tt.want)
			}
		}
	}
}

// A RESP3 boolean reads as the integer 1 or 0 that RESP2 sends in its
// place, through every accessor that takes an integer.
func TestBooleansReadAlikeInBothProtocols(t *testing.T) {
	srv := redistest.Start(t)
	type result struct {
		text string
		f    float64
		n    int64
		b    bool
	}
	var got [2][]result
	for i, proto := range []int{2, 3} {
		c, ctx := protocolClient(t, srv.Addr, proto), ctxT(t)
		var replies []Value
		for _, b := range []string{"true", "false"} {
			v, err := c.Do(ctx, "DEBUG", "PROTOCOL", b)
			if err != nil {
				t.Fatalf("RESP%d: DEBUG PROTOCOL %s: %v", proto, b, err)
			}
			replies = append(replies, v)
		}
		// A script under RESP3 answers a RESP3 caller with booleans.
		for _, b := range []string{"true", "false"} {
			v, err := c.Eval(ctx, "redis.setresp(3); return "+b, 0)
			if err != nil {
				t.Fatalf("RESP%d: Eval of %s: %v", proto, b, err)
			}
			replies = append(replies, v)
		}
		for _, v := range replies {
			var r result
			var errs [4]error
			r.text, errs[0] = v.Text()
			r.f, errs[1] = v.Float64()
			r.n, errs[2] = v.Int64()
			r.b, errs[3] = v.Bool()
			if err := errors.Join(errs[:]...); err != nil {
				t.Errorf("RESP%d: %v: %v", proto, v, err)
			}
			got[i] = append(got[i], r)
		}
	}
	want := []result{{"1", 1, 1, true}, {"0", 0, 0, false}, {"1", 1, 1, true}, {"0", 0, 0, false}}
	for i, r := range got {
		if !reflect.DeepEqual(r, want) {
			t.Errorf("RESP%d: %+v, want %+v", i+2, r, want)
		}
	}
}

// Int64 of an integer too large for an int64 (a big number, a string of
// digits, a double of integral value) says it is outside the range, not
// that it is no integer; and a double of -2^63, an int64, reads as one.
func TestInt64OutOfRange(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "SET", "big", "99999999999999999999")
	srv.MustDo(t, "SET", "word", "12a")
	srv.MustDo(t, "ZADD", "z", "-9223372036854775808", "min", "1e20", "huge", "1.5", "frac")
	c, ctx := protocolClient(t, srv.Addr, 3), ctxT(t)
	replies, err := c.Pipeline(NoTransaction).Get("big").Do("DEBUG", "PROTOCOL", "bignum").ZScore("z", "huge").
		Get("word").ZScore("z", "frac").ZScore("z", "min").Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"outside the int64 range", "outside the int64 range", "outside the int64 range",
		"is not an integer", "is not an integer"} {
		if n, err := replies[i].Int64(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Int64 of %v (%v) = %d, %v; want an error saying %q", replies[i], replies[i].Kind(), n, err, want)
		}
	}
	if n, err := replies[5].Int64(); err != nil || n != math.MinInt64 {
		t.Errorf("Int64 of the double %v = %d, %v; want %d", replies[5], n, err, int64(math.MinInt64))
	}
}

// A RESP3 double reads as the text the server sends for the same reply
// under RESP2, not as the number formatted again: redis 7.0 writes 0.1 as
// 0.10000000000000001 under both protocols, every version writes a
// timestamp score as 1700000000 (not 1.7e+09), and a score read as text
// must not depend on the protocol.
func TestDoublesReadAlikeInBothProtocols(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ZADD", "z", "0.1", "a", "1.1", "b", "1700000000", "c", "inf", "d")
	srv.MustDo(t, "GEOADD", "g", "13.361389", "38.115556", "Palermo")
	type result struct {
		zrange, mscore, pos []string
		scores              map[string]string
	}
	var got [2]result
	for i, proto := range []int{2, 3} {
		c, ctx := protocolClient(t, srv.Addr, proto), ctxT(t)
		var err error
		r := &got[i]
		if r.zrange, err = c.ZRange(ctx, "z", 0, -1, "WITHSCORES"); err != nil {
			t.Fatalf("RESP%d: ZRange WITHSCORES: %v", proto, err)
		}
		v, err := c.Do(ctx, "ZRANGE", "z", 0, -1, "WITHSCORES")
		if err != nil {
			t.Fatal(err)
		}
		if r.scores, err = v.StringMap(); err != nil {
			t.Fatalf("RESP%d: ZRANGE WITHSCORES StringMap: %v", proto, err)
		}
		scores, err := c.ZMScore(ctx, "z", "a", "b", "c", "d")
		if err != nil {
			t.Fatal(err)
		}
		if r.mscore, err = NewValue(scores).Strings(); err != nil {
			t.Fatalf("RESP%d: ZMScore as text: %v", proto, err)
		}
		pos, err := c.GeoPos(ctx, "g", "Palermo")
		if err != nil {
			t.Fatal(err)
		}
		if r.pos, err = NewValue(pos).Strings(); err != nil {
			t.Fatalf("RESP%d: GeoPos as text: %v", proto, err)
		}
	}
	if !reflect.DeepEqual(got[0], got[1]) {
		t.Errorf("RESP2 and RESP3 differ:\nRESP2 %+v\nRESP3 %+v", got[0], got[1])
	}
	if got[1].mscore[2] != "1700000000" {
		t.Errorf("a timestamp score reads as %q, want 1700000000", got[1].mscore[2])
	}
	// Whatever text this server version writes, it is the scores'.
	for i, want := range []float64{0.1, 1.1, 1700000000, math.Inf(1)} {
		if f, err := strconv.ParseFloat(got[1].mscore[i], 64); err != nil || f != want {
			t.Errorf("score %d reads as %q, want %v", i, got[1].mscore[i], want)
		}
	}
}

// A RESP3 verbatim string holding a number reads as that number, as the
// bulk string RESP2 sends in its place does.
func TestVerbatimNumbersReadAlikeInBothProtocols(t *testing.T) {
	srv := redistest.Start(t)
	for _, proto := range []int{2, 3} {
		c, ctx := protocolClient(t, srv.Addr, proto), ctxT(t)
		v, err := c.Eval(ctx, "return {verbatim_string={format='txt', string='123'}}", 0)
		if err != nil {
			t.Fatalf("RESP%d: Eval: %v", proto, err)
		}
		if proto == 3 && v.Kind() != KindVerbatim {
			t.Fatalf("RESP3: the script's reply is a %v, want a verbatim string", v.Kind())
		}
		if n, err := v.Int64(); err != nil || n != 123 {
			t.Errorf("RESP%d: Int64 = %d, %v; want 123", proto, n, err)
		}
		if f, err := v.Float64(); err != nil || f != 123 {
			t.Errorf("RESP%d: Float64 = %v, %v; want 123", proto, f, err)
		}
	}
}

// TestDialerPanics: a custom Dialer that panics fails that dial with an
// error that says so, of a command not sent. The shared connection is
// dialed on a goroutine of the client's own, where the panic would have
// ended the program, and a pooled connection's dial that panicked kept
// its slot in the pool for good: with PoolSize 1, every later Watch then
// waited for a connection that could never come.
func TestDialerPanics(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	var panics sync.Map // a value to panic with, under "v"; none: dial
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p, ok := panics.Load("v"); ok {
			panic(p)
		}
		return d.DialContext(ctx, network, addr)
	}
	c, err := NewClient(Options{Addr: srv.Addr, Dialer: dial, PoolSize: 1, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	boom := errors.New("boom")
	panics.Store("v", boom)
	call := func(name string, f func() error) {
		t.Helper()
		var err error
		if p := probeRecover(func() { err = f() }); p != nil {
			t.Fatalf("%s: the Dialer's panic reached the caller: %v", name, p)
		}
		var de *DialError
		if !errors.As(err, &de) || !errors.Is(err, boom) || !strings.Contains(err.Error(), "Dialer panicked") || OutcomeOf(err) != OutcomeNotSent {
			t.Fatalf("%s = %v (outcome %v); want a *DialError that says the Dialer panicked, wraps its value, not sent", name, err, OutcomeOf(err))
		}
	}
	call("Get", func() error { _, err := c.Get(ctx, "k"); return err })
	for range 3 {
		call("Watch", func() error { _, err := c.Watch(ctx); return err })
	}
	panics.Store("v", "not an error")
	if _, err := c.Watch(ctx); err == nil || !strings.Contains(err.Error(), "Dialer panicked: not an error") {
		t.Fatalf("Watch = %v; want an error that says the Dialer panicked, with its value", err)
	}

	panics.Delete("v")
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tx, err := c.Watch(wctx, "k")
	if err != nil {
		t.Fatalf("Watch once the Dialer works: %v; want a session (the pool's one slot was kept by a dial that panicked)", err)
	}
	tx.Close()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set once the Dialer works: %v", err)
	}
	if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
		t.Errorf("pool: %d open, %d idle; want the one session's connection, idle", open, idle)
	}
}

// nilConn is a connection type of the user's, handed back as a typed nil.
type nilConn struct{ net.Conn }

// closeCounter counts its Close calls.
type closeCounter struct {
	net.Conn
	closes *atomic.Int32
}

func (cc closeCounter) Close() error { cc.closes.Add(1); return cc.Conn.Close() }

// TestDialerNilConn: a Dialer that returns no connection and no error
// fails the dial with an error that says so, of a command not sent. The
// client took the nil for a connection: its first write, on the client's
// own goroutine for the shared connection, crashed the program with a nil
// dereference. A connection returned with an error is closed, as nothing
// else would close it.
func TestDialerNilConn(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	var closes atomic.Int32
	for _, tc := range []struct {
		name string
		conn func() (net.Conn, error)
		says string
	}{
		{"nil", func() (net.Conn, error) { return nil, nil }, "neither a connection nor an error"},
		{"nil *net.TCPConn", func() (net.Conn, error) { return (*net.TCPConn)(nil), nil }, "neither a connection nor an error"},
		{"nil *net.UnixConn", func() (net.Conn, error) { return (*net.UnixConn)(nil), nil }, "neither a connection nor an error"},
		{"nil *tls.Conn", func() (net.Conn, error) { return (*tls.Conn)(nil), nil }, "neither a connection nor an error"},
		{"nil of the user's type", func() (net.Conn, error) { return (*nilConn)(nil), nil }, "panicked"},
		{"a connection and an error", func() (net.Conn, error) {
			nc, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				return nil, err
			}
			return closeCounter{nc, &closes}, errors.New("refused by the Dialer")
		}, "refused by the Dialer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(Options{Addr: srv.Addr, MaxRetries: -1,
				Dialer: func(context.Context, string, string) (net.Conn, error) { return tc.conn() }})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, call := range []struct {
				name string
				f    func() error
			}{
				{"Get", func() error { _, err := c.Get(ctx, "k"); return err }},
				{"Watch", func() error { _, err := c.Watch(ctx, "k"); return err }},
			} {
				err := call.f()
				if err == nil || !strings.Contains(err.Error(), tc.says) || OutcomeOf(err) != OutcomeNotSent {
					t.Errorf("%s = %v (outcome %v); want an error that says %q, not sent", call.name, err, OutcomeOf(err), tc.says)
				}
			}
		})
	}
	if n := closes.Load(); n != 2 {
		t.Errorf("%d of the 2 connections returned with an error were closed", n)
	}
}

// probeRecover runs f and returns what it panicked with, or nil.
func probeRecover(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// misbehavingConn misbehaves in the method named under "in": it panics,
// or with "exit" under "do" ends its goroutine; after the socket's own
// Read, before its own Write. With "once" set, it does so once only.
type misbehavingConn struct {
	net.Conn
	m *sync.Map
}

func (mc misbehavingConn) misbehave(method string) {
	if _, once := mc.m.Load("once"); once {
		if !mc.m.CompareAndDelete("in", method) {
			return
		}
	} else if in, _ := mc.m.Load("in"); in != method {
		return
	}
	if do, _ := mc.m.Load("do"); do == "exit" {
		runtime.Goexit()
	}
	if method == "Read" {
		panic("boom in Read")
	}
	panic(errors.New("boom in Write"))
}

func (mc misbehavingConn) Read(b []byte) (int, error) {
	n, err := mc.Conn.Read(b)
	mc.misbehave("Read")
	return n, err
}

func (mc misbehavingConn) Write(b []byte) (int, error) {
	mc.misbehave("Write")
	return mc.Conn.Write(b)
}

// TestDialerConnPanics: a connection of a type of the user's, that the
// Dialer returned, whose Read or Write panics fails the connection with an
// error that says so, of unknown outcome: its reader and writer run on
// goroutines of the client's own, where the panic ended the program.
func TestDialerConnPanics(t *testing.T) {
	testDialerConn(t, "panic", func(m string) string {
		return "the " + m + " of the connection the Dialer returned panicked: boom in " + m
	})
}

// TestDialerConnGoexit: a connection of a type of the user's, that the
// Dialer returned, whose Read or Write ends its goroutine (runtime.Goexit,
// as t.FailNow calls) fails the connection with an error that says so, of
// unknown outcome. The connection's reader or writer ended, and the
// connection was left for alive: its calls waited until their contexts
// ended, those to come too.
func TestDialerConnGoexit(t *testing.T) {
	testDialerConn(t, "exit", func(m string) string {
		return "the net.Conn's " + m + " ended its goroutine (runtime.Goexit"
	})
}

func testDialerConn(t *testing.T, do string, says func(method string) string) {
	srv := redistest.Start(t)
	testDialerConnOver(t, srv.Addr, func(_ context.Context, nc net.Conn) (net.Conn, error) { return nc, nil }, do, false, says)
}

// TestDialerTLSConnPanics: a Dialer that returns a *tls.Conn over a
// connection of a type of the user's, whose Read or Write panics (once: a
// Write that always panics would stop the *tls.Conn's Close too, which
// writes before it closes): the connection fails as with the user's
// connection alone. The *tls.Conn was taken for the standard library's
// own and not guarded, so the panic, on the connection's reader
// goroutine, ended the program.
func TestDialerTLSConnPanics(t *testing.T) {
	p := newTestPKI(t)
	_, tlsAddr := startTLSServer(t, p)
	host, _, _ := net.SplitHostPort(tlsAddr)
	overTLS := func(ctx context.Context, nc net.Conn) (net.Conn, error) {
		tc := tls.Client(nc, &tls.Config{RootCAs: p.roots, ServerName: host})
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		return tc, nil
	}
	testDialerConnOver(t, tlsAddr, overTLS, "panic", true, func(m string) string {
		return "the " + m + " of the connection the Dialer returned panicked: boom in " + m
	})
}

// testDialerConnOver is testDialerConn for a server at addr, reached
// through a Dialer that returns wrap of a misbehavingConn, which
// misbehaves once only if once is set.
func testDialerConnOver(t *testing.T, addr string, wrap func(context.Context, net.Conn) (net.Conn, error), do string, once bool, says func(method string) string) {
	ctx := ctxT(t)
	var m sync.Map
	m.Store("do", do)
	if once {
		m.Store("once", true)
	}
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		wc, err := wrap(ctx, misbehavingConn{nc, &m})
		if err != nil {
			nc.Close()
		}
		return wc, err
	}
	c, err := NewClient(Options{Addr: addr, Dialer: dial, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, method := range []string{"Read", "Write"} {
		if err := c.Set(ctx, "k", "v"); err != nil {
			t.Fatalf("Set before %s misbehaves: %v", method, err)
		}
		m.Store("in", method)
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := callAlone(func() error { _, err := c.Get(gctx, "k"); return err })
		cancel()
		m.Delete("in")
		want := says(method)
		switch {
		case err == errEndedCaller && do == "exit" && method == "Write":
			// A lone call writes on its own goroutine, which the
			// connection's Write ended, as it asked.
		case err == nil || !strings.Contains(err.Error(), want) || OutcomeOf(err) != OutcomeUnknown:
			t.Errorf("Get while %s does %q = %v (outcome %v); want an error that says %q, outcome unknown", method, do, err, OutcomeOf(err), want)
		}
		gctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		s, err := c.Get(gctx, "k")
		cancel()
		if err != nil || s != "v" {
			t.Fatalf("Get after %s did %q = %q, %v; want v, on a new connection", method, do, s, err)
		}
	}
}

// errEndedCaller is what callAlone reports of a call that did not return:
// its goroutine ended.
var errEndedCaller = errors.New("it ended the calling goroutine")

// callAlone runs f on a goroutine of its own, which user code may end
// (runtime.Goexit) or panic on, and returns f's error, errEndedCaller if
// the goroutine ended, or an error saying that f panicked.
func callAlone(f func() error) error {
	res := make(chan error, 1)
	go func() {
		err := errEndedCaller
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("it panicked: %v", p)
			}
			res <- err
		}()
		err = f()
	}()
	return <-res
}

// TestDialerGoexit: a Dialer that ends its goroutine (runtime.Goexit, as
// t.FailNow calls) fails that dial. The dial of the shared connection was
// left pending for good: every later plain call waited for it until its
// context ended. The dial of a pooled connection ended the caller's
// goroutine and kept the connection's slot in the pool for good: with
// PoolSize 1, every later Watch waited for a connection that could never
// come.
func TestDialerGoexit(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	var exits sync.Map
	exits.Store("on", true)
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, ok := exits.LoadAndDelete("on"); ok {
			runtime.Goexit()
		}
		return d.DialContext(ctx, network, addr)
	}
	c, err := NewClient(Options{Addr: srv.Addr, Dialer: dial, PoolSize: 1, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.Get(gctx, "k"); err == nil || !strings.Contains(err.Error(), "Dialer did not return") || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("Get while the Dialer ends its goroutine = %v (outcome %v); want an error that says the Dialer did not return, not sent", err, OutcomeOf(err))
	}
	if err := c.Set(gctx, "k", "v"); err != nil {
		t.Fatalf("Set once the Dialer returns: %v", err)
	}

	exits.Store("on", true)
	res := make(chan error, 1)
	go func() {
		err := errors.New("Watch ended the calling goroutine")
		defer func() { res <- err }()
		var tx *Tx
		if tx, err = c.Watch(gctx); err == nil {
			tx.Close()
		}
	}()
	if err := <-res; err == nil || !strings.Contains(err.Error(), "Dialer did not return") || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("Watch while the Dialer ends its goroutine = %v (outcome %v); want an error that says the Dialer did not return, not sent", err, OutcomeOf(err))
	}
	tx, err := c.Watch(gctx, "k")
	if err != nil {
		t.Fatalf("Watch once the Dialer returns: %v; want a session (the pool's one slot was kept by a dial that ended its goroutine)", err)
	}
	tx.Close()
}

// A TypeError names the reply's kind with the right article.
func TestTypeErrorWording(t *testing.T) {
	for v, want := range map[*Value]string{
		ptr(NewValue([]any{"a"})): "redpipe: cannot read an array reply as int64",
		ptr(NewValue(7)):          "redpipe: cannot read an integer reply as slice",
		ptr(NewValue(1.5)):        "redpipe: cannot read a double reply as slice",
	} {
		var err error
		if v.Kind() == KindArray {
			_, err = v.Int64()
		} else {
			_, err = v.Slice()
		}
		if err == nil || err.Error() != want {
			t.Errorf("%v: error %v, want %q", v, err, want)
		}
	}
}

func ptr[T any](x T) *T { return &x }

// TestContextCauseInErrors: a call stopped by a context ended with a
// cause says why in its error, wherever the call waited: for its reply
// (the proxy holds the replies back), for the dial of the shared
// connection (a Dialer that waits), or for a connection of the pool. Its
// outcome is what it was: the SET and the transaction ran on the server,
// as another client sees, and their errors say the outcome is unknown,
// even when the cause is the watch conflict of another transaction
// (a caller that gives up its other calls for it): the cause is in the
// text, not reached by errors.Is. The next call gets its own reply.
func TestContextCauseInErrors(t *testing.T) {
	c, px, srv := proxiedClient(t, Options{PoolSize: 1})
	ctx := ctxT(t)
	if err := c.Set(ctx, "warm", "w"); err != nil {
		t.Fatal(err)
	}
	checkCause := func(what string, err, want error, outcome Outcome) {
		t.Helper()
		switch {
		case err == nil || !strings.Contains(err.Error(), ErrWatch.Error()):
			t.Errorf("%s: err = %v; want the cause, %q, in it", what, err, ErrWatch)
		case !errors.Is(err, want):
			t.Errorf("%s: err = %v; want it to match %v", what, err, want)
		case OutcomeOf(err) != outcome:
			t.Errorf("%s: err = %v, of outcome %v; want %v", what, err, OutcomeOf(err), outcome)
		case outcome == OutcomeUnknown && (errors.Is(err, ErrWatch) || errors.Is(err, ErrNotApplied)):
			t.Errorf("%s: err = %v matches ErrWatch or ErrNotApplied, though the command ran", what, err)
		}
	}

	px.Stall(redistest.ServerToClient, true)
	cctx, cancel := context.WithCancelCause(ctx)
	time.AfterFunc(100*time.Millisecond, func() { cancel(ErrWatch) })
	checkCause("SET waiting for its reply", c.Set(cctx, "k", "v"), context.Canceled, OutcomeUnknown)
	tctx, tcancel := context.WithTimeoutCause(ctx, 100*time.Millisecond, ErrWatch)
	_, err := c.Pipeline().Set("t", "v").Exec(tctx)
	tcancel()
	checkCause("transaction waiting for EXEC's reply", err, context.DeadlineExceeded, OutcomeUnknown)
	px.Reset()
	waitForServer(t, ctx, "the SET and the transaction to run", func() (bool, string) {
		k, _ := srv.Do("GET", "k")
		tv, _ := srv.Do("GET", "t")
		return k == "v" && tv == "v", fmt.Sprintf("k = %v, t = %v", k, tv)
	})
	if v, err := c.Get(ctx, "warm"); err != nil || v != "w" {
		t.Fatalf("GET after the abandoned calls = %q, %v; want w", v, err)
	}

	tx, err := c.Watch(ctx, "k") // holds the pool's only connection
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel = context.WithTimeoutCause(ctx, 50*time.Millisecond, ErrWatch)
	_, err = c.Watch(tctx, "k")
	tcancel()
	checkCause("Watch waiting for the pool", err, context.DeadlineExceeded, OutcomeNotSent)
	tx.Close()

	gate := make(chan struct{})
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	c2, err := NewClient(Options{Addr: srv.Addr, Dialer: dialer})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	defer close(gate)
	tctx, tcancel = context.WithTimeoutCause(ctx, 50*time.Millisecond, ErrWatch)
	checkCause("SET waiting for the dial", c2.Set(tctx, "d", "v"), context.DeadlineExceeded, OutcomeNotSent)
	tcancel()
}
