package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// config sizes every scenario. fullConfig is what the command runs;
// tests use tinyConfig so that the verification code runs in seconds.
type config struct {
	reps        int
	pollWait    string        // -pollwait, for the report; the clients read it from pollWaitEnv
	haltPollSet bool          // -haltpoll set the guest's halt-polling for the run
	minDur      time.Duration // S1 pipelined, S2, S3 and S4's multi cases repeat until this long
	s1Ops       int
	s2Pairs     int
	s3Depths    []int
	s4Depths    []int
	watchG      int // goroutines contending in watch-contended
	watchN      int // increments per goroutine
	s5Gs        []int
	s5Ops       int
	s6Ops       int
	s7N         map[int]int // redis-benchmark -n for each -P depth
	s7OneN      map[int]int // the same with one connection (-c 1)
	exe         string      // the binary S6 re-executes as its child
	cluster     clusterConfig
	cost        costConfig // S8 and S4's cross-process watch case
}

func fullConfig() config {
	return config{
		reps:     5,
		minDur:   time.Second,
		s1Ops:    100000,
		s2Pairs:  1000,
		s3Depths: []int{10, 100, 1000, 10000},
		s4Depths: []int{10, 100},
		watchG:   8,
		watchN:   250,
		s5Gs:     []int{64, 512},
		s5Ops:    200000,
		s6Ops:    1000000,
		s7N:      map[int]int{1: 100000, 16: 500000, 100: 1000000, 1000: 1000000},
		s7OneN:   map[int]int{1000: 1000000, 10000: 2000000},
		cluster:  fullClusterConfig(),
		cost:     fullCostConfig(),
	}
}

func tinyConfig() config {
	return config{
		reps:     1,
		minDur:   5 * time.Millisecond,
		s1Ops:    500,
		s2Pairs:  20,
		s3Depths: []int{10, 100},
		s4Depths: []int{10},
		watchG:   4,
		watchN:   10,
		s5Gs:     []int{4, 16},
		s5Ops:    800,
		s6Ops:    2000,
		// Enough requests that redis-benchmark's run lasts some
		// milliseconds: it times in whole ones, and a run under one
		// gives a rate of inf.
		s7N:     map[int]int{1: 1000, 16: 20000},
		s7OneN:  map[int]int{100: 20000},
		cluster: tinyClusterConfig(),
		cost:    tinyCostConfig(),
	}
}

// scenarioNames lists every scenario in the order they run; the cluster
// ones run last, on a cluster of their own.
var scenarioNames = append([]string{"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8"}, clusterScenarioNames...)

// sample is one measured run of one case by one client.
type sample struct {
	ops     int
	dur     time.Duration
	allocs  uint64        // heap allocations during the run
	cpu     time.Duration // the process's CPU time during the run
	bytes   uint64        // heap bytes allocated during the run
	hasMem  bool          // allocs and bytes were measured (not for redis-benchmark)
	retries int
	hasRet  bool
	srvCPU  time.Duration // the server's main thread's CPU time during the run
	hasSrv  bool          // srvCPU was measured
	srvWait time.Duration // how long that thread was ready to run but had no CPU
	hasWait bool          // srvWait was measured
	steal   time.Duration // CPU time the hypervisor took from this machine, all CPUs
	hasStl  bool          // steal was measured
	peakRSS float64       // MiB, S6 only
	baseRSS float64       // MiB before the pipeline was built, S6 only

	p50, p99, p999  time.Duration // per-call latency quantiles, S8 only
	hasLat          bool          // they were measured
	rateNotCompared bool          // the rate was set by the server or the pacing, not won by the client
}

// benchCase is one named measurement that every library runs. run gets
// a freshly flushed database, measures itself and checks the outcome
// against the server afterwards.
type benchCase struct {
	scenario, name string
	run            func(ctx context.Context, e *env, c client) (sample, error)
}

