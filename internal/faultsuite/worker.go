package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redpipe/redpipe"
)

// worker runs a random mix of calls, each with a token or a key of its own
// so that its reply and its effect can only be its own.
type worker struct {
	s   *suite
	id  int
	rng *rand.Rand
	seq int64
}

// maxOps is a backstop on one worker's calls; the run's duration ends the
// loop long before.
const maxOps = 1 << 30

func (w *worker) loop(stop <-chan struct{}, hardEnd time.Time) {
	for range maxOps {
		select {
		case <-stop:
			return
		default:
		}
		if time.Now().After(hardEnd) {
			return
		}
		if !w.one() {
			// Calls fail fast while the server is down or every
			// connection is being cut; a short pause keeps 32 workers
			// from spinning on the CPU meanwhile.
			time.Sleep(time.Millisecond + time.Duration(w.rng.IntN(int(10*time.Millisecond))))
		}
	}
}

// one runs one call of a random kind and reports whether it succeeded.
func (w *worker) one() bool {
	switch n := w.rng.IntN(100); {
	case n < 15:
		return w.echo()
	case n < 25:
		return w.setGet()
	case n < 35:
		return w.incr()
	case n < 65:
		return w.pipeline()
	case n < 83:
		return w.txPipeline()
	default:
		return w.transfer()
	}
}

// name returns a string no other call of the run uses.
func (w *worker) name(kind string, e int64) string {
	w.seq++
	return kind + ":" + strconv.FormatInt(e, 10) + ":" + strconv.Itoa(w.id) + ":" + strconv.FormatInt(w.seq, 10)
}

// call is the context of one call and when it ends.
type call struct {
	ctx    context.Context
	cancel context.CancelFunc
	timer  *time.Timer // cancels ctx early, for some calls
	end    time.Time
	kills  int64 // the suite's kill count when the call started
}

// newCall gives a call a deadline of 50 to 500ms and, one time in ten, a
// cancellation at a random moment before it.
func (w *worker) newCall() *call {
	d := 50*time.Millisecond + time.Duration(w.rng.Int64N(int64(450*time.Millisecond)))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	c := &call{ctx: ctx, cancel: cancel, end: start.Add(d), kills: w.s.kills.Load()}
	if w.rng.IntN(10) == 0 {
		at := time.Duration(w.rng.Int64N(int64(d)))
		c.timer = time.AfterFunc(at, cancel)
		c.end = start.Add(at)
	}
	return c
}

// done releases the call's context, counts its outcome and checks that it
// returned in time.
func (w *worker) done(c *call, what string, err error) outcome {
	returned := time.Now()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.cancel()
	out := outcomeOf(err)
	w.s.outcomes[out].Add(1)
	if late := returned.Sub(c.end); late > hungAfter {
		w.s.report(&w.s.hung, "hung", "%s returned %v after its context ended (%v)", what, late.Round(time.Millisecond), err)
	}
	var te *redpipe.TypeError
	if errors.As(err, &te) {
		// A typed reply of the wrong type is another command's reply.
		w.s.report(&w.s.misaligned, "misaligned", "%s: %v", what, err)
	}
	return out
}

// serverLost reports whether the server may have been killed since c
// started, taking c's writes with it.
func (w *worker) serverLost(c *call) bool { return w.s.kills.Load() != c.kills }

func isStr(v redpipe.Value, want string) bool {
	switch v.Kind() {
	case redpipe.KindBulkString, redpipe.KindSimpleString, redpipe.KindVerbatim:
		s, err := v.Text()
		return err == nil && s == want
	}
	return false
}

func isInt(v redpipe.Value, want int64) bool {
	n, err := v.Int64()
	return v.Kind() == redpipe.KindInteger && err == nil && n == want
}

func (w *worker) misaligned(format string, args ...any) {
	w.s.report(&w.s.misaligned, "misaligned", format, args...)
}

func (w *worker) echo() bool {
	tok := w.name("echo", w.s.epoch.Load())
	c := w.newCall()
	v, err := w.s.client.Do(c.ctx, "ECHO", tok)
	w.done(c, "ECHO", err)
	if err != nil {
		return false
	}
	if !isStr(v, tok) {
		w.misaligned("ECHO %s got %s", tok, v)
	}
	w.s.checked.Add(1)
	return true
}

// setGet sets a key of its own and reads it back with a second call.
func (w *worker) setGet() bool {
	key := w.name("sg", w.s.epoch.Load())
	tok := key + ":v"
	c := w.newCall()
	v, err := w.s.client.Do(c.ctx, "SET", key, tok)
	setOut := w.done(c, "SET", err)
	if err == nil && !isStr(v, "OK") {
		w.misaligned("SET %s got %s", key, v)
	}
	g := w.newCall()
	v, gerr := w.s.client.Do(g.ctx, "GET", key)
	w.done(g, "GET", gerr)
	if gerr != nil {
		return false
	}
	switch {
	case isStr(v, tok):
		if setOut.certainlyNot() {
			w.s.report(&w.s.duplicated, "duplicated", "SET %s applied though the client said %s", key, outcomeNames[setOut])
		}
	case v.IsNil():
		if setOut == applied && !w.serverLost(c) {
			w.misaligned("SET %s replied OK but GET finds nothing: the OK was another command's", key)
		}
	default:
		w.misaligned("GET %s got %s, want %q or nil", key, v, tok)
	}
	w.s.checked.Add(2)
	return err == nil
}

