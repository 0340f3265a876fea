package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/schollz/progressbar/v3"
)

// prefix namespaces every key the demo writes, so that it can run against
// a server that holds other data and clean up after itself.
const prefix = "redpipe:demo:"

func k(name string) string { return prefix + name }

// sections are the demo's headings, one per scenario, in the order they
// run. Tests check for them, so the list is the single place they live.
var sections = []string{
	"Pipeline: SET, then SET and GET in one round trip",
	"Chained calls: SET, SADD, INCR",
	"FLUSHDB, SET, SET and KEYS in one transaction",
	"WATCH loop: a client-side INCR",
	"The same with Client.Transaction",
	"HGET of many hash fields in one pipeline",
	"1000 SET+GET, without and with a pipeline",
	"Account transfer with WATCH and MULTI",
	"Non-transactional pipeline",
	"PING, then SET, SET, GET in one chained pipeline",
	"INCR 100,000 times, one by one and in one pipeline",
}

// demoConfig says where the demo runs and where it writes.
type demoConfig struct {
	URL         string    // the server to use; empty starts a throwaway one
	Incrs       int       // INCRs in the last section (100,000 from the command line)
	Out         io.Writer // the walkthrough
	Progress    io.Writer // the progress bar of the slow loop
	ProgressTTY bool      // Progress is a terminal that can redraw a line
}

// runDemo runs the demo against cfg.URL, or against a redis-server it
// starts and always stops, even when the demo fails or is interrupted.
func runDemo(ctx context.Context, cfg demoConfig) error {
	fmt.Fprintln(cfg.Out, "redpipe demo: pipelines and transactions against a real Redis server")
	return withServer(ctx, cfg.URL, cfg.Out, serverNotes{
		throwaway: "REDIS_URL is not set: started a throwaway redis-server at %s, stopped at the end.\n",
		user:      "Using REDIS_URL=%s. Only keys under " + prefix + " are touched; the database is never flushed.\n",
		stopped:   "Stopped the throwaway redis-server.\n",
	}, func(c *redpipe.Client, disposable bool) (err error) {
		d := &demo{c: c, w: cfg.Out, cfg: cfg, disposable: disposable}
		if !disposable {
			// Leftovers of an interrupted run would change replies such as
			// SADD's, so start from a clean namespace, and leave one behind.
			if err := d.cleanup(ctx, "Deleted %d demo keys left by an earlier run.\n"); err != nil {
				return err
			}
			defer func() {
				// The run's context may be the reason we are here; cleaning up
				// still deserves a few seconds.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if cerr := d.cleanup(cctx, "Deleted the %d demo keys.\n"); cerr != nil && err == nil {
					err = cerr
				}
			}()
		}
		return d.run(ctx)
	})
}

type demo struct {
	c          *redpipe.Client
	w          io.Writer
	cfg        demoConfig
	disposable bool // the server is ours to flush
}

func (d *demo) run(ctx context.Context) error {
	steps := []func(context.Context) error{
		d.setGet,
		d.chained,
		d.flushKeys,
		d.watchLoop,
		d.transactionHelper,
		d.hget,
		d.setGet1000,
		d.transfer,
		d.noTransaction,
		d.pingChained,
		d.incrComparison,
	}
	for i, step := range steps {
		fmt.Fprintf(d.w, "\n== %d. %s ==\n", i+1, sections[i])
		if err := step(ctx); err != nil {
			return fmt.Errorf("%s: %w", sections[i], err)
		}
	}
	fmt.Fprintln(d.w)
	return nil
}

// say prints one command run on its own, with its reply.
func (d *demo) say(cmd string, reply any) {
	fmt.Fprintf(d.w, "  %s  ->  %v\n", cmd, reply)
}

// batch prints the commands of a pipeline, each with its reply.
func (d *demo) batch(title string, cmds []string, replies []string) {
	printBatch(d.w, title, cmds, replies)
}

func printBatch(w io.Writer, title string, cmds []string, replies []string) {
	fmt.Fprintf(w, "  %s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, c := range cmds {
		fmt.Fprintf(tw, "    %d) %s\t->  %s\n", i+1, c, replies[i])
	}
	tw.Flush()
}

