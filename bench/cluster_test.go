package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// clusterLiar is a cluster client that is fast because it is wrong. With
// stale set, its MGet answers every call after the first with the first
// call's values; otherwise it swaps two values.
type clusterLiar struct {
	clusterClient
	stale bool
	first []string
}

func (l *clusterLiar) Get(ctx context.Context, key string) (string, error) {
	v, err := l.clusterClient.Get(ctx, key)
	return strings.ToUpper(v), err
}

func (l *clusterLiar) PipelineSetGet(ctx context.Context, keys, vals []string) error {
	return l.clusterClient.PipelineSetGet(ctx, keys[:len(keys)-1], vals)
}

func (l *clusterLiar) MGet(ctx context.Context, keys []string) ([]string, error) {
	if l.stale && l.first != nil {
		return slices.Clone(l.first), nil
	}
	got, err := l.clusterClient.MGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	if l.stale {
		l.first = slices.Clone(got)
		return got, nil
	}
	got[0], got[1] = got[1], got[0]
	return got, nil
}

func (l *clusterLiar) Concurrent() (clusterClient, error) { return l, nil }

func TestClusterVerificationCatchesWrongAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cl := redistest.StartCluster(t, 0)
	e := &clusterEnv{cfg: cfg, cl: cl}
	c, err := openClusterClient(ctx, "redpipe", cl.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	liars := map[string]clusterClient{
		"swapping": &clusterLiar{clusterClient: c},
		"stale":    &clusterLiar{clusterClient: c, stale: true},
	}
	for _, name := range clusterScenarioNames {
		for _, bc := range clusterCases(name, cfg) {
			for kind, l := range liars {
				if kind == "stale" && name != "C3" {
					continue
				}
				if err := e.flush(); err != nil {
					t.Fatal(err)
				}
				if _, err := bc.run(ctx, e, l); err == nil {
					t.Errorf("%s %s: a %s lying client passed", bc.scenario, bc.name, kind)
				} else {
					t.Logf("%s %s, %s liar: %v", bc.scenario, bc.name, kind, err)
				}
			}
		}
	}
	// The honest client passes the same checks.
	for _, name := range clusterScenarioNames {
		for _, bc := range clusterCases(name, cfg) {
			if err := e.flush(); err != nil {
				t.Fatal(err)
			}
			if _, err := bc.run(ctx, e, c); err != nil {
				t.Errorf("%s %s, redpipe: %v", bc.scenario, bc.name, err)
			}
		}
	}
}

// groupBySlot keeps every key once, in its slot's group, and remembers
// where it stood.
func TestGroupBySlot(t *testing.T) {
	keys := []string{"{a}1", "b", "{a}2", "c", "{a}3"}
	groups := groupBySlot(keys)
	seen := make([]bool, len(keys))
	for _, g := range groups {
		for j, at := range g.at {
			if keys[at] != g.keys[j] || seen[at] {
				t.Fatalf("groups %+v", groups)
			}
			seen[at] = true
		}
	}
	if !slices.Equal(groups[0].keys, []string{"{a}1", "{a}2", "{a}3"}) || slices.Contains(seen, false) {
		t.Errorf("groups %+v", groups)
	}
}

// TestNoWorkClientChecksItsAnswers: the no-work client, C1's and C3's
// ceiling, learns a batch's answers from the first call, which it parses
// and checks, and fails a later call whose answer differs from the first
// by one byte: a value changed behind its back, or a key gone.
func TestNoWorkClientChecksItsAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := redistest.StartCluster(t, 0)
	e := &clusterEnv{cfg: testConfig(t), cl: cl}
	w, err := newWireCluster(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	keys := keyList("nowork:", 40)
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = "v:" + k
	}
	for range 3 {
		if err := w.PipelineSetGet(ctx, keys, vals); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.expectValues(keys, func(i int) string { return vals[i] }); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := w.MGet(ctx, keys)
		if err != nil || !slices.Equal(got, vals) {
			t.Fatalf("MGet = %v, %v; want %v", got, err, vals)
		}
	}
	// A value changed by another client, to a longer one and to a shorter
	// one: MGET's answer differs. A client that has failed is not used
	// again: the rest of the answer may still be on its way.
	set := func(v string) {
		t.Helper()
		if err := e.onOwners(keys[3:4], func(int) []string { return []string{"SET", keys[3], v} }, func(int, any) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// renew replaces a client that failed with a new one.
	renew := func(old *wireCluster) *wireCluster {
		t.Helper()
		old.Close()
		w, err := newWireCluster(cl)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		return w
	}
	set(vals[3] + ":longer")
	if _, err := w.MGet(ctx, keys); err == nil {
		t.Fatal("MGet passed with a value made longer behind its back")
	}
	w = renew(w)
	set(vals[3])
	if _, err := w.MGet(ctx, keys); err != nil {
		t.Fatal(err)
	}
	set("v")
	defer func(d time.Duration) { wireTimeout = d }(wireTimeout)
	wireTimeout = 200 * time.Millisecond
	if _, err := w.MGet(ctx, keys); err == nil {
		t.Fatal("MGet passed with a value made shorter behind its back")
	}
	w = renew(w)
	// The first MGET learnt the keys' values; a key it did not find fails
	// the learning itself.
	if _, err := w.MGet(ctx, append(keyList("nowork:absent:", 2), keys[:5]...)); err == nil {
		t.Fatal("MGet of keys that do not exist passed")
	}
}
