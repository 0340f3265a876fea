package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// clusterSections are the headings of the cluster walkthrough, in the
// order its steps run. Tests check for them.
var clusterSections = []string{
	"The cluster: its masters and their hash slots",
	"A NoTransaction pipeline split across the masters",
	"MGET of keys in many slots, split by slot",
	"A transaction on keys with a common {hash tag}",
	"A cross-slot transaction, refused before sending",
	"A slot moves: MOVED, followed once",
}

// clusterDemoConfig says where the cluster walkthrough runs.
type clusterDemoConfig struct {
	Seeds []string  // seed URLs of the user's cluster; none starts a throwaway one
	Out   io.Writer // the walkthrough
}

// clusterDemo walks through what the cluster client does with pipelines
// and transactions. What it says each master ran is not taken from the
// client: it is what the masters themselves count (INFO commandstats),
// next to what the keys' slots (CLUSTER KEYSLOT) predict.
type clusterDemo struct {
	c     *redpipe.Client // the cluster client under demonstration
	w     io.Writer
	nodes []*demoNode        // the masters, by their first slot
	cl    *redistest.Cluster // the throwaway cluster; nil on the user's
}

// demoNode is one master, with a client of its own that asks it for its
// command counts.
type demoNode struct {
	addr   string
	ranges [][2]int // slot ranges it serves, first to last, inclusive
	c      *redpipe.Client
}

// users are the keys and values of the split pipeline. With the three
// equal slot ranges of a fresh cluster, their slots fall on all three
// masters (four, three and two of them).
var users = []struct{ key, name string }{
	{k("user:1"), "Ada"}, {k("user:2"), "Grace"}, {k("user:3"), "Alan"},
	{k("user:4"), "Edsger"}, {k("user:5"), "Barbara"}, {k("user:6"), "Donald"},
	{k("user:7"), "Frances"}, {k("user:8"), "John"}, {k("user:9"), "Margaret"},
}

// userKeys returns the keys of users, in order.
func userKeys() []string {
	keys := make([]string, len(users))
	for i, u := range users {
		keys[i] = u.key
	}
	return keys
}

// The two keys of the transaction share the hash tag {user1}: only
// "user1" is hashed, so they are in one slot.
var (
	cartKey  = k("{user1}:cart")
	totalKey = k("{user1}:total")
)

// clusterDemoKeys are all the keys the walkthrough writes, deleted before
// and after it on a user's cluster.
func clusterDemoKeys() []string {
	keys := []string{cartKey, totalKey}
	for _, u := range users {
		keys = append(keys, u.key)
	}
	return keys
}

