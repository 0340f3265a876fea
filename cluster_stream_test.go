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

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// The cluster stream tests share one cluster of three masters, run in
// turn; those that move slots leave it consistent for the next.
func TestClusterStream(t *testing.T) {
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Run("Order", func(t *testing.T) { testClusterStreamOrder(t, cl, c) })
	t.Run("Memory", func(t *testing.T) { testClusterStreamMemory(t, c) })
	t.Run("Moves", func(t *testing.T) { testClusterStreamMoves(t, cl, c) })
	t.Run("Split", func(t *testing.T) { testClusterStreamSplit(t, cl, c) })
	t.Run("TryAgain", func(t *testing.T) { testClusterStreamTryAgain(t, cl, c) })
	t.Run("Stalled", func(t *testing.T) { testClusterStreamStalled(t, cl, c) })
	t.Run("ConnectionLost", func(t *testing.T) { testClusterStreamConnectionLost(t, cl, c) })
	t.Run("Unreachable", func(t *testing.T) { testClusterStreamUnreachable(t, cl) })
	t.Run("Misuse", func(t *testing.T) { testClusterStreamMisuse(t, cl, c) })
	t.Run("PartlyRefused", func(t *testing.T) { testClusterStreamPartlyRefused(t, cl, c) })
	t.Run("PartLost", func(t *testing.T) { testClusterStreamPartLost(t, cl, c) })
	t.Run("PartCut", func(t *testing.T) { testClusterStreamPartCut(t, cl, c) })
	t.Run("PartLostLoad", func(t *testing.T) { testClusterStreamPartLostLoad(t, cl, c) })
	t.Run("PartLostFanOut", func(t *testing.T) { testClusterStreamPartLostFanOut(t, cl, c) })
}

// streamCtx is the context of one cluster stream test.
func streamCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// counters is a load of per-key sequences: for each of keys, in rounds
// over all of them, SET k 0, then INCR k rounds-2 times, then GET k. The
// reply of every command tells whether the key's commands ran in their
// order, each once: INCR number r answers r, GET answers rounds-2.
type counters struct {
	keys   []string
	rounds int
}

func (l counters) len() int { return len(l.keys) * l.rounds }

// queue queues commands from (inclusive) to to (exclusive) of the load.
func (l counters) queue(s *Stream, from, to int) {
	for i := from; i < to; i++ {
		k := l.keys[i%len(l.keys)]
		switch r := i / len(l.keys); r {
		case 0:
			s.Set(k, 0)
		case l.rounds - 1:
			s.Get(k)
		default:
			s.Incr(k)
		}
	}
}

// check tells what is wrong with reply v of command i, or returns nil.
func (l counters) check(i int, v Value) error {
	k, r := l.keys[i%len(l.keys)], i/len(l.keys)
	want := strconv.Itoa(r)
	switch r {
	case 0:
		want = "OK"
	case l.rounds - 1:
		want = strconv.Itoa(l.rounds - 2)
	}
	if got := v.String(); got != want {
		return fmt.Errorf("reply %d (round %d of %s) = %s, want %s", i, r, k, got, want)
	}
	return nil
}

// checker returns the each of a stream of the load, which checks that
// every index comes once, in order, with its right reply, and a function
// that returns how many came and the first fault.
func (l counters) checker() (func(int, Value) error, func() (int, error)) {
	next := 0
	var bad error
	each := func(i int, v Value) error {
		if i != next && bad == nil {
			bad = fmt.Errorf("reply %d handed out when %d was due", i, next)
		}
		next = i + 1
		if err := l.check(i, v); err != nil && bad == nil {
			bad = err
		}
		return nil
	}
	return each, func() (int, error) { return next, bad }
}

// verify checks the final values in the servers: every key holds
// rounds-2.
func (l counters) verify(t *testing.T, ctx context.Context, c *Client) {
	t.Helper()
	p := c.Pipeline(NoTransaction)
	for _, k := range l.keys {
		p.Get(k)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range replies {
		if got, want := v.String(), strconv.Itoa(l.rounds-2); got != want {
			t.Fatalf("after the stream %s = %s, want %s", l.keys[i], got, want)
		}
	}
}

// streamBounds records the largest window and kept encoding a cluster
// stream reached.
type streamBounds struct{ window, kept, winCap int }

func (b *streamBounds) note(s *Stream) {
	cs := s.cl
	b.window = max(b.window, cs.count)
	b.kept = max(b.kept, cs.kept)
	b.winCap = max(b.winCap, len(cs.win))
}

// check fails the test if the stream held more than its bounds allow: the
// window, plus the commands of one pass.
func (b *streamBounds) check(t *testing.T, s *Stream) {
	t.Helper()
	cs := s.cl
	pass := cs.flushAt / 16 // the most commands a pass can take: none is shorter than 16 bytes
	if b.window > streamWindowCmds+pass || b.kept > cs.maxKept+cs.flushAt+streamChunk || b.winCap > 2*(streamWindowCmds+pass) {
		t.Fatalf("the stream held up to %d commands, %d bytes of encoding, a window of %d; bounds %d, %d, %d",
			b.window, b.kept, b.winCap, streamWindowCmds+pass, cs.maxKept+cs.flushAt+streamChunk, 2*(streamWindowCmds+pass))
	}
}

// keysOver returns n keys spread over the slots.
func keysOver(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	return keys
}

// idle fails the test unless every node client of c has all its
// connections idle in its pool: a stream gave its connections back.
func idle(t *testing.T, c *Client) {
	t.Helper()
	c.cluster.mu.RLock()
	defer c.cluster.mu.RUnlock()
	for addr, n := range c.cluster.nodes {
		if open, idle := n.pool.Stats(); open != idle {
			t.Errorf("node %s: %d pooled connections open, %d idle", addr, open, idle)
		}
	}
}

// testClusterStreamOrder: a stream of 200,000 commands over keys in
// nearly every slot hands every reply to each once, in order, while it is
// still being queued; every key's commands ran in order, each once; the
// window stays within its bounds.
func testClusterStreamOrder(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	l := counters{keys: keysOver("order:", 40_000), rounds: 5}
	slots := map[uint16]bool{}
	for _, k := range l.keys {
		slots[hashslot.Slot(k)] = true
	}
	if len(slots) < hashslot.Count*3/4 {
		t.Fatalf("the keys cover only %d slots", len(slots))
	}
	each, seen := l.checker()
	s := c.Stream(ctx, each)
	var b streamBounds
	n := l.len()
	for i := 0; i < n; i += 100 {
		l.queue(s, i, i+100)
		b.note(s)
		if i == n/2 {
			if got, _ := seen(); got == 0 {
				t.Fatal("halfway through queueing, no reply has been handed out")
			}
		}
	}
	if s.Len() != n {
		t.Fatalf("Len = %d, want %d", s.Len(), n)
	}
	sent, err := s.Close(ctx)
	if err != nil || sent != n {
		t.Fatalf("Close = %d, %v; want %d, nil", sent, err, n)
	}
	if got, bad := seen(); bad != nil || got != n {
		t.Fatalf("each saw %d replies (%v), want %d", got, bad, n)
	}
	b.check(t, s)
	if len(s.cl.list) != len(cl.Masters) {
		t.Errorf("the stream used %d nodes, want every master (%d)", len(s.cl.list), len(cl.Masters))
	}
	if r := s.cl.redirected; r != (streamRedirects{}) {
		t.Errorf("redirections in a stable cluster: %+v", r)
	}
	l.verify(t, ctx, c)
	idle(t, c)
}

// testClusterStreamMemory: a stream of 100 MB of SETs (100,000 values of
// 1 KB) keeps the heap within a few MiB of where it started, sampled as
// it goes, where holding the batch would take all 100 MB.
func testClusterStreamMemory(t *testing.T, c *Client) {
	ctx := streamCtx(t)
	const n, limit = 100_000, 24 << 20
	value := strings.Repeat("x", 1000)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, uint64(0)
	s := c.Stream(ctx, nil)
	var b streamBounds
	for i := range n {
		s.Set("mem:"+strconv.Itoa(i%1000), value)
		if i%5000 == 0 {
			b.note(s)
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse-min(ms.HeapInuse, base))
		}
	}
	if sent, err := s.Close(ctx); err != nil || sent != n {
		t.Fatalf("Close = %d, %v; want %d, nil", sent, err, n)
	}
	b.check(t, s)
	t.Logf("heap grew by up to %d KiB over the stream", peak>>10)
	if peak > limit {
		t.Fatalf("the heap grew by %d MiB over a stream of %d MB", peak>>20, n*len(value)>>20)
	}
}

