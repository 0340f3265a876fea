package redistest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Direction names one or both directions of the traffic through a Proxy.
type Direction int

const (
	// ClientToServer is what the client sends: its commands.
	ClientToServer Direction = 1 << iota
	// ServerToClient is what the server sends: its replies.
	ServerToClient
	// Both is both directions.
	Both = ClientToServer | ServerToClient
)

// indexes of the two directions in per-direction arrays
const (
	c2s = 0
	s2c = 1
)

// check panics on a Direction that names neither direction, or bits
// outside Both: a proxy told to stall or hold "nothing" would let a fault
// test pass without injecting its fault.
func (d Direction) check(method string) {
	if d&Both == 0 || d&^Both != 0 {
		panic(fmt.Sprintf("redistest: Proxy.%s: direction %d is none of ClientToServer, ServerToClient and Both", method, int(d)))
	}
}

func (d Direction) has(i int) bool {
	if i == c2s {
		return d&ClientToServer != 0
	}
	return d&ServerToClient != 0
}

// CutMode says how Cut ends a connection.
type CutMode int

const (
	// CutRST resets both sockets (SO_LINGER 0, then close), as a crashed
	// peer or a middlebox dropping state does: the client sees a
	// connection reset.
	CutRST CutMode = iota
	// CutFIN half-closes both sockets in the orderly way, as a server
	// that closes an idle or misbehaving client does: the client reads end
	// of file.
	CutFIN
)

const (
	proxyDialTimeout = 2 * time.Second
	// finGrace bounds how long a connection ended with CutFIN may linger
	// before the proxy closes it outright, in case a peer never answers
	// the FIN with its own.
	finGrace = time.Second
	// acceptBackoff is the pause after a failed Accept that is not the
	// listener closing (too many open files, say), so the loop cannot spin.
	acceptBackoff = 10 * time.Millisecond
	proxyBuffer   = 32 << 10
)

// Proxy is a TCP proxy on a loopback port in front of a server, which fault
// tests use to do to a client's connections what a bad network or a sick
// server would: hold bytes back, slow them down, reset or close the
// connections, let a command or a reply through only in part.
//
// Hold, PassBytes, Cut and DropAll act on the current connections: those
// the proxy has accepted and connected to the server, which Conns counts.
// A client's dial can return before its connection is one of them, so a
// test that means to act on it waits until Conns counts it, or until a
// reply has come through it.
//
// The proxy forwards bytes as they come and never rewrites or drops them:
// whatever it holds back it delivers after Reset, unless the connection is
// closed first. So a client that sees a reply that is not its own has a bug
// of its own, not one the proxy made.
type Proxy struct {
	// Addr is where clients connect, "127.0.0.1:PORT".
	Addr string

	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop, the dials and the pumps

	mu      sync.Mutex // guards the fields below
	stalled [2]bool
	latency time.Duration
	limit   [2]int64 // byte budget given to new connections; -1: none
	// changed is closed and replaced whenever a stall or a budget changes,
	// to wake the pumps waiting for one.
	changed chan struct{}
	conns   map[*proxyConn]struct{}
	closed  bool
}

// proxyConn is one client connection and the proxy's own connection to the
// server for it.
type proxyConn struct {
	client, server *net.TCPConn
	done           chan struct{} // closed when both sockets are closed
	closeOnce      sync.Once

	// Guarded by Proxy.mu.
	budget [2]int64 // bytes still allowed through per direction; -1: no limit
	ended  int      // directions that reached end of file
}

// NewProxy starts a proxy on a free loopback port that forwards every
// connection made to it to target, a host:port address. Close it when
// done.
func NewProxy(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("redistest: proxy: target %q is not a host:port address: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redistest: proxy: %w", err)
	}
	p := &Proxy{
		Addr:    ln.Addr().String(),
		target:  target,
		ln:      ln,
		limit:   [2]int64{-1, -1},
		changed: make(chan struct{}),
		conns:   make(map[*proxyConn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// StartProxy is NewProxy for a test: it fails the test if the proxy cannot
// start and closes it in t.Cleanup.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	mustNotHaveEnded(t, "StartProxy")
	p, err := NewProxy(target)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { p.Close() })
	if err := testEnded(t, "StartProxy"); err != nil {
		p.Close()
		panic(err)
	}
	return p
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(acceptBackoff)
			continue
		}
		p.wg.Add(1)
		go p.serve(nc.(*net.TCPConn))
	}
}

// serve dials the server for one accepted client and starts forwarding.
// A client whose server cannot be reached is closed at once, as it would
// be by a server that is down.
func (p *Proxy) serve(client *net.TCPConn) {
	defer p.wg.Done()
	sc, err := net.DialTimeout("tcp", p.target, proxyDialTimeout)
	if err != nil {
		client.Close()
		return
	}
	pc := &proxyConn{client: client, server: sc.(*net.TCPConn), done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pc.closeSockets()
		return
	}
	pc.budget = p.limit
	p.conns[pc] = struct{}{}
	p.wg.Add(2)
	p.mu.Unlock()
	go p.pump(pc, c2s, pc.client, pc.server)
	go p.pump(pc, s2c, pc.server, pc.client)
}

