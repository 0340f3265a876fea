package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// checkHeadings fails the test unless every section heading appears in
// out, in order.
func checkHeadings(t *testing.T, out string) {
	t.Helper()
	rest := out
	for i, h := range sections {
		j := strings.Index(rest, h)
		if j < 0 {
			t.Errorf("heading %d %q missing or out of order", i+1, h)
			continue
		}
		rest = rest[j+len(h):]
	}
}

// The full demo on a server that is ours to flush, with the seed's 100,000
// INCRs, as `redpipe demo` runs without REDIS_URL.
func TestDemo(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c, err := redpipe.Connect(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var out, progress bytes.Buffer
	d := &demo{c: c, w: &out, disposable: true, cfg: demoConfig{
		Incrs: 100_000, Out: &out, Progress: &progress,
	}}
	if err := d.run(ctx); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	got := out.String()
	checkHeadings(t, got)
	if n := strings.Count(got, "Increment value:  100000\n"); n != 2 {
		t.Errorf("want 2 lines %q, got %d:\n%s", "Increment value:  100000", n, got)
	}
	for _, want := range []string{
		"Without pipeline\n================\nTime taken:  ",
		"With pipeline\n=============\nTime taken:  ",
		"Speedup: ",
		"replies: [OK baz]",
		"replies: [OK 1 1]",
		"FLUSHDB",
		"[redpipe:demo:bar redpipe:demo:foo]",
		"round 2: EXEC  ->  [OK]",
		"Transaction executed. Results: [90 60]",
		"Insufficient funds. Transaction aborted.",
		"Value of redpipe:demo:key_pipe_999: value_999",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// Without a terminal the bar still reports, one plain line at a time.
	if p := progress.String(); strings.Contains(p, "\r") || !strings.Contains(p, "100000/100000") {
		t.Errorf("progress output on a non-terminal: %q", p)
	}
}

// On a server given by REDIS_URL the demo must leave other data alone:
// no FLUSHDB, and none of its own keys left behind.
func TestDemoOnUserServer(t *testing.T) {
	srv := redistest.Start(t)
	if _, err := srv.Do("SET", "user:data", "precious"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := runDemo(context.Background(), demoConfig{
		URL: srv.URL(), Incrs: 1000, Out: &out, Progress: &bytes.Buffer{},
	})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	got := out.String()
	checkHeadings(t, got)
	if strings.Contains(got, "1) FLUSHDB") {
		t.Errorf("demo flushed a server it did not start:\n%s", got)
	}
	if !strings.Contains(got, "no FLUSHDB, DEL of the demo keys instead") {
		t.Errorf("demo does not say it skipped FLUSHDB:\n%s", got)
	}
	if n := strings.Count(got, "Increment value:  1000\n"); n != 2 {
		t.Errorf("want 2 increment lines of 1000, got %d:\n%s", n, got)
	}
	if v, err := srv.Do("GET", "user:data"); err != nil || v != "precious" {
		t.Errorf("user key after the demo: %v, %v", v, err)
	}
	if v, err := srv.Do("KEYS", prefix+"*"); err != nil || len(v.([]any)) != 0 {
		t.Errorf("demo keys left behind: %v, %v", v, err)
	}
}

// A REDIS_URL naming a cluster node is refused before anything runs, with
// a message that says so, rather than failing partway on MOVED or
// CROSSSLOT.
func TestClusterNodeInRedisURLIsRefused(t *testing.T) {
	srv := redistest.Start(t, "--cluster-enabled", "yes")
	refusedBeforeSteps(t, srv.URL(), "is a node of a Redis Cluster", "demo -cluster")
}

// A REDIS_URL naming a replica is refused before anything runs, with a
// message that names its master, rather than failing at the first write
// with READONLY. The replica's data is left as it was.
func TestReplicaInRedisURLIsRefused(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	refusedBeforeSteps(t, replica.URL(),
		"is a read-only replica, and this command writes; give REDIS_URL the URL of its master, "+master.Addr+", instead")
}

// refusedBeforeSteps runs demo and bench with REDIS_URL set to url and
// checks that each fails with every one of wants in its error, before its
// first step, and that the bench writes no chart.
func refusedBeforeSteps(t *testing.T, url string, wants ...string) {
	t.Helper()
	getenv := func(name string) string {
		if name == "REDIS_URL" {
			return url
		}
		return ""
	}
	chart := filepath.Join(t.TempDir(), "chart.svg")
	for _, args := range [][]string{
		{"demo"},
		{"bench", "-n", "10", "-depths", "1", "-duration", "10ms", "-out", chart},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, getenv, &stdout, &stderr)
		if code != 1 {
			t.Errorf("run(%q) = %d, want 1; stderr:\n%s", args, code, stderr.String())
		}
		for _, want := range wants {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("run(%q): stderr does not say %q:\n%s", args, want, stderr.String())
			}
		}
		if strings.Contains(stdout.String(), "== 1.") || strings.Contains(stdout.String(), "one by one") {
			t.Errorf("run(%q) started its steps:\n%s", args, stdout.String())
		}
	}
	if _, err := os.Stat(chart); err == nil {
		t.Errorf("the bench wrote a chart")
	}
}

// A REDIS_URL or seed URL that cannot be parsed is refused before the
// command says it uses it, and the refusal of a seed does not speak of
// REDIS_URL, which demo -cluster does not read.
func TestUnparsableURLs(t *testing.T) {
	chart := filepath.Join(t.TempDir(), "chart.svg")
	for _, tc := range []struct {
		redisURL string
		args     []string
	}{
		{"redis://127.0.0.1:1 x", []string{"demo"}},
		{"redis://127.0.0.1:1 x", []string{"bench", "-out", chart}},
		{" ", []string{"demo", "-cluster", "redis://127.0.0.1:1 x"}},
		{"", []string{"demo", "-cluster", "redis://127.0.0.1:1", "redis://127.0.0.1:2 x"}},
	} {
		var stdout, stderr bytes.Buffer
		getenv := func(name string) string {
			if name == "REDIS_URL" {
				return tc.redisURL
			}
			return ""
		}
		code := run(context.Background(), tc.args, getenv, &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), "cannot be parsed") {
			t.Errorf("run(%q) with REDIS_URL %q = %d, stderr:\n%s", tc.args, tc.redisURL, code, stderr.String())
		}
		if out := stdout.String(); strings.Contains(out, "Using") || strings.Contains(out, "REDIS_URL") {
			t.Errorf("run(%q) with REDIS_URL %q announced the server:\n%s", tc.args, tc.redisURL, out)
		}
		if len(tc.args) > 3 && !strings.Contains(stderr.String(), "seed 2 of 2") {
			t.Errorf("run(%q) does not say which seed:\n%s", tc.args, stderr.String())
		}
	}
}

