package redpipe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
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
	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// The cluster tests share one cluster of three masters, run in turn:
// those that move slots leave the cluster consistent for the next.
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Run("Routing", func(t *testing.T) { testClusterRouting(t, cl, c) })
	t.Run("NilContext", func(t *testing.T) { testNilContext(t, c, nil, "") })
	t.Run("SlotArgument", func(t *testing.T) { testClusterSlotArgument(t, cl, c) })
	t.Run("AllShards", func(t *testing.T) { testClusterAllShards(t, cl, c) })
	t.Run("Pipeline", func(t *testing.T) { testClusterPipeline(t, c) })
	t.Run("CrossSlot", func(t *testing.T) { testClusterCrossSlot(t, cl, c) })
	t.Run("Transaction", func(t *testing.T) { testClusterTransaction(t, c) })
	t.Run("TxOneSlot", func(t *testing.T) { testClusterTxOneSlot(t, cl, c) })
	t.Run("TxRefused", func(t *testing.T) { testClusterTxRefused(t, c) })
	t.Run("TxStale", func(t *testing.T) { testClusterTxStale(t, c) })
	t.Run("TxNegativeOptions", func(t *testing.T) { testClusterTxNegativeOptions(t, c) })
	t.Run("TxAppliedRedirectReply", func(t *testing.T) { testClusterTxAppliedRedirectReply(t, c) })
	t.Run("TxReadsMoved", func(t *testing.T) { testClusterTxReadsMoved(t, cl, c) })
	t.Run("TxDecoders", func(t *testing.T) { testClusterTxDecoders(t, c) })
	t.Run("TxFanOut", func(t *testing.T) { testClusterTxFanOut(t, c) })
	t.Run("OneServerCommands", func(t *testing.T) { testClusterOneServerCommands(t, c) })
	t.Run("PartlyRefused", func(t *testing.T) { testClusterPartlyRefused(t, cl, c) })
	t.Run("PipelinePartlyRefused", func(t *testing.T) { testClusterPipelinePartlyRefused(t, cl, c) })
	t.Run("PipelinePartLost", func(t *testing.T) { testClusterPipelinePartLost(t, cl, c) })
	t.Run("PipelinePartCut", func(t *testing.T) { testClusterPipelinePartCut(t, cl, c) })
	t.Run("PipelinePartCutMoved", func(t *testing.T) { testClusterPipelinePartCutMoved(t, cl, c) })
	t.Run("PipelinePartCutDecoded", func(t *testing.T) { testClusterPipelinePartCutDecoded(t, cl, c) })
	t.Run("PipelinePartCutTwice", func(t *testing.T) { testClusterPipelinePartCutTwice(t, cl) })
	t.Run("PipelinePartCutBeforeReply", func(t *testing.T) { testClusterPipelinePartCutBeforeReply(t, cl) })
	t.Run("PipelineOnePartCutBeforeReply", func(t *testing.T) { testClusterPipelineOnePartCutBeforeReply(t, cl) })
	t.Run("PipelinePartCancelled", func(t *testing.T) { testClusterPipelinePartCancelled(t, cl) })
	t.Run("PipelinePartCancelledBeforeReply", func(t *testing.T) { testClusterPipelinePartCancelledBeforeReply(t, cl) })
	t.Run("PipelineEveryPartLost", func(t *testing.T) { testClusterPipelineEveryPartLost(t, cl, c) })
	t.Run("PipelineRedirectUnusable", func(t *testing.T) { testClusterPipelineRedirectUnusable(t, cl, c) })
	t.Run("PipelineScriptLoadRefused", func(t *testing.T) { testClusterPipelineScriptLoadRefused(t, cl, c) })
	t.Run("PipelineFanOutUnreached", func(t *testing.T) { testClusterPipelineFanOutUnreached(t, cl) })
	t.Run("StreamFanOutRedialed", func(t *testing.T) { testClusterStreamFanOutRedialed(t, cl) })
	t.Run("Moved", func(t *testing.T) { testClusterMoved(t, cl, c) })
	t.Run("Ask", func(t *testing.T) { testClusterAsk(t, cl, c) })
	t.Run("Refusals", func(t *testing.T) { testClusterRefusals(t, c) })
	t.Run("ScriptErrorReplies", func(t *testing.T) { testClusterScriptErrorReplies(t, c) })
	t.Run("ScriptRedirectLookalikes", func(t *testing.T) { testClusterScriptRedirectLookalikes(t, c) })
	t.Run("LongestReplyTimeout", func(t *testing.T) { testClusterLongestReplyTimeout(t, cl) })
}

// testClusterLongestReplyTimeout: a cluster Client with a ReplyTimeout of
// the largest Duration, which a Client of one node takes as "practically
// never", learns the layout and runs its calls. Added to DialTimeout for
// the fetch of the layout, it wrapped to a timeout already past: every
// call failed with "cluster layout unknown: no node answered" (now "no node gave one").
func testClusterLongestReplyTimeout(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{ReplyTimeout: math.MaxInt64}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "longest", 1); err != nil {
		t.Fatalf("SET with a ReplyTimeout of %v = %v", time.Duration(math.MaxInt64), err)
	}
	if v, err := c.Get(ctx, "longest"); err != nil || v != "1" {
		t.Fatalf("GET = %q, %v; want 1", v, err)
	}
}

// testClusterTxNegativeOptions: on a cluster too, TxOptions with a
// negative field under WithTxOptions are refused with the *OptionError
// itself, fn not run. The refusal, made by the Transaction of the keys'
// node, was taken for a node that could not be reached: the layout was
// fetched again five times, and the error said the client gave up after
// five redirections.
func testClusterTxNegativeOptions(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	calls := 0
	_, err := c.Transaction(WithTxOptions(ctx, TxOptions{MaxAttempts: -1}), func(tx *Tx) error {
		calls++
		_, err := tx.Multi().Incr("{neg}n").Exec(ctx)
		return err
	}, "{neg}n")
	if oe, ok := err.(*OptionError); !ok || oe.Field != "TxOptions.MaxAttempts" || calls != 0 {
		t.Errorf("Transaction with a MaxAttempts of -1 = %v after %d runs of fn; want the *OptionError for TxOptions.MaxAttempts, fn not run", err, calls)
	}
}

func clusterCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// keyIn returns a key of the given slot, made of prefix and a number.
func keyIn(slot int, prefix string) string {
	for i := 0; ; i++ {
		k := prefix + strconv.Itoa(i)
		if int(hashslot.Slot(k)) == slot {
			return k
		}
	}
}

func testClusterRouting(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := 0; i < n; i++ {
		if err := c.Set(ctx, "route:"+strconv.Itoa(i), i); err != nil {
			t.Fatal(err)
		}
	}
	perNode := map[*redistest.Server]int64{}
	for i := 0; i < n; i += 7 {
		k := "route:" + strconv.Itoa(i)
		slot := cl.Masters[0].MustDo(t, "CLUSTER", "KEYSLOT", k).(int64)
		owner, err := cl.SlotOwner(int(slot))
		if err != nil {
			t.Fatal(err)
		}
		if got := owner.MustDo(t, "GET", k); got != strconv.Itoa(i) {
			t.Errorf("GET %s on the owner of slot %d = %#v", k, slot, got)
		}
		if v, err := c.Get(ctx, k); err != nil || v != strconv.Itoa(i) {
			t.Errorf("Get(%s) = %q, %v", k, v, err)
		}
	}
	for _, m := range cl.Masters {
		perNode[m] = m.MustDo(t, "DBSIZE").(int64)
		if perNode[m] == 0 {
			t.Errorf("master %s got no key", m.Addr)
		}
	}
	if got := perNode[cl.Masters[0]] + perNode[cl.Masters[1]] + perNode[cl.Masters[2]]; got != n {
		t.Errorf("the masters hold %d keys, want %d", got, n)
	}
}

