package redpipe_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strconv"
	"sync"

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

// On a cluster a transaction runs on the master of its keys' one slot:
// keys that change together share a {hash tag}. One whose keys are in
// several slots is refused before anything is sent.
func ExampleClient_Transaction_cluster() {
	ctx := context.Background()
	cl := must(redistest.NewCluster(0)) // three masters; in real code, your own seeds
	defer cl.Stop()
	c := must(redpipe.NewClusterClient(redpipe.ClusterOptions{Addrs: cl.Addrs()}))
	defer c.Close()

	from, to := "{alice}:checking", "{alice}:savings" // one slot: only "alice" is hashed
	if err := c.Set(ctx, from, 100); err != nil {
		log.Fatal(err)
	}
	move := func(from, to string, amount int) func(*redpipe.Tx) error {
		return func(tx *redpipe.Tx) error {
			balance, err := tx.Get(ctx, from)
			if err != nil {
				return err
			}
			if n, _ := strconv.Atoi(balance); n < amount {
				return fmt.Errorf("%s holds %d, less than %d", from, n, amount)
			}
			tx.Multi().DecrBy(from, int64(amount)).IncrBy(to, int64(amount))
			return nil
		}
	}
	replies, err := c.Transaction(ctx, move(from, to, 30), from, to)
	fmt.Println(replies, err)

	_, err = c.Transaction(ctx, move(from, "bob:savings", 30), from, "bob:savings")
	var cross *redpipe.CrossSlotError
	fmt.Println(errors.As(err, &cross), errors.Is(err, redpipe.ErrNotApplied), cross.Keys)
	// Output:
	// [70 30] <nil>
	// true true [{alice}:checking bob:savings]
}

// On a cluster a Stream loads every master at once, each over a
// connection of its own; each still gets the replies in the order of the
// commands, and the commands of one key run in their order.
func ExampleClient_Stream_cluster() {
	ctx := context.Background()
	cl := must(redistest.NewCluster(0)) // three masters; in real code, your own seeds
	defer cl.Stop()
	c := must(redpipe.NewClusterClient(redpipe.ClusterOptions{Addrs: cl.Addrs()}))
	defer c.Close()

	next, inOrder := 0, true
	s := c.Stream(ctx, func(i int, v redpipe.Value) error {
		inOrder = inOrder && i == next
		next++
		return v.Err()
	})
	for i := range 100_000 {
		s.Incr("page:" + strconv.Itoa(i%1000)) // 1000 keys, over every master
	}
	sent, err := s.Close(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent:", sent, "in order:", inOrder)
	fmt.Println(must(c.Get(ctx, "page:7")), must(c.DBSize(ctx)))
	// Output:
	// sent: 100000 in order: true
	// 100 1000
}

// ForEachMaster calls a function for every master of a cluster at once,
// each with a Client of that master alone. Here each walks its master's
// keys with SCAN, which a cluster Client refuses: a cursor belongs to one
// server.
func ExampleClient_ForEachMaster() {
	ctx := context.Background()
	cl := must(redistest.NewCluster(0)) // three masters; in real code, your own seeds
	defer cl.Stop()
	c := must(redpipe.NewClusterClient(redpipe.ClusterOptions{Addrs: cl.Addrs()}))
	defer c.Close()

	p := c.Pipeline(redpipe.NoTransaction)
	for i := range 100 {
		p.Set("user:"+strconv.Itoa(i), i) // over every master
	}
	must(p.Exec(ctx))

	var mu sync.Mutex // the calls run at the same time
	var keys []string
	masters := 0
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *redpipe.Client) error {
		var found []string
		cursor := int64(0)
		for {
			v, err := node.Scan(ctx, cursor, "MATCH", "user:*", "COUNT", 100)
			if err != nil {
				return err
			}
			reply, err := v.Slice() // the next cursor and a page of keys
			if err != nil {
				return err
			}
			page, err := reply[1].Strings()
			if err != nil {
				return err
			}
			found = append(found, page...)
			if cursor, err = reply[0].Int64(); err != nil {
				return err
			}
			if cursor == 0 {
				break
			}
		}
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, found...)
		masters++
		return nil
	})
	if err != nil {
		log.Fatal(err) // each master's failure, prefixed with its address
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // SCAN may return a key more than once
	fmt.Println(masters, "masters,", len(keys), "keys, the first", keys[0])
	// Output: 3 masters, 100 keys, the first user:0
}
