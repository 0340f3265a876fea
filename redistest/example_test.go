package redistest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"time"

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

// A Proxy between a client and a server does to the connection what a bad
// network would. Here it holds the server's replies back, as a link that
// went silent, then lets them through. A test points the client under
// test at px.Addr instead of the raw connection used here.
func ExampleProxy() {
	srv, err := redistest.StartServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop()
	px, err := redistest.NewProxy(srv.Addr)
	if err != nil {
		log.Fatal(err)
	}
	defer px.Close()

	conn, err := net.Dial("tcp", px.Addr)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)

	px.Stall(redistest.ServerToClient, true)
	fmt.Fprint(conn, "PING\r\n")
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = r.ReadString('\n')
	fmt.Println("reply while stalled:", errors.Is(err, os.ErrDeadlineExceeded))

	px.Stall(redistest.ServerToClient, false)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, err := r.ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("reply after: %q\n", reply)
	// Output:
	// reply while stalled: true
	// reply after: "+PONG\r\n"
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