// line renders a command as redis-cli takes it, quoting the arguments that
// need it.
func line(args ...any) string {
	words := make([]string, len(args))
	for i, a := range args {
		s := fmt.Sprint(a)
		if s == "" || strings.ContainsAny(s, " \t\"'\\") {
			s = strconv.Quote(s)
		}
		words[i] = s
	}
	return strings.Join(words, " ")
}

// texts renders replies the way Value.String shows them.
func texts(replies []redpipe.Value) []string {
	out := make([]string, len(replies))
	for i, r := range replies {
		out[i] = r.String()
	}
	return out
}

// demoKeys lists the keys under the demo's prefix with SCAN, which unlike
// KEYS does not block a busy server.
func (d *demo) demoKeys(ctx context.Context) ([]string, error) {
	var keys []string
	var cursor int64
	for {
		v, err := d.c.Scan(ctx, cursor, "MATCH", prefix+"*", "COUNT", 1000)
		if err != nil {
			return nil, err
		}
		parts, err := v.Slice()
		if err != nil || len(parts) != 2 {
			return nil, fmt.Errorf("unexpected SCAN reply %v", v)
		}
		if cursor, err = parts[0].Int64(); err != nil {
			return nil, fmt.Errorf("SCAN cursor: %w", err)
		}
		batch, err := parts[1].Strings()
		if err != nil {
			return nil, fmt.Errorf("SCAN keys: %w", err)
		}
		keys = append(keys, batch...)
		if cursor == 0 {
			// SCAN may return a key more than once.
			slices.Sort(keys)
			return slices.Compact(keys), nil
		}
	}
}

func (d *demo) cleanup(ctx context.Context, report string) error {
	keys, err := d.demoKeys(ctx)
	if err != nil || len(keys) == 0 {
		return err
	}
	if _, err := d.c.Del(ctx, keys...); err != nil {
		return err
	}
	fmt.Fprintf(d.w, report, len(keys))
	return nil
}

// Seed: redis-py's pipeline intro. Commands queue on the pipeline and go
// out together when Exec runs.
func (d *demo) setGet(ctx context.Context) error {
	if err := d.c.Set(ctx, k("bing"), "baz"); err != nil {
		return err
	}
	d.say(line("SET", k("bing"), "baz"), "OK")

	p := d.c.Pipeline()
	p.Set(k("foo"), "bar")
	p.Get(k("bing"))
	replies, err := p.Exec(ctx)
	if err != nil {
		return err
	}
	d.batch("pipeline, sent as MULTI ... EXEC in one write",
		[]string{line("SET", k("foo"), "bar"), line("GET", k("bing"))}, texts(replies))
	fmt.Fprintln(d.w, "  replies:", replies)
	return nil
}

func (d *demo) chained(ctx context.Context) error {
	replies, err := d.c.Pipeline().Set(k("foo"), "bar").SAdd(k("faz"), "baz").Incr(k("auto_number")).Exec(ctx)
	if err != nil {
		return err
	}
	d.batch("c.Pipeline().Set(...).SAdd(...).Incr(...).Exec(ctx)",
		[]string{line("SET", k("foo"), "bar"), line("SADD", k("faz"), "baz"), line("INCR", k("auto_number"))},
		texts(replies))
	fmt.Fprintln(d.w, "  replies:", replies)
	fmt.Fprintln(d.w, "  (redis-py's docs show 6 for INCR: their counter had been incremented before.)")
	return nil
}

// Seed: the asyncio pipeline example, FLUSHDB first. FLUSHDB only runs on
// the throwaway server; on someone else's it would wipe their data, so the
// demo deletes its own keys instead.
func (d *demo) flushKeys(ctx context.Context) error {
	p := d.c.Pipeline()
	var cmds []string
	if d.disposable {
		p.FlushDB()
		cmds = append(cmds, "FLUSHDB")
	} else {
		fmt.Fprintln(d.w, "  This is not the throwaway server: no FLUSHDB, DEL of the demo keys instead.")
		keys, err := d.demoKeys(ctx)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			p.Del(keys...)
			cmds = append(cmds, fmt.Sprintf("DEL <the %d demo keys>", len(keys)))
		}
	}
	p.Set(k("foo"), "bar").Set(k("bar"), "foo").Keys(prefix + "*")
	cmds = append(cmds, line("SET", k("foo"), "bar"), line("SET", k("bar"), "foo"), line("KEYS", prefix+"*"))
	replies, err := p.Exec(ctx)
	if err != nil {
		return err
	}
	shown := texts(replies)
	keys, err := replies[len(replies)-1].Strings()
	if err != nil {
		return err
	}
	slices.Sort(keys) // KEYS has no defined order
	shown[len(shown)-1] = fmt.Sprint(keys)
	d.batch("transaction", cmds, shown)
	return nil
}

