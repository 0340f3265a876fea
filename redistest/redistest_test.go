package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

func TestStartAnswersPing(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	if got, want := s.Addr, "127.0.0.1:"+strconv.Itoa(s.Port); got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}
	if got, want := s.URL(), "redis://"+s.Addr; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	if s.Pid() <= 0 {
		t.Errorf("Pid() = %d", s.Pid())
	}
	if fi, err := os.Stat(s.Dir); err != nil || !fi.IsDir() {
		t.Errorf("Dir %q: %v", s.Dir, err)
	}
	if v, err := s.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING = %#v, %v; want PONG", v, err)
	}
	// Persistence must be off so tests leave nothing on disk and start empty.
	v := s.MustDo(t, "CONFIG", "GET", "appendonly")
	if got, ok := v.([]any); !ok || len(got) != 2 || got[1] != "no" {
		t.Errorf("CONFIG GET appendonly = %#v", v)
	}
	if v := s.MustDo(t, "CONFIG", "GET", "save"); fmt.Sprint(v) != "[save ]" {
		t.Errorf("CONFIG GET save = %#v", v)
	}
}

func TestDoDecodesReplies(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	s.MustDo(t, "RPUSH", "list", "a", "", "c")
	cases := []struct {
		args []string
		want any
	}{
		{[]string{"SET", "k", "v\r\nwith\x00bytes"}, "OK"},
		{[]string{"GET", "k"}, "v\r\nwith\x00bytes"},
		{[]string{"GET", "missing"}, nil},
		{[]string{"INCR", "n"}, int64(1)},
		{[]string{"LRANGE", "list", "0", "-1"}, []any{"a", "", "c"}},
	}
	for _, c := range cases {
		v, err := s.Do(c.args...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if fmt.Sprintf("%#v", v) != fmt.Sprintf("%#v", c.want) {
			t.Errorf("%v = %#v, want %#v", c.args, v, c.want)
		}
	}
	v, err := s.Do("NO-SUCH-COMMAND")
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := v.(redistest.ReplyError); !ok || e.Prefix() != "ERR" {
		t.Errorf("unknown command = %#v, want a ReplyError with prefix ERR", v)
	}
	if _, err := s.Do(); err == nil {
		t.Error("Do() with no arguments succeeded")
	}
}

func TestExtraArgsArePassed(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, "--requirepass", "secret")
	v, err := s.Do("PING")
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := v.(redistest.ReplyError); !ok || e.Prefix() != "NOAUTH" {
		t.Fatalf("PING without AUTH = %#v, want a NOAUTH error", v)
	}
	replies, err := s.Pipeline([]string{"AUTH", "secret"}, []string{"PING"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(replies) != "[OK PONG]" {
		t.Errorf("AUTH, PING = %#v", replies)
	}
}

func TestEmptyArgAndOverride(t *testing.T) {
	t.Parallel()
	// The empty string must reach redis-server as an empty argument, and
	// the caller's options must win over the package's defaults.
	s := redistest.Start(t, "--rename-command", "HELLO", "", "--loglevel", "notice")
	v, err := s.Do("HELLO", "3")
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := v.(redistest.ReplyError); !ok || !strings.Contains(string(e), "unknown command") {
		t.Errorf("HELLO after renaming it away = %#v, want unknown command", v)
	}
	if v := s.MustDo(t, "CONFIG", "GET", "loglevel"); fmt.Sprint(v) != "[loglevel notice]" {
		t.Errorf("CONFIG GET loglevel = %#v, want notice", v)
	}
}

// TestClusterEnabledGetsItsOwnBusPort: a server the caller puts in
// cluster mode gets a bus port chosen free like its client port. Left to
// Redis, the bus port is the client port plus 10000, which redis-server
// refuses above 55535, a fifth of the ports the kernel hands out.
func TestClusterEnabledGetsItsOwnBusPort(t *testing.T) {
	t.Parallel()
	for range 20 {
		s := redistest.Start(t, "--cluster-enabled", "yes")
		if s.BusPort == 0 || s.BusPort == s.Port {
			t.Fatalf("server on port %d has bus port %d", s.Port, s.BusPort)
		}
		if v := s.MustDo(t, "CONFIG", "GET", "cluster-port"); fmt.Sprint(v) != fmt.Sprintf("[cluster-port %d]", s.BusPort) {
			t.Fatalf("CONFIG GET cluster-port = %#v, want %d", v, s.BusPort)
		}
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	s := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-enabled", "no")
	if s.BusPort != 0 {
		t.Errorf("server with cluster mode turned off again has bus port %d", s.BusPort)
	}
}

func TestReservedOptionsAreRefused(t *testing.T) {
	t.Parallel()
	for _, opt := range []string{"--port", "--bind", "--daemonize", "--BIND"} {
		s, err := redistest.StartServer(opt, "yes")
		if err == nil {
			s.Stop()
			t.Errorf("StartServer(%s) succeeded", opt)
		}
	}
}

// TestReservedOptionsInOneArgumentAreRefused: redis-server reads an
// argument such as "--daemonize yes" as a whole line of configuration, so
// a reserved option and its value in one argument must be refused as when
// they come apart: a server that daemonized would outlive the test, one
// on another port would never be found.
func TestReservedOptionsInOneArgumentAreRefused(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--cluster-port 0", "--PORT\t1", `--"bind" 127.0.0.2`, "--save \"\"\nport 1", "--daemonize yes"} {
		s, err := redistest.StartServer(arg)
		if err == nil {
			s.Stop()
			t.Fatalf("StartServer(%q) succeeded", arg)
		}
		if !strings.Contains(err.Error(), "cannot be overridden") && !strings.Contains(err.Error(), "line break") {
			t.Errorf("StartServer(%q): %v; want it refused", arg, err)
		}
	}
	// Read as the server reads it, cluster mode turned on in one argument
	// gets a bus port of its own too.
	s := redistest.Start(t, "--cluster-enabled yes")
	if s.BusPort == 0 {
		t.Error("a server given \"--cluster-enabled yes\" has no bus port of its own")
	}
}

// TestArgumentBeforeAnyOptionIsRefused: redis-server takes a word that
// does not begin with "--" for a value of the option before it, which
// would be the package's own last option, so a forgotten "--" or a
// configuration file given as the first argument must be refused with
// words about the caller's argument, not the server's complaint about an
// option the caller never wrote.
func TestArgumentBeforeAnyOptionIsRefused(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"requirepass", "secret"}, {"/etc/redis/redis.conf"}, {""}} {
		s, err := redistest.StartServer(args...)
		if err == nil {
			s.Stop()
			t.Errorf("StartServer(%q) succeeded", args)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("argument %q comes before any option", args[0])) || !strings.Contains(msg, "configuration file is not read") || strings.Contains(msg, "repl-diskless-sync-delay") {
			t.Errorf("StartServer(%q): %v; want it refused, naming the argument", args, err)
		}
	}
}

