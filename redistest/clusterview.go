package redistest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clusterView is what one node says of the cluster: CLUSTER INFO, CLUSTER
// NODES and its replication state, fetched over one connection.
type clusterView struct {
	state     string // cluster_state
	self      string // the id of the node that answered
	role      string // role from INFO replication: "master" or "slave"
	linkUp    bool   // master_link_status:up, for a replica
	nodes     map[string]*viewNode
	order     []string       // node ids in the order CLUSTER NODES gave them
	importing map[int]string // slot -> source id, for the slots the node is importing
	migrating map[int]string // slot -> target id, for the slots the node is migrating
}

// viewNode is one line of CLUSTER NODES.
type viewNode struct {
	id     string
	addr   string   // ip:port, without the bus port and hostname
	flags  []string // without "myself"
	master string   // the id of its master, "" for a master
	slots  []string // the slot fields, "0-5460" or "5461", without migration marks
	raw    string   // the whole line, for messages
}

func (n *viewNode) has(flag string) bool { return slices.Contains(n.flags, flag) }

// isMaster reports whether the line says master (a failed master that
// lost its slots still does).
func (n *viewNode) isMaster() bool { return n.has("master") }

// badFlags are the flags of a node that is not a healthy member.
var badFlags = []string{"handshake", "noaddr", "fail", "fail?"}

func (n *viewNode) healthy() bool {
	for _, f := range badFlags {
		if n.has(f) {
			return false
		}
	}
	return true
}

// fetchView asks s for its view of the cluster.
func fetchView(s *Server) (*clusterView, error) {
	replies, err := s.Pipeline(
		[]string{"CLUSTER", "INFO"},
		[]string{"CLUSTER", "NODES"},
		[]string{"INFO", "replication"},
	)
	if err != nil {
		return nil, err
	}
	var texts [3]string
	for i, r := range replies {
		switch r := r.(type) {
		case string:
			texts[i] = r
		case ReplyError:
			return nil, fmt.Errorf("redistest: %s: %w", s.Addr, r)
		default:
			return nil, fmt.Errorf("redistest: %s: unexpected reply %#v", s.Addr, r)
		}
	}
	v, err := parseClusterNodes(texts[1])
	if err != nil {
		return nil, fmt.Errorf("redistest: %s: %w", s.Addr, err)
	}
	v.state = infoField(texts[0], "cluster_state")
	v.role = infoField(texts[2], "role")
	v.linkUp = infoField(texts[2], "master_link_status") == "up"
	return v, nil
}

// parseClusterNodes reads the reply to CLUSTER NODES: one line a node,
//
//	<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> ...
//
// where the line of the node that answered also shows its open migrations
// as [slot->-target] and [slot-<-source].
func parseClusterNodes(text string) (*clusterView, error) {
	v := &clusterView{nodes: map[string]*viewNode{}, importing: map[int]string{}, migrating: map[int]string{}}
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q has %d fields, want at least 8", strings.TrimSpace(line), len(f))
		}
		n := &viewNode{id: f[0], master: f[3], raw: strings.TrimSpace(line)}
		n.addr, _, _ = strings.Cut(f[1], "@")
		if n.master == "-" {
			n.master = ""
		}
		self := false
		for _, fl := range strings.Split(f[2], ",") {
			if fl == "myself" {
				self = true
				continue
			}
			n.flags = append(n.flags, fl)
		}
		for _, s := range f[8:] {
			if !strings.HasPrefix(s, "[") {
				n.slots = append(n.slots, s)
				continue
			}
			// [slot->-id] or [slot-<-id]
			body := strings.Trim(s, "[]")
			if slot, id, ok := strings.Cut(body, "->-"); ok {
				if k, err := strconv.Atoi(slot); err == nil {
					v.migrating[k] = id
				}
			} else if slot, id, ok := strings.Cut(body, "-<-"); ok {
				if k, err := strconv.Atoi(slot); err == nil {
					v.importing[k] = id
				}
			}
		}
		if self {
			v.self = n.id
		}
		v.nodes[n.id] = n
		v.order = append(v.order, n.id)
	}
	if v.self == "" {
		return nil, errors.New("CLUSTER NODES has no line flagged myself")
	}
	return v, nil
}

