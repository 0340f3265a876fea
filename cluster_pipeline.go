package redpipe

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/redpipe/redpipe/internal/resp"
)

// exec runs a pipeline on a cluster; traits are what Pipeline.check found.
func (r *clusterRouter) exec(ctx context.Context, p *Pipeline, traits batchTraits) ([]Value, error) {
	if err := r.ready(ctx); err != nil {
		if p.transaction {
			return nil, notAppliedTx(err)
		}
		return nil, err
	}
	if p.transaction {
		return r.execTx(ctx, p, traits)
	}
	return r.execPlain(ctx, p, traits)
}

// cmdBounds returns the offsets in buf of n encoded commands starting at
// start, and the end of the last: n+1 offsets.
func cmdBounds(buf []byte, start, n int) []int {
	offs := make([]int, n+1)
	off := start
	for i := 0; i < n; i++ {
		offs[i] = off
		ws, ok := newWords(buf[off:])
		if !ok {
			panic("redpipe: internal: a pipeline's buffer does not hold its commands")
		}
		for {
			if _, ok := ws.next(); !ok {
				break
			}
		}
		off += ws.p
	}
	offs[n] = off
	return offs
}

// appendKeyWords appends the keys of one encoded command to dst; ok is
// false when they cannot be told (the server will redirect it).
func appendKeyWords(dst [][]byte, ci *commandInfo, cmd []byte) ([][]byte, bool) {
	var pos [8]int
	keys, st := commandKeys(pos[:0], ci, cmd)
	if st != keysFound {
		return dst, false
	}
	if len(keys) == 0 {
		return dst, true
	}
	ws, ok := newWords(cmd)
	if !ok {
		return dst, false
	}
	k := 0
	for i := 0; k < len(keys); i++ {
		w, ok := ws.next()
		if !ok {
			break
		}
		if i == keys[k] {
			dst = append(dst, w)
			k++
		}
	}
	return dst, true
}

// execTx runs a transactional pipeline on the owner of its one slot; on
// MOVED, ASK, TRYAGAIN or CLUSTERDOWN for the block, the whole block is
// sent again, with ASKING before MULTI for ASK.
func (r *clusterRouter) execTx(ctx context.Context, p *Pipeline, traits batchTraits) ([]Value, error) {
	n := len(p.w.cmds)
	offs := cmdBounds(p.w.buf, len(multiCmd), n)
	var keys [][]byte
	for i := 0; i < n; i++ {
		keys, _ = appendKeyWords(keys, p.w.cmds[i].info(), p.w.buf[offs[i]:offs[i+1]])
	}
	slot, err := slotOfKeys("transaction", keys)
	if err != nil {
		return nil, err
	}
	node, err := r.route(ctx, slot)
	if err != nil {
		return nil, notAppliedTx(err)
	}
	asking := false
	redirects, tries := 0, 0
	for {
		out, _, err := p.sendOn(ctx, traits, node, asking)
		if err != nil {
			if unreachable(ctx, err) && redirects < r.opt.MaxRedirects {
				redirects++
				if rerr := r.awaitRefresh(ctx); rerr != nil {
					return nil, txSendError(err)
				}
				if node, err = r.route(ctx, slot); err != nil {
					return nil, notAppliedTx(err)
				}
				asking = false
				continue
			}
			return nil, txSendError(err)
		}
		rd, last, isRedirect := txRedirect(out, n, node.opt.Addr)
		if !isRedirect {
			results, err := p.execResult(out, n)
			if err != nil {
				return nil, err
			}
			replies := values(results)
			if len(replies) != n {
				return nil, fmt.Errorf("redpipe: EXEC returned %d replies for %d commands", len(replies), n)
			}
			return replies, p.finish(replies, -1)
		}
		// Nothing of the block was applied.
		if rd.kind == "MOVED" || rd.kind == "ASK" {
			redirects++
			if redirects > r.opt.MaxRedirects {
				return nil, notAppliedTx(r.gaveUp(redirects-1, last))
			}
		} else {
			tries++
			if tries > maxTryAgain {
				return nil, notAppliedTx(r.gaveUp(tries-1, last))
			}
		}
		node, asking, err = r.follow(ctx, rd, slot, tries)
		if err != nil {
			return nil, notAppliedTx(fmt.Errorf("%w (after %w)", err, last))
		}
	}
}

