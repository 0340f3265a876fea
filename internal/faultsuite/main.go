// Command faultsuite runs redpipe against real redis-server processes
// under faults and checks that no fault makes the client hand a command
// another command's reply, apply a command twice, apply half a
// transaction, lose an acknowledged write, hang past a caller's deadline
// or leak goroutines or connections.
//
// The single-node phase (the default) puts a fault-injecting proxy between
// the client and one server, and kills the server every few seconds:
//
//	go run ./internal/faultsuite -duration 60s
//
// Its last line is always
//
//	faults: N injected, M commands checked, a misaligned, b duplicated, c half-applied, d hung, e leaked; partial replies checked: P (Q not sent)
//
// P counts the replies checked of pipelines whose connection failed
// partway, each checked as on success, and Q their commands the client
// said it never wrote, whose effects must be absent. It exits non-zero
// unless a to e are all zero and N, M and P reach the minimums, with Q
// above zero when P has one (by default 100 faults, 200,000 commands and
// one partial reply for runs of 60s or more, none for shorter runs).
//
// The cluster phase runs a cluster client against three masters with a
// replica each, moving slots between the masters all along and failing
// over a master every -failover-every, by turns gracefully and by killing
// it (it then rejoins as a replica), and closing the client's connections
// to a master that lives on every 700ms:
//
//	go run ./internal/faultsuite -phase cluster -duration 60s
//
// Its last line is always
//
//	cluster faults: N reshards, M failovers, K commands checked, a misordered, b lost, c duplicated, d hung; partial replies checked: P (Q not sent)
//
// P counts the replies checked of pipelines cut partway and of streams
// that stopped, and Q the commands the client said it never wrote, whose
// effects must be absent. It exits non-zero unless a to d are all zero
// and N, M, K and P reach the minimums, with some connection cut when P
// has one (by default 20 reshards, 4 failovers, 100,000 commands and one
// partial reply for runs of 60s or more, none for shorter runs).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	cfg := defaultConfig()
	ccfg := defaultClusterConfig()
	phase := flag.String("phase", "single", "single: one server behind a fault proxy; cluster: reshards and failovers of a cluster")
	flag.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long the workload runs under faults")
	flag.IntVar(&cfg.Workers, "workers", cfg.Workers, "concurrent workers (default 8 for the cluster phase)")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "random seed, printed so a run can be repeated")
	minFaults := flag.Int64("min-faults", -1, "faults that must be injected (default: 100 when -duration is 60s or more, else 0)")
	minCommands := flag.Int64("min-commands", -1, "commands that must be checked (default: 200000, or 100000 for the cluster phase, when -duration is 60s or more, else 0)")
	flag.DurationVar(&ccfg.FailoverEvery, "failover-every", ccfg.FailoverEvery, "cluster phase: time between two failovers")
	flag.IntVar(&ccfg.LargeEvery, "large-pipelines", 0, "cluster phase: one pipeline in this many has hundreds of commands, sent in several passes (0: none)")
	minReshards := flag.Int64("min-reshards", -1, "cluster phase: reshards that must be done (default: 20 when -duration is 60s or more, else 0)")
	minFailovers := flag.Int64("min-failovers", -1, "cluster phase: failovers that must be done (default: 4 when -duration is 60s or more, else 0)")
	minPartial := flag.Int64("min-partial", -1, "replies of pipelines cut partway that must be checked, with, in the single phase, some command of them said not sent, and in the cluster phase some connection cut from the server's side (default: 1 when -duration is 60s or more, else 0)")
	flag.Parse()
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }

	var last fmt.Stringer
	var problems []string
	var err error
	switch *phase {
	case "single":
		cfg.MinFaults, cfg.MinCommands, cfg.MinPartial = *minFaults, *minCommands, *minPartial
		if cfg.Duration >= 60*time.Second {
			cfg.MinFaults = orDefault(cfg.MinFaults, 100)
			cfg.MinCommands = orDefault(cfg.MinCommands, 200000)
			cfg.MinPartial = orDefault(cfg.MinPartial, 1)
		}
		cfg.MinFaults, cfg.MinCommands, cfg.MinPartial = max(cfg.MinFaults, 0), max(cfg.MinCommands, 0), max(cfg.MinPartial, 0)
		cfg.Log = logf
		var res result
		res, err = run(cfg)
		last, problems = res, res.problems(cfg)
	case "cluster":
		ccfg.Duration, ccfg.Seed, ccfg.Log = cfg.Duration, cfg.Seed, logf
		flag.Visit(func(f *flag.Flag) {
			if f.Name == "workers" {
				ccfg.Workers = cfg.Workers
			}
		})
		ccfg.MinReshards, ccfg.MinFailovers, ccfg.MinCommands, ccfg.MinPartial = *minReshards, *minFailovers, *minCommands, *minPartial
		if ccfg.Duration >= 60*time.Second {
			ccfg.MinReshards = orDefault(ccfg.MinReshards, 20)
			ccfg.MinFailovers = orDefault(ccfg.MinFailovers, 4)
			ccfg.MinCommands = orDefault(ccfg.MinCommands, 100000)
			ccfg.MinPartial = orDefault(ccfg.MinPartial, 1)
		}
		ccfg.MinReshards, ccfg.MinFailovers, ccfg.MinCommands = max(ccfg.MinReshards, 0), max(ccfg.MinFailovers, 0), max(ccfg.MinCommands, 0)
		ccfg.MinPartial = max(ccfg.MinPartial, 0)
		var res clusterResult
		res, err = runCluster(ccfg)
		last, problems = res, res.problems(ccfg)
	default:
		fmt.Fprintf(os.Stderr, "faultsuite: -phase must be single or cluster, not %q\n", *phase)
		os.Exit(2)
	}
	failed := false
	if err != nil {
		fmt.Fprintf(os.Stderr, "faultsuite: %v\n", err)
		failed = true
	}
	for _, p := range problems {
		fmt.Fprintf(os.Stderr, "faultsuite: FAIL: %s\n", p)
		failed = true
	}
	// Flushed after the problems so that it stays the last line when both
	// streams go to one terminal or file.
	os.Stderr.Sync()
	fmt.Println(last)
	if failed {
		os.Exit(1)
	}
}

// orDefault is n, or def when n was not given (negative).
func orDefault(n, def int64) int64 {
	if n < 0 {
		return def
	}
	return n
}
