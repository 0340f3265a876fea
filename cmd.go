package redpipe

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpipe/redpipe/internal/bufpool"
	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/resp"
)

//go:generate go run ./internal/cmdgen -spec internal/cmdgen/spec -out .

// cmdFlags are the command flags of the server's COMMAND INFO that the
// client acts on.
type cmdFlags uint32

const (
	flagWrite cmdFlags = 1 << iota
	flagReadonly
	flagBlocking
	flagAdmin
	flagPubSub
	flagNoScript
	flagLoading
	flagStale
	flagFast
	flagNoMulti
	flagMovableKeys
	flagNoAuth

	// flagConnState marks commands that change or depend on the state of
	// one connection (transactions, database, auth, subscriptions). They
	// never run on a shared connection. Set at init, not by the server.
	flagConnState
	// flagKeysSpan marks commands whose keys may lie in several slots of
	// a cluster, which refuses them then, and which the cluster client
	// does not split by slot; and those of flagSlotArg, whose argument
	// may be no slot. Routing may refuse them, so a pipeline that holds
	// one is routed whole before any of it is sent. Set at init, from
	// the key positions.
	flagKeysSpan
	// flagRunsCode marks the commands that run a script or function,
	// whose error reply may be the code's own (see runsCode). Set at init.
	flagRunsCode
	// flagSlotArg marks the commands that name a slot, rather than a
	// key, after their name: a cluster sends them to the master of that
	// slot, since any other answers of its own keys, none (see slotArg).
	// Set at init.
	flagSlotArg
)

// connStateCommands are the commands given flagConnState.
var connStateCommands = []string{
	"WATCH", "UNWATCH", "MULTI", "EXEC", "DISCARD", "SELECT", "AUTH", "HELLO",
	"QUIT", "RESET", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE",
	"PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", "REPLCONF",
	"CLIENT REPLY", "CLIENT TRACKING", "CLIENT SETNAME", "CLIENT NO-EVICT",
	"CLIENT CACHING", "READONLY", "READWRITE", "ASKING", "SCRIPT DEBUG",
}

// newerConnStateCommands change the state of their connection on servers
// newer than the table, which does not list them: found as the CLIENT
// container, they would run on the shared connection, whose every caller
// would then have its keys' access times left alone (NO-TOUCH) or its
// library named. lookupCommand finds them by their own entries, flagged
// flagConnState and without an arity, which the server judges.
var newerConnStateCommands = []string{"CLIENT NO-TOUCH", "CLIENT SETINFO"}

// newerCommands holds the entries of newerConnStateCommands that the table
// lacks, by name; read-only after init.
var newerCommands = map[string]*commandInfo{}

// slotArgCommands are the commands given flagSlotArg.
var slotArgCommands = []string{"CLUSTER COUNTKEYSINSLOT", "CLUSTER GETKEYSINSLOT"}

// codeCommands are the commands given flagRunsCode.
var codeCommands = []string{"EVAL", "EVALSHA", "FCALL", "EVAL_RO", "EVALSHA_RO", "FCALL_RO"}

// commandInfo describes one command (or subcommand) as the server's
// COMMAND INFO does. The generated table holds one per command.
type commandInfo struct {
	Name     string // upper case, subcommands with a space: "GET", "CONFIG GET"
	Arity    int    // n: exactly n words; -n: at least n (the name counts)
	Flags    cmdFlags
	FirstKey int // position of the first key, 0 if none
	LastKey  int // position of the last key, negative counts from the end
	Step     int
	Group    string
	// RequestPolicy and ResponsePolicy are the command's request_policy
	// and response_policy tips: which nodes of a cluster it goes to, and
	// how their replies make one (see policy.go). Zero is the default
	// policy of a command without the tip.
	RequestPolicy  requestPolicy
	ResponsePolicy responsePolicy

	wire   []byte // the name already encoded as bulk strings, filled in at init
	nwords int    // how many words of a command line make up the name
	id     uint32 // its number, for cmdMeta
}

func (ci *commandInfo) has(f cmdFlags) bool { return ci.Flags&f != 0 }

// blockingCommands may hold their connection for as long as their timeout
// says without being flagged blocking in the server's table.
var blockingCommands = []string{"WAIT"}

