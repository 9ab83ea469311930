package main

import "syscall"

// processAttributes puts each "container" in its own process group, so that
// stopping it reaches its children too, and has the kernel kill it if the
// spawner dies without a chance to clean up.
func processAttributes() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
