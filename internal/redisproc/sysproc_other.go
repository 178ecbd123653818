//go:build !linux

package redisproc

import "syscall"

// childAttr has no parent-death signal outside Linux: callers stop their
// servers.
func childAttr() *syscall.SysProcAttr { return nil }

// reapNoHang cannot look without waiting outside Linux: a server that
// exits early is noticed by the readiness timeout instead.
func reapNoHang(int) (bool, error) { return false, nil }
