package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// haltPollPath holds, on a Linux guest whose idle CPUs use the haltpoll
// cpuidle driver, how long an idle CPU keeps polling for work before it
// halts. A halted virtual CPU is one the hypervisor must start again to
// wake a thread on it, which costs about as much as a loopback round
// trip: with the setting at 0 the host is in the slow-wake state, and
// with it at a few hundred microseconds in the fast one (see -haltpoll).
const haltPollPath = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"

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
