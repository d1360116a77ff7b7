package pxe

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/pin/tftp/v3"
)

// openConfined opens name for reading under dir, refusing anything that
// would leave dir: ".." elements, and symbolic links pointing out of it
// (os.Root checks every element as it goes). Only regular files are
// served. A leading "/" is taken relative to dir, as PXE firmware and
// tftp-hpa's -s do.
func openConfined(dir, name string) (*os.File, int64, error) {
	clean, err := confinedName(name)
	if err != nil {
		return nil, 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("pxe: open root %s: %w", dir, err)
	}
	defer root.Close()
	f, err := root.Open(clean)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("pxe: %q: %w", name, fs.ErrNotExist)
		}
		return nil, 0, fmt.Errorf("%w: %q: %v", ErrRefused, name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("pxe: %q: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%w: %q is not a regular file", ErrRefused, name)
	}
	return f, st.Size(), nil
}

// confinedName turns a requested path into one relative to the root, or
// refuses it.
func confinedName(name string) (string, error) {
	if name == "" || len(name) > 1024 || strings.ContainsAny(name, "\x00") {
		return "", fmt.Errorf("%w: %.60q: empty, too long or holds NUL", ErrRefused, name)
	}
	// Some firmware sends DOS separators.
	n := strings.ReplaceAll(name, "\\", "/")
	n = strings.TrimLeft(n, "/")
	for _, el := range strings.Split(n, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: %q: \"..\" is not allowed", ErrRefused, name)
		}
	}
	if n == "" {
		return "", fmt.Errorf("%w: %q names the root itself", ErrRefused, name)
	}
	return n, nil
}

// tftpRead serves a read request from the TFTP root.
func (s *Server) tftpRead(name string, rf io.ReaderFrom) error {
	f, size, err := openConfined(s.cfg.TFTPRoot, name)
	if err != nil {
		s.stats.tftpRefused.Add(1)
		s.log.Warn("tftp request refused", "file", name, "peer", tftpPeer(rf), "error", err.Error())
		return err
	}
	defer f.Close()
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(size) // answers the tsize option (RFC 2349)
	}
	_, err = rf.ReadFrom(f)
	return err
}

func tftpPeer(rf io.ReaderFrom) string {
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		a := ot.RemoteAddr()
		return a.String()
	}
	return ""
}

// tftpHook counts transfers and tells the core about finished ones.
type tftpHook struct{ s *Server }

func (h tftpHook) OnSuccess(st tftp.TransferStats) {
	h.s.stats.tftpTransfers.Add(1)
	h.s.log.Info("tftp transfer done", "file", st.Filename, "peer", st.RemoteAddr.String(), "duration", st.Duration.String())
	h.s.event(boot.Event{MAC: h.s.macOf(ip4(st.RemoteAddr)), What: boot.EventTFTPDone, Detail: st.Filename})
}

func (h tftpHook) OnFailure(st tftp.TransferStats, err error) {
	if st.Filename == "" || errors.Is(err, ErrRefused) || errors.Is(err, fs.ErrNotExist) {
		return // a bad packet on the request port, or counted as refused
	}
	h.s.stats.tftpFailed.Add(1)
	h.s.log.Warn("tftp transfer failed", "file", st.Filename, "peer", ipString(st.RemoteAddr), "error", err.Error())
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}
