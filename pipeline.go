package redpipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/resp"
)

// largePipeline is the encoded size above which a client pipeline runs on a
// dedicated connection instead of the shared one: it would hold up the
// other callers' replies, and a cancelled large send has to end its
// connection, which must not be one that others use.
const largePipeline = 256 << 10

// Pre-encoded MULTI and EXEC, which wrap every transactional batch.
var (
	multiCmd = resp.AppendBulkString(resp.AppendArrayLen(nil, 1), "MULTI")
	execCmd  = resp.AppendBulkString(resp.AppendArrayLen(nil, 1), "EXEC")
)

// Pipeline buffers commands and sends them in one write when Exec is
// called. Its command methods queue a command and return the Pipeline, so
// calls chain:
//
//	replies, err := c.Pipeline().Set("foo", "bar").SAdd("faz", "baz").Incr("n").Exec(ctx)
//
// A Pipeline is transactional by default: Exec wraps the commands in
// MULTI/EXEC, in the same write. Make one with NoTransaction for a plain
// batch. After Exec or Discard the Pipeline is empty and can be used again,
// but for the Multi pipeline of a Tx, which its Exec finishes (see
// Tx.Multi).
// A Pipeline is not safe for concurrent use.
type Pipeline struct {
	c  *Client
	tx *Tx // set for a pipeline made by a Tx: it runs on the Tx's connection
	w  cmdBuf

	transaction     bool
	errorsInReplies bool
	decoders        map[string]Decoder
	scripts         []*Script         // scripts to load before the batch
	scriptAt        []int             // the index of the command that runs each of scripts
	loadErrs        map[*Script]error // the scripts whose load failed, set by sendOn
	asked           resp.Value        // the reply of the ASKING that sendOn sent, zero for none
	multi           bool              // made by Tx.Multi: always sends MULTI/EXEC, even empty
	// A misuse that no reset clears: a nested or finished Multi. On a
	// pipeline of a Tx, guarded by the Tx's lockMu: a call on the Tx, or
	// Multi, may refuse the open Multi from another goroutine.
	broken   error
	stream   *Stream // set for the queue of a Stream
	decoding bool    // Exec runs the Decoders of its replies, which must not Exec or Discard the pipeline under it
}

// PipelineOption changes how a Pipeline runs. Options are given when the
// pipeline is made and cannot be applied to it afterwards: whether a batch
// is a transaction is settled before its first command is queued.
type PipelineOption struct{ apply func(*Pipeline) }

// NoTransaction makes a plain batch: the commands are sent together but not
// wrapped in MULTI/EXEC, so other clients' commands may run between them.
var NoTransaction = PipelineOption{func(p *Pipeline) { p.transaction = false }}

// ErrorsInReplies makes Exec leave each command's error in its reply only,
// as redis-py's raise_on_error=False does. Exec then returns an error only
// when the batch as a whole failed: a lost connection, a watch conflict, a
// transaction the server refused.
var ErrorsInReplies = PipelineOption{func(p *Pipeline) { p.errorsInReplies = true }}

// WithDecoder registers a reply decoder for one command on this pipeline,
// overriding one registered on the Client; a nil d turns the Client's
// off for this pipeline, whose replies to command are then left as they
// came (Decoded returns nil). See Decoder. command is named
// as for Client.SetDecoder: a pipeline made with a name that no reply can
// carry refuses every Exec with the *UsageError that SetDecoder returns,
// and sends nothing.
func WithDecoder(command string, d Decoder) PipelineOption {
	name, err := decoderName(command)
	return PipelineOption{func(p *Pipeline) {
		if err != nil {
			if p.broken == nil {
				p.broken = err
			}
			return
		}
		if p.decoders == nil {
			p.decoders = make(map[string]Decoder)
		}
		p.decoders[name] = d
	}}
}

// applyOptions applies opts to a pipeline being made; a zero option does
// nothing.
func (p *Pipeline) applyOptions(opts []PipelineOption) {
	for _, o := range opts {
		if o.apply != nil {
			o.apply(p)
		}
	}
}

// Pipeline returns a new transactional pipeline, or a plain batch with the
// NoTransaction option.
func (c *Client) Pipeline(opts ...PipelineOption) *Pipeline {
	p := newPipeline(c, nil, true)
	p.applyOptions(opts)
	p.w.slots = c.cluster != nil && !p.transaction
	p.reset()
	return p
}

// pipelineStorage holds a new Pipeline together with room for a short
// batch, so that making a pipeline per batch, the common pattern, costs one
// allocation rather than one per doubling of its buffers.
type pipelineStorage struct {
	p    Pipeline
	buf  [512]byte
	cmds [16]cmdMeta
}

func newPipeline(c *Client, tx *Tx, transaction bool) *Pipeline {
	s := &pipelineStorage{}
	p := &s.p
	p.c, p.tx, p.transaction = c, tx, transaction
	p.w.buf, p.w.cmds = s.buf[:0], s.cmds[:0]
	p.w.pooled, p.w.firstBuf, p.w.firstCmds = true, s.buf[:0], s.cmds[:0]
	return p
}

// Len reports how many commands are queued.
func (p *Pipeline) Len() int { return len(p.w.cmds) }

