package redpipe

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// lentTotal is how many of c's pooled connections its counters say are lent.
func lentTotal(c *Client) (n int64) {
	for u := range lendUses {
		n += c.lent[u].Load()
	}
	return n
}

// TestLendCountsReturnToZero: whatever way a pooled connection is lent and
// given back (sessions closed, reset or cut on a blocking command,
// Transactions whose fn fails or panics, blocking commands and large
// pipelines cut by their context, Streams that fail or whose each panics,
// waits that end on an exhausted pool), the counts by use return to 0
// once everything is given back, so the exhausted pool's error tells the
// truth.
func TestLendCountsReturnToZero(t *testing.T) {
	srv := redistest.Start(t)
	c, err := NewClient(Options{Addr: srv.Addr, PoolSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	big := strings.Repeat("x", 64<<10)
	ops := []func(context.Context){
		func(ctx context.Context) { // a session closed
			if tx, err := c.Watch(ctx, "k"); err == nil {
				tx.Do(ctx, "GET", "k")
				tx.Close()
			}
		},
		func(ctx context.Context) { // Transactions whose fn fails or panics
			c.Transaction(ctx, func(tx *Tx) error { return errors.New("no") }, "k")
			func() {
				defer func() { recover() }()
				c.Transaction(ctx, func(tx *Tx) error { panic("fn") }, "k")
			}()
		},
		func(ctx context.Context) { // a blocking command cut by its context
			short, stop := context.WithTimeout(ctx, 5*time.Millisecond)
			defer stop()
			c.Do(short, "BLPOP", "nolist", 0)
		},
		func(ctx context.Context) { // a large pipeline cut by its context
			short, stop := context.WithTimeout(ctx, 2*time.Millisecond)
			defer stop()
			p := c.Pipeline(NoTransaction)
			for range 8 {
				p.Do("ECHO", big)
			}
			p.Exec(short)
		},
		func(ctx context.Context) { // a Stream whose each panics, and one cut
			func() {
				defer func() { recover() }()
				st := c.Stream(ctx, func(int, Value) error { panic("each") })
				defer st.Close(ctx)
				for range 8 {
					st.Do("ECHO", big)
				}
			}()
			short, stop := context.WithTimeout(ctx, 2*time.Millisecond)
			defer stop()
			st := c.Stream(short, func(int, Value) error { return nil })
			for range 8 {
				st.Do("ECHO", big)
			}
			st.Close(short)
		},
		func(ctx context.Context) { // a session's blocking command cut, then Reset
			tx, err := c.Watch(ctx, "k")
			if err != nil {
				return
			}
			defer tx.Close()
			short, stop := context.WithTimeout(ctx, 5*time.Millisecond)
			tx.Do(short, "BLPOP", "nolist", 0)
			stop()
			tx.Reset()
			tx.Do(ctx, "GET", "k")
		},
		func(ctx context.Context) { // a wait that may find the pool exhausted
			short, stop := context.WithTimeout(ctx, time.Millisecond)
			defer stop()
			if tx, err := c.Watch(short, "k"); err == nil {
				tx.Close()
			}
		},
	}
	const workers, rounds = 6, 30
	deadline := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds && time.Now().Before(deadline); i++ {
				ops[(w+i)%len(ops)](ctx)
			}
		}()
	}
	wg.Wait()
	for u := range lendUses {
		if n := c.lent[u].Load(); n != 0 {
			t.Errorf("%d counted as lent to %s once everything is given back", n, lendNames[u])
		}
	}
	if open, idle := c.pool.Stats(); open != idle {
		t.Errorf("pool: %d open, %d idle once everything is given back", open, idle)
	}
}

// TestLendCountsAfterClose: connections lent when the Client is closed
// are counted out as they are given back.
func TestLendCountsAfterClose(t *testing.T) {
	srv := redistest.Start(t)
	c, err := NewClient(Options{Addr: srv.Addr, PoolSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	st := c.Stream(ctx, func(int, Value) error { return nil })
	for range 100 {
		st.Do("ECHO", strings.Repeat("x", 1<<10))
	}
	if n := lentTotal(c); n != 2 {
		t.Fatalf("%d counted as lent, want 2", n)
	}
	c.Close()
	tx.Close()
	st.Close(ctx)
	if n := lentTotal(c); n != 0 {
		t.Fatalf("%d counted as lent once given back after Close", n)
	}
}

// TestLendCountsReturnToZeroCluster: as TestLendCountsReturnToZero, on the
// node clients of a cluster, whose Streams and pipelines lend one
// connection per node.
func TestLendCountsReturnToZeroCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{PoolSize: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	big := strings.Repeat("x", 64<<10)
	keys := []string{"a", "b", "c", "d", "e", "f"}
	ops := []func(context.Context, int){
		func(ctx context.Context, i int) {
			if tx, err := c.Watch(ctx, keys[i%len(keys)]); err == nil {
				tx.Do(ctx, "GET", keys[i%len(keys)])
				tx.Close()
			}
		},
		func(ctx context.Context, i int) {
			func() {
				defer func() { recover() }()
				c.Transaction(ctx, func(tx *Tx) error { panic("fn") }, keys[i%len(keys)])
			}()
		},
		func(ctx context.Context, i int) {
			short, stop := context.WithTimeout(ctx, 5*time.Millisecond)
			defer stop()
			c.Do(short, "BLPOP", keys[i%len(keys)]+"list", 0)
		},
		func(ctx context.Context, i int) {
			short, stop := context.WithTimeout(ctx, 3*time.Millisecond)
			defer stop()
			p := c.Pipeline(NoTransaction)
			for j := range 24 {
				p.Do("SET", keys[j%len(keys)], big)
			}
			p.Exec(short)
		},
		func(ctx context.Context, i int) {
			func() {
				defer func() { recover() }()
				st := c.Stream(ctx, func(int, Value) error { panic("each") })
				defer st.Close(ctx)
				for j := range 24 {
					st.Do("SET", keys[j%len(keys)], big)
				}
			}()
			short, stop := context.WithTimeout(ctx, 3*time.Millisecond)
			defer stop()
			st := c.Stream(short, func(int, Value) error { return nil })
			for j := range 24 {
				st.Do("SET", keys[j%len(keys)], big)
			}
			st.Close(short)
		},
	}
	const workers, rounds = 6, 25
	deadline := time.Now().Add(40 * time.Second)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds && time.Now().Before(deadline); i++ {
				ops[(w+i)%len(ops)](ctx, w+i)
			}
		}()
	}
	wg.Wait()
	err = c.ForEachMaster(ctx, func(_ context.Context, node *Client) error {
		for u := range lendUses {
			if n := node.lent[u].Load(); n != 0 {
				t.Errorf("node %s: %d counted as lent to %s once everything is given back", node.opt.Addr, n, lendNames[u])
			}
		}
		if open, idle := node.pool.Stats(); open != idle {
			t.Errorf("node %s: pool: %d open, %d idle once everything is given back", node.opt.Addr, open, idle)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
