package redpipe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redpipe/redpipe/internal/bufpool"
	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/hashslot"
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
		off = cmdEnd(buf, off)
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
		ci := p.w.cmds[i].info()
		if err := refuseFanOut(ci, "transaction"); err != nil {
			return nil, notAppliedTx(err)
		}
		before := len(keys)
		keys, _ = appendKeyWords(keys, ci, p.w.buf[offs[i]:offs[i+1]])
		if !splittable(ci) {
			// A command whose own keys span slots (a script's) is refused
			// by a NoTransaction pipeline too: name it, rather than
			// suggest one.
			if _, err := slotOfKeys("command "+ci.Name+" of the transaction", keys[before:]); err != nil {
				return nil, err
			}
		}
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
		if refusal, refused := txReadonly(out, n); !isRedirect && refused {
			// A replica refused the block: a failover made the node one
			// (a block without keys went to any master of a stale
			// layout), and nothing of the block ran. It goes again to a
			// master of the refreshed layout.
			if redirects < r.opt.MaxRedirects {
				redirects++
				if err := r.awaitRefresh(ctx); err != nil {
					return nil, notAppliedTx(fmt.Errorf("%w (after %w)", err, refusal))
				}
				if node, err = r.route(ctx, slot); err != nil {
					return nil, notAppliedTx(err)
				}
				asking = false
				continue
			}
			r.triggerRefresh()
		}
		if !isRedirect {
			results, err := p.execResult(out, n)
			if err != nil {
				if results != nil {
					// MULTI was refused and the commands ran on their
					// own: their replies go with the refusal.
					p.blameLoads(p.loadErrs, results, nil)
					replies := values(results)
					p.finish(replies, -1)
					return replies, err
				}
				return nil, err
			}
			p.blameLoads(p.loadErrs, results, nil)
			replies := values(results)
			if len(replies) != n {
				return nil, fmt.Errorf("redpipe: EXEC returned %d replies for %d commands", len(replies), n)
			}
			for i := range replies {
				if ci := p.w.cmds[i].info(); ci.has(flagRunsCode) && isErrValue(replies[i].v) {
					markForeignRedirect(&replies[i].v, ci.Name, slot)
				}
			}
			return replies, p.finish(replies, -1)
		}
		// Nothing of the block was applied.
		if asking {
			// A block refused after a refused ASKING would only come back
			// here by MOVED (see askingRefused).
			if err := askingRefused(p.asked, node.opt.Addr, node.opt.Username); err != nil {
				return nil, notAppliedTx(err)
			}
		}
		if rd.kind == "MOVED" || rd.kind == "ASK" {
			redirects++
			if redirects > r.opt.MaxRedirects {
				return nil, notAppliedTx(r.gaveUp(redirects-1, tries, last))
			}
		} else {
			tries++
			if tries > maxTryAgain {
				return nil, notAppliedTx(r.gaveUp(redirects, tries-1, last))
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

// txReadonly tells whether the replies of MULTI, n queued commands and
// EXEC say a replica refused the block with READONLY: a write as it was
// queued, or EXEC itself ("EXECABORT Transaction discarded because of:
// READONLY ...") when the node became a replica after the writes were
// queued. EXEC then discarded the block: nothing of it ran.
func txReadonly(out []resp.Value, n int) (error, bool) {
	if len(out) != n+2 {
		return nil, false
	}
	exec := out[n+1]
	if !isErrValue(exec) || newError(exec.Str).Prefix != "EXECABORT" {
		return nil, false
	}
	if strings.Contains(exec.Str, "READONLY") {
		return newError(exec.Str), true
	}
	for _, q := range out[1 : n+1] {
		if isReadonly(q) {
			return newError(q.Str), true
		}
	}
	return nil, false
}

// leg is one command of a plain pipeline on its way to one node; a
// command for every master has a leg for each, and a multi-key command
// split by slot one for each slot (cluster_multikey.go). Its reply is kept
// apart from it, at index at of a slice of the pipeline's (see execPlain),
// which for most pipelines is the slice of replies the caller gets.
type leg struct {
	node   *Client
	sub    *subCommand // the part of a split command it sends; nil for the whole command
	cmd    int         // its command's index in the pipeline
	at     int         // its own index among the pipeline's legs, and of its reply
	slot   int         // -1 for none
	asking bool        // send ASKING before it
	fixed  bool        // a leg of a command for every master: it stays on its node while that is a master
	asRep  bool        // a node listed as a master ran it as a replica (see replicaNow): it ran somewhere
	wait   bool        // it is sent again only after a pause (TRYAGAIN, CLUSTERDOWN, a node not reached, READONLY)
	probe  bool        // it waited: it goes alone of its slot's until it gets through
	done   bool
	part   uint16 // the index of its part in the round that sent it last
}

// part is what one node gets in a round.
type part struct {
	node    *Client
	index   uint16 // among the round's parts; the index of parts past maxMerged wraps
	legs    []*leg
	replies []resp.Value // of legs, in their order
	err     error

	// The sending of the part (see sendParts).
	traits  batchTraits
	b       []byte       // the encoded commands
	total   int          // how many commands b holds: script loads, ASKING and legs
	loads   int          // script loads before the legs
	role    bool         // ROLE follows the script loads: some leg is of a command for every master
	replica bool         // the node said it was a replica (see partReplies)
	asking  bool         // some leg goes after an ASKING
	out     []resp.Value // the replies to b
	pending conn.Pending
	size    int  // the bytes of its legs
	inline  bool // handed to the writer by the caller of sendParts, who waits for it
	early   bool // sent while the pipeline was routed (earlyParts)
	pooled  struct{ b, out bool }

	clean bool // every leg ran: the replies are taken in the legs' order
	next  int  // the next of replies to take

	// A part whose connection failed after some of its replies were
	// read (see cutPartReplies): replies holds those of its first
	// answered legs, which ran; of the others, the first begun were
	// written and may have run, and the rest were not sent.
	cut      bool
	answered int
	begun    int
}

// execPlain runs a plain pipeline: split by node, every node's part sent
// at once, the replies put back in the caller's order. Commands redirected
// by MOVED or ASK, and those of a node that could not be reached, are sent
// again as a pipeline, in their order, to where they now belong: for a
// command for every master whose master died, or refused it with READONLY
// (a failover made it a replica), the replica promoted in its place (see
// readyAgain). A command that MOVED or ASK sends to a node that a later
// command for every master touching keys already went to is not sent
// again: it keeps the redirection as its reply (see barriers).
func (r *clusterRouter) execPlain(ctx context.Context, p *Pipeline, traits batchTraits) ([]Value, error) {
	n := len(p.w.cmds)
	buf := p.w.buf
	// Scratch of this call: where each command is in buf, the legs, the
	// pending ones and those of a round's parts, from pools.
	offs := offsPools.Take(n + 1)[:n+1]
	legs := legPools.Take(n)
	var refs []*leg
	var vals []resp.Value // the legs' replies (see below)
	fanned := false
	defer func() {
		if fanned && vals != nil {
			clear(vals)
			replyPools.Recycle(vals)
		}
		offsPools.Recycle(offs)
		clear(legs) // what they point to may be large: a split command's parts
		legPools.Recycle(legs)
		clear(refs)
		refPools.Recycle(refs)
	}()
	routed := len(p.w.routes) == n // where each command ends and its slot, recorded as it was encoded
	var early *earlyParts
	off := 0
	r.mu.RLock()
	for refreshed := false; ; refreshed = true {
		err := r.unaddressedLocked()
		if err == nil {
			break
		}
		i := firstFanOut(p.w.cmds)
		if i < 0 {
			break
		}
		r.mu.RUnlock()
		if !refreshed {
			// As for a call (see everyMasterAddressed): the master may
			// have been given an address since the layout was loaded,
			// and nothing else may refresh it, so a refusal taken from
			// it would stand for good.
			err = r.everyMasterAddressed(ctx)
		}
		if err != nil {
			// A command for every master is refused before anything is
			// sent, as routing refuses one with keys in several slots.
			ci := p.w.cmds[i].info()
			return nil, &CommandError{Index: i, Command: ci.Name, In: "pipeline", Err: err}
		}
		// Routed under the hold of the lock that finds every master
		// addressed, lest a refresh in between leave one out.
		r.mu.RLock()
	}
	if r.streamsEarlyLocked(p, traits) {
		early = &earlyParts{ctx: ctx, p: p, buf: buf, offs: offs, traits: traits}
	}
	for i := 0; i < n; i++ {
		ci := p.w.cmds[i].info()
		split := ci.RequestPolicy == requestMultiShard && splittable(ci)
		end, slot, known := 0, -1, true
		rt := uint16(routeScan)
		if routed {
			rt, end = uint16(p.w.routes[i]), int(p.w.routes[i]>>16)
		}
		switch rt {
		case routeScan:
			end, slot, known = scanCommand(ci, buf, off, !split)
		case routeKeyless:
		default:
			slot = int(rt) - 1
		}
		cmd := buf[off:end]
		offs[i], offs[i+1], off = off, end, end
		before := len(legs)
		switch {
		case ci.RequestPolicy == requestAllShards || ci.RequestPolicy == requestAllNodes:
			fanned = true
			for _, m := range r.masters {
				legs = append(legs, leg{cmd: i, at: len(legs), slot: -1, node: m, fixed: true})
			}
		case split:
			legs = r.appendMultiKeyLegs(legs, i, ci, cmd)
			fanned = fanned || len(legs)-before > 1
		default:
			if !known {
				var err error
				if slot, err = cmdSlot(ci, cmd); err != nil {
					r.mu.RUnlock() // early is nil: see streamsEarlyLocked
					return nil, &CommandError{Index: i, Command: ci.Name, In: "pipeline", Err: err}
				}
			}
			legs = append(legs, leg{cmd: i, at: len(legs), slot: slot, node: r.ownerLocked(slot)})
		}
		if early != nil {
			early.add(legs, before)
		}
	}
	r.mu.RUnlock()
	r.pickReplicas(p, legs)

	// The legs' replies are made once the first round is on its way.
	// Without fan-out or split commands every command has one leg, at
	// its own index, and they are what the caller gets.
	refs = refPools.Take(2 * len(legs))[:2*len(legs)]
	pending, scratch := refs[:len(legs)], refs[len(legs):]
	for i := range legs {
		pending[i] = &legs[i]
	}
	// Routed under one hold of the lock, every leg of a slot goes to the
	// same node and none waits, so the first round sends them all (see
	// pick); replica reads may spread a slot's legs over its replicas.
	all := !r.opt.ReadFromReplicas
	errs := 0 // replies that are errors, -1 once some part had any
	redirects, tries := 0, 0
	// The last round's redirections, or TRYAGAIN and CLUSTERDOWN, which
	// count in redirects and tries before they are followed.
	var unfollowed struct{ redirects, tries int }
	var last, unreached error
	again := false   // some pending leg waits for a TRYAGAIN or CLUSTERDOWN backoff
	demoted := false // some leg of a command for every master met READONLY
	ran := false     // some part has been sent
	var bars barriers
	for len(pending) > 0 {
		send := pending
		if !all {
			send = pick(pending)
		}
		all = false
		if len(send) == 0 || demoted {
			// Every pending leg waits, or is held behind one that does:
			// pause, then send them again where the layout now says. A
			// leg refused with READONLY pauses every pending leg, not
			// only itself: the commands after its command that its node
			// redirected to the master that took its place would
			// otherwise run there before it.
			if redirects > r.opt.MaxRedirects || tries > maxTryAgain {
				return r.ranOut(p, n, legs, vals, ran, redirects-unfollowed.redirects, tries-unfollowed.tries, last)
			}
			if unreached != nil {
				if err := r.awaitRefresh(ctx); err != nil {
					return r.stopped(p, n, legs, vals, ran, fmt.Errorf("%w (after %w)", err, unreached))
				}
			} else if demoted {
				// Failed, the refresh leaves the layout as it was, and
				// the refused legs their refusals (see readyAgain).
				_ = r.awaitRefresh(ctx)
			}
			if again {
				if err := backoff(ctx, r.life, tries); err != nil {
					return r.stopped(p, n, legs, vals, ran, fmt.Errorf("%w (after %w)", err, last))
				}
			}
			pending = r.readyAgain(pending, legs, vals, cmp.Or(unreached, last))
			pending = bars.drop(p, pending, vals, cmp.Or(unreached, last))
			unreached, again, demoted = nil, false, false
			continue
		}
		var rd *round
		var restErr error // the legs not sent early could not be sent
		if early != nil {
			rd, send, restErr = early.round(r, legs, send, scratch)
			early = nil
		} else {
			var err error
			if rd, err = r.sendParts(ctx, p, buf, offs, send, scratch, traits); err != nil {
				return r.stopped(p, n, legs, vals, ran, err)
			}
		}
		if vals == nil {
			// Zeroed while the nodes work. The replies of split and
			// fan-out commands' legs are joined into others: theirs
			// are scratch.
			if fanned {
				vals = replyPools.Take(len(legs))[:len(legs)]
			} else {
				vals = make([]resp.Value, len(legs))
			}
		}
		parts := r.awaitParts(ctx, p, rd)
		// A part that failed sending reads to a replica goes to the
		// masters; one that may have run on a master ends the pipeline,
		// once the replies of the other parts are in: they ran, and the
		// caller gets them. The commands of the failed part get an error
		// reply of unknown outcome and are not sent again; but for a part
		// whose connection failed after some of its replies were read
		// (see cutPartReplies): its legs answered have their replies,
		// taken in as any part's are below, and those never written an
		// error reply that says they were not sent, as on one node. Those
		// are not sent again either: the pipeline ends.
		offReplica := make([]bool, len(parts))
		lostPart := make([]bool, len(parts))
		var lost error // the first part that failed so
		for i, pt := range parts {
			if pt.err == nil {
				continue
			}
			if r.isReplica(pt.node) && r.offReplica(ctx, pt.node, resp.Value{}, pt.err, "") {
				// The reads not answered go to the masters.
				offReplica[i] = true
				for _, l := range pt.legs[pt.answered:] {
					l.node, l.asking = nil, false
				}
				pt.legs = pt.legs[:pt.answered]
				continue
			}
			if !unreachable(ctx, pt.err) && OutcomeOf(pt.err) != OutcomeNotSent {
				if !ran && len(parts) == 1 && pt.answered == 0 && (!pt.cut || pt.begun == 0) {
					// No other node answered, and none of the part was
					// written: as on one node, the error alone. One
					// written in part says, as on one node, which of its
					// commands were not sent.
					return nil, unwrapCut(pt.err)
				}
				lostPart[i] = true
				// A part whose context ended, on the connection it shares
				// or on one of its own, which was closed then (see
				// conn.Graced.Sole), says so rather than that the
				// connection failed.
				ended := errors.Is(pt.err, context.Canceled) || errors.Is(pt.err, context.DeadlineExceeded)
				e := &uncertainError{msg: "redpipe: cluster: the commands in flight on " + pt.node.opt.Addr + " failed", err: unwrapCut(pt.err)}
				if ended {
					e.msg = "redpipe: cluster: the context ended while commands were in flight on " + pt.node.opt.Addr
				}
				if pt.answered > 0 {
					what := "the connection to " + pt.node.opt.Addr + " failed after it"
					if ended {
						what = "the context ended after " + pt.node.opt.Addr
					}
					e.msg = fmt.Sprintf("redpipe: cluster: %s answered the first %s of the %d of the pipeline's part there, which ran",
						what, plural(pt.answered, "command", "commands"), len(pt.legs))
				}
				if pt.cut && pt.begun < len(pt.legs) {
					e.msg += fmt.Sprintf(" (the last %d of the %d there were not sent)", len(pt.legs)-pt.begun, len(pt.legs))
				}
				lost = cmp.Or(lost, error(e))
				v := madeErrorValue(e)
				var unsentV resp.Value
				for j, l := range pt.legs[pt.answered:] {
					l.asking = false
					if !pt.cut || pt.answered+j < pt.begun {
						vals[l.at] = v
						continue
					}
					if unsentV.Kind == 0 {
						what := "the connection failed"
						if ended {
							what = "the context ended"
						}
						unsentV = madeErrorValue(notSent(fmt.Errorf("redpipe: cluster: not sent to %s: %s before the command was written: %w", pt.node.opt.Addr, what, unsentConnErr(pt.err))))
					}
					vals[l.at] = unsentV
				}
				pt.legs = pt.legs[:pt.answered]
			}
		}
		if fanned {
			bars = bars.add(p, parts)
		}
		vs := r.partVerdicts(ctx, p, parts, lostPart, offReplica)
		ot := overtakers{p: p, buf: buf, offs: offs, parts: parts, vs: vs}
		var unsent error
		// A redirection that could not be followed (the client was
		// closed, or the address it names is refused) ends the pipeline
		// once every part of the round has been taken in: the replies
		// of the parts after it, and of the legs after it in its part,
		// are those of commands that ran.
		var unfollowable error
		unfollowableAt := -1 // the command whose redirection that was
		moved, waited, unreachedNow := false, false, false
		for i, pt := range parts {
			if (lostPart[i] || offReplica[i]) && len(pt.legs) == 0 {
				continue
			}
			if pt.err != nil && !pt.cut {
				if !unreachable(ctx, pt.err) {
					// Not sent, but no refresh will help: the context
					// ended, the client was closed, or the node refused
					// the connection's setup (see refusedSetup).
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
			if vs[i].clean {
				// The common part: every command ran (see below).
				pt.clean = true
				continue
			}
			errs = -1
			rds, redirected, back := vs[i].rds, vs[i].redirected, vs[i].back
			for j, l := range pt.legs {
				v, rd := pt.replies[j], rds[j]
				if back[j] {
					l.node, l.asking = nil, false
					continue
				}
				vals[l.at] = v
				if l.fixed && isReadonly(v) {
					// Its node is a master no more: it waits for the
					// layout to tell where to go (see readyAgain).
					l.wait = true
					demoted, last = true, newError(v.Str)
					r.triggerRefresh()
					continue
				}
				if !redirected[j] {
					if isReadonly(v) {
						// As for a call alone (see runSlot): the reply
						// stands, but a failover made the node a replica,
						// which the next batch must not take for a master.
						r.triggerRefresh()
					}
					l.done, l.asking, l.probe = true, false, false
					continue
				}
				if ot.overtaken(l) {
					// Sent again, it would run after a later command on
					// its keys: it keeps the redirection as its reply
					// (nothing of it ran) instead.
					l.done, l.asking = true, false
					continue
				}
				last = newError(v.Str)
				l.asking = false
				if unfollowable != nil {
					// The pipeline stops with this round: the leg keeps
					// its redirection as its reply (see partial).
					continue
				}
				switch rd.kind {
				case "MOVED":
					node, err := r.moved(rd.slot, rd.addr)
					if err != nil {
						unfollowable, unfollowableAt = err, l.cmd
						continue
					}
					if bars.passed(p, node, l) {
						// It keeps the redirection as its reply: see
						// barriers.
						l.done = true
						continue
					}
					moved = true
					l.node = node
				case "ASK":
					node, err := r.nodeAt(rd.addr)
					if err != nil {
						unfollowable, unfollowableAt = err, l.cmd
						continue
					}
					if bars.passed(p, node, l) {
						l.done = true
						continue
					}
					moved = true
					l.node, l.asking = node, true
				default:
					waited, again, l.wait = true, true, true
					if rd.kind == "CLUSTERDOWN" {
						r.triggerRefresh()
					}
				}
			}
		}
		// The replies of the parts every command of which ran, in the
		// order of the legs, which send keeps, so that vals is filled
		// from the start to the end rather than in a pass per part.
		for _, l := range send {
			if pt := parts[l.part]; pt.clean {
				vals[l.at] = pt.replies[pt.next]
				pt.next++
				l.done, l.asking, l.probe = true, false, false
			}
		}
		recycleParts(parts)
		if lost != nil {
			// ran, not true: lost says already that the lost part may
			// have run; that other commands ran only some answer says.
			return partial(p, n, legs, vals, ran, lost, -1)
		}
		if unfollowable != nil {
			// The error is of the command whose redirection could not
			// be followed, not of an earlier one redirected in this
			// round too, or still waiting: those keep their
			// redirections as their replies.
			return partial(p, n, legs, vals, ran, unfollowable, unfollowableAt)
		}
		pending = slices.DeleteFunc(pending, func(l *leg) bool { return l.done })
		if len(pending) == 0 {
			break
		}
		// The parts sent early are in: what could not follow them ends
		// the pipeline as not sent.
		unsent = cmp.Or(unsent, restErr)
		if unsent != nil {
			return r.stopped(p, n, legs, vals, ran, unsent)
		}
		unfollowed.redirects, unfollowed.tries = 0, 0
		if moved || unreachedNow || demoted {
			redirects++
			unfollowed.redirects = 1
		}
		if waited {
			tries++
			unfollowed.tries = 1
		}
		if redirects > r.opt.MaxRedirects || tries > maxTryAgain {
			return r.ranOut(p, n, legs, vals, ran, redirects-unfollowed.redirects, tries-unfollowed.tries, last)
		}
	}
	if !fanned {
		replies := values(vals)
		return replies, p.finish(replies, errs)
	}
	replies := make([]Value, n)
	for i := 0; i < len(legs); {
		j := i + 1
		for j < len(legs) && legs[j].cmd == legs[i].cmd {
			j++
		}
		ci := p.w.cmds[legs[i].cmd].info()
		switch {
		case j-i == 1 && !legs[i].fixed:
			replies[legs[i].cmd] = Value{vals[i]}
		case legs[i].sub != nil:
			replies[legs[i].cmd] = Value{joinSplit(ci, legs[i:j], vals[i:j], nil)}
		default:
			replies[legs[i].cmd] = Value{fanOutReply(ci, fanVals(vals[i:j]))}
		}
		i = j
	}
	return replies, p.finish(replies, -1)
}

// unsentConnErr returns the connection's error in err, the failure of a
// part partway, made to say that the command it goes with was not sent
// (its Unsent set), as the error of a command never written says on one
// node (see cutReplies).
func unsentConnErr(err error) error {
	var ce *conn.Error
	if !errors.As(err, &ce) {
		return unwrapCut(err)
	}
	e := *ce
	e.Unsent = true
	return &e
}

// What routeOf tells of a command's key, in the low 16 bits of a route
// (see cmdBuf.routes): routeScan, left to scanCommand; routeKeyless, no
// key; else 1 + the slot of its one key.
const (
	routeScan    = 0
	routeKeyless = 0xffff
)

// routeOf tells, as scanCommand would, the slot of the one key of cmd, an
// encoded command of ci, when the table gives it exactly one key position
// (most commands), or that it has no key; the rest is left to
// scanCommand.
func routeOf(ci *commandInfo, cmd []byte) uint16 {
	switch {
	case ci.has(flagMovableKeys | flagSlotArg):
		return routeScan
	case int(ci.id) >= len(knownCommands) || ci.FirstKey <= 0:
		return routeKeyless
	case ci.LastKey != ci.FirstKey || ci.RequestPolicy == requestMultiShard:
		return routeScan
	}
	ws, ok := newWords(cmd)
	if !ok {
		return routeScan
	}
	for i := 0; ; i++ {
		w, ok := ws.next()
		if !ok {
			return routeKeyless // no word where the key goes
		}
		if i == ci.FirstKey {
			return hashslot.SlotBytes(w) + 1
		}
	}
}

// scanCommand walks the encoded command at off in buf, a pipeline's
// buffer: it returns where the command ends and, in the same walk, the
// slot of its keys, -1 for none. known is false when the slot is left to
// cmdSlot: keys that move with the arguments, keys in different slots
// (cmdSlot names them), a slot named as an argument (flagSlotArg), or
// hash false (a command to be split by slot).
// The keys are those commandKeys finds for a command with fixed key
// positions; the table's container entries (CONFIG, OBJECT...) have none.
func scanCommand(ci *commandInfo, buf []byte, off int, hash bool) (end, slot int, known bool) {
	ws, ok := newWords(buf[off:])
	if !ok {
		panic("redpipe: internal: a command buffer does not hold whole commands")
	}
	first, last, step := -1, -1, 1
	known = true
	switch {
	case !hash || ci.has(flagMovableKeys|flagSlotArg):
		known = false
	case ci.FirstKey > 0 && int(ci.id) < len(knownCommands):
		first, last, step = ci.FirstKey, ci.LastKey, max(ci.Step, 1)
		if last < 0 {
			last += ws.n
		}
	}
	slot = -1
	for i := 0; ; i++ {
		w, ok := ws.next()
		if !ok {
			break
		}
		if i < first || i > last || (i-first)%step != 0 {
			continue
		}
		if s := int(hashslot.SlotBytes(w)); slot < 0 {
			slot = s
		} else if s != slot {
			known = false
		}
	}
	return off + ws.p, slot, known
}

// hasErrors tells whether some reply is an error.
func hasErrors(vs []resp.Value) bool {
	for i := range vs {
		if isErrValue(vs[i]) {
			return true
		}
	}
	return false
}

// ranOut ends a pipeline whose redirections ran out (see partial):
// redirects and tries are the rounds of them it followed.
func (r *clusterRouter) ranOut(p *Pipeline, n int, legs []leg, vals []resp.Value, ran bool, redirects, tries int, last error) ([]Value, error) {
	return partial(p, n, legs, vals, ran, r.gaveUp(redirects, tries, last), -1)
}

// stopped ends a pipeline that err stopped before every command got
// through: the context ended, or no route could be found. If some part
// ran, the caller learns which commands did (see partial); otherwise err
// says what became of the whole.
func (r *clusterRouter) stopped(p *Pipeline, n int, legs []leg, vals []resp.Value, ran bool, err error) ([]Value, error) {
	if !ran {
		return nil, err
	}
	return partial(p, n, legs, vals, ran, err, -1)
}

// partial returns the replies of a pipeline that stopped, for err, before
// every command got through; vals are its legs' replies. Each command
// that did not get through keeps the last redirection it got as its reply
// (OutcomeNotApplied), or, if no node answered it, an error reply whose
// Err says it was not sent (OutcomeNotSent); a command split by slot has
// its parts' replies joined (joinSplit), and so has a command for every
// master (joinFanOut). The error is a *CommandError that wraps err, for
// command at, the one err is about, or, with at negative, for the first
// command that did not get through; if some command ran, or may have, it
// says so and tells OutcomeUnknown. A part sent is not enough: every
// command in it may have been redirected, and then nothing ran. The
// replies go through the pipeline's Decoders, as those of one that ran
// through do.
func partial(p *Pipeline, n int, legs []leg, vals []resp.Value, ran bool, err error, at int) ([]Value, error) {
	if vals == nil {
		vals = make([]resp.Value, len(legs)) // nothing was sent
	}
	replies := make([]Value, n)
	first := -1
	var unsent resp.Value
	for i := range legs {
		l := &legs[i]
		if !l.done && (first < 0 || l.cmd < first) {
			first = l.cmd
		}
		switch {
		case vals[i].Kind != 0:
			replies[l.cmd] = Value{vals[i]}
		case !l.done:
			if unsent.Kind == 0 {
				unsent = madeErrorValue(notSent(fmt.Errorf("redpipe: not sent before the pipeline stopped: %w", err)))
			}
			replies[l.cmd] = Value{unsent}
		}
	}
	joinSplits(p, legs, vals, replies, err)
	joinFanOuts(p, legs, vals, replies, unsent)
	// The replies are decoded, once each, as those of a pipeline that ran
	// through are (and as on one node those read before a connection
	// failed are): a script's error reply is made one of unknown outcome
	// (see markScriptErr), any other reply goes through its Decoder. The
	// pipeline's error is err, whatever they hold.
	p.finish(replies, -1)
	if ran && slices.ContainsFunc(replies, mayHaveRun) {
		err = &uncertainError{msg: "redpipe: cluster: other commands of the pipeline ran", err: err}
	}
	if at >= 0 {
		first = at
	}
	return replies, &CommandError{Index: first, Command: p.w.cmds[first].Name(), In: "pipeline", Err: err}
}

// mayHaveRun tells whether the command of reply v ran, or may have: its
// reply is no error, or one that does not say nothing was applied.
func mayHaveRun(v Value) bool {
	e := v.Err()
	return e == nil || OutcomeOf(e) == OutcomeUnknown
}

// joinFanOuts puts in replies the reply of every command for every master
// of a pipeline that stopped, from its legs and vals, their replies;
// unsent is the reply of a leg that did not get through.
func joinFanOuts(p *Pipeline, legs []leg, vals []resp.Value, replies []Value, unsent resp.Value) {
	for i := 0; i < len(legs); {
		j := i + 1
		for j < len(legs) && legs[j].cmd == legs[i].cmd {
			j++
		}
		if legs[i].fixed {
			replies[legs[i].cmd] = Value{joinFanOut(p.w.cmds[legs[i].cmd].info(), legs[i:j], vals[i:j], unsent)}
		}
		i = j
	}
}

// joinFanOut makes the reply of a command for every master, ci, from its
// legs and vals, their replies, when some legs may not have got through;
// unsent is the reply of one that no master answered. With every leg
// through, the replies are combined (fanOutReply). Otherwise a read, or a
// write that no master ran, has the reply of the first leg that did not
// get through, as the command would on that master alone, one whose part
// failed in flight (it may have run) before any other; a write that
// some master ran has an error that says it reached only some of them, of
// unknown outcome, since that leg's reply (not sent, say) would read as
// nothing applied. So has one that a node listed as a master ran as a
// replica, before it was sent on. A leg done with no reply had no master
// left to go to (see readyAgain): it counts for none.
func joinFanOut(ci *commandInfo, legs []leg, vals []resp.Value, unsent resp.Value) resp.Value {
	missed, reached, all, ran := -1, 0, 0, false
	for k := range legs {
		ran = ran || legs[k].asRep
		switch {
		case !legs[k].done:
			if missed < 0 || mayHaveRunFirst(vals, k, missed) {
				missed = k
			}
		case vals[k].Kind == 0:
			continue
		default:
			reached++
			ran = ran || !isErrValue(vals[k])
		}
		all++
	}
	if missed < 0 {
		return fanOutReply(ci, fanVals(vals))
	}
	v := vals[missed]
	if v.Kind == 0 {
		v = unsent
	}
	if !ran || !mayWrite(ci) {
		return v
	}
	return madeErrorValue(reachedSome(ci, reached, all, Value{v}.Err()))
}

// fanVals returns the replies of the legs of a command for every master,
// vals, without the none of those that had no master left to go to (see
// readyAgain).
func fanVals(vals []resp.Value) []resp.Value {
	none := func(v resp.Value) bool { return v.Kind == 0 }
	if !slices.ContainsFunc(vals, none) {
		return vals
	}
	return slices.DeleteFunc(slices.Clone(vals), none)
}

// partVerdict is what the replies of one part of a round say of its
// legs, read once before any is taken in (see partVerdicts).
type partVerdict struct {
	ran   bool // its legs were sent, and those not redirected ran
	clean bool // every leg ran: no reply is an error
	// Of each leg, when the part is neither clean nor not run: its
	// redirection, if redirected; whether it was redirected (or sent
	// back from a replica: it did not run); whether it was sent back
	// from a replica.
	rds        []redirect
	redirected []bool
	back       []bool
}

// partVerdicts reads the redirections in the replies of the parts of a
// round, all of them before any leg is taken in: whether a redirected
// leg can be sent again depends on the legs of its keys that ran in
// every part of the round, of its node or another (see overtakers). It
// skips, as execPlain does, the parts lost or sent back from a replica
// with no leg left, and those not sent. redirectOfCmd may rewrite a
// reply, so it is called once per leg, here.
func (r *clusterRouter) partVerdicts(ctx context.Context, p *Pipeline, parts []*part, lostPart, offReplica []bool) []partVerdict {
	vs := make([]partVerdict, len(parts))
	for i, pt := range parts {
		if (lostPart[i] || offReplica[i]) && len(pt.legs) == 0 {
			continue
		}
		if pt.err != nil && !pt.cut {
			continue
		}
		v := &vs[i]
		v.ran = true
		onReplica := r.isReplica(pt.node)
		if !onReplica && !pt.cut && !hasErrors(pt.replies) && len(parts) <= maxMerged {
			v.clean = true
			continue
		}
		v.rds = make([]redirect, len(pt.legs))
		v.redirected = make([]bool, len(pt.legs))
		v.back = make([]bool, len(pt.legs))
		for j := range pt.legs {
			if onReplica && r.offReplica(ctx, pt.node, pt.replies[j], nil, p.w.cmds[pt.legs[j].cmd].Name()) {
				v.back[j], v.redirected[j] = true, true
				continue
			}
			v.rds[j], v.redirected[j] = redirectOfCmd(&pt.replies[j], pt.node.opt.Addr, p.w.cmds[pt.legs[j].cmd].Name(), pt.legs[j].slot)
		}
	}
	return vs
}

// overtakers tells, among the redirected legs of a round, those that a
// later command of their slot that ran (its reply is no redirection)
// overtook: it shares a key with them, as when a multi-key command gets
// TRYAGAIN on a slot whose keys are split between two nodes while a
// later command on one of its keys is served, or when a large pipeline
// goes to a node in several parts and a command of a later part ran
// while an earlier one on its key, in an earlier part, was redirected.
// It looks at every part of the round, and compares legs by their place
// among the pipeline's legs (at), which follows the order of the
// commands. It looks at the keys of the legs that ran only when some
// redirected leg has a later one of its slot that ran, and then once.
type overtakers struct {
	p     *Pipeline
	buf   []byte
	offs  []int
	parts []*part
	vs    []partVerdict

	lastBySlot map[int]int    // slot: the at of the last leg of it that ran
	lastByKey  map[string]int // key: the at of the last leg that ran on it
	lastBlind  map[int]int    // slot: the at of the last leg of it that ran, whose keys cannot be told
}

// eachRan calls f with each leg of the round that ran.
func (o *overtakers) eachRan(f func(l *leg)) {
	for i, pt := range o.parts {
		v := o.vs[i]
		if !v.ran {
			continue
		}
		for j, l := range pt.legs {
			if v.clean || !v.redirected[j] {
				f(l)
			}
		}
	}
}

func (o *overtakers) overtaken(l *leg) bool {
	if l.slot < 0 {
		return false
	}
	if o.lastBySlot == nil {
		o.lastBySlot = map[int]int{}
		o.eachRan(func(lk *leg) {
			if lk.slot >= 0 && lk.at >= o.lastBySlot[lk.slot] {
				o.lastBySlot[lk.slot] = lk.at
			}
		})
	}
	if last, ok := o.lastBySlot[l.slot]; !ok || last < l.at {
		return false
	}
	if o.lastByKey == nil {
		o.lastByKey, o.lastBlind = map[string]int{}, map[int]int{}
		o.eachRan(func(lk *leg) {
			if lk.slot < 0 {
				return
			}
			keys, ok := legKeys(o.p, o.buf, o.offs, lk)
			if !ok {
				if lk.at >= o.lastBlind[lk.slot] {
					o.lastBlind[lk.slot] = lk.at
				}
				return
			}
			for _, key := range keys {
				if lk.at >= o.lastByKey[string(key)] {
					o.lastByKey[string(key)] = lk.at
				}
			}
		})
	}
	if last, ok := o.lastBlind[l.slot]; ok && last > l.at {
		return true
	}
	keys, ok := legKeys(o.p, o.buf, o.offs, l)
	if !ok {
		return true
	}
	for _, key := range keys {
		if last, ok := o.lastByKey[string(key)]; ok && last > l.at {
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
// under way. A leg of a command for every master, which every slot's
// commands are ordered with, goes only when every leg before it does: a
// flush sent again to the master that took the place of one that died
// would otherwise run before a write queued ahead of it that waits there.
func pick(pending []*leg) []*leg {
	type slotState struct {
		node    *Client
		blocked bool
	}
	var state map[int]slotState
	send := make([]*leg, 0, len(pending))
	for k, l := range pending {
		if l.slot < 0 {
			if !l.wait && (!l.fixed || len(send) == k) {
				send = append(send, l)
			}
			continue
		}
		if state == nil {
			state = map[int]slotState{}
		}
		st, seen := state[l.slot]
		switch {
		case !seen && l.probe && !l.wait:
			// It goes alone of its slot's.
			state[l.slot] = slotState{node: l.node, blocked: true}
			send = append(send, l)
			continue
		case !seen:
			st = slotState{node: l.node, blocked: l.wait}
			state[l.slot] = st
		case !st.blocked && (l.wait || l.node != st.node):
			st.blocked = true
			state[l.slot] = st
		}
		if !st.blocked {
			send = append(send, l)
		}
	}
	return send
}

// readyAgain readies the pending legs after a pause, and returns those
// still pending: each goes where the layout now says, without ASKING. A
// leg of a command for every master stays on its node while that node is
// a master. One whose node is a master no more, and that no node
// answered (it could not be reached: a master that died, whose slots a
// replica took over) or that its node refused with READONLY (a failover
// made that node a replica, which ran nothing of it), goes where a call
// alone would send it (fanOut): to a master of the new layout that no leg
// of its command went to, the replica promoted in its node's place. Were
// every master to have one already, the command reaches every master
// without it: it is done, with no reply (see fanVals). One refused by a
// node that is still a master is done, the refusal its reply. So is one
// whose new master already ran a later command of the pipeline (a MOVED
// had sent a command of its slot there before the layout was refreshed):
// sent now, it would run after that command, undoing what a write did or
// changing what a read saw; one that no node answered has an error reply
// that says it was not sent, for cause. Only a leg of which nothing ran
// waits for a pause, and no two legs of a command go to one master, so
// the command runs once on each. A leg that waited goes first and alone
// of its slot's, so that the slot's later commands are not sent, to be
// redirected again, as long as it meets TRYAGAIN. legs are the
// pipeline's, and vals their replies.
func (r *clusterRouter) readyAgain(pending []*leg, legs []leg, vals []resp.Value, cause error) []*leg {
	r.mu.RLock()
	defer r.mu.RUnlock()
	dropped := false        // some leg is done
	var ran map[*Client]int // the last command that ran on each node, once needed
	for _, l := range pending {
		l.probe, l.wait = l.wait, false
		// Refused by its node, it waited for the layout: nothing of it
		// ran.
		refused := l.fixed && vals != nil && isReadonly(vals[l.at])
		switch {
		case !l.fixed:
			l.asking = false
			l.node = r.ownerLocked(l.slot)
		case slices.Contains(r.masters, l.node):
			if refused {
				l.done, dropped = true, true
			}
		case refused || vals == nil || vals[l.at].Kind == 0:
			m := r.unvisitedLocked(legs, l)
			if m != nil && vals != nil {
				if ran == nil {
					ran = lastRan(legs, vals)
				}
				if last, ok := ran[m]; ok && last > l.cmd {
					if !refused {
						vals[l.at] = madeErrorValue(notSent(fmt.Errorf("redpipe: cluster: not sent to %s, in place of %s, which later commands of the pipeline ran on first: %w", m.opt.Addr, l.node.opt.Addr, cause)))
					}
					l.done, dropped = true, true
					continue
				}
			}
			if vals != nil {
				// Its refusal is not the reply of the next node.
				vals[l.at] = resp.Value{}
			}
			if m != nil {
				l.node = m
			} else {
				l.done, dropped = true, true
			}
		}
	}
	if dropped {
		pending = slices.DeleteFunc(pending, func(l *leg) bool { return l.done })
	}
	return pending
}

// barriers holds, for each node, the last command for every master that
// reads or changes keys (FLUSHALL, DBSIZE, KEYS...), and the last WAIT,
// that a pipeline sent there and that the node did not refuse. A keyed
// command queued before it that MOVED or ASK sends to that node must not
// go: it would run after it, surviving a flush queued after it, missing
// from a count, or, a write, from those WAIT said the replicas have. It
// keeps the redirection as its reply instead, and so reads as not
// applied, which is true. Commands for every master that touch no key
// (SCRIPT LOAD, CONFIG SET, PING) are no barrier, and WAIT is none to a
// read.
type barriers map[*Client]barrier

// barrier is the index of the last command for every master touching
// keys, and of the last WAIT, that a node ran of a pipeline; -1 for none.
type barrier struct{ keys, wait int }

// add returns b with the legs of commands for every master of parts, the
// parts of a round, that their nodes answered.
func (b barriers) add(p *Pipeline, parts []*part) barriers {
	for _, pt := range parts {
		if pt.err != nil && !pt.cut {
			continue
		}
		for j, l := range pt.legs {
			if !l.fixed || isReadonly(pt.replies[j]) {
				continue
			}
			ci := p.w.cmds[l.cmd].info()
			wait := ci == cmdWait
			if !wait && !touchesKeys(ci) {
				continue
			}
			if b == nil {
				b = barriers{}
			}
			last, ok := b[pt.node]
			if !ok {
				last = barrier{keys: -1, wait: -1}
			}
			if wait {
				last.wait = max(last.wait, l.cmd)
			} else {
				last.keys = max(last.keys, l.cmd)
			}
			b[pt.node] = last
		}
	}
	return b
}

// passed tells whether a command for every master queued after l's, a
// keyed leg of p, has been sent to node that l's command must not run
// after: one that touches keys, or WAIT if l's command may write.
func (b barriers) passed(p *Pipeline, node *Client, l *leg) bool {
	last, ok := b[node]
	if !ok || l.slot < 0 {
		return false
	}
	return last.keys > l.cmd || last.wait > l.cmd && mayWrite(p.w.cmds[l.cmd].info())
}

// drop settles the pending keyed legs of p, readied after a pause, whose
// node a later command for every master touching keys, or a later WAIT
// for a write, has been sent to: a leg that the node refused with
// TRYAGAIN or CLUSTERDOWN while it ran that later command, or one that
// MOVED or ASK had sent there, would run after it. Each keeps its refusal as its reply, as a redirected one does
// (see barriers); one that no node answered gets an error reply that says
// it was not sent, for cause. It returns the legs still pending.
func (b barriers) drop(p *Pipeline, pending []*leg, vals []resp.Value, cause error) []*leg {
	if len(b) == 0 {
		return pending
	}
	dropped := false
	for _, l := range pending {
		if l.fixed || !b.passed(p, l.node, l) {
			continue
		}
		if vals != nil && vals[l.at].Kind == 0 {
			vals[l.at] = madeErrorValue(notSent(fmt.Errorf("redpipe: cluster: not sent to %s, which a later command for every master of the pipeline ran on first: %w", l.node.opt.Addr, cause)))
		}
		l.done, l.asking, dropped = true, false, true
	}
	if dropped {
		pending = slices.DeleteFunc(pending, func(l *leg) bool { return l.done })
	}
	return pending
}

// touchesKeys tells whether ci, a command for every master, which names
// no key, reads or changes the keys of the node it runs on: the server's
// table flags it as a read or a write. WAIT counts too: it tells how many
// replicas have the writes sent before it on its connection, and a write
// that a redirection sends on to a node after WAIT ran there, which WAIT
// then never waited for, would pass for one of them. (A pipeline lets a
// read go after WAIT: see barriers.)
func touchesKeys(ci *commandInfo) bool {
	return ci.has(flagWrite|flagReadonly) || ci == cmdWait
}

// lastRan returns, for each node, the last command of a pipeline that ran
// on it, by the pipeline's legs and vals, their replies: the greatest
// index of a command with a leg done there with a reply.
func lastRan(legs []leg, vals []resp.Value) map[*Client]int {
	ran := map[*Client]int{}
	for k := range legs {
		if l := &legs[k]; l.done && vals[k].Kind != 0 {
			if last, ok := ran[l.node]; !ok || l.cmd > last {
				ran[l.node] = l.cmd
			}
		}
	}
	return ran
}

// unvisitedLocked returns a master that no leg of l's command, a command
// for every master, goes to; nil if every master has one. Those legs are
// next to l in legs.
func (r *clusterRouter) unvisitedLocked(legs []leg, l *leg) *Client {
	first, end := l.at, l.at+1
	for first > 0 && legs[first-1].cmd == l.cmd {
		first--
	}
	for end < len(legs) && legs[end].cmd == l.cmd {
		end++
	}
masters:
	for _, m := range r.masters {
		for k := first; k < end; k++ {
			if legs[k].node == m {
				continue masters
			}
		}
		return m
	}
	return nil
}

// maxMerged bounds the parts of a round whose replies are taken in the
// order of the legs (see execPlain), so that a leg can tell its part.
const maxMerged = 1 << 16

// partSet groups the legs of a round by node.
type partSet struct {
	base   int // the index of its first part in the round
	parts  []*part
	byNode map[*Client]*part // once there are more than a few parts
	last   *part
}

// of returns the part of node, made if new.
func (s *partSet) of(node *Client) *part {
	if s.last != nil && s.last.node == node {
		return s.last
	}
	var pt *part
	if s.byNode != nil {
		pt = s.byNode[node]
	} else {
		for _, q := range s.parts {
			if q.node == node {
				pt = q
				break
			}
		}
	}
	if pt == nil {
		pt = &part{node: node, index: uint16(s.base + len(s.parts))}
		s.parts = append(s.parts, pt)
		switch {
		case s.byNode != nil:
			s.byNode[node] = pt
		case len(s.parts) > 8:
			s.byNode = make(map[*Client]*part, 2*len(s.parts))
			for _, q := range s.parts {
				s.byNode[q.node] = q
			}
		}
	}
	s.last = pt
	return pt
}

// Pools of the scratch of cluster pipelines: the replies of parts, apart
// from those the caller gets, and the legs of commands with what goes with
// them. A pipeline of ten thousand commands would otherwise make a
// megabyte of them each time.
var (
	replyPools = bufpool.New[resp.Value](64)
	legPools   = bufpool.New[leg](64)
	refPools   = bufpool.New[*leg](128)
	offsPools  = bufpool.New[int](128)
)

// sendParts groups the legs to send by node and sends every node its part
// at once; awaitParts waits for their replies. The parts' lists of legs
// are made in scratch, as long as send.
//
// Small parts go out on their nodes' shared connections from this
// goroutine, one after the other, each written while the nodes answer
// those before. A large part goes from a goroutine of its own, which
// encodes it too: its write may fill the socket's buffers and wait for the
// node to read, which should not hold up the other nodes' parts. So does a
// part that needs a connection of its own (blocking commands, a part over
// largePipeline) or a new one, and the retry of a part whose first attempt
// failed.
func (r *clusterRouter) sendParts(ctx context.Context, p *Pipeline, buf []byte, offs []int, send, scratch []*leg, traits batchTraits) (*round, error) {
	rd := &round{}
	return rd, r.sendPartsTo(ctx, rd, p, buf, offs, send, scratch, traits)
}

// sendPartsTo is sendParts adding the parts to rd, after those it has.
func (r *clusterRouter) sendPartsTo(ctx context.Context, rd *round, p *Pipeline, buf []byte, offs []int, send, scratch []*leg, traits batchTraits) error {
	set := partSet{base: len(rd.parts)}
	for _, l := range send {
		if l.node == nil {
			node, err := r.route(ctx, l.slot)
			if err != nil {
				return err
			}
			l.node = node
		}
		pt := set.of(l.node)
		pt.total++ // the count of its legs, for now
		pt.size += len(legBytes(buf, offs, l))
	}
	parts := set.parts
	k := 0
	for _, pt := range parts {
		pt.legs = scratch[k : k : k+pt.total]
		k += pt.total
		pt.total = 0
	}
	for _, l := range send {
		pt := set.of(l.node)
		pt.legs = append(pt.legs, l)
		l.part = pt.index
	}
	// The whole pipeline for one node goes as it is.
	whole := len(parts) == 1 && len(p.scripts) == 0 && len(send) == len(offs)-1 &&
		!slices.ContainsFunc(send, func(l *leg) bool { return l.asking || l.sub != nil })
	rd.parts = append(rd.parts, parts...)
	for i, pt := range parts {
		quiet := i < len(parts)-1 // see startPart
		cn := pt.node.liveShared()
		switch {
		case traits.blocking || pt.size > largePipeline || cn == nil:
			rd.wg.Add(1)
			go func() {
				defer rd.wg.Done()
				encodePart(p, buf, offs, pt, traits, whole)
				pt.out, pt.err = r.sendPart(ctx, pt.node, pt.b, pt.total, pt.traits)
			}()
		case pt.size > maxInlinePart && len(parts) > 1:
			rd.wg.Add(1)
			go func() {
				defer rd.wg.Done()
				encodePart(p, buf, offs, pt, traits, whole)
				startPart(ctx, pt, cn, quiet)
				if err := waitPart(ctx, pt); err != nil {
					pt.out, pt.err = r.resendPart(ctx, pt, err)
				}
			}()
		default:
			encodePart(p, buf, offs, pt, traits, whole)
			startPart(ctx, pt, cn, quiet)
			pt.inline = true
		}
	}
	return nil
}

// round is the parts of a round on their way (see sendParts); the
// goroutines sending some of them are in wg.
type round struct {
	parts []*part
	wg    sync.WaitGroup
}

// awaitParts waits for the replies of a round's parts, retrying as their
// nodes' rules allow those that the caller of sendParts handed over, and
// returns the parts, each with its replies or its failure.
func (r *clusterRouter) awaitParts(ctx context.Context, p *Pipeline, rd *round) []*part {
	var failed map[*Client][]*part // early parts that failed, by node, in order
	for _, pt := range rd.parts {
		if !pt.inline {
			continue
		}
		err := waitPart(ctx, pt)
		switch {
		case err == nil:
		case pt.early:
			if failed == nil {
				failed = map[*Client][]*part{}
			}
			pt.err = err
			failed[pt.node] = append(failed[pt.node], pt)
		default:
			rd.wg.Add(1)
			go func() {
				defer rd.wg.Done()
				pt.out, pt.err = r.resendPart(ctx, pt, err)
			}()
		}
	}
	for _, pts := range failed {
		// A node's parts sent early are sent again one after the other,
		// and none after one that fails again, which would overtake it.
		rd.wg.Add(1)
		go func() {
			defer rd.wg.Done()
			for _, pt := range pts {
				if pt.out, pt.err = r.resendPart(ctx, pt, pt.err); pt.err != nil {
					return
				}
			}
		}()
	}
	rd.wg.Wait()
	for _, pt := range rd.parts {
		partReplies(p, pt) // before b goes: a part cut partway needs it
		if pt.pooled.b {
			bytePools.Recycle(pt.b)
		}
		pt.b, pt.pooled.b = nil, false
	}
	return rd.parts
}

// maxInlinePart is the size above which a part of a round of several is
// sent from a goroutine of its own (see sendParts): about what the socket
// buffers of a loopback connection take in at once.
const maxInlinePart = 32 << 10

// partStarted, when set, is told of every part that startPart starts,
// for tests: its node, and whether it is quiet.
var partStarted func(node *Client, quiet bool)

// startPart hands an encoded part to the writer of its node's shared
// connection cn, with pooled room for its replies. A round of several
// parts is done when the slowest node answers, and of the parts it starts
// here it polls for the replies of the last only: the others are quiet
// (conn.Graced.Quiet). A part sent on a connection of its own (sendPart)
// is read as any call is.
func startPart(ctx context.Context, pt *part, cn *conn.Conn, quiet bool) {
	pt.out, pt.pooled.out = replyPools.Take(pt.total)[:pt.total], true
	if partStarted != nil {
		partStarted(pt.node, quiet)
	}
	if quiet {
		pt.pending, pt.err = cn.Quiet().Start(ctx, pt.b, pt.out)
		return
	}
	pt.pending, pt.err = cn.Start(ctx, pt.b, pt.out)
}

// waitPart waits for the replies of a part that startPart handed over,
// and returns the failure of that attempt, for a retry.
//
// If the connection failed after some replies were read, the error is a
// *cutError that holds them, as sendChecked's is: the reader is done
// with them, and they are the part's. One that failed before any reply,
// once some of the part's bytes were written, is a *cutError too, of no
// reply: it tells which commands were never written.
func waitPart(ctx context.Context, pt *part) error {
	err := pt.err
	got, sent := 0, 0
	if err == nil {
		got, sent, err = pt.pending.WaitCut(ctx)
	}
	if err != nil {
		if got > 0 || sent > 0 {
			err = &cutError{replies: pt.out[:got:got], sent: sent, err: err}
		}
		// The reader may still fill out the rest.
		pt.out, pt.pooled.out = nil, false
	}
	return err
}

// encodePart encodes one node's part: script loads first, then each
// command, with ASKING before those redirected by ASK. whole says the
// part is the pipeline's every command, as they are in buf.
func encodePart(p *Pipeline, buf []byte, offs []int, pt *part, traits batchTraits, whole bool) {
	size := 0
	readonly := true
	for _, l := range pt.legs {
		size += len(legBytes(buf, offs, l))
		if l.asking {
			size += len(askingCmd)
			pt.asking = true
		}
		readonly = readonly && p.w.cmds[l.cmd].info().has(flagReadonly)
	}
	pt.traits = traits
	pt.traits.readonly = readonly
	// A node asked for a command for every master tells whether it still
	// is one (see fanOut).
	pt.role = slices.ContainsFunc(pt.legs, func(l *leg) bool { return l.fixed })
	if whole && !pt.role {
		pt.b, pt.total = buf, len(pt.legs)
		return
	}
	if pt.role {
		size += len(roleCmd)
	}
	var loads [][]byte
	seen := map[*Script]bool{}
	for _, s := range p.scripts {
		if !seen[s] {
			seen[s] = true
			load := encodeWords("SCRIPT", "LOAD", s.src)
			loads = append(loads, load)
			size += len(load)
		}
	}
	b := bytePools.Take(size)
	pt.pooled.b = cap(b) >= minPooledBytes
	for _, load := range loads {
		b = append(b, load...)
	}
	pt.loads = len(loads)
	pt.total = len(loads)
	if pt.role {
		b = append(b, roleCmd...)
		pt.total++
	}
	for i := 0; i < len(pt.legs); {
		l := pt.legs[i]
		if l.asking {
			b = append(b, askingCmd...)
			pt.total++
		}
		if l.sub != nil {
			b = append(b, l.sub.cmd...)
			pt.total, i = pt.total+1, i+1
			continue
		}
		// Commands that follow one another in buf go in one copy.
		j, end := i+1, offs[l.cmd+1]
		for j < len(pt.legs) && !pt.legs[j].asking && pt.legs[j].sub == nil && offs[pt.legs[j].cmd] == end {
			end = offs[pt.legs[j].cmd+1]
			j++
		}
		b = append(b, buf[offs[l.cmd]:end]...)
		pt.total, i = pt.total+j-i, j
	}
	pt.b = b
}

// resendPart sends a part again, by its node's retry rules, after its
// first attempt, sent by sendParts, failed with err. A part that met its
// node's shared connection closed as another replaced it (MaxConnAge),
// or closed by the node while idle (its timeout setting, CLIENT KILL),
// was not sent and goes on a new one first, as a call on one node does
// (see replaced and closedIdle): that is neither a retry nor a sign that
// the node cannot be reached, which would refresh the layout and count as
// a redirection.
func (r *clusterRouter) resendPart(ctx context.Context, pt *part, err error) ([]resp.Value, error) {
	if replaced(err) || conn.ClosedIdle(err) {
		out, _, err2 := pt.node.sendChecked(ctx, pt.b, pt.total, pt.traits, keepCut)
		if err2 == nil {
			return out, nil
		}
		err = err2 // the first attempt, to the retry rules
	}
	tried := false
	var out []resp.Value
	e := pt.node.retry(ctx, pt.traits.readonly, func() (err2 error) {
		if !tried {
			tried = true
			return err
		}
		out, _, err2 = pt.node.sendChecked(ctx, pt.b, pt.total, pt.traits, keepCut)
		return err2
	})
	return out, e
}

// partReplies takes the replies of a part's legs from those of its
// commands, past the script loads, ROLE and ASKING's. A leg of a command
// for every master that a node ran as a replica gets a READONLY refusal
// in place of the replica's reply (see replicaNow). A script that failed
// to load there leaves its error in the NOSCRIPT of the legs that run it
// (see blameLoads): the rest of the part ran all the same.
func partReplies(p *Pipeline, pt *part) {
	if pt.err != nil {
		var cut *cutError
		if errors.As(pt.err, &cut) {
			cutPartReplies(p, pt, cut)
		}
		return
	}
	failed := loadErrs(p.scripts, pt.out[:pt.loads])
	k := pt.loads
	if pt.role {
		pt.replica = isReplicaRole(pt.out[k])
		k++
	}
	if !pt.asking {
		pt.replies = pt.out[k:]
	} else {
		pt.replies = make([]resp.Value, 0, len(pt.legs))
		for _, l := range pt.legs {
			v := pt.out[k]
			if l.asking {
				v = afterAsking(v, pt.out[k+1], pt.node)
				k++
			}
			pt.replies = append(pt.replies, v)
			k++
		}
	}
	if pt.replica {
		for j, l := range pt.legs {
			if l.fixed {
				pt.replies[j] = replicaNow(pt.node.opt.Addr)
				l.asRep = true
			}
		}
	}
	p.blameLoads(failed, pt.replies, func(j int) int { return pt.legs[j].cmd })
}

// cutPartReplies takes the replies of the legs of a part whose connection
// failed after the replies of its first commands were read, as
// partReplies does: cut holds them and tells how many bytes of pt.b the
// socket took. The legs answered, a prefix of pt.legs, ran; so did
// nothing after them that was not written (its ASKING may have been),
// unless an earlier attempt, sent again by the retry rules, may have run
// them (see cutAgain).
func cutPartReplies(p *Pipeline, pt *part, cut *cutError) {
	got := len(cut.replies)
	begun := commandsBegun(pt.b, pt.total, cut.sent)
	pt.cut = true
	k := pt.loads
	if pt.role {
		pt.replica = k < got && isReplicaRole(cut.replies[k])
		k++
	}
	for _, l := range pt.legs {
		if l.asking {
			k++
		}
		if k >= begun {
			break
		}
		pt.begun++
		if k < got {
			pt.answered++
		}
		k++
	}
	if cutAgain(pt.err) {
		// An earlier attempt may have written the whole part, and run
		// what the last did not write.
		pt.begun = len(pt.legs)
	}
	if pt.answered == 0 {
		return
	}
	pt.replies = make([]resp.Value, 0, pt.answered)
	k = pt.loads
	if pt.role {
		k++
	}
	for _, l := range pt.legs[:pt.answered] {
		v := cut.replies[k]
		if l.asking {
			v = afterAsking(v, cut.replies[k+1], pt.node)
			k++
		}
		if pt.replica && l.fixed {
			v = replicaNow(pt.node.opt.Addr)
			l.asRep = true
		}
		pt.replies = append(pt.replies, v)
		k++
	}
	p.blameLoads(loadErrs(p.scripts, cut.replies[:pt.loads]), pt.replies, func(j int) int { return pt.legs[j].cmd })
}

// recycleParts gives back the pooled replies of a round's parts, once
// the legs' own are copied out of them.
func recycleParts(parts []*part) {
	for _, pt := range parts {
		if pt.pooled.out {
			clear(pt.out)
			replyPools.Recycle(pt.out)
		}
		pt.out, pt.replies, pt.pooled.out = nil, nil, false
	}
}

// sendPart sends n encoded commands to a node, by its retry rules.
func (r *clusterRouter) sendPart(ctx context.Context, node *Client, b []byte, n int, traits batchTraits) ([]resp.Value, error) {
	var out []resp.Value
	err := node.retry(ctx, traits.readonly, func() (err error) {
		out, _, err = node.sendChecked(ctx, b, n, traits, keepCut)
		return err
	})
	return out, err
}

// keepCut makes sendChecked keep the replies a part read before its
// connection failed, in a *cutError (see cutPartReplies).
var keepCut = execCheck{keep: true}