func (w *worker) incr() bool {
	e := w.s.epoch.Load()
	key := w.name("in", e)
	c := w.newCall()
	v, err := w.s.client.Do(c.ctx, "INCR", key)
	out := w.done(c, "INCR", err)
	reported := err == nil && w.checkIncr(key, v)
	w.s.record(e, func() { w.s.incrs = append(w.s.incrs, incrEntry{key: key, out: out, reported: reported}) })
	return err == nil
}

// checkIncr checks the reply of the one INCR of a fresh key and reports
// whether it counted a duplicate.
func (w *worker) checkIncr(key string, v redpipe.Value) bool {
	switch {
	case isInt(v, 1):
	case isInt(v, 2):
		w.s.report(&w.s.duplicated, "duplicated", "INCR %s replied 2: it ran twice", key)
		return true
	default:
		w.misaligned("INCR %s got %s, want 1", key, v)
	}
	return false
}

// item is one command of a pipeline and what its reply must be.
type item struct {
	kind  byte // 'e' ECHO, 'i' INCR, 's' SET, 'g' GET
	key   string
	token string
}

// bigEvery and echoPadding make the large pipelines: their ECHOs (about
// 45 on average, up to some 90) carry 128 KiB each, some MiB on the wire
// each way.
const bigEvery = 40

var echoPadding = ":" + strings.Repeat("e", 128<<10)

// pipeline runs a plain batch of ECHOs, INCRs and SET+GET pairs.
func (w *worker) pipeline() bool {
	e := w.s.epoch.Load()
	p := w.s.client.Pipeline(redpipe.NoTransaction, redpipe.ErrorsInReplies)
	n := 10 + w.rng.IntN(111)
	// One pipeline in bigEvery carries large ECHOs, more than the sockets
	// on the way hold while a fault stops the traffic: a cut then comes
	// while it is still being written, and its last commands are not sent.
	pad := ""
	if w.rng.IntN(bigEvery) == 0 {
		pad = echoPadding
	}
	items := make([]item, 0, n+n/4)
	for len(items) < n {
		switch r := w.rng.IntN(100); {
		case r < 70:
			tok := w.name("pe", e) + pad
			p.Echo(tok)
			items = append(items, item{kind: 'e', token: tok})
		case r < 85:
			key := w.name("pi", e)
			p.Incr(key)
			items = append(items, item{kind: 'i', key: key})
		default:
			key := w.name("ps", e)
			p.Set(key, key+":v").Get(key)
			items = append(items, item{kind: 's', key: key, token: key + ":v"}, item{kind: 'g', key: key, token: key + ":v"})
		}
	}
	c := w.newCall()
	replies, err := p.Exec(c.ctx)
	out := w.done(c, "pipeline", err)
	// A batch cut partway still has a reply per command (see Exec): the
	// ones read ran and are checked as on success, the others say whether
	// they may have run.
	partial := err != nil && len(replies) == len(items)
	if len(replies) != len(items) && (err == nil || len(replies) != 0) {
		w.misaligned("pipeline of %d commands got %d replies (%v)", len(items), len(replies), err)
		return false
	}
	var incrs []incrEntry
	var sets []setEntry
	checked := 0
	cut, sawNotSent := false, false
	for i, it := range items {
		if err != nil && !partial {
			// No reply at all: the batch's error tells for each.
			if it.kind == 'i' {
				incrs = append(incrs, incrEntry{key: it.key, out: out})
			}
			continue
		}
		v := replies[i]
		if rerr := v.Err(); partial && isCut(rerr) {
			// Sent but unanswered (maybe ran) or never written (must
			// not have run): the final check of the epoch holds the
			// writes to it. The cut is one point in the batch: what was
			// read comes before it, what was not sent after it.
			o := outcomeOf(rerr)
			if o == unknown && sawNotSent {
				w.misaligned("pipeline command %d of %d is of unknown outcome after one not sent (%v)", i+1, len(items), rerr)
			}
			cut = true
			if o == notSent {
				sawNotSent = true
				w.s.notSent.Add(1)
			}
			switch it.kind {
			case 'i':
				incrs = append(incrs, incrEntry{key: it.key, out: o})
			case 's':
				sets = append(sets, setEntry{key: it.key, val: it.token, out: o})
			}
			continue
		}
		if cut {
			w.misaligned("pipeline command %d of %d got %s after the cut", i+1, len(items), v)
		}
		if partial {
			w.s.partial.Add(1)
		}
		switch it.kind {
		case 'e':
			if !isStr(v, it.token) {
				w.misaligned("pipeline ECHO %s got %s", it.token, v)
			}
		case 'i':
			incrs = append(incrs, incrEntry{key: it.key, out: applied, reported: w.checkIncr(it.key, v)})
			continue // counted when its effect is checked
		case 's':
			if !isStr(v, "OK") {
				w.misaligned("pipeline SET %s got %s", it.key, v)
			}
			if partial {
				sets = append(sets, setEntry{key: it.key, val: it.token, out: applied})
			}
		case 'g':
			// The SET just before it on the same connection succeeded,
			// unless the server died in between.
			if !isStr(v, it.token) && !(v.IsNil() && w.serverLost(c)) {
				w.misaligned("pipeline GET %s got %s, want %q", it.key, v, it.token)
			}
		}
		checked++
	}
	if len(incrs) > 0 || len(sets) > 0 {
		w.s.record(e, func() {
			w.s.incrs = append(w.s.incrs, incrs...)
			w.s.sets = append(w.s.sets, sets...)
		})
	}
	w.s.checked.Add(int64(checked))
	return err == nil
}

