package redpipe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
)

// A Stream on a cluster Client routes every command it takes from its
// queue by the slot of its keys, as a plain pipeline does, but a pass at a
// time: once the queue holds about a chunk per master, it is split by
// node, and each node's share goes to that node's connection (one
// dedicated connection per node, for the whole stream) at once, so that
// every master works while the caller goes on queueing. The replies come
// back from each node at its own pace and are handed to each in the
// stream's order, which holds back those of a fast node until a slower
// one has answered what came before.
//
// What it keeps, all on the caller's goroutine (a cluster stream starts no
// goroutine of its own): the window, every command taken from the queue
// whose reply has not yet been handed to each, with its reply once it has
// come; and every such command's encoding until its reply has come, so
// that a redirected command can be sent again. The window is bounded (see
// streamWindowCmds): once full, the queuing call waits, within the
// stream's context, for the oldest replies.
//
// The order of a slot. Commands of one slot are written to one
// connection in their order, and a connection runs them in that order. A
// redirection breaks that: once slot S has moved from A to B, the
// commands of S still in flight on A will come back MOVED one by one, and
// a new command of S sent to B at once would overtake them. So a command
// of S goes out only when every earlier command of S has either been
// answered or been written before it to the same connection. Concretely,
// per slot: the commands in flight and the node they are on
// (slotFlight), and the commands held back (heldSlot), in the stream's
// order. A command is held when its slot already has held commands, or
// when commands of the slot are in flight on another node than the one it
// would go to (a redirection, or a refresh of the layout, changed the
// slot's owner). A redirected command (MOVED, ASK, TRYAGAIN, CLUSTERDOWN)
// is held too, in its place by index. Held commands go out only when none
// of their slot is in flight, in order, as many of them as go to the same
// node (the first of them's) and none behind one sent again for TRYAGAIN
// or CLUSTERDOWN, which may be refused again, nor that one before its
// backoff is over; the rest wait for those to be answered. So a
// command never runs before an earlier command of its slot that the
// cluster will run at all, except as the server itself decides within a
// migrating slot: there a command behind one that was refused (ASK for a
// key already moved, TRYAGAIN for a multi-key command whose keys are split
// between the nodes) runs if it was already on its way and the source
// still holds its keys. The refused command is then not sent again if
// that later one shares a key with it: it keeps its redirection as its
// reply, and nothing of it runs (see overtake), as in a pipeline. So
// commands on one key keep their order even then. Nor is a command that
// MOVED or ASK sent back sent again to a node that a later command for
// every master touching keys (FLUSHALL, DBSIZE...) went to first: it too
// keeps its redirection as its reply (see barred). (A slot that leaves a
// node and comes back to it is the other case; see poll.)
//
// An ASK is followed at once or not at all. The command goes to the
// node named, after ASKING, in the release that follows the reading of
// its reply (see release), or never: one that has to wait there (held
// behind an earlier command of its slot, or behind a pause: a backoff or
// a refresh of the layout) forgets the ASK and goes to the slot's owner
// by the map once it may go, to be redirected afresh if its key is still
// on the target. ASKING makes a node that imports a slot take a command
// on any key of it, whether or not the source still holds the key; after
// a wait, the migration the ASK was about may be over and another one to
// the same node under way, and the command would make a second copy of a
// key the source still holds. Nor does an ASK wait for the later
// commands of its slot still on their way to the source (in a busy
// stream there always are some, and the command would go back to the
// source and be redirected again until it ran out of redirections): it
// goes at once, and the slot's next commands wait for both (see
// slotFlight). That changes no order: those later commands were written
// before the ASK was read, and run on the source, or not, whatever
// becomes of it. A backoff holds back only the commands of its slot from
// the one that waits for it on: the rest of the stream goes on
// meanwhile.
//
// Multi-key commands whose keys are in several slots (MGET, MSET, DEL,
// EXISTS ...) are split by slot as in a pipeline (cluster_multikey.go):
// each part is a command of its slot for all of the above, and the
// command's reply is the parts' joined once the last has come.
//
// Failures. A connection that fails, or a wait that the context ends,
// stops the stream as it stops a single-node one: the commands in flight
// may or may not have run, so nothing is sent again, and the error's
// outcome is unknown once anything was written. Only that node is given
// up (see await): each of its commands in flight gets an error reply of
// unknown outcome, while the other nodes' replies are still taken in,
// and each gets them all in the stream's order, up to the last command
// written, those that were not sent with an error reply that says so
// (see settleUnsent). A node that cannot be
// reached before anything was written to it (a refused dial) refreshes
// the layout, and its commands go where the new layout says, as a
// redirection; a command for every master goes to the master that took
// the place of one that died (see refan). So does one that a master
// refused with READONLY, which runs nothing: a failover made that node a
// replica (see refanDemoted). Such a leg goes in the stream's order among
// the commands released with it, or not at all (see refan). A command
// redirected more than ClusterOptions.MaxRedirects times (or retried on
// TRYAGAIN and CLUSTERDOWN more than a few dozen) stops the stream with a
// *CommandError naming it: going on without it would run later commands
// of its slot before it.

// streamWindowCmds bounds the window of a cluster stream in commands;
// its commands' encodings are bounded too, to four passes (see
// clusterStream.flushAt). Past either, the queuing call waits for the
// oldest replies. Why 16Ki: a few passes of small commands over three
// masters, enough to keep each busy while the caller encodes; the window
// costs about 100 bytes a command besides the replies.
const streamWindowCmds = 16 << 10

// clusterFlushMax bounds the queue a cluster stream gathers before a
// pass: streamChunk per master, so that each gets about a chunk, up to
// this.
const clusterFlushMax = 1 << 20

// clusterStream is the cluster half of a Stream. Owned by the Stream's
// caller, as the Stream is.
type clusterStream struct {
	s *Stream
	r *clusterRouter

	flushAt int        // queued bytes that start a pass; 0 until the layout is known
	maxKept int        // the bound on kept
	grace   conn.Grace // the longest grace of the blocking commands queued

	nodes map[*Client]*streamNode
	list  []*streamNode // the nodes in the order first used; a node's id is its index + 1

	// The window is a ring of count commands from win[head], whose
	// length is a power of two, grown when full.
	win   []streamCmd
	head  int
	count int
	done  int // commands handed to each: the index of win[head]
	kept  int // encoded bytes of the commands of the window not yet answered

	flight  []slotFlight         // per slot; made with the first pass
	held    map[int]*heldSlot    // slots with held commands; -1 for keyless ones
	fans    map[int][]resp.Value // the replies so far of commands for every master, by index
	fanTo   map[int][]*Client    // the masters that commands for every master not yet answered go to, by index
	demoted []fanLeg             // legs of commands for every master refused with READONLY, for the next release to place
	refans  []fanLeg             // legs of commands for every master to place, the layout refreshed (see refan)
	splits  map[int]*splitCmd    // the commands split by slot, by index
	touched []int                // slots whose held commands may be free to go
	asked   []int                // slots whose held commands follow an ASK just read
	waiting []int                // slots whose held commands wait for the end of a backoff
	gen     int                  // releases so far

	offs    []int                // scratch of take: the bounds of the queued commands
	slotsOf []int                // scratch of take: their slots, or slotFan or slotSplit
	subsOf  map[int][]subCommand // scratch of take: the parts of the commands split
	free    []*nodeChunk

	written  int   // commands written at least once
	stopped  error // what stopped the stream, before fail said that commands were sent
	draining bool  // finishing: replies are taken as they come, none is sent again
	busy     bool  // in a pass, which each may be called from

	redirected streamRedirects // for tests
}

// streamRedirects counts what a cluster stream met.
type streamRedirects struct{ moved, ask, again, unreached, overtaken int }

// streamCmd is one command of the window. The window holds thousands,
// so it is kept small.
type streamCmd struct {
	reply     resp.Value
	ch        *nodeChunk // the chunk it is in flight in; nil when it is not
	slot      int32      // -1 for none
	size      int32      // encoded bytes (a command is at most 512 MiB)
	meta      cmdMeta
	legs      int32 // replies still due of a command for every master, or split by slot
	redirects int32 // MOVED, ASK and unreachable nodes so far
	tries     int16 // TRYAGAIN and CLUSTERDOWN so far
	written   bool
	final     bool // reply is its answer
}

// slotFlight is how many commands of a slot are in flight, and on which
// nodes (their ids): node, and ask, the node that commands redirected by
// ASK were sent to at once while later commands of the slot were still
// on node (0 for none). While ask is set, the slot's next commands are
// held, as they are while its commands are on another node than the
// owner: they wait for both.
type slotFlight struct {
	n    int32
	node int32
	ask  int32
}

