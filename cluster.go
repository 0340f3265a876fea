package redpipe

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpipe/redpipe/internal/conn"
	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/internal/topology"
)

// ClusterOptions configure a client of a Redis Cluster (see
// NewClusterClient).
type ClusterOptions struct {
	// Addrs are seed nodes, host:port, asked for the cluster's layout
	// until one answers. One is enough; more survive a seed that is down.
	// None may be empty.
	Addrs []string

	// Options apply to the connections to every node (auth, TLS,
	// timeouts, pool sizes, retries). Addr is ignored and DB must be 0:
	// a cluster has only database 0. Network may not be unix: the nodes are
	// reached at the host and port the layout gives.
	Options

	// MaxRedirects bounds how many times one command, or one round of a
	// pipeline, follows MOVED or ASK or a node that cannot be reached
	// before the call gives up with an error that wraps the last one
	// (default 5).
	MaxRedirects int

	// ReadFromReplicas sends read-only commands to replicas (default off:
	// every command goes to a master). A command goes to a replica when
	// the server's command table flags it read-only, it has keys and it
	// cannot block (GET, MGET of one slot, HGETALL, EVAL_RO; not XREAD
	// with BLOCK), in plain calls and NoTransaction pipelines; a pipeline
	// that writes to a slot keeps all that slot's commands on its master,
	// in order. Transactions, Watch, writes, scripts run by Script (EVALSHA
	// may write), commands without keys and those for every shard always
	// go to masters. Connections to replicas send READONLY first: for a
	// user whose ACL refuses it, every replica fails, and reads go to the
	// masters (see the package documentation, Users with narrow ACLs).
	//
	// Replicas apply writes after their master has acknowledged them: a
	// read from a replica may miss a write that has just succeeded, even
	// the caller's own (no read-your-writes), and may see older data than
	// a read before it. While a slot moves to another master, a replica of
	// the slot's former master answers that a key already moved does not
	// exist (ErrNil), where its master would redirect the read: replicas
	// do not know of migrations. Leave this off where a read must see the
	// latest write, or read in a transaction, which runs on the master.
	//
	// Only the replicas the cluster reports healthy are read from; one
	// still syncing with its master is left out until a refresh finds it
	// ready, and while some replica is left out the layout is refreshed
	// every few seconds. A read whose replica cannot be reached, fails, or
	// answers LOADING, MASTERDOWN or CLUSTERDOWN is sent to the master
	// instead and the replica is left out for a few seconds; a failure
	// also refreshes the layout. A read that a replica answers NOSCRIPT
	// (EVALSHA_RO: SCRIPT LOAD goes to the masters only) is sent to the
	// master, the replica staying in. A replica's MOVED is followed as
	// any.
	ReadFromReplicas bool

	// SelectReplica, with ReadFromReplicas, chooses the replica a read
	// goes to: it gets the read's hash slot and the addresses (host:port)
	// of the slot's replicas that may serve it, at least one, in the
	// layout's order, and returns the index of the one to use. An index
	// out of range, -1 say, sends the read to the master. Nil picks a
	// replica at random. It is called for every read, once per slot of a
	// pipeline (the reads of one slot in a pipeline go to one node), from
	// many goroutines at once: it must be quick and safe for concurrent
	// use, and must neither change nor keep the slice.
	SelectReplica func(slot int, replicas []string) int
}

// String shows the seeds and the options of every node, with the password
// hidden as Options.String hides it. Without it, the String of the
// embedded Options would stand for the whole and leave out the seeds.
func (o ClusterOptions) String() string {
	return fmt.Sprintf("redpipe.ClusterOptions{Addrs:%q Options:%s MaxRedirects:%d ReadFromReplicas:%t SelectReplica:%t}",
		o.Addrs, o.Options.String(), o.MaxRedirects, o.ReadFromReplicas, o.SelectReplica != nil)
}

// GoString is String, so that %#v does not show the password.
func (o ClusterOptions) GoString() string { return o.String() }

