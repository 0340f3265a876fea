package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// goRedisKV is the part of the command surface the single-command methods
// use; both the plain client and the autopipeliner provide it.
type goRedisKV interface {
	Incr(ctx context.Context, key string) *redis.IntCmd
	Get(ctx context.Context, key string) *redis.StringCmd
	Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
}

// goRedisClient uses go-redis as its documentation shows: the pooled
// client for single commands, Pipelined and TxPipelined for batches,
// Watch with a retry loop on TxFailedErr for optimistic locking, and, for
// many goroutines at once, the client's AutoPipeline, which the README
// recommends for high-concurrency use.
type goRedisClient struct {
	rdb *redis.Client
	kv  goRedisKV
}

func newGoRedis(addr string) (client, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	return &goRedisClient{rdb: rdb, kv: rdb}, nil
}

func (g *goRedisClient) Name() string { return "go-redis" }

// Close closes the client, which also closes its autopipeliner. The
// concurrent view shares both and is closed with its parent.
func (g *goRedisClient) Close() {
	if g.kv == goRedisKV(g.rdb) {
		g.rdb.Close()
	}
}

func (g *goRedisClient) Concurrent() (client, error) {
	// The client caches its autopipeliner, so asking again returns the same.
	ap, err := g.rdb.AutoPipeline()
	if err != nil {
		return nil, err
	}
	return &goRedisClient{rdb: g.rdb, kv: ap}, nil
}

func (g *goRedisClient) Incr(ctx context.Context, key string) (int64, error) {
	return g.kv.Incr(ctx, key).Result()
}

func (g *goRedisClient) Get(ctx context.Context, key string) (string, error) {
	return g.kv.Get(ctx, key).Result()
}

func (g *goRedisClient) Set(ctx context.Context, key, val string) error {
	return g.kv.Set(ctx, key, val, 0).Err()
}

// resultAt reads one queued command's reply, failing instead of panicking
// when the command is not of the expected kind.
func resultAt[T any](cmds []redis.Cmder, i int) (T, error) {
	c, ok := cmds[i].(interface{ Result() (T, error) })
	if !ok {
		var zero T
		return zero, fmt.Errorf("command %d is a %T", i, cmds[i])
	}
	return c.Result()
}

// pipelinedFunc is Pipelined or TxPipelined.
type pipelinedFunc func(context.Context, func(redis.Pipeliner) error) ([]redis.Cmder, error)

// run sends what queue queues and makes sure there is one reply per command.
func (g *goRedisClient) run(ctx context.Context, pipelined pipelinedFunc, want int, queue func(redis.Pipeliner)) ([]redis.Cmder, error) {
	cmds, err := pipelined(ctx, func(p redis.Pipeliner) error { queue(p); return nil })
	if err == nil {
		err = replyCount(len(cmds), want)
	}
	return cmds, err
}

func (g *goRedisClient) PipelineIncr(ctx context.Context, key string, n int) (int64, error) {
	return g.incrs(ctx, g.rdb.Pipelined, key, n, true)
}

func (g *goRedisClient) MultiIncr(ctx context.Context, key string, n int) (int64, error) {
	return g.incrs(ctx, g.rdb.TxPipelined, key, n, false)
}

// incrs sends n INCR key, and a GET key if get is set, checks the INCR
// replies and returns GET's value, or else the last INCR's.
func (g *goRedisClient) incrs(ctx context.Context, pipelined pipelinedFunc, key string, n int, get bool) (int64, error) {
	want := n
	if get {
		want++
	}
	cmds, err := g.run(ctx, pipelined, want, func(p redis.Pipeliner) {
		for range n {
			p.Incr(ctx, key)
		}
		if get {
			p.Get(ctx, key)
		}
	})
	if err != nil {
		return 0, err
	}
	last, err := consecutive(n, func(i int) (int64, error) { return resultAt[int64](cmds, i) })
	if err != nil || !get {
		return last, err
	}
	s, err := resultAt[string](cmds, n)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

func (g *goRedisClient) PipelineSetGet(ctx context.Context, keys, vals []string) error {
	cmds, err := g.run(ctx, g.rdb.Pipelined, 2*len(keys), func(p redis.Pipeliner) {
		for i, k := range keys {
			p.Set(ctx, k, vals[i], 0)
			p.Get(ctx, k)
		}
	})
	for i := 0; err == nil && i < len(keys); i++ {
		s, err1 := resultAt[string](cmds, 2*i)
		v, err2 := resultAt[string](cmds, 2*i+1)
		err = cmp.Or(checkOK(2*i, s, err1), checkValue(2*i+1, v, err2, vals[i]))
	}
	return err
}

func (g *goRedisClient) PipelineSet(ctx context.Context, keys []string, val string) error {
	cmds, err := g.run(ctx, g.rdb.Pipelined, len(keys), func(p redis.Pipeliner) {
		for _, k := range keys {
			p.Set(ctx, k, val, 0)
		}
	})
	for i := 0; err == nil && i < len(cmds); i++ {
		s, err1 := resultAt[string](cmds, i)
		err = checkOK(i, s, err1)
	}
	return err
}

func (g *goRedisClient) WatchIncr(ctx context.Context, key string) (int, error) {
	txf := func(tx *redis.Tx) error {
		cur, err := tx.Get(ctx, key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		n, err := parseCounter(cur)
		if err != nil {
			return err
		}
		cmds, err := g.run(ctx, tx.TxPipelined, 1, func(p redis.Pipeliner) {
			p.Set(ctx, key, strconv.FormatInt(n+1, 10), 0)
		})
		if err != nil {
			return err
		}
		s, err := resultAt[string](cmds, 0)
		return checkOK(0, s, err)
	}
	for retries := 0; retries < maxWatchAttempts; retries++ {
		err := g.rdb.Watch(ctx, txf, key)
		if err == nil {
			return retries, nil
		}
		if !errors.Is(err, redis.TxFailedErr) {
			return retries, err
		}
	}
	return maxWatchAttempts, fmt.Errorf("gave up after %d conflicts", maxWatchAttempts)
}

// BulkSet is PipelineSet: the library has no form of pipeline that sends
// while it is being built.
func (g *goRedisClient) BulkSet(ctx context.Context, keys []string, val string) error {
	return g.PipelineSet(ctx, keys, val)
}
