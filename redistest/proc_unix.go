//go:build unix && !linux

package redistest

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr does nothing here: only Linux offers a parent-death signal, so
// on other systems a server outlives a test binary that is killed before its
// cleanups run.
func setProcAttr(cmd *exec.Cmd) {}

// terminate asks the server to shut down cleanly.
func terminate(p *os.Process) error {
	return p.Signal(syscall.SIGTERM)
}