// env is what cases share: the sizes and the server, reached for checks
// through redistest's own small RESP client so that a client's bug cannot
// also hide in its own verification.
type env struct {
	cfg config
	srv *redistest.Server
}

func (e *env) do(args ...string) (any, error) {
	v, err := e.srv.Do(args...)
	if err != nil {
		return nil, err
	}
	if re, ok := v.(redistest.ReplyError); ok {
		return nil, fmt.Errorf("%s: %v", args[0], re)
	}
	return v, nil
}

func (e *env) flush() error {
	_, err := e.do("FLUSHDB")
	return err
}

func (e *env) expectGet(key, want string) error {
	v, err := e.do("GET", key)
	if err != nil {
		return err
	}
	if v != want {
		return fmt.Errorf("server has %s = %v, want %q", key, v, want)
	}
	return nil
}

func (e *env) expectDBSize(want int) error {
	v, err := e.do("DBSIZE")
	if err != nil {
		return err
	}
	if v != int64(want) {
		return fmt.Errorf("server holds %v keys, want %d", v, want)
	}
	return nil
}

// expectValues checks many keys in one round trip.
func (e *env) expectValues(keys []string, want func(i int) string) error {
	cmds := make([][]string, len(keys))
	for i, k := range keys {
		cmds[i] = []string{"GET", k}
	}
	got, err := e.srv.Pipeline(cmds...)
	if err != nil {
		return err
	}
	for i, k := range keys {
		if got[i] != want(i) {
			return fmt.Errorf("server has %s = %v, want %q", k, got[i], want(i))
		}
	}
	return nil
}

// measure times fn and counts the heap allocations of the whole process
// while it runs, after a collection so that earlier garbage is not charged
// to it. Background goroutines of idle clients are counted too; they are
// quiet between calls, so their share is noise.
func measure(fn func() (ops int, err error)) (sample, error) {
	runtime.GC()
	srv0, ok0 := serverCPU()
	wait0, okw0 := serverWait()
	steal0, oks0 := stealTime()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := cpuTime()
	start := time.Now()
	ops, err := fn()
	d := time.Since(start)
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&after)
	steal1, oks1 := stealTime()
	wait1, okw1 := serverWait()
	srv1, ok1 := serverCPU()
	return sample{
		ops: ops, dur: d, hasMem: true, cpu: cpu,
		allocs: after.Mallocs - before.Mallocs,
		bytes:  after.TotalAlloc - before.TotalAlloc,
		srvCPU: srv1 - srv0, hasSrv: ok0 && ok1,
		srvWait: wait1 - wait0, hasWait: okw0 && okw1,
		steal: steal1 - steal0, hasStl: oks0 && oks1,
	}, err
}

// benchServer is the server measured, for serverCPU; set once before the
// first measurement (by run, or by a child from its -addr).
var benchServer *redistest.Server

// serverCPU is the CPU time the server's main thread, which runs every
// command, has used so far (INFO cpu). Over a run, against the run's
// time, it tells how busy the client kept the server: near 100% the
// server is the limit and no client could go much faster. The INFO round
// trip is taken outside the timed part.
func serverCPU() (time.Duration, bool) {
	if benchServer == nil {
		return 0, false
	}
	v, err := benchServer.Do("INFO", "cpu")
	info, ok := v.(string)
	if err != nil || !ok {
		return 0, false
	}
	var total float64
	for _, field := range []string{"used_cpu_sys_main_thread", "used_cpu_user_main_thread"} {
		f, err := strconv.ParseFloat(infoField(info, field), 64)
		if err != nil {
			return 0, false
		}
		total += f
	}
	return time.Duration(total * float64(time.Second)), true
}

// serverPid is the server's process id, from INFO server, read once; 0
// when unknown.
var serverPid = sync.OnceValue(func() int {
	if benchServer == nil {
		return 0
	}
	v, err := benchServer.Do("INFO", "server")
	info, ok := v.(string)
	if err != nil || !ok {
		return 0
	}
	pid, _ := strconv.Atoi(infoField(info, "process_id"))
	return pid
})