// Spaces or a line end around REDIS_URL, as a file it was read from may
// leave, are not part of the URL; nothing but spaces is no URL at all,
// and a throwaway server is used.
func TestRedisURLSpaces(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		redisURL, want string
	}{
		{" " + srv.URL() + "\n", "Using REDIS_URL=" + srv.URL() + "."},
		{" \t\n", "REDIS_URL is not set: using a throwaway redis-server"},
	} {
		chart := filepath.Join(t.TempDir(), "chart.svg")
		var stdout, stderr bytes.Buffer
		getenv := func(name string) string {
			if name == "REDIS_URL" {
				return tc.redisURL
			}
			return ""
		}
		args := []string{"bench", "-n", "10", "-depths", "1", "-duration", "10ms", "-out", chart}
		if code := run(context.Background(), args, getenv, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("bench with REDIS_URL %q = %d, want 0 and %q; stdout:\n%s\nstderr:\n%s", tc.redisURL, code, tc.want, stdout.String(), stderr.String())
		}
	}
}

// A server that needs a password, given a URL without one or with a wrong
// one, is refused with the server's words and how to give the password in
// the URL, for REDIS_URL and for the seeds of demo -cluster alike.
func TestPasswordHints(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "sekret")
	node := redistest.Start(t, "--cluster-enabled", "yes", "--requirepass", "sekret")
	wrong := func(s *redistest.Server) string { return "redis://:wrong@" + s.Addr }
	const (
		needs   = "The server needs a password: give it in "
		refused = "The server refused the user name or password in "
	)
	for _, tc := range []struct {
		redisURL string
		args     []string
		want     string
	}{
		{srv.URL(), []string{"demo"}, needs + "REDIS_URL, as redis://:PASSWORD@host:port"},
		{wrong(srv), []string{"demo"}, refused + "REDIS_URL"},
		{"", []string{"demo", "-cluster", node.URL()}, needs + "the seed URLs, as redis://:PASSWORD@host:port"},
		{"", []string{"demo", "-cluster", wrong(node)}, refused + "the seed URLs"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var stdout, stderr bytes.Buffer
		getenv := func(name string) string {
			if name == "REDIS_URL" {
				return tc.redisURL
			}
			return ""
		}
		code := run(ctx, tc.args, getenv, &stdout, &stderr)
		cancel()
		if code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) with REDIS_URL %q = %d, want 1 and %q; stderr:\n%s", tc.args, tc.redisURL, code, tc.want, stderr.String())
		}
	}
}

