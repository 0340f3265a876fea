package redpipe

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/pool"
)

// ErrPoolExhausted is matched (errors.Is) by the error of a call that
// waited for one of the pool's connections (Options.PoolSize) until its
// context ended, every connection being lent: to Watch sessions and
// Transactions, blocking commands, Streams or large pipelines. The error
// says how many are lent to what. It matches the context's error too, and
// nothing was sent.
var ErrPoolExhausted = errors.New("redpipe: connection pool exhausted")

// lendUse is what a pooled connection is lent for.
type lendUse int

const (
	lendSession  lendUse = iota // a Watch session, Transaction's included
	lendBlocking                // a blocking command, alone or in a pipeline
	lendStream                  // a Stream
	lendLarge                   // a command or pipeline too large for the shared connection
	lendUses
)

// lendNames name each use in the error of an exhausted pool.
var lendNames = [lendUses]string{
	lendSession:  "Watch sessions or Transactions",
	lendBlocking: "blocking commands",
	lendStream:   "Streams",
	lendLarge:    "large pipelines",
}

// lentCounts counts the pool's connections lent, by use: incremented by
// getDedicated, decremented by putDedicated.
type lentCounts [lendUses]atomic.Int64

// putDedicated gives back a connection that getDedicated lent, once:
// whoever holds it forgets it as it calls this.
func (c *Client) putDedicated(d *dedicated, reusable bool) {
	c.lent[d.use].Add(-1)
	c.pool.Put(d, reusable)
}

// exhaustedError is the error of a wait for a pooled connection that ended
// with its context, every connection being lent.
type exhaustedError struct {
	err error // the context's
	msg string
}

func (e *exhaustedError) Error() string { return e.msg }
func (e *exhaustedError) Unwrap() error { return e.err }
func (e *exhaustedError) Is(target error) bool {
	return target == ErrPoolExhausted
}

// exhausted makes the error of a wait for a pooled connection that ctx
// ended, all size connections being lent.
func (c *Client) exhausted(ctx context.Context, size int) error {
	err := conn.ContextErr(ctx)
	var b strings.Builder
	b.WriteString("redpipe: not sent: ")
	b.WriteString(err.Error())
	b.WriteString(" while waiting for a pooled connection")
	if c.front != nil || c.replica {
		b.WriteString(" of node " + c.opt.Addr)
	}
	b.WriteString(": the pool is exhausted, all " + strconv.Itoa(size) + " (Options.PoolSize) lent")
	sep := ": "
	var counted int64
	for u := range lendUses {
		if n := c.lent[u].Load(); n > 0 {
			b.WriteString(sep + strconv.FormatInt(n, 10) + " to " + lendNames[u])
			sep = ", "
			counted += n
		}
	}
	if rest := int64(size) - counted; rest > 0 {
		// Counted apart from the pool's slots: a connection being
		// dialed, checked before it is lent, or closed as it comes back.
		b.WriteString(sep + strconv.FormatInt(rest, 10) + " being dialed, checked or closed")
	}
	b.WriteString("; Close each Tx (defer tx.Close()) and Stream once done with it; " +
		"a Watch, Transaction, blocking command or Stream called inside a Transaction's fn waits for a connection " +
		"while fn holds one, and never gets it when Transactions hold them all; or raise Options.PoolSize")
	return &exhaustedError{err: err, msg: b.String()}
}

// poolExhausted tells the error of pool.Get that says every connection
// was lent until ctx ended.
func poolExhausted(err error) (size int, ok bool) {
	var pe *pool.ExhaustedError
	if errors.As(err, &pe) {
		return pe.Size, true
	}
	return 0, false
}