// serverWait is how long the server's main thread has so far been ready
// to run but waiting for a CPU (the second field of its schedstat, Linux
// only). Over a run it splits the time the server was not busy: waiting
// means the machine had no core free for it (the client's own threads, or
// other work), and what is left is time the client kept it idle. The
// server must run on this machine, as redistest's does.
func serverWait() (time.Duration, bool) {
	pid := serverPid()
	if pid <= 0 {
		return 0, false
	}
	ns, ok := procNumber(fmt.Sprintf("/proc/%d/task/%d/schedstat", pid, pid), "", 1)
	return time.Duration(ns), ok
}

// stealTime is the CPU time, summed over the CPUs, that the hypervisor
// has so far given to others while this virtual machine had work (the
// steal field of /proc/stat, Linux only). A kernel that accounts steal
// time leaves it out of the server's and the client's CPU times, so
// without it a run on a host short of CPUs looks like one where the client
// kept the server idle.
func stealTime() (time.Duration, bool) {
	ticks, ok := procNumber("/proc/stat", "cpu", 8)
	return time.Duration(ticks) * time.Second / userHZ, ok
}

// procNumber reads field i (from 0) of the first line of a /proc file,
// a line of numbers after an optional name, which must then be name.
func procNumber(path, name string, i int) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) <= i || (name != "" && f[0] != name) {
		return 0, false
	}
	n, err := strconv.ParseInt(f[i], 10, 64)
	return n, err == nil
}

// userHZ is the unit of /proc/stat, which Linux fixes at 100 per second
// for every architecture it reports to user space.
const userHZ = 100

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// repeatFor calls fn with an increasing iteration number until at least min
// has passed, and sums the operations it reports. Short cases repeat so
// that timer resolution and scheduling noise stay small against the run.
func repeatFor(min time.Duration, fn func(iter int) (int, error)) (iters, ops int, err error) {
	start := time.Now()
	for iters == 0 || time.Since(start) < min {
		n, err := fn(iters)
		ops += n
		iters++
		if err != nil {
			return iters, ops, err
		}
	}
	return iters, ops, nil
}

func keyList(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	return keys
}

// Two 16-byte values that runs alternate between, so that a reply left
// over from an earlier iteration cannot pass for a fresh one.
var values16 = [2]string{"0123456789abcdef", "fedcba9876543210"}

// cases returns the cases of one of the scenarios S1 to S6.
func cases(name string, cfg config) []benchCase {
	switch name {
	case "S1":
		return []benchCase{
			{"S1", "seq", runS1Seq},
			{"S1", "pipelined", runS1Pipelined},
		}
	case "S2":
		return []benchCase{
			{"S2", "no-pipeline", runS2(false)},
			{"S2", "pipeline", runS2(true)},
		}
	case "S3":
		var cs []benchCase
		for _, d := range cfg.s3Depths {
			cs = append(cs, benchCase{"S3", fmt.Sprintf("depth-%d", d), runS3(d)})
		}
		return cs
	case "S4":
		var cs []benchCase
		for _, d := range cfg.s4Depths {
			cs = append(cs, benchCase{"S4", fmt.Sprintf("multi-%d", d), runS4Multi(d)})
		}
		return append(cs, benchCase{"S4", "watch-contended", runS4Watch},
			benchCase{"S4", watchProcsCase(cfg), runS4WatchProcs})
	case "S5":
		var cs []benchCase
		for _, g := range cfg.s5Gs {
			cs = append(cs, benchCase{"S5", fmt.Sprintf("g%d", g), runS5(g)})
		}
		return cs
	case "S6":
		return []benchCase{{"S6", "pipeline-1m", runS6}}
	}
	return nil
}

// S1: a counter incremented one call at a time against the same number of
// increments in a single pipeline.
const s1Key = "s1:counter"