// isCut tells whether err, the error reply of a command of a plain
// pipeline that failed partway, is that of a command the cut left
// unanswered: it holds the *ConnError of the connection that failed, or,
// where the pipeline's context ended while its replies came, the
// context's error (the connection the pipeline shared lives on). A reply
// of the server's own is neither.
func isCut(err error) bool {
	return errors.As(err, new(*redpipe.ConnError)) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// txPipeline writes three keys of its own in MULTI/EXEC, with a few ECHOs
// among them: afterwards either all three are there or none.
func (w *worker) txPipeline() bool {
	e := w.s.epoch.Load()
	prefix := w.name("tx", e)
	val := prefix + ":v"
	p := w.s.client.Pipeline(redpipe.ErrorsInReplies)
	p.Set(prefix+":a", val)
	echoes := make([]string, w.rng.IntN(4))
	for i := range echoes {
		echoes[i] = w.name("te", e)
		p.Echo(echoes[i])
	}
	p.Set(prefix+":b", val).Incr(prefix + ":n")
	c := w.newCall()
	replies, err := p.Exec(c.ctx)
	out := w.done(c, "transaction", err)
	w.s.record(e, func() { w.s.txs = append(w.s.txs, txEntry{prefix: prefix, val: val, out: out}) })
	if err != nil {
		return false
	}
	n := len(echoes)
	if len(replies) != n+3 {
		w.misaligned("transaction %s of %d commands got %d replies", prefix, n+3, len(replies))
		return true
	}
	if !isStr(replies[0], "OK") || !isStr(replies[n+1], "OK") || !isInt(replies[n+2], 1) {
		w.misaligned("transaction %s got %s, %s, %s; want OK, OK, 1", prefix, replies[0], replies[n+1], replies[n+2])
	}
	for i, tok := range echoes {
		if !isStr(replies[1+i], tok) {
			w.misaligned("transaction ECHO %s got %s", tok, replies[1+i])
		}
	}
	// The three writes are counted when their effect is checked.
	w.s.checked.Add(int64(n))
	return true
}

// transfer moves a random amount between two accounts with the
// optimistic-locking helper, and sets a marker key in the same MULTI so the
// checker can tell whether it was applied.
func (w *worker) transfer() bool {
	e := w.s.epoch.Load()
	a := w.rng.IntN(accounts)
	b := (a + 1 + w.rng.IntN(accounts-1)) % accounts
	ka, kb := accountKey(e, a), accountKey(e, b)
	marker := w.name("xf", e)
	amount := 1 + w.rng.IntN(50)
	c := w.newCall()
	replies, err := w.s.client.Transaction(c.ctx, func(tx *redpipe.Tx) error {
		va, err := w.balance(c.ctx, tx, ka)
		if err != nil {
			return err
		}
		vb, err := w.balance(c.ctx, tx, kb)
		if err != nil {
			return err
		}
		tx.Multi().Set(ka, va-amount).Set(kb, vb+amount).Set(marker, "1")
		return nil
	}, ka, kb)
	out := w.done(c, "Transaction", err)
	w.s.record(e, func() { w.s.xfers = append(w.s.xfers, xferEntry{marker: marker, out: out}) })
	if err != nil {
		return false
	}
	if len(replies) != 3 || !isStr(replies[0], "OK") || !isStr(replies[1], "OK") || !isStr(replies[2], "OK") {
		w.misaligned("transfer %s got %v, want three OKs", marker, replies)
	}
	return true
}

// balance reads an account inside a transfer. A reply that is not a
// balance is another command's.
func (w *worker) balance(ctx context.Context, tx *redpipe.Tx, key string) (int, error) {
	v, err := tx.Do(ctx, "GET", key)
	if err != nil {
		return 0, err
	}
	if v.IsNil() {
		return 0, errMissing
	}
	if v.Kind() == redpipe.KindBulkString {
		s, _ := v.Text()
		if n, err := strconv.Atoi(s); err == nil {
			return n, nil
		}
	}
	w.misaligned("GET %s in a transfer got %s", key, v)
	return 0, fmt.Errorf("GET %s got %s", key, v)
}
