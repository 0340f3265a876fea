package redpipe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/redistest"
)

// cmdCalls reads how many times the server ran a command, from INFO
// commandstats, over a connection of its own.
func cmdCalls(t *testing.T, srv *redistest.Server, name string) int {
	t.Helper()
	v, err := srv.Do("INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(v.(string), "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+name+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

func texts(t *testing.T, vs []Value) []string {
	t.Helper()
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.String()
	}
	return out
}

func TestPipelineBasics(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	if err := c.Set(ctx, "bing", "baz"); err != nil {
		t.Fatal(err)
	}
	p := c.Pipeline()
	p.Set("foo", "bar")
	p.Get("bing")
	if p.Len() != 2 {
		t.Fatalf("Len = %d, want 2", p.Len())
	}
	multis := cmdCalls(t, srv, "multi")
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(t, replies); fmt.Sprint(got) != "[OK baz]" {
		t.Fatalf("replies = %v, want [OK baz]", got)
	}
	if cmdCalls(t, srv, "multi") != multis+1 {
		t.Fatal("a default pipeline did not run in MULTI/EXEC")
	}
	// Empty again, and reusable, with chained calls.
	if p.Len() != 0 {
		t.Fatalf("Len after Exec = %d", p.Len())
	}
	replies, err = p.Set("foo", "bar").SAdd("faz", "baz").Incr("auto_number").Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := replies[2].Int64(); n != 1 || replies[1].String() != "1" {
		t.Fatalf("chained replies = %v", replies)
	}
	// Discard empties without sending.
	p.Set("never", "sent").Discard()
	if p.Len() != 0 {
		t.Fatal("Discard left commands queued")
	}
	if replies, err := p.Exec(ctx); err != nil || replies != nil {
		t.Fatalf("Exec after Discard = %v, %v", replies, err)
	}
	if _, err := c.Get(ctx, "never"); !errors.Is(err, ErrNil) {
		t.Fatal("a discarded command was sent")
	}
}

func TestEmptyExecMakesNoRoundTrip(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	c.Ping(ctx)
	before := cmdCalls(t, srv, "ping") + cmdCalls(t, srv, "multi") + cmdCalls(t, srv, "exec")
	for _, p := range []*Pipeline{c.Pipeline(), c.Pipeline(NoTransaction)} {
		if replies, err := p.Exec(ctx); err != nil || replies != nil {
			t.Fatalf("empty Exec = %v, %v", replies, err)
		}
	}
	c.Close()
	// Even on a closed client an empty Exec has nothing to do.
	if _, err := c.Pipeline().Exec(ctx); err != nil {
		t.Fatalf("empty Exec on a closed client: %v", err)
	}
	if after := cmdCalls(t, srv, "ping") + cmdCalls(t, srv, "multi") + cmdCalls(t, srv, "exec"); after != before {
		t.Fatalf("empty Exec reached the server (%d -> %d commands)", before, after)
	}
}

func TestNoTransactionStillBatches(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	multis := cmdCalls(t, srv, "multi")
	p := c.Pipeline(NoTransaction)
	for i := range 100 {
		p.Set(fmt.Sprint("k", i), i)
	}
	p.Get("k42")
	replies, err := p.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 101 || replies[100].String() != "42" {
		t.Fatalf("got %d replies, last %v", len(replies), replies[len(replies)-1])
	}
	if cmdCalls(t, srv, "multi") != multis {
		t.Fatal("NoTransaction pipeline sent MULTI")
	}
}

func TestPipelineErrorsStayWithTheirCommand(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	c.LPush(ctx, "list", "x")
	for _, opts := range [][]PipelineOption{nil, {NoTransaction}} {
		replies, err := c.Pipeline(opts...).Set("a", "1").Get("missing").Incr("list").Incr("a").Exec(ctx)
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Index != 2 || ce.Command != "INCR" {
			t.Fatalf("batch error = %v, want the INCR at index 2", err)
		}
		if !strings.HasPrefix(err.Error(), "command 3 (INCR) of ") || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("batch error text = %q", err)
		}
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "WRONGTYPE" {
			t.Fatalf("batch error does not unwrap to the server's error: %v", err)
		}
		if len(replies) != 4 {
			t.Fatalf("replies = %v", replies)
		}
		if !replies[1].IsNil() {
			t.Fatalf("GET missing = %v, want nil", replies[1])
		}
		if replies[2].Err() == nil {
			t.Fatal("INCR on a list has no error in its reply")
		}
		if n, err := replies[3].Int64(); err != nil || n < 2 {
			t.Fatalf("INCR a = %d, %v: the commands after the error must run", n, err)
		}
		c.Set(ctx, "a", "0")
	}
	// A nil reply alone is never the batch's error.
	if _, err := c.Pipeline().Get("missing").Get("missing2").Exec(ctx); err != nil {
		t.Fatalf("nil replies gave a batch error: %v", err)
	}
	// ErrorsInReplies: only the replies carry the error.
	replies, err := c.Pipeline(ErrorsInReplies).Incr("list").Incr("a").Exec(ctx)
	if err != nil {
		t.Fatalf("ErrorsInReplies still returned %v", err)
	}
	if replies[0].Err() == nil || replies[1].Err() != nil {
		t.Fatalf("replies = %v", replies)
	}
}

