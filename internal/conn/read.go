package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
)

// stallGuard sits between the socket and the RESP reader. Before each read
// of the socket (once per buffer fill, not per reply) it arms a read
// deadline if replies are due and clears it if none are, so an idle
// connection may stay quiet forever but a stalled one fails. The sender
// arms it too when a call joins an empty line, since the reader may
// already be blocked in a read with no deadline. Both happen under Conn.mu
// so neither can undo the other's decision.
type stallGuard struct{ c *Conn }

func (g stallGuard) Read(p []byte) (int, error) {
	c := g.c
	if c.poll != nil {
		if n, err, ok := c.poll.read(p); ok {
			return n, err
		}
	}
	if c.opt.StallTimeout > 0 {
		c.mu.Lock()
		c.armLocked()
		c.mu.Unlock()
	}
	n, err := c.nc.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.mu.Lock()
		err = c.stalledLocked(err)
		c.mu.Unlock()
	}
	return n, err
}

// stalledLocked is the error of a read that the stall guard's deadline
// ended; mu is held.
func (c *Conn) stalledLocked(err error) error {
	return fmt.Errorf("no reply for %v while replies were due: %w", c.armedFor, err)
}

// armLocked sets the read deadline that the first call in line allows:
// StallTimeout and the call's Grace from now. It clears it when no call
// is in line or the first one may wait without limit. mu is held.
func (c *Conn) armLocked() {
	var t time.Time
	if c.head < len(c.queue) {
		if g := c.queue[c.head].grace; g >= 0 {
			// A StallTimeout near the largest Duration, given to mean
			// "practically never", plus a blocking command's grace would
			// wrap to a deadline in the past and fail the call at once.
			c.armedFor = c.opt.StallTimeout + time.Duration(g)
			if c.armedFor < c.opt.StallTimeout {
				c.armedFor = math.MaxInt64
			}
			t = time.Now().Add(c.armedFor)
		}
	}
	returned := false
	defer c.endedLocked(&returned, "SetReadDeadline")
	c.nc.SetReadDeadline(t)
	returned = true
}

// due tells the poller what the connection waits for.
type due int

const (
	dueNone  due = iota // no reply is due
	dueSoon             // the first call in line waits for a few replies: poll
	dueLater            // it waits for many, which come over a long time, or it is quiet: do not poll
)

// due reports whether replies are due, some call being in line, and
// whether the first call waits for more than maxSoon of them, or is
// quiet. A call's n and quiet are set before it joins the line and its
// got is counted under mu, so the lock is all this needs.
func (c *Conn) due(maxSoon int) due {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.head == len(c.queue) {
		return dueNone
	}
	if h := c.queue[c.head]; h.quiet || h.n-h.got > maxSoon {
		return dueLater
	}
	return dueSoon
}

// wait blocks until cl finishes or ctx ends. On ctx's end a call none of
// whose bytes were taken leaves the line (drop) and fails as not sent;
// any other is abandoned: it stays in line and the reader drops its
// replies.
func (c *Conn) wait(ctx context.Context, cl *call) error {
	_, held, err := c.waitHeld(ctx, cl, false)
	if held {
		putCall(cl)
	}
	return err
}

// kept is what a call abandoned when its context ended had got: the
// first got of its replies, errs of them errors, are the caller's (the
// reader stores no more), and its size bytes are in the stream, or will
// be, as the connection lives on.
type kept struct {
	replies   []resp.Value
	got, errs int
	size      int64
}

// waitHeld is wait, but a call that the failure of the connection
// finished is left to the caller, held, for what it got before (see
// Graced.DoNCut and Pending.WaitCut); the caller recycles it with
// putCall. The call is recycled, or abandoned to the reader, otherwise:
// then k says what it got before.
//
// sole says that the caller is the connection's only user, who ends it
// when a call of its is cut short: on ctx's end a call whose bytes were
// taken fails the connection at once, with ctx's error, and is held as
// after any failure, so that its bytes that the socket never accepted,
// and never will, count as not sent.
func (c *Conn) waitHeld(ctx context.Context, cl *call, sole bool) (k kept, held bool, err error) {
	if cl.self {
		c.readOwn(ctx, cl)
	}
	if done := ctx.Done(); done == nil {
		<-cl.done // a receive alone costs less than a select
	} else {
		select {
		case <-cl.done:
		case <-done:
			if c.drop(cl) {
				return kept{}, false, notSent(ContextErr(ctx))
			}
			if sole {
				c.cutSole(cl, ContextErr(ctx))
			} else if k, ok := c.abandon(cl); ok {
				return k, false, ContextErr(ctx)
			}
			// Finished meanwhile, or by the connection's failure (its
			// writer settles it once its write returns, which the
			// closed socket ends): take the result.
			<-cl.done
		}
	}
	if cl.err != nil {
		return kept{}, true, cl.err
	}
	return kept{}, false, nil
}

