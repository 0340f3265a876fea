package redpipe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/pool"
	"github.com/redpipe/redpipe/internal/resp"
)

// Client is a handle to one Redis server, or to a Redis Cluster when
// NewClusterClient or ConnectCluster made it, with the same methods. It is
// safe for concurrent use and meant to be long-lived: make one and share
// it.
//
// Plain calls share one connection (on a cluster, one per node): calls made at the same time by many
// goroutines go out in one write and their replies are handed back in order
// (auto-pipelining). WATCH sessions, blocking commands and large pipelines
// get a connection of their own from a bounded pool.
type Client struct {
	opt     Options
	connOpt conn.Options

	// shared is the connection plain calls use; replaced under dialMu when
	// it fails. Read without a lock on every call.
	shared  atomic.Pointer[conn.Conn]
	dialMu  sync.Mutex   // guards dialing, noDials and aging
	dialing *pendingDial // the dial of a new shared connection, or nil
	noDials bool         // set by Close: no dial starts after it waits for dials
	aging   *time.Timer  // marks the shared connection aged at MaxConnAge
	// roDial is the shared connection dialed to replace one refused with
	// READONLY, and roDialed when that dial began; guarded by dialMu.
	// Should it be refused with READONLY too before readOnlyRedial has
	// passed, it is kept (see sharedConn).
	roDial   *conn.Conn
	roDialed time.Time
	// retiring counts the replaced shared connections that retire has
	// yet to close, calls being in line on them; written by retire's
	// goroutines, read by closeIfDone.
	retiring atomic.Int32

	// life ends when the client is closed, cutting short dials in flight,
	// dedicated ones included; Close waits for them with dials.
	life    context.Context
	endLife context.CancelFunc
	dials   sync.WaitGroup

	pool *pool.Pool[*dedicated]
	lent lentCounts // the pool's connections lent, by use (see lend.go)

	decMu    sync.Mutex                         // serialises SetDecoder
	decoders atomic.Pointer[map[string]Decoder] // copy-on-write, read on every reply

	// turns let this client's own transactions on the same keys take
	// turns (see txturn.go), each waiting for at most turnWait.
	turns    turns
	turnWait time.Duration

	// cluster routes the calls of a client of a Redis Cluster to the
	// clients of its nodes (cluster*.go); nil for a single node.
	// Set when the client is made.
	cluster *clusterRouter

	// front is the cluster Client of which this is the client of one node,
	// nil otherwise. The node's sessions (Watch, Transaction) apply its
	// decoders and keep to one slot as a cluster requires. Set when the
	// client is made.
	front *Client

	// onConnect are commands sent on every new connection after the
	// handshake, before any call's: READONLY on the client of a cluster
	// replica that serves reads. Set when the client is made.
	onConnect [][]any

	// replica is set on the client of a cluster replica that serves
	// reads, when it is made.
	replica bool

	// noTLSPort is set, by the cluster router, on the client over TLS of
	// a node whose port came from a layout that listed no TLS port for
	// it: a handshake that fails there most likely met a plain port.
	noTLSPort atomic.Bool

	// released is set, and never cleared, on the client of a node of a
	// cluster once the node has left the cluster's layout: it starts no
	// connection, and its calls fail with errReleased, not sent, which the
	// cluster Client reroutes. See release.
	released atomic.Bool

	mu     sync.Mutex // guards live and closed
	live   map[*conn.Conn]struct{}
	closed bool
	// closeDone is closed when the first Close has finished, so that
	// another, made at the same time, returns no sooner.
	closeDone chan struct{}
}

// NewClient makes a Client. It checks the options but does not connect:
// the first call does. Use Connect to fail fast on a bad address or
// password.
func NewClient(opt Options) (*Client, error) {
	opt = opt.defaults()
	if err := opt.validate(); err != nil {
		return nil, err
	}
	// Options are a copy, and so is the TLS configuration they point to:
	// a change the caller makes to it later, while the client dials
	// with it, would otherwise reach the client halfway, and race.
	opt.TLSConfig = cloneTLS(opt.TLSConfig)
	c := &Client{
		opt: opt,
		connOpt: conn.Options{Limits: resp.Limits{
			MaxBulkLen:  opt.MaxReplyBytes,
			MaxArrayLen: opt.MaxReplyElems,
			MaxDepth:    opt.MaxReplyDepth,
		}},
		live:      make(map[*conn.Conn]struct{}),
		closeDone: make(chan struct{}),
	}
	c.turnWait = defaultTurnWait
	c.life, c.endLife = context.WithCancel(context.Background())
	pc := pool.Config[*dedicated]{
		Dial:        c.dialDedicated,
		Size:        opt.PoolSize,
		MaxIdle:     max(opt.MaxIdle, 0),     // -1: none
		MaxIdleTime: max(opt.MaxIdleTime, 0), // -1: never
		MaxAge:      opt.MaxConnAge,
		// A connection its server closed while idle (its timeout
		// setting, CLIENT KILL) is seen closed before it is lent: one
		// read that does not wait, with no round trip.
		Alive: (*dedicated).CheckIdle,
	}
	if opt.IdleCheckAfter >= 0 {
		pc.Check, pc.CheckAfter = pingDedicated, opt.IdleCheckAfter
	}
	c.pool = pool.New(pc)
	return c, nil
}

