package redistest_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// TestDoAfterStopIsRefused: once stopped, a server's port is free for any
// process to take, so Do must say the server was stopped rather than talk
// to whatever listens there now.
func TestDoAfterStopIsRefused(t *testing.T) {
	t.Parallel()
	s, err := redistest.StartServer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	// A stranger takes the port and answers every line with PONG.
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		t.Fatalf("the port of the stopped server cannot be taken: %v", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					c.Write([]byte("+PONG\r\n"))
				}
			}()
		}
	}()
	v, err := s.Do("PING")
	ln.Close()
	if err == nil || !strings.Contains(err.Error(), "stopped by Stop") {
		t.Fatalf("Do after Stop = %#v, %v; want an error saying the server was stopped", v, err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("Do after Restart = %#v, %v", v, err)
	}
}

// TestRestartAfterItsTestEnded: a server from Start used after its test
// is over, as by a goroutine the test left running, must not come back:
// no cleanup is left to stop it.
func TestRestartAfterItsTestEnded(t *testing.T) {
	t.Parallel()
	var s *redistest.Server
	t.Run("owner", func(t *testing.T) { s = redistest.Start(t) })
	pid := s.Pid()
	err := s.Restart()
	if err == nil {
		s.Stop()
		t.Fatal("Restart after the test that started the server ended started a process no cleanup stops")
	}
	if !strings.Contains(err.Error(), "test that started it ended") || s.Pid() != pid {
		t.Errorf("Restart: %v, pid %d (was %d); want a refusal naming the ended test", err, s.Pid(), pid)
	}
	if _, err := s.Do("PING"); err == nil || !strings.Contains(err.Error(), "test that started it ended") {
		t.Errorf("Do after the test ended: %v", err)
	}
}

// TestStoppedClusterStartsNoNode: AddMaster and Rejoin on a cluster that
// was stopped, or whose test has ended, refuse at once rather than start
// a process nobody stops and then wait for a cluster that is gone.
func TestStoppedClusterStartsNoNode(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := redistest.NewCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	killed := c.Masters[0]
	if _, err := c.KillMaster(ctx, killed); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	nodes := len(c.Servers())
	if s, err := c.AddMaster(short); err == nil || !strings.Contains(err.Error(), "cluster was stopped") {
		if s != nil {
			s.Stop()
		}
		t.Errorf("AddMaster after Stop: %v; want a refusal", err)
	}
	if n := len(c.Servers()); n != nodes {
		t.Errorf("AddMaster after Stop left %d nodes, was %d", n, nodes)
	}
	pid := killed.Pid()
	if err := c.Rejoin(short, killed); err == nil || !strings.Contains(err.Error(), "cluster was stopped") {
		t.Errorf("Rejoin after Stop: %v; want a refusal", err)
	}
	if killed.Pid() != pid {
		killed.Stop()
		t.Errorf("Rejoin after Stop restarted the killed master")
	}

	var owned *redistest.Cluster
	t.Run("owner", func(t *testing.T) { owned = redistest.StartCluster(t, 0) })
	// A context of its own: starting that cluster may take longer than
	// what is left of short, which would refuse AddMaster for its end.
	after, cancelAfter := context.WithTimeout(ctx, 5*time.Second)
	defer cancelAfter()
	if s, err := owned.AddMaster(after); err == nil || !strings.Contains(err.Error(), "test that started it ended") {
		if s != nil {
			s.Stop()
		}
		t.Errorf("AddMaster after the cluster's test ended: %v; want a refusal", err)
	}
}

