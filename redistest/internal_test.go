package redistest

import (
	"bufio"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestTailBufferKeepsTheTail(t *testing.T) {
	b := newTailBuffer(8)
	b.Write([]byte("abc"))
	m := b.mark()
	b.Write([]byte("defgh"))
	if got := b.String(); got != "abcdefgh" {
		t.Errorf("String() = %q", got)
	}
	b.Write([]byte("ij"))
	if got := b.String(); got != "cdefghij" {
		t.Errorf("String() after overflow = %q", got)
	}
	if got := b.since(m); got != "defghij" {
		t.Errorf("since(mark) = %q", got)
	}
	b.Write([]byte("0123456789"))
	if got := b.String(); got != "23456789" {
		t.Errorf("String() after a write larger than the buffer = %q", got)
	}
	if got := b.since(m); got != "23456789" {
		t.Errorf("since(mark) once mark is gone = %q", got)
	}
}

func TestFormatOutputShowsLastLines(t *testing.T) {
	var sb strings.Builder
	for i := range 30 {
		fmt.Fprintf(&sb, "line %d\n\n", i)
	}
	got := formatOutput(sb.String())
	if strings.Contains(got, "line 9\n") || !strings.Contains(got, "line 10\n") || !strings.HasSuffix(got, "line 29") {
		t.Errorf("formatOutput kept the wrong lines:\n%s", got)
	}
	if got := formatOutput(""); !strings.Contains(got, "printed nothing") {
		t.Errorf("formatOutput(\"\") = %q", got)
	}
}

func TestReadReplyRESP3(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{"+OK\r\n", "OK"},
		{"-ERR bad\r\n", ReplyError("ERR bad")},
		{":-42\r\n", int64(-42)},
		{"$-1\r\n", nil},
		{"$0\r\n\r\n", ""},
		{"*-1\r\n", nil},
		{"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", []any{"a", []any{int64(1)}}},
		{"_\r\n", nil},
		{"#t\r\n", true},
		{",1.5\r\n", 1.5},
		{"(123456789012345678901234567890\r\n", "123456789012345678901234567890"},
		{"=7\r\ntxt:abc\r\n", "abc"},
		{"!5\r\nERR x\r\n", ReplyError("ERR x")},
		{"%1\r\n+k\r\n:1\r\n", []any{"k", int64(1)}},
		{"~1\r\n+m\r\n", []any{"m"}},
		{"|1\r\n+ttl\r\n:3\r\n+value\r\n", "value"},
	}
	for _, c := range cases {
		v, err := readReply(bufio.NewReader(strings.NewReader(c.in)))
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(v, c.want) {
			t.Errorf("%q decoded to %#v (%T), want %#v (%T)", c.in, v, v, c.want, c.want)
		}
	}
	for _, in := range []string{"", "+OK\n", "$5\r\nab\r\n", "*x\r\n", "?\r\n", "$3\r\nabcXY"} {
		if v, err := readReply(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("%q decoded to %#v, want an error", in, v)
		}
	}
	if v, _ := readReply(bufio.NewReader(strings.NewReader("-NOAUTH x\r\n"))); v.(ReplyError).Prefix() != "NOAUTH" {
		t.Errorf("Prefix of %#v", v)
	}
}

func TestParseClusterNodes(t *testing.T) {
	text := "" +
		"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,m1.example myself,master - 0 0 1 connected 0-99 101-5460 [100->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f] [5461-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]\n" +
		"292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 100 5462-10922\n" +
		"67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30003@31003 master,fail - 1426238316232 1426238316232 3 disconnected\n" +
		"6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238316232 1 connected\n"
	v, err := parseClusterNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	if v.self != "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca" || len(v.nodes) != 4 {
		t.Fatalf("self %q, %d nodes", v.self, len(v.nodes))
	}
	me := v.nodes[v.self]
	if me.addr != "127.0.0.1:30001" || !reflect.DeepEqual(me.flags, []string{"master"}) || !reflect.DeepEqual(me.slots, []string{"0-99", "101-5460"}) {
		t.Errorf("own line: %+v", me)
	}
	if v.migrating[100] != "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f" || v.importing[5461] != "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1" || len(v.migrating)+len(v.importing) != 2 {
		t.Errorf("migrating %v, importing %v", v.migrating, v.importing)
	}
	for slot, want := range map[int]string{0: v.self, 100: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f", 5461: "", 5462: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f", 16383: ""} {
		if got := v.owner(slot); got != want {
			t.Errorf("owner(%d) = %q, want %q", slot, got, want)
		}
	}
	failed := v.nodes["67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"]
	replica := v.nodes["6ec23923021cf3ffec47632106199cb7f496ce01"]
	if failed.healthy() || !failed.isMaster() || !replica.healthy() || replica.isMaster() || replica.master != v.self {
		t.Errorf("failed %+v, replica %+v", failed, replica)
	}
	for _, bad := range []string{"", "abc 127.0.0.1:1@2 master - 0 0 1\n", "abc 127.0.0.1:1@2 master - 0 0 1 connected\n"} {
		if _, err := parseClusterNodes(bad); err == nil {
			t.Errorf("parseClusterNodes(%q) succeeded", bad)
		}
	}
}

func TestDescribeSlots(t *testing.T) {
	for _, tt := range []struct {
		slots []int
		want  string
	}{
		{[]int{7}, "slot 7"},
		{[]int{3, 1, 2, 9, 5, 6}, "slots 1-3,5-6,9"},
		{SlotRange(0, 16383), "slots 0-16383"},
	} {
		if got := describeSlots(tt.slots); got != tt.want {
			t.Errorf("describeSlots(%v) = %q, want %q", tt.slots, got, tt.want)
		}
	}
}
