package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/redpipe/redpipe"
)

// redpipeClient uses redpipe as its documentation shows: plain calls on the
// shared client (which batches concurrent callers by itself),
// Pipeline(NoTransaction) for plain batches, Pipeline() for MULTI/EXEC and
// Transaction for the optimistic-locking loop with its jittered backoff.
type redpipeClient struct {
	c *redpipe.Client
}

// pollWaitEnv, when set, is redpipe's Options.PollWait for this run (a Go
// duration, or -1 for none): main sets it from -pollwait, and the child
// processes inherit it, so that one policy can be measured against
// another on the same host. Unset, redpipe runs with its defaults.
const pollWaitEnv = "REDPIPE_BENCH_POLLWAIT"

// parsePollWait reads a -pollwait value: "" for the default, -1 (or
// "off") for none, or a duration.
func parsePollWait(s string) (time.Duration, error) {
	switch s {
	case "":
		return 0, nil
	case "-1", "off":
		return -1, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("-pollwait must be a positive duration, or -1 for none, not %q", s)
	}
	return d, nil
}

func newRedpipe(ctx context.Context, addr string) (client, error) {
	opt, err := redpipe.ParseURL("redis://" + addr + "/0")
	if err != nil {
		return nil, err
	}
	if opt.PollWait, err = parsePollWait(os.Getenv(pollWaitEnv)); err != nil {
		return nil, err
	}
	c, err := redpipe.NewClient(opt)
	if err != nil {
		return nil, err
	}
	// As Connect does: the first connection is made now, so that a
	// wrong address fails here rather than in the first measured call.
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return &redpipeClient{c: c}, nil
}

func (r *redpipeClient) Name() string { return "redpipe" }
func (r *redpipeClient) Close()       { r.c.Close() }

func (r *redpipeClient) Concurrent() (client, error) { return r, nil }

func (r *redpipeClient) Incr(ctx context.Context, key string) (int64, error) {
	return r.c.Incr(ctx, key)
}

func (r *redpipeClient) Get(ctx context.Context, key string) (string, error) {
	return r.c.Get(ctx, key)
}

func (r *redpipeClient) Set(ctx context.Context, key, val string) error {
	return r.c.Set(ctx, key, val)
}

func (r *redpipeClient) PipelineIncr(ctx context.Context, key string, n int) (int64, error) {
	return r.incrs(ctx, r.c.Pipeline(redpipe.NoTransaction), key, n, true)
}

func (r *redpipeClient) MultiIncr(ctx context.Context, key string, n int) (int64, error) {
	return r.incrs(ctx, r.c.Pipeline(), key, n, false)
}

// incrs queues n INCR key, and a GET key if get is set, on p, checks the
// INCR replies and returns GET's value, or else the last INCR's.
func (r *redpipeClient) incrs(ctx context.Context, p *redpipe.Pipeline, key string, n int, get bool) (int64, error) {
	for range n {
		p.Incr(key)
	}
	if get {
		p.Get(key)
	}
	replies, err := execAll(ctx, p)
	if err != nil {
		return 0, err
	}
	last, err := consecutive(n, func(i int) (int64, error) { return replies[i].Int64() })
	if err != nil || !get {
		return last, err
	}
	s, err := replies[n].Text()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

// execAll runs p and makes sure there is one reply per queued command.
func execAll(ctx context.Context, p *redpipe.Pipeline) ([]redpipe.Value, error) {
	n := p.Len()
	replies, err := p.Exec(ctx)
	if err == nil {
		err = replyCount(len(replies), n)
	}
	return replies, err
}

func (r *redpipeClient) PipelineSetGet(ctx context.Context, keys, vals []string) error {
	p := r.c.Pipeline(redpipe.NoTransaction)
	for i, k := range keys {
		p.Set(k, vals[i]).Get(k)
	}
	replies, err := execAll(ctx, p)
	for i := 0; err == nil && i < len(keys); i++ {
		s, err1 := replies[2*i].Text()
		g, err2 := replies[2*i+1].Text()
		err = cmp.Or(checkOK(2*i, s, err1), checkValue(2*i+1, g, err2, vals[i]))
	}
	return err
}

func (r *redpipeClient) PipelineSet(ctx context.Context, keys []string, val string) error {
	p := r.c.Pipeline(redpipe.NoTransaction)
	for _, k := range keys {
		p.Set(k, val)
	}
	replies, err := execAll(ctx, p)
	for i := 0; err == nil && i < len(replies); i++ {
		s, err1 := replies[i].Text()
		err = checkOK(i, s, err1)
	}
	return err
}

// BulkSet uses a Stream, which the documentation gives for batches too
// large to hold: it sends chunks as they fill and hands each reply to a
// callback instead of keeping it. Every reply is still checked.
func (r *redpipeClient) BulkSet(ctx context.Context, keys []string, val string) error {
	seen := 0
	s := r.c.Stream(ctx, func(i int, v redpipe.Value) error {
		s, err := v.Text()
		if err := checkOK(i, s, err); err != nil {
			return err
		}
		if i != seen {
			return fmt.Errorf("reply %d came when %d was due", i, seen)
		}
		seen++
		return nil
	})
	for _, k := range keys {
		s.Set(k, val)
	}
	if _, err := s.Close(ctx); err != nil {
		return err
	}
	return replyCount(seen, len(keys))
}

func (r *redpipeClient) WatchIncr(ctx context.Context, key string) (int, error) {
	retries := 0
	// Only the attempt bound is raised, to the figure the other adapters
	// use; the backoff stays at its defaults because it is what is measured.
	opt := redpipe.TxOptions{
		MaxAttempts: maxWatchAttempts,
		OnRetry:     func(int, error) { retries++ },
	}
	replies, err := r.c.Transaction(redpipe.WithTxOptions(ctx, opt), func(tx *redpipe.Tx) error {
		cur, err := tx.Get(ctx, key)
		if err != nil && !errors.Is(err, redpipe.ErrNil) {
			return err
		}
		n, err := parseCounter(cur)
		if err != nil {
			return err
		}
		tx.Multi().Set(key, strconv.FormatInt(n+1, 10))
		return nil
	}, key)
	if err != nil {
		return retries, err
	}
	if err := replyCount(len(replies), 1); err != nil {
		return retries, err
	}
	s, err := replies[0].Text()
	return retries, checkOK(0, s, err)
}

// parseCounter reads a counter stored as a string; a missing key is zero.
func parseCounter(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter holds %q: %w", s, err)
	}
	return n, nil
}
