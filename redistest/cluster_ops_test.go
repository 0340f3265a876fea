package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/redistest"
)

// opTimeout bounds each cluster operation of these tests; the operations
// bound their own waits too.
const opTimeout = 30 * time.Second

func opContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// tagFor returns a hash tag that puts keys in slot.
func tagFor(slot int) string {
	for i := 0; ; i++ {
		tag := "t" + strconv.Itoa(i)
		if int(hashslot.Slot(tag)) == slot {
			return "{" + tag + "}"
		}
	}
}

// fill writes n keys, {tag}:0 to {tag}:n-1, to s, with their index as
// value, and returns them.
func fill(t *testing.T, s *redistest.Server, slot, n int) []string {
	t.Helper()
	tag := tagFor(slot)
	var keys []string
	var cmds [][]string
	for i := range n {
		k := tag + ":" + strconv.Itoa(i)
		keys = append(keys, k)
		cmds = append(cmds, []string{"SET", k, strconv.Itoa(i)})
	}
	if n == 0 {
		return nil
	}
	replies, err := s.Pipeline(cmds...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range replies {
		if r != "OK" {
			t.Fatalf("SET %s on %s: %v", keys[i], s.Addr, r)
		}
	}
	return keys
}

func countKeys(t *testing.T, s *redistest.Server, slot int) int64 {
	t.Helper()
	n, _ := s.MustDo(t, "CLUSTER", "COUNTKEYSINSLOT", strconv.Itoa(slot)).(int64)
	return n
}

func wantOwner(t *testing.T, c *redistest.Cluster, slot int, want *redistest.Server) {
	t.Helper()
	got, err := c.SlotOwner(slot)
	if err != nil || got != want {
		t.Errorf("slot %d is served by %v (%v), want %s", slot, got, err, want.Addr)
	}
}

// wantRedirect checks that GET key on s is redirected with kind (MOVED
// or ASK) to the address to.
func wantRedirect(t *testing.T, s *redistest.Server, key, kind string, to *redistest.Server) {
	t.Helper()
	v, err := s.Do("GET", key)
	e, ok := v.(redistest.ReplyError)
	want := fmt.Sprintf("%s %d %s", kind, hashslot.Slot(key), to.Addr)
	if err != nil || !ok || string(e) != want {
		t.Errorf("GET %s on %s = %#v, %v; want %q", key, s.Addr, v, err, want)
	}
}

// TestReshard moves slots between the masters of one cluster, with keys
// and without, in one go and in two steps, while clients write, and to a
// master added for the purpose.
func TestReshard(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 0)
	m0, m1, m2 := c.Masters[0], c.Masters[1], c.Masters[2]

	t.Run("MoveSlots", func(t *testing.T) {
		// Slots 0, 1 and 2 are the first master's: one with more keys
		// than one MIGRATE moves, one with a few, one with none.
		many, few := fill(t, m0, 0, 250), fill(t, m0, 1, 10)
		if err := c.MoveSlots(opContext(t), m0, m1, 0, 1, 2); err != nil {
			t.Fatal(err)
		}
		for slot, n := range map[int]int64{0: 250, 1: 10, 2: 0} {
			wantOwner(t, c, slot, m1)
			if got := countKeys(t, m1, slot); got != n {
				t.Errorf("slot %d has %d keys on the target, want %d", slot, got, n)
			}
			if got := countKeys(t, m0, slot); got != 0 {
				t.Errorf("slot %d still has %d keys on the source", slot, got)
			}
		}
		for _, k := range []string{many[0], many[249], few[9]} {
			want := k[strings.LastIndexByte(k, ':')+1:]
			if v := m1.MustDo(t, "GET", k); v != want {
				t.Errorf("GET %s on the target = %#v, want %q", k, v, want)
			}
			wantRedirect(t, m0, k, "MOVED", m1)
			wantRedirect(t, m2, k, "MOVED", m1)
		}
	})

	t.Run("HalfMigration", func(t *testing.T) {
		keys := make([]string, 250)
		for i := range keys {
			keys[i] = tagFor(0) + ":" + strconv.Itoa(i)
		}
		ctx := opContext(t)
		mig, err := c.BeginMigration(ctx, m1, m2, 0)
		if err != nil {
			t.Fatal(err)
		}
		moved, err := mig.MoveKeys(ctx, 100)
		if err != nil || moved != 100 {
			t.Fatalf("MoveKeys(100) = %d, %v", moved, err)
		}
		if a, b := countKeys(t, m1, 0), countKeys(t, m2, 0); a != 150 || b != 100 {
			t.Fatalf("half-migrated slot: %d keys on the source, %d on the target; want 150 and 100", a, b)
		}
		// Some key has moved and some has not: the source serves those it
		// still has and sends the others on with ASK, which the target
		// serves only after ASKING.
		var movedKey, keptKey string
		for _, k := range keys {
			v, _ := m1.Do("EXISTS", k)
			if e, ok := v.(redistest.ReplyError); ok && e.Prefix() == "ASK" && movedKey == "" {
				movedKey = k
			} else if v == int64(1) && keptKey == "" {
				keptKey = k
			}
		}
		if movedKey == "" || keptKey == "" {
			t.Fatalf("no key on each side: moved %q, kept %q", movedKey, keptKey)
		}
		wantRedirect(t, m1, movedKey, "ASK", m2)
		wantRedirect(t, m2, movedKey, "MOVED", m1)
		if v := m1.MustDo(t, "GET", keptKey); v == nil {
			t.Errorf("GET %s on the source = nil", keptKey)
		}
		r, err := m2.Pipeline([]string{"ASKING"}, []string{"GET", movedKey})
		if err != nil || r[0] != "OK" || r[1] == nil {
			t.Errorf("ASKING, GET %s on the target = %#v, %v", movedKey, r, err)
		}
		// A new key of the slot belongs on the target already.
		v, _ := m1.Do("SET", tagFor(0)+":new", "x")
		if e, ok := v.(redistest.ReplyError); !ok || e.Prefix() != "ASK" {
			t.Errorf("SET of a new key on the source = %#v, want ASK", v)
		}
		if err := mig.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		wantOwner(t, c, 0, m2)
		if a, b := countKeys(t, m1, 0), countKeys(t, m2, 0); a != 0 || b != 250 {
			t.Errorf("after Finish: %d keys on the source, %d on the target; want 0 and 250", a, b)
		}
	})

	t.Run("UnderLoad", func(t *testing.T) {
		testMoveUnderLoad(t, c)
	})

	t.Run("AddMaster", func(t *testing.T) {
		ctx := opContext(t)
		n, err := c.AddMaster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Masters) != 4 || c.Masters[3] != n || c.NodeID(n) == "" {
			t.Fatalf("Masters after AddMaster: %d, last %v, id %q", len(c.Masters), c.Masters[3].Addr, c.NodeID(n))
		}
		for _, s := range c.Servers() {
			nodes, _ := s.MustDo(t, "CLUSTER", "NODES").(string)
			if !strings.Contains(nodes, c.NodeID(n)) {
				t.Errorf("%s does not know the new master:\n%s", s.Addr, nodes)
			}
		}
		if err := c.MoveSlots(ctx, m2, n, 0); err != nil {
			t.Fatal(err)
		}
		wantOwner(t, c, 0, n)
		if got := countKeys(t, n, 0); got != 250 {
			t.Errorf("the new master has %d keys of slot 0, want 250", got)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		ctx := opContext(t)
		for _, tt := range []struct {
			from, to *redistest.Server
			slots    []int
			want     string
		}{
			{m0, m1, []int{0}, "slot 0 is served by " + c.Masters[3].Addr + ", not by " + m0.Addr},
			{m0, m0, []int{100}, "to itself"},
			{m0, m1, []int{16384}, "slot 16384 is out of range"},
			{m0, m1, []int{5, 5}, "given twice"},
			{m0, m1, nil, "no slot"},
		} {
			if err := c.MoveSlots(ctx, tt.from, tt.to, tt.slots...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("MoveSlots(%s, %s, %v) = %v, want an error saying %q", tt.from.Addr, tt.to.Addr, tt.slots, err, tt.want)
			}
		}
	})
}

