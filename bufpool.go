package redpipe

import (
	"math/bits"
	"sync"
)

// Large pipelines grow their buffers through pools of recycled ones rather
// than through append alone: a batch of 100,000 commands would otherwise
// allocate and copy (and, for the command records, zero and scan) a dozen
// buffers on its way to its final size, and do it all again for the next
// batch, on the same CPUs the server needs. Pools keep their buffers only
// between garbage collections, so a burst does not pin memory for good.
//
// Buffers come in size classes: class k holds buffers with room for at
// least min<<k elements, min being minPooledBytes or minPooledMetas.
// Smaller buffers grow by append as usual.
const (
	minPooledBytes = 4 << 10
	minPooledMetas = 256
	pooledClasses  = 18 // the largest holds 512 MiB of encoded commands
	// roomBytes is the space a pipeline makes sure of before each command
	// (smallRoomBytes while in its first storage); a larger command grows
	// the buffer by append.
	roomBytes      = 1 << 10
	smallRoomBytes = 64
)

var (
	bytePools [pooledClasses]sync.Pool // of *[]byte
	metaPools [pooledClasses]sync.Pool // of *[]cmdMeta
)

// grown returns a buffer of four times b's capacity, and at least hint,
// holding b's contents, from the pools when they have one, and recycles
// b. Growing fourfold, a batch of any size has allocated and copied about
// a third of its final size on the way there when the pools are empty
// (after a collection), against as much again growing twofold.
func grown[T any](pools *[pooledClasses]sync.Pool, b []T, min, hint int) []T {
	want := max(4*cap(b), min)
	if cap(b) >= min {
		// The hint is for a batch that has shown it is large: a short one
		// after a long one does not take a buffer of the long one's size.
		want = max(want, hint)
	}
	k := bits.Len(uint((want - 1) / min)) // the smallest class that holds want
	var nb []T
	if k < pooledClasses {
		if p, ok := pools[k].Get().(*[]T); ok {
			nb = (*p)[:0]
		} else {
			nb = make([]T, 0, min<<k)
		}
	} else {
		nb = make([]T, 0, want)
	}
	nb = append(nb, b...)
	recycle(pools, b, min)
	return nb
}

// recycle gives b to the pool of the largest class it serves. Buffers
// below the smallest class, a pipeline's own first storage among them,
// are left alone.
func recycle[T any](pools *[pooledClasses]sync.Pool, b []T, min int) {
	if cap(b) < min {
		return
	}
	k := bits.Len(uint(cap(b)/min)) - 1
	if k >= pooledClasses {
		return
	}
	b = b[:0]
	pools[k].Put(&b)
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
		w.buf = grown(&bytePools, w.buf, minPooledBytes, w.lastBuf)
	}
	if len(w.cmds) == cap(w.cmds) {
		w.cmds = grown(&metaPools, w.cmds, minPooledMetas, w.lastCmds)
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
		recycle(&bytePools, w.buf, minPooledBytes)
		w.buf = w.firstBuf[:0]
	}
	if cap(w.cmds) > cap(w.firstCmds) {
		w.lastCmds = len(w.cmds) + 1
		recycle(&metaPools, w.cmds, minPooledMetas)
		w.cmds = w.firstCmds[:0]
	}
}
