package redpipe

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/redistest"
)

// The ForEachMaster tests share one cluster of three masters, run in turn.
func TestForEachMasterCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Run("EachMasterOnce", func(t *testing.T) { testForEachMasterOnce(t, cl, c) })
	t.Run("InfoAndScan", func(t *testing.T) { testForEachMasterInfoAndScan(t, cl, c) })
	t.Run("Errors", func(t *testing.T) { testForEachMasterErrors(t, cl, c) })
	t.Run("Outcome", func(t *testing.T) { testForEachMasterOutcome(t, cl, c) })
	t.Run("NoRefreshForRefusals", func(t *testing.T) { testForEachMasterNoRefresh(t, c) })
	t.Run("MovedNotFollowed", func(t *testing.T) { testForEachMasterMoved(t, cl, c) })
	t.Run("CloseRefused", func(t *testing.T) { testForEachMasterCloseRefused(t, c) })
	t.Run("Nested", func(t *testing.T) { testForEachMasterNested(t, cl, c) })
	t.Run("Misuse", func(t *testing.T) { testForEachMasterMisuse(t, c) })
	t.Run("Decoders", func(t *testing.T) { testForEachMasterDecoders(t, c) })
	t.Run("Panic", func(t *testing.T) { testForEachMasterPanic(t, c) })
	t.Run("Goexit", func(t *testing.T) { testForEachMasterGoexit(t, c) })
	t.Run("Sessions", func(t *testing.T) { testForEachMasterSessions(t, c) })
	t.Run("AfterClose", func(t *testing.T) { testForEachMasterAfterClose(t, cl) })
}

func masterAddrs(cl *redistest.Cluster) []string {
	var addrs []string
	for _, m := range cl.Masters {
		addrs = append(addrs, m.Addr)
	}
	slices.Sort(addrs)
	return addrs
}

// within fails the test if f does not return within d: a call that
// deadlocks fails rather than hangs.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// fn is called once per master, with a Client of that master, and the
// calls run at the same time: each waits here for all the others.
func testForEachMasterOnce(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	var (
		mu    sync.Mutex
		addrs []string
	)
	arrived := make(chan struct{}, len(cl.Masters))
	all := make(chan struct{})
	var once sync.Once
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		if node == c || node.cluster != nil {
			return errors.New("fn got the cluster Client, not a node's")
		}
		mu.Lock()
		addrs = append(addrs, node.Options().Addr)
		mu.Unlock()
		arrived <- struct{}{}
		if len(arrived) == len(cl.Masters) {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
		case <-time.After(5 * time.Second):
			return errors.New("the other masters' calls did not run meanwhile")
		}
		role, err := node.Role(ctx)
		if err != nil {
			return err
		}
		if r, _ := role.Slice(); len(r) == 0 || r[0].String() != "master" {
			return fmt.Errorf("ROLE = %v", role)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(addrs)
	if want := masterAddrs(cl); !slices.Equal(addrs, want) {
		t.Errorf("fn got the masters %v, want each of %v once", addrs, want)
	}
}

// INFO and SCAN, refused on the cluster Client, run on each master, and a
// SCAN of every master finds every key once, on the master of its slot.
func testForEachMasterInfoAndScan(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 500
	p := c.Pipeline(NoTransaction)
	for i := range n {
		p.Set("scan:"+strconv.Itoa(i), i)
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		where = map[string][]string{} // key -> the masters whose SCAN returned it
		sizes int64
	)
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		addr := node.Options().Addr
		info, err := node.Info(ctx, "server")
		if err != nil {
			return err
		}
		_, port, _ := strings.Cut(addr, ":")
		if !strings.Contains(info, "tcp_port:"+port+"\r\n") {
			return fmt.Errorf("INFO server of %s does not give its port:\n%s", addr, info)
		}
		size, err := node.DBSize(ctx)
		if err != nil {
			return err
		}
		seen := map[string]bool{} // one server's SCAN may return a key twice
		for cursor := int64(0); ; {
			v, err := node.Scan(ctx, cursor, "MATCH", "scan:*", "COUNT", 50)
			if err != nil {
				return err
			}
			parts, err := v.Slice()
			if err != nil || len(parts) != 2 {
				return fmt.Errorf("SCAN reply %v", v)
			}
			keys, err := parts[1].Strings()
			if err != nil {
				return err
			}
			for _, k := range keys {
				seen[k] = true
			}
			if cursor, err = parts[0].Int64(); err != nil {
				return err
			}
			if cursor == 0 {
				break
			}
		}
		mu.Lock()
		defer mu.Unlock()
		sizes += size
		for k := range seen {
			where[k] = append(where[k], addr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if sizes != n {
		t.Errorf("the masters' DBSIZEs sum to %d, want %d", sizes, n)
	}
	if len(where) != n {
		t.Errorf("SCAN over the masters found %d keys, want %d", len(where), n)
	}
	for i := range n {
		k := "scan:" + strconv.Itoa(i)
		owner, err := cl.SlotOwner(int(hashslot.Slot(k)))
		if err != nil {
			t.Fatal(err)
		}
		if got := where[k]; len(got) != 1 || got[0] != owner.Addr {
			t.Fatalf("key %s found on %v, want on its slot's master %s alone", k, got, owner.Addr)
		}
	}
}

type nodeTestError struct{ addr string }

func (e *nodeTestError) Error() string { return "test failure of " + e.addr }

// The failures of two masters are both reported, each with its address,
// and errors.Is and errors.As reach each.
func testForEachMasterErrors(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	addrs := masterAddrs(cl)
	errFirst := errors.New("the first master failed")
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		switch node.Options().Addr {
		case addrs[0]:
			return fmt.Errorf("wrapped: %w", errFirst)
		case addrs[1]:
			return &nodeTestError{addr: addrs[1]}
		}
		_, err := node.Do(ctx, "CONFIG", "GET", "maxmemory")
		return err
	})
	if err == nil {
		t.Fatal("ForEachMaster = nil, want the failures of two masters")
	}
	if !errors.Is(err, errFirst) {
		t.Errorf("err = %v, does not match the first master's failure", err)
	}
	var ne *nodeTestError
	if !errors.As(err, &ne) || ne.addr != addrs[1] {
		t.Errorf("err = %v, does not reach the second master's *nodeTestError", err)
	}
	msg := err.Error()
	for _, want := range []string{addrs[0] + ": wrapped: the first master failed", addrs[1] + ": test failure of"} {
		if !strings.Contains(msg, want) {
			t.Errorf("err = %q, want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, addrs[2]) {
		t.Errorf("err = %q names %s, which succeeded", msg, addrs[2])
	}

	// A server's error reply too.
	err = c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		_, err := node.Do(ctx, "CONFIG", "GET")
		return err
	})
	var ae *ArityError
	if !errors.As(err, &ae) || strings.Count(err.Error(), "wrong number of arguments") != len(addrs) {
		t.Errorf("CONFIG GET with no parameter on every master = %v, want one *ArityError per master", err)
	}
}

// OutcomeOf tells of the calls as a whole: a certain outcome only when
// every call failed with one, unknown as soon as a call ran (returned nil)
// or failed with an unknown outcome, whatever the failures of the others
// say; errors.Is still reaches each failure.
func testForEachMasterOutcome(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	addrs := masterAddrs(cl)
	notApplied := func() error { return fmt.Errorf("fn gave up: %w", ErrNotApplied) }
	notSent := func(ctx context.Context, node *Client) error {
		_, err := node.Do(ctx, "GET") // an *ArityError: nothing sent
		return err
	}
	// ran writes a key of the node's own slots, which it certainly runs.
	ran := func(ctx context.Context, node *Client) error {
		for slot := range hashslot.Count {
			if c.cluster.owner(slot) == node {
				return node.Set(ctx, keyIn(slot, "outcome:"), node.Options().Addr)
			}
		}
		return fmt.Errorf("%s serves no slot", node.Options().Addr)
	}
	unknown := errors.New("lost track of what ran")
	watched := func(context.Context, *Client) error { return fmt.Errorf("fn's transaction: %w", ErrWatch) }
	cases := []struct {
		name string
		fns  [3]func(ctx context.Context, node *Client) error // by master, in the order of addrs
		want Outcome
	}{
		{"not applied on one, ran on the others",
			[3]func(context.Context, *Client) error{
				func(context.Context, *Client) error { return notApplied() }, ran, ran},
			OutcomeUnknown},
		{"not sent on one, ran on the others",
			[3]func(context.Context, *Client) error{notSent, ran, ran},
			OutcomeUnknown},
		{"not sent on one, unknown on another",
			[3]func(context.Context, *Client) error{notSent,
				func(context.Context, *Client) error { return unknown }, notSent},
			OutcomeUnknown},
		{"not sent on one, not applied on the others",
			[3]func(context.Context, *Client) error{notSent,
				func(context.Context, *Client) error { return notApplied() },
				func(context.Context, *Client) error { return notApplied() }},
			OutcomeNotApplied},
		{"not sent on every one",
			[3]func(context.Context, *Client) error{notSent, notSent, notSent},
			OutcomeNotSent},
		{"watch conflict on one, ran on the others",
			[3]func(context.Context, *Client) error{ran, watched, ran},
			OutcomeUnknown},
		{"watch conflict on every one",
			[3]func(context.Context, *Client) error{watched, watched, watched},
			OutcomeNotApplied},
	}
	for _, tc := range cases {
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
			return tc.fns[slices.Index(addrs, node.Options().Addr)](ctx, node)
		})
		if err == nil {
			t.Errorf("%s: ForEachMaster = nil, want the failures", tc.name)
			continue
		}
		if got := OutcomeOf(err); got != tc.want {
			t.Errorf("%s: OutcomeOf = %v, want %v (%v)", tc.name, got, tc.want, err)
		}
		if got, want := SafeToRetry(err), tc.want != OutcomeUnknown; got != want {
			t.Errorf("%s: SafeToRetry = %v, want %v", tc.name, got, want)
		}
		// What says nothing was applied holds of the whole only when the
		// outcome does.
		if got, want := errors.Is(err, ErrNotApplied), tc.want == OutcomeNotApplied; got != want {
			t.Errorf("%s: errors.Is(err, ErrNotApplied) = %v, want %v (%v)", tc.name, got, want, err)
		}
		if got, want := errors.Is(err, ErrWatch), tc.want == OutcomeNotApplied && strings.Contains(tc.name, "watch"); got != want {
			t.Errorf("%s: errors.Is(err, ErrWatch) = %v, want %v (%v)", tc.name, got, want, err)
		}
		var ae *ArityError
		if strings.Contains(tc.name, "not sent") && !errors.As(err, &ae) {
			t.Errorf("%s: err = %v, errors.As does not reach the *ArityError of a call not sent", tc.name, err)
		}
		if strings.Contains(tc.name, "unknown") && !errors.Is(err, unknown) {
			t.Errorf("%s: err = %v, does not reach fn's own error", tc.name, err)
		}
	}
	// A ForEachMaster within fn counts as that call's failure.
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		if node.Options().Addr != addrs[0] {
			return notSent(ctx, node)
		}
		return c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
			if node.Options().Addr == addrs[0] {
				return notSent(ctx, node)
			}
			return ran(ctx, node)
		})
	})
	if got := OutcomeOf(err); got != OutcomeUnknown {
		t.Errorf("OutcomeOf of a ForEachMaster whose fn's own ran on some masters = %v, want unknown (%v)", got, err)
	}
}

