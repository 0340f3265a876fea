package redpipe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// closeRaceWork is one kind of use of a client that TestCloseRacesEveryAPI
// keeps up while the client is closed: it returns the first error it
// meets, or nil once it has done its share.
type closeRaceWork struct {
	name string
	run  func(ctx context.Context, c *Client, key string) error
}

var closeRaceWorks = []closeRaceWork{
	{"Do", func(ctx context.Context, c *Client, key string) error {
		_, err := c.Incr(ctx, key)
		return err
	}},
	{"Pipeline", func(ctx context.Context, c *Client, key string) error {
		_, err := c.Pipeline().Incr(key).Get(key).Exec(ctx)
		return err
	}},
	{"NoTransaction", func(ctx context.Context, c *Client, key string) error {
		_, err := c.Pipeline(NoTransaction).Incr(key).Get(key).Exec(ctx)
		return err
	}},
	{"LargePipeline", func(ctx context.Context, c *Client, key string) error {
		p := c.Pipeline(NoTransaction)
		big := strings.Repeat("v", 1<<10)
		for i := range 400 { // over largePipeline: a connection of its own
			p.Set(key+":"+strconv.Itoa(i), big)
		}
		_, err := p.Exec(ctx)
		return err
	}},
	{"Watch", func(ctx context.Context, c *Client, key string) error {
		tx, err := c.Watch(ctx, key)
		if err != nil {
			return err
		}
		defer tx.Close()
		if _, err := tx.Get(ctx, key); err != nil && !errors.Is(err, ErrNil) {
			return err
		}
		_, err = tx.Multi().Incr(key).Exec(ctx)
		return err
	}},
	{"Transaction", func(ctx context.Context, c *Client, key string) error {
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			tx.Multi().Incr(key)
			return nil
		}, key)
		return err
	}},
	{"Stream", func(ctx context.Context, c *Client, key string) error {
		s := c.Stream(ctx, nil)
		for range 200 {
			s.Do("INCR", key)
		}
		_, err := s.Close(ctx)
		return err
	}},
	{"Blocking", func(ctx context.Context, c *Client, key string) error {
		_, err := c.Do(ctx, "BLPOP", key+":list", "0.01")
		if errors.Is(err, ErrNil) {
			err = nil
		}
		return err
	}},
}

// TestCloseRacesEveryAPI closes a client, on one node and on a cluster,
// while goroutines keep using it in every way it can be used: single
// calls, transactional and plain pipelines, a pipeline large enough for a
// connection of its own, WATCH sessions, the Transaction helper, a Stream
// and a blocking command. Close returns, nothing panics or hangs, every
// call cut short fails with an error that matches ErrClosed, a cut
// transaction says once what became of it, and no goroutine is left
// behind (TestMain).
func TestCloseRacesEveryAPI(t *testing.T) {
	t.Parallel()
	t.Run("node", func(t *testing.T) {
		srv := redistest.Start(t)
		closeRaces(t, 30, func() (*Client, error) { return NewClient(Options{Addr: srv.Addr}) })
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 0)
		closeRaces(t, 10, func() (*Client, error) { return NewClusterClient(ClusterOptions{Addrs: cl.Addrs()}) })
	})
}

// closeRaces is TestCloseRacesEveryAPI's rounds on clients made by dial.
func closeRaces(t *testing.T, rounds int, dial func() (*Client, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deadline := time.Now().Add(15 * time.Second)
	for round := 0; round < rounds && time.Now().Before(deadline); round++ {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			work string
			err  error
		}
		results := make(chan result, len(closeRaceWorks))
		for i, w := range closeRaceWorks {
			key := fmt.Sprintf("{closerace:%d:%d}", round, i) // one slot per goroutine
			go func() {
				for range 200 {
					if err := w.run(ctx, c, key); err != nil {
						results <- result{w.name, err}
						return
					}
				}
				results <- result{w.name, nil}
			}()
		}
		time.Sleep(time.Duration(rand.N(3000)) * time.Microsecond)
		closed := make(chan error, 1)
		go func() { closed <- c.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: Close: %v", round, err)
			}
		case <-ctx.Done():
			t.Fatalf("round %d: Close did not return", round)
		}
		for range closeRaceWorks {
			select {
			case r := <-results:
				if r.err != nil && !errors.Is(r.err, ErrClosed) {
					t.Errorf("round %d: %s cut short by Close: %v, want ErrClosed", round, r.work, r.err)
				}
				if r.err != nil && strings.Count(r.err.Error(), "transaction") > 1 {
					t.Errorf("round %d: %s: %q says what became of the transaction more than once", round, r.work, r.err)
				}
			case <-ctx.Done():
				t.Fatalf("round %d: a call did not return after Close", round)
			}
		}
	}
}

// TestCloseTwiceWaitsForTheFirst closes a client twice at once while a
// dial of its shared connection is held up in the Dialer: the second Close
// returns no sooner than the first, which waits for that dial, so that
// neither returns while a goroutine of the client is still running.
func TestCloseTwiceWaitsForTheFirst(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	c, err := NewClient(Options{Addr: srv.Addr, Dialer: func(_ context.Context, network, addr string) (net.Conn, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release // a Dialer that does not heed its context
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}})
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, "PING")
		called <- err
	}()
	<-entered
	first, second := make(chan struct{}), make(chan struct{})
	go func() { c.Close(); close(first) }()
	for i := 0; i < 1000 && !c.isClosed(); i++ {
		time.Sleep(time.Millisecond)
	}
	if !c.isClosed() {
		close(release)
		t.Fatal("the first Close did not begin")
	}
	go func() { c.Close(); close(second) }()
	select {
	case <-second:
		t.Error("the second Close returned while the first still waited for a dial")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	for _, done := range []chan struct{}{first, second} {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("Close did not return")
		}
	}
	if err := <-called; !errors.Is(err, ErrClosed) {
		t.Errorf("call cut short by Close: %v, want ErrClosed", err)
	}
}

// TestCloseEndsDedicatedDial closes a client while a call's dial of a
// dedicated connection (WATCH) is held up in a Dialer that heeds its
// context. That dial ran under the caller's context alone: Close returned
// with the Dialer still running, and the call went on waiting until
// DialTimeout. Close now ends the dial, waits for it, and the call fails
// with ErrClosed.
func TestCloseEndsDedicatedDial(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var hold, returned atomic.Bool
	entered := make(chan struct{}, 1)
	c, err := NewClient(Options{Addr: srv.Addr, DialTimeout: 10 * time.Minute,
		Dialer: func(dctx context.Context, network, addr string) (net.Conn, error) {
			if !hold.Load() {
				var d net.Dialer
				return d.DialContext(dctx, network, addr)
			}
			defer returned.Store(true)
			select {
			case entered <- struct{}{}:
			default:
			}
			<-dctx.Done()
			return nil, dctx.Err()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do(ctx, "PING"); err != nil {
		t.Fatal(err)
	}
	hold.Store(true)
	called := make(chan error, 1)
	go func() {
		tx, err := c.Watch(ctx, "k")
		if err == nil {
			tx.Close()
		}
		called <- err
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("Watch did not dial")
	}
	c.Close()
	if !returned.Load() {
		t.Error("Close returned while the Dialer of a call's dial was still running")
	}
	select {
	case err := <-called:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Watch cut short by Close = %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Watch still dialing long after Close (DialTimeout is 10m)")
	}
}