// Connect parses a URL (see ParseURL), makes a Client and checks that it
// can connect and authenticate.
func Connect(ctx context.Context, rawURL string) (*Client, error) {
	if badContext(ctx) {
		return nil, nilContext(ctx, "Connect")
	}
	opt, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	c, err := NewClient(opt)
	if err != nil {
		return nil, err
	}
	if _, err := c.sharedConn(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Options returns the client's options with defaults filled in. Its
// TLSConfig is a copy: changing it changes nothing in the client.
func (c *Client) Options() Options {
	o := c.opt
	o.TLSConfig = cloneTLS(o.TLSConfig)
	return o
}

// cloneTLS copies a TLS configuration, if there is one.
func cloneTLS(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	return cfg.Clone()
}

// Do runs any command given as its words, such as
// c.Do(ctx, "OBJECT", "ENCODING", "k"), including commands redpipe has no
// typed method for. Arguments may be strings, []byte, integers, floats,
// bools, time.Time (sent as RFC 3339 text) and values with a MarshalBinary,
// MarshalText or String method, tried in that order; a time.Duration, a nil
// pointer, a Value, another type or a failing marshaler is refused with an
// *ArgError and nothing is sent (see the package documentation). A command
// the server's table knows is checked for its number of arguments before it
// is sent. The server's error reply (WRONGTYPE...) is returned as the
// Value, whose Err gives it, with a nil error, which is kept for a command
// that got no reply; a script's error reply (EVAL, EVALSHA, FCALL) comes
// the same way, its Err of unknown outcome.
func (c *Client) Do(ctx context.Context, args ...any) (Value, error) {
	w := getBuf()
	w.do(args)
	return c.run(ctx, w)
}

// run sends one encoded command and returns its reply; it owns w. A
// connection failure is retried (see retryable) up to MaxRetries times.
func (c *Client) run(ctx context.Context, w *cmdBuf) (Value, error) {
	defer putBuf(w)
	if w.err != nil {
		return Value{}, w.err
	}
	ci := w.cmds[0].info()
	if badContext(ctx) {
		return Value{}, nilContext(ctx, ci.Name+" on the Client")
	}
	if ci.has(flagConnState) {
		return Value{}, &UsageError{Msg: ci.Name + " changes the state of a connection and cannot run on the client's shared connection; " + connStateHint(ci.Name)}
	}
	if ci.has(flagBlocking) && (ci == cmdWait || ci.Name == "WAITAOF") {
		// Run alone it goes on a connection of its own, which has made no
		// writes: the server would count every replica at once.
		return Value{}, &UsageError{Msg: ci.Name + " counts the replicas that have the writes of its own connection, and a call alone has none: " +
			"queue it after the writes in a NoTransaction Pipeline, or run it on the Tx that made them"}
	}
	if c.cluster != nil {
		v, err := c.cluster.run(ctx, w, ci)
		return c.decode(w, v, err)
	}
	var v Value
	err := c.retry(ctx, ci.has(flagReadonly), func() (err error) {
		v, err = c.runOnce(ctx, w)
		return err
	})
	return c.decode(w, v, err)
}

func (c *Client) runOnce(ctx context.Context, w *cmdBuf) (Value, error) {
	// A command that may block, or one large enough to hold up the shared
	// connection while it is written, gets a connection of its own.
	if w.blocks(0) || len(w.buf) > largePipeline {
		return c.runDedicated(ctx, w)
	}
	redialed := false
	for {
		cn, err := c.sharedConn(ctx)
		if err != nil {
			return Value{}, err
		}
		if f := sharedTaken.get(); f != nil {
			f(c, cn)
		}
		v, err := cn.DoOne(ctx, w.buf)
		if err == nil || !replaced(err) && !closedIdle(err, &redialed) {
			return Value{v}, err
		}
		// See replaced. The connection that took its place may itself be
		// replaced before the call joins its line, with a short
		// MaxConnAge; each turn follows a dial that succeeded, so the
		// turns end with the replacements.
	}
}

// sharedTaken, when set, runs as a call that took the shared connection is
// about to join its line: for tests.
var sharedTaken hook[func(c *Client, cn *conn.Conn)]

// hook is a function that tests set to run at a point of the client's
// work, nil when unset. It is read under the race detector's eye by
// goroutines a test may not know of, such as a dial or a retiring
// connection's, so it is set and read atomically.
type hook[F any] struct{ f atomic.Pointer[F] }

func (h *hook[F]) get() F {
	if p := h.f.Load(); p != nil {
		return *p
	}
	var none F
	return none
}

func (h *hook[F]) set(f F) { h.f.Store(&f) }

// decode applies a registered Decoder to the reply of a single command;
// a decoder's failure becomes the call's error.
func (c *Client) decode(w *cmdBuf, v Value, err error) (Value, error) {
	if err == nil && v.isErr() {
		markScriptErr(&v, w.cmds[0].Name(), false)
		return v, nil
	}
	if err != nil || c.decoderTable() == nil {
		return v, err
	}
	name := w.cmds[0].Name()
	if w.decodeAs != "" {
		name = w.decodeAs
	}
	return v, decodeReply(&v, name, c.decoder(name))
}

func connStateHint(name string) string {
	switch name {
	case "WATCH", "UNWATCH", "MULTI", "EXEC", "DISCARD":
		return "use Client.Watch, Client.Transaction or a Pipeline"
	case "SELECT":
		return "set Options.DB or use one Client per database"
	case "AUTH", "HELLO":
		return "set Options.Username and Options.Password"
	}
	return "it is not supported"
}

// runDedicated runs a blocking command, or a large one, on a connection of
// its own, so it does not hold up the shared one. A blocking command's own
// timeout is added to the stall guard's.
func (c *Client) runDedicated(ctx context.Context, w *cmdBuf) (Value, error) {
	use := lendLarge
	if w.blocks(0) {
		use = lendBlocking
	}
	d, err := c.getDedicated(ctx, use)
	if err != nil {
		return Value{}, err
	}
	v, err := d.WithGrace(w.grace).DoOne(ctx, w.buf)
	// A call abandoned on ctx leaves its reply unread: Put sees the
	// connection is not idle and closes it.
	c.putDedicated(d, err == nil)
	return Value{v}, err
}

// liveShared returns the client's shared connection if it has one that
// has not failed and is not to be replaced (MaxConnAge), without
// dialing. A released client's has none to give: its connection serves
// the calls in line only, and a new call, or a pipeline's part, goes the
// way that fails not sent and follows the layout (see release).
func (c *Client) liveShared() *conn.Conn {
	if cn := c.shared.Load(); cn != nil && cn.Alive() && !cn.Stale() && !c.released.Load() {
		return cn
	}
	return nil
}

// sharedConn returns the connection for plain calls. If there is none, or
// the last one failed, one dial starts and every caller waits for it, each
// for no longer than its own context allows.
func (c *Client) sharedConn(ctx context.Context) (*conn.Conn, error) {
	if cn := c.liveShared(); cn != nil {
		return cn, nil
	}
	c.dialMu.Lock()
	cn := c.shared.Load()
	if cn != nil && cn.Alive() && cn.ReadOnly() && cn == c.roDial && time.Since(c.roDialed) < readOnlyRedial {
		// Dialed just now to replace a connection refused with READONLY,
		// and refused so too: Addr reaches a replica still, perhaps on
		// purpose. Dialing again at every refused write would cost a
		// connection per write and find the same server; the next
		// refusal after readOnlyRedial tries again.
		cn.ClearReadOnly()
	}
	if cn != nil && cn.Alive() && !cn.Stale() && !c.noDials {
		c.dialMu.Unlock()
		return cn, nil
	}
	if c.noDials {
		c.dialMu.Unlock()
		return nil, c.closedErr()
	}
	pd := c.dialing
	if pd == nil {
		pd = &pendingDial{done: make(chan struct{}), readOnly: cn != nil && cn.Alive() && cn.ReadOnly()}
		c.dialing = pd
		c.dials.Add(1)
		go c.dialShared(pd)
	}
	c.dialMu.Unlock()
	// A connection open for MaxConnAge serves on until the one dialed to
	// replace it is ready: otherwise every call would wait out that dial,
	// or fail with it, at each MaxConnAge. One whose server refused a
	// write with READONLY does not: it reaches a replica.
	if cn != nil && cn.Alive() && !cn.ReadOnly() && !c.released.Load() {
		return cn, nil
	}
	select {
	case <-pd.done:
		return pd.cn, pd.err
	case <-ctx.Done():
		return nil, notSent(conn.ContextErr(ctx))
	}
}

// userDial runs dial, which calls the user's code (Options.Dialer, or the
// callbacks of Options.TLSConfig such as VerifyConnection), on a goroutine
// of its own, where a panic or a runtime.Goexit (t.FailNow calls it)
// becomes the dial's error. Dials run on the client's own goroutines too
// (the shared connection's; on a cluster, those that send to several
// masters at once), where a panic would end the program and a Goexit
// would end the goroutine with neither a connection nor an error for what
// waits on it; on the caller's, either would keep the pool's slot for the
// connection taken for good.
func userDial(what string, dial func() (net.Conn, error)) (nc net.Conn, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		err = fmt.Errorf("%s did not return: %w", what, errGoexit)
		defer func() {
			if p := recover(); p != nil {
				nc = nil
				if e, ok := p.(error); ok {
					err = fmt.Errorf("%s panicked: %w", what, e)
				} else {
					err = fmt.Errorf("%s panicked: %v", what, p)
				}
			}
		}()
		nc, err = dial()
	}()
	<-done
	return nc, err
}

// userConn is a connection of a type of the user's, that Options.Dialer
// returned. Its methods are the user's code, which the connection's reader
// and writer goroutines call: a panic there, which would end the program,
// becomes the method's error, which fails the connection. A Write that
// panicked reports all its bytes written: some may have been, and the
// commands they carry must not pass for not sent.
type userConn struct{ net.Conn }

func (u userConn) Read(b []byte) (n int, err error) {
	defer recoverConn(&err, "Read")
	return u.Conn.Read(b)
}

func (u userConn) Write(b []byte) (n int, err error) {
	defer func() {
		if p := recover(); p != nil {
			n, err = len(b), connPanicked("Write", p)
		}
	}()
	return u.Conn.Write(b)
}

func (u userConn) Close() (err error) {
	defer recoverConn(&err, "Close")
	return u.Conn.Close()
}

func (u userConn) SetDeadline(t time.Time) (err error) {
	defer recoverConn(&err, "SetDeadline")
	return u.Conn.SetDeadline(t)
}

func (u userConn) SetReadDeadline(t time.Time) (err error) {
	defer recoverConn(&err, "SetReadDeadline")
	return u.Conn.SetReadDeadline(t)
}

func (u userConn) SetWriteDeadline(t time.Time) (err error) {
	defer recoverConn(&err, "SetWriteDeadline")
	return u.Conn.SetWriteDeadline(t)
}

// recoverConn, deferred by a method of userConn, makes its panic its error.
func recoverConn(err *error, method string) {
	if p := recover(); p != nil {
		*err = connPanicked(method, p)
	}
}

func connPanicked(method string, p any) error {
	if e, ok := p.(error); ok {
		return fmt.Errorf("the %s of the connection the Dialer returned panicked: %w", method, e)
	}
	return fmt.Errorf("the %s of the connection the Dialer returned panicked: %v", method, p)
}

// pendingDial is a dial of the shared connection that callers wait for.
type pendingDial struct {
	done     chan struct{} // closed when cn and err are set
	cn       *conn.Conn
	err      error
	readOnly bool // it replaces a connection refused with READONLY
}

// readOnlyRedial is how soon a shared connection dialed to replace one
// refused with READONLY may itself be replaced for that reason.
var readOnlyRedial = time.Second

// dialShared dials on behalf of every waiter, so it is bounded by
// DialTimeout and the client's life, not by the first caller's context.
func (c *Client) dialShared(pd *pendingDial) {
	defer c.dials.Done()
	var cn *conn.Conn
	// Kept should the dial end the goroutine, which userDial keeps the
	// user's code from doing: the waiters are then told, and the next call
	// dials again, rather than every call waiting for a dial that never
	// ends.
	err := notSent(&DialError{Addr: c.opt.Addr, Err: errors.New("the dial did not return")})
	began := time.Now()
	defer func() {
		if f := sharedDialed.get(); f != nil {
			f(c)
		}
		var old *conn.Conn
		c.dialMu.Lock()
		if err == nil {
			old = c.shared.Swap(cn)
			c.ageLocked(cn, c.opt.MaxConnAge)
			if pd.readOnly {
				c.roDial, c.roDialed = cn, began
			} else {
				c.roDial = nil
			}
		} else if cur := c.shared.Load(); cur != nil && cur.Alive() && !cur.ReadOnly() && !c.noDials {
			// An aged connection serves on (see sharedConn), and its
			// replacement is dialed again later rather than by every call
			// that comes meanwhile.
			cur.SetAged(false)
			c.ageLocked(cur, min(c.opt.MaxConnAge, time.Second))
		}
		// Counted before dialing is cleared, both under dialMu, so that
		// closeIfDone sees the one or the other.
		retiring := old != nil && old.Alive()
		if retiring {
			c.retiring.Add(1)
		}
		c.dialing = nil
		c.dialMu.Unlock()
		switch {
		case retiring:
			c.retire(old)
		case old != nil:
			c.closeConn(old)
		}
		pd.cn, pd.err = cn, err
		close(pd.done)
	}()
	cn, err = c.dial(c.life)
}

// sharedDialed, when set, runs as a dial of the shared connection ends,
// before its outcome is recorded: for tests.
var sharedDialed hook[func(c *Client)]

// ageLocked marks cn aged after d, a replacement of the shared
// connection then to be dialed, or never if d is 0 (no MaxConnAge) or
// Close has begun: a dial that succeeded as Close began comes here after
// Close stopped the timer, which would otherwise fire after it. It is
// called with dialMu held.
func (c *Client) ageLocked(cn *conn.Conn, d time.Duration) {
	if c.aging != nil {
		c.aging.Stop()
		c.aging = nil
	}
	if d > 0 && !c.noDials {
		c.aging = time.AfterFunc(d, func() { cn.SetAged(true) })
	}
}

// errReplaced and errAged fail a call that took a shared connection as
// another replaced it, and found it closed: nothing of it was sent.
var (
	errReplaced = errors.New("redpipe: the connection was replaced, its server having refused a write as a read-only replica")
	errAged     = errors.New("redpipe: the connection was replaced, having been open for Options.MaxConnAge")
)

// replaced tells the failure of a call that took the shared connection
// just as a new one replaced it, and joined its line once it was closed:
// nothing of it was sent, and it belongs on the new one. The replacement
// is the client's own doing, so such a call neither counts it against
// MaxRetries nor waits out a backoff.
func replaced(err error) bool {
	var ce *conn.Error
	return errors.As(err, &ce) && ce.Unsent && (errors.Is(err, errReplaced) || errors.Is(err, errAged))
}

// closedIdle tells the failure of a call that found the shared connection
// closed by its server while no call was in line on it (its timeout
// setting, CLIENT KILL), before it joined the line: nothing of it was
// sent, and it belongs on a new connection, as when the connection was
// replaced. It is a failure the client expects of a connection left
// unused, not a sign of trouble, so the call takes a new connection once
// without counting it against MaxRetries or waiting out a backoff. Only
// once: a server that closes every new connection as soon as it is made
// fails the call, which retry may then send again as not sent.
func closedIdle(err error, redialed *bool) bool {
	if *redialed || !conn.ClosedIdle(err) {
		return false
	}
	*redialed = true
	return true
}

// retire closes old, a shared connection that a new one has replaced
// while it still works (its server became a replica, or it reached
// MaxConnAge), once the calls in line on it have their replies: cut
// short, they would fail although their replies were on the way. It is
// counted in dials, so that Close, which ends it, waits for it, and in
// retiring, which its caller added to, so that closeIfDone waits for it.
func (c *Client) retire(old *conn.Conn) {
	why := errAged
	if old.ReadOnly() {
		why = errReplaced
	}
	c.dials.Add(1) // in dialShared, itself counted: Close cannot be done waiting
	go func() {
		defer c.dials.Done()
		defer c.retiring.Add(-1)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for !old.CloseIdle(why) {
			select {
			case <-tick.C:
			case <-c.life.Done():
				c.closeConn(old)
				return
			}
		}
		c.closeConn(old) // forgets it; closing it again does nothing
	}()
}

// dedicated is a connection lent by the pool.
type dedicated struct {
	*conn.Conn
	c   *Client
	use lendUse // what it is lent for; set by getDedicated
}

func (d *dedicated) Close() error { return d.c.closeConn(d.Conn) }

// Idle is the pool's test of a connection given back: one whose server
// refused a write as a read-only replica is not lent again, as the master
// the client is for may be found at Addr by a new connection.
func (d *dedicated) Idle() bool { return d.Conn.Idle() && !d.Conn.ReadOnly() }

func (c *Client) dialDedicated(ctx context.Context) (*dedicated, error) {
	cn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &dedicated{Conn: cn, c: c}, nil
}

// pingCmd is PING, encoded.
var pingCmd = []byte("*1\r\n$4\r\nPING\r\n")

// pingDedicated is the pool's check of a connection that has been idle
// for Options.IdleCheckAfter: one PING round trip, under the borrower's
// context. Any reply passes, an error reply too: the server answered in
// order on the connection, which is what the check asks. A user whose ACL
// refuses PING, or a server still loading its data, would otherwise have
// every idle connection closed and dialed again before it is lent.
func pingDedicated(ctx context.Context, d *dedicated) error {
	_, err := d.DoOne(ctx, pingCmd)
	return err
}

// getDedicated lends a pooled connection for use; its failures are marked
// not sent. putDedicated gives it back.
func (c *Client) getDedicated(ctx context.Context, use lendUse) (*dedicated, error) {
	if c.released.Load() {
		// Refused from the release on, as on the shared connection: the
		// pool is closed only once the router has let go of its lock,
		// and until then it would lend an idle connection, or dial one,
		// to an address the layout no longer lists.
		return nil, c.closedErr()
	}
	d, err := c.pool.Get(ctx)
	if err == nil {
		d.use = use
		c.lent[use].Add(1)
		return d, nil
	}
	if size, ok := poolExhausted(err); ok {
		// The pool waited for a connection until ctx ended, every one
		// lent: say to what, which is most often a session never closed.
		return nil, notSent(c.exhausted(ctx, size))
	}
	switch {
	case errors.Is(err, pool.ErrClosed):
		return nil, c.closedErr()
	case err == ctx.Err():
		// The pool waited for a connection until ctx ended.
		err = conn.ContextErr(ctx)
	}
	return nil, notSent(err)
}

// dial opens, registers and handshakes a connection. Every connection,
// shared or dedicated, gets the stall guard (ReplyTimeout); a call with a
// blocking command carries its own timeout on top of it. Errors are marked
// not sent: no command has been written yet.
func (c *Client) dial(ctx context.Context) (*conn.Conn, error) {
	// Counted under mu, before Close sets closed and waits for dials, so
	// that Close does not return while a dial of a call's is still running.
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.dials.Add(1)
	}
	c.mu.Unlock()
	if closed {
		return nil, c.closedErr()
	}
	defer c.dials.Done()
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, c.opt.DialTimeout)
	defer cancel()
	// A dedicated connection is dialed under its caller's context, which
	// Close cannot end: the client's life ends that dial too, or a call in
	// flight would go on connecting and waiting for a TLS handshake after
	// Close, until DialTimeout.
	stop := context.AfterFunc(c.life, cancel)
	defer stop()
	nc, err := c.dialNet(ctx)
	if err != nil {
		if c.life.Err() != nil {
			return nil, c.closedErr()
		}
		return nil, notSent(&DialError{Addr: c.opt.Addr, Err: c.dialTimedOut(ctx, caller, err)})
	}
	if f := netDialed.get(); f != nil {
		f(nc)
	}
	opt := c.connOpt
	// The handshake's replies are read under the default limits: the
	// server's HELLO reply, with a map of seven fields and a list of its
	// modules, each a map with a list of its arguments, would break
	// limits set for the caller's data (a MaxReplyDepth of 2 or 3, say)
	// on one server and not another, and no connection could be made.
	// The caller's limits apply from the first reply after it.
	opt.Limits = resp.Limits{}
	if c.opt.Dialer == nil {
		opt.Poll = max(c.opt.PollWait, 0)
		opt.SelfRead = true
	}
	if c.opt.ReplyTimeout > 0 {
		opt.StallTimeout = c.opt.ReplyTimeout
	}
	// A client of one server whose master moved, as after a failover
	// behind a DNS name, replaces a connection refused with READONLY;
	// those of a cluster follow its layout instead.
	opt.NoteReadOnly = c.cluster == nil && c.front == nil && !c.replica
	cn := conn.New(nc, opt)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cn.Close()
		return nil, c.closedErr()
	}
	c.live[cn] = struct{}{}
	c.mu.Unlock()
	if err := c.handshake(ctx, cn); err != nil {
		c.closeConn(cn)
		if c.life.Err() != nil {
			return nil, c.closedErr()
		}
		var he *HandshakeError
		if errors.As(err, &he) {
			he.Err = c.dialTimedOut(ctx, caller, he.Err)
		}
		if c.front != nil && !c.replica && refusedSetup(err) {
			// The call fails with the refusal at once (see refusedSetup),
			// but the layout is asked for all the same, in the background
			// and no more often than any refresh: ACL rules are the
			// node's own, and a master restarted without them, or an
			// address now of another server, refuses the slots the
			// layout moved elsewhere since (a replica promoted in its
			// place), which no MOVED will ever tell.
			c.front.cluster.triggerRefresh()
		}
		return nil, notSent(err)
	}
	if c.connOpt.Limits != opt.Limits {
		cn.SetLimits(c.connOpt.Limits)
	}
	return cn, nil
}

