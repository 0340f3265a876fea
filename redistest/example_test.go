package redistest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redpipe/redpipe/redistest"
)

// Outside a test, StartServer returns a server that the caller stops.
// This example runs a real redis-server.
func ExampleStartServer() {
	srv, err := redistest.StartServer("--maxmemory", "64mb")
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop()

	reply, err := srv.Do("PING")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply)
	// Output: PONG
}

// Commands that depend on connection state, such as AUTH, go in one
// Pipeline call. Error replies come back as ReplyError values.
func ExampleServer_Pipeline() {
	srv, err := redistest.StartServer("--requirepass", "secret")
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop()

	reply, _ := srv.Do("GET", "k")
	if e, ok := reply.(redistest.ReplyError); ok {
		fmt.Println(e.Prefix())
	}
	replies, err := srv.Pipeline(
		[]string{"AUTH", "secret"},
		[]string{"SET", "k", "v"},
		[]string{"GET", "k"},
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(replies...)
	// Output:
	// NOAUTH
	// OK OK v
}

// A cluster for a demo program; tests use StartCluster, which stops the
// nodes by itself.
func ExampleNewCluster() {
	cluster, err := redistest.NewCluster(1)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Stop()
	seeds := cluster.Addrs() // host:port of every node, masters first
	fmt.Println(len(seeds), "seed nodes:", len(cluster.Masters), "masters,", len(cluster.Replicas), "replicas")
	// Output: 6 seed nodes: 3 masters, 3 replicas
}

// Resharding and failing over a cluster while the code under test runs
// against it.
func ExampleCluster_MoveSlots() {
	cluster, err := redistest.NewCluster(1)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Stop()
	ctx := context.Background()

	// Move the first 100 slots from the first master to the second.
	from, to := cluster.Masters[0], cluster.Masters[1]
	if err := cluster.MoveSlots(ctx, from, to, redistest.SlotRange(0, 99)...); err != nil {
		log.Fatal(err)
	}

	// Leave slot 100 half-migrated, for ASK redirections, then finish.
	m, err := cluster.BeginMigration(ctx, from, to, 100)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := m.MoveKeys(ctx, 10); err != nil {
		log.Fatal(err)
	}
	if err := m.Finish(ctx); err != nil {
		log.Fatal(err)
	}

	// Crash the second master: its replica takes over.
	promoted, err := cluster.KillMaster(ctx, to)
	if err != nil {
		log.Fatal(err)
	}
	owner, err := cluster.SlotOwner(0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("slots 0-100 served by the promoted replica:", owner == promoted)
	// Output: slots 0-100 served by the promoted replica: true
}
