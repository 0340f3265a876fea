package redpipe

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"net"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// typedCase is one call of a typed method of Client. The method is also
// queued on a pipeline, whose encoded words are sent with Do to get the
// raw reply the typed result is checked against.
type typedCase struct {
	method string
	args   []any
	pre    [][]any // commands run after the common data is set up
	// loose: the reply changes from one call to the next (a clock, a
	// random pick, a counter of the server): only its shape is checked.
	loose bool
	// claim is what the method's doc must say of this call; misuse: the
	// call is one the doc warns of, whose result is not checked further.
	claim  string
	misuse bool
	named  bool // run on a client that has a name
}

// Methods whose reply is whatever a script returns, nil included.
var typedAnyReply = map[string]bool{
	"Eval": true, "EvalSha": true, "EvalRO": true, "EvalShaRO": true, "FCall": true, "FCallRO": true,
}

// Typed methods the audit does not call, and why.
var typedSkipped = map[string]string{
	"Wait": "the client refuses WAIT on a call of its own, which has no writes to wait for",
}

// Methods whose every call here is refused by the server (no ACL file, no
// module, nothing to kill): the audit checks only that the server's error
// comes back as it is.
var typedErrorOnly = map[string]bool{
	"ACLLoad": true, "ACLSave": true, "Failover": true, "FunctionKill": true,
	"ScriptKill": true, "ModuleLoad": true, "ModuleLoadEx": true,
	"ModuleUnload": true, "Shutdown": true, "LatencyGraph": true,
	"ConfigRewrite": true,
}

const (
	typedScript  = "return {1, 'two', KEYS[1]}"
	typedLibrary = "#!lua name=tlib\n" +
		"redis.register_function('tf', function(keys, args) return {keys[1], 7} end)\n" +
		"redis.register_function{function_name='tro', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}"
	typedLibrary2 = "#!lua name=tlib2\nredis.register_function('tf2', function(keys, args) return 1 end)"
)

