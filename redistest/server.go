package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// readyTimeout bounds the wait for a new process to answer. A fresh
	// redis-server with nothing to load answers within milliseconds; the
	// margin is for loaded CI machines and the race detector.
	readyTimeout = 10 * time.Second
	readyPoll    = 10 * time.Millisecond
	// stopTimeout is how long Stop lets the server shut down cleanly before
	// killing it.
	stopTimeout = 5 * time.Second
	// startAttempts bounds the retries when the chosen port is taken
	// between finding it free and redis-server binding it.
	startAttempts = 5
	// outputLimit bounds the server output kept in memory; only the tail is
	// ever shown, in error messages.
	outputLimit = 64 << 10
	outputLines = 20
)

const (
	installHint = "redistest: redis-server not found in PATH; " + installHow
	// The package is used in other modules' tests, whose make test knows
	// nothing of redis-server: this repository's make is named as such.
	installHow = "install Redis 7.0 or newer: `apt-get update && apt-get install -y redis-server` on Debian or Ubuntu, `brew install redis` on macOS (in redpipe's own repository, `make deps` does it)"
)

// errPortTaken marks a start that failed only because another process got
// the port first, which is worth retrying on another port.
var errPortTaken = errors.New("port already in use")

// notFoundError keeps the cause from exec.LookPath reachable with errors.Is
// while the message stays the install hint, which is what a reader of a
// failed test needs.
type notFoundError struct {
	err error
	// unusable names a file called redis-server in PATH that cannot be
	// run, which a reader told only "not found" would look at in vain.
	unusable string
}

func (e *notFoundError) Error() string {
	if e.unusable != "" {
		return "redistest: redis-server not found in PATH: " + e.unusable + " is not an executable file; if it is the server, `chmod +x` it, or " + installHow
	}
	return installHint
}

func (e *notFoundError) Unwrap() error { return e.err }

// LookPath returns the path of redis-server, or an error that says how to
// install it.
func LookPath() (string, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", &notFoundError{err: err, unusable: unusableInPath("redis-server")}
	}
	return path, nil
}

// unusableInPath returns the first file called name in PATH that
// exec.LookPath passed over, not being an executable regular file, or "".
func unusableInPath(name string) string {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if !filepath.IsAbs(dir) {
			continue // exec.LookPath refuses relative entries for a reason of its own
		}
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Server is one redis-server process listening on a loopback port.
type Server struct {
	Addr string // "127.0.0.1:PORT"
	Port int
	// BusPort is the cluster bus port of a node started by StartCluster
	// or with "--cluster-enabled", "yes", and 0 for other servers.
	BusPort int
	Dir     string // its working directory (a temporary directory)

	bin   string   // redis-server resolved once, so Restart ignores later PATH changes
	extra []string // the caller's arguments, replayed by Restart
	out   *tailBuffer

	mu sync.Mutex
	// proc is the current or last process; nil before the first start.
	// Written with mu held; loaded without it by Pipeline, which must
	// not wait for a Restart in progress to say why a call failed.
	proc    atomic.Pointer[process]
	dirGone bool // Stop removed Dir
	// member says that s is a node of a Cluster, which every start keeps
	// a master without slots a master (see keepRoles).
	member bool
	// killedMaster says that Cluster.KillMaster killed s and Rejoin has
	// not yet brought it back, so that a failed call names Rejoin, not
	// Restart, as the way back: a bare Restart leaves the cluster's lists
	// without it and makes a later Rejoin refuse a running node. Written
	// by KillMaster and Rejoin; read without mu by Do.
	killedMaster atomic.Bool

	// halted says whether Stop was called, and whether by the cleanup of
	// the test that started the server, so that a call made afterwards
	// says so. Written with mu held; read without it, by Do.
	halted atomic.Int32
}

// Values of Server.halted.
const (
	haltNone    int32 = iota // running, killed or crashed: not stopped
	haltStopped              // Stop was called; Restart may start it again
	haltEnded                // the test that started it has ended
)

// haltedErr says why s must not be used, if it was stopped.
func (s *Server) haltedErr() error {
	switch s.halted.Load() {
	case haltStopped:
		return fmt.Errorf("redistest: redis-server on %s was stopped by Stop; Restart starts it again", s.Addr)
	case haltEnded:
		return fmt.Errorf("redistest: redis-server on %s was stopped when the test that started it ended; start one in the test that uses it", s.Addr)
	}
	return nil
}

// exitedErr says why s does not answer when its process has exited
// without Stop: Kill ended it, or it ended by itself (a crash, SHUTDOWN, a
// kill from outside). It is nil while the process runs, after Stop, and
// before the first start.
func (s *Server) exitedErr() error {
	p := s.proc.Load()
	if p == nil || !p.exited() || s.halted.Load() != haltNone {
		return nil
	}
	back := "Restart starts it again"
	if s.killedMaster.Load() {
		back = "Cluster.Rejoin brings it back as a replica"
	}
	if p.killed.Load() {
		by := "Kill"
		if s.killedMaster.Load() {
			by = "Cluster.KillMaster"
		}
		return fmt.Errorf("redistest: redis-server on %s is not running: %s ended it; %s", s.Addr, by, back)
	}
	return fmt.Errorf("redistest: redis-server on %s is not running: it exited by itself (%s), as in a crash or after SHUTDOWN; Output has its log, and %s", s.Addr, p.status(), back)
}

// process is one run of redis-server. done is closed once the process has
// exited and been reaped, and its output fully copied.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the result of Wait; read only after done is closed
	// killed says that Kill or Stop ended the process, rather than a
	// crash, a SHUTDOWN or a signal from outside.
	killed atomic.Bool
}