// Failures of fn that say nothing of whether its master can be reached
// (a call the client refused, fn's own context, fn's own error marked not
// sent) start no refresh of the layout: only a master that cannot be
// reached does.
func testForEachMasterNoRefresh(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	if err := c.cluster.ready(ctx); err != nil {
		t.Fatal(err)
	}
	waitRefreshed(t, c.cluster)
	before := c.cluster.refreshes.Load()
	fns := map[string]func(ctx context.Context, node *Client) error{
		"an *ArityError": func(ctx context.Context, node *Client) error {
			_, err := node.Do(ctx, "GET")
			return err
		},
		"an *ArgError": func(ctx context.Context, node *Client) error {
			_, err := node.Do(ctx, "GET", time.Second)
			return err
		},
		"a *UsageError": func(ctx context.Context, node *Client) error {
			_, err := node.Do(ctx, "SELECT", 1)
			return err
		},
		"fn's own ended context": func(ctx context.Context, node *Client) error {
			ended, cancel := context.WithCancel(ctx)
			cancel()
			_, err := node.Ping(ended)
			return err
		},
	}
	for what, fn := range fns {
		err := c.ForEachMaster(ctx, fn)
		if OutcomeOf(err) != OutcomeNotSent {
			t.Fatalf("%s: ForEachMaster = %v, want an error of every call, not sent", what, err)
		}
		waitRefreshed(t, c.cluster)
		if got := c.cluster.refreshes.Load(); got != before {
			t.Errorf("%s on every master started %d layout refreshes, want none", what, got-before)
			before = got
		}
	}
}

