package redpipe

import (
	"context"
	"hash/maphash"
	"time"
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

// txStripes is how many turns a Client keeps: key sets that hash to the
// same stripe share one, which costs them at most a wait.
const txStripes = 128

// defaultTurnWait bounds the wait for a turn.
const defaultTurnWait = 50 * time.Millisecond

var txSeed = maphash.MakeSeed()

// txStripe picks the turn of a key set. The set is taken as given: the
// same keys in another order are another set.
func txStripe(keys []string) int {
	var h maphash.Hash
	h.SetSeed(txSeed)
	for _, k := range keys {
		h.WriteString(k)
		h.WriteByte(0)
	}
	return int(h.Sum64() % txStripes)
}

// takeTurn waits until no other Transaction of this client on the same
// keys is between its WATCH and the writing of its EXEC, for at most
// turnWait. It returns the turn to give back, or nil when there are no
// keys or the wait ran out.
func (c *Client) takeTurn(ctx context.Context, keys []string) (chan struct{}, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	turn := c.txTurns[txStripe(keys)]
	select {
	case turn <- struct{}{}:
		return turn, nil
	default:
	}
	timer := time.NewTimer(c.turnWait)
	defer timer.Stop()
	select {
	case turn <- struct{}{}:
		return turn, nil
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, notSent(ctx.Err())
	}
}

// releaseTurn gives the session's turn to the next Transaction on its
// keys; it does nothing once given.
func (t *Tx) releaseTurn() {
	if t.turn != nil {
		<-t.turn
		t.turn = nil
	}
}
