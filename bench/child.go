package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/redpipe/redpipe/redistest"
)

// childMain runs one S6 measurement in this process, which was started by
// the parent with -child as its first argument, and prints a childReport.
// A process of its own per library is what makes the peak RSS (VmHWM)
// mean something: a shared process never gives memory back to a clean
// high-water mark. Other scenarios' children (childModes) are handed
// their arguments as they are.
func childMain(args []string) int {
	if len(args) > 1 {
		if child, ok := childModes[args[1]]; ok {
			return child(args)
		}
	}
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	scenario := fs.String("child", "", "the scenario to run (S6)")
	name := fs.String("client", "", "the library")
	addr := fs.String("addr", "", "the server's host:port")
	n := fs.Int("n", 0, "how many SETs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *scenario != "S6" || *n <= 0 || *addr == "" {
		fmt.Fprintf(os.Stderr, "child: want -child S6 -client NAME -addr HOST:PORT -n N, got %q\n", args)
		return 2
	}
	benchServer = &redistest.Server{Addr: *addr}
	r, err := childS6(context.Background(), *name, *addr, *n)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", *name, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", *name, err)
		return 1
	}
	return 0
}

func s6Key(i int) string { return "s6:" + strconv.Itoa(i) }

func childS6(ctx context.Context, name, addr string, n int) (childReport, error) {
	var r childReport
	c, err := openClient(ctx, name, addr)
	if err != nil {
		return r, err
	}
	defer c.Close()
	// The connection is warm and the keys exist before the clock starts:
	// the measurement is the library's work, not building key strings,
	// and base_rss tells how much of the peak was there before it.
	keys := make([]string, n)
	for i := range keys {
		keys[i] = s6Key(i)
	}
	if err := c.Set(ctx, keys[0], values16[0]); err != nil {
		return r, err
	}
	r.BaseRSSKiB = procStatusKiB("VmRSS")
	s, err := measure(func() (int, error) {
		return n, c.BulkSet(ctx, keys, values16[0])
	})
	if err != nil {
		return r, err
	}
	base := r.BaseRSSKiB
	r = s.childReport()
	r.PeakRSSKiB, r.BaseRSSKiB = procStatusKiB("VmHWM"), base
	runtime.KeepAlive(keys)
	return r, nil
}

// procStatusKiB reads one "Name:  123 kB" line of /proc/self/status, or 0
// where there is no such file.
func procStatusKiB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return v
	}
	return 0
}
