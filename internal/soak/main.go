// Command soak runs a heavy mixed workload (GET, SET, INCR, pipelines,
// transactions, optimistic-locking transfers) from many goroutines against
// one real redis-server for a long time, then checks that nothing was lost
// or applied twice and that memory did not grow.
//
//	go run ./internal/soak -duration 120s
//
// Memory is measured twice, after the warm-up and at the end, both times
// with every worker paused between calls and after a forced collection
// that also returns freed memory to the system: the live heap and the
// resident set must not grow by more than -max-growth. Calls may fail only
// by running out of time under load; any other error fails the run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

const (
	counters       = 64
	accounts       = 64
	initialBalance = 1000
	// callTimeout is generous: on two cores with hundreds of goroutines a
	// call may queue, but a healthy client never takes this long.
	callTimeout = 2 * time.Second
	// maxShown bounds the unexpected errors printed; all are counted.
	maxShown = 20
)

type config struct {
	duration  time.Duration
	warmup    time.Duration
	workers   int
	maxGrowth float64
	seed      uint64
	think     time.Duration
}

// soak is the shared state of one run.
type soak struct {
	cfg    config
	srv    *redistest.Server
	client *redpipe.Client

	// gate pauses the workers between calls while memory is measured.
	gate sync.RWMutex

	calls, deadlines, others, shown atomic.Int64
	// acked and maybe count the INCRs of each counter the server
	// acknowledged and those whose outcome is unknown (a deadline).
	acked, maybe [counters]atomic.Int64
}

func main() {
	var cfg config
	flag.DurationVar(&cfg.duration, "duration", 120*time.Second, "total run time, warm-up included")
	flag.DurationVar(&cfg.warmup, "warmup", 5*time.Second, "time before the first memory measurement")
	flag.IntVar(&cfg.workers, "workers", 256, "concurrent goroutines")
	flag.Float64Var(&cfg.maxGrowth, "max-growth", 0.20, "allowed growth of heap and RSS between the two measurements")
	flag.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()), "random seed")
	flag.DurationVar(&cfg.think, "think", time.Millisecond, "mean pause between a worker's calls, so the run loads the machine without monopolising it")
	flag.Parse()
	ok, err := run(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

type memory struct {
	heap, rss  uint64
	goroutines int
}

func (m memory) String() string {
	return fmt.Sprintf("heap %.1f MiB, rss %.1f MiB, %d goroutines", mib(m.heap), mib(m.rss), m.goroutines)
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

func growth(from, to uint64) float64 {
	if from == 0 {
		return 0
	}
	return float64(to)/float64(from) - 1
}

// measure pauses the workers, collects garbage, returns freed memory to the
// system and reads the live heap and the resident set.
func (s *soak) measure() (memory, error) {
	s.gate.Lock()
	defer s.gate.Unlock()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err := readRSS()
	return memory{heap: ms.HeapAlloc, rss: rss, goroutines: runtime.NumGoroutine()}, err
}

// readRSS reads VmRSS from /proc/self/status.
func readRSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}

func run(cfg config) (bool, error) {
	if cfg.workers < 1 || cfg.duration <= cfg.warmup {
		return false, fmt.Errorf("need at least one worker and a duration longer than the warm-up")
	}
	srv, err := redistest.StartServer()
	if err != nil {
		return false, err
	}
	defer srv.Stop()
	client, err := redpipe.NewClient(redpipe.Options{Addr: srv.Addr, PoolSize: 32})
	if err != nil {
		return false, err
	}
	defer client.Close()
	s := &soak{cfg: cfg, srv: srv, client: client}

	mset := []string{"MSET"}
	for i := range accounts {
		mset = append(mset, accountKey(i), strconv.Itoa(initialBalance))
	}
	if _, err := srv.Do(mset...); err != nil {
		return false, err
	}

	start := time.Now()
	end := start.Add(cfg.duration)
	fmt.Printf("soak: seed %d, %d workers, %v against redis-server %s\n", cfg.seed, cfg.workers, cfg.duration, srv.Addr)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(i, rand.New(rand.NewPCG(cfg.seed, uint64(i))), stop, end.Add(callTimeout))
		}()
	}

	time.Sleep(cfg.warmup)
	before, err := s.measure()
	if err != nil {
		close(stop)
		wg.Wait()
		return false, err
	}
	fmt.Printf("[%5.1fs] after warm-up: %v, %d calls\n", time.Since(start).Seconds(), before, s.calls.Load())
	// Progress every 10s; the count bounds the loop even if the clock
	// misbehaves.
	for range int(cfg.duration/(10*time.Second)) + 1 {
		left := time.Until(end)
		if left <= 0 {
			break
		}
		time.Sleep(min(left, 10*time.Second))
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("[%5.1fs] %d calls, %d deadline errors, %d other errors, heap in use %.1f MiB, %d goroutines\n",
			time.Since(start).Seconds(), s.calls.Load(), s.deadlines.Load(), s.others.Load(), mib(ms.HeapAlloc), runtime.NumGoroutine())
	}
	after, err := s.measure()
	close(stop)
	wg.Wait()
	if err != nil {
		return false, err
	}
	elapsed := time.Since(start)
	fmt.Printf("[%5.1fs] at the end: %v\n", elapsed.Seconds(), after)

	ok := true
	fail := func(format string, args ...any) {
		fmt.Printf("soak: FAIL: "+format+"\n", args...)
		ok = false
	}
	if g := growth(before.heap, after.heap); g > cfg.maxGrowth {
		fail("heap grew by %.1f%% (limit %.0f%%)", 100*g, 100*cfg.maxGrowth)
	}
	if g := growth(before.rss, after.rss); g > cfg.maxGrowth {
		fail("RSS grew by %.1f%% (limit %.0f%%)", 100*g, 100*cfg.maxGrowth)
	}
	if n := s.others.Load(); n > 0 {
		fail("%d errors other than deadlines under load", n)
	}
	invariants := "counters and balances ok"
	if problems, err := s.checkInvariants(); err != nil {
		return false, err
	} else if len(problems) > 0 {
		for _, p := range problems {
			fail("%s", p)
		}
		invariants = fmt.Sprintf("%d invariant violations", len(problems))
	}
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	calls := s.calls.Load()
	fmt.Printf("soak: %s, %d workers, %d calls (%.0f/s), %d deadline errors, %d other errors; heap %.1f -> %.1f MiB (%+.1f%%), rss %.1f -> %.1f MiB (%+.1f%%), goroutines %d -> %d; %s: %s\n",
		elapsed.Round(time.Second), cfg.workers, calls, float64(calls)/elapsed.Seconds(), s.deadlines.Load(), s.others.Load(),
		mib(before.heap), mib(after.heap), 100*growth(before.heap, after.heap),
		mib(before.rss), mib(after.rss), 100*growth(before.rss, after.rss),
		before.goroutines, after.goroutines, invariants, verdict)
	return ok, nil
}

