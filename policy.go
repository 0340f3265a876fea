package redpipe

import "strconv"

// The request_policy and response_policy tips of the server's command
// docs say how a cluster client runs a command that is not simply routed
// by the slot of its keys, and how it makes one reply of those of several
// nodes. The generated command table carries them (commandInfo's
// RequestPolicy and ResponsePolicy).

// requestPolicy is where a command goes in a cluster.
type requestPolicy uint8

const (
	// requestDefault: by the slot of its keys; a keyless command goes to
	// any master.
	requestDefault requestPolicy = iota
	// requestAllNodes: to every node, masters and replicas (CONFIG SET,
	// SCRIPT LOAD).
	requestAllNodes
	// requestAllShards: to every master (DBSIZE, FLUSHALL, KEYS).
	requestAllShards
	// requestMultiShard: split by the slots of its keys, a part to each
	// master concerned (MGET, DEL).
	requestMultiShard
	// requestSpecial: needs handling of its own (SCAN).
	requestSpecial
)

// responsePolicy is how the replies of the nodes a command went to make
// its reply.
type responsePolicy uint8

const (
	// responseDefault: for a keyless command, the replies concatenated
	// (KEYS); for a split one, the replies put back in the order of the
	// keys (MGET).
	responseDefault responsePolicy = iota
	// responseOneSucceeded: the first reply that is not an error, or an
	// error if all are (SCRIPT KILL).
	responseOneSucceeded
	// responseAllSucceeded: an error if any is, else one of the replies
	// (FLUSHALL, MSET).
	responseAllSucceeded
	// responseAggLogicalAnd, responseAggLogicalOr: the integer replies,
	// element by element for arrays, combined by AND or OR (SCRIPT
	// EXISTS).
	responseAggLogicalAnd
	responseAggLogicalOr
	// responseAggMin, responseAggMax, responseAggSum: the integer replies,
	// element by element for arrays, combined by their minimum, maximum or
	// sum (WAIT, DBSIZE, DEL).
	responseAggMin
	responseAggMax
	responseAggSum
	// responseSpecial: needs handling of its own (INFO).
	responseSpecial
)

var requestPolicyNames = [...]string{"default", "all_nodes", "all_shards", "multi_shard", "special"}

var responsePolicyNames = [...]string{"default", "one_succeeded", "all_succeeded", "agg_logical_and",
	"agg_logical_or", "agg_min", "agg_max", "agg_sum", "special"}

// String returns the policy as the server's tip spells it.
func (p requestPolicy) String() string {
	if int(p) < len(requestPolicyNames) {
		return requestPolicyNames[p]
	}
	return "requestPolicy(" + strconv.Itoa(int(p)) + ")"
}

// String returns the policy as the server's tip spells it.
func (p responsePolicy) String() string {
	if int(p) < len(responsePolicyNames) {
		return responsePolicyNames[p]
	}
	return "responsePolicy(" + strconv.Itoa(int(p)) + ")"
}
