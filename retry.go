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

// Outcome is what an error says about whether its command or batch took
// effect on the server.
type Outcome int

const (
	// OutcomeUnknown: the command may or may not have run. The connection failed
	// after it was written, or the caller stopped waiting for its reply.
	OutcomeUnknown Outcome = iota
	// OutcomeNotSent: no byte of it reached the server. It had no effect.
	OutcomeNotSent
	// OutcomeNotApplied: it reached the server, which certainly did not apply it
	// (a watch conflict, an EXECABORT, a command refused before it ran).
	OutcomeNotApplied
)

func (o Outcome) String() string {
	switch o {
	case OutcomeNotSent:
		return "not sent"
	case OutcomeNotApplied:
		return "not applied"
	}
	return "unknown"
}

// notSentError marks a failure that happened before anything was written:
// a dial, a handshake, a wait for a pooled connection.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
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
func (e *uncertainError) Unwrap() error { return e.err }

// refusedFirst are the server errors given before a command runs, so the
// command had no effect.
var refusedFirst = map[string]bool{
	"LOADING": true, "BUSY": true, "TRYAGAIN": true, "CLUSTERDOWN": true,
	"MASTERDOWN": true, "MOVED": true, "ASK": true, "NOSCRIPT": true,
	"NOAUTH": true, "NOPERM": true, "READONLY": true, "OOM": true,
	"MISCONF": true, "NOREPLICAS": true, "WRONGTYPE": true, "EXECABORT": true,
	"CROSSSLOT": true,
}

// OutcomeOf tells from an error returned by redpipe whether the command or
// batch was certainly not sent, certainly not applied, or may have run.
// A nil error is not an outcome and reports OutcomeUnknown.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OutcomeUnknown
	}
	var (
		ns  *notSentError
		ce  *conn.Error
		ue  *UsageError
		ae  *ArityError
		ge  *ArgError
		oe  *OptionError
		se  *Error
		cmd *CommandError
	)
	var ce2 *uncertainError
	switch {
	case errors.As(err, &ce2):
		return OutcomeUnknown
	case errors.As(err, &ns), errors.As(err, &ue), errors.As(err, &ae), errors.As(err, &ge), errors.As(err, &oe):
		return OutcomeNotSent
	case errors.Is(err, ErrNotApplied):
		// Before the connection's own verdict: a transaction lost while
		// watching wraps an earlier failure, yet its EXEC was never sent.
		return OutcomeNotApplied
	case errors.As(err, &ce):
		if ce.Unsent {
			return OutcomeNotSent
		}
		return OutcomeUnknown
	case errors.As(err, &cmd):
		// One command of a batch failed; the others ran.
		return OutcomeUnknown
	case errors.As(err, &se):
		// A script reports the error of the command that stopped it, after
		// the writes it made before; Redis tags those with "script:".
		if refusedFirst[se.Prefix] && !strings.Contains(se.Msg, " script: ") {
			return OutcomeNotApplied
		}
	}
	return OutcomeUnknown
}

// SafeToRetry reports whether the command or batch behind err certainly had
// no effect, so sending it again cannot apply it twice.
func SafeToRetry(err error) bool {
	o := OutcomeOf(err)
	return err != nil && (o == OutcomeNotSent || o == OutcomeNotApplied)
}

type idempotentKey struct{}

// Idempotent marks the calls made with ctx as safe to run twice (SET of a
// fixed value, say), so the client may resend them after a connection
// failure whose outcome is unknown. Without it only reads and commands
// that were certainly not sent are resent.
func Idempotent(ctx context.Context) context.Context {
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
		return !errors.Is(err, ErrClosed) && !errors.As(err, &cv) && !brokenServer(err)
	case errors.As(err, &ce):
		if ce.Op == "send" || errors.Is(err, conn.ErrClosed) || brokenServer(err) {
			return false
		}
		return ce.Unsent || readonly || isIdempotent(ctx)
	}
	return false
}

// brokenServer tells a reply the server should never have sent (malformed,
// or over the configured limits): sending the command again would get the
// same answer.
func brokenServer(err error) bool {
	var pe *resp.ProtocolError
	var le *resp.LimitError
	return errors.As(err, &pe) || errors.As(err, &le)
}

// backoff waits before retry number n (from 1), jittered, within ctx.
func backoff(ctx context.Context, n int) error {
	d := time.Millisecond << min(n, 8) // 2ms .. 256ms
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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
		if err == nil || attempt > max(c.opt.MaxRetries, 0) || !retryable(ctx, err, readonly) || backoff(ctx, attempt) != nil {
			if err != nil && earlier != nil && earlier != err {
				// The last attempt was not sent, but an earlier one may
				// have run: the caller must not take it as not applied.
				return &uncertainError{msg: fmt.Sprintf("redpipe: an earlier attempt may have run (%v)", earlier), err: err}
			}
			return err
		}
	}
}
