package redpipe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redpipe/redpipe/internal/conn"
)

// ErrNil is the error of a command whose reply is nil: GET of a missing key,
// SET ... NX that did not set. It belongs to that command alone: in a
// pipeline it stays in the command's reply and never becomes the error of
// the whole batch. Test for it with errors.Is.
var ErrNil = errors.New("redpipe: nil reply")

// ErrClosed is the error of calls on a Client, Tx or Stream that has been
// closed, and of calls in flight when it was.
var ErrClosed = conn.ErrClosed

// ConnError is a failure of a connection: every call in line on it fails
// with one, and the connection is replaced. Its fields:
//
//   - Op is "read", "write" or "close" for a failure of the connection,
//     and "send" for one call whose context ended before any of its bytes
//     reached the socket, or that found no room in the connection's queue
//     before then (the connection carries on).
//   - Err is the cause: an I/O error, a protocol error, a context's error,
//     ErrClosed.
//   - Unsent is true when none of the call's bytes reached the socket, so
//     the server cannot have run it.
//
// OutcomeOf reads Unsent; most callers need nothing else.
type ConnError = conn.Error

// CrossSlotError is a command, transaction or WATCH refused before
// anything was sent because its keys are in different hash slots of a
// cluster, which a single node cannot serve together. (MGET, MSET, DEL,
// UNLINK, EXISTS and TOUCH outside a transaction are split by slot
// instead; MSETNX is refused.) It matches ErrNotApplied.
type CrossSlotError struct {
	In    string   // "command GET", "command EVAL of the transaction", "transaction", "WATCH", "command GET and those the session watches"
	Keys  []string // keys of different slots (up to a few)
	Slots []int    // the slot of each of Keys
}

func (e *CrossSlotError) Error() string {
	var b strings.Builder
	b.WriteString("redpipe: the keys of the ")
	b.WriteString(e.In)
	b.WriteString(" are in different hash slots (")
	for i, k := range e.Keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q in %d", k, e.Slots[i])
	}
	b.WriteString("), and a cluster serves one slot per command or transaction: give keys used together a common {hash tag}, " +
		"such as {user1}:cart and {user1}:total")
	switch e.In {
	case "transaction":
		b.WriteString(", or use a NoTransaction pipeline")
	case "command MSETNX":
		// MGET, MSET, DEL and the like are split by slot instead.
		b.WriteString(", or use MSET; MSETNX is not split by slot, because it sets all of its keys or none, " +
			"which parts run on different nodes could not promise")
	}
	if strings.HasPrefix(e.In, "command ") && !strings.HasSuffix(e.In, " of the transaction") {
		// In a stream that stops there, what went before it was sent.
		b.WriteString("; the command was not sent")
	} else {
		b.WriteString("; nothing was sent")
	}
	return b.String()
}

func (e *CrossSlotError) Is(target error) bool { return target == ErrNotApplied }

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
	if ci := commandTable[e.Command]; ci != nil && ci.Step > 1 && e.Arity < 0 && e.Got >= -e.Arity {
		want := "a value after each key"
		if ci.Step > 2 {
			want = "groups of " + strconv.Itoa(ci.Step) + " words, each a key and its values"
		}
		return fmt.Sprintf("redpipe: wrong number of arguments for %s: got %d, want %s", e.Command, e.Got-nameWords(e.Command), want)
	}
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
// marshaler's error through Err, except for what would tell the command's
// outcome otherwise (ErrWatch, a MOVED *Error of a call the marshaler
// made): the command was not sent, whatever that error says of its own.
type ArgError struct {
	Command string // upper case command name
	Index   int    // position of the argument, 1 being the first after the name
	Err     error
}

func (e *ArgError) Error() string {
	return fmt.Sprintf("redpipe: argument %d of %s: %v", e.Index, e.Command, e.Err)
}

// Is reaches Err, but for ErrNotApplied and ErrWatch: taken for the
// command's, a marshaler's ErrWatch made Transaction run fn again and
// again for an argument that cannot be encoded.
func (e *ArgError) Is(target error) bool { return causeIs(e.Err, target) }

// As finds what Err is or wraps, but for the errors that tell an outcome
// or a redirection (see ownOutcome).
func (e *ArgError) As(target any) bool { return !ownOutcome(target) && errors.As(e.Err, target) }

// TypeError is returned by a Value accessor, a typed command's method or
// DecodeInfo that cannot read the reply as the type asked for: Int64 on an
// array, or on a bulk string "abc", Bool on a bulk string, Map on an array
// of an odd number of elements. Err, reached with errors.Is and errors.As,
// holds the cause when there is one: a *strconv.NumError for text that is
// not a number of the type asked for, matching strconv.ErrSyntax, or
// strconv.ErrRange for a number beyond its range.
type TypeError struct {
	Want string // what the accessor converts to
	Got  string // what the reply is
	Err  error  // the cause, or nil

	why string // what in the reply stood in the way, for Error
}

