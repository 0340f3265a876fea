// Command bench measures redpipe side by side with go-redis v9 and rueidis
// on a redis-server of its own, with redis-benchmark on the same server as
// the limit any client could reach, and then (C1 to C3) on a Redis Cluster
// of three masters of its own, with a client that does no work (it sends
// bytes encoded once and compares the answers with the first) as the
// limit of C1 and C3.
//
//	go run . [-scenarios S1,S3] [-reps N] [-s8-scale F] [-pollwait D] [-haltpoll D] [-json FILE] [-md FILE]
//
// It prints a markdown report and exits non-zero if any client returned a
// wrong answer, whatever its speed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

func main() {
	// The children (S6, S8, S4's processes) are this same binary; the
	// flag is kept out of -help.
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		os.Exit(childMain(os.Args[1:]))
	}
	os.Exit(benchCLI())
}

// benchCLI runs the benchmarks as the flags say, and returns the exit
// code; with -haltpoll, once the guest's halt-polling is put back (see
// runHaltPolled).
func benchCLI() int {
	scen := flag.String("scenarios", "", "comma-separated scenarios to run, from "+strings.Join(scenarioNames, ",")+" (default all)")
	flag.StringVar(scen, "scenario", "", "the same as -scenarios")
	reps := flag.Int("reps", 5, "repetitions of every case, at least 1")
	jsonOut := flag.String("json", "", "write the records as JSON to this file")
	mdOut := flag.String("md", "", "write the markdown report to this file")
	s8Scale := flag.Float64("s8-scale", 1, "multiply S8's durations (3s, 10s and the idle 10s) by this")
	pollWait := flag.String("pollwait", "", "redpipe's Options.PollWait for this run, a duration or -1 for none (default redpipe's own), to compare polling policies")
	haltPoll := flag.String("haltpoll", "", "set the guest's halt-polling (an idle CPU polls this long before it halts, from 0 to 1s) for this run and restore it after: 200us puts a virtual machine with the haltpoll cpuidle driver in the fast-wake state, 0 in the slow one; needs root")
	flag.Parse()

	cfg := fullConfig()
	cfg.reps = *reps
	cfg.pollWait = *pollWait
	if !(*s8Scale > 0) {
		fmt.Fprintln(os.Stderr, "bench: -s8-scale must be above 0")
		return 2
	}
	cfg.cost = cfg.cost.scaled(*s8Scale)
	if _, err := parsePollWait(*pollWait); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	hp, setHP, err := parseHaltPoll(*haltPoll)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if setHP {
		// The run is a child process with the same flags but this one;
		// this process sets the guest's halt-polling around it.
		var args []string
		flag.Visit(func(f *flag.Flag) {
			if f.Name != "haltpoll" {
				args = append(args, "-"+f.Name+"="+f.Value.String())
			}
		})
		return runHaltPolled(haltPollPath, hp, append(args, flag.Args()...))
	}
	cfg.haltPollSet = os.Getenv(haltPollSetEnv) != ""
	if *pollWait != "" {
		// The children read it from their environment, as the parent's
		// own clients do.
		os.Setenv(pollWaitEnv, *pollWait)
	} else {
		os.Unsetenv(pollWaitEnv)
	}
	if err := runBench(cfg, *scen, *jsonOut, *mdOut); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// runBench is benchMain, or a stand-in for tests of what ends a run.
var runBench = benchMain

func benchMain(cfg config, scen, jsonOut, mdOut string) error {
	if cfg.reps < 1 {
		return fmt.Errorf("-reps must be at least 1")
	}
	selected, err := parseScenarios(scen)
	if err != nil {
		return err
	}
	if cfg.exe, err = os.Executable(); err != nil {
		return err
	}
	// An interrupt cancels the run so that the server is still stopped.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rp, err := run(ctx, cfg, selected, os.Stderr)
	if err != nil {
		return err
	}
	md := rp.markdown()
	fmt.Print(md)
	if mdOut != "" {
		if err := os.WriteFile(mdOut, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(rp.Records, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func parseScenarios(s string) ([]string, error) {
	if s == "" {
		return scenarioNames, nil
	}
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.ToUpper(strings.TrimSpace(name))
		if !slices.Contains(scenarioNames, name) {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", name, strings.Join(scenarioNames, ","))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	// Run in the canonical order whatever order they were given in.
	slices.SortFunc(out, func(a, b string) int { return slices.Index(scenarioNames, a) - slices.Index(scenarioNames, b) })
	return out, nil
}

// run starts the server, runs the scenarios and stops the server.
// Progress goes to logw, one line per measured run.
func run(ctx context.Context, cfg config, scenarios []string, logw io.Writer) (rp *report, err error) {
	srv, err := redistest.StartServer()
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := srv.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	e := &env{cfg: cfg, srv: srv}
	benchServer = srv
	rp = &report{Started: time.Now(), Reps: cfg.reps, PollWait: cfg.pollWait, HaltPollSet: cfg.haltPollSet}
	info, err := e.do("INFO", "server")
	if err != nil {
		return nil, err
	}
	rp.Machine = describeMachine(infoField(fmt.Sprint(info), "redis_version"))

	var clients []client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, name := range libraries {
		c, err := openClient(ctx, name, srv.Addr)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
		if err := c.Set(ctx, "bench:warmup", "1"); err != nil {
			return nil, fmt.Errorf("%s: first command: %w", name, err)
		}
	}

	for _, name := range scenarios {
		if isClusterScenario(name) {
			continue // below, on a cluster of their own
		}
		if name == "S7" {
			recs, err := runS7(ctx, e, logw)
			if err != nil {
				return nil, err
			}
			rp.Records = append(rp.Records, recs...)
			continue
		}
		if name == "S8" {
			recs, err := runS8(ctx, e, clients, logw)
			if err != nil {
				return nil, err
			}
			rp.Records = append(rp.Records, recs...)
			continue
		}
		for _, bc := range cases(name, cfg) {
			recs, err := runCase(ctx, e, clients, bc, logw)
			if err != nil {
				return nil, err
			}
			rp.Records = append(rp.Records, recs...)
		}
	}
	recs, err := runClusterScenarios(ctx, cfg, scenarios, logw)
	if err != nil {
		return nil, err
	}
	rp.Records = append(rp.Records, recs...)
	addSpeedups(rp.Records)
	rp.Elapsed = time.Since(rp.Started)
	rp.Machine.LoadAfter = loadAvg()
	return rp, nil
}

// runCase runs one case for every client and every repetition.
func runCase(ctx context.Context, e *env, clients []client, bc benchCase, logw io.Writer) ([]record, error) {
	return runReps(ctx, e, e.cfg.reps, clients, bc.scenario, bc.name, bc.run, logw)
}

// runReps runs a case for every client and every repetition, on one
// server or on the cluster. Each repetition starts with a different
// client, so that none always runs first after a flush or last on a
// warmed-up machine.
func runReps[E interface{ flush() error }, C interface{ Name() string }](ctx context.Context, e E, reps int, clients []C,
	scenario, name string, run func(context.Context, E, C) (sample, error), logw io.Writer) ([]record, error) {
	names := make([]string, len(clients))
	for i, c := range clients {
		names[i] = c.Name()
	}
	samples := make([][]sample, reps)
	for rep := range samples {
		samples[rep] = make([]sample, len(clients))
		for k := range clients {
			i := (rep + k) % len(clients)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := e.flush(); err != nil {
				return nil, err
			}
			s, err := run(ctx, e, clients[i])
			if err == nil && (s.ops <= 0 || s.dur <= 0) {
				err = fmt.Errorf("measured %d ops in %v", s.ops, s.dur)
			}
			if err != nil {
				return nil, fmt.Errorf("%s %s, %s, repetition %d: %w", scenario, name, names[i], rep+1, err)
			}
			samples[rep][i] = s
			fmt.Fprintf(logw, "%s %-15s %-9s rep %d/%d: %s ops/s\n", scenario, name, names[i], rep+1, reps,
				grouped(float64(s.ops)/s.dur.Seconds()))
		}
	}
	return aggregate(scenario, name, names, samples), nil
}

// runS7 runs redis-benchmark at every depth, with 50 connections and
// with one, the repetitions interleaved across depths, and reports each
// test at each depth as its own case ("set-P1000", "set-P1000-c1").
func runS7(ctx context.Context, e *env, logw io.Writer) ([]record, error) {
	type run struct{ depth, n, conns int }
	var runs []run
	for _, m := range []struct {
		ns    map[int]int
		conns int
	}{{e.cfg.s7N, 50}, {e.cfg.s7OneN, 1}} {
		depths := make([]int, 0, len(m.ns))
		for d := range m.ns {
			depths = append(depths, d)
		}
		slices.Sort(depths)
		for _, d := range depths {
			runs = append(runs, run{d, m.ns[d], m.conns})
		}
	}
	name := func(test string, r run) string {
		if r.conns == 1 {
			return fmt.Sprintf("%s-P%d-c1", test, r.depth)
		}
		return fmt.Sprintf("%s-P%d", test, r.depth)
	}
	samples := make(map[string][][]sample)
	for rep := range e.cfg.reps {
		for _, r := range runs {
			if err := e.flush(); err != nil {
				return nil, err
			}
			rps, err := runBenchmarkTool(ctx, e, r.depth, r.n, r.conns)
			if err != nil {
				return nil, fmt.Errorf("S7, repetition %d: %w", rep+1, err)
			}
			for _, t := range benchmarkTests {
				k := name(t, r)
				dur := time.Duration(float64(r.n) / rps[t] * float64(time.Second))
				samples[k] = append(samples[k], []sample{{ops: r.n, dur: dur}})
				fmt.Fprintf(logw, "S7 %-15s redis-benchmark rep %d/%d: %s ops/s\n", k, rep+1, e.cfg.reps, grouped(rps[t]))
			}
		}
	}
	var recs []record
	for _, r := range runs {
		for _, t := range benchmarkTests {
			recs = append(recs, aggregate("S7", name(t, r), []string{"redis-benchmark"}, samples[name(t, r)])...)
		}
	}
	return recs, nil
}

// infoField picks one "key:value" line out of an INFO reply.
func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return "unknown"
}