// heldSlot is the held commands of a slot, in the stream's order.
type heldSlot struct {
	cmds    []heldCmd
	after   time.Time // the end of the backoff their TRYAGAIN and CLUSTERDOWN replies call for
	asked   bool      // some follow an ASK just read: the slot is in clusterStream.asked
	waiting bool      // some wait for the end of the backoff: the slot is in clusterStream.waiting
	gen     int       // the last release that went through them
}

// heldCmd is a command held back (or the part of one split by slot): its
// index, its encoding, and the node an ASK just sent it to, which it is
// sent to, after ASKING, by the release that follows the reading of the
// ASK, or never (see the rule of an ASK). again marks one that is sent
// again for TRYAGAIN or CLUSTERDOWN: the server may refuse it once more,
// so nothing of its slot goes out behind it until it has been answered.
type heldCmd struct {
	i       int
	leg     int // the part of a command split by slot; -1 for a whole command
	b       []byte
	ask     *Client
	again   bool
	refusal string // the redirection that sent it back; "" for one not written
}

// splitCmd is a multi-key command whose keys are in several slots, split
// into one part per slot (see splitBySlot), each sent, redirected and
// answered as a command of its own; its reply is theirs joined (see
// joinSplit) once the last has come.
type splitCmd struct{ legs []splitLeg }

// splitLeg is one part of a splitCmd.
type splitLeg struct {
	sub       subCommand
	reply     resp.Value
	node      *Client // the node that answered it
	done      bool
	redirects int32
	tries     int16
}

// streamNode is one node's part of a cluster stream.
type streamNode struct {
	c        *Client
	id       int32
	d        *dedicated   // its connection, dialed when first written to
	inflight []*nodeChunk // written, not yet answered; oldest first
	out      *nodeChunk   // being filled by a pass
	broken   bool         // its connection failed, or a wait on it ended: replies may be unread
	cause    error        // why it broke
	wrote    int          // 1 + the greatest index of a command written to it; 0 for none
	mark     int          // the commands of out when the release under way began (see refan)
	markLast int          // 1 + the greatest index of a command written to it or in out then
	fanned   int          // 1 + the greatest index of a command for every master that touches keys put to it; 0 for none
	wroteFan int          // fanned, of the commands written to it
}

// nodeChunk is what one node gets in one pass.
type nodeChunk struct {
	node    *streamNode
	pending conn.Pending
	buf     []byte
	cmds    []chunkCmd
	asks    int // ASKING and ROLE commands in buf, each with a reply of its own
	replies []resp.Value
	sent    time.Time // when it was handed to the connection
}

// askFreshFor is how old an ASK may be and still be followed. A stream
// reads its replies only when the caller queues or closes, so an ASK may
// be read long after the server sent it; by then the migration may have
// ended and another begun, with the named node importing the slot again
// while the key still lives on its source, and ASKING there would make a
// second copy of the key. A stale ASK is not followed: the command goes
// to the slot's owner by the map and meets a fresh redirection there.
const askFreshFor = 100 * time.Millisecond

// chunkCmd is one command of a chunk, or a part of one split by slot: its
// index and where it is in buf.
type chunkCmd struct {
	i          int
	leg        int // the part; -1 for a whole command
	start, end int
	asking     bool // after ASKING
	role       bool // after ROLE: a leg of a command for every master (see putFan)
}

// streamStore is what a cluster stream allocates in proportion to its
// window, kept for the next stream: bulk loads tend to come one after
// another, and making it again (the window's ring is some MiB) would cost
// as much as the rest of a stream of a few hundred thousand commands.
type streamStore struct {
	win    []streamCmd
	flight []slotFlight
	free   []*nodeChunk
}

var streamStores sync.Pool // of *streamStore

// fansOut tells a command that goes to every master.
func fansOut(ci *commandInfo) bool {
	return ci.RequestPolicy == requestAllShards || ci.RequestPolicy == requestAllNodes
}

// firstFanOut returns the index of the first of cmds that goes to every
// master, -1 for none.
func firstFanOut(cmds []cmdMeta) int {
	for i := range cmds {
		if fansOut(cmds[i].info()) {
			return i
		}
	}
	return -1
}

// What take finds in place of a slot for a command that goes to every
// master, or that is split by slot.
const (
	slotFan   = -2
	slotSplit = -3
)

// flush routes what is queued and writes it, once the queue holds flushAt
// bytes, or now when all is set (Close); then, while the window is full,
// it waits for the oldest replies and hands them out.
func (cs *clusterStream) flush(ctx context.Context, all bool) {
	s := cs.s
	w := &s.p.w
	if cs.busy {
		// A command queued by each, from within a pass: it goes with the
		// next one.
		return
	}
	if s.closed || s.err != nil || len(w.cmds) == 0 && w.err == nil {
		s.drop() // what is queued after Close or a failure is dropped; Close or Err says so
		return
	}
	if cs.flushAt == 0 {
		if err := cs.start(ctx); err != nil {
			cs.fail(err)
			w.reset()
			return
		}
	}
	if !all && len(w.buf) < cs.flushAt {
		return
	}
	prev := cs.busy
	cs.busy = true
	defer func() { cs.busy = prev }()
	if err := s.p.refusal(); err != nil {
		cs.fail(err)
		w.reset()
		return
	}
	taken := cs.take(ctx)
	// The chunks and the held commands have their own copies.
	w.reset()
	if !taken {
		return
	}
	cs.release(ctx)
	cs.writeOut(ctx)
	for s.err == nil && cs.over() {
		cs.progress(ctx)
	}
	cs.deliver()
}

// start loads the layout, if no call has yet, and sizes the stream by the
// number of masters.
func (cs *clusterStream) start(ctx context.Context) error {
	r := cs.r
	if err := r.ready(ctx); err != nil {
		return err
	}
	r.mu.RLock()
	n := len(r.masters)
	r.mu.RUnlock()
	cs.flushAt = min(max(n, 1)*streamChunk, clusterFlushMax)
	cs.maxKept = 4 * cs.flushAt
	if st, ok := streamStores.Get().(*streamStore); ok {
		cs.win, cs.flight, cs.free = st.win, st.flight, st.free
	} else {
		cs.flight = make([]slotFlight, hashslot.Count)
	}
	cs.held = map[int]*heldSlot{}
	cs.nodes = map[*Client]*streamNode{}
	return nil
}

// over tells a window past its bounds.
func (cs *clusterStream) over() bool {
	return cs.count > 0 && (cs.count > streamWindowCmds || cs.kept > cs.maxKept)
}

// fail makes err the stream's error, unless it has one. Once a command
// was written, part of the stream has run, whatever err itself says.
func (cs *clusterStream) fail(err error) {
	s := cs.s
	if s.err != nil {
		return
	}
	cs.stopped = err
	if cs.written > 0 {
		err = &uncertainError{msg: "redpipe: stream stopped after " + plural(cs.written, "command was sent", "commands were sent"), err: err}
	}
	s.err = err
}

