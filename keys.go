package redpipe

import "strings"

// Where the keys of a command are, for routing it in a cluster. The
// command table gives most commands' key positions as the server's COMMAND
// INFO does (FirstKey, LastKey, Step); for commands flagged movable-keys,
// whose keys move with their other arguments, the common ones are read by
// their syntax here. The rest is left to the server (COMMAND GETKEYS).

// keyStatus says how far commandKeys could tell a command's keys.
type keyStatus uint8

const (
	// keysFound: the positions returned are all the command's keys; none
	// means a command without keys, which may go to any master.
	keysFound keyStatus = iota
	// keysUnknown: neither the table nor a rule here knows where the keys
	// are (a command the table does not know, an unknown subcommand, a
	// movable-keys command without a rule). Ask the server.
	keysUnknown
	// keysInvalid: the arguments contradict themselves (a numkeys larger
	// than the arguments that follow it, XREAD without STREAMS), so the
	// server finds no keys in them either and will refuse the command
	// wherever it goes. A command the server refuses to run but finds
	// keys in (SORT k STORE) has them found here too, so that it goes
	// where the server would redirect it.
	keysInvalid
)

// containerCommands are the names of the commands with subcommands, whose
// own entry says nothing of keys: one is reached only for a subcommand the
// table does not know.
var containerCommands = func() map[string]bool {
	m := map[string]bool{}
	for name := range commandTable {
		if container, _, ok := strings.Cut(name, " "); ok {
			m[container] = true
		}
	}
	return m
}()

// commandKeys appends to dst the positions of the key arguments of cmd,
// one command encoded as cmdBuf writes it (an array of bulk strings; what
// follows it is ignored), whose table entry is ci. Positions count the
// command's words from 0, the command name, so a subcommand's keys are at
// 2 or later; they come in increasing order. With a dst of enough capacity
// it does not allocate.
//
// The positions are those COMMAND GETKEYS gives, which is how the server
// itself finds the slot of a command, with one exception: the shard
// channels of SPUBLISH, SSUBSCRIBE and SUNSUBSCRIBE count as keys here, as
// the cluster routes them by their slot, while GETKEYS says these
// commands have no keys; and the server looks for XREADGROUP's STREAMS
// without reading the options before it, so that it takes a group or
// consumer named "streams" after COUNT, BLOCK or NOACK for the keyword,
// where this reads the options. The patterns of SORT BY and GET are not
// keys.
// GEORADIUS with both STORE and STOREDIST has both destinations as keys,
// as for the server. On any status but keysFound, dst comes back as it
// was given.
func commandKeys(dst []int, ci *commandInfo, cmd []byte) ([]int, keyStatus) {
	keys, st := findKeys(dst, ci, cmd)
	if st != keysFound {
		return dst, st
	}
	return keys, st
}

// findKeys is commandKeys, leaving in dst what it found before it gave up.
func findKeys(dst []int, ci *commandInfo, cmd []byte) ([]int, keyStatus) {
	ws, ok := newWords(cmd)
	if !ok {
		return dst, keysInvalid
	}
	n := ws.n
	if ci == nil || int(ci.id) >= len(knownCommands) || (ci.nwords == 1 && containerCommands[ci.Name]) {
		return dst, keysUnknown
	}
	movable := ci.has(flagMovableKeys)
	if movable && ci.Name == "MIGRATE" {
		return migrateKeys(dst, ws)
	}
	if ci.FirstKey > 0 {
		last := ci.LastKey
		if last < 0 {
			last += n
		}
		step := max(ci.Step, 1)
		for i := ci.FirstKey; i <= last && i < n; i += step {
			dst = append(dst, i)
		}
	}
	if !movable {
		return dst, keysFound
	}
	switch ci.Name {
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
		return numKeys(dst, ws, 2, true)
	case "ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE", "BLMPOP", "BZMPOP":
		// After the destination, or the timeout.
		return numKeys(dst, ws, 2, false)
	case "ZUNION", "ZINTER", "ZDIFF", "LMPOP", "ZMPOP", "SINTERCARD", "ZINTERCARD":
		return numKeys(dst, ws, 1, false)
	case "XREAD", "XREADGROUP":
		return streamsKeys(dst, ws)
	case "SORT":
		return sortStoreKey(dst, ws)
	case "GEORADIUS":
		return geoStoreKeys(dst, ws, 6)
	case "GEORADIUSBYMEMBER":
		return geoStoreKeys(dst, ws, 5)
	case "SORT_RO":
		// Movable only for the patterns of BY and GET, which are not keys.
		return dst, keysFound
	}
	return dst, keysUnknown
}

