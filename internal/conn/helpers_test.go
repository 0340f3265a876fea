package conn

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

func encode(args ...string) []byte {
	b := resp.AppendArrayLen(nil, len(args))
	for _, a := range args {
		b = resp.AppendBulkString(b, a)
	}
	return b
}

func dialReal(t *testing.T, opt Options) (*Conn, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c := New(nc, opt)
	t.Cleanup(func() { c.Close() })
	return c, srv
}

// fakeServer is a scripted stand-in for what a real server cannot be made
// to do: it reads commands and answers with whatever script returns.
func fakeServer(t testing.TB, script func(r *resp.Reader, w io.Writer)) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOne(t, ln, func(sc net.Conn) { script(resp.NewReader(sc, resp.Limits{}), sc) })
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() }) // before serveOne's, which waits for the script
	return nc
}

// serveOne hands the first connection ln accepts to handle, in a goroutine
// that the test's cleanup waits for after closing ln.
func serveOne(t testing.TB, ln net.Listener, handle func(sc net.Conn)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer sc.Close()
		handle(sc)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// readCommand consumes one RESP command from the fake server's input.
func readCommand(rd *resp.Reader) ([]string, error) {
	v, err := rd.ReadValue()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range v.Elems {
		out = append(out, e.Str)
	}
	return out, nil
}

// drain reads commands until the client hangs up.
func drain(r *resp.Reader) {
	for {
		if err := r.Skip(); err != nil {
			return
		}
	}
}

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// dialHeld starts a heldServer on a loopback TCP port and connects to it.
func dialHeld(t *testing.T) (nc net.Conn, release chan struct{}, seen chan []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release, seen = heldServer(t, ln)
	nc, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return nc, release, seen
}

// heldServer serves one connection from ln (a fake: a real server cannot
// be held): it reads nothing until release is closed, then answers OK to
// every command and PONG to PING, and reports the names it read.
func heldServer(t *testing.T, ln net.Listener) (release chan struct{}, seen chan []string) {
	t.Helper()
	release, seen = make(chan struct{}), make(chan []string, 1)
	serveOne(t, ln, func(sc net.Conn) {
		if tc, ok := sc.(*tls.Conn); ok && tc.Handshake() != nil {
			return
		}
		select {
		case <-release:
		case <-time.After(20 * time.Second):
			return
		}
		r, bw := resp.NewReader(sc, resp.Limits{}), bufio.NewWriter(sc)
		var names []string
		for {
			cmd, err := readCommand(r)
			if err != nil {
				return
			}
			names = append(names, cmd[0])
			if cmd[0] == "PING" {
				bw.WriteString("+PONG\r\n")
				bw.Flush()
				seen <- names
				return
			}
			bw.WriteString("+OK\r\n")
		}
	})
	return release, seen
}

// selfSignedCert makes a throwaway certificate for a loopback TLS server.
func selfSignedCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// untilWriting waits until a write holds the connection's write role: a
// large send to a peer that reads nothing blocks there.
func untilWriting(t *testing.T, c *Conn) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		writing := c.writing
		c.mu.Unlock()
		if writing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no write under way after 10s")
		}
	}
}

// bigSet is a single SET of a 32 MiB value: more than the socket buffers
// of a peer that reads nothing hold, so writing it blocks.
func bigSet() []byte {
	return encode("SET", "big", strings.Repeat("v", 32<<20))
}

// isNotSent reports whether err is the error of a call that left, for its
// context, before any of its bytes were handed to the socket.
func isNotSent(err error) bool {
	var ce *Error
	return errors.As(err, &ce) && ce.Op == "send" && ce.Unsent && errors.Is(err, context.DeadlineExceeded)
}

// socketPair connects to a listener of its own and returns both ends,
// closed when the test ends.
func socketPair(t *testing.T, network, addr string) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// waitFor checks cond until it holds, failing the test after 10s with what
// cond last saw.
func waitFor(t *testing.T, what string, cond func() (ok bool, seen string)) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not so after 10s; last seen: %s", what, seen)
		}
	}
}

// waitPending waits until n calls are in line on c.
func waitPending(t *testing.T, c *Conn, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d calls in line", n), func() (bool, string) {
		got := c.Pending()
		return got == n, fmt.Sprintf("%d calls in line", got)
	})
}

// signalled waits for a signal on ch, failing the test if none comes
// within 10s.
func signalled(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("waiting for %s: not so after 10s", what)
	}
}
