package redpipe

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestNilMadeContextDerived: a context derived from what Idempotent or
// WithTxOptions made of a nil one is done from the start, so a call given
// it fails at once, not sent, with a text that names the maker and says
// what to pass, rather than running under a context nothing can end.
func TestNilMadeContextDerived(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	var nilCtx context.Context
	const key = "nilarg:derived"
	for _, maker := range []string{"Idempotent", "WithTxOptions"} {
		base := Idempotent(nilCtx)
		if maker == "WithTxOptions" {
			base = WithTxOptions(nilCtx, TxOptions{})
		}
		derived, cancel := context.WithCancel(base)
		err := c.Set(derived, key, "v")
		cancel()
		if !errors.Is(err, context.Canceled) || OutcomeOf(err) != OutcomeNotSent ||
			!strings.Contains(err.Error(), maker+" was given a nil context.Context: pass context.Background()") {
			t.Errorf("SET under a context derived from %s(nil) = %v (outcome %v); want it not sent, naming %s and what to pass",
				maker, err, OutcomeOf(err), maker)
		}
		if n, err := c.Exists(ctx, key); err != nil || n != 0 {
			t.Errorf("after SET under a context derived from %s(nil): EXISTS = %d, %v; want 0", maker, n, err)
		}
	}
}

// TestTransactionNilArguments: a Transaction given no function, or
// TransactionValue given no Client, is refused, not applied, with a
// *UsageError that says what to pass, rather than panicking.
func TestTransactionNilArguments(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	check := func(what, want string, err error) {
		t.Helper()
		var ue *UsageError
		if !errors.As(err, &ue) || !errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %v; want a *UsageError, not applied, that says %q", what, err, want)
		}
	}
	_, err := c.Transaction(ctx, nil, "k")
	check("Transaction with a nil function", "pass a func(*Tx) error", err)
	_, err = TransactionValue[int](ctx, c, nil, "k")
	check("TransactionValue with a nil function", "pass a func(*Tx) (T, error)", err)
	_, err = TransactionValue(ctx, nil, func(*Tx) (int, error) { return 1, nil }, "k")
	check("TransactionValue with a nil *Client", "pass the Client", err)
}

// TestForEachMasterNilFunction: ForEachMaster given no function is
// refused with a *UsageError that says what to pass.
func TestForEachMasterNilFunction(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	err := c.ForEachMaster(ctxT(t), nil)
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "pass a func(ctx context.Context, node *Client) error") {
		t.Errorf("ForEachMaster(ctx, nil) = %v; want a *UsageError that says what to pass", err)
	}
}
