package redpipe

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/resp"
)

// streamChunk is how many encoded bytes a stream gathers before it sends
// them. Chunks much smaller cost a write and a wake-up each for little
// data; much larger ones leave the server idle while the caller encodes.
const streamChunk = 64 << 10

// Stream returns a plain pipeline for batches too large to hold in memory:
// a bulk load of millions of commands, say. It sends its commands in
// chunks while they are still being queued, on a connection of its own,
// and hands every reply to each, in order, instead of keeping it; each's
// i counts from 0 over the whole stream. Memory stays at a few chunks
// whatever the length, and the server works while the caller is still
// encoding.
//
// ctx bounds the sending done while commands are queued; Exec(ctx) sends
// the rest, waits for every reply and returns the connection. Exec's
// replies are always nil: each has had them. Its error is the first of: a
// failure of the connection or a command that could not be queued, an
// error returned by each (after which each is not called again, though
// the replies are still read), and the first command's error as a
// *CommandError unless the option ErrorsInReplies is given. Exec or
// Discard must be called to give the connection back.
//
// A stream is not a transaction, and what it sent has run: Discard drops
// only what is not sent yet, and when a stream fails part way the error's
// outcome (OutcomeOf) is Unknown once any chunk went out. Commands that
// change the connection's state and RunScript are refused; run a script
// with Do("EVALSHA", ...) or Do("EVAL", ...).
func (c *Client) Stream(ctx context.Context, each func(i int, v Value) error, opts ...PipelineOption) *Pipeline {
	p := newPipeline(c, nil, false)
	for _, o := range opts {
		o(p)
	}
	p.transaction = false
	p.w.pooled = false // it never holds more than a chunk
	p.stream = &stream{p: p, ctx: ctx, each: each}
	p.w.full = p.stream.flush
	p.reset()
	return p
}

// stream is the state of a pipeline made by Client.Stream. The chunk just
// sent is in flight while the one before it is answered and handed to
// each, so at most two chunks of replies are ever held.
type stream struct {
	p    *Pipeline
	ctx  context.Context
	each func(int, Value) error
	d    *dedicated

	sent     int      // commands handed to the connection
	inflight []*chunk // sent, replies not yet handed out; oldest first
	free     []*chunk // chunks to reuse
	err      error    // sticky: a failed send or wait, or a refused command
	broken   bool     // err is the connection's: replies in flight will not come
	eachErr  error    // what each returned; each is not called after it
	cmdErr   error    // the first command's own error
}

// chunk is one sent part of a stream.
type chunk struct {
	pending conn.Pending
	replies []resp.Value
	cmds    []cmdMeta
	base    int // index of its first command in the stream
}

// flush sends what is queued as one chunk, then hands out the replies of
// the chunk sent before it. It runs from the encoder whenever the buffer
// reaches streamChunk, with ctx the stream's; Exec runs it with its own.
func (s *stream) flush() { s.send(s.ctx) }

func (s *stream) send(ctx context.Context) {
	p := s.p
	w := &p.w
	defer w.reset()
	if s.err != nil || len(w.cmds) == 0 && w.err == nil {
		return
	}
	if err := s.refuse(); err != nil {
		s.fail(err)
		return
	}
	if s.d == nil {
		d, err := p.c.getDedicated(ctx)
		if err != nil {
			s.fail(err)
			return
		}
		s.d = d
	}
	ch := s.chunk(len(w.cmds))
	ch.base = s.sent
	ch.cmds, w.cmds = w.cmds, ch.cmds[:0]
	pending, err := s.d.WithGrace(w.grace).Start(ctx, w.buf, ch.replies)
	if err != nil {
		s.free = append(s.free, ch)
		s.fail(err)
		s.broken = true
		return
	}
	ch.pending = pending
	s.sent += len(ch.cmds)
	s.inflight = append(s.inflight, ch)
	for len(s.inflight) > 1 && s.err == nil {
		s.deliver(ctx)
	}
}

// refuse checks the queued commands as Pipeline.check does for a batch.
func (s *stream) refuse() error {
	p := s.p
	w := &p.w
	if w.err != nil {
		name := w.errCommand()
		if name == "" {
			return w.err
		}
		return &CommandError{Index: s.sent + w.errIdx, Command: name, In: "stream", Err: w.err}
	}
	if len(p.scripts) > 0 {
		return &UsageError{Msg: "RunScript is not available on a Stream; use Do with EVALSHA or EVAL"}
	}
	if i := w.stateAt - 1; i >= 0 {
		name := w.cmds[i].Name()
		return &CommandError{Index: s.sent + i, Command: name, In: "stream",
			Err: &UsageError{Msg: name + " cannot be queued in a stream; " + connStateHint(name)}}
	}
	return nil
}

// fail makes err the stream's error, unless it has one. Once a chunk went
// out, part of the stream has run, whatever err itself says.
func (s *stream) fail(err error) {
	if s.err != nil {
		return // the first error stands
	}
	if s.sent > 0 {
		err = &uncertainError{msg: "redpipe: stream stopped after " + strconv.Itoa(s.sent) + " commands were sent", err: err}
	}
	s.err = err
}

// chunk returns a chunk with room for n replies.
func (s *stream) chunk(n int) *chunk {
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
func (s *stream) deliver(ctx context.Context) {
	ch := s.inflight[0]
	s.inflight = s.inflight[1:]
	if err := ch.pending.Wait(ctx); err != nil {
		// The reader may still write into replies: the chunk is dropped.
		s.fail(err)
		s.broken = true
		return
	}
	p := s.p
	for i, v := range values(ch.replies) {
		name := ch.cmds[i].Name()
		err := v.Err()
		if err == nil {
			if d := p.decoder(name); d != nil {
				decodeInto(&v, d)
				if _, derr := v.Decoded(); derr != nil {
					err = &DecodeError{Command: name, Err: derr}
				}
			}
		}
		if err != nil && s.cmdErr == nil && !p.errorsInReplies {
			s.cmdErr = &CommandError{Index: ch.base + i, Command: name, In: "stream", Err: err}
		}
		if s.eachErr == nil && s.each != nil {
			if e := s.each(ch.base+i, v); e != nil {
				s.eachErr = fmt.Errorf("redpipe: stream reply %d (%s): %w", ch.base+i, name, e)
			}
		}
	}
	clear(ch.replies)
	ch.cmds = ch.cmds[:0]
	s.free = append(s.free, ch)
}

// finish sends the rest (unless discarding), waits for every reply, gives
// the connection back and readies the stream for reuse.
func (s *stream) finish(ctx context.Context, send bool) error {
	if send {
		s.send(ctx)
	}
	s.p.w.reset()
	// What was sent is waited for even after a refused command, so that
	// it has all run when Exec returns and the connection stays clean;
	// only a failed connection leaves its replies behind.
	for len(s.inflight) > 0 && !s.broken {
		s.deliver(ctx)
	}
	if s.d != nil {
		// A stream whose connection failed, or left replies unread, is not
		// reused: Put also asks the connection whether it is idle.
		s.p.c.pool.Put(s.d, !s.broken && len(s.inflight) == 0)
		s.d = nil
	}
	err := s.err
	if err == nil {
		err = s.eachErr
	}
	if err == nil {
		err = s.cmdErr
	}
	s.sent, s.inflight, s.err, s.broken, s.eachErr, s.cmdErr = 0, s.inflight[:0], nil, false, nil, nil
	return err
}
