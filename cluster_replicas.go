package redpipe

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/internal/topology"
)

// Replica reads (ClusterOptions.ReadFromReplicas). The router keeps, for
// each slot, the replicas of its master that may serve reads, each through
// a client of its own whose connections send READONLY, apart from the
// client of the same address used as a master. So a node that changes
// role is never written to over a READONLY connection, and a write, routed
// by the slot table alone, never goes to a replica whatever the replica
// table says.

// Replica timing: how long a replica that failed a read is left out of
// reads, and how often the layout is refreshed while some replica is not
// read from for its health (still syncing, or failed).
var (
	replicaPause   = 5 * time.Second
	replicaRecheck = 5 * time.Second
)

// replicaSet is the replicas of one shard that may serve reads, in the
// layout's order. It is not changed once made.
type replicaSet struct {
	addrs []string // given to SelectReplica
	nodes []*Client
}

// applyReplicasLocked fills the replica table from m; r.mu is held for
// writing.
func (r *clusterRouter) applyReplicasLocked(m *topology.Map) error {
	readers := new([hashslot.Count]*replicaSet)
	leftOut := false
	for _, s := range m.Shards {
		if s.Master == nil || s.Master.Addr == "" || len(s.Slots) == 0 {
			continue
		}
		var set replicaSet
		for _, n := range s.Replicas {
			if n == nil || n.Addr == "" || n.Addr == s.Master.Addr {
				continue
			}
			// CLUSTER SLOTS reports no health. Redis 7.0 calls loading a
			// replica with replication offset 0: one that has not synced
			// yet, which would answer from an empty or stale data set.
			if n.Health != topology.HealthOnline && n.Health != topology.HealthUnknown {
				leftOut = true
				continue
			}
			node, err := r.replicaLocked(n.Addr)
			if err != nil {
				return err
			}
			set.addrs = append(set.addrs, n.Addr)
			set.nodes = append(set.nodes, node)
		}
		if len(set.nodes) == 0 {
			continue
		}
		for _, rg := range s.Slots {
			for i := int(rg.First); i <= int(rg.Last); i++ {
				readers[i] = &set
			}
		}
	}
	now := time.Now()
	for n, until := range r.down {
		if now.After(until) {
			delete(r.down, n)
		}
	}
	r.readers, r.leftOut = readers, leftOut
	return nil
}

// replicaLocked returns the client that reads from the replica at addr,
// making it if needed; r.mu is held for writing.
func (r *clusterRouter) replicaLocked(addr string) (*Client, error) {
	if node := r.replicas[addr]; node != nil {
		return node, nil
	}
	opt := r.node
	opt.Addr = addr
	// A read that fails on a replica goes to the master at once, which
	// is its retry: retrying the replica would hold it up, a dial timeout
	// each time when the replica is unreachable.
	opt.MaxRetries = -1
	node, err := NewClient(opt)
	if err != nil {
		return nil, notSent(err)
	}
	node.onConnect = [][]any{{"READONLY"}}
	node.replica = true
	node.front = r.front
	r.replicas[addr] = node
	return node, nil
}

// isReplica tells whether node is the client of a replica, one that
// serves reads only; so it stays once a refresh has released it, while
// the reads it sent before come back.
func (r *clusterRouter) isReplica(node *Client) bool {
	return node != nil && node.replica
}

// readNode returns the replica that a read-only command of slot goes to,
// or nil when it goes to the master: replica reads are off, the slot has
// no replica that may serve it, or SelectReplica chose the master.
func (r *clusterRouter) readNode(slot int) *Client {
	if !r.opt.ReadFromReplicas || slot < 0 || slot >= hashslot.Count {
		return nil
	}
	r.mu.RLock()
	set := r.readers[slot]
	if set != nil && len(r.down) > 0 {
		set = set.without(r.down, time.Now())
	}
	r.mu.RUnlock()
	if set == nil {
		return nil
	}
	// SelectReplica runs without the lock: it is the caller's code.
	i := 0
	if sel := r.opt.SelectReplica; sel != nil {
		i = sel(slot, set.addrs)
	} else if len(set.nodes) > 1 {
		i = rand.N(len(set.nodes))
	}
	if i < 0 || i >= len(set.nodes) {
		return nil
	}
	return set.nodes[i]
}

// without returns s less the replicas left out until after now, nil if
// none is left.
func (s *replicaSet) without(down map[*Client]time.Time, now time.Time) *replicaSet {
	var out *replicaSet
	for i, n := range s.nodes {
		if until, ok := down[n]; ok && now.Before(until) {
			if out == nil {
				out = &replicaSet{addrs: s.addrs[:i:i], nodes: s.nodes[:i:i]}
			}
			continue
		}
		if out != nil {
			out.addrs, out.nodes = append(out.addrs, s.addrs[i]), append(out.nodes, n)
		}
	}
	switch {
	case out == nil:
		return s
	case len(out.nodes) == 0:
		return nil
	}
	return out
}

// routeRead is route for a command that may be read from a replica when
// read is true; replica tells that node is one.
func (r *clusterRouter) routeRead(ctx context.Context, slot int, read bool) (node *Client, replica bool, err error) {
	if read {
		if node := r.readNode(slot); node != nil {
			return node, true, nil
		}
	}
	node, err = r.route(ctx, slot)
	return node, false, err
}