// runClusterDemo runs the walkthrough against the cluster of cfg.Seeds,
// or against a cluster of three masters it starts and always stops.
func runClusterDemo(ctx context.Context, cfg clusterDemoConfig) (err error) {
	w := cfg.Out
	fmt.Fprintln(w, "redpipe demo -cluster: pipelines and transactions against a real Redis Cluster")
	d := &clusterDemo{w: w}
	seeds := cfg.Seeds
	if len(seeds) == 0 {
		fmt.Fprintln(w, "No seed URLs given: starting a throwaway cluster of three masters (redistest)...")
		// Not err: the deferred func below must set the function's own.
		cl, cerr := redistest.NewCluster(0)
		if cerr != nil {
			return noServerError(cerr, "give the seed URLs of a cluster you have")
		}
		defer func() {
			if err != nil && ctx.Err() == nil {
				err = goneHint(err, "node of the throwaway cluster", cl.Servers()...)
			}
			if serr := cl.Stop(); serr != nil && err == nil {
				err = serr
			}
			fmt.Fprintln(w, "Stopped the throwaway cluster.")
		}()
		d.cl = cl
		for _, m := range cl.Masters {
			seeds = append(seeds, m.URL())
		}
		fmt.Fprintf(w, "Started it at %s; it is stopped at the end.\n", strings.Join(cl.Addrs(), ", "))
	} else {
		shown := make([]string, len(seeds))
		for i, s := range seeds {
			// A URL that cannot be used is refused before the note,
			// which would show it as if it were; with the seed's
			// number, as ConnectCluster says it.
			if _, err := redpipe.ParseURL(s); err != nil {
				if oe := (*redpipe.OptionError)(nil); errors.As(err, &oe) && len(seeds) > 1 {
					oe.Field = fmt.Sprintf("seed %d of %d: %s", i+1, len(seeds), oe.Field)
				}
				return err
			}
			shown[i] = redact(s)
		}
		fmt.Fprintf(w, "Using the cluster of %s. Only keys under %s are touched, and no slot is moved.\n",
			strings.Join(shown, ", "), prefix)
	}

	c, err := redpipe.ConnectCluster(ctx, seeds...)
	if err != nil {
		if se := (*redpipe.Error)(nil); errors.As(err, &se) && strings.Contains(se.Msg, "cluster support disabled") {
			// The server's words say what it is not, not what to run
			// on it instead.
			return fmt.Errorf("%w\nA seed is a single server, not a node of a Redis Cluster: run redpipe demo with REDIS_URL set to its URL instead", err)
		}
		// A Sentinel does not know CLUSTER either, and says only that.
		if se := (*redpipe.Error)(nil); errors.As(err, &se) && strings.Contains(se.Msg, "unknown command") {
			if s := sentinelSeed(ctx, seeds); s != "" {
				return fmt.Errorf("%w\n%s is a Redis Sentinel, not a node of a Redis Cluster: give the URLs of a cluster's nodes, or run redpipe demo with REDIS_URL set to the URL of a master the Sentinel monitors", err, redact(s))
			}
		}
		return tlsHint(authHint(err, "the seed URLs"))
	}
	defer c.Close()
	d.c = c
	defer d.closeNodes()
	opt, err := redpipe.ParseURL(seeds[0])
	if err != nil {
		return err
	}
	if err := d.loadNodes(ctx, opt); err != nil {
		return err
	}
	if d.cl == nil {
		// Leftovers of an interrupted run would change replies, so start
		// from a clean namespace, and leave one behind.
		if err := d.cleanup(ctx); err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if cerr := d.cleanup(cctx); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}
	return d.run(ctx)
}

// sentinelSeed returns the first of seeds that is a Redis Sentinel, or ""
// if none is, or none answers within a few seconds.
func sentinelSeed(ctx context.Context, seeds []string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, s := range seeds {
		c, err := redpipe.Connect(ctx, s)
		if err != nil {
			continue
		}
		info, err := c.Info(ctx, "server")
		c.Close()
		if err == nil && strings.Contains(info, "redis_mode:sentinel") {
			return s
		}
	}
	return ""
}

func (d *clusterDemo) run(ctx context.Context) error {
	steps := []func(context.Context) error{
		d.layout,
		d.splitPipeline,
		d.splitMGet,
		d.taggedTransaction,
		d.crossSlotTransaction,
		d.moved,
	}
	for i, step := range steps {
		fmt.Fprintf(d.w, "\n== %d. %s ==\n", i+1, clusterSections[i])
		if err := step(ctx); err != nil {
			return fmt.Errorf("%s: %w", clusterSections[i], err)
		}
	}
	fmt.Fprintln(d.w)
	return nil
}

// cleanup deletes the walkthrough's keys. They are in many slots: the
// client splits the DEL by slot.
func (d *clusterDemo) cleanup(ctx context.Context) error {
	_, err := d.c.Del(ctx, clusterDemoKeys()...)
	return err
}