// txRedirect tells whether the replies of MULTI, n queued commands and
// EXEC say the block belongs elsewhere: EXEC itself redirected (the server
// then discarded the block), or an EXECABORT because a queued command was.
func txRedirect(out []resp.Value, n int, from string) (redirect, error, bool) {
	if len(out) != n+2 {
		return redirect{}, nil, false
	}
	exec := out[n+1]
	if rd, ok := redirectOf(exec, from); ok {
		return rd, newError(exec.Str), true
	}
	if !isErrValue(exec) || newError(exec.Str).Prefix != "EXECABORT" {
		return redirect{}, nil, false
	}
	for _, q := range out[1 : n+1] {
		if rd, ok := redirectOf(q, from); ok {
			return rd, newError(q.Str), true
		}
	}
	return redirect{}, nil, false
}

// leg is one command of a plain pipeline on its way to one node; a
// command for every master has a leg for each, and a multi-key command
// split by slot one for each slot (cluster_multikey.go).
type leg struct {
	cmd    int // its index in the pipeline
	slot   int // -1 for none
	node   *Client
	asking bool // send ASKING before it
	fixed  bool // a leg of a command for every master: it stays on its node
	wait   bool // it is sent again only after a pause (TRYAGAIN, CLUSTERDOWN, a node not reached)
	probe  bool // it waited: it goes alone of its slot's until it gets through
	done   bool
	sub    *subCommand // the part of a split command it sends; nil for the whole command
	reply  resp.Value
}

// part is what one node gets in a round.
type part struct {
	node    *Client
	legs    []*leg
	replies []resp.Value
	err     error
}