func runS1Seq(ctx context.Context, e *env, c client) (sample, error) {
	n := e.cfg.s1Ops
	s, err := measure(func() (int, error) {
		for i := 1; i <= n; i++ {
			v, err := c.Incr(ctx, s1Key)
			if err != nil {
				return i - 1, err
			}
			if v != int64(i) {
				return i - 1, fmt.Errorf("INCR #%d returned %d", i, v)
			}
		}
		return n, nil
	})
	if err != nil {
		return s, err
	}
	return s, e.expectGet(s1Key, strconv.Itoa(n))
}

// One pipeline of 100,000 INCRs takes tens of milliseconds, short enough
// for a burst of other work on the machine to halve its rate, so a run
// sends one after another for minDur and counts them all; each must end
// where the last left off.
func runS1Pipelined(ctx context.Context, e *env, c client) (sample, error) {
	n := e.cfg.s1Ops
	var iters int
	s, err := measure(func() (ops int, err error) {
		iters, ops, err = repeatFor(e.cfg.minDur, func(iter int) (int, error) {
			last, err := c.PipelineIncr(ctx, s1Key, n)
			if err != nil {
				return 0, err
			}
			if want := int64((iter + 1) * n); last != want {
				return 0, fmt.Errorf("GET after %d INCR returned %d, want %d", n, last, want)
			}
			return n, nil
		})
		return ops, err
	})
	if err != nil {
		return s, err
	}
	return s, e.expectGet(s1Key, strconv.Itoa(iters*n))
}

// S2: SET then GET of the same key, one round trip per command or all of
// them in one pipeline. Every GET must return the value just set.
func runS2(pipelined bool) func(context.Context, *env, client) (sample, error) {
	return func(ctx context.Context, e *env, c client) (sample, error) {
		n := e.cfg.s2Pairs
		keys := keyList("s2:key_", n)
		var vals [2][]string
		for i := range n {
			vals[0] = append(vals[0], "value_"+strconv.Itoa(i))
			vals[1] = append(vals[1], "value'_"+strconv.Itoa(i))
		}
		var iters int
		s, err := measure(func() (ops int, err error) {
			iters, ops, err = repeatFor(e.cfg.minDur, func(iter int) (int, error) {
				vs := vals[iter%2]
				if pipelined {
					return 2 * n, c.PipelineSetGet(ctx, keys, vs)
				}
				for i, k := range keys {
					if err := c.Set(ctx, k, vs[i]); err != nil {
						return 2 * i, err
					}
					got, err := c.Get(ctx, k)
					if err := checkValue(i, got, err, vs[i]); err != nil {
						return 2 * i, err
					}
				}
				return 2 * n, nil
			})
			return ops, err
		})
		if err != nil {
			return s, err
		}
		if err := e.expectDBSize(n); err != nil {
			return s, err
		}
		last := vals[(iters-1)%2]
		return s, e.expectValues(keys, func(i int) string { return last[i] })
	}
}

// S3: plain pipelines of SETs at several depths.
func runS3(depth int) func(context.Context, *env, client) (sample, error) {
	return func(ctx context.Context, e *env, c client) (sample, error) {
		keys := keyList("s3:", depth)
		var iters int
		s, err := measure(func() (ops int, err error) {
			iters, ops, err = repeatFor(e.cfg.minDur, func(iter int) (int, error) {
				return depth, c.PipelineSet(ctx, keys, values16[iter%2])
			})
			return ops, err
		})
		if err != nil {
			return s, err
		}
		if err := e.expectDBSize(depth); err != nil {
			return s, err
		}
		last := values16[(iters-1)%2]
		return s, e.expectValues(keys, func(int) string { return last })
	}
}

// S4: transactions. ops count INCRs for the multi cases, so that depths
// compare with the plain pipelines, and committed transactions for
// watch-contended.
const s4Key = "s4:counter"

