package redpipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/redistest"
)

// countingDialer dials for real and counts the dials. The first dial
// waits, before it connects, until every one of n callers has either
// dialed or is waiting in the pool for another's dial, so that all n
// meet that first dial in flight, whatever the scheduler does.
type countingDialer struct {
	c     *Client // set once the client is made
	n     int
	dials atomic.Int64
	ready chan struct{} // closed once c is set
}

func (d *countingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.dials.Add(1) == 1 {
		<-d.ready
		deadline := time.Now().Add(30 * time.Second)
		for d.c.pool.Waiting()+int(d.dials.Load()) < d.n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

// stormClient makes a client of addr with no retries, a pool as large
// as n, and a dialer that counts its dials.
func stormClient(t *testing.T, addr string, n int, opt Options) (*Client, *countingDialer) {
	t.Helper()
	d := &countingDialer{n: n, ready: make(chan struct{})}
	opt.Addr = addr
	opt.PoolSize = n
	opt.Dialer = d.dial
	if opt.MaxRetries == 0 {
		opt.MaxRetries = -1
	}
	c, err := NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	d.c = c
	close(d.ready)
	return c, d
}

// blpopAll runs n BLPOPs at once, each on a key of its own, and returns
// their errors.
func blpopAll(ctx context.Context, c *Client, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.BLPop(ctx, 0, fmt.Sprintf("storm:%d", i))
		}()
	}
	wg.Wait()
	return errs
}

// TestPoolDialFailureShared: many callers that need a pooled connection
// at once, from a server that refuses them, share the failure of one
// dial rather than each dialing (a storm of connects and handshakes on a
// server that is failing or restarting); each gets that dial's error,
// which says what was wrong and that nothing was sent.
func TestPoolDialFailureShared(t *testing.T) {
	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("handshake refused", func(t *testing.T) {
		srv := redistest.Start(t)
		srv.MustDo(t, "ACL", "SETUSER", "app", "on", ">new-pw", "~*", "+@all")
		c, d := stormClient(t, srv.Addr, n, Options{Username: "app", Password: "old-pw"})
		for i, err := range blpopAll(ctx, c, n) {
			var he *HandshakeError
			var se *Error
			if !errors.As(err, &he) || !errors.As(err, &se) || se.Prefix != "WRONGPASS" || OutcomeOf(err) != OutcomeNotSent {
				t.Fatalf("BLPOP %d = %v (outcome %v); want the server's WRONGPASS in a *HandshakeError, not sent", i, err, OutcomeOf(err))
			}
		}
		if got := d.dials.Load(); got != 1 {
			t.Errorf("%d concurrent BLPOPs made %d dials to a server refusing the handshake, want 1", n, got)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		srv := redistest.Start(t)
		addr := srv.Addr
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		c, d := stormClient(t, addr, n, Options{})
		for i, err := range blpopAll(ctx, c, n) {
			var de *DialError
			if !errors.As(err, &de) || !errors.Is(err, syscall.ECONNREFUSED) || OutcomeOf(err) != OutcomeNotSent {
				t.Fatalf("BLPOP %d = %v (outcome %v); want a *DialError of a refused connection, not sent", i, err, OutcomeOf(err))
			}
		}
		if got := d.dials.Load(); got != 1 {
			t.Errorf("%d concurrent BLPOPs made %d dials to a stopped server, want 1", n, got)
		}
	})

	t.Run("retries dial again", func(t *testing.T) {
		// A shared failure counts as an attempt like any other: the
		// call is retried, after its backoff, with a dial of its own
		// if no other is in flight.
		srv := redistest.Start(t)
		addr := srv.Addr
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		c, d := stormClient(t, addr, 1, Options{MaxRetries: 2})
		if _, err := c.BLPop(ctx, 0, "storm"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("BLPOP = %v, want a refused connection", err)
		}
		if got := d.dials.Load(); got != 3 {
			t.Errorf("a BLPOP with MaxRetries 2 made %d dials to a stopped server, want 3", got)
		}
	})

	t.Run("healthy server", func(t *testing.T) {
		// Dials that succeed are not made one after another: the pool
		// grows to one connection per waiting BLPOP.
		const n = 64
		srv := redistest.Start(t)
		c, d := stormClient(t, srv.Addr, n, Options{})
		done := make(chan []error, 1)
		go func() { done <- blpopAll(ctx, c, n) }()
		waitUntil(t, ctx, fmt.Sprintf("%d BLPOPs to be blocked on the server", n), func() bool {
			return blockedClients(t, srv) == fmt.Sprint(n)
		})
		if open, _ := c.pool.Stats(); open != n {
			t.Errorf("pool has %d connections open for %d BLPOPs, want %d", open, n, n)
		}
		for i := range n {
			srv.MustDo(t, "LPUSH", fmt.Sprintf("storm:%d", i), "v")
		}
		for i, err := range <-done {
			if err != nil {
				t.Errorf("BLPOP %d = %v", i, err)
			}
		}
		if got := d.dials.Load(); got != n {
			t.Errorf("%d BLPOPs made %d dials, want %d", n, got, n)
		}
	})
}

// TestClusterPoolDialFailureShared: the clients of a cluster's nodes
// share a failed dial as a single node's client does: Watch sessions
// opened at once on a node that refuses the client's password, changed
// on the server, each get its WRONGPASS, with a dial or so between them.
func TestClusterPoolDialFailureShared(t *testing.T) {
	t.Parallel()
	const n = 100
	cl := redistest.StartCluster(t, 0)
	for _, s := range cl.Servers() {
		s.MustDo(t, "ACL", "SETUSER", "app", "on", ">old-pw", "~*", "+@all")
	}
	ctx := clusterCtx(t)
	owner, err := cl.SlotOwner(int(hashslot.Slot("{storm}")))
	if err != nil {
		t.Fatal(err)
	}
	var (
		armed atomic.Bool
		dials atomic.Int64
		c     *Client
	)
	// waiting counts the calls waiting for another's dial in the pools of
	// the nodes.
	waiting := func() int {
		r := c.cluster
		r.mu.RLock()
		defer r.mu.RUnlock()
		w := 0
		for _, nc := range r.nodes {
			w += nc.pool.Waiting()
		}
		return w
	}
	c, err = NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{
		Username: "app", Password: "old-pw", PoolSize: n, MaxRetries: -1,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// Only the dials of the sessions' node count: the refusal
			// also starts a refresh of the layout in the background,
			// which may dial the masters the client has no connection to.
			if armed.Load() && addr == owner.Addr && dials.Add(1) == 1 {
				deadline := time.Now().Add(30 * time.Second)
				for waiting()+int(dials.Load()) < n && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "{storm}", "v"); err != nil {
		t.Fatal(err)
	}
	for _, s := range cl.Servers() {
		s.MustDo(t, "ACL", "SETUSER", "app", "resetpass", ">new-pw")
	}
	armed.Store(true)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, err := c.Watch(ctx, fmt.Sprintf("{storm}:%d", i))
			if err == nil {
				tx.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		var he *HandshakeError
		var se *Error
		if !errors.As(err, &he) || !errors.As(err, &se) || se.Prefix != "WRONGPASS" || OutcomeOf(err) != OutcomeNotSent {
			t.Fatalf("Watch %d = %v (outcome %v); want the node's WRONGPASS in a *HandshakeError, not sent", i, err, OutcomeOf(err))
		}
	}
	if got := dials.Load(); got != 1 {
		t.Errorf("%d concurrent Watch sessions made %d dials to a node refusing the handshake, want 1", n, got)
	}
}
