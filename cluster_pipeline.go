package redpipe

import (
	"cmp"
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
	var last error
	ran := false // some part has been sent
	var held []*leg
	for len(pending) > 0 {
		if ran {
			pending, held = holdBack(pending, held[:0])
		}
		parts, err := r.sendParts(ctx, p, buf, offs, pending, traits)
		if err != nil {
			return nil, stopped(ran, err)
		}
		var unreached error
		moved, again := false, false
		next := pending[:0]
		for _, pt := range parts {
			onReplica := r.isReplica(pt.node)
			if pt.err != nil {
				if onReplica && r.offReplica(ctx, pt.node, resp.Value{}, pt.err) {
					// Reads, sent again to the masters.
					for _, l := range pt.legs {
						l.node = nil
						next = append(next, l)
					}
					continue
				}
				if !unreachable(ctx, pt.err) {
					if ran || len(parts) > 1 {
						return nil, &uncertainError{msg: "redpipe: the part of the batch sent to " + pt.node.opt.Addr + " failed while other parts may have run", err: pt.err}
					}
					return nil, pt.err
				}
				unreached = pt.err
				for _, l := range pt.legs {
					l.asking = false
					next = append(next, l)
				}
				continue
			}
			ran = true
			for j, l := range pt.legs {
				v := pt.replies[j]
				if onReplica && r.offReplica(ctx, pt.node, v, nil) {
					l.node = nil
					next = append(next, l)
					continue
				}
				rd, isRedirect := redirectOf(v, pt.node.opt.Addr)
				if !isRedirect {
					l.reply, l.done, l.asking = v, true, false
					continue
				}
				l.reply = v
				last = newError(v.Str)
				l.asking = false
				switch rd.kind {
				case "MOVED":
					moved = true
					node, err := r.moved(rd.slot, rd.addr)
					if err != nil {
						return nil, stopped(ran, err)
					}
					l.node = node
				case "ASK":
					moved = true
					node, err := r.nodeAt(rd.addr)
					if err != nil {
						return nil, stopped(ran, err)
					}
					l.node, l.asking = node, true
				default:
					again = true
					if rd.kind == "CLUSTERDOWN" {
						r.triggerRefresh()
					}
				}
				next = append(next, l)
			}
		}
		// The legs go out again in their first order, whatever part they
		// were in, so that commands of a slot keep theirs.
		pending = sortLegs(append(next, held...))
		if len(pending) == 0 {
			break
		}
		if unreached != nil {
			last = unreached
		}
		if moved || unreached != nil {
			redirects++
		}
		if again {
			tries++
		}
		if redirects > r.opt.MaxRedirects || tries > maxTryAgain {
			return r.ranOut(p, n, legs, redirects+tries-1, last)
		}
		if unreached != nil {
			if err := r.awaitRefresh(ctx); err != nil {
				return nil, stopped(ran, fmt.Errorf("%w (after %w)", err, unreached))
			}
		}
		if again {
			if err := backoff(ctx, tries); err != nil {
				return nil, fmt.Errorf("%w (after %w)", err, last)
			}
		}
		if unreached != nil || again {
			r.mu.RLock()
			for _, l := range pending {
				if !l.asking && !l.fixed && !l.done {
					l.node = r.ownerLocked(l.slot)
				}
			}
			r.mu.RUnlock()
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

// ranOut ends a pipeline whose redirections ran out: the replies are
// returned with the last error of each command that did not get through,
// and the error, a *CommandError for the first of them, says so.
func (r *clusterRouter) ranOut(p *Pipeline, n int, legs []leg, rounds int, last error) ([]Value, error) {
	replies := make([]Value, n)
	first := -1
	for i := range legs {
		if !legs[i].done && (first < 0 || legs[i].cmd < first) {
			first = legs[i].cmd
		}
		if legs[i].reply.Kind != 0 {
			replies[legs[i].cmd] = Value{legs[i].reply}
		}
	}
	err := r.gaveUp(rounds, last)
	joinSplits(p, legs, replies, err)
	name := p.w.cmds[first].Name()
	return replies, &CommandError{Index: first, Command: name, In: "pipeline", Err: err}
}

// stopped is the error of a plain pipeline that stopped on err: once some
// part has run, whatever err says, the caller must not take the batch as
// not sent.
func stopped(ran bool, err error) error {
	if !ran {
		return err
	}
	return &uncertainError{msg: "redpipe: stopped after other commands, or other parts of a split command, had run", err: err}
}

// sortLegs orders legs by their place in the pipeline.
func sortLegs(ls []*leg) []*leg {
	slices.SortStableFunc(ls, func(a, b *leg) int { return cmp.Compare(a.cmd, b.cmd) })
	return ls
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
