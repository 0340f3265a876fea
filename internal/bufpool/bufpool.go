// Package bufpool recycles large buffers by size class, for pipelines
// whose buffers grow to hold big batches.
//
// Large pipelines grow their buffers through pools of recycled ones rather
// than through append alone: a batch of 100,000 commands would otherwise
// allocate and copy (and, for the command records, zero and scan) a dozen
// buffers on its way to its final size, and do it all again for the next
// batch, on the same CPUs the server needs.
//
// Buffers come in size classes: class k holds buffers with room for at
// least min<<k elements, min being the Pools' smallest room. Smaller
// buffers are not pooled: their owner grows them by append as usual.
//
// A sync.Pool drops what it holds at every second collection, and a large
// batch causes collections itself (its replies alone are 64 bytes per
// command), so a program that sends one every second or so would get its
// buffers fresh from the heap each time: zeroed and, once the runtime has
// given the pages back to the system, faulted in again, all before the
// first byte is sent, which can take as long as encoding the batch (see
// "Figures behind design choices" in bench/RESULTS.md). So each class from minKeptBytes to maxKeptBytes also
// keeps one buffer outside its pool, for keepFor after a buffer of that
// class was last given back; then it goes to the pool like the others.
// At most one buffer of each of those classes is kept, of exactly the
// class's size: just under twice maxKeptBytes for each kind of buffer,
// and only while large batches keep coming.
package bufpool

import (
	"math/bits"
	"sync"
	"time"
	"unsafe"
)

const (
	classes = 18 // the largest holds 512 MiB of encoded commands

	minKeptBytes = 64 << 10 // below it a buffer is cheap to make again
	maxKeptBytes = 16 << 20
	keepFor      = 10 * time.Second
)

// Pools holds the recycled buffers of one element type by size class.
type Pools[T any] struct {
	min     int // the room of class 0, in elements
	keepFor time.Duration
	pools   [classes]sync.Pool // of *[]T

	mu    sync.Mutex
	kept  [classes][]T       // nil, or a buffer of the class held past collections
	used  [classes]time.Time // when a buffer of the class was last given back
	sweep *time.Timer        // set while some buffer is kept
}

// New returns pools whose smallest class holds buffers with room for min
// elements.
func New[T any](min int) *Pools[T] {
	return &Pools[T]{min: min, keepFor: keepFor}
}

// keeps reports whether class k's buffers are of a size kept past
// collections.
func (p *Pools[T]) keeps(k int) bool {
	var t T
	size := (p.min << k) * int(unsafe.Sizeof(t))
	return size >= minKeptBytes && size <= maxKeptBytes
}

// get returns an empty buffer of class k, if one was given back.
func (p *Pools[T]) get(k int) ([]T, bool) {
	if p.keeps(k) {
		p.mu.Lock()
		b := p.kept[k]
		p.kept[k] = nil
		p.mu.Unlock()
		if b != nil {
			return b, true
		}
	}
	if bp, ok := p.pools[k].Get().(*[]T); ok {
		return (*bp)[:0], true
	}
	return nil, false
}

// put gives back b, a buffer of class k. Only a buffer of exactly the
// class's size is kept, which bounds what is kept: one grown past it by
// append (a large argument) may be nearly twice that.
func (p *Pools[T]) put(k int, b []T) {
	b = b[:0]
	if p.keeps(k) && cap(b) == p.min<<k {
		p.mu.Lock()
		p.used[k] = time.Now()
		if p.kept[k] == nil {
			p.kept[k] = b
			if p.sweep == nil {
				p.sweep = time.AfterFunc(p.keepFor, p.expire)
			}
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	p.pools[k].Put(&b)
}

// expire moves the kept buffers of the classes not given back for keepFor
// to their pools, and comes back for the others when they are due.
func (p *Pools[T]) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var next time.Duration
	for k, b := range p.kept {
		if b == nil {
			continue
		}
		if left := p.keepFor - now.Sub(p.used[k]); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		p.kept[k] = nil
		p.pools[k].Put(&b)
	}
	if next > 0 {
		p.sweep.Reset(next)
	} else {
		p.sweep = nil
	}
}

// keptBuffers counts the buffers held past collections, for tests.
func (p *Pools[T]) keptBuffers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, b := range p.kept {
		if b != nil {
			n++
		}
	}
	return n
}

// Grow returns a buffer of four times b's capacity, and at least hint,
// holding b's contents, from the pools when they have one, and recycles
// b. Growing fourfold, a batch of any size has allocated and copied about
// a third of its final size on the way there when the pools are empty
// (after a collection), against as much again growing twofold.
func (p *Pools[T]) Grow(b []T, hint int) []T {
	min := p.min
	want := max(4*cap(b), min)
	if cap(b) >= min {
		// The hint is for a batch that has shown it is large: a short one
		// after a long one does not take a buffer of the long one's size.
		want = max(want, hint)
	}
	k := bits.Len(uint((want - 1) / min)) // the smallest class that holds want
	var nb []T
	if k < classes {
		if got, ok := p.get(k); ok {
			nb = got
		} else {
			nb = make([]T, 0, min<<k)
		}
	} else {
		nb = make([]T, 0, want)
	}
	nb = append(nb, b...)
	p.Recycle(b)
	return nb
}

// Take returns an empty buffer with room for at least n elements: one
// given back earlier when the pools have one of the smallest class that
// holds n, else a new one. A request below the smallest class gets a
// buffer of that class, so that a caller recycling what it takes need not
// tell small requests apart.
func (p *Pools[T]) Take(n int) []T {
	k := 0
	if n > p.min {
		k = bits.Len(uint((n - 1) / p.min))
	}
	if k >= classes {
		return make([]T, 0, n)
	}
	if b, ok := p.get(k); ok {
		return b
	}
	return make([]T, 0, p.min<<k)
}

// Recycle gives b to the pool of the largest class it serves. Buffers
// below the smallest class, a pipeline's own first storage among them,
// are left alone.
func (p *Pools[T]) Recycle(b []T) {
	if cap(b) < p.min {
		return
	}
	k := bits.Len(uint(cap(b)/p.min)) - 1
	if k >= classes {
		return
	}
	p.put(k, b)
}
