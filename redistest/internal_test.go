package redistest

import (
	"bufio"
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTailBufferKeepsTheTail(t *testing.T) {
	b := newTailBuffer(8)
	b.Write([]byte("abc"))
	m := b.mark()
	b.Write([]byte("defgh"))
	if got := b.String(); got != "abcdefgh" {
		t.Errorf("String() = %q", got)
	}
	b.Write([]byte("ij"))
	if got := b.String(); got != "cdefghij" {
		t.Errorf("String() after overflow = %q", got)
	}
	if got := b.since(m); got != "defghij" {
		t.Errorf("since(mark) = %q", got)
	}
	b.Write([]byte("0123456789"))
	if got := b.String(); got != "23456789" {
		t.Errorf("String() after a write larger than the buffer = %q", got)
	}
	if got := b.since(m); got != "23456789" {
		t.Errorf("since(mark) once mark is gone = %q", got)
	}
}

func TestFormatOutputShowsLastLines(t *testing.T) {
	var sb strings.Builder
	for i := range 30 {
		fmt.Fprintf(&sb, "line %d\n\n", i)
	}
	got := formatOutput(sb.String())
	if strings.Contains(got, "line 9\n") || !strings.Contains(got, "line 10\n") || !strings.HasSuffix(got, "line 29") {
		t.Errorf("formatOutput kept the wrong lines:\n%s", got)
	}
	if got := formatOutput(""); !strings.Contains(got, "printed nothing") {
		t.Errorf("formatOutput(\"\") = %q", got)
	}
}

func TestReadReplyRESP3(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{"+OK\r\n", "OK"},
		{"-ERR bad\r\n", ReplyError("ERR bad")},
		{":-42\r\n", int64(-42)},
		{"$-1\r\n", nil},
		{"$0\r\n\r\n", ""},
		{"*-1\r\n", nil},
		{"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", []any{"a", []any{int64(1)}}},
		{"_\r\n", nil},
		{"#t\r\n", true},
		{",1.5\r\n", 1.5},
		{"(123456789012345678901234567890\r\n", "123456789012345678901234567890"},
		{"=7\r\ntxt:abc\r\n", "abc"},
		{"!5\r\nERR x\r\n", ReplyError("ERR x")},
		{"%1\r\n+k\r\n:1\r\n", []any{"k", int64(1)}},
		{"~1\r\n+m\r\n", []any{"m"}},
		{"|1\r\n+ttl\r\n:3\r\n+value\r\n", "value"},
	}
	for _, c := range cases {
		v, err := readReply(bufio.NewReader(strings.NewReader(c.in)))
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(v, c.want) {
			t.Errorf("%q decoded to %#v (%T), want %#v (%T)", c.in, v, v, c.want, c.want)
		}
	}
	for _, in := range []string{"", "+OK\n", "$5\r\nab\r\n", "*x\r\n", "?\r\n", "$3\r\nabcXY"} {
		if v, err := readReply(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("%q decoded to %#v, want an error", in, v)
		}
	}
	if v, _ := readReply(bufio.NewReader(strings.NewReader("-NOAUTH x\r\n"))); v.(ReplyError).Prefix() != "NOAUTH" {
		t.Errorf("Prefix of %#v", v)
	}
}

