package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// TestMain lets the test binary stand in for the bench binary when S6
// re-executes itself as a child.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		os.Exit(childMain(os.Args[1:]))
	}
	if how := os.Getenv(haltPollEndEnv); how != "" {
		// The bench command as TestHaltPollRestoredHoweverTheRunEnds
		// runs it, its setting a file of the test's, its run ended as the
		// test says.
		haltPollPath = os.Getenv(haltPollFileEnv)
		runBench = func(config, string, string, string) error { return endedRun(how) }
		os.Exit(benchCLI())
	}
	os.Exit(m.Run())
}

func testConfig(t *testing.T) config {
	cfg := tinyConfig()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.exe = exe
	return cfg
}

// TestEveryScenarioTiny runs every scenario once, at small sizes, for all
// three libraries and redis-benchmark, so that the verification of each
// case is itself exercised against correct clients.
func TestEveryScenarioTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := testConfig(t)
	rp, err := run(ctx, cfg, scenarioNames, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string][]string)
	for _, r := range rp.Records {
		k := r.Scenario + " " + r.Case
		seen[k] = append(seen[k], r.Client)
		if !(r.OpsPerSec > 0) || !(r.NsPerOp > 0) || r.Reps != 1 {
			t.Errorf("%s %s: bad record %+v", k, r.Client, r)
		}
		if r.Scenario == "S8" {
			checkCostRecord(t, r)
			continue
		}
		if r.Client == "redis-benchmark" {
			continue
		}
		if r.AllocsPerOp == nil || r.BytesPerOp == nil || r.CPUNsPerOp == nil || (r.RatioVsBestPeer == nil) != (r.Scenario == "S6" || r.Client == ceilingName) {
			t.Errorf("%s %s: missing allocations or ratio: %+v", k, r.Client, r)
		}
		// A share of the run's time per server, with room for the
		// granularity of the counters; the C scenarios add up three.
		limit := 150.0
		if isClusterScenario(r.Scenario) {
			limit *= 3
		}
		if b := r.ServerBusyPct; b == nil || !(*b > 0 && *b <= limit) {
			t.Errorf("%s %s: server busy %v, want a share of the run's time", k, r.Client, fmtOpt(b, "%.1f%%"))
		}
		if w := r.ServerWaitPct; runtime.GOOS == "linux" && (w == nil || !(*w >= 0 && *w+*r.ServerBusyPct <= limit)) {
			t.Errorf("%s %s: server waiting %v, want a share of the run's time", k, r.Client, fmtOpt(w, "%.1f%%"))
		}
		if st := r.StealPct; runtime.GOOS == "linux" && (st == nil || !(*st >= 0 && *st <= 100)) {
			t.Errorf("%s %s: steal %v, want a share of the run's time", k, r.Client, fmtOpt(st, "%.1f%%"))
		}
		if (r.Scenario == "S6") != (r.PeakRSSMiB != nil) || (r.Scenario == "S6") != (r.RSSVsBestPeer != nil) {
			t.Errorf("%s %s: peak RSS is %v, against the best peer %v", k, r.Client, r.PeakRSSMiB, r.RSSVsBestPeer)
		}
		if (r.Case == "watch-contended" || r.Case == watchProcsCase(cfg)) != (r.Retries != nil) {
			t.Errorf("%s %s: retries is %v", k, r.Client, r.Retries)
		}
	}
	want := map[string]int{"S1 seq": 3, "S1 pipelined": 3, "S2 no-pipeline": 3, "S2 pipeline": 3,
		"S3 depth-10": 3, "S3 depth-100": 3, "S4 multi-10": 3, "S4 watch-contended": 3,
		"S5 g4": 3, "S5 g16": 3, "S6 pipeline-1m": 3,
		"S7 set-P1": 1, "S7 get-P1": 1, "S7 incr-P1": 1, "S7 set-P16": 1, "S7 get-P16": 1, "S7 incr-P16": 1,
		"S7 set-P100-c1": 1, "S7 get-P100-c1": 1, "S7 incr-P100-c1": 1,
		"S4 " + watchProcsCase(cfg): 3,
		"C1 pipeline-100":           4, "C2 g16": 3, "C3 mget-20": 4} // C1 and C3 with the no-work client
	for _, sp := range costSpecs(cfg.cost) {
		want["S8 "+sp.name] = 3
		if sp.every > 0 || sp.idle {
			want["S8 "+sp.name]++ // the run with no client
		}
	}
	for k, n := range want {
		if len(seen[k]) != n {
			t.Errorf("%s: records for %v, want %d clients", k, seen[k], n)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("cases %v, want %d of them", seen, len(want))
	}
	md := rp.markdown()
	for _, s := range []string{"| S1 | seq | redpipe |", "## S1: one pipeline", "## Where redpipe is behind", "## Figures behind design choices", "redis-server 7.",
		"## S8: client CPU time and latency per call", "| every-1ms | no-client |", "## S4 watch-3proc", "## S6: bound by the server", "S8 runs every library",
		"| C1 | pipeline-100 | redpipe |", "## Cluster scenarios (C1–C3)", "| C3 | mget-20 | ", "| C3 | mget-20 | no-work client |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

// liar is a client that is fast because it is wrong: it skips work or
// returns made-up answers. Every case must catch it.
type liar struct{ client }

func (l liar) Incr(ctx context.Context, key string) (int64, error) {
	v, err := l.client.Incr(ctx, key)
	if v > 3 {
		v++ // right at first, wrong later
	}
	return v, err
}

func (l liar) Get(ctx context.Context, key string) (string, error) {
	v, err := l.client.Get(ctx, key)
	return strings.ToUpper(v), err
}

func (l liar) PipelineIncr(ctx context.Context, key string, n int) (int64, error) {
	return int64(n), nil
}
func (l liar) PipelineSetGet(ctx context.Context, keys, vals []string) error { return nil }
func (l liar) PipelineSet(ctx context.Context, keys []string, val string) error {
	return l.client.PipelineSet(ctx, keys[:len(keys)-1], val)
}
func (l liar) BulkSet(ctx context.Context, keys []string, val string) error {
	return l.client.BulkSet(ctx, keys[1:], val)
}
func (l liar) MultiIncr(ctx context.Context, key string, n int) (int64, error) {
	return l.client.MultiIncr(ctx, key, n-1)
}
func (l liar) WatchIncr(ctx context.Context, key string) (int, error) { return 0, nil }
func (l liar) Concurrent() (client, error)                            { return l, nil }

func TestVerificationCatchesWrongAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := redistest.Start(t)
	e := &env{cfg: testConfig(t), srv: srv}
	c, err := openClient(ctx, "redpipe", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, name := range []string{"S1", "S2", "S3", "S4", "S5"} {
		for _, bc := range cases(name, e.cfg) {
			if bc.name == watchProcsCase(e.cfg) {
				continue // its processes have clients of their own: TestWatchProcsCheck
			}
			if err := e.flush(); err != nil {
				t.Fatal(err)
			}
			if _, err := bc.run(ctx, e, liar{c}); err == nil {
				t.Errorf("%s %s: a lying client passed", bc.scenario, bc.name)
			} else {
				t.Logf("%s %s: %v", bc.scenario, bc.name, err)
			}
		}
	}
}

func TestAggregateRatiosAndSpread(t *testing.T) {
	s := func(ops int, ms int) sample {
		return sample{ops: ops, dur: time.Duration(ms) * time.Millisecond, hasMem: true, allocs: uint64(2 * ops)}
	}
	// Three repetitions of two libraries and a reference (the no-work
	// client); b is twice as fast as a in each, while the machine's speed
	// changes between repetitions. The reference, faster than both, is
	// no peer: it gets no ratio, and the libraries' are to each other.
	recs := aggregate("SX", "c", []string{"redpipe", "rueidis", ceilingName}, [][]sample{
		{s(100, 100), s(200, 100), s(800, 100)},
		{s(100, 50), s(200, 50), s(800, 50)},
		{s(100, 200), s(200, 200), s(800, 200)},
	})
	a, b := recs[0], recs[1]
	if recs[2].RatioVsBestPeer != nil {
		t.Errorf("the no-work client has a ratio to the best peer: %v", *recs[2].RatioVsBestPeer)
	}
	if a.OpsPerSec != 1000 || a.MinOpsPerSec != 500 || a.MaxOpsPerSec != 2000 {
		t.Errorf("a: %+v", a)
	}
	if *a.RatioVsBestPeer != 0.5 || *b.RatioVsBestPeer != 2 || *a.AllocsPerOp != 2 {
		t.Errorf("ratios %v %v, allocs %v", *a.RatioVsBestPeer, *b.RatioVsBestPeer, *a.AllocsPerOp)
	}
	js, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(js, &fields); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"scenario", "case", "client", "ops_per_sec", "ns_per_op", "allocs_per_op",
		"bytes_per_op", "peak_rss_mib", "ratio_vs_best_peer"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("JSON record lacks %q: %s", f, js)
		}
	}
	if median([]float64{3, 1, 2, 10}) != 2.5 || !slices.Equal(mustParse(t, "s3,S1"), []string{"S1", "S3"}) {
		t.Error("median or scenario parsing is off")
	}
}

