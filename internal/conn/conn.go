// Package conn runs one connection to a Redis server: callers append
// encoded commands, a writer goroutine sends them, a reader goroutine reads
// the replies and hands each to the call that is first in line. (A lone
// caller may write its command and read its reply itself; see
// Conn.reading.)
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

// ProtocolRefusal is the cause of a connection's failure after its server
// answered a command with "ERR Protocol error": the server could not read
// what was sent (an argument longer than its proto-max-bulk-len, 512 MB
// unless configured otherwise), and closes the connection once it has
// said so, without reading further. Err is how the connection then
// failed, as the client saw it.
type ProtocolRefusal struct {
	Reply string // the server's error reply, "ERR Protocol error: ..."
	Err   error
}

func (e *ProtocolRefusal) Error() string {
	return "the server refused what was sent on the connection with \"" + e.Reply + "\" and closed it " +
		"(is an argument longer than the server's proto-max-bulk-len, 512 MB by default?): " + e.Err.Error()
}

func (e *ProtocolRefusal) Unwrap() error { return e.Err }

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
	// NoteReadOnly has the connection note a READONLY refusal among its
	// replies, which ReadOnly then reports: the server it reached is a
	// replica now.
	NoteReadOnly bool
	// Poll is how long the reader, or a caller reading its own reply,
	// reads the socket without sleeping before it waits in the runtime's
	// poller (see poller); zero or less turns polling off, and with it
	// callers reading their own replies unless SelfRead is set.
	Poll time.Duration
	// SelfRead has a caller whose call is alone in line read its reply
	// itself, sleeping on the socket, when Poll is off too: that saves
	// handing each reply from the reader goroutine to its caller, a
	// second wake-up per call. Like polling, it needs a plain TCP or Unix
	// socket on a Unix system, and no OnPush.
	SelfRead bool
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

	// Owned by the holder of the read role until the call finishes, then
	// by the caller (or, if abandoned, by the reader, which recycles it).
	replies []resp.Value
	n       int // how many replies are due; replies is made on the first if nil
	got     int
	errs    int // how many of them are errors
	err     error
	sent    int64 // set with an err of the connection: how many of its bytes the socket accepted

	one   [1]resp.Value // storage for single-command calls
	state atomic.Int32

	// own is set by callers that wait for the call as soon as it is sent,
	// and so may read its replies themselves; self says that the caller
	// holds the read role for it (see Conn.reading), poll that it polls
	// before it sleeps, and tail that it polls once its last replies are
	// near. They belong to the caller. quiet, set before it is sent, says
	// that nobody polls for its replies (Graced.Quiet).
	own, self, poll, tail, quiet bool
	done                         chan struct{} // capacity 1: the reader's completion signal
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func getCall() *call {
	c := callPool.Get().(*call)
	c.state.Store(waiting)
	return c
}

func putCall(c *call) {
	c.replies, c.n, c.got, c.errs, c.err, c.sent = nil, 0, 0, 0, nil, 0
	c.grace = 0
	c.own, c.self, c.poll, c.tail, c.quiet = false, false, false, false, false
	c.one[0] = resp.Value{}
	callPool.Put(c)
}

