//go:build !unix

package conn

import (
	"net"
	"time"
)

// poller is not available here: connections always wait in the runtime's
// poller.
type poller struct{ hits, emptyDue, emptyLinger uint64 }

func newPoller(net.Conn, time.Duration, func(int) due) *poller { return nil }

func (p *poller) read([]byte) (int, error, bool) { return 0, nil, false }