// numKeys reads the keys of a command whose word at i is the number of
// keys that follow it. zero tells whether that number may be 0 (a script
// without keys) rather than at least 1.
func numKeys(dst []int, ws wordReader, i int, zero bool) ([]int, keyStatus) {
	w, ok := ws.at(i)
	if !ok {
		return dst, keysInvalid
	}
	k, ok := parseCount(w)
	if !ok || (k == 0 && !zero) || k > ws.n-i-1 {
		return dst, keysInvalid
	}
	for j := range k {
		dst = append(dst, i+1+j)
	}
	return dst, keysFound
}

// streamsKeys reads the keys of XREAD and XREADGROUP: after STREAMS come
// the keys, then as many IDs. The words before STREAMS are options, some
// with arguments that are skipped, so that a group or consumer named
// "streams" is not taken for the keyword. With an odd number of words
// after STREAMS the server takes the first half, rounded down, for keys
// (and then refuses the command): so does this, so that the refusal
// comes from the node of those keys rather than as a redirection.
func streamsKeys(dst []int, ws wordReader) ([]int, keyStatus) {
	ws.next() // the command name
	for ws.i < ws.n {
		w, _ := ws.next()
		switch {
		case equalFold(w, "COUNT"), equalFold(w, "BLOCK"):
			ws.skip(1)
		case equalFold(w, "GROUP"):
			ws.skip(2)
		case equalFold(w, "STREAMS"):
			rest := ws.n - ws.i
			if rest < 2 {
				return dst, keysInvalid
			}
			for j := range rest / 2 {
				dst = append(dst, ws.i+j)
			}
			return dst, keysFound
		}
	}
	return dst, keysInvalid
}

// migrateKeys reads the keys of MIGRATE host port key|"" db timeout
// [COPY] [REPLACE] [AUTH password | AUTH2 username password] [KEYS key
// ...]: the key at 3, or with KEYS (and an empty key at 3) the words after
// it. The server looks for the word KEYS between the host and the last
// word before it reads the options: without one there, the word at 3,
// empty or not, is the key, even with KEYS as the last word.
func migrateKeys(dst []int, ws wordReader) ([]int, keyStatus) {
	if ws.n < 6 {
		return dst, keysInvalid
	}
	if !hasWord(ws, "KEYS", 2, ws.n-2) {
		return append(dst, 3), keysFound
	}
	ws.skip(3)
	key, _ := ws.next()
	ws.skip(2)
	for ws.i < ws.n {
		w, _ := ws.next()
		switch {
		case equalFold(w, "AUTH"):
			ws.skip(1)
		case equalFold(w, "AUTH2"):
			ws.skip(2)
		case equalFold(w, "KEYS"):
			if len(key) > 0 {
				return dst, keysInvalid
			}
			for i := ws.i; i < ws.n; i++ {
				dst = append(dst, i)
			}
			return dst, keysFound
		}
	}
	return append(dst, 3), keysFound
}

// hasWord reports whether one of the words from first to last of ws, the
// next one not after first, is upper in any case.
func hasWord(ws wordReader, upper string, first, last int) bool {
	ws.skip(first - ws.i)
	for ws.i <= last {
		w, ok := ws.next()
		if !ok {
			return false
		}
		if equalFold(w, upper) {
			return true
		}
	}
	return false
}

// sortStoreKey adds the destination of SORT ... STORE destination, read
// as the server reads it to find the slot: the options BY, GET and LIMIT
// are read with their arguments, so that a pattern or a limit spelt
// "store" is not taken for the keyword; given twice, the last STORE
// counts; a STORE that is the last word is ignored; and the word after
// STORE is read as an option too, so that in SORT k STORE get STORE d the
// destination is get. The server refuses to run those last forms, but
// from the node of the keys it finds, not with a redirection.
func sortStoreKey(dst []int, ws wordReader) ([]int, keyStatus) {
	ws.skip(2) // SORT key
	store := 0
	for ws.i < ws.n {
		w, _ := ws.next()
		switch {
		case equalFold(w, "STORE"):
			if ws.i < ws.n {
				store = ws.i
			}
		case equalFold(w, "BY"), equalFold(w, "GET"):
			ws.skip(1)
		case equalFold(w, "LIMIT"):
			ws.skip(2)
		}
	}
	if store > 0 {
		dst = append(dst, store)
	}
	return dst, keysFound
}

