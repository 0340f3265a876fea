package clusterload

import (
	"testing"

	"github.com/redpipe/redpipe/internal/hashslot"
)

// The checks must catch each anomaly they name, so that a clean run means
// a clean client, not a checker that looked away.

func TestCounterChecks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps func(c *counter) (string, string)
		want  string
	}{
		{"in order", func(c *counter) (string, string) { c.incr(ok, 1); return c.incr(ok, 2) }, ""},
		{"unknown between", func(c *counter) (string, string) { c.incr(ok, 1); c.incr(unknown, 0); return c.incr(ok, 3) }, ""},
		{"not applied between", func(c *counter) (string, string) { c.incr(ok, 1); c.incr(notApplied, 0); return c.incr(ok, 3) }, "duplicated"},
		{"ran twice", func(c *counter) (string, string) { return c.incr(ok, 2) }, "duplicated"},
		{"went back", func(c *counter) (string, string) { c.incr(ok, 1); c.incr(ok, 2); return c.incr(ok, 2) }, "lost"},
		{"final below", func(c *counter) (string, string) { c.incr(ok, 1); c.incr(ok, 2); return c.final(1) }, "lost"},
		{"final above", func(c *counter) (string, string) { c.incr(ok, 1); c.incr(notSent, 0); return c.final(2) }, "duplicated"},
		{"final unknown ran", func(c *counter) (string, string) { c.incr(ok, 1); c.incr(unknown, 0); return c.final(2) }, ""},
		{"final unknown did not", func(c *counter) (string, string) { c.incr(ok, 1); c.incr(unknown, 0); return c.final(1) }, ""},
	} {
		var c counter
		if kind, msg := tc.steps(&c); kind != tc.want {
			t.Errorf("%s: found %q (%s), want %q", tc.name, kind, msg, tc.want)
		}
	}
}

func TestRegisterChecks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps func(r *register) (string, string)
		want  string
	}{
		{"reads its write", func(r *register) (string, string) {
			r.wrote(r.queue(), ok, 1)
			return r.read(1, r.issued, 1)
		}, ""},
		{"reads an unknown write", func(r *register) (string, string) {
			r.wrote(r.queue(), ok, 1)
			r.wrote(r.queue(), unknown, 2)
			return r.read(2, r.issued, 3)
		}, ""},
		{"misses a write of its batch", func(r *register) (string, string) {
			r.wrote(r.queue(), ok, 1)
			r.wrote(r.queue(), ok, 2)
			return r.read(1, r.issued, 2)
		}, "misordered"},
		{"misses an earlier batch's write", func(r *register) (string, string) {
			r.wrote(r.queue(), ok, 1)
			r.wrote(r.queue(), ok, 2)
			return r.read(1, r.issued, 3)
		}, "lost"},
		{"sees a write queued after it", func(r *register) (string, string) {
			r.wrote(r.queue(), ok, 1)
			before := r.issued
			r.queue()
			return r.read(2, before, 1)
		}, "misordered"},
		{"sees a write said not applied", func(r *register) (string, string) {
			r.wrote(r.queue(), ok, 1)
			r.wrote(r.queue(), notApplied, 2)
			return r.read(2, r.issued, 3)
		}, "duplicated"},
		{"a seen write stays", func(r *register) (string, string) {
			r.wrote(r.queue(), unknown, 1)
			r.read(1, r.issued, 2)
			return r.read(0, r.issued, 3)
		}, "lost"},
	} {
		var r register
		if kind, msg := tc.steps(&r); kind != tc.want {
			t.Errorf("%s: found %q (%s), want %q", tc.name, kind, msg, tc.want)
		}
	}
}

func TestSharedChecks(t *testing.T) {
	l := &Load{cfg: Config{Log: t.Logf}, tags: []string{"{t}"}, shared: make([]sharedCounter, 1)}
	sc := &l.shared[0]
	sc.acked, sc.unknown, sc.max = 3, 2, 3
	for _, v := range []int64{3, 4, 5} {
		l.checkShared(0, v)
	}
	if n := l.Counts(); n.Anomalies() != 0 {
		t.Fatalf("%s for values the outcomes allow", n)
	}
	l.checkShared(0, 2)
	l.checkShared(0, 6)
	if n := l.Counts(); n.Lost != 1 || n.Duplicated != 1 {
		t.Errorf("%s, want 1 lost and 1 duplicated", n)
	}
}

func TestTagsOf(t *testing.T) {
	slots := []int{0, 42, 16383}
	tags, err := TagsOf("p", slots)
	if err != nil {
		t.Fatal(err)
	}
	for i, tag := range tags {
		if got := int(hashslot.Slot(tag + ":x")); got != slots[i] {
			t.Errorf("tag %s hashes to %d, want %d", tag, got, slots[i])
		}
	}
	if _, err := TagsOf("p", []int{1, 1}); err == nil {
		t.Error("a slot given twice was accepted")
	}
	if _, err := TagsOf("p", []int{hashslot.Count}); err == nil {
		t.Error("a slot out of range was accepted")
	}
}