func runS4Multi(depth int) func(context.Context, *env, client) (sample, error) {
	return func(ctx context.Context, e *env, c client) (sample, error) {
		var total int64
		s, err := measure(func() (ops int, err error) {
			_, ops, err = repeatFor(e.cfg.minDur, func(int) (int, error) {
				last, err := c.MultiIncr(ctx, s4Key, depth)
				if err != nil {
					return 0, err
				}
				total += int64(depth)
				if last != total {
					return depth, fmt.Errorf("MULTI of %d INCR ended at %d, want %d", depth, last, total)
				}
				return depth, nil
			})
			return ops, err
		})
		if err != nil {
			return s, err
		}
		return s, e.expectGet(s4Key, strconv.FormatInt(total, 10))
	}
}

func runS4Watch(ctx context.Context, e *env, c client) (sample, error) {
	g, each := e.cfg.watchG, e.cfg.watchN
	var retries atomic.Int64
	s, err := measure(func() (int, error) {
		err := fanOut(ctx, g, func(ctx context.Context, _ int) error {
			for range each {
				r, err := c.WatchIncr(ctx, s4Key)
				retries.Add(int64(r))
				if err != nil {
					return err
				}
			}
			return nil
		})
		return g * each, err
	})
	s.retries, s.hasRet = int(retries.Load()), true
	if err != nil {
		return s, err
	}
	return s, e.expectGet(s4Key, strconv.Itoa(g*each))
}

// fanOut runs fn in g goroutines and returns the first error, cancelling
// the others' context when one fails.
func fanOut(ctx context.Context, g int, fn func(ctx context.Context, id int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for id := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, id); err != nil {
				once.Do(func() { first = fmt.Errorf("goroutine %d: %w", id, err); cancel() })
			}
		}()
	}
	wg.Wait()
	return first
}

// S5: many goroutines sharing one client, each setting its own key and
// reading it back. Values differ per goroutine and alternate per
// iteration, so a reply handed to the wrong caller is caught.
func runS5(g int) func(context.Context, *env, client) (sample, error) {
	return func(ctx context.Context, e *env, c client) (sample, error) {
		cc, err := c.Concurrent()
		if err != nil {
			return sample{}, err
		}
		s, keys, last, err := setGetRounds(ctx, cc, g, e.cfg.s5Ops, "s5:", measure)
		if err != nil {
			return s, err
		}
		if err := e.expectDBSize(g); err != nil {
			return s, err
		}
		return s, e.expectValues(keys, last)
	}
}

// setGetter is what S5 and C2 need of a client.
type setGetter interface {
	Get(ctx context.Context, key string) (string, error)
	Set(ctx context.Context, key, val string) error
}

// setGetRounds runs S5's loop: g goroutines sharing cc, each setting its
// own key and reading it back, about ops commands in all, timed by
// measure. It returns the keys and what each should hold afterwards.
func setGetRounds(ctx context.Context, cc setGetter, g, ops int, prefix string,
	measure func(func() (int, error)) (sample, error)) (sample, []string, func(int) string, error) {
	per := (ops/2 + g - 1) / g
	keys := keyList(prefix, g)
	vals := make([][2]string, g)
	for i := range vals {
		vals[i] = [2]string{"a:" + strconv.Itoa(i), "b:" + strconv.Itoa(i)}
	}
	s, err := measure(func() (int, error) {
		err := fanOut(ctx, g, func(ctx context.Context, id int) error {
			for i := range per {
				v := vals[id][i%2]
				if err := cc.Set(ctx, keys[id], v); err != nil {
					return err
				}
				got, err := cc.Get(ctx, keys[id])
				if err := checkValue(i, got, err, v); err != nil {
					return err
				}
			}
			return nil
		})
		return 2 * g * per, err
	})
	return s, keys, func(id int) string { return vals[id][(per-1)%2] }, err
}

