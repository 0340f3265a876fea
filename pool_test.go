package redpipe

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// finLost is a connection whose reader is not told that the server closed
// it until the client writes on it again, as when the server's FIN never
// reached the client (a NAT or firewall that forgot the connection, a host
// gone without a word): the connection looks idle and healthy, and only
// using it shows it is dead.
type finLost struct {
	net.Conn
	ended     chan struct{} // closed when the socket has reached its end
	told      chan struct{} // closed when the reader may say so: a write after the end, or Close
	endedOnce sync.Once
	toldOnce  sync.Once
}

func (c *finLost) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.endedOnce.Do(func() { close(c.ended) })
		<-c.told
	}
	return n, err
}

func (c *finLost) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	select {
	case <-c.ended:
		c.toldOnce.Do(func() { close(c.told) })
	default:
	}
	return n, err
}

func (c *finLost) Close() error {
	c.toldOnce.Do(func() { close(c.told) })
	return c.Conn.Close()
}

// finLostDialer dials finLost connections and finds them by their local
// address, which is how CLIENT LIST names them.
type finLostDialer struct {
	mu    sync.Mutex
	conns map[string]*finLost
}

func (d *finLostDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &finLost{Conn: nc, ended: make(chan struct{}), told: make(chan struct{})}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns == nil {
		d.conns = make(map[string]*finLost)
	}
	d.conns[nc.LocalAddr().String()] = c
	return c, nil
}

func (d *finLostDialer) conn(addr string) *finLost {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[addr]
}

// serverClients returns CLIENT LIST as the fields of each connection, by
// key: id, addr, name and so on.
func serverClients(t *testing.T, srv *redistest.Server) []map[string]string {
	t.Helper()
	list, ok := srv.MustDo(t, "CLIENT", "LIST").(string)
	if !ok {
		t.Fatal("CLIENT LIST did not reply with text")
	}
	var clients []map[string]string
	for line := range strings.Lines(list) {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = v
			}
		}
		clients = append(clients, fields)
	}
	return clients
}

// namedClientAddrs returns the addresses of srv's clients whose
// connections are named name (Options.ClientName).
func namedClientAddrs(t *testing.T, srv *redistest.Server, name string) []string {
	t.Helper()
	var addrs []string
	for _, cl := range serverClients(t, srv) {
		if cl["name"] == name {
			addrs = append(addrs, cl["addr"])
		}
	}
	return addrs
}

