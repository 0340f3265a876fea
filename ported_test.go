package redpipe

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/redistest"
)

// The tests here hold cases that other clients' suites check (go-redis's
// commands_test.go, pipeline_test.go and tx_test.go, redis-py's
// test_commands.py and test_pipeline.py, rueidis's pipe_test.go), written
// against redpipe's typed methods and run under RESP2 and RESP3 alike.

// serverErr fails unless err is the server's error reply with the given
// prefix and text in its message.
func serverErr(t *testing.T, label string, err error, prefix, text string) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) || se.Prefix != prefix || !strings.Contains(se.Msg, text) {
		t.Errorf("%s: error %v, want the server's %s ... %q", label, err, prefix, text)
	}
}

// TestPortedTypedEdgeCases: arguments at the edges of their types
// (binary, empty, infinite, extreme), option combinations the server
// refuses, and the typed reply of a missing key.
func TestPortedTypedEdgeCases(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		c := protocolClient(t, srv.Addr, proto)
		t.Run(map[int]string{2: "RESP2", 3: "RESP3"}[proto], func(t *testing.T) {
			if err := c.FlushAll(ctx); err != nil {
				t.Fatal(err)
			}
			// Keys and values that hold CR, LF and NUL, and empty ones.
			for _, k := range []string{"a\r\nb\x00c", ""} {
				if err := c.Set(ctx, k, k+"\x00"); err != nil {
					t.Fatalf("Set(%q): %v", k, err)
				}
				if got, err := c.Get(ctx, k); err != nil || got != k+"\x00" {
					t.Errorf("Get(%q) = %q, %v", k, got, err)
				}
			}
			if err := c.Set(ctx, "empty", ""); err != nil {
				t.Fatal(err)
			}
			if got, err := c.Get(ctx, "empty"); err != nil || got != "" {
				t.Errorf("Get of an empty value = %q, %v; want \"\", nil", got, err)
			}

			// An empty element is an empty string, not nil.
			if _, err := c.RPush(ctx, "withempty", ""); err != nil {
				t.Fatal(err)
			}
			if got, err := c.BRPopLPush(ctx, "withempty", "withempty2", 1); err != nil || got != "" {
				t.Errorf("BRPOPLPUSH of an empty element = %q, %v", got, err)
			}
			if got, err := c.LPop(ctx, "withempty2"); err != nil || got != "" {
				t.Errorf("LPOP of an empty element = %q, %v", got, err)
			}
			// SETRANGE past the end pads with NUL bytes.
			if n, err := c.SetRange(ctx, "padded", 6, "Redis"); err != nil || n != 11 {
				t.Errorf("SETRANGE of a missing key at 6 = %d, %v", n, err)
			}
			if got, err := c.Get(ctx, "padded"); err != nil || got != "\x00\x00\x00\x00\x00\x00Redis" {
				t.Errorf("Get of a padded value = %q, %v", got, err)
			}
			if ok, err := c.Copy(ctx, "padded", "padded", "DB", 1); err != nil || !ok {
				t.Errorf("COPY to another database = %v, %v", ok, err)
			}
			_, err := c.Copy(ctx, "padded", "padded")
			serverErr(t, "COPY onto itself", err, "ERR", "source and destination objects are the same")

			// Scores at the edges of float64 come back as sent.
			for _, f := range []float64{math.Inf(1), math.Inf(-1), 1e300, -1e-300, 5e-324,
				math.MaxFloat64, 0.1, 1e21, 123456789012345678} {
				if _, err := c.ZAdd(ctx, "zf", f, "m"); err != nil {
					t.Errorf("ZAdd(%v): %v", f, err)
					continue
				}
				if got, err := c.ZScore(ctx, "zf", "m"); err != nil || got != f {
					t.Errorf("ZScore after ZAdd(%v) = %v, %v", f, got, err)
				}
			}
			if _, err := c.ZAdd(ctx, "zf", math.NaN(), "m"); err == nil {
				t.Error("ZAdd of NaN succeeded")
			}
			if got, err := c.IncrByFloat(ctx, "ibf", 1e300); err != nil || got != 1e300 {
				t.Errorf("IncrByFloat(1e300) = %v, %v", got, err)
			}
			for _, f := range []float64{math.NaN(), math.Inf(1)} {
				if _, err := c.IncrByFloat(ctx, "ibf2", f); err == nil {
					t.Errorf("IncrByFloat(%v) succeeded", f)
				}
			}
			if got, err := c.ZIncrBy(ctx, "zi", math.Inf(1), "m"); err != nil || !math.IsInf(got, 1) {
				t.Errorf("ZIncrBy(+Inf) = %v, %v", got, err)
			}
			if _, err := c.ZIncrBy(ctx, "zi", math.Inf(-1), "m"); err == nil {
				t.Error("ZIncrBy(-Inf) onto +Inf, which makes NaN, succeeded")
			}
			if got, err := c.IncrBy(ctx, "ib", math.MinInt64); err != nil || got != math.MinInt64 {
				t.Errorf("IncrBy(MinInt64) = %v, %v", got, err)
			}
			if _, err := c.DecrBy(ctx, "db", math.MinInt64); err == nil {
				t.Error("DecrBy(MinInt64), which overflows, succeeded")
			}

			// SET's options.
			if err := c.Set(ctx, "k", "v", "EX", 100); err != nil {
				t.Fatal(err)
			}
			if err := c.Set(ctx, "k", "v2", "KEEPTTL"); err != nil {
				t.Fatal(err)
			}
			if ttl, err := c.TTL(ctx, "k"); err != nil || ttl <= 0 || ttl > 100 {
				t.Errorf("TTL after SET KEEPTTL = %d, %v", ttl, err)
			}
			serverErr(t, "SET EX 0", c.Set(ctx, "k", "v", "EX", 0), "ERR", "invalid expire time")
			serverErr(t, "SET EX -1", c.Set(ctx, "k", "v", "EX", -1), "ERR", "invalid expire time")
			serverErr(t, "SET NX XX", c.Set(ctx, "k", "v", "NX", "XX"), "ERR", "syntax error")
			if err := c.Set(ctx, "k", "v3", "EXAT", 4000000000); err != nil {
				t.Errorf("SET EXAT: %v", err)
			}
			if got, err := c.SetGet(ctx, "k", "v4", "XX"); err != nil || got != "v3" {
				t.Errorf("SetGet XX = %q, %v; want v3", got, err)
			}
			if _, err := c.RPush(ctx, "list", "a"); err != nil {
				t.Fatal(err)
			}
			_, err = c.SetGet(ctx, "list", "v")
			serverErr(t, "SetGet of a list", err, "WRONGTYPE", "")

			// LPOS, as go-redis and redis-py test it.
			if _, err := c.RPush(ctx, "lp", "a", "b", "c", "1", "2", "3", "c", "c"); err != nil {
				t.Fatal(err)
			}
			lpos := func(label string, want any, args ...any) {
				t.Helper()
				v, err := c.LPos(ctx, "lp", "c", args...)
				if err != nil {
					t.Errorf("%s: %v", label, err)
					return
				}
				var got any
				switch {
				case v.IsNil():
					got = nil
				case v.Kind() == KindInteger:
					got, _ = v.Int64()
				default:
					got, err = v.Int64s()
				}
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %v (%v), want %v", label, v, err, want)
				}
			}
			lpos("LPOS", int64(2))
			lpos("LPOS RANK -1", int64(7), "RANK", -1)
			lpos("LPOS RANK 2", int64(6), "RANK", 2)
			lpos("LPOS COUNT 2 RANK -1", []int64{7, 6}, "COUNT", 2, "RANK", -1)
			lpos("LPOS COUNT MAXLEN 1", []int64{}, "COUNT", 2, "MAXLEN", 1)
			lpos("LPOS MAXLEN 1", nil, "MAXLEN", 1)
			_, err = c.LPos(ctx, "lp", "c", "RANK", 0)
			serverErr(t, "LPOS RANK 0", err, "ERR", "RANK can't be zero")
			if v, err := c.LPos(ctx, "nolist", "c"); err != nil || !v.IsNil() {
				t.Errorf("LPOS of a missing key = %v, %v; want nil", v, err)
			}

			// EXPIRE's options.
			_, err = c.Expire(ctx, "k", 100, "NX", "XX")
			serverErr(t, "EXPIRE NX XX", err, "ERR", "not compatible")
			if err := c.Set(ctx, "k", "v", "EX", 100); err != nil {
				t.Fatal(err)
			}
			if ok, err := c.Expire(ctx, "k", 1<<40, "LT"); err != nil || ok {
				t.Errorf("EXPIRE LT of a later time = %v, %v; want false", ok, err)
			}
			if ok, err := c.Expire(ctx, "empty", 100, "GT"); err != nil || ok {
				t.Errorf("EXPIRE GT of a key without a TTL = %v, %v; want false", ok, err)
			}

			// OBJECT, DUMP and RESTORE.
			if err := c.Set(ctx, "o", "12"); err != nil {
				t.Fatal(err)
			}
			if enc, err := c.ObjectEncoding(ctx, "o"); err != nil || enc != "int" {
				t.Errorf("OBJECT ENCODING of 12 = %q, %v", enc, err)
			}
			_, err = c.ObjectFreq(ctx, "o")
			serverErr(t, "OBJECT FREQ without an LFU policy", err, "ERR", "LFU")
			dump, err := c.Dump(ctx, "a\r\nb\x00c")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Restore(ctx, "restored", 0, dump); err != nil {
				t.Fatal(err)
			}
			serverErr(t, "RESTORE onto a key", c.Restore(ctx, "restored", 0, dump), "BUSYKEY", "")
			serverErr(t, "RESTORE of garbage", c.Restore(ctx, "r2", 0, "garbage"), "ERR", "payload")
			if err := c.Restore(ctx, "r3", 4000000000000, dump, "ABSTTL", "IDLETIME", 10); err != nil {
				t.Errorf("RESTORE ABSTTL IDLETIME: %v", err)
			}
			if got, err := c.Get(ctx, "r3"); err != nil || got != "a\r\nb\x00c\x00" {
				t.Errorf("Get of a restored binary value = %q, %v", got, err)
			}

			// Bit operations on missing keys and refused arguments.
			if n, err := c.BitCount(ctx, "nobits"); err != nil || n != 0 {
				t.Errorf("BITCOUNT of a missing key = %d, %v", n, err)
			}
			if n, err := c.BitPos(ctx, "nobits", 0); err != nil || n != 0 {
				t.Errorf("BITPOS 0 of a missing key = %d, %v; want 0", n, err)
			}
			if n, err := c.BitPos(ctx, "nobits", 1); err != nil || n != -1 {
				t.Errorf("BITPOS 1 of a missing key = %d, %v; want -1", n, err)
			}
			_, err = c.SetBit(ctx, "sb", -1, 1)
			serverErr(t, "SETBIT -1", err, "ERR", "bit offset")
			_, err = c.BitOp(ctx, "NOT", "dst", "sb", "sb")
			serverErr(t, "BITOP NOT of two keys", err, "ERR", "single source key")
			vs, err := c.BitField(ctx, "bf", "SET", "i8", 0, 100, "INCRBY", "i8", 0, 100, "OVERFLOW", "FAIL", "INCRBY", "i8", 0, -100)
			if err != nil || len(vs) != 3 {
				t.Fatalf("BITFIELD = %v, %v", vs, err)
			}
			if a, _ := vs[0].Int64(); a != 0 {
				t.Errorf("BITFIELD SET = %v, want 0", vs[0])
			}
			if b, _ := vs[1].Int64(); b != -56 {
				t.Errorf("BITFIELD INCRBY that wraps = %v, want -56", vs[1])
			}
			if !vs[2].IsNil() {
				t.Errorf("BITFIELD INCRBY stopped by OVERFLOW FAIL = %v, want nil", vs[2])
			}

			// Streams.
			_, err = c.XAdd(ctx, "xs", "NOMKSTREAM", "*", "f", "v")
			if !errors.Is(err, ErrNil) {
				t.Errorf("XADD NOMKSTREAM of a missing stream: %v, want ErrNil", err)
			}
			if _, err := c.XAdd(ctx, "xs", "MAXLEN", "~", 10, "*", "f", "v"); err != nil {
				t.Fatal(err)
			}
			_, err = c.XAdd(ctx, "xs", "0-0", "f", "v")
			serverErr(t, "XADD 0-0", err, "ERR", "greater than 0-0")
			if id, err := c.XAdd(ctx, "xs2", "1-*", "f", "v"); err != nil || id != "1-0" {
				t.Errorf("XADD 1-* = %q, %v", id, err)
			}
			if v, err := c.XRange(ctx, "nostream", "-", "+"); err != nil || v.Len() != 0 || v.IsNil() {
				t.Errorf("XRANGE of a missing key = %v, %v; want an empty array", v, err)
			}
			_, err = c.XPending(ctx, "xs", "nogroup")
			serverErr(t, "XPENDING of a missing group", err, "NOGROUP", "")
			if err := c.XGroupCreate(ctx, "xs", "g", "0"); err != nil {
				t.Fatal(err)
			}
			if v, err := c.XPending(ctx, "xs", "g"); err != nil {
				t.Error(err)
			} else if vs, _ := v.Slice(); len(vs) != 4 || !vs[1].IsNil() || !vs[2].IsNil() || !vs[3].IsNil() {
				t.Errorf("XPENDING of a group with nothing pending = %v, want [0 nil nil nil]", v)
			}
			if v, err := c.XPending(ctx, "xs", "g", "IDLE", 0, "-", "+", 10); err != nil || v.Len() != 0 {
				t.Errorf("XPENDING IDLE = %v, %v; want []", v, err)
			}

			// XAUTOCLAIM and XCLAIM of an entry deleted while pending.
			if _, err := c.XReadGroup(ctx, "g", "alice", "STREAMS", "xs", ">"); err != nil {
				t.Fatal(err)
			}
			gone, err := c.XAdd(ctx, "xs", "*", "f", "v")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.XReadGroup(ctx, "g", "alice", "STREAMS", "xs", ">"); err != nil {
				t.Fatal(err)
			}
			if n, err := c.XDel(ctx, "xs", gone); err != nil || n != 1 {
				t.Fatalf("XDEL = %d, %v", n, err)
			}
			if v, err := c.XAutoClaim(ctx, "xs", "g", "bob", 0, "0"); err != nil {
				t.Error(err)
			} else if vs, _ := v.Slice(); len(vs) != 3 {
				t.Errorf("XAUTOCLAIM = %v, want the cursor, the entries and the deleted IDs", v)
			} else if ids, err := vs[2].Strings(); err != nil || !reflect.DeepEqual(ids, []string{gone}) {
				t.Errorf("XAUTOCLAIM's deleted IDs = %v, %v; want [%s]", ids, err, gone)
			}

			// ZADD's options.
			_, err = c.ZAdd(ctx, "za", "NX", "XX", 1, "a")
			serverErr(t, "ZADD NX XX", err, "ERR", "not compatible")
			_, err = c.ZAdd(ctx, "za", "GT", "LT", 1, "a")
			serverErr(t, "ZADD GT LT", err, "ERR", "not compatible")
			if n, err := c.ZAdd(ctx, "za", "GT", "CH", 1, "a"); err != nil || n != 1 {
				t.Errorf("ZADD GT CH of a new member = %d, %v", n, err)
			}
			if n, err := c.ZAdd(ctx, "za", "GT", "CH", 0, "a"); err != nil || n != 0 {
				t.Errorf("ZADD GT CH of a lower score = %d, %v", n, err)
			}
			if _, err := c.ZAddIncr(ctx, "za", "XX", 1, "nomember"); !errors.Is(err, ErrNil) {
				t.Errorf("ZADD XX INCR of a missing member: %v, want ErrNil", err)
			}
			if _, err := c.ZAddIncr(ctx, "za", "GT", -1, "a"); !errors.Is(err, ErrNil) {
				t.Errorf("ZADD GT INCR by a negative: %v, want ErrNil", err)
			}
			if f, err := c.ZAddIncr(ctx, "za", math.Inf(1), "a"); err != nil || !math.IsInf(f, 1) {
				t.Errorf("ZADD INCR +Inf = %v, %v", f, err)
			}

			if _, err := c.ZAdd(ctx, "zr", 1, "a", 2, "b", 3, "c"); err != nil {
				t.Fatal(err)
			}
			if ss, err := c.ZRange(ctx, "zr", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", 0, 2); err != nil || !reflect.DeepEqual(ss, []string{"c", "b"}) {
				t.Errorf("ZRANGE BYSCORE REV LIMIT = %v, %v", ss, err)
			}
			if ss, err := c.ZRange(ctx, "zr", "(1", "+inf", "BYSCORE", "WITHSCORES"); err != nil || !reflect.DeepEqual(ss, []string{"b", "2", "c", "3"}) {
				t.Errorf("ZRANGE BYSCORE WITHSCORES = %v, %v", ss, err)
			}

			// GEO.
			if n, err := c.GeoAdd(ctx, "geo", 13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania"); err != nil || n != 2 {
				t.Fatalf("GEOADD = %d, %v", n, err)
			}
			_, err = c.GeoAdd(ctx, "geo", 200, 100, "bad")
			serverErr(t, "GEOADD out of range", err, "ERR", "invalid longitude,latitude")
			if d, err := c.GeoDist(ctx, "geo", "Palermo", "Catania", "km"); err != nil || math.Abs(d-166.2742) > 0.001 {
				t.Errorf("GEODIST = %v, %v", d, err)
			}
			if _, err := c.GeoDist(ctx, "nogeo", "Palermo", "Catania"); !errors.Is(err, ErrNil) {
				t.Errorf("GEODIST of a missing key: %v, want ErrNil", err)
			}
			if vs, err := c.GeoPos(ctx, "nogeo", "x", "y"); err != nil || len(vs) != 2 || !vs[0].IsNil() || !vs[1].IsNil() {
				t.Errorf("GEOPOS of a missing key = %v, %v; want [nil nil]", vs, err)
			}
			if v, err := c.GeoSearch(ctx, "nogeo", "FROMLONLAT", 1, 1, "BYRADIUS", 10, "km"); err != nil || v.Len() != 0 {
				t.Errorf("GEOSEARCH of a missing key = %v, %v; want []", v, err)
			}
			_, err = c.GeoSearch(ctx, "geo", "FROMMEMBER", "nomember", "BYRADIUS", 10, "km")
			serverErr(t, "GEOSEARCH FROMMEMBER of a missing member", err, "ERR", "could not decode")

			// The SCAN family reads the same in both protocols.
			if _, err := c.HSet(ctx, "hs", "a", "1", "b", "2"); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				label string
				run   func() (Value, error)
				want  map[string]string
			}{
				{"HSCAN", func() (Value, error) { return c.HScan(ctx, "hs", 0) }, map[string]string{"a": "1", "b": "2"}},
				{"HSCAN of a missing key", func() (Value, error) { return c.HScan(ctx, "nohs", 0) }, map[string]string{}},
			} {
				v, err := tc.run()
				vs, _ := v.Slice()
				if err != nil || len(vs) != 2 {
					t.Errorf("%s = %v, %v", tc.label, v, err)
					continue
				}
				if cur, err := vs[0].Text(); err != nil || cur != "0" {
					t.Errorf("%s: cursor %v", tc.label, vs[0])
				}
				if m, err := vs[1].StringMap(); err != nil || !reflect.DeepEqual(m, tc.want) {
					t.Errorf("%s: fields %v, %v; want %v", tc.label, m, err, tc.want)
				}
			}

			// SORT.
			if _, err := c.RPush(ctx, "sl", "3", "1", "2"); err != nil {
				t.Fatal(err)
			}
			if v, err := c.Sort(ctx, "sl", "LIMIT", 0, 2); err != nil {
				t.Error(err)
			} else if ss, err := v.Strings(); err != nil || !reflect.DeepEqual(ss, []string{"1", "2"}) {
				t.Errorf("SORT LIMIT = %v, %v", ss, err)
			}
			if v, err := c.Sort(ctx, "sl", "GET", "#", "GET", "nokey_*"); err != nil {
				t.Error(err)
			} else if vs, _ := v.Slice(); len(vs) != 6 || !vs[1].IsNil() || vs[2].IsNil() {
				t.Errorf("SORT GET # GET of missing keys = %v, want [1 nil 2 nil 3 nil]", v)
			}
			if v, err := c.Sort(ctx, "sl", "STORE", "sorted"); err != nil || v.Kind() != KindInteger {
				t.Errorf("SORT STORE = %v, %v; want the integer 3", v, err)
			}
			if _, err := c.RPush(ctx, "sa", "b", "a"); err != nil {
				t.Fatal(err)
			}
			_, err = c.Sort(ctx, "sa")
			serverErr(t, "SORT of words without ALPHA", err, "ERR", "converted into double")
			_, err = c.SortRO(ctx, "sl", "STORE", "x")
			serverErr(t, "SORT_RO STORE", err, "ERR", "syntax error")

			// CLIENT KILL of the caller's own connection skips it unless
			// SKIPME no says otherwise.
			id, err := c.ClientID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if v, err := c.ClientKill(ctx, "ID", id); err != nil || v.Kind() != KindInteger {
				t.Errorf("CLIENT KILL ID of its own connection = %v, %v", v, err)
			} else if n, _ := v.Int64(); n != 0 {
				t.Errorf("CLIENT KILL ID of its own connection killed %d", n)
			}
			if _, err := c.ClientKill(ctx, "127.0.0.1:1"); err == nil {
				t.Error("CLIENT KILL of an address nobody has succeeded")
			}
			if is, err := c.SMIsMember(ctx, "noset", "a", "b"); err != nil || !reflect.DeepEqual(is, []int64{0, 0}) {
				t.Errorf("SMISMEMBER of a missing key = %v, %v", is, err)
			}
		})
	}
}

