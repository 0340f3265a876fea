package redistest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	clusterMasters = 3
	clusterSlots   = 16384
	// maxReplicas keeps a cluster within the 1000 nodes the Redis Cluster
	// specification is designed for. Far more would exhaust the machine's
	// processes and ports before the cluster formed, and a count near
	// the largest int would overflow the count of nodes.
	maxReplicas = (1000 - clusterMasters) / clusterMasters
	// clusterTimeout bounds each wait while the cluster forms. With a node
	// timeout of 2 s, gossip settles in a second or two on a quiet machine.
	clusterTimeout = 20 * time.Second
	clusterPoll    = 50 * time.Millisecond
)

// Cluster is a local Redis Cluster of real redis-server processes: three
// masters, each with the same number of replicas. As started, Masters[i]
// serves the i-th third of the hash slots and Replicas[i*replicas+j]
// replicates Masters[i]. Every node has cluster-enabled yes, its own
// cluster-config-file in its Dir, cluster-node-timeout 2000 and a cluster
// bus port of its own (Server.BusPort).
//
// Tests change the cluster as production does: MoveSlots and
// BeginMigration reshard it, Failover and KillMaster promote a replica,
// AddMaster grows it, RemoveMaster shrinks it, Rejoin brings a killed
// master back. Each waits until the cluster has settled, and Masters and
// Replicas always hold the nodes in their current roles: Failover swaps a
// master and its replica, so the index rule above still holds after it;
// KillMaster, AddMaster and RemoveMaster change the counts, after which
// ReplicasOf says who replicates whom. Given a context that is already
// done, they change nothing. Nor do they while a node other than one
// KillMaster killed is not running: stopped (by Stop, Server.Stop or the
// end of the test that started the cluster), crashed, or killed with
// Server.Kill; they say which node. A wait, that of Migration.Finish
// included, gives up at once, naming the node, when one goes down
// meanwhile, as when the test ends while another goroutine reshards.
//
// A slot that no master serves by its own account while the other nodes
// still name one stays so for good: gossip spreads only claims. Redis
// before 7.0.13 could leave one so after a slot move met a failover. A
// wait that sees the same slots unclaimed for a few seconds repairs them
// as an operator would, with CLUSTER SETSLOT NODE on the master the
// others name, and tells Logf.
//
// The methods that change membership or roles (Failover, KillMaster,
// Rejoin, AddMaster, RemoveMaster) write Masters and Replicas: they must not run while
// another method of the Cluster runs or another goroutine reads those
// fields. Clients of the cluster may run throughout.
type Cluster struct {
	Masters  []*Server
	Replicas []*Server

	// Logf, if set, is told of each repair a wait makes (see above);
	// StartCluster sets it to the test's Logf.
	Logf func(format string, args ...any)

	// started hands each node the Cluster starts to the test's cleanup;
	// nil for NewCluster, whose caller calls Stop.
	started func(*Server)

	mu   sync.Mutex
	ids  map[*Server]string // node ids, kept once a node is gone too
	gone []*Server          // masters killed by KillMaster and not rejoined
	// repairs counts the repairs of unclaimed slots (see repair).
	repairs int
	stopped bool // Stop was called
}

// StartCluster starts a cluster with replicas replicas per master, from 0
// to 332 (1000 nodes in all), waits
// until every node reports cluster_state:ok and agrees on the membership,
// and stops every node in t.Cleanup. It fails the test if the cluster does
// not form.
func StartCluster(t testing.TB, replicas int) *Cluster {
	t.Helper()
	mustNotHaveEnded(t, "StartCluster")
	c, err := startCluster(replicas, func(s *Server) { stopAtCleanup(t, s) })
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := testEnded(t, "StartCluster"); err != nil {
		c.Stop()
		panic(err)
	}
	c.Logf = t.Logf
	return c
}

// NewCluster is StartCluster without a testing.TB; the caller must call
// Stop. On error no process is left running.
func NewCluster(replicas int) (*Cluster, error) {
	c, err := startCluster(replicas, nil)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// startCluster starts the nodes, handing each to started as soon as it
// runs so that a failure later on still stops it. Without started, a
// failure stops the nodes itself.
func startCluster(replicas int, started func(*Server)) (c *Cluster, err error) {
	if replicas < 0 {
		return nil, fmt.Errorf("redistest: negative number of replicas %d", replicas)
	}
	if replicas > maxReplicas {
		return nil, fmt.Errorf("redistest: %d replicas per master is more than the %d that keep a cluster within the 1000 nodes Redis Cluster is designed for", replicas, maxReplicas)
	}
	c = &Cluster{started: started, ids: map[*Server]string{}}
	if started == nil {
		defer func() {
			if err != nil {
				c.Stop()
			}
		}()
	}
	start := func() (*Server, error) {
		s, err := startMember()
		if err != nil {
			return nil, fmt.Errorf("redistest: starting cluster node: %w", err)
		}
		if started != nil {
			started(s)
		}
		return s, nil
	}
	for range clusterMasters {
		s, err := start()
		if err != nil {
			return c, err
		}
		c.Masters = append(c.Masters, s)
	}
	for range clusterMasters * replicas {
		s, err := start()
		if err != nil {
			return c, err
		}
		c.Replicas = append(c.Replicas, s)
	}
	if err := c.form(replicas); err != nil {
		return c, err
	}
	return c, nil
}

// Addrs returns the addresses of all nodes, masters first.
func (c *Cluster) Addrs() []string {
	var addrs []string
	for _, s := range c.Servers() {
		addrs = append(addrs, s.Addr)
	}
	return addrs
}

// Servers returns all nodes, masters first.
func (c *Cluster) Servers() []*Server {
	all := make([]*Server, 0, len(c.Masters)+len(c.Replicas))
	all = append(all, c.Masters...)
	return append(all, c.Replicas...)
}

// Stop stops every node, those killed by KillMaster included. Clusters
// from StartCluster are stopped by the test's cleanup and need not call it.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	c.stopped = true
	gone := slices.Clone(c.gone)
	c.mu.Unlock()
	var errs []error
	for _, s := range append(c.Servers(), gone...) {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
}

// checkRunning says whether the cluster, or a node of it, was stopped, by
// Stop or by the cleanup of the test that started it. No change may
// begin then: a node started for it would be stopped by nobody, and a
// wait for the stopped nodes to answer would only time out.
func (c *Cluster) checkRunning() error {
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return errors.New("redistest: the cluster was stopped by Stop")
	}
	for _, s := range c.Servers() {
		if err := s.haltedErr(); err != nil {
			return fmt.Errorf("redistest: a node of the cluster was stopped: %w", err)
		}
	}
	return nil
}

