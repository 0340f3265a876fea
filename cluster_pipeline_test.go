package redpipe

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

// scanCommand, the walk a pipeline makes over each command, finds the
// end of every command of the table and, where it tells a slot, the one
// cmdSlot finds: for commands of up to nine words, their arguments all
// keys of one slot, of many slots, or words of no slot in particular.
func TestScanCommandAgreesWithCmdSlot(t *testing.T) {
	told, refused, recorded := 0, 0, 0
	for _, ci := range knownCommands {
		name := strings.Fields(ci.Name)
		for extra := 0; extra+len(name) <= 9; extra++ {
			for _, arg := range []func(i int) string{
				func(i int) string { return "{tag}" + strconv.Itoa(i) },
				func(i int) string { return "key" + strconv.Itoa(i) },
				func(i int) string { return strconv.Itoa(i) },
			} {
				args := make([]any, 0, len(name)+extra)
				for _, w := range name {
					args = append(args, w)
				}
				for i := range extra {
					args = append(args, arg(i))
				}
				w := &cmdBuf{slots: true}
				w.do(args)
				cmd := w.buf
				// What encoding recorded agrees with scanCommand.
				got := w.cmds[0].info()
				if len(w.routes) != 1 || int(w.routes[0]>>16) != len(cmd) {
					t.Fatalf("%q: routes %v, want one ending at %d", cmd, w.routes, len(cmd))
				}
				if rt := uint16(w.routes[0]); rt != routeScan {
					_, s, k := scanCommand(got, cmd, 0, true)
					want := uint16(routeKeyless)
					if s >= 0 {
						want = uint16(s + 1)
					}
					if !k || rt != want {
						t.Fatalf("%q: recorded route %d; scanCommand tells slot %d (known %v)", cmd, rt, s, k)
					}
					if rt != routeKeyless {
						recorded++
					}
				}
				// Routing refuses only commands marked for it, which
				// keep a pipeline from going out before it is routed.
				if _, err := cmdSlot(ci, cmd); err != nil {
					if !ci.has(flagKeysSpan) && !splittable(ci) {
						t.Fatalf("%q: cmdSlot refuses it (%v), but it is not flagKeysSpan", cmd, err)
					}
					refused++
				}
				if got := w.cmds[0].info(); w.keysSpan != got.has(flagKeysSpan) {
					t.Fatalf("%q: keysSpan %v for %s", cmd, w.keysSpan, got.Name)
				}
				// What follows a command is not its own.
				buf := append(append([]byte(nil), cmd...), "*1\r\n$4\r\nPING\r\n"...)
				end, slot, known := scanCommand(ci, buf, 0, true)
				if end != len(cmd) {
					t.Fatalf("%q: scanCommand ends at %d, want %d", cmd, end, len(cmd))
				}
				if !known {
					continue
				}
				told++
				want, err := cmdSlot(ci, cmd)
				if err != nil || slot != want {
					t.Fatalf("%q: scanCommand tells slot %d, cmdSlot %d, %v", cmd, slot, want, err)
				}
			}
		}
	}
	if told == 0 || refused == 0 || recorded == 0 {
		t.Fatalf("scanCommand told %d slots; cmdSlot refused %d commands; %d slots recorded", told, refused, recorded)
	}
	// Keys in different slots are left to cmdSlot, which names them.
	w := &cmdBuf{}
	w.do([]any{"RENAME", "a", "b"})
	if _, _, known := scanCommand(cmdRename, w.buf, 0, true); known {
		t.Error("scanCommand told a slot for RENAME a b")
	}
	if _, err := cmdSlot(cmdRename, w.buf); err == nil || !strings.Contains(err.Error(), "command RENAME") {
		t.Errorf("cmdSlot(RENAME a b) = %v", err)
	}
}

// BenchmarkClusterPipeline10k is one plain pipeline of 5,000 SET and GET
// pairs whose keys are spread over the slots of three masters, every
// reply checked; ns/cmd and allocs/op divided by 10,000 are per command.
// MGet100 reads 100 keys of as many slots in one call, which the client
// splits by slot.
func BenchmarkClusterPipeline10k(b *testing.B) {
	cl := redistest.StartCluster(b, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const pairs = 5000
	keys := testKeys(pairs)
	vals := make([]string, pairs)
	for i := range vals {
		vals[i] = "value_" + strconv.Itoa(i)
	}
	b.Run("SetGet", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := c.Pipeline(NoTransaction)
			for i, k := range keys {
				p.Set(k, vals[i]).Get(k)
			}
			replies, err := p.Exec(ctx)
			if err != nil || len(replies) != 2*pairs {
				b.Fatal(len(replies), err)
			}
			for i := range keys {
				if err := okReply(replies[2*i], nil); err != nil {
					b.Fatal(err)
				}
				if s, err := replies[2*i+1].Text(); err != nil || s != vals[i] {
					b.Fatal(i, s, err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*pairs), "ns/cmd")
	})
	b.Run("MGet100", func(b *testing.B) {
		mkeys := keys[:100]
		p := c.Pipeline(NoTransaction)
		for i, k := range mkeys {
			p.Set(k, vals[i])
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			vs, err := c.MGet(ctx, mkeys...)
			if err != nil || len(vs) != len(mkeys) {
				b.Fatal(len(vs), err)
			}
			for i, v := range vs {
				if s, err := v.Text(); err != nil || s != vals[i] {
					b.Fatal(i, s, err)
				}
			}
		}
	})
}

// BenchmarkClusterParallel is many goroutines sharing a cluster client,
// each setting its own key and reading it back: plain calls routed one by
// one; allocs/op is per call.
func BenchmarkClusterParallel(b *testing.B) {
	cl := redistest.StartCluster(b, 0)
	c, err := NewClusterClient(ClusterOptions{Addrs: cl.Addrs()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "warm", "1"); err != nil {
		b.Fatal(err)
	}
	// The cluster is started once, for every b.N the sub-benchmark runs.
	b.Run("SetGet", func(b *testing.B) {
		var id atomic.Int64
		b.SetParallelism(64)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			key := "par:" + strconv.FormatInt(id.Add(1), 10)
			val := "v:" + key
			for i := 0; pb.Next(); i++ {
				if i%2 == 0 {
					if err := c.Set(ctx, key, val); err != nil {
						b.Error(err)
						return
					}
					continue
				}
				if s, err := c.Get(ctx, key); err != nil || s != val {
					b.Error(s, err)
					return
				}
			}
		})
	})
}