// NewClusterClient makes a Client of a Redis Cluster. It checks the
// options but does not connect: the first call discovers the cluster's
// layout from the seeds (CLUSTER SHARDS, or CLUSTER SLOTS where that is
// refused: on servers without it, or for a user whose ACL allows only
// CLUSTER SLOTS). Use ConnectCluster to fail fast.
//
// The Client has the same methods as one of a single node; see the
// package documentation, section Cluster, for what differs.
func NewClusterClient(opt ClusterOptions) (*Client, error) {
	if len(opt.Addrs) == 0 {
		msg := "needs at least one seed node"
		if opt.Addr != "" {
			// Options.Addr names a single server's address; a cluster
			// client reads its seeds from Addrs alone.
			msg += fmt.Sprintf(": Options.Addr is not read on a cluster, give it as Addrs: []string{%q}", opt.Addr)
		}
		return nil, &OptionError{Field: "Addrs", Msg: msg}
	}
	if opt.DB != 0 {
		return nil, &OptionError{Field: "DB", Msg: fmt.Sprintf("must be 0 on a cluster, not %d", opt.DB)}
	}
	if opt.MaxRedirects < 0 {
		return nil, &OptionError{Field: "MaxRedirects", Msg: fmt.Sprintf("must be 0 or more, not %d", opt.MaxRedirects)}
	}
	if opt.MaxRedirects == 0 {
		opt.MaxRedirects = 5
	}
	if opt.Network == "unix" {
		// Every node but the seed is reached at the host:port the
		// layout gives, which a unix socket cannot dial.
		return nil, &OptionError{Field: "Network", Msg: "must be tcp on a cluster, whose nodes are reached at the host and port they report, not unix"}
	}
	if opt.SelectReplica != nil && !opt.ReadFromReplicas {
		return nil, &OptionError{Field: "SelectReplica", Msg: "is set but ReadFromReplicas is off"}
	}
	node := opt.Options
	for i, a := range opt.Addrs {
		if a == "" {
			// Options.Addr's default, localhost:6379, could be another
			// cluster's node: an empty seed is more likely a list made
			// from an empty setting.
			return nil, &OptionError{Field: "Addrs", Msg: fmt.Sprintf("seed %d of %d is empty", i+1, len(opt.Addrs))}
		}
		node.Addr = a
		if err := node.defaults().validate(); err != nil {
			if oe := (*OptionError)(nil); errors.As(err, &oe) && oe.Field == "Addr" {
				// The seeds are Addrs; Options.Addr is ignored.
				return nil, &OptionError{Field: "Addrs", Msg: fmt.Sprintf("seed %d of %d: %s", i+1, len(opt.Addrs), strings.TrimPrefix(oe.Msg, "is "))}
			}
			return nil, err
		}
	}
	node.Addr = opt.Addrs[0]
	node = node.defaults()
	node.TLSConfig = cloneTLS(node.TLSConfig) // as NewClient does
	r := &clusterRouter{
		opt:   opt,
		node:  node,
		seeds: slices.Clone(opt.Addrs),
		nodes: make(map[string]*Client),
	}
	if opt.ReadFromReplicas {
		r.readers = new([hashslot.Count]*replicaSet)
		r.replicas = make(map[string]*Client)
		r.down = make(map[*Client]time.Time)
	}
	r.life, r.endLife = context.WithCancel(context.Background())
	c := &Client{opt: node, cluster: r, live: nil, turnWait: defaultTurnWait}
	r.front = c
	return c, nil
}