// take moves the queued commands into the window and places each (or
// each of its parts, for one split by slot): in the chunk of the node
// that serves its slot, or among its slot's held commands. A command that
// cannot be routed (keys in different slots, and not split) stops the
// stream before any command of the queue is placed. The replies
// already in are taken in first (see poll).
func (cs *clusterStream) take(ctx context.Context) bool {
	s, w := cs.s, &cs.s.p.w
	n := len(w.cmds)
	offs := append(cs.offs[:0], 0)
	slots := cs.slotsOf[:0]
	for k := 0; k < n; k++ {
		ci := w.cmds[k].info()
		end := cmdEnd(w.buf, offs[k])
		offs = append(offs, end)
		cmd := w.buf[offs[k]:end]
		slot := slotFan
		if err := oneServerCommand(ci); err != nil {
			clear(cs.subsOf)
			cs.fail(&CommandError{Index: s.sent + k, Command: ci.Name, In: "stream", Err: err})
			return false
		}
		switch {
		case fansOut(ci):
			// Refreshed first when some master gives no address: it may
			// have one since, and nothing else may refresh the layout.
			if err := cs.r.everyMasterAddressed(ctx); err != nil {
				clear(cs.subsOf)
				cs.fail(&CommandError{Index: s.sent + k, Command: ci.Name, In: "stream", Err: err})
				return false
			}
		case splittable(ci):
			var shared bool
			if slot, shared = sharedSlot(ci, cmd); !shared {
				if subs := splitBySlot(ci, cmd); subs != nil {
					if cs.subsOf == nil {
						cs.subsOf = map[int][]subCommand{}
					}
					cs.subsOf[k], slot = subs, slotSplit
				}
			}
		default:
			var err error
			if slot, err = streamSlot(ci, cmd); err != nil {
				clear(cs.subsOf)
				cs.fail(&CommandError{Index: s.sent + k, Command: ci.Name, In: "stream", Err: err})
				return false
			}
		}
		slots = append(slots, slot)
	}
	cs.offs, cs.slotsOf = offs, slots
	cs.grace = longerGrace(cs.grace, w.grace)
	if cs.poll(ctx); s.err != nil {
		clear(cs.subsOf)
		return false
	}
	r := cs.r
	r.mu.RLock()
	defer r.mu.RUnlock()
	for k := 0; k < n; k++ {
		i := s.sent + k
		b := w.buf[offs[k]:offs[k+1]]
		slot := slots[k]
		cs.push(streamCmd{slot: int32(max(slot, -1)), size: int32(len(b)), meta: w.cmds[k]})
		cs.kept += len(b)
		switch {
		case slot == slotFan && len(r.masters) > 0:
			if cs.fanTo == nil {
				cs.fanTo = map[int][]*Client{}
			}
			cs.fanTo[i] = r.masters // never changed in place: a refresh makes a new one
			for _, m := range r.masters {
				cs.putFan(cs.node(m), i, b)
				cs.entry(i).legs++
			}
		case slot == slotSplit:
			subs := cs.subsOf[k]
			sc := &splitCmd{legs: make([]splitLeg, len(subs))}
			if cs.splits == nil {
				cs.splits = map[int]*splitCmd{}
			}
			cs.splits[i] = sc
			cs.entry(i).legs = int32(len(subs))
			for leg := range subs {
				sc.legs[leg].sub = subs[leg]
				// The part's encoding is its own: held, it needs no copy.
				cs.place(i, leg, subs[leg].slot, subs[leg].cmd, false, r.ownerLocked(subs[leg].slot))
			}
		default:
			slot = max(slot, -1)
			cs.place(i, -1, slot, b, true, r.ownerLocked(slot))
		}
	}
	clear(cs.subsOf)
	s.sent += n
	return true
}

// streamSlot is commandSlot for a command of a stream, without the cost
// of naming it for an error in the common case of one key.
func streamSlot(ci *commandInfo, cmd []byte) (int, error) {
	var pos [8]int
	if keys, st := commandKeys(pos[:0], ci, cmd); st == keysFound && len(keys) <= 1 {
		if len(keys) == 0 {
			if ci.has(flagSlotArg) {
				return slotArg(ci, cmd)
			}
			return -1, nil
		}
		if ws, ok := newWords(cmd); ok {
			if w, ok := ws.at(keys[0]); ok {
				return int(hashslot.SlotBytes(w)), nil
			}
		}
	}
	return commandSlot(ci, cmd, "command "+ci.Name)
}

// cmdEnd returns the end of the encoded command that starts at buf[off].
func cmdEnd(buf []byte, off int) int {
	ws, ok := newWords(buf[off:])
	if !ok {
		panic("redpipe: internal: a batch's buffer does not hold its commands")
	}
	for {
		if _, ok := ws.next(); !ok {
			break
		}
	}
	return off + ws.p
}

// place puts new command i (or its part leg), of slot and encoding b, in
// the chunk of owner, the node serving the slot, or holds it back (see
// the order of a slot), with a copy of b when clone is set.
func (cs *clusterStream) place(i, leg, slot int, b []byte, clone bool, owner *Client) {
	var f *slotFlight
	if slot >= 0 {
		f = &cs.flight[slot]
	}
	if owner == nil || f != nil && (cs.held[slot] != nil || f.n > 0 && (f.ask != 0 || cs.list[f.node-1].c != owner)) {
		if clone {
			b = slices.Clone(b)
		}
		cs.hold(slot, heldCmd{i: i, leg: leg, b: b})
		return
	}
	to := cs.node(owner)
	cs.put(to, i, leg, b, false)
	if f != nil {
		f.n++
		f.node, f.ask = to.id, 0
	}
}

// unitSlot returns the slot of command i, or of its part leg.
func (cs *clusterStream) unitSlot(i, leg int) int {
	if leg >= 0 {
		return cs.splits[i].legs[leg].sub.slot
	}
	return int(cs.entry(i).slot)
}

// counters returns the redirections and retries so far of command i, or
// of its part leg.
func (cs *clusterStream) counters(i, leg int) (redirects *int32, tries *int16) {
	if leg >= 0 {
		l := &cs.splits[i].legs[leg]
		return &l.redirects, &l.tries
	}
	e := cs.entry(i)
	return &e.redirects, &e.tries
}

// hold adds h to the held commands of slot, in its place by index.
func (cs *clusterStream) hold(slot int, h heldCmd) *heldSlot {
	hs := cs.held[slot]
	if hs == nil {
		hs = &heldSlot{}
		cs.held[slot] = hs
	}
	k := len(hs.cmds)
	for k > 0 && hs.cmds[k-1].i > h.i {
		k--
	}
	hs.cmds = slices.Insert(hs.cmds, k, h)
	cs.touched = append(cs.touched, slot)
	cs.entry(h.i).ch = nil
	return hs
}

// node returns the stream's part for the node client c.
func (cs *clusterStream) node(c *Client) *streamNode {
	if nd := cs.nodes[c]; nd != nil {
		return nd
	}
	nd := &streamNode{c: c, id: int32(len(cs.list) + 1)}
	cs.nodes[c] = nd
	cs.list = append(cs.list, nd)
	return nd
}

// put appends command i (or its part leg), encoded as b, to the chunk nd
// gets in this pass, after ASKING when asking.
func (cs *clusterStream) put(nd *streamNode, i, leg int, b []byte, asking bool) {
	cs.putAfter(nd, chunkCmd{i: i, leg: leg, asking: asking}, b)
}

// putAfter puts cc, encoded as b, in the chunk of nd, after the ASKING or
// ROLE that cc asks for; that command has a reply of its own.
func (cs *clusterStream) putAfter(nd *streamNode, cc chunkCmd, b []byte) {
	ch := nd.out
	if ch == nil {
		ch = cs.chunk(nd)
		nd.out = ch
	}
	switch {
	case cc.asking:
		ch.buf = append(ch.buf, askingCmd...)
		ch.asks++
	case cc.role:
		ch.buf = append(ch.buf, roleCmd...)
		ch.asks++
	}
	cc.start = len(ch.buf)
	ch.buf = append(ch.buf, b...)
	cc.end = len(ch.buf)
	ch.cmds = append(ch.cmds, cc)
	cs.entry(cc.i).ch = ch
}

// putFan puts the leg of command i, a command for every master encoded as
// b, in the chunk of nd, after ROLE, which tells whether nd still is a
// master (see fanOut), and notes there whether it touches keys (see
// barred).
func (cs *clusterStream) putFan(nd *streamNode, i int, b []byte) {
	cs.putAfter(nd, chunkCmd{i: i, leg: -1, role: true}, b)
	if touchesKeys(cs.entry(i).meta.info()) {
		nd.fanned = max(nd.fanned, i+1)
	}
}

// barred settles the held commands at the front of hs, of a slot that
// owner serves, that MOVED or ASK sent to a node, or that TRYAGAIN or
// CLUSTERDOWN held back for a pause on it, that a later command for every
// master that touches keys (FLUSHALL, DBSIZE, KEYS...) was put to before
// them: sent now, they would run after it, a write surviving a flush
// queued after it, a count missing it. Each keeps its refusal as its
// reply, as in a pipeline (see barriers): nothing of it ran. One never
// written (its node could not be reached, or it waited behind others)
// gets an error reply that says it was not sent.
func (cs *clusterStream) barred(hs *heldSlot, owner *Client) {
	k := 0
	for ; k < len(hs.cmds); k++ {
		h := hs.cmds[k]
		to := cmp.Or(h.ask, owner)
		if to == nil {
			break
		}
		if nd := cs.nodes[to]; nd == nil || nd.fanned <= h.i+1 {
			break
		}
		v := resp.Value{Kind: resp.Error, Str: h.refusal}
		if h.refusal == "" {
			v = madeErrorValue(notSent(fmt.Errorf("redpipe: cluster: not sent to %s, as a later command for every master of the stream went there first", to.opt.Addr)))
		}
		cs.settle(h.i, h.leg, cs.entry(h.i), v, nil)
	}
	clear(hs.cmds[:k])
	hs.cmds = hs.cmds[k:]
}

// chunk returns an empty chunk for nd.
func (cs *clusterStream) chunk(nd *streamNode) *nodeChunk {
	var ch *nodeChunk
	if k := len(cs.free); k > 0 {
		ch, cs.free = cs.free[k-1], cs.free[:k-1]
	} else {
		// A node's share of a pass is about a chunk.
		ch = &nodeChunk{buf: make([]byte, 0, streamChunk+streamChunk/2)}
	}
	ch.node = nd
	return ch
}

