package redistest_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// quiet is how long a test waits to conclude that nothing arrives; long
// enough for loopback under the race detector, short enough to keep the
// tests fast.
const quiet = 300 * time.Millisecond

// dialProxy opens a raw connection through p; the tests speak inline RESP
// on it so that every byte on the wire is under their control.
func dialProxy(t *testing.T, p *redistest.Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readLine reads one reply line within d.
func readLine(t *testing.T, c net.Conn, r *bufio.Reader, d time.Duration) (string, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	return r.ReadString('\n')
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// waitConns waits until p has n open connections, or fails the test
// after 10s, as the other waits of the tests do: the proxy's goroutines
// may be slow to see a connection come or go on a loaded machine.
func waitConns(t *testing.T, p *redistest.Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Conns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Conns() = %d, want %d", p.Conns(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProxyForwards(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr)
	c := dialProxy(t, p)
	r := bufio.NewReader(c)
	if _, err := io.WriteString(c, "PING\r\nECHO hello\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+PONG\r\n", "$5\r\n", "hello\r\n"} {
		if got, err := readLine(t, c, r, 2*time.Second); err != nil || got != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	waitConns(t, p, 1)
	// A reply larger than the proxy's buffer arrives whole and in order.
	big := strings.Repeat("x", 100<<10)
	if _, err := io.WriteString(c, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$102400\r\n"+big+"\r\nGET k\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	want := "+OK\r\n$102400\r\n" + big + "\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil || string(got) != want {
		t.Fatalf("SET and GET of 100 KiB through the proxy: %v", err)
	}
	c.Close()
	waitConns(t, p, 0)
}

func TestProxyStall(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr)
	for _, dir := range []redistest.Direction{redistest.ClientToServer, redistest.ServerToClient, redistest.Both} {
		c := dialProxy(t, p)
		r := bufio.NewReader(c)
		if _, err := io.WriteString(c, "PING\r\n"); err != nil {
			t.Fatal(err)
		}
		if got, err := readLine(t, c, r, 2*time.Second); got != "+PONG\r\n" {
			t.Fatalf("before the stall: %q, %v", got, err)
		}
		p.Stall(dir, true)
		key := fmt.Sprintf("n%d", dir)
		if _, err := io.WriteString(c, "INCR "+key+"\r\n"); err != nil {
			t.Fatal(err)
		}
		if got, err := readLine(t, c, r, quiet); !isTimeout(err) {
			t.Fatalf("stall %v: read %q, %v; want nothing", dir, got, err)
		}
		// A command held on the client side has not reached the server;
		// one held on the way back has.
		v := s.MustDo(t, "GET", key)
		if dir&redistest.ClientToServer != 0 && v != nil {
			t.Errorf("stall %v: the server ran the command (n = %v)", dir, v)
		}
		p.Stall(dir, false)
		got, err := readLine(t, c, r, 2*time.Second)
		if err != nil || !strings.HasPrefix(got, ":") {
			t.Fatalf("after the stall %v: %q, %v; want the INCR reply", dir, got, err)
		}
	}
}

func TestProxyLatency(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr)
	c := dialProxy(t, p)
	r := bufio.NewReader(c)
	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	io.WriteString(c, "PING\r\n")
	if got, err := readLine(t, c, r, 2*time.Second); got != "+PONG\r\n" {
		t.Fatalf("%q, %v", got, err)
	}
	// Once on the way in, once on the way out.
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("round trip took %v with 100ms latency each way", el)
	}
	p.Reset()
	start = time.Now()
	io.WriteString(c, "PING\r\n")
	if got, err := readLine(t, c, r, 2*time.Second); got != "+PONG\r\n" {
		t.Fatalf("%q, %v", got, err)
	}
	if el := time.Since(start); el > 150*time.Millisecond {
		t.Errorf("round trip took %v after Reset", el)
	}
}

func TestProxyCut(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr)
	cases := []struct {
		how   redistest.CutMode
		check func(error) bool
	}{
		{redistest.CutRST, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
		{redistest.CutFIN, func(err error) bool { return err == io.EOF }},
	}
	for _, tc := range cases {
		c := dialProxy(t, p)
		r := bufio.NewReader(c)
		io.WriteString(c, "PING\r\n")
		if got, err := readLine(t, c, r, 2*time.Second); got != "+PONG\r\n" {
			t.Fatalf("%q, %v", got, err)
		}
		waitConns(t, p, 1)
		p.Cut(tc.how)
		if got, err := readLine(t, c, r, 2*time.Second); !tc.check(err) {
			t.Errorf("cut %d: read %q, %v", tc.how, got, err)
		}
		c.Close()
		waitConns(t, p, 0)
	}
	// New connections are not affected.
	c := dialProxy(t, p)
	io.WriteString(c, "PING\r\n")
	if got, err := readLine(t, c, bufio.NewReader(c), 2*time.Second); got != "+PONG\r\n" {
		t.Fatalf("after the cuts: %q, %v", got, err)
	}
}

