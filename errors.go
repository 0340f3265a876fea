package redpipe

import (
	"context"
	"errors"

	"fmt"
	"github.com/redpipe/redpipe/internal/conn"
	"strings"
)

// ErrNil is the error of a command whose reply is nil: GET of a missing key,
// SET ... NX that did not set. It belongs to that command alone: in a
// pipeline it stays in the command's reply and never becomes the error of
// the whole batch. Test for it with errors.Is.
var ErrNil = errors.New("redpipe: nil reply")

// ErrClosed is the error of calls on a Client or Tx that has been closed,
// and of calls in flight when it was.
var ErrClosed = conn.ErrClosed

// Error is an error reply from the server, such as
// "WRONGTYPE Operation against a key holding the wrong kind of value".
// Every server error is of this one type; reach it with errors.As and
// branch on Prefix.
type Error struct {
	// Prefix is the first word of the reply, by convention upper case:
	// ERR, WRONGTYPE, NOSCRIPT, MOVED, ASK, NOPERM, WRONGPASS, EXECABORT...
	Prefix string
	// Msg is the whole reply text, prefix included.
	Msg string
}

func (e *Error) Error() string { return e.Msg }

// newError builds an *Error from the text of an error reply.
func newError(msg string) *Error {
	prefix := msg
	if i := strings.IndexByte(msg, ' '); i >= 0 {
		prefix = msg[:i]
	}
	return &Error{Prefix: prefix, Msg: msg}
}

// ArityError is a command refused before it was sent because it has the
// wrong number of arguments for the server's command table.
type ArityError struct {
	Command string // upper case, "GET" or "CONFIG GET"
	Arity   int    // the table's arity: n means exactly n words, -n at least n, counting the command name
	Got     int    // words given, counting the command name
}

func (e *ArityError) Error() string {
	if e.Arity < 0 {
		return fmt.Sprintf("redpipe: wrong number of arguments for %s: got %d, want at least %d (arity %d, counting the command name)",
			e.Command, e.Got-nameWords(e.Command), -e.Arity-nameWords(e.Command), e.Arity)
	}
	return fmt.Sprintf("redpipe: wrong number of arguments for %s: got %d, want %d (arity %d, counting the command name)",
		e.Command, e.Got-nameWords(e.Command), e.Arity-nameWords(e.Command), e.Arity)
}

func nameWords(cmd string) int { return strings.Count(cmd, " ") + 1 }

// ArgError is a command refused before it was sent because one of its
// arguments cannot be encoded: its type has no encoding or is refused (a
// time.Duration, a nil pointer, a Value), or its MarshalBinary or
// MarshalText failed, in which case errors.Is and errors.As reach the
// marshaler's error through Err.
type ArgError struct {
	Command string // upper case command name
	Index   int    // position of the argument, 1 being the first after the name
	Err     error
}

func (e *ArgError) Error() string {
	return fmt.Sprintf("redpipe: argument %d of %s: %v", e.Index, e.Command, e.Err)
}

func (e *ArgError) Unwrap() error { return e.Err }

// TypeError is returned by a Value accessor asked for a type the reply does
// not hold, such as Int64 on an array.
type TypeError struct {
	Want string // what the accessor converts to
	Got  string // what the reply is
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("redpipe: cannot read a %s reply as %s", e.Got, e.Want)
}

// UsageError is a call the API refuses because of how it is used: a command
// that would break a shared connection, MULTI inside MULTI, use after Close.
type UsageError struct {
	Msg string
	Err error // a sentinel it also matches, such as ErrClosed; may be nil
}

func (e *UsageError) Error() string { return "redpipe: " + e.Msg }

func (e *UsageError) Unwrap() error { return e.Err }

// ErrNotApplied is matched (errors.Is) by every error that means a
// transaction was certainly not applied: a watch conflict (ErrWatch), an
// EXECABORT (*ExecAbortError), a connection lost before EXEC was sent.
var ErrNotApplied = errors.New("redpipe: transaction not applied")

// ErrWatch is the error of a transaction whose EXEC found a watched key
// changed: nothing was applied, and running it again may succeed. It
// matches ErrNotApplied too.
var ErrWatch error = &notApplied{msg: "redpipe: transaction not applied: a watched key changed"}

// notApplied is a sentinel that also matches ErrNotApplied.
type notApplied struct{ msg string }

func (e *notApplied) Error() string        { return e.msg }
func (e *notApplied) Is(target error) bool { return target == ErrNotApplied }

// CommandError is the failure of one command of a batch: the first error
// Exec reports, or one refused command of an EXECABORT.
type CommandError struct {
	Index   int    // the command's index among the batch's replies (0 for the first)
	Command string // upper-case name
	In      string // "pipeline" or "transaction"
	Err     error  // the cause: usually an *Error from the server
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("command %d (%s) of %s: %v", e.Index+1, e.Command, e.In, e.Err)
}

func (e *CommandError) Unwrap() error { return e.Err }

// ExecAbortError is a transaction the server refused at EXEC because some
// commands were refused when queued (an unknown command, a wrong number of
// arguments): nothing was applied. Failed names each refused command and
// its cause.
type ExecAbortError struct {
	Failed []CommandError
	Err    *Error // the EXECABORT reply itself
}

func (e *ExecAbortError) Error() string {
	var b strings.Builder
	b.WriteString("redpipe: transaction not applied: the server refused it (EXECABORT)")
	for i := range e.Failed {
		b.WriteString("; ")
		b.WriteString(e.Failed[i].Error())
	}
	return b.String()
}

func (e *ExecAbortError) Unwrap() error { return e.Err }

func (e *ExecAbortError) Is(target error) bool { return target == ErrNotApplied }

// OutcomeError is a transaction that failed before the server could rule
// on it (a lost connection, a refusal before sending) and says what became
// of it: OutcomeNotApplied when it certainly did not run, and then it
// matches ErrNotApplied, or OutcomeUnknown when the connection failed after
// EXEC may have reached the server.
type OutcomeError struct {
	Outcome Outcome
	Err     error
}

func (e *OutcomeError) Error() string {
	if e.Outcome != OutcomeUnknown {
		return "redpipe: transaction not applied: " + e.Err.Error()
	}
	return "redpipe: transaction outcome unknown (the connection failed after it was sent): " + e.Err.Error()
}

func (e *OutcomeError) Unwrap() error { return e.Err }

func (e *OutcomeError) Is(target error) bool {
	return target == ErrNotApplied && e.Outcome != OutcomeUnknown
}

// notAppliedTx marks err as the failure of a transaction that certainly
// did not run.
func notAppliedTx(err error) error { return &OutcomeError{Outcome: OutcomeNotApplied, Err: err} }

// txSendError classifies a failure to run a transactional batch.
func txSendError(err error) error {
	var ce *conn.Error
	var ns *notSentError
	switch {
	case errors.As(err, &ns):
		return notAppliedTx(err)
	case errors.As(err, &ce):
		if ce.Unsent {
			return notAppliedTx(err)
		}
		return &OutcomeError{Outcome: OutcomeUnknown, Err: err}
	}
	// A context that ended while waiting: the batch may have run.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &OutcomeError{Outcome: OutcomeUnknown, Err: err}
	}
	return err
}
