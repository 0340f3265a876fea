package redpipe

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestNilContext: every call that takes a context refuses a nil one with a
// *UsageError that says what to pass, before anything is sent, rather than
// panicking deep in the engine with a nil pointer dereference. Transactions
// refused so are not applied; a Multi pipeline stays open with its
// commands, and a Stream's Close refused so leaves the stream for a Close
// with a context.
func TestNilContext(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	testNilContext(t, c, nil, "")
	// Idempotent and WithTxOptions, which have no error to return, make
	// of a nil context one that every call refuses alike, naming them.
	var nilCtx context.Context
	t.Run("Idempotent", func(t *testing.T) { testNilContext(t, c, Idempotent(nilCtx), "Idempotent") })
	t.Run("WithTxOptions", func(t *testing.T) {
		testNilContext(t, c, WithTxOptions(nilCtx, TxOptions{MaxAttempts: 1}), "WithTxOptions")
	})

	// Connect takes a context too.
	if _, err := Connect(nilCtx, "redis://"+srv.Addr); !isNilContextErr(err) {
		t.Errorf("Connect(nil) = %v; want the nil context refused", err)
	}
	if _, err := ConnectCluster(nilCtx, "redis://"+srv.Addr); !isNilContextErr(err) {
		t.Errorf("ConnectCluster(nil) = %v; want the nil context refused", err)
	}
}

// isNilContextErr reports whether err is the refusal of a nil context:
// a *UsageError, not sent, that says what to pass instead.
func isNilContextErr(err error) bool {
	var ue *UsageError
	return errors.As(err, &ue) && OutcomeOf(err) != OutcomeUnknown &&
		strings.Contains(err.Error(), "nil context.Context: pass context.Background()")
}

// testNilContext runs the calls of TestNilContext on c, a Client of one
// server or of a cluster, with nilCtx: nil, as a caller's unset field
// would hold, or what maker (Idempotent, WithTxOptions) made of nil, which
// the refusals name.
func testNilContext(t *testing.T, c *Client, nilCtx context.Context, maker string) {
	ctx := ctxT(t)
	const key = "{nilctx}k"
	if _, err := c.Del(ctx, key); err != nil {
		t.Fatal(err)
	}
	notSet := func(what string) {
		t.Helper()
		if n, err := c.Exists(ctx, key); err != nil || n != 0 {
			t.Errorf("after %s: EXISTS %s = %d, %v; want 0: nothing may be sent", what, key, n, err)
		}
	}
	check := func(what string, err error, tx bool) {
		t.Helper()
		if !isNilContextErr(err) || !strings.Contains(err.Error(), maker) {
			t.Errorf("%s with a nil context = %v; want a *UsageError that says to pass context.Background()", what, err)
		}
		if OutcomeOf(err) == OutcomeUnknown || (tx && !errors.Is(err, ErrNotApplied)) {
			t.Errorf("%s with a nil context: outcome %v, ErrNotApplied %t; want it not sent (not applied for a transaction)",
				what, OutcomeOf(err), errors.Is(err, ErrNotApplied))
		}
		notSet(what)
	}

	_, err := c.Do(nilCtx, "SET", key, "v")
	check("Do", err, false)
	check("Set", c.Set(nilCtx, key, "v"), false)
	_, err = c.Get(nilCtx, key)
	check("Get", err, false)

	p := c.Pipeline(NoTransaction).Set(key, "v")
	_, err = p.Exec(nilCtx)
	check("NoTransaction Pipeline.Exec", err, false)
	if p.Len() != 0 {
		t.Errorf("a Pipeline refused a nil context holds %d commands; want it emptied, as after any Exec", p.Len())
	}
	_, err = c.Pipeline().Set(key, "v").Exec(nilCtx)
	check("Pipeline.Exec", err, true)

	_, err = NewScript("return redis.call('SET', KEYS[1], 'v')").Run(nilCtx, c, []string{key})
	check("Script.Run", err, false)

	_, err = c.Transaction(nilCtx, func(tx *Tx) error {
		tx.Multi().Set(key, "v")
		return nil
	}, key)
	check("Transaction", err, true)
	_, err = TransactionValue(nilCtx, c, func(tx *Tx) (int, error) {
		tx.Multi().Set(key, "v")
		return 1, nil
	}, key)
	check("TransactionValue", err, true)

	_, err = c.Watch(nilCtx, key)
	check("Watch", err, false)

	tx, err := c.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	check("Tx.Set", tx.Set(nilCtx, key, "v"), false)
	_, err = tx.Do(nilCtx, "SET", key, "v")
	check("Tx.Do", err, false)
	check("Tx.Watch", tx.Watch(nilCtx, key), false)
	check("Tx.Unwatch", tx.Unwatch(nilCtx), false)
	_, err = tx.Pipeline().Set(key, "v").Exec(nilCtx)
	check("Tx.Pipeline().Exec", err, false)
	if !tx.Watching() {
		t.Errorf("the Tx stopped watching after calls refused a nil context")
	}
	m := tx.Multi().Set(key, "v")
	_, err = m.Exec(nilCtx)
	check("Tx.Multi().Exec", err, true)
	// The Multi stays open, with its command, for an Exec with a context.
	if replies, err := m.Exec(ctx); err != nil || len(replies) != 1 {
		t.Fatalf("Exec of the Multi after a nil context was refused = %v, %v; want the SET applied", replies, err)
	}
	if got, err := c.Get(ctx, key); err != nil || got != "v" {
		t.Errorf("GET after the Multi ran = %q, %v; want v", got, err)
	}
	if _, err := c.Del(ctx, key); err != nil {
		t.Fatal(err)
	}

	err = c.ForEachMaster(nilCtx, func(context.Context, *Client) error { return nil })
	check("ForEachMaster", err, false)

	// A Stream made with a nil context sends nothing; its Close says why.
	got := 0
	s := c.Stream(nilCtx, func(int, Value) error { got++; return nil })
	s.Set(key, "v")
	check("Stream.Err", s.Err(), false)
	n, err := s.Close(ctx)
	check("Stream.Close of a Stream made with a nil context", err, false)
	if n != 0 || got != 0 {
		t.Errorf("a Stream made with a nil context sent %d commands, handed out %d replies; want none", n, got)
	}
	c.Stream(nilCtx, func(int, Value) error { return nil }).Set(key, "v").Discard()
	notSet("Discard of a Stream made with a nil context")

	// Close with a nil context is refused; the stream waits for a Close
	// with one, which sends what it holds.
	s = c.Stream(ctx, func(int, Value) error { got++; return nil })
	s.Set(key, "v")
	_, err = s.Close(nilCtx)
	check("Stream.Close", err, false)
	if n, err := s.Close(ctx); err != nil || n != 1 || got != 1 {
		t.Errorf("Close with a context after Close(nil) = %d, %v with %d replies; want 1 command sent and answered", n, err, got)
	}
	if v, err := c.Get(ctx, key); err != nil || v != "v" {
		t.Errorf("GET after the Stream closed = %q, %v; want v", v, err)
	}
}

