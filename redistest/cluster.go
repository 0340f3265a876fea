package redistest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	clusterMasters = 3
	clusterSlots   = 16384
	// clusterTimeout bounds each wait while the cluster forms. With a node
	// timeout of 2 s, gossip settles in a second or two on a quiet machine.
	clusterTimeout = 20 * time.Second
	clusterPoll    = 50 * time.Millisecond
)

// Cluster is a local Redis Cluster of real redis-server processes: three
// masters, each with the same number of replicas. Masters[i] serves the
// i-th third of the hash slots; Replicas[i*replicas+j] replicates
// Masters[i]. Every node has cluster-enabled yes, its own cluster-config-file
// in its Dir, cluster-node-timeout 2000 and a cluster bus port of its own
// (Server.BusPort).
type Cluster struct {
	Masters  []*Server
	Replicas []*Server
}

// StartCluster starts a cluster with replicas replicas per master, waits
// until every node reports cluster_state:ok and agrees on the membership,
// and stops every node in t.Cleanup. It fails the test if the cluster does
// not form.
func StartCluster(t testing.TB, replicas int) *Cluster {
	t.Helper()
	c, err := startCluster(replicas, func(s *Server) { stopAtCleanup(t, s) })
	if err != nil {
		t.Fatalf("%v", err)
	}
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
	c = &Cluster{}
	if started == nil {
		defer func() {
			if err != nil {
				c.Stop()
			}
		}()
	}
	start := func() (*Server, error) {
		s, err := startServer(nil, true)
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

// Stop stops every node. Clusters from StartCluster are stopped by the
// test's cleanup and need not call it.
func (c *Cluster) Stop() error {
	var errs []error
	for _, s := range c.Servers() {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
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

	ids := make([]string, len(c.Masters))
	for i, m := range c.Masters {
		v, err := m.doChecked("CLUSTER", "MYID")
		if err != nil {
			return err
		}
		id, ok := v.(string)
		if !ok || id == "" {
			return fmt.Errorf("redistest: CLUSTER MYID on %s: unexpected reply %#v", m.Addr, v)
		}
		ids[i] = id
	}

	for k, r := range c.Replicas {
		id := ids[k/perMaster]
		// REPLICATE fails with "Unknown node" until gossip has told the
		// replica about its master, so it is retried.
		err := waitFor("replica "+r.Addr+" to accept CLUSTER REPLICATE", func() (bool, string) {
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
	for _, r := range c.Replicas {
		err := waitFor("replica "+r.Addr+" to report master_link_status:up", func() (bool, string) {
			v, err := r.Do("INFO", "replication")
			if err != nil {
				return false, err.Error()
			}
			info, _ := v.(string)
			st := infoField(info, "master_link_status")
			return st == "up", "master_link_status:" + st
		})
		if err != nil {
			return err
		}
	}

	for _, s := range c.Servers() {
		err := waitFor("node "+s.Addr+" to see the whole cluster", func() (bool, string) {
			return c.settledOn(s)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// settledOn reports whether node s has cluster_state:ok and sees every node
// as a healthy member in its intended role, so a client test sees the same
// topology whichever node it asks. The string describes what is missing.
func (c *Cluster) settledOn(s *Server) (bool, string) {
	v, err := s.Do("CLUSTER", "INFO")
	if err != nil {
		return false, err.Error()
	}
	info, _ := v.(string)
	if st := infoField(info, "cluster_state"); st != "ok" {
		return false, "cluster_state:" + st
	}
	v, err = s.Do("CLUSTER", "NODES")
	if err != nil {
		return false, err.Error()
	}
	nodes, _ := v.(string)
	var total, replicas int
	for line := range strings.Lines(nodes) {
		fields := strings.Fields(line)
		if len(fields) < 8 {
			continue
		}
		total++
		flags := strings.Split(fields[2], ",")
		for _, bad := range []string{"handshake", "noaddr", "fail", "fail?"} {
			if slices.Contains(flags, bad) {
				return false, "node " + fields[1] + " has flags " + fields[2]
			}
		}
		if slices.Contains(flags, "slave") && fields[3] != "-" {
			replicas++
		}
	}
	if want := len(c.Masters) + len(c.Replicas); total != want || replicas != len(c.Replicas) {
		return false, fmt.Sprintf("sees %d nodes (%d replicas), want %d (%d replicas)", total, replicas, want, len(c.Replicas))
	}
	return true, ""
}

// waitFor polls cond until it holds or clusterTimeout passes; cond's string
// describes the last state seen, for the error.
func waitFor(what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(clusterTimeout)
	for {
		ok, state := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: timed out after %v waiting for %s; last state: %s", clusterTimeout, what, state)
		}
		time.Sleep(clusterPoll)
	}
}
