package main

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// checkCostRecord checks one S8 record of TestEveryScenarioTiny.
func checkCostRecord(t *testing.T, r record) {
	t.Helper()
	k := r.Scenario + " " + r.Case + " " + r.Client
	if !(r.OpsPerSec > 0) || r.Reps != 1 {
		t.Errorf("%s: bad record %+v", k, r)
	}
	idle, paced := isIdleCase(r.Case), strings.Contains(r.Case, "every-")
	// A process that only sleeps may have used no CPU time worth counting.
	if (r.CPUUsPerOp == nil || !(*r.CPUUsPerOp > 0) || r.CPUNsPerOp == nil) && !(idle && r.Client == noClient) {
		t.Errorf("%s: CPU µs/op %v", k, fmtOpt(r.CPUUsPerOp, "%.1f"))
	}
	if r.ServerBusyPct == nil {
		t.Errorf("%s: no server busy share", k)
	}
	if (r.RatioVsBestPeer == nil) != (idle || paced || r.Client == noClient) {
		t.Errorf("%s: throughput ratio %v", k, fmtRatio(r.RatioVsBestPeer))
	}
	if r.Client == noClient || idle {
		if r.P50Us != nil || r.P99Us != nil || r.P999Us != nil {
			t.Errorf("%s: latency measured: %+v", k, r.costFields)
		}
		if idle && r.Ops != 1 {
			t.Errorf("%s: %v ops, want the one idle interval", k, r.Ops)
		}
		if r.Client == noClient && r.CPUVsBestPeer != nil {
			t.Errorf("%s: a ratio to peers it does not have", k)
		}
		return
	}
	if r.P50Us == nil || r.P99Us == nil || r.P999Us == nil || !(*r.P50Us > 0 && *r.P50Us <= *r.P99Us && *r.P99Us <= *r.P999Us) {
		t.Errorf("%s: latencies p50 %v p99 %v p99.9 %v", k, fmtOpt(r.P50Us, "%.1f"), fmtOpt(r.P99Us, "%.1f"), fmtOpt(r.P999Us, "%.1f"))
	}
	if r.CPUVsBestPeer == nil || r.P50VsBestPeer == nil || r.P99VsBestPeer == nil {
		t.Errorf("%s: missing ratios to the best peer: %+v", k, r.costFields)
	}
}

