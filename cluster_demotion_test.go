package redpipe

import (
	"fmt"
	"slices"
	"testing"
)

// A master that a graceful failover made a replica still answers the
// commands for every master that a replica takes (DBSIZE, KEYS, SCRIPT
// LOAD, CONFIG SET): it refuses none with READONLY. A client whose layout
// is from before the failover must not take that answer for its shard's:
// the command reaches the replica promoted in its place, so that DBSIZE
// and KEYS count its keys and a script loaded, or a setting changed, is
// there for the commands that follow.
func TestClusterFanOutAcceptedByDemotedMaster(t *testing.T) {
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
