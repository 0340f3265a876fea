package main

import (
	"os"
	"testing"

	"github.com/redpipe/redpipe/internal/leakcheck"
)

// runMainEnv, set in the environment of this test binary run again by a
// test, makes it run main with its arguments instead of the tests, so that
// a test can send the command real signals.
const runMainEnv = "REDPIPE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	leakcheck.Main(m)
}
