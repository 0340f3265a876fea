package redpipe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
)

// fakeHello is the fake server's answer to HELLO 3: a one-entry RESP3 map.
const fakeHello = "%1\r\n+server\r\n+fake\r\n"

// fakeConnLife bounds how long any connection to the fake server lives, so
// that a test gone wrong cannot hang on it.
const fakeConnLife = 15 * time.Second

// fakeServer is a scripted stand-in for redis-server. It exists only for
// what a real server cannot be made to do: send malformed, truncated,
// oversized or unsolicited replies, or stop halfway through one. Everything
// a real server can do is tested against a real server.
//
// Each accepted connection runs script with its number, from 1, so a test
// can make the first connection hostile and the next ones well behaved.
type fakeServer struct {
	ln      net.Listener
	script  func(n int, fc *fakeConn)
	accepts atomic.Int32

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startFakeServer(t *testing.T, script func(n int, fc *fakeConn)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{ln: ln, script: script}
	fs.wg.Add(1)
	go fs.acceptLoop()
	t.Cleanup(fs.close)
	return fs
}

func (fs *fakeServer) Addr() string { return fs.ln.Addr().String() }

// Accepts is the number of connections accepted so far.
func (fs *fakeServer) Accepts() int { return int(fs.accepts.Load()) }

func (fs *fakeServer) acceptLoop() {
	defer fs.wg.Done()
	// Bounded: no test here needs more than a few connections per server.
	for range 1000 {
		nc, err := fs.ln.Accept()
		if err != nil {
			return
		}
		n := int(fs.accepts.Add(1))
		nc.SetDeadline(time.Now().Add(fakeConnLife))
		fs.mu.Lock()
		fs.conns = append(fs.conns, nc)
		fs.mu.Unlock()
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			defer nc.Close()
			fs.script(n, &fakeConn{nc: nc, r: bufio.NewReader(nc)})
		}()
	}
}

// close stops the server and ends its connections. It may be called more
// than once.
func (fs *fakeServer) close() {
	fs.ln.Close()
	fs.mu.Lock()
	for _, nc := range fs.conns {
		nc.Close()
	}
	fs.mu.Unlock()
	fs.wg.Wait()
}

// fakeConn is the server side of one connection to the fake server.
type fakeConn struct {
	nc net.Conn
	r  *bufio.Reader
}

// readCommand reads one command, which clients send as an array of bulk
// strings.
func (fc *fakeConn) readCommand() ([]string, error) {
	line, err := fc.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, fmt.Errorf("fake server: expected an array, got %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 1 || n > 1024 {
		return nil, fmt.Errorf("fake server: bad array header %q", line)
	}
	words := make([]string, 0, n)
	for range n {
		h, err := fc.r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(h, "$")))
		if err != nil || size < 0 || size > 1<<20 {
			return nil, fmt.Errorf("fake server: bad bulk header %q", h)
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(fc.r, b); err != nil {
			return nil, err
		}
		words = append(words, string(b[:size]))
	}
	return words, nil
}

func (fc *fakeConn) send(s string) error {
	_, err := io.WriteString(fc.nc, s)
	return err
}

// handshake answers the client's HELLO, followed in the same write by
// extra, and reports whether that worked.
func (fc *fakeConn) handshake(extra string) bool {
	cmd, err := fc.readCommand()
	if err != nil || !strings.EqualFold(cmd[0], "HELLO") {
		return false
	}
	return fc.send(fakeHello+extra) == nil
}

// serve answers commands as a healthy server would, as far as these tests
// need: PING and ECHO.
func (fc *fakeConn) serve() {
	for range 10000 {
		cmd, err := fc.readCommand()
		if err != nil {
			return
		}
		var reply string
		switch strings.ToUpper(cmd[0]) {
		case "PING":
			reply = "+PONG\r\n"
		case "ECHO":
			reply = "$" + strconv.Itoa(len(cmd[1])) + "\r\n" + cmd[1] + "\r\n"
		default:
			reply = "-ERR fake server does not know " + cmd[0] + "\r\n"
		}
		if fc.send(reply) != nil {
			return
		}
	}
}

