package redpipe

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/redpipe/redpipe/internal/resp"
)

// run routes one command: by the slot of its keys, or to every master for
// a command whose request_policy says so, or split by slot (MGET, DEL...),
// following redirections.
func (r *clusterRouter) run(ctx context.Context, w *cmdBuf, ci *commandInfo) (Value, error) {
	if err := oneServerCommand(ci); err != nil {
		return Value{}, err
	}
	if err := r.ready(ctx); err != nil {
		return Value{}, err
	}
	switch ci.RequestPolicy {
	case requestAllShards, requestAllNodes:
		v, err := r.fanOut(ctx, w, ci)
		return Value{v}, err
	case requestMultiShard:
		if splittable(ci) {
			slot, shared := sharedSlot(ci, w.buf)
			if !shared {
				return r.runSplit(ctx, w, ci)
			}
			v, err := r.runSlot(ctx, w, ci, slot)
			return Value{v}, err
		}
	}
	_, slot, known := scanCommand(ci, w.buf, 0, true)
	if !known {
		var err error
		if slot, err = cmdSlot(ci, w.buf); err != nil {
			return Value{}, err
		}
	}
	v, err := r.runSlot(ctx, w, ci, slot)
	return Value{v}, err
}

// oneServerCommand refuses, on a cluster Client, a command whose reply
// describes one server in a way the client cannot combine over the
// masters (INFO, MEMORY STATS, LATENCY ...: response policy "special"), or
// that walks one server's keys with a cursor (SCAN: request policy
// "special"). Sent to one master, or to each with one reply kept, it would
// tell of a part of the cluster as if it were the whole.
func oneServerCommand(ci *commandInfo) error {
	if ci.RequestPolicy != requestSpecial && ci.ResponsePolicy != responseSpecial {
		return nil
	}
	return &UsageError{Msg: ci.Name + " describes or walks one server, and a cluster has several: " +
		"run it on each master with ForEachMaster"}
}

// runSlot sends one command to the owner of slot, or a read to one of its
// replicas, and follows MOVED, ASK, TRYAGAIN and CLUSTERDOWN, and a node
// that cannot be reached.
func (r *clusterRouter) runSlot(ctx context.Context, w *cmdBuf, ci *commandInfo, slot int) (resp.Value, error) {
	node, onReplica, err := r.routeRead(ctx, slot, ci.has(flagReadonly) && !w.blocks(0))
	if err != nil {
		return resp.Value{}, err
	}
	asking := false
	var last error
	redirects, tries := 0, 0
	for {
		v, err := r.send1(ctx, node, w, ci, asking)
		asking = false
		if onReplica {
			// Whatever comes next goes to a master.
			onReplica = false
			if r.offReplica(ctx, node, v, err, ci.Name) {
				if node, err = r.route(ctx, slot); err != nil {
					return resp.Value{}, err
				}
				continue
			}
		}
		rd, isRedirect := redirectOfCmd(&v, node.opt.Addr, ci.Name, slot)
		switch {
		case err != nil && unreachable(ctx, err):
			last = err
			redirects++
			if redirects > r.opt.MaxRedirects {
				return resp.Value{}, r.gaveUp(redirects-1, tries, last)
			}
			if err := r.awaitRefresh(ctx); err != nil {
				return resp.Value{}, fmt.Errorf("%w (after %w)", err, last)
			}
			if node, err = r.route(ctx, slot); err != nil {
				return resp.Value{}, err
			}
			continue
		case err != nil:
			return resp.Value{}, err
		case !isRedirect:
			if isReadonly(v) {
				// A master refuses no write with READONLY: a failover
				// made the node a replica, which answers a keyed
				// command with MOVED but a keyless one (a script with
				// no keys, sent to any master) with this. The reply
				// stands, as a script may have run before its write
				// was refused, but the next call must not go there.
				r.triggerRefresh()
			}
			return v, nil
		}
		last = newError(v.Str)
		if rd.kind == "MOVED" || rd.kind == "ASK" {
			redirects++
			if redirects > r.opt.MaxRedirects {
				return resp.Value{}, r.gaveUp(redirects-1, tries, last)
			}
		} else {
			tries++
			if tries > maxTryAgain {
				return resp.Value{}, r.gaveUp(redirects, tries-1, last)
			}
		}
		node, asking, err = r.follow(ctx, rd, slot, tries)
		if err != nil {
			return resp.Value{}, fmt.Errorf("%w (after %w)", err, last)
		}
	}
}

// gaveUp is the error of a call that stopped following redirections,
// last being the last it got, which it did not follow. redirects and
// tries are those it followed, each named next to the limit that bounds
// it: redirections (MOVED, ASK, a node not reached, READONLY from a
// former master) by ClusterOptions.MaxRedirects, and retries after
// TRYAGAIN or CLUSTERDOWN by maxTryAgain. Added up, they would read as
// if MaxRedirects had been exceeded.
func (r *clusterRouter) gaveUp(redirects, tries int, last error) error {
	return r.gaveUpAfter(redirects, tries, "TRYAGAIN or CLUSTERDOWN", last)
}