// loadNodes learns the masters and their slots from the cluster, the way
// the client does (CLUSTER SHARDS, or CLUSTER SLOTS before Redis 7), and
// connects to each with opt, the options of the first seed URL.
func (d *clusterDemo) loadNodes(ctx context.Context, opt redpipe.Options) (err error) {
	seedHost, _, err := net.SplitHostPort(opt.Addr)
	if err != nil {
		return err
	}
	byAddr := map[string]*demoNode{}
	add := func(host, port string, lo, hi int) {
		// A node that knows no address of its own, as one alone in its
		// cluster, lists none; the seed is where we reached it.
		if host == "" || host == "?" {
			host = seedHost
		}
		addr := net.JoinHostPort(host, port)
		n := byAddr[addr]
		if n == nil {
			n = &demoNode{addr: addr}
			byAddr[addr] = n
			d.nodes = append(d.nodes, n)
		}
		n.ranges = append(n.ranges, [2]int{lo, hi})
	}
	if err := clusterShards(ctx, d.c, opt.TLSConfig != nil, add); err != nil {
		if err := clusterSlots(ctx, d.c, add); err != nil {
			return fmt.Errorf("reading the cluster's layout: %w", err)
		}
	}
	if len(d.nodes) == 0 {
		return errors.New("the cluster reports no master serving slots")
	}
	for _, n := range d.nodes {
		slices.SortFunc(n.ranges, func(a, b [2]int) int { return a[0] - b[0] })
		o := opt
		o.Addr = n.addr
		if n.c, err = redpipe.NewClient(o); err != nil {
			return err
		}
	}
	slices.SortFunc(d.nodes, func(a, b *demoNode) int { return a.ranges[0][0] - b.ranges[0][0] })
	return nil
}

func (d *clusterDemo) closeNodes() {
	for _, n := range d.nodes {
		if n.c != nil {
			n.c.Close()
		}
	}
}

// clusterShards reads CLUSTER SHARDS and calls add for each slot range of
// each master that is online, at its TLS port if overTLS is set.
func clusterShards(ctx context.Context, c *redpipe.Client, overTLS bool, add func(host, port string, lo, hi int)) error {
	v, err := c.Do(ctx, "CLUSTER", "SHARDS")
	if err != nil {
		return err
	}
	shards, err := v.Slice()
	if err != nil {
		return err
	}
	for _, sh := range shards {
		m, err := sh.Map()
		if err != nil {
			return err
		}
		slots, err := m["slots"].Int64s()
		if err != nil || len(slots)%2 != 0 {
			return fmt.Errorf("CLUSTER SHARDS: slots %v", m["slots"])
		}
		nodes, err := m["nodes"].Slice()
		if err != nil {
			return err
		}
		for _, nv := range nodes {
			node, err := nv.StringMap()
			if err != nil {
				return err
			}
			if node["role"] != "master" || node["health"] != "online" {
				continue
			}
			host := node["endpoint"]
			if host == "" || host == "?" {
				host = node["ip"]
			}
			// A node that takes TLS and plain connections lists both
			// ports; a TLS handshake on the plain one fails.
			port := node["port"]
			if tp := node["tls-port"]; tp != "" && (overTLS || port == "") {
				port = tp
			}
			for i := 0; i < len(slots); i += 2 {
				add(host, port, int(slots[i]), int(slots[i+1]))
			}
		}
	}
	return nil
}

// clusterSlots is clusterShards for servers before Redis 7.
func clusterSlots(ctx context.Context, c *redpipe.Client, add func(host, port string, lo, hi int)) error {
	v, err := c.Do(ctx, "CLUSTER", "SLOTS")
	if err != nil {
		return err
	}
	ranges, err := v.Slice()
	if err != nil {
		return err
	}
	for _, r := range ranges {
		parts, err := r.Slice()
		if err != nil || len(parts) < 3 {
			return fmt.Errorf("CLUSTER SLOTS: range %v", r)
		}
		lo, err1 := parts[0].Int64()
		hi, err2 := parts[1].Int64()
		master, err3 := parts[2].Slice()
		if err := errors.Join(err1, err2, err3); err != nil || len(master) < 2 {
			return fmt.Errorf("CLUSTER SLOTS: range %v", r)
		}
		host, err1 := master[0].Text()
		port, err2 := master[1].Int64()
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("CLUSTER SLOTS: range %v", r)
		}
		add(host, strconv.FormatInt(port, 10), int(lo), int(hi))
	}
	return nil
}

