package redpipe_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strconv"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/redpipe/redpipe/redistest"
)

// Every example starts a throwaway redis-server so that it runs as it is.
// In real code, connect once to your own server's URL and share the Client.

// must keeps the examples' setup to one line per step. It panics rather
// than exiting so that the deferred Stop still shuts the server down.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Commands on a Pipeline are buffered and sent together by Exec, which
// returns one reply per command, in order.
func ExamplePipeline() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	if err := c.Set(ctx, "bing", "baz"); err != nil {
		log.Fatal(err)
	}
	p := c.Pipeline()
	p.Set("foo", "bar") // buffered, not sent yet
	p.Get("bing")
	replies, err := p.Exec(ctx) // one write, one reply per command
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(replies)
	// Output: [OK baz]
}

// Pipeline methods return the pipeline, so calls chain.
func ExamplePipeline_chained() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	// SADD replies with the number of members added and INCR with the new
	// value; on a fresh server both are 1.
	replies, err := c.Pipeline().Set("foo", "bar").SAdd("faz", "baz").Incr("auto_number").Exec(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(replies)
	// Output: [OK 1 1]
}

// A pipeline is a MULTI/EXEC transaction by default, so the KEYS at its end
// sees exactly the keys written before it.
func ExamplePipeline_keys() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	replies, err := c.Pipeline().FlushDB().Set("foo", "bar").Set("bar", "foo").Keys("*").Exec(ctx)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := replies[3].Strings()
	if err != nil {
		log.Fatal(err)
	}
	slices.Sort(keys) // KEYS returns keys in no defined order
	fmt.Println(replies[:3], keys)
	// Output: [OK OK OK] [bar foo]
}

// A client-side INCR with optimistic locking: WATCH the key, read it, and
// write the next value in MULTI/EXEC. If another client changed the key in
// between, Exec fails with ErrWatch and the round starts over.
func ExampleTx() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	const key = "OUR-SEQUENCE-KEY"
	if err := c.Set(ctx, key, 41); err != nil {
		log.Fatal(err)
	}

	// One round is a function so that the deferred Close, which unwatches
	// and returns the connection to the pool, runs at the end of each round.
	incr := func() ([]redpipe.Value, error) {
		tx, err := c.Watch(ctx, key)
		if err != nil {
			return nil, err
		}
		defer tx.Close()
		cur, err := tx.Get(ctx, key) // runs at once: the Tx is not buffering yet
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(cur)
		if err != nil {
			return nil, err
		}
		return tx.Multi().Set(key, n+1).Exec(ctx)
	}
	for {
		replies, err := incr()
		if errors.Is(err, redpipe.ErrWatch) {
			continue // the key changed since WATCH: read it again
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(replies)
		break
	}
	fmt.Println(must(c.Get(ctx, key)))
	// Output:
	// [OK]
	// 42
}

// Reset leaves one session reusable for the next round of the loop, the
// way redis-py code calls pipe.reset() in a finally and watch() again.
func ExampleTx_Reset() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	const key = "OUR-SEQUENCE-KEY"
	if err := c.Set(ctx, key, 41); err != nil {
		log.Fatal(err)
	}
	tx := must(c.Watch(ctx)) // a session with nothing watched yet
	defer tx.Close()
	for {
		if err := tx.Watch(ctx, key); err != nil {
			log.Fatal(err)
		}
		n := must(strconv.Atoi(must(tx.Get(ctx, key))))
		p := tx.Multi()
		// Commands go on the Multi pipeline; tx.Set here would be refused.
		_, err := p.Set(key, n+1).Exec(ctx)
		tx.Reset() // UNWATCH if still armed; Watch may be called again
		if errors.Is(err, redpipe.ErrWatch) {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		break
	}
	fmt.Println(must(c.Get(ctx, key)), tx.Watching())
	// Output:
	// 42 false
}

