package redpipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// The tests of multi-key commands split by slot share one cluster, and
// one single node that shows what the same calls give without a cluster.
func TestClusterMultiKey(t *testing.T) {
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	one, _ := newTestClient(t, Options{})
	t.Run("SameAsOneNode", func(t *testing.T) { testMultiKeySameAsOneNode(t, c, one) })
	t.Run("Pipeline", func(t *testing.T) { testMultiKeyPipeline(t, c, one) })
	t.Run("Decoders", func(t *testing.T) { testMultiKeyDecoders(t, cl, one) })
	t.Run("Refusals", func(t *testing.T) { testMultiKeyRefusals(t, cl, c) })
	t.Run("Moved", func(t *testing.T) { testMultiKeyMoved(t, cl, c) })
	t.Run("HalfMigrated", func(t *testing.T) { testMultiKeyHalfMigrated(t, cl, c) })
	t.Run("TryAgainOrder", func(t *testing.T) { testMultiKeyTryAgainOrder(t, cl, c) })
	t.Run("PartialFailure", func(t *testing.T) { testMultiKeyPartialFailure(t, cl, c) })
	t.Run("RanOutUnrun", func(t *testing.T) { testMultiKeyRanOutUnrun(t, cl, c) })
	t.Run("SingleSlotAllocs", func(t *testing.T) { testMultiKeySingleSlotAllocs(t, c, one) })
}

// multiKeys returns the keys of the big calls: 1,000 of them over
// hundreds of slots, a tenth of them never set, some given twice.
func multiKeys(prefix string) (keys []string, set []string) {
	for i := 0; i < 800; i++ {
		k := prefix + strconv.Itoa(i)
		keys = append(keys, k)
		if i%10 != 3 {
			set = append(set, k)
		}
	}
	for i := 0; i < 100; i++ {
		keys = append(keys, prefix+"missing:"+strconv.Itoa(i))
	}
	// Twins, some next to their first and some far from it.
	for i := 0; i < 100; i++ {
		keys = append(keys, keys[i*7])
	}
	slices.Reverse(keys[850:])
	return keys, set
}

