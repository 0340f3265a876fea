package redistest_test

import (
	"bufio"
	"io"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// TestProxyHold: Hold silences the connections open now in one direction
// and leaves new ones alone; Reset delivers what it held back.
func TestProxyHold(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	p := redistest.StartProxy(t, s.Addr)
	old := dialProxy(t, p)
	oldR := bufio.NewReader(old)
	waitConns(t, p, 1)
	p.Hold(redistest.ServerToClient)
	if _, err := io.WriteString(old, "INCR held\r\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := readLine(t, old, oldR, quiet); !isTimeout(err) {
		t.Fatalf("held connection read %q, %v; want nothing", got, err)
	}
	if v := s.MustDo(t, "GET", "held"); v != "1" {
		t.Fatalf("the command on the held connection did not reach the server: %v", v)
	}
	fresh := dialProxy(t, p)
	freshR := bufio.NewReader(fresh)
	if _, err := io.WriteString(fresh, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := readLine(t, fresh, freshR, 2*time.Second); got != "+PONG\r\n" {
		t.Fatalf("a connection made after Hold: %q, %v; want PONG", got, err)
	}
	p.Reset()
	if got, err := readLine(t, old, oldR, 2*time.Second); got != ":1\r\n" {
		t.Fatalf("after Reset the held reply is %q, %v; want :1", got, err)
	}
}