// testClusterSlotArgument: CLUSTER COUNTKEYSINSLOT and GETKEYSINSLOT name
// a slot and no key, and went to any master, which answered 0 and no keys
// for a slot another master serves. They go to the master of the slot
// they name, by Do, in a pipeline and in a stream, and a number that is no slot is
// refused before anything is sent.
func testClusterSlotArgument(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	slot := 16000
	owner, err := cl.SlotOwner(slot)
	if err != nil {
		t.Fatal(err)
	}
	if owner == cl.Masters[0] {
		t.Fatalf("slot %d is served by the first master: pick a slot of another", slot)
	}
	tag := keyIn(slot, "slotarg")
	keys := []string{"{" + tag + "}:a", "{" + tag + "}:b", "{" + tag + "}:c"}
	for _, k := range keys {
		if err := c.Set(ctx, k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := owner.MustDo(t, "CLUSTER", "COUNTKEYSINSLOT", strconv.Itoa(slot)); n != int64(len(keys)) {
		t.Fatalf("the owner counts %v keys in slot %d; want %d", n, slot, len(keys))
	}
	wantKeys := func(what string, v Value) {
		t.Helper()
		got, err := v.Strings()
		slices.Sort(got)
		if err != nil || !slices.Equal(got, keys) {
			t.Errorf("%s = %q, %v; want %q", what, got, err, keys)
		}
	}
	// Any master but the owner answers too, wrongly: ask several times.
	for i := range 6 {
		if n, err := c.Do(ctx, "CLUSTER", "COUNTKEYSINSLOT", slot); err != nil || n.String() != strconv.Itoa(len(keys)) {
			t.Fatalf("Do CLUSTER COUNTKEYSINSLOT %d, time %d = %v, %v; want %d", slot, i+1, n, err, len(keys))
		}
		v, err := c.Do(ctx, "cluster", "getkeysinslot", strconv.Itoa(slot), 10)
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(fmt.Sprintf("Do CLUSTER GETKEYSINSLOT %d, time %d", slot, i+1), v)
	}

	p := c.Pipeline(NoTransaction)
	for range 6 {
		p.Do("CLUSTER", "COUNTKEYSINSLOT", slot).Do("CLUSTER", "GETKEYSINSLOT", slot, 10)
	}
	p.Get(keys[0])
	replies, err := p.Exec(ctx)
	if err != nil || len(replies) != 13 {
		t.Fatalf("pipeline = %v, %v", replies, err)
	}
	for i := 0; i < 12; i += 2 {
		if replies[i].String() != strconv.Itoa(len(keys)) {
			t.Errorf("pipeline: CLUSTER COUNTKEYSINSLOT %d, reply %d = %v; want %d", slot, i, replies[i], len(keys))
		}
		wantKeys(fmt.Sprintf("pipeline: CLUSTER GETKEYSINSLOT %d, reply %d", slot, i+1), replies[i+1])
	}

	var streamed []Value
	st := c.Stream(ctx, func(i int, v Value) error { streamed = append(streamed, v); return nil })
	for range 3 {
		st.Do("CLUSTER", "COUNTKEYSINSLOT", slot)
	}
	if n, err := st.Close(ctx); err != nil || n != 3 || len(streamed) != 3 {
		t.Fatalf("stream = %d, %v; replies %v", n, err, streamed)
	}
	for i, v := range streamed {
		if v.String() != strconv.Itoa(len(keys)) {
			t.Errorf("stream: CLUSTER COUNTKEYSINSLOT %d, reply %d = %v; want %d", slot, i, v, len(keys))
		}
	}

	for _, bad := range []any{hashslot.Count, -1, "many"} {
		_, err := c.Do(ctx, "CLUSTER", "COUNTKEYSINSLOT", bad)
		var ae *ArgError
		if !errors.As(err, &ae) || OutcomeOf(err) != OutcomeNotSent || !strings.Contains(err.Error(), "not a slot") {
			t.Errorf("Do CLUSTER COUNTKEYSINSLOT %v = %v; want an *ArgError saying it is not a slot", bad, err)
		}
		_, err = c.Pipeline(NoTransaction).Get(keys[0]).Do("CLUSTER", "GETKEYSINSLOT", bad, 10).Exec(ctx)
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Index != 1 || !errors.As(err, &ae) || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("pipeline with CLUSTER GETKEYSINSLOT %v = %v; want an *ArgError of command 1, nothing sent", bad, err)
		}
	}
}

func testClusterAllShards(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := c.Set(ctx, "all:"+strconv.Itoa(i), i); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.DBSize(ctx); err != nil || n != 50 {
		t.Errorf("DBSize = %d, %v; want 50 (the sum over the masters)", n, err)
	}
	keys, err := c.Keys(ctx, "all:*")
	if err != nil || len(keys) != 50 {
		t.Errorf("Keys = %d keys, %v; want 50", len(keys), err)
	}
	if s, err := c.Ping(ctx); err != nil || s != "PONG" {
		t.Errorf("Ping = %q, %v", s, err)
	}
	sha, err := c.ScriptLoad(ctx, "return 1")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cl.Masters {
		if v := m.MustDo(t, "SCRIPT", "EXISTS", sha); fmt.Sprint(v) != "[1]" {
			t.Errorf("SCRIPT EXISTS on %s = %v", m.Addr, v)
		}
	}
	replies, err := c.Pipeline(NoTransaction).Do("DBSIZE").Set("all:x", 1).Do("DBSIZE").Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := replies[0].String(), replies[2].String(); a != "50" || b != "51" {
		t.Errorf("DBSIZE in a pipeline = %s and %s, want 50 and 51", a, b)
	}
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c.DBSize(ctx); err != nil || n != 0 {
		t.Errorf("DBSize after FlushAll = %d, %v", n, err)
	}
}

func testClusterPipeline(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	p := c.Pipeline(NoTransaction)
	const keys = 3334 // three commands each: 10,002 commands
	for i := 0; i < keys; i++ {
		k := "seq:" + strconv.Itoa(i)
		p.Set(k, i).Incr(k).Get(k)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 3*keys {
		t.Fatalf("%d replies, want %d", len(replies), 3*keys)
	}
	slots := map[uint16]bool{}
	for i := 0; i < keys; i++ {
		slots[hashslot.Slot("seq:"+strconv.Itoa(i))] = true
		set, incr, get := replies[3*i].String(), replies[3*i+1].String(), replies[3*i+2].String()
		if set != "OK" || incr != strconv.Itoa(i+1) || get != strconv.Itoa(i+1) {
			t.Fatalf("key %d: replies %s, %s, %s; want OK, %d, %d", i, set, incr, get, i+1, i+1)
		}
	}
	if len(slots) < 3000 {
		t.Errorf("the keys cover only %d slots", len(slots))
	}
}

func testClusterCrossSlot(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	for _, m := range cl.Masters {
		m.MustDo(t, "CONFIG", "RESETSTAT")
	}
	_, err := c.Pipeline().Set("cross:a", 1).Incr("cross:b").Exec(ctx)
	var cs *CrossSlotError
	if !errors.As(err, &cs) || !errors.Is(err, ErrNotApplied) {
		t.Fatalf("cross-slot transaction: %v (%T), want a *CrossSlotError matching ErrNotApplied", err, err)
	}
	if !slices.Equal(cs.Keys, []string{"cross:a", "cross:b"}) || cs.Slots[0] != int(hashslot.Slot("cross:a")) || cs.Slots[1] != int(hashslot.Slot("cross:b")) {
		t.Errorf("error names %v in %v", cs.Keys, cs.Slots)
	}
	for _, want := range []string{"{hash tag}", "NoTransaction", `"cross:a" in `} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := c.Watch(ctx, "cross:a", "cross:b"); !errors.As(err, &cs) {
		t.Errorf("Watch across slots: %v", err)
	}
	if _, err := c.Transaction(ctx, func(*Tx) error { return nil }, "cross:a", "cross:b"); !errors.As(err, &cs) {
		t.Errorf("Transaction across slots: %v", err)
	}
	if _, err := c.Do(ctx, "RENAME", "cross:a", "cross:b"); !errors.As(err, &cs) {
		t.Errorf("RENAME across slots: %v", err)
	}
	// A script whose own keys span slots, in a transaction, is named: a
	// NoTransaction pipeline would refuse it too, so the error does not
	// suggest one.
	script := NewScript("return redis.call('SET', KEYS[1], redis.call('GET', KEYS[2]))")
	_, err = c.Pipeline().Set("{cross:a}:x", 1).RunScript(script, []string{"cross:a", "cross:b"}).Exec(ctx)
	if !errors.As(err, &cs) || !errors.Is(err, ErrNotApplied) || OutcomeOf(err) == OutcomeUnknown ||
		!strings.Contains(err.Error(), "the keys of the command EVALSHA of the transaction are in different hash slots") ||
		strings.Contains(err.Error(), "NoTransaction") || !strings.Contains(err.Error(), "nothing was sent") {
		t.Errorf("transaction of a script whose keys span slots: %v; want a *CrossSlotError naming EVALSHA, not applied, "+
			"suggesting no NoTransaction pipeline", err)
	}
	for _, m := range cl.Masters {
		stats := m.MustDo(t, "INFO", "commandstats").(string)
		for _, cmd := range []string{"cmdstat_multi", "cmdstat_set", "cmdstat_incr", "cmdstat_exec", "cmdstat_watch", "cmdstat_rename", "cmdstat_evalsha", "cmdstat_script"} {
			if strings.Contains(stats, cmd+":") {
				t.Errorf("%s reached %s:\n%s", cmd, m.Addr, stats)
			}
		}
	}
}

func testClusterTransaction(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	replies, err := c.Pipeline().Set("{user1}:name", "ann").Incr("{user1}:visits").Get("{user1}:name").Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(replies); got != "[OK 1 ann]" {
		t.Errorf("replies %s", got)
	}
	for i := 0; i < 3; i++ {
		_, err = c.Transaction(ctx, func(tx *Tx) error {
			n, err := tx.Get(ctx, "{user1}:visits")
			if err != nil {
				return err
			}
			v, _ := strconv.Atoi(n)
			tx.Multi().Set("{user1}:visits", v*10).Set("{user1}:seen", 1)
			return nil
		}, "{user1}:visits", "{user1}:name")
		if err != nil {
			t.Fatal(err)
		}
	}
	if v, err := c.Get(ctx, "{user1}:visits"); err != nil || v != "1000" {
		t.Errorf("visits = %q, %v; want 1000", v, err)
	}
}

// testClusterTxStale: on a cluster as on one node, a Tx kept from an
// earlier attempt of a Transaction and used in a later one fails the
// Transaction with an error matching ErrClosed, not applied, instead of a
// success for a Multi that went nowhere.
func testClusterTxStale(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	key := "{txstale}:k"
	var stale *Tx
	attempts := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		attempts++
		if attempts == 1 {
			stale = tx
			if err := c.Set(ctx, key, "other"); err != nil { // between WATCH and EXEC: a retry
				return err
			}
		}
		stale.Multi().Set(key, "mine")
		return nil
	}, key)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), "earlier attempt") || attempts != 2 {
		t.Errorf("Multi on the Tx of an earlier attempt: Transaction = %v after %d attempts; want the misuse, matching ErrClosed, not applied, after 2", err, attempts)
	}
	if v, err := c.Get(ctx, key); v != "other" || err != nil {
		t.Errorf("%s = %q, %v; want other", key, v, err)
	}
}

// A Transaction on a cluster whose fn returns a call the client refused
// (a write on the Tx of a Transaction) or one stopped by the end of fn's
// own context, or whose Multi pipeline the client refuses (a command on
// the Tx after Multi, a wrong number of arguments), fails at once with
// that error, not applied, as on one node. Such an error says nothing was
// sent, and was taken for a master that could not be reached: fn ran
// again after a refresh of the layout, six times in all, and the error
// said the redirections had run out.
func testClusterTxRefused(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	key := "{txrefused}:k"
	if _, err := c.Exists(ctx, key); err != nil { // the layout is loaded
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		fn   func(tx *Tx) error
		want any
	}{
		{"fn returns the refusal of a write on the Tx", func(tx *Tx) error {
			_, err := tx.Do(ctx, "SET", key, "1")
			return err
		}, new(*UsageError)},
		{"a command on the Tx after Multi", func(tx *Tx) error {
			tx.Multi().Set(key, "1")
			tx.Get(ctx, key)
			return nil
		}, new(*UsageError)},
		{"a wrong number of arguments in the Multi", func(tx *Tx) error {
			tx.Multi().Do("SET", key)
			return nil
		}, new(*ArityError)},
		// So is a call stopped before it was sent by the end of a context
		// of fn's own, on the Tx or on the Client.
		{"fn returns a read on the Tx cut by its own context", func(tx *Tx) error {
			_, err := tx.Get(ended, key)
			return err
		}, new(*ConnError)},
		{"fn returns a Watch cut by its own context", func(tx *Tx) error {
			_, err := c.Watch(ended, key)
			return err
		}, new(*notSentError)},
		{"fn runs Exec under its own context, which ended", func(tx *Tx) error {
			_, err := tx.Multi().Set(key, "1").Exec(ended)
			return err
		}, new(*ConnError)},
	} {
		calls := 0
		refreshes := c.cluster.refreshes.Load()
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			calls++
			return tc.fn(tx)
		}, key)
		if !errors.As(err, tc.want) || !errors.Is(err, ErrNotApplied) || strings.Contains(err.Error(), "gave up") {
			t.Errorf("%s: Transaction = %v; want the refusal, not applied", tc.name, err)
		}
		if calls != 1 {
			t.Errorf("%s: fn ran %d times, want once", tc.name, calls)
		}
		if n := c.cluster.refreshes.Load() - refreshes; n != 0 {
			t.Errorf("%s: %d refreshes of the layout, want none", tc.name, n)
		}
	}
	if n, err := c.Exists(ctx, key); err != nil || n != 0 {
		t.Errorf("%s exists (%d, %v) after refused transactions", key, n, err)
	}

	// A Transaction without keys, as Watch without keys, is refused:
	// nothing says which master it runs on. It ran on any one, where a
	// read of a key elsewhere was answered MOVED, and a Multi of keys in
	// several slots was sent, refused and moved, fn running again, rather
	// than refused before anything was sent.
	calls := 0
	_, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		tx.Multi().Set("{txrefused}:a", 1).Set("{txrefused}:b:other", 1).Set("{txrefusedb}:c", 1)
		return nil
	})
	var ue *UsageError
	if !errors.As(err, &ue) || calls != 0 {
		t.Errorf("Transaction without keys = %v after %d calls of fn; want a *UsageError, fn not run", err, calls)
	}
}

// A Transaction that EXEC applied, one command of which has a reply that
// reads as a redirection (a script's own error, MOVED to a node that does
// not exist), is not moved and run again: it returns EXEC's replies with
// that command's error, of unknown outcome. It was taken for a transaction
// the node had refused: fn ran again, the INCR was applied three times,
// and the error said the transaction was not applied, not even sent.
func testClusterTxAppliedRedirectReply(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	key := "{txmovedreply}:n"
	calls := 0
	replies, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		tx.Multi().Incr(key).Do("EVAL", "return redis.error_reply('MOVED 1 127.0.0.1:1')", 1, key)
		return nil
	}, key)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 1 || OutcomeOf(err) != OutcomeUnknown || errors.Is(err, ErrNotApplied) || calls != 1 {
		t.Errorf("Transaction = %v (outcome %v) after %d calls of fn; want the error of command 1, of unknown outcome, fn run once",
			err, OutcomeOf(err), calls)
	}
	if len(replies) != 2 || replies[0].String() != "1" {
		t.Errorf("replies = %v; want EXEC's two", replies)
	}
	if n, err := c.Get(ctx, key); err != nil || n != "1" {
		t.Errorf("%s = %q, %v; want 1: the transaction ran once", key, n, err)
	}
}

// A Transaction whose fn reads with a pipeline of its Tx, and returns that
// pipeline's error, moves with its slot: the read, answered MOVED, changed
// nothing, and the Tx refuses writes outside Multi. The pipeline's error
// is a *CommandError, whose outcome is unknown for a plain pipeline; taken
// for an applied transaction's, it made the Transaction give up with the
// MOVED of its read while the slot was moved under it.
func testClusterTxReadsMoved(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	key := "{txreadsmoved}:n"
	slot := int(hashslot.Slot(key))
	from, to := ownerAndOther(t, cl, slot)
	if err := c.Set(ctx, key, 5); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The next tests expect the slot where it was.
		back, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := cl.MoveSlots(back, to, from, slot); err != nil {
			t.Errorf("moving slot %d back: %v", slot, err)
		}
	}()
	calls := 0
	replies, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		if calls == 1 {
			// Watched on its master, the slot moves before fn reads.
			if err := cl.MoveSlots(ctx, from, to, slot); err != nil {
				return err
			}
		}
		got, err := tx.Pipeline().Get(key).Exec(ctx)
		if err != nil {
			return err
		}
		n, err := got[0].Int64()
		if err != nil {
			return err
		}
		tx.Multi().Set(key, n+1)
		return nil
	}, key)
	if err != nil || len(replies) != 1 || calls != 2 {
		t.Fatalf("Transaction = %v, %v after %d calls of fn; want it run again where the slot went, and applied", replies, err, calls)
	}
	if n, err := c.Get(ctx, key); err != nil || n != "6" {
		t.Errorf("%s = %q, %v; want 6", key, n, err)
	}
}