// recycle keeps an answered chunk for reuse; one whose buffer grew past a
// few chunks (a huge command) is left to the collector. The chunks kept
// are no more than the window has held at once.
func (cs *clusterStream) recycle(ch *nodeChunk) {
	if cap(ch.buf) > 4*streamChunk {
		return
	}
	clear(ch.replies)
	*ch = nodeChunk{buf: ch.buf[:0], cmds: ch.cmds[:0], replies: ch.replies[:0]}
	cs.free = append(cs.free, ch)
}

// push appends e to the window, growing its ring when full: the ring
// stays within twice the largest window.
func (cs *clusterStream) push(e streamCmd) {
	if cs.count == len(cs.win) {
		w := make([]streamCmd, max(2*len(cs.win), 1<<10))
		n := copy(w, cs.win[cs.head:])
		copy(w[n:], cs.win[:cs.head])
		cs.win, cs.head = w, 0
	}
	cs.win[(cs.head+cs.count)&(len(cs.win)-1)] = e
	cs.count++
}

// entry returns command i of the window.
func (cs *clusterStream) entry(i int) *streamCmd {
	return &cs.win[(cs.head+i-cs.done)&(len(cs.win)-1)]
}

// writeOut writes every node's chunk of the pass. A node that cannot be
// reached, before anything was written to it, refreshes the layout, and
// its commands go back among the held ones, to go where the new layout
// says; the legs of its commands for every master go where refan says.
func (cs *clusterStream) writeOut(ctx context.Context) {
	s := cs.s
	var fan []fanLeg
	for {
		var unreached error
		for _, nd := range cs.list {
			ch := nd.out
			if ch == nil {
				continue
			}
			nd.out = nil
			if s.err != nil {
				cs.drop(ch)
				continue
			}
			if nd.d == nil {
				d, err := nd.c.getDedicated(ctx, lendStream)
				if err != nil {
					if !unreachable(ctx, err) {
						cs.drop(ch)
						cs.fail(fmt.Errorf("redpipe: cluster node %s: %w", nd.c.opt.Addr, err))
						continue
					}
					unreached = err
					cs.redirected.unreached++
					fan = cs.rehold(ch, err, fan)
					// Its commands for every master did not go there
					// before those held back with them.
					nd.fanned = nd.wroteFan
					continue
				}
				nd.d = d
			}
			n := len(ch.cmds) + ch.asks
			if cap(ch.replies) < n {
				ch.replies = make([]resp.Value, n)
			}
			ch.replies = ch.replies[:n]
			ch.sent = time.Now()
			pending, err := nd.d.WithGrace(cs.grace).Start(ctx, ch.buf, ch.replies)
			if err != nil {
				// The chunks before it on this node, and those on the
				// others, are still in line: Close waits for their replies
				// (see drain), at once should the connection have failed.
				cs.drop(ch)
				cs.fail(fmt.Errorf("redpipe: cluster node %s: %w", nd.c.opt.Addr, err))
				continue
			}
			ch.pending = pending
			nd.inflight = append(nd.inflight, ch)
			for _, cc := range ch.cmds {
				if e := cs.entry(cc.i); !e.written {
					e.written = true
					cs.written++
				}
				nd.wrote = max(nd.wrote, cc.i+1)
				if cc.role && touchesKeys(cs.entry(cc.i).meta.info()) {
					nd.wroteFan = max(nd.wroteFan, cc.i+1)
				}
			}
		}
		if unreached == nil || s.err != nil {
			return
		}
		if err := cs.r.awaitRefresh(ctx); err != nil {
			cs.fail(fmt.Errorf("%w (after %w)", err, unreached))
			return
		}
		// Placed by the release, among the held commands (see refan).
		cs.refans = append(cs.refans, fan...)
		clear(fan)
		fan = fan[:0]
		cs.release(ctx)
	}
}

// fanLeg is the leg of command i, a command for every master, encoded as
// b, that the master from did not run: it could not be written to it,
// for cause, or from refused it with refusal, a READONLY reply (zero for
// none).
type fanLeg struct {
	i       int
	b       []byte
	from    *Client
	refusal resp.Value
	cause   error
}

// refan places the legs of commands for every master that their nodes
// did not run (refans), once the layout has been refreshed and the held
// commands released. A leg goes back to its node while that node is a
// master, or, if the node refused it, keeps the refusal as its reply.
// Otherwise (a master that died, whose slots a replica took over, or one
// that a failover made a replica) it goes where a call alone would send
// it (fanOut): to a master of the new layout that no leg of its command
// went to, the replica promoted in its node's place; were every master to
// have one already, the command reaches every master without it, and the
// leg is answered with no reply (see fanVals). So the command runs once
// on each master.
//
// A leg keeps its place in the stream's order on its node: the commands
// this release puts on that node go in the stream's order, the leg among
// them (see sortFrom), so that the commands queued before a flush or a
// script load that the same node redirected, or could not take, still run
// before it there, and those queued after it, after it. A leg that cannot
// keep its place does not go: one of the commands before it that its
// node now serves is not on its way there (held still, or on another
// node, which will redirect it), or one after it went there before this
// release (a MOVED had sent a command of its slot there before the layout
// was refreshed). It keeps its refusal as its reply, or, not written, has
// an error reply that says it was not sent.
func (cs *clusterStream) refan() {
	fan := cs.refans
	defer func() {
		clear(fan)
		cs.refans = fan[:0]
	}()
	if cs.s.err != nil {
		return
	}
	slices.SortStableFunc(fan, func(a, b fanLeg) int { return cmp.Compare(a.i, b.i) })
	r := cs.r
	var sort []*streamNode
	for _, f := range fan {
		r.mu.RLock()
		to, refused := f.from, false
		switch {
		case !slices.Contains(r.masters, to):
			went := slices.DeleteFunc(slices.Clone(cs.fanTo[f.i]), func(m *Client) bool { return m == f.from })
			to = nil
			for _, m := range r.masters {
				if !slices.Contains(went, m) {
					to = m
					went = append(went, m)
					break
				}
			}
			cs.fanTo[f.i] = went
		case f.refusal.Kind != 0:
			refused = true
		}
		r.mu.RUnlock()
		switch {
		case refused:
			cs.fanReply(f.i, cs.entry(f.i), f.refusal)
		case to == nil:
			cs.fanReply(f.i, cs.entry(f.i), resp.Value{})
		case cs.node(to).markLast > f.i+1 || !cs.onTheirWay(f.i, to):
			v := f.refusal
			if v.Kind == 0 {
				where := to.opt.Addr + " again"
				if to != f.from {
					where = to.opt.Addr + ", in place of " + f.from.opt.Addr
				}
				v = madeErrorValue(notSent(fmt.Errorf("redpipe: cluster: not sent to %s, as it could not keep its place there among the commands of the stream: %w", where, f.cause)))
			}
			cs.fanReply(f.i, cs.entry(f.i), v)
		default:
			nd := cs.node(to)
			cs.putFan(nd, f.i, f.b)
			if !slices.Contains(sort, nd) {
				sort = append(sort, nd)
			}
		}
	}
	for _, nd := range sort {
		nd.out.sortFrom(nd.mark)
	}
}

// onTheirWay tells whether every command earlier than command i, not yet
// answered, of a slot that to serves, or that no node serves, is on its
// way to to: in one of its chunks. Commands for every master are placed
// in order (see refan), and keyless ones go to any master; where the
// parts of a command split by slot are is not kept: none may be bound for
// to.
func (cs *clusterStream) onTheirWay(i int, to *Client) bool {
	r := cs.r
	r.mu.RLock()
	defer r.mu.RUnlock()
	bound := func(slot int) bool {
		owner := r.slots[slot]
		return owner == to || owner == nil
	}
	for k := cs.done; k < i; k++ {
		e := cs.entry(k)
		switch {
		case e.final:
		case cs.splits[k] != nil:
			for _, l := range cs.splits[k].legs {
				if !l.done && bound(l.sub.slot) {
					return false
				}
			}
		case e.legs > 0 || e.slot < 0:
		case bound(int(e.slot)) && (e.ch == nil || e.ch.node.c != to):
			return false
		}
	}
	return true
}