func mustParse(t *testing.T, s string) []string {
	t.Helper()
	out, err := parseScenarios(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPollWaitFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "-1": -1, "off": -1, "50us": 50 * time.Microsecond} {
		if got, err := parsePollWait(in); err != nil || got != want {
			t.Errorf("parsePollWait(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-5ms", "fast"} {
		if _, err := parsePollWait(in); err == nil || !strings.Contains(err.Error(), "-pollwait") {
			t.Errorf("parsePollWait(%q) = %v, want an error naming -pollwait", in, err)
		}
	}
}

func TestReportSaysWhenPinned(t *testing.T) {
	if n := onlineCPUs(); n < runtime.NumCPU() {
		t.Errorf("onlineCPUs() = %d, fewer than the %d this process may use", n, runtime.NumCPU())
	}
	for _, tc := range []struct {
		cpus, all int
		pollWait  string
		pinned    bool
	}{{1, 2, "", true}, {2, 2, "-1", false}} {
		rp := &report{Machine: machine{CPUs: tc.cpus, AllCPUs: tc.all}, PollWait: tc.pollWait}
		md := rp.markdown()
		if got := strings.Contains(md, "- pinned: "); got != tc.pinned {
			t.Errorf("%d of %d CPUs: pinned line %v, want %v", tc.cpus, tc.all, got, tc.pinned)
		}
		if got := strings.Contains(md, "PollWait set to -1"); got != (tc.pollWait != "") {
			t.Errorf("-pollwait %q: PollWait line %v", tc.pollWait, got)
		}
	}
}

// TestHaltPollFlag: -haltpoll takes a duration from 0 to 1s; setting it
// writes the guest's setting in nanoseconds and restoring puts back what
// was there; a machine without the setting gets an error that says what
// the flag needs, and nothing is written.
func TestHaltPollFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{"200us": 200 * time.Microsecond, "0": 0, "1s": time.Second} {
		if got, set, err := parseHaltPoll(in); err != nil || !set || got != want {
			t.Errorf("parseHaltPoll(%q) = %v, %v, %v; want %v", in, got, set, err, want)
		}
	}
	if _, set, err := parseHaltPoll(""); set || err != nil {
		t.Errorf(`parseHaltPoll("") = %v, %v; want it left alone`, set, err)
	}
	for _, in := range []string{"-1us", "2s", "fast", "200"} {
		if _, _, err := parseHaltPoll(in); err == nil || !strings.Contains(err.Error(), "-haltpoll") {
			t.Errorf("parseHaltPoll(%q) = %v, want an error naming -haltpoll", in, err)
		}
	}

	path := filepath.Join(t.TempDir(), "guest_halt_poll_ns")
	if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	restore, err := setHaltPoll(path, 200*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := readHaltPoll(path); !ok || d != 200*time.Microsecond {
		t.Fatalf("after -haltpoll 200us the setting reads %v, %v", d, ok)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if d, ok := readHaltPoll(path); !ok || d != 0 {
		t.Fatalf("after the run the setting reads %v, %v; want it back at 0", d, ok)
	}

	missing := filepath.Join(t.TempDir(), "none")
	if _, err := setHaltPoll(missing, time.Millisecond); err == nil || !strings.Contains(err.Error(), "haltpoll cpuidle driver") {
		t.Fatalf("setHaltPoll on a machine without the setting = %v, want an error that says what it needs", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("setHaltPoll wrote %s on a machine without the setting: %v", missing, err)
	}
}

// TestReportSaysHaltPoll: the report says the guest's halt-polling, and
// which state it puts the host in, when the machine has the setting, and
// whether -haltpoll set it.
func TestReportSaysHaltPoll(t *testing.T) {
	for _, tc := range []struct {
		m         machine
		set       bool
		want, not string
	}{
		{machine{HaltPollKnown: true}, false, "- guest halt-polling: off, the machine's own", "fast-wake"},
		{machine{HaltPollKnown: true, HaltPoll: 200 * time.Microsecond}, true, "- guest halt-polling: 200µs, set for this run", "slow-wake"},
		{machine{}, false, "", "- guest halt-polling"},
	} {
		md := (&report{Machine: tc.m, HaltPollSet: tc.set}).markdown()
		line := ""
		for _, l := range strings.Split(md, "\n") {
			if strings.HasPrefix(l, "- guest halt-polling") {
				line = l
			}
		}
		if !strings.HasPrefix(line, tc.want) || tc.not != "" && strings.Contains(line, tc.not) {
			t.Errorf("%+v, set %v: the report's line %q, want it to start %q without %q", tc.m, tc.set, line, tc.want, tc.not)
		}
	}
}

// The environment of the bench command that
// TestHaltPollRestoredHoweverTheRunEnds runs: how its run ends, the file
// that stands for the guest's setting, and the file its run creates once
// it is under way.
const (
	haltPollEndEnv     = "REDPIPE_BENCH_TEST_RUN_ENDS"
	haltPollFileEnv    = "REDPIPE_BENCH_TEST_HALTPOLL_FILE"
	haltPollStartedEnv = "REDPIPE_BENCH_TEST_STARTED"
)

// endedRun stands in for the benchmarks: it checks that the setting is
// the one -haltpoll asked for, says it is under way, and ends as how
// says: an error, a panic off the main goroutine (as a client's would
// be), or waiting for the test's signal.
func endedRun(how string) error {
	if d, ok := readHaltPoll(haltPollPath); !ok || d != 200*time.Microsecond {
		return fmt.Errorf("SETTING NOT APPLIED: it reads %v, %v during the run", d, ok)
	}
	if err := os.WriteFile(os.Getenv(haltPollStartedEnv), nil, 0o644); err != nil {
		return err
	}
	switch how {
	case "error":
		return errors.New("the run failed")
	case "panic":
		go panic("a client panicked")
	}
	time.Sleep(30 * time.Second) // the signal comes first
	return errors.New("no signal came")
}

// TestHaltPollRestoredHoweverTheRunEnds: the guest's halt-polling that
// -haltpoll set is put back however the run ends: an error, a panic in
// any goroutine, an interrupt, SIGTERM (a timeout, a CI job cancelled)
// or SIGQUIT, where the command exits non-zero.
func TestHaltPollRestoredHoweverTheRunEnds(t *testing.T) {
	for _, how := range []string{"error", "panic", "interrupt", "SIGTERM", "SIGQUIT"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			path, started := filepath.Join(dir, "guest_halt_poll_ns"), filepath.Join(dir, "started")
			if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-haltpoll", "200us", "-reps", "1")
			cmd.Env = append(os.Environ(), haltPollEndEnv+"="+how, haltPollFileEnv+"="+path, haltPollStartedEnv+"="+started)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			if sig := map[string]os.Signal{"interrupt": os.Interrupt, "SIGTERM": syscall.SIGTERM, "SIGQUIT": syscall.SIGQUIT}[how]; sig != nil {
				for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					if _, err := os.Stat(started); err == nil {
						break
					}
					select {
					case err := <-exited:
						t.Fatalf("the command exited (%v) before its run began:\n%s", err, out.String())
					default:
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatalf("the run did not begin:\n%s", out.String())
					}
				}
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
			}
			var werr error
			select {
			case werr = <-exited:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				t.Fatalf("the command did not exit:\n%s", out.String())
			}
			if werr == nil {
				t.Errorf("the command exited 0 after its run ended by %s", how)
			}
			if strings.Contains(out.String(), "SETTING NOT APPLIED") {
				t.Errorf("the run did not see the setting -haltpoll asked for:\n%s", out.String())
			}
			if d, ok := readHaltPoll(path); !ok || d != 0 {
				t.Fatalf("after a run ended by %s the setting reads %v, %v; want it back at 0 (the command: %v)\n%s", how, d, ok, werr, out.String())
			}
		})
	}
}