// NodeID returns the cluster node id of s, or "" if s is not a node of
// the cluster. It asks no server: ids are noted when nodes join.
func (c *Cluster) NodeID(s *Server) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ids[s]
}

// noteID asks s for its node id and keeps it.
func (c *Cluster) noteID(s *Server) (string, error) {
	v, err := s.doChecked("CLUSTER", "MYID")
	if err != nil {
		return "", err
	}
	id, ok := v.(string)
	if !ok || id == "" {
		return "", fmt.Errorf("redistest: CLUSTER MYID on %s: unexpected reply %#v", s.Addr, v)
	}
	c.mu.Lock()
	c.ids[s] = id
	c.mu.Unlock()
	return id, nil
}

// keepRoles sets the node at addr so that a master that gives away its
// last slot stays a master, with no slot, as AddMaster makes one, rather
// than becoming a replica of the node that took the slot (Redis 7.0's
// cluster-allow-replica-migration, on by default, which would also move
// replicas to a master left without any). So a node changes role only by
// Failover and KillMaster, and Masters and Replicas stay true; without
// it, the source of a MoveSlots of a master's last slots becomes a
// replica in the middle of the move, which then fails. A server too old
// to know the setting is left as it is.
func keepRoles(addr string) error {
	replies, err := roundTrip(addr, [][]string{{"CONFIG", "SET", "cluster-allow-replica-migration", "no"}})
	if err != nil {
		return fmt.Errorf("redistest: setting up cluster node %s: %w", addr, err)
	}
	if e, ok := replies[0].(ReplyError); ok && !strings.Contains(string(e), "Unknown option") {
		return fmt.Errorf("redistest: setting up cluster node %s: CONFIG SET cluster-allow-replica-migration: %v", addr, e)
	}
	return nil
}

// startMember starts a node for a Cluster (see keepRoles).
func startMember() (*Server, error) {
	s, err := startServer(nil, true)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.member = true
	s.mu.Unlock()
	if err := keepRoles(s.Addr); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// form builds the cluster the way redis-cli --cluster create does, with
// plain commands: slots and distinct config epochs on the masters, every
// node introduced to the first, then replicas attached to their masters.
func (c *Cluster) form(perMaster int) error {
	for i, m := range c.Masters {
		lo := i * clusterSlots / clusterMasters
		hi := (i+1)*clusterSlots/clusterMasters - 1
		// Distinct epochs spare the nodes the collision resolution that
		// equal epochs would otherwise need before the cluster settles.
		if _, err := m.doChecked("CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
			return err
		}
		if _, err := m.doChecked("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			return err
		}
	}

	// The bus port is passed explicitly: it is not the default port+10000.
	first := c.Masters[0]
	for _, s := range c.Servers()[1:] {
		if _, err := s.doChecked("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(first.Port), strconv.Itoa(first.BusPort)); err != nil {
			return err
		}
	}

	for _, s := range c.Servers() {
		if _, err := c.noteID(s); err != nil {
			return err
		}
	}

	for k, r := range c.Replicas {
		id := c.NodeID(c.Masters[k/perMaster])
		// REPLICATE fails with "Unknown node" until gossip has told the
		// replica about its master, so it is retried.
		err := c.wait(context.Background(), "replica "+r.Addr+" to accept CLUSTER REPLICATE", func() (bool, string) {
			v, err := r.Do("CLUSTER", "REPLICATE", id)
			if err != nil {
				return false, err.Error()
			}
			if e, ok := v.(ReplyError); ok {
				return false, e.Error()
			}
			return true, ""
		})
		if err != nil {
			return err
		}
	}
	return c.waitSettled(context.Background(), "the new cluster to settle", nil)
}

// ServeAllSlots gives every hash slot to s, a node started with
// --cluster-enabled yes that is alone in a cluster of its own, and waits
// until it reports cluster_state:ok: a one-node cluster, for a test that
// needs no more than that (a cluster over TLS, a node that lists no
// address of its own). A server that is no cluster node, or whose slots
// are taken already, refuses, and so does ServeAllSlots.
func (s *Server) ServeAllSlots(ctx context.Context) error {
	if err := notStarted(ctx, "ServeAllSlots"); err != nil {
		return err
	}
	if _, err := s.doChecked("CLUSTER", "ADDSLOTSRANGE", "0", strconv.Itoa(clusterSlots-1)); err != nil {
		return err
	}
	return waitUntil(ctx, s.Addr+" to serve every slot", s.exitedErr, func() (bool, string) {
		v, err := s.doChecked("CLUSTER", "INFO")
		if err != nil {
			return false, err.Error()
		}
		info, _ := v.(string)
		if state := infoField(info, "cluster_state"); state != "ok" {
			return false, "cluster_state:" + state
		}
		return true, ""
	})
}