// cutSole fails the connection under cl, a call of its sole user (see
// Graced.Sole) whose context ended with err, unless cl was answered whole
// meanwhile (it is finished, or about to be): only a call cut short ends
// the connection. Why: the wait selects at random between the call's end
// and its context's, and a call that ran through would otherwise take
// with it a connection its user goes on with (a Tx's session, and its
// WATCH). Under mu, where the reader stores replies, no reply is stored
// after the check.
func (c *Conn) cutSole(cl *call, err error) {
	c.mu.Lock()
	if c.err == nil && answeredLocked(cl) {
		c.mu.Unlock()
		return
	}
	c.failLocked(&Error{Op: "close", Err: fmt.Errorf("redpipe: connection closed as a call's context ended: %w", err)})
}

// abandon leaves cl, whose caller's context ended, to the reader, which
// drops its replies, and returns what it got until then. Under mu, where
// the reader stores replies, no reply is stored after. It does nothing
// and reports false if cl was answered whole (it is finished, or about
// to be), or the connection failed (cl is then finished, or settled
// soon, with the count of its bytes sent).
func (c *Conn) abandon(cl *call) (kept, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || answeredLocked(cl) {
		return kept{}, false
	}
	// Read before it is abandoned: from then on the reader may recycle
	// it, without mu, once its last reply is in.
	k := kept{replies: cl.replies, got: cl.got, errs: cl.errs, size: cl.size}
	if !cl.state.CompareAndSwap(waiting, abandoned) {
		return kept{}, false
	}
	return k, true
}

// answeredLocked reports whether cl has all its replies: it is finished,
// or about to be, by whoever read the last. mu is held.
func answeredLocked(cl *call) bool { return cl.got == cl.n || cl.state.Load() != waiting }

// finish hands a call its outcome.
func finish(cl *call, err error) {
	cl.err = err
	if cl.state.CompareAndSwap(waiting, finished) {
		cl.done <- struct{}{}
		return
	}
	// Abandoned: its caller is gone and nobody else holds it.
	putCall(cl)
}

// readLoop is the reader goroutine. With selfRead it reads only while it
// holds the read role, which it is handed through readTurn and gives up
// when the line empties; without, it reads for as long as the connection
// lives.
func (c *Conn) readLoop() {
	defer c.wg.Done()
	returned := false
	defer c.ended(&returned, "read", "Read")
	c.readReplies()
	returned = true
}

func (c *Conn) readReplies() {
	for {
		if c.selfRead {
			select {
			case <-c.readTurn:
			case <-c.closed:
				return
			}
		}
		for {
			// Every value is decoded, even one whose call was abandoned:
			// only its kind tells a push message, which belongs to no
			// call, from a reply, and miscounting one would shift every
			// later reply.
			v, err := c.rd.ReadValue()
			if err != nil {
				c.fail(&Error{Op: "read", Err: err})
				return
			}
			ok, idle := c.takeBuffered(v, false)
			if !ok {
				return
			}
			if idle {
				break
			}
		}
	}
}

// maxBatch bounds the values handed out under one hold of mu. Why: under
// concurrency a read brings the replies of many callers, and taking the
// lock once per reply, against the senders who take it to join the line,
// cost more than the decoding.
const maxBatch = 128

// takeBuffered hands out v, the value just read by the holder of the read
// role, together with the whole values buffered behind it (see take). own
// says that the holder is a caller reading its own reply.
func (c *Conn) takeBuffered(v resp.Value, own bool) (ok, idle bool) {
	vals, ends := append(c.vals[:0], v), append(c.ends[:0], c.rd.Offset())
	var err error
	for ok := true; ok && len(vals) < maxBatch; {
		// Only scalars join: whether an aggregate is all there takes a
		// pass over it before the one that decodes it, which for large
		// replies costs more than the lock it would save.
		if k, _ := c.rd.PeekKind(); k.Aggregate() {
			break
		}
		if v, ok, err = c.rd.ReadBuffered(); ok {
			vals, ends = append(vals, v), append(ends, c.rd.Offset())
		}
	}
	c.vals, c.ends = vals, ends
	if own {
		c.ownReads += uint64(len(vals))
	}
	return c.take(vals, ends, err)
}

