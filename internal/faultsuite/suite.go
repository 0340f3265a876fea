package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// config is one run of the suite.
type config struct {
	Duration    time.Duration
	Workers     int
	Seed        uint64
	MinFaults   int64
	MinCommands int64
	// MinPartial, when above 0, is how many replies of pipelines cut
	// partway must be checked, and some command of those must have been
	// said not sent: without them the run says nothing of the replies a
	// cut pipeline keeps.
	MinPartial int64
	// EpochMin and EpochMax bound the time between two kills of the
	// server.
	EpochMin, EpochMax time.Duration
	// Log prints one progress line.
	Log func(format string, args ...any)
}

func defaultConfig() config {
	return config{
		Duration: 60 * time.Second,
		Workers:  32,
		EpochMin: 3 * time.Second,
		EpochMax: 6 * time.Second,
		Log:      func(string, ...any) {},
	}
}

const (
	// hungAfter is how long past its context's end a call may take to
	// return before it counts as hung.
	hungAfter = time.Second
	// recoverWithin bounds how long the client may take to serve calls
	// again once every fault is lifted.
	recoverWithin = 5 * time.Second
	// workersStopWithin bounds the wait for the workers at the end; each
	// call is bounded by its context, so they stop within a second or two.
	workersStopWithin = 10 * time.Second
	// leakWait bounds the wait for goroutines and connections to go after
	// the client is closed; goroutineMargin allows for runtime and test
	// framework goroutines that come and go on their own.
	leakWait        = 5 * time.Second
	goroutineMargin = 5
	// accounts are the keys Transaction moves value between; their sum
	// must stay accounts*initialBalance.
	accounts       = 16
	initialBalance = 1000
	// maxReports bounds the detailed lines printed for anomalies; the
	// counts keep going.
	maxReports = 30
)

// result is what the final line reports.
type result struct {
	Faults, Checked                                   int64
	Misaligned, Duplicated, HalfApplied, Hung, Leaked int64
	// Partial counts the replies checked of pipelines cut partway, and
	// NotSent the commands of those the client said it never wrote.
	Partial, NotSent int64
}

func (r result) String() string {
	return fmt.Sprintf("faults: %d injected, %d commands checked, %d misaligned, %d duplicated, %d half-applied, %d hung, %d leaked; partial replies checked: %d (%d not sent)",
		r.Faults, r.Checked, r.Misaligned, r.Duplicated, r.HalfApplied, r.Hung, r.Leaked, r.Partial, r.NotSent)
}

// problems says why the run fails, if it does.
func (r result) problems(cfg config) []string {
	var out []string
	if n := r.Misaligned + r.Duplicated + r.HalfApplied + r.Hung + r.Leaked; n > 0 {
		out = append(out, fmt.Sprintf("%d anomalies", n))
	}
	if r.Faults < cfg.MinFaults {
		out = append(out, fmt.Sprintf("only %d faults injected, want at least %d", r.Faults, cfg.MinFaults))
	}
	if r.Checked < cfg.MinCommands {
		out = append(out, fmt.Sprintf("only %d commands checked, want at least %d", r.Checked, cfg.MinCommands))
	}
	if r.Partial < cfg.MinPartial {
		out = append(out, fmt.Sprintf("only %d replies of pipelines cut partway checked, want at least %d: no fault cut a pipeline after some of its replies", r.Partial, cfg.MinPartial))
	}
	if cfg.MinPartial > 0 && r.NotSent == 0 {
		out = append(out, "no command of a cut pipeline was said not sent: no fault cut a large pipeline while it was written, and what the client says of such commands went unchecked")
	}
	return out
}

// outcome is what the client said about a call, by redpipe.OutcomeOf.
type outcome uint8

const (
	applied outcome = iota // the call succeeded
	unknown
	notSent
	notApplied
)

var outcomeNames = [...]string{"ok", "unknown", "not-sent", "not-applied"}

func outcomeOf(err error) outcome {
	if err == nil {
		return applied
	}
	switch redpipe.OutcomeOf(err) {
	case redpipe.OutcomeNotSent:
		return notSent
	case redpipe.OutcomeNotApplied:
		return notApplied
	}
	return unknown
}

// certainlyNot reports whether the client said the call had no effect.
func (o outcome) certainlyNot() bool { return o == notSent || o == notApplied }

// The log of effects to verify once the epoch ends. Every key is unique to
// one call, so what the server holds for it can only come from that call.
type incrEntry struct {
	key      string
	out      outcome
	reported bool // already counted as duplicated from its reply
}

// setEntry is a SET of a pipeline that was cut partway: its key holds its
// value if and only if it ran.
type setEntry struct {
	key, val string
	out      outcome
}

