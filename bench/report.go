package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// record is one line of results.json: the medians over the repetitions of
// one case run by one client. Fields that do not apply (allocations of
// redis-benchmark, RSS outside S6, a ratio with no peer) are null.
type record struct {
	Scenario        string   `json:"scenario"`
	Case            string   `json:"case"`
	Client          string   `json:"client"`
	OpsPerSec       float64  `json:"ops_per_sec"`
	NsPerOp         float64  `json:"ns_per_op"`
	AllocsPerOp     *float64 `json:"allocs_per_op"`
	BytesPerOp      *float64 `json:"bytes_per_op"`
	CPUNsPerOp      *float64 `json:"cpu_ns_per_op"`
	ServerBusyPct   *float64 `json:"server_busy_pct"` // the server's CPU time over the run's, in percent
	ServerWaitPct   *float64 `json:"server_wait_pct"` // the server's time ready to run without a CPU, likewise
	StealPct        *float64 `json:"steal_pct"`       // CPU time the hypervisor took, over the run's time times the CPUs
	PeakRSSMiB      *float64 `json:"peak_rss_mib"`
	RatioVsBestPeer *float64 `json:"ratio_vs_best_peer"`

	MinOpsPerSec float64  `json:"min_ops_per_sec"`
	MaxOpsPerSec float64  `json:"max_ops_per_sec"`
	Reps         int      `json:"reps"`
	Ops          float64  `json:"ops"` // operations in one repetition (median)
	Retries      *float64 `json:"retries,omitempty"`
	BaseRSSMiB   *float64 `json:"base_rss_mib,omitempty"`
	SpeedupVsSeq *float64 `json:"speedup_vs_seq,omitempty"`

	costFields
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ptr(v float64) *float64 { return &v }

// aggregate turns samples[rep][client] into one record per client. The
// ratio to the best peer is taken within each repetition, where the
// clients ran back to back under the same machine load, and then the
// median of those ratios is reported.
func aggregate(scenario, name string, clients []string, samples [][]sample) []record {
	var out []record
	for ci, cl := range clients {
		var ops, ns, allocs, bytes, cpu, srv, wait, steal, ratios, retries, rss, base, count []float64
		for _, rep := range samples {
			s := rep[ci]
			rate := float64(s.ops) / s.dur.Seconds()
			ops = append(ops, rate)
			ns = append(ns, float64(s.dur.Nanoseconds())/float64(s.ops))
			count = append(count, float64(s.ops))
			if s.hasMem {
				allocs = append(allocs, float64(s.allocs)/float64(s.ops))
				bytes = append(bytes, float64(s.bytes)/float64(s.ops))
			}
			if s.cpu > 0 {
				cpu = append(cpu, float64(s.cpu.Nanoseconds())/float64(s.ops))
			}
			if s.hasSrv {
				srv = append(srv, s.srvCPU.Seconds()/s.dur.Seconds())
			}
			if s.hasWait {
				wait = append(wait, s.srvWait.Seconds()/s.dur.Seconds())
			}
			if s.hasStl {
				steal = append(steal, s.steal.Seconds()/(s.dur.Seconds()*float64(onlineCPUs())))
			}
			if s.hasRet {
				retries = append(retries, float64(s.retries))
			}
			if s.peakRSS > 0 {
				rss = append(rss, s.peakRSS)
				base = append(base, s.baseRSS)
			}
			if len(clients) > 1 && !isReference(cl) {
				best := 0.0
				for cj := range clients {
					if cj != ci && !isReference(clients[cj]) {
						best = max(best, float64(rep[cj].ops)/rep[cj].dur.Seconds())
					}
				}
				if best > 0 {
					ratios = append(ratios, rate/best)
				}
			}
		}
		r := record{
			Scenario: scenario, Case: name, Client: cl,
			OpsPerSec: median(ops), NsPerOp: median(ns), Ops: median(count),
			MinOpsPerSec: slices.Min(ops), MaxOpsPerSec: slices.Max(ops), Reps: len(ops),
		}
		opt := func(xs []float64) *float64 {
			if len(xs) == 0 {
				return nil
			}
			return ptr(median(xs))
		}
		r.AllocsPerOp, r.BytesPerOp, r.CPUNsPerOp = opt(allocs), opt(bytes), opt(cpu)
		if s := opt(srv); s != nil {
			r.ServerBusyPct = ptr(*s * 100)
		}
		if w := opt(wait); w != nil {
			r.ServerWaitPct = ptr(*w * 100)
		}
		if st := opt(steal); st != nil {
			r.StealPct = ptr(*st * 100)
		}
		r.RatioVsBestPeer, r.Retries = opt(ratios), opt(retries)
		r.PeakRSSMiB, r.BaseRSSMiB = opt(rss), opt(base)
		r.costFields = costFieldsOf(clients, ci, samples)
		if rateNotCompared(samples) {
			r.RatioVsBestPeer = nil
		}
		out = append(out, r)
	}
	return out
}

// addSpeedups sets, on each client's S1 pipelined record, how many times
// faster it was than the same client's one-by-one run.
func addSpeedups(recs []record) {
	seq := make(map[string]float64)
	for _, r := range recs {
		if r.Scenario == "S1" && r.Case == "seq" {
			seq[r.Client] = r.OpsPerSec
		}
	}
	for i, r := range recs {
		if r.Scenario == "S1" && r.Case == "pipelined" && seq[r.Client] > 0 {
			recs[i].SpeedupVsSeq = ptr(r.OpsPerSec / seq[r.Client])
		}
	}
}

// machine describes where the numbers were taken.
type machine struct {
	CPUs       int // those this process may run on (taskset narrows them)
	AllCPUs    int // those the machine has online
	GOMAXPROCS int
	CPUModel   string
	Kernel     string
	GoVersion  string
	Redis      string
	Libraries  []string
	LoadBefore string // /proc/loadavg when the run started
	LoadAfter  string
	// HaltPoll is the guest's halt-polling (haltPollPath) when the run
	// started, if HaltPollKnown.
	HaltPoll      time.Duration
	HaltPollKnown bool
}

func describeMachine(redisVersion string) machine {
	m := machine{
		CPUs: runtime.NumCPU(), AllCPUs: onlineCPUs(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel: cpuModel(), GoVersion: runtime.Version(), Redis: redisVersion,
	}
	m.Kernel = firstLine("/proc/sys/kernel/osrelease")
	m.LoadBefore = loadAvg()
	m.HaltPoll, m.HaltPollKnown = readHaltPoll(haltPollPath)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/redis/go-redis/v9", "github.com/redis/rueidis":
				m.Libraries = append(m.Libraries, d.Path+" "+d.Version)
			}
		}
	}
	return m
}