// gaveUpAfter is gaveUp for a call whose retries, bounded by maxTryAgain,
// followed the replies waited names.
func (r *clusterRouter) gaveUpAfter(redirects, tries int, waited string, last error) error {
	var what string
	if redirects > 0 || tries == 0 {
		what = fmt.Sprintf("%s (MaxRedirects %d)", plural(redirects, "redirection", "redirections"), r.opt.MaxRedirects)
	}
	if tries > 0 {
		if what != "" {
			what += " and "
		}
		what += fmt.Sprintf("%s after %s (at most %d)", plural(tries, "retry", "retries"), waited, maxTryAgain)
	}
	return fmt.Errorf("redpipe: cluster: gave up after %s: %w", what, last)
}

// send1 runs one command on a node client, by that client's retry rules,
// with ASKING before it on the same connection when asking.
func (r *clusterRouter) send1(ctx context.Context, node *Client, w *cmdBuf, ci *commandInfo, asking bool) (resp.Value, error) {
	readonly := ci.has(flagReadonly)
	if !asking {
		var v Value
		err := node.retry(ctx, readonly, func() (err error) {
			v, err = node.runOnce(ctx, w)
			return err
		})
		return v.v, err
	}
	buf := make([]byte, 0, len(askingCmd)+len(w.buf))
	buf = append(append(buf, askingCmd...), w.buf...)
	traits := batchTraits{readonly: readonly, blocking: w.blocks(0), grace: w.grace}
	var out []resp.Value
	err := node.retry(ctx, readonly, func() (err error) {
		out, _, err = node.sendBatch(ctx, buf, 2, traits)
		return err
	})
	if err != nil {
		return resp.Value{}, err
	}
	if _, redirected := redirectOf(out[1], node.opt.Addr); redirected {
		if err := askingRefused(out[0], node.opt.Addr, node.opt.Username); err != nil {
			return resp.Value{}, err
		}
	}
	return out[1], nil
}

// fanOut sends a command to every master at once and combines their
// replies by its response_policy. A command for all nodes (SCRIPT LOAD,
// CONFIG SET) goes to the masters only for now. A master that cannot be
// reached (one that died), or that refuses the command with READONLY (a
// master no more: a failover made it a replica, which ran nothing of it),
// sends the call through a refresh, after which it goes to the masters
// that no attempt has reached: the replica promoted in that node's place.
// A node that refused it and is still a master after the refresh keeps
// its refusal as its reply.
//
// A replica refuses only writes: one that a graceful failover made of a
// master answers DBSIZE, KEYS or SCRIPT LOAD from, or into, its own data
// set, while the replica promoted in its place would never get the
// command. So each master is asked for its ROLE along with the command,
// on the same connection, and one that says it is a replica now counts as
// not reached. A node that refuses ROLE (an ACL without it) is taken at
// the layout's word.
func (r *clusterRouter) fanOut(ctx context.Context, w *cmdBuf, ci *commandInfo) (resp.Value, error) {
	if err := r.everyMasterAddressed(ctx); err != nil {
		return resp.Value{}, err
	}
	var replies []resp.Value
	answered := map[*Client]bool{} // the masters it reached: never sent to twice
	asReplica := false             // some node ran it as a replica: it ran somewhere
	for redirects := 0; ; redirects++ {
		r.mu.RLock()
		var masters []*Client
		for _, m := range r.masters {
			if !answered[m] {
				masters = append(masters, m)
			}
		}
		r.mu.RUnlock()
		got := make([]resp.Value, len(masters))
		errs := make([]error, len(masters))
		replica := make([]bool, len(masters))
		var wg sync.WaitGroup
		for i, node := range masters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], replica[i], errs[i] = r.sendToMaster(ctx, node, w, ci)
			}()
		}
		wg.Wait()
		var unreached error
		left := 0         // masters not reached
		var demoted []int // the masters that refused it as a replica does
		for i, err := range errs {
			switch {
			case err == nil && replica[i]:
				// What it ran, it ran as a replica, which refuses any
				// write: sent again, to it or to the replica promoted in
				// its place, it is not applied twice.
				unreached = fmt.Errorf("redpipe: %s is a replica now, which the cluster layout lists as a master: "+
					"a failover is under way; try again once the cluster has settled", masters[i].opt.Addr)
				left++
				asReplica = true
			case err == nil && isReadonly(got[i]):
				answered[masters[i]] = true
				demoted = append(demoted, i)
			case err == nil:
				answered[masters[i]] = true
				replies = append(replies, got[i])
			case unreachable(ctx, err):
				unreached = err
				left++
			case len(replies) > 0 || asReplica || ranElsewhere(i, got, replica, errs):
				// Other masters may have run it.
				return resp.Value{}, &uncertainError{msg: "redpipe: " + ci.Name + " failed on " + masters[i].opt.Addr, err: err}
			default:
				return resp.Value{}, err
			}
		}
		if unreached == nil && demoted == nil {
			break
		}
		// refused gives the masters that refused it their refusals as
		// replies, which they keep unless the layout says they are
		// masters no more.
		refused := func() {
			for _, i := range demoted {
				replies = append(replies, got[i])
			}
		}
		fail := func(err error) (resp.Value, error) {
			refused()
			if len(replies) > 0 {
				return resp.Value{}, reachedSome(ci, len(replies), len(replies)+left, err)
			}
			if asReplica {
				// What a replica takes (a read, CONFIG SET of its own
				// settings) it ran.
				return resp.Value{}, &uncertainError{msg: "redpipe: " + ci.Name + " ran on a node that said it was a replica, and reached no master", err: err}
			}
			return resp.Value{}, err
		}
		if redirects >= r.opt.MaxRedirects {
			if unreached == nil {
				refused()
				break
			}
			return fail(r.gaveUp(redirects, 0, unreached))
		}
		if err := r.awaitRefresh(ctx); err != nil {
			if unreached == nil {
				refused()
				break
			}
			return fail(fmt.Errorf("%w (after %w)", err, unreached))
		}
		r.mu.RLock()
		for _, i := range demoted {
			if slices.Contains(r.masters, masters[i]) {
				replies = append(replies, got[i])
			}
		}
		r.mu.RUnlock()
	}
	if err := partlyFailed(ci, replies); err != nil {
		return resp.Value{}, err
	}
	return combine(ci.ResponsePolicy, replies), nil
}