// pump forwards one direction of one connection until either side ends it.
func (p *Proxy) pump(pc *proxyConn, dir int, src, dst *net.TCPConn) {
	defer p.wg.Done()
	buf := make([]byte, proxyBuffer)
	for {
		// Not reading while stalled or out of budget is what holds the
		// peer back: its bytes wait in the kernel, then its writes block.
		if !p.await(pc, dir) {
			return
		}
		n, rerr := src.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			if !p.await(pc, dir) {
				return
			}
			if d := p.currentLatency(); d > 0 && !sleep(d, pc.done) {
				return
			}
			k := p.take(pc, dir, len(data))
			if k == 0 {
				continue // the budget ran out meanwhile: await blocks
			}
			if _, err := dst.Write(data[:k]); err != nil {
				p.drop(pc)
				return
			}
			data = data[k:]
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				// Pass the orderly close on, and let the other direction
				// finish what it is sending.
				dst.CloseWrite()
				p.ended(pc)
			} else {
				p.drop(pc)
			}
			return
		}
	}
}

// await blocks while dir of pc is stalled or out of budget, and reports
// false if the connection was closed meanwhile.
func (p *Proxy) await(pc *proxyConn, dir int) bool {
	for {
		p.mu.Lock()
		open := !p.stalled[dir] && pc.budget[dir] != 0
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-pc.done:
			return false
		default:
		}
		if open {
			return true
		}
		select {
		case <-changed:
		case <-pc.done:
			return false
		}
	}
}

// take reserves up to n bytes of dir's budget and returns how many may go.
func (p *Proxy) take(pc *proxyConn, dir, n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := pc.budget[dir]
	if b < 0 {
		return n
	}
	k := min(int64(n), b)
	pc.budget[dir] -= k
	return int(k)
}

func (p *Proxy) currentLatency() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latency
}

// sleep waits d and reports false if done closed first.
func sleep(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// ended records that one direction reached end of file; once both have,
// the connection is over.
func (p *Proxy) ended(pc *proxyConn) {
	p.mu.Lock()
	pc.ended++
	both := pc.ended == 2
	p.mu.Unlock()
	if both {
		p.drop(pc)
	}
}

// drop closes both sockets of pc and forgets it.
func (p *Proxy) drop(pc *proxyConn) {
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
	pc.closeSockets()
}

func (pc *proxyConn) closeSockets() {
	pc.closeOnce.Do(func() {
		close(pc.done)
		pc.client.Close()
		pc.server.Close()
	})
}

// snapshot returns the open connections.
func (p *Proxy) snapshot() []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*proxyConn, 0, len(p.conns))
	for pc := range p.conns {
		out = append(out, pc)
	}
	return out
}

// broadcastLocked wakes every pump waiting in await; p.mu is held.
func (p *Proxy) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Stall stops (on) or resumes (off) forwarding in dir on every connection,
// current and new. While stalled the proxy reads nothing more from that
// side, so the sender's bytes pile up in the kernel and then its writes
// block, as behind a dead link; a chunk already read is held and delivered
// on resume. It panics on a dir other than ClientToServer,
// ServerToClient or Both.
func (p *Proxy) Stall(dir Direction, on bool) {
	dir.check("Stall")
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.stalled {
		if dir.has(i) {
			p.stalled[i] = on
		}
	}
	p.broadcastLocked()
}

// SetLatency delays every chunk forwarded from now on by d, in both
// directions; 0 removes the delay.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = max(d, 0)
}

// Cut ends every current connection, on both its sides, the way how says.
// Connections made afterwards are not affected. It panics on a mode other
// than CutRST or CutFIN.
func (p *Proxy) Cut(how CutMode) {
	if how != CutRST && how != CutFIN {
		panic(fmt.Sprintf("redistest: Proxy.Cut: mode %d is neither CutRST nor CutFIN", int(how)))
	}
	for _, pc := range p.snapshot() {
		switch how {
		case CutRST:
			pc.client.SetLinger(0)
			pc.server.SetLinger(0)
			p.drop(pc)
		case CutFIN:
			pc.client.CloseWrite()
			pc.server.CloseWrite()
			// Each peer answers the FIN by closing, which ends the pumps;
			// the timer is for a peer that does not.
			time.AfterFunc(finGrace, func() { p.drop(pc) })
		}
	}
}

// PassBytes lets only the next n bytes through in dir on every current
// connection, and the first n on every new one, then stops forwarding that
// direction while keeping the sockets open: a command or a reply cut off in
// the middle, from a peer that neither finishes nor hangs up. Reset lifts
// it and delivers what was held back. It panics on a dir other than
// ClientToServer, ServerToClient or Both.
func (p *Proxy) PassBytes(n int64, dir Direction) {
	dir.check("PassBytes")
	n = max(n, 0)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.limit {
		if dir.has(i) {
			p.limit[i] = n
			for pc := range p.conns {
				pc.budget[i] = n
			}
		}
	}
	p.broadcastLocked()
}

// Hold stops forwarding dir on every current connection, keeping its
// sockets open, and leaves connections made afterwards alone: the network
// of one connection fails silently while a new one would work. Reset
// lifts it and delivers what was held back. It panics on a dir other
// than ClientToServer, ServerToClient or Both.
func (p *Proxy) Hold(dir Direction) {
	dir.check("Hold")
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.limit {
		if dir.has(i) {
			for pc := range p.conns {
				pc.budget[i] = 0
			}
		}
	}
	p.broadcastLocked()
}

// DropAll closes every current connection at once.
func (p *Proxy) DropAll() {
	for _, pc := range p.snapshot() {
		p.drop(pc)
	}
}

// Reset lifts every stall, the latency and the byte limits, on current and
// new connections.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = [2]bool{}
	p.latency = 0
	p.limit = [2]int64{-1, -1}
	for pc := range p.conns {
		pc.budget = [2]int64{-1, -1}
	}
	p.broadcastLocked()
}

// Conns returns the number of open proxied connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops accepting, closes every connection and waits for the proxy's
// goroutines to end. Calling it again does nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.DropAll()
	p.wg.Wait()
	return err
}
