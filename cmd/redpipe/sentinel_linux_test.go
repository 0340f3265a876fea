//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// startSentinel starts a real Redis Sentinel on a free loopback port that
// monitors the master at addr, under the name mymaster, and stops it when
// the test ends; it returns the Sentinel's address. redistest starts no
// Sentinel: one needs a configuration file of its own, which it rewrites.
// Like redistest's servers, it dies with the test binary (Linux only).
func startSentinel(t *testing.T, addr string) string {
	t.Helper()
	bin, err := redistest.LookPath()
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The port is free when picked but bound only later, by the
	// Sentinel, so another process may take it first.
	for attempt := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		own := ln.Addr().String()
		ln.Close()
		_, ownPort, _ := net.SplitHostPort(own)
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", attempt))
		text := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster %s %s 1\n", ownPort, dir, host, port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, conf, "--sentinel", "--loglevel", "warning")
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-done })
		if waitPing(own, done) {
			return own
		}
		t.Logf("the Sentinel on %s did not come up; its output:\n%s", own, out.String())
	}
	t.Fatal("no Sentinel could be started")
	return ""
}

// waitPing waits up to 10 seconds for a server on addr to answer PING,
// and reports whether it did; it gives up when done is closed, as when
// the server's process has exited.
func waitPing(addr string, done <-chan struct{}) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-done:
			return false
		case <-time.After(20 * time.Millisecond):
		}
		if answersPing(addr) {
			return true
		}
	}
	return false
}

// answersPing reports whether a server on addr answers PING with PONG.
func answersPing(addr string) bool {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Second))
	if _, err := nc.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(nc).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// A Sentinel knows few commands: given one in REDIS_URL, demo and bench
// used to stop at their first command with "unknown command", and demo
// -cluster with one on CLUSTER. Each now says that the URL is a
// Sentinel's, and what to give instead: demo and bench name the master it
// monitors.
func TestSentinelURLIsRefused(t *testing.T) {
	master := redistest.Start(t)
	url := "redis://" + startSentinel(t, master.Addr)
	chart := filepath.Join(t.TempDir(), "chart.svg")
	for _, tc := range []struct {
		args     []string
		redisURL string
		want     string
	}{
		{[]string{"demo"}, url, url + " is a Redis Sentinel, which tells where masters are but holds no data; give REDIS_URL the URL of a master it monitors: mymaster (at " + master.Addr + ")"},
		{[]string{"bench", "-out", chart}, url, url + " is a Redis Sentinel"},
		{[]string{"demo", "-cluster", url}, "", url + " is a Redis Sentinel, not a node of a Redis Cluster"},
	} {
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		code := run(ctx, tc.args, func(k string) string {
			if k == "REDIS_URL" {
				return tc.redisURL
			}
			return ""
		}, &stdout, &stderr)
		cancel()
		if got := stderr.String(); code != 1 || !strings.Contains(got, tc.want) {
			t.Errorf("run(%q) with REDIS_URL %q = %d, want 1 and %q; stderr:\n%s", tc.args, tc.redisURL, code, tc.want, got)
		}
	}
	if _, err := os.Stat(chart); err == nil {
		t.Errorf("bench on a Sentinel wrote a chart")
	}
}