func (e *TypeError) Error() string {
	msg := fmt.Sprintf("redpipe: cannot read %s reply as %s", withArticle(e.Got), e.Want)
	switch {
	case e.why != "":
		msg += ": " + e.why
	case e.Err != nil:
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *TypeError) Unwrap() error { return e.Err }

// withArticle puts "a" or "an" before a kind's name ("an array", "a map").
func withArticle(name string) string {
	if name != "" && strings.IndexByte("aeiou", name[0]) >= 0 {
		return "an " + name
	}
	return "a " + name
}

// UsageError is a call the API refuses because of how it is used: a command
// that would break a shared connection, MULTI inside MULTI, use after Close.
type UsageError struct {
	Msg string
	Err error // a sentinel it also matches, such as ErrClosed; may be nil
}

func (e *UsageError) Error() string { return "redpipe: " + e.Msg }

func (e *UsageError) Unwrap() error { return e.Err }

// nilContext is the error of a call given a nil context.Context, or the
// context that Idempotent or WithTxOptions made of a nil one (see
// badContext), refused before anything is sent: the engine reads the
// context's deadline and waits on its Done channel, and would otherwise
// panic deep inside, far from the call that passed it.
func nilContext(ctx context.Context, call string) error {
	if m, ok := ctx.(*fromNilContext); ok {
		return &UsageError{Msg: call + " was given the context that " + m.maker + " made of a nil context.Context: " +
			"pass context.Background() to " + m.maker + ", or context.TODO() where no context is at hand yet"}
	}
	return &UsageError{Msg: call + " was given a nil context.Context: pass context.Background(), " +
		"or context.TODO() where no context is at hand yet"}
}

// badContext reports whether a call must refuse ctx with nilContext: it
// is nil, or what Idempotent or WithTxOptions returned for a nil one.
func badContext(ctx context.Context) bool {
	if ctx == nil {
		return true
	}
	_, ok := ctx.(*fromNilContext)
	return ok
}

// fromNilContext is what Idempotent and WithTxOptions return when given a
// nil context, which context.WithValue would panic on, far from the call
// that passed it, and which they have no error to refuse with. Every call
// of redpipe given it refuses it as it refuses a nil context, with a
// *UsageError naming maker. It is a context cancelled from the start (its
// cause names maker too), so that a context derived from it, which those
// calls cannot tell from another, and whatever else it is handed to, stop
// at once instead of running unbounded: a call given one fails, not sent,
// as the context's error.
type fromNilContext struct {
	context.Context
	maker string // "Idempotent", "WithTxOptions"
}

func madeFromNil(maker string) context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(&UsageError{Msg: maker + " was given a nil context.Context: pass context.Background(), " +
		"or context.TODO() where no context is at hand yet"})
	return &fromNilContext{Context: ctx, maker: maker}
}

func (c *fromNilContext) String() string { return "redpipe." + c.maker + "(nil)" }

// ErrNotApplied is matched (errors.Is) by every error that means a
// transaction was certainly not applied: a watch conflict (ErrWatch), an
// EXECABORT (*ExecAbortError), a transaction refused before it was sent
// (a *CrossSlotError, a wrong number of arguments, a misuse), a
// connection lost before EXEC was sent.
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
// arguments), or, with every command queued, because of the server's
// state at EXEC (out of memory): nothing was applied. Failed names each
// refused command and its cause; it is empty in the second case, where
// the cause is in Err's text, which the error's own text then gives.
type ExecAbortError struct {
	Failed []CommandError
	Err    *Error // the EXECABORT reply itself
}

func (e *ExecAbortError) Error() string {
	var b strings.Builder
	b.WriteString("redpipe: transaction not applied: the server refused it (EXECABORT)")
	if len(e.Failed) == 0 && e.Err != nil {
		// Refused at EXEC itself, every command having been queued (the
		// server ran out of memory meanwhile): its reply holds the only
		// cause.
		b.WriteString(": ")
		b.WriteString(e.Err.Msg)
	}
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
// matches ErrNotApplied, or OutcomeUnknown when the connection failed, or
// the caller's context ended, after EXEC may have reached the server.
type OutcomeError struct {
	Outcome Outcome
	Err     error
}

func (e *OutcomeError) Error() string {
	if e.Outcome != OutcomeUnknown {
		return "redpipe: transaction not applied: " + e.Err.Error()
	}
	var ce *conn.Error
	switch {
	case errors.As(e.Err, &ce):
		return "redpipe: transaction outcome unknown (the connection failed after it was sent): " + e.Err.Error()
	case errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded):
		// The connection is fine: the caller stopped waiting for EXEC's
		// reply, which is read and dropped when it comes.
		return "redpipe: transaction outcome unknown (its context ended after it was sent): " + e.Err.Error()
	}
	return "redpipe: transaction outcome unknown: " + e.Err.Error()
}

func (e *OutcomeError) Unwrap() error { return e.Err }

func (e *OutcomeError) Is(target error) bool {
	return target == ErrNotApplied && e.Outcome != OutcomeUnknown
}

// notAppliedTx marks err as the failure of a transaction that certainly
// did not run, unless it says so already.
func notAppliedTx(err error) error {
	if _, ok := err.(*OutcomeError); ok {
		return err
	}
	return &OutcomeError{Outcome: OutcomeNotApplied, Err: err}
}

