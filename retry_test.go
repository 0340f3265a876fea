package redpipe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

func TestOutcomeOf(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want Outcome
		safe bool
	}{
		{"dial", notSent(&DialError{Addr: "x", Err: io.EOF}), OutcomeNotSent, true},
		{"handshake", notSent(&HandshakeError{Step: "HELLO", Err: newError("WRONGPASS no")}), OutcomeNotSent, true},
		{"conn failed before the bytes were taken", &conn.Error{Op: "read", Err: io.EOF, Unsent: true}, OutcomeNotSent, true},
		{"conn failed after", &conn.Error{Op: "read", Err: io.EOF}, OutcomeUnknown, false},
		{"context ended before sending", &conn.Error{Op: "send", Err: context.Canceled, Unsent: true}, OutcomeNotSent, true},
		{"context ended while waiting", context.Canceled, OutcomeUnknown, false},
		{"arity", &ArityError{Command: "GET", Arity: 2, Got: 1}, OutcomeNotSent, true},
		{"usage", &UsageError{Msg: "x"}, OutcomeNotSent, true},
		{"watch conflict", ErrWatch, OutcomeNotApplied, true},
		{"watch conflict, retries exhausted", &TxRetryError{Attempts: 3, Err: ErrWatch}, OutcomeNotApplied, true},
		{"execabort", &ExecAbortError{Err: newError("EXECABORT x")}, OutcomeNotApplied, true},
		{"tx lost before EXEC", &OutcomeError{Outcome: OutcomeNotApplied, Err: io.EOF}, OutcomeNotApplied, true},
		{"tx lost after EXEC", &OutcomeError{Outcome: OutcomeUnknown, Err: io.EOF}, OutcomeUnknown, false},
		{"server refused before running", newError("LOADING Redis is loading"), OutcomeNotApplied, true},
		{"server error of a script", newError("ERR Error running script"), OutcomeUnknown, false},
		{"command error in a batch", &CommandError{Index: 1, Command: "INCR", Err: newError("WRONGTYPE x")}, OutcomeUnknown, false},
		{"wrapped", fmt.Errorf("outer: %w", &conn.Error{Op: "write", Err: io.EOF, Unsent: true}), OutcomeNotSent, true},
	}
	for _, tc := range cases {
		if got := OutcomeOf(tc.err); got != tc.want {
			t.Errorf("%s: OutcomeOf = %v, want %v", tc.name, got, tc.want)
		}
		if got := SafeToRetry(tc.err); got != tc.safe {
			t.Errorf("%s: SafeToRetry = %v, want %v", tc.name, got, tc.safe)
		}
	}
	if SafeToRetry(nil) {
		t.Error("SafeToRetry(nil) = true")
	}
}

