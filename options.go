package redpipe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Options configure a Client. The zero value of every field means the
// default documented beside it, so Options{} connects to localhost:6379.
type Options struct {
	// Network is "tcp" (default) or "unix".
	Network string
	// Addr is host:port for tcp (default "localhost:6379") or the socket
	// path for unix. A connection whose server refuses a write with
	// READONLY, having become a replica (a failover behind a DNS name,
	// say), is replaced: the refused call fails with that *Error, and the
	// calls after it go over a new connection to whatever Addr reaches
	// then. Should that reach a replica too (a name not yet moved, or a
	// replica on purpose), its refusals are only returned, and it is
	// replaced again no sooner than a second later.
	Addr string

	// Username and Password authenticate every connection with HELLO (or
	// AUTH). With a Username the connection always logs in as that user,
	// with the Password as given, even empty: an ACL user marked nopass
	// accepts that, and a user with a password refuses it with a
	// *HandshakeError. With a Password and no Username the server's
	// default user is used. With neither, nothing is sent and the
	// connection runs as the default user.
	Username string
	Password string
	// DB is selected on every connection (default 0).
	DB int
	// ClientName is set on every connection with HELLO SETNAME (or CLIENT
	// SETNAME), as CLIENT LIST shows it. Empty means none. The server
	// takes printable ASCII only ('!' to '~'), so NewClient refuses other
	// bytes.
	ClientName string

	// Protocol is the RESP version: 0 (default) tries RESP3 and falls back
	// to RESP2 on servers without HELLO; 2 forces RESP2; 3 requires RESP3.
	Protocol int

	// TLSConfig turns on TLS when non-nil. NewClient keeps a copy of it:
	// changes made to it afterwards do not reach the client. Without a
	// ServerName, the server's certificate is checked against Addr's
	// host; over a unix socket, whose path names no host, NewClient
	// refuses a TLSConfig without one (unless InsecureSkipVerify is set
	// or a Dialer makes the connection). A panic in
	// one of its callbacks (VerifyConnection, GetClientCertificate...)
	// fails that dial as one in Dialer does.
	TLSConfig *tls.Config
	// DialTimeout bounds one dial and handshake (default 5s). The call's
	// context can only shorten it.
	DialTimeout time.Duration
	// Dialer, when set, replaces the default net.Dialer. With a
	// TLSConfig too, the TLS handshake runs over the connection it
	// returns, unless that is a *tls.Conn already: a Dialer that reaches
	// the server through a tunnel or a proxy does not turn TLS off. A
	// panic in it fails that dial with a *DialError that says so, and
	// wraps the panic's value if it is an error: dials also run on the
	// client's own goroutines, where a panic could not be recovered. So
	// does a call of runtime.Goexit in it (t.FailNow calls it): the
	// Dialer runs on a goroutine of its own, which that ends, never the
	// caller's. A panic in a method of the connection it returns, of a
	// type of its own, fails that connection with an error that says so.
	// A nil connection without an error fails the dial too, and a
	// connection returned with an error is closed.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

	// PoolSize bounds the dedicated connections lent for WATCH, blocking
	// commands and large pipelines (default 10 per CPU). Shared connections
	// for plain calls are not counted. Calls that need a new dedicated
	// connection while one is being dialed wait for that dial, and share
	// its failure: a server that refuses connections, or the password,
	// gets one dial rather than one a call.
	PoolSize int
	// MaxIdle is how many dedicated connections stay open while unused
	// (default PoolSize; -1 keeps none, closing each as it comes back). It
	// may not exceed a PoolSize given; with the default PoolSize, it is
	// brought down to that.
	MaxIdle int
	// MaxIdleTime closes a dedicated connection left unused for this long
	// instead of lending it again (default 30m; -1 means never). The pool
	// has no timer of its own: it closes such connections the next time
	// one is taken from it or given back, or at Close.
	MaxIdleTime time.Duration
	// MaxConnAge bounds how long a connection is used (default 0: no
	// limit). A dedicated connection open this long is closed when it
	// comes back to the pool, or when it is next taken from the idle ones;
	// it is never lent again, and a session that holds it is not cut
	// short. The shared connection is replaced: calls made from then on
	// go over a new one, and the old one is closed once the calls in line
	// on it have their replies, none of them failing for it. It lets
	// connections move, in time, to whichever server a DNS name or load
	// balancer at Addr points to now.
	MaxConnAge time.Duration
	// IdleCheckAfter: a dedicated connection idle for this long is checked
	// with a PING, under the caller's context, before it is lent (default
	// 5s; -1 means never; 1ns checks every time). One that fails the check
	// is closed and another is lent or dialed, so a connection that died
	// while idle without the client being told (a NAT or firewall that
	// forgot it, a host gone without a word) costs a round trip, not an
	// error. A connection the server closed in the ordinary way is seen
	// closed without a check.
	IdleCheckAfter time.Duration

	// MaxReplyBytes bounds one bulk string in a reply, a guard against a
	// broken or hostile server (default 512 MiB, the server's own limit).
	MaxReplyBytes int64
	// MaxReplyElems bounds the elements of one aggregate reply (default
	// 2^32-1).
	MaxReplyElems int64
	// MaxReplyDepth bounds the nesting of aggregate replies (default 128,
	// at most 65536).
	//
	// The three limits apply to the replies of calls. The replies of a
	// connection's setup (HELLO, whose size and nesting grow with the
	// server's modules, AUTH, SELECT) are read under the defaults.
	MaxReplyDepth int

	// ReplyTimeout ends a connection when replies are due on it and no
	// byte has arrived for this long (default 10s; -1 means never), so a
	// stalled server or network cannot hold the client's calls forever,
	// even calls made with no deadline. It applies to every connection:
	// the shared one, and the dedicated ones of large pipelines, Tx
	// sessions and Streams. A blocking command (BLPOP, XREAD BLOCK, WAIT
	// and the like) is allowed its own timeout on top of it, since the
	// server is quiet while it waits; one whose timeout is 0, which may
	// wait for ever, is not limited. The connection's failure fails every
	// call in line with it. Each call still returns at its own context's
	// deadline.
	//
	// Silence is all it sees: a live server that takes longer than
	// ReplyTimeout to run one command (a long script, KEYS on a large
	// database, DEBUG SLEEP) is taken for a stalled one. That command
	// fails with an unknown outcome, the server having likely run it, and
	// the calls in line behind it fail with it; one that only reads is
	// sent again (MaxRetries), and the server runs it again each time.
	// Set ReplyTimeout above the longest command you run, or -1.
	ReplyTimeout time.Duration

	// PollWait is how long a connection keeps reading its socket without
	// sleeping while it waits for a reply (default 100µs, at most 1ms; -1
	// means never), before it waits in Go's network poller.
	//
	// Polling trades CPU time for latency, and what it buys depends on the
	// host. Where a thread that sleeps is slow to wake (a virtual machine,
	// whose idle CPU the hypervisor must start again), a reply taken by a
	// thread still awake comes sooner, and a caller calling back to back
	// spends less CPU time per call than the wake-ups would cost. Where
	// wake-ups are fast (CPUs kept busy by other work, or a server sharing
	// the client's CPU) it buys little, and the poll keeps a CPU busy for
	// the whole wait. Only calls sent within PollWait of the last reply
	// are polled for, however long that last call took: a caller who
	// pauses longer between calls sleeps on each reply at once, as a poll
	// per call would cost it more than the wake-up it saves. (A call alone
	// in line is read by its own caller, polling or asleep, so no other
	// goroutine has to hand it over.) And since a host changes state, a
	// connection times the calls of a caller calling back to back, now
	// and then a few of them asleep rather than polling (or the other way
	// round), and takes the way that got replies clearly sooner. The S8
	// table in bench/RESULTS.md
	// (#s8-client-cpu-time-and-latency-per-call) gives the CPU time and
	// latency per call of each case, paced and back to back, beside other
	// clients, and bench/RESULTS-fastwake.md and bench/RESULTS-pinned.md
	// the sequential cases where wake-ups are fast. Set -1 where CPU time counts for more than a
	// round trip's latency; a lone call's caller then still reads its
	// reply itself, asleep on the socket.
	//
	// The polling yields to other goroutines between reads, and, in a
	// process that may run on one CPU only, offers that CPU to other
	// threads too, since a server on the same machine would be waiting
	// for it. It backs off on a link whose replies take longer than
	// PollWait. A batch still waiting for more than PollWait/0.5µs
	// replies (200 at the default; 0.5µs is about the least a server
	// takes per command) is not polled for until its last ones are near.
	// A cluster pipeline, or a call split by slot (MGET, DEL and the
	// like), whose commands go to several nodes' shared connections polls
	// for the replies of the last node it writes to only, since it waits
	// for the slowest anyway. It applies to plain TCP and Unix sockets on
	// Unix systems, not to TLS or a custom Dialer.
	PollWait time.Duration

	// MaxRetries bounds how many times a call is sent again after a
	// connection failure (default 3; -1 means never). Only what cannot
	// apply twice is resent: calls certainly not sent, reads, and calls
	// whose context is marked with Idempotent. Failed dials are retried
	// the same way, with jittered backoff, within the call's context.
	MaxRetries int

	// Tx bounds the retries of Client.Transaction (see TxOptions).
	Tx TxOptions
}

