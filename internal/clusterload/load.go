// Package clusterload runs a checked workload on a cluster Client while
// the cluster is resharded or failed over under it, and afterwards checks
// what the servers hold against what the client said. The cluster tests of
// the root package and the fault suite's cluster phase share it.
//
// Every key lives in one of a few hot slots, the slots the caller moves
// and fails over. Each worker owns a counter and a register in every hot
// slot, and all workers increment one shared counter per slot in
// transactions. The workers' counters and registers are written and read
// by plain pipelines, and (by the first worker) by streams
// (redpipe.Stream) of hundreds of the same commands and large padding
// writes, which go out in several passes, so that commands of a slot are
// still on their way when others of it are redirected. What must hold:
//
//   - A worker's INCR of its own counter that succeeded replies more than
//     the last one that succeeded, by one plus at most the INCRs of unknown
//     outcome in between; at the end the counter holds the last reply plus
//     at most the INCRs of unknown outcome since.
//   - A register holds the sequence number of its worker's last write: a
//     SET, or an MSET with a second key of the slot (multi-key, so it meets
//     TRYAGAIN while the slot's keys are split between two nodes). A GET of
//     it, in a pipeline or at the end, finds the last write that succeeded
//     before it in the worker's order or a later one whose outcome was
//     unknown: never an older one (lost), never one queued after the GET
//     (misordered), never one the client said had no effect (duplicated).
//     A stream is checked as a pipeline is: every reply in its order, and
//     the commands it did not answer (it stopped) by what Close said.
//     An MGET of two registers in different slots, which the client splits
//     by slot, finds the same of each.
//   - A transaction reads the slot's shared counter under WATCH and queues
//     INCR: its reply is the value read plus one, no two transactions get
//     the same reply, and the counter ends between the number that
//     succeeded and that plus those of unknown outcome.
//   - Every call has a deadline, and one that returns more than Grace after
//     it is hung.
//
// Outcomes are what redpipe.OutcomeOf says; a call that failed certainly
// without effect (not sent, not applied) must indeed have had none.
package clusterload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/internal/hashslot"
)

// Config is one workload.
type Config struct {
	// Client is the cluster client under test.
	Client *redpipe.Client
	// Workers run calls concurrently (default 8).
	Workers int
	// Slots are the hot slots; every key is in one of them.
	Slots []int
	// Each call's deadline is picked between MinTimeout and MaxTimeout
	// (defaults 300ms and 2s).
	MinTimeout, MaxTimeout time.Duration
	// Grace is how long past its deadline a call may take to return
	// before it counts as hung (default 1s).
	Grace time.Duration
	// Seed makes the workers' choices repeatable.
	Seed uint64
	// Prefix starts every key (default "load").
	Prefix string
	// Log describes the first anomalies, one line each; nil for none.
	Log func(format string, args ...any)
	// LargeEvery, when above 0, makes one pipeline in LargeEvery one of
	// largeMin to largeMax commands, a quarter of them SETs of padding as
	// in streams: a node's part of it goes out in several passes.
	LargeEvery int
}

// maxReports bounds the anomalies described; the counts keep going.
const maxReports = 30

// Counts are what a workload did and found.
type Counts struct {
	Calls, Checked                     int64
	Misordered, Lost, Duplicated, Hung int64
	OK, Unknown, NotSent, NotApplied   int64 // calls and pipelined commands, by outcome
	// Partial counts the replies checked of batches that failed: those a
	// pipeline cut partway returned, and those a stream handed out
	// before it stopped.
	Partial int64
}

// Anomalies is the sum of what must be zero.
func (c Counts) Anomalies() int64 { return c.Misordered + c.Lost + c.Duplicated + c.Hung }

func (c Counts) String() string {
	return fmt.Sprintf("%d calls, %d commands checked, %d misordered, %d lost, %d duplicated, %d hung (outcomes: %d ok, %d unknown, %d not sent, %d not applied; %d replies of failed batches checked)",
		c.Calls, c.Checked, c.Misordered, c.Lost, c.Duplicated, c.Hung, c.OK, c.Unknown, c.NotSent, c.NotApplied, c.Partial)
}

// outcome is what the client said about a call or a command.
type outcome uint8