// status describes how the process ended, once it has: Wait's error, or
// "exit status 0" where Wait has none to give.
func (p *process) status() string {
	if p.err == nil {
		return "exit status 0"
	}
	return p.err.Error()
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill kills the process and waits until it is reaped, so that its port is
// free and no zombie is left when it returns.
func (p *process) kill() error {
	err := p.cmd.Process.Kill()
	<-p.done
	if errors.Is(err, os.ErrProcessDone) {
		err = nil
	}
	return err
}

// Start starts a redis-server for the test and stops it in t.Cleanup.
// Extra args are passed to redis-server as they are, after the package's
// own options so that they can override them, for example
// "--requirepass", "secret" or "--rename-command", "HELLO", "". The first
// must be an option, beginning with "--": no configuration file is read.
// The options that decide where the server listens and whether it stays
// a child process (--port, --bind, --daemonize, --cluster-port) are
// refused, also in one argument with their value, such as "--daemonize
// yes", which the server reads as one line of configuration.
//
// If redis-server is not installed, or does not start, Start fails the test
// with t.Fatalf; it never skips. It must be called while the test runs:
// once the test has ended, as from a goroutine it left behind, Start
// starts nothing and panics with an error that says so.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	mustNotHaveEnded(t, "Start")
	s, err := StartServer(args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	stopAtCleanup(t, s)
	if err := testEnded(t, "Start"); err != nil {
		s.stop(haltEnded)
		panic(err)
	}
	return s
}

// testEnded refuses to start anything for a test that has ended, as from
// a goroutine the test left running: its cleanups have run or are
// running, so one registered now might never run, and the process and
// its directory would outlive the test. It is checked again after a
// start, since the test may end meanwhile.
func testEnded(t testing.TB, fn string) error {
	if t.Context().Err() != nil {
		return fmt.Errorf("redistest: %s called after %s ended, whose cleanup would not stop what it starts; call it from the test while it runs", fn, t.Name())
	}
	return nil
}

// mustNotHaveEnded panics with testEnded's error: once a test has ended,
// t.Fatalf panics too, but without the message that says what went wrong.
func mustNotHaveEnded(t testing.TB, fn string) {
	if err := testEnded(t, fn); err != nil {
		panic(err)
	}
}

// stopAtCleanup registers s.Stop with t. A failure to stop is reported but
// does not abort other cleanups.
func stopAtCleanup(t testing.TB, s *Server) {
	t.Cleanup(func() {
		if err := s.stop(haltEnded); err != nil {
			t.Errorf("redistest: stopping redis-server on %s: %v", s.Addr, err)
		}
	})
}

// StartServer is Start without a testing.TB, for programs and benchmarks
// that manage lifetimes themselves: the caller must call Stop. On error no
// process is left running and no directory is left behind.
func StartServer(args ...string) (*Server, error) {
	return startServer(args, enablesCluster(args))
}

// enablesCluster reports whether args turn cluster mode on. Such a server
// needs a bus port of its own too: by default Redis takes the port 10000
// above the client port, which may be in use, and which does not exist
// for a client port above 55535, where redis-server refuses to start.
func enablesCluster(args []string) bool {
	on := false
	for _, opt := range splitOptions(args) {
		if len(opt) > 1 && opt[0] == "cluster-enabled" {
			on = strings.EqualFold(opt[1], "yes")
		}
	}
	return on
}

// splitOptions groups args as redis-server reads its command line: an
// argument that begins with "--" starts an option, and the line of
// configuration it makes holds its own words, the first of which names
// the option, then the arguments up to the next option. Each option is
// returned as its lower-cased name and then its values, so that
// "--daemonize yes" as one argument is read as the server reads it.
func splitOptions(args []string) [][]string {
	var opts [][]string
	for _, a := range args {
		rest, ok := strings.CutPrefix(a, "--")
		if !ok {
			if n := len(opts); n > 0 {
				opts[n-1] = append(opts[n-1], a)
			}
			continue
		}
		words := strings.Fields(rest)
		if len(words) == 0 {
			words = []string{""}
		}
		words[0] = strings.ToLower(strings.Trim(words[0], `"'`))
		opts = append(opts, words)
	}
	return opts
}

// startServer starts a server, as a cluster node with a cluster bus port
// of its own if cluster is set.
func startServer(args []string, cluster bool) (*Server, error) {
	if err := checkArgs(args); err != nil {
		return nil, err
	}
	bin, err := LookPath()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{Dir: dir, bin: bin, extra: slices.Clone(args), out: newTailBuffer(outputLimit)}

	nports := 1
	if cluster {
		nports = 2
	}
	for range startAttempts {
		var ports []int
		ports, err = freePorts(nports)
		if err != nil {
			break
		}
		s.Port = ports[0]
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if cluster {
			s.BusPort = ports[1]
		}
		s.mu.Lock()
		err = s.launch()
		s.mu.Unlock()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

// reservedOptions are the options the package has to control itself: it
// can only wait for, address and stop a server whose port it knows, that
// listens on loopback alone and that stays its child process.
var reservedOptions = []string{"--port", "--bind", "--daemonize", "--cluster-port"}

func checkArgs(args []string) error {
	// The server reads a word that does not begin with "--" as one more
	// value of the option before it, which here is the package's own
	// last one: it would refuse that option, which the caller never
	// wrote. A redis-server reads a configuration file only as its first
	// argument, which is the package's.
	if len(args) > 0 && !strings.HasPrefix(args[0], "--") {
		return fmt.Errorf("redistest: argument %q comes before any option; each option begins with --, as in \"--requirepass\", \"secret\", and a configuration file is not read: pass its options instead", args[0])
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--") && strings.ContainsAny(a, "\r\n") {
			return fmt.Errorf("redistest: option %q holds a line break, which would start another line of configuration; pass each option as its own argument", a)
		}
	}
	for _, opt := range splitOptions(args) {
		for _, r := range reservedOptions {
			if opt[0] == strings.TrimPrefix(r, "--") {
				return fmt.Errorf("redistest: option %s is set by redistest and cannot be overridden", r)
			}
		}
	}
	return nil
}

// freePorts asks the kernel for n distinct free loopback ports. The
// listeners are held until all ports are known so that the ports differ,
// then closed so that redis-server can bind them. Another process may take
// a port in between; startServer retries when that happens.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("redistest: finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// commandArgs returns the redis-server command line. Persistence is off so
// tests start empty and leave nothing behind, and logs go to stdout, which
// is captured for error messages. DEBUG is allowed from loopback clients
// because fault tests use it (DEBUG SLEEP, DEBUG SEGFAULT). A master starts
// a full sync at once instead of waiting 5 s for more replicas to batch
// with, which would otherwise dominate the time to set up a replica.
func (s *Server) commandArgs() []string {
	return append(s.ownArgs(), s.extra...)
}

// ownArgs returns the options that commandArgs puts before the caller's.
func (s *Server) ownArgs() []string {
	args := []string{
		"--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.Dir,
		"--daemonize", "no",
		"--loglevel", "warning",
		"--logfile", "",
		"--enable-debug-command", "local",
		"--repl-diskless-sync-delay", "0",
	}
	if s.BusPort != 0 {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(s.BusPort),
		)
	}
	return args
}

// launch starts a process on s.Port and waits until it answers. On failure
// the process has exited when launch returns. s.mu must be held.
func (s *Server) launch() error {
	fmt.Fprintf(s.out, "redistest: starting redis-server on %s\n", s.Addr)
	mark := s.out.mark()

	cmd := exec.Command(s.bin, s.commandArgs()...)
	cmd.Dir = s.Dir
	// One writer for both streams, so exec uses a single pipe and the
	// lines stay in the order the server wrote them.
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	// A fork of the server (BGSAVE, replication) inherits the output pipe;
	// without a delay bound, Wait would also wait for such a child.
	cmd.WaitDelay = time.Second
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: starting %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc.Store(p)

	if err := s.waitReady(p, mark); err != nil {
		p.kill()
		return err
	}
	if s.member {
		if err := keepRoles(s.Addr); err != nil {
			p.kill()
			return err
		}
	}
	return nil
}

// waitReady polls the port until the server answers, the process exits, or
// readyTimeout passes.
func (s *Server) waitReady(p *process, mark int64) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		if p.exited() {
			out := s.out.since(mark)
			if strings.Contains(out, "Address already in use") {
				return s.portTakenErr(out)
			}
			if opt := unknownOwnOption(out, s.ownArgs(), s.extra); opt != "" {
				return fmt.Errorf("redistest: %s is too old: it does not know the option %s, which redistest sets; redistest needs Redis 7.0 or newer first in PATH (Debian 12 and Ubuntu 24.04 ship one: `apt-get install -y redis-server`)%s", s.bin, opt, formatOutput(out))
			}
			return fmt.Errorf("redistest: redis-server on %s exited before it was ready (%s)%s", s.Addr, p.status(), formatOutput(out))
		}
		if answersPing(s.Addr) {
			ours, err := s.isOurs(p)
			if err != nil {
				return err
			}
			if ours {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: redis-server on %s did not answer PING within %v%s", s.Addr, readyTimeout, formatOutput(s.out.since(mark)))
		}
		time.Sleep(readyPoll)
	}
}