func TestStartFailureShowsServerOutput(t *testing.T) {
	t.Parallel()
	_, err := redistest.StartServer("--no-such-directive", "x")
	if err == nil {
		t.Fatal("StartServer with a bad directive succeeded")
	}
	if !strings.Contains(err.Error(), "Bad directive") {
		t.Errorf("error does not show the server's complaint: %v", err)
	}
}

// TestTooOldServerSaysSo: a redis-server older than 7.0 refuses an option
// the package sets, and the error must say that the server is too old and
// what to install, not only echo its complaint about a config line. The
// machine has no old server, so a script stands in for one: it answers as
// Redis 6.0 does to an option it does not know.
func TestTooOldServerSaysSo(t *testing.T) {
	dir := t.TempDir()
	script := `#!/bin/sh
echo
echo "*** FATAL CONFIG FILE ERROR (Redis 6.0.16) ***"
echo "Reading the configuration file, at line 9"
echo ">>> 'enable-debug-command \"local\"'"
echo "Bad directive or wrong number of arguments"
exit 1
`
	if err := os.WriteFile(filepath.Join(dir, "redis-server"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	_, err := redistest.StartServer()
	if err == nil {
		t.Fatal("StartServer with a server that refuses to start succeeded")
	}
	for _, want := range []string{"too old", "enable-debug-command", "Redis 7.0 or newer", "apt-get install", "Bad directive"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("StartServer with an old server: %v; want it to say %q", err, want)
		}
	}
}

// TestUnknownOptionOfTheCallerIsNotAge: an option the caller passed that
// the server does not know is the caller's mistake, not the server's age.
func TestUnknownOptionOfTheCallerIsNotAge(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--no-such-directive", "x"}, {"--enable-debug-command", "local", "extra"}} {
		_, err := redistest.StartServer(args...)
		if err == nil || strings.Contains(err.Error(), "too old") || !strings.Contains(err.Error(), "FATAL CONFIG FILE ERROR") {
			t.Errorf("StartServer(%q) = %v; want the server's complaint, not that it is too old", args, err)
		}
	}
}

