// Command exiter is a workload for the tests against a real engine: it
// writes numbered lines to stdout and stderr, waits, and exits with the
// code it is given. Built static, it is the whole of a test image.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	code := flag.Int("code", 0, "exit code")
	lines := flag.Int("lines", 3, "lines to write to stdout, then as many to stderr")
	wait := flag.Duration("sleep", 0, "how long to wait before exiting")
	flag.Parse()
	for i := 1; i <= *lines; i++ {
		fmt.Fprintf(os.Stdout, "out %d\n", i)
	}
	// The engine reads the two streams apart; a pause keeps their order
	// in its log.
	time.Sleep(100 * time.Millisecond)
	for i := 1; i <= *lines; i++ {
		fmt.Fprintf(os.Stderr, "err %d\n", i)
	}
	// As the first process of its container, it would ignore SIGTERM
	// without a handler: end at once, as a stopped program does.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	select {
	case <-time.After(*wait):
	case <-term:
		os.Exit(143)
	}
	os.Exit(*code)
}
