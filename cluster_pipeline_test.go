package redpipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// scanCommand, the walk a pipeline makes over each command, finds the
// end of every command of the table and, where it tells a slot, the one
// cmdSlot finds: for commands of up to nine words, their arguments all
// keys of one slot, of many slots, or words of no slot in particular.
func TestScanCommandAgreesWithCmdSlot(t *testing.T) {
	told, refused, recorded := 0, 0, 0
	for _, ci := range knownCommands {
		name := strings.Fields(ci.Name)
		for extra := 0; extra+len(name) <= 9; extra++ {
			for _, arg := range []func(i int) string{
				func(i int) string { return "{tag}" + strconv.Itoa(i) },
				func(i int) string { return "key" + strconv.Itoa(i) },
				func(i int) string { return strconv.Itoa(i) },
			} {
				args := make([]any, 0, len(name)+extra)
				for _, w := range name {
					args = append(args, w)
				}
				for i := range extra {
					args = append(args, arg(i))
				}
				w := &cmdBuf{slots: true}
				w.do(args)
				cmd := w.buf
				// What encoding recorded agrees with scanCommand.
				got := w.cmds[0].info()
				if len(w.routes) != 1 || int(w.routes[0]>>16) != len(cmd) {
					t.Fatalf("%q: routes %v, want one ending at %d", cmd, w.routes, len(cmd))
				}
				if rt := uint16(w.routes[0]); rt != routeScan {
					_, s, k := scanCommand(got, cmd, 0, true)
					want := uint16(routeKeyless)
					if s >= 0 {
						want = uint16(s + 1)
					}
					if !k || rt != want {
						t.Fatalf("%q: recorded route %d; scanCommand tells slot %d (known %v)", cmd, rt, s, k)
					}
					if rt != routeKeyless {
						recorded++
					}
				}
				// Routing refuses only commands marked for it, which
				// keep a pipeline from going out before it is routed.
				if _, err := cmdSlot(ci, cmd); err != nil {
					if !ci.has(flagKeysSpan) && !splittable(ci) {
						t.Fatalf("%q: cmdSlot refuses it (%v), but it is not flagKeysSpan", cmd, err)
					}
					refused++
				}
				if got := w.cmds[0].info(); w.keysSpan != got.has(flagKeysSpan) {
					t.Fatalf("%q: keysSpan %v for %s", cmd, w.keysSpan, got.Name)
				}
				// What follows a command is not its own.
				buf := append(append([]byte(nil), cmd...), "*1\r\n$4\r\nPING\r\n"...)
				end, slot, known := scanCommand(ci, buf, 0, true)
				if end != len(cmd) {
					t.Fatalf("%q: scanCommand ends at %d, want %d", cmd, end, len(cmd))
				}
				if !known {
					continue
				}
				told++
				want, err := cmdSlot(ci, cmd)
				if err != nil || slot != want {
					t.Fatalf("%q: scanCommand tells slot %d, cmdSlot %d, %v", cmd, slot, want, err)
				}
			}
		}
	}
	if told == 0 || refused == 0 || recorded == 0 {
		t.Fatalf("scanCommand told %d slots; cmdSlot refused %d commands; %d slots recorded", told, refused, recorded)
	}
	// Keys in different slots are left to cmdSlot, which names them.
	w := &cmdBuf{}
	w.do([]any{"RENAME", "a", "b"})
	if _, _, known := scanCommand(cmdRename, w.buf, 0, true); known {
		t.Error("scanCommand told a slot for RENAME a b")
	}
	if _, err := cmdSlot(cmdRename, w.buf); err == nil || !strings.Contains(err.Error(), "command RENAME") {
		t.Errorf("cmdSlot(RENAME a b) = %v", err)
	}
}

// BenchmarkClusterPipeline10k is one plain pipeline of 5,000 SET and GET
// pairs whose keys are spread over the slots of three masters, every
// reply checked; ns/cmd and allocs/op divided by 10,000 are per command.
// MGet100 reads 100 keys of as many slots in one call, which the client
// splits by slot.
func BenchmarkClusterPipeline10k(b *testing.B) {
	cl := redistest.StartCluster(b, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const pairs = 5000
	keys := testKeys(pairs)
	vals := make([]string, pairs)
	for i := range vals {
		vals[i] = "value_" + strconv.Itoa(i)
	}
	b.Run("SetGet", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := c.Pipeline(NoTransaction)
			for i, k := range keys {
				p.Set(k, vals[i]).Get(k)
			}
			replies, err := p.Exec(ctx)
			if err != nil || len(replies) != 2*pairs {
				b.Fatal(len(replies), err)
			}
			for i := range keys {
				if err := okReply(replies[2*i], nil); err != nil {
					b.Fatal(err)
				}
				if s, err := replies[2*i+1].Text(); err != nil || s != vals[i] {
					b.Fatal(i, s, err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*pairs), "ns/cmd")
	})
	b.Run("MGet100", func(b *testing.B) {
		mkeys := keys[:100]
		p := c.Pipeline(NoTransaction)
		for i, k := range mkeys {
			p.Set(k, vals[i])
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			vs, err := c.MGet(ctx, mkeys...)
			if err != nil || len(vs) != len(mkeys) {
				b.Fatal(len(vs), err)
			}
			for i, v := range vs {
				if s, err := v.Text(); err != nil || s != vals[i] {
					b.Fatal(i, s, err)
				}
			}
		}
	})
}

// BenchmarkClusterParallel is many goroutines sharing a cluster client,
// each setting its own key and reading it back: plain calls routed one by
// one; allocs/op is per call.
func BenchmarkClusterParallel(b *testing.B) {
	cl := redistest.StartCluster(b, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "warm", "1"); err != nil {
		b.Fatal(err)
	}
	// The cluster is started once, for every b.N the sub-benchmark runs.
	b.Run("SetGet", func(b *testing.B) {
		var id atomic.Int64
		b.SetParallelism(64)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			key := "par:" + strconv.FormatInt(id.Add(1), 10)
			val := "v:" + key
			for i := 0; pb.Next(); i++ {
				if i%2 == 0 {
					if err := c.Set(ctx, key, val); err != nil {
						b.Error(err)
						return
					}
					continue
				}
				if s, err := c.Get(ctx, key); err != nil || s != val {
					b.Error(s, err)
					return
				}
			}
		})
	})
}

// A write for every master queued in a plain pipeline, refused by one
// master (OOM) and run by the others, has a reply of unknown outcome, as
// when it is called alone: the refusal alone would read as not applied.
// The pipeline's other commands, a read for every master among them, are
// answered as usual.
func testClusterPipelinePartlyRefused(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	key := keyIn(100, "refused:") // on the first master, which takes writes
	allow := refuseWrites(t, cl.Masters[2])
	replies, err := c.Pipeline(NoTransaction).
		FunctionLoad("#!lua name=pipelib\nredis.register_function('pipef', function() return 1 end)").
		Set(key, 1).
		DBSize().
		Exec(ctx)
	allow()
	if len(replies) != 3 {
		t.Fatalf("Exec = %v, %v; want 3 replies", replies, err)
	}
	refusal := replies[0].Err()
	wantPartlyRun(t, "the reply of FUNCTION LOAD refused by one master of three", refusal, "1 of 3")
	wantOOM(t, "the reply of FUNCTION LOAD", refusal)
	wantPartlyRun(t, "Exec's error", err, "1 of 3")
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 0 || ce.Command != "FUNCTION LOAD" {
		t.Errorf("Exec's error = %#v, want a *CommandError for command 0, FUNCTION LOAD", err)
	}
	if s, err := replies[1].Text(); err != nil || s != "OK" {
		t.Errorf("SET = %q, %v; want OK", s, err)
	}
	if n, err := replies[2].Int64(); err != nil || n != 1 {
		t.Errorf("DBSIZE = %d, %v; want 1, the sum over the masters", n, err)
	}
	if _, err := c.Do(ctx, "FUNCTION", "FLUSH"); err != nil {
		t.Fatal(err)
	}
}

