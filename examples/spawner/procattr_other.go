//go:build unix && !linux

package main

import "syscall"

// processAttributes puts each "container" in its own process group, so that
// stopping it reaches its children too.
func processAttributes() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
