package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// costFields are the parts of a record that S8, S6 and the watch cases
// add: CPU time and latency in microseconds, and ratios to the best peer
// for which lower is better. Like the throughput ratio, each ratio is
// taken within a repetition, against the lowest other library's figure
// in it, and the median over repetitions is reported; a ratio is missing
// where no peer measured the figure, or the best peer's is zero.
type costFields struct {
	CPUUsPerOp *float64 `json:"cpu_us_per_op"` // the process's CPU time over the run, per op
	P50Us      *float64 `json:"p50_us"`        // per-call latency quantiles (S8)
	P99Us      *float64 `json:"p99_us"`
	P999Us     *float64 `json:"p999_us"`

	CPUVsBestPeer     *float64 `json:"cpu_vs_best_peer,omitempty"`
	P50VsBestPeer     *float64 `json:"p50_vs_best_peer,omitempty"`
	P99VsBestPeer     *float64 `json:"p99_vs_best_peer,omitempty"`
	RetriesVsBestPeer *float64 `json:"retries_vs_best_peer,omitempty"`
	RSSVsBestPeer     *float64 `json:"rss_vs_best_peer,omitempty"`
}

// costFieldsOf computes the costFields of clients[ci] from
// samples[rep][client]; its peers are the other libraries, and a
// reference (isReference) has none.
func costFieldsOf(clients []string, ci int, samples [][]sample) costFields {
	// figure returns the median of get over the repetitions where it was
	// measured, and the median ratio to the lowest peer.
	figure := func(get func(sample) (float64, bool)) (med, ratio *float64) {
		var vs, rs []float64
		for _, rep := range samples {
			v, ok := get(rep[ci])
			if !ok {
				continue
			}
			vs = append(vs, v)
			if isReference(clients[ci]) {
				continue // a reference has no peers
			}
			best, found := 0.0, false
			for cj, s := range rep {
				if pv, ok := get(s); cj != ci && ok && !isReference(clients[cj]) && (!found || pv < best) {
					best, found = pv, true
				}
			}
			if found && best > 0 {
				rs = append(rs, v/best)
			}
		}
		if len(vs) > 0 {
			med = ptr(median(vs))
		}
		if len(rs) > 0 {
			ratio = ptr(median(rs))
		}
		return med, ratio
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	var f costFields
	f.CPUUsPerOp, f.CPUVsBestPeer = figure(func(s sample) (float64, bool) {
		return us(s.cpu) / float64(s.ops), s.cpu > 0 && s.ops > 0
	})
	f.P50Us, f.P50VsBestPeer = figure(func(s sample) (float64, bool) { return us(s.p50), s.hasLat })
	f.P99Us, f.P99VsBestPeer = figure(func(s sample) (float64, bool) { return us(s.p99), s.hasLat })
	f.P999Us, _ = figure(func(s sample) (float64, bool) { return us(s.p999), s.hasLat })
	_, f.RetriesVsBestPeer = figure(func(s sample) (float64, bool) { return float64(s.retries), s.hasRet })
	_, f.RSSVsBestPeer = figure(func(s sample) (float64, bool) { return s.peakRSS, s.peakRSS > 0 })
	return f
}

// rateNotCompared tells whether a case's throughput is not the client's
// to win, so that no throughput ratio is reported for it.
func rateNotCompared(samples [][]sample) bool {
	for _, rep := range samples {
		for _, s := range rep {
			if s.rateNotCompared {
				return true
			}
		}
	}
	return false
}

const costMethodNotes = `
S8 runs every library, for every case and repetition, in a child process
of its own: the CPU time is that process's getrusage (RUSAGE_SELF, user
plus system) over the measured interval only, after it has connected,
written its keys and made three calls per caller, divided by the calls
made. Every GET's reply is checked. Each call is timed from just before
it to its return, and counted in a histogram per caller whose buckets
are 1/64 of a power of two wide (quantiles within 0.8%); p50, p99 and
p99.9 are medians over repetitions of each repetition's quantile, and
p99.9 of a case with about a thousand calls is close to its maximum.
The harness's own work is in every figure alike: two clock readings and
a histogram count per call, and in paced cases a time.Ticker per caller
that wakes it for each call; the no-client lines run the same tickers,
readings and counts with no client, so their CPU time per tick is the
part of a paced figure that no library can save, and under the idle case
a Go process that only sleeps, the floor of any client's idle figure. Paced callers start
spread evenly over the first interval, as independent requests arrive;
one whose call overruns its interval loses ticks rather than catching up,
so the calls column shows what was made. Many callers back to back use
the library's form for many goroutines, as S5 does; paced callers use
the plain client. The idle case makes one call, then leaves the client
alone for the interval in its name; its CPU time is that of the whole
interval, as one op. S4's watch-Nproc runs N processes, each with a
client of its own and one goroutine, started together once all have
connected, each committing the same number of WATCH/GET/MULTI/SET/EXEC
increments of one counter through the library's retry loop (redpipe's
Transaction with its backoff, go-redis's Watch retried on TxFailedErr,
rueidis's Dedicated client with WATCH and DoMulti); its ops/s are
committed transactions from the start until the last process reported,
its CPU time and retries the processes' sums, and the counter must end at
the committed count. "vs best peer" of CPU time, latency, retries and RSS
is the client's figure over the lowest other client's in the same
repetition (lower is better), median over repetitions. S6 (bound by the
server) and the paced and idle cases of S8 (whose rate the pacing sets)
carry no throughput ratio: S6 is judged by the server's busy share and
the client's peak RSS.
`

// Targets for redpipe, from the performance issue: ratios to the best
// peer, or absolute figures.
const (
	s8IdleBudgetPer10s = time.Millisecond
	s6BusyTarget       = 95.0 // percent
	s6RSSTarget        = 1.0 / 3
	watchRateTarget    = 1.3
	watchRetryTarget   = 0.5
)

// s8Target is what redpipe must reach in one S8 case: CPU time at most
// cpu times the best peer's, and, if lat is set, p50 and p99 at most
// the best peer's.
func s8Target(name string) (cpu float64, lat bool) {
	switch {
	case name == "seq":
		return 1.1, false
	case strings.Contains(name, "every-"):
		return 1.0, true
	default: // many callers back to back
		return 0.8, false
	}
}

func isIdleCase(name string) bool { return strings.HasPrefix(name, "idle-") }

func fmtRatio(v *float64) string { return fmtOpt(v, "%.2f×") }

// check is one condition of a target: ok is nil when its figure is missing.
type check struct {
	what string
	ok   *bool
}

// verdict says whether every check holds, or which do not; "–" when a
// figure is missing.
func verdict(checks ...check) string {
	var failed []string
	for _, c := range checks {
		if c.ok == nil {
			return "–"
		}
		if !*c.ok {
			failed = append(failed, c.what)
		}
	}
	if len(failed) == 0 {
		return "met"
	}
	return "not met: " + strings.Join(failed, ", ")
}

// atMost checks v ≤ limit, nil when v is missing.
func atMost(v *float64, limit float64) *bool {
	if v == nil {
		return nil
	}
	ok := *v <= limit
	return &ok
}

// costSections are the tables of S8, of S4's cross-process watch case and
// of S6, each with redpipe's targets, for the records there are.
func (rp *report) costSections() string {
	var b strings.Builder
	var s8, watch, s6 []record
	for _, r := range rp.Records {
		switch {
		case r.Scenario == "S8":
			s8 = append(s8, r)
		case r.Scenario == "S4" && strings.HasPrefix(r.Case, "watch-") && strings.HasSuffix(r.Case, "proc"):
			watch = append(watch, r)
		case r.Scenario == "S6":
			s6 = append(s6, r)
		}
	}
	if len(s8) > 0 {
		b.WriteString("\n## S8: client CPU time and latency per call\n\n")
		b.WriteString("GET of a 16-byte value; CPU µs/op is the client process's alone. The paced cases' figures include the pacing's own cost, which the no-client line under each measures; an idle line's figure is for its whole interval, and its no-client line is a Go process that only sleeps. ")
		fmt.Fprintf(&b, "Targets for redpipe: CPU ≤ 1.1× the best peer back to back with one caller, ≤ 0.8× with many, ≤ 1.0× paced, where p50 and p99 must also be ≤ the best peer's; idle CPU ≤ %v per 10 s.\n\n", s8IdleBudgetPer10s)
		b.WriteString("| case | client | calls | CPU µs/op | CPU vs best peer | p50 µs | p99 µs | p99.9 µs | p50 vs best peer | p99 vs best peer | server busy | redpipe's target |\n")
		b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, r := range s8 {
			calls, target := grouped(r.Ops), ""
			if isIdleCase(r.Case) {
				calls = "–"
			}
			if r.Client == "redpipe" {
				target = s8Verdict(r)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				r.Case, r.Client, calls, fmtOpt(r.CPUUsPerOp, "%.1f"), fmtRatio(r.CPUVsBestPeer),
				fmtOpt(r.P50Us, "%.1f"), fmtOpt(r.P99Us, "%.1f"), fmtOpt(r.P999Us, "%.1f"),
				fmtRatio(r.P50VsBestPeer), fmtRatio(r.P99VsBestPeer), fmtOpt(r.ServerBusyPct, "%.0f%%"), target)
		}
	}
	if len(watch) > 0 {
		fmt.Fprintf(&b, "\n## S4 %s: contended WATCH across processes\n\n", watch[0].Case)
		fmt.Fprintf(&b, "Targets for redpipe: transactions/s ≥ %.1f× the best peer, retries ≤ %.1f× the best peer's.\n\n", watchRateTarget, watchRetryTarget)
		b.WriteString("| client | transactions/s | vs best peer | retries | retries vs best peer | CPU µs/transaction | redpipe's target |\n")
		b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, r := range watch {
			target := ""
			if r.Client == "redpipe" {
				var rate *bool
				if r.RatioVsBestPeer != nil {
					ok := *r.RatioVsBestPeer >= watchRateTarget
					rate = &ok
				}
				target = verdict(check{"transactions/s", rate}, check{"retries", atMost(r.RetriesVsBestPeer, watchRetryTarget)})
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Client, grouped(r.OpsPerSec), fmtRatio(r.RatioVsBestPeer),
				fmtOpt(r.Retries, "%.0f"), fmtRatio(r.RetriesVsBestPeer), fmtOpt(r.CPUUsPerOp, "%.1f"), target)
		}
	}
	if len(s6) > 0 {
		b.WriteString("\n## S6: bound by the server\n\n")
		fmt.Fprintf(&b, "The server's main thread does the work here, so the client is judged by how busy it keeps the server and by its memory. Targets for redpipe: server busy ≥ %.0f%% of the run, peak RSS ≤ 1/3 of the best peer's.\n\n", s6BusyTarget)
		b.WriteString("| client | server busy | peak RSS MiB | RSS vs best peer | redpipe's target |\n| --- | ---: | ---: | ---: | --- |\n")
		for _, r := range s6 {
			target := ""
			if r.Client == "redpipe" {
				var busy *bool
				if r.ServerBusyPct != nil {
					ok := *r.ServerBusyPct >= s6BusyTarget
					busy = &ok
				}
				target = verdict(check{"server busy", busy}, check{"RSS", atMost(r.RSSVsBestPeer, s6RSSTarget)})
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Client, fmtOpt(r.ServerBusyPct, "%.0f%%"),
				fmtOpt(r.PeakRSSMiB, "%.0f"), fmtRatio(r.RSSVsBestPeer), target)
		}
	}
	return b.String()
}

// s8Verdict checks one redpipe S8 record against its target.
func s8Verdict(r record) string {
	if isIdleCase(r.Case) {
		if r.CPUUsPerOp == nil {
			return "–"
		}
		// The op is the idle interval, NsPerOp long.
		budget := float64(s8IdleBudgetPer10s.Microseconds()) * r.NsPerOp / float64(10*time.Second)
		return verdict(check{"idle CPU", atMost(r.CPUUsPerOp, budget)})
	}
	cpu, lat := s8Target(r.Case)
	checks := []check{{fmt.Sprintf("CPU ≤ %.1f×", cpu), atMost(r.CPUVsBestPeer, cpu)}}
	if lat {
		checks = append(checks, check{"p50", atMost(r.P50VsBestPeer, 1)}, check{"p99", atMost(r.P99VsBestPeer, 1)})
	}
	return verdict(checks...)
}

// isReference tells a record of something other than a library compared
// (redis-benchmark, the no-client runs), which has no peers.
func isReference(client string) bool { return !slices.Contains(libraries, client) }