// A plain pipeline whose script one master refuses to load (its ACL, set
// node by node, denies SCRIPT LOAD) keeps every reply: that master ran the
// rest of its part, and the other masters theirs. The command that runs
// the script there has the load's error in its NOSCRIPT reply, not
// applied; the others are answered as usual. It used to lose every reply,
// that master's commands included, for one error of unknown outcome.
func testClusterPipelineScriptLoadRefused(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	ka := keyIn(100, "loadrefused:")
	from, other := ownerAndOther(t, cl, 100)
	kb := ka
	for i := 0; ; i++ {
		kb = "loadrefused:" + strconv.Itoa(i)
		if owner, err := cl.SlotOwner(int(hashslot.Slot(kb))); err == nil && owner == other {
			break
		}
	}
	if _, err := c.Del(ctx, ka, kb); err != nil {
		t.Fatal(err)
	}
	// A script no node has seen yet, so that EVALSHA finds none where the
	// load is refused.
	s := NewScript("return redis.call('INCR', KEYS[1]) -- " + t.Name())
	from.MustDo(t, "ACL", "SETUSER", "default", "-script|load")
	defer from.MustDo(t, "ACL", "SETUSER", "default", "+script|load")
	replies, err := c.Pipeline(NoTransaction).Set(ka, 1).RunScript(s, []string{ka}).Incr(ka).RunScript(s, []string{kb}).Exec(ctx)
	if len(replies) != 4 {
		t.Fatalf("Exec = %v, %v; want 4 replies", replies, err)
	}
	if replies[0].String() != "OK" || replies[2].String() != "2" || replies[3].String() != "1" {
		t.Errorf("replies %v; want OK, the refused script's error, 2, 1", replies)
	}
	rerr := replies[1].Err()
	var se *Error
	if !errors.As(rerr, &se) || se.Prefix != "NOSCRIPT" || !strings.Contains(rerr.Error(), "NOPERM") || OutcomeOf(rerr) != OutcomeNotApplied {
		t.Errorf("the reply of the script on the master that refused its load = %v (outcome %v); want NOSCRIPT that gives the NOPERM, not applied",
			rerr, OutcomeOf(rerr))
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 1 || SafeToRetry(err) {
		t.Errorf("Exec's error = %v; want a *CommandError for command 2, of unknown outcome", err)
	}
	// So in a transaction on that master: EXEC ran the rest.
	replies, err = c.Pipeline().Incr(ka).RunScript(s, []string{ka}).Exec(ctx)
	if len(replies) != 2 || replies[0].String() != "3" || !errors.As(replies[1].Err(), &se) || se.Prefix != "NOSCRIPT" ||
		!strings.Contains(replies[1].Err().Error(), "NOPERM") || !errors.As(err, &ce) || ce.Index != 1 {
		t.Errorf("a transaction whose script the master refused to load = %v, %v; want 3 and NOSCRIPT that gives the NOPERM", replies, err)
	}
}

// A write for every master in a plain pipeline that one master could not
// be reached for (its dials refused) while the others ran it has a reply
// of unknown outcome that says how many masters it reached, not the
// unreached master's "not sent" nor another master's success; a read for
// every master has an error, not the sum over some masters. So has the
// same write called alone.
func testClusterPipelineFanOutUnreached(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	down := cl.Masters[2].Addr
	var refusing atomic.Bool
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if refusing.Load() && addr == down {
			return nil, errors.New("dial refused by the test")
		}
		return d.DialContext(ctx, network, addr)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: []string{cl.Masters[0].Addr}, MaxRedirects: 1,
		Options: Options{Dialer: dial, MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key := keyIn(100, "unreached:") // on the first master
	if err := c.Set(ctx, key, 0); err != nil {
		t.Fatal(err)
	}
	refusing.Store(true)
	replies, err := c.Pipeline(NoTransaction).
		ScriptLoad("return 'unreached'").
		DBSize().
		Set(key, 1).
		Exec(ctx)
	if len(replies) != 3 {
		t.Fatalf("Exec = %v, %v; want 3 replies", replies, err)
	}
	wantPartlyRun(t, "the reply of SCRIPT LOAD that reached two masters of three", replies[0].Err(), "2 of 3")
	if n, err := replies[1].Int64(); err == nil {
		t.Errorf("DBSIZE that reached two masters of three = %d, want an error", n)
	}
	if s, err := replies[2].Text(); err != nil || s != "OK" {
		t.Errorf("SET on a master reached = %q, %v; want OK", s, err)
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 0 || OutcomeOf(err) != OutcomeUnknown {
		t.Errorf("Exec's error = %v (outcome %v), want a *CommandError for command 0 of unknown outcome", err, OutcomeOf(err))
	}
	_, err = c.ScriptLoad(ctx, "return 'unreached alone'")
	wantPartlyRun(t, "SCRIPT LOAD alone that reached two masters of three", err, "2 of 3")
}

// The reply of a command for every master, from the masters' replies:
// combined, unless a write ran on some masters only, when it is an error
// of unknown outcome that wraps the first failure.
func TestFanOutReply(t *testing.T) {
	ok := resp.Value{Kind: resp.SimpleString, Str: "OK"}
	oom := resp.Value{Kind: resp.Error, Str: "OOM command not allowed when used memory > 'maxmemory'."}
	notBusy := resp.Value{Kind: resp.Error, Str: "NOTBUSY No scripts in execution right now."}
	num := func(n int64) resp.Value { return resp.Value{Kind: resp.Integer, Int: n} }
	unsent := madeErrorValue(notSent(errors.New("not sent before the pipeline stopped")))
	lost := madeErrorValue(&uncertainError{msg: "redpipe: cluster: the commands in flight on 127.0.0.1:1 failed", err: io.ErrUnexpectedEOF})
	moved := resp.Value{Kind: resp.Error, Str: "MOVED 1 127.0.0.1:2"}
	load := lookupCommand("FUNCTION", "LOAD")
	dbsize := lookupCommand("DBSIZE", "")
	kill := lookupCommand("SCRIPT", "KILL")
	const succeeds = Outcome(-1)
	for _, tc := range []struct {
		name    string
		ci      *commandInfo
		vals    []resp.Value
		done    []bool  // nil: every leg got through
		outcome Outcome // of the reply's error; succeeds for none
		want    string  // in the reply's error, or its text
	}{
		{"write run everywhere", load, []resp.Value{ok, ok, ok}, nil, succeeds, "OK"},
		{"write refused by one master", load, []resp.Value{ok, oom, ok}, nil, OutcomeUnknown, "refused by 1 of 3 masters"},
		{"write refused by every master", load, []resp.Value{oom, oom, oom}, nil, OutcomeNotApplied, "OOM"},
		{"read refused by one master", dbsize, []resp.Value{num(1), oom, num(2)}, nil, OutcomeNotApplied, "OOM"},
		{"SCRIPT KILL refused where no script runs", kill, []resp.Value{notBusy, ok, notBusy}, nil, succeeds, "OK"},
		{"write that reached some masters", load, []resp.Value{ok, {}, ok}, []bool{true, false, true}, OutcomeUnknown, "reached 2 of 3 masters only"},
		{"write refused by the masters it reached", load, []resp.Value{oom, {}, oom}, []bool{true, false, true}, OutcomeNotSent, "not sent"},
		{"read that reached some masters", dbsize, []resp.Value{num(1), {}, num(2)}, []bool{true, false, true}, OutcomeNotSent, "not sent"},
		{"write not sent to one master and lost in flight on another", load, []resp.Value{{}, lost}, []bool{false, false}, OutcomeUnknown, "in flight"},
		{"write redirected on one master and lost in flight on another", load, []resp.Value{moved, lost, ok}, []bool{false, false, true}, OutcomeUnknown, "in flight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v Value
			if tc.done == nil {
				v = Value{fanOutReply(tc.ci, tc.vals)}
			} else {
				legs := make([]leg, len(tc.vals))
				for k := range legs {
					legs[k] = leg{at: k, slot: -1, fixed: true, done: tc.done[k]}
				}
				v = Value{joinFanOut(tc.ci, legs, tc.vals, unsent)}
			}
			err := v.Err()
			switch {
			case tc.outcome == succeeds:
				if err != nil || v.String() != tc.want {
					t.Errorf("reply = %v, want %s", v, tc.want)
				}
			case err == nil || OutcomeOf(err) != tc.outcome || !strings.Contains(err.Error(), tc.want):
				t.Errorf("reply = %v, error %v (outcome %v); want an error of outcome %v that says %q", v, err, OutcomeOf(err), tc.outcome, tc.want)
			case tc.outcome == OutcomeUnknown && errors.Is(err, ErrNotApplied):
				t.Errorf("reply's error = %v matches ErrNotApplied", err)
			}
		})
	}
}

// A master that a stream could not reach once (a dial refused), and that
// is still a master once the layout is refreshed, gets again what the
// stream had for it, in the stream's order: the leg of FLUSHALL, then the
// SET queued after it, which the refused dial sent back among the held
// commands. That SET, never written, does not stop the leg.
func testClusterStreamFanOutRedialed(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	down := cl.Masters[2].Addr
	var refuse, refusals atomic.Int32 // dials of down to refuse, and refused
	refuse.Store(1 << 20)
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == down && refuse.Add(-1) >= 0 {
			refusals.Add(1)
			return nil, errors.New("dial refused by the test")
		}
		return d.DialContext(ctx, network, addr)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), Options: Options{Dialer: dial, MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The layout, learnt without a connection to down.
	key := keyIn(100, "redialed:") // on the first master
	if err := c.Set(ctx, key, 0); err != nil {
		t.Fatal(err)
	}
	refuse.Store(1)
	refusals.Store(0)
	after := keyIn(16000, "redialed:") // down's
	var replies []Value
	s := c.Stream(ctx, func(i int, v Value) error {
		replies = append(replies, v)
		return nil
	})
	s.FlushAll().Set(after, "after")
	if _, err := s.Close(ctx); err != nil || len(replies) != 2 || replies[0].String() != "OK" || replies[1].String() != "OK" {
		t.Fatalf("Close = %v with replies %v; want FLUSHALL and SET to succeed", err, replies)
	}
	if refusals.Load() != 1 || s.cl.redirected.unreached != 1 {
		t.Errorf("%d dials refused, %d met by the stream; want 1", refusals.Load(), s.cl.redirected.unreached)
	}
	if v, err := c.Get(ctx, after); err != nil || v != "after" {
		t.Errorf("GET %s = %q, %v; want what the SET after FLUSHALL wrote", after, v, err)
	}
}

// testClusterPipelinePartLost: one master holds the writes of a plain
// pipeline (CLIENT PAUSE WRITE) while the other masters answer theirs,
// until the pipeline's context ends, or until the held master's
// connection is killed. Exec returns a reply for every command: those of
// the masters that answered, and for each command the held master had,
// an error reply of unknown outcome; the error names the first of them.
// After a deadline unknown is the truth: once the pause ends, the held
// master runs them.
func testClusterPipelinePartLost(t *testing.T, cl *redistest.Cluster, c *Client) {
	for _, kill := range []bool{false, true} {
		name := "deadline"
		if kill {
			name = "kill"
		}
		t.Run(name, func(t *testing.T) { clusterPipelinePartLost(t, cl, c, kill) })
	}
}

func clusterPipelinePartLost(t *testing.T, cl *redistest.Cluster, c *Client, kill bool) {
	ctx := clusterCtx(t)
	// Masters[i] serves the i-th third of the slots.
	a, a2 := keyIn(100, "lost:a"), keyIn(101, "lost:a")
	b, b2 := keyIn(6000, "lost:b"), keyIn(6001, "lost:b")
	k, k2 := keyIn(12000, "lost:c"), keyIn(12001, "lost:c")
	if _, err := c.Del(ctx, a, a2, b, b2, k, k2); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, b2, "x"); err != nil {
		t.Fatal(err)
	}
	held := cl.Masters[1]
	unpause := pauseWrites(t, held)
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if kill {
		pctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	p := c.Pipeline(NoTransaction).
		Set(a, "1"). // 0: Masters[0]
		Set(b, "1"). // 1: held
		Set(k, "1"). // 2: Masters[2]
		Del(a2, b2). // 3: split over Masters[0] and the held one
		MGet(a, k).  // 4: split over Masters[0] and Masters[2]
		Incr(k2)     // 5: Masters[2]
	done := execAsync(pctx, p)
	if kill {
		// Only the connection that holds the pipeline's part: the
		// client's idle ones stay as they are.
		var id string
		waitForServer(t, ctx, "the pipeline's SET held by the paused master", func() (bool, string) {
			var seen []string
			for _, cli := range serverClients(t, held) {
				// Held, not an idle connection whose last command was a
				// SET.
				if cli["cmd"] == "set" && strings.Contains(cli["flags"], "b") {
					id = cli["id"]
					return true, ""
				}
				seen = append(seen, cli["cmd"]+" flags="+cli["flags"])
			}
			return false, fmt.Sprint("commands: ", seen)
		})
		held.MustDo(t, "CLIENT", "KILL", "ID", id)
	}
	res := awaitExec(t, ctx, done, "its part's connection was cut")
	replies, err := res.replies, res.err
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 1 || OutcomeOf(err) != OutcomeUnknown || !kill && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exec with a master held: %v (%v); want a *CommandError for command 1 of unknown outcome", err, OutcomeOf(err))
	}
	if !strings.Contains(err.Error(), held.Addr) {
		t.Errorf("Exec's error %q does not name the held master %s", err, held.Addr)
	}
	if len(replies) != 6 {
		t.Fatalf("%d replies %v, want 6: the other masters' replies were dropped", len(replies), replies)
	}
	for i, want := range map[int]string{0: "OK", 2: "OK", 4: "[1 1]", 5: "1"} {
		if got := replies[i].String(); got != want {
			t.Errorf("reply %d = %s, want %s", i, got, want)
		}
	}
	for _, i := range []int{1, 3} {
		if e := replies[i].Err(); e == nil || OutcomeOf(e) != OutcomeUnknown {
			t.Errorf("reply %d of the held master = %v (%v); want an error of unknown outcome", i, replies[i], OutcomeOf(e))
		}
	}
	// What the masters that answered ran is there.
	for _, kv := range []struct {
		srv       *redistest.Server
		key, want string
	}{{cl.Masters[0], a, "1"}, {cl.Masters[2], k, "1"}, {cl.Masters[2], k2, "1"}} {
		if got, err := kv.srv.Do("GET", kv.key); err != nil || got != kv.want {
			t.Errorf("GET %s on %s = %v, %v; want %s", kv.key, kv.srv.Addr, got, err, kv.want)
		}
	}
	unpause()
	if !kill {
		// Held, not refused: the master runs them once it goes on.
		waitForServer(t, ctx, "the held writes to run", func() (bool, string) {
			got, err := held.Do("GET", b)
			n, _ := held.Do("EXISTS", b2)
			return got == "1" && n == int64(0), fmt.Sprint(got, err, n)
		})
	}
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
}

// testClusterPipelinePartCut: the connection of one master's part of a
// plain pipeline is killed (CLIENT KILL) after that master answered its
// first commands, a GET and its leg of an MGET split by slot, while it
// holds the next one: a SET under CLIENT PAUSE WRITE, on the node's
// shared connection, or a BLPOP, on connections of the batch's own. The
// replies that master sent before the cut are the caller's, in their
// places, as on one node: the GET's value, and the MGET whole, its other
// leg answered by another master. The held command and the leg of a DEL
// behind it, sent and not answered, are of unknown outcome (the DEL's
// other leg ran: its reply says so), and the other masters' replies are
// there. The servers hold what the replies say ran. Before, every command
// of the cut part was of unknown outcome, those answered included.
func testClusterPipelinePartCut(t *testing.T, cl *redistest.Cluster, c *Client) {
	for _, mode := range []string{"paused", "blocked"} {
		t.Run(mode, func(t *testing.T) { clusterPipelinePartCut(t, cl, c, mode) })
	}
}

func clusterPipelinePartCut(t *testing.T, cl *redistest.Cluster, c *Client, mode string) {
	ctx := clusterCtx(t)
	// Masters[i] serves the i-th third of the slots.
	a, a2 := keyIn(100, "cut:a"), keyIn(101, "cut:a")
	b, b2, b3, list := keyIn(6000, "cut:b"), keyIn(6001, "cut:b"), keyIn(6002, "cut:b"), keyIn(6003, "cut:l")
	k, k2 := keyIn(12000, "cut:c"), keyIn(12001, "cut:c")
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.MSet(ctx, a2, "z", b2, "x", b3, "w", k, "y"); err != nil {
		t.Fatal(err)
	}
	held := cl.Masters[1]
	p := c.Pipeline(NoTransaction).
		Set(a, "1"). // 0: Masters[0]
		Get(b2).     // 1: held, answered
		MGet(b2, k)  // 2: split over the held master, answered, and Masters[2]
	heldCmd := "set"
	if mode == "paused" {
		pauseWrites(t, held)
		p.Set(b, "1") // 3: held by the pause
	} else {
		heldCmd = "blpop"
		p.Do("BLPOP", list, "0") // 3: blocks
	}
	p.Del(a2, b3). // 4: split over Masters[0], which runs it, and the held master, behind 3
			Incr(k2) // 5: Masters[2]
	done := execAsync(ctx, p)
	killBlockedIn(t, ctx, held, heldCmd)
	res := awaitExec(t, ctx, done, "its part's connection was cut")
	replies, err := res.replies, res.err
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 3 || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Fatalf("Exec with a part cut: %v (%v); want a *CommandError for command 3 of unknown outcome", err, OutcomeOf(err))
	}
	if !strings.Contains(err.Error(), held.Addr) {
		t.Errorf("Exec's error %q does not name the master whose connection was cut, %s", err, held.Addr)
	}
	if len(replies) != 6 {
		t.Fatalf("%d replies %v, want 6", len(replies), replies)
	}
	for i, want := range map[int]string{0: "OK", 1: "x", 5: "1"} {
		if got, err := replies[i].String(), replies[i].Err(); got != want || err != nil {
			t.Errorf("reply %d = %q, %v; want %s", i, got, err, want)
		}
	}
	if got, err := replies[2].Strings(); err != nil || !slices.Equal(got, []string{"x", "y"}) {
		t.Errorf("reply 2, of an MGET whose legs were answered before the cut = %q, %v; want [x y]", got, err)
	}
	for _, i := range []int{3, 4} {
		if e := replies[i].Err(); e == nil || OutcomeOf(e) != OutcomeUnknown || SafeToRetry(e) {
			t.Errorf("reply %d, sent to the cut master and not answered = %v (%v); want an error of unknown outcome", i, replies[i], OutcomeOf(e))
		}
	}
	// What ran is there; what was cut did not run.
	for _, kv := range []struct {
		srv  *redistest.Server
		key  string
		want int64
	}{{cl.Masters[0], a, 1}, {cl.Masters[0], a2, 0}, {held, b, 0}, {held, b3, 1}, {cl.Masters[2], k2, 1}} {
		if n, err := kv.srv.Do("EXISTS", kv.key); err != nil || n != kv.want {
			t.Errorf("EXISTS %s on %s = %v, %v; want %d", kv.key, kv.srv.Addr, n, err, kv.want)
		}
	}
	if mode == "paused" {
		held.MustDo(t, "CLIENT", "UNPAUSE")
	}
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
}