// pickReplicas sends to replicas the legs of a plain pipeline that may be
// read from one, those of a slot to one replica (or all to the master), as
// SelectReplica chose for the first of them. A slot the pipeline writes to
// keeps all its commands on its master, so that they run in their order;
// so does every slot when the pipeline may write where its keys cannot be
// told.
func (r *clusterRouter) pickReplicas(p *Pipeline, legs []leg) {
	if !r.opt.ReadFromReplicas {
		return
	}
	var written map[int]bool
	everywhere := false
	for i := range legs {
		l := &legs[i]
		if ci := p.w.cmds[l.cmd].info(); !ci.has(flagReadonly) {
			switch {
			case l.slot >= 0:
				if written == nil {
					written = map[int]bool{}
				}
				written[l.slot] = true
			case ci.has(flagWrite) || ci.Arity == 0:
				// A write whose keys cannot be told, or a command the
				// table does not know.
				everywhere = true
			}
		}
	}
	if everywhere {
		return
	}
	// One choice per slot: the legs of a slot go in one round only while
	// they share a node (see pick), so reads of one slot spread over its
	// replicas would go one round trip after another.
	var chosen map[int]*Client
	for i := range legs {
		l := &legs[i]
		if l.fixed || l.asking || l.slot < 0 || written[l.slot] || !p.w.cmds[l.cmd].info().has(flagReadonly) || p.w.blocks(l.cmd) {
			continue
		}
		node, ok := chosen[l.slot]
		if !ok {
			if chosen == nil {
				chosen = map[int]*Client{}
			}
			node = r.readNode(l.slot)
			chosen[l.slot] = node
		}
		if node != nil {
			l.node = node
		}
	}
}

// offReplica tells whether a read sent to the replica node goes to the
// master instead, given its reply v or failure err: the replica could not
// be reached or failed (anything but the caller's context or Close: a read
// may be sent again), or it cannot serve for now: LOADING, MASTERDOWN (cut
// off from its master and set not to serve stale data), CLUSTERDOWN (it
// may be the one cut off: the master has the last word). The replica is
// then left out of reads for replicaPause, and a failure starts a refresh
// of the layout. A read refused with NOSCRIPT (EVALSHA_RO) goes to the
// master too, the replica staying in: SCRIPT LOAD goes to the masters
// only, and the server does not pass loaded scripts on to its replicas, so
// the master alone can say whether it has the script. name is the read's
// command: the error of a script or function (EVAL_RO, FCALL_RO) counts
// only in the server's words (see serverRefusal).
func (r *clusterRouter) offReplica(ctx context.Context, node *Client, v resp.Value, err error, name string) bool {
	switch {
	case err != nil:
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return false
		}
		r.triggerRefresh()
	case isErrValue(v):
		prefix := newError(v.Str).Prefix
		if runsCode(name) && !serverRefusal(prefix, v.Str) {
			// The code's own error, which it returned after running:
			// its reply, and no sign that the replica cannot serve.
			return false
		}
		switch prefix {
		case "LOADING", "MASTERDOWN", "CLUSTERDOWN":
		case "NOSCRIPT":
			return true
		default:
			return false
		}
	default:
		return false
	}
	r.mu.Lock()
	if r.down != nil {
		r.down[node] = time.Now().Add(replicaPause)
	}
	r.mu.Unlock()
	return true
}

// serverRefusal tells whether msg, an error reply that starts with
// prefix, is in the words a server uses when it turns a read away before
// running it, for the prefixes that send a read from a replica to its
// master (see offReplica). A script may return an error of its own that
// starts the same way: taken for the replica's refusal, it would run the
// script again on the master and leave the replica out of reads for
// replicaPause.
func serverRefusal(prefix, msg string) bool {
	switch prefix {
	case "CLUSTERDOWN":
		return serverRedirect(redirect{kind: prefix}, msg)
	case "LOADING":
		// The server's name comes first: Redis, or that of a fork.
		return strings.HasSuffix(msg, " is loading the dataset in memory")
	case "MASTERDOWN":
		return strings.HasSuffix(msg, " is down and replica-serve-stale-data is set to 'no'.")
	case "NOSCRIPT":
		return strings.HasPrefix(msg, noScriptMsg)
	}
	return true
}

// recheckReplicas arranges a refresh in replicaRecheck when the last map
// left replicas out for their health, so that they serve reads once they
// can. Without it nothing would look again until a redirection. A map
// that leaves none out calls off the refresh an earlier one arranged,
// which would have nothing to look at.
func (r *clusterRouter) recheckReplicas() {
	r.refMu.Lock()
	defer r.refMu.Unlock()
	r.mu.RLock()
	due := r.leftOut && !r.closed
	r.mu.RUnlock()
	if !due && r.recheck != nil {
		r.recheck.Stop()
		r.recheck = nil
	}
	if !due || r.recheck != nil {
		return
	}
	r.recheck = time.AfterFunc(replicaRecheck, func() {
		r.refMu.Lock()
		r.recheck = nil
		r.refMu.Unlock()
		r.triggerRefresh()
	})
}
