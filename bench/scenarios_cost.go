package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// S8 asks what a call costs the client: its CPU time per GET and the
// latency of each call, with one caller or many, back to back or paced as
// an application's requests are, and what an idle client spends doing
// nothing. Each library runs in a child process of its own, so that the
// CPU time (getrusage of that process) is the library's, with nothing of
// the harness or of the other libraries in it.

// costConfig sizes S8 and the cross-process watch case of S4.
type costConfig struct {
	b2bDur       time.Duration // the back-to-back cases run this long
	pacedDur     time.Duration // one caller every 1 ms, and the many paced callers
	slowDur      time.Duration // one caller every 10 ms: fewer calls, so longer
	idleDur      time.Duration // the idle client sleeps this long
	pacedCallers int           // callers that each send one GET every 10 ms
	manyCallers  int           // callers back to back
	watchProcs   int           // processes contending in S4's cross-process watch case
}

func fullCostConfig() costConfig {
	return costConfig{
		b2bDur:       3 * time.Second,
		pacedDur:     3 * time.Second,
		slowDur:      10 * time.Second,
		idleDur:      10 * time.Second,
		pacedCallers: 100,
		manyCallers:  512,
		watchProcs:   8,
	}
}

func tinyCostConfig() costConfig {
	return costConfig{
		b2bDur:       30 * time.Millisecond,
		pacedDur:     50 * time.Millisecond,
		slowDur:      100 * time.Millisecond,
		idleDur:      100 * time.Millisecond,
		pacedCallers: 10,
		manyCallers:  16,
		watchProcs:   3,
	}
}

// scaled multiplies S8's durations by f, for a quick look (-s8-scale).
func (c costConfig) scaled(f float64) costConfig {
	for _, d := range []*time.Duration{&c.b2bDur, &c.pacedDur, &c.slowDur, &c.idleDur} {
		*d = max(time.Duration(float64(*d)*f), time.Millisecond)
	}
	return c
}

// costSpec is one S8 case: what each child process does.
type costSpec struct {
	name    string
	callers int
	every   time.Duration // the pause between one caller's calls; 0 for back to back
	dur     time.Duration // how long the callers call, or the client idles
	idle    bool          // one command, then dur of doing nothing
}

func costSpecs(cfg costConfig) []costSpec {
	return []costSpec{
		{name: "seq", callers: 1, dur: cfg.b2bDur},
		{name: "every-1ms", callers: 1, every: time.Millisecond, dur: cfg.pacedDur},
		{name: "every-10ms", callers: 1, every: 10 * time.Millisecond, dur: cfg.slowDur},
		{name: fmt.Sprintf("g%d-every-10ms", cfg.pacedCallers), callers: cfg.pacedCallers, every: 10 * time.Millisecond, dur: cfg.pacedDur},
		{name: fmt.Sprintf("g%d", cfg.manyCallers), callers: cfg.manyCallers, dur: cfg.b2bDur},
		{name: "idle-" + cfg.idleDur.String(), callers: 1, dur: cfg.idleDur, idle: true},
	}
}

// noClient names the runs of a case with the harness alone: for a paced
// case the tickers, clock readings and bookkeeping, whose CPU time every
// library's figure includes; for the idle case a Go process that only
// sleeps, the floor under any client's idle figure.
const noClient = "no-client"

// concurrent tells whether the case uses the library's form for many
// goroutines (as S5 does): when many callers go back to back. Paced
// callers rarely overlap and use the plain client.
func (sp costSpec) concurrent() bool { return sp.callers > 1 && sp.every == 0 }

func (sp costSpec) args(name, addr string) []string {
	a := []string{"-child", "S8", "-client", name, "-addr", addr,
		"-callers", strconv.Itoa(sp.callers), "-every", sp.every.String(), "-dur", sp.dur.String()}
	if sp.idle {
		a = append(a, "-idle")
	}
	return a
}

func s8Keys(callers int) (keys, vals []string) {
	keys = keyList("s8:", callers)
	for i := range keys {
		vals = append(vals, "v:"+strconv.Itoa(i))
	}
	return keys, vals
}