// takenPortLine matches the line in which redis-server says which port it
// could not bind, and captures the port.
var takenPortLine = regexp.MustCompile(`listening socket \S+:(\d+): bind: Address already in use`)

// portTakenErr is the error of a server that exited because a port it was
// to listen on is taken, out being its output. A port the package picked,
// the client port or the cluster bus port, was taken since it was found
// free: that is errPortTaken, and another pick of ports is worth a try.
// A port the caller's arguments name, such as --tls-port, would be taken
// again on every try, so the error names it and its option instead.
func (s *Server) portTakenErr(out string) error {
	port := 0
	if m := takenPortLine.FindStringSubmatch(out); m != nil {
		port, _ = strconv.Atoi(m[1])
	}
	if port == 0 || port == s.Port || port == s.BusPort {
		addr := s.Addr
		if port != 0 {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
		return fmt.Errorf("redistest: redis-server could not listen on %s: %w%s", addr, errPortTaken, formatOutput(out))
	}
	given := "a port given in the arguments"
	for _, opt := range splitOptions(s.extra) {
		if len(opt) > 1 && opt[1] == strconv.Itoa(port) {
			given = "the port of --" + opt[0]
		}
	}
	return fmt.Errorf("redistest: redis-server could not listen on port %d, %s: another process holds it; give one that is free%s", port, given, formatOutput(out))
}

// unknownOwnOption returns the option of own, the package's own options
// such as enable-debug-command, that the output of a server that refused to start
// names as a bad directive, and "" if it names none or one the caller
// passed in extra. A server refuses options newer than itself so, and
// without this the only hint that it is too old is one config line in its
// output.
func unknownOwnOption(out string, own, extra []string) string {
	if !strings.Contains(out, "Bad directive") {
		return ""
	}
	for line := range strings.Lines(out) {
		rest, ok := strings.CutPrefix(line, ">>> '")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimRight(rest, "'\r\n"), " ")
		if !slices.ContainsFunc(own, func(o string) bool { return strings.EqualFold(o, "--"+name) }) {
			return ""
		}
		if slices.ContainsFunc(extra, func(a string) bool { return strings.EqualFold(a, "--"+name) }) {
			return ""
		}
		return name
	}
	return ""
}