// setEach sets each key to its name, one SET at a time, on both clients.
func setEach(t *testing.T, ctx context.Context, keys []string, cs ...*Client) {
	t.Helper()
	for _, c := range cs {
		p := c.Pipeline(NoTransaction)
		for _, k := range keys {
			p.Set(k, "v:"+k)
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// sameReply fails unless the cluster's reply is the single node's, exactly.
func sameReply(t *testing.T, what string, got, want Value) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s on the cluster:\n%.300s\nwant, as on one node:\n%.300s", what, got, want)
	}
}

func slotsOf(keys []string) map[uint16]bool {
	m := map[uint16]bool{}
	for _, k := range keys {
		m[hashslot.Slot(k)] = true
	}
	return m
}

func testMultiKeySameAsOneNode(t *testing.T, c, one *Client) {
	ctx := clusterCtx(t)
	keys, set := multiKeys("mk:")
	if n := len(slotsOf(keys)); n < 500 {
		t.Fatalf("the keys cover only %d slots", n)
	}
	setEach(t, ctx, set, c, one)
	args := func(name string) []any {
		a := []any{name}
		for _, k := range keys {
			a = append(a, k)
		}
		return a
	}
	var both [2]Value
	for i, cl := range []*Client{c, one} {
		vs, err := cl.MGet(ctx, keys...)
		if err != nil {
			t.Fatal(err)
		}
		elems := make([]resp.Value, len(vs))
		for j := range vs {
			elems[j] = vs[j].v
		}
		both[i] = Value{resp.Value{Kind: resp.Array, Elems: elems}}
	}
	sameReply(t, "MGet", both[0], both[1])
	isSet := map[string]bool{}
	for _, k := range set {
		isSet[k] = true
	}
	setGiven := 0 // set keys among those given, twins counted twice
	vs, _ := both[0].Slice()
	for i, k := range keys {
		want := "nil"
		if isSet[k] {
			want = "v:" + k
			setGiven++
		}
		if i >= len(vs) || vs[i].String() != want {
			t.Fatalf("MGet on the cluster: %d values for %d keys, value %d not %s", len(vs), len(keys), i, want)
		}
	}
	for _, name := range []string{"MGET", "EXISTS", "TOUCH"} {
		for i, cl := range []*Client{c, one} {
			v, err := cl.Do(ctx, args(name)...)
			if err != nil {
				t.Fatal(err)
			}
			both[i] = v
		}
		sameReply(t, "Do "+name, both[0], both[1])
	}
	// EXISTS counts a key given twice twice, as one node does.
	if n, _ := both[0].Int64(); n != int64(setGiven) || setGiven <= len(set) {
		t.Errorf("TOUCH of %d set keys, some of them twice, = %d; want %d", len(set), n, setGiven)
	}
	for _, name := range []string{"DEL", "UNLINK"} {
		for i, cl := range []*Client{c, one} {
			v, err := cl.Do(ctx, args(name)...)
			if err != nil {
				t.Fatal(err)
			}
			both[i] = v
		}
		sameReply(t, name, both[0], both[1])
		if name == "DEL" {
			// DEL counts a key given twice once.
			if n, _ := both[0].Int64(); n != int64(len(set)) {
				t.Errorf("DEL of %d set keys, some twice, = %d", len(set), n)
			}
		}
	}
	if n, err := c.Exists(ctx, keys...); err != nil || n != 0 {
		t.Errorf("Exists after DEL = %d, %v", n, err)
	}
	// MSET then MGET: the later of twins wins, as on one node.
	pairs := make([]any, 0, 2*len(keys))
	for i, k := range keys {
		pairs = append(pairs, k, i)
	}
	for i, cl := range []*Client{c, one} {
		if err := cl.MSet(ctx, pairs...); err != nil {
			t.Fatal(err)
		}
		v, err := cl.Do(ctx, args("MGET")...)
		if err != nil {
			t.Fatal(err)
		}
		both[i] = v
	}
	sameReply(t, "MGET after MSET", both[0], both[1])
	last := 0
	for i, k := range keys {
		if k == keys[0] {
			last = i
		}
	}
	if got, _ := c.Get(ctx, keys[0]); last <= 0 || got != strconv.Itoa(last) {
		t.Errorf("GET of a key set twice by one MSET = %s, want the later value %d", got, last)
	}
	for i, cl := range []*Client{c, one} {
		n, err := cl.Del(ctx, keys...)
		if err != nil {
			t.Fatal(err)
		}
		both[i] = Value{resp.Value{Kind: resp.Integer, Int: n}}
	}
	sameReply(t, "Del", both[0], both[1])
}

func testMultiKeyPipeline(t *testing.T, c, one *Client) {
	ctx := clusterCtx(t)
	keys, set := multiKeys("mkp:")
	setEach(t, ctx, set, c, one)
	k0, kMissing := keys[0], keys[3]
	var both [2][]Value
	for i, cl := range []*Client{c, one} {
		p := cl.Pipeline(NoTransaction, ErrorsInReplies)
		p.Set(k0, "first").MGet(keys...).Exists(keys...).Del(keys...).MGet(keys...).Set(k0, "second")
		p.MGet(k0, kMissing, k0).MSet(k0, "third", kMissing, "fourth", keys[1], "fifth").Get(k0).Get(kMissing)
		p.Incr(k0).MGet(keys[:10]...).Touch(keys...).Unlink(keys...).Exists(keys...)
		replies, err := p.Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		both[i] = replies
	}
	if len(both[0]) != len(both[1]) {
		t.Fatalf("%d replies on the cluster, %d on one node", len(both[0]), len(both[1]))
	}
	for i := range both[0] {
		sameReply(t, fmt.Sprintf("reply %d of the pipeline", i), both[0][i], both[1][i])
	}
	// In order: the MGET after SET reads it, the one after DEL reads nils.
	got := both[0]
	if vs, _ := got[1].Slice(); vs[0].String() != "first" {
		t.Errorf("MGET after SET in the pipeline read %v", vs[0])
	}
	if vs, _ := got[4].Slice(); !vs[0].IsNil() || !vs[1].IsNil() {
		t.Errorf("MGET after DEL in the pipeline read %v, %v", vs[0], vs[1])
	}
	if s := got[6].String(); s != "[second nil second]" {
		t.Errorf("MGET k0 missing k0 = %s", s)
	}
	if s := fmt.Sprint(got[8], got[9], got[10]); s != "third fourth (error) ERR value is not an integer or out of range" {
		t.Errorf("after MSET: %s", s)
	}
	// A transactional pipeline is never split: refused before sending.
	_, err := c.Pipeline().MGet(keys[:50]...).Exec(ctx)
	var cs *CrossSlotError
	if !errors.As(err, &cs) || !errors.Is(err, ErrNotApplied) {
		t.Errorf("a transaction of a cross-slot MGET: %v", err)
	}
}

func testMultiKeyDecoders(t *testing.T, cl *redistest.Cluster, one *Client) {
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys := []string{"dec:a", "dec:b", "dec:c", "dec:a", "dec:none"}
	if len(slotsOf(keys)) < 3 {
		t.Fatal("the keys share slots")
	}
	setEach(t, ctx, keys[:3], c, one)
	count := func(v Value) (any, error) {
		vs, err := v.Slice()
		n := 0
		for _, e := range vs {
			if !e.IsNil() {
				n++
			}
		}
		return n, err
	}
	var got [2]any
	for i, cl := range []*Client{c, one} {
		cl.SetDecoder("MGET", count)
		v, err := cl.Do(ctx, "MGET", "dec:a", "dec:b", "dec:c", "dec:a", "dec:none")
		if err != nil {
			t.Fatal(err)
		}
		got[i], _ = v.Decoded()
		cl.SetDecoder("MGET", nil)
	}
	if got[0] != 4 || got[1] != 4 {
		t.Errorf("the MGET decoder gave %v on the cluster and %v on one node, want 4", got[0], got[1])
	}
	replies, err := c.Pipeline(NoTransaction, WithDecoder("MGET", count)).MGet(keys...).Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := replies[0].Decoded(); d != 4 || err != nil {
		t.Errorf("the MGET decoder of a pipeline gave %v, %v", d, err)
	}
	var vals [2][]string
	for i, cl := range []*Client{c, one} {
		vs, err := cl.MGet(ctx, keys[:4]...)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			s, _ := v.Text()
			vals[i] = append(vals[i], s)
		}
	}
	if !slices.Equal(vals[0], vals[1]) || vals[0][3] != "v:dec:a" {
		t.Errorf("MGet texts: %q on the cluster, %q on one node", vals[0], vals[1])
	}
}

