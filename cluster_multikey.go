package redpipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
)

// Multi-key commands on a cluster. MGET, MSET, DEL, UNLINK, EXISTS and
// TOUCH carry the request_policy multi_shard: their keys may be in
// different slots. Such a command is cut into one sub-command per slot,
// each holding that slot's keys (with their values, for MSET) in the
// caller's order, and the sub-commands become legs of a plain pipeline
// (see execPlain): each is routed, redirected and retried as any other
// command, and the sub-commands of one node go out together. Their replies
// are then joined by the command's response_policy: MGET's arrays put back
// in the order of the keys, DEL's counts summed, MSET's OK when every part
// succeeded. A duplicated key lands in the same sub-command as its twin,
// so it counts as it would on one node (EXISTS k k is 2, DEL k k is 1).
//
// The parts run on their nodes independently: a split command is not
// atomic across slots, and a write one of whose parts failed while others
// ran says so (see joinSplit).

// splittable tells whether a multi_shard command is split by slot when
// its keys span several. MSETNX is not: it sets all of its keys or none,
// which parts run on different nodes could not promise. Only the layout
// of the commands above is understood: keys from FirstKey to the end, one
// every Step words, the words between them travelling with their key.
func splittable(ci *commandInfo) bool {
	return ci.RequestPolicy == requestMultiShard && ci.Name != "MSETNX" &&
		ci.FirstKey > 0 && ci.LastKey == -1 && !ci.has(flagMovableKeys)
}

// sharedSlot returns the slot of the keys of cmd, a splittable command,
// and whether they all share it. A command whose words cannot be read, or
// do not make whole groups of Step words (MSET with a key and no value),
// is not split: it goes whole to the slot of its first key, or anywhere
// when that cannot be read, and the server refuses it. It does not
// allocate, so a command whose keys share a slot costs what any other
// does.
func sharedSlot(ci *commandInfo, cmd []byte) (slot int, shared bool) {
	ws, ok := newWords(cmd)
	if !ok || ws.n <= ci.FirstKey {
		return -1, true
	}
	step := max(ci.Step, 1)
	whole := (ws.n-ci.FirstKey)%step == 0
	slot = -1
	for i := 0; ; i++ {
		w, ok := ws.next()
		if !ok {
			return slot, true
		}
		if i < ci.FirstKey || (i-ci.FirstKey)%step != 0 {
			continue
		}
		s := int(hashslot.SlotBytes(w))
		switch {
		case slot < 0:
			slot = s
		case s != slot:
			if !whole {
				return slot, true
			}
			return slot, false
		}
	}
}

// subCommand is the part of a split command for one slot.
type subCommand struct {
	cmd  []byte  // encoded: the command's name and the slot's keys
	slot int     // the slot of its keys
	keys []int32 // the index among the command's keys of each of its keys, in order
}

// splitBySlot cuts cmd, a splittable command whose keys are in several
// slots (see sharedSlot), into one sub-command per slot, in the order of
// their slots. The sub-commands share one buffer. It returns nil for a
// command whose words cannot all be read.
func splitBySlot(ci *commandInfo, cmd []byte) []subCommand {
	ws, _ := newWords(cmd)
	n, first, step := ws.n, ci.FirstKey, max(ci.Step, 1)
	nkeys := (n - first) / step
	// order holds each key's slot and index, packed so that sorting them
	// puts the keys in the order of their slots and, within a slot, in
	// the caller's; at, where each key's group of words begins in cmd,
	// and the end of the last.
	scratch := make([]uint64, 2*nkeys+1)
	order, at := scratch[:nkeys], scratch[nkeys:]
	hdr, prefixEnd := ws.p, 0
	for i := 0; i < n; i++ {
		p := ws.p
		w, ok := ws.next()
		if !ok {
			return nil
		}
		switch {
		case i == first:
			prefixEnd = p
			fallthrough
		case i > first && (i-first)%step == 0:
			k := (i - first) / step
			order[k] = uint64(hashslot.SlotBytes(w))<<32 | uint64(k)
			at[k] = uint64(p)
		}
	}
	at[nkeys] = uint64(ws.p)
	slices.Sort(order)
	parts := 1
	for k := 1; k < nkeys; k++ {
		if order[k]>>32 != order[k-1]>>32 {
			parts++
		}
	}
	prefix := cmd[hdr:prefixEnd] // the name and any words before the keys
	keys := make([]int32, nkeys)
	for k, o := range order {
		keys[k] = int32(uint32(o))
	}
	// An array header takes at most 13 bytes.
	buf := make([]byte, 0, len(cmd)+parts*(len(prefix)+13))
	subs := make([]subCommand, 0, parts)
	for lo := 0; lo < nkeys; {
		slot := order[lo] >> 32
		hi := lo + 1
		for hi < nkeys && order[hi]>>32 == slot {
			hi++
		}
		begin := len(buf)
		buf = resp.AppendArrayLen(buf, first+(hi-lo)*step)
		buf = append(buf, prefix...)
		for _, k := range keys[lo:hi] {
			buf = append(buf, cmd[at[k]:at[k+1]]...)
		}
		subs = append(subs, subCommand{cmd: buf[begin:len(buf):len(buf)], slot: int(slot), keys: keys[lo:hi:hi]})
		lo = hi
	}
	return subs
}