// A session on a cluster keeps to the slot of its watched keys: a command,
// a pipeline or a transaction with a key elsewhere, on another master or
// in another slot of the same one, is refused before it is sent with a
// *CrossSlotError, as the docs promise, rather than sent where the node
// redirects it or, on the same master, run outside the watch.
func testClusterTxOneSlot(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	a, a2 := keyIn(100, "tx1:a:"), keyIn(100, "tx1:a2:")
	same, other := keyIn(101, "tx1:same:"), keyIn(6000, "tx1:other:")
	for _, k := range []string{same, other} {
		o1, err1 := cl.SlotOwner(100)
		o2, err2 := cl.SlotOwner(int(hashslot.Slot(k)))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if (k == same) != (o1 == o2) {
			t.Fatalf("%s is not where this test needs it", k)
		}
	}
	var ue *UsageError
	if tx, err := c.Watch(ctx); !errors.As(err, &ue) || tx != nil {
		t.Errorf("Watch with no keys on a cluster = %v, %v; want a *UsageError", tx, err)
	}
	crossSlot := func(what string, err error) {
		t.Helper()
		var cs *CrossSlotError
		if !errors.As(err, &cs) || !errors.Is(err, ErrNotApplied) {
			t.Errorf("%s = %v, want a *CrossSlotError", what, err)
		}
	}
	for _, k := range []string{same, other} {
		calls := 0
		_, err := c.Transaction(ctx, func(tx *Tx) error {
			calls++
			tx.Multi().Set(k, 1)
			return nil
		}, a)
		crossSlot("Transaction watching "+a+" that sets "+k, err)
		if err == nil || !strings.Contains(err.Error(), "the keys of the transaction and those the session watches") ||
			strings.Contains(err.Error(), "NoTransaction") {
			t.Errorf("Transaction watching %s that sets %s = %v; want an error that says which key is the session's", a, k, err)
		}
		if calls != 1 {
			t.Errorf("fn ran %d times, want once", calls)
		}
		if n, err := c.Exists(ctx, k); err != nil || n != 0 {
			t.Errorf("%s exists (%d, %v) after a refused transaction", k, n, err)
		}

		tx, err := c.Watch(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Get(ctx, k)
		crossSlot("Get of "+k+" on a session watching "+a, err)
		// The error tells the key the session watches from the command's,
		// and suggests no NoTransaction pipeline, which the session binds
		// to its slot too.
		if err == nil || !strings.Contains(err.Error(), "the keys of the command GET and those the session watches are in different hash slots") ||
			strings.Contains(err.Error(), "NoTransaction") {
			t.Errorf("Get of %s on a session watching %s = %v; want an error that says which key is the session's", k, a, err)
		}
		crossSlot("Watch of "+k+" on a session watching "+a, tx.Watch(ctx, k))
		_, err = tx.Pipeline().Get(a).Get(k).Exec(ctx)
		crossSlot("a Tx pipeline reading "+k, err)
		_, err = tx.Multi().Set(a, 1).Set(k, 1).Exec(ctx)
		crossSlot("a Multi setting "+k, err)
		if replies, err := tx.Multi().Set(a, 2).Set(a2, 2).Exec(ctx); err != nil || len(replies) != 2 {
			t.Errorf("a Multi in the watched slot = %v, %v", replies, err)
		}
		tx.Close()
		if n, err := c.Exists(ctx, k); err != nil || n != 0 {
			t.Errorf("%s exists (%d, %v) after refused commands", k, n, err)
		}
	}
}

// A command the cluster runs on every master (DBSIZE, FLUSHALL) cannot be
// part of a transaction or a session, which run on one: there it would
// count or flush that master's keys alone, silently. It is refused, and
// nothing of the transaction runs; outside one it still fans out.
func testClusterTxFanOut(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if err := c.Set(ctx, "fan:"+strconv.Itoa(i), i); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(what string, err error) {
		t.Helper()
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "every master") {
			t.Errorf("%s = %v, want a *UsageError", what, err)
		}
	}
	notApplied := func(what string, err error) {
		t.Helper()
		refused(what, err)
		if !errors.Is(err, ErrNotApplied) {
			t.Errorf("%s = %v, want it to match ErrNotApplied", what, err)
		}
	}
	_, err := c.Pipeline().DBSize().Exec(ctx)
	notApplied("a transaction of DBSIZE", err)
	_, err = c.Pipeline().Set("{fan}x", 1).FlushAll().Exec(ctx)
	notApplied("a transaction of SET and FLUSHALL", err)
	_, err = c.Transaction(ctx, func(tx *Tx) error {
		_, err := tx.DBSize(ctx)
		refused("DBSIZE on the Tx of a Transaction", err)
		tx.Multi().Set("{fan}x", 1).Keys("*")
		return nil
	}, "{fan}x")
	notApplied("a Transaction queuing KEYS", err)

	tx, err := c.Watch(ctx, "{fan}x")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	_, err = tx.DBSize(ctx)
	refused("DBSIZE on a session", err)
	_, err = tx.Multi().FlushAll().Exec(ctx)
	notApplied("a Multi of FLUSHALL", err)
	if s, err := tx.Ping(ctx); err != nil || s != "PONG" {
		t.Errorf("PING on a session = %q, %v", s, err)
	}

	if n, err := c.DBSize(ctx); err != nil || n != 30 {
		t.Errorf("DBSIZE after the refusals = %d, %v; want the 30 keys, none flushed or set", n, err)
	}
	replies, err := c.Pipeline(NoTransaction).DBSize().Exec(ctx)
	if err != nil || replies[0].String() != "30" {
		t.Errorf("DBSIZE in a plain pipeline = %v, %v; want 30 from every master", replies, err)
	}
}

// Commands whose reply describes one server and cannot be combined (INFO),
// or that walk one server's keys (SCAN), are refused on a cluster Client,
// however they are sent: one master's reply passed for the cluster's, or a
// cursor of one master sent to another, was a silent wrong answer.
// RANDOMKEY finds a key whichever master holds it.
func testClusterOneServerCommands(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	refused := func(what string, err error) {
		t.Helper()
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "one server") || !strings.Contains(err.Error(), "ForEachMaster") {
			t.Errorf("%s = %v, want a *UsageError that points at ForEachMaster", what, err)
		}
	}
	_, err := c.Info(ctx, "keyspace")
	refused("Info", err)
	_, err = c.Scan(ctx, 0)
	refused("Scan", err)
	_, err = c.Do(ctx, "MEMORY", "STATS")
	refused("MEMORY STATS", err)
	_, err = c.Pipeline(NoTransaction).Get("k").Do("SCAN", 0).Exec(ctx)
	refused("SCAN in a pipeline", err)
	_, err = c.Pipeline().Set("{k}1", 1).Do("SCAN", 0).Exec(ctx)
	refused("SCAN in a transaction", err)
	s := c.Stream(ctx, nil)
	s.Get("k").Do("INFO")
	_, err = s.Close(ctx)
	refused("INFO in a stream", err)
	tx, err := c.Watch(ctx, "{k}1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Do(ctx, "SCAN", 0)
	refused("SCAN on a session", err)
	tx.Close()

	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	key := keyIn(16000, "rk:") // on the last master alone
	if err := c.Set(ctx, key, 1); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if k, err := c.RandomKey(ctx); err != nil || k != key {
			t.Fatalf("RandomKey with one key in the cluster = %q, %v; want %q", k, err, key)
		}
	}
}

// A command that may write, refused by one master (here OOM) and run by
// the others, is not reported as not applied: a retry would meet the
// masters where it ran.
func testClusterPartlyRefused(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	allow := refuseWrites(t, cl.Masters[2])
	_, err := c.FunctionLoad(ctx, "#!lua name=partlib\nredis.register_function('pf', function() return 1 end)")
	if err == nil || SafeToRetry(err) || errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), "1 of 3") {
		t.Fatalf("FUNCTION LOAD refused by one master of three = %v (outcome %v), want an error of unknown outcome", err, OutcomeOf(err))
	}
	var se *Error
	if !errors.As(err, &se) || se.Prefix != "OOM" {
		t.Errorf("err = %v, want it to wrap the master's OOM", err)
	}
	allow()
	if _, err := c.Do(ctx, "FUNCTION", "DELETE", "partlib"); err == nil {
		t.Error("FUNCTION DELETE of a library one master lacks succeeded")
	}
}

// refuseWrites makes master m refuse, with OOM, the writes that need
// memory (FUNCTION LOAD, SET) until allow is called or the test ends.
func refuseWrites(t *testing.T, m *redistest.Server) (allow func()) {
	t.Helper()
	m.MustDo(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	m.MustDo(t, "CONFIG", "SET", "maxmemory", "1")
	var once sync.Once
	allow = func() { once.Do(func() { m.MustDo(t, "CONFIG", "SET", "maxmemory", "0") }) }
	t.Cleanup(allow)
	return allow
}

// wantPartlyRun checks err, the error of a write for every master that
// ran on some of them only: it must not read as not applied, nor as safe
// to retry, and its message must say how many masters (count, "1 of 3").
func wantPartlyRun(t *testing.T, what string, err error, count string) {
	t.Helper()
	if err == nil || errors.Is(err, ErrNotApplied) || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) ||
		!strings.Contains(err.Error(), count) {
		t.Errorf("%s = %v (outcome %v), want an error of unknown outcome that says %q", what, err, OutcomeOf(err), count)
	}
}

// wantOOM checks that err wraps a master's OOM refusal.
func wantOOM(t *testing.T, what string, err error) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) || se.Prefix != "OOM" {
		t.Errorf("%s = %v, want it to wrap the master's OOM (*Error)", what, err)
	}
}

// A decoder set on the cluster's Client applies to replies in its sessions
// too, as on one node.
func testClusterTxDecoders(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	c.SetDecoder("GET", func(Value) (any, error) { return "decoded", nil })
	defer c.SetDecoder("GET", nil)
	key := "{txdec}:k"
	if err := c.Set(ctx, key, "v"); err != nil {
		t.Fatal(err)
	}
	decoded := func(what string, v Value) {
		t.Helper()
		if d, err := v.Decoded(); d != "decoded" || err != nil {
			t.Errorf("%s: Decoded = %v, %v; want the Client's decoder run", what, d, err)
		}
	}
	tx, err := c.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	v, err := tx.Do(ctx, "GET", key)
	if err != nil {
		t.Fatal(err)
	}
	decoded("Do on a Tx", v)
	replies, err := tx.Pipeline().Get(key).Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	decoded("a Tx pipeline", replies[0])
	replies, err = tx.Multi().Get(key).Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	decoded("a Multi", replies[0])
	replies, err = c.Transaction(ctx, func(tx *Tx) error { tx.Multi().Get(key); return nil }, key)
	if err != nil {
		t.Fatal(err)
	}
	decoded("a Transaction", replies[0])
}

// waitRefreshed waits for the refresh in flight, if any, to end.
func waitRefreshed(t *testing.T, r *clusterRouter) {
	t.Helper()
	r.refMu.Lock()
	ch := r.refreshing
	r.refMu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the topology refresh did not end")
	}
}

// routeStale makes c route slot to addr, the master that slot left, as a
// client that has not heard of the move does, once the refresh in flight
// has ended.
func routeStale(t *testing.T, c *Client, slot int, addr string) {
	t.Helper()
	waitRefreshed(t, c.cluster)
	r := c.cluster
	r.mu.Lock()
	r.slots[slot], _ = r.nodeLocked(addr)
	r.mu.Unlock()
	if got := r.owner(slot).opt.Addr; got != addr {
		t.Fatalf("slot %d is routed to %s, want the stale %s", slot, got, addr)
	}
}

