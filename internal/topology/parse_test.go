package topology

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/internal/resp"
)

// Builders of hand-made replies.

func bulk(s string) resp.Value { return resp.Value{Kind: resp.BulkString, Str: s} }
func num(i int64) resp.Value   { return resp.Value{Kind: resp.Integer, Int: i} }
func arr(vs ...resp.Value) resp.Value {
	return resp.Value{Kind: resp.Array, Elems: vs}
}

var null = resp.Value{Kind: resp.Null}

// obj builds a map (RESP3) or a flat array of names and values (RESP2)
// from alternating names and values; a value may be a string, an int or a
// resp.Value.
func obj(resp3 bool, kv ...any) resp.Value {
	var elems []resp.Value
	for i, x := range kv {
		switch x := x.(type) {
		case string:
			elems = append(elems, bulk(x))
		case int:
			elems = append(elems, num(int64(x)))
		case resp.Value:
			elems = append(elems, x)
		default:
			panic(fmt.Sprintf("obj: element %d has type %T", i, x))
		}
	}
	if resp3 {
		return resp.Value{Kind: resp.Map, Elems: elems}
	}
	return arr(elems...)
}

func slots(bounds ...int64) resp.Value {
	var vs []resp.Value
	for _, b := range bounds {
		vs = append(vs, num(b))
	}
	return arr(vs...)
}

// describeMap renders a map for comparison: shard by shard, its ranges and
// nodes with every field.
func describeMap(m *Map) string {
	var b strings.Builder
	for i, s := range m.Shards {
		fmt.Fprintf(&b, "shard %d slots %v\n", i, s.Slots)
		if s.Master != nil {
			fmt.Fprintf(&b, "  master %+v\n", *s.Master)
		}
		for _, r := range s.Replicas {
			fmt.Fprintf(&b, "  replica %+v\n", *r)
		}
	}
	return b.String()
}