const (
	ok outcome = iota
	unknown
	notSent
	notApplied
)

var outcomeNames = [...]string{"ok", "unknown", "not sent", "not applied"}

func (o outcome) String() string { return outcomeNames[o] }

// certainlyNot reports whether the client said it had no effect.
func (o outcome) certainlyNot() bool { return o == notSent || o == notApplied }

func outcomeOf(err error) outcome {
	if err == nil {
		return ok
	}
	switch redpipe.OutcomeOf(err) {
	case redpipe.OutcomeNotSent:
		return notSent
	case redpipe.OutcomeNotApplied:
		return notApplied
	}
	return unknown
}

// Load is a running workload.
type Load struct {
	cfg  Config
	tags []string // a hash tag of each hot slot
	stop chan struct{}
	wg   sync.WaitGroup
	ws   []*worker

	calls, checked, partial            atomic.Int64
	misordered, lost, duplicated, hung atomic.Int64
	outcomes                           [len(outcomeNames)]atomic.Int64
	reports                            atomic.Int64

	shared []sharedCounter // one per hot slot

	armedAt atomic.Int64   // UnixNano of the last Arm, 0 before
	firstOK []atomic.Int64 // per hot slot, UnixNano of the first success since
}

// sharedCounter is what the transactions on one slot's shared counter
// were told.
type sharedCounter struct {
	mu      sync.Mutex
	acked   int64 // transactions applied
	unknown int64 // of unknown outcome
	replies map[int64]bool
	max     int64
}

// Start starts the workers. Stop them with Stop before Check.
func Start(cfg Config) (*Load, error) {
	if cfg.Client == nil || len(cfg.Slots) == 0 {
		return nil, errors.New("clusterload: a client and hot slots are needed")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.MinTimeout <= 0 {
		cfg.MinTimeout = 300 * time.Millisecond
	}
	if cfg.MaxTimeout < cfg.MinTimeout {
		cfg.MaxTimeout = max(2*time.Second, cfg.MinTimeout)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "load"
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	tags, err := TagsOf(cfg.Prefix, cfg.Slots)
	if err != nil {
		return nil, err
	}
	l := &Load{
		cfg:     cfg,
		tags:    tags,
		stop:    make(chan struct{}),
		shared:  make([]sharedCounter, len(tags)),
		firstOK: make([]atomic.Int64, len(tags)),
	}
	for i := range l.shared {
		l.shared[i].replies = map[int64]bool{}
	}
	for i := range cfg.Workers {
		w := &worker{
			l:    l,
			id:   i,
			rng:  rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
			ctrs: make([]counter, len(tags)),
			regs: make([]register, len(tags)),
		}
		l.ws = append(l.ws, w)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			w.loop()
		}()
	}
	return l, nil
}

// TagsOf returns, for each slot, a hash tag made of prefix and a number
// that hashes to it.
func TagsOf(prefix string, slots []int) ([]string, error) {
	want := map[int]int{}
	for i, s := range slots {
		if s < 0 || s >= hashslot.Count {
			return nil, fmt.Errorf("clusterload: slot %d out of range", s)
		}
		if _, dup := want[s]; dup {
			return nil, fmt.Errorf("clusterload: slot %d given twice", s)
		}
		want[s] = i
	}
	tags := make([]string, len(slots))
	left := len(slots)
	// Each number hits a given slot once in 16384 tries on average; the
	// bound is far beyond what any slot needs.
	for n := 0; left > 0 && n < 1<<24; n++ {
		tag := prefix + strconv.Itoa(n)
		if i, ok := want[int(hashslot.Slot(tag))]; ok && tags[i] == "" {
			tags[i] = "{" + tag + "}"
			left--
		}
	}
	if left > 0 {
		return nil, errors.New("clusterload: no hash tag found for some slots")
	}
	return tags, nil
}

// Stop ends the workers and waits up to within for the calls under way to
// return; it reports whether they all did. A worker still running after
// that is counted as hung.
func (l *Load) Stop(within time.Duration) bool {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		l.report(&l.hung, "hung", "workers still running %v after Stop", within)
		return false
	}
}

