package redpipe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

func TestParseURLValid(t *testing.T) {
	cases := []struct {
		url  string
		want Options // TLSConfig is checked through wantTLS
		// wantTLS is the ServerName expected in TLSConfig, or "" for none.
		wantTLS string
	}{
		{url: "redis://", want: Options{Network: "tcp", Addr: "localhost:6379"}},
		{url: "redis://h", want: Options{Network: "tcp", Addr: "h:6379"}},
		{url: "redis://h:7000", want: Options{Network: "tcp", Addr: "h:7000"}},
		{url: "redis://:pw@h:1/3", want: Options{Network: "tcp", Addr: "h:1", Password: "pw", DB: 3}},
		{url: "redis://user:pw@h", want: Options{Network: "tcp", Addr: "h:6379", Username: "user", Password: "pw"}},
		{url: "redis://pw@h", want: Options{Network: "tcp", Addr: "h:6379", Password: "pw"}},
		{url: "redis://user:@h", want: Options{Network: "tcp", Addr: "h:6379", Username: "user"}},
		{url: "redis://:@h", want: Options{Network: "tcp", Addr: "h:6379"}},
		{url: "redis://:p%40ss%3Aw%2Frd@h", want: Options{Network: "tcp", Addr: "h:6379", Password: "p@ss:w/rd"}},
		{url: "redis://h/", want: Options{Network: "tcp", Addr: "h:6379"}},
		{url: "redis://h/15", want: Options{Network: "tcp", Addr: "h:6379", DB: 15}},
		{url: "redis://[::1]:7000/1", want: Options{Network: "tcp", Addr: "[::1]:7000", DB: 1}},
		{url: "redis://[fe80::1%25eth0]:7000", want: Options{Network: "tcp", Addr: "[fe80::1%eth0]:7000"}},
		{url: "redis://[fe80::1%25lo]/2", want: Options{Network: "tcp", Addr: "[fe80::1%lo]:6379", DB: 2}},
		{url: "redis://127.0.0.1:6380", want: Options{Network: "tcp", Addr: "127.0.0.1:6380"}},
		{url: "rediss://h", want: Options{Network: "tcp", Addr: "h:6379"}, wantTLS: "h"},
		{url: "rediss://u:pw@cache.example:6380/2", want: Options{Network: "tcp", Addr: "cache.example:6380", Username: "u", Password: "pw", DB: 2}, wantTLS: "cache.example"},
		{url: "rediss://127.0.0.1:6380", want: Options{Network: "tcp", Addr: "127.0.0.1:6380"}, wantTLS: "127.0.0.1"},
		{url: "unix:///tmp/x.sock", want: Options{Network: "unix", Addr: "/tmp/x.sock"}},
		{url: "unix:///tmp/x.sock?db=2", want: Options{Network: "unix", Addr: "/tmp/x.sock", DB: 2}},
		{url: "unix://:pw@/tmp/x.sock", want: Options{Network: "unix", Addr: "/tmp/x.sock", Password: "pw"}},
		{url: "redis://h?db=4", want: Options{Network: "tcp", Addr: "h:6379", DB: 4}},
		{url: "redis://h?protocol=2", want: Options{Network: "tcp", Addr: "h:6379", Protocol: 2}},
		{url: "redis://h?protocol=3", want: Options{Network: "tcp", Addr: "h:6379", Protocol: 3}},
		{url: "redis://h?client_name=app-1", want: Options{Network: "tcp", Addr: "h:6379", ClientName: "app-1"}},
		{url: "redis://h/2?db=2", want: Options{Network: "tcp", Addr: "h:6379", DB: 2}},
		{url: "redis://h?dial_timeout=500ms", want: Options{Network: "tcp", Addr: "h:6379", DialTimeout: 500 * time.Millisecond}},
		{url: "redis://h?pool_size=4&max_idle=2", want: Options{Network: "tcp", Addr: "h:6379", PoolSize: 4, MaxIdle: 2}},
		{url: "redis://h?max_idle=-1", want: Options{Network: "tcp", Addr: "h:6379", MaxIdle: -1}},
		{
			url:  "redis://h?max_idle_time=10m&max_conn_age=1h30m&idle_check_after=500ms",
			want: Options{Network: "tcp", Addr: "h:6379", MaxIdleTime: 10 * time.Minute, MaxConnAge: 90 * time.Minute, IdleCheckAfter: 500 * time.Millisecond},
		},
		{url: "redis://h?max_idle_time=-1&idle_check_after=-1", want: Options{Network: "tcp", Addr: "h:6379", MaxIdleTime: -1, IdleCheckAfter: -1}},
		{url: "redis://h?max_conn_age=0", want: Options{Network: "tcp", Addr: "h:6379"}},
		{
			url:  "redis://u:pw@h:1?db=2&protocol=2&client_name=worker&dial_timeout=2s&pool_size=8&max_idle=3",
			want: Options{Network: "tcp", Addr: "h:1", Username: "u", Password: "pw", DB: 2, Protocol: 2, ClientName: "worker", DialTimeout: 2 * time.Second, PoolSize: 8, MaxIdle: 3},
		},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			got, err := ParseURL(tc.url)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			switch {
			case tc.wantTLS == "" && got.TLSConfig != nil:
				t.Errorf("TLSConfig = %+v, want none", got.TLSConfig)
			case tc.wantTLS != "" && got.TLSConfig == nil:
				t.Errorf("no TLSConfig, want one for %s", tc.wantTLS)
			case tc.wantTLS != "":
				if got.TLSConfig.ServerName != tc.wantTLS {
					t.Errorf("TLSConfig.ServerName = %q, want %q", got.TLSConfig.ServerName, tc.wantTLS)
				}
				if got.TLSConfig.MinVersion < tls.VersionTLS12 {
					t.Errorf("TLSConfig.MinVersion = %x, want TLS 1.2 or later", got.TLSConfig.MinVersion)
				}
				if got.TLSConfig.InsecureSkipVerify {
					t.Error("rediss:// turned off certificate verification")
				}
			}
			got.TLSConfig = nil
			if optionFields(got) != optionFields(tc.want) {
				t.Errorf("ParseURL(%q)\n got %+v\nwant %+v", tc.url, optionFields(got), optionFields(tc.want))
			}
			// Every valid URL here also makes a valid client.
			if _, err := NewClient(got); err != nil {
				t.Errorf("NewClient: %v", err)
			}
		})
	}
}