func TestParseShardsEdgeCases(t *testing.T) {
	for _, resp3 := range []bool{false, true} {
		t.Run(fmt.Sprintf("resp3=%v", resp3), func(t *testing.T) {
			o := func(kv ...any) resp.Value { return obj(resp3, kv...) }
			reply := arr(
				// Two ranges, a hostname as endpoint, fields the parser
				// does not know.
				o("slots", slots(0, 99, 200, 16000), "nodes", arr(
					o("id", "m1", "port", 7001, "ip", "10.0.0.1", "endpoint", "m1.example", "hostname", "m1.example",
						"role", "master", "replication-offset", 42, "health", "online", "future-field", arr(num(1))),
					o("id", "r1", "port", 7004, "ip", "10.0.0.4", "endpoint", "?", "role", "replica",
						"replication-offset", 40, "health", "loading"),
					o("id", "r1b", "tls-port", 7104, "ip", "10.0.0.5", "endpoint", "10.0.0.5", "role", "replica",
						"replication-offset", 0, "health", "failed"),
				), "shard-extra", "x"),
				// No slots, an empty and a null endpoint, IPv6.
				o("slots", arr(), "nodes", arr(
					o("id", "m2", "port", 7002, "ip", "", "endpoint", "", "role", "master", "replication-offset", 0, "health", "online"),
					o("id", "r2", "port", 7005, "ip", "::1", "endpoint", null, "role", "replica", "health", "online"),
					o("id", "r3", "port", 7006, "ip", "::1", "endpoint", "::1", "role", "replica", "health", "fail"), // Redis 7.0's "failed"
				)),
				// A single slot, and a shard with no master.
				o("slots", slots(100, 100), "nodes", arr(
					o("id", "r4", "port", 7007, "ip", "10.0.0.7", "endpoint", "10.0.0.7", "role", "replica", "health", "online"),
				)),
			)
			m, err := ParseShards(reply, "seed.example:6379")
			if err != nil {
				t.Fatal(err)
			}
			want := `shard 0 slots [{0 99} {200 16000}]
  master {ID:m1 Addr:m1.example:7001 Endpoint:m1.example IP:10.0.0.1 Hostname:m1.example Port:7001 TLSPort:0 Master:true ReplOffset:42 Health:online}
  replica {ID:r1 Addr: Endpoint:? IP:10.0.0.4 Hostname: Port:7004 TLSPort:0 Master:false ReplOffset:40 Health:loading}
  replica {ID:r1b Addr:10.0.0.5:7104 Endpoint:10.0.0.5 IP:10.0.0.5 Hostname: Port:0 TLSPort:7104 Master:false ReplOffset:0 Health:failed}
shard 1 slots []
  master {ID:m2 Addr:seed.example:7002 Endpoint: IP: Hostname: Port:7002 TLSPort:0 Master:true ReplOffset:0 Health:online}
  replica {ID:r2 Addr:seed.example:7005 Endpoint: IP:::1 Hostname: Port:7005 TLSPort:0 Master:false ReplOffset:0 Health:online}
  replica {ID:r3 Addr:[::1]:7006 Endpoint:::1 IP:::1 Hostname: Port:7006 TLSPort:0 Master:false ReplOffset:0 Health:failed}
shard 2 slots [{100 100}]
  replica {ID:r4 Addr:10.0.0.7:7007 Endpoint:10.0.0.7 IP:10.0.0.7 Hostname: Port:7007 TLSPort:0 Master:false ReplOffset:0 Health:online}
`
			if got := describeMap(m); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
			for _, tt := range []struct {
				slot   uint16
				shard  int // -1: none
				master string
			}{
				{0, 0, "m1"}, {99, 0, "m1"}, {100, 2, ""}, {101, -1, ""}, {199, -1, ""},
				{200, 0, "m1"}, {16000, 0, "m1"}, {16001, -1, ""}, {16383, -1, ""}, {16384, -1, ""},
			} {
				s := m.ShardOf(tt.slot)
				if (tt.shard < 0) != (s == nil) || (s != nil && s != m.Shards[tt.shard]) {
					t.Errorf("ShardOf(%d) = %v, want shard %d", tt.slot, s, tt.shard)
				}
				if n := m.Master(tt.slot); (n == nil) != (tt.master == "") || (n != nil && n.ID != tt.master) {
					t.Errorf("Master(%d) = %v, want %q", tt.slot, n, tt.master)
				}
			}
			if got, want := m.Served(), 100+1+15801; got != want {
				t.Errorf("Served() = %d, want %d", got, want)
			}
			if len(m.Nodes()) != 7 || m.Node("r3") == nil || m.Node("r3").Port != 7006 || m.Node("nope") != nil {
				t.Errorf("Nodes() = %v, Node(r3) = %v", m.Nodes(), m.Node("r3"))
			}
		})
	}
}

// Redis 7.2 and later list a master that failed as a master of its shard,
// beside the replica promoted in its place, until it comes back as a
// replica: the shard's master is the one that has not failed, and the
// failed one is neither master nor replica. Of masters that all failed,
// the one further on in replication was master last.
func TestParseShardsFailedMasterBesideItsSuccessor(t *testing.T) {
	for _, resp3 := range []bool{false, true} {
		o := func(kv ...any) resp.Value { return obj(resp3, kv...) }
		old := o("id", "old", "port", 7001, "endpoint", "h", "role", "master", "replication-offset", 100, "health", "fail")
		older := o("id", "older", "port", 7004, "endpoint", "h", "role", "master", "replication-offset", 50, "health", "failed")
		promoted := o("id", "new", "port", 7002, "endpoint", "h", "role", "master", "replication-offset", 300, "health", "online")
		replica := o("id", "r", "port", 7003, "endpoint", "h", "role", "replica", "replication-offset", 300, "health", "online")
		for _, tc := range []struct {
			nodes    []resp.Value
			master   string
			replicas string
		}{
			{[]resp.Value{old, replica, promoted}, "new", "r"},
			{[]resp.Value{promoted, old, replica}, "new", "r"},
			{[]resp.Value{older, old, promoted, replica}, "new", "r"},
			{[]resp.Value{older, old, replica}, "old", "r"},
			{[]resp.Value{old, older, replica}, "old", "r"},
		} {
			m, err := ParseShards(arr(o("slots", slots(0, 16383), "nodes", arr(tc.nodes...))), "h:1")
			if err != nil {
				t.Errorf("resp3 %v, %d nodes: %v", resp3, len(tc.nodes), err)
				continue
			}
			s := m.Shards[0]
			var replicas []string
			for _, r := range s.Replicas {
				replicas = append(replicas, r.ID)
			}
			if s.Master == nil || s.Master.ID != tc.master || strings.Join(replicas, " ") != tc.replicas {
				t.Errorf("resp3 %v:\n%swant master %s, replicas %s", resp3, describeMap(m), tc.master, tc.replicas)
			}
			if m.Master(0) != s.Master {
				t.Errorf("resp3 %v: Master(0) = %v", resp3, m.Master(0))
			}
		}
	}
}