// appendMultiKeyLegs appends to legs those of command i of a plain
// pipeline, a splittable command encoded as cmd: one leg when its keys
// share a slot, else one leg per slot carrying its sub-command. The
// caller holds r.mu for reading.
func (r *clusterRouter) appendMultiKeyLegs(legs []leg, i int, ci *commandInfo, cmd []byte) []leg {
	slot, shared := sharedSlot(ci, cmd)
	var subs []subCommand
	if !shared {
		subs = splitBySlot(ci, cmd)
	}
	if subs == nil {
		return append(legs, leg{cmd: i, at: len(legs), slot: slot, node: r.ownerLocked(slot)})
	}
	if cap(legs)-len(legs) < len(subs) {
		// From the pools, which legs came from (see execPlain).
		grown := append(legPools.Take(2*len(legs)+len(subs)), legs...)
		clear(legs)
		legPools.Recycle(legs)
		legs = grown
	}
	for k := range subs {
		s := &subs[k]
		legs = append(legs, leg{cmd: i, at: len(legs), slot: s.slot, node: r.ownerLocked(s.slot), sub: s})
	}
	return legs
}

// legBytes returns what a leg sends: its sub-command, or its whole
// command, found in buf by offs.
func legBytes(buf []byte, offs []int, l *leg) []byte {
	if l.sub != nil {
		return l.sub.cmd
	}
	return buf[offs[l.cmd]:offs[l.cmd+1]]
}

// runSplit runs one command whose keys are in several slots as a plain
// pipeline of its sub-commands, so that each follows redirections as the
// commands of a pipeline do.
func (r *clusterRouter) runSplit(ctx context.Context, w *cmdBuf, ci *commandInfo) (Value, error) {
	// A stand-in pipeline of the one command; it has no client, so it
	// neither decodes (the caller does) nor reports the reply's error.
	p := &Pipeline{errorsInReplies: true}
	p.w.buf, p.w.cmds = w.buf, w.cmds[:1]
	replies, err := r.execPlain(ctx, p, batchTraits{readonly: ci.has(flagReadonly)})
	if err == nil {
		return replies[0], nil
	}
	var ce *CommandError
	if replies != nil && errors.As(err, &ce) {
		// Out of redirections: a write some parts of which ran says so,
		// anything else gives up as an unsplit command does. The
		// stand-in pipeline's word that other commands ran is of the
		// parts of this one command: a read's, which changed nothing,
		// or none.
		var ue *uncertainError
		if e := replies[0].Err(); errors.As(e, &ue) {
			return Value{}, e
		}
		if u, ok := ce.Err.(*uncertainError); ok {
			return Value{}, u.err
		}
		return Value{}, ce.Err
	}
	return Value{}, err
}

