package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goSig renders a signature as the Go parameter list and the encoder's
// wire steps, which is what the generated code is made of.
func goSig(s *signature) (params, steps string) {
	var ps, ss []string
	for _, p := range s.Params {
		if p.Variadic {
			ps = append(ps, p.Name+" ..."+p.Type)
		} else {
			ps = append(ps, p.Name+" "+p.Type)
		}
	}
	if s.HasRest {
		ps = append(ps, "args ...any")
	}
	for _, st := range s.Steps {
		if st.IsLit {
			ss = append(ss, st.Lit)
		} else {
			ss = append(ss, st.P.Enc+"("+st.P.Name+")")
		}
	}
	return strings.Join(ps, ", "), strings.Join(ss, " ")
}

func TestDerive(t *testing.T) {
	cmds, _, err := loadSpec("spec")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cmd    string
		picks  []string
		params string
		steps  string
	}{
		{"SET", nil, "key string, value any, args ...any", "key(key) arg(value)"},
		{"DEL", nil, "keys ...string", "key(keys)"},
		{"LINSERT", nil, "key string, where string, pivot any, element any", "key(key) str(where) arg(pivot) arg(element)"},
		{"HSET", nil, "key string, args ...any", "key(key)"},
		{"ZADD", nil, "key string, args ...any", "key(key)"},
		{"GETRANGE", nil, "key string, start int64, end int64", "key(key) int(start) int(end)"},
		{"ZCOUNT", nil, "key string, min any, max any", "key(key) arg(min) arg(max)"},
		// Keys are variadic only when what follows them moves to the front.
		{"BLPOP", nil, "timeout float64, keys ...string", "key(keys) float(timeout)"},
		// A required block is written out, its token first.
		{"XREADGROUP", nil, "group string, consumer string, args ...any", "GROUP str(group) str(consumer)"},
		// A choice between a token and a plain value is a string.
		{"XGROUP CREATE", nil, "key string, groupname string, id string, args ...any", "key(key) str(groupname) str(id)"},
		// [section [section ...]] at the end is variadic, not args.
		{"INFO", nil, "sections ...string", "str(sections)"},
		// The docs list no arguments but the arity wants some.
		{"COMMAND GETKEYS", nil, "args ...any", ""},
		{"LPOP", []string{"key", "count"}, "key string, count int64", "key(key) int(count)"},
		{"ZRANGE", []string{"key", "start", "stop", "withscores", "..."}, "key string, start any, stop any, args ...any", "key(key) arg(start) arg(stop) WITHSCORES"},
		{"FUNCTION LOAD", []string{"replace", "function-code"}, "functionCode string", "REPLACE str(functionCode)"},
	}
	for _, tt := range tests {
		c := cmds[tt.cmd]
		if c == nil {
			t.Fatalf("%s not in the spec", tt.cmd)
		}
		s, err := derive(c, tt.picks, nil)
		if err != nil {
			t.Errorf("%s: %v", tt.cmd, err)
			continue
		}
		params, steps := goSig(s)
		if params != tt.params || steps != tt.steps {
			t.Errorf("%s %v:\n got (%s) [%s]\nwant (%s) [%s]", tt.cmd, tt.picks, params, steps, tt.params, tt.steps)
		}
	}
}

