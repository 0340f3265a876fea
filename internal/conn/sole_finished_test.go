package conn

import (
	"context"
	"testing"

	"github.com/redpipe/redpipe/internal/resp"
)

// TestSoleFinishedAsContextEnds: a Sole call answered whole before its
// caller waits for it, with a context that has ended by then, returns
// its replies and leaves the connection as it was: only a call cut short
// ends the connection of its sole user. Both channels the wait selects
// on are ready, so each round takes either at random; before, the round
// that took the context's failed the connection under a call that had
// succeeded (a Tx's session then lost its connection, and its WATCH,
// after a plain pipeline that ran through).
func TestSoleFinishedAsContextEnds(t *testing.T) {
	c, _ := dialReal(t, Options{})
	batch := append(encode("SET", "sole:fin", "v"), encode("GET", "sole:fin")...)
	for round := 0; round < 64; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		replies := make([]resp.Value, 2)
		p, err := c.WithGrace(0).Sole().Start(ctx, batch, replies)
		if err != nil {
			cancel()
			t.Fatalf("round %d: Start: %v", round, err)
		}
		waitFor(t, "the batch answered", func() (bool, string) { return p.Ready(), "not ready" })
		cancel()
		got, _, err := p.WaitCut(ctx)
		if err != nil || got != 2 || replies[1].Str != "v" {
			t.Fatalf("round %d: WaitCut of a batch answered whole = %d replies (%v), %v; want both, no error", round, got, replies, err)
		}
		if err := c.Err(); err != nil {
			t.Fatalf("round %d: the connection failed under a Sole call that ran through: %v", round, err)
		}
	}
}
