package redpipe

import (
	"net"
	"sync"
	"sync/atomic"
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
	t.Parallel()
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

// A seed that takes connections and never answers (a hung process; a
// fake server, since a real one answers) is asked once, for one
// DialTimeout, before the next seed: retried by the single-node rules
// until the fetch's bound (DialTimeout and ReplyTimeout, 15s by default),
// it held the client's first calls up that long, and every refresh that
// asked a node so hung first.
func TestClusterHungSeedAskedOnce(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var conns sync.WaitGroup
	defer conns.Wait()
	defer ln.Close() // before the Wait: it ends the accept loop
	conns.Add(1)
	go func() {
		defer conns.Done()
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			held = append(held, c) // read from never, answered never
		}
	}()
	cl := redistest.StartCluster(t, 0)
	c, err := NewClusterClient(ClusterOptions{
		Addrs:   []string{ln.Addr().String(), cl.Masters[0].Addr},
		Options: Options{DialTimeout: 200 * time.Millisecond, ReplyTimeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(clusterCtx(t), "hung", "v"); err != nil {
		t.Fatalf("SET with a hung first seed: %v", err)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the hung seed was dialled %d times; want once, then the next seed asked", n)
	}
}
