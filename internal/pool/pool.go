// Package pool keeps a bounded set of connections that are lent to one user
// at a time: WATCH sessions, blocking commands, very large pipelines.
//
// The pool never decides by itself that a connection is clean. Whoever
// returns one says so through Put's reusable argument, and the pool also
// asks the connection (Idle) before keeping it: a connection with replies in
// flight, an armed WATCH or an open MULTI is closed, never lent again.
//
// Time is the other reason to let a connection go: one idle for
// MaxIdleTime, or open for MaxAge, is closed rather than lent, and one idle
// for CheckAfter is checked before it is lent. The pool has no goroutine of
// its own: it looks at its idle connections whenever one is taken or given
// back.
//
// Dials that would fail the same way share the failure. While a dial is in
// flight, its outcome unknown, a Get that would dial waits for it instead
// (for as long as its context allows): if that dial fails, every Get that
// waited returns its error, so a server that refuses connections, or
// refuses the handshake, meets one dial rather than one from every
// caller; if it succeeds, those that waited dial at once, side by side,
// so that the pool still grows to its size under load.
package pool

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"
)

// ErrClosed is returned by Get on a closed pool.
var ErrClosed = errors.New("pool closed")

// ExhaustedError is Get's error when its context ended while it waited
// for a connection, every one of the pool's being lent.
type ExhaustedError struct {
	Size int   // the pool's size: how many were lent
	Err  error // the context's error
}

func (e *ExhaustedError) Error() string {
	return "every one of the pool's " + strconv.Itoa(e.Size) + " connections is lent: " + e.Err.Error()
}

func (e *ExhaustedError) Unwrap() error { return e.Err }

// Conn is what the pool holds.
type Conn interface {
	comparable
	// Idle reports whether the connection is usable with nothing in flight.
	Idle() bool
	Close() error
}

// Config sets up a pool. The zero value of each time limit means none.
type Config[C Conn] struct {
	// Dial makes a new connection.
	Dial func(context.Context) (C, error)
	// Size bounds the connections that exist at once, lent or idle (at
	// least 1).
	Size int
	// MaxIdle bounds the connections kept open while unused, at most Size;
	// 0 keeps none.
	MaxIdle int
	// MaxIdleTime: a connection idle for this long is closed, not lent.
	MaxIdleTime time.Duration
	// MaxAge: a connection dialed this long ago is closed when it comes
	// back or is taken from the idle ones, never lent again.
	MaxAge time.Duration
	// Check, when set, is run with the borrower's context on a connection
	// idle for CheckAfter or longer (0: every time) before it is lent. A
	// connection that fails it is closed, and Get looks for another.
	Check      func(context.Context, C) error
	CheckAfter time.Duration
	// Alive, when set, is asked before an idle connection that is not
	// to be Checked is lent: it looks, without waiting, whether the
	// connection is still open (one its server closed in the ordinary
	// way is seen so at once). One that is not is closed, and Get looks
	// for another.
	Alive func(C) bool
	// Now is the clock (time.Now when nil); tests set their own.
	Now func() time.Time
}

// Pool lends at most Size connections at once, counting idle ones.
type Pool[C Conn] struct {
	cfg   Config[C]     // read-only after New
	slots chan struct{} // one token per connection that exists or is being dialed

	mu     sync.Mutex      // guards the fields below
	idle   []idleConn[C]   // oldest first: Put appends, Get takes the last
	born   map[C]time.Time // when each open connection was dialed; only with MaxAge
	closed bool
	wake   chan struct{} // closed by Put to wake waiting Gets; nil when none waits

	// probe is the dial in flight that other Gets wait for, nil when
	// none is; set and cleared by the Get that makes it.
	probe *probe
	// waiting counts the Gets waiting for a probe.
	waiting int
}

// probe is a dial whose outcome Gets that would dial wait for.
type probe struct {
	done chan struct{} // closed when err is set
	// err is the dial's failure, to be shared; nil when the dial
	// succeeded, or failed for a reason of its caller's own (its context
	// ended, or its deadline came), which tells the others nothing of
	// the server.
	err error
	ok  bool // the dial succeeded
}

// idleConn is a connection waiting in the pool, and when it came back.
type idleConn[C Conn] struct {
	c     C
	since time.Time
}