// sortFrom puts the commands of ch from the mark-th on in the stream's
// order, each after its ASKING or ROLE; those of one slot are in that
// order already.
func (ch *nodeChunk) sortFrom(mark int) {
	seg := ch.cmds[mark:]
	byIndex := func(a, b chunkCmd) int { return cmp.Compare(a.i, b.i) }
	if slices.IsSortedFunc(seg, byIndex) {
		return
	}
	base := seg[0].start
	switch {
	case seg[0].asking:
		base -= len(askingCmd)
	case seg[0].role:
		base -= len(roleCmd)
	}
	old := slices.Clone(ch.buf[base:])
	sorted := slices.Clone(seg)
	slices.SortStableFunc(sorted, byIndex)
	ch.buf = ch.buf[:base]
	for k, cc := range sorted {
		b := old[cc.start-base : cc.end-base]
		switch {
		case cc.asking:
			ch.buf = append(ch.buf, askingCmd...)
		case cc.role:
			ch.buf = append(ch.buf, roleCmd...)
		}
		cc.start = len(ch.buf)
		ch.buf = append(ch.buf, b...)
		cc.end = len(ch.buf)
		seg[k] = cc
	}
}

// refanDemoted readies for refan the legs that take1 found refused with
// READONLY, once a refresh has told where they now go. A stream that
// failed or is draining sends nothing again: each leg keeps its refusal
// as its reply.
func (cs *clusterStream) refanDemoted(ctx context.Context) {
	fan := cs.demoted
	if cs.s.err == nil && !cs.draining {
		// Waiting for the layout is a pause.
		cs.forgetAsks()
		// Failed, the refresh leaves the layout as it was, and the legs
		// their refusals.
		_ = cs.r.awaitRefresh(ctx)
		cs.refans = append(cs.refans, fan...)
	} else {
		for _, f := range fan {
			cs.fanReply(f.i, cs.entry(f.i), f.refusal)
		}
	}
	clear(fan)
	cs.demoted = fan[:0]
}

// drop forgets a chunk that will not be written: the stream has failed.
func (cs *clusterStream) drop(ch *nodeChunk) {
	for _, cc := range ch.cmds {
		cs.entry(cc.i).ch = nil
	}
	cs.recycle(ch)
}

// rehold puts the commands of a chunk that could not be written back
// among the held ones, each counting a redirection, but for the legs of
// commands for every master, which it appends to fan and returns.
func (cs *clusterStream) rehold(ch *nodeChunk, cause error, fan []fanLeg) []fanLeg {
	for _, cc := range ch.cmds {
		slot := cs.unitSlot(cc.i, cc.leg)
		if slot >= 0 {
			cs.flight[slot].n--
		}
		redirects, tries := cs.counters(cc.i, cc.leg)
		*redirects++
		if int(*redirects) > cs.r.opt.MaxRedirects {
			cs.fail(&CommandError{Index: cc.i, Command: cs.entry(cc.i).meta.Name(), In: "stream", Err: cs.r.gaveUp(int(*redirects)-1, int(*tries), cause)})
		}
		b := slices.Clone(ch.buf[cc.start:cc.end])
		if e := cs.entry(cc.i); cc.leg < 0 && e.legs > 0 {
			if e.ch == ch {
				e.ch = nil
			}
			fan = append(fan, fanLeg{i: cc.i, b: b, from: ch.node.c, cause: cause})
			continue
		}
		cs.hold(slot, heldCmd{i: cc.i, leg: cc.leg, b: b})
	}
	cs.recycle(ch)
	return fan
}

// progress makes the oldest command of the window answered, waiting for
// the chunk it (or what it is held behind) is in, and hands out the
// replies that are then due in order.
func (cs *clusterStream) progress(ctx context.Context) {
	if e := &cs.win[cs.head]; !e.final {
		ch := cs.awaited(cs.done, e)
		if ch == nil {
			// Held with nothing in flight ahead of it: it goes now, or
			// once the backoff it waits for is over.
			var until time.Time
			touch := func(slot int) {
				cs.touched = append(cs.touched, slot)
				if hs := cs.held[slot]; hs != nil && len(hs.cmds) > 0 && hs.cmds[0].again && hs.after.After(until) {
					until = hs.after
				}
			}
			if sc := cs.splits[cs.done]; sc != nil {
				for leg := range sc.legs {
					if !sc.legs[leg].done {
						touch(sc.legs[leg].sub.slot)
					}
				}
			} else {
				touch(int(e.slot))
			}
			if !until.IsZero() {
				if err := sleepUntil(ctx, cs.r.life, until); err != nil {
					cs.fail(err)
					return
				}
			}
			cs.release(ctx)
			cs.writeOut(ctx)
			if cs.s.err == nil && cs.win[cs.head].ch == nil {
				cs.fail(fmt.Errorf("redpipe: internal: stream command %d has nowhere to go", cs.done))
			}
			return
		}
		cs.await(ctx, ch)
		cs.release(ctx)
		cs.writeOut(ctx)
	}
	cs.deliver()
}

// poll takes in the replies of the chunks already answered, without
// waiting for any. Why before every pass: a
// redirection must be known before more of its slot is written behind
// it. A slot that left a node may come back to it (resharding back and
// forth); a command written there behind one that was redirected, and
// not yet seen to be, would then run before it. Taking replies in as they
// come narrows that to a command written within about a round trip of
// the redirection: the slot would have to move away and back again in
// that time, two migrations that each take several round trips between
// the nodes.
func (cs *clusterStream) poll(ctx context.Context) {
	for _, nd := range cs.list {
		for len(nd.inflight) > 0 && nd.inflight[0].pending.Ready() {
			cs.await(ctx, nd.inflight[0])
		}
	}
	cs.release(ctx)
}

// awaited returns the chunk whose replies command i, e, waits for: its
// own, or, for a held command, the oldest of the node its slot is in
// flight on; nil when nothing is in flight ahead of it. A command split by
// slot waits for its parts in turn.
func (cs *clusterStream) awaited(i int, e *streamCmd) *nodeChunk {
	if e.ch != nil {
		return e.ch
	}
	behind := func(slot int) *nodeChunk {
		if slot < 0 {
			return nil
		}
		f := cs.flight[slot]
		if f.n == 0 {
			return nil
		}
		for _, id := range [2]int32{f.ask, f.node} {
			if id == 0 {
				continue
			}
			if nd := cs.list[id-1]; len(nd.inflight) > 0 {
				return nd.inflight[0]
			}
		}
		return nil
	}
	if sc := cs.splits[i]; sc != nil {
		for leg := range sc.legs {
			if l := &sc.legs[leg]; !l.done {
				if ch := behind(l.sub.slot); ch != nil {
					return ch
				}
			}
		}
		return nil
	}
	if ch := behind(int(e.slot)); ch != nil {
		return ch
	}
	if e.legs > 0 {
		for _, nd := range cs.list {
			if len(nd.inflight) > 0 {
				return nd.inflight[0]
			}
		}
	}
	return nil
}

// await waits for the replies of the chunks of ch's node up to ch, in
// order, and takes them in. A wait that fails (the connection failed, or
// ctx ended) stops the stream and breaks the node: its chunks still in
// flight are settled at once (see lost), each without waiting for what
// has not come, while the other nodes' replies are still taken in as
// they come.
func (cs *clusterStream) await(ctx context.Context, ch *nodeChunk) {
	nd := ch.node
	for len(nd.inflight) > 0 {
		c0 := nd.inflight[0]
		nd.inflight[0] = nil
		nd.inflight = nd.inflight[1:]
		wctx := ctx
		if nd.broken {
			wctx = endedCtx
		}
		if got, sent, err := c0.pending.WaitCut(wctx); err != nil {
			if !nd.broken {
				nd.broken, nd.cause = true, err
				cs.fail(fmt.Errorf("redpipe: cluster node %s: %w", nd.c.opt.Addr, err))
				if n := len(nd.inflight); n > 0 {
					// The node's later chunks are settled now too.
					ch = nd.inflight[n-1]
				}
			}
			if got > 0 {
				// The connection failed after the replies of the
				// chunk's first commands were read: they ran, and are
				// taken in as those of a chunk answered whole (the
				// stream has stopped: a redirection is a reply).
				cs.takeCut(c0, got)
			}
			cs.lost(c0, err, sent)
		} else {
			cs.take1(c0)
			cs.recycle(c0)
		}
		if c0 == ch {
			return
		}
	}
}

// endedCtx is a context that has ended: a wait with it takes in replies
// that have come and gives up at once on the rest.
var endedCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// takeCut takes in, as take1 does, the replies of the commands of ch
// that its first got replies answer, and leaves ch the others, for lost.
func (cs *clusterStream) takeCut(ch *nodeChunk, got int) {
	answered, j := 0, 0
	for _, cc := range ch.cmds {
		if cc.asking || cc.role {
			j++
		}
		if j >= got {
			break
		}
		answered++
		j++
	}
	rest := ch.cmds[answered:]
	ch.cmds = ch.cmds[:answered]
	cs.take1(ch)
	ch.cmds = rest
}