// joinSplit makes the reply of a split command, ci, from those of its
// legs, all of them in the order they were made, and vals, their replies.
// A leg that did not get through has as its reply a redirection, an
// error of unknown outcome (its node failed while it was in flight), or
// nothing, and gaveUp, if not nil, is why.
//
// When a part failed: a read, or a write none of whose parts ran, has
// that part's error as its reply, as the command would on one node. A
// write other parts of which ran has an error that names the failed part
// and says the others ran; OutcomeOf reports OutcomeUnknown for it, since
// a caller who took it as not applied and ran the command again would
// apply those parts twice (MSET) or count differently (DEL).
func joinSplit(ci *commandInfo, legs []leg, vals []resp.Value, gaveUp error) resp.Value {
	failed := -1
	succeeded := 0
	for k := range legs {
		if !legs[k].done || vals[k].Kind == 0 || isErrValue(vals[k]) {
			if failed < 0 || mayHaveRunFirst(vals, k, failed) {
				failed = k
			}
			continue
		}
		succeeded++
	}
	others := len(legs) - succeeded - 1 // failed parts but the first
	if failed >= 0 {
		v, cause := vals[failed], error(nil)
		if !legs[failed].done && gaveUp != nil {
			cause = gaveUp
		}
		if v.Kind == 0 || !isErrValue(v) {
			if cause == nil {
				cause = errors.New("redpipe: no reply")
			}
			v = madeErrorValue(cause)
		}
		if succeeded == 0 || ci.has(flagReadonly) {
			return v
		}
		if cause == nil {
			cause = Value{v}.replyErr()
		}
		return madeErrorValue(&uncertainError{msg: partFailure(ci, &legs[failed], succeeded, others), err: cause})
	}
	switch ci.ResponsePolicy {
	case responseAggSum:
		sum := int64(0)
		for _, v := range vals {
			if v.Kind != resp.Integer {
				return madeErrorValue(fmt.Errorf("redpipe: %s: a part replied with a %s, not an integer", ci.Name, v.Kind))
			}
			sum += v.Int
		}
		return resp.Value{Kind: resp.Integer, Int: sum}
	case responseDefault:
		// MGET: every part's values in the places of their keys.
		total := 0
		for k := range legs {
			total += len(legs[k].sub.keys)
		}
		elems := make([]resp.Value, total)
		for k := range legs {
			v, keys := vals[k], legs[k].sub.keys
			if v.Kind != resp.Array || len(v.Elems) != len(keys) {
				return madeErrorValue(fmt.Errorf("redpipe: %s: a part of %d keys replied with a %s of %d elements", ci.Name, len(keys), v.Kind, len(v.Elems)))
			}
			for j, key := range keys {
				elems[key] = v.Elems[j]
			}
		}
		return resp.Value{Kind: resp.Array, Elems: elems}
	}
	// all_succeeded (MSET): every part said OK.
	return vals[0]
}

// mayHaveRunFirst tells whether the failed leg k is to be told of before
// the one chosen so far, chosen: k may have run (its part failed in
// flight), chosen did not. Reported first, a leg that did not run would
// have its command read as not applied, or not sent, when part of it may
// have run.
func mayHaveRunFirst(vals []resp.Value, k, chosen int) bool {
	maybe := func(v resp.Value) bool { return v.Kind != 0 && mayHaveRun(Value{v}) }
	return maybe(vals[k]) && !maybe(vals[chosen])
}

// joinSplits puts in replies the joined reply of every split command of
// a pipeline that ran out of redirections, from its legs and vals, their
// replies; gaveUp says why its stuck legs did not get through.
func joinSplits(p *Pipeline, legs []leg, vals []resp.Value, replies []Value, gaveUp error) {
	for i := 0; i < len(legs); {
		j := i + 1
		for j < len(legs) && legs[j].cmd == legs[i].cmd {
			j++
		}
		if legs[i].sub != nil {
			replies[legs[i].cmd] = Value{joinSplit(p.w.cmds[legs[i].cmd].info(), legs[i:j], vals[i:j], gaveUp)}
		}
		i = j
	}
}

// partFailure describes the failed part of a write split by slot, l, the
// first of others+1 that failed.
func partFailure(ci *commandInfo, l *leg, succeeded, others int) string {
	var b strings.Builder
	b.WriteString("redpipe: ")
	b.WriteString(ci.Name)
	b.WriteString(" was split by slot; its part for slot ")
	b.WriteString(strconv.Itoa(l.slot))
	b.WriteString(" (")
	const named = 3
	step := max(ci.Step, 1)
	ws, _ := newWords(l.sub.cmd)
	for i := 0; i < ws.n; i++ {
		w, ok := ws.next()
		if !ok {
			break
		}
		k := (i - ci.FirstKey) / step
		if i < ci.FirstKey || (i-ci.FirstKey)%step != 0 || k >= named {
			continue
		}
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(string(w)))
	}
	if n := len(l.sub.keys); n > named {
		fmt.Fprintf(&b, " and %d more", n-named)
	}
	b.WriteString(")")
	if l.node != nil {
		b.WriteString(" on ")
		b.WriteString(l.node.opt.Addr)
	}
	b.WriteString(" failed")
	if others > 0 {
		fmt.Fprintf(&b, ", as did %d more", others)
	}
	fmt.Fprintf(&b, ", while %d other part", succeeded)
	if succeeded > 1 {
		b.WriteString("s")
	}
	b.WriteString(" ran")
	return b.String()
}
