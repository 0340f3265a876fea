package redpipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// proxiedClient puts a fault proxy between a new client and a real server.
func proxiedClient(t *testing.T, opt Options) (*Client, *redistest.Proxy, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	opt.Addr = px.Addr
	c, err := NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, px, srv
}

// cutWhileInFlight runs call, which sends the command named cmd (in lower
// case), while the server's replies are held back, then resets the
// connection under it once the server has run the command (INFO
// commandstats): its reply waits in the proxy.
func cutWhileInFlight(t *testing.T, px *redistest.Proxy, srv *redistest.Server, cmd string, call func() error) error {
	t.Helper()
	ran := commandCalls(t, srv, cmd)
	px.Stall(redistest.ServerToClient, true)
	res := make(chan error, 1)
	go func() { res <- call() }()
	waitForServer(t, ctxT(t), "the "+cmd+" to reach the server", func() (bool, string) {
		n := commandCalls(t, srv, cmd)
		return n > ran, fmt.Sprintf("the server ran %s %d times, %d before the call", cmd, n, ran)
	})
	px.Cut(redistest.CutRST)
	px.Reset()
	select {
	case err := <-res:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("call still waiting 10s after its connection was cut")
		return nil
	}
}

// TestReadsRetriedWritesNot: a connection dies with a command in flight.
// A read is sent again on a new connection and succeeds; a write, whose
// outcome is unknown, is not resent and says so; a write marked
// Idempotent is resent.
func TestReadsRetriedWritesNot(t *testing.T) {
	c, px, srv := proxiedClient(t, Options{})
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}

	var got string
	err := cutWhileInFlight(t, px, srv, "get", func() (err error) { got, err = c.Get(ctx, "k"); return err })
	if err != nil || got != "v" {
		t.Fatalf("GET across a cut connection = %q, %v; want it retried", got, err)
	}

	err = cutWhileInFlight(t, px, srv, "incr", func() error { _, err := c.Incr(ctx, "n"); return err })
	if err == nil || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Fatalf("INCR across a cut connection: %v (outcome %v), want an error of unknown outcome", err, OutcomeOf(err))
	}
	if v, _ := srv.Do("GET", "n"); v != "1" {
		t.Fatalf("n = %v: the INCR ran %v times, want exactly once (it reached the server, and was not resent)", v, v)
	}

	// The INCR's connection is gone: the next is dialed before the stall,
	// so that what the cut finds in flight is the SET, not the handshake.
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	err = cutWhileInFlight(t, px, srv, "set", func() error { return c.Set(Idempotent(ctx), "fixed", "x") })
	if err != nil {
		t.Fatalf("idempotent SET across a cut connection: %v, want it retried", err)
	}

	// A transaction that writes is not resent once EXEC may have run,
	// Idempotent or not.
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	err = cutWhileInFlight(t, px, srv, "exec", func() error {
		_, err := c.Pipeline().Incr("txn").Exec(Idempotent(ctx))
		return err
	})
	if err == nil || OutcomeOf(err) != OutcomeUnknown || errors.Is(err, ErrNotApplied) {
		t.Fatalf("idempotent transaction across a cut connection: %v (outcome %v), want an error of unknown outcome", err, OutcomeOf(err))
	}
	if v, _ := srv.Do("GET", "txn"); v != "1" {
		t.Fatalf("txn = %v: the transaction ran %v times, want exactly once", v, v)
	}
	// One that only reads is sent again, as a read is.
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	var replies []Value
	err = cutWhileInFlight(t, px, srv, "exec", func() (err error) {
		replies, err = c.Pipeline().Get("txn").Exec(ctx)
		return err
	})
	if err != nil || len(replies) != 1 || replies[0].String() != "1" {
		t.Fatalf("a read-only transaction across a cut connection = %v, %v; want it retried", replies, err)
	}
}