// Transaction runs the WATCH loop of the Tx example for you: it calls the
// function, executes what it queued after Multi, and retries on ErrWatch.
func ExampleClient_Transaction() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	const key = "OUR-SEQUENCE-KEY"
	if err := c.Set(ctx, key, 41); err != nil {
		log.Fatal(err)
	}
	clientSideIncr := func(tx *redpipe.Tx) error {
		cur, err := tx.Get(ctx, key)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(cur)
		if err != nil {
			return err
		}
		tx.Multi().Set(key, n+1) // Transaction sends it; no Exec here
		return nil
	}
	replies, err := c.Transaction(ctx, clientSideIncr, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(replies)
	// Output: [OK]
}

// TransactionValue returns what the function computed, once the
// transaction it queued has been applied.
func ExampleTransactionValue() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	const key = "OUR-SEQUENCE-KEY"
	if err := c.Set(ctx, key, 41); err != nil {
		log.Fatal(err)
	}
	next, err := redpipe.TransactionValue(ctx, c, func(tx *redpipe.Tx) (int, error) {
		cur, err := tx.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(cur)
		if err != nil {
			return 0, err
		}
		tx.Multi().Set(key, n+1)
		return n + 1, nil
	}, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(next)
	// Output: 42
}

// Reading many fields of a hash one by one costs a round trip each; a
// pipeline costs one. A field the hash lacks gives a nil reply in its place.
func ExamplePipeline_hget() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	_, err := c.HSet(ctx, "somekey",
		"01102014", 3, "01112014", 5, "01122014", 8, "01132014", 13,
		"01142014", 21, "01152014", 34) // nothing for 01162014
	if err != nil {
		log.Fatal(err)
	}

	keys := []string{"01102014", "01112014", "01122014", "01132014", "01142014", "01152014", "01162014"}
	p := c.Pipeline()
	for _, k := range keys {
		p.HGet("somekey", k)
	}
	values, err := p.Exec(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(values)
	// Output: [3 5 8 13 21 34 nil]
}

// A thousand SET and GET pairs, first one round trip per command, then all
// in one pipeline. Both do the same work; the pipeline only saves waiting.
func ExamplePipeline_setGet1000() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	for i := range 1000 {
		if err := c.Set(ctx, fmt.Sprint("key_no_pipe_", i), fmt.Sprint("value_", i)); err != nil {
			log.Fatal(err)
		}
		if _, err := c.Get(ctx, fmt.Sprint("key_no_pipe_", i)); err != nil {
			log.Fatal(err)
		}
	}

	p := c.Pipeline()
	for i := range 1000 {
		p.Set(fmt.Sprint("key_pipe_", i), fmt.Sprint("value_", i))
		p.Get(fmt.Sprint("key_pipe_", i))
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replies:", len(replies))
	fmt.Println("key_pipe_0:", must(c.Get(ctx, "key_pipe_0")))
	fmt.Println("key_pipe_999:", must(c.Get(ctx, "key_pipe_999")))
	// Output:
	// replies: 2000
	// key_pipe_0: value_0
	// key_pipe_999: value_999
}

// A transfer between two accounts: WATCH the source, check its balance,
// then move the money in MULTI/EXEC. When the balance is too low, nothing
// is queued and the watch is dropped with UNWATCH.
func ExampleTx_transfer() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	transfer := func(amount int64) error {
		tx, err := c.Watch(ctx, "account_a")
		if err != nil {
			return err
		}
		defer tx.Close()
		balance, err := tx.Get(ctx, "account_a")
		if err != nil {
			return err
		}
		if n, err := strconv.ParseInt(balance, 10, 64); err != nil {
			return err
		} else if n < amount {
			fmt.Println("Insufficient funds. Transaction aborted.")
			return tx.Unwatch(ctx)
		}
		fmt.Println("Starting transaction...")
		// An ErrWatch here means account_a changed since WATCH and nothing
		// was applied; Client.Transaction would retry it.
		results, err := tx.Multi().DecrBy("account_a", amount).IncrBy("account_b", amount).Exec(ctx)
		if err != nil {
			return err
		}
		fmt.Println("Transaction executed. Results:", results)
		return nil
	}
	balances := func(label string) {
		v, err := c.MGet(ctx, "account_a", "account_b")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s - A: %v, B: %v\n", label, v[0], v[1])
	}

	if err := c.Set(ctx, "account_a", 100); err != nil {
		log.Fatal(err)
	}
	if err := c.Set(ctx, "account_b", 50); err != nil {
		log.Fatal(err)
	}
	balances("Initial Balance")
	for _, amount := range []int64{10, 1000} {
		if err := transfer(amount); err != nil {
			log.Fatal(err)
		}
		balances("Final Balance")
	}
	// Output:
	// Initial Balance - A: 100, B: 50
	// Starting transaction...
	// Transaction executed. Results: [90 60]
	// Final Balance - A: 90, B: 60
	// Insufficient funds. Transaction aborted.
	// Final Balance - A: 90, B: 60
}