// TestPortedClientUnblock: CLIENT UNBLOCK ends a BLPOP as if it timed out
// (ErrNil), or with ERROR as the UNBLOCKED error, and the connection of the
// Tx that ran it goes on working.
func TestPortedClientUnblock(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		c := protocolClient(t, srv.Addr, proto)
		for _, how := range []string{"TIMEOUT", "ERROR"} {
			tx, err := c.Watch(ctx, "unblock-dummy")
			if err != nil {
				t.Fatal(err)
			}
			id, err := tx.ClientID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := tx.BLPop(ctx, 0, "nolist")
				done <- err
			}()
			unblocked := false
			for i := 0; i < 250 && !unblocked; i++ {
				time.Sleep(20 * time.Millisecond)
				if unblocked, err = c.ClientUnblock(ctx, id, how); err != nil {
					t.Fatal(err)
				}
			}
			if !unblocked {
				t.Fatalf("RESP%d: CLIENT UNBLOCK %s found no blocked client", proto, how)
			}
			err = <-done
			if how == "TIMEOUT" && !errors.Is(err, ErrNil) {
				t.Errorf("RESP%d: BLPOP unblocked with TIMEOUT: %v, want ErrNil", proto, err)
			}
			if how == "ERROR" {
				serverErr(t, "BLPOP unblocked with ERROR", err, "UNBLOCKED", "")
			}
			if s, err := tx.Ping(ctx); err != nil || s != "PONG" {
				t.Errorf("RESP%d: PING after the unblock = %q, %v", proto, s, err)
			}
			tx.Close()
		}
	}
}