// runS8 runs every S8 case for every library, each in a child process,
// and after each paced or idle case the same with no client.
func runS8(ctx context.Context, e *env, clients []client, logw io.Writer) ([]record, error) {
	var recs []record
	for _, sp := range costSpecs(e.cfg.cost) {
		rs, err := runCase(ctx, e, clients, benchCase{"S8", sp.name, sp.run}, logw)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rs...)
		if sp.every == 0 && !sp.idle {
			continue
		}
		samples := make([][]sample, e.cfg.reps)
		for rep := range samples {
			s, err := runCostChild(ctx, e, noClient, sp)
			if err != nil {
				return nil, fmt.Errorf("S8 %s, %s, repetition %d: %w", sp.name, noClient, rep+1, err)
			}
			samples[rep] = []sample{s}
			fmt.Fprintf(logw, "S8 %-15s %-9s rep %d/%d: %.1f µs CPU per op\n", sp.name, noClient, rep+1, e.cfg.reps,
				float64(s.cpu.Nanoseconds())/float64(s.ops)/1e3)
		}
		recs = append(recs, aggregate("S8", sp.name, []string{noClient}, samples)...)
	}
	return recs, nil
}

// run is the benchCase form of sp: a child process measures, and the
// parent checks the keys the child wrote (the child checked every GET).
func (sp costSpec) run(ctx context.Context, e *env, c client) (sample, error) {
	s, err := runCostChild(ctx, e, c.Name(), sp)
	if err != nil {
		return s, err
	}
	keys, vals := s8Keys(sp.callers)
	if err := e.expectDBSize(len(keys)); err != nil {
		return s, err
	}
	return s, e.expectValues(keys, func(i int) string { return vals[i] })
}

func runCostChild(ctx context.Context, e *env, name string, sp costSpec) (sample, error) {
	var r costReport
	if err := runChildJSON(ctx, e.cfg.exe, sp.args(name, e.srv.Addr), &r); err != nil {
		return sample{}, err
	}
	s := r.sample()
	s.p50, s.p99, s.p999 = time.Duration(r.P50Ns), time.Duration(r.P99Ns), time.Duration(r.P999Ns)
	s.hasLat = r.Latency
	s.rateNotCompared = sp.every > 0 || sp.idle
	if r.Ops <= 0 {
		return s, fmt.Errorf("child made %d calls", r.Ops)
	}
	return s, nil
}