// testMoveUnderLoad moves a range of slots back and forth while writers
// increment counters in them through a client that follows redirections,
// then checks that every acknowledged increment is there.
func testMoveUnderLoad(t *testing.T, c *redistest.Cluster) {
	m0, m1 := c.Masters[0], c.Masters[1]
	slots := redistest.SlotRange(100, 109)
	for _, s := range slots {
		fill(t, m0, s, 30) // keys for MIGRATE to move besides the counters
	}
	const writers = 4
	var (
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		acked [writers]map[string]int64
		cls   [writers]*followingClient
		errs  = make(chan error, writers)
	)
	for w := range writers {
		acked[w] = map[string]int64{}
		cls[w] = &followingClient{c: c}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := cls[w]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("%s:w%d:%d", tagFor(slots[i%len(slots)]), w, i%7)
				v, err := cl.do("INCR", k)
				if err != nil {
					errs <- fmt.Errorf("INCR %s: %w", k, err)
					return
				}
				if _, ok := v.(int64); !ok {
					errs <- fmt.Errorf("INCR %s = %#v", k, v)
					return
				}
				acked[w][k]++
			}
		}()
	}
	ctx := opContext(t)
	from, to := m0, m1
	for range 4 {
		if err := c.MoveSlots(ctx, from, to, slots...); err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		from, to = to, from
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := int64(0)
	for w := range writers {
		for k, n := range acked[w] {
			total += n
			if v := m0.MustDo(t, "GET", k); v != strconv.FormatInt(n, 10) {
				t.Errorf("%s = %#v after %d acknowledged increments", k, v, n)
			}
		}
	}
	redirects := map[string]int{}
	for _, cl := range cls {
		for k, n := range cl.redirects {
			redirects[k] += n
		}
	}
	if total == 0 || redirects["MOVED"] == 0 {
		t.Errorf("%d increments and %d MOVED redirections during the moves; want some of both", total, redirects["MOVED"])
	}
	t.Logf("%d increments during 4 moves of %d slots, redirections %v", total, len(slots), redirects)
}

