package redpipe

import (
	"bytes"
	"context"
	"math/bits"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGrownKeepsContentsAndClasses: a grown buffer holds what the old one
// held, has four times its room and at least the hint, and comes in
// a size its pool class promises; a recycled buffer is handed out again.
func TestGrownKeepsContentsAndClasses(t *testing.T) {
	const min = 16
	pools := classPools[byte]{min: min, keepFor: time.Minute}
	b := []byte("0123456789")
	for range 8 {
		old := cap(b)
		before := string(b)
		b = grown(&pools, b, 0)
		if string(b) != before {
			t.Fatalf("grown lost the contents: %q, want %q", b, before)
		}
		if cap(b) < 4*old || cap(b) < min {
			t.Fatalf("grown from room for %d to %d", old, cap(b))
		}
		if c := cap(b); c&(c-1) != 0 || c < min {
			t.Fatalf("a class buffer of %d, not a power of two times %d", c, min)
		}
		b = append(b, bytes.Repeat([]byte{'x'}, cap(b)-len(b))...)
	}
	// The hint counts once the buffer is of the smallest class.
	if h := grown(&pools, append(make([]byte, 0, min), 'a'), 1000); cap(h) < 1000 || string(h) != "a" {
		t.Fatalf("grown with a hint of 1000 gave room for %d (%q)", cap(h), h)
	}
	if h := grown(&pools, []byte("a"), 1000); cap(h) >= 1000 {
		t.Fatalf("a buffer below the smallest class grew to the hint, %d", cap(h))
	}
	// A buffer given back serves the next request of its class. (The race
	// detector makes pools drop some of what they are given, so it is
	// given a few chances.)
	fresh := classPools[byte]{min: min, keepFor: time.Minute}
	reused := false
	for range 10 {
		big := make([]byte, 0, 8*min)
		recycle(&fresh, big)
		got := grown(&fresh, make([]byte, 0, 2*min), 0)
		if cap(got) != 8*min {
			t.Fatalf("grown from room for %d gave %d, want %d", 2*min, cap(got), 8*min)
		}
		reused = reused || &got[:1][0] == &big[:1][0]
	}
	if !reused {
		t.Fatal("a recycled buffer was never handed out again")
	}
	// Below the smallest class nothing is pooled.
	recycle(&fresh, make([]byte, 0, min-1))
	if p, ok := fresh.get(0); ok {
		t.Fatalf("a buffer below the smallest class was pooled: %v", p)
	}
}

// TestPipelinesShareRecycledBuffers: pipelines made one after another
// reuse each other's buffers, and each still sends exactly its own
// commands, used again or new, plain or transactional.
func TestPipelinesShareRecycledBuffers(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	check := func(p *Pipeline, round, n int) {
		t.Helper()
		for i := range n {
			p.Set("k"+strconv.Itoa(i), strconv.Itoa(round*n+i))
		}
		p.Get("k0")
		replies, err := p.Exec(ctx)
		if err != nil || len(replies) != n+1 {
			t.Fatalf("round %d: %d replies, %v", round, len(replies), err)
		}
		if s, _ := replies[n].Text(); s != strconv.Itoa(round*n) {
			t.Fatalf("round %d: GET k0 = %q, want %d", round, s, round*n)
		}
	}
	reused := c.Pipeline(NoTransaction)
	for round, n := range []int{5000, 300, 20000, 5000, 1} {
		check(c.Pipeline(), 2*round, n)
		check(reused, 2*round+1, n)
		if v, _ := c.Get(ctx, "k"+strconv.Itoa(n-1)); v != strconv.Itoa((2*round+1)*n+n-1) {
			t.Fatalf("round %d: last key = %q", round, v)
		}
	}
}

// testKeys returns n distinct key names.
func testKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "key:" + strconv.Itoa(i)
	}
	return keys
}

// execSets queues SET k val for every key on p, runs it and checks that
// every reply is OK.
func execSets(tb testing.TB, ctx context.Context, p *Pipeline, keys []string, val string) {
	tb.Helper()
	for _, k := range keys {
		p.Set(k, val)
	}
	execOKs(tb, ctx, p)
}

