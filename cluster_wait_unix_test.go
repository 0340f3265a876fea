//go:build unix

package redpipe

import (
	"errors"
	"syscall"
	"testing"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/redistest"
)

// waitAfterMoved starts a cluster with a replica per master and a client
// of it, moves the slot of key to another master behind the client's
// back, so that the client routes it to the master it left, and stops
// the one replica of the new master: a WAIT that covers a write of key
// cannot count it. cont lets the replica go on.
func waitAfterMoved(t *testing.T, key string) (cl *redistest.Cluster, c *Client, stale func(c *Client, slot int, from *redistest.Server), cont func()) {
	t.Helper()
	ctx := clusterCtx(t)
	cl = redistest.StartCluster(t, 1)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Exists(ctx, key); err != nil {
		t.Fatal(err) // the client learns the layout
	}
	slot := int(hashslot.Slot(key))
	from, to := ownerAndOther(t, cl, slot)
	if err := cl.MoveSlots(ctx, from, to, slot); err != nil {
		t.Fatal(err)
	}
	stale = func(c *Client, slot int, from *redistest.Server) {
		t.Helper()
		routeStale(t, c, slot, from.Addr)
	}
	stale(c, slot, from)
	replicas, err := cl.ReplicasOf(to)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of the new master: %v, %v", replicas, err)
	}
	pid := replicas[0].Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	cont = func() {
		if stopped {
			stopped = false
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(cont)
	return cl, c, stale, cont
}

// TestClusterWaitAfterMoved checks that a write queued before WAIT in a
// pipeline, and redirected by MOVED, does not run after WAIT on the
// slot's new master: WAIT counts the replicas that have the writes sent
// before it on its connection, so its count would pass for one of a
// write it never waited for. A read, which WAIT does not count, still
// follows its MOVED.
func TestClusterWaitAfterMoved(t *testing.T) {
	t.Parallel()
	ctx := clusterCtx(t)
	key := "{waitmoved}k"
	cl, c, stale, cont := waitAfterMoved(t, key)
	replies, err := c.Pipeline(NoTransaction, ErrorsInReplies).Set(key, "v").Wait(1, 200).Exec(ctx)
	if err != nil || len(replies) != 2 {
		t.Fatalf("Exec = %v, %v", replies, err)
	}
	n, nerr := replies[1].Int64()
	if nerr != nil {
		t.Fatalf("WAIT: %v", nerr)
	}
	if replies[0].Err() == nil && n != 0 {
		t.Errorf("SET ran, and WAIT says %d replica has it, while the one replica of its master was stopped", n)
	}
	if refusedNotApplied(t, "SET before WAIT", replies[0]) {
		if _, err := c.Get(ctx, key); !errors.Is(err, ErrNil) {
			t.Errorf("GET after a SET not applied: %v", err)
		}
	}
	cont()

	read := "{waitmoved:read}r"
	rslot := int(hashslot.Slot(read))
	if err := c.Set(ctx, read, "before"); err != nil {
		t.Fatal(err)
	}
	rfrom, rto := ownerAndOther(t, cl, rslot)
	if err := cl.MoveSlots(ctx, rfrom, rto, rslot); err != nil {
		t.Fatal(err)
	}
	stale(c, rslot, rfrom)
	replies, err = c.Pipeline(NoTransaction, ErrorsInReplies).Get(read).Wait(0, 0).Exec(ctx)
	if err != nil || len(replies) != 2 || replies[0].String() != "before" {
		t.Errorf("GET before WAIT, MOVED = %v, %v; want the value, read where MOVED said", replies, err)
	}
}

// TestClusterStreamWaitAfterMoved is TestClusterWaitAfterMoved for a
// write of a stream.
func TestClusterStreamWaitAfterMoved(t *testing.T) {
	t.Parallel()
	ctx := clusterCtx(t)
	key := "{waitmoved}k"
	_, c, _, _ := waitAfterMoved(t, key)
	var replies []Value
	st := c.Stream(ctx, func(i int, v Value) error {
		replies = append(replies, v)
		return nil
	})
	st.Set(key, "v").Wait(1, 200)
	if _, err := st.Close(ctx); len(replies) != 2 {
		t.Fatalf("stream: %v, Close: %v", replies, err)
	}
	if n, _ := replies[1].Int64(); replies[0].Err() == nil && n != 0 {
		t.Errorf("SET ran, and WAIT says %d replica has it, while the one replica of its master was stopped", n)
	}
	if refusedNotApplied(t, "SET before WAIT", replies[0]) {
		if _, err := c.Get(ctx, key); !errors.Is(err, ErrNil) {
			t.Errorf("GET after a SET not applied: %v", err)
		}
	}
}