// Do queues any command given as its words, such as
// p.Do("OBJECT", "ENCODING", "k"), including commands with no typed method.
func (p *Pipeline) Do(args ...any) *Pipeline { p.w.do(args); return p }

// Discard empties the pipeline without sending anything. A Tx's Multi
// pipeline stays open, so commands queued after Discard are the
// transaction.
//
// Called from a Decoder of the pipeline's own Exec, Discard does nothing:
// Exec empties the pipeline once its Decoders have run.
func (p *Pipeline) Discard() {
	if p.decoding {
		return
	}
	p.reset()
	if p.tx != nil {
		p.tx.lockMu.Lock()
		defer p.tx.lockMu.Unlock()
	}
	if p.multi {
		p.broken = nil // a refusal on the Tx is discarded with what it would have joined
	}
}

// endMulti finishes the Multi of a Tx after its Exec, or when its Tx is
// reset or closed: the Tx may start another, and this pipeline is done
// (using it again is an error, not a second transaction on a watch that
// EXEC has ended).
func (p *Pipeline) endMulti() {
	if !p.multi {
		return
	}
	p.tx.lockMu.Lock()
	p.multi = false
	p.broken = &UsageError{Msg: "this Multi pipeline is finished (executed, or its Tx reset or closed); call Multi again"}
	open := p.tx.multi.CompareAndSwap(p, nil)
	p.tx.lockMu.Unlock()
	if open {
		p.tx.spent = append(p.tx.spent, p)
	}
}

// Commands lists the names of the commands queued and not yet sent, in
// order, upper case: "SET", "CONFIG GET".
func (p *Pipeline) Commands() []string {
	names := make([]string, len(p.w.cmds))
	for i := range p.w.cmds {
		names[i] = p.w.cmds[i].Name()
	}
	return names
}

// reset empties the pipeline. A transactional one starts its buffer with
// MULTI, so Exec can send the buffer as it is, with EXEC appended, instead
// of copying the whole batch around them.
func (p *Pipeline) reset() {
	p.w.release()
	p.w.reset()
	if p.transaction {
		p.w.buf = append(p.w.buf, multiCmd...)
	}
	p.scripts, p.scriptAt, p.loadErrs = p.scripts[:0], p.scriptAt[:0], nil
}

// Exec sends the queued commands in one write and returns their replies in
// order, one Value per command; the pipeline is empty again afterwards,
// whatever happens, but for the Multi pipeline of a Tx whose Exec gave up
// waiting for another goroutine's call on that Tx (its context ended
// first): nothing was sent, and the Multi stays open, with its commands,
// for an Exec or a Discard. An empty pipeline makes no round trip.
//
// A nil reply stays with its command (Value.IsNil) and is never an error of
// the batch. A command's own error (WRONGTYPE...) stays in its reply, and
// Exec also returns the first such error as a *CommandError naming the
// command's position, unless the pipeline was made with ErrorsInReplies.
// On a cluster, a write for every master that some masters refused while
// the others ran it has an error reply of unknown outcome (OutcomeOf) that
// wraps the first refusal, as when it is called alone.
//
// If the connection of a plain batch (of a Client, of a Tx, or, on a
// cluster, of one node's part of it) fails after some of its replies were
// read, Exec returns a reply for every command all the same:
// those read, which ran, in their places; for a command sent but not
// answered an error reply of unknown outcome, and for one never written
// an error reply that says it was not sent (OutcomeOf tells which, and
// errors.As finds the *ConnError, whose Unsent says the same). A batch
// that the retry rules sent again (reads, or Idempotent) may have run
// whole on an earlier attempt: a command its last attempt never wrote is
// then of unknown outcome too. The error is then a *CommandError for the
// first command not answered, of unknown outcome whatever ErrorsInReplies
// says, whose text tells where the batch was cut. If no reply came, Exec
// returns no replies and the connection's error. The replies returned go
// through the Decoders, on one node as on a cluster, as those of a batch
// that ran through do.
//
// The same holds for a plain batch whose context ends (deadline or
// cancel) once some of its replies were read: Exec returns those in
// their places, and for every other command an error reply of unknown
// outcome (sent: the server may run it yet), or, where the batch had a
// connection of its own (a large or blocking batch), which is then
// closed, one that says not sent for a command never written. The error
// is a *CommandError for the first command not answered, whose text says
// that the context ended; errors.Is finds the context's error in it, and
// in each of those error replies. The replies not read are never handed
// to another call: a shared connection's reader drops them, and a
// batch's own connection is closed.
//
// A transaction returns either every reply of EXEC, or an error that says
// nothing was applied (errors.Is(err, ErrNotApplied)): a watch conflict
// (ErrWatch) or an *ExecAbortError carrying each refused command's cause.
// If the connection fails after the batch was written, the outcome is
// unknown and the error says so; no reply is returned, whatever replies
// of MULTI and QUEUED came first. A server that refuses MULTI itself (a
// user whose ACL lacks it) runs each command behind it on its own, as it
// comes, outside any transaction: Exec then returns their replies, in
// order and decoded, each telling what its command did, with the refusal
// as its error, of unknown outcome (the batch was neither applied whole
// nor refused whole), which says what to grant or do instead.
func (p *Pipeline) Exec(ctx context.Context) ([]Value, error) {
	if p.decoding {
		// It would send the batch being decoded again.
		return nil, &UsageError{Msg: "Exec of a Pipeline from a Decoder of its own Exec"}
	}
	if badContext(ctx) {
		err := nilContext(ctx, "Pipeline.Exec")
		if p.multi {
			// Nothing was sent: the Multi stays open, with its commands,
			// as when its Exec gives up waiting for the Tx.
			return nil, notAppliedTx(err)
		}
		if p.tx != nil {
			// As any Exec of a plain Pipeline of the Tx, it refuses the
			// Tx's open Multi, if any; a pipeline of the Tx of an ended
			// attempt of a Transaction fails that Transaction.
			p.tx.nilContextUse(txPipelineExec, !p.transaction && p.refusal() == nil && p.plainTxRefusal() == nil)
		}
		p.reset()
		if p.transaction {
			return nil, notAppliedTx(err)
		}
		return nil, err
	}
	if p.tx != nil {
		// Released once exec has settled the Tx's state, before the
		// replies are decoded. A plain Pipeline of the Tx cannot end an
		// open Multi, which refuses it: it takes the Tx as a command on
		// it does (see Tx.acquireImmediate).
		var err error
		if p.transaction {
			err = p.tx.acquire(ctx)
		} else {
			err = p.tx.acquireImmediate(ctx, func() (string, bool) { return txPipelineExec, p.refusal() == nil && p.plainTxRefusal() == nil })
		}
		if err != nil {
			// Nothing was sent.
			if p.transaction {
				// A Multi pipeline is the Tx's state too, which only the
				// call that holds the Tx may change: it stays open.
				return nil, notAppliedTx(err)
			}
			// No other call of the Tx uses a pipeline of its own: it
			// is emptied, as a failed Exec empties it.
			p.reset()
			return nil, err
		}
		h := txHold{t: p.tx, held: true}
		defer h.release()
		return p.exec(ctx, &h)
	}
	return p.exec(ctx, nil)
}