// Counts returns what the workload did and found so far.
func (l *Load) Counts() Counts {
	return Counts{
		Calls: l.calls.Load(), Checked: l.checked.Load(),
		Misordered: l.misordered.Load(), Lost: l.lost.Load(), Duplicated: l.duplicated.Load(), Hung: l.hung.Load(),
		OK: l.outcomes[ok].Load(), Unknown: l.outcomes[unknown].Load(),
		NotSent: l.outcomes[notSent].Load(), NotApplied: l.outcomes[notApplied].Load(),
		Partial: l.partial.Load(),
	}
}

// Arm starts noting, for each hot slot, the first command on it to
// succeed in a call made from now on (see FirstSuccess). A call made
// earlier may be answered earlier and have its reply looked at later,
// when a busy machine gets round to it.
func (l *Load) Arm() {
	for i := range l.firstOK {
		l.firstOK[i].Store(0)
	}
	l.armedAt.Store(time.Now().UnixNano())
}

// FirstSuccess returns when the first command on any of slots succeeded
// in a call made since the last Arm, or the zero time if none has.
func (l *Load) FirstSuccess(slots []int) time.Time {
	var first int64
	for i, s := range l.cfg.Slots {
		for _, want := range slots {
			if s == want {
				if t := l.firstOK[i].Load(); t != 0 && (first == 0 || t < first) {
					first = t
				}
			}
		}
	}
	if first == 0 {
		return time.Time{}
	}
	return time.Unix(0, first)
}

// succeeded notes a success on hot slot i, in a call made at start, for
// FirstSuccess.
func (l *Load) succeeded(i int, start time.Time) {
	at := l.armedAt.Load()
	if at != 0 && start.UnixNano() > at {
		l.firstOK[i].CompareAndSwap(0, time.Now().UnixNano())
	}
}

// report counts one anomaly and describes the first few.
func (l *Load) report(counter *atomic.Int64, kind, format string, args ...any) {
	counter.Add(1)
	if l.reports.Add(1) <= maxReports {
		l.cfg.Log("ANOMALY %s: %s", kind, fmt.Sprintf(format, args...))
	}
}

func (l *Load) key(slot int, kind string, worker int) string {
	return l.tags[slot] + ":" + kind + ":" + strconv.Itoa(worker)
}

// sharedKey is the key of slot i's shared counter.
func (l *Load) sharedKey(i int) string { return l.tags[i] + ":x" }

// counter is what one worker knows of one of its counters.
type counter struct {
	last    int64 // the reply of the last INCR that succeeded, 0 before any
	pending int64 // INCRs of unknown outcome since
}

// register is what one worker knows of one of its registers. Sequence
// numbers start at 1; 0 stands for the missing key.
type register struct {
	issued  int64   // the last write queued
	acked   int64   // the last write known to be applied
	ackedIn int64   // the batch that made it known, 0 for none
	since   []write // writes queued after acked, with what the client said
}

type write struct {
	seq int64
	out outcome
}

// incr applies an INCR's outcome and, if it succeeded, its reply r; it
// returns the anomaly found, if any.
func (c *counter) incr(out outcome, r int64) (kind, msg string) {
	switch out {
	case ok:
	case unknown:
		c.pending++
		return "", ""
	default:
		return "", ""
	}
	switch {
	case r <= c.last:
		kind, msg = "lost", fmt.Sprintf("INCR replied %d after an earlier one replied %d", r, c.last)
	case r > c.last+1+c.pending:
		kind, msg = "duplicated", fmt.Sprintf("INCR replied %d after %d with only %d of unknown outcome between", r, c.last, c.pending)
	}
	c.last, c.pending = r, 0
	return kind, msg
}

// final checks the counter's value at the end.
func (c *counter) final(v int64) (kind, msg string) {
	switch {
	case v < c.last:
		return "lost", fmt.Sprintf("holds %d, but an INCR replied %d", v, c.last)
	case v > c.last+c.pending:
		return "duplicated", fmt.Sprintf("holds %d, more than the last reply %d plus %d INCRs of unknown outcome", v, c.last, c.pending)
	}
	return "", ""
}

// queue numbers a new write.
func (r *register) queue() int64 {
	r.issued++
	return r.issued
}

