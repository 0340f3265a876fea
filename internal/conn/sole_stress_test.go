package conn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// TestSoleCallCutByContextCountsExactly: a large batch of SETs, each of
// its own key, on a connection of its caller's alone (Graced.Sole), whose
// context ends at a random point of its write or of its replies: the
// caller writing it itself, or the writer goroutine in parts, through
// DoNCut or through Start and WaitCut. Once the
// server is done with the connection, which the call closed, it holds
// the keys of the SETs answered, and no key of a SET that the count of
// bytes sent says was never written: a SET half written counts as sent.
func TestSoleCallCutByContextCountsExactly(t *testing.T) {
	srv := redistest.Start(t)
	const n = 600
	val := strings.Repeat("v", 4<<10)
	var batch []byte
	starts := make([]int, n)
	for i := range n {
		starts[i] = len(batch)
		batch = append(batch, encode("SET", fmt.Sprintf("sole:%03d", i), val)...)
	}
	// begun is how many SETs start before byte sent.
	begun := func(sent int) int {
		k := 0
		for k < n && starts[k] < sent {
			k++
		}
		return k
	}
	stop := time.Now().Add(20 * time.Second)
	rng := rand.New(rand.NewPCG(14, 14))
	for _, tc := range []struct {
		how   string
		opt   Options
		start bool // sent by Start and waited for by WaitCut
	}{
		{"written by its caller", Options{MaxPending: 256 << 10}, false},
		{"by the writer, in parts", Options{MaxPending: 64 << 10, DirectWrite: -1}, false},
		{"its caller reading its replies", Options{Poll: time.Millisecond}, false},
		{"its caller reading its replies asleep", Options{SelfRead: true}, false},
		{"started, written by its caller", Options{MaxPending: 256 << 10}, true},
		{"started, by the writer, in parts", Options{MaxPending: 64 << 10, DirectWrite: -1}, true},
	} {
		opt := tc.opt
		for round := 0; round < 8 && time.Now().Before(stop); round++ {
			srv.MustDo(t, "FLUSHALL")
			nc, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				t.Fatal(err)
			}
			nc.(*net.TCPConn).SetWriteBuffer(16 << 10)
			c := New(nc, opt)
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(30000))*time.Microsecond)
			var replies []resp.Value
			var sent int
			if tc.start {
				buf := make([]resp.Value, n)
				var pd Pending
				var got int
				if pd, err = c.WithGrace(0).Sole().Start(ctx, batch, buf); err == nil {
					got, sent, err = pd.WaitCut(ctx)
					if err == nil {
						sent = len(batch)
					}
				}
				replies = buf[:got]
			} else {
				replies, _, sent, err = c.WithGrace(0).Sole().DoNCut(ctx, batch, n)
			}
			cancel()
			c.Close()
			waitFor(t, "the server to be done with the closed connection", func() (bool, string) {
				clients, _ := srv.MustDo(t, "CLIENT", "LIST").(string)
				return strings.Count(clients, "\n") <= 1, clients
			})
			keys, _ := srv.MustDo(t, "DBSIZE").(int64)
			t.Logf("%s: %d replies, %d bytes (%d SETs begun) counted as sent, %d SETs ran; %v", tc.how, len(replies), sent, begun(sent), keys, err)
			if err == nil {
				if len(replies) != n || keys != n {
					t.Fatalf("DoNCut = %d replies and no error, %d SETs ran; want all %d", len(replies), keys, n)
				}
				continue
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("DoNCut = %v; want the context's error", err)
			}
			for i, v := range replies {
				if v.Kind != resp.SimpleString || v.Str != "OK" {
					t.Fatalf("reply %d = %v %q; want OK", i, v.Kind, v.Str)
				}
			}
			if int(keys) < len(replies) {
				t.Fatalf("%d SETs answered, but only %d ran", len(replies), keys)
			}
			if sent < len(batch) && int(keys) > begun(sent) {
				t.Fatalf("%d SETs ran, but the count of %d bytes sent says only %d were written, the rest not sent", keys, sent, begun(sent))
			}
		}
	}
}