// exec is Exec, by a call that holds the pipeline's Tx, by h, if it has
// one. h is released before the Decoders run, once the Tx's state is
// settled (see txHold).
func (p *Pipeline) exec(ctx context.Context, h *txHold) ([]Value, error) {
	// Emptied once the Decoders, which name the commands, have run; a
	// Multi pipeline before the Tx is given up (below).
	emptied := false
	defer func() {
		if !emptied {
			p.reset()
		}
	}()
	multi := p.multi
	replies, errs, decoded, err := p.execSend(ctx)
	if err != nil && replies != nil && !decoded {
		// A plain batch whose connection failed partway, or a
		// transaction whose MULTI the server refused: the replies read
		// are decoded as they would have been, once the Tx, if any, is
		// given up, and the batch's error is the failure's, whatever
		// they hold.
		var names []string
		if multi {
			// Emptied before the Tx is given up, as below.
			names = p.Commands()
			p.reset()
			emptied = true
		}
		h.release()
		p.decoding = true
		defer func() { p.decoding = false }()
		p.finishNamed(replies, errs, names)
		return replies, err
	}
	if err != nil || decoded || len(replies) == 0 {
		return replies, err
	}
	var names []string
	if multi {
		// The Tx looks at its spent Multi pipelines (see Tx.unsent), so
		// this one is emptied before the Tx is given up; the Decoders
		// have the names of its commands.
		if p.decodes(replies) {
			names = p.Commands()
		}
		p.reset()
		emptied = true
	}
	h.release()
	p.decoding = true
	defer func() { p.decoding = false }()
	if multi && names == nil {
		return replies, nil // nothing to decode, no error reply
	}
	err = p.finishNamed(replies, errs, names)
	if err != nil && p.tx != nil && p.tx.retried {
		// A command's error, or its Decoder's, noted as execSend notes
		// the errors of the send.
		switch {
		case multi:
			// Unless a later Exec, run once the Tx was given up (by a
			// Decoder of this one, say), noted its own outcome since:
			// the error goes with the replies it was found in.
			p.tx.lockMu.Lock()
			if out := p.tx.execOut; len(out) > 0 && &out[0] == &replies[0] {
				p.tx.execErr = err
			}
			p.tx.lockMu.Unlock()
		case !p.transaction:
			err = p.tx.noteRead(err)
		}
	}
	return replies, err
}

