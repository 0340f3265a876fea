package main

import (
	"math"
	"math/bits"
	"time"
)

// latencies is a histogram of call durations in nanoseconds whose
// buckets are each 1/latSub of their power of two wide, so a quantile read
// from it is within 1/(2·latSub) of the true sample, while its size stays
// fixed however many calls it counts. Below latSub ns every nanosecond has
// a bucket of its own.
//
// One histogram belongs to one goroutine; merge combines them afterwards,
// so that recording a call costs no lock and no shared cache line.
type latencies struct {
	counts [latBuckets]uint32
	n      uint64
}

const (
	latSubBits = 6
	latSub     = 1 << latSubBits
	latMaxBits = 40 // durations from 2^40 ns (18 minutes) up share the last bucket
	latBuckets = (latMaxBits - latSubBits + 1) * latSub
)

func latIndex(ns uint64) int {
	if ns < latSub {
		return int(ns)
	}
	ns = min(ns, 1<<latMaxBits-1)
	shift := bits.Len64(ns) - latSubBits - 1 // ns>>shift is in [latSub, 2·latSub)
	return (shift+1)*latSub + int(ns>>shift) - latSub
}

// latBounds is the range [lo, lo+width) of durations that bucket i counts.
func latBounds(i int) (lo, width uint64) {
	if i < latSub {
		return uint64(i), 1
	}
	shift := i/latSub - 1
	return uint64(i%latSub+latSub) << shift, 1 << shift
}

func (h *latencies) record(d time.Duration) {
	h.counts[latIndex(uint64(max(d, 0)))]++
	h.n++
}

func (h *latencies) merge(o *latencies) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile is the duration below or at which a share q of the calls took,
// the middle of the bucket that holds that call; 0 for an empty histogram.
func (h *latencies) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			lo, w := latBounds(i)
			return time.Duration(lo + w/2)
		}
	}
	return 0 // not reached: the counts sum to n
}