func init() {
	for _, name := range blockingCommands {
		if ci := commandTable[name]; ci != nil {
			ci.Flags |= flagBlocking
		}
	}
	for _, name := range connStateCommands {
		if ci := commandTable[name]; ci != nil {
			ci.Flags |= flagConnState
		}
	}
	for _, name := range codeCommands {
		if ci := commandTable[name]; ci != nil {
			ci.Flags |= flagRunsCode
		}
	}
	for _, name := range slotArgCommands {
		if ci := commandTable[name]; ci != nil {
			ci.Flags |= flagSlotArg | flagKeysSpan
		}
	}
	names := make([]string, 0, len(commandTable))
	for name, ci := range commandTable {
		if ci.has(flagMovableKeys) || (ci.FirstKey > 0 && ci.LastKey != ci.FirstKey && !splittable(ci)) {
			ci.Flags |= flagKeysSpan
		}
		names = append(names, name)
		for _, w := range strings.Fields(ci.Name) {
			ci.wire = resp.AppendBulkString(ci.wire, w)
			ci.nwords++
		}
	}
	slices.Sort(names)
	for _, name := range names {
		ci := commandTable[name]
		ci.id = uint32(len(knownCommands))
		knownCommands = append(knownCommands, ci)
	}
	extraCommands.Store(&[]*commandInfo{})
	unknownMu.Lock()
	// Nameless, so that no command by a name can take it.
	unlistedCommand = addCommand(&commandInfo{})
	for _, name := range newerConnStateCommands {
		if commandTable[name] != nil {
			continue
		}
		ci := &commandInfo{Name: name, Flags: flagConnState, Group: "connection"}
		for _, w := range strings.Fields(name) {
			ci.wire = resp.AppendBulkString(ci.wire, w)
			ci.nwords++
		}
		ci = addCommand(ci)
		unknownCommands.Delete(name) // found as a subcommand, not as a name with a space
		newerCommands[name] = ci
	}
	unknownMu.Unlock()
}

// lookupCommand finds the table entry for a command line given as its first
// words, without allocating for names of ordinary length. Containers such
// as CONFIG resolve to their subcommand when one is given. A name with a
// space finds nothing: the table names subcommands "CONFIG GET", but the
// server reads a word "CONFIG GET" as a command name it does not know.
func lookupCommand(name, sub string) *commandInfo {
	if strings.IndexByte(name, ' ') >= 0 {
		return nil
	}
	var buf [48]byte
	key := appendUpper(buf[:0], name)
	ci := commandTable[string(key)]
	if ci == nil || sub == "" {
		return ci
	}
	key = append(key, ' ')
	key = appendUpper(key, sub)
	if sc := commandTable[string(key)]; sc != nil {
		return sc
	}
	if sc := newerCommands[string(key)]; sc != nil {
		return sc
	}
	return ci
}

