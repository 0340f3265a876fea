package redpipe

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// A context that ended before a command went out reads the same
// whichever wait it ended in (the dial of the first connection, the
// pool, a refresh of a cluster's layout, the engine's queue): "not sent",
// with the context's error and cause, matched by errors.Is and
// OutcomeNotSent (or, for a transaction, OutcomeNotApplied, which it
// also is).
func TestNotSentByContextReadsAlike(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t, 0)
	ended, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("the caller left")
	cancel(cause)
	live := ctxT(t)

	check := func(t *testing.T, what string, err error, wantOutcome ...Outcome) {
		t.Helper()
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		switch {
		case err == nil:
			t.Errorf("%s: no error", what)
		case !errors.Is(err, context.Canceled):
			t.Errorf("%s: err = %v; want it to match context.Canceled", what, err)
		case !strings.Contains(msg, "redpipe: not sent: context canceled (cause: the caller left)"):
			t.Errorf("%s: err = %q; want it to say: redpipe: not sent: context canceled (cause: the caller left)", what, msg)
		case !slices.Contains(wantOutcome, OutcomeOf(err)):
			t.Errorf("%s: err = %v, of outcome %v; want %v", what, err, OutcomeOf(err), wantOutcome)
		}
	}
	calls := func(t *testing.T, c *Client) {
		_, err := c.Get(ended, "k")
		check(t, "Get", err, OutcomeNotSent)
		_, err = c.Do(ended, "SET", "k", "v")
		check(t, "Do", err, OutcomeNotSent)
		_, err = c.MGet(ended, "{a}1", "{b}2")
		check(t, "MGet", err, OutcomeNotSent)
		_, err = c.Pipeline(NoTransaction).Set("k", "v").Exec(ended)
		check(t, "plain pipeline", err, OutcomeNotSent)
		_, err = c.Pipeline().Set("k", "v").Exec(ended)
		check(t, "transactional pipeline", err, OutcomeNotSent, OutcomeNotApplied)
		_, err = c.Transaction(ended, func(tx *Tx) error { return nil }, "k")
		check(t, "Transaction", err, OutcomeNotSent, OutcomeNotApplied)
		_, err = c.Watch(ended, "k")
		check(t, "Watch", err, OutcomeNotSent)
		s := c.Stream(ended, func(int, Value) error { return nil })
		s.Set("k", "v")
		_, err = s.Close(ended)
		check(t, "Stream", err, OutcomeNotSent)
		err = c.ForEachMaster(ended, func(context.Context, *Client) error { return nil })
		check(t, "ForEachMaster", err, OutcomeNotSent)
	}

	t.Run("OneNode", func(t *testing.T) {
		for _, connected := range []bool{false, true} {
			c, err := NewClient(Options{Addr: srv.Addr})
			if err != nil {
				t.Fatal(err)
			}
			if connected {
				if _, err := c.Ping(live); err != nil {
					t.Fatal(err)
				}
			} else {
				// The first call waits for the first dial.
				_, err := c.Get(ended, "k")
				check(t, "Get before any connection", err, OutcomeNotSent)
			}
			calls(t, c)
			tx, err := c.Watch(live, "k")
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Get(ended, "k")
			check(t, "Tx.Get", err, OutcomeNotSent)
			tx.Close()
			c.Close()
		}
	})
	t.Run("Cluster", func(t *testing.T) {
		c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The first call waits for the first layout.
		_, err = c.Get(ended, "k")
		check(t, "Get before the layout", err, OutcomeNotSent)
		if _, err := c.Ping(live); err != nil {
			t.Fatal(err)
		}
		calls(t, c)
	})
}
