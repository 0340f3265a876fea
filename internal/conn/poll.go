//go:build unix

package conn

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
)

// poller reads the socket without sleeping for a short while before the
// reader goroutine falls back to the runtime's poller, or before a caller
// polling for its own reply leaves it to the reader goroutine.
//
// Why: on a fast link (loopback, a rack, most cloud VMs) a reply comes back
// in tens of microseconds, and most of that is the cost of waking a thread
// that went to sleep waiting for it: the runtime's poller, the kernel's
// scheduler and, on a virtual machine, the hypervisor waking an idle vCPU.
// Reading with a non-blocking syscall in a loop for a moment keeps the
// thread awake, so the reply is taken as soon as the kernel has it. The
// loop yields to other goroutines between attempts, so a caller woken by
// the previous reply runs on the same thread and writes its next command
// while the reader waits, and the loop never holds up work the process has;
// in a process confined to one CPU it yields that CPU as well (shareCPU).
//
// It only works on a socket whose bytes are the protocol itself (plain TCP
// or a Unix socket); a TLS connection, or a connection from a custom
// Dialer, is read through its own Read. A poll that ends empty while
// replies were due makes the next ones shorter-lived, so that a slow link,
// where replies take longer than the budget, does not pay for polling it
// never profits from. Likewise a linger that no call came to end makes
// the next idle reads sleep at once, so that callers who pace their calls
// (one every millisecond, say) do not pay for a linger after every reply.
type poller struct {
	raw            syscall.RawConn
	nc             net.Conn      // for the addresses in errors
	budget, linger time.Duration // a budget of 0 never polls: the poller only reads without waiting, or sleeps

	// gap is how soon after the last reply a call counts as sent back to
	// back: the budget, or backToBack when it is 0.
	gap     time.Duration
	due     func(maxSoon int) due // whether replies are due, and how soon
	maxSoon int                   // replies the server sends within the budget

	// shareCPU is set when the process may run on one CPU only: then the
	// server, if it runs on this machine, most likely waits for that CPU,
	// and a poll offers it to other threads between its reads, so that the
	// reply is made at once rather than after the poll's time slice.
	shareCPU bool

	// misses counts consecutive polls that ended empty while replies were
	// due; skip is how many more reads go straight to the runtime's poller.
	misses, skip int

	// idleMisses counts consecutive lingers that no call came to end;
	// idleSkip is how many more reads with no reply due sleep at once (see
	// "Figures behind design choices" in bench/RESULTS.md).
	idleMisses, idleSkip int

	// stats, read by benchmarks once the reader has stopped
	hits, emptyDue, emptyLinger uint64

	// The read and write callbacks and their results, set up once so that
	// a poll does not allocate a closure per attempt. Used by the holder
	// of the read role only.
	p                   []byte
	n                   int
	err                 error
	fn, fnWait, fnWrite func(fd uintptr) bool
}

// backToBack is the gap for a poller that never polls: the default
// PollWait, so that a caller's calls count as back to back alike with
// polling and without.
const backToBack = 100 * time.Microsecond

// maxSkip bounds how many reads in a row go without polling after misses:
// the link may become fast again (a failover to a nearby server).
const maxSkip = 64

// skipAfter is how many reads go without polling after misses empty polls
// (or lingers) in a row: twice as many after each, up to maxSkip.
func skipAfter(misses int) int { return min(1<<min(misses, 16)-1, maxSkip) }

// lingerShare is the part of the budget a reader with no reply due stays
// awake (20µs of the default 100µs), up to maxLinger: long enough for a
// caller woken by the last reply to send its next command, short enough
// that an idle connection soon sleeps.
const (
	lingerShare = 5
	maxLinger   = 200 * time.Microsecond
)

// replyCost is about the least time the server takes per command of a
// batch, its pace when it is the limit (see "Figures behind design
// choices" in bench/RESULTS.md). A call that still waits for more replies
// than fit in the budget at that pace gets them over longer than the
// budget: polling between its chunks of replies only burns a CPU the
// server may need to make them, slowing it down, and the reader polls
// again once the call's last replies are near.
const replyCost = 500 * time.Nanosecond

func newPoller(nc net.Conn, budget time.Duration, due func(maxSoon int) due) *poller {
	budget = max(budget, 0)
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &poller{raw: raw, budget: budget, linger: min(budget/lingerShare, maxLinger), due: due, nc: nc,
		maxSoon: max(1, int(budget/replyCost)), shareCPU: runtime.NumCPU() == 1, gap: budget}
	if budget == 0 {
		p.gap = backToBack
	}
	p.fn = func(fd uintptr) bool {
		p.n, p.err = syscall.Read(int(fd), p.p)
		return true // never wait: the loop decides
	}
	p.fnWait = func(fd uintptr) bool {
		p.n, p.err = syscall.Read(int(fd), p.p)
		return p.err != syscall.EAGAIN && p.err != syscall.EINTR
	}
	p.fnWrite = func(fd uintptr) bool {
		p.n, p.err = syscall.Write(int(fd), p.p)
		return true // never wait
	}
	return p
}

