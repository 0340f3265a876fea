// Command cmdgen generates redpipe's command table and typed command
// methods from the server's own description of its commands (COMMAND DOCS
// and COMMAND INFO, dumped to JSON by spec/dump.sh) and from wrappers.txt,
// which picks the commands to wrap, their Go names and reply types.
//
//	go run ./internal/cmdgen -spec internal/cmdgen/spec -out .
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"go/format"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// command is one command or subcommand, with what both dumps say of it.
type command struct {
	Name      string // upper case, subcommands after a space: "CONFIG GET"
	Arity     int
	Flags     []string
	FirstKey  int
	LastKey   int
	Step      int
	Group     string
	Summary   string
	DocFlags  []string
	Args      []*arg
	Container bool // has subcommands
	// RequestPolicy and ResponsePolicy are the values of the
	// request_policy and response_policy tips of COMMAND INFO, "" when
	// the command has none.
	RequestPolicy  string
	ResponsePolicy string
}

func (c *command) words() int { return strings.Count(c.Name, " ") + 1 }

// The command flags the client acts on, by their name in COMMAND INFO.
// Others (denyoom, skip_monitor...) are of no use to a client.
var flagConsts = map[string]string{
	"write": "flagWrite", "readonly": "flagReadonly", "blocking": "flagBlocking",
	"admin": "flagAdmin", "pubsub": "flagPubSub", "noscript": "flagNoScript",
	"loading": "flagLoading", "stale": "flagStale", "fast": "flagFast",
	"no_multi": "flagNoMulti", "movablekeys": "flagMovableKeys", "no_auth": "flagNoAuth",
}

// The constants of the request_policy and response_policy tips, by their
// value in COMMAND INFO. A tip not listed here stops the generator, so
// that a policy a newer server brings is not silently treated as the
// default.
var (
	requestPolicies = map[string]string{
		"all_nodes": "requestAllNodes", "all_shards": "requestAllShards",
		"multi_shard": "requestMultiShard", "special": "requestSpecial",
	}
	responsePolicies = map[string]string{
		"one_succeeded": "responseOneSucceeded", "all_succeeded": "responseAllSucceeded",
		"agg_logical_and": "responseAggLogicalAnd", "agg_logical_or": "responseAggLogicalOr",
		"agg_min": "responseAggMin", "agg_max": "responseAggMax", "agg_sum": "responseAggSum",
		"special": "responseSpecial",
	}
)

// wrappedGroups are the groups whose commands should all have a line in
// wrappers.txt, as a wrapper or as a deliberate skip.
var wrappedGroups = map[string]bool{
	"string": true, "generic": true, "hash": true, "list": true, "set": true,
	"sorted-set": true, "scripting": true, "transactions": true, "server": true,
	"connection": true, "bitmap": true, "hyperloglog": true, "geo": true,
	"stream": true, "pubsub": true,
}

// forbidden commands never get a typed method: they change per-connection
// state the client manages itself (a pooled connection would carry it to
// the next user), or take over the connection, or have hand-written APIs
// (transactions, Pub/Sub).
var forbidden = map[string]bool{
	"MULTI": true, "EXEC": true, "DISCARD": true, "WATCH": true, "UNWATCH": true,
	"SELECT": true, "AUTH": true, "HELLO": true, "QUIT": true, "RESET": true,
	"SUBSCRIBE": true, "PSUBSCRIBE": true, "SSUBSCRIBE": true,
	"UNSUBSCRIBE": true, "PUNSUBSCRIBE": true, "SUNSUBSCRIBE": true,
	"MONITOR": true, "SYNC": true, "PSYNC": true, "REPLCONF": true,
	"CLIENT REPLY": true, "CLIENT SETNAME": true,
}