// lost settles the commands of ch, a chunk of a broken node whose wait
// failed with err, so that the replies of the commands after them can be
// handed out: each gets an error reply of unknown outcome (it may have
// run), or one that says it was not sent when err says that none of the
// chunk reached the server, or when it begins at or past sent, the bytes
// of the chunk the socket took (0 when that is not known). The chunk is
// not reused: the connection's reader may still write into its replies.
func (cs *clusterStream) lost(ch *nodeChunk, err error, sent int) {
	nd := ch.node
	var v, unsent resp.Value
	if OutcomeOf(err) == OutcomeNotSent {
		v = madeErrorValue(notSent(fmt.Errorf("redpipe: cluster: not sent to %s before the stream stopped: %w", nd.c.opt.Addr, nd.cause)))
		unsent = v
	} else {
		v = madeErrorValue(&uncertainError{msg: "redpipe: cluster", err: &lostError{addr: nd.c.opt.Addr, cause: nd.cause}})
	}
	for _, cc := range ch.cmds {
		v := v
		if sent > 0 && cc.start >= sent {
			if unsent.Kind == 0 {
				unsent = madeErrorValue(notSent(fmt.Errorf("redpipe: cluster: not sent to %s: the connection failed before the command was written: %w", nd.c.opt.Addr, unsentConnErr(nd.cause))))
			}
			v = unsent
		}
		e := cs.entry(cc.i)
		if e.ch == ch {
			e.ch = nil
		}
		if cc.leg < 0 && e.legs > 0 {
			cs.fanReply(cc.i, e, v)
			continue
		}
		if slot := cs.unitSlot(cc.i, cc.leg); slot >= 0 {
			cs.flight[slot].n--
		}
		cs.settle(cc.i, cc.leg, e, v, nd.c)
	}
}

// settleUnsent gives each command of the window still without a reply
// once nothing is in flight, at the end of a stream that stopped, the
// reply of one that will not be sent, up to the last command written: a
// held command that a redirection sent back keeps it as its reply
// (nothing of it ran), and any other, or leg of a command for every
// master left to place, an error reply that says it was not sent, for
// cause; a refused leg keeps its refusal. So the replies that the nodes
// gave to the commands after it are handed out too, in order. The
// commands after the last one written are dropped, as on one node, where
// what was not sent gets no reply.
func (cs *clusterStream) settleUnsent(cause error) {
	end := cs.done // 1 + the greatest index written
	for _, nd := range cs.list {
		end = max(end, nd.wrote)
	}
	var unsent resp.Value
	notSentValue := func() resp.Value {
		if unsent.Kind == 0 {
			unsent = madeErrorValue(notSent(fmt.Errorf("redpipe: cluster: not sent before the stream stopped: %w", cause)))
		}
		return unsent
	}
	for _, hs := range cs.held {
		for _, h := range hs.cmds {
			if h.i >= end {
				continue
			}
			v := resp.Value{Kind: resp.Error, Str: h.refusal}
			if h.refusal == "" {
				v = notSentValue()
			}
			cs.settle(h.i, h.leg, cs.entry(h.i), v, nil)
		}
	}
	clear(cs.held)
	for _, fan := range [2]*[]fanLeg{&cs.demoted, &cs.refans} {
		for _, f := range *fan {
			if f.i >= end {
				continue
			}
			v := f.refusal
			if v.Kind == 0 {
				v = notSentValue()
			}
			cs.fanReply(f.i, cs.entry(f.i), v)
		}
		clear(*fan)
		*fan = (*fan)[:0]
	}
	for i := cs.done; i < end; i++ {
		e := cs.entry(i)
		e.ch = nil
		switch sc := cs.splits[i]; {
		case e.final:
		case sc != nil:
			for leg := range sc.legs {
				if !sc.legs[leg].done {
					cs.settle(i, leg, e, notSentValue(), nil)
				}
			}
		case e.legs > 0:
			for e.legs > 0 {
				cs.fanReply(i, e, notSentValue())
			}
		default:
			cs.answer(e, notSentValue())
		}
	}
}

// take1 takes in the replies of an answered chunk: an answer becomes its
// command's reply; a redirection holds the command back to be sent again.
func (cs *clusterStream) take1(ch *nodeChunk) {
	s := cs.s
	j := 0
	for _, cc := range ch.cmds {
		replica := false
		switch {
		case cc.asking:
			j++ // ASKING's own reply, read with the command's below
		case cc.role:
			replica = isReplicaRole(ch.replies[j])
			j++
		}
		v := ch.replies[j]
		if cc.asking {
			v = afterAsking(ch.replies[j-1], v, ch.node.c)
		}
		j++
		if replica {
			// A READONLY refusal sends the leg where a refusal does, to
			// the master that took the node's place (see replicaNow).
			v = replicaNow(ch.node.c.opt.Addr)
		}
		e := cs.entry(cc.i)
		if e.ch == ch {
			e.ch = nil
		}
		if cc.leg < 0 && e.legs > 0 {
			if isReadonly(v) && s.err == nil && !cs.draining {
				cs.refused(cc.i, e, ch, cc, v)
				continue
			}
			cs.fanReply(cc.i, e, v)
			continue
		}
		slot := cs.unitSlot(cc.i, cc.leg)
		if slot >= 0 {
			cs.flight[slot].n--
			cs.touched = append(cs.touched, slot)
		}
		rd, isRedirect := redirectOfCmd(&v, ch.node.c.opt.Addr, e.meta.Name(), slot)
		if !isRedirect || s.err != nil || cs.draining {
			if !isRedirect && isReadonly(v) {
				// As for a call alone (see runSlot): the reply stands,
				// but a failover made the node a replica, which the
				// commands queued next must not take for a master.
				cs.r.triggerRefresh()
			}
			if !isRedirect && slot >= 0 && len(cs.held) > 0 {
				if hs := cs.held[slot]; hs != nil && hs.cmds[0].i < cc.i {
					cs.overtake(slot, hs, cc.i, e, ch.buf[cc.start:cc.end])
				}
			}
			cs.settle(cc.i, cc.leg, e, v, ch.node.c)
			continue
		}
		stale := rd.kind == "ASK" && time.Since(ch.sent) > askFreshFor
		cs.redirect(cc.i, cc.leg, e, ch.buf[cc.start:cc.end], rd, v, stale)
	}
}

// refused takes in the READONLY refusal v of the leg cc, in chunk ch, of
// command i, e, a command for every master: the node is a master no more
// (a failover made it a replica), and ran nothing of it. The leg waits
// for the next release, which refreshes the layout and places it (see
// refanDemoted); it counts as a redirection.
func (cs *clusterStream) refused(i int, e *streamCmd, ch *nodeChunk, cc chunkCmd, v resp.Value) {
	e.redirects++
	if int(e.redirects) > cs.r.opt.MaxRedirects {
		cs.fail(&CommandError{Index: i, Command: e.meta.Name(), In: "stream", Err: cs.r.gaveUp(int(e.redirects)-1, int(e.tries), newError(v.Str))})
		cs.fanReply(i, e, v)
		return
	}
	cs.demoted = append(cs.demoted, fanLeg{i: i, b: slices.Clone(ch.buf[cc.start:cc.end]), from: ch.node.c, refusal: v})
	cs.r.triggerRefresh()
}

// overtake settles the held commands of slot, hs, earlier than command
// i, e, encoded as cmd, that a redirection sent back and that i, which
// ran, shares a key with (or whose keys cannot be told): sent again, they
// would run after it. Each keeps its redirection as its reply, as in a
// pipeline: nothing of it ran. So goes a multi-key command refused with
// TRYAGAIN while its slot's keys are split between two nodes, when a
// later command on one of its keys, already on its way to the source,
// is served there; retried, it would undo that command's write, or a
// read would have missed it.
func (cs *clusterStream) overtake(slot int, hs *heldSlot, i int, e *streamCmd, cmd []byte) {
	var keys [][]byte
	known, parsed := false, false
	for k := 0; k < len(hs.cmds) && hs.cmds[k].i < i; {
		h := hs.cmds[k]
		if h.refusal == "" {
			k++ // never written
			continue
		}
		if !parsed {
			keys, known = appendKeyWords(nil, e.meta.info(), cmd)
			parsed = true
		}
		he := cs.entry(h.i)
		if known && !sharesKey(keys, he.meta.info(), h.b) {
			k++
			continue
		}
		hs.cmds = slices.Delete(hs.cmds, k, k+1)
		cs.redirected.overtaken++
		cs.settle(h.i, h.leg, he, resp.Value{Kind: resp.Error, Str: h.refusal}, nil)
	}
	if len(hs.cmds) == 0 {
		delete(cs.held, slot)
	}
}

// sharesKey tells whether the command of ci encoded as cmd has one of
// keys, or keys that cannot be told.
func sharesKey(keys [][]byte, ci *commandInfo, cmd []byte) bool {
	theirs, ok := appendKeyWords(nil, ci, cmd)
	if !ok {
		return true
	}
	for _, a := range theirs {
		for _, b := range keys {
			if string(a) == string(b) {
				return true
			}
		}
	}
	return false
}