// commandsRun returns the commands of INFO commandstats of every master
// that ran at least once, by name.
func commandsRun(t *testing.T, cl *redistest.Cluster) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range cl.Masters {
		stats := m.MustDo(t, "INFO", "commandstats").(string)
		for _, line := range strings.Split(stats, "\n") {
			if name, _, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":"); ok && strings.HasPrefix(line, "cmdstat_") {
				seen[name] = true
			}
		}
	}
	return seen
}

func testMultiKeyRefusals(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	for _, m := range cl.Masters {
		m.MustDo(t, "CONFIG", "RESETSTAT")
	}
	_, err := c.MSetNX(ctx, "nx:a", 1, "nx:b", 2)
	var cs *CrossSlotError
	if !errors.As(err, &cs) || !errors.Is(err, ErrNotApplied) || OutcomeOf(err) != OutcomeNotApplied {
		t.Fatalf("MSetNX across slots: %v (%T)", err, err)
	}
	if cs.In != "command MSETNX" || !strings.Contains(err.Error(), "all of its keys or none") {
		t.Errorf("the error does not say why MSETNX is not split: %v", err)
	}
	_, err = c.Pipeline(NoTransaction).Set("nx:a", 1).MSetNX("nx:a", 1, "nx:b", 2).Get("nx:a").Exec(ctx)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 1 || !errors.As(err, &cs) {
		t.Errorf("a pipeline with a cross-slot MSETNX: %v", err)
	}
	// Transactions are never split.
	_, err = c.Pipeline().Del("nx:a", "nx:b").Exec(ctx)
	if !errors.As(err, &cs) || !errors.Is(err, ErrNotApplied) {
		t.Errorf("a transaction of a cross-slot DEL: %v", err)
	}
	// Nothing of the above reached a node.
	run := commandsRun(t, cl)
	for _, cmd := range []string{"msetnx", "set", "get", "del", "multi", "exec"} {
		if run[cmd] {
			t.Errorf("%s reached a master", cmd)
		}
	}
	// One slot: MSETNX runs as any command.
	if ok, err := c.MSetNX(ctx, "{nx}a", 1, "{nx}b", 2); err != nil || !ok {
		t.Errorf("MSetNX in one slot = %v, %v", ok, err)
	}
}

// ownerAndOther returns the master that serves slot and another master.
func ownerAndOther(t *testing.T, cl *redistest.Cluster, slot int) (from, to *redistest.Server) {
	t.Helper()
	from, err := cl.SlotOwner(slot)
	if err != nil {
		t.Fatal(err)
	}
	to = cl.Masters[0]
	if to == from {
		to = cl.Masters[1]
	}
	return from, to
}

// moveSlotOf moves the slot of key to another master, with its keys.
func moveSlotOf(t *testing.T, ctx context.Context, cl *redistest.Cluster, key string) {
	t.Helper()
	slot := int(hashslot.Slot(key))
	from, to := ownerAndOther(t, cl, slot)
	if err := cl.MoveSlots(ctx, from, to, slot); err != nil {
		t.Fatal(err)
	}
}

func testMultiKeyMoved(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	keys := []string{"mv:a", "mv:b", "mv:c", "mv:d", "mv:e", "mv:f"}
	if len(slotsOf(keys)) != len(keys) {
		t.Fatal("the keys share slots")
	}
	setEach(t, ctx, keys, c)
	// The client learns the layout, then two slots move behind its back.
	if _, err := c.MGet(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	moveSlotOf(t, ctx, cl, "mv:b")
	moveSlotOf(t, ctx, cl, "mv:e")
	vs, err := c.MGet(ctx, keys...)
	if err != nil {
		t.Fatalf("MGet after the slots moved: %v", err)
	}
	if got := fmt.Sprint(vs); got != "[v:mv:a v:mv:b v:mv:c v:mv:d v:mv:e v:mv:f]" {
		t.Errorf("MGet after the slots moved = %s", got)
	}
	moveSlotOf(t, ctx, cl, "mv:c")
	if n, err := c.Del(ctx, "mv:a", "mv:c", "mv:x", "mv:c"); err != nil || n != 2 {
		t.Errorf("Del after the slot moved = %d, %v; want 2", n, err)
	}
	moveSlotOf(t, ctx, cl, "mv:d")
	replies, err := c.Pipeline(NoTransaction).Get("mv:d").Del("mv:d", "mv:e", "mv:f").Exists(keys...).Exec(ctx)
	if err != nil || fmt.Sprint(replies) != "[v:mv:d 3 1]" {
		t.Errorf("a pipeline after the slot moved: %v, %v", replies, err)
	}
}

// onSource tells, for keys of a migrating slot, which are still on the
// source node: there EXISTS finds them, and sends the others by ASK.
func onSource(t *testing.T, src *redistest.Server, keys []string) (here, gone []string) {
	t.Helper()
	for _, k := range keys {
		if v, _ := src.Do("EXISTS", k); v == int64(1) {
			here = append(here, k)
		} else {
			gone = append(gone, k)
		}
	}
	return here, gone
}

// errorCount is how many replies of an error prefix a node has given, or
// -1 if it cannot be told.
func errorCount(s *redistest.Server, prefix string) int {
	v, err := s.Do("INFO", "errorstats")
	stats, ok := v.(string)
	if err != nil || !ok {
		return -1
	}
	for _, line := range strings.Split(stats, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "errorstat_"+prefix+":count="); ok {
			n, _ := strconv.Atoi(rest)
			return n
		}
	}
	return 0
}

