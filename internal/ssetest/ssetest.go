// Package ssetest reads Server-Sent Events for the project's tests.
package ssetest

import (
	"bufio"
	"io"
)

// Lines returns the non-empty lines of an event stream, each as soon as it
// arrives; the channel is closed at the end of the stream. The caller
// closes r to stop reading early.
func Lines(r io.Reader) <-chan string {
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if line := sc.Text(); line != "" {
				lines <- line
			}
		}
	}()
	return lines
}