func appendUpper(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// cmdMeta records one encoded command of a cmdBuf. A pipeline of a
// million commands keeps a million of them, so it is small and holds no
// pointer, which spares the garbage collector from scanning them: the
// command's table entry is found by its id. It is the id (commandInfo.id)
// with metaBlocks set when the command may block its connection (see
// cmdBuf.blocks): four bytes a command.
type cmdMeta uint32

const metaBlocks cmdMeta = 1 << 31

func metaOf(ci *commandInfo) cmdMeta { return cmdMeta(ci.id) }

func (m *cmdMeta) info() *commandInfo { return commandByID(uint32(*m &^ metaBlocks)) }

// Name is the command's upper-case name.
func (m *cmdMeta) Name() string { return m.info().Name }

// The command entries by id: those of the generated table, numbered at
// init and read-only after, then those made for unknown commands.
var (
	knownCommands []*commandInfo
	unknownMu     sync.Mutex                     // serialises additions to extraCommands
	extraCommands atomic.Pointer[[]*commandInfo] // copy-on-write
)

func commandByID(id uint32) *commandInfo {
	if int(id) < len(knownCommands) {
		return knownCommands[id]
	}
	return (*extraCommands.Load())[int(id)-len(knownCommands)]
}

// unknownCommands caches the entries made for commands the table does not
// know (module commands, newer servers), bounded so that arbitrary names
// cannot grow it forever: past the bound they share one entry, but for
// the names Decoders are registered for (see keepUnknownName).
var unknownCommands sync.Map // upper-case name -> *commandInfo

// maxUnknownCommands is the bound (a variable for tests).
var maxUnknownCommands = 4096

// unlistedCommand is the entry of unknown commands past the bound.
var unlistedCommand *commandInfo

func unknownCommand(name string) *commandInfo {
	name = strings.ToUpper(name)
	if ci, ok := unknownCommands.Load(name); ok {
		return ci.(*commandInfo)
	}
	unknownMu.Lock()
	defer unknownMu.Unlock()
	if ci, ok := unknownCommands.Load(name); ok {
		return ci.(*commandInfo)
	}
	if len(*extraCommands.Load()) >= maxUnknownCommands {
		return unlistedCommand
	}
	return addCommand(unknownEntry(name))
}

// unknownEntry makes the entry of name, upper case, a command the table
// does not know.
func unknownEntry(name string) *commandInfo {
	ci := &commandInfo{Name: name}
	if name == "WAITAOF" {
		// Newer than the table, and blocking as WAIT is.
		ci.Flags |= flagBlocking
	}
	return ci
}

// keepUnknownName makes sure that name, upper case and one word, a command
// the table does not know that a Decoder is registered for, has an entry
// of its own whatever maxUnknownCommands says, so that its replies carry
// the name the Decoder is found by: past the bound they would carry none,
// and the Decoder would never run. Such names are the program's own, as
// many as it registers Decoders for, not arbitrary ones.
func keepUnknownName(name string) {
	if _, ok := unknownCommands.Load(name); ok {
		return
	}
	unknownMu.Lock()
	defer unknownMu.Unlock()
	if _, ok := unknownCommands.Load(name); !ok {
		addCommand(unknownEntry(name))
	}
}

// addCommand numbers an entry made after init and publishes it; the
// caller holds unknownMu.
func addCommand(ci *commandInfo) *commandInfo {
	old := *extraCommands.Load()
	ci.id = uint32(len(knownCommands) + len(old))
	extra := append(old[:len(old):len(old)], ci)
	extraCommands.Store(&extra)
	if ci.Name != "" {
		unknownCommands.Store(ci.Name, ci)
	}
	return ci
}

// cmdBuf accumulates encoded commands: one for a plain call, many for a
// pipeline. Every command builder, generated or Do, writes into one, so a
// command is defined once and runs on a Client, a Pipeline and a Tx alike.
// The first error (arity, argument type) is kept and the batch refused.
type cmdBuf struct {
	buf    []byte
	cmds   []cmdMeta
	err    error
	errIdx int // index of the command err belongs to
	// errName names that command when it was refused before it was
	// queued (a Do without a name): the next command queued takes its index.
	errName string

	// What the commands encoded so far add up to, kept by end() so that a
	// large batch is not walked again before it is sent.
	writes   bool       // some command is not flagged read-only
	blocking bool       // some command may block its connection
	grace    conn.Grace // the longest a blocking command may keep the server quiet
	stateAt  int        // 1 + the index of the first connection-state command; 0 if none
	keysSpan bool       // some command's keys may lie in several slots (flagKeysSpan)

	// decodeAs, if set, names the command whose Decoder decodes the reply
	// of a single command, in place of its own: Script.Run's EVAL stands
	// for the EVALSHA the caller asked for.
	decodeAs string

	// slots is set for a cluster's plain pipeline: end then records in
	// routes, for each command, where it ends and what routeOf says of
	// its key, so that routing does not read the commands again.
	slots  bool
	routes []uint64

	// state of the command being encoded
	want, got int
	open      bool         // set by start and do, cleared by end: see unfinished
	begin     int          // offset in buf of its first byte
	cur       *commandInfo // its table entry

	// full, when set, is called after a command once buf holds
	// streamChunk bytes or more: a Stream sends them then.
	full func()

	// pooled is set for a pipeline's buffer, which grows through the
	// buffer pools and falls back to firstBuf and firstCmds, the storage
	// it was made with, when reset (see room and release).
	pooled            bool
	firstBuf          []byte
	firstCmds         []cmdMeta
	lastBuf, lastCmds int // the sizes the last batch needed
}

// start begins a command of n words (the name included) described by ci.
func (w *cmdBuf) start(ci *commandInfo, n int) {
	w.unfinished()
	w.open = true
	w.room()
	w.checkArity(ci, n, len(w.cmds))
	w.begin, w.cur = len(w.buf), ci
	w.buf = resp.AppendArrayLen(w.buf, n)
	w.buf = append(w.buf, ci.wire...)
	w.cmds = append(w.cmds, metaOf(ci))
	w.want, w.got = n, ci.nwords
}

// checkArity refuses command idx, ci with n words, if the table says it
// takes another number.
func (w *cmdBuf) checkArity(ci *commandInfo, n, idx int) {
	if w.err != nil {
		return
	}
	// A command of keys each followed by its values (MSET) takes them
	// whole: cut short, its last key has no value, which one server
	// refuses by its arity while a cluster, finding keys of several
	// slots, would refuse it as CROSSSLOT.
	if (ci.Arity > 0 && n != ci.Arity) || (ci.Arity < 0 && n < -ci.Arity) ||
		(ci.Step > 1 && ci.LastKey == -1 && (n-ci.FirstKey)%ci.Step != 0) {
		w.setErr(&ArityError{Command: ci.Name, Arity: ci.Arity, Got: n}, idx)
	}
}

// end closes the current command.
func (w *cmdBuf) end() {
	w.open = false
	if w.got != w.want {
		// A builder miscounted: refuse rather than send a corrupt stream.
		w.setErr(&UsageError{Msg: "internal: command " + w.cmds[len(w.cmds)-1].Name() +
			" encoded " + strconv.Itoa(w.got) + " of " + strconv.Itoa(w.want) + " words"}, len(w.cmds)-1)
	}
	// One test of the flags for the common command, which only writes or
	// only reads.
	if f := w.cur.Flags; f&(flagReadonly|flagBlocking|flagConnState|flagKeysSpan) != flagReadonly {
		w.writes = w.writes || f&flagReadonly == 0
		w.keysSpan = w.keysSpan || f&flagKeysSpan != 0
		if f&flagBlocking != 0 && blocks(w.cur, w.buf[w.begin:]) {
			w.cmds[len(w.cmds)-1] |= metaBlocks
			w.blocking = true
			w.grace = longerGrace(w.grace, blockGrace(w.cur, w.buf[w.begin:]))
		}
		if f&flagConnState != 0 && w.stateAt == 0 {
			w.stateAt = len(w.cmds)
		}
	}
	if w.cur.Flags&flagRunsCode != 0 && w.err == nil {
		w.checkNumKeys(len(w.cmds) - 1)
	}
	if w.slots {
		if err := oneServerCommand(w.cur); err != nil {
			w.setErr(err, len(w.cmds)-1)
		}
		w.routes = append(w.routes, uint64(len(w.buf))<<16|uint64(routeOf(w.cur, w.buf[w.begin:])))
	}
	if w.full != nil && len(w.buf) >= streamChunk {
		w.full()
	}
}

// checkNumKeys refuses command idx, the current one, a script or function
// call (EVAL, EVALSHA, FCALL and their read-only forms), if the server
// would refuse its numkeys: not a count as the server writes one (no
// sign, no leading zero), or more than the words after it. Sent, the
// server's refusal would read as the script's own error, which may follow
// its writes, though nothing ran.
func (w *cmdBuf) checkNumKeys(idx int) {
	ws, ok := newWords(w.buf[w.begin:])
	if !ok || ws.n < 3 {
		return // the arity check speaks for it
	}
	word, _ := ws.at(2)
	// The server reads a count with no leading zero ("01" is not a
	// number to it), which parseCount, for routing, does not mind.
	if k, ok := parseCount(word); ok && k <= ws.n-3 && (len(word) == 1 || word[0] != '0') {
		return // as numKeys would find it, without collecting the keys
	}
	w.setErr(&ArgError{Command: w.cur.Name, Index: 2, Err: fmt.Errorf(
		"numkeys %q must be the number of keys that follow it, from 0 to %d (the words after it)", word, ws.n-3)}, idx)
}

// blocks reports whether command i may block the connection it runs on.
func (w *cmdBuf) blocks(i int) bool { return w.cmds[i]&metaBlocks != 0 }

// blocks reports whether a command, encoded as cmd, may block: BLPOP and
// the like always, XREAD and XREADGROUP only with BLOCK, which the
// server's table cannot tell apart.
func blocks(ci *commandInfo, cmd []byte) bool {
	if !ci.has(flagBlocking) {
		return false
	}
	if ci.Name != "XREAD" && ci.Name != "XREADGROUP" {
		return true
	}
	return xreadBlock(slices.Collect(words(cmd))) > 0
}

// xreadBlock returns the index in ws, the words of an XREAD or XREADGROUP,
// of the timeout that BLOCK gives among the options before STREAMS (which
// may be len(ws) when it is missing), or 0 when there is no BLOCK. The
// options come in any order; their values, and the keys and IDs after
// STREAMS, are not options, so a group, consumer or stream named BLOCK
// is not taken for one.
func xreadBlock(ws [][]byte) int {
	for i := 1; i < len(ws); i++ {
		switch {
		case bytes.EqualFold(ws[i], []byte("STREAMS")):
			return 0
		case bytes.EqualFold(ws[i], []byte("BLOCK")):
			return i + 1
		case bytes.EqualFold(ws[i], []byte("COUNT")):
			i++
		case bytes.EqualFold(ws[i], []byte("GROUP")):
			i += 2
		}
	}
	return 0
}

// wordAt returns word i (0 for the first) of an encoded command, or nil if
// it has fewer.
func wordAt(cmd []byte, i int) []byte {
	for w := range words(cmd) {
		if i == 0 {
			return w
		}
		i--
	}
	return nil
}

// words yields the words of an encoded command (an array of bulk strings,
// as cmdBuf writes them), its name first.
func words(cmd []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		ws, ok := newWords(cmd)
		for ok {
			var w []byte
			if w, ok = ws.next(); ok && !yield(w) {
				return
			}
		}
	}
}

