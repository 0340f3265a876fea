package redpipe

import (
	"context"
	"sync/atomic"

	"github.com/redpipe/redpipe/internal/conn"
)

// earlyPart is how many bytes of a node's commands a large plain pipeline
// routes before it sends them (see earlyParts).
const earlyPart = 16 << 10

// earlyParts sends the first round of a large plain pipeline while it is
// being routed: once a node's routed commands reach earlyPart bytes they
// go out as a part of their own, so the nodes work while the client routes
// the rest instead of waiting for all of it. Every part of a node goes on
// the connection its first one went on, one after the other, so the
// commands of a slot keep their order on the wire; a failed part and
// those after it are sent again in that order too (see awaitParts).
//
// The legs of a part are kept as indices until the routing is done,
// since the slice of legs may still grow and move.
type earlyParts struct {
	ctx    context.Context
	p      *Pipeline
	buf    []byte
	offs   []int
	traits batchTraits

	nodes []*earlyNode
	last  *earlyNode
	sent  []earlySent
	tmp   []*leg // scratch for encoding a part
}

// earlySends counts the parts sent early, and beforeEarlySend, when set,
// runs before each is handed to its connection, with how many of its
// node's went before it: for tests.
var (
	earlySends      atomic.Int64
	beforeEarlySend func(node *Client, n int)
)

// earlyNode is the legs routed to one node and not yet sent.
type earlyNode struct {
	node  *Client
	cn    *conn.Conn // the connection of the node's parts, once one is sent
	off   bool       // the node had no live connection: its legs go with the round's rest
	legs  []int32
	size  int
	parts int // sent so far
}

// earlySent is a part sent early, with the indices of its legs.
type earlySent struct {
	pt   *part
	legs []int32
}

// streamsEarlyLocked tells whether a plain pipeline's first round goes out while
// it is routed: a pipeline several early parts long, for a cluster of
// several masters, read from masters only (replica reads are chosen once
// every command is routed), of commands that neither block nor need
// scripts loaded first, and none of which routing could refuse for keys
// in several slots, since that refusal promises that nothing was sent.
// r.mu is held, for the masters.
func (r *clusterRouter) streamsEarlyLocked(p *Pipeline, traits batchTraits) bool {
	return !r.opt.ReadFromReplicas && len(p.scripts) == 0 && !traits.blocking && !p.w.keysSpan &&
		len(p.w.buf) >= 4*earlyPart && len(r.masters) > 1
}

// add takes the legs from index from on, routed; it sends a node's part
// once it is large enough.
func (e *earlyParts) add(legs []leg, from int) {
	for j := from; j < len(legs); j++ {
		l := &legs[j]
		if l.node == nil {
			continue // no owner known yet: it waits for a refresh with the rest
		}
		en := e.of(l.node)
		if en.off {
			continue
		}
		en.legs = append(en.legs, int32(j))
		en.size += len(legBytes(e.buf, e.offs, l))
		if en.size >= earlyPart {
			e.send(en, legs, true)
		}
	}
}

// of returns the state of node, made if new.
func (e *earlyParts) of(node *Client) *earlyNode {
	if e.last != nil && e.last.node == node {
		return e.last
	}
	var en *earlyNode
	for _, x := range e.nodes {
		if x.node == node {
			en = x
			break
		}
	}
	if en == nil {
		en = &earlyNode{node: node}
		e.nodes = append(e.nodes, en)
	}
	e.last = en
	return en
}

// send sends the legs routed to en since its last part, quiet or not
// (see startPart). The first part of a node takes its shared connection,
// if it has a live one; if not, the node's legs go with the rest of the
// round.
func (e *earlyParts) send(en *earlyNode, legs []leg, quiet bool) {
	if en.cn == nil {
		if en.cn = en.node.liveShared(); en.cn == nil {
			en.off, en.legs, en.size = true, nil, 0
			return
		}
	}
	e.tmp = e.tmp[:0]
	for _, j := range en.legs {
		e.tmp = append(e.tmp, &legs[j])
	}
	pt := &part{node: en.node, legs: e.tmp}
	encodePart(e.p, e.buf, e.offs, pt, e.traits, false)
	pt.legs = nil // pointers into a slice that may yet move
	clear(e.tmp)
	if beforeEarlySend != nil {
		beforeEarlySend(en.node, en.parts)
	}
	startPart(e.ctx, pt, en.cn, quiet)
	pt.inline, pt.early = true, true
	e.sent = append(e.sent, earlySent{pt: pt, legs: en.legs})
	en.legs, en.size = make([]int32, 0, cap(en.legs)), 0
	en.parts++
	earlySends.Add(1)
}

// round sends what is left of every node's legs as a last early part,
// on the node's connection, and returns the first round: the early
// parts, then those of the legs that had no node or whose node had no
// live connection, made and sent as sendParts does. send is every leg, in
// order, and scratch as long. If those legs cannot be sent (no node
// serves their slot before ctx ends), the round still holds the early
// parts, to be waited for: sent is the legs in the round, and err says
// why the others were not sent.
func (e *earlyParts) round(r *clusterRouter, legs []leg, send, scratch []*leg) (rd *round, sent []*leg, err error) {
	// The round polls for the last part sent, and for the last of the
	// rest's parts if there are any: the others are quiet.
	last := -1
	for i, en := range e.nodes {
		if !en.off && len(en.legs) > 0 {
			last = i
		}
	}
	for i, en := range e.nodes {
		if !en.off && len(en.legs) > 0 {
			e.send(en, legs, i != last)
		}
	}
	early := make([]bool, len(legs))
	rd = &round{parts: make([]*part, 0, len(e.sent)+len(e.nodes))}
	k := 0
	for _, s := range e.sent {
		pt := s.pt
		pt.index = uint16(len(rd.parts))
		pt.legs = scratch[k : k : k+len(s.legs)]
		k += len(s.legs)
		for _, j := range s.legs {
			l := &legs[j]
			pt.legs = append(pt.legs, l)
			l.part = pt.index
			early[j] = true
		}
		rd.parts = append(rd.parts, pt)
	}
	if k == len(send) {
		return rd, send, nil
	}
	rest := scratch[k:k]
	for _, l := range send {
		if !early[l.at] {
			rest = append(rest, l)
		}
	}
	// The rest's parts need scratch of their own for their lists of legs.
	more := make([]*leg, len(rest))
	if err := r.sendPartsTo(e.ctx, rd, e.p, e.buf, e.offs, rest, more, e.traits); err != nil {
		// Only the legs sent early are in the round.
		sent := make([]*leg, 0, k)
		for _, l := range send {
			if early[l.at] {
				sent = append(sent, l)
			}
		}
		return rd, sent, err
	}
	return rd, send, nil
}