// Conn is one connection. It is safe for concurrent use: concurrent calls
// are written together (auto-pipelining) and their replies handed back in
// order.
type Conn struct {
	nc   net.Conn
	rd   *resp.Reader // owned by the holder of the read role (reading)
	poll *poller      // likewise; nil when not polling
	vals []resp.Value // likewise: scratch for the values take hands out together
	ends []int64      // likewise: where each of them ends in the stream
	fin  []*call      // likewise: scratch for the calls they answer
	opt  Options

	// sendSem (capacity 1) is held by a send written in parts, so that no
	// other command lands between its parts, and by whoever waits for one
	// to end. A send that fits in one part appends under mu alone unless
	// inParts says such a send is under way: taking a channel per command
	// cost concurrent callers a share of their throughput (see "Figures
	// behind design choices" in bench/RESULTS.md). It is a channel so
	// that a caller waiting behind a large send can leave when its context
	// ends.
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
	// unsettled holds the calls in line when the connection failed some
	// of whose bytes a write under way had taken but the socket had not
	// yet been seen to accept, and failed the error they get: the holder of
	// the write role settles them (settleLocked) once its write returns
	// and written says how far it went, so that those it never wrote fail
	// as not sent rather than of unknown outcome.
	unsettled []*call
	failed    *Error
	// refusal is the server's "ERR Protocol error" reply to a call large
	// enough to be refused (see minRefused), when it is the last reply
	// read, set under mu by the holder of the read role: the server closes
	// the connection after it, and the failure that follows names it as
	// its cause.
	refusal string
	// reading is held by whoever reads the socket: the reader goroutine,
	// or a caller that sent a lone call and reads its reply itself,
	// polling or asleep on the socket, which saves handing each reply
	// from one goroutine to another, and when it polls on a host slow to
	// wake threads, the wake-up of a sleeping reader. Only the holder
	// touches rd and poll. When the line empties the holder gives the
	// role up, and the next caller takes it; a caller that does not wait
	// for its replies at once, or cannot read them (its context ended, a
	// write the socket did not take whole, a reply larger than the
	// buffer), hands it to the reader goroutine through readTurn.
	// Without selfRead the reader goroutine always holds it and reads
	// without pause (push messages need a reader that is always there).
	// Guarded by mu.
	reading  bool
	selfRead bool
	readTurn chan struct{} // capacity 1
	ownReads uint64        // values callers read for their own calls, for tests
	released time.Time     // when the role was last given up, the line empty

	// A caller asleep in the socket's read for its own reply (sleepRead)
	// is woken when its context ends by a read deadline in the past, set
	// by a context.AfterFunc: sleeper is the Done channel it sleeps for,
	// and cut says the deadline was set for it. The AfterFunc stays
	// registered for the last Done channel seen (watched, unwatch), so
	// that a caller whose calls share one context registers it once.
	sleeper, watched <-chan struct{}
	cut              bool
	unwatch          func() bool

	kick   chan struct{} // capacity 1: wbuf has data for the writer
	space  chan struct{} // capacity 1: the writer drained wbuf
	closed chan struct{} // closed on failure, stops the writer
	dead   atomic.Bool   // set with err, read without the lock on every call
	// stale tells why the connection, though it works, is to be replaced
	// by a new one: staleReadOnly, set by the holder of the read role on a
	// READONLY refusal (with Options.NoteReadOnly), and staleAged, set by
	// SetAged. Read without the lock.
	stale atomic.Uint32
	wg    sync.WaitGroup
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
		readTurn:  make(chan struct{}, 1),
	}
	if opt.Poll > 0 || opt.SelfRead {
		c.poll = newPoller(nc, opt.Poll, c.due)
	}
	c.selfRead = c.poll != nil && opt.OnPush == nil
	c.reading = !c.selfRead
	c.rd = resp.NewReaderSize(stallGuard{c}, opt.ReadBuffer, opt.Limits)
	c.wg.Add(2)
	go c.writeLoop()
	go c.readLoop()
	return c
}

// SetLimits replaces the limits its replies are read under (see
// resp.Reader.SetLimits): a reply that starts to arrive after it returns
// is read under them. Set while no reply is due, they apply from the next
// reply on, as a connection's setup may need other limits than its calls.
func (c *Conn) SetLimits(lim resp.Limits) { c.rd.SetLimits(lim) }

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

const (
	staleReadOnly = 1 << iota
	staleAged
)

// ReadOnly reports whether a reply was a READONLY refusal, with
// Options.NoteReadOnly: the server is a replica, no longer the master the
// connection was made to reach.
func (c *Conn) ReadOnly() bool { return c.stale.Load()&staleReadOnly != 0 }

// ClearReadOnly takes back the mark of a READONLY refusal, its owner
// having chosen to keep the connection: the next refusal sets it again.
func (c *Conn) ClearReadOnly() { c.stale.And(^uint32(staleReadOnly)) }

// SetAged marks the connection as open for long enough, its owner to
// replace it, or takes the mark back.
func (c *Conn) SetAged(aged bool) {
	if aged {
		c.stale.Or(staleAged)
	} else {
		c.stale.And(^uint32(staleAged))
	}
}

// Stale reports whether the connection is to be replaced although it
// works: it was refused with READONLY, or marked aged.
func (c *Conn) Stale() bool { return c.stale.Load() != 0 }

// Idle reports whether the connection is usable and has nothing in flight:
// no unsent bytes and no call in line, abandoned ones included. Only an
// idle connection may go back to a pool.
func (c *Conn) Idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && len(c.wbuf) == 0 && c.head == len(c.queue)
}

// Polls reports whether the reader polls the socket (Options.Poll).
func (c *Conn) Polls() bool { return c.poll != nil && c.poll.budget > 0 }

// ReadsOwn reports whether a lone call's caller reads its reply itself
// (Options.SelfRead, or Poll).
func (c *Conn) ReadsOwn() bool { return c.selfRead }

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