// blockGrace is how long a blocking command, encoded as cmd, may keep the
// server from answering: the timeout it gives. A timeout of 0 waits for
// ever, and one that cannot be read (which the server refuses at once) or
// a blocking command not known here may too: those get conn.NoStallLimit.
// XREAD and XREADGROUP without BLOCK before STREAMS do not block.
func blockGrace(ci *commandInfo, cmd []byte) conn.Grace {
	ws := slices.Collect(words(cmd))
	timeout := func(i int, unit time.Duration) conn.Grace {
		if i < 1 || i >= len(ws) {
			return conn.NoStallLimit
		}
		return timeoutGrace(ws[i], unit)
	}
	switch ci.Name {
	case "BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX", "BRPOPLPUSH", "BLMOVE":
		return timeout(len(ws)-1, time.Second)
	case "BLMPOP", "BZMPOP":
		return timeout(1, time.Second)
	case "WAIT":
		return timeout(len(ws)-1, time.Millisecond)
	case "XREAD", "XREADGROUP":
		if i := xreadBlock(ws); i > 0 {
			return timeout(i, time.Millisecond)
		}
		return 0
	}
	return conn.NoStallLimit
}

// maxGrace bounds a readable timeout (about 146 years), so that adding
// the stall timeout to it cannot overflow.
const maxGrace = 1 << 62

// timeoutGrace reads a timeout argument given in unit.
func timeoutGrace(arg []byte, unit time.Duration) conn.Grace {
	f, err := strconv.ParseFloat(string(arg), 64)
	if err != nil || !(f > 0) || f*float64(unit) >= maxGrace {
		return conn.NoStallLimit
	}
	return conn.Grace(f * float64(unit))
}

