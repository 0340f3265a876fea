package redpipe

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDialEndedByCallersDeadlineMatchesIt: a call whose own deadline
// passes while a connection for it is dialed fails with an error that
// errors.Is matches against context.DeadlineExceeded, whatever the dial
// said. net.Dialer sets the socket's connect deadline from the context's
// and, when that fires before the context's own timer has ended it,
// returns the socket's "i/o timeout" (os.ErrDeadlineExceeded), which does
// not match context.DeadlineExceeded; the Dialer here is a stand-in that
// returns that error at once as the context ends, which a real dial does
// only now and then.
func TestDialEndedByCallersDeadlineMatchesIt(t *testing.T) {
	for _, when := range []string{"once the context ended", "once its deadline passed"} {
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			if when == "once the context ended" {
				<-ctx.Done()
			} else {
				// As the socket's deadline does: by the clock, whether
				// or not the context's timer has run yet.
				d, _ := ctx.Deadline()
				time.Sleep(time.Until(d))
			}
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
		}
		c, err := NewClient(Options{Addr: "127.0.0.1:1", Dialer: dial, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		// Large, the pipeline dials a connection of its own, under its
		// context.
		_, err = c.Pipeline(NoTransaction).Set("k", strings.Repeat("v", largePipeline)).Exec(ctx)
		var de *DialError
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &de) || !errors.Is(err, os.ErrDeadlineExceeded) ||
			OutcomeOf(err) != OutcomeNotSent || strings.Contains(err.Error(), "DialTimeout") {
			t.Fatalf("a pipeline whose deadline passed while dialing, the dial failing %s = %v (outcome %v); "+
				"want a *DialError, not sent, that matches context.DeadlineExceeded and keeps the dial's error", when, err, OutcomeOf(err))
		}
		t.Logf("dial failing %s: Exec = %v", when, err)
	}
}
