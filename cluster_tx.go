package redpipe

import (
	"context"
	"errors"
	"fmt"
)

// watch binds a Tx to the owner of the keys' one slot: the Tx is that
// node's own.
func (r *clusterRouter) watch(ctx context.Context, keys []string) (*Tx, error) {
	if len(keys) == 0 {
		// On one node a session may bind first and watch later; on a
		// cluster nothing would tell which master to bind.
		return nil, &UsageError{Msg: "Watch on a cluster needs the keys to watch: their slot chooses the master the session runs on"}
	}
	if err := r.ready(ctx); err != nil {
		return nil, err
	}
	slot, err := slotOfKeys("WATCH", keys)
	if err != nil {
		return nil, err
	}
	node, err := r.route(ctx, slot)
	if err != nil {
		return nil, err
	}
	redirects, tries := 0, 0
	for {
		t, err := node.Watch(ctx, keys...)
		if err != nil && unreachable(ctx, err) {
			if node, err = r.reroute(ctx, slot, &redirects, tries, err); err != nil {
				return nil, err
			}
			continue
		}
		rd, ok := clusterRedirectErr(err, node.opt.Addr)
		if !ok {
			if t != nil {
				t.clustered = true
			}
			return t, err
		}
		if node, err = r.followTx(ctx, rd, slot, &redirects, &tries, err); err != nil {
			return nil, err
		}
	}
}

// refuseFanOut refuses, in a transaction or a session (in) on one master of
// a cluster, a command that the cluster's Client runs on every master and
// combines (DBSIZE, KEYS, FLUSHALL, SCRIPT LOAD): on one master it would
// count, find or do that master's part alone, silently. PING and WAIT
// mean the same on one node.
func refuseFanOut(ci *commandInfo, in string) error {
	if err := oneServerCommand(ci); err != nil {
		return err
	}
	if !fansOut(ci) || ci.Name == "PING" || ci.Name == "WAIT" {
		return nil
	}
	return &UsageError{Msg: ci.Name + " runs on every master of a cluster, and a " + in + " runs on one, where it would see or change that master's part alone: " +
		"run it on the Client, outside the " + in}
}

// clusterTransact is Transaction on a cluster: it runs on the owner of
// the keys' one slot, as on a single node, and when an attempt met MOVED,
// ASK, TRYAGAIN or CLUSTERDOWN (nothing then was applied), or could not
// reach the node, it starts again where the slot now is.
func clusterTransact[T any](ctx context.Context, r *clusterRouter, fn func(*Tx) (T, error), keys []string) (T, []Value, error) {
	var zero T
	if fn == nil {
		return zero, nil, &UsageError{Msg: "Transaction needs a function"}
	}
	if o, ok := ctx.Value(txOptionsKey{}).(TxOptions); ok {
		// Refused here, once: from the node's Transaction, the refusal
		// of what was never sent would pass for a node that could not be
		// reached, and the layout would be fetched again for each
		// redirection allowed before it was returned.
		if err := o.validate("TxOptions."); err != nil {
			return zero, nil, err
		}
	}
	if len(keys) == 0 {
		// As for Watch: nothing would tell which master to run on. Run on
		// any one, the session would see the keys of the others answered
		// MOVED, and a Multi with keys elsewhere would be sent, refused
		// and moved, running fn again each time.
		return zero, nil, &UsageError{Msg: "Transaction on a cluster needs the keys to watch: their slot chooses the master it runs on"}
	}
	if err := r.ready(ctx); err != nil {
		return zero, nil, notRunTx(err)
	}
	slot, err := slotOfKeys("transaction", keys)
	if err != nil {
		return zero, nil, err
	}
	node, err := r.route(ctx, slot)
	if err != nil {
		return zero, nil, notRunTx(err)
	}
	// One call for every node the attempts run on: a Tx kept from an
	// attempt on the slot's last owner is as stale as one of this node.
	var call *txCall // made with the first session (see attemptTx)
	defer func() { call.end() }()
	inner := func(t *Tx) (T, error) {
		t.clustered = true
		return fn(t)
	}
	redirects, tries := 0, 0
	for {
		v, replies, err := transactOn(ctx, node, inner, keys, &call)
		if err != nil && unreachable(ctx, err) {
			// Its WATCH was not sent: nothing of fn's ran on the server.
			if node, err = r.reroute(ctx, slot, &redirects, tries, err); err != nil {
				return zero, nil, notRunTx(err)
			}
			continue
		}
		rd, ok := clusterRedirectErr(err, node.opt.Addr)
		if !ok || !SafeToRetry(err) {
			// Only an attempt that certainly was not applied moves: the
			// redirection of an applied one is a reply of its own (a
			// script's error), and running fn again would apply it twice.
			return v, replies, err
		}
		if node, err = r.followTx(ctx, rd, slot, &redirects, &tries, err); err != nil {
			return zero, nil, notRunTx(err)
		}
	}
}

