package redistest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReplicasOf returns the replicas of master, as master sees them, in the
// order of Replicas.
func (c *Cluster) ReplicasOf(master *Server) ([]*Server, error) {
	if master == nil {
		return nil, errNilServer
	}
	if !slices.Contains(c.Masters, master) {
		return nil, fmt.Errorf("redistest: %s is not a master of the cluster", master.Addr)
	}
	v, err := fetchView(master)
	if err != nil {
		return nil, err
	}
	id := c.NodeID(master)
	var out []*Server
	for _, r := range c.Replicas {
		if n := v.nodes[c.NodeID(r)]; n != nil && n.master == id {
			out = append(out, r)
		}
	}
	return out, nil
}

// errNilServer refuses a nil *Server, such as the result of a failed call
// passed on.
var errNilServer = errors.New("redistest: nil *Server given for a node of the cluster")

// manualFailoverWait is how long one CLUSTER FAILOVER is given, past the
// server's own 5s limit on a manual failover; manualFailoverAttempts
// bounds how often it is asked.
const (
	manualFailoverWait     = 8 * time.Second
	manualFailoverAttempts = 3
)

// Failover hands master's slots to one of its replicas the graceful way,
// with CLUSTER FAILOVER on the replica: the master stops taking writes,
// the replica catches up with it, takes over its slots and the master
// becomes its replica. Failover waits until the cluster has settled in the
// new roles, puts the promoted replica in master's place in Masters and
// master in the replica's place in Replicas, and returns the promoted
// replica.
func (c *Cluster) Failover(ctx context.Context, master *Server) (*Server, error) {
	if err := c.begin(ctx, "Failover"); err != nil {
		return nil, err
	}
	i, replicas, err := c.masterWithReplicas(master, "to fail over to")
	if err != nil {
		return nil, err
	}
	r := replicas[0]
	// The server abandons a manual failover that has not completed within
	// its own timeout (5s), as when the replica is slow to catch up on a
	// busy machine; it is then asked again.
	for attempt := 1; ; attempt++ {
		if _, err := r.doChecked("CLUSTER", "FAILOVER"); err != nil {
			return nil, err
		}
		actx, cancel := context.WithTimeout(ctx, manualFailoverWait)
		err = c.wait(actx, "replica "+r.Addr+" to take over from "+master.Addr+" after CLUSTER FAILOVER", func() (bool, string) {
			return hasRoles(map[*Server]string{r: "master", master: "slave"})
		})
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || attempt == manualFailoverAttempts {
			return nil, err
		}
	}
	c.Masters[i] = r
	c.Replicas[slices.Index(c.Replicas, r)] = master
	if err := c.waitSettled(ctx, "the cluster to settle after "+r.Addr+" took over from "+master.Addr, nil); err != nil {
		return nil, err
	}
	return r, nil
}

// KillMaster kills master with Kill, as in a crash, and waits until one of
// its replicas has been elected in its place and the cluster has settled:
// every other node sees master as failed and the promoted replica serving
// its slots. The promoted replica takes master's place in Masters and
// leaves Replicas; master leaves the cluster's lists until Rejoin. It
// returns the promoted replica.
//
// Failure detection and the election take a few seconds: the cluster
// node timeout (2 s), then the replica's election delay.
func (c *Cluster) KillMaster(ctx context.Context, master *Server) (*Server, error) {
	if err := c.begin(ctx, "KillMaster"); err != nil {
		return nil, err
	}
	i, replicas, err := c.masterWithReplicas(master, "to take over if it is killed")
	if err != nil {
		return nil, err
	}
	master.killedMaster.Store(true)
	if err := master.Kill(); err != nil {
		master.killedMaster.Store(false)
		return nil, err
	}
	c.mu.Lock()
	c.gone = append(c.gone, master)
	c.mu.Unlock()
	c.Masters = slices.Delete(c.Masters, i, i+1)

	var promoted *Server
	err = c.wait(ctx, "a replica of the killed master "+master.Addr+" to be promoted", func() (bool, string) {
		state := ""
		for _, r := range replicas {
			role, err := roleOf(r)
			if err != nil {
				return false, err.Error()
			}
			if role == "master" {
				promoted = r
				return true, ""
			}
			state += r.Addr + " has role " + role + "; "
		}
		return false, state
	})
	if err != nil {
		return nil, err
	}
	c.Masters = slices.Insert(c.Masters, i, promoted)
	c.Replicas = slices.DeleteFunc(c.Replicas, func(s *Server) bool { return s == promoted })
	if err := c.waitSettled(ctx, "the cluster to settle after "+promoted.Addr+" replaced the killed "+master.Addr, nil); err != nil {
		return nil, err
	}
	return promoted, nil
}

