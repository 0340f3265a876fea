package main

import (
	"context"
	"testing"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// TestIsCutKnowsRepliesLeftByTheContext: a plain pipeline on the
// connection callers share, whose context ends once the reply of its
// first ECHO was read (a Proxy passes that reply, then holds the rest
// back), has for its second ECHO an error reply that wraps the context's
// error and no *ConnError, since the connection lives on. The checker
// takes it for a command the cut left unanswered, not for a reply of the
// server's that went to the wrong command; a reply of the server's own is
// no cut.
func TestIsCutKnowsRepliesLeftByTheContext(t *testing.T) {
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr)
	c, err := redpipe.NewClient(redpipe.Options{Addr: px.Addr, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	refused, err := c.Pipeline(redpipe.NoTransaction, redpipe.ErrorsInReplies).Do("NOSUCHCOMMAND").Exec(ctx)
	if err != nil || len(refused) != 1 || refused[0].Err() == nil {
		t.Fatalf("NOSUCHCOMMAND = %v, %v; want its error reply", refused, err)
	}

	px.PassBytes(int64(len("$1\r\na\r\n")), redistest.ServerToClient)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	replies, err := c.Pipeline(redpipe.NoTransaction, redpipe.ErrorsInReplies).Echo("a").Echo("b").Exec(short)
	px.Reset()
	if err == nil || len(replies) != 2 || replies[0].String() != "a" || replies[1].Err() == nil {
		t.Fatalf("pipeline cut by its context after its first reply = %v, %v; want the first echo and an error reply", replies, err)
	}
	if !isCut(replies[1].Err()) {
		t.Errorf("isCut(%v) = false: the reply of a command that the context's end left unanswered taken for the server's", replies[1].Err())
	}
	if isCut(refused[0].Err()) {
		t.Errorf("isCut(%v) = true: the server's own error reply taken for a cut", refused[0].Err())
	}
	if v, err := c.Echo(ctx, "after"); err != nil || v != "after" {
		t.Fatalf("ECHO after the cut = %q, %v; want its own reply", v, err)
	}
}