func TestStopKillsAndIsIdempotent(t *testing.T) {
	t.Parallel()
	s, err := redistest.StartServer()
	if err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if alive(pid) {
		t.Errorf("process %d still running after Stop", pid)
	}
	if conn, err := net.Dial("tcp", s.Addr); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Stop", s.Addr)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Dir %s still exists after Stop: %v", s.Dir, err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestKillThenRestartOnSamePort(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	port, pid := s.Port, s.Pid()
	s.MustDo(t, "SET", "k", "v")

	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if alive(pid) {
		t.Errorf("process %d still running after Kill", pid)
	}
	if _, err := s.Do("PING"); err == nil {
		t.Error("PING answered after Kill")
	}
	if _, err := os.Stat(s.Dir); err != nil {
		t.Errorf("Kill removed Dir: %v", err)
	}
	if err := s.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}

	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Port != port || s.Pid() == pid {
		t.Errorf("after Restart: port %d pid %d, was port %d pid %d", s.Port, s.Pid(), port, pid)
	}
	if v, err := s.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING after Restart = %#v, %v", v, err)
	}
	if v := s.MustDo(t, "GET", "k"); v != nil {
		t.Errorf("GET k after Restart = %#v; nothing should persist", v)
	}
	if err := s.Restart(); err == nil {
		t.Error("Restart of a running server succeeded")
	}
}

func TestRestartAfterStop(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, "--requirepass", "secret")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart after Stop: %v", err)
	}
	// The same arguments come back with it.
	v, err := s.Do("PING")
	if e, ok := v.(redistest.ReplyError); err != nil || !ok || e.Prefix() != "NOAUTH" {
		t.Errorf("PING after Restart = %#v, %v; want NOAUTH", v, err)
	}
}

func TestServersGetDistinctPorts(t *testing.T) {
	t.Parallel()
	// Started concurrently, as parallel tests do, so that port choices race.
	servers := make([]*redistest.Server, 4)
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() { servers[i], errs[i] = redistest.StartServer() })
	}
	wg.Wait()
	seen := map[int]bool{}
	for i, s := range servers {
		if errs[i] != nil {
			t.Error(errs[i])
			continue
		}
		t.Cleanup(func() { s.Stop() })
		if seen[s.Port] {
			t.Errorf("port %d handed out twice", s.Port)
		}
		seen[s.Port] = true
	}
}

func TestLookPathWithoutRedis(t *testing.T) {
	t.Setenv("PATH", "")
	_, err := redistest.LookPath()
	if err == nil || !strings.Contains(err.Error(), "apt-get install") {
		t.Fatalf("LookPath() error = %v, want the install hint", err)
	}
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("LookPath() error %v does not wrap exec.ErrNotFound", err)
	}
	if _, err := redistest.StartServer(); err == nil || !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("StartServer() error = %v, want the install hint", err)
	}
	// The package runs in the tests of other modules, whose make test
	// installs nothing: the hint names a way that works there, and this
	// repository's make target only as this repository's.
	if msg := err.Error(); !strings.Contains(msg, "brew install redis") || strings.Contains(msg, "or run `make test`") || !strings.Contains(msg, "in redpipe's own repository, `make deps`") {
		t.Errorf("LookPath() error = %v, want a hint that holds outside this repository", err)
	}

	// Start must fail the test with the hint rather than skip it.
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redistest.Start(ft)
	}()
	<-done
	if !strings.Contains(ft.fatal, "apt-get install") {
		t.Errorf("Start reported %q, want the install hint", ft.fatal)
	}
}

