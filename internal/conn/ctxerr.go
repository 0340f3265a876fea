package conn

import "context"

// ContextErr is the error of a call that ctx ended: ctx.Err(), with the
// cause the context was ended for (context.WithCancelCause,
// WithTimeoutCause and the like) in its text when there is one, so that
// the caller's error says why, not only that, the call stopped. errors.Is
// finds context.Canceled or context.DeadlineExceeded in it, as in
// ctx.Err(), but not the cause: a cause may be an error of another call,
// such as a transaction's watch conflict that made the caller give up its
// other calls, and reached through this one's error it would tell of this
// call what is true of that one. context.Cause gives the cause itself.
func ContextErr(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return &causedError{err: err, cause: cause.Error()}
	}
	return err
}

// causedError is a context's error with the text of its cause.
type causedError struct {
	err   error
	cause string
}

func (e *causedError) Error() string { return e.err.Error() + " (cause: " + e.cause + ")" }

func (e *causedError) Unwrap() error { return e.err }
