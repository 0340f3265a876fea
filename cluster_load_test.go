package redpipe_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/internal/clusterload"
	"github.com/redpipe/redpipe/redistest"
)

// anomalyLog keeps what a workload reports, for the test to print once
// the workers have stopped.
type anomalyLog struct {
	mu    sync.Mutex
	lines []string
}

func (a *anomalyLog) logf(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lines = append(a.lines, fmt.Sprintf(format, args...))
}

func (a *anomalyLog) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.lines, "\n")
}

// startLoad starts the checked workload of clusterload on the hot slots.
func startLoad(t *testing.T, c *redpipe.Client, slots []int, log *anomalyLog) *clusterload.Load {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("workload seed %d", seed)
	l, err := clusterload.Start(clusterload.Config{Client: c, Workers: 8, Slots: slots, Seed: seed, Log: log.logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop(10 * time.Second) })
	return l
}

// finishLoad stops the workload, checks the servers' data against it and
// fails the test on any anomaly.
func finishLoad(t *testing.T, ctx context.Context, l *clusterload.Load, cl *redistest.Cluster, log *anomalyLog) clusterload.Counts {
	t.Helper()
	if !l.Stop(10 * time.Second) {
		t.Error("the workers did not stop within 10s")
	}
	if err := l.Check(ctx, cl); err != nil {
		t.Fatal(err)
	}
	n := l.Counts()
	t.Logf("workload: %s", n)
	if n.Anomalies() > 0 {
		t.Errorf("%d anomalies:\n%s", n.Anomalies(), log)
	}
	return n
}

func flatten(groups [][]int) []int {
	var all []int
	for _, g := range groups {
		all = append(all, g...)
	}
	return all
}

// TestClusterReshardUnderLoad moves groups of slots between the masters,
// in one go or step by step with their keys split between two nodes for a
// while, for ten seconds, while eight goroutines run plain pipelines and
// transactions on keys of those slots, each with a deadline. Afterwards no
// acknowledged write is missing, no INCR ran twice, every read found the
// writes before it and none after, and no call returned late.
func TestClusterReshardUnderLoad(t *testing.T) {
	t.Parallel()
	const loadFor = 10 * time.Second
	cl := redistest.StartCluster(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := redpipe.NewClusterClient(redpipe.ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Each group has one owner at a time; they start on all three masters.
	groups := [][]int{{10, 11, 12, 13}, {6000, 6001, 6002}, {12000, 12001, 12002}, {20, 21}}
	log := &anomalyLog{}
	l := startLoad(t, c, flatten(groups), log)

	rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
	start := time.Now()
	moves, stepwise := 0, 0
	for i := 0; time.Since(start) < loadFor && i < 10000; i++ {
		step := i%2 == 1
		if _, _, err := clusterload.Move(ctx, cl, groups[i%len(groups)], rng, step, 150*time.Millisecond); err != nil {
			t.Fatalf("move %d: %v", i, err)
		}
		moves++
		if step {
			stepwise++
		}
	}
	n := finishLoad(t, ctx, l, cl, log)
	t.Logf("%d reshards (%d step by step) in %v", moves, stepwise, time.Since(start).Round(time.Millisecond))
	if moves < 4 || n.OK == 0 || n.Checked < 1000 {
		t.Errorf("too little done: %d reshards, %s", moves, n)
	}
}

// TestClusterFailoverUnderLoad kills a master under the same load. Every
// call succeeds or fails with an outcome that holds (checked against the
// data), no acknowledged write is lost, and traffic to the killed master's
// slots resumes once its replica is promoted; how soon is logged.
func TestClusterFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := redpipe.NewClusterClient(redpipe.ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dead := cl.Masters[0]
	deadSlots := []int{10, 11, 12, 4000}
	for _, s := range deadSlots {
		if owner, err := cl.SlotOwner(s); err != nil || owner != dead {
			t.Fatalf("slot %d is not the first master's (%v)", s, err)
		}
	}
	groups := [][]int{deadSlots, {6000, 6001}, {12000, 12001}}
	log := &anomalyLog{}
	l := startLoad(t, c, flatten(groups), log)

	// Some acknowledged writes on every node before the kill.
	waitFor(t, ctx, "the workload to get going", func() bool { return l.Counts().OK >= 500 })
	k, err := clusterload.KillMaster(ctx, cl, dead, l.Arm)
	if err != nil {
		t.Fatal(err)
	}
	// Traffic resumes on its own; the bound is only for a client that
	// never finds the promoted replica.
	const resumeWithin = 15 * time.Second
	waitFor(t, ctx, "traffic to the killed master's slots to resume", func() bool {
		return !l.FirstSuccess(deadSlots).IsZero() || time.Since(k.PromotedAt) > resumeWithin
	})
	first := l.FirstSuccess(deadSlots)
	// A little more load on the new layout.
	before := l.Counts().OK
	waitFor(t, ctx, "more calls to succeed", func() bool { return l.Counts().OK >= before+500 })
	finishLoad(t, ctx, l, cl, log)
	if first.IsZero() {
		t.Fatalf("no command on the killed master's slots succeeded within %v of %s's promotion", resumeWithin, k.Promoted.Addr)
	}
	t.Logf("master %s stopped answering; %s reported itself master %v later; the first command on its slots succeeded %v after that",
		dead.Addr, k.Promoted.Addr, k.PromotedAt.Sub(k.Died).Round(time.Millisecond), first.Sub(k.PromotedAt).Round(time.Millisecond))
	if slices.Contains(cl.Masters, dead) {
		t.Errorf("%s is still listed as a master", dead.Addr)
	}
}

// waitFor polls cond every 10ms until it holds, failing the test when ctx
// ends first.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