// A node's Client talks to its server alone: a key of another master's
// slot gets that master's MOVED as the reply, and nothing is sent on.
func testForEachMasterMoved(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	key := keyIn(16000, "moved:") // the last master's
	owner, err := cl.SlotOwner(16000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Del(ctx, key); err != nil {
		t.Fatal(err)
	}
	owner.MustDo(t, "CONFIG", "RESETSTAT")
	before := c.cluster.refreshes.Load()
	var mu sync.Mutex
	moved := 0
	err = c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		err := node.Set(ctx, key, "from "+node.Options().Addr)
		if node.Options().Addr == owner.Addr {
			return err
		}
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "MOVED" || !strings.HasSuffix(se.Msg, owner.Addr) {
			return fmt.Errorf("SET of another master's key = %v, want its MOVED to %s", err, owner.Addr)
		}
		mu.Lock()
		moved++
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if moved != len(cl.Masters)-1 {
		t.Errorf("%d masters answered MOVED, want %d", moved, len(cl.Masters)-1)
	}
	if v, err := c.Get(ctx, key); err != nil || v != "from "+owner.Addr {
		t.Errorf("Get(%s) = %q, %v; want the owner's SET alone", key, v, err)
	}
	if stats := owner.MustDo(t, "INFO", "commandstats").(string); !strings.Contains(stats, "cmdstat_set:calls=1,") {
		t.Errorf("the owner ran SET other than once:\n%s", stats)
	}
	if got := c.cluster.refreshes.Load(); got != before {
		t.Errorf("%d layout refreshes after the MOVED replies of node Clients, want none", got-before)
	}
}

// Close on a node's Client is refused, and the node and the cluster
// Client go on working.
func testForEachMasterCloseRefused(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	var kept []*Client
	var mu sync.Mutex
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		err := node.Close()
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "belongs to the cluster Client") {
			return fmt.Errorf("Close on a node = %v, want a *UsageError", err)
		}
		if _, err := node.Ping(ctx); err != nil {
			return fmt.Errorf("Ping after the refused Close: %w", err)
		}
		mu.Lock()
		kept = append(kept, node)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range kept {
		if _, err := node.Ping(ctx); err != nil {
			t.Errorf("Ping on %s's Client kept after fn: %v", node.Options().Addr, err)
		}
	}
	if err := c.Set(ctx, "close:k", 1); err != nil {
		t.Errorf("Set on the cluster Client after Close on its nodes: %v", err)
	}
}

// ForEachMaster on a node's Client calls fn once, with that Client; on
// the cluster Client from within fn it calls every master again. Neither
// deadlocks.
func testForEachMasterNested(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	var mu sync.Mutex
	inner, outer := 0, 0
	within(t, 10*time.Second, "nested ForEachMaster", func() {
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
			calls := 0
			err := node.ForEachMaster(ctx, func(ctx context.Context, n *Client) error {
				calls++
				if n != node {
					return errors.New("the node's ForEachMaster gave another Client")
				}
				_, err := n.Info(ctx, "server")
				return err
			})
			if err != nil || calls != 1 {
				return fmt.Errorf("the node's ForEachMaster = %v after %d calls, want one call", err, calls)
			}
			return c.ForEachMaster(ctx, func(ctx context.Context, n *Client) error {
				mu.Lock()
				defer mu.Unlock()
				if n == node {
					outer++
				}
				inner++
				return nil
			})
		})
		if err != nil {
			t.Error(err)
		}
	})
	m := len(cl.Masters)
	if inner != m*m || outer != m {
		t.Errorf("the cluster's ForEachMaster within fn made %d calls, %d on fn's own node; want %d and %d", inner, outer, m*m, m)
	}
}

