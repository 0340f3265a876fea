package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// tinyBench is the bench cut down to run in a moment: the same steps, few
// INCRs, short points.
var tinyBench = []string{"bench", "-n", "2000", "-depths", "1,10,100", "-duration", "50ms"}

var tinyDepths = []int{1, 10, 100}

func benchArgs(out string) []string {
	return append(slices.Clone(tinyBench), "-out", out)
}

// checkBenchOutput fails the test unless the output has the comparison's
// counters and a table row for every depth.
func checkBenchOutput(t *testing.T, got string) {
	t.Helper()
	if n := strings.Count(got, " 2000\n"); n != 2 {
		t.Errorf("want 2 increment values of 2000, got %d:\n%s", n, got)
	}
	for _, d := range tinyDepths {
		row := regexp.MustCompile(fmt.Sprintf(`(?m)^ +%d +\d+ +\d+ +\d+\.\dx +\d+\.\dx *$`, d))
		if !row.MatchString(got) {
			t.Errorf("no table row for depth %d:\n%s", d, got)
		}
	}
	if !strings.Contains(got, "counter matched") {
		t.Errorf("output does not report the counter check:\n%s", got)
	}
}

// On a server given by REDIS_URL, as a user runs it: the table covers
// every depth, the SVG chart is written, and the server's other data is
// left alone.
func TestBenchSVG(t *testing.T) {
	srv := redistest.Start(t)
	if _, err := srv.Do("SET", "user:data", "precious"); err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(t.TempDir(), "bench.svg")
	var out, progress bytes.Buffer
	getenv := func(k string) string {
		if k == "REDIS_URL" {
			return srv.URL()
		}
		return ""
	}
	if code := run(context.Background(), benchArgs(chart), getenv, &out, &progress); code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), progress.String())
	}
	got := out.String()
	checkBenchOutput(t, got)
	if !strings.Contains(got, "Using REDIS_URL=") || !strings.Contains(got, chart) {
		t.Errorf("output does not name the server or the chart:\n%s", got)
	}

	svg, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	head := strings.TrimSpace(string(svg[:min(len(svg), 64)]))
	if !strings.HasPrefix(head, "<?xml") && !strings.HasPrefix(head, "<svg") {
		t.Errorf("chart does not start as an SVG: %q", head)
	}
	if len(svg) < 4000 || !bytes.Contains(svg, []byte("</svg>")) {
		t.Errorf("chart of %d bytes looks empty or cut short", len(svg))
	}

	// Without a terminal the bars still report, one plain line at a time.
	if p := progress.String(); strings.Contains(p, "\r") || !strings.Contains(p, "2000/2000") {
		t.Errorf("progress output on a non-terminal: %q", p)
	}

	if v, err := srv.Do("GET", "user:data"); err != nil || v != "precious" {
		t.Errorf("user key after the bench: %v, %v", v, err)
	}
	if v, err := srv.Do("KEYS", benchPrefix+"*"); err != nil || len(v.([]any)) != 0 {
		t.Errorf("bench keys left behind: %v, %v", v, err)
	}
}

// Without REDIS_URL, on a throwaway server, with a PNG chart.
func TestBenchPNG(t *testing.T) {
	chart := filepath.Join(t.TempDir(), "bench.png")
	var out, progress bytes.Buffer
	code := run(context.Background(), benchArgs(chart), func(string) string { return "" }, &out, &progress)
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), progress.String())
	}
	got := out.String()
	checkBenchOutput(t, got)
	if !strings.Contains(got, "throwaway redis-server at redis://") {
		t.Errorf("output does not say it used a throwaway server:\n%s", got)
	}

	f, err := os.Open(chart)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("chart is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 500 {
		t.Errorf("chart of %v is too small to read", b)
	}
}

// An interrupt (a cancelled context) ends the bench with the interrupt's
// exit code, and the throwaway server is still stopped.
func TestBenchInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The first write to stderr is the first progress bar, so the bench
	// is under way by then.
	var stderr bytes.Buffer
	interrupt := writerFunc(func(p []byte) (int, error) {
		cancel()
		return stderr.Write(p)
	})
	var out bytes.Buffer
	chart := filepath.Join(t.TempDir(), "bench.svg")
	code := run(ctx, []string{"bench", "-out", chart}, func(string) string { return "" }, &out, interrupt)
	if code != exitInterrupted {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitInterrupted, stderr.String())
	}
	if !strings.Contains(stderr.String(), "redpipe bench: interrupted") {
		t.Errorf("stderr does not say the bench was interrupted:\n%s", stderr.String())
	}
	if _, err := os.Stat(chart); err == nil {
		t.Errorf("an interrupted bench wrote a chart")
	}
	_, rest, ok := strings.Cut(out.String(), "throwaway redis-server at redis://")
	addr, _, _ := strings.Cut(rest, ".\n")
	if !ok || addr == "" {
		t.Fatalf("no server address in the output:\n%s", out.String())
	}
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Errorf("the throwaway server at %s still accepts connections", addr)
	}
}

