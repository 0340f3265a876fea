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