func testClusterMoved(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	from := cl.Masters[0]
	to := cl.Masters[1]
	slot := 42
	if owner, err := cl.SlotOwner(slot); err != nil || owner != from {
		t.Fatalf("slot %d is not the first master's: %v", slot, err)
	}
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = keyIn(slot, "moved:"+strconv.Itoa(i)+":")
		if err := c.Set(ctx, keys[i], i); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.MoveSlots(ctx, from, to, slot); err != nil {
		t.Fatal(err)
	}
	waitRefreshed(t, c.cluster)
	before := c.cluster.refreshes.Load()
	p := c.Pipeline(NoTransaction)
	for i, k := range keys {
		p.Incr(k).Set("other:"+strconv.Itoa(i), i).Get(k)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if a, b := replies[3*i].String(), replies[3*i+2].String(); a != strconv.Itoa(i+1) || b != a {
			t.Errorf("key %d: INCR %s, GET %s; want %d", i, a, b, i+1)
		}
	}
	waitRefreshed(t, c.cluster)
	if got := c.cluster.refreshes.Load() - before; got != 1 {
		t.Errorf("%d refreshes after the pipeline met MOVED, want 1", got)
	}
	if c.cluster.owner(slot).opt.Addr != to.Addr {
		t.Errorf("slot %d is routed to %s, want %s", slot, c.cluster.owner(slot).opt.Addr, to.Addr)
	}
	// A transaction on the moved slot, by a client that has not heard.
	c2, err := NewClusterClient(ClusterOptions{Addrs: []string{from.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Get(ctx, "warm"); !errors.Is(err, ErrNil) {
		t.Fatal(err)
	}
	routeStale(t, c2, slot, from.Addr)
	replies, err = c2.Pipeline().Incr(keys[0]).Get(keys[0]).Exec(ctx)
	if err != nil || fmt.Sprint(replies) != "[2 2]" {
		t.Errorf("transaction after MOVED: %v, %v", replies, err)
	}
}

func testClusterAsk(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	from, to := cl.Masters[2], cl.Masters[0]
	slot := int(hashslot.Slot("{ask}"))
	if owner, err := cl.SlotOwner(slot); err != nil || owner != from {
		t.Fatalf("slot %d is not the third master's: %v", slot, err)
	}
	keys := make([]string, 20)
	set := c.Pipeline(NoTransaction)
	for i := range keys {
		keys[i] = "{ask}:" + strconv.Itoa(i)
		set.Set(keys[i], i)
	}
	if _, err := set.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := cl.BeginMigration(ctx, from, to, slot)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.MoveKeys(ctx, 10); err != nil || n != 10 {
		t.Fatalf("MoveKeys: %d, %v", n, err)
	}
	p := c.Pipeline(NoTransaction)
	for _, k := range keys {
		p.Get(k)
	}
	p.Set("{ask}:new", "x").Incr("{ask}:n").Incr("{ask}:n").Get("{ask}:new")
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if replies[i].String() != strconv.Itoa(i) {
			t.Errorf("GET %s = %s during the migration", keys[i], replies[i])
		}
	}
	if got := fmt.Sprint(replies[len(keys):]); got != "[OK 1 2 x]" {
		t.Errorf("new keys during the migration: %s", got)
	}
	// A transaction on keys the source no longer has goes whole to the
	// target, ASKING before MULTI.
	replies, err = c.Pipeline().Set("{ask}:tx", 5).Incr("{ask}:tx").Exec(ctx)
	if err != nil || fmt.Sprint(replies) != "[OK 6]" {
		t.Errorf("transaction during the migration: %v, %v", replies, err)
	}
	if v, err := c.Get(ctx, "{ask}:tx"); err != nil || v != "6" {
		t.Errorf("Get during the migration = %q, %v", v, err)
	}
	// A WATCH session cannot follow ASK: it waits for the migration to
	// end, and when it gives up its error says that ASK is what it
	// waited on, not TRYAGAIN or CLUSTERDOWN alone. (It gives up after
	// maxTryAgain retries, some seconds, under a context of its own.)
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if tx, err := c.Watch(wctx, "{ask}:tx"); err == nil || !strings.Contains(err.Error(), "retries after TRYAGAIN, CLUSTERDOWN or ASK") ||
		!strings.Contains(err.Error(), "cannot follow ASK") {
		if tx != nil {
			tx.Close()
		}
		t.Errorf("Watch of a key that moved to a slot's importing node = %v; want it to give up, naming ASK as what it waited on", err)
	}
	ctx = clusterCtx(t) // the wait took some of the first
	if err := m.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if v, err := c.Get(ctx, k); err != nil || v != strconv.Itoa(i) {
			t.Errorf("Get(%s) after the migration = %q, %v", k, v, err)
		}
	}
}

func testClusterRefusals(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	if _, err := NewClusterClient(ClusterOptions{Addrs: []string{"localhost:1"}, Options: Options{DB: 1}}); err == nil {
		t.Error("DB 1 accepted on a cluster")
	}
	if _, err := ConnectCluster(ctx, "redis://localhost:1/2"); err == nil {
		t.Error("a URL with database 2 accepted on a cluster")
	}
	// The seeds' URLs must agree on every option: the first's apply to
	// every node, so another's would be dropped silently.
	for _, second := range []string{
		"redis://127.0.0.1:2?pool_size=3", "redis://127.0.0.1:2?dial_timeout=1s", "rediss://127.0.0.1:2",
		"redis://u:p@127.0.0.1:2", "redis://127.0.0.1:2?protocol=2",
	} {
		var oe *OptionError
		if _, err := ConnectCluster(ctx, "redis://127.0.0.1:1", second); !errors.As(err, &oe) || !strings.Contains(err.Error(), "differs") {
			t.Errorf("ConnectCluster with a second seed %s = %v, want an *OptionError", second, err)
		}
	}
	// TLS seeds differ only by the server names that follow their hosts.
	if _, err := ConnectCluster(ctx, "rediss://127.0.0.1:1?dial_timeout=100ms", "rediss://localhost:2?dial_timeout=100ms"); errors.As(err, new(*OptionError)) {
		t.Errorf("ConnectCluster with two TLS seeds = %v, want them accepted", err)
	}
}

// TestConnectClusterNamesTheSeed: of several seed URLs, the one that is
// malformed or names a database is named by its place, since the error
// may withhold the URL itself; with one seed the error is ParseURL's.
func TestConnectClusterNamesTheSeed(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		urls []string
		want string
	}{
		{[]string{"redis://127.0.0.1:1", "redis://127.0.0.1:2?x=1"}, "redpipe: option seed 2 of 2: URL option x is not known"},
		{[]string{"redis://127.0.0.1:1", "redis://127.0.0.1:2", "bogus"}, "redpipe: option seed 3 of 3: URL scheme is missing"},
		{[]string{"redis://127.0.0.1:1/1", "redis://127.0.0.1:2"}, "redpipe: option seed 1 of 2: URL database must be 0"},
		{[]string{"redis://127.0.0.1:1?x=1"}, "redpipe: option URL option x is not known"},
	} {
		var oe *OptionError
		if _, err := ConnectCluster(ctx, tc.urls...); !errors.As(err, &oe) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("ConnectCluster(%q) = %v; want an *OptionError starting %q", tc.urls, err, tc.want)
		}
	}
}

func TestClusterSeedDown(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	// The first seed refuses connections: the next one is asked.
	c, err := ConnectCluster(ctx, "redis://127.0.0.1:1", "redis://"+cl.Masters[1].Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "seed", 1); err != nil {
		t.Fatal(err)
	}
	if got := c.Options().DB; got != 0 {
		t.Errorf("Options().DB = %d", got)
	}
	if _, err := ConnectCluster(ctx, "redis://127.0.0.1:1"); err == nil {
		t.Error("ConnectCluster succeeded with no node to ask")
	}
}