// execSend is exec up to the decoding of the replies, which it returns
// with how many are errors (see finish) and the Tx's state settled;
// decoded says that they were decoded already (on a cluster, part by
// part).
func (p *Pipeline) execSend(ctx context.Context) (execReplies []Value, errs int, decoded bool, err error) {
	multi := p.multi
	if multi && len(p.w.cmds) > 0 {
		defer func() {
			if err == nil || !SafeToRetry(err) {
				p.tx.execRan = true
			}
		}()
	}
	if multi && p.tx.retried {
		// Transaction reports how the last Exec fn ran itself ended, if
		// fn opens no other Multi after it.
		defer func() {
			p.tx.lockMu.Lock()
			p.tx.execErr, p.tx.execOut = err, execReplies
			p.tx.lockMu.Unlock()
		}()
	}
	if p.tx != nil && p.tx.retried && !p.transaction {
		// A Pipeline of a Transaction's Tx only reads (see check): its
		// error, a *CommandError of a read answered MOVED or WRONGTYPE
		// included, says nothing was applied if fn returns it.
		defer func() {
			if err != nil {
				err = p.tx.noteRead(err)
			}
		}()
	}
	defer p.endMulti() // whatever happens, a Multi is used once
	traits, err := p.check()
	if err != nil {
		if p.transaction && !errors.Is(err, ErrNotApplied) {
			// Refused before a byte was sent: certainly not applied.
			return nil, 0, false, notAppliedTx(err)
		}
		return nil, 0, false, err
	}
	n := len(p.w.cmds)
	if n == 0 && !multi {
		return nil, 0, false, nil
	}
	if p.c != nil && p.c.cluster != nil && p.tx == nil {
		replies, err := p.clusterExec(ctx, traits)
		return replies, 0, true, err
	}
	out, errs, err := p.send(ctx, traits)
	if err != nil {
		if out != nil {
			// A plain batch whose connection failed partway: a reply
			// per command all the same (see cutReplies).
			p.blameLoads(p.loadErrs, out, nil)
			return values(out), -1, false, err
		}
		return nil, 0, false, err
	}
	var results []resp.Value
	if p.transaction {
		errs = -1 // EXEC's elements were not counted
		results, err = p.execResult(out, n)
		if err != nil {
			if results != nil {
				// MULTI was refused and the commands ran on their own:
				// their replies go with the refusal.
				p.blameLoads(p.loadErrs, results, nil)
				return values(results), -1, false, err
			}
			return nil, 0, false, err
		}
	} else {
		results = out
	}
	p.blameLoads(p.loadErrs, results, nil)
	replies := values(results)
	if len(replies) != n {
		return nil, 0, false, fmt.Errorf("redpipe: EXEC returned %d replies for %d commands", len(replies), n)
	}
	return replies, errs, false, nil
}

// clusterExec sends the batch of a cluster Client, which runs the
// Decoders within, as each node's replies come in: a Decoder of the
// batch must not Exec or Discard it under them (see Exec).
func (p *Pipeline) clusterExec(ctx context.Context, traits batchTraits) ([]Value, error) {
	p.decoding = true
	defer func() { p.decoding = false }()
	return p.c.cluster.exec(ctx, p, traits)
}

// batchTraits are what one look over a batch's commands tells the sending
// of it.
type batchTraits struct {
	readonly bool       // every command only reads: a batch of unknown outcome may be resent
	blocking bool       // some command may block: the batch needs its own connection
	grace    conn.Grace // how long its blocking commands may keep the server quiet
}

// check refuses a batch that cannot be sent (see refusal), or that its Tx
// cannot run now, and tells its traits.
func (p *Pipeline) check() (batchTraits, error) {
	t := batchTraits{readonly: true}
	if p.tx != nil && p.tx.closed {
		// Before the refusal of a finished Multi: a pipeline of a closed
		// Tx says the Tx is closed, and one of a Transaction's ended
		// attempt fails the attempt under way.
		return t, p.tx.usable()
	}
	if err := p.refusal(); err != nil {
		return t, err
	}
	t.readonly = !p.w.writes
	t.blocking = p.w.blocking
	if !p.transaction {
		// Inside MULTI a blocking command does not block.
		t.grace = p.w.grace
	}
	if p.tx == nil {
		return t, nil
	}
	if p.transaction {
		if err := p.tx.keepsToSlot("transaction", p.w.buf, len(multiCmd), p.w.cmds); err != nil {
			return t, err
		}
		return t, p.tx.usable()
	}
	if err := p.plainTxRefusal(); err != nil {
		return t, err
	}
	return t, p.tx.immediate(txPipelineExec)
}

// txPipelineExec names the Exec of a plain Pipeline of a Tx in the
// refusal of an open Multi.
const txPipelineExec = "Exec of a Tx's Pipeline"

// plainTxRefusal tells why the session cannot run p, a plain Pipeline of
// it, whatever its state: a command outside the slot of a cluster
// session, or a write on the Tx of a Transaction. Both are fixed when the
// pipeline is made, so it may be asked without holding the session.
func (p *Pipeline) plainTxRefusal() error {
	if err := p.tx.keepsToSlot("pipeline of a cluster Tx", p.w.buf, 0, p.w.cmds); err != nil {
		return err
	}
	if p.tx.retried && p.w.writes && slices.ContainsFunc(p.w.cmds, func(m cmdMeta) bool { return mayWrite(m.info()) }) {
		return &UsageError{Msg: "a write in a Pipeline of the Tx of a Transaction would run at once, outside the transaction, " +
			"and again on every retry: queue it on the Pipeline that Multi returns"}
	}
	return nil
}