// migrate starts moving the slot of tag to another master and moves half
// of its keys.
func migrate(t *testing.T, ctx context.Context, cl *redistest.Cluster, tag string, keys []string) (*redistest.Migration, *redistest.Server) {
	t.Helper()
	slot := int(hashslot.Slot(tag))
	from, err := cl.SlotOwner(slot)
	if err != nil {
		t.Fatal(err)
	}
	to := cl.Masters[0]
	if to == from {
		to = cl.Masters[2]
	}
	m, err := cl.BeginMigration(ctx, from, to, slot)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.MoveKeys(ctx, len(keys)/2); err != nil || n != len(keys)/2 {
		t.Fatalf("MoveKeys: %d, %v", n, err)
	}
	return m, from
}

// finishOnTryAgain finishes m once src has refused a command with
// TRYAGAIN since before, and reports on done.
func finishOnTryAgain(ctx context.Context, m *redistest.Migration, src *redistest.Server, before int) <-chan error {
	done := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(15 * time.Second)
		for errorCount(src, "TRYAGAIN") <= before {
			if time.Now().After(deadline) {
				done <- errors.New("no TRYAGAIN came")
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		done <- m.Finish(ctx)
	}()
	return done
}

func testMultiKeyHalfMigrated(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	keys := make([]string, 10)
	for i := range keys {
		keys[i] = "{hm}:" + strconv.Itoa(i)
	}
	others := []string{"hm:x", "hm:y", "hm:z"}
	setEach(t, ctx, append(slices.Clone(keys), others...), c)
	m, src := migrate(t, ctx, cl, "{hm}", keys)
	here, gone := onSource(t, src, keys)
	if len(here) != 5 || len(gone) != 5 {
		t.Fatalf("%d keys on the source, %d moved", len(here), len(gone))
	}
	values := func(ks []string) string {
		var b []string
		for _, k := range ks {
			b = append(b, "v:"+k)
		}
		return "[" + strings.Join(b, " ") + "]"
	}
	// The part for the migrating slot asks the target, or the source.
	for _, part := range [][]string{gone, here} {
		ks := []string{others[0], part[0], others[1], part[1], part[2], others[2]}
		vs, err := c.MGet(ctx, ks...)
		if err != nil || fmt.Sprint(vs) != values(ks) {
			t.Errorf("MGet during the migration = %v, %v; want %s", vs, err, values(ks))
		}
	}
	if n, err := c.Del(ctx, gone[0], others[0], gone[1], "hm:none"); err != nil || n != 3 {
		t.Errorf("Del of moved keys during the migration = %d, %v; want 3", n, err)
	}
	if n, err := c.Del(ctx, here[0], others[1], here[0]); err != nil || n != 2 {
		t.Errorf("Del of keys still on the source = %d, %v; want 2", n, err)
	}
	// Keys of the slot on both nodes: the part is refused with TRYAGAIN
	// until the migration ends, then gives the values.
	before := errorCount(src, "TRYAGAIN")
	if before < 0 {
		t.Fatal("INFO errorstats cannot be read")
	}
	done := finishOnTryAgain(ctx, m, src, before)
	ks := []string{others[2], here[1], gone[2], here[2]}
	vs, err := c.MGet(ctx, ks...)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err != nil || fmt.Sprint(vs) != values(ks) {
		t.Errorf("MGet across a half-migrated slot = %v, %v; want %s", vs, err, values(ks))
	}
	if errorCount(src, "TRYAGAIN") == before {
		t.Error("the source never said TRYAGAIN: the test did not test it")
	}
}

// A command refused with TRYAGAIN is sent again before the later commands
// of its slot, even those redirected elsewhere by ASK meanwhile.
func testMultiKeyTryAgainOrder(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	keys := make([]string, 10)
	for i := range keys {
		keys[i] = "{tao}:" + strconv.Itoa(i)
	}
	setEach(t, ctx, append(slices.Clone(keys), "tao:other"), c)
	m, src := migrate(t, ctx, cl, "{tao}", keys)
	here, gone := onSource(t, src, keys)
	before := errorCount(src, "TRYAGAIN")
	if before < 0 {
		t.Fatal("INFO errorstats cannot be read")
	}
	done := finishOnTryAgain(ctx, m, src, before)
	// The MGET waits out the migration; the SET behind it, on a key the
	// target has, is sent there by ASK in the first round, and must not
	// run before the MGET does.
	replies, err := c.Pipeline(NoTransaction).
		MGet(here[0], gone[0], "tao:other").
		Set(gone[0], "new").
		Del(here[1], gone[1]).
		MGet(gone[0], here[1], gone[1]).
		Exec(ctx)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("[[v:%s v:%s v:tao:other] OK 2 [new nil nil]]", here[0], gone[0])
	if got := fmt.Sprint(replies); got != want {
		t.Errorf("replies %s, want %s", got, want)
	}
}

func testMultiKeyPartialFailure(t *testing.T, cl *redistest.Cluster, admin *Client) {
	ctx := clusterCtx(t)
	// A user that may use the keys ok:* only: a part on others is
	// refused with NOPERM while the rest runs.
	for _, m := range cl.Masters {
		m.MustDo(t, "ACL", "SETUSER", "parts", "on", ">pw", "~ok:*", "+@all")
	}
	t.Cleanup(func() {
		for _, m := range cl.Masters {
			m.Do("ACL", "DELUSER", "parts")
		}
	})
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), Options: Options{Username: "parts", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(slotsOf([]string{"ok:1", "ok:2", "no:1", "no:2"})) != 4 {
		t.Fatal("the keys share slots")
	}
	noSlot := strconv.Itoa(int(hashslot.Slot("no:1")))
	if err := admin.MSet(ctx, "no:1", "x", "ok:1", "x", "ok:2", "x"); err != nil {
		t.Fatal(err)
	}

	err = c.MSet(ctx, "ok:1", "a", "no:1", "b", "ok:2", "c")
	var ue *uncertainError
	var se *Error
	if !errors.As(err, &ue) || !errors.As(err, &se) || se.Prefix != "NOPERM" {
		t.Fatalf("MSET with a refused part: %v (%T)", err, err)
	}
	if OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
		t.Errorf("MSET with a refused part: OutcomeOf = %v, SafeToRetry = %v", OutcomeOf(err), SafeToRetry(err))
	}
	for _, want := range []string{"MSET was split by slot", "slot " + noSlot, `"no:1"`, "2 other parts ran", "NOPERM"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error %q does not say %s", err, want)
		}
	}
	if vs, _ := admin.MGet(ctx, "ok:1", "no:1", "ok:2"); fmt.Sprint(vs) != "[a x c]" {
		t.Errorf("after MSET with a refused part the keys hold %v: the other parts did not run", vs)
	}

	n, err := c.Del(ctx, "no:1", "ok:1")
	if !errors.As(err, &ue) || OutcomeOf(err) != OutcomeUnknown || !strings.Contains(err.Error(), "while 1 other part ran") {
		t.Errorf("DEL with a refused part = %d, %v", n, err)
	}
	// Every part refused: nothing ran, and the error is the server's.
	_, err = c.Del(ctx, "no:1", "no:2")
	if errors.As(err, &ue) || !errors.As(err, &se) || se.Prefix != "NOPERM" || OutcomeOf(err) != OutcomeNotApplied {
		t.Errorf("DEL with every part refused: %v, OutcomeOf %v", err, OutcomeOf(err))
	}
	// A read with a refused part has the part's error as its reply.
	_, err = c.MGet(ctx, "ok:2", "no:1")
	if errors.As(err, &ue) || !errors.As(err, &se) || se.Prefix != "NOPERM" {
		t.Errorf("MGET with a refused part: %v", err)
	}

	// In a pipeline the failed command's reply and Exec's error say so;
	// the commands around it ran.
	replies, err := c.Pipeline(NoTransaction).Set("ok:1", "z").Unlink("ok:2", "no:1").Get("ok:1").Exec(ctx)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 1 || !errors.As(err, &ue) || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("a pipeline with a partly refused UNLINK: %v", err)
	}
	if e := replies[1].Err(); !errors.As(e, &ue) || OutcomeOf(e) != OutcomeUnknown || !strings.Contains(e.Error(), "UNLINK was split by slot") {
		t.Errorf("the reply of the partly refused UNLINK: %v", e)
	}
	if _, err := replies[1].Int64(); !errors.As(err, &ue) {
		t.Errorf("Int64 of the partly refused UNLINK's reply: %v", err)
	}
	if d, err := replies[1].Decoded(); d != nil || err != nil {
		t.Errorf("Decoded of an error reply = %v, %v", d, err)
	}
	if replies[0].String() != "OK" || replies[2].String() != "z" {
		t.Errorf("the commands around it: %v", replies)
	}
	if n, _ := admin.Exists(ctx, "ok:2", "no:1"); n != 1 {
		t.Errorf("after the partly refused UNLINK %d of its keys are left, want 1", n)
	}
}