// A cluster Transaction that never reached a master to run on says it was
// not applied, as the Transaction of one node does when it cannot start:
// no layout could be had, or its context ended first.
func TestClusterTransactionNotStarted(t *testing.T) {
	t.Parallel()
	ctx := clusterCtx(t)
	fn := func(tx *Tx) error {
		tx.Multi().Incr("{ns}n")
		return nil
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrNotApplied) || OutcomeOf(err) == OutcomeUnknown {
			t.Errorf("%s: %v, OutcomeOf %v; want it to match ErrNotApplied", what, err, OutcomeOf(err))
		}
	}
	// What one node says, for the same failures.
	one, err := NewClient(Options{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	_, err = one.Transaction(ctx, fn, "{ns}n")
	check("one node that cannot be reached", err)

	down, err := NewClusterClient(ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	_, err = down.Transaction(ctx, fn, "{ns}n")
	check("a cluster none of whose seeds can be reached", err)

	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ended, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.Transaction(ended, fn, "{ns}n")
	check("a context ended before the layout was learned", err)
}

func TestClusterCombine(t *testing.T) {
	ints := func(ns ...int64) []resp.Value {
		vs := make([]resp.Value, len(ns))
		for i, n := range ns {
			vs[i] = resp.Value{Kind: resp.Integer, Int: n}
		}
		return vs
	}
	errV := resp.Value{Kind: resp.Error, Str: "ERR no"}
	arr := func(ns ...int64) resp.Value { return resp.Value{Kind: resp.Array, Elems: ints(ns...)} }
	for _, tc := range []struct {
		p    responsePolicy
		in   []resp.Value
		want string
	}{
		{responseAggSum, ints(1, 2, 3), "6"},
		{responseAggMin, ints(4, 2, 3), "2"},
		{responseAggMax, ints(4, 2, 9), "9"},
		{responseAggLogicalAnd, []resp.Value{arr(1, 1), arr(1, 0)}, "[1 0]"},
		{responseAggLogicalOr, []resp.Value{arr(0, 0), arr(1, 0)}, "[1 0]"},
		{responseAggSum, []resp.Value{ints(1)[0], errV}, "ERR no"},
		{responseAllSucceeded, []resp.Value{{Kind: resp.SimpleString, Str: "OK"}, errV}, "ERR no"},
		{responseOneSucceeded, []resp.Value{errV, {Kind: resp.SimpleString, Str: "OK"}}, "OK"},
		{responseDefault, []resp.Value{arr(1), arr(2, 3)}, "[1 2 3]"},
	} {
		got := Value{combine(tc.p, tc.in)}
		s := got.String()
		if e := got.Err(); e != nil {
			s = e.Error()
		}
		if s != tc.want {
			t.Errorf("%v of %v = %s, want %s", tc.p, tc.in, s, tc.want)
		}
	}
	// RANDOMKEY: a key from any master that has one, each alike, however
	// the masters stand.
	str := func(s string) resp.Value { return resp.Value{Kind: resp.BulkString, Str: s} }
	null := resp.Value{Kind: resp.Null}
	if got := combine(responseDefault, []resp.Value{null, null}); got.Kind != resp.Null {
		t.Errorf("RANDOMKEY of empty masters = %v, want nil", Value{got})
	}
	seen := map[string]int{}
	const draws = 3000
	for range draws {
		seen[combine(responseDefault, []resp.Value{str("a"), str("b"), null}).Str]++
	}
	if len(seen) != 2 || seen["a"] < draws*2/5 || seen["b"] < draws*2/5 {
		t.Errorf("RANDOMKEY over [a b nil] drew %v in %d, want a and b alike", seen, draws)
	}
}

// SCRIPT KILL on a cluster succeeds when one master kills its script,
// though the others, running none, refuse with NOTBUSY: its policy asks
// one success, and the refusals are no partial failure.
func TestClusterScriptKill(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := clusterCtx(t)
	busy := cl.Masters[1]
	busy.MustDo(t, "CONFIG", "SET", "busy-reply-threshold", "50")
	done := make(chan any, 1)
	go func() {
		v, _ := busy.Do("EVAL", "local i = 0 while true do i = i + 1 end", "0")
		done <- v
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.ScriptKill(ctx)
		if err == nil {
			break
		}
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "NOTBUSY" || time.Now().After(deadline) {
			t.Fatalf("SCRIPT KILL with a script running on one master = %v, want it to succeed", err)
		}
		time.Sleep(20 * time.Millisecond) // no master runs the script yet
	}
	select {
	case v := <-done:
		if e, ok := v.(redistest.ReplyError); !ok || !strings.Contains(string(e), "killed") {
			t.Errorf("the killed script answered %v", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the script still runs after SCRIPT KILL")
	}
}

func TestParseRedirect(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want redirect
		ok   bool
	}{
		{"MOVED 3999 127.0.0.1:6381", redirect{"MOVED", 3999, "127.0.0.1:6381"}, true},
		{"ASK 12 :7001", redirect{"ASK", 12, "10.0.0.9:7001"}, true},
		// A node's IPv6 address comes without brackets.
		{"MOVED 3999 ::1:6381", redirect{"MOVED", 3999, "[::1]:6381"}, true},
		{"ASK 7 2001:db8::7:7001", redirect{"ASK", 7, "[2001:db8::7]:7001"}, true},
		{"MOVED 3999 ::ffff:127.0.0.1:6381", redirect{"MOVED", 3999, "[::ffff:127.0.0.1]:6381"}, true},
		{"MOVED 3999 [::1]:6381", redirect{"MOVED", 3999, "[::1]:6381"}, true},
		{"MOVED 3999 ::1:", redirect{}, false},
		{"MOVED 3999 [::1:6381", redirect{}, false},
		{"MOVED 3999 127.0.0.1", redirect{}, false},
		{"TRYAGAIN Multiple keys request during rehashing of slot", redirect{"TRYAGAIN", -1, ""}, true},
		{"CLUSTERDOWN The cluster is down", redirect{"CLUSTERDOWN", -1, ""}, true},
		{"MOVED x 127.0.0.1:1", redirect{}, false},
		{"ERR wrong", redirect{}, false},
	} {
		got, ok := parseRedirect(tc.msg, "10.0.0.9:7000")
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRedirect(%q) = %+v, %v; want %+v, %v", tc.msg, got, ok, tc.want, tc.ok)
		}
	}
}

// setReplicated sets keys to values, given as key, value, ..., and waits
// until their master's replica has them: WAIT after the writes, on their
// connection, so that a master killed next loses nothing.
func setReplicated(t *testing.T, ctx context.Context, c *Client, kvs ...string) {
	t.Helper()
	p := c.Pipeline(NoTransaction)
	for i := 0; i+1 < len(kvs); i += 2 {
		p.Set(kvs[i], kvs[i+1])
	}
	replies, err := p.Wait(1, 5000).Exec(ctx)
	if err != nil || replies[len(replies)-1].String() != "1" {
		t.Fatalf("SETs and WAIT = %v, %v; want the replica to have them", replies, err)
	}
}

// A master that dies is found out by the refused connection, not by a
// timer: the next call refreshes the layout and reaches the replica that
// took over.
func TestClusterMasterKilled(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dead := cl.Masters[0]
	slot := 7 // the first master's
	keys := []string{keyIn(slot, "kill:a"), keyIn(slot, "kill:b")}
	setReplicated(t, ctx, c, keys[0], keys[0], keys[1], keys[1])
	// A client that knows the layout from before and runs only
	// transactions, which no pipeline of its own sets right.
	txc, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer txc.Close()
	if v, err := txc.Get(ctx, keys[0]); err != nil || v != keys[0] {
		t.Fatalf("Get before the failover = %q, %v", v, err)
	}
	// And one that only sends commands for every master, a health check.
	pc, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	promoted, err := cl.KillMaster(ctx, dead)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := pc.Ping(ctx); err != nil || s != "PONG" {
		t.Errorf("Ping after the failover = %q, %v; want it sent to the promoted replica", s, err)
	}
	counter := keyIn(slot, "kill:n")
	replies, err := txc.Transaction(ctx, func(tx *Tx) error {
		tx.Multi().Incr(counter)
		return nil
	}, counter)
	if err != nil || fmt.Sprint(replies) != "[1]" {
		t.Fatalf("Transaction after the failover: %v, %v", replies, err)
	}
	tx, err := txc.Watch(ctx, keys[0])
	if err != nil {
		t.Fatalf("Watch after the failover: %v", err)
	}
	if addr := tx.c.opt.Addr; addr != promoted.Addr {
		t.Errorf("Watch after the failover bound to %s, want the promoted %s", addr, promoted.Addr)
	}
	tx.Close()
	before := c.cluster.refreshes.Load()
	replies, err = c.Pipeline(NoTransaction).Get(keys[0]).Get(keys[1]).Set("kill:other", 1).Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if replies[0].String() != keys[0] || replies[1].String() != keys[1] {
		t.Errorf("replies after the failover: %v", replies)
	}
	if got := c.cluster.owner(slot).opt.Addr; got != promoted.Addr {
		t.Errorf("slot %d routed to %s, want the promoted %s", slot, got, promoted.Addr)
	}
	if c.cluster.refreshes.Load() == before {
		t.Error("no refresh after the master died")
	}
	if v, err := c.Get(ctx, keys[0]); err != nil || v != keys[0] {
		t.Errorf("Get after the failover = %q, %v", v, err)
	}
}

// A Transaction whose master dies while fn reads starts again on the
// replica promoted in its place: the read's failure says not applied, and
// the attempt's connection was never written to, so the cluster moves the
// transaction rather than giving up.
func TestClusterTransactionAcrossFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key := keyIn(7, "txfail:") // the first master's
	dead := cl.Masters[0]
	setReplicated(t, ctx, c, key, "1")
	calls := 0
	replies, err := c.Transaction(ctx, func(tx *Tx) error {
		calls++
		if calls == 1 {
			if _, err := cl.KillMaster(ctx, dead); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Get(ctx, key); err != nil {
			return err
		}
		tx.Multi().Incr(key)
		return nil
	}, key)
	if err != nil || calls != 2 || len(replies) != 1 || replies[0].String() != "2" {
		t.Fatalf("Transaction across a failover = %v, %v after %d runs of fn; want [2] after 2", replies, err, calls)
	}
}

// A command for every master, in a NoTransaction pipeline or a Stream,
// whose master has died goes, once the refused connection has refreshed
// the layout, to the replica promoted in its place, as it would alone:
// nothing fails, SCRIPT LOAD and DBSIZE run once on every master of the
// new layout, and DBSIZE counts the keys of all of them.
func TestClusterFanOutAcrossFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	ctx := clusterCtx(t)
	dead := cl.Masters[0]
	key := keyIn(7, "fanfail:") // the first master's
	// A client for each subtest, all with the layout from before.
	clients := loadedClients(t, ctx, cl, 2)
	setReplicated(t, ctx, clients[0], key, "before", keyIn(8000, "fanfail:"), "1", keyIn(15000, "fanfail:"), "2")
	if _, err := cl.KillMaster(ctx, dead); err != nil {
		t.Fatal(err)
	}
	testFanOutAfterLoss(t, clients, dead, cl.Masters, key, "across a failover", false)
}

// testFanOutAfterLoss runs SET key, SCRIPT LOAD, DBSIZE and GET key in a
// NoTransaction pipeline on clients[0] and in a stream on clients[1], both
// with the layout from before gone was lost, and checks their replies
// with checkFanOut against masters, those of the new layout; what tells
// of the loss, in the script and in errors. overtaken tells that key's
// new master is one that DBSIZE reached at once: SET, queued before
// DBSIZE, must not run after it there, and is not sent.
func testFanOutAfterLoss(t *testing.T, clients []*Client, gone *redistest.Server, masters []*redistest.Server, key, what string, overtaken bool) {
	ctx := clusterCtx(t)
	t.Run("Pipeline", func(t *testing.T) {
		c := clients[0]
		wantStale(t, c, gone)
		resetStats(t, masters...)
		replies, err := c.Pipeline(NoTransaction).
			Set(key, "after").
			ScriptLoad("return 'a pipeline " + what + "'").
			DBSize().
			Get(key).
			Exec(ctx)
		if err != nil && !overtaken {
			t.Fatalf("Exec %s = %v, %v", what, replies, err)
		}
		checkFanOut(t, masters, replies, err, 3, overtaken)
	})
	t.Run("Stream", func(t *testing.T) {
		c := clients[1]
		wantStale(t, c, gone)
		resetStats(t, masters...)
		var replies []Value
		s := c.Stream(ctx, func(i int, v Value) error {
			replies = append(replies, v)
			return nil
		})
		s.Set(key, "again").
			ScriptLoad("return 'a stream " + what + "'").
			DBSize().
			Get(key)
		_, err := s.Close(ctx)
		if len(replies) != 4 {
			t.Fatalf("Close %s = %v with replies %v", what, err, replies)
		}
		if err != nil && !overtaken {
			t.Fatalf("Close %s = %v with replies %v", what, err, replies)
		}
		if s.cl.redirected.unreached == 0 {
			t.Errorf("the lost master went unnoticed: %+v", s.cl.redirected)
		}
		checkFanOut(t, masters, replies, err, 3, overtaken)
	})
}

// A master that handed every slot it served to another master and then
// died leaves the legs of a command for every master bound for it, in a
// pipeline or a stream, with no master to go to: the master serving its
// slots has a leg of its own. The command has reached every master
// without it, as a call alone would have, and DBSIZE counts the keys of
// the masters left. The SET queued before DBSIZE on a key of the dead
// master is not sent to the heir, which ran DBSIZE first: it would run
// after it.
func TestClusterFanOutMasterRetired(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	retired, heir := cl.Masters[2], cl.Masters[0]
	clients := loadedClients(t, ctx, cl, 2)
	var slots []int
	clients[0].cluster.mu.RLock()
	for s, m := range clients[0].cluster.slots {
		if m.opt.Addr == retired.Addr {
			slots = append(slots, s)
		}
	}
	clients[0].cluster.mu.RUnlock()
	key := keyIn(slots[0], "retired:")
	if err := clients[0].MSet(ctx, key, "before", keyIn(7, "retired:"), 1, keyIn(8000, "retired:"), 2); err != nil {
		t.Fatal(err)
	}
	// Left with no slot, it stays a master rather than become a replica
	// of the heir.
	retired.MustDo(t, "CONFIG", "SET", "cluster-allow-replica-migration", "no")
	if err := cl.MoveSlots(ctx, retired, heir, slots...); err != nil {
		t.Fatal(err)
	}
	if err := retired.Kill(); err != nil {
		t.Fatal(err)
	}
	left := []*redistest.Server{cl.Masters[0], cl.Masters[1]}
	testFanOutAfterLoss(t, clients, retired, left, key, "after a master retired", true)
}

// A master that a graceful failover turned into a replica of the replica
// promoted in its place refuses a write for every master with READONLY,
// having run nothing of it. A client whose layout is from before the
// failover then sends that leg, alone, in a NoTransaction pipeline or in a
// stream, to the promoted replica once the refusal has refreshed the
// layout: FLUSHALL succeeds and runs once on every master of the new
// layout, and a SET queued after it on a key of the promoted replica,
// which the former master redirected, still runs after it. The layout so
// refreshed, the next command for every master, SCRIPT LOAD, which a
// replica would take, reaches the promoted replica too.
func TestClusterFanOutAfterGracefulFailover(t *testing.T) {
	t.Parallel()
	// A client for each subtest, all with the layout from before.
	f := gracefulFailover(t, 3)
	ctx, cl, old, promoted, clients := f.ctx, f.cl, f.old, f.promoted, f.clients
	key := keyIn(7, "graceful:") // the first master's
	// One that knows the new layout fills every master before each
	// flush.
	filler, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	fill := func(t *testing.T, c *Client) {
		t.Helper()
		if err := filler.MSet(ctx, key, "before", keyIn(8000, "graceful:"), 1, keyIn(15000, "graceful:"), 2); err != nil {
			t.Fatal(err)
		}
		wantStale(t, c, old)
		resetStats(t, cl.Masters...)
	}
	// checkFlushed checks that FLUSHALL ran once on every master of the
	// new layout and left it empty, but for key, set to kept after it,
	// unless kept is "".
	checkFlushed := func(t *testing.T, kept string) {
		t.Helper()
		for _, m := range cl.Masters {
			if n := calls(t, m, "flushall"); n != 1 {
				t.Errorf("master %s ran FLUSHALL %d times, want once", m.Addr, n)
			}
			want := int64(0)
			if kept != "" && m == promoted {
				want = 1
			}
			if n := m.MustDo(t, "DBSIZE").(int64); n != want {
				t.Errorf("master %s holds %d keys after FLUSHALL, want %d", m.Addr, n, want)
			}
		}
		if kept != "" {
			if v, _ := promoted.Do("GET", key); v != kept {
				t.Errorf("GET %s on the promoted master = %v, want %q, set after FLUSHALL", key, v, kept)
			}
		}
	}
	checkLoaded := func(t *testing.T, sha string) {
		t.Helper()
		for _, m := range cl.Masters {
			if got := fmt.Sprint(m.MustDo(t, "SCRIPT", "EXISTS", sha)); got != "[1]" {
				t.Errorf("SCRIPT EXISTS on master %s = %s, want [1]", m.Addr, got)
			}
			if n := calls(t, m, "script|load"); n != 1 {
				t.Errorf("master %s ran SCRIPT LOAD %d times, want once", m.Addr, n)
			}
		}
	}
	t.Run("Alone", func(t *testing.T) {
		c := clients[0]
		fill(t, c)
		if err := c.FlushAll(ctx); err != nil {
			t.Fatalf("FlushAll after the failover: %v", err)
		}
		checkFlushed(t, "")
		sha, err := c.ScriptLoad(ctx, "return 'alone after a failover'")
		if err != nil {
			t.Fatalf("ScriptLoad after the failover: %v", err)
		}
		checkLoaded(t, sha)
	})
	t.Run("Pipeline", func(t *testing.T) {
		c := clients[1]
		fill(t, c)
		replies, err := c.Pipeline(NoTransaction).FlushAll().Set(key, "after").Exec(ctx)
		if err != nil || fmt.Sprint(replies) != "[OK OK]" {
			t.Fatalf("FLUSHALL and SET after the failover = %v, %v", replies, err)
		}
		checkFlushed(t, "after")
		replies, err = c.Pipeline(NoTransaction).ScriptLoad("return 'a pipeline after a failover'").Exec(ctx)
		if err != nil {
			t.Fatalf("SCRIPT LOAD after the failover = %v, %v", replies, err)
		}
		checkLoaded(t, replies[0].String())
	})
	t.Run("Stream", func(t *testing.T) {
		c := clients[2]
		fill(t, c)
		var replies []Value
		s := c.Stream(ctx, func(i int, v Value) error {
			replies = append(replies, v)
			return nil
		})
		s.FlushAll().Set(key, "again")
		if _, err := s.Close(ctx); err != nil || fmt.Sprint(replies) != "[OK OK]" {
			t.Fatalf("Close after the failover = %v with replies %v", err, replies)
		}
		checkFlushed(t, "again")
		replies = nil
		s = c.Stream(ctx, func(i int, v Value) error {
			replies = append(replies, v)
			return nil
		})
		s.ScriptLoad("return 'a stream after a failover'")
		if _, err := s.Close(ctx); err != nil || len(replies) != 1 {
			t.Fatalf("Close after the failover = %v with replies %v", err, replies)
		}
		checkLoaded(t, replies[0].String())
	})
}

// loadedClients returns n cluster Clients of cl, each with the layout
// loaded, as it is now, closed at the end of the test.
func loadedClients(t *testing.T, ctx context.Context, cl *redistest.Cluster, n int) []*Client {
	t.Helper()
	clients := make([]*Client, n)
	for i := range clients {
		c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.DBSize(ctx); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	return clients
}

// failedOver is a cluster whose first master, old, a graceful failover has
// just made a replica of promoted, and clients that still take old for a
// master.
type failedOver struct {
	ctx           context.Context
	cl            *redistest.Cluster
	old, promoted *redistest.Server
	clients       []*Client
}

// gracefulFailover starts a cluster with a replica per master, makes n
// clients that know its layout (loadedClients), then fails its first master
// over gracefully.
func gracefulFailover(t *testing.T, n int) failedOver {
	t.Helper()
	f := failedOver{cl: redistest.StartCluster(t, 1), ctx: clusterCtx(t)}
	f.old = f.cl.Masters[0]
	f.clients = loadedClients(t, f.ctx, f.cl, n)
	fctx, cancel := context.WithTimeout(f.ctx, 60*time.Second)
	defer cancel()
	var err error
	if f.promoted, err = f.cl.Failover(fctx, f.old); err != nil {
		t.Fatal(err)
	}
	return f
}

// wantStale stops a test of what a client does when it meets a node gone
// from the layout if the client already knows: gone must still be among
// its masters.
func wantStale(t *testing.T, c *Client, gone *redistest.Server) {
	t.Helper()
	if !slices.ContainsFunc(masters(c), func(m *Client) bool { return m.opt.Addr == gone.Addr }) {
		t.Fatalf("the client learnt that %s is gone before the test: nothing left to test", gone.Addr)
	}
}

// checkFanOut checks the replies of SET key, SCRIPT LOAD, DBSIZE and GET
// key, on a cluster of masters holding keys keys in all: the script is
// loaded on every master, SCRIPT LOAD and DBSIZE ran once on each, DBSIZE
// counts the keys of all, and GET reads what SET wrote. With overtaken,
// the key's new master ran DBSIZE before the SET could get there: the SET
// was not sent and says so, its error is the batch's, err, and GET reads
// the value from before.
func checkFanOut(t *testing.T, masters []*redistest.Server, replies []Value, err error, keys int64, overtaken bool) {
	t.Helper()
	sha := replies[1].String()
	var n int64
	for _, m := range masters {
		if got := fmt.Sprint(m.MustDo(t, "SCRIPT", "EXISTS", sha)); got != "[1]" {
			t.Errorf("SCRIPT EXISTS on master %s = %s, want [1]", m.Addr, got)
		}
		for _, cmd := range []string{"script|load", "dbsize"} {
			if c := calls(t, m, cmd); c != 1 {
				t.Errorf("master %s ran %s %d times, want once", m.Addr, cmd, c)
			}
		}
		n += m.MustDo(t, "DBSIZE").(int64)
	}
	if got, err := replies[2].Int64(); err != nil || got != n || n != keys {
		t.Errorf("DBSIZE = %v, %v; want the %d keys of the masters (%d)", replies[2], err, n, keys)
	}
	if overtaken {
		if e := replies[0].Err(); e == nil || OutcomeOf(e) != OutcomeNotSent {
			t.Errorf("SET, overtaken by DBSIZE on its new master = %v (outcome %v); want an error, not sent", replies[0], OutcomeOf(e))
		}
		if ce := (*CommandError)(nil); !errors.As(err, &ce) || ce.Index != 0 {
			t.Errorf("the batch's error = %v; want SET's", err)
		}
		if got := replies[3].String(); got != "before" {
			t.Errorf("GET after the SET not sent = %q, want %q", got, "before")
		}
		return
	}
	if set, got := replies[0].String(), replies[3].String(); set != "OK" || got == "before" {
		t.Errorf("SET = %s, then GET = %q; want OK, then the value set", set, got)
	}
}

// TestClusterKeylessWriteAfterGracefulFailover: a keyless write (a script
// with no keys, which goes to any master) that meets READONLY on a master
// a graceful failover made a replica refreshes the layout, so that the
// calls after it go to the masters of the new layout and succeed.
func TestClusterKeylessWriteAfterGracefulFailover(t *testing.T) {
	t.Parallel()
	f := gracefulFailover(t, 1)
	ctx, old, c := f.ctx, f.old, f.clients[0]
	wantStale(t, c, old)
	// A script with a shebang and no no-writes flag may write: a replica
	// refuses it before it runs.
	const script = "#!lua\nreturn 1"
	refusedThenServed(t, c, old, "EVAL", func() error {
		_, err := c.Eval(ctx, script, 0)
		return err
	})
}

// refusedThenServed makes call, a keyless write on c, until old, a master
// a graceful failover made a replica and which c still takes for a master,
// refuses it with READONLY (at most 200 times); once that refusal has
// refreshed c's layout, 60 more calls must all succeed.
func refusedThenServed(t *testing.T, c *Client, old *redistest.Server, what string, call func() error) {
	t.Helper()
	refused := false
	for i := 0; i < 200 && !refused; i++ {
		err := call()
		var se *Error
		switch {
		case errors.As(err, &se) && se.Prefix == "READONLY":
			refused = true
		case err != nil:
			t.Fatalf("%s %d: %v", what, i, err)
		}
	}
	if !refused {
		t.Fatalf("200 keyless calls (%s) met no READONLY from %s, which the client still takes for a master", what, old.Addr)
	}
	waitRefreshed(t, c.cluster)
	for i := range 60 {
		if err := call(); err != nil {
			t.Fatalf("%s %d after the READONLY: %v; want the refreshed layout to send it to a master", what, i, err)
		}
	}
}

// TestClusterKeylessScriptBatchesAfterGracefulFailover: a script with no
// keys that may write goes to any master in a transaction, a pipeline or a
// stream, as alone. A master that a graceful failover made a replica
// refuses it with READONLY; the refusal refreshes the layout, as for a call
// alone, so that the batches after it go to the masters of the new layout.
// A transaction so refused, of which nothing ran, goes again to one of
// them at once.
func TestClusterKeylessScriptBatchesAfterGracefulFailover(t *testing.T) {
	t.Parallel()
	f := gracefulFailover(t, 3)
	ctx, old, clients := f.ctx, f.old, f.clients
	for _, c := range clients {
		wantStale(t, c, old)
	}
	// A script with a shebang and no no-writes flag may write: a replica
	// refuses it before it runs.
	const script = "#!lua\nreturn 1"
	t.Run("Transaction", func(t *testing.T) {
		c := clients[0]
		resetStats(t, old)
		for i := range 60 {
			if replies, err := c.Pipeline().Eval(script, 0).Exec(ctx); err != nil || fmt.Sprint(replies) != "[1]" {
				t.Fatalf("transaction %d = %v, %v; want it sent again to a master of the new layout", i, replies, err)
			}
		}
		if cmdStat(t, old, "eval", "rejected_calls") == 0 {
			t.Fatalf("60 transactions never went to %s, which the client took for a master: nothing tested", old.Addr)
		}
	})
	// In a pipeline or a stream the refusal stands, as for a call alone:
	// it is the script's reply.
	batches := map[string]func(c *Client) error{
		"Pipeline": func(c *Client) error {
			replies, err := c.Pipeline(NoTransaction).Eval(script, 0).Exec(ctx)
			if err == nil && fmt.Sprint(replies) != "[1]" {
				err = fmt.Errorf("replies %v", replies)
			}
			return err
		},
		"Stream": func(c *Client) error {
			s := c.Stream(ctx, nil)
			s.Eval(script, 0)
			_, err := s.Close(ctx)
			return err
		},
	}
	for i, name := range []string{"Pipeline", "Stream"} {
		t.Run(name, func(t *testing.T) {
			c, batch := clients[1+i], batches[name]
			refusedThenServed(t, c, old, name, func() error { return batch(c) })
		})
	}
}

// movedOnly makes c's layout what a MOVED reply for slot naming to leaves
// it until the refresh that reply starts is over: the slot goes to to,
// while c's masters are still those from before.
func movedOnly(t *testing.T, c *Client, slot int, to *redistest.Server) {
	t.Helper()
	node, err := c.cluster.nodeAt(to.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.cluster.mu.Lock()
	c.cluster.slots[slot] = node
	c.cluster.mu.Unlock()
}

// A leg of a write for every master that a former master refused with
// READONLY does not go to the replica promoted in its place once a later
// command of the same pipeline or stream has run there: sent after it, it
// would undo or precede what that command did. A client whose masters are
// from before a graceful failover, and which a MOVED reply has just told
// that a slot of the former master is now the promoted replica's, sends
// a SET on that slot queued after FLUSHALL straight to the promoted
// replica, while FLUSHALL's leg meets READONLY on the former master.
// FLUSHALL then has an error of unknown outcome (it ran on the other
// masters), and the SET stays. A SET queued before FLUSHALL does not stop
// it: FLUSHALL reaches the promoted replica after it.
func TestClusterFanOutNotAfterLaterCommands(t *testing.T) {
	t.Parallel()
	f := gracefulFailover(t, 3)
	ctx, cl, old, promoted, clients := f.ctx, f.cl, f.old, f.promoted, f.clients
	slot := 7 // the first master's
	key := keyIn(slot, "overtaken:")
	prepare := func(t *testing.T, c *Client) {
		t.Helper()
		promoted.MustDo(t, "SET", key, "before")
		wantStale(t, c, old)
		movedOnly(t, c, slot, promoted)
		resetStats(t, cl.Masters...)
	}
	// checkKept checks that FLUSHALL's reply is an error of unknown
	// outcome, that it did not run on the promoted replica, and that key
	// holds what the SET queued after it wrote.
	checkKept := func(t *testing.T, flush Value, kept string) {
		t.Helper()
		if err := flush.Err(); err == nil || OutcomeOf(err) != OutcomeUnknown || errors.Is(err, ErrNotApplied) {
			t.Errorf("FLUSHALL = %v (outcome %v); want an error of unknown outcome", flush, OutcomeOf(err))
		}
		if n := calls(t, promoted, "flushall"); n != 0 {
			t.Errorf("the promoted master ran FLUSHALL %d times after the SET queued after it", n)
		}
		if v, _ := promoted.Do("GET", key); v != kept {
			t.Errorf("GET %s on the promoted master = %v, want %q, set after FLUSHALL", key, v, kept)
		}
	}
	t.Run("Pipeline", func(t *testing.T) {
		c := clients[0]
		prepare(t, c)
		replies, err := c.Pipeline(NoTransaction).FlushAll().Set(key, "after").Exec(ctx)
		if err == nil || len(replies) != 2 || replies[1].String() != "OK" {
			t.Fatalf("FLUSHALL and SET = %v, %v; want SET to run and an error for FLUSHALL", replies, err)
		}
		checkKept(t, replies[0], "after")
	})
	t.Run("Stream", func(t *testing.T) {
		c := clients[1]
		prepare(t, c)
		var replies []Value
		s := c.Stream(ctx, func(i int, v Value) error {
			replies = append(replies, v)
			return nil
		})
		s.FlushAll().Set(key, "again")
		s.Close(ctx)
		if len(replies) != 2 || replies[1].String() != "OK" {
			t.Fatalf("FLUSHALL and SET = %v; want SET to run and an error for FLUSHALL", replies)
		}
		checkKept(t, replies[0], "again")
	})
	t.Run("Before", func(t *testing.T) {
		c := clients[2]
		prepare(t, c)
		replies, err := c.Pipeline(NoTransaction).Set(key, "first").FlushAll().Exec(ctx)
		if err != nil || fmt.Sprint(replies) != "[OK OK]" {
			t.Fatalf("SET and FLUSHALL = %v, %v", replies, err)
		}
		for _, m := range cl.Masters {
			if n := calls(t, m, "flushall"); n != 1 {
				t.Errorf("master %s ran FLUSHALL %d times, want once", m.Addr, n)
			}
		}
		if n := promoted.MustDo(t, "DBSIZE").(int64); n != 0 {
			t.Errorf("the promoted master holds %d keys after FLUSHALL, want 0", n)
		}
	})
}

// A command for every master whose leg goes, after a failover, to the
// replica promoted in its node's place keeps its place among the commands
// around it there: those queued before it still run before it, and those
// queued after it, after it, in a NoTransaction pipeline and in a stream,
// for a master that a graceful failover made a replica (READONLY) as for
// one that died. So FLUSHALL removes the keys set before it, and leaves
// those set after it.
func TestClusterFanOutKeepsOrderAcrossFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	ctx := clusterCtx(t)
	// check checks that FLUSHALL ran times times on every master, and
	// that m holds the keys of want, to their values, and no other.
	check := func(t *testing.T, m *redistest.Server, times int64, want map[string]string) {
		t.Helper()
		for _, m := range cl.Masters {
			if n := calls(t, m, "flushall"); n != times {
				t.Errorf("master %s ran FLUSHALL %d times, want %d", m.Addr, n, times)
			}
		}
		if n := m.MustDo(t, "DBSIZE").(int64); n != int64(len(want)) {
			t.Errorf("master %s holds %d keys, want %d: %v", m.Addr, n, len(want), want)
		}
		for k, v := range want {
			if got, _ := m.Do("GET", k); got != v {
				t.Errorf("GET %s on %s = %v, want %q", k, m.Addr, got, v)
			}
		}
	}
	stream := func(t *testing.T, c *Client, queue func(s *Stream)) []Value {
		t.Helper()
		var replies []Value
		s := c.Stream(ctx, func(i int, v Value) error {
			replies = append(replies, v)
			return nil
		})
		queue(s)
		if _, err := s.Close(ctx); err != nil {
			t.Fatalf("Close = %v with replies %v", err, replies)
		}
		return replies
	}

	demoted := cl.Masters[0]
	clients := loadedClients(t, ctx, cl, 2) // with the layout from before the failover
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	took, err := cl.Failover(fctx, demoted)
	if err != nil {
		t.Fatal(err)
	}
	before, after := keyIn(7, "order:before"), keyIn(7, "order:after") // the demoted master's
	t.Run("ReadonlyPipeline", func(t *testing.T) {
		c := clients[0]
		wantStale(t, c, demoted)
		resetStats(t, cl.Masters...)
		replies, err := c.Pipeline(NoTransaction).
			Set(before, 1).FlushAll().Set(after, 2).FlushAll().Set(after, 3).
			Exec(ctx)
		if err != nil || fmt.Sprint(replies) != "[OK OK OK OK OK]" {
			t.Fatalf("Exec = %v, %v", replies, err)
		}
		check(t, took, 2, map[string]string{after: "3"})
	})
	t.Run("ReadonlyStream", func(t *testing.T) {
		c := clients[1]
		wantStale(t, c, demoted)
		resetStats(t, cl.Masters...)
		replies := stream(t, c, func(s *Stream) {
			s.Set(before, 1).FlushAll().Set(after, 2).FlushAll().Set(after, 3)
		})
		if fmt.Sprint(replies) != "[OK OK OK OK OK]" {
			t.Fatalf("replies = %v", replies)
		}
		check(t, took, 2, map[string]string{after: "3"})
	})

	dead := cl.Masters[1]
	clients = loadedClients(t, ctx, cl, 2)
	promoted, err := cl.KillMaster(ctx, dead)
	if err != nil {
		t.Fatal(err)
	}
	a, b := keyIn(8000, "order:a"), keyIn(8000, "order:b") // the dead master's
	t.Run("DeadPipeline", func(t *testing.T) {
		c := clients[0]
		wantStale(t, c, dead)
		resetStats(t, cl.Masters...)
		replies, err := c.Pipeline(NoTransaction).Set(a, 1).Set(b, 2).FlushAll().Set(a, 3).Exec(ctx)
		if err != nil || fmt.Sprint(replies) != "[OK OK OK OK]" {
			t.Fatalf("Exec = %v, %v", replies, err)
		}
		check(t, promoted, 1, map[string]string{a: "3"})
	})
	t.Run("DeadStream", func(t *testing.T) {
		c := clients[1]
		wantStale(t, c, dead)
		resetStats(t, cl.Masters...)
		replies := stream(t, c, func(s *Stream) {
			s.Set(a, 1).Set(b, 2).FlushAll().Set(a, 3)
		})
		if fmt.Sprint(replies) != "[OK OK OK OK]" {
			t.Fatalf("replies = %v", replies)
		}
		check(t, promoted, 1, map[string]string{a: "3"})
	})
}

// A stream of thousands of SETs with FLUSHALL among them, from clients
// whose layout is from before a graceful failover: the former master
// redirects the SETs of its slots, one MOVED at a time, to the promoted
// replica, where later SETs of those slots then go at once, and refuses
// FLUSHALL's leg with READONLY. FLUSHALL then either runs on the promoted
// replica in its place among the SETs there, so that exactly the keys set
// after it remain, or reports an unknown outcome; it never succeeds with
// keys set before it left, or keys set after it gone.
func TestClusterStreamFlushAllAcrossGracefulFailover(t *testing.T) {
	t.Parallel()
	f := gracefulFailover(t, 3)
	ctx, cl, clients := f.ctx, f.cl, f.clients
	const n, at = 20000, 7000 // commands, and the index of FLUSHALL
	for round, c := range clients {
		var flush Value
		s := c.Stream(ctx, func(i int, v Value) error {
			if i == at {
				flush = v
			} else if v.String() != "OK" {
				t.Errorf("round %d: command %d = %v, want OK", round, i, v)
			}
			return nil
		})
		for i := 0; i < n; i++ {
			if i == at {
				s.FlushAll()
				continue
			}
			s.Set(fmt.Sprintf("flushbusy:%d:%d", round, i), i)
		}
		s.Close(ctx)
		var keys int64
		for _, m := range cl.Masters {
			keys += m.MustDo(t, "DBSIZE").(int64)
		}
		switch err := flush.Err(); {
		case err == nil && keys != n-at-1:
			t.Errorf("round %d: FLUSHALL = OK, and %d keys left, want the %d set after it", round, keys, n-at-1)
		case err != nil && OutcomeOf(err) != OutcomeUnknown:
			t.Errorf("round %d: FLUSHALL = %v, of outcome %v; want OK or an unknown outcome", round, err, OutcomeOf(err))
		}
		for _, m := range cl.Masters {
			m.MustDo(t, "FLUSHALL")
		}
	}
}

// The error reply of a script that wrote, then returned an error whose
// prefix alone would say it was refused (OOM), is of unknown outcome in
// every form a script runs in on a cluster, as Eval's is: a call alone
// through Do, a pipeline (RunScript, Do), a transaction, a stream, a Tx's
// Multi, and the Client of one master that ForEachMaster hands out. Only
// NOSCRIPT, answered before any script runs, stays not applied.
func testClusterScriptErrorReplies(t *testing.T, c *Client) {
	ctx := clusterCtx(t)
	const src = "redis.call('INCR', KEYS[1]); return redis.error_reply('OOM not really')"
	s := NewScript(src)
	key := "{scripterr}n"
	if _, err := c.Del(ctx, key); err != nil {
		t.Fatal(err)
	}
	runs := 0
	want := func(how string, v Value) {
		t.Helper()
		runs++
		err := v.Err()
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "OOM" || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
			t.Errorf("%s: reply %v, error %v (outcome %v); want the script's OOM, of unknown outcome: its INCR ran",
				how, v, err, OutcomeOf(err))
		}
	}
	v, err := c.Do(ctx, "EVAL", src, 1, key)
	if err != nil {
		t.Fatalf("Do EVAL: %v", err)
	}
	want("Do EVAL", v)
	for _, tc := range []struct {
		name string
		opts []PipelineOption
	}{
		{"NoTransaction pipeline", []PipelineOption{NoTransaction}},
		{"NoTransaction pipeline with ErrorsInReplies", []PipelineOption{NoTransaction, ErrorsInReplies}},
		{"transaction", nil},
		{"transaction with ErrorsInReplies", []PipelineOption{ErrorsInReplies}},
	} {
		replies, err := c.Pipeline(tc.opts...).RunScript(s, []string{key}).Do("EVAL", src, 1, key).Get(key).Exec(ctx)
		if len(replies) != 3 {
			t.Fatalf("a %s = %v, %v", tc.name, replies, err)
		}
		if OutcomeOf(err) == OutcomeNotApplied || errors.Is(err, ErrNotApplied) {
			t.Errorf("a %s: Exec's error %v says not applied", tc.name, err)
		}
		want("RunScript in a "+tc.name, replies[0])
		want("EVAL in a "+tc.name, replies[1])
	}
	st := c.Stream(ctx, func(i int, v Value) error {
		if i < 2 {
			want(fmt.Sprintf("command %d of a stream", i), v)
		}
		return nil
	}, ErrorsInReplies)
	st.Eval(src, 1, key).EvalSha(s.Hash(), 1, key).Get(key)
	if n, err := st.Close(ctx); n != 3 || err != nil {
		t.Fatalf("the stream's Close = %d, %v", n, err)
	}
	tx, err := c.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	v, err = tx.Do(ctx, "EVALSHA", s.Hash(), 1, key)
	if err != nil {
		t.Fatalf("Tx.Do EVALSHA: %v", err)
	}
	want("EVALSHA on a Tx", v)
	tx.Close() // the script's write spoilt the watch
	tx, err = c.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	replies, err := tx.Multi().RunScript(s, []string{key}).Exec(ctx)
	if len(replies) != 1 {
		t.Fatalf("a Tx's Multi = %v, %v", replies, err)
	}
	want("RunScript in a Tx's Multi", replies[0])
	tx.Close()
	err = c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		if node != c.cluster.owner(int(hashslot.Slot(key))) {
			return nil
		}
		v, err := node.Do(ctx, "EVALSHA", s.Hash(), 1, key)
		if err != nil {
			return err
		}
		want("EVALSHA on the Client of its master", v)
		replies, err := node.Pipeline(NoTransaction, ErrorsInReplies).RunScript(s, []string{key}).Exec(ctx)
		if err != nil || len(replies) != 1 {
			return fmt.Errorf("a pipeline of the Client of the master = %v, %v", replies, err)
		}
		want("RunScript in a pipeline of the Client of its master", replies[0])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Get(ctx, key); err != nil || n != strconv.Itoa(runs) {
		t.Fatalf("GET %s = %q, %v; want %d: every script ran its INCR once", key, n, err, runs)
	}
	// A script's own NOSCRIPT, after its write, is its reply: Script.Run
	// does not run it again with EVAL.
	own := NewScript("redis.call('INCR', KEYS[1]); return redis.error_reply('NOSCRIPT made up')")
	for i := range 2 { // not loaded on the slot's master, then loaded
		before, err := c.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		_, err = own.Run(ctx, c, []string{key})
		if OutcomeOf(err) != OutcomeUnknown || errors.Is(err, ErrNotApplied) {
			t.Errorf("Run %d of a script that returns NOSCRIPT after its write = %v (outcome %v), want unknown", i+1, err, OutcomeOf(err))
		}
		if after, err := c.Get(ctx, key); err != nil || after != strconv.Itoa(must(strconv.Atoi(before))+1) {
			t.Errorf("Run %d of a script that returns NOSCRIPT after its write: %s went from %s to %s, %v; want one INCR", i+1, key, before, after, err)
		}
	}
	// NOSCRIPT is answered before any script runs.
	replies, _ = c.Pipeline(NoTransaction, ErrorsInReplies).EvalSha(strings.Repeat("0", 40), 1, key).Exec(ctx)
	if err := replies[0].Err(); OutcomeOf(err) != OutcomeNotApplied {
		t.Errorf("EVALSHA of an unknown script in a pipeline = %v (outcome %v), want NOSCRIPT, not applied", err, OutcomeOf(err))
	}
}

// A script that writes, then returns an error of its own that starts with
// TRYAGAIN or CLUSTERDOWN, ran: the cluster client does not take that for
// the node's refusal and send the script again (it once ran such a script
// 51 times and reported it refused, or retried CLUSTERDOWN until the
// context ended and reported it not sent), in any form it runs in. Its
// error is of unknown outcome. So is one shaped as MOVED or ASK that
// names another slot than its key's, and a master that does not own
// that key: the server's MOVED and ASK name the slot of the command's
// keys, and the client once followed the script's own, ran it again on
// the master it named, and again where that master's MOVED sent it.
func testClusterScriptRedirectLookalikes(t *testing.T, c *Client) {
	const key = "{lookalike}n"
	slot := int(hashslot.Slot(key))
	if _, err := c.Del(clusterCtx(t), key); err != nil { // the layout is known after it
		t.Fatal(err)
	}
	owner, other := c.cluster.owner(slot).opt.Addr, ""
	c.cluster.mu.RLock()
	for _, m := range c.cluster.masters {
		if m.opt.Addr != owner {
			other = m.opt.Addr
		}
	}
	c.cluster.mu.RUnlock()
	if other == "" {
		t.Fatal("no master but the key's owner")
	}
	elsewhere := strconv.Itoa((slot + 1) % 16384)
	for _, text := range []string{"TRYAGAIN the lock is taken", "CLUSTERDOWN made up",
		"MOVED " + elsewhere + " " + other, "ASK " + elsewhere + " " + other} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		src := "redis.call('INCR', KEYS[1]); return redis.error_reply('" + text + "')"
		s := NewScript(src)
		if _, err := c.Del(ctx, key); err != nil {
			t.Fatal(err)
		}
		runs := 0
		want := func(how string, err error) {
			t.Helper()
			runs++
			var se *Error
			if !errors.As(err, &se) || se.Msg != text || OutcomeOf(err) != OutcomeUnknown || errors.Is(err, ErrNotApplied) {
				t.Errorf("%s of a script that returns %q after its write: %v (outcome %v); want its error, of unknown outcome",
					how, text, err, OutcomeOf(err))
			}
			if n, err := c.Get(ctx, key); err != nil || n != strconv.Itoa(runs) {
				t.Fatalf("%s of a script that returns %q after its write: %s = %q, %v; want %d: it ran more than once",
					how, text, key, n, err, runs)
			}
		}
		_, err := c.Eval(ctx, src, 1, key)
		want("Eval", err)
		_, err = s.Run(ctx, c, []string{key})
		want("Script.Run", err)
		for name, opts := range map[string][]PipelineOption{"transaction": nil, "NoTransaction pipeline": {NoTransaction}} {
			replies, err := c.Pipeline(opts...).RunScript(s, []string{key}).Exec(ctx)
			if len(replies) != 1 {
				t.Fatalf("a %s: %v, %v", name, replies, err)
			}
			want("RunScript in a "+name, replies[0].Err())
		}
		var streamed error
		st := c.Stream(ctx, func(i int, v Value) error { streamed = v.Err(); return nil }, ErrorsInReplies)
		st.Eval(src, 1, key)
		if n, err := st.Close(ctx); n != 1 || err != nil {
			t.Fatalf("the stream's Close = %d, %v", n, err)
		}
		want("EVAL in a stream", streamed)
	}
}

