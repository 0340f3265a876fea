package redpipe

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Argument types with their own encodings, each method giving away which
// one was used.
type (
	binaryArg   struct{ b []byte }
	textArg     struct{ s string }
	stringerArg int
	// binaryTextArg has both marshalers, textStringerArg MarshalText and
	// String: the first of MarshalBinary, MarshalText, String is used.
	binaryTextArg   struct{}
	textStringerArg struct{}
	// failingArg's MarshalBinary fails.
	failingArg struct{}
	// wordArg is a subcommand with a String method.
	wordArg string
)

var errMarshal = errors.New("cannot marshal this one")

func (a binaryArg) MarshalBinary() ([]byte, error)   { return a.b, nil }
func (a textArg) MarshalText() ([]byte, error)       { return []byte("text:" + a.s), nil }
func (a stringerArg) String() string                 { return "str:" + strconv.Itoa(int(a)) }
func (binaryTextArg) MarshalBinary() ([]byte, error) { return []byte("binary"), nil }
func (binaryTextArg) MarshalText() ([]byte, error)   { return []byte("text"), nil }
func (textStringerArg) MarshalText() ([]byte, error) { return []byte("text"), nil }
func (textStringerArg) String() string               { return "string" }
func (failingArg) MarshalBinary() ([]byte, error)    { return nil, errMarshal }
func (w wordArg) String() string                     { return string(w) }

// marshaledArgs are arguments encoded by their methods, with what the
// server should store for each.
func marshaledArgs() []struct {
	arg  any
	want string
} {
	tm := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("", -5*3600))
	return []struct {
		arg  any
		want string
	}{
		{binaryArg{[]byte("bin\r\n\x00\xff")}, "bin\r\n\x00\xff"},
		{&binaryArg{[]byte("through a pointer")}, "through a pointer"},
		{textArg{"t"}, "text:t"},
		{stringerArg(42), "str:42"},
		{binaryTextArg{}, "binary"},
		{textStringerArg{}, "text"},
		{tm, "2024-05-06T07:08:09.123456789-05:00"},
		{&tm, "2024-05-06T07:08:09.123456789-05:00"},
	}
}

// TestMarshaledArguments: an argument with MarshalBinary, MarshalText or
// String is sent as what the first of them it has returns, and a time.Time
// as RFC 3339 text, through Do, a typed command and a pipeline.
func TestMarshaledArguments(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	for i, tc := range marshaledArgs() {
		k := "arg:" + strconv.Itoa(i)
		if _, err := c.Do(ctx, "SET", k+":do", tc.arg); err != nil {
			t.Errorf("%T: Do(SET): %v", tc.arg, err)
		}
		if err := c.Set(ctx, k+":typed", tc.arg); err != nil {
			t.Errorf("%T: Set: %v", tc.arg, err)
		}
		// In a pipeline, also as a later argument of a typed command.
		replies, err := c.Pipeline().Set(k+":pipeline", tc.arg).RPush(k+":list", "first", tc.arg).Exec(ctx)
		if err != nil || len(replies) != 2 {
			t.Errorf("%T: pipeline: %v, %v", tc.arg, replies, err)
		}
		for _, key := range []string{k + ":do", k + ":typed", k + ":pipeline"} {
			if got, err := c.Get(ctx, key); err != nil || got != tc.want {
				t.Errorf("%T: GET %s = %q, %v; want %q", tc.arg, key, got, err, tc.want)
			}
		}
		if got, err := c.LIndex(ctx, k+":list", 1); err != nil || got != tc.want {
			t.Errorf("%T: the second element pushed is %q, %v; want %q", tc.arg, got, err, tc.want)
		}
	}
}

