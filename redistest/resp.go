package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// This file holds a deliberately small RESP client. It exists so the package
// need not import the client it is used to test, and it favours being
// obviously correct over being fast: one connection per call, no pooling.

const (
	dialTimeout = 5 * time.Second
	// callTimeout bounds a whole Do or Pipeline call so that a wedged server
	// fails the test instead of hanging it until the test binary's timeout.
	callTimeout = 10 * time.Second

	// Limits on what a reply may announce, so a corrupt length cannot make
	// the reader allocate without bound.
	maxBulkLen  = 512 << 20
	maxArrayLen = 1 << 24
)

// ReplyError is an error reply ('-' or '!') from the server, such as
// "NOAUTH Authentication required." Do and Pipeline return it as a reply
// value, not as their error, because tests often expect one; their error
// result is kept for failures to talk to the server at all.
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// Prefix returns the first word of the error, such as "NOAUTH" or "MOVED".
func (e ReplyError) Prefix() string {
	s := string(e)
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i]
	}
	return s
}

// Do sends one command over a fresh connection and returns its reply,
// decoded loosely:
//
//   - simple and bulk strings as string (a RESP3 verbatim string without its
//     format prefix),
//   - integers as int64,
//   - null replies as nil,
//   - arrays, sets and pushes as []any, and RESP3 maps as []any holding keys
//     and values alternately,
//   - error replies as a ReplyError value, with a nil error,
//   - RESP3 booleans as bool, doubles as float64, big numbers as string.
//
// The returned error reports only failures to connect, write or read; when
// the server's process has exited, it says so and whether Kill or a crash
// ended it. Each
// call uses its own unauthenticated connection; use Pipeline to
// authenticate first or to run commands that depend on connection state.
func (s *Server) Do(args ...string) (any, error) {
	replies, err := s.Pipeline(args)
	if err != nil {
		return nil, err
	}
	return replies[0], nil
}

// Pipeline sends several commands over one fresh connection and returns
// their replies in order, decoded as by Do. Commands that depend on
// connection state go together here:
//
//	s.Pipeline([]string{"AUTH", "secret"}, []string{"GET", "k"})
func (s *Server) Pipeline(cmds ...[]string) ([]any, error) {
	// Refused rather than sent: after Stop the port is free, and another
	// process may have taken it.
	if err := s.haltedErr(); err != nil {
		return nil, err
	}
	replies, err := roundTrip(s.Addr, cmds)
	if err != nil {
		// A refused dial alone does not say that the server is gone, nor
		// whether a crash or the test's own Kill ended it.
		if why := s.exitedErr(); why != nil {
			return nil, &notRunningError{why: why, err: err}
		}
	}
	return replies, err
}

// notRunningError is a failed call to a server whose process has exited:
// the message says so, and the network error stays reachable.
type notRunningError struct {
	why error // Server.exitedErr
	err error // from roundTrip
}

func (e *notRunningError) Error() string { return e.why.Error() }
func (e *notRunningError) Unwrap() error { return e.err }

// MustDo is Do for test setup: it fails the test on a connection failure or
// an error reply, and otherwise returns the reply.
func (s *Server) MustDo(t testing.TB, args ...string) any {
	t.Helper()
	v, err := s.Do(args...)
	if err != nil {
		t.Fatalf("redistest: %s on %s: %v", commandName(args), s.Addr, err)
	}
	if e, ok := v.(ReplyError); ok {
		t.Fatalf("redistest: %s on %s: error reply: %v", commandName(args), s.Addr, e)
	}
	return v
}

// doChecked is Do with error replies turned into errors, for the package's
// own setup steps where any error reply is a failure.
func (s *Server) doChecked(args ...string) (any, error) {
	v, err := s.Do(args...)
	if err != nil {
		return nil, err
	}
	if e, ok := v.(ReplyError); ok {
		return nil, fmt.Errorf("redistest: %s on %s: %w", commandName(args), s.Addr, e)
	}
	return v, nil
}

func commandName(args []string) string {
	switch {
	case len(args) == 0:
		return "(empty command)"
	case len(args) > 1 && isContainerCommand(args[0]):
		return strings.ToUpper(args[0] + " " + args[1])
	default:
		return strings.ToUpper(args[0])
	}
}