// longerGrace is the Grace of a batch holding commands of grace a and b.
func longerGrace(a, b conn.Grace) conn.Grace {
	if a == conn.NoStallLimit || b == conn.NoStallLimit {
		return conn.NoStallLimit
	}
	return max(a, b)
}

// unfinished refuses the batch when its last command was begun and never
// ended: a method of one of its arguments (MarshalBinary, MarshalText,
// String) panicked, and the caller recovered and went on, or a deferred
// Close or Exec is sending what was queued. Its bytes stop short of what
// its header announces, and sent, they would make the server take the
// next command for the rest of it, or wait for ever for that rest.
func (w *cmdBuf) unfinished() {
	if !w.open {
		return
	}
	w.open = false
	w.setErr(&UsageError{Msg: "the encoding of " + w.cur.Name + " did not finish: a method of one of its arguments " +
		"(MarshalBinary, MarshalText, String) panicked"}, len(w.cmds)-1)
}

// setErr keeps the first encoding error and the index of its command.
func (w *cmdBuf) setErr(err error, idx int) {
	if w.err == nil {
		w.err, w.errIdx = err, idx
	}
}

// errCommand names the command the encoding error belongs to, or "" when
// it came before any command was named.
func (w *cmdBuf) errCommand() string {
	if w.errName != "" {
		return w.errName
	}
	if w.errIdx >= 0 && w.errIdx < len(w.cmds) {
		return w.cmds[w.errIdx].Name()
	}
	return ""
}

func (w *cmdBuf) key(s string) { w.buf = resp.AppendBulkString(w.buf, s); w.got++ }
func (w *cmdBuf) str(s string) { w.buf = resp.AppendBulkString(w.buf, s); w.got++ }
func (w *cmdBuf) int(i int64)  { w.buf = resp.AppendBulkInt(w.buf, i); w.got++ }
func (w *cmdBuf) float(f float64) {
	w.buf = resp.AppendBulkFloat(w.buf, f)
	w.got++
}

func (w *cmdBuf) arg(a any) {
	w.got++
	if b, ok := resp.AppendBuiltin(w.buf, a); ok {
		w.buf = b
		return
	}
	w.marshal(a)
}

// marshal encodes an argument of a type without a built-in encoding (see
// resp.AppendMarshaled), apart from the common path of arg. Calling the
// argument's methods makes it escape, so an argument boxed at the call of
// a command, rather than a constant, costs an allocation whatever its type.
func (w *cmdBuf) marshal(a any) {
	var err error
	switch a.(type) {
	case Value, *Value:
		// Its String method is for people ("nil", "(error) ...").
		err = errValueArg
	default:
		var b []byte
		if b, err = resp.AppendMarshaled(w.buf, a); err == nil {
			w.buf = b
			return
		}
	}
	w.setErr(&ArgError{Command: w.cmds[len(w.cmds)-1].Name(), Index: w.got - 1, Err: err}, len(w.cmds)-1)
	// Keep the stream well formed in case the buffer is inspected; it is
	// never sent while err is set.
	w.buf = resp.AppendBulkString(w.buf, "")
}

var errValueArg = errors.New("a Value is a reply, not an argument: pass what its Text, Bytes, Int64 or Float64 returns")

func (w *cmdBuf) strs(ss []string) {
	for _, s := range ss {
		w.str(s)
	}
}

func (w *cmdBuf) args(as []any) {
	for _, a := range as {
		w.arg(a)
	}
}

func isString(a any) bool { _, ok := a.(string); return ok }

// do encodes a command given as words, looking it up in the table for its
// arity and flags. Commands the table does not know are sent as they are:
// the server judges them.
func (w *cmdBuf) do(args []any) {
	w.unfinished()
	if len(args) == 0 || !isString(args[0]) {
		msg := "Do needs a command name"
		if len(args) > 0 {
			msg = "the first argument of Do must be the command name as a string"
		}
		if w.err == nil {
			w.errName = "Do"
		}
		w.setErr(&UsageError{Msg: msg}, len(w.cmds))
		return
	}
	name := args[0].(string)
	// The subcommand decides the flags of a container command (CLIENT
	// REPLY is refused on the shared connection, CLIENT ID is not), so it is
	// read whatever its Go type: a string or []byte here, anything else
	// from its encoding, which may be a marshaler's text.
	sub, encodedSub := "", false
	if len(args) > 1 {
		switch a := args[1].(type) {
		case string:
			sub = a
		case []byte:
			sub = string(a)
		default:
			encodedSub = true
		}
	}
	w.room()
	ci := lookupCommand(name, sub)
	w.open = true
	w.begin = len(w.buf)
	if ci == nil {
		w.cur = unknownCommand(name)
		w.buf = resp.AppendArrayLen(w.buf, len(args))
		w.cmds = append(w.cmds, metaOf(w.cur))
		w.want, w.got = len(args), 0
		w.args(args)
		w.end()
		return
	}
	// The caller's spelling of the name is sent as given; the table only
	// tells the arity and flags.
	w.checkArity(ci, len(args), len(w.cmds))
	w.cur = ci
	w.buf = resp.AppendArrayLen(w.buf, len(args))
	w.cmds = append(w.cmds, metaOf(ci))
	w.want, w.got = len(args), 0
	w.args(args)
	if encodedSub {
		if sc := lookupCommand(name, string(wordAt(w.buf[w.begin:], 1))); sc != ci {
			w.cur = sc
			w.cmds[len(w.cmds)-1] = metaOf(sc)
			w.checkArity(sc, len(args), len(w.cmds)-1)
		}
	}
	w.end()
}