// owner returns the master that serves slot by the layout loaded at the
// start.
func (d *clusterDemo) owner(slot int) *demoNode {
	for _, n := range d.nodes {
		for _, r := range n.ranges {
			if r[0] <= slot && slot <= r[1] {
				return n
			}
		}
	}
	return nil
}

func (n *demoNode) slotRanges() string {
	parts := make([]string, len(n.ranges))
	for i, r := range n.ranges {
		if r[0] == r[1] {
			parts[i] = strconv.Itoa(r[0])
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r[0], r[1])
		}
	}
	return strings.Join(parts, ",")
}

// keySlots asks the cluster for the slot of each key, in one pipeline.
// CLUSTER KEYSLOT takes its key as a plain argument, so any master
// answers it.
func (d *clusterDemo) keySlots(ctx context.Context, keys ...string) ([]int, error) {
	p := d.c.Pipeline(redpipe.NoTransaction)
	for _, key := range keys {
		p.Do("CLUSTER", "KEYSLOT", key)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		return nil, err
	}
	slots := make([]int, len(replies))
	for i, r := range replies {
		n, err := r.Int64()
		if err != nil {
			return nil, err
		}
		slots[i] = int(n)
	}
	return slots, nil
}

// cmdCount is one line of INFO commandstats: how many times a node ran a
// command, and how many times it refused it before running it (MOVED is
// one such refusal).
type cmdCount struct{ calls, rejected int }

// nodeCounts are the counts of every master, by node and command name.
type nodeCounts map[*demoNode]map[string]cmdCount

// counts asks every master for its command counts.
func (d *clusterDemo) counts(ctx context.Context) (nodeCounts, error) {
	out := nodeCounts{}
	for _, n := range d.nodes {
		v, err := n.c.Do(ctx, "INFO", "commandstats")
		if err != nil {
			return nil, fmt.Errorf("INFO commandstats on %s: %w", n.addr, err)
		}
		info, err := v.Text()
		if err != nil {
			return nil, err
		}
		out[n] = parseCommandStats(info)
	}
	return out, nil
}

// parseCommandStats reads lines such as
// "cmdstat_get:calls=3,usec=4,usec_per_call=1.33,rejected_calls=1,failed_calls=0".
func parseCommandStats(info string) map[string]cmdCount {
	out := map[string]cmdCount{}
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, fields, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		var cc cmdCount
		for f := range strings.SplitSeq(fields, ",") {
			key, val, _ := strings.Cut(f, "=")
			n, err := strconv.Atoi(val)
			if err != nil {
				continue
			}
			switch key {
			case "calls":
				cc.calls = n
			case "rejected_calls":
				cc.rejected = n
			}
		}
		out[name] = cc
	}
	return out
}

// delta returns what node n counted for the named commands between two
// snapshots.
func delta(before, after nodeCounts, n *demoNode, names ...string) cmdCount {
	var d cmdCount
	for _, name := range names {
		d.calls += after[n][name].calls - before[n][name].calls
		d.rejected += after[n][name].rejected - before[n][name].rejected
	}
	return d
}

// otherTraffic is added to counts on a cluster the demo did not start,
// where other clients' commands are counted too.
func (d *clusterDemo) otherTraffic() string {
	if d.cl != nil {
		return ""
	}
	return " (other clients' commands count too)"
}

func (d *clusterDemo) layout(ctx context.Context) error {
	fmt.Fprintf(d.w, "  CLUSTER SHARDS: %d masters\n", len(d.nodes))
	tw := tabwriter.NewWriter(d.w, 0, 0, 2, ' ', 0)
	for _, n := range d.nodes {
		fmt.Fprintf(tw, "    %s\tslots %s\n", n.addr, n.slotRanges())
	}
	tw.Flush()
	fmt.Fprintln(d.w, "  A key's slot is CRC16 of the key (or of its {hash tag}) mod 16384; the client sends each command to its slot's master.")
	return nil
}

