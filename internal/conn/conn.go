// Package conn runs one connection to a Redis server: callers append
// encoded commands, a writer goroutine sends them, a reader goroutine reads
// the replies and hands each to the call that is first in line.
//
// Replies are matched to calls by order alone, so the connection keeps one
// rule above all: a reply either reaches its own call or the connection
// dies. A call whose caller gave up stays in line, and its reply is read and
// dropped, unless none of its bytes had been handed to the socket yet: then
// it leaves the line and its bytes are never written. Any read, write or
// protocol error is sticky: it fails every call in line and closes the
// socket, and the owner replaces the connection.
package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
)

// ErrClosed fails the calls of a connection closed by its owner.
var ErrClosed = errors.New("redpipe: closed")

// Error is a failure of the connection itself: every call in line fails
// with one. Unsent tells that no byte of the call was accepted by the
// socket, so the server cannot have run it.
//
// Op "send" is the failure of a single call whose context ended before any
// of its bytes were handed to the socket: before it was put in line, while
// it waited for room in the queue, or while its bytes waited there. Such a
// call is never written, and the connection carries on.
type Error struct {
	Op     string // "read", "write", "close" or "send"
	Err    error
	Unsent bool
}

func (e *Error) Error() string {
	switch e.Op {
	case "close":
		return e.Err.Error()
	case "send":
		return "redpipe: not sent: " + e.Err.Error()
	}
	return "redpipe: connection " + e.Op + " failed: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Options tune a connection.
type Options struct {
	Limits resp.Limits
	// ReadBuffer is the size of the read buffer; 0 means 32 KiB.
	ReadBuffer int
	// MaxPending is the size of the parts in which a larger send is
	// handed to the writer, each once the writer has drained the one
	// before; 0 means 1 MiB. It also bounds the bytes that wait for the
	// writer: once a send would take them past queuedPerPending times
	// MaxPending (4 MiB by default), it waits for the writer to take them
	// or for its context to end, and then fails as not sent. Without that
	// bound a server that stops reading would let the queue, and memory,
	// grow with every call made meanwhile. (A direct write stopped by its
	// context gives back what it could not write, which may add up to
	// MaxPending on top.)
	MaxPending int
	// OnPush receives RESP3 push messages (invalidations and the like).
	// They are dropped when nil. It runs on the reader goroutine.
	OnPush func(resp.Value)
	// StallTimeout ends the connection when replies are due and no byte
	// has arrived for this long: a stalled server or network would
	// otherwise hold every later call hostage. The first call in line may
	// extend it with its Grace, the time a blocking command may keep the
	// server quiet, or lift it with NoStallLimit. Zero means no limit.
	StallTimeout time.Duration
	// DirectWrite is the size from which a send is written from the
	// caller's buffer when nothing else waits for the writer, instead of
	// being copied for the writer goroutine first; 0 means 16 KiB, and
	// a negative size turns it off. It applies only to a plain TCP or Unix
	// socket: a write there that a deadline stops has sent exactly what it
	// reports and leaves the socket usable, which a TLS connection does
	// not promise (its state is corrupt after a timed-out write).
	DirectWrite int
	// Poll is how long the reader reads the socket without sleeping
	// before it waits in the runtime's poller (see poller); zero or less
	// turns polling off.
	Poll time.Duration
}

// queuedPerPending is how many times MaxPending may wait for the writer.
// Why four: the writer takes all that waits at once, so under load the
// queue refills while the last take is written, and a bound of one part
// would make callers wait on every other write; four keeps writes large
// and the queue a few MiB.
const queuedPerPending = 4

// Grace is how much longer than Options.StallTimeout the replies of a call
// may keep the connection quiet: the time the server may wait on a blocking
// command before it answers. NoStallLimit lifts the limit for the call.
type Grace time.Duration

// NoStallLimit is the Grace of a call that may keep the server quiet for
// ever (BLPOP with a timeout of 0).
const NoStallLimit Grace = -1

// call states
const (
	waiting int32 = iota
	finished
	abandoned // its caller left; it stays in line and its replies are dropped
	dropped   // its caller left before any of its bytes were taken; they never will be
)

// call is one request in line for replies: a single command or a batch.
type call struct {
	// Written under Conn.mu at enqueue (start moves back when the bytes
	// of dropped calls ahead of it leave wbuf); read under it.
	start int64 // stream offset of the call's first byte
	size  int64 // how many bytes it has
	grace Grace // set before it is sent

	// Owned by the reader goroutine until the call finishes, then by the
	// caller (or, if abandoned, by the reader, which recycles it).
	replies []resp.Value
	n       int // how many replies are due; replies is made on the first if nil
	got     int
	errs    int // how many of them are errors
	err     error

	one   [1]resp.Value // storage for single-command calls
	state atomic.Int32
	done  chan struct{} // capacity 1: the reader's completion signal
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func getCall() *call {
	c := callPool.Get().(*call)
	c.state.Store(waiting)
	return c
}

func putCall(c *call) {
	c.replies, c.n, c.got, c.errs, c.err = nil, 0, 0, 0, nil
	c.grace = 0
	c.one[0] = resp.Value{}
	callPool.Put(c)
}

// Conn is one connection. It is safe for concurrent use: concurrent calls
// are written together (auto-pipelining) and their replies handed back in
// order.
type Conn struct {
	nc   net.Conn
	rd   *resp.Reader // owned by the reader goroutine
	poll *poller      // owned by the reader goroutine; nil when not polling
	opt  Options

	// sendSem (capacity 1) is held by a send written in parts, so that no
	// other command lands between its parts, and by whoever waits for one
	// to end. A send that fits in one part appends under mu alone unless
	// inParts says such a send is under way: taking a channel per command
	// cost 64 to 512 concurrent callers 5 to 13% of their throughput. It
	// is a channel so that a caller waiting behind a large send can leave
	// when its context ends.
	sendSem chan struct{}

	mu      sync.Mutex // guards the fields below it
	inParts bool       // a send is being handed to the writer in parts
	wbuf    []byte     // appended by callers, taken by the writer: the stream from taken to offset
	queue   []*call    // calls in line for replies, in write order
	head    int        // index of the first call in queue
	err     error      // sticky failure; no call is accepted once set
	offset  int64      // stream offset of the end of wbuf
	taken   int64      // stream offset up to which bytes were handed to a writer
	written int64      // stream offset up to which the socket accepted them

	// Calls in line whose callers left before any of their bytes were
	// taken, and those bytes, still in wbuf until sweepLocked takes both
	// out (always before the writer takes wbuf).
	dropped      int
	droppedBytes int64

	maxQueued int           // queuedPerPending * MaxPending
	room      chan struct{} // closed when wbuf shrinks; made by a sender waiting for room, nil if none waits
	armedFor  time.Duration // the stall limit last armed, for its error

	// writing is held by whoever writes to the socket: the writer
	// goroutine, or a caller writing its own small command inline when the
	// writer is idle, which saves a goroutine hand-off per call. spare, the
	// buffer last written, belongs to the holder; both are guarded by mu.
	writing bool
	spare   []byte
	kick    chan struct{} // capacity 1: wbuf has data for the writer
	space   chan struct{} // capacity 1: the writer drained wbuf
	closed  chan struct{} // closed on failure, stops the writer
	dead    atomic.Bool   // set with err, read without the lock on every call
	wg      sync.WaitGroup
}

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

// New starts the reader and writer of a connection on nc, which the Conn
// then owns.
func New(nc net.Conn, opt Options) *Conn {
	if opt.ReadBuffer <= 0 {
		opt.ReadBuffer = 32 << 10
	}
	if opt.MaxPending <= 0 {
		opt.MaxPending = 1 << 20
	}
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
		if opt.DirectWrite == 0 {
			opt.DirectWrite = inlineMax
		}
	default:
		opt.DirectWrite = -1
	}
	c := &Conn{
		nc:        nc,
		opt:       opt,
		maxQueued: queuedPerPending * opt.MaxPending,
		wbuf:      make([]byte, 0, 4096),
		spare:     make([]byte, 0, 4096),
		kick:      make(chan struct{}, 1),
		sendSem:   make(chan struct{}, 1),
		space:     make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
	c.poll = newPoller(nc, opt.Poll, c.due)
	c.rd = resp.NewReaderSize(stallGuard{c}, opt.ReadBuffer, opt.Limits)
	c.wg.Add(2)
	go c.writeLoop()
	go c.readLoop()
	return c
}

// Err returns the sticky error that ended the connection, or nil while it
// is usable.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Alive reports whether the connection has not failed. It is cheap enough
// to check before every call.
func (c *Conn) Alive() bool { return !c.dead.Load() }

// Idle reports whether the connection is usable and has nothing in flight:
// no unsent bytes and no call in line, abandoned ones included. Only an
// idle connection may go back to a pool.
func (c *Conn) Idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && len(c.wbuf) == 0 && c.head == len(c.queue)
}

// Polls reports whether the reader polls the socket (Options.Poll).
func (c *Conn) Polls() bool { return c.poll != nil }

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

// Pending returns the number of calls in line for replies.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) - c.head
}