// CloseIdle closes the connection, as Close does but with err for the
// calls that come later, if it is idle; it reports whether the connection
// is closed (or had failed already). The check and the close are one step
// under the lock that every call takes to join the line, so a call joins
// before it, and keeps the connection open, or after it, and fails not
// sent: none is cut short after its bytes went out.
func (c *Conn) CloseIdle(err error) bool {
	c.mu.Lock()
	if c.err == nil && (len(c.wbuf) != 0 || c.head != len(c.queue) || c.writing) {
		c.mu.Unlock()
		return false
	}
	c.failLocked(&Error{Op: "close", Err: err})
	c.wg.Wait()
	return true
}

// DoOne sends one encoded command and waits for its reply.
func (c *Conn) DoOne(ctx context.Context, cmd []byte) (resp.Value, error) {
	return Graced{c: c}.DoOne(ctx, cmd)
}

// Do sends cmds, the encoding of len(replies) commands, and waits for their
// replies, which it stores in replies. If ctx ends first Do returns its error
// at once, and the reader stores nothing into replies after that: it reads
// and drops the rest (those stored before are the caller's, see
// Pending.WaitGot).
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
	return Graced{c: c}.DoN(ctx, cmds, n)
}

// DoNCut is DoN that, when the connection fails partway, returns what
// the batch got (see Graced.DoNCut).
func (c *Conn) DoNCut(ctx context.Context, cmds []byte, n int) (replies []resp.Value, errs, cut int, err error) {
	return Graced{c: c}.DoNCut(ctx, cmds, n)
}

// Start is the first half of Do: it puts the batch in line and returns once
// its bytes are with the writer, so cmds may be reused at once. The reader
// fills replies meanwhile; they belong to the caller only after Wait
// returns nil. Sending one batch while the previous one is answered keeps
// the socket busy in both directions.
func (c *Conn) Start(ctx context.Context, cmds []byte, replies []resp.Value) (Pending, error) {
	return Graced{c: c}.Start(ctx, cmds, replies)
}

// WithGrace returns the connection for calls whose replies may take g
// longer than Options.StallTimeout: calls with blocking commands.
func (c *Conn) WithGrace(g Grace) Graced { return Graced{c: c, grace: g} }

// Quiet returns the connection for calls whose replies nobody polls for
// (see Graced.Quiet).
func (c *Conn) Quiet() Graced { return Graced{c: c, quiet: true} }

// Graced makes calls that carry a Grace, or that are quiet, or sole.
// Its methods are those of Conn.
type Graced struct {
	c     *Conn
	grace Grace
	quiet bool
	sole  bool
}

// Sole returns k for the calls of the connection's only user, who ends
// the connection when one of them is cut short. A DoNCut (or the
// WaitCut of a Start) whose context ends once some of its bytes were
// taken, and before its last reply was read, fails the connection at
// once, with the context's error, and returns what it got as after any
// failure of the connection: cut then counts only the bytes the socket
// accepted, the commands after them were not sent, and never will be.
// One answered whole returns its replies, and the connection lives on.
// Why: left in line, the call's bytes would still be written, and the
// connection, which its user closes next, would end at an unknown point
// of them.
func (k Graced) Sole() Graced {
	k.sole = true
	return k
}

// Quiet returns k for calls whose replies nobody polls for: the reader,
// or their caller, sleeps until the socket has them rather than reading it
// in a loop. Why: a caller waiting for calls on several connections at once
// is done when the slowest answers, and a poll per connection multiplies
// the threads spinning while it waits; where the servers run on the same
// CPUs, those threads take the CPU time the servers need to make the
// replies. Such a caller makes one of its calls a plain one, and the
// others quiet.
func (k Graced) Quiet() Graced {
	k.quiet = true
	return k
}

// DoOne is Conn.DoOne for a call with the Grace.
func (k Graced) DoOne(ctx context.Context, cmd []byte) (resp.Value, error) {
	c := k.c
	cl := getCall()
	cl.replies, cl.n, cl.grace, cl.own, cl.quiet = cl.one[:], 1, k.grace, true, k.quiet
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
	replies, errs, _, err = k.DoNCut(ctx, cmds, n)
	if err != nil {
		return nil, 0, err
	}
	return replies, errs, nil
}