// hold keeps the connection open, discarding whatever arrives, until the
// client closes it (true) or the connection's life ends (false). A client
// that closes with our bytes still unread makes its kernel reset the
// connection instead of ending it cleanly, so a reset counts as a close.
func (fc *fakeConn) hold() bool {
	_, err := io.Copy(io.Discard, fc.r)
	return err == nil || errors.Is(err, syscall.ECONNRESET) // io.Copy reports a clean EOF as nil
}

// healthy is the script of a well-behaved server connection.
func (fc *fakeConn) healthy() {
	if fc.handshake("") {
		fc.serve()
	}
}

// newFakeClient returns a client of fs that neither retries nor waits long,
// so that the first error is the one returned.
func newFakeClient(t *testing.T, fs *fakeServer) *Client {
	t.Helper()
	c, err := NewClient(Options{Addr: fs.Addr(), MaxRetries: -1, ReplyTimeout: 500 * time.Millisecond, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hostileFirst returns a script whose first connection receives the
// handshake reply and then, in reply to the first command, bad; later
// connections are healthy. The first connection is then held open, so that
// only the client can end it; closedByClient learns whether it did.
func hostileFirst(bad string, closedByClient chan<- bool) func(int, *fakeConn) {
	return func(n int, fc *fakeConn) {
		if n > 1 {
			fc.healthy()
			return
		}
		if !fc.handshake("") {
			return
		}
		if _, err := fc.readCommand(); err != nil {
			return
		}
		fc.send(bad)
		closedByClient <- fc.hold()
	}
}

// expectRecovery checks that the client dropped the bad connection and
// that its next call works on a new one.
func expectRecovery(t *testing.T, c *Client, fs *fakeServer, closedByClient <-chan bool) {
	t.Helper()
	if closedByClient != nil {
		select {
		case ok := <-closedByClient:
			if !ok {
				t.Fatal("the client kept the bad connection open")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the client did not close the bad connection within 5s")
		}
	}
	ctx := ctxT(t)
	if s, err := c.Ping(ctx); err != nil || s != "PONG" {
		t.Fatalf("Ping after the bad reply = %q, %v; want PONG on a new connection", s, err)
	}
	if n := fs.Accepts(); n != 2 {
		t.Fatalf("the fake server accepted %d connections, want 2: the bad one and its replacement", n)
	}
}

func TestHostileTruncatedBulk(t *testing.T) {
	fs := startFakeServer(t, func(n int, fc *fakeConn) {
		if n > 1 {
			fc.healthy()
			return
		}
		if fc.handshake("") {
			if _, err := fc.readCommand(); err == nil {
				fc.send("$10\r\nabc") // then close: the deferred Close in acceptLoop
			}
		}
	})
	c := newFakeClient(t, fs)
	_, err := c.Ping(ctxT(t))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Ping answered by a truncated bulk string: err = %v, want io.ErrUnexpectedEOF", err)
	}
	t.Logf("error: %v", err)
	expectRecovery(t, c, fs, nil)
}

func TestHostileUnknownTypeByte(t *testing.T) {
	closed := make(chan bool, 1)
	fs := startFakeServer(t, hostileFirst("@foo\r\n", closed))
	c := newFakeClient(t, fs)
	_, err := c.Ping(ctxT(t))
	var pe *resp.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("Ping answered by @foo: err = %v, want a *resp.ProtocolError", err)
	}
	// The handshake reply came first on the stream, so the bad byte is
	// just after it.
	if want := int64(len(fakeHello)); pe.Offset != want {
		t.Errorf("ProtocolError.Offset = %d, want %d (just after the HELLO reply)", pe.Offset, want)
	}
	if !strings.Contains(err.Error(), "'@'") || !strings.Contains(err.Error(), "type byte") {
		t.Errorf("error %q does not name the bad type byte", err)
	}
	t.Logf("error: %v", err)
	expectRecovery(t, c, fs, closed)
}

func TestHostileBadLength(t *testing.T) {
	t.Run("negative", func(t *testing.T) {
		closed := make(chan bool, 1)
		fs := startFakeServer(t, hostileFirst("$-5\r\n", closed))
		c := newFakeClient(t, fs)
		_, err := c.Ping(ctxT(t))
		var pe *resp.ProtocolError
		if !errors.As(err, &pe) {
			t.Fatalf("Ping answered by $-5: err = %v, want a *resp.ProtocolError", err)
		}
		if !strings.Contains(err.Error(), "length") {
			t.Errorf("error %q does not say the length is wrong", err)
		}
		t.Logf("error: %v", err)
		expectRecovery(t, c, fs, closed)
	})
	t.Run("enormous", func(t *testing.T) {
		closed := make(chan bool, 1)
		fs := startFakeServer(t, hostileFirst("$99999999999\r\n", closed))
		c := newFakeClient(t, fs)
		_, err := c.Ping(ctxT(t))
		var le *resp.LimitError
		if !errors.As(err, &le) {
			t.Fatalf("Ping answered by $99999999999: err = %v, want a *resp.LimitError", err)
		}
		if le.Size != 99999999999 || le.Limit != 512<<20 || !strings.Contains(err.Error(), "bulk string length") {
			t.Errorf("LimitError %+v (%q) does not name the bulk length and the 512 MiB default limit", le, err)
		}
		t.Logf("error: %v", err)
		expectRecovery(t, c, fs, closed)
	})
}

func TestHostileDeepNesting(t *testing.T) {
	closed := make(chan bool, 1)
	fs := startFakeServer(t, hostileFirst(strings.Repeat("*1\r\n", 10000)+":1\r\n", closed))
	c := newFakeClient(t, fs)
	_, err := c.Ping(ctxT(t))
	var le *resp.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("Ping answered by arrays nested 10000 deep: err = %v, want a *resp.LimitError", err)
	}
	if le.What != "nesting depth" || !strings.Contains(err.Error(), "nesting depth") {
		t.Errorf("LimitError %+v does not name the nesting depth", le)
	}
	t.Logf("error: %v", err)
	expectRecovery(t, c, fs, closed)
}

// TestHostileDeepNestingAtTheCap: with MaxReplyDepth at its largest, a
// reply nested that deep is read, on the stack every goroutine may grow
// to, and one a level deeper is refused. NewClient took any depth, and a
// reply nested a few million deep then ended the program with a stack
// overflow, which no recover catches.
func TestHostileDeepNestingAtTheCap(t *testing.T) {
	if _, err := NewClient(Options{MaxReplyDepth: maxReplyDepth + 1}); err == nil {
		t.Fatalf("NewClient with MaxReplyDepth %d succeeded, want an *OptionError", maxReplyDepth+1)
	}
	deep := func(depth int) string { return strings.Repeat("*1\r\n", depth) + ":7\r\n" }
	fs := startFakeServer(t, func(n int, fc *fakeConn) {
		if !fc.handshake("") {
			return
		}
		for _, reply := range []string{deep(maxReplyDepth), deep(maxReplyDepth + 1)} {
			if _, err := fc.readCommand(); err != nil || fc.send(reply) != nil {
				return
			}
		}
		fc.hold()
	})
	c, err := NewClient(Options{Addr: fs.Addr(), MaxRetries: -1, MaxReplyDepth: maxReplyDepth})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	v, err := c.Do(ctx, "PING")
	if err != nil {
		t.Fatalf("a reply nested %d deep, the limit: %v", maxReplyDepth, err)
	}
	levels := 0
	for ; levels <= maxReplyDepth && v.Len() == 1; levels++ {
		elems, _ := v.Slice()
		v = elems[0]
	}
	if n, err := v.Int64(); levels != maxReplyDepth || err != nil || n != 7 {
		t.Fatalf("read %d levels down to %v, %v; want %d levels down to 7", levels, n, err, maxReplyDepth)
	}
	var le *resp.LimitError
	if _, err := c.Do(ctx, "PING"); !errors.As(err, &le) || le.What != "nesting depth" {
		t.Fatalf("a reply nested %d deep: %v, want a *resp.LimitError for the nesting depth", maxReplyDepth+1, err)
	}
}

// TestHostileStrayReply: the server sends a reply nobody asked for, right
// behind the handshake reply and in the same write, so that it starts
// arriving before the client sends any command. Replies are matched to
// calls by order alone: if the client let a call join the line before it
// had read the stray reply, that call would take it as its own answer. The
// assertion is that PING returns PONG or fails, never anything else.
//
// The outcome depends on goroutine timing, so each round has a new server
// and client. With a short stray reply the client usually reads it before
// the PING is queued; a long one takes the reader a while, which makes the
// window in which PING can join the line wide.
func TestHostileStrayReply(t *testing.T) {
	cases := []struct {
		name   string
		stray  string
		rounds int
	}{
		{"short", "+OK\r\n", 500},
		{"long", "$262144\r\nOK" + strings.Repeat("K", 262142) + "\r\n", 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			deadline := time.Now().Add(15 * time.Second)
			var detected, misdelivered, ran int
			for i := range tc.rounds {
				if time.Now().After(deadline) {
					break
				}
				ran++
				switch strayRound(t, tc.stray, i) {
				case strayDetected:
					detected++
				case strayMisdelivered:
					misdelivered++
				}
			}
			t.Logf("%d rounds: stray reply detected as an error in %d, handed to a PING in %d", ran, detected, misdelivered)
		})
	}
}

