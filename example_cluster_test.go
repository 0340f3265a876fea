package redpipe_test

import (
	"context"
	"fmt"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// On a cluster a plain pipeline is split by node and sent to every node
// at once; the replies come back in the order of the commands.
func ExampleNewClusterClient() {
	ctx := context.Background()
	cl := must(redistest.NewCluster(0)) // three masters; in real code, your own seeds
	defer cl.Stop()
	c := must(redpipe.NewClusterClient(redpipe.ClusterOptions{Addrs: cl.Addrs()}))
	defer c.Close()

	p := c.Pipeline(redpipe.NoTransaction)
	for _, k := range []string{"apple", "banana", "cherry"} { // three slots
		p.Set(k, len(k)).Incr(k)
	}
	replies := must(p.Exec(ctx))
	fmt.Println(replies)

	// A transaction must touch one slot: a {hash tag} puts keys together.
	_, err := c.Pipeline().Set("apple", 1).Set("banana", 2).Exec(ctx)
	fmt.Println(err != nil)
	replies = must(c.Pipeline().Set("{fruit}:apple", 1).Incr("{fruit}:apple").Exec(ctx))
	fmt.Println(replies)
	// Output:
	// [OK 6 OK 7 OK 7]
	// true
	// [OK 2]
}