// roleCmd asks a node whether it is a master, ahead of a command for
// every master (see fanOut).
var roleCmd = encodeWords("ROLE")

// ranElsewhere tells, of a command for every master that failed on
// masters[i], whether some other master may have run it: one answered
// (a READONLY refusal aside), or failed with an outcome that is unknown.
// When none may have, the failure alone tells the outcome: a closed
// Client fails every master with ErrClosed before any is sent anything.
func ranElsewhere(i int, got []resp.Value, replica []bool, errs []error) bool {
	for j, err := range errs {
		switch {
		case j == i:
		case err == nil && (replica[j] || !isReadonly(got[j])):
			return true
		case err != nil && !SafeToRetry(err):
			return true
		}
	}
	return false
}

// sendToMaster runs a command for every master on node, by its retry
// rules, after ROLE on the same connection, and tells whether the node
// said it was a replica when it ran the command.
func (r *clusterRouter) sendToMaster(ctx context.Context, node *Client, w *cmdBuf, ci *commandInfo) (v resp.Value, replica bool, err error) {
	readonly := ci.has(flagReadonly)
	buf := make([]byte, 0, len(roleCmd)+len(w.buf))
	buf = append(append(buf, roleCmd...), w.buf...)
	traits := batchTraits{readonly: readonly, blocking: w.blocks(0), grace: w.grace}
	var out []resp.Value
	err = node.retry(ctx, readonly, func() (err error) {
		out, _, err = node.sendBatch(ctx, buf, 2, traits)
		return err
	})
	if err != nil {
		return resp.Value{}, false, err
	}
	return out[1], isReplicaRole(out[0]), nil
}

// replicaNow is the reply of a command for every master that the node at
// addr, listed as a master, ran as a replica: a READONLY refusal, as a
// replica gives a write, so that the command goes where a refusal sends
// it, to the master that took the node's place (see readyAgain). Kept as
// the reply, when the layout still lists the node as a master, it is of
// unknown outcome: the replica ran what it takes (a read, or a setting
// of its own, CONFIG SET), if nothing of the shard's data.
func replicaNow(addr string) resp.Value {
	return madeErrorValue(&uncertainError{
		msg: "READONLY " + addr + " ran it as a replica, which the cluster layout still lists as a master",
		err: errors.New("a failover is under way; try again once the cluster has settled"),
	})
}

// isReplicaRole tells a reply of ROLE that names a role other than
// master. An error (ROLE refused by an ACL, or renamed) tells nothing.
func isReplicaRole(v resp.Value) bool {
	if v.Kind != resp.Array || len(v.Elems) == 0 {
		return false
	}
	role := v.Elems[0]
	return (role.Kind == resp.BulkString || role.Kind == resp.SimpleString) && role.Str != "master"
}

// isReadonly tells the READONLY refusal of a replica, which runs nothing
// of the command: given to a command for every master, it says the node
// is a master no more.
func isReadonly(v resp.Value) bool {
	return isErrValue(v) && newError(v.Str).Prefix == "READONLY"
}

