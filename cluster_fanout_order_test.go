package redpipe

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// TestClusterFanOutAfterMoved checks that a keyed command queued before a
// command for every master that reads or changes the keys, and redirected
// by MOVED, does not run after that command on the slot's new master: a
// SET queued before FLUSHALL either is flushed or keeps its MOVED as its
// reply, not applied; one queued before DBSIZE is counted or not applied.
func TestClusterFanOutAfterMoved(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	from, to := cl.Masters[0], cl.Masters[1]
	c := loadedClients(t, ctx, cl, 1)[0]
	slots := []int{42, 43, 44, 45}
	for _, slot := range slots {
		if owner, err := cl.SlotOwner(slot); err != nil || owner != from {
			t.Fatalf("slot %d is not the first master's: %v", slot, err)
		}
	}
	if err := cl.MoveSlots(ctx, from, to, slots...); err != nil {
		t.Fatal(err)
	}

	// stale makes the client route slot to the master it left, as one
	// that has not heard of the move does.
	stale := func(slot int) {
		t.Helper()
		routeStale(t, c, slot, from.Addr)
	}

	t.Run("FlushAll", func(t *testing.T) {
		k := keyIn(slots[0], "fanorder:flush:")
		stale(slots[0])
		replies, err := c.Pipeline(NoTransaction).Set(k, "v").FlushAll().Exec(ctx)
		checkSetThenFlush(t, ctx, c, k, replies, err, "Exec")
	})

	t.Run("DBSize", func(t *testing.T) {
		if err := c.FlushAll(ctx); err != nil {
			t.Fatal(err)
		}
		k := keyIn(slots[1], "fanorder:dbsize:")
		stale(slots[1])
		replies, err := c.Pipeline(NoTransaction).Set(k, "v").DBSize().Exec(ctx)
		if len(replies) != 2 {
			t.Fatalf("Exec = %v, %v", replies, err)
		}
		n, nerr := replies[1].Int64()
		if nerr != nil {
			t.Fatalf("DBSIZE: %v", nerr)
		}
		t.Logf("SET: %v; DBSIZE: %v", replies[0], replies[1])
		want := int64(1)
		if refusedNotApplied(t, "SET before DBSIZE", replies[0]) {
			want = 0
		}
		if n != want {
			t.Errorf("DBSIZE after SET = %d, want %d (SET: %v, Exec: %v)", n, want, replies[0], err)
		}
		if _, err := c.Get(ctx, k); (err == nil) != (want == 1) {
			t.Errorf("GET %s after the pipeline: %v, with SET %v", k, err, replies[0])
		}
	})

	t.Run("ScriptLoad", func(t *testing.T) {
		// A command for every master that touches no key does not hold
		// back a redirected one.
		k := keyIn(slots[2], "fanorder:script:")
		stale(slots[2])
		replies, err := c.Pipeline(NoTransaction).Set(k, strconv.Itoa(7)).ScriptLoad("return 7").Exec(ctx)
		if err != nil || len(replies) != 2 || replies[0].String() != "OK" {
			t.Fatalf("Exec = %v, %v", replies, err)
		}
		if v, err := c.Get(ctx, k); err != nil || v != "7" {
			t.Errorf("GET %s = %v, %v; want 7", k, v, err)
		}
	})

	t.Run("StreamFlushAll", func(t *testing.T) {
		k := keyIn(slots[3], "fanorder:stream:")
		stale(slots[3])
		replies, err := streamSetThenFlush(ctx, c, k)
		checkSetThenFlush(t, ctx, c, k, replies, err, "Close")
	})
}

