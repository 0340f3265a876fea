//go:build unix

package redpipe

import (
	"errors"
	"syscall"
	"testing"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/redistest"
)

// TestClusterWaitAfterMoved checks that a write queued before WAIT in a
// pipeline, and redirected by MOVED, does not run after WAIT on the
// slot's new master: WAIT counts the replicas that have the writes sent
// before it on its connection, so its count would pass for one of a write
// it never waited for. The new master's one replica is stopped: a WAIT
// that covers the SET cannot count it. A read, which WAIT does not count,
// still follows its MOVED.
func TestClusterWaitAfterMoved(t *testing.T) {
	cl := redistest.StartCluster(t, 1)
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key := "{waitmoved}k"
	slot := int(hashslot.Slot(key))
	if _, err := c.Exists(ctx, key); err != nil {
		t.Fatal(err) // the client learns the layout
	}
	from, to := ownerAndOther(t, cl, slot)
	if err := cl.MoveSlots(ctx, from, to, slot); err != nil {
		t.Fatal(err)
	}
	// The client routes the slot to the master it left, as one that has
	// not heard of the move does.
	stale := func(slot int, from *redistest.Server) {
		t.Helper()
		waitRefreshed(t, c.cluster)
		r := c.cluster
		r.mu.Lock()
		r.slots[slot], _ = r.nodeLocked(from.Addr)
		r.mu.Unlock()
	}
	stale(slot, from)
	replicas, err := cl.ReplicasOf(to)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of the new master: %v, %v", replicas, err)
	}
	pid := replicas[0].Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()

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
	syscall.Kill(pid, syscall.SIGCONT)
	stopped = false

	read := "{waitmoved:read}r"
	rslot := int(hashslot.Slot(read))
	if err := c.Set(ctx, read, "before"); err != nil {
		t.Fatal(err)
	}
	rfrom, rto := ownerAndOther(t, cl, rslot)
	if err := cl.MoveSlots(ctx, rfrom, rto, rslot); err != nil {
		t.Fatal(err)
	}
	stale(rslot, rfrom)
	replies, err = c.Pipeline(NoTransaction, ErrorsInReplies).Get(read).Wait(0, 0).Exec(ctx)
	if err != nil || len(replies) != 2 || replies[0].String() != "before" {
		t.Errorf("GET before WAIT, MOVED = %v, %v; want the value, read where MOVED said", replies, err)
	}
}