// New makes a pool as cfg says.
func New[C Conn](cfg Config[C]) *Pool[C] {
	cfg.Size = max(cfg.Size, 1)
	cfg.MaxIdle = min(max(cfg.MaxIdle, 0), cfg.Size)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Pool[C]{cfg: cfg, slots: make(chan struct{}, cfg.Size)}
	if cfg.MaxAge > 0 {
		p.born = make(map[C]time.Time)
	}
	return p
}

// Get lends a connection: an idle one, or a new one if the pool is below
// its size. When every connection is lent it waits for one to come back,
// for as long as ctx allows, and fails with an *ExhaustedError if ctx
// ends while every connection is lent. An idle connection that is too old, or fails
// its check, is closed and another is looked for, so its failure is not
// the caller's; only ctx ending during a check is. A Get that would dial
// while another's dial is in flight waits for that one (see the package
// documentation), and returns its error, the same value, if it fails for
// any reason but the end of that caller's context, or its deadline
// come.
func (p *Pool[C]) Get(ctx context.Context) (C, error) {
	var zero C
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	// cleared is set once a dial this Get waited for has succeeded: the
	// server takes connections, and this Get dials without waiting for
	// another, so that successful dials run side by side.
	cleared := false
	for {
		now := p.cfg.Now()
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return zero, ErrClosed
		}
		stale := p.expireLocked(now)
		var (
			c     C
			since time.Time
			found bool
		)
		for len(p.idle) > 0 && !found {
			e := p.idle[len(p.idle)-1]
			p.idle[len(p.idle)-1] = idleConn[C]{}
			p.idle = p.idle[:len(p.idle)-1]
			if e.c.Idle() && !p.tooOldLocked(e.c, now) {
				c, since, found = e.c, e.since, true
				break
			}
			// Died while idle (the server closed it), or too old.
			p.forgetLocked(e.c)
			stale = append(stale, e.c)
		}
		// Take the wake channel under the same lock that saw no idle
		// connection, so a Put right after cannot be missed.
		var (
			wake  chan struct{}
			slots = p.slots
			pr    *probe
		)
		if !found {
			if p.wake == nil {
				p.wake = make(chan struct{})
			}
			wake = p.wake
			if p.probe != nil && !cleared {
				// Another's dial is in flight: wait for its outcome
				// (or an idle connection) rather than dial beside it.
				pr, slots = p.probe, nil
				p.waiting++
			}
		}
		p.mu.Unlock()
		p.discard(stale...)

		if found {
			if p.cfg.Check == nil || now.Sub(since) < p.cfg.CheckAfter {
				if p.cfg.Alive == nil || p.cfg.Alive(c) {
					return c, nil
				}
			} else if p.cfg.Check(ctx, c) == nil {
				return c, nil
			}
			p.mu.Lock()
			p.forgetLocked(c)
			p.mu.Unlock()
			p.discard(c)
			if err := ctx.Err(); err != nil {
				return zero, err
			}
			continue
		}

		var probeDone chan struct{}
		if pr != nil {
			probeDone = pr.done
		}
		select {
		case slots <- struct{}{}:
			c, again, err := p.dial(ctx, cleared)
			if again {
				continue
			}
			return c, err
		case <-probeDone:
			p.unwait()
			if pr.err != nil {
				return zero, pr.err
			}
			cleared = pr.ok
		case <-ctx.Done():
			if pr != nil {
				p.unwait()
			}
			// Exhausted only if, as it ended, no slot was free and no
			// connection had come back: a Put since the look above
			// makes both this case and wake ready, and select picks
			// either. A Get that waited for another's dial did not
			// look at the slots, but one whose dial holds the last of
			// them waited for a full pool all the same.
			p.mu.Lock()
			lent := len(p.idle) == 0 && len(p.slots) == cap(p.slots)
			p.mu.Unlock()
			if !lent {
				return zero, ctx.Err()
			}
			return zero, &ExhaustedError{Size: p.cfg.Size, Err: ctx.Err()}
		case <-wake:
			// A connection came back or a slot was freed; look again.
			if pr != nil {
				p.unwait()
			}
		}
	}
}