// refusal tells why the queued commands cannot be sent, or returns nil:
// a misuse of a Multi, an encoding error, or a
// command that would change the connection's state under the batch. A
// stream numbers its commands from the first it sent.
func (p *Pipeline) refusal() error {
	if p.tx != nil {
		p.tx.lockMu.Lock()
		broken := p.broken
		p.tx.lockMu.Unlock()
		if broken != nil {
			return broken
		}
	} else if p.broken != nil {
		return p.broken
	}
	w := &p.w
	w.unfinished()
	base, queue := 0, "pipeline"
	if p.stream != nil {
		base, queue = p.stream.sent, "stream"
	}
	if w.err != nil {
		name := w.errCommand()
		if name == "" {
			return w.err
		}
		return &CommandError{Index: base + w.errIdx, Command: name, In: p.kind(), Err: w.err}
	}
	if i := w.stateAt - 1; i >= 0 {
		name := w.cmds[i].Name()
		return &CommandError{Index: base + i, Command: name, In: p.kind(),
			Err: &UsageError{Msg: name + " cannot be queued in a " + queue + "; " + connStateHint(name)}}
	}
	return nil
}

// kind names the batch in errors.
func (p *Pipeline) kind() string {
	switch {
	case p.stream != nil:
		return "stream"
	case p.transaction:
		return "transaction"
	}
	return "pipeline"
}

// send writes the whole batch (script loads, MULTI, the commands, EXEC) and
// returns the replies that follow the script loads; the loads that failed
// are left in p.loadErrs (see blameLoads).
//
// errs is how many of the replies are errors, or -1 when that is not known.
func (p *Pipeline) send(ctx context.Context, traits batchTraits) (_ []resp.Value, errs int, _ error) {
	return p.sendOn(ctx, traits, p.c, false)
}

// sendOn is send on the client c, which is p's own or, on a cluster, the
// client of the node the batch goes to; asking puts ASKING before MULTI
// (after any script loads), on the same connection.
func (p *Pipeline) sendOn(ctx context.Context, traits batchTraits, c *Client, asking bool) (_ []resp.Value, errs int, _ error) {
	n := len(p.w.cmds)
	buf := p.w.buf
	if p.transaction {
		buf = append(buf, execCmd...)
	}
	extra := 0
	if len(p.scripts) > 0 || asking {
		// The rare case copies: the script loads go before MULTI.
		b := make([]byte, 0, len(buf)+64*len(p.scripts)+len(askingCmd))
		seen := make(map[*Script]bool, len(p.scripts))
		for _, s := range p.scripts {
			if !seen[s] {
				seen[s] = true
				b = resp.AppendArrayLen(b, 3)
				b = resp.AppendBulkString(b, "SCRIPT")
				b = resp.AppendBulkString(b, "LOAD")
				b = resp.AppendBulkString(b, s.src)
				extra++
			}
		}
		if asking {
			b = append(b, askingCmd...)
		}
		buf = append(b, buf...)
	}
	skip := extra // replies before the batch's own
	if asking {
		skip++
	}
	total := skip + n
	if p.transaction {
		total += 2
	}
	var replies []resp.Value
	var err error
	check := execCheck{keep: !p.transaction}
	if p.transaction {
		check = execCheck{p: p, skip: skip}
	}
	errs = -1
	if p.tx != nil {
		replies = make([]resp.Value, total)
		// Inside MULTI a blocking command does not block.
		err = p.tx.do(ctx, buf, replies, p.transaction, traits.blocking && !p.transaction, traits.grace, check)
	} else {
		rctx := ctx
		if p.transaction && isIdempotent(ctx) {
			// A transaction is never sent again once EXEC may have reached
			// the server, whatever the context says: only one that reads
			// alone is.
			rctx = context.WithValue(ctx, idempotentKey{}, false)
		}
		err = c.retry(rctx, traits.readonly, func() (err error) {
			replies, errs, err = c.sendChecked(ctx, buf, total, traits, check)
			return err
		})
	}
	if err != nil {
		if p.transaction {
			return nil, 0, txSendError(err)
		}
		// The cut of the last attempt, which the retry rules may have
		// wrapped (an earlier attempt was cut too, say).
		var cut *cutError
		if errors.As(err, &cut) {
			at := len(buf) - len(p.w.buf) // where the batch's own bytes begin
			if len(cut.replies) <= skip && cut.sent <= at {
				// No command of the batch was answered, nor written:
				// the error says what became of it.
				return nil, 0, unwrapCut(err)
			}
			// Some commands were answered, or only written (a BLPOP
			// held them, the connection failed before any reply came):
			// each gets its reply, or the error that says whether it
			// may have run, as a cluster part's do.
			p.loadErrs = loadErrs(p.scripts, cut.replies[:min(extra, len(cut.replies))])
			return p.cutReplies(cut, err, skip, at)
		}
		return nil, 0, err
	}
	p.loadErrs = loadErrs(p.scripts, replies[:extra])
	p.asked = resp.Value{}
	if asking {
		p.asked = replies[extra]
	}
	return replies[skip:], errs, nil
}

// cutError is the failure of the connection under a plain batch after
// some of its replies were read, or some of its bytes written, which it
// holds (the replies, none or a few), with sent, how many bytes of the
// batch the socket had accepted. To every other reader
// (retry, OutcomeOf) it is the connection's error; sendOn makes a reply
// of it for each command (see cutReplies).
type cutError struct {
	replies []resp.Value
	sent    int
	err     error
}

func (e *cutError) Error() string { return e.err.Error() }
func (e *cutError) Unwrap() error { return e.err }

