//go:build unix

package conn

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
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

	// way chooses between polling and sleeping for the calls sent back
	// to back whose callers read their own replies.
	way wayChooser

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

// pollOwn reports whether the caller of a call sent back to back, which
// waits for few replies and reads them itself, polls for them; it is
// mayPoll, with the way chosen (wayChooser). With timed, the call is
// timed, unless the link is being skipped after empty polls, until the
// line is idle again (timed), and it may be one of a trial. A call whose
// round trip says nothing of how soon a reply is taken (see
// Conn.pollOwnLocked) goes untimed, the chosen way.
func (p *poller) pollOwn(timed bool) bool {
	p.way.sent = time.Time{}
	if !p.mayPoll() {
		return false
	}
	if !timed {
		return !p.way.sleep
	}
	p.way.sent = time.Now()
	return !p.way.sleeping()
}

// timed ends the timing of the call pollOwn started, if one is timed,
// when its reply came at now.
func (p *poller) timed(now time.Time) {
	if p.way.sent.IsZero() {
		return
	}
	p.way.took(now.Sub(p.way.sent))
	p.way.sent = time.Time{}
}

// untimed drops the timing of a call whose reply someone else reads.
func (p *poller) untimed() { p.way.sent = time.Time{} }

// wayChooser chooses whether callers sent back to back poll for their
// replies or sleep on them. Which gets a reply sooner depends on the host,
// and changes with its state: where a sleeping thread is slow to wake (a
// virtual CPU gone idle, which the hypervisor must restart) polling wins
// by the cost of a wake-up, and spends less CPU time than that wake-up
// would; where wake-ups are fast, a poll's reads of the socket cost more
// than they save, and can delay the reply they wait for. So it times
// calls the way it chose, and now and then a few the other way, and
// switches when the other way was clearly quicker. Trials that do not
// switch come at longer and longer intervals, so that a host that stays
// in one state pays for them ever less.
type wayChooser struct {
	sleep    bool // the chosen way
	trial    bool // a trial of the other way is under way
	left     int  // calls the chosen way before the next trial
	interval int  // the calls between trials, doubled by each that does not switch
	kept     [wayTrial]time.Duration
	nk       int // calls timed the chosen way since it was chosen
	tried    [wayTrial]time.Duration
	nt       int
	sent     time.Time // when the call being timed was sent; zero if none is

	trials, switches int // for tests
}

const (
	// wayTrial is how many calls a trial takes, and how many of the
	// chosen way's last calls it is weighed against, by their medians,
	// which a call held up by something else does not move.
	wayTrial = 16
	// wayFirst and wayLast bound the interval between trials.
	wayFirst, wayLast = 64, 4096
)

// sleeping reports whether the next call sent back to back sleeps.
func (w *wayChooser) sleeping() bool { return w.sleep != w.trial }

// took counts the round trip d of a call sent back to back.
func (w *wayChooser) took(d time.Duration) {
	if w.interval == 0 {
		w.interval, w.left = wayFirst, wayFirst
	}
	if w.trial {
		w.tried[w.nt] = d
		if w.nt++; w.nt < wayTrial {
			return
		}
		w.trial, w.nt = false, 0
		w.trials++
		if median(&w.tried) < median(&w.kept)*7/8 {
			w.sleep, w.nk, w.interval = !w.sleep, 0, wayFirst
			w.switches++
		} else {
			w.interval = min(2*w.interval, wayLast)
		}
		w.left = w.interval
		return
	}
	w.kept[w.nk%wayTrial] = d
	w.nk++
	if w.left--; w.left <= 0 && w.nk >= wayTrial {
		w.trial = true
	}
}

// median returns the median of ds, which it sorts.
func median(ds *[wayTrial]time.Duration) time.Duration {
	slices.Sort(ds[:])
	return (ds[wayTrial/2-1] + ds[wayTrial/2]) / 2
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