// answersPing reports whether something on addr answers an inline PING with
// a reply line. Any reply counts: a server with a password answers -NOAUTH,
// one still loading -LOADING, and both are up.
func answersPing(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && len(line) > 2
}

// isOurs checks that the server that answered is the process just started.
// The port was found free, but another process can bind it before
// redis-server does; that process would answer the PING while ours dies
// with "Address already in use". When INFO is refused (a password, a
// renamed command) there is no way to ask, and the answer is taken as ours
// as long as our process is alive.
func (s *Server) isOurs(p *process) (bool, error) {
	replies, err := roundTrip(s.Addr, [][]string{{"INFO", "server"}})
	if err != nil {
		return false, nil // not answering after all; keep polling
	}
	info, ok := replies[0].(string)
	if !ok {
		return !p.exited(), nil
	}
	if pid := infoField(info, "process_id"); pid != strconv.Itoa(p.cmd.Process.Pid) {
		return false, fmt.Errorf("redistest: %s is answered by another process (pid %s): %w", s.Addr, pid, errPortTaken)
	}
	return true, nil
}

// infoField returns the value of a "key:value" line of an INFO or CLUSTER
// INFO reply, or "" if it is absent.
func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimRight(v, "\r\n")
		}
	}
	return ""
}

// Stop stops the server: SIGTERM, then SIGKILL if it has not exited within
// 5 seconds. It then removes Dir. Stop may be called more than once, and on
// a server that was killed or crashed. Do and Pipeline on a stopped server
// fail at once with an error that says it was stopped.
func (s *Server) Stop() error {
	return s.stop(haltStopped)
}