func TestSyntax(t *testing.T) {
	cmds, _, err := loadSpec("spec")
	if err != nil {
		t.Fatal(err)
	}
	for cmd, want := range map[string]string{
		"SET":     "key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]",
		"LINSERT": "key <BEFORE | AFTER> pivot element",
		"HSET":    "key field value [field value ...]",
		"SORT":    "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA] [STORE destination]",
	} {
		if got := syntax(cmds[cmd].Args); got != want {
			t.Errorf("%s:\n got %s\nwant %s", cmd, got, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	for summary, want := range map[string]string{
		"Get the value of a key": "returns the value of a key",
		"Remove and get the first element in a list, or block until one is available": "removes and returns the first element in a list, or blocks until one is available",
		"Incrementally iterate the keys space":                                        "incrementally iterates the keys space",
		"Echo the given string":                                                       "echoes the given string",
		"Modify or create the rules for a specific ACL user.":                         "modifies or creates the rules for a specific ACL user",
		"Ping the server":        "pings the server",
		"Deleting all functions": "deletes all functions",
	} {
		if got := describe(summary); got != want {
			t.Errorf("describe(%q) = %q, want %q", summary, got, want)
		}
	}
}

func TestLowerCamel(t *testing.T) {
	for _, tt := range []struct {
		doc    string
		plural bool
		want   string
	}{
		{"unix-time-seconds", false, "unixTimeSeconds"},
		{"client-id", true, "clientIDs"},
		{"destination-db", false, "destinationDB"},
		{"key", true, "keys"},
		{"ip:port", false, "ipPort"},
	} {
		if got := lowerCamel(tt.doc, tt.plural); got != tt.want {
			t.Errorf("lowerCamel(%q, %v) = %q, want %q", tt.doc, tt.plural, got, tt.want)
		}
	}
}

// TestGeneratedUpToDate: the generated files in the repository are what
// the generator writes now from the stored spec (go generate leaves them
// unchanged).
func TestGeneratedUpToDate(t *testing.T) {
	out := t.TempDir()
	if err := run("spec", out, "wrappers.txt"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"commands_gen.go", "commands_table_gen.go"} {
		want, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what the generator writes: run go generate in the repository root", name)
		}
	}
}

// TestMethodsOnEveryRunner: each typed command is a method of *Client and
// of *Tx alike (not of a helper type they embed), running the command
// through that receiver's own run, besides the *Pipeline and *Stream
// methods that queue it.
func TestMethodsOnEveryRunner(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "commands_gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(string(src), "\n") {
		if recv, ok := strings.CutPrefix(line, "func ("); ok {
			recv, _, _ = strings.Cut(recv, ")")
			counts[recv]++
		}
	}
	n := counts["p *Pipeline"]
	if n < 200 {
		t.Fatalf("%d Pipeline methods, want the generated set (receivers: %v)", n, counts)
	}
	want := map[string]int{"c *Client": n, "t *Tx": n, "p *Pipeline": n, "s *Stream": n}
	if len(counts) != len(want) {
		t.Errorf("receivers %v, want %v", counts, want)
	}
	for recv, w := range want {
		if counts[recv] != w {
			t.Errorf("%d methods on (%s), want %d", counts[recv], recv, w)
		}
	}
	for _, body := range []string{"c.run(ctx, w)", "t.run(ctx, w)"} {
		if got := strings.Count(string(src), body); got != n {
			t.Errorf("%q appears %d times, want %d", body, got, n)
		}
	}
}

func TestPolicies(t *testing.T) {
	cmds, _, err := loadSpec("spec")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][2]string{
		"DBSIZE":        {"all_shards", "agg_sum"},
		"KEYS":          {"all_shards", ""},
		"MGET":          {"multi_shard", ""},
		"CONFIG SET":    {"all_nodes", "all_succeeded"},
		"SCRIPT EXISTS": {"all_shards", "agg_logical_and"},
		"GET":           {"", ""},
	} {
		c := cmds[name]
		if got := [2]string{c.RequestPolicy, c.ResponsePolicy}; got != want {
			t.Errorf("%s: policies %q, want %q", name, got, want)
		}
	}
	for _, tt := range []struct {
		tips []string
		err  string
	}{
		{[]string{"nondeterministic_output", "request_policy:all_shards"}, ""},
		{[]string{"request_policy:everywhere"}, `unknown tip "request_policy:everywhere"`},
		{[]string{"response_policy:agg_avg"}, `unknown tip "response_policy:agg_avg"`},
		{[]string{"response_policy:agg_sum", "response_policy:agg_min"}, "two response_policy tips"},
	} {
		err := (&command{}).setPolicies(tt.tips)
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("setPolicies(%q) = %v, want %q", tt.tips, err, tt.err)
		}
	}
}

// TestNoteAndExampleInDoc: a note= sentence ends the doc comment of the
// Client and Tx methods, and an eg= example shows even for a command whose
// docs list no arguments (COMMAND GETKEYS), where args holds a whole
// command that the reader cannot guess.
func TestNoteAndExampleInDoc(t *testing.T) {
	dir := t.TempDir()
	wrappers := filepath.Join(dir, "wrappers.txt")
	lines := "COMMAND GETKEYS\tCommandGetKeys\tstrings\teg=\"SET\", \"k\", \"v\"\n" +
		"ZADD\tZAdd\tint\tnote=With INCR the reply is a score: call ZAddIncr instead.\n"
	if err := os.WriteFile(wrappers, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run("spec", dir, wrappers); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, "commands_gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	// Doc comments as one line each, whatever their wrapping.
	text := strings.Join(strings.Fields(strings.ReplaceAll(string(src), "\n//", "")), " ")
	for _, want := range []string{
		`args holds the arguments after the command name, such as "SET", "k", "v"; the server's documentation does not list them. func (c *Client) CommandGetKeys(`,
		`With INCR the reply is a score: call ZAddIncr instead. func (c *Client) ZAdd(`,
		`With INCR the reply is a score: call ZAddIncr instead. func (t *Tx) ZAdd(`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the generated docs do not say %q", want)
		}
	}
}