func TestExecAbortAppliesNothing(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	_, err := c.Pipeline().Set("x", "1").Do("NOSUCHCOMMAND", "arg").Incr("y").Exec(ctx)
	if !errors.Is(err, ErrNotApplied) {
		t.Fatalf("err = %v, want one matching ErrNotApplied", err)
	}
	var ae *ExecAbortError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %T %v, want *ExecAbortError", err, err)
	}
	if len(ae.Failed) != 1 || ae.Failed[0].Index != 1 || ae.Failed[0].Command != "NOSUCHCOMMAND" ||
		!strings.Contains(ae.Failed[0].Err.Error(), "unknown command") {
		t.Fatalf("Failed = %+v", ae.Failed)
	}
	if !strings.Contains(err.Error(), "command 2 (NOSUCHCOMMAND)") || !strings.Contains(err.Error(), "not applied") {
		t.Fatalf("error text %q does not name the refused command", err)
	}
	for _, k := range []string{"x", "y"} {
		if _, err := c.Get(ctx, k); !errors.Is(err, ErrNil) {
			t.Fatalf("key %s exists after EXECABORT: %v", k, err)
		}
	}
}

func TestRuntimeErrorInsideExec(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	c.RPush(ctx, "list", "a")
	replies, err := c.Pipeline().Set("before", "1").Incr("list").Set("after", "2").Exec(ctx)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 1 || ce.In != "transaction" {
		t.Fatalf("err = %v, want the INCR at index 1 of the transaction", err)
	}
	if errors.Is(err, ErrNotApplied) {
		t.Fatal("a runtime error inside EXEC is reported as not applied, but the rest was applied")
	}
	if replies[0].String() != "OK" || replies[1].Err() == nil || replies[2].String() != "OK" {
		t.Fatalf("replies = %v", replies)
	}
	for _, k := range []string{"before", "after"} {
		if _, err := c.Get(ctx, k); err != nil {
			t.Fatalf("%s not applied: %v", k, err)
		}
	}
}

func TestLargePipelineOnDedicatedConnection(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	const n = 50000
	for _, opts := range [][]PipelineOption{nil, {NoTransaction}} {
		p := c.Pipeline(opts...)
		for range n {
			p.Incr("big")
		}
		p.Get("big")
		replies, err := p.Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != n+1 {
			t.Fatalf("%d replies", len(replies))
		}
		for i := range n {
			if v, _ := replies[i].Int64(); (v-1)%n != int64(i) {
				t.Fatalf("reply %d = %v", i, replies[i])
			}
		}
	}
	if v, _ := c.Get(ctx, "big"); v != strconv.Itoa(2*n) {
		t.Fatalf("big = %s", v)
	}
	if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
		t.Fatalf("pool open=%d idle=%d: the large batches did not use a dedicated connection", open, idle)
	}
}