// TestPortedPipelineCases: redis-py's test_pipeline.py and go-redis's
// pipeline_test.go and tx_test.go, in both protocols.
func TestPortedPipelineCases(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		c := protocolClient(t, srv.Addr, proto)
		label := func(s string) string { return map[int]string{2: "RESP2 ", 3: "RESP3 "}[proto] + s }
		if err := c.FlushAll(ctx); err != nil {
			t.Fatal(err)
		}
		// An empty pipeline, transaction or not, returns no replies.
		for _, p := range []*Pipeline{c.Pipeline(), c.Pipeline(NoTransaction)} {
			if rs, err := p.Exec(ctx); err != nil || len(rs) != 0 {
				t.Errorf("%s = %v, %v", label("empty Exec"), rs, err)
			}
		}
		// A command that fails when EXEC runs it leaves the others
		// applied, and its error in its reply.
		rs, err := c.Pipeline().Set("a", 1).LPush("a", 3).Set("b", 2).Exec(ctx)
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Index != 1 || len(rs) != 3 || rs[1].Err() == nil || rs[0].Err() != nil || rs[2].Err() != nil {
			t.Errorf("%s = %v, %v", label("transaction with a WRONGTYPE"), rs, err)
		}
		if got, err := c.Get(ctx, "b"); err != nil || got != "2" {
			t.Errorf("%s: b = %q, %v", label("transaction with a WRONGTYPE"), got, err)
		}
		// One refused while queued aborts the lot.
		rs, err = c.Pipeline().Set("c", 1).Do("NOSUCHCMD", "x").Set("d", 2).Exec(ctx)
		var ae *ExecAbortError
		if !errors.As(err, &ae) || !errors.Is(err, ErrNotApplied) || len(ae.Failed) != 1 || ae.Failed[0].Index != 1 || rs != nil {
			t.Errorf("%s = %v, %v", label("transaction with an unknown command"), rs, err)
		}
		if n, err := c.Exists(ctx, "c", "d"); err != nil || n != 0 {
			t.Errorf("%s: %d keys set, %v", label("aborted transaction"), n, err)
		}
		// Without a transaction the others run, with unicode keys too.
		rs, err = c.Pipeline(NoTransaction).Set("\u2603", 1).Do("NOSUCHCMD", "x").LPush("\u2603", 3).Set("e", 2).Exec(ctx)
		if !errors.As(err, &ce) || ce.Index != 1 || len(rs) != 4 || rs[2].Err() == nil || rs[3].Err() != nil {
			t.Errorf("%s = %v, %v", label("pipeline with errors"), rs, err)
		}
		// A script's table holding an error: the error is an element, not
		// the command's error.
		for _, p := range []*Pipeline{c.Pipeline(), c.Pipeline(NoTransaction)} {
			rs, err = p.Eval("return {1, redis.error_reply('MY bad'), 'x'}", 0).Incr("n").Exec(ctx)
			if err != nil || len(rs) != 2 {
				t.Errorf("%s = %v, %v", label("script returning an error element"), rs, err)
				continue
			}
			vs, err := rs[0].Slice()
			if err != nil || len(vs) != 3 {
				t.Errorf("%s = %v, %v", label("script returning an error element"), rs[0], err)
				continue
			}
			serverErr(t, label("error element"), vs[1].Err(), "MY", "bad")
			if _, err := rs[0].Strings(); err == nil || !strings.Contains(err.Error(), "element 1") {
				t.Errorf("%s: Strings: %v, want an error naming element 1", label("script returning an error element"), err)
			}
		}
		// WATCH, a change by another, and UNWATCH.
		tx, err := c.Watch(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, "w", "theirs"); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Multi().Set("w", "mine").Exec(ctx); !errors.Is(err, ErrWatch) {
			t.Errorf("%s: %v, want ErrWatch", label("watched key changed"), err)
		}
		tx.Close()
		tx, err = c.Watch(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Unwatch(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, "w", "theirs again"); err != nil {
			t.Fatal(err)
		}
		if rs, err := tx.Multi().Set("w", "mine").Exec(ctx); err != nil || len(rs) != 1 {
			t.Errorf("%s = %v, %v", label("after UNWATCH"), rs, err)
		}
		tx.Close()
		// A large transaction, as go-redis's "should exec bulks".
		p := c.Pipeline()
		const n = 20000
		for range n {
			p.Incr("cnt")
		}
		rs, err = p.Exec(ctx)
		if err != nil || len(rs) != n {
			t.Fatalf("%s: %d replies, %v", label("bulk transaction"), len(rs), err)
		}
		if last, err := rs[n-1].Int64(); err != nil || last != n {
			t.Errorf("%s: last reply %v", label("bulk transaction"), rs[n-1])
		}
		// TransactionValue gives what fn computed, as redis-py's
		// value_from_callable.
		got, err := TransactionValue(ctx, c, func(tx *Tx) (string, error) {
			cur, err := tx.Get(ctx, "cnt")
			if err != nil {
				return "", err
			}
			tx.Multi().Set("cnt-copy", cur)
			return cur, nil
		}, "cnt")
		if err != nil || got != "20000" {
			t.Errorf("%s = %q, %v", label("TransactionValue"), got, err)
		}
		if got, err := c.Get(ctx, "cnt-copy"); err != nil || got != "20000" {
			t.Errorf("%s: copy %q, %v", label("TransactionValue"), got, err)
		}
	}
}

