package redpipe

import (
	"context"
	"errors"
	"fmt"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/resp"
)

// streamChunk is how many encoded bytes a stream gathers before it sends
// them. Chunks much smaller cost a write and a wake-up each for little
// data; much larger ones leave the server idle while the caller encodes.
const streamChunk = 64 << 10

// Stream is a batch too large to hold in memory: a bulk load of millions
// of commands, say. Its command methods queue a command and return the
// Stream, as a Pipeline's do, but it sends its commands in chunks while
// they are still being queued, on a connection of its own, and hands every
// reply to the function it was made with, in order, instead of keeping it.
// Memory stays at a few chunks whatever the length, and the server works
// while the caller is still encoding.
//
// A stream is not a transaction, and what it sent has run. If its
// connection fails, each has had every reply read before the failure, and
// Close's error, of unknown outcome, holds the *ConnError: the commands
// sent after those may have run. It is not safe for concurrent use. Its commands run one after the other on its
// connection, so a blocking command in it (BLPOP, XREAD with BLOCK)
// holds back every command queued after it until it returns: one that
// waits for what a later command of the same stream would push waits
// out its own timeout, or the context if it has none.
//
// On a cluster Client a stream loads every master at once: each command
// goes to the master of its slot, over one connection per node, and the
// replies are still handed out in the stream's order. Commands of one
// slot run in the order they were queued, across MOVED and ASK
// redirections too, which are followed as in a pipeline; the replies a
// fast node gives ahead of a slow one wait, up to a bound, after which
// the queuing call waits for the slow node. See the package
// documentation, section Cluster.
type Stream struct {
	p    *Pipeline // the queue: commands encoded and not yet sent
	ctx  context.Context
	each func(int, Value) error
	d    *dedicated

	sent     int      // commands handed to the connection (on a cluster, routed)
	inflight []*chunk // sent, replies not yet handed out; oldest first
	free     []*chunk // chunks to reuse
	err      error    // sticky: a failed send or wait, or a refused command
	broken   bool     // err is the connection's: replies in flight will not come
	eachErr  error    // what each returned; each is not called after it
	cmdErr   error    // the first command's own error
	closed   bool
	untold   bool // closed as each or a Decoder panicked in Close: the next Close reports it
	late     int  // commands queued after Close, dropped as the buffer filled
	busy     bool // handing out replies, from which each may queue commands

	cl *clusterStream // set on a cluster Client: the routing, per node, of what is queued
}

// Stream starts a stream. each receives every reply with its index, i
// counting from 0 over the whole stream, on the caller's goroutine: from
// within the command methods, as earlier chunks are answered, and from
// Close. A nil each drops the replies, keeping only the first error. each
// may queue more commands on the stream (a crawler following what it
// read): they go out after those queued before them, Close included. It
// must not call Close, which is refused there; Discard there stops the
// stream. A panic in each, or in a Decoder, goes on to the caller of the
// method that handed the reply out, and the stream takes it for an error
// of each: each is not called again, and Close, deferred or called after
// a recover, still reads the replies, gives the connection back and
// reports it. When Close (or Discard) handed the reply out, the stream is
// finished anyway before the panic goes on up, and likewise when each or a
// Decoder ends its goroutine (runtime.Goexit, as t.FailNow calls). each may call
// the Client: a plain call goes on the shared connection, but one that
// needs a connection of its own (Watch, a blocking command, a large
// pipeline, another stream) waits for one from the pool, in which the
// stream holds one (on a cluster, one per node), until its own context
// ends if the pool (Options.PoolSize) has none left (an error matching
// ErrPoolExhausted).
//
// The rule for contexts: ctx bounds the sends and waits that the command
// methods make while commands are queued; Close(ctx) bounds its own. Close
// or Discard must be called to give the connection back (on a cluster,
// the connection of each node).
//
// Commands that change the connection's state are refused; scripts run
// with Do("EVALSHA", ...) or Do("EVAL", ...).
func (c *Client) Stream(ctx context.Context, each func(i int, v Value) error, opts ...PipelineOption) *Stream {
	p := newPipeline(c, nil, false)
	p.applyOptions(opts)
	p.transaction = false
	p.w.pooled = false // it never holds more than a chunk
	s := &Stream{p: p, ctx: ctx, each: each}
	p.stream = s
	p.w.full = s.flush
	p.reset()
	if c.cluster != nil {
		s.cl = &clusterStream{s: s, r: c.cluster}
	}
	if badContext(ctx) {
		// Nothing is ever sent: Close reports this. Discard, which waits
		// with the stream's context, has nothing to wait for.
		s.stop(nilContext(ctx, "Client.Stream"))
		s.ctx = context.Background()
	}
	return s
}