// checkInvariants reads the final state straight from the server.
func (s *soak) checkInvariants() ([]string, error) {
	var problems []string
	args := []string{"MGET"}
	for i := range counters {
		args = append(args, counterKey(i))
	}
	v, err := s.srv.Do(args...)
	if err != nil {
		return nil, err
	}
	vals, _ := v.([]any)
	if len(vals) != counters {
		return nil, fmt.Errorf("MGET of the counters: %#v", v)
	}
	for i, x := range vals {
		n := int64(0)
		if x != nil {
			n, _ = strconv.ParseInt(x.(string), 10, 64)
		}
		acked, maybe := s.acked[i].Load(), s.maybe[i].Load()
		if n < acked || n > acked+maybe {
			problems = append(problems, fmt.Sprintf("counter %d is %d after %d acknowledged INCRs and %d of unknown outcome", i, n, acked, maybe))
		}
	}
	args = []string{"MGET"}
	for i := range accounts {
		args = append(args, accountKey(i))
	}
	if v, err = s.srv.Do(args...); err != nil {
		return nil, err
	}
	vals, _ = v.([]any)
	sum := 0
	for _, x := range vals {
		if x == nil {
			problems = append(problems, "an account is missing")
			continue
		}
		n, _ := strconv.Atoi(x.(string))
		sum += n
	}
	if sum != accounts*initialBalance {
		problems = append(problems, fmt.Sprintf("the accounts add up to %d, want %d", sum, accounts*initialBalance))
	}
	return problems, nil
}

func counterKey(i int) string { return "soak:ctr:" + strconv.Itoa(i) }
func accountKey(i int) string { return "soak:acc:" + strconv.Itoa(i) }