// isContainerCommand reports whether the second word names a subcommand, so
// error messages say "CLUSTER MEET" rather than just "CLUSTER".
func isContainerCommand(name string) bool {
	switch strings.ToUpper(name) {
	case "ACL", "CLIENT", "CLUSTER", "CONFIG", "DEBUG", "FUNCTION", "MEMORY", "MODULE", "OBJECT", "SCRIPT", "XINFO", "XGROUP":
		return true
	}
	return false
}

func roundTrip(addr string, cmds [][]string) ([]any, error) {
	if len(cmds) == 0 {
		return nil, errors.New("redistest: no command given")
	}
	for _, c := range cmds {
		if len(c) == 0 {
			return nil, errors.New("redistest: empty command")
		}
	}
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(callTimeout)); err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}

	w := bufio.NewWriter(conn)
	for _, c := range cmds {
		writeCommand(w, c)
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("redistest: sending %s to %s: %w", commandName(cmds[0]), addr, err)
	}

	r := bufio.NewReader(conn)
	replies := make([]any, 0, len(cmds))
	for _, c := range cmds {
		v, err := readReply(r)
		if err != nil {
			return nil, fmt.Errorf("redistest: reading reply to %s from %s: %w", commandName(c), addr, err)
		}
		replies = append(replies, v)
	}
	return replies, nil
}

// writeCommand encodes a command as a RESP array of bulk strings, the only
// request form that carries arbitrary bytes, empty strings included.
// Errors surface at Flush.
func writeCommand(w *bufio.Writer, args []string) {
	w.WriteByte('*')
	w.WriteString(strconv.Itoa(len(args)))
	w.WriteString("\r\n")
	for _, a := range args {
		w.WriteByte('$')
		w.WriteString(strconv.Itoa(len(a)))
		w.WriteString("\r\n")
		w.WriteString(a)
		w.WriteString("\r\n")
	}
}

var errProtocol = errors.New("redistest: protocol error")

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	if !strings.HasSuffix(line, "\r\n") {
		return "", fmt.Errorf("%w: line not terminated by CRLF: %q", errProtocol, line)
	}
	return line[:len(line)-2], nil
}

func parseLen(s string, limit int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < -1 || n > limit {
		return 0, fmt.Errorf("%w: bad length %q", errProtocol, s)
	}
	return n, nil
}

func readBulk(r *bufio.Reader, header string) (string, bool, error) {
	n, err := parseLen(header, maxBulkLen)
	if err != nil {
		return "", false, err
	}
	if n < 0 {
		return "", true, nil
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", false, err
	}
	if buf[n] != '\r' || buf[n+1] != '\n' {
		return "", false, fmt.Errorf("%w: bulk string not terminated by CRLF", errProtocol)
	}
	return string(buf[:n]), false, nil
}

func readElements(r *bufio.Reader, n int) ([]any, error) {
	out := make([]any, 0, n)
	for range n {
		v, err := readReply(r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// readReply decodes one reply. RESP3 types are understood too, because a
// test may well send HELLO 3 through Pipeline.
func readReply(r *bufio.Reader) (any, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if line == "" {
		return nil, fmt.Errorf("%w: empty line", errProtocol)
	}
	kind, rest := line[0], line[1:]
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return ReplyError(rest), nil
	case ':':
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: bad integer %q", errProtocol, rest)
		}
		return n, nil
	case '(': // big number: kept as text, it may not fit an int64
		return rest, nil
	case ',':
		f, err := strconv.ParseFloat(rest, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: bad double %q", errProtocol, rest)
		}
		return f, nil
	case '#':
		switch rest {
		case "t":
			return true, nil
		case "f":
			return false, nil
		}
		return nil, fmt.Errorf("%w: bad boolean %q", errProtocol, rest)
	case '_':
		return nil, nil
	case '$', '=', '!':
		s, isNull, err := readBulk(r, rest)
		if err != nil || isNull {
			return nil, err
		}
		switch kind {
		case '=': // verbatim string: "txt:" or "mkd:" then the text
			if len(s) >= 4 && s[3] == ':' {
				s = s[4:]
			}
		case '!':
			return ReplyError(s), nil
		}
		return s, nil
	case '*', '~', '>', '%', '|':
		n, err := parseLen(rest, maxArrayLen)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		if kind == '%' || kind == '|' {
			n *= 2
		}
		elems, err := readElements(r, n)
		if err != nil {
			return nil, err
		}
		if kind == '|' {
			// Attributes annotate the reply that follows; nothing here
			// needs them.
			return readReply(r)
		}
		return elems, nil
	}
	return nil, fmt.Errorf("%w: unknown reply type %q", errProtocol, kind)
}
