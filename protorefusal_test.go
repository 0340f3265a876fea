package redpipe

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/redistest"
)

// TestProtocolRefusalNamed: an argument longer than the server's
// proto-max-bulk-len is answered "ERR Protocol error: invalid bulk
// length", after which the server closes the connection. The commands
// sent behind it then fail with an error that gives that reply and what
// likely caused it, not only the reset of the connection that follows;
// in a plain pipeline, in a transaction, whose EXEC never ran, and in a
// Stream. The server is paused for writes while each batch is written, so
// that it reads the whole batch before it refuses it: a server that
// refuses while the client still writes resets the connection under the
// write, and the client never reads the reply.
func TestProtocolRefusalNamed(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	srv.MustDo(t, "CONFIG", "SET", "proto-max-bulk-len", "1mb")
	big := strings.Repeat("x", 1<<20+1)
	t.Cleanup(func() { srv.Do("CLIENT", "UNPAUSE") })

	// held runs send while the server holds writes, and lets them go once
	// the server has read the whole batch into the query buffer of the
	// client sending it.
	held := func(send func() error) error {
		srv.MustDo(t, "CLIENT", "PAUSE", "60000", "WRITE")
		done := make(chan error, 1)
		go func() { done <- send() }()
		waitUntil(t, ctx, "the batch read by the server", func() bool {
			v, err := srv.Do("CLIENT", "LIST")
			if err != nil {
				return false
			}
			s, _ := v.(string)
			for _, line := range strings.Split(s, "\n") {
				for _, f := range strings.Fields(line) {
					if q, ok := strings.CutPrefix(f, "qbuf="); ok {
						if n, _ := strconv.Atoi(q); n > len(big) {
							return true
						}
					}
				}
			}
			return false
		})
		srv.MustDo(t, "CLIENT", "UNPAUSE")
		return <-done
	}
	named := func(what string, err error) {
		t.Helper()
		var ce *ConnError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), `"ERR Protocol error: invalid bulk length"`) ||
			!strings.Contains(err.Error(), "proto-max-bulk-len") {
			t.Errorf("%s = %v; want the connection's failure to give the server's protocol error and its likely cause", what, err)
		}
	}

	var replies []Value
	err := held(func() (err error) {
		replies, err = c.Pipeline(NoTransaction).Set("k", "1").Set("big", big).Get("k").Exec(ctx)
		return err
	})
	named("Exec of a plain pipeline", err)
	if OutcomeOf(err) != OutcomeUnknown {
		t.Errorf("Exec of a plain pipeline: outcome %v; want unknown", OutcomeOf(err))
	}
	if len(replies) == 3 {
		if replies[0].Err() != nil {
			t.Errorf("reply 0 = %v; want OK", replies[0])
		}
		var se *Error
		if !errors.As(replies[1].Err(), &se) || !strings.HasPrefix(se.Error(), "ERR Protocol error") {
			t.Errorf("reply 1 = %v; want the server's protocol error", replies[1])
		}
		named("reply 2", replies[2].Err())
	} else {
		t.Errorf("Exec of a plain pipeline returned %d replies; want 3", len(replies))
	}

	err = held(func() error {
		_, err := c.Pipeline().Set("k", "2").Set("big", big).Exec(ctx)
		return err
	})
	named("Exec of a transaction", err)

	err = held(func() error {
		_, err := c.Stream(ctx, func(int, Value) error { return nil }).Set("k", "3").Set("big", big).Get("k").Close(ctx)
		return err
	})
	named("Close of a Stream", err)

	if v, err := c.Get(ctx, "k"); err != nil || v != "3" {
		t.Errorf("GET k = %q, %v; want 3 (the commands before the refused one ran)", v, err)
	}
}

// TestProtocolRefusalLookalike: a script may return an error in the
// server's words, "ERR Protocol error: ...", and the server goes on: the
// connection's later failure (here its client killed under a BLPOP) is
// not laid to a refusal once another reply has come after it.
func TestProtocolRefusalLookalike(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	v, err := tx.Do(ctx, "EVAL", "return redis.error_reply('ERR Protocol error: a script said so')", "0")
	if err != nil || v.Err() == nil {
		t.Fatalf("EVAL of a script returning an error = %v, %v", v, err)
	}
	id, err := tx.ClientID(ctx) // a reply after the script's
	if err != nil {
		t.Fatal(err)
	}
	err = blpopKilled(t, ctx, srv, tx, id)
	if err == nil || strings.Contains(err.Error(), "refused what was sent") {
		t.Errorf("BLPOP on a killed connection = %v; want its failure, not laid to the script's error", err)
	}
}