// TestClusterDialerPanics: on a cluster, connections to the nodes are
// dialed on the client's own goroutines (the refresh of the layout, the
// shared connection of each node), where a panicking Dialer used to end
// the program. The dial fails instead, with an error that says so, and
// the client works once the Dialer does.
func TestClusterDialerPanics(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	boom := errors.New("boom")
	var panicking sync.Map
	panicking.Store("on", true)
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, ok := panicking.Load("on"); ok {
			panic(boom)
		}
		return d.DialContext(ctx, network, addr)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), Options: Options{Dialer: dial, MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, boom) || !strings.Contains(err.Error(), "Dialer panicked") {
		t.Fatalf("Get while the Dialer panics = %v; want an error that says the Dialer panicked, wrapping its value", err)
	}
	panicking.Delete("on")
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Set(ctx, "k", "v")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Set once the Dialer works: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterCloseTwiceWaitsForTheFirst: of two Closes of a cluster
// client made at once, while a seed's dial is held up in the Dialer, the
// second returned at once, before the first, which waits for that dial:
// a goroutine of the client was still running after both.
func TestClusterCloseTwiceWaitsForTheFirst(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	var hold atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	defer let()
	var d net.Dialer
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		if hold.Load() {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release // a Dialer that does not heed its context
		}
		return d.DialContext(ctx, network, addr)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), Options: Options{Dialer: dial}})
	if err != nil {
		t.Fatal(err)
	}
	hold.Store(true)
	called := make(chan error, 1)
	go func() {
		// The first call loads the layout over a seed's shared
		// connection, whose dial Close waits for.
		_, err := c.Get(ctx, "ct:k")
		called <- err
	}()
	within := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			let()
			t.Fatalf("no %s after 10s", what)
		}
	}
	within(entered, "dial")
	first, second := make(chan struct{}), make(chan struct{})
	go func() { c.Close(); close(first) }()
	closing := func() bool {
		c.cluster.mu.RLock()
		defer c.cluster.mu.RUnlock()
		return c.cluster.closed
	}
	// The second Close must come after the first has begun: else it
	// would be the first, and the test would prove nothing.
	for deadline := time.Now().Add(10 * time.Second); !closing(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			let()
			t.Fatal("the first Close did not begin within 10s")
		}
	}
	go func() { c.Close(); close(second) }()
	select {
	case <-second:
		t.Error("the second Close returned while the first still waited for a dial")
	case <-time.After(100 * time.Millisecond):
	}
	let()
	within(first, "return of the first Close")
	within(second, "return of the second Close")
	if err := <-called; !errors.Is(err, ErrClosed) {
		t.Errorf("call cut short by Close: %v, want ErrClosed", err)
	}
}