// testClusterStreamMoves runs a stream like that of the Order test while
// slots move under it: a range of slots moves between two masters and
// back in a goroutine, and one slot is half-migrated (some of its keys
// moved) while a part of the stream is queued, then finished while the
// next part is. MOVED and ASK both come back mid-stream; every INCR still
// answers its number and every key ends with its count: nothing lost,
// nothing run twice, nothing out of order.
func testClusterStreamMoves(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	a, b := cl.Masters[0], cl.Masters[1]
	mig := int(hashslot.Slot("{mig}"))
	from, to := ownerAndOther(t, cl, mig)
	// A range of a's slots without the migrated one.
	moving := movingSlots(t, c, a, 300, mig)
	keys := keysOver("moves:", 10_000)
	for i := range 100 {
		keys = append(keys, "{mig}:"+strconv.Itoa(i))
	}
	l := counters{keys: keys, rounds: 12}
	each, seen := l.checker()
	s := c.Stream(ctx, each)
	rounds := func(from, to int) { l.queue(s, from*len(keys), to*len(keys)) }

	rounds(0, 2)
	// The half-migrated slot: ASK for the keys already moved.
	m, err := cl.BeginMigration(ctx, from, to, mig)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.MoveKeys(ctx, 50); err != nil || n != 50 {
		t.Fatalf("MoveKeys: %d, %v", n, err)
	}
	rounds(2, 5)
	// The range moves from a to b and back in a goroutine. The client
	// has met no MOVED yet, so its map is the first one: once the first
	// move is done, the next rounds meet MOVED for the range, and the
	// moves after come at any time.
	stop := make(chan struct{})
	first, wait := mover(ctx, cl, a, b, moving, 6, stop)
	<-first
	rounds(5, 8)
	// The migration ends: MOVED for the slot.
	if err := m.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	rounds(8, l.rounds)
	close(stop)
	sent, err := s.Close(ctx)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if err != nil || sent != l.len() {
		t.Fatalf("Close = %d, %v; want %d, nil", sent, err, l.len())
	}
	if got, bad := seen(); bad != nil || got != l.len() {
		t.Fatalf("each saw %d replies (%v), want %d", got, bad, l.len())
	}
	r := s.cl.redirected
	t.Logf("redirections: %+v", r)
	if r.moved == 0 || r.ask == 0 {
		t.Errorf("the stream met %d MOVED and %d ASK; the test means it to meet both", r.moved, r.ask)
	}
	if owner, err := cl.SlotOwner(moving[0]); err != nil || owner != a {
		t.Fatalf("the moving slots ended on %v (%v), want them back on the first master", owner, err)
	}
	l.verify(t, ctx, c)
	idle(t, c)
}

// movingSlots returns up to n slots that c routes to the master m.
func movingSlots(t *testing.T, c *Client, m *redistest.Server, n int, except ...int) []int {
	t.Helper()
	waitRefreshed(t, c.cluster)
	var slots []int
	for s := 0; len(slots) < n && s < hashslot.Count; s++ {
		if owner := c.cluster.owner(s); owner != nil && owner.opt.Addr == m.Addr && !slices.Contains(except, s) {
			slots = append(slots, s)
		}
	}
	return slots
}

// mover moves slots from a to b and back, times times, in a goroutine,
// ending early (with the slots back on a) once stop is closed. first is
// closed once the first move is done; wait waits for the goroutine and
// returns its error. Moves are moverPause apart.
//
// Why the pause: a slot that leaves a node and comes back to it at once
// can let a command of the slot, written to that node before the stream
// saw an earlier one's redirection, run there before that earlier one,
// which then keeps its redirection as its reply (see clusterStream.poll).
// The stream narrows that to a command written within about a round trip
// of the redirection, which a slow client (under the race detector, on a
// busy machine) widens; back-to-back moves of few keys then made these
// tests fail now and then, on what the stream does not promise.
const moverPause = 100 * time.Millisecond

func mover(ctx context.Context, cl *redistest.Cluster, a, b *redistest.Server, slots []int, times int, stop <-chan struct{}) (first <-chan struct{}, wait func() error) {
	firstDone := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		defer once.Do(func() { close(firstDone) })
		src, dst := a, b
		for k := range times {
			if k > 0 {
				select {
				case <-time.After(moverPause):
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
			}
			if err := cl.MoveSlots(ctx, src, dst, slots...); err != nil {
				errc <- err
				return
			}
			if k == 0 {
				once.Do(func() { close(firstDone) })
			}
			src, dst = dst, src
			select {
			case <-stop:
				if src == a {
					errc <- nil
					return
				}
			default:
			}
		}
		errc <- nil
	}()
	return firstDone, func() error { return <-errc }
}

// testClusterStreamSplit: multi-key commands whose keys are in several
// slots (MSET, MGET, EXISTS, DEL) are split by slot in a stream, and
// their parts keep the order of their slots while slots move: an MGET
// queued after a round of INCRs of its keys sees every one of them, and
// none of the next round.
func testClusterStreamSplit(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	const groups, size, rounds = 500, 8, 8
	keys := keysOver("split:", groups*size)
	group := func(g int) []string { return keys[g*size : (g+1)*size] }
	anys := func(ks []string) []any {
		out := make([]any, len(ks))
		for i, k := range ks {
			out[i] = k
		}
		return out
	}
	repeat := func(v string) string { return "[" + strings.TrimSpace(strings.Repeat(v+" ", size)) + "]" }
	var want []string
	next := 0
	var bad error
	s := c.Stream(ctx, func(i int, v Value) error {
		if bad == nil && (i != next || v.String() != want[i]) {
			bad = fmt.Errorf("reply %d (handed out when %d was due) = %s, want %s", i, next, v, want[i])
		}
		next = i + 1
		return nil
	})
	round := func(r int) {
		for g := range groups {
			switch r {
			case 0:
				var kv []any
				for _, k := range group(g) {
					kv = append(kv, k, 0)
				}
				s.MSet(kv...)
				want = append(want, "OK")
			case rounds:
				s.Del(group(g)...)
				s.MGet(group(g)...)
				want = append(want, strconv.Itoa(size), repeat("nil"))
			default:
				for _, k := range group(g) {
					s.Incr(k)
					want = append(want, strconv.Itoa(r))
				}
				s.MGet(group(g)...)
				s.Do(append([]any{"EXISTS"}, anys(group(g))...)...)
				want = append(want, repeat(strconv.Itoa(r)), strconv.Itoa(size))
			}
		}
	}
	round(0)
	round(1)
	stop := make(chan struct{})
	first, wait := mover(ctx, cl, cl.Masters[0], cl.Masters[1], movingSlots(t, c, cl.Masters[0], 300), 6, stop)
	<-first
	for r := 2; r <= rounds; r++ {
		round(r)
	}
	close(stop)
	sent, err := s.Close(ctx)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("redirections: %+v", s.cl.redirected)
	if err != nil || sent != len(want) {
		t.Fatalf("Close = %d, %v; want %d, nil", sent, err, len(want))
	}
	if bad != nil || next != len(want) {
		t.Fatalf("each saw %d replies (%v), want %d", next, bad, len(want))
	}
	if len(s.cl.splits) != 0 {
		t.Errorf("%d split commands left behind", len(s.cl.splits))
	}
	if s.cl.redirected.moved == 0 {
		t.Error("no part met MOVED; the test means the slots to move under the stream")
	}
	if n, err := c.DBSize(ctx); err != nil || n != 0 {
		t.Fatalf("DBSIZE after the DELs = %d, %v", n, err)
	}
	idle(t, c)
}

// testClusterStreamTryAgain: a multi-key command of a half-migrated slot
// whose keys are split between the nodes gets TRYAGAIN; the stream sends
// it again after a backoff, holding the commands of its slot behind it,
// until the migration ends.
func testClusterStreamTryAgain(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	slot := int(hashslot.Slot("{try}"))
	from, err := cl.SlotOwner(slot)
	if err != nil {
		t.Fatal(err)
	}
	to := cl.Masters[2]
	if to == from {
		to = cl.Masters[0]
	}
	from.MustDo(t, "CONFIG", "RESETSTAT")
	if err := c.MSet(ctx, "{try}:a", "a0", "{try}:b", "b0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Del(ctx, "{try}:n"); err != nil {
		t.Fatal(err)
	}
	m, err := cl.BeginMigration(ctx, from, to, slot)
	if err != nil {
		t.Fatal(err)
	}
	// One of the two keys moves: MIGRATE takes the keys GETKEYSINSLOT
	// lists first.
	if n, err := m.MoveKeys(ctx, 1); err != nil || n != 1 {
		t.Fatalf("MoveKeys: %d, %v", n, err)
	}
	// The migration ends once the source has refused an MSET.
	var wg sync.WaitGroup
	finished := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			info, _ := from.Do("INFO", "errorstats")
			if s, _ := info.(string); strings.Contains(s, "errorstat_TRYAGAIN:") {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		finished <- m.Finish(ctx)
	}()
	var got []string
	s := c.Stream(ctx, func(i int, v Value) error {
		got = append(got, v.String())
		return nil
	})
	s.Incr("{try}:n")
	s.MSet("{try}:a", "a1", "{try}:b", "b1")
	s.Incr("{try}:n")
	_, err = s.Close(ctx)
	wg.Wait()
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"1", "OK", "2"}; !slices.Equal(got, want) {
		t.Fatalf("replies %v, want %v", got, want)
	}
	for k, want := range map[string]string{"{try}:a": "a1", "{try}:b": "b1", "{try}:n": "2"} {
		if v, err := c.Get(ctx, k); err != nil || v != want {
			t.Errorf("%s = %q, %v; want %s", k, v, err, want)
		}
	}
	if s.cl.redirected.again == 0 {
		t.Errorf("no TRYAGAIN met: %+v", s.cl.redirected)
	}
	t.Logf("redirections: %+v", s.cl.redirected)
	from.MustDo(t, "CONFIG", "RESETSTAT")
}