// TestProtocolRefusalLookalikeLast: a script's "ERR Protocol error: ..."
// that is the last reply read on its connection is no refusal either: the
// server went on, and the session's connection, killed later (here under
// a BLPOP sent after it), fails with its own cause. Only a call large
// enough to hold an argument over proto-max-bulk-len can be refused so.
func TestProtocolRefusalLookalikeLast(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	tx, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	id, err := tx.ClientID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tx.Do(ctx, "EVAL", "return redis.error_reply('ERR Protocol error: a script said so')", "0")
	if err != nil || v.Err() == nil {
		t.Fatalf("EVAL of a script returning an error = %v, %v", v, err)
	}
	err = blpopKilled(t, ctx, srv, tx, id)
	var pr *conn.ProtocolRefusal
	if err == nil || errors.As(err, &pr) || strings.Contains(err.Error(), "refused what was sent") {
		t.Errorf("BLPOP on a killed connection = %v; want its failure, not laid to the script's error read before it", err)
	}
}

// TestProtocolRefusalNamedWhenFoundIdle: a connection whose server refused
// a batch, answered to the last reply, and closed it, is found closed by
// the next call, before that call is written (PollWait is short, so that
// the call looks at the idle connection first): that call's error gives
// the refusal as the cause too, not an idle timeout or a CLIENT KILL.
func TestProtocolRefusalNamedWhenFoundIdle(t *testing.T) {
	c, srv := newTestClient(t, Options{PollWait: time.Microsecond})
	ctx := ctxT(t)
	srv.MustDo(t, "CONFIG", "SET", "proto-max-bulk-len", "1mb")
	big := strings.Repeat("x", 1<<20+1)
	t.Cleanup(func() { srv.Do("CLIENT", "UNPAUSE") })
	tx, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	id, err := tx.ClientID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := func() string {
		v, err := srv.Do("CLIENT", "LIST", "ID", strconv.FormatInt(id, 10))
		if err != nil {
			t.Fatalf("CLIENT LIST: %v", err)
		}
		s, _ := v.(string)
		return s
	}
	// The server holds writes until it has read the whole batch, so that it
	// refuses it once the client is done writing (see
	// TestProtocolRefusalNamed).
	srv.MustDo(t, "CLIENT", "PAUSE", "60000", "WRITE")
	done := make(chan error, 1)
	go func() {
		_, err := tx.Pipeline(ErrorsInReplies).Set("k", "1").Set("big", big).Exec(ctx)
		done <- err
	}()
	waitUntil(t, ctx, "the batch read by the server", func() bool {
		for _, f := range strings.Fields(client()) {
			if q, ok := strings.CutPrefix(f, "qbuf="); ok {
				if n, _ := strconv.Atoi(q); n > len(big) {
					return true
				}
			}
		}
		return false
	})
	srv.MustDo(t, "CLIENT", "UNPAUSE")
	if err := <-done; err != nil {
		t.Fatalf("Exec of the refused batch = %v; want its replies, the refusal among them", err)
	}
	waitUntil(t, ctx, "the connection closed by the server", func() bool { return client() == "" })
	_, err = tx.Get(ctx, "k")
	var pr *conn.ProtocolRefusal
	if !errors.As(err, &pr) || !strings.Contains(err.Error(), `"ERR Protocol error: invalid bulk length"`) {
		t.Errorf("GET on the connection the server closed after its refusal = %v; want the refusal given as the cause", err)
	}
}

// blpopKilled sends a BLPOP on tx, whose connection has the client id id
// on srv, kills that connection once the BLPOP blocks, and returns the
// BLPOP's error.
func blpopKilled(t *testing.T, ctx context.Context, srv *redistest.Server, tx *Tx, id int64) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := tx.BLPop(ctx, 20, "nosuchlist")
		done <- err
	}()
	waitUntil(t, ctx, "the BLPOP blocked", func() bool {
		v, err := srv.Do("CLIENT", "LIST", "ID", strconv.FormatInt(id, 10))
		s, _ := v.(string)
		return err == nil && strings.Contains(s, "cmd=blpop")
	})
	srv.MustDo(t, "CLIENT", "KILL", "ID", strconv.FormatInt(id, 10))
	return <-done
}