// A rediss:// server whose certificate a private CA signed fails the
// handshake with crypto/tls's words, which say what failed but not how
// to trust that CA: the command adds how, for REDIS_URL and for the
// seed URLs of demo -cluster alike.
func TestTLSUnknownAuthorityHint(t *testing.T) {
	_, tlsAddr := startTLSServer(t, newTLSFiles(t))
	url := "rediss://" + tlsAddr
	for _, tc := range []struct {
		args     []string
		redisURL string
	}{
		{[]string{"demo"}, url},
		{[]string{"demo", "-cluster", url}, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, func(k string) string {
			if k == "REDIS_URL" {
				return tc.redisURL
			}
			return ""
		}, &stdout, &stderr)
		got := stderr.String()
		if code != 1 || !strings.Contains(got, "unknown authority") || !strings.Contains(got, "set SSL_CERT_FILE to that authority's certificate") {
			t.Errorf("run(%q) with REDIS_URL %q = %d, want 1 and a hint naming SSL_CERT_FILE; stderr:\n%s", tc.args, tc.redisURL, code, got)
		}
	}
}

// Without redis-server installed, a command that needs a throwaway server
// says how to install it and what to give instead, in words for a user of
// the command rather than for a test of the module.
func TestWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	chart := filepath.Join(t.TempDir(), "chart.svg")
	for _, tc := range []struct {
		args    []string
		instead string
	}{
		{[]string{"demo"}, "or set REDIS_URL to a server you have"},
		{[]string{"demo", "-cluster"}, "or give the seed URLs of a cluster you have"},
		{[]string{"bench", "-out", chart}, "or set REDIS_URL to a server you have"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, func(string) string { return "" }, &stdout, &stderr)
		got := stderr.String()
		if code != 1 || !strings.Contains(got, "redis-server is not installed") ||
			!strings.Contains(got, "apt-get install redis-server") || !strings.Contains(got, tc.instead) ||
			strings.Contains(got, "make test") {
			t.Errorf("run(%q) without redis-server = %d, stderr:\n%s", tc.args, code, got)
		}
	}
}

