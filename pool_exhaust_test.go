package redpipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// TestPoolExhaustedSays: a call that waits for a pooled connection until
// its context ends, every connection being lent, gets an error that says
// the pool is exhausted, how many connections are lent and to what, and
// what to do; it still matches the context's error and is not sent.
func TestPoolExhaustedSays(t *testing.T) {
	srv := redistest.Start(t)
	c, err := NewClient(Options{Addr: srv.Addr, PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A session never closed (a forgotten defer tx.Close()), and a Stream
	// holding a connection.
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	st := c.Stream(ctx, func(int, Value) error { return nil })
	defer st.Close(ctx)
	// Past one chunk, the stream sends and so holds a connection.
	big := strings.Repeat("x", 1<<10)
	for i := 0; i < 100; i++ {
		st.Do("ECHO", big)
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}

	for _, call := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"Watch", func(ctx context.Context) error { _, err := c.Watch(ctx, "k"); return err }},
		{"BLPOP", func(ctx context.Context) error { _, err := c.Do(ctx, "BLPOP", "list", 0); return err }},
	} {
		short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
		err := call.run(short)
		stop()
		if err == nil {
			t.Fatalf("%s with the pool exhausted: no error", call.name)
		}
		t.Logf("%s: %v", call.name, err)
		if !errors.Is(err, ErrPoolExhausted) || !errors.Is(err, context.DeadlineExceeded) || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("%s: %v: want an error matching ErrPoolExhausted and context.DeadlineExceeded, not sent", call.name, err)
		}
		for _, want := range []string{"2 (Options.PoolSize)", "1 to Watch sessions", "1 to Streams", "tx.Close", "raise Options.PoolSize"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", call.name, err, want)
			}
		}
	}
}

// TestPoolExhaustedNested: a Transaction, Watch or blocking command called
// inside a Transaction's fn with a PoolSize of 1 waits for the connection
// fn's own Transaction holds; when its context ends, the error says the
// pool is exhausted and by what, rather than only that the context ended.
func TestPoolExhaustedNested(t *testing.T) {
	srv := redistest.Start(t)
	c, err := NewClient(Options{Addr: srv.Addr, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, inner := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"Transaction", func(ctx context.Context) error {
			_, err := c.Transaction(ctx, func(*Tx) error { return nil }, "b")
			return err
		}},
		{"Watch", func(ctx context.Context) error { _, err := c.Watch(ctx, "b"); return err }},
		{"BLPOP", func(ctx context.Context) error { _, err := c.Do(ctx, "BLPOP", "list", 0); return err }},
	} {
		var innerErr error
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
			defer stop()
			innerErr = inner.run(short)
			return innerErr
		}, "a")
		t.Logf("%s: %v", inner.name, innerErr)
		if !errors.Is(innerErr, ErrPoolExhausted) || !errors.Is(innerErr, context.DeadlineExceeded) {
			t.Errorf("%s inside fn: %v: want an error matching ErrPoolExhausted and context.DeadlineExceeded", inner.name, innerErr)
		}
		if !strings.Contains(fmt.Sprint(innerErr), "1 to Watch sessions or Transactions") {
			t.Errorf("%s inside fn: %v does not say what holds the pool", inner.name, innerErr)
		}
		if !errors.Is(err, ErrPoolExhausted) {
			t.Errorf("Transaction whose fn returned %v: %v", innerErr, err)
		}
	}
	// Nothing is left lent: the next call gets the connection.
	if _, err := c.Do(ctx, "BLPOP", "list", 0.01); err != nil && !errors.Is(err, ErrNil) {
		t.Fatalf("BLPOP after: %v", err)
	}
}

// TestPoolExhaustedManyWaiters: many callers wait for the one pooled
// connection, which a forgotten Tx holds, each until its own context
// ends; each gets its context's error (the exhausted pool's, when it
// waited), none is left waiting, and
// once the Tx is closed the connection is lent again.
func TestPoolExhaustedManyWaiters(t *testing.T) {
	srv := redistest.Start(t)
	c, err := NewClient(Options{Addr: srv.Addr, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	const waiters = 200
	errs := make(chan error, waiters)
	for i := range waiters {
		go func() {
			short, stop := context.WithTimeout(ctx, time.Duration(1+i%20)*time.Millisecond)
			defer stop()
			_, err := c.Watch(short, "k")
			errs <- err
		}()
	}
	for range waiters {
		select {
		case err := <-errs:
			// A context may end before its call reaches the pool, on a
			// slow machine: that error need not speak of the pool.
			if !errors.Is(err, context.DeadlineExceeded) || OutcomeOf(err) != OutcomeNotSent {
				t.Fatalf("a waiter: %v, want its context's error, not sent", err)
			}
		case <-ctx.Done():
			t.Fatal("waiters still waiting after their contexts ended")
		}
	}
	if err := tx.Close(); err != nil {
		t.Fatal(err)
	}
	tx, err = c.Watch(ctx, "k")
	if err != nil {
		t.Fatalf("Watch once the Tx is closed: %v", err)
	}
	tx.Close()
	if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
		t.Fatalf("pool: %d open, %d idle; want the one connection, idle", open, idle)
	}
}

// TestPoolExhaustedCluster: on a cluster, each master's client has a pool
// of its own; a wait for one of them that outlasts its context names the
// node whose pool is exhausted.
func TestPoolExhaustedCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{PoolSize: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tx, err := c.Watch(ctx, "{a}k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	_, err = c.Watch(short, "{a}other")
	if !errors.Is(err, ErrPoolExhausted) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch with the node's pool exhausted: %v", err)
	}
	if !strings.Contains(err.Error(), " of node ") || !strings.Contains(err.Error(), "1 to Watch sessions or Transactions") {
		t.Fatalf("Watch with the node's pool exhausted: %v does not name the node and what holds its pool", err)
	}
	t.Log(err)
	// Another master's pool is its own.
	other, stop2 := context.WithTimeout(ctx, 30*time.Second)
	defer stop2()
	tx2, err := c.Watch(other, "{b}k")
	if err != nil {
		t.Fatalf("Watch on another master: %v", err)
	}
	tx2.Close()
}

// TestPoolExhaustedWhileDialing: with the pool's one connection being
// dialed, a call that waits for that dial until its context ends is told
// that the pool is exhausted, the connection counted as being dialed, as
// when it waits for a connection lent.
func TestPoolExhaustedWhileDialing(t *testing.T) {
	srv := redistest.Start(t)
	release := make(chan struct{})
	var dials atomic.Int64
	c, err := NewClient(Options{Addr: srv.Addr, PoolSize: 1, MaxRetries: -1,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() { _, err := c.Do(ctx, "BLPOP", "dialing:list", "0.01"); first <- err }()
	waitUntil(t, ctx, "the first dial", func() bool { return dials.Load() == 1 })

	short, stop := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() { _, err := c.Do(short, "BLPOP", "dialing:list", "0.01"); second <- err }()
	waitUntil(t, ctx, "the second call to wait for the first dial", func() bool { return c.pool.Waiting() == 1 })
	stop()
	err = <-second
	t.Logf("BLPOP: %v", err)
	if !errors.Is(err, ErrPoolExhausted) || !errors.Is(err, context.Canceled) || OutcomeOf(err) != OutcomeNotSent ||
		!strings.Contains(err.Error(), "1 being dialed") {
		t.Errorf("BLPOP waiting for the dial of the pool's one connection = %v; want the pool exhausted, 1 being dialed, not sent", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("the first BLPOP = %v", err)
	}
}
