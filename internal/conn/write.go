package conn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"
)

// send puts cl in line and hands its bytes to the writer. A large send
// with nothing ahead of it is written by the caller (writeDirect). Else a
// send larger than MaxPending is handed over in parts as the writer
// drains, so memory stays bounded; if ctx ends between parts the stream is
// cut mid-command and the connection has to die. A send of one part waits
// only while such a send is under way, or while the queue is full (see
// Options.MaxPending).
func (c *Conn) send(ctx context.Context, cl *call, b []byte) error {
	if len(b) > c.opt.MaxPending {
		return c.sendLarge(ctx, cl, b)
	}
	if ctx.Err() != nil {
		return notSent(ContextErr(ctx))
	}
	c.mu.Lock()
	for {
		switch {
		case c.err != nil || !c.inParts && c.roomLocked(len(b)):
			// One part: appending it under mu keeps it whole.
			return c.sendLocked(ctx, cl, b)
		case c.inParts:
			// The send in parts holds sendSem until its last part is in.
			c.mu.Unlock()
			if err := c.takeSendSem(ctx); err != nil {
				return err
			}
			c.mu.Lock()
			<-c.sendSem // with mu held, no other send in parts can start meanwhile
		default:
			if err := c.awaitRoomLocked(ctx); err != nil {
				return err
			}
		}
	}
}

// takeSendSem waits for sendSem, which a send in parts holds until its
// last part is in, for as long as ctx allows; a caller whose context ended
// meanwhile gets a not-sent error and does not hold it.
func (c *Conn) takeSendSem(ctx context.Context) error {
	select {
	case c.sendSem <- struct{}{}:
	case <-ctx.Done():
		return notSent(ContextErr(ctx))
	case <-c.closed:
		// The connection failed. The send that holds the turn gives it
		// back then, unless user code ended its goroutine (a net.Conn's
		// SetReadDeadline calling runtime.Goexit as the send joined the
		// line): waiting would then last as long as ctx.
		return unsent(c.Err())
	}
	if ctx.Err() != nil {
		<-c.sendSem
		return notSent(ContextErr(ctx))
	}
	return nil
}