// reachedSome is the error of a command for every master that reached
// reached of all of them and not the others, for cause: it may have run
// on those it reached, whatever cause says of the rest.
func reachedSome(ci *commandInfo, reached, all int, cause error) error {
	return &uncertainError{msg: fmt.Sprintf("redpipe: %s reached %d of %d masters only", ci.Name, reached, all), err: cause}
}

// fanOutReply makes the reply of a command for every master, in a
// pipeline or a stream, from the masters' replies, vs: combined by its
// response policy, or, when some masters refused a write that the others
// ran (see partlyFailed), an error reply of unknown outcome that wraps the
// first refusal, which alone would read as not applied.
func fanOutReply(ci *commandInfo, vs []resp.Value) resp.Value {
	if err := partlyFailed(ci, vs); err != nil {
		return madeErrorValue(err)
	}
	return combine(ci.ResponsePolicy, vs)
}

// partlyFailed tells of a command that may write (FLUSHALL, FUNCTION LOAD,
// CONFIG SET) refused by some masters and run by others: the refusal
// alone (OOM, READONLY) would read as not applied, and a retry would meet
// the masters where it ran.
func partlyFailed(ci *commandInfo, replies []resp.Value) error {
	if !mayWrite(ci) || ci.ResponsePolicy == responseOneSucceeded {
		// Nothing to undo, or refusals are the rule (SCRIPT KILL: the
		// masters running no script answer NOTBUSY).
		return nil
	}
	failed, first := 0, -1
	for i, v := range replies {
		if isErrValue(v) {
			failed++
			if first < 0 {
				first = i
			}
		}
	}
	if failed == 0 || failed == len(replies) {
		return nil
	}
	return &uncertainError{msg: fmt.Sprintf("redpipe: %s was refused by %d of %d masters and ran on the others", ci.Name, failed, len(replies)),
		err: Value{replies[first]}.Err()}
}

// combine makes one reply of those of several nodes, by a response
// policy.
func combine(p responsePolicy, vs []resp.Value) resp.Value {
	if len(vs) == 0 {
		return resp.Value{Kind: resp.Null}
	}
	firstErr := -1
	for i := range vs {
		if isErrValue(vs[i]) {
			firstErr = i
			break
		}
	}
	switch p {
	case responseOneSucceeded:
		for _, v := range vs {
			if !isErrValue(v) {
				return v
			}
		}
		return vs[0]
	case responseAllSucceeded, responseSpecial:
		if firstErr >= 0 {
			return vs[firstErr]
		}
		return vs[0]
	case responseAggSum, responseAggMin, responseAggMax, responseAggLogicalAnd, responseAggLogicalOr:
		if firstErr >= 0 {
			return vs[firstErr]
		}
		return aggregate(p, vs)
	}
	// The default for a command without keys: the arrays concatenated
	// (KEYS), or one reply that is not nil (RANDOMKEY), taken at random
	// among those, so that an empty master does not hide the others.
	if firstErr >= 0 {
		return vs[firstErr]
	}
	var all []resp.Value
	for _, v := range vs {
		if v.Kind != resp.Array && v.Kind != resp.Set {
			var some []resp.Value
			for _, v := range vs {
				if v.Kind != resp.Null {
					some = append(some, v)
				}
			}
			if len(some) == 0 {
				return vs[0]
			}
			return some[rand.N(len(some))]
		}
		all = append(all, v.Elems...)
	}
	return resp.Value{Kind: vs[0].Kind, Elems: all}
}

func isErrValue(v resp.Value) bool { return v.Kind == resp.Error || v.Kind == resp.BulkError }

// aggregate combines integer replies, or arrays of them element by
// element.
func aggregate(p responsePolicy, vs []resp.Value) resp.Value {
	out := vs[0]
	if out.Kind == resp.Array {
		out.Elems = append([]resp.Value(nil), out.Elems...)
	}
	op := func(a, b int64) int64 {
		switch p {
		case responseAggMin:
			return min(a, b)
		case responseAggMax:
			return max(a, b)
		case responseAggLogicalAnd:
			if a != 0 && b != 0 {
				return 1
			}
			return 0
		case responseAggLogicalOr:
			if a != 0 || b != 0 {
				return 1
			}
			return 0
		}
		return a + b
	}
	for _, v := range vs[1:] {
		switch {
		case out.Kind == resp.Integer && v.Kind == resp.Integer:
			out.Int = op(out.Int, v.Int)
		case out.Kind == resp.Array && v.Kind == resp.Array && len(v.Elems) == len(out.Elems):
			for i := range out.Elems {
				if out.Elems[i].Kind == resp.Integer && v.Elems[i].Kind == resp.Integer {
					out.Elems[i].Int = op(out.Elems[i].Int, v.Elems[i].Int)
				}
			}
		}
	}
	return out
}
