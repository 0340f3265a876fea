package redpipe

import (
	"encoding/json"
	"fmt"
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

	{[]string{"EVAL", "return 1", "0"}, nil, keysFound},
	{[]string{"EVAL", "return 1", "2", "a", "b", "x", "y"}, []string{"a", "b"}, keysFound},
	{[]string{"EVALSHA", "abc", "1", "a", "x"}, []string{"a"}, keysFound},
	{[]string{"EVAL_RO", "return 1", "1", "a"}, []string{"a"}, keysFound},
	{[]string{"EVALSHA_RO", "abc", "2", "a", "b"}, []string{"a", "b"}, keysFound},
	{[]string{"FCALL", "f", "1", "a", "x"}, []string{"a"}, keysFound},
	{[]string{"FCALL_RO", "f", "0", "x"}, nil, keysFound},
	{[]string{"EVAL", "return 1", "3", "a", "b"}, nil, keysInvalid},
	{[]string{"EVAL", "return 1", "-1", "a"}, nil, keysInvalid},
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
	{[]string{"XREAD", "STREAMS", "a", "b", "0"}, nil, keysInvalid},
	{[]string{"XREAD", "COUNT", "1", "STREAMS"}, nil, keysInvalid},

	{[]string{"SORT", "a"}, []string{"a"}, keysFound},
	{[]string{"SORT", "a", "BY", "w_*", "LIMIT", "0", "5", "GET", "#", "GET", "o_*", "DESC", "ALPHA", "STORE", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"SORT", "a", "store", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"SORT", "a", "BY", "store", "GET", "store"}, []string{"a"}, keysFound},
	{[]string{"SORT_RO", "a", "BY", "w_*", "GET", "#"}, []string{"a"}, keysFound},
	{[]string{"SORT", "a", "STORE", "d1", "STORE", "d2"}, []string{"a", "d2"}, keysFound},
	{[]string{"SORT", "a", "LIMIT", "0", "STORE", "d"}, []string{"a"}, keysFound},
	{[]string{"SORT", "a", "STORE"}, nil, keysInvalid},

	{[]string{"GEORADIUS", "a", "15", "37", "200", "km"}, []string{"a"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "WITHDIST", "COUNT", "3", "ANY", "ASC", "STORE", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STOREDIST", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"GEORADIUSBYMEMBER", "a", "m", "200", "km", "STORE", "d"}, []string{"a", "d"}, keysFound},
	{[]string{"GEORADIUSBYMEMBER", "a", "m", "200", "km", "COUNT", "1"}, []string{"a"}, keysFound},
	{[]string{"GEORADIUSBYMEMBER", "store", "store", "200", "km", "STORE", "d"}, []string{"store", "d"}, keysFound},
	// Both destinations count, the first of each kind.
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STORE", "d1", "STORE", "d2"}, []string{"a", "d1"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STOREDIST", "d1", "STORE", "d2"}, []string{"a", "d1", "d2"}, keysFound},
	{[]string{"GEORADIUS", "a", "15", "37", "200", "km", "STORE", "d1", "STOREDIST", "d2", "STORE", "d3"}, []string{"a", "d1", "d2"}, keysFound},

	{[]string{"MIGRATE", "127.0.0.1", "1", "a", "0", "100"}, []string{"a"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "a", "0", "100", "COPY", "REPLACE"}, []string{"a"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "KEYS", "a", "b"}, []string{"a", "b"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "COPY", "AUTH", "keys", "KEYS", "a"}, []string{"a"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "AUTH2", "keys", "keys", "keys", "a", "b"}, []string{"a", "b"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "", "0", "100", "KEYS", "a", "KEYS", "b"}, []string{"a", "KEYS", "b"}, keysFound},
	{[]string{"MIGRATE", "127.0.0.1", "1", "a", "0", "100", "KEYS", "b"}, nil, keysInvalid},
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
// the last choice of each one-of. Keys are k1, k2, ...; a numkeys counts
// the keys that follow it.
type example struct {
	variant int
	words   []string
	nkeys   int
}

func (e *example) args(as []*docArg) {
	numkeys := -1 // the word that counts the keys of the next argument
	for _, a := range as {
		before := e.nkeys
		if !slices.Contains(a.Flags, "optional") || e.variant == 1 {
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
	if slices.Contains(a.Flags, "multiple") && e.variant == 1 {
		times = 2
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

// docExamples returns two command lines for each command of the table
// that has keys, built from the stored COMMAND DOCS.
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
		if ci.FirstKey == 0 && !ci.has(flagMovableKeys) {
			continue
		}
		for variant := range 2 {
			e := &example{variant: variant, words: strings.Fields(ci.Name)}
			e.args(flat[ci.Name])
			out = append(out, e.words)
		}
	}
	return out
}

// TestCommandKeysMatchServer compares commandKeys with COMMAND GETKEYS of
// a real server for two command lines of every command of the table that
// has keys, built from its documented syntax, and for keyCases.
func TestCommandKeysMatchServer(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	lines := docExamples(t)
	for _, tt := range keyCases {
		lines = append(lines, tt.args)
	}
	cmds := make([][]string, len(lines))
	for i, l := range lines {
		cmds[i] = append([]string{"COMMAND", "GETKEYS"}, l...)
	}
	replies, err := srv.Pipeline(cmds...)
	if err != nil {
		t.Fatal(err)
	}
	agreed := map[string]bool{}
	for i, l := range lines {
		keys, st := keysOf(t, l...)
		ci, _ := encodeCommand(t, l...)
		switch r := replies[i].(type) {
		case redistest.ReplyError:
			// The server finds no keys: a command without any, a command
			// that cannot be read, or one with shard channels, which the
			// server routes by slot but does not call keys.
			if st == keysInvalid || (st == keysFound && len(keys) == 0) {
				break
			}
			if ci.has(flagPubSub) && st == keysFound {
				agreed[ci.Name] = true
				break
			}
			t.Errorf("%q: commandKeys %q, %v; server: %v", l, keys, st, r)
		case []any:
			var want []string
			for _, k := range r {
				want = append(want, fmt.Sprint(k))
			}
			if st == keysInvalid && i >= len(lines)-len(keyCases) {
				// TestCommandKeys has the reason; the server's keys of a
				// command it will refuse to run do not matter.
				t.Logf("%q: invalid here, server: %q", l, want)
				break
			}
			// The server lists GEORADIUS's destinations in its own
			// order; positions here are in command order.
			slices.Sort(want)
			got := slices.Sorted(slices.Values(keys))
			if st != keysFound || !slices.Equal(got, want) {
				t.Errorf("%q: commandKeys %q, %v; server %q", l, keys, st, want)
				break
			}
			agreed[ci.Name] = true
		default:
			t.Errorf("%q: GETKEYS replied %#v", l, r)
		}
	}
	var movable []string
	for _, ci := range knownCommands {
		if ci.has(flagMovableKeys) && !agreed[ci.Name] {
			movable = append(movable, ci.Name)
		}
	}
	if len(movable) > 0 {
		t.Errorf("no example of the movable-keys commands %v agrees with the server", movable)
	}
	if len(agreed) < 150 {
		t.Errorf("the server agrees on %d commands, want most of the table's", len(agreed))
	}
	t.Logf("%d command lines of %d commands checked", len(lines), len(agreed))
}
