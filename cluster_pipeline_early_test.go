package redpipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/redistest"
)

// earlyIncrs queues, for each of n keys, INCR key twice and GET key on a
// plain pipeline: sequences whose replies tell whether the commands of a
// slot ran in order, and exactly once. The pipeline is large enough to be
// sent while it is routed.
func earlyIncrs(c *Client, prefix string, n int) (*Pipeline, []string) {
	p := c.Pipeline(NoTransaction)
	return p, queueIncrs(p, prefix, n)
}

// queueIncrs queues earlyIncrs's commands on p. The keys are new ones,
// not those of an earlier call or test run: the cluster may be shared.
func queueIncrs(p *Pipeline, prefix string, n int) []string {
	keys := make([]string, n)
	prefix += freshNamespace()
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
		p.Incr(keys[i]).Incr(keys[i]).Get(keys[i])
	}
	return keys
}

// checkEarlyIncrs checks the replies of earlyIncrs's pipeline, and that
// every key holds what they say ran.
func checkEarlyIncrs(t *testing.T, ctx context.Context, c *Client, keys []string, replies []Value) {
	t.Helper()
	for i, k := range keys {
		a, errA := replies[3*i].Int64()
		b, errB := replies[3*i+1].Int64()
		g, errG := replies[3*i+2].Text()
		if errA != nil || errB != nil || errG != nil || a != 1 || b != 2 || g != "2" {
			t.Fatalf("%s: replies %d %v, %d %v, %q %v; want 1, 2, \"2\"", k, a, errA, b, errB, g, errG)
		}
	}
	for _, k := range []string{keys[0], keys[len(keys)/2], keys[len(keys)-1]} {
		if v, err := c.Get(ctx, k); err != nil || v != "2" {
			t.Fatalf("%s holds %q, %v; want 2", k, v, err)
		}
	}
}

// masters returns the cluster client's masters.
func masters(c *Client) []*Client {
	c.cluster.mu.RLock()
	defer c.cluster.mu.RUnlock()
	return slices.Clone(c.cluster.masters)
}

// connectedCluster starts a cluster of three masters and returns a client
// connected to every one of them, so that parts may go out early.
func connectedCluster(t *testing.T) (*Client, context.Context) {
	return connectedTo(t, redistest.StartCluster(t, 0))
}

// connectedTo returns a client of cl connected to every master, as
// connectedCluster does.
func connectedTo(t *testing.T, cl *redistest.Cluster) (*Client, context.Context) {
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.DBSize(ctx); err != nil { // a command for every master
		t.Fatal(err)
	}
	return c, ctx
}