// reset empties the buffer for reuse.
func (w *cmdBuf) reset() {
	w.buf = w.buf[:0]
	w.cmds = w.cmds[:0]
	w.err, w.errIdx, w.errName = nil, 0, ""
	w.want, w.got, w.open = 0, 0, false
	w.writes, w.blocking, w.grace, w.stateAt, w.keysSpan = false, false, 0, 0, false
	w.decodeAs = ""
	w.routes = w.routes[:0]
}

// A pipeline's buffers grow through pools of recycled ones once they are
// large (see internal/bufpool): from minPooledBytes of encoded commands and
// minPooledMetas command records. Smaller ones grow by append as usual.
const (
	minPooledBytes = 4 << 10
	minPooledMetas = 256
	// roomBytes is the space a pipeline makes sure of before each command
	// (smallRoomBytes while in its first storage); a larger command grows
	// the buffer by append.
	roomBytes      = 1 << 10
	smallRoomBytes = 64
)

var (
	bytePools  = bufpool.New[byte](minPooledBytes)
	metaPools  = bufpool.New[cmdMeta](minPooledMetas)
	routePools = bufpool.New[uint64](minPooledMetas)
)

// room makes sure a pipeline's buffers have space for the next command
// once they are large enough to come from the pools.
func (w *cmdBuf) room() {
	if !w.pooled {
		return
	}
	room := roomBytes
	if cap(w.buf) < minPooledBytes {
		room = smallRoomBytes // the first storage is used up before the pools
	}
	if cap(w.buf)-len(w.buf) < room {
		w.buf = bytePools.Grow(w.buf, w.lastBuf)
	}
	if len(w.cmds) == cap(w.cmds) {
		w.cmds = metaPools.Grow(w.cmds, w.lastCmds)
	}
	if w.slots && len(w.routes) == cap(w.routes) {
		w.routes = routePools.Grow(w.routes, w.lastCmds)
	}
}

// release empties a pipeline's buffers, giving pooled ones back and
// returning to the pipeline's first storage. The sizes it had are kept as
// hints: a pipeline used again for a batch like the last one takes
// buffers of that size at once instead of growing into them.
func (w *cmdBuf) release() {
	if !w.pooled {
		return
	}
	if cap(w.buf) > cap(w.firstBuf) {
		w.lastBuf = len(w.buf) + roomBytes
		bytePools.Recycle(w.buf)
		w.buf = w.firstBuf[:0]
	}
	if cap(w.cmds) > cap(w.firstCmds) {
		w.lastCmds = len(w.cmds) + 1
		metaPools.Recycle(w.cmds)
		w.cmds = w.firstCmds[:0]
	}
	routePools.Recycle(w.routes)
	w.routes = nil
}

// bufPool recycles the buffers of single commands. Buffers that grew large
// are dropped so one huge value does not pin memory forever.
var bufPool = sync.Pool{New: func() any { return &cmdBuf{buf: make([]byte, 0, 256), cmds: make([]cmdMeta, 0, 1)} }}

func getBuf() *cmdBuf { return bufPool.Get().(*cmdBuf) }

func putBuf(w *cmdBuf) {
	if cap(w.buf) > 64<<10 || cap(w.cmds) > 64 {
		return
	}
	w.reset()
	bufPool.Put(w)
}

// Reply conversions used by the generated methods. Each passes a transport
// error through, then a server error, then converts.

// okReply reads the reply of a command that answers OK. Any other reply
// that is not an error or nil is refused with a *TypeError rather than
// taken for success: QUEUED, an integer or another command's text would
// mean the command did not run as asked, or that its reply is another's.
// REPLICAOF's "OK Already connected to specified master" is an OK.
func okReply(v Value, err error) error {
	if err != nil {
		return err
	}
	if v.v.Kind == resp.SimpleString && (v.v.Str == "OK" || strings.HasPrefix(v.v.Str, "OK ")) {
		return nil
	}
	if err := v.check(); err != nil {
		return err
	}
	if v.v.Kind == resp.SimpleString {
		return v.unreadable("OK", nil, "%q is not OK", clip(v.v.Str))
	}
	return v.typeErr("OK")
}

// setReply is okReply for SET, which with GET answers the key's old
// value instead of OK. withGet comes from setHasGet: without GET a bulk
// string is no reply of this SET, and is refused as okReply refuses it.
func setReply(v Value, err error, withGet bool) error {
	if withGet && err == nil && v.v.Kind == resp.BulkString {
		return nil
	}
	return okReply(v, err)
}