// TestNilContextRefusesOpenMulti: a call on a Tx given a nil context while
// its Multi pipeline is open refuses that transaction, as every call the
// Tx is asked to run outside it does: the transaction was meant to include
// it, and applying it without would be applying half of it.
func TestNilContextRefusesOpenMulti(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	var nilCtx context.Context
	const key = "nilctx:multi"
	unset := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrNotApplied) {
			t.Errorf("%s: Exec of the open Multi = %v; want it refused, not applied", what, err)
		}
		if n, err := c.Exists(ctx, key); err != nil || n != 0 {
			t.Errorf("%s: EXISTS %s = %d, %v; want 0: the transaction is refused", what, key, n, err)
		}
	}
	for _, tc := range []struct {
		name string
		call func(tx *Tx) error
	}{
		{"Tx.Get", func(tx *Tx) error { _, err := tx.Get(nilCtx, key); return err }},
		{"Tx.Do", func(tx *Tx) error { _, err := tx.Do(nilCtx, "GET", key); return err }},
		{"Tx.Pipeline().Exec", func(tx *Tx) error { _, err := tx.Pipeline().Get(key).Exec(nilCtx); return err }},
		{"Script.Run on a Tx", func(tx *Tx) error {
			_, err := NewScript("return redis.call('GET', KEYS[1])").Run(nilCtx, tx, []string{key})
			return err
		}},
	} {
		tx, err := c.Watch(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		m := tx.Multi().Set(key, "v")
		if err := tc.call(tx); !isNilContextErr(err) {
			t.Errorf("%s with a nil context while a Multi is open = %v; want the nil context refused", tc.name, err)
		}
		_, err = m.Exec(ctx)
		unset(tc.name, err)
		tx.Close()

		_, err = c.Transaction(ctx, func(tx *Tx) error {
			tx.Multi().Set(key, "v")
			tc.call(tx) // its error left unchecked
			return nil
		}, key)
		unset("Transaction whose fn ran "+tc.name, err)
	}
}

// TestNilContextOnStaleTx: the Tx of an earlier attempt of a Transaction,
// or a pipeline of it, used with a nil context fails the Transaction, not
// applied, as its use with a context does (see
// TestTransactionStaleTxFromEarlierAttempt), even when fn drops the
// refusal.
func TestNilContextOnStaleTx(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	var nilCtx context.Context
	uses := map[string]func(stale *Tx, staleMulti *Pipeline, key string){
		"Get": func(stale *Tx, _ *Pipeline, key string) { stale.Get(nilCtx, key) },
		"Do":  func(stale *Tx, _ *Pipeline, key string) { stale.Do(nilCtx, "GET", key) },
		"Pipeline": func(stale *Tx, _ *Pipeline, key string) {
			stale.Pipeline().Get(key).Exec(nilCtx)
		},
		"Multi pipeline Exec": func(_ *Tx, staleMulti *Pipeline, _ string) { staleMulti.Exec(nilCtx) },
		"Script.Run": func(stale *Tx, _ *Pipeline, key string) {
			NewScript("return redis.call('GET', KEYS[1])").Run(nilCtx, stale, []string{key})
		},
	}
	for name, use := range uses {
		key := "nilctx:stale:" + name
		var stale *Tx
		var staleMulti *Pipeline
		attempts := 0
		replies, err := c.Transaction(ctx, func(tx *Tx) error {
			attempts++
			if attempts == 1 {
				stale, staleMulti = tx, tx.Multi().Set(key, "first")
				srv.MustDo(t, "SET", key, "other") // between WATCH and EXEC: a retry
				return nil
			}
			use(stale, staleMulti, key) // its error dropped
			tx.Multi().Set(key, "mine")
			return nil
		}, key)
		if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), "earlier attempt") {
			t.Errorf("%s with a nil context on the Tx of an earlier attempt: Transaction = %v, %v; want the misuse, not applied", name, replies, err)
		}
		if v := srv.MustDo(t, "GET", key); v != "other" || attempts != 2 {
			t.Errorf("%s with a nil context on the Tx of an earlier attempt: %s = %v after %d attempts; want other, after 2", name, key, v, attempts)
		}
	}
}
