//go:build soak && linux

package soak

import "syscall"

// childAttr makes the kernel kill a child if this test process dies without
// cleaning up (a -timeout panic, a SIGKILL of go test), so no service
// outlives the run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
