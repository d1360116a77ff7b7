package plugin

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// SumSuffix ends the name of a plugin's checksum file.
//
// The checksum file of diskcast-plugin-foo is diskcast-plugin-foo.sha256
// in the same directory. It holds the binary's SHA-256 as 64 hex digits,
// optionally followed by white space and the binary's file name: exactly
// what `sha256sum diskcast-plugin-foo` prints, so an operator who has
// checked a binary installs it with
//
//	sha256sum diskcast-plugin-foo > diskcast-plugin-foo.sha256
//
// Blank lines and lines starting with # are ignored. diskcast refuses to
// start a plugin without a checksum file, or whose binary does not match
// it. The check guards against a binary replaced or corrupted after it
// was installed; protect the directory itself like any other directory
// of executables.
const SumSuffix = ".sha256"

func newHash() hash.Hash { return sha256.New() }

// Verify checks a plugin binary against its checksum file and returns the
// verified sum in hex. Errors name the file and, on a mismatch, both sums.
func Verify(path string) (string, error) {
	want, err := readSum(path + SumSuffix)
	if err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrStart, err)
	}
	defer f.Close()
	h := newHash()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%w: read %s: %v", ErrStart, path, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		return "", fmt.Errorf("%w: %s has SHA-256 %s but %s says %s; refusing to run it (if you trust the binary, update the checksum file)",
			ErrChecksum, path, got, path+SumSuffix, want)
	}
	return got, nil
}

// readSum reads a checksum file (see SumSuffix).
func readSum(sumPath string) (string, error) {
	f, err := os.Open(sumPath)
	if errors.Is(err, os.ErrNotExist) {
		bin := strings.TrimSuffix(sumPath, SumSuffix)
		return "", fmt.Errorf("%w: %s is missing; after checking %s, create it with: sha256sum %s > %s",
			ErrNoSum, sumPath, bin, bin, sumPath)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoSum, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		sum := strings.ToLower(fields[0])
		if _, err := decodeSum(sum); err != nil {
			return "", fmt.Errorf("%w: %s line %d: %q is not 64 hex digits", ErrChecksum, sumPath, n, fields[0])
		}
		if len(fields) > 1 {
			named := filepath.Base(strings.TrimPrefix(fields[1], "*"))
			if bin := filepath.Base(strings.TrimSuffix(sumPath, SumSuffix)); named != bin {
				return "", fmt.Errorf("%w: %s line %d is the sum of %q, not of %q", ErrChecksum, sumPath, n, named, bin)
			}
		}
		return sum, nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("%w: read %s: %v", ErrNoSum, sumPath, err)
	}
	return "", fmt.Errorf("%w: %s holds no checksum", ErrNoSum, sumPath)
}

func decodeSum(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%w: %q is not a SHA-256", ErrChecksum, s)
	}
	return b, nil
}