// netDialed, when set, runs as a dial has opened its socket, before
// anything is sent on it: for tests.
var netDialed hook[func(nc net.Conn)]

// dialTimedOut names DialTimeout in err, the error of a dial or handshake
// under ctx, if DialTimeout ended it rather than the caller's context:
// what the context's end leaves in err ("context deadline exceeded",
// "i/o timeout") reads as the caller's deadline, of a caller who may have
// set none, when a server slow to answer, or one that took the
// connection and never answered, is what happened.
//
// A timeout that the caller's context ended, or whose deadline passed,
// is made to match that context's error for errors.Is, which it may not:
// net.Dialer sets the socket's connect deadline from the context's, and
// when that fires before the context's own timer has ended it, the dial
// returns the socket's "i/o timeout" (os.ErrDeadlineExceeded), not
// context.DeadlineExceeded.
func (c *Client) dialTimedOut(ctx, caller context.Context, err error) error {
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	if !timeout {
		return err
	}
	cerr := conn.ContextErr(caller)
	if d, ok := caller.Deadline(); cerr == nil && ok && !time.Now().Before(d) {
		cerr = context.DeadlineExceeded // passed, though its timer has not run yet
	}
	if cerr != nil {
		if errors.Is(err, cerr) {
			return err
		}
		return &dialEndedError{err: err, ctx: cerr}
	}
	if ctx.Err() != context.DeadlineExceeded {
		return err
	}
	return fmt.Errorf("DialTimeout (%v) ran out before the connection was ready: %w", c.opt.DialTimeout, err)
}