// notRunTx marks err, why a cluster Transaction found no master to run an
// attempt on, before any or after those that were not applied, as not
// applied, as the Transaction of one node does when it cannot start one:
// errors.Is(err, ErrNotApplied) holds on a cluster too. One that says so
// already is left as it is.
func notRunTx(err error) error {
	if errors.Is(err, ErrNotApplied) {
		return err
	}
	return notAppliedTx(err)
}

// reroute finds the slot's owner again after its node could not be
// reached, as a refresh sees it; it counts as a redirection.
func (r *clusterRouter) reroute(ctx context.Context, slot int, redirects *int, tries int, last error) (*Client, error) {
	*redirects++
	if *redirects > r.opt.MaxRedirects {
		return nil, r.gaveUpAfter(*redirects-1, tries, txWaits, last)
	}
	if err := r.awaitRefresh(ctx); err != nil {
		return nil, fmt.Errorf("%w (after %w)", err, last)
	}
	return r.route(ctx, slot)
}

// txWaits names what the retries of a WATCH session or a cluster
// Transaction wait out, for gaveUpAfter: ASK among them, which would read
// as never followed.
const txWaits = "TRYAGAIN, CLUSTERDOWN or ASK (a WATCH session runs on one node and cannot follow ASK: it waits for the slot's migration to end)"

// followTx is follow for a WATCH session, which cannot send ASKING before
// its commands: ASK waits for the migration to end, as TRYAGAIN does.
func (r *clusterRouter) followTx(ctx context.Context, rd redirect, slot int, redirects, tries *int, last error) (*Client, error) {
	if rd.kind == "MOVED" {
		*redirects++
		if *redirects > r.opt.MaxRedirects {
			return nil, r.gaveUpAfter(*redirects-1, *tries, txWaits, last)
		}
		return r.moved(rd.slot, rd.addr)
	}
	*tries++
	if *tries > maxTryAgain {
		return nil, r.gaveUpAfter(*redirects, *tries-1, txWaits, last)
	}
	rd.kind = "TRYAGAIN"
	node, _, err := r.follow(ctx, rd, slot, *tries)
	if err != nil {
		return nil, fmt.Errorf("%w (after %w)", err, last)
	}
	return node, nil
}

// clusterRedirectErr finds the redirection behind the error of a WATCH
// session or a transaction: a command's own reply, EXEC's, or the cause
// of an EXECABORT.
func clusterRedirectErr(err error, from string) (redirect, bool) {
	if err == nil {
		return redirect{}, false
	}
	var ae *ExecAbortError
	if errors.As(err, &ae) {
		for _, f := range ae.Failed {
			var se *Error
			if errors.As(f.Err, &se) {
				if rd, ok := parseRedirect(se.Msg, from); ok {
					return rd, true
				}
			}
		}
		return redirect{}, false
	}
	var se *Error
	if errors.As(err, &se) {
		return parseRedirect(se.Msg, from)
	}
	return redirect{}, false
}