// testClusterStreamStalled: one master holds every write (CLIENT PAUSE
// WRITE). The queuing call blocks once the window is full, instead of
// taking ever more commands, and returns when the stream's context ends;
// the heap stays small meanwhile. Close reports the context's end, and
// the client works once the master does.
func testClusterStreamStalled(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	if err := c.Set(ctx, "warm", 1); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	unpause := pauseWrites(t, cl.Masters[1])
	const wait = 2 * time.Second
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	s := c.Stream(sctx, nil)
	var b streamBounds
	const most = 2_000_000
	value := strings.Repeat("v", 100)
	i := 0
	for ; i < most && s.Err() == nil; i++ {
		s.Set("stall:"+strconv.Itoa(i), value)
		if i%1000 == 0 {
			b.note(s)
		}
	}
	took := time.Since(start)
	runtime.ReadMemStats(&ms)
	grown := int64(ms.HeapInuse) - int64(base)
	if !errors.Is(s.Err(), context.DeadlineExceeded) {
		t.Fatalf("after %d commands Err = %v, want the context's end", i, s.Err())
	}
	if took < wait {
		t.Fatalf("queueing stopped after %v, before the stream's context ended", took)
	}
	if took > wait+10*time.Second {
		t.Fatalf("queueing went on %v after the stream's context ended", took-wait)
	}
	b.check(t, s)
	if limit := streamWindowCmds + s.cl.flushAt/16 + 2*s.cl.flushAt/100; s.Len() > limit {
		t.Fatalf("the stream took %d commands while a master held them all; its bound is %d", s.Len(), limit)
	}
	if grown > 64<<20 {
		t.Fatalf("the heap grew by %d MiB while the stream waited", grown>>20)
	}
	t.Logf("took %d commands in %v, heap grew %d KiB", s.Len(), took, grown>>10)
	if _, err := s.Close(sctx); !errors.Is(err, context.DeadlineExceeded) || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("Close = %v (%v); want the context's end, outcome unknown", err, OutcomeOf(err))
	}
	unpause()
	if _, err := c.Stream(ctx, nil).Set("stall:after", 1).Close(ctx); err != nil {
		t.Fatalf("a stream once the master works again: %v", err)
	}
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	idle(t, c)
}

// testClusterStreamConnectionLost: the stream's connection to one master
// is killed with commands in flight on it: Close returns an error of
// unknown outcome naming the node, nothing is sent again, and the client
// goes on.
func testClusterStreamConnectionLost(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	node := cl.Masters[2]
	unpause := pauseWrites(t, node)
	done := make(chan error, 1)
	go func() {
		s := c.Stream(ctx, nil)
		for i := range 50_000 {
			s.Set("lost:"+strconv.Itoa(i), "v")
		}
		_, err := s.Close(ctx)
		done <- err
	}()
	waitForServer(t, ctx, "a SET of the stream held by the paused master", func() (bool, string) {
		var seen []string
		for _, cli := range serverClients(t, node) {
			// Held, not an idle connection whose last command was a SET.
			if cli["cmd"] == "set" && strings.Contains(cli["flags"], "b") {
				return true, ""
			}
			seen = append(seen, cli["cmd"]+" flags="+cli["flags"])
		}
		return false, fmt.Sprint("commands: ", seen)
	})
	node.MustDo(t, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
	unpause()
	select {
	case err := <-done:
		if err == nil || OutcomeOf(err) != OutcomeUnknown || !strings.Contains(err.Error(), node.Addr) {
			t.Fatalf("Close after the kill = %v (%v); want an error of unknown outcome naming %s", err, OutcomeOf(err), node.Addr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stream still running 20s after its connection was killed")
	}
	if err := c.Set(ctx, "lost:after", 1); err != nil {
		t.Fatalf("client after a lost stream: %v", err)
	}
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	idle(t, c)
}

// testClusterStreamUnreachable: the client's map sends a slot to a node
// that refuses connections. Nothing was written there, so the stream
// refreshes the layout and sends the slot's commands, in order, to the
// master that serves it.
func testClusterStreamUnreachable(t *testing.T, cl *redistest.Cluster) {
	ctx := streamCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Del(ctx, "{gone}:n"); err != nil {
		t.Fatal(err)
	}
	slot := int(hashslot.Slot("{gone}"))
	c.cluster.mu.Lock()
	c.cluster.slots[slot], err = c.cluster.nodeLocked("127.0.0.1:1")
	c.cluster.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	s := c.Stream(ctx, func(i int, v Value) error {
		if i%2 == 1 {
			got = append(got, v.String())
		}
		return nil
	})
	for i := range 5 {
		s.Set("gone:other:"+strconv.Itoa(i), i)
		s.Incr("{gone}:n")
	}
	if _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"1", "2", "3", "4", "5"}; !slices.Equal(got, want) {
		t.Fatalf("INCR replies %v, want %v", got, want)
	}
	if s.cl.redirected.unreached == 0 {
		t.Errorf("the unreachable node went unnoticed: %+v", s.cl.redirected)
	}
	if owner := c.cluster.owner(slot); owner == nil || owner.opt.Addr == "127.0.0.1:1" {
		t.Errorf("slot %d still routed to the unreachable node", slot)
	}
	idle(t, c)
}

// testClusterStreamMisuse: what a stream refuses or reports, on a
// cluster as on one node.
func testClusterStreamMisuse(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	// Close twice; commands after Close are dropped.
	calls := 0
	s := c.Stream(ctx, func(int, Value) error { calls++; return nil })
	s.Set("m:a", 1).Incr("m:a")
	if sent, err := s.Close(ctx); sent != 2 || err != nil || calls != 2 {
		t.Fatalf("Close = %d, %v after %d replies; want 2, nil, 2", sent, err, calls)
	}
	s.Incr("m:a")
	if n := s.Len(); n != 2 {
		t.Errorf("Len after Close and one more command = %d, want the 2 sent", n)
	}
	if _, err := s.Close(ctx); !errors.Is(err, ErrClosed) || calls != 2 {
		t.Fatalf("second Close = %v after %d replies; want ErrClosed and no more replies", err, calls)
	}
	if v, _ := c.Get(ctx, "m:a"); v != "2" {
		t.Fatalf("m:a = %q, want 2: nothing queued after Close is sent", v)
	}

	// Discard: what was sent ran, the rest is dropped, the connections
	// go back; Close after it reports ErrClosed.
	s = c.Stream(ctx, nil)
	for i := range 30_000 {
		s.Set("m:d:"+strconv.Itoa(i), "v")
	}
	written := s.cl.written
	s.Discard()
	// A command written and then redirected (the layout the client had
	// may be stale after the subtests before) is not sent again once the
	// stream is discarded: it did not run.
	r := s.cl.redirected
	dropped := int64(r.moved + r.ask + r.again)
	n, err := c.DBSize(ctx)
	if err != nil || n > int64(written)+1 || n < int64(written)+1-dropped || written == 0 || written == 30_000 {
		t.Fatalf("after Discard the cluster holds %d keys (%v); %d of 30,000 were sent (redirected: %+v)", n, err, written, s.cl.redirected)
	}
	if _, err := s.Close(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after Discard = %v, want ErrClosed", err)
	}
	idle(t, c)

	// An error from each: each is not called again, every command still
	// runs, Close and Err report it.
	stop := errors.New("enough")
	calls = 0
	s = c.Stream(ctx, func(i int, v Value) error {
		calls++
		if i == 100 {
			return stop
		}
		return nil
	})
	const incrs = 30_000
	for i := range incrs {
		s.Incr("m:n:" + strconv.Itoa(i%50))
	}
	if !errors.Is(s.Err(), stop) {
		t.Fatalf("Err = %v while queueing after each failed", s.Err())
	}
	if sent, err := s.Close(ctx); !errors.Is(err, stop) || calls != 101 || sent != incrs {
		t.Fatalf("Close = %d, %v after %d calls of each; want %d, the error of each, 101 calls", sent, err, calls, incrs)
	}
	for i := range 50 {
		if v, _ := c.Get(ctx, "m:n:"+strconv.Itoa(i)); v != strconv.Itoa(incrs/50) {
			t.Fatalf("m:n:%d = %q, want %d: every command runs", i, v, incrs/50)
		}
	}

	// each may queue more commands: they go with the next pass, or with
	// Close, and their replies come to each in their turn.
	var follow *Stream
	calls, last := 0, int64(0)
	var bad error
	follow = c.Stream(ctx, func(i int, v Value) error {
		calls++
		if v.String() == "OK" {
			follow.Incr("m:follow")
		} else if n, _ := v.Int64(); n != last+1 && bad == nil {
			bad = fmt.Errorf("reply %d: INCR = %v after %d", i, v, last)
		} else {
			last = n
		}
		return nil
	})
	for range 20_000 {
		follow.Set("m:lead", 1)
	}
	if sent, err := follow.Close(ctx); err != nil || bad != nil || sent != 40_000 || calls != 40_000 || last != 20_000 {
		t.Fatalf("Close = %d, %v after %d calls of each (%v), the last INCR %d; want 40000 sent and seen, the last INCR 20000",
			sent, err, calls, bad, last)
	}

	// A command's own error stays with its reply; Close names it by its
	// place in the whole stream.
	s = c.Stream(ctx, nil)
	for i := range 20_000 {
		if i == 15_000 {
			s.Incr("m:a:str")
		} else {
			s.Set("m:a:"+strconv.Itoa(i%10), "x")
		}
	}
	s.Set("m:a:str", "text") // after the INCR, in order: the INCR found no key
	_, err = s.Close(ctx)
	var ce *CommandError
	if err != nil {
		t.Fatalf("Close = %v; the INCR ran before the SET of its key", err)
	}
	s = c.Stream(ctx, nil)
	s.Incr("m:a:str")
	if _, err := s.Close(ctx); !errors.As(err, &ce) || ce.Index != 0 || ce.In != "stream" {
		t.Fatalf("INCR of text: %v; want a *CommandError for index 0", err)
	}

	// A command whose keys are in different slots stops the stream before
	// any command of its pass is sent.
	s = c.Stream(ctx, nil)
	for i := range 20_000 {
		s.Set("m:x:"+strconv.Itoa(i), "v")
	}
	s.Do("RENAME", "m:x:1", "m:x:2")
	for i := 20_000; i < 30_000; i++ {
		s.Set("m:x:"+strconv.Itoa(i), "v")
	}
	written = s.cl.written
	_, err = s.Close(ctx)
	var cs *CrossSlotError
	if !errors.As(err, &ce) || !errors.As(err, &cs) || ce.Index != 20_000 || ce.Command != "RENAME" {
		t.Fatalf("RENAME across slots: %v; want a *CommandError of index 20000 wrapping a *CrossSlotError", err)
	}
	if OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("OutcomeOf = %v, want unknown: %d commands had been sent", OutcomeOf(err), written)
	}
	// The refusal speaks of the command, not of the stream, part of
	// which was sent.
	if msg := err.Error(); strings.Contains(msg, "nothing was sent") || !strings.Contains(msg, "the command was not sent") {
		t.Fatalf("RENAME across slots: %q; want it to say the command, not the stream, was not sent", msg)
	}
	if n, _ := c.Do(ctx, "EXISTS", "m:x:29999"); n.String() != "0" {
		t.Fatal("a command queued after the refused one was sent")
	}

	// MSETNX sets all of its keys or none: it is not split.
	s = c.Stream(ctx, nil)
	s.MSetNX("m:nx:a", 1, "m:nx:b", 2)
	if _, err := s.Close(ctx); !errors.As(err, &cs) || OutcomeOf(err) == OutcomeUnknown {
		t.Fatalf("MSETNX across slots: %v; want a *CrossSlotError, nothing sent", err)
	}

	// SELECT cannot be queued, before anything is sent.
	s = c.Stream(ctx, nil)
	s.Do("SELECT", 2)
	if _, err := s.Close(ctx); !errors.As(err, new(*UsageError)) || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("SELECT in a stream: %v (%v); want a usage error, not sent", err, OutcomeOf(err))
	}

	// A command for every master goes to each, its replies combined.
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	var sizes []string
	s = c.Stream(ctx, func(i int, v Value) error {
		if i%11 == 10 {
			sizes = append(sizes, v.String())
		}
		return nil
	})
	for i := range 100 {
		s.Set("m:f:"+strconv.Itoa(i), 1)
		if i%10 == 9 {
			s.DBSize()
		}
	}
	if _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"10", "20", "30", "40", "50", "60", "70", "80", "90", "100"}; !slices.Equal(sizes, want) {
		t.Fatalf("DBSIZE in a stream: %v, want %v", sizes, want)
	}
	idle(t, c)
}