// owner returns the id of the master that serves slot in this view, or "".
func (v *clusterView) owner(slot int) string {
	for _, id := range v.order {
		for _, r := range v.nodes[id].slots {
			if a, b, ok := slotRange(r); ok && a <= slot && slot <= b {
				return id
			}
		}
	}
	return ""
}

// slotRange reads a slot field of CLUSTER NODES, "0-5460" or "5461".
func slotRange(r string) (first, last int, ok bool) {
	lo, hi, isRange := strings.Cut(r, "-")
	if !isRange {
		hi = lo
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	return a, b, err1 == nil && err2 == nil
}

// owners returns the id of the master that serves each slot in this
// view, "" for a slot nobody serves.
func (v *clusterView) owners() []string {
	out := make([]string, clusterSlots)
	for _, id := range v.order {
		for _, slot := range v.slotsOf(id) {
			if slot >= 0 && slot < clusterSlots && out[slot] == "" {
				out[slot] = id
			}
		}
	}
	return out
}

// slotsOf returns the slots node id serves in this view.
func (v *clusterView) slotsOf(id string) []int {
	var out []int
	for _, r := range v.nodes[id].slots {
		if a, b, ok := slotRange(r); ok {
			for s := a; s <= b; s++ {
				out = append(out, s)
			}
		}
	}
	return out
}

// canonical renders what every node must agree on, the membership, roles
// and slots, in a form that does not depend on who answered.
func (v *clusterView) canonical() string {
	lines := make([]string, 0, len(v.nodes))
	for id := range v.nodes {
		lines = append(lines, v.canonicalLine(id))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// canonicalLine is the line of canonical for node id.
func (v *clusterView) canonicalLine(id string) string {
	n := v.nodes[id]
	role := "slave"
	if n.isMaster() {
		role = "master"
	}
	return id + " " + role + " " + n.master + " " + strings.Join(n.slots, ",")
}

// fetchViews asks every live node for its view.
func (c *Cluster) fetchViews() (map[*Server]*clusterView, error) {
	views := map[*Server]*clusterView{}
	for _, s := range c.Servers() {
		v, err := fetchView(s)
		if err != nil {
			return nil, err
		}
		views[s] = v
	}
	return views, nil
}

// settled reports whether the views show a settled cluster: every live
// node has cluster_state:ok, sees every live node as a healthy member in
// the role Masters and Replicas give it, sees each node killed by
// KillMaster as failed, knows no other node, and agrees with the others on
// roles and slots; every replica's link to its master is up. The string
// says what is missing.
func (c *Cluster) settled(views map[*Server]*clusterView) (bool, string) {
	c.mu.Lock()
	ids := make(map[string]*Server, len(c.ids))
	for s, id := range c.ids {
		ids[id] = s
	}
	gone := map[string]bool{}
	for _, s := range c.gone {
		gone[c.ids[s]] = true
	}
	c.mu.Unlock()
	masterIDs := map[string]bool{}
	for _, m := range c.Masters {
		masterIDs[c.NodeID(m)] = true
	}

	var first string
	var firstView *clusterView
	for _, s := range c.Servers() {
		v := views[s]
		if v.state != "ok" {
			return false, s.Addr + " has cluster_state:" + v.state
		}
		for _, t := range c.Servers() {
			id := c.NodeID(t)
			n := v.nodes[id]
			switch {
			case n == nil:
				return false, s.Addr + " does not know " + t.Addr
			case !n.healthy():
				return false, s.Addr + " sees " + t.Addr + " with flags " + strings.Join(n.flags, ",")
			case slices.Contains(c.Masters, t) && !n.isMaster():
				return false, s.Addr + " sees master " + t.Addr + " as a replica"
			case slices.Contains(c.Replicas, t) && (n.isMaster() || !masterIDs[n.master]):
				return false, s.Addr + " does not see " + t.Addr + " as a replica of a master of the cluster"
			}
		}
		for id, n := range v.nodes {
			switch {
			case gone[id] && !n.has("fail"):
				return false, s.Addr + " sees the killed node " + id + " with flags " + strings.Join(n.flags, ",")
			case ids[id] == nil && !gone[id]:
				return false, s.Addr + " knows a node " + id + " (" + n.addr + ") that is not part of the cluster"
			}
		}
		if slices.Contains(c.Replicas, s) && (v.role != "slave" || !v.linkUp) {
			return false, "replica " + s.Addr + " has role:" + v.role + " and its link to its master is not up"
		}
		canon := v.canonical()
		if first == "" {
			first, firstView = canon, v
		} else if canon != first {
			return false, s.Addr + " does not yet agree with " + c.Servers()[0].Addr + " on roles and slots: " + firstDifference(firstView, v)
		}
	}
	return true, ""
}

// firstDifference describes the first node on whose line of CLUSTER NODES
// (role, master and slots) view b differs from view a, with both lines
// whole, config epochs included, since those decide whose claim on a slot
// a node believes.
func firstDifference(a, b *clusterView) string {
	ids := slices.Sorted(maps.Keys(a.nodes))
	for id := range b.nodes {
		if a.nodes[id] == nil {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		na, nb := a.nodes[id], b.nodes[id]
		switch {
		case nb == nil:
			return "it does not know node " + id
		case na == nil:
			return "it knows node " + id + ", which the other does not"
		case a.canonicalLine(id) != b.canonicalLine(id):
			return "its line for node " + id + " is " + strconv.Quote(nb.raw) + " where the other's is " + strconv.Quote(na.raw)
		}
	}
	return "it has other lines"
}

// repairAfter is how long the same slots must have gone unclaimed before
// repairSlots acts: three node timeouts, so that gossip has had every
// chance to settle them first.
const repairAfter = 6 * time.Second

// waitSettled waits until the cluster is settled and, if more is given,
// more holds too. Slots that no master claims for repairAfter are given
// back to their owner with repairSlots.
func (c *Cluster) waitSettled(ctx context.Context, what string, more func(map[*Server]*clusterView) (bool, string)) error {
	var lost string // the unclaimed slots seen since lostSince, as a plan renders them
	var lostSince time.Time
	return c.wait(ctx, what, func() (bool, string) {
		views, err := c.fetchViews()
		if err != nil {
			return false, err.Error()
		}
		ok, state := c.settled(views)
		if ok {
			if more != nil {
				return more(views)
			}
			return true, ""
		}
		plan := c.planRepair(views)
		switch {
		case len(plan) == 0:
			lost = ""
		case plan.String() != lost:
			lost, lostSince = plan.String(), time.Now()
		case time.Since(lostSince) >= repairAfter:
			if err := c.repair(plan); err != nil {
				return false, state + "; " + err.Error()
			}
			lost = ""
		}
		return false, state
	})
}

// A slot can end up with no master that serves it by its own account
// while the other nodes still name one: an UPDATE message can take a slot
// from the master that serves it when a slot move meets a failover or a
// config epoch collision (fixed in Redis 7.2 and 7.0.13), and an operator
// can remove a slot with CLUSTER DELSLOTS. Gossip never mends that: only
// a master's claim on a slot spreads, and nobody claims it. The remedy is
// the one an operator would use: CLUSTER SETSLOT <slot> NODE <owner> on
// the master that most masters' views name, after which its claim spreads
// as any other does.

// repairPlan is, for each master that is to claim slots again, the slots.
type repairPlan map[*Server][]int

// String renders the plan in a stable form, to tell whether two plans are
// the same.
func (p repairPlan) String() string {
	var parts []string
	for s, slots := range p {
		parts = append(parts, s.Addr+" "+describeSlots(slots))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// planRepair returns the slots no live node serves by its own account,
// each with the master that more than half of the masters' views name as
// its owner. It plans nothing while any node is missing or unhealthy in a
// view, any slot migrates, or two nodes claim one slot: gossip and the
// operations under way still have work to do then.
func (c *Cluster) planRepair(views map[*Server]*clusterView) repairPlan {
	byID := map[string]*Server{}
	for _, m := range c.Masters {
		byID[c.NodeID(m)] = m
	}
	claimed := make([]bool, clusterSlots)
	for _, v := range views {
		if len(v.importing) > 0 || len(v.migrating) > 0 {
			return nil
		}
		for _, s := range c.Servers() {
			if n := v.nodes[c.NodeID(s)]; n == nil || !n.healthy() {
				return nil
			}
		}
		for _, slot := range v.slotsOf(v.self) {
			if slot < 0 || slot >= clusterSlots || claimed[slot] {
				return nil
			}
			claimed[slot] = true
		}
	}
	var owners [][]string
	for _, m := range c.Masters {
		if v := views[m]; v != nil {
			owners = append(owners, v.owners())
		}
	}
	plan := repairPlan{}
	for slot := range clusterSlots {
		if claimed[slot] {
			continue
		}
		votes := map[string]int{}
		for _, o := range owners {
			if o[slot] != "" {
				votes[o[slot]]++
			}
		}
		for id, n := range votes {
			if m := byID[id]; m != nil && 2*n > len(c.Masters) {
				plan[m] = append(plan[m], slot)
			}
		}
	}
	return plan
}

// repair carries out a plan, and says what it did through Logf.
func (c *Cluster) repair(plan repairPlan) error {
	for m, slots := range plan {
		for chunk := range slices.Chunk(slots, pipelineChunk) {
			cmds := make([][]string, len(chunk))
			for i, slot := range chunk {
				cmds[i] = []string{"CLUSTER", "SETSLOT", strconv.Itoa(slot), "NODE", c.NodeID(m)}
			}
			if err := pipelineChecked(m, cmds); err != nil {
				return err
			}
		}
	}
	c.mu.Lock()
	c.repairs++
	logf := c.Logf
	c.mu.Unlock()
	if logf != nil {
		logf("redistest: no master served %s by its own account for %v: told each owner to claim them", plan, repairAfter)
	}
	return nil
}

// wait polls cond until it holds, ctx is done or clusterTimeout passes;
// cond's string describes the last state seen, for the error. It gives
// up at once when a node of the cluster is not running: no state that
// needs every node to answer can come then, and the node's end, not a
// timeout on a refused dial, is what the test must hear of.
func (c *Cluster) wait(ctx context.Context, what string, cond func() (bool, string)) error {
	return waitUntil(ctx, what, c.nodeDown, cond)
}

// waitUntil is the loop of Cluster.wait, for any set of servers: down
// tells why one of them is not running, or nil.
func waitUntil(ctx context.Context, what string, down func() error, cond func() (bool, string)) error {
	deadline := time.Now().Add(clusterTimeout)
	for {
		if err := down(); err != nil {
			return fmt.Errorf("redistest: gave up waiting for %s: %w", what, err)
		}
		ok, state := cond()
		if ok {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("redistest: gave up waiting for %s: %w; last state: %s", what, err, state)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: timed out after %v waiting for %s; last state: %s", clusterTimeout, what, state)
		}
		t := time.NewTimer(clusterPoll)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// nodeDown returns why a node of the cluster, other than a master killed
// by KillMaster, is not running, or nil if every one is: the cluster or
// the node was stopped, by Stop or by the end of the test that started
// it, or the node's process exited.
func (c *Cluster) nodeDown() error {
	if err := c.checkRunning(); err != nil {
		return err
	}
	for _, s := range c.Servers() {
		if err := s.exitedErr(); err != nil {
			return err
		}
	}
	return nil
}