// TestDialRetriedWithinContext: a server that is down when the call starts
// and back a moment later is reached by retrying the dial; a server that
// stays down gives a dial error, marked not sent, by the call's deadline.
func TestDialRetriedWithinContext(t *testing.T) {
	srv := redistest.Start(t)
	// The default dial, which also tells when a dial failed.
	failed := make(chan struct{}, 1)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			select {
			case failed <- struct{}{}:
			default:
			}
		}
		return nc, err
	}
	c2, err := NewClient(Options{Addr: srv.Addr, MaxRetries: 10, DialTimeout: time.Second, Dialer: dial})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ctx := ctxT(t)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	pinged := make(chan error, 1)
	go func() {
		s, err := c2.Ping(ctx)
		if err == nil && s != "PONG" {
			err = errors.New("reply " + s)
		}
		pinged <- err
	}()
	// The server comes back once the call's first dial has failed.
	select {
	case <-failed:
	case <-ctx.Done():
		t.Fatal("no dial failed while the server was down")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-pinged; err != nil {
		t.Fatalf("Ping while the server restarts: %v", err)
	}
	srv.Kill()
	// The server's end of the shared connection closed with it; once the
	// client has read that, the next call dials (the case under test)
	// instead of writing into a socket whose reply cannot come, which is
	// of unknown outcome.
	waitForServer(t, ctx, "the client to see its shared connection end", func() (bool, string) {
		cn := c2.shared.Load()
		return cn == nil || !cn.Alive(), "the shared connection is alive"
	})
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c2.Ping(dctx)
	if !SafeToRetry(err) || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("Ping to a dead server: %v (outcome %v), want not sent", err, OutcomeOf(err))
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Fatalf("gave up after %v, long past its 300ms deadline", waited)
	}
}

// TestDialTimeoutNamed: a server that takes the connection and never
// answers its HELLO fails the dial once DialTimeout runs out, with an
// error that names DialTimeout, for the shared connection and a pooled
// one alike. The error said only "context deadline exceeded", which reads
// as the caller's own deadline, though the caller had set none that
// near. A caller whose own deadline ends the dial first is not told of
// DialTimeout.
func TestDialTimeoutNamed(t *testing.T) {
	srv := redistest.Start(t)
	p := redistest.StartProxy(t, srv.Addr)
	p.Stall(redistest.ServerToClient, true) // HELLO is read, its reply never comes
	c, err := NewClient(Options{Addr: p.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	check := func(what string, err error) {
		t.Helper()
		var he *HandshakeError
		if !errors.As(err, &he) || he.Step != "HELLO" || !errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), "DialTimeout (200ms) ran out") || OutcomeOf(err) != OutcomeNotSent {
			t.Fatalf("%s against a server that never answers = %v (outcome %v); "+
				"want a *HandshakeError at HELLO, not sent, that names DialTimeout", what, err, OutcomeOf(err))
		}
	}
	_, err = c.Ping(ctx)
	check("Ping", err)
	_, err = c.Watch(ctx, "k")
	check("Watch", err)

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = c.Watch(short, "k")
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "DialTimeout") {
		t.Fatalf("Watch whose own deadline ends the dial = %v; want the deadline's error, DialTimeout unnamed", err)
	}
}

// behindName makes a Client of opt for a name, as a DNS name a failover
// moves: its Dialer reaches the address in target, first at first, and
// counts its dials. The client is closed when the test ends.
func behindName(t *testing.T, opt Options, first string) (c *Client, target *atomic.Value, dials *atomic.Int64) {
	t.Helper()
	target, dials = new(atomic.Value), new(atomic.Int64)
	target.Store(first)
	var nd net.Dialer
	opt.Addr = "redis.example:6379"
	opt.Dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
		dials.Add(1)
		return nd.DialContext(ctx, network, target.Load().(string))
	}
	c, err := NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, target, dials
}