func testForEachMasterMisuse(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	var ue *UsageError
	if err := c.ForEachMaster(ctx, nil); !errors.As(err, &ue) {
		t.Errorf("ForEachMaster(nil) = %v, want a *UsageError", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	var called atomic.Bool
	err := c.ForEachMaster(cancelled, func(context.Context, *Client) error { called.Store(true); return nil })
	if !errors.Is(err, context.Canceled) || called.Load() {
		t.Errorf("ForEachMaster with a cancelled context = %v, fn called %v; want context.Canceled and no call", err, called.Load())
	}
	// The refusal of one-server commands points at ForEachMaster.
	if _, err := c.Info(ctx); !errors.As(err, &ue) || !strings.Contains(err.Error(), "ForEachMaster") {
		t.Errorf("Info on the cluster Client = %v, want a *UsageError naming ForEachMaster", err)
	}
}

// A node's replies use the cluster Client's decoders, and SetDecoder on a
// node sets them there.
func testForEachMasterDecoders(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	defer c.SetDecoder("ECHO", nil)
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		node.SetDecoder("ECHO", func(v Value) (any, error) { return "decoded " + v.String(), nil })
		v, err := node.Do(ctx, "ECHO", "x")
		if err != nil {
			return err
		}
		if d, err := v.Decoded(); d != "decoded x" || err != nil {
			return fmt.Errorf("ECHO on the node decoded as %v, %v", d, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Do(ctx, "ECHO", "y")
	if d, _ := v.Decoded(); err != nil || d != "decoded y" {
		t.Errorf("ECHO on the cluster Client decoded as %v, %v; want the decoder set on a node", d, err)
	}
}

// A panic in fn reaches the caller, once every call has returned.
func testForEachMasterPanic(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	var mu sync.Mutex
	returned := 0
	defer func() {
		if p := recover(); p != "boom" {
			t.Errorf("recovered %v, want fn's panic", p)
		}
		if returned != 2 {
			t.Errorf("%d calls had returned when the panic went on, want the 2 others", returned)
		}
	}()
	var first sync.Once
	c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		panics := false
		first.Do(func() { panics = true })
		if panics {
			panic("boom")
		}
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		returned++
		mu.Unlock()
		return nil
	})
	t.Error("ForEachMaster returned although fn panicked")
}

// A call of fn that ends its goroutine with runtime.Goexit, as
// testing.T's FailNow does from a goroutine of its own, fails that call,
// with an unknown outcome, rather than pass for one that returned nil.
func testForEachMasterGoexit(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	var first sync.Once
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		exits := false
		first.Do(func() { exits = true })
		if exits {
			runtime.Goexit()
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "runtime.Goexit") || OutcomeOf(err) != OutcomeUnknown {
		t.Errorf("ForEachMaster whose fn called runtime.Goexit on one master = %v (outcome %v); want that call failed, outcome unknown", err, OutcomeOf(err))
	}
}

// Once the cluster Client is closed, a node's Client kept from fn fails
// with ErrClosed, and ForEachMaster calls nothing.
func testForEachMasterAfterClose(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	var kept *Client
	var once sync.Once
	err = c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		once.Do(func() { kept = node })
		_, err := node.Ping(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping on a node's Client after the cluster Client's Close = %v, want ErrClosed", err)
	}
	if _, err := kept.Pipeline(NoTransaction).Ping().Exec(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("a pipeline on a node's Client after the cluster Client's Close = %v, want ErrClosed", err)
	}
	var called atomic.Bool
	err = c.ForEachMaster(ctx, func(context.Context, *Client) error { called.Store(true); return nil })
	if !errors.Is(err, ErrClosed) || called.Load() {
		t.Errorf("ForEachMaster after Close = %v, fn called %v; want ErrClosed and no call", err, called.Load())
	}
	var nodeCalled atomic.Bool
	err = kept.ForEachMaster(ctx, func(context.Context, *Client) error { nodeCalled.Store(true); return nil })
	if !errors.Is(err, ErrClosed) || nodeCalled.Load() {
		t.Errorf("ForEachMaster on a node's Client after Close = %v, fn called %v; want ErrClosed and no call", err, nodeCalled.Load())
	}
}

// On a single node, fn is called once with the Client itself.
func TestForEachMasterSingleNode(t *testing.T) {
	srv := redistest.Start(t)
	ctx := clusterCtx(t)
	c, err := NewClient(Options{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	calls := 0
	err = c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		calls++
		if node != c {
			return errors.New("fn got another Client")
		}
		_, err := node.Scan(ctx, 0)
		return err
	})
	if err != nil || calls != 1 {
		t.Fatalf("ForEachMaster = %v after %d calls, want one call and no error", err, calls)
	}
	errFn := errors.New("fn failed")
	err = c.ForEachMaster(ctx, func(context.Context, *Client) error { return errFn })
	if !errors.Is(err, errFn) || !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("ForEachMaster = %v, want fn's error with the address %s", err, srv.Addr)
	}
	var ue *UsageError
	if err := c.ForEachMaster(ctx, nil); !errors.As(err, &ue) {
		t.Errorf("ForEachMaster(nil) = %v, want a *UsageError", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	called := false
	err = c.ForEachMaster(cancelled, func(context.Context, *Client) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Errorf("ForEachMaster with a cancelled context = %v, fn called %v", err, called)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close on a single-node Client: %v", err)
	}
	err = c.ForEachMaster(ctx, func(context.Context, *Client) error { called = true; return nil })
	if !errors.Is(err, ErrClosed) || called {
		t.Errorf("ForEachMaster after Close = %v, fn called %v; want ErrClosed and no call", err, called)
	}
}

// A master that died fails fn's calls on it, naming it, and starts a
// refresh: the next ForEachMaster calls the replica promoted in its place.
func TestForEachMasterFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	ctx := clusterCtx(t)
	c := loadedClients(t, ctx, cl, 1)[0]
	ping := func(ctx context.Context, node *Client) error {
		_, err := node.Ping(ctx)
		return err
	}
	if err := c.ForEachMaster(ctx, ping); err != nil {
		t.Fatal(err)
	}
	dead := cl.Masters[0]
	promoted, err := cl.KillMaster(ctx, dead)
	if err != nil {
		t.Fatal(err)
	}
	before := c.cluster.refreshes.Load()
	err = c.ForEachMaster(ctx, ping)
	if err == nil || !strings.Contains(err.Error(), dead.Addr) || strings.Count(err.Error(), "redpipe: node ") != 1 {
		t.Fatalf("ForEachMaster after %s died = %v, want the failure of that master alone", dead.Addr, err)
	}
	if !errors.As(err, new(*DialError)) {
		t.Errorf("err = %v, want the *DialError of any call to a server that is down", err)
	}
	waitRefreshed(t, c.cluster)
	if c.cluster.refreshes.Load() == before {
		t.Error("no refresh after a master could not be reached")
	}
	var mu sync.Mutex
	var addrs []string
	err = c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		mu.Lock()
		addrs = append(addrs, node.Options().Addr)
		mu.Unlock()
		return ping(ctx, node)
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(addrs)
	if want := masterAddrs(cl); !slices.Equal(addrs, want) || !slices.Contains(addrs, promoted.Addr) {
		t.Errorf("fn got %v after the failover, want %v with the promoted %s", addrs, want, promoted.Addr)
	}
}

// A master that a graceful failover made a replica refuses fn's writes
// with READONLY, which starts a refresh: the next ForEachMaster calls the
// replica promoted in its place, and not the former master.
func TestForEachMasterGracefulFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	ctx := clusterCtx(t)
	c := loadedClients(t, ctx, cl, 1)[0]
	var mu sync.Mutex
	var addrs []string
	run := func() error {
		addrs = nil
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
			mu.Lock()
			addrs = append(addrs, node.Options().Addr)
			mu.Unlock()
			// A write without keys, which a replica refuses rather than
			// redirects.
			return node.FlushAll(ctx)
		})
		slices.Sort(addrs)
		return err
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	demoted := cl.Masters[0]
	promoted, err := cl.Failover(ctx, demoted)
	if err != nil {
		t.Fatal(err)
	}
	// The layout still names the former master: its refusal is fn's.
	err = run()
	var se *Error
	if !errors.As(err, &se) || se.Prefix != "READONLY" || !strings.Contains(err.Error(), demoted.Addr) {
		t.Fatalf("ForEachMaster after %s handed its slots to %s = %v, want the READONLY refusal of the former master", demoted.Addr, promoted.Addr, err)
	}
	waitRefreshed(t, c.cluster)
	if err := run(); err != nil {
		t.Fatalf("ForEachMaster once the READONLY refusal had its refresh = %v", err)
	}
	if want := masterAddrs(cl); !slices.Equal(addrs, want) || slices.Contains(addrs, demoted.Addr) {
		t.Errorf("fn got %v after the failover, want %v, with %s in place of %s", addrs, want, promoted.Addr, demoted.Addr)
	}
}