// testClusterPipelinePartCutDecoded: a plain pipeline with Decoders (a
// pipeline's own, WithDecoder, and the client's, SetDecoder) whose part on
// one master is cut (CLIENT KILL while a BLPOP holds it) after that master
// answered its first commands. The replies that came, from the cut master
// and from the others, a split MGET's joined reply among them, are
// decoded as those of a pipeline that ran through, and as on one node
// those read before a cut are: each once. The commands not answered keep
// their error replies, which no Decoder sees. Before, the replies of a
// cluster pipeline that stopped partway went through no Decoder.
func testClusterPipelinePartCutDecoded(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	// Masters[i] serves the i-th third of the slots.
	a := keyIn(100, "cutd:a")
	b, b2, list := keyIn(6000, "cutd:b"), keyIn(6001, "cutd:b"), keyIn(6003, "cutd:l")
	k, k2 := keyIn(12000, "cutd:c"), keyIn(12001, "cutd:c")
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.MSet(ctx, a, "va", b2, "vb", k, "vk"); err != nil {
		t.Fatal(err)
	}
	held := cl.Masters[1]
	// Counted per reply: a reply decoded twice would show.
	var mu sync.Mutex
	seen := map[string]int{}
	count := func(what string) {
		mu.Lock()
		defer mu.Unlock()
		seen[what]++
	}
	getDec := func(v Value) (any, error) {
		s, err := v.Text()
		count("GET " + s)
		return "get:" + s, err
	}
	mgetDec := func(v Value) (any, error) {
		ss, err := v.Strings()
		count("MGET " + strings.Join(ss, ","))
		return "mget:" + strings.Join(ss, ","), err
	}
	if err := c.SetDecoder("INCR", func(v Value) (any, error) {
		n, err := v.Int64()
		count(fmt.Sprint("INCR ", n))
		return n * 10, err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.SetDecoder("INCR", nil)
	p := c.Pipeline(NoTransaction, WithDecoder("GET", getDec), WithDecoder("MGET", mgetDec)).
		Get(a).                 // 0: Masters[0]
		Get(b2).                // 1: held, answered
		MGet(b2, k).            // 2: split over the held master, answered, and Masters[2]
		Do("BLPOP", list, "0"). // 3: held, blocks
		Get(b).                 // 4: held, behind it
		Incr(k2)                // 5: Masters[2]
	done := execAsync(ctx, p)
	killBlockedIn(t, ctx, held, "blpop")
	res := awaitExec(t, ctx, done, "its part's connection was cut")
	replies, err := res.replies, res.err
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 3 || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("Exec with a part cut: %v (%v); want a *CommandError for command 3 of unknown outcome", err, OutcomeOf(err))
	}
	if len(replies) != 6 {
		t.Fatalf("%d replies %v, want 6", len(replies), replies)
	}
	for i, want := range map[int]any{0: "get:va", 1: "get:vb", 2: "mget:vb,vk", 5: int64(10)} {
		if got, err := replies[i].Decoded(); got != want || err != nil {
			t.Errorf("reply %d (%v) decoded = %v, %v; want %v", i, replies[i], got, err, want)
		}
	}
	for _, i := range []int{3, 4} {
		if e := replies[i].Err(); e == nil || OutcomeOf(e) != OutcomeUnknown {
			t.Errorf("reply %d, sent to the cut master and not answered = %v (%v); want an error of unknown outcome", i, replies[i], OutcomeOf(e))
		}
		if got, err := replies[i].Decoded(); got != nil || err != nil {
			t.Errorf("reply %d, an error, decoded = %v, %v; want no decoding", i, got, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{"GET va": 1, "GET vb": 1, "MGET vb,vk": 1, "INCR 1": 1}
	if !maps.Equal(seen, want) {
		t.Errorf("the Decoders saw %v; want each reply once: %v", seen, want)
	}
}

// testClusterPipelinePartCutTwice: a cluster pipeline's part on one
// master, SETs marked Idempotent that the node's retry rules send again
// after its connection fails, runs whole on the first attempt (the
// master kills the connection, CLIENT KILL, while the BLPOP at the end of
// the part blocks). The retry is cut by the network partway through its
// write (a Proxy in front of that master passes its first MiB, then
// closes both sides), after the master answered its first SETs. The SETs
// the retry never wrote ran all the same, on the first attempt: their
// replies are of unknown outcome, not "not sent". Before, they said they
// were not sent (OutcomeNotSent, SafeToRetry), while the master held
// their keys.
func testClusterPipelinePartCutTwice(t *testing.T, cl *redistest.Cluster) {
	ctx := clusterCtx(t)
	held := cl.Masters[1]
	px := redistest.StartProxy(t, held.Addr)
	w := &writeWatch{}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == held.Addr {
			return w.dial(ctx, network, px.Addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{Dialer: dial, MaxRetries: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Masters[i] serves the i-th third of the slots.
	a := keyIn(100, "cut2:a")
	tag := keyIn(6000, "cut2:t")
	key := func(i int) string { return fmt.Sprintf("{%s}:%d", tag, i) }
	defer func() {
		for _, m := range cl.Masters {
			m.MustDo(t, "FLUSHALL")
		}
	}()

	const n = 262
	big := strings.Repeat("x", 256<<10)        // n of them are far more than the sockets hold
	p := c.Pipeline(NoTransaction).Set(a, "1") // 0: Masters[0]
	for i := 1; i < n; i++ {
		p.Set(key(i), big) // 1 to n-1: held
	}
	p.Do("BLPOP", "{"+tag+"}:list", "0") // n: held, blocks
	replies, err := execCutTwice(t, ctx, p, held, px, w, n)

	if !w.cutAgain(int64((n - 1) * len(big))) {
		t.Fatal("the part was not written whole and then, sent again, cut partway through its write: the test does not test what it means to")
	}
	if err == nil || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) || !strings.Contains(err.Error(), "earlier attempt") {
		t.Fatalf("Exec error %v (%v): want one of unknown outcome that says an earlier attempt may have run", err, OutcomeOf(err))
	}
	if len(replies) != n+1 {
		t.Fatalf("Exec returned %d replies for %d commands (error %v); want every one", len(replies), n+1, err)
	}
	if got, e := replies[0].String(), replies[0].Err(); got != "OK" || e != nil {
		t.Errorf("reply 0, of another master = %q, %v; want OK", got, e)
	}
	answered := 0
	for i := 1; i < n; i++ {
		e := replies[i].Err()
		if e == nil {
			answered++
			continue
		}
		if k, _ := held.MustDo(t, "EXISTS", key(i)).(int64); k != 1 {
			t.Fatalf("the key of SET %d is not on %s, which ran every SET of the part on the first attempt", i, held.Addr)
		}
		if o := OutcomeOf(e); o != OutcomeUnknown || SafeToRetry(e) {
			t.Fatalf("reply %d = %v: outcome %v, SafeToRetry %v; want unknown, not safe: the first attempt ran it", i, e, o, SafeToRetry(e))
		}
	}
	if answered == 0 || answered == n-1 {
		t.Fatalf("the retry had %d of its SETs answered: the test does not test what it means to", answered)
	}
	checkNoCutRecord(t, err, replies)
}

// testClusterPipelinePartCutMoved: a master whose part of a plain
// pipeline is cut (CLIENT KILL while a BLPOP holds it) had answered a
// SET before the cut with MOVED: its slot had moved to another master,
// which the client had not heard of. The SET keeps its redirection as its
// reply (nothing of it ran), and is not sent on to the new owner, as the
// commands of the part behind it were not: the pipeline stops with the
// round. The SET answered before it has its reply.
func testClusterPipelinePartCutMoved(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	held, to := cl.Masters[1], cl.Masters[0]
	const movedSlot = 6100
	b, m, list := keyIn(6000, "cutm:b"), keyIn(movedSlot, "cutm:m"), keyIn(6003, "cutm:l")
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.MoveSlots(ctx, held, to, movedSlot); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cl.MoveSlots(ctx, to, held, movedSlot); err != nil {
			t.Fatal(err)
		}
	}()
	if owner := c.cluster.owner(movedSlot); owner == nil || owner.opt.Addr != held.Addr {
		t.Fatalf("the client routes slot %d to %v, not to %s: it heard of the move, and the test does not test what it means to", movedSlot, owner, held.Addr)
	}
	p := c.Pipeline(NoTransaction).
		Set(b, "1").            // 0: held, answered
		Set(m, "1").            // 1: held, answered MOVED
		Do("BLPOP", list, "0"). // 2: blocks
		Set(b, "2")             // 3: behind it
	done := execAsync(ctx, p)
	killBlockedIn(t, ctx, held, "blpop")
	res := awaitExec(t, ctx, done, "its part's connection was cut")
	replies, err := res.replies, res.err
	if err == nil || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
		t.Fatalf("Exec with a part cut: %v (%v); want an error of unknown outcome", err, OutcomeOf(err))
	}
	if len(replies) != 4 {
		t.Fatalf("%d replies %v, want 4", len(replies), replies)
	}
	if got, e := replies[0].String(), replies[0].Err(); got != "OK" || e != nil {
		t.Errorf("reply 0, answered before the cut = %q, %v; want OK", got, e)
	}
	if e := replies[1].Err(); e == nil || !strings.HasPrefix(e.Error(), "MOVED") || OutcomeOf(e) != OutcomeNotApplied {
		t.Errorf("reply 1, answered MOVED before the cut = %v (%v); want the MOVED, not applied", replies[1], OutcomeOf(e))
	}
	for _, i := range []int{2, 3} {
		if e := replies[i].Err(); e == nil || OutcomeOf(e) != OutcomeUnknown {
			t.Errorf("reply %d, sent to the cut master and not answered = %v (%v); want an error of unknown outcome", i, replies[i], OutcomeOf(e))
		}
	}
	if n, err := to.Do("EXISTS", m); err != nil || n != int64(0) {
		t.Errorf("EXISTS %s on its new owner = %v, %v; want 0: the SET redirected before the cut is not sent again", m, n, err)
	}
	if got, err := held.Do("GET", b); err != nil || got != "1" {
		t.Errorf("GET %s on the cut master = %v, %v; want 1", b, got, err)
	}
}

// testClusterPipelineEveryPartLost: two masters hold the writes of a
// plain pipeline (CLIENT PAUSE WRITE), one part on each, until the
// pipeline's context ends. No command is known to have run: the error is
// of unknown outcome, for the commands in flight, and does not say that
// other commands of the pipeline ran, which it used to.
func testClusterPipelineEveryPartLost(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	a, b := keyIn(100, "everylost:a"), keyIn(6000, "everylost:b")
	if _, err := c.Del(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	unpause0, unpause1 := pauseWrites(t, cl.Masters[0]), pauseWrites(t, cl.Masters[1])
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	replies, err := c.Pipeline(NoTransaction).Set(a, "1").Set(b, "1").Exec(pctx)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 0 || OutcomeOf(err) != OutcomeUnknown || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exec with every master held: %v (%v); want a *CommandError for command 0 of unknown outcome", err, OutcomeOf(err))
	}
	if strings.Contains(err.Error(), "other commands of the pipeline ran") {
		t.Errorf("Exec's error %q says other commands ran; none answered", err)
	}
	if len(replies) != 2 {
		t.Fatalf("%d replies %v, want 2", len(replies), replies)
	}
	for i, r := range replies {
		if e := r.Err(); e == nil || OutcomeOf(e) != OutcomeUnknown {
			t.Errorf("reply %d = %v (%v); want an error of unknown outcome", i, r, OutcomeOf(e))
		}
	}
	unpause0()
	unpause1()
	if err := c.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
}

// testClusterPipelineRedirectUnusable: a round of a plain pipeline in
// which one node redirects a command by MOVED to an address the client
// refuses (port 0) while the other commands of the round run, on that
// node and on two real masters. The pipeline stops there, but every
// command that ran has its reply, the redirected one keeps its MOVED, and
// the error names it. Before, execPlain returned from within its pass over
// the round's parts: the replies of the parts not yet taken, and of the
// commands after the MOVED on its node, read as not sent, while the
// masters had run them.
//
// No real server names such an address, so the node that does is a fake
// (fakeClusterNode), which claims one slot in a layout that otherwise
// lists the real masters, and a seed only it is.
func testClusterPipelineRedirectUnusable(t *testing.T, cl *redistest.Cluster, c *Client) {
	ctx := clusterCtx(t)
	const fakeSlot = 6000
	a, k, k2 := keyIn(100, "unusable:a"), keyIn(12000, "unusable:c"), keyIn(12001, "unusable:c")
	f1, f2, f3 := keyIn(fakeSlot, "unusable:f"), keyIn(fakeSlot, "unusable:g"), keyIn(fakeSlot, "unusable:h")
	if _, err := c.Del(ctx, a, k, k2); err != nil {
		t.Fatal(err)
	}
	fake := startFakeClusterNode(t, cl, fakeSlot, map[string]string{f2: "-MOVED " + strconv.Itoa(fakeSlot) + " 127.0.0.1:0\r\n"})
	fc, err := NewClusterClient(ClusterOptions{Addrs: []string{fake.Addr()}, Options: Options{MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	replies, err := fc.Pipeline(NoTransaction).
		Set(a, "1").  // 0: Masters[0]
		Set(f1, "1"). // 1: the fake
		Set(f2, "1"). // 2: the fake, MOVED to 127.0.0.1:0
		Set(f3, "1"). // 3: the fake
		Set(k, "1").  // 4: Masters[2]
		Incr(k2).     // 5: Masters[2]
		Exec(ctx)
	var ce *CommandError
	var oe *OptionError
	if !errors.As(err, &ce) || ce.Index != 2 || !errors.As(err, &oe) || OutcomeOf(err) != OutcomeUnknown {
		t.Fatalf("Exec = %v (%v); want a *CommandError for command 2 that wraps the *OptionError of its address, of unknown outcome", err, OutcomeOf(err))
	}
	if len(replies) != 6 {
		t.Fatalf("%d replies %v, want 6", len(replies), replies)
	}
	for i, want := range map[int]string{0: "OK", 1: "OK", 3: "OK", 4: "OK", 5: "1"} {
		if got := replies[i].String(); got != want {
			t.Errorf("reply %d = %s (%v), want %s", i, got, replies[i].Err(), want)
		}
	}
	if e := replies[2].Err(); e == nil || !strings.HasPrefix(e.Error(), "MOVED") || OutcomeOf(e) != OutcomeNotApplied {
		t.Errorf("reply 2 = %v (%v); want its MOVED, not applied", replies[2], OutcomeOf(e))
	}
	// What the replies say ran, ran.
	for _, kv := range []struct {
		srv       *redistest.Server
		key, want string
	}{{cl.Masters[0], a, "1"}, {cl.Masters[2], k, "1"}, {cl.Masters[2], k2, "1"}} {
		if got, err := kv.srv.Do("GET", kv.key); err != nil || got != kv.want {
			t.Errorf("GET %s on %s = %v, %v; want %s", kv.key, kv.srv.Addr, got, err, kv.want)
		}
	}
	if got, want := fake.applied(), []string{f1, f3}; !slices.Equal(got, want) {
		t.Errorf("the fake node applied %v, want %v", got, want)
	}
	if _, err := c.Del(ctx, a, k, k2); err != nil {
		t.Fatal(err)
	}

	// Two commands redirected in the round: the first to a real master,
	// which the client follows, the second to the refused address. The
	// error names the second, whose redirection could not be followed;
	// the first keeps its MOVED too, as the pipeline stops before it is
	// sent again. Before, the error named the first.
	g1, g2, g3 := keyIn(fakeSlot, "unusable:g1"), keyIn(fakeSlot, "unusable:g2"), keyIn(fakeSlot, "unusable:g3")
	fake2 := startFakeClusterNode(t, cl, fakeSlot, map[string]string{
		g1: "-MOVED " + strconv.Itoa(fakeSlot) + " " + cl.Masters[1].Addr + "\r\n",
		g3: "-MOVED " + strconv.Itoa(fakeSlot) + " 127.0.0.1:0\r\n",
	})
	fc2, err := NewClusterClient(ClusterOptions{Addrs: []string{fake2.Addr()}, Options: Options{MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer fc2.Close()
	replies, err = fc2.Pipeline(NoTransaction).
		Set(a, "2").  // 0: Masters[0]
		Set(g1, "2"). // 1: the fake, MOVED to Masters[1]
		Set(g2, "2"). // 2: the fake
		Set(g3, "2"). // 3: the fake, MOVED to 127.0.0.1:0
		Set(k, "2").  // 4: Masters[2]
		Exec(ctx)
	if !errors.As(err, &ce) || ce.Index != 3 || !errors.As(err, &oe) || OutcomeOf(err) != OutcomeUnknown {
		index := -1
		if ce != nil {
			index = ce.Index
		}
		t.Fatalf("Exec = %v (index %d, %v); want a *CommandError for command 3 that wraps the *OptionError of its address, of unknown outcome", err, index, OutcomeOf(err))
	}
	if len(replies) != 5 {
		t.Fatalf("%d replies %v, want 5", len(replies), replies)
	}
	for i, want := range map[int]string{0: "OK", 2: "OK", 4: "OK"} {
		if got := replies[i].String(); got != want {
			t.Errorf("reply %d = %s (%v), want %s", i, got, replies[i].Err(), want)
		}
	}
	for _, i := range []int{1, 3} {
		if e := replies[i].Err(); e == nil || !strings.HasPrefix(e.Error(), "MOVED") || OutcomeOf(e) != OutcomeNotApplied {
			t.Errorf("reply %d = %v (%v); want its MOVED, not applied", i, replies[i], OutcomeOf(e))
		}
	}
	if got, want := fake2.applied(), []string{g2}; !slices.Equal(got, want) {
		t.Errorf("the second fake node applied %v, want %v", got, want)
	}
	if got, err := cl.Masters[1].Do("EXISTS", g1); err != nil || got != int64(0) {
		t.Errorf("EXISTS %s on %s = %v, %v; want 0: the pipeline stopped before sending it there", g1, cl.Masters[1].Addr, got, err)
	}
	if _, err := c.Del(ctx, a, k); err != nil {
		t.Fatal(err)
	}
}

// fakeClusterNode is a scripted stand-in for a cluster master, for
// redirections no real server sends. It answers CLUSTER SLOTS with the
// layout of a real cluster in which it serves one slot, and SET with
// +OK, or with the reply given for its key.
type fakeClusterNode struct {
	*fakeServer
	mu  sync.Mutex
	set []string // the keys it answered +OK, in order
}

func startFakeClusterNode(t *testing.T, cl *redistest.Cluster, slot int, replies map[string]string) *fakeClusterNode {
	t.Helper()
	layout, err := cl.Masters[0].Do("CLUSTER", "SLOTS")
	if err != nil {
		t.Fatal(err)
	}
	fn := &fakeClusterNode{}
	var slots []byte // CLUSTER SLOTS, once the address is known
	ready := make(chan struct{})
	fn.fakeServer = startFakeServer(t, func(n int, fc *fakeConn) {
		<-ready
		if !fc.handshake("") {
			return
		}
		for range 10000 {
			cmd, err := fc.readCommand()
			if err != nil {
				return
			}
			var reply string
			switch {
			case len(cmd) == 2 && strings.EqualFold(cmd[0], "CLUSTER") && strings.EqualFold(cmd[1], "SLOTS"):
				reply = string(slots)
			case len(cmd) == 3 && strings.EqualFold(cmd[0], "SET"):
				reply = replies[cmd[1]]
				if reply == "" {
					reply = "+OK\r\n"
					fn.mu.Lock()
					fn.set = append(fn.set, cmd[1])
					fn.mu.Unlock()
				}
			default:
				reply = "-ERR fake cluster node does not know " + cmd[0] + "\r\n"
			}
			if fc.send(reply) != nil {
				return
			}
		}
	})
	host, port, _ := net.SplitHostPort(fn.Addr())
	p, _ := strconv.Atoi(port)
	bulk := func(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }
	node := func(host string, port int64, id string) string {
		return "*3\r\n" + bulk(host) + ":" + strconv.FormatInt(port, 10) + "\r\n" + bulk(id)
	}
	var entries []string
	entry := func(first, last int64, master string) {
		entries = append(entries, fmt.Sprintf("*3\r\n:%d\r\n:%d\r\n%s", first, last, master))
	}
	for _, e := range layout.([]any) {
		r := e.([]any)
		first, last, m := r[0].(int64), r[1].(int64), r[2].([]any)
		master := node(m[0].(string), m[1].(int64), m[2].(string))
		switch {
		case int64(slot) < first || int64(slot) > last:
			entry(first, last, master)
		default:
			if first < int64(slot) {
				entry(first, int64(slot)-1, master)
			}
			if int64(slot) < last {
				entry(int64(slot)+1, last, master)
			}
		}
	}
	entry(int64(slot), int64(slot), node(host, int64(p), strings.Repeat("f", 40)))
	slots = []byte("*" + strconv.Itoa(len(entries)) + "\r\n" + strings.Join(entries, ""))
	close(ready)
	return fn
}

// applied returns the keys the node answered SET for with +OK.
func (fn *fakeClusterNode) applied() []string {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	return slices.Clone(fn.set)
}

// A pipeline part routed to the client of a node that a refresh has
// released does not join the line of that client's shared connection,
// which serves only the calls already in it: it fails not sent there, as
// a plain call does, and goes on by the layout through a new client. It
// was sent on the released connection, to an address the layout no
// longer listed.
func TestClusterPipelinePartOnReleasedNode(t *testing.T) {
	cl := sharedCluster(t)
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.cluster
	m := cl.Masters[0] // slots 0 and 1
	k0, k1 := keyIn(0, "released-part:"), keyIn(1, "released-part:")
	if err := c.Set(ctx, k0, "1"); err != nil {
		t.Fatal(err)
	}
	node, err := r.nodeAt(m.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if node.liveShared() == nil {
		t.Fatalf("the client of %s has no live shared connection", m.Addr)
	}
	// Released as a refresh does, its shared connection still open, as
	// while calls are in line on it; the slot table still names it, as
	// for a pipeline routed just before the release.
	gone := retireNode(r, cl, cl.Masters[0])
	for _, n := range gone {
		n.pool.Close()
	}

	var mu sync.Mutex
	var on []*Client
	partStarted = func(n *Client, quiet bool) {
		mu.Lock()
		on = append(on, n)
		mu.Unlock()
	}
	t.Cleanup(func() { partStarted = nil })
	vs, err := c.Pipeline(NoTransaction).Incr(k0).Incr(k1).Exec(ctx)
	partStarted = nil
	if err != nil || len(vs) != 2 {
		t.Fatalf("pipeline after the release: %v, %v", vs, err)
	}
	if n, err := vs[0].Int64(); err != nil || n != 2 {
		t.Errorf("INCR %s = %v, %v; want 2", k0, n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range on {
		if n == node {
			t.Fatal("a part was sent on the shared connection of the released client")
		}
	}
	if fresh, err := r.nodeAt(m.Addr); err != nil || fresh == node {
		t.Errorf("the client of %s after the pipeline: %v; want a new one", m.Addr, err)
	}
}

// A cluster Client's pipeline runs its Decoders as the replies of each
// node come in, within the send: a Decoder's Discard emptied the commands
// being decoded, which panicked with an index out of range, and its Exec
// sent the batch again, as a one-node Client's did before it refused
// them. A command it queued was dropped unsaid.
func TestClusterPipelineUsedFromOwnDecoder(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--cluster-enabled", "yes")
	ctx := clusterCtx(t)
	if err := srv.ServeAllSlots(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: []string{srv.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, kind := range []string{"plain", "transaction"} {
		for _, use := range []string{"Exec", "Discard", "Queue"} {
			t.Run(kind+"/"+use, func(t *testing.T) {
				srv.MustDo(t, "DEL", "{cd}n", "{cd}n:queued")
				var p *Pipeline
				var useErr error
				calls := 0
				dec := WithDecoder("INCR", ownDecoderUse(&p, use, "{cd}n", &useErr, &calls))
				if kind == "plain" {
					p = c.Pipeline(NoTransaction, dec)
				} else {
					p = c.Pipeline(dec)
				}
				p.Incr("{cd}n").Incr("{cd}n")
				checkExecFromOwnDecoder(t, ctx, srv, "{cd}n", p, use, &useErr, &calls)
			})
		}
	}
}

// TestCutPartRepliesOffsets: the replies of a cluster pipeline's part
// cut partway are matched to its legs past what goes before them on the
// wire (a script load, ROLE, an ASKING), and a leg counts as sent only
// when its own command's first byte was, not its ASKING's. The part is
// encoded as the client encodes it; the cut, the replies read and the
// bytes the socket took, is made up, at each place it can fall.
func TestCutPartRepliesOffsets(t *testing.T) {
	p := newPipeline(nil, nil, false)
	p.reset()
	p.Set("a", "1").Get("b").Set("c", "1").Do("DBSIZE")
	p.scripts = []*Script{NewScript("return 1")}
	buf := p.w.buf
	offs := cmdBounds(buf, 0, 4)
	ok := resp.Value{Kind: resp.SimpleString, Str: "OK"}
	// On the wire: SCRIPT LOAD, ROLE, SET a, ASKING, GET b, SET c, DBSIZE.
	wire := []resp.Value{
		{Kind: resp.BulkString, Str: "sha"},
		{Kind: resp.Array, Elems: []resp.Value{{Kind: resp.BulkString, Str: "master"}}},
		ok, ok,
		{Kind: resp.BulkString, Str: "bval"},
		ok,
		{Kind: resp.Integer, Int: 7},
	}
	for got := 0; got <= len(wire); got++ {
		for sentCmds := got; sentCmds <= len(wire); sentCmds++ {
			legs := []leg{{cmd: 0, at: 0}, {cmd: 1, at: 1, asking: true}, {cmd: 2, at: 2}, {cmd: 3, at: 3, fixed: true}}
			pt := &part{}
			for i := range legs {
				pt.legs = append(pt.legs, &legs[i])
			}
			encodePart(p, buf, offs, pt, batchTraits{}, false)
			if pt.total != len(wire) {
				t.Fatalf("the part holds %d commands, want %d", pt.total, len(wire))
			}
			sent := len(pt.b)
			if sentCmds < len(wire) {
				// Up to the middle of command sentCmds.
				off := 0
				for range sentCmds {
					off = cmdEnd(pt.b, off)
				}
				sent = off + 1
			}
			cutPartReplies(p, pt, &cutError{replies: wire[:got], sent: sent, err: errors.New("cut")})
			// The legs' own commands are wire[2], [4], [5] and [6].
			own := []int{2, 4, 5, 6}
			answered, begun := 0, 0
			for _, k := range own {
				if k < got {
					answered++
				}
				if k <= sentCmds {
					begun++
				}
			}
			if pt.answered != answered || pt.begun != begun || len(pt.replies) != answered {
				t.Fatalf("got %d replies, %d commands begun: answered %d, begun %d, %d replies; want %d, %d",
					got, sentCmds+1, pt.answered, pt.begun, len(pt.replies), answered, begun)
			}
			for j := range pt.replies {
				if want := wire[own[j]]; pt.replies[j].Kind != want.Kind || pt.replies[j].Str != want.Str || pt.replies[j].Int != want.Int {
					t.Fatalf("got %d replies: leg %d has %v, want %v", got, j, pt.replies[j], want)
				}
			}
		}
	}
}

// heldPartLen is the length of heldPartPipeline's pipeline.
const heldPartLen = 262

// heldPartPipeline makes a client of cl that reaches Masters[1] through a
// Proxy passing 1 MiB of what the client sends, and on it a plain
// pipeline of heldPartLen commands: a SET for Masters[0], then, for
// Masters[1], a BLPOP that blocks and SETs of key(2) to key(n-1), each of
// 256 KiB, far more than the sockets hold. The keys begin with prefix;
// the masters are flushed when the test ends.
func heldPartPipeline(t *testing.T, cl *redistest.Cluster, prefix string) (*redistest.Proxy, *Pipeline, func(int) string) {
	t.Helper()
	return heldPartPipelineOf(t, cl, prefix, true)
}

// heldPartPipelineOf is heldPartPipeline, without the SET for Masters[0]
// unless other: the pipeline, of heldPartLen-1 commands then, has a part
// on Masters[1] alone.
func heldPartPipelineOf(t *testing.T, cl *redistest.Cluster, prefix string, other bool) (*redistest.Proxy, *Pipeline, func(int) string) {
	t.Helper()
	held := cl.Masters[1]
	px := redistest.StartProxy(t, held.Addr)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == held.Addr {
			addr = px.Addr
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{Dialer: dial, MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		for _, m := range cl.Masters {
			m.MustDo(t, "FLUSHALL")
		}
	})
	// Masters[i] serves the i-th third of the slots.
	a := keyIn(100, prefix+":a")
	tag := keyIn(6000, prefix+":t")
	key := func(i int) string { return fmt.Sprintf("{%s}:%d", tag, i) }
	big := strings.Repeat("x", 256<<10)
	p := c.Pipeline(NoTransaction)
	if other {
		p.Set(a, "1") // 0: Masters[0]
	}
	p.Do("BLPOP", "{"+tag+"}:list", "0") // 1: held, blocks
	for i := 2; i < heldPartLen; i++ {
		p.Set(key(i), big) // 2 to n-1: held, behind the BLPOP
	}
	px.PassBytes(1<<20, redistest.ClientToServer)
	return px, p, key
}

// testClusterPipelineOnePartCutBeforeReply: a cluster pipeline whose
// only part, on one master, is cut by the network before that master
// answered any of it (see testClusterPipelinePartCutBeforeReply) returns
// a reply per command, as on one node: those the socket took of unknown
// outcome, the rest not sent. Before, Exec returned only the
// connection's error, as one node then did.
func testClusterPipelineOnePartCutBeforeReply(t *testing.T, cl *redistest.Cluster) {
	const n = heldPartLen - 1
	ctx := clusterCtx(t)
	held := cl.Masters[1]
	px, p, key := heldPartPipelineOf(t, cl, "cut1", false)
	done := execAsync(ctx, p)
	waitBlockedIn(t, ctx, held, "blpop", "")
	px.Cut(redistest.CutFIN)
	r := awaitExec(t, ctx, done, "its part's connection was cut")
	t.Logf("Exec error: %v", r.err)

	if r.err == nil || OutcomeOf(r.err) != OutcomeUnknown || SafeToRetry(r.err) {
		t.Fatalf("Exec error %v (%v): want one of unknown outcome", r.err, OutcomeOf(r.err))
	}
	if len(r.replies) != n {
		t.Fatalf("Exec returned %d replies for %d commands (error %v); want every one", len(r.replies), n, r.err)
	}
	if e := r.replies[0].Err(); e == nil || OutcomeOf(e) != OutcomeUnknown {
		t.Errorf("reply 0, the BLPOP the master took = %v (%v); want unknown outcome", e, OutcomeOf(e))
	}
	checkCutInOrder(t, r.replies, 0, nil)
	// None of the SETs ran: the BLPOP held them until the cut.
	for i := 2; i < heldPartLen; i++ {
		if k, _ := held.MustDo(t, "EXISTS", key(i)).(int64); k != 0 {
			t.Fatalf("the key of SET %d is on %s, though the BLPOP before it never returned", i, held.Addr)
		}
	}
}

// testClusterPipelinePartCutBeforeReply: a cluster pipeline's part on one
// master is cut by the network before that master answered any of it (a
// BLPOP first holds it, and a Proxy in front of the master passes the
// part's first MiB, then closes both sides). The commands of the part
// that the socket took are of unknown outcome; those it never took (the
// client was still writing them) say they were not sent, and are safe to
// send again, as when some replies came before the cut. The other
// master's command has its reply. Before, every command of the part was
// of unknown outcome.
func testClusterPipelinePartCutBeforeReply(t *testing.T, cl *redistest.Cluster) {
	const n = heldPartLen
	ctx := clusterCtx(t)
	held := cl.Masters[1]
	px, p, key := heldPartPipeline(t, cl, "cut0")
	done := execAsync(ctx, p)
	waitBlockedIn(t, ctx, held, "blpop", "")
	px.Cut(redistest.CutFIN)
	r := awaitExec(t, ctx, done, "its part's connection was cut")
	t.Logf("Exec error: %v", r.err)

	if r.err == nil || OutcomeOf(r.err) != OutcomeUnknown || SafeToRetry(r.err) {
		t.Fatalf("Exec error %v (%v): want one of unknown outcome", r.err, OutcomeOf(r.err))
	}
	if len(r.replies) != n {
		t.Fatalf("Exec returned %d replies for %d commands (error %v); want every one", len(r.replies), n, r.err)
	}
	if got, e := r.replies[0].String(), r.replies[0].Err(); got != "OK" || e != nil {
		t.Errorf("reply 0, of another master = %q, %v; want OK", got, e)
	}
	if e := r.replies[1].Err(); e == nil || OutcomeOf(e) != OutcomeUnknown {
		t.Errorf("reply 1, the BLPOP the master took = %v (%v); want unknown outcome", e, OutcomeOf(e))
	}
	checkCutInOrder(t, r.replies, 2, nil)
	// None of the SETs ran: the BLPOP held them until the cut.
	for i := 2; i < n; i++ {
		if k, _ := held.MustDo(t, "EXISTS", key(i)).(int64); k != 0 {
			t.Fatalf("the key of SET %d is on %s, though the BLPOP before it never returned", i, held.Addr)
		}
	}
}