// wrote applies the outcome of a write of batch.
func (r *register) wrote(seq int64, out outcome, batch int64) {
	if out == ok {
		r.saw(seq, batch)
		return
	}
	r.since = append(r.since, write{seq, out})
}

// saw records that write seq is known to be applied, as batch showed:
// every later read must find it or a later one.
func (r *register) saw(seq, batch int64) {
	if seq <= r.acked {
		return
	}
	r.acked, r.ackedIn = seq, batch
	i := 0
	for i < len(r.since) && r.since[i].seq <= seq {
		i++
	}
	r.since = r.since[i:]
}

// read checks that a read of batch found write got (0 for none), when
// before was the last write queued before the read, and then records it
// as applied. A read that misses a write its own batch applied before it
// ran before that write; one that misses a write an earlier batch applied
// finds it lost.
func (r *register) read(got, before, batch int64) (kind, msg string) {
	switch {
	case got < r.acked && r.ackedIn == batch:
		kind, msg = "misordered", fmt.Sprintf("found write %d, though write %d queued before it in the same batch was applied", got, r.acked)
	case got < r.acked:
		kind, msg = "lost", fmt.Sprintf("found write %d, but write %d was applied before", got, r.acked)
	case got > before:
		kind, msg = "misordered", fmt.Sprintf("found write %d, queued after the read (the last before it was %d)", got, before)
	case got > r.acked:
		for _, w := range r.since {
			if w.seq == got && w.out.certainlyNot() {
				kind, msg = "duplicated", fmt.Sprintf("found write %d, which the client said was %s", got, w.out)
			}
		}
	}
	if kind == "" && got <= before {
		r.saw(got, batch)
	}
	return kind, msg
}

// worker runs calls, one at a time, and keeps what it was told.
type worker struct {
	l       *Load
	id      int
	rng     *rand.Rand
	ctrs    []counter  // per hot slot
	regs    []register // per hot slot
	batches int64      // pipelines and streams run, numbering them from 1
	kind    string     // of the batch being checked: "pipeline" or "stream"
}

// maxCalls is a backstop on one worker's calls; Stop ends the loop long
// before.
const maxCalls = 1 << 30

func (w *worker) loop() {
	for range maxCalls {
		select {
		case <-w.l.stop:
			return
		default:
		}
		var good bool
		switch r := w.rng.IntN(4); {
		case r == 0:
			good = w.transaction()
		case r == 1 && w.id == 0:
			// One worker runs streams: each carries the commands of
			// dozens of pipelines, and more would slow the cluster's
			// moves on a busy machine.
			good = w.stream()
		default:
			good = w.pipeline()
		}
		if !good {
			// Calls fail fast while a node is down; a short pause keeps
			// the workers from spinning meanwhile.
			time.Sleep(time.Millisecond + time.Duration(w.rng.IntN(int(10*time.Millisecond))))
		}
	}
}

// call is one call's context and deadline.
type call struct {
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time
	end    time.Time
}

func (w *worker) newCall() *call {
	cfg := &w.l.cfg
	d := cfg.MinTimeout + time.Duration(w.rng.Int64N(int64(cfg.MaxTimeout-cfg.MinTimeout)+1))
	ctx, cancel := context.WithTimeout(context.Background(), d)
	now := time.Now()
	return &call{ctx: ctx, cancel: cancel, start: now, end: now.Add(d)}
}

// done ends a call and checks that it returned in time.
func (w *worker) done(c *call, what string, err error) outcome {
	late := time.Since(c.end)
	c.cancel()
	w.l.calls.Add(1)
	if late > w.l.cfg.Grace {
		w.l.report(&w.l.hung, "hung", "worker %d: %s returned %v after its deadline (%v)", w.id, what, late.Round(time.Millisecond), err)
	}
	return outcomeOf(err)
}

func (w *worker) anomaly(kind, format string, args ...any) {
	var c *atomic.Int64
	switch kind {
	case "lost":
		c = &w.l.lost
	case "duplicated":
		c = &w.l.duplicated
	case "hung":
		c = &w.l.hung
	default:
		c = &w.l.misordered
	}
	w.l.report(c, kind, "worker %d: "+format, append([]any{w.id}, args...)...)
}