// execOKs runs p and checks that every reply is OK.
func execOKs(tb testing.TB, ctx context.Context, p *Pipeline) {
	tb.Helper()
	n := p.Len()
	replies, err := p.Exec(ctx)
	if err != nil || len(replies) != n {
		tb.Fatal(len(replies), err)
	}
	for _, r := range replies {
		if err := okReply(r, nil); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestPipelineAllocations: a new pipeline of 1000 SETs, executed and its
// replies checked, allocates a few times per batch, not per command. A
// value made at run time adds the allocation of its box, which escapes
// because arguments of other types are encoded by their methods: one per
// command, the bound.
func TestPipelineAllocations(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := context.Background()
	keys := testKeys(1000)
	val := strings.Repeat("v", 16)
	for _, tc := range []struct {
		name string
		max  float64
		run  func()
	}{
		{"constant value", 50, func() {
			p := c.Pipeline(NoTransaction)
			for _, k := range keys {
				p.Set(k, "0123456789abcdef")
			}
			execOKs(t, ctx, p)
		}},
		{"run-time value", float64(len(keys)) + 50, func() { execSets(t, ctx, c.Pipeline(NoTransaction), keys, val) }},
	} {
		tc.run()
		if n := testing.AllocsPerRun(50, tc.run); n > tc.max {
			t.Errorf("%s: a pipeline of %d SETs allocated %v times, want at most %v", tc.name, len(keys), n, tc.max)
		}
	}
}

// TestPipelineBufferSizes: a short batch stays in the pipeline's own
// storage, and a short batch after a long one on the same pipeline does
// not take a buffer of the long one's size.
func TestPipelineBufferSizes(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	p := c.Pipeline(NoTransaction)
	p.Incr("n")
	if cap(p.w.buf) != cap(p.w.firstBuf) {
		t.Fatalf("one INCR moved the pipeline to a buffer of %d bytes", cap(p.w.buf))
	}
	for range 50_000 {
		p.Incr("n")
	}
	if _, err := p.Exec(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		p.Incr("n")
	}
	if got := cap(p.w.buf); got > 16*minPooledBytes {
		t.Fatalf("100 INCRs after 50,000 took a buffer of %d bytes", got)
	}
	p.Discard()
}

// TestLargeBuffersOutliveCollections: a buffer of a kept class given back
// is handed out again after collections that empty the pools; one below
// the kept sizes is not held past them.
func TestLargeBuffersOutliveCollections(t *testing.T) {
	pools := classPools[byte]{min: minPooledBytes, keepFor: time.Minute}
	kept := bits.Len(uint(minKeptBytes/minPooledBytes)) - 1 // the smallest kept class
	if !pools.keeps(kept) || pools.keeps(kept-1) || pools.keeps(kept+bits.Len(uint(maxKeptBytes/minKeptBytes))) {
		t.Fatalf("classes %d.. are kept, want from %d (%d bytes) up to %d bytes", kept, kept, minKeptBytes, maxKeptBytes)
	}
	if top := bits.Len(uint(maxKeptBytes/minPooledBytes)) - 1; !pools.keeps(top) || pools.keeps(top+1) {
		t.Fatalf("class %d (%d bytes) should be the largest kept", top, maxKeptBytes)
	}
	big := make([]byte, 0, minKeptBytes)
	small := make([]byte, 0, minKeptBytes/2)
	// Grown past its class by append (a large argument): not kept, so that
	// what is kept stays within the classes' sizes.
	oversized := make([]byte, 0, 4*minKeptBytes-1)
	recycle(&pools, oversized)
	if n := pools.keptBuffers(); n != 0 {
		t.Fatalf("a buffer of %d bytes, past its class, was kept", cap(oversized))
	}
	recycle(&pools, big)
	recycle(&pools, small)
	runtime.GC()
	runtime.GC()
	got, ok := pools.get(kept)
	if !ok || cap(got) != cap(big) || &got[:1][0] != &big[:1][0] {
		t.Fatalf("after two collections class %d gave %v (room for %d), want the buffer given back", kept, ok, cap(got))
	}
	if _, ok := pools.get(kept - 1); ok {
		t.Fatalf("a buffer of %d bytes was held past two collections", cap(small))
	}
	if _, ok := pools.get(kept); ok {
		t.Fatal("one kept buffer was handed out twice")
	}
}

// TestKeptBuffersExpire: a kept buffer goes back to its pool keepFor after
// its class was last given a buffer back, not before, and from there is
// dropped by collections like any pooled one; a class in use keeps its
// buffer.
func TestKeptBuffersExpire(t *testing.T) {
	const keep = 100 * time.Millisecond
	pools := classPools[byte]{min: minPooledBytes, keepFor: keep}
	idle := bits.Len(uint(minKeptBytes/minPooledBytes)) - 1
	busy := idle + 2
	isKept := func(k int) bool {
		pools.mu.Lock()
		defer pools.mu.Unlock()
		return pools.kept[k] != nil
	}
	recycle(&pools, make([]byte, 0, minKeptBytes))
	idleSince := time.Now()
	recycle(&pools, make([]byte, 0, 4*minKeptBytes))
	busySince := time.Now()
	// Class busy is given a buffer back every keep/4, for 3*keep.
	for end := time.Now().Add(3 * keep); time.Now().Before(end); {
		time.Sleep(keep / 4)
		if !isKept(busy) && time.Since(busySince) < keep {
			t.Fatalf("a buffer given back %v ago was let go", time.Since(busySince))
		}
		if !isKept(idle) && time.Since(idleSince) < keep {
			t.Fatalf("a buffer given back %v ago was let go", time.Since(idleSince))
		}
		if b, ok := pools.get(busy); ok {
			recycle(&pools, b)
			busySince = time.Now()
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for pools.keptBuffers() > 0 && time.Now().Before(deadline) {
		time.Sleep(keep / 4)
	}
	if n := pools.keptBuffers(); n != 0 {
		t.Fatalf("%d buffers still kept 5s after their last use", n)
	}
	runtime.GC()
	runtime.GC()
	for _, k := range []int{idle, busy} {
		if _, ok := pools.get(k); ok {
			t.Fatalf("class %d still had a buffer two collections after it expired", k)
		}
	}
}