// dialEndedError is the error of a dial or handshake that the caller's
// context ended, when it does not say so itself: its text is the dial's,
// with the context's error after it, and errors.Is and As reach both.
type dialEndedError struct {
	err error // the dial's or handshake's
	ctx error // the caller's context's
}

func (e *dialEndedError) Error() string {
	return e.err.Error() + " (the call's context ended: " + e.ctx.Error() + ")"
}

func (e *dialEndedError) Unwrap() []error { return []error{e.err, e.ctx} }

// dialNet connects to the server: through Options.Dialer, or a net.Dialer
// and, with a TLSConfig, the TLS handshake.
func (c *Client) dialNet(ctx context.Context) (net.Conn, error) {
	switch {
	case c.opt.Dialer != nil:
		nc, err := userDial("the Dialer", func() (net.Conn, error) { return c.opt.Dialer(ctx, c.opt.Network, c.opt.Addr) })
		if err != nil {
			if nc != nil {
				userConn{nc}.Close() // nothing else would close it
			}
			return nil, err
		}
		_, isTLS := nc.(*tls.Conn)
		nc, err = checkDialed(nc)
		if err != nil || c.opt.TLSConfig == nil || isTLS {
			return nc, err
		}
		// The Dialer gave the path to the server (a tunnel, a proxy),
		// and TLSConfig asks for TLS: left out, the password and every
		// command would go over it in plain text.
		return userDial("the TLS handshake", func() (net.Conn, error) { return c.handshakeTLS(ctx, nc) })
	case c.opt.TLSConfig != nil:
		return userDial("the TLS handshake", func() (net.Conn, error) { return c.dialTLS(ctx) })
	}
	var d net.Dialer
	return d.DialContext(ctx, c.opt.Network, c.opt.Addr)
}

