package redpipe

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// stallTestDuration is how long TestStalledServerKeepsMemoryBounded keeps
// the server stalled under load: 10s as in the probe, 3s with
// -short, or the Go duration in REDPIPE_STALL_TEST. Why not shorter by
// default: under the race detector a client without the bound grows its
// heap past the limit only after 3 to 5s on a loaded two-core machine (the
// detector's cost of copying the growing queue slows it down).
func stallTestDuration(t *testing.T) time.Duration {
	s := os.Getenv("REDPIPE_STALL_TEST")
	switch {
	case s != "":
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 10*time.Minute {
			t.Fatalf("REDPIPE_STALL_TEST=%q: want a duration such as 10s, at most 10m", s)
		}
		return d
	case testing.Short():
		return 3 * time.Second
	}
	return 10 * time.Second
}

// TestStalledServerKeepsMemoryBounded: the server stops reading (the proxy
// holds both directions) while 512 goroutines send 4 KB SETs with 10ms
// deadlines, and with ReplyTimeout off nothing ends the connection. The
// heap must stay within the connection's queue bound (4 MiB) plus 64 MiB,
// every call must return by its deadline (give or take a generous slack)
// with an error that says it was not sent or may have run, and once the
// server reads again the client works. Bounded in goroutines, sends and
// time.
func TestStalledServerKeepsMemoryBounded(t *testing.T) {
	const (
		senders  = 512
		maxSends = 100_000 // per sender
		timeout  = 10 * time.Millisecond
		slack    = 2 * time.Second
		queue    = 4 << 20 // the connection's bound on queued bytes
		limit    = queue + 64<<20
	)
	c, px, _ := proxiedClient(t, Options{ReplyTimeout: -1})
	ctx := ctxT(t)
	if err := c.Set(ctx, "warm", 1); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	px.Stall(redistest.Both, true)
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	var peak atomic.Uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if grown := ms.HeapInuse - min(ms.HeapInuse, base); grown > peak.Load() {
				peak.Store(grown)
				if grown > limit {
					halt() // no need to eat the machine's memory to fail
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	val := strings.Repeat("v", 4<<10)
	var notSent, unknown, sends atomic.Int64
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "stall:" + strconv.Itoa(g)
			for range maxSends {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				start := time.Now()
				err := c.Set(cctx, key, val)
				took := time.Since(start)
				cancel()
				sends.Add(1)
				switch {
				case err == nil:
					t.Errorf("a SET succeeded while the server was stalled")
					return
				case OutcomeOf(err) == NotSent:
					notSent.Add(1)
				case OutcomeOf(err) == Unknown:
					unknown.Add(1)
				default:
					t.Errorf("SET while stalled: %v (outcome %v), want not sent or unknown", err, OutcomeOf(err))
					return
				}
				if took > timeout+slack {
					t.Errorf("SET with a %v deadline returned after %v", timeout, took)
					return
				}
			}
		}()
	}
	select {
	case <-time.After(stallTestDuration(t)):
	case <-stop:
	}
	halt()
	wg.Wait()
	<-sampled
	t.Logf("%d sends: %d not sent, %d of unknown outcome; heap grew by at most %d MiB (from %d MiB)",
		sends.Load(), notSent.Load(), unknown.Load(), peak.Load()>>20, base>>20)
	if peak.Load() > limit {
		t.Fatalf("the heap grew by %d MiB while the server was stalled, more than the queue bound plus 64 MiB (%d MiB)",
			peak.Load()>>20, limit>>20)
	}
	if notSent.Load() == 0 {
		t.Fatal("no send failed as not sent: the queue never filled")
	}

	px.Reset()
	if err := c.Set(ctx, "after", "works"); err != nil {
		t.Fatalf("SET once the server reads again: %v", err)
	}
	if v, err := c.Get(ctx, "after"); err != nil || v != "works" {
		t.Fatalf("GET once the server reads again = %q, %v", v, err)
	}
}