// TestRefusedMarshaledArguments: a time.Duration, a nil pointer, a reply
// Value and a marshaler that fails give an *ArgError naming the command
// and the argument's position, and nothing of the command or its batch is
// sent.
func TestRefusedMarshaledArguments(t *testing.T) {
	c, srv := newTestClient(t, Options{})
	ctx := ctxT(t)
	reply, err := c.Do(ctx, "PING")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		arg  any
		text string // in the error
	}{
		{"time.Duration", 1500 * time.Millisecond, "type time.Duration: Redis takes a number of seconds or milliseconds, as the command says, not a duration such as \"1.5s\"; pass d.Milliseconds() or d.Seconds()"},
		{"nil pointer, value method", (*stringerArg)(nil), "type *redpipe.stringerArg: it is a nil pointer"},
		{"nil *time.Time", (*time.Time)(nil), "type *time.Time: it is a nil pointer"},
		{"Value", reply, "a Value is a reply, not an argument"},
		{"failing marshaler", failingArg{}, "MarshalBinary of redpipe.failingArg failed: " + errMarshal.Error()},
	}
	sets := cmdCalls(t, srv, "set")
	check := func(what string, tc struct {
		name string
		arg  any
		text string
	}, err error, index int) {
		t.Helper()
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Command != "SET" || ae.Index != index || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s, %s: %v; want an *ArgError for argument %d of SET saying %q", tc.name, what, err, index, tc.text)
		}
		if OutcomeOf(err) != OutcomeNotSent {
			t.Errorf("%s, %s: OutcomeOf = %v, want not sent", tc.name, what, OutcomeOf(err))
		}
		if tc.name == "failing marshaler" && !errors.Is(err, errMarshal) {
			t.Errorf("%s, %s: the marshaler's error is not reachable from %v", tc.name, what, err)
		}
	}
	for _, tc := range tests {
		_, err := c.Do(ctx, "SET", "k", tc.arg)
		check("Do", tc, err, 2)
		err = c.Set(ctx, "k", "v", "PX", tc.arg)
		check("Set with an option", tc, err, 4)
		_, err = c.Pipeline(NoTransaction).Set("k0", "v").Set("k", tc.arg).Exec(ctx)
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Index != 1 {
			t.Errorf("%s, pipeline: %v; want a *CommandError for command 1", tc.name, err)
		}
		check("pipeline", tc, err, 2)
	}
	if n := cmdCalls(t, srv, "set"); n != sets {
		t.Fatalf("%d SETs were sent", n-sets)
	}
	if s, err := c.Echo(ctx, "still in step"); err != nil || s != "still in step" {
		t.Fatalf("Echo = %q, %v", s, err)
	}
}

// TestStateSubcommandAsStringerRefused: a subcommand given as a type with
// a String method is read from its encoding, so CLIENT REPLY is refused on
// the shared connection as it is when given as a string.
func TestStateSubcommandAsStringerRefused(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	var ue *UsageError
	if _, err := c.Do(ctx, "CLIENT", wordArg("REPLY"), "OFF"); !errors.As(err, &ue) {
		t.Fatalf("CLIENT REPLY given as a Stringer: %v, want a usage error", err)
	}
	if _, err := c.Pipeline(NoTransaction).Do("client", wordArg("tracking"), "on").Exec(ctx); !errors.As(err, &ue) {
		t.Fatalf("CLIENT TRACKING in a pipeline: %v, want a usage error", err)
	}
	if id, err := c.Do(ctx, "CLIENT", wordArg("ID")); err != nil || id.Kind() != KindInteger {
		t.Fatalf("CLIENT ID given as a Stringer = %v, %v", id, err)
	}
	if s, err := c.Echo(ctx, "still in step"); err != nil || s != "still in step" {
		t.Fatalf("Echo = %q, %v", s, err)
	}
}

func TestWordsOfEncodedCommand(t *testing.T) {
	cmd := []byte("*4\r\n$5\r\nXREAD\r\n$5\r\nblock\r\n$0\r\n\r\n$2\r\n10\r\n")
	for i, want := range []string{"XREAD", "block", "", "10"} {
		if got := wordAt(cmd, i); string(got) != want || got == nil {
			t.Errorf("wordAt(%d) = %q, want %q", i, got, want)
		}
	}
	for _, bad := range [][]byte{cmd[:len(cmd)-3], []byte("*1\r\n$x\r\n"), []byte("*1\r\n$-1\r\n"), nil} {
		if got := wordAt(bad, 3); got != nil {
			t.Errorf("wordAt(%q, 3) = %q, want nil", bad, got)
		}
	}
}
