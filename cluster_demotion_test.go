package redpipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// A master that a graceful failover made a replica still answers the
// commands for every master that a replica takes (DBSIZE, KEYS, SCRIPT
// LOAD, CONFIG SET): it refuses none with READONLY. A client whose layout
// is from before the failover must not take that answer for its shard's:
// the command reaches the replica promoted in its place, so that DBSIZE
// and KEYS count its keys and a script loaded, or a setting changed, is
// there for the commands that follow.
func TestClusterFanOutAcceptedByDemotedMaster(t *testing.T) {
	t.Parallel()
	f := gracefulFailover(t, 6)
	ctx, cl, old, promoted, clients := f.ctx, f.cl, f.old, f.promoted, f.clients
	const prefix = "demoted:"
	keys := []any{keyIn(7, prefix), "1", keyIn(8000, prefix), "2", keyIn(15000, prefix), "3"}
	if err := clients[5].MSet(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	// reached checks that the command ran once on every master of the
	// new layout, the promoted replica among them.
	reached := func(t *testing.T, cmd string) {
		t.Helper()
		for _, m := range cl.Masters {
			if n := calls(t, m, cmd); n != 1 {
				t.Errorf("master %s ran %s %d times, want once", m.Addr, cmd, n)
			}
		}
	}
	prepare := func(t *testing.T, i int) *Client {
		t.Helper()
		c := clients[i]
		wantStale(t, c, old)
		resetStats(t, cl.Masters...)
		return c
	}
	t.Run("DBSIZE", func(t *testing.T) {
		c := prepare(t, 0)
		n, err := c.DBSize(ctx)
		if err != nil || n != 3 {
			t.Errorf("DBSize = %d, %v; want 3", n, err)
		}
		reached(t, "dbsize")
	})
	t.Run("KEYS", func(t *testing.T) {
		c := prepare(t, 1)
		got, err := c.Keys(ctx, prefix+"*")
		slices.Sort(got)
		want := []string{keys[0].(string), keys[2].(string), keys[4].(string)}
		slices.Sort(want)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Keys = %v, %v; want %v", got, err, want)
		}
		reached(t, "keys")
	})
	t.Run("SCRIPT LOAD", func(t *testing.T) {
		c := prepare(t, 2)
		sha, err := c.ScriptLoad(ctx, "return 'loaded past a demoted master'")
		if err != nil {
			t.Fatalf("ScriptLoad: %v", err)
		}
		for _, m := range cl.Masters {
			if got := fmt.Sprint(m.MustDo(t, "SCRIPT", "EXISTS", sha)); got != "[1]" {
				t.Errorf("SCRIPT EXISTS on master %s = %s, want [1]", m.Addr, got)
			}
		}
		if got := fmt.Sprint(promoted.MustDo(t, "EVALSHA", sha, "0")); got != "loaded past a demoted master" {
			t.Errorf("EVALSHA on the promoted master = %s", got)
		}
	})
	// checkBatch checks the replies of DBSIZE and SCRIPT LOAD.
	checkBatch := func(t *testing.T, replies []Value) {
		t.Helper()
		if n, err := replies[0].Int64(); err != nil || n != 3 {
			t.Errorf("DBSIZE = %v, %v; want 3", replies[0], err)
		}
		reached(t, "dbsize")
		sha := replies[1].String()
		for _, m := range cl.Masters {
			if got := fmt.Sprint(m.MustDo(t, "SCRIPT", "EXISTS", sha)); got != "[1]" {
				t.Errorf("SCRIPT EXISTS on master %s = %s, want [1]", m.Addr, got)
			}
		}
	}
	t.Run("Pipeline", func(t *testing.T) {
		c := prepare(t, 3)
		replies, err := c.Pipeline(NoTransaction).DBSize().ScriptLoad("return 'a pipeline past a demoted master'").Exec(ctx)
		if err != nil || len(replies) != 2 {
			t.Fatalf("Exec = %v, %v", replies, err)
		}
		checkBatch(t, replies)
	})
	t.Run("Stream", func(t *testing.T) {
		c := prepare(t, 4)
		var replies []Value
		s := c.Stream(ctx, func(i int, v Value) error {
			replies = append(replies, v)
			return nil
		})
		s.DBSize().ScriptLoad("return 'a stream past a demoted master'")
		if _, err := s.Close(ctx); err != nil || len(replies) != 2 {
			t.Fatalf("Close = %v with replies %v", err, replies)
		}
		checkBatch(t, replies)
	})
}