// op is one command of a pipeline.
type op struct {
	kind  byte  // 's' SET, 'm' MSET, 'g' GET, 'i' INCR, 'M' MGET of two slots, 'p' SET of padding
	slot  int   // index of its hot slot
	seq   int64 // a write's number; for a read, the last write queued before it
	slot2 int   // MGET's second slot
	seq2  int64 // the last write of its register queued before the MGET
}

func (o op) String() string {
	switch o.kind {
	case 's':
		return "SET"
	case 'm':
		return "MSET"
	case 'g':
		return "GET"
	case 'M':
		return "MGET"
	case 'p':
		return "SET"
	}
	return "INCR"
}

// newOps draws n commands of a batch: writes and reads of the worker's
// own keys in a few hot slots.
func (w *worker) newOps(n int) []op {
	// A few slots per batch, so that a slot's commands meet each other.
	picks := make([]int, 1+w.rng.IntN(3))
	for i := range picks {
		picks[i] = w.rng.IntN(len(w.l.tags))
	}
	ops := make([]op, n)
	for i := range ops {
		s := picks[w.rng.IntN(len(picks))]
		reg := &w.regs[s]
		switch r := w.rng.IntN(100); {
		case r < 25:
			ops[i] = op{kind: 's', slot: s, seq: reg.queue()}
		case r < 40:
			ops[i] = op{kind: 'm', slot: s, seq: reg.queue()}
		case r < 62:
			ops[i] = op{kind: 'g', slot: s, seq: reg.issued}
		case r < 70 && len(picks) > 1 && picks[0] != picks[1]:
			// Split by slot into a part for each, each in its slot's
			// order.
			a, b := picks[0], picks[1]
			ops[i] = op{kind: 'M', slot: a, seq: w.regs[a].issued, slot2: b, seq2: w.regs[b].issued}
		case r < 70:
			ops[i] = op{kind: 'g', slot: s, seq: reg.issued}
		default:
			ops[i] = op{kind: 'i', slot: s}
		}
	}
	return ops
}

// batch is what commands are queued on: a Pipeline or a Stream.
type batch[B any] interface {
	Set(key string, value any, args ...any) B
	Do(args ...any) B
	Get(key string) B
	MGet(keys ...string) B
	Incr(key string) B
}

// queueOps queues the commands of ops, of worker w, on b.
func queueOps[B batch[B]](b B, l *Load, w int, ops []op) {
	for _, o := range ops {
		switch o.kind {
		case 's':
			b.Set(l.key(o.slot, "r", w), o.seq)
		case 'm':
			b.Do("MSET", l.key(o.slot, "r", w), o.seq, l.key(o.slot, "m", w), o.seq)
		case 'g':
			b.Get(l.key(o.slot, "r", w))
		case 'M':
			b.MGet(l.key(o.slot, "r", w), l.key(o.slot2, "r", w))
		case 'p':
			b.Set(l.key(o.slot, "p", w), padding)
		default:
			b.Incr(l.key(o.slot, "c", w))
		}
	}
}

// pipeline runs a plain batch of writes and reads of the worker's own
// keys in a few hot slots, and checks each reply in the batch's order.
func (w *worker) pipeline() bool {
	l := w.l
	n := 4 + w.rng.IntN(20)
	large := l.cfg.LargeEvery > 0 && w.rng.IntN(l.cfg.LargeEvery) == 0
	if large {
		n = largeMin + w.rng.IntN(largeMax-largeMin+1)
	}
	ops := w.newOps(n)
	if large {
		w.pad(ops)
	}
	p := l.cfg.Client.Pipeline(redpipe.NoTransaction)
	queueOps(p, l, w.id, ops)
	w.batches, w.kind = w.batches+1, "pipeline"
	c := w.newCall()
	replies, err := p.Exec(c.ctx)
	batch := w.done(c, "pipeline", err)
	if replies != nil && len(replies) != n {
		w.anomaly("misordered", "a pipeline of %d commands got %d replies", n, len(replies))
		replies = nil
	}
	return w.checkAll(ops, replies, len(ops), batch, c.start, err != nil)
}