// checkDialed takes what Options.Dialer returned without an error for a
// connection. A nil one, taken for a connection, would crash the
// client's own goroutines at their first read or write, where no panic
// can be recovered; a nil one of a type of the standard library's is
// told as nil too. Sockets of the standard library's alone are used as
// they are; any other connection, a *tls.Conn included, which may run
// over one of the user's, is guarded as a userConn.
func checkDialed(nc net.Conn) (net.Conn, error) {
	errNil := errors.New("the Dialer returned neither a connection nor an error")
	switch v := nc.(type) {
	case nil:
		return nil, errNil
	case *net.TCPConn:
		if v == nil {
			return nil, errNil
		}
		return v, nil
	case *net.UnixConn:
		if v == nil {
			return nil, errNil
		}
		return v, nil
	case *tls.Conn:
		// A nil one is told as nil, as the sockets' are; any other is
		// guarded below, as it may run over a connection of the user's.
		if v == nil {
			return nil, errNil
		}
	}
	return userConn{nc}, nil
}

func (c *Client) dialTLS(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, c.opt.Network, c.opt.Addr)
	if err != nil {
		return nil, err
	}
	return c.handshakeTLS(ctx, nc)
}

// handshakeTLS runs the TLS handshake of Options.TLSConfig over nc, which
// it closes if the handshake fails.
func (c *Client) handshakeTLS(ctx context.Context, nc net.Conn) (net.Conn, error) {
	// Deferred, so that a callback that panics or ends the goroutine
	// leaves no socket open.
	done := false
	defer func() {
		if !done {
			nc.Close()
		}
	}()
	cfg := c.opt.TLSConfig
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(c.opt.Addr)
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			// A socket's path has no host (NewClient refuses that
			// without a Dialer; a Dialer may have returned a plain
			// connection all the same): crypto/tls's own words would not
			// say which option to set.
			return nil, fmt.Errorf("TLS handshake with %s not begun: Options.TLSConfig has no ServerName, and Addr has no host to take it from; "+
				"set TLSConfig.ServerName to the name the server's certificate is for", c.opt.Addr)
		}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		// A server without TLS on the port reads the handshake as a
		// command and waits for the rest of it, or answers in plain text.
		var rh tls.RecordHeaderError
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &rh) || errors.As(err, &ne) && ne.Timeout() {
			if c.noTLSPort.Load() {
				return nil, fmt.Errorf("TLS handshake with %s failed: the cluster lists this port for the node and no TLS port, "+
					"as its nodes do without tls-cluster yes; set tls-cluster yes on every node so that they list their TLS ports: %w", c.opt.Addr, err)
			}
			return nil, fmt.Errorf("TLS handshake with %s failed (does the server accept TLS on this port?): %w", c.opt.Addr, err)
		}
		return nil, fmt.Errorf("TLS handshake with %s failed: %w", c.opt.Addr, err)
	}
	done = true
	return tc, nil
}

