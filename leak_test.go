package redpipe

import (
	"testing"

	"github.com/redpipe/redpipe/internal/leakcheck"
)

func TestMain(m *testing.M) {
	allowWaitingParallel()
	leakcheck.Main(m, stopShared)
}
