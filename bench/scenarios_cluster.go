package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// The cluster scenarios run on a Redis Cluster of three masters started by
// the bench (redistest, no replicas), apart from the single server of the
// S scenarios:
//
//	C1  one plain pipeline of SET and GET pairs whose keys are spread over
//	    the slots, so the client splits it per master;
//	C2  many goroutines, each SETting its own key and reading it back;
//	C3  MGET of keys in many slots, which each library reads in its own
//	    way of getting many keys from a cluster at once.
var clusterScenarioNames = []string{"C1", "C2", "C3"}

func isClusterScenario(name string) bool { return slices.Contains(clusterScenarioNames, name) }

// clusterConfig sizes the cluster scenarios.
type clusterConfig struct {
	c1Pairs int // SET+GET pairs in C1's pipeline: twice as many commands
	c2G     int // goroutines of C2
	c2Ops   int // commands of a C2 run, all goroutines together
	c3Keys  int // keys per MGET in C3
}

func fullClusterConfig() clusterConfig {
	return clusterConfig{c1Pairs: 5000, c2G: 512, c2Ops: 200000, c3Keys: 100}
}

func tinyClusterConfig() clusterConfig {
	return clusterConfig{c1Pairs: 50, c2G: 16, c2Ops: 800, c3Keys: 20}
}

// clusterTargets are the ratios to the best peer that redpipe aims at in
// the cluster scenarios, shown next to the measured ones in the report.
var clusterTargets = map[string]float64{"C1": 1.5, "C2": 1.2, "C3": 2}

// clusterCase is benchCase for a cluster.
type clusterCase struct {
	scenario, name string
	run            func(ctx context.Context, e *clusterEnv, c clusterClient) (sample, error)
	ceiling        bool // the no-work client runs it too (wireCluster)
}

func clusterCases(name string, cfg config) []clusterCase {
	cc := cfg.cluster
	switch name {
	case "C1":
		return []clusterCase{{"C1", fmt.Sprintf("pipeline-%d", 2*cc.c1Pairs), runC1, true}}
	case "C2":
		return []clusterCase{{"C2", fmt.Sprintf("g%d", cc.c2G), runC2, false}}
	case "C3":
		return []clusterCase{{"C3", fmt.Sprintf("mget-%d", cc.c3Keys), runC3, true}}
	}
	return nil
}

// clusterEnv is env for a cluster: checks go to the masters through
// redistest's own RESP client, never through a client under test.
type clusterEnv struct {
	cfg config
	cl  *redistest.Cluster
}

func (e *clusterEnv) flush() error {
	for _, m := range e.cl.Masters {
		if _, err := e.do(m, "FLUSHDB"); err != nil {
			return err
		}
	}
	return nil
}

func (e *clusterEnv) do(s *redistest.Server, args ...string) (any, error) {
	v, err := s.Do(args...)
	if err != nil {
		return nil, err
	}
	if re, ok := v.(redistest.ReplyError); ok {
		return nil, fmt.Errorf("%s on %s: %v", args[0], s.Addr, re)
	}
	return v, nil
}

// expectDBSize checks the keys of all masters together.
func (e *clusterEnv) expectDBSize(want int) error {
	var total int64
	for _, m := range e.cl.Masters {
		v, err := e.do(m, "DBSIZE")
		if err != nil {
			return err
		}
		n, ok := v.(int64)
		if !ok {
			return fmt.Errorf("DBSIZE on %s: %#v", m.Addr, v)
		}
		total += n
	}
	if total != int64(want) {
		return fmt.Errorf("the masters hold %d keys, want %d", total, want)
	}
	return nil
}

// onOwners sends the command made by cmd for every key to every master,
// in one pipeline per master, and calls check with each key's reply from
// the one master that serves it: the others answer MOVED. It needs no
// slot function, so it cannot share a client's mistake about slots.
func (e *clusterEnv) onOwners(keys []string, cmd func(i int) []string, check func(i int, reply any) error) error {
	replies := make([][]any, len(e.cl.Masters))
	for j, m := range e.cl.Masters {
		cmds := make([][]string, len(keys))
		for i := range keys {
			cmds[i] = cmd(i)
		}
		var err error
		if replies[j], err = m.Pipeline(cmds...); err != nil {
			return err
		}
	}
	for i, k := range keys {
		var reply any
		owners := 0
		for j := range e.cl.Masters {
			if re, ok := replies[j][i].(redistest.ReplyError); ok && re.Prefix() == "MOVED" {
				continue
			}
			reply = replies[j][i]
			owners++
		}
		if owners != 1 {
			return fmt.Errorf("%d masters answered for %s without MOVED, want 1", owners, k)
		}
		if err := check(i, reply); err != nil {
			return err
		}
	}
	return nil
}

// expectValues checks the value of every key on the master that serves it.
func (e *clusterEnv) expectValues(keys []string, want func(i int) string) error {
	return e.onOwners(keys, func(i int) []string { return []string{"GET", keys[i]} }, func(i int, reply any) error {
		if reply != want(i) {
			return fmt.Errorf("the cluster has %s = %v, want %q", keys[i], reply, want(i))
		}
		return nil
	})
}