// A split command every part of which ran out of redirections ran
// nowhere: alone, it fails as a command of one slot does, not applied,
// and in a pipeline of nothing else the error does not say that other
// commands ran.
func testMultiKeyRanOutUnrun(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	// Two slots of one master, both migrating: their keys a and b are
	// moved, c is on neither node. The source sends DEL a b c by ASK, as
	// it has none of them; the target refuses it with TRYAGAIN, as it
	// lacks c; and so on until the redirections run out.
	tags := []string{"{ro}"}
	slots := []int{int(hashslot.Slot(tags[0]))}
	from, to := ownerAndOther(t, cl, slots[0])
	for i := 0; len(tags) < 2 && i < 10000; i++ {
		tag := "{ro" + strconv.Itoa(i) + "}"
		slot := int(hashslot.Slot(tag))
		if owner, err := cl.SlotOwner(slot); err == nil && owner == from && slot != slots[0] {
			tags, slots = append(tags, tag), append(slots, slot)
		}
	}
	if len(tags) < 2 {
		t.Fatal("no second slot of the same master")
	}
	var keys []string
	for _, tag := range tags {
		setEach(t, ctx, []string{tag + "a", tag + "b"}, c)
		keys = append(keys, tag+"a", tag+"b", tag+"c")
	}
	m, err := cl.BeginMigration(ctx, from, to, slots...)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.MoveKeys(ctx, 4); err != nil || n != 4 {
		t.Fatalf("MoveKeys: %d, %v", n, err)
	}
	defer func() {
		if err := m.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Exists(ctx, keys...); err != nil || n != 4 {
			t.Errorf("after the migration Exists = %d, %v; want 4: a DEL ran", n, err)
		}
	}()
	var ue *uncertainError
	var se *Error
	_, err = c.Del(ctx, keys...)
	if errors.As(err, &ue) || !errors.As(err, &se) || OutcomeOf(err) != OutcomeNotApplied || strings.Contains(err.Error(), "ran") {
		t.Errorf("Del of two slots, out of redirections: %v, OutcomeOf %v; want not applied, as for one slot", err, OutcomeOf(err))
	}
	_, err = c.MGet(ctx, keys...)
	if errors.As(err, &ue) || !errors.As(err, &se) || OutcomeOf(err) != OutcomeNotApplied || strings.Contains(err.Error(), "pipeline") {
		t.Errorf("MGet of two slots, out of redirections: %v, OutcomeOf %v", err, OutcomeOf(err))
	}
	replies, err := c.Pipeline(NoTransaction).Del(keys...).Exec(ctx)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 0 || errors.As(err, &ue) || strings.Contains(err.Error(), "ran") {
		t.Errorf("a pipeline of that Del alone: %v", err)
	}
	if len(replies) != 1 || OutcomeOf(replies[0].Err()) != OutcomeNotApplied {
		t.Errorf("the reply of that Del in a pipeline: %v", replies)
	}
}

