package redpipe

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// encodeCommand encodes args as Do does and returns the encoded command
// with its table entry, the input a router has.
func encodeCommand(t testing.TB, args ...string) (*commandInfo, []byte) {
	t.Helper()
	var w cmdBuf
	as := make([]any, len(args))
	for i, a := range args {
		as[i] = a
	}
	w.do(as)
	if len(w.cmds) != 1 {
		t.Fatalf("%q: encoded %d commands (error %v)", args, len(w.cmds), w.err)
	}
	return w.cmds[0].info(), w.buf
}

// keysOf runs commandKeys on a command and returns its keys as strings.
func keysOf(t testing.TB, args ...string) ([]string, keyStatus) {
	t.Helper()
	ci, cmd := encodeCommand(t, args...)
	pos, st := commandKeys(nil, ci, cmd)
	if !slices.IsSorted(pos) {
		t.Errorf("%q: positions %v are not in order", args, pos)
	}
	var keys []string
	for _, k := range appendKeys(nil, cmd, pos) {
		keys = append(keys, string(k))
	}
	for i, p := range pos {
		if i < len(keys) && keys[i] != args[p] {
			t.Errorf("%q: appendKeys gives %q at position %d, want %q", args, keys[i], p, args[p])
		}
	}
	return keys, st
}

func (s keyStatus) String() string {
	switch s {
	case keysFound:
		return "found"
	case keysUnknown:
		return "unknown"
	case keysInvalid:
		return "invalid"
	}
	return "keyStatus(" + strconv.Itoa(int(s)) + ")"
}