// execPlain runs a plain pipeline: split by node, every node's part sent
// at once, the replies put back in the caller's order. Commands redirected
// by MOVED or ASK, and those of a node that could not be reached, are sent
// again as a pipeline, in their order, to where they now belong.
func (r *clusterRouter) execPlain(ctx context.Context, p *Pipeline, traits batchTraits) ([]Value, error) {
	n := len(p.w.cmds)
	buf := p.w.buf
	offs := cmdBounds(buf, 0, n)
	legs := make([]leg, 0, n)
	fanned := false
	r.mu.RLock()
	for i := 0; i < n; i++ {
		ci := p.w.cmds[i].info()
		if ci.RequestPolicy == requestAllShards || ci.RequestPolicy == requestAllNodes {
			fanned = true
			for _, m := range r.masters {
				legs = append(legs, leg{cmd: i, slot: -1, node: m, fixed: true})
			}
			continue
		}
		if ci.RequestPolicy == requestMultiShard {
			var ok bool
			before := len(legs)
			if legs, ok = r.appendMultiKeyLegs(legs, i, ci, buf[offs[i]:offs[i+1]]); ok {
				fanned = fanned || len(legs)-before > 1
				continue
			}
		}
		slot, err := commandSlot(ci, buf[offs[i]:offs[i+1]], "command "+ci.Name)
		if err != nil {
			r.mu.RUnlock()
			return nil, &CommandError{Index: i, Command: ci.Name, In: "pipeline", Err: err}
		}
		legs = append(legs, leg{cmd: i, slot: slot, node: r.ownerLocked(slot)})
	}
	r.mu.RUnlock()
	r.pickReplicas(p, legs)

	pending := make([]*leg, 0, len(legs))
	for i := range legs {
		pending = append(pending, &legs[i])
	}
	redirects, tries := 0, 0
	var last, unreached error
	again := false // some pending leg waits for a TRYAGAIN or CLUSTERDOWN backoff
	ran := false   // some part has been sent
	for len(pending) > 0 {
		send := pick(pending)
		if len(send) == 0 {
			// Every pending leg waits, or is held behind one that does:
			// pause, then send them again where the layout now says.
			if redirects > r.opt.MaxRedirects || tries > maxTryAgain {
				return r.ranOut(p, n, legs, ran, redirects+tries-1, last)
			}
			if unreached != nil {
				if err := r.awaitRefresh(ctx); err != nil {
					return r.stopped(p, n, legs, ran, fmt.Errorf("%w (after %w)", err, unreached))
				}
			}
			if again {
				if err := backoff(ctx, tries); err != nil {
					return r.stopped(p, n, legs, ran, fmt.Errorf("%w (after %w)", err, last))
				}
			}
			r.readyAgain(pending)
			unreached, again = nil, false
			continue
		}
		parts, err := r.sendParts(ctx, p, buf, offs, send, traits)
		if err != nil {
			return r.stopped(p, n, legs, ran, err)
		}
		// A part that failed sending reads to a replica goes to the
		// masters; one that may have run on a master ends the pipeline.
		offReplica := make([]bool, len(parts))
		for i, pt := range parts {
			if pt.err == nil {
				continue
			}
			if r.isReplica(pt.node) && r.offReplica(ctx, pt.node, resp.Value{}, pt.err) {
				offReplica[i] = true
				continue
			}
			if !unreachable(ctx, pt.err) && OutcomeOf(pt.err) != OutcomeNotSent {
				if ran || len(parts) > 1 {
					return nil, &uncertainError{msg: "redpipe: the part of the batch sent to " + pt.node.opt.Addr + " failed while other parts may have run", err: pt.err}
				}
				return nil, pt.err
			}
		}
		var unsent error
		moved, waited, unreachedNow := false, false, false
		for i, pt := range parts {
			if offReplica[i] {
				// Reads, sent again to the masters.
				for _, l := range pt.legs {
					l.node, l.asking = nil, false
				}
				continue
			}
			if pt.err != nil {
				if !unreachable(ctx, pt.err) {
					// Not sent, but no refresh will help: the context
					// ended, or the client was closed.
					unsent = pt.err
					continue
				}
				unreached, last, unreachedNow = pt.err, pt.err, true
				r.triggerRefresh()
				for _, l := range pt.legs {
					l.asking, l.wait = false, true
				}
				continue
			}
			ran = true
			onReplica := r.isReplica(pt.node)
			rds := make([]redirect, len(pt.legs))
			redirected := make([]bool, len(pt.legs)) // or sent back from a replica: it did not run
			back := make([]bool, len(pt.legs))
			for j := range pt.legs {
				if onReplica && r.offReplica(ctx, pt.node, pt.replies[j], nil) {
					back[j], redirected[j] = true, true
					continue
				}
				rds[j], redirected[j] = redirectOf(pt.replies[j], pt.node.opt.Addr)
			}
			ot := overtakers{p: p, buf: buf, offs: offs, pt: pt, redirected: redirected}
			for j, l := range pt.legs {
				v, rd := pt.replies[j], rds[j]
				if back[j] {
					l.node, l.asking = nil, false
					continue
				}
				if !redirected[j] {
					l.reply, l.done, l.asking, l.probe = v, true, false, false
					continue
				}
				l.reply = v
				if ot.overtaken(j) {
					// Sent again, it would run after a later command on
					// its keys: it keeps the redirection as its reply
					// (nothing of it ran) instead.
					l.done, l.asking = true, false
					continue
				}
				last = newError(v.Str)
				l.asking = false
				switch rd.kind {
				case "MOVED":
					moved = true
					node, err := r.moved(rd.slot, rd.addr)
					if err != nil {
						return r.stopped(p, n, legs, ran, err)
					}
					l.node = node
				case "ASK":
					moved = true
					node, err := r.nodeAt(rd.addr)
					if err != nil {
						return r.stopped(p, n, legs, ran, err)
					}
					l.node, l.asking = node, true
				default:
					waited, again, l.wait = true, true, true
					if rd.kind == "CLUSTERDOWN" {
						r.triggerRefresh()
					}
				}
			}
		}
		pending = slices.DeleteFunc(pending, func(l *leg) bool { return l.done })
		if len(pending) == 0 {
			break
		}
		if unsent != nil {
			return r.stopped(p, n, legs, ran, unsent)
		}
		if moved || unreachedNow {
			redirects++
		}
		if waited {
			tries++
		}
		if redirects > r.opt.MaxRedirects || tries > maxTryAgain {
			return r.ranOut(p, n, legs, ran, redirects+tries-1, last)
		}
	}
	replies := make([]Value, n)
	if !fanned {
		for i := range legs {
			replies[legs[i].cmd] = Value{legs[i].reply}
		}
	} else {
		for i := 0; i < len(legs); {
			j := i + 1
			for j < len(legs) && legs[j].cmd == legs[i].cmd {
				j++
			}
			if j-i == 1 && !legs[i].fixed {
				replies[legs[i].cmd] = Value{legs[i].reply}
			} else if legs[i].sub != nil {
				replies[legs[i].cmd] = Value{joinSplit(p.w.cmds[legs[i].cmd].info(), legs[i:j], nil)}
			} else {
				vs := make([]resp.Value, j-i)
				for k := range vs {
					vs[k] = legs[i+k].reply
				}
				replies[legs[i].cmd] = Value{combine(p.w.cmds[legs[i].cmd].info().ResponsePolicy, vs)}
			}
			i = j
		}
	}
	return replies, p.finish(replies, -1)
}