// checkAll checks the replies of a batch of ops in its order: the first
// answered ones by their replies, the rest by the batch's outcome.
// failed says the batch as a whole failed: its replies checked count as
// partial ones.
func (w *worker) checkAll(ops []op, replies []redpipe.Value, answered int, batch outcome, start time.Time, failed bool) bool {
	allOK := true
	for i, o := range ops {
		out := batch
		var v redpipe.Value
		if replies != nil && i < answered {
			v = replies[i]
			out = outcomeOf(v.Err())
		}
		w.l.outcomes[out].Add(1)
		if failed && out == ok {
			w.l.partial.Add(1)
		}
		if out != ok {
			allOK = false
		}
		w.check(o, out, v, start)
	}
	return allOK
}

// The commands of a stream, a quarter of them SETs of a padding key of
// the slot with a value of padSize bytes: some hundreds of KiB, a few
// passes of a stream over three masters (a pass is sent once about 64
// KiB a master are queued), in few enough commands to be through within
// the calls' deadlines on a busy machine.
const (
	streamMin, streamMax = 300, 1200
	padSize              = 2000
)

var padding = strings.Repeat("p", padSize)

// largeMin and largeMax bound the commands of a large pipeline (see
// Config.LargeEvery).
const largeMin, largeMax = 200, 400

// pad makes about a quarter of the reads and INCRs of ops SETs of
// padding, leaving the registers' writes as they are.
func (w *worker) pad(ops []op) {
	for i := range ops {
		if w.rng.IntN(4) == 0 && ops[i].kind != 's' && ops[i].kind != 'm' {
			ops[i] = op{kind: 'p', slot: ops[i].slot}
		}
	}
}

// stream runs a Stream of thousands of commands of the pipelines' mix,
// and checks each reply in the stream's order, those the stream did not
// hand out (it stopped) by what Close said.
func (w *worker) stream() bool {
	l := w.l
	ops := w.newOps(streamMin + w.rng.IntN(streamMax-streamMin+1))
	w.pad(ops)
	w.batches, w.kind = w.batches+1, "stream"
	c := w.newCall()
	replies := make([]redpipe.Value, 0, len(ops))
	skipped, due := -1, 0 // the first index handed out of order, and the one due then
	s := l.cfg.Client.Stream(c.ctx, func(i int, v redpipe.Value) error {
		if i != len(replies) && skipped < 0 {
			skipped, due = i, len(replies)
		}
		replies = append(replies, v)
		return nil
	}, redpipe.ErrorsInReplies)
	queueOps(s, l, w.id, ops)
	_, err := s.Close(c.ctx)
	out := w.done(c, "stream", err)
	switch {
	case skipped >= 0:
		w.anomaly("misordered", "a stream of %d commands handed out reply %d when %d was due", len(ops), skipped, due)
		return w.checkAll(ops, nil, 0, unknown, c.start, true)
	case len(replies) > len(ops):
		w.anomaly("misordered", "a stream of %d commands handed out %d replies", len(ops), len(replies))
		return w.checkAll(ops, nil, 0, unknown, c.start, true)
	case err == nil && len(replies) < len(ops):
		w.anomaly("lost", "a stream of %d commands closed without error after %d replies", len(ops), len(replies))
		out = unknown
	}
	return w.checkAll(ops, replies, len(replies), out, c.start, err != nil)
}

