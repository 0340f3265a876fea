//go:build linux

package redistest_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

const helperEnv = "REDISTEST_HELPER_PROCESS"

// TestHelperProcess is not a test: TestServerDiesWithTestBinary runs the
// test binary again with only this function selected, to have a parent
// process it can kill. It does nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	s, err := redistest.StartServer()
	if err != nil {
		fmt.Println("redistest-helper-error", err)
		os.Exit(1)
	}
	fmt.Println("redistest-helper-pid", s.Pid(), s.Dir)
	// Wait to be killed; the bound only matters if the parent test dies
	// first, and then the server goes with this process.
	time.Sleep(time.Minute)
	os.Exit(0)
}

func TestServerDiesWithTestBinary(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()

	pidc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "redistest-helper-"); ok {
				pidc <- rest
				return
			}
		}
		pidc <- "error: helper exited without reporting"
	}()
	var line string
	select {
	case line = <-pidc:
	case <-time.After(30 * time.Second):
		t.Fatal("helper process did not start a server within 30s")
	}
	pidText, dir, _ := strings.Cut(strings.TrimPrefix(line, "pid "), " ")
	pid, err := strconv.Atoi(pidText)
	if err != nil || dir == "" {
		t.Fatalf("helper: %s", line)
	}
	// The helper dies without cleaning up, so its directory is removed here.
	defer os.RemoveAll(dir)

	// SIGKILL leaves the helper no chance to run cleanups; only the
	// parent-death signal can stop the server.
	cmd.Process.Kill()
	cmd.Wait()
	if !waitGone(pid, 5*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("redis-server %d outlived its killed parent", pid)
	}
}
