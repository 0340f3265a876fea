package pool

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestProbeStress: many Gets, under contexts that end early or not,
// meet dials that succeed, fail, or end with their caller's context, in
// any order, and Puts that keep or drop connections. Every Get returns,
// with a connection or an error of the kinds the pool documents (a
// dial's failure reaches only a Get whose context had not ended, and no
// Get gets another's context error), and once all are back no Get is
// counted waiting and every connection is idle. Bounded in count and in
// time.
func TestProbeStress(t *testing.T) {
	const (
		size    = 4
		workers = 24
		rounds  = 300
	)
	refused := errors.New("refused")
	var dials, failing atomic.Int64
	p := New(Config[*testConn]{Size: size, MaxIdle: size / 2, Dial: func(ctx context.Context) (*testConn, error) {
		id := dials.Add(1)
		d := time.Duration(rand.IntN(200)) * time.Microsecond
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if failing.Load()%3 == 1 && rand.IntN(2) == 0 {
			return nil, refused
		}
		return &testConn{id: int(id)}, nil
	}})
	stop := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	var bad atomic.Pointer[string]
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds && time.Now().Before(stop) && bad.Load() == nil; i++ {
				if w == 0 && i%20 == 0 {
					failing.Add(1)
				}
				ctx, cancel := context.WithCancel(context.Background())
				switch rand.IntN(4) {
				case 0:
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(rand.IntN(300))*time.Microsecond)
				case 1:
					go func() { time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond); cancel() }()
				}
				c, err := p.Get(ctx)
				ended := ctx.Err() != nil
				cancel()
				var ee *ExhaustedError
				switch {
				case err == nil:
					c.busy.Store(true)
					time.Sleep(time.Duration(rand.IntN(100)) * time.Microsecond)
					c.busy.Store(false)
					p.Put(c, rand.IntN(4) != 0)
				case errors.Is(err, refused):
				case errors.As(err, &ee), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
					if !ended {
						msg := "a Get whose context had not ended returned " + err.Error()
						bad.CompareAndSwap(nil, &msg)
					}
				default:
					msg := "Get = " + err.Error()
					bad.CompareAndSwap(nil, &msg)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("Gets still running after 2m: %d waiting for a dial", p.Waiting())
	}
	if m := bad.Load(); m != nil {
		t.Fatal(*m)
	}
	if p.Waiting() != 0 {
		t.Errorf("%d Gets counted waiting with none left", p.Waiting())
	}
	if open, idle := p.Stats(); open != idle {
		t.Errorf("%d connections open, %d idle, with none lent: slots leaked", open, idle)
	}
	p.Close()
	if open, _ := p.Stats(); open != 0 {
		t.Errorf("%d connections open after Close", open)
	}
	t.Logf("%d dials", dials.Load())
}

// TestProbeClose: a pool closed while Gets dial, and others wait for
// those dials, ends every Get, and its connections are all closed once
// the lent ones are back. Bounded in count and in time.
func TestProbeClose(t *testing.T) {
	const (
		size    = 3
		workers = 16
		rounds  = 1000
	)
	var dials atomic.Int64
	p := New(Config[*testConn]{Size: size, MaxIdle: 1, Dial: func(ctx context.Context) (*testConn, error) {
		id := dials.Add(1)
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		if rand.IntN(3) == 0 {
			return nil, errors.New("refused")
		}
		return &testConn{id: int(id)}, nil
	}})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				c, err := p.Get(context.Background())
				if errors.Is(err, ErrClosed) {
					return
				}
				if err == nil {
					p.Put(c, rand.IntN(2) == 0)
				}
			}
		}()
	}
	waitUntil(t, "some dials", func() bool { return dials.Load() >= 20 })
	p.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("Gets still running 2m after Close: %d waiting for a dial", p.Waiting())
	}
	if open, _ := p.Stats(); open != 0 || p.Waiting() != 0 {
		t.Errorf("after Close: %d open, %d waiting; want none", open, p.Waiting())
	}
}