// DoNCut is DoN that, when the connection fails before every reply is
// in, also returns what the batch got: the replies read before the
// failure, in order (fewer than n; the commands they answer ran), how
// many of them are errors, and cut, how many bytes of cmds the socket
// had accepted (the commands that begin at or after it were not sent;
// those before it, unanswered, may have run). So does a batch whose
// context ended once some of its replies were read, with its context's
// error: the reader stores no reply for it after, and cut is all of
// cmds, which the connection, living on, writes (unless k is Sole: see
// Graced.Sole). A batch that failed any other way (nothing was sent, or
// its context ended before any reply) returns no replies.
func (k Graced) DoNCut(ctx context.Context, cmds []byte, n int) (replies []resp.Value, errs, cut int, err error) {
	if n <= 0 {
		return nil, 0, 0, nil
	}
	c := k.c
	cl := getCall()
	cl.n, cl.grace, cl.own, cl.quiet = n, k.grace, true, k.quiet
	if err := c.send(ctx, cl, cmds); err != nil {
		putCall(cl)
		return nil, 0, 0, err
	}
	if kp, held, err := c.waitHeld(ctx, cl, k.sole); err != nil {
		if held {
			// Stored under the lock that failed the call: no reply
			// comes after (see take).
			if cl.got > 0 {
				replies, errs = cl.replies[:cl.got:cl.got], cl.errs
			}
			cut = int(cl.sent)
			putCall(cl)
		} else if kp.got > 0 {
			// Abandoned as ctx ended: its bytes are all in the stream.
			replies, errs, cut = kp.replies[:kp.got:kp.got], kp.errs, len(cmds)
		}
		return replies, errs, cut, err
	}
	replies, errs = cl.replies, cl.errs
	putCall(cl)
	return replies, errs, len(cmds), nil
}

// Start is Conn.Start for a call with the Grace.
func (k Graced) Start(ctx context.Context, cmds []byte, replies []resp.Value) (Pending, error) {
	if len(replies) == 0 {
		return Pending{}, nil
	}
	c := k.c
	cl := getCall()
	cl.replies, cl.n, cl.grace, cl.quiet = replies, len(replies), k.grace, k.quiet
	if err := c.send(ctx, cl, cmds); err != nil {
		putCall(cl)
		return Pending{}, err
	}
	return Pending{c, cl, k.sole}, nil
}

// Pending is a batch handed to the connection by Start whose replies are
// still to come. Wait must be called once.
type Pending struct {
	c    *Conn
	cl   *call
	sole bool // started by a Sole Graced: a wait cut short ends the connection
}

// Wait blocks until the batch's replies are in, or ctx ends (the call is
// then abandoned, as in Do).
func (p Pending) Wait(ctx context.Context) error {
	_, err := p.WaitGot(ctx)
	return err
}

// WaitGot is Wait that, when the connection fails before every reply is
// in, also tells how many replies it stored, from the first, before the
// failure: the commands they answer ran, and the replies are the
// caller's. So it does when ctx ends first, with ctx's error: the reader
// stores no reply for the batch after (it reads and drops the rest), so
// the first got are the caller's; the rest of replies may not be reused.
// If the batch failed any other way (nothing was sent), got is 0; if it
// did not fail, got is the number of replies.
func (p Pending) WaitGot(ctx context.Context) (got int, err error) {
	got, _, err = p.WaitCut(ctx)
	return got, err
}

// WaitCut is WaitGot that also tells, when the connection failed before
// every reply was in, how many bytes of the batch the socket had
// accepted (as DoNCut's cut): the commands that begin at or after them
// were not sent. When ctx ended once some replies were read, sent is the
// whole batch, which the connection, living on, writes; unless the batch
// was started Sole, whose end of ctx fails the connection as DoNCut's
// does (see Graced.Sole), and sent counts what the socket accepted.
func (p Pending) WaitCut(ctx context.Context) (got, sent int, err error) {
	if p.cl == nil {
		return 0, 0, nil
	}
	k, held, err := p.c.waitHeld(ctx, p.cl, p.sole)
	if err != nil {
		if held {
			got, sent = p.cl.got, int(p.cl.sent)
			putCall(p.cl)
		} else if k.got > 0 {
			got, sent = k.got, int(k.size)
		}
		return got, sent, err
	}
	got = p.cl.got
	putCall(p.cl)
	return got, 0, nil
}

// Ready reports whether the batch's replies are in (or its connection has
// failed), so that Wait would return at once. It lets a caller with many
// batches in flight take in those answered without waiting on the others.
func (p Pending) Ready() bool {
	return p.cl == nil || p.cl.state.Load() == finished
}

// Fail ends the connection for a reply that its owner found cannot be
// what the server sends for the command it came for (a transaction's
// replies that are not those of MULTI, QUEUED and EXEC): such a stream
// may be out of step, and a later reply could then reach the wrong call.
// Every call in line fails as after a malformed reply, and the socket is
// closed. It returns the error of the call whose reply it was.
func (c *Conn) Fail(err error) *Error {
	e := &Error{Op: "read", Err: err}
	c.fail(e)
	return e
}