// optionFields prints every field, the password included, which String
// would hide. Options holds funcs, so it cannot be compared with ==; two
// Options without funcs are equal when this prints them the same.
func optionFields(o Options) string {
	type plain Options
	return fmt.Sprintf("%+v", plain(o))
}

// TestParseURLInvalid: every bad URL is an *OptionError whose Field names
// the culprit. A URL that parses but holds a bad value is caught by
// NewClient's checks instead, so each case goes through both.
func TestParseURLInvalid(t *testing.T) {
	cases := []struct {
		url       string
		field     string // the Field: alternatives split by |, each exact or, ending in *, a prefix
		mentioned string // something the message must mention
	}{
		{"http://h", "URL scheme", `"http"`},
		{"h:6379", "URL scheme", "write it as redis://h:6379"},
		{"localhost", "URL scheme", "write it as redis://localhost"},
		{"127.0.0.1:6379", "URL scheme", "write it as redis://127.0.0.1:6379"},
		{"[::1]:6379", "URL scheme", "write it as redis://[::1]:6379"},
		{"user:secret@h:6379", "URL scheme", "write it as redis://host:6379"},
		{"redis://h:abc", "URL", "port"},
		{"redis://h:6379:1", "URL*|Addr", "h:6379"},
		{"redis://h:99999", "URL*", "99999"},
		{"redis://h:-1", "URL", "port"},
		{"redis://[::1", "URL", "]"},
		{"redis://::1:6380", "URL host", "brackets"},
		{"redis://fe80::1:6379/2", "URL host", "[::1]:6379"},
		{"rediss://2001:db8::1", "URL host", "rediss://[::1]:6379"},
		{"redis://:secret@::1:6380", "URL host", "brackets"},
		{"redis://h/abc", "URL path", `"abc"`},
		{"redis://h/1/2", "URL path", `"1/2"`},
		{"redis://h/-1", "DB", "-1"},
		{"unix://", "URL path", "socket"},
		{"unix://h", "URL", "unix:///"},
		{"unix://tmp/redis.sock", "URL", "unix:///"},
		{"unix://h:1/s", "URL", "unix:///"},
		{"redis:myhost:6380", "URL", "redis://"},
		{"unix:relative.sock", "URL", "unix:///"},
		{"redis://host#frag", "URL", "%23"},
		{"redis://:secret#x@h", "URL", "%23"},
		{"redis://h?db=%zz", "URL options", "escape"},
		{"redis://h?db=2;protocol=3", "URL options", "semicolon"},
		{"redis://h?db=x", "URL option db", `"x"`},
		{"redis://h?db=-2", "DB", "-2"},
		{"redis://h?nosuch=1", "URL option nosuch", "not known"},
		{"redis://h?DB=1", "URL option DB", "not known"},
		{"redis://h?db=1&db=2", "URL option db", "2 times"},
		{"redis://h?protocol=3&protocol=3", "URL option protocol", "2 times"},
		{"redis://h?pool_size=1&client_name=a&pool_size=2&pool_size=3", "URL option pool_size", "3 times"},
		{"redis://h/1?db=2", "URL option db", `"1"`},
		{"rediss://h/0?db=3", "URL option db", "once"},
		{"redis://h?protocol=4", "URL option protocol", "2 or 3"},
		{"redis://h?protocol=three", "URL option protocol", "2 or 3"},
		{"redis://h?dial_timeout=5", "URL option dial_timeout", "duration"},
		{"redis://h?dial_timeout=-1s", "DialTimeout", "negative"},
		{"redis://h?pool_size=many", "URL option pool_size", `"many"`},
		{"redis://h?pool_size=-1", "PoolSize", "-1"},
		{"redis://h?max_idle=x", "URL option max_idle", `"x"`},
		{"redis://h?pool_size=2&max_idle=5", "MaxIdle", "PoolSize"},
		{"redis://h?max_idle=-2", "MaxIdle", "-2"},
		{"redis://h?max_idle_time=5", "URL option max_idle_time", "duration"},
		{"redis://h?max_idle_time=-5s", "MaxIdleTime", "-5s"},
		{"redis://h?max_conn_age=forever", "URL option max_conn_age", `"forever"`},
		{"redis://h?max_conn_age=forever", "URL option max_conn_age", "0 for no limit"},
		{"redis://h?max_idle_time=forever", "URL option max_idle_time", "or -1"},
		{"redis://h?max_conn_age=-1", "MaxConnAge", "negative"},
		{"redis://h?idle_check_after=1", "URL option idle_check_after", "duration"},
		{"redis://h?idle_check_after=-1ms", "IdleCheckAfter", "-1ms"},
		{"redis://h?client_name=a%20b", "ClientName", "space"},
		{"redis://h?client_name=a%0Db", "ClientName", "newline"},
		{"redis://h?client_name=a%09b", "ClientName", "printable"},
		{"redis://h?client_name=na%C3%AFve", "ClientName", "printable"},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			opt, err := ParseURL(tc.url)
			if err == nil {
				_, err = NewClient(opt)
			}
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("err = %v, want an *OptionError", err)
			}
			if !fieldMatches(oe.Field, tc.field) {
				t.Errorf("Field = %q, want %q (%v)", oe.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.mentioned) {
				t.Errorf("error %q does not mention %s", err, tc.mentioned)
			}
			if OutcomeOf(err) != OutcomeNotSent {
				t.Errorf("OutcomeOf = %v, want not sent", OutcomeOf(err))
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q quotes the password", err)
			}
		})
	}
}

