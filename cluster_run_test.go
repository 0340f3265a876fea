package redpipe

import (
	"errors"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// TestClusterFanOutAfterClose checks that a command for every master
// called on a closed cluster Client, which no master was sent, says so:
// ErrClosed, not sent, safe to retry on a new Client.
func TestClusterFanOutAfterClose(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	c := loadedClients(t, ctx, cl, 1)[0]
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := c.DBSize(ctx)
	if !errors.Is(err, ErrClosed) || OutcomeOf(err) != OutcomeNotSent {
		t.Errorf("DBSize after Close: %v (outcome %v), want ErrClosed, not sent", err, OutcomeOf(err))
	}
	err = c.FlushAll(ctx)
	if !errors.Is(err, ErrClosed) || OutcomeOf(err) != OutcomeNotSent {
		t.Errorf("FlushAll after Close: %v (outcome %v), want ErrClosed, not sent", err, OutcomeOf(err))
	}
}
