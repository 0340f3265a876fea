package redpipe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
)

// ForEachMaster calls fn for every master of a cluster, all at once, each
// with a Client of that master alone, and returns when every call has. It
// runs what a cluster Client refuses because it describes or walks one
// server (INFO, SCAN, MEMORY STATS, LATENCY), and gets each master's
// answer to what a cluster Client asks of any one master (CONFIG GET,
// CLIENT LIST, ROLE):
//
//	var mu sync.Mutex
//	memory := map[string]string{} // by master
//	err := c.ForEachMaster(ctx, func(ctx context.Context, node *redpipe.Client) error {
//		info, err := node.Info(ctx, "memory")
//		if err != nil {
//			return err
//		}
//		mu.Lock()
//		defer mu.Unlock()
//		memory[node.Options().Addr] = info
//		return nil
//	})
//
// The masters are those of the cluster's layout when ForEachMaster starts
// (it loads the layout first if no call has), each called once whatever
// moves while fn runs; replicas are not called. Each fn runs in a
// goroutine of its own, with ctx, so what the calls share needs a lock. A
// panic in fn goes on up in the caller's goroutine once every other call
// has returned. A call of fn that ends its goroutine with runtime.Goexit
// (testing.T's FailNow does) is a failure, of unknown outcome.
//
// The error is nil when every fn returned nil; otherwise it joins each
// failure (as errors.Join does) prefixed with its node's address, so that
// errors.Is and errors.As reach every one. OutcomeOf tells of the calls
// as a whole: OutcomeNotSent or OutcomeNotApplied only when every call
// failed so, OutcomeUnknown as soon as one returned nil or failed with an
// unknown outcome, since that one may have changed its master's data and
// running ForEachMaster again would run it twice. Then the error matches
// neither ErrNotApplied nor ErrWatch, whatever one call's failure says:
// errors.As still finds that failure's own error. A master that cannot be
// reached fails fn's calls as any call to it fails (a *DialError), and
// starts a refresh of the layout, so that a later ForEachMaster finds the
// replica promoted in its place. So does a READONLY refusal of a write
// without keys (FLUSHALL, FUNCTION LOAD), given by a master that a
// graceful failover made a replica; fn's reads cannot tell such a node,
// which answers them as a replica until a refresh. fn is not called, and
// a *UsageError is returned, when fn is nil; ctx's error when ctx has
// ended already; ErrClosed when c is closed; a *DialError, not sent, when
// a master serving slots gives no address (its endpoint is "?": see the
// error's text for the setting to change), since fn would miss its data.
//
// The node Client shares the cluster Client's connections, options and
// decoders (SetDecoder on it sets them for the cluster Client). It talks
// to its one server and follows no redirection: a command on a key of a
// slot another master serves gets that master's MOVED error, and is not
// sent on. Its Watch sessions and Transactions stand for that node too,
// and run DBSIZE or INFO there, which those of the cluster Client refuse.
// It may be kept after fn returns, and stays a client of that
// server until the cluster Client is closed, its calls then failing with
// ErrClosed, or until a refresh finds the node gone from the cluster's
// layout (removed, or replaced at another address): its calls in flight
// then finish, and later ones fail, not sent, with a *DialError that says
// the client was released. Close on it is refused with a *UsageError: its connections
// belong to the cluster Client. Its own ForEachMaster calls fn once, with
// itself.
//
// On a Client of one server, ForEachMaster calls fn once, with c.
func (c *Client) ForEachMaster(ctx context.Context, fn func(ctx context.Context, node *Client) error) error {
	if fn == nil {
		return &UsageError{Msg: "ForEachMaster was given a nil function: pass a func(ctx context.Context, node *Client) error to call for each master"}
	}
	if badContext(ctx) {
		return nilContext(ctx, "ForEachMaster")
	}
	if ctx.Err() != nil {
		return notSent(conn.ContextErr(ctx))
	}
	if c.cluster == nil {
		if c.released.Load() || c.isClosed() {
			// A node client that a refresh released says so, as its
			// other calls do, rather than handing fn a client whose
			// calls all fail, or, once closed, passing for a closed
			// cluster Client.
			return c.closedErr()
		}
		// One call needs no goroutine of its own, and its panic then
		// reaches the caller with its stack.
		if err := fn(ctx, c); err != nil {
			return nodesFailed([]error{nodeFailed(c, err)}, 1)
		}
		return nil
	}
	masters, err := c.cluster.masterList(ctx)
	if err != nil {
		return err
	}
	errs := make([]error, len(masters))
	var (
		wg       sync.WaitGroup
		panicMu  sync.Mutex
		panicked bool
		panicVal any
	)
	for i, node := range masters {
		wg.Go(func() {
			returned := false
			defer func() {
				if p := recover(); p != nil {
					panicMu.Lock()
					if !panicked {
						panicked, panicVal = true, p
					}
					panicMu.Unlock()
				} else if !returned {
					// runtime.Goexit, as t.FailNow calls: fn stopped
					// part way, which is no success.
					errs[i] = &uncertainError{msg: "redpipe: fn did not return", err: errGoexit}
				}
			}()
			errs[i] = fn(ctx, node)
			returned = true
		})
	}
	wg.Wait()
	if panicked {
		panic(panicVal)
	}
	var failed []error
	refresh := false
	for i, err := range errs {
		if err == nil {
			continue
		}
		refresh = refresh || unreachable(ctx, err) && connFailed(err) || demotedMaster(err)
		failed = append(failed, nodeFailed(masters[i], err))
	}
	if refresh {
		c.cluster.triggerRefresh()
	}
	if len(failed) == 0 {
		return nil
	}
	return nodesFailed(failed, len(masters))
}

