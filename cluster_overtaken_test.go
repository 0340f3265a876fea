package redpipe

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// TestClusterOvertakenAcrossParts: a large plain pipeline goes to a node
// in several parts in one round. An MGET of two keys of a slot being
// migrated, one of which has already moved, gets TRYAGAIN in the first
// part, while a SET on its other key, queued after it, runs in a later
// part. Sent again, the MGET would run after that SET: it keeps its
// TRYAGAIN as its reply (nothing of it ran) and is sent once.
func TestClusterOvertakenAcrossParts(t *testing.T) {
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	c := loadedClients(t, ctx, cl, 1)[0]
	from, to := cl.Masters[0], cl.Masters[1]
	const slot, fillSlot = 100, 200
	for _, s := range []int{slot, fillSlot} {
		if owner, err := cl.SlotOwner(s); err != nil || owner != from {
			t.Fatalf("slot %d is not the first master's: %v", s, err)
		}
	}
	tag := "{" + keyIn(slot, "ovt:k") + "}"
	k, moved := tag+":stays", tag+":moved"
	if err := c.Set(ctx, k, "old"); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, moved, "m"); err != nil {
		t.Fatal(err)
	}
	m, err := cl.BeginMigration(ctx, from, to, slot)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Finish(ctx); err != nil {
			t.Error(err)
		}
	}()
	host, port, err := net.SplitHostPort(to.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if r := from.MustDo(t, "MIGRATE", host, port, moved, "0", "5000"); r != "OK" {
		t.Fatalf("MIGRATE %s = %v", moved, r)
	}
	from.MustDo(t, "CONFIG", "RESETSTAT")

	before := earlySends.Load()
	p := c.Pipeline(NoTransaction)
	p.MGet(k, moved)
	fill := "{" + keyIn(fillSlot, "ovt:f") + "}:"
	val := strings.Repeat("x", 1024)
	for i := range 100 { // several parts of earlyPart bytes
		p.Set(fill+strconv.Itoa(i), val)
	}
	p.Set(k, "new")
	replies, err := p.Exec(ctx)
	if got := earlySends.Load() - before; got < 2 {
		t.Fatalf("%d parts sent early: the test does not test what it means to", got)
	}
	if len(replies) != 102 {
		t.Fatalf("Exec = %d replies, %v", len(replies), err)
	}
	t.Logf("MGET: %v; Exec: %v", replies[0], err)
	if e := replies[0].Err(); e == nil || !strings.Contains(e.Error(), "TRYAGAIN") {
		t.Errorf("MGET = %v, want its TRYAGAIN: the SET on %s after it ran", replies[0], k)
	}
	if e := replies[101].Err(); e != nil {
		t.Errorf("SET %s: %v", k, e)
	}
	// A TRYAGAIN is counted as a rejected call.
	stats, _ := from.MustDo(t, "INFO", "commandstats").(string)
	line := ""
	for _, l := range strings.Split(stats, "\n") {
		if strings.HasPrefix(l, "cmdstat_mget:") {
			line = strings.TrimSpace(l)
		}
	}
	if !strings.Contains(line, "calls=0,") || !strings.Contains(line, "rejected_calls=1,") {
		t.Errorf("MGET on %s: %q, want it sent once", from.Addr, line)
	}
}
