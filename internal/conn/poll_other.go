//go:build !unix

package conn

import (
	"net"
	"time"
)

// poller is not available here: connections always wait in the runtime's
// poller.
type poller struct {
	hits, emptyDue, emptyLinger uint64
	budget, gap                 time.Duration
	maxSoon                     int
}

func newPoller(net.Conn, time.Duration, func(int) due) *poller { return nil }

func (p *poller) read([]byte) (int, error, bool) { return 0, nil, false }

func (p *poller) readFor([]byte, <-chan struct{}) (int, error, bool) { return 0, nil, false }

func (p *poller) mayPoll() bool { return false }

func (p *poller) readNow([]byte) (int, error) { return 0, nil }

func (p *poller) waitRead([]byte) (int, error) { return 0, nil }

func (p *poller) writeNow([]byte) int { return 0 }

func (p *poller) pollOwn(bool) bool { return false }

func (p *poller) timed(time.Time) {}

func (p *poller) untimed() {}