// testForEachMasterSessions: a Watch session or a Transaction on a node's
// Client stands for that node, so it runs what a session of the cluster
// Client refuses as meaning the whole cluster (DBSIZE, INFO), and gets
// that node's answer; the cluster Client's own sessions still refuse them.
func testForEachMasterSessions(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		want, err := node.DBSize(ctx)
		if err != nil {
			return err
		}
		tx, err := node.Watch(ctx)
		if err != nil {
			return err
		}
		defer tx.Close()
		if got, err := tx.DBSize(ctx); err != nil || got != want {
			return fmt.Errorf("DBSIZE in a session = %d, %v; want the node's %d", got, err, want)
		}
		if info, err := tx.Info(ctx, "server"); err != nil || !strings.Contains(info, "tcp_port:") {
			return fmt.Errorf("INFO in a session = %.40q, %v", info, err)
		}
		var got int64
		if _, err := node.Transaction(ctx, func(tx *Tx) error {
			got, err = tx.DBSize(ctx)
			return err
		}); err != nil || got != want {
			return fmt.Errorf("DBSIZE in a Transaction = %d, %v; want the node's %d", got, err, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := c.Watch(ctx, "sessions:k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	var ue *UsageError
	if _, err := tx.DBSize(ctx); !errors.As(err, &ue) {
		t.Errorf("DBSIZE in a session of the cluster Client = %v; want a *UsageError", err)
	}
	if _, err := c.Transaction(ctx, func(tx *Tx) error {
		_, err := tx.DBSize(ctx)
		return err
	}, "sessions:k"); !errors.As(err, &ue) {
		t.Errorf("DBSIZE in a Transaction of the cluster Client = %v; want a *UsageError", err)
	}
}

// nodeClients returns the node clients the router holds, as masters and
// as replicas, and those released but not yet closed.
func nodeClients(r *clusterRouter) (held map[string]*Client, retired []*Client) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	held = map[string]*Client{}
	for a, n := range r.nodes {
		held[a] = n
	}
	for a, n := range r.replicas {
		held["replica "+a] = n
	}
	return held, slices.Clone(r.retired)
}

// A long-lived cluster Client whose cluster's nodes come and go (a master
// added, given the slots of another, which is then removed) holds the
// clients, and the connections, of the nodes of the current layout only.
// It kept one for every address the cluster ever named, until Close.
// Traffic all along gets right replies, and a failure that says not
// applied is one: the INCR did not run.
func TestClusterReleasesNodesGoneFromLayout(t *testing.T) {
	defer func(d time.Duration) { releaseCheck = d }(releaseCheck)
	releaseCheck = 20 * time.Millisecond
	cl := redistest.StartCluster(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.cluster
	owned := map[*redistest.Server][2]int{}
	for i, m := range cl.Masters {
		owned[m] = [2]int{i * hashslot.Count / 3, (i+1)*hashslot.Count/3 - 1}
	}

	// Callers INCR keys of their own, spread over the slots, and check
	// each reply against the count they keep.
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		calls    atomic.Int64
		failures atomic.Int64
	)
	for g := range 8 {
		key := keyIn(g*hashslot.Count/8+g, "release:")
		wg.Go(func() {
			var want int64 // the count if every INCR that may have run did
			uncertain := false
			for i := 0; i < 100000 && !stop.Load(); i++ {
				n, err := c.Incr(ctx, key)
				calls.Add(1)
				switch {
				case err != nil:
					failures.Add(1)
					if o := OutcomeOf(err); o == OutcomeUnknown {
						uncertain = true
					} else if ctx.Err() == nil {
						t.Logf("INCR %s: %v (%v)", key, err, o)
					}
					time.Sleep(5 * time.Millisecond)
				case n == want+1, uncertain && n == want+2:
					want, uncertain = n, false
				default:
					t.Errorf("INCR %s = %d, want %d (an INCR reported not sent or not applied ran, or a reply went astray)", key, n, want+1)
					return
				}
			}
		})
	}

	seen := map[*Client]string{}
	note := func() {
		held, _ := nodeClients(r)
		for a, n := range held {
			seen[n] = a
		}
	}
	if err := r.ready(ctx); err != nil {
		t.Fatal(err)
	}
	note()
	const rounds = 3
	for round := range rounds {
		old := cl.Masters[0]
		nu, err := cl.AddMaster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rg := owned[old]
		if err := cl.MoveSlots(ctx, old, nu, redistest.SlotRange(rg[0], rg[1])...); err != nil {
			t.Fatal(err)
		}
		owned[nu] = rg
		note()
		if err := cl.RemoveMaster(ctx, old); err != nil {
			t.Fatal(err)
		}
		// The callers' redirections have refreshed the layout since
		// the move; one more sees the node removed.
		time.Sleep(refreshCooldown)
		if err := r.awaitRefresh(ctx); err != nil {
			t.Fatalf("round %d: refresh: %v", round, err)
		}
		note()
	}
	stop.Store(true)
	wg.Wait()
	if calls.Load() == failures.Load() {
		t.Fatalf("every one of %d INCRs failed", calls.Load())
	}
	t.Logf("%d INCRs, %d failed", calls.Load(), failures.Load())

	// What the router holds is the clients of the nodes of the cluster,
	// now all added by the test; the others are closed once idle.
	want := map[string]bool{}
	for _, a := range cl.Addrs() {
		want[a] = true
	}
	var held map[string]*Client
	var retired []*Client
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		held, retired = nodeClients(r)
		if len(retired) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(retired) > 0 {
		t.Errorf("%d clients of nodes gone from the layout are still open 10s after traffic stopped", len(retired))
	}
	if len(held) > len(want) {
		t.Errorf("after %d nodes were replaced, the client holds %d node clients for a cluster of %d nodes: %v", rounds, len(held), len(want), slices.Sorted(maps.Keys(held)))
	}
	for a := range held {
		if !want[a] {
			t.Errorf("the client holds a client of %s, which is no node of the cluster", a)
		}
	}
	for n, a := range seen {
		if held[a] == n {
			continue
		}
		n.mu.Lock()
		closed, live := n.closed, len(n.live)
		n.mu.Unlock()
		if !closed || live > 0 {
			t.Errorf("the client of %s, gone from the layout: closed %v, %d connections open", a, closed, live)
		}
	}

	// A node at an address that comes back gets a client of its own.
	for n, a := range seen {
		if want[a] {
			continue
		}
		fresh, err := r.nodeAt(a)
		if err != nil || fresh == n || fresh.released.Load() {
			t.Errorf("nodeAt(%s) after its node left = %p (released %v), %v; want a new client, not %p", a, fresh, fresh != nil && fresh.released.Load(), err, n)
		}
		break
	}
}

// The client of a node that leaves the layout is closed only once its
// calls in flight have their replies, on the shared connection and on a
// pooled one alike. A call that comes after the release fails not sent,
// and through the cluster Client it goes on to the node of the layout.
func TestClusterReleaseWaitsForCallsInFlight(t *testing.T) {
	cl, c, node := releaseFixture(t)
	ctx := clusterCtx(t)
	r, m := c.cluster, cl.Masters[0]
	type result struct {
		what string
		v    Value
		err  error
	}
	results := make(chan result, 2)
	go func() {
		// Blocking: on a pooled connection. Slot 0 is m's.
		v, err := node.Do(ctx, "BLPOP", keyIn(0, "inflight:"), "2")
		results <- result{"BLPOP", v, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		list, _ := m.MustDo(t, "CLIENT", "LIST").(string)
		if strings.Contains(list, "cmd=blpop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BLPOP did not reach %s:\n%s", m.Addr, list)
		}
	}
	go func() {
		// On the shared connection; the server answers nobody meanwhile.
		v, err := node.Do(ctx, "DEBUG", "SLEEP", "0.5")
		results <- result{"DEBUG SLEEP", v, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if cn := node.shared.Load(); cn != nil && cn.Pending() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("DEBUG SLEEP is not in line on the shared connection")
		}
	}

	// As a refresh that no longer finds m would.
	gone := retireNode(r, cl, cl.Masters[0])
	for _, n := range gone {
		n.pool.Close()
	}
	r.closeRetired()

	_, err := node.Do(ctx, "PING")
	var de *DialError
	if !errors.Is(err, errReleased) || !errors.As(err, &de) || OutcomeOf(err) != OutcomeNotSent {
		t.Errorf("a call on the released client = %v (outcome %v); want a *DialError that says it was released, not sent", err, OutcomeOf(err))
	}
	for range 2 {
		res := <-results
		if res.err != nil {
			t.Errorf("%s in flight at the release = %v; want its reply", res.what, res.err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, retired := nodeClients(r)
		if len(retired) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the released client is not closed 10s after its calls ended")
		}
	}
	node.mu.Lock()
	closed, live := node.closed, len(node.live)
	node.mu.Unlock()
	if !closed || live != 0 {
		t.Errorf("the released client: closed %v, %d connections open", closed, live)
	}

	// The slot table still names the released client until a refresh:
	// the call through it fails not sent, and goes on by the layout to
	// m, which a new client serves.
	key := keyIn(0, "released:")
	if err := c.Set(ctx, key, "v"); err != nil {
		t.Fatalf("SET of a key of %s after its client was released: %v", m.Addr, err)
	}
	if v, err := m.Do("GET", key); err != nil || v != "v" {
		t.Errorf("GET %s on %s = %v, %v", key, m.Addr, v, err)
	}
	if fresh, _ := r.nodeAt(m.Addr); fresh == node || fresh.released.Load() {
		t.Errorf("the client of %s after the refresh is the released one", m.Addr)
	}
}

// releaseAsRefresh releases the client of m as a refresh that no longer
// finds m in the layout would, and closes it if it has nothing in flight.
// The slot table still names it, as a call routed just before the
// refresh has it.
func releaseAsRefresh(t *testing.T, cl *redistest.Cluster, r *clusterRouter, m *redistest.Server) {
	t.Helper()
	gone := retireNode(r, cl, m)
	for _, n := range gone {
		n.pool.Close()
	}
	r.closeRetired()
}

// A cluster Transaction that waits for its turn on the client of a node
// (another Transaction on the same keys holds it) when a refresh releases
// that client, closed then as it has nothing in flight, goes on by the
// layout and is applied once. It failed with an error matching ErrClosed,
// as if the cluster Client had been closed.
func TestClusterTransactionWaitingForTurnOnReleasedNode(t *testing.T) {
	t.Parallel()
	cl, c := readyCluster(t)
	ctx := clusterCtx(t)
	r := c.cluster
	m := cl.Masters[0] // slot 0's
	node, err := r.nodeAt(m.Addr)
	if err != nil {
		t.Fatal(err)
	}
	key := keyIn(0, "turn:")
	// As a Transaction on the key that has its turn and has yet to lend
	// a connection; the wait for it is longer than the test.
	node.turnWait = time.Minute
	held, err := node.turns.take(ctx, []string{key}, time.Second, node.life.Done(), node.closedErr)
	if err != nil || held == nil {
		t.Fatalf("taking the turn: %v, %v", held, err)
	}
	defer node.turns.give(held)

	done := make(chan error, 1)
	go func() {
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			tx.Multi().Incr(key)
			return nil
		}, key)
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); blockedTakingTurns() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Transaction does not wait for its turn")
		}
	}
	releaseAsRefresh(t, cl, r, m)
	if !node.isClosed() {
		t.Fatal("the released client, with nothing in flight, is not closed")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Transaction waiting for its turn on a released client = %v (outcome %v); want it run by the layout", err, OutcomeOf(err))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the Transaction did not return")
	}
	if v, err := m.Do("GET", key); err != nil || v != "1" {
		t.Errorf("GET %s on %s = %v, %v; want 1", key, m.Addr, v, err)
	}
}

