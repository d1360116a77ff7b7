package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// RunWithDiskcast is a TestMain for tests that run the diskcast binary:
// it builds it into a temporary directory, stores its path in *bin, runs
// the tests, removes the binary and returns the exit code for os.Exit.
func RunWithDiskcast(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "diskcast-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, "diskcast")
	if out, err := exec.Command("go", "build", "-o", *bin, "github.com/diskcast/diskcast/core/cmd/diskcast").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build core/cmd/diskcast: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// Buffer is a bytes.Buffer that processes may write while the test reads
// it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
