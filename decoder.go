package redpipe

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/redpipe/redpipe/internal/resp"
)

// Decoder turns the reply of one command into a Go value of the caller's
// choosing, as redis-py's response callbacks do. Register one per command
// name on a Client (SetDecoder) or on one Pipeline (WithDecoder); the
// decoded value is then available from the reply's Decoded method. A
// decoder runs only on replies that are not errors.
//
// A decoder runs once the command has run, so its panic goes on up from
// the call that got the reply (Do, a typed method, Exec, Transaction)
// with the command applied, a transaction's EXEC included: the connection has read the reply and stays in use, a
// Pipeline is empty afterwards, as after any Exec, and the batch's later
// replies are left undecoded and lost with it. In a Stream it also stops
// the calls of each, and Close reports it (see Stream).
//
// A decoder for a call on a Tx runs once that call has given the Tx up,
// and may call the Tx, Close included (see Tx). A decoder must not Exec
// the Pipeline whose replies it decodes, which is refused with a
// *UsageError, and its Discard does nothing: Exec empties the pipeline
// once its decoders have run. For the same reason, commands a decoder
// queues on that Pipeline are not sent: Exec returns its replies with an
// error of unknown outcome (the batch ran) that wraps a *CommandError,
// for the command whose decoder did it, and a *UsageError, whatever
// ErrorsInReplies says. Queue them on another Pipeline, or on this one
// once Exec has returned.
type Decoder func(Value) (any, error)

// SetDecoder registers d for the replies of command (any case) on every
// call and pipeline of the client; nil removes it. Register decoders before
// sharing the client between goroutines. On the Client of one node that
// ForEachMaster hands out, it registers d on the cluster Client, whose
// decoders that node's replies use.
//
// command is named as the replies are: one word ("GET", "JSON.GET" for a
// module's command), or a container and one of its subcommands that
// redpipe knows, with one space ("CONFIG GET"). A name that no reply can
// carry ("CONFIG|GET", two spaces, a subcommand the table lacks, whose
// replies go by the container's name) is refused with a *UsageError that
// names it, and nothing is registered or removed; so is a command that
// changes a connection's state (SELECT, MULTI, EXEC, CLIENT REPLY...),
// which redpipe refuses or sends itself, and whose replies reach no
// Decoder, but for WATCH and UNWATCH, which run on a Tx.
func (c *Client) SetDecoder(command string, d Decoder) error {
	name, err := decoderName(command)
	if err != nil {
		return err
	}
	if c.front != nil {
		c = c.front
	}
	c.decMu.Lock()
	defer c.decMu.Unlock()
	m := make(map[string]Decoder, len(c.decoderMap())+1)
	for k, v := range c.decoderMap() {
		m[k] = v
	}
	if d == nil {
		delete(m, name)
	} else {
		m[name] = d
	}
	c.decoders.Store(&m)
	return nil
}

// decoderName returns command as the replies a Decoder registered for it
// are matched by (see cmdMeta.Name): upper case, one word or a known
// subcommand after its container. A name that none can match is refused,
// since its Decoder would be kept and never run.
func decoderName(command string) (string, error) {
	name := strings.ToUpper(command)
	refuse := func(why string) (string, error) {
		return "", &UsageError{Msg: fmt.Sprintf("a Decoder for %q would never run, since no command's replies go by that name: %s; "+
			"name one word, as \"GET\", or a container and its subcommand with one space, as \"CONFIG GET\"", command, why)}
	}
	if name == "" {
		return refuse("the name is empty")
	}
	if i := strings.IndexFunc(name, func(r rune) bool { return r == '|' || r != ' ' && (unicode.IsSpace(r) || unicode.IsControl(r)) }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(name[i:])
		return refuse(fmt.Sprintf("command names hold no %q", r))
	}
	words := strings.Split(name, " ")
	if slices.Contains(words, "") {
		return refuse("its words are not separated by exactly one space")
	}
	if ci := commandTable[name]; ci != nil && ci.has(flagConnState) && name != "WATCH" && name != "UNWATCH" || newerCommands[name] != nil {
		// Refused as a call and in every batch; those redpipe sends
		// itself (MULTI, EXEC, SELECT, HELLO...) have replies that reach
		// no caller. Only WATCH and UNWATCH run on a Tx.
		return "", &UsageError{Msg: fmt.Sprintf("a Decoder for %q would never run: %s changes the state of a connection and is refused "+
			"as a call and in every Pipeline, Tx and Stream (%s), and the replies of those redpipe sends itself reach no Decoder; "+
			"register Decoders for the commands you run", command, name, connStateHint(name))}
	}
	switch {
	case len(words) == 1:
		// Any one word: commands of modules and of newer servers, which
		// the table does not know, are named as they are called.
		if commandTable[name] == nil {
			keepUnknownName(name)
		}
		return name, nil
	case len(words) > 2:
		return refuse("a command is named by at most two words, a container and its subcommand")
	case commandTable[name] != nil || newerCommands[name] != nil:
		return name, nil
	case !isContainer(words[0]):
		return refuse(words[0] + " has no subcommands that redpipe knows")
	}
	return refuse(fmt.Sprintf("%s is no subcommand of %s that redpipe knows, whose replies go by the name %q", words[1], words[0], words[0]))
}

