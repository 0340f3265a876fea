package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
)

// TestRepliesInOrderUnderConcurrency runs with the reader goroutine alone
// and with callers polling for their own replies, which then hand the read
// role back and forth with it as the line fills and empties.
func TestRepliesInOrderUnderConcurrency(t *testing.T) {
	for _, poll := range []time.Duration{0, 100 * time.Microsecond} {
		t.Run(fmt.Sprintf("poll=%v", poll), func(t *testing.T) {
			c, _ := dialReal(t, Options{Poll: poll})
			bg := context.Background()
			cctx, cancel := context.WithCancel(bg)
			defer cancel()
			var wg sync.WaitGroup
			for g := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := bg
					if g%2 == 1 {
						ctx = cctx // a Done channel to watch while polling
					}
					for i := range 200 {
						want := fmt.Sprintf("%d/%d", g, i)
						if i%10 == 9 {
							replies, _, err := c.DoN(ctx, append(encode("ECHO", want), encode("ECHO", want+"b")...), 2)
							if err != nil || len(replies) != 2 || replies[0].Str != want || replies[1].Str != want+"b" {
								t.Errorf("pipeline %s = %v, %v", want, replies, err)
								return
							}
							continue
						}
						v, err := c.DoOne(ctx, encode("ECHO", want))
						if err != nil || v.Str != want {
							t.Errorf("ECHO %s = %q, %v", want, v.Str, err)
							return
						}
					}
				}()
				if g%10 == 0 {
					time.Sleep(time.Millisecond) // let the line empty now and then
				}
			}
			wg.Wait()
		})
	}
}

func TestServerClosingFailsEveryCall(t *testing.T) {
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for range 3 {
			readCommand(r)
		}
		// Hang up with three calls in line.
	})
	c := New(nc, Options{})
	defer c.Close()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.DoOne(context.Background(), encode("PING"))
			var ce *Error
			if !errors.As(err, &ce) || ce.Op != "read" || ce.Unsent {
				t.Errorf("err = %v, want a read *Error whose outcome is unknown", err)
			}
		}()
	}
	wg.Wait()
}

func TestCloseFailsPendingAndStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		drain(r) // never answers
	})
	c := New(nc, Options{})
	res := make(chan error, 1)
	go func() {
		_, err := c.DoOne(context.Background(), encode("PING"))
		res <- err
	}()
	waitPending(t, c, 1)
	c.Close()
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending call: %v, want ErrClosed", err)
	}
	// The reader, writer and the test's own goroutine are gone; the fake
	// server's goroutine ends at cleanup.
	waitFor(t, "the connection's goroutines to end", func() (bool, string) {
		n := runtime.NumGoroutine()
		return n <= before+1, fmt.Sprintf("%d goroutines after Close, %d before", n, before)
	})
}

// TestStartThenWait: batches handed over with Start are answered in order
// while the caller goes on, the buffer given to Start may be overwritten as
// soon as it returns, and each batch's replies are its own.
func TestStartThenWait(t *testing.T) {
	c, _ := dialReal(t, Options{})
	ctx := context.Background()
	buf := make([]byte, 0, 1024)
	var pend []Pending
	var replies [][]resp.Value
	for i := range 50 {
		buf = buf[:0]
		for j := range 10 {
			buf = append(buf, encode("SET", fmt.Sprintf("k%d", i*10+j), fmt.Sprintf("v%d", i*10+j))...)
		}
		buf = append(buf, encode("GET", fmt.Sprintf("k%d", i*10))...)
		r := make([]resp.Value, 11)
		p, err := c.Start(ctx, buf, r)
		if err != nil {
			t.Fatal(err)
		}
		for k := range buf {
			buf[k] = 'X' // the connection must have its own copy by now
		}
		pend, replies = append(pend, p), append(replies, r)
	}
	for i, p := range pend {
		if err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := replies[i][10].Str, fmt.Sprintf("v%d", i*10); got != want {
			t.Fatalf("batch %d: GET = %q, want %q", i, got, want)
		}
	}
	if !c.Idle() {
		t.Fatal("connection not idle after every batch was waited for")
	}
}

