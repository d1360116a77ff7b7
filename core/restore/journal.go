package restore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A journal records which chunks are safely on the target, so that an
// interrupted restore (a crash, a reboot, a lost multicast session)
// resumes instead of starting over. It is written only after the target
// has been synced, so every chunk it names is durable.
//
// Layout: "DCJOURNAL1\n", the 16-byte image ID, u32 chunk count, a bitmap
// of written chunks (bit i of byte i/8), then SHA-256 of all that.
const journalMagic = "DCJOURNAL1\n"

// JournalDir is where journals of block-device targets live.
var JournalDir = "/var/lib/diskcast/journal"

// JournalPath is the default journal location for a target: beside a file
// target, or in JournalDir for a device.
func JournalPath(target string, block bool) string {
	if !block {
		return target + ".diskcast-journal"
	}
	return filepath.Join(JournalDir, strings.ReplaceAll(strings.TrimPrefix(target, "/dev/"), "/", "_")+".journal")
}

// DefaultJournal is JournalPath for whatever target is at path now.
func DefaultJournal(target string) string {
	st, err := os.Stat(target)
	return JournalPath(target, err == nil && st.Mode()&os.ModeDevice != 0)
}

func (t *Target) marshalJournal() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := []byte(journalMagic)
	b = append(b, t.Meta.Header.ID[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(t.done)))
	bits := make([]byte, (len(t.done)+7)/8)
	for i, d := range t.done {
		if d {
			bits[i/8] |= 1 << (i % 8)
		}
	}
	b = append(b, bits...)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// UseJournal makes the target keep a journal at path. A journal left by an
// earlier restore of the same image is loaded: it returns how many chunks
// that restore had finished. A journal of another image, or a damaged one,
// is ignored and replaced.
func (t *Target) UseJournal(path string) (resumed int, err error) {
	t.journal = path
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read journal: %w", err)
	}
	n := len(t.done)
	want := len(journalMagic) + 16 + 4 + (n+7)/8 + 32
	if len(b) != want || !bytes.HasPrefix(b, []byte(journalMagic)) {
		return 0, nil
	}
	body := b[:len(b)-32]
	if sha256.Sum256(body) != [32]byte(b[len(b)-32:]) ||
		!bytes.Equal(body[len(journalMagic):len(journalMagic)+16], t.Meta.Header.ID[:]) ||
		binary.LittleEndian.Uint32(body[len(journalMagic)+16:]) != uint32(n) {
		return 0, nil
	}
	bits := body[len(journalMagic)+20:]
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.done {
		if bits[i/8]&(1<<(i%8)) != 0 {
			t.done[i] = true
			resumed++
		}
	}
	return resumed, nil
}

// Checkpoint syncs the target and then records the chunks written so far.
func (t *Target) Checkpoint() error {
	if t.journal == "" {
		return nil
	}
	b := t.marshalJournal() // taken before the sync: everything it names is then durable
	if err := t.Dev.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.Dev.Path, err)
	}
	if err := os.MkdirAll(filepath.Dir(t.journal), 0o755); err != nil {
		return err
	}
	tmp := t.journal + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, t.journal)
}

// dropJournal removes the journal once the restore is complete.
func (t *Target) dropJournal() {
	if t.journal != "" {
		os.Remove(t.journal)
	}
}