// Mistakes on the command line are reported before anything runs.
func TestBenchFlags(t *testing.T) {
	getenv := func(string) string { return "" }
	// A file where the chart's folder should be.
	readme := filepath.Join(t.TempDir(), "README")
	if err := os.WriteFile(readme, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	folderSVG := filepath.Join(t.TempDir(), "chart.svg")
	if err := os.Mkdir(folderSVG, 0o755); err != nil {
		t.Fatal(err)
	}
	type flagCase struct {
		args       []string
		code       int
		wantStderr string
	}
	var more []flagCase
	if os.Geteuid() != 0 { // root writes to a read-only file all the same
		readOnlySVG := filepath.Join(t.TempDir(), "kept.svg")
		if err := os.WriteFile(readOnlySVG, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		more = append(more, flagCase{[]string{"-out", readOnlySVG}, 2, "permission denied"})
	}
	for _, tc := range append([]flagCase{
		{[]string{"-h"}, 0, "usage: redpipe bench"},
		{[]string{"-bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-n", "0"}, 2, "-n must be from 1 to 1000000"},
		{[]string{"-n", "2000000000"}, 2, "-n must be from 1 to 1000000 (one pipeline holds all of them, and their replies, in memory), got 2000000000"},
		{[]string{"-depths", "1,1000001"}, 2, "-depths: 1000001 is more than 1000000"},
		{[]string{"-duration", "0s"}, 2, "-duration must be positive"},
		{[]string{"-depths", "1,x"}, 2, `-depths: "x" is not a positive whole number`},
		{[]string{"-depths", "0"}, 2, `-depths: "0" is not a positive whole number`},
		{[]string{"-depths", ","}, 2, "-depths: no depth given"},
		{[]string{"-out", "chart.gif"}, 2, "written as .svg or .png"},
		{[]string{"-out", "chart"}, 2, "written as .svg or .png"},
		{[]string{"-out", "/nonexistent/dir/chart.svg"}, 2, "-out: cannot write a file in /nonexistent/dir: there is no such folder\n"},
		{[]string{"-out", filepath.Join(readme, "chart.svg")}, 2, "-out: cannot write a file in " + readme + ": it is a file, not a folder\n"},
		{[]string{"-out", folderSVG}, 2, "is a folder"},
	}, more...) {
		var stdout, stderr bytes.Buffer
		start := time.Now()
		code := run(context.Background(), append([]string{"bench"}, tc.args...), getenv, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("bench %q: exit code %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(stderr.String(), tc.wantStderr) {
			t.Errorf("bench %q: stderr %q, want %q", tc.args, stderr.String(), tc.wantStderr)
		}
		if stdout.Len() > 0 || time.Since(start) > time.Second {
			t.Errorf("bench %q ran instead of failing at once: %q", tc.args, stdout.String())
		}
	}
}

func TestParseDepths(t *testing.T) {
	for in, want := range map[string][]int{
		"1,10,100,1000,10000": {1, 10, 100, 1000, 10000},
		"100, 1,10,1,":        {1, 10, 100},
		"7":                   {7},
	} {
		got, err := parseDepths(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseDepths(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestSIRate(t *testing.T) {
	for v, want := range map[float64]string{1: "1", 100: "100", 1e3: "1k", 1e4: "10k", 1e6: "1M", 1e7: "10M"} {
		if got := siRate(v); got != want {
			t.Errorf("siRate(%v) = %q, want %q", v, got, want)
		}
	}
}

// The chart used to be written in place: a write that failed halfway left
// the chart of the last run truncated. It is now written to a new file,
// renamed over the chart once complete; on failure the chart stays as it
// was and the new file is removed.
func TestReplaceFileKeepsOldOnFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chart.svg")
	if err := os.WriteFile(path, []byte("the last run's chart"), 0o640); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("disk full")
	err := replaceFile(path, func(w io.Writer) error {
		if _, err := io.WriteString(w, "half a ch"); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Errorf("replaceFile with a failing write = %v, want its error", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "the last run's chart" {
		t.Errorf("chart after a failed write = %q, %v; want the last run's, untouched", b, err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("files left in the folder after a failed write: %v, want the chart alone", es)
	}

	if err := replaceFile(path, func(w io.Writer) error {
		_, err := io.WriteString(w, "the new chart")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "the new chart" {
		t.Errorf("chart after a write = %q, %v; want the new one", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("chart's mode after a write = %v, %v; want the old chart's, -rw-r-----", fi.Mode(), err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("files left in the folder after a write: %v, want the chart alone", es)
	}
}