// geoStoreKeys adds the destinations of GEORADIUS's STORE and STOREDIST
// options, which start at word i: the word after the first STORE and the
// word after the first STOREDIST. The server finds them that way, both
// when both are given (it checks the slot of each, though only the last
// one is written). It does not look at the last word, so that a keyword
// there, which it refuses to run, adds no key.
func geoStoreKeys(dst []int, ws wordReader, i int) ([]int, keyStatus) {
	ws.skip(i)
	store, storedist := 0, 0
	for ws.i < ws.n-1 {
		w, _ := ws.next()
		switch {
		case store == 0 && equalFold(w, "STORE"):
			store = ws.i
		case storedist == 0 && equalFold(w, "STOREDIST"):
			storedist = ws.i
		}
	}
	if store > 0 && storedist > 0 && storedist < store {
		store, storedist = storedist, store
	}
	for _, p := range [2]int{store, storedist} {
		if p > 0 {
			dst = append(dst, p)
		}
	}
	return dst, keysFound
}

// appendKeys appends to dst the words of cmd at the positions commandKeys
// returned, as slices of cmd. It walks cmd once.
func appendKeys(dst [][]byte, cmd []byte, pos []int) [][]byte {
	ws, ok := newWords(cmd)
	if !ok {
		return dst
	}
	for _, p := range pos {
		ws.skip(p - ws.i)
		w, ok := ws.next()
		if !ok {
			break
		}
		dst = append(dst, w)
	}
	return dst
}

// wordReader walks the words of an encoded command.
type wordReader struct {
	cmd []byte
	n   int // the number of words, from the array header
	i   int // the index of the next word
	p   int // the offset of the next word
}

// newWords reads the array header of cmd.
func newWords(cmd []byte) (wordReader, bool) {
	if len(cmd) == 0 || cmd[0] != '*' {
		return wordReader{}, false
	}
	n, p, ok := parseLen(cmd, 1)
	if !ok {
		return wordReader{}, false
	}
	return wordReader{cmd: cmd, n: n, p: p}, true
}

// next returns the next word; ok is false past the last one or when what
// is there is not a well-formed bulk string, which then ends the walk.
func (ws *wordReader) next() (w []byte, ok bool) {
	if ws.i >= ws.n || ws.p >= len(ws.cmd) || ws.cmd[ws.p] != '$' {
		ws.i = ws.n
		return nil, false
	}
	size, start, ok := parseLen(ws.cmd, ws.p+1)
	end := start + size
	if !ok || end+2 > len(ws.cmd) {
		ws.i = ws.n
		return nil, false
	}
	ws.i, ws.p = ws.i+1, end+2
	return ws.cmd[start:end], true
}

// skip passes over k words.
func (ws *wordReader) skip(k int) {
	for ; k > 0 && ws.i < ws.n; k-- {
		ws.next()
	}
}

// at returns word i, which must not be before the next one.
func (ws wordReader) at(i int) ([]byte, bool) {
	ws.skip(i - ws.i)
	return ws.next()
}

// parseLen reads the decimal length that starts at b[p] and ends with
// CRLF, and returns it with the offset past the CRLF.
func parseLen(b []byte, p int) (n, next int, ok bool) {
	start := p
	for ; p < len(b) && '0' <= b[p] && b[p] <= '9'; p++ {
		if n > (1<<31)/10 {
			return 0, 0, false
		}
		n = n*10 + int(b[p]-'0')
	}
	if p == start || p+1 >= len(b) || b[p] != '\r' || b[p+1] != '\n' {
		return 0, 0, false
	}
	return n, p + 2, true
}

// parseCount reads a numkeys argument: decimal digits (leading zeros
// allowed, as the server allows them), at most a billion.
func parseCount(w []byte) (int, bool) {
	if len(w) == 0 || len(w) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range w {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 1e9
}

// equalFold reports whether w is upper, which is in upper case, in any
// case.
func equalFold(w []byte, upper string) bool {
	if len(w) != len(upper) {
		return false
	}
	for i, c := range w {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}
