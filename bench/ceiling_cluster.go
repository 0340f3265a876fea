package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/redpipe/redpipe/internal/hashslot"
	"github.com/redpipe/redpipe/internal/resp"
	"github.com/redpipe/redpipe/redistest"
)

// ceilingName names, in the records of C1 and C3, the client that does
// none of the work a library must do (wireCluster): the most any client
// could reach on this machine, as redis-benchmark is in S7. It is a
// reference, not a peer: no ratio is taken against it.
const ceilingName = "no-work client"

// wireCluster is C1's and C3's ceiling. A library encodes every command,
// finds its slot, groups the commands by node, and parses and checks every
// reply; wireCluster does that once per batch, the first time it sees the
// batch (the same slices of keys and values), and keeps the result: the
// bytes to write to each master, and the bytes each must answer with,
// learnt from that first answer, which it parses and checks as the
// libraries do. Later calls write the kept bytes, one write per master,
// read each master's answer whole, and compare it with the kept one
// byte for byte; a difference fails the call. What is left is the cost of
// the round trips themselves: the servers' work and the system's.
type wireCluster struct {
	conns   []net.Conn
	owner   []int // the index in conns of each slot's master
	batches map[wireKey]*wireBatch
	buf     []byte
}

// wireTimeout bounds the wait for a master's answer.
var wireTimeout = 10 * time.Second

// wireKey is a batch's identity: the first key and value of its slices
// (the scenarios pass the same slices again) and how many keys it has.
type wireKey struct {
	keys, vals *string
	n          int
}

// wireBatch is what is kept of a batch, per master: its commands and the
// replies they must get, and MGET's values in the order of its keys.
type wireBatch struct {
	cmds, want [][]byte
	count      []int // commands per master
	vals       []string
}

func newWireBatch(masters, keys int) *wireBatch {
	return &wireBatch{cmds: make([][]byte, masters), want: make([][]byte, masters), count: make([]int, masters),
		vals: make([]string, keys)}
}

func newWireCluster(cl *redistest.Cluster) (*wireCluster, error) {
	w := &wireCluster{owner: make([]int, hashslot.Count), batches: map[wireKey]*wireBatch{}}
	index := map[string]int{}
	for i, m := range cl.Masters {
		nc, err := net.Dial("tcp", m.Addr)
		if err != nil {
			w.Close()
			return nil, err
		}
		w.conns = append(w.conns, nc)
		index[m.Addr] = i
	}
	for i := range w.owner {
		w.owner[i] = -1
	}
	v, err := cl.Masters[0].Do("CLUSTER", "SLOTS")
	ranges, ok := v.([]any)
	if err != nil || !ok {
		w.Close()
		return nil, fmt.Errorf("CLUSTER SLOTS: %v, %v", v, err)
	}
	for _, r := range ranges {
		f, ok := r.([]any)
		var node []any
		if ok && len(f) >= 3 {
			node, _ = f[2].([]any)
		}
		if len(node) < 2 {
			w.Close()
			return nil, fmt.Errorf("CLUSTER SLOTS entry %v", r)
		}
		lo, _ := f[0].(int64)
		hi, _ := f[1].(int64)
		host, _ := node[0].(string)
		port, _ := node[1].(int64)
		i, known := index[net.JoinHostPort(host, strconv.FormatInt(port, 10))]
		if !known {
			w.Close()
			return nil, fmt.Errorf("CLUSTER SLOTS names %s:%d, not a master of the cluster", host, port)
		}
		for s := lo; s <= hi; s++ {
			w.owner[s] = i
		}
	}
	if slices.Contains(w.owner, -1) {
		w.Close()
		return nil, errors.New("CLUSTER SLOTS leaves slots without a master")
	}
	return w, nil
}

func (w *wireCluster) Name() string { return ceilingName }

func (w *wireCluster) Close() {
	for _, nc := range w.conns {
		nc.Close()
	}
}

func (w *wireCluster) Concurrent() (clusterClient, error) {
	return nil, errors.New("the no-work client runs C1 and C3 only")
}

// Get and Set send a batch of their own each time, checked and not kept.
func (w *wireCluster) Get(ctx context.Context, key string) (string, error) {
	vals, err := w.mget(ctx, []string{key}, false)
	if err != nil {
		return "", err
	}
	return vals[0], nil
}

func (w *wireCluster) Set(ctx context.Context, key, val string) error {
	return w.pipelineSetGet(ctx, []string{key}, []string{val}, false)
}

func appendCommand(b []byte, args ...string) []byte {
	b = resp.AppendArrayLen(b, len(args))
	for _, a := range args {
		b = resp.AppendBulkString(b, a)
	}
	return b
}

// PipelineSetGet sends SET and GET for every key, grouped by master.
func (w *wireCluster) PipelineSetGet(ctx context.Context, keys, vals []string) error {
	return w.pipelineSetGet(ctx, keys, vals, true)
}