// BenchmarkClusterStream is a bulk load of 100,000 SETs over a cluster of
// three masters, every reply checked: through a Stream, and through plain
// pipelines of 10,000 commands, one after another, for comparison. ns/cmd
// is per command; B/op shows what each holds.
func BenchmarkClusterStream(b *testing.B) {
	cl := redistest.StartCluster(b, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	keys := testKeys(100_000)
	val := "0123456789abcdef"
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			s := c.Stream(ctx, func(i int, v Value) error { n++; return okReply(v, nil) })
			for _, k := range keys {
				s.Set(k, val)
			}
			if _, err := s.Close(ctx); err != nil || n != len(keys) {
				b.Fatal(n, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/cmd")
	})
	b.Run("pipelines-10k", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for batch := range slices.Chunk(keys, 10_000) {
				p := c.Pipeline(NoTransaction)
				for _, k := range batch {
					p.Set(k, val)
				}
				replies, err := p.Exec(ctx)
				if err != nil || len(replies) != len(batch) {
					b.Fatal(len(replies), err)
				}
				for _, v := range replies {
					if err := okReply(v, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/cmd")
	})
}

// heldRig drives the redirections of a cluster stream by hand: its
// nodes are clients of addresses nothing listens on, never dialed; a
// chunk goes "in flight" by being moved to its node's list, and is
// answered with the replies the test gives. Slot 5's owner by the map is
// a; b imports it.
type heldRig struct {
	t    *testing.T
	cs   *clusterStream
	a, b *Client
}

const rigSlot = 5

func newHeldRig(t *testing.T) *heldRig {
	t.Helper()
	a, err := NewClient(Options{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := NewClient(Options{Addr: "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	r := &clusterRouter{opt: ClusterOptions{MaxRedirects: 5}, nodes: map[string]*Client{a.opt.Addr: a, b.opt.Addr: b}}
	r.slots[rigSlot], r.slots[rigSlot+2] = a, a
	cs := &clusterStream{
		s:      &Stream{},
		r:      r,
		held:   map[int]*heldSlot{},
		nodes:  map[*Client]*streamNode{},
		flight: make([]slotFlight, hashslot.Count),
	}
	cs.node(a) // a is node 1, b node 2
	cs.node(b)
	return &heldRig{t: t, cs: cs, a: a, b: b}
}

// queue takes a new command of slot into the stream, as take does, and
// returns its index: words, or INCR of a key of its own.
func (hr *heldRig) queue(slot int, words ...string) int {
	cs := hr.cs
	i := cs.done + cs.count
	if len(words) == 0 {
		words = []string{"INCR", "n" + strconv.Itoa(i)}
	}
	b := encodeWords(words...)
	cs.push(streamCmd{slot: int32(slot), size: int32(len(b)), meta: metaOf(lookupCommand(words[0], ""))})
	cs.place(i, -1, slot, b, true, cs.r.owner(slot))
	return i
}

// write puts every node's chunk of the pass in flight.
func (hr *heldRig) write() {
	for _, nd := range hr.cs.list {
		if ch := nd.out; ch != nil {
			nd.out, ch.sent = nil, time.Now()
			nd.inflight = append(nd.inflight, ch)
		}
	}
}

// answer answers the oldest chunk in flight on c with replies, one a
// command (ASKING's own OK is added), and releases what that frees.
func (hr *heldRig) answer(c *Client, replies ...string) {
	hr.t.Helper()
	nd := hr.cs.nodes[c]
	if len(nd.inflight) == 0 {
		hr.t.Fatalf("nothing in flight on %s", c.opt.Addr)
	}
	ch := nd.inflight[0]
	nd.inflight = nd.inflight[1:]
	if len(ch.cmds) != len(replies) {
		hr.t.Fatalf("the chunk on %s holds %v, answered with %d replies", c.opt.Addr, sent(ch), len(replies))
	}
	ch.replies = ch.replies[:0]
	for k, r := range replies {
		if ch.cmds[k].asking {
			ch.replies = append(ch.replies, resp.Value{Kind: resp.SimpleString, Str: "OK"})
		}
		v := resp.Value{Kind: resp.SimpleString, Str: r}
		if f := strings.Fields(r); f[0] == "ASK" || f[0] == "MOVED" || f[0] == "TRYAGAIN" {
			v.Kind = resp.Error
		}
		ch.replies = append(ch.replies, v)
	}
	hr.cs.take1(ch)
	hr.cs.release(context.Background())
}

// out describes what goes to c in this pass: each command's index, with
// a star when after ASKING.
func (hr *heldRig) out(c *Client) []string {
	if ch := hr.cs.nodes[c].out; ch != nil {
		return sent(ch)
	}
	return nil
}

func sent(ch *nodeChunk) []string {
	var out []string
	for _, cc := range ch.cmds {
		s := strconv.Itoa(cc.i)
		if cc.asking {
			s += "*"
		}
		out = append(out, s)
	}
	return out
}

// until releases, a millisecond apart, until command i goes to c in this
// pass, and returns what goes there: a command sent again for TRYAGAIN
// goes after a backoff.
func (hr *heldRig) until(c *Client, i int) []string {
	hr.t.Helper()
	for range 2000 {
		if out := hr.out(c); slices.Contains(out, strconv.Itoa(i)) {
			return out
		}
		hr.cs.touched = append(hr.cs.touched, rigSlot, rigSlot+2)
		hr.cs.release(context.Background())
		time.Sleep(time.Millisecond)
	}
	hr.t.Fatalf("command %d did not go to %s; %v did", i, c.opt.Addr, hr.out(c))
	return nil
}

const (
	askB = "ASK 5 127.0.0.1:2"
	try  = "TRYAGAIN Multiple keys request during rehashing of slot"
)

// A command that an ASK redirected, held behind an earlier command of its
// slot sent again for TRYAGAIN, forgets the ASK: once the earlier one has
// been answered, after a backoff, it goes to the slot's owner without
// ASKING. Sent with ASKING then, it could reach a node importing the slot
// in a later migration, which would take a key the source still holds.
func TestClusterStreamAskBehindTryAgain(t *testing.T) {
	hr := newHeldRig(t)
	hr.queue(rigSlot) // 0: refused with TRYAGAIN
	hr.queue(rigSlot) // 1: redirected by ASK
	hr.write()
	hr.answer(hr.a, try, askB)
	if got := hr.out(hr.b); got != nil {
		t.Fatalf("%v went to the importing node ahead of command 0, which waits", got)
	}
	if got := hr.until(hr.a, 0); !slices.Equal(got, []string{"0"}) {
		t.Fatalf("after the backoff, %v went to the owner; want command 0 alone", got)
	}
	hr.write()
	hr.answer(hr.a, "1")
	if got := hr.out(hr.b); got != nil {
		t.Errorf("%v went to the importing node after a wait", got)
	}
	if got := hr.out(hr.a); !slices.Equal(got, []string{"1"}) {
		t.Errorf("%v went to the owner; want command 1, without ASKING", got)
	}
}

// A command that an ASK redirected goes at once, after ASKING, though
// later commands of its slot are still on their way to the source; the
// slot's next commands wait for both, and go to the owner once every one
// has been answered. Waiting for the source's replies would keep the ASK
// through a wait; forgetting it then would send the command back to the
// source to be redirected again, and again as long as the stream keeps
// the slot busy.
func TestClusterStreamAskAtOnce(t *testing.T) {
	hr := newHeldRig(t)
	hr.queue(rigSlot) // 0
	hr.write()
	hr.queue(rigSlot) // 1, in a later chunk on the source
	hr.write()
	hr.answer(hr.a, askB)
	if got := hr.out(hr.b); !slices.Equal(got, []string{"0*"}) {
		t.Fatalf("%v went to the importing node; want command 0 at once, after ASKING", got)
	}
	hr.queue(rigSlot) // 2: waits for 1 on a and 0 on b
	if got := hr.out(hr.a); got != nil {
		t.Fatalf("%v went to the owner while commands of the slot are on two nodes", got)
	}
	hr.write()
	hr.answer(hr.a, askB)
	if got := hr.out(hr.b); !slices.Equal(got, []string{"1*"}) {
		t.Fatalf("%v went to the importing node; want command 1 at once, behind 0", got)
	}
	hr.write()
	hr.answer(hr.b, "1")
	if got := hr.out(hr.a); got != nil {
		t.Fatalf("%v went to the owner while command 1 is in flight", got)
	}
	hr.answer(hr.b, "2")
	if got := hr.out(hr.a); !slices.Equal(got, []string{"2"}) {
		t.Fatalf("%v went to the owner; want command 2, once the slot's commands were answered", got)
	}
	if f := hr.cs.flight[rigSlot]; f.n != 1 || f.ask != 0 {
		t.Errorf("slot in flight %+v, want one command on the owner alone", f)
	}
}

// An ASK read long after its command was sent is not followed: the
// migration it names may have ended, and another begun with the node it
// names importing the slot again. The command goes to the slot's owner.
func TestClusterStreamStaleAsk(t *testing.T) {
	hr := newHeldRig(t)
	hr.queue(rigSlot) // 0
	hr.write()
	hr.cs.nodes[hr.a].inflight[0].sent = time.Now().Add(-2 * askFreshFor)
	hr.answer(hr.a, askB)
	if got := hr.out(hr.b); got != nil {
		t.Fatalf("%v went to the importing node after a stale ASK", got)
	}
	if got := hr.out(hr.a); !slices.Equal(got, []string{"0"}) {
		t.Fatalf("%v went to the owner; want command 0, without ASKING", got)
	}
}

// A backoff holds back the commands of its slot, not an ASK of another
// one: that goes at once, the refused command after the backoff.
func TestClusterStreamAskBesideTryAgain(t *testing.T) {
	hr := newHeldRig(t)
	hr.queue(rigSlot + 2) // 0: refused with TRYAGAIN
	hr.queue(rigSlot)     // 1: redirected by ASK
	hr.write()
	hr.answer(hr.a, try, askB)
	if got := hr.out(hr.b); !slices.Equal(got, []string{"1*"}) {
		t.Fatalf("%v went to the importing node; want command 1 at once, after ASKING", got)
	}
	if got := hr.until(hr.a, 0); !slices.Equal(got, []string{"0"}) {
		t.Fatalf("after the backoff %v went to the owner; want command 0", got)
	}
}

// A multi-key command refused with TRYAGAIN is not sent again once a
// later command on one of its keys, already on its way, has run: it
// keeps its TRYAGAIN as its reply (nothing of it ran). Sent again, it
// would overwrite that command's write, or a read would have missed it.
// A later command on other keys does not stop it.
func TestClusterStreamOvertaken(t *testing.T) {
	hr := newHeldRig(t)
	hr.queue(rigSlot, "MSET", "x", "1", "y", "1")   // 0: refused
	hr.queue(rigSlot, "GET", "z")                   // 1: other keys
	hr.queue(rigSlot, "MSET", "u", "2", "v", "2")   // 2: refused
	hr.queue(rigSlot, "SET", "v", "3")              // 3: on one of its keys
	hr.queue(rigSlot+2, "MSET", "x", "4", "y", "4") // 4: refused, in another slot
	hr.queue(rigSlot+2, "GET", "z")                 // 5
	hr.write()
	hr.answer(hr.a, try, "z", try, "OK", try, "z")
	cs := hr.cs
	if e := cs.entry(2); !e.final || e.reply.Kind != resp.Error || !strings.HasPrefix(e.reply.Str, "TRYAGAIN") {
		t.Fatalf("command 2, overtaken, has reply %+v (final %v); want its TRYAGAIN", e.reply, e.final)
	}
	for _, i := range []int{0, 4} {
		if e := cs.entry(i); e.final {
			t.Errorf("command %d has reply %+v; want it sent again", i, e.reply)
		}
	}
	hr.until(hr.a, 0)
	hr.until(hr.a, 4)
	if got := hr.out(hr.a); slices.Contains(got, "2") {
		t.Errorf("after the backoff %v went to the owner; want commands 0 and 4, not 2", got)
	}
}

// heldFront, the decision of what of a slot's held commands goes now.
func TestHeldFront(t *testing.T) {
	a, b, c := &Client{}, &Client{}, &Client{}
	names := map[*Client]string{a: "a", b: "b", c: "c", nil: "-"}
	asked := func(to *Client) heldCmd { return heldCmd{ask: to} }
	plain := heldCmd{}
	again := heldCmd{again: true}
	for _, tc := range []struct {
		name     string
		cmds     []heldCmd
		owner    *Client
		inFlight bool
		askTo    *Client
		paused   bool
		n        int
		to       *Client
	}{
		{"those for the owner", []heldCmd{plain, plain, asked(b), plain}, a, false, nil, false, 2, a},
		{"those of the ASK", []heldCmd{asked(b), asked(b), plain}, a, false, nil, false, 2, b},
		{"an ASK behind one for the owner waits", []heldCmd{plain, asked(b)}, a, false, nil, false, 1, a},
		{"nothing behind one sent again", []heldCmd{again, plain}, a, false, nil, false, 1, a},
		{"not that one before its backoff", []heldCmd{plain, again, plain}, a, false, nil, true, 1, a},
		{"nor alone", []heldCmd{again, asked(b)}, a, false, nil, true, 0, nil},
		{"no owner known", []heldCmd{plain}, nil, false, nil, false, 0, nil},
		{"an ASK needs no owner", []heldCmd{asked(b), plain}, nil, false, nil, false, 1, b},
		{"in flight: only ASKs at the front", []heldCmd{asked(b), asked(b), plain}, a, true, nil, false, 2, b},
		{"in flight: nothing for the owner", []heldCmd{plain, asked(b)}, a, true, nil, false, 0, nil},
		{"in flight: not before one sent again", []heldCmd{again, asked(b)}, a, true, nil, false, 0, nil},
		{"in flight: behind earlier ASKs to the same node", []heldCmd{asked(b)}, a, true, b, false, 1, b},
		{"in flight: not to another node than earlier ASKs", []heldCmd{asked(c)}, a, true, b, false, 0, nil},
		{"in flight: one node at a time", []heldCmd{asked(b), asked(c)}, a, true, nil, false, 1, b},
	} {
		n, to := heldFront(tc.cmds, tc.owner, tc.inFlight, tc.askTo, tc.paused)
		if n != tc.n || to != tc.to {
			t.Errorf("%s: %d to %s, want %d to %s", tc.name, n, names[to], tc.n, names[tc.to])
		}
	}
}

// A write for every master in a stream, refused by one master (OOM) and
// run by the others, is handed to each with a reply of unknown outcome,
// as when it is called alone: the refusal alone would read as not
// applied. Close reports it as the first command's error.
func testClusterStreamPartlyRefused(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	refusing := cl.Masters[2]
	var key string
	for slot := 0; key == ""; slot += 1000 {
		owner, err := cl.SlotOwner(slot)
		if err != nil {
			t.Fatal(err)
		}
		if owner != refusing {
			key = keyIn(slot, "refused:")
		}
	}
	allow := refuseWrites(t, refusing)
	var got []Value
	s := c.Stream(ctx, func(i int, v Value) error {
		got = append(got, v)
		return nil
	})
	s.FunctionLoad("#!lua name=streamlib\nredis.register_function('streamf', function() return 1 end)").
		Set(key, 1).
		DBSize()
	n, err := s.Close(ctx)
	allow()
	if n != 3 || len(got) != 3 {
		t.Fatalf("Close = %d, %v, with %d replies handed out; want 3", n, err, len(got))
	}
	refusal := got[0].Err()
	wantPartlyRun(t, "the reply of FUNCTION LOAD refused by one master of three", refusal, "1 of 3")
	wantOOM(t, "the reply of FUNCTION LOAD", refusal)
	wantPartlyRun(t, "Close's error", err, "1 of 3")
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 0 || ce.Command != "FUNCTION LOAD" {
		t.Errorf("Close's error = %#v, want a *CommandError for command 0, FUNCTION LOAD", err)
	}
	if s, err := got[1].Text(); err != nil || s != "OK" {
		t.Errorf("SET = %q, %v; want OK", s, err)
	}
	if _, err := got[2].Int64(); err != nil {
		t.Errorf("DBSIZE: %v", err)
	}
	if _, err := c.Do(ctx, "FUNCTION", "FLUSH"); err != nil {
		t.Fatal(err)
	}
}

// sortFrom puts the commands of a chunk from a mark on in the stream's
// order, each after its ASKING, leaving those before the mark as they
// are, and the parts of one command in their order.
func TestChunkSortFrom(t *testing.T) {
	ch := &nodeChunk{}
	add := func(i, leg int, asking bool, words ...string) {
		if asking {
			ch.buf = append(ch.buf, askingCmd...)
			ch.asks++
		}
		start := len(ch.buf)
		ch.buf = append(ch.buf, encodeWords(words...)...)
		ch.cmds = append(ch.cmds, chunkCmd{i: i, leg: leg, start: start, end: len(ch.buf), asking: asking})
	}
	add(9, -1, false, "SET", "x", "9")
	add(5, -1, true, "SET", "a", "5")
	add(7, 0, false, "DEL", "b")
	add(7, 1, false, "DEL", "c")
	add(2, -1, false, "FLUSHALL")
	add(6, -1, true, "SET", "a", "6")
	ch.sortFrom(1)
	want := &nodeChunk{}
	ch, got := want, ch
	add(9, -1, false, "SET", "x", "9")
	add(2, -1, false, "FLUSHALL")
	add(5, -1, true, "SET", "a", "5")
	add(6, -1, true, "SET", "a", "6")
	add(7, 0, false, "DEL", "b")
	add(7, 1, false, "DEL", "c")
	if string(got.buf) != string(want.buf) || !slices.Equal(got.cmds, want.cmds) || got.asks != want.asks {
		t.Errorf("sorted chunk\n%q %+v\nwant\n%q %+v", got.buf, got.cmds, want.buf, want.cmds)
	}
}

// A command held back because its master could not be reached, in the
// chunk of that master with a later command for every master, is sent
// once the master can be reached: that later command, which was not
// written either, goes after it, as the stream's order has it.
func TestClusterStreamUnreachedBeforeFanOut(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	x := cl.Masters[1]
	var d net.Dialer
	var cut atomic.Int32 // dials to x still to fail
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == x.Addr && cut.Add(-1) >= 0 {
			return nil, fmt.Errorf("dials to %s are cut", addr)
		}
		return d.DialContext(ctx, network, addr)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: []string{cl.Masters[0].Addr}, Options: Options{Dialer: dial, MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Set(ctx, keyIn(7, "unreachedfan:"), "a"); err != nil {
		t.Fatal(err)
	}
	cut.Store(1)
	var got []Value
	s := c.Stream(ctx, func(i int, v Value) error {
		got = append(got, v)
		return nil
	})
	s.Set(keyIn(8000, "unreachedfan:"), "b").DBSize()
	if _, err := s.Close(ctx); err != nil || len(got) != 2 {
		t.Fatalf("Close = %v, replies %v; want SET and DBSIZE through", err, got)
	}
	if n, err := got[1].Int64(); got[0].String() != "OK" || err != nil || n != 2 {
		t.Errorf("SET, DBSIZE = %v, %v; want OK, 2", got[0], got[1])
	}
	if cut.Load() >= 0 {
		t.Errorf("no dial to %s was cut: nothing tested", x.Addr)
	}
}

// TestClusterStreamStoppedBetweenPasses: the stream's context ends between
// two passes while a node still has commands on their way, held back by a
// blocking command: the pass that fails to go out stops the stream, but
// Close still waits for those in flight, with its own context, and hands
// out their replies: they ran. Before, Close took the pass that could not
// be sent for a failed connection, dropped every reply still to come and
// closed the connections.
func TestClusterStreamStoppedBetweenPasses(t *testing.T) {
	t.Parallel()
	c, ctx := connectedCluster(t)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := 0
	s := c.Stream(sctx, func(i int, v Value) error {
		if i != seen {
			t.Errorf("reply %d handed out when %d was due", i, seen)
		}
		seen++
		return nil
	})
	s.BLPop(0.5, "between:q")
	for i := 0; s.cl.written == 0 && i < 100_000; i++ {
		s.Incr("between:" + strconv.Itoa(i%1000))
	}
	written := s.cl.written
	if written == 0 || s.Err() != nil {
		t.Fatalf("after queueing: %d written, Err %v; want a pass out", written, s.Err())
	}
	cancel()
	for i := 0; s.Err() == nil && i < 1_000_000; i++ {
		s.Incr("between:" + strconv.Itoa(i%1000))
	}
	if !errors.Is(s.Err(), context.Canceled) {
		t.Fatalf("Err = %v once the stream's context ended; want context.Canceled", s.Err())
	}
	n, err := s.Close(ctx)
	if n != written || !errors.Is(err, context.Canceled) || seen != written {
		t.Fatalf("Close = %d, %v; each saw %d replies; want the %d written, context.Canceled, and each to see them all", n, err, seen, written)
	}
	total := 0
	for i := range 1000 {
		v, err := c.Get(ctx, "between:"+strconv.Itoa(i))
		if err != nil && !errors.Is(err, ErrNil) {
			t.Fatal(err)
		}
		k, _ := strconv.Atoi(v)
		total += k
	}
	if total != written-1 {
		t.Fatalf("the server ran %d INCRs; %d were written", total, written-1)
	}
}

// testClusterStreamPartLost: one master holds the writes of a stream
// (CLIENT PAUSE WRITE) while the other masters answer theirs, until the
// context of Close ends, or until the held master's connection is
// killed. each still gets a reply for every command, in the stream's
// order: those the other masters gave, and for each command the held
// master had, an error reply of unknown outcome. The other masters' data
// shows that what they answered ran.
func testClusterStreamPartLost(t *testing.T, cl *redistest.Cluster, c *Client) {
	for _, kill := range []bool{false, true} {
		name := "deadline"
		if kill {
			name = "kill"
		}
		t.Run(name, func(t *testing.T) { clusterStreamPartLost(t, cl, c, kill) })
	}
}

func clusterStreamPartLost(t *testing.T, cl *redistest.Cluster, c *Client, kill bool) {
	ctx := streamCtx(t)
	// Masters[i] serves the i-th third of the slots.
	a, a2 := keyIn(100, "slost:a"), keyIn(101, "slost:a")
	b, b2 := keyIn(6000, "slost:b"), keyIn(6001, "slost:b")
	k, k2 := keyIn(12000, "slost:c"), keyIn(12001, "slost:c")
	if _, err := c.Del(ctx, a, a2, b, b2, k, k2); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, b2, "x"); err != nil {
		t.Fatal(err)
	}
	held := cl.Masters[1]
	known := clientIDs(t, held)
	unpause := pauseWrites(t, held)
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if kill {
		cctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	type reply struct {
		i int
		v Value
	}
	var got []reply
	s := c.Stream(ctx, func(i int, v Value) error {
		got = append(got, reply{i, v})
		return nil
	})
	s.Set(a, "1"). // 0: Masters[0]
			Set(b, "1"). // 1: held
			Set(k, "1"). // 2: Masters[2]
			Del(a2, b2). // 3: split over Masters[0] and the held one
			MGet(a, k).  // 4: split over Masters[0] and Masters[2]
			Incr(k2).    // 5: Masters[2]
			Set(b2, "2") // 6: held
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Close(cctx)
		done <- result{n, err}
	}()
	if kill {
		// Only the stream's connection, which holds its part: the
		// client's idle ones stay as they are.
		if err := killHeld(held, known, 4000); err != nil {
			t.Fatal(err)
		}
	}
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
	if res.n != 7 || OutcomeOf(res.err) != OutcomeUnknown || !strings.Contains(fmt.Sprint(res.err), held.Addr) ||
		!kill && !errors.Is(res.err, context.DeadlineExceeded) {
		t.Fatalf("Close with a master held = %d, %v (%v); want 7 sent and an error of unknown outcome naming %s", res.n, res.err, OutcomeOf(res.err), held.Addr)
	}
	if len(got) != 7 {
		t.Fatalf("each got %d replies %v, want 7: the other masters' replies were dropped", len(got), got)
	}
	for j, r := range got {
		if r.i != j {
			t.Fatalf("reply %d handed out at position %d: %v", r.i, j, got)
		}
	}
	for i, want := range map[int]string{0: "OK", 2: "OK", 4: "[1 1]", 5: "1"} {
		if v := got[i].v.String(); v != want {
			t.Errorf("reply %d = %s, want %s", i, v, want)
		}
	}
	for _, i := range []int{1, 3, 6} {
		if e := got[i].v.Err(); e == nil || OutcomeOf(e) != OutcomeUnknown || !strings.Contains(e.Error(), held.Addr) {
			t.Errorf("reply %d of the held master = %v (%v); want an error of unknown outcome naming %s", i, got[i].v, OutcomeOf(e), held.Addr)
		}
	}
	// What the masters that answered ran is there.
	for _, kv := range []struct {
		srv       *redistest.Server
		key, want string
	}{{cl.Masters[0], a, "1"}, {cl.Masters[2], k, "1"}, {cl.Masters[2], k2, "1"}} {
		if v, err := kv.srv.Do("GET", kv.key); err != nil || v != kv.want {
			t.Errorf("GET %s on %s = %v, %v; want %s", kv.key, kv.srv.Addr, v, err, kv.want)
		}
	}
	// The held master's connection, with replies unread, was closed:
	// whether the paused server ran any of its commands is its own
	// affair, which is why their replies are of unknown outcome.
	unpause()
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	idle(t, c)
}

// testClusterStreamPartCut: the connection of a cluster stream to one
// master is killed (CLIENT KILL) after that master answered its first
// commands, a GET and its leg of an MGET split by slot, while it holds
// the next, a SET under CLIENT PAUSE WRITE. each gets the replies that
// master sent before the cut, in the stream's order with the others:
// the GET's value and the MGET whole. The commands it held, sent and not
// answered, are of unknown outcome, and Close fails as before. Before,
// the whole chunk of the cut master was of unknown outcome, its replies
// read included.
func testClusterStreamPartCut(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	// Masters[i] serves the i-th third of the slots.
	a := keyIn(100, "scut:a")
	b, b2, b3 := keyIn(6000, "scut:b"), keyIn(6001, "scut:b"), keyIn(6002, "scut:b")
	k, k2 := keyIn(12000, "scut:c"), keyIn(12001, "scut:c")
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.MSet(ctx, b2, "x", k, "y"); err != nil {
		t.Fatal(err)
	}
	held := cl.Masters[1]
	unpause := pauseWrites(t, held)
	var got []Value // written by each, read once Close has returned
	s := c.Stream(ctx, func(i int, v Value) error {
		if i != len(got) {
			return fmt.Errorf("reply %d handed out after %d replies", i, len(got))
		}
		got = append(got, v)
		return nil
	})
	s.Set(a, "1"). // 0: Masters[0]
			Get(b2).     // 1: held, answered
			MGet(b2, k). // 2: split over the held master, answered, and Masters[2]
			Set(b, "1"). // 3: held by the pause
			Incr(k2).    // 4: Masters[2]
			Set(b3, "1") // 5: held, behind 3
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Close(ctx)
		done <- result{n, err}
	}()
	killBlockedIn(t, ctx, held, "set")
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
	if res.n != 6 || OutcomeOf(res.err) != OutcomeUnknown || !strings.Contains(fmt.Sprint(res.err), held.Addr) {
		t.Fatalf("Close with a master's connection cut = %d, %v (%v); want 6 sent and an error of unknown outcome naming %s", res.n, res.err, OutcomeOf(res.err), held.Addr)
	}
	if len(got) != 6 {
		t.Fatalf("each got %d replies %v, want 6", len(got), got)
	}
	for i, want := range map[int]string{0: "OK", 1: "x", 4: "1"} {
		if v, err := got[i].String(), got[i].Err(); v != want || err != nil {
			t.Errorf("reply %d = %q, %v; want %s", i, v, err, want)
		}
	}
	if v, err := got[2].Strings(); err != nil || !slices.Equal(v, []string{"x", "y"}) {
		t.Errorf("reply 2, of an MGET whose legs were answered before the cut = %q, %v; want [x y]", v, err)
	}
	for _, i := range []int{3, 5} {
		if e := got[i].Err(); e == nil || OutcomeOf(e) != OutcomeUnknown {
			t.Errorf("reply %d, held by the cut master = %v (%v); want an error of unknown outcome", i, got[i], OutcomeOf(e))
		}
	}
	unpause()
	for _, key := range []string{b, b3} {
		if n, err := held.Do("EXISTS", key); err != nil || n != int64(0) {
			t.Errorf("EXISTS %s on the cut master = %v, %v; want 0: its connection was killed before it ran", key, n, err)
		}
	}
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	idle(t, c)
}

// testClusterStreamPartLostLoad: a stream of counters (see counters) over
// keys of every master, many passes long, loses its connection to one
// master part way: each still gets one reply for every command taken, in
// order. Those of the other masters are their counters' right values, and
// the servers hold what they say; those of the lost master are errors of
// unknown outcome, and those never written, errors that say they were not
// sent.
func testClusterStreamPartLostLoad(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := streamCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	lost := cl.Masters[1]
	l := counters{keys: keysOver("sloadlost:", 2000), rounds: 40}
	// By the client's layout, which FlushAll has just used.
	lostSlots := map[uint16]bool{}
	for _, k := range l.keys {
		if owner := c.cluster.owner(int(hashslot.Slot(k))); owner == nil || owner.opt.Addr == lost.Addr {
			lostSlots[hashslot.Slot(k)] = true
		}
	}
	onLost := func(i int) bool { return lostSlots[hashslot.Slot(l.keys[i%len(l.keys)])] }
	next, answered, unknown := 0, map[string]int{}, 0
	var bad error
	each := func(i int, v Value) error {
		if i != next && bad == nil {
			bad = fmt.Errorf("reply %d handed out when %d was due", i, next)
		}
		next = i + 1
		k := l.keys[i%len(l.keys)]
		switch e := v.Err(); {
		case e != nil && OutcomeOf(e) == OutcomeUnknown && onLost(i):
			unknown++
		case e != nil && OutcomeOf(e) == OutcomeNotSent:
		case e != nil:
			if bad == nil {
				bad = fmt.Errorf("reply %d (%s) = %v (%v)", i, k, e, OutcomeOf(e))
			}
		default:
			if err := l.check(i, v); err != nil && bad == nil {
				bad = err
			}
			answered[k] = i / len(l.keys) // the last round of k that ran
		}
		return nil
	}
	known := clientIDs(t, lost)
	unpause := pauseWrites(t, lost)
	s := c.Stream(ctx, each)
	// The kill comes from another goroutine, once several passes are out:
	// the queuing call waits for the held master once the window is full.
	var queued atomic.Int64
	killed := make(chan error, 1)
	go func() {
		for k := 0; k < 4000 && queued.Load() < 3*streamWindowCmds/4; k++ {
			time.Sleep(5 * time.Millisecond)
		}
		killed <- killHeld(lost, known, 4000)
	}()
	n := l.len()
	for i := 0; i < n && s.Err() == nil; i += 100 {
		l.queue(s, i, i+100)
		queued.Store(int64(i + 100))
	}
	if err := <-killed; err != nil {
		t.Fatal(err)
	}
	sent, err := s.Close(ctx)
	unpause()
	if err == nil || OutcomeOf(err) != OutcomeUnknown || !strings.Contains(err.Error(), lost.Addr) {
		t.Fatalf("Close = %d, %v (%v); want an error of unknown outcome naming %s", sent, err, OutcomeOf(err), lost.Addr)
	}
	if bad != nil {
		t.Fatal(bad)
	}
	if next < sent || unknown == 0 || len(answered) == 0 {
		t.Fatalf("each got %d replies, %d of unknown outcome, %d keys answered; %d commands were sent", next, unknown, len(answered), sent)
	}
	// The servers hold what the replies said ran, key by key.
	p := c.Pipeline(NoTransaction)
	keys := slices.Collect(maps.Keys(answered))
	for _, k := range keys {
		p.Get(k)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for j, k := range keys {
		if got, want := replies[j].String(), strconv.Itoa(min(answered[k], l.rounds-2)); got != want {
			t.Fatalf("after the stream %s = %s, want %s, as its replies said", k, got, want)
		}
	}
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	idle(t, c)
}

// clientIDs returns the ids of the connections srv has.
func clientIDs(t *testing.T, srv *redistest.Server) map[string]bool {
	ids := map[string]bool{}
	for _, cli := range serverClients(t, srv) {
		ids[cli["id"]] = true
	}
	return ids
}

// killHeld kills the connection of srv, a master whose writes are paused,
// that is not among known and holds a command that the pause holds back:
// a stream's, which the stream dialed. It looks up to tries times, 5ms
// apart; it may run on a goroutine other than the test's.
func killHeld(srv *redistest.Server, known map[string]bool, tries int) error {
	seen := ""
	for range tries {
		list, err := srv.Do("CLIENT", "LIST")
		if err != nil {
			return err
		}
		seen = fmt.Sprint(list)
		for line := range strings.Lines(seen) {
			f := map[string]string{}
			for _, w := range strings.Fields(line) {
				if k, v, ok := strings.Cut(w, "="); ok {
					f[k] = v
				}
			}
			if !known[f["id"]] && f["cmd"] != "client|list" && (f["argv-mem"] != "0" || f["qbuf"] != "0") {
				_, err := srv.Do("CLIENT", "KILL", "ID", f["id"])
				return err
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("no held command on a new connection to %s; last seen: %s", srv.Addr, seen)
}

// A stream that stops settles every command it took up to the last one
// it wrote: one held after TRYAGAIN keeps that refusal as its reply, one
// never written (its pass failed to go out) says it was not sent, one in
// flight on a node whose connection failed is of unknown outcome, and one
// answered keeps its answer. Left without a reply, the first would hold
// back the replies of all the others, which came. One taken after the
// last written gets none, as on one node.
func TestClusterStreamStoppedSettlesAll(t *testing.T) {
	hr := newHeldRig(t)
	cs := hr.cs
	cs.r.slots[rigSlot+4] = hr.b
	nd := cs.nodes[hr.b]
	hr.queue(rigSlot)     // 0: refused with TRYAGAIN, held
	hr.queue(rigSlot + 4) // 1: answered by b
	hr.write()
	hr.queue(rigSlot + 4) // 2: in a pass that did not go out
	cs.drop(nd.out)
	nd.out = nil
	hr.queue(rigSlot + 4) // 3: lost on b
	hr.write()
	nd.wrote = 4
	hr.queue(rigSlot + 4) // 4: taken after the last written
	hr.answer(hr.a, try)
	if hs := cs.held[rigSlot]; hs == nil || len(hs.cmds) != 1 || hs.cmds[0].i != 0 {
		t.Fatalf("held after TRYAGAIN: %+v", cs.held)
	}
	hr.answer(hr.b, "1")
	// b's connection fails before 3's reply.
	failure := &conn.Error{Op: "read", Err: errors.New("connection reset by the test")}
	nd.broken, nd.cause = true, failure
	cs.fail(failure)
	cs.lost(nd.inflight[0], failure, 0)
	nd.inflight = nil
	cs.drop(nd.out)
	nd.out = nil
	cs.settleUnsent(failure)
	want := []struct {
		reply   string
		fails   bool
		outcome Outcome
	}{
		{try, true, OutcomeNotApplied},
		{"1", false, 0},
		{"not sent before the stream stopped", true, OutcomeNotSent},
		{"in flight on 127.0.0.1:2 failed", true, OutcomeUnknown},
	}
	for i, w := range want {
		e := cs.entry(i)
		v := Value{e.reply}
		if !e.final {
			t.Errorf("command %d has no reply", i)
			continue
		}
		err := v.Err()
		switch {
		case !w.fails:
			if err != nil || v.String() != w.reply {
				t.Errorf("reply %d = %v, want %s", i, v, w.reply)
			}
		case err == nil || !strings.Contains(err.Error(), w.reply) || OutcomeOf(err) != w.outcome:
			t.Errorf("reply %d = %v (%v); want an error that says %q, of outcome %v", i, v, OutcomeOf(err), w.reply, w.outcome)
		}
	}
	if e := cs.entry(4); e.final {
		t.Errorf("command 4, taken after the last written, has a reply: %v", Value{e.reply})
	}
	if len(cs.held) != 0 {
		t.Errorf("held commands left: %+v", cs.held)
	}
}

// testClusterStreamPartLostFanOut: a command for every master (FUNCTION
// LOAD) whose leg one master holds in flight (DEBUG SLEEP) past the
// context of Close and runs when it wakes; reads on the two other
// masters come first.
//
// Refused: the two others refuse it with OOM. Its reply is of unknown
// outcome: that leg may have run, and did. Before, the refusal of the
// first master to answer was the reply, which read as not applied while
// the third master had loaded the library.
//
// Ran: the two others run it. Its reply is of unknown outcome and says
// that it reached two of the three masters only, as a cluster pipeline's
// does. Before, it said that one master had refused it, which the master
// that lost it did not.
func testClusterStreamPartLostFanOut(t *testing.T, cl *redistest.Cluster, c *Client) {
	t.Run("Refused", func(t *testing.T) { clusterStreamPartLostFanOut(t, cl, c, true) })
	t.Run("Ran", func(t *testing.T) { clusterStreamPartLostFanOut(t, cl, c, false) })
}

func clusterStreamPartLostFanOut(t *testing.T, cl *redistest.Cluster, c *Client, refuse bool) {
	ctx := streamCtx(t)
	const lib = "#!lua name=slostfan\nredis.register_function('slostfan', function() return 1 end)"
	a, b, k := keyIn(100, "slostfan:a"), keyIn(6000, "slostfan:b"), keyIn(12000, "slostfan:c")
	// A stream over every master first, so that the next one finds a
	// connection to each in the pool: a dial to the sleeping master
	// would fail before anything was written.
	warm := c.Stream(ctx, nil)
	warm.Set(a, "1").Set(b, "1").Set(k, "1")
	if _, err := warm.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var refusing []*redistest.Server
	if refuse {
		refusing = []*redistest.Server{cl.Masters[0], cl.Masters[2]}
	}
	for _, m := range refusing {
		m.MustDo(t, "CONFIG", "SET", "maxmemory", "1")
	}
	defer func() {
		for _, m := range refusing {
			m.MustDo(t, "CONFIG", "SET", "maxmemory", "0")
		}
	}()
	sleeper := cl.Masters[1]
	slept := make(chan error, 1)
	go func() {
		_, err := sleeper.Do("DEBUG", "SLEEP", "2")
		slept <- err
	}()
	// DEBUG SLEEP holds the server, and a command sent now waits for
	// it: it has begun once a PING goes unanswered for a while.
	if err := awaitAsleep(sleeper.Addr, 200); err != nil {
		t.Fatal(err)
	}
	var got []Value
	s := c.Stream(ctx, func(i int, v Value) error {
		got = append(got, v)
		return nil
	})
	// The reads first, so that the refusals are taken in before the
	// wait on the sleeping master ends: the nodes are waited for in the
	// order the stream first used them.
	s.Get(a).Get(k).Do("FUNCTION", "LOAD", lib)
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	n, err := s.Close(cctx)
	if n != 3 || OutcomeOf(err) != OutcomeUnknown || !strings.Contains(fmt.Sprint(err), sleeper.Addr) {
		t.Fatalf("Close = %d, %v (%v); want 3 sent and an error of unknown outcome naming %s", n, err, OutcomeOf(err), sleeper.Addr)
	}
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].String() != "1" || got[1].String() != "1" {
		t.Fatalf("each got %d replies %v, want 3, the reads 1 and 1", len(got), got)
	}
	e := got[2].Err()
	switch {
	case e == nil || OutcomeOf(e) != OutcomeUnknown:
		t.Errorf("FUNCTION LOAD lost on %s (others refusing it: %v) = %v (%v); want an error of unknown outcome", sleeper.Addr, refuse, got[2], OutcomeOf(e))
	case !refuse && (!strings.Contains(e.Error(), "reached 2 of 3 masters only") || strings.Contains(e.Error(), "refused")):
		t.Errorf("FUNCTION LOAD run by two masters and lost on %s = %q; want it to say it reached 2 of 3 masters only, and nothing of a refusal", sleeper.Addr, e)
	}
	// The sleeping master ran it once awake; the others did unless they
	// refused it.
	for _, m := range cl.Masters {
		v, err := m.Do("FUNCTION", "LIST", "LIBRARYNAME", "slostfan")
		if err != nil {
			t.Fatal(err)
		}
		loaded := fmt.Sprint(v) != "[]"
		if want := m == sleeper || !refuse; loaded != want {
			t.Errorf("library loaded on %s: %v, want %v", m.Addr, loaded, want)
		}
		m.MustDo(t, "FUNCTION", "FLUSH")
	}
	if _, err := c.Del(ctx, a, b, k); err != nil {
		t.Fatal(err)
	}
	idle(t, c)
}

// awaitAsleep returns once the server at addr leaves a PING unanswered
// for 50ms (DEBUG SLEEP holds it), trying up to tries times.
func awaitAsleep(addr string, tries int) error {
	for range tries {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		nc.SetDeadline(time.Now().Add(50 * time.Millisecond))
		_, err = nc.Write([]byte("*1\r\n$4\r\nPING\r\n"))
		if err == nil {
			_, err = nc.Read(make([]byte, 16))
		}
		nc.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("%s kept answering PING: DEBUG SLEEP did not begin", addr)
}
