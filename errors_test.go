package redpipe

import (
	"errors"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/internal/conn"
)

// TestTxErrorsClassifiedOnce: a transaction's failure is classified once,
// however many layers pass it on (a cluster classifies again what a
// node's batch returns): the error is the same, and its message says
// "transaction not applied" or "outcome unknown" once. A last attempt
// not sent after one that may have run is an unknown outcome, never "not
// applied".
func TestTxErrorsClassifiedOnce(t *testing.T) {
	unsent := txSendError(&conn.Error{Op: "write", Err: ErrClosed, Unsent: true})
	sent := txSendError(&conn.Error{Op: "read", Err: ErrClosed})
	refused := notAppliedTx(notSent(ErrClosed))
	// The last attempt was not sent, but an earlier one may have run.
	uncertain := txSendError(&uncertainError{msg: "redpipe: an earlier attempt may have run (lost)", err: notSent(ErrClosed)})
	for _, tc := range []struct {
		name    string
		err     error
		outcome Outcome
		says    string
	}{
		{"unsent", unsent, OutcomeNotApplied, "transaction not applied"},
		{"sent", sent, OutcomeUnknown, "transaction outcome unknown"},
		{"refused", refused, OutcomeNotApplied, "transaction not applied"},
		{"uncertain", uncertain, OutcomeUnknown, "transaction outcome unknown"},
	} {
		if tc.outcome == OutcomeUnknown && OutcomeOf(tc.err) != OutcomeUnknown {
			t.Fatalf("%s: %v: outcome %v, want unknown", tc.name, tc.err, OutcomeOf(tc.err))
		}
		for _, again := range []func(error) error{txSendError, notAppliedTx} {
			err := again(tc.err)
			if err != tc.err {
				t.Fatalf("%s: classified again: %v, want %v", tc.name, err, tc.err)
			}
			if errors.Is(err, ErrNotApplied) != (tc.outcome == OutcomeNotApplied) || !errors.Is(err, ErrClosed) {
				t.Fatalf("%s: %v: matches ErrNotApplied %v, want %v, and ErrClosed", tc.name, err, errors.Is(err, ErrNotApplied), tc.outcome == OutcomeNotApplied)
			}
			if n := strings.Count(err.Error(), "transaction"); n != 1 || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%s: %q says \"transaction\" %d times, want once, as %q", tc.name, err, n, tc.says)
			}
		}
	}
}
