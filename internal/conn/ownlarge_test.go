//go:build unix

package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// ownBatch is a batch of n ECHOs of tag and their index, large enough to
// be written from the caller's buffer.
func ownBatch(t testing.TB, tag string, n int) []byte {
	var b []byte
	for i := range n {
		b = append(b, encode("ECHO", fmt.Sprint(tag, i))...)
	}
	if len(b) < inlineMax {
		t.Fatalf("a batch of %d bytes is written inline, not directly", len(b))
	}
	return b
}

// TestOwnLargeBatchesUnderConcurrency: callers sending large batches they
// read themselves when alone, small calls, batches started and waited for
// later, and calls whose contexts end at any point (before, while and
// after their bytes are written, while their replies are read), on one
// connection to a real server. Every call that does not leave gets its
// own replies, and the connection survives. Bounded in time.
func TestOwnLargeBatchesUnderConcurrency(t *testing.T) {
	c, _ := dialReal(t, Options{Poll: time.Millisecond, StallTimeout: 10 * time.Second})
	const goroutines = 6
	end := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			for i := 0; time.Now().Before(end); i++ {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if rnd.IntN(4) == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rnd.IntN(400))*time.Microsecond)
				}
				tag := fmt.Sprintf("%d/%d/", g, i)
				var err error
				switch k := rnd.IntN(4); {
				case k <= 1 || g == 0: // a large batch read by its caller when alone
					n := 800 + rnd.IntN(3000)
					var replies []resp.Value
					replies, _, err = c.DoN(ctx, ownBatch(t, tag, n), n)
					if err == nil {
						for j, v := range replies {
							if v.Str != fmt.Sprint(tag, j) {
								t.Errorf("reply %d of %s = %q", j, tag, v.Str)
								cancel()
								return
							}
						}
					}
				case k == 2:
					var v resp.Value
					v, err = c.DoOne(ctx, encode("ECHO", tag))
					if err == nil && v.Str != tag {
						t.Errorf("ECHO %s = %q", tag, v.Str)
						cancel()
						return
					}
				default:
					n := 800 + rnd.IntN(1000)
					replies := make([]resp.Value, n)
					var p Pending
					if p, err = c.Start(ctx, ownBatch(t, tag, n), replies); err == nil {
						if err = p.Wait(ctx); err == nil && replies[n-1].Str != fmt.Sprint(tag, n-1) {
							t.Errorf("last reply of %s = %q", tag, replies[n-1].Str)
						}
					}
				}
				cancel()
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("call %s: %v", tag, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if !c.Alive() {
		t.Fatalf("connection ended: %v", c.Err())
	}
	v, err := c.DoOne(context.Background(), encode("ECHO", "last"))
	if err != nil || v.Str != "last" {
		t.Fatalf("last call = %q, %v", v.Str, err)
	}
	t.Logf("callers read %d replies themselves", c.ownReads)
}

// TestOwnLargeBatchLeavesWhileRead: a caller reading the replies of its
// large batch itself, which the socket took whole, leaves when its context
// ends; the reader goroutine reads the rest, so the next call gets its own
// reply.
func TestOwnLargeBatchLeavesWhileRead(t *testing.T) {
	const n = 1000 // over DirectWrite, and well within what the socket takes
	release := make(chan struct{})
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for i := range n {
			if _, err := readCommand(r); err != nil {
				return
			}
			if i == n-1 {
				<-release
			}
			io.WriteString(w, ":1\r\n")
		}
		readCommand(r)
		io.WriteString(w, "+mine\r\n")
		drain(r)
	})
	c := New(nc, Options{Poll: time.Millisecond})
	defer c.Close()
	var batch []byte
	for range n {
		batch = append(batch, encode("INCR", "k")...)
	}
	if len(batch) < inlineMax {
		t.Fatalf("a batch of %d bytes is written inline, not directly", len(batch))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := c.DoN(ctx, batch, n); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	if c.ownReads == 0 {
		t.Fatal("the caller read none of its replies itself")
	}
	close(release)
	v, err := c.DoOne(context.Background(), encode("GET", "j"))
	if err != nil || v.Str != "mine" {
		t.Fatalf("next call = %q, %v; want its own reply", v.Str, err)
	}
}

// TestOwnLargeBatchStoppedWhileWritten: a batch that the socket takes only
// part of, its caller waiting for its replies at once, is stopped by its
// context while the rest is written; the rest goes to the writer, so the
// connection stays usable, a caller that came meanwhile is queued behind
// it and one that left meanwhile is never written.
func TestOwnLargeBatchStoppedWhileWritten(t *testing.T) {
	nc, release, seen := dialHeld(t)
	c := New(nc, Options{MaxPending: 64 << 20, Poll: time.Millisecond})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	big := make(chan error, 1)
	go func() { _, err := c.DoOne(ctx, bigSet()); big <- err }()
	untilWriting(t, c)
	behind, err := c.Start(context.Background(), encode("ECHO", "behind"), make([]resp.Value, 1))
	if err != nil {
		t.Fatal(err)
	}
	short, scancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer scancel()
	if _, err := c.DoOne(short, encode("GET", "left")); !isNotSent(err) {
		t.Fatalf("GET that left behind the batch = %v, want a not-sent error", err)
	}
	cancel()
	select {
	case err := <-big:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the large SET = %v, want the context's cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write was not stopped by its context")
	}
	if !c.Alive() {
		t.Fatalf("connection ended: %v", c.Err())
	}
	close(release)
	if v, err := c.DoOne(context.Background(), encode("PING")); err != nil || v.Str != "PONG" {
		t.Fatalf("PING = %q, %v (connection: %v)", v.Str, err, c.Err())
	}
	if err := behind.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if names := <-seen; strings.Join(names, " ") != "SET ECHO PING" {
		t.Fatalf("the server read %q, want SET ECHO PING", names)
	}
}