// followingClient sends single commands to a cluster the way a cluster
// client does: to the node that serves the key's slot as far as it knows,
// following MOVED, ASK (with ASKING) and retrying TRYAGAIN.
type followingClient struct {
	c         *redistest.Cluster
	nodes     map[string]*redistest.Server // by address
	owner     map[uint16]*redistest.Server
	redirects map[string]int // by kind: MOVED, ASK, TRYAGAIN
}

func (f *followingClient) do(args ...string) (any, error) {
	if f.nodes == nil {
		f.nodes, f.owner, f.redirects = map[string]*redistest.Server{}, map[uint16]*redistest.Server{}, map[string]int{}
		for _, s := range f.c.Servers() {
			f.nodes[s.Addr] = s
		}
	}
	slot := hashslot.Slot(args[1])
	s := f.owner[slot]
	if s == nil {
		s = f.c.Masters[0]
	}
	asking := false
	for range 50 {
		var v any
		if asking {
			r, err := s.Pipeline([]string{"ASKING"}, args)
			if err != nil {
				return nil, err
			}
			v = r[1]
		} else {
			var err error
			if v, err = s.Do(args...); err != nil {
				return nil, err
			}
		}
		e, ok := v.(redistest.ReplyError)
		if !ok {
			return v, nil
		}
		asking = false
		f.redirects[e.Prefix()]++
		switch e.Prefix() {
		case "MOVED", "ASK":
			// MOVED <slot> <addr> or ASK <slot> <addr>
			parts := strings.Fields(string(e))
			next := f.nodes[parts[len(parts)-1]]
			if next == nil {
				return nil, fmt.Errorf("redirected to a node the cluster does not have: %v", e)
			}
			if e.Prefix() == "MOVED" {
				f.owner[slot] = next
			}
			s, asking = next, e.Prefix() == "ASK"
		case "TRYAGAIN":
		default:
			return nil, e
		}
	}
	return nil, errors.New("too many redirections")
}

