package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// serverNotes are what a subcommand tells the user about the server it
// runs against.
type serverNotes struct {
	throwaway string // the server was started for the run; %s is its URL
	user      string // the server is REDIS_URL's; %s is it, password hidden
	stopped   string // said after a throwaway server stopped, if not empty
}

// withServer runs fn with a client of the server a subcommand runs
// against: the one at rawURL when the user gave one, or a throwaway
// redis-server started now and always stopped afterwards, which fn is
// told it may flush. It tells w which, with notes, before connecting.
func withServer(ctx context.Context, rawURL string, w io.Writer, notes serverNotes,
	fn func(c *redpipe.Client, throwaway bool) error) (err error) {
	throwaway := rawURL == ""
	if throwaway {
		srv, serr := redistest.StartServer()
		if serr != nil {
			return noServerError(serr, "set REDIS_URL to a server you have")
		}
		defer func() {
			if err != nil && ctx.Err() == nil {
				err = goneHint(err, "throwaway redis-server", srv)
			}
			if serr := srv.Stop(); serr != nil && err == nil {
				err = serr
			}
			if notes.stopped != "" {
				fmt.Fprint(w, notes.stopped)
			}
		}()
		rawURL = srv.URL()
		fmt.Fprintf(w, notes.throwaway, rawURL)
	} else {
		// A URL that cannot be used is refused before the note, which
		// would show it as if it were.
		if _, err := redpipe.ParseURL(rawURL); err != nil {
			return err
		}
		fmt.Fprintf(w, notes.user, redact(rawURL))
	}
	c, err := redpipe.Connect(ctx, rawURL)
	if err != nil {
		return tlsHint(authHint(err, "REDIS_URL"))
	}
	defer c.Close()
	if !throwaway {
		// A Sentinel knows a handful of commands of its own, so the run
		// would stop at its first with "unknown command", which does not
		// say that REDIS_URL names a Sentinel rather than a server.
		if info, ierr := c.Info(ctx, "server"); ierr == nil && strings.Contains(info, "redis_mode:sentinel") {
			return sentinelError(ctx, c, rawURL)
		}
		// A cluster node runs commands on its own slots only and answers
		// the rest with MOVED or CROSSSLOT, so the run would stop partway
		// with an error that does not say why. A server whose ACL refuses
		// INFO is taken for a single one.
		if info, ierr := c.Info(ctx, "cluster"); ierr == nil && strings.Contains(info, "cluster_enabled:1") {
			return fmt.Errorf("%s is a node of a Redis Cluster, and this command needs a single server; only redpipe demo -cluster runs on a cluster, given a node's URL", redact(rawURL))
		}
		// A replica refuses every write with READONLY, which would stop
		// the run at its first SET with an error that names no server.
		if info, ierr := c.Info(ctx, "replication"); ierr == nil {
			if err := replicaError(rawURL, info); err != nil {
				return err
			}
		}
	}
	return fn(c, throwaway)
}

// replicaError returns why the server whose INFO replication is info
// cannot be written to, if it is a replica, naming its master.
func replicaError(rawURL, info string) error {
	fields := map[string]string{}
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	if fields["role"] != "slave" {
		return nil
	}
	master := "its master"
	if h, p := fields["master_host"], fields["master_port"]; h != "" && p != "" {
		master = "its master, " + net.JoinHostPort(h, p) + ","
	}
	return fmt.Errorf("%s is a read-only replica, and this command writes; give REDIS_URL the URL of %s instead", redact(rawURL), master)
}

// sentinelError says that the server at rawURL, whose client c is, is a
// Redis Sentinel, and names the masters it monitors, whose URLs REDIS_URL
// wants instead.
func sentinelError(ctx context.Context, c *redpipe.Client, rawURL string) error {
	masters := "the master it monitors"
	if v, err := c.Do(ctx, "SENTINEL", "MASTERS"); err == nil {
		list, _ := v.Slice()
		var named []string
		for _, m := range list {
			f, err := m.StringMap()
			if err == nil && f["ip"] != "" && f["port"] != "" {
				named = append(named, fmt.Sprintf("%s (at %s)", f["name"], net.JoinHostPort(f["ip"], f["port"])))
			}
		}
		if len(named) > 0 {
			masters = "a master it monitors: " + strings.Join(named, ", ")
		}
	}
	return fmt.Errorf("%s is a Redis Sentinel, which tells where masters are but holds no data; give REDIS_URL the URL of %s", redact(rawURL), masters)
}

