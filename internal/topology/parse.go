package topology

import (
	"errors"
	"strconv"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
)

// ParseShards reads the reply to CLUSTER SHARDS: an array of shards, each
// a map (RESP3) or a flat array of field names and values (RESP2) with the
// fields "slots", a flat list of inclusive start and end slots, and
// "nodes", a list of maps describing each node. origin is the address of
// the node that replied, used for nodes with an empty or null endpoint.
//
// A shard must have at most one master that has not failed: a failed one
// beside it is left out of the map (see eitherMaster). Its other nodes are
// its replicas. A slot claimed by two shards is an error.
func ParseShards(v resp.Value, origin string) (*Map, error) {
	if err := replyError(v, "CLUSTER SHARDS"); err != nil {
		return nil, err
	}
	elems, err := list(v)
	if err != nil {
		return nil, wrap(err, "CLUSTER SHARDS")
	}
	if len(elems) > maxShards {
		return nil, malformed("CLUSTER SHARDS: " + strconv.Itoa(len(elems)) + " shards")
	}
	m := &Map{Shards: make([]*Shard, 0, len(elems))}
	ids := map[string]bool{}
	for i, e := range elems {
		s, err := parseShard(e, origin)
		if err != nil {
			return nil, wrap(err, "CLUSTER SHARDS: shard "+strconv.Itoa(i))
		}
		for _, n := range append([]*Node{s.Master}, s.Replicas...) {
			if n == nil {
				continue
			}
			if ids[n.ID] {
				return nil, malformed("CLUSTER SHARDS: node " + n.ID + " is listed twice")
			}
			ids[n.ID] = true
		}
		m.Shards = append(m.Shards, s)
		for _, r := range s.Slots {
			if err := m.assign(i, r); err != nil {
				return nil, wrap(err, "CLUSTER SHARDS: shard "+strconv.Itoa(i))
			}
		}
	}
	return m, nil
}

func parseShard(v resp.Value, origin string) (*Shard, error) {
	kv, err := fields(v)
	if err != nil {
		return nil, err
	}
	s := &Shard{}
	var haveSlots, haveNodes bool
	for i := 0; i < len(kv); i += 2 {
		name, err := text(kv[i])
		if err != nil {
			return nil, wrap(err, "field name")
		}
		switch name {
		case "slots":
			haveSlots = true
			if s.Slots, err = parseRanges(kv[i+1]); err != nil {
				return nil, wrap(err, "slots")
			}
		case "nodes":
			haveNodes = true
			nodes, err := list(kv[i+1])
			if err != nil {
				return nil, wrap(err, "nodes")
			}
			for j, nv := range nodes {
				n, err := parseShardNode(nv, origin)
				if err != nil {
					return nil, wrap(err, "node "+strconv.Itoa(j))
				}
				if !n.Master {
					s.Replicas = append(s.Replicas, n)
					continue
				}
				if s.Master, err = eitherMaster(s.Master, n); err != nil {
					return nil, err
				}
			}
		}
	}
	if !haveSlots || !haveNodes {
		return nil, malformed(`want fields "slots" and "nodes"`)
	}
	return s, nil
}

// eitherMaster returns which of two nodes of one shard that both say they
// are its master is: the one that has not failed. Servers that group nodes
// by shard id (Redis 7.2 and later) keep listing a master that failed, as
// a master, beside the replica promoted in its place, until it comes back
// as a replica. Of two that failed, the one further on in replication was
// master last. Two that have not failed are an error: nothing tells which
// one serves the slots. a may be nil.
func eitherMaster(a, b *Node) (*Node, error) {
	switch {
	case a == nil:
		return b, nil
	case a.Health != HealthFailed && b.Health != HealthFailed:
		return nil, malformed("two masters, " + a.ID + " and " + b.ID)
	case a.Health != HealthFailed:
		return a, nil
	case b.Health != HealthFailed || b.ReplOffset > a.ReplOffset:
		return b, nil
	}
	return a, nil
}

// parseRanges reads a flat list of inclusive start and end slots.
func parseRanges(v resp.Value) ([]Range, error) {
	elems, err := list(v)
	if err != nil {
		return nil, err
	}
	if len(elems)%2 != 0 {
		return nil, malformed("an odd number of slot bounds")
	}
	ranges := make([]Range, 0, len(elems)/2)
	for i := 0; i < len(elems); i += 2 {
		r, err := slotRange(elems[i], elems[i+1])
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, r)
	}
	return ranges, nil
}

