//go:build unix

package redpipe

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// awaitReadable waits, reading nothing, until nc has something to read,
// for up to 10s.
func awaitReadable(t *testing.T, nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		t.Errorf("awaitReadable: a %T has no file descriptor", nc)
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Error(err)
		return
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer nc.SetReadDeadline(time.Time{})
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		// A peek leaves what came for the connection's own reads; an
		// empty socket sends the runtime to wait until it is readable.
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
	})
	if err != nil {
		t.Errorf("awaitReadable: %v", err)
	}
}