// TestPortedReplyShapes: every RESP3 type a real server sends (DEBUG
// PROTOCOL), read with the typed accessors, alone, in a transaction and in
// a pipeline, against what RESP2 sends for the same reply.
func TestPortedReplyShapes(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	ctx := ctxT(t)
	type want struct {
		text  string // "" for a reply Text refuses
		num   float64
		isNum bool
	}
	cases := map[string]want{
		"string":   {text: "Hello World"},
		"integer":  {text: "12345", num: 12345, isNum: true},
		"double":   {text: "3.141", num: 3.141, isNum: true},
		"bignum":   {text: "1234567999999999999999999999999999999", num: 1234567999999999999999999999999999999, isNum: true},
		"verbatim": {text: "This is a verbatim\nstring"},
		"true":     {text: "1", num: 1, isNum: true},
		"false":    {text: "0", num: 0, isNum: true},
		"attrib":   {text: "Some real reply following the attribute"},
	}
	for _, proto := range []int{2, 3} {
		c := protocolClient(t, srv.Addr, proto)
		for kind, w := range cases {
			v, err := c.Do(ctx, "DEBUG", "PROTOCOL", kind)
			if err != nil {
				t.Fatalf("RESP%d %s: %v", proto, kind, err)
			}
			for _, got := range []func() (Value, error){
				func() (Value, error) { return v, nil },
				func() (Value, error) {
					rs, err := c.Pipeline().Do("DEBUG", "PROTOCOL", kind).Exec(ctx)
					if err != nil {
						return Value{}, err
					}
					return rs[0], nil
				},
				func() (Value, error) {
					rs, err := c.Pipeline(NoTransaction).Do("DEBUG", "PROTOCOL", kind).Ping().Exec(ctx)
					if err != nil || len(rs) != 2 {
						return Value{}, err
					}
					if s, _ := rs[1].Text(); s != "PONG" {
						t.Errorf("RESP%d %s: the reply after it is %v", proto, kind, rs[1])
					}
					return rs[0], nil
				}} {
				v, err := got()
				if err != nil {
					t.Errorf("RESP%d %s: %v", proto, kind, err)
					continue
				}
				if s, err := v.Text(); err != nil || s != w.text {
					t.Errorf("RESP%d %s: Text = %q, %v; want %q", proto, kind, s, err, w.text)
				}
				f, err := v.Float64()
				if w.isNum && (err != nil || f != w.num) {
					t.Errorf("RESP%d %s: Float64 = %v, %v; want %v", proto, kind, f, err, w.num)
				}
				if !w.isNum && err == nil {
					t.Errorf("RESP%d %s: Float64 = %v, want an error", proto, kind, f)
				}
			}
		}
		// The aggregates: a map reads alike from RESP3's map and RESP2's
		// flat array, a set as a list.
		v, err := c.Do(ctx, "DEBUG", "PROTOCOL", "map")
		if err != nil {
			t.Fatal(err)
		}
		if m, err := v.StringMap(); err != nil || !reflect.DeepEqual(m, map[string]string{"0": "0", "1": "1", "2": "0"}) {
			t.Errorf("RESP%d map: StringMap = %v, %v", proto, m, err)
		}
		v, err = c.Do(ctx, "DEBUG", "PROTOCOL", "set")
		if err != nil {
			t.Fatal(err)
		}
		if is, err := v.Int64s(); err != nil || !reflect.DeepEqual(is, []int64{0, 1, 2}) {
			t.Errorf("RESP%d set: Int64s = %v, %v", proto, is, err)
		}
		if v, err := c.Do(ctx, "DEBUG", "PROTOCOL", "null"); err != nil || !v.IsNil() {
			t.Errorf("RESP%d null = %v, %v", proto, v, err)
		}
	}
}

