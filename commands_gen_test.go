package redpipe

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// encode runs one generated encoder on a fresh buffer.
func encode(f func(w *cmdBuf)) *cmdBuf {
	w := &cmdBuf{}
	f(w)
	return w
}

// wire builds the RESP2 request for a command line, the form every
// encoder must produce.
func wire(words ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(words)) + "\r\n")
	for _, w := range words {
		b.WriteString("$" + strconv.Itoa(len(w)) + "\r\n" + w + "\r\n")
	}
	return b.String()
}

func TestGeneratedEncoders(t *testing.T) {
	tests := []struct {
		name string
		enc  func(w *cmdBuf)
		want string
	}{
		{"GET", func(w *cmdBuf) { encGet(w, "k") }, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"},
		{"SET EX", func(w *cmdBuf) { encSet(w, "k", "v", "EX", 10) }, wire("SET", "k", "v", "EX", "10")},
		{"SET int value", func(w *cmdBuf) { encSet(w, "k", 42) }, wire("SET", "k", "42")},
		{"DEL", func(w *cmdBuf) { encDel(w, "a", "b", "c") }, wire("DEL", "a", "b", "c")},
		{"CONFIG GET", func(w *cmdBuf) { encConfigGet(w, "maxmemory") }, wire("CONFIG", "GET", "maxmemory")},
		{"LINSERT", func(w *cmdBuf) { encLInsert(w, "l", "BEFORE", "x", 7) }, wire("LINSERT", "l", "BEFORE", "x", "7")},
		{"ZADD", func(w *cmdBuf) { encZAdd(w, "z", "NX", 1.5, "a", 2, "b") }, wire("ZADD", "z", "NX", "1.5", "a", "2", "b")},
		// The keys go first on the wire though they come last in Go.
		{"BLPOP", func(w *cmdBuf) { encBLPop(w, 0.5, "a", "b") }, wire("BLPOP", "a", "b", "0.5")},
		{"INCRBYFLOAT", func(w *cmdBuf) { encIncrByFloat(w, "k", 2.25) }, wire("INCRBYFLOAT", "k", "2.25")},
		{"HSET", func(w *cmdBuf) { encHSet(w, "h", "f", "v", "g", 1) }, wire("HSET", "h", "f", "v", "g", "1")},
		{"XREADGROUP", func(w *cmdBuf) { encXReadGroup(w, "g", "c", "STREAMS", "s", ">") }, wire("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">")},
		{"ZRANGE WITHSCORES", func(w *cmdBuf) { encZRangeWithScores(w, "z", 0, -1) }, wire("ZRANGE", "z", "0", "-1", "WITHSCORES")},
		{"LPOP count", func(w *cmdBuf) { encLPopCount(w, "l", 3) }, wire("LPOP", "l", "3")},
		{"OBJECT ENCODING", func(w *cmdBuf) { encObjectEncoding(w, "k") }, wire("OBJECT", "ENCODING", "k")},
		{"PING", func(w *cmdBuf) { encPing(w) }, wire("PING")},
	}
	for _, tt := range tests {
		w := encode(tt.enc)
		if w.err != nil {
			t.Errorf("%s: %v", tt.name, w.err)
			continue
		}
		if got := string(w.buf); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
		first := strings.Fields(tt.name)[0]
		if len(w.cmds) != 1 || !strings.HasPrefix(w.cmds[0].Name(), first) {
			t.Errorf("%s: command records %+v for one %s", tt.name, w.cmds, first)
			continue
		}
		if block := w.blocks(0); block != (first == "BLPOP") {
			t.Errorf("%s: recorded as blocking: %v", tt.name, block)
		}
	}
}

func TestGeneratedEncoderArity(t *testing.T) {
	for _, tt := range []struct {
		name string
		enc  func(w *cmdBuf)
	}{
		{"DEL", func(w *cmdBuf) { encDel(w) }},
		{"HSET", func(w *cmdBuf) { encHSet(w, "h") }},
		{"CONFIG GET", func(w *cmdBuf) { encConfigGet(w) }},
		{"BLPOP", func(w *cmdBuf) { encBLPop(w, 0) }},
	} {
		w := encode(tt.enc)
		var ae *ArityError
		if !errors.As(w.err, &ae) {
			t.Errorf("%s with too few arguments: err = %v, want an *ArityError", tt.name, w.err)
			continue
		}
		if ae.Command != tt.name {
			t.Errorf("ArityError.Command = %q, want %q", ae.Command, tt.name)
		}
	}
}

// TestGeneratedWordCounts checks every encoder's fixed word count against
// the table's arity, and that no typed method reaches a command the client
// refuses to run on a shared connection.
func TestGeneratedWordCounts(t *testing.T) {
	byVar := map[string]*commandInfo{}
	for name, ci := range commandTable {
		v := "cmd"
		for _, w := range strings.FieldsFunc(strings.ToLower(name), func(r rune) bool { return r == ' ' || r == '-' || r == '_' }) {
			v += strings.ToUpper(w[:1]) + w[1:]
		}
		byVar[v] = ci
	}
	f, err := parser.ParseFile(token.NewFileSet(), "commands_gen.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		call, ok := node.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "start" || len(call.Args) != 2 {
			return true
		}
		n++
		id := call.Args[0].(*ast.Ident)
		ci := byVar[id.Name]
		if ci == nil {
			t.Errorf("%s is not in commandTable", id.Name)
			return false
		}
		// The count is a literal, plus len() terms for variadic arguments.
		count := call.Args[1]
		variable := false
		if b, ok := count.(*ast.BinaryExpr); ok {
			for ; ok; b, ok = count.(*ast.BinaryExpr) {
				count = b.X
			}
			variable = true
		}
		fixed, err := strconv.Atoi(count.(*ast.BasicLit).Value)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ci.Arity > 0 && !variable && fixed != ci.Arity,
			ci.Arity > 0 && variable && fixed > ci.Arity,
			ci.Arity < 0 && !variable && fixed < -ci.Arity:
			t.Errorf("%s: encoder writes %d words (variable: %v), arity %d", ci.Name, fixed, variable, ci.Arity)
		}
		if ci.has(flagConnState) {
			t.Errorf("%s has a typed method but cannot run on a shared connection", ci.Name)
		}
		return false
	})
	if n < 200 {
		t.Errorf("found %d encoders, want the generated set", n)
	}
}