// With ReadFromReplicas, a read that SelectReplica sends to the master,
// and the commands of a pipeline that writes to their slot, go to the
// master by a master's client, which never sends READONLY. A client whose
// layout is from before a graceful failover sends them to the former
// master, now a replica: in a cluster a replica redirects every keyed
// command of such a connection to its master with MOVED before running
// it, so the replica promoted in its place serves them, and the former
// master serves none.
func TestClusterMasterReadsAfterGracefulFailover(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	ctx := clusterCtx(t)
	c := newReplicaClient(t, cl, ClusterOptions{ReadFromReplicas: true, SelectReplica: func(int, []string) int { return -1 }})
	old := cl.Masters[0]
	k := keyIn(7, "masterread:") // old's
	fctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	promoted, err := cl.Failover(fctx, old)
	if err != nil {
		t.Fatal(err)
	}
	wantStale(t, c, old)
	promoted.MustDo(t, "SET", k, "fresh")
	resetStats(t, old, promoted)
	if v, err := c.Get(ctx, k); err != nil || v != "fresh" {
		t.Errorf("Get = %q, %v; want the promoted master's value", v, err)
	}
	replies, err := c.Pipeline(NoTransaction).Set(k, "piped").Get(k).Exec(ctx)
	if err != nil || fmt.Sprint(replies) != "[OK piped]" {
		t.Errorf("SET then GET in a pipeline = %v, %v", replies, err)
	}
	// The former master runs the SET too, replicated from the promoted
	// one: only its reads tell.
	if n := calls(t, old, "get"); n != 0 {
		t.Errorf("the former master, now a replica, served GET %d times", n)
	}
	for _, cmd := range []string{"get", "set"} {
		if n := calls(t, promoted, cmd); n == 0 {
			t.Errorf("the promoted master ran no %s", cmd)
		}
	}
}

// A user whose ACL refuses ROLE still runs commands for every master,
// alone, in a pipeline and in a stream: each master's ROLE refusal is
// set aside and the node taken for a master, as the layout says.
func TestClusterFanOutWithoutRole(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	for _, m := range cl.Masters {
		m.MustDo(t, "ACL", "SETUSER", "norole", "on", ">pw", "~*", "&*", "+@all", "-role")
	}
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), Options: Options{Username: "norole", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, err := c.Do(ctx, "ROLE"); err == nil && v.Err() == nil {
		t.Fatalf("ROLE = %v for the user, not refused: nothing tested", v)
	}
	if err := c.MSet(ctx, keyIn(7, "norole:"), 1, keyIn(8000, "norole:"), 2, keyIn(15000, "norole:"), 3); err != nil {
		t.Fatal(err)
	}
	if n, err := c.DBSize(ctx); err != nil || n != 3 {
		t.Errorf("DBSize = %d, %v; want 3", n, err)
	}
	replies, err := c.Pipeline(NoTransaction).DBSize().Exec(ctx)
	if err != nil || fmt.Sprint(replies) != "[3]" {
		t.Errorf("DBSIZE in a pipeline = %v, %v; want [3]", replies, err)
	}
	var got []Value
	s := c.Stream(ctx, func(i int, v Value) error {
		got = append(got, v)
		return nil
	})
	s.DBSize()
	if _, err := s.Close(ctx); err != nil || fmt.Sprint(got) != "[3]" {
		t.Errorf("DBSIZE in a stream = %v, %v; want [3]", got, err)
	}
}

