package redpipe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
)

// Tx is an optimistic-locking session: a connection of its own, on which
// WATCH has been sent. Its command methods run immediately and return their
// replies, so the values a transaction depends on can be read; Multi then
// starts the buffered, transactional part, which Exec sends as
// MULTI ... EXEC on the same connection. If a watched key changed in
// between, Exec fails with ErrWatch and nothing is applied.
//
// While a Multi pipeline is open (from Multi until its Exec), the Tx
// itself runs nothing: a command, Watch, Unwatch, Pipeline or a second
// Multi on the Tx is refused with a *UsageError and sends nothing, and the
// open transaction is refused too (its Exec fails, not applied) until it is
// Discarded. Queue the transaction's commands on the Pipeline Multi
// returned.
//
// Always Close a Tx (defer tx.Close()): it sends UNWATCH if a watch may
// still be armed and gives the connection back to the pool. Reset instead
// leaves it ready for another Watch. A blocking command (BLPOP) whose
// context ends while the server still blocks in it closes the session's
// connection, which cancels the block and the watch: the session then
// refuses calls until Reset.
//
// A Tx runs one call at a time: calls from several goroutines (fn reading
// two keys at once, say) take turns, each waiting for the last within its
// own context, so that the session's state (the open Multi, the watch)
// changes between calls only, never under one. Watching does not wait;
// Close and Reset wait for the call under way, except a blocking command,
// which they end (see Close). Multi, which sends nothing and has no
// context, does not wait either: it opens the transaction at once, and its
// Exec waits for the call under way within Exec's context.
//
// A call gives the Tx up before the Decoders of its replies run, its work
// on the session done: a Decoder may call the Tx it decodes for (Close
// included), and another goroutine's call may run before the decoded call
// returns. So do Close and Reset for the Decoder of the UNWATCH they send:
// it runs once the session is closed, or reset, and a call on the Tx made
// meanwhile, from it or from another goroutine, finds it so.
type Tx struct {
	c *Client
	d *dedicated // nil once Reset let a failed connection go: the next call lends another

	// A WATCH may be armed on the connection. Written by the call that
	// holds the session's lock; read by Watching without it, which must
	// not wait for a blocking call of another goroutine, nor for the call
	// of a Decoder that asks.
	watching atomic.Bool
	// The open Multi pipeline, until its Exec. Multi, which has no
	// context to bound a wait, opens it without waiting for the call
	// under way: it is stored under lockMu, by Multi or by the call that
	// holds the session, and read by that call without it.
	multi atomic.Pointer[Pipeline]
	spent []*Pipeline // Multi pipelines executed, whose later commands would go nowhere
	// Written under lockMu by the call that holds the session; read by
	// that call, or under lockMu by Multi.
	closed bool
	// The session's lock: busy while a call runs on it, which alone
	// changes its state (but for the open Multi, above); freed, if a call
	// waits, is closed when it ends. Both guarded by lockMu (see acquire).
	// lockMu also guards the broken field of the session's pipelines,
	// which Multi, Discard and the holder's calls set.
	lockMu sync.Mutex
	busy   bool
	freed  chan struct{}
	// A call that cannot end an open Multi holds the session: a command
	// that runs at once (see run), or the Exec of a plain Pipeline of the
	// session. Guarded by lockMu.
	immediateHeld bool
	// The connection of a call with a blocking command while it runs,
	// else nil: set by that call, which holds the session's lock; read
	// without it by Close and Reset, which fail it to end the block (see
	// acquireEnding).
	blocked atomic.Pointer[dedicated]
	broken  error // the connection failed: the Tx can only be closed or reset
	turn    *turn // a Transaction's turn on its keys, given back once EXEC is written
	retried bool  // made by Transaction, which may run fn again: writes outside Multi are refused
	execRan bool  // the Exec of a Multi pipeline may have applied
	// Written and read under lockMu: a call sets them once the session
	// is free again, after its Decoders ran (see txHold).
	readErr error   // the last error of a command or Pipeline of a Transaction's Tx, which only read
	execErr error   // the error of the last Exec of a Multi pipeline fn ran itself, nil if it succeeded
	execOut []Value // the replies of that Exec
	call    *txCall // the call of Transaction the session was made for, if any
	first   txCall  // that call, if this is the first session it made
	// Transaction has taken its last look at the session, and sends no
	// Multi opened since: Multi refuses one, and late counts them. Both
	// guarded by lockMu.
	finished bool
	late     int

	// On a cluster, the slot of the watched keys, to which every command
	// of the session must keep, and one of those keys; slot is -1 when
	// the session is free of one.
	slot    int
	slotKey string

	// clustered is set on a session of a cluster Client (its Watch or
	// Transaction), which stands for the whole cluster: commands the
	// cluster runs on every master are refused in it. A session on the
	// Client of one node that ForEachMaster hands out stands for that
	// node, and runs them there.
	clustered bool
}