// replyKinds maps a reply kind of wrappers.txt to the Go results of the
// method and the conversion that produces them. A kind with a probe also calls it on the encoded command before sending
// it, and passes its result to the conversion after the reply: SET answers
// a bulk string only when GET is among its arguments.
var replyKinds = map[string]struct{ results, conv, probe string }{
	"ok":        {"error", "okReply", ""},
	"setok":     {"error", "setReply", "setHasGet"},
	"status":    {"(string, error)", "textReply", ""},
	"text":      {"(string, error)", "textReply", ""},
	"int":       {"(int64, error)", "intReply", ""},
	"bool":      {"(bool, error)", "boolReply", ""},
	"float":     {"(float64, error)", "floatReply", ""},
	"strings":   {"([]string, error)", "stringsReply", ""},
	"int64s":    {"([]int64, error)", "int64sReply", ""},
	"values":    {"([]Value, error)", "valuesReply", ""},
	"scored":    {"([]Scored, error)", "scoredReply", ""},
	"stringmap": {"(map[string]string, error)", "stringMapReply", ""},
	"value":     {"(Value, error)", "valueReply", ""},
	"script":    {"(Value, error)", "scriptReply", ""},
}

func main() {
	specDir := flag.String("spec", "internal/cmdgen/spec", "directory holding command-docs.json, command-info.json and VERSION")
	outDir := flag.String("out", ".", "directory to write the generated files to")
	wrappersPath := flag.String("wrappers", "", "the wrapper list (default: wrappers.txt next to the spec directory)")
	flag.Parse()
	if *wrappersPath == "" {
		*wrappersPath = filepath.Join(filepath.Dir(filepath.Clean(*specDir)), "wrappers.txt")
	}
	if err := run(*specDir, *outDir, *wrappersPath); err != nil {
		fmt.Fprintln(os.Stderr, "cmdgen:", err)
		os.Exit(1)
	}
}