const (
	strayDetected = iota
	strayMisdelivered
	strayOther
)

// strayRound runs one round of TestHostileStrayReply.
func strayRound(t *testing.T, stray string, round int) int {
	t.Helper()
	fs := startFakeServer(t, func(n int, fc *fakeConn) {
		if n > 1 {
			fc.healthy()
			return
		}
		// The poisoned connection otherwise answers correctly, so that a
		// PING given the stray reply is told apart from one that failed.
		if fc.handshake(stray) {
			fc.serve()
		}
	})
	defer fs.close()
	// ReplyTimeout only bounds a round that goes wrong: on a loaded
	// machine a healthy handshake has taken longer than 500ms.
	c, err := NewClient(Options{Addr: fs.Addr(), MaxRetries: -1, ReplyTimeout: 3 * time.Second, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	outcome := strayOther
	s, err := c.Ping(ctx)
	switch {
	case err == nil && s != "PONG":
		outcome = strayMisdelivered
		t.Errorf("round %d: PING returned %q: it was handed the stray reply", round, clip(s))
	case err != nil:
		outcome = strayDetected
		if !strings.Contains(err.Error(), "no command was waiting") {
			t.Errorf("round %d: error %q does not say a reply came that no command was waiting for", round, err)
		}
	}
	// Whatever happened, the next calls get their own replies on a
	// connection that never saw the stray one.
	for i := range 3 {
		want := fmt.Sprintf("round-%d-%d", round, i)
		got, err := c.Echo(ctx, want)
		if err != nil || got != want {
			t.Errorf("round %d: ECHO %s after the stray reply = %q, %v", round, want, clip(got), err)
			break
		}
	}
	if n := fs.Accepts(); n != 2 {
		t.Errorf("round %d: %d connections accepted, want 2: the poisoned one must be dropped", round, n)
	}
	return outcome
}

func TestHostileHalfReplyThenSilence(t *testing.T) {
	t.Parallel()
	t.Run("call deadline", func(t *testing.T) {
		closed := make(chan bool, 1)
		fs := startFakeServer(t, hostileFirst("$10\r\nabc", closed))
		c := newFakeClient(t, fs)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Ping(ctx)
		took := time.Since(start)
		t.Logf("call with a 200ms deadline returned after %v: %v", took, err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
		if took > 2*time.Second {
			t.Fatalf("call returned after %v, long past its 200ms deadline", took)
		}
		// The connection still owes half a reply; ReplyTimeout ends it.
		expectRecovery(t, c, fs, closed)
	})
	t.Run("reply timeout", func(t *testing.T) {
		closed := make(chan bool, 1)
		fs := startFakeServer(t, hostileFirst("$10\r\nabc", closed))
		c := newFakeClient(t, fs)
		type result struct {
			err  error
			took time.Duration
		}
		done := make(chan result, 1)
		go func() {
			start := time.Now()
			// No deadline of its own: only ReplyTimeout can end it.
			_, err := c.Ping(context.Background())
			done <- result{err, time.Since(start)}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(5 * time.Second):
			c.Close() // ends the call, so the goroutine does not outlive the test
			<-done
			t.Fatal("a call without a deadline was still waiting after 5s; ReplyTimeout is 500ms")
		}
		t.Logf("call without a deadline returned after %v: %v", r.took, r.err)
		if r.err == nil {
			t.Fatal("Ping answered by half a reply succeeded")
		}
		if !strings.Contains(r.err.Error(), "no reply") || !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Errorf("error %q does not say that no reply arrived in time", r.err)
		}
		if r.took < 400*time.Millisecond {
			t.Errorf("call failed after %v, before ReplyTimeout (500ms)", r.took)
		}
		expectRecovery(t, c, fs, closed)
	})
}

// scriptedTxServer is a fake server whose connections answer MULTI with
// multi, every command queued after it with queued, EXEC with exec, and
// PING and ECHO as a healthy server does.
func scriptedTxServer(t *testing.T, multi, queued, exec string) *fakeServer {
	return startFakeServer(t, func(n int, fc *fakeConn) {
		if !fc.handshake("") {
			return
		}
		inMulti := false
		for range 1000 {
			cmd, err := fc.readCommand()
			if err != nil {
				return
			}
			var reply string
			switch name := strings.ToUpper(cmd[0]); {
			case name == "MULTI":
				reply, inMulti = multi, true
			case name == "EXEC":
				reply, inMulti = exec, false
			case inMulti:
				reply = queued
			case name == "PING":
				reply = "+PONG\r\n"
			case name == "WATCH" || name == "UNWATCH":
				reply = "+OK\r\n"
			case name == "ECHO":
				reply = "$" + strconv.Itoa(len(cmd[1])) + "\r\n" + cmd[1] + "\r\n"
			default:
				reply = "-ERR fake server does not know " + cmd[0] + "\r\n"
			}
			if fc.send(reply) != nil {
				return
			}
		}
	})
}

// Replies to a transaction that no server sends (EXEC answered with
// something other than an array, nil or an error, or with an array of
// another length than the commands queued; a command queued answered with
// something other than QUEUED or an error; MULTI answered with something
// other than OK or an error) fail the transaction as of unknown outcome,
// saying what came, and the connection that read them, whose stream may
// be out of step, is not used again: neither the shared connection of a
// client's pipelines nor the one a Tx gives back to the pool.
func TestHostileTransactionReplies(t *testing.T) {
	cases := []struct {
		name, multi, queued, exec, want string
	}{
		{"EXEC status", "+OK\r\n", "+QUEUED\r\n", "+OK\r\n", `EXEC was answered with a simple string "OK"`},
		{"EXEC map", "+OK\r\n", "+QUEUED\r\n", "%1\r\n+a\r\n+b\r\n", "EXEC was answered with a map"},
		{"EXEC set", "+OK\r\n", "+QUEUED\r\n", "~2\r\n+OK\r\n+OK\r\n", "EXEC was answered with a set"},
		{"EXEC short", "+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n", "EXEC returned 1 replies for 2 commands"},
		{"EXEC long", "+OK\r\n", "+QUEUED\r\n", "*3\r\n+OK\r\n+OK\r\n+OK\r\n", "EXEC returned 3 replies for 2 commands"},
		{"not queued", "+OK\r\n", "+OK\r\n", "*2\r\n+OK\r\n+OK\r\n", `command 1 (SET) of the transaction was answered with a simple string "OK", not QUEUED`},
		{"MULTI integer", ":1\r\n", "+QUEUED\r\n", "*2\r\n+OK\r\n+OK\r\n", "MULTI was answered with an integer, not OK"},
	}
	for _, tc := range cases {
		check := func(t *testing.T, replies []Value, err error) {
			t.Helper()
			if err == nil || replies != nil {
				t.Fatalf("Exec = %v, %v; want an error", replies, err)
			}
			if OutcomeOf(err) != OutcomeUnknown || errors.Is(err, ErrNotApplied) {
				t.Errorf("Exec error %v: outcome %v, want unknown: the server may have run the commands", err, OutcomeOf(err))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Exec error %q does not say %q", err, tc.want)
			}
		}
		t.Run(tc.name+"/pipeline", func(t *testing.T) {
			fs := scriptedTxServer(t, tc.multi, tc.queued, tc.exec)
			c := newFakeClient(t, fs)
			ctx := ctxT(t)
			replies, err := c.Pipeline().Set("k", "1").Get("k").Exec(ctx)
			check(t, replies, err)
			if s, err := c.Ping(ctx); err != nil || s != "PONG" {
				t.Fatalf("Ping after the transaction = %q, %v", s, err)
			}
			if n := fs.Accepts(); n != 2 {
				t.Errorf("%d connections accepted, want 2: the one that read the unexpected replies is dropped", n)
			}
		})
		t.Run(tc.name+"/Tx", func(t *testing.T) {
			fs := scriptedTxServer(t, tc.multi, tc.queued, tc.exec)
			c := newFakeClient(t, fs)
			ctx := ctxT(t)
			tx, err := c.Watch(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			replies, err := tx.Multi().Set("k", "1").Get("k").Exec(ctx)
			check(t, replies, err)
			tx.Close()
			tx, err = c.Watch(ctx, "k")
			if err != nil {
				t.Fatalf("Watch after the transaction: %v", err)
			}
			tx.Close()
			if n := fs.Accepts(); n != 2 {
				t.Errorf("%d connections accepted, want 2: the one that read the unexpected replies goes back to no pool", n)
			}
		})
	}
}

// A transaction that only reads, which a client sends again after its
// connection failed, is not sent again after replies that no server
// sends, any more than after a malformed reply: the server would answer
// the same. It went out on a new connection for each retry allowed
// (four in all, by the default MaxRetries), and its error then said that
// an earlier attempt may have run.
func TestHostileTransactionRepliesNotRetried(t *testing.T) {
	fs := scriptedTxServer(t, "+OK\r\n", "+QUEUED\r\n", "*3\r\n+OK\r\n+OK\r\n+OK\r\n")
	c, err := NewClient(Options{Addr: fs.Addr(), ReplyTimeout: 500 * time.Millisecond, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	replies, err := c.Pipeline().Get("k").Get("j").Exec(ctxT(t))
	if err == nil || replies != nil || !strings.Contains(err.Error(), "EXEC returned 3 replies for 2 commands") ||
		strings.Contains(err.Error(), "earlier attempt") {
		t.Errorf("Exec = %v, %v; want the error of the one attempt, which says what EXEC returned", replies, err)
	}
	if n := fs.Accepts(); n != 1 {
		t.Errorf("%d connections accepted, want 1: the transaction was sent again", n)
	}
}

// An EXECABORT that the server gives at EXEC itself, every command having
// been queued (redis 7 refuses EXEC so when the server ran out of memory,
// or lost its replicas, after the commands were queued), carries the only
// cause in its own text: the error says it, as well as not applied. A
// fake server, as a real one cannot be made to change state between the
// commands of one write.
func TestHostileExecAbortAtExec(t *testing.T) {
	const cause = "OOM command not allowed when used memory > 'maxmemory'."
	for _, exec := range []string{
		"-EXECABORT Transaction discarded because of: " + cause + "\r\n",
		"!" + strconv.Itoa(len("EXECABORT Transaction discarded because of: "+cause)) + "\r\nEXECABORT Transaction discarded because of: " + cause + "\r\n",
	} {
		fs := scriptedTxServer(t, "+OK\r\n", "+QUEUED\r\n", exec)
		c := newFakeClient(t, fs)
		replies, err := c.Pipeline().Set("k", "1").Get("k").Exec(ctxT(t))
		var ae *ExecAbortError
		if !errors.As(err, &ae) || !errors.Is(err, ErrNotApplied) || replies != nil {
			t.Fatalf("Exec = %v, %v; want an *ExecAbortError, not applied", replies, err)
		}
		if len(ae.Failed) != 0 {
			t.Errorf("Failed = %v; want none: every command was queued", ae.Failed)
		}
		if !strings.Contains(err.Error(), cause) {
			t.Errorf("error %q does not give the server's cause, %q", err, cause)
		}
	}
}

// Attributes before MULTI's, each QUEUED, EXEC's array and its elements,
// and push messages between those replies, leave every reply with its
// command: the elements of EXEC's array, with their own attributes, are
// the replies, and the connection stays in use. A fake server, as a real
// one sends attributes and pushes only for DEBUG PROTOCOL.
func TestHostileTransactionAttributesAndPushes(t *testing.T) {
	const push = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
	const attr = "|1\r\n+ttl\r\n:3600\r\n"
	fs := scriptedTxServer(t, push+attr+"+OK\r\n"+push, attr+push+"+QUEUED\r\n"+push,
		attr+"*2\r\n"+attr+"+OK\r\n$1\r\n1\r\n"+push)
	c := newFakeClient(t, fs)
	ctx := ctxT(t)
	for round := range 2 {
		replies, err := c.Pipeline().Set("k", "1").Get("k").Exec(ctx)
		if err != nil || len(replies) != 2 || replies[0].String() != "OK" || replies[1].String() != "1" {
			t.Fatalf("round %d: Exec = %v, %v; want [OK 1]", round, replies, err)
		}
		if a := replies[0].Attrs(); len(a) != 2 || a[0].String() != "ttl" || a[1].String() != "3600" {
			t.Errorf("round %d: attributes of SET's reply = %v, want [ttl 3600]", round, a)
		}
		if a := replies[1].Attrs(); a != nil {
			t.Errorf("round %d: attributes of GET's reply = %v, want none", round, a)
		}
	}
	if s, err := c.Ping(ctx); err != nil || s != "PONG" {
		t.Fatalf("Ping = %q, %v", s, err)
	}
	if n := fs.Accepts(); n != 1 {
		t.Errorf("%d connections accepted, want 1", n)
	}
}

// A watch conflict reads as ErrWatch, not applied, whether EXEC's nil
// comes as RESP3's null, RESP2's nil array or nil bulk string, with or
// without attributes, on a Tx; and the session's connection stays in use.
func TestHostileExecNilForms(t *testing.T) {
	for _, exec := range []string{"_\r\n", "*-1\r\n", "$-1\r\n", "|1\r\n+a\r\n+b\r\n_\r\n", "|1\r\n+a\r\n+b\r\n*-1\r\n"} {
		fs := scriptedTxServer(t, "+OK\r\n", "+QUEUED\r\n", exec)
		c := newFakeClient(t, fs)
		ctx := ctxT(t)
		for range 2 {
			tx, err := c.Watch(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			replies, err := tx.Multi().Set("k", "1").Exec(ctx)
			if !errors.Is(err, ErrWatch) || !errors.Is(err, ErrNotApplied) || OutcomeOf(err) != OutcomeNotApplied || replies != nil {
				t.Errorf("EXEC answered %q: Exec = %v, %v; want ErrWatch", exec, replies, err)
			}
			tx.Close()
		}
		if n := fs.Accepts(); n != 1 {
			t.Errorf("EXEC answered %q: %d connections accepted, want 1", exec, n)
		}
	}
}
