package redpipe

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/redpipe/redpipe/internal/resp"
)

// Script is a Lua script run by its SHA1 digest (EVALSHA), so its text
// crosses the network only when the server does not have it yet.
type Script struct {
	src string
	sha string
}

// NewScript prepares a script. It does not contact the server.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Hash is the script's SHA1 digest in hex, as EVALSHA and SCRIPT EXISTS
// take it.
func (s *Script) Hash() string { return s.sha }

// Source is the script's text.
func (s *Script) Source() string { return s.src }

// Doer runs a command given as words: a *Client or a *Tx.
type Doer interface {
	Do(ctx context.Context, args ...any) (Value, error)
}

// Run runs the script with EVALSHA on a Client or a Tx, and with EVAL
// (which also caches it on the server) if the server answers NOSCRIPT.
// An error the script returns itself, NOSCRIPT included, is its reply and
// of unknown outcome: the script is not run again. Only a script that
// returns the server's very words ("NOSCRIPT No matching script...")
// cannot be told from the server, so a script should not. A script that
// does not compile never ran: its error, the server's ("ERR Error
// compiling script (new function): ..."), is not applied. On a Client or
// a Tx, the reply is decoded by the Decoder registered for EVALSHA, also
// when it is EVAL's.
func (s *Script) Run(ctx context.Context, on Doer, keys []string, args ...any) (Value, error) {
	if s == nil || s.sha == "" || isNilDoer(on) {
		// A zero Script has no digest: EVALSHA would be answered NOSCRIPT
		// and EVAL would run an empty script, silently.
		return Value{}, &UsageError{Msg: "Script.Run needs a script made by NewScript and a Client or Tx to run on"}
	}
	if badContext(ctx) {
		if t, ok := on.(*Tx); ok {
			// It refuses the Tx's open Multi, as its EVALSHA would.
			t.nilContextUse("Script.Run", true)
		}
		return Value{}, nilContext(ctx, "Script.Run")
	}
	v, err := on.Do(ctx, s.words("EVALSHA", s.sha, keys, args)...)
	if err == nil {
		err = v.Err()
	}
	if noScript(err) {
		// The server's own NOSCRIPT, not one the script returned after
		// its writes (which markScriptErr has made of unknown outcome):
		// nothing ran, and EVAL runs the script once. Its reply is
		// decoded as EVALSHA's would have been, the command the caller
		// asked for.
		v, err = doAs(ctx, on, "EVALSHA", s.words("EVAL", s.src, keys, args))
		if err == nil {
			err = v.Err()
		}
	}
	if _, isReply := err.(*Error); isReply {
		err = scriptErr(err) // the script's own error may follow its writes
	}
	return v, err
}

// doAs runs args on on, as its Do does, with the reply decoded by the
// Decoder of the command decodeAs on a Client or a Tx. Another Doer runs
// them through its Do.
func doAs(ctx context.Context, on Doer, decodeAs string, args []any) (Value, error) {
	var run func(context.Context, *cmdBuf) (Value, error)
	switch d := on.(type) {
	case *Client:
		run = d.run
	case *Tx:
		run = d.run
	default:
		return on.Do(ctx, args...)
	}
	w := getBuf()
	w.do(args)
	w.decodeAs = decodeAs
	return run(ctx, w)
}

// isNilDoer reports whether on is nil, or a nil *Client or *Tx in an
// interface, which is not nil itself.
func isNilDoer(on Doer) bool {
	switch d := on.(type) {
	case nil:
		return true
	case *Client:
		return d == nil
	case *Tx:
		return d == nil
	}
	return false
}

func (s *Script) words(cmd, body string, keys []string, args []any) []any {
	words := make([]any, 0, 3+len(keys)+len(args))
	words = append(words, cmd, body, len(keys))
	for _, k := range keys {
		words = append(words, k)
	}
	return append(words, args...)
}

// RunScript queues the script. Exec loads it (SCRIPT LOAD, in the same
// write, before MULTI) and runs it with EVALSHA, so a pipeline or
// transaction never fails with NOSCRIPT on a server that has not seen it.
// If the load fails (the script does not compile, say), the rest of the
// batch runs all the same, and the script's reply is NOSCRIPT, not
// applied, with the load's error in its text. A SCRIPT FLUSH that runs
// between the load and the EVALSHA also leaves NOSCRIPT, not applied.
func (p *Pipeline) RunScript(s *Script, keys []string, args ...any) *Pipeline {
	if s == nil || s.sha == "" {
		if p.w.err == nil {
			p.w.errName = "RunScript"
		}
		// A zero Script has no digest: its EVALSHA would fail with
		// NOSCRIPT whatever was loaded.
		p.w.setErr(&UsageError{Msg: "RunScript needs a script made by NewScript, not a nil or zero *Script"}, len(p.w.cmds))
		return p
	}
	p.scripts = append(p.scripts, s)
	p.scriptAt = append(p.scriptAt, len(p.w.cmds))
	p.w.do(s.words("EVALSHA", s.sha, keys, args))
	return p
}

// loadErrs reads the replies of the script loads sent before a batch, one
// per script of scripts in the order of their first appearance, and
// returns the errors of those that failed, or nil if none did. A failed
// load does not stop the batch behind it, which the server runs all the
// same: its replies stand (see blameLoads).
func loadErrs(scripts []*Script, loads []resp.Value) map[*Script]error {
	if !hasErrors(loads) {
		return nil
	}
	var failed map[*Script]error
	seen := make(map[*Script]bool, len(loads))
	k := 0
	for _, s := range scripts {
		if seen[s] || k >= len(loads) {
			continue
		}
		seen[s] = true
		if err := (Value{loads[k]}).Err(); err != nil {
			if failed == nil {
				failed = make(map[*Script]error)
			}
			failed[s] = err
		}
		k++
	}
	return failed
}

// blameLoads gives the reply of each command queued by RunScript whose
// script failed to load (failed, made by loadErrs) and that the server
// then answered NOSCRIPT an error that says why, the load's, while still
// NOSCRIPT: the script did not run. replies are the batch's, one per
// command, or, with cmds, those of the commands cmds gives, a cluster
// node's part.
func (p *Pipeline) blameLoads(failed map[*Script]error, replies []resp.Value, cmds func(j int) int) {
	if len(failed) == 0 {
		return
	}
	for j := range replies {
		cmd := j
		if cmds != nil {
			cmd = cmds(j)
		}
		k := slices.Index(p.scriptAt, cmd)
		if k < 0 {
			continue
		}
		cause := failed[p.scripts[k]]
		if err := (Value{replies[j]}).Err(); cause != nil && noScript(err) {
			replies[j] = madeErrorValue(fmt.Errorf("redpipe: the script did not run: loading it before the %s failed: %v (EVALSHA then found no script: %w)", p.kind(), cause, err))
		}
	}
}