// Without REDIS_URL the demo starts its own server and stops it again.
func TestDemoThrowawayServerStops(t *testing.T) {
	var out bytes.Buffer
	err := runDemo(context.Background(), demoConfig{Incrs: 1000, Out: &out, Progress: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	got := out.String()
	_, rest, ok := strings.Cut(got, "throwaway redis-server at redis://")
	addr, _, _ := strings.Cut(rest, ",")
	if !ok || addr == "" {
		t.Fatalf("no server address in the output:\n%s", got)
	}
	if !strings.Contains(got, "1) FLUSHDB") || !strings.HasSuffix(got, "Stopped the throwaway redis-server.\n") {
		t.Errorf("unexpected output:\n%s", got)
	}
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Errorf("the throwaway server at %s still accepts connections", addr)
	}
}

// An interrupt (a cancelled context) during the slow loop ends the demo
// with the interrupt's exit code, and the throwaway server is still stopped.
func TestDemoInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The progress bar writes to stderr only once the slow INCR loop runs,
	// so the first write to stderr is the moment to interrupt.
	var stderr bytes.Buffer
	interrupt := writerFunc(func(p []byte) (int, error) {
		cancel()
		return stderr.Write(p)
	})
	var out bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"demo"}, func(string) string { return "" }, &out, interrupt)
	if code != exitInterrupted {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitInterrupted, stderr.String())
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the interrupted demo took %v", d)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say the demo was interrupted:\n%s", stderr.String())
	}
	got := out.String()
	_, rest, _ := strings.Cut(got, "throwaway redis-server at redis://")
	addr, _, _ := strings.Cut(rest, ",")
	if !strings.HasSuffix(got, "Stopped the throwaway redis-server.\n") {
		t.Errorf("the server was not stopped:\n%s", got)
	}
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Errorf("the throwaway server at %s still accepts connections", addr)
	}
}

// The command run as a process, sent SIGINT, SIGTERM or SIGHUP during the demo,
// stops its throwaway server and exits with the shell's code for that
// signal, saying which it was.
func TestDemoSignalled(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
		says string
	}{
		{syscall.SIGINT, 130, "redpipe demo: interrupted"},
		{syscall.SIGTERM, 143, "redpipe demo: terminated"},
		// A closed terminal or a dropped ssh session: without a handler
		// the command died at once, its server's directory left behind,
		// and, where no parent-death signal ties it, the server too.
		{syscall.SIGHUP, 129, "redpipe demo: hung up"},
	} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			if tc.sig == syscall.SIGHUP && signal.Ignored(syscall.SIGHUP) {
				t.Skip("this test binary runs with SIGHUP ignored, as under nohup, and so would the command, which then keeps ignoring it (TestDemoUnderNohupIgnoresHangUp)")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "demo")
			cmd.Env = append(os.Environ(), runMainEnv+"=1", "REDIS_URL=")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Signal once the demo's steps are under way.
			var out strings.Builder
			lines := bufio.NewScanner(stdout)
			for lines.Scan() {
				out.WriteString(lines.Text() + "\n")
				if strings.HasPrefix(lines.Text(), "== 2.") {
					break
				}
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(stdout)
			out.Write(rest)
			err = cmd.Wait()
			if ctx.Err() != nil {
				t.Fatalf("the demo did not end within 60s of %v; stdout:\n%s", tc.sig, out.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.code || !strings.Contains(stderr.String(), tc.says) {
				t.Errorf("after %v: exit code %d (%v), want %d and %q; stderr:\n%s", tc.sig, code, err, tc.code, tc.says, stderr.String())
			}
			got := out.String()
			_, rest2, _ := strings.Cut(got, "throwaway redis-server at redis://")
			addr, _, _ := strings.Cut(rest2, ",")
			if addr == "" || !strings.HasSuffix(got, "Stopped the throwaway redis-server.\n") {
				t.Fatalf("the server was not stopped:\n%s", got)
			}
			if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				nc.Close()
				t.Errorf("the throwaway server at %s still accepts connections", addr)
			}
		})
	}
}

// The WATCH loop retries while the watched key changes under it, but not
// forever: a client that changes the key in every round, as a second demo
// on the same server would, ends it with an error that says so. The
// interfering client stops after 50 rounds, so that a loop without a
// bound ends too, with success.
func TestWatchLoopGivesUp(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := redpipe.Connect(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out strings.Builder
	rounds := 0
	// The demo prints each round's GET between it and the EXEC: the
	// moment for another client to change the key.
	w := writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), ": WATCH ") && rounds < 50 {
			rounds++
			srv.MustDo(t, "INCR", k(seqKey))
		}
		return out.Write(p)
	})
	d := &demo{c: c, w: w, disposable: true}
	err = d.watchLoop(ctx)
	if !errors.Is(err, redpipe.ErrWatch) || !strings.Contains(err.Error(), "another client writes it") {
		t.Errorf("watch loop against a key changed in every round: %v after %d rounds; want an error saying another client writes it\n%s", err, rounds, out.String())
	}
	if rounds != watchRounds {
		t.Errorf("the loop ran %d rounds, want %d", rounds, watchRounds)
	}
}

