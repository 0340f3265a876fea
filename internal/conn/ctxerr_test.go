package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
)

// TestContextErrorsGiveTheCause: a call stopped by a context ended with a
// cause says why in its error, wherever it stopped: before it was sent,
// while its reply was due (BLPOP on a real server, which blocks), and in
// the middle of a large write, which ends the connection. errors.Is still
// finds the context's own error, and the outcome is unchanged: not sent
// before the write, of unknown outcome after.
func TestContextErrorsGiveTheCause(t *testing.T) {
	cause := errors.New("the job was called off")
	hasCause := func(t *testing.T, what string, err, want error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), cause.Error()) || !errors.Is(err, want) {
			t.Errorf("%s: err = %v; want %v with its cause, %q", what, err, want, cause)
		}
	}

	c, srv := dialReal(t, Options{})
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	_, err := c.DoOne(ctx, encode("SET", "k", "v"))
	hasCause(t, "cancelled before the call", err, context.Canceled)
	if !isNotSentFor(err, context.Canceled) {
		t.Errorf("cancelled before the call: err = %#v; want not sent", err)
	}

	ctx, cancel = context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.DoOne(ctx, encode("BLPOP", "nothing", "0"))
		done <- err
	}()
	// In line is not yet written: a call that leaves before its bytes are
	// taken is not sent. Cancel once the server blocks on it.
	waitFor(t, "the server to block on the BLPOP", func() (bool, string) {
		v, err := srv.Do("INFO", "clients")
		s, _ := v.(string)
		return err == nil && strings.Contains(s, "blocked_clients:1\r\n"), fmt.Sprintf("%q, %v", s, err)
	})
	cancel(cause)
	err = <-done
	hasCause(t, "cancelled while the reply was due", err, context.Canceled)
	var ce *Error
	if errors.As(err, &ce) {
		t.Errorf("cancelled while the reply was due: err = %#v; want the context's error alone", err)
	}

	tctx, tcancel := context.WithTimeoutCause(context.Background(), 50*time.Millisecond, cause)
	defer tcancel()
	c2, _ := dialReal(t, Options{})
	_, err = c2.DoOne(tctx, encode("BLPOP", "nothing", "0"))
	hasCause(t, "past its deadline", err, context.DeadlineExceeded)

	// A server that reads nothing (a fake: a real one always reads).
	stop := make(chan struct{})
	nc := fakeServer(t, func(r *resp.Reader, w io.Writer) { <-stop })
	t.Cleanup(func() { close(stop) })
	c3 := New(nc, Options{})
	defer c3.Close()
	ctx, cancel = context.WithCancelCause(context.Background())
	go func() {
		done <- c3.Do(ctx, make([]byte, 64<<20), make([]resp.Value, 1))
	}()
	time.Sleep(50 * time.Millisecond)
	cancel(cause)
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the write was not cut by its context")
	}
	hasCause(t, "cut in the middle of a write", err, context.Canceled)
}

func isNotSentFor(err, want error) bool {
	var ce *Error
	return errors.As(err, &ce) && ce.Op == "send" && ce.Unsent && errors.Is(err, want)
}