const seqKey = "OUR-SEQUENCE-KEY"

// watchRounds bounds the WATCH loop. It loses its first round on purpose;
// a key that changes in every round after that is another client's
// doing, as a second demo's on the same server, and would keep the loop
// going for as long as that client runs.
const watchRounds = 10

// Seed: the client-side INCR with WATCH. The first round is made to lose a
// race on purpose, so that the retry path is seen at work: another client
// changes the key between the GET and the EXEC.
func (d *demo) watchLoop(ctx context.Context) error {
	key := k(seqKey)
	if err := d.c.Set(ctx, key, 0); err != nil {
		return err
	}
	d.say(line("SET", key, 0), "OK")

	round := func(n int) ([]redpipe.Value, error) {
		tx, err := d.c.Watch(ctx, key)
		if err != nil {
			return nil, err
		}
		defer tx.Close() // UNWATCH if still armed, and the connection goes back
		cur, err := tx.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(d.w, "  round %d: WATCH %s; GET  ->  %s\n", n, key, cur)
		if n == 1 {
			if err := d.interfere(ctx, key); err != nil {
				return nil, err
			}
		}
		v, err := strconv.Atoi(cur)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(d.w, "  round %d: MULTI; SET %s %d; EXEC\n", n, key, v+1)
		return tx.Multi().Set(key, v+1).Exec(ctx)
	}
	for n := 1; ; n++ {
		replies, err := round(n)
		if errors.Is(err, redpipe.ErrWatch) {
			if n == watchRounds {
				return fmt.Errorf("%s changed during each of %d rounds: another client writes it, such as a second redpipe demo on this server: %w", key, n, err)
			}
			fmt.Fprintf(d.w, "  round %d: EXEC  ->  nil: the watched key changed, nothing applied; retrying\n", n)
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(d.w, "  round %d: EXEC  ->  %v\n", n, replies)
		break
	}
	v, err := d.c.Get(ctx, key)
	if err != nil {
		return err
	}
	d.say(line("GET", key), v)
	return nil
}

// interfere plays the other client of a race: a write on the shared
// connection, not the one holding the WATCH.
func (d *demo) interfere(ctx context.Context, key string) error {
	n, err := d.c.Incr(ctx, key)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "  meanwhile another client: INCR %s  ->  %d\n", key, n)
	return nil
}

// Seed: r.transaction(client_side_incr, key). The helper owns the WATCH
// loop; the function only reads and queues.
func (d *demo) transactionHelper(ctx context.Context) error {
	key := k(seqKey)
	attempt := 0
	clientSideIncr := func(tx *redpipe.Tx) error {
		attempt++
		cur, err := tx.Get(ctx, key)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.w, "  attempt %d: GET %s  ->  %s\n", attempt, key, cur)
		if attempt == 1 {
			if err := d.interfere(ctx, key); err != nil {
				return err
			}
		}
		v, err := strconv.Atoi(cur)
		if err != nil {
			return err
		}
		tx.Multi().Set(key, v+1)
		return nil
	}
	opts := redpipe.TxOptions{OnRetry: func(n int, err error) {
		fmt.Fprintf(d.w, "  attempt %d: %v; retrying\n", n, err)
	}}
	replies, err := d.c.Transaction(redpipe.WithTxOptions(ctx, opts), clientSideIncr, key)
	if err != nil {
		return err
	}
	d.say("c.Transaction(redpipe.WithTxOptions(ctx, opts), clientSideIncr, "+strconv.Quote(key)+")", replies)
	v, err := d.c.Get(ctx, key)
	if err != nil {
		return err
	}
	d.say(line("GET", key), v)
	return nil
}

// Seed: the TrackMaven post, reading many fields of one hash.
func (d *demo) hget(ctx context.Context) error {
	key := k("somekey")
	fields := []string{"01102014", "01112014", "01122014", "01132014", "01142014", "01152014", "01162014"}
	args := make([]any, 0, 2*len(fields))
	for i, f := range fields {
		args = append(args, f, (i+1)*100)
	}
	n, err := d.c.HSet(ctx, key, args...)
	if err != nil {
		return err
	}
	d.say(line("HSET", key, fields[0], 100, "...", fields[len(fields)-1], 700), n)

	p := d.c.Pipeline()
	cmds := make([]string, len(fields))
	for i, f := range fields {
		p.HGet(key, f)
		cmds[i] = line("HGET", key, f)
	}
	values, err := p.Exec(ctx)
	if err != nil {
		return err
	}
	d.batch("one pipeline instead of 7 round trips", cmds, texts(values))
	return nil
}

