// Package pool keeps a bounded set of connections that are lent to one user
// at a time: WATCH sessions, blocking commands, very large pipelines.
//
// The pool never decides by itself that a connection is clean. Whoever
// returns one says so through Put's reusable argument, and the pool also
// asks the connection (Idle) before keeping it: a connection with replies in
// flight, an armed WATCH or an open MULTI is closed, never lent again.
package pool

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Get on a closed pool.
var ErrClosed = errors.New("pool closed")

// Conn is what the pool holds.
type Conn interface {
	comparable
	// Idle reports whether the connection is usable with nothing in flight.
	Idle() bool
	Close() error
}

// Pool lends at most Size connections at once, counting idle ones.
type Pool[C Conn] struct {
	dial  func(context.Context) (C, error)
	slots chan struct{} // one token per connection that exists or is being dialed

	mu      sync.Mutex // guards the fields below
	idle    []C
	closed  bool
	maxIdle int
	wake    chan struct{} // closed by Put to wake waiting Gets; nil when none waits
}

// New makes a pool of at most size connections, keeping at most maxIdle of
// them open while unused, made by dial.
func New[C Conn](size, maxIdle int, dial func(context.Context) (C, error)) *Pool[C] {
	if size < 1 {
		size = 1
	}
	if maxIdle < 0 || maxIdle > size {
		maxIdle = size
	}
	return &Pool[C]{dial: dial, slots: make(chan struct{}, size), maxIdle: maxIdle}
}

// Get lends a connection: an idle one, or a new one if the pool is below
// its size. When every connection is lent it waits for one to come back,
// for as long as ctx allows.
func (p *Pool[C]) Get(ctx context.Context) (C, error) {
	var zero C
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return zero, ErrClosed
		}
		for len(p.idle) > 0 {
			c := p.idle[len(p.idle)-1]
			p.idle[len(p.idle)-1] = zero
			p.idle = p.idle[:len(p.idle)-1]
			if c.Idle() {
				p.mu.Unlock()
				return c, nil
			}
			// Died while idle (server closed it): drop it and its slot.
			c.Close()
			<-p.slots
		}
		// Take the wake channel under the same lock that saw no idle
		// connection, so a Put right after cannot be missed.
		if p.wake == nil {
			p.wake = make(chan struct{})
		}
		wake := p.wake
		p.mu.Unlock()

		select {
		case p.slots <- struct{}{}:
			c, err := p.dial(ctx)
			if err != nil {
				<-p.slots
				return zero, err
			}
			return c, nil
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-wake:
			// A connection came back or a slot was freed; look again.
		}
	}
}

// Put gives a connection back. It is kept only if reusable is true, the
// connection is idle and the pool has room for idle ones; otherwise it is
// closed and its slot freed.
func (p *Pool[C]) Put(c C, reusable bool) {
	p.mu.Lock()
	keep := reusable && !p.closed && len(p.idle) < p.maxIdle && c.Idle()
	if keep {
		p.idle = append(p.idle, c)
	}
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
	p.mu.Unlock()
	if !keep {
		c.Close()
		<-p.slots // the freed slot is seen by waiters selecting on slots
	}
}

// Stats tells how many connections exist and how many are idle.
func (p *Pool[C]) Stats() (open, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.slots), len(p.idle)
}

// Close closes the idle connections; lent ones are closed as they come
// back. Get fails from now on.
func (p *Pool[C]) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
		<-p.slots
	}
}
