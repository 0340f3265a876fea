//go:build unix

package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
)

// feed has w time n calls, each taking d.
func feed(w *wayChooser, n int, d time.Duration) {
	for range n {
		w.took(d)
	}
}

// TestWayChooserSwitches: the chooser polls first, tries sleeping after
// wayFirst calls, and switches when the trial's median round trip is
// clearly shorter; a trial that is not clearly shorter keeps the way and
// doubles the interval, up to wayLast; one slow call in a trial, or among
// the calls it is weighed against, does not decide it.
func TestWayChooserSwitches(t *testing.T) {
	var w wayChooser
	if w.sleeping() {
		t.Fatal("a new chooser sleeps; it polls first")
	}
	feed(&w, wayFirst-1, 20*time.Microsecond)
	if w.sleeping() {
		t.Fatalf("trial began after %d calls, before %d", wayFirst-1, wayFirst)
	}
	w.took(20 * time.Microsecond)
	if !w.sleeping() {
		t.Fatalf("no trial after %d calls", wayFirst)
	}
	// A trial that is quicker, one call of it held up for 10ms.
	feed(&w, wayTrial-1, 10*time.Microsecond)
	w.took(10 * time.Millisecond)
	if !w.sleep || w.switches != 1 || !w.sleeping() {
		t.Fatalf("after a quicker trial: sleep %v, %d switches; want it to sleep", w.sleep, w.switches)
	}
	// Sleeping now; a poll trial that is only a little quicker does not
	// switch back, and the next trial comes after twice as many calls.
	feed(&w, wayFirst, 10*time.Microsecond)
	if w.sleeping() {
		t.Fatal("no poll trial after the switch")
	}
	feed(&w, wayTrial, 9500*time.Nanosecond)
	if !w.sleep || w.switches != 1 || w.interval != 2*wayFirst {
		t.Fatalf("after a trial a little quicker: sleep %v, %d switches, interval %d; want no switch and %d", w.sleep, w.switches, w.interval, 2*wayFirst)
	}
	feed(&w, 2*wayFirst-1, 10*time.Microsecond)
	if !w.sleeping() {
		t.Fatalf("a trial began before %d calls", 2*wayFirst)
	}
	// Trials that never switch come ever less often, up to wayLast.
	for range 12 {
		feed(&w, w.left, 10*time.Microsecond)
		if w.sleeping() {
			t.Fatal("no trial when the interval was over")
		}
		feed(&w, wayTrial, 10*time.Microsecond)
	}
	if w.interval != wayLast || w.switches != 1 {
		t.Fatalf("interval %d, %d switches after trials that never won; want %d and 1", w.interval, w.switches, wayLast)
	}
	// Once the host changes, polling wins its next trial, one slow call
	// of the chosen way notwithstanding.
	feed(&w, w.left-1, 40*time.Microsecond)
	w.took(5 * time.Millisecond)
	feed(&w, wayTrial, 15*time.Microsecond)
	if w.sleep || w.switches != 2 || w.interval != wayFirst {
		t.Fatalf("after the host changed: sleep %v, %d switches, interval %d; want polling again, at %d", w.sleep, w.switches, w.interval, wayFirst)
	}
}

// TestCallsBackToBackFollowTheWayChosen: a caller calling back to back
// polls for its reply or sleeps on it as the chooser says, and its calls
// are timed, so that trials come.
func TestCallsBackToBackFollowTheWayChosen(t *testing.T) {
	// A budget so long that every call counts as sent back to back, and
	// is timed, however long a loaded machine holds the caller up
	// between two.
	c, _ := dialReal(t, Options{Poll: time.Second})
	ctx := context.Background()
	call := func(n int) {
		t.Helper()
		for i := range n {
			want := fmt.Sprint(i)
			if v, err := c.DoOne(ctx, encode("ECHO", want)); err != nil || v.Str != want {
				t.Fatalf("ECHO %s = %q, %v", want, v.Str, err)
			}
		}
	}
	call(1) // the first call, not back to back, sleeps
	w := &c.poll.way
	// No trial for the next 200 calls, which sleep.
	w.sleep, w.interval, w.left = true, wayLast, wayLast
	hits, own := c.poll.hits, c.ownReads
	call(200)
	if c.poll.hits != hits {
		t.Fatalf("%d calls polled while the chooser said to sleep", c.poll.hits-hits)
	}
	if c.ownReads-own != 200 {
		t.Fatalf("callers read %d of 200 replies themselves", c.ownReads-own)
	}
	if w.nk < 200 {
		t.Fatalf("%d of the 200 calls were timed", w.nk)
	}
	// Polling, with trials from the start: the first wayFirst calls poll,
	// whatever the trials decide after.
	*w = wayChooser{}
	call(1000)
	if c.poll.hits-hits < wayFirst/2 {
		t.Fatalf("%d of 1000 calls found their replies polling", c.poll.hits-hits)
	}
	if w.trials == 0 {
		t.Fatal("no trial in 1000 calls back to back")
	}
}

