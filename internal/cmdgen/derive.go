package main

import (
	"fmt"
	"go/token"
	"slices"
	"strings"
	"unicode"
)

// arg is one argument of a command as COMMAND DOCS describes it.
type arg struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	DisplayText string   `json:"display_text"`
	Token       string   `json:"token"`
	Flags       []string `json:"flags"`
	Args        []*arg   `json:"arguments"`
}

func (a *arg) optional() bool { return slices.Contains(a.Flags, "optional") }
func (a *arg) multiple() bool { return slices.Contains(a.Flags, "multiple") }

// required returns a copy of a without its optional flag, for arguments an
// overlay line promotes to fixed parameters.
func (a *arg) required() *arg {
	b := *a
	b.Flags = slices.DeleteFunc(slices.Clone(a.Flags), func(f string) bool { return f == "optional" })
	return &b
}

// param is one typed parameter of a generated function.
type param struct {
	Name     string // Go identifier
	Type     string // Go type: string, any, int64, float64
	Enc      string // cmdBuf method that writes it: key, str, arg, int, float
	Variadic bool
	Doc      string // the argument's name in the docs
}

// step is one thing the encoder writes, in wire order: a literal token or
// a parameter.
type step struct {
	Lit   string
	IsLit bool
	P     *param
}

// signature is what a wrapper takes and how it writes it.
type signature struct {
	Params    []*param // Go order; a variadic one is last
	Steps     []step   // wire order
	HasRest   bool     // a final args ...any follows the typed parameters
	Rest      []*arg   // what args holds, in docs order; nil when the docs list nothing
	Shown     []*arg   // the arguments the wrapper covers, for its syntax line
	Reordered bool     // typed parameters that follow a variadic one on the wire come first in Go
}

// fixedWords counts the words the encoder writes besides the variadic
// parameter and args, not counting the command name.
func (s *signature) fixedWords() int {
	n := 0
	for _, st := range s.Steps {
		if st.IsLit || !st.P.Variadic {
			n++
		}
	}
	return n
}

func (s *signature) variadic() *param {
	if n := len(s.Params); n > 0 && s.Params[n-1].Variadic {
		return s.Params[n-1]
	}
	return nil
}

// goTypeEnc is how a parameter of each Go type is written, for the types
// an overlay line can force with as=.
var goTypeEnc = map[string]string{"string": "str", "any": "arg", "int64": "int", "float64": "float"}

// valueLike names string arguments that carry user data. Their parameters
// are any, so callers can pass numbers and byte slices as they would to
// Do; everything else (names, IDs, patterns) is a plain string.
var valueLike = map[string]bool{
	"value": true, "member": true, "member1": true, "member2": true,
	"element": true, "pivot": true, "message": true, "arg": true, "payload": true,
}

// rangeBounds names the bounds of score, lex, index and stream ranges.
// They are any whatever the docs' type, because Redis takes forms like
// "(1.5", "-inf", "[abc" and "-" besides plain numbers.
var rangeBounds = map[string]bool{"min": true, "max": true, "start": true, "stop": true, "end": true}

// simpleParam gives the Go type and encoding of an argument that maps onto
// one typed parameter, or ok false if it does not.
func simpleParam(a *arg) (goType, enc string, ok bool) {
	switch a.Type {
	case "key":
		return "string", "key", true
	case "pattern":
		return "string", "str", true
	case "integer", "unix-time":
		return "int64", "int", true
	case "double":
		if rangeBounds[a.Name] {
			return "any", "arg", true
		}
		return "float64", "float", true
	case "string":
		if valueLike[a.Name] || rangeBounds[a.Name] {
			return "any", "arg", true
		}
		return "string", "str", true
	case "oneof":
		// A choice among tokens and plain strings (BEFORE | AFTER, id | $)
		// is one string parameter holding the chosen word.
		enc = "str"
		for _, alt := range a.Args {
			switch {
			case alt.Type == "pure-token":
			case (alt.Type == "string" || alt.Type == "key") && alt.Token == "" && !alt.multiple():
				if alt.Type == "key" {
					enc = "key"
				}
			default:
				return "", "", false
			}
		}
		return "string", enc, true
	}
	return "", "", false
}

// flatten replaces required blocks by their contents, the block's token
// first, so that XREADGROUP's GROUP group consumer reads as three words.
func flatten(args []*arg) []*arg {
	var out []*arg
	for _, a := range args {
		if a.Type == "block" && len(a.Args) == 1 {
			// A block of one plain argument, as CONFIG GET's parameter,
			// is that argument.
			if c := a.Args[0]; c.Token == "" && len(c.Flags) == 0 && c.Type != "block" && c.Type != "oneof" {
				b := *c
				b.Token, b.Flags = a.Token, a.Flags
				a = &b
			}
		}
		if a.Type == "block" && !a.optional() && !a.multiple() {
			if a.Token != "" {
				out = append(out, &arg{Name: a.Token, Type: "pure-token", Token: a.Token})
			}
			out = append(out, flatten(a.Args)...)
			continue
		}
		out = append(out, a)
	}
	return out
}

