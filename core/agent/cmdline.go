package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CmdlinePrefix starts the kernel command line parameters the agent reads:
//
//	diskcast.server=URL      the orchestrator (required)
//	diskcast.mac=MAC         this node's MAC (default: the interface's)
//	diskcast.interface=NAME  the NIC (default: the first one up)
//	diskcast.t.PHASE=SECONDS a phase measured before the agent started
//
// The boot plugin writes the first three into the iPXE script; the
// imaging environment's init adds the timings it measured.
const CmdlinePrefix = "diskcast."

// ParseCmdline reads the agent's parameters from a kernel command line.
// found is false when it has none (the agent is not in the imaging
// environment).
func ParseCmdline(cmdline string) (cfg Config, found bool, err error) {
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		name, ok := strings.CutPrefix(k, CmdlinePrefix)
		if !ok {
			continue
		}
		found = true
		switch {
		case name == "server":
			cfg.Server = v
		case name == "mac":
			cfg.MAC = v
		case name == "interface":
			cfg.Interface = v
		case strings.HasPrefix(name, "t."):
			secs, perr := strconv.ParseFloat(v, 64)
			if perr != nil || secs < 0 {
				return cfg, found, fmt.Errorf("%w: kernel command line %s: want seconds", ErrConfig, f)
			}
			if cfg.BootTimings == nil {
				cfg.BootTimings = map[string]float64{}
			}
			cfg.BootTimings[strings.TrimPrefix(name, "t.")] = secs
		}
	}
	return cfg, found, nil
}

// ReadCmdline parses /proc/cmdline plus the timings the imaging
// environment's init recorded in timingsFile (lines "PHASE SECONDS"; a
// missing file is fine).
func ReadCmdline(timingsFile string) (Config, bool, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return Config{}, false, err
	}
	cfg, found, err := ParseCmdline(string(b))
	if err != nil || timingsFile == "" {
		return cfg, found, err
	}
	t, err := os.ReadFile(timingsFile)
	if err != nil {
		return cfg, found, nil
	}
	for _, line := range strings.Split(string(t), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if secs, err := strconv.ParseFloat(f[1], 64); err == nil && secs >= 0 {
			if cfg.BootTimings == nil {
				cfg.BootTimings = map[string]float64{}
			}
			cfg.BootTimings[f[0]] = secs
		}
	}
	return cfg, found, nil
}