// sendLarge sends b, larger than MaxPending: it waits for the sends in
// parts ahead of it and for room for its first part.
func (c *Conn) sendLarge(ctx context.Context, cl *call, b []byte) error {
	if err := c.takeSendSem(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	for c.err == nil && !c.roomLocked(c.opt.MaxPending) {
		if err := c.awaitRoomLocked(ctx); err != nil {
			<-c.sendSem
			return err
		}
	}
	return c.sendParts(ctx, cl, b)
}

// roomLocked reports whether n more bytes may join the queue: the bytes
// waiting for the writer stay within maxQueued, unless none wait. mu is
// held.
func (c *Conn) roomLocked(n int) bool {
	return len(c.wbuf) == 0 || len(c.wbuf)+n <= c.maxQueued
}

// awaitRoomLocked waits, with mu held and released meanwhile, until the
// queue shrinks or the connection fails, and returns with mu held. If ctx
// ends first it returns a not-sent error with mu released.
func (c *Conn) awaitRoomLocked(ctx context.Context) error {
	if c.room == nil {
		c.room = make(chan struct{})
	}
	room := c.room
	c.mu.Unlock()
	select {
	case <-room:
	case <-c.closed:
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		return notSent(ContextErr(ctx))
	}
	c.mu.Lock()
	return nil
}

// roomMadeLocked wakes the senders waiting for room; mu is held.
func (c *Conn) roomMadeLocked() {
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

// notSent is the error of a call that leaves before any of its bytes were
// handed to the socket because ctx ended.
func notSent(err error) error {
	return &Error{Op: "send", Err: err, Unsent: true}
}

// enqueueLocked puts cl, of size bytes, in line; mu is held. It reports
// the connection's sticky error instead when there is one, and then
// releases mu. If nobody holds the read role, cl's caller takes it
// (cl.self), to keep or to pass on (passReadLocked) once it knows how the
// call is written.
func (c *Conn) enqueueLocked(cl *call, size int) error {
	if c.err == nil && !c.reading {
		// A call that comes within the poll budget of the end of the
		// last one is the next call of a caller calling back to back.
		// Its caller polls for its reply, which comes within the budget
		// if the last one did; a caller who paces its calls sleeps on it
		// instead, since a poll per call would cost it more CPU time than
		// the wake-up it saves. The gap is counted from the end of the
		// last call, not its start, so that a caller whose batches each
		// keep the server busy for most of the budget still counts as
		// back to back (see "Figures behind design choices" in
		// bench/RESULTS.md). It skips the check (checkIdleLocked): a syscall
		// per call costs more than the check could find in so short a
		// gap, and a reader goroutine watching the socket would not have
		// seen an end much sooner either.
		gap := time.Since(c.released)
		cl.poll = c.poll.budget > 0 && gap <= c.poll.budget
		if gap > c.poll.gap {
			if err := c.checkIdleLocked(); err != nil {
				// Named as the connection fails, so that this call,
				// which found it closed, gives the same cause.
				err = c.causeLocked(err)
				c.failLocked(err)
				return unsent(err)
			}
		}
		c.reading = true
		cl.self = true
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return unsent(err)
	}
	cl.start, cl.size = c.offset, int64(size)
	c.queue = append(c.queue, cl)
	if c.head == len(c.queue)-1 && c.opt.StallTimeout > 0 {
		c.armLocked()
	}
	return nil
}

// takeDirectLocked reports whether the caller is to write b itself, and
// if so gives it the write role and counts b as taken; mu is held. That is
// when b is large and nothing is waiting to be written ahead of it. Other
// callers may queue behind it meanwhile; the writer sends their bytes
// after.
func (c *Conn) takeDirectLocked(b []byte) bool {
	if c.opt.DirectWrite <= 0 || len(b) < c.opt.DirectWrite || c.writing || len(c.wbuf) > 0 {
		return false
	}
	c.writing = true
	c.offset += int64(len(b))
	c.taken = c.offset
	return true
}

// sendLocked sends b, which fits in one part, with mu held, and releases
// mu.
func (c *Conn) sendLocked(ctx context.Context, cl *call, b []byte) error {
	if err := c.enqueueLocked(cl, len(b)); err != nil {
		return err
	}
	if c.takeDirectLocked(b) {
		if cl.self && cl.own {
			c.pollOwnLocked(cl)
			c.mu.Unlock()
			c.writeOwn(ctx, cl, b)
			return nil
		}
		c.passReadLocked(cl)
		c.mu.Unlock()
		c.writeDirect(ctx, b)
		return nil
	}
	c.appendLocked(b)
	// A lone caller (nothing else in line) writes inline; under
	// concurrency the writer goroutine gathers many callers into one write.
	if !c.writing && c.head == len(c.queue)-1 && len(c.wbuf) <= inlineMax {
		if cl.self {
			if !cl.own {
				c.passReadLocked(cl) // its caller waits for it later, if at all
			} else {
				c.pollOwnLocked(cl)
			}
		}
		c.writeInline()
		return nil
	}
	c.passReadLocked(cl)
	c.mu.Unlock()
	c.wake()
	return nil
}

// pollOwnLocked settles how the caller of cl, who keeps the read role
// for it, waits for its replies; mu is held. It polls at once only for
// replies that all come soon, and unless polls have been coming up empty;
// a call sent back to back that waits for more polls once its last
// replies are near (tail), as the reader goroutine would.
//
// A quiet call, or one with a Grace (a blocking command), is not timed
// for the choice between polling and sleeping: a quiet call's caller
// sleeps whichever way is chosen (due says dueLater), and a blocking
// command is answered when the server has something to give, not when
// the reply is taken. Timed, either would pass for a call of the way
// chosen, or of a trial, and a worker calling BLPOP back to back would
// have the connection switch ways as its queue fills and empties.
func (c *Conn) pollOwnLocked(cl *call) {
	cl.tail = cl.poll && cl.n > c.poll.maxSoon
	cl.poll = cl.poll && cl.n <= c.poll.maxSoon && c.poll.pollOwn(!cl.quiet && cl.grace == 0)
}

// passReadLocked hands the read role to the reader goroutine if cl's
// caller took it; mu is held.
func (c *Conn) passReadLocked(cl *call) {
	if cl.self {
		cl.self = false
		c.poll.untimed()
		c.readTurn <- struct{}{}
	}
}

// sendParts sends b, larger than MaxPending, with mu and sendSem held,
// and releases both. A caller with nothing ahead of it writes b itself;
// otherwise b goes to the writer a part at a time, and inParts keeps other
// sends out until the last part is in.
func (c *Conn) sendParts(ctx context.Context, cl *call, b []byte) error {
	if err := c.enqueueLocked(cl, len(b)); err != nil {
		<-c.sendSem
		return err
	}
	c.passReadLocked(cl)
	if c.takeDirectLocked(b) {
		c.mu.Unlock()
		<-c.sendSem
		c.writeDirect(ctx, b)
		return nil
	}
	c.inParts = true
	defer func() {
		c.mu.Lock()
		c.inParts = false
		c.mu.Unlock()
		<-c.sendSem
	}()
	part := b[:c.opt.MaxPending]
	c.appendLocked(part)
	c.mu.Unlock()
	c.wake()
	for b = b[len(part):]; len(b) > 0; b = b[len(part):] {
		select {
		case <-c.space:
		case <-c.closed:
			return nil // the call has been failed with the connection's error
		case <-ctx.Done():
			c.fail(&Error{Op: "write", Err: fmt.Errorf("send cut short: %w", ContextErr(ctx))})
			return nil
		}
		part = b
		if len(part) > c.opt.MaxPending {
			part = part[:c.opt.MaxPending]
		}
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return nil
		}
		c.appendLocked(part)
		c.mu.Unlock()
		c.wake()
	}
	return nil
}

// coalesceBelow is the pending size under which the writer yields once
// before writing, when other calls are in line, to gather more callers.
const coalesceBelow = 16 << 10

// maxYields bounds those yields. One gathers most of what there is to
// gather; measured with 32 and 512 callers, more yields made fewer but
// later writes and lower throughput.
const maxYields = 1

// inlineMax bounds what a caller writes itself: a small write goes straight
// into the socket buffer, so the caller is not held up.
const inlineMax = 16 << 10

// writeInline is called with mu held and the write role free; it takes the
// role, writes what is pending and releases mu. It sets no write deadline:
// a lone caller's small command lands in an emptied socket buffer at once,
// and on a stalled connection the stall guard ends it, which unblocks the
// write. A deadline here would turn the caller's own timeout into a failure
// of a connection other callers share.
func (c *Conn) writeInline() {
	c.writing = true
	buf := c.takeLocked()
	c.mu.Unlock()
	returned := false
	defer c.ended(&returned, "write", "Write")
	n, err := c.nc.Write(buf)
	returned = true
	if err != nil {
		c.failWrite(n, err)
		return
	}
	if c.release(buf) {
		c.wake()
	}
}

// writeOwn is writeDirect for a caller who holds the read role for b's
// replies. It keeps the role only if the socket takes b whole at once, and
// then reads its replies itself, which spares the hand-off from the reader
// goroutine, a thread wake-up per batch (see "Figures behind design
// choices" in bench/RESULTS.md). A caller blocked in a write reads
// nothing, and a server that stops reading while its replies wait to be
// read would then wait for it for ever; so when the socket takes only part
// of b, the role goes to the reader goroutine before the caller waits to
// write the rest.
func (c *Conn) writeOwn(ctx context.Context, cl *call, b []byte) {
	n := c.poll.writeNow(b)
	if n == len(b) {
		c.endDirect(n)
		return
	}
	c.mu.Lock()
	c.written += int64(n)
	c.passReadLocked(cl)
	c.mu.Unlock()
	c.writeDirect(ctx, b[n:])
}

// writeDirect writes a large send from the caller's buffer; the caller
// holds the write role. Why: copying a batch of megabytes for the writer
// goroutine costs about as much as the kernel's own copy of it, and the
// caller has nothing to do but wait for its replies anyway. Callers that
// come meanwhile queue their bytes for the writer, which is kicked after.
//
// If ctx ends mid-write, a deadline in the past stops the write, so that
// the caller is not held by a slow socket. What is left of b then goes to
// the writer, ahead of the bytes queued meanwhile, as a copied send would
// have: one caller's context does not end a connection others share. Only
// a remainder larger than MaxPending, which a copied send would have cut
// as well, ends the connection, since the stream stopped inside a command.
func (c *Conn) writeDirect(ctx context.Context, b []byte) {
	var fired chan struct{}
	stop := func() bool { return true }
	if ctx.Done() != nil {
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			defer close(fired)
			c.nc.SetWriteDeadline(time.Unix(1, 0))
		})
	}
	n, err := c.nc.Write(b)
	if !stop() {
		<-fired
		c.nc.SetWriteDeadline(time.Time{})
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			if rest := b[n:]; len(rest) <= c.opt.MaxPending {
				c.handOver(n, rest)
				return
			}
			err = fmt.Errorf("send cut short: %w", ContextErr(ctx))
		}
	}
	if err != nil {
		c.failWrite(n, err)
		return
	}
	c.endDirect(n)
}

