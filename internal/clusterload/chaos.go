package clusterload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// Move moves slots, which one master serves, to another master picked by
// rng: the whole way with MoveSlots, or step by step with BeginMigration,
// a few keys per slot moved, a pause of up to maxPause while the slots'
// keys are split between the two nodes (ASK and TRYAGAIN for clients),
// more keys, another pause, and Finish. It returns the two masters.
func Move(ctx context.Context, cl *redistest.Cluster, slots []int, rng *rand.Rand, stepwise bool, maxPause time.Duration) (from, to *redistest.Server, err error) {
	from, err = cl.SlotOwner(slots[0])
	if err != nil {
		return nil, nil, err
	}
	others := slices.DeleteFunc(slices.Clone(cl.Masters), func(s *redistest.Server) bool { return s == from })
	if len(others) == 0 {
		return nil, nil, errors.New("clusterload: no other master to move slots to")
	}
	to = others[rng.IntN(len(others))]
	if !stepwise {
		return from, to, cl.MoveSlots(ctx, from, to, slots...)
	}
	m, err := cl.BeginMigration(ctx, from, to, slots...)
	if err != nil {
		return from, to, err
	}
	for range 2 {
		if _, err := m.MoveKeys(ctx, 1+rng.IntN(8)); err != nil {
			return from, to, err
		}
		if err := sleep(ctx, time.Duration(rng.Int64N(int64(maxPause)+1))); err != nil {
			return from, to, err
		}
	}
	return from, to, m.Finish(ctx)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill is what KillMaster saw.
type Kill struct {
	Promoted   *redistest.Server // the replica that took over
	Died       time.Time         // when the master stopped answering
	PromotedAt time.Time         // when the replica reported itself master
}

// syncWithin bounds the wait for the replicas to catch up with a master
// whose writes are held.
const syncWithin = 10 * time.Second

// KillMaster kills master as the Cluster's KillMaster does, after holding
// its clients' writes (CLIENT PAUSE WRITE) until each of its replicas has
// every write it applied. Redis replicates asynchronously, so without that
// a write the master acknowledged just before it died may be missing on
// the replica promoted in its place, which no client can help; with it,
// the calls in flight die with the master, of unknown outcome, and no
// acknowledged write is lost. died, if not nil, is called once the master
// no longer answers.
func KillMaster(ctx context.Context, cl *redistest.Cluster, master *redistest.Server, died func()) (Kill, error) {
	replicas, err := cl.ReplicasOf(master)
	if err != nil {
		return Kill{}, err
	}
	if err := holdWrites(ctx, master, replicas); err != nil {
		master.Do("CLIENT", "UNPAUSE")
		return Kill{}, err
	}
	var k Kill
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		k.Died, k.PromotedAt = watchKill(stop, master, replicas, died)
	}()
	promoted, err := cl.KillMaster(ctx, master)
	close(stop)
	wg.Wait()
	if err != nil {
		return Kill{}, err
	}
	k.Promoted = promoted
	if k.PromotedAt.IsZero() {
		k.PromotedAt = time.Now()
	}
	return k, nil
}

// holdWrites pauses master's writes and waits until every replica has
// caught up with it.
func holdWrites(ctx context.Context, master *redistest.Server, replicas []*redistest.Server) error {
	if v, err := master.Do("CLIENT", "PAUSE", "60000", "WRITE"); err != nil {
		return err
	} else if e, isErr := v.(redistest.ReplyError); isErr {
		return fmt.Errorf("clusterload: CLIENT PAUSE on %s: %w", master.Addr, e)
	}
	deadline := time.Now().Add(syncWithin)
	last := ""
	for time.Now().Before(deadline) {
		want, err := replOffset(master, "master_repl_offset")
		if err != nil {
			return err
		}
		behind := false
		for _, r := range replicas {
			got, err := replOffset(r, "slave_repl_offset")
			if err != nil {
				return err
			}
			if got < want {
				behind = true
				last = fmt.Sprintf("replica %s at offset %d, master %s at %d", r.Addr, got, master.Addr, want)
			}
		}
		if !behind {
			return nil
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("clusterload: the replicas did not catch up with %s within %v: %s", master.Addr, syncWithin, last)
}

// replOffset reads a field of INFO replication as a number.
func replOffset(s *redistest.Server, field string) (int64, error) {
	v, err := infoReplication(s, field)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("clusterload: INFO replication on %s: %s is %q", s.Addr, field, v)
	}
	return n, nil
}

func infoReplication(s *redistest.Server, field string) (string, error) {
	v, err := s.Do("INFO", "replication")
	if err != nil {
		return "", err
	}
	info, _ := v.(string)
	for line := range strings.Lines(info) {
		if val, found := strings.CutPrefix(strings.TrimSpace(line), field+":"); found {
			return val, nil
		}
	}
	return "", fmt.Errorf("clusterload: INFO replication on %s has no %s", s.Addr, field)
}

// watchKill notes when master stops answering and when one of replicas
// reports itself master, until stop.
func watchKill(stop <-chan struct{}, master *redistest.Server, replicas []*redistest.Server, died func()) (diedAt, promotedAt time.Time) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return diedAt, promotedAt
		case <-tick.C:
		}
		if diedAt.IsZero() {
			if _, err := master.Do("PING"); err != nil {
				diedAt = time.Now()
				if died != nil {
					died()
				}
			}
			continue
		}
		for _, r := range replicas {
			if role, err := infoReplication(r, "role"); err == nil && role == "master" {
				return diedAt, time.Now()
			}
		}
	}
}