func TestScripts(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	s := NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	// Not loaded yet: EVALSHA answers NOSCRIPT and Run falls back to EVAL.
	v, err := s.Run(ctx, c, []string{"sc"}, 5)
	if n, _ := v.Int64(); err != nil || n != 5 {
		t.Fatalf("Run = %v, %v", v, err)
	}
	if _, err = s.Run(ctx, c, []string{"sc"}, 1); err != nil {
		t.Fatal(err)
	}
	// In a pipeline and a transaction, after a SCRIPT FLUSH, never NOSCRIPT.
	for _, opts := range [][]PipelineOption{nil, {NoTransaction}} {
		if err := c.ScriptFlush(ctx); err != nil {
			t.Fatal(err)
		}
		replies, err := c.Pipeline(opts...).RunScript(s, []string{"sc"}, 10).RunScript(s, []string{"sc"}, 100).Exec(ctx)
		if err != nil {
			t.Fatalf("pipeline with a script the server has not seen: %v", err)
		}
		if a, _ := replies[1].Int64(); a-must(replies[0].Int64()) != 100 {
			t.Fatalf("replies = %v", replies)
		}
	}
	// On a Tx too.
	c.ScriptFlush(ctx)
	tx, err := c.Watch(ctx, "sc")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := s.Run(ctx, tx, []string{"sc"}, 1); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Get(ctx, "sc"); got != "227" {
		t.Fatalf("sc = %s, want 227", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

type user struct {
	Name string
	Age  int
}

func TestDecoders(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	c.SetDecoder("info", DecodeInfo)
	v, err := c.Do(ctx, "INFO")
	if err != nil {
		t.Fatal(err)
	}
	d, err := v.Decoded()
	if err != nil {
		t.Fatal(err)
	}
	sections := d.(map[string]map[string]string)
	if !strings.HasPrefix(sections["server"]["redis_version"], "7.") || sections["memory"]["used_memory"] == "" {
		t.Fatalf("INFO decoded to %v", sections)
	}

	c.HSet(ctx, "user:1", "name", "ada", "age", 36)
	decodeUser := func(v Value) (any, error) {
		m, err := v.StringMap()
		if err != nil {
			return nil, err
		}
		age, err := strconv.Atoi(m["age"])
		if err != nil {
			return nil, fmt.Errorf("age: %w", err)
		}
		return user{Name: m["name"], Age: age}, nil
	}
	replies, err := c.Pipeline(WithDecoder("HGETALL", decodeUser)).HGetAll("user:1").Info("server").Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := replies[0].Decoded(); err != nil || u != (user{"ada", 36}) {
		t.Fatalf("HGETALL decoded to %v, %v", u, err)
	}
	if d, _ := replies[1].Decoded(); d == nil {
		t.Fatal("the client's INFO decoder did not run in the pipeline")
	}
	// A decoder's failure is the command's error.
	c.HSet(ctx, "user:2", "name", "bob", "age", "old")
	_, err = c.Pipeline(WithDecoder("HGETALL", decodeUser)).HGetAll("user:2").Exec(ctx)
	var de *DecodeError
	if !errors.As(err, &de) || de.Command != "HGETALL" {
		t.Fatalf("err = %v, want a DecodeError for HGETALL", err)
	}
	// Client.SetDecoder(name, nil) removes it.
	c.SetDecoder("INFO", nil)
	if v, _ := c.Do(ctx, "INFO"); must(v.Decoded()) != nil {
		t.Fatal("decoder still runs after removal")
	}
}

// A Decoder registered under a name that no reply carries ("CONFIG|GET",
// two spaces, a subcommand the table lacks) was kept without a word and
// never ran. SetDecoder refuses it, naming it, and a pipeline made with
// it refuses its Exec before sending anything; a name as replies carry
// it, in any case, is taken and its Decoder runs.
func TestDecoderNameMatchingNoCommandIsRefused(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	dec := func(Value) (any, error) { return "decoded", nil }
	for _, name := range []string{"CONFIG|GET", "config|get", "CONFIG  GET", " GET", "GET ", "GET\tX", "CONFIG\tGET",
		"GET X", "CONFIG NOSUCH", "CONFIG GET X", ""} {
		err := c.SetDecoder(name, dec)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), strconv.Quote(name)) || !strings.Contains(err.Error(), `"CONFIG GET"`) {
			t.Errorf("SetDecoder(%q) = %v; want a *UsageError that names it and the form expected", name, err)
		}
		if c.decoderTable() != nil && len(*c.decoderTable()) != 0 {
			t.Fatalf("SetDecoder(%q) registered %v", name, *c.decoderTable())
		}
		srv.MustDo(t, "DEL", "dn:n")
		for _, opts := range [][]PipelineOption{{NoTransaction}, nil} {
			replies, err := c.Pipeline(append(opts, WithDecoder(name, dec))...).Incr("dn:n").Exec(ctx)
			if !errors.As(err, &ue) || replies != nil || !strings.Contains(err.Error(), strconv.Quote(name)) {
				t.Errorf("Exec of a pipeline WithDecoder(%q) = %v, %v; want a *UsageError that names it", name, replies, err)
			}
			if opts == nil && !errors.Is(err, ErrNotApplied) {
				t.Errorf("Exec of a transaction WithDecoder(%q) = %v; want it not applied", name, err)
			}
		}
		if n := srv.MustDo(t, "EXISTS", "dn:n"); n != int64(0) {
			t.Errorf("a pipeline WithDecoder(%q) sent its INCR", name)
		}
	}
	for _, tc := range []struct{ name, cmd, sub string }{
		{"config get", "CONFIG", "GET"}, {"Config Get", "CONFIG", "GET"}, {"echo", "ECHO", "x"},
		{"JSON.GET", "", ""},
	} {
		if err := c.SetDecoder(tc.name, dec); err != nil {
			t.Errorf("SetDecoder(%q) = %v", tc.name, err)
			continue
		}
		if tc.cmd != "" {
			args := []any{tc.cmd, tc.sub}
			if tc.cmd == "CONFIG" {
				args = append(args, "maxmemory")
			}
			v, err := c.Do(ctx, args...)
			if d, _ := v.Decoded(); err != nil || d != "decoded" {
				t.Errorf("Do(%v) with a Decoder registered as %q = %v, %v, decoded %v", args, tc.name, v, err, d)
			}
			replies, err := c.Pipeline(NoTransaction, WithDecoder(tc.name, nil)).Do(args...).Exec(ctx)
			if d, _ := replies[0].Decoded(); err != nil || d != nil {
				t.Errorf("a pipeline WithDecoder(%q, nil) decoded %v (%v)", tc.name, d, err)
			}
		}
		if err := c.SetDecoder(tc.name, nil); err != nil {
			t.Errorf("SetDecoder(%q, nil) = %v", tc.name, err)
		}
	}
	if m := c.decoderTable(); m != nil && len(*m) != 0 {
		t.Errorf("decoders left after their removal: %v", *m)
	}
}

// A Decoder is found by the name its reply carries (cmdMeta.Name), and
// SetDecoder takes a name only in the form decoderName makes of it: the
// two must agree for every command a reply can come from, or a Decoder
// would be refused for a command that has replies, or kept for a name no
// reply carries. Every entry of the table and every newer command the
// table lacks is taken, spelled in upper or lower case, under the very
// name that a command line of its words, sent by Do, carries; and so is a
// command the table does not know (a module's, a newer server's).
func TestDecoderNamesMatchReplyNames(t *testing.T) {
	entries := make(map[string]*commandInfo, len(commandTable)+len(newerCommands))
	for name, ci := range commandTable {
		entries[name] = ci
	}
	for name, ci := range newerCommands {
		entries[name] = ci
	}
	for name, ci := range entries {
		if ci.has(flagConnState) && name != "WATCH" && name != "UNWATCH" {
			// Refused everywhere, or sent by redpipe alone: no reply of
			// it reaches a Decoder (see TestDecoderOfRefusedCommandRefused).
			var ue *UsageError
			if _, err := decoderName(strings.ToLower(name)); !errors.As(err, &ue) {
				t.Errorf("decoderName(%q) = %v; want a *UsageError", name, err)
			}
			continue
		}
		for _, spelled := range []string{name, strings.ToLower(name)} {
			if got, err := decoderName(spelled); err != nil || got != name {
				t.Errorf("decoderName(%q) = %q, %v; want %q", spelled, got, err, name)
			}
		}
		// The command line of its words, in lower case, and as many
		// arguments as its arity asks.
		words := strings.Fields(strings.ToLower(name))
		n := max(ci.Arity, -ci.Arity, len(words)+1)
		args := make([]any, 0, n)
		for _, w := range words {
			args = append(args, w)
		}
		for len(args) < n {
			args = append(args, "x")
		}
		var w cmdBuf
		w.do(args)
		if len(w.cmds) != 1 {
			t.Errorf("Do%v queued %d commands", args, len(w.cmds))
			continue
		}
		if got := w.cmds[0].Name(); got != name {
			t.Errorf("the reply of Do%v carries the name %q; a Decoder for %q would not run", args, got, name)
		}
	}
	for _, spelled := range []string{"json.get", "FT.SEARCH", "Bf.Add", "waitaof", "hgetex"} {
		name, err := decoderName(spelled)
		if err != nil {
			t.Errorf("decoderName(%q) = %v", spelled, err)
			continue
		}
		var w cmdBuf
		w.do([]any{spelled, "k", "v"})
		if got := w.cmds[0].Name(); got != name {
			t.Errorf("the reply of %s carries the name %q, but its Decoder is kept as %q", spelled, got, name)
		}
	}
}

// Past maxUnknownCommands, a command the table does not know is recorded
// under one nameless entry, so that arbitrary names cannot grow the
// registry for ever. A Decoder registered for such a command (a module's,
// a newer server's) was taken, and then never ran: its replies carried no
// name. The name a Decoder is registered under keeps an entry of its own,
// whatever the bound, and its replies carry it. The server here knows GET
// and STRLEN as DNGET and DNSTRLEN, names the table lacks.
func TestDecoderOfUnknownCommandPastBound(t *testing.T) {
	c, _ := newTestClient(t, Options{}, "--rename-command", "GET", "DNGET", "--rename-command", "STRLEN", "DNSTRLEN")
	ctx := ctxT(t)
	defer func(n int) { maxUnknownCommands = n }(maxUnknownCommands)
	unknownMu.Lock()
	maxUnknownCommands = len(*extraCommands.Load())
	unknownMu.Unlock()
	if err := c.Set(ctx, "dn:k", "value"); err != nil {
		t.Fatal(err)
	}
	dec := func(v Value) (any, error) { return "decoded " + v.String(), nil }
	if err := c.SetDecoder("dnget", dec); err != nil {
		t.Fatal(err)
	}
	v, err := c.Do(ctx, "dnget", "dn:k")
	if d, _ := v.Decoded(); err != nil || d != "decoded value" {
		t.Errorf("DNGET with a Decoder registered by SetDecoder = %v, %v, decoded %v; want it decoded", v, err, d)
	}
	replies, err := c.Pipeline(NoTransaction, WithDecoder("DnStrlen", dec)).Do("dnstrlen", "dn:k").Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := replies[0].Decoded(); d != "decoded 5" {
		t.Errorf("DNSTRLEN in a pipeline WithDecoder = %v, decoded %v; want it decoded", replies[0], d)
	}
}

func TestPipelineRefusesStateCommands(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	_, err := c.Pipeline(NoTransaction).Set("a", 1).Do("MULTI").Exec(ctx)
	var ce *CommandError
	var ue *UsageError
	if !errors.As(err, &ce) || ce.Index != 1 || !errors.As(err, &ue) {
		t.Fatalf("err = %v, want a usage error for command 2", err)
	}
	if _, err := c.Get(ctx, "a"); !errors.Is(err, ErrNil) {
		t.Fatal("a refused batch was partly sent")
	}
	_, err = c.Pipeline().Get("a").Do("GET").Exec(ctx)
	var ae *ArityError
	if !errors.As(err, &ae) || !errors.As(err, &ce) || ce.Index != 1 {
		t.Fatalf("err = %v, want the arity error of command 2", err)
	}
}

// TestBatchTraitsKeptWhileEncoding: what a batch's sending depends on
// (whether every command reads only, whether one may block and for how
// long, the first command that cannot be queued) is gathered as commands are encoded, and
// starts afresh with the next batch.
func TestBatchTraitsKeptWhileEncoding(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	p := c.Pipeline(NoTransaction)
	traits := func(want batchTraits) {
		t.Helper()
		got, err := p.check()
		if err != nil || got != want {
			t.Fatalf("check = %+v, %v; want %+v", got, err, want)
		}
	}
	traits(batchTraits{readonly: true})
	p.Get("a").Do("mget", "a", "b")
	traits(batchTraits{readonly: true})
	p.Do("XREAD", "STREAMS", "s", "0")
	traits(batchTraits{readonly: true})
	p.Set("a", 1)
	traits(batchTraits{})
	p.Do("xread", "block", 10, "STREAMS", "s", "0")
	traits(batchTraits{blocking: true, grace: conn.Grace(10 * time.Millisecond)})
	p.BLPop(0, "q")
	traits(batchTraits{blocking: true, grace: conn.NoStallLimit})
	p.Discard()
	traits(batchTraits{readonly: true})

	// The first state command is named, however many follow.
	p.Get("a").Get("b").Do("select", 1).Do("MULTI")
	_, err := p.check()
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 2 || ce.Command != "SELECT" {
		t.Fatalf("check = %v; want SELECT, command 2, refused", err)
	}
	p.Discard()
	traits(batchTraits{readonly: true})

	// In a stream, the index counts the commands sent in earlier chunks.
	ctx := ctxT(t)
	s, _ := streamUnderWay(t, c, ctx, "k")
	s.Do("WATCH", "k1")
	if _, err := s.Close(ctx); !errors.As(err, &ce) || ce.Index != 10_000 || ce.Command != "WATCH" {
		t.Fatalf("Close = %v; want WATCH, command 10000, refused", err)
	}
}

// TestPipelinesShareRecycledBuffers: pipelines made one after another
// reuse each other's buffers, and each still sends exactly its own
// commands, used again or new, plain or transactional.
func TestPipelinesShareRecycledBuffers(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	check := func(p *Pipeline, round, n int) {
		t.Helper()
		for i := range n {
			p.Set("k"+strconv.Itoa(i), strconv.Itoa(round*n+i))
		}
		p.Get("k0")
		replies, err := p.Exec(ctx)
		if err != nil || len(replies) != n+1 {
			t.Fatalf("round %d: %d replies, %v", round, len(replies), err)
		}
		if s, _ := replies[n].Text(); s != strconv.Itoa(round*n) {
			t.Fatalf("round %d: GET k0 = %q, want %d", round, s, round*n)
		}
	}
	reused := c.Pipeline(NoTransaction)
	for round, n := range []int{5000, 300, 20000, 5000, 1} {
		check(c.Pipeline(), 2*round, n)
		check(reused, 2*round+1, n)
		if v, _ := c.Get(ctx, "k"+strconv.Itoa(n-1)); v != strconv.Itoa((2*round+1)*n+n-1) {
			t.Fatalf("round %d: last key = %q", round, v)
		}
	}
}

// testKeys returns n distinct key names.
func testKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "key:" + strconv.Itoa(i)
	}
	return keys
}