// TestMasterMovedBehindName: the client reaches its server by a name (a
// Dialer here, as DNS would) that moves to another server when the first
// becomes a replica, as in a failover. The write refused with READONLY
// is the last one sent to the replica: the shared connection is replaced,
// and a pooled one is not lent again, so the next calls reach the new
// master. The shared connection stayed, and every write was refused
// until it broke.
func TestMasterMovedBehindName(t *testing.T) {
	t.Parallel()
	const name = "moved-behind-name"
	a, b := redistest.Start(t), redistest.Start(t)
	c, target, _ := behindName(t, Options{ClientName: name, MaxRetries: -1}, a.Addr)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "on a"); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Watch(ctx, "k") // a pooled connection to a, idle once closed
	if err != nil {
		t.Fatal(err)
	}
	tx.Close()

	target.Store(b.Addr)
	host, port, _ := net.SplitHostPort(b.Addr)
	a.MustDo(t, "REPLICAOF", host, port)

	var se *Error
	if err := c.Set(ctx, "k", "refused"); !errors.As(err, &se) || se.Prefix != "READONLY" {
		t.Fatalf("Set on the connection to the new replica = %v, want its READONLY refusal", err)
	}
	if err := c.Set(ctx, "k", "on b"); err != nil {
		t.Fatalf("Set after the READONLY refusal: %v; want it sent to the new master on a new connection", err)
	}
	if got := b.MustDo(t, "GET", "k"); got != "on b" {
		t.Fatalf("GET on the new master = %v, want \"on b\"", got)
	}

	// The pooled connection to a is lent once, refused, and dropped.
	tx, err = c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Multi().Set("k", "refused in a transaction").Exec(ctx)
	tx.Close()
	if err == nil || !strings.Contains(err.Error(), "READONLY") {
		t.Fatalf("Exec on the pooled connection to the new replica = %v, want its READONLY refusal", err)
	}
	tx, err = c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Multi().Set("k", "in a transaction on b").Exec(ctx)
	tx.Close()
	if err != nil {
		t.Fatalf("Exec after the READONLY refusal: %v; want it run on the new master", err)
	}
	if got := b.MustDo(t, "GET", "k"); got != "in a transaction on b" {
		t.Fatalf("GET on the new master = %v, want the transaction's value", got)
	}

	// No connection of the client's is left on the replica.
	waitForServer(t, ctx, "the client's connections to the replica to close", func() (bool, string) {
		left := namedClientAddrs(t, a, name)
		return len(left) == 0, fmt.Sprint(left)
	})
}

// TestReadOnlyRedialBounded: a client whose Addr reaches a replica, on
// purpose or while a name still points at a demoted master, gets each
// write's READONLY refusal, but dials a new shared connection for them no
// more than once per readOnlyRedial, instead of once per refused write;
// once the name points at a master, the next refusal after that time
// moves the client there.
func TestReadOnlyRedialBounded(t *testing.T) {
	defer func(d time.Duration) { readOnlyRedial = d }(readOnlyRedial)
	readOnlyRedial = 300 * time.Millisecond
	master, replica := redistest.Start(t), redistest.Start(t)
	host, port, _ := net.SplitHostPort(master.Addr)
	replica.MustDo(t, "REPLICAOF", host, port)
	c, target, dials := behindName(t, Options{MaxRetries: -1}, replica.Addr)
	ctx := ctxT(t)
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	const writes = 40
	began, first := time.Now(), dials.Load()
	for i := range writes {
		var se *Error
		if err := c.Set(ctx, "k", "v"); !errors.As(err, &se) || se.Prefix != "READONLY" {
			t.Fatalf("Set %d on the replica = %v, want its READONLY refusal", i, err)
		}
		if _, err := c.Exists(ctx, "k"); err != nil {
			t.Fatalf("EXISTS %d on the replica: %v", i, err)
		}
	}
	// One dial for the first refusal, and one per readOnlyRedial after.
	elapsed := time.Since(began)
	if got, most := dials.Load()-first, 1+int64(elapsed/readOnlyRedial)+1; got > most {
		t.Fatalf("%d refused writes in %v made %d dials, want at most %d", writes, elapsed, got, most)
	}

	target.Store(master.Addr)
	time.Sleep(readOnlyRedial) // the refusals after it replace the connection
	moved := false
	for i := 0; i < 3 && !moved; i++ {
		err := c.Set(ctx, "k", "on the master")
		var se *Error
		switch {
		case err == nil:
			moved = true
		case !errors.As(err, &se) || se.Prefix != "READONLY":
			t.Fatalf("Set = %v, want success or a READONLY refusal", err)
		}
	}
	if !moved {
		t.Fatal("writes still refused after the name moved to the master")
	}
	if got := master.MustDo(t, "GET", "k"); got != "on the master" {
		t.Fatalf("GET on the master = %v", got)
	}
}

