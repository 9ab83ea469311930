// Package nstest runs a test binary inside private mount and network
// namespaces, with a loopback interface of its own and an /etc/hosts that
// maps container names such as vscode-alice to loopback addresses. Tests can
// then reach servers by the very host names the director builds, without
// touching the machine's network or its /etc/hosts.
package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// insideEnv marks the re-executed test binary.
const insideEnv = "NSTEST_INSIDE"

// HostsFileEnv names the variable that holds the path of the hosts file
// mounted over /etc/hosts, for tests that add names while they run. Append to
// it in place: replacing the file would detach it from /etc/hosts.
const HostsFileEnv = "NSTEST_HOSTS_FILE"

// Inside reports whether the test binary runs inside the namespaces.
func Inside() bool {
	return os.Getenv(insideEnv) == "1"
}

// Main runs the tests of m inside the namespaces, re-executing the test
// binary there with unshare(1) if it is not there yet, and returns the exit
// code for os.Exit. hosts maps names to loopback addresses.
//
// Without the privileges for namespaces (neither root nor unprivileged user
// namespaces), the tests are skipped with the reason on a developer's
// machine, and fail under CI=true, where they must run.
func Main(m *testing.M, hosts map[string]string) int {
	if Inside() {
		return m.Run()
	}
	if reason := unavailable(); reason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "FAIL: these tests need private network namespaces, and under CI=true they must run: %s\n", reason)
			return 1
		}
		fmt.Fprintf(os.Stderr, "SKIP: these tests need private network namespaces: %s\n", reason)
		return 0
	}

	dir, err := os.MkdirTemp("", "nstest-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "nstest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	hostsFile := dir + "/hosts"
	if err := os.WriteFile(hostsFile, []byte(HostsText(hosts)), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "nstest: writing hosts file: %v\n", err)
		return 1
	}

	args := []string{"--mount", "--net"}
	if os.Geteuid() != 0 {
		args = append(args, "--user", "--map-root-user")
	}
	args = append(args, "sh", "-c", `mount --bind "$NSTEST_HOSTS_FILE" /etc/hosts && ip link set lo up && exec "$0" "$@"`)
	args = append(args, os.Args...)
	cmd := exec.Command("unshare", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), insideEnv+"=1", HostsFileEnv+"="+hostsFile)
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "nstest: running tests in namespaces: %v\n", err)
		return 1
	}
	return 0
}

// HostsText returns /etc/hosts text for the given names, with localhost.
func HostsText(hosts map[string]string) string {
	names := make([]string, 0, len(hosts))
	for name := range hosts {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
	for _, name := range names {
		fmt.Fprintf(&b, "%s\t%s\n", hosts[name], name)
	}
	return b.String()
}

// AddHost maps name to addr in the running namespace's /etc/hosts.
func AddHost(name, addr string) error {
	path := os.Getenv(HostsFileEnv)
	if path == "" {
		return fmt.Errorf("not inside nstest namespaces: %s is not set", HostsFileEnv)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s\t%s\n", addr, name)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// unavailable says why the namespaces cannot be made here, or "".
func unavailable() string {
	for _, tool := range []string{"unshare", "mount", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed"
		}
	}
	args := []string{"--mount", "--net"}
	if os.Geteuid() != 0 {
		args = append(args, "--user", "--map-root-user")
	}
	out, err := exec.Command("unshare", append(args, "true")...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("unshare %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return ""
}
