package redpipe

import (
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// A ReplyTimeout of -1, no timeout on replies, does not leave the fetch
// of the layout a DialTimeout alone for the dial, the handshake and the
// reply: reached through a link slow enough that those take longer than
// DialTimeout, the cluster was unusable, every call failing with "cluster
// layout unknown" and a deadline exceeded, where the default ReplyTimeout
// worked. The proxy's delay stands for the slow link.
func TestClusterLayoutWithoutReplyTimeout(t *testing.T) {
	srv := redistest.Start(t, "--cluster-enabled", "yes")
	ctx := clusterCtx(t)
	if err := srv.ServeAllSlots(ctx); err != nil {
		t.Fatal(err)
	}
	p := redistest.StartProxy(t, srv.Addr)
	p.SetLatency(150 * time.Millisecond) // a round trip of 300 ms at least
	c, err := NewClusterClient(ClusterOptions{
		Addrs:   []string{p.Addr},
		Options: Options{DialTimeout: 500 * time.Millisecond, ReplyTimeout: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "slow", "v"); err != nil {
		t.Errorf("SET with ReplyTimeout -1 over a slow link: %v", err)
	}
}