func slotRange(first, last resp.Value) (Range, error) {
	lo, err := integer(first)
	if err != nil {
		return Range{}, err
	}
	hi, err := integer(last)
	if err != nil {
		return Range{}, err
	}
	if lo < 0 || hi < lo || hi >= hashslot.Count {
		return Range{}, malformed("slot range " + strconv.FormatInt(lo, 10) + "-" + strconv.FormatInt(hi, 10))
	}
	return Range{uint16(lo), uint16(hi)}, nil
}

func parseShardNode(v resp.Value, origin string) (*Node, error) {
	kv, err := fields(v)
	if err != nil {
		return nil, err
	}
	n := &Node{}
	var role string
	for i := 0; i < len(kv); i += 2 {
		name, err := text(kv[i])
		if err != nil {
			return nil, wrap(err, "field name")
		}
		val := kv[i+1]
		switch name {
		case "id":
			n.ID, err = text(val)
		case "endpoint":
			n.Endpoint, err = optText(val)
		case "ip":
			n.IP, err = optText(val)
		case "hostname":
			n.Hostname, err = optText(val)
		case "port":
			n.Port, err = port(val)
		case "tls-port":
			n.TLSPort, err = port(val)
		case "role":
			role, err = text(val)
		case "replication-offset":
			n.ReplOffset, err = integer(val)
		case "health":
			var h string
			h, err = text(val)
			n.Health = Health(h)
			if h == "fail" { // Redis 7.0's spelling
				n.Health = HealthFailed
			}
		}
		if err != nil {
			return nil, wrap(err, name)
		}
	}
	if n.ID == "" {
		return nil, malformed("no id")
	}
	if n.Port == 0 && n.TLSPort == 0 {
		return nil, malformed("node " + n.ID + " has no port")
	}
	switch role {
	case "master", "primary":
		n.Master = true
	case "replica", "slave":
	default:
		return nil, malformed("node " + n.ID + " has role " + strconv.Quote(role))
	}
	n.resolve(origin)
	return n, nil
}

// ParseSlots reads the reply to CLUSTER SLOTS: an array of slot ranges,
// each an array of the first and last slot, the master, and its replicas,
// each node an array of endpoint, port, id and a map of more fields ("ip",
// "hostname"); older servers give fewer. origin is the address of the node
// that replied, used for nodes with an empty or null endpoint.
//
// Ranges of one master make one shard; its replicas are those listed with
// any of them. CLUSTER SLOTS gives no health, leaves out replicas that are
// failed or, in Redis 7.0, have not replicated anything yet, and leaves
// out masters without slots. When the ip field is absent the endpoint is
// taken as the IP, as that is what the server reports then.
func ParseSlots(v resp.Value, origin string) (*Map, error) {
	if err := replyError(v, "CLUSTER SLOTS"); err != nil {
		return nil, err
	}
	elems, err := list(v)
	if err != nil {
		return nil, wrap(err, "CLUSTER SLOTS")
	}
	m := &Map{}
	shards := map[string]int{}    // master key -> index in m.Shards
	nodes := map[string]*Node{}   // node key -> node, so a node listed twice is one Node
	replicaOf := map[string]int{} // node key -> index of the shard it replicates
	for i, e := range elems {
		ctx := "CLUSTER SLOTS: entry " + strconv.Itoa(i)
		parts, err := list(e)
		if err != nil {
			return nil, wrap(err, ctx)
		}
		if len(parts) < 3 {
			return nil, malformed(ctx + ": want start, end and a master")
		}
		r, err := slotRange(parts[0], parts[1])
		if err != nil {
			return nil, wrap(err, ctx)
		}
		var idx int
		for j, nv := range parts[2:] {
			n, err := parseSlotsNode(nv, origin)
			if err != nil {
				return nil, wrap(err, ctx+": node "+strconv.Itoa(j))
			}
			key := n.ID
			if key == "" { // servers before 4.0 give no ids
				key = n.Addr + "/" + n.Endpoint + "/" + strconv.Itoa(n.Port)
			}
			if old := nodes[key]; old != nil {
				n = old
			} else {
				nodes[key] = n
			}
			if j == 0 {
				n.Master = true
				var ok bool
				if idx, ok = shards[key]; !ok {
					if len(m.Shards) == maxShards {
						return nil, malformed("CLUSTER SLOTS: too many masters")
					}
					idx = len(m.Shards)
					shards[key] = idx
					m.Shards = append(m.Shards, &Shard{Master: n})
				}
				continue
			}
			if n.Master {
				return nil, malformed(ctx + ": node " + key + " is listed as a master and as a replica")
			}
			if prev, ok := replicaOf[key]; ok {
				if prev != idx {
					return nil, malformed(ctx + ": node " + key + " is listed as a replica of two masters")
				}
				continue
			}
			replicaOf[key] = idx
			m.Shards[idx].Replicas = append(m.Shards[idx].Replicas, n)
		}
		s := m.Shards[idx]
		s.Slots = append(s.Slots, r)
		if err := m.assign(idx, r); err != nil {
			return nil, wrap(err, ctx)
		}
	}
	for _, s := range m.Shards {
		for _, n := range s.Replicas {
			if n.Master {
				return nil, malformed("CLUSTER SLOTS: node " + n.ID + " is listed as a master and as a replica")
			}
		}
	}
	return m, nil
}