// ConnectCluster parses the URL of one or more seed nodes (see ParseURL),
// makes a Client of their cluster and loads its layout. The URLs must
// agree on everything but the host and port; the database must be 0.
// The first URL's options serve every node: over TLS (rediss://), every
// node's certificate is checked against the first URL's host name. To
// check each node's against the host it is reached at, give
// NewClusterClient a TLSConfig whose ServerName is empty.
func ConnectCluster(ctx context.Context, urls ...string) (*Client, error) {
	if badContext(ctx) {
		return nil, nilContext(ctx, "ConnectCluster")
	}
	if len(urls) == 0 {
		return nil, &OptionError{Field: "URL", Msg: "needs at least one seed node"}
	}
	var opt ClusterOptions
	for i, u := range urls {
		o, err := ParseURL(u)
		if err == nil && o.DB != 0 {
			err = &OptionError{Field: "URL database", Msg: fmt.Sprintf("must be 0 on a cluster, not %d", o.DB)}
		}
		if oe := (*OptionError)(nil); errors.As(err, &oe) && len(urls) > 1 {
			// Say which seed: the error may withhold the URL itself,
			// which can hold a password.
			oe.Field = fmt.Sprintf("seed %d of %d: %s", i+1, len(urls), oe.Field)
		}
		if err != nil {
			return nil, err
		}
		addr := o.Addr
		if i == 0 {
			opt.Options = o
		} else {
			// Every option counts, timeouts and pool sizes too: the
			// first URL's apply to every node. The TLS configurations
			// differ by their server names, which follow the hosts; the
			// first's, like its other options, serves every node.
			first := opt.Options
			tlsAlike := (first.TLSConfig == nil) == (o.TLSConfig == nil)
			first.Addr, o.Addr = "", ""
			first.TLSConfig, o.TLSConfig = nil, nil
			if !tlsAlike || !reflect.DeepEqual(first, o) {
				return nil, &OptionError{Field: "URL", Msg: fmt.Sprintf("%d differs from the first in more than its host and port", i+1)}
			}
		}
		opt.Addrs = append(opt.Addrs, addr)
	}
	c, err := NewClusterClient(opt)
	if err != nil {
		return nil, err
	}
	if err := c.cluster.ready(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Cluster timing: a refresh waits a random time up to refreshJitter, and
// at least refreshCooldown after the last one started, so that the
// MOVED replies of many calls at once cause one.
var (
	refreshJitter   = 20 * time.Millisecond
	refreshCooldown = 100 * time.Millisecond
)

// maxTryAgain bounds the retries of TRYAGAIN and CLUSTERDOWN, which go on
// until the call's context ends, for a context without a deadline.
const maxTryAgain = 50

// clusterRouter routes the commands of a cluster Client to the single-node
// Clients of its nodes. Everything slot-related lives here; the node
// Clients know nothing of the cluster.
type clusterRouter struct {
	front *Client // the cluster's Client, whose decoders its nodes' sessions use too
	opt   ClusterOptions
	node  Options  // per-node options; Addr set for each node
	seeds []string // read-only

	life    context.Context // ends at Close, cutting short a refresh
	endLife context.CancelFunc
	wg      sync.WaitGroup // the refresh goroutine

	// everLoaded is set, and never cleared, when a map is first applied
	// (loaded below), so that calls need not take mu to tell.
	everLoaded atomic.Bool

	mu      sync.RWMutex // guards the fields below
	slots   [hashslot.Count]*Client
	masters []*Client          // masters serving slots, in the map's order
	known   []string           // every node address of the last map
	nodes   map[string]*Client // node clients by address, while in the layout
	// noAddr are the shards of the last map that serve slots and whose
	// master has no address a client can reach (endpoint "?"). Their
	// slots have no client in slots, and commands for every master are
	// refused while there are any (see unaddressedLocked).
	noAddr []*topology.Shard
	// retired are the clients of nodes gone from the layout, released and
	// waiting for their calls in flight to end before they are closed
	// (see retireLocked).
	retired []*Client
	loaded  bool // a map has been applied
	closed  bool
	// closeDone is closed when the first Close has finished, so that
	// another, made at the same time, returns no sooner.
	closeDone chan struct{}

	// Replica reads (cluster_replicas.go); all nil without
	// ReadFromReplicas. Commands routed by readers are read-only: a
	// write is routed by slots alone.
	readers  *[hashslot.Count]*replicaSet // the replicas reads of a slot may go to; nil entry for none
	replicas map[string]*Client           // replica clients by address (READONLY on every connection), while in the layout
	down     map[*Client]time.Time        // replicas left out of reads until then, after a failure
	leftOut  bool                         // the last map has replicas not read from for their health

	refMu       sync.Mutex    // guards the refresh state below
	refreshing  chan struct{} // closed when the refresh in flight ends; nil if none
	lastRefresh time.Time     // when the last refresh started
	refreshErr  error         // the last refresh's failure, nil on success
	recheck     *time.Timer   // the next refresh to look at replicas left out, if one is due
	// releaseTimer is the next look at the retired clients, if one is due.
	releaseTimer *time.Timer

	releaseMu sync.Mutex // held while retired clients are closed, by closeRetired and Close

	refreshes atomic.Int64 // refreshes run, for tests
}

// ready loads the layout if no refresh has yet succeeded.
func (r *clusterRouter) ready(ctx context.Context) error {
	if r.everLoaded.Load() {
		return nil
	}
	if err := r.awaitRefresh(ctx); err != nil {
		return err
	}
	return nil
}

// awaitRefresh starts a refresh, or joins the one in flight, and waits
// for it within ctx. It returns the refresh's error.
func (r *clusterRouter) awaitRefresh(ctx context.Context) error {
	ch := r.triggerRefresh()
	select {
	case <-ch:
	case <-ctx.Done():
		return notSent(conn.ContextErr(ctx))
	}
	r.refMu.Lock()
	defer r.refMu.Unlock()
	return r.refreshErr
}

// triggerRefresh starts a refresh unless one is in flight, and returns the
// channel closed when it ends.
func (r *clusterRouter) triggerRefresh() <-chan struct{} {
	r.refMu.Lock()
	defer r.refMu.Unlock()
	if r.refreshing != nil {
		return r.refreshing
	}
	ch := make(chan struct{})
	r.mu.RLock()
	closed, loaded := r.closed, r.loaded
	r.mu.RUnlock()
	if closed {
		r.refreshErr = notSent(ErrClosed)
		close(ch)
		return ch
	}
	r.refreshing = ch
	var delay time.Duration
	if loaded {
		delay = rand.N(refreshJitter + 1)
		if wait := time.Until(r.lastRefresh.Add(refreshCooldown)); wait > delay {
			delay = wait
		}
	}
	r.wg.Add(1)
	go r.refresh(ch, delay)
	return ch
}

// refresh loads the layout after delay, asking the known nodes, then the
// seeds, in turn until one answers.
func (r *clusterRouter) refresh(ch chan struct{}, delay time.Duration) {
	defer r.wg.Done()
	err := notSent(ErrClosed)
	t := time.NewTimer(delay)
	select {
	case <-t.C:
		err = r.load()
	case <-r.life.Done():
		t.Stop()
	}
	r.refMu.Lock()
	r.refreshErr, r.refreshing = err, nil
	r.refMu.Unlock()
	r.recheckReplicas()
	r.closeRetired()
	close(ch)
}

func (r *clusterRouter) load() error {
	r.refMu.Lock()
	r.lastRefresh = time.Now()
	r.refMu.Unlock()
	r.refreshes.Add(1)
	r.mu.RLock()
	known := slices.Clone(r.known)
	r.mu.RUnlock()
	rand.Shuffle(len(known), func(i, j int) { known[i], known[j] = known[j], known[i] })
	var errs []error
	seen := map[string]bool{}
	var asked []string
	for _, addr := range append(known, r.seeds...) {
		if !seen[addr] {
			seen[addr] = true
			asked = append(asked, addr)
		}
	}
	for _, addr := range asked {
		// The next node is a failed fetch's retry: retried by the
		// single-node rules, one that cannot be reached (a host down,
		// a process hung) would hold the refresh up until its bound,
		// DialTimeout and ReplyTimeout, and not one DialTimeout, before
		// a node that answers is asked. A lone node is retried.
		m, err := r.fetch(addr, len(asked) == 1)
		if err == nil {
			err = r.apply(m)
		}
		if err == nil {
			return nil
		}
		if r.life.Err() != nil {
			// Close cut the refresh short: the calls waiting for it fail
			// as every call on a closed client does.
			return notSent(ErrClosed)
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return notSent(fmt.Errorf("redpipe: cluster layout unknown: no node gave one: %w", errors.Join(errs...)))
}

// Encoded CLUSTER SHARDS, CLUSTER SLOTS and ASKING.
var (
	clusterShardsCmd = encodeWords("CLUSTER", "SHARDS")
	clusterSlotsCmd  = encodeWords("CLUSTER", "SLOTS")
	askingCmd        = encodeWords("ASKING")
)

// askingRefused returns the error of a command that a node redirected
// after refusing the ASKING sent before it, asking being ASKING's reply,
// or nil if the node took ASKING. Without ASKING a node importing a slot
// answers MOVED, back to the node that said ASK: followed, the two would
// send the command to each other until MaxRedirects, and the error would
// tell of redirections, not of the refusal. The command did not run: the
// error wraps the server's refusal (NOPERM, for an ACL without ASKING),
// and says what to grant. A command that ran all the same (its slot's
// move ended meanwhile) keeps its reply: callers ask only of a redirect.
func askingRefused(asking resp.Value, addr, user string) error {
	if !isErrValue(asking) {
		return nil
	}
	return &askingError{addr: addr, user: user, err: newError(asking.Str)}
}

// afterAsking returns v, the reply of a command that node got after
// ASKING, whose reply asked is, or, if the node refused ASKING and
// redirected the command, an error reply that says so (see
// askingRefused), which is not followed.
func afterAsking(asked, v resp.Value, node *Client) resp.Value {
	if !isErrValue(asked) || !isErrValue(v) {
		return v
	}
	addr := node.opt.Addr
	if _, redirected := redirectOf(v, addr); redirected {
		if err := askingRefused(asked, addr, node.opt.Username); err != nil {
			return madeErrorValue(err)
		}
	}
	return v
}

// askingError is a command not run because its node refused ASKING.
type askingError struct {
	addr, user string
	err        *Error
}

func (e *askingError) Error() string {
	msg := "redpipe: cluster: node " + e.addr + " refused ASKING, which a command redirected there by ASK (its slot is moving) must follow, " +
		"so the command did not run: " + e.err.Msg
	if e.err.Prefix == "NOPERM" {
		user := e.user
		if user == "" {
			user = "default"
		}
		msg += "; allow the user ASKING (ACL SETUSER " + user + " +asking, or the @connection category)"
	}
	return msg
}

func (e *askingError) Unwrap() error { return e.err }

func encodeWords(ws ...string) []byte {
	b := resp.AppendArrayLen(nil, len(ws))
	for _, w := range ws {
		b = resp.AppendBulkString(b, w)
	}
	return b
}

// fetch asks one node for the layout: CLUSTER SHARDS, or CLUSTER SLOTS
// when the node refuses it: a server older than 7.0 does not know it, and
// an ACL written for clients that use CLUSTER SLOTS may allow only that.
//
// With retry, a failure to reach the node is retried by its rules;
// without, the fetch fails at once.
func (r *clusterRouter) fetch(addr string, retry bool) (*topology.Map, error) {
	node, err := r.nodeAt(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.life, r.fetchTimeout())
	defer cancel()
	do := func(cmd []byte) (resp.Value, error) {
		if retry {
			return node.doRaw(ctx, cmd, true)
		}
		out, _, err := node.sendBatch(ctx, cmd, 1, batchTraits{readonly: true})
		if err != nil {
			return resp.Value{}, err
		}
		return out[0], nil
	}
	v, err := do(clusterShardsCmd)
	if err != nil {
		return nil, err
	}
	if e := (Value{v}).Err(); e != nil {
		v, err = do(clusterSlotsCmd)
		if err != nil {
			return nil, err
		}
		m, err := topology.ParseSlots(v, addr)
		if err != nil && isErrValue(v) {
			var se *Error
			if errors.As(e, &se) && se.Prefix == "NOPERM" && newError(v.Str).Prefix == "NOPERM" {
				// Without either the client cannot learn where the slots are.
				return nil, fmt.Errorf("%w, after CLUSTER SHARDS: %w (allow the user one of them, %s or %s)",
					err, e, aclGrant(r.node.Username, "CLUSTER SHARDS"), aclGrant(r.node.Username, "CLUSTER SLOTS"))
			}
			err = fmt.Errorf("%w, after CLUSTER SHARDS: %w", err, e)
			if strings.Contains(e.Error(), "cluster support disabled") {
				err = fmt.Errorf("%w: %s is a single server, not a node of a Redis Cluster: make its Client with NewClient", err, addr)
			}
		}
		return m, err
	}
	m, err := topology.ParseShards(v, addr)
	if err == nil && r.node.TLSConfig != nil {
		// A node may listen for plain connections too, on the port
		// listed first.
		m.UseTLSPorts()
	}
	return m, err
}

// fetchTimeout bounds one fetch of the layout: a dial and a reply. A
// ReplyTimeout near the largest Duration, given to mean "practically
// never", would wrap with DialTimeout to a timeout already past, and no
// fetch could succeed. A ReplyTimeout of -1, none, leaves the reply the
// default ReplyTimeout: added as it is, it would leave the dial, the
// handshake and the reply less than DialTimeout, which a slow link
// exceeds; and a fetch needs some bound, or a node that never answers
// would hold up the refresh, and every one after it, for good.
func (r *clusterRouter) fetchTimeout() time.Duration {
	reply := r.node.ReplyTimeout
	if reply < 0 {
		reply = fetchReplyTimeout
	}
	d := r.node.DialTimeout + reply
	if r.node.DialTimeout > 0 && d < 0 {
		return math.MaxInt64
	}
	return d
}

// fetchReplyTimeout is how long a fetch of the layout waits for the
// reply when ReplyTimeout is -1: ReplyTimeout's default.
const fetchReplyTimeout = 10 * time.Second

// apply makes m the slot map, and releases the clients of the nodes it
// no longer lists.
func (r *clusterRouter) apply(m *topology.Map) error {
	if m.Served() == 0 {
		return errors.New("redpipe: the cluster serves no slot: its masters have not been given the hash slots yet " +
			"(CLUSTER ADDSLOTSRANGE, or redis-cli --cluster create)")
	}
	r.mu.Lock()
	gone, err := r.applyLocked(m)
	r.mu.Unlock()
	for _, n := range gone {
		// Closing idle connections waits for their goroutines: not
		// under the lock every call takes.
		n.pool.Close()
	}
	return err
}

// applyLocked is apply with r.mu held for writing; it returns the clients
// released, whose pools are to be closed.
func (r *clusterRouter) applyLocked(m *topology.Map) ([]*Client, error) {
	if r.closed {
		return nil, notSent(ErrClosed)
	}
	var slots [hashslot.Count]*Client
	var masters []*Client
	var known []string
	var noAddr []*topology.Shard
	for _, s := range m.Shards {
		for _, n := range append([]*topology.Node{s.Master}, s.Replicas...) {
			if n != nil && n.Addr != "" && n.Health != topology.HealthFailed {
				known = append(known, n.Addr)
			}
		}
		if s.Master != nil && s.Master.Addr == "" && len(s.Slots) > 0 {
			noAddr = append(noAddr, s)
		}
		if s.Master == nil || s.Master.Addr == "" || len(s.Slots) == 0 {
			continue
		}
		node, err := r.nodeLocked(s.Master.Addr)
		if err != nil {
			return nil, err
		}
		r.markNoTLSPort(node, s.Master)
		masters = append(masters, node)
		for _, rg := range s.Slots {
			for i := int(rg.First); i <= int(rg.Last); i++ {
				slots[i] = node
			}
		}
	}
	if r.readers != nil {
		if err := r.applyReplicasLocked(m); err != nil {
			return nil, err
		}
	}
	keep := make(map[string]bool, len(known)+len(masters))
	for _, a := range known {
		keep[a] = true
	}
	for _, n := range masters {
		keep[n.opt.Addr] = true // a master marked failed still serves
	}
	gone := r.retireLocked(keep)
	r.slots, r.masters, r.known, r.noAddr, r.loaded = slots, masters, known, noAddr, true
	r.everLoaded.Store(true)
	return gone, nil
}

// markNoTLSPort tells the client of n, over TLS, whether the layout
// gave a plain port for n and no TLS port: CLUSTER SHARDS from nodes
// without tls-cluster yes, which know no TLS port of one another. That
// port may still take TLS (a proxy in front of the node, announced with
// cluster-announce-port), so the client tries it, and only says so if
// its handshake fails. CLUSTER SLOTS gives one port, the one for the
// asking connection's kind, and is taken at its word: its nodes are
// those with no health, which CLUSTER SHARDS always reports.
func (r *clusterRouter) markNoTLSPort(node *Client, n *topology.Node) {
	if r.node.TLSConfig != nil {
		node.noTLSPort.Store(n.TLSPort == 0 && n.Health != topology.HealthUnknown)
	}
}

// nodeAt returns the client of the node at addr, making it if needed.
func (r *clusterRouter) nodeAt(addr string) (*Client, error) {
	r.mu.RLock()
	node := r.nodes[addr]
	r.mu.RUnlock()
	if node != nil {
		return node, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nodeLocked(addr)
}

func (r *clusterRouter) nodeLocked(addr string) (*Client, error) {
	if node := r.nodes[addr]; node != nil {
		return node, nil
	}
	if r.closed {
		return nil, notSent(ErrClosed)
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "?" {
		// A MOVED or ASK to a node whose endpoint is unknown: there is
		// no host to dial (and "?" is no name to look up).
		p, _ := strconv.Atoi(port)
		return nil, notSent(&DialError{Addr: addr, Err: &noEndpointError{port: p, slot: -1}})
	}
	opt := r.node
	opt.Addr = addr
	node, err := NewClient(opt)
	if err != nil {
		return nil, notSent(err)
	}
	node.front = r.front
	r.nodes[addr] = node
	return node, nil
}

// owner returns the client of the master serving slot, or of any master
// for a slot below 0 (a command without keys); nil if none is known.
func (r *clusterRouter) owner(slot int) *Client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.ownerLocked(slot)
}

func (r *clusterRouter) ownerLocked(slot int) *Client {
	if slot >= 0 {
		return r.slots[slot]
	}
	if len(r.masters) == 0 {
		return nil
	}
	return r.masters[rand.N(len(r.masters))]
}

// route returns the owner of slot, waiting for a refresh when none is
// known.
func (r *clusterRouter) route(ctx context.Context, slot int) (*Client, error) {
	if node := r.owner(slot); node != nil {
		return node, nil
	}
	if err := r.awaitRefresh(ctx); err != nil {
		return nil, err
	}
	if node := r.owner(slot); node != nil {
		return node, nil
	}
	return nil, r.noOwner(slot)
}

// noOwner is the error of a command for slot (-1 for none) that has no
// client to go to: the master serving it gives no address, or no node
// serves it.
func (r *clusterRouter) noOwner(slot int) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.noAddr {
		if slot < 0 || s.Serves(uint16(slot)) {
			return unaddressed(s, slot)
		}
	}
	return notSent(&Error{Prefix: "CLUSTERDOWN", Msg: fmt.Sprintf("CLUSTERDOWN no node serves hash slot %d", slot)})
}

// unaddressedLocked is the error of a command for every master while
// one of them gives no address, nil if each gives one; r.mu is held.
// Sent to the others alone, it would pass for the whole cluster's: a
// DBSIZE that leaves a shard out, a FLUSHALL that leaves its keys.
func (r *clusterRouter) unaddressedLocked() error {
	if len(r.noAddr) == 0 {
		return nil
	}
	return unaddressed(r.noAddr[0], -1)
}

// everyMasterAddressed is unaddressedLocked for a command for every
// master about to be sent, after a refresh when some master gives no
// address, to see whether it has been given one since.
func (r *clusterRouter) everyMasterAddressed(ctx context.Context) error {
	r.mu.RLock()
	err := r.unaddressedLocked()
	r.mu.RUnlock()
	if err == nil {
		return nil
	}
	if err := r.awaitRefresh(ctx); err != nil {
		return err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.unaddressedLocked()
}

// unaddressed is the error of a command that would go to s's master,
// which gives no address, for slot (-1 for a command for every master).
func unaddressed(s *topology.Shard, slot int) error {
	n := s.Master
	port := n.Port
	if port == 0 {
		port = n.TLSPort
	}
	if slot < 0 && len(s.Slots) > 0 {
		slot = int(s.Slots[0].First)
	}
	return notSent(&DialError{Addr: net.JoinHostPort(n.Endpoint, strconv.Itoa(port)),
		Err: &noEndpointError{id: n.ID, ip: n.IP, port: port, slot: slot}})
}

// noEndpointError says why a node cannot be reached: the cluster gives
// "?" for its endpoint, which Redis does when cluster-preferred-endpoint-type
// is hostname and the node has no cluster-announce-hostname. The client
// does not guess a host for it: its IP may be one that clients cannot
// reach, the reason hostnames were chosen.
type noEndpointError struct {
	id, ip string // "" when not known (a MOVED or ASK names neither)
	port   int
	slot   int // a hash slot it serves, -1 when not known
}

func (e *noEndpointError) Error() string {
	var b strings.Builder
	b.WriteString("the cluster gives no address for ")
	if e.id != "" {
		b.WriteString("node " + e.id + " (")
		if e.ip != "" {
			b.WriteString("ip " + e.ip + ", ")
		}
		b.WriteString("port " + strconv.Itoa(e.port) + ")")
	} else {
		b.WriteString("the node on port " + strconv.Itoa(e.port))
	}
	if e.slot >= 0 {
		b.WriteString(", the master of hash slot " + strconv.Itoa(e.slot))
	}
	b.WriteString(`: its endpoint is "?", as when cluster-preferred-endpoint-type is hostname and the node has no cluster-announce-hostname; ` +
		"set cluster-announce-hostname on that node, or cluster-preferred-endpoint-type to ip on every node")
	return b.String()
}

// moved records that slot is served by addr, as a MOVED reply said, and
// starts a refresh to learn what else changed.
func (r *clusterRouter) moved(slot int, addr string) (*Client, error) {
	// Under the lock that apply holds, so that the slot does not get the
	// client of a node that a refresh has just released.
	r.mu.Lock()
	node, err := r.nodeLocked(addr)
	if err != nil {
		r.mu.Unlock()
		// What else changed (a node given no address) a refresh tells.
		r.triggerRefresh()
		return nil, err
	}
	if slot >= 0 && slot < hashslot.Count {
		r.slots[slot] = node
		if r.readers != nil {
			// The replicas were those of the slot's former master.
			r.readers[slot] = nil
		}
	}
	r.mu.Unlock()
	r.triggerRefresh()
	return node, nil
}

// close closes every node client and stops the refresh.
func (r *clusterRouter) close() error {
	r.mu.Lock()
	if r.closed {
		done := r.closeDone
		r.mu.Unlock()
		if done != nil {
			// Close promises that the client's goroutines have ended:
			// the first Close may still be waiting for them.
			<-done
		}
		return nil
	}
	r.closed = true
	r.closeDone = make(chan struct{})
	defer close(r.closeDone)
	nodes := make([]*Client, 0, len(r.nodes)+len(r.replicas))
	for _, n := range r.nodes {
		nodes = append(nodes, n)
	}
	for _, n := range r.replicas {
		nodes = append(nodes, n)
	}
	r.mu.Unlock()
	// A look at the retired clients under way puts back those it leaves.
	r.releaseMu.Lock()
	r.mu.Lock()
	nodes = append(nodes, r.retired...)
	r.retired = nil
	r.mu.Unlock()
	r.releaseMu.Unlock()
	r.refMu.Lock()
	if r.recheck != nil {
		r.recheck.Stop()
	}
	if r.releaseTimer != nil {
		r.releaseTimer.Stop()
	}
	r.refMu.Unlock()
	r.endLife()
	r.wg.Wait()
	for _, n := range nodes {
		n.close()
	}
	return nil
}

// doRaw runs one encoded command on a node client, retried by its rules.
func (c *Client) doRaw(ctx context.Context, cmd []byte, readonly bool) (resp.Value, error) {
	var out []resp.Value
	err := c.retry(ctx, readonly, func() (err error) {
		out, _, err = c.sendBatch(ctx, cmd, 1, batchTraits{readonly: readonly})
		return err
	})
	if err != nil {
		return resp.Value{}, err
	}
	return out[0], nil
}

// redirect is what a cluster error reply tells a client to do.
type redirect struct {
	kind string // MOVED, ASK, TRYAGAIN or CLUSTERDOWN
	slot int
	addr string // for MOVED and ASK
}

// redirectOf reads a reply that redirects a command; ok is false for any
// other reply. from is the address of the node that replied, whose host
// stands for an empty one in the reply.
func redirectOf(v resp.Value, from string) (rd redirect, ok bool) {
	if v.Kind != resp.Error && v.Kind != resp.BulkError {
		return rd, false
	}
	return parseRedirect(v.Str, from)
}

// redirectOfCmd is redirectOf for the reply v of the command name, sent
// for slot (-1 for none). A script or function (EVAL, EVALSHA, FCALL, and
// their read-only forms) may return an error of its own that starts with
// TRYAGAIN, CLUSTERDOWN, MOVED or ASK after its writes: followed, it would
// run again, up to the bound on retries, at an address of its choosing,
// and be reported as refused. Its reply is such a redirection only in the
// server's words (serverRedirect), and a MOVED or ASK only for the slot
// of the command's keys, the one the server checks before running it: one
// for another slot is marked as the script's own error (see
// markForeignRedirect).
func redirectOfCmd(v *resp.Value, from, name string, slot int) (redirect, bool) {
	rd, ok := redirectOf(*v, from)
	if ok && runsCode(name) && (!serverRedirect(rd, v.Str) || markForeignRedirect(v, name, slot)) {
		return redirect{}, false
	}
	return rd, ok
}

// markForeignRedirect tells whether v, the error reply of the script or
// function call name sent for slot (-1 for none), reads as a MOVED or ASK
// for another slot, which no server sends for that command: the script
// returned it, maybe after its writes. If so, and the call may write, v
// gets the error of unknown outcome that markScriptErr, which cannot tell
// it from the server's, would not give it.
func markForeignRedirect(v *resp.Value, name string, slot int) bool {
	rd, ok := parseRedirect(v.Str, "")
	if !ok || rd.kind != "MOVED" && rd.kind != "ASK" || rd.slot == slot ||
		v.Kind != resp.Error && v.Kind != resp.BulkError || v.Aux != nil && v.Aux.Extra != nil {
		return false
	}
	if name == "EVAL" || name == "EVALSHA" || name == "FCALL" {
		w := Value{*v}
		setExtra(&w, madeErr{scriptFailed(newError(v.Str))})
		*v = w.v
	}
	return true
}

// runsCode tells a command that runs a script or function, whose error
// reply may be one the code returned.
func runsCode(name string) bool {
	ci := commandTable[name]
	return ci != nil && ci.has(flagRunsCode)
}

// serverRedirect tells whether rd, read from msg, is in the words a
// cluster node uses when it turns a command away before running it: the
// form of MOVED and ASK, which parseRedirect checks, and the fixed text
// of TRYAGAIN and CLUSTERDOWN, unchanged since Redis 3.
func serverRedirect(rd redirect, msg string) bool {
	switch rd.kind {
	case "TRYAGAIN":
		return strings.HasPrefix(msg, "TRYAGAIN Multiple keys request during rehashing of slot")
	case "CLUSTERDOWN":
		return strings.HasPrefix(msg, "CLUSTERDOWN The cluster is down") ||
			strings.HasPrefix(msg, "CLUSTERDOWN Hash slot not served")
	}
	return true
}

// splitEndpoint splits the address of a MOVED or ASK. A node writes an
// IPv6 address as it is, without brackets ("MOVED 3999 ::1:7001"), which
// net.SplitHostPort refuses for its many colons: the port is then what
// follows the last one.
func splitEndpoint(addr string) (host, port string, ok bool) {
	if host, port, err := net.SplitHostPort(addr); err == nil {
		return host, port, true
	}
	i := strings.LastIndexByte(addr, ':')
	if i < 0 || i == len(addr)-1 || strings.ContainsAny(addr, "[]") {
		return "", "", false
	}
	return addr[:i], addr[i+1:], true
}

func parseRedirect(msg, from string) (rd redirect, ok bool) {
	f := strings.Fields(msg)
	if len(f) == 0 {
		return rd, false
	}
	switch f[0] {
	case "TRYAGAIN", "CLUSTERDOWN":
		return redirect{kind: f[0], slot: -1}, true
	case "MOVED", "ASK":
		if len(f) < 3 {
			return rd, false
		}
		var slot int
		if _, err := fmt.Sscan(f[1], &slot); err != nil {
			return rd, false
		}
		host, port, ok := splitEndpoint(f[2])
		if !ok {
			return rd, false
		}
		if host == "" {
			host, _, _ = net.SplitHostPort(from)
		}
		return redirect{kind: f[0], slot: slot, addr: net.JoinHostPort(host, port)}, true
	}
	return rd, false
}

// follow applies a redirect: it returns the node to send to next and
// whether ASKING goes first, waiting (TRYAGAIN, CLUSTERDOWN) as needed.
// slot is the command's slot, -1 for none; try counts TRYAGAIN and
// CLUSTERDOWN replies so far.
func (r *clusterRouter) follow(ctx context.Context, rd redirect, slot, try int) (*Client, bool, error) {
	switch rd.kind {
	case "MOVED":
		node, err := r.moved(rd.slot, rd.addr)
		return node, false, err
	case "ASK":
		node, err := r.nodeAt(rd.addr)
		return node, true, err
	case "CLUSTERDOWN":
		r.triggerRefresh()
	}
	if err := backoff(ctx, r.life, try); err != nil {
		return nil, false, err
	}
	node, err := r.route(ctx, slot)
	return node, false, err
}

// unreachable tells a failure to reach a node (refused, unknown, timed out
// before anything was sent) after which a refresh may find another route.
func unreachable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, ErrClosed) || refusedByClient(err) || contextEnded(err) || refusedSetup(err) {
		return false
	}
	// A transaction is reported not applied when it was not even sent:
	// what counts here is the cause.
	var oc *OutcomeError
	if errors.As(err, &oc) && oc.Outcome != OutcomeUnknown {
		err = oc.Err
	}
	return OutcomeOf(err) == OutcomeNotSent
}

// refusedSetup tells a call whose new connection the node refused to set
// up, by its reply to a step of the handshake: a wrong password (changed
// on the server, or the user deleted or turned off), an ACL without
// SELECT. The node answered, and a refresh would most often meet the
// same refusal at every node: a call that waited for it would dial them
// all before it failed with their refusals one by one. The call fails
// with the node's refusal at once; the dial that met it starts a refresh
// in the background all the same (see Client.dial), for the node may
// refuse what it no longer serves.
func refusedSetup(err error) bool {
	var he *HandshakeError
	var se *Error
	return errors.As(err, &he) && errors.As(he.Err, &se)
}

// refusedByClient tells a call the client refused before sending it: a
// misuse (*UsageError), a wrong number of arguments, an argument it could
// not encode. Not sent, it says nothing of whether a node can be reached,
// and sent anywhere again it is refused again.
func refusedByClient(err error) bool {
	var ue *UsageError
	var ae *ArityError
	var ge *ArgError
	return errors.As(err, &ue) || errors.As(err, &ae) || errors.As(err, &ge)
}

// contextEnded tells a call stopped, before it was sent, by the end of a
// context other than the caller's: one that a Transaction's fn gave its
// own reads. That says nothing of the node either, unlike a dial or a
// handshake cut short by Options.DialTimeout.
func contextEnded(err error) bool {
	var he *HandshakeError
	return (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) &&
		!connFailed(err) && !errors.As(err, &he)
}

// maxCrossSlotKeys bounds the keys a CrossSlotError names.
const maxCrossSlotKeys = 4

// slotOfKeys returns the slot shared by keys, -1 for none, or a
// *CrossSlotError naming keys of different slots.
func slotOfKeys[K string | []byte](in string, keys []K) (int, error) {
	if len(keys) == 0 {
		return -1, nil
	}
	slot := int(hashslot.Of(keys[0]))
	shared := true
	for _, k := range keys[1:] {
		if int(hashslot.Of(k)) != slot {
			shared = false
			break
		}
	}
	if shared {
		return slot, nil
	}
	return -1, crossSlot(in, keys)
}

// crossSlot names some of keys of different slots, for slotOfKeys.
func crossSlot[K string | []byte](in string, keys []K) *CrossSlotError {
	slot := -1
	var e *CrossSlotError
	seen := map[int]bool{}
	for _, k := range keys {
		s := int(hashslot.Of(k))
		if slot < 0 {
			slot = s
			seen[s] = true
			e = &CrossSlotError{In: in, Keys: []string{string(k)}, Slots: []int{s}}
			continue
		}
		if !seen[s] && len(e.Keys) < maxCrossSlotKeys {
			seen[s] = true
			e.Keys, e.Slots = append(e.Keys, string(k)), append(e.Slots, s)
		}
	}
	return e
}

// slotArg returns the slot that cmd, a command of flagSlotArg, names in
// the word after its name, or an *ArgError, before anything is sent, if that
// is no slot: no master serves it, and any master would answer of its
// own keys.
func slotArg(ci *commandInfo, cmd []byte) (int, error) {
	w := wordAt(cmd, ci.nwords)
	n, err := strconv.Atoi(string(w))
	if err != nil || n < 0 || n >= hashslot.Count {
		return -1, &ArgError{Command: ci.Name, Index: ci.nwords,
			Err: fmt.Errorf("%q is not a slot: a cluster's slots are 0 to %d", clip(string(w)), hashslot.Count-1)}
	}
	return n, nil
}

// cmdSlot is commandSlot for one command of a call or a plain pipeline,
// which a *CrossSlotError names "command NAME". The name is put together
// only for the error.
func cmdSlot(ci *commandInfo, cmd []byte) (int, error) {
	slot, err := commandSlot(ci, cmd, "")
	if e, ok := err.(*CrossSlotError); ok {
		e.In = "command " + ci.Name
	}
	return slot, err
}

// commandSlot returns the slot of one encoded command, -1 when it has no
// keys or they cannot be told (the server then redirects it), or a
// *CrossSlotError.
func commandSlot(ci *commandInfo, cmd []byte, in string) (int, error) {
	var pos [8]int
	keys, st := commandKeys(pos[:0], ci, cmd)
	if st != keysFound || len(keys) == 0 {
		if ci.has(flagSlotArg) {
			return slotArg(ci, cmd)
		}
		return -1, nil
	}
	ws, ok := newWords(cmd)
	if !ok {
		return -1, nil
	}
	var kb [8][]byte
	words := kb[:0]
	for i := 0; len(words) < len(keys); i++ {
		w, ok := ws.next()
		if !ok {
			break
		}
		if i == keys[len(words)] {
			words = append(words, w)
		}
	}
	if len(words) == 1 {
		return int(hashslot.SlotBytes(words[0])), nil
	}
	return slotOfKeys(in, words)
}