// The reply that stands for a command for every master run by a node that
// said it was a replica sends the command on as a READONLY refusal does,
// but, kept as its reply, does not say that nothing ran: the replica ran
// what it takes.
func TestReplicaNowReply(t *testing.T) {
	v := replicaNow("127.0.0.1:7000")
	if !isReadonly(v) {
		t.Errorf("%q does not read as a READONLY refusal", v.Str)
	}
	err := Value{v}.Err()
	if OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) || errors.Is(err, ErrNotApplied) {
		t.Errorf("%v: outcome %v, want unknown", err, OutcomeOf(err))
	}
	if !strings.Contains(err.Error(), "127.0.0.1:7000") || !strings.Contains(err.Error(), "try again") {
		t.Errorf("%v: does not name the node or say what to do", err)
	}
	for _, role := range []struct {
		v       resp.Value
		replica bool
	}{
		{resp.Value{Kind: resp.Array, Elems: []resp.Value{{Kind: resp.BulkString, Str: "master"}, {Kind: resp.Integer, Int: 1}}}, false},
		{resp.Value{Kind: resp.Array, Elems: []resp.Value{{Kind: resp.BulkString, Str: "slave"}, {Kind: resp.BulkString, Str: "127.0.0.1"}}}, true},
		{resp.Value{Kind: resp.Error, Str: "NOPERM User norole has no permissions to run the 'role' command"}, false},
		{resp.Value{Kind: resp.Array}, false},
	} {
		if got := isReplicaRole(role.v); got != role.replica {
			t.Errorf("isReplicaRole(%+v) = %v, want %v", role.v, got, role.replica)
		}
	}
}

// A command for every master that a node listed as a master ran as a
// replica (CONFIG SET, which a replica applies to itself) ran somewhere:
// when the masters it was then sent to cannot be reached, its error must
// not say that it was not sent.
func TestClusterFanOutRunOnReplicaThenUnreached(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	ctx := clusterCtx(t)
	old := cl.Masters[0]
	var d net.Dialer
	var only atomic.Pointer[string] // when set, the one address dials reach
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if a := only.Load(); a != nil && addr != *a {
			return nil, fmt.Errorf("dials to %s are cut", addr)
		}
		return d.DialContext(ctx, network, addr)
	}
	oldAddr := old.Addr
	only.Store(&oldAddr)
	// One client a case, as each learns the new layout. A stream counts a
	// redirection for each leg of a command that was not written, the
	// two cut off among them.
	clients := make([]*Client, 3)
	for i := range clients {
		c, err := NewClusterClient(ClusterOptions{Addrs: []string{old.Addr}, MaxRedirects: 1 + i/2,
			Options: Options{Dialer: dial, MaxRetries: -1}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Set(ctx, keyIn(7, "runonreplica:"), "x"); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := cl.Failover(fctx, old); err != nil {
		t.Fatal(err)
	}
	ran := func(t *testing.T, n string) {
		t.Helper()
		if got := fmt.Sprint(old.MustDo(t, "CONFIG", "GET", "slowlog-max-len")); !strings.Contains(got, n) {
			t.Fatalf("the former master did not run CONFIG SET (%s): nothing to test", got)
		}
	}
	unknown := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil || OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
			t.Errorf("%s that the former master ran as a replica = %v (outcome %v); want an error of unknown outcome", what, err, OutcomeOf(err))
		}
	}
	t.Run("alone", func(t *testing.T) {
		c := clients[0]
		wantStale(t, c, old)
		err := c.ConfigSet(ctx, "slowlog-max-len", "777")
		ran(t, "777")
		unknown(t, "CONFIG SET", err)
	})
	t.Run("Pipeline", func(t *testing.T) {
		c := clients[1]
		wantStale(t, c, old)
		replies, err := c.Pipeline(NoTransaction).ConfigSet("slowlog-max-len", "778").Exec(ctx)
		ran(t, "778")
		unknown(t, "a pipeline of CONFIG SET", err)
		if len(replies) == 1 {
			unknown(t, "CONFIG SET in a pipeline", replies[0].Err())
		}
	})
	t.Run("Stream", func(t *testing.T) {
		c := clients[2]
		wantStale(t, c, old)
		var got []Value
		s := c.Stream(ctx, func(i int, v Value) error {
			got = append(got, v)
			return nil
		})
		s.ConfigSet("slowlog-max-len", "779")
		_, err := s.Close(ctx)
		ran(t, "779")
		unknown(t, "a stream of CONFIG SET", err)
		if len(got) == 1 {
			unknown(t, "CONFIG SET in a stream", got[0].Err())
		}
	})
}
