package redpipe_test

import (
	"context"
	"fmt"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// With ReadFromReplicas, read-only commands go to replicas and the rest to
// masters. A replica may lag behind its master, so a pipeline that writes
// to a slot keeps that slot's reads on the master, after the write.
func ExampleClusterOptions_readFromReplicas() {
	ctx := context.Background()
	cl := must(redistest.NewCluster(1)) // three masters, one replica each
	defer cl.Stop()
	c := must(redpipe.NewClusterClient(redpipe.ClusterOptions{
		Addrs:            cl.Addrs(),
		ReadFromReplicas: true,
		// Optional; without it a replica is picked at random. An index out
		// of range, -1 say, reads from the master.
		SelectReplica: func(slot int, replicas []string) int { return 0 },
	}))
	defer c.Close()

	replies := must(c.Pipeline(redpipe.NoTransaction).
		Set("apple", 5).Get("apple"). // apple's slot is written: both on its master
		Get("banana").                // a replica of banana's master, if it is ready
		Exec(ctx))
	fmt.Println(replies)

	// A transaction always runs on the master.
	replies = must(c.Pipeline().Incr("apple").Get("apple").Exec(ctx))
	fmt.Println(replies)
	// Output:
	// [OK 5 nil]
	// [6 6]
}