// txSendError classifies a failure to run a transactional batch, unless
// it is classified already (a cluster classifies again what a node's
// batch returns). A last attempt not sent after an earlier one that may
// have run (uncertainError) is an unknown outcome, not "not applied".
func txSendError(err error) error {
	var ce *conn.Error
	var ns *notSentError
	var ue *uncertainError
	if _, ok := err.(*OutcomeError); ok {
		return err
	}
	switch {
	case errors.As(err, &ue):
		return &OutcomeError{Outcome: OutcomeUnknown, Err: err}
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

// HandshakeError is a failure to prepare a new connection: a wrong
// password, a missing ACL permission, a database that does not exist.
// Its text says what to change, or, for a command the user's ACL refuses,
// the rule that allows it.
type HandshakeError struct {
	Step string // HELLO, AUTH, CLIENT SETNAME, SELECT, or READONLY on a connection to a cluster's replica
	Err  error

	hint string // what to change, where the server's refusal tells it
}

func (e *HandshakeError) Error() string {
	msg := "redpipe: connection setup failed at " + e.Step + ": " + e.Err.Error()
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// DialError is a failure to open a connection.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("redpipe: dial %s: %v", e.Addr, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// DecodeError is a reply a Decoder could not decode. The command ran: its
// reply came. errors.Is and errors.As reach the Decoder's error, Err,
// except for what would tell the command's outcome otherwise: a Decoder
// that returns an error of redpipe's own (ErrWatch, a *UsageError from a
// call it made, a MOVED *Error) speaks of its own call, and taken for the
// command's it would report not applied what ran, or send it again.
type DecodeError struct {
	Command string
	Err     error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("redpipe: decoding the reply of %s: %v", e.Command, e.Err)
}

// Is reaches Err, but for ErrNotApplied and ErrWatch. Err is not handed
// to errors.Is through an Unwrap method, which would reach it whatever Is
// says.
func (e *DecodeError) Is(target error) bool { return causeIs(e.Err, target) }

// As finds what Err is or wraps, as errors.As does through Unwrap, but for
// the errors that tell an outcome (see OutcomeOf) or a redirection.
func (e *DecodeError) As(target any) bool { return !ownOutcome(target) && errors.As(e.Err, target) }

// causeIs is errors.Is(cause, target) for an error that holds cause but
// must not say, through it, that nothing was applied (ErrNotApplied,
// ErrWatch): cause speaks of its own part or its own call.
func causeIs(cause, target error) bool {
	return !errors.Is(target, ErrNotApplied) && errors.Is(cause, target)
}

// ownOutcome tells a target of errors.As among redpipe's errors that tell
// a command's outcome or a redirection: found in an error of the user's
// code that a DecodeError or an ArgError holds, it would speak of another
// call than the command's.
func ownOutcome(target any) bool {
	switch target.(type) {
	case **Error, **CommandError, **ExecAbortError, **CrossSlotError, **OutcomeError, **TxRetryError,
		**UsageError, **ArityError, **ArgError, **OptionError, **DialError, **HandshakeError,
		**notSentError, **conn.Error, **uncertainError, **nodesError:
		return true
	}
	return false
}

// OptionError is an invalid option or URL.
type OptionError struct {
	Field string // the Options field, or the URL part
	Msg   string
}

func (e *OptionError) Error() string { return "redpipe: option " + e.Field + " " + e.Msg }

// TxRetryError is the error of a Transaction that gave up on watch
// conflicts. It matches ErrWatch.
type TxRetryError struct {
	Attempts int
	Err      error // the last attempt's error
}

func (e *TxRetryError) Error() string {
	return fmt.Sprintf("redpipe: transaction gave up after %s: %v", plural(e.Attempts, "attempt", "attempts"), e.Err)
}

func (e *TxRetryError) Unwrap() error { return e.Err }

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
// A nil error is not an outcome and reports OutcomeUnknown. An error of
// unknown outcome because other commands of a batch, or other masters,
// may have run does not match ErrNotApplied or ErrWatch, whatever its
// cause says of its own part; errors.As still finds that cause.
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
	var nodes *nodesError
	switch {
	case errors.As(err, &ce2):
		var oe *OutcomeError
		var inner *uncertainError
		if errors.As(err, &oe) && oe.Outcome != OutcomeUnknown && errors.As(oe.Err, &inner) && inner == ce2 {
			// A transaction's verdict that nothing of it was applied,
			// over the unknown outcome of what it wraps: a read of fn's
			// that may have run, say, when nothing fn ran could write
			// and no EXEC was sent. errors.Is finds ErrNotApplied in it,
			// and OutcomeOf says the same.
			return oe.Outcome
		}
		return OutcomeUnknown
	case errors.As(err, &nodes):
		// ForEachMaster's: the outcome of its calls as a whole.
		return nodes.outcome
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
		if refusedFirst[se.Prefix] && !strings.Contains(se.Msg, " script: ") || notCompiled(se) || noFunction(se) {
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

// plural writes n and the noun that goes with it: "1 attempt", "2 attempts".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
