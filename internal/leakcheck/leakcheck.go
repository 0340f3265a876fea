// Package leakcheck fails a test binary whose tests leave goroutines
// running. Call it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
//
// After the tests pass it waits (bounded) for the goroutines started by the
// tests to end, and reports the stacks of those that do not.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// settle bounds the wait for goroutines that are on their way out: a
// connection's reader returns once its socket is closed, a timer's
// goroutine after its function ran.
const settle = 5 * time.Second

// Main runs the tests, then each teardown (which stops what the tests
// shared, such as servers started once for many of them), then the leak
// check, and exits.
func Main(m *testing.M, teardown ...func()) {
	code := m.Run()
	for _, f := range teardown {
		f()
	}
	if code == 0 {
		if leaked := Check(settle); leaked != "" {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running after the tests:\n\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// Check waits up to d for every goroutine but the caller's and the
// runtime's own to end, and returns the stacks of those left, or "".
func Check(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		left := interesting()
		if len(left) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// interesting returns the stacks of goroutines that belong to the code
// under test.
func interesting() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 || ignored(g) {
			continue // the first is the calling goroutine
		}
		out = append(out, g)
	}
	return out
}

// ignored are goroutines of the runtime and the testing package: whatever
// runs none of this module's code and holds no network connection or child
// process.
func ignored(stack string) bool {
	for _, ours := range []string{"github.com/redpipe/", "net.(*", "os/exec."} {
		if strings.Contains(stack, ours) {
			return false
		}
	}
	return true
}