// connFailed tells, of an error of fn that says nothing was sent, one
// that comes of the connection to its node: a dial that failed, a
// connection that did. A call the client refused (*UsageError,
// *ArityError), or one whose own context ended before it was sent, says
// nothing of whether the node can be reached.
func connFailed(err error) bool {
	var de *DialError
	var ce *conn.Error
	return errors.As(err, &de) || errors.As(err, &ce) && ce.Op != "send"
}

// demotedMaster tells an error of fn that holds a READONLY refusal: a
// master refuses no write so, and a replica does, so the node is a master
// no more (a failover has made it its successor's replica).
func demotedMaster(err error) bool {
	var se *Error
	if errors.As(err, &se) && se.Prefix == "READONLY" {
		return true
	}
	// A transaction's writes are refused as they are queued.
	var ae *ExecAbortError
	if errors.As(err, &ae) {
		for _, f := range ae.Failed {
			if errors.As(f.Err, &se) && se.Prefix == "READONLY" {
				return true
			}
		}
	}
	return false
}

// errGoexit is the cause of a call of fn that ended its goroutine with
// runtime.Goexit (as testing's FailNow does) instead of returning.
var errGoexit = errors.New("it ended its goroutine with runtime.Goexit, as testing.T's FailNow does from a goroutine other than the test's")

// nodeFailed names the node whose fn returned err.
func nodeFailed(node *Client, err error) error {
	return fmt.Errorf("redpipe: node %s: %w", node.opt.Addr, err)
}

// nodesError is the error of a ForEachMaster some of whose calls of fn
// failed: it joins their failures, and holds the outcome of the calls as
// a whole, which OutcomeOf reports. Joined alone, the failures would read
// as the first certain outcome among them: a refusal on one master would
// say "not applied" of calls that ran on the others.
type nodesError struct {
	errs    []error // each failure, named by its node; read-only
	outcome Outcome
}

// nodesFailed makes the error of the calls of fn of which failed are the
// failures, out of calls in all. The outcome is certain only when every
// call failed with a certain one: OutcomeNotSent when each was not sent,
// OutcomeNotApplied when each was not sent or not applied.
func nodesFailed(failed []error, calls int) error {
	e := &nodesError{errs: failed, outcome: OutcomeNotSent}
	if len(failed) < calls {
		e.outcome = OutcomeUnknown // a call that returned nil ran
	}
	for _, err := range failed {
		switch o := OutcomeOf(err); {
		case o == OutcomeUnknown:
			e.outcome = OutcomeUnknown
		case o == OutcomeNotApplied && e.outcome == OutcomeNotSent:
			e.outcome = OutcomeNotApplied
		}
	}
	return e
}

// Error lists the failures one a line, as errors.Join does.
func (e *nodesError) Error() string { return errors.Join(e.errs...).Error() }

