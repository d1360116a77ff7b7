package device

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Use says how a device is in use; the zero value means it is not.
type Use struct {
	What     string // e.g. "sda1 is mounted read-write at /"
	ReadOnly bool   // the only use is a read-only mount
}

// InUse reports how a block device, or any partition of it, is in use:
// mounted, active swap, or held by device-mapper/md/LVM. Capturing a
// filesystem that is mounted read-write gives an inconsistent image (a
// read-only one is fine), and restoring onto any use corrupts it, so
// callers refuse those. Regular files are never reported.
func InUse(path string) (Use, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Use{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return Use{}, nil
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
			return Use{What: fmt.Sprintf("%s is held by %s (device-mapper, md or LVM)", name, holders[0].Name())}, nil
		}
	}
	if use := mountedFrom(devs); use.What != "" {
		return use, nil
	}
	return Use{What: swapFrom(devs)}, nil
}

// mountedFrom checks /proc/self/mountinfo, whose third field is the
// major:minor of the mounted device.
func mountedFrom(devs map[string]string) Use {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Use{}
	}
	defer f.Close()
	var ro Use
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		if name, ok := devs[fields[2]]; ok {
			if strings.HasPrefix(fields[5], "rw") {
				return Use{What: fmt.Sprintf("%s is mounted read-write at %s", name, fields[4])}
			}
			// Keep looking: another partition may be mounted read-write.
			if ro.What == "" {
				ro = Use{What: fmt.Sprintf("%s is mounted read-only at %s", name, fields[4]), ReadOnly: true}
			}
		}
	}
	return ro
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