// S6: one pipeline of a million SETs, run by a child process per library
// so that each peak RSS belongs to one library alone.
func runS6(ctx context.Context, e *env, c client) (sample, error) {
	n := e.cfg.s6Ops
	r, err := runChild(ctx, e.cfg.exe, c.Name(), e.srv.Addr, n)
	if err != nil {
		return sample{}, err
	}
	s := r.sample()
	// The server's time bounds this case (its busy share is reported
	// instead); what the client can win is memory.
	s.rateNotCompared = true
	if r.Ops != n {
		return s, fmt.Errorf("child ran %d SETs, want %d", r.Ops, n)
	}
	if err := e.expectDBSize(n); err != nil {
		return s, err
	}
	probe := []int{0, 1, n / 2, n - 2, n - 1}
	keys := make([]string, len(probe))
	for i, j := range probe {
		keys[i] = s6Key(j)
	}
	return s, e.expectValues(keys, func(int) string { return values16[0] })
}

// S7: redis-benchmark against the same server, as the ceiling a client
// could reach. Its INCR test increments one counter exactly -n times,
// which is checked, so a run that lost requests does not count.
//
// With conns 1 it is one connection sending a batch of depth commands and
// waiting for its replies before the next, as a client's pipelines in S3
// do: the limit for them, where the server's time per batch and its
// wake-ups count as much as the client's.
func runBenchmarkTool(ctx context.Context, e *env, depth, n, conns int) (map[string]float64, error) {
	cmd := exec.CommandContext(ctx, "redis-benchmark",
		"-h", "127.0.0.1", "-p", strconv.Itoa(e.srv.Port), "-c", strconv.Itoa(conns),
		"-P", strconv.Itoa(depth), "-t", "set,get,incr", "-n", strconv.Itoa(n), "--csv")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark -P %d: %w: %s", depth, err, strings.TrimSpace(stderr.String()))
	}
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark -P %d: reading its CSV: %w", depth, err)
	}
	rps := make(map[string]float64)
	for _, row := range rows[min(1, len(rows)):] {
		if len(row) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(row[1], 64)
		if err != nil {
			return nil, fmt.Errorf("redis-benchmark -P %d: rps %q: %w", depth, row[1], err)
		}
		if math.IsInf(v, 0) {
			return nil, fmt.Errorf("redis-benchmark -P %d -n %d: its %s run lasted under the millisecond it times in (rate %q); give it more requests", depth, n, row[0], row[1])
		}
		rps[strings.ToLower(row[0])] = v
	}
	for _, t := range benchmarkTests {
		if rps[t] <= 0 {
			return nil, fmt.Errorf("redis-benchmark -P %d reported no %s rate in %q", depth, t, out)
		}
	}
	if err := e.expectGet("counter:__rand_int__", strconv.Itoa(n)); err != nil {
		return nil, fmt.Errorf("redis-benchmark -P %d: %w", depth, err)
	}
	return rps, nil
}

var benchmarkTests = []string{"set", "get", "incr"}

// childReport is what an S6 child prints on stdout.
type childReport struct {
	Ops        int    `json:"ops"`
	Nanos      int64  `json:"ns"`
	Allocs     uint64 `json:"allocs"`
	Bytes      uint64 `json:"bytes"`
	CPUNanos   int64  `json:"cpu_ns"`
	SrvCPUNs   int64  `json:"server_cpu_ns"`  // -1 when not measured
	SrvWaitNs  int64  `json:"server_wait_ns"` // -1 when not measured
	StealNs    int64  `json:"steal_ns"`       // -1 when not measured
	PeakRSSKiB int64  `json:"peak_rss_kib"`
	BaseRSSKiB int64  `json:"base_rss_kib"`
}

func runChild(ctx context.Context, exe, name, addr string, n int) (childReport, error) {
	var r childReport
	err := runChildJSON(ctx, exe, []string{"-child", "S6", "-client", name, "-addr", addr, "-n", strconv.Itoa(n)}, &r)
	return r, err
}