// endDirect gives up the write role after a direct write whose last n
// bytes the socket took, and kicks the writer for what was queued
// meanwhile.
func (c *Conn) endDirect(n int) {
	c.mu.Lock()
	c.written += int64(n)
	c.writing = false
	more := len(c.wbuf) > 0
	c.settleLocked()
	if more {
		c.wake()
	}
}

// handOver gives the unwritten end of a direct write, of which the socket
// took n bytes, to the writer, ahead of whatever was queued meanwhile, and
// gives up the write role. The rest counts as not taken again, so that
// wbuf still holds the stream from taken on.
func (c *Conn) handOver(n int, rest []byte) {
	c.mu.Lock()
	c.written += int64(n)
	if c.err == nil {
		buf := make([]byte, 0, len(rest)+len(c.wbuf))
		buf = append(append(buf, rest...), c.wbuf...)
		c.wbuf = buf
		c.taken -= int64(len(rest))
	}
	c.writing = false
	c.settleLocked()
	c.wake()
}

// takeLocked takes the pending bytes for writing; mu is held. The bytes
// of dropped calls go first, so that they are never written.
func (c *Conn) takeLocked() []byte {
	if c.dropped > 0 {
		c.sweepLocked()
	}
	buf := c.wbuf
	c.wbuf = c.spare[:0]
	c.spare = nil
	c.taken = c.offset
	c.roomMadeLocked()
	return buf
}