// typedSeed is the data every call starts from.
var typedSeed = [][]any{
	{"FLUSHALL"},
	{"FUNCTION", "FLUSH"},
	{"FUNCTION", "LOAD", typedLibrary},
	{"SCRIPT", "LOAD", typedScript},
	{"CONFIG", "SET", "maxmemory-policy", "noeviction"},
	{"ACL", "DELUSER", "bob", "carol"},
	{"ACL", "SETUSER", "bob", "on", "nopass", "~app:*", "+get"},
	{"SET", "s", "hello"},
	{"SET", "s2", "hallo"},
	{"SET", "n", "10"},
	{"SET", "f", "1.5"},
	{"SET", "bits", "\xff\xf0\x00"},
	{"SET", "ttlk", "v", "EX", 1000},
	{"RPUSH", "l", "a", "b", "c", "a"},
	{"RPUSH", "l2", "x"},
	{"SADD", "set", "a", "b", "c"},
	{"SADD", "set2", "b", "c", "d"},
	{"SADD", "one", "x"},
	{"HSET", "h", "f1", "v1", "f2", "2", "f3", "3.5"},
	{"HSET", "h1", "only", "v"},
	{"ZADD", "z", 1, "a", 2, "b", 3, "c", 1.5, "d"},
	{"ZADD", "z2", 2, "b", 5, "e"},
	{"ZADD", "z1", 1, "solo"},
	{"ZADD", "zl", 0, "a", 0, "b", 0, "c"},
	{"GEOADD", "g", 13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania"},
	{"PFADD", "hll", "a", "b", "c"},
	{"PFADD", "hll2", "c", "d"},
	{"XADD", "x", "1-1", "a", "1"},
	{"XADD", "x", "1-2", "b", "2"},
	{"XADD", "x", "1-3", "c", "3"},
	{"XGROUP", "CREATE", "x", "grp", "0"},
	{"XGROUP", "CREATE", "x", "grp2", "$"},
	{"XREADGROUP", "GROUP", "grp", "alice", "COUNT", 2, "STREAMS", "x", ">"},
}

func typedCases(sha, sDump, fDump, migrateHost string, migratePort int) []typedCase {
	a := func(args ...any) []any { return args }
	c := func(m string, args ...any) typedCase { return typedCase{method: m, args: args} }
	loose := func(m string, args ...any) typedCase { return typedCase{method: m, args: args, loose: true} }
	with := func(pre [][]any, m string, args ...any) typedCase { return typedCase{method: m, args: args, pre: pre} }
	lfu := [][]any{{"CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"}}
	return []typedCase{
		// ACL
		c("ACLCat"), c("ACLCat", "geo"),
		c("ACLDelUser", "bob", "nobody"),
		c("ACLDryRun", "bob", "get", "app:1"), c("ACLDryRun", "bob", "set", "app:1", "v"),
		loose("ACLGenPass"), loose("ACLGenPass", 32),
		c("ACLGetUser", "bob"), c("ACLGetUser", "nobody"),
		c("ACLList"), c("ACLLoad"),
		with([][]any{{"RAW", "AUTH", "bob", "wrong"}}, "ACLLog"), c("ACLLog", "RESET"),
		c("ACLSave"), c("ACLSetUser", "carol", "on", "+ping"), c("ACLUsers"), c("ACLWhoAmI"),
		// strings and bitmaps
		c("Append", "s", "x"),
		c("BgRewriteAOF"), c("BgSave"), c("BgSave", "SCHEDULE"),
		c("BitCount", "bits"), c("BitCount", "bits", 0, 0),
		c("BitField", "bits", "INCRBY", "u8", 0, 1, "GET", "u4", 8),
		c("BitField", "bits", "OVERFLOW", "FAIL", "INCRBY", "u8", 0, 1),
		c("BitFieldRO", "bits", "GET", "u8", 0, "GET", "i4", 8),
		c("BitOp", "AND", "dst", "bits", "s"),
		c("BitPos", "bits", 0), c("BitPos", "bits", 1, 2),
		c("Decr", "n"), c("DecrBy", "n", 3),
		c("Get", "s"), c("Get", "none"),
		c("GetBit", "bits", 3),
		c("GetDel", "s"), c("GetDel", "none"),
		c("GetEx", "s", "PERSIST"), c("GetEx", "none", "EX", 10),
		c("GetRange", "s", 0, 2), c("GetRange", "none", 0, 2),
		c("GetSet", "s", "new"), c("GetSet", "none", "v"),
		c("Incr", "n"), c("IncrBy", "n", 5), c("IncrByFloat", "f", 0.25),
		c("LCS", "s", "s2"), c("LCS", "s", "s2", "LEN"), c("LCS", "s", "s2", "IDX", "WITHMATCHLEN"),
		c("MGet", "s", "none", "l"),
		c("MSet", "a", "1", "b", "2"), c("MSetNX", "a", "1", "b", "2"), c("MSetNX", "a", "1", "s", "x"),
		c("PSetEx", "k", 100000, "v"),
		c("Set", "k", "v"), c("Set", "s", "v", "NX"), c("Set", "s", "v", "XX"),
		c("SetGet", "s", "v"), c("SetGet", "none", "v"), c("SetGet", "s", "v", "NX"),
		c("SetBit", "bits", 1, 0), c("SetEx", "k", 100, "v"),
		c("SetNX", "k", "v"), c("SetNX", "s", "v"),
		c("SetRange", "s", 1, "XY"), c("StrLen", "s"), c("StrLen", "none"),
		// generic
		c("Copy", "s", "s-copy"), c("Copy", "none", "x2"),
		c("DBSize"),
		c("Del", "s", "n", "none"),
		c("Dump", "s"), c("Dump", "none"),
		c("Exists", "s", "none", "n"),
		c("Expire", "s", 100), c("Expire", "none", 100), c("Expire", "s", 100, "XX"),
		c("ExpireAt", "s", 4000000000),
		c("ExpireTime", "s"), c("ExpireTime", "none"), with([][]any{{"EXPIREAT", "s", 4000000000}}, "ExpireTime", "s"),
		c("Keys", "s*"), c("Keys", "q*"),
		c("Migrate", migrateHost, migratePort, "s", 0, 1000), c("Migrate", migrateHost, migratePort, "none", 0, 1000),
		c("Migrate", migrateHost, migratePort, "", 0, 1000, "REPLACE", "KEYS", "s", "n"),
		c("Move", "s", 1), c("Move", "none", 1),
		c("ObjectEncoding", "s"), c("ObjectEncoding", "none"),
		with(lfu, "ObjectFreq", "s"), with(lfu, "ObjectFreq", "none"),
		loose("ObjectIdleTime", "s"), c("ObjectIdleTime", "none"),
		c("ObjectRefCount", "s"), c("ObjectRefCount", "none"),
		c("Persist", "ttlk"), c("Persist", "s"),
		c("PExpire", "s", 100000), c("PExpireAt", "s", 4000000000000),
		c("PExpireTime", "s"), with([][]any{{"EXPIREAT", "s", 4000000000}}, "PExpireTime", "s"),
		c("PTTL", "s"), c("PTTL", "none"), loose("PTTL", "ttlk"),
		loose("RandomKey"), with([][]any{{"FLUSHALL"}}, "RandomKey"),
		c("Rename", "s", "s9"), c("RenameNX", "s", "n"), c("RenameNX", "s", "s9"),
		c("Restore", "rk", 0, sDump), c("Restore", "s", 0, sDump, "REPLACE"),
		c("Scan", 0, "MATCH", "s*", "COUNT", 1000), c("Scan", 0, "TYPE", "zset", "COUNT", 1000),
		c("Sort", "l", "ALPHA"), c("Sort", "l", "ALPHA", "STORE", "ls"), c("Sort", "none"),
		c("SortRO", "l", "ALPHA"), c("SortRO", "l", "BY", "nosort", "GET", "nokey*"), c("SortRO", "none"),
		c("Touch", "s", "none"),
		c("TTL", "s"), c("TTL", "none"), loose("TTL", "ttlk"),
		c("Type", "s"), c("Type", "z"), c("Type", "none"),
		c("Unlink", "s", "none"),
		// hashes
		c("HDel", "h", "f1", "nof"), c("HExists", "h", "f1"), c("HExists", "h", "nof"),
		c("HGet", "h", "f1"), c("HGet", "h", "nof"), c("HGet", "none", "f1"),
		c("HGetAll", "h"), c("HGetAll", "none"),
		c("HIncrBy", "h", "f2", 5), c("HIncrByFloat", "h", "f3", 0.25),
		c("HKeys", "h"), c("HKeys", "none"), c("HLen", "h"),
		c("HMGet", "h", "f1", "nof"), c("HMSet", "h", "a", "1"),
		c("HRandField", "h1", 1), c("HRandField", "h1", -2), c("HRandField", "none", 2),
		c("HRandFieldWithValues", "h1", 1), c("HRandFieldWithValues", "none", 1),
		c("HScan", "h", 0), c("HScan", "h", 0, "MATCH", "f1"),
		c("HSet", "h", "new", "x"), c("HSetNX", "h", "f1", "x"), c("HSetNX", "h", "g", "x"),
		c("HStrLen", "h", "f1"), c("HVals", "h"),
		// lists
		c("BLMove", "l", "l2", "LEFT", "RIGHT", 0.01), c("BLMove", "none", "l2", "LEFT", "RIGHT", 0.01),
		c("BLMPop", 0.01, 2, "none", "l", "LEFT", "COUNT", 2), c("BLMPop", 0.01, 1, "none", "LEFT"),
		c("BLPop", 0.01, "none", "l"), c("BLPop", 0.01, "none"),
		c("BRPop", 0.01, "none", "l"), c("BRPop", 0.01, "none"),
		c("BRPopLPush", "l", "l2", 0.01), c("BRPopLPush", "none", "l2", 0.01),
		c("LIndex", "l", 0), c("LIndex", "l", 99),
		c("LInsert", "l", "BEFORE", "b", "z"), c("LInsert", "l", "BEFORE", "q", "z"),
		c("LLen", "l"),
		c("LMove", "l", "l2", "LEFT", "LEFT"), c("LMove", "none", "l2", "LEFT", "LEFT"),
		c("LMPop", 2, "none", "l", "RIGHT"), c("LMPop", 1, "none", "LEFT"),
		c("LPop", "l"), c("LPop", "none"),
		c("LPopCount", "l", 2), c("LPopCount", "none", 2),
		c("LPos", "l", "a"), c("LPos", "l", "a", "COUNT", 0), c("LPos", "l", "q"), c("LPos", "l", "q", "COUNT", 0),
		c("LPush", "l", "y"), c("LPushX", "none", "a"),
		c("LRange", "l", 0, -1), c("LRange", "none", 0, -1),
		c("LRem", "l", 0, "a"), c("LSet", "l", 0, "q"), c("LTrim", "l", 0, 1),
		c("RPop", "l"), c("RPop", "none"),
		c("RPopCount", "l", 2), c("RPopCount", "none", 2),
		c("RPopLPush", "l", "l2"), c("RPopLPush", "none", "l2"),
		c("RPush", "l", "y"), c("RPushX", "none", "a"),
		// sets
		c("SAdd", "set", "z", "a"), c("SCard", "set"),
		c("SDiff", "set", "set2"), c("SDiffStore", "sd", "set", "set2"),
		c("SInter", "set", "set2"), c("SInter", "set", "none"),
		c("SInterCard", 2, "set", "set2"), c("SInterStore", "si", "set", "set2"),
		c("SIsMember", "set", "a"), c("SMembers", "set"), c("SMembers", "none"),
		c("SMIsMember", "set", "a", "q"),
		c("SMove", "set", "set2", "a"), c("SMove", "set", "set2", "q"),
		c("SPop", "one"), c("SPop", "none"), c("SPopN", "one", 2), c("SPopN", "none", 2),
		c("SRandMember", "one"), c("SRandMember", "none"), c("SRandMemberN", "one", 3), c("SRandMemberN", "none", 3),
		c("SRem", "set", "a", "q"),
		c("SScan", "set", 0), c("SUnion", "set", "set2"), c("SUnionStore", "su", "set", "set2"),
		// sorted sets
		c("BZMPop", 0.01, 1, "z", "MIN", "COUNT", 2), c("BZMPop", 0.01, 1, "none", "MAX"),
		c("BZPopMax", 0.01, "z"), c("BZPopMax", 0.01, "none"),
		c("BZPopMin", 0.01, "z"), c("BZPopMin", 0.01, "none"),
		c("ZAdd", "z", 4, "e"), c("ZAdd", "z", "CH", 9, "a"),
		c("ZAddIncr", "z", 1, "a"), c("ZAddIncr", "z", "NX", 1, "a"),
		c("ZCard", "z"), c("ZCount", "z", 1, 2),
		c("ZDiff", 2, "z", "z2"), c("ZDiff", 2, "z", "z2", "WITHSCORES"),
		c("ZDiffStore", "zd", 2, "z", "z2"),
		c("ZIncrBy", "z", 0.5, "a"),
		c("ZInter", 2, "z", "z2"), c("ZInter", 2, "z", "z2", "WITHSCORES"),
		c("ZInterCard", 2, "z", "z2"), c("ZInterStore", "zi", 2, "z", "z2"),
		c("ZLexCount", "zl", "-", "+"),
		c("ZMPop", 1, "z", "MIN", "COUNT", 2), c("ZMPop", 1, "none", "MIN"),
		c("ZMScore", "z", "a", "q"),
		c("ZPopMax", "z"), c("ZPopMax", "z", 2), c("ZPopMax", "none"),
		c("ZPopMin", "z"), c("ZPopMin", "z", 2),
		c("ZRandMember", "z1", 1), c("ZRandMember", "z1", -2),
		c("ZRandMemberWithScores", "z1", 1), c("ZRandMemberWithScores", "none", 1),
		c("ZRange", "z", 0, -1), c("ZRange", "z", 0, -1, "WITHSCORES"), c("ZRange", "z", "(1", "+inf", "BYSCORE", "LIMIT", 0, 2),
		c("ZRangeWithScores", "z", 0, -1), c("ZRangeWithScores", "z", "-inf", "+inf", "BYSCORE"),
		c("ZRangeByLex", "zl", "-", "+"),
		c("ZRangeByScore", "z", "-inf", "+inf"), c("ZRangeByScore", "z", "-inf", "+inf", "WITHSCORES"),
		c("ZRangeByScoreWithScores", "z", "-inf", "+inf"),
		c("ZRangeStore", "zr", "z", 0, 1),
		c("ZRank", "z", "b"), c("ZRank", "z", "q"),
		c("ZRem", "z", "a", "q"),
		c("ZRemRangeByLex", "zl", "[a", "[b"), c("ZRemRangeByRank", "z", 0, 0), c("ZRemRangeByScore", "z", 1, 2),
		c("ZRevRange", "z", 0, -1), c("ZRevRange", "z", 0, -1, "WITHSCORES"),
		c("ZRevRangeWithScores", "z", 0, -1),
		c("ZRevRangeByLex", "zl", "+", "-"),
		c("ZRevRangeByScore", "z", "+inf", "-inf"), c("ZRevRangeByScoreWithScores", "z", "+inf", "-inf"),
		c("ZRevRank", "z", "b"), c("ZRevRank", "z", "q"),
		c("ZScan", "z", 0), c("ZScore", "z", "d"), c("ZScore", "z", "q"),
		c("ZUnion", 2, "z", "z2", "WITHSCORES"), c("ZUnionStore", "zu", 2, "z", "z2"),
		// geo and hyperloglog
		c("GeoAdd", "g", 13.5, 38.0, "Other"),
		c("GeoDist", "g", "Palermo", "Catania", "km"), c("GeoDist", "g", "Palermo", "none"),
		c("GeoHash", "g", "Palermo", "none"), c("GeoPos", "g", "Palermo", "none"),
		c("GeoSearch", "g", "FROMLONLAT", 15, 37, "BYRADIUS", 200, "km", "ASC", "WITHDIST", "WITHCOORD"),
		c("GeoSearchStore", "gdst", "g", "FROMLONLAT", 15, 37, "BYRADIUS", 200, "km"),
		c("PfAdd", "hll", "z"), c("PfCount", "hll", "hll2"), c("PfMerge", "hdst", "hll", "hll2"),
		// scripting and functions
		c("Eval", typedScript, 1, "k"), c("Eval", "return redis.call('GET', KEYS[1])", 1, "none"),
		c("EvalSha", sha, 1, "k"), c("EvalShaRO", sha, 1, "k"),
		c("EvalRO", "return redis.call('GET', KEYS[1])", 1, "s"),
		c("FCall", "tf", 1, "k"), c("FCallRO", "tro", 1, "s"),
		c("FunctionDelete", "tlib"), c("FunctionDump"), c("FunctionFlush"), c("FunctionFlush", "SYNC"),
		c("FunctionKill"), c("FunctionList"), c("FunctionList", "WITHCODE", "LIBRARYNAME", "tlib"),
		c("FunctionLoad", typedLibrary2), c("FunctionLoadReplace", typedLibrary),
		c("FunctionRestore", fDump, "REPLACE"), c("FunctionStats"),
		c("ScriptExists", sha, "0000000000000000000000000000000000000000"),
		c("ScriptFlush"), c("ScriptKill"), c("ScriptLoad", typedScript),
		// connection and pub/sub
		c("ClientGetName"), {method: "ClientGetName", named: true}, c("ClientGetRedir"), loose("ClientID"), loose("ClientInfo"),
		c("ClientKill", "ID", 999999), loose("ClientList"), c("ClientList", "TYPE", "pubsub"),
		c("ClientPause", 10, "WRITE"), c("ClientTrackingInfo"), c("ClientUnblock", 999999),
		c("ClientUnpause"),
		c("Echo", "hi"), c("Ping"), c("Ping", "hello"),
		c("Publish", "ch", "m"), c("PubSubChannels"), c("PubSubNumPat"), c("PubSubNumSub", "ch", "ch2"),
		c("PubSubShardChannels"), c("PubSubShardNumSub", "ch"), c("SPublish", "ch", "m"),
		// server
		c("CommandCount"), c("CommandDocs", "get"),
		c("CommandGetKeys", "SET", "k", "v"), c("CommandGetKeysAndFlags", "SET", "k", "v"),
		c("CommandInfo", "get", "nosuchcommand"), c("CommandList"), c("CommandList", "FILTERBY", "ACLCAT", "geo"),
		c("ConfigGet", "maxmemory", "appendonly"), c("ConfigGet", "nosuchparam*"),
		c("ConfigResetStat"), c("ConfigRewrite"), c("ConfigSet", "maxmemory-policy", "noeviction"),
		c("Failover"), c("FlushAll"), c("FlushAll", "SYNC"), c("FlushDB"), c("FlushDB", "SYNC"),
		loose("Info", "server"), loose("Info"),
		loose("LastSave"),
		loose("LatencyDoctor"), c("LatencyGraph", "command"),
		loose("LatencyHistogram", "set"), c("LatencyHistory", "command"), c("LatencyLatest"), c("LatencyReset"),
		loose("Lolwut"), loose("Lolwut", "VERSION", 5),
		loose("MemoryDoctor"), loose("MemoryMallocStats"), c("MemoryPurge"), loose("MemoryStats"),
		loose("MemoryUsage", "s"), c("MemoryUsage", "none"),
		c("ModuleList"), c("ModuleLoad", "/nonexistent/module.so"), c("ModuleLoadEx", "/nonexistent/module.so"),
		c("ModuleUnload", "nosuchmodule"),
		c("ReplicaOf", "NO", "ONE"), c("Role"), c("Save"),
		c("Shutdown", "ABORT"),
		loose("SlowLogGet"), loose("SlowLogGet", 1), loose("SlowLogLen"), c("SlowLogReset"),
		c("SwapDB", 0, 1), loose("Time"),
		// streams
		c("XAck", "x", "grp", "1-1", "9-9"),
		c("XAdd", "x", "1-5", "d", "4"), loose("XAdd", "x", "*", "d", "4"), c("XAdd", "none", "NOMKSTREAM", "*", "a", "1"),
		c("XAutoClaim", "x", "grp", "bob", int64(0), "0"), c("XAutoClaim", "x", "grp", "bob", int64(0), "0", "JUSTID"),
		with([][]any{{"XDEL", "x", "1-1"}}, "XAutoClaim", "x", "grp", "bob", int64(0), "0"),
		c("XClaim", "x", "grp", "bob", int64(0), "1-1"), c("XClaim", "x", "grp", "bob", int64(0), "1-1", "JUSTID"),
		c("XDel", "x", "1-1", "9-9"),
		c("XGroupCreate", "x", "g3", "$"), c("XGroupCreate", "none", "g3", "$", "MKSTREAM"),
		c("XGroupCreateConsumer", "x", "grp", "carl"), c("XGroupCreateConsumer", "x", "grp", "alice"),
		c("XGroupDelConsumer", "x", "grp", "alice"), c("XGroupDestroy", "x", "grp2"),
		c("XGroupSetID", "x", "grp", "0"),
		loose("XInfoConsumers", "x", "grp"), c("XInfoGroups", "x"), c("XInfoStream", "x"), loose("XInfoStream", "x", "FULL"),
		c("XLen", "x"),
		c("XPending", "x", "grp"), loose("XPending", "x", "grp", "-", "+", 10), c("XPending", "x", "grp2"),
		c("XRange", "x", "-", "+"), c("XRange", "x", "(1-3", "+"), c("XRange", "x", "-", "+", "COUNT", 1),
		c("XRead", "COUNT", 2, "STREAMS", "x", "0"), c("XRead", "STREAMS", "x", "1-3"),
		c("XReadGroup", "grp", "bob", "STREAMS", "x", ">"), c("XReadGroup", "grp2", "bob", "STREAMS", "x", ">"),
		c("XReadGroup", "grp", "alice", "STREAMS", "x", "0"),
		c("XRevRange", "x", "+", "-"), c("XRevRange", "x", "+", "-", "COUNT", 1),
		c("XSetID", "x", "1-9"), c("XTrim", "x", "MAXLEN", 1),
		{method: "Eval", args: a("return redis.status_reply('FINE')", 0)},
		// What the docs say of options that change the reply.
		{method: "SetGet", args: a("s", "v", "NX"), claim: "With NX, a key that existed is left as it was and its value is returned"},
		{method: "SetGet", args: a("none", "v", "XX"), claim: "It returns ErrNil when the key did not exist, and so was set unless XX was given"},
		{method: "Set", args: a("s", "v", "NX", "GET"), claim: "call SetGet instead", misuse: true},
		{method: "Set", args: a("none", "v", "GET"), claim: "call SetGet instead", misuse: true},
		{method: "ZAdd", args: a("z", "INCR", 1.5, "a"), claim: "call ZAddIncr instead", misuse: true},
	}
}

// TestTypedMethodsMatchRawReplies calls every typed method of Client with
// data that gives a non-trivial reply, and with data that gives a nil or
// empty one, under RESP2 and RESP3, and checks each result against the
// raw reply Do gets for the same words: the reply's kind must be one the
// method's Go type reads without loss, and a nil reply must be ErrNil (or
// a nil Value) as the method's documentation says.
func TestTypedMethodsMatchRawReplies(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	other := redistest.Start(t)
	docs := typedMethodDocs(t)

	admin := protocolClient(t, srv.Addr, 2)
	otherAdmin := protocolClient(t, other.Addr, 2)
	ctx := ctxT(t)
	seed := func(pre [][]any) {
		t.Helper()
		// A background save or rewrite that a call started must end
		// before the next call, which would find it in progress.
		for i := 0; ; i++ {
			info, err := admin.Info(ctx, "persistence")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(info, "rdb_bgsave_in_progress:0") && strings.Contains(info, "aof_rewrite_in_progress:0") &&
				strings.Contains(info, "aof_rewrite_scheduled:0") {
				break
			}
			if i == 500 {
				t.Fatalf("a background save or rewrite goes on:\n%s", info)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := otherAdmin.FlushAll(ctx); err != nil {
			t.Fatal(err)
		}
		p := admin.Pipeline(NoTransaction)
		for _, args := range typedSeed {
			p.Do(args...)
		}
		for _, args := range pre {
			if args[0] == "RAW" {
				// On a connection of its own, as the client keeps AUTH
				// off its shared ones.
				typedRaw(t, srv.Addr, args[1:]...)
				continue
			}
			p.Do(args...)
		}
		rs, err := p.Exec(ctx)
		if len(rs) < len(typedSeed) {
			t.Fatalf("seed: %d replies, %v", len(rs), err)
		}
		for i, args := range typedSeed {
			if err := rs[i].Err(); err != nil {
				t.Fatalf("seed %v: %v", args, err)
			}
		}
	}
	seed(nil)
	shaV, err := admin.Do(ctx, "SCRIPT", "LOAD", typedScript)
	if err != nil {
		t.Fatal(err)
	}
	sha, _ := shaV.Text()
	sDump, err := admin.Dump(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	fDump, err := admin.FunctionDump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, _ := net.SplitHostPort(other.Addr)
	port, _ := strconv.Atoi(portStr)
	cases := typedCases(sha, sDump, fDump, host, port)

	// Every typed method is called at least once, with a reply other than
	// the server's error unless it is known to refuse every call here.
	covered := map[string]bool{}
	succeeded := map[string]bool{}
	for _, tc := range cases {
		covered[tc.method] = true
	}
	for name := range docs {
		if !covered[name] && typedSkipped[name] == "" {
			t.Errorf("typed method %s is not called by the audit", name)
		}
	}

	for _, proto := range []int{2, 3} {
		plain := protocolClient(t, srv.Addr, proto)
		named, err := NewClient(Options{Addr: srv.Addr, Protocol: proto, ClientName: "audit"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { named.Close() })
		for _, tc := range cases {
			c := plain
			if tc.named {
				c = named
			}
			label := fmt.Sprintf("RESP%d %s%v", proto, tc.method, tc.args)
			m := reflect.ValueOf(c).MethodByName(tc.method)
			if !m.IsValid() {
				t.Errorf("%s: Client has no such method", label)
				continue
			}
			words, err := typedWords(c, tc.method, tc.args)
			if err != nil {
				t.Errorf("%s: %v", label, err)
				continue
			}
			seed(tc.pre)
			raw, rawErr := c.Do(ctx, words...)
			seed(tc.pre)
			out := m.Call(typedIn(ctx, m.Type(), tc.args))
			res, typedErr := reflect.Value{}, error(nil)
			if e := out[len(out)-1].Interface(); e != nil {
				typedErr = e.(error)
			}
			if len(out) == 2 {
				res = out[0]
			}
			if rawErr != nil {
				t.Errorf("%s: Do: %v", label, rawErr)
				continue
			}
			if e := raw.Err(); e == nil && !raw.IsNil() {
				succeeded[tc.method] = true
			}
			if tc.claim != "" && !strings.Contains(docs[tc.method], tc.claim) {
				t.Errorf("%s: the doc does not say %q:\n\t%s\n\traw reply: %v\n\ttyped: %s", label, tc.claim, docs[tc.method], raw, showTyped(res, typedErr))
			}
			if tc.misuse {
				continue
			}
			if msg := checkTyped(tc.method, m.Type(), res, typedErr, raw, tc.loose, docs[tc.method]); msg != "" {
				t.Errorf("%s: %s\n\traw reply: %v\n\ttyped: %s", label, msg, raw, showTyped(res, typedErr))
			}
		}
	}
	for name := range docs {
		if covered[name] && !succeeded[name] && !typedErrorOnly[name] {
			t.Errorf("typed method %s got only errors or nil replies", name)
		}
	}
}

// typedRaw sends one command on a connection of its own and reads the
// first line of its reply.
func typedRaw(t *testing.T, addr string, words ...any) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "*" + strconv.Itoa(len(words)) + "\r\n"
	for _, w := range words {
		s := fmt.Sprint(w)
		req += "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n"
	}
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
}

// TestTypedDocExamplesRun calls every typed method whose doc shows what
// args may hold with that example, after plausible values of the
// parameters before args, and checks that the server takes it: an example
// that leaves out what must come first (the keys after numkeys, the IDs
// XCLAIM claims) misleads every reader.
func TestTypedDocExamplesRun(t *testing.T) {
	srv := redistest.Start(t)
	other := redistest.Start(t)
	host, portStr, _ := net.SplitHostPort(other.Addr)
	port, _ := strconv.Atoi(portStr)
	c, ctx := protocolClient(t, srv.Addr, 3), ctxT(t)
	seed := func() {
		for _, args := range append(typedSeed[:len(typedSeed):len(typedSeed)], [][]any{
			{"CONFIG", "SET", "maxmemory", "0"},
			{"XGROUP", "CREATE", "events", "grp", "$", "MKSTREAM"},
			{"XADD", "x", "1700000000000-0", "d", "4"},
			{"XREADGROUP", "GROUP", "grp", "alice", "STREAMS", "x", ">"},
			// Keys the examples name.
			{"RPUSH", "jobs", "a"}, {"ZADD", "scores", 1, "a"}, {"ZADD", "z1", 1, "a"}, {"ZADD", "z2", 1, "a"},
			{"SADD", "online", "a"}, {"SADD", "admins", "a"},
		}...) {
			if v, err := c.Do(ctx, args...); err != nil || v.Err() != nil {
				t.Fatalf("%v: %v, %v", args, v, err)
			}
		}
	}
	seed()
	sha, err := c.ScriptLoad(ctx, typedScript)
	if err != nil {
		t.Fatal(err)
	}
	sDump, _ := c.Dump(ctx, "s")
	fDump, _ := c.FunctionDump(ctx)
	// The parameters before args, for each method whose doc has an example.
	before := map[string][]any{
		"ACLLog": {}, "BgSave": {}, "BitField": {"bits"}, "BitFieldRO": {"bits"},
		"BLMPop": {0.01, 1}, "BZMPop": {0.01, 1}, "ClientKill": {}, "ClientList": {},
		"ClientPause": {10}, "ClientUnblock": {999999}, "CommandList": {}, "ConfigSet": {},
		"CommandGetKeys": {}, "CommandGetKeysAndFlags": {},
		"Copy": {"s", "s-copy"}, "Eval": {"return 1", 1}, "EvalSha": {sha, 1}, "EvalShaRO": {sha, 1},
		"EvalRO": {"return 1", 1}, "Expire": {"s", 100}, "ExpireAt": {"s", 4000000000},
		"Failover": {}, "FCall": {"tf", 1}, "FCallRO": {"tro", 1}, "FlushAll": {}, "FlushDB": {},
		"FunctionFlush": {}, "FunctionList": {}, "FunctionRestore": {fDump}, "GeoAdd": {"g"},
		"GeoDist": {"g", "Palermo", "Catania"}, "GeoSearch": {"g"}, "GeoSearchStore": {"gdst", "g"},
		"GetEx": {"s"}, "HMSet": {"h"}, "HScan": {"h", 0}, "HSet": {"h"}, "LCS": {"s", "s2"},
		"LMPop": {1}, "Lolwut": {}, "LPos": {"l", "a"}, "MemoryUsage": {"s"},
		"Migrate": {host, port, "s", 0, 1000}, "ModuleLoadEx": {"/nonexistent/module.so"},
		"MSet": {}, "MSetNX": {}, "PExpire": {"s", 100000}, "PExpireAt": {"s", 4000000000000},
		"ReplicaOf": {}, "Restore": {"rk", 0, sDump}, "Scan": {0}, "ScriptFlush": {},
		"Set": {"k", "v"}, "SetGet": {"k", "v"}, "SInterCard": {2}, "Sort": {"l"}, "SortRO": {"l"},
		"SScan": {"set", 0}, "XAdd": {"x"}, "XAutoClaim": {"x", "grp", "bob", int64(0), "0"},
		"XClaim": {"x", "grp", "bob", int64(0)}, "XGroupCreate": {"x", "g3", "$"},
		"XGroupSetID": {"x", "grp", "0"}, "XRange": {"x", "-", "+"}, "XRead": {},
		"XReadGroup": {"grp", "bob"}, "XRevRange": {"x", "+", "-"}, "XSetID": {"x", "1800000000000-0"},
		"XTrim": {"x", "MAXLEN"}, "ZAdd": {"z"}, "ZAddIncr": {"z"}, "ZDiff": {2}, "ZInter": {2},
		"ZInterCard": {2}, "ZInterStore": {"zi", 2}, "ZMPop": {1}, "ZRange": {"z", 0, -1},
		"ZRangeWithScores": {"z", 0, -1}, "ZRangeByScore": {"z", "-inf", "+inf"},
		"ZRangeStore": {"zr", "z", 0, 1}, "ZRevRange": {"z", 0, -1},
		"ZRevRangeByScore": {"z", "+inf", "-inf"}, "ZScan": {"z", 0}, "ZUnion": {2},
		"ZUnionStore": {"zu", 2},
	}
	// Refusals that come from this server's set-up, not from the example.
	refused := map[string]string{
		"Failover":     "requires connected replicas",
		"Migrate":      "AUTH",
		"ModuleLoadEx": "MODULE command not allowed",
	}
	// The example would stop the server.
	unsafe := map[string]bool{"Shutdown": true}
	docs := typedMethodDocs(t)
	re := regexp.MustCompile(`args holds [^;]*?, such as (.+?)[.;](?: |$)`)
	tried := map[string]bool{}
	for name, doc := range docs {
		m := re.FindStringSubmatch(doc)
		if m == nil || unsafe[name] {
			continue
		}
		tried[name] = true
		eg, err := typedParseExample(m[1])
		if err != nil {
			t.Errorf("%s: example %s: %v", name, m[1], err)
			continue
		}
		fixed, ok := before[name]
		if !ok {
			t.Errorf("%s: no parameters to try its example %s with", name, m[1])
			continue
		}
		seed()
		all := append(append([]any{}, fixed...), eg...)
		// A word of the example that the server takes for a key, an
		// option's name or a number, says the example misses what comes
		// before it (ZINTER 2 WEIGHTS 10 intersects keys WEIGHTS and 10).
		words, err := typedWords(c, name, all)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if keys, err := c.CommandGetKeys(ctx, words...); err == nil {
			for _, k := range keys {
				if _, err := strconv.ParseFloat(k, 64); err == nil || (strings.ToUpper(k) == k && strings.ToLower(k) != k) {
					t.Errorf("%s(%v) with the doc's example %s: the server takes %q for a key", name, fixed, m[1], k)
				}
			}
		}
		mv := reflect.ValueOf(c).MethodByName(name)
		out := mv.Call(typedIn(ctx, mv.Type(), all))
		if name == "XClaim" {
			// The IDs to claim come first: an example without them
			// claims nothing.
			if v, _ := out[0].Interface().(Value); v.Len() == 0 {
				t.Errorf("XClaim(%v) with the doc's example %s claims nothing: %v", fixed, m[1], v)
			}
		}
		err, _ = out[len(out)-1].Interface().(error)
		var se *Error
		switch {
		case err == nil, errors.Is(err, ErrNil):
		case errors.As(err, &se) && refused[name] != "" && strings.Contains(err.Error(), refused[name]):
		default:
			t.Errorf("%s(%v) with the doc's example %s: %v", name, fixed, m[1], err)
		}
	}
	for name := range before {
		if !tried[name] {
			t.Errorf("the doc of %s shows no example of args", name)
		}
	}
}

// typedParseExample reads a doc example, Go literals separated by commas.
func typedParseExample(s string) ([]any, error) {
	e, err := parser.ParseExpr("[]any{" + s + "}")
	if err != nil {
		return nil, err
	}
	var out []any
	for _, el := range e.(*ast.CompositeLit).Elts {
		neg := ""
		if u, ok := el.(*ast.UnaryExpr); ok && u.Op == token.SUB {
			neg, el = "-", u.X
		}
		lit, ok := el.(*ast.BasicLit)
		if !ok {
			return nil, fmt.Errorf("%T is not a literal", el)
		}
		switch lit.Kind {
		case token.STRING:
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case token.INT:
			v, err := strconv.ParseInt(neg+lit.Value, 10, 64)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case token.FLOAT:
			v, err := strconv.ParseFloat(neg+lit.Value, 64)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		default:
			return nil, fmt.Errorf("literal %s", lit.Value)
		}
	}
	return out, nil
}

// typedMethodDocs returns the doc comment of every method of Client in
// commands_gen.go, by name.
func typedMethodDocs(t *testing.T) map[string]string {
	f, err := parser.ParseFile(token.NewFileSet(), "commands_gen.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Recv == nil || len(fd.Recv.List) != 1 {
			continue
		}
		star, ok := fd.Recv.List[0].Type.(*ast.StarExpr)
		if !ok || star.X.(*ast.Ident).Name != "Client" {
			continue
		}
		docs[fd.Name.Name] = strings.Join(strings.Fields(fd.Doc.Text()), " ")
	}
	if len(docs) < 200 {
		t.Fatalf("found %d typed methods of Client", len(docs))
	}
	return docs
}

// typedWords queues the method on a pipeline and returns the words it
// encoded, for Do.
func typedWords(c *Client, method string, args []any) ([]any, error) {
	p := c.Pipeline(NoTransaction)
	m := reflect.ValueOf(p).MethodByName(method)
	if !m.IsValid() {
		return nil, errors.New("Pipeline has no such method")
	}
	m.Call(typedIn(context.Background(), m.Type(), args))
	if p.w.err != nil {
		return nil, p.w.err
	}
	b := string(p.w.buf)
	next := func(prefix byte) (int, error) {
		i := strings.Index(b, "\r\n")
		if i < 1 || b[0] != prefix {
			return 0, fmt.Errorf("unexpected encoding %q", b)
		}
		n, err := strconv.Atoi(b[1:i])
		b = b[i+2:]
		return n, err
	}
	n, err := next('*')
	if err != nil {
		return nil, err
	}
	words := make([]any, n)
	for i := range words {
		l, err := next('$')
		if err != nil {
			return nil, err
		}
		words[i] = b[:l]
		b = b[l+2:]
	}
	if b != "" {
		return nil, fmt.Errorf("more than one command encoded: %q", b)
	}
	return words, nil
}

// typedIn converts the arguments of a case to the parameters of a method,
// with ctx first if the method takes a context (a Pipeline's queueing
// methods do not).
func typedIn(ctx context.Context, ft reflect.Type, args []any) []reflect.Value {
	var in []reflect.Value
	if ft.NumIn() > 0 && ft.In(0) == reflect.TypeFor[context.Context]() {
		in = append(in, reflect.ValueOf(ctx))
	}
	first := len(in)
	for i, a := range args {
		pi := first + i
		var pt reflect.Type
		if ft.IsVariadic() && pi >= ft.NumIn()-1 {
			pt = ft.In(ft.NumIn() - 1).Elem()
		} else {
			pt = ft.In(pi)
		}
		v := reflect.ValueOf(a)
		if pt.Kind() == reflect.Interface {
			in = append(in, reflect.New(pt).Elem())
			in[len(in)-1].Set(v)
			continue
		}
		in = append(in, v.Convert(pt))
	}
	return in
}

func showTyped(res reflect.Value, err error) string {
	if err != nil {
		return fmt.Sprintf("error %q (%T)", err.Error(), err)
	}
	if !res.IsValid() {
		return "no error"
	}
	return fmt.Sprintf("%#v", res.Interface())
}

// checkTyped compares the typed result of a call with the raw reply to
// the same words, and returns what is wrong, or "".
func checkTyped(name string, ft reflect.Type, res reflect.Value, typedErr error, raw Value, loose bool, doc string) string {
	var te *TypeError
	if errors.As(typedErr, &te) {
		return "type error"
	}
	isValue := ft.NumOut() == 2 && ft.Out(0) == reflect.TypeOf(Value{})
	switch {
	case raw.Err() != nil:
		if typedErr == nil || !strings.Contains(typedErr.Error(), raw.Err().Error()) {
			return "the server's error did not come back"
		}
		return ""
	case raw.IsNil() && isValue:
		if typedErr != nil || !res.Interface().(Value).IsNil() {
			return "a nil reply did not come back as a nil Value"
		}
		if !strings.Contains(doc, "The reply is nil when") && !typedAnyReply[name] {
			return "a nil reply that the doc does not mention"
		}
		return ""
	case raw.IsNil():
		if !errors.Is(typedErr, ErrNil) {
			return "a nil reply is not ErrNil"
		}
		if !strings.Contains(doc, "It returns ErrNil when") {
			return "ErrNil that the doc does not mention"
		}
		return ""
	case typedErr != nil:
		return "an error for a reply that is not one"
	}
	var want any
	var err error
	if ft.NumOut() == 1 {
		if raw.Kind() != KindSimpleString || func() string { s, _ := raw.Text(); return s }() != "OK" {
			return "a method that returns only an error drops a reply other than OK"
		}
		return ""
	}
	want, err = typedExpect(ft.Out(0), raw, doc)
	if err != nil {
		return "the reply does not fit the method's type: " + err.Error()
	}
	if loose {
		return ""
	}
	got := res.Interface()
	if v, ok := got.(Value); ok {
		got = v.String()
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("typed result differs from the raw reply, want %#v", want)
	}
	return ""
}

// typedExpect derives from a raw reply what a method of Go type typ must
// return, reading each kind by hand rather than with the accessors the
// methods use, and refusing a reply whose kind the type would misread.
func typedExpect(typ reflect.Type, raw Value, doc string) (any, error) {
	isText := func(v Value) bool {
		k := v.Kind()
		return k == KindSimpleString || k == KindBulkString || k == KindVerbatim
	}
	elems := func(v Value) ([]Value, error) {
		if k := v.Kind(); k != KindArray && k != KindSet {
			return nil, fmt.Errorf("%v is not a list", k)
		}
		return values(v.v.Elems), nil
	}
	// flat makes a RESP3 list of pairs the flat list RESP2 sends.
	flat := func(vs []Value) []Value {
		if len(vs) == 0 {
			return vs
		}
		var out []Value
		for _, e := range vs {
			if e.Kind() != KindArray || len(e.v.Elems) != 2 {
				return vs
			}
			out = append(out, values(e.v.Elems)...)
		}
		return out
	}
	number := func(v Value) (float64, error) {
		switch v.Kind() {
		case KindDouble:
			return v.v.Float(), nil
		case KindBulkString:
			switch v.v.Str {
			case "inf", "+inf":
				return math.Inf(1), nil
			case "-inf":
				return math.Inf(-1), nil
			}
			return strconv.ParseFloat(v.v.Str, 64)
		}
		return 0, fmt.Errorf("%v is not a number", v.Kind())
	}
	switch typ {
	case reflect.TypeOf(""):
		if !isText(raw) {
			return nil, fmt.Errorf("%v is not a string", raw.Kind())
		}
		return raw.v.Str, nil
	case reflect.TypeOf(int64(0)):
		if raw.Kind() != KindInteger {
			return nil, fmt.Errorf("%v is not an integer", raw.Kind())
		}
		return raw.v.Int, nil
	case reflect.TypeOf(false):
		if (raw.Kind() != KindInteger && raw.Kind() != KindBoolean) || raw.v.Int < 0 || raw.v.Int > 1 {
			return nil, fmt.Errorf("%v %d is not a yes or no", raw.Kind(), raw.v.Int)
		}
		return raw.v.Int == 1, nil
	case reflect.TypeOf(0.0):
		return number(raw)
	case reflect.TypeOf([]string{}):
		vs, err := elems(raw)
		if err != nil {
			return nil, err
		}
		out := []string{}
		for i, e := range flat(vs) {
			switch {
			case isText(e):
				out = append(out, e.v.Str)
			case e.Kind() == KindDouble && len(vs) != len(flat(vs)):
				s, _ := e.Text() // a score in a pair, as RESP2 writes it
				out = append(out, s)
			default:
				return nil, fmt.Errorf("element %d: %v is not a string", i, e.Kind())
			}
		}
		return out, nil
	case reflect.TypeOf([]int64{}):
		vs, err := elems(raw)
		if err != nil {
			return nil, err
		}
		out := []int64{}
		for i, e := range vs {
			if e.Kind() != KindInteger {
				return nil, fmt.Errorf("element %d: %v is not an integer", i, e.Kind())
			}
			out = append(out, e.v.Int)
		}
		return out, nil
	case reflect.TypeOf([]Value{}):
		vs, err := elems(raw)
		if err != nil {
			return nil, err
		}
		out := []Value{}
		for i, e := range vs {
			if e.IsNil() && !strings.Contains(doc, "An element is nil when") {
				return nil, fmt.Errorf("element %d is nil, which the doc does not mention", i)
			}
			out = append(out, e)
		}
		return out, nil
	case reflect.TypeOf([]Scored{}):
		vs, err := elems(raw)
		if err != nil {
			return nil, err
		}
		vs = flat(vs)
		if len(vs)%2 != 0 {
			return nil, fmt.Errorf("%d elements are not pairs", len(vs))
		}
		out := []Scored{}
		for i := 0; i < len(vs); i += 2 {
			if !isText(vs[i]) {
				return nil, fmt.Errorf("member %d: %v is not a string", i/2, vs[i].Kind())
			}
			f, err := number(vs[i+1])
			if err != nil {
				return nil, fmt.Errorf("score %d: %v", i/2, err)
			}
			out = append(out, Scored{vs[i].v.Str, f})
		}
		return out, nil
	case reflect.TypeOf(map[string]string{}):
		vs := values(raw.v.Elems)
		if raw.Kind() != KindMap && (raw.Kind() != KindArray || len(vs)%2 != 0) {
			return nil, fmt.Errorf("%v of %d is not a map", raw.Kind(), len(vs))
		}
		out := map[string]string{}
		for i := 0; i < len(vs); i += 2 {
			if !isText(vs[i]) || !isText(vs[i+1]) {
				return nil, fmt.Errorf("pair %d: %v, %v are not strings", i/2, vs[i].Kind(), vs[i+1].Kind())
			}
			out[vs[i].v.Str] = vs[i+1].v.Str
		}
		return out, nil
	case reflect.TypeOf(Value{}):
		return raw.String(), nil
	}
	return nil, fmt.Errorf("no rule for %v", typ)
}

// A typed method of a command that answers OK takes the server's OK, and
// REPLICAOF's longer "OK Already connected to specified master", for
// success, and SET's old value when given GET; NX kept from setting is
// ErrNil, as before.
func TestOKMethodsTakeTheServersOK(t *testing.T) {
	master, replica := redistest.Start(t), redistest.Start(t)
	c, _ := newTestClient(t, Options{})
	r := protocolClient(t, replica.Addr, 3)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := c.Set(ctx, "k", "w", "GET"); err != nil {
		t.Fatalf("Set with GET of a key that held a value: %v; want success", err)
	}
	if err := c.Set(ctx, "k", "x", "NX"); !errors.Is(err, ErrNil) {
		t.Fatalf("Set NX of a key that exists: %v; want ErrNil", err)
	}
	for i := range 2 { // the second answers "OK Already connected..."
		if err := r.ReplicaOf(ctx, "127.0.0.1", master.Port); err != nil {
			t.Fatalf("ReplicaOf, time %d: %v", i+1, err)
		}
	}
	if err := r.ReplicaOf(ctx, "NO", "ONE"); err != nil {
		t.Fatalf("ReplicaOf NO ONE: %v", err)
	}
}

// A typed method of a command that answers OK refuses any other reply that
// is not an error or nil with a *TypeError that names it, rather than
// report success: QUEUED would say the command was only queued, and an
// integer or another text that the reply is another command's. A bulk
// string answers SET only with GET among its arguments: without GET it too
// is refused. Only a scripted server sends such replies to SET and
// FLUSHALL.
func TestOKMethodsRefuseOtherReplies(t *testing.T) {
	for _, tt := range []struct {
		reply, got, says string
	}{
		{"+QUEUED\r\n", "simple string", `"QUEUED" is not OK`},
		{"+PONG\r\n", "simple string", `"PONG" is not OK`},
		{"+OKAY\r\n", "simple string", `"OKAY" is not OK`},
		{":1\r\n", "integer", ""},
		{"*0\r\n", "array", ""},
		{"#t\r\n", "boolean", ""},
		{"$2\r\nOK\r\n", "bulk string", ""},
	} {
		fs := startFakeServer(t, func(n int, fc *fakeConn) {
			if !fc.handshake("") {
				return
			}
			for range 2 {
				if _, err := fc.readCommand(); err != nil || fc.send(tt.reply) != nil {
					return
				}
			}
		})
		c := newFakeClient(t, fs)
		ctx := ctxT(t)
		for _, call := range []struct {
			name string
			run  func() error
		}{
			{"FlushAll", func() error { return c.FlushAll(ctx) }},
			{"Set", func() error { return c.Set(ctx, "k", "v") }},
		} {
			err := call.run()
			var te *TypeError
			if !errors.As(err, &te) || te.Want != "OK" || te.Got != tt.got || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("%s answered %q: %v; want a *TypeError saying %s reply is not OK", call.name, tt.reply, err, withArticle(tt.got))
			}
		}
		fs.close()
	}

	// With GET, in any case and of any type, the bulk string is the old
	// value: success.
	fs := startFakeServer(t, func(n int, fc *fakeConn) {
		if !fc.handshake("") {
			return
		}
		for range 2 {
			if _, err := fc.readCommand(); err != nil || fc.send("$3\r\nold\r\n") != nil {
				return
			}
		}
	})
	defer fs.close()
	c := newFakeClient(t, fs)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v", "get"); err != nil {
		t.Errorf(`Set with "get" answered a bulk string: %v; want success`, err)
	}
	if err := c.Set(ctx, "k", "v", "EX", 10, []byte("GET")); err != nil {
		t.Errorf(`Set with []byte("GET") answered a bulk string: %v; want success`, err)
	}
}
