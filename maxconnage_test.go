package redpipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/redistest"
)

// TestMaxConnAgeTinyNoCallFails: with a MaxConnAge short enough that the
// shared connection is replaced over and over, often while a call is
// between taking it and joining its line, no plain call or pipeline
// fails, with no retries allowed, and every acknowledged INCR is counted
// by the server once.
func TestMaxConnAgeTinyNoCallFails(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	for _, age := range []time.Duration{time.Millisecond, 3 * time.Millisecond} {
		t.Run(age.String(), func(t *testing.T) {
			c, err := NewClient(Options{Addr: s.Addr, MaxRetries: -1, MaxConnAge: age})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := ctxT(t)
			key := "tiny-age-" + age.String()
			calls := callers(t, 8, 700*time.Millisecond, 200_000, func(g, _ int) (int64, error) {
				if g%2 == 0 {
					_, err := c.Incr(ctx, key)
					return 1, err
				}
				_, err := c.Pipeline(NoTransaction).Incr(key).Incr(key).Exec(ctx)
				return 2, err
			})
			if got, want := s.MustDo(t, "GET", key), fmt.Sprint(calls); got != want {
				t.Errorf("INCRs on the server = %v; want %s, the calls acknowledged", got, want)
			}
		})
	}
}

// TestClusterMaxConnAgeTinyNoCallFails: the clients of a cluster's nodes
// replace their shared connections at MaxConnAge as a single server's
// client does. With a MaxConnAge short enough that they are replaced
// over and over, no plain call, no pipeline spread over the masters and
// no large one, whose parts go out while it is routed, fails, with no
// retries allowed, and every acknowledged INCR is counted once.
func TestClusterMaxConnAgeTinyNoCallFails(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), Options: Options{MaxRetries: -1, MaxConnAge: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	keys := testKeys(3000)
	calls := callers(t, 6, 1500*time.Millisecond, 100_000, func(g, i int) (int64, error) {
		switch g % 3 {
		case 0:
			_, err := c.Incr(ctx, keys[i%len(keys)])
			return 1, err
		case 1:
			_, err := c.Pipeline(NoTransaction).Incr(keys[i%len(keys)]).Incr(keys[(i+7)%len(keys)]).Incr(keys[(i+13)%len(keys)]).Exec(ctx)
			return 3, err
		}
		p := c.Pipeline(NoTransaction)
		for _, k := range keys {
			p.Incr(k)
		}
		_, err := p.Exec(ctx)
		return int64(len(keys)), err
	})
	var sum int64
	for _, k := range keys {
		v, err := c.Get(ctx, k)
		if err != nil && !errors.Is(err, ErrNil) {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		sum += n
	}
	if sum != calls {
		t.Errorf("INCRs on the servers = %d; want %d, the calls acknowledged", sum, calls)
	}
}

// TestSharedConnectionReplacedTwiceBeforeCall: a call takes the shared
// connection, which is replaced (MaxConnAge ran out, and the new one is
// ready) and closed before the call joins its line; the call takes the
// new one, and that one too is replaced before the call joins its line.
// Not sent either time, the call goes on the connection that replaced
// the last, with no retries allowed: the replacements are the client's
// own doing. It failed, the second time, with the replacement's error.
func TestSharedConnectionReplacedTwiceBeforeCall(t *testing.T) {
	s := redistest.Start(t)
	c, err := NewClient(Options{Addr: s.Addr, MaxRetries: -1, MaxConnAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	replace := 0
	sharedTaken.set(func(cc *Client, cn *conn.Conn) {
		if cc != c || replace == 0 {
			return
		}
		replace--
		cn.SetAged(true) // as the aging timer does at MaxConnAge
		if _, err := c.sharedConn(ctx); err != nil {
			t.Error(err)
			return
		}
		for deadline := time.Now().Add(5 * time.Second); cn.Alive(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("the aged connection was not closed once idle")
				return
			}
		}
	})
	defer sharedTaken.set(nil)

	replace = 2
	if n, err := c.Incr(ctx, "replaced-twice"); err != nil || n != 1 {
		t.Errorf("INCR = %d, %v; want 1", n, err)
	}
	replace = 2
	if r, err := c.Pipeline(NoTransaction).Incr("replaced-twice").Incr("replaced-twice").Exec(ctx); err != nil || len(r) != 2 {
		t.Errorf("plain pipeline = %v, %v; want two replies", r, err)
	}
	replace = 2
	if r, err := c.Pipeline().Incr("replaced-twice").Exec(ctx); err != nil || len(r) != 1 {
		t.Errorf("transaction = %v, %v; want one reply", r, err)
	}
	if got := s.MustDo(t, "GET", "replaced-twice"); got != "4" {
		t.Errorf("replaced-twice = %v; want 4, each INCR run once", got)
	}
}

// TestMaxConnAgeCloseDuringReplacement: Close comes while the dial that
// replaces an aged shared connection is in flight, with a Dialer that
// heeds its context and with one that returns a connection after Close
// began. Close returns, the calls after it fail with ErrClosed, and no
// connection of the client is left open on the server.
func TestMaxConnAgeCloseDuringReplacement(t *testing.T) {
	s := redistest.Start(t)
	for _, heeds := range []bool{true, false} {
		t.Run(fmt.Sprintf("heeds context %v", heeds), func(t *testing.T) {
			name := fmt.Sprintf("close-replacing-%v", heeds)
			var nd net.Dialer
			var dials atomic.Int64
			entered := make(chan struct{})
			release := make(chan struct{})
			c, err := NewClient(Options{Addr: s.Addr, ClientName: name, MaxRetries: -1, MaxConnAge: 5 * time.Millisecond,
				Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
					if dials.Add(1) == 2 {
						close(entered)
						if heeds {
							<-ctx.Done()
							return nil, ctx.Err()
						}
						<-release
						return nd.DialContext(context.Background(), network, addr)
					}
					return nd.DialContext(ctx, network, addr)
				}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t)
			for i := 0; ; i++ {
				if _, err := c.Incr(ctx, name); err != nil {
					t.Fatalf("INCR %d: %v", i, err)
				}
				select {
				case <-entered:
				case <-time.After(time.Millisecond):
					if i < 10_000 {
						continue
					}
					t.Fatal("no dial replaced the aged connection")
				}
				break
			}
			closed := make(chan error, 1)
			go func() { closed <- c.Close() }()
			if !heeds {
				time.Sleep(20 * time.Millisecond)
				close(release)
			}
			select {
			case err := <-closed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return")
			}
			if _, err := c.Incr(ctx, name); !errors.Is(err, ErrClosed) {
				t.Errorf("INCR after Close = %v; want ErrClosed", err)
			}
			waitForServer(t, ctx, "the client's connections to close", func() (bool, string) {
				open := namedClientAddrs(t, s, name)
				return len(open) == 0, fmt.Sprint(open)
			})
		})
	}
}

// TestMaxConnAgeCutsHonest: the shared connection is replaced every few
// milliseconds while a proxy between client and server cuts every
// connection now and then, some as they are replaced. With no retries
// allowed, calls fail, but none that says it was not sent ran: the
// server's count of INCRs lies between those acknowledged and those plus
// the ones whose outcome is unknown.
func TestMaxConnAgeCutsHonest(t *testing.T) {
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr)
	c, err := NewClient(Options{Addr: p.Addr, MaxRetries: -1, MaxConnAge: 3 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	const key = "cuts-honest"
	var acked, unknown, notSent atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(800 * time.Millisecond)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200_000 && time.Now().Before(end); i++ {
				var err error
				n := int64(1 + g%2)
				if g%2 == 0 {
					_, err = c.Incr(ctx, key)
				} else {
					_, err = c.Pipeline(NoTransaction).Incr(key).Incr(key).Exec(ctx)
				}
				switch {
				case err == nil:
					acked.Add(n)
				case OutcomeOf(err) == OutcomeNotSent:
					notSent.Add(n)
				default:
					unknown.Add(n)
				}
			}
		}()
	}
	for k := 0; k < 100 && time.Now().Before(end); k++ {
		time.Sleep(time.Duration(10+k%7*5) * time.Millisecond)
		p.Cut(redistest.CutMode(k % 2))
	}
	wg.Wait()
	got, _ := strconv.ParseInt(fmt.Sprint(s.MustDo(t, "GET", key)), 10, 64)
	t.Logf("acknowledged %d, unknown %d, not sent %d; on the server %d", acked.Load(), unknown.Load(), notSent.Load(), got)
	if got < acked.Load() || got > acked.Load()+unknown.Load() {
		t.Errorf("INCRs on the server = %d; want from %d, those acknowledged, to %d, with those of unknown outcome (%d said not sent)",
			got, acked.Load(), acked.Load()+unknown.Load(), notSent.Load())
	}
}

// TestMaxConnAgeNoTimerAfterClose: a dial of the shared connection that
// succeeded just as Close began records its connection once Close has
// stopped the aging timer. It arms no new one: a timer armed then was
// left to fire after Close, marking a closed connection.
func TestMaxConnAgeNoTimerAfterClose(t *testing.T) {
	s := redistest.Start(t)
	c, err := NewClient(Options{Addr: s.Addr, MaxRetries: -1, MaxConnAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	var once sync.Once
	sharedDialed.set(func(cc *Client) {
		if cc != c {
			return
		}
		once.Do(func() {
			go func() { closed <- c.Close() }()
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
				c.dialMu.Lock()
				stopped := c.noDials
				c.dialMu.Unlock()
				if stopped {
					return
				}
				if time.Now().After(deadline) {
					t.Error("Close did not stop the dials")
					return
				}
			}
		})
	})
	defer sharedDialed.set(nil)
	c.shared.Load().SetAged(true) // as the aging timer does at MaxConnAge
	if _, err := c.sharedConn(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	c.dialMu.Lock()
	aging := c.aging
	c.dialMu.Unlock()
	if aging != nil {
		aging.Stop()
		t.Error("an aging timer was armed after Close")
	}
}

// callers runs n callers at once, each calling call(g, i) for its calls
// i = 0, 1, ... until d has passed or it made limit calls, and stopping
// at the first that fails, which fails the test. It returns the sum of
// what the calls that succeeded returned: the INCRs they acknowledged.
func callers(t *testing.T, n int, d time.Duration, limit int, call func(g, i int) (int64, error)) int64 {
	t.Helper()
	var acked atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	end := time.Now().Add(d)
	for g := range n {
		wg.Go(func() {
			for i := 0; i < limit && time.Now().Before(end); i++ {
				k, err := call(g, i)
				if err != nil {
					errs <- fmt.Errorf("caller %d, call %d: %w", g, i, err)
					return
				}
				acked.Add(k)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return acked.Load()
}