// splitPipeline sends one NoTransaction pipeline whose keys are spread
// over the masters, and shows each master's share twice: predicted from
// the keys' slots, and counted by the master itself.
func (d *clusterDemo) splitPipeline(ctx context.Context) error {
	keys := userKeys()
	slots, err := d.keySlots(ctx, keys...)
	if err != nil {
		return err
	}
	before, err := d.counts(ctx)
	if err != nil {
		return err
	}
	p := d.c.Pipeline(redpipe.NoTransaction)
	for _, u := range users {
		p.Set(u.key, u.name).Get(u.key)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		return err
	}
	after, err := d.counts(ctx)
	if err != nil {
		return err
	}

	fmt.Fprintf(d.w, "  c.Pipeline(redpipe.NoTransaction) of %d commands, a SET and a GET per key, replies in the order sent:\n", 2*len(users))
	tw := tabwriter.NewWriter(d.w, 0, 0, 2, ' ', 0)
	predicted := map[*demoNode]int{}
	for i, u := range users {
		n := d.owner(slots[i])
		if n == nil {
			return fmt.Errorf("no master serves slot %d", slots[i])
		}
		predicted[n] += 2
		where := fmt.Sprintf("slot %d, %s", slots[i], n.addr)
		fmt.Fprintf(tw, "    %2d) %s\t->  %s\t%s\n", 2*i+1, line("SET", u.key, u.name), replies[2*i], where)
		fmt.Fprintf(tw, "    %2d) %s\t->  %s\t%s\n", 2*i+2, line("GET", u.key), replies[2*i+1], where)
		if got := replies[2*i+1].String(); got != u.name {
			return fmt.Errorf("GET %s returned %q, want %q", u.key, got, u.name)
		}
	}
	tw.Flush()

	fmt.Fprintf(d.w, "  The pipeline went out as one batch per master, all at once. Batch sizes, from the keys' slots (CLUSTER KEYSLOT) and as each master counted its SETs and GETs (INFO commandstats)%s:\n", d.otherTraffic())
	tw = tabwriter.NewWriter(d.w, 0, 0, 2, ' ', 0)
	for _, n := range d.nodes {
		got := delta(before, after, n, "set", "get").calls
		fmt.Fprintf(tw, "    %s\tslots %s\t%d commands by slot, %d counted by the node\n", n.addr, n.slotRanges(), predicted[n], got)
		if d.cl != nil && got != predicted[n] {
			return fmt.Errorf("%s ran %d SETs and GETs, its keys' slots say %d", n.addr, got, predicted[n])
		}
	}
	tw.Flush()
	return nil
}

// splitMGet reads the pipeline's keys with one MGET, which the client
// splits into one MGET per slot, and shows how many each master ran.
func (d *clusterDemo) splitMGet(ctx context.Context) error {
	keys := userKeys()
	slots, err := d.keySlots(ctx, keys...)
	if err != nil {
		return err
	}
	before, err := d.counts(ctx)
	if err != nil {
		return err
	}
	vals, err := d.c.MGet(ctx, keys...)
	if err != nil {
		return err
	}
	after, err := d.counts(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "  c.MGet(ctx, %q, ..., %q):\n", keys[0], keys[len(keys)-1])
	fmt.Fprintf(d.w, "    ->  %v\n", vals)
	for i, u := range users {
		if got := vals[i].String(); got != u.name {
			return fmt.Errorf("MGET value %d is %q, want %q", i, got, u.name)
		}
	}
	bySlot := map[*demoNode]map[int]bool{}
	for _, s := range slots {
		n := d.owner(s)
		if bySlot[n] == nil {
			bySlot[n] = map[int]bool{}
		}
		bySlot[n][s] = true
	}
	fmt.Fprintf(d.w, "  One MGET per slot, the values put back in the order of the keys. MGETs per master, from the keys' slots and as each master counted them (INFO commandstats)%s:\n", d.otherTraffic())
	tw := tabwriter.NewWriter(d.w, 0, 0, 2, ' ', 0)
	for _, n := range d.nodes {
		got := delta(before, after, n, "mget").calls
		fmt.Fprintf(tw, "    %s\t%d MGETs by slot, %d counted by the node\n", n.addr, len(bySlot[n]), got)
		if d.cl != nil && got != len(bySlot[n]) {
			return fmt.Errorf("%s ran %d MGETs, the keys' slots say %d", n.addr, got, len(bySlot[n]))
		}
	}
	tw.Flush()
	return nil
}

