package hashslot

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/redpipe/redpipe/redistest"
)

func TestCRC16(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint16
	}{
		{"", 0},
		{"123456789", 0x31C3}, // the check value of CRC-16/XMODEM, as in the cluster spec
		{"A", 0x58E5},
	} {
		if got := CRC16([]byte(tt.in)); got != tt.want {
			t.Errorf("CRC16(%q) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

// The CRC of eight bytes at a time is that of one byte at a time, for
// every length and some of every byte value.
func TestCRC16ByteAtATime(t *testing.T) {
	bytewise := func(b []byte) uint16 {
		var crc uint16
		for _, c := range b {
			crc ^= uint16(c) << 8
			for range 8 {
				if crc&0x8000 != 0 {
					crc = crc<<1 ^ 0x1021
				} else {
					crc <<= 1
				}
			}
		}
		return crc
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 70; n++ {
		for range 20 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			if got, want := CRC16(b), bytewise(b); got != want {
				t.Fatalf("CRC16(%x) = %#04x, want %#04x", b, got, want)
			}
		}
	}
}

func TestTag(t *testing.T) {
	for _, tt := range []struct{ key, tag string }{
		{"", ""},
		{"foo", "foo"},
		{"{user1000}.following", "user1000"},
		{"{user1000}.followers", "user1000"},
		{"foo{bar}{zap}", "bar"},
		{"foo{}{bar}", "foo{}{bar}"}, // the first tag is empty: the whole key
		{"{}", "{}"},
		{"a{}{b}", "a{}{b}"},
		{"{{a}}", "{a"},
		{"foo{{bar}}zap", "{bar"},
		{"{", "{"},
		{"}", "}"},
		{"}{a}", "a"},
		{"a{b", "a{b"},
		{"a{b}", "b"},
		{"{a}", "a"},
		{"x{\x00}", "\x00"},
	} {
		if got := Tag(tt.key); got != tt.tag {
			t.Errorf("Tag(%q) = %q, want %q", tt.key, got, tt.tag)
		}
		if got := string(Tag([]byte(tt.key))); got != tt.tag {
			t.Errorf("Tag([]byte(%q)) = %q, want %q", tt.key, got, tt.tag)
		}
		if Slot(tt.key) != Slot(tt.tag) || SlotBytes([]byte(tt.key)) != Slot(tt.key) {
			t.Errorf("%q: Slot %d, SlotBytes %d, slot of its tag %q %d", tt.key, Slot(tt.key), SlotBytes([]byte(tt.key)), tt.tag, Slot(tt.tag))
		}
	}
}

func TestSlotKnownValues(t *testing.T) {
	// Values a server gives for CLUSTER KEYSLOT.
	for key, want := range map[string]uint16{
		"":                    0,
		"foo":                 12182,
		"bar":                 5061,
		"somekey":             11058,
		"{user1000}.follower": 3443,
		"123456789":           0x31C3 % Count,
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
}

// testKeys returns the keys checked against a real server: hash-tag edge
// cases, binary keys, and random ones drawn from a small alphabet rich in
// braces so that tags of every shape come up.
func testKeys(seed uint64, n int) []string {
	keys := []string{
		"", "foo", "{}", "{{a}}", "a{}{b}", "foo{bar}{zap}", "foo{}{bar}",
		"{", "}", "}{", "{a", "a}", "{a}", "{{}}", "{}}", "{{}", "}{a}",
		"user:{1000}:name", "\x00", "\xff\xfe{\x00\x01}", "{\r\n}", "a b {c d}",
	}
	r := rand.New(rand.NewPCG(seed, 0))
	const alphabet = "{}{}ab\x00\xff:."
	for range n {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		keys = append(keys, string(b))
	}
	for range n / 2 {
		keys = append(keys, "key:"+strconv.FormatUint(r.Uint64(), 36))
	}
	return keys
}

// TestSlotMatchesServer checks Slot against CLUSTER KEYSLOT of a real
// cluster node for edge cases and a few hundred random keys.
func TestSlotMatchesServer(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 0)
	seed := rand.Uint64()
	t.Logf("random keys from seed %d", seed)
	keys := testKeys(seed, 300)
	cmds := make([][]string, len(keys))
	for i, k := range keys {
		cmds[i] = []string{"CLUSTER", "KEYSLOT", k}
	}
	replies, err := c.Masters[0].Pipeline(cmds...)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		want, ok := replies[i].(int64)
		if !ok {
			t.Fatalf("CLUSTER KEYSLOT %q = %#v", k, replies[i])
		}
		if got := Slot(k); int64(got) != want {
			t.Errorf("Slot(%q) = %d, server says %d", k, got, want)
		}
		if got := SlotBytes([]byte(k)); int64(got) != want {
			t.Errorf("SlotBytes(%q) = %d, server says %d", k, got, want)
		}
	}

	// Shard channels live in the slot of their name too: a master that
	// does not serve it redirects SPUBLISH there.
	for _, ch := range []string{"news", "{user:1}:events", "a{}{b}"} {
		want := "MOVED " + strconv.Itoa(int(Slot(ch))) + " "
		served := 0
		for _, m := range c.Masters {
			v, err := m.Do("SPUBLISH", ch, "hello")
			if err != nil {
				t.Fatal(err)
			}
			if e, ok := v.(redistest.ReplyError); ok && strings.HasPrefix(string(e), want) {
				continue
			}
			if v != int64(0) {
				t.Errorf("SPUBLISH %s on %s = %#v, want 0 or %s...", ch, m.Addr, v, want)
			}
			served++
		}
		if served != 1 {
			t.Errorf("SPUBLISH %s was served by %d masters, want 1", ch, served)
		}
	}
}

func TestSlotAllocations(t *testing.T) {
	key := "user:{1000}:following"
	bkey := []byte(key)
	var sink uint16
	if n := testing.AllocsPerRun(100, func() { sink += Slot(key) }); n != 0 {
		t.Errorf("Slot allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { sink += SlotBytes(bkey) }); n != 0 {
		t.Errorf("SlotBytes allocates %v times", n)
	}
	_ = sink
}

func BenchmarkSlot(b *testing.B) {
	for _, key := range []string{"user:{1000}:following", "c1:key_1234", "session:7f3a9c2e-41d8-4b6a-9e0f"} {
		b.Run(strconv.Itoa(len(Tag(key))), func(b *testing.B) {
			for b.Loop() {
				Slot(key)
			}
		})
	}
}