// Is reaches every failure, as errors.Join's error does, but for what
// says nothing was applied (ErrNotApplied, ErrWatch): that holds of the
// calls as a whole only when the outcome does, and one master's refusal
// must not say it of calls that ran on the others. So the failures are
// not handed to errors.Is through an Unwrap method, which would reach
// them whatever Is says.
func (e *nodesError) Is(target error) bool {
	if e.outcome == OutcomeUnknown && errors.Is(target, ErrNotApplied) {
		return false
	}
	for _, err := range e.errs {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// As finds the first failure that errors.As matches target with.
func (e *nodesError) As(target any) bool {
	for _, err := range e.errs {
		if errors.As(err, target) {
			return true
		}
	}
	return false
}

// masterList returns the clients of the masters of the current layout,
// each once, after loading the layout if no refresh has yet succeeded.
func (r *clusterRouter) masterList(ctx context.Context) ([]*Client, error) {
	if err := r.ready(ctx); err != nil {
		return nil, err
	}
	if err := r.everyMasterAddressed(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return nil, notSent(ErrClosed)
	}
	masters := make([]*Client, 0, len(r.masters))
	seen := make(map[*Client]bool, len(r.masters))
	for _, m := range r.masters {
		if !seen[m] {
			seen[m] = true
			masters = append(masters, m)
		}
	}
	return masters, nil
}

// isClosed reports whether Close has run on c, a single-node client.
func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// errReleased is the cause of the failure of a call on the client of a
// node that has left the cluster's layout (a node removed, or replaced at
// another address). Nothing of the call was sent: the cluster Client
// routes it by the new layout.
var errReleased = errors.New("the node is no longer in the cluster's layout, and its client was released")

// closedErr is the error of a call that c can no longer send, as it was
// closed, or released.
func (c *Client) closedErr() error {
	if c.released.Load() {
		return notSent(&DialError{Addr: c.opt.Addr, Err: errReleased})
	}
	return notSent(ErrClosed)
}

// release stops c, the client of a node that has left the cluster's
// layout, from opening connections: calls that come from now on fail
// with errReleased, not sent. What is in flight goes on: its caller then
// closes the pool, which closes its idle connections at once and those
// lent as they come back, and the shared connection stays until idle
// (see closeIfDone).
func (c *Client) release() {
	c.released.Store(true)
	c.dialMu.Lock()
	c.noDials = true
	c.dialMu.Unlock()
}

// closeIfDone closes c, released, once no call is in flight on it: no
// dial of the shared connection, nothing in line on that connection or on
// one it replaced, no pooled connection lent. It reports whether c is closed. A call that
// took the shared connection just before it closes fails not sent.
func (c *Client) closeIfDone() bool {
	c.dialMu.Lock()
	dialing := c.dialing != nil
	c.dialMu.Unlock()
	// A shared connection replaced while calls were in line on it is
	// closed by retire once they have their replies: closing the client
	// now would cut them short.
	if dialing || c.retiring.Load() > 0 {
		return false
	}
	if cn := c.shared.Load(); cn != nil && !cn.CloseIdle(&DialError{Addr: c.opt.Addr, Err: errReleased}) {
		return false
	}
	if open, _ := c.pool.Stats(); open > 0 {
		return false
	}
	c.close()
	return true
}

// releaseCheck is how often the clients of nodes gone from the layout
// are looked at, until each has no call in flight and is closed.
var releaseCheck = 200 * time.Millisecond

// retireLocked takes the clients of the nodes that are not in keep out of
// the router, releases them, and keeps them in r.retired until they can
// be closed; r.mu is held for writing. It returns them: the caller closes
// their pools once it has let go of r.mu. A node that comes back later
// gets a client of its own.
func (r *clusterRouter) retireLocked(keep map[string]bool) []*Client {
	var gone []*Client
	for addr, n := range r.nodes {
		if !keep[addr] {
			delete(r.nodes, addr)
			gone = append(gone, n)
		}
	}
	for addr, n := range r.replicas {
		if !keep[addr] {
			delete(r.replicas, addr)
			delete(r.down, n)
			gone = append(gone, n)
		}
	}
	for _, n := range gone {
		n.release()
	}
	r.retired = append(r.retired, gone...)
	return gone
}

// closeRetired closes the retired clients that have no call in flight,
// and looks again in releaseCheck while some remain. It holds releaseMu
// throughout, so that Close, which takes it too, finds each retired
// client either closed or back in r.retired.
func (r *clusterRouter) closeRetired() {
	r.releaseMu.Lock()
	defer r.releaseMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	retired := r.retired
	r.retired = nil
	r.mu.Unlock()
	var left []*Client
	for _, n := range retired {
		if !n.closeIfDone() {
			left = append(left, n)
		}
	}
	r.mu.Lock()
	r.retired = append(r.retired, left...)
	again := len(r.retired) > 0 && !r.closed
	r.mu.Unlock()
	if !again {
		return
	}
	r.refMu.Lock()
	defer r.refMu.Unlock()
	if r.releaseTimer == nil {
		r.releaseTimer = time.AfterFunc(releaseCheck, func() {
			r.refMu.Lock()
			r.releaseTimer = nil
			r.refMu.Unlock()
			r.closeRetired()
		})
	}
}