// TestFailover promotes replicas gracefully and by killing their master,
// then brings the killed master back as a replica.
func TestFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 1)
	m0, m1 := c.Masters[0], c.Masters[1]
	r0 := c.Replicas[0]
	k0, k1 := tagFor(0)+":k", tagFor(6000)+":k"
	// WAIT counts the writes of its own connection: it follows the SET on
	// the same one.
	for m, set := range map[*redistest.Server][]string{m0: {"SET", k0, "v0"}, m1: {"SET", k1, "v1"}} {
		if v, err := m.Pipeline(set, []string{"WAIT", "1", "5000"}); err != nil || v[1] != int64(1) {
			t.Fatalf("SET and WAIT on %s = %#v, %v", m.Addr, v, err)
		}
	}

	t.Run("Failover", func(t *testing.T) {
		p, err := c.Failover(opContext(t), m0)
		if err != nil {
			t.Fatal(err)
		}
		if p != r0 || c.Masters[0] != r0 || c.Replicas[0] != m0 {
			t.Fatalf("Failover promoted %s; Masters[0] %s, Replicas[0] %s; want %s and %s", p.Addr, c.Masters[0].Addr, c.Replicas[0].Addr, r0.Addr, m0.Addr)
		}
		wantRole(t, r0, "master")
		wantRole(t, m0, "slave")
		wantOwner(t, c, 0, r0)
		if v := r0.MustDo(t, "GET", k0); v != "v0" {
			t.Errorf("GET %s on the promoted replica = %#v", k0, v)
		}
		wantRedirect(t, m0, k0, "MOVED", r0)
		if rs, err := c.ReplicasOf(r0); err != nil || len(rs) != 1 || rs[0] != m0 {
			t.Errorf("ReplicasOf(promoted) = %v, %v; want the old master", rs, err)
		}
	})

	t.Run("KillMaster", func(t *testing.T) {
		r1 := c.Replicas[1]
		start := time.Now()
		p, err := c.KillMaster(opContext(t), m1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("a replica took over %v after the kill", time.Since(start).Round(time.Millisecond))
		if p != r1 || c.Masters[1] != r1 || len(c.Masters) != 3 || len(c.Replicas) != 2 || slices.Contains(c.Servers(), m1) {
			t.Fatalf("KillMaster promoted %s; Masters %v, Replicas %v", p.Addr, c.Masters, c.Replicas)
		}
		if _, err := m1.Do("PING"); err == nil {
			t.Errorf("the killed master still answers")
		}
		wantOwner(t, c, 6000, r1)
		if v := r1.MustDo(t, "GET", k1); v != "v1" {
			t.Errorf("GET %s on the promoted replica = %#v", k1, v)
		}
		// The promoted replica has no replica of its own left.
		if _, err := c.KillMaster(opContext(t), r1); err == nil || !strings.Contains(err.Error(), "has no replica") {
			t.Errorf("KillMaster of a master without replicas = %v", err)
		}
	})

	t.Run("Rejoin", func(t *testing.T) {
		if err := c.Rejoin(opContext(t), m1); err != nil {
			t.Fatal(err)
		}
		wantRole(t, m1, "slave")
		if rs, err := c.ReplicasOf(c.Masters[1]); err != nil || len(rs) != 1 || rs[0] != m1 {
			t.Errorf("ReplicasOf(%s) = %v, %v; want the rejoined node", c.Masters[1].Addr, rs, err)
		}
		if len(c.Replicas) != 3 || c.Replicas[2] != m1 {
			t.Errorf("Replicas after Rejoin: %v", c.Replicas)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		if _, err := c.Failover(opContext(t), c.Replicas[0]); err == nil || !strings.Contains(err.Error(), "not a master") {
			t.Errorf("Failover of a replica = %v", err)
		}
		if err := c.Rejoin(opContext(t), c.Masters[0]); err == nil || !strings.Contains(err.Error(), "not a node killed by KillMaster") {
			t.Errorf("Rejoin of a live master = %v", err)
		}
	})
}

func wantRole(t *testing.T, s *redistest.Server, role string) {
	t.Helper()
	info, _ := s.MustDo(t, "INFO", "replication").(string)
	if !strings.Contains(info, "role:"+role+"\r\n") {
		t.Errorf("%s is not a %s:\n%s", s.Addr, role, info)
	}
}

// TestDoneContextChangesNothing: a change asked for under a context that
// is already done is refused before it reaches a server, so Masters and
// Replicas still name the nodes in their roles.
func TestDoneContextChangesNothing(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := c.Masters[0]
	masters := slices.Clone(c.Masters)

	if _, err := c.Failover(ctx, m); !errors.Is(err, context.Canceled) {
		t.Errorf("Failover: %v; want context.Canceled", err)
	}
	if _, err := c.KillMaster(ctx, m); !errors.Is(err, context.Canceled) {
		t.Errorf("KillMaster: %v; want context.Canceled", err)
	}
	if s, err := c.AddMaster(ctx); !errors.Is(err, context.Canceled) || s != nil {
		t.Errorf("AddMaster: %v, %v; want context.Canceled and no node", s, err)
	}
	if err := c.MoveSlots(ctx, m, c.Masters[1], 0); !errors.Is(err, context.Canceled) {
		t.Errorf("MoveSlots: %v; want context.Canceled", err)
	}
	if !slices.Equal(c.Masters, masters) {
		t.Errorf("Masters changed: %v", c.Addrs())
	}
	if v, err := m.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("the master does not answer: %v, %v", v, err)
	}
	wantOwner(t, c, 0, m)
	// A failover, had it been asked for, completes within a second or two.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		wantRole(t, m, "master")
		if t.Failed() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A master that gives away its last slot stays a master, with no slot, as
// one that AddMaster started: it can be given slots again, and Masters
// still tells the truth.
func TestMoveLastSlotKeepsMaster(t *testing.T) {
	c := redistest.StartCluster(t, 0)
	ctx := opContext(t)
	n, err := c.AddMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := c.Masters[0]
	slot, err := firstSlotOf(c, m)
	if err != nil {
		t.Fatal(err)
	}
	for i, move := range [][2]*redistest.Server{{m, n}, {n, m}, {m, n}} {
		if err := c.MoveSlots(ctx, move[0], move[1], slot); err != nil {
			t.Fatalf("move %d, from %s to %s: %v", i, move[0].Addr, move[1].Addr, err)
		}
		wantOwner(t, c, slot, move[1])
		for _, s := range c.Masters {
			if role, _ := s.MustDo(t, "ROLE").([]any); len(role) == 0 || role[0] != "master" {
				t.Fatalf("after move %d, %s, in Masters, has role %v", i, s.Addr, role)
			}
		}
	}
}

// firstSlotOf returns the lowest slot m serves.
func firstSlotOf(c *redistest.Cluster, m *redistest.Server) (int, error) {
	for slot := 0; slot < 16384; slot++ {
		if owner, err := c.SlotOwner(slot); err != nil {
			return 0, err
		} else if owner == m {
			return slot, nil
		}
	}
	return 0, fmt.Errorf("%s serves no slot", m.Addr)
}

// RemoveMaster takes a master that serves no slot out of the cluster:
// it is stopped, no node knows it any more, and Masters no longer lists
// it. A master that still serves slots, or the last one, is refused.
func TestRemoveMaster(t *testing.T) {
	c := redistest.StartCluster(t, 0)
	ctx := opContext(t)
	if err := c.RemoveMaster(ctx, c.Masters[0]); err == nil || !strings.Contains(err.Error(), "serves slots") {
		t.Errorf("RemoveMaster of a master with slots: %v; want a refusal", err)
	}
	if len(c.Masters) != 3 {
		t.Fatalf("Masters after a refused RemoveMaster: %v", c.Addrs())
	}
	n, err := c.AddMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := c.NodeID(n)
	if err := c.RemoveMaster(ctx, n); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(c.Masters, n) || len(c.Masters) != 3 || c.NodeID(n) != "" {
		t.Errorf("after RemoveMaster: Masters %v, its id %q", c.Addrs(), c.NodeID(n))
	}
	if _, err := n.Do("PING"); err == nil {
		t.Errorf("the removed node %s still answers", n.Addr)
	}
	for _, s := range c.Servers() {
		if nodes, _ := s.MustDo(t, "CLUSTER", "NODES").(string); strings.Contains(nodes, id) {
			t.Errorf("%s still knows the removed node:\n%s", s.Addr, nodes)
		}
	}
	if err := c.RemoveMaster(ctx, n); err == nil {
		t.Error("a second RemoveMaster of the same node succeeded")
	}
}

// ServeAllSlots makes a lone cluster node a cluster of one that serves
// every slot; a server that is no cluster node, and one whose slots are
// taken, refuse it, and a done context changes nothing.
func TestServeAllSlots(t *testing.T) {
	t.Parallel()
	ctx := opContext(t)
	s := redistest.Start(t, "--cluster-enabled", "yes")
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.ServeAllSlots(done); !errors.Is(err, context.Canceled) {
		t.Errorf("ServeAllSlots under a done context: %v; want context.Canceled", err)
	}
	if info, _ := s.MustDo(t, "CLUSTER", "INFO").(string); !strings.Contains(info, "cluster_slots_assigned:0") {
		t.Fatalf("slots assigned under a done context:\n%s", info)
	}
	if err := s.ServeAllSlots(ctx); err != nil {
		t.Fatal(err)
	}
	info, _ := s.MustDo(t, "CLUSTER", "INFO").(string)
	if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
		t.Errorf("after ServeAllSlots:\n%s", info)
	}
	if err := s.ServeAllSlots(ctx); err == nil {
		t.Error("ServeAllSlots on a node whose slots are taken succeeded")
	}
	plain := redistest.Start(t)
	if err := plain.ServeAllSlots(ctx); err == nil {
		t.Error("ServeAllSlots on a server that is no cluster node succeeded")
	}
}