// TestStartAfterTestEnded: a goroutine the test left behind that starts a
// server, a cluster or a proxy after the test ended is refused with a
// panic that says so: the test's cleanups have run, so nothing would stop
// what it started or remove its directory, and t.Fatalf would panic too,
// without the message.
func TestStartAfterTestEnded(t *testing.T) {
	t.Parallel()
	var ended testing.TB
	t.Run("ended", func(t *testing.T) { ended = t })
	starts := []struct {
		name  string
		start func(testing.TB)
	}{
		{"Start", func(tb testing.TB) { redistest.Start(tb) }},
		{"StartCluster", func(tb testing.TB) { redistest.StartCluster(tb, 0) }},
		{"StartProxy", func(tb testing.TB) { redistest.StartProxy(tb, "127.0.0.1:1") }},
	}
	for _, st := range starts {
		ft := &endedTB{TB: ended, live: t}
		var got any
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() { got = recover() }()
			st.start(ft)
		}()
		<-done
		want := st.name + " called after " + ended.Name() + " ended"
		if err, _ := got.(error); err == nil || !strings.Contains(err.Error(), want) || ft.cleanups != 0 {
			t.Errorf("%s for an ended test: panic %v, %d cleanups registered; want it refused with %q", st.name, got, ft.cleanups, want)
		}
	}
}

// endedTB is a test that has ended. It hands cleanups to the live test so
// that nothing is left behind.
type endedTB struct {
	testing.TB
	live     testing.TB
	cleanups int
}

func (f *endedTB) Helper()                         {}
func (f *endedTB) Logf(format string, args ...any) { f.live.Logf(format, args...) }

func (f *endedTB) Cleanup(fn func()) {
	f.cleanups++
	f.live.Cleanup(fn)
}

// TestLookPathNotExecutable: a redis-server in PATH that exec.LookPath
// passes over, as it may not be run, is named in the error, which would
// otherwise send the reader to install what they can see is there.
func TestLookPathNotExecutable(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "redis-server")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	_, err := redistest.LookPath()
	if err == nil {
		t.Fatal("LookPath found a file that is not executable")
	}
	for _, want := range []string{bin + " is not an executable file", "chmod +x", "apt-get install"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LookPath() error = %v; want it to say %q", err, want)
		}
	}
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("LookPath() error %v does not wrap exec.ErrNotFound", err)
	}
}

// fakeTB records a fatal failure instead of failing the real test.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Skip(...any)          { panic("redistest must not skip") }
func (f *fakeTB) Skipf(string, ...any) { panic("redistest must not skip") }
func (f *fakeTB) SkipNow()             { panic("redistest must not skip") }
func (f *fakeTB) Cleanup(func())       { panic("nothing was started, nothing to clean up") }

func TestClusterServesKeysOnTheRightMaster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 0)
	if len(c.Masters) != 3 || len(c.Replicas) != 0 || len(c.Addrs()) != 3 {
		t.Fatalf("cluster has %d masters, %d replicas, addrs %v", len(c.Masters), len(c.Replicas), c.Addrs())
	}
	for _, s := range c.Masters {
		info, _ := s.MustDo(t, "CLUSTER", "INFO").(string)
		if !strings.Contains(info, "cluster_state:ok") {
			t.Errorf("%s: CLUSTER INFO = %q", s.Addr, info)
		}
	}

	// A slot outside the cluster's is no master's, and is said to be
	// out of range rather than served by no node.
	for _, slot := range []int{-1, 16384} {
		if s, err := c.SlotOwner(slot); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("SlotOwner(%d) = %v, %v; want an error saying it is out of range", slot, s, err)
		}
	}

	const key = "user:1000"
	owner := slotOwner(t, c, key)
	if v := owner.MustDo(t, "SET", key, "alice"); v != "OK" {
		t.Fatalf("SET on the owner = %#v", v)
	}
	if v := owner.MustDo(t, "GET", key); v != "alice" {
		t.Errorf("GET on the owner = %#v", v)
	}
	for _, s := range c.Masters {
		if s == owner {
			continue
		}
		v, err := s.Do("GET", key)
		if e, ok := v.(redistest.ReplyError); err != nil || !ok || e.Prefix() != "MOVED" || !strings.HasSuffix(string(e), owner.Addr) {
			t.Errorf("GET on %s = %#v, %v; want MOVED to %s", s.Addr, v, err, owner.Addr)
		}
	}
}