// A password with an unencoded / or ? ends the URL's host there, and the
// rest of it is read as the path or the query, the @ with it: an error
// then quotes none of the URL's parts, alone or named as a cluster's seed.
func TestParseURLPasswordCutShort(t *testing.T) {
	cases := []struct {
		url    string
		pieces []string // parts of the password
	}{
		{"redis://default:12345/s3cret@cache.example:6379", []string{"s3cret"}}, // the path
		{"redis://:1234?s3cret@cache.example", []string{"s3cret"}},              // an option's name
		{"redis://:1234?db=s3cret&x@cache.example", []string{"s3cret"}},         // an option's value
		{"redis://:1234?db=s3cret%zz@cache.example", []string{"%zz"}},           // the query's syntax
		{"redis://u:99999/s3cret@cache.example", []string{"99999"}},             // the port
		{"redis://u:s3cret:1/x@cache.example", []string{"s3cret"}},              // the host
		{"unix://u:4321/s3cret@/tmp/redis.sock", []string{"4321"}},              // a unix URL's host
	}
	for _, tc := range cases {
		_, err := ParseURL(tc.url)
		var oe *OptionError
		if !errors.As(err, &oe) {
			t.Errorf("ParseURL(%q) = %v, want an *OptionError", tc.url, err)
			continue
		}
		_, cerr := ConnectCluster(context.Background(), "redis://cache.example:6379", tc.url)
		if !errors.As(cerr, &oe) || !strings.Contains(cerr.Error(), "seed 2 of 2") {
			t.Errorf("ConnectCluster with %q = %v, want an *OptionError naming the second seed", tc.url, cerr)
			continue
		}
		for _, msg := range []string{err.Error(), cerr.Error()} {
			for _, piece := range tc.pieces {
				if strings.Contains(msg, piece) {
					t.Errorf("the error for %q shows %q, part of the password: %s", tc.url, piece, msg)
				}
			}
			if !strings.Contains(msg, "percent-encode") {
				t.Errorf("the error for %q = %s, want it to say to percent-encode the password", tc.url, msg)
			}
		}
	}
}

// fieldMatches reports whether field is one of the alternatives of want,
// split by |, each exact or, ending in *, a prefix.
func fieldMatches(field, want string) bool {
	for _, alt := range strings.Split(want, "|") {
		if prefix, ok := strings.CutSuffix(alt, "*"); ok && strings.HasPrefix(field, prefix) || field == alt {
			return true
		}
	}
	return false
}