// A multi-key command whose keys share a slot costs no more than a
// command of one key: it is not copied or split.
func testMultiKeySingleSlotAllocs(t *testing.T, c, one *Client) {
	ctx := clusterCtx(t)
	keys := []string{"{ss}a", "{ss}b", "{ss}c", "{ss}d", "{ss}e", "{ss}f", "{ss}g", "{ss}h", "{ss}i", "{ss}j"}
	setEach(t, ctx, keys, c, one)
	measure := func(f func() error) float64 {
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return testing.AllocsPerRun(200, func() {
			if err := f(); err != nil {
				t.Fatal(err)
			}
		})
	}
	mgetOne := measure(func() error { _, err := one.MGet(ctx, keys...); return err })
	mget := measure(func() error { _, err := c.MGet(ctx, keys...); return err })
	exists1 := measure(func() error { _, err := c.Exists(ctx, keys[0]); return err })
	exists := measure(func() error { _, err := c.Exists(ctx, keys...); return err })
	if raceEnabled {
		// The command buffers come from a sync.Pool, which then drops
		// some at random: the counts say nothing.
		t.Logf("under the race detector: MGet %v (one node %v), Exists %v (one key %v) allocations", mget, mgetOne, exists, exists1)
		return
	}
	if mget > mgetOne {
		t.Errorf("MGet of %d keys of one slot allocated %v times on the cluster, %v on one node", len(keys), mget, mgetOne)
	}
	if exists > exists1 {
		t.Errorf("Exists of %d keys of one slot allocated %v times, of one key %v", len(keys), exists, exists1)
	}
}