// taggedTransaction runs a MULTI/EXEC pipeline on two keys of one slot.
func (d *clusterDemo) taggedTransaction(ctx context.Context) error {
	slots, err := d.keySlots(ctx, cartKey, totalKey)
	if err != nil {
		return err
	}
	if slots[0] != slots[1] {
		return fmt.Errorf("%s and %s are in slots %d and %d", cartKey, totalKey, slots[0], slots[1])
	}
	n := d.owner(slots[0])
	if n == nil {
		return fmt.Errorf("no master serves slot %d", slots[0])
	}
	fmt.Fprintf(d.w, "  %s and %s: only \"user1\", the hash tag, is hashed, so both are in slot %d (CLUSTER KEYSLOT), on %s.\n",
		cartKey, totalKey, slots[0], n.addr)
	before, err := d.counts(ctx)
	if err != nil {
		return err
	}
	replies, err := d.c.Pipeline().SAdd(cartKey, "apple", "pear").IncrBy(totalKey, 7).Exec(ctx)
	if err != nil {
		return err
	}
	after, err := d.counts(ctx)
	if err != nil {
		return err
	}
	printBatch(d.w, "c.Pipeline().SAdd(...).IncrBy(...).Exec(ctx), sent as MULTI ... EXEC",
		[]string{line("SADD", cartKey, "apple", "pear"), line("INCRBY", totalKey, 7)}, texts(replies))
	fmt.Fprintf(d.w, "  EXEC counted by each master (INFO commandstats)%s:\n", d.otherTraffic())
	for _, m := range d.nodes {
		got := delta(before, after, m, "exec").calls
		fmt.Fprintf(d.w, "    %s: %d\n", m.addr, got)
		want := 0
		if m == n {
			want = 1
		}
		if d.cl != nil && got != want {
			return fmt.Errorf("%s ran EXEC %d times, want %d", m.addr, got, want)
		}
	}
	return nil
}

// crossSlotTransaction shows the error of a transaction whose keys are in
// two slots, and that nothing reached any master.
func (d *clusterDemo) crossSlotTransaction(ctx context.Context) error {
	a, b := users[0], users[1]
	before, err := d.counts(ctx)
	if err != nil {
		return err
	}
	_, err = d.c.Pipeline().Set(a.key, "changed").Set(b.key, "changed").Exec(ctx)
	fmt.Fprintf(d.w, "  c.Pipeline().Set(%q, \"changed\").Set(%q, \"changed\").Exec(ctx):\n", a.key, b.key)
	var cse *redpipe.CrossSlotError
	if !errors.As(err, &cse) {
		return fmt.Errorf("a transaction on %s and %s returned %v, want a *redpipe.CrossSlotError", a.key, b.key, err)
	}
	fmt.Fprintf(d.w, "    error: %v\n", err)
	fmt.Fprintf(d.w, "    errors.As(err, &crossSlot): keys %q in slots %v\n", cse.Keys, cse.Slots)
	fmt.Fprintf(d.w, "    errors.Is(err, redpipe.ErrNotApplied): %t\n", errors.Is(err, redpipe.ErrNotApplied))
	after, err := d.counts(ctx)
	if err != nil {
		return err
	}
	sent := 0
	for _, n := range d.nodes {
		sent += delta(before, after, n, "multi", "set", "exec").calls
	}
	fmt.Fprintf(d.w, "  MULTI, SET and EXEC counted by the masters meanwhile (INFO commandstats)%s: %d\n", d.otherTraffic(), sent)
	if d.cl != nil && sent != 0 {
		return fmt.Errorf("the masters ran %d MULTI, SET or EXEC for a refused transaction", sent)
	}
	for _, u := range []struct{ key, name string }{a, b} {
		v, err := d.c.Get(ctx, u.key)
		if err != nil {
			return err
		}
		d.say(line("GET", u.key), v)
		if d.cl != nil && v != u.name {
			return fmt.Errorf("GET %s returned %q after a refused transaction, want %q", u.key, v, u.name)
		}
	}
	return nil
}