// pipelineSetGet is PipelineSetGet, keeping the batch or not.
func (w *wireCluster) pipelineSetGet(ctx context.Context, keys, vals []string, keep bool) error {
	if len(keys) == 0 {
		return nil
	}
	k := wireKey{&keys[0], &vals[0], len(keys)}
	if b := w.batches[k]; b != nil {
		return w.replay(ctx, b)
	}
	b := newWireBatch(len(w.conns), 0)
	expect := make([][]string, len(w.conns)) // per master, the replies in their order
	for i, key := range keys {
		n := w.owner[hashslot.Slot(key)]
		b.cmds[n] = appendCommand(appendCommand(b.cmds[n], "SET", key, vals[i]), "GET", key)
		b.count[n] += 2
		expect[n] = append(expect[n], "OK", vals[i])
	}
	return w.learn(ctx, k, b, keep, func(n int, got []resp.Value) error {
		if len(got) != len(expect[n]) {
			return replyCount(len(got), len(expect[n]))
		}
		for j, v := range got {
			if v.Str != expect[n][j] {
				return fmt.Errorf("reply %d from master %d is %+v, want %q", j, n, v, expect[n][j])
			}
		}
		return nil
	})
}

// MGet sends one MGET per slot, grouped by master, and returns the
// values in the order of keys.
func (w *wireCluster) MGet(ctx context.Context, keys []string) ([]string, error) {
	return w.mget(ctx, keys, true)
}

// mget is MGet, keeping the batch or not.
func (w *wireCluster) mget(ctx context.Context, keys []string, keep bool) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	k := wireKey{&keys[0], nil, len(keys)}
	if b := w.batches[k]; b != nil {
		return b.vals, w.replay(ctx, b)
	}
	b := newWireBatch(len(w.conns), len(keys))
	bySlot := map[uint16][]int{}
	var order []uint16
	for i, key := range keys {
		s := hashslot.Slot(key)
		if bySlot[s] == nil {
			order = append(order, s)
		}
		bySlot[s] = append(bySlot[s], i)
	}
	sent := make([][][]int, len(w.conns)) // per master, the keys of each MGET
	for _, s := range order {
		n := w.owner[s]
		args := []string{"MGET"}
		for _, i := range bySlot[s] {
			args = append(args, keys[i])
		}
		b.cmds[n] = appendCommand(b.cmds[n], args...)
		b.count[n]++
		sent[n] = append(sent[n], bySlot[s])
	}
	err := w.learn(ctx, k, b, keep, func(n int, got []resp.Value) error {
		if len(got) != len(sent[n]) {
			return replyCount(len(got), len(sent[n]))
		}
		for j, v := range got {
			if len(v.Elems) != len(sent[n][j]) {
				return fmt.Errorf("MGET %d on master %d: %+v", j, n, v)
			}
			for e, i := range sent[n][j] {
				if v.Elems[e].Kind != resp.BulkString {
					return fmt.Errorf("%s: %+v", keys[i], v.Elems[e])
				}
				b.vals[i] = v.Elems[e].Str
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b.vals, nil
}

// learn sends a batch the first time: it parses and checks every master's
// replies, and keeps the batch with the replies' bytes if they pass and
// keep says so.
func (w *wireCluster) learn(ctx context.Context, k wireKey, b *wireBatch, keep bool, check func(n int, got []resp.Value) error) error {
	if err := w.write(ctx, b); err != nil {
		return err
	}
	for n, nc := range w.conns {
		if len(b.cmds[n]) == 0 {
			continue
		}
		var raw bytes.Buffer
		nc.SetReadDeadline(time.Now().Add(wireTimeout))
		rd := resp.NewReader(io.TeeReader(nc, &raw), resp.Limits{})
		got := make([]resp.Value, b.count[n])
		for j := range got {
			v, err := rd.ReadValue()
			if err != nil {
				return err
			}
			got[j] = v
		}
		if rd.Buffered() > 0 {
			return fmt.Errorf("master %d sent more than %d replies", n, b.count[n])
		}
		if err := check(n, got); err != nil {
			return err
		}
		b.want[n] = raw.Bytes()
	}
	if keep {
		w.batches[k] = b
	}
	return nil
}

// replay sends a kept batch and compares the answers with the kept ones.
func (w *wireCluster) replay(ctx context.Context, b *wireBatch) error {
	if err := w.write(ctx, b); err != nil {
		return err
	}
	for n, nc := range w.conns {
		want := b.want[n]
		if len(want) == 0 {
			continue
		}
		if cap(w.buf) < len(want) {
			w.buf = make([]byte, len(want))
		}
		got := w.buf[:len(want)]
		// An answer shorter than the first would be waited for forever.
		nc.SetReadDeadline(time.Now().Add(wireTimeout))
		if _, err := io.ReadFull(nc, got); err != nil {
			return fmt.Errorf("master %d answered otherwise than the first time: %w", n, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("master %d answered otherwise than the first time", n)
		}
	}
	return nil
}

func (w *wireCluster) write(ctx context.Context, b *wireBatch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for n, nc := range w.conns {
		if len(b.cmds[n]) > 0 {
			if _, err := nc.Write(b.cmds[n]); err != nil {
				return err
			}
		}
	}
	return nil
}