// seed sets every key to its value on the master that serves it.
func (e *clusterEnv) seed(keys []string, val func(i int) string) error {
	return e.onOwners(keys, func(i int) []string { return []string{"SET", keys[i], val(i)} }, func(i int, reply any) error {
		if reply != "OK" {
			return fmt.Errorf("SET %s: %v", keys[i], reply)
		}
		return nil
	})
}

// measureCluster is measure with the server's figures taken from all the
// masters together: "server busy" is their main threads' CPU time over
// the run's, so it can pass 100% when the machine has the cores.
func measureCluster(e *clusterEnv, fn func() (int, error)) (sample, error) {
	cpu0, okc0 := mastersCPU(e.cl)
	wait0, okw0 := mastersWait(e.cl)
	s, err := measure(fn)
	wait1, okw1 := mastersWait(e.cl)
	cpu1, okc1 := mastersCPU(e.cl)
	s.srvCPU, s.hasSrv = cpu1-cpu0, okc0 && okc1
	s.srvWait, s.hasWait = wait1-wait0, okw0 && okw1
	return s, err
}

// mastersCPU is serverCPU summed over the masters.
func mastersCPU(cl *redistest.Cluster) (time.Duration, bool) {
	var total float64
	for _, m := range cl.Masters {
		v, err := m.Do("INFO", "cpu")
		info, ok := v.(string)
		if err != nil || !ok {
			return 0, false
		}
		for _, field := range []string{"used_cpu_sys_main_thread", "used_cpu_user_main_thread"} {
			f, err := strconv.ParseFloat(infoField(info, field), 64)
			if err != nil {
				return 0, false
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second)), true
}

// mastersWait is serverWait summed over the masters.
func mastersWait(cl *redistest.Cluster) (time.Duration, bool) {
	var total int64
	for _, m := range cl.Masters {
		pid := m.Pid()
		ns, ok := procNumber(fmt.Sprintf("/proc/%d/task/%d/schedstat", pid, pid), "", 1)
		if pid <= 0 || !ok {
			return 0, false
		}
		total += ns
	}
	return time.Duration(total), true
}

// runClusterScenarios starts a cluster, runs the selected cluster
// scenarios on it for every library, and stops it. It does nothing when
// none is selected.
func runClusterScenarios(ctx context.Context, cfg config, scenarios []string, logw io.Writer) (recs []record, err error) {
	var names []string
	for _, s := range scenarios {
		if isClusterScenario(s) {
			names = append(names, s)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	cl, err := redistest.NewCluster(0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := cl.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	e := &clusterEnv{cfg: cfg, cl: cl}
	var seeds []string
	for _, m := range cl.Masters {
		seeds = append(seeds, m.Addr)
	}
	var clients []clusterClient
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, name := range libraries {
		c, err := openClusterClient(ctx, name, seeds)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
		// Some clients learn the slots on their first command; every
		// master gets one here, before anything is measured.
		for i := range 3 {
			if err := c.Set(ctx, "bench:warmup:"+strconv.Itoa(i), "1"); err != nil {
				return nil, fmt.Errorf("%s: first command on the cluster: %w", name, err)
			}
		}
	}
	wire, err := newWireCluster(cl)
	if err != nil {
		return nil, fmt.Errorf("the no-work client: %w", err)
	}
	defer wire.Close()
	for _, name := range names {
		for _, bc := range clusterCases(name, cfg) {
			cs := clients
			if bc.ceiling {
				cs = append(slices.Clip(clients), clusterClient(wire))
			}
			r, err := runReps(ctx, e, e.cfg.reps, cs, bc.scenario, bc.name, bc.run, logw)
			if err != nil {
				return nil, err
			}
			recs = append(recs, r...)
		}
	}
	return recs, nil
}

// C1: a plain pipeline of SET and GET pairs across the slots, sent again
// and again for minDur. Values alternate between runs and differ per key,
// so a GET answered out of order or from an earlier run is caught.
func runC1(ctx context.Context, e *clusterEnv, c clusterClient) (sample, error) {
	n := e.cfg.cluster.c1Pairs
	keys := keyList("c1:key_", n)
	var vals [2][]string
	for i := range n {
		vals[0] = append(vals[0], "value_"+strconv.Itoa(i))
		vals[1] = append(vals[1], "value'_"+strconv.Itoa(i))
	}
	var iters int
	s, err := measureCluster(e, func() (ops int, err error) {
		iters, ops, err = repeatFor(e.cfg.minDur, func(iter int) (int, error) {
			return 2 * n, c.PipelineSetGet(ctx, keys, vals[iter%2])
		})
		return ops, err
	})
	if err != nil {
		return s, err
	}
	if err := e.expectDBSize(n); err != nil {
		return s, err
	}
	last := vals[(iters-1)%2]
	return s, e.expectValues(keys, func(i int) string { return last[i] })
}

// C2: S5 on the cluster: goroutines sharing one client, each setting its
// own key, in its own slot, and reading it back.
func runC2(ctx context.Context, e *clusterEnv, c clusterClient) (sample, error) {
	cc, err := c.Concurrent()
	if err != nil {
		return sample{}, err
	}
	g := e.cfg.cluster.c2G
	s, keys, last, err := setGetRounds(ctx, cc, g, e.cfg.cluster.c2Ops, "c2:", func(fn func() (int, error)) (sample, error) {
		return measureCluster(e, fn)
	})
	if err != nil {
		return s, err
	}
	if err := e.expectDBSize(g); err != nil {
		return s, err
	}
	return s, e.expectValues(keys, last)
}

// C3: one caller reading the same keys, in many slots, again and again
// for minDur; ops count keys read. Each read asks for the keys in another
// rotation of their order, so a value handed to the wrong position, or
// left over from an earlier read, is caught; reads go in twos so that
// even the shortest run has an earlier read.
func runC3(ctx context.Context, e *clusterEnv, c clusterClient) (sample, error) {
	n := e.cfg.cluster.c3Keys
	keys := keyList("c3:", n)
	val := func(i int) string { return "v" + strconv.Itoa(i) + ":" + keys[i] }
	if err := e.seed(keys, val); err != nil {
		return sample{}, err
	}
	rotations := make([][]string, n)
	for r := range rotations {
		rotations[r] = append(slices.Clone(keys[r:]), keys[:r]...)
	}
	s, err := measureCluster(e, func() (ops int, err error) {
		_, ops, err = repeatFor(e.cfg.minDur, func(iter int) (int, error) {
			for j := range 2 {
				r := (2*iter + j) % n
				got, err := c.MGet(ctx, rotations[r])
				if err == nil {
					err = replyCount(len(got), n)
				}
				if err == nil {
					err = checkValues(got, func(i int) string { return val((i + r) % n) })
				}
				if err != nil {
					return j * n, err
				}
			}
			return 2 * n, nil
		})
		return ops, err
	})
	if err != nil {
		return s, err
	}
	if err := e.expectDBSize(n); err != nil {
		return s, err
	}
	return s, e.expectValues(keys, val)
}

// clusterNotes is the report's section on the cluster scenarios: how they
// run, and redpipe's ratio to the best peer against its target. It is
// empty when no cluster scenario ran.
func clusterNotes(recs []record) string {
	var mine []record
	for _, r := range recs {
		if isClusterScenario(r.Scenario) && r.Client == "redpipe" {
			mine = append(mine, r)
		}
	}
	if len(mine) == 0 {
		return ""
	}
	// The no-work client's median rate against the best peer's.
	ceiling := map[string]*float64{}
	for _, r := range recs {
		if !isClusterScenario(r.Scenario) || r.Client != ceilingName {
			continue
		}
		best := 0.0
		for _, p := range recs {
			if p.Scenario == r.Scenario && p.Case == r.Case && p.Client != "redpipe" && !isReference(p.Client) {
				best = max(best, p.OpsPerSec)
			}
		}
		if best > 0 {
			ceiling[r.Scenario+" "+r.Case] = ptr(r.OpsPerSec / best)
		}
	}
	var b strings.Builder
	b.WriteString(clusterMethod)
	b.WriteString("\n| scenario | case | redpipe vs best peer | target | no-work client vs best peer |\n| --- | --- | ---: | ---: | ---: |\n")
	for _, r := range mine {
		target := "–"
		if t, ok := clusterTargets[r.Scenario]; ok {
			target = fmt.Sprintf("≥ %.1f×", t)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Scenario, r.Case, fmtOpt(r.RatioVsBestPeer, "%.2f×"), target,
			fmtOpt(ceiling[r.Scenario+" "+r.Case], "%.2f×"))
	}
	return b.String()
}

const clusterMethod = `
## Cluster scenarios (C1–C3)

The C scenarios run on a Redis Cluster of three masters without replicas
(redistest), on the same machine, started after the S scenarios: FLUSHDB
on every master before every client run, and every reply and the final
state checked on the master serving each key, through separate
connections. C1 is one plain pipeline of SET and GET pairs whose keys
are spread over the slots, which every client splits per master
(redpipe's NoTransaction pipeline, go-redis's ClusterClient.Pipelined,
rueidis's DoMulti), repeated for at least a second. C2 is S5 on the
cluster (go-redis through the ClusterClient's AutoPipeline). C3 is one
caller reading keys in many slots at once, repeated for at least a
second; ops count keys read. redpipe's MGet and the rueidis.MGet helper
split the keys by slot themselves and send one MGET per slot in one
pipeline; go-redis's ClusterClient.MGet refuses keys of several slots
(CROSSSLOT), so its adapter groups them by slot (with redpipe's slot
function) and sends one MGET per slot in a Pipelined. "server busy" and
"server waiting" add up the three masters' main threads, so they can
pass 100%.

C1 and C3 also run the no-work client, the most any client could reach
here, as redis-benchmark is in S7: it encodes, routes and groups each
batch once, the first time, and keeps the bytes; later calls write them,
one write per master, and compare each master's answer, read whole, with
the first answer, which it parsed and checked, byte for byte, instead of
parsing it. It is not a peer: no ratio is taken against it, and the last
column gives its median rate over the best peer's median rate.
`