func TestBlocksOnlyWhenItMayBlock(t *testing.T) {
	w := &cmdBuf{}
	w.do([]any{"XREAD", "COUNT", 1, "STREAMS", "s", "0"})
	w.do([]any{"xread", "block", 10, "STREAMS", "s", "$"})
	w.do([]any{"BLPOP", "q", 1})
	w.do([]any{"GET", "block"})
	w.do([]any{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "blocks", ">"})
	// A stream, group or consumer named BLOCK is not the option.
	w.do([]any{"XREAD", "STREAMS", "BLOCK", "0"})
	w.do([]any{"XREAD", "COUNT", 5, "STREAMS", "a", "BLOCK", "0", "0"})
	w.do([]any{"XREADGROUP", "GROUP", "BLOCK", "block", "STREAMS", "s", ">"})
	w.do([]any{"XREADGROUP", "GROUP", "BLOCK", "block", "BLOCK", 5, "STREAMS", "s", ">"})
	want := []bool{false, true, true, false, false, false, false, false, true}
	for i, wb := range want {
		if got := w.blocks(i); got != wb {
			t.Errorf("command %d (%s): blocks = %v, want %v", i, w.cmds[i].Name(), got, wb)
		}
	}
}

// TestUnknownCommandEntries: a command the table does not know gets an
// entry of its own, found again by its name in any case, whose name
// errors carry, a subcommand's name as one word too; past the bound, new
// names share one nameless entry instead of growing the registry.
func TestUnknownCommandEntries(t *testing.T) {
	a := unknownCommand("my.module.cmd")
	if b := unknownCommand("MY.MODULE.CMD"); a != b || a.Name != "MY.MODULE.CMD" || commandByID(a.id) != a {
		t.Fatalf("entries %+v and %+v for one unknown command", a, b)
	}
	var w cmdBuf
	w.do([]any{"my.module.cmd", "x"})
	if w.err != nil || w.cmds[0].Name() != "MY.MODULE.CMD" {
		t.Fatalf("Do of an unknown command recorded %q (%v)", w.cmds[0].Name(), w.err)
	}
	// A subcommand's table name as one word is no command the server
	// knows: it is sent as given, not checked against the subcommand.
	w = cmdBuf{}
	w.do([]any{"object encoding", "k"})
	if ci := w.cmds[0].info(); w.err != nil || ci.Name != "OBJECT ENCODING" || ci.Arity != 0 || int(ci.id) < len(knownCommands) {
		t.Fatalf("Do of a subcommand's name as one word recorded %+v (%v)", ci, w.err)
	}
	defer func(n int) { maxUnknownCommands = n }(maxUnknownCommands)
	maxUnknownCommands = len(*extraCommands.Load()) + 2
	// Names new to this process, however often the test runs in it.
	prefix := "BOUND.TEST." + strconv.Itoa(maxUnknownCommands) + "."
	var got []*commandInfo
	for i := range 4 {
		got = append(got, unknownCommand(strings.ToLower(prefix)+strconv.Itoa(i)))
	}
	if got[0].Name != prefix+"0" || got[1].Name != prefix+"1" {
		t.Fatalf("below the bound: %q, %q", got[0].Name, got[1].Name)
	}
	if got[2] != unlistedCommand || got[3] != unlistedCommand || unlistedCommand.Name != "" {
		t.Fatalf("past the bound: %+v, %+v; want the shared entry", got[2], got[3])
	}
	if n := len(*extraCommands.Load()); n != maxUnknownCommands {
		t.Fatalf("the registry grew to %d past its bound of %d", n, maxUnknownCommands)
	}
}