func TestOptionsInvalid(t *testing.T) {
	cases := []struct {
		name  string
		opt   Options
		field string
	}{
		{"negative DB", Options{DB: -1}, "DB"},
		{"MaxIdle over PoolSize", Options{PoolSize: 2, MaxIdle: 3}, "MaxIdle"},
		{"MaxIdle -2", Options{MaxIdle: -2}, "MaxIdle"},
		{"MaxIdleTime -1m", Options{MaxIdleTime: -time.Minute}, "MaxIdleTime"},
		{"negative MaxConnAge", Options{MaxConnAge: -1}, "MaxConnAge"},
		{"IdleCheckAfter -1s", Options{IdleCheckAfter: -time.Second}, "IdleCheckAfter"},
		{"negative PoolSize", Options{PoolSize: -1}, "PoolSize"},
		{"bad Network", Options{Network: "udp"}, "Network"},
		{"Network in capitals", Options{Network: "TCP"}, "Network"},
		{"unix without a path", Options{Network: "unix"}, "Addr"},
		{"TLS over a unix socket without a ServerName", Options{Network: "unix", Addr: "/tmp/redis.sock", TLSConfig: &tls.Config{}}, "TLSConfig"},
		{"Addr without a port", Options{Addr: "localhost"}, "Addr"},
		{"ClientName with a space", Options{ClientName: "my app"}, "ClientName"},
		{"ClientName with a newline", Options{ClientName: "app\n"}, "ClientName"},
		{"ClientName with a tab", Options{ClientName: "my\tapp"}, "ClientName"},
		{"ClientName with a NUL", Options{ClientName: "app\x00"}, "ClientName"},
		{"ClientName with a DEL", Options{ClientName: "app\x7f"}, "ClientName"},
		{"ClientName not ASCII", Options{ClientName: "naïve"}, "ClientName"},
		{"ClientName not UTF-8", Options{ClientName: "app\xff"}, "ClientName"},
		{"ReplyTimeout -5s", Options{ReplyTimeout: -5 * time.Second}, "ReplyTimeout"},
		{"PollWait -5µs", Options{PollWait: -5 * time.Microsecond}, "PollWait"},
		{"PollWait 2ms", Options{PollWait: 2 * time.Millisecond}, "PollWait"},
		{"negative DialTimeout", Options{DialTimeout: -time.Second}, "DialTimeout"},
		{"Protocol 4", Options{Protocol: 4}, "Protocol"},
		{"Protocol 1", Options{Protocol: 1}, "Protocol"},
		{"MaxRetries -2", Options{MaxRetries: -2}, "MaxRetries"},
		{"negative MaxReplyBytes", Options{MaxReplyBytes: -1}, "MaxReplyBytes"},
		{"negative MaxReplyElems", Options{MaxReplyElems: -1}, "MaxReplyElems"},
		{"negative MaxReplyDepth", Options{MaxReplyDepth: -1}, "MaxReplyDepth"},
		{"MaxReplyDepth over 65536", Options{MaxReplyDepth: 1<<16 + 1}, "MaxReplyDepth"},
		{"MaxReplyDepth the largest int", Options{MaxReplyDepth: math.MaxInt}, "MaxReplyDepth"},
		{"Tx.MaxAttempts -1", Options{Tx: TxOptions{MaxAttempts: -1}}, "Tx.MaxAttempts"},
		{"negative Tx.MinBackoff", Options{Tx: TxOptions{MinBackoff: -time.Millisecond}}, "Tx.MinBackoff"},
		{"negative Tx.MaxBackoff", Options{Tx: TxOptions{MaxBackoff: -1}}, "Tx.MaxBackoff"},
		{"negative Tx.WatchDelay", Options{Tx: TxOptions{WatchDelay: -time.Second}}, "Tx.WatchDelay"},
		{"Tx.MaxBackoff under MinBackoff", Options{Tx: TxOptions{MinBackoff: time.Second, MaxBackoff: time.Millisecond}}, "Tx.MaxBackoff"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(tc.opt)
			if err == nil {
				c.Close()
				t.Fatalf("NewClient(%s) succeeded", tc.opt)
			}
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Field != tc.field {
				t.Fatalf("err = %v, want an *OptionError for %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
		})
	}
}

// TLS over a unix socket has no host in Addr to check the server's
// certificate against: it needs a ServerName, unless the certificate is
// not checked or a Dialer makes the connection.
func TestTLSOverUnixSocketNeedsServerName(t *testing.T) {
	dialer := func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no") }
	for _, opt := range []Options{
		{Network: "unix", Addr: "/tmp/redis.sock", TLSConfig: &tls.Config{ServerName: "redis.internal"}},
		{Network: "unix", Addr: "/tmp/redis.sock", TLSConfig: &tls.Config{InsecureSkipVerify: true}},
		{Network: "unix", Addr: "/tmp/redis.sock", TLSConfig: &tls.Config{}, Dialer: dialer},
		{Addr: "redis.internal:6379", TLSConfig: &tls.Config{}},
	} {
		c, err := NewClient(opt)
		if err != nil {
			t.Errorf("NewClient(%s, ServerName %q) = %v", opt, opt.TLSConfig.ServerName, err)
			continue
		}
		c.Close()
	}
}

// TestTLSOverUnixDialerNeedsServerName: a Dialer for a unix socket's
// Addr that returns a plain connection, with a TLSConfig that has no
// ServerName: the dial fails with words that name the option to set,
// not crypto/tls's, and the connection is closed.
func TestTLSOverUnixDialerNeedsServerName(t *testing.T) {
	s := redistest.Start(t)
	var nd net.Dialer
	var dialed atomic.Pointer[net.Conn]
	c, err := NewClient(Options{Network: "unix", Addr: "/tmp/redpipe-no-such.sock", TLSConfig: &tls.Config{}, MaxRetries: -1,
		Dialer: func(ctx context.Context, _, _ string) (net.Conn, error) {
			nc, err := nd.DialContext(ctx, "tcp", s.Addr)
			if err == nil {
				dialed.Store(&nc)
			}
			return nc, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Ping(ctxT(t))
	var de *DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "set TLSConfig.ServerName") {
		t.Fatalf("Ping = %v, want a *DialError that says to set TLSConfig.ServerName", err)
	}
	p := dialed.Load()
	if p == nil {
		t.Fatal("the Dialer was not called")
	}
	if _, err := (*p).Write([]byte("PING\r\n")); err == nil {
		t.Error("the Dialer's connection is still open")
	}
}

// TestOptionsDefaults: the zero Options means the defaults the Options
// documentation gives.
func TestOptionsDefaults(t *testing.T) {
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := c.Options()
	want := Options{
		Network:        "tcp",
		Addr:           "localhost:6379",
		DialTimeout:    5 * time.Second,
		PoolSize:       10 * runtime.GOMAXPROCS(0),
		MaxIdle:        10 * runtime.GOMAXPROCS(0),
		MaxIdleTime:    30 * time.Minute,
		IdleCheckAfter: 5 * time.Second,
		ReplyTimeout:   10 * time.Second,
		PollWait:       100 * time.Microsecond,
		MaxRetries:     3,
	}
	// The reply limits are applied by the reader, which treats 0 as its
	// default; Options shows them either as 0 or as the documented value.
	for _, f := range []struct {
		name     string
		got, def int64
	}{
		{"MaxReplyBytes", got.MaxReplyBytes, 512 << 20},
		{"MaxReplyElems", got.MaxReplyElems, 1<<32 - 1},
		{"MaxReplyDepth", int64(got.MaxReplyDepth), 128},
	} {
		if f.got != 0 && f.got != f.def {
			t.Errorf("%s = %d, want the default %d", f.name, f.got, f.def)
		}
	}
	got.MaxReplyBytes, got.MaxReplyElems, got.MaxReplyDepth = 0, 0, 0
	if optionFields(got) != optionFields(want) {
		t.Errorf("defaults\n got %+v\nwant %+v", optionFields(got), optionFields(want))
	}
	// The same for a unix socket, whose Addr has no default.
	c2, err := NewClient(Options{Network: "unix", Addr: "/tmp/r.sock"})
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if o := c2.Options(); o.Addr != "/tmp/r.sock" || o.DialTimeout != 5*time.Second {
		t.Errorf("unix defaults: %+v", optionFields(o))
	}
}

// TestMaxIdleOverDefaultPoolSize: a MaxIdle above the default PoolSize,
// which is 10 per CPU, is brought down to it. It was refused, so the same
// Options, or URL, that worked on a machine with many CPUs failed
// NewClient on one with fewer. Above a PoolSize given, it is still refused.
func TestMaxIdleOverDefaultPoolSize(t *testing.T) {
	def := 10 * runtime.GOMAXPROCS(0)
	c, err := NewClient(Options{MaxIdle: def + 1})
	if err != nil {
		t.Fatalf("NewClient with MaxIdle %d over the default PoolSize %d: %v", def+1, def, err)
	}
	c.Close()
	if o := c.Options(); o.PoolSize != def || o.MaxIdle != def {
		t.Errorf("PoolSize %d, MaxIdle %d; want both %d", o.PoolSize, o.MaxIdle, def)
	}
	opt, err := ParseURL("redis://h?max_idle=" + strconv.Itoa(def+1))
	if err != nil {
		t.Fatal(err)
	}
	if c, err = NewClient(opt); err != nil {
		t.Fatalf("NewClient with max_idle=%d in the URL: %v", def+1, err)
	}
	c.Close()
	if _, err := NewClient(Options{PoolSize: def, MaxIdle: def + 1}); err == nil {
		t.Errorf("NewClient with MaxIdle %d over the PoolSize %d it was given succeeded", def+1, def)
	}
}

// TestOptionsRoundTrip: Options returns what the client runs with, so a
// client made from it behaves the same. In particular the -1 that means
// "never" for ReplyTimeout and MaxRetries must survive, not turn back into
// the defaults (10s, 3 retries), and so must the -1 of MaxIdle, MaxIdleTime
// and IdleCheckAfter.
func TestOptionsRoundTrip(t *testing.T) {
	c1, err := NewClient(Options{Addr: "127.0.0.1:1", ReplyTimeout: -1, MaxRetries: -1, PollWait: -1, DB: 2,
		MaxIdle: -1, MaxIdleTime: -1, IdleCheckAfter: -1, MaxConnAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := NewClient(c1.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	o1, o2 := c1.Options(), c2.Options()
	if optionFields(o1) != optionFields(o2) {
		t.Errorf("NewClient(c.Options()).Options() differs from c.Options():\n   c: %s\nnew: %s", optionFields(o1), optionFields(o2))
	}
	if c2.opt.PollWait != -1 {
		t.Errorf("a client made from Options() of a client that does not poll has PollWait %v", c2.opt.PollWait)
	}
	if c2.opt.MaxRetries != c1.opt.MaxRetries || c2.opt.ReplyTimeout != c1.opt.ReplyTimeout {
		t.Errorf("a client made from Options() of a client with no retries and no reply timeout has MaxRetries %d (was %d) and ReplyTimeout %v (was %v)",
			c2.opt.MaxRetries, c1.opt.MaxRetries, c2.opt.ReplyTimeout, c1.opt.ReplyTimeout)
	}
	if o := c2.opt; o.MaxIdle != -1 || o.MaxIdleTime != -1 || o.IdleCheckAfter != -1 || o.MaxConnAge != time.Hour {
		t.Errorf("a client made from Options() of a client that keeps no idle connection, with no idle limit, no check and MaxConnAge 1h has MaxIdle %d, MaxIdleTime %v, IdleCheckAfter %v, MaxConnAge %v",
			o.MaxIdle, o.MaxIdleTime, o.IdleCheckAfter, o.MaxConnAge)
	}
}

func TestOptionsStringHidesPassword(t *testing.T) {
	o := Options{Addr: "h:1", Username: "u", Password: "pw-in-string-test", ClientName: "n"}
	s := o.String()
	if strings.Contains(s, "pw-in-string-test") {
		t.Fatalf("String shows the password: %s", s)
	}
	for _, want := range []string{`Addr:"h:1"`, `Username:"u"`, `ClientName:"n"`} {
		if !strings.Contains(s, want) {
			t.Errorf("String %s does not show %s", s, want)
		}
	}
	// No password, nothing to hide: the placeholder is not shown either.
	if s := (Options{}).String(); strings.Contains(s, "xxxxx") {
		t.Errorf("String of Options without a password shows a placeholder: %s", s)
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"redis://",
		"redis://h",
		"redis://:pw@h:1/3",
		"redis://user:pw@h",
		"redis://pw@h",
		"redis://user:@h",
		"redis://:p%40ss@h",
		"rediss://u:secret@cache.example:6380/2?client_name=x",
		"unix:///tmp/x.sock?db=2",
		"unix://:pw@/tmp/x.sock",
		"redis://h?db=2&protocol=3&client_name=a&dial_timeout=1s&pool_size=3&max_idle=1",
		"redis://:pw@h:abc",
		"redis://:pw@h/notadb",
		"redis://:pw@h?nosuch=pw",
		"redis://:pw@h?protocol=4",
		"redis://:pw@[::1]:6379",
		"redis://:pw@h?dial_timeout=-1s",
		"redis://:secret@h/secret",
		"redis://%zz@h",
		"http://h",
		"",
		"::",
		"redis://:xxx@h",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		opt, err := ParseURL(raw)
		if err != nil {
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("ParseURL(%q) error %T %v is not an *OptionError", raw, err, err)
			}
			if oe.Field == "" {
				t.Fatalf("ParseURL(%q): OptionError with no Field: %v", raw, err)
			}
		} else if c, cerr := NewClient(opt); cerr == nil {
			c.Close()
		} else {
			var oe *OptionError
			if !errors.As(cerr, &oe) {
				t.Fatalf("NewClient(ParseURL(%q)) error %T %v is not an *OptionError", raw, cerr, cerr)
			}
			err = cerr
		}

		pw, ok := fuzzPassword(raw)
		if !ok || len(pw) < 4 {
			// Three letters or fewer turn up in ordinary words of an
			// error ("x" in "unix"): such a password cannot be told from
			// the text around it.
			return
		}
		// What the output would be with no password at all: anything the
		// password shares with it is not a leak.
		ref := fuzzReference(raw)
		leaks := func(what, out string) {
			for _, form := range []string{pw, strings.Trim(fmt.Sprintf("%q", pw), `"`)} {
				if strings.Contains(out, form) && !strings.Contains(ref, form) {
					t.Fatalf("%s for %q shows the password %q: %s", what, raw, pw, out)
				}
			}
		}
		if err != nil {
			leaks("the error", err.Error())
			return
		}
		leaks("Options.String", opt.String())
		leaks("Options %+v", fmt.Sprintf("%+v", opt))
	})
}

// fuzzPassword returns the password ParseURL would take from raw: the
// password of the user info, or the user name alone in the short form.
func fuzzPassword(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return "", false
	}
	pw, ok := u.User.Password()
	if !ok {
		pw = u.User.Username()
	}
	return pw, pw != ""
}

// fuzzReference renders what ParseURL and NewClient print for raw with its
// user info taken out, plus the placeholder String shows for a password.
func fuzzReference(raw string) string {
	u, _ := url.Parse(raw)
	var b strings.Builder
	// The user name is shown by design, and the other parts of the URL
	// may be echoed by an error.
	if _, ok := u.User.Password(); ok {
		b.WriteString(u.User.Username() + "\x00")
	}
	for _, s := range []string{u.Scheme, u.Opaque, u.Host, u.Path, u.RawPath, u.RawQuery, u.Fragment} {
		b.WriteString(s + "\x00")
	}
	for k, vs := range u.Query() {
		b.WriteString(k + "\x00" + strings.Join(vs, "\x00") + "\x00")
	}
	// The same URL with a placeholder for the password keeps its shape,
	// so it meets the same error, whose words are then not a leak.
	if _, hasPW := u.User.Password(); hasPW {
		u.User = url.UserPassword(u.User.Username(), "placeholder-pw")
	} else if u.User != nil {
		u.User = url.User("placeholder-pw")
	}
	if opt, err := ParseURL(u.String()); err != nil {
		b.WriteString(err.Error() + "\x00")
	} else {
		if _, err := NewClient(opt); err != nil {
			b.WriteString(err.Error() + "\x00")
		}
		opt.Password = "xxxxx"
		b.WriteString(opt.String() + "\x00" + fmt.Sprintf("%+v", opt) + "\x00")
	}
	return b.String()
}

// unixTestServer starts a server that also listens on a unix socket in a
// directory of the test, and returns the socket's path.
func unixTestServer(t *testing.T, args ...string) (*redistest.Server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "r.sock")
	srv := redistest.Start(t, append([]string{"--unixsocket", sock, "--unixsocketperm", "700"}, args...)...)
	return srv, sock
}

func TestUnixSocket(t *testing.T) {
	_, sock := unixTestServer(t)
	ctx := ctxT(t)
	c, err := Connect(ctx, "unix://"+sock+"?db=2")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if o := c.Options(); o.Network != "unix" || o.Addr != sock || o.DB != 2 {
		t.Fatalf("options from the unix URL: %s", o)
	}
	if err := c.Set(ctx, "over-unix", "yes"); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Get(ctx, "over-unix"); err != nil || s != "yes" {
		t.Fatalf("Get over the unix socket = %q, %v", s, err)
	}
	info := clientInfoLine(t, c)
	if !infoHas(info, "db=2") {
		t.Fatalf("CLIENT INFO = %q, want db=2", info)
	}
	// Dedicated connections use the socket too.
	tx, err := c.Watch(ctx, "over-unix")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if s, err := tx.Get(ctx, "over-unix"); err != nil || s != "yes" {
		t.Fatalf("Tx over the unix socket: Get = %q, %v", s, err)
	}
}

// infoHas reports whether a CLIENT INFO line has every field given, as
// "name=value".
func infoHas(info string, fields ...string) bool {
	have := strings.Fields(info)
	for _, f := range fields {
		if !slices.Contains(have, f) {
			return false
		}
	}
	return true
}

func clientInfoLine(t *testing.T, c *Client) string {
	t.Helper()
	v, err := c.Do(ctxT(t), "CLIENT", "INFO")
	if err != nil {
		t.Fatal(err)
	}
	s, err := v.Text()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFallbackToRESP2 runs against a server with HELLO renamed away, as a
// server older than Redis 6 has none.
func TestFallbackToRESP2(t *testing.T) {
	ctx := ctxT(t)
	t.Run("no password", func(t *testing.T) {
		c, _ := newTestClient(t, Options{ClientName: "fallback-client"}, "--rename-command", "HELLO", "")
		if s, err := c.Ping(ctx); err != nil || s != "PONG" {
			t.Fatalf("Ping = %q, %v", s, err)
		}
		info := clientInfoLine(t, c)
		if !infoHas(info, "resp=2") {
			t.Fatalf("CLIENT INFO = %q, want resp=2", info)
		}
		if !infoHas(info, "name=fallback-client") {
			t.Errorf("CLIENT INFO = %q, want name=fallback-client set by CLIENT SETNAME", info)
		}
		m, err := c.HSet(ctx, "h", "a", "1")
		if err != nil || m != 1 {
			t.Fatalf("HSet = %d, %v", m, err)
		}
		if hm, err := c.HGetAll(ctx, "h"); err != nil || hm["a"] != "1" {
			t.Fatalf("HGetAll over RESP2 = %v, %v", hm, err)
		}
	})
	t.Run("password", func(t *testing.T) {
		srv := redistest.Start(t, "--rename-command", "HELLO", "", "--requirepass", "fallback-pw")
		c, err := NewClient(Options{Addr: srv.Addr, Password: "fallback-pw", DB: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Set(ctx, "k", "v"); err != nil {
			t.Fatalf("Set after AUTH on a server without HELLO: %v", err)
		}
		info := clientInfoLine(t, c)
		if !infoHas(info, "resp=2", "db=1", "user=default") {
			t.Fatalf("CLIENT INFO = %q, want resp=2 db=1 user=default", info)
		}
		// A wrong password is still refused, at AUTH.
		bad, err := NewClient(Options{Addr: srv.Addr, Password: "wrong", MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close()
		_, err = bad.Ping(ctx)
		var he *HandshakeError
		var se *Error
		if !errors.As(err, &he) || he.Step != "AUTH" || !errors.As(err, &se) || se.Prefix != "WRONGPASS" {
			t.Fatalf("wrong password without HELLO: err = %v, want a *HandshakeError at AUTH with WRONGPASS", err)
		}
	})
	t.Run("Protocol 3 required", func(t *testing.T) {
		c, _ := newTestClient(t, Options{Protocol: 3, MaxRetries: -1}, "--rename-command", "HELLO", "")
		_, err := c.Ping(ctx)
		var he *HandshakeError
		if !errors.As(err, &he) || he.Step != "HELLO" {
			t.Fatalf("Protocol 3 on a server without HELLO: err = %v, want a *HandshakeError at HELLO", err)
		}
		if !strings.Contains(err.Error(), "HELLO") || !strings.Contains(strings.ToLower(err.Error()), "unknown command") {
			t.Errorf("error %q does not say the server does not know HELLO", err)
		}
		t.Logf("error: %v", err)
	})
}

func TestClientNameShown(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	for _, proto := range []int{3, 2} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			name := fmt.Sprintf("named-resp%d", proto)
			c, err := NewClient(Options{Addr: srv.Addr, Protocol: proto, ClientName: name})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			info := clientInfoLine(t, c)
			if !infoHas(info, "name="+name, fmt.Sprintf("resp=%d", proto)) {
				t.Fatalf("CLIENT INFO = %q, want name=%s resp=%d", info, name, proto)
			}
			// Dedicated connections carry the name too.
			tx, err := c.Watch(ctx, "x")
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			v, err := tx.Do(ctx, "CLIENT", "GETNAME")
			if s, _ := v.Text(); err != nil || s != name {
				t.Fatalf("CLIENT GETNAME on a dedicated connection = %v, %v", v, err)
			}
		})
	}
}

// TestClientNameEveryPrintableByte: a name of every byte the server takes
// in a client name ('!' to '~') passes the options' check and is set. A
// byte outside that range, which passed the check unless it was a space
// or a newline, failed every connection's handshake.
func TestClientNameEveryPrintableByte(t *testing.T) {
	var name []byte
	for b := byte('!'); b <= '~'; b++ {
		name = append(name, b)
	}
	c, _ := newTestClient(t, Options{ClientName: string(name)})
	v, err := c.Pipeline(NoTransaction).Do("CLIENT", "GETNAME").Exec(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := v[0].Text(); s != string(name) {
		t.Fatalf("CLIENT GETNAME = %q, want %q", s, name)
	}
}

func TestOptionsFormatsHidePassword(t *testing.T) {
	o := Options{Addr: "h:1", Password: "pw-in-format-test"}
	co := ClusterOptions{Addrs: []string{"seed-a:7000"}, Options: o, MaxRedirects: 3}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{o, &o, co, &co} {
			s := fmt.Sprintf(verb, v)
			if strings.Contains(s, "pw-in-format-test") {
				t.Errorf("%s of %T shows the password: %s", verb, v, s)
			}
			if !strings.Contains(s, `"h:1"`) {
				t.Errorf("%s of %T does not show the address: %s", verb, v, s)
			}
		}
		// The seeds are the cluster's own: the embedded Options' String
		// must not stand for the whole.
		if s := fmt.Sprintf(verb, co); !strings.Contains(s, "seed-a:7000") || !strings.Contains(s, "MaxRedirects:3") {
			t.Errorf("%s of ClusterOptions leaves out its own fields: %s", verb, s)
		}
	}
}
