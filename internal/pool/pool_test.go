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
	p := New(Config[*testConn]{Size: size, MaxIdle: size, Dial: func(ctx context.Context) (*testConn, error) {
		return &testConn{id: int(dials.Add(1))}, nil
	}})
	return p, &dials
}

// waitCtx is a context that tells when a Get starts waiting on it: Get
// asks for Done only when it has found nothing to lend and is about to
// block, and by then it has taken the channel that Put and Close close to
// wake it, so what happens next cannot pass it by.
type waitCtx struct {
	context.Context
	once sync.Once
	wait func()
}

// onWait returns ctx, calling wait the first time a Get waits on it.
func onWait(ctx context.Context, wait func()) context.Context {
	return &waitCtx{Context: ctx, wait: wait}
}

func (c *waitCtx) Done() <-chan struct{} {
	c.once.Do(c.wait)
	return c.Context.Done()
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
	_, err := p.Get(short)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get on an exhausted pool: %v, want DeadlineExceeded", err)
	}
	// And it says the pool was exhausted, for the caller to say by what.
	var ee *ExhaustedError
	if !errors.As(err, &ee) || ee.Size != 2 {
		t.Fatalf("Get on an exhausted pool: %v, want an *ExhaustedError of size 2", err)
	}
	// Many waiters, then the connections come back: each waiter gets one
	// in turn, and nothing deadlocks.
	const waiters = 20
	var wg sync.WaitGroup
	var served, waiting atomic.Int64
	allWaiting := make(chan struct{})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer func() { wcancel(); wg.Wait() }()
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.Get(onWait(wctx, func() {
				if waiting.Add(1) == waiters {
					close(allWaiting)
				}
			}))
			if err != nil {
				t.Error(err)
				return
			}
			served.Add(1)
			p.Put(c, true)
		}()
	}
	select {
	case <-allWaiting:
	case <-time.After(5 * time.Second):
		t.Fatalf("%d of %d Gets waiting on an exhausted pool after 5s", waiting.Load(), waiters)
	}
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
	defer p.Close() // ends the waiter if the test fails before Close
	ctx := context.Background()
	a, _ := p.Get(ctx)
	waits := make(chan struct{})
	waiting := make(chan error, 1)
	go func() {
		_, err := p.Get(onWait(ctx, func() { close(waits) }))
		waiting <- err
	}()
	select {
	case <-waits:
	case <-time.After(5 * time.Second):
		t.Fatal("a Get on an exhausted pool did not wait within 5s")
	}
	p.Close()
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter at Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Get waiting at Close still waits 5s later")
	}
	p.Put(a, true) // lent at Close: closed on return
	if !a.closed.Load() {
		t.Fatal("a connection returned to a closed pool was kept")
	}
}

// clock is a settable time source for the pool, so expiry is tested
// without waiting for it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newTimedPool makes a pool of testConns as cfg says, on clk, and closes
// it when the test ends.
func newTimedPool(t *testing.T, clk *clock, cfg Config[*testConn]) (*Pool[*testConn], *atomic.Int64) {
	var dials atomic.Int64
	cfg.Dial = func(ctx context.Context) (*testConn, error) {
		return &testConn{id: int(dials.Add(1))}, nil
	}
	cfg.Now = clk.Now
	p := New(cfg)
	t.Cleanup(p.Close)
	return p, &dials
}

func mustGet(t *testing.T, p *Pool[*testConn]) *testConn {
	t.Helper()
	c, err := p.Get(context.Background())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return c
}

func TestMaxIdleTime(t *testing.T) {
	clk := newClock()
	p, dials := newTimedPool(t, clk, Config[*testConn]{Size: 2, MaxIdle: 2, MaxIdleTime: time.Minute})

	a := mustGet(t, p)
	p.Put(a, true)
	clk.Advance(time.Minute - time.Nanosecond)
	if b := mustGet(t, p); b != a || a.closed.Load() {
		t.Fatal("a connection idle for less than MaxIdleTime was not lent again")
	}
	p.Put(a, true)
	clk.Advance(time.Minute)
	b := mustGet(t, p)
	if b == a || !a.closed.Load() || dials.Load() != 2 {
		t.Fatalf("a connection idle for MaxIdleTime was lent (%v) or left open (closed %v); %d dials", b == a, a.closed.Load(), dials.Load())
	}

	// Expired connections are closed when another comes back, too, not
	// only when one is taken.
	c := mustGet(t, p)
	p.Put(b, true)
	clk.Advance(time.Minute)
	p.Put(c, true)
	if !b.closed.Load() || c.closed.Load() {
		t.Fatalf("Put after MaxIdleTime: expired one closed %v, returned one closed %v", b.closed.Load(), c.closed.Load())
	}
	if open, idle := p.Stats(); open != 1 || idle != 1 {
		t.Fatalf("open=%d idle=%d, want 1 and 1", open, idle)
	}
}

