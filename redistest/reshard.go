package redistest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

const (
	// migrateBatch is how many keys one MIGRATE moves, as many as one
	// CLUSTER GETKEYSINSLOT lists.
	migrateBatch = 100
	// migrateTimeout is MIGRATE's own timeout, in milliseconds, for its
	// connection to the target.
	migrateTimeout = "5000"
	// pipelineChunk bounds the commands sent over one connection when a
	// step is repeated for many slots.
	pipelineChunk = 1000
)

// SlotRange returns the slots from first to last, inclusive, for MoveSlots
// and BeginMigration. A range that reaches past the slots a cluster has
// stops one slot outside them, and one wholly outside is its first slot
// alone: those then refuse it by that number, and a range such as
// SlotRange(0, math.MaxInt) neither runs forever nor fills memory.
func SlotRange(first, last int) []int {
	if first > last {
		return nil
	}
	lo, hi := max(first, -1), min(last, clusterSlots)
	if lo > hi {
		return []int{first} // wholly outside the slots
	}
	var slots []int
	for s := lo; s <= hi; s++ {
		slots = append(slots, s)
	}
	return slots
}

// MoveSlots moves slots, with their keys, from one master to another the
// way redis-cli --cluster reshard does, while clients may go on using the
// cluster: it is BeginMigration followed by Migration.Finish. It returns
// once every node agrees that to serves the slots. A master that gives
// away its last slot stays a master, with none, as AddMaster makes one
// (the nodes of a Cluster are set so); it can be given slots again.
//
// Clients see what they would in production: ASK redirections for keys
// already moved while a slot migrates, TRYAGAIN for multi-key commands
// whose keys are split between the two nodes, then MOVED once the slot
// has moved.
func (c *Cluster) MoveSlots(ctx context.Context, from, to *Server, slots ...int) error {
	m, err := c.BeginMigration(ctx, from, to, slots...)
	if err != nil {
		return err
	}
	return m.Finish(ctx)
}

// Migration is slots on their way from one master to another: the target
// is importing them and the source migrating them, and their keys are
// moved by MoveKeys and Finish. Between those calls the slots are
// half-migrated, the state in which clients get ASK redirections.
type Migration struct {
	c            *Cluster
	from, to     *Server
	fromID, toID string
	slots        []int
}

// BeginMigration starts moving slots from one master to another: CLUSTER
// SETSLOT IMPORTING on to, then CLUSTER SETSLOT MIGRATING on from. No key
// moves yet. from must serve every slot given.
func (c *Cluster) BeginMigration(ctx context.Context, from, to *Server, slots ...int) (*Migration, error) {
	if err := c.begin(ctx, "BeginMigration"); err != nil {
		return nil, err
	}
	switch {
	case !slices.Contains(c.Masters, from) || !slices.Contains(c.Masters, to):
		return nil, errors.New("redistest: slots move between two masters of the cluster")
	case from == to:
		return nil, fmt.Errorf("redistest: cannot move slots from %s to itself", from.Addr)
	case len(slots) == 0:
		return nil, errors.New("redistest: no slot to move")
	}
	seen := map[int]bool{}
	for _, s := range slots {
		if s < 0 || s >= clusterSlots || seen[s] {
			return nil, fmt.Errorf("redistest: slot %d is out of range or given twice", s)
		}
		seen[s] = true
	}
	m := &Migration{c: c, from: from, to: to, fromID: c.NodeID(from), toID: c.NodeID(to), slots: slices.Clone(slots)}
	v, err := fetchView(from)
	if err != nil {
		return nil, err
	}
	for _, s := range slots {
		if owner := v.owner(s); owner != m.fromID {
			return nil, fmt.Errorf("redistest: slot %d is served by %s, not by %s", s, c.describeNode(owner), from.Addr)
		}
	}
	// The target first, so that no client is sent by an ASK to a node
	// that does not accept it yet.
	if err := m.setSlots(ctx, to, "IMPORTING", m.fromID); err != nil {
		return nil, err
	}
	if err := m.setSlots(ctx, from, "MIGRATING", m.toID); err != nil {
		return nil, err
	}
	return m, nil
}

// setSlots sends CLUSTER SETSLOT <slot> <how> [id] for each slot of the
// migration to s.
func (m *Migration) setSlots(ctx context.Context, s *Server, how, id string) error {
	for chunk := range slices.Chunk(m.slots, pipelineChunk) {
		if err := ctx.Err(); err != nil {
			return err
		}
		cmds := make([][]string, len(chunk))
		for i, slot := range chunk {
			cmds[i] = []string{"CLUSTER", "SETSLOT", strconv.Itoa(slot), how, id}
		}
		if err := pipelineChecked(s, cmds); err != nil {
			return err
		}
	}
	return nil
}