// goneHint adds to err, the failure of a run on servers the command
// started, that one of them no longer takes connections, and what it
// printed last: the client's own error, a reset connection or an end of
// file, reads as a fault of the network or of the client, when the server
// was killed, as by the system short of memory, or crashed. what names
// the servers for the user. It is called before the servers are stopped.
func goneHint(err error, what string, servers ...*redistest.Server) error {
	for _, s := range servers {
		nc, derr := net.DialTimeout("tcp", s.Addr, time.Second)
		if derr == nil {
			nc.Close()
			continue
		}
		var lines []string
		for line := range strings.Lines(s.Output()) {
			if line = strings.TrimSpace(line); line != "" {
				lines = append(lines, line)
			}
		}
		last := "; it printed nothing"
		if len(lines) > 0 {
			last = "; its last lines:\n\t" + strings.Join(lines[max(0, len(lines)-10):], "\n\t")
		}
		return fmt.Errorf("%w\nThe %s at %s ended during the run: killed (as by the system when short of memory), crashed or shut down%s", err, what, s.Addr, last)
	}
	return err
}

// noServerError is err, the failure to start a throwaway server, told to
// a user of the command rather than to a test: when redis-server is not
// installed it says how to install it, or else what to give instead.
func noServerError(err error, instead string) error {
	if !errors.Is(err, exec.ErrNotFound) {
		return err
	}
	return fmt.Errorf("redis-server is not installed (not found in PATH), and it is needed to start a throwaway server: "+
		"install it (apt-get install redis-server on Debian or Ubuntu, brew install redis on macOS), or %s", instead)
}

// authHint adds to err, when the server refused the connection for want
// of a password or for a wrong one, how to give one in the URLs named by
// where: the server's own words name a command the user never typed.
func authHint(err error, where string) error {
	var se *redpipe.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Prefix {
	case "NOAUTH":
		return fmt.Errorf("%w\nThe server needs a password: give it in %s, as redis://:PASSWORD@host:port, or redis://USER:PASSWORD@host:port for an ACL user", err, where)
	case "WRONGPASS":
		return fmt.Errorf("%w\nThe server refused the user name or password in %s; a password with # / ? @ or %% in it must be percent-encoded (# as %%23)", err, where)
	}
	return err
}

// tlsHint adds to err, when the server's TLS certificate is signed by an
// authority this machine does not trust, as a private CA's is, how to
// trust it: the handshake's own words say what failed, not what to do,
// and the command has no flag for it since Go reads the roots it trusts
// from the environment.
func tlsHint(err error) error {
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		return err
	}
	return fmt.Errorf("%w\nThe server's certificate is signed by an authority this machine does not trust, such as a private CA: "+
		"on Linux, set SSL_CERT_FILE to that authority's certificate, a PEM file (SSL_CERT_FILE=ca.pem redpipe ...); elsewhere, add it to the system's trusted certificates", err)
}

// redact hides the password of a URL shown to the user.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that cannot be parsed)"
	}
	return u.Redacted()
}

// exitCode reports how a subcommand ended on stderr and returns the exit
// code for it.
func exitCode(ctx context.Context, cmd string, err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		// Whatever failed first, an interrupt is why. From a terminal,
		// Ctrl-C also reaches a throwaway redis-server in our process
		// group, so the error may be its closed connection rather than
		// the cancelled context.
		if s := (*signalled)(nil); errors.As(context.Cause(ctx), &s) {
			switch s.sig {
			case syscall.SIGTERM:
				fmt.Fprintf(stderr, "redpipe %s: terminated\n", cmd)
				return exitTerminated
			case syscall.SIGHUP:
				fmt.Fprintf(stderr, "redpipe %s: hung up\n", cmd)
				return exitHungUp
			}
		}
		fmt.Fprintf(stderr, "redpipe %s: interrupted\n", cmd)
		return exitInterrupted
	default:
		fmt.Fprintf(stderr, "redpipe %s: %v\n", cmd, err)
		return 1
	}
}
