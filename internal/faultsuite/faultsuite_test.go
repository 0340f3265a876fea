package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// TestFaultsShort runs the suite for a few seconds, long enough for every
// kind of fault and a kill of the server, and wants no anomaly.
func TestFaultsShort(t *testing.T) {
	cfg := defaultConfig()
	cfg.Duration = 8 * time.Second
	cfg.Workers = 16
	cfg.Seed = rand.Uint64()
	cfg.MinFaults = 10
	cfg.MinCommands = 1000
	cfg.Log = t.Logf
	res, err := run(cfg)
	if err != nil {
		t.Fatalf("the suite could not run: %v", err)
	}
	t.Log(res)
	for _, p := range res.problems(cfg) {
		t.Error(p)
	}
}

// TestClusterPhaseShort runs the cluster phase for a few seconds, long
// enough for reshards of both kinds and a graceful failover, and wants no
// anomaly and the last line in its documented form.
func TestClusterPhaseShort(t *testing.T) {
	cfg := defaultClusterConfig()
	cfg.Duration = 6 * time.Second
	cfg.FailoverEvery = 3 * time.Second
	cfg.Seed = rand.Uint64()
	cfg.MinReshards, cfg.MinFailovers, cfg.MinCommands = 2, 1, 1000
	cfg.Log = t.Logf
	res, err := runCluster(cfg)
	if err != nil {
		t.Fatalf("the cluster phase could not run: %v", err)
	}
	t.Log(res)
	for _, p := range res.problems(cfg) {
		t.Error(p)
	}
	line := regexp.MustCompile(`^cluster faults: \d+ reshards, \d+ failovers, \d+ commands checked, 0 misordered, 0 lost, 0 duplicated, 0 hung; partial replies checked: \d+ \(\d+ not sent\)$`)
	if !line.MatchString(res.String()) {
		t.Errorf("last line %q is not of the documented form", res)
	}
}

// TestCheckerCatches feeds the epoch checker a log and a server state that
// disagree in every way it must notice, so that a clean run means the
// client was clean and not that the checker looked away.
func TestCheckerCatches(t *testing.T) {
	srv := redistest.Start(t)
	s := &suite{cfg: defaultConfig(), srv: srv, start: time.Now()}
	s.cfg.Log = t.Logf
	if err := s.openEpoch(1); err != nil {
		t.Fatal(err)
	}
	srv.MustDo(t, "MSET",
		"in:ok", "1", "in:twice", "2", "in:unsent", "1",
		"tx:full:a", "v", "tx:full:b", "v", "tx:full:n", "1",
		"tx:half:a", "v",
		"xf:refused", "1",
		"ps:ok", "v", "ps:unsent", "v",
		accountKey(1, 0), "990") // 10 gone from the accounts' sum
	s.incrs = []incrEntry{
		{key: "in:ok", out: applied},
		{key: "in:twice", out: unknown},  // duplicated
		{key: "in:unsent", out: notSent}, // duplicated
		{key: "in:lost", out: applied},   // misaligned: its reply was not its own
		{key: "in:maybe", out: unknown},  // fine either way
		{key: "in:gone", out: applied},   // misaligned too
	}
	s.sets = []setEntry{
		{key: "ps:ok", val: "v", out: applied},
		{key: "ps:unsent", val: "v", out: notSent}, // duplicated
		{key: "ps:lost", val: "v", out: applied},   // misaligned: its OK was not its own
		{key: "ps:maybe", val: "v", out: unknown},  // fine either way
	}
	s.txs = []txEntry{
		{prefix: "tx:full", val: "v", out: applied},
		{prefix: "tx:half", val: "v", out: unknown}, // half-applied
		{prefix: "tx:none", val: "v", out: notApplied},
	}
	s.xfers = []xferEntry{{marker: "xf:refused", out: notApplied}} // duplicated
	if err := s.checkEpoch(1); err != nil {
		t.Fatal(err)
	}
	r := s.result()
	if r.Duplicated != 4 || r.Misaligned != 3 || r.HalfApplied != 2 {
		t.Errorf("checker found %d duplicated, %d misaligned, %d half-applied; want 4, 3, 2", r.Duplicated, r.Misaligned, r.HalfApplied)
	}
	if want := int64(6 + 4 + 3*3 + 3); r.Checked != want {
		t.Errorf("checked %d commands, want %d", r.Checked, want)
	}
	// Entries of a closed epoch are dropped, not checked against the next
	// server.
	s.record(1, func() { t.Error("recorded into a closed epoch") })
}

