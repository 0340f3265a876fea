package redpipe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// TestPipelinesCutByContextKeepTheirOwnReplies has many callers run plain
// pipelines of ECHOs under short random deadlines on one client, small
// ones on the connection they share and large ones each on a connection
// of its own. A pipeline cut by its context has a reply per command: the
// echoes read first, each its own command's, in its place; then error
// replies that match the context's error, those of unknown outcome first,
// then those not sent (only where the pipeline had its own connection);
// and its error is a *CommandError for the first command not answered.
// The client goes on in step: the next call gets its own reply.
func TestPipelinesCutByContextKeepTheirOwnReplies(t *testing.T) {
	srv := redistest.Start(t)
	c, err := NewClient(Options{Addr: srv.Addr, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const callers, rounds = 6, 60
	stop := time.Now().Add(8 * time.Second) // a bound in time as well as in count
	var cut, kept atomic.Int64
	var wg sync.WaitGroup
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 41))
			for i := 0; i < rounds && time.Now().Before(stop); i++ {
				n, pad := 1+rng.IntN(1500), ""
				if rng.IntN(4) == 0 {
					pad = strings.Repeat("p", 200+rng.IntN(1000)) // past largePipeline, often
				}
				tag := fmt.Sprintf("%d:%d", g, i)
				p := c.Pipeline(NoTransaction)
				for j := range n {
					p.Echo(fmt.Sprint(tag, "/", j, pad))
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(20000))*time.Microsecond)
				replies, err := p.Exec(ctx)
				cancel()
				if err == nil {
					for j, v := range replies {
						if want := fmt.Sprint(tag, "/", j, pad); v.String() != want || v.Err() != nil {
							t.Errorf("pipeline %s: reply %d = %.40q, %v; want its own echo", tag, j, v.String(), v.Err())
							return
						}
					}
					continue
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					for e := err; e != nil; e = errors.Unwrap(e) {
						t.Logf("%T: %v", e, e)
					}
					t.Errorf("pipeline %s of %d: %v; want its replies or its context's error", tag, n, err)
					return
				}
				cut.Add(1)
				if replies == nil {
					continue
				}
				kept.Add(1)
				if msg := checkCutByContext(replies, tag, pad, err); msg != "" {
					t.Errorf("pipeline %s of %d, cut by its context (%v): %s", tag, n, err, msg)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d pipelines cut by their context, %d of them with replies", cut.Load(), kept.Load())
	if v, err := c.Echo(ctxT(t), "last"); err != nil || v != "last" {
		t.Fatalf("ECHO last after the pipelines = %q, %v; want its own reply", v, err)
	}
}

// checkCutByContext says what is wrong with replies, those of a
// pipeline of echoes cut by its context with err, if anything.
func checkCutByContext(replies []Value, tag, pad string, err error) string {
	got := 0
	for got < len(replies) && replies[got].Err() == nil {
		if want := fmt.Sprint(tag, "/", got, pad); replies[got].String() != want {
			return fmt.Sprintf("reply %d = %.40q; want its own echo", got, replies[got].String())
		}
		got++
	}
	if got == len(replies) {
		return "every command has its echo, yet Exec failed"
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Index != got {
		return fmt.Sprintf("want a *CommandError for command %d, the first not answered", got)
	}
	unsent := false
	for j := got; j < len(replies); j++ {
		e := replies[j].Err()
		if e == nil || !errors.Is(e, context.DeadlineExceeded) {
			return fmt.Sprintf("reply %d after the first not answered = %.40q, %v; want an error matching the context's", j, replies[j].String(), e)
		}
		switch o := OutcomeOf(e); {
		case o == OutcomeNotSent:
			unsent = true
		case o == OutcomeUnknown && !unsent:
		default:
			return fmt.Sprintf("reply %d = %v: outcome %v after one not sent", j, e, o)
		}
	}
	return ""
}