// readOwn reads the replies of cl, whose caller holds the read role: it
// polls for them first if cl.poll says so, or once its last replies are
// near if cl.tail does, and otherwise sleeps on the socket. It
// stops when ctx ends, or when a reply does not fit the buffer, and then
// gives the role on to the reader goroutine, which reads what cl still
// waits for. It decodes only a value that is wholly buffered, so that
// leaving never cuts one in half. Once cl is answered the role is given up
// if the line is empty, or else on to the reader goroutine.
func (c *Conn) readOwn(ctx context.Context, cl *call) {
	cl.self = false
	stop := ctx.Done()
	came := false // bytes came since the call joined the line
	for cl.state.Load() == waiting {
		if v, ok, err := c.rd.ReadBuffered(); ok || err != nil {
			if err != nil {
				c.fail(&Error{Op: "read", Err: err})
				return
			}
			ok, idle := c.takeBuffered(v, true)
			if !ok || idle {
				return
			}
			continue
		}
		b := c.rd.Spare()
		if len(b) == 0 {
			break // a value larger than the buffer, which the reader grows
		}
		var n int
		var err error
		if cl.tail && cl.n-cl.got <= c.poll.maxSoon {
			cl.tail = false
			cl.poll = c.poll.mayPoll()
		}
		if cl.poll {
			var ok bool
			if n, err, ok = c.poll.readFor(b, stop); !ok {
				cl.poll = false // the budget passed, or ctx ended
				continue
			}
		} else {
			var cut bool
			if n, err, cut = c.sleepRead(ctx, b, came); cut {
				c.rd.Commit(n)
				break
			}
		}
		if err != nil {
			if err == io.EOF && c.rd.Buffered() > 0 {
				err = io.ErrUnexpectedEOF // as the decoder says of a stream that ends inside a value
			}
			c.fail(&Error{Op: "read", Err: err})
			return
		}
		c.rd.Commit(n)
		came = came || n > 0
	}
	c.poll.untimed()
	c.readTurn <- struct{}{}
}

