package main

import (
	"cmp"
	"context"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/internal/hashslot"
)

// clusterClient is what the cluster scenarios need from a library's
// Redis Cluster client. As for client, each adapter follows its library's
// documentation, and methods that take many replies check every one.
type clusterClient interface {
	Name() string

	Get(ctx context.Context, key string) (string, error)
	Set(ctx context.Context, key, val string) error

	// PipelineSetGet sends SET keys[i] vals[i]; GET keys[i] for every i in
	// one plain pipeline, whose keys are in many slots, and checks every
	// reply.
	PipelineSetGet(ctx context.Context, keys, vals []string) error
	// MGet reads keys, which are in many slots, in the library's way of
	// reading many keys at once in a cluster, and returns their values in
	// the order of keys. Every key must exist.
	MGet(ctx context.Context, keys []string) ([]string, error)

	// Concurrent is as for client.
	Concurrent() (clusterClient, error)

	Close()
}

// openClusterClient connects the named library to the cluster whose
// masters are at addrs.
func openClusterClient(ctx context.Context, name string, addrs []string) (clusterClient, error) {
	var (
		c   clusterClient
		err error
	)
	switch name {
	case "redpipe":
		c, err = newRedpipeCluster(ctx, addrs)
	case "go-redis":
		c = newGoRedisCluster(addrs)
	case "rueidis":
		c, err = newRueidisCluster(addrs)
	default:
		return nil, fmt.Errorf("unknown client %q", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: connecting to the cluster at %v: %w", name, addrs, err)
	}
	return c, nil
}

// checkValues is the check of the values read for keys against want.
func checkValues(got []string, want func(i int) string) error {
	for i, v := range got {
		if w := want(i); v != w {
			return fmt.Errorf("value %d is %q, want %q", i, v, w)
		}
	}
	return nil
}

// redpipeCluster uses redpipe's cluster client as its documentation
// shows: the same Client as for one node, made by ConnectCluster.
type redpipeCluster struct {
	c *redpipe.Client
}

func newRedpipeCluster(ctx context.Context, addrs []string) (clusterClient, error) {
	opt := redpipe.ClusterOptions{Addrs: addrs}
	var err error
	if opt.PollWait, err = parsePollWait(os.Getenv(pollWaitEnv)); err != nil {
		return nil, err
	}
	c, err := redpipe.NewClusterClient(opt)
	if err != nil {
		return nil, err
	}
	// As ConnectCluster does: the layout is loaded now, so that a wrong
	// address fails here rather than in the first measured call.
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return &redpipeCluster{c: c}, nil
}

func (r *redpipeCluster) Name() string                               { return "redpipe" }
func (r *redpipeCluster) Close()                                     { r.c.Close() }
func (r *redpipeCluster) Concurrent() (clusterClient, error)         { return r, nil }
func (r *redpipeCluster) Set(ctx context.Context, k, v string) error { return r.c.Set(ctx, k, v) }

func (r *redpipeCluster) Get(ctx context.Context, key string) (string, error) {
	return r.c.Get(ctx, key)
}

func (r *redpipeCluster) PipelineSetGet(ctx context.Context, keys, vals []string) error {
	return (&redpipeClient{c: r.c}).PipelineSetGet(ctx, keys, vals)
}

// MGet is the client's MGet, which splits keys of many slots into one
// MGET per slot, sends them as one plain pipeline and puts the values
// back in the order of the keys.
func (r *redpipeCluster) MGet(ctx context.Context, keys []string) ([]string, error) {
	vals, err := r.c.MGet(ctx, keys...)
	if err != nil {
		return nil, err
	}
	if err := replyCount(len(vals), len(keys)); err != nil {
		return nil, err
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		if out[i], err = v.Text(); err != nil {
			return nil, fmt.Errorf("value %d: %w", i, err)
		}
	}
	return out, nil
}

// slotGroup is the keys of one slot and where each stands among all.
type slotGroup struct {
	keys []string
	at   []int
}

// groupBySlot groups keys by hash slot, groups in the order of their
// first key, for a library that leaves that to its caller. The slot
// function is redpipe's, which is tested against the server's CLUSTER
// KEYSLOT; a wrong slot would show as a CROSSSLOT or MOVED error, not as
// a wrong value.
func groupBySlot(keys []string) []slotGroup {
	var groups []slotGroup
	index := make(map[uint16]int, len(keys))
	for i, k := range keys {
		s := hashslot.Slot(k)
		g, ok := index[s]
		if !ok {
			g = len(groups)
			index[s] = g
			groups = append(groups, slotGroup{})
		}
		groups[g].keys = append(groups[g].keys, k)
		groups[g].at = append(groups[g].at, i)
	}
	return groups
}

// goRedisCluster uses go-redis's ClusterClient as its documentation shows:
// the pooled client for single commands, Pipelined for batches (which it
// splits per node) and its AutoPipeline for many goroutines at once.
type goRedisCluster struct {
	rdb *redis.ClusterClient
	kv  goRedisKV
}

func newGoRedisCluster(addrs []string) clusterClient {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	return &goRedisCluster{rdb: rdb, kv: rdb}
}

func (g *goRedisCluster) Name() string { return "go-redis" }

// Close closes the client, which also closes its autopipeliner; the
// concurrent view is closed with its parent.
func (g *goRedisCluster) Close() {
	if g.kv == goRedisKV(g.rdb) {
		g.rdb.Close()
	}
}

func (g *goRedisCluster) Concurrent() (clusterClient, error) {
	ap, err := g.rdb.AutoPipeline()
	if err != nil {
		return nil, err
	}
	return &goRedisCluster{rdb: g.rdb, kv: ap}, nil
}

func (g *goRedisCluster) Get(ctx context.Context, key string) (string, error) {
	return g.kv.Get(ctx, key).Result()
}

func (g *goRedisCluster) Set(ctx context.Context, key, val string) error {
	return g.kv.Set(ctx, key, val, 0).Err()
}

func (g *goRedisCluster) PipelineSetGet(ctx context.Context, keys, vals []string) error {
	cmds, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			p.Set(ctx, k, vals[i], 0)
			p.Get(ctx, k)
		}
		return nil
	})
	if err == nil {
		err = replyCount(len(cmds), 2*len(keys))
	}
	for i := 0; err == nil && i < len(keys); i++ {
		s, err1 := resultAt[string](cmds, 2*i)
		v, err2 := resultAt[string](cmds, 2*i+1)
		err = cmp.Or(checkOK(2*i, s, err1), checkValue(2*i+1, v, err2, vals[i]))
	}
	return err
}