func TestParseClusterNodes(t *testing.T) {
	text := "" +
		"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,m1.example myself,master - 0 0 1 connected 0-99 101-5460 [100->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f] [5461-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]\n" +
		"292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 100 5462-10922\n" +
		"67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30003@31003 master,fail - 1426238316232 1426238316232 3 disconnected\n" +
		"6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238316232 1 connected\n"
	v, err := parseClusterNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	if v.self != "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca" || len(v.nodes) != 4 {
		t.Fatalf("self %q, %d nodes", v.self, len(v.nodes))
	}
	me := v.nodes[v.self]
	if me.addr != "127.0.0.1:30001" || !reflect.DeepEqual(me.flags, []string{"master"}) || !reflect.DeepEqual(me.slots, []string{"0-99", "101-5460"}) {
		t.Errorf("own line: %+v", me)
	}
	if v.migrating[100] != "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f" || v.importing[5461] != "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1" || len(v.migrating)+len(v.importing) != 2 {
		t.Errorf("migrating %v, importing %v", v.migrating, v.importing)
	}
	for slot, want := range map[int]string{0: v.self, 100: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f", 5461: "", 5462: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f", 16383: ""} {
		if got := v.owner(slot); got != want {
			t.Errorf("owner(%d) = %q, want %q", slot, got, want)
		}
	}
	failed := v.nodes["67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"]
	replica := v.nodes["6ec23923021cf3ffec47632106199cb7f496ce01"]
	if failed.healthy() || !failed.isMaster() || !replica.healthy() || replica.isMaster() || replica.master != v.self {
		t.Errorf("failed %+v, replica %+v", failed, replica)
	}
	for _, bad := range []string{"", "abc 127.0.0.1:1@2 master - 0 0 1\n", "abc 127.0.0.1:1@2 master - 0 0 1 connected\n"} {
		if _, err := parseClusterNodes(bad); err == nil {
			t.Errorf("parseClusterNodes(%q) succeeded", bad)
		}
	}
}

func TestDescribeSlots(t *testing.T) {
	for _, tt := range []struct {
		slots []int
		want  string
	}{
		{[]int{7}, "slot 7"},
		{[]int{3, 1, 2, 9, 5, 6}, "slots 1-3,5-6,9"},
		{SlotRange(0, 16383), "slots 0-16383"},
	} {
		if got := describeSlots(tt.slots); got != tt.want {
			t.Errorf("describeSlots(%v) = %q, want %q", tt.slots, got, tt.want)
		}
	}
}

// repairCluster is a cluster of three masters a, b and c, each serving a
// third of the slots, and one replica r of a, for planRepair: views gives
// each node's view, in which slot 100 is served by the master owners names
// for it (a, b, c, or - for none). A master serves slot 100 by its own
// account when its own view names it.
func repairCluster(t *testing.T, owners map[string]string) (*Cluster, map[*Server]*clusterView, map[string]*Server) {
	t.Helper()
	names := []string{"a", "b", "c", "r"}
	c := &Cluster{ids: map[*Server]string{}}
	byName := map[string]*Server{}
	for i, n := range names {
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(7000+i)}
		byName[n] = s
		c.ids[s] = strings.Repeat(n, 40)
		if n == "r" {
			c.Replicas = append(c.Replicas, s)
		} else {
			c.Masters = append(c.Masters, s)
		}
	}
	views := map[*Server]*clusterView{}
	for _, self := range names {
		var b strings.Builder
		for i, n := range names {
			flags, master, slots := "master", "-", ""
			if n == "r" {
				flags, master = "slave", c.ids[byName["a"]]
			} else {
				lo, hi := i*clusterSlots/3, (i+1)*clusterSlots/3-1
				slots = strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
				if n == "a" {
					slots = "0-99 101-" + strconv.Itoa(hi)
				}
				if owners[self] == n {
					slots += " 100"
				}
			}
			if n == self {
				flags = "myself," + flags
			}
			fmt.Fprintf(&b, "%s 127.0.0.1:%d@%d %s %s 0 0 %d connected %s\n", c.ids[byName[n]], 7000+i, 17000+i, flags, master, i+1, slots)
		}
		v, err := parseClusterNodes(b.String())
		if err != nil {
			t.Fatal(err)
		}
		views[byName[self]] = v
	}
	return c, views, byName
}