// Seed: example 1 of the pipeline guide.
func (d *demo) setGet1000(ctx context.Context) error {
	const n = 1000
	fmt.Fprintln(d.w, "  --- Without Pipeline ---")
	start := time.Now()
	for i := range n {
		key := k(fmt.Sprint("key_no_pipe_", i))
		if err := d.c.Set(ctx, key, fmt.Sprint("value_", i)); err != nil {
			return err
		}
		if _, err := d.c.Get(ctx, key); err != nil {
			return err
		}
	}
	fmt.Fprintf(d.w, "  Time taken without pipeline: %.4f seconds\n", time.Since(start).Seconds())

	fmt.Fprintln(d.w, "  --- With Pipeline ---")
	start = time.Now()
	p := d.c.Pipeline()
	for i := range n {
		key := k(fmt.Sprint("key_pipe_", i))
		p.Set(key, fmt.Sprint("value_", i))
		p.Get(key)
	}
	replies, err := p.Exec(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "  Time taken with pipeline: %.4f seconds (%d replies)\n", time.Since(start).Seconds(), len(replies))
	for _, i := range []int{0, n - 1} {
		key := k(fmt.Sprint("key_pipe_", i))
		v, err := d.c.Get(ctx, key)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.w, "  Value of %s: %s\n", key, v)
	}
	return nil
}

// Seed: example 2 of the pipeline guide, with both of its branches.
func (d *demo) transfer(ctx context.Context) error {
	a, b := k("account_a"), k("account_b")
	balances := func(label string) error {
		v, err := d.c.MGet(ctx, a, b)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.w, "  %s - A: %v, B: %v\n", label, v[0], v[1])
		return nil
	}
	transfer := func(amount int64) error {
		fmt.Fprintf(d.w, "  Transfer %d from A to B:\n", amount)
		tx, err := d.c.Watch(ctx, a)
		if err != nil {
			return err
		}
		defer tx.Close()
		cur, err := tx.Get(ctx, a)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.w, "    WATCH %s; GET  ->  %s\n", a, cur)
		balance, err := strconv.ParseInt(cur, 10, 64)
		if err != nil {
			return err
		}
		if balance < amount {
			fmt.Fprintln(d.w, "  Insufficient funds. Transaction aborted.")
			if err := tx.Unwatch(ctx); err != nil {
				return err
			}
			fmt.Fprintln(d.w, "    UNWATCH  ->  OK")
			return nil
		}
		fmt.Fprintln(d.w, "  Starting transaction...")
		results, err := tx.Multi().DecrBy(a, amount).IncrBy(b, amount).Exec(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.w, "    MULTI; DECRBY %s %d; INCRBY %s %d; EXEC  ->  %v\n", a, amount, b, amount, results)
		fmt.Fprintln(d.w, "  Transaction executed. Results:", results)
		return nil
	}

	if err := d.c.Set(ctx, a, 100); err != nil {
		return err
	}
	if err := d.c.Set(ctx, b, 50); err != nil {
		return err
	}
	if err := balances("Initial Balance"); err != nil {
		return err
	}
	for _, amount := range []int64{10, 1000} {
		if err := transfer(amount); err != nil {
			return err
		}
		if err := balances("Final Balance"); err != nil {
			return err
		}
	}
	return nil
}

// Seed: example 3 of the pipeline guide.
func (d *demo) noTransaction(ctx context.Context) error {
	replies, err := d.c.Pipeline(redpipe.NoTransaction).Set(k("key1"), "value1").Set(k("key2"), "value2").Exec(ctx)
	if err != nil {
		return err
	}
	d.batch("plain batch: one write, no MULTI/EXEC",
		[]string{line("SET", k("key1"), "value1"), line("SET", k("key2"), "value2")}, texts(replies))
	for _, key := range []string{k("key1"), k("key2")} {
		v, err := d.c.Get(ctx, key)
		if err != nil {
			return err
		}
		d.say(line("GET", key), v)
	}
	return nil
}