// sleepRead reads into b for a caller reading its own reply, sleeping
// until the socket has something. cut reports that ctx ended first (n
// bytes may have come all the same). A read deadline that passes is the
// stall guard's, armed for the call when it joined the line, and armed
// again here when bytes came since (came), so that it ends only a
// connection where no byte came for its length.
func (c *Conn) sleepRead(ctx context.Context, b []byte, came bool) (n int, err error, cut bool) {
	done := ctx.Done()
	rearm := came && c.opt.StallTimeout > 0
	if done != nil || rearm {
		c.mu.Lock()
		if done != nil {
			select {
			case <-done:
				c.mu.Unlock()
				return 0, nil, true
			default:
			}
			if c.watched != done {
				if c.unwatch != nil {
					c.unwatch()
				}
				c.watched, c.unwatch = done, context.AfterFunc(ctx, func() { c.cutSleep(done) })
			}
			c.sleeper = done
		}
		if rearm {
			c.armLocked()
		}
		c.mu.Unlock()
	}
	n, err = c.poll.waitRead(b)
	if done == nil && (err == nil || !errors.Is(err, os.ErrDeadlineExceeded)) {
		return n, err, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeper = nil
	if c.cut {
		c.cut = false
		if c.opt.StallTimeout > 0 {
			c.armLocked()
		} else {
			c.nc.SetReadDeadline(time.Time{})
		}
		return n, nil, true
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, c.stalledLocked(err), false
	}
	return n, err, false
}

// cutSleep wakes the caller asleep in sleepRead for done, if there is one.
func (c *Conn) cutSleep(done <-chan struct{}) {
	c.mu.Lock()
	if c.sleeper == done && !c.cut {
		c.cut = true
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
	c.mu.Unlock()
}

// checkIdleLocked reads, without waiting, what the socket got while nobody
// read it, before a call that takes the read role joins the line: the
// server may have closed the connection (an idle timeout, CLIENT KILL),
// and a call written after that could not be told from one that ran; or
// it may have sent something no command asked for, which must not pass
// for that call's reply. Push messages stay buffered for the reader. mu is
// held, and the read role is free.
func (c *Conn) checkIdleLocked() *Error {
	n, err := c.poll.readNow(c.rd.Spare())
	c.rd.Commit(n)
	if err != nil {
		return &Error{Op: "read", Err: &closedIdleError{err}}
	}
	if k, ok := c.rd.NextKind(); ok && k != resp.Push {
		off := c.rd.Offset()
		if k == resp.Error || k == resp.BulkError {
			// The server's word before it closes a connection it will
			// not serve: kept if it is all there.
			if v, ok, err := c.rd.ReadBuffered(); ok && err == nil {
				return &Error{Op: "read", Err: &UnaskedReplyError{Msg: v.Str}}
			}
		}
		return &Error{Op: "read", Err: unaskedErr(off, k.String())}
	}
	return nil
}

// UnaskedReplyError is an error reply that came while no command was
// waiting on the connection, which fails with it as with any reply no
// call asked for. A server sends one before it closes a connection it
// will not serve (its maxclients reached, protected mode), before the
// client has said anything: Msg keeps its words.
type UnaskedReplyError struct{ Msg string }

func (e *UnaskedReplyError) Error() string {
	return "the server sent an error while no command was waiting: " + e.Msg
}

// closedIdleError is the cause of a connection that checkIdleLocked found
// closed or failed: no call was in line on it then, so nothing of the call
// that found it was sent, and it belongs on a new connection.
type closedIdleError struct{ err error }

func (e *closedIdleError) Error() string {
	return "the server closed the connection while no call was in line on it (its idle timeout, CLIENT KILL, a restart): " + e.err.Error()
}

func (e *closedIdleError) Unwrap() error { return e.err }

// ClosedIdle reports whether err is the failure of a connection found
// closed while no call was in line on it, before the call that found it
// joined the line (see CheckIdle): nothing of that call was sent.
func ClosedIdle(err error) bool {
	var ce *Error
	var ci *closedIdleError
	return errors.As(err, &ce) && ce.Unsent && errors.As(err, &ci)
}

// CheckIdle reports whether a connection with no call in line is still
// usable, reading without waiting what its socket got while nobody read
// it, as a call that takes the read role does before it joins the line:
// one that its server closed in the ordinary way (an idle timeout, CLIENT
// KILL) fails then, with an error that ClosedIdle recognizes. A
// connection whose reader holds the read role has seen such an end
// already, or will; it is usable until then.
func (c *Conn) CheckIdle() bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	if c.reading {
		c.mu.Unlock()
		return true
	}
	if err := c.checkIdleLocked(); err != nil {
		c.failLocked(err)
		return false
	}
	c.mu.Unlock()
	return true
}

// take hands vals, values just read by the holder of the read role, in
// order, each to the first call in line, or to OnPush; ends[i] is the
// stream offset where vals[i] ends, for errors. derr is the error that
// decoding the value after them gave, if any: the connection then fails
// once they are handed out, without the role being given up between, so
// that no other caller reads a stream known to be corrupt. ok is false when
// the connection failed and reading must stop. idle is true when, with
// selfRead, the line and the buffer were empty after the last and the
// role has been given up.
func (c *Conn) take(vals []resp.Value, ends []int64, derr error) (ok, idle bool) {
	// Storing a reply and taking its call out of line happen under the
	// lock, so a concurrent fail either sees the call still in line or not
	// at all, never half done. The calls answered are told after the lock
	// is released (fin), and always: once out of line no fail reaches
	// them. vals and fin are the role's scratch, done with before the role
	// is given up.
	fin := c.fin[:0]
	var bad error // a value that answers no call
	c.mu.Lock()
	for i, v := range vals {
		if v.Kind == resp.Push {
			if c.opt.OnPush != nil {
				// A push, an aggregate, only ever comes first in a batch
				// (takeBuffered), so the replies before it have reached
				// their calls and those after it have not: an
				// invalidation must not pass the reply it precedes.
				c.mu.Unlock()
				c.opt.OnPush(v)
				c.mu.Lock()
			}
			continue
		}
		if c.err != nil {
			break
		}
		if c.head == len(c.queue) {
			bad = unaskedErr(ends[i], v.Kind.String())
			if v.Kind == resp.Error || v.Kind == resp.BulkError {
				bad = &UnaskedReplyError{Msg: v.Str}
			}
			break
		}
		head := c.queue[c.head]
		if head.start >= c.taken {
			// Its bytes have not even been handed to the socket: this reply
			// answers something else, which no call may take.
			bad = &resp.ProtocolError{Offset: ends[i],
				Expected: "no reply (the waiting command was not sent yet)", Found: v.Kind.String()}
			break
		}
		if v.Kind == resp.Error && c.opt.NoteReadOnly && strings.HasPrefix(v.Str, "READONLY ") {
			c.stale.Or(staleReadOnly)
		}
		if v.Kind == resp.Error && protocolRefusal(v.Str) && head.size > minRefused {
			c.refusal = v.Str
		} else if c.refusal != "" {
			// The server went on after it: it was no refusal of the
			// server's own (a script may return any error), and a later
			// failure has another cause.
			c.refusal = ""
		}
		if head.state.Load() != abandoned {
			if head.replies == nil {
				// A large batch's slice is a large allocation: it is made
				// without the lock, which senders and the stall guard take
				// meanwhile. Only the holder of the read role takes calls
				// out of line, so head is still first after, unless the
				// connection failed meanwhile.
				n := head.n
				c.mu.Unlock()
				r := make([]resp.Value, n)
				c.mu.Lock()
				if c.err != nil {
					break
				}
				head.replies = r
			}
			head.replies[head.got] = v
			if v.Kind == resp.Error || v.Kind == resp.BulkError {
				head.errs++
			}
		}
		head.got++
		if head.got == head.n {
			fin = append(fin, head)
			c.queue[c.head] = nil
			c.head++
			if c.head == len(c.queue) {
				c.queue, c.head = c.queue[:0], 0
			} else if c.head > 1024 && c.head*2 > len(c.queue) {
				n := copy(c.queue, c.queue[c.head:])
				clear(c.queue[n:])
				c.queue, c.head = c.queue[:n], 0
			}
		}
	}
	clear(vals) // the calls hold their replies now
	if bad == nil {
		bad = derr
	}
	// Bytes already here while no call is in line were sent unasked: a
	// reply can only follow its command into the line. Push messages are
	// the exception the protocol makes.
	if bad == nil && c.err == nil && c.head == len(c.queue) {
		if k, ok := c.rd.NextKind(); ok && k != resp.Push {
			bad = unaskedErr(c.rd.Offset(), "more data")
		}
	}
	failed := bad != nil || c.err != nil
	if !failed && c.selfRead && c.releaseIdleLocked() {
		// The next holder may take the role as soon as mu is released, so
		// its scratch is done with first, telling the calls under the
		// lock: this holds the senders up only when a burst ends.
		c.fin = finishAll(fin)
		c.mu.Unlock()
		return true, true
	}
	c.mu.Unlock()
	c.fin = finishAll(fin)
	if bad != nil {
		c.fail(&Error{Op: "read", Err: bad})
	}
	return !failed, false
}

// protocolRefusal reports whether s, an error reply, is the server's
// refusal of the bytes it was sent, after which it closes the connection.
func protocolRefusal(s string) bool { return strings.HasPrefix(s, "ERR Protocol error") }

// minRefused is the size a call must exceed for its "ERR Protocol error"
// to be taken for the server's refusal. What a client that writes
// well-formed commands gets refused is an argument longer than the
// server's proto-max-bulk-len, which the server allows no lower than
// 1 MiB. A shorter call's is a script's or a function's own words
// (redis.error_reply), after which the server goes on: kept while it is
// the last reply read, it would be laid to the connection's later failure
// however long after, on a session or a pooled connection that sat idle
// until the server's timeout or a CLIENT KILL closed it.
const minRefused = 1 << 20

// unaskedErr is the error of a value, found, that came while no call was
// in line, at stream offset off.
func unaskedErr(off int64, found string) error {
	return &resp.ProtocolError{Offset: off, Expected: "no reply (no command was waiting)", Found: found}
}

// finishAll tells the calls in fin, all answered, that they are, and
// returns fin emptied for reuse.
func finishAll(fin []*call) []*call {
	for _, cl := range fin {
		finish(cl, nil)
	}
	clear(fin)
	return fin[:0]
}

// releaseIdleLocked gives up the read role if no call is in line and
// nothing is buffered, and reports whether it did; mu is held.
func (c *Conn) releaseIdleLocked() bool {
	if c.err != nil || c.head < len(c.queue) || c.rd.Buffered() > 0 {
		return false
	}
	c.reading = false
	c.released = time.Now()
	c.poll.timed(c.released)
	return true
}
