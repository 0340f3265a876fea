package redpipe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestPortedRaces: go-redis's race_test.go, whose goroutines echo, count,
// write and read large values, watch, block and give up on their contexts
// on one client at once. Here each goroutine mixes them: a plain call
// whose reply must be its own, a pipeline, a transaction, a value large
// enough to go on a connection of its own, a BLPOP that another goroutine
// answers, and a call whose context ends before its reply. Every reply
// reaches its own caller, and the counters add up exactly. Bounded in
// count, and by the test's context in time.
func TestPortedRaces(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	const workers, rounds = 8, 40
	big := strings.Repeat("v", largePipeline+1) // goes on a dedicated connection

	var wg sync.WaitGroup
	// Failures beyond what the channel holds are counted, not sent: a
	// worker must never wait on a full channel, which nobody drains before
	// every worker is done, as one whose every call fails (the server
	// gone) would fill it.
	errs := make(chan error, workers*rounds)
	var dropped atomic.Int64
	for id := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(format string, args ...any) {
				select {
				case errs <- fmt.Errorf("worker %d: "+format, append([]any{id}, args...)...):
				default:
					dropped.Add(1)
				}
			}
			for i := range rounds {
				if ctx.Err() != nil {
					fail("test context ended: %v", ctx.Err())
					return
				}
				msg := fmt.Sprintf("echo %d %d", id, i)
				if got, err := c.Echo(ctx, msg); err != nil || got != msg {
					fail("ECHO %q = %q, %v", msg, got, err)
				}
				if _, err := c.Incr(ctx, "plain"); err != nil {
					fail("INCR: %v", err)
				}
				replies, err := c.Pipeline(NoTransaction).Incr("piped").Echo(msg).Exec(ctx)
				if err != nil || len(replies) != 2 {
					fail("pipeline: %v, %v", replies, err)
				} else if got, _ := replies[1].Text(); got != msg {
					fail("pipeline ECHO %q = %q", msg, got)
				}
				if _, err := c.Transaction(ctx, func(tx *Tx) error {
					n, err := tx.Get(ctx, "watched")
					if errors.Is(err, ErrNil) {
						n, err = "0", nil
					}
					if err != nil {
						return err
					}
					v, err := strconv.Atoi(n)
					if err != nil {
						return err
					}
					tx.Multi().Set("watched", v+1)
					return nil
				}, "watched"); err != nil {
					fail("Transaction: %v", err)
				}
				key := fmt.Sprintf("big%d", id)
				if err := c.Set(ctx, key, big[:len(big)-i]); err != nil {
					fail("SET of a large value: %v", err)
				}
				if got, err := c.Get(ctx, key); err != nil || len(got) != len(big)-i {
					fail("GET of a large value: %d bytes, %v; want %d", len(got), err, len(big)-i)
				}
				// A pair of workers hand values to each other through a list.
				list := fmt.Sprintf("list%d", id/2)
				if id%2 == 0 {
					if _, err := c.RPush(ctx, list, msg); err != nil {
						fail("RPUSH: %v", err)
					}
				} else if v, err := c.BLPop(ctx, 10, list); err != nil || len(v) != 2 {
					fail("BLPOP: %v, %v", v, err)
				} else if got, _ := v[1].Text(); !strings.HasPrefix(got, fmt.Sprintf("echo %d ", id-1)) {
					fail("BLPOP took %q, not its partner's", got)
				}
				// A call that gives up at once never takes another's reply.
				short, cancel := context.WithCancel(ctx)
				cancel()
				if _, err := c.Echo(short, msg); !errors.Is(err, context.Canceled) {
					fail("ECHO with an ended context = %v", err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n += int(dropped.Load()); n > 10 {
		t.Errorf("%d failures in all", n)
	}
	want := strconv.Itoa(workers * rounds)
	for _, k := range []string{"plain", "piped", "watched"} {
		if got, err := c.Get(ctx, k); err != nil || got != want {
			t.Errorf("GET %s = %q, %v; want %s", k, got, err, want)
		}
	}
}
