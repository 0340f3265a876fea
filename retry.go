package redpipe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/resp"
)

// notSentError marks a failure that happened before anything was written:
// a dial, a handshake, a wait for a pooled connection.
type notSentError struct{ err error }

// Error says "not sent" of a context that ended before the command went
// out, as the engine says it of one that ended while it waited to be
// written, so that the same event reads the same wherever it was met.
func (e *notSentError) Error() string {
	msg := e.err.Error()
	if (errors.Is(e.err, context.Canceled) || errors.Is(e.err, context.DeadlineExceeded)) &&
		!strings.HasPrefix(msg, "redpipe:") {
		return "redpipe: not sent: " + msg
	}
	return msg
}
func (e *notSentError) Unwrap() error { return e.err }

func notSent(err error) error {
	if err == nil {
		return nil
	}
	return &notSentError{err}
}

// uncertainError marks a failure after which some commands may have run
// even though the error inside says otherwise: a MULTI refused while the
// commands behind it ran on their own, an error raised by a script halfway
// through its writes. OutcomeOf reports OutcomeUnknown for it, whatever it wraps.
type uncertainError struct {
	msg string
	err error
}

func (e *uncertainError) Error() string { return e.msg + ": " + e.err.Error() }

// Is reaches the cause, but for what says nothing was applied
// (ErrNotApplied, ErrWatch), which the cause may say of its own part
// while other commands ran. So the cause is not handed to errors.Is
// through an Unwrap method, which would reach it whatever Is says.
func (e *uncertainError) Is(target error) bool { return causeIs(e.err, target) }

// As finds the cause, or what it wraps, as errors.As does through Unwrap.
func (e *uncertainError) As(target any) bool { return errors.As(e.err, target) }

type idempotentKey struct{}

// Idempotent marks the calls made with ctx as safe to run twice (SET of a
// fixed value, say), so the client may resend them after a connection
// failure whose outcome is unknown. Without it only reads and commands
// that were certainly not sent are resent. It does not apply to a
// transaction that writes, which is never sent again once EXEC may have
// reached the server.
//
// Given a nil ctx, it returns a context that every call refuses as it
// refuses a nil one, with a *UsageError that names Idempotent, before
// anything is sent (a context derived from it is done from the start,
// but one made by context.WithoutCancel, which runs calls unmarked).
func Idempotent(ctx context.Context) context.Context {
	if ctx == nil {
		return madeFromNil("Idempotent")
	}
	return context.WithValue(ctx, idempotentKey{}, true)
}

func isIdempotent(ctx context.Context) bool {
	v, _ := ctx.Value(idempotentKey{}).(bool)
	return v
}

// retryable decides whether a failed attempt may be sent again: the
// connection failed (not the server, not the caller's context) and the
// command certainly was not sent, or is a read, or is marked idempotent.
func retryable(ctx context.Context, err error, readonly bool) bool {
	if ctx.Err() != nil {
		return false
	}
	var ce *conn.Error
	var ns *notSentError
	switch {
	case errors.As(err, &ns):
		// A dial or a handshake cut short may work next time; a server
		// that refused the handshake (a wrong password) will refuse again,
		// unless it was still loading its data.
		var se *Error
		if errors.As(err, &se) {
			return se.Prefix == "LOADING"
		}
		var cv *tls.CertificateVerificationError
		return !errors.Is(err, ErrClosed) && !errors.Is(err, errReleased) && !errors.As(err, &cv) && !brokenServer(err)
	case errors.As(err, &ce):
		if ce.Op == "send" || errors.Is(err, conn.ErrClosed) || errors.Is(err, errReleased) || brokenServer(err) {
			return false
		}
		return ce.Unsent || readonly || isIdempotent(ctx)
	}
	return false
}

// brokenServer tells a reply the server should never have sent (malformed,
// over the configured limits, or not the replies of a transaction):
// sending the command again would get the same answer.
func brokenServer(err error) bool {
	var pe *resp.ProtocolError
	var le *resp.LimitError
	var ue *unexpectedReplies
	return errors.As(err, &pe) || errors.As(err, &le) || errors.As(err, &ue)
}

// backoff waits before retry number n (from 1), jittered, within ctx and
// the life of the client that retries.
func backoff(ctx, life context.Context, n int) error {
	return sleepUntil(ctx, life, time.Now().Add(backoffDelay(n)))
}

// backoffDelay is the pause before the nth retry: it doubles with n, and
// is jittered so that callers that failed together do not retry together.
func backoffDelay(n int) time.Duration {
	d := time.Millisecond << min(n, 8) // 2ms .. 256ms
	return d/2 + rand.N(d/2+1)
}

// sleepUntil waits until t, or until ctx ends, or until life (a client's,
// ended by Close) ends: a call must not go on waiting to retry on a client
// that can no longer send it, so it fails at once with ErrClosed.
func sleepUntil(ctx, life context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return conn.ContextErr(ctx)
	case <-life.Done():
		return notSent(ErrClosed)
	}
}

// retry runs f until it succeeds or fails in a way retryable does not
// allow, at most 1+MaxRetries times, with backoff between attempts.
func (c *Client) retry(ctx context.Context, readonly bool, f func() error) error {
	var earlier error // an attempt that may have run
	for attempt := 1; ; attempt++ {
		err := f()
		if err != nil && earlier == nil && OutcomeOf(err) == OutcomeUnknown {
			earlier = err
		}
		stop := err == nil || attempt > max(c.opt.MaxRetries, 0) || !retryable(ctx, err, readonly)
		if !stop {
			if berr := backoff(ctx, c.life, attempt); berr != nil {
				stop = true
				if errors.Is(berr, ErrClosed) {
					// Closed during the pause: the call fails as one
					// made on a closed client, not with the error of an
					// attempt that could have been retried.
					err = c.closedErr()
				}
			}
		}
		if stop {
			if err != nil && earlier != nil && earlier != err {
				// The last attempt was not sent, but an earlier one may
				// have run: the caller must not take it as not applied.
				return &uncertainError{msg: fmt.Sprintf("redpipe: an earlier attempt may have run (%v)", earlier), err: err}
			}
			return err
		}
	}
}
