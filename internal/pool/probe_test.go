package pool

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitUntil checks cond until it holds, failing the test after a
// generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gatedPool is a pool whose dials wait for release, then return what
// outcome says; it counts them, and how many run at once at most.
type gatedPool struct {
	*Pool[*testConn]
	release          chan struct{}
	dials, now, most atomic.Int64
	fail             atomic.Pointer[error]
}

func newGatedPool(size int) *gatedPool {
	g := &gatedPool{release: make(chan struct{})}
	g.Pool = New(Config[*testConn]{Size: size, MaxIdle: size, Dial: func(ctx context.Context) (*testConn, error) {
		id := g.dials.Add(1)
		cur := g.now.Add(1)
		defer g.now.Add(-1)
		for m := g.most.Load(); cur > m && !g.most.CompareAndSwap(m, cur); m = g.most.Load() {
		}
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e := g.fail.Load(); e != nil {
			return nil, *e
		}
		return &testConn{id: int(id)}, nil
	}})
	return g
}

// getAll starts n Gets at once under ctx; wait returns their errors once
// they have all returned.
func (g *gatedPool) getAll(t *testing.T, ctx context.Context, n int) (wait func() []error) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = g.Get(ctx)
		}()
	}
	return func() []error { wg.Wait(); return errs }
}

// TestDialFailureShared: Gets that would dial while another's dial is in
// flight wait for it and return its error, the very same, rather than
// each dialing.
func TestDialFailureShared(t *testing.T) {
	const n = 50
	g := newGatedPool(n)
	boom := errors.New("refused")
	g.fail.Store(&boom)
	wait := g.getAll(t, context.Background(), n)
	waitUntil(t, "every Get to wait for the first dial", func() bool { return g.dials.Load() == 1 && g.Waiting() == n-1 })
	close(g.release)
	for i, err := range wait() {
		if err != boom {
			t.Fatalf("Get %d = %v, want the dial's own error", i, err)
		}
	}
	if d := g.dials.Load(); d != 1 {
		t.Errorf("%d Gets made %d dials, want 1", n, d)
	}
	if open, _ := g.Stats(); open != 0 || g.Waiting() != 0 {
		t.Errorf("after failed dials: %d open, %d waiting; want none", open, g.Waiting())
	}
}

// TestDialSuccessNotSerialized: once the dial they waited for has
// succeeded, the waiting Gets dial side by side, not one after another.
func TestDialSuccessNotSerialized(t *testing.T) {
	const n = 20
	g := newGatedPool(n)
	first := make(chan struct{})
	g.Pool.cfg.Dial = func(dial func(context.Context) (*testConn, error)) func(context.Context) (*testConn, error) {
		return func(ctx context.Context) (*testConn, error) {
			if g.dials.Load() == 0 {
				// The first dial waits for first, the rest for release.
				g.dials.Add(1)
				<-first
				return &testConn{id: 0}, nil
			}
			return dial(ctx)
		}
	}(g.Pool.cfg.Dial)
	wait := g.getAll(t, context.Background(), n)
	waitUntil(t, "every Get to wait for the first dial", func() bool { return g.Waiting() == n-1 })
	close(first)
	waitUntil(t, "the waiting Gets to dial side by side", func() bool { return g.now.Load() == n-1 })
	close(g.release)
	for i, err := range wait() {
		if err != nil {
			t.Fatalf("Get %d = %v", i, err)
		}
	}
	if open, _ := g.Stats(); open != n {
		t.Errorf("%d connections open, want %d", open, n)
	}
}

