// Package redistest starts real redis-server processes for tests, benchmarks
// and demos.
//
// Tests of a Redis client are only convincing against a real server: mocks
// agree with whatever the client believes the protocol to be. This package
// makes a real server as cheap to get as a temporary directory:
//
//	func TestSomething(t *testing.T) {
//		srv := redistest.Start(t) // stopped by t.Cleanup
//		// point the code under test at srv.Addr or srv.URL()
//		...
//	}
//
// Every server listens on 127.0.0.1 on a port picked free at start, has its
// own temporary working directory, and persists nothing (no RDB snapshots,
// no AOF), so tests can run in parallel without sharing state. Extra
// arguments are handed to redis-server as they are, which is how a test asks
// for a password, ACL rules or renamed commands:
//
//	srv := redistest.Start(t, "--requirepass", "secret")
//
// Servers are always real processes, of Redis 7.0 or newer. When
// redis-server is not installed, or is older, Start fails the test with a
// message saying how to install one rather than skipping it: a skipped
// client test looks like a passing one.
//
// Fault tests can crash a server with Kill and bring it back on the same
// port with Restart, and put a Proxy between client and server that stalls
// either direction, adds latency, cuts connections with a reset or a FIN,
// passes only the first N bytes, or drops every connection at once.
//
// A node started with --cluster-enabled yes is a cluster of its own;
// Server.ServeAllSlots gives it every slot and waits until it serves them,
// for tests that need a cluster of one node.
//
// StartCluster builds a three-master Redis Cluster, optionally with
// replicas, without needing redis-cli. Tests then put it through what
// production does, while their clients run:
//
//   - MoveSlots reshards: slots and their keys move from one master to
//     another with CLUSTER SETSLOT IMPORTING and MIGRATING, MIGRATE ...
//     KEYS, and CLUSTER SETSLOT NODE;
//   - BeginMigration, Migration.MoveKeys and Migration.Finish do the same
//     in steps, leaving slots half-migrated in between, where clients get
//     ASK redirections;
//   - Failover promotes a replica with CLUSTER FAILOVER, KillMaster kills a
//     master and waits for the election of a replica, and Rejoin brings
//     the killed master back as a replica;
//   - AddMaster adds an empty master, and RemoveMaster takes one that
//     serves no slot out of the cluster, stopping it.
//
// Each returns once every node agrees on the new state, or fails with an
// error saying what did not happen in time.
//
// Server.Do and Server.Pipeline speak just enough RESP to prepare a server
// (ACL SETUSER, CONFIG SET, seeding keys) and to check what a client under
// test did. The package deliberately does not import the client it helps to
// test, so that client's own tests can import this package.
//
// Processes are stopped by t.Cleanup, including when a start fails halfway,
// so Start, StartCluster and StartProxy must be called while the test
// runs: called after it ended, from a goroutine it left behind, they start
// nothing and panic.
// On Linux each child is also tied to the test binary with a parent-death
// signal, so killing a hung test binary does not leave servers behind.
package redistest
