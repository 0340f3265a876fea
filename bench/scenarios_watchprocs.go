package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// S4's cross-process watch case: watchProcs processes, each with a client
// of its own and one goroutine, increment one counter with WATCH, GET,
// MULTI, SET, EXEC. Unlike watch-contended, where the goroutines share
// one client, nothing in a library can take turns between them: only the
// server's conflicts and each library's retry loop decide who commits.

func watchProcsCase(cfg config) string { return fmt.Sprintf("watch-%dproc", cfg.cost.watchProcs) }

// watchChildArg is the -child value of a process of this case.
const watchChildArg = "S4-watch"

// watchReport is what one process prints when it is done.
type watchReport struct {
	Committed int    `json:"committed"`
	Retries   int    `json:"retries"`
	CPUNanos  int64  `json:"cpu_ns"`
	Allocs    uint64 `json:"allocs"`
	Bytes     uint64 `json:"bytes"`
}

// watchProc is one running process of the case, seen from the parent.
type watchProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer
}

// runS4WatchProcs starts the processes, waits until every one has
// connected, starts them all at once by closing their standard input, and
// measures from then until the last has reported. The counter must end
// at the number of committed transactions, which must be what was asked.
func runS4WatchProcs(ctx context.Context, e *env, c client) (s sample, err error) {
	procs, each := e.cfg.cost.watchProcs, e.cfg.watchN
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ps []*watchProc
	defer func() {
		// On failure the cancel kills what still runs; either way every
		// process is waited for, and what they said on stderr is kept.
		if err != nil {
			cancel()
		}
		var said []string
		for i, p := range ps {
			p.stdin.Close()
			if werr := p.cmd.Wait(); werr != nil && err == nil {
				err = fmt.Errorf("process %d: %w", i, werr)
			}
			if m := strings.TrimSpace(p.stderr.String()); m != "" {
				said = append(said, fmt.Sprintf("process %d: %s", i, m))
			}
		}
		if err != nil && len(said) > 0 {
			err = fmt.Errorf("%w (%s)", err, strings.Join(said, "; "))
		}
	}()
	for range procs {
		p := &watchProc{cmd: exec.CommandContext(ctx, e.cfg.exe, "-child", watchChildArg, "-client", c.Name(),
			"-addr", e.srv.Addr, "-key", s4Key, "-n", strconv.Itoa(each))}
		p.cmd.Stderr = &p.stderr
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			return s, err
		}
		stdout, err := p.cmd.StdoutPipe()
		if err != nil {
			return s, err
		}
		p.out = bufio.NewReader(stdout)
		if err := p.cmd.Start(); err != nil {
			return s, err
		}
		ps = append(ps, p)
	}
	for i, p := range ps {
		if line, err := p.out.ReadString('\n'); err != nil || line != "ready\n" {
			return s, fmt.Errorf("process %d said %q before starting: %v", i, line, err)
		}
	}
	reports := make([]watchReport, procs)
	s, err = measure(func() (int, error) {
		for _, p := range ps {
			p.stdin.Close()
		}
		for i, p := range ps {
			line, err := p.out.ReadBytes('\n')
			if err == nil {
				err = json.Unmarshal(line, &reports[i])
			}
			if err != nil {
				return 0, fmt.Errorf("process %d reported %q: %w", i, line, err)
			}
		}
		return 0, nil
	})
	if err != nil {
		return s, err
	}
	// The parent's CPU and allocations are not the libraries'; the
	// processes' sums are.
	s.cpu, s.allocs, s.bytes, s.ops, s.retries, s.hasRet = 0, 0, 0, 0, 0, true
	for _, r := range reports {
		s.cpu += time.Duration(r.CPUNanos)
		s.allocs += r.Allocs
		s.bytes += r.Bytes
		s.ops += r.Committed
		s.retries += r.Retries
	}
	return s, checkWatchProcs(e, reports, procs*each)
}

// checkWatchProcs checks that the processes committed want transactions
// in all and that the counter on the server says the same.
func checkWatchProcs(e *env, reports []watchReport, want int) error {
	total := 0
	for _, r := range reports {
		total += r.Committed
	}
	if total != want {
		return fmt.Errorf("processes committed %d transactions, want %d", total, want)
	}
	return e.expectGet(s4Key, strconv.Itoa(total))
}

// watchChildMain is one process of the case: it connects, says "ready",
// waits for its standard input to close, increments -n times and prints a
// watchReport.
func watchChildMain(args []string) int {
	fs := flag.NewFlagSet("child "+watchChildArg, flag.ContinueOnError)
	fs.String("child", "", watchChildArg)
	name := fs.String("client", "", "the library")
	addr := fs.String("addr", "", "the server's host:port")
	key := fs.String("key", "", "the counter")
	n := fs.Int("n", 0, "how many increments to commit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" || *key == "" || *n <= 0 {
		fmt.Fprintf(os.Stderr, "child: want -child %s -client NAME -addr HOST:PORT -key KEY -n N, got %q\n", watchChildArg, args)
		return 2
	}
	err := watchChild(context.Background(), *name, *addr, *key, *n, os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", *name, err)
		return 1
	}
	return 0
}

func watchChild(ctx context.Context, name, addr, key string, n int, start io.Reader, out io.Writer) error {
	c, err := openClient(ctx, name, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	// A first command on another key, so that the connection is made
	// before the start.
	if err := c.Set(ctx, key+":ready", "1"); err != nil {
		return err
	}
	runtime.GC()
	if _, err := io.WriteString(out, "ready\n"); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, start); err != nil {
		return err
	}
	r, err := watchIncrements(ctx, c, key, n)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(r)
}

// watchIncrements commits n increments of key, each through the
// library's retry loop, and measures the process's CPU time and
// allocations meanwhile.
func watchIncrements(ctx context.Context, c client, key string, n int) (watchReport, error) {
	var r watchReport
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := cpuTime()
	for range n {
		retries, err := c.WatchIncr(ctx, key)
		r.Retries += retries
		if err != nil {
			return r, err
		}
		r.Committed++
	}
	r.CPUNanos = (cpuTime() - cpu0).Nanoseconds()
	runtime.ReadMemStats(&after)
	r.Allocs, r.Bytes = after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc
	return r, nil
}