// failed sorts the error of a call: deadlines under load are allowed,
// anything else is counted as a failure and the first few are shown.
func (s *soak) failed(what string, err error) {
	var re *redpipe.TxRetryError
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &re) {
		// The transfers are allowed attempts without number, so a
		// TxRetryError only ever means the deadline stopped them.
		s.deadlines.Add(1)
		return
	}
	s.others.Add(1)
	if s.shown.Add(1) <= maxShown {
		fmt.Printf("soak: unexpected error from %s: %v\n", what, err)
	}
}

// mismatch counts a reply that is not the one its call must get.
func (s *soak) mismatch(format string, args ...any) {
	s.failed("a check", fmt.Errorf(format, args...))
}

// unlimited lets a transfer retry watch conflicts until its deadline:
// under this much contention a fixed number of attempts can run out, which
// says nothing about the client.
var unlimited = redpipe.TxOptions{MaxAttempts: 1 << 30}

func (s *soak) worker(id int, rng *rand.Rand, stop <-chan struct{}, hardEnd time.Time) {
	kv := "soak:kv:" + strconv.Itoa(id)
	var seq int64
	for range 1 << 40 {
		select {
		case <-stop:
			return
		default:
		}
		if time.Now().After(hardEnd) {
			return
		}
		if s.cfg.think > 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(2 * s.cfg.think))))
		}
		seq++
		s.gate.RLock()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		s.step(ctx, rng, kv, seq)
		cancel()
		s.gate.RUnlock()
	}
}

// step runs one call of a random kind and checks its reply.
func (s *soak) step(ctx context.Context, rng *rand.Rand, kv string, seq int64) {
	c := s.client
	tok := kv + ":" + strconv.FormatInt(seq, 10)
	s.calls.Add(1)
	switch r := rng.IntN(100); {
	case r < 20: // SET then GET of the worker's own key
		if err := c.Set(ctx, kv, tok); err != nil {
			s.failed("SET", err)
			return
		}
		got, err := c.Get(ctx, kv)
		if err != nil {
			s.failed("GET", err)
		} else if got != tok {
			s.mismatch("GET %s got %q, want %q", kv, got, tok)
		}
	case r < 45:
		i := rng.IntN(counters)
		n, err := c.Incr(ctx, counterKey(i))
		switch {
		case err != nil:
			s.maybe[i].Add(1)
			s.failed("INCR", err)
		case n < 1:
			s.mismatch("INCR %s got %d", counterKey(i), n)
			fallthrough
		default:
			s.acked[i].Add(1)
		}
	case r < 70: // a plain batch
		p := c.Pipeline(redpipe.NoTransaction)
		n := 5 + rng.IntN(40)
		i := rng.IntN(counters)
		for j := range n {
			p.Echo(tok + ":" + strconv.Itoa(j))
		}
		p.Incr(counterKey(i))
		replies, err := p.Exec(ctx)
		if err != nil {
			s.maybe[i].Add(1)
			s.failed("pipeline", err)
			return
		}
		s.acked[i].Add(1)
		for j := range n {
			if got, _ := replies[j].Text(); got != tok+":"+strconv.Itoa(j) {
				s.mismatch("pipeline ECHO %d got %s", j, replies[j])
			}
		}
	case r < 85: // MULTI/EXEC
		i := rng.IntN(counters)
		replies, err := c.Pipeline().Set(kv, tok).Incr(counterKey(i)).Get(kv).Exec(ctx)
		if err != nil {
			s.maybe[i].Add(1)
			s.failed("transaction", err)
			return
		}
		s.acked[i].Add(1)
		if got, _ := replies[2].Text(); got != tok {
			s.mismatch("transaction GET %s got %s, want %q", kv, replies[2], tok)
		}
	default: // optimistic-locking transfer
		a := rng.IntN(accounts)
		b := (a + 1 + rng.IntN(accounts-1)) % accounts
		amount := 1 + rng.IntN(20)
		_, err := c.Transaction(redpipe.WithTxOptions(ctx, unlimited), func(tx *redpipe.Tx) error {
			va, err := tx.Get(ctx, accountKey(a))
			if err != nil {
				return err
			}
			vb, err := tx.Get(ctx, accountKey(b))
			if err != nil {
				return err
			}
			na, err1 := strconv.Atoi(va)
			nb, err2 := strconv.Atoi(vb)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("balances %q and %q: %w", va, vb, err)
			}
			tx.Multi().Set(accountKey(a), na-amount).Set(accountKey(b), nb+amount)
			return nil
		}, accountKey(a), accountKey(b))
		if err != nil {
			s.failed("Transaction", err)
		}
	}
}
