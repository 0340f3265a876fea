// Package redpipe is a Redis client built around pipelines and
// transactions.
//
// # Connecting
//
// A Client is made once and shared; it is safe for concurrent use.
//
//	c, err := redpipe.Connect(ctx, "redis://localhost:6379/0")
//	if err != nil { ... }
//	defer c.Close()
//
// Connect takes a URL (redis://, rediss:// for TLS, unix://); NewClient
// takes Options, whose zero value means the documented defaults. Every new
// connection says HELLO 3 (with AUTH and SETNAME when configured), falling
// back to RESP2 on servers without HELLO (Options.Protocol 2 goes
// straight to RESP2), then SELECTs the database unless it is 0.
//
// # Commands
//
// Every command of the server's table has a typed method, generated from
// the server's own COMMAND DOCS and COMMAND INFO, that returns a Go value,
// but for the CLUSTER commands, HELP subcommands, a few deprecated or
// internal ones, and those that change a connection's state (SELECT,
// MULTI, SUBSCRIBE...), which redpipe manages itself and refuses:
//
//	err := c.Set(ctx, "k", "v")
//	n, err := c.Incr(ctx, "counter")
//	s, err := c.Get(ctx, "k")         // ErrNil if k does not exist
//
// Do runs any command, typed or not, and returns the raw reply as a Value:
//
//	v, err := c.Do(ctx, "OBJECT", "ENCODING", "k")
//
// The server's error reply is a reply too: Do returns it as the Value,
// whose Err gives the *Error, with a nil error, which is kept for a call
// that got no reply (refused before it was sent, a failed connection, an
// ended context). A typed method returns the *Error as its error.
//
// A command with the wrong number of arguments is refused before it is sent
// with an *ArityError that names it.
//
// Arguments of type any (those of Do, the values of typed methods and the
// options after them, such as "EX", 10) may be strings, []byte, integers,
// floats, bools and time.Time, which is sent as RFC 3339 text with
// nanoseconds (time.RFC3339Nano). A value of any other type is sent as what
// the first of its methods MarshalBinary, MarshalText and String returns
// (encoding.BinaryMarshaler, encoding.TextMarshaler, fmt.Stringer). A
// time.Duration is refused, as its String form ("1.5s") is not what any
// command takes: pass d.Milliseconds() or d.Seconds(), as the command
// wants. So are a nil pointer, a Value (a reply: pass what its Text or
// Bytes returns), a type with none of those methods and a value whose
// marshaler fails, each with an *ArgError naming the command and the
// argument's position, which wraps the marshaler's error if there is one.
// A marshaler that panics leaves its command half encoded: once the panic
// is recovered, the pipeline or Stream holding it refuses it with a
// *UsageError. A refused command is not sent, nor is the pipeline holding
// it (a Stream stops before the chunk holding it).
//
// # Replies
//
// A Value is one reply. Its accessors (Text, Bytes, Int64, Float64, Bool,
// Slice, Strings, Map, StringMap, Scored, IsNil, Err) convert it without
// type assertions and return an error instead of panicking on a reply of
// another type. They read what RESP2 and RESP3 send differently (a map
// or a flat array, a list of pairs) alike. A nil reply is ErrNil for the
// command that got it. A server error is an *Error, whose Prefix (ERR,
// WRONGTYPE, NOSCRIPT, MOVED...) says what happened:
//
//	var se *redpipe.Error
//	if errors.As(err, &se) && se.Prefix == "WRONGTYPE" { ... }
//
// # Pipelines
//
// A Pipeline buffers commands and sends them in one write; calls chain:
//
//	replies, err := c.Pipeline().Set("foo", "bar").SAdd("faz", "baz").Incr("n").Exec(ctx)
//
// A pipeline is a transaction by default: Exec wraps it in MULTI/EXEC in
// the same write. c.Pipeline(redpipe.NoTransaction) makes a plain batch.
// Exec returns one reply per command, in order; each command's error and
// nil stay in its own reply, and Exec also returns the first command error
// (a *CommandError naming its position) unless the pipeline was made with
// ErrorsInReplies. The pipeline is empty after Exec and can be reused
// (but for a Tx's Multi pipeline, below).
//
// A plain pipeline whose connection fails after some of its replies were
// read (the server killed or the connection cut, ReplyTimeout) still
// returns one reply per command: those read, which ran, in their places;
// for each command sent and not answered an error reply of unknown
// outcome, and for each never written one whose Err says it was not sent
// (OutcomeOf, SafeToRetry); both hold the *ConnError, its Unsent telling
// which (a command that a retry did not write, but an earlier attempt
// may have, is of unknown outcome). Exec's error, whatever
// ErrorsInReplies says, is then a *CommandError for the first command not
// answered, of unknown outcome, whose text tells which commands ran,
// which may have, and which were not sent. The replies go through the
// Decoders, as those of a pipeline that ran through do. The plain
// Pipeline of a Tx does the same, and so does each node's part of a
// cluster pipeline: its commands answered before the connection to that
// node failed have their replies, those written after them are of
// unknown outcome and those never written not sent, and the pipeline
// sends none of them again (but for reads a replica did not answer,
// which go to the masters). So does a failure before any reply came,
// once some of the batch was written (a BLPOP at its head holding the
// rest): each command has an error reply, of unknown outcome for those
// the socket took and not sent for the rest. A failure before any byte
// of the batch was written returns no replies and the connection's
// error, which says it was not sent; a failed transaction returns no
// replies either, its EXEC being all or nothing.
//
// A plain pipeline whose context ends (its deadline, a cancel) once some
// of its replies were read, or, on a connection of its own, once some
// of it was written, returns the same: the replies read in their places,
// error replies of unknown outcome for the commands sent (or queued to
// be: on the connection callers share, the server may still run them),
// and, on a connection of the pipeline's own (a large or blocking
// pipeline, closed then; a blocking one of a Tx, whose connection is
// closed to end the block), not-sent ones for those never written;
// errors.Is finds the context's error in Exec's error and in each of
// them, and the text says that the context ended. (They hold a
// *ConnError only where the pipeline's own connection was closed: the
// connection callers share did not fail. To tell such a reply from an
// error reply of the server's, look for either.) No reply left unread
// reaches another call. So do the plain Pipeline of a Tx and each node's
// part of a cluster pipeline.
//
// A server that refuses MULTI (an ACL without it) runs the commands of a
// transactional pipeline one by one, outside any transaction: Exec
// returns their replies, each telling what its command did, with the
// refusal as its error, of unknown outcome.
//
// A batch too large to hold in memory (a bulk load of millions of
// commands) goes through c.Stream(ctx, each) instead: it sends chunks of
// commands while they are still being queued, on a connection of its own,
// and hands every reply to each in order rather than keeping it, so its
// memory stays at a few chunks and the server works while the caller
// encodes. s.Close(ctx) sends the rest, waits for every reply and returns
// how many commands were sent and the first error. A stream is never a
// transaction. If its connection fails (on a cluster, its connection to
// one node), each has had every reply read before the failure, in order,
// and the error, of unknown outcome, holds the *ConnError; so it does
// when each, or a Decoder, panicked on one of those replies and Close is
// called again after the recover.
//
// # Transactions and optimistic locking
//
// Watch binds a connection and sends WATCH; commands on the returned Tx run
// immediately, Multi starts the buffered part, and its Exec fails with an
// error matching ErrWatch if a watched key changed:
//
//	tx, err := c.Watch(ctx, "balance")
//	if err != nil { ... }
//	defer tx.Close() // UNWATCH if needed, and back to the pool
//	bal, err := tx.Get(ctx, "balance")
//	...
//	_, err = tx.Multi().Set("balance", newBal).Exec(ctx)
//	if errors.Is(err, redpipe.ErrWatch) { /* retry */ }
//
// Once Multi is open the Tx runs nothing itself: a command, Watch or a
// second Multi on it is refused with a *UsageError before anything is
// sent, and the open transaction is refused with it until Discarded, so a
// transaction is never applied without a command meant for it. Discard
// empties the Multi pipeline and leaves it open; after its Exec it is
// finished, since EXEC ends the watch. tx.Reset drops an open Multi, sends
// UNWATCH and leaves the Tx ready for another Watch, for code that loops
// on one session as redis-py's reset() does; Close ends it, and any call
// after Close fails with an error matching ErrClosed. Calls on one Tx from
// several goroutines take turns, one at a time on its connection, except
// that Close and Reset end a blocking command (BLPOP) that another
// goroutine runs on it, rather than wait for it, and that Multi, which
// sends nothing, opens the transaction at once rather than wait: its Exec
// waits within its context. A call gives the Tx up before its Decoders
// run, so a Decoder may use the Tx whose reply it decodes.
//
// Client.Transaction runs that loop for you, retrying on ErrWatch with a
// bound on attempts, jittered backoff and the context's deadline, as
// Options.Tx says, or WithTxOptions(ctx, o) for one call.
// TransactionValue returns the value the function computed. Transactions
// of one Client on the same keys take turns, each starting as the last
// writes its EXEC, so the goroutines of one process do not spoil each
// other's WATCH; other clients still meet WATCH and the retries.
//
// The Tx that Transaction hands to fn runs read-only commands, and WATCH,
// PING and the few others that change nothing; it refuses the rest (a
// write, a script run with EVAL, EVALSHA or FCALL, PUBLISH, a command the
// client does not know), which would run at once, outside the
// transaction, and again on every retry. It refuses Close and Reset too,
// which would drop what fn queued. fn gets a new Tx on every attempt: one
// kept from an earlier attempt is closed, and using it, or its pipelines,
// fails with an error matching ErrClosed, and so does the Transaction,
// not applied.
//
// Every error that means a transaction was certainly not applied matches
// ErrNotApplied: a watch conflict, an EXECABORT (*ExecAbortError, which
// names each refused command), a transaction refused before it was sent
// (a wrong number of arguments, a misuse), a connection lost before EXEC
// was sent, by Transaction too (a server it could not reach, a read of fn
// that failed). A connection lost after EXEC was sent gives an
// *OutcomeError that says the outcome is unknown; so do replies to a
// transaction that no server sends (EXEC answered with anything but nil,
// an error or one reply per command; a command queued answered with
// anything but QUEUED or an error; a push message inside EXEC's array),
// after which the connection that read them is closed, not used again.
// A Transaction that fails after an Exec fn ran itself, which may have
// applied, is of unknown outcome too (OutcomeOf), and is not retried.
//
// # Errors, timeouts and retries
//
// Errors are values of the types below, reached with errors.As, or match
// the sentinels, tested with errors.Is. OutcomeOf(err) says whether what
// failed may have run: OutcomeNotSent (no byte of it reached the server),
// OutcomeNotApplied (the server certainly did not apply it) or
// OutcomeUnknown; SafeToRetry(err) is true for the first two.
//
//	error              when                                            may it have run?
//	*Error             the server's error reply: WRONGTYPE, NOPERM...   no, if refused before running
//	ErrNil             a nil reply: GET of a missing key                (a reply, not a failure)
//	*CommandError      one command of a batch failed; wraps its cause   the others ran
//	*ExecAbortError    the server refused a queued command at EXEC      no; matches ErrNotApplied
//	ErrWatch           a watched key changed before EXEC                no; matches ErrNotApplied
//	*TxRetryError      Transaction gave up; wraps the last attempt's    no
//	*OutcomeError      a transaction failed before the server ruled     as its Outcome says
//	*ArityError        wrong number of arguments, refused unsent        no
//	*ArgError          an argument that cannot be encoded, unsent       no
//	*UsageError        a misuse of the API, refused unsent              no
//	*OptionError       a bad option or URL                              (nothing was tried)
//	*DialError         a connection could not be opened                 no
//	*HandshakeError    HELLO, AUTH or SELECT refused on a new one       no
//	*ConnError         the connection failed; Unsent says if before     unknown, unless Unsent
//	*CrossSlotError    keys of one call in different cluster slots      no; matches ErrNotApplied
//	ErrClosed          the Client, Tx or Stream was closed              no, or unknown if in flight
//	ErrPoolExhausted   the context ended while every pooled connection  no; matches the context's error
//	                   was lent; the text says to what
//	*DecodeError       a registered Decoder failed on a reply           yes
//	*TypeError         a reply not readable as the type asked for       (a reply, not a failure)
//	                   ("abc" by Int64); Err holds strconv's cause
//
// The error of a script or function that may write (Eval, EvalSha, FCall,
// Script.Run, and EVAL, EVALSHA or FCALL through Do, a pipeline, a
// transaction or a stream, whose error reply's Err says so) is of unknown
// outcome whatever its prefix, since it may follow the script's writes.
// Only the server's refusals of the call itself, in the server's words,
// answered before any of the script runs, are not applied:
//   - NOSCRIPT to EVALSHA (a NOSCRIPT the script returns in other words is
//     its own);
//   - the NOPERM of a user's ACL that refuses the call itself or a key it
//     is given, which names EVAL, EVALSHA or FCALL (a command the script
//     calls, refused as it runs, is of unknown outcome);
//   - BUSY, to a call made while another script ran ("BUSY Redis is busy
//     running a script. You can only call SCRIPT KILL or SHUTDOWN
//     NOSAVE.", whole): send it again once that one has ended. In the
//     replies of EXEC, which a busy server refuses as a whole, it is the
//     script's own;
//   - the error of a script EVAL could not compile ("ERR Error compiling
//     script (new function): " and Lua's message), and "ERR Function not
//     found" to FCALL;
//   - on a cluster, the redirections (MOVED, ASK, TRYAGAIN, CLUSTERDOWN),
//     outside a transaction: in the replies of EXEC, which a server
//     redirects as a whole before running any of it, they are the
//     script's own.
//
// A script that returns one of those errors itself, in the very same
// words, cannot be told from the server, so a script should not.
//
// The error of ForEachMaster joins those of its calls of fn, one per
// master, and is of unknown outcome as soon as one call returned nil or
// failed with an unknown outcome.
//
// Every call honours its context: when it ends, the call returns at once
// with the context's error (its reply, if one comes, is read and dropped,
// never given to another call). The error's text gives the cause of a
// context ended with one (context.WithCancelCause, WithTimeoutCause);
// errors.Is finds context.Canceled or context.DeadlineExceeded in it, not
// the cause, which context.Cause gives. A nil context is refused, not
// sent, with a *UsageError that says to pass context.Background(); a
// transaction refused so is not applied, a call on a Tx refused so
// refuses its open Multi as any call on the Tx does, and a Stream made
// with one sends nothing. So is what Idempotent or WithTxOptions returns
// for a nil context, with an error that names them (a context derived
// from it is done from the start, but one made by context.WithoutCancel,
// which is never done and carries neither Idempotent's mark nor the
// TxOptions). A nil function given to Transaction,
// TransactionValue or ForEachMaster, or a nil Client to TransactionValue,
// is refused likewise, never a panic. Options.DialTimeout bounds a dial and
// handshake. Options.ReplyTimeout ends a connection on which replies are
// due and no byte has come for that long, so a stalled server or network
// fails the calls instead of holding them; a blocking command is allowed
// its own timeout on top. A command the server takes longer than that to
// run is taken for a stall and fails too, with an unknown outcome.
//
// WAIT counts the replicas that have the writes of its own connection: it
// is refused as a call alone, and belongs after the writes in a
// NoTransaction Pipeline or on the Tx that made them.
//
// A call whose connection fails is sent again, up to Options.MaxRetries
// times with jittered backoff within its context, only when that cannot
// apply it twice: it certainly was not sent, it only reads, or its context
// is marked with Idempotent. A transaction that writes is never sent again
// once EXEC may have reached the server, Idempotent or not. Nothing is
// sent again after a reply that no server sends (malformed, over a limit
// of Options, or not the replies of a transaction), which it would get
// again. See the OutcomeOf example.
//
// # Concurrency and connections
//
// Plain calls from many goroutines share one connection: commands issued at
// the same time go out in one write, and a reader hands each reply to the
// call that is first in line. A call whose context ends returns at once;
// its reply is read later and dropped, never given to another call. A call
// whose context ends before any of its bytes were handed to the socket is
// taken out of line and never written, and its error says it was not sent
// (OutcomeOf). Any read, write or protocol error ends the connection and
// fails the calls in line with it; the next call dials a new one. A call
// that finds its connection closed by the server while nothing was in
// line on it (the server's timeout setting, CLIENT KILL) goes over a new
// one, as nothing of it was sent, without counting as a retry; so does a
// pooled connection, which is looked at before it is lent. A server that
// cannot read what it was sent (an argument longer than its
// proto-max-bulk-len, 512 MB by default) answers "ERR Protocol error" and
// closes the connection: that reply is the command's, and the *ConnError
// of the calls behind it, and of a transaction or Stream holding it,
// gives it as the cause when the client read it before the connection
// was reset (a server that refuses while the client still writes resets
// the connection under the write).
//
// The bytes waiting to be written on one connection are bounded (4 MiB):
// when the server stops reading, callers wait for room or for their
// context, whose end then fails them as not sent, instead of queueing
// without limit. Options.ReplyTimeout ends a connection whose server
// stays silent while replies are due, blocking commands being allowed
// their own timeout on top.
//
// While a reply is due, a connection briefly polls its socket before it
// sleeps (the caller of a call alone in line polls for its own reply),
// which spends CPU time for latency: it pays where threads are slow to
// wake, as on most virtual machines, and buys little where they are fast
// (Options.PollWait says when; -1 turns it off). How the engine writes,
// reads and keeps its buffers is described in docs/engine.md.
//
// Because an argument's methods may be called, an argument of type any
// escapes to the heap: one that is not a constant costs at most one small
// allocation (its interface box, not a copy of its bytes) when it is
// passed. Arguments typed string or int64 cost nothing.
//
// WATCH sessions, blocking commands (BLPOP and the like) and large
// pipelines run on dedicated connections from a bounded pool
// (Options.PoolSize); a caller waiting for one honours its context, and
// if every connection is still lent when the context ends, its error
// matches ErrPoolExhausted as well as the context's error, and says how
// many connections are lent and to what (a Tx or Stream never closed
// holds one for good). A
// connection goes back to the pool only clean: no reply still due, no
// WATCH armed, no MULTI open. Otherwise it is closed. At most
// Options.MaxIdle stay open while unused (-1 keeps none). One left unused
// for Options.MaxIdleTime, or open for Options.MaxConnAge, is closed rather
// than lent; one unused for Options.IdleCheckAfter is checked with a PING
// first, under the caller's context, and replaced if it does not answer, so
// a connection that died unseen while idle does not fail the caller. The
// shared connection, once open for Options.MaxConnAge, is replaced by a
// new one, and closed when the calls in line on it have their replies.
//
// # Scripts and decoders
//
// A Script runs by EVALSHA and falls back to EVAL on NOSCRIPT; in a
// pipeline or transaction it is loaded in the same write first, so it never
// fails with NOSCRIPT, unless that load fails (a script that does not
// compile, a user not allowed SCRIPT LOAD): the rest of the batch runs as
// sent, and the script's reply is NOSCRIPT with the load's error. Nor can
// it survive a SCRIPT FLUSH that runs between the load and the EVALSHA (a
// SCRIPT FLUSH in the same batch, or from another connection while a large
// batch is written): its reply is then the server's NOSCRIPT, not applied.
//
// A Decoder registered for a command (Client.SetDecoder, or WithDecoder on
// one pipeline) turns its replies into the Go value of your choosing,
// available from Value.Decoded; DecodeInfo is one for INFO. Name the
// command as its replies are named, "GET" or "CONFIG GET": a name that
// none can carry ("CONFIG|GET") is refused with a *UsageError. The reply of
// Script.Run is decoded by EVALSHA's Decoder, also when it fell back to
// EVAL.
//
// # Cluster
//
// A Redis Cluster is used through the same Client; only how it is made
// changes:
//
//	c, err := redpipe.ConnectCluster(ctx, "redis://node1:7000", "redis://node2:7000")
//	// or redpipe.NewClusterClient(redpipe.ClusterOptions{Addrs: seeds, Options: opt})
//	replies, err := c.Pipeline(redpipe.NoTransaction).Set("a", 1).Incr("b").Get("a").Exec(ctx)
//
// The client learns which master serves each of the 16384 hash slots
// (CLUSTER SHARDS, or CLUSTER SLOTS where that is refused) and sends each
// command to the master of its keys' slot, over one single-node client per
// node, with the Options given for all of them. Keys sharing a {hash tag}
// ({user1}:cart, {user1}:total) are in one slot.
//
//   - A command whose keys are in different slots (RENAME a b) is refused
//     before it is sent with a *CrossSlotError; give the keys a common hash
//     tag. Commands without keys go to any master; those the
//     server documents as running on every shard (DBSIZE, KEYS, FLUSHALL,
//     PING, SCRIPT LOAD) go to every master and their replies are combined
//     (DBSIZE sums, KEYS concatenates, RANDOMKEY takes a key from a master
//     that has one, FLUSHALL fails if any master does; a write refused by
//     some masters and run by others is of unknown outcome, alone, in a
//     pipeline or in a stream, and its error wraps the first refusal).
//     Commands meant for every node, replicas too, go to the masters only.
//     Commands that describe or walk one server (INFO, MEMORY STATS, SCAN)
//     are refused with a *UsageError: run them on each master with
//     ForEachMaster. A transaction or a Watch session, which runs on one
//     master, refuses the commands for every master.
//   - ForEachMaster calls a function for every master at once, each with
//     a Client of that master alone, which shares the cluster Client's
//     connections and options: to SCAN every master, read each one's INFO,
//     or get each master's answer to what a cluster Client asks of any one
//     (CONFIG GET, CLIENT LIST, ROLE). The masters are those of the layout
//     when it starts. A node's Client talks to its one server: a key
//     another master serves gets the MOVED error as its reply, which is
//     not followed. It belongs to the cluster Client, which closes it;
//     Close on it is refused.
//   - Each node is reached where the cluster says, as its
//     cluster-preferred-endpoint-type has it: at its IP, at its hostname,
//     or, with unknown-endpoint, at the host the client asked, with the
//     port given; MOVED and ASK alike. Over TLS, at the TLS port CLUSTER
//     SHARDS lists, which nodes know of one another with tls-cluster yes.
//     A master the cluster gives "?" for (hostnames preferred, and none
//     announced by it) cannot be reached: a command for its slots fails,
//     not sent, with a *DialError that says which setting to change, and
//     so, before anything is sent, does a command for every master, or
//     ForEachMaster, rather than leave its shard out.
//   - MGET, MSET, DEL, UNLINK, EXISTS and TOUCH whose keys are in several
//     slots are split by slot, as plain calls and in NoTransaction
//     pipelines: one part per slot, holding that slot's keys in the
//     caller's order, each routed and redirected as any command, and the
//     replies joined as one node would give them (MGET's values in the
//     order of the keys, the counts summed, OK when every MSET part
//     succeeded). A split command is not atomic across slots: other clients
//     may see some parts before others, and when a part of a write fails
//     while others ran, the error names the failed part and says the
//     others ran, and OutcomeOf reports OutcomeUnknown for it. MSETNX,
//     all or nothing, is never split: across slots it is refused with a
//     *CrossSlotError, and so is any cross-slot transaction.
//   - A NoTransaction pipeline is split by node; every node's part is sent
//     at once and the replies come back in the caller's order. A large one
//     (64 KB or more) starts going out while it is still being routed: a
//     node gets its commands in parts of about 16 KB, one after another
//     on one connection, so the nodes work while the client routes the
//     rest. A pipeline with a command whose keys may lie in several slots
//     (RENAME, EVAL and the like) is routed whole first, so that a
//     cross-slot refusal still means nothing was sent. Commands of
//     one slot keep their order, retries included: those behind a command
//     sent again for TRYAGAIN, or redirected to another node, wait for it;
//     a command turned away (TRYAGAIN, while its slot's keys are split
//     between two nodes) is not sent again once a later command on its
//     keys has run, and keeps the redirection as its reply; a command
//     redirected (MOVED, ASK) or held back by a pause (TRYAGAIN,
//     CLUSTERDOWN, a node that could not be reached) is not sent again to
//     a node that a later command for every master that reads or changes
//     keys (FLUSHALL, DBSIZE, KEYS), or, a write, a later WAIT, went to
//     meanwhile, and keeps its refusal, or an error reply that says it
//     was not sent (WAIT counts the replicas that have the writes sent
//     before it, and would not have waited for it); and an ASK is
//     followed at once or not at all, never after a pause.
//   - MOVED updates the slot at once and starts one refresh of the layout
//     (concurrent ones join it); ASK resends with ASKING first; TRYAGAIN
//     and CLUSTERDOWN are retried with backoff within the context. Only
//     the redirected commands of a pipeline are sent again, as a pipeline,
//     in their order. A node that cannot be reached also refreshes the
//     layout; a command for every master that could not reach a master
//     that died then goes, alone, in a pipeline or in a stream, to the
//     replica promoted in its place, never twice to one master, and is
//     not sent again if it may have reached the dead one. So does one
//     that a node the layout called a master refuses with READONLY: a
//     failover made that node a replica, which ran nothing of it (a
//     node still a master after the refresh keeps the refusal as its
//     reply). In a pipeline or a stream, it keeps its place there among
//     the commands of the batch that the same node redirected or could
//     not take: those before it run before it, those after it after it.
//     It does not go to the new master once a later command of the batch
//     was sent there (a MOVED had sent it before the refresh), nor, in a
//     stream, while an earlier one bound there is held back: it would run
//     out of order. It then keeps the refusal, or an error reply that
//     says it was not sent, and a write has an error of unknown outcome,
//     having run on the other masters. A replica refuses writes only, so
//     every node a command for every master goes to is asked for its ROLE
//     before it, on the same connection: one that says it is a replica
//     counts as having refused the command with READONLY, and a command
//     that a replica runs rather than refuses (SCRIPT LOAD, CONFIG SET,
//     DBSIZE, KEYS) reaches the new master too, the former master's
//     answer not taken for the shard's. A node whose ACL refuses ROLE is
//     taken at the layout's word.
//     ClusterOptions.MaxRedirects bounds the redirections of a
//     call; running out gives an error that says so and wraps the last,
//     and counts the retries after TRYAGAIN or CLUSTERDOWN, bounded
//     apart, on their own.
//     A pipeline that stops before every command got through (out of
//     redirections, its context ended, or a node's connection failed
//     while its part was in flight) returns the replies of those that
//     did; each other command has the redirection it last got, an error
//     reply of unknown outcome if it was in flight on that node, or an
//     error reply whose Err says it was not sent (a write for every master
//     that reached some masters only has one of unknown outcome that says
//     so), and the error is a *CommandError for the first of them, or for
//     the one whose redirection could not be followed (an address the
//     client refuses), of unknown outcome once any command ran.
//     A connection failure is retried by the single-node rules
//     (SafeToRetry, Idempotent), never blindly.
//   - A transaction (a default Pipeline, Watch, Transaction) must touch one
//     slot: otherwise it is refused before any byte is sent with a
//     *CrossSlotError, which matches ErrNotApplied. It runs on the slot's
//     master; when the block is redirected, the whole block moves (with
//     ASKING before MULTI for ASK). Watch returns the Tx of the slot's
//     master, which refuses the same way any command, pipeline or Multi
//     with a key outside the watched slot; decoders set on the cluster's
//     Client apply to its replies. Watch and Transaction need the keys to
//     watch, whose slot chooses the master: without them they are refused
//     with a *UsageError. Transaction starts again on the new master when
//     its slot moved or its master could not be reached (a replica
//     promoted in its place), and waits out a migration in progress.
//   - Reads go to masters unless ClusterOptions.ReadFromReplicas is set.
//     Then read-only commands with keys (GET, HGETALL, MGET of one slot,
//     EVAL_RO) go to a healthy replica of their slot's master, chosen at
//     random or by ClusterOptions.SelectReplica, over connections that
//     send READONLY; a pipeline may mix replicas and masters, sends the
//     reads of one slot to one node, and keeps all the commands of a slot
//     it writes to on the master, in order.
//     Writes, transactions, Watch, Transaction, scripts run by Script and
//     blocking reads always go to masters. A read whose replica cannot be
//     reached, fails or is still loading goes to the master instead. A
//     replica lags behind its master: a read from one may not see a write
//     that has just succeeded, even the caller's own; and while a slot
//     moves to another master, a replica of the former one reads a key
//     already moved as missing.
//   - A Stream bulk-loads every master at once: each command goes to the
//     master of its slot, over one connection per node for the whole
//     stream, each node's share sent in chunks while the caller goes on
//     queueing; each still gets every reply once, in the stream's order.
//     Commands of one slot run in the order they were queued, redirections
//     included: once a slot has moved, its new commands wait until those
//     still on their way to the old node have come back and been sent on,
//     in order. (Within a slot being migrated the server itself may run a
//     command that was already on its way behind one it redirected, ASK
//     for a key already moved or TRYAGAIN for a multi-key command whose
//     keys are split, if that command's own keys have not moved yet; the
//     redirected one is then not sent again if they share a key, and keeps
//     its redirection as its reply, so commands on one key keep their order
//     even then.) An ASK is followed at once or not at all, as in a
//     pipeline, and a backoff for TRYAGAIN holds back only its slot. Memory
//     stays bounded: the replies of a fast node wait for those of a slow
//     one, up to a bound, and then the queuing call waits, within the
//     stream's context. A connection that fails, or a context that ends,
//     stops the stream as on one node: nothing is sent again, and the
//     outcome of what was in flight is unknown (OutcomeOf). The stream's
//     function still gets, in order, the replies the other nodes gave;
//     an error reply of unknown outcome for each command written to the
//     node that failed and not answered, and one that says it was not
//     sent for each of its commands still waiting to be written; and,
//     for each command before the last one written that was not sent,
//     or not sent again, the redirection it got or an error reply that
//     says it was not sent. A write for every master that reached some
//     masters only has, as in a pipeline, an error reply of unknown
//     outcome that says so. A node that cannot be reached before anything
//     was written to it refreshes the layout, and its commands go where
//     the new one says. Multi-key
//     commands are split by slot as in a pipeline, each part keeping the
//     order of its slot; one whose keys are in different slots and that
//     is not split (RENAME a b, MSETNX) stops the stream with a
//     *CommandError wrapping a *CrossSlotError, before any command of its
//     chunk is sent, and so does a command that runs out of redirections.
//     A Stream sends every command to a master, reads included.
//
// # Users with narrow ACLs
//
// Besides the commands you call, redpipe sends some of its own, which a
// user whose ACL allows commands one by one (+get +set) must be allowed
// too. HELLO and AUTH, which open every connection, any user may run.
//
//	CLIENT SETNAME  every connection, with Options.ClientName           +client|setname
//	SELECT          every connection, with Options.DB other than 0      +select
//	MULTI, EXEC     transactional pipelines (the default), Tx.Multi     +multi +exec
//	WATCH, UNWATCH  Watch, Transaction with keys; UNWATCH when a Tx     +watch +unwatch
//	                whose watch is armed is closed or reset
//	PING            pooled connections idle for Options.IdleCheckAfter  +ping
//	EVALSHA, EVAL   Script.Run, which falls back to EVAL                +evalsha +eval
//	SCRIPT LOAD     scripts queued in a pipeline or transaction         +script|load
//	CLUSTER SHARDS  a cluster's layout (or CLUSTER SLOTS)               +cluster|shards
//	ASKING          a cluster command redirected by ASK                 +asking
//	READONLY        replica connections, with ReadFromReplicas          +readonly
//	ROLE            a cluster command for every master                  +role
//
// MULTI, EXEC, WATCH and UNWATCH make the @transaction category; ASKING,
// READONLY, SELECT and CLIENT SETNAME are in @connection. Some refusals
// cost nothing but a check: a PING refused still proves the connection
// answers, and a master that refuses ROLE is taken at the layout's word.
// The others fail with the server's NOPERM, wrapped in an error that says
// which rule to add: a connection whose setup is refused is not made (a
// *HandshakeError, not sent); a refused MULTI lets the server run the
// commands behind it one by one, so that Exec's error is of unknown
// outcome (grant @transaction, or use NoTransaction); a refused UNWATCH
// costs the session its connection, which is closed rather than pooled
// with its watch; a command redirected by ASK whose ASKING is refused is
// not run. A refused SCRIPT LOAD leaves NOSCRIPT, with the refusal, as the
// reply of the script's commands, unless the server has the script
// already. Connections to replicas that refuse READONLY are not made, and
// reads go to the masters.
//
// A user deleted, turned off or whose password changed on the server
// fails each call with the server's WRONGPASS when a new connection is
// made (the server closes those of a deleted user), after one dial, and
// in a cluster without waiting for the layout. ACL rules are each node's
// own: keep them alike on every node, and saved (ACL SAVE, an aclfile),
// or a node restarted from its config refuses the user. The layout is
// then asked for in the background, so that the slots of a master that
// refuses, but that a failover has replaced, follow the promoted replica.
//
// # Testing
//
// Package redistest starts real redis-server processes on free loopback
// ports for tests, and stops them when the test ends.
package redpipe