func TestMaxAge(t *testing.T) {
	clk := newClock()
	p, dials := newTimedPool(t, clk, Config[*testConn]{Size: 1, MaxIdle: 1, MaxAge: time.Hour})

	a := mustGet(t, p)
	clk.Advance(time.Hour - time.Minute)
	p.Put(a, true)
	if _, idle := p.Stats(); idle != 1 {
		t.Fatal("a connection younger than MaxAge was not kept")
	}
	// It reaches MaxAge while idle: taking it closes it, and a new one is
	// dialed in its place.
	clk.Advance(time.Minute)
	b := mustGet(t, p)
	if b == a || !a.closed.Load() || dials.Load() != 2 {
		t.Fatalf("a connection of MaxAge was lent (%v) or left open (closed %v)", b == a, a.closed.Load())
	}
	// It reaches MaxAge while lent: it is closed as it comes back.
	clk.Advance(time.Hour)
	p.Put(b, true)
	if !b.closed.Load() {
		t.Fatal("a connection of MaxAge was kept when it came back")
	}
	if open, idle := p.Stats(); open != 0 || idle != 0 {
		t.Fatalf("open=%d idle=%d, want none", open, idle)
	}
	// Age is counted from the dial, not from the last return.
	c := mustGet(t, p)
	for range 3 {
		clk.Advance(30 * time.Minute)
		p.Put(c, true)
		if c.closed.Load() {
			break
		}
		c = mustGet(t, p)
	}
	if !c.closed.Load() {
		t.Fatal("a connection lent and given back often outlived MaxAge")
	}
}

// TestCheckBeforeLend: a connection idle for CheckAfter is checked before
// it is lent; one that fails is closed and the caller gets another, with
// no error.
func TestCheckBeforeLend(t *testing.T) {
	clk := newClock()
	var checked []int // ids, in order; only the test's goroutine runs Check
	silent := map[*testConn]bool{}
	check := func(ctx context.Context, c *testConn) error {
		checked = append(checked, c.id)
		if silent[c] {
			return errors.New("no reply to the check")
		}
		return nil
	}
	p, dials := newTimedPool(t, clk, Config[*testConn]{Size: 2, MaxIdle: 2, Check: check, CheckAfter: 5 * time.Second})

	a := mustGet(t, p)
	if len(checked) != 0 {
		t.Fatal("a new connection was checked")
	}
	p.Put(a, true)
	clk.Advance(5*time.Second - time.Nanosecond)
	if mustGet(t, p) != a || len(checked) != 0 {
		t.Fatalf("a connection idle for less than CheckAfter: checked %v", checked)
	}
	p.Put(a, true)
	clk.Advance(5 * time.Second)
	if mustGet(t, p) != a || len(checked) != 1 {
		t.Fatalf("a healthy connection idle for CheckAfter: checked %v, want it checked once and lent", checked)
	}

	// It dies while idle in a way it cannot see (Idle still says yes):
	// the check finds out, and a new connection is dialed.
	p.Put(a, true)
	silent[a] = true
	clk.Advance(5 * time.Second)
	b := mustGet(t, p)
	if b == a || !a.closed.Load() || dials.Load() != 2 || len(checked) != 2 {
		t.Fatalf("after a failed check: lent the same %v, closed %v, %d dials, checked %v", b == a, a.closed.Load(), dials.Load(), checked)
	}

	// With another idle connection behind it, that one is lent instead.
	c := mustGet(t, p)
	p.Put(c, true)
	p.Put(b, true) // taken first
	silent[b] = true
	clk.Advance(5 * time.Second)
	checked = nil
	if got := mustGet(t, p); got != c || !b.closed.Load() || dials.Load() != 3 {
		t.Fatalf("lent %d, want %d; closed the silent one %v; %d dials", got.id, c.id, b.closed.Load(), dials.Load())
	}
	if len(checked) != 2 || checked[0] != b.id || checked[1] != c.id {
		t.Fatalf("checked %v, want %d then %d", checked, b.id, c.id)
	}
	p.Put(c, true)
	if open, idle := p.Stats(); open != 1 || idle != 1 {
		t.Fatalf("open=%d idle=%d, want 1 and 1", open, idle)
	}
}