// waitForServer checks cond until it holds, failing the test if ctx ends
// first with what cond last saw.
func waitForServer(t *testing.T, ctx context.Context, what string, cond func() (ok bool, seen string)) {
	t.Helper()
	for {
		ok, seen := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last seen: %s", what, ctx.Err(), seen)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestIdleCheckReplacesDeadConnection: a dedicated connection killed by
// the server while idle in the pool, with the end hidden from the client,
// is found dead by the check before it is lent, and the Watch that asked
// for it gets a new connection with no error. Retries are off, so it is
// the check that saves the caller; without it (IdleCheckAfter -1) the
// caller gets the dead connection and its error.
func TestIdleCheckReplacesDeadConnection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		check   time.Duration
		wantErr bool
	}{
		{"checked", time.Nanosecond, false},
		{"not checked", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			d := &finLostDialer{}
			c, err := NewClient(Options{Addr: srv.Addr, Dialer: d.dial, PoolSize: 2, IdleCheckAfter: tc.check, MaxRetries: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := ctxT(t)

			tx, err := c.Watch(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			addr := tx.d.LocalAddr().String()
			tx.Close()
			if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
				t.Fatalf("pool open=%d idle=%d after the session, want its connection idle", open, idle)
			}
			var id string
			for _, cl := range serverClients(t, srv) {
				if cl["addr"] == addr {
					id = cl["id"]
				}
			}
			if id == "" {
				t.Fatalf("CLIENT LIST does not show the dedicated connection %s", addr)
			}
			if _, err := srv.Do("CLIENT", "KILL", "ID", id); err != nil {
				t.Fatal(err)
			}
			// The client's socket reaches its end; its reader is not told.
			select {
			case <-d.conn(addr).ended:
			case <-ctx.Done():
				t.Fatal("the killed connection's socket never reached its end")
			}

			tx, err = c.Watch(ctx, "k")
			if tc.wantErr {
				if err == nil {
					tx.Close()
					t.Fatal("Watch on a dead connection, not checked, succeeded: the test does not make the connection it means to")
				}
				return
			}
			if err != nil {
				t.Fatalf("Watch after the idle connection died: %v", err)
			}
			defer tx.Close()
			if tx.d.LocalAddr().String() == addr {
				t.Fatal("Watch was lent the dead connection")
			}
			if replies, err := tx.Multi().Set("k", "v").Exec(ctx); err != nil || replies[0].String() != "OK" {
				t.Fatalf("Exec on the new connection = %v, %v", replies, err)
			}
			if open, _ := c.pool.Stats(); open != 1 {
				t.Fatalf("pool open=%d, want only the new connection", open)
			}
		})
	}
}

// TestIdleCheckRefusedStillAlive: the idle check's PING refused by the
// server (an ACL user without the right to PING) is a reply, which proves
// the connection alive: it is lent again, not closed and replaced by a
// new dial before every session.
func TestIdleCheckRefusedStillAlive(t *testing.T) {
	srv := redistest.Start(t)
	srv.MustDo(t, "ACL", "SETUSER", "noping", "on", ">noping-pw", "~*", "+@all", "-ping")
	c, err := NewClient(Options{Addr: srv.Addr, Username: "noping", Password: "noping-pw", PoolSize: 2,
		IdleCheckAfter: time.Nanosecond, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	var first string
	for i := range 3 {
		tx, err := c.Watch(ctx, "k")
		if err != nil {
			t.Fatalf("Watch %d: %v", i, err)
		}
		addr := tx.d.LocalAddr().String()
		if i == 0 {
			first = addr
		}
		_, err = tx.Multi().Set("k", i).Exec(ctx)
		tx.Close()
		if err != nil {
			t.Fatalf("Exec %d: %v", i, err)
		}
		if addr != first {
			t.Fatalf("session %d was lent connection %s, not %s, idle since the last: its check's refused PING closed it", i, addr, first)
		}
	}
	if open, idle := c.pool.Stats(); open != 1 || idle != 1 {
		t.Fatalf("pool open=%d idle=%d, want the one connection, idle", open, idle)
	}
}

// TestMaxIdleNone: with MaxIdle -1 a dedicated connection is closed as soon
// as its session ends; none stays idle, in the pool or on the server.
func TestMaxIdleNone(t *testing.T) {
	const name = "max-idle-none"
	c, srv := newTestClient(t, Options{MaxIdle: -1, ClientName: name})
	ctx := ctxT(t)
	named := func() (int, string) {
		addrs := namedClientAddrs(t, srv, name)
		return len(addrs), strings.Join(addrs, " ")
	}
	if _, err := c.Ping(ctx); err != nil { // the shared connection
		t.Fatal(err)
	}
	for range 2 {
		tx, err := c.Watch(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if n, seen := named(); n != 2 {
			t.Fatalf("%d connections named %s during the session (%s), want the shared and the dedicated one", n, name, seen)
		}
		if err := tx.Close(); err != nil {
			t.Fatal(err)
		}
		if open, idle := c.pool.Stats(); open != 0 || idle != 0 {
			t.Fatalf("pool open=%d idle=%d after the session, want none", open, idle)
		}
		waitForServer(t, ctx, "the dedicated connection to be gone from CLIENT LIST", func() (bool, string) {
			n, seen := named()
			return n == 1, seen
		})
	}
}
