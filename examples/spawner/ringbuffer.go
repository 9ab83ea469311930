package main

import (
	"strings"
	"sync"
)

// ringBufferLineMax bounds one kept line; longer output is split.
const ringBufferLineMax = 4096

// ringBuffer keeps the last lines written to it. It is an io.Writer safe for
// concurrent use, for a process's stdout and stderr.
type ringBuffer struct {
	mu      sync.Mutex
	lines   []string
	next    int // where the next full line goes once lines is full
	full    bool
	partial strings.Builder
}

func newRingBuffer(size int) *ringBuffer {
	return &ringBuffer{lines: make([]string, size)}
}

// Write implements io.Writer; it never fails.
func (r *ringBuffer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range p {
		if c == '\n' {
			r.push()
			continue
		}
		r.partial.WriteByte(c)
		if r.partial.Len() >= ringBufferLineMax {
			r.push()
		}
	}
	return len(p), nil
}

// push moves the partial line into the ring. Called with r.mu held.
func (r *ringBuffer) push() {
	line := strings.TrimRight(r.partial.String(), "\r")
	r.partial.Reset()
	r.lines[r.next] = strings.ToValidUTF8(line, "\uFFFD")
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
}

// Last returns up to n of the most recent lines, oldest first, including an
// unfinished last line.
func (r *ringBuffer) Last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if r.partial.Len() > 0 {
		all = append(all, strings.ToValidUTF8(r.partial.String(), "\uFFFD"))
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}
