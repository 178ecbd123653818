//go:build linux

package testproc

import "syscall"

// childAttr makes the kernel kill a child if the test process dies without
// cleaning up (a -timeout panic, a SIGKILL of go test), so no service
// outlives the run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