// XCLAIM and XAUTOCLAIM take their min-idle-time as a count of
// milliseconds, typed int64 as other millisecond arguments are: an entry
// delivered just now is not idle for a minute, and is claimed with 0.
func TestXClaimMinIdleTimeInMilliseconds(t *testing.T) {
	c, _ := newTestClient(t, Options{})
	ctx := ctxT(t)
	id, err := c.XAdd(ctx, "xc", "*", "f", "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.XGroupCreate(ctx, "xc", "g", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, "XREADGROUP", "GROUP", "g", "alice", "STREAMS", "xc", ">"); err != nil {
		t.Fatal(err)
	}
	const minute = int64(time.Minute / time.Millisecond)
	if v, err := c.XClaim(ctx, "xc", "g", "bob", minute, id, "JUSTID"); err != nil || v.Len() != 0 {
		t.Errorf("XClaim idle a minute = %v, %v; want nothing claimed", v, err)
	}
	if v, err := c.XAutoClaim(ctx, "xc", "g", "bob", minute, "0", "JUSTID"); err != nil {
		t.Errorf("XAutoClaim idle a minute: %v", err)
	} else if parts, err := v.Slice(); err != nil || len(parts) < 2 || parts[1].Len() != 0 {
		t.Errorf("XAutoClaim idle a minute = %v, %v; want nothing claimed", v, err)
	}
	if v, err := c.XClaim(ctx, "xc", "g", "bob", 0, id, "JUSTID"); err != nil {
		t.Errorf("XClaim idle 0: %v", err)
	} else if ids, err := v.Strings(); err != nil || len(ids) != 1 || ids[0] != id {
		t.Errorf("XClaim idle 0 = %v, %v; want %s claimed", v, err, id)
	}
}
