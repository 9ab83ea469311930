package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// appendHostsLine makes name resolve to addr by appending "addr\tname" to the
// hosts file at path, unless a line mapping addr to name is already there.
// The file is appended to in place, never replaced: it may be a bind mount
// over /etc/hosts, and a rename would break the mount.
func appendHostsLine(path, addr, name string) error {
	content, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("reading hosts file %q: %w", path, err)
	}
	if hostsFileMaps(content, addr, name) {
		return nil
	}
	line := addr + "\t" + name + "\n"
	if len(content) > 0 && content[len(content)-1] != '\n' {
		line = "\n" + line
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening hosts file %q: %w", path, err)
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("appending to hosts file %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing hosts file %q: %w", path, err)
	}
	return nil
}

// hostsFileMaps reports whether content has a line mapping addr to name.
func hostsFileMaps(content []byte, addr, name string) bool {
	found := false
	eachHostsLine(content, func(a string, names []string) bool {
		if a != addr {
			return true
		}
		for _, n := range names {
			if strings.EqualFold(n, name) {
				found = true
				return false
			}
		}
		return true
	})
	return found
}

// lookupHostsFile returns the first address the hosts file at path maps name
// to, as a resolver would.
func lookupHostsFile(path, name string) (string, bool) {
	content, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	var addr string
	eachHostsLine(content, func(a string, names []string) bool {
		for _, n := range names {
			if strings.EqualFold(n, name) {
				addr = a
				return false
			}
		}
		return true
	})
	return addr, addr != ""
}

// eachHostsLine calls fn for every non-comment line until fn returns false.
func eachHostsLine(content []byte, fn func(addr string, names []string) bool) {
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		if !fn(fields[0], fields[1:]) {
			return
		}
	}
}
