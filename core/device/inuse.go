package device

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// InUse reports how a block device, or any partition of it, is in use:
// mounted, active swap, or held by device-mapper/md/LVM. It returns "" when
// nothing uses it. Capturing a filesystem that is mounted read-write gives
// an inconsistent image, and restoring onto one corrupts it, so callers
// refuse both. Regular files are never reported.
func InUse(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", nil
	}
	self := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	devs := map[string]string{self: filepath.Base(path)}
	sys := "/sys/dev/block/" + self
	// Partitions are subdirectories of the disk's sysfs directory that
	// have a "partition" file.
	if entries, err := os.ReadDir(sys); err == nil {
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(sys, e.Name(), "dev")); err == nil {
				if _, err := os.Stat(filepath.Join(sys, e.Name(), "partition")); err == nil {
					devs[strings.TrimSpace(string(b))] = e.Name()
				}
			}
		}
	}
	for dev, name := range devs {
		if holders, _ := os.ReadDir(filepath.Join("/sys/dev/block", dev, "holders")); len(holders) > 0 {
			return fmt.Sprintf("%s is held by %s (device-mapper, md or LVM)", name, holders[0].Name()), nil
		}
	}
	if use := mountedFrom(devs); use != "" {
		return use, nil
	}
	return swapFrom(devs), nil
}

// mountedFrom checks /proc/self/mountinfo, whose third field is the
// major:minor of the mounted device.
func mountedFrom(devs map[string]string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		if name, ok := devs[fields[2]]; ok {
			mode := "read-only"
			if strings.HasPrefix(fields[5], "rw") {
				mode = "read-write"
			}
			return fmt.Sprintf("%s is mounted %s at %s", name, mode, fields[4])
		}
	}
	return ""
}

func swapFrom(devs map[string]string) string {
	b, err := os.ReadFile("/proc/swaps")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fields[0], &st) != nil {
			continue
		}
		if name, ok := devs[fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))]; ok {
			return fmt.Sprintf("%s is active swap", name)
		}
	}
	return ""
}
