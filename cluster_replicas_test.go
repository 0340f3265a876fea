package redpipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/topology"
	"github.com/redpipe/redpipe/redistest"
)

func TestClusterReplicaOptions(t *testing.T) {
	_, err := NewClusterClient(ClusterOptions{Addrs: []string{"127.0.0.1:1"}, SelectReplica: func(int, []string) int { return 0 }})
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Field != "SelectReplica" {
		t.Fatalf("SelectReplica without ReadFromReplicas: %v, want an *OptionError for SelectReplica", err)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ReadFromReplicas: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// replicaKeys are the keys the replica tests read: plain keys spread over
// the masters, and three of one slot for MGET. Each holds "v:" + its name.
var (
	replicaKeys    = []string{"rr:0", "rr:1", "rr:2", "rr:3", "rr:4", "rr:5", "rr:6", "rr:7", "rr:8", "rr:9", "rr:10", "rr:11"}
	replicaOneSlot = []string{"{rrm}:1", "{rrm}:2", "{rrm}:3"}
)

// The replica tests share one cluster of three masters with one replica
// each, run in turn; the last ones fail a master over and kill a replica.
func TestClusterReplicas(t *testing.T) {
	// Set before any client of this test runs; restored after the last.
	defer func(d time.Duration) { replicaRecheck = d }(replicaRecheck)
	replicaRecheck = 300 * time.Millisecond
	cl := redistest.StartCluster(t, 1)
	seedReplicaKeys(t, cl, append(slices.Clone(replicaKeys), replicaOneSlot...), "v:", 0)
	if masters := ownersOf(t, cl, replicaKeys); len(masters) != 3 {
		t.Fatalf("the keys are on %d masters, want 3", len(masters))
	}
	t.Run("Reads", func(t *testing.T) { testReplicaReads(t, cl) })
	t.Run("Transactions", func(t *testing.T) { testReplicaTransactions(t, cl) })
	t.Run("MixedPipeline", func(t *testing.T) { testReplicaMixedPipeline(t, cl) })
	t.Run("Selector", func(t *testing.T) { testReplicaSelector(t, cl) })
	t.Run("Off", func(t *testing.T) { testReplicaOff(t, cl) })
	t.Run("Moved", func(t *testing.T) { testReplicaMoved(t, cl) })
	t.Run("Concurrent", func(t *testing.T) { testReplicaConcurrent(t, cl) })
	t.Run("Loading", func(t *testing.T) { testReplicaLoading(t, cl) })
	t.Run("ScriptsLoadedOnMasters", func(t *testing.T) { testReplicaScripts(t, cl) })
	t.Run("ScriptErrorLookalikes", func(t *testing.T) { testReplicaScriptErrorLookalikes(t, cl) })
	t.Run("Failover", func(t *testing.T) { testReplicaFailover(t, cl) })
	t.Run("Killed", func(t *testing.T) { testReplicaKilled(t, cl) })
}

// testReplicaScriptErrorLookalikes: a read-only script that returns an
// error of its own starting as a replica's refusal does (CLUSTERDOWN,
// LOADING, MASTERDOWN, NOSCRIPT) has that error for its reply, from the
// replica it ran on. It was taken for the replica's refusal: the script
// ran again on the master, and the replica was left out of reads for
// replicaPause, its slots' reads going to the master meanwhile.
func testReplicaScriptErrorLookalikes(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	k := replicaOneSlot[0]
	master := ownerOfKey(t, cl, k)
	replica := replicaOf(t, cl, master)
	for _, text := range []string{"CLUSTERDOWN made up", "LOADING made up", "MASTERDOWN made up", "NOSCRIPT made up"} {
		resetStats(t, cl.Servers()...)
		v, err := c.Do(ctx, "EVAL_RO", "return redis.error_reply('"+text+"')", 1, k)
		var se *Error
		if err != nil || !errors.As(v.Err(), &se) || se.Msg != text {
			t.Errorf("EVAL_RO of a script that returns %q = %v, %v; want its error", text, v, err)
		}
		if got, err := c.Get(ctx, k); err != nil || got != "v:"+k {
			t.Fatalf("GET %s = %q, %v", k, got, err)
		}
		for _, want := range []struct {
			s   *redistest.Server
			cmd string
			n   int64
		}{{replica, "eval_ro", 1}, {master, "eval_ro", 0}, {replica, "get", 1}, {master, "get", 0}} {
			if n := calls(t, want.s, want.cmd); n != want.n {
				t.Errorf("after a script that returns %q: %s ran %s %d times, want %d", text, want.s.Addr, want.cmd, n, want.n)
			}
		}
	}
}

// seedReplicaKeys sets each key to prefix + key (padded to size bytes when
// size is larger) on its master, and waits until the master's replica has
// the writes.
func seedReplicaKeys(t *testing.T, cl *redistest.Cluster, keys []string, prefix string, size int) {
	t.Helper()
	byMaster := map[*redistest.Server][][]string{}
	for _, k := range keys {
		m := ownerOfKey(t, cl, k)
		v := prefix + k
		if len(v) < size {
			v += strings.Repeat(".", size-len(v))
		}
		byMaster[m] = append(byMaster[m], []string{"SET", k, v})
	}
	for m, cmds := range byMaster {
		replies, err := m.Pipeline(append(cmds, []string{"WAIT", "1", "10000"})...)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := replies[len(replies)-1].(int64); n < 1 {
			t.Fatalf("WAIT on %s: %v, want 1 replica", m.Addr, replies[len(replies)-1])
		}
	}
}

func ownerOfKey(t *testing.T, cl *redistest.Cluster, key string) *redistest.Server {
	t.Helper()
	m, err := cl.SlotOwner(int(hashslot.Slot(key)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ownersOf(t *testing.T, cl *redistest.Cluster, keys []string) map[*redistest.Server]bool {
	t.Helper()
	out := map[*redistest.Server]bool{}
	for _, k := range keys {
		out[ownerOfKey(t, cl, k)] = true
	}
	return out
}

func replicaOf(t *testing.T, cl *redistest.Cluster, master *redistest.Server) *redistest.Server {
	t.Helper()
	rs, err := cl.ReplicasOf(master)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("%s has %d replicas, want 1", master.Addr, len(rs))
	}
	return rs[0]
}

// newReplicaClient makes a cluster client with opt and waits until its
// layout has a replica to read from for every slot. A replica counts only
// once the cluster reports it online, which takes a write and some
// gossip, hence the generous bound.
func newReplicaClient(t *testing.T, cl *redistest.Cluster, opt ClusterOptions) *Client {
	t.Helper()
	opt.Addrs = cl.Addrs()[:1]
	c, err := NewClusterClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if opt.ReadFromReplicas {
		waitReaders(t, c)
	}
	return c
}

func waitReaders(t *testing.T, c *Client) {
	t.Helper()
	r := c.cluster
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		missing := 0
		if err := r.ready(ctx); err == nil {
			r.mu.RLock()
			for _, set := range r.readers {
				if set == nil {
					missing++
				}
			}
			leftOut := r.leftOut
			r.mu.RUnlock()
			r.refMu.Lock()
			inFlight := r.refreshing != nil
			r.refMu.Unlock()
			// A refresh still in flight, one the recheck of left-out
			// replicas started, may yet apply a layout read before they
			// were healthy.
			if missing == 0 && !leftOut && !inFlight && everyViewReady(t, r) {
				return
			}
			if inFlight {
				waitRefreshed(t, r)
				continue
			}
		}
		if err := r.awaitRefresh(ctx); err != nil && ctx.Err() != nil {
			t.Fatalf("after 60s, %d slots still have no replica to read from (last refresh: %v)", missing, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func resetStats(t *testing.T, servers ...*redistest.Server) {
	t.Helper()
	for _, s := range servers {
		s.MustDo(t, "CONFIG", "RESETSTAT")
	}
}

// calls returns how many times s ran cmd since its stats were reset, by
// INFO commandstats.
func calls(t *testing.T, s *redistest.Server, cmd string) int64 {
	t.Helper()
	return cmdStat(t, s, cmd, "calls")
}

// cmdStat returns one field of cmd's line in INFO commandstats, 0 if
// there is none.
func cmdStat(t *testing.T, s *redistest.Server, cmd, field string) int64 {
	t.Helper()
	info, _ := s.MustDo(t, "INFO", "commandstats").(string)
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, field+"="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("INFO commandstats on %s: %q", s.Addr, line)
				}
				return n
			}
		}
	}
	return 0
}

// everyViewReady tells whether every node of the last layout reports
// every replica ready to serve reads. The nodes learn a replica's
// replication offset by gossip: for a while after the first writes, some
// still report offset 0, and Redis 7.0 calls such a replica loading. A
// refresh that asks one of them, as the recheck of left-out replicas that
// an earlier refresh armed may do after waitReaders returns, would leave
// the replica out and send its slots' reads to the master.
func everyViewReady(t *testing.T, r *clusterRouter) bool {
	t.Helper()
	r.mu.RLock()
	known := slices.Clone(r.known)
	r.mu.RUnlock()
	for _, addr := range known {
		m, err := r.fetch(addr, true)
		if err != nil {
			return false
		}
		for _, s := range m.Shards {
			for _, n := range s.Replicas {
				if n.Health != topology.HealthOnline && n.Health != topology.HealthUnknown {
					return false
				}
			}
		}
	}
	return true
}

// readAll reads every test key with Get, MGet of one slot and a
// NoTransaction pipeline of Gets, and checks the values. It returns how
// many GET and MGET commands it sent.
func readAll(t *testing.T, ctx context.Context, c *Client) (gets, mgets int64) {
	t.Helper()
	for _, k := range replicaKeys {
		if v, err := c.Get(ctx, k); err != nil || v != "v:"+k {
			t.Errorf("Get(%s) = %q, %v", k, v, err)
		}
	}
	vs, err := c.MGet(ctx, replicaOneSlot...)
	if err != nil || fmt.Sprint(vs) != "[v:{rrm}:1 v:{rrm}:2 v:{rrm}:3]" {
		t.Errorf("MGet = %v, %v", vs, err)
	}
	p := c.Pipeline(NoTransaction)
	for _, k := range replicaKeys {
		p.Get(k)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range replicaKeys {
		if got := replies[i].String(); got != "v:"+k {
			t.Errorf("pipeline Get(%s) = %q", k, got)
		}
	}
	return 2 * int64(len(replicaKeys)), 1
}

func testReplicaReads(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	resetStats(t, cl.Servers()...)
	gets, mgets := readAll(t, ctx, c)
	var got, gotM int64
	for _, m := range cl.Masters {
		if n := calls(t, m, "get") + calls(t, m, "mget"); n != 0 {
			t.Errorf("master %s ran %d reads", m.Addr, n)
		}
		if n := calls(t, m, "readonly"); n != 0 {
			t.Errorf("master %s got READONLY %d times", m.Addr, n)
		}
		r := replicaOf(t, cl, m)
		n := calls(t, r, "get")
		if n == 0 {
			t.Errorf("replica %s ran no GET", r.Addr)
		}
		if calls(t, r, "readonly") == 0 {
			t.Errorf("replica %s got no READONLY", r.Addr)
		}
		got += n
		gotM += calls(t, r, "mget")
	}
	if got != gets || gotM != mgets {
		t.Errorf("the replicas ran %d GET and %d MGET, want %d and %d", got, gotM, gets, mgets)
	}

	// A script that may write, and a read that may block, go to the
	// master; their read-only forms to a replica.
	k := replicaOneSlot[0]
	master := ownerOfKey(t, cl, k)
	replica := replicaOf(t, cl, master)
	resetStats(t, cl.Servers()...)
	for _, cmd := range [][]any{
		{"EVAL_RO", "return redis.call('GET', KEYS[1])", 1, k},
		{"EVAL", "return redis.call('GET', KEYS[1])", 1, k},
		{"XREAD", "STREAMS", k + "s", "0"},
		{"XREAD", "BLOCK", 10, "STREAMS", k + "s", "$"},
	} {
		if _, err := c.Do(ctx, cmd...); err != nil {
			t.Errorf("%v: %v", cmd[0], err)
		}
	}
	for _, want := range []struct {
		s       *redistest.Server
		cmd     string
		n       int64
		comment string
	}{
		{replica, "eval_ro", 1, "EVAL_RO on the replica"},
		{master, "eval_ro", 0, "EVAL_RO on the master"},
		{master, "eval", 1, "EVAL on the master"},
		{replica, "eval", 0, "EVAL on the replica"},
		{replica, "xread", 1, "XREAD on the replica"},
		{master, "xread", 1, "XREAD BLOCK on the master"},
	} {
		if n := calls(t, want.s, want.cmd); n != want.n {
			t.Errorf("%s: %d, want %d", want.comment, n, want.n)
		}
	}
}

func testReplicaTransactions(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	k := replicaKeys[0]
	master := ownerOfKey(t, cl, k)
	resetStats(t, cl.Servers()...)
	replies, err := c.Pipeline().Get(k).Exec(ctx)
	if err != nil || replies[0].String() != "v:"+k {
		t.Errorf("transaction: %v, %v", replies, err)
	}
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		v, err := tx.Get(ctx, k)
		if err != nil {
			return err
		}
		tx.Multi().Get(k).Set(k, v)
		return nil
	}, k)
	if err != nil {
		t.Errorf("Transaction: %v", err)
	}
	tx, err := c.Watch(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := tx.Get(ctx, k); err != nil || v != "v:"+k {
		t.Errorf("Get on the Watch handle = %q, %v", v, err)
	}
	tx.Close()
	// One GET in the pipeline, two in Transaction, one after Watch.
	if n := calls(t, master, "get"); n != 4 {
		t.Errorf("the master ran %d GET, want 4", n)
	}
	if n := calls(t, master, "watch"); n != 2 {
		t.Errorf("the master ran %d WATCH, want 2", n)
	}
	for _, r := range cl.Replicas {
		if n := calls(t, r, "get") + calls(t, r, "watch"); n != 0 {
			t.Errorf("replica %s ran %d GET or WATCH", r.Addr, n)
		}
	}
}

func testReplicaMixedPipeline(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	// written and sameShard are on one master, in different slots; other
	// is on another master.
	written := replicaKeys[0]
	mw := ownerOfKey(t, cl, written)
	var sameShard, other string
	for _, k := range replicaKeys[1:] {
		switch m := ownerOfKey(t, cl, k); {
		case m == mw && sameShard == "" && hashslot.Slot(k) != hashslot.Slot(written):
			sameShard = k
		case m != mw && other == "":
			other = k
		}
	}
	if sameShard == "" || other == "" {
		t.Fatal("no keys to mix")
	}
	mo := ownerOfKey(t, cl, other)
	resetStats(t, cl.Servers()...)
	replies, err := c.Pipeline(NoTransaction).Get(written).Set(written, "new").Get(written).Get(sameShard).Get(other).Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("[v:%s OK new v:%s v:%s]", written, sameShard, other)
	if got := fmt.Sprint(replies); got != want {
		t.Errorf("replies %s, want %s", got, want)
	}
	// The written slot stays on its master, reads and write in order; the
	// other reads go to the replicas.
	if s, g := calls(t, mw, "set"), calls(t, mw, "get"); s != 1 || g != 2 {
		t.Errorf("master %s ran %d SET and %d GET, want 1 and 2", mw.Addr, s, g)
	}
	if g := calls(t, replicaOf(t, cl, mw), "get"); g != 1 {
		t.Errorf("the replica of %s ran %d GET, want 1", mw.Addr, g)
	}
	if g := calls(t, mo, "get"); g != 0 {
		t.Errorf("master %s ran %d GET, want 0", mo.Addr, g)
	}
	if g := calls(t, replicaOf(t, cl, mo), "get"); g != 1 {
		t.Errorf("the replica of %s ran %d GET, want 1", mo.Addr, g)
	}
	// A write the keys of which cannot be told keeps every read on the
	// masters.
	resetStats(t, cl.Servers()...)
	if _, err := c.Pipeline(NoTransaction).Get(other).Do("FLUSHALL").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if g := calls(t, mo, "get"); g != 1 {
		t.Errorf("with FLUSHALL in the pipeline, master %s ran %d GET, want 1", mo.Addr, g)
	}
	seedReplicaKeys(t, cl, append(slices.Clone(replicaKeys), replicaOneSlot...), "v:", 0)
}

func testReplicaSelector(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	var mu sync.Mutex
	var bad []string
	var called atomic.Int64
	pick := atomic.Int64{} // what the selector returns
	sel := func(slot int, replicas []string) int {
		called.Add(1)
		m, err := cl.SlotOwner(slot)
		if err == nil {
			r, err2 := cl.ReplicasOf(m)
			if err2 != nil || len(r) != 1 || !slices.Equal(replicas, []string{r[0].Addr}) {
				err = fmt.Errorf("slot %d: replicas %v, want those of %s", slot, replicas, m.Addr)
			}
		}
		if err != nil {
			mu.Lock()
			bad = append(bad, err.Error())
			mu.Unlock()
		}
		return int(pick.Load())
	}
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true, SelectReplica: sel})

	resetStats(t, cl.Servers()...)
	called.Store(0)
	gets, mgets := readAll(t, ctx, c)
	if n := called.Load(); n != gets+mgets {
		t.Errorf("the selector was called %d times, want %d", n, gets+mgets)
	}
	var onReplicas int64
	for _, r := range cl.Replicas {
		onReplicas += calls(t, r, "get") + calls(t, r, "mget")
	}
	if onReplicas != gets+mgets {
		t.Errorf("the replicas ran %d reads, want %d", onReplicas, gets+mgets)
	}

	// An index out of range reads from the master.
	for _, i := range []int64{-1, 1, 1 << 40} {
		resetStats(t, cl.Servers()...)
		pick.Store(i)
		called.Store(0)
		gets, mgets := readAll(t, ctx, c)
		if called.Load() == 0 {
			t.Errorf("index %d: the selector was not called", i)
		}
		var onMasters int64
		for _, m := range cl.Masters {
			onMasters += calls(t, m, "get") + calls(t, m, "mget")
		}
		for _, r := range cl.Replicas {
			if n := calls(t, r, "get") + calls(t, r, "mget"); n != 0 {
				t.Errorf("index %d: replica %s ran %d reads", i, r.Addr, n)
			}
		}
		if onMasters != gets+mgets {
			t.Errorf("index %d: the masters ran %d reads, want %d", i, onMasters, gets+mgets)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bad[:min(len(bad), 3)] {
		t.Error(b)
	}
}

func testReplicaOff(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	resetStats(t, cl.Servers()...)
	c := newReplicaClient(t, cl, ClusterOptions{})
	gets, mgets := readAll(t, ctx, c)
	var onMasters int64
	for _, m := range cl.Masters {
		onMasters += calls(t, m, "get") + calls(t, m, "mget")
		if calls(t, m, "hello") == 0 {
			t.Errorf("no connection to master %s since the stats were reset", m.Addr)
		}
	}
	if onMasters != gets+mgets {
		t.Errorf("the masters ran %d reads, want %d", onMasters, gets+mgets)
	}
	for _, s := range cl.Servers() {
		if n := calls(t, s, "readonly"); n != 0 {
			t.Errorf("%s got READONLY %d times", s.Addr, n)
		}
	}
	for _, r := range cl.Replicas {
		if n := calls(t, r, "get") + calls(t, r, "mget"); n != 0 {
			t.Errorf("replica %s ran %d reads", r.Addr, n)
		}
	}
	if c.cluster.readers != nil || c.cluster.replicas != nil {
		t.Error("the router keeps replicas with ReadFromReplicas off")
	}
}

// A replica that answers LOADING (here reloading its data slowly with
// DEBUG RELOAD) sends the read to its master.
func testReplicaLoading(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	k := replicaKeys[0]
	master := ownerOfKey(t, cl, k)
	replica := replicaOf(t, cl, master)
	// Enough data for the replica to answer between keys while it loads
	// them, 50 ms each.
	var filler []string
	for i := 0; len(filler) < 60; i++ {
		if f := "rrfill:" + strconv.Itoa(i); ownerOfKey(t, cl, f) == master {
			filler = append(filler, f)
		}
	}
	seedReplicaKeys(t, cl, filler, "", 2048)
	if v, err := c.Get(ctx, k); err != nil || v != "v:"+k {
		t.Fatalf("Get before the reload = %q, %v", v, err)
	}
	replica.MustDo(t, "CONFIG", "SET", "loading-process-events-interval-bytes", "1024")
	replica.MustDo(t, "CONFIG", "SET", "key-load-delay", "50000")
	defer replica.Do("CONFIG", "SET", "key-load-delay", "0")
	reloaded := make(chan error, 1)
	go func() {
		v, err := replica.Do("DEBUG", "RELOAD")
		if e, ok := v.(redistest.ReplyError); ok && err == nil {
			err = e
		}
		reloaded <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var v any
		vs, err := replica.Pipeline([]string{"READONLY"}, []string{"GET", k})
		if err == nil {
			v = vs[1]
		}
		if e, ok := v.(redistest.ReplyError); ok && e.Prefix() == "LOADING" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never answered LOADING (last: %v, %v)", v, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	resetStats(t, cl.Masters...)
	if v, err := c.Get(ctx, k); err != nil || v != "v:"+k {
		t.Errorf("Get while the replica loads = %q, %v", v, err)
	}
	replies, err := c.Pipeline(NoTransaction).Get(k).Get(replicaKeys[1]).Exec(ctx)
	if err != nil || replies[0].String() != "v:"+k {
		t.Errorf("pipeline while the replica loads: %v, %v", replies, err)
	}
	if n := calls(t, master, "get"); n < 2 {
		t.Errorf("master %s ran %d GET while its replica loaded, want at least 2", master.Addr, n)
	}
	r := c.cluster
	r.mu.RLock()
	_, down := r.down[r.replicas[replica.Addr]]
	r.mu.RUnlock()
	if !down {
		t.Error("the loading replica is not left out of reads")
	}
	replica.Do("CONFIG", "SET", "key-load-delay", "0")
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("DEBUG RELOAD: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("DEBUG RELOAD did not end")
	}
}

// After a failover the promoted replica takes writes and its former master
// serves reads; a client that knew the old roles gets there.
func testReplicaFailover(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	k := replicaKeys[0]
	slot := int(hashslot.Slot(k))
	old := ownerOfKey(t, cl, k)
	fctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	promoted, err := cl.Failover(fctx, old)
	if err != nil {
		t.Fatal(err)
	}
	// The client's layout is the old one: writes reach the new master by
	// MOVED, reads and transactions succeed.
	if err := c.Set(ctx, k, "after"); err != nil {
		t.Fatalf("Set after the failover: %v", err)
	}
	if _, err := c.Pipeline().Get(k).Set(k, "v:"+k).Exec(ctx); err != nil {
		t.Fatalf("transaction after the failover: %v", err)
	}
	if promoted.MustDo(t, "GET", k) != "v:"+k {
		t.Error("the transaction did not reach the new master")
	}
	r := c.cluster
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := r.awaitRefresh(ctx); err != nil {
			t.Fatal(err)
		}
		r.mu.RLock()
		master, set := r.slots[slot], r.readers[slot]
		r.mu.RUnlock()
		if master.opt.Addr == promoted.Addr && set != nil && slices.Equal(set.addrs, []string{old.Addr}) {
			if r.isReplica(master) || !r.isReplica(set.nodes[0]) {
				t.Fatal("a master's client is a replica's, or the other way")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s the client routes slot %d to %s and reads it from %v", slot, master.opt.Addr, set)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The write replicated, reads now go to the former master.
	seedReplicaKeys(t, cl, []string{k}, "v:", 0)
	resetStats(t, cl.Servers()...)
	if v, err := c.Get(ctx, k); err != nil || v != "v:"+k {
		t.Errorf("Get = %q, %v", v, err)
	}
	if calls(t, old, "get") != 1 || calls(t, promoted, "get") != 0 {
		t.Errorf("the read did not go to the former master, now a replica")
	}
}

// A replica that is gone: reads of its slots go to their master. Once the
// cluster reports it failed, the layout leaves it out and is looked at
// again until it is back.
func testReplicaKilled(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	k := replicaKeys[0]
	master := ownerOfKey(t, cl, k)
	replica := replicaOf(t, cl, master)
	if v, err := c.Get(ctx, k); err != nil || v != "v:"+k {
		t.Fatalf("Get before the kill = %q, %v", v, err)
	}
	if err := replica.Kill(); err != nil {
		t.Fatal(err)
	}
	resetStats(t, cl.Masters...)
	for i := 0; i < 3; i++ {
		gets, mgets := readAll(t, ctx, c)
		if gets == 0 || mgets == 0 {
			t.Fatal("nothing read")
		}
	}
	if n := calls(t, master, "get"); n == 0 {
		t.Errorf("master %s ran no GET after its replica was killed", master.Addr)
	}
	r := c.cluster
	r.mu.RLock()
	_, down := r.down[r.replicas[replica.Addr]]
	r.mu.RUnlock()
	if !down {
		t.Error("the killed replica is not left out of reads")
	}

	// Reads go on; one after replicaPause fails again and refreshes the
	// layout, which soon has the replica failed.
	slot := int(hashslot.Slot(k))
	readsFrom := func() []string {
		r.mu.RLock()
		defer r.mu.RUnlock()
		if set := r.readers[slot]; set != nil {
			return set.addrs
		}
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(readsFrom()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s the layout still reads slot %d from %v", slot, readsFrom())
		}
		if v, err := c.Get(ctx, k); err != nil || v != "v:"+k {
			t.Fatalf("Get = %q, %v", v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Left out for its health: the layout is refreshed without any call,
	// and the replica, back, serves reads again once its pause is over.
	before := r.refreshes.Load()
	if err := replica.Restart(); err != nil {
		t.Fatal(err)
	}
	seedReplicaKeys(t, cl, replicaKeys, "v:", 0)
	for !slices.Equal(readsFrom(), []string{replica.Addr}) || r.readNode(slot) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s the layout reads slot %d from %v, want %s back", slot, readsFrom(), replica.Addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.refreshes.Load() == before {
		t.Error("no refresh brought the replica back")
	}
	resetStats(t, replica)
	if v, err := c.Get(ctx, k); err != nil || v != "v:"+k {
		t.Errorf("Get = %q, %v", v, err)
	}
	if n := calls(t, replica, "get"); n != 1 {
		t.Errorf("the replica back ran %d GET, want 1", n)
	}
}

// Reads from many goroutines while the layout is refreshed again and
// again: every read gets its value (and -race sees the sharing).
func testReplicaConcurrent(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	stop := make(chan struct{})
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		for i := 0; i < 50; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			c.cluster.triggerRefresh()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				k := replicaKeys[(g+i)%len(replicaKeys)]
				v, err := c.Get(ctx, k)
				if err == nil && v != "v:"+k {
					err = fmt.Errorf("Get(%s) = %q", k, v)
				}
				if err == nil {
					var replies []Value
					replies, err = c.Pipeline(NoTransaction).Get(k).MGet(replicaOneSlot...).Exec(ctx)
					if err == nil && replies[0].String() != "v:"+k {
						err = fmt.Errorf("pipeline Get(%s) = %v", k, replies[0])
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-refreshed
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A replica asked for a slot its master no longer serves answers MOVED,
// which the read follows to the slot's new master.
func testReplicaMoved(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	k := replicaKeys[5]
	slot := int(hashslot.Slot(k))
	from := ownerOfKey(t, cl, k)
	var to *redistest.Server
	for _, m := range cl.Masters {
		if m != from {
			to = m
			break
		}
	}
	fromReplica := replicaOf(t, cl, from)
	r := c.cluster
	r.mu.RLock()
	master, set := r.slots[slot], r.readers[slot]
	r.mu.RUnlock()
	if set == nil || !slices.Equal(set.addrs, []string{fromReplica.Addr}) {
		t.Fatalf("the client does not read slot %d from %s", slot, fromReplica.Addr)
	}
	mctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.MoveSlots(mctx, from, to, slot); err != nil {
		t.Fatal(err)
	}
	seedReplicaKeys(t, cl, []string{k}, "v:", 0) // for WAIT on to
	// The layout as it was before the move, should a refresh have come
	// in between.
	r.mu.Lock()
	r.slots[slot], r.readers[slot] = master, set
	r.mu.Unlock()
	resetStats(t, cl.Servers()...)
	if v, err := c.Get(ctx, k); err != nil || v != "v:"+k {
		t.Fatalf("Get after the slot moved = %q, %v", v, err)
	}
	if n := cmdStat(t, fromReplica, "get", "rejected_calls"); n != 1 {
		t.Errorf("the replica of the former master rejected %d GET, want 1 (MOVED)", n)
	}
	if n := calls(t, fromReplica, "get"); n != 0 {
		t.Errorf("the replica of the former master ran %d GET", n)
	}
	if n := calls(t, to, "get"); n != 1 {
		t.Errorf("the new master ran %d GET, want 1", n)
	}
}

// SCRIPT LOAD goes to the masters only, so a replica may lack a script
// its master has: EVALSHA_RO, a read sent to a replica, that meets
// NOSCRIPT there goes to the master, alone and in a pipeline, and the
// replica still serves reads. A script no master has either is NOSCRIPT,
// as the master says.
func testReplicaScripts(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true})
	k := replicaOneSlot[0]
	master := ownerOfKey(t, cl, k)
	replica := replicaOf(t, cl, master)
	sha, err := c.ScriptLoad(ctx, "return redis.call('GET', KEYS[1]) .. ' by script'")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(replica.MustDo(t, "SCRIPT", "EXISTS", sha)); got != "[0]" {
		t.Fatalf("SCRIPT EXISTS on the replica = %s: the replica has the script, nothing to test", got)
	}
	resetStats(t, master, replica)
	want := "v:" + k + " by script"
	if v, err := c.EvalShaRO(ctx, sha, 1, k); err != nil || v.String() != want {
		t.Errorf("EvalShaRO = %v, %v; want %q", v, err, want)
	}
	replies, err := c.Pipeline(NoTransaction).EvalShaRO(sha, 1, k).Get(k).Exec(ctx)
	if err != nil || len(replies) != 2 || replies[0].String() != want {
		t.Errorf("EVALSHA_RO in a pipeline = %v, %v; want %q first", replies, err, want)
	}
	if n := calls(t, master, "evalsha_ro"); n != 2 {
		t.Errorf("the master ran EVALSHA_RO %d times, want 2", n)
	}
	var se *Error
	if _, err := c.EvalShaRO(ctx, strings.Repeat("0", 40), 1, k); !errors.As(err, &se) || se.Prefix != "NOSCRIPT" {
		t.Errorf("EvalShaRO of a script no node has = %v, want NOSCRIPT", err)
	}
	resetStats(t, master, replica)
	if v, err := c.Get(ctx, k); err != nil || v != "v:"+k {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if calls(t, replica, "get") != 1 {
		t.Errorf("GET after the NOSCRIPT of the replica did not go to the replica: it is left out of reads")
	}
}

// The reads of one slot in a pipeline go to one node, whichever replica is
// chosen for the first: spread over a shard's replicas, they would go one
// round trip after another, as the legs of a slot go in one round only
// while they share a node.
func TestClusterReplicaPipelineReadsOneNodePerSlot(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 2)
	ctx := clusterCtx(t)
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = "{rps}:" + strconv.Itoa(i)
	}
	master := ownerOfKey(t, cl, keys[0])
	cmds := make([][]string, 0, len(keys)+1)
	for _, k := range keys {
		cmds = append(cmds, []string{"SET", k, "v:" + k})
	}
	replies, err := master.Pipeline(append(cmds, []string{"WAIT", "2", "10000"})...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := replies[len(replies)-1].(int64); n < 2 {
		t.Fatalf("WAIT on %s: %v, want 2 replicas", master.Addr, replies[len(replies)-1])
	}
	replicas, err := cl.ReplicasOf(master)
	if err != nil || len(replicas) != 2 {
		t.Fatalf("replicas of %s: %v, %v; want 2", master.Addr, replicas, err)
	}
	// Round robin: each call picks the replica the last did not.
	var turn atomic.Int64
	roundRobin := func(_ int, rs []string) int { return int(turn.Add(1)) % len(rs) }
	for _, opt := range []ClusterOptions{
		{ReadFromReplicas: true},
		{ReadFromReplicas: true, SelectReplica: roundRobin},
	} {
		c := newReplicaClient(t, cl, opt)
		for attempt := 0; attempt < 3; attempt++ {
			resetStats(t, replicas...)
			p := c.Pipeline(NoTransaction)
			for _, k := range keys {
				p.Get(k)
			}
			vs, err := p.Exec(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i, k := range keys {
				if got := vs[i].String(); got != "v:"+k {
					t.Fatalf("Get(%s) = %q", k, got)
				}
			}
			var ran []int64
			for _, r := range replicas {
				ran = append(ran, calls(t, r, "get"))
			}
			if !slices.Contains(ran, int64(len(keys))) {
				t.Fatalf("selector set %t, attempt %d: the replicas ran %v GET, want all %d on one", opt.SelectReplica != nil, attempt, ran, len(keys))
			}
		}
	}
}

// A map that leaves no replica out calls off the refresh that an earlier
// one, which left some out for their health, arranged: it would look for
// nothing, and it came at any time after the replicas were all in, as
// during a failover a test then made, whose new master the client then
// knew before the test could see it stale.
func TestReplicaRecheckCalledOffWhenNoneLeftOut(t *testing.T) {
	defer func(d time.Duration) { replicaRecheck = d }(replicaRecheck)
	replicaRecheck = 200 * time.Millisecond
	cl := sharedCluster(t)
	c := newReplicaClient(t, cl, ClusterOptions{})
	r := c.cluster
	if err := r.ready(clusterCtx(t)); err != nil {
		t.Fatal(err)
	}
	setLeftOut := func(v bool) {
		r.mu.Lock()
		r.leftOut = v
		r.mu.Unlock()
	}
	pending := func() bool {
		r.refMu.Lock()
		defer r.refMu.Unlock()
		return r.recheck != nil
	}
	setLeftOut(true)
	r.recheckReplicas()
	if !pending() {
		t.Fatal("no refresh arranged for a map that left replicas out")
	}
	setLeftOut(false)
	r.recheckReplicas()
	if pending() {
		t.Error("the refresh arranged is still pending after a map that left none out")
	}
	before := r.refreshes.Load()
	time.Sleep(3 * replicaRecheck)
	if n := r.refreshes.Load() - before; n != 0 {
		t.Errorf("%d refreshes ran after the recheck was called off; want none", n)
	}
}
