//go:build linux

package redistest

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel SIGKILL the server when the test binary dies,
// so a test binary killed by a timeout or by hand leaves no redis-server
// behind holding ports and memory.
//
// The signal is tied to the OS thread that started the child rather than to
// the process. The Go runtime only ever ends a thread whose goroutine exits
// while locked to it, and exec.Cmd.Start is called from ordinary unlocked
// goroutines here, so the thread outlives the child in practice.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// terminate asks the server to shut down cleanly.
func terminate(p *os.Process) error {
	return p.Signal(syscall.SIGTERM)
}
