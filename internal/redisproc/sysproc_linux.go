//go:build linux

package redisproc

import "syscall"

// childAttr makes the kernel kill a redis-server if the process that
// started it dies without stopping it (a test binary's -timeout panic, a
// SIGKILL): a cluster shared by a test binary lives until the binary exits.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
