package leakcheck

import (
	"strings"
	"testing"
	"time"
)

func parked(release chan struct{}) { <-release }

func TestCheckReportsAndClears(t *testing.T) {
	release := make(chan struct{})
	go parked(release)
	left := Check(100 * time.Millisecond)
	if !strings.Contains(left, "leakcheck.parked") {
		t.Fatalf("a parked goroutine was not reported; got:\n%s", left)
	}
	close(release)
	if left := Check(2 * time.Second); left != "" {
		t.Fatalf("reported after it ended:\n%s", left)
	}
}