// TestClusterPipelineEarlyDuringRefresh: whether a pipeline's parts go out
// while it is routed depends on the masters, which a refresh replaces
// meanwhile; the race detector holds that they are read under the
// router's lock.
func TestClusterPipelineEarlyDuringRefresh(t *testing.T) {
	t.Parallel()
	c, ctx := connectedTo(t, sharedCluster(t))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 500; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.cluster.load(); err != nil {
				t.Errorf("refresh: %v", err)
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for round := range 10 {
		p := c.Pipeline(NoTransaction)
		for i := range 2000 {
			p.Set(fmt.Sprintf("early-refresh:%d", i), "x")
		}
		replies, err := p.Exec(ctx)
		if err != nil || len(replies) != 2000 {
			t.Fatalf("round %d: %d replies, %v", round, len(replies), err)
		}
	}
}

func TestClusterPipelineSentWhileRouted(t *testing.T) {
	c, ctx := connectedTo(t, sharedCluster(t))
	const n = 4000 // 12,000 commands, over 150 KB

	t.Run("every node connected", func(t *testing.T) {
		before := earlySends.Load()
		p, keys := earlyIncrs(c, "warm:", n)
		replies, err := p.Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkEarlyIncrs(t, ctx, c, keys, replies)
		// 150 KB in parts of 16 KB, and one last part per node.
		if got := earlySends.Load() - before; got < 9 {
			t.Errorf("%d parts sent early, want at least 9", got)
		}
	})

	t.Run("a pipeline used again", func(t *testing.T) {
		// What was recorded of the first batch's commands is not taken
		// for the second's: their keys, and so their slots, differ.
		p := c.Pipeline(NoTransaction)
		for round, n := range []int{n, n / 2, n} {
			keys := queueIncrs(p, "again"+strconv.Itoa(round)+":", n)
			replies, err := p.Exec(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkEarlyIncrs(t, ctx, c, keys, replies)
		}
	})

	t.Run("a node without a connection", func(t *testing.T) {
		// That node's commands wait for the routing to end and go in
		// the same round as the others' parts, on a new connection.
		ms := masters(c)
		if cn := ms[1].shared.Load(); cn != nil {
			cn.Close()
		}
		seen := map[*Client]bool{}
		beforeEarlySend = func(node *Client, _ int) { seen[node] = true }
		defer func() { beforeEarlySend = nil }()
		p, keys := earlyIncrs(c, "cold:", n)
		replies, err := p.Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkEarlyIncrs(t, ctx, c, keys, replies)
		if seen[ms[1]] || !seen[ms[0]] || !seen[ms[2]] {
			t.Errorf("parts sent early to the node without a connection: %v; to the others: %v, %v", seen[ms[1]], seen[ms[0]], seen[ms[2]])
		}
	})

	t.Run("a command routing could refuse", func(t *testing.T) {
		// RENAME's keys may lie in two slots: the pipeline is routed
		// whole first, and refused before anything is sent.
		before := earlySends.Load()
		p, keys := earlyIncrs(c, "refused:", n)
		p.Rename("{a}x", "{b}y")
		_, err := p.Exec(ctx)
		var cs *CrossSlotError
		if !errors.As(err, &cs) || OutcomeOf(err) == OutcomeUnknown {
			t.Fatalf("err = %v (outcome %v), want a CrossSlotError saying nothing ran", err, OutcomeOf(err))
		}
		if got := earlySends.Load() - before; got != 0 {
			t.Errorf("%d parts sent early before the refusal", got)
		}
		for _, k := range []string{keys[0], keys[n-1]} {
			if ex, err := c.Exists(ctx, k); err != nil || ex != 0 {
				t.Fatalf("%s exists (%d, %v): a command of a refused pipeline ran", k, ex, err)
			}
		}
	})
}

// TestClusterEarlyPartsLostConnection has the server drop a node's
// connection before the client sends its second part early. Once the
// first part is answered, the parts after it are sent again in order and
// the pipeline succeeds; while it is in flight, the pipeline may instead
// fail saying that some of it may have run. Either way no command runs
// twice or out of order.
func TestClusterEarlyPartsLostConnection(t *testing.T) {
	c, ctx := connectedTo(t, sharedCluster(t))
	defer func() { beforeEarlySend = nil }()
	const n = 4000
	for _, tc := range []struct {
		name     string
		answered bool // the first part's replies are in before the drop
	}{{"first part answered", true}, {"first part in flight", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var victim *Client
			var killed *conn.Conn
			dropped := false
			beforeEarlySend = func(node *Client, k int) {
				if victim == nil {
					victim = node
				}
				if node != victim || k != 1 || dropped {
					return
				}
				dropped = true
				// CLIENT ID goes after the first part on the same
				// connection: once it is answered, so is the part.
				cn := node.shared.Load()
				v, err := node.Do(ctx, "CLIENT", "ID")
				id, _ := v.Int64()
				if err != nil || id == 0 || cn != node.shared.Load() {
					t.Errorf("CLIENT ID: %v", err)
					return
				}
				admin, err := NewClient(Options{Addr: node.opt.Addr})
				if err != nil {
					t.Error(err)
					return
				}
				defer admin.Close()
				if !tc.answered {
					// Kill it while the PING after the part waits.
					go admin.Do(ctx, "CLIENT", "KILL", "ID", id)
					node.Do(ctx, "PING")
					return
				}
				// The server has closed the socket when the kill is
				// answered: the connection finds that out before it
				// writes the next part.
				if _, err := admin.Do(ctx, "CLIENT", "KILL", "ID", id); err != nil {
					t.Error(err)
				}
				killed = cn
			}
			p, keys := earlyIncrs(c, "lost:"+tc.name+":", n)
			replies, err := p.Exec(ctx)
			beforeEarlySend = nil
			if !dropped {
				t.Fatal("no connection was dropped")
			}
			if err == nil {
				checkEarlyIncrs(t, ctx, c, keys, replies)
				if killed != nil && victim.shared.Load() == killed {
					t.Error("the killed connection is still the node's")
				}
				return
			}
			if tc.answered {
				t.Fatalf("err = %v: the parts after one answered were not sent again", err)
			}
			if OutcomeOf(err) != OutcomeUnknown {
				t.Fatalf("err = %v (outcome %v), want an unknown outcome: some parts ran", err, OutcomeOf(err))
			}
			for _, k := range keys {
				v, gerr := c.Get(ctx, k)
				if gerr != nil && !errors.Is(gerr, ErrNil) {
					t.Fatal(gerr)
				}
				if v != "" && v != "1" && v != "2" {
					t.Fatalf("%s holds %q: an INCR ran twice", k, v)
				}
			}
		})
	}
}

// TestClusterEarlyPartsThenRestNotSent sends parts early, then cannot
// send the rest: a slot has no known owner and the context ends while
// the client waits for one. The parts sent early ran; the pipeline says
// so, and every command it says was not sent did not run.
func TestClusterEarlyPartsThenRestNotSent(t *testing.T) {
	c, check := connectedTo(t, sharedCluster(t))
	defer func() { beforeEarlySend = nil }()
	const n = 4000
	p, keys := earlyIncrs(c, "rest:", n)
	orphan := keys[n/2]
	slot := int(hashslot.Slot(orphan))
	c.cluster.mu.Lock()
	c.cluster.slots[slot] = nil
	c.cluster.mu.Unlock()
	ctx, cancel := context.WithCancel(check)
	defer cancel()
	sent := 0
	seen := map[*Client]bool{}
	beforeEarlySend = func(node *Client, _ int) {
		if sent++; sent < 4 {
			seen[node] = true
			return
		}
		if sent == 4 {
			// Once a PING after them is answered, so are the parts
			// sent so far; the rest are not sent.
			for node := range seen {
				if _, err := node.Do(check, "PING"); err != nil {
					t.Error(err)
				}
			}
			cancel()
		}
	}
	replies, err := p.Exec(ctx)
	beforeEarlySend = nil
	if err == nil || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("err = %v (outcome %v), want an unknown outcome: parts ran", err, OutcomeOf(err))
	}
	if len(replies) != 3*n {
		t.Fatalf("%d replies for %d commands", len(replies), 3*n)
	}
	ran, unsent := 0, 0
	for i, k := range keys {
		v, gerr := c.Get(check, k)
		if gerr != nil && !errors.Is(gerr, ErrNil) {
			t.Fatal(gerr)
		}
		first := replies[3*i]
		if e := first.Err(); e != nil {
			if OutcomeOf(e) != OutcomeNotSent {
				t.Fatalf("%s: first INCR failed with %v (outcome %v)", k, e, OutcomeOf(e))
			}
			unsent++
			if v != "" {
				t.Fatalf("%s holds %q though its first INCR was not sent", k, v)
			}
			continue
		}
		ran++
		if a, err := first.Int64(); err != nil || a != 1 {
			t.Fatalf("%s: first INCR replied %d, %v", k, a, err)
		}
	}
	if ran == 0 || unsent == 0 {
		t.Fatalf("%d keys ran, %d not sent; want some of each", ran, unsent)
	}
	if e := replies[3*(n/2)].Err(); OutcomeOf(e) != OutcomeNotSent {
		t.Errorf("the key of the slot without an owner: %v", e)
	}
}