// pick selects the arguments an overlay line names, in its order, each
// made required. A final "..." keeps the other top-level arguments after
// them as they are.
func pick(args []*arg, names []string) ([]*arg, error) {
	var out []*arg
	used := map[*arg]bool{}
	for i, n := range names {
		if n == "..." {
			if i != len(names)-1 {
				return nil, fmt.Errorf("... must come last in args=")
			}
			for _, a := range args {
				if !used[a] {
					out = append(out, a)
				}
			}
			break
		}
		top, a := find(args, n)
		if a == nil {
			return nil, fmt.Errorf("no argument named %q", n)
		}
		used[top] = true
		out = append(out, a.required())
	}
	return out, nil
}

// find looks for an argument by name, depth first, and returns it with the
// top-level argument that holds it.
func find(args []*arg, name string) (top, found *arg) {
	for _, a := range args {
		if a.Name == name {
			return a, a
		}
		if _, f := find(a.Args, name); f != nil {
			return a, f
		}
	}
	return nil, nil
}

// derive works out the parameters of a wrapper. Required simple arguments
// become typed parameters, a required multiple one at the end becomes
// variadic, and whatever cannot be typed, with everything after it, is
// left to a final args ...any.
func derive(c *command, picks []string, types map[string]string) (*signature, error) {
	shown := c.Args
	if picks != nil {
		var err error
		if shown, err = pick(c.Args, picks); err != nil {
			return nil, err
		}
	}
	s := &signature{Shown: shown}
	seq := flatten(shown)
	names := newNamer()
	newParam := func(a *arg, variadic bool) *param {
		typ, enc, _ := simpleParam(a)
		if t, ok := types[a.Name]; ok {
			typ, enc = t, goTypeEnc[t]
		}
		p := &param{Name: names.name(a.Name, variadic), Type: typ, Enc: enc, Variadic: variadic, Doc: a.Name}
		return p
	}
	i := 0
loop:
	for ; i < len(seq); i++ {
		a := seq[i]
		if a.optional() {
			// [member [member ...]] at the end is zero or more of one kind:
			// a variadic parameter says so better than args.
			if _, _, ok := simpleParam(a); ok && a.multiple() && a.Token == "" && a.Type != "oneof" && i == len(seq)-1 {
				v := newParam(a, true)
				s.Params = append(s.Params, v)
				s.Steps = append(s.Steps, step{P: v})
				i++
			}
			break
		}
		if a.Type == "pure-token" {
			s.Steps = append(s.Steps, step{Lit: a.Token, IsLit: true})
			continue
		}
		if _, _, ok := simpleParam(a); !ok {
			break
		}
		if !a.multiple() {
			if a.Token != "" {
				s.Steps = append(s.Steps, step{Lit: a.Token, IsLit: true})
			}
			p := newParam(a, false)
			s.Params = append(s.Params, p)
			s.Steps = append(s.Steps, step{P: p})
			continue
		}
		if a.Token != "" {
			break // TOKEN x [TOKEN x ...] has no single variadic form
		}
		// A multiple argument can only be variadic if nothing but plain
		// required parameters follows it; those then come first in Go, as
		// in BLPop(ctx, timeout, keys...).
		tail := seq[i+1:]
		for _, t := range tail {
			if _, _, ok := simpleParam(t); !ok || t.optional() || t.multiple() || t.Token != "" || t.Type == "oneof" {
				break loop
			}
		}
		v := newParam(a, true)
		s.Steps = append(s.Steps, step{P: v})
		for _, t := range tail {
			p := newParam(t, false)
			s.Params = append(s.Params, p)
			s.Steps = append(s.Steps, step{P: p})
		}
		s.Params = append(s.Params, v)
		s.Reordered = len(tail) > 0
		i = len(seq)
		break
	}
	if i < len(seq) {
		if s.variadic() != nil {
			return nil, fmt.Errorf("internal: variadic parameter before args")
		}
		s.HasRest, s.Rest = true, seq[i:]
	}
	n := c.words() + s.fixedWords()
	switch {
	case c.Arity > 0 && n > c.Arity:
		return nil, fmt.Errorf("%s takes %d words but the parameters need %d", c.Name, c.Arity, n)
	case c.Arity > 0 && n < c.Arity && !s.HasRest:
		return nil, fmt.Errorf("%s takes %d words but the parameters give %d", c.Name, c.Arity, n)
	case c.Arity < 0 && n < -c.Arity && !s.HasRest && s.variadic() == nil && picks != nil:
		return nil, fmt.Errorf("%s takes at least %d words but the chosen arguments give %d", c.Name, -c.Arity, n)
	case c.Arity < 0 && !s.HasRest && s.variadic() == nil && picks == nil:
		// The server takes more than the docs list (COMMAND GETKEYS):
		// let the caller pass it.
		s.HasRest = true
	}
	for name := range types {
		if !slices.ContainsFunc(s.Params, func(p *param) bool { return p.Doc == name }) {
			return nil, fmt.Errorf("as=%s: no parameter comes from an argument of that name", name)
		}
	}
	if s.HasRest {
		for _, p := range s.Params {
			if p.Name == "args" { // the final parameter needs the name
				p.Name = names.name("argList", false)
			}
		}
	}
	return s, nil
}

