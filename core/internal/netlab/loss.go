//go:build linux

package netlab

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/internal/testenv"
)

// lossTable is the nftables table SetLoss manages inside a host namespace.
const lossTable = "netlab_loss"

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+`)

// SetLoss makes the host drop percent% of the UDP datagrams it receives
// (unicast and multicast alike), chosen at random per packet with nftables
// in the host's namespace. SetLoss(t, 0) removes the rule. It skips the
// test when nft is not installed.
func (h *Host) SetLoss(t testing.TB, percent int) {
	t.Helper()
	if percent < 0 || percent > 100 {
		t.Fatalf("netlab: SetLoss %d%%: want 0 to 100", percent)
	}
	if _, err := testenv.LookPath("nft"); err != nil {
		t.Skip("skipping: SetLoss needs nft (Debian package nftables; run 'make deps' as root)")
	}
	// Creating then deleting the table first makes the script work whether
	// or not the table exists (nft 1.0.6 has no "destroy").
	script := fmt.Sprintf("add table inet %[1]s\ndelete table inet %[1]s\n", lossTable)
	if percent > 0 {
		// numgen yields 0..99, so 100% is a plain drop.
		match := fmt.Sprintf("numgen random mod 100 < %d ", percent)
		if percent == 100 {
			match = ""
		}
		script += fmt.Sprintf(`table inet %s {
	chain input {
		type filter hook input priority filter; policy accept;
		meta l4proto udp %scounter drop
	}
}
`, lossTable, match)
	}
	cmd := h.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("netlab: host %d: SetLoss %d%%: nft: %v\n%s", h.index, percent, err, out)
	}
}

// Dropped returns how many datagrams SetLoss's rule has dropped on this host
// since it was last set (0 when no loss is set).
func (h *Host) Dropped(t testing.TB) uint64 {
	t.Helper()
	out, err := h.Command(context.Background(), "nft", "list", "table", "inet", lossTable).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No such file or directory") {
			return 0
		}
		t.Fatalf("netlab: host %d: nft list table: %v\n%s", h.index, err, out)
	}
	m := counterRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("netlab: host %d: no counter in the loss table:\n%s", h.index, out)
	}
	n, err := strconv.ParseUint(string(m[1]), 10, 64)
	if err != nil {
		t.Fatalf("netlab: host %d: loss counter %q: %v", h.index, m[1], err)
	}
	return n
}
