package redpipe

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/topology"
	"github.com/redpipe/redpipe/redistest"
)

// waitEndpoints waits until every master of cl lists, in CLUSTER SHARDS,
// the endpoint want(s) for each master s.
func waitEndpoints(t *testing.T, ctx context.Context, cl *redistest.Cluster, want func(s *redistest.Server) string) {
	t.Helper()
	waitUntil(t, ctx, "every master to list the endpoints set", func() bool {
		for _, asked := range cl.Masters {
			c, err := NewClient(Options{Addr: asked.Addr, Protocol: 2})
			if err != nil {
				t.Fatal(err)
			}
			v, err := c.doRaw(ctx, clusterShardsCmd, true)
			c.Close()
			if err != nil {
				return false
			}
			m, err := topology.ParseShards(v, asked.Addr)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range cl.Masters {
				n := m.Node(cl.NodeID(s))
				if n == nil || n.Endpoint != want(s) {
					return false
				}
			}
		}
		return true
	})
}

// A master whose endpoint is "?" (cluster-preferred-endpoint-type
// hostname, and no cluster-announce-hostname on it) cannot be reached.
// A command for its slots says so and what to set, rather than that the
// cluster is down; a command for every master (DBSIZE, FLUSHALL,
// ForEachMaster), in a call, a pipeline or a stream, is refused before
// anything is sent, rather than run on the other masters as if they
// were the whole cluster; a MOVED to it dials no "?". Once it announces
// a hostname, the client finds it.
func TestClusterMasterWithoutEndpoint(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 0)
	ctx := clusterCtx(t)
	hidden := cl.Masters[2]
	for _, s := range cl.Masters {
		if s != hidden {
			s.MustDo(t, "CONFIG", "SET", "cluster-announce-hostname", "localhost")
		}
		s.MustDo(t, "CONFIG", "SET", "cluster-preferred-endpoint-type", "hostname")
	}
	waitEndpoints(t, ctx, cl, func(s *redistest.Server) string {
		if s == hidden {
			return "?"
		}
		return "localhost"
	})
	hiddenKey, shownKey := keyIn(16000, "hidden"), keyIn(10, "shown")
	hidden.MustDo(t, "SET", hiddenKey, "v")
	cl.Masters[0].MustDo(t, "SET", shownKey, "v")

	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const fix = "set cluster-announce-hostname on that node"
	check := func(what string, err error) {
		t.Helper()
		var de *DialError
		if err == nil || !errors.As(err, &de) || !strings.Contains(err.Error(), fix) || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("%s = %v (outcome %v); want a *DialError, not sent, saying to %s", what, err, OutcomeOf(err), fix)
		}
	}
	_, err = c.Get(ctx, hiddenKey)
	check("GET of a slot of the master without an endpoint", err)
	if err != nil && (!strings.Contains(err.Error(), cl.NodeID(hidden)) || !strings.Contains(err.Error(), "hash slot 16000")) {
		t.Errorf("GET = %v; want it to name node %s and hash slot 16000", err, cl.NodeID(hidden))
	}
	_, err = c.Pipeline(NoTransaction).Get(shownKey).Get(hiddenKey).Exec(ctx)
	check("a pipeline with a key of that master", err)

	n, err := c.DBSize(ctx)
	check("DBSIZE (found "+strconv.FormatInt(n, 10)+" keys of 2)", err)
	_, err = c.Do(ctx, "FLUSHALL")
	check("FLUSHALL", err)
	_, err = c.Pipeline(NoTransaction).Get(shownKey).Do("FLUSHALL").Exec(ctx)
	check("FLUSHALL in a pipeline", err)
	_, err = c.Stream(ctx, nil).Do("FLUSHALL").Close(ctx)
	check("FLUSHALL in a stream", err)
	var calls atomic.Int32
	err = c.ForEachMaster(ctx, func(ctx context.Context, node *Client) error {
		calls.Add(1)
		return nil
	})
	check("ForEachMaster", err)
	if n := calls.Load(); n != 0 {
		t.Errorf("ForEachMaster called fn %d times; want none", n)
	}
	for _, s := range []*redistest.Server{cl.Masters[0], hidden} {
		if v := s.MustDo(t, "DBSIZE"); v != int64(1) {
			t.Errorf("DBSIZE on %s = %v after the refused FLUSHALLs; want 1", s.Addr, v)
		}
	}

	// A MOVED to the master without an endpoint: "MOVED 20 ?:port".
	// CLUSTER SETSLOT NODE on each master in turn holds: the former
	// owner's epoch is below the new one's, so its gossip does not take
	// the slot back.
	movedKey := keyIn(20, "moved")
	for _, s := range cl.Masters {
		s.MustDo(t, "CLUSTER", "SETSLOT", "20", "NODE", cl.NodeID(hidden))
	}
	v, _ := cl.Masters[0].Do("GET", movedKey)
	if e, ok := v.(redistest.ReplyError); !ok || !strings.HasPrefix(string(e), "MOVED 20 ?:") {
		t.Fatalf("GET from the former owner = %v; want a MOVED to ?", v)
	}
	_, err = c.Get(ctx, movedKey)
	check("GET of a slot moved to the master without an endpoint", err)
	c.cluster.mu.RLock()
	for addr := range c.cluster.nodes {
		if strings.HasPrefix(addr, "?") {
			t.Errorf("a client was made for %s", addr)
		}
	}
	c.cluster.mu.RUnlock()

	// A second client, to try a stream as the first to find out.
	c2, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, err = c2.Stream(ctx, nil).Do("DBSIZE").Close(ctx)
	check("DBSIZE in a stream", err)

	hidden.MustDo(t, "CONFIG", "SET", "cluster-announce-hostname", "localhost")
	waitEndpoints(t, ctx, cl, func(*redistest.Server) string { return "localhost" })
	// A pipeline and a stream are the first to find out: nothing else
	// has refreshed the layout since the node got its hostname, and the
	// refusal they met before must not stand for good.
	if rs, err := c.Pipeline(NoTransaction).Do("DBSIZE").Exec(ctx); err != nil || len(rs) != 1 || rs[0].String() != "2" {
		t.Errorf("DBSIZE in a pipeline once every master has a hostname = %v, %v; want 2", rs, err)
	}
	var streamed Value
	if _, err := c2.Stream(ctx, func(_ int, v Value) error { streamed = v; return nil }).Do("DBSIZE").Close(ctx); err != nil || streamed.String() != "2" {
		t.Errorf("DBSIZE in a stream once every master has a hostname = %v, %v; want 2", streamed, err)
	}
	if n, err := c.DBSize(ctx); err != nil || n != 2 {
		t.Errorf("DBSIZE once every master has a hostname = %d, %v; want 2", n, err)
	}
	if v, err := c.Get(ctx, hiddenKey); err != nil || v != "v" {
		t.Errorf("GET %s once its master has a hostname = %q, %v", hiddenKey, v, err)
	}
}

