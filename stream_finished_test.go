package redpipe

import (
	"errors"
	"strings"
	"testing"
)

// TestStreamUsedAfterDiscard: Discard finishes a Stream as Close does, and
// the errors of its use afterwards say so, in the singular for one
// command: they named Close alone, which the caller never called, and
// counted "1 commands".
func TestStreamUsedAfterDiscard(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	s := c.Stream(ctx, func(int, Value) error { return nil })
	s.Set("a", 1)
	s.Discard()
	s.Set("b", 1)
	err := s.Err()
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "1 command queued on the Stream after Close or Discard was dropped") {
		t.Errorf("Err after Discard and one command = %v; want it to say that 1 command queued after Close or Discard was dropped", err)
	}
	s.Set("c", 1)
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "2 commands queued") {
		t.Errorf("Err after Discard and two commands = %v; want it to count 2 commands", err)
	}
	n, err := s.Close(ctx)
	if n != 0 || !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "Close or Discard already finished") {
		t.Errorf("Close after Discard = %d, %v; want ErrClosed, saying Close or Discard finished the Stream", n, err)
	}
	if k, err := c.Exists(ctx, "a", "b", "c"); err != nil || k != 0 {
		t.Errorf("EXISTS a b c = %d, %v; want 0: nothing of a discarded Stream is sent", k, err)
	}
}