// setHasGet says whether the SET just encoded in w has GET among the
// words after its key and value. It reads the encoding, so an argument of
// any type whose text is GET counts, as it does for the server; the
// values of SET's other options are numbers, never GET.
func setHasGet(w *cmdBuf) bool {
	ws, ok := newWords(w.buf[w.begin:])
	if !ok || ws.n <= 3 {
		return false // SET key value, the common case: no word to look at
	}
	ws.skip(3)
	for {
		word, ok := ws.next()
		if !ok {
			return false
		}
		if equalFold(word, "GET") {
			return true
		}
	}
}

func textReply(v Value, err error) (string, error) {
	if err != nil {
		return "", err
	}
	return v.Text()
}

func intReply(v Value, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return v.Int64()
}

func boolReply(v Value, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	return v.Bool()
}

func floatReply(v Value, err error) (float64, error) {
	if err != nil {
		return 0, err
	}
	return v.Float64()
}

func stringsReply(v Value, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return v.Strings()
}

func int64sReply(v Value, err error) ([]int64, error) {
	if err != nil {
		return nil, err
	}
	return v.Int64s()
}

func scoredReply(v Value, err error) ([]Scored, error) {
	if err != nil {
		return nil, err
	}
	return v.Scored()
}

func valuesReply(v Value, err error) ([]Value, error) {
	if err != nil {
		return nil, err
	}
	return v.Slice()
}

func stringMapReply(v Value, err error) (map[string]string, error) {
	if err != nil {
		return nil, err
	}
	return v.StringMap()
}

func valueReply(v Value, err error) (Value, error) {
	if err != nil {
		return v, err
	}
	return v, v.Err()
}

// scriptReply is valueReply for a script or function that may write (EVAL,
// EVALSHA, FCALL). An error reply may follow writes the script made: one
// it returns (redis.error_reply, a pcall's error passed on) bears no mark
// of that, and its prefix (OOM, WRONGTYPE) would read as not applied. Only
// the server's own NOSCRIPT, answered before any script runs, keeps its
// own outcome, and so do the server's refusals of the call as a whole
// (refusedCall, busyRefusal).
func scriptReply(v Value, err error) (Value, error) {
	if err != nil {
		return v, err
	}
	return v, scriptErr(v.Err())
}

// scriptErr makes the error of a script's reply one of unknown outcome,
// unless it is the server's NOSCRIPT (see noScript), its refusal of the
// call as a whole (refusedCall, busyRefusal, notCompiled, noFunction), a
// redirection in the server's words (see serverRedirect), or says so
// already.
func scriptErr(err error) error {
	if _, ok := err.(*uncertainError); ok || err == nil || noScript(err) || refusedCall(err) || busyRefusal(err) ||
		notCompiled(err) || noFunction(err) {
		return err
	}
	if se, ok := err.(*Error); ok {
		// A cluster node's redirection in the server's words came before
		// anything ran, as markScriptErr keeps it for Do.
		if rd, redirects := parseRedirect(se.Msg, ""); redirects && serverRedirect(rd, se.Msg) {
			return err
		}
	}
	return scriptFailed(err)
}

// scriptFailed is err, a script's error, as one of unknown outcome.
func scriptFailed(err error) error {
	return &uncertainError{msg: "redpipe: the script failed, maybe after some of its writes", err: err}
}

// noScriptMsg begins the text of the server's NOSCRIPT reply, the same
// since EVALSHA came (Redis 2.6).
const noScriptMsg = "NOSCRIPT No matching script"

// noScript tells whether err is the server's reply to EVALSHA of a script
// it does not have, which ran nothing. A script may return an error of
// its own that starts with NOSCRIPT after its writes (redis.error_reply):
// taken for the server's, it would read as not applied, and Script.Run
// would run it again with EVAL. Only the server's wording counts, on the
// error itself rather than one that wraps it: a script would have to
// copy that wording to be mistaken for it.
func noScript(err error) bool {
	se, ok := err.(*Error)
	return ok && se.Prefix == "NOSCRIPT" && strings.HasPrefix(se.Msg, noScriptMsg)
}

// refusedCall tells whether err is the server's refusal, by the user's
// ACL, of a script or function call as a whole, answered before anything
// ran: of the command, "NOPERM this user has no permissions to run the
// 'evalsha' command" (from Redis 7.2 "User app has no permissions..."),
// or of a key it was given, "NOPERM this user has no permissions to
// access one of the keys used as arguments" (7.0). A refusal of a command
// the script calls names that command, never one that runs code, or
// comes with " script: " and, in 7.0, other words. From 7.2 a key refused
// inside a script reads as one refused outside ("No permissions to access
// a key"), which a script may pass on from a pcall after its writes: that
// one keeps the unknown outcome. Only the server's wording counts, as for
// NOSCRIPT (see noScript).
func refusedCall(err error) bool {
	se, ok := err.(*Error)
	if !ok || se.Prefix != "NOPERM" || strings.Contains(se.Msg, " script: ") {
		return false
	}
	if se.Msg == "NOPERM this user has no permissions to access one of the keys used as arguments" {
		return true
	}
	if !strings.HasPrefix(se.Msg, "NOPERM this user has ") && !strings.HasPrefix(se.Msg, "NOPERM User ") {
		return false
	}
	for _, name := range codeCommands {
		if strings.HasSuffix(se.Msg, " has no permissions to run the '"+strings.ToLower(name)+"' command") {
			return true
		}
	}
	return false
}