type txEntry struct {
	prefix string // keys prefix:a, prefix:b, prefix:n
	val    string
	out    outcome
}

type xferEntry struct {
	marker string // set by the transfer's MULTI block, so present iff it was applied
	out    outcome
}

type suite struct {
	cfg    config
	srv    *redistest.Server
	proxy  *redistest.Proxy
	client *redpipe.Client
	start  time.Time

	// epoch numbers the server's lives: keys carry the epoch a call
	// started in, and a kill starts a new one, so that data lost with a
	// killed server is never checked.
	epoch atomic.Int64
	// kills changes just before each kill; a call that sees it change may
	// have lost its writes with the server.
	kills atomic.Int64

	faults, checked                            atomic.Int64
	misaligned, duplicated, half, hung, leaked atomic.Int64
	reports                                    atomic.Int64
	// partial counts the replies checked of pipelines cut partway, and
	// notSent their commands the client said it never wrote, whose
	// effect the epoch's check finds absent.
	partial, notSent atomic.Int64
	outcomes         [len(outcomeNames)]atomic.Int64

	logMu    sync.Mutex
	logEpoch int64 // entries of other epochs are dropped; -1 while checking
	incrs    []incrEntry
	sets     []setEntry
	txs      []txEntry
	xfers    []xferEntry

	timerMu sync.Mutex
	timers  []*time.Timer // pending fault clean-ups, stopped at the end
}

// report counts one anomaly and describes the first few.
func (s *suite) report(counter *atomic.Int64, kind, format string, args ...any) {
	counter.Add(1)
	if s.reports.Add(1) <= maxReports {
		s.cfg.Log("ANOMALY %s: %s", kind, fmt.Sprintf(format, args...))
	}
}

func (s *suite) result() result {
	return result{
		Faults: s.faults.Load(), Checked: s.checked.Load(),
		Misaligned: s.misaligned.Load(), Duplicated: s.duplicated.Load(), HalfApplied: s.half.Load(),
		Hung: s.hung.Load(), Leaked: s.leaked.Load(),
		Partial: s.partial.Load(), NotSent: s.notSent.Load(),
	}
}

// run runs the whole suite and returns its counts; an error means it could
// not run to the end (no server, say), and the counts are partial.
func run(cfg config) (res result, err error) {
	s := &suite{cfg: cfg, start: time.Now()}
	defer func() { res = s.result() }()
	if cfg.Workers < 1 || cfg.Duration <= 0 || cfg.EpochMin <= 0 || cfg.EpochMax < cfg.EpochMin {
		return res, fmt.Errorf("bad configuration: %+v", cfg)
	}
	s.srv, err = redistest.StartServer()
	if err != nil {
		return res, err
	}
	defer s.srv.Stop()
	s.proxy, err = redistest.NewProxy(s.srv.Addr)
	if err != nil {
		return res, err
	}
	defer s.proxy.Close()
	if err := s.openEpoch(1); err != nil {
		return res, err
	}
	cfg.Log("faultsuite: seed %d, %d workers, %v, redis-server %s behind proxy %s", cfg.Seed, cfg.Workers, cfg.Duration, s.srv.Addr, s.proxy.Addr)

	baseline := runtime.NumGoroutine()
	s.client, err = redpipe.NewClient(redpipe.Options{
		Addr:         s.proxy.Addr,
		ReplyTimeout: time.Second,
		DialTimeout:  time.Second,
		PoolSize:     16,
	})
	if err != nil {
		return res, err
	}
	closed := false
	defer func() {
		if !closed {
			s.client.Close()
		}
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{s: s, id: i, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)))}
			w.loop(stop, s.start.Add(cfg.Duration+workersStopWithin))
		}()
	}

	if err := s.inject(rand.New(rand.NewPCG(cfg.Seed, 1<<32))); err != nil {
		close(stop)
		wg.Wait()
		return res, err
	}

	close(stop)
	if !waitGroupWithin(&wg, workersStopWithin) {
		s.report(&s.hung, "hung", "workers still running %v after the end", workersStopWithin)
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
	}
	s.stopTimers()
	if err := s.endEpoch(false); err != nil {
		return res, err
	}

	s.client.Close()
	closed = true
	s.checkLeaks(baseline)
	cfg.Log("[%5.1fs] done: %s", time.Since(s.start).Seconds(), s.result())
	return res, nil
}