// handshake prepares a new connection: HELLO 3 with AUTH and SETNAME, or on
// a server without HELLO (or with Protocol 2) AUTH and CLIENT SETNAME; then
// SELECT, then the client's onConnect commands. A Username always
// authenticates, even with an empty Password: leaving it out would run the
// connection as the default user.
func (c *Client) handshake(ctx context.Context, cn *conn.Conn) error {
	o := &c.opt
	auth := o.Username != "" || o.Password != ""
	w := getBuf()
	defer putBuf(w)
	exchange := func(args ...any) error {
		w.reset()
		w.do(args)
		if w.err != nil {
			return w.err
		}
		v, err := cn.DoOne(ctx, w.buf)
		if err != nil {
			return err
		}
		return Value{v}.Err()
	}

	resp2 := o.Protocol == 2
	if !resp2 {
		args := []any{"HELLO", "3"}
		if auth {
			user := o.Username
			if user == "" {
				user = "default"
			}
			args = append(args, "AUTH", user, o.Password)
		}
		if o.ClientName != "" {
			args = append(args, "SETNAME", o.ClientName)
		}
		err := exchange(args...)
		var se *Error
		switch {
		case err == nil:
		case errors.As(err, &se) && o.Protocol == 0 && helloUnknown(se):
			resp2 = true
		default:
			return handshakeError("HELLO", o.Username, err)
		}
	}
	if resp2 {
		if auth {
			args := []any{"AUTH", o.Password}
			if o.Username != "" {
				args = []any{"AUTH", o.Username, o.Password}
			}
			if err := exchange(args...); err != nil {
				return handshakeError("AUTH", o.Username, err)
			}
		}
		if o.ClientName != "" {
			if err := exchange("CLIENT", "SETNAME", o.ClientName); err != nil {
				return handshakeError("CLIENT SETNAME", o.Username, err)
			}
		}
	}
	if o.DB != 0 {
		if err := exchange("SELECT", o.DB); err != nil {
			return handshakeError("SELECT", o.Username, err)
		}
	}
	for _, args := range c.onConnect {
		if err := exchange(args...); err != nil {
			return handshakeError(fmt.Sprint(args[0]), o.Username, err)
		}
	}
	return nil
}

