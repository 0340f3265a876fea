package main

import (
	"cmp"
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

// rueidisClient uses rueidis as its documentation shows: Do for single
// commands (auto-pipelined when called concurrently, its default), DoMulti
// for batches and MULTI/EXEC, and Dedicated for WATCH. Commands are built
// afresh for every call because rueidis recycles them after sending.
type rueidisClient struct {
	c rueidis.Client
}

func newRueidis(addr string) (client, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		return nil, err
	}
	return &rueidisClient{c: c}, nil
}

func (r *rueidisClient) Name() string { return "rueidis" }
func (r *rueidisClient) Close()       { r.c.Close() }

func (r *rueidisClient) Concurrent() (client, error) { return r, nil }

func (r *rueidisClient) Incr(ctx context.Context, key string) (int64, error) {
	return r.c.Do(ctx, r.c.B().Incr().Key(key).Build()).AsInt64()
}

func (r *rueidisClient) Get(ctx context.Context, key string) (string, error) {
	return r.c.Do(ctx, r.c.B().Get().Key(key).Build()).ToString()
}

func (r *rueidisClient) Set(ctx context.Context, key, val string) error {
	return r.c.Do(ctx, r.c.B().Set().Key(key).Value(val).Build()).Error()
}

// doMulti sends cmds in one DoMulti and makes sure there is one reply each.
func (r *rueidisClient) doMulti(ctx context.Context, cmds rueidis.Commands) ([]rueidis.RedisResult, error) {
	res := r.c.DoMulti(ctx, cmds...)
	return res, replyCount(len(res), len(cmds))
}

func (r *rueidisClient) PipelineIncr(ctx context.Context, key string, n int) (int64, error) {
	cmds := make(rueidis.Commands, 0, n+1)
	for range n {
		cmds = append(cmds, r.c.B().Incr().Key(key).Build())
	}
	res, err := r.doMulti(ctx, append(cmds, r.c.B().Get().Key(key).Build()))
	if err != nil {
		return 0, err
	}
	if _, err := consecutive(n, func(i int) (int64, error) { return res[i].AsInt64() }); err != nil {
		return 0, err
	}
	s, err := res[n].ToString()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

func (r *rueidisClient) PipelineSetGet(ctx context.Context, keys, vals []string) error {
	cmds := make(rueidis.Commands, 0, 2*len(keys))
	for i, k := range keys {
		cmds = append(cmds, r.c.B().Set().Key(k).Value(vals[i]).Build(), r.c.B().Get().Key(k).Build())
	}
	res, err := r.doMulti(ctx, cmds)
	for i := 0; err == nil && i < len(keys); i++ {
		s, err1 := res[2*i].ToString()
		v, err2 := res[2*i+1].ToString()
		err = cmp.Or(checkOK(2*i, s, err1), checkValue(2*i+1, v, err2, vals[i]))
	}
	return err
}

func (r *rueidisClient) PipelineSet(ctx context.Context, keys []string, val string) error {
	cmds := make(rueidis.Commands, 0, len(keys))
	for _, k := range keys {
		cmds = append(cmds, r.c.B().Set().Key(k).Value(val).Build())
	}
	res, err := r.doMulti(ctx, cmds)
	for i := 0; err == nil && i < len(res); i++ {
		s, err1 := res[i].ToString()
		err = checkOK(i, s, err1)
	}
	return err
}

func (r *rueidisClient) MultiIncr(ctx context.Context, key string, n int) (int64, error) {
	cmds := make(rueidis.Commands, 0, n+2)
	cmds = append(cmds, r.c.B().Multi().Build())
	for range n {
		cmds = append(cmds, r.c.B().Incr().Key(key).Build())
	}
	res, err := r.doMulti(ctx, append(cmds, r.c.B().Exec().Build()))
	if err != nil {
		return 0, err
	}
	arr, err := execReplies(res, n)
	if err != nil {
		return 0, err
	}
	return consecutive(n, func(i int) (int64, error) { return arr[i].AsInt64() })
}

// execReplies checks the replies to MULTI and the queued commands and
// returns the n replies inside EXEC's. A nil EXEC (a watch conflict) comes
// back as an error that rueidis.IsRedisNil recognises.
func execReplies(res []rueidis.RedisResult, n int) ([]rueidis.RedisMessage, error) {
	for i := range res[:len(res)-1] {
		if err := res[i].Error(); err != nil {
			return nil, fmt.Errorf("reply %d before EXEC: %w", i, err)
		}
	}
	arr, err := res[len(res)-1].ToArray()
	if err != nil {
		return nil, err
	}
	return arr, replyCount(len(arr), n)
}

func (r *rueidisClient) WatchIncr(ctx context.Context, key string) (int, error) {
	for retries := 0; retries < maxWatchAttempts; retries++ {
		conflict := false
		err := r.c.Dedicated(func(d rueidis.DedicatedClient) error {
			if err := d.Do(ctx, d.B().Watch().Key(key).Build()).Error(); err != nil {
				return err
			}
			cur, err := d.Do(ctx, d.B().Get().Key(key).Build()).ToString()
			if err != nil && !rueidis.IsRedisNil(err) {
				return err
			}
			n, err := parseCounter(cur)
			if err != nil {
				return err
			}
			res := d.DoMulti(ctx,
				d.B().Multi().Build(),
				d.B().Set().Key(key).Value(strconv.FormatInt(n+1, 10)).Build(),
				d.B().Exec().Build())
			arr, err := execReplies(res, 1)
			if rueidis.IsRedisNil(err) {
				conflict = true // EXEC's nil reply: a watched key changed
				return nil
			}
			if err != nil {
				return err
			}
			s, err := arr[0].ToString()
			return checkOK(0, s, err)
		})
		if err != nil {
			return retries, err
		}
		if !conflict {
			return retries, nil
		}
	}
	return maxWatchAttempts, fmt.Errorf("gave up after %d conflicts", maxWatchAttempts)
}

// BulkSet is PipelineSet: the library has no form of pipeline that sends
// while it is being built.
func (r *rueidisClient) BulkSet(ctx context.Context, keys []string, val string) error {
	return r.PipelineSet(ctx, keys, val)
}
