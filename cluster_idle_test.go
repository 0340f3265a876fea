package redpipe

import (
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// TestClusterIdleClosedConnections: the masters close connections idle
// for longer than their timeout setting; a pipeline, a transaction and a
// plain call made after that go over new connections and succeed, with
// no retry allowed, as on one node (TestServerTimeoutClosesIdleConnections):
// none of them was sent on the closed connection. Nor is such a
// connection taken for a node that cannot be reached: the layout is not
// refreshed for it, which would cost every node a CLUSTER SHARDS each
// time the client comes back from a pause, and count as a redirection.
func TestClusterIdleClosedConnections(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs(), Options: Options{MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys := []string{keyIn(100, "idle:"), keyIn(8000, "idle:"), keyIn(16000, "idle:")}
	if _, err := c.Pipeline(NoTransaction).Set(keys[0], 0).Set(keys[1], 0).Set(keys[2], 0).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range cl.Masters {
		m.MustDo(t, "CONFIG", "SET", "timeout", "1")
		defer m.Do("CONFIG", "SET", "timeout", "0")
	}
	closed := func() bool {
		for _, m := range cl.Masters {
			if normalClients(t, m) != 1 {
				return false
			}
		}
		return true
	}
	for _, kind := range []string{"pipeline", "transaction", "call", "pipeline2"} {
		waitUntil(t, ctx, "the masters to close the idle connections", closed)
		before := c.cluster.refreshes.Load()
		switch kind {
		case "pipeline", "pipeline2":
			p := c.Pipeline(NoTransaction)
			for _, k := range keys {
				p.Incr(k)
			}
			if _, err := p.Exec(ctx); err != nil {
				t.Errorf("a cluster pipeline after the masters closed the idle connections: %v", err)
			}
		case "transaction":
			if _, err := c.Pipeline().Incr(keys[1]).Incr(keys[1]).Exec(ctx); err != nil {
				t.Errorf("a cluster transaction after the masters closed the idle connections: %v", err)
			}
		case "call":
			if _, err := c.Incr(ctx, keys[2]); err != nil {
				t.Errorf("a call after the masters closed the idle connections: %v", err)
			}
		}
		if n := c.cluster.refreshes.Load() - before; n != 0 {
			t.Errorf("%s after the masters closed the idle connections: %d layout refreshes, want none", kind, n)
		}
	}
}