// fail makes err the connection's sticky error, closes the socket and fails
// every call in line. Calls none of whose bytes the socket accepted are
// marked unsent; the rest may or may not have run.
func (c *Conn) fail(err *Error) {
	c.mu.Lock()
	c.failLocked(err)
}

// ended, deferred where the reader, the writer or a caller writing inline
// calls the net.Conn's Read or Write (method), fails the connection if
// that did not return: a net.Conn of the user's ended the goroutine
// (runtime.Goexit, as testing.T's FailNow calls). Left alive, the
// connection would keep the calls in line, and every later one, waiting
// for what nothing will read or write. A panic goes on up as it came;
// one of Write fails the connection first, since the caller that wrote
// may recover from it and the role would stay held.
func (c *Conn) ended(returned *bool, op, method string) {
	if *returned {
		return
	}
	p := recover()
	if p != nil && op != "write" {
		panic(p)
	}
	c.mu.Lock()
	if op == "write" {
		// The write may have put any of its bytes on the wire; it gives up
		// the role, which nothing else would: a caller that recovers from
		// a panic of its inline write would otherwise leave every later
		// call, and any call a close left to the write to settle, waiting
		// for ever.
		c.written = c.taken
		c.writing = false
	}
	how := "ended its goroutine (runtime.Goexit, as testing.T's FailNow calls)"
	if p != nil {
		how = fmt.Sprintf("panicked: %v", p)
	}
	c.failLocked(&Error{Op: op, Err: fmt.Errorf("the net.Conn's %s %s", method, how)})
	if p != nil {
		panic(p)
	}
}

// endedLocked is ended for a method of the net.Conn called with mu held
// (a Set...Deadline of a net.Conn of the user's): it releases mu before
// it fails the connection. Left held, mu would keep every later call, and
// Close, waiting for ever.
func (c *Conn) endedLocked(returned *bool, method string) {
	if *returned {
		return
	}
	if p := recover(); p != nil {
		panic(p)
	}
	c.mu.Unlock()
	c.fail(&Error{Op: "read", Err: fmt.Errorf("the net.Conn's %s ended its goroutine (runtime.Goexit, as testing.T's FailNow calls)", method)})
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

// causeLocked is err as the connection fails with it; mu is held. When
// the server's protocol refusal is the last reply read, the server said
// why it closes the connection: that is the cause to give, rather than the
// reset or end of stream that follows.
func (c *Conn) causeLocked(err *Error) *Error {
	if _, named := err.Err.(*ProtocolRefusal); named || c.refusal == "" || err.Op == "close" {
		return err
	}
	return &Error{Op: err.Op, Err: &ProtocolRefusal{Reply: c.refusal, Err: err.Err}, Unsent: err.Unsent}
}

// failLocked is fail with mu held; it releases mu.
func (c *Conn) failLocked(err *Error) {
	if c.err != nil {
		c.settleLocked()
		return
	}
	err = c.causeLocked(err)
	c.err = err
	c.failed = err
	c.dead.Store(true)
	if c.unwatch != nil {
		c.unwatch()
		c.watched, c.unwatch = nil, nil
	}
	calls := c.queue[c.head:]
	c.queue, c.head = nil, 0
	if c.writing {
		// A write under way may put any of the bytes it took on the wire
		// before it returns: the calls among them wait for its count,
		// those an earlier write began included (the rest of a batch its
		// caller writes itself, the later parts of a send in parts), so
		// that the bytes of theirs it writes count as sent.
		var later []*call
		for i, cl := range calls {
			if cl.start < c.taken && (cl.start >= c.written || cl.start+cl.size > c.written) {
				later = append(later, cl)
				calls[i] = nil
			}
		}
		c.unsettled = later
	}
	c.wbuf = nil
	sent := c.written
	c.mu.Unlock()

	close(c.closed)
	c.nc.Close()
	for _, cl := range calls {
		if cl != nil {
			e := *err
			e.Unsent = cl.start >= sent
			cl.sent = min(max(sent-cl.start, 0), cl.size)
			finish(cl, &e)
		}
	}
}

// settleLocked fails the unsettled calls, if the write that kept them so
// has returned; mu is held, and released. Only the bytes the socket
// accepted count as sent: those of a write that failed stopped at its
// count, which written now includes.
func (c *Conn) settleLocked() {
	if c.writing || c.unsettled == nil {
		c.mu.Unlock()
		return
	}
	calls, sent, failed := c.unsettled, c.written, c.failed
	c.unsettled = nil
	c.mu.Unlock()
	for _, cl := range calls {
		e := *failed
		e.Unsent = cl.start >= sent
		cl.sent = min(max(sent-cl.start, 0), cl.size)
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
