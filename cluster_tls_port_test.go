package redpipe

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

// Nodes without tls-cluster yes know no TLS port of one another: CLUSTER
// SHARDS, asked over TLS, lists each node's plain port alone, where a TLS
// handshake cannot succeed. The error of a call says so and which
// setting to change, rather than only asking whether the server takes
// TLS on a port the caller never gave.
func TestClusterOverTLSWithoutTLSPorts(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	srv, tlsAddr := startTLSServer(t, p, "--cluster-enabled", "yes")
	if err := srv.ServeAllSlots(clusterCtx(t)); err != nil {
		t.Fatal(err)
	}
	c, err := NewClusterClient(ClusterOptions{
		Addrs: []string{tlsAddr},
		Options: Options{TLSConfig: &tls.Config{RootCAs: p.roots}, DialTimeout: 200 * time.Millisecond,
			MaxRetries: -1},
		MaxRedirects: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Set(clusterCtx(t), "tls:k", "v")
	if err == nil || !strings.Contains(err.Error(), "set tls-cluster yes on every node") || !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("Set over TLS on a cluster that lists no TLS ports = %v; want an error that names %s and says to set tls-cluster yes", err, srv.Addr)
	}
}