// checkSetThenFlush checks the replies of SET k then FLUSHALL, run by
// how (Exec or Close) with err: FLUSHALL succeeded, and k is gone whether
// SET ran before it or was refused, with nothing applied.
func checkSetThenFlush(t *testing.T, ctx context.Context, c *Client, k string, replies []Value, err error, how string) {
	t.Helper()
	if len(replies) != 2 {
		t.Fatalf("%s = %v with replies %v", how, err, replies)
	}
	if replies[1].Err() != nil {
		t.Fatalf("FLUSHALL: %v", replies[1].Err())
	}
	t.Logf("SET: %v; FLUSHALL: %v", replies[0], replies[1])
	setNot := refusedNotApplied(t, "SET before FLUSHALL", replies[0])
	_, gerr := c.Get(ctx, k)
	switch {
	case gerr == nil:
		t.Errorf("%s survived a FLUSHALL queued after its SET (SET: %v, %s: %v)", k, replies[0], how, err)
	case !errors.Is(gerr, ErrNil):
		t.Fatal(gerr)
	case !setNot && err != nil:
		t.Errorf("%s = %v with every reply OK", how, err)
	}
}

// TestClusterFanOutAfterPause checks that a keyed command queued before a
// command for every master that changes the keys, and refused with
// CLUSTERDOWN by a master that ran the later command's leg (a node whose
// cluster is down refuses keyed commands only), does not run after that
// command once the pause is over: a SET queued before FLUSHALL either is
// flushed or keeps its refusal as its reply, not applied.
func TestClusterFanOutAfterPause(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	down := cl.Masters[0]
	c := loadedClients(t, ctx, cl, 1)[0]
	const lost = 100 // a slot of down that it gives up for a while
	if owner, err := cl.SlotOwner(lost); err != nil || owner != down {
		t.Fatalf("slot %d is not the first master's: %v", lost, err)
	}
	// state waits, at most 10s, for down to say its cluster is in state.
	state := func(t *testing.T, want string) {
		t.Helper()
		for i := 0; ; i++ {
			info, _ := down.MustDo(t, "CLUSTER", "INFO").(string)
			if strings.Contains(info, "cluster_state:"+want) {
				return
			}
			if i == 500 {
				t.Fatalf("after 10s %s still does not report cluster_state:%s", down.Addr, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// pause makes down refuse keyed commands with CLUSTERDOWN for a
	// while, as its cluster no more covers every slot, and returns a
	// channel that tells when it serves them again.
	pause := func(t *testing.T) <-chan error {
		t.Helper()
		down.MustDo(t, "CLUSTER", "DELSLOTS", strconv.Itoa(lost))
		state(t, "fail")
		back := make(chan error, 1)
		go func() {
			time.Sleep(300 * time.Millisecond)
			_, err := down.Do("CLUSTER", "ADDSLOTS", strconv.Itoa(lost))
			back <- err
		}()
		return back
	}
	resume := func(t *testing.T, back <-chan error) {
		t.Helper()
		select {
		case err := <-back:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("CLUSTER ADDSLOTS did not end")
		}
		state(t, "ok")
	}
	t.Run("Pipeline", func(t *testing.T) {
		k := keyIn(7, "fanpause:pipeline:") // down's
		back := pause(t)
		replies, err := c.Pipeline(NoTransaction).Set(k, "v").FlushAll().Exec(ctx)
		resume(t, back)
		checkSetThenFlush(t, ctx, c, k, replies, err, "Exec")
	})
	t.Run("Stream", func(t *testing.T) {
		k := keyIn(7, "fanpause:stream:")
		back := pause(t)
		replies, err := streamSetThenFlush(ctx, c, k)
		resume(t, back)
		checkSetThenFlush(t, ctx, c, k, replies, err, "Close")
	})
}

// refusedNotApplied reports whether v, the reply of what, is an error, and
// fails t unless that error says nothing was applied.
func refusedNotApplied(t *testing.T, what string, v Value) bool {
	t.Helper()
	err := v.Err()
	if err == nil {
		return false
	}
	if OutcomeOf(err) != OutcomeNotApplied {
		t.Errorf("%s: %v, of outcome %v, want OK or not applied", what, err, OutcomeOf(err))
	}
	return true
}

// streamSetThenFlush sends SET k then FLUSHALL on a stream of c, and
// returns their replies and Close's error.
func streamSetThenFlush(ctx context.Context, c *Client, k string) ([]Value, error) {
	var replies []Value
	s := c.Stream(ctx, func(i int, v Value) error {
		replies = append(replies, v)
		return nil
	})
	s.Set(k, "v").FlushAll()
	_, err := s.Close(ctx)
	return replies, err
}