// A seed that is not host:port is refused as a seed (Addrs, which one),
// not as Options.Addr, which a cluster Client ignores, and the error says
// how to write it: a port added, an IPv6 address put in brackets.
func TestClusterSeedNotHostPort(t *testing.T) {
	for _, tc := range []struct{ seed, want string }{
		{"localhost", "add the port, as in localhost:6379"},
		{"10.0.0.1", "add the port, as in 10.0.0.1:6379"},
		{"::1:7000", "brackets before the port, as in [::1]:7000"},
		{"::1", "brackets before the port, as in [::1]:6379"},
		{"[::1]", "add the port, as in [::1]:6379"},
	} {
		c, err := NewClusterClient(ClusterOptions{Addrs: []string{"127.0.0.1:7000", tc.seed}})
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != "Addrs" || !strings.Contains(oe.Msg, "seed 2 of 2") || !strings.Contains(oe.Msg, tc.want) {
			t.Errorf("NewClusterClient with seed %q = %v; want an *OptionError for Addrs naming seed 2 of 2 and saying to %q", tc.seed, err, tc.want)
		}
		if c != nil {
			c.Close()
		}
		_, err = NewClient(Options{Addr: tc.seed})
		if !errors.As(err, &oe) || oe.Field != "Addr" || !strings.Contains(oe.Msg, tc.want) {
			t.Errorf("NewClient with Addr %q = %v; want an *OptionError for Addr saying to %q", tc.seed, err, tc.want)
		}
	}
}