// runChildJSON runs this binary with args and decodes what it prints.
func runChildJSON(ctx context.Context, exe string, args []string, out any) error {
	cmd := exec.CommandContext(ctx, exe, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("child %s: %w: %s", strings.Join(args[:min(4, len(args))], " "), err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("child printed %q: %w", b, err)
	}
	return nil
}

// costReport is what an S8 child prints: the measured interval as S6's
// child reports it, and the calls' latency quantiles.
type costReport struct {
	childReport
	Latency bool  `json:"latency"` // the quantiles were measured (not for idle runs or those with no client)
	P50Ns   int64 `json:"p50_ns"`
	P99Ns   int64 `json:"p99_ns"`
	P999Ns  int64 `json:"p999_ns"`
}

// sample is what the parent makes of a child's measurement.
func (r childReport) sample() sample {
	return sample{
		ops: r.Ops, dur: time.Duration(r.Nanos), hasMem: true,
		allocs: r.Allocs, bytes: r.Bytes, cpu: time.Duration(r.CPUNanos),
		srvCPU: time.Duration(r.SrvCPUNs), hasSrv: r.SrvCPUNs >= 0,
		srvWait: time.Duration(r.SrvWaitNs), hasWait: r.SrvWaitNs >= 0,
		steal: time.Duration(r.StealNs), hasStl: r.StealNs >= 0,
		peakRSS: float64(r.PeakRSSKiB) / 1024, baseRSS: float64(r.BaseRSSKiB) / 1024,
	}
}

// childReport is how a child reports its measurement s.
func (s sample) childReport() childReport {
	r := childReport{Ops: s.ops, Nanos: s.dur.Nanoseconds(), Allocs: s.allocs, Bytes: s.bytes,
		CPUNanos: s.cpu.Nanoseconds(), SrvCPUNs: -1, SrvWaitNs: -1, StealNs: -1}
	if s.hasSrv {
		r.SrvCPUNs = s.srvCPU.Nanoseconds()
	}
	if s.hasWait {
		r.SrvWaitNs = s.srvWait.Nanoseconds()
	}
	if s.hasStl {
		r.StealNs = s.steal.Nanoseconds()
	}
	return r
}

// childModes are the children other than S6's, by their -child value;
// each parses its own arguments.
var childModes = map[string]func(args []string) int{
	"S8":          costChildMain,
	watchChildArg: watchChildMain,
}

// costChildMain is the S8 child: it parses its flags, measures and prints
// a costReport.
func costChildMain(args []string) int {
	fs := flag.NewFlagSet("child S8", flag.ContinueOnError)
	fs.String("child", "", "S8")
	name := fs.String("client", "", "the library, or "+noClient)
	addr := fs.String("addr", "", "the server's host:port")
	var sp costSpec
	fs.IntVar(&sp.callers, "callers", 1, "how many goroutines call")
	fs.DurationVar(&sp.every, "every", 0, "the pause between one caller's calls; 0 for back to back")
	fs.DurationVar(&sp.dur, "dur", 0, "how long to call, or to idle")
	fs.BoolVar(&sp.idle, "idle", false, "make one call, then measure dur of doing nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" || sp.callers < 1 || sp.dur <= 0 || sp.every < 0 || (*name == noClient && sp.every == 0 && !sp.idle) {
		fmt.Fprintf(os.Stderr, "child: want -child S8 -client NAME -addr HOST:PORT -callers N -every D -dur D [-idle], got %q\n", args)
		return 2
	}
	benchServer = &redistest.Server{Addr: *addr}
	r, err := costChild(context.Background(), *name, *addr, sp)
	if err == nil {
		err = json.NewEncoder(os.Stdout).Encode(r)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", *name, err)
		return 1
	}
	return 0
}

func costChild(ctx context.Context, name, addr string, sp costSpec) (costReport, error) {
	var r costReport
	var c client
	keys, vals := s8Keys(sp.callers)
	if name != noClient {
		var err error
		if c, err = openClient(ctx, name, addr); err != nil {
			return r, err
		}
		defer c.Close()
		if sp.concurrent() {
			if c, err = c.Concurrent(); err != nil {
				return r, err
			}
		}
		// The keys are written and read back once, every caller makes a
		// few calls at once so that pools hold their connections, and only
		// then does the clock start.
		if err := c.PipelineSetGet(ctx, keys, vals); err != nil {
			return r, err
		}
	}
	var s sample
	var hists []latencies
	var err error
	if sp.idle {
		s, err = measure(func() (int, error) {
			time.Sleep(sp.dur)
			return 1, nil
		})
	} else {
		hists = make([]latencies, sp.callers)
		if _, err := callFor(ctx, c, keys, vals, 0, time.Time{}, 3, hists); err != nil {
			return r, err
		}
		clear(hists)
		s, err = measure(func() (int, error) {
			return callFor(ctx, c, keys, vals, sp.every, time.Now().Add(sp.dur), 0, hists)
		})
	}
	if err != nil {
		return r, err
	}
	r.childReport = s.childReport()
	if c != nil && !sp.idle {
		var all latencies
		for i := range hists {
			all.merge(&hists[i])
		}
		r.Latency = true
		r.P50Ns, r.P99Ns, r.P999Ns = all.quantile(0.5).Nanoseconds(), all.quantile(0.99).Nanoseconds(), all.quantile(0.999).Nanoseconds()
	}
	return r, nil
}

// callFor runs len(keys) callers, caller i sending GET keys[i] and
// checking that it returns vals[i], back to back or one call every
// every, until the deadline until, or until each has made calls calls
// if calls > 0; each makes one call at least, however late it got a CPU.
// Each call's duration goes to hists[i]. Paced callers start spread
// evenly over the first interval, as independent requests arrive, not
// all at once. With a nil client a caller only keeps its pace
// and its books: what the pacing costs. It returns how many calls were
// made.
func callFor(ctx context.Context, c client, keys, vals []string, every time.Duration, until time.Time, calls int, hists []latencies) (int, error) {
	n := len(keys)
	err := fanOut(ctx, n, func(ctx context.Context, id int) error {
		h := &hists[id]
		var tick <-chan time.Time
		if every > 0 {
			phase := time.NewTimer(every * time.Duration(id) / time.Duration(n))
			select {
			case <-phase.C:
			case <-ctx.Done():
				phase.Stop()
				return ctx.Err()
			}
			t := time.NewTicker(every)
			defer t.Stop()
			tick = t.C
		}
		for i := 0; calls <= 0 || i < calls; i++ {
			if tick != nil && i > 0 {
				select {
				case <-tick:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			t0 := time.Now()
			if calls <= 0 && i > 0 && !t0.Before(until) {
				return nil
			}
			if c != nil {
				got, err := c.Get(ctx, keys[id])
				if err := checkValue(i, got, err, vals[id]); err != nil {
					return err
				}
			}
			h.record(time.Since(t0))
		}
		return nil
	})
	var total uint64
	for i := range hists {
		total += hists[i].n
	}
	return int(total), err
}
