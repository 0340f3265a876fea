package bufpool

import (
	"bytes"
	"math/bits"
	"runtime"
	"testing"
	"time"
)

// minBytes is the smallest class of the client's pools of encoded commands.
const minBytes = 4 << 10

// TestGrowKeepsContentsAndClasses: a grown buffer holds what the old one
// held, has four times its room and at least the hint, and comes in
// a size its pool class promises; a recycled buffer is handed out again.
func TestGrowKeepsContentsAndClasses(t *testing.T) {
	const min = 16
	pools := Pools[byte]{min: min, keepFor: time.Minute}
	b := []byte("0123456789")
	for range 8 {
		old := cap(b)
		before := string(b)
		b = pools.Grow(b, 0)
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
	if h := pools.Grow(append(make([]byte, 0, min), 'a'), 1000); cap(h) < 1000 || string(h) != "a" {
		t.Fatalf("grown with a hint of 1000 gave room for %d (%q)", cap(h), h)
	}
	if h := pools.Grow([]byte("a"), 1000); cap(h) >= 1000 {
		t.Fatalf("a buffer below the smallest class grew to the hint, %d", cap(h))
	}
	// A buffer given back serves the next request of its class. (The race
	// detector makes pools drop some of what they are given, so it is
	// given a few chances.)
	fresh := Pools[byte]{min: min, keepFor: time.Minute}
	reused := false
	for range 10 {
		big := make([]byte, 0, 8*min)
		fresh.Recycle(big)
		got := fresh.Grow(make([]byte, 0, 2*min), 0)
		if cap(got) != 8*min {
			t.Fatalf("grown from room for %d gave %d, want %d", 2*min, cap(got), 8*min)
		}
		reused = reused || &got[:1][0] == &big[:1][0]
	}
	if !reused {
		t.Fatal("a recycled buffer was never handed out again")
	}
	// Below the smallest class nothing is pooled.
	fresh.Recycle(make([]byte, 0, min-1))
	if p, ok := fresh.get(0); ok {
		t.Fatalf("a buffer below the smallest class was pooled: %v", p)
	}
}

// TestLargeBuffersOutliveCollections: a buffer of a kept class given back
// is handed out again after collections that empty the pools; one below
// the kept sizes is not held past them.
func TestLargeBuffersOutliveCollections(t *testing.T) {
	pools := Pools[byte]{min: minBytes, keepFor: time.Minute}
	kept := bits.Len(uint(minKeptBytes/minBytes)) - 1 // the smallest kept class
	if !pools.keeps(kept) || pools.keeps(kept-1) || pools.keeps(kept+bits.Len(uint(maxKeptBytes/minKeptBytes))) {
		t.Fatalf("classes %d.. are kept, want from %d (%d bytes) up to %d bytes", kept, kept, minKeptBytes, maxKeptBytes)
	}
	if top := bits.Len(uint(maxKeptBytes/minBytes)) - 1; !pools.keeps(top) || pools.keeps(top+1) {
		t.Fatalf("class %d (%d bytes) should be the largest kept", top, maxKeptBytes)
	}
	big := make([]byte, 0, minKeptBytes)
	small := make([]byte, 0, minKeptBytes/2)
	// Grown past its class by append (a large argument): not kept, so that
	// what is kept stays within the classes' sizes.
	oversized := make([]byte, 0, 4*minKeptBytes-1)
	pools.Recycle(oversized)
	if n := pools.keptBuffers(); n != 0 {
		t.Fatalf("a buffer of %d bytes, past its class, was kept", cap(oversized))
	}
	pools.Recycle(big)
	pools.Recycle(small)
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
//
// The pools expire buffers on a timer of their own, with no clock to set,
// so the test polls for what the timer does, and judges each buffer let go
// by the time since its class was last given one back. Those times are
// taken before the buffer is given back, so that a slow test can only see
// more time pass, never less: a buffer seen let go less than keepFor after
// one of them was let go too early.
func TestKeptBuffersExpire(t *testing.T) {
	const (
		keep  = 100 * time.Millisecond
		poll  = keep / 20
		limit = 5 * time.Second
	)
	pools := Pools[byte]{min: minBytes, keepFor: keep}
	idle := bits.Len(uint(minKeptBytes/minBytes)) - 1
	busy := idle + 2
	isKept := func(k int) bool {
		pools.mu.Lock()
		defer pools.mu.Unlock()
		return pools.kept[k] != nil
	}
	idleSince := time.Now()
	pools.Recycle(make([]byte, 0, minKeptBytes))
	busySince := time.Now()
	pools.Recycle(make([]byte, 0, 4*minKeptBytes))
	// Until class idle's buffer is let go, class busy is given its buffer
	// back at every poll, and keeps it through that expiry.
	deadline := time.Now().Add(limit)
	for isKept(idle) {
		if time.Now().After(deadline) {
			t.Fatalf("a buffer still kept %v after it was given back, with keepFor %v", limit, keep)
		}
		if !isKept(busy) && time.Since(busySince) < keep {
			t.Fatalf("a buffer given back %v ago was let go", time.Since(busySince))
		}
		if b, ok := pools.get(busy); ok {
			busySince = time.Now()
			pools.Recycle(b)
		}
		time.Sleep(poll)
	}
	if since := time.Since(idleSince); since < keep {
		t.Fatalf("a buffer given back %v ago was let go", since)
	}
	if !isKept(busy) && time.Since(busySince) < keep {
		t.Fatalf("a buffer given back %v ago was let go along with one given back %v ago", time.Since(busySince), time.Since(idleSince))
	}
	// Left alone, class busy's buffer goes too, keepFor after its last use.
	deadline = time.Now().Add(limit)
	for isKept(busy) {
		if time.Now().After(deadline) {
			t.Fatalf("a buffer still kept %v after its last use, with keepFor %v", limit, keep)
		}
		time.Sleep(poll)
	}
	if since := time.Since(busySince); since < keep {
		t.Fatalf("a buffer given back %v ago was let go", since)
	}
	if n := pools.keptBuffers(); n != 0 {
		t.Fatalf("%d buffers still kept after their classes expired", n)
	}
	runtime.GC()
	runtime.GC()
	for _, k := range []int{idle, busy} {
		if _, ok := pools.get(k); ok {
			t.Fatalf("class %d still had a buffer two collections after it expired", k)
		}
	}
}

// TestTake: a buffer taken has room for what was asked, in a class's
// size, and one recycled is taken again by a request of its class.
func TestTake(t *testing.T) {
	const min = 16
	pools := Pools[int]{min: min, keepFor: time.Minute}
	for _, n := range []int{0, 1, min, min + 1, 3 * min, 100 * min} {
		b := pools.Take(n)
		if len(b) != 0 || cap(b) < n || cap(b) < min || cap(b)&(cap(b)-1) != 0 {
			t.Fatalf("Take(%d) gave len %d, cap %d", n, len(b), cap(b))
		}
		if n > min && cap(b) >= 2*n {
			t.Fatalf("Take(%d) gave room for %d, more than its class", n, cap(b))
		}
	}
	reused := false
	for range 10 {
		b := make([]int, 5, 4*min)
		pools.Recycle(b)
		got := pools.Take(3*min + 1)
		if len(got) != 0 || cap(got) != 4*min {
			t.Fatalf("Take(%d) after a recycle gave len %d, cap %d", 3*min+1, len(got), cap(got))
		}
		reused = reused || &got[:1][0] == &b[0]
	}
	if !reused {
		t.Fatal("a recycled buffer was never taken again")
	}
	one := Pools[byte]{min: 1, keepFor: time.Minute}
	if n := 1<<classes + 1; cap(one.Take(n)) < n {
		t.Fatalf("a request past the largest class gave room for %d, want %d", cap(one.Take(n)), n)
	}
}