// TestTransactionReturnsByDeadline: Client.Transaction must return by its
// context's deadline even when the server stops answering in the middle
// of it. The fault suite's hung counter finds this only when a stall
// outlasts DialTimeout; here it is forced. The stall lasts until the
// Transaction returns, DialTimeout is an hour and ReplyTimeout off: a
// Transaction that waited for EXEC's reply, or for a bound other than its
// context's, would not return at all. (No bound on its time: a loaded machine may run the
// test's goroutines late.)
func TestTransactionReturnsByDeadline(t *testing.T) {
	srv := redistest.Start(t)
	p := redistest.StartProxy(t, srv.Addr)
	c, err := redpipe.NewClient(redpipe.Options{Addr: p.Addr, DialTimeout: time.Hour, ReplyTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	returned := make(chan error, 1)
	go func() {
		_, err := c.Transaction(ctx, func(tx *redpipe.Tx) error {
			if _, err := tx.Do(ctx, "GET", "k"); err != nil {
				return err
			}
			p.Stall(redistest.ServerToClient, true) // EXEC's reply never comes
			tx.Multi().Set("k", "v")
			return nil
		}, "k")
		returned <- err
	}()
	defer p.Reset()
	select {
	case err = <-returned:
	case <-time.After(30 * time.Second):
		t.Fatalf("Transaction still running 30s after its %v deadline, with EXEC's reply stalled", deadline)
	}
	if err == nil {
		t.Fatal("the transaction succeeded with its reply stalled")
	}
}

// TestDeadlineErrorsAreContextErrors: a call that runs out of time on a
// healthy connection must fail with an error matching the context's, and
// must not take the shared connection, and the other calls on it, down.
func TestDeadlineErrorsAreContextErrors(t *testing.T) {
	srv := redistest.Start(t)
	c, err := redpipe.NewClient(redpipe.Options{Addr: srv.Addr, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do(context.Background(), "PING"); err != nil {
		t.Fatal(err)
	}
	var timedOut, other int
	start := time.Now()
	// Deadlines of a few microseconds end some calls before they are put
	// in line, some while they are written and some while they wait.
	for i := 0; i < 20000 && other < 5 && time.Since(start) < 10*time.Second; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%40)*time.Microsecond)
		_, err := c.Do(ctx, "PING")
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded):
			timedOut++
		default:
			other++
			t.Errorf("a call that ran out of time failed with %q (outcome %v), which is not the context's error", err, redpipe.OutcomeOf(err))
		}
	}
	t.Logf("%d calls ran out of time", timedOut)
}

// TestDialWaitHonoursContext: a call that finds no usable shared
// connection waits for the one being dialled by another call, and must
// stop waiting when its own context ends. The other call's dial lasts
// until the test lifts the stall, after the call returned (DialTimeout is
// an hour, ReplyTimeout off): a call that waited for that dial would not
// return at all.
// (No bound on its time: a loaded machine may run the test's goroutines
// late.)
func TestDialWaitHonoursContext(t *testing.T) {
	srv := redistest.Start(t)
	p := redistest.StartProxy(t, srv.Addr)
	c, err := redpipe.NewClient(redpipe.Options{Addr: p.Addr, MaxRetries: -1, DialTimeout: time.Hour, ReplyTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The handshake's reply never comes, so the first call holds the dial
	// until the stall is lifted.
	p.Stall(redistest.ServerToClient, true)
	defer p.Reset()
	first := make(chan error, 1)
	go func() {
		_, err := c.Do(context.Background(), "PING")
		first <- err
	}()
	// Its dial is under way once its HELLO has reached the server: the
	// reply is what the proxy holds back.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		list, _ := srv.MustDo(t, "CLIENT", "LIST").(string)
		if strings.Contains(list, " cmd=hello ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first call's HELLO did not reach the server within 10s; CLIENT LIST:\n%s", list)
		}
	}
	const deadline = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	second := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, "PING")
		second <- err
	}()
	select {
	case err = <-second:
	case err = <-first:
		t.Fatalf("the first call returned (%v) with its dial's reply stalled", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("a call with a %v deadline still waits 30s later, for another call's dial", deadline)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call with a %v deadline, behind another call's dial: %v; want its context's error", deadline, err)
	}
	p.Reset()
	select {
	case <-first:
	case <-time.After(30 * time.Second):
		t.Fatal("the first call still waits 30s after the stall was lifted")
	}
}

