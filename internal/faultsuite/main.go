// Command faultsuite runs redpipe against a real redis-server behind a
// fault-injecting proxy and checks that no fault makes the client hand a
// command another command's reply, apply a command twice, apply half a
// transaction, hang past a caller's deadline or leak goroutines or
// connections.
//
//	go run ./internal/faultsuite -duration 60s
//
// Its last line is always
//
//	faults: N injected, M commands checked, a misaligned, b duplicated, c half-applied, d hung, e leaked
//
// and it exits non-zero unless a to e are all zero and N and M reach the
// minimums (by default 100 faults and 200,000 commands for runs of 60s or
// more, none for shorter runs).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	cfg := defaultConfig()
	flag.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long the workload runs under faults")
	flag.IntVar(&cfg.Workers, "workers", cfg.Workers, "concurrent workers")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "random seed, printed so a run can be repeated")
	minFaults := flag.Int64("min-faults", -1, "faults that must be injected (default: 100 when -duration is 60s or more, else 0)")
	minCommands := flag.Int64("min-commands", -1, "commands that must be checked (default: 200000 when -duration is 60s or more, else 0)")
	flag.Parse()

	cfg.MinFaults, cfg.MinCommands = *minFaults, *minCommands
	if cfg.Duration >= 60*time.Second {
		if cfg.MinFaults < 0 {
			cfg.MinFaults = 100
		}
		if cfg.MinCommands < 0 {
			cfg.MinCommands = 200000
		}
	}
	cfg.MinFaults, cfg.MinCommands = max(cfg.MinFaults, 0), max(cfg.MinCommands, 0)
	cfg.Log = func(format string, args ...any) { fmt.Printf(format+"\n", args...) }

	res, err := run(cfg)
	failed := false
	if err != nil {
		fmt.Fprintf(os.Stderr, "faultsuite: %v\n", err)
		failed = true
	}
	for _, p := range res.problems(cfg) {
		fmt.Fprintf(os.Stderr, "faultsuite: FAIL: %s\n", p)
		failed = true
	}
	// Flushed after the problems so that it stays the last line when both
	// streams go to one terminal or file.
	os.Stderr.Sync()
	fmt.Println(res)
	if failed {
		os.Exit(1)
	}
}
