package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// checkClusterHeadings fails the test unless every heading of the cluster
// walkthrough appears in out, in order.
func checkClusterHeadings(t *testing.T, out string) {
	t.Helper()
	rest := out
	for i, h := range clusterSections {
		j := strings.Index(rest, h)
		if j < 0 {
			t.Errorf("heading %d %q missing or out of order", i+1, h)
			continue
		}
		rest = rest[j+len(h):]
	}
}

// batchLine is a master's line in the split pipeline's section.
var batchLine = regexp.MustCompile(`(?m)^    (\S+)\s+slots \S+\s+(\d+) commands by slot, (\d+) counted by the node$`)

// mgetLine is a master's line in the split MGET's section.
var mgetLine = regexp.MustCompile(`(?m)^    \S+\s+(\d+) MGETs by slot, (\d+) counted by the node$`)

// checkBatches checks that the pipeline reached every one of the three
// masters, each with as many commands as its keys' slots say, and
// returns the masters' addresses.
func checkBatches(t *testing.T, out string) []string {
	t.Helper()
	lines := batchLine.FindAllStringSubmatch(out, -1)
	if len(lines) != 3 {
		t.Fatalf("want a batch line for each of 3 masters, got %d:\n%s", len(lines), out)
	}
	var addrs []string
	total := 0
	for _, l := range lines {
		bySlot, _ := strconv.Atoi(l[2])
		counted, _ := strconv.Atoi(l[3])
		if bySlot == 0 || bySlot != counted {
			t.Errorf("master %s: %d commands by slot, %d counted", l[1], bySlot, counted)
		}
		total += counted
		addrs = append(addrs, l[1])
	}
	if total != 2*len(users) {
		t.Errorf("the masters counted %d commands in all, want %d", total, 2*len(users))
	}
	return addrs
}

// `redpipe demo -cluster` without seeds starts a cluster, walks through
// every step, and stops the cluster.
func TestClusterDemo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"demo", "-cluster"}, func(string) string { return "" }, &stdout, &stderr)
	got := stdout.String()
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s\nstdout:\n%s", code, stderr.String(), got)
	}
	checkClusterHeadings(t, got)
	addrs := checkBatches(t, got)
	for _, want := range []string{
		" 2) GET redpipe:demo:user:1  ",
		"->  Ada",
		"18) GET redpipe:demo:user:9  ",
		"SADD redpipe:demo:{user1}:cart apple pear  ->  2",
		"INCRBY redpipe:demo:{user1}:total 7        ->  7",
		"->  [Ada Grace Alan Edsger Barbara Donald Frances John Margaret]\n",
		`error: redpipe: the keys of the transaction are in different hash slots ("redpipe:demo:user:1" in 9279, "redpipe:demo:user:2" in 5212)`,
		"; nothing was sent\n",
		`errors.As(err, &crossSlot): keys ["redpipe:demo:user:1" "redpipe:demo:user:2"] in slots [9279 5212]`,
		"errors.Is(err, redpipe.ErrNotApplied): true",
		"MULTI, SET and EXEC counted by the masters meanwhile (INFO commandstats): 0",
		"GET redpipe:demo:user:1  ->  Ada",
		": 1 refused with MOVED, 0 run; on ",
		": 0 refused with MOVED, 0 run; on ",
		"the second GET went straight to ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, m := range mgetLine.FindAllStringSubmatch(got, -1) {
		if m[1] != m[2] || m[1] == "0" {
			t.Errorf("MGETs by slot and counted differ: %q", m[0])
		}
	}
	if n := len(mgetLine.FindAllString(got, -1)); n != 3 {
		t.Errorf("%d MGET lines, want one per master:\n%s", n, got)
	}
	if strings.Contains(got, "other clients' commands") {
		t.Errorf("the throwaway cluster's counts are qualified as shared:\n%s", got)
	}
	if !strings.HasSuffix(got, "Stopped the throwaway cluster.\n") {
		t.Errorf("the cluster was not stopped:\n%s", got)
	}
	for _, addr := range addrs {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			nc.Close()
			t.Errorf("the throwaway master at %s still accepts connections", addr)
		}
	}
}