func TestSharedSlot(t *testing.T) {
	enc := func(args ...any) []byte {
		w := &cmdBuf{}
		w.do(args)
		if w.err != nil {
			t.Fatal(w.err)
		}
		return w.buf
	}
	slotA := int(hashslot.Slot("a"))
	for _, tc := range []struct {
		ci     *commandInfo
		cmd    []byte
		slot   int
		shared bool
	}{
		{cmdMget, enc("MGET", "{t}1", "{t}2", "{t}3"), int(hashslot.Slot("t")), true},
		{cmdMget, enc("MGET", "a", "b"), slotA, false},
		{cmdMset, enc("MSET", "{t}1", "a", "{t}2", "b"), int(hashslot.Slot("t")), true},
		// The values are not keys.
		{cmdMset, enc("MSET", "a", "b", "a", "c"), slotA, true},
		{cmdMset, enc("MSET", "a", "1", "b", "2"), slotA, false},
		// A key without its value, which encoding refuses (see
		// TestKeyValueCommandsTakeWholePairs): not split either.
		{cmdMset, []byte("*4\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n"), slotA, true},
		{cmdDel, []byte("*2\r\n$3\r\nDEL\r\n$9\r\nbroken"), slotA, true},
	} {
		slot, shared := sharedSlot(tc.ci, tc.cmd)
		if shared != tc.shared || (tc.shared && tc.ci.Name != "DEL" && slot != tc.slot) {
			t.Errorf("sharedSlot(%q) = %d, %v; want %d, %v", tc.cmd, slot, shared, tc.slot, tc.shared)
		}
	}
}

func TestSplitBySlot(t *testing.T) {
	w := &cmdBuf{}
	w.do([]any{"mset", "b", 1, "a", 2, "{b}x", 3, "b", 4})
	subs := splitBySlot(cmdMset, w.buf)
	sa, sb := int(hashslot.Slot("a")), int(hashslot.Slot("b"))
	if len(subs) != 2 {
		t.Fatalf("%d parts, want 2", len(subs))
	}
	if sa > sb {
		subs[0], subs[1] = subs[1], subs[0]
	}
	// The caller's spelling of the name, the keys of each slot in order
	// with their values.
	want := []struct {
		slot int
		cmd  string
		keys []int32
	}{
		{sa, "*3\r\n$4\r\nmset\r\n$1\r\na\r\n$1\r\n2\r\n", []int32{1}},
		{sb, "*7\r\n$4\r\nmset\r\n$1\r\nb\r\n$1\r\n1\r\n$4\r\n{b}x\r\n$1\r\n3\r\n$1\r\nb\r\n$1\r\n4\r\n", []int32{0, 2, 3}},
	}
	for i, s := range subs {
		if s.slot != want[i].slot || string(s.cmd) != want[i].cmd || !slices.Equal(s.keys, want[i].keys) {
			t.Errorf("part %d: slot %d, %q, keys %v; want %+v", i, s.slot, s.cmd, s.keys, want[i])
		}
	}
}

