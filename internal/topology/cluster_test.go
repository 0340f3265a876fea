package topology

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// fetch sends a command to addr over a connection of its own, after HELLO
// 3 if resp3 is set, and returns the reply as the client's reader decodes
// it.
func fetch(t *testing.T, addr string, resp3 bool, args ...string) resp.Value {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var buf []byte
	cmds := [][]string{args}
	if resp3 {
		cmds = [][]string{{"HELLO", "3"}, args}
	}
	for _, c := range cmds {
		buf = resp.AppendArrayLen(buf, len(c))
		for _, a := range c {
			buf = resp.AppendBulkString(buf, a)
		}
	}
	if _, err := conn.Write(buf); err != nil {
		t.Fatal(err)
	}
	r := resp.NewReader(conn, resp.Limits{})
	var v resp.Value
	for range cmds {
		if v, err = r.ReadValue(); err != nil {
			t.Fatalf("%q on %s: %v", args, addr, err)
		}
		if v.Kind == resp.Error {
			t.Fatalf("%q on %s: %s", args, addr, v.Str)
		}
	}
	// RESP3 must give the shapes RESP2 does not: shards as maps.
	if resp3 && args[1] == "SHARDS" && len(v.Elems) > 0 && v.Elems[0].Kind != resp.Map {
		t.Fatalf("CLUSTER SHARDS over RESP3 gave a %v shard, want a map", v.Elems[0].Kind)
	}
	return v
}

// layout is what a map should say: the master of each slot and the
// replicas of each master.
type layout struct {
	c        *redistest.Cluster
	owner    func(slot int) *redistest.Server
	replicas map[*redistest.Server][]*redistest.Server
}

func newLayout(t *testing.T, c *redistest.Cluster, owner func(int) *redistest.Server) *layout {
	l := &layout{c: c, owner: owner, replicas: map[*redistest.Server][]*redistest.Server{}}
	for _, m := range c.Masters {
		rs, err := c.ReplicasOf(m)
		if err != nil {
			t.Fatal(err)
		}
		l.replicas[m] = rs
	}
	return l
}

// thirds is the layout of a new cluster.
func thirds(c *redistest.Cluster) func(int) *redistest.Server {
	return func(slot int) *redistest.Server {
		i := 2
		for slot < i*16384/3 { // where redistest starts each third
			i--
		}
		return c.Masters[i]
	}
}