// onlineCPUs counts the machine's CPUs in /proc/stat, whatever this
// process's affinity; runtime.NumCPU if it cannot be read. Read once:
// every sample's steal share is over them.
var onlineCPUs = sync.OnceValue(countOnlineCPUs)

func countOnlineCPUs() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) > 3 && strings.HasPrefix(line, "cpu") && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return max(n, runtime.NumCPU())
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

// loadAvg is the 1, 5 and 15 minute load averages: on a shared machine
// they say how much the numbers were disturbed.
func loadAvg() string {
	f := strings.Fields(firstLine("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// report is everything the markdown and JSON outputs are made from.
type report struct {
	Started time.Time
	Elapsed time.Duration
	Reps    int
	Machine machine
	Records []record

	PollWait    string // redpipe's PollWait if -pollwait set it, else ""
	HaltPollSet bool   // -haltpoll set Machine.HaltPoll
}

// grouped formats a rate with thousands separators, which is how the
// tables stay readable across six orders of magnitude.
func grouped(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func fmtOpt(v *float64, format string) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf(format, *v)
}

func fmtNs(v float64) string {
	if v >= 100 {
		return grouped(v)
	}
	return fmt.Sprintf("%.1f", v)
}

func (rp *report) markdown() string {
	var b strings.Builder
	m := rp.Machine
	fmt.Fprintf(&b, "# redpipe benchmarks\n\n")
	fmt.Fprintf(&b, "- date: %s (took %s)\n", rp.Started.UTC().Format("2006-01-02 15:04 UTC"), rp.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "- machine: %d CPUs (nproc), GOMAXPROCS %d, %s, Linux %s; shared with other work (load average %s at the start, %s at the end)\n",
		m.CPUs, m.GOMAXPROCS, m.CPUModel, m.Kernel, m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(&b, "- software: %s, redis-server %s, %s\n", m.GoVersion, m.Redis, strings.Join(m.Libraries, ", "))
	if m.CPUs < m.AllCPUs {
		fmt.Fprintf(&b, "- pinned: this run, the servers included, could use only %d of the machine's %d CPUs (taskset), so client and server take turns on one CPU and a thread wakes without an idle CPU to start; see `make bench-pinned`\n",
			m.CPUs, m.AllCPUs)
	}
	b.WriteString(haltPollLine(m.HaltPoll, m.HaltPollKnown, rp.HaltPollSet))
	if rp.PollWait != "" {
		fmt.Fprintf(&b, "- redpipe's Options.PollWait set to %s for this run (-pollwait)\n", rp.PollWait)
	}
	fmt.Fprintf(&b, "- repetitions: %d per case, clients in rotating order; values are medians, spread is the min–max of ops/s over the repetitions\n", rp.Reps)
	b.WriteString(methodNotes)
	b.WriteString(costMethodNotes)

	b.WriteString("\n## Results\n\n")
	b.WriteString("| scenario | case | client | ops/s | spread (min–max) | ns/op | CPU ns/op | server busy | server waiting | steal | allocs/op | B/op | peak RSS MiB | vs best peer | retries |\n")
	b.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rp.Records {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s–%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Scenario, r.Case, r.Client, grouped(r.OpsPerSec), grouped(r.MinOpsPerSec), grouped(r.MaxOpsPerSec),
			fmtNs(r.NsPerOp), fmtOpt(r.CPUNsPerOp, "%.0f"), fmtOpt(r.ServerBusyPct, "%.0f%%"), fmtOpt(r.ServerWaitPct, "%.0f%%"), fmtOpt(r.StealPct, "%.1f%%"), fmtOpt(r.AllocsPerOp, "%.2f"), fmtOpt(r.BytesPerOp, "%.1f"),
			fmtOpt(r.PeakRSSMiB, "%.0f"), fmtOpt(r.RatioVsBestPeer, "%.2f×"), fmtOpt(r.Retries, "%.0f"))
	}

	b.WriteString(clusterNotes(rp.Records))

	var speedups []record
	for _, r := range rp.Records {
		if r.SpeedupVsSeq != nil {
			speedups = append(speedups, r)
		}
	}
	if len(speedups) > 0 {
		b.WriteString("\n## S1: one pipeline against one call per INCR\n\n")
		b.WriteString("| client | seq ops/s | pipelined ops/s | speedup |\n| --- | ---: | ---: | ---: |\n")
		for _, r := range speedups {
			fmt.Fprintf(&b, "| %s | %s | %s | %.0f× |\n", r.Client, grouped(r.OpsPerSec / *r.SpeedupVsSeq), grouped(r.OpsPerSec), *r.SpeedupVsSeq)
		}
	}

	b.WriteString(rp.costSections())

	fmt.Fprintf(&b, "\n## Where redpipe is behind\n\nThroughput below %.2f× the best peer, or allocations, bytes, CPU time, RSS or latency over 5%% above the leanest peer.\n\n", tieRatio)
	behind := rp.behind()
	if len(behind) == 0 {
		b.WriteString("Nowhere: redpipe is within noise of the best peer or ahead in throughput, allocations and memory in every case.\n")
	}
	for _, s := range behind {
		b.WriteString("- " + s + "\n")
	}
	b.WriteString(designFigures)
	return b.String()
}

const methodNotes = `
Method: one redis-server (redistest, persistence off) on a loopback port;
FLUSHDB before every client run; every reply and the final state are
checked, through a separate connection, and a wrong answer fails the run.
ops/s counts commands, except S4 watch-contended (committed transactions)
and S7 (requests as redis-benchmark counts them). allocs/op and B/op are
runtime.MemStats deltas over the run divided by ops (for S6, in the child
process that ran it); CPU ns/op is the process's user and system CPU time
over the run (getrusage) divided by ops, which counts time a client spends
polling its socket for replies. "server busy" is the CPU time of the
server's main thread (INFO cpu) over the run's time: near 100% the server
was the limit, and no client could have been much faster. "server
waiting" is the time that thread was ready to run but had no CPU (its
schedstat) over the run's time: the machine's two cores were taken, by
the client or by other work. "steal" is the CPU time the hypervisor gave
to other machines while this one had work (/proc/stat), as a share of
both CPUs over the run: a kernel that accounts steal time leaves it out
of the other two, so a busy host shows there and not as a slower
client. What busy and waiting leave of 100%, less the server's share of
steal, is time the client kept the server idle. S1's pipelined case,
S2, S3 and S4's MULTI cases repeat their batch for at
least a second per run, so that a burst of other work on the machine
weighs less in one run. "vs best peer" is the client's ops/s over the
best other library's in the same repetition, median over repetitions (so
it can fall below 1 for a client whose median ops/s is the highest). S6 runs
each library in a child process and reports its VmHWM; the million
prebuilt key strings are part of every child's baseline. For many
goroutines (S5) go-redis uses its (experimental) AutoPipeline, as its
README advises; redpipe and rueidis batch concurrent calls by default.
S7 is redis-benchmark on the same server: with 50 connections, the
server's limit, not a client; with one (-c1), one batch of -P commands
at a time, as S3's pipelines are sent, which is the limit for them.
A host is in one of two states, and the sequential cases (S1 seq, S2
no-pipeline, S8 seq) depend on which: when a thread that waits for a
reply sleeps and the CPU it slept on goes idle, waking it costs about
as much as the round trip itself (on a virtual machine, the hypervisor
restarts the idle CPU); when the CPUs stay busy, or client and server
share one, wake-ups are fast. RESULTS.md is taken as the host comes;
its header says the guest's halt-polling where the machine has it (0:
an idle CPU halts at once, the slow state). RESULTS-fastwake.md (make
bench-fastwake) runs S1, S2 and S8 with idle CPUs polling 200µs before
they halt, the fast state on both CPUs, and RESULTS-pinned.md (make
bench-pinned) runs S1 and S2 with every process on one CPU, the fast
state another way.
`

// designFigures are the figures behind design choices that the code's
// comments point to, rather than holding numbers that go stale. They are
// not measured by a run: each says which benchmark measures it again.
const designFigures = `
## Figures behind design choices

Not measured by this run: the figures that comments in the code point to,
measured when each choice was made (2026-12), and the benchmark that
measures them again where there is one.

- Polling for replies (Options.PollWait): polling the socket instead of
  sleeping until the runtime's poller wakes the reader cut a sequential
  round trip by as much as half on a virtual machine.
  BenchmarkSequential in the root module times it with polling (poll) and
  without (nopoll).
- The least a server takes per command, 0.5µs (internal/conn replyCost):
  a SET or INCR in a deep pipeline took the server 0.4 to 0.6µs on
  loopback, as S7's -P1000 cases above show it at the server's limit.
  It sets how many replies the poll wait covers.
- Callers reading their own replies (internal/conn, Conn.reading): with
  the caller of a lone call reading its reply, polling when it calls back
  to back and asleep when it paces its calls, S1 seq went from 1.58× and
  1.76× to 1.73× and 1.69× the best peer, and S2 without a pipeline from
  1.57× and 1.56× to 1.65× and 1.68× (two rounds, three repetitions each,
  the two builds taking turns); with every process on one CPU (taskset),
  from 0.97× to 1.07× and from 0.94× to 0.96× (within the noise: nine
  repetitions of the new build gave 0.97× and 0.95×), and S8 seq's client
  CPU time per call from 0.87× to 0.72× the best peer's. Checking the socket
  before every call, not only after a pause longer than PollWait, cost
  the one-CPU sequential cases about 5%. BenchmarkSequential in the root
  module times it.
- Counting a caller's pause from its last reply, not from the start of
  its last call (internal/conn, Conn.released): a caller sending batches
  of a hundred commands back to back, each keeping the server busy for
  most of PollWait, counted as pacing its calls and slept on every
  reply. Counted from the reply, S3 depth-100 went from 1.08× to 1.51×
  the best peer and S4 multi-100 from 1.05× to 1.52×, with client CPU
  time per command from 662 to 839ns and from 791 to 860ns, still below
  both peers' (S3 and S4, five repetitions each, the two builds run one
  after the other); batches of 1000 and more, which are not polled for,
  kept their rate.
- A lone caller reading the replies of a large batch itself (internal/conn,
  writeOwn): a batch written from the caller's buffer used to leave its
  replies to the reader goroutine, which then woke the caller. Read by
  the caller when the socket takes the batch whole at once, S3
  depth-1000 went from 1.20× to 1.32× the best peer, and its client CPU
  time per command from 322 to 286ns; S2's pipeline from 292 to 254ns per
  command, its rate within the spread (1.26× against 1.25×). Batches of
  10,000, which the socket does not take at once, did not change (257
  against 265ns). Medians of four runs of two repetitions each, the two
  builds taking turns.
- Lingering only while calls come within it (internal/conn, idleSkip, now
  for connections whose reader must always read):
  one caller sending a GET every millisecond cost 148µs of client CPU
  time per call with lingers that end empty backing off, against 194µs
  with a linger after every reply (S8 every-1ms, five repetitions each,
  run one after the other), while one caller calling back to back kept
  its rate (S1 seq 1.56× against 1.62× the best peer, within the spread).
- Not polling between a large batch's chunks of replies: while the reader
  polled, the server's CPU time per SET in batches of 1000 went up 6%, the
  reader taking a CPU the server needed.
- Replies handed out in batches (internal/conn, maxBatch): the values a
  read brings go to their calls under one hold of the connection's lock,
  not one each. In a profile of 512 goroutines doing GETs the lock's
  share of the client's CPU time fell from 16% to 5%; S8 g512's client
  CPU time per call went from a median of 3.02µs to 2.80µs (five
  repetitions, the two builds taking turns, the spread 2.1 to 3.2µs in
  both), and BenchmarkPipeline1000 in the root module took about a fifth
  less time per batch.
- Offering the CPU while polling in a process confined to one CPU
  (internal/conn, poller.shareCPU): with the client and the server on
  one CPU, one caller calling back to back made 5.6 reads per call,
  most of them finding nothing until the kernel preempted the poll, and
  1.6 with a sched_yield between reads; its rate went from 25.6k to
  35.3k calls a second and its CPU time per call from 23.8µs to 14.2µs
  (S8 seq run under taskset). On two CPUs the same yield cost a third of
  the rate (24k against 34k calls a second), and even one yield per call
  a quarter, so it is only made where the process may run on one CPU.
  With the client alone on one CPU and the server on another, it changed
  nothing measurable (medians of seven repetitions, the builds taking
  turns: 31.9k calls a second against 32.5k, the spread 30.2k to 35.5k).
- A large cluster pipeline sent while it is routed (root module,
  earlyParts): a plain pipeline of 10,000 SETs and GETs over three
  masters spent 0.80ms routing and 0.18ms grouping its commands by node
  before its first byte went out, of 6.2 to 7.4ms in all (averages of
  300 runs), while the nodes waited. Sent in parts of 16 KB per node as
  it is routed, BenchmarkClusterPipeline10k/SetGet took 476 to 593ns per
  command against 585 to 645ns before (three pairs of runs, the builds
  taking turns), and C1's redpipe rate went from 1.86M to 1.94M commands
  a second (medians of seven repetitions; C1 is bound by the CPU the
  client and three servers share on two cores). Parts of 8 and 32 KB
  were within the noise of 16 KB.
- Each command's end and key slot recorded as it is encoded (root
  module, cmdBuf.routes): routing a cluster pipeline walked every
  encoded command again. In a profile of BenchmarkClusterPipeline10k/
  SetGet that walk took 15% of the client's CPU time, and reading the
  key as it is encoded takes 9%; over eight runs of each build, taking
  turns, the median went from 665 to 615ns per command and the process's
  CPU time from 3.33 to 3.11s, the spreads overlapping (455 to 794ns
  against 559 to 810ns).
- One part polled for in a cluster round of several (root module,
  startPart; internal/conn, Graced.Quiet): with every part's reader
  polling, C3's redpipe used 2.0 to 2.2µs of CPU time per key read, the
  servers waited for a CPU 61% of the time (three masters' main threads
  added up) against 41% without polling, and turning polling off
  (-pollwait -1) cut the CPU time per key by a fifth at the same rate.
  Polling for the last part only, over six runs of 15,000 calls of
  BenchmarkClusterMultiKey/MGet100Split per build, taking turns, took
  0.78 to 0.99 times the process CPU time of every part polled (median
  0.86), and 0.81 to 1.13 times the time per call (median 0.96). With
  client and servers on one CPU (taskset -c 0), where a poll offers the
  CPU to the servers between reads, C3 ran 695k keys a second either
  way, and 587k with no part polled for.
- Buffers kept across collections (internal/bufpool): a 100,000-INCR
  pipeline made after two collections, with no buffer kept, spent 1.5 to
  5ms getting fresh buffers (zeroed, and faulted in again once the runtime
  had given the pages back) before its first byte was sent, against 2ms
  for encoding the commands. BenchmarkPipelineIncr100k in the root module
  times that batch after collections (after-collections) and without
  (back-to-back).
- One send at a time only while a send goes out in parts (internal/conn,
  Conn.sendSem and inParts): taking the channel for every command, not
  only while a large send is handed over in parts, cost 64 to 512
  concurrent callers 5 to 13% of their throughput.
`

// tieRatio is how far below the best peer redpipe's throughput must fall
// to be listed as behind: on a shared machine a few percent is noise.
const tieRatio = 0.97

// behind lists every case where redpipe falls short of its best peer:
// a throughput ratio below tieRatio, or more allocations, bytes or RSS
// than the leanest peer by over 5% and a margin that matters.
func (rp *report) behind() []string {
	byCase := make(map[string][]record)
	var order []string
	for _, r := range rp.Records {
		if isReference(r.Client) {
			continue
		}
		k := r.Scenario + " " + r.Case
		if byCase[k] == nil {
			order = append(order, k)
		}
		byCase[k] = append(byCase[k], r)
	}
	metrics := []struct {
		label, format string
		margin        float64
		get           func(record) *float64
	}{
		{"allocs/op", "%.2f", 0.05, func(r record) *float64 { return r.AllocsPerOp }},
		{"B/op", "%.0f", 16, func(r record) *float64 { return r.BytesPerOp }},
		{"CPU ns/op", "%.0f", 100, func(r record) *float64 { return r.CPUNsPerOp }},
		{"peak RSS MiB", "%.0f", 8, func(r record) *float64 { return r.PeakRSSMiB }},
		{"p50 µs", "%.1f", 2, func(r record) *float64 { return r.P50Us }},
		{"p99 µs", "%.1f", 5, func(r record) *float64 { return r.P99Us }},
	}
	var out []string
	for _, k := range order {
		var me *record
		var peers, all []string
		for i, r := range byCase[k] {
			all = append(all, r.Client+" "+grouped(r.OpsPerSec))
			if r.Client == "redpipe" {
				me = &byCase[k][i]
			} else {
				peers = append(peers, r.Client)
			}
		}
		if me == nil || len(peers) == 0 {
			continue
		}
		var what []string
		if r := me.RatioVsBestPeer; r != nil && *r < tieRatio {
			what = append(what, fmt.Sprintf("throughput %.2f× the best peer (median ops/s: %s)", *r, strings.Join(all, ", ")))
		}
		for _, m := range metrics {
			mine := m.get(*me)
			if mine == nil {
				continue
			}
			best, who := math.Inf(1), ""
			for _, p := range byCase[k] {
				if v := m.get(p); p.Client != "redpipe" && v != nil && *v < best {
					best, who = *v, p.Client
				}
			}
			if *mine > best*1.05 && *mine-best >= m.margin {
				what = append(what, fmt.Sprintf("%s "+m.format+" vs "+m.format+" (%s)", m.label, *mine, best, who))
			}
		}
		if len(what) > 0 {
			out = append(out, k+": "+strings.Join(what, "; "))
		}
	}
	return out
}
