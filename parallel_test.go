package redpipe

import (
	"flag"
	"strconv"
)

// waitingParallel is how many tests that call t.Parallel run at once
// unless -parallel says otherwise. Those tests spend their time waiting
// for servers (a cluster to form, a replica to take over, a server-side
// timeout to pass), not on the CPU: under -race the whole package keeps
// a third of one CPU busy on average. The default of -parallel,
// GOMAXPROCS, would run only two of them at once on a machine of two.
const waitingParallel = 4

// allowWaitingParallel raises the default of -parallel to waitingParallel;
// TestMain calls it before it runs the tests. A -parallel given on the
// command line is kept.
func allowWaitingParallel() {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if p := flag.Lookup("test.parallel"); !given && p != nil {
		if n, err := strconv.Atoi(p.Value.String()); err == nil && n < waitingParallel {
			p.Value.Set(strconv.Itoa(waitingParallel))
		}
	}
}