// TestWayTimesOnlyCallsThatTellWakeUps: quiet calls and blocking ones
// (calls with a Grace), sent back to back, are not timed for the choice
// between polling and sleeping: a quiet call sleeps whichever way is
// chosen, and a blocking command's reply comes when the server has
// something to give. Plain calls sent back to back are timed.
func TestWayTimesOnlyCallsThatTellWakeUps(t *testing.T) {
	c, _ := dialReal(t, Options{Poll: 10 * time.Millisecond})
	ctx := context.Background()
	const n = 100
	var push []string
	for i := range n {
		push = append(push, fmt.Sprint(i))
	}
	if v, err := c.DoOne(ctx, encode(append([]string{"RPUSH", "queue"}, push...)...)); err != nil || v.Int != n {
		t.Fatalf("RPUSH = %v, %v", v.Int, err)
	}
	w := &c.poll.way
	w.interval, w.left = wayLast, wayLast // no trial: every timed call counts in nk
	for _, tc := range []struct {
		name  string
		k     Graced
		cmd   func(i int) []byte
		timed bool
	}{
		{"quiet", c.Quiet(), func(i int) []byte { return encode("ECHO", fmt.Sprint(i)) }, false},
		{"blocking", c.WithGrace(Grace(time.Second)), func(int) []byte { return encode("BLPOP", "queue", "1") }, false},
		{"plain", Graced{c: c}, func(i int) []byte { return encode("ECHO", fmt.Sprint(i)) }, true},
	} {
		before := w.nk
		for i := range n {
			v, err := tc.k.DoOne(ctx, tc.cmd(i))
			if err != nil || v.Kind == resp.Null || v.Kind == resp.Error {
				t.Fatalf("%s call %d = %v %q, %v", tc.name, i, v.Kind, v.Str, err)
			}
		}
		switch timed := w.nk - before; {
		case !tc.timed && timed != 0:
			t.Errorf("%d of %d %s calls back to back were timed; want none", timed, n, tc.name)
		case tc.timed && timed < n/2:
			t.Errorf("%d of %d %s calls back to back were timed; want most", timed, n, tc.name)
		}
	}
}

// TestWayLeavesCallsReadByOthersUntimed: a call sent back to back whose
// reply its caller does not read itself, as its context ended first or
// it was sent with Start, is not timed: its reply is read by the reader
// goroutine, which gives the role up when it likes, and the round trip
// would be that of the context, or of the hand-off. Both ways are tried.
func TestWayLeavesCallsReadByOthersUntimed(t *testing.T) {
	for _, sleep := range []bool{false, true} {
		t.Run(fmt.Sprintf("sleep=%v", sleep), func(t *testing.T) {
			release := make(chan struct{})
			nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
				readCommand(r)
				io.WriteString(w, "+first\r\n")
				readCommand(r)
				<-release
				io.WriteString(w, "+late\r\n")
				readCommand(r)
				io.WriteString(w, "+started\r\n")
				drain(r)
			})
			// A budget far longer than the calls take: every call after
			// the first is sent back to back.
			c := New(nc, Options{Poll: time.Minute})
			defer c.Close()
			ctx := context.Background()
			if v, err := c.DoOne(ctx, encode("GET", "a")); err != nil || v.Str != "first" {
				t.Fatalf("first call = %q, %v", v.Str, err)
			}
			w := &c.poll.way
			w.sleep, w.interval, w.left = sleep, wayLast, wayLast
			cut, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			if _, err := c.DoOne(cut, encode("GET", "b")); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call cut by its context: %v, want its context's error", err)
			}
			close(release)
			waitFor(t, "the reader goroutine to take the late reply", func() (bool, string) {
				n := c.Pending()
				return n == 0, fmt.Sprintf("%d calls in line", n)
			})
			p, err := c.Start(ctx, encode("GET", "c"), make([]resp.Value, 1))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the line to empty", func() (bool, string) {
				n := c.Pending()
				return n == 0, fmt.Sprintf("%d calls in line", n)
			})
			c.mu.Lock()
			nk, timing := w.nk, !w.sent.IsZero()
			c.mu.Unlock()
			if nk != 0 || timing {
				t.Fatalf("%d calls timed, one still timed %v, after a call cut by its context and one sent with Start; want none", nk, timing)
			}
		})
	}
}

// TestWayLeavesPartlyWrittenCallUntimed: a call sent back to back that
// its caller writes itself, but that the socket takes only part of at
// once, leaves its reply to the reader goroutine while the caller writes
// the rest (see writeOwn), and is not timed.
func TestWayLeavesPartlyWrittenCallUntimed(t *testing.T) {
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) {
		for {
			if _, err := readCommand(r); err != nil {
				return
			}
			io.WriteString(w, "+OK\r\n")
		}
	})
	nc.(*net.TCPConn).SetWriteBuffer(16 << 10)
	c := New(nc, Options{Poll: time.Minute, MaxPending: 64 << 20})
	defer c.Close()
	ctx := context.Background()
	if v, err := c.DoOne(ctx, encode("PING")); err != nil || v.Str != "OK" {
		t.Fatalf("first call = %q, %v", v.Str, err)
	}
	w := &c.poll.way
	w.interval, w.left = wayLast, wayLast
	own := c.ownReads
	replies, _, err := c.DoN(ctx, encode("SET", "k", strings.Repeat("v", 4<<20)), 1)
	if err != nil || replies[0].Str != "OK" {
		t.Fatalf("SET of 4 MiB = %v, %v", replies, err)
	}
	waitFor(t, "the line to empty", func() (bool, string) {
		n := c.Pending()
		return n == 0, fmt.Sprintf("%d calls in line", n)
	})
	if c.ownReads != own {
		t.Fatal("the caller read its reply itself: the socket took the whole write at once, and the test needs it to take part")
	}
	c.mu.Lock()
	nk, timing := w.nk, !w.sent.IsZero()
	c.mu.Unlock()
	if nk != 0 || timing {
		t.Fatalf("%d calls timed, one still timed %v, after a call whose reply the reader goroutine read; want none", nk, timing)
	}
}
