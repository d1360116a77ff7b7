//go:build linux

package netlab

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
)

// AddTap creates a tap device attached to the lab's bridge, for a virtual
// machine: run its QEMU with SwitchCommand and
// -netdev tap,ifname=NAME,script=no,downscript=no. The tap lives in the
// bridge's namespace, so the VM sits on the lab's network like a host.
func (l *Lab) AddTap(t testing.TB, index int) string {
	t.Helper()
	name := fmt.Sprintf("%st%d", l.id, index)
	l.batch(l.swNS, fmt.Sprintf(`tuntap add dev %[1]s mode tap
link set %[1]s master %[2]sbr
link set %[1]s up
`, name, l.id))
	return name
}

// SwitchCommand returns a command that runs name inside the bridge's
// namespace (where AddTap's taps are). It is killed when the lab is
// removed, if it still runs.
func (l *Lab) SwitchCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, l.ip, append([]string{"netns", "exec", l.swNS, name}, args...)...)
	l.mu.Lock()
	l.cmds = append(l.cmds, cmd)
	l.mu.Unlock()
	return cmd
}