func TestClusterWithReplicas(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 1)
	if len(c.Masters) != 3 || len(c.Replicas) != 3 {
		t.Fatalf("cluster has %d masters and %d replicas", len(c.Masters), len(c.Replicas))
	}
	for i, r := range c.Replicas {
		info, _ := r.MustDo(t, "INFO", "replication").(string)
		master := c.Masters[i]
		if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_port:"+strconv.Itoa(master.Port)) {
			t.Errorf("replica %s does not replicate %s:\n%s", r.Addr, master.Addr, info)
		}
	}

	const key = "greeting"
	owner := slotOwner(t, c, key)
	// WAIT counts the writes of its own connection: it follows the SET on
	// the same one.
	if v, err := owner.Pipeline([]string{"SET", key, "hello"}, []string{"WAIT", "1", "5000"}); err != nil || v[1] != int64(1) {
		t.Fatalf("SET and WAIT = %#v, %v; want 1 replica", v, err)
	}
	replica := c.Replicas[indexOf(c.Masters, owner)]
	replies, err := replica.Pipeline([]string{"READONLY"}, []string{"GET", key})
	if err != nil || fmt.Sprint(replies) != "[OK hello]" {
		info, _ := replica.Do("INFO", "replication")
		minfo, _ := owner.Do("INFO", "replication")
		slots, _ := replica.Do("CLUSTER", "NODES")
		t.Errorf("READONLY, GET on the replica = %#v, %v\nreplica %s:\n%v\nowner %s:\n%v\n%v", replies, err, replica.Addr, info, owner.Addr, minfo, slots)
	}
}

// NewCluster is for programs (the demo, the bench) that stop the cluster
// themselves: Stop must end every node, free its port and remove its
// directory, and may be called again.
func TestNewClusterStop(t *testing.T) {
	t.Parallel()
	c, err := redistest.NewCluster(0)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	if len(c.Masters) != 3 || len(c.Replicas) != 0 {
		t.Fatalf("cluster has %d masters and %d replicas", len(c.Masters), len(c.Replicas))
	}
	var pids []int
	for _, s := range c.Masters {
		info, _ := s.MustDo(t, "CLUSTER", "INFO").(string)
		if !strings.Contains(info, "cluster_state:ok") {
			t.Errorf("%s: CLUSTER INFO = %q", s.Addr, info)
		}
		pids = append(pids, s.Pid())
	}
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for i, s := range c.Masters {
		if alive(pids[i]) {
			t.Errorf("node %s (pid %d) still running after Stop", s.Addr, pids[i])
		}
		if conn, err := net.Dial("tcp", s.Addr); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after Stop", s.Addr)
		}
		if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Dir %s still exists after Stop: %v", s.Dir, err)
		}
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestNewClusterRefusesNegativeReplicas(t *testing.T) {
	t.Parallel()
	if c, err := redistest.NewCluster(-1); err == nil {
		c.Stop()
		t.Fatal("NewCluster(-1) succeeded")
	} else if !strings.Contains(err.Error(), "negative number of replicas") {
		t.Errorf("NewCluster(-1): %v", err)
	}
}

// TestNewClusterRefusesHugeReplicas: a count of replicas past what a
// cluster is designed for is refused before any process starts, rather
// than overflowing into a cluster without replicas or starting processes
// until the machine runs out.
func TestNewClusterRefusesHugeReplicas(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1 << 62, math.MaxInt, 333} {
		c, err := redistest.NewCluster(n)
		if err == nil {
			c.Stop()
			t.Fatalf("NewCluster(%d) succeeded, with %d replicas", n, len(c.Replicas))
		}
		if !strings.Contains(err.Error(), "more than the 332") {
			t.Errorf("NewCluster(%d): %v", n, err)
		}
	}
}

