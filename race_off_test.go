//go:build !race

package redpipe

// raceEnabled tells tests that count allocations that the race detector
// is on: sync.Pool then drops some of what it is given, at random.
const raceEnabled = false