// execSets queues SET k val for every key on p, runs it and checks that
// every reply is OK.
func execSets(tb testing.TB, ctx context.Context, p *Pipeline, keys []string, val string) {
	tb.Helper()
	for _, k := range keys {
		p.Set(k, val)
	}
	execOKs(tb, ctx, p)
}

// execOKs runs p and checks that every reply is OK.
func execOKs(tb testing.TB, ctx context.Context, p *Pipeline) {
	tb.Helper()
	n := p.Len()
	replies, err := p.Exec(ctx)
	if err != nil || len(replies) != n {
		tb.Fatal(len(replies), err)
	}
	for _, r := range replies {
		if err := okReply(r, nil); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestPipelineAllocations: a new pipeline of 1000 SETs, executed and its
// replies checked, allocates a few times per batch, not per command. A
// value made at run time adds the allocation of its box, which escapes
// because arguments of other types are encoded by their methods: one per
// command, the bound.
func TestPipelineAllocations(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := context.Background()
	keys := testKeys(1000)
	val := strings.Repeat("v", 16)
	for _, tc := range []struct {
		name string
		max  float64
		run  func()
	}{
		{"constant value", 50, func() {
			p := c.Pipeline(NoTransaction)
			for _, k := range keys {
				p.Set(k, "0123456789abcdef")
			}
			execOKs(t, ctx, p)
		}},
		{"run-time value", float64(len(keys)) + 50, func() { execSets(t, ctx, c.Pipeline(NoTransaction), keys, val) }},
	} {
		tc.run()
		if n := testing.AllocsPerRun(50, tc.run); n > tc.max {
			t.Errorf("%s: a pipeline of %d SETs allocated %v times, want at most %v", tc.name, len(keys), n, tc.max)
		}
	}
}

// TestPipelineBufferSizes: a short batch stays in the pipeline's own
// storage, and a short batch after a long one on the same pipeline does
// not take a buffer of the long one's size.
func TestPipelineBufferSizes(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	p := c.Pipeline(NoTransaction)
	p.Incr("n")
	if cap(p.w.buf) != cap(p.w.firstBuf) {
		t.Fatalf("one INCR moved the pipeline to a buffer of %d bytes", cap(p.w.buf))
	}
	for range 50_000 {
		p.Incr("n")
	}
	if _, err := p.Exec(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		p.Incr("n")
	}
	if got := cap(p.w.buf); got > 16*minPooledBytes {
		t.Fatalf("100 INCRs after 50,000 took a buffer of %d bytes", got)
	}
	p.Discard()
}

// TestBlockGrace: how long a blocking command may keep the server quiet is
// read from its own timeout, in the unit the command takes; a timeout of
// 0 (for ever), or one that cannot be read, lifts the stall limit; a batch
// gets the longest of its commands'.
func TestBlockGrace(t *testing.T) {
	const never = conn.NoStallLimit
	ms := func(n float64) conn.Grace { return conn.Grace(n * float64(time.Millisecond)) }
	for _, tc := range []struct {
		args []any
		want conn.Grace
	}{
		{[]any{"BLPOP", "a", "b", "1.5"}, ms(1500)},
		{[]any{"brpop", "a", "0"}, never},
		{[]any{"BZPOPMIN", "z", 2}, ms(2000)},
		{[]any{"BRPOPLPUSH", "a", "b", "0.25"}, ms(250)},
		{[]any{"BLMOVE", "a", "b", "LEFT", "RIGHT", 3}, ms(3000)},
		{[]any{"BLMPOP", 0.5, 2, "a", "b", "LEFT"}, ms(500)},
		{[]any{"BZMPOP", 0, 1, "z", "MIN"}, never},
		{[]any{"WAIT", 1, 250}, ms(250)},
		{[]any{"WAIT", 1, 0}, never},
		{[]any{"XREAD", "COUNT", 5, "BLOCK", 100, "STREAMS", "s", "$"}, ms(100)},
		{[]any{"XREAD", "block", 0, "STREAMS", "s", "$"}, never},
		{[]any{"XREADGROUP", "GROUP", "block", "BLOCK", "BLOCK", 40, "STREAMS", "s", ">"}, ms(40)},
		// The server takes the options in any order.
		{[]any{"XREADGROUP", "BLOCK", 1000, "GROUP", "g", "c", "STREAMS", "s", ">"}, ms(1000)},
		{[]any{"XREADGROUP", "COUNT", 1, "BLOCK", 70, "GROUP", "g", "c", "NOACK", "STREAMS", "s", ">"}, ms(70)},
		{[]any{"XREADGROUP", "NOACK", "GROUP", "count", "block", "BLOCK", 0, "STREAMS", "s", ">"}, never},
		{[]any{"XREAD", "BLOCK", 20, "COUNT", 5, "STREAMS", "s", "$"}, ms(20)},
		{[]any{"BLPOP", "a", "soon"}, never},
		{[]any{"BLPOP", "a", "-1"}, never},
		// Not blocking at all: no grace.
		{[]any{"XREAD", "STREAMS", "block", "0"}, 0},
		{[]any{"GET", "a"}, 0},
	} {
		var w cmdBuf
		w.do(tc.args)
		if w.err != nil {
			t.Fatalf("%v: %v", tc.args, w.err)
		}
		if w.grace != tc.want {
			t.Errorf("%v: grace %v, want %v", tc.args, time.Duration(w.grace), time.Duration(tc.want))
		}
	}
	var w cmdBuf
	w.do([]any{"BLPOP", "a", 2})
	w.do([]any{"XREAD", "BLOCK", 3000, "STREAMS", "s", "$"})
	w.do([]any{"WAIT", 1, 10})
	if w.grace != ms(3000) {
		t.Fatalf("batch grace %v, want the longest, 3s", time.Duration(w.grace))
	}
	w.do([]any{"BLPOP", "a", 0})
	w.do([]any{"BLPOP", "a", 1})
	if w.grace != never {
		t.Fatalf("batch grace %v, want no limit once a command may block for ever", time.Duration(w.grace))
	}
}

// Script.Run without a script or a Doer to run on is refused with a usage
// error, a nil *Client or *Tx inside the interface included, which once
// panicked.
func TestScriptRunWithoutDoer(t *testing.T) {
	ctx := context.Background()
	s := NewScript("return 1")
	var nilClient *Client
	var nilTx *Tx
	var nilScript *Script
	c, _ := newTestClient(t, Options{})
	for name, run := range map[string]func() (Value, error){
		"nil Doer":   func() (Value, error) { return s.Run(ctx, nil, nil) },
		"nil Client": func() (Value, error) { return s.Run(ctx, nilClient, nil) },
		"nil Tx":     func() (Value, error) { return s.Run(ctx, nilTx, nil) },
		"nil Script": func() (Value, error) { return nilScript.Run(ctx, c, nil) },
	} {
		var ue *UsageError
		if _, err := run(); !errors.As(err, &ue) {
			t.Errorf("%s: Run = %v, want a *UsageError", name, err)
		}
	}
	if v, err := s.Run(ctx, c, nil); err != nil || v.String() != "1" {
		t.Errorf("Run on a Client = %v, %v", v, err)
	}
}

// A zero Script, made without NewScript, has no digest: Run and RunScript
// refuse it with a usage error naming what is wrong, and send nothing,
// rather than running an empty script or failing with NOSCRIPT.
func TestZeroScriptRefused(t *testing.T) {
	ctx := ctxT(t)
	c, _ := newTestClient(t, Options{})
	var zero Script
	var ue *UsageError
	if v, err := zero.Run(ctx, c, nil); !errors.As(err, &ue) || !strings.Contains(err.Error(), "NewScript") {
		t.Errorf("Run of a zero Script = %v, %v; want a *UsageError that names NewScript", v, err)
	}
	for name, opts := range map[string][]PipelineOption{"transaction": nil, "NoTransaction pipeline": {NoTransaction}} {
		replies, err := c.Pipeline(opts...).Set("zs", 1).RunScript(&zero, nil).Exec(ctx)
		var ce *CommandError
		if !errors.As(err, &ce) || !errors.As(err, &ue) || ce.Index != 1 || ce.Command != "RunScript" || !strings.Contains(err.Error(), "NewScript") {
			t.Errorf("RunScript of a zero Script in a %s = %v, %v; want a *CommandError for command 2, RunScript, that names NewScript", name, replies, err)
		}
	}
	if n, err := c.Exists(ctx, "zs"); err != nil || n != 0 {
		t.Errorf("EXISTS zs = %d, %v; want 0: nothing of the refused pipelines is sent", n, err)
	}
}

// A push message the server writes inside EXEC's array (redis 7.0 does so
// for DEBUG PROTOCOL push queued in MULTI, without counting it, and puts
// the command's own reply after it) is not taken for a reply of the
// transaction: every reply would then belong to the command before it.
// Exec fails as of unknown outcome, since the transaction ran, and the
// connection, whose replies are out of step, is replaced.
func TestPushInsideExecArray(t *testing.T) {
	c, _ := newTestClient(t, Options{Protocol: 3})
	ctx := ctxT(t)
	id := func() int64 {
		v, err := c.Do(ctx, "CLIENT", "ID")
		if err != nil {
			t.Fatal(err)
		}
		return must(v.Int64())
	}
	before := id()
	replies, err := c.Pipeline().Do("DEBUG", "PROTOCOL", "push").Do("DEBUG", "PROTOCOL", "attrib").Exec(ctx)
	if err == nil {
		t.Fatalf("Exec = %v, nil error; want an error: the first reply is the push message, not DEBUG's reply", replies)
	}
	if replies != nil || OutcomeOf(err) != OutcomeUnknown || errors.Is(err, ErrNotApplied) {
		t.Errorf("Exec = %v, %v (outcome %v); want no replies and an error of unknown outcome", replies, err, OutcomeOf(err))
	}
	if !strings.Contains(err.Error(), "push") {
		t.Errorf("error %q does not say a push message came where it may not", err)
	}
	if after := id(); after == before {
		t.Errorf("the connection that read the misplaced push (client id %d) is still in use", before)
	}
	if s, err := c.Echo(ctx, "next"); err != nil || s != "next" {
		t.Errorf("ECHO after the misplaced push = %q, %v", s, err)
	}
}

// A Pipeline is used from a Decoder of its own Exec: Exec sent the batch
// being decoded again (on a Tx it waited for the Tx its own Exec held),
// and Discard emptied the commands the Decoders were being run for,
// which panicked with an index out of range. A command the Decoder queued
// was dropped by the Exec that ran it, which said nothing of it.
func TestPipelineUsedFromOwnDecoder(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx, "pd:w")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for _, kind := range []string{"Client", "Client transaction", "Tx", "Multi"} {
		for _, use := range []string{"Exec", "Discard", "Queue"} {
			t.Run(kind+"/"+use, func(t *testing.T) {
				srv.MustDo(t, "DEL", "pd:n", "pd:n:queued")
				var p *Pipeline
				var useErr error
				calls := 0
				incrDec := ownDecoderUse(&p, use, "pd:n", &useErr, &calls)
				dec := WithDecoder("INCR", incrDec)
				switch kind {
				case "Client":
					p = c.Pipeline(NoTransaction, dec)
				case "Client transaction":
					p = c.Pipeline(dec)
				case "Tx":
					p = tx.Pipeline(dec)
				case "Multi":
					// Multi takes no options: the client's Decoder.
					c.SetDecoder("INCR", incrDec)
					defer c.SetDecoder("INCR", nil)
					p = tx.Multi()
				}
				p.Incr("pd:n").Incr("pd:n")
				checkExecFromOwnDecoder(t, ctx, srv, "pd:n", p, use, &useErr, &calls)
			})
		}
	}
}

// ownDecoderUse is an INCR Decoder that, the first time it runs, runs use
// ("Exec" or "Discard") on *p, the pipeline whose replies it decodes,
// keeping what Exec returned in *useErr, or queues ("Queue") an INCR of
// key+":queued" on it; *calls counts its runs.
func ownDecoderUse(p **Pipeline, use, key string, useErr *error, calls *int) Decoder {
	return func(v Value) (any, error) {
		*calls++
		if *calls == 1 {
			switch use {
			case "Exec":
				_, *useErr = (*p).Exec(context.Background())
			case "Discard":
				(*p).Discard()
			case "Queue":
				(*p).Incr(key + ":queued")
			}
		}
		return v.Int64()
	}
}

// checkExecFromOwnDecoder runs Exec of p, two INCR of key whose Decoder
// is ownDecoderUse's, and checks that it returns their two replies, that
// the Decoder's Exec was refused with a *UsageError, that the server ran
// the INCRs once, and that the Decoder ran for each. For "Queue", Exec
// must also return a *CommandError for the first INCR, wrapping a
// *UsageError, and the INCR the Decoder queued must go nowhere: not by
// that Exec, nor by the next.
func checkExecFromOwnDecoder(t *testing.T, ctx context.Context, srv *redistest.Server, key string, p *Pipeline, use string, useErr *error, calls *int) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("panic: %v", r)
			}
		}()
		replies, err := p.Exec(ctx)
		if len(replies) != 2 {
			err = fmt.Errorf("%d replies (error %v)", len(replies), err)
		} else if use == "Queue" {
			var ce *CommandError
			var ue *UsageError
			if !errors.As(err, &ce) || ce.Index != 0 || ce.Command != "INCR" || !errors.As(err, &ue) || !strings.Contains(err.Error(), "queued") ||
				SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
				err = fmt.Errorf("error %v (outcome %v); want a *CommandError for the first INCR wrapping a *UsageError that says a command was queued, "+
					"and not that the batch did not run", err, OutcomeOf(err))
			} else {
				err = nil
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Exec whose Decoder runs %s on the pipeline = %v", use, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Exec whose Decoder runs %s on the pipeline never returns", use)
	}
	var ue *UsageError
	if use == "Exec" && !errors.As(*useErr, &ue) {
		t.Errorf("Exec from a Decoder of the pipeline's own Exec = %v; want a *UsageError", *useErr)
	}
	if use == "Queue" {
		if replies, err := p.Exec(ctx); len(replies) != 0 {
			t.Errorf("the next Exec = %v, %v; want the command the Decoder queued not sent", replies, err)
		}
		if n := srv.MustDo(t, "EXISTS", key+":queued"); n != int64(0) {
			t.Errorf("EXISTS %s:queued = %v: the command a Decoder queued was sent", key, n)
		}
	}
	if n, _ := srv.MustDo(t, "GET", key).(string); n != "2" {
		t.Errorf("%s = %q after one Exec of two INCR; want 2", key, n)
	}
	if *calls != 2 {
		t.Errorf("the Decoder ran %d times, want 2", *calls)
	}
}

