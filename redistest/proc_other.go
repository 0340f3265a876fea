//go:build !unix

package redistest

import (
	"os"
	"os/exec"
)

// setProcAttr does nothing here: there is no portable way to tie the child's
// life to the test binary's, so the cleanups registered by Start are the
// only protection.
func setProcAttr(cmd *exec.Cmd) {}

// terminate kills the server outright: without POSIX signals there is no
// portable polite request to shut down, and nothing is persisted anyway.
func terminate(p *os.Process) error {
	return p.Kill()
}