// settle makes v, from node, the reply of command i, e, or of its part
// part; the last part's reply makes that of the command, the parts'
// joined.
func (cs *clusterStream) settle(i, part int, e *streamCmd, v resp.Value, node *Client) {
	if part < 0 {
		cs.answer(e, v)
		return
	}
	sc := cs.splits[i]
	l := &sc.legs[part]
	l.reply, l.node, l.done = v, node, true
	if e.legs--; e.legs > 0 {
		return
	}
	legs := make([]leg, len(sc.legs))
	vals := make([]resp.Value, len(sc.legs))
	for k := range sc.legs {
		l := &sc.legs[k]
		legs[k] = leg{cmd: i, at: k, slot: l.sub.slot, node: l.node, done: true, sub: &l.sub}
		vals[k] = l.reply
	}
	delete(cs.splits, i)
	cs.answer(e, joinSplit(e.meta.info(), legs, vals, nil))
}

// answer makes v the reply of e.
func (cs *clusterStream) answer(e *streamCmd, v resp.Value) {
	e.reply, e.final = v, true
	cs.kept -= int(e.size)
}

// fanReply takes in one master's reply to command i, which went to every
// master, or none (a zero v) for a leg left with no master to go to (see
// refan); with the last, the replies are combined by its response policy.
func (cs *clusterStream) fanReply(i int, e *streamCmd, v resp.Value) {
	e.legs--
	if cs.fans == nil {
		cs.fans = map[int][]resp.Value{}
	}
	vs := append(cs.fans[i], v)
	if e.legs > 0 {
		cs.fans[i] = vs
		return
	}
	delete(cs.fans, i)
	delete(cs.fanTo, i)
	cs.answer(e, joinFanReplies(e.meta.info(), fanVals(vs)))
}

// joinFanReplies makes the reply of a command for every master, ci, from
// vs, its legs' replies in the order they came. When some legs got no
// answer from their master (lost in flight, or not sent) while a master
// ran it, a write has an error of unknown outcome that says it reached
// only some of them, as a cluster pipeline's does (see joinFanOut): the
// masters that got no answer did not refuse it, so the text of
// partlyFailed would be wrong of them, and the reply of one of them
// alone would read as nothing applied when it is not sent. Otherwise the
// replies are combined by fanOutReply, a leg lost in flight first.
func joinFanReplies(ci *commandInfo, vs []resp.Value) resp.Value {
	missed, n, ran := -1, 0, false
	for k, v := range vs {
		switch {
		case unanswered(v):
			n++
			if missed < 0 || mayHaveRunFirst(vs, k, missed) {
				missed = k
			}
		case !isErrValue(v):
			ran = true
		}
	}
	if missed >= 0 && ran && mayWrite(ci) {
		return madeErrorValue(reachedSome(ci, len(vs)-n, len(vs), Value{vs[missed]}.Err()))
	}
	return fanOutReply(ci, mayHaveRunAhead(vs))
}

// lostError is the cause of the error reply of a command, or of a leg of
// one, that was in flight on the node at addr when its connection failed
// or the stream's context ended, for cause: it may have run there.
type lostError struct {
	addr  string
	cause error
}

func (e *lostError) Error() string {
	return "the stream's commands in flight on " + e.addr + " failed: " + e.cause.Error()
}

func (e *lostError) Unwrap() error { return e.cause }

// unanswered tells the error reply that the stream made for a command, or
// a leg of one, that its node did not answer: lost in flight (see lost),
// or not sent.
func unanswered(v resp.Value) bool {
	if !isErrValue(v) || v.Aux == nil {
		return false
	}
	m, ok := v.Aux.Extra.(madeErr)
	if !ok {
		return false
	}
	var le *lostError
	return errors.As(m.err, &le) || OutcomeOf(m.err) == OutcomeNotSent
}

// mayHaveRunAhead puts the first error reply of vs, the replies of the
// legs of a command for every master, that does not say nothing ran (a
// leg lost in flight, see lost) in the place of the first error reply,
// and returns vs. The replies are in the order they came, and the reply
// of a command whose every leg failed is the first error: a refusal
// (OOM, READONLY) that came before the loss of a leg that did run would
// read as not applied.
func mayHaveRunAhead(vs []resp.Value) []resp.Value {
	first := slices.IndexFunc(vs, isErrValue)
	if first < 0 || mayHaveRun(Value{vs[first]}) {
		return vs
	}
	for k := first + 1; k < len(vs); k++ {
		if isErrValue(vs[k]) && mayHaveRun(Value{vs[k]}) {
			vs[first], vs[k] = vs[k], vs[first]
			break
		}
	}
	return vs
}

// redirect holds back command i, e, or its part leg, encoded as b, which
// the reply v redirected as rd: MOVED updates the slot's owner, ASK sends
// it to the node named, after ASKING, in the release that follows or
// never (and never when stale, see askFreshFor); TRYAGAIN and CLUSTERDOWN send it again after a backoff.
func (cs *clusterStream) redirect(i, leg int, e *streamCmd, b []byte, rd redirect, v resp.Value, stale bool) {
	r := cs.r
	last := newError(v.Str)
	redirects, tries := cs.counters(i, leg)
	gaveUp := func(redirects, tries int) {
		cs.fail(&CommandError{Index: i, Command: e.meta.Name(), In: "stream", Err: r.gaveUp(redirects, tries, last)})
		cs.settle(i, leg, e, v, nil)
	}
	h := heldCmd{i: i, leg: leg, b: slices.Clone(b), refusal: v.Str}
	switch rd.kind {
	case "MOVED", "ASK":
		*redirects++
		if int(*redirects) > r.opt.MaxRedirects {
			gaveUp(int(*redirects)-1, int(*tries))
			return
		}
		if leg < 0 && e.slot < 0 && rd.slot >= 0 && rd.slot < hashslot.Count {
			e.slot = int32(rd.slot) // keys the client could not tell: the server did
		}
		var err error
		if rd.kind == "MOVED" {
			cs.redirected.moved++
			_, err = r.moved(rd.slot, rd.addr)
		} else if cs.redirected.ask++; !stale {
			h.ask, err = r.nodeAt(rd.addr)
		}
		if err != nil {
			cs.fail(err)
			cs.settle(i, leg, e, v, nil)
			return
		}
		slot := cs.unitSlot(i, leg)
		if hs := cs.hold(slot, h); h.ask != nil && !hs.asked {
			hs.asked = true
			cs.asked = append(cs.asked, slot)
		}
	default:
		*tries++
		if *tries > maxTryAgain {
			gaveUp(int(*redirects), int(*tries)-1)
			return
		}
		cs.redirected.again++
		if rd.kind == "CLUSTERDOWN" {
			r.triggerRefresh()
		}
		h.again = true
		hs := cs.hold(cs.unitSlot(i, leg), h)
		if after := time.Now().Add(backoffDelay(int(*tries))); after.After(hs.after) {
			hs.after = after
		}
	}
}

// release sends the held commands of the touched slots, and of the slots
// whose backoff is over, that may go (see heldFront), and places the legs
// of commands for every master that their nodes did not run: refused
// with READONLY, once a refresh has told where they now go (see
// refanDemoted), or not written, the layout refreshed (see refan). Then
// every held command still holding an ASK forgets it: it was not followed
// at once. A slot whose owner is not known waits for a refresh of the
// layout, and goes after the ASKs are forgotten.
func (cs *clusterStream) release(ctx context.Context) {
	defer cs.forgetAsks()
	if len(cs.demoted) > 0 {
		cs.refanDemoted(ctx)
	}
	if len(cs.refans) == 0 {
		cs.releaseHeld(ctx)
		return
	}
	// What the chunks hold before this release stays ahead of the legs;
	// the held commands it sends go in the stream's order with them (see
	// refan), those of every slot with one earlier than a leg included.
	last := 0
	for _, f := range cs.refans {
		last = max(last, f.i)
	}
	for _, nd := range cs.list {
		nd.mark, nd.markLast = 0, nd.wrote
		if nd.out != nil {
			nd.mark = len(nd.out.cmds)
			for _, cc := range nd.out.cmds {
				nd.markLast = max(nd.markLast, cc.i+1)
			}
		}
	}
	for slot, hs := range cs.held {
		if hs.cmds[0].i < last {
			cs.touched = append(cs.touched, slot)
		}
	}
	cs.releaseHeld(ctx)
	cs.refan()
}

