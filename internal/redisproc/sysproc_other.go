//go:build !linux

package redisproc

import "syscall"

// childAttr has no parent-death signal outside Linux: callers stop their
// servers.
func childAttr() *syscall.SysProcAttr { return nil }
