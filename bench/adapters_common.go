package main

import (
	"context"
	"fmt"
)

// client is what a scenario needs from a library. Each adapter uses its
// library the way that library's own documentation recommends, so the
// numbers reflect ordinary use rather than tuned special cases. Methods
// that take many replies check every one of them: a client that is fast
// because it skips or garbles replies must fail the run.
type client interface {
	Name() string

	Incr(ctx context.Context, key string) (int64, error)
	Get(ctx context.Context, key string) (string, error)
	Set(ctx context.Context, key, val string) error

	// PipelineIncr sends n INCR key and one GET key in one plain pipeline,
	// checks that the INCR replies count up by one, and returns GET's value.
	PipelineIncr(ctx context.Context, key string, n int) (int64, error)
	// PipelineSetGet sends SET keys[i] vals[i]; GET keys[i] for every i in
	// one plain pipeline and checks every reply.
	PipelineSetGet(ctx context.Context, keys, vals []string) error
	// PipelineSet sends SET k val for every key in one plain pipeline and
	// checks that each replied OK.
	PipelineSet(ctx context.Context, keys []string, val string) error
	// BulkSet is PipelineSet for a batch too large to want in memory at
	// once (S6), in the form the library offers for that: a library with
	// no such form uses its pipeline.
	BulkSet(ctx context.Context, keys []string, val string) error
	// MultiIncr runs MULTI, n INCR key, EXEC, checks that the replies count
	// up by one, and returns the last.
	MultiIncr(ctx context.Context, key string, n int) (int64, error)
	// WatchIncr increments key optimistically (WATCH, GET, MULTI, SET,
	// EXEC), retrying on conflicts, and reports how many retries it took.
	WatchIncr(ctx context.Context, key string) (retries int, err error)

	// Concurrent returns the form of the client meant for many goroutines
	// issuing single commands at once. Libraries whose plain client already
	// batches concurrent calls return themselves.
	Concurrent() (client, error)

	Close()
}

// maxWatchAttempts bounds the retry loops written here for the libraries
// that leave the loop to the caller. It only has to be large enough that a
// contended run never gives up; go-redis's documented example uses the
// same figure.
const maxWatchAttempts = 1000

// libraries are the clients compared, in the order tables list them.
var libraries = []string{"redpipe", "go-redis", "rueidis"}

// openClient connects the named library to addr. Some libraries dial
// lazily, so callers send a first command before measuring anything.
func openClient(ctx context.Context, name, addr string) (client, error) {
	var (
		c   client
		err error
	)
	switch name {
	case "redpipe":
		c, err = newRedpipe(ctx, addr)
	case "go-redis":
		c, err = newGoRedis(addr)
	case "rueidis":
		c, err = newRueidis(addr)
	default:
		return nil, fmt.Errorf("unknown client %q", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: connecting to %s: %w", name, addr, err)
	}
	return c, nil
}

// consecutive checks that n integer replies, read through at, count up by
// exactly one each, and returns the last. A reply out of order or missing
// shows up as a break in the sequence.
func consecutive(n int, at func(i int) (int64, error)) (int64, error) {
	var prev int64
	for i := 0; i < n; i++ {
		v, err := at(i)
		if err != nil {
			return 0, fmt.Errorf("reply %d: %w", i, err)
		}
		if i > 0 && v != prev+1 {
			return 0, fmt.Errorf("reply %d is %d after %d", i, v, prev)
		}
		prev = v
	}
	return prev, nil
}

// checkOK is the check of a reply that must be the status OK.
func checkOK(i int, s string, err error) error {
	if err != nil {
		return fmt.Errorf("reply %d: %w", i, err)
	}
	if s != "OK" {
		return fmt.Errorf("reply %d is %q, want OK", i, s)
	}
	return nil
}

// checkValue is the check of a GET reply against the value just written.
func checkValue(i int, got string, err error, want string) error {
	if err != nil {
		return fmt.Errorf("reply %d: %w", i, err)
	}
	if got != want {
		return fmt.Errorf("reply %d is %q, want %q", i, got, want)
	}
	return nil
}

func replyCount(got, want int) error {
	if got != want {
		return fmt.Errorf("%d replies for %d commands", got, want)
	}
	return nil
}