// A throwaway server that ends during the run, as one the system kills
// when short of memory does, fails the run with the client's error, which
// reads as a network fault; the command adds that the server ended, with
// what it printed last.
func TestThrowawayServerEndsMidRun(t *testing.T) {
	var out, stderr bytes.Buffer
	var once sync.Once
	// The progress bar writes to stderr once the slow INCR loop runs,
	// on the demo's goroutine: the moment to shut the server down.
	progress := writerFunc(func(p []byte) (int, error) {
		once.Do(func() {
			_, rest, _ := strings.Cut(out.String(), "throwaway redis-server at redis://")
			addr, _, _ := strings.Cut(rest, ",")
			nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Errorf("dialing the throwaway server at %q: %v", addr, err)
				return
			}
			defer nc.Close()
			io.WriteString(nc, "SHUTDOWN NOSAVE\r\n")
			nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, nc) // until the server closes it
		})
		return len(p), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := runDemo(ctx, demoConfig{Incrs: 100_000, Out: &out, Progress: progress})
	code := exitCode(ctx, "demo", err, &stderr)
	if got := stderr.String(); code != 1 || !strings.Contains(got, "ended during the run") || !strings.Contains(got, "User requested shutdown") {
		t.Errorf("demo whose server shut down = %d, want 1 and that the server ended, with its last lines; stderr:\n%s", code, got)
	}
}

// Under nohup, SIGHUP is ignored from the start, and must stay so: the
// command run so, sent SIGHUP during the demo, runs it to its end.
func TestDemoUnderNohupIgnoresHangUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The shell ignores SIGHUP, as nohup does, and the command inherits
	// that through exec.
	cmd := exec.CommandContext(ctx, "sh", "-c", `trap "" HUP; exec "$0" demo`, os.Args[0])
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "REDIS_URL=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "== 2.") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stdout)
	out.Write(rest)
	err = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the demo did not end within 2 minutes; stdout:\n%s", out.String())
	}
	if err != nil || !strings.HasSuffix(out.String(), "Stopped the throwaway redis-server.\n") {
		t.Errorf("the demo under nohup, sent SIGHUP: %v; want it to run to its end; stderr:\n%s\nstdout:\n%s", err, stderr.String(), out.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestDispatch(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, tc := range []struct {
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{nil, 2, "", "usage: redpipe"},
		{[]string{"bogus"}, 2, "", `unknown command "bogus"`},
		{[]string{"demo", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"demo", "-nope"}, 2, "", "flag provided but not defined: -nope"},
		{[]string{"help"}, 0, "usage: redpipe", ""},
		// -h after a seed URL or another argument asks for the usage, as
		// before them, rather than being taken for a seed and dialed.
		{[]string{"demo", "-cluster", "redis://127.0.0.1:1", "-h"}, 0, "", "usage: redpipe"},
		{[]string{"demo", "-cluster", "redis://127.0.0.1:1", "--help"}, 0, "", "usage: redpipe"},
		{[]string{"demo", "extra", "-h"}, 0, "", "usage: redpipe"},
		{[]string{"demo", "-cluster", "--", "-h"}, 2, "", `"-h" is not a seed URL`},
		{[]string{"bench", "extra", "-h"}, 0, "", "usage: redpipe bench"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, getenv, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("run(%q) = %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(stdout.String(), tc.wantStdout) || (tc.wantStdout == "" && stdout.Len() > 0) {
			t.Errorf("run(%q) stdout %q, want %q", tc.args, stdout.String(), tc.wantStdout)
		}
		if !strings.Contains(stderr.String(), tc.wantStderr) || (tc.wantStderr == "" && stderr.Len() > 0) {
			t.Errorf("run(%q) stderr %q, want %q", tc.args, stderr.String(), tc.wantStderr)
		}
	}
}