// helloUnknown tells a server that predates HELLO (or has it renamed away)
// from one that refused our credentials.
func helloUnknown(e *Error) bool {
	return e.Prefix == "NOPROTO" || (e.Prefix == "ERR" && strings.Contains(strings.ToLower(e.Msg), "unknown command"))
}

// handshakeError is the failure of a step of a connection's setup, as
// user. A refusal by the server that comes of the options says which to
// change, or what to grant the user: the server's own words speak of its
// commands (NOAUTH's of the AUTH option of HELLO), which the caller never
// wrote, and NOPERM's name the command, not the rule that allows it.
func handshakeError(step, user string, err error) error {
	var ur *conn.UnaskedReplyError
	if errors.As(err, &ur) {
		// The server's refusal came before the step's own reply could
		// (its maxclients reached, as it accepted the connection): it is
		// the step's refusal all the same, as when it comes after.
		err = newError(ur.Msg)
	}
	he := &HandshakeError{Step: step, Err: err}
	var se *Error
	if !errors.As(err, &se) {
		return he
	}
	switch {
	case strings.Contains(se.Msg, "max number of clients reached"):
		he.hint = "the server has as many connections as its maxclients setting allows: close some, or raise maxclients"
	case se.Prefix == "NOAUTH":
		he.hint = "the server requires a password: set Options.Password, and Options.Username for a user other than default, " +
			"or give them in the URL as redis://user:password@host"
	case se.Prefix == "WRONGPASS":
		he.hint = "check Options.Username and Options.Password, or those of the URL: the server refused them, " +
			"or the password changed on the server, or the user is off or deleted"
	case step == "SELECT" && strings.Contains(se.Msg, "out of range"):
		he.hint = "Options.DB, or the URL's database, is past the databases the server has (its databases setting, 16 by default)"
	case se.Prefix != "NOPERM":
	case step == "CLIENT SETNAME":
		he.hint = "the user may not name its connection: leave Options.ClientName empty, or allow it CLIENT SETNAME (" + aclGrant(user, step) + ")"
	case step == "SELECT":
		he.hint = "the user may not run SELECT, which Options.DB (the URL's database) asks for on every connection: " +
			"leave it 0, or allow the user SELECT (" + aclGrant(user, step) + ")"
	case step == "READONLY":
		he.hint = "the user may not run READONLY, which ClusterOptions.ReadFromReplicas sends on every connection to a replica: " +
			"allow it (" + aclGrant(user, step) + "), or turn ReadFromReplicas off"
	default:
		he.hint = "the user may not run " + step + ", which the options ask for on every connection: allow it (" + aclGrant(user, step) + ")"
	}
	return he
}

