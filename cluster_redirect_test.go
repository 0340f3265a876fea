package redpipe

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// Pipelines that meet a slot half-migrated keep the order of the commands
// on each key: a command the server turned away is not sent again once a
// later command on its keys has run, and commands of a slot redirected to
// different nodes go one node at a time, in their order. A pipeline that
// stops before every command got through says which did.
func TestClusterRedirects(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Run("TryAgainOvertaken", func(t *testing.T) { testTryAgainOvertaken(t, cl, c) })
	t.Run("TryAgainBeforeAsk", func(t *testing.T) { testTryAgainBeforeAsk(t, cl, c) })
	t.Run("StoppedAfterSomeRan", func(t *testing.T) { testStoppedAfterSomeRan(t, cl, c) })
	// Last: it kills a master.
	t.Run("UnreachableAfterSomeRan", func(t *testing.T) { testUnreachableAfterSomeRan(t, cl) })
}

// splitSlot starts moving the slot of tag to another master and moves the
// key moved there, leaving stay on the source: a multi-key command on both
// then gets TRYAGAIN, and one on moved alone ASK. Both keys are set to 0
// first.
func splitSlot(t *testing.T, cl *redistest.Cluster, c *Client, stay, moved string) (*redistest.Server, *redistest.Migration) {
	t.Helper()
	ctx := clusterCtx(t)
	slot := int(hashslot.Slot(stay))
	if int(hashslot.Slot(moved)) != slot {
		t.Fatalf("%s and %s are in different slots", stay, moved)
	}
	if err := c.MSet(ctx, stay, 0, moved, 0); err != nil {
		t.Fatal(err)
	}
	from, to := ownerAndOther(t, cl, slot)
	m, err := cl.BeginMigration(ctx, from, to, slot)
	if err != nil {
		t.Fatal(err)
	}
	from.MustDo(t, "MIGRATE", "127.0.0.1", strconv.Itoa(to.Port), "", "0", "5000", "KEYS", moved)
	from.MustDo(t, "CONFIG", "RESETSTAT")
	return from, m
}

// tryAgains counts the TRYAGAIN replies s has sent since its last
// CONFIG RESETSTAT.
func tryAgains(t *testing.T, s *redistest.Server) int {
	info := s.MustDo(t, "INFO", "errorstats").(string)
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "errorstat_TRYAGAIN:count="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// execAround runs p while a migration is open, and finishes the migration
// once the source has sent at least n TRYAGAIN replies, so that a client
// that retries a command turned away gets it through in the end.
func execAround(t *testing.T, p *Pipeline, from *redistest.Server, m *redistest.Migration, n int) ([]Value, error) {
	t.Helper()
	ctx := clusterCtx(t)
	done := execAsync(ctx, p)
	for deadline := time.Now().Add(10 * time.Second); tryAgains(t, from) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s sent no more than %d TRYAGAIN replies within 10s", from.Addr, tryAgains(t, from))
		}
	}
	if err := m.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	res := <-done
	return res.replies, res.err
}

// An MSET turned away with TRYAGAIN while a later SET of one of its keys
// ran: sending the MSET again would undo the SET.
func testTryAgainOvertaken(t *testing.T, cl *redistest.Cluster, c *Client) {
	a, b := "{ord1}:a", "{ord1}:b"
	from, m := splitSlot(t, cl, c, a, b)
	p := c.Pipeline(NoTransaction, ErrorsInReplies).MSet(a, 1, b, 1).Set(a, 2).Get(a)
	replies, err := execAround(t, p, from, m, 1)
	if err != nil {
		t.Fatal(err)
	}
	var se *Error
	if e := replies[0].Err(); !errors.As(e, &se) || se.Prefix != "TRYAGAIN" {
		t.Errorf("MSET replied %v, want its TRYAGAIN: a later SET of its key ran", replies[0])
	} else if OutcomeOf(e) != OutcomeNotApplied {
		t.Errorf("OutcomeOf(%v) = %v", e, OutcomeOf(e))
	}
	if replies[1].String() != "OK" || replies[2].String() != "2" {
		t.Errorf("SET and GET replied %v and %v, want OK and 2", replies[1], replies[2])
	}
	if v, err := c.Get(clusterCtx(t), a); err != nil || v != "2" {
		t.Errorf("%s = %q, %v after the pipeline; want the later SET's 2", a, v, err)
	}
}