// A seed that answers with no usable layout is not reported as one that
// did not answer, and the error says what to do: a cluster node that
// serves no slot yet (a cluster not created), a server not in cluster
// mode.
func TestClusterSeedWithoutLayout(t *testing.T) {
	ctx := clusterCtx(t)
	for _, tc := range []struct {
		name string
		srv  *redistest.Server
		want string
	}{
		{"a cluster node without slots", redistest.Start(t, "--cluster-enabled", "yes"), "(CLUSTER ADDSLOTSRANGE, or redis-cli --cluster create)"},
		{"a server not in cluster mode", redistest.Start(t), "is a single server, not a node of a Redis Cluster: make its Client with NewClient"},
	} {
		c, err := NewClusterClient(ClusterOptions{Addrs: []string{tc.srv.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Set(ctx, "k", "v")
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "no node answered") || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("SET with %s as the seed = %v; want an error, not sent, that says %q", tc.name, err, tc.want)
		}
		c.Close()
	}
}

// Nodes that give clients a hostname (cluster-preferred-endpoint-type
// hostname), or no endpoint at all (unknown-endpoint: the host the client
// asked, with the port given), are reached by it, in the layout and in
// MOVED alike ("MOVED 14716 localhost:7001", "MOVED 14716 :7001"): a call,
// a pipeline and a transaction follow a slot that moved, and each node
// has one client, under the name the cluster gives, not a second one
// under its IP or the seed's spelling.
func TestClusterHostnameAndUnknownEndpoints(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"hostname", "unknown-endpoint"} {
		t.Run(mode, func(t *testing.T) {
			cl := redistest.StartCluster(t, 0)
			ctx := clusterCtx(t)
			for _, s := range cl.Masters {
				s.MustDo(t, "CONFIG", "SET", "cluster-announce-hostname", "localhost")
				s.MustDo(t, "CONFIG", "SET", "cluster-preferred-endpoint-type", mode)
			}
			want := "localhost"
			if mode == "unknown-endpoint" {
				want = ""
			}
			waitEndpoints(t, ctx, cl, func(*redistest.Server) string { return want })
			// The seed as an IP: the layout names the nodes localhost
			// (hostname), or by the seed's host (unknown-endpoint).
			seed := cl.Masters[0].Addr
			if mode == "unknown-endpoint" {
				seed = "localhost:" + strconv.Itoa(cl.Masters[0].Port)
			}
			c, err := NewClusterClient(ClusterOptions{Addrs: []string{seed}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			keys := []string{"plain", "piped", "{tx}a"}
			for _, k := range keys {
				if err := c.Set(ctx, k, "before"); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Del(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			moved := make([]*redistest.Server, len(keys))
			for i, k := range keys {
				slot := int(hashslot.Of([]byte(k)))
				from, err := cl.SlotOwner(slot)
				if err != nil {
					t.Fatal(err)
				}
				moved[i] = cl.Masters[0]
				if moved[i] == from {
					moved[i] = cl.Masters[1]
				}
				// MoveSlots waits until every node agrees: CLUSTER
				// SETSLOT NODE on each in turn may meet the gossip of
				// the former owner, whose higher epoch takes the slot
				// back on the nodes that had let it go.
				if err := cl.MoveSlots(ctx, from, moved[i], slot); err != nil {
					t.Fatal(err)
				}
				wantMoved := "MOVED " + strconv.Itoa(slot) + " " + want + ":" + strconv.Itoa(moved[i].Port)
				if v, _ := from.Do("GET", k); v != redistest.ReplyError(wantMoved) {
					t.Fatalf("GET %s from its old owner = %v; want %s", k, v, wantMoved)
				}
			}
			if err := c.Set(ctx, keys[0], "after"); err != nil {
				t.Errorf("SET of a moved slot: %v", err)
			}
			if rs, err := c.Pipeline(NoTransaction).Set(keys[1], "after").Exec(ctx); err != nil {
				t.Errorf("pipeline of a moved slot = %v, %v", rs, err)
			}
			if rs, err := c.Pipeline().Set(keys[2], "after").Exec(ctx); err != nil {
				t.Errorf("transaction of a moved slot = %v, %v", rs, err)
			}
			for i, k := range keys {
				if v, err := moved[i].Do("GET", k); err != nil || v != "after" {
					t.Errorf("GET %s from its new owner = %v, %v; want after", k, v, err)
				}
			}
			// Once the refresh the MOVED replies started is over, a
			// client per node, each under its name.
			waitUntil(t, ctx, "one client per node, named localhost", func() bool {
				c.cluster.mu.RLock()
				defer c.cluster.mu.RUnlock()
				if len(c.cluster.nodes) != len(cl.Masters) {
					return false
				}
				for _, s := range cl.Masters {
					if c.cluster.nodes["localhost:"+strconv.Itoa(s.Port)] == nil {
						return false
					}
				}
				return true
			})
		})
	}
}