// keyCases are commands whose keys are checked here and against a real
// server: the movable-keys rules with their options in every place, and
// what the table alone cannot say.
var keyCases = []struct {
	args   []string
	keys   []string
	status keyStatus
}{
	{[]string{"GET", "a"}, []string{"a"}, keysFound},
	{[]string{"get", "a"}, []string{"a"}, keysFound},
	{[]string{"MSET", "a", "1", "b", "2"}, []string{"a", "b"}, keysFound},
	{[]string{"BLPOP", "a", "b", "0"}, []string{"a", "b"}, keysFound},
	{[]string{"OBJECT", "ENCODING", "a"}, []string{"a"}, keysFound},
	{[]string{"object", "encoding", "a"}, []string{"a"}, keysFound},
	{[]string{"XINFO", "STREAM", "a", "FULL"}, []string{"a"}, keysFound},
	{[]string{"MEMORY", "USAGE", "a", "SAMPLES", "5"}, []string{"a"}, keysFound},
	{[]string{"BITOP", "AND", "d", "a", "b"}, []string{"d", "a", "b"}, keysFound},
	{[]string{"SPUBLISH", "ch", "msg"}, []string{"ch"}, keysFound},
	{[]string{"PING"}, nil, keysFound},
	{[]string{"DBSIZE"}, nil, keysFound},
	{[]string{"SET", "a", "v", "GET"}, []string{"a"}, keysFound},
	{[]string{"set", "a", "v", "ex", "10", "get"}, []string{"a"}, keysFound},
	{[]string{"BITFIELD", "a", "GET", "u8", "0"}, []string{"a"}, keysFound},
	{[]string{"BITFIELD_RO", "a", "GET", "u8", "0"}, []string{"a"}, keysFound},
	{[]string{"OBJECT", "FREQ", "a"}, []string{"a"}, keysFound},
	{[]string{"OBJECT", "HELP"}, nil, keysFound},
	{[]string{"memory", "usage", "a"}, []string{"a"}, keysFound},
	{[]string{"MEMORY", "STATS"}, nil, keysFound},
	{[]string{"XINFO", "CONSUMERS", "a", "g"}, []string{"a"}, keysFound},
	{[]string{"xgroup", "create", "a", "g", "$", "mkstream"}, []string{"a"}, keysFound},
	{[]string{"CLIENT", "KILL", "ID", "1"}, nil, keysFound},
	{[]string{"CLUSTER", "KEYSLOT", "a"}, nil, keysFound},
	{[]string{"CLUSTER", "COUNTKEYSINSLOT", "1"}, nil, keysFound},
	{[]string{"COMMAND", "GETKEYS", "GET", "a"}, nil, keysFound},
	{[]string{"LCS", "a", "b"}, []string{"a", "b"}, keysFound},
	{[]string{"COPY", "a", "b", "DB", "1"}, []string{"a", "b"}, keysFound},
	{[]string{"GEOSEARCHSTORE", "d", "a", "FROMMEMBER", "m", "BYRADIUS", "1", "km", "STOREDIST"}, []string{"d", "a"}, keysFound},
	{[]string{"PFCOUNT", "a", "b"}, []string{"a", "b"}, keysFound},
	{[]string{"SCRIPT", "EXISTS", "a"}, nil, keysFound},

	{[]string{"EVAL", "return 1", "0"}, nil, keysFound},
	{[]string{"EVAL", "return 1", "2", "a", "b", "x", "y"}, []string{"a", "b"}, keysFound},
	{[]string{"EVALSHA", "abc", "1", "a", "x"}, []string{"a"}, keysFound},
	{[]string{"EVAL_RO", "return 1", "1", "a"}, []string{"a"}, keysFound},
	{[]string{"EVALSHA_RO", "abc", "2", "a", "b"}, []string{"a", "b"}, keysFound},
	{[]string{"FCALL", "f", "1", "a", "x"}, []string{"a"}, keysFound},
	{[]string{"FCALL_RO", "f", "0", "x"}, nil, keysFound},
	{[]string{"EVAL", "return 1", "3", "a", "b"}, nil, keysInvalid},
	{[]string{"EVAL", "return 1", "-1", "a"}, nil, keysInvalid},
	{[]string{"eval", "return 1", "1", "a", "b"}, []string{"a"}, keysFound},
	{[]string{"FCALL", "f", "0", "a"}, nil, keysFound},
	{[]string{"EVAL", "return 1", "x", "a"}, nil, keysInvalid},

	{[]string{"ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2", "AGGREGATE", "MAX"}, []string{"d", "a", "b"}, keysFound},
	{[]string{"ZINTERSTORE", "d", "1", "a"}, []string{"d", "a"}, keysFound},
	{[]string{"ZDIFFSTORE", "d", "2", "a", "b"}, []string{"d", "a", "b"}, keysFound},
	{[]string{"ZUNION", "2", "a", "b", "WITHSCORES"}, []string{"a", "b"}, keysFound},
	{[]string{"ZINTER", "1", "a"}, []string{"a"}, keysFound},
	{[]string{"ZDIFF", "2", "a", "b"}, []string{"a", "b"}, keysFound},
	{[]string{"ZINTERCARD", "2", "a", "b", "LIMIT", "5"}, []string{"a", "b"}, keysFound},
	{[]string{"SINTERCARD", "1", "a", "LIMIT", "5"}, []string{"a"}, keysFound},
	{[]string{"LMPOP", "2", "a", "b", "LEFT", "COUNT", "3"}, []string{"a", "b"}, keysFound},
	{[]string{"ZMPOP", "1", "a", "MIN"}, []string{"a"}, keysFound},
	{[]string{"BLMPOP", "0", "2", "a", "b", "RIGHT"}, []string{"a", "b"}, keysFound},
	{[]string{"BZMPOP", "1.5", "1", "a", "MAX", "COUNT", "2"}, []string{"a"}, keysFound},
	{[]string{"ZUNION", "0", "a"}, nil, keysInvalid},
	{[]string{"ZUNIONSTORE", "d", "3", "a", "b"}, nil, keysInvalid},
	{[]string{"LMPOP", "5", "a", "LEFT"}, nil, keysInvalid},

	{[]string{"XREAD", "STREAMS", "a", "0"}, []string{"a"}, keysFound},
	{[]string{"XREAD", "COUNT", "2", "BLOCK", "0", "STREAMS", "a", "b", "0", "0"}, []string{"a", "b"}, keysFound},
	{[]string{"xread", "block", "0", "streams", "a", "$"}, []string{"a"}, keysFound},
	{[]string{"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "NOACK", "STREAMS", "a", "b", ">", ">"}, []string{"a", "b"}, keysFound},
	{[]string{"XREADGROUP", "GROUP", "streams", "c", "STREAMS", "a", "0"}, []string{"a"}, keysFound},
	{[]string{"XREADGROUP", "GROUP", "g", "streams", "STREAMS", "a", "0"}, []string{"a"}, keysFound},
	{[]string{"XREAD", "COUNT", "1", "foo", "STREAMS", "a", "0"}, []string{"a"}, keysFound},
	{[]string{"XREADGROUP", "COUNT", "1", "GROUP", "g", "c", "STREAMS", "a", "0"}, []string{"a"}, keysFound},
	{[]string{"xreadgroup", "noack", "group", "g", "c", "streams", "a", "0"}, []string{"a"}, keysFound},
	// See serverQuirks.
	{[]string{"XREADGROUP", "COUNT", "1", "GROUP", "g", "streams", "STREAMS", "a", "0"}, []string{"a"}, keysFound},
	// Odd: the server takes the first half for keys, then refuses it.
	{[]string{"XREAD", "STREAMS", "a", "b", "0"}, []string{"a"}, keysFound},
	{[]string{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", "c", "d", "e"}, []string{"a", "b"}, keysFound},
	{[]string{"XREAD", "COUNT", "1", "STREAMS", "a"}, nil, keysInvalid},
	{[]string{"XREAD", "COUNT", "1", "STREAMS"}, nil, keysInvalid},

	{[]string{"SORT", "a"}, []string{"a"}, keysFound},
	{[]string{"SORT", "a", "BY", "w_*", "LIMIT", "0", "5", "GET", "#", "GET", "o_*", "DESC", "ALPHA", "STORE", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"SORT", "a", "store", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"SORT", "a", "BY", "store", "GET", "store"}, []string{"a"}, keysFound},
	{[]string{"SORT_RO", "a", "BY", "w_*", "GET", "#"}, []string{"a"}, keysFound},
	{[]string{"SORT", "a", "STORE", "d1", "STORE", "d2"}, []string{"a", "d2"}, keysFound},
	{[]string{"SORT", "a", "LIMIT", "0", "STORE", "d"}, []string{"a"}, keysFound},
	// As the server reads them: a last STORE is none, and the word after
	// STORE is read as an option too.
	{[]string{"SORT", "a", "STORE"}, []string{"a"}, keysFound},
	{[]string{"SORT", "a", "STORE", "d", "STORE"}, []string{"a", "d"}, keysFound},
	{[]string{"SORT", "a", "STORE", "store", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"SORT", "a", "STORE", "get", "STORE", "d"}, []string{"a", "get"}, keysFound},
	{[]string{"SORT", "a", "STORE", "by", "d"}, []string{"a", "by"}, keysFound},

	{[]string{"GEORADIUS", "a", "15", "37", "200", "km"}, []string{"a"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "WITHDIST", "COUNT", "3", "ANY", "ASC", "STORE", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STOREDIST", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"GEORADIUSBYMEMBER", "a", "m", "200", "km", "STORE", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"GEORADIUSBYMEMBER", "a", "m", "200", "km", "COUNT", "1"}, []string{"a"}, keysFound},
	{[]string{"GEORADIUSBYMEMBER", "store", "store", "200", "km", "STORE", "d"}, []string{"store", "d"}, keysFound},
	// Both destinations count, the first of each kind.
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STORE", "d1", "STORE", "d2"}, []string{"a", "d1"}, keysFound},
	// A keyword as the last word is none.
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STORE"}, []string{"a"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STORE", "d", "STOREDIST"}, []string{"a", "d"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STORE", "STORE"}, []string{"a", "STORE"}, keysFound},
	{[]string{"GEORADIUSBYMEMBER", "a", "m", "200", "km", "storedist"}, []string{"a"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STOREDIST", "d1", "STORE", "d2"}, []string{"a", "d1", "d2"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STORE", "d1", "STOREDIST", "d2", "STORE", "d3"}, []string{"a", "d1", "d2"}, keysFound},

	{[]string{"MIGRATE", "127.0.0.1", "1", "a", "0", "100"}, []string{"a"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "a", "0", "100", "COPY", "REPLACE"}, []string{"a"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "KEYS", "a", "b"}, []string{"a", "b"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "COPY", "AUTH", "keys", "KEYS", "a"}, []string{"a"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "AUTH2", "keys", "keys", "keys", "a", "b"}, []string{"a", "b"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "KEYS", "a", "KEYS", "b"}, []string{"a", "KEYS", "b"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "a", "0", "100", "KEYS", "b"}, nil, keysInvalid},
	// KEYS as the last word, and nowhere else, is no option.
	{[]string{"MIGRATE", "127.0.0.1", "1", "a", "0", "100", "KEYS"}, []string{"a"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "KEYS"}, []string{""}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "a", "0", "100", "AUTH", "KEYS"}, []string{"a"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "KEYS", "0", "100", "KEYS"}, nil, keysInvalid},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "AUTH", "KEYS", "x"}, []string{""}, keysFound},
	{[]string{"EVAL", "return 1", "02", "a", "b"}, []string{"a", "b"}, keysFound},
}

func TestCommandKeys(t *testing.T) {
	for _, tt := range keyCases {
		keys, st := keysOf(t, tt.args...)
		if st != tt.status || !slices.Equal(keys, tt.keys) {
			t.Errorf("%q: keys %q, %v; want %q, %v", tt.args, keys, st, tt.keys, tt.status)
		}
	}
	// Cases the server cannot be asked about.
	for _, tt := range []struct {
		args   []string
		status keyStatus
	}{
		{[]string{"NOSUCHCOMMAND", "a"}, keysUnknown},
		{[]string{"OBJECT", "NOSUCHSUB", "a"}, keysUnknown},
		{[]string{"OBJECT"}, keysUnknown},
	} {
		if keys, st := keysOf(t, tt.args...); st != tt.status || len(keys) != 0 {
			t.Errorf("%q: keys %q, %v; want none, %v", tt.args, keys, st, tt.status)
		}
	}
	// A malformed encoding, which no builder writes.
	for _, cmd := range []string{"", "+OK\r\n", "*x\r\n", "*1\r", "*99999999999999\r\n"} {
		if pos, st := commandKeys(nil, cmdGet, []byte(cmd)); st != keysInvalid || len(pos) != 0 {
			t.Errorf("%q: %v, %v; want invalid", cmd, pos, st)
		}
	}
	// A truncated command: the keys that are there.
	_, cmd := encodeCommand(t, "DEL", "a", "b", "c")
	if pos, st := commandKeys(nil, cmdDel, cmd[:len(cmd)-4]); st != keysFound || !slices.Equal(pos, []int{1, 2, 3}) {
		t.Errorf("truncated DEL: %v, %v", pos, st)
	}
	if keys := appendKeys(nil, cmd[:len(cmd)-4], []int{1, 2, 3}); len(keys) != 2 {
		t.Errorf("truncated DEL: appendKeys gives %q, want the two whole keys", keys)
	}
}

func TestCommandKeysAllocations(t *testing.T) {
	pos := make([]int, 0, 16)
	keys := make([][]byte, 0, 16)
	for _, args := range [][]string{
		{"GET", "a"},
		{"MSET", "a", "1", "b", "2"},
		{"EVAL", "return 1", "2", "a", "b", "x"},
		{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", ">", ">"},
		{"SORT", "a", "BY", "w_*", "STORE", "d"},
		{"MIGRATE", "h", "1", "", "0", "100", "KEYS", "a", "b"},
		{"OBJECT", "ENCODING", "a"},
	} {
		ci, cmd := encodeCommand(t, args...)
		n := testing.AllocsPerRun(100, func() {
			var st keyStatus
			pos, st = commandKeys(pos[:0], ci, cmd)
			keys = appendKeys(keys[:0], cmd, pos)
			if st != keysFound || len(keys) == 0 {
				panic(fmt.Sprintf("%q: %v", args, st))
			}
		})
		if n != 0 {
			t.Errorf("%q: %v allocations", args, n)
		}
	}
}

// docArg is an argument of a command in the stored COMMAND DOCS.
type docArg struct {
	Name  string    `json:"name"`
	Type  string    `json:"type"`
	Token string    `json:"token"`
	Flags []string  `json:"flags"`
	Args  []*docArg `json:"arguments"`
}

type docEntry struct {
	Args []*docArg           `json:"arguments"`
	Subs map[string]docEntry `json:"subcommands"`
}

// example builds command lines from the docs' syntax of a command:
// variant 0 with the required arguments only, each multiple one once;
// variant 1 with every optional argument too, multiple ones twice, and
// the last choice of each one-of; variant 2 with every optional argument,
// multiple ones three times, and the first choice of each one-of. Keys
// are k1, k2, ..., other strings s; a numkeys counts the keys that follow
// it.
type example struct {
	variant int
	words   []string
	nkeys   int
}

func (e *example) args(as []*docArg) {
	numkeys := -1 // the word that counts the keys of the next argument
	for _, a := range as {
		before := e.nkeys
		if !slices.Contains(a.Flags, "optional") || e.variant > 0 {
			e.arg(a)
		}
		if numkeys >= 0 {
			e.words[numkeys] = strconv.Itoa(e.nkeys - before)
			numkeys = -1
		}
		if a.Name == "numkeys" {
			numkeys = len(e.words) - 1
		}
	}
}

func (e *example) arg(a *docArg) {
	times := 1
	if slices.Contains(a.Flags, "multiple") {
		times += e.variant
	}
	for i := range times {
		if a.Token != "" && a.Type != "pure-token" && (i == 0 || slices.Contains(a.Flags, "multiple_token")) {
			e.words = append(e.words, a.Token)
		}
		e.value(a)
	}
}

func (e *example) value(a *docArg) {
	switch a.Type {
	case "key":
		e.nkeys++
		e.words = append(e.words, "k"+strconv.Itoa(e.nkeys))
	case "pure-token":
		e.words = append(e.words, a.Token)
	case "oneof":
		choice := a.Args[0]
		if e.variant == 1 {
			choice = a.Args[len(a.Args)-1]
		}
		e.arg(choice)
	case "block":
		e.args(a.Args)
	case "integer":
		e.words = append(e.words, "1")
	case "double":
		e.words = append(e.words, "1.5")
	case "unix-time":
		e.words = append(e.words, "1700000000")
	case "pattern":
		e.words = append(e.words, "p*")
	default:
		e.words = append(e.words, "s")
	}
}

// keywords are the words some command's keys are found by, or skipped
// with. Examples are also built with each as the value of every string
// argument and as the name of the first key, so that a value or a key
// spelt like a keyword is seen not to be taken for one.
var keywords = []string{
	"STORE", "STOREDIST", "STREAMS", "KEYS", "BY", "GET", "LIMIT", "COUNT",
	"BLOCK", "GROUP", "AUTH", "AUTH2", "COPY", "REPLACE", "NOACK", "WEIGHTS",
	"AGGREGATE", "0", "1", "2",
}

// docExamples returns command lines for every command of the table but
// the containers, built from the stored COMMAND DOCS: each variant of
// example as built, in lower case, and with the keywords in the places of
// strings and of the first key.
func docExamples(t *testing.T) [][]string {
	raw, err := os.ReadFile("internal/cmdgen/spec/command-docs.json")
	if err != nil {
		t.Fatal(err)
	}
	var docs map[string]docEntry
	if err := json.Unmarshal(raw, &docs); err != nil {
		t.Fatal(err)
	}
	flat := map[string][]*docArg{}
	for name, d := range docs {
		flat[strings.ToUpper(name)] = d.Args
		for sub, sd := range d.Subs {
			flat[strings.ToUpper(strings.ReplaceAll(sub, "|", " "))] = sd.Args
		}
	}
	var out [][]string
	for _, ci := range knownCommands {
		if ci.nwords == 1 && containerCommands[ci.Name] {
			continue
		}
		for variant := range 3 {
			e := &example{variant: variant, words: strings.Fields(ci.Name)}
			e.args(flat[ci.Name])
			out = append(out, e.words)
			lower := make([]string, len(e.words))
			for i, w := range e.words {
				lower[i] = strings.ToLower(w)
			}
			out = append(out, lower)
			for _, kw := range keywords {
				values, key := slices.Clone(e.words), slices.Clone(e.words)
				for i := ci.nwords; i < len(e.words); i++ {
					if values[i] == "s" {
						values[i] = kw
					}
					if key[i] == "k1" {
						key[i] = kw
					}
				}
				out = append(out, values, key)
			}
		}
	}
	return out
}

// serverQuirks are command lines on which commandKeys knowingly differs
// from COMMAND GETKEYS, with the reason.
var serverQuirks = map[string]string{
	// The server looks for STREAMS from the fourth word on without
	// reading the options before it, so a consumer named streams there
	// is taken for the keyword. The command's stream is a: the server
	// redirects it to the slot of STREAMS, where it is not.
	`XREADGROUP COUNT 1 GROUP g streams STREAMS a 0`: "server reads STREAMS blindly",
}

// matchServer compares commandKeys on each of lines with reply, what
// COMMAND GETKEYS answered for it. Where the server finds keys, commandKeys
// must find the same (in any order: the server lists GEORADIUS's
// destinations in its own); where it finds none, commandKeys must find
// none either, or give up. It returns the names of the commands that
// agreed with keys.
func matchServer(t *testing.T, lines [][]string, replies []any) map[string]bool {
	t.Helper()
	agreed := map[string]bool{}
	for i, l := range lines {
		if serverQuirks[strings.Join(l, " ")] != "" {
			continue
		}
		ci, cmd := encodeCommand(t, l...)
		pos, st := commandKeys(nil, ci, cmd)
		var keys []string
		for _, k := range appendKeys(nil, cmd, pos) {
			keys = append(keys, string(k))
		}
		var want []string
		switch r := replies[i].(type) {
		case redistest.ReplyError:
			// The server finds no keys: a command without any, a command
			// that cannot be read, or one with shard channels, which the
			// server routes by slot but does not call keys.
			if st != keysFound || len(keys) == 0 {
				continue
			}
			if ci.has(flagPubSub) {
				agreed[ci.Name] = true
				continue
			}
			t.Errorf("%q: commandKeys %q, %v; server: %v", l, keys, st, r)
			continue
		case []any:
			for _, k := range r {
				want = append(want, fmt.Sprint(k))
			}
		default:
			t.Errorf("%q: GETKEYS replied %#v", l, r)
			continue
		}
		if len(want) == 0 && (st != keysFound || len(keys) == 0) {
			continue // a script's numkeys the server will refuse
		}
		slices.Sort(want)
		if got := slices.Sorted(slices.Values(keys)); st != keysFound || !slices.Equal(got, want) {
			t.Errorf("%q: commandKeys %q, %v; server %q", l, keys, st, want)
			continue
		}
		if len(want) > 0 {
			agreed[ci.Name] = true
		}
	}
	return agreed
}

// getKeys asks srv for the keys of each of lines.
func getKeys(t *testing.T, srv *redistest.Server, lines [][]string) []any {
	t.Helper()
	cmds := make([][]string, len(lines))
	for i, l := range lines {
		cmds[i] = append([]string{"COMMAND", "GETKEYS"}, l...)
	}
	replies, err := srv.Pipeline(cmds...)
	if err != nil {
		t.Fatal(err)
	}
	return replies
}

// TestCommandKeysMatchServer compares commandKeys with COMMAND GETKEYS of
// a real server, the positions the server routes a command by in a
// cluster, for command lines of every command of the table built from
// its documented syntax (its options, keywords in its values and keys,
// lower case), and for keyCases.
func TestCommandKeysMatchServer(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	lines := docExamples(t)
	for _, tt := range keyCases {
		lines = append(lines, tt.args)
	}
	agreed := matchServer(t, lines, getKeys(t, srv, lines))
	var movable []string
	for _, ci := range knownCommands {
		if (ci.FirstKey > 0 || ci.has(flagMovableKeys)) && !agreed[ci.Name] {
			movable = append(movable, ci.Name)
		}
	}
	if len(movable) > 0 {
		t.Errorf("no example of the commands with keys %v agrees with the server", movable)
	}
	t.Logf("%d command lines, %d commands with keys agreed", len(lines), len(agreed))
}

// TestCommandKeysMatchServerSweep compares commandKeys with COMMAND
// GETKEYS on lines of words drawn at random (from a fixed seed) for the
// commands whose keys move with their arguments: keywords in every
// place, trailing, repeated, where the server will refuse to run the
// command but still routes it by the keys it finds there. XREAD and
// XREADGROUP are left out: the server finds their keys without reading
// the options before STREAMS (see serverQuirks), which only differs on
// options no valid command has; keyCases has theirs.
func TestCommandKeysMatchServerSweep(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	words := append(slices.Clone(keywords), "store", "streams", "keys", "", "a", "b", "c", "d", "km", "LEFT", "MIN", "3")
	var names []string
	for _, ci := range knownCommands {
		if ci.has(flagMovableKeys) && ci.Name != "XREAD" && ci.Name != "XREADGROUP" {
			names = append(names, ci.Name)
		}
	}
	rnd := rand.New(rand.NewPCG(7, 11))
	var lines [][]string
	for len(lines) < 20000 {
		ci := commandTable[names[rnd.IntN(len(names))]]
		l := []string{ci.Name}
		for range max(-ci.Arity-1, 1) + rnd.IntN(9) {
			l = append(l, words[rnd.IntN(len(words))])
		}
		lines = append(lines, l)
	}
	matchServer(t, lines, getKeys(t, srv, lines))
}

// TestCommandTableMatchesServer compares the command table with the
// COMMAND INFO of the installed server: every command and subcommand is
// there, with the same arity, key positions and flags. The read-only flag
// sends a read to a replica, where a write fails with READONLY; the key
// positions route it. A name, subcommand or not, is found in any case.
func TestCommandTableMatchesServer(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	reply, err := srv.Do("COMMAND", "INFO")
	if err != nil {
		t.Fatal(err)
	}
	infos, ok := reply.([]any)
	if !ok {
		t.Fatalf("COMMAND INFO replied %#v", reply)
	}
	seen := map[string]bool{}
	var check func(e any)
	check = func(e any) {
		f, ok := e.([]any)
		if !ok || len(f) < 10 {
			t.Fatalf("COMMAND INFO entry %#v", e)
		}
		name := strings.ToUpper(strings.ReplaceAll(fmt.Sprint(f[0]), "|", " "))
		seen[name] = true
		ci := commandTable[name]
		if ci == nil {
			t.Errorf("%s: not in the table", name)
			return
		}
		var flags cmdFlags
		var names []string
		for _, fl := range f[2].([]any) {
			names = append(names, fmt.Sprint(fl))
			if b, ok := serverFlags[fmt.Sprint(fl)]; ok {
				flags |= b
			}
		}
		const mask = flagWrite | flagReadonly | flagBlocking | flagAdmin | flagPubSub | flagNoScript |
			flagLoading | flagStale | flagFast | flagNoMulti | flagMovableKeys | flagNoAuth
		// WAIT may hold its connection for its timeout, which the
		// server does not flag.
		want := flags
		if name == "WAIT" {
			want |= flagBlocking
		}
		if got := ci.Flags & mask; got != want {
			t.Errorf("%s: table flags %b, server %v", name, got, names)
		}
		if ci.has(flagReadonly) && ci.has(flagWrite) {
			t.Errorf("%s: flagged both read-only and write", name)
		}
		if ci.Arity != int(f[1].(int64)) || ci.FirstKey != int(f[3].(int64)) || ci.LastKey != int(f[4].(int64)) || ci.Step != int(f[5].(int64)) {
			t.Errorf("%s: table arity %d keys %d,%d,%d; server %v %v,%v,%v", name, ci.Arity, ci.FirstKey, ci.LastKey, ci.Step, f[1], f[3], f[4], f[5])
		}
		// Found by Do in lower case, with as many words as it needs.
		words := strings.Fields(strings.ToLower(name))
		for len(words) < max(ci.Arity, -ci.Arity, ci.nwords+1) {
			words = append(words, "x")
		}
		if got, _ := encodeCommand(t, words...); got != ci {
			t.Errorf("%q: found the entry of %s, want %s", words, got.Name, name)
		}
		for _, sub := range f[9].([]any) {
			check(sub)
		}
	}
	for _, e := range infos {
		check(e)
	}
	for name := range commandTable {
		if !seen[name] {
			t.Errorf("%s: in the table, unknown to the server", name)
		}
	}
}

// serverFlags are the COMMAND INFO flags the table keeps, by name.
var serverFlags = map[string]cmdFlags{
	"write": flagWrite, "readonly": flagReadonly, "blocking": flagBlocking,
	"admin": flagAdmin, "pubsub": flagPubSub, "noscript": flagNoScript,
	"loading": flagLoading, "stale": flagStale, "fast": flagFast,
	"no_multi": flagNoMulti, "movablekeys": flagMovableKeys, "no_auth": flagNoAuth,
}

// TestClusterRoutesByServerKeys runs on a cluster commands the server
// refuses to run but still finds keys in: a last STORE, an odd XREAD,
// MIGRATE with KEYS last, SORT with a word after STORE spelt like an
// option. Each goes to the node of the keys the server finds, whose
// refusal is the reply, rather than to any master, which would redirect
// it first; none is refused here as CROSSSLOT for keys the server does
// not see. A name with a space is no command to the server, which says
// so.
func TestClusterRoutesByServerKeys(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{})
	for _, s := range cl.Servers() {
		s.MustDo(t, "CONFIG", "RESETSTAT")
	}
	for _, tt := range []struct {
		args []any
		want string
	}{
		{[]any{"SORT", "{k}a", "STORE"}, "syntax error"},
		{[]any{"sort", "{k}a", "store", "{k}d", "store"}, "syntax error"},
		{[]any{"SORT", "{k}a", "STORE", "store", "{k}d"}, "syntax error"},
		{[]any{"GEORADIUS", "{k}a", 15, 37, 200, "km", "STORE"}, "syntax error"},
		{[]any{"GEORADIUSBYMEMBER", "{k}a", "m", 200, "km", "storedist"}, "syntax error"},
		{[]any{"XREAD", "STREAMS", "{k}a", "{k}b", "0"}, "Unbalanced"},
		{[]any{"MIGRATE", "127.0.0.1", 1, "{k}a", 0, 100, "KEYS"}, "KEYS option"},
		{[]any{"OBJECT ENCODING", "{k}a"}, "unknown command"},
	} {
		// A command without keys goes to a master picked at random:
		// several tries make it near certain that one lands elsewhere.
		for range 6 {
			v, err := c.Do(ctx, tt.args...)
			if err != nil || v.Err() == nil || !strings.Contains(v.Err().Error(), tt.want) {
				t.Errorf("%q: %v, %v; want the server's error %q", tt.args, v, err, tt.want)
				break
			}
			// A pipeline's error is its command's: the reply is what counts.
			vs, _ := c.Pipeline(NoTransaction).Do(tt.args...).Exec(ctx)
			if len(vs) != 1 || vs[0].Err() == nil || !strings.Contains(vs[0].Err().Error(), tt.want) {
				t.Errorf("%q in a pipeline: %v; want the server's error %q", tt.args, vs, tt.want)
				break
			}
		}
	}
	for _, s := range cl.Servers() {
		info, _ := s.MustDo(t, "INFO", "errorstats").(string)
		if strings.Contains(info, "errorstat_MOVED") {
			t.Errorf("%s redirected commands: %s", s.Addr, info)
		}
	}
}

// A command of keys each followed by its value (MSET, MSETNX) cut short
// after a key is refused before it is sent, with an *ArityError that says
// a value is missing, as the server refuses it by its arity. On a cluster
// it went out unsplit and, its keys lying in several slots, came back
// CROSSSLOT. Whole pairs still go out.
func TestKeyValueCommandsTakeWholePairs(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t, 0)
	ctx := ctxT(t)
	one, err := NewClient(Options{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	cc, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	var names []string
	for name, ci := range commandTable {
		if ci.Step > 1 && ci.LastKey == -1 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if !slices.Contains(names, "MSET") || !slices.Contains(names, "MSETNX") {
		t.Fatalf("commands of key and value pairs in the table: %v; want MSET and MSETNX among them", names)
	}
	refused := func(what string, err error) {
		t.Helper()
		var ae *ArityError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), "want a value after each key") || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("%s: err = %v; want an *ArityError, not sent, saying a value after each key is wanted", what, err)
		}
	}
	for _, name := range names {
		short := []any{name, "{t}a", "1", "{t}b"}
		// The server refuses the same line by its arity.
		if r, err := srv.Do(name, "{t}a", "1", "{t}b"); err != nil || !strings.Contains(fmt.Sprint(r), "wrong number of arguments") {
			t.Errorf("the server's reply to %v: %v, %v; want a wrong number of arguments", short, r, err)
		}
		for _, c := range []struct {
			what string
			c    *Client
		}{{"one server", one}, {"cluster", cc}} {
			_, err := c.c.Do(ctx, short...)
			refused(c.what+": Do "+fmt.Sprint(short), err)
			_, err = c.c.Do(ctx, name, "a", "1", "b")
			refused(c.what+": Do of keys in several slots", err)
			_, err = c.c.Pipeline(NoTransaction).Do(short...).Exec(ctx)
			refused(c.what+": plain pipeline", err)
			_, err = c.c.Pipeline().Do(short...).Exec(ctx)
			refused(c.what+": transaction", err)
			if v, err := c.c.Do(ctx, name, "{t}a", "1", "{t}b", "2"); err != nil || v.Err() != nil {
				t.Errorf("%s: %s of whole pairs = %v, %v", c.what, name, v, err)
			}
		}
	}
	if n, err := srv.Do("EXISTS", "{t}b"); err != nil || n != int64(1) {
		t.Errorf("EXISTS {t}b on the server = %v, %v; want 1, set by the whole pairs only", n, err)
	}
}

// Subcommands that change their connection's state on servers newer than
// the table (CLIENT NO-TOUCH, CLIENT SETINFO) are refused where any such
// command is, before they are sent: found as the CLIENT container they
// went out on the shared connection, and on such a server would have
// changed it for every caller. (The server here is older than they are,
// so a command sent would be answered with its refusal, an error reply,
// not a *UsageError.)
func TestNewerConnStateCommandsAreRefused(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	args := map[string][]any{
		"CLIENT NO-TOUCH": {"CLIENT", "NO-TOUCH", "ON"},
		"CLIENT SETINFO":  {"client", "setinfo", "lib-name", "mine"},
	}
	refused := func(what string, err error) {
		t.Helper()
		var ue *UsageError
		if !errors.As(err, &ue) || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("%s: err = %v; want a *UsageError, not sent", what, err)
		}
	}
	for _, name := range newerConnStateCommands {
		a, ok := args[name]
		if !ok {
			t.Fatalf("no command line for %s", name)
		}
		_, err := c.Do(ctx, a...)
		refused(name+" on the Client", err)
		_, err = c.Pipeline(NoTransaction).Do(a...).Exec(ctx)
		refused(name+" in a pipeline", err)
		tx, err := c.Watch(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Do(ctx, a...)
		refused(name+" on a Tx", err)
		tx.Close()
	}
	// A name with a space is still no command to the server.
	if v, err := c.Do(ctx, "CLIENT NO-TOUCH", "ON"); err != nil || !strings.Contains(fmt.Sprint(v), "unknown command") {
		t.Errorf(`Do("CLIENT NO-TOUCH", "ON") = %v, %v; want the server's unknown command`, v, err)
	}
	if id, err := c.Do(ctx, "CLIENT", "ID"); err != nil || id.Err() != nil {
		t.Errorf("CLIENT ID = %v, %v", id, err)
	}
}