func TestPlanRepair(t *testing.T) {
	cases := []struct {
		name   string
		owners map[string]string // node -> whom its view names for slot 100
		want   string            // the plan, by name
	}{
		{"agreed", map[string]string{"a": "a", "b": "a", "c": "a", "r": "a"}, ""},
		// c serves the slot by its own account: gossip spreads that.
		{"stale views", map[string]string{"a": "c", "b": "a", "c": "c", "r": "a"}, ""},
		// Nobody serves it by its own account: b, which most masters
		// name, is told to claim it.
		{"lost", map[string]string{"a": "b", "b": "a", "c": "b", "r": "b"}, "b"},
		{"lost, replica differs", map[string]string{"a": "c", "b": "c", "c": "-", "r": "a"}, "c"},
		// No owner has a majority of the masters' views.
		{"no majority", map[string]string{"a": "b", "b": "c", "c": "-", "r": "b"}, ""},
		// Two masters serve it by their own account: nothing is guessed.
		{"contested", map[string]string{"a": "a", "b": "b", "c": "a", "r": "a"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, views, byName := repairCluster(t, tc.owners)
			want := repairPlan{}
			if tc.want != "" {
				want[byName[tc.want]] = []int{100}
			}
			if got := c.planRepair(views); got.String() != want.String() {
				t.Errorf("planRepair = %q, want %q", got, want)
			}
		})
	}
	t.Run("NotWhileMigrating", func(t *testing.T) {
		c, views, byName := repairCluster(t, map[string]string{"a": "b", "b": "a", "c": "b", "r": "b"})
		views[byName["c"]].importing[7] = c.ids[byName["a"]]
		if got := c.planRepair(views); len(got) != 0 {
			t.Errorf("planRepair with a slot importing = %q, want none", got)
		}
	})
	t.Run("NotWhileANodeIsMissing", func(t *testing.T) {
		c, views, byName := repairCluster(t, map[string]string{"a": "b", "b": "a", "c": "b", "r": "b"})
		delete(views[byName["b"]].nodes, c.ids[byName["r"]])
		if got := c.planRepair(views); len(got) != 0 {
			t.Errorf("planRepair with a node unknown to a view = %q, want none", got)
		}
	})
}

// TestRepairMendsALostSlot gives waitSettled a slot that its master no
// longer serves by its own account while the other nodes still name it,
// a state the cluster never leaves by itself. waitSettled must repair it.
func TestRepairMendsALostSlot(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 1)
	const slot = clusterSlots - 1
	owner := c.Masters[2]
	ownerID := c.NodeID(owner)
	if _, err := owner.doChecked("CLUSTER", "DELSLOTS", strconv.Itoa(slot)); err != nil {
		t.Fatal(err)
	}
	// Without a repair the other masters keep naming the owner, which no
	// longer names itself.
	time.Sleep(2 * time.Second)
	views, err := c.fetchViews()
	if err != nil {
		t.Fatal(err)
	}
	if got := views[owner].owner(slot); got != "" {
		t.Fatalf("the owner sees slot %d served by %s after DELSLOTS", slot, c.describeNode(got))
	}
	if got := views[c.Masters[0]].owner(slot); got != ownerID {
		t.Fatalf("%s sees slot %d served by %s, want the owner that dropped it: the state this test builds is not stuck",
			c.Masters[0].Addr, slot, c.describeNode(got))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.waitSettled(ctx, "the lost slot to be repaired", func(views map[*Server]*clusterView) (bool, string) {
		for s, v := range views {
			if got := v.owner(slot); got != ownerID {
				return false, s.Addr + " sees slot " + strconv.Itoa(slot) + " served by " + c.describeNode(got)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	repairs := c.repairs
	c.mu.Unlock()
	if repairs != 1 {
		t.Fatalf("the cluster settled after %d repairs, want 1", repairs)
	}
}

func TestFirstDifferenceShowsBothLines(t *testing.T) {
	a, err := parseClusterNodes("aaaa 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-99\nbbbb 127.0.0.1:7001@17001 master - 0 0 2 connected 100-200\n")
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseClusterNodes("aaaa 127.0.0.1:7000@17000 master - 0 0 1 connected 0-100\nbbbb 127.0.0.1:7001@17001 myself,master - 0 0 3 connected 101-200\n")
	if err != nil {
		t.Fatal(err)
	}
	got := firstDifference(a, b)
	for _, want := range []string{"node aaaa", "connected 0-100", "connected 0-99"} {
		if !strings.Contains(got, want) {
			t.Errorf("firstDifference = %q, want it to contain %q", got, want)
		}
	}
}