// A node of the throwaway cluster that ends during the walkthrough, as
// one the system kills when short of memory does, fails it with the
// client's error, which reads as a network fault; the command adds which
// node ended, with what it printed last.
func TestClusterDemoNodeEndsMidRun(t *testing.T) {
	var once sync.Once
	var out bytes.Buffer
	// Each write to the walkthrough's output is on its goroutine: at the
	// second step's heading, the first master is shut down.
	w := writerFunc(func(p []byte) (int, error) {
		out.Write(p)
		if strings.HasPrefix(string(p), "\n== 2.") {
			once.Do(func() {
				_, rest, _ := strings.Cut(out.String(), "Started it at ")
				addr, _, _ := strings.Cut(rest, ",")
				nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Errorf("dialing the first master at %q: %v", addr, err)
					return
				}
				defer nc.Close()
				io.WriteString(nc, "SHUTDOWN NOSAVE\r\n")
				nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				io.Copy(io.Discard, nc) // until the server closes it
			})
		}
		return len(p), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := runClusterDemo(ctx, clusterDemoConfig{Out: w})
	var stderr bytes.Buffer
	code := exitCode(ctx, "demo -cluster", err, &stderr)
	if got := stderr.String(); code != 1 || !strings.Contains(got, "node of the throwaway cluster at ") || !strings.Contains(got, "ended during the run") || !strings.Contains(got, "User requested shutdown") {
		t.Errorf("walkthrough whose master shut down = %d, want 1 and that the node ended, with its last lines; stderr:\n%s\nstdout:\n%s", code, got, out.String())
	}
}

// On a cluster of the user's, the walkthrough moves no slot, starts from
// a clean namespace and leaves none of its keys, nor touches others.
func TestClusterDemoOnUserCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 0)
	ctx := context.Background()
	c, err := redpipe.ConnectCluster(ctx, cl.Masters[0].URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A leftover of an interrupted run, which would make INCRBY say 107.
	if err := c.Set(ctx, totalKey, 100); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "user:data", "precious"); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"demo", "-cluster", cl.Masters[1].URL()}, func(string) string { return "" }, &stdout, &stderr)
	got := stdout.String()
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s\nstdout:\n%s", code, stderr.String(), got)
	}
	checkClusterHeadings(t, got)
	checkBatches(t, got)
	for _, want := range []string{
		"Using the cluster of redis://" + cl.Masters[1].Addr + ". Only keys under redpipe:demo: are touched, and no slot is moved.",
		"INCRBY redpipe:demo:{user1}:total 7        ->  7",
		"errors.Is(err, redpipe.ErrNotApplied): true",
		"(other clients' commands count too)",
		"Skipped: the demo moves no slot of a cluster it did not start.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "throwaway") {
		t.Errorf("the demo speaks of a throwaway cluster:\n%s", got)
	}

	if v, err := c.Get(ctx, "user:data"); err != nil || v != "precious" {
		t.Errorf("user key after the demo: %q, %v", v, err)
	}
	for _, key := range clusterDemoKeys() {
		if n, err := c.Exists(ctx, key); err != nil || n != 0 {
			t.Errorf("demo key %s left behind: EXISTS %d, %v", key, n, err)
		}
	}
	// Every master still serves the slots it started with.
	for i, m := range cl.Masters {
		lo := i * 16384 / 3
		if owner, err := cl.SlotOwner(lo); err != nil || owner != m {
			t.Errorf("slot %d: served by %v (%v), want %s", lo, owner, err, m.Addr)
		}
	}
}

// A seed that is a single server, not a cluster node, is refused with
// what to run on it instead.
func TestClusterDemoOnSingleServer(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"demo", "-cluster", srv.URL()}, func(string) string { return "" }, &stdout, &stderr)
	want := "A seed is a single server, not a node of a Redis Cluster: run redpipe demo with REDIS_URL set to its URL instead"
	if code != 1 || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit code %d, stderr:\n%s\nwant 1 and %q", code, stderr.String(), want)
	}
}

// A seed that cannot be reached ends the walkthrough with an error and
// exit code 1.
func TestClusterDemoUnreachableSeed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"demo", "-cluster", "redis://" + addr}, func(string) string { return "" }, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "redpipe demo -cluster: ") {
		t.Errorf("exit code %d, stderr %q; want 1 and the error", code, stderr.String())
	}
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_get:calls=3,usec=4,usec_per_call=1.33,rejected_calls=2,failed_calls=0\r\n" +
		"cmdstat_cluster|shards:calls=1,usec=90,usec_per_call=90.00,rejected_calls=0,failed_calls=0\r\n" +
		"not a stat line\r\n"
	got := parseCommandStats(info)
	if got["get"] != (cmdCount{calls: 3, rejected: 2}) || got["cluster|shards"] != (cmdCount{calls: 1}) || len(got) != 2 {
		t.Errorf("parseCommandStats = %+v", got)
	}
}