// TestCheckHonoursContext: the check runs under the borrower's context;
// when that ends, Get returns its error and the connection, whose reply
// may still be due, is closed.
func TestCheckHonoursContext(t *testing.T) {
	clk := newClock()
	started := make(chan struct{})
	check := func(ctx context.Context, c *testConn) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}
	p, dials := newTimedPool(t, clk, Config[*testConn]{Size: 1, MaxIdle: 1, Check: check, CheckAfter: time.Second})
	a := mustGet(t, p)
	p.Put(a, true)
	clk.Advance(time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	if _, err := p.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get whose context ended during the check: %v, want Canceled", err)
	}
	if !a.closed.Load() || dials.Load() != 1 {
		t.Fatalf("closed %v, %d dials: want the checked connection closed and none dialed", a.closed.Load(), dials.Load())
	}
	if open, idle := p.Stats(); open != 0 || idle != 0 {
		t.Fatalf("open=%d idle=%d, want none", open, idle)
	}
}

// TestAliveBeforeLend: an idle connection too recent to be Checked is
// asked Alive before it is lent; one found closed is closed and dropped,
// and the next idle one, or a new one, is lent instead. One due for a
// Check is not asked Alive too.
func TestAliveBeforeLend(t *testing.T) {
	clk := newClock()
	gone := map[*testConn]bool{}
	var asked []int // ids; only the test's goroutine runs Alive
	alive := func(c *testConn) bool {
		asked = append(asked, c.id)
		return !gone[c]
	}
	checks := 0
	check := func(context.Context, *testConn) error { checks++; return nil }
	p, dials := newTimedPool(t, clk, Config[*testConn]{Size: 3, MaxIdle: 3, Alive: alive, Check: check, CheckAfter: 5 * time.Second})

	a, b := mustGet(t, p), mustGet(t, p)
	if len(asked) != 0 {
		t.Fatalf("new connections were asked Alive: %v", asked)
	}
	p.Put(a, true)
	p.Put(b, true) // taken first
	gone[b] = true
	if got := mustGet(t, p); got != a || !b.closed.Load() || dials.Load() != 2 {
		t.Fatalf("lent %d, want %d; closed the one found closed %v; %d dials", got.id, a.id, b.closed.Load(), dials.Load())
	}
	if len(asked) != 2 || asked[0] != b.id || asked[1] != a.id {
		t.Fatalf("asked %v, want %d then %d", asked, b.id, a.id)
	}
	p.Put(a, true)
	gone[a] = true
	if got := mustGet(t, p); got == a || !a.closed.Load() || dials.Load() != 3 {
		t.Fatalf("lent the one found closed %v, closed %v, %d dials; want a new one", got == a, a.closed.Load(), dials.Load())
	}
	c := mustGet(t, p)
	p.Put(c, true)
	clk.Advance(5 * time.Second)
	asked = nil
	if got := mustGet(t, p); got != c || len(asked) != 0 || checks != 1 {
		t.Fatalf("a connection due for a Check: lent %d (want %d), asked Alive %v, %d checks", got.id, c.id, asked, checks)
	}
}

// TestNotExhaustedWhenOneCameBack: a Get whose context ends after a
// connection came back to the pool, as it was about to wait, gets the
// context's error, or the connection, but never the error that says
// every connection is lent: one was idle in the pool.
func TestNotExhaustedWhenOneCameBack(t *testing.T) {
	p, _ := newTestPool(1)
	a, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Get chooses at random between the ended context and the connection
	// come back, both ready as it looks: enough rounds see both.
	for round := range 64 {
		ctx, cancel := context.WithCancel(context.Background())
		got, err := p.Get(onWait(ctx, func() {
			p.Put(a, true)
			cancel()
		}))
		cancel()
		var ee *ExhaustedError
		if errors.As(err, &ee) {
			t.Fatalf("round %d: %v, with the one connection idle in the pool", round, err)
		}
		if err == nil {
			a = got
			continue
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: %v, want the connection or context.Canceled", round, err)
		}
		if a, err = p.Get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