// check compares a map with the layout. withHealth is set for a map from
// CLUSTER SHARDS, which reports health; online lists the replicas that
// must be there and be online (all of them when nil); a map from CLUSTER
// SLOTS has only those.
func (l *layout) check(t *testing.T, m *Map, withHealth bool, online []*redistest.Server) {
	t.Helper()
	if m.Served() != 16384 {
		t.Errorf("%d slots served, want all", m.Served())
	}
	checkNode := func(n *Node, s *redistest.Server, master bool) {
		t.Helper()
		if n.ID != l.c.NodeID(s) || n.Addr != s.Addr || n.Port != s.Port || n.IP != "127.0.0.1" || n.Master != master {
			t.Errorf("node %+v, want %s (id %s, master %v)", *n, s.Addr, l.c.NodeID(s), master)
		}
		if withHealth && master && n.Health != HealthOnline {
			t.Errorf("master %s has health %q", s.Addr, n.Health)
		}
		if !withHealth && n.Health != HealthUnknown {
			t.Errorf("node %s read from CLUSTER SLOTS has health %q", s.Addr, n.Health)
		}
	}
	seen := map[*Shard]bool{}
	for slot := range 16384 {
		s := m.ShardOf(uint16(slot))
		if s == nil || seen[s] {
			continue
		}
		seen[s] = true
		owner := l.owner(slot)
		if s.Master == nil {
			t.Errorf("slot %d: shard without master", slot)
			continue
		}
		checkNode(s.Master, owner, true)
		var want, got []string
		for _, r := range l.replicas[owner] {
			if online == nil || slices.Contains(online, r) || withHealth {
				want = append(want, r.Addr)
			}
		}
		for _, n := range s.Replicas {
			got = append(got, n.Addr)
			i := slices.IndexFunc(l.c.Replicas, func(r *redistest.Server) bool { return r.Addr == n.Addr })
			if i < 0 {
				t.Errorf("slot %d: replica %s is not a replica of the cluster", slot, n.Addr)
				continue
			}
			r := l.c.Replicas[i]
			checkNode(n, r, false)
			mustBeOnline := online == nil || slices.Contains(online, r)
			if withHealth && mustBeOnline && n.Health != HealthOnline {
				t.Errorf("replica %s has health %q, want online", n.Addr, n.Health)
			}
			if withHealth && !mustBeOnline && n.Health != HealthOnline && n.Health != HealthLoading {
				t.Errorf("replica %s has health %q, want online or loading", n.Addr, n.Health)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("slot %d: replicas %v, want %v", slot, got, want)
		}
	}
	for slot := range 16384 {
		if n := m.Master(uint16(slot)); n == nil || n.Addr != l.owner(slot).Addr {
			t.Fatalf("slot %d: master %v, want %s", slot, n, l.owner(slot).Addr)
		}
	}
}

// sameMap checks that two maps agree slot by slot on master and replicas.
func sameMap(t *testing.T, a, b *Map) {
	t.Helper()
	for slot := range 16384 {
		sa, sb := a.ShardOf(uint16(slot)), b.ShardOf(uint16(slot))
		if describeShard(sa) != describeShard(sb) {
			t.Fatalf("slot %d: %s against %s", slot, describeShard(sa), describeShard(sb))
		}
	}
}

func describeShard(s *Shard) string {
	if s == nil {
		return "no shard"
	}
	d := "master " + s.Master.ID + "@" + s.Master.Addr + " replicas"
	var rs []string
	for _, r := range s.Replicas {
		rs = append(rs, r.ID+"@"+r.Addr)
	}
	slices.Sort(rs)
	return fmt.Sprint(d, rs)
}

// waitShards polls CLUSTER SHARDS on addr until cond holds of its map.
func waitShards(t *testing.T, addr, what string, cond func(*Map) bool) *Map {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := ParseShards(fetch(t, addr, false, "CLUSTER", "SHARDS"), addr)
		if err != nil {
			t.Fatal(err)
		}
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; CLUSTER SHARDS on %s:\n%s", what, addr, describeMap(m))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestParseRealReplies parses CLUSTER SHARDS and CLUSTER SLOTS from a real
// cluster with replicas, in RESP2 and RESP3, asked of masters and
// replicas, as the cluster goes through the cases a client meets: fresh
// replicas, shards with several slot ranges and without slots, hostnames
// and unknown endpoints, a failed node.
func TestParseRealReplies(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	askers := []*redistest.Server{c.Masters[0], c.Replicas[1]}

	// Fresh: the replicas have replicated nothing yet, or next to
	// nothing, so CLUSTER SHARDS may call them loading and CLUSTER SLOTS
	// may leave them out.
	l := newLayout(t, c, thirds(c))
	for _, s := range askers {
		for _, resp3 := range []bool{false, true} {
			m, err := ParseShards(fetch(t, s.Addr, resp3, "CLUSTER", "SHARDS"), s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			l.check(t, m, true, []*redistest.Server{})
		}
	}

	// Once a write has reached every replica, they are online and
	// CLUSTER SLOTS lists them.
	for i, m := range c.Masters {
		k := "{" + strconv.Itoa(i) + "}"
		for j := 0; ; j++ { // a key this master serves
			if v, _ := m.Do("SET", k, "x"); v == "OK" {
				break
			}
			k = "{" + strconv.Itoa(i) + ":" + strconv.Itoa(j) + "}"
		}
		m.MustDo(t, "WAIT", "1", "5000")
	}
	for _, s := range askers {
		waitShards(t, s.Addr, "every replica to be online", func(m *Map) bool {
			for _, n := range m.Nodes() {
				if n.Health != HealthOnline {
					return false
				}
			}
			return true
		})
	}
	for _, s := range askers {
		for _, resp3 := range []bool{false, true} {
			shards, err := ParseShards(fetch(t, s.Addr, resp3, "CLUSTER", "SHARDS"), s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			l.check(t, shards, true, nil)
			slots, err := ParseSlots(fetch(t, s.Addr, resp3, "CLUSTER", "SLOTS"), s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			l.check(t, slots, false, nil)
			sameMap(t, shards, slots)
		}
	}

	// A shard with two ranges, one with a single slot, and a master
	// without slots.
	if err := c.MoveSlots(ctx, c.Masters[0], c.Masters[1], 100); err != nil {
		t.Fatal(err)
	}
	added, err := c.AddMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := thirds(c)
	l = newLayout(t, c, func(slot int) *redistest.Server {
		if slot == 100 {
			return c.Masters[1]
		}
		return base(slot)
	})
	for _, resp3 := range []bool{false, true} {
		shards, err := ParseShards(fetch(t, c.Masters[2].Addr, resp3, "CLUSTER", "SHARDS"), c.Masters[2].Addr)
		if err != nil {
			t.Fatal(err)
		}
		l.check(t, shards, true, nil)
		m0, m1 := shards.ShardOf(0), shards.ShardOf(100)
		if !slices.Equal(m0.Slots, []Range{{0, 99}, {101, 5460}}) || !slices.Equal(m1.Slots, []Range{{100, 100}, {5461, 10921}}) {
			t.Errorf("ranges %v and %v", m0.Slots, m1.Slots)
		}
		var empty *Shard
		for _, s := range shards.Shards {
			if len(s.Slots) == 0 {
				empty = s
			}
		}
		if len(shards.Shards) != 4 || empty == nil || empty.Master == nil || empty.Master.Addr != added.Addr || empty.Master.ID != c.NodeID(added) || len(empty.Replicas) != 0 {
			t.Errorf("want a fourth shard without slots for the new master:\n%s", describeMap(shards))
		}
		slots, err := ParseSlots(fetch(t, c.Masters[2].Addr, resp3, "CLUSTER", "SLOTS"), c.Masters[2].Addr)
		if err != nil {
			t.Fatal(err)
		}
		l.check(t, slots, false, nil)
		sameMap(t, shards, slots)
		if len(slots.Shards) != 3 || slots.Node(c.NodeID(added)) != nil {
			t.Errorf("CLUSTER SLOTS lists the master without slots:\n%s", describeMap(slots))
		}
	}

	// Endpoints: a hostname announced by the first master, reported as
	// the endpoint by the second master ("?" for nodes without one), and
	// no endpoint at all from the third.
	m0, m1, m2 := c.Masters[0], c.Masters[1], c.Masters[2]
	m0.MustDo(t, "CONFIG", "SET", "cluster-announce-hostname", "m0.example")
	m1.MustDo(t, "CONFIG", "SET", "cluster-preferred-endpoint-type", "hostname")
	m2.MustDo(t, "CONFIG", "SET", "cluster-preferred-endpoint-type", "unknown-endpoint")
	for _, s := range []*redistest.Server{m1, m2} {
		waitShards(t, s.Addr, "the hostname of "+m0.Addr+" to reach "+s.Addr, func(m *Map) bool {
			return m.Master(0).Hostname == "m0.example"
		})
	}
	for _, resp3 := range []bool{false, true} {
		for _, cmd := range []string{"SHARDS", "SLOTS"} {
			parse := ParseShards
			if cmd == "SLOTS" {
				parse = ParseSlots
			}
			byHost, err := parse(fetch(t, m1.Addr, resp3, "CLUSTER", cmd), m1.Addr)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range byHost.Nodes() {
				want := Node{Endpoint: "?", IP: "127.0.0.1"}
				if n.ID == c.NodeID(m0) {
					want = Node{Endpoint: "m0.example", Addr: "m0.example:" + strconv.Itoa(m0.Port), IP: "127.0.0.1"}
					if cmd == "SHARDS" {
						// CLUSTER SLOTS reports a hostname only where it
						// is not the endpoint already.
						want.Hostname = "m0.example"
					}
				}
				if n.Endpoint != want.Endpoint || n.Addr != want.Addr || n.IP != want.IP || n.Hostname != want.Hostname {
					t.Errorf("CLUSTER %s from %s, resp3 %v: node %+v, want endpoint %q, addr %q, ip %q", cmd, m1.Addr, resp3, *n, want.Endpoint, want.Addr, want.IP)
				}
			}
			// An unknown endpoint is the host the command went to.
			origin := "localhost:" + strconv.Itoa(m2.Port)
			unknown, err := parse(fetch(t, m2.Addr, resp3, "CLUSTER", cmd), origin)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range unknown.Nodes() {
				if n.Endpoint != "" || n.Addr != "localhost:"+strconv.Itoa(n.Port) || n.IP != "127.0.0.1" {
					t.Errorf("CLUSTER %s from %s, resp3 %v: node %+v, want no endpoint and the origin's host", cmd, m2.Addr, resp3, *n)
				}
			}
			if h := unknown.Master(0).Hostname; h != "m0.example" {
				t.Errorf("CLUSTER %s from %s: hostname of %s is %q", cmd, m2.Addr, m0.Addr, h)
			}
		}
	}
	m0.MustDo(t, "CONFIG", "SET", "cluster-announce-hostname", "")
	m1.MustDo(t, "CONFIG", "SET", "cluster-preferred-endpoint-type", "ip")
	m2.MustDo(t, "CONFIG", "SET", "cluster-preferred-endpoint-type", "ip")

	// A replica that dies is reported failed by CLUSTER SHARDS (as
	// "fail" by Redis 7.0) and left out by CLUSTER SLOTS.
	dead := c.Replicas[2]
	if err := dead.Kill(); err != nil {
		t.Fatal(err)
	}
	id := c.NodeID(dead)
	waitShards(t, m0.Addr, "the killed replica to be reported failed", func(m *Map) bool {
		n := m.Node(id)
		return n != nil && n.Health == HealthFailed
	})
	for _, resp3 := range []bool{false, true} {
		slots, err := ParseSlots(fetch(t, m0.Addr, resp3, "CLUSTER", "SLOTS"), m0.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if slots.Node(id) != nil || len(slots.ShardOf(16383).Replicas) != 0 {
			t.Errorf("CLUSTER SLOTS lists the failed replica:\n%s", describeMap(slots))
		}
	}
}