// TestClusterDialerGoexit: a Dialer that ends its goroutine
// (runtime.Goexit, as t.FailNow calls) fails that dial, on whichever
// goroutine the dial runs. The cluster client dials a connection of its
// own from the goroutines that send a command for every master, and the
// parts of a pipeline that need one: a Goexit there ended the goroutine
// with neither a reply nor an error, so that a command for every master
// counted as done with an empty reply, and a pipeline panicked on the
// replies that never came. A stream's dial ended the caller's goroutine.
func TestClusterDialerGoexit(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	var exits sync.Map
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, ok := exits.Load("on"); ok {
			runtime.Goexit()
		}
		return d.DialContext(ctx, network, addr)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), MaxRedirects: 1, Options: Options{Dialer: dial, MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The layout's refresh, which dials the seeds' shared connections,
	// ends all the same: its waiters are not left hanging.
	exits.Store("on", true)
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = c.Get(gctx, "k")
	cancel()
	if err == nil || !strings.Contains(err.Error(), "Dialer did not return") || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("Get while the Dialer ends its goroutine = %v (outcome %v); want an error that says the Dialer did not return, not sent", err, OutcomeOf(err))
	}
	exits.Delete("on")
	// The layout and the masters' shared connections come while the
	// Dialer works: what follows needs connections of their own.
	if err := c.ForEachMaster(ctx, func(ctx context.Context, n *Client) error { _, err := n.Ping(ctx); return err }); err != nil {
		t.Fatal(err)
	}
	exits.Store("on", true)
	// Over largePipeline, it goes on a connection of its own.
	big := "return 1 --" + strings.Repeat("x", largePipeline)
	for _, tc := range []struct {
		name string
		f    func() error
	}{
		{"SCRIPT LOAD", func() error { _, err := c.Do(ctx, "SCRIPT", "LOAD", big); return err }},
		// A blocking command takes connections of their own for the
		// whole pipeline.
		{"BLPOP in a pipeline", func() error { _, err := c.Pipeline(NoTransaction).BLPop(0.01, "dg").Exec(ctx); return err }},
		{"BLPOP and DBSIZE in a pipeline", func() error {
			_, err := c.Pipeline(NoTransaction).BLPop(0.01, "dg").DBSize().Exec(ctx)
			return err
		}},
		// A stream dials on the caller's goroutine, which the Dialer
		// ended.
		{"DBSIZE in a stream", func() error {
			_, err := c.Stream(ctx, nil).DBSize().Close(ctx)
			return err
		}},
	} {
		err := callAlone(tc.f)
		if err == nil || !strings.Contains(err.Error(), "Dialer did not return") || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("%s while the Dialer ends its goroutine = %v (outcome %v); want an error that says the Dialer did not return, not sent", tc.name, err, OutcomeOf(err))
		}
	}
	exits.Delete("on")
	if _, err := c.Do(ctx, "SCRIPT", "LOAD", big); err != nil {
		t.Fatalf("SCRIPT LOAD once the Dialer returns: %v", err)
	}
}