// TestDialFailureOfCallerNotShared: a dial that failed because its own
// caller's context ended tells nothing of the server: the Gets that
// waited for it dial again (one of them, the rest waiting for that one).
func TestDialFailureOfCallerNotShared(t *testing.T) {
	const n = 10
	g := newGatedPool(n)
	ctx, cancel := context.WithCancel(context.Background())
	var firstErr error
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		_, firstErr = g.Get(ctx)
	}()
	waitUntil(t, "the first dial", func() bool { return g.dials.Load() == 1 })
	wait := g.getAll(t, context.Background(), n-1)
	waitUntil(t, "the others to wait for it", func() bool { return g.Waiting() == n-1 })
	cancel()
	<-firstDone
	if !errors.Is(firstErr, context.Canceled) {
		t.Fatalf("the cancelled Get = %v, want its context's error", firstErr)
	}
	waitUntil(t, "another dial, the others waiting for it", func() bool { return g.dials.Load() == 2 && g.Waiting() == n-2 })
	close(g.release)
	for i, err := range wait() {
		if err != nil {
			t.Fatalf("Get %d = %v, want a connection", i, err)
		}
	}
}

// TestDialWaitHonoursContext: a Get waiting for another's dial gives up
// when its context ends, and the dial goes on.
func TestDialWaitHonoursContext(t *testing.T) {
	g := newGatedPool(2)
	go g.Get(context.Background())
	waitUntil(t, "the first dial", func() bool { return g.dials.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := g.Get(ctx); done <- err }()
	waitUntil(t, "a Get to wait for it", func() bool { return g.Waiting() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Get = %v, want its context's error", err)
	}
	if g.Waiting() != 0 {
		t.Errorf("%d Gets still counted waiting", g.Waiting())
	}
	close(g.release)
	waitUntil(t, "the first dial to end", func() bool { open, _ := g.Stats(); return open == 1 && g.now.Load() == 0 })
}

// deadlineCtx is a context whose deadline has come while it does not say
// so yet: as a context is between the moment its deadline passes and the
// moment its timer ends it, when a socket's deadline, set from it, may
// already have failed a dial with a timeout.
type deadlineCtx struct{ context.Context }

func (deadlineCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Second), true }

// TestDialTimeoutOfCallerNotShared: a dial that failed with a timeout at
// its own caller's deadline, before that caller's context said it had
// ended, tells nothing of the server either: the Gets that waited for it
// dial again rather than return another caller's timeout.
func TestDialTimeoutOfCallerNotShared(t *testing.T) {
	const n = 5
	g := newGatedPool(n)
	dial := g.Pool.cfg.Dial
	g.Pool.cfg.Dial = func(ctx context.Context) (*testConn, error) {
		c, err := dial(ctx)
		if d, ok := ctx.Deadline(); err == nil && ok && !time.Now().Before(d) {
			return nil, os.ErrDeadlineExceeded // the socket's deadline
		}
		return c, err
	}
	var firstErr error
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		_, firstErr = g.Get(deadlineCtx{context.Background()})
	}()
	waitUntil(t, "the first dial", func() bool { return g.dials.Load() == 1 })
	wait := g.getAll(t, context.Background(), n-1)
	waitUntil(t, "the others to wait for it", func() bool { return g.Waiting() == n-1 })
	close(g.release)
	<-firstDone
	if !errors.Is(firstErr, os.ErrDeadlineExceeded) {
		t.Fatalf("the Get past its deadline = %v, want its dial's timeout", firstErr)
	}
	for i, err := range wait() {
		if err != nil {
			t.Fatalf("Get %d = %v, want a connection: the timeout was another caller's", i, err)
		}
	}
}

// TestDialWaitOnFullPoolIsExhausted: a Get that waits for another's dial
// when that dial holds the pool's last slot waits, in fact, for a full
// pool: if its context ends there, the pool says it was exhausted, as it
// says to a Get that waits with every connection lent, so that the
// Client's error counts the connection being dialed.
func TestDialWaitOnFullPoolIsExhausted(t *testing.T) {
	g := newGatedPool(1)
	defer func() {
		close(g.release)
		waitUntil(t, "the first dial to end", func() bool { return g.now.Load() == 0 })
	}()
	go g.Get(context.Background())
	waitUntil(t, "the first dial", func() bool { return g.dials.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := g.Get(ctx); done <- err }()
	waitUntil(t, "a Get to wait for it", func() bool { return g.Waiting() == 1 })
	cancel()
	err := <-done
	var ee *ExhaustedError
	if !errors.As(err, &ee) || ee.Size != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Get = %v, want an *ExhaustedError of size 1 wrapping context.Canceled", err)
	}
}