// Seed: the pipeline notebook's opening cells.
func (d *demo) pingChained(ctx context.Context) error {
	pong, err := d.c.Ping(ctx)
	if err != nil {
		return err
	}
	d.say("PING", pong)
	replies, err := d.c.Pipeline().Set(k("a"), "a value").Set(k("b"), "b value").Get(k("a")).Exec(ctx)
	if err != nil {
		return err
	}
	d.batch("c.Pipeline().Set(...).Set(...).Get(...).Exec(ctx)",
		[]string{line("SET", k("a"), "a value"), line("SET", k("b"), "b value"), line("GET", k("a"))},
		texts(replies))
	return nil
}

// Seed: the notebook's performance comparison, printed as it prints it.
func (d *demo) incrComparison(ctx context.Context) error {
	key, n := k("incr_key"), d.cfg.Incrs
	want := strconv.Itoa(n)

	if err := d.c.Set(ctx, key, "0"); err != nil {
		return err
	}
	bar := newProgress(d.cfg.Progress, d.cfg.ProgressTTY, n, "INCR one by one")
	start := time.Now()
	for range n {
		if _, err := d.c.Incr(ctx, key); err != nil {
			bar.Exit()
			return err
		}
		bar.Add(1)
	}
	without, err := d.c.Get(ctx, key)
	if err != nil {
		return err
	}
	tWithout := time.Since(start)
	bar.Finish()
	fmt.Fprintln(d.w, "Without pipeline")
	fmt.Fprintln(d.w, "================")
	fmt.Fprintln(d.w, "Time taken: ", tWithout.Round(time.Microsecond).Seconds())
	fmt.Fprintln(d.w, "Increment value: ", without)
	fmt.Fprintln(d.w)

	if err := d.c.Set(ctx, key, "0"); err != nil {
		return err
	}
	start = time.Now()
	p := d.c.Pipeline()
	for range n {
		p.Incr(key)
	}
	p.Get(key)
	replies, err := p.Exec(ctx)
	if err != nil {
		return err
	}
	with := replies[len(replies)-1].String()
	tWith := time.Since(start)
	fmt.Fprintln(d.w, "With pipeline")
	fmt.Fprintln(d.w, "=============")
	fmt.Fprintln(d.w, "Time taken: ", tWith.Round(time.Microsecond).Seconds())
	fmt.Fprintln(d.w, "Increment value: ", with)
	fmt.Fprintln(d.w)
	fmt.Fprintf(d.w, "Speedup: %.1fx\n", tWithout.Seconds()/tWith.Round(time.Microsecond).Seconds())

	if without != want || with != want {
		return fmt.Errorf("increment values %s and %s, want %s", without, with, want)
	}
	return nil
}

// newProgress makes the bar shown while the slow loop runs.
func newProgress(w io.Writer, tty bool, max int, desc string) *progressbar.ProgressBar {
	return newBar(w, tty, max,
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("INCR"))
}

// newBar makes a progress bar of max steps on w with opts. A terminal (tty)
// gets a bar redrawn in place; anything else (a pipe, a log file, CI) gets
// a plain line every few seconds, since carriage returns would pile up
// there.
func newBar(w io.Writer, tty bool, max int, opts ...progressbar.Option) *progressbar.ProgressBar {
	opts = append(opts, progressbar.OptionSetWidth(30))
	if tty {
		opts = append(opts,
			progressbar.OptionSetWriter(w),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }))
	} else {
		opts = append(opts,
			progressbar.OptionSetWriter(&lineWriter{w: w}),
			progressbar.OptionSetTheme(progressbar.ThemeASCII),
			progressbar.OptionThrottle(2*time.Second))
	}
	return progressbar.NewOptions(max, opts...)
}

// lineWriter turns the bar's in-place redraws into whole lines: it drops
// the writes that only erase the line and ends each drawing with a newline.
// Not being an *os.File also keeps the bar from syncing the file on every
// redraw.
type lineWriter struct{ w io.Writer }

func (l *lineWriter) Write(p []byte) (int, error) {
	s := strings.TrimSpace(strings.ReplaceAll(string(p), "\r", ""))
	if s == "" {
		return len(p), nil
	}
	if _, err := io.WriteString(l.w, s+"\n"); err != nil {
		return 0, err
	}
	return len(p), nil
}