// TestDoOnExitedServerSaysWhy: a call to a server whose process is gone
// names what ended it, a crash or the test's own Kill, instead of only the
// refused dial, which reads as a network fault.
func TestDoOnExitedServerSaysWhy(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	s.Do("DEBUG", "SEGFAULT") // the server crashes by itself
	err := pingUntilNotRunning(t, s, "a crash")
	if !strings.Contains(err.Error(), "exited by itself (signal: segmentation fault)") || !strings.Contains(err.Error(), "Restart") {
		t.Errorf("Do after a crash: %v; want it to say the server crashed", err)
	}
	if _, ok := errors.AsType[*net.OpError](err); !ok {
		t.Errorf("Do after a crash: %v; the network error is not reachable with errors.As", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do("PING"); err == nil || !strings.Contains(err.Error(), "Kill ended it") {
		t.Errorf("Do after Kill: %v; want it to say Kill ended the server", err)
	}
}

// TestDoAfterShutdownSaysHow: a server that ends itself cleanly, with
// SHUTDOWN, says that it exited with status 0, not with a nil error.
func TestDoAfterShutdownSaysHow(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	s.Do("SHUTDOWN", "NOSAVE")
	err := pingUntilNotRunning(t, s, "SHUTDOWN")
	if !strings.Contains(err.Error(), "exited by itself (exit status 0)") {
		t.Errorf("Do after SHUTDOWN: %v; want it to say the server exited with status 0", err)
	}
}

// pingUntilNotRunning pings s, whose process is ending after what, until
// the error says it is not running, for a bounded time: until the process
// is gone and reaped, a refused dial cannot be told from a network fault.
// It returns that error.
func pingUntilNotRunning(t *testing.T, s *redistest.Server, what string) error {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := s.Do("PING")
		if err != nil && strings.Contains(err.Error(), "not running") {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("Do after %s: %v; want it to say the server is not running", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoppedNodeEndsWait: a stopped node never answers again, so a change
// of the cluster refuses to begin while one is stopped, saying which, and
// a wait that finds one stopped meanwhile gives up at once rather than
// poll the stopped node until its timeout.
func TestStoppedNodeEndsWait(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 1)
	m := c.Masters[0]
	// The wait of Finish asks every node, the replicas too; the slots it
	// gives away are asked of the masters alone.
	mig, err := c.BeginMigration(opContext(t), m, c.Masters[1], 0)
	if err != nil {
		t.Fatal(err)
	}
	stopped := c.Replicas[2]
	if err := stopped.Stop(); err != nil {
		t.Fatal(err)
	}
	said := stopped.Addr + " was stopped by Stop"
	if err := mig.Finish(opContext(t)); err == nil || strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), said) {
		t.Errorf("Finish with a node stopped: %v; want it to give up at once, saying %q", err, said)
	}

	// Failover would have the replica take over from m before its wait
	// gave up, leaving Masters and Replicas behind the servers' roles.
	if _, err := c.Failover(opContext(t), m); err == nil || !strings.Contains(err.Error(), "Failover not started") || !strings.Contains(err.Error(), said) {
		t.Errorf("Failover with a node stopped: %v; want a refusal saying %q", err, said)
	}
	if err := c.MoveSlots(opContext(t), c.Masters[1], m, 0); err == nil || !strings.Contains(err.Error(), "not started") || !strings.Contains(err.Error(), said) {
		t.Errorf("MoveSlots with a node stopped: %v; want a refusal saying %q", err, said)
	}
	v, err := m.Do("INFO", "replication")
	if s, _ := v.(string); err != nil || !strings.Contains(s, "role:master") {
		t.Errorf("%s after the refused Failover: %v, %v; want role:master", m.Addr, v, err)
	}
	if owner, err := c.SlotOwner(0); err != nil || owner != c.Masters[1] {
		t.Errorf("slot 0 after the refused MoveSlots is served by %v (%v), want %s", owner, err, c.Masters[1].Addr)
	}
}

// TestTakenPortIsNamed: a port taken by another process is named in the
// error, and only a port the package picked is worth another pick. A
// cluster bus port taken while the node was down is the bus port, not the
// client port; a --tls-port of the caller's would be taken again on every
// try, so the error says it is the caller's to change.
func TestTakenPortIsNamed(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, "--cluster-enabled", "yes")
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	bus := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.BusPort))
	ln, err := net.Listen("tcp", bus)
	if err != nil {
		t.Fatalf("the bus port of the killed node cannot be taken: %v", err)
	}
	err = s.Restart()
	ln.Close()
	if err == nil || !strings.Contains(err.Error(), "could not listen on "+bus+": port already in use") {
		t.Errorf("Restart with the bus port %s taken: %v; want an error naming it", bus, err)
	}

	cert := selfSignedCert(t)
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	srv, err := redistest.StartServer("--tls-port", port, "--tls-cert-file", cert.cert, "--tls-key-file", cert.key, "--tls-ca-cert-file", cert.cert)
	if err == nil {
		srv.Stop()
		t.Fatalf("StartServer with --tls-port %s taken succeeded", port)
	}
	if want := "could not listen on port " + port + ", the port of --tls-port: another process holds it"; !strings.Contains(err.Error(), want) {
		t.Errorf("StartServer with --tls-port %s taken: %v; want %q", port, err, want)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 that is its own
// authority, and its key, as PEM files.
func selfSignedCert(t *testing.T) (files struct{ cert, key string }) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, kind string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	files.cert = write("cert.pem", "CERTIFICATE", der)
	files.key = write("key.pem", "PRIVATE KEY", keyDER)
	return files
}