// isContainer reports whether the table knows subcommands of name.
func isContainer(name string) bool {
	for k := range commandTable {
		if strings.HasPrefix(k, name) && len(k) > len(name) && k[len(name)] == ' ' {
			return true
		}
	}
	return false
}

func (c *Client) decoderMap() map[string]Decoder {
	if m := c.decoders.Load(); m != nil {
		return *m
	}
	return nil
}

func (c *Client) decoder(name string) Decoder {
	if m := c.decoderTable(); m != nil {
		return (*m)[name]
	}
	return nil
}

// decoderTable returns the decoders that apply to c's replies: on the
// client of a cluster's node, those of the cluster's Client.
func (c *Client) decoderTable() *map[string]Decoder {
	if c.front != nil {
		return c.front.decoders.Load()
	}
	return c.decoders.Load()
}

// decodeReply runs d, command's decoder, on *v, a reply that is not an
// error, and keeps the result (or the failure) in it for Decoded. A
// failure is also returned, as a *DecodeError. A nil d does nothing.
func decodeReply(v *Value, command string, d Decoder) error {
	if d == nil {
		return nil
	}
	x, err := d(*v)
	if err != nil {
		setExtra(v, decodeFailure{err})
		return &DecodeError{Command: command, Err: err}
	}
	setExtra(v, x)
	return nil
}

// setExtra keeps x in v's Aux. The Aux may be shared with copies of the
// reply (the decoder itself may have kept one), so it is replaced by a
// modified copy rather than changed in place. A nil result on a reply
// without an Aux needs no Aux at all, which saves the allocation.
func setExtra(v *Value, x any) {
	if x == nil && v.v.Aux == nil {
		return
	}
	var aux resp.Aux
	if v.v.Aux != nil {
		aux = *v.v.Aux
	}
	aux.Extra = x
	v.v.Aux = &aux
}

// decodeFailure marks a decoder's error kept in a reply.
type decodeFailure struct{ err error }

// Decoded returns what the command's registered Decoder made of the reply,
// or nil and the Decoder's own error when it failed (the call or Exec
// reports it wrapped in a *DecodeError), or nil and no error when no
// decoder ran: none registered, or an error reply.
func (v Value) Decoded() (any, error) {
	if v.v.Aux == nil {
		return nil, nil
	}
	switch x := v.v.Aux.Extra.(type) {
	case decodeFailure:
		return nil, x.err
	case madeErr:
		return nil, nil // an error reply: no decoder ran
	}
	return v.v.Aux.Extra, nil
}

// DecodeInfo is a Decoder for INFO: it returns the reply as a
// map[string]map[string]string of sections ("server", "memory", ...) to
// their fields, with section names in lower case.
func DecodeInfo(v Value) (any, error) {
	text, err := v.Text()
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]string)
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case line == "":
		case strings.HasPrefix(line, "# "):
			section = strings.ToLower(strings.TrimPrefix(line, "# "))
			out[section] = make(map[string]string)
		default:
			k, val, ok := strings.Cut(line, ":")
			if !ok {
				return nil, v.unreadable("INFO sections", nil, "line %q has no colon", clip(line))
			}
			if out[section] == nil {
				out[section] = make(map[string]string)
			}
			out[section][k] = val
		}
	}
	return out, sc.Err()
}