func TestRetryable(t *testing.T) {
	ctx := context.Background()
	unsent := &conn.Error{Op: "write", Err: io.EOF, Unsent: true}
	unknown := &conn.Error{Op: "read", Err: io.EOF}
	cases := []struct {
		name     string
		ctx      context.Context
		err      error
		readonly bool
		want     bool
	}{
		{"unsent write", ctx, unsent, false, true},
		{"write of unknown outcome", ctx, unknown, false, false},
		{"read of unknown outcome", ctx, unknown, true, true},
		{"idempotent write of unknown outcome", Idempotent(ctx), unknown, false, true},
		{"failed dial", ctx, notSent(&DialError{Addr: "x", Err: io.EOF}), false, true},
		{"wrong password", ctx, notSent(&HandshakeError{Step: "HELLO", Err: newError("WRONGPASS x")}), false, false},
		{"server loading", ctx, notSent(&HandshakeError{Step: "HELLO", Err: newError("LOADING x")}), false, true},
		{"client closed", ctx, &conn.Error{Op: "close", Err: conn.ErrClosed, Unsent: true}, true, false},
		{"server error", ctx, newError("ERR x"), true, false},
		{"reply over a limit", ctx, &conn.Error{Op: "read", Err: &resp.LimitError{What: "bulk string length"}}, true, false},
		{"malformed reply", ctx, &conn.Error{Op: "read", Err: &resp.ProtocolError{Expected: "CRLF"}}, true, false},
		{"untrusted certificate", ctx, notSent(&DialError{Addr: "x", Err: &tls.CertificateVerificationError{Err: io.EOF}}), true, false},
	}
	for _, tc := range cases {
		if got := retryable(tc.ctx, tc.err, tc.readonly); got != tc.want {
			t.Errorf("%s: retryable = %v, want %v", tc.name, got, tc.want)
		}
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if retryable(done, unsent, true) {
		t.Error("retried after the caller's context ended")
	}
	if !errors.Is(ErrWatch, ErrNotApplied) {
		t.Error("ErrWatch does not match ErrNotApplied")
	}
}

// TestUncertainErrorSaysNothingApplied: an error of unknown outcome never
// matches what says nothing was applied (ErrNotApplied, ErrWatch), though
// its cause may say so of its own part while other commands ran; errors.Is
// and errors.As still reach the cause for anything else.
func TestUncertainErrorSaysNothingApplied(t *testing.T) {
	abort := &ExecAbortError{Err: newError("EXECABORT Transaction discarded because of previous errors.")}
	for _, cause := range []error{ErrWatch, fmt.Errorf("attempt: %w", ErrNotApplied), abort,
		&OutcomeError{Outcome: OutcomeNotApplied, Err: errors.New("lost before EXEC")}} {
		err := fmt.Errorf("call: %w", &uncertainError{msg: "redpipe: other commands ran", err: cause})
		if errors.Is(err, ErrNotApplied) || errors.Is(err, ErrWatch) {
			t.Errorf("%v matches ErrNotApplied or ErrWatch", err)
		}
		if OutcomeOf(err) != OutcomeUnknown || SafeToRetry(err) {
			t.Errorf("%v: outcome %v, SafeToRetry %v; want unknown, false", err, OutcomeOf(err), SafeToRetry(err))
		}
	}
	err := &uncertainError{msg: "redpipe: other commands ran", err: fmt.Errorf("part: %w", abort)}
	if ae := (*ExecAbortError)(nil); !errors.As(err, &ae) || ae != abort {
		t.Errorf("errors.As(%v, *ExecAbortError) does not reach the cause", err)
	}
	err = &uncertainError{msg: "redpipe: other commands ran", err: fmt.Errorf("part: %w", context.Canceled)}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false; want the cause reached", err)
	}
}

// A pause before a retry went on after Close, up to its end: the client's
// life now ends it, and the wait fails with ErrClosed. The pause here is
// an hour, so that only the end of life can end it within the test.
func TestSleepUntilEndsAtClose(t *testing.T) {
	life, endLife := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sleepUntil(context.Background(), life, time.Now().Add(time.Hour)) }()
	endLife()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) || OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("sleepUntil ended by the client's life = %v (%v), want ErrClosed, not sent", err, OutcomeOf(err))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sleepUntil still waiting 30s after the client's life ended (it waits an hour)")
	}
}

// A call that retries a failed dial and is in its backoff when the client
// is closed fails with ErrClosed, not with the dial's error.
func TestRetryBackoffEndsAtClose(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dials atomic.Int32
	second := make(chan struct{})
	c, err := NewClient(Options{Addr: srv.Addr, MaxRetries: 1000,
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			if dials.Add(1) == 2 {
				close(second)
			}
			return nil, errors.New("refused by the test's dialer")
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	called := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, "PING")
		called <- err
	}()
	select {
	case <-second:
	case <-ctx.Done():
		t.Fatal("the call did not retry its dial")
	}
	c.Close()
	select {
	case err := <-called:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("call retrying when Close came = %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("call still retrying long after Close")
	}
}
