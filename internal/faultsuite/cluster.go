package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/internal/clusterload"
	"github.com/redpipe/redpipe/redistest"
)

// clusterConfig is one run of the cluster phase: a cluster of three
// masters with a replica each, whose hot slots move from master to master
// all along while a checked workload runs on them, and whose masters are
// failed over every FailoverEvery, by turns gracefully (CLUSTER FAILOVER)
// and by a kill, after which the killed master rejoins as a replica; in
// between, the client's connections to a master are closed from the
// server's side every cutEvery.
type clusterConfig struct {
	Duration      time.Duration
	FailoverEvery time.Duration
	Workers       int
	Seed          uint64
	MinReshards   int64
	MinFailovers  int64
	MinCommands   int64
	// MinPartial, when above 0, is how many replies of pipelines cut
	// partway, or of streams that stopped, must be checked; and some
	// connection of the workload must have been cut from the server's
	// side. Without them the run says nothing of what a batch cut on a
	// live master keeps.
	MinPartial int64
	// LargeEvery, when above 0, makes one pipeline in LargeEvery large
	// (see clusterload.Config.LargeEvery).
	LargeEvery int
	Log        func(format string, args ...any)
}

func defaultClusterConfig() clusterConfig {
	return clusterConfig{
		Duration:      60 * time.Second,
		FailoverEvery: 10 * time.Second,
		Workers:       8,
		Log:           func(string, ...any) {},
	}
}

const (
	// stepPause bounds each pause of a step-by-step migration, with the
	// slots' keys split between two nodes.
	stepPause = 200 * time.Millisecond
	// resumeWithin bounds how long after a failover the client may take
	// to serve the failed master's slots again before it counts as hung.
	resumeWithin = 10 * time.Second
	// clusterOpTimeout bounds one reshard or failover, waits for the
	// cluster to settle included.
	clusterOpTimeout = time.Minute
	// cutEvery is the time between two cuts of the workload's connections
	// to a master, which lives on: commands sent on them may have run,
	// those not yet written certainly did not.
	cutEvery = 700 * time.Millisecond
	// loadName names the workload's connections, for the cuts to find.
	loadName = "faultload"
)

// hotGroups are the hot slots, in groups that move together; each starts
// on another master.
var hotGroups = [][]int{{10, 11, 12, 13}, {4000, 4001}, {6000, 6001, 6002}, {12000, 12001, 12002}}

// clusterResult is what the cluster phase's last line reports.
type clusterResult struct {
	Reshards, Failovers, Checked       int64
	Misordered, Lost, Duplicated, Hung int64
	// Partial counts the replies checked of pipelines cut partway and of
	// streams that stopped; NotSent the commands the client said it
	// never wrote.
	Partial, NotSent int64
	// Cuts counts the workload's connections closed from the server's
	// side; the progress lines show it, the last line does not.
	Cuts int64
}

func (r clusterResult) String() string {
	return fmt.Sprintf("cluster faults: %d reshards, %d failovers, %d commands checked, %d misordered, %d lost, %d duplicated, %d hung; partial replies checked: %d (%d not sent)",
		r.Reshards, r.Failovers, r.Checked, r.Misordered, r.Lost, r.Duplicated, r.Hung, r.Partial, r.NotSent)
}

// problems says why the run fails, if it does.
func (r clusterResult) problems(cfg clusterConfig) []string {
	var out []string
	if n := r.Misordered + r.Lost + r.Duplicated + r.Hung; n > 0 {
		out = append(out, fmt.Sprintf("%d anomalies", n))
	}
	if r.Reshards < cfg.MinReshards {
		out = append(out, fmt.Sprintf("only %d reshards, want at least %d", r.Reshards, cfg.MinReshards))
	}
	if r.Failovers < cfg.MinFailovers {
		out = append(out, fmt.Sprintf("only %d failovers, want at least %d", r.Failovers, cfg.MinFailovers))
	}
	if r.Checked < cfg.MinCommands {
		out = append(out, fmt.Sprintf("only %d commands checked, want at least %d", r.Checked, cfg.MinCommands))
	}
	if r.Partial < cfg.MinPartial {
		out = append(out, fmt.Sprintf("only %d replies of failed batches checked, want at least %d", r.Partial, cfg.MinPartial))
	}
	if cfg.MinPartial > 0 && r.Cuts == 0 {
		out = append(out, "no connection of the workload was cut from the server's side: CLIENT LIST showed none named "+loadName)
	}
	return out
}

// clusterPhase is the state of one run.
type clusterPhase struct {
	cfg   clusterConfig
	cl    *redistest.Cluster
	load  *clusterload.Load
	rng   *rand.Rand
	start time.Time

	reshards, failovers, hung int64
	cuts                      int64 // connections of the workload cut
}

