package redpipe

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
)

// Transactions of one Client on the same keys take turns. Two of them
// between WATCH and EXEC at once spoil each other: the first to commit
// makes the other's EXEC fail, and that one has run for nothing and must
// back off and run again. Taking turns, the next one starts as soon as
// the last has written its EXEC, and reads the value that EXEC is about to
// leave. The turn is a courtesy among the client's own goroutines, not the
// lock: WATCH still guards the keys against every other client (and
// against the rare EXEC that the server reaches after the next one's
// WATCH), and a turn not given within turnWait is taken anyway, so a slow
// fn, or a Transaction nested in another's fn, delays the next one by at
// most that.

// defaultTurnWait bounds the wait for a turn.
const defaultTurnWait = 50 * time.Millisecond

// turns holds a turn for every key set that some Transaction of the client
// holds or waits for, and forgets it when none does.
type turns struct {
	mu  sync.Mutex
	set map[string]*turn // by the keys, joined with NUL
}

type turn struct {
	token chan struct{} // capacity 1: a token in it is the turn taken
	users int           // holders and waiters; guarded by turns.mu
	key   string
}

// take waits until no other Transaction of this client on the same keys is
// between its WATCH and the writing of its EXEC, for at most wait, and not
// past closed, which ends when the client is closed, failing then with
// closedErr's error. It returns the turn to give back, or nil when there
// are no keys or the wait ran out.
func (ts *turns) take(ctx context.Context, keys []string, wait time.Duration, closed <-chan struct{}, closedErr func() error) (*turn, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	key := keys[0]
	if len(keys) > 1 {
		// The same keys given in another order, or one of them twice, are
		// the same keys: WATCH spoils alike whatever their order.
		sorted := slices.Clone(keys)
		slices.Sort(sorted)
		key = strings.Join(slices.Compact(sorted), "\x00")
	}
	ts.mu.Lock()
	if ts.set == nil {
		ts.set = make(map[string]*turn)
	}
	t := ts.set[key]
	if t == nil {
		t = &turn{token: make(chan struct{}, 1), key: key}
		ts.set[key] = t
	}
	t.users++
	ts.mu.Unlock()

	select {
	case t.token <- struct{}{}:
		return t, nil
	default:
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case t.token <- struct{}{}:
		return t, nil
	case <-timer.C:
		ts.leave(t)
		return nil, nil
	case <-ctx.Done():
		ts.leave(t)
		return nil, notSent(conn.ContextErr(ctx))
	case <-closed:
		ts.leave(t)
		// The client of a cluster's node that a refresh released is
		// closed too once idle: its error says so, and the cluster's
		// Transaction goes on by the layout instead of failing as closed.
		return nil, closedErr()
	}
}

// give gives a turn taken by take back to the next Transaction on its keys.
func (ts *turns) give(t *turn) {
	<-t.token
	ts.leave(t)
}

func (ts *turns) leave(t *turn) {
	ts.mu.Lock()
	t.users--
	if t.users == 0 {
		delete(ts.set, t.key)
	}
	ts.mu.Unlock()
}

// releaseTurn gives the session's turn to the next Transaction on its
// keys; it does nothing once given.
func (t *Tx) releaseTurn() {
	if t.turn != nil {
		t.c.turns.give(t.turn)
		t.turn = nil
	}
}
