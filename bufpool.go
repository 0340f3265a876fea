package redpipe

import (
	"math/bits"
	"sync"
	"time"
	"unsafe"
)

// Large pipelines grow their buffers through pools of recycled ones rather
// than through append alone: a batch of 100,000 commands would otherwise
// allocate and copy (and, for the command records, zero and scan) a dozen
// buffers on its way to its final size, and do it all again for the next
// batch, on the same CPUs the server needs.
//
// Buffers come in size classes: class k holds buffers with room for at
// least min<<k elements, min being minPooledBytes or minPooledMetas.
// Smaller buffers grow by append as usual.
//
// A sync.Pool drops what it holds at every second collection, and a large
// batch causes collections itself (its replies alone are 64 bytes per
// command), so a program that sends one every second or so would get its
// buffers fresh from the heap each time: zeroed and, once the runtime has
// given the pages back to the system, faulted in again. For 100,000 INCRs
// that is 1.5 to 5ms before the first byte is sent, against 2ms for the
// encoding itself. So each class from minKeptBytes to maxKeptBytes also
// keeps one buffer outside its pool, for keepFor after a buffer of that
// class was last given back; then it goes to the pool like the others.
// At most one buffer of each of those classes is kept, of exactly the
// class's size: just under twice maxKeptBytes for each kind of buffer,
// and only while large batches keep coming.
const (
	minPooledBytes = 4 << 10
	minPooledMetas = 256
	pooledClasses  = 18 // the largest holds 512 MiB of encoded commands
	// roomBytes is the space a pipeline makes sure of before each command
	// (smallRoomBytes while in its first storage); a larger command grows
	// the buffer by append.
	roomBytes      = 1 << 10
	smallRoomBytes = 64

	minKeptBytes = 64 << 10 // below it a buffer is cheap to make again
	maxKeptBytes = 16 << 20
	keepFor      = 10 * time.Second
)

var (
	bytePools = classPools[byte]{min: minPooledBytes, keepFor: keepFor}
	metaPools = classPools[cmdMeta]{min: minPooledMetas, keepFor: keepFor}
)

// classPools holds the recycled buffers of one element type by size class.
type classPools[T any] struct {
	min     int // the room of class 0, in elements
	keepFor time.Duration
	pools   [pooledClasses]sync.Pool // of *[]T

	mu    sync.Mutex
	kept  [pooledClasses][]T       // nil, or a buffer of the class held past collections
	used  [pooledClasses]time.Time // when a buffer of the class was last given back
	sweep *time.Timer              // set while some buffer is kept
}

// keeps reports whether class k's buffers are of a size kept past
// collections.
func (p *classPools[T]) keeps(k int) bool {
	var t T
	size := (p.min << k) * int(unsafe.Sizeof(t))
	return size >= minKeptBytes && size <= maxKeptBytes
}

// get returns an empty buffer of class k, if one was given back.
func (p *classPools[T]) get(k int) ([]T, bool) {
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
func (p *classPools[T]) put(k int, b []T) {
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
func (p *classPools[T]) expire() {
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
func (p *classPools[T]) keptBuffers() int {
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

// grown returns a buffer of four times b's capacity, and at least hint,
// holding b's contents, from the pools when they have one, and recycles
// b. Growing fourfold, a batch of any size has allocated and copied about
// a third of its final size on the way there when the pools are empty
// (after a collection), against as much again growing twofold.
func grown[T any](pools *classPools[T], b []T, hint int) []T {
	min := pools.min
	want := max(4*cap(b), min)
	if cap(b) >= min {
		// The hint is for a batch that has shown it is large: a short one
		// after a long one does not take a buffer of the long one's size.
		want = max(want, hint)
	}
	k := bits.Len(uint((want - 1) / min)) // the smallest class that holds want
	var nb []T
	if k < pooledClasses {
		if got, ok := pools.get(k); ok {
			nb = got
		} else {
			nb = make([]T, 0, min<<k)
		}
	} else {
		nb = make([]T, 0, want)
	}
	nb = append(nb, b...)
	recycle(pools, b)
	return nb
}

// recycle gives b to the pool of the largest class it serves. Buffers
// below the smallest class, a pipeline's own first storage among them,
// are left alone.
func recycle[T any](pools *classPools[T], b []T) {
	if cap(b) < pools.min {
		return
	}
	k := bits.Len(uint(cap(b)/pools.min)) - 1
	if k >= pooledClasses {
		return
	}
	pools.put(k, b)
}

// room makes sure a pipeline's buffers have space for the next command
// once they are large enough to come from the pools.
func (w *cmdBuf) room() {
	if !w.pooled {
		return
	}
	room := roomBytes
	if cap(w.buf) < minPooledBytes {
		room = smallRoomBytes // the first storage is used up before the pools
	}
	if cap(w.buf)-len(w.buf) < room {
		w.buf = grown(&bytePools, w.buf, w.lastBuf)
	}
	if len(w.cmds) == cap(w.cmds) {
		w.cmds = grown(&metaPools, w.cmds, w.lastCmds)
	}
}

// release empties a pipeline's buffers, giving pooled ones back and
// returning to the pipeline's first storage. The sizes it had are kept as
// hints: a pipeline used again for a batch like the last one takes
// buffers of that size at once instead of growing into them.
func (w *cmdBuf) release() {
	if !w.pooled {
		return
	}
	if cap(w.buf) > cap(w.firstBuf) {
		w.lastBuf = len(w.buf) + roomBytes
		recycle(&bytePools, w.buf)
		w.buf = w.firstBuf[:0]
	}
	if cap(w.cmds) > cap(w.firstCmds) {
		w.lastCmds = len(w.cmds) + 1
		recycle(&metaPools, w.cmds)
		w.cmds = w.firstCmds[:0]
	}
}
