package redistest

import (
	"cmp"
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
		n := &viewNode{id: f[0], master: f[3]}
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
			lo, hi, isRange := strings.Cut(r, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil && a <= slot && slot <= b {
				return id
			}
		}
	}
	return ""
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
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil {
			continue
		}
		for s := a; s <= b; s++ {
			out = append(out, s)
		}
	}
	return out
}

// canonical renders what every node must agree on, the membership, roles
// and slots, in a form that does not depend on who answered.
func (v *clusterView) canonical() string {
	lines := make([]string, 0, len(v.nodes))
	for id, n := range v.nodes {
		role := "slave"
		if n.isMaster() {
			role = "master"
		}
		lines = append(lines, id+" "+role+" "+n.master+" "+strings.Join(n.slots, ","))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
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
			first = canon
		} else if canon != first {
			return false, s.Addr + " does not yet agree with " + c.Servers()[0].Addr + " on roles and slots: " + firstDifference(first, canon)
		}
	}
	return true, ""
}

// firstDifference describes the first line of the canonical view a that b
// does not have.
func firstDifference(a, b string) string {
	theirs := strings.Split(b, "\n")
	for _, line := range strings.Split(a, "\n") {
		if slices.Contains(theirs, line) {
			continue
		}
		id, _, _ := strings.Cut(line, " ")
		for _, t := range theirs {
			if strings.HasPrefix(t, id+" ") {
				return "it has " + strconv.Quote(t) + " where the other has " + strconv.Quote(line)
			}
		}
		return "it has no line " + strconv.Quote(line)
	}
	return "it has other lines"
}

// Slot views that still disagree after repairAfter are repaired, at most
// once every repairEvery.
const (
	repairAfter = 3 * time.Second
	repairEvery = time.Second
)

// waitSettled waits until the cluster is settled and, if more is given,
// more holds too. Slot owners the nodes still disagree on after
// repairAfter are repaired with repairSlots.
func (c *Cluster) waitSettled(ctx context.Context, what string, more func(map[*Server]*clusterView) (bool, string)) error {
	start := time.Now()
	var lastRepair time.Time
	return waitCtx(ctx, what, func() (bool, string) {
		views, err := c.fetchViews()
		if err != nil {
			return false, err.Error()
		}
		if ok, state := c.settled(views); !ok {
			if now := time.Now(); now.Sub(start) >= repairAfter && now.Sub(lastRepair) >= repairEvery {
				lastRepair = now
				if err := c.repairSlots(views); err != nil {
					return false, state + "; " + err.Error()
				}
			}
			return false, state
		}
		if more != nil {
			return more(views)
		}
		return true, ""
	})
}

// repairSlots mends slot owners that gossip alone would never correct.
// Before Redis 7.2 the nodes can disagree on a slot's owner for good when
// a slot move meets a config epoch collision or a failover: a stale owner
// may carry a higher config epoch than the master that really serves the
// slot (a node believes a claim only from a higher epoch), and an UPDATE
// message may even take the slot from its real owner, leaving a slot that
// no master serves by its own account.
//
// The remedy is the one an operator would use. A slot's owner is the one
// master that serves it by its own account or, when none does, the master
// most masters' views name. That master takes a config epoch above every
// other (CLUSTER BUMPEPOCH), so that its claim wins everywhere gossip
// reaches, and each master whose view differs is told the owner with
// CLUSTER SETSLOT NODE, the owner first.
func (c *Cluster) repairSlots(views map[*Server]*clusterView) error {
	// Not while the nodes are still meeting or some of them are failing:
	// gossip has work left to do then.
	for _, v := range views {
		for _, s := range c.Servers() {
			if n := v.nodes[c.NodeID(s)]; n == nil || !n.healthy() {
				return nil
			}
		}
	}
	plan := planRepair(c.Masters, views)
	for _, a := range plan.sets {
		cmds := make([][]string, len(a.slots))
		for i, slot := range a.slots {
			cmds[i] = []string{"CLUSTER", "SETSLOT", strconv.Itoa(slot), "NODE", a.owner}
		}
		if err := pipelineChecked(a.on, cmds); err != nil {
			return err
		}
	}
	for _, m := range plan.bumps {
		if _, err := m.doChecked("CLUSTER", "BUMPEPOCH"); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.repairs += len(plan.bumps)
	c.mu.Unlock()
	return nil
}

// repairPlan is what repairSlots sends: the SETSLOT NODE commands in the
// order given, then a BUMPEPOCH to each owner of a repaired slot.
type repairPlan struct {
	sets  []slotAssignment
	bumps []*Server
}

// slotAssignment is CLUSTER SETSLOT <slot> NODE <owner>, for each slot,
// sent to on.
type slotAssignment struct {
	on    *Server
	owner string
	slots []int
}

// planRepair works out the repair of the slots whose owner the views
// disagree on; see repairSlots.
func planRepair(masters []*Server, views map[*Server]*clusterView) repairPlan {
	byID := map[string]*Server{}
	owners := map[*Server][]string{}
	var all [][]string
	for s, v := range views {
		owners[s] = v.owners()
		all = append(all, owners[s])
	}
	claimed := make([]string, clusterSlots) // the master serving each slot by its own account
	contested := make([]bool, clusterSlots)
	for _, m := range masters {
		v := views[m]
		if v == nil {
			continue
		}
		byID[v.self] = m
		for _, slot := range v.slotsOf(v.self) {
			if claimed[slot] != "" {
				contested[slot] = true
			}
			claimed[slot] = v.self
		}
	}
	var plan repairPlan
	bumped := map[*Server]bool{}
	toSet := map[*Server]map[string][]int{} // master -> owner -> slots
	for slot := range clusterSlots {
		if contested[slot] {
			continue
		}
		id := claimed[slot]
		if id == "" {
			id = majority(masters, owners, slot)
		}
		owner := byID[id]
		if owner == nil || !slices.ContainsFunc(all, func(o []string) bool { return o[slot] != id }) {
			continue
		}
		if !bumped[owner] {
			bumped[owner] = true
			plan.bumps = append(plan.bumps, owner)
		}
		for _, m := range masters {
			o := owners[m]
			if o == nil || (o[slot] == id && (m != owner || claimed[slot] == id)) {
				continue
			}
			if toSet[m] == nil {
				toSet[m] = map[string][]int{}
			}
			toSet[m][id] = append(toSet[m][id], slot)
		}
	}
	// Owners first, so that no master is told of an owner that does not
	// serve the slot yet.
	for _, ownerFirst := range []bool{true, false} {
		for _, m := range masters {
			for _, id := range slices.Sorted(maps.Keys(toSet[m])) {
				if (byID[id] == m) == ownerFirst {
					plan.sets = append(plan.sets, slotAssignment{on: m, owner: id, slots: toSet[m][id]})
				}
			}
		}
	}
	slices.SortStableFunc(plan.bumps, func(a, b *Server) int {
		return cmp.Compare(slices.Index(masters, a), slices.Index(masters, b))
	})
	return plan
}

// majority returns the owner of slot that most masters' views name, or ""
// if no owner has more than half of them.
func majority(masters []*Server, owners map[*Server][]string, slot int) string {
	votes := map[string]int{}
	for _, m := range masters {
		if o := owners[m]; o != nil && o[slot] != "" {
			votes[o[slot]]++
		}
	}
	for id, n := range votes {
		if 2*n > len(masters) {
			return id
		}
	}
	return ""
}

// waitCtx is waitFor bounded by ctx too.
func waitCtx(ctx context.Context, what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(clusterTimeout)
	for {
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
