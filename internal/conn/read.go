package conn

import (
	"context"
	"errors"
	"fmt"
	"os"
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
		limit := c.armedFor
		c.mu.Unlock()
		err = fmt.Errorf("no reply for %v while replies were due: %w", limit, err)
	}
	return n, err
}

// armLocked sets the read deadline that the first call in line allows:
// StallTimeout and the call's Grace from now. It clears it when no call
// is in line or the first one may wait without limit. mu is held.
func (c *Conn) armLocked() {
	if c.head < len(c.queue) {
		if g := c.queue[c.head].grace; g >= 0 {
			c.armedFor = c.opt.StallTimeout + time.Duration(g)
			c.nc.SetReadDeadline(time.Now().Add(c.armedFor))
			return
		}
	}
	c.nc.SetReadDeadline(time.Time{})
}

// due tells the poller what the connection waits for.
type due int

const (
	dueNone  due = iota // no reply is due
	dueSoon             // the first call in line waits for a few replies: poll
	dueLater            // it waits for many, which come over a long time: do not poll
)

// due reports whether replies are due, some call being in line, and
// whether the first call waits for more than maxSoon of them. A call's n
// is set before it joins the line and its got is counted under mu, so the
// lock is all this needs.
func (c *Conn) due(maxSoon int) due {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.head == len(c.queue) {
		return dueNone
	}
	if h := c.queue[c.head]; h.n-h.got > maxSoon {
		return dueLater
	}
	return dueSoon
}

// wait blocks until cl finishes or ctx ends. On ctx's end a call none of
// whose bytes were taken leaves the line (drop) and fails as not sent;
// any other is abandoned: it stays in line and the reader drops its
// replies.
func (c *Conn) wait(ctx context.Context, cl *call) error {
	if done := ctx.Done(); done == nil {
		<-cl.done // a receive alone costs less than a select
	} else {
		select {
		case <-cl.done:
		case <-done:
			if c.drop(cl) {
				return notSent(ctx.Err())
			}
			if cl.state.CompareAndSwap(waiting, abandoned) {
				return ctx.Err()
			}
			<-cl.done // finished meanwhile: take the result
		}
	}
	if cl.err != nil {
		err := cl.err
		putCall(cl)
		return err
	}
	return nil
}

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

func (c *Conn) readLoop() {
	defer c.wg.Done()
	for {
		// Every value is decoded, even one whose call was abandoned: only
		// its kind tells a push message, which belongs to no call, from a
		// reply, and miscounting one would shift every later reply.
		v, err := c.rd.ReadValue()
		if err != nil {
			c.fail(&Error{Op: "read", Err: err})
			return
		}
		if v.Kind == resp.Push {
			if c.opt.OnPush != nil {
				c.opt.OnPush(v)
			}
			continue
		}
		// Storing the reply and taking the call out of line happen under
		// the lock, so a concurrent fail either sees the call still in
		// line or not at all, never half done.
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		if c.head == len(c.queue) {
			c.mu.Unlock()
			c.fail(&Error{Op: "read", Err: &resp.ProtocolError{
				Offset: c.rd.Offset(), Expected: "no reply (no command was waiting)", Found: v.Kind.String()}})
			return
		}
		head := c.queue[c.head]
		if head.start >= c.taken {
			// Its bytes have not even been handed to the socket: this
			// reply answers something else, which no call may take.
			c.mu.Unlock()
			c.fail(&Error{Op: "read", Err: &resp.ProtocolError{
				Offset: c.rd.Offset(), Expected: "no reply (the waiting command was not sent yet)", Found: v.Kind.String()}})
			return
		}
		if head.state.Load() != abandoned {
			if head.replies == nil {
				// A large batch's slice is a large allocation: it is made
				// without the lock, which senders and the stall guard take
				// meanwhile. Only this goroutine takes calls out of line,
				// so head is still first after, unless the connection
				// failed meanwhile.
				n := head.n
				c.mu.Unlock()
				r := make([]resp.Value, n)
				c.mu.Lock()
				if c.err != nil {
					c.mu.Unlock()
					return
				}
				head.replies = r
			}
			head.replies[head.got] = v
			if v.Kind == resp.Error || v.Kind == resp.BulkError {
				head.errs++
			}
		}
		head.got++
		done := head.got == head.n
		if done {
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
		// Bytes already here while no call is in line were sent unasked:
		// a reply can only follow its command into the line. Push
		// messages are the exception the protocol makes.
		stray := false
		if c.head == len(c.queue) {
			k, ok := c.rd.PeekKind()
			stray = ok && k != resp.Push
		}
		c.mu.Unlock()
		if done {
			finish(head, nil)
		}
		if stray {
			c.fail(&Error{Op: "read", Err: &resp.ProtocolError{
				Offset: c.rd.Offset(), Expected: "no reply (no command was waiting)", Found: "more data"}})
			return
		}
	}
}