// TestClusterEarlyPartsClientClosed closes the client, from another
// goroutine, while a large pipeline is being sent early. Close waits for
// the routing to end, then cuts the parts in flight: Exec returns without
// hanging, either every reply or an error that does not claim nothing
// ran, and the client refuses calls after.
func TestClusterEarlyPartsClientClosed(t *testing.T) {
	c, ctx := connectedTo(t, sharedCluster(t))
	defer func() { beforeEarlySend = nil }()
	sent := 0
	closed := make(chan struct{})
	beforeEarlySend = func(*Client, int) {
		if sent++; sent == 3 {
			go func() {
				defer close(closed)
				c.Close()
			}()
		}
	}
	p, keys := earlyIncrs(c, "closed:", 4000)
	replies, err := p.Exec(ctx)
	beforeEarlySend = nil
	if sent < 3 {
		t.Fatalf("%d parts sent early", sent)
	}
	<-closed
	switch {
	case err == nil:
		if len(replies) != 3*len(keys) {
			t.Fatalf("%d replies for %d commands", len(replies), 3*len(keys))
		}
	case OutcomeOf(err) != OutcomeUnknown:
		t.Fatalf("err = %v (outcome %v): parts were sent before the close, so some may have run", err, OutcomeOf(err))
	}
	t.Logf("Exec: %v", err)
	if _, err := c.Get(ctx, "closed:0"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
}

// TestClusterRoundPollsForOnePart: a round of parts for several nodes
// polls for the replies of the last part it sends only, and the others
// are quiet (conn.Graced.Quiet); a round for one node polls for its part,
// as a call on one node does. A pipeline sent while it is routed polls
// for the last remainder it sends, and its other parts are quiet. That
// the quiet parts' replies are not polled for is conn's
// TestQuietCallsAreNotPolledFor.
func TestClusterRoundPollsForOnePart(t *testing.T) {
	c, ctx := connectedTo(t, sharedCluster(t))
	type started struct {
		node  *Client
		quiet bool
	}
	var parts []started
	partStarted = func(node *Client, quiet bool) { parts = append(parts, started{node, quiet}) }
	t.Cleanup(func() { partStarted = nil })
	polled := func() (n int) {
		for _, p := range parts {
			if !p.quiet {
				n++
			}
		}
		return n
	}

	// One slot: one part, polled for.
	parts = nil
	one := c.Pipeline(NoTransaction)
	one.Set("{poll}a", "1").Get("{poll}a").Get("{poll}b")
	if _, err := one.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if len(parts) != 1 || parts[0].quiet {
		t.Fatalf("a round for one node started %+v, want one part, polled for", parts)
	}

	// Keys of every master: a part each, the last polled for.
	keys := make([]string, 60)
	for i := range keys {
		keys[i] = "poll:" + strconv.Itoa(i)
	}
	for range 3 {
		parts = nil
		vals, err := c.MGet(ctx, keys...)
		if err != nil || len(vals) != len(keys) {
			t.Fatal(len(vals), err)
		}
		nodes := map[*Client]bool{}
		for _, p := range parts {
			nodes[p.node] = true
		}
		if len(parts) != 3 || len(nodes) != 3 {
			t.Fatalf("MGET of keys of three masters started %d parts for %d nodes, want 3 for 3", len(parts), len(nodes))
		}
		if polled() != 1 || parts[len(parts)-1].quiet {
			t.Fatalf("a round for three nodes started %+v, want the last part alone polled for", parts)
		}
	}

	// Sent while routed: many parts, the last remainder polled for.
	parts = nil
	before := earlySends.Load()
	p, ikeys := earlyIncrs(c, "pollearly:", 4000)
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkEarlyIncrs(t, ctx, c, ikeys, replies)
	if earlySends.Load()-before < 4 {
		t.Fatalf("%d parts sent early, want some while routing", earlySends.Load()-before)
	}
	if polled() != 1 || parts[len(parts)-1].quiet || len(parts) < 4 {
		t.Fatalf("a pipeline sent while routed started %d parts, %d of them polled for; want the last alone", len(parts), polled())
	}
}

// TestClusterEarlyPartsConnectionReplaced: a node's shared connection
// reaches MaxConnAge and is replaced between two parts of a large plain
// pipeline sent early, so that the second part meets it closed by the
// client, not sent. That part, and those after it, go on the new
// connection, with no retries allowed: the replacement is the client's
// own doing, and they were not sent; they failed the pipeline. Nor do
// they refresh the layout, which the replacement says nothing of: they
// were taken for parts whose node could not be reached, which waited for
// a refresh and counted as a redirection.
func TestClusterEarlyPartsConnectionReplaced(t *testing.T) {
	cl := sharedCluster(t)
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), Options: Options{MaxRetries: -1, MaxConnAge: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.DBSize(ctx); err != nil { // a command for every master
		t.Fatal(err)
	}
	defer func() { beforeEarlySend = nil }()
	var victim *Client
	var old *conn.Conn
	beforeEarlySend = func(node *Client, k int) {
		if victim == nil {
			victim = node
		}
		if node != victim || k != 1 || old != nil {
			return
		}
		old = node.shared.Load()
		// CLIENT ID goes after the first part on the same connection:
		// once it is answered, so is the part, and the connection is
		// idle.
		if _, err := node.Do(ctx, "CLIENT", "ID"); err != nil || node.shared.Load() != old {
			t.Errorf("CLIENT ID: %v", err)
			return
		}
		old.SetAged(true) // as the aging timer does at MaxConnAge
		if _, err := node.sharedConn(ctx); err != nil {
			t.Error(err)
			return
		}
		for end := time.Now().Add(5 * time.Second); old.Alive() && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
		if old.Alive() {
			t.Error("the aged connection was not closed once idle")
		}
	}
	p, keys := earlyIncrs(c, "replaced:", 4000)
	refreshes := c.cluster.refreshes.Load()
	replies, err := p.Exec(ctx)
	beforeEarlySend = nil
	if old == nil {
		t.Fatal("no part was sent early after the first on a node")
	}
	if err != nil {
		t.Fatalf("Exec = %v (outcome %v); want the parts that met the replaced connection sent on the new one", err, OutcomeOf(err))
	}
	if n := c.cluster.refreshes.Load() - refreshes; n != 0 {
		t.Errorf("%d refreshes of the layout during Exec; want none, the layout being as it was", n)
	}
	checkEarlyIncrs(t, ctx, c, keys, replies)
	if victim.shared.Load() == old {
		t.Error("the aged connection is still the node's")
	}
}