// Do queues any command given as its words, such as
// s.Do("OBJECT", "ENCODING", "k"), including commands with no typed method.
func (s *Stream) Do(args ...any) *Stream { s.p.w.do(args); return s }

// Len reports how many commands the stream has taken: those sent and those
// still queued. Once the stream has failed (Err), or after Close, what is
// queued is dropped and not counted: Len is then what Close reports as
// sent.
func (s *Stream) Len() int {
	if s.closed || s.err != nil {
		if s.cl != nil {
			return s.cl.written // what Close counts as sent
		}
		return s.sent
	}
	return s.sent + len(s.p.w.cmds)
}

// Err returns the error that has stopped the stream, if any: a failed
// connection, a command that could not be queued (from the moment it is
// queued: the stream stops there), or an error returned by each. A loader
// may check it to stop queueing early; Close returns it too. A command's
// own error reply does not stop the stream and is not reported here.
// After Close, commands queued on the stream are dropped, not sent: Err
// then reports them, as a *UsageError matching ErrClosed, unless the
// stream had failed before.
func (s *Stream) Err() error {
	if s.err == nil && !s.closed {
		// A command refused as it was queued stops the stream now rather
		// than when its chunk fills: nothing queued with it would be sent.
		if err := s.p.refusal(); err != nil {
			s.stop(err)
		}
	}
	if s.err != nil {
		return s.err
	}
	if s.eachErr != nil {
		return s.eachErr
	}
	if n := s.late + len(s.p.w.cmds); s.closed && n > 0 {
		return &UsageError{Msg: plural(n, "command queued on the Stream after Close or Discard was dropped, not sent",
			"commands queued on the Stream after Close or Discard were dropped, not sent") +
			": queue every command before Close, or start a new Stream for the rest", Err: ErrClosed}
	}
	return nil
}

// drop drops what is queued, counting it if the stream was closed.
func (s *Stream) drop() {
	if s.closed {
		s.late += len(s.p.w.cmds)
	}
	s.p.w.reset()
}

// Close sends what is still queued, waits for every reply, bounded by
// ctx, and gives the connection back. It returns how many commands were
// sent in all, and the first of: a failure of the connection or a command
// that could not be queued, an error returned by each (after which each
// is not called again, though the replies are still read; it is of
// unknown outcome whatever it wraps, since the commands ran), and the first
// command's error as a *CommandError unless the option ErrorsInReplies was
// given. When the stream failed part way, the error's outcome (OutcomeOf)
// is OutcomeUnknown once any chunk went out. After Close the stream is finished:
// a second Close reports ErrClosed, unless each or a Decoder panicked in
// the first, which then returned nothing: the second reports what it
// would have.
func (s *Stream) Close(ctx context.Context) (int, error) {
	if s.closed {
		if s.untold {
			// The Close that each or a Decoder panicked in finished the
			// stream; this one, called after a recover, reports it.
			s.untold = false
			return s.Len(), s.result()
		}
		return 0, &UsageError{Msg: "Stream.Close called on a stream that Close or Discard already finished, which sent nothing more: " +
			"finish a Stream once, and start a new one for more commands", Err: ErrClosed}
	}
	if badContext(ctx) {
		// As a Close refused from within each, it leaves the stream as it
		// is, for a Close with a context to finish.
		return 0, nilContext(ctx, "Stream.Close")
	}
	if s.inEach() {
		return 0, &UsageError{Msg: "Stream.Close called from within each, which runs as replies are handed out: " +
			"call Close once each has returned, or return an error from each to stop the stream"}
	}
	return s.finish(ctx, true)
}