// A node that lists a TLS port beside its plain one is reached on the TLS
// port by a client over TLS; one that lists a single port, or cannot be
// reached, keeps its address.
func TestUseTLSPorts(t *testing.T) {
	reply := arr(obj(true, "slots", slots(0, 16383), "nodes", arr(
		obj(true, "id", "m", "port", 7001, "tls-port", 8001, "endpoint", "10.0.0.1", "role", "master"),
		obj(true, "id", "r1", "port", 7002, "endpoint", "", "role", "replica"),
		obj(true, "id", "r2", "tls-port", 8003, "endpoint", "r2.example", "role", "replica"),
		obj(true, "id", "r3", "port", 7004, "tls-port", 8004, "endpoint", "?", "role", "replica"),
		obj(true, "id", "r4", "port", 7005, "tls-port", 8005, "endpoint", "::1", "role", "replica"),
	)))
	m, err := ParseShards(reply, "seed.example:6379")
	if err != nil {
		t.Fatal(err)
	}
	addrs := func() string {
		var out []string
		for _, n := range m.Nodes() {
			out = append(out, n.ID+"="+n.Addr)
		}
		return strings.Join(out, " ")
	}
	if got, want := addrs(), "m=10.0.0.1:7001 r1=seed.example:7002 r2=r2.example:8003 r3= r4=[::1]:7005"; got != want {
		t.Errorf("parsed: %s, want %s", got, want)
	}
	m.UseTLSPorts()
	if got, want := addrs(), "m=10.0.0.1:8001 r1=seed.example:7002 r2=r2.example:8003 r3= r4=[::1]:8005"; got != want {
		t.Errorf("after UseTLSPorts: %s, want %s", got, want)
	}
}