func waitGroupWithin(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// openEpoch prepares a fresh server for epoch e: the accounts start at
// their initial balance. It goes straight to the server, not through the
// client under test.
func (s *suite) openEpoch(e int64) error {
	args := []string{"MSET"}
	for i := range accounts {
		args = append(args, accountKey(e, i), strconv.Itoa(initialBalance))
	}
	if _, err := s.srv.Do(args...); err != nil {
		return fmt.Errorf("preparing epoch %d: %w", e, err)
	}
	s.logMu.Lock()
	s.logEpoch = e
	s.epoch.Store(e)
	s.logMu.Unlock()
	return nil
}

func accountKey(e int64, i int) string { return fmt.Sprintf("acc:%d:%d", e, i) }

// inject is the fault injector; it also ends each epoch with a kill of the
// server. It returns when the run's duration is over.
func (s *suite) inject(rng *rand.Rand) error {
	deadline := s.start.Add(s.cfg.Duration)
	epochLen := func() time.Duration {
		return s.cfg.EpochMin + time.Duration(rng.Int64N(int64(s.cfg.EpochMax-s.cfg.EpochMin)+1))
	}
	nextKill := time.Now().Add(epochLen())
	nextProgress := time.Now().Add(5 * time.Second)
	// The bound on iterations is a backstop: at one every 50ms or more the
	// deadline ends the loop long before.
	for range int(s.cfg.Duration/(50*time.Millisecond)) + 1 {
		pause := 50*time.Millisecond + time.Duration(rng.Int64N(int64(250*time.Millisecond)))
		if time.Until(deadline) < pause {
			time.Sleep(max(time.Until(deadline), 0))
			return nil
		}
		time.Sleep(pause)
		now := time.Now()
		// A kill needs time after it for the client to come back and do
		// work worth checking in the new epoch.
		if now.After(nextKill) && deadline.Sub(now) > 2*time.Second {
			if err := s.endEpoch(true); err != nil {
				return err
			}
			nextKill = time.Now().Add(epochLen())
		} else {
			s.injectOne(rng)
		}
		if now.After(nextProgress) {
			s.progress()
			nextProgress = now.Add(5 * time.Second)
		}
	}
	return nil
}

func (s *suite) progress() {
	var b strings.Builder
	for i := range s.outcomes {
		fmt.Fprintf(&b, " %s %d", outcomeNames[i], s.outcomes[i].Load())
	}
	s.cfg.Log("[%5.1fs] epoch %d, %d conns: %s | calls:%s", time.Since(s.start).Seconds(), s.epoch.Load(), s.proxy.Conns(), s.result(), b.String())
}

// later runs a fault's clean-up after d. Clean-ups only lift faults, so
// one that runs late or lifts a newer fault early does no harm.
func (s *suite) later(d time.Duration, f func()) {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	s.timers = append(s.timers, time.AfterFunc(d, f))
}

func (s *suite) stopTimers() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	for _, t := range s.timers {
		t.Stop()
	}
	s.timers = nil
}