// runCluster runs the cluster phase and returns its counts; an error means
// it could not run to the end (no cluster, a failover the cluster did not
// complete), and the counts are partial.
func runCluster(cfg clusterConfig) (res clusterResult, err error) {
	if cfg.Workers < 1 || cfg.Duration <= 0 || cfg.FailoverEvery <= 0 {
		return res, fmt.Errorf("bad configuration: %+v", cfg)
	}
	ph := &clusterPhase{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 1<<33)), start: time.Now()}
	defer func() { res = ph.result() }()
	ph.cl, err = redistest.NewCluster(1)
	if err != nil {
		return res, err
	}
	defer ph.cl.Stop()
	ph.cl.Logf = cfg.Log
	large := "no large pipelines"
	if cfg.LargeEvery > 0 {
		large = fmt.Sprintf("large pipelines 1 in %d", cfg.LargeEvery)
	}
	cfg.Log("faultsuite: cluster phase: seed %d, %d workers, %v, failovers every %v, %s, nodes %v",
		cfg.Seed, cfg.Workers, cfg.Duration, cfg.FailoverEvery, large, ph.cl.Addrs())

	client, err := redpipe.NewClusterClient(redpipe.ClusterOptions{
		Addrs:   ph.cl.Addrs(),
		Options: redpipe.Options{ReplyTimeout: time.Second, DialTimeout: time.Second, ClientName: loadName},
	})
	if err != nil {
		return res, err
	}
	defer client.Close()
	var hot []int
	for _, g := range hotGroups {
		hot = append(hot, g...)
	}
	ph.load, err = clusterload.Start(clusterload.Config{
		Client: client, Workers: cfg.Workers, Slots: hot, Seed: cfg.Seed,
		Log: cfg.Log, LargeEvery: cfg.LargeEvery,
	})
	if err != nil {
		return res, err
	}
	runErr := ph.drive()
	if !ph.load.Stop(workersStopWithin) {
		ph.cfg.Log("faultsuite: the cluster workload did not stop within %v", workersStopWithin)
	}
	if runErr != nil {
		return res, runErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
	defer cancel()
	if err := ph.load.Check(ctx, ph.cl); err != nil {
		return res, err
	}
	cfg.Log("[%5.1fs] done: %d reshards, %d failovers, %d connections cut; %s", time.Since(ph.start).Seconds(), ph.reshards, ph.failovers, ph.cuts, ph.load.Counts())
	return res, nil
}

func (ph *clusterPhase) result() clusterResult {
	r := clusterResult{Reshards: ph.reshards, Failovers: ph.failovers, Hung: ph.hung, Cuts: ph.cuts}
	if ph.load != nil {
		n := ph.load.Counts()
		r.Checked, r.Misordered, r.Lost, r.Duplicated = n.Checked, n.Misordered, n.Lost, n.Duplicated
		r.Partial, r.NotSent = n.Partial, n.NotSent
		r.Hung += n.Hung
	}
	return r
}

// drive reshards and fails over until the run's duration is over. Only it
// changes the cluster, one change at a time.
func (ph *clusterPhase) drive() error {
	deadline := ph.start.Add(ph.cfg.Duration)
	nextFailover := ph.start.Add(ph.cfg.FailoverEvery)
	nextProgress := ph.start.Add(5 * time.Second)
	nextCut := ph.start.Add(cutEvery)
	// The bound on iterations is a backstop: each step takes a few
	// milliseconds at least, and the deadline ends the loop.
	for i := 0; time.Now().Before(deadline) && i < 1<<20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
		var err error
		if time.Now().After(nextFailover) {
			err = ph.failover(ctx)
			// On the schedule, unless the failover took longer than it:
			// then reshards get some time before the next.
			nextFailover = nextFailover.Add(ph.cfg.FailoverEvery)
			if soonest := time.Now().Add(ph.cfg.FailoverEvery / 2); nextFailover.Before(soonest) {
				nextFailover = soonest
			}
		} else {
			err = ph.reshard(ctx, i)
		}
		if now := time.Now(); err == nil && now.After(nextCut) {
			ph.cut()
			nextCut = now.Add(cutEvery)
		}
		cancel()
		if err != nil {
			return err
		}
		if now := time.Now(); now.After(nextProgress) {
			ph.cfg.Log("[%5.1fs] %d reshards, %d failovers, %d connections cut; %s", time.Since(ph.start).Seconds(), ph.reshards, ph.failovers, ph.cuts, ph.load.Counts())
			nextProgress = now.Add(5 * time.Second)
		}
	}
	return nil
}