func TestProxyPassBytes(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr)

	// Commands cut off after 7 bytes: "SET a 1" reaches the server whole
	// only once Reset lets the rest through.
	c := dialProxy(t, p)
	r := bufio.NewReader(c)
	io.WriteString(c, "PING\r\n")
	if got, err := readLine(t, c, r, 2*time.Second); got != "+PONG\r\n" {
		t.Fatalf("%q, %v", got, err)
	}
	p.PassBytes(7, redistest.ClientToServer)
	io.WriteString(c, "SET a 1\r\n")
	if got, err := readLine(t, c, r, quiet); !isTimeout(err) {
		t.Fatalf("after 7 bytes of the command: read %q, %v; want nothing", got, err)
	}
	if v := s.MustDo(t, "GET", "a"); v != nil {
		t.Fatalf("a partial command ran: a = %v", v)
	}
	// A connection made now gets the same limit.
	c2 := dialProxy(t, p)
	r2 := bufio.NewReader(c2)
	io.WriteString(c2, "SET b 22\r\n")
	if got, err := readLine(t, c2, r2, quiet); !isTimeout(err) {
		t.Fatalf("new connection: read %q, %v; want nothing", got, err)
	}
	waitConns(t, p, 2) // held, not closed
	p.Reset()
	for _, cr := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{c, r}, {c2, r2}} {
		if got, err := readLine(t, cr.c, cr.r, 2*time.Second); got != "+OK\r\n" {
			t.Fatalf("after Reset: %q, %v", got, err)
		}
	}

	// A reply cut off after 3 bytes.
	p.PassBytes(3, redistest.ServerToClient)
	io.WriteString(c, "ECHO hello\r\n")
	c.SetReadDeadline(time.Now().Add(quiet))
	part := make([]byte, 16)
	n, _ := io.ReadAtLeast(r, part, 3)
	if string(part[:n]) != "$5\r" {
		t.Fatalf("got %q before the hang, want %q", part[:n], "$5\r")
	}
	if got, err := readLine(t, c, r, quiet); !isTimeout(err) {
		t.Fatalf("past the limit: read %q, %v; want nothing", got, err)
	}
	p.Reset()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	rest := make([]byte, len("\nhello\r\n"))
	if _, err := io.ReadFull(r, rest); err != nil || string(rest) != "\nhello\r\n" {
		t.Fatalf("after Reset: %q, %v", rest, err)
	}
}

func TestProxyDropAllAndClose(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	p, err := redistest.NewProxy(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var conns []net.Conn
	for range 3 {
		c := dialProxy(t, p)
		io.WriteString(c, "PING\r\n")
		if got, err := readLine(t, c, bufio.NewReader(c), 2*time.Second); got != "+PONG\r\n" {
			t.Fatalf("%q, %v", got, err)
		}
		conns = append(conns, c)
	}
	waitConns(t, p, 3)
	p.Stall(redistest.Both, true) // DropAll must not wait for stalled pumps
	p.DropAll()
	if n := p.Conns(); n != 0 {
		t.Errorf("Conns() = %d right after DropAll", n)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("connection %d still open after DropAll: %v", i, err)
		}
	}
	p.Reset()

	// Close ends the connections still open.
	dialProxy(t, p)
	waitConns(t, p, 1)
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		c.Close()
		t.Error("the proxy still accepts after Close")
	}
	if n := p.Conns(); n != 0 {
		t.Errorf("Conns() = %d after Close", n)
	}
}

func TestProxyServerDown(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr)
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	c := dialProxy(t, p)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a connection to a dead server stayed open: %v", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c = dialProxy(t, p)
	io.WriteString(c, "PING\r\n")
	if got, err := readLine(t, c, bufio.NewReader(c), 2*time.Second); got != "+PONG\r\n" {
		t.Fatalf("after Restart: %q, %v", got, err)
	}
}

// TestProxyMisuse: a proxy for no address is refused when made, and a
// fault asked for in no direction, or of no known kind, panics rather than
// do nothing, so that a fault test cannot pass without its fault.
func TestProxyMisuse(t *testing.T) {
	for _, target := range []string{"", "localhost", "127.0.0.1"} {
		if p, err := redistest.NewProxy(target); err == nil || !strings.Contains(err.Error(), "host:port") {
			if p != nil {
				p.Close()
			}
			t.Errorf("NewProxy(%q) = %v; want an error asking for host:port", target, err)
		}
	}
	p := redistest.StartProxy(t, "127.0.0.1:1")
	for _, tc := range []struct {
		name, want string
		fn         func()
	}{
		{"Stall(0)", "Proxy.Stall: direction 0", func() { p.Stall(0, true) }},
		{"Stall(8)", "Proxy.Stall: direction 8", func() { p.Stall(8, true) }},
		{"Hold(0)", "Proxy.Hold: direction 0", func() { p.Hold(0) }},
		{"PassBytes(1, -1)", "Proxy.PassBytes: direction -1", func() { p.PassBytes(1, -1) }},
		{"Cut(2)", "Proxy.Cut: mode 2", func() { p.Cut(2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tc.want) {
					t.Errorf("panic %v; want one saying %q", r, tc.want)
				}
			}()
			tc.fn()
		})
	}
	// The valid forms still work.
	p.Stall(redistest.Both, true)
	p.Stall(redistest.Both, false)
	p.Hold(redistest.ServerToClient)
	p.PassBytes(1, redistest.ClientToServer)
	p.Cut(redistest.CutFIN)
}