// TestPoolExhaustion: with every dedicated connection lent, a waiter
// leaves at its deadline; when they come back, many contending
// transactions all finish, and nothing deadlocks.
func TestPoolExhaustion(t *testing.T) {
	c, _ := newTestClient(t, Options{PoolSize: 2})
	ctx := ctxT(t)
	a, err := c.Watch(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Watch(ctx, "y")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Watch(short, "z"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch on an exhausted pool: %v, want DeadlineExceeded", err)
	}
	if _, err := c.BLPop(short, 1, "q"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("BLPOP on an exhausted pool: %v, want DeadlineExceeded", err)
	}
	// Plain calls do not need the pool.
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				_, err := c.Transaction(ctx, func(tx *Tx) error {
					n, err := tx.Get(ctx, "ctr")
					if err != nil && !errors.Is(err, ErrNil) {
						return err
					}
					tx.Multi().Set("ctr", len(n)+1).Incr("total")
					return nil
				}, "ctr")
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, _ := c.Get(ctx, "total"); n != "320" {
		t.Fatalf("total = %s, want 320", n)
	}
	if open, _ := c.pool.Stats(); open > 2 {
		t.Fatalf("%d dedicated connections, the pool holds 2", open)
	}
}

// refusingConn is a connection whose socket refuses the first write that
// holds marker after accepting keep(len) bytes of it, as a socket whose
// peer reset the connection does: the bytes it accepted reach the server,
// the rest never do. armed is shared by every connection of one Dialer, so
// only one write in all is refused.
type refusingConn struct {
	net.Conn
	marker []byte
	keep   func(n int) int
	armed  *atomic.Bool
}

func (rc *refusingConn) Write(p []byte) (int, error) {
	if !bytes.Contains(p, rc.marker) || !rc.armed.CompareAndSwap(true, false) {
		return rc.Conn.Write(p)
	}
	n, err := rc.Conn.Write(p[:rc.keep(len(p))])
	if err == nil {
		err = io.EOF
	}
	return n, err
}

// refusingDialer dials connections whose first write holding marker is
// refused after keep(len) of its bytes.
func refusingDialer(marker string, keep func(n int) int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	armed := new(atomic.Bool)
	armed.Store(true)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &refusingConn{Conn: nc, marker: []byte(marker), keep: keep, armed: armed}, nil
	}
}