// aclGrant is the ACL rule that allows user the commands named, as
// "ACL SETUSER app +select": a subcommand is written after its command
// and a bar (client|setname), in lower case as the server lists them.
func aclGrant(user string, commands ...string) string {
	if user == "" {
		user = "default"
	}
	rule := "ACL SETUSER " + user
	for _, c := range commands {
		rule += " +" + strings.ReplaceAll(strings.ToLower(c), " ", "|")
	}
	return rule
}

// closeConn closes a connection and forgets it.
func (c *Client) closeConn(cn *conn.Conn) error {
	c.mu.Lock()
	delete(c.live, cn)
	c.mu.Unlock()
	return cn.Close()
}

// Close closes every connection of the client, failing the calls in flight
// with ErrClosed, and waits for their goroutines to end. Calls after Close
// fail with ErrClosed. Another Close, at the same time or later, returns
// nil once the first has returned. It waits for dials in flight too, which
// it cuts short through their context: a Dialer, or a callback of
// TLSConfig, must not call Close, whose wait would then never end. On the
// Client of one node that ForEachMaster hands out it is refused with a
// *UsageError: that Client's connections belong to the cluster Client,
// whose Close closes them.
func (c *Client) Close() error {
	if c.front != nil {
		return &UsageError{Msg: "Close on the Client of one node of a cluster, which belongs to the cluster Client: " +
			"it stays open until the cluster Client is closed or the node leaves the cluster's layout"}
	}
	if c.cluster != nil {
		return c.cluster.close()
	}
	return c.close()
}

// close is Close for a single-node client, the cluster's nodes included.
func (c *Client) close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		// Close promises that the client's goroutines have ended: the
		// first Close may still be waiting for them.
		<-c.closeDone
		return nil
	}
	c.closed = true
	defer close(c.closeDone)
	c.endLife()
	live := make([]*conn.Conn, 0, len(c.live))
	for cn := range c.live {
		live = append(live, cn)
	}
	clear(c.live)
	c.mu.Unlock()
	c.pool.Close()
	for _, cn := range live {
		cn.Close()
	}
	// A dial is counted in dials under dialMu (the shared connection's,
	// none after this) or under mu (every dial, none once closed is set): a
	// call that comes as Close waits must not add to what it waits for.
	c.dialMu.Lock()
	c.noDials = true
	if c.aging != nil {
		c.aging.Stop()
		c.aging = nil
	}
	c.dialMu.Unlock()
	c.dials.Wait()
	// A dial that finished as Close began registered its connection after
	// the list above was taken.
	if cn := c.shared.Swap(nil); cn != nil {
		cn.Close()
	}
	return nil
}