// check applies what the client said of one command of a pipeline.
func (w *worker) check(o op, out outcome, v redpipe.Value, start time.Time) {
	l := w.l
	if out == ok {
		l.succeeded(o.slot, start)
		if o.kind == 'M' {
			l.succeeded(o.slot2, start)
		}
		l.checked.Add(1)
	}
	switch o.kind {
	case 'p':
		if out == ok && !isStr(v, "OK") {
			w.anomaly("misordered", "SET %s replied %s", l.key(o.slot, "p", w.id), v)
		}
	case 's', 'm':
		if out == ok && !isStr(v, "OK") {
			w.anomaly("misordered", "%s %s = %d replied %s", o, l.key(o.slot, "r", w.id), o.seq, v)
		}
		w.regs[o.slot].wrote(o.seq, out, w.batches)
	case 'g':
		if out != ok {
			return
		}
		got, good := regValue(v)
		if !good {
			w.anomaly("misordered", "GET %s replied %s", l.key(o.slot, "r", w.id), v)
			return
		}
		if kind, msg := w.regs[o.slot].read(got, o.seq, w.batches); kind != "" {
			w.anomaly(kind, "GET %s in a %s %s", l.key(o.slot, "r", w.id), w.kind, msg)
		}
	case 'M':
		if out != ok {
			return
		}
		vs, err := v.Slice()
		if err != nil || len(vs) != 2 {
			w.anomaly("misordered", "MGET %s %s replied %s", l.key(o.slot, "r", w.id), l.key(o.slot2, "r", w.id), v)
			return
		}
		for k, x := range []struct {
			slot int
			seq  int64
		}{{o.slot, o.seq}, {o.slot2, o.seq2}} {
			got, good := regValue(vs[k])
			if !good {
				w.anomaly("misordered", "MGET %s replied %s for it", l.key(x.slot, "r", w.id), vs[k])
				continue
			}
			if kind, msg := w.regs[x.slot].read(got, x.seq, w.batches); kind != "" {
				w.anomaly(kind, "MGET %s in a %s %s", l.key(x.slot, "r", w.id), w.kind, msg)
			}
		}
	case 'i':
		var r int64
		if out == ok {
			var err error
			if r, err = v.Int64(); err != nil || v.Kind() != redpipe.KindInteger {
				w.anomaly("misordered", "INCR %s replied %s", l.key(o.slot, "c", w.id), v)
				return
			}
		}
		if kind, msg := w.ctrs[o.slot].incr(out, r); kind != "" {
			w.anomaly(kind, "counter %s: %s", l.key(o.slot, "c", w.id), msg)
		}
	}
}

// regValue reads a register's value: a write's number, or 0 for none.
func regValue(v redpipe.Value) (int64, bool) {
	if v.IsNil() {
		return 0, true
	}
	if v.Kind() != redpipe.KindBulkString {
		return 0, false
	}
	s, _ := v.Text()
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

func isStr(v redpipe.Value, want string) bool {
	switch v.Kind() {
	case redpipe.KindBulkString, redpipe.KindSimpleString:
		s, err := v.Text()
		return err == nil && s == want
	}
	return false
}

// transaction increments a slot's shared counter with the
// optimistic-locking helper: read under WATCH, INCR in MULTI.
func (w *worker) transaction() bool {
	l := w.l
	s := w.rng.IntN(len(l.tags))
	key := l.sharedKey(s)
	var want int64
	c := w.newCall()
	replies, err := l.cfg.Client.Transaction(c.ctx, func(tx *redpipe.Tx) error {
		v, err := tx.Do(c.ctx, "GET", key)
		if err == nil {
			// A redirection, which Transaction follows.
			err = v.Err()
		}
		if err != nil {
			return err
		}
		n, good := int64(0), true
		if !v.IsNil() {
			n, good = regValue(v)
		}
		if !good {
			w.anomaly("misordered", "GET %s in a transaction replied %s", key, v)
			return fmt.Errorf("GET %s replied %s", key, v)
		}
		want = n + 1
		tx.Multi().Incr(key)
		return nil
	}, key)
	out := w.done(c, "Transaction", err)
	l.outcomes[out].Add(1)
	sc := &l.shared[s]
	switch out {
	case ok:
		l.succeeded(s, c.start)
		l.checked.Add(1)
		var r int64
		if len(replies) == 1 {
			r, err = replies[0].Int64()
		}
		if len(replies) != 1 || err != nil || r != want {
			w.anomaly("misordered", "transaction on %s read %d under WATCH, and its INCR replied %v", key, want-1, replies)
			return true
		}
		sc.mu.Lock()
		sc.acked++
		seen := sc.replies[r]
		sc.replies[r] = true
		sc.max = max(sc.max, r)
		sc.mu.Unlock()
		if seen {
			w.anomaly("lost", "two transactions on %s replied %d: one increment is gone", key, r)
		}
	case unknown:
		sc.mu.Lock()
		sc.unknown++
		sc.mu.Unlock()
	}
	return out == ok
}