// TestWriteRefusedIsNotSent: a write the socket refused without taking a
// byte of it sent nothing. A plain call, a pipeline and a transaction each
// say so (OutcomeNotSent; for a transaction, not applied), and the first three
// are sent again on a new connection when retries are allowed, where they
// succeed once (a Tx's EXEC is not: its WATCH went with the connection). A
// write refused after part of it was taken may have reached the server:
// its outcome is unknown, and a write is not sent again.
func TestWriteRefusedIsNotSent(t *testing.T) {
	srv := redistest.Start(t)
	none := func(int) int { return 0 }
	half := func(n int) int { return n / 2 }
	cases := []struct {
		name    string
		retried bool // sent again by the client when retries are allowed
		run     func(ctx context.Context, c *Client, key string) error
	}{
		{"call", true, func(ctx context.Context, c *Client, key string) error {
			_, err := c.Incr(ctx, key)
			return err
		}},
		{"pipeline", true, func(ctx context.Context, c *Client, key string) error {
			_, err := c.Pipeline(NoTransaction).Incr(key).Incr(key + ":other").Exec(ctx)
			return err
		}},
		{"large pipeline", true, func(ctx context.Context, c *Client, key string) error {
			// Too large for the shared connection, and for a write inline:
			// the writer goroutine of a dedicated connection writes it.
			p := c.Pipeline(NoTransaction).Incr(key)
			for i := range 1000 {
				p.Set(key+":"+strconv.Itoa(i), strings.Repeat("v", 300))
			}
			_, err := p.Exec(ctx)
			return err
		}},
		{"transaction", true, func(ctx context.Context, c *Client, key string) error {
			_, err := c.Pipeline().Incr(key).Incr(key + ":other").Exec(ctx)
			return err
		}},
		{"tx exec", false, func(ctx context.Context, c *Client, key string) error {
			tx, err := c.Watch(ctx, "watched") // not the marker: WATCH goes through
			if err != nil {
				return err
			}
			defer tx.Close()
			_, err = tx.Multi().Incr(key).Exec(ctx)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			newClient := func(marker string, keep func(int) int, retries int) *Client {
				c, err := NewClient(Options{Addr: srv.Addr, MaxRetries: retries, Dialer: refusingDialer(marker, keep)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			count := func(key string) string {
				v, _ := srv.Do("GET", key)
				s, _ := v.(string)
				return s
			}

			key := "refused:" + tc.name + ":once"
			err := tc.run(ctx, newClient(key, none, -1), key)
			t.Logf("refused, no retry: %v", err)
			if err == nil || OutcomeOf(err) == OutcomeUnknown || !SafeToRetry(err) {
				t.Fatalf("refused write: %v (outcome %v), want an error that says it had no effect", err, OutcomeOf(err))
			}
			if tc.name == "transaction" || tc.name == "tx exec" {
				if !errors.Is(err, ErrNotApplied) || OutcomeOf(err) != OutcomeNotApplied {
					t.Fatalf("refused transaction: %v (outcome %v), want ErrNotApplied", err, OutcomeOf(err))
				}
			} else if OutcomeOf(err) != OutcomeNotSent {
				t.Fatalf("refused write: outcome %v, want OutcomeNotSent", OutcomeOf(err))
			}
			if n := count(key); n != "" {
				t.Fatalf("%s = %q after a refused write", key, n)
			}

			if tc.retried {
				key = "refused:" + tc.name + ":retried"
				if err := tc.run(ctx, newClient(key, none, 3), key); err != nil {
					t.Fatalf("refused write with retries: %v, want it sent again and applied", err)
				}
				if n := count(key); n != "1" {
					t.Fatalf("%s = %q after the retried write, want 1", key, n)
				}
			}

			key = "refused:" + tc.name + ":half"
			err = tc.run(ctx, newClient(key, half, 3), key)
			t.Logf("refused after half, retries allowed: %v", err)
			if err == nil || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
				t.Fatalf("write refused halfway: %v (outcome %v), want an error of unknown outcome", err, OutcomeOf(err))
			}
		})
	}
}

// TestCutWhileWritesBlocked: the server stops reading (the proxy stalls
// what the client sends) while 200 goroutines each send a 100 KB SET on
// the shared connection, more than the socket and the queue take, and
// then the connection is cut, by a reset and by an orderly close. Every
// call in line or waiting for room fails, as not sent or of unknown
// outcome, some of them as not sent; no key of a call that failed as not
// sent exists on the server; and the next call works on a new connection.
// Bounded in calls and time.
func TestCutWhileWritesBlocked(t *testing.T) {
	t.Parallel()
	const calls = 200
	for name, how := range map[string]redistest.CutMode{"reset": redistest.CutRST, "close": redistest.CutFIN} {
		t.Run(name, func(t *testing.T) {
			c, px, srv := proxiedClient(t, Options{ReplyTimeout: -1, MaxRetries: -1})
			ctx := ctxT(t)
			if err := c.Set(ctx, "warm", 1); err != nil {
				t.Fatal(err)
			}
			px.Stall(redistest.ClientToServer, true)
			val := strings.Repeat("v", 100<<10)
			errs := make([]chan error, calls)
			for g := range calls {
				errs[g] = make(chan error, 1)
				go func() { errs[g] <- c.Set(ctx, "cw:"+strconv.Itoa(g), val) }()
			}
			// The queue is full once the calls in line stop coming, and the
			// calls not in line then wait for room.
			last, same := -1, 0
			waitForServer(t, ctx, "the queue to fill", func() (bool, string) {
				n := c.shared.Load().Pending()
				if n == last {
					same++
				} else {
					last, same = n, 0
				}
				time.Sleep(20 * time.Millisecond)
				return same >= 5 && n < calls, fmt.Sprintf("%d calls in line", n)
			})
			px.Cut(how)
			px.Reset()
			counts := map[Outcome]int{}
			for g, ch := range errs {
				var err error
				select {
				case err = <-ch:
				case <-time.After(10 * time.Second):
					t.Fatalf("call %d still waiting 10s after the cut", g)
				}
				o := OutcomeOf(err)
				counts[o]++
				switch {
				case err == nil:
					// Only a call that had not joined the line by the cut,
					// sent on the next connection, may succeed.
					if v, err := srv.Do("EXISTS", "cw:"+strconv.Itoa(g)); err != nil || v != int64(1) {
						t.Errorf("call %d succeeded, but its key does not exist: %v, %v", g, v, err)
					}
				case o == OutcomeNotSent:
					if v, err := srv.Do("EXISTS", "cw:"+strconv.Itoa(g)); err != nil || v != int64(0) {
						t.Errorf("call %d failed as not sent, but its key exists: %v, %v", g, v, err)
					}
				case o != OutcomeUnknown:
					t.Errorf("call %d failed with %v, of outcome %v", g, err, o)
				}
			}
			t.Logf("outcomes: %v", counts)
			if counts[OutcomeNotSent] == 0 {
				t.Errorf("no call failed as not sent, though some waited for room in the queue")
			}
			if err := c.Set(ctx, "after", 1); err != nil {
				t.Fatalf("the call after the cut: %v", err)
			}
		})
	}
}

// TestMaxConnAgeMovesSharedConnection: the client reaches its server by a
// name (a Dialer here, as DNS would) that comes to point to another
// server. With MaxConnAge, the shared connection, which carries the
// plain calls and pipelines, moves there in time, as the pooled ones do;
// it stayed on the first server for as long as it worked. Eight callers
// calling meanwhile, with no retries allowed, see no failure: the calls
// that met the old connection closed go on the new one. The old one is
// closed, and the client holds one shared connection at a time. When the
// name then points nowhere, the aged connection serves on: the calls
// neither fail nor wait for the dials, which are not made again by every
// call.
func TestMaxConnAgeMovesSharedConnection(t *testing.T) {
	t.Parallel()
	const name = "max-conn-age"
	a, b := redistest.Start(t), redistest.Start(t)
	c, target, dials := behindName(t, Options{ClientName: name, MaxRetries: -1, MaxConnAge: 100 * time.Millisecond}, a.Addr)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "on a"); err != nil {
		t.Fatal(err)
	}
	b.MustDo(t, "SET", "k", "on b")
	target.Store(b.Addr)

	// Replaced a few times while they call, as the GET below waits.
	acked := make(chan int64, 1)
	go func() {
		acked <- callers(t, 8, time.Second, 100_000, func(g, _ int) (int64, error) {
			if g%2 == 0 {
				_, err := c.Incr(ctx, "n")
				return 1, err
			}
			_, err := c.Pipeline(NoTransaction).Incr("n").Incr("n").Exec(ctx)
			return 2, err
		})
	}()
	waitForServer(t, ctx, "GET to reach the server the name points to now", func() (bool, string) {
		v, err := c.Get(ctx, "k")
		return v == "on b", fmt.Sprint(v, err)
	})
	n := <-acked
	na, _ := a.MustDo(t, "GET", "n").(string)
	nb, _ := b.MustDo(t, "GET", "n").(string)
	ia, _ := strconv.Atoi(na)
	ib, _ := strconv.Atoi(nb)
	if int64(ia+ib) != n {
		t.Errorf("INCRs on the servers: %d on a, %d on b; want %d in all, the calls acknowledged", ia, ib, n)
	}
	waitForServer(t, ctx, "the client's connections to the first server to close, and one shared one to the second", func() (bool, string) {
		onA, onB := namedClientAddrs(t, a, name), namedClientAddrs(t, b, name)
		return len(onA) == 0 && len(onB) == 1, fmt.Sprintf("on a %v, on b %v", onA, onB)
	})

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target.Store(ln.Addr().String())
	ln.Close()
	before := dials.Load()
	calls := 0
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); calls++ {
		if _, err := c.Incr(ctx, "m"); err != nil {
			t.Fatalf("INCR with the name pointing nowhere, after %d calls: %v; want it served by the aged connection", calls, err)
		}
	}
	if got := b.MustDo(t, "GET", "m"); got != strconv.Itoa(calls) {
		t.Errorf("INCRs on b = %v; want %d", got, calls)
	}
	// About one dial per MaxConnAge, not one per call.
	if n := dials.Load() - before; n < 1 || n > 20 {
		t.Errorf("%d dials in half a second of %d calls, with MaxConnAge 100ms; want a few", n, calls)
	}
}