func TestLatenciesQuantiles(t *testing.T) {
	var h latencies
	if h.quantile(0.5) != 0 {
		t.Error("an empty histogram has a median")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var xs []time.Duration
	for range 100000 {
		// From nanoseconds to seconds, so that every scale of bucket is used.
		d := time.Duration(math.Exp(rng.Float64() * math.Log(float64(time.Second))))
		xs = append(xs, d)
		h.record(d)
	}
	slices.Sort(xs)
	for _, q := range []float64{0, 0.001, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := xs[max(int(math.Ceil(q*float64(len(xs))))-1, 0)]
		got := h.quantile(q)
		// The middle of the bucket holding the sample is within half a
		// bucket, 1/(2·latSub) of its lower bound, of it.
		if diff := math.Abs(float64(got - exact)); diff > float64(exact)/(2*latSub)+0.5 {
			t.Errorf("quantile %v = %v, sample is %v", q, got, exact)
		}
	}
	// Bucket bounds hold their values, and buckets follow one another.
	for v := uint64(0); v < 1<<20; v += 1 + v/97 {
		i := latIndex(v)
		lo, w := latBounds(i)
		if v < lo || v >= lo+w {
			t.Fatalf("%d is in bucket %d = [%d, %d)", v, i, lo, lo+w)
		}
		if next, _ := latBounds(i + 1); next != lo+w {
			t.Fatalf("bucket %d ends at %d, bucket %d starts at %d", i, lo+w, i+1, next)
		}
	}
	// Durations beyond the range, and negative ones, are counted, not lost.
	var edge latencies
	edge.record(-time.Second)
	edge.record(time.Duration(math.MaxInt64))
	if edge.n != 2 || edge.counts[0] != 1 || edge.counts[latBuckets-1] != 1 {
		t.Errorf("edges counted as %d, first bucket %d, last %d", edge.n, edge.counts[0], edge.counts[latBuckets-1])
	}
	var m latencies
	m.merge(&h)
	m.merge(&edge)
	if m.n != h.n+2 || m.quantile(0.5) != h.quantile(0.5) {
		t.Errorf("merged %d calls, median %v against %v", m.n, m.quantile(0.5), h.quantile(0.5))
	}
}

func TestCallFor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := redistest.Start(t)
	c, err := openClient(ctx, "redpipe", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys, vals := s8Keys(4)
	if err := c.PipelineSetGet(ctx, keys, vals); err != nil {
		t.Fatal(err)
	}
	hists := make([]latencies, len(keys))
	n, err := callFor(ctx, c, keys, vals, 0, time.Time{}, 5, hists)
	if err != nil || n != 20 {
		t.Fatalf("callFor made %d calls, %v; want 20", n, err)
	}
	for i := range hists {
		if hists[i].n != 5 {
			t.Errorf("caller %d counted %d calls", i, hists[i].n)
		}
	}
	// Paced callers stop at the deadline. A loaded machine may lose ticks,
	// so only the bounds are certain: one call at once, and no more than
	// one per tick after it.
	clear(hists)
	n, err = callFor(ctx, c, keys, vals, 5*time.Millisecond, time.Now().Add(50*time.Millisecond), 0, hists)
	if err != nil || n < 4 || n > 4*11 {
		t.Errorf("paced callFor made %d calls, %v; want 4 to 44", n, err)
	}
	// A caller that gets a CPU only after the deadline still makes its call.
	for _, every := range []time.Duration{0, time.Millisecond} {
		clear(hists)
		if n, err = callFor(ctx, c, keys, vals, every, time.Now().Add(-time.Second), 0, hists); err != nil || n != 4 {
			t.Errorf("every %v, deadline passed: %d calls, %v; want one per caller", every, n, err)
		}
	}
	// Without a client the callers only tick.
	clear(hists)
	if n, err = callFor(ctx, nil, keys, vals, 5*time.Millisecond, time.Now().Add(20*time.Millisecond), 0, hists); err != nil || n < 1 {
		t.Errorf("pacing alone made %d ticks, %v", n, err)
	}
	// A wrong answer ends the run, back to back or paced.
	for _, every := range []time.Duration{0, time.Millisecond} {
		clear(hists)
		_, err := callFor(ctx, liar{c}, keys, vals, every, time.Now().Add(time.Second), 0, hists)
		if err == nil {
			t.Errorf("every %v: a lying client passed", every)
		}
	}
	// So does an end of the context, even between ticks.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := callFor(cctx, c, keys, vals, time.Hour, time.Now().Add(time.Hour), 0, hists); err == nil {
		t.Error("a cancelled run returned no error")
	}
}