// ranOut ends a pipeline whose redirections ran out (see partial).
func (r *clusterRouter) ranOut(p *Pipeline, n int, legs []leg, ran bool, rounds int, last error) ([]Value, error) {
	return partial(p, n, legs, ran, r.gaveUp(rounds, last))
}

// stopped ends a pipeline that err stopped before every command got
// through: the context ended, or no route could be found. If some part
// ran, the caller learns which commands did (see partial); otherwise err
// says what became of the whole.
func (r *clusterRouter) stopped(p *Pipeline, n int, legs []leg, ran bool, err error) ([]Value, error) {
	if !ran {
		return nil, err
	}
	return partial(p, n, legs, ran, err)
}

// partial returns the replies of a pipeline that stopped, for err, before
// every command got through. Each command that did not keeps the last
// redirection it got as its reply (OutcomeNotApplied), or, if no node
// answered it, an error reply whose Err says it was not sent
// (OutcomeNotSent); a command split by slot has its parts' replies
// joined (joinSplit). The error is a *CommandError for the first command
// that did not get through and wraps err; if some part ran it tells
// OutcomeUnknown, since the others did run.
func partial(p *Pipeline, n int, legs []leg, ran bool, err error) ([]Value, error) {
	replies := make([]Value, n)
	first := -1
	var unsent resp.Value
	for i := range legs {
		l := &legs[i]
		if !l.done && (first < 0 || l.cmd < first) {
			first = l.cmd
		}
		switch {
		case l.reply.Kind != 0:
			replies[l.cmd] = Value{l.reply}
		case !l.done:
			if unsent.Kind == 0 {
				unsent = madeErrorValue(notSent(fmt.Errorf("redpipe: not sent before the pipeline stopped: %w", err)))
			}
			replies[l.cmd] = Value{unsent}
		}
	}
	joinSplits(p, legs, replies, err)
	if ran {
		err = &uncertainError{msg: "redpipe: cluster: other commands of the pipeline ran", err: err}
	}
	return replies, &CommandError{Index: first, Command: p.w.cmds[first].Name(), In: "pipeline", Err: err}
}