// reshard moves one group of hot slots to another master, every other
// time step by step.
func (ph *clusterPhase) reshard(ctx context.Context, i int) error {
	g := hotGroups[ph.rng.IntN(len(hotGroups))]
	if _, _, err := clusterload.Move(ctx, ph.cl, g, ph.rng, i%2 == 1, stepPause); err != nil {
		return fmt.Errorf("moving slots %v: %w", g, err)
	}
	ph.reshards++
	return nil
}

// failover fails over a master that has a replica, one that serves hot
// slots if there is one, by turns gracefully and by killing it, and checks
// that the client serves its slots again soon.
func (ph *clusterPhase) failover(ctx context.Context) error {
	var candidates, hot []*redistest.Server
	for _, m := range ph.cl.Masters {
		if rs, err := ph.cl.ReplicasOf(m); err == nil && len(rs) > 0 {
			candidates = append(candidates, m)
			if len(ph.servedBy(m)) > 0 {
				hot = append(hot, m)
			}
		}
	}
	if len(hot) > 0 {
		candidates = hot
	}
	if len(candidates) == 0 {
		return fmt.Errorf("no master has a replica to fail over to")
	}
	m := candidates[ph.rng.IntN(len(candidates))]
	slots := ph.servedBy(m)
	kill := ph.failovers%2 == 1
	start := time.Now()
	var promoted *redistest.Server
	var promotedAt time.Time
	how := "graceful failover"
	if kill {
		how = "kill"
		// Commands on its slots succeed again once the promoted replica
		// serves them, noted from the kill on.
		k, err := clusterload.KillMaster(ctx, ph.cl, m, ph.load.Arm)
		if err != nil {
			return fmt.Errorf("killing master %s: %w", m.Addr, err)
		}
		promoted, promotedAt = k.Promoted, k.PromotedAt
		start = k.Died
	} else {
		// The master hands over without a gap; what is measured is how
		// soon the client serves its slots once the cluster has settled.
		r, err := ph.cl.Failover(ctx, m)
		if err != nil {
			return fmt.Errorf("failing over master %s: %w", m.Addr, err)
		}
		promoted, promotedAt = r, time.Now()
		ph.load.Arm()
	}
	ph.failovers++
	resumed := ph.waitResumed(slots, promotedAt)
	ph.cfg.Log("[%5.1fs] %s of %s (hot slots %v): %s took over after %v; traffic on them resumed %s",
		time.Since(ph.start).Seconds(), how, m.Addr, slots, promoted.Addr, promotedAt.Sub(start).Round(time.Millisecond), resumed)
	if kill {
		if err := ph.cl.Rejoin(ctx, m); err != nil {
			return fmt.Errorf("rejoining %s: %w", m.Addr, err)
		}
	}
	return nil
}

// cut closes the workload's connections to one master, from the server's
// side, while the master lives on: a pipeline then stops partway with its
// replies read so far, and its commands not answered may have run, or not
// (see redpipe.Pipeline.Exec). A master that does not answer is skipped:
// the next failover or reshard says what is wrong with it.
func (ph *clusterPhase) cut() {
	m := ph.cl.Masters[ph.rng.IntN(len(ph.cl.Masters))]
	v, err := m.Do("CLIENT", "LIST", "TYPE", "normal")
	list, ok := v.(string)
	if err != nil || !ok {
		return
	}
	for _, line := range strings.Split(list, "\n") {
		var id string
		named := false
		for _, f := range strings.Fields(line) {
			switch {
			case strings.HasPrefix(f, "id="):
				id = f[len("id="):]
			case f == "name="+loadName:
				named = true
			}
		}
		if named && id != "" {
			if n, err := m.Do("CLIENT", "KILL", "ID", id); err == nil && n == int64(1) {
				ph.cuts++
			}
		}
	}
}

// servedBy returns the hot slots m serves.
func (ph *clusterPhase) servedBy(m *redistest.Server) []int {
	var out []int
	for _, g := range hotGroups {
		if owner, err := ph.cl.SlotOwner(g[0]); err == nil && owner == m {
			out = append(out, g...)
		}
	}
	return out
}

// waitResumed waits until a command on slots succeeds after the failover,
// and describes how long after the promotion that was; a client that
// takes longer than resumeWithin counts as hung.
func (ph *clusterPhase) waitResumed(slots []int, promotedAt time.Time) string {
	if len(slots) == 0 {
		return "(none served)"
	}
	for i := 0; i < 10000; i++ {
		if first := ph.load.FirstSuccess(slots); !first.IsZero() {
			return fmt.Sprintf("%v after", first.Sub(promotedAt).Round(time.Millisecond))
		}
		if time.Since(promotedAt) > resumeWithin {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ph.hung++
	ph.cfg.Log("ANOMALY hung: no command on slots %v succeeded within %v of the failover", slots, resumeWithin)
	return "never"
}