func TestJoinSplit(t *testing.T) {
	str := func(s string) resp.Value { return resp.Value{Kind: resp.BulkString, Str: s} }
	arr := func(vs ...resp.Value) resp.Value { return resp.Value{Kind: resp.Array, Elems: vs} }
	num := func(n int64) resp.Value { return resp.Value{Kind: resp.Integer, Int: n} }
	nope := resp.Value{Kind: resp.Error, Str: "NOPERM no"}
	sub := func(keys ...int32) *subCommand {
		w := &cmdBuf{}
		args := []any{"DEL"}
		for _, k := range keys {
			args = append(args, "k"+strconv.Itoa(int(k)))
		}
		w.do(args)
		return &subCommand{cmd: w.buf, keys: keys, slot: int(keys[0])}
	}
	legs := func(n int) []leg {
		out := make([]leg, n)
		for i := range out {
			out[i] = leg{sub: sub(int32(i)), at: i, done: true, slot: i}
		}
		return out
	}
	// join joins the legs of a command that replied replies.
	join := func(ci *commandInfo, replies ...resp.Value) resp.Value {
		return joinSplit(ci, legs(len(replies)), replies, nil)
	}
	// MGET: values in the places of their keys, twins included.
	l := []leg{
		{sub: &subCommand{keys: []int32{0, 3}}, done: true},
		{sub: &subCommand{keys: []int32{1}}, at: 1, done: true},
		{sub: &subCommand{keys: []int32{2}}, at: 2, done: true},
	}
	vals := []resp.Value{arr(str("a"), str("a")), arr(resp.Value{Kind: resp.Null}), arr(str("c"))}
	if got := (Value{joinSplit(cmdMget, l, vals, nil)}).String(); got != "[a nil c a]" {
		t.Errorf("MGET joined = %s", got)
	}
	if got := (Value{join(cmdDel, num(2), num(0), num(3))}).String(); got != "5" {
		t.Errorf("DEL joined = %s", got)
	}
	ok := resp.Value{Kind: resp.SimpleString, Str: "OK"}
	if got := (Value{join(cmdMset, ok, ok)}).String(); got != "OK" {
		t.Errorf("MSET joined = %s", got)
	}
	// A read's failed part is its reply.
	if e := (Value{join(cmdExists, num(1), nope)}).Err(); e == nil || e.Error() != "NOPERM no" || OutcomeOf(e) != OutcomeNotApplied {
		t.Errorf("EXISTS with a failed part: %v", e)
	}
	// A write none of whose parts ran has the first failure.
	if e := (Value{join(cmdDel, nope, nope)}).Err(); e == nil || e.Error() != "NOPERM no" {
		t.Errorf("DEL with every part failed: %v", e)
	}
	// A write some parts of which ran: the outcome is unknown.
	e := (Value{join(cmdDel, num(1), nope, num(1))}).Err()
	var se *Error
	if OutcomeOf(e) != OutcomeUnknown || SafeToRetry(e) || !errors.As(e, &se) || se.Prefix != "NOPERM" {
		t.Errorf("DEL with a failed part: %v, OutcomeOf %v", e, OutcomeOf(e))
	}
	if want := `redpipe: DEL was split by slot; its part for slot 1 ("k1") failed, while 2 other parts ran: NOPERM no`; e.Error() != want {
		t.Errorf("DEL with a failed part:\n%s\nwant\n%s", e, want)
	}
	e = (Value{join(cmdMset, nope, ok, nope, nope)}).Err()
	if want := `redpipe: MSET was split by slot; its part for slot 0 ("k0") failed, as did 2 more, while 1 other part ran: NOPERM no`; e == nil || e.Error() != want {
		t.Errorf("MSET with failed parts:\n%v\nwant\n%s", e, want)
	}
	// A part that ran out of redirections: the write says so.
	stuck := legs(2)
	stuck[1].done = false
	gaveUp := errors.New("gave up")
	e = (Value{joinSplit(cmdDel, stuck, []resp.Value{num(1), {Kind: resp.Error, Str: "MOVED 1 127.0.0.1:1"}}, gaveUp)}).Err()
	if !errors.Is(e, gaveUp) || OutcomeOf(e) != OutcomeUnknown {
		t.Errorf("DEL with a stuck part: %v", e)
	}
	// A write none of whose parts got through, one of them lost in flight:
	// it may have run, whichever part failed first.
	lostErr := &uncertainError{msg: "redpipe: cluster: the commands in flight on 127.0.0.1:1 failed", err: io.ErrUnexpectedEOF}
	lost := madeErrorValue(lostErr)
	for _, first := range []resp.Value{{}, {Kind: resp.Error, Str: "MOVED 0 127.0.0.1:2"}} {
		both := legs(2)
		both[0].done, both[1].done = false, false
		e = (Value{joinSplit(cmdMset, both, []resp.Value{first, lost}, lostErr)}).Err()
		if OutcomeOf(e) != OutcomeUnknown || !strings.Contains(fmt.Sprint(e), "in flight") {
			t.Errorf("MSET whose parts were %v and lost in flight: %v, OutcomeOf %v", Value{first}, e, OutcomeOf(e))
		}
	}
	// A reply of the wrong shape is an error, not a panic.
	if e := (Value{join(cmdMget, arr(str("a")), num(1))}).Err(); e == nil {
		t.Error("MGET with a part that replied with an integer joined without error")
	}
}

// pick, on the cases that holding back was written for: a leg that waits
// to be sent again for TRYAGAIN holds its slot's later legs, and so does a
// leg for another node than its slot's first.
func TestPickHoldsBack(t *testing.T) {
	a, b := &Client{}, &Client{}
	ls := []leg{
		{cmd: 0, slot: 1, node: a, wait: true}, // retried where it is, after a pause
		{cmd: 1, slot: 2, node: b},
		{cmd: 2, slot: 1, node: a},               // behind a retried leg
		{cmd: 3, slot: -1, node: b},              // no slot
		{cmd: 4, slot: 2, node: a, asking: true}, // another node than its slot's first
		{cmd: 5, slot: 2, node: b},               // behind one held
		{cmd: 6, slot: 3, node: a, asking: true}, // a slot's first leg always goes
		{cmd: 7, slot: 3, node: a, asking: true},
	}
	pending := make([]*leg, len(ls))
	for i := range ls {
		pending[i] = &ls[i]
	}
	cmds := func(ls []*leg) (out []int) {
		for _, l := range ls {
			out = append(out, l.cmd)
		}
		return out
	}
	if got := cmds(pick(pending)); !slices.Equal(got, []int{1, 3, 6, 7}) {
		t.Errorf("sent %v", got)
	}
	// After the pause the retried leg goes first, and alone of its slot.
	ls[0].wait, ls[0].probe = false, true
	if got := cmds(pick(pending)); !slices.Equal(got, []int{0, 1, 3, 6, 7}) {
		t.Errorf("sent %v after the pause", got)
	}
}

func BenchmarkClusterMultiKey(b *testing.B) {
	cl := redistest.StartCluster(b, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	oneSlot := []string{"{b}1", "{b}2", "{b}3", "{b}4", "{b}5", "{b}6", "{b}7", "{b}8", "{b}9", "{b}10"}
	spread := []string{"b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10"}
	var wide []string // as bench's C3: about one slot per key
	for i := range 100 {
		wide = append(wide, fmt.Sprintf("c3:%d", i))
	}
	for _, tc := range []struct {
		name string
		keys []string
	}{{"MGet10OneSlot", oneSlot}, {"MGet10Split", spread}, {"MGet100Split", wide}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.MGet(ctx, tc.keys...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