// unwrapCut returns err with its *cutError, which holds replies the
// caller has taken out of it (and, through them, the buffers they were
// read into), replaced by the connection's error it wraps: err itself,
// or the error that the retry rules wrapped in an *uncertainError to say
// that an earlier attempt may have run (see Client.retry), which is
// made again around the connection's error. Its text, errors.Is, As and
// OutcomeOf say the same of the error returned as of err; only the
// record of the cut, which the caller keeps no longer, is gone. Ask
// cutAgain of err before.
func unwrapCut(err error) error {
	switch e := err.(type) {
	case *cutError:
		return e.err
	case *uncertainError:
		if inner := unwrapCut(e.err); inner != e.err {
			return &uncertainError{msg: e.msg, err: inner}
		}
	}
	return err
}

// cutAgain tells whether err, the failure of a batch that holds a
// *cutError, wraps it as the retry rules do when the batch was sent more
// than once and an earlier attempt may have run (see Client.retry): the
// cut tells what the last attempt wrote, not what the earlier ones did,
// which may be the whole batch. A command the last attempt did not write
// is then of unknown outcome, not "not sent".
func cutAgain(err error) bool {
	var cut *cutError
	return errors.As(err, &cut) && err != error(cut)
}

// cutReplies returns the replies of a plain batch that cut stopped
// partway, one per command, and the error of the batch. A command
// answered before the cut has its reply: it ran. One written but not
// answered has an error reply of unknown outcome, and one never written
// an error reply that says it was not sent; both wrap the connection's
// error (a *ConnError, its Unsent telling which). The batch's error, of
// unknown outcome, is a *CommandError for the first command not
// answered. The batch's bytes start at offset at in those that were
// written (after the script loads, say), skip replies in. cause is the
// error of the send that ended with cut: cut's own, or one that wraps it.
func (p *Pipeline) cutReplies(cut *cutError, cause error, skip, at int) ([]resp.Value, int, error) {
	n := len(p.w.cmds)
	got := max(len(cut.replies)-skip, 0)
	begun := commandsBegun(p.w.buf, n, cut.sent-at)
	// An earlier attempt, cut too, may have written, and run, what the
	// last one did not (see cutAgain).
	again := cutAgain(cause)
	ce := unwrapCut(cause)
	// A batch whose context ended as its replies came may have left its
	// connection as it was, to the reader (a shared one): the replies of
	// the commands not answered then wrap the context's error alone.
	what := "the connection failed"
	ended := errors.Is(ce, context.Canceled) || errors.Is(ce, context.DeadlineExceeded)
	if ended {
		what = "the context ended"
	}
	var connErr *conn.Error
	if !errors.As(ce, &connErr) && !ended {
		connErr = &conn.Error{Op: "read", Err: ce}
	}
	inner := func(unsent bool) error {
		if connErr == nil {
			return ce
		}
		e := *connErr
		e.Unsent = unsent
		return &e
	}
	replies := make([]resp.Value, n)
	if got > 0 {
		copy(replies, cut.replies[skip:])
	}
	if got < begun {
		v := madeErrorValue(&uncertainError{msg: "redpipe: outcome unknown: the command was sent, but " + what + " before its reply", err: inner(false)})
		for i := got; i < begun; i++ {
			replies[i] = v
		}
	}
	if begun < n {
		v := madeErrorValue(notSent(fmt.Errorf("redpipe: not sent: %s before the command was written: %w", what, inner(true))))
		if again {
			v = madeErrorValue(&uncertainError{msg: "redpipe: outcome unknown: the last attempt did not send the command, but an earlier one may have run it", err: inner(false)})
		}
		for i := max(got, begun); i < n; i++ {
			replies[i] = v
		}
	}
	msg := fmt.Sprintf("redpipe: %s after the replies of the first %s of %d, which ran", what, plural(got, "command", "commands"), n)
	if got == 0 {
		msg = fmt.Sprintf("redpipe: %s before any of the %d commands was answered", what, n)
	}
	if got < begun {
		msg += "; " + commandSpan(got+1, begun, "was sent and may have run", "were sent and may have run")
	}
	if begun < n {
		if again {
			msg += "; " + commandSpan(max(got, begun)+1, n, "was not sent again, but an earlier attempt may have run it", "were not sent again, but an earlier attempt may have run them")
		} else {
			msg += "; " + commandSpan(max(got, begun)+1, n, "was not sent", "were not sent")
		}
	}
	return replies, -1, &CommandError{Index: got, Command: p.w.cmds[got].Name(), In: p.kind(), Err: &uncertainError{msg: msg, err: ce}}
}

// commandSpan names the commands from to to, counted from 1, with what
// is said of them: "command 3 was not sent", "commands 3 to 7 were not
// sent".
func commandSpan(from, to int, one, many string) string {
	if from == to {
		return fmt.Sprintf("command %d %s", from, one)
	}
	return fmt.Sprintf("commands %d to %d %s", from, to, many)
}

// commandsBegun tells how many of the n commands encoded in buf begin
// before its offset sent: the socket accepted at least their first byte.
func commandsBegun(buf []byte, n, sent int) int {
	off := 0
	for i := 0; i < n; i++ {
		if off >= sent {
			return i
		}
		off = cmdEnd(buf, off)
	}
	return n
}

// sendBatch sends a client pipeline's bytes, n commands, on the shared
// connection, or on a dedicated one when the batch is large or may block,
// and returns their replies and how many are errors.
func (c *Client) sendBatch(ctx context.Context, buf []byte, n int, traits batchTraits) ([]resp.Value, int, error) {
	return c.sendChecked(ctx, buf, n, traits, execCheck{})
}