// TestDecoderOfRefusedCommandRefused: a Decoder for a command that changes
// a connection's state (SELECT, MULTI, EXEC, CLIENT REPLY...), which is
// refused as a call and in every batch, or sent by redpipe itself with a
// reply that reaches no caller, would never run: SetDecoder and
// WithDecoder refuse it with a *UsageError that says why, as they refuse
// names no reply carries, rather than keep it in silence. WATCH and
// UNWATCH, which run on a Tx, keep theirs.
func TestDecoderOfRefusedCommandRefused(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	d := func(Value) (any, error) { return "decoded", nil }
	for _, name := range []string{"EXEC", "multi", "SELECT", "HELLO", "client reply", "CLIENT NO-TOUCH"} {
		var ue *UsageError
		err := c.SetDecoder(name, d)
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "would never run") {
			t.Errorf("SetDecoder(%q) = %v; want a *UsageError saying it would never run", name, err)
		}
		if _, err := c.Pipeline(WithDecoder(name, d)).Ping().Exec(ctx); !errors.As(err, &ue) {
			t.Errorf("Exec of a pipeline WithDecoder(%q) = %v; want its *UsageError", name, err)
		}
	}
	if m := c.decoderTable(); m != nil && len(*m) != 0 {
		t.Errorf("decoders kept for commands refused: %v", *m)
	}
	for _, name := range []string{"WATCH", "UNWATCH"} {
		if err := c.SetDecoder(name, d); err != nil {
			t.Errorf("SetDecoder(%q) = %v; want it kept, for the Tx calls", name, err)
		}
	}
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if v, err := tx.Do(ctx, "UNWATCH"); err != nil {
		t.Fatal(err)
	} else if got, _ := v.Decoded(); got != "decoded" {
		t.Errorf("UNWATCH on a Tx decoded %v; want its Decoder to run", got)
	}
}