// namer makes Go parameter names from docs names, unique within one
// function.
type namer struct{ used map[string]bool }

func newNamer() *namer {
	used := map[string]bool{}
	// Names the generated code itself uses, and predeclared types that
	// appear in signatures.
	for _, n := range []string{"ctx", "w", "p", "c", "x", "string", "any", "int64", "float64", "error", "bool", "len"} {
		used[n] = true
	}
	return &namer{used: used}
}

func (nm *namer) name(doc string, plural bool) string {
	base := lowerCamel(doc, plural)
	if token.IsKeyword(base) {
		base = map[string]string{"type": "typ", "range": "rng", "func": "fn", "default": "def"}[base]
		if base == "" {
			base = lowerCamel(doc, plural) + "Arg"
		}
	}
	if base == "" || !token.IsIdentifier(base) {
		base = "arg"
	}
	n := base
	for i := 2; nm.used[n]; i++ {
		n = fmt.Sprintf("%s%d", base, i)
	}
	nm.used[n] = true
	return n
}

// initialisms are written in upper case inside names, as Go style has it.
var initialisms = map[string]string{"id": "ID", "ids": "IDs", "db": "DB", "ttl": "TTL", "ip": "IP"}

// lowerCamel turns a docs name such as "unix-time-seconds" or "client-id"
// into unixTimeSeconds or clientID; plural makes the last word plural.
func lowerCamel(doc string, plural bool) string {
	words := strings.FieldsFunc(strings.ToLower(doc), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	if len(words) == 0 {
		return ""
	}
	if plural {
		last := words[len(words)-1]
		if strings.HasSuffix(last, "s") || strings.HasSuffix(last, "x") {
			last += "es"
		} else {
			last += "s"
		}
		words[len(words)-1] = last
	}
	var b strings.Builder
	for i, w := range words {
		switch {
		case i == 0:
			b.WriteString(w)
		case initialisms[w] != "":
			b.WriteString(initialisms[w])
		default:
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	s := b.String()
	if s[0] >= '0' && s[0] <= '9' {
		s = "n" + s
	}
	return s
}

// syntax renders arguments the way the Redis documentation writes them:
// [optional], <a | b> for a required choice, x [x ...] for repetition.
func syntax(args []*arg) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = syntaxOf(a)
	}
	return strings.Join(parts, " ")
}

func syntaxOf(a *arg) string {
	var s string
	switch a.Type {
	case "pure-token":
		s = a.Token
		if s == "" {
			s = `""`
		}
	case "oneof":
		alts := make([]string, len(a.Args))
		for i, alt := range a.Args {
			alts[i] = syntaxOf(alt)
		}
		s = strings.Join(alts, " | ")
		if a.optional() && a.Token == "" && !a.multiple() {
			return "[" + s + "]"
		}
		s = "<" + s + ">"
	case "block":
		s = syntax(a.Args)
	default:
		s = a.DisplayText
		if s == "" {
			s = a.Name
		}
	}
	if a.Token != "" && a.Type != "pure-token" {
		if a.multiple() && !slices.Contains(a.Flags, "multiple_token") {
			s = a.Token + " " + s + " [" + s + " ...]"
		} else {
			s = a.Token + " " + s
		}
	}
	if a.multiple() && (a.Token == "" || slices.Contains(a.Flags, "multiple_token")) {
		s += " [" + s + " ...]"
	}
	if a.optional() {
		s = "[" + s + "]"
	}
	return s
}

// example makes a sample of what args may hold, for the doc comment:
// preferably an option with a value, such as "EX", 10, else a bare token.
func example(rest []*arg) string {
	var token string
	for _, a := range rest {
		cands := []*arg{a}
		if a.Type == "oneof" {
			cands = a.Args
		}
		for _, c := range cands {
			if c.Token == "" {
				continue
			}
			if c.Type == "pure-token" {
				if token == "" {
					token = fmt.Sprintf("%q", c.Token)
				}
				continue
			}
			switch c.Type {
			case "integer", "unix-time":
				return fmt.Sprintf("%q, 10", c.Token)
			case "double":
				return fmt.Sprintf("%q, 1.5", c.Token)
			case "string", "key", "pattern":
				return fmt.Sprintf("%q, %q", c.Token, c.Name)
			}
		}
	}
	return token
}