// releaseHeld is release for the held commands alone.
func (cs *clusterStream) releaseHeld(ctx context.Context) {
	if cs.s.err != nil || cs.draining || len(cs.held) == 0 {
		cs.touched = cs.touched[:0]
		return
	}
	now := time.Now()
	if len(cs.waiting) > 0 {
		cs.waiting = slices.DeleteFunc(cs.waiting, func(slot int) bool {
			hs := cs.held[slot]
			if hs == nil || !hs.waiting {
				return true
			}
			if hs.after.After(now) {
				return false
			}
			hs.waiting = false
			cs.touched = append(cs.touched, slot)
			return true
		})
	}
	if len(cs.touched) == 0 {
		return
	}
	cs.gen++
	var unrouted []int
	for _, slot := range cs.touched {
		hs := cs.held[slot]
		if hs == nil || hs.gen == cs.gen {
			continue
		}
		hs.gen = cs.gen
		if !cs.sendHeld(slot, hs, now) {
			unrouted = append(unrouted, slot)
		}
	}
	cs.touched = cs.touched[:0]
	if len(unrouted) == 0 {
		return
	}
	// Waiting for the layout is a pause.
	cs.forgetAsks()
	if err := cs.r.awaitRefresh(ctx); err != nil {
		cs.fail(err)
		return
	}
	for _, slot := range unrouted {
		hs := cs.held[slot]
		if hs == nil || cs.s.err != nil {
			continue
		}
		if !cs.sendHeld(slot, hs, time.Now()) {
			cs.fail(cs.r.noOwner(slot))
		}
	}
}

// forgetAsks makes the held commands that hold an ASK forget it: they go
// to the owner of their slot by the map once they may go.
func (cs *clusterStream) forgetAsks() {
	for _, slot := range cs.asked {
		if hs := cs.held[slot]; hs != nil && hs.asked {
			hs.asked = false
			for k := range hs.cmds {
				hs.cmds[k].ask = nil
			}
		}
	}
	cs.asked = cs.asked[:0]
}

// sendHeld puts the held commands of slot, hs, that may go now in the
// chunks of the pass (see heldFront); for the keyless ones, every one,
// short of those sent again for TRYAGAIN or CLUSTERDOWN before the
// backoff is over. A slot whose commands wait for the backoff joins the
// waiting ones. It reports false when nothing went because the slot's
// owner is not known.
func (cs *clusterStream) sendHeld(slot int, hs *heldSlot, now time.Time) bool {
	owner := cs.r.owner(slot)
	paused := hs.after.After(now)
	k, again := 0, false
	if slot < 0 {
		for ; k < len(hs.cmds); k++ {
			h := hs.cmds[k]
			to := h.ask
			if to == nil {
				to = owner
			}
			if to == nil || h.again && paused {
				break
			}
			cs.put(cs.node(to), h.i, h.leg, h.b, h.ask != nil)
			again = again || h.again
		}
	} else {
		if cs.barred(hs, owner); len(hs.cmds) == 0 {
			delete(cs.held, slot)
			return true
		}
		f := &cs.flight[slot]
		var askTo *Client
		if f.n > 0 && f.ask != 0 {
			askTo = cs.list[f.ask-1].c
		}
		var to *Client
		k, to = heldFront(hs.cmds, owner, f.n > 0, askTo, paused)
		if k > 0 {
			nd := cs.node(to)
			for _, h := range hs.cmds[:k] {
				cs.put(nd, h.i, h.leg, h.b, h.ask != nil)
				again = again || h.again
			}
			if f.n > 0 {
				f.ask = nd.id
			} else {
				f.node, f.ask = nd.id, 0
			}
			f.n += int32(k)
		}
	}
	clear(hs.cmds[:k])
	hs.cmds = hs.cmds[k:]
	if again {
		hs.after = time.Time{}
	}
	if len(hs.cmds) == 0 {
		delete(cs.held, slot)
		return true
	}
	first := hs.cmds[0]
	if paused && first.again && !hs.waiting {
		hs.waiting = true
		cs.waiting = append(cs.waiting, slot)
	}
	if k > 0 || owner != nil {
		return true
	}
	// Nothing went: for want of an owner, unless the first waits anyway.
	return first.ask != nil || slot >= 0 && cs.flight[slot].n > 0 || first.again && paused
}

// heldFront decides which of the held commands of a slot, cmds, go out
// now: the first n, all to the node to. owner is the slot's master by the
// map, nil when not known; inFlight tells that commands of the slot are
// in flight, and askTo the node some of them were sent to after ASK (nil
// for none); paused, that the backoff of the commands sent again for
// TRYAGAIN or CLUSTERDOWN is not over.
//
// With nothing of the slot in flight, the first command goes, and those
// after it that go to the same node: each to the node an ASK just named,
// or else to the owner; none behind a command sent again for TRYAGAIN or
// CLUSTERDOWN, which may be refused again, nor that one while paused.
// With commands of the slot in flight, only those at the front that an
// ASK just named one node for go, at once: every command of the slot in
// flight then is a later one, already on its way to the source, or one
// that went earlier to the same node after ASK, written before them on
// the same connection. Any other held command that holds an ASK is
// behind one that waits, and will have forgotten the ASK once it goes.
func heldFront(cmds []heldCmd, owner *Client, inFlight bool, askTo *Client, paused bool) (n int, to *Client) {
	for _, h := range cmds {
		node := h.ask
		if inFlight && (node == nil || askTo != nil && node != askTo) {
			break
		}
		if node == nil {
			node = owner
		}
		if node == nil || to != nil && node != to || h.again && paused {
			break
		}
		to = node
		n++
		if h.again {
			break
		}
	}
	return n, to
}

// deliver hands the answered commands at the head of the window to each,
// in order.
func (cs *clusterStream) deliver() {
	for cs.count > 0 && cs.win[cs.head].final {
		e := &cs.win[cs.head]
		i, name, v := cs.done, e.meta.Name(), Value{e.reply}
		// Out of the window before each sees it: should each panic, and
		// the stream be closed after, the reply is not handed out again.
		*e = streamCmd{}
		cs.head = (cs.head + 1) & (len(cs.win) - 1)
		cs.count--
		cs.done++
		cs.s.hand(i, name, v)
	}
}

// drain waits for every chunk in flight and takes in its replies as they
// are, redirections included, settles the commands that will not be sent
// (see settleUnsent), and hands out every reply in order: the end of a
// stream that failed or was discarded. A node whose wait fails is broken
// (see await): its commands in flight are of unknown outcome, and the
// other nodes' replies are still taken in.
func (cs *clusterStream) drain(ctx context.Context) {
	cs.draining = true
	for _, nd := range cs.list {
		if n := len(nd.inflight); n > 0 {
			cs.await(ctx, nd.inflight[n-1])
		}
	}
	cause := cs.stopped
	if cause == nil {
		cause = errors.New("redpipe: the stream was discarded")
	}
	cs.settleUnsent(cause)
	cs.deliver()
}

// pass runs f, which may hand replies to each, as busy: what each queues
// meanwhile waits for the next flush, after the replies before it.
func (cs *clusterStream) pass(f func()) {
	prev := cs.busy
	cs.busy = true
	defer func() { cs.busy = prev }()
	f()
}

// finish routes and sends the rest (unless discarding), waits for every
// reply, gives the connections back and closes the stream.
func (cs *clusterStream) finish(ctx context.Context, send bool) (int, error) {
	s := cs.s
	w := &s.p.w
	if !send {
		w.reset()
	}
	queued := func() bool { return len(w.cmds) > 0 || w.err != nil }
	for {
		if queued() {
			cs.flush(ctx, true) // the rest, and what each queued meanwhile
		}
		if cs.count == 0 {
			if send && s.err == nil && queued() {
				continue // queued by each as the flush's pass handed out the last replies
			}
			break
		}
		if s.err != nil || !send {
			cs.pass(func() { cs.drain(ctx) })
			break
		}
		cs.pass(func() { cs.progress(ctx) })
	}
	w.reset()
	for _, nd := range cs.list {
		if nd.d != nil {
			// A connection with replies unread is closed: Put asks it
			// whether it is idle.
			nd.c.putDedicated(nd.d, !nd.broken && len(nd.inflight) == 0)
			nd.d = nil
		}
		nd.inflight, nd.out = nil, nil
	}
	s.closed = true
	if cs.flight != nil {
		// Chunks still in flight on a broken connection are not among
		// the free ones: its reader may still write into them.
		clear(cs.win)
		clear(cs.flight)
		streamStores.Put(&streamStore{win: cs.win, flight: cs.flight, free: cs.free})
	}
	cs.win, cs.held, cs.flight, cs.free, cs.count = nil, nil, nil, nil, 0
	cs.asked, cs.waiting = nil, nil
	cs.splits, cs.fans, cs.fanTo = nil, nil, nil
	return cs.written, s.result()
}
