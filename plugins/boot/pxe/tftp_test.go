package pxe

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pin/tftp/v3"
)

// tftpFiles are the files tftpRoot makes: sizes that end mid-block and
// exactly on a block boundary (1468 * 70).
var tftpFiles = map[string]string{
	"undionly.kpxe":   randomText(70001),
	"ipxe.efi":        randomText(1468 * 70),
	"sub/snponly.efi": randomText(3000),
}

func randomText(n int) string {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return string(b)
}

// tftpRoot makes a root with tftpFiles, a symlink inside it, symlinks
// that lead out of it, and a secret file beside it.
func tftpRoot(t *testing.T) string {
	t.Helper()
	top := t.TempDir()
	root := filepath.Join(top, "root")
	for name, data := range tftpFiles {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(top, "secret"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"inside.efi": "ipxe.efi",
		"escape":     "../secret",
		"passwd":     "/etc/passwd",
		"etc":        "/etc",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// tftpServer serves root on loopback until the test ends.
func tftpServer(t *testing.T, root string) (*Server, string) {
	c := testConfig(t)
	c.TFTPRoot = root
	c.HTTPListen = "127.0.0.1:0"
	s := newServer(t, c)
	serve(t, s, &memBackend{})
	return s, s.Addrs().TFTP.String()
}

func TestTFTPTransfer(t *testing.T) {
	s, addr := tftpServer(t, tftpRoot(t))
	for _, name := range []string{"undionly.kpxe", "ipxe.efi", "/sub/snponly.efi", "inside.efi"} {
		for _, blk := range []int{512, 1468} {
			t.Run(name+"/"+string(rune('0'+blk/512)), func(t *testing.T) {
				c, err := tftp.NewClient(addr)
				if err != nil {
					t.Fatal(err)
				}
				c.SetBlockSize(blk)
				c.RequestTSize(true)
				wt, err := c.Receive(name, "octet")
				if err != nil {
					t.Fatalf("RRQ %s: %v", name, err)
				}
				want := tftpFiles[strings.TrimPrefix(strings.Replace(name, "inside.efi", "ipxe.efi", 1), "/")]
				size, ok := wt.(tftp.IncomingTransfer).Size()
				if !ok || size != int64(len(want)) {
					t.Errorf("tsize %d (%v), want %d", size, ok, len(want))
				}
				var buf bytes.Buffer
				if n, err := wt.WriteTo(&buf); err != nil || n != int64(len(want)) || buf.String() != want {
					t.Fatalf("got %d bytes (%v), want %d, equal %v", n, err, len(want), buf.String() == want)
				}
			})
		}
	}
	// The server counts a transfer when the last ACK is in, which may
	// come after the client is done.
	if st := waitStats(s, func(st Stats) bool { return st.TFTPTransfers == 8 }); st.TFTPTransfers != 8 || st.TFTPRefused != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestTFTPRefused(t *testing.T) {
	s, addr := tftpServer(t, tftpRoot(t))
	cases := []struct{ name, file, says string }{
		{"parent", "../secret", `".." is not allowed`},
		{"deep parent", "sub/../../secret", `".." is not allowed`},
		{"dos parent", `..\secret`, `".." is not allowed`},
		{"absolute host path", "/secret", "file does not exist"},
		{"absolute path through a symlink", "/etc/passwd", "path escapes"},
		{"symlink to a file outside", "escape", "path escapes"},
		{"symlink to an absolute path", "passwd", "path escapes"},
		{"through a symlinked directory", "etc/passwd", "path escapes"},
		{"directory", "sub", "not a regular file"},
		{"missing", "pxelinux.0", "file does not exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tftp.NewClient(addr)
			if err != nil {
				t.Fatal(err)
			}
			wt, err := c.Receive(tc.file, "octet")
			if err == nil {
				var buf bytes.Buffer
				_, err = wt.WriteTo(&buf)
				if err == nil {
					t.Fatalf("%s: served %d bytes", tc.file, buf.Len())
				}
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%s: %v, want it to say %q", tc.file, err, tc.says)
			}
		})
	}
	t.Run("write request", func(t *testing.T) {
		c, err := tftp.NewClient(addr)
		if err != nil {
			t.Fatal(err)
		}
		rf, err := c.Send("new.efi", "octet")
		if err == nil {
			_, err = rf.ReadFrom(strings.NewReader("payload"))
		}
		if err == nil || !strings.Contains(err.Error(), "does not support write") {
			t.Errorf("WRQ: %v, want refused", err)
		}
		if _, err := os.Stat(filepath.Join(s.cfg.TFTPRoot, "new.efi")); !os.IsNotExist(err) {
			t.Errorf("WRQ created a file: %v", err)
		}
	})
	if st := s.Stats(); st.TFTPRefused != uint64(len(cases)) || st.TFTPTransfers != 0 {
		t.Errorf("stats %+v, want %d refused", st, len(cases))
	}
}

// Debian's iPXE binaries, served from the default root, fetched with
// tftp-hpa's client.
func TestTFTPHPAClient(t *testing.T) {
	tftpCmd, err := exec.LookPath("tftp")
	if err != nil {
		t.Skip("tftp (Debian package tftp-hpa) not installed: scripts/install-deps.sh installs it")
	}
	const root = "/usr/lib/ipxe"
	if _, err := os.Stat(filepath.Join(root, "undionly.kpxe")); err != nil {
		t.Skip("/usr/lib/ipxe/undionly.kpxe missing (Debian package ipxe): scripts/install-deps.sh installs it")
	}
	s, addr := tftpServer(t, root)
	host, port, _ := net.SplitHostPort(addr)
	out := t.TempDir()
	for _, name := range []string{"undionly.kpxe", "snponly.efi"} {
		dst := filepath.Join(out, name)
		cmd := exec.Command(tftpCmd, "-m", "binary", host, port, "-c", "get", name, dst)
		if b, err := cmd.CombinedOutput(); err != nil || len(b) != 0 {
			t.Fatalf("tftp get %s: %v: %s", name, err, b)
		}
		want, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: got %d bytes, want %d, equal %v (%v)", name, len(got), len(want), bytes.Equal(got, want), err)
		}
	}
	// Debian's ipxe.efi there is a symlink to /boot/ipxe.efi: out of
	// the root, so refused like the traversal.
	for _, name := range []string{"../../../etc/passwd", "ipxe.efi"} {
		dst := filepath.Join(out, "refused")
		b, _ := exec.Command(tftpCmd, "-m", "binary", host, port, "-c", "get", name, dst).CombinedOutput()
		if !strings.Contains(string(b), "Error code 1: pxe: path refused") {
			t.Errorf("tftp get %s said %q, want a TFTP error", name, b)
		}
		if fi, err := os.Stat(dst); err == nil && fi.Size() > 0 {
			t.Errorf("%s: wrote %d bytes", name, fi.Size())
		}
	}
	if st := waitStats(s, func(st Stats) bool { return st.TFTPTransfers == 2 }); st.TFTPTransfers != 2 || st.TFTPRefused != 2 {
		t.Errorf("stats %+v", st)
	}
}