// MoveKeys moves up to n keys of each slot of the migration from the
// source to the target (all of them if n is negative), with CLUSTER
// GETKEYSINSLOT and MIGRATE ... KEYS in batches, and returns how many it
// moved. MoveKeys with a small n leaves slots half-migrated: some of their
// keys on each node.
func (m *Migration) MoveKeys(ctx context.Context, n int) (int, error) {
	slots, err := m.slotsWithKeys(ctx)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, slot := range slots {
		left := n
		for left != 0 {
			if err := ctx.Err(); err != nil {
				return moved, err
			}
			batch := migrateBatch
			if left > 0 {
				batch = min(batch, left)
			}
			v, err := m.from.doChecked("CLUSTER", "GETKEYSINSLOT", strconv.Itoa(slot), strconv.Itoa(batch))
			if err != nil {
				return moved, err
			}
			keys, ok := v.([]any)
			if !ok {
				return moved, fmt.Errorf("redistest: CLUSTER GETKEYSINSLOT on %s: unexpected reply %#v", m.from.Addr, v)
			}
			if len(keys) == 0 {
				break
			}
			cmd := []string{"MIGRATE", "127.0.0.1", strconv.Itoa(m.to.Port), "", "0", migrateTimeout, "KEYS"}
			for _, k := range keys {
				s, _ := k.(string)
				cmd = append(cmd, s)
			}
			// NOKEY: the keys expired or were deleted since they were
			// listed, which leaves nothing to move.
			if v, err := m.from.Do(cmd...); err != nil {
				return moved, fmt.Errorf("redistest: MIGRATE from %s to %s: %w", m.from.Addr, m.to.Addr, err)
			} else if e, ok := v.(ReplyError); ok {
				return moved, fmt.Errorf("redistest: MIGRATE from %s to %s: %w", m.from.Addr, m.to.Addr, e)
			} else if v != "NOKEY" {
				moved += len(keys)
			}
			if left > 0 {
				left -= len(keys)
			}
		}
	}
	return moved, nil
}

// slotsWithKeys returns the slots of the migration that still have keys
// on the source, asking for all of them in a few round trips.
func (m *Migration) slotsWithKeys(ctx context.Context) ([]int, error) {
	var out []int
	for chunk := range slices.Chunk(m.slots, pipelineChunk) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cmds := make([][]string, len(chunk))
		for i, slot := range chunk {
			cmds[i] = []string{"CLUSTER", "COUNTKEYSINSLOT", strconv.Itoa(slot)}
		}
		replies, err := m.from.Pipeline(cmds...)
		if err != nil {
			return nil, err
		}
		for i, r := range replies {
			n, ok := r.(int64)
			if !ok {
				return nil, fmt.Errorf("redistest: CLUSTER COUNTKEYSINSLOT %d on %s: %v", chunk[i], m.from.Addr, r)
			}
			if n > 0 {
				out = append(out, chunk[i])
			}
		}
	}
	return out, nil
}

// Finish moves the keys still on the source, then gives the slots to the
// target with CLUSTER SETSLOT NODE on the target first, then on the
// source, then on the other masters, as the cluster specification says,
// and waits until every node agrees that the target serves them and
// neither node has a migration of them open.
func (m *Migration) Finish(ctx context.Context) error {
	if _, err := m.MoveKeys(ctx, -1); err != nil {
		return err
	}
	order := []*Server{m.to, m.from}
	for _, s := range m.c.Masters {
		if s != m.to && s != m.from {
			order = append(order, s)
		}
	}
	for _, s := range order {
		if err := m.setSlots(ctx, s, "NODE", m.toID); err != nil {
			return err
		}
	}
	what := fmt.Sprintf("every node to see %s serve %s", m.to.Addr, describeSlots(m.slots))
	return m.c.waitSettled(ctx, what, func(views map[*Server]*clusterView) (bool, string) {
		for s, v := range views {
			for _, slot := range m.slots {
				if owner := v.owner(slot); owner != m.toID {
					return false, fmt.Sprintf("%s sees slot %d served by %s", s.Addr, slot, m.c.describeNode(owner))
				}
				if v.importing[slot] != "" || v.migrating[slot] != "" {
					return false, fmt.Sprintf("%s still has a migration of slot %d open", s.Addr, slot)
				}
			}
		}
		return true, ""
	})
}

// SlotOwner returns the master that serves slot, as the first master
// sees it.
func (c *Cluster) SlotOwner(slot int) (*Server, error) {
	if slot < 0 || slot >= clusterSlots {
		return nil, fmt.Errorf("redistest: slot %d is out of range: a cluster has slots 0 to %d", slot, clusterSlots-1)
	}
	if len(c.Masters) == 0 {
		return nil, errors.New("redistest: the cluster has no master to ask")
	}
	v, err := fetchView(c.Masters[0])
	if err != nil {
		return nil, err
	}
	id := v.owner(slot)
	for _, s := range c.Masters {
		if c.NodeID(s) == id {
			return s, nil
		}
	}
	return nil, fmt.Errorf("redistest: slot %d is served by %s, which is no master of the cluster", slot, c.describeNode(id))
}

// describeNode names a node by its address if the cluster knows it.
func (c *Cluster) describeNode(id string) string {
	if id == "" {
		return "no node"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for s, sid := range c.ids {
		if sid == id {
			return s.Addr
		}
	}
	return "node " + id
}

// describeSlots renders slots for a message, as ranges.
func describeSlots(slots []int) string {
	sorted := slices.Sorted(slices.Values(slots))
	var parts []string
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1] == sorted[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(sorted[i]))
		} else {
			parts = append(parts, strconv.Itoa(sorted[i])+"-"+strconv.Itoa(sorted[j]))
		}
		i = j + 1
	}
	s := "slot"
	if len(sorted) > 1 {
		s = "slots"
	}
	return s + " " + strings.Join(parts, ",")
}

// pipelineChecked sends cmds to s over one connection and fails on the
// first error reply.
func pipelineChecked(s *Server, cmds [][]string) error {
	replies, err := s.Pipeline(cmds...)
	if err != nil {
		return err
	}
	for i, r := range replies {
		if e, ok := r.(ReplyError); ok {
			return fmt.Errorf("redistest: %s on %s: %w", strings.Join(cmds[i], " "), s.Addr, e)
		}
	}
	return nil
}