// maxReplyDepth bounds Options.MaxReplyDepth. The reader takes one call
// per level of nesting; a broken or hostile server's reply nested millions
// deep would exceed the goroutine's stack, a fatal error no recover
// catches. Replies of real servers nest a few levels.
const maxReplyDepth = 1 << 16

// defaults returns o with zero fields set to their defaults. It does not
// validate; validate does.
func (o Options) defaults() Options {
	if o.Network == "" {
		o.Network = "tcp"
	}
	if o.Addr == "" && o.Network == "tcp" {
		o.Addr = "localhost:6379"
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.PoolSize == 0 {
		o.PoolSize = 10 * runtime.GOMAXPROCS(0)
		// The default depends on the machine: a MaxIdle above it is
		// brought down to it, not refused, so that options accepted on a
		// machine with many CPUs are not refused on one with few.
		o.MaxIdle = min(o.MaxIdle, o.PoolSize)
	}
	if o.MaxIdle == 0 {
		o.MaxIdle = o.PoolSize
	}
	if o.MaxIdleTime == 0 {
		o.MaxIdleTime = 30 * time.Minute
	}
	if o.IdleCheckAfter == 0 {
		o.IdleCheckAfter = 5 * time.Second
	}
	// -1 ("none") is kept as it is, so that Options() given back to
	// NewClient means the same thing again.
	if o.ReplyTimeout == 0 {
		o.ReplyTimeout = 10 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 3
	}
	if o.PollWait == 0 {
		o.PollWait = 100 * time.Microsecond
	}
	if o.MaxReplyBytes == 0 {
		o.MaxReplyBytes = 512 << 20
	}
	if o.MaxReplyElems == 0 {
		o.MaxReplyElems = 1<<32 - 1
	}
	if o.MaxReplyDepth == 0 {
		o.MaxReplyDepth = 128
	}
	return o
}

// validate checks o after defaults and names the first field that is wrong.
// addrHint says how to write addr, which net.SplitHostPort refused, as
// host:port.
func addrHint(addr string) string {
	if strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
		return "add the port, as in " + addr + ":6379"
	}
	if strings.Count(addr, ":") > 1 && !strings.ContainsAny(addr, "[]") {
		i := strings.LastIndexByte(addr, ':')
		if _, err := netip.ParseAddr(addr[:i]); err == nil && i < len(addr)-1 {
			return "put an IPv6 address in brackets before the port, as in [" + addr[:i] + "]" + addr[i:]
		}
		if _, err := netip.ParseAddr(addr); err == nil {
			return "put an IPv6 address in brackets before the port, as in [" + addr + "]:6379"
		}
	}
	if !strings.ContainsAny(addr, ":[]") {
		return "add the port, as in " + addr + ":6379"
	}
	return "write it as host:port, as in localhost:6379 or [::1]:6379"
}