// RemoteAddr is the server's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// LocalAddr is the connection's own address, which CLIENT LIST shows.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// Close fails every call in line with ErrClosed, closes the socket and
// waits for the reader and writer to stop.
func (c *Conn) Close() error {
	c.fail(&Error{Op: "close", Err: ErrClosed})
	c.wg.Wait()
	return nil
}

// DoOne sends one encoded command and waits for its reply.
func (c *Conn) DoOne(ctx context.Context, cmd []byte) (resp.Value, error) {
	return Graced{c, 0}.DoOne(ctx, cmd)
}

// Do sends cmds, the encoding of len(replies) commands, and waits for their
// replies, which it stores in replies. If ctx ends first Do returns its error
// at once; the reader may still store into replies afterwards, so the caller
// must not reuse the slice then.
func (c *Conn) Do(ctx context.Context, cmds []byte, replies []resp.Value) error {
	p, err := c.Start(ctx, cmds, replies)
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

// DoN sends cmds, the encoding of n commands, and returns their replies
// and how many of them are error replies, so that a caller looking for
// errors need not go through a large batch again when there is none.
// The reader makes the slice for them when the first arrives. Why: for a
// large batch that is a large allocation, which then happens while the
// server works through the batch rather than before the batch is sent.
// If ctx ends first DoN returns its error at once.
func (c *Conn) DoN(ctx context.Context, cmds []byte, n int) (replies []resp.Value, errs int, err error) {
	return Graced{c, 0}.DoN(ctx, cmds, n)
}

// Start is the first half of Do: it puts the batch in line and returns once
// its bytes are with the writer, so cmds may be reused at once. The reader
// fills replies meanwhile; they belong to the caller only after Wait
// returns nil. Sending one batch while the previous one is answered keeps
// the socket busy in both directions.
func (c *Conn) Start(ctx context.Context, cmds []byte, replies []resp.Value) (Pending, error) {
	return Graced{c, 0}.Start(ctx, cmds, replies)
}

// WithGrace returns the connection for calls whose replies may take g
// longer than Options.StallTimeout: calls with blocking commands.
func (c *Conn) WithGrace(g Grace) Graced { return Graced{c, g} }

// Graced makes calls that carry a Grace. Its methods are those of Conn.
type Graced struct {
	c     *Conn
	grace Grace
}

// DoOne is Conn.DoOne for a call with the Grace.
func (k Graced) DoOne(ctx context.Context, cmd []byte) (resp.Value, error) {
	c := k.c
	cl := getCall()
	cl.replies, cl.n, cl.grace = cl.one[:], 1, k.grace
	if err := c.send(ctx, cl, cmd); err != nil {
		putCall(cl)
		return resp.Value{}, err
	}
	if err := c.wait(ctx, cl); err != nil {
		return resp.Value{}, err
	}
	v := cl.one[0]
	putCall(cl)
	return v, nil
}

// DoN is Conn.DoN for a call with the Grace.
func (k Graced) DoN(ctx context.Context, cmds []byte, n int) (replies []resp.Value, errs int, err error) {
	if n <= 0 {
		return nil, 0, nil
	}
	c := k.c
	cl := getCall()
	cl.n, cl.grace = n, k.grace
	if err := c.send(ctx, cl, cmds); err != nil {
		putCall(cl)
		return nil, 0, err
	}
	if err := c.wait(ctx, cl); err != nil {
		return nil, 0, err
	}
	replies, errs = cl.replies, cl.errs
	putCall(cl)
	return replies, errs, nil
}

// Start is Conn.Start for a call with the Grace.
func (k Graced) Start(ctx context.Context, cmds []byte, replies []resp.Value) (Pending, error) {
	if len(replies) == 0 {
		return Pending{}, nil
	}
	c := k.c
	cl := getCall()
	cl.replies, cl.n, cl.grace = replies, len(replies), k.grace
	if err := c.send(ctx, cl, cmds); err != nil {
		putCall(cl)
		return Pending{}, err
	}
	return Pending{c, cl}, nil
}

// Pending is a batch handed to the connection by Start whose replies are
// still to come. Wait must be called once.
type Pending struct {
	c  *Conn
	cl *call
}

// Wait blocks until the batch's replies are in, or ctx ends (the call is
// then abandoned, as in Do).
func (p Pending) Wait(ctx context.Context) error {
	if p.cl == nil {
		return nil
	}
	if err := p.c.wait(ctx, p.cl); err != nil {
		return err
	}
	putCall(p.cl)
	return nil
}

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
	if err := ctx.Err(); err != nil {
		return notSent(err)
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
			select {
			case c.sendSem <- struct{}{}:
			case <-ctx.Done():
				return notSent(ctx.Err())
			}
			if err := ctx.Err(); err != nil {
				<-c.sendSem
				return notSent(err)
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

// sendLarge sends b, larger than MaxPending: it waits for the sends in
// parts ahead of it and for room for its first part.
func (c *Conn) sendLarge(ctx context.Context, cl *call, b []byte) error {
	select {
	case c.sendSem <- struct{}{}:
	case <-ctx.Done():
		return notSent(ctx.Err())
	}
	if err := ctx.Err(); err != nil {
		<-c.sendSem
		return notSent(err)
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
	if err := ctx.Err(); err != nil {
		return notSent(err)
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
// releases mu.
func (c *Conn) enqueueLocked(cl *call, size int) error {
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
		c.mu.Unlock()
		c.writeDirect(ctx, b)
		return nil
	}
	c.appendLocked(b)
	// A lone caller (nothing else in line) writes inline; under
	// concurrency the writer goroutine gathers many callers into one write.
	if !c.writing && c.head == len(c.queue)-1 && len(c.wbuf) <= inlineMax {
		c.writeInline()
		return nil
	}
	c.mu.Unlock()
	c.wake()
	return nil
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
			c.fail(&Error{Op: "write", Err: fmt.Errorf("send cut short: %w", ctx.Err())})
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
	n, err := c.nc.Write(buf)
	if err != nil {
		c.failWrite(n, err)
		return
	}
	if c.release(buf) {
		c.wake()
	}
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
			err = fmt.Errorf("send cut short: %w", ctx.Err())
		}
	}
	if err != nil {
		c.failWrite(n, err)
		return
	}
	c.mu.Lock()
	c.written += int64(n)
	c.writing = false
	more := len(c.wbuf) > 0
	c.mu.Unlock()
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
	c.mu.Unlock()
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
	c.mu.Unlock()
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

// drop marks cl, whose caller is leaving, as dropped if no writer has
// taken any of its bytes, and reports whether it did. Its bytes then wait
// in wbuf for sweepLocked, which runs at once when they are half of what
// waits there or more, so a sweep always frees at least as much as it
// moves, and at the latest before the writer takes wbuf. Taking both the
// call and its bytes out under mu is what keeps every later reply with
// its own call: the call never reaches the socket, so no reply answers it.
func (c *Conn) drop(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// With no error yet, a call not taken is still in line: the reader
	// takes out only calls whose bytes were taken, and only fail takes out
	// the rest, setting the error first.
	// A call of no bytes is left alone: it may be overtaken by a direct
	// write, and the sweep only looks past what was taken.
	if c.err != nil || cl.start < c.taken || cl.size == 0 || !cl.state.CompareAndSwap(waiting, dropped) {
		return false
	}
	c.dropped++
	c.droppedBytes += cl.size
	if 2*c.droppedBytes >= int64(len(c.wbuf)) {
		c.sweepLocked()
	}
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
	c.roomMadeLocked()
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

func (c *Conn) writeLoop() {
	defer c.wg.Done()
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

// fail makes err the connection's sticky error, closes the socket and fails
// every call in line. Calls none of whose bytes the socket accepted are
// marked unsent; the rest may or may not have run.
func (c *Conn) fail(err *Error) {
	c.mu.Lock()
	c.failLocked(err)
}

// failWrite is fail for the holder of the write role, whose write ended in
// err after the socket accepted n bytes of it: the calls from there on were
// not sent. It gives up the role and fails the connection in one hold of
// mu, so that nobody writes after the failed write.
func (c *Conn) failWrite(n int, err error) {
	c.mu.Lock()
	c.written += int64(n)
	c.writing = false
	c.failLocked(&Error{Op: "write", Err: err})
}

// failLocked is fail with mu held; it releases mu.
func (c *Conn) failLocked(err *Error) {
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	c.dead.Store(true)
	calls := c.queue[c.head:]
	c.queue, c.head = nil, 0
	// A write under way may have put any of the bytes it took on the wire.
	sent := c.written
	if c.writing {
		sent = c.taken
	}
	c.wbuf = nil
	c.mu.Unlock()

	close(c.closed)
	c.nc.Close()
	for _, cl := range calls {
		e := *err
		e.Unsent = cl.start >= sent
		finish(cl, &e)
	}
}

func unsent(err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		e := *ce
		e.Unsent = true
		return &e
	}
	return err
}