// Watch lends a dedicated connection, sends WATCH keys on it and returns
// the session. With no keys it just binds the connection; on a cluster,
// where the keys' slot chooses the master, keys are required.
func (c *Client) Watch(ctx context.Context, keys ...string) (*Tx, error) {
	if badContext(ctx) {
		return nil, nilContext(ctx, "Watch")
	}
	if c.cluster != nil {
		return c.cluster.watch(ctx, keys)
	}
	var t *Tx
	// WATCH changes no data, so a connection that turns out dead (closed by
	// the server while idle in the pool) is retried like a read.
	err := c.retry(ctx, true, func() error {
		d, err := c.getDedicated(ctx, lendSession)
		if err != nil {
			return err
		}
		t = &Tx{c: c, d: d, slot: -1}
		if c.front != nil && len(keys) > 0 {
			// The cluster's Watch and Transaction made sure the keys
			// share one slot, and that c serves it.
			t.slot, t.slotKey = int(hashslot.Of(keys[0])), keys[0]
		}
		return t.firstWatch(ctx, keys)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// firstWatch sends the WATCH of a session being made, if there are keys.
// If it fails, or a Decoder registered for WATCH panics, the session is
// closed: the caller never gets it, so nothing else would give its
// connection back to the pool.
func (t *Tx) firstWatch(ctx context.Context, keys []string) (err error) {
	if len(keys) == 0 {
		return nil
	}
	watched := false
	defer func() {
		if !watched {
			t.closeWith(ctx)
		}
	}()
	err = t.Watch(ctx, keys...)
	watched = err == nil
	return err
}

// Watch adds keys to the watched set. It is refused while a Multi pipeline
// is open.
func (t *Tx) Watch(ctx context.Context, keys ...string) error {
	w := getBuf()
	w.start(cmdWatch, 1+len(keys))
	w.strs(keys)
	w.end()
	return okReply(t.run(ctx, w))
}

// Unwatch forgets every watched key. It is refused while a Multi pipeline
// is open: Discard that instead.
func (t *Tx) Unwatch(ctx context.Context) error {
	w := getBuf()
	w.start(cmdUnwatch, 1)
	w.end()
	return okReply(t.run(ctx, w))
}

// Watching reports whether a WATCH may be armed on the session: from a
// WATCH the server accepted until EXEC, UNWATCH, Reset or Close.
func (t *Tx) Watching() bool { return t.watching.Load() }

// acquire waits for the session's other calls to end, no longer than ctx
// lasts; release ends the call.
func (t *Tx) acquire(ctx context.Context) error {
	for {
		wake := t.tryAcquire(false)
		if wake == nil {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return notSent(conn.ContextErr(ctx))
		}
	}
}

// acquireImmediate is acquire for a call that cannot end an open Multi
// pipeline: a command that runs at once on the session (see run), or the
// Exec of a plain Pipeline of it. Made while
// a Multi pipeline is open and another such call holds the session (a
// BLPOP with no timeout, say), it is refused at once, as it would be once
// its turn came: nothing that call does ends the Multi, and the wait for
// it could outlast the context, which would hide the misuse behind a
// timeout, the Multi left open. Behind a call that may end the Multi (its
// Exec, Close, Reset) it waits. refusable, asked only when the call has
// to wait, names the call for its refusal, and tells that nothing else
// refuses it before the open Multi does (an encoding error, say), which
// is left for its turn to report, as it comes first there.
func (t *Tx) acquireImmediate(ctx context.Context, refusable func() (what string, ok bool)) error {
	for {
		wake := t.tryAcquire(true)
		if wake == nil {
			return nil
		}
		if what, ok := refusable(); ok {
			if err := t.refusedBehindImmediate(what); err != nil {
				return err
			}
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return notSent(conn.ContextErr(ctx))
		}
	}
}

// refusedBehindImmediate is the refusal of what, a call waiting for the
// session, if a call that cannot end an open Multi pipeline holds it
// while one is open (see acquireImmediate). A closed session is left for
// the call's turn to report, as it comes first there.
func (t *Tx) refusedBehindImmediate(what string) error {
	t.lockMu.Lock()
	defer t.lockMu.Unlock()
	if !t.busy || !t.immediateHeld || t.closed || t.multi.Load() == nil {
		return nil
	}
	return t.refuseLocked(what)
}

// tryAcquire takes the session if no call runs on it, and returns nil;
// else it returns a channel closed when that call ends. The channel is
// made only when a call has to wait, which most sessions never do.
// immediate says that the call is a command that runs at once (see run).
//
// A call's Decoders run once the call has given the session up (see
// txHold), so that they may use it without waiting for their own call:
// a call that waits here waits for a holder that does not wait for it.
func (t *Tx) tryAcquire(immediate bool) <-chan struct{} {
	t.lockMu.Lock()
	defer t.lockMu.Unlock()
	if !t.busy {
		t.busy = true
		t.immediateHeld = immediate
		return nil
	}
	if t.freed == nil {
		t.freed = make(chan struct{})
	}
	return t.freed
}

func (t *Tx) release() {
	t.lockMu.Lock()
	t.busy = false
	t.immediateHeld = false
	if t.freed != nil {
		close(t.freed) // every waiter looks again; one takes the session
		t.freed = nil
	}
	t.lockMu.Unlock()
}

// errTxEnding fails the blocking call of a session that Close or Reset
// ends from another goroutine.
var errTxEnding = fmt.Errorf("the Tx was closed or reset while this blocking call ran: %w", ErrClosed)

// acquireEnding is acquire for Close and Reset, which have no context to
// bound their wait: a blocking command of another goroutine with no
// timeout (BLPOP k 0) would keep them waiting for ever. Its connection is
// failed instead, which ends the block, as closing the connection under it
// did before calls took turns. A call that does not block is waited for.
func (t *Tx) acquireEnding() {
	for {
		wake := t.tryAcquire(false)
		if wake == nil {
			return
		}
		if d := t.blocked.Load(); d != nil {
			d.Fail(errTxEnding)
		}
		// A blocking call may start after the look: it is looked for
		// again until the session is free.
		tm := time.NewTimer(20 * time.Millisecond)
		select {
		case <-wake:
		case <-tm.C:
		}
		tm.Stop()
	}
}

// Multi starts the transaction: the returned Pipeline buffers commands, and
// its Exec sends MULTI, the commands and EXEC on this connection in one
// write. Discard empties it and leaves it open; after its Exec it is
// finished, since EXEC ends the watch, and Multi starts the next one.
// Calling Multi again while one is open is refused: the second pipeline's
// Exec reports it, and the open one is refused too until it is Discarded.
//
// Multi sends nothing and does not wait for a call that another goroutine
// runs on the Tx (a BLPOP with no timeout, say): the transaction is open
// when it returns, so that what the Tx is asked to run after it is
// refused, and its Exec waits for that call within Exec's context.
func (t *Tx) Multi() *Pipeline {
	p := newPipeline(t.c, t, true)
	p.reset()
	t.lockMu.Lock()
	closed := t.closed
	switch {
	case closed:
	case t.finished:
		// Opened by a goroutine fn left running, or by a Decoder of the
		// EXEC that Transaction sent: left off the Tx, which nothing
		// would send, and refused as a closed Tx's is.
		p.broken = errLateMulti
		t.late++
	case t.multi.Load() != nil:
		p.broken = t.refuseLocked("MULTI") // and p.multi stays false: its Exec must not close the open one
	default:
		p.multi = true
		t.multi.Store(p)
	}
	t.lockMu.Unlock()
	if closed {
		// Refused as every call after Close is, and left off the Tx:
		// kept as its open Multi, it would have the next Multi refused
		// as a second one instead.
		p.broken = t.usable()
	}
	return p
}

// errLateMulti refuses a Multi opened on the Tx of a Transaction once
// Transaction, fn having returned, took its last look at the session.
var errLateMulti = &UsageError{Msg: "Multi on the Tx of a Transaction after fn returned, which Transaction does not send: " +
	"open the Multi in fn, before it returns, or run another Transaction", Err: ErrClosed}

// Pipeline returns a plain (non-transactional) batch on this connection,
// for reading many watched values in one round trip before Multi.
func (t *Tx) Pipeline(opts ...PipelineOption) *Pipeline {
	p := newPipeline(t.c, t, false)
	p.applyOptions(opts)
	p.transaction = false
	return p
}

// Do runs any command on the session's connection immediately. As with
// Client.Do, the server's error reply is returned as the Value, with a
// nil error.
func (t *Tx) Do(ctx context.Context, args ...any) (Value, error) {
	w := getBuf()
	w.do(args)
	return t.run(ctx, w)
}

// usable tells why the session cannot send, if it cannot.
func (t *Tx) usable() error {
	switch {
	case t.closed && t.call != nil:
		return t.call.staleUse()
	case t.closed:
		return &UsageError{Msg: "Tx used after Close", Err: ErrClosed}
	case t.broken != nil:
		var bc *blockCutError
		if errors.As(t.broken, &bc) {
			// Not the caller's context error: that call ended, this one
			// was refused.
			return &UsageError{Msg: "Tx used after " + bc.Error()}
		}
		return notAppliedTx(fmt.Errorf("the connection was lost while watching: %w", t.broken))
	}
	return nil
}

// immediate tells why the session cannot run what, a command outside the
// open Multi pipeline, if it cannot.
func (t *Tx) immediate(what string) error {
	if err := t.usable(); err != nil {
		return err
	}
	if t.multi.Load() != nil {
		t.lockMu.Lock()
		defer t.lockMu.Unlock()
		return t.refuseLocked(what)
	}
	return nil
}

// refuseLocked turns down what, run on the Tx while a Multi pipeline is
// open, and refuses that open transaction as well: it was meant to include
// what, and applying it without would be applying half of it. The caller
// holds lockMu.
func (t *Tx) refuseLocked(what string) error {
	err := &UsageError{Msg: what + " on a Tx while its Multi pipeline is open: queue commands on the Pipeline that Multi returned; " +
		"that transaction is now refused unless Discarded"}
	if m := t.multi.Load(); m.broken == nil {
		m.broken = err
	}
	return err
}

// mayWrite reports whether a command may change data or have an effect
// outside the session: any that is not read-only (EVAL, FCALL, PUBLISH and
// commands the table does not know carry no write flag, yet may), except
// the few that only look or manage the session itself.
func mayWrite(ci *commandInfo) bool {
	return !ci.has(flagReadonly) && !sessionSafe[ci.Name]
}

// sessionSafe are commands that are not flagged read-only but change no
// data and reach nothing outside the session.
var sessionSafe = map[string]bool{
	"WATCH": true, "UNWATCH": true, "PING": true, "ECHO": true, "TIME": true,
	"INFO": true, "CONFIG GET": true, "CLIENT ID": true, "CLIENT INFO": true, "CLIENT GETNAME": true,
	"COMMAND": true, "COMMAND COUNT": true, "COMMAND INFO": true, "COMMAND DOCS": true, "COMMAND LIST": true, "COMMAND GETKEYS": true,
	"ROLE": true, "LASTSAVE": true, "SCRIPT EXISTS": true, "SLOWLOG GET": true, "SLOWLOG LEN": true,
}

// keepsToSlot refuses commands, encoded in buf from start, that a cluster
// session cannot run: one with a key outside its slot, which the node
// would redirect elsewhere, outside the watch and the transaction (a
// transaction on a cluster touches one slot), and, in a session of the
// cluster Client, one the cluster runs on every master (see
// refuseFanOut). in names them for the error.
func (t *Tx) keepsToSlot(in string, buf []byte, start int, cmds []cmdMeta) error {
	if t.c.front == nil {
		return nil
	}
	for i := 0; t.clustered && i < len(cmds); i++ {
		if err := refuseFanOut(cmds[i].info(), "session"); err != nil {
			return err
		}
	}
	if t.slot < 0 {
		return nil
	}
	offs := cmdBounds(buf, start, len(cmds))
	var keys [][]byte
	for i, m := range cmds {
		keys, _ = appendKeyWords(keys[:0], m.info(), buf[offs[i]:offs[i+1]])
		for _, k := range keys {
			if s := int(hashslot.Of(k)); s != t.slot {
				// The first key is the session's, not one of the
				// command's: the error says so, and suggests no
				// NoTransaction pipeline, bound to that slot too.
				return &CrossSlotError{In: in + " and those the session watches", Keys: []string{t.slotKey, string(k)}, Slots: []int{t.slot, s}}
			}
		}
	}
	return nil
}

// connect lends the session a connection if Reset let its last one go.
func (t *Tx) connect(ctx context.Context) error {
	if t.d != nil {
		return nil
	}
	d, err := t.c.getDedicated(ctx, lendSession)
	if err != nil {
		return err
	}
	t.d = d
	return nil
}

func (t *Tx) run(ctx context.Context, w *cmdBuf) (Value, error) {
	refusable := func() (string, bool) {
		if w.err != nil {
			return "", false
		}
		return w.cmds[0].info().Name, true
	}
	if badContext(ctx) {
		name, ok := refusable()
		putBuf(w)
		if !ok {
			name = "a command" // an encoding error is left to a call with a context
		}
		t.nilContextUse(name, ok)
		return Value{}, nilContext(ctx, name+" on a Tx")
	}
	if err := t.acquireImmediate(ctx, refusable); err != nil {
		putBuf(w)
		return Value{}, err
	}
	h := txHold{t: t, held: true}
	defer h.release()
	return t.runHeld(ctx, w, &h)
}

// nilContextUse is what a call on the Tx refused for its nil context, what,
// does to the Tx as any call would. Made while a Multi pipeline is open,
// it refuses that transaction (see refuseLocked) if refusesMulti, as
// every call the Tx is asked to run outside it does: it would otherwise
// be applied without what was meant to go with it. Made on the Tx of an
// ended attempt of a Transaction, it fails that Transaction, as every use
// of such a Tx does (see txCall.staleUse).
func (t *Tx) nilContextUse(what string, refusesMulti bool) {
	t.lockMu.Lock()
	closed := t.closed
	if !closed && refusesMulti && t.multi.Load() != nil {
		t.refuseLocked(what)
	}
	t.lockMu.Unlock()
	if closed && t.call != nil {
		t.call.staleUse()
	}
}

// txHold is a call's hold on its session, which the call gives up before
// its Decoders run: a Decoder runs on the call's goroutine, so a call it
// makes on the same Tx (Close, a read, a Multi and its Exec) would wait
// for ever for the turn of the very call that waits for the Decoder. The
// call has done all it does with the session by then; what it keeps for
// a Transaction afterwards (readErr, execErr) is written under lockMu.
type txHold struct {
	t    *Tx
	held bool
}

// release gives the session up, once; a nil hold, of a call that goes on
// with the session after the reply (Close and Reset, which send UNWATCH),
// does nothing.
func (h *txHold) release() {
	if h != nil && h.held {
		h.held = false
		h.t.release()
	}
}

// runHeld is run by a call that holds the session, by h; h is released
// before the reply is decoded, unless it is nil: the caller (Close or
// Reset) goes on with the session, and gets the reply undecoded, to
// decode once it has given the session up (see decodeUnwatch).
func (t *Tx) runHeld(ctx context.Context, w *cmdBuf, h *txHold) (Value, error) {
	defer putBuf(w)
	if t.closed {
		// Before the encoding's error: the use of a session of an ended
		// attempt must reach its Transaction whatever the arguments.
		return Value{}, t.usable()
	}
	if w.err != nil {
		return Value{}, w.err
	}
	ci := w.cmds[0].info()
	if err := t.immediate(ci.Name); err != nil {
		return Value{}, err
	}
	watch := ci.Name == "WATCH"
	switch {
	case ci.has(flagConnState) && !watch && ci.Name != "UNWATCH":
		return Value{}, &UsageError{Msg: ci.Name + " cannot run on a Tx; use its Multi, Exec and Close methods"}
	case t.retried && mayWrite(ci):
		return Value{}, &UsageError{Msg: ci.Name + " on the Tx of a Transaction may write: it would run at once, outside the transaction, " +
			"and again on every retry; queue it on the Pipeline that Multi returns"}
	}
	if err := t.keepsToSlot("command "+ci.Name, w.buf, 0, w.cmds); err != nil {
		return Value{}, err
	}
	if err := t.connect(ctx); err != nil {
		return Value{}, err
	}
	armed := t.watching.Load()
	if watch {
		t.watching.Store(true) // before sending: a call abandoned on its context may still arm it
	}
	if w.blocking {
		t.blocked.Store(t.d)
	}
	v, err := t.d.WithGrace(w.grace).DoOne(ctx, w.buf)
	if w.blocking {
		t.blocked.Store(nil)
	}
	if err != nil {
		t.lost(err)
		if OutcomeOf(err) == OutcomeNotSent {
			t.watching.Store(armed)
		} else if w.blocking {
			t.cutBlocked(ctx, err)
		}
		if t.retried {
			// The Tx of a Transaction runs no command that may write (see
			// mayWrite): its failure, a read abandoned on its context
			// after it was sent included, says nothing was applied if fn
			// returns it.
			err = t.noteRead(err)
		}
		return Value{}, err
	}
	r := Value{v}
	switch {
	case r.Err() != nil:
		t.watching.Store(armed) // refused: a WATCH the server turned down arms nothing
	case ci.Name == "UNWATCH":
		t.watching.Store(false)
	}
	if h == nil {
		return r, nil
	}
	h.release()
	r, err = t.c.decode(w, r, nil)
	if t.retried {
		// A reply its Decoder refused, or the server's error reply, is of
		// a read too: as above. The reply keeps its error, so that its Err
		// gives fn the very error fnError looks for.
		switch {
		case err != nil:
			err = t.noteRead(err)
		case r.isErr():
			e := r.Err()
			setExtra(&r, madeErr{e})
			t.lockMu.Lock()
			t.readErr = e
			t.lockMu.Unlock()
		}
	}
	return r, err
}

// decodeUnwatch runs the Decoder of UNWATCH on unwatched, the reply of
// the UNWATCH that Close or Reset sent (nil if they sent none), once they
// have closed or reset the session and given it up, as every call gives
// it up before its Decoders run: a call on the Tx meanwhile, from the
// Decoder or from another goroutine, finds the session closed, or reset,
// rather than refused or waiting for ever. What the Decoder returns is
// kept nowhere, as Close and Reset return no reply; its panic goes on up.
func (t *Tx) decodeUnwatch(unwatched *Value) {
	if unwatched != nil && !unwatched.isErr() {
		decodeReply(unwatched, "UNWATCH", t.c.decoder("UNWATCH"))
	}
}

// do runs a batch on the session's connection; grace is how long its
// blocking commands may keep the server quiet. The batch of a transaction
// (exec) gives the session's turn away once it is written: the next
// transaction on the same keys may read while this one's EXEC runs. A
// check that finds the replies wrong fails the connection (see
// Conn.Fail).
func (t *Tx) do(ctx context.Context, buf []byte, replies []resp.Value, exec, blocking bool, grace conn.Grace, check execCheck) error {
	if err := t.connect(ctx); err != nil {
		return err
	}
	if blocking {
		t.blocked.Store(t.d)
	}
	k := t.d.WithGrace(grace)
	if blocking && check.keep {
		// A plain batch that may block, whose connection cutBlocked
		// closes when ctx ends: Sole fails it at once instead, so that
		// the commands never written are known, and say they were not
		// sent, as those of a Client's batch on a connection of its own.
		k = k.Sole()
	}
	p, err := k.Start(ctx, buf, replies)
	if exec {
		t.releaseTurn()
	}
	got, sent := 0, 0
	if err == nil {
		if got, sent, err = p.WaitCut(ctx); err != nil && blocking && OutcomeOf(err) != OutcomeNotSent {
			t.cutBlocked(ctx, err)
		}
	}
	if blocking {
		t.blocked.Store(nil)
	}
	if err == nil {
		if e := check.of(replies); e != nil {
			err = t.d.Fail(e)
		}
	}
	if err != nil {
		t.lost(err)
		if check.keep && (got > 0 || sent > 0) {
			// A plain batch keeps the replies read before its connection
			// failed, or how much of it was written, as on the Client
			// (see sendChecked).
			err = &cutError{replies: replies[:got:got], sent: sent, err: err}
		}
	}
	return err
}

// cutBlocked closes the session's connection after a call with a blocking
// command (BLPOP, XREAD BLOCK) ended on ctx while the server may still be
// blocked in it. Kept, the connection would hold up every later command of
// the session behind the block, and the block's late reply, carrying what
// it took (the element BLPOP popped), would be dropped. The watch ends
// with the connection, so the session can only be closed or reset, as
// after a failed connection.
func (t *Tx) cutBlocked(ctx context.Context, err error) {
	if ctx.Err() == nil || t.d == nil {
		return // the connection failed, and is gone already
	}
	t.c.putDedicated(t.d, false) // closes it
	t.d = nil
	t.watching.Store(false)
	if t.broken == nil {
		t.broken = &blockCutError{err: err}
	}
}

// blockCutError is why a session lost its connection in cutBlocked.
type blockCutError struct{ err error }

func (e *blockCutError) Error() string {
	return "a blocking command ended on its context, and its connection was closed to cancel the block (" + e.err.Error() +
		"); Reset the session to use it again"
}

// lost records a connection failure, after which the session can only be
// closed or reset: whatever was watched is gone with the connection. A
// call abandoned on its context is not one: the connection drops its late
// reply and stays in step, and Close sends UNWATCH after it.
func (t *Tx) lost(err error) {
	var ce *conn.Error
	if t.broken == nil && errors.As(err, &ce) && ce.Op != "send" {
		t.broken = err
	}
}

// Close ends the session: UNWATCH if a watch may be armed, then the
// connection goes back to the pool, or is closed if anything is left on it
// (a reply still due, a failed connection). An open Multi pipeline is
// dropped unsent. Calling Close again does nothing; any other call after
// Close fails with an error matching ErrClosed. A Decoder registered for
// UNWATCH runs once the session is closed: if it panics, the panic goes
// on up. A blocking command (BLPOP, XREAD BLOCK)
// that another goroutine runs on the session is ended by closing its
// connection, its call failing with an error matching ErrClosed, rather
// than waited for: with no timeout it would never end; Reset does the same.
func (t *Tx) Close() error {
	t.acquireEnding()
	h := txHold{t: t, held: true}
	defer h.release()
	if t.retried && !t.closed {
		return errTransactionEnds("Close")
	}
	unwatched := t.closeHeld(context.Background())
	h.release()
	t.decodeUnwatch(unwatched)
	return nil
}

// errTransactionEnds refuses what, Close or Reset, on the Tx that
// Transaction hands to fn: it would drop the Multi pipeline fn queued, and
// Transaction would report a transaction that never ran as done. The
// session goes on; Transaction ends it.
func errTransactionEnds(what string) error {
	return &UsageError{Msg: what + " on the Tx of a Transaction: Transaction ends the session itself; " +
		"return an error from fn to give up"}
}

// closeWith is Close bounded by ctx: a caller whose context has ended does
// not wait for UNWATCH; its connection is closed instead, which ends the
// WATCH as surely.
func (t *Tx) closeWith(ctx context.Context) {
	// Not bounded by ctx: the session must be closed, after the call
	// under way, which its own context bounds, or whose block is ended.
	t.acquireEnding()
	h := txHold{t: t, held: true}
	defer h.release()
	unwatched := t.closeHeld(ctx)
	h.release()
	t.decodeUnwatch(unwatched)
}

// closeHeld is closeWith for a call that holds the session, up to the
// Decoder of the UNWATCH it sent, whose reply it returns (see
// decodeUnwatch).
func (t *Tx) closeHeld(ctx context.Context) (unwatched *Value) {
	if t.closed {
		return nil
	}
	if t.call != nil {
		t.call.retire(t)
	}
	// Deferred, so that a panic in settle closes the session too: its
	// connection, in a state the panic left unknown, is then closed
	// rather than kept by a session nobody may close again
	// (Transaction's, or one closed by a defer).
	clean := false
	defer func() {
		t.lockMu.Lock()
		t.closed = true
		t.lockMu.Unlock()
		t.watching.Store(false) // unwatched, or its connection closed
		if t.d != nil {
			t.c.putDedicated(t.d, clean)
			t.d = nil
		}
	}()
	clean, unwatched = t.settle(ctx)
	return unwatched
}

// Reset leaves the session as Client.Watch with no keys makes it (on a
// cluster, still bound to its slot's master and keeping to that slot), ready for
// another Watch, as redis-py's reset() does: an open Multi pipeline is
// dropped unsent, UNWATCH is sent if a watch may be armed, and a connection
// that failed or still has a reply due is let go (the next call lends
// another). Close still ends the session. Reset after Close fails with an
// error matching ErrClosed. A Decoder registered for UNWATCH runs once
// the session is reset, and may use it: if it panics, the panic goes on
// up, the session reset all the same.
func (t *Tx) Reset() error {
	t.acquireEnding()
	h := txHold{t: t, held: true}
	defer h.release()
	if t.closed {
		return t.usable()
	}
	if t.retried {
		return errTransactionEnds("Reset")
	}
	clean, unwatched := t.settle(context.Background())
	if !clean && t.d != nil {
		t.c.putDedicated(t.d, false)
		t.d = nil
	}
	t.watching.Store(false) // unwatched, or its connection let go
	t.broken = nil
	h.release()
	t.decodeUnwatch(unwatched)
	return nil
}

// settle ends what the session has under way: it drops an open Multi,
// gives back a turn, and sends UNWATCH, bounded by ctx, if a watch may be
// armed. It reports whether the connection is clean: usable, nothing in
// flight, no watch armed; and returns the reply of the UNWATCH it sent,
// undecoded (see decodeUnwatch).
func (t *Tx) settle(ctx context.Context) (clean bool, unwatched *Value) {
	if p := t.multi.Load(); p != nil {
		// Finished, not emptied: Close and Reset may run on another
		// goroutine than the one that queues on the pipeline, whose
		// buffers only that one touches. Its Exec is refused, and
		// empties it.
		p.endMulti()
	}
	t.spent = nil
	t.releaseTurn()
	if t.d == nil {
		return false, nil
	}
	clean = t.broken == nil && t.d.Idle()
	if clean && t.watching.Load() {
		if ctx.Err() != nil {
			clean = false
		} else {
			uctx, cancel := context.WithTimeout(ctx, t.c.opt.DialTimeout)
			w := getBuf()
			w.start(cmdUnwatch, 1)
			w.end()
			r, err := t.runHeld(uctx, w, nil)
			cancel()
			if clean = okReply(r, err) == nil; err == nil {
				unwatched = &r
			}
		}
	}
	return clean && !t.watching.Load(), unwatched
}

// TxOptions bound the retries of Client.Transaction. The zero value means
// the documented defaults. A negative field, or a MaxBackoff below a
// MinBackoff given, is refused with an *OptionError: by NewClient (or
// NewClusterClient) in Options.Tx, by Transaction under WithTxOptions.
type TxOptions struct {
	// MaxAttempts is how many times fn runs at most (default 16). The
	// context's deadline may stop it sooner.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the pause before a retry (defaults
	// 100µs and 100ms). The pause starts at the failed attempt's own
	// duration, or MinBackoff if that is longer, doubles with each further
	// attempt up to 16 times that, and is jittered, so that contending
	// clients spread out instead of colliding again, on a fast local link
	// and a slow remote one alike.
	MinBackoff, MaxBackoff time.Duration
	// WatchDelay, when set, replaces the backoff with this fixed pause, as
	// redis-py's watch_delay does.
	WatchDelay time.Duration
	// OnRetry, when set, is called before each retry with the number of
	// the attempt that failed (from 1) and its error.
	OnRetry func(attempt int, err error)
}

// validate names the first field of o that is wrong, prefixed with in
// ("Tx." in Options). Negative values are refused rather than read as the
// defaults: -1 means "none" for Options.MaxRetries, and a MaxAttempts of
// -1 taken for 16 would run fn again where none was asked for.
func (o TxOptions) validate(in string) error {
	bad := func(field, format string, args ...any) error {
		return &OptionError{Field: in + field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case o.MaxAttempts < 0:
		return bad("MaxAttempts", "must be 1 or more (0 means the default, 16; 1 runs fn once), not %d", o.MaxAttempts)
	case o.MinBackoff < 0:
		return bad("MinBackoff", "must not be negative, not %v", o.MinBackoff)
	case o.MaxBackoff < 0:
		return bad("MaxBackoff", "must not be negative, not %v", o.MaxBackoff)
	case o.WatchDelay < 0:
		return bad("WatchDelay", "must not be negative, not %v", o.WatchDelay)
	case o.MaxBackoff > 0 && o.MinBackoff > o.MaxBackoff:
		return bad("MaxBackoff", "must not be less than MinBackoff (%v), not %v", o.MinBackoff, o.MaxBackoff)
	}
	return nil
}

func (o TxOptions) defaults() TxOptions {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 16
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Microsecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	return o
}

// maxBackoffDoublings bounds how far the pause grows with the attempts: a
// contender that waits many times longer than an attempt takes leaves the
// keys idle rather than easing the contention.
const maxBackoffDoublings = 4

// pause is the wait before retry number attempt (from 1), after an
// attempt that took took. A conflict means another client committed
// within about one attempt's time, so the pause is measured in attempts:
// it suits a fast local link and a slow remote one alike.
func (o TxOptions) pause(attempt int, took time.Duration) time.Duration {
	if o.WatchDelay > 0 {
		return o.WatchDelay
	}
	d := max(o.MinBackoff, took) << min(attempt-1, maxBackoffDoublings)
	if d > o.MaxBackoff || d <= 0 {
		d = o.MaxBackoff
	}
	// Half fixed, half random: spreads contenders without collapsing to 0.
	return d/2 + rand.N(d/2+1)
}

// Transaction runs the optimistic-locking loop: WATCH keys, call fn with
// the session, and Exec the pipeline fn opened with Multi. When a watched
// key changed (ErrWatch) it runs fn again, up to the options' attempts,
// pausing between attempts, and never past ctx's deadline. It returns
// EXEC's replies; nil if fn opened no Multi. When a command of the
// transaction failed as it ran (WRONGTYPE), or its Decoder did, the others
// were applied: it returns EXEC's replies with the *CommandError of the
// first, as Exec does, and TransactionValue fn's value.
//
// fn reads through the Tx, then calls tx.Multi() and queues the writes; a
// command on the Tx itself that is not read-only (a write, a script run
// with EVAL, EVALSHA or FCALL, PUBLISH, a command the client does not
// know) is refused, since it would run outside the transaction and again
// on every retry. fn may watch more keys, and PING. Close and Reset are refused too:
// Transaction ends the session itself. fn should not call Exec itself,
// but may: an ErrWatch it returns is retried too, unless an Exec of fn's
// may have applied, after which the attempt is of unknown outcome and not
// run again. When fn returns nil after its own Exec failed, the attempt
// ends as that Exec did: a watch conflict is retried, never reported as
// done. A Multi that fn opens after its own Exec is refused unless fn
// watched again in between, since EXEC ended the watch on keys. Any other
// error from fn ends the loop with that error. A panic in fn closes the
// session cleanly and goes on up.
//
// Transaction sends the Multi that fn leaves open when it returns, and
// no later one: a Multi opened on fn's Tx after that, by a goroutine fn
// left running or by a Decoder of the EXEC that Transaction sends, is
// refused (its Exec fails with a *UsageError matching ErrClosed), and
// Transaction, if it has not returned yet, returns EXEC's replies with
// an error of unknown outcome that wraps that *UsageError.
//
// fn is given a new Tx on every attempt, closed when the attempt ends. A
// Tx, or a pipeline of one, that fn keeps and uses in a later attempt is
// refused with an error matching ErrClosed, and so is the attempt, not
// applied and not run again, even if fn drops that error: what fn meant
// went to a session that sends nothing.
//
// Transactions of one Client on the same keys (in any order, but all of
// them: a set that shares only some keys does not wait) take turns: the
// next one starts once the last has written its EXEC, rather than
// spoiling each other's WATCH, and a turn is not waited for longer than
// 50ms (a slow fn, a Transaction nested in fn). Other clients still
// meet WATCH, the retries and the backoff.
//
// fn holds one of the pool's connections (Options.PoolSize) while it
// runs. A Transaction or Watch nested in fn needs another, and so does a
// call that fn makes on the Client with a connection of its own: a
// blocking command (BLPOP), a pipeline too large for the shared
// connection, a Stream. When every connection is held by an fn that waits
// for one, as with a PoolSize of 1, or as many such fns running at once
// as PoolSize, that call waits until its context ends, and forever under
// a context without a deadline; its error then matches ErrPoolExhausted
// and says what holds the pool's connections. (A Transaction nested on
// the same keys first waits for their turn, see above: if its context
// ends there, its error is the context's alone.)
//
// The retries follow Options.Tx, or the TxOptions that WithTxOptions put
// on ctx for this call.
func (c *Client) Transaction(ctx context.Context, fn func(*Tx) error, keys ...string) ([]Value, error) {
	if fn == nil {
		return nil, noTxFunc("Transaction", "func(*Tx) error")
	}
	_, replies, err := transact(ctx, c, func(t *Tx) (struct{}, error) { return struct{}{}, fn(t) }, keys)
	return replies, err
}

// TransactionValue is Transaction for an fn that computes a value, which it
// returns once the transaction is applied (redis-py's value_from_callable).
func TransactionValue[T any](ctx context.Context, c *Client, fn func(*Tx) (T, error), keys ...string) (T, error) {
	if c == nil {
		var zero T
		return zero, notAppliedTx(&UsageError{Msg: "TransactionValue was given a nil *Client: pass the Client to run the transaction on"})
	}
	if fn == nil {
		var zero T
		return zero, noTxFunc("TransactionValue", "func(*Tx) (T, error)")
	}
	v, _, err := transact(ctx, c, fn, keys)
	return v, err
}

// noTxFunc is the refusal of a Transaction given no function: not
// applied, as nothing was sent.
func noTxFunc(call, want string) error {
	return notAppliedTx(&UsageError{Msg: call + " was given a nil function: pass a " + want +
		" that reads what it needs on the Tx and queues the transaction on its Multi"})
}

type txOptionsKey struct{}

// WithTxOptions returns a context under which Transaction and
// TransactionValue retry by o instead of the client's Options.Tx, as
// Idempotent marks the calls made under a context. Given a nil ctx, it
// returns a context that every call refuses, as Idempotent does.
func WithTxOptions(ctx context.Context, o TxOptions) context.Context {
	if ctx == nil {
		return madeFromNil("WithTxOptions")
	}
	return context.WithValue(ctx, txOptionsKey{}, o)
}

// txOptions are the retry options for a Transaction under ctx. Those of
// WithTxOptions are checked here, as nothing checked them before; the
// client's were checked by NewClient.
func (c *Client) txOptions(ctx context.Context) (TxOptions, error) {
	if o, ok := ctx.Value(txOptionsKey{}).(TxOptions); ok {
		if err := o.validate("TxOptions."); err != nil {
			return TxOptions{}, err
		}
		return o.defaults(), nil
	}
	return c.opt.Tx.defaults(), nil
}

func transact[T any](ctx context.Context, c *Client, fn func(*Tx) (T, error), keys []string) (T, []Value, error) {
	if badContext(ctx) {
		var zero T
		return zero, nil, notAppliedTx(nilContext(ctx, "Transaction"))
	}
	if c.cluster != nil {
		return clusterTransact(ctx, c.cluster, fn, keys)
	}
	var call *txCall // made with the first session (see attemptTx)
	defer func() { call.end() }()
	return transactOn(ctx, c, fn, keys, &call)
}

// transactOn runs the attempts of Transaction on the Client of one node.
// A cluster's Transaction, which may move from node to node, runs them
// all under one call.
func transactOn[T any](ctx context.Context, c *Client, fn func(*Tx) (T, error), keys []string, call **txCall) (T, []Value, error) {
	var zero T
	if fn == nil {
		return zero, nil, &UsageError{Msg: "Transaction needs a function"}
	}
	o, err := c.txOptions(ctx)
	if err != nil {
		return zero, nil, err
	}
	var last error
	for attempt := 1; ; attempt++ {
		v, replies, took, err := attemptTx(ctx, c, fn, keys, call)
		if err == nil {
			return v, replies, nil
		}
		if !errors.Is(err, ErrWatch) {
			return v, replies, err // zero and nil unless the transaction was applied
		}
		last = err
		if attempt >= o.MaxAttempts {
			return zero, nil, &TxRetryError{Attempts: attempt, Err: last}
		}
		pause := o.pause(attempt, took)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < pause {
			return zero, nil, &TxRetryError{Attempts: attempt, Err: fmt.Errorf("%w (the context's deadline leaves no time to retry)", last)}
		}
		// Only once a retry is to follow: a count of OnRetry calls is a
		// count of retries.
		if o.OnRetry != nil {
			o.OnRetry(attempt, err)
		}
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-c.life.Done():
			// Closed: the next attempt fails at once, with ErrClosed or,
			// on the client of a node a refresh released, with the error
			// that says so, rather than after a pause as long as
			// WatchDelay may make it.
			timer.Stop()
		case <-ctx.Done():
			timer.Stop()
			return zero, nil, &TxRetryError{Attempts: attempt, Err: fmt.Errorf("%w (stopped: %w)", last, conn.ContextErr(ctx))}
		}
	}
}

// attemptTx is one round of the loop; the deferred Close also runs when fn
// panics, so the connection never goes back with a WATCH armed.
func attemptTx[T any](ctx context.Context, c *Client, fn func(*Tx) (T, error), keys []string, call **txCall) (v T, replies []Value, took time.Duration, err error) {
	turn, err := c.turns.take(ctx, keys, c.turnWait, c.life.Done(), c.closedErr)
	if err != nil {
		return v, nil, 0, notAppliedTx(err)
	}
	// The attempt's time, which the pause after a conflict is measured
	// in, runs from WATCH to EXEC: a wait for the turn is not part of it.
	start := time.Now()
	defer func() { took = time.Since(start) }()
	// Until the session holds the turn, this call gives it back, also
	// when Watch panics (a Decoder registered for WATCH).
	held := false
	defer func() {
		if !held && turn != nil {
			c.turns.give(turn)
		}
	}()
	t, err := c.Watch(ctx, keys...)
	if err != nil {
		return v, nil, 0, notAppliedTx(err)
	}
	if *call == nil {
		// Kept in the first session, which the later ones point to.
		*call = &t.first
	}
	t.turn, t.retried, t.call, held = turn, true, *call, true
	defer t.closeWith(ctx)
	v, err = fn(t)
	if misuse := t.call.failure(); misuse != nil {
		// Before fn's own error, which may be the refusal it was given,
		// or nothing at all if it dropped it.
		var zero T
		return zero, nil, 0, fnError(t, misuse)
	}
	if err != nil {
		var zero T
		return zero, nil, 0, fnError(t, err)
	}
	// What fn left is read, and its Multi sent, under the session's lock:
	// a call that fn left running on another goroutine, its own Exec of
	// the Multi say, ends first, and is seen, or comes after and finds
	// the Multi finished, rather than applying it between the look at
	// the Multi and its Exec, which would then say not applied.
	if err := t.acquire(ctx); err != nil {
		var zero T
		return zero, nil, 0, fnError(t, err)
	}
	// Released before the deferred closeWith, which takes it again, or
	// by the Exec below before its Decoders run.
	h := txHold{t: t, held: true}
	defer h.release()
	t.lockMu.Lock()
	execErr, execOut := t.execErr, t.execOut
	t.finished = true
	t.lockMu.Unlock()
	multi := t.multi.Load()
	if n := t.unsent(); n > 0 {
		// fn ran its own Exec and then queued more, which nothing will
		// send. If that Exec may have applied, no retry is safe; if it
		// certainly did not (a watch conflict fn went past), nothing of
		// the attempt was, which the caller is told.
		var zero T
		ue := &UsageError{Msg: fmt.Sprintf("not sent: %s queued on a Multi pipeline after its Exec; call Multi again for another transaction",
			plural(n, "command", "commands"))}
		if !t.execRan {
			return zero, nil, 0, notAppliedTx(ue)
		}
		return zero, nil, 0, &uncertainError{msg: "redpipe: fn ran Exec on its Multi pipeline itself", err: ue}
	}
	if multi == nil {
		switch {
		case execErr == nil:
			return v, nil, 0, nil
		case execOut != nil:
			// fn's own Exec was applied, and a command of it failed as it
			// ran: as when Transaction runs Exec.
			return v, execOut, 0, execErr
		}
		// The last Exec fn ran itself failed, and fn went on to return
		// nil: that transaction did not apply (or may not have), which
		// the caller is told, and a watch conflict is retried, rather
		// than a success reported for work that never ran.
		var zero T
		return zero, nil, 0, fnError(t, execErr)
	}
	if len(keys) > 0 && len(t.spent) > 0 && !t.watching.Load() {
		// fn ran Exec itself, whose EXEC ended the watch on keys, and
		// opened another Multi without watching again: sent, it would
		// apply whatever the keys became since fn read them. After a
		// watch conflict that is the attempt's conflict, retried; else
		// a misuse.
		var zero T
		if execErr != nil {
			return zero, nil, 0, fnError(t, execErr)
		}
		return zero, nil, 0, fnError(t, &UsageError{Msg: "fn ran Exec on a Multi pipeline itself, which ended the watch on the Transaction's keys, " +
			"then opened another Multi without watching again: call tx.Watch before it, or queue everything on one Multi"})
	}
	ran := t.execRan
	replies, err = multi.exec(ctx, &h)
	if err != nil {
		var zero T
		if ran {
			return zero, nil, 0, fnError(t, err)
		}
		if replies != nil {
			// EXEC ran the transaction; a command of it failed as it ran
			// (WRONGTYPE), or its Decoder did. The others were applied:
			// their replies, and fn's value, go back with the error, as
			// Exec gives them.
			return v, replies, 0, err
		}
		return zero, nil, 0, err
	}
	t.lockMu.Lock()
	late := t.late
	t.lockMu.Unlock()
	if late > 0 {
		// A Decoder of EXEC opened it, or a goroutine fn left running
		// did meanwhile: its Exec is refused, but a Multi left for
		// Transaction to send is told of here. The transaction ran.
		return v, replies, 0, &uncertainError{msg: "redpipe: the transaction ran, but", err: errLateMulti}
	}
	return v, replies, 0, nil
}

// fnError classifies a failure of an attempt after fn returned err, or
// after the Exec that followed fn failed with err. If an Exec fn ran itself
// may have applied, the attempt may have changed data, whatever came after
// it (a watch conflict on a second Multi): the failure is of unknown
// outcome, neither retried nor reported as not applied. The cause is then
// kept as text alone, since its own type could still say not applied (a
// watch conflict) or redirect a cluster's attempt elsewhere (MOVED), which
// would run fn again. Otherwise nothing of the transaction was applied,
// which a failure the client reports as not sent or not applied (a read
// refused, a connection that could not be had), the session's own lost
// connection, or the error of a command or a Pipeline of the session,
// which only read, is marked as; fn's own errors are returned as they are.
// The session's read error matches only as the very value the session
// gave fn (see noteRead), never as another error that wraps the same
// sentinel.
func fnError(t *Tx, err error) error {
	if t.execRan {
		return &uncertainError{msg: "redpipe: fn ran Exec on a Multi pipeline itself, which may have applied, then the attempt failed",
			err: errors.New(err.Error())}
	}
	if errors.Is(err, ErrNotApplied) {
		return err // a watch conflict, an EXECABORT: it says so already
	}
	t.lockMu.Lock()
	readErr := t.readErr
	t.lockMu.Unlock()
	if o := OutcomeOf(err); o == OutcomeNotSent || o == OutcomeNotApplied || t.broken != nil && errors.Is(err, t.broken) ||
		readErr != nil && errors.Is(err, readErr) {
		return notAppliedTx(err)
	}
	return err
}

// noteRead keeps err, the failure of a read of a Transaction's Tx, as the
// one fnError marks not applied if fn returns it, and returns the error
// to give fn in its place. That is a value of its own, so that only this
// very error matches: err may be a sentinel that other failures share
// (the context's bare error, a Decoder's), and fn may return one of
// those from a call outside the Tx, a write of unknown outcome say,
// which must not be reported not applied.
func (t *Tx) noteRead(err error) error {
	own := &readError{err: err}
	t.lockMu.Lock()
	t.readErr = own
	t.lockMu.Unlock()
	return own
}

// readError is the failure of a read of a Transaction's Tx, as fn gets it:
// the same text and cause, in a value no other failure shares.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// unsent counts the commands queued on Multi pipelines after their Exec.
func (t *Tx) unsent() int {
	n := 0
	for _, p := range t.spent {
		n += p.Len()
	}
	return n
}

// txCall is what the sessions made by one call of Transaction share. fn
// is given a new Tx on every attempt, and the one of an ended attempt is
// closed, with its pipelines. A Tx that fn kept from an earlier attempt
// and uses in a later one is refused, as any closed Tx is, and that use
// also fails the attempt under way: fn may drop the refusal, and the work
// it meant, queued where nothing sends it, would be reported applied.
type txCall struct {
	mu     sync.Mutex  // a kept Tx may be used on any goroutine, even after Transaction returned
	ended  bool        // Transaction returned
	misuse error       // the first use of a closed session of the call while it ran
	stale  []*Pipeline // the Multi pipelines of ended attempts, which nothing sends any more
	// Room for the first of stale: most calls retire one pipeline, the
	// Multi their last attempt executed.
	staleBuf [2]*Pipeline
}

// staleUse refuses a call on a session of c that is closed, and records it
// for the attempt under way.
func (c *txCall) staleUse() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return &UsageError{Msg: "the Tx of a Transaction used after Transaction returned: it is closed when its attempt ends", Err: ErrClosed}
	}
	err := &UsageError{Msg: "the Tx of an earlier attempt of a Transaction used: it was closed when that attempt ended; " +
		"fn gets a new Tx on every attempt and must use that one", Err: ErrClosed}
	if c.misuse == nil {
		c.misuse = err
	}
	return err
}

// retire keeps the Multi pipelines of t, whose attempt ends, emptied: a
// command queued on one later is a misuse of a later attempt.
func (c *txCall) retire(t *Tx) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stale == nil {
		c.stale = c.staleBuf[:0]
	}
	if m := t.multi.Load(); m != nil {
		// Emptied here, not by settle, which Close and Reset of a Tx
		// that is no Transaction's run too, on any goroutine: retire
		// runs on Transaction's own, once fn, which queued on the
		// pipeline, has returned.
		m.reset()
		c.stale = append(c.stale, m)
	}
	for _, p := range t.spent {
		// What fn queued after its own Exec was the ended attempt's
		// (see unsent), not a later one's.
		p.reset()
		c.stale = append(c.stale, p)
	}
}

// failure tells why the attempt under way must fail, once fn returned: fn
// used a session of an ended attempt, or queued commands on the Multi
// pipeline of one.
func (c *txCall) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.misuse != nil {
		return c.misuse
	}
	n := 0
	for _, p := range c.stale {
		n += p.Len()
	}
	if n == 0 {
		return nil
	}
	return &UsageError{Msg: plural(n, "command", "commands") + " queued on the Multi pipeline of an earlier attempt of a Transaction, which nothing sends: " +
		"fn gets a new Tx on every attempt and must queue on the Multi of that one", Err: ErrClosed}
}

// end marks the call returned: a session of it used later is told so.
// A nil c, of a Transaction that made no session, has nothing to mark.
func (c *txCall) end() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.ended = true
	c.stale = nil
	c.mu.Unlock()
}
