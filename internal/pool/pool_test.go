package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testConn is a stand-in connection: the pool only asks Idle and Close.
type testConn struct {
	id     int
	busy   atomic.Bool
	closed atomic.Bool
}

func (c *testConn) Idle() bool   { return !c.busy.Load() && !c.closed.Load() }
func (c *testConn) Close() error { c.closed.Store(true); return nil }

func newTestPool(size int) (*Pool[*testConn], *atomic.Int64) {
	var dials atomic.Int64
	p := New(size, size, func(ctx context.Context) (*testConn, error) {
		return &testConn{id: int(dials.Add(1))}, nil
	})
	return p, &dials
}

func TestReuseOnlyClean(t *testing.T) {
	p, dials := newTestPool(2)
	ctx := context.Background()
	a, _ := p.Get(ctx)
	p.Put(a, true)
	if b, _ := p.Get(ctx); b != a {
		t.Fatal("a clean connection was not reused")
	}
	p.Put(a, false) // its owner says it is dirty
	if !a.closed.Load() {
		t.Fatal("a connection returned as not reusable was not closed")
	}
	b, _ := p.Get(ctx)
	if b == a || dials.Load() != 2 {
		t.Fatal("a dirty connection was lent again")
	}
	b.busy.Store(true) // a reply still in flight
	p.Put(b, true)
	if !b.closed.Load() {
		t.Fatal("a connection with work in flight was kept")
	}
	if open, idle := p.Stats(); open != 0 || idle != 0 {
		t.Fatalf("open=%d idle=%d", open, idle)
	}
}

func TestExhaustedPoolWaitersHonourContext(t *testing.T) {
	p, _ := newTestPool(2)
	ctx := context.Background()
	a, _ := p.Get(ctx)
	b, _ := p.Get(ctx)

	// Every connection is lent: a waiter gives up at its deadline.
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := p.Get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get on an exhausted pool: %v, want DeadlineExceeded", err)
	}
	// Many waiters, then the connections come back: each waiter gets one
	// in turn, and nothing deadlocks.
	const waiters = 20
	var wg sync.WaitGroup
	var served atomic.Int64
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.Get(wctx)
			if err != nil {
				t.Error(err)
				return
			}
			served.Add(1)
			time.Sleep(time.Millisecond)
			p.Put(c, true)
		}()
	}
	time.Sleep(10 * time.Millisecond)
	p.Put(a, true)
	p.Put(b, false) // one comes back dirty: its slot must still be usable
	wg.Wait()
	if served.Load() != waiters {
		t.Fatalf("%d of %d waiters served", served.Load(), waiters)
	}
	if open, _ := p.Stats(); open > 2 {
		t.Fatalf("%d connections open, the pool holds 2", open)
	}
}

func TestClosedPool(t *testing.T) {
	p, _ := newTestPool(1)
	ctx := context.Background()
	a, _ := p.Get(ctx)
	waiting := make(chan error, 1)
	go func() {
		_, err := p.Get(ctx)
		waiting <- err
	}()
	time.Sleep(10 * time.Millisecond)
	p.Close()
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter at Close: %v, want ErrClosed", err)
	}
	p.Put(a, true) // lent at Close: closed on return
	if !a.closed.Load() {
		t.Fatal("a connection returned to a closed pool was kept")
	}
}