// execCheck checks the replies of a transaction's batch (see execShape).
// The zero value, for a batch that is no transaction, checks nothing.
type execCheck struct {
	p    *Pipeline
	skip int // the replies before MULTI's: script loads, ASKING
	// keep, for a plain batch, returns the replies read before its
	// connection failed, in a *cutError.
	keep bool
}

func (k execCheck) of(out []resp.Value) error {
	if k.p == nil {
		return nil
	}
	return k.p.execShape(out[k.skip:])
}

// sendChecked is sendBatch with a check of the replies: replies it finds
// wrong fail the connection that read them (see conn.Conn.Fail), whose
// error is returned.
func (c *Client) sendChecked(ctx context.Context, buf []byte, n int, traits batchTraits, check execCheck) ([]resp.Value, int, error) {
	var cn *conn.Conn
	var d *dedicated
	var replies []resp.Value
	var errs, sent int
	var err error
	if traits.blocking || len(buf) > largePipeline {
		use := lendLarge
		if traits.blocking {
			use = lendBlocking
		}
		if d, err = c.getDedicated(ctx, use); err != nil {
			return nil, 0, err
		}
		cn = d.Conn
		// Sole: a batch cut short by ctx ends the connection, which is
		// closed after, and its commands never written say so.
		replies, errs, sent, err = d.WithGrace(traits.grace).Sole().DoNCut(ctx, buf, n)
	} else {
		redialed := false
		for {
			if cn, err = c.sharedConn(ctx); err != nil {
				return nil, 0, err
			}
			if f := sharedTaken.get(); f != nil {
				f(c, cn)
			}
			replies, errs, sent, err = cn.DoNCut(ctx, buf, n)
			if err == nil || !replaced(err) && !closedIdle(err, &redialed) {
				break
			}
			// See replaced and closedIdle, and runOnce: the batch goes
			// on the connection that took the place of the one it met
			// closed.
		}
	}
	if err == nil {
		if e := check.of(replies); e != nil {
			replies, errs, err = nil, 0, cn.Fail(e)
		}
	} else if len(replies) > 0 || sent > 0 {
		// sent is set only for a connection that failed under the
		// batch: with no reply read, the cut tells a cluster part which
		// of its commands were never written (see cutPartReplies).
		if check.keep {
			err = &cutError{replies: replies, sent: sent, err: err}
		}
		replies, errs = nil, 0
	}
	if d != nil {
		c.putDedicated(d, err == nil)
	}
	return replies, errs, err
}

// execShape tells what is wrong with out, the replies of MULTI, of each
// command queued and of EXEC, if they are not what a server sends for a
// transaction: OK, then QUEUED or an error for each command, then nil, an
// error, or an array of one reply per command. A stream with anything
// else is out of step, or the server did not queue the commands as it
// said. Behind a refused MULTI the commands ran on their own, and their
// replies may be anything; execResult reports that.
func (p *Pipeline) execShape(out []resp.Value) error {
	n := len(p.w.cmds)
	if len(out) != n+2 || out[0].Kind == resp.Error || out[0].Kind == resp.BulkError {
		return nil
	}
	if m := out[0]; m.Kind != resp.SimpleString || m.Str != "OK" {
		return unexpected("MULTI was answered with %v, not OK", replyDesc(m))
	}
	for i, q := range out[1 : 1+n] {
		if q.Kind != resp.Error && q.Kind != resp.BulkError && (q.Kind != resp.SimpleString || q.Str != "QUEUED") {
			return unexpected("command %d (%s) of the transaction was answered with %v, not QUEUED", i+1, p.w.cmds[i].Name(), replyDesc(q))
		}
	}
	switch e := out[1+n]; e.Kind {
	case resp.Null, resp.Error, resp.BulkError:
	case resp.Array:
		if len(e.Elems) != n {
			return unexpected("EXEC returned %d replies for %d commands", len(e.Elems), n)
		}
	default:
		return unexpected("EXEC was answered with %v, not an array of replies", replyDesc(e))
	}
	return nil
}

// unexpectedReplies is what execShape finds wrong. Like a malformed
// reply, it is the server's doing, and sent again the batch would get
// the same answer: it is not retried (see brokenServer).
type unexpectedReplies struct{ msg string }

func (e *unexpectedReplies) Error() string { return e.msg }

func unexpected(format string, args ...any) error {
	return &unexpectedReplies{msg: fmt.Sprintf(format, args...)}
}

// replyDesc names a reply's kind, with its text if it is a short status,
// for an error that says what came instead of what was expected.
func replyDesc(v resp.Value) string {
	if v.Kind == resp.SimpleString {
		return "a simple string " + strconv.Quote(clip(v.Str))
	}
	return withArticle(v.Kind.String())
}