func run(specDir, outDir, wrappersPath string) error {
	cmds, version, err := loadSpec(specDir)
	if err != nil {
		return err
	}
	ws, err := loadWrappers(wrappersPath, cmds)
	if err != nil {
		return err
	}
	header := fmt.Sprintf("// Code generated by internal/cmdgen from redis-server %s COMMAND DOCS and COMMAND INFO; DO NOT EDIT.\n\n", version)
	table, err := genTable(header, cmds)
	if err != nil {
		return err
	}
	methods, err := genMethods(header, cmds, ws)
	if err != nil {
		return err
	}
	for name, src := range map[string][]byte{"commands_table_gen.go": table, "commands_gen.go": methods} {
		out, err := gofmt(name, src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(outDir, name), out, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// docEntry is one command of COMMAND DOCS.
type docEntry struct {
	Summary     string               `json:"summary"`
	Group       string               `json:"group"`
	DocFlags    []string             `json:"doc_flags"`
	Arguments   []*arg               `json:"arguments"`
	Subcommands map[string]*docEntry `json:"subcommands"`
}

// loadSpec reads both dumps and joins them by name.
func loadSpec(dir string) (map[string]*command, string, error) {
	v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	if err != nil {
		return nil, "", err
	}
	version, ok := strings.CutPrefix(strings.TrimSpace(string(v)), "redis_version:")
	if !ok {
		return nil, "", fmt.Errorf("%s: want redis_version:X.Y.Z", filepath.Join(dir, "VERSION"))
	}
	var docs map[string]*docEntry
	if err := readJSON(filepath.Join(dir, "command-docs.json"), &docs); err != nil {
		return nil, "", err
	}
	var infos []json.RawMessage
	if err := readJSON(filepath.Join(dir, "command-info.json"), &infos); err != nil {
		return nil, "", err
	}
	// Flatten the docs so subcommands are found by their "config|get" name,
	// as COMMAND INFO names them.
	flat := map[string]*docEntry{}
	for name, d := range docs {
		flat[name] = d
		for sub, sd := range d.Subcommands {
			flat[sub] = sd
		}
	}
	cmds := map[string]*command{}
	var add func(raw json.RawMessage) error
	add = func(raw json.RawMessage) error {
		var f []json.RawMessage
		if err := json.Unmarshal(raw, &f); err != nil || len(f) < 10 {
			return fmt.Errorf("command-info.json: entry %.60s: want a 10-element array", raw)
		}
		var name string
		c := &command{}
		var subs []json.RawMessage
		for i, dst := range []any{&name, &c.Arity, &c.Flags, &c.FirstKey, &c.LastKey, &c.Step} {
			if err := json.Unmarshal(f[i], dst); err != nil {
				return fmt.Errorf("command-info.json: entry %.60s: field %d: %v", raw, i, err)
			}
		}
		if err := json.Unmarshal(f[9], &subs); err != nil {
			return fmt.Errorf("command-info.json: %s: subcommands: %v", name, err)
		}
		var tips []string
		if err := json.Unmarshal(f[7], &tips); err != nil {
			return fmt.Errorf("command-info.json: %s: tips: %v", name, err)
		}
		if err := c.setPolicies(tips); err != nil {
			return fmt.Errorf("command-info.json: %s: %v", name, err)
		}
		d := flat[name]
		if d == nil {
			return fmt.Errorf("command-docs.json has no entry for %q", name)
		}
		c.Name = strings.ToUpper(strings.ReplaceAll(name, "|", " "))
		c.Group, c.Summary, c.DocFlags, c.Args = d.Group, d.Summary, d.DocFlags, d.Arguments
		c.Container = len(subs) > 0
		cmds[c.Name] = c
		for _, s := range subs {
			if err := add(s); err != nil {
				return err
			}
		}
		return nil
	}
	for _, raw := range infos {
		if err := add(raw); err != nil {
			return nil, "", err
		}
	}
	if len(cmds) != len(flat) {
		return nil, "", fmt.Errorf("COMMAND INFO describes %d commands but COMMAND DOCS %d", len(cmds), len(flat))
	}
	return cmds, version, nil
}

// setPolicies takes the request and response policies from a command's
// tips ("request_policy:all_shards"). Other tips, such as
// nondeterministic_output, are of no use to the client.
func (c *command) setPolicies(tips []string) error {
	for _, tip := range tips {
		kind, value, _ := strings.Cut(tip, ":")
		var known map[string]string
		var dst *string
		switch kind {
		case "request_policy":
			known, dst = requestPolicies, &c.RequestPolicy
		case "response_policy":
			known, dst = responsePolicies, &c.ResponsePolicy
		default:
			continue
		}
		if known[value] == "" {
			return fmt.Errorf("unknown tip %q: add it to the generator and to policy.go", tip)
		}
		if *dst != "" {
			return fmt.Errorf("two %s tips", kind)
		}
		*dst = value
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// wrapper is one line of wrappers.txt:
//
//	COMMAND NAME <TAB> GoName <TAB> kind [<TAB> option]...
//
// with options args=NAMES (the docs arguments to take, in order, made
// required; a final ... keeps the rest as args), nil=WHEN (when the reply
// is nil), eg=EXAMPLE (what args may hold), note=SENTENCE (a misuse the
// doc comment warns of) and as=NAME:TYPE (the Go type of a parameter,
// where the docs' type is wrong). A GoName of "-" records a
// command left out on purpose, the third field saying why.
type wrapper struct {
	Line    int
	Cmd     string
	GoName  string
	Kind    string
	Picks   []string
	Nil     string
	NilElem string // an element is nil when this
	Example string
	Note    string            // a sentence for the doc comment: a misuse to avoid
	Types   map[string]string // docs argument name -> Go type
	Skip    bool
}

func loadWrappers(path string, cmds map[string]*command) ([]*wrapper, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ws []*wrapper
	seen := map[string]int{}    // Go name -> line
	listed := map[string]bool{} // commands with a line
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(format, a...))
		}
		fields := strings.Split(line, "\t")
		if len(fields) < 3 {
			return nil, fail("want COMMAND<TAB>GoName<TAB>kind, got %q", line)
		}
		w := &wrapper{Line: n, Cmd: fields[0], GoName: fields[1], Kind: fields[2]}
		c := cmds[w.Cmd]
		switch {
		case c == nil:
			return nil, fail("the spec has no command %q", w.Cmd)
		case w.GoName == "-":
			listed[w.Cmd] = true
			continue
		case c.Container:
			return nil, fail("%s is a container: wrap its subcommands", w.Cmd)
		case forbidden[w.Cmd] || strings.HasSuffix(w.Cmd, " HELP"):
			return nil, fail("%s must not get a typed method", w.Cmd)
		case !token.IsIdentifier(w.GoName) || !token.IsExported(w.GoName):
			return nil, fail("%q is not an exported Go name", w.GoName)
		case seen[w.GoName] != 0:
			return nil, fail("%s is already used on line %d", w.GoName, seen[w.GoName])
		}
		if _, ok := replyKinds[w.Kind]; !ok {
			return nil, fail("unknown reply kind %q", w.Kind)
		}
		for _, opt := range fields[3:] {
			k, v, _ := strings.Cut(opt, "=")
			switch k {
			case "args":
				w.Picks = strings.Fields(v)
			case "nil":
				w.Nil = v
			case "nilelem":
				w.NilElem = v
			case "eg":
				w.Example = v
			case "note":
				w.Note = v
			case "as":
				name, typ, _ := strings.Cut(v, ":")
				if goTypeEnc[typ] == "" {
					return nil, fail("as=%s: want NAME:TYPE, TYPE one of string, any, int64, float64", v)
				}
				if w.Types == nil {
					w.Types = map[string]string{}
				}
				w.Types[name] = typ
			default:
				return nil, fail("unknown option %q", opt)
			}
		}
		if w.NilElem != "" && (w.Kind != "values" || w.Nil != "") {
			return nil, fail("nilelem applies to values replies without nil=")
		}
		seen[w.GoName] = n
		listed[w.Cmd] = true
		ws = append(ws, w)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var missing []string
	for name, c := range cmds {
		if wrappedGroups[c.Group] && !listed[name] && !c.Container && !forbidden[name] && !strings.HasSuffix(name, " HELP") {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		fmt.Fprintf(os.Stderr, "cmdgen: warning: %s has no line for %d commands: %s\n", path, len(missing), strings.Join(missing, ", "))
	}
	slices.SortFunc(ws, func(a, b *wrapper) int {
		return cmp.Or(cmp.Compare(a.Cmd, b.Cmd), cmp.Compare(a.GoName, b.GoName))
	})
	return ws, nil
}

// varName is the Go variable holding a command's table entry: cmdGet,
// cmdConfigGet, cmdRestoreAsking.
func varName(cmd string) string {
	var b strings.Builder
	b.WriteString("cmd")
	for _, w := range strings.FieldsFunc(strings.ToLower(cmd), func(r rune) bool { return r == ' ' || r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}

func sortedNames(cmds map[string]*command) []string {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func genTable(header string, cmds map[string]*command) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("package redpipe\n\n")
	b.WriteString("// Each entry is a variable of its own so that the generated builders\n")
	b.WriteString("// reach it directly instead of through a map lookup per call.\n")
	b.WriteString("var (\n")
	vars := map[string]string{}
	for _, name := range sortedNames(cmds) {
		c := cmds[name]
		v := varName(name)
		if other, dup := vars[v]; dup {
			return nil, fmt.Errorf("%s and %s would both be %s", other, name, v)
		}
		vars[v] = name
		fmt.Fprintf(&b, "\t%s = &commandInfo{Name: %q, Arity: %d", v, name, c.Arity)
		var flags []string
		for _, f := range c.Flags {
			if k := flagConsts[f]; k != "" {
				flags = append(flags, k)
			}
		}
		if len(flags) > 0 {
			fmt.Fprintf(&b, ", Flags: %s", strings.Join(flags, " | "))
		}
		if c.FirstKey != 0 {
			fmt.Fprintf(&b, ", FirstKey: %d, LastKey: %d, Step: %d", c.FirstKey, c.LastKey, c.Step)
		}
		fmt.Fprintf(&b, ", Group: %q", c.Group)
		if c.RequestPolicy != "" {
			fmt.Fprintf(&b, ", RequestPolicy: %s", requestPolicies[c.RequestPolicy])
		}
		if c.ResponsePolicy != "" {
			fmt.Fprintf(&b, ", ResponsePolicy: %s", responsePolicies[c.ResponsePolicy])
		}
		b.WriteString("}\n")
	}
	b.WriteString(")\n\n")
	b.WriteString("// commandTable holds every command and subcommand of the server the\n")
	b.WriteString("// client was generated against, by upper-case name.\n")
	b.WriteString("var commandTable = map[string]*commandInfo{\n")
	for _, name := range sortedNames(cmds) {
		fmt.Fprintf(&b, "\t%q: %s,\n", name, varName(name))
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

func genMethods(header string, cmds map[string]*command, ws []*wrapper) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("package redpipe\n\nimport \"context\"\n")
	for _, w := range ws {
		c := cmds[w.Cmd]
		s, err := derive(c, w.Picks, w.Types)
		if err != nil {
			return nil, fmt.Errorf("wrappers.txt:%d: %s: %v", w.Line, w.Cmd, err)
		}
		genWrapper(&b, c, w, s)
	}
	return b.Bytes(), nil
}

// runners are the receivers of the typed methods that run a command at
// once. Each type has a method run(ctx, *cmdBuf) (Value, error): a Client
// on its shared connection, a Tx on its own connection.
var runners = []string{"c *Client", "t *Tx"}

func genWrapper(b *bytes.Buffer, c *command, w *wrapper, s *signature) {
	enc := "enc" + w.GoName
	kind := replyKinds[w.Kind]

	// Parameter list, consecutive parameters of one type sharing it.
	var decl, call []string
	for i, p := range s.Params {
		switch {
		case p.Variadic:
			call = append(call, p.Name+"...")
			decl = append(decl, p.Name+" ..."+p.Type)
		case i+1 < len(s.Params) && !s.Params[i+1].Variadic && s.Params[i+1].Type == p.Type:
			call = append(call, p.Name)
			decl = append(decl, p.Name)
		default:
			call = append(call, p.Name)
			decl = append(decl, p.Name+" "+p.Type)
		}
	}
	if s.HasRest {
		decl = append(decl, "args ...any")
		call = append(call, "args...")
	}
	params := strings.Join(decl, ", ")
	args := strings.Join(call, ", ")

	// The short command line: what the typed parameters cover.
	short := []string{c.Name}
	for _, st := range s.Steps {
		switch {
		case st.IsLit:
			short = append(short, st.Lit)
		case st.P.Variadic:
			short = append(short, st.P.Doc+" ["+st.P.Doc+" ...]")
		default:
			short = append(short, st.P.Doc)
		}
	}
	shortLine := strings.Join(short, " ")
	if s.HasRest {
		shortLine += " followed by args"
	}

	// Encoder.
	count := strconv.Itoa(c.words() + s.fixedWords())
	if v := s.variadic(); v != nil {
		count += "+len(" + v.Name + ")"
	}
	if s.HasRest {
		count += "+len(args)"
	}
	b.WriteString("\n")
	writeDoc(b, fmt.Sprintf("%s encodes %s.", enc, shortLine))
	fmt.Fprintf(b, "func %s(w *cmdBuf", enc)
	if params != "" {
		b.WriteString(", " + params)
	}
	fmt.Fprintf(b, ") {\n\tw.start(%s, %s)\n", varName(c.Name), count)
	for _, st := range s.Steps {
		switch {
		case st.IsLit:
			fmt.Fprintf(b, "\tw.str(%q)\n", st.Lit)
		case !st.P.Variadic:
			fmt.Fprintf(b, "\tw.%s(%s)\n", st.P.Enc, st.P.Name)
		case st.P.Enc == "arg":
			fmt.Fprintf(b, "\tw.args(%s)\n", st.P.Name)
		case st.P.Enc == "str":
			fmt.Fprintf(b, "\tw.strs(%s)\n", st.P.Name)
		default:
			fmt.Fprintf(b, "\tfor _, x := range %s {\n\t\tw.%s(x)\n\t}\n", st.P.Name, st.P.Enc)
		}
	}
	if s.HasRest {
		b.WriteString("\tw.args(args)\n")
	}
	b.WriteString("\tw.end()\n}\n")

	// Methods for Client and Tx: the same doc and body, each calling its
	// own run.
	var doc bytes.Buffer
	writeDoc(&doc, w.GoName+" "+describe(c.Summary)+"."+nilNote(w))
	fmt.Fprintf(&doc, "//\n//\t%s\n", strings.TrimSpace(c.Name+" "+syntax(s.Shown)))
	var notes []string
	if s.Reordered {
		v := s.variadic()
		notes = append(notes, fmt.Sprintf("The %s come last here, unlike on the wire, so that they can be variadic.", v.Name))
	}
	if s.HasRest {
		notes = append(notes, restNote(s, w))
	}
	if w.Note != "" {
		notes = append(notes, w.Note)
	}
	if len(notes) > 0 {
		doc.WriteString("//\n")
		writeDoc(&doc, strings.Join(notes, " "))
	}
	for _, recv := range runners {
		b.WriteString("\n")
		b.Write(doc.Bytes())
		fmt.Fprintf(b, "func (%s) %s(ctx context.Context", recv, w.GoName)
		if params != "" {
			b.WriteString(", " + params)
		}
		fmt.Fprintf(b, ") %s {\n\tw := getBuf()\n\t%s(w", kind.results, enc)
		if args != "" {
			b.WriteString(", " + args)
		}
		if kind.probe != "" {
			fmt.Fprintf(b, ")\n\tprobe := %s(w)\n\tv, err := %s.run(ctx, w)\n\treturn %s(v, err, probe)\n}\n", kind.probe, strings.Fields(recv)[0], kind.conv)
			continue
		}
		fmt.Fprintf(b, ")\n\treturn %s(%s.run(ctx, w))\n}\n", kind.conv, strings.Fields(recv)[0])
	}

	for _, q := range queues {
		b.WriteString("\n")
		writeDoc(b, fmt.Sprintf("%s queues %s. %s%s", w.GoName, shortLine, q.reply, readNote(w)))
		fmt.Fprintf(b, "func (%s %s) %s(%s) %s {\n\t%s(&%s", q.name, q.typ, w.GoName, params, q.typ, enc, q.buf)
		if args != "" {
			b.WriteString(", " + args)
		}
		fmt.Fprintf(b, ")\n\treturn %s\n}\n", q.name)
	}
}

// queues are the receivers of the typed methods that queue a command
// instead of running it: their receiver, its type, the cmdBuf they encode
// into and where the reply goes.
var queues = []struct{ name, typ, buf, reply string }{
	{"p", "*Pipeline", "p.w", "Its reply comes from Exec."},
	{"s", "*Stream", "s.p.w", "Its reply goes to the stream's function."},
}

// readNote tells, for a queued command whose typed method returns what no
// single Value method obviously gives, which Value method reads its reply.
func readNote(w *wrapper) string {
	if w.Kind == "scored" {
		return " Value.Scored reads it."
	}
	return ""
}

// restNote tells what the final args parameter holds.
func restNote(s *signature, w *wrapper) string {
	if s.Rest == nil {
		if w.Example != "" {
			return "args holds the arguments after the command name, such as " + w.Example + "; the server's documentation does not list them."
		}
		return "args holds the arguments after the command name; the server's documentation does not list them."
	}
	if r := s.Rest; len(r) == 1 && r[0].optional() && !r[0].multiple() && r[0].Token == "" {
		if _, _, ok := simpleParam(r[0]); ok && r[0].Type != "oneof" {
			return "args holds the optional " + r[0].Name + ", if any."
		}
	}
	var note string
	if len(s.Steps) == 0 {
		note = "args holds the arguments of that syntax"
	} else {
		last := s.Steps[len(s.Steps)-1]
		after := last.Lit
		if !last.IsLit {
			after = last.P.Doc
		}
		note = "args holds what follows " + after + " in that syntax"
	}
	eg := w.Example
	if eg == "" {
		eg = example(s.Rest)
	}
	if eg != "" {
		note += ", such as " + eg
	}
	return note + "."
}

func nilNote(w *wrapper) string {
	if w.NilElem != "" {
		return " An element is nil when " + w.NilElem + "."
	}
	switch {
	case w.Nil == "":
		return ""
	case w.Kind == "value":
		return " The reply is nil when " + w.Nil + "."
	}
	return " It returns ErrNil when " + w.Nil + "."
}

// describe turns the docs' summary, an imperative ("Get the value of a
// key"), into the rest of a Go doc sentence ("returns the value of a key").
func describe(summary string) string {
	summary = strings.TrimSuffix(strings.TrimSpace(summary), ".")
	words := strings.Fields(summary)
	if len(words) == 0 {
		return "runs the command"
	}
	i := 0
	if len(words) > 1 && strings.HasSuffix(words[0], "ly") { // "Atomically transfer..."
		i = 1
	}
	words[0] = strings.ToLower(words[0][:1]) + words[0][1:]
	words[i] = thirdPerson(words[i])
	// Later verbs joined by and/or agree too: "removes and gets the first
	// element, or blocks until one is available".
	for j := i + 1; j < len(words); j++ {
		prev := words[j-1]
		if strings.HasSuffix(prev, "ly") && j >= 2 { // "and optionally set"
			prev = words[j-2]
		}
		if (prev == "and" || prev == "or" || prev == "then" || strings.HasSuffix(prev, ",")) && laterVerbs[words[j]] {
			words[j] = thirdPerson(words[j])
		}
	}
	return strings.Join(words, " ")
}

// laterVerbs are the verbs the docs' summaries use after "and" or "or".
var laterVerbs = map[string]bool{
	"get": true, "set": true, "delete": true, "remove": true, "block": true,
	"update": true, "store": true, "return": true, "promote": true,
	"push": true, "prepend": true, "create": true, "shut": true,
}

func thirdPerson(verb string) string {
	lower := strings.ToLower(verb)
	switch {
	case lower == "get" || lower == "return":
		return "returns"
	case lower == "a" || lower == "an" || lower == "internal":
		return "is " + lower
	case strings.HasSuffix(lower, "ing") && len(lower) > 5: // "Deleting all functions", but not "Ping"
		return strings.TrimSuffix(lower, "ing") + "es"
	case strings.HasSuffix(lower, "s") && !strings.HasSuffix(lower, "ss"):
		return lower // already "Returns", "Sets"
	case strings.HasSuffix(lower, "sh") || strings.HasSuffix(lower, "ch") || strings.HasSuffix(lower, "ss") ||
		strings.HasSuffix(lower, "x") || strings.HasSuffix(lower, "o"):
		return lower + "es"
	case strings.HasSuffix(lower, "y") && !strings.ContainsAny(lower[len(lower)-2:len(lower)-1], "aeiou"):
		return lower[:len(lower)-1] + "ies"
	}
	return lower + "s"
}

// writeDoc writes text as // comment lines of at most about 76 columns.
func writeDoc(b *bytes.Buffer, text string) {
	line := "//"
	for _, word := range strings.Fields(text) {
		if len(line)+1+len(word) > 76 && line != "//" {
			b.WriteString(line + "\n")
			line = "//"
		}
		line += " " + word
	}
	b.WriteString(line + "\n")
}

var errPos = regexp.MustCompile(`^(\d+):(\d+): `)

// gofmt formats generated source, and on failure shows the offending line
// so the generator can be fixed.
func gofmt(name string, src []byte) ([]byte, error) {
	out, err := format.Source(src)
	if err == nil {
		return out, nil
	}
	msg := fmt.Sprintf("%s: gofmt: %v", name, err)
	if m := errPos.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		lines := strings.Split(string(src), "\n")
		if n >= 1 && n <= len(lines) {
			msg += fmt.Sprintf("\n%d:\t%s", n, lines[n-1])
		}
	}
	return nil, fmt.Errorf("%s", msg)
}