// ForEachMaster on the client of a node that a refresh released fails,
// not sent, with the *DialError that says so, as the client's other calls
// do, and does not call fn. Once the client was closed it said ErrClosed,
// as if the cluster Client had been closed.
func TestForEachMasterOnReleasedNode(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var kept *Client
	var mu sync.Mutex
	err = c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		mu.Lock()
		defer mu.Unlock()
		if node.opt.Addr == cl.Masters[0].Addr {
			kept = node
		}
		return nil
	})
	if err != nil || kept == nil {
		t.Fatalf("ForEachMaster: %v; client of %s kept: %v", err, cl.Masters[0].Addr, kept != nil)
	}
	releaseAsRefresh(t, cl, c.cluster, cl.Masters[0])
	if !kept.isClosed() {
		t.Fatal("the released client, with nothing in flight, is not closed")
	}
	called := false
	err = kept.ForEachMaster(ctx, func(context.Context, *Client) error {
		called = true
		return nil
	})
	var de *DialError
	if called || !errors.Is(err, errReleased) || !errors.As(err, &de) || errors.Is(err, ErrClosed) || OutcomeOf(err) != OutcomeNotSent {
		t.Errorf("ForEachMaster on a released node client = %v (outcome %v, fn called %v); want a *DialError that says it was released, not sent, fn not called",
			err, OutcomeOf(err), called)
	}
	// The cluster Client goes on.
	if err := c.Set(ctx, keyIn(0, "after:"), "v"); err != nil {
		t.Errorf("SET through the cluster Client after the release: %v", err)
	}
}

// A Watch session that holds a connection of a node's client when a
// refresh releases it goes on there to its end and runs its transaction,
// and a stream begun before the release gets every reply, in order. The
// client is closed once the session has given its connection back, and
// the cluster Client then reaches the node through a new client.
func TestClusterReleaseKeepsSessionsAndStreams(t *testing.T) {
	cl, c, node := releaseFixture(t)
	ctx := clusterCtx(t)
	r, m := c.cluster, cl.Masters[0]
	key := keyIn(0, "session:"+freshNamespace())
	tx, err := c.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	st := c.Stream(ctx, func(i int, v Value) error {
		n, err := v.Int64()
		got = append(got, n)
		return err
	})
	skey := keyIn(1, "stream:"+freshNamespace())
	st.Do("INCR", skey)

	releaseAsRefresh(t, cl, r, m)
	if node.isClosed() {
		t.Fatal("the released client was closed while a session held a connection of it")
	}
	for range 99 {
		st.Do("INCR", skey)
	}
	if n, err := st.Close(ctx); err != nil || n != 100 {
		t.Errorf("a stream across the release: %d sent, %v", n, err)
	}
	for i, n := range got {
		if n != int64(i+1) {
			t.Fatalf("stream reply %d = %d, want %d", i, n, i+1)
		}
	}
	replies, err := tx.Multi().Incr(key).Exec(ctx)
	if err != nil || len(replies) != 1 {
		t.Fatalf("a Watch session's transaction across the release: %v, %v", replies, err)
	}
	if err := tx.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !node.isClosed(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the released client is not closed once its session and stream ended")
		}
	}
	if n, err := c.Incr(ctx, key); err != nil || n != 2 {
		t.Errorf("INCR %s through the cluster Client after the release = %d, %v; want 2", key, n, err)
	}
	if v, err := m.Do("GET", skey); err != nil || v != "100" {
		t.Errorf("GET %s on %s = %v, %v; want 100", skey, m.Addr, v, err)
	}
}

// releaseCounter is a key that callers increment, with what they were
// told of their increments.
type releaseCounter struct {
	key       string
	mu        sync.Mutex
	acked     int64 // increments that succeeded
	uncertain int64 // increments that failed and may have run
}

func (k *releaseCounter) note(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case err == nil:
		k.acked++
	case !SafeToRetry(err):
		k.uncertain++
	}
}