// NoTransaction makes a plain batch: the commands go out in one write but
// are not wrapped in MULTI/EXEC, so other clients' commands may run between
// them. Use it when the batch is for speed, not atomicity.
func ExampleNoTransaction() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	_, err := c.Pipeline(redpipe.NoTransaction).Set("key1", "value1").Set("key2", "value2").Exec(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(must(c.Get(ctx, "key1")))
	fmt.Println(must(c.Get(ctx, "key2")))
	// Output:
	// value1
	// value2
}

// A Script runs by EVALSHA, falling back to EVAL the first time a server
// sees it. In a pipeline it is loaded in the same write, so it never fails
// with NOSCRIPT there.
func ExampleScript() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	incrBy := redpipe.NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	v, err := incrBy.Run(ctx, c, []string{"counter"}, 5)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v)

	replies, err := c.Pipeline().RunScript(incrBy, []string{"counter"}, 10).Get("counter").Exec(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(replies)
	// Output:
	// 5
	// [15 15]
}

// A Stream is for a batch too large to hold: a bulk load, say. It sends
// its commands in chunks while they are being queued and hands each reply
// to a function instead of keeping it, so memory stays small however many
// commands there are.
func ExampleClient_Stream() {
	ctx := context.Background()
	srv := must(redistest.StartServer()) // in real code, Connect to your own URL
	defer srv.Stop()
	c := must(redpipe.Connect(ctx, srv.URL()))
	defer c.Close()

	added := 0
	s := c.Stream(ctx, func(i int, v redpipe.Value) error {
		n, err := v.Int64() // SADD's reply: how many members were new
		added += int(n)
		return err
	})
	for i := range 100_000 {
		s.SAdd("seen", strconv.Itoa(i%50_000)) // half of them repeat
	}
	sent, err := s.Close(ctx) // sends the rest and waits for every reply
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent:", sent)
	fmt.Println("new members:", added)
	fmt.Println("set size:", must(c.SCard(ctx, "seen")))
	// Output:
	// sent: 100000
	// new members: 50000
	// set size: 50000
}

// A read whose connection fails after it was sent is sent again on a new
// connection, as MaxRetries allows. A write is not, unless its context is
// marked Idempotent: its error says the outcome is unknown, and here the
// write had in fact run. A proxy stands in for a network that drops the
// replies of the connection in use.
func ExampleOutcomeOf() {
	ctx := context.Background()
	srv := must(redistest.StartServer())
	defer srv.Stop()
	px := must(redistest.NewProxy(srv.Addr))
	defer px.Close()
	c := must(redpipe.NewClient(redpipe.Options{Addr: px.Addr, ReplyTimeout: 200 * time.Millisecond}))
	defer c.Close()
	if err := c.Set(ctx, "greeting", "hello"); err != nil {
		log.Fatal(err)
	}
	// No reply comes back on the connection in use; new ones work.
	loseReplies := func() { px.Hold(redistest.ServerToClient) }

	loseReplies()
	v, err := c.Get(ctx, "greeting") // a read: sent again on a new connection
	fmt.Println(v, err)

	loseReplies()
	_, err = c.Incr(ctx, "visits") // a write: not sent again
	fmt.Println(redpipe.OutcomeOf(err), redpipe.SafeToRetry(err))
	fmt.Println(must(c.Get(ctx, "visits"))) // it had run all the same

	loseReplies()
	err = c.Set(redpipe.Idempotent(ctx), "greeting", "hi") // safe to run twice
	fmt.Println(err, must(c.Get(ctx, "greeting")))
	// Output:
	// hello <nil>
	// unknown false
	// 1
	// <nil> hi
}
