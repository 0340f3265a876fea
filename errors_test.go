package redpipe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/redistest"
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

// TestTxUnknownOutcomeSaysWhy: a transaction of unknown outcome says why
// it is unknown. Its caller stopped waiting for EXEC's reply (the proxy
// holds it back): the error says the context ended, not that the
// connection failed, which it did not (the next call on it gets its own
// reply). Its connection was cut after EXEC reached the server: the error
// says the connection failed. Both transactions ran, as the server shows.
func TestTxUnknownOutcomeSaysWhy(t *testing.T) {
	c, px, srv := proxiedClient(t, Options{})
	ctx := ctxT(t)
	if err := c.Set(ctx, "warm", "w"); err != nil {
		t.Fatal(err)
	}
	px.Stall(redistest.ServerToClient, true)
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := c.Pipeline().Set("a", "1").Exec(tctx)
	cancel()
	px.Reset()
	if OutcomeOf(err) != OutcomeUnknown || !strings.Contains(err.Error(), "transaction outcome unknown (its context ended after it was sent)") ||
		strings.Contains(err.Error(), "connection failed") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("transaction whose context ended while its reply was due: err = %v, of outcome %v; want unknown, for its context", err, OutcomeOf(err))
	}
	if v, err := c.Get(ctx, "warm"); err != nil || v != "w" {
		t.Fatalf("GET on the same connection after = %q, %v; want w", v, err)
	}

	err = cutWhileInFlight(t, px, srv, "exec", func() error {
		_, err := c.Pipeline().Set("b", "1").Exec(ctx)
		return err
	})
	if OutcomeOf(err) != OutcomeUnknown || !strings.Contains(err.Error(), "transaction outcome unknown (the connection failed after it was sent)") {
		t.Errorf("transaction whose connection was cut: err = %v, of outcome %v; want unknown, for the connection", err, OutcomeOf(err))
	}
	for _, k := range []string{"a", "b"} {
		if v, _ := srv.Do("GET", k); v != "1" {
			t.Errorf("%s = %v; want 1, set by the transaction", k, v)
		}
	}
}