// Discard drops the commands not sent yet, waits for the replies of those
// sent, with the context the stream was made with, and gives the
// connection back. It finishes the stream as Close does. Called from
// within each, it cannot finish the stream under the replies being handed
// out: it stops it instead, as an error from each would, and Close then
// reports that.
func (s *Stream) Discard() {
	if s.closed {
		return
	}
	if s.inEach() {
		err := &UsageError{Msg: "Stream.Discard called from within each: the stream was stopped; call Close to finish it"}
		s.stop(err)
		if s.eachErr == nil {
			s.eachErr = err // each is not called again, as after an error of its own
		}
		return
	}
	s.finish(s.ctx, false)
}

// stop fails the stream with err, through its routing on a cluster, which
// counts what it has written.
func (s *Stream) stop(err error) {
	if s.cl != nil {
		s.cl.fail(err)
		return
	}
	s.fail(err)
}

// inEach reports whether each is running: replies are being handed out.
func (s *Stream) inEach() bool { return s.busy || s.cl != nil && s.cl.busy }

// chunk is one sent part of a stream.
type chunk struct {
	pending conn.Pending
	replies []resp.Value
	cmds    []cmdMeta
	base    int // index of its first command in the stream
}

// flush sends what is queued as one chunk, then hands out the replies of
// the chunk sent before it. It runs from the encoder whenever the buffer
// reaches streamChunk, with ctx the stream's; Close runs it with its own.
func (s *Stream) flush() {
	if s.cl != nil {
		s.cl.flush(s.ctx, false)
		return
	}
	s.send(s.ctx)
}

func (s *Stream) send(ctx context.Context) {
	p := s.p
	w := &p.w
	if s.busy {
		// A command queued by each as replies are handed out: it goes
		// with the next chunk, after the replies before it.
		return
	}
	if s.closed || s.err != nil || len(w.cmds) == 0 && w.err == nil {
		s.drop() // what is queued after Close or a failure is dropped; Close or Err says so
		return
	}
	if err := p.refusal(); err != nil {
		s.fail(err)
		w.reset()
		return
	}
	if s.d == nil {
		d, err := p.c.getDedicated(ctx, lendStream)
		if err != nil {
			s.fail(err)
			w.reset()
			return
		}
		s.d = d
	}
	ch := s.chunk(len(w.cmds))
	ch.base = s.sent
	ch.cmds, w.cmds = w.cmds, ch.cmds[:0]
	pending, err := s.d.WithGrace(w.grace).Start(ctx, w.buf, ch.replies)
	// Start is done with the bytes: the buffer is free for what each
	// queues while the replies below are handed out.
	w.reset()
	if err != nil {
		// This chunk is not in line, but those before it are: their
		// replies may be in already, or still come, and Close waits for
		// them with its own context. Should the connection have failed,
		// that wait ends at once with its error.
		s.free = append(s.free, ch)
		s.fail(err)
		return
	}
	ch.pending = pending
	s.sent += len(ch.cmds)
	s.inflight = append(s.inflight, ch)
	s.handOut(ctx, 1, true)
}

// handOut hands out the replies of the oldest chunks until keep are left
// in flight, or until the stream fails (only its connection counts when
// stopOnFailure is false). each may queue commands meanwhile; they wait for
// the next send.
func (s *Stream) handOut(ctx context.Context, keep int, stopOnFailure bool) {
	prev := s.busy
	s.busy = true
	defer func() { s.busy = prev }()
	for len(s.inflight) > keep && !s.broken && (s.err == nil || !stopOnFailure) {
		s.deliver(ctx)
	}
}

// fail makes err the stream's error, unless it has one. Once a chunk went
// out, part of the stream has run, whatever err itself says.
func (s *Stream) fail(err error) {
	if s.err != nil {
		return // the first error stands
	}
	if s.sent > 0 {
		err = &uncertainError{msg: "redpipe: stream stopped after " + plural(s.sent, "command was sent", "commands were sent"), err: err}
	}
	s.err = err
}

// chunk returns a chunk with room for n replies.
func (s *Stream) chunk(n int) *chunk {
	var ch *chunk
	if k := len(s.free); k > 0 {
		ch, s.free = s.free[k-1], s.free[:k-1]
	} else {
		ch = &chunk{}
	}
	if cap(ch.replies) < n {
		ch.replies = make([]resp.Value, n)
	}
	ch.replies = ch.replies[:n]
	return ch
}

