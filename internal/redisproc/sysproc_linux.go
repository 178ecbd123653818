//go:build linux

package redisproc

import (
	"fmt"
	"syscall"
)

// childAttr makes the kernel kill a redis-server if the process that
// started it dies without stopping it (a test binary's -timeout panic, a
// SIGKILL): a cluster shared by a test binary lives until the binary exits.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// reapNoHang reaps child pid if it has exited (wait4 WNOHANG) and returns
// its exit status as an error, like exec.Cmd.Wait.
func reapNoHang(pid int) (bool, error) {
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	switch {
	case err != nil:
		return true, err
	case got == 0:
		return false, nil
	case ws.Exited() && ws.ExitStatus() == 0:
		return true, nil
	}
	return true, fmt.Errorf("redis-server pid %d: %v", pid, ws)
}
