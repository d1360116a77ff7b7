package plugin

import (
	"strings"
	"sync"
)

// tail keeps the last lines a plugin wrote to stderr, to quote when it
// fails.
type tail struct {
	mu    sync.Mutex
	lines []string
	part  strings.Builder
}

const tailLines = 20

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		if b == '\n' {
			t.lines = append(t.lines, t.part.String())
			t.part.Reset()
			if len(t.lines) > tailLines {
				t.lines = t.lines[len(t.lines)-tailLines:]
			}
			continue
		}
		if t.part.Len() < 4096 {
			t.part.WriteByte(b)
		}
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := append([]string(nil), t.lines...)
	if t.part.Len() > 0 {
		lines = append(lines, t.part.String())
	}
	return strings.Join(lines, "\n")
}
