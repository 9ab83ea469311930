package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

// vscodeBenchAddr is where the benchmark's code-server listens, apart from
// every address the other tests use.
const vscodeBenchAddr = "127.0.4.1:8080"

// startCodeServer starts code-server as the demo's workspace command does:
// its own home folder and data under root, no authentication. It returns the
// process; the test's cleanup ends its process group.
func startCodeServer(t *testing.T, root, addr string) *exec.Cmd {
	t.Helper()
	for _, d := range []string{"home", "data/code-server/User", "config", "cache"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	settings := `{"terminal.integrated.gpuAcceleration": "off", "workbench.startupEditor": "none", "window.confirmBeforeClose": "never", "terminal.integrated.enablePersistentSessions": false}`
	if err := os.WriteFile(filepath.Join(root, "data/code-server/User/settings.json"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{os.Getenv(envCodeServer), "--auth", "none", "--bind-addr", addr,
		"--user-data-dir", filepath.Join(root, "data/code-server"), "--extensions-dir", filepath.Join(root, "data/extensions"),
		"--disable-telemetry", "--disable-update-check", "--disable-workspace-trust", filepath.Join(root, "home")}
	// TestBench pins this process to some CPUs; a workspace gets them all.
	if _, err := exec.LookPath("taskset"); err == nil {
		args = append([]string{"taskset", "-c", "0-" + strconv.Itoa(runtime.NumCPU()-1)}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = filepath.Join(root, "home")
	cmd.Env = append(os.Environ(), "HOME="+filepath.Join(root, "home"), "XDG_DATA_HOME="+filepath.Join(root, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(root, "config"), "XDG_CACHE_HOME="+filepath.Join(root, "cache"))
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting code-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	return cmd
}

// untilAnswers polls url until it answers 200 and returns how long that took
// from since.
func untilAnswers(t *testing.T, url string, since time.Time) time.Duration {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(since)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within 2 minutes (%v)", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// treeMemory sums the resident (RSS) and proportional (PSS: shared pages
// split among their users) memory of pid and all its descendants, in bytes.
// PSS is what a host's memory is shared out by.
func treeMemory(pid int) (rss, pss int64, procs int) {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		data, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
		parent, _ := strconv.Atoi(f[1])
		children[parent] = append(children[parent], child)
	}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		queue = append(queue, children[p]...)
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		procs++
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			switch fields[0] {
			case "Rss:":
				rss += kb << 10
			case "Pss:":
				pss += kb << 10
			}
		}
		f.Close()
	}
	return rss, pss, procs
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// TestBenchVSCode prints what one VS Code workspace (code-server 4.100.3)
// costs: the time from its start until it answers (its health check, then
// the workbench page), and its memory idle, with a browser session that
// opened a terminal and a file, and after that session left. Figures, not
// assertions: run with make bench.
func TestBenchVSCode(t *testing.T) {
	if !*benchFlag {
		t.Skip("a benchmark, not a test: run `make bench`")
	}
	needCodeServer(t)
	needChromium(t)
	url := "http://" + vscodeBenchAddr + "/"

	var out strings.Builder
	w := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "start\tdata\tuntil /healthz answers\tuntil the workbench page answers\t\n")
	// Three starts with a fresh home, then three of the same workspace
	// again (its data kept), each stopped before the next.
	root := filepath.Join(t.TempDir(), "again")
	for i := 0; i < 6; i++ {
		dir, what := filepath.Join(t.TempDir(), "fresh"), "fresh"
		if i >= 3 {
			dir, what = root, "kept"
		}
		began := time.Now()
		cmd := startCodeServer(t, dir, vscodeBenchAddr)
		health := untilAnswers(t, url+"healthz", began)
		page := untilAnswers(t, url, began)
		fmt.Fprintf(w, "%d\t%s\t%v\t%v\t\n", i+1, what, health.Round(time.Millisecond), page.Round(time.Millisecond))
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		for syscall.Kill(cmd.Process.Pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
	w.Flush()

	// Memory: one workspace, idle, then in use from a browser.
	cmd := startCodeServer(t, filepath.Join(t.TempDir(), "memory"), vscodeBenchAddr)
	untilAnswers(t, url, time.Now())
	// Let it settle: it finishes initialising after it first answers.
	time.Sleep(3 * time.Second)
	var mem strings.Builder
	mw := tabwriter.NewWriter(&mem, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(mw, "workspace\tprocesses\tRSS\tPSS\t\n")
	report := func(what string) (rss, pss int64) {
		rss, pss, n := treeMemory(cmd.Process.Pid)
		fmt.Fprintf(mw, "%s\t%d\t%s\t%s\t\n", what, n, mib(rss), mib(pss))
		return rss, pss
	}
	report("idle, no session yet")

	s := newVSCodeSession(t, &demo{url: url}, "bench")
	if err := s.p.navigate(url); err != nil {
		t.Fatal(err)
	}
	s.waitWorkbench("the workbench")
	s.runInTerminal(`echo "answer-$((6*7))"; printf 'a file\n' > notes.txt`, "answer-42")
	s.openFile("notes.txt", "a file")
	rss, pss := report("in use: workbench, a terminal, a file open")
	if err := s.p.navigate("about:blank"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	report("after the session left")
	mw.Flush()

	// RSS counts the pages workspaces share (Node, code-server's files in
	// the page cache) once per workspace: the cautious figure.
	sizing := fmt.Sprintf("8 GiB hold about %d workspaces in use at %s RSS each (%d at %s PSS, shared pages counted once); memory only, before the host's own needs",
		(8<<30)/rss, mib(rss), (8<<30)/pss, mib(pss))
	t.Logf("code-server 4.100.3 on %d CPUs:\n%s\n%s%s", runtime.NumCPU(), out.String(), mem.String(), sizing)
	fmt.Printf("VS Code workspace (code-server 4.100.3), time from start:\n%s\nVS Code workspace memory (the process and its children):\n%s%s\n", out.String(), mem.String(), sizing)
}
