package conn

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

	"github.com/redpipe/redpipe/internal/resp"
)

// echoBatch is n ECHOs of tag, the index of each and pad: a reply that
// reached the wrong call, or the wrong place, shows as another's echo.
func echoBatch(tag string, n int, pad string) []byte {
	var b []byte
	for j := range n {
		b = append(b, encode("ECHO", fmt.Sprint(tag, "/", j, pad))...)
	}
	return b
}

// checkEchoes reports what is wrong with replies, the first of those of
// an echoBatch, if anything.
func checkEchoes(replies []resp.Value, tag string, pad string) error {
	for j, v := range replies {
		if want := fmt.Sprint(tag, "/", j, pad); v.Kind != resp.BulkString || v.Str != want {
			return fmt.Errorf("reply %d is %v %.40q, want the echo of %.40q", j, v.Kind, v.Str, want)
		}
	}
	return nil
}

// TestCallsCutByContextKeepTheirOwnReplies has many callers share one
// connection, each with batches of ECHOs under short random deadlines,
// through DoNCut, Start and WaitCut, and DoOne, the batches small and
// large (written by their callers, and handed to the writer when the
// deadline stops that write), quiet or not, with the reader goroutine
// alone and with callers reading their own replies, polling or asleep.
// Each reply a call gets, whole or kept when its context ended, must be
// its own, in its place; a call cut by its context after some replies says its bytes are
// all in the stream; and the connection, which nothing failed, lives on
// in step: the next call gets its own reply.
func TestCallsCutByContextKeepTheirOwnReplies(t *testing.T) {
	for _, mode := range []struct {
		name string
		opt  Options
	}{
		{"reader goroutine", Options{}},
		{"poll", Options{Poll: 200 * time.Microsecond}},
		{"sleep", Options{SelfRead: true}}, // as PollWait -1 makes it
	} {
		t.Run(mode.name, func(t *testing.T) {
			opt := mode.opt
			opt.StallTimeout, opt.MaxPending = time.Minute, 4<<20
			c, _ := dialReal(t, opt)
			const callers, rounds = 8, 150
			stop := time.Now().Add(5 * time.Second) // a bound in time as well as in count
			var kept, whole, cut atomic.Int64
			var wg sync.WaitGroup
			for g := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 14))
					for i := 0; i < rounds && time.Now().Before(stop); i++ {
						if err := keptRound(c, rng, fmt.Sprintf("%d:%d", g, i), &kept, &whole, &cut); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("%d calls answered whole, %d cut by their context, %d of them with replies kept", whole.Load(), cut.Load(), kept.Load())
			if err := c.Err(); err != nil {
				t.Fatalf("the connection failed: %v", err)
			}
			v, err := c.DoOne(context.Background(), encode("ECHO", "last"))
			if err != nil || v.Str != "last" {
				t.Fatalf("ECHO last after the calls = %v %q, %v; want its own reply", v.Kind, v.Str, err)
			}
		})
	}
}

// keptRound makes one call of a random kind and size under a random
// deadline and checks what it got.
func keptRound(c *Conn, rng *rand.Rand, tag string, kept, whole, cut *atomic.Int64) error {
	n := 1 + rng.IntN(2000)
	pad := ""
	if rng.IntN(8) == 0 {
		pad = strings.Repeat("p", 1+rng.IntN(1<<10)) // a batch up to 2 MiB
	}
	b := echoBatch(tag, n, pad)
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if rng.IntN(6) != 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(20000))*time.Microsecond)
	}
	defer cancel()
	k := Graced{c: c, quiet: rng.IntN(3) == 0}
	var got []resp.Value
	var sent int
	var err error
	switch rng.IntN(3) {
	case 0:
		got, _, sent, err = k.DoNCut(ctx, b, n)
	case 1:
		out := make([]resp.Value, n)
		var p Pending
		if p, err = k.Start(ctx, b, out); err == nil {
			var m int
			m, sent, err = p.WaitCut(ctx)
			got = out[:m]
		}
	default:
		b, n = encode("ECHO", fmt.Sprint(tag, "/", 0, pad)), 1
		var v resp.Value
		if v, err = k.DoOne(ctx, b); err == nil {
			got = []resp.Value{v}
		}
	}
	if cerr := checkEchoes(got, tag, pad); cerr != nil {
		return fmt.Errorf("call %s of %d commands (%v): %w", tag, n, err, cerr)
	}
	switch {
	case err == nil:
		whole.Add(1)
		if len(got) != n {
			return fmt.Errorf("call %s of %d commands got %d replies and no error", tag, n, len(got))
		}
	case errors.Is(err, context.DeadlineExceeded):
		cut.Add(1)
		if len(got) > 0 {
			kept.Add(1)
			if len(got) >= n || sent != len(b) {
				return fmt.Errorf("call %s of %d commands (%d bytes), cut by its context, kept %d replies and counts %d bytes sent; want fewer and all", tag, n, len(b), len(got), sent)
			}
		}
	default:
		return fmt.Errorf("call %s of %d commands: %v; want its replies or its context's error", tag, n, err)
	}
	return nil
}