// execResult reads the replies of MULTI, the queued commands and EXEC.
// If the server refused MULTI, it returns the commands' own replies, of
// commands that ran one by one, with the refusal as its error.
func (p *Pipeline) execResult(out []resp.Value, n int) ([]resp.Value, error) {
	if err := (Value{out[0]}).Err(); err != nil {
		// The server then ran each command on its own as it arrived.
		msg := "redpipe: MULTI was refused, so the commands behind it ran outside a transaction"
		if se := (*Error)(nil); errors.As(err, &se) && se.Prefix == "NOPERM" && p.c != nil {
			// A user allowed the commands but not the @transaction
			// category, as rules that list commands one by one are.
			msg += " (allow the user MULTI and EXEC, " + aclGrant(p.c.opt.Username, "MULTI", "EXEC") + " or the @transaction category"
			if p.tx == nil {
				msg += ", or make the pipeline with NoTransaction"
			}
			msg += ")"
		}
		// Their replies are returned with the refusal: each tells what
		// its command did.
		return out[1 : 1+n : 1+n], &uncertainError{msg: msg, err: err}
	}
	queued, exec := out[1:1+n], Value{out[1+n]}
	if p.tx != nil {
		p.tx.watching.Store(false) // EXEC ends every WATCH, whatever its outcome
	}
	if e := exec.Err(); e != nil {
		se := e.(*Error)
		if se.Prefix == "EXECABORT" {
			ae := &ExecAbortError{Err: se}
			for i, q := range values(queued) {
				if qe := q.Err(); qe != nil {
					ae.Failed = append(ae.Failed, CommandError{Index: i, Command: p.w.cmds[i].Name(), In: "transaction", Err: qe})
				}
			}
			return nil, ae
		}
		return nil, notAppliedTx(fmt.Errorf("EXEC failed: %w", e))
	}
	if exec.IsNil() {
		return nil, ErrWatch
	}
	if exec.v.Kind != resp.Array {
		return nil, fmt.Errorf("redpipe: EXEC replied with a %s", exec.Kind())
	}
	return exec.v.Elems, nil
}

// finish applies the reply decoders and picks the batch's first error;
// errs is how many replies are errors, or -1 if not known.
func (p *Pipeline) finish(replies []Value, errs int) error {
	return p.finishNamed(replies, errs, nil)
}

// finishNamed is finish for the commands named by names, or by the
// queued commands if names is nil.
func (p *Pipeline) finishNamed(replies []Value, errs int, names []string) error {
	// Most batches have no decoder and no error: then each reply is only
	// looked at for its kind, or not at all when none is known to be an
	// error.
	decoding := p.hasDecoders()
	if errs == 0 && !decoding {
		return nil
	}
	var first, misuse error
	for i := range replies {
		if decoding || replies[i].isErr() {
			name := ""
			if names != nil {
				name = names[i]
			} else {
				name = p.w.cmds[i].Name()
			}
			queued, refused := len(p.w.cmds), p.w.err
			p.checkReply(&replies[i], i, name, &first)
			if misuse == nil && (len(p.w.cmds) > queued || p.w.err != refused) {
				misuse = p.queuedByDecoder(i, name, queued)
			}
		}
	}
	if misuse != nil {
		// Reported whatever ErrorsInReplies says: no reply carries it.
		return misuse
	}
	return first
}

// queuedByDecoder is the error of an Exec during which the Decoder of
// command i, name, queued commands on the pipeline, from the queued-th
// on: this Exec does not send them, and empties the pipeline once its
// Decoders have run (a Multi's Exec finishes it: its next Exec refuses
// them), so they would go nowhere unsaid.
func (p *Pipeline) queuedByDecoder(i int, name string, queued int) error {
	what := "a command"
	if len(p.w.cmds) > queued {
		what = p.w.cmds[queued].Name()
	} else if n := p.w.errCommand(); n != "" {
		what = n
	}
	// The batch ran: a *UsageError alone would say it was not sent.
	return &uncertainError{msg: "redpipe: the batch ran, but", err: &CommandError{Index: i, Command: name, In: p.kind(), Err: &UsageError{Msg: what +
		" queued on a Pipeline by a Decoder of that Pipeline's own Exec, which does not send it: " +
		"queue it on another Pipeline, or on this one once Exec has returned"}}}
}

func (p *Pipeline) hasDecoders() bool {
	return p.decoders != nil || (p.c != nil && p.c.decoderTable() != nil)
}

// decodes reports whether finish has work to do on replies: a Decoder to
// run, or an error reply.
func (p *Pipeline) decodes(replies []Value) bool {
	return p.hasDecoders() || slices.ContainsFunc(replies, Value.isErr)
}

// checkReply applies the decoder of command name to its reply v, unless v
// is an error (made one of unknown outcome for a script that may write:
// see markScriptErr), and makes the reply's error (the server's or the
// decoder's) the batch's *first, as a *CommandError for command i, if
// there is none yet and the pipeline does not leave errors in replies.
func (p *Pipeline) checkReply(v *Value, i int, name string, first *error) {
	err := markScriptErr(v, name, p.transaction)
	if err == nil {
		err = decodeReply(v, name, p.decoder(name))
	}
	if err != nil && *first == nil && !p.errorsInReplies {
		*first = &CommandError{Index: i, Command: name, In: p.kind(), Err: err}
	}
}

func (p *Pipeline) decoder(name string) Decoder {
	if d, ok := p.decoders[name]; ok {
		return d // nil here turns off the client's decoder
	}
	if p.c != nil {
		return p.c.decoder(name)
	}
	return nil
}
