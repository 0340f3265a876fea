package redpipe

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// testPKI is a throwaway certificate authority and a server certificate it
// signed, written as PEM files for redis-server, plus an unrelated CA that
// signed nothing the server presents.
type testPKI struct {
	certFile, keyFile, caFile string
	roots                     *x509.CertPool // holds the CA that signed the server's certificate
	otherRoots                *x509.CertPool // holds only the unrelated CA
}

// newTestPKI makes the certificates. They are valid for an hour: long
// enough for any test, short enough to be worthless if they ever leaked.
func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey := newTestCA(t, "redpipe test CA")
	otherCert, _ := newTestCA(t, "redpipe unrelated CA")

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: testSerial(t),
		Subject:      pkix.Name{CommonName: "redpipe test server"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		certFile:   filepath.Join(dir, "server.crt"),
		keyFile:    filepath.Join(dir, "server.key"),
		caFile:     filepath.Join(dir, "ca.crt"),
		roots:      x509.NewCertPool(),
		otherRoots: x509.NewCertPool(),
	}
	writePEM(t, p.certFile, "CERTIFICATE", der)
	writePEM(t, p.keyFile, "PRIVATE KEY", keyDER)
	writePEM(t, p.caFile, "CERTIFICATE", caCert.Raw)
	p.roots.AddCert(caCert)
	p.otherRoots.AddCert(otherCert)
	return p
}

func newTestCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          testSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func testSerial(t *testing.T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeLoopbackPort returns a port nothing listened on a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startTLSServer starts redis-server with TLS on a port of its own and
// returns it with that port's address. redistest needs the plain port to
// see that the server is up, so the server keeps it; the tests below only
// use the TLS port. args are more options for the server.
func startTLSServer(t *testing.T, p testPKI, args ...string) (*redistest.Server, string) {
	t.Helper()
	var lastErr error
	// The TLS port is found free here but bound later by the server; if
	// something takes it in between, the server fails to start and another
	// port is tried.
	for range 3 {
		port := freeLoopbackPort(t)
		srv, err := redistest.StartServer(append([]string{
			"--tls-port", strconv.Itoa(port),
			"--tls-cert-file", p.certFile,
			"--tls-key-file", p.keyFile,
			"--tls-ca-cert-file", p.caFile,
			"--tls-auth-clients", "no",
		}, args...)...)
		if err == nil {
			t.Cleanup(func() { srv.Stop() })
			return srv, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
		lastErr = err
	}
	t.Fatalf("starting redis-server with TLS: %v", lastErr)
	return nil, ""
}

func TestTLS(t *testing.T) {
	p := newTestPKI(t)
	_, tlsAddr := startTLSServer(t, p)

	t.Run("Options", func(t *testing.T) {
		// Counting verified handshakes proves the connection is TLS and
		// that the server's certificate was checked against our CA.
		var handshakes atomic.Int32
		c, err := NewClient(Options{Addr: tlsAddr, TLSConfig: &tls.Config{
			RootCAs: p.roots,
			VerifyConnection: func(cs tls.ConnectionState) error {
				handshakes.Add(1)
				return nil
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := ctxT(t)
		if err := c.Set(ctx, "tls:k", "over tls"); err != nil {
			t.Fatal(err)
		}
		if s, err := c.Get(ctx, "tls:k"); err != nil || s != "over tls" {
			t.Fatalf("Get over TLS = %q, %v", s, err)
		}
		if n := handshakes.Load(); n != 1 {
			t.Fatalf("%d verified TLS handshakes, want 1", n)
		}
	})

	t.Run("server name", func(t *testing.T) {
		// The host is sent as the server name (SNI), which proxies route
		// on, even when the certificate is not verified.
		_, port, _ := net.SplitHostPort(tlsAddr)
		for _, skip := range []bool{false, true} {
			var sent string
			c, err := NewClient(Options{Addr: "localhost:" + port, TLSConfig: &tls.Config{
				RootCAs: p.roots, InsecureSkipVerify: skip,
				VerifyConnection: func(cs tls.ConnectionState) error { sent = cs.ServerName; return nil },
			}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Ping(ctxT(t))
			c.Close()
			if !skip && err != nil && strings.Contains(err.Error(), "certificate") {
				continue // the test certificate may not name localhost
			}
			if err != nil || sent != "localhost" {
				t.Errorf("InsecureSkipVerify %v: Ping = %v, server name sent %q; want localhost", skip, err, sent)
			}
		}
	})

	t.Run("config changed after NewClient", func(t *testing.T) {
		// The client keeps the TLS configuration it was made with, as it
		// keeps the rest of its Options: a change to the caller's, or to
		// the one Options returns, reaches no dial of the client's.
		cfg := &tls.Config{RootCAs: p.roots}
		c, err := NewClient(Options{Addr: tlsAddr, DialTimeout: 5 * time.Second, TLSConfig: cfg})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cfg.RootCAs = p.otherRoots
		c.Options().TLSConfig.RootCAs = p.otherRoots
		if _, err := c.Ping(ctxT(t)); err != nil {
			t.Fatalf("Ping after the caller's TLSConfig changed = %v, want the client's own configuration used", err)
		}
		if got := c.Options().TLSConfig; got == cfg || got.RootCAs != p.roots {
			t.Errorf("Options().TLSConfig is the caller's, or changed with it")
		}
	})

	t.Run("rediss URL", func(t *testing.T) {
		opt, err := ParseURL("rediss://" + tlsAddr + "/2")
		if err != nil {
			t.Fatal(err)
		}
		if opt.TLSConfig == nil || opt.TLSConfig.ServerName != "127.0.0.1" {
			t.Fatalf("rediss URL gave TLSConfig %+v, want one with ServerName 127.0.0.1", opt.TLSConfig)
		}
		// The system roots do not hold the test CA.
		opt.TLSConfig.RootCAs = p.roots
		c, err := NewClient(opt)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := ctxT(t)
		if err := c.Set(ctx, "tls:url", "yes"); err != nil {
			t.Fatal(err)
		}
		if s, err := c.Get(ctx, "tls:url"); err != nil || s != "yes" {
			t.Fatalf("Get over rediss = %q, %v", s, err)
		}
		info, err := c.Do(ctx, "CLIENT", "INFO")
		if s, _ := info.Text(); err != nil || !strings.Contains(s, " db=2 ") {
			t.Fatalf("CLIENT INFO over rediss://.../2 = %q, %v; want db=2", s, err)
		}
	})

	t.Run("wrong CA", func(t *testing.T) {
		c, err := NewClient(Options{Addr: tlsAddr, DialTimeout: 2 * time.Second, TLSConfig: &tls.Config{RootCAs: p.otherRoots}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err = c.Ping(ctx)
		took := time.Since(start)
		t.Logf("after %v: %v", took, err)
		var unknownCA x509.UnknownAuthorityError
		if !errors.As(err, &unknownCA) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("Ping with the wrong CA: err = %v, want an x509.UnknownAuthorityError that mentions the certificate", err)
		}
		var de *DialError
		if !errors.As(err, &de) || de.Addr != tlsAddr {
			t.Errorf("err = %v, want a *DialError naming %s", err, tlsAddr)
		}
		if took > 5*time.Second {
			t.Errorf("a certificate the client cannot trust took %v to refuse", took)
		}
	})

	t.Run("plain client on the TLS port", func(t *testing.T) {
		const dialTimeout = 2 * time.Second
		c, err := NewClient(Options{Addr: tlsAddr, DialTimeout: dialTimeout, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err = c.Ping(ctx)
		took := time.Since(start)
		t.Logf("after %v: %v", took, err)
		if err == nil {
			t.Fatal("a client without TLS got a reply from the TLS port")
		}
		var he *HandshakeError
		var de *DialError
		if !errors.As(err, &he) && !errors.As(err, &de) {
			t.Errorf("err = %T %v, want a *HandshakeError or *DialError that says the connection could not be set up", err, err)
		}
		if took > dialTimeout+time.Second {
			t.Errorf("failing took %v, more than DialTimeout (%v)", took, dialTimeout)
		}
	})
}

// clientIDsOf returns the ids of the connections of user, as the server's
// CLIENT LIST shows them.
func clientIDsOf(t *testing.T, srv *redistest.Server, user string) []string {
	t.Helper()
	list, ok := srv.MustDo(t, "CLIENT", "LIST").(string)
	if !ok {
		t.Fatal("CLIENT LIST did not reply with text")
	}
	var ids []string
	for line := range strings.Lines(list) {
		fields := strings.Fields(line)
		if !slices.Contains(fields, "user="+user) {
			continue
		}
		for _, f := range fields {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

func TestACLLimitedUser(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "limited", "on", ">limited-pw", "~app:*", "+get", "+set")
	ctx := ctxT(t)
	c, err := Connect(ctx, "redis://limited:limited-pw@"+srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "app:1", "one"); err != nil {
		t.Fatal(err)
	}
	before := clientIDsOf(t, srv, "limited")
	if len(before) != 1 {
		t.Fatalf("the limited user has connections %v, want exactly one", before)
	}
	shared := c.shared.Load()

	expectNoperm := func(what string, err error) {
		t.Helper()
		var se *Error
		if !errors.As(err, &se) || se.Prefix != "NOPERM" {
			t.Fatalf("%s: err = %v, want an *Error with prefix NOPERM", what, err)
		}
		if OutcomeOf(err) != OutcomeNotApplied {
			t.Errorf("%s: OutcomeOf = %v, want not applied", what, OutcomeOf(err))
		}
	}
	_, err = c.Del(ctx, "app:1")
	expectNoperm("DEL, a command the user may not run", err)
	_, err = c.Get(ctx, "other:1")
	expectNoperm("GET of a key outside ~app:*", err)
	expectNoperm("SET of a key outside ~app:*", c.Set(ctx, "other:1", "x"))

	// The refusals were replies like any other: the connection is intact.
	if s, err := c.Get(ctx, "app:1"); err != nil || s != "one" {
		t.Fatalf("GET of an allowed key after the refusals = %q, %v", s, err)
	}
	if after := clientIDsOf(t, srv, "limited"); !slices.Equal(after, before) {
		t.Fatalf("the limited user's connections went from %v to %v; the refusals must not cost the connection", before, after)
	}
	if c.shared.Load() != shared {
		t.Fatal("the client replaced its shared connection after a NOPERM reply")
	}
}

func TestACLWrongAndMissingPassword(t *testing.T) {
	ctx := ctxT(t)
	t.Run("wrong password", func(t *testing.T) {
		srv := redistest.Start(t)
		srv.MustDo(t, "ACL", "SETUSER", "app", "on", ">right-pw", "+@all", "~*")
		_, err := Connect(ctx, "redis://app:wrong-pw@"+srv.Addr)
		var he *HandshakeError
		var se *Error
		if !errors.As(err, &he) || !errors.As(err, &se) || se.Prefix != "WRONGPASS" {
			t.Fatalf("err = %v, want a *HandshakeError wrapping a WRONGPASS *Error", err)
		}
		if he.Step != "HELLO" {
			t.Errorf("HandshakeError.Step = %q, want HELLO", he.Step)
		}
		t.Logf("error: %v", err)
	})
	t.Run("missing password", func(t *testing.T) {
		srv := redistest.Start(t, "--requirepass", "required-pw")
		c, err := NewClient(Options{Addr: srv.Addr})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_, err = c.Ping(ctx)
		var he *HandshakeError
		var se *Error
		if !errors.As(err, &he) || !errors.As(err, &se) || se.Prefix != "NOAUTH" {
			t.Fatalf("err = %v, want a *HandshakeError wrapping a NOAUTH *Error", err)
		}
		if !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("error %q does not say authentication is required", err)
		}
		// A server that wants a password will want it next time too.
		if took := time.Since(start); took > time.Second {
			t.Errorf("the refusal took %v: was it retried?", took)
		}
		t.Logf("error: %v", err)
	})
}

// TestHandshakeErrorsSayWhatToDo: a connection setup the server refuses
// for what the options say names the option to change, beside the
// server's own words, which speak of its commands: NOAUTH's tell of the
// AUTH option of HELLO, which the caller never wrote. The server's *Error
// stays reachable.
func TestHandshakeErrorsSayWhatToDo(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "unnamed", "on", ">unnamed-pw", "~*", "+@all", "-client|setname")
	srv.MustDo(t, "ACL", "SETUSER", "db0only", "on", ">db0only-pw", "~*", "+@all", "-select")
	ctx := ctxT(t)
	ping := func(t *testing.T, opt Options) error {
		t.Helper()
		opt.Addr, opt.MaxRetries = srv.Addr, -1
		c, err := NewClient(opt)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Ping(ctx)
		return err
	}
	check := func(t *testing.T, err error, step, prefix, says string) {
		t.Helper()
		var he *HandshakeError
		var se *Error
		if !errors.As(err, &he) || he.Step != step || !errors.As(err, &se) || se.Prefix != prefix {
			t.Fatalf("err = %v, want a *HandshakeError at %s wrapping a %s *Error", err, step, prefix)
		}
		if !strings.Contains(err.Error(), says) {
			t.Fatalf("error %q does not say what to do: %q", err, says)
		}
	}
	t.Run("wrong password", func(t *testing.T) {
		check(t, ping(t, Options{Username: "unnamed", Password: "wrong"}), "HELLO", "WRONGPASS", "check Options.Username and Options.Password")
	})
	t.Run("database out of range", func(t *testing.T) {
		check(t, ping(t, Options{DB: 99}), "SELECT", "ERR", "Options.DB, or the URL's database, is past the databases the server has")
	})
	t.Run("CLIENT SETNAME not allowed", func(t *testing.T) {
		check(t, ping(t, Options{Username: "unnamed", Password: "unnamed-pw", ClientName: "n", Protocol: 2}),
			"CLIENT SETNAME", "NOPERM", "leave Options.ClientName empty, or allow it CLIENT SETNAME (ACL SETUSER unnamed +client|setname)")
	})
	t.Run("SELECT not allowed", func(t *testing.T) {
		check(t, ping(t, Options{Username: "db0only", Password: "db0only-pw", DB: 1}), "SELECT", "NOPERM", "leave it 0, or allow the user SELECT (ACL SETUSER db0only +select)")
	})
	t.Run("password required while the client runs", func(t *testing.T) {
		// Retried, the PING sent on the closed connection dials again.
		c, err := NewClient(Options{Addr: srv.Addr})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		// On one connection: the password is required from now on, and
		// every connection of the client is closed.
		if _, err := srv.Pipeline([]string{"CONFIG", "SET", "requirepass", "now-required"},
			[]string{"CLIENT", "KILL", "TYPE", "normal"}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			srv.Pipeline([]string{"AUTH", "now-required"}, []string{"CONFIG", "SET", "requirepass", ""})
		})
		_, err = c.Ping(ctx)
		check(t, err, "HELLO", "NOAUTH", "the server requires a password: set Options.Password")
	})
}

// TestUsernameWithoutPassword: a Username given without a Password still
// logs in as that user, with an empty password, rather than leaving the
// connection to the default user and its rights.
func TestUsernameWithoutPassword(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "ro", "on", "nopass", "~*", "+@read")
	srv.MustDo(t, "ACL", "SETUSER", "pw", "on", ">pw-only-pw", "~*", "+@all")
	srv.MustDo(t, "SET", "k", "v")
	ctx := ctxT(t)

	fromURL := func(raw string) func(t *testing.T) Options {
		return func(t *testing.T) Options {
			o, err := ParseURL(raw)
			if err != nil {
				t.Fatal(err)
			}
			return o
		}
	}
	fromOptions := func(o Options) func(t *testing.T) Options {
		return func(*testing.T) Options {
			o.Addr = srv.Addr
			return o
		}
	}
	newClient := func(t *testing.T, opt func(t *testing.T) Options) *Client {
		t.Helper()
		c, err := NewClient(opt(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	for _, tc := range []struct {
		name string
		opt  func(t *testing.T) Options
	}{
		{"Options", fromOptions(Options{Username: "ro"})},
		{"Options RESP2", fromOptions(Options{Username: "ro", Protocol: 2})},
		{"URL", fromURL("redis://ro:@" + srv.Addr)},
		{"URL RESP2", fromURL("redis://ro:@" + srv.Addr + "?protocol=2")},
	} {
		t.Run("nopass user/"+tc.name, func(t *testing.T) {
			c := newClient(t, tc.opt)
			if s, err := c.Get(ctx, "k"); err != nil || s != "v" {
				t.Fatalf("GET as ro = %q, %v; want \"v\"", s, err)
			}
			var se *Error
			if err := c.Set(ctx, "written", "w"); !errors.As(err, &se) || se.Prefix != "NOPERM" {
				t.Fatalf("SET as ro: err = %v, want an *Error with prefix NOPERM: the connection does not run as ro", err)
			}
			if ids := clientIDsOf(t, srv, "ro"); len(ids) != 1 {
				t.Errorf("the server has connections %v as ro, want exactly one", ids)
			}
		})
	}

	for _, tc := range []struct {
		name string
		opt  func(t *testing.T) Options
		step string
	}{
		{"Options", fromOptions(Options{Username: "pw", MaxRetries: -1}), "HELLO"},
		{"Options RESP2", fromOptions(Options{Username: "pw", Protocol: 2, MaxRetries: -1}), "AUTH"},
		{"URL", fromURL("redis://pw:@" + srv.Addr), "HELLO"},
	} {
		t.Run("user with a password/"+tc.name, func(t *testing.T) {
			c := newClient(t, tc.opt)
			_, err := c.Ping(ctx)
			var he *HandshakeError
			var se *Error
			if !errors.As(err, &he) || !errors.As(err, &se) || se.Prefix != "WRONGPASS" {
				t.Fatalf("PING as pw without its password: err = %v, want a *HandshakeError wrapping a WRONGPASS *Error", err)
			}
			if he.Step != tc.step {
				t.Errorf("HandshakeError.Step = %q, want %s", he.Step, tc.step)
			}
		})
	}
}

// TestSecretsStayOutOfErrorsAndLogs runs every path that handles a
// password and checks that none of it shows up in an error, a printed
// Options, a redacted URL or the log.
func TestSecretsStayOutOfErrorsAndLogs(t *testing.T) {
	const secret = "hunter2-SECRET"
	var logged bytes.Buffer
	prevOut, prevFlags := log.Writer(), log.Flags()
	log.SetOutput(&logged)
	t.Cleanup(func() {
		log.SetOutput(prevOut)
		log.SetFlags(prevFlags)
	})

	var texts []string
	check := func(what, s string) {
		t.Helper()
		texts = append(texts, what)
		if strings.Contains(s, secret) || strings.Contains(s, "SECRET") {
			t.Errorf("%s shows the password: %s", what, s)
		}
	}
	checkErr := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		check(what, err.Error())
		check(what+" (%+v)", fmt.Sprintf("%+v", err))
		check(what+" (%#v)", fmt.Sprintf("%#v", err))
	}

	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "app", "on", ">the-right-one", "+@all", "~*")
	ctx := ctxT(t)

	_, err := Connect(ctx, "redis://app:"+secret+"@"+srv.Addr)
	checkErr("Connect with a wrong password in the URL", err)
	c, err := NewClient(Options{Addr: srv.Addr, Username: "app", Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Ping(ctx)
	checkErr("Ping with a wrong password in Options", err)
	check("Client.Options().String()", c.Options().String())
	c.Close()

	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeLoopbackPort(t)))
	_, err = Connect(ctx, "redis://:"+secret+"@"+closed)
	checkErr("Connect to a closed port", err)
	c, err = NewClient(Options{Addr: closed, Password: secret, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Ping(ctx)
	checkErr("Ping on a closed port", err)
	c.Close()

	for _, u := range []string{
		"redis://:" + secret + "@127.0.0.1:badport",
		"redis://user:" + secret + "@127.0.0.1:6379/notadb",
		"redis://" + secret + "@127.0.0.1:6379/notadb",
		"redis://:" + secret + "@127.0.0.1?nosuch=1",
		"redis://:" + secret + "@127.0.0.1?protocol=4",
		"redis://:" + secret + "@127.0.0.1:6379%zz",
		"rediss://:" + secret + "@[::1",
		"unix://:" + secret + "@",
		"ftp://:" + secret + "@127.0.0.1",
		"redis://:" + secret + "@127.0.0.1\x7f",
	} {
		_, err := ParseURL(u)
		checkErr(fmt.Sprintf("ParseURL(%q)", strings.ReplaceAll(u, secret, "<pw>")), err)
	}
	_, err = NewClient(Options{Password: secret, DB: -1})
	checkErr("NewClient with a bad DB", err)

	opts := []Options{{Password: secret}, {Username: "u", Password: secret, TLSConfig: &tls.Config{}}}
	if o, err := ParseURL("redis://" + secret + "@127.0.0.1"); err == nil {
		opts = append(opts, o)
	} else {
		t.Error(err)
	}
	for i, o := range opts {
		check(fmt.Sprintf("Options %d String()", i), o.String())
		check(fmt.Sprintf("Options %d %%v", i), fmt.Sprintf("%v", o))
		check(fmt.Sprintf("Options %d %%+v", i), fmt.Sprintf("%+v", o))
		check(fmt.Sprintf("Options %d %%s", i), fmt.Sprint(o)) // the %s verb, through String
		check(fmt.Sprintf("*Options %d %%v", i), fmt.Sprintf("%v", &o))
	}

	for _, u := range []string{
		"redis://user:" + secret + "@127.0.0.1:6379/0",
		"redis://:" + secret + "@127.0.0.1",
		"rediss://u:" + secret + "@localhost:6380?db=1",
		"unix://:" + secret + "@/tmp/redis.sock",
		"redis://:" + secret + "@127.0.0.1:badport",
	} {
		check(fmt.Sprintf("RedactURL(%q)", strings.ReplaceAll(u, secret, "<pw>")), RedactURL(u))
	}
	// redis://secret@host is the password-only short form ParseURL
	// accepts, so the user part is the password and must be hidden too.
	t.Run("RedactURL short form", func(t *testing.T) {
		got := RedactURL("redis://" + secret + "@127.0.0.1:6379/0")
		if strings.Contains(got, secret) {
			t.Errorf("RedactURL of the password-only form redis://<pw>@host shows the password: %s", got)
		}
	})

	check("the log output", logged.String())
	t.Logf("checked %d texts", len(texts))
}

func TestSizeLimitBytes(t *testing.T) {
	c, _ := newTestClient(t, Options{MaxReplyBytes: 1024})
	ctx := ctxT(t)
	if err := c.Set(ctx, "big", strings.Repeat("b", 2000)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Get(ctx, "big")
	var le *resp.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("GET of a 2000-byte value with MaxReplyBytes 1024: err = %v, want a *resp.LimitError", err)
	}
	if le.Size != 2000 || le.Limit != 1024 || !strings.Contains(err.Error(), "1024") || !strings.Contains(err.Error(), "bulk string length") {
		t.Errorf("LimitError %+v (%q) does not name the size, the limit and what is limited", le, err)
	}
	// The connection is gone; a new one serves the next call.
	if err := c.Set(ctx, "small", "s"); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Get(ctx, "small"); err != nil || s != "s" {
		t.Fatalf("GET of a small value after the limit = %q, %v", s, err)
	}
	if s, err := c.Get(ctx, "missing"); !errors.Is(err, ErrNil) {
		t.Fatalf("GET of a missing key after the limit = %q, %v", s, err)
	}
}

func TestSizeLimitElems(t *testing.T) {
	c, _ := newTestClient(t, Options{MaxReplyElems: 50})
	ctx := ctxT(t)
	items := make([]any, 100)
	for i := range items {
		items[i] = i
	}
	if _, err := c.RPush(ctx, "list", items...); err != nil {
		t.Fatal(err)
	}
	_, err := c.LRange(ctx, "list", 0, -1)
	var le *resp.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("LRANGE of 100 elements with MaxReplyElems 50: err = %v, want a *resp.LimitError", err)
	}
	if le.Size != 100 || le.Limit != 50 || !strings.Contains(err.Error(), "array length") {
		t.Errorf("LimitError %+v (%q) does not name the size, the limit and what is limited", le, err)
	}
	got, err := c.LRange(ctx, "list", 0, 9)
	if err != nil || len(got) != 10 || got[9] != "9" {
		t.Fatalf("LRANGE of 10 elements after the limit = %v, %v", got, err)
	}
}

func TestSizeLimitDepth(t *testing.T) {
	c, _ := newTestClient(t, Options{MaxReplyDepth: 5})
	ctx := ctxT(t)
	nested := func(depth int) string {
		return "return " + strings.Repeat("{", depth) + "1" + strings.Repeat("}", depth)
	}
	_, err := c.Eval(ctx, nested(10), 0)
	var le *resp.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("EVAL returning tables nested 10 deep with MaxReplyDepth 5: err = %v, want a *resp.LimitError", err)
	}
	if le.What != "nesting depth" || le.Limit != 5 || !strings.Contains(err.Error(), "nesting depth") {
		t.Errorf("LimitError %+v (%q) does not name the nesting depth and its limit", le, err)
	}
	v, err := c.Eval(ctx, nested(3), 0)
	if err != nil {
		t.Fatalf("EVAL nested 3 deep after the limit: %v", err)
	}
	for range 3 {
		elems, err := v.Slice()
		if err != nil || len(elems) != 1 {
			t.Fatalf("EVAL nested 3 deep = %v, %v", v, err)
		}
		v = elems[0]
	}
	if n, err := v.Int64(); err != nil || n != 1 {
		t.Fatalf("innermost element = %v, %v; want 1", v, err)
	}
}

// TestSizeLimitsSpareHandshake: reply limits set for the caller's data,
// below what the server's HELLO reply holds (a map of seven fields, its
// version string, its modules), leave the connection's setup alone and
// apply from the first reply after it, on the shared connection and a
// pooled one. Every connection failed at HELLO with a *resp.LimitError,
// so no call could be made; a MaxReplyDepth of 3 fails so only on a
// server with modules loaded.
func TestSizeLimitsSpareHandshake(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "SET", "k", "v")
	srv.MustDo(t, "SET", "five", "12345")
	srv.MustDo(t, "RPUSH", "list", "1", "2", "3", "4", "5")
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		opt  Options
		over func(c *Client) error // the first call, whose reply is over the limit
	}{
		{"MaxReplyDepth 1", Options{MaxReplyDepth: 1}, func(c *Client) error {
			_, err := c.Eval(ctx, "return {{1}}", 0)
			return err
		}},
		{"MaxReplyElems 4", Options{MaxReplyElems: 4}, func(c *Client) error {
			_, err := c.LRange(ctx, "list", 0, -1)
			return err
		}},
		{"MaxReplyBytes 4", Options{MaxReplyBytes: 4}, func(c *Client) error {
			_, err := c.Get(ctx, "five")
			return err
		}},
	} {
		for _, poll := range []time.Duration{0, -1} { // the caller reads its reply, or the reader goroutine
			t.Run(fmt.Sprintf("%s PollWait %v", tc.name, poll), func(t *testing.T) {
				opt := tc.opt
				opt.Addr, opt.MaxRetries, opt.PollWait = srv.Addr, -1, poll
				c, err := NewClient(opt)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				var le *resp.LimitError
				var he *HandshakeError
				if err := tc.over(c); !errors.As(err, &le) || errors.As(err, &he) {
					t.Fatalf("first call, its reply over the limit: err = %v, want a *resp.LimitError from its reply, not from the setup", err)
				}
				if le.Limit > 5 {
					t.Fatalf("the limit hit was %d (%v), not the one set", le.Limit, le)
				}
				if s, err := c.Get(ctx, "k"); err != nil || s != "v" {
					t.Fatalf("GET over a new connection after the limit = %q, %v", s, err)
				}
				tx, err := c.Watch(ctx, "k")
				if err != nil {
					t.Fatalf("Watch: %v", err)
				}
				defer tx.Close()
				if s, err := tx.Get(ctx, "k"); err != nil || s != "v" {
					t.Fatalf("GET on the Tx = %q, %v", s, err)
				}
				if err := tc.over(c); !errors.As(err, &le) {
					t.Fatalf("a reply over the limit after the Watch: err = %v, want a *resp.LimitError", err)
				}
			})
		}
	}
}

// TestBinarySafety sends keys and values that hold protocol bytes, NULs,
// invalid UTF-8 and reply lookalikes through every path that carries them,
// and checks they come back byte for byte.
func TestBinarySafety(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	big := make([]byte, 1<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	samples := []string{
		"line\r\nbreak",
		"\r\n",
		"nul\x00inside\x00",
		"\x00",
		"\xff\xfe invalid utf-8 \xc3\x28",
		"$5\r\nhello\r\n",
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"+OK\r\n",
		"-ERR not an error\r\n",
		":1\r\n",
		"%1\r\n+a\r\n+b\r\n",
		"",
		string(big),
	}
	name := func(i int) string { return fmt.Sprintf("sample %d (%q)", i, clip(samples[i])) }
	key := func(s string) string { return "bin:" + s }

	t.Run("Set and Get", func(t *testing.T) {
		for i, s := range samples {
			if err := c.Set(ctx, key(s), s); err != nil {
				t.Fatalf("%s: %v", name(i), err)
			}
			got, err := c.Get(ctx, key(s))
			if err != nil || got != s {
				t.Fatalf("%s: Get = %q (len %d), %v", name(i), clip(got), len(got), err)
			}
		}
	})
	t.Run("byte slices", func(t *testing.T) {
		for i, s := range samples {
			if err := c.Set(ctx, key(s)+"b", []byte(s)); err != nil {
				t.Fatalf("%s: %v", name(i), err)
			}
			v, err := c.Do(ctx, "GET", []byte(key(s)+"b"))
			if err != nil {
				t.Fatalf("%s: %v", name(i), err)
			}
			got, err := v.Bytes()
			if err != nil || !bytes.Equal(got, []byte(s)) {
				t.Fatalf("%s: GET = %q (len %d), %v", name(i), clip(string(got)), len(got), err)
			}
		}
	})
	for _, opts := range [][]PipelineOption{{NoTransaction}, nil} {
		kind := "transaction"
		if opts != nil {
			kind = "pipeline"
		}
		t.Run(kind, func(t *testing.T) {
			p := c.Pipeline(opts...)
			for _, s := range samples {
				p.Set(key(s)+kind, s).Get(key(s) + kind)
			}
			replies, err := p.Exec(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(replies) != 2*len(samples) {
				t.Fatalf("%d replies for %d commands", len(replies), 2*len(samples))
			}
			for i, s := range samples {
				got, err := replies[2*i+1].Text()
				if err != nil || got != s {
					t.Fatalf("%s: GET in a %s = %q (len %d), %v", name(i), kind, clip(got), len(got), err)
				}
			}
		})
	}
	t.Run("hash", func(t *testing.T) {
		var args []any
		want := map[string]string{}
		for i, s := range samples {
			field := s
			if len(field) > 1024 {
				field = fmt.Sprint("big field ", i) // one 1 MiB value is enough
			}
			args = append(args, field, s)
			want[field] = s
		}
		if _, err := c.HSet(ctx, "bin:hash", args...); err != nil {
			t.Fatal(err)
		}
		got, err := c.HGetAll(ctx, "bin:hash")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("HGETALL has %d fields, want %d", len(got), len(want))
		}
		for f, v := range want {
			if got[f] != v {
				t.Fatalf("HGETALL[%q] = %q (len %d), want %q (len %d)", clip(f), clip(got[f]), len(got[f]), clip(v), len(v))
			}
		}
	})
}

// A TLS client on a port without TLS: the server reads the handshake as
// the start of a command and waits for the rest, so the dial ends at its
// timeout. The error says what likely went wrong.
func TestTLSClientOnPlainPort(t *testing.T) {
	srv := redistest.Start(t)
	c, err := NewClient(Options{Addr: srv.Addr, DialTimeout: 300 * time.Millisecond, MaxRetries: -1,
		TLSConfig: &tls.Config{ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Ping(ctxT(t))
	var de *DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "does the server accept TLS") || OutcomeOf(err) != OutcomeNotSent {
		t.Fatalf("Ping over TLS to a plain port = %v (outcome %v), want a *DialError that asks whether the server speaks TLS", err, OutcomeOf(err))
	}
}

// TestTLSThroughDialer: with both a Dialer and a TLSConfig, the TLS
// handshake runs over the Dialer's connection, as with a Dialer that
// reaches the server through a tunnel; a Dialer that returns a *tls.Conn
// of its own is not wrapped a second time. The Dialer replaced TLS: the
// client spoke plain text over it, the password included, and a
// rediss:// URL given a Dialer connected without TLS to a plain port.
func TestTLSThroughDialer(t *testing.T) {
	p := newTestPKI(t)
	_, tlsAddr := startTLSServer(t, p)
	plain := redistest.Start(t)
	ctx := ctxT(t)
	var nd net.Dialer
	var dials atomic.Int32
	tunnel := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return nd.DialContext(ctx, network, addr)
	}
	verified := func(n *atomic.Int32) *tls.Config {
		return &tls.Config{RootCAs: p.roots, VerifyConnection: func(tls.ConnectionState) error {
			n.Add(1)
			return nil
		}}
	}

	t.Run("plain Dialer", func(t *testing.T) {
		var handshakes atomic.Int32
		dials.Store(0)
		c, err := NewClient(Options{Addr: tlsAddr, Dialer: tunnel, TLSConfig: verified(&handshakes), MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Set(ctx, "tls:dialer", "yes"); err != nil {
			t.Fatalf("Set over TLS through a Dialer: %v", err)
		}
		tx, err := c.Watch(ctx, "tls:dialer") // a dedicated connection
		if err != nil {
			t.Fatalf("Watch over TLS through a Dialer: %v", err)
		}
		if s, err := tx.Get(ctx, "tls:dialer"); err != nil || s != "yes" {
			t.Fatalf("Get on the Tx = %q, %v", s, err)
		}
		tx.Close()
		if d, h := dials.Load(), handshakes.Load(); d != 2 || h != 2 {
			t.Fatalf("%d dials through the Dialer and %d verified TLS handshakes, want 2 of each", d, h)
		}
	})

	t.Run("Dialer that does TLS", func(t *testing.T) {
		var own, client atomic.Int32
		host, _, _ := net.SplitHostPort(tlsAddr)
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cfg := verified(&own)
			cfg.ServerName = host
			tc := tls.Client(nc, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				nc.Close()
				return nil, err
			}
			return tc, nil
		}
		c, err := NewClient(Options{Addr: tlsAddr, Dialer: dial, TLSConfig: verified(&client), MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if s, err := c.Ping(ctx); err != nil || s != "PONG" {
			t.Fatalf("Ping through a Dialer that returns a *tls.Conn = %q, %v", s, err)
		}
		if o, cl := own.Load(), client.Load(); o != 1 || cl != 0 {
			t.Fatalf("the Dialer made %d TLS handshakes and the client %d, want 1 and 0", o, cl)
		}
	})

	t.Run("plain port", func(t *testing.T) {
		dials.Store(0)
		c, err := NewClient(Options{Addr: plain.Addr, Dialer: tunnel, DialTimeout: 300 * time.Millisecond, MaxRetries: -1,
			TLSConfig: &tls.Config{RootCAs: p.roots, ServerName: "127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := c.Ping(ctx)
		var de *DialError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "does the server accept TLS") || OutcomeOf(err) != OutcomeNotSent {
			t.Fatalf("Ping with a TLSConfig, through a Dialer, to a plain port = %q, %v (outcome %v); "+
				"want a *DialError that asks whether the server speaks TLS, nothing sent in plain text", s, err, OutcomeOf(err))
		}
		if d := dials.Load(); d != 1 {
			t.Fatalf("%d dials through the Dialer, want 1", d)
		}
	})
}

// TestTLSCallbackPanics: a TLSConfig callback (VerifyConnection here) that
// panics, or ends its goroutine with runtime.Goexit as t.FailNow does,
// fails that dial with a *DialError that says so, as a Dialer's does. The
// handshake of the shared connection runs on a goroutine of the client's
// own, where the panic ended the program; that of a pooled connection, on
// the caller's, kept the connection's slot in the pool for good.
func TestTLSCallbackPanics(t *testing.T) {
	p := newTestPKI(t)
	_, tlsAddr := startTLSServer(t, p)
	ctx := ctxT(t)
	boom := errors.New("boom")
	var mode atomic.Value // what VerifyConnection does: "panic", "exit" or "" to pass
	mode.Store("")
	c, err := NewClient(Options{Addr: tlsAddr, PoolSize: 1, MaxRetries: -1, TLSConfig: &tls.Config{
		RootCAs: p.roots,
		VerifyConnection: func(tls.ConnectionState) error {
			switch mode.Load() {
			case "panic":
				panic(boom)
			case "exit":
				runtime.Goexit()
			}
			return nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []struct{ mode, says string }{{"panic", "TLS handshake panicked: boom"}, {"exit", "TLS handshake did not return"}} {
		mode.Store(m.mode)
		for _, tc := range []struct {
			name string
			f    func() error
		}{
			{"Get", func() error { _, err := c.Get(ctx, "k"); return err }},
			{"Watch", func() error {
				tx, err := c.Watch(ctx)
				if err == nil {
					tx.Close()
				}
				return err
			}},
		} {
			err := callAlone(tc.f)
			var de *DialError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), m.says) || OutcomeOf(err) != OutcomeNotSent || m.mode == "panic" && !errors.Is(err, boom) {
				t.Errorf("%s while VerifyConnection does %q = %v (outcome %v); want a *DialError that says %q, not sent", tc.name, m.mode, err, OutcomeOf(err), m.says)
			}
		}
	}
	mode.Store("")
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tx, err := c.Watch(wctx, "k")
	if err != nil {
		t.Fatalf("Watch once the handshake works: %v; want a session (the pool's one slot was kept by a failed dial)", err)
	}
	tx.Close()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set once the handshake works: %v", err)
	}
}
