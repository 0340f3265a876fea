package clusterload

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redpipe/redpipe/redistest"
)

// Check reads every key of the workload from the master that serves its
// slot, straight from the server and not through the client under test,
// and checks it against what the client said. The workers must have
// stopped and the cluster settled (no migration open).
func (l *Load) Check(ctx context.Context, cl *redistest.Cluster) error {
	for s, slot := range l.cfg.Slots {
		if err := ctx.Err(); err != nil {
			return err
		}
		owner, err := cl.SlotOwner(slot)
		if err != nil {
			return err
		}
		keys := []string{"MGET", l.sharedKey(s)}
		for _, w := range l.ws {
			keys = append(keys, l.key(s, "c", w.id), l.key(s, "r", w.id))
		}
		v, err := owner.Do(keys...)
		if err != nil {
			return fmt.Errorf("clusterload: MGET on %s: %w", owner.Addr, err)
		}
		vals, good := v.([]any)
		if !good || len(vals) != len(keys)-1 {
			return fmt.Errorf("clusterload: MGET on %s replied %#v", owner.Addr, v)
		}
		ints := make([]int64, len(vals))
		for i, x := range vals {
			if x == nil {
				continue
			}
			str, _ := x.(string)
			n, err := strconv.ParseInt(str, 10, 64)
			if err != nil {
				return fmt.Errorf("clusterload: %s on %s holds %#v", keys[i+1], owner.Addr, x)
			}
			ints[i] = n
		}
		l.checkShared(s, ints[0])
		for i, w := range l.ws {
			if kind, msg := w.ctrs[s].final(ints[1+2*i]); kind != "" {
				w.anomaly(kind, "at the end, counter %s %s", l.key(s, "c", w.id), msg)
			}
			if kind, msg := w.regs[s].read(ints[2+2*i], w.regs[s].issued, -1); kind != "" {
				w.anomaly(kind, "at the end, register %s %s", l.key(s, "r", w.id), msg)
			}
			l.checked.Add(2)
		}
	}
	return nil
}

// checkShared checks the final value v of slot s's shared counter.
func (l *Load) checkShared(s int, v int64) {
	sc := &l.shared[s]
	sc.mu.Lock()
	acked, unknown, top := sc.acked, sc.unknown, sc.max
	sc.mu.Unlock()
	key := l.sharedKey(s)
	switch {
	case v < acked || v < top:
		l.report(&l.lost, "lost", "at the end, %s holds %d, but %d transactions were applied, the last replying %d", key, v, acked, top)
	case v > acked+unknown:
		l.report(&l.duplicated, "duplicated", "at the end, %s holds %d, more than the %d transactions applied plus %d of unknown outcome", key, v, acked, unknown)
	}
	l.checked.Add(1)
}