func TestParseSlotsEdgeCases(t *testing.T) {
	for _, resp3 := range []bool{false, true} {
		t.Run(fmt.Sprintf("resp3=%v", resp3), func(t *testing.T) {
			o := func(kv ...any) resp.Value { return obj(resp3, kv...) }
			m1 := arr(bulk("10.0.0.1"), num(7001), bulk("m1"), o())
			r1 := arr(bulk("10.0.0.4"), num(7004), bulk("r1"), o())
			r1b := arr(bulk("?"), num(7104), bulk("r1b"), o("ip", "10.0.0.5"))
			reply := arr(
				arr(num(0), num(99), m1, r1),
				// The same master again, with another replica.
				arr(num(200), num(16000), m1, r1, r1b),
				// A hostname as endpoint, the IP and a future field in the
				// metadata.
				arr(num(100), num(100), arr(bulk("m2.example"), num(7002), bulk("m2"), o("ip", "10.0.0.2", "future", "x"))),
				// A null endpoint with a hostname that is not used, and an
				// old-style node: just address and port.
				arr(num(101), num(101), arr(null, num(7003), bulk("m3"), o("ip", "10.0.0.3", "hostname", "m3.example")), arr(bulk("10.0.0.8"), num(7008))),
			)
			m, err := ParseSlots(reply, "10.9.9.9:6379")
			if err != nil {
				t.Fatal(err)
			}
			want := `shard 0 slots [{0 99} {200 16000}]
  master {ID:m1 Addr:10.0.0.1:7001 Endpoint:10.0.0.1 IP:10.0.0.1 Hostname: Port:7001 TLSPort:0 Master:true ReplOffset:0 Health:}
  replica {ID:r1 Addr:10.0.0.4:7004 Endpoint:10.0.0.4 IP:10.0.0.4 Hostname: Port:7004 TLSPort:0 Master:false ReplOffset:0 Health:}
  replica {ID:r1b Addr: Endpoint:? IP:10.0.0.5 Hostname: Port:7104 TLSPort:0 Master:false ReplOffset:0 Health:}
shard 1 slots [{100 100}]
  master {ID:m2 Addr:m2.example:7002 Endpoint:m2.example IP:10.0.0.2 Hostname: Port:7002 TLSPort:0 Master:true ReplOffset:0 Health:}
shard 2 slots [{101 101}]
  master {ID:m3 Addr:10.9.9.9:7003 Endpoint: IP:10.0.0.3 Hostname:m3.example Port:7003 TLSPort:0 Master:true ReplOffset:0 Health:}
  replica {ID: Addr:10.0.0.8:7008 Endpoint:10.0.0.8 IP:10.0.0.8 Hostname: Port:7008 TLSPort:0 Master:false ReplOffset:0 Health:}
`
			if got := describeMap(m); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
			if m.Master(50) != m.Master(300) || m.Master(50).ID != "m1" || m.Master(150) != nil || m.Master(101).ID != "m3" {
				t.Errorf("Master(50), Master(300), Master(150), Master(101) = %v, %v, %v, %v", m.Master(50), m.Master(300), m.Master(150), m.Master(101))
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	node := func(kv ...any) resp.Value { return obj(false, kv...) }
	good := node("id", "a", "port", 1, "endpoint", "h", "role", "master", "health", "online")
	shard := func(sl resp.Value, nodes ...resp.Value) resp.Value {
		return obj(false, "slots", sl, "nodes", arr(nodes...))
	}
	slotsEntry := func(vs ...resp.Value) resp.Value { return arr(arr(vs...)) }
	n := func(id string, port int64) resp.Value { return arr(bulk("h"), num(port), bulk(id)) }
	tests := []struct {
		name  string
		slots bool // CLUSTER SLOTS rather than CLUSTER SHARDS
		v     resp.Value
		want  string
	}{
		{"not an array", false, bulk("x"), "want an array"},
		{"shard not a map", false, arr(num(1)), "shard 0: want a map"},
		{"odd shard fields", false, arr(arr(bulk("slots"))), "want a map"},
		{"no nodes", false, arr(obj(false, "slots", arr())), `want fields "slots" and "nodes"`},
		{"field name not a string", false, arr(arr(num(1), num(2))), "field name: want a string"},
		{"odd slot bounds", false, arr(shard(slots(1), good)), "odd number"},
		{"slot not an integer", false, arr(shard(arr(bulk("0"), num(1)), good)), "want an integer"},
		{"slot too high", false, arr(shard(slots(0, 16384), good)), "slot range 0-16384"},
		{"range backwards", false, arr(shard(slots(5, 4), good)), "slot range 5-4"},
		{"negative slot", false, arr(shard(slots(-1, 4), good)), "slot range -1-4"},
		{"slot claimed twice", false, arr(shard(slots(0, 10), good), shard(slots(10, 20), node("id", "b", "port", 2, "role", "master"))), "slot 10 is served by two shards"},
		{"two masters", false, arr(shard(slots(), good, node("id", "b", "port", 2, "role", "master"))), "two masters"},
		{"node twice", false, arr(shard(slots(), good), shard(slots(), node("id", "a", "port", 2, "role", "replica"))), "listed twice"},
		{"no id", false, arr(shard(slots(), node("port", 1, "role", "master"))), "no id"},
		{"no port", false, arr(shard(slots(), node("id", "a", "role", "master"))), "has no port"},
		{"port out of range", false, arr(shard(slots(), node("id", "a", "port", 70000, "role", "master"))), "port 70000"},
		{"port not an integer", false, arr(shard(slots(), node("id", "a", "port", "1", "role", "master"))), "port: want an integer"},
		{"unknown role", false, arr(shard(slots(), node("id", "a", "port", 1, "role", "boss"))), `role "boss"`},
		{"health not a string", false, arr(shard(slots(), node("id", "a", "port", 1, "role", "master", "health", 1))), "health: want a string"},
		{"nodes not a list", false, arr(obj(false, "slots", arr(), "nodes", bulk("x"))), "nodes: want an array"},

		{"slots: not an array", true, num(1), "want an array"},
		{"slots: short entry", true, slotsEntry(num(0), num(1)), "want start, end and a master"},
		{"slots: node too short", true, slotsEntry(num(0), num(1), arr(bulk("h"))), "want at least endpoint and port"},
		{"slots: bad range", true, slotsEntry(num(9), num(1), n("a", 1)), "slot range 9-1"},
		{"slots: id not a string", true, slotsEntry(num(0), num(1), arr(bulk("h"), num(1), num(3))), "id: want a string"},
		{"slots: bad metadata", true, slotsEntry(num(0), num(1), arr(bulk("h"), num(1), bulk("a"), num(3))), "metadata: want a map"},
		{"slots: overlap", true, arr(arr(num(0), num(5), n("a", 1)), arr(num(5), num(6), n("b", 2))), "slot 5 is served by two shards"},
		{"slots: master and replica", true, arr(arr(num(0), num(5), n("a", 1), n("b", 2)), arr(num(6), num(7), n("b", 2))), "listed as a master and as a replica"},
		{"slots: replica of two", true, arr(arr(num(0), num(5), n("a", 1), n("c", 3)), arr(num(6), num(7), n("b", 2), n("c", 3))), "replica of two masters"},
	}
	for _, tt := range tests {
		var err error
		if tt.slots {
			_, err = ParseSlots(tt.v, "h:1")
		} else {
			_, err = ParseShards(tt.v, "h:1")
		}
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want ErrMalformed saying %q", tt.name, err, tt.want)
		}
	}
}

func TestParseErrorReply(t *testing.T) {
	v := resp.Value{Kind: resp.Error, Str: "ERR unknown subcommand 'shards'. Try CLUSTER HELP."}
	_, err := ParseShards(v, "h:1")
	if err == nil || errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "CLUSTER SHARDS refused: ERR unknown subcommand") {
		t.Errorf("ParseShards of an error reply: %v", err)
	}
	if _, err := ParseSlots(v, "h:1"); err == nil || !strings.Contains(err.Error(), "CLUSTER SLOTS refused") {
		t.Errorf("ParseSlots of an error reply: %v", err)
	}
}

// FuzzParse: no input makes a parser panic, and a map that parses serves
// each slot from the shard whose ranges hold it.
func FuzzParse(f *testing.F) {
	for _, resp3 := range []bool{false, true} {
		o := func(kv ...any) resp.Value { return obj(resp3, kv...) }
		f.Add(resp.AppendValue(nil, arr(o("slots", slots(0, 5, 9, 9), "nodes", arr(
			o("id", "a", "port", 1, "endpoint", "", "role", "master", "health", "online"),
			o("id", "b", "tls-port", 2, "endpoint", "?", "role", "replica", "health", "loading"))))))
		f.Add(resp.AppendValue(nil, arr(arr(num(0), num(5), arr(bulk("h"), num(1), bulk("a"), o("ip", "i")), arr(null, num(2), bulk("b"))))))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := resp.NewReader(bytes.NewReader(data), resp.Limits{MaxDepth: 16, MaxArrayLen: 1 << 12, MaxBulkLen: 1 << 12}).ReadValue()
		if err != nil {
			return
		}
		for _, parse := range []func(resp.Value, string) (*Map, error){ParseShards, ParseSlots} {
			m, err := parse(v, "h:1")
			if err != nil {
				continue
			}
			served := 0
			for _, s := range m.Shards {
				for _, r := range s.Slots {
					for slot := int(r.First); slot <= int(r.Last); slot++ {
						served++
						if m.ShardOf(uint16(slot)) != s {
							t.Fatalf("slot %d is in the ranges of a shard that ShardOf does not return", slot)
						}
					}
				}
			}
			if served != m.Served() {
				t.Fatalf("ranges hold %d slots, Served says %d", served, m.Served())
			}
		}
	})
}
