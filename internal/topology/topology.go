// Package topology turns a cluster node's description of the cluster, the
// reply to CLUSTER SHARDS (Redis 7.0 and later) or to CLUSTER SLOTS (the
// fallback for older servers), into a slot map: for each of the 16384 hash
// slots, the shard serving it, with its master and replicas.
//
// Parsing is pure: it takes a decoded reply, in the RESP2 or the RESP3
// shape, and does no I/O. Fields it does not know are ignored, so that
// what later servers add does not break it; a reply whose shape is wrong
// is an error that matches ErrMalformed.
//
// # Endpoints
//
// A node's endpoint is where clients should connect, as chosen by the
// server's cluster-preferred-endpoint-type: its IP (the default), its
// announced hostname, or nothing. Node.Addr resolves it:
//
//   - an IP or a hostname is used as it is, with the node's port;
//   - an empty or null endpoint means the node does not know its address
//     (cluster-preferred-endpoint-type unknown-endpoint): clients use the
//     host they sent the command to, which the parsers take as origin;
//   - "?" means the node is unknown, for example because it should be
//     reached by a hostname it was not given. Its Addr is empty: clients
//     cannot reach it, and must not guess the host they asked.
package topology

import (
	"errors"
	"net"
	"strconv"

	"github.com/redpipe/redpipe/internal/hashslot"
)

// ErrMalformed is matched by errors.Is for every error about the shape of
// a reply.
var ErrMalformed = errors.New("malformed cluster topology")

// Health is a node's health as CLUSTER SHARDS reports it. Values other than
// the ones below are kept as the server wrote them.
type Health string

const (
	// HealthUnknown is the health of nodes read from CLUSTER SLOTS, which
	// does not report it.
	HealthUnknown Health = ""
	HealthOnline  Health = "online"
	// HealthFailed is the health of a node the cluster has marked as
	// failed. Redis 7.0 writes it "fail", later versions "failed", as the
	// documentation has it; both parse as HealthFailed.
	HealthFailed Health = "failed"
	// HealthLoading marks a node that cannot serve yet but may soon. Redis
	// 7.0 also reports it for a replica whose replication offset is 0,
	// which is every replica of a master that has had no write yet.
	HealthLoading Health = "loading"
)

// Node is one node of the cluster.
type Node struct {
	ID string
	// Addr is "host:port" to connect to, resolved from Endpoint (see the
	// package documentation); it is empty when the node cannot be reached
	// (endpoint "?").
	Addr string
	// Endpoint is the preferred endpoint as reported: an IP, a hostname,
	// "" (empty or null: the host the command was sent to) or "?".
	Endpoint string
	IP       string // its IP address, "" if not reported
	Hostname string // its announced hostname, "" if none
	Port     int    // its plain TCP port, 0 if not reported
	TLSPort  int    // its TLS port, 0 if not reported
	Master   bool
	// ReplOffset is the replication offset, from CLUSTER SHARDS only.
	ReplOffset int64
	Health     Health
}

// Range is an inclusive range of slots.
type Range struct{ First, Last uint16 }

// Shard is a master and its replicas, serving the same slots.
type Shard struct {
	// Slots are the ranges the shard serves, in reply order. A shard may
	// serve none, such as a master just added or one that lost its slots
	// to a failover.
	Slots []Range
	// Master is nil if the reply named no master for the shard; its
	// slots then have no master in the map.
	Master   *Node
	Replicas []*Node
}

// Serves tells whether s serves slot.
func (s *Shard) Serves(slot uint16) bool {
	for _, r := range s.Slots {
		if r.First <= slot && slot <= r.Last {
			return true
		}
	}
	return false
}

// Map is the cluster as one node described it.
type Map struct {
	Shards []*Shard // in reply order
	// owner holds, for each slot, 1 + the index in Shards of the shard
	// serving it, or 0 if none does.
	owner [hashslot.Count]uint16
}

// ShardOf returns the shard serving slot, or nil if no shard serves it
// (or slot is not below 16384).
func (m *Map) ShardOf(slot uint16) *Shard {
	if int(slot) >= len(m.owner) || m.owner[slot] == 0 {
		return nil
	}
	return m.Shards[m.owner[slot]-1]
}

// Master returns the master serving slot, or nil if there is none.
func (m *Map) Master(slot uint16) *Node {
	if s := m.ShardOf(slot); s != nil {
		return s.Master
	}
	return nil
}

// Served returns how many slots have a shard.
func (m *Map) Served() int {
	n := 0
	for _, o := range m.owner {
		if o != 0 {
			n++
		}
	}
	return n
}

// Nodes returns every node, shard by shard, each master before its
// replicas.
func (m *Map) Nodes() []*Node {
	var nodes []*Node
	for _, s := range m.Shards {
		if s.Master != nil {
			nodes = append(nodes, s.Master)
		}
		nodes = append(nodes, s.Replicas...)
	}
	return nodes
}

// Node returns the node with the given id, or nil.
func (m *Map) Node(id string) *Node {
	for _, n := range m.Nodes() {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// assign records that shard i (an index in m.Shards) serves r. A slot
// claimed twice is an error: one node's view has one owner per slot.
func (m *Map) assign(i int, r Range) error {
	for s := int(r.First); s <= int(r.Last); s++ {
		if m.owner[s] != 0 {
			return malformed("slot " + strconv.Itoa(s) + " is served by two shards")
		}
		m.owner[s] = uint16(i + 1)
	}
	return nil
}

// maxShards keeps shard numbers within the owner table's uint16; a real
// cluster has far fewer (there are only 16384 slots to share).
const maxShards = 1<<16 - 2

func malformed(msg string) error {
	return &malformedError{msg}
}

type malformedError struct{ msg string }

func (e *malformedError) Error() string        { return "topology: " + e.msg }
func (e *malformedError) Is(target error) bool { return target == ErrMalformed }

// wrap puts context in front of a malformed error.
func wrap(err error, context string) error {
	if e, ok := err.(*malformedError); ok {
		return &malformedError{context + ": " + e.msg}
	}
	return err
}

// UseTLSPorts makes the Addr of every node that reports a TLS port use
// it, for a client that connects over TLS. CLUSTER SHARDS lists a node's
// plain port and its TLS port alike, and Addr takes the plain one, where
// a TLS handshake cannot succeed. Nodes read from CLUSTER SLOTS, which
// gives one port (the one for the asking connection's kind), keep theirs.
func (m *Map) UseTLSPorts() {
	for _, n := range m.Nodes() {
		if n.TLSPort == 0 || n.Addr == "" {
			continue
		}
		if host, _, err := net.SplitHostPort(n.Addr); err == nil {
			n.Addr = net.JoinHostPort(host, strconv.Itoa(n.TLSPort))
		}
	}
}

// resolve fills in n.Addr from its endpoint and ports. origin is the host,
// or host:port, the reply came from.
func (n *Node) resolve(origin string) {
	port := n.Port
	if port == 0 {
		port = n.TLSPort
	}
	host := n.Endpoint
	switch host {
	case "?":
		return
	case "":
		if h, _, err := net.SplitHostPort(origin); err == nil {
			host = h
		} else {
			host = origin
		}
		if host == "" {
			return
		}
	}
	n.Addr = net.JoinHostPort(host, strconv.Itoa(port))
}
