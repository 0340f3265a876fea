package main

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
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// tlsFiles are a certificate authority and a server certificate for
// 127.0.0.1 signed by it, written where redis-server can read them.
type tlsFiles struct {
	ca, cert, key string
	roots         *x509.CertPool
}

// newTLSFiles makes short-lived certificates for one test.
func newTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, kind string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redpipe demo test CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// The cluster bus dials other nodes with the same certificate.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	return tlsFiles{
		ca:    write("ca.pem", "CERTIFICATE", caDER),
		cert:  write("server.pem", "CERTIFICATE", der),
		key:   write("server.key", "PRIVATE KEY", keyDER),
		roots: roots,
	}
}

// serveAllSlots gives every slot to srv, a cluster node alone in its
// cluster, and waits until it serves them.
func serveAllSlots(t *testing.T, srv *redistest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.ServeAllSlots(ctx); err != nil {
		t.Fatal(err)
	}
}

// A node alone in its cluster lists no address of its own in CLUSTER
// SHARDS. The walkthrough reaches and names it at the seed's host, not at
// an empty one, which would dial this machine whatever the seed.
func TestClusterDemoOnSingleNodeCluster(t *testing.T) {
	srv := redistest.Start(t, "--cluster-enabled", "yes")
	serveAllSlots(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"demo", "-cluster", srv.URL()}, func(string) string { return "" }, &stdout, &stderr)
	got := stdout.String()
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s\nstdout:\n%s", code, stderr.String(), got)
	}
	lines := batchLine.FindAllStringSubmatch(got, -1)
	if len(lines) != 1 || lines[0][1] != srv.Addr {
		t.Errorf("want one batch line, for %s:\n%s", srv.Addr, got)
	}
	if strings.Contains(got, " :"+strconv.Itoa(srv.Port)) {
		t.Errorf("the output names the node without its host:\n%s", got)
	}
}

// A cluster whose nodes take TLS and plain connections lists both ports
// of each node; given a rediss:// seed, the walkthrough's own connection
// to each master goes to the TLS port, as the client's do, rather than
// starting a TLS handshake on the plain one.
func TestClusterDemoNodesOverTLS(t *testing.T) {
	files := newTLSFiles(t)
	srv, tlsAddr := startTLSServer(t, files, "--cluster-enabled", "yes", "--tls-cluster", "yes")
	serveAllSlots(t, srv)

	opt := redpipe.Options{
		Addr:        tlsAddr,
		TLSConfig:   &tls.Config{RootCAs: files.roots, ServerName: "127.0.0.1"},
		DialTimeout: time.Second,
	}
	c, err := redpipe.NewClusterClient(redpipe.ClusterOptions{Addrs: []string{tlsAddr}, Options: opt})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := &clusterDemo{c: c, w: io.Discard}
	defer d.closeNodes()
	if err := d.loadNodes(ctx, opt); err != nil {
		t.Fatalf("loadNodes over TLS: %v", err)
	}
	if len(d.nodes) != 1 || d.nodes[0].addr != tlsAddr {
		var got []string
		for _, n := range d.nodes {
			got = append(got, n.addr)
		}
		t.Fatalf("masters %q, want the TLS port alone, %s (the plain one is %s)", got, tlsAddr, strconv.Itoa(srv.Port))
	}
	if _, err := d.nodes[0].c.Ping(ctx); err != nil {
		t.Errorf("PING on the walkthrough's connection to the master: %v", err)
	}
}

// startTLSServer starts a redis-server that takes TLS, with the
// certificate of files, on a port of its own as well as plain connections
// on its Port, with extra arguments args; it returns the server and the
// address of its TLS port. The server is stopped when the test ends.
func startTLSServer(t *testing.T, files tlsFiles, args ...string) (*redistest.Server, string) {
	t.Helper()
	var lastErr error
	// The port is free when picked but bound only later, by the server,
	// so another process may take it first.
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, port, _ := net.SplitHostPort(addr)
		s, err := redistest.StartServer(slices.Concat(args, []string{"--tls-port", port,
			"--tls-cert-file", files.cert, "--tls-key-file", files.key,
			"--tls-ca-cert-file", files.ca, "--tls-auth-clients", "no"})...)
		if err == nil {
			t.Cleanup(func() { s.Stop() })
			return s, addr
		}
		lastErr = err
	}
	t.Fatalf("starting redis-server with TLS: %v", lastErr)
	return nil, ""
}