// TestOwnLargeBatchConnectionEndsWhileWritten: the server reads part of a
// batch the socket could not take whole, then hangs up. The batch may have
// run in part, so it does not fail as unsent; a call queued behind it,
// none of whose bytes were written, does.
func TestOwnLargeBatchConnectionEndsWhileWritten(t *testing.T) {
	hangUp := make(chan struct{})
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		readCommand(r)
		io.WriteString(w, "+first\r\n")
		<-hangUp // the batch fills the socket meanwhile
		io.CopyN(io.Discard, w.(io.Reader), 1<<20)
	})
	var once sync.Once
	release := func() { once.Do(func() { close(hangUp) }) }
	t.Cleanup(release) // before the server's, which waits for it
	c := New(nc, Options{MaxPending: 64 << 20, Poll: time.Millisecond})
	defer c.Close()
	ctx := context.Background()
	if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "first" {
		t.Fatalf("first call = %q, %v", v.Str, err)
	}
	big := make(chan error, 1)
	go func() { _, err := c.DoOne(ctx, bigSet()); big <- err }()
	untilWriting(t, c)
	var ce *Error
	behind, err := c.Start(ctx, encode("ECHO", "behind"), make([]resp.Value, 1))
	release()
	if err == nil {
		err = behind.Wait(ctx)
	}
	if !errors.As(err, &ce) || !ce.Unsent {
		t.Fatalf("the ECHO behind = %v, want an unsent connection error", err)
	}
	select {
	case err := <-big:
		if !errors.As(err, &ce) || ce.Unsent {
			t.Fatalf("the large SET = %v, want a connection error, not unsent", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write did not end with the connection")
	}
}

// TestOwnLargeBatchRepliesLargerThanBuffer: a large batch read by its
// caller whose replies do not fit the read buffer: the reader goroutine
// takes over, and the batches after it are answered too.
func TestOwnLargeBatchRepliesLargerThanBuffer(t *testing.T) {
	c, _ := dialReal(t, Options{Poll: time.Millisecond, ReadBuffer: 4 << 10})
	ctx := context.Background()
	val := strings.Repeat("v", 10<<10)
	if _, err := c.DoOne(ctx, encode("SET", "big", val)); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var batch []byte
	for i := range n {
		if i%100 == 50 {
			batch = append(batch, encode("GET", "big")...)
		} else {
			batch = append(batch, encode("ECHO", fmt.Sprint(i))...)
		}
	}
	for range 5 {
		replies, _, err := c.DoN(ctx, batch, n)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range replies {
			want := fmt.Sprint(i)
			if i%100 == 50 {
				want = val
			}
			if v.Str != want {
				t.Fatalf("reply %d = %.20q", i, v.Str)
			}
		}
	}
}

// TestOwnLargeBatchUnixSocket: over a Unix socket too, a lone caller's
// large batch is read by its caller, and concurrent callers alongside it
// get their own replies.
func TestOwnLargeBatchUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	redistest.Start(t, "--unixsocket", sock, "--unixsocketperm", "700")
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := New(nc, Options{Poll: time.Millisecond, StallTimeout: 10 * time.Second})
	defer c.Close()
	ctx := context.Background()
	const n = 2000
	batch := ownBatch(t, "u", n)
	for range 5 {
		replies, _, err := c.DoN(ctx, batch, n)
		if err != nil || replies[n-1].Str != fmt.Sprint("u", n-1) {
			t.Fatalf("batch: %v", err)
		}
	}
	if c.ownReads != 5*n {
		t.Fatalf("callers read %d of %d replies themselves", c.ownReads, 5*n)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				tag := fmt.Sprintf("%d/%d/", g, i)
				replies, _, err := c.DoN(ctx, ownBatch(t, tag, n), n)
				if err != nil || replies[n-1].Str != fmt.Sprint(tag, n-1) {
					t.Errorf("batch %s: %v", tag, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestOwnLargeBatchSocketClosedBeforeWrite: the socket of a connection is
// closed (by Close, on another goroutine) after a lone caller's large
// batch joined the line and before the caller writes it, the last read
// having taken more bytes than the batch has. The batch fails with the
// connection. The caller took the count of that last read for what its
// write took, and sliced the batch past its end: a panic.
func TestOwnLargeBatchSocketClosedBeforeWrite(t *testing.T) {
	reply := strings.Repeat("r", 40<<10)
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		readCommand(r)
		// One write, which the caller polling for it reads at once.
		io.WriteString(w, fmt.Sprintf("$%d\r\n%s\r\n", len(reply), reply))
		drain(r)
	})
	// A poll budget long enough that the batch counts as sent back to back,
	// so that nothing reads the socket before it is written.
	c := New(nc, Options{Poll: time.Hour, ReadBuffer: 64 << 10})
	defer c.Close()
	ctx := context.Background()
	if v, err := c.DoOne(ctx, encode("GET", "r")); err != nil || v.Str != reply {
		t.Fatalf("first call = %.10q, %v", v.Str, err)
	}
	const n = 800
	batch := ownBatch(t, "b", n)
	if len(batch) >= len(reply) {
		t.Fatalf("a batch of %d bytes is no smaller than the last read", len(batch))
	}
	nc.Close() // as Close does once the batch is in line
	_, _, err := c.DoN(ctx, batch, n)
	var ce *Error
	if !errors.As(err, &ce) || ce.Op == "send" {
		t.Fatalf("batch on a closed socket = %v; want a connection error", err)
	}
}