// deliver waits for the oldest chunk in flight and hands its replies out.
func (s *Stream) deliver(ctx context.Context) {
	ch := s.inflight[0]
	s.inflight = s.inflight[1:]
	if got, err := ch.pending.WaitGot(ctx); err != nil {
		// The replies read before the connection failed, or ctx ended,
		// are those of commands that ran: each has them, in order, as
		// it would have. The rest will not come (the reader drops them,
		// had ctx ended). The chunk is dropped.
		// The failure is the stream's before each sees a reply: should
		// each or a Decoder panic on one, Close, called after a recover,
		// reports it, not the panic, and the connection is not reused.
		s.fail(err)
		s.broken = true
		for i, v := range values(ch.replies[:got]) {
			s.hand(ch.base+i, ch.cmds[i].Name(), v)
		}
		return
	}
	for i, v := range values(ch.replies) {
		s.hand(ch.base+i, ch.cmds[i].Name(), v)
	}
	clear(ch.replies)
	ch.cmds = ch.cmds[:0]
	s.free = append(s.free, ch)
}

// hand applies the decoder of command i, named name, to its reply v,
// notes the reply's error, and gives v to each; once each has failed it
// does nothing.
// An error of each is of unknown outcome whatever it says of its own
// part, since the stream's commands run all the same. A panic of the
// decoder or of each goes on to the caller, and the stream takes it for
// an error of each, so that Close, deferred or called after a recover,
// does not call each again and reports it.
func (s *Stream) hand(i int, name string, v Value) {
	if s.eachErr != nil {
		// Nobody sees the reply, nor its error, which Close would not
		// report over that of each: its decoder, which may panic again,
		// is not run.
		return
	}
	who := "its decoder"
	defer func() {
		if who != "" && s.eachErr == nil {
			s.eachErr = &uncertainError{msg: fmt.Sprintf("redpipe: stream reply %d (%s)", i, name),
				err: errors.New(who + " panicked, or ended its goroutine; each is not called again")}
		}
	}()
	s.p.checkReply(&v, i, name, &s.cmdErr)
	if s.each != nil {
		who = "each"
		if e := s.each(i, v); e != nil {
			s.eachErr = &uncertainError{msg: fmt.Sprintf("redpipe: stream reply %d (%s)", i, name), err: e}
		}
	}
	who = ""
}

// result is the error Close returns: the stream's, then that of each,
// then the first command's.
func (s *Stream) result() error {
	switch {
	case s.err != nil:
		return s.err
	case s.eachErr != nil:
		return s.eachErr
	}
	return s.cmdErr
}

// finish sends the rest (unless discarding), waits for every reply, gives
// the connection back and closes the stream. each or a Decoder may panic,
// or end the goroutine, as it hands the replies out: the stream is then
// finished all the same, without them (see hand), before that goes on up,
// so that a deferred Close, which nothing calls again, does not keep the
// connection (on a cluster, one per node) out of the pool for good.
func (s *Stream) finish(ctx context.Context, send bool) (int, error) {
	ended := false
	defer func() {
		if !ended && !s.closed {
			s.end(ctx, send)
			s.untold = send
		}
	}()
	n, err := s.end(ctx, send)
	ended = true
	return n, err
}

// end is finish, but for what a panic or a Goexit of user code leaves.
func (s *Stream) end(ctx context.Context, send bool) (int, error) {
	if s.cl != nil {
		return s.cl.finish(ctx, send)
	}
	w := &s.p.w
	// What was sent is waited for even after a refused command, so that
	// it has all run when Close returns and the connection stays clean;
	// only a failed connection leaves its replies behind. What each
	// queues meanwhile is sent in turn, unless the stream has failed.
	if !send {
		w.reset()
	}
	for {
		if send {
			s.send(ctx)
		}
		s.handOut(ctx, 0, false)
		if !send || s.err != nil || s.broken || len(w.cmds) == 0 && w.err == nil {
			break
		}
	}
	w.reset()
	if s.d != nil {
		// A stream whose connection failed, or left replies unread, is not
		// reused: Put also asks the connection whether it is idle.
		s.p.c.putDedicated(s.d, !s.broken && len(s.inflight) == 0)
		s.d = nil
	}
	s.closed = true
	s.inflight, s.free = nil, nil
	return s.sent, s.result()
}