// moved moves the slot of a key to another master behind the client's
// back, then reads the key twice: the first GET goes to the old master,
// which answers MOVED, and is sent again to the new one; the second goes
// straight to the new one.
func (d *clusterDemo) moved(ctx context.Context) error {
	if d.cl == nil {
		fmt.Fprintln(d.w, "  Skipped: the demo moves no slot of a cluster it did not start.")
		return nil
	}
	u := users[0]
	slots, err := d.keySlots(ctx, u.key)
	if err != nil {
		return err
	}
	slot := slots[0]
	from := d.owner(slot)
	if from == nil {
		return fmt.Errorf("no master serves slot %d", slot)
	}
	var to *demoNode
	for _, n := range d.nodes {
		if n != from {
			to = n
			break
		}
	}
	fromSrv, toSrv := d.server(from.addr), d.server(to.addr)
	if fromSrv == nil || toSrv == nil {
		return fmt.Errorf("%s or %s is not a master of the throwaway cluster", from.addr, to.addr)
	}
	fmt.Fprintf(d.w, "  %s is in slot %d, on %s. Moving slot %d and its keys to %s (CLUSTER SETSLOT, MIGRATE)...\n",
		u.key, slot, from.addr, slot, to.addr)
	if err := d.cl.MoveSlots(ctx, fromSrv, toSrv, slot); err != nil {
		return err
	}
	fmt.Fprintln(d.w, "  Moved. The client was not told: it still sends slot", slot, "to", from.addr+".")
	for round := 1; round <= 2; round++ {
		before, err := d.counts(ctx)
		if err != nil {
			return err
		}
		v, err := d.c.Get(ctx, u.key)
		if err != nil {
			return err
		}
		after, err := d.counts(ctx)
		if err != nil {
			return err
		}
		d.say(fmt.Sprintf("c.Get(ctx, %q)", u.key), v)
		old, cur := delta(before, after, from, "get"), delta(before, after, to, "get")
		fmt.Fprintf(d.w, "    GET on %s: %d refused with MOVED, %d run; on %s: %d run (INFO commandstats)\n",
			from.addr, old.rejected, old.calls, to.addr, cur.calls)
		wantRejected := 0
		if round == 1 {
			wantRejected = 1
		}
		if v != u.name || old.rejected != wantRejected || old.calls != 0 || cur.calls != 1 {
			return fmt.Errorf("GET %d of %s after the move: %q, old master refused %d and ran %d, new master ran %d",
				round, u.key, v, old.rejected, old.calls, cur.calls)
		}
	}
	fmt.Fprintf(d.w, "  The MOVED reply updated slot %d in the client's map at once: the second GET went straight to %s.\n", slot, to.addr)
	return nil
}

// server returns the throwaway cluster's master at addr.
func (d *clusterDemo) server(addr string) *redistest.Server {
	for _, m := range d.cl.Masters {
		if m.Addr == addr {
			return m
		}
	}
	return nil
}

func (d *clusterDemo) say(cmd string, reply any) {
	fmt.Fprintf(d.w, "  %s  ->  %v\n", cmd, reply)
}