// MGet sends one MGET per slot in one pipeline: the ClusterClient's own
// MGet sends the command whole to the first key's slot, which refuses
// keys of other slots (CROSSSLOT). The keys are grouped with redpipe's
// slot function, as go-redis keeps its own internal.
func (g *goRedisCluster) MGet(ctx context.Context, keys []string) ([]string, error) {
	groups := groupBySlot(keys)
	cmds, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, gr := range groups {
			p.MGet(ctx, gr.keys...)
		}
		return nil
	})
	if err == nil {
		err = replyCount(len(cmds), len(groups))
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, len(keys))
	for i, gr := range groups {
		vals, err := resultAt[[]any](cmds, i)
		if err == nil {
			err = replyCount(len(vals), len(gr.keys))
		}
		if err != nil {
			return nil, fmt.Errorf("MGET %d: %w", i, err)
		}
		for j, v := range vals {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("MGET %d: value %d is %T %v", i, j, v, v)
			}
			out[gr.at[j]] = s
		}
	}
	return out, nil
}

// rueidisCluster uses rueidis as its documentation shows: NewClient finds
// out that the seeds are a cluster; Do for single commands (auto-pipelined
// when called concurrently), DoMulti for batches, which it splits per
// node, and its MGet helper, which groups the keys by slot into one MGET
// per slot sent with DoMulti.
type rueidisCluster struct {
	rueidisClient
}

func newRueidisCluster(addrs []string) (clusterClient, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs})
	if err != nil {
		return nil, err
	}
	return &rueidisCluster{rueidisClient{c: c}}, nil
}

func (r *rueidisCluster) Concurrent() (clusterClient, error) { return r, nil }

func (r *rueidisCluster) MGet(ctx context.Context, keys []string) ([]string, error) {
	m, err := rueidis.MGet(r.c, ctx, keys)
	if err != nil {
		return nil, err
	}
	if err := replyCount(len(m), len(keys)); err != nil {
		return nil, err
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		msg, ok := m[k]
		if !ok {
			return nil, fmt.Errorf("no value for key %d", i)
		}
		if out[i], err = msg.ToString(); err != nil {
			return nil, fmt.Errorf("value %d: %w", i, err)
		}
	}
	return out, nil
}