// TestSlotRangeReachingPastTheSlots: a range past the cluster's slots ends
// one slot outside them, which BeginMigration refuses by number, instead
// of listing every int up to last, or looping forever at math.MaxInt.
func TestSlotRangeReachingPastTheSlots(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		first, last int
		want        []int
	}{
		{16380, 20000, []int{16380, 16381, 16382, 16383, 16384}},
		{-5000, 1, []int{-1, 0, 1}},
		{16383, math.MaxInt, []int{16383, 16384}},
		{math.MinInt, -2, []int{math.MinInt}},
		{20000, math.MaxInt, []int{20000}},
		{3, 2, nil},
		{7, 7, []int{7}},
	} {
		if got := redistest.SlotRange(tc.first, tc.last); !slices.Equal(got, tc.want) {
			t.Fatalf("SlotRange(%d, %d) = %v, want %v", tc.first, tc.last, got, tc.want)
		}
	}
}

// slotOwner finds the master serving key with CLUSTER KEYSLOT and CLUSTER
// SLOTS, the way a cluster client does.
func slotOwner(t *testing.T, c *redistest.Cluster, key string) *redistest.Server {
	t.Helper()
	slot, ok := c.Masters[0].MustDo(t, "CLUSTER", "KEYSLOT", key).(int64)
	if !ok {
		t.Fatal("CLUSTER KEYSLOT did not return an integer")
	}
	ranges, _ := c.Masters[0].MustDo(t, "CLUSTER", "SLOTS").([]any)
	for _, r := range ranges {
		r, _ := r.([]any)
		if len(r) < 3 {
			continue
		}
		lo, _ := r[0].(int64)
		hi, _ := r[1].(int64)
		node, _ := r[2].([]any)
		if slot < lo || slot > hi || len(node) < 2 {
			continue
		}
		port, _ := node[1].(int64)
		for _, m := range c.Masters {
			if int64(m.Port) == port {
				return m
			}
		}
		t.Fatalf("slot %d is served by port %d, which is no master of the cluster", slot, port)
	}
	t.Fatalf("no master serves slot %d; CLUSTER SLOTS = %#v", slot, ranges)
	return nil
}

func indexOf(servers []*redistest.Server, s *redistest.Server) int {
	for i, x := range servers {
		if x == s {
			return i
		}
	}
	return -1
}

// alive reports whether pid is a running process. A zombie counts as gone:
// it no longer serves anything, and whether it is reaped depends on the
// init process of the machine, not on this package.
func alive(pid int) bool {
	if runtime.GOOS == "linux" {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return false
		}
		// The state follows the parenthesised command name.
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
			return s[i+2] != 'Z'
		}
		return true
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}

// waitGone waits up to timeout for pid to exit.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// A nil *Server, such as the result of a failed call passed on, is refused
// with an error by the Cluster methods that take a node, not a panic.
func TestClusterRefusesNilServer(t *testing.T) {
	c := &redistest.Cluster{}
	ctx := context.Background()
	if _, err := c.ReplicasOf(nil); err == nil {
		t.Error("ReplicasOf(nil) = nil error")
	}
	if _, err := c.Failover(ctx, nil); err == nil {
		t.Error("Failover(nil) = nil error")
	}
	if _, err := c.KillMaster(ctx, nil); err == nil {
		t.Error("KillMaster(nil) = nil error")
	}
	if err := c.Rejoin(ctx, nil); err == nil {
		t.Error("Rejoin(nil) = nil error")
	}
	if err := c.MoveSlots(ctx, nil, nil, 1); err == nil {
		t.Error("MoveSlots(nil, nil) = nil error")
	}
	// With no master to ask, SlotOwner says so rather than index one.
	if _, err := c.SlotOwner(0); err == nil {
		t.Error("SlotOwner on a cluster without masters = nil error")
	}
}