// read polls while a reply is due, for up to the budget from when one
// was first seen due, and for up to linger while none is: a caller that
// just got its reply usually sends its next command within microseconds,
// and a reader still awake then takes that reply at once too. A caller
// that does not (lingers ending empty) makes the next idle reads skip the
// linger, 1, 3, 7, ... up to maxSkip of them, as empty polls do for all
// reads. ok is false when nothing came, and the caller should then make a
// blocking read.
func (p *poller) read(b []byte) (n int, err error, ok bool) {
	return p.readFor(b, nil)
}

// mayPoll reports whether a read may poll, for a caller about to read its
// own reply; a read it turns away after empty polls counts as one skipped,
// as it does in read.
func (p *poller) mayPoll() bool {
	if p.budget == 0 {
		return false
	}
	if p.skip > 0 {
		p.skip--
		return false
	}
	return true
}

// readFor is read for a caller polling for its own reply: it also gives up
// once stop, the caller's context's Done channel, is closed.
func (p *poller) readFor(b []byte, stop <-chan struct{}) (n int, err error, ok bool) {
	if p.budget == 0 {
		return 0, nil, false
	}
	if p.skip > 0 {
		p.skip--
		return 0, nil, false
	}
	p.p = b
	defer func() { p.p = nil }()
	var start, dueSince time.Time
	for {
		if rerr := p.raw.Read(p.fn); rerr != nil {
			if errors.Is(rerr, os.ErrDeadlineExceeded) {
				// The stall guard's deadline, armed earlier, has passed:
				// the blocking read re-arms it or clears it.
				return 0, nil, false
			}
			return 0, rerr, true // the socket is closed
		}
		switch {
		case p.n > 0:
			p.misses = 0
			p.hits++
			return p.n, nil, true
		case p.err == nil:
			return 0, io.EOF, true
		case !errors.Is(p.err, syscall.EAGAIN) && !errors.Is(p.err, syscall.EINTR):
			return 0, p.readErr(), true
		}
		now := time.Now()
		first := start.IsZero()
		if first {
			start = now
		}
		if dueSince.IsZero() {
			switch p.due(p.maxSoon) {
			case dueSoon:
				dueSince = now
				if !first {
					p.idleMisses = 0 // a call came while lingering
				}
			case dueLater:
				return 0, nil, false
			}
		}
		if dueSince.IsZero() {
			if first && p.idleSkip > 0 {
				p.idleSkip--
				return 0, nil, false
			}
			if now.Sub(start) > p.linger {
				p.idleMisses++
				p.emptyLinger++
				p.idleSkip = skipAfter(p.idleMisses)
				return 0, nil, false
			}
		} else if now.Sub(dueSince) > p.budget {
			p.misses++
			p.emptyDue++
			p.skip = skipAfter(p.misses)
			return 0, nil, false
		}
		if stop != nil {
			select {
			case <-stop:
				return 0, nil, false
			default:
			}
		}
		runtime.Gosched()
		if p.shareCPU {
			yieldCPU()
		}
	}
}

// readNow makes one read that does not wait: n is 0 and err nil when the
// socket has nothing. A deadline that has passed is cleared first: no
// call is in line, so it was armed for one answered since.
func (p *poller) readNow(b []byte) (n int, err error) {
	p.p = b
	defer func() { p.p = nil }()
	rerr := p.raw.Read(p.fn)
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		p.nc.SetReadDeadline(time.Time{})
		rerr = p.raw.Read(p.fn)
	}
	switch {
	case rerr != nil:
		return 0, rerr
	case p.n > 0:
		return p.n, nil
	case p.err == nil:
		return 0, io.EOF
	case errors.Is(p.err, syscall.EAGAIN) || errors.Is(p.err, syscall.EINTR):
		return 0, nil
	}
	return 0, p.readErr()
}

// waitRead reads into b, sleeping in the runtime's poller until the socket
// has something, or its read deadline passes (os.ErrDeadlineExceeded).
func (p *poller) waitRead(b []byte) (n int, err error) {
	p.p = b
	defer func() { p.p = nil }()
	if err := p.raw.Read(p.fnWait); err != nil {
		return 0, err
	}
	switch {
	case p.n > 0:
		return p.n, nil
	case p.err == nil:
		return 0, io.EOF
	}
	return 0, p.readErr()
}

// writeNow writes what the socket takes of b without waiting, and reports
// how much that was; an error is left for the blocking write that follows
// to meet and report. Its caller holds the read role as well as the write
// role, which keeps p.p and p.n its own.
func (p *poller) writeNow(b []byte) int {
	p.p = b
	defer func() { p.p = nil }()
	if err := p.raw.Write(p.fnWrite); err != nil {
		// The callback did not run (the socket was closed meanwhile):
		// p.n is still the count of the last read.
		return 0
	}
	return max(p.n, 0)
}

// readErr is the error of a failed read syscall, as the blocking read
// reports it, addresses and all.
func (p *poller) readErr() error {
	return &net.OpError{Op: "read", Net: p.nc.LocalAddr().Network(),
		Source: p.nc.LocalAddr(), Addr: p.nc.RemoteAddr(), Err: os.NewSyscallError("read", p.err)}
}