func parseSlotsNode(v resp.Value, origin string) (*Node, error) {
	parts, err := list(v)
	if err != nil {
		return nil, err
	}
	if len(parts) < 2 {
		return nil, malformed("want at least endpoint and port")
	}
	n := &Node{}
	if n.Endpoint, err = optText(parts[0]); err != nil {
		return nil, wrap(err, "endpoint")
	}
	if n.Port, err = port(parts[1]); err != nil {
		return nil, wrap(err, "port")
	}
	if len(parts) > 2 {
		if n.ID, err = text(parts[2]); err != nil {
			return nil, wrap(err, "id")
		}
	}
	haveIP := false
	if len(parts) > 3 {
		kv, err := fields(parts[3])
		if err != nil {
			return nil, wrap(err, "metadata")
		}
		for i := 0; i < len(kv); i += 2 {
			name, err := text(kv[i])
			if err != nil {
				return nil, wrap(err, "metadata field name")
			}
			switch name {
			case "ip":
				haveIP = true
				n.IP, err = optText(kv[i+1])
			case "hostname":
				n.Hostname, err = optText(kv[i+1])
			}
			if err != nil {
				return nil, wrap(err, name)
			}
		}
	}
	if !haveIP && n.Endpoint != "?" {
		n.IP = n.Endpoint
	}
	n.resolve(origin)
	return n, nil
}

// replyError turns an error reply into an error that says which command
// was refused, for example by a server older than 7.0 asked for CLUSTER
// SHARDS.
func replyError(v resp.Value, cmd string) error {
	if v.Kind == resp.Error || v.Kind == resp.BulkError {
		return errors.New("topology: " + cmd + " refused: " + v.Str)
	}
	return nil
}

// list returns the elements of an array or a set.
func list(v resp.Value) ([]resp.Value, error) {
	if v.Kind != resp.Array && v.Kind != resp.Set {
		return nil, malformed("want an array, got " + describe(v))
	}
	return v.Elems, nil
}

// fields returns the field names and values of a map (RESP3) or of a
// flat array of names and values (RESP2), interleaved.
func fields(v resp.Value) ([]resp.Value, error) {
	switch {
	case v.Kind == resp.Map:
		return v.Elems, nil
	case v.Kind == resp.Array && len(v.Elems)%2 == 0:
		return v.Elems, nil
	}
	return nil, malformed("want a map or an array of names and values, got " + describe(v))
}

func text(v resp.Value) (string, error) {
	switch v.Kind {
	case resp.BulkString, resp.SimpleString, resp.Verbatim:
		return v.Str, nil
	}
	return "", malformed("want a string, got " + describe(v))
}

// optText is text that may be null, which reads as "".
func optText(v resp.Value) (string, error) {
	if v.Kind == resp.Null {
		return "", nil
	}
	return text(v)
}

func integer(v resp.Value) (int64, error) {
	if v.Kind != resp.Integer {
		return 0, malformed("want an integer, got " + describe(v))
	}
	return v.Int, nil
}

func port(v resp.Value) (int, error) {
	p, err := integer(v)
	if err != nil {
		return 0, err
	}
	if p < 0 || p > 65535 {
		return 0, malformed("port " + strconv.FormatInt(p, 10))
	}
	return int(p), nil
}

// describe names a value's kind for an error message, with a short excerpt
// of a string.
func describe(v resp.Value) string {
	switch v.Kind {
	case resp.BulkString, resp.SimpleString, resp.Verbatim, resp.Error, resp.BulkError:
		s := v.Str
		if len(s) > 32 {
			s = s[:32] + "..."
		}
		return v.Kind.String() + " " + strconv.Quote(s)
	case resp.Integer:
		return "integer " + strconv.FormatInt(v.Int, 10)
	case resp.Array, resp.Map, resp.Set, resp.Push:
		return v.Kind.String() + " of " + strconv.Itoa(len(v.Elems)) + " elements"
	case 0:
		return "nothing"
	}
	return v.Kind.String()
}
