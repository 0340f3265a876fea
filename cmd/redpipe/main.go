// Command redpipe shows the redpipe client at work against a real Redis
// server.
//
//	redpipe demo    walk through the pipeline and transaction scenarios
//	redpipe demo -cluster [seed-url ...]
//	                the same for a Redis Cluster: a pipeline split per node,
//	                a transaction on one slot, a cross-slot one refused
//	redpipe bench   measure INCR/s against the pipeline depth, with a chart
//	redpipe help    print usage
//
// demo and bench use the server in REDIS_URL, or start a throwaway
// redis-server when REDIS_URL is not set; demo -cluster uses the cluster
// of the seed URLs given, or starts a throwaway one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/term"
)

const usage = `usage: redpipe <command>

commands:
  demo   walk through pipelines, transactions and optimistic locking,
         printing every command with its reply; ends with 100,000 INCRs
         sent one by one and then in one pipeline
  demo -cluster [seed-url ...]
         walk through a Redis Cluster: a pipeline split across the
         masters with each master's batch size, an MGET split by slot,
         a transaction on keys with a common {hash tag}, a cross-slot
         transaction refused with its error, and a MOVED followed after
         a slot moves. Without seed URLs it starts a throwaway cluster
         of three masters; with them (redis://host:port, one or more) it
         uses that cluster, touches only keys under redpipe:demo: and
         moves no slot
  bench  time the same comparison, then sweep the pipeline depth with and
         without MULTI/EXEC; prints a table and writes a chart
         (redpipe bench -h for its flags)
  help   print this text

exit status:
  0 done, 1 failed, 2 a mistake on the command line, 129 hung up
  (SIGHUP), 130 interrupted (SIGINT), 143 terminated (SIGTERM); a
  throwaway server is stopped first

environment:
  REDIS_URL   server for demo and bench, such as redis://localhost:6379/0.
              Without it, they start a throwaway redis-server and stop it at
              the end. On your own server, they only touch keys under
              redpipe:demo: and redpipe:bench:, and never flush the database.
              demo -cluster does not read it: it takes seed URLs instead.
  SSL_CERT_FILE
              on Linux, a PEM file of the certificate authorities to trust
              for rediss:// URLs instead of the system's, for a server whose
              certificate a private CA signed.
`

// The shell's convention for a program ended by a signal is 128 plus its
// number: 129 for SIGHUP, 130 for SIGINT, 143 for SIGTERM.
const (
	exitHungUp      = 128 + int(syscall.SIGHUP)
	exitInterrupted = 128 + int(syscall.SIGINT)
	exitTerminated  = 128 + int(syscall.SIGTERM)
)

// signalled is why the run's context ended when a signal ended it, so that
// the exit code can say which.
type signalled struct{ sig os.Signal }

func (s *signalled) Error() string { return "received " + s.sig.String() }

func main() {
	// SIGINT, SIGTERM and SIGHUP cancel the context instead of killing the
	// process, so that the deferred cleanup (stopping a throwaway server,
	// deleting demo keys) still runs.
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	caught := []os.Signal{os.Interrupt, syscall.SIGTERM}
	// Under nohup SIGHUP is ignored from the start, and stays so: Notify
	// would install a handler and undo that.
	if !signal.Ignored(syscall.SIGHUP) {
		caught = append(caught, syscall.SIGHUP)
	}
	signal.Notify(sigs, caught...)
	go func() {
		sig := <-sigs
		cancel(&signalled{sig})
		signal.Stop(sigs) // a second Ctrl-C kills at once
	}()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit code; main is only the
// process glue around it, so tests call run directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "demo":
		fs := flag.NewFlagSet("redpipe demo", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.Usage = func() { fmt.Fprint(stderr, usage) }
		cluster := fs.Bool("cluster", false, "walk through a Redis Cluster")
		rest, err := parseInterspersed(fs, args[1:])
		if err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if *cluster {
			for _, seed := range rest {
				if strings.HasPrefix(seed, "-") {
					fmt.Fprintf(stderr, "redpipe demo -cluster: %q is not a seed URL (redis://host:port)\n\n%s", seed, usage)
					return 2
				}
			}
			err = runClusterDemo(ctx, clusterDemoConfig{Seeds: rest, Out: stdout})
			return exitCode(ctx, "demo -cluster", err, stderr)
		}
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "redpipe demo: unexpected argument %q\n\n%s", rest[0], usage)
			return 2
		}
		err = runDemo(ctx, demoConfig{
			URL:         redisURL(getenv),
			Incrs:       100_000,
			Out:         stdout,
			Progress:    stderr,
			ProgressTTY: isTerminal(stderr),
		})
		return exitCode(ctx, "demo", err, stderr)
	case "bench":
		return runBenchCmd(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "redpipe: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// parseInterspersed parses the flags of fs wherever they stand among args
// and returns the other arguments in their order. The flag package stops
// at the first argument that is not a flag, which left a -h typed after
// the seed URLs to be taken for one, and dialed. After "--" the next
// argument is not read as a flag, even if it looks like one.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// redisURL returns REDIS_URL without the spaces or line end around it,
// which a file the variable was read from may leave. Set to nothing but
// those, it counts as not set.
func redisURL(getenv func(string) string) string {
	return strings.TrimSpace(getenv("REDIS_URL"))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
