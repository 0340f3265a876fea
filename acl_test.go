package redpipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/redistest"
)

// A user whose ACL refuses ASKING cannot follow an ASK: the node that
// imports the slot answers the command that comes without it with MOVED,
// back to the node that said ASK. The command did not run, and the error
// says so, with the node's NOPERM and what to grant, in a call alone, a
// transaction, a plain pipeline and a stream, instead of "gave up after 5
// redirections" after sending the command back and forth between the two.
func TestClusterAskingRefusedByACL(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	for _, s := range cl.Servers() {
		s.MustDo(t, "ACL", "SETUSER", "noask", "on", ">pw", "~*", "+@all", "-asking")
	}
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{Username: "noask", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stay, moved := "{noask}:stay", "{noask}:moved"
	slot := int(hashslot.Slot(moved))
	if err := c.MSet(ctx, stay, "s", moved, "m"); err != nil {
		t.Fatal(err)
	}
	from, to := ownerAndOther(t, cl, slot)
	m, err := cl.BeginMigration(ctx, from, to, slot)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Finish(ctx)
	from.MustDo(t, "MIGRATE", "127.0.0.1", strconv.Itoa(to.Port), "", "0", "5000", "KEYS", moved)
	from.MustDo(t, "CONFIG", "RESETSTAT")
	to.MustDo(t, "CONFIG", "RESETSTAT")

	check := func(what string, err error) {
		t.Helper()
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "NOPERM" {
			t.Errorf("%s: err = %v, want one that wraps the NOPERM refusal of ASKING", what, err)
			return
		}
		for _, want := range []string{"refused ASKING", "did not run", "ACL SETUSER noask +asking"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", what, err, want)
			}
		}
	}
	_, err = c.Get(ctx, moved)
	check("GET", err)
	if OutcomeOf(err) != OutcomeNotApplied {
		t.Errorf("GET: OutcomeOf(%v) = %v, want not applied", err, OutcomeOf(err))
	}

	_, err = c.Pipeline().Set(moved, "tx").Incr(stay + "n").Exec(ctx)
	check("transaction", err)
	if !errors.Is(err, ErrNotApplied) {
		t.Errorf("transaction: %v does not match ErrNotApplied", err)
	}

	replies, err := c.Pipeline(NoTransaction).Set(moved, "plain").Get(stay).Exec(ctx)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != 0 || len(replies) != 2 {
		t.Fatalf("plain pipeline = %v, %v; want the SET's error, at index 0", replies, err)
	}
	check("SET of a plain pipeline", replies[0].Err())
	if OutcomeOf(replies[0].Err()) != OutcomeNotApplied {
		t.Errorf("SET of a plain pipeline: OutcomeOf(%v) = %v, want not applied", replies[0].Err(), OutcomeOf(replies[0].Err()))
	}
	if s, err := replies[1].Text(); err != nil || s != "s" {
		t.Errorf("GET of a plain pipeline = %q, %v, want \"s\"", s, err)
	}

	var got []Value
	st := c.Stream(ctx, func(i int, v Value) error { got = append(got, v); return nil })
	st.Do("SET", moved, "stream").Do("GET", stay)
	if _, err := st.Close(ctx); err == nil {
		t.Errorf("stream Close = nil, want the error of its SET")
	}
	if len(got) != 2 {
		t.Fatalf("the stream handed out %d replies, want 2", len(got))
	}
	check("SET of a stream", got[0].Err())

	// Nothing ran: the key moved is as it was, and the nodes redirected
	// each command no more than the once it took to find the refusal.
	if v, err := to.Pipeline([]string{"ASKING"}, []string{"GET", moved}); err != nil || len(v) != 2 || v[1] != "m" {
		t.Errorf("%s = %v, %v on the node it moved to, want \"m\": a refused command ran", moved, v, err)
	}
	// Five: one for each command but the transaction's, whose two
	// commands were both refused as they were queued.
	if n := errorCount(to, "MOVED"); n > 5 {
		t.Errorf("the importing node sent %d MOVED, want 5, one per command: the client went back and forth", n)
	}
}