// overtakers tells, among the legs of one part, those that a later
// command of their slot that ran (its reply is no redirection) overtook:
// it shares a key with them, as when a multi-key command gets TRYAGAIN on
// a slot whose keys are split between two nodes while a later command on
// one of its keys is served. It looks at the keys of the legs that ran
// only when some redirected leg has a later one of its slot that ran, and
// then once.
type overtakers struct {
	p          *Pipeline
	buf        []byte
	offs       []int
	pt         *part
	redirected []bool

	lastBySlot map[int]int    // slot: the last leg of it that ran
	lastByKey  map[string]int // key: the last leg that ran on it
	lastBlind  map[int]int    // slot: the last leg of it that ran, whose keys cannot be told
}

func (o *overtakers) overtaken(j int) bool {
	l := o.pt.legs[j]
	if l.slot < 0 {
		return false
	}
	if o.lastBySlot == nil {
		o.lastBySlot = map[int]int{}
		for k, lk := range o.pt.legs {
			if !o.redirected[k] && lk.slot >= 0 {
				o.lastBySlot[lk.slot] = k
			}
		}
	}
	if last, ok := o.lastBySlot[l.slot]; !ok || last < j {
		return false
	}
	if o.lastByKey == nil {
		o.lastByKey, o.lastBlind = map[string]int{}, map[int]int{}
		for k, lk := range o.pt.legs {
			if o.redirected[k] || lk.slot < 0 {
				continue
			}
			keys, ok := legKeys(o.p, o.buf, o.offs, lk)
			if !ok {
				o.lastBlind[lk.slot] = k
				continue
			}
			for _, key := range keys {
				o.lastByKey[string(key)] = k
			}
		}
	}
	if last, ok := o.lastBlind[l.slot]; ok && last > j {
		return true
	}
	keys, ok := legKeys(o.p, o.buf, o.offs, l)
	if !ok {
		return true
	}
	for _, key := range keys {
		if last, ok := o.lastByKey[string(key)]; ok && last > j {
			return true
		}
	}
	return false
}

// legKeys returns the keys of a leg's command; ok is false when they
// cannot be told.
func legKeys(p *Pipeline, buf []byte, offs []int, l *leg) ([][]byte, bool) {
	keys, ok := appendKeyWords(make([][]byte, 0, 4), p.w.cmds[l.cmd].info(), legBytes(buf, offs, l))
	return keys, ok
}

// pick returns the pending legs to send now, in their order: of each
// slot's, those up to the first that waits for a pause (TRYAGAIN,
// CLUSTERDOWN, a node that could not be reached) or goes to another node
// than the slot's first. So no command runs before an earlier command of
// its slot, sent elsewhere or waiting, has run: a TRYAGAIN from the source
// of a migration and an ASK to its target for a later command on the same
// key would otherwise let the later one run first. Legs redirected by ASK
// go out at once, in the round after the redirection, never after a
// pause, when the migration the ASK was about may be over and another
// under way.
func pick(pending []*leg) []*leg {
	type slotState struct {
		node    *Client
		blocked bool
	}
	var state map[int]*slotState
	send := make([]*leg, 0, len(pending))
	for _, l := range pending {
		if l.slot < 0 {
			if !l.wait {
				send = append(send, l)
			}
			continue
		}
		if state == nil {
			state = map[int]*slotState{}
		}
		st := state[l.slot]
		switch {
		case st == nil:
			st = &slotState{node: l.node, blocked: l.wait}
			state[l.slot] = st
			if l.probe && !l.wait {
				send = append(send, l)
				st.blocked = true
				continue
			}
		case !st.blocked && (l.wait || l.node != st.node):
			st.blocked = true
		}
		if !st.blocked {
			send = append(send, l)
		}
	}
	return send
}