// An MSET turned away with TRYAGAIN by the source, and a later SET of one
// of its keys sent by ASK to the target: the SET waits for the MSET, which
// gets through once the migration ends, rather than run first.
func testTryAgainBeforeAsk(t *testing.T, cl *redistest.Cluster, c *Client) {
	a, b := "{ord2}:a", "{ord2}:b"
	from, m := splitSlot(t, cl, c, a, b)
	p := c.Pipeline(NoTransaction, ErrorsInReplies).MSet(a, 3, b, 3).Set(b, 4).Get(b)
	replies, err := execAround(t, p, from, m, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{replies[0].String(), replies[1].String(), replies[2].String()}; strings.Join(got, " ") != "OK OK 4" {
		t.Errorf("MSET, SET, GET replied %v, want OK OK 4", got)
	}
	if v, err := c.Get(clusterCtx(t), b); err != nil || v != "4" {
		t.Errorf("%s = %q, %v after the pipeline; want the later SET's 4", b, v, err)
	}
}

// checkStopped checks the replies and error of a pipeline of two
// commands of which the first, an INCR of a fresh key, ran and the second
// did not get through.
func checkStopped(t *testing.T, replies []Value, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("the pipeline succeeded: %v", replies)
	}
	if o := OutcomeOf(err); o != OutcomeUnknown || SafeToRetry(err) {
		t.Errorf("OutcomeOf(%v) = %v, though the first command ran", err, o)
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 1 {
		t.Fatalf("error %v (%T), want a *CommandError for the second command", err, err)
	}
	if len(replies) != 2 || replies[0].String() != "1" {
		t.Fatalf("replies %v, want the first INCR's 1 and an error", replies)
	}
	if e := replies[1].Err(); e == nil || !SafeToRetry(e) {
		t.Errorf("the second command replied %v (outcome %v), want an error saying it did not run", replies[1], OutcomeOf(e))
	}
}

// A pipeline whose context ends while it waits to send again a command
// turned away with TRYAGAIN, after another command ran.
func testStoppedAfterSomeRan(t *testing.T, cl *redistest.Cluster, c *Client) {
	a, b := "{ord3}:a", "{ord3}:b"
	_, m := splitSlot(t, cl, c, a, b)
	defer func() {
		if err := m.Finish(clusterCtx(t)); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(clusterCtx(t), time.Second)
	defer cancel()
	replies, err := c.Pipeline(NoTransaction).Incr("{stop}:n").MSet(a, 1, b, 1).Exec(ctx)
	checkStopped(t, replies, err)
}

// A pipeline that runs out of redirections on a node that cannot be
// reached, after its part on another node ran.
func testUnreachableAfterSomeRan(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	live, dead := cl.Masters[0], cl.Masters[2]
	liveKey, deadKey := keyIn(100, "live:"), keyIn(16000, "dead:")
	for slot, want := range map[int]*redistest.Server{100: live, 16000: dead} {
		if owner, err := cl.SlotOwner(slot); err != nil || owner != want {
			t.Fatalf("slot %d is not served by %s (%v)", slot, want.Addr, err)
		}
	}
	// The others must not find the dead master failed, and the cluster
	// down, while the pipeline runs.
	for _, m := range cl.Masters {
		m.MustDo(t, "CONFIG", "SET", "cluster-node-timeout", "60000")
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), MaxRedirects: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(ctx, liveKey); !errors.Is(err, ErrNil) {
		t.Fatal(err)
	}
	if err := dead.Kill(); err != nil {
		t.Fatal(err)
	}
	replies, err := c.Pipeline(NoTransaction).Incr(liveKey).Incr(deadKey).Exec(ctx)
	checkStopped(t, replies, err)
}

// pick sends no command of a slot before an earlier one that waits or goes
// to another node, and a pause ends every ASK: after it, each command goes
// where the layout says, the one that waited first and alone of its slot.
func TestPickKeepsSlotOrder(t *testing.T) {
	a, err := NewClient(Options{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewClient(Options{Addr: "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r := &clusterRouter{}
	r.slots[5], r.slots[7] = a, a
	legs := []*leg{
		{cmd: 0, slot: 5, node: a, wait: true},   // TRYAGAIN from the source
		{cmd: 1, slot: 5, node: b, asking: true}, // ASK to the target
		{cmd: 2, slot: 7, node: a},
		{cmd: 3, slot: 7, node: b, asking: true},
		{cmd: 4, slot: 7, node: a},
		{cmd: 5, slot: -1, node: b},
	}
	cmds := func(ls []*leg) []int {
		var out []int
		for _, l := range ls {
			out = append(out, l.cmd)
		}
		return out
	}
	if got := cmds(pick(legs)); !slices.Equal(got, []int{2, 5}) {
		t.Errorf("first pick sends %v, want [2 5]: nothing of slot 5 behind the one that waits, nothing of slot 7 after the one for another node", got)
	}
	legs[2].done = true
	pending := slices.DeleteFunc(slices.Clone(legs), func(l *leg) bool { return l.done })
	if got := cmds(pick(pending)); !slices.Equal(got, []int{3, 5}) {
		t.Errorf("second pick sends %v, want [3 5]", got)
	}
	pending = r.readyAgain(pending, nil, nil, nil)
	for _, l := range pending {
		if l.asking || l.wait {
			t.Errorf("command %d still has asking %v, wait %v after a pause", l.cmd, l.asking, l.wait)
		}
	}
	if pending[1].node != a {
		t.Errorf("command 1 goes to %s after a pause, want the slot's owner %s", pending[1].node.opt.Addr, a.opt.Addr)
	}
	if got := cmds(pick(pending)); !slices.Equal(got, []int{0, 3, 4, 5}) {
		t.Errorf("pick after the pause sends %v, want [0 3 4 5]: the command that waited alone of slot 5", got)
	}
}

// After a pause, the leg of a command for every master that its node
// refused with READONLY goes, if that node is a master no more, to the
// master that no leg of the command went to, without the refusal as its
// reply; is done with no reply when every master has a leg of the command;
// and is done with the refusal as its reply when its node is still a
// master.
func TestReadyAgainAfterReadonly(t *testing.T) {
	a, b, c, d := fourNodes(t)
	refusal := resp.Value{Kind: resp.Error, Str: "READONLY You can't write against a read only replica."}
	for _, tc := range []struct {
		name    string
		masters []*Client // after the refresh
		node    *Client   // where the refused leg goes; nil if it is done
		reply   resp.Value
	}{
		{"failed over", []*Client{d, b, c}, d, resp.Value{}},
		{"slots handed to a master", []*Client{b, c}, nil, resp.Value{}},
		{"still a master", []*Client{a, b, c}, nil, refusal},
	} {
		r := &clusterRouter{masters: tc.masters}
		// FLUSHALL: a refused it, b and c ran it.
		legs := []leg{
			{cmd: 0, at: 0, slot: -1, node: a, fixed: true, wait: true},
			{cmd: 0, at: 1, slot: -1, node: b, fixed: true, done: true},
			{cmd: 0, at: 2, slot: -1, node: c, fixed: true, done: true},
		}
		ok := resp.Value{Kind: resp.SimpleString, Str: "OK"}
		vals := []resp.Value{refusal, ok, ok}
		pending := r.readyAgain([]*leg{&legs[0]}, legs, vals, nil)
		l := &legs[0]
		switch {
		case tc.node != nil && (len(pending) != 1 || l.done || l.node != tc.node):
			t.Errorf("%s: the refused leg is done %v, goes to %s; want it pending for %s", tc.name, l.done, l.node.opt.Addr, tc.node.opt.Addr)
		case tc.node == nil && (len(pending) != 0 || !l.done):
			t.Errorf("%s: the refused leg is pending, to %s; want it done", tc.name, l.node.opt.Addr)
		}
		if vals[0].Kind != tc.reply.Kind || vals[0].Str != tc.reply.Str {
			t.Errorf("%s: the refused leg's reply is %+v, want %+v", tc.name, vals[0], tc.reply)
		}
	}
}

// A leg of a command for every master whose node is a master no more does
// not go to the master that took its place once a later command of the
// pipeline ran there: refused, it keeps its refusal; not reached, it has
// an error reply that says it was not sent. An earlier command that ran
// there does not hold it back, nor a later one that ran elsewhere.
func TestReadyAgainAfterLaterCommand(t *testing.T) {
	a, b, c, d := fourNodes(t)
	refusal := resp.Value{Kind: resp.Error, Str: "READONLY You can't write against a read only replica."}
	ok := resp.Value{Kind: resp.SimpleString, Str: "OK"}
	for _, tc := range []struct {
		name    string
		reply   resp.Value // the leg's reply from a; zero if a was not reached
		set     int        // the index of the SET that ran on setOn: 0, before FLUSHALL, or 2, after
		setOn   *Client
		goes    bool // the leg goes to d
		outcome Outcome
	}{
		{"refused, SET after it on the new master", refusal, 2, d, false, OutcomeNotApplied},
		{"not reached, SET after it on the new master", resp.Value{}, 2, d, false, OutcomeNotSent},
		{"refused, SET before it on the new master", refusal, 0, d, true, 0},
		{"not reached, SET after it elsewhere", resp.Value{}, 2, b, true, 0},
	} {
		r := &clusterRouter{masters: []*Client{d, b, c}} // d took a's place
		// FLUSHALL, command 1: a did not run it, b and c did.
		at := 0
		if tc.set == 0 {
			at = 1
		}
		legs := []leg{
			{cmd: 1, at: at, slot: -1, node: a, fixed: true, wait: true},
			{cmd: 1, at: at + 1, slot: -1, node: b, fixed: true, done: true},
			{cmd: 1, at: at + 2, slot: -1, node: c, fixed: true, done: true},
		}
		set := leg{cmd: tc.set, slot: 7, node: tc.setOn, done: true}
		if tc.set == 0 {
			legs = append([]leg{set}, legs...)
		} else {
			set.at = 3
			legs = append(legs, set)
		}
		vals := []resp.Value{ok, ok, ok, ok}
		vals[at] = tc.reply
		l := &legs[at]
		pending := r.readyAgain([]*leg{l}, legs, vals, errors.New("dial tcp: connection refused"))
		if tc.goes {
			if len(pending) != 1 || l.done || l.node != d || vals[at].Kind != 0 {
				t.Errorf("%s: the leg is done %v, goes to %s, reply %+v; want it pending for %s", tc.name, l.done, l.node.opt.Addr, vals[at], d.opt.Addr)
			}
			continue
		}
		if len(pending) != 0 || !l.done {
			t.Errorf("%s: the leg is pending, to %s; want it done", tc.name, l.node.opt.Addr)
			continue
		}
		err := Value{vals[at]}.Err()
		if tc.reply.Kind != 0 && vals[at].Str != tc.reply.Str {
			t.Errorf("%s: the leg's reply is %+v, want its refusal", tc.name, vals[at])
		}
		if got := OutcomeOf(err); got != tc.outcome {
			t.Errorf("%s: the leg's reply %v has outcome %v, want %v", tc.name, err, got, tc.outcome)
		}
	}
}

// fourNodes returns four node clients for readyAgain's tests, which
// route legs without sending them: no server is behind them.
func fourNodes(t *testing.T) (a, b, c, d *Client) {
	t.Helper()
	nodes := make([]*Client, 4)
	for i := range nodes {
		n, err := NewClient(Options{Addr: "127.0.0.1:" + strconv.Itoa(i+1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes[i] = n
	}
	return nodes[0], nodes[1], nodes[2], nodes[3]
}

// A cluster pipeline that stopped before every command got through gives
// the error a script returned after its writes as of unknown outcome, as
// a pipeline that ran to its end does, and keeps the redirection of a
// command that did not get through as it is: not applied.
func TestPartialScriptErrorReply(t *testing.T) {
	a, _, _, _ := fourNodes(t)
	p := a.Pipeline(NoTransaction).Eval("redis.call('INCR', KEYS[1]); return redis.error_reply('OOM not really')", 1, "{p}n").Incr("{q}n")
	defer p.Discard()
	legs := []leg{{cmd: 0, at: 0, slot: 1, done: true}, {cmd: 1, at: 1, slot: 2}}
	vals := []resp.Value{
		{Kind: resp.Error, Str: "OOM not really"},
		{Kind: resp.Error, Str: "MOVED 2 127.0.0.1:2"},
	}
	replies, err := partial(p, 2, legs, vals, true, errors.New("gave up"), -1)
	if len(replies) != 2 || err == nil {
		t.Fatalf("partial = %v, %v", replies, err)
	}
	var se *Error
	if e := replies[0].Err(); !errors.As(e, &se) || se.Prefix != "OOM" || OutcomeOf(e) != OutcomeUnknown {
		t.Errorf("the script's reply = %v (outcome %v), want its OOM, of unknown outcome", e, OutcomeOf(e))
	}
	if e := replies[1].Err(); !errors.As(e, &se) || se.Prefix != "MOVED" || OutcomeOf(e) != OutcomeNotApplied {
		t.Errorf("the redirected command's reply = %v (outcome %v), want its MOVED, not applied", e, OutcomeOf(e))
	}
}

// A call that runs out of its one redirection says so, in the singular,
// next to the limit: "after 1 redirection (MaxRedirects 1)". A pipeline
// that also met TRYAGAIN names its retries apart, beside their own
// bound, instead of adding them to its redirections ("after 3
// redirections or retries (MaxRedirects 1)", which read as if the limit
// had been broken); and a stream says what a call does.
func TestClusterGaveUpAfterOneRedirection(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	dead := cl.Masters[2]
	deadKey := keyIn(16000, "dead:")
	if owner, err := cl.SlotOwner(16000); err != nil || owner != dead {
		t.Fatalf("slot 16000 is not served by %s (%v)", dead.Addr, err)
	}
	// The others must not find the dead master failed while the call runs.
	for _, m := range cl.Masters {
		m.MustDo(t, "CONFIG", "SET", "cluster-node-timeout", "60000")
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), MaxRedirects: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(ctx, deadKey); !errors.Is(err, ErrNil) {
		t.Fatal(err)
	}
	// A slot of Masters[0] half moved to Masters[1]: an MGET of a key on
	// each side gets TRYAGAIN for as long as the migration lasts.
	tag := "{t0}"
	for i := 1; hashslot.Slot(tag) >= 5000; i++ {
		tag = "{t" + strconv.Itoa(i) + "}"
	}
	slot := int(hashslot.Slot(tag))
	if err := c.MSet(ctx, tag+"a", "a", tag+"b", "b"); err != nil {
		t.Fatal(err)
	}
	m, err := cl.BeginMigration(ctx, cl.Masters[0], cl.Masters[1], slot)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.MoveKeys(ctx, 1); err != nil || n != 1 {
		t.Fatalf("MoveKeys: %d, %v", n, err)
	}
	if err := dead.Kill(); err != nil {
		t.Fatal(err)
	}
	const once = "gave up after 1 redirection (MaxRedirects 1): "
	_, err = c.Get(ctx, deadKey)
	if err == nil || !strings.Contains(err.Error(), once) {
		t.Errorf("GET on a dead master with MaxRedirects 1 = %v; want it to say %q", err, once)
	}
	// Two rounds: each meets the dead master and TRYAGAIN; the first's
	// are followed, the second's are not.
	_, err = c.Pipeline(NoTransaction).Get(deadKey).MGet(tag+"a", tag+"b").Exec(ctx)
	const both = "gave up after 1 redirection (MaxRedirects 1) and 1 retry after TRYAGAIN or CLUSTERDOWN (at most 50): "
	if err == nil || !strings.Contains(err.Error(), both) {
		t.Errorf("a pipeline on a dead master and a migrating slot = %v; want it to say %q", err, both)
	}
	_, err = c.Stream(ctx, nil).Get(deadKey).Close(ctx)
	if err == nil || !strings.Contains(err.Error(), once) {
		t.Errorf("a stream on a dead master = %v; want it to say %q", err, once)
	}
}

// TestClusterRedirectToIPv6Node: a node announces its address as the
// server writes an IPv6 one in MOVED, without brackets ("MOVED 12182
// ::ffff:127.0.0.1:7001", the IPv4-mapped form reaching the loopback
// these nodes listen on). A call, a pipeline and a transaction whose slot
// moved follow it to the new owner rather than fail with the MOVED.
func TestClusterRedirectToIPv6Node(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := ctxT(t)
	const ip = "::ffff:127.0.0.1"
	for _, s := range cl.Masters {
		s.MustDo(t, "CONFIG", "SET", "cluster-announce-ip", ip)
	}
	// Every node must list every master at its announced address, linked.
	for i := 0; ; i++ {
		ready := true
		for _, s := range cl.Masters {
			nodes, ok := s.MustDo(t, "CLUSTER", "NODES").(string)
			if !ok || strings.Count(nodes, " "+ip+":") != len(cl.Masters) || strings.Contains(nodes, "disconnected") {
				ready = false
			}
		}
		if ready {
			break
		}
		if i == 200 {
			t.Fatalf("the nodes do not all announce %s:\n%v", ip, cl.Masters[0].MustDo(t, "CLUSTER", "NODES"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Three keys in three slots, each then given to another master while
	// the client's map still has the old owner.
	keys := []string{"plain", "piped", "{tx}a"}
	moved := make([]*redistest.Server, len(keys))
	for i, k := range keys {
		if err := c.Set(ctx, k, "before"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Del(ctx, k); err != nil {
			t.Fatal(err)
		}
		slot := int(hashslot.Of([]byte(k)))
		from, err := cl.SlotOwner(slot)
		if err != nil {
			t.Fatal(err)
		}
		moved[i] = cl.Masters[0]
		if moved[i] == from {
			moved[i] = cl.Masters[1]
		}
		// MoveSlots waits until every node agrees: CLUSTER SETSLOT NODE
		// on each in turn may meet the gossip of the former owner, whose
		// higher epoch takes the slot back on the nodes that had let it
		// go.
		if err := cl.MoveSlots(ctx, from, moved[i], slot); err != nil {
			t.Fatal(err)
		}
		v, err := from.Do("GET", k)
		if e, ok := v.(redistest.ReplyError); err != nil || !ok || !strings.HasPrefix(string(e), "MOVED "+strconv.Itoa(slot)+" "+ip+":") {
			t.Fatalf("GET %s from its old owner = %v, %v; want a MOVED to %s", k, v, err, ip)
		}
	}

	if err := c.Set(ctx, keys[0], "after"); err != nil {
		t.Errorf("SET of a moved slot: %v", err)
	}
	if rs, err := c.Pipeline(NoTransaction).Set(keys[1], "after").Exec(ctx); err != nil {
		t.Errorf("pipeline of a moved slot = %v, %v", rs, err)
	}
	if rs, err := c.Pipeline().Set(keys[2], "after").Exec(ctx); err != nil {
		t.Errorf("transaction of a moved slot = %v, %v", rs, err)
	}
	for i, k := range keys {
		if v, err := moved[i].Do("GET", k); err != nil || v != "after" {
			t.Errorf("GET %s from its new owner = %v, %v; want after", k, v, err)
		}
	}
}