// TestWatchProcsCheck: the cross-process case counts on its check of
// the counter against what the processes report, since a process's
// client is out of reach of the liar of TestVerificationCatchesWrongAnswers.
func TestWatchProcsCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := redistest.Start(t)
	e := &env{cfg: testConfig(t), srv: srv}
	c, err := openClient(ctx, "redpipe", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	good, err := watchIncrements(ctx, c, s4Key, 5)
	if err != nil || good.Committed != 5 || !(good.CPUNanos > 0) {
		t.Fatalf("watchIncrements: %+v, %v", good, err)
	}
	if err := checkWatchProcs(e, []watchReport{good, {Committed: 0}}, 5); err != nil {
		t.Errorf("an honest run failed its check: %v", err)
	}
	if err := checkWatchProcs(e, []watchReport{good}, 6); err == nil {
		t.Error("fewer commits than asked passed")
	}
	lied, err := watchIncrements(ctx, liar{c}, s4Key, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkWatchProcs(e, []watchReport{good, lied}, 8); err == nil {
		t.Error("a client that claimed commits it did not make passed")
	}
}

func TestCostFieldsAndTargets(t *testing.T) {
	lat := func(cpuUs, p50, p99 int) sample {
		return sample{ops: 100, dur: time.Second, cpu: time.Duration(cpuUs*100) * time.Microsecond, hasLat: true,
			p50: time.Duration(p50) * time.Microsecond, p99: time.Duration(p99) * time.Microsecond, p999: time.Duration(2*p99) * time.Microsecond,
			rateNotCompared: true}
	}
	// redpipe spends less CPU than both peers in every repetition but has
	// the slowest p99 in one of them.
	clients := []string{"redpipe", "go-redis", "rueidis"}
	recs := aggregate("S8", "every-1ms", clients, [][]sample{
		{lat(10, 50, 100), lat(20, 60, 90), lat(15, 40, 110)},
		{lat(12, 50, 100), lat(24, 60, 120), lat(24, 70, 130)},
		{lat(11, 50, 100), lat(30, 60, 140), lat(22, 70, 150)},
	})
	rp := recs[0]
	if rp.RatioVsBestPeer != nil {
		t.Errorf("a paced case has a throughput ratio %v", *rp.RatioVsBestPeer)
	}
	approx := func(what string, got *float64, want float64) {
		t.Helper()
		if got == nil || math.Abs(*got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", what, fmtOpt(got, "%g"), want)
		}
	}
	approx("CPU µs/op", rp.CPUUsPerOp, 11)
	approx("CPU vs best peer", rp.CPUVsBestPeer, 0.5) // 10/15, 12/24, 11/22
	approx("p50", rp.P50Us, 50)
	approx("p50 vs best peer", rp.P50VsBestPeer, 50.0/60) // 50/40, 50/60, 50/60
	approx("p99 vs best peer", rp.P99VsBestPeer, 100.0/120)
	approx("p99.9", rp.P999Us, 200)
	if got := s8Verdict(rp); got != "met" {
		t.Errorf("verdict %q, want met", got)
	}
	// One repetition where p50 was behind does not decide; three do.
	slow := aggregate("S8", "every-1ms", clients, [][]sample{{lat(10, 80, 100), lat(20, 60, 120), lat(15, 40, 130)}})[0]
	if got := s8Verdict(slow); got != "not met: p50" {
		t.Errorf("verdict %q, want p50 not met", got)
	}
	idle := aggregate("S8", "idle-100ms", clients, [][]sample{{
		{ops: 1, dur: 100 * time.Millisecond, cpu: 20 * time.Microsecond, rateNotCompared: true},
		{ops: 1, dur: 100 * time.Millisecond, cpu: 10 * time.Microsecond, rateNotCompared: true},
		{ops: 1, dur: 100 * time.Millisecond, cpu: 0, rateNotCompared: true}}})
	if idle[0].P50Us != nil || idle[0].CPUVsBestPeer == nil || *idle[0].CPUVsBestPeer != 2 {
		t.Errorf("idle: %+v", idle[0].costFields)
	}
	// 1 ms per 10 s is 10µs per 100 ms.
	if got := s8Verdict(idle[0]); got != "not met: idle CPU" {
		t.Errorf("idle verdict %q", got)
	}
	// S6: no throughput ratio; RSS against the leanest peer.
	s6 := aggregate("S6", "pipeline-1m", clients, [][]sample{{
		{ops: 10, dur: time.Second, peakRSS: 40, hasSrv: true, srvCPU: 980 * time.Millisecond, rateNotCompared: true},
		{ops: 10, dur: time.Second, peakRSS: 300, rateNotCompared: true},
		{ops: 10, dur: time.Second, peakRSS: 200, rateNotCompared: true}}})
	if s6[0].RatioVsBestPeer != nil {
		t.Error("S6 has a throughput ratio")
	}
	approx("RSS vs best peer", s6[0].RSSVsBestPeer, 0.2)
	retry := aggregate("S4", "watch-8proc", clients, [][]sample{{
		{ops: 30, dur: time.Second, hasRet: true, retries: 10},
		{ops: 10, dur: time.Second, hasRet: true, retries: 40},
		{ops: 20, dur: time.Second, hasRet: true, retries: 30}}})
	approx("retries vs best peer", retry[0].RetriesVsBestPeer, 1.0/3)
	approx("watch rate vs best peer", retry[0].RatioVsBestPeer, 1.5)

	rep := &report{Records: slices.Concat(recs, idle, s6, retry)}
	md := rep.markdown()
	for _, want := range []string{
		"| every-1ms | redpipe | 100 | 11.0 | 0.50× | 50.0 | 100.0 | 200.0 | 0.83× | 0.83× | – | met |",
		"| idle-100ms | redpipe | – | 20.0 | 2.00× |",
		"| redpipe | 98% | 40 | 0.20× | met |",
		"| redpipe | 30 | 1.50× | 10 | 0.33× | – | met |",
		"S4 watch-8proc: contended WATCH across processes",
		"S8 idle-100ms: CPU ns/op",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestCostConfigScaled(t *testing.T) {
	c := fullCostConfig().scaled(0.1)
	if c.b2bDur != 300*time.Millisecond || c.idleDur != time.Second || c.pacedCallers != 100 {
		t.Errorf("scaled by 0.1: %+v", c)
	}
	if tiny := tinyCostConfig().scaled(1e-9); tiny.idleDur != time.Millisecond {
		t.Errorf("scaled to nothing: %+v", tiny)
	}
	names := make(map[string]bool)
	for _, sp := range costSpecs(fullCostConfig()) {
		names[sp.name] = true
	}
	for _, n := range []string{"seq", "every-1ms", "every-10ms", "g100-every-10ms", "g512", "idle-10s"} {
		if !names[n] {
			t.Errorf("no S8 case %q in %v", n, names)
		}
	}
}