// release gives up the write role after buf was written whole and reports
// whether more is pending.
func (c *Conn) release(buf []byte) bool {
	n := len(buf)
	if cap(buf) > 4*c.opt.MaxPending {
		buf = make([]byte, 0, 4096) // let a one-off burst be collected
	}
	c.mu.Lock()
	c.written += int64(n)
	c.spare = buf[:0]
	c.writing = false
	more := len(c.wbuf) > 0
	c.settleLocked()
	return more
}

func (c *Conn) appendLocked(b []byte) {
	c.wbuf = append(c.wbuf, b...)
	c.offset += int64(len(b))
}

func (c *Conn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// drop marks cl, whose caller is leaving, as dropped if no writer has
// taken any of its bytes, and reports whether it did. Its bytes then wait
// in wbuf for sweepLocked, which runs at once when they are half of what
// waits there or more, so a sweep always frees at least as much as it
// moves, and at the latest before the writer takes wbuf. Taking both the
// call and its bytes out under mu is what keeps every later reply with
// its own call: the call never reaches the socket, so no reply answers it.
func (c *Conn) drop(cl *call) bool {
	c.mu.Lock()
	// With no error yet, a call not taken is still in line: the reader
	// takes out only calls whose bytes were taken, and only fail takes out
	// the rest, setting the error first.
	// A call of no bytes is left alone: it may be overtaken by a direct
	// write, and the sweep only looks past what was taken.
	if c.err != nil || cl.start < c.taken || cl.size == 0 || !cl.state.CompareAndSwap(waiting, dropped) {
		c.mu.Unlock()
		return false
	}
	c.dropped++
	c.droppedBytes += cl.size
	if 2*c.droppedBytes >= int64(len(c.wbuf)) {
		// Not deferred: the sweep may arm the stall limit, and a net.Conn
		// of the user's that ends the goroutine there has mu released.
		c.sweepLocked()
	}
	c.mu.Unlock()
	return true
}

// sweepLocked takes the dropped calls out of line and their bytes out of
// wbuf, moving up the bytes of the calls behind them and the calls' start
// offsets with them; mu is held. The calls in line cover the stream one
// after another, in order, and wbuf holds it from taken on: the dropped
// calls and those behind them start at taken or later (a send in parts may
// have put only some of its bytes in yet, and is last in line).
func (c *Conn) sweepLocked() {
	q := c.queue
	first := q[c.head]
	i := c.head + sort.Search(len(q)-c.head, func(k int) bool { return q[c.head+k].start >= c.taken })
	kept, cut := i, int64(0)
	for _, cl := range q[i:] {
		if cl.state.Load() == dropped {
			cut += cl.size
			putCall(cl)
			continue
		}
		if cut > 0 {
			from := cl.start - c.taken
			to := min(from+cl.size, int64(len(c.wbuf)))
			copy(c.wbuf[from-cut:], c.wbuf[from:to])
			cl.start -= cut
		}
		q[kept] = cl
		kept++
	}
	clear(q[kept:])
	c.queue = q[:kept]
	c.wbuf = c.wbuf[:int64(len(c.wbuf))-cut]
	c.offset -= cut
	c.dropped, c.droppedBytes = 0, 0
	if c.head == len(c.queue) {
		c.queue, c.head = c.queue[:0], 0
	}
	if c.opt.StallTimeout > 0 && (c.head == len(c.queue) || c.queue[c.head] != first) {
		// The stall limit was armed for the first call, which is gone:
		// left as it is, it would end a connection on which nothing is
		// due, the reader asleep in its read.
		c.armLocked()
	}
	c.roomMadeLocked()
}

func (c *Conn) writeLoop() {
	defer c.wg.Done()
	returned := false
	defer c.ended(&returned, "write", "Write")
	c.writeQueued()
	returned = true
}

func (c *Conn) writeQueued() {
	for {
		select {
		case <-c.kick:
		case <-c.closed:
			return
		}
		for {
			// Under concurrency, callers woken by their replies are about
			// to send their next commands: letting them run first turns a
			// trickle of small writes into one larger one. A lone caller
			// writes inline and never waits here.
			for i, last := 0, -1; i < maxYields; i++ {
				c.mu.Lock()
				n := len(c.wbuf)
				busy := n > last && n < coalesceBelow && len(c.queue)-c.head > 1
				c.mu.Unlock()
				if !busy {
					break
				}
				last = n
				runtime.Gosched()
			}
			c.mu.Lock()
			if c.err != nil {
				c.mu.Unlock()
				return
			}
			if c.dropped > 0 {
				c.sweepLocked() // there may be nothing left to write
			}
			if c.writing || len(c.wbuf) == 0 {
				// Nothing to do, or a caller is writing inline and will
				// kick again if more comes meanwhile.
				c.mu.Unlock()
				break
			}
			c.writing = true
			buf := c.takeLocked()
			c.mu.Unlock()

			if n, err := c.nc.Write(buf); err != nil {
				c.failWrite(n, err)
				return
			}
			c.release(buf)
			select {
			case c.space <- struct{}{}:
			default:
			}
		}
	}
}