// BITFIELD under OVERFLOW FAIL answers nil for the operation it stopped
// and the results of the others, which were applied: the method returns
// them all rather than an error that hides the applied ones.
func TestBitFieldOverflowFail(t *testing.T) {
	srv := redistest.Start(t)
	for _, proto := range []int{2, 3} {
		c, ctx := protocolClient(t, srv.Addr, proto), ctxT(t)
		key := "bf" + strconv.Itoa(proto)
		r, err := c.BitField(ctx, key, "INCRBY", "u2", 100, 1, "OVERFLOW", "FAIL", "INCRBY", "u2", 102, 4)
		if err != nil || len(r) != 2 {
			t.Fatalf("RESP%d: BitField = %v, %v", proto, r, err)
		}
		if n, err := r[0].Int64(); err != nil || n != 1 || !r[1].IsNil() {
			t.Errorf("RESP%d: BitField = %v, want [1 nil]", proto, r)
		}
		if got, err := c.BitFieldRO(ctx, key, "GET", "u2", 100); err != nil || len(got) != 1 || got[0] != 1 {
			t.Errorf("RESP%d: the applied INCRBY reads back as %v, %v", proto, got, err)
		}
	}
}

// TestTypedRepliesAlikeInBothProtocols runs typed methods whose replies
// differ in shape between RESP2 and RESP3, or that answer nil or an empty
// aggregate, on one call and in both kinds of pipeline, and checks that
// each gives the same result under both protocols: a nil reply is ErrNil,
// an empty one an empty result, and a list of pairs reads as RESP2's flat
// list.
func TestTypedRepliesAlikeInBothProtocols(t *testing.T) {
	srv := redistest.Start(t)
	seed := func() {
		srv.MustDo(t, "FLUSHALL")
		srv.MustDo(t, "ZADD", "z", "1.5", "a", "inf", "b", "-inf", "c", "2", "d")
		srv.MustDo(t, "RPUSH", "l", "a", "b", "a", "c")
		srv.MustDo(t, "SADD", "s", "x")
		srv.MustDo(t, "HSET", "h", "f", "v")
		srv.MustDo(t, "SET", "k", "old")
		srv.MustDo(t, "XADD", "x", "1-1", "a", "1")
		srv.MustDo(t, "XADD", "x", "1-2", "b", "2")
		srv.MustDo(t, "XGROUP", "CREATE", "x", "g", "0")
		srv.MustDo(t, "XREADGROUP", "GROUP", "g", "c", "STREAMS", "x", ">")
		srv.MustDo(t, "XDEL", "x", "1-1")
	}
	strs := func(v Value, err error) (any, error) {
		if err != nil {
			return nil, err
		}
		return v.Strings()
	}
	texts := func(vs []Value, err error) (any, error) {
		if err != nil {
			return nil, err
		}
		out := make([]string, len(vs))
		for i, v := range vs {
			if v.IsNil() {
				out[i] = "nil"
				continue
			}
			if out[i], err = v.Text(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	str := func(s string, err error) (any, error) { return s, err }
	num := func(n int64, err error) (any, error) { return n, err }
	flt := func(f float64, err error) (any, error) { return f, err }
	list := func(ss []string, err error) (any, error) { return ss, err }
	scored := func(ms []Scored, err error) (any, error) { return ms, err }
	type call struct {
		name string
		run  func(context.Context, *Client) (any, error)
		want any // nil: the reply is nil, and the method returns ErrNil
	}
	calls := []call{
		{"ZSCORE inf", func(ctx context.Context, c *Client) (any, error) { return flt(c.ZScore(ctx, "z", "b")) }, math.Inf(1)},
		{"ZSCORE -inf", func(ctx context.Context, c *Client) (any, error) { return flt(c.ZScore(ctx, "z", "c")) }, math.Inf(-1)},
		{"ZSCORE missing member", func(ctx context.Context, c *Client) (any, error) { return flt(c.ZScore(ctx, "z", "q")) }, nil},
		{"ZADD NX INCR of a member", func(ctx context.Context, c *Client) (any, error) {
			return flt(c.ZAddIncr(ctx, "z", "NX", "INCR", 1, "a"))
		}, nil},
		{"ZMSCORE", func(ctx context.Context, c *Client) (any, error) { return texts(c.ZMScore(ctx, "z", "a", "q", "b")) }, []string{"1.5", "nil", "inf"}},
		{"ZPOPMIN", func(ctx context.Context, c *Client) (any, error) { return scored(c.ZPopMin(ctx, "z")) }, []Scored{{"c", math.Inf(-1)}}},
		{"ZPOPMIN count", func(ctx context.Context, c *Client) (any, error) { return scored(c.ZPopMin(ctx, "z", 2)) }, []Scored{{"a", 1.5}, {"d", 2}}},
		{"ZPOPMAX count of one", func(ctx context.Context, c *Client) (any, error) { return scored(c.ZPopMax(ctx, "z", 1)) }, []Scored{{"b", math.Inf(1)}}},
		{"ZPOPMAX of a missing key", func(ctx context.Context, c *Client) (any, error) { return scored(c.ZPopMax(ctx, "q")) }, []Scored{}},
		{"ZMPOP of empty sets", func(ctx context.Context, c *Client) (any, error) { return strs(c.ZMPop(ctx, 1, "q", "MIN")) }, nil},
		{"BZPOPMIN timeout", func(ctx context.Context, c *Client) (any, error) { return texts(c.BZPopMin(ctx, 0.01, "q")) }, nil},
		{"LRANGE of a missing key", func(ctx context.Context, c *Client) (any, error) { return list(c.LRange(ctx, "q", 0, -1)) }, []string{}},
		{"LPOP count of a missing key", func(ctx context.Context, c *Client) (any, error) { return list(c.LPopCount(ctx, "q", 2)) }, nil},
		{"LPOS COUNT", func(ctx context.Context, c *Client) (any, error) { return strs(c.LPos(ctx, "l", "a", "COUNT", 0)) }, []string{"0", "2"}},
		{"LPOS COUNT no match", func(ctx context.Context, c *Client) (any, error) { return strs(c.LPos(ctx, "l", "q", "COUNT", 0)) }, []string{}},
		{"LPOS no match", func(ctx context.Context, c *Client) (any, error) { return strs(c.LPos(ctx, "l", "q")) }, nil},
		{"LMPOP of empty lists", func(ctx context.Context, c *Client) (any, error) { return strs(c.LMPop(ctx, 1, "q", "LEFT")) }, nil},
		{"BLPOP timeout", func(ctx context.Context, c *Client) (any, error) { return texts(c.BLPop(ctx, 0.01, "q")) }, nil},
		{"MGET with a missing key", func(ctx context.Context, c *Client) (any, error) { return texts(c.MGet(ctx, "k", "q")) }, []string{"old", "nil"}},
		{"SMEMBERS", func(ctx context.Context, c *Client) (any, error) { return list(c.SMembers(ctx, "s")) }, []string{"x"}},
		{"SMEMBERS of a missing key", func(ctx context.Context, c *Client) (any, error) { return list(c.SMembers(ctx, "q")) }, []string{}},
		{"SPOP count of a missing key", func(ctx context.Context, c *Client) (any, error) { return list(c.SPopN(ctx, "q", 2)) }, []string{}},
		{"HGETALL of a missing key", func(ctx context.Context, c *Client) (any, error) { return c.HGetAll(ctx, "q") }, map[string]string{}},
		{"HRANDFIELD WITHVALUES", func(ctx context.Context, c *Client) (any, error) { return strs(c.HRandFieldWithValues(ctx, "h", 1)) }, []string{"f", "v"}},
		{"SET GET of a missing key", func(ctx context.Context, c *Client) (any, error) { return str(c.SetGet(ctx, "q-set", "v")) }, nil},
		{"SET GET", func(ctx context.Context, c *Client) (any, error) { return str(c.SetGet(ctx, "k", "new")) }, "old"},
		{"GETEX of a missing key", func(ctx context.Context, c *Client) (any, error) { return str(c.GetEx(ctx, "q")) }, nil},
		{"OBJECT ENCODING of a missing key", func(ctx context.Context, c *Client) (any, error) { return str(c.ObjectEncoding(ctx, "q")) }, nil},
		{"MEMORY USAGE of a missing key", func(ctx context.Context, c *Client) (any, error) { return num(c.MemoryUsage(ctx, "q")) }, nil},
		{"TTL of a missing key", func(ctx context.Context, c *Client) (any, error) { return num(c.TTL(ctx, "q")) }, int64(-2)},
		{"PTTL without expiry", func(ctx context.Context, c *Client) (any, error) { return num(c.PTTL(ctx, "k")) }, int64(-1)},
		{"EXPIRETIME without expiry", func(ctx context.Context, c *Client) (any, error) { return num(c.ExpireTime(ctx, "k")) }, int64(-1)},
		{"GEODIST of a missing member", func(ctx context.Context, c *Client) (any, error) { return flt(c.GeoDist(ctx, "q", "a", "b")) }, nil},
		{"XRANGE", func(ctx context.Context, c *Client) (any, error) {
			v, err := c.XRange(ctx, "x", "-", "+")
			if err != nil {
				return nil, err
			}
			m, err := v.Map()
			if err != nil {
				return nil, err
			}
			return m["1-2"].Strings()
		}, []string{"b", "2"}},
		{"XREAD past the last entry", func(ctx context.Context, c *Client) (any, error) { return strs(c.XRead(ctx, "STREAMS", "x", "1-2")) }, nil},
		{"XREADGROUP with nothing new", func(ctx context.Context, c *Client) (any, error) {
			return strs(c.XReadGroup(ctx, "g", "c", "STREAMS", "x", ">"))
		}, nil},
		{"XREADGROUP of a deleted pending entry", func(ctx context.Context, c *Client) (any, error) {
			v, err := c.XReadGroup(ctx, "g", "c", "STREAMS", "x", "0")
			if err != nil {
				return nil, err
			}
			streams, err := v.Map()
			if err != nil {
				return nil, err
			}
			entries, err := streams["x"].Map()
			if err != nil {
				return nil, err
			}
			return []bool{entries["1-1"].IsNil(), entries["1-2"].IsNil()}, nil
		}, []bool{true, false}},
	}
	run := func(proto int, c *Client) map[string]any {
		got := make(map[string]any)
		ctx := ctxT(t)
		seed()
		for _, tc := range calls {
			x, err := tc.run(ctx, c)
			switch {
			case tc.want == nil && errors.Is(err, ErrNil):
				got[tc.name] = nil
			case err != nil:
				t.Errorf("RESP%d: %s: %v", proto, tc.name, err)
			default:
				got[tc.name] = x
			}
		}
		return got
	}
	for _, proto := range []int{2, 3} {
		c := protocolClient(t, srv.Addr, proto)
		got := run(proto, c)
		for _, tc := range calls {
			if x, ok := got[tc.name]; ok && !reflect.DeepEqual(x, tc.want) {
				t.Errorf("RESP%d: %s = %#v, want %#v", proto, tc.name, x, tc.want)
			}
		}
	}
}

// TestTypedReadsOfPipelinedRepliesAlikeInBothProtocols reads the replies of
// commands whose shape differs between RESP2 and RESP3 from a transaction
// and from a plain pipeline, with the accessors the typed methods use.
func TestTypedReadsOfPipelinedRepliesAlikeInBothProtocols(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ZADD", "z", "1.5", "a", "inf", "b")
	srv.MustDo(t, "HSET", "h", "f", "v")
	srv.MustDo(t, "SADD", "s", "x")
	type result struct {
		zrange []string
		score  float64
		hash   map[string]string
		set    []string
		mget   []Value
		empty  []string
		config map[string]string
		nilErr error
	}
	want := result{
		zrange: []string{"a", "1.5", "b", "inf"}, score: math.Inf(1),
		hash: map[string]string{"f": "v"}, set: []string{"x"}, empty: []string{},
		config: map[string]string{"maxmemory": "0"}, nilErr: ErrNil,
	}
	for _, proto := range []int{2, 3} {
		c, ctx := protocolClient(t, srv.Addr, proto), ctxT(t)
		for _, p := range []*Pipeline{c.Pipeline(), c.Pipeline(NoTransaction)} {
			kind := p.kind()
			rs, err := p.ZRangeWithScores("z", 0, -1).ZScore("z", "b").HGetAll("h").SMembers("s").
				MGet("q").LRange("q", 0, -1).ConfigGet("maxmemory").ZScore("z", "q").Exec(ctx)
			if err != nil || len(rs) != 8 {
				t.Fatalf("RESP%d %s: %d replies, %v", proto, kind, len(rs), err)
			}
			var r result
			errs := make([]error, 7)
			r.zrange, errs[0] = rs[0].Strings()
			r.score, errs[1] = rs[1].Float64()
			r.hash, errs[2] = rs[2].StringMap()
			r.set, errs[3] = rs[3].Strings()
			r.mget, errs[4] = rs[4].Slice()
			r.empty, errs[5] = rs[5].Strings()
			r.config, errs[6] = rs[6].StringMap()
			_, r.nilErr = rs[7].Float64()
			if err := errors.Join(errs...); err != nil {
				t.Errorf("RESP%d %s: %v", proto, kind, err)
			}
			if len(r.mget) != 1 || !r.mget[0].IsNil() {
				t.Errorf("RESP%d %s: MGET of a missing key = %v, want [nil]", proto, kind, r.mget)
			}
			r.mget = nil
			if !reflect.DeepEqual(r, want) {
				t.Errorf("RESP%d %s: %+v, want %+v", proto, kind, r, want)
			}
		}
	}
}