// TestCrashedNodeEndsWait: a node that crashes by itself cannot answer
// again, so an operation waiting for the cluster to settle gives up at
// once and says which node is gone, rather than polling the refused
// dial until its timeout.
func TestCrashedNodeEndsWait(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 0)
	crashed := c.Masters[1]
	proc, err := os.FindProcess(crashed.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	// AddMaster asks only the new node and the first master before it
	// waits for every node to know the new one.
	_, err = c.AddMaster(opContext(t))
	if err == nil {
		t.Fatal("AddMaster succeeded with a node of the cluster killed")
	}
	if strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), crashed.Addr+" is not running: it exited by itself") {
		t.Errorf("AddMaster with a crashed node: %v; want it to give up at once, naming the node", err)
	}
}

// TestKilledMasterNamesRejoin: a master killed by KillMaster comes back
// through Rejoin, which a bare Restart would defeat, so a call to it says
// so; and a crash of that node while Rejoin waits for it ends the wait
// with the crash, not with the wait's timeout.
func TestKilledMasterNamesRejoin(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 1)
	m := c.Masters[1]
	if _, err := c.KillMaster(opContext(t), m); err != nil {
		t.Fatal(err)
	}
	_, err := m.Do("PING")
	if err == nil || !strings.Contains(err.Error(), "KillMaster ended it") || !strings.Contains(err.Error(), "Cluster.Rejoin") || strings.Contains(err.Error(), "Restart") {
		t.Errorf("Do on the killed master: %v; want it to name KillMaster and Rejoin, not Restart", err)
	}

	// Every other node sleeps through Rejoin's restart, so that the node
	// cannot learn that it is now a replica; as soon as the restart is
	// done, which ends with turning off replica migration, it crashes.
	var sleepers sync.WaitGroup
	for _, s := range c.Servers() {
		sleepers.Go(func() { s.Do("DEBUG", "SLEEP", "4") })
	}
	defer sleepers.Wait()
	time.Sleep(200 * time.Millisecond)
	stop := make(chan struct{})
	crashed := make(chan bool, 1)
	go func() {
		for deadline := time.Now().Add(opTimeout); time.Now().Before(deadline); {
			select {
			case <-stop:
				crashed <- false
				return
			case <-time.After(2 * time.Millisecond):
			}
			if v, err := m.Do("CONFIG", "GET", "cluster-allow-replica-migration"); err == nil && fmt.Sprint(v) == fmt.Sprint([]any{"cluster-allow-replica-migration", "no"}) {
				m.Do("DEBUG", "SEGFAULT")
				crashed <- true
				return
			}
		}
		crashed <- false
	}()
	err = c.Rejoin(opContext(t), m)
	close(stop)
	if !<-crashed {
		t.Fatalf("the rejoining node was never seen answering; Rejoin: %v", err)
	}
	if err == nil || !strings.Contains(err.Error(), m.Addr+" is not running") || strings.Contains(err.Error(), "timed out") {
		t.Errorf("Rejoin of a node that crashes: %v; want it to say that the node is not running", err)
	}
	if err != nil && !strings.Contains(err.Error(), "Cluster.Rejoin") {
		t.Errorf("Rejoin of a node that crashes: %v; want it to name Rejoin as the way back", err)
	}
}