// TestOutcomeAgreesWithErrNotApplied: an error that matches ErrNotApplied
// says the transaction certainly did not run, so OutcomeOf must not call
// it unknown. Exec on a Tx whose connection was lost while watching is
// such an error.
func TestOutcomeAgreesWithErrNotApplied(t *testing.T) {
	srv := redistest.Start(t)
	p := redistest.StartProxy(t, srv.Addr)
	c, err := redpipe.NewClient(redpipe.Options{Addr: p.Addr, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	tx, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	p.Cut(redistest.CutRST)
	if _, err := tx.Do(ctx, "GET", "k"); err == nil {
		t.Fatal("GET succeeded on a reset connection")
	}
	_, err = tx.Multi().Set("k", "v").Exec(ctx)
	if !errors.Is(err, redpipe.ErrNotApplied) {
		t.Fatalf("Exec after the connection was lost: %v, want an error matching ErrNotApplied", err)
	}
	if o := redpipe.OutcomeOf(err); o != redpipe.OutcomeNotApplied {
		t.Errorf("OutcomeOf(%q) = %v, but the error matches ErrNotApplied", err, o)
	}
	if v := srv.MustDo(t, "GET", "k"); v != nil {
		t.Errorf("the transaction ran: k = %v", v)
	}
}

// TestProblemsWantCutPipelines: a run asked for replies of cut pipelines
// fails if none was checked, or if none of its commands was said not sent
// (single phase) or no connection was cut (cluster phase): else the
// checks of what a cut pipeline keeps could go unexercised, and the run
// pass all the same.
func TestProblemsWantCutPipelines(t *testing.T) {
	cfg := defaultConfig()
	cfg.MinPartial = 1
	for _, c := range []struct {
		r    result
		want int
	}{
		{result{Partial: 0, NotSent: 0}, 2},
		{result{Partial: 5, NotSent: 0}, 1},
		{result{Partial: 0, NotSent: 3}, 1},
		{result{Partial: 5, NotSent: 3}, 0},
	} {
		if got := c.r.problems(cfg); len(got) != c.want {
			t.Errorf("%+v: problems %q, want %d", c.r, got, c.want)
		}
	}
	if got := (result{}).problems(defaultConfig()); len(got) != 0 {
		t.Errorf("with no minimum: problems %q", got)
	}
	ccfg := defaultClusterConfig()
	ccfg.MinPartial = 1
	for _, c := range []struct {
		r    clusterResult
		want int
	}{
		{clusterResult{Partial: 0, Cuts: 0}, 2},
		{clusterResult{Partial: 5, Cuts: 0}, 1},
		{clusterResult{Partial: 0, Cuts: 3}, 1},
		{clusterResult{Partial: 5, Cuts: 3}, 0},
	} {
		if got := c.r.problems(ccfg); len(got) != c.want {
			t.Errorf("%+v: problems %q, want %d", c.r, got, c.want)
		}
	}
	if got := (clusterResult{}).problems(defaultClusterConfig()); len(got) != 0 {
		t.Errorf("with no minimum: problems %q", got)
	}
}