// A user allowed a few commands one by one (+get +set +incr), as narrow
// ACLs are written, lacks MULTI and EXEC: a transactional pipeline, the
// default, has its MULTI refused and its commands run one by one. The
// error says so, of unknown outcome, and what to grant or do instead.
func TestMultiRefusedByACLSaysWhatToGrant(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+get", "+set", "+incr")
	ctx := ctxT(t)
	c, err := NewClient(Options{Addr: srv.Addr, Username: "app", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Pipeline().Set("app:a", "1").Incr("app:n").Exec(ctx)
	var se *Error
	if !errors.As(err, &se) || se.Prefix != "NOPERM" || OutcomeOf(err) != OutcomeUnknown || errors.Is(err, ErrNotApplied) {
		t.Fatalf("Exec = %v (outcome %v), want MULTI's NOPERM, of unknown outcome", err, OutcomeOf(err))
	}
	for _, want := range []string{"MULTI was refused", "ACL SETUSER app +multi +exec", "@transaction", "NoTransaction"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Ran indeed: the error's unknown outcome is no mere caution.
	if v := srv.MustDo(t, "GET", "app:n"); v != "1" {
		t.Errorf("app:n = %v, want 1: the INCR behind the refused MULTI ran", v)
	}
	if replies, err := c.Pipeline(NoTransaction).Set("app:a", "2").Incr("app:n").Exec(ctx); err != nil || len(replies) != 2 {
		t.Errorf("the same commands with NoTransaction = %v, %v", replies, err)
	}
}

// A cluster whose nodes refuse the client's password, changed on the
// server (ACL SETUSER resetpass) or its user deleted, answered: a call
// fails at once with the node's WRONGPASS and the hint of the handshake,
// after one dial, instead of taking the refusal for a node out of reach,
// dialing every node for a layout they would refuse too, waiting for
// that refresh and failing with "cluster layout unknown" and a refusal
// per node. Calls in a row do not pile up dials either.
func TestClusterPasswordChangedFailsAtOnce(t *testing.T) {
	cl := redistest.StartCluster(t, 0)
	for _, s := range cl.Servers() {
		s.MustDo(t, "ACL", "SETUSER", "app", "on", ">old-pw", "~*", "+@all")
	}
	ctx := clusterCtx(t)
	var dials atomic.Int64
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{Username: "app", Password: "old-pw",
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys := []string{"pw:a", "pw:b", "pw:c", "pw:d"}
	for _, k := range keys {
		if err := c.Set(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range cl.Servers() {
		s.MustDo(t, "ACL", "SETUSER", "app", "resetpass", ">new-pw")
		s.MustDo(t, "CLIENT", "KILL", "USER", "app")
	}
	r := c.cluster
	waitUntil(t, ctx, "the client to see its connections closed", func() bool {
		r.mu.RLock()
		defer r.mu.RUnlock()
		for _, n := range r.nodes {
			if cn := n.shared.Load(); cn != nil && cn.Alive() {
				return false
			}
		}
		return true
	})
	// A refused setup starts a refresh in the background, which a call
	// never waits for: held back by the cooldown here, it cannot run
	// while the calls below are counted.
	defer func(d time.Duration) { refreshCooldown = d }(refreshCooldown)
	refreshCooldown = time.Hour
	refreshes := r.refreshes.Load()
	check := func(what string, err error) {
		t.Helper()
		var he *HandshakeError
		var se *Error
		if !errors.As(err, &he) || !errors.As(err, &se) || se.Prefix != "WRONGPASS" || OutcomeOf(err) == OutcomeUnknown {
			t.Errorf("%s: err = %v (outcome %v), want the node's WRONGPASS at setup, not run", what, err, OutcomeOf(err))
			return
		}
		if strings.Contains(err.Error(), "layout unknown") || strings.Count(err.Error(), "WRONGPASS") != 1 {
			t.Errorf("%s: err = %v, want the one refusal, not the layout's", what, err)
		}
		if !strings.Contains(err.Error(), "the password changed on the server, or the user is off or deleted") {
			t.Errorf("%s: err = %v, want it to name a password changed on the server", what, err)
		}
	}
	const calls = 8
	before := dials.Load()
	for i := range calls {
		check("SET", c.Set(ctx, keys[i%len(keys)], "w"))
	}
	_, err = c.Pipeline().Set(keys[0], "tx").Exec(ctx)
	check("transaction", err)
	_, err = c.Pipeline(NoTransaction).Set(keys[0], "p").Set(keys[1], "p").Exec(ctx)
	check("plain pipeline", err)
	// A dial a call, with one the pipeline's for each node it has commands
	// for: no call dials every node for the layout.
	if n := dials.Load() - before; n > calls+1+2 {
		t.Errorf("%d calls dialed %d times, want no more than one dial each", calls+2, n)
	}
	if n := r.refreshes.Load() - refreshes; n != 0 {
		t.Errorf("the calls refreshed the layout %d times, want none: the nodes answered", n)
	}
}

// A script the user's ACL refuses as a whole, EVALSHA or EVAL itself or
// a key it is given outside the user's patterns, is refused before it
// runs: not applied, not "the script failed, maybe after some of its
// writes". A script whose own command is refused as it runs, or that
// returns such a refusal of one of its commands itself, may have written
// before: unknown.
func TestScriptRefusedByACLNotApplied(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "noscripts", "on", ">pw", "~*", "+@all", "-evalsha", "-eval")
	srv.MustDo(t, "ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+@all", "-set")
	ctx := ctxT(t)
	client := func(user string) *Client {
		c, err := NewClient(Options{Addr: srv.Addr, Username: user, Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	want := func(what string, err error, outcome Outcome) {
		t.Helper()
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("%s: err = %v, want the server's refusal", what, err)
			return
		}
		if OutcomeOf(err) != outcome {
			t.Errorf("%s: OutcomeOf(%v) = %v, want %v", what, err, OutcomeOf(err), outcome)
		}
		if got := strings.Contains(err.Error(), "maybe after some of its writes"); got != (outcome == OutcomeUnknown) {
			t.Errorf("%s: error %q, want it to say the script may have written only if it may have", what, err)
		}
	}
	s := NewScript("redis.call('INCR', KEYS[1]) return 1")

	c := client("noscripts")
	_, err := s.Run(ctx, c, []string{"app:n"})
	want("Script.Run without EVALSHA and EVAL", err, OutcomeNotApplied)
	_, err = c.Eval(ctx, s.Source(), 1, "app:n")
	want("EVAL without EVAL", err, OutcomeNotApplied)
	replies, _ := c.Pipeline(NoTransaction).RunScript(s, []string{"app:n"}).Exec(ctx)
	if len(replies) != 1 {
		t.Fatalf("a plain pipeline of one script gave %d replies", len(replies))
	}
	want("a script of a plain pipeline without EVALSHA", replies[0].Err(), OutcomeNotApplied)

	c = client("app")
	_, err = s.Run(ctx, c, []string{"other:n"})
	want("Script.Run of a key outside ~app:*", err, OutcomeNotApplied)
	if v, _ := srv.Do("EXISTS", "app:n", "other:n"); v != int64(0) {
		t.Fatalf("a refused script ran: EXISTS = %v", v)
	}
	_, err = c.Eval(ctx, "redis.call('INCR', KEYS[1]) return redis.call('SET', KEYS[1], 1)", 1, "app:n")
	want("a script whose SET is refused as it runs", err, OutcomeUnknown)
	_, err = c.Eval(ctx, "redis.call('INCR', KEYS[1]) return redis.error_reply(\"NOPERM this user has no permissions to run the 'set' command\")", 1, "app:n")
	want("a script that returns a refusal of its SET", err, OutcomeUnknown)
	if v, _ := srv.Do("GET", "app:n"); v != "2" {
		t.Errorf("app:n = %v, want 2: the scripts that failed as they ran wrote it", v)
	}
}

// refusedCall knows the server's refusal of a script call in the words of
// Redis 7.0 and of later versions, and no other NOPERM.
func TestRefusedCallWording(t *testing.T) {
	for msg, want := range map[string]bool{
		"NOPERM this user has no permissions to run the 'evalsha' command":                             true,
		"NOPERM User app has no permissions to run the 'fcall' command":                                true,
		"NOPERM this user has no permissions to access one of the keys used as arguments":              true,
		"NOPERM User app has no permissions to run the 'set' command":                                  false,
		"NOPERM No permissions to access a key":                                                        false,
		"NOPERM User app has no permissions to run the 'set' command script: abc, on @user_script:1.":  false,
		"NOPERM User app has no permissions to run the 'eval' command script: abc, on @user_script:1.": false,
		"ERR The user executing the script can't run this command or subcommand script: abc":           false,
	} {
		if got := refusedCall(newError(msg)); got != want {
			t.Errorf("refusedCall(%q) = %v, want %v", msg, got, want)
		}
	}
}

// The setup of a replica connection refused at READONLY, which replica
// reads send on it, names the option that asks for it and the rule to
// grant; a refused command the client's options add to every connection
// names its rule.
func TestHandshakeNopermNamesTheRule(t *testing.T) {
	for _, tc := range []struct{ step, user, want string }{
		{"READONLY", "app", "ClusterOptions.ReadFromReplicas sends on every connection to a replica: allow it (ACL SETUSER app +readonly), or turn ReadFromReplicas off"},
		{"SELECT", "", "allow the user SELECT (ACL SETUSER default +select)"},
		{"CLIENT SETNAME", "app", "ACL SETUSER app +client|setname"},
		{"PING", "app", "the user may not run PING, which the options ask for on every connection: allow it (ACL SETUSER app +ping)"},
	} {
		err := handshakeError(tc.step, tc.user, newError("NOPERM this user has no permissions to run the '"+strings.ToLower(tc.step)+"' command"))
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "NOPERM" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("handshakeError(%s) = %v, want the NOPERM and %q", tc.step, err, tc.want)
		}
	}
}

// ACL rules live on each node, and a node restarted from its config comes
// back without those set by ACL SETUSER: a master killed, replaced by its
// replica and restarted refuses the client's user (WRONGPASS) where the
// layout the client learned before still sends the slot. The refusal
// comes from one node of a layout that changed, not from every node:
// the client must learn the new layout and follow the slot to the
// promoted replica, as after any failover, rather than fail each call
// with the old master's refusal for ever.
func TestClusterFollowsFailoverPastNodeRefusingSetup(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	for _, s := range append(cl.Servers(), cl.Replicas...) {
		s.MustDo(t, "ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1], Options: Options{Username: "app", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.cluster
	if err := r.ready(ctx); err != nil {
		t.Fatal(err)
	}
	dead := cl.Masters[0]
	key := ""
	for slot := range hashslot.Count {
		if n := r.owner(slot); n != nil && n.opt.Addr == dead.Addr {
			key = keyIn(slot, "acl:failover:")
			break
		}
	}
	if key == "" {
		t.Fatalf("no slot served by %s in the client's layout", dead.Addr)
	}
	if err := c.Set(ctx, key, "v"); err != nil {
		t.Fatal(err)
	}
	promoted, err := cl.KillMaster(ctx, dead)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Rejoin(ctx, dead); err != nil {
		t.Fatal(err)
	}
	if v := dead.MustDo(t, "ACL", "LIST"); strings.Contains(fmt.Sprint(v), "user app ") {
		t.Fatalf("the restarted %s still knows the user app: %v", dead.Addr, v)
	}
	var last error
	for i := 0; i < 200; i++ {
		_, last = c.Get(ctx, key)
		if last == nil || errors.Is(last, ErrNil) {
			break
		}
		var he *HandshakeError
		if !errors.As(last, &he) || ctx.Err() != nil {
			t.Fatalf("Get %s after the failover = %v, want it served by %s", key, last, promoted.Addr)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if last != nil && !errors.Is(last, ErrNil) {
		t.Fatalf("Get %s still fails after the failover with %v: the client never followed the slot to %s", key, last, promoted.Addr)
	}
}

// Behind a MULTI the server refused (the user's ACL lacks it), the
// commands ran one by one: Exec returns their replies, in order and
// decoded, each telling what its command did (a command the ACL refuses
// too has its own NOPERM), with the refusal, of unknown outcome, as its
// error. The server holds what the replies say ran. Same for the Multi
// of a Tx.
func TestMultiRefusedReturnsTheReplies(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+get", "+set", "+incr", "+watch", "+unwatch")
	ctx := ctxT(t)
	c, err := NewClient(Options{Addr: srv.Addr, Username: "app", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check := func(what string, replies []Value, err error) {
		t.Helper()
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "NOPERM" || OutcomeOf(err) != OutcomeUnknown || errors.Is(err, ErrNotApplied) ||
			!strings.Contains(err.Error(), "MULTI was refused") {
			t.Errorf("%s: Exec error = %v (outcome %v), want MULTI's NOPERM, of unknown outcome", what, err, OutcomeOf(err))
		}
		if len(replies) != 4 {
			t.Fatalf("%s: Exec returned %d replies for 4 commands that ran outside a transaction (error %v)", what, len(replies), err)
		}
		if replies[0].String() != "OK" || replies[0].Err() != nil {
			t.Errorf("%s: reply of SET = %q, %v; want OK", what, replies[0].String(), replies[0].Err())
		}
		if n, err := replies[1].Int64(); err != nil || n != 1 {
			t.Errorf("%s: reply of INCR = %v, %v; want 1", what, n, err)
		}
		var re *Error
		if e := replies[2].Err(); !errors.As(e, &re) || re.Prefix != "NOPERM" {
			t.Errorf("%s: reply of DEL, which the ACL refuses = %q, %v; want its NOPERM", what, replies[2].String(), e)
		}
		if d, err := replies[3].Decoded(); d != "decoded" || err != nil {
			t.Errorf("%s: reply of GET, decoded = %v, %v; want what its Decoder made", what, d, err)
		}
		if v := srv.MustDo(t, "GET", "app:n"); v != "1" {
			t.Errorf("%s: app:n = %v on the server, want 1, as the reply of INCR says", what, v)
		}
		srv.MustDo(t, "FLUSHALL")
	}
	mark := func(Value) (any, error) { return "decoded", nil }
	double := WithDecoder("GET", mark)

	replies, err := c.Pipeline(double).Set("app:a", "1").Incr("app:n").Del("app:a").Get("app:a").Exec(ctx)
	check("pipeline", replies, err)

	tx, err := c.Watch(ctx, "app:n")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	m := tx.Multi()
	m.Set("app:a", "1").Incr("app:n").Del("app:a").Get("app:a")
	// The Tx's Multi has no decoder option of its own: the Client's.
	if err := c.SetDecoder("GET", mark); err != nil {
		t.Fatal(err)
	}
	replies, err = m.Exec(ctx)
	check("Multi of a Tx", replies, err)
}