// TestDoN: the reader makes the replies' slice itself, one per command, in
// order; an abandoned DoN keeps the line in order, as Do does.
func TestDoN(t *testing.T) {
	c, _ := dialReal(t, Options{})
	ctx := context.Background()
	if r, errs, err := c.DoN(ctx, nil, 0); r != nil || errs != 0 || err != nil {
		t.Fatalf("DoN of nothing = %v, %d, %v", r, errs, err)
	}
	const n = 5000
	var batch []byte
	for i := range n {
		batch = append(batch, encode("ECHO", fmt.Sprint(i))...)
	}
	replies, errs, err := c.DoN(ctx, batch, n)
	if err != nil || len(replies) != n || errs != 0 {
		t.Fatalf("DoN = %d replies, %d errors, %v", len(replies), errs, err)
	}
	for i, v := range replies {
		if v.Str != fmt.Sprint(i) {
			t.Fatalf("reply %d = %q", i, v.Str)
		}
	}

	// Started first, the sleep is in line ahead of the batch, which
	// therefore cannot be answered before its deadline.
	sleep, err := c.Start(ctx, encode("DEBUG", "SLEEP", "0.1"), make([]resp.Value, 1))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, _, err := c.DoN(cctx, batch, n); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DoN past its deadline = %v", err)
	}
	v, err := c.DoOne(ctx, encode("ECHO", "mine"))
	if err != nil || v.Str != "mine" {
		t.Fatalf("next call got %q, %v", v.Str, err)
	}
	if err := sleep.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPendingReady: a batch whose reply the server holds (CLIENT PAUSE
// WRITE holds the SET) is not ready, nor is one behind it; once the
// server answers, both become ready without a Wait, and Wait then returns
// their replies.
func TestPendingReady(t *testing.T) {
	c, srv := dialReal(t, Options{})
	ctx := context.Background()
	if (Pending{}).Ready() != true {
		t.Fatal("an empty Pending is not ready")
	}
	srv.MustDo(t, "CLIENT", "PAUSE", "30000", "WRITE")
	unpaused := false
	defer func() {
		if !unpaused {
			srv.Do("CLIENT", "UNPAUSE")
		}
	}()
	set, err := c.Start(ctx, encode("SET", "k", "v"), make([]resp.Value, 1))
	if err != nil {
		t.Fatal(err)
	}
	echoed := make([]resp.Value, 1)
	echo, err := c.Start(ctx, encode("ECHO", "behind"), echoed)
	if err != nil {
		t.Fatal(err)
	}
	// The SET is held on the server once it shows in CLIENT LIST.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(fmt.Sprint(srv.MustDo(t, "CLIENT", "LIST")), "cmd=set") {
		if time.Now().After(deadline) {
			t.Fatal("the SET never reached the server")
		}
		time.Sleep(time.Millisecond)
	}
	if set.Ready() || echo.Ready() {
		t.Fatalf("ready while the server holds the SET: %v, %v", set.Ready(), echo.Ready())
	}
	srv.MustDo(t, "CLIENT", "UNPAUSE")
	unpaused = true
	for !echo.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the ECHO behind the SET never became ready")
		}
		time.Sleep(time.Millisecond)
	}
	if !set.Ready() {
		t.Fatal("the ECHO is ready before the SET ahead of it")
	}
	if err := set.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := echo.Wait(ctx); err != nil || echoed[0].Str != "behind" {
		t.Fatalf("ECHO = %q, %v", echoed[0].Str, err)
	}
}

// CloseIdle leaves a connection with a call in line open, and the call
// gets its reply; once idle it closes it, and a call after that fails
// with the error given, marked unsent.
func TestCloseIdle(t *testing.T) {
	c, _ := dialReal(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	released := errors.New("released")
	done := make(chan error, 1)
	go func() {
		// WAIT for a replica that a lone server does not have blocks
		// for its timeout, then answers 0.
		v, err := c.DoOne(ctx, encode("WAIT", "1", "300"))
		if err == nil && (v.Kind != resp.Integer || v.Int != 0) {
			err = fmt.Errorf("reply %v", v)
		}
		done <- err
	}()
	waitPending(t, c, 1)
	if c.CloseIdle(released) {
		t.Fatal("CloseIdle closed a connection with a call in line")
	}
	if err := <-done; err != nil {
		t.Fatalf("the call in line when CloseIdle was refused: %v", err)
	}
	if !c.CloseIdle(released) {
		t.Fatal("CloseIdle left an idle connection open")
	}
	_, err := c.DoOne(ctx, encode("PING"))
	var ce *Error
	if !errors.As(err, &ce) || !ce.Unsent || !errors.Is(err, released) || errors.Is(err, ErrClosed) {
		t.Fatalf("a call after CloseIdle = %v; want the error given, unsent", err)
	}
	if !c.CloseIdle(released) {
		t.Fatal("CloseIdle on a closed connection reports it open")
	}
}