func randDuration(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

var directions = []redistest.Direction{redistest.ClientToServer, redistest.ServerToClient, redistest.Both}

// injectOne injects one fault picked at random.
func (s *suite) injectOne(rng *rand.Rand) {
	p := s.proxy
	switch n := rng.IntN(100); {
	case n < 25:
		dir := directions[rng.IntN(len(directions))]
		p.Stall(dir, true)
		s.later(randDuration(rng, 100*time.Millisecond, 1500*time.Millisecond), func() { p.Stall(dir, false) })
	case n < 37:
		p.SetLatency(randDuration(rng, time.Millisecond, 80*time.Millisecond))
		s.later(randDuration(rng, 200*time.Millisecond, 2*time.Second), func() { p.SetLatency(0) })
	case n < 52:
		p.Cut(redistest.CutRST)
	case n < 67:
		p.Cut(redistest.CutFIN)
	case n < 87:
		// Small budgets cut a command or a reply in its middle; larger
		// ones let a few through first.
		budget := rng.Int64N(64)
		if rng.IntN(2) == 0 {
			budget = rng.Int64N(4096)
		}
		p.PassBytes(budget, directions[rng.IntN(len(directions))])
		s.later(randDuration(rng, 100*time.Millisecond, time.Second), p.Reset)
	default:
		p.DropAll()
	}
	s.faults.Add(1)
}

// endEpoch lifts every fault, checks that the client recovers, and checks
// everything logged in the current epoch against the server. With kill it
// then kills the server, restarts it empty and opens the next epoch.
func (s *suite) endEpoch(kill bool) error {
	e := s.epoch.Load()
	s.stopTimers()
	s.proxy.Reset()
	s.waitRecovery()
	if err := s.checkEpoch(e); err != nil {
		return err
	}
	if !kill {
		return nil
	}
	s.kills.Add(1)
	if err := s.srv.Kill(); err != nil {
		return err
	}
	s.faults.Add(1)
	if err := s.srv.Restart(); err != nil {
		return err
	}
	return s.openEpoch(e + 1)
}

// waitRecovery checks that the client serves calls again soon after the
// faults are gone; a client that does not is as good as hung.
func (s *suite) waitRecovery() {
	start := time.Now()
	var last error
	for i := 0; time.Since(start) < recoverWithin && i < 1000; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		tok := fmt.Sprintf("probe:%d", i)
		got, err := s.client.Echo(ctx, tok)
		cancel()
		if err == nil {
			if got != tok {
				s.report(&s.misaligned, "misaligned", "recovery probe ECHO %q got %q", tok, got)
			}
			return
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	s.report(&s.hung, "hung", "the client did not recover within %v of the faults being lifted: %v", recoverWithin, last)
}

// record logs an effect to verify at the end of epoch e, unless e is no
// longer the epoch being logged (its check is done or under way).
func (s *suite) record(e int64, f func()) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if e == s.logEpoch {
		f()
	}
}

// mget reads keys straight from the server, in batches.
func (s *suite) mget(keys []string) ([]any, error) {
	const perCmd, perCall = 1000, 20
	out := make([]any, 0, len(keys))
	for len(keys) > 0 {
		var cmds [][]string
		for len(keys) > 0 && len(cmds) < perCall {
			n := min(perCmd, len(keys))
			cmds = append(cmds, append([]string{"MGET"}, keys[:n]...))
			keys = keys[n:]
		}
		replies, err := s.srv.Pipeline(cmds...)
		if err != nil {
			return nil, fmt.Errorf("checker MGET: %w", err)
		}
		for _, r := range replies {
			vals, ok := r.([]any)
			if !ok {
				return nil, fmt.Errorf("checker MGET: reply %#v", r)
			}
			out = append(out, vals...)
		}
	}
	return out, nil
}

// checkEpoch verifies what was logged in epoch e against the server, which
// has not been killed since e began.
func (s *suite) checkEpoch(e int64) error {
	s.logMu.Lock()
	incrs, sets, txs, xfers := s.incrs, s.sets, s.txs, s.xfers
	s.incrs, s.sets, s.txs, s.xfers = nil, nil, nil, nil
	s.logEpoch = -1
	s.logMu.Unlock()

	// Counters: one INCR each on a key of its own.
	keys := make([]string, len(incrs))
	for i, en := range incrs {
		keys[i] = en.key
	}
	vals, err := s.mget(keys)
	if err != nil {
		return err
	}
	for i, en := range incrs {
		n := 0
		if vals[i] != nil {
			n, _ = strconv.Atoi(vals[i].(string))
		}
		switch {
		case n > 1:
			if !en.reported {
				s.report(&s.duplicated, "duplicated", "INCR %s (client: %s) applied %d times", en.key, outcomeNames[en.out], n)
			}
		case n == 1 && en.out.certainlyNot():
			s.report(&s.duplicated, "duplicated", "INCR %s applied though the client said %s", en.key, outcomeNames[en.out])
		case n == 0 && en.out == applied:
			s.report(&s.misaligned, "misaligned", "INCR %s replied 1 but never ran: the reply was another command's", en.key)
		case n < 0:
			s.report(&s.misaligned, "misaligned", "INCR %s holds %v", en.key, vals[i])
		}
		s.checked.Add(1)
	}

	// SETs of cut pipelines: their value if they ran, nothing if not.
	keys = keys[:0]
	for _, en := range sets {
		keys = append(keys, en.key)
	}
	vals, err = s.mget(keys)
	if err != nil {
		return err
	}
	for i, en := range sets {
		switch {
		case vals[i] == en.val:
			if en.out.certainlyNot() {
				s.report(&s.duplicated, "duplicated", "SET %s applied though the client said %s", en.key, outcomeNames[en.out])
			}
		case vals[i] == nil:
			if en.out == applied {
				s.report(&s.misaligned, "misaligned", "SET %s replied OK but never ran: the reply was another command's", en.key)
			}
		default:
			s.report(&s.misaligned, "misaligned", "SET %s holds %v, want %q or nothing", en.key, vals[i], en.val)
		}
		s.checked.Add(1)
	}

	// Transactional pipelines: all three keys or none.
	keys = keys[:0]
	for _, en := range txs {
		keys = append(keys, en.prefix+":a", en.prefix+":b", en.prefix+":n")
	}
	vals, err = s.mget(keys)
	if err != nil {
		return err
	}
	for i, en := range txs {
		a, b, n := vals[3*i], vals[3*i+1], vals[3*i+2]
		switch {
		case a == nil && b == nil && n == nil:
			if en.out == applied {
				s.report(&s.misaligned, "misaligned", "transaction %s replied as applied but nothing of it is there", en.prefix)
			}
		case a == en.val && b == en.val && n == "1":
			if en.out.certainlyNot() {
				s.report(&s.duplicated, "duplicated", "transaction %s applied though the client said %s", en.prefix, outcomeNames[en.out])
			}
		case a == en.val && b == en.val && n != nil:
			s.report(&s.duplicated, "duplicated", "transaction %s applied more than once (n = %v)", en.prefix, n)
		default:
			s.report(&s.half, "half-applied", "transaction %s (client: %s): a=%v b=%v n=%v, want %q %q 1 or nothing",
				en.prefix, outcomeNames[en.out], a, b, n, en.val, en.val)
		}
		s.checked.Add(3)
	}

	// Transfers: the marker says whether each was applied...
	keys = keys[:0]
	for _, en := range xfers {
		keys = append(keys, en.marker)
	}
	vals, err = s.mget(keys)
	if err != nil {
		return err
	}
	for i, en := range xfers {
		switch present := vals[i] != nil; {
		case present && en.out.certainlyNot():
			s.report(&s.duplicated, "duplicated", "transfer %s applied though the client said %s", en.marker, outcomeNames[en.out])
		case !present && en.out == applied:
			s.report(&s.misaligned, "misaligned", "transfer %s replied as applied but never ran", en.marker)
		}
		s.checked.Add(3)
	}
	// ...and the balances, read in one atomic MGET, still add up.
	keys = keys[:0]
	for i := range accounts {
		keys = append(keys, accountKey(e, i))
	}
	vals, err = s.mget(keys)
	if err != nil {
		return err
	}
	sum, missing := 0, 0
	for _, v := range vals {
		if v == nil {
			missing++
			continue
		}
		n, _ := strconv.Atoi(v.(string))
		sum += n
	}
	if missing > 0 || sum != accounts*initialBalance {
		s.report(&s.half, "half-applied", "epoch %d: the accounts add up to %d with %d missing, want %d", e, sum, missing, accounts*initialBalance)
	}
	s.cfg.Log("[%5.1fs] epoch %d checked: %d counters, %d SETs of cut pipelines, %d transactions, %d transfers, balance %d",
		time.Since(s.start).Seconds(), e, len(incrs), len(sets), len(txs), len(xfers), sum)
	return nil
}

// checkLeaks runs after the client is closed: its goroutines and its
// connections, through the proxy and on the server, must all be gone.
func (s *suite) checkLeaks(baseline int) {
	s.proxy.Reset() // a stalled pump would keep a closed client's socket open
	deadline := time.Now().Add(leakWait)
	var g, pc, sc int
	var scErr error
	for i := 0; i < 1000; i++ {
		g, pc = runtime.NumGoroutine(), s.proxy.Conns()
		sc, scErr = s.serverConns()
		if (g <= baseline+goroutineMargin && pc == 0 && sc == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if extra := g - baseline - goroutineMargin; extra > 0 {
		s.report(&s.leaked, "leaked", "%d goroutines after Close, baseline %d (+%d allowed)", g, baseline, goroutineMargin)
		s.leaked.Add(int64(extra) - 1)
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
	}
	if scErr != nil {
		s.report(&s.leaked, "leaked", "cannot list the server's clients: %v", scErr)
	}
	if n := max(pc, sc); n > 0 {
		s.report(&s.leaked, "leaked", "%d connections still open after Close (%d through the proxy, %d on the server)", n, pc, sc)
		s.leaked.Add(int64(n) - 1)
	}
	s.cfg.Log("[%5.1fs] after Close: %d goroutines (baseline %d), %d proxied connections, %d server connections",
		time.Since(s.start).Seconds(), g, baseline, pc, sc)
}

// serverConns counts the server's client connections other than the one
// asking; with the client closed, only the client's could remain.
func (s *suite) serverConns() (int, error) {
	replies, err := s.srv.Pipeline([]string{"CLIENT", "ID"}, []string{"CLIENT", "LIST"})
	if err != nil {
		return 0, err
	}
	self, ok1 := replies[0].(int64)
	list, ok2 := replies[1].(string)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("CLIENT ID, CLIENT LIST: %#v", replies)
	}
	n := 0
	for line := range strings.Lines(list) {
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "id="+strconv.FormatInt(self, 10)+" ") {
			n++
		}
	}
	return n, nil
}

var errMissing = errors.New("account missing: the server was restarted under this call")