// Through a master killed and rejoining as a replica, then made master
// again at its address by a failover, with reads from replicas and the
// layout refreshed as fast as the cooldown lets: INCRs by plain calls,
// Transactions and pipelines leave every counter at a value their replies
// account for (an increment said not sent or not applied did not run),
// ForEachMaster keeps working, the clients released are all closed, and
// the address back in the layout has a client of its own that works.
func TestClusterReleaseAcrossFailoverAndRejoin(t *testing.T) {
	defer func(d time.Duration) { releaseCheck = d }(releaseCheck)
	releaseCheck = 20 * time.Millisecond
	cl := redistest.StartCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), ReadFromReplicas: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.cluster
	if err := r.ready(ctx); err != nil {
		t.Fatal(err)
	}
	counters := make([]*releaseCounter, 12)
	for i := range counters {
		counters[i] = &releaseCounter{key: keyIn(i*hashslot.Count/12+1, "failover:")}
	}
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		fanOuts atomic.Int64
	)
	for g := range 4 {
		wg.Go(func() {
			for i := 0; i < 100000 && !stop.Load(); i++ {
				k := counters[(g*3+i)%len(counters)]
				_, err := c.Incr(ctx, k.key)
				k.note(err)
				if err != nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	for g := range 2 {
		wg.Go(func() {
			for i := 0; i < 100000 && !stop.Load(); i++ {
				k := counters[(g*5+i)%len(counters)]
				_, err := c.Transaction(ctx, func(tx *Tx) error {
					if _, err := tx.Get(ctx, k.key); err != nil && !errors.Is(err, ErrNil) {
						return err
					}
					tx.Multi().Incr(k.key)
					return nil
				}, k.key)
				k.note(err)
				if err != nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; i < 100000 && !stop.Load(); i++ {
			ks := []*releaseCounter{counters[i%12], counters[(i+4)%12], counters[(i+8)%12]}
			p := c.Pipeline(NoTransaction)
			for _, k := range ks {
				p.Incr(k.key).Get(k.key)
			}
			vs, err := p.Exec(ctx)
			for j, k := range ks {
				e := err
				if 2*j < len(vs) && vs[2*j].Kind() != 0 {
					e = vs[2*j].Err()
				}
				k.note(e)
			}
			if err != nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	wg.Go(func() {
		for i := 0; i < 100000 && !stop.Load(); i++ {
			r.triggerRefresh()
			time.Sleep(2 * time.Millisecond)
		}
	})
	wg.Go(func() {
		for i := 0; i < 100000 && !stop.Load(); i++ {
			err := c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
				_, err := node.Do(ctx, "DBSIZE")
				return err
			})
			if err == nil {
				fanOuts.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	dead := cl.Masters[0]
	first, err := r.nodeAt(dead.Addr)
	if err != nil {
		t.Fatal(err)
	}
	promoted, err := cl.KillMaster(ctx, dead)
	if err != nil {
		t.Fatal(err)
	}
	// The cluster lists dead as failed until it rejoins: a refresh
	// meanwhile releases its client.
	for deadline := time.Now().Add(10 * time.Second); !first.released.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the client of the killed %s is not released 10s after the cluster settled without it", dead.Addr)
		}
	}
	if err := cl.Rejoin(ctx, dead); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Failover(ctx, promoted); err != nil {
		t.Fatal(err)
	}
	before := fanOuts.Load()
	for deadline := time.Now().Add(20 * time.Second); fanOuts.Load() < before+3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no ForEachMaster succeeded in 20s after %s became master again", dead.Addr)
		}
	}
	stop.Store(true)
	wg.Wait()

	var acked int64
	for _, k := range counters {
		v, err := c.Get(ctx, k.key)
		var n int64
		if err == nil {
			n, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil && !errors.Is(err, ErrNil) {
			t.Fatalf("GET %s: %v", k.key, err)
		}
		if n < k.acked || n > k.acked+k.uncertain {
			t.Errorf("%s = %d; %d increments succeeded and %d may have run", k.key, n, k.acked, k.uncertain)
		}
		acked += k.acked
	}
	if acked == 0 {
		t.Fatal("no increment succeeded")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, retired := nodeClients(r); len(retired) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("clients released are still open 10s after traffic stopped")
		}
	}
	if !first.released.Load() || !first.isClosed() {
		t.Errorf("the client of %s from before it was killed: released %v, closed %v; want both", dead.Addr, first.released.Load(), first.isClosed())
	}
	node, err := r.nodeAt(dead.Addr)
	if err != nil || node == first || node.released.Load() {
		t.Fatalf("the client of %s, master again: %v (released %v)", dead.Addr, err, node != nil && node.released.Load())
	}
	if _, err := node.Do(ctx, "PING"); err != nil {
		t.Errorf("PING through the client of %s, master again: %v", dead.Addr, err)
	}
}

// Once a refresh has released the client of a node, a call on it that
// needs a connection of its own (a Watch session, a blocking command)
// fails at once, not sent, with the *DialError that says so, as one on
// the shared connection does, even before the refresh has closed the
// client's pool: it neither takes an idle pooled connection nor dials a
// new one to an address the layout no longer lists. It took the idle one
// and ran there.
func TestClusterReleasedClientLendsNoConnection(t *testing.T) {
	t.Parallel()
	cl, c := readyCluster(t)
	ctx := clusterCtx(t)
	r := c.cluster
	m := cl.Masters[0]
	node, err := r.nodeAt(m.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := node.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Close(); err != nil {
		t.Fatal(err)
	}
	if _, idle := node.pool.Stats(); idle != 1 {
		t.Fatalf("%d idle pooled connections, want 1", idle)
	}
	// As a refresh does under the router's lock, before it lets go of it
	// and closes the pool.
	gone := retireNode(r, cl, cl.Masters[0])
	defer func() {
		for _, n := range gone {
			n.pool.Close()
		}
	}()

	released := func(what string, err error) {
		t.Helper()
		var de *DialError
		if !errors.Is(err, errReleased) || !errors.As(err, &de) || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("%s on the released client = %v (outcome %v); want a *DialError that says it was released, not sent", what, err, OutcomeOf(err))
		}
	}
	tx, err = node.Watch(ctx, keyIn(0, "lend:"))
	if tx != nil {
		tx.Close()
	}
	released("Watch", err)
	_, err = node.Do(ctx, "BLPOP", keyIn(0, "lend:"), "0.01")
	released("BLPOP", err)
	if open, _ := node.pool.Stats(); open > 1 {
		t.Errorf("the released client's pool has %d connections; it dialed", open)
	}
}

// Close of the cluster Client while refreshes release node clients that
// have calls in flight, and while the look at the released clients is
// due, returns once every call has, and closes every client: the
// released ones included, whether they were idle yet or not. Calls that
// end with Close fail as calls on a closed client do, or as not sent.
func TestClusterCloseDuringRelease(t *testing.T) {
	defer func(d time.Duration) { releaseCheck = d }(releaseCheck)
	releaseCheck = time.Millisecond
	cl := sharedCluster(t)
	for round := range 5 {
		ctx := clusterCtx(t)
		c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
		if err != nil {
			t.Fatal(err)
		}
		r := c.cluster
		if err := r.ready(ctx); err != nil {
			t.Fatal(err)
		}
		var seen []*Client
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Go(func() {
				key := keyIn(g*hashslot.Count/6, "closing:")
				for i := 0; i < 100000; i++ {
					_, err := c.Incr(ctx, key)
					if err != nil {
						if !errors.Is(err, ErrClosed) && !SafeToRetry(err) {
							t.Errorf("round %d: INCR as Close ran = %v; want an error of a closed client, or not sent", round, err)
						}
						return
					}
				}
			})
		}
		// Releases of every master's client in turn, as refreshes that
		// lost and found them would.
		wg.Go(func() {
			for i := 0; i < 100000; i++ {
				m := cl.Masters[i%len(cl.Masters)]
				r.mu.Lock()
				if r.closed {
					r.mu.Unlock()
					return
				}
				n := r.nodes[m.Addr]
				keep := map[string]bool{}
				for _, s := range cl.Masters {
					if s != m {
						keep[s.Addr] = true
					}
				}
				gone := r.retireLocked(keep)
				// The layout still names m: a fresh client serves it.
				for s := range r.slots {
					if r.slots[s] == n {
						r.slots[s], _ = r.nodeLocked(m.Addr)
					}
				}
				r.mu.Unlock()
				for _, g := range gone {
					g.pool.Close()
				}
				mu.Lock()
				seen = append(seen, gone...)
				mu.Unlock()
				r.closeRetired()
				time.Sleep(time.Millisecond)
			}
		})
		time.Sleep(time.Duration(50+50*round) * time.Millisecond)
		closed := make(chan error, 1)
		go func() { closed <- c.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: Close = %v", round, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("round %d: Close did not return", round)
		}
		wg.Wait()
		mu.Lock()
		if len(seen) == 0 {
			t.Errorf("round %d: no client was released before Close", round)
		}
		for _, n := range seen {
			n.mu.Lock()
			ok, live := n.closed, len(n.live)
			n.mu.Unlock()
			if !ok || live != 0 {
				t.Errorf("round %d: a released client after Close: closed %v, %d connections", round, ok, live)
			}
		}
		mu.Unlock()
		held, retired := nodeClients(r)
		for a, n := range held {
			if !n.isClosed() {
				t.Errorf("round %d: the client of %s is open after Close", round, a)
			}
		}
		if len(retired) != 0 {
			t.Errorf("round %d: %d released clients still listed after Close", round, len(retired))
		}
	}
}

// A storm of refreshes, each releasing a client made since the last (as a
// MOVED to a node the layout does not list makes one), keeps the list of
// released clients short and their connections closed: it does not grow
// with the number of refreshes.
func TestClusterReleaseStormStaysBounded(t *testing.T) {
	defer func(d time.Duration) { refreshCooldown = d }(refreshCooldown)
	refreshCooldown = 5 * time.Millisecond
	cl := sharedCluster(t)
	other := redistest.Start(t) // a server at an address the layout never lists
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.cluster
	if err := r.ready(ctx); err != nil {
		t.Fatal(err)
	}
	const storm = 100
	most := 0
	var made []*Client
	start := r.refreshes.Load()
	for i := 0; i < storm; i++ {
		n, err := r.nodeAt(other.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Do(ctx, "PING"); err != nil {
			t.Fatalf("PING through a client of %s: %v", other.Addr, err)
		}
		made = append(made, n)
		if err := r.awaitRefresh(ctx); err != nil {
			t.Fatal(err)
		}
		_, retired := nodeClients(r)
		most = max(most, len(retired))
	}
	if got := r.refreshes.Load() - start; got < storm {
		t.Fatalf("%d refreshes, want %d", got, storm)
	}
	if most > 2 {
		t.Errorf("up to %d released clients waiting to be closed during %d refreshes; want at most 2", most, storm)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, retired := nodeClients(r); len(retired) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("released clients still open 10s after the storm")
		}
	}
	for i, n := range made {
		n.mu.Lock()
		closed, live := n.closed, len(n.live)
		n.mu.Unlock()
		if !closed || live != 0 {
			t.Fatalf("client %d of %s: closed %v, %d connections open", i, other.Addr, closed, live)
		}
	}
	info, err := other.Do("INFO", "clients")
	if s, _ := info.(string); err != nil || !strings.Contains(s, "connected_clients:1\r") {
		t.Errorf("INFO clients on %s after the storm = %q, %v; want only the test's own connection", other.Addr, info, err)
	}
}

// TestReleasedClientWaitsForRetiredConnection: the shared connection of
// a node's client reached MaxConnAge and was replaced while a call was in
// line on it, its reply held up on the way; then the node left the
// layout. Its client is closed only once that call has its reply: closed
// before, the call failed with its outcome unknown, though it ran.
func TestReleasedClientWaitsForRetiredConnection(t *testing.T) {
	s := redistest.Start(t)
	// The first connection goes through p, whose replies the test holds
	// up; the next ones straight to the server.
	p := redistest.StartProxy(t, s.Addr)
	var nd net.Dialer
	var dials atomic.Int64
	node, err := NewClient(Options{Addr: s.Addr, MaxRetries: -1, MaxConnAge: time.Hour,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				addr = p.Addr
			}
			return nd.DialContext(ctx, network, addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx := ctxT(t)
	if _, err := node.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	old := node.shared.Load()
	p.Stall(redistest.ServerToClient, true)
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := node.Incr(ctx, "retired")
		done <- result{n, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); old.Pending() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("INCR is not in line on the shared connection")
		}
	}
	old.SetAged(true) // as the aging timer does at MaxConnAge
	if _, err := node.sharedConn(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); node.shared.Load() == old; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the aged connection was not replaced")
		}
	}
	node.release()
	closed := false
	for range 20 {
		if closed = node.closeIfDone(); closed {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.Stall(redistest.ServerToClient, false)
	for deadline := time.Now().Add(10 * time.Second); !closed; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the released client was not closed once its calls were answered")
		}
		closed = node.closeIfDone()
	}
	select {
	case r := <-done:
		if r.err != nil || r.n != 1 {
			t.Fatalf("INCR on the replaced connection = %d, %v; want 1: it ran, and its reply was on the way", r.n, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("INCR did not return")
	}
}

// releaseFixture starts a cluster of three masters and a client of it
// whose released node clients are looked at every 20ms, and returns them
// with the client of the first master.
func releaseFixture(t *testing.T) (*redistest.Cluster, *Client, *Client) {
	t.Helper()
	old := releaseCheck
	releaseCheck = 20 * time.Millisecond
	t.Cleanup(func() { releaseCheck = old })
	cl, c := readyClusterOn(t, sharedCluster(t))
	node, err := c.cluster.nodeAt(cl.Masters[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	return cl, c, node
}

// readyCluster starts a cluster of three masters and a client of it that
// knows the layout.
func readyCluster(t *testing.T) (*redistest.Cluster, *Client) {
	t.Helper()
	return readyClusterOn(t, redistest.StartCluster(t, 0))
}

// readyClusterOn is readyCluster on a cluster the caller has.
func readyClusterOn(t *testing.T, cl *redistest.Cluster) (*redistest.Cluster, *Client) {
	t.Helper()
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.cluster.ready(clusterCtx(t)); err != nil {
		t.Fatal(err)
	}
	return cl, c
}

// retireNode takes the client of gone's node out of r as a refresh that
// no longer finds gone in the layout does, under the router's lock, and
// returns the clients it released, whose pools the caller closes.
func retireNode(r *clusterRouter, cl *redistest.Cluster, gone *redistest.Server) []*Client {
	keep := map[string]bool{}
	for _, s := range cl.Servers() {
		if s != gone {
			keep[s.Addr] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.retireLocked(keep)
}