// busyRefusal tells whether err is the server's BUSY, in its words: the
// server was running another script or function (or a module's command)
// and refused the call before running any of it, "BUSY Redis is busy
// running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
// (FUNCTION KILL for a function; Valkey names itself). Nothing ran, and
// the call may be sent again once that script ends or is killed. A
// script's own error in those very words cannot be told from it, as for
// NOSCRIPT (see noScript); one that only begins like it ("... You can only
// call me later") is the script's, so the whole text must match. In the
// replies of EXEC it is always the script's own: a busy server refuses
// EXEC as a whole.
func busyRefusal(err error) bool {
	se, ok := err.(*Error)
	if !ok || se.Prefix != "BUSY" {
		return false
	}
	server, rest, ok := strings.Cut(strings.TrimPrefix(se.Msg, "BUSY "), " ")
	return ok && server != "" && slices.Contains(busyTexts, rest)
}

// busyTexts are the words of the server's BUSY after its name, the same
// from Redis 7.0 to 7.4 and in Valkey: while a script of EVAL runs, while
// a function runs, and while a module's command holds the server.
var busyTexts = []string{
	"is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
	"is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.",
	"is busy running a module command.",
}

// compileErrPrefix begins the text of the server's reply to EVAL of a
// script that does not compile, up to Lua's own message, the same since
// Redis 2.6 and in Valkey. A script's error that only begins like it
// ("ERR Error compiling script failed") is the script's own.
const compileErrPrefix = "ERR Error compiling script (new function): "

// notCompiled tells whether err is the server's reply to EVAL of a script
// that does not compile ("ERR Error compiling script (new function):
// user_script:1: ..."): the script never ran, in a transaction's EXEC
// too, where EVAL compiles it. Only EVAL is answered so (SCRIPT LOAD
// compiles what EVALSHA runs), and only the server's words count, as for
// NOSCRIPT (see noScript).
func notCompiled(err error) bool {
	se, ok := err.(*Error)
	return ok && se.Prefix == "ERR" && strings.HasPrefix(se.Msg, compileErrPrefix) && !strings.Contains(se.Msg, " script: ")
}

// noFunctionMsg is the server's reply to FCALL of a function it does not
// have, the same since functions came (Redis 7.0).
const noFunctionMsg = "ERR Function not found"

// noFunction tells whether err is the server's reply to FCALL of a
// function no library loaded on it registers: nothing ran. Only FCALL is
// answered so, and only the server's words count, as for NOSCRIPT (see
// noScript).
func noFunction(err error) bool {
	se, ok := err.(*Error)
	return ok && se.Prefix == "ERR" && se.Msg == noFunctionMsg
}

// markScriptErr gives v, the reply of the command name, the error of
// unknown outcome that scriptErr makes, when v is the server's error reply
// to a script or function that may write (EVAL, EVALSHA, FCALL), wherever
// the reply is handed out: a call alone through Do, a pipeline, a
// transaction, a stream. Read as it came, an error the script returned
// after its writes (OOM, WRONGTYPE) would say they were not applied. The
// reply keeps the server's text. NOSCRIPT keeps its own outcome, and so
// do MOVED, ASK, TRYAGAIN and CLUSTERDOWN in the server's words
// (serverRedirect): a cluster node answers them before running anything,
// and a cluster pipeline or stream keeps one as the reply of a command it
// did not send on, and so do the server's refusals of the call as a
// whole: a user's ACL (refusedCall), a server busy with another script
// (busyRefusal), a script EVAL could not compile (notCompiled), a
// function FCALL could not find (noFunction). It returns v's error.
//
// Only EVALSHA is answered NOSCRIPT by the server, and only in its words
// (noScript): a NOSCRIPT to EVAL or FCALL, or in other words, is one the
// script or function returned, maybe after its writes.
//
// inExec says v is among the replies of a transaction's EXEC. A server
// redirects or refuses a transaction as a whole, before EXEC runs any of
// it, so a redirection there is the script's own, whatever its words.
func markScriptErr(v *Value, name string, inExec bool) error {
	err := v.Err()
	se, ok := err.(*Error)
	if !ok || name != "EVALSHA" && name != "EVAL" && name != "FCALL" || name == "EVALSHA" && noScript(err) || refusedCall(err) ||
		!inExec && busyRefusal(err) || name == "EVAL" && notCompiled(err) || name == "FCALL" && noFunction(err) {
		return err
	}
	if rd, redirects := parseRedirect(se.Msg, ""); redirects && serverRedirect(rd, se.Msg) && !inExec {
		return err
	}
	err = scriptFailed(err)
	setExtra(v, madeErr{err})
	return err
}