// readyAgain readies the pending legs after a pause: each goes where the
// layout now says, without ASKING, unless it is a leg of a command for
// every master, which stays on its node. A leg that waited goes first and
// alone of its slot's, so that the slot's later commands are not sent, to
// be redirected again, as long as it meets TRYAGAIN.
func (r *clusterRouter) readyAgain(pending []*leg) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, l := range pending {
		l.probe, l.wait = l.wait, false
		if !l.fixed {
			l.asking = false
			l.node = r.ownerLocked(l.slot)
		}
	}
}

// sendParts groups the pending legs by node and sends every node its part
// at once; a part's failure is in its err.
func (r *clusterRouter) sendParts(ctx context.Context, p *Pipeline, buf []byte, offs []int, pending []*leg, traits batchTraits) ([]*part, error) {
	byNode := map[*Client]*part{}
	var parts []*part
	for _, l := range pending {
		if l.node == nil {
			node, err := r.route(ctx, l.slot)
			if err != nil {
				return nil, err
			}
			l.node = node
		}
		pt := byNode[l.node]
		if pt == nil {
			pt = &part{node: l.node}
			byNode[l.node] = pt
			parts = append(parts, pt)
		}
		pt.legs = append(pt.legs, l)
	}
	if len(parts) == 1 && len(p.scripts) == 0 && len(parts[0].legs) == len(offs)-1 && !slices.ContainsFunc(parts[0].legs, func(l *leg) bool { return l.asking || l.sub != nil }) {
		// The whole pipeline for one node, as it is.
		pt := parts[0]
		pt.replies, pt.err = r.sendPart(ctx, pt.node, buf, len(pt.legs), traits)
		return parts, nil
	}
	var wg sync.WaitGroup
	for _, pt := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runPart(ctx, p, buf, offs, pt, traits)
		}()
	}
	wg.Wait()
	return parts, nil
}

// runPart encodes and sends one node's part: script loads first, then
// each command, with ASKING before those redirected by ASK.
func (r *clusterRouter) runPart(ctx context.Context, p *Pipeline, buf []byte, offs []int, pt *part, traits batchTraits) {
	size := 0
	readonly := true
	for _, l := range pt.legs {
		size += len(legBytes(buf, offs, l))
		if l.asking {
			size += len(askingCmd)
		}
		readonly = readonly && p.w.cmds[l.cmd].info().has(flagReadonly)
	}
	b := make([]byte, 0, size)
	total := 0
	seen := map[*Script]bool{}
	for _, s := range p.scripts {
		if !seen[s] {
			seen[s] = true
			b = append(b, encodeWords("SCRIPT", "LOAD", s.src)...)
			total++
		}
	}
	loads := total
	for _, l := range pt.legs {
		if l.asking {
			b = append(b, askingCmd...)
			total++
		}
		b = append(b, legBytes(buf, offs, l)...)
		total++
	}
	t := traits
	t.readonly = readonly
	out, err := r.sendPart(ctx, pt.node, b, total, t)
	if err != nil {
		pt.err = err
		return
	}
	for i := 0; i < loads; i++ {
		if e := (Value{out[i]}).Err(); e != nil {
			pt.err = &uncertainError{msg: "redpipe: loading a script before the pipeline failed on " + pt.node.opt.Addr + ", and the batch ran", err: e}
			return
		}
	}
	pt.replies = make([]resp.Value, 0, len(pt.legs))
	k := loads
	for _, l := range pt.legs {
		if l.asking {
			k++
		}
		pt.replies = append(pt.replies, out[k])
		k++
	}
}

// sendPart sends n encoded commands to a node, by its retry rules.
func (r *clusterRouter) sendPart(ctx context.Context, node *Client, b []byte, n int, traits batchTraits) ([]resp.Value, error) {
	var out []resp.Value
	err := node.retry(ctx, traits.readonly, func() (err error) {
		out, _, err = node.sendBatch(ctx, b, n, traits)
		return err
	})
	return out, err
}