func (o Options) validate() error {
	bad := func(field, format string, args ...any) error {
		return &OptionError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch o.Network {
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		return bad("Network", "must be tcp or unix, not %q", o.Network)
	}
	if o.Addr == "" {
		return bad("Addr", "is required for network %s", o.Network)
	}
	if strings.HasPrefix(o.Network, "tcp") {
		host, port, err := net.SplitHostPort(o.Addr)
		if err != nil {
			return bad("Addr", "%q is not host:port: %s", o.Addr, addrHint(o.Addr))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad("Addr", "port %q must be a number from 1 to 65535", port)
		}
		if _, err := netip.ParseAddr(host); strings.Contains(host, ":") && err != nil {
			// An IPv6 address with a zone (fe80::1%eth0) parses here.
			return bad("Addr", "host %q is neither a name nor an IP address", host)
		}
	}
	if o.Network == "unix" && o.TLSConfig != nil && o.Dialer == nil &&
		o.TLSConfig.ServerName == "" && !o.TLSConfig.InsecureSkipVerify {
		// Over TCP the name comes from Addr's host; a socket's path has
		// none, and every handshake would fail with crypto/tls's words.
		return bad("TLSConfig", "needs a ServerName over a unix socket, the name the server's certificate is for: "+
			"a socket's path has no host to take it from")
	}
	if o.DB < 0 {
		return bad("DB", "must be 0 or more, not %d", o.DB)
	}
	if o.Protocol != 0 && o.Protocol != 2 && o.Protocol != 3 {
		return bad("Protocol", "must be 0 (auto), 2 or 3, not %d", o.Protocol)
	}
	if o.DialTimeout < 0 {
		return bad("DialTimeout", "must not be negative, not %v", o.DialTimeout)
	}
	if o.PoolSize < 0 {
		return bad("PoolSize", "must not be negative, not %d", o.PoolSize)
	}
	if o.MaxIdle < -1 || o.MaxIdle > o.PoolSize {
		return bad("MaxIdle", "must be between 0 and PoolSize (%d), or -1 for none, not %d", o.PoolSize, o.MaxIdle)
	}
	if o.MaxIdleTime < 0 && o.MaxIdleTime != -1 {
		return bad("MaxIdleTime", "must be positive, or -1 for never, not %v", o.MaxIdleTime)
	}
	if o.MaxConnAge < 0 {
		return bad("MaxConnAge", "must not be negative (0 means no limit), not %v", o.MaxConnAge)
	}
	if o.IdleCheckAfter < 0 && o.IdleCheckAfter != -1 {
		return bad("IdleCheckAfter", "must be positive, or -1 for never, not %v", o.IdleCheckAfter)
	}
	if o.ReplyTimeout < 0 && o.ReplyTimeout != -1 {
		return bad("ReplyTimeout", "must be positive, or -1 for none, not %v", o.ReplyTimeout)
	}
	if o.PollWait < 0 && o.PollWait != -1 {
		return bad("PollWait", "must be positive, or -1 for none, not %v", o.PollWait)
	}
	if o.PollWait > time.Millisecond {
		return bad("PollWait", "must be at most 1ms, not %v: it is time spent polling without sleeping", o.PollWait)
	}
	if o.MaxRetries < -1 {
		return bad("MaxRetries", "must be 0 or more, or -1 for none, not %d", o.MaxRetries)
	}
	if o.MaxReplyBytes < 0 {
		return bad("MaxReplyBytes", "must not be negative, not %d", o.MaxReplyBytes)
	}
	if o.MaxReplyElems < 0 {
		return bad("MaxReplyElems", "must not be negative, not %d", o.MaxReplyElems)
	}
	if o.MaxReplyDepth < 0 {
		return bad("MaxReplyDepth", "must not be negative, not %d", o.MaxReplyDepth)
	}
	if o.MaxReplyDepth > maxReplyDepth {
		return bad("MaxReplyDepth", "must be at most %d, not %d: each level of a reply is read one call deeper, "+
			"and a reply nested deeper would end the program with a stack overflow", maxReplyDepth, o.MaxReplyDepth)
	}
	if err := o.Tx.validate("Tx."); err != nil {
		return err
	}
	// The server refuses any byte outside '!'..'~', and would refuse every
	// connection's handshake for it.
	if i := strings.IndexFunc(o.ClientName, func(r rune) bool { return r < '!' || r > '~' }); i >= 0 {
		return bad("ClientName", "must be printable ASCII, without spaces or newlines, as the server requires: %q", o.ClientName)
	}
	return nil
}

// String describes the options with the password hidden, so Options can be
// logged.
func (o Options) String() string {
	pw := ""
	if o.Password != "" {
		pw = "xxxxx"
	}
	return fmt.Sprintf("redpipe.Options{Network:%q Addr:%q Username:%q Password:%q DB:%d ClientName:%q Protocol:%d TLS:%t DialTimeout:%v PoolSize:%d MaxIdle:%d}",
		o.Network, o.Addr, o.Username, pw, o.DB, o.ClientName, o.Protocol, o.TLSConfig != nil, o.DialTimeout, o.PoolSize, o.MaxIdle)
}

// GoString is String, so that %#v, which would otherwise print every
// field, does not show the password either.
func (o Options) GoString() string { return o.String() }

// ParseURL turns a URL into Options:
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	rediss://...                  the same over TLS
//	unix://[[user]:password@]/path/to/socket[?db=N&...]
//
// A user without a password is written with the colon, as in
// redis://user:@host, and logs in as that user with an empty password. A
// name alone, as in redis://secret@host, is the short form of
// redis://:secret@host: a password for the default user.
//
// The port defaults to 6379. An IPv6 host is written in brackets, as in
// redis://[::1]:6379; without them it is refused, since its last group
// cannot be told from a port. Query options: db, protocol (2 or 3),
// client_name, dial_timeout (a Go duration such as 500ms), pool_size,
// max_idle, max_idle_time, max_conn_age, idle_check_after (durations, and
// -1 where the option takes it). An unknown option is an error, so a typo
// is not silently ignored, and so is an option given twice, or a db
// option that names another database than the path, since neither says
// which one is meant. The password never appears in an error.
func ParseURL(rawURL string) (Options, error) {
	if err := schemeMissing(rawURL); err != nil {
		return Options{}, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return Options{}, &OptionError{Field: "URL", Msg: "cannot be parsed: " + redactURLError(err, rawURL)}
	}
	// An @ after the host most likely ends a password that holds an
	// unencoded / or ?, where the parser ended the host instead: the host,
	// path and query may then hold pieces of that password
	// (redis://user:12345/rest@host reads as host "user", port 12345 and
	// path "rest@host"), and an error quotes none of them.
	hide := strings.Contains(u.Path, "@") || strings.Contains(u.RawQuery, "@")
	o, err := parseURL(u, rawURL, hide)
	var oe *OptionError
	if hide && errors.As(err, &oe) {
		oe.Msg += " (parts of the URL are not shown, as the @ after its host may end a password: " +
			"percent-encode any / ? # @ in the user name or password, as %2F %3F %23 %40)"
	}
	return o, err
}

// schemeMissing reports a URL without a scheme, an address as
// host:port or a bare host name, which the URL parser reads as a scheme of
// that name, or refuses for the colon in its path, neither of which says
// what to write instead. One with an @ may hold a password: it is not
// quoted.
func schemeMissing(rawURL string) error {
	if rawURL == "" || strings.Contains(rawURL, "://") {
		return nil
	}
	lower := strings.ToLower(rawURL)
	for _, known := range []string{"redis:", "rediss:", "unix:"} {
		if strings.HasPrefix(lower, known) {
			return nil // its own errors say what is wrong with it
		}
	}
	in, example := strconv.Quote(rawURL), "redis://"+rawURL
	if strings.ContainsAny(rawURL, "@/?#") {
		in, example = "it", "redis://host:6379"
	}
	return &OptionError{Field: "URL scheme", Msg: "is missing in " + in +
		": write it as " + example + " (rediss:// for TLS, unix:///path/to/redis.sock for a socket)"}
}

// parseURL is ParseURL on u, parsed from rawURL. With hide, its errors
// quote no part of the URL.
func parseURL(u *url.URL, rawURL string, hide bool) (Options, error) {
	var o Options
	quote := func(s string) string {
		if hide {
			return "<not shown>"
		}
		return strconv.Quote(s)
	}
	known := u.Scheme == "redis" || u.Scheme == "rediss" || u.Scheme == "unix"
	switch {
	case known && u.Opaque != "":
		// redis:host:6379, without the slashes: read as it stands it would
		// connect to localhost.
		example := u.Scheme + "://host:6379"
		if u.Scheme == "unix" {
			example = "unix:///path/to/redis.sock"
		}
		return o, &OptionError{Field: "URL", Msg: "must name its host after //, as in " + example}
	case u.Fragment != "" || strings.HasSuffix(rawURL, "#"):
		// A # in a password must be percent-encoded (%23): unencoded, it
		// ends the URL there, and the rest is read as another host.
		return o, &OptionError{Field: "URL", Msg: "has a fragment (#...): percent-encode a # in a user name or password as %23"}
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		msg := "cannot be parsed"
		if !hide {
			msg += ": " + err.Error()
		}
		return o, &OptionError{Field: "URL options", Msg: msg}
	}
	pathDB := "" // the database the path gives, if it gives one
	switch u.Scheme {
	case "redis", "rediss":
		o.Network = "tcp"
		host, port := u.Hostname(), u.Port()
		if host == "" {
			host = "localhost"
		}
		if port == "" {
			port = "6379"
		}
		if !strings.HasPrefix(u.Host, "[") && strings.Count(u.Host, ":") > 1 {
			// Unbracketed, an IPv6 address cannot be told from its port:
			// redis://::1:6380 would connect to port 6380 of ::1, though it
			// may mean the address ::1:6380 on the default port.
			_, whole := netip.ParseAddr(u.Host)
			_, part := netip.ParseAddr(host)
			if whole == nil || part == nil {
				return o, &OptionError{Field: "URL host", Msg: "must be in brackets when it is an IPv6 address, as in " +
					u.Scheme + "://[::1]:6379, not " + quote(u.Host)}
			}
		}
		if _, err := netip.ParseAddr(host); strings.Contains(host, ":") && err != nil {
			// An IPv6 address with a zone (fe80::1%eth0) parses here.
			return o, &OptionError{Field: "URL port", Msg: "must appear once after the host, not in " + quote(u.Host)}
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return o, &OptionError{Field: "URL port", Msg: "must be a number from 1 to 65535, not " + quote(port)}
		}
		o.Addr = net.JoinHostPort(host, port)
		if p := strings.Trim(u.Path, "/"); p != "" {
			db, err := strconv.Atoi(p)
			if err != nil {
				return o, &OptionError{Field: "URL path", Msg: "must be a database number, not " + quote(p)}
			}
			o.DB, pathDB = db, p
		}
		if u.Scheme == "rediss" {
			o.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
	case "unix":
		o.Network = "unix"
		if h := u.Hostname(); h != "" && h != "localhost" || u.Port() != "" {
			// unix://tmp/redis.sock names the host "tmp" and the path
			// /redis.sock: the socket path follows three slashes.
			return o, &OptionError{Field: "URL", Msg: "must give the socket path after unix:// with no host, as in unix:///path/to/redis.sock, not host " + quote(u.Host)}
		}
		o.Addr = u.Path
		if o.Addr == "" {
			return o, &OptionError{Field: "URL path", Msg: "must be the socket path in a unix URL"}
		}
	default:
		return o, &OptionError{Field: "URL scheme", Msg: fmt.Sprintf("must be redis, rediss or unix, not %q", u.Scheme)}
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
		if _, ok := u.User.Password(); !ok {
			// redis://secret@host is the common short form for a password.
			o.Username, o.Password = "", u.User.Username()
		}
	}
	for key, vals := range query {
		val := vals[len(vals)-1]
		field := "URL option " + key
		if hide {
			field = "URL option"
		}
		bad := func(what string) error {
			return &OptionError{Field: field, Msg: "must be " + what + ", not " + quote(val)}
		}
		if len(vals) > 1 {
			// Clients differ on which one counts (redis-py takes the
			// first), so neither is taken for the other.
			return o, &OptionError{Field: field, Msg: "is given " + strconv.Itoa(len(vals)) + " times: give it once"}
		}
		switch key {
		case "db":
			n, err := strconv.Atoi(val)
			if err != nil {
				return o, bad("a database number")
			}
			if pathDB != "" && n != o.DB {
				return o, &OptionError{Field: field, Msg: "gives database " + quote(val) + " and the URL path " + quote(pathDB) +
					": give the database once"}
			}
			o.DB = n
		case "protocol":
			n, err := strconv.Atoi(val)
			if err != nil || (n != 2 && n != 3) {
				return o, bad("2 or 3")
			}
			o.Protocol = n
		case "client_name":
			o.ClientName = val
		case "dial_timeout":
			d, err := time.ParseDuration(val)
			if err != nil {
				return o, bad("a duration such as 2s")
			}
			o.DialTimeout = d
		case "pool_size":
			n, err := strconv.Atoi(val)
			if err != nil {
				return o, bad("a number")
			}
			o.PoolSize = n
		case "max_idle":
			n, err := strconv.Atoi(val)
			if err != nil {
				return o, bad("a number")
			}
			o.MaxIdle = n
		case "max_idle_time", "max_conn_age", "idle_check_after":
			d, err := time.ParseDuration(val)
			if val == "-1" {
				d, err = -1, nil
			}
			if err != nil && key == "max_conn_age" {
				// MaxConnAge has no -1: its "no limit" is 0.
				return o, bad("a duration such as 10m, or 0 for no limit")
			}
			if err != nil {
				return o, bad("a duration such as 10m, or -1")
			}
			switch key {
			case "max_idle_time":
				o.MaxIdleTime = d
			case "max_conn_age":
				o.MaxConnAge = d
			default:
				o.IdleCheckAfter = d
			}
		default:
			return o, &OptionError{Field: field, Msg: "is not known (known: db, protocol, client_name, dial_timeout, pool_size, max_idle, max_idle_time, max_conn_age, idle_check_after)"}
		}
	}
	return o, nil
}

// redactURLError renders a url.Parse error without the URL, which may hold
// a password. Where the URL has user information, or a # that may have cut
// a password short, the parser's own words may quote part of it (an
// unencoded # in redis://:se#cret@host leaves "se" read as a port), so
// they are not given.
func redactURLError(err error, raw string) string {
	if strings.ContainsAny(raw, "@#") {
		return "check the host and port, and percent-encode any # / ? @ in the user name or password (# as %23)"
	}
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return strings.ReplaceAll(err.Error(), raw, "<url>")
}

// RedactURL returns the URL with its password replaced, for logs.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable url>"
	}
	if u.User != nil {
		if _, hasPW := u.User.Password(); !hasPW && u.User.Username() != "" {
			// redis://secret@host: ParseURL reads the lone name as the
			// password, so it is hidden too.
			u.User = url.User("xxxxx")
			return u.String()
		}
	}
	return u.Redacted()
}
