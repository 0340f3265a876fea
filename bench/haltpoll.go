package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// haltPollPath holds, on a Linux guest whose idle CPUs use the haltpoll
// cpuidle driver, how long an idle CPU keeps polling for work before it
// halts. A halted virtual CPU is one the hypervisor must start again to
// wake a thread on it, which costs about as much as a loopback round
// trip: with the setting at 0 the host is in the slow-wake state, and
// with it at a few hundred microseconds in the fast one (see -haltpoll).
var haltPollPath = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"

// readHaltPoll reads the setting at path; ok is false when the machine
// has none.
func readHaltPoll(path string) (d time.Duration, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || ns < 0 {
		return 0, false
	}
	return time.Duration(ns), true
}

// parseHaltPoll reads a -haltpoll value: "" to leave the setting alone.
func parseHaltPoll(s string) (d time.Duration, set bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	d, err = time.ParseDuration(s)
	if err != nil || d < 0 || d > time.Second {
		return 0, false, fmt.Errorf("-haltpoll %q: want a duration from 0 to 1s, such as 200us (0 makes idle CPUs halt at once)", s)
	}
	return d, true, nil
}

// setHaltPoll sets the setting at path to d for the run; restore puts
// back what it was.
func setHaltPoll(path string, d time.Duration) (restore func() error, err error) {
	was, ok := readHaltPoll(path)
	if !ok {
		return nil, fmt.Errorf("-haltpoll: this machine has no guest halt-polling to set (%s cannot be read); it needs a Linux guest whose idle CPUs use the haltpoll cpuidle driver", path)
	}
	write := func(d time.Duration) error {
		return os.WriteFile(path, []byte(strconv.FormatInt(int64(d), 10)), 0o644)
	}
	if err := write(d); err != nil {
		return nil, fmt.Errorf("-haltpoll: setting %s: %w (it needs root)", path, err)
	}
	return func() error {
		if err := write(was); err != nil {
			return fmt.Errorf("-haltpoll: putting %s back to %d: %w", path, was.Nanoseconds(), err)
		}
		return nil
	}, nil
}

// haltPollSetEnv, set in the environment of the child that runs the
// benchmarks for -haltpoll, tells it that its parent set the guest's
// halt-polling for the run, for the report.
const haltPollSetEnv = "REDPIPE_BENCH_HALTPOLL_SET"

// runHaltPolled sets the guest's halt-polling at path to d, runs the
// benchmarks in a child process, this same binary with args (the flags
// but -haltpoll), and puts the setting back once the child has ended,
// however it ended; it returns the exit code. Why a child: the setting
// holds for the whole machine after the run, and every later run would
// be taken in a state its report does not say was set. In one process a
// panic in any goroutine but the main one (a client's, a scenario's) or a
// signal it does not catch (SIGTERM from a timeout or a cancelled job)
// ends it without its deferred calls, where here the child's end is all
// this process sees: it catches the signals that would end it, from
// before the setting changes until it is put back, and passes them on to
// the child. Only SIGKILL leaves the setting as -haltpoll made it.
func runHaltPolled(path string, d time.Duration, args []string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: -haltpoll: finding this program to run as its child:", err)
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	restore, err := setHaltPoll(path, d)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	exit := runSignalled(exe, args, sigs)
	if err := restore(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return max(exit, 1)
	}
	return exit
}

// runSignalled runs exe with args, its output this process's, passes on to
// it the signals that come on sigs, and returns its exit code once it
// has ended (1 if a signal ended it). An interrupt from the terminal
// reaches the child as well; the second it gets then changes nothing
// while the run is under way, which a first interrupt cancels.
func runSignalled(exe string, args []string, sigs <-chan os.Signal) int {
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), haltPollSetEnv+"=1")
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: -haltpoll: starting the run:", err)
		return 1
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case <-done:
			if code := cmd.ProcessState.ExitCode(); code >= 0 {
				return code
			}
			fmt.Fprintln(os.Stderr, "bench: the run ended:", cmd.ProcessState)
			return 1
		}
	}
}

// haltPollLine is the report's line on the setting, "" if the machine
// has none.
func haltPollLine(d time.Duration, known, set bool) string {
	if !known {
		return ""
	}
	how := "the machine's own"
	if set {
		how = "set for this run (-haltpoll; see `make bench-fastwake`)"
	}
	if d == 0 {
		return fmt.Sprintf("- guest halt-polling: off, %s: an idle CPU halts at once, and waking a thread on it needs the hypervisor (the slow-wake state)\n", how)
	}
	return fmt.Sprintf("- guest halt-polling: %v, %s: an idle CPU polls that long for work before it halts, so a thread on it wakes fast (the fast-wake state)\n", d, how)
}