// dial makes a connection with the slot its caller took. Unless cleared
// (a dial it waited for succeeded), the caller becomes the probe that
// others wait for, or, should another have become it meanwhile, gives
// the slot back and reports again, to wait for that one.
func (p *Pool[C]) dial(ctx context.Context, cleared bool) (c C, again bool, err error) {
	var pr *probe
	if !cleared {
		p.mu.Lock()
		if p.probe != nil {
			p.mu.Unlock()
			<-p.slots
			return c, true, nil
		}
		pr = &probe{done: make(chan struct{})}
		p.probe = pr
		p.mu.Unlock()
	}
	// The probe is ended however Dial ends: a panic there would otherwise
	// leave every later Get waiting for it.
	returned := false
	defer func() {
		if pr == nil {
			return
		}
		p.mu.Lock()
		p.probe = nil
		p.mu.Unlock()
		switch {
		case !returned:
			// Dial panicked: the others learn nothing, and look again.
		case err == nil:
			pr.ok = true
		case ctx.Err() == nil && !pastDeadline(ctx):
			pr.err = err
		}
		close(pr.done)
	}()
	c, err = p.cfg.Dial(ctx)
	returned = true
	if err != nil {
		<-p.slots
		return c, false, err
	}
	if p.born != nil {
		p.mu.Lock()
		p.born[c] = p.cfg.Now()
		p.mu.Unlock()
	}
	return c, false, nil
}

// pastDeadline tells whether ctx's deadline has come, whether or not
// ctx says so yet. A dial under a deadline fails with a timeout as the
// deadline comes (the socket's deadline is set from it), which may be
// before the context's own timer ends it: that failure is the caller's,
// and says nothing of the server.
func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// unwait counts a Get that waited for a probe as no longer waiting.
func (p *Pool[C]) unwait() {
	p.mu.Lock()
	p.waiting--
	p.mu.Unlock()
}

// Waiting tells how many Gets wait for another's dial.
func (p *Pool[C]) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting
}

// Put gives a connection back. It is kept only if reusable is true, the
// connection is idle and not too old, and the pool has room for idle ones;
// otherwise it is closed and its slot freed.
func (p *Pool[C]) Put(c C, reusable bool) {
	p.mu.Lock()
	now := p.cfg.Now() // under the lock, so that idle stays oldest first
	stale := p.expireLocked(now)
	keep := reusable && !p.closed && len(p.idle) < p.cfg.MaxIdle && c.Idle() && !p.tooOldLocked(c, now)
	if keep {
		p.idle = append(p.idle, idleConn[C]{c: c, since: now})
	} else {
		p.forgetLocked(c)
	}
	p.wakeLocked()
	p.mu.Unlock()
	// The freed slots are seen by waiters selecting on slots.
	p.discard(stale...)
	if !keep {
		p.discard(c)
	}
}

// expireLocked takes the connections idle for MaxIdleTime or longer off
// the idle list and returns them, to be discarded.
func (p *Pool[C]) expireLocked(now time.Time) []C {
	if p.cfg.MaxIdleTime <= 0 {
		return nil
	}
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].since) >= p.cfg.MaxIdleTime {
		n++
	}
	if n == 0 {
		return nil
	}
	stale := make([]C, n)
	for i, e := range p.idle[:n] {
		stale[i] = e.c
		p.forgetLocked(e.c)
	}
	m := copy(p.idle, p.idle[n:])
	clear(p.idle[m:])
	p.idle = p.idle[:m]
	return stale
}

// tooOldLocked reports whether c has been open for MaxAge or longer.
func (p *Pool[C]) tooOldLocked(c C, now time.Time) bool {
	if p.born == nil {
		return false
	}
	born, ok := p.born[c]
	return !ok || now.Sub(born) >= p.cfg.MaxAge
}

// wakeLocked wakes every Get waiting for an idle connection or a free
// slot; the next to wait makes a new channel. The caller holds mu.
func (p *Pool[C]) wakeLocked() {
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
}

// forgetLocked drops what the pool knows of c, which is being closed.
func (p *Pool[C]) forgetLocked(c C) {
	if p.born != nil {
		delete(p.born, c)
	}
}

// discard closes connections taken off the pool's books and frees their
// slots. It is called without the lock: closing waits for a connection's
// goroutines.
func (p *Pool[C]) discard(cs ...C) {
	for _, c := range cs {
		c.Close()
		<-p.slots
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
	idle := make([]C, len(p.idle))
	for i, e := range p.idle {
		idle[i] = e.c
		p.forgetLocked(e.c)
	}
	p.idle = nil
	p.wakeLocked()
	p.mu.Unlock()
	p.discard(idle...)
}