// A cluster whose nodes take TLS, and plain connections too: CLUSTER
// SHARDS lists both ports of a node, and a client over TLS goes to the TLS
// one. Here a node of its own that serves every slot.
func TestClusterOverTLS(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	srv, tlsAddr := startTLSServer(t, p, "--cluster-enabled", "yes", "--tls-cluster", "yes")
	if err := srv.ServeAllSlots(clusterCtx(t)); err != nil {
		t.Fatal(err)
	}
	c, err := NewClusterClient(ClusterOptions{
		Addrs:   []string{tlsAddr},
		Options: Options{TLSConfig: &tls.Config{RootCAs: p.roots}, DialTimeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := clusterCtx(t)
	if err := c.Set(ctx, "tls:k", "v"); err != nil {
		t.Fatalf("Set over TLS: %v", err)
	}
	if v, err := c.Get(ctx, "tls:k"); err != nil || v != "v" {
		t.Fatalf("Get over TLS = %q, %v", v, err)
	}
	c.cluster.mu.RLock()
	got := c.cluster.slots[0].opt.Addr
	c.cluster.mu.RUnlock()
	if got != tlsAddr {
		t.Errorf("slot 0 is routed to %s, want the TLS port, %s", got, tlsAddr)
	}
}

// A user whose ACL allows CLUSTER SLOTS but not CLUSTER SHARDS, as rules
// written for clients that use the older command do, gets the layout from
// CLUSTER SLOTS; one allowed neither is told of both refusals.
func TestClusterLayoutFromSlotsWhenShardsRefused(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	for _, s := range cl.Servers() {
		s.MustDo(t, "ACL", "SETUSER", "slots-only", "on", ">pw", "~*", "+@all", "-cluster|shards")
		s.MustDo(t, "ACL", "SETUSER", "neither", "on", ">pw", "~*", "+@all", "-cluster|shards", "-cluster|slots")
	}
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{Username: "slots-only", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, k := range []string{"acl:a", "acl:b", "acl:c", "acl:d"} {
		if err := c.Set(ctx, k, k); err != nil {
			t.Fatalf("Set(%s) as a user without CLUSTER SHARDS: %v", k, err)
		}
		if v, err := c.Get(ctx, k); err != nil || v != k {
			t.Fatalf("Get(%s) = %q, %v", k, v, err)
		}
	}

	n, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{Username: "neither", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	err = n.Set(ctx, "acl:a", "x")
	if err == nil || !strings.Contains(err.Error(), "'cluster|slots'") || !strings.Contains(err.Error(), "'cluster|shards'") {
		t.Errorf("Set as a user allowed neither = %v, want an error naming both refusals", err)
	}
	if want := "allow the user one of them, ACL SETUSER neither +cluster|shards or ACL SETUSER neither +cluster|slots"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Set as a user allowed neither = %v, want an error that says what to grant: %q", err, want)
	}
	if OutcomeOf(err) != OutcomeNotSent {
		t.Errorf("OutcomeOf(%v) = %v, want not sent", err, OutcomeOf(err))
	}
}

// A cluster over unix sockets is refused: the nodes the layout names are
// reached at their host and port.
func TestClusterUnixNetworkRefused(t *testing.T) {
	c, err := NewClusterClient(ClusterOptions{Addrs: []string{"/tmp/redis.sock"}, Options: Options{Network: "unix"}})
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Field != "Network" {
		t.Errorf("NewClusterClient over unix = %v, want an *OptionError for Network", err)
	}
	if c != nil {
		c.Close()
	}
}

// An empty seed is refused rather than read as Options.Addr's default,
// localhost:6379, which may be a node of some other cluster.
func TestClusterEmptySeedRefused(t *testing.T) {
	for _, addrs := range [][]string{{""}, {"127.0.0.1:7000", ""}} {
		c, err := NewClusterClient(ClusterOptions{Addrs: addrs})
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != "Addrs" || !strings.Contains(oe.Msg, "empty") {
			t.Errorf("NewClusterClient with seeds %q = %v, want an *OptionError for Addrs saying a seed is empty", addrs, err)
		}
		if c != nil {
			c.Close()
		}
	}
}

// TestClusterSeedInAddrRefused: ClusterOptions whose only address is in
// the embedded Options.Addr, where a single server's client takes it, are
// refused with an error that says to give it in Addrs: "needs at least one
// seed node" alone left the caller to wonder where the one given went.
func TestClusterSeedInAddrRefused(t *testing.T) {
	c, err := NewClusterClient(ClusterOptions{Options: Options{Addr: "127.0.0.1:7000"}})
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Field != "Addrs" || !strings.Contains(oe.Msg, `Addrs: []string{"127.0.0.1:7000"}`) {
		t.Errorf("NewClusterClient with Options.Addr and no Addrs = %v, want an *OptionError for Addrs saying to give the address there", err)
	}
	if c != nil {
		c.Close()
	}
}
