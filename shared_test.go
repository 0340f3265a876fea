package redpipe

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// A cluster of three masters takes a few seconds to form: Redis keeps a
// new master's cluster_state at fail for its first two seconds. Tests that
// only need a healthy cluster, and neither stop, reshard, fail over nor
// reconfigure it, nor count its INFO or commandstats, share one, started
// by the first of them and stopped by TestMain. Such a test closes its
// clients, never flushes the cluster, and checks only keys no other test
// writes, made new on every run (freshNamespace) where it counts on their
// values: it may run alongside another, and again with -count.
var shared struct {
	mu sync.Mutex
	cl *redistest.Cluster
}

// sharedCluster returns the shared cluster, starting it on first use. A
// cluster a test left with a node down is not handed on: the next test
// gets a new one, and the failure stays with the test that caused it.
func sharedCluster(t testing.TB) *redistest.Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cl != nil && !sharedHealthy(shared.cl) {
		t.Logf("the shared cluster has a node down: starting another")
		shared.cl.Stop()
		shared.cl = nil
	}
	if shared.cl == nil {
		cl, err := redistest.NewCluster(0)
		if err != nil {
			t.Fatalf("starting the shared cluster: %v", err)
		}
		shared.cl = cl
	}
	return shared.cl
}

// sharedHealthy reports whether every node of cl answers PING.
func sharedHealthy(cl *redistest.Cluster) bool {
	for _, s := range cl.Servers() {
		if v, err := s.Do("PING"); err != nil || v != "PONG" {
			return false
		}
	}
	return true
}

// stopShared stops the shared cluster, if one was started; TestMain calls
// it once the tests are done, before it looks for leaked goroutines.
func stopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cl != nil {
		shared.cl.Stop()
		shared.cl = nil
	}
}

// namespaces counts the namespaces freshNamespace handed out.
var namespaces atomic.Int64

// freshNamespace returns a part of a key name, ending in ":", that no
// other call in this process returns: keys made with it are not those of
// another test, nor of an earlier run of the same one (-count), on a
// shared cluster.
func freshNamespace() string {
	return "ns" + strconv.FormatInt(namespaces.Add(1), 10) + ":"
}