// stop is Stop, noting why in halted: haltStopped, or haltEnded from the
// test's cleanup, after which Restart refuses, since no cleanup is left
// to stop what it would start.
func (s *Server) stop(why int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.halted.Load() != haltEnded {
		s.halted.Store(why)
	}
	var errs []error
	if p := s.proc.Load(); p != nil && !p.exited() {
		p.killed.Store(true)
		if err := terminate(p.cmd.Process); err != nil {
			p.cmd.Process.Kill()
		}
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			if err := p.kill(); err != nil {
				errs = append(errs, fmt.Errorf("redistest: killing redis-server: %w", err))
			}
		}
	}
	if !s.dirGone {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, fmt.Errorf("redistest: %w", err))
		} else {
			s.dirGone = true
		}
	}
	return errors.Join(errs...)
}

// Kill kills the server with SIGKILL at once, as in a crash, and waits
// until it has exited. It keeps Dir, so a cluster node comes back from
// Restart with its cluster configuration. Killing a server that is not
// running does nothing.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc.Load()
	if p == nil || p.exited() {
		return nil
	}
	p.killed.Store(true)
	if err := p.kill(); err != nil {
		return fmt.Errorf("redistest: killing redis-server on %s: %w", s.Addr, err)
	}
	return nil
}

// Restart starts the server again, on the same port and with the same
// arguments, after Kill, Stop or a crash, and waits until it answers. Data
// is not kept: nothing is persisted. A server started by Start is still
// stopped by its cleanup, and cannot be restarted once that has run.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.halted.Load() == haltEnded {
		return s.haltedErr()
	}
	if p := s.proc.Load(); p != nil && !p.exited() {
		return fmt.Errorf("redistest: redis-server on %s is still running; Kill or Stop it before Restart", s.Addr)
	}
	if s.dirGone {
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			return fmt.Errorf("redistest: %w", err)
		}
		s.dirGone = false
	}
	s.halted.Store(haltNone)
	return s.launch()
}

// URL returns the server's address as a redis:// URL.
func (s *Server) URL() string {
	return "redis://" + s.Addr
}

// Pid returns the process id of the current or, once it has exited, the
// last redis-server process.
func (s *Server) Pid() int {
	p := s.proc.Load()
	if p == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Output returns the tail of what the server has printed across all its
// runs, for a test that wants to show or check it.
func (s *Server) Output() string {
	return s.out.String()
}

// tailBuffer keeps the last max bytes written to it. The server's output is
// copied into it from a goroutine of exec.Cmd while error paths read it,
// hence the lock.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	max   int
	total int64 // bytes ever written, so callers can mark a position
}

func newTailBuffer(max int) *tailBuffer {
	return &tailBuffer{max: max}
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += int64(len(p))
	if len(p) >= b.max {
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return len(p), nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		n := copy(b.buf, b.buf[over:])
		b.buf = b.buf[:n]
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// mark returns the current write position, for since.
func (b *tailBuffer) mark() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// since returns what was written after mark, as far as it is still kept.
func (b *tailBuffer) since(mark int64) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	start := mark - (b.total - int64(len(b.buf)))
	if start < 0 {
		start = 0
	}
	return string(b.buf[start:])
}

func (b *tailBuffer) String() string {
	return b.since(0)
}

// formatOutput renders the last lines of server output for an error
// message, where they usually say why the server did not start.
func formatOutput(out string) string {
	var lines []string
	for line := range strings.Lines(out) {
		if line = strings.TrimRight(line, "\r\n"); strings.TrimSpace(line) != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return "; redis-server printed nothing"
	}
	if len(lines) > outputLines {
		lines = lines[len(lines)-outputLines:]
	}
	return "\nredis-server output (last lines):\n\t" + strings.Join(lines, "\n\t")
}