// Rejoin restarts a master killed by KillMaster. It comes back with its
// cluster configuration but none of its data, finds its slots served by
// the replica promoted in its place, and becomes a replica of that node.
// Rejoin waits until the cluster has settled with it, and appends it to
// Replicas.
func (c *Cluster) Rejoin(ctx context.Context, s *Server) error {
	if s == nil {
		return errNilServer
	}
	if err := c.begin(ctx, "Rejoin"); err != nil {
		return err
	}
	c.mu.Lock()
	i := slices.Index(c.gone, s)
	c.mu.Unlock()
	if i < 0 {
		return fmt.Errorf("redistest: %s is not a node killed by KillMaster", s.Addr)
	}
	if err := s.Restart(); err != nil {
		return err
	}
	// s is not yet among the nodes the cluster's wait checks: a crash of
	// s itself must end the wait too, rather than let it run to its
	// timeout on a refused dial.
	down := func() error {
		if err := s.exitedErr(); err != nil {
			return err
		}
		return c.nodeDown()
	}
	err := waitUntil(ctx, "the restarted "+s.Addr+" to become a replica", down, func() (bool, string) {
		return hasRoles(map[*Server]string{s: "slave"})
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.gone = slices.Delete(c.gone, i, i+1)
	c.mu.Unlock()
	s.killedMaster.Store(false)
	c.Replicas = append(c.Replicas, s)
	return c.waitSettled(ctx, "the cluster to settle with "+s.Addr+" back as a replica", nil)
}

// AddMaster starts a new node, introduces it to the cluster with CLUSTER
// MEET, and waits until every node knows it and it knows the whole
// cluster. It serves no slot: give it some with MoveSlots. It is appended
// to Masters and returned.
func (c *Cluster) AddMaster(ctx context.Context) (*Server, error) {
	if err := c.begin(ctx, "AddMaster"); err != nil {
		return nil, err
	}
	s, err := startMember()
	if err != nil {
		return nil, fmt.Errorf("redistest: starting a cluster node: %w", err)
	}
	if c.started != nil {
		c.started(s)
	}
	// From here on s is in Masters, so that Stop stops it whatever fails.
	c.Masters = append(c.Masters, s)
	if _, err := c.noteID(s); err != nil {
		return nil, err
	}
	first := c.Masters[0]
	if _, err := s.doChecked("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(first.Port), strconv.Itoa(first.BusPort)); err != nil {
		return nil, err
	}
	if err := c.waitSettled(ctx, "every node to know the new master "+s.Addr, nil); err != nil {
		return nil, err
	}
	return s, nil
}

// RemoveMaster takes master, which must serve no slot (move them away
// first with MoveSlots) and have no replica, out of the cluster as an
// operator removes a node: it stops the node, has every other node
// forget it with CLUSTER FORGET, and waits until the cluster has settled
// without it. master leaves Masters; its address may later be taken by
// another node.
func (c *Cluster) RemoveMaster(ctx context.Context, master *Server) error {
	if err := c.begin(ctx, "RemoveMaster"); err != nil {
		return err
	}
	if master == nil {
		return errNilServer
	}
	i := slices.Index(c.Masters, master)
	if i < 0 {
		return fmt.Errorf("redistest: %s is not a master of the cluster", master.Addr)
	}
	if len(c.Masters) == 1 {
		return fmt.Errorf("redistest: %s is the last master of the cluster", master.Addr)
	}
	replicas, err := c.ReplicasOf(master)
	if err != nil {
		return err
	}
	if len(replicas) > 0 {
		return fmt.Errorf("redistest: master %s has %d replicas", master.Addr, len(replicas))
	}
	v, err := fetchView(master)
	if err != nil {
		return err
	}
	if self := v.nodes[v.self]; self == nil || len(self.slots) > 0 {
		return fmt.Errorf("redistest: master %s still serves slots: move them away first", master.Addr)
	}
	id := c.NodeID(master)
	if err := master.Stop(); err != nil {
		return err
	}
	c.Masters = slices.Delete(c.Masters, i, i+1)
	c.mu.Lock()
	delete(c.ids, master) // a node that still knows it is then unsettled
	c.mu.Unlock()
	for _, s := range c.Servers() {
		// Each forgets it for a minute, long enough for all to: gossip
		// from one that still knows it would bring it back.
		if _, err := s.doChecked("CLUSTER", "FORGET", id); err != nil && !strings.Contains(err.Error(), "Unknown node") {
			return err
		}
	}
	return c.waitSettled(ctx, "the cluster to settle without the removed "+master.Addr, nil)
}

// begin refuses to begin op, a change of the cluster, under a context
// that is already done (see notStarted) or while a node of the cluster
// is not running: the wait that ends the change would give up at once,
// and a failover or an election would go ahead in the servers without
// Masters and Replicas following it.
func (c *Cluster) begin(ctx context.Context, op string) error {
	if err := notStarted(ctx, op); err != nil {
		return err
	}
	if err := c.nodeDown(); err != nil {
		return fmt.Errorf("redistest: %s not started: %w", op, err)
	}
	return nil
}

// notStarted refuses to begin a change of the cluster under a context
// that is already done: the change would go ahead in the servers while
// the wait for it gave up at once, leaving Masters and Replicas out of
// step with the roles the nodes then take.
func notStarted(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redistest: %s not started: %w", op, err)
	}
	return nil
}

// roleOf returns the role INFO replication gives s: "master" or "slave".
func roleOf(s *Server) (string, error) {
	v, err := s.doChecked("INFO", "replication")
	if err != nil {
		return "", err
	}
	info, _ := v.(string)
	return infoField(info, "role"), nil
}

// hasRoles reports whether each server has the role given, and if not
// which does not.
func hasRoles(want map[*Server]string) (bool, string) {
	for s, role := range want {
		got, err := roleOf(s)
		if err != nil {
			return false, err.Error()
		}
		if got != role {
			return false, s.Addr + " has role " + got
		}
	}
	return true, ""
}

// masterWithReplicas finds master's place in Masters and its replicas, or
// says why it cannot be failed over: it is not a master, or it has no
// replica (for what).
func (c *Cluster) masterWithReplicas(master *Server, what string) (int, []*Server, error) {
	if master == nil {
		return 0, nil, errNilServer
	}
	i := slices.Index(c.Masters, master)
	if i < 0 {
		return 0, nil, fmt.Errorf("redistest: %s is not a master of the cluster", master.Addr)
	}
	replicas, err := c.ReplicasOf(master)
	if err != nil {
		return 0, nil, err
	}
	if len(replicas) == 0 {
		return 0, nil, fmt.Errorf("redistest: master %s has no replica %s", master.Addr, what)
	}
	return i, replicas, nil
}
