package orchestrator

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/diskcast/diskcast/sdk/boot"
)

// BootBackend answers a boot plugin for the orchestrator: a member of a
// running session that is not done yet boots the imaging environment
// (kernel and initrd from the API's /boot/ path, the session's server on
// the kernel command line); any other known node boots its local disk;
// an unknown MAC is recorded as discovered.
type BootBackend struct{ O *Orchestrator }

var _ boot.Backend = BootBackend{}

// Lookup says what the node with this MAC boots.
func (b BootBackend) Lookup(_ context.Context, n boot.Node) (*boot.Assignment, error) {
	o := b.O
	mac, err := NormalizeMAC(n.MAC)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	name, known, err := o.sightLocked(mac, n.IP, "network boot ("+n.Arch+")", now)
	if err != nil {
		return nil, err
	}
	if !known {
		return &boot.Assignment{Known: false}, nil
	}
	s := o.runningSessionOf(name)
	if s == nil || s.rec.Nodes[name].State == StateDone {
		return &boot.Assignment{Known: true}, nil // its own disk
	}
	srv := o.server.URL
	params := []string{o.server.BootCmdline,
		"diskcast.server=" + srv, "diskcast.mac=" + mac,
		// BOOTIF is what PXE-aware initrds use to pick the boot NIC.
		"BOOTIF=01-" + strings.ReplaceAll(mac, ":", "-")}
	return &boot.Assignment{
		Known:     true,
		KernelURL: srv + "/boot/vmlinuz",
		InitrdURL: srv + "/boot/initrd.img",
		Cmdline:   strings.TrimSpace(strings.Join(params, " ")),
	}, nil
}

// Report records what the boot plugin saw: the times of a node's boot
// steps, which the node's result then carries, and discovered nodes.
func (b BootBackend) Report(_ context.Context, e boot.Event) error {
	o := b.O
	mac, err := NormalizeMAC(e.MAC)
	if err != nil {
		return err
	}
	o.boots.note(mac, e.What, time.Now())
	o.log.Debug("boot event", "mac", mac, "event", e.What, "detail", e.Detail)
	return nil
}

// BootFile is a file of the imaging environment the API serves.
func (o *Orchestrator) BootFile(name string) (string, error) {
	switch name {
	case "vmlinuz", "initrd.img":
		return filepath.Join(o.server.BootDir, name), nil
	}
	return "", fmt.Errorf("%w: boot file %q: only vmlinuz and initrd.img are served", ErrNotFound, name)
}

// bootLog keeps, per MAC, when the boot plugin first saw each step of the
// node's latest boot, so the node's result can say how long DHCP, iPXE
// and the kernel download took. It is memory only: a daemon restart
// loses the boot timings of nodes booting then, nothing else.
// stepAgent is the agent's first request for its assignment.
const stepAgent = "agent"

type bootLog struct {
	mu   sync.Mutex
	macs map[string]map[string]time.Time
}

func (l *bootLog) note(mac, what string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.macs == nil {
		l.macs = map[string]map[string]time.Time{}
	}
	steps := l.macs[mac]
	// A new boot starts with DHCP after the agent of the last one asked
	// for work (the imaging environment's own DHCP comes before that).
	if steps == nil || (what == boot.EventDHCPOffer || what == boot.EventProxyOffer) && !steps[stepAgent].IsZero() {
		steps = map[string]time.Time{}
		l.macs[mac] = steps
	}
	if steps[what].IsZero() {
		steps[what] = at
	}
}

// timings turns the steps of a node's boot into phases: dhcp (offer to
// acknowledgement), ipxe (the iPXE download and its own DHCP, up to the
// script) and kernel (kernel and initrd download and boot, up to the
// agent's first request).
func (l *bootLog) timings(mac string) map[string]float64 {
	out := map[string]float64{}
	l.mu.Lock()
	steps := l.macs[mac]
	l.mu.Unlock()
	if steps == nil {
		return out
	}
	first := func(whats ...string) time.Time {
		var t time.Time
		for _, w := range whats {
			if s := steps[w]; !s.IsZero() && (t.IsZero() || s.Before(t)) {
				t = s
			}
		}
		return t
	}
	offer := first(boot.EventDHCPOffer, boot.EventProxyOffer)
	ack := first(boot.EventDHCPAck, boot.EventProxyAck, boot.EventTFTPDone)
	script := steps[boot.EventScript]
	if !offer.IsZero() && !ack.IsZero() && !ack.Before(offer) {
		out["dhcp"] = ack.Sub(offer).Seconds()
	}
	if ack.IsZero() {
		ack = offer // proxyDHCP clients that ask nothing more
	}
	if !ack.IsZero() && !script.IsZero() && script.After(ack) {
		out["ipxe"] = script.Sub(ack).Seconds()
	}
	if agent := steps[stepAgent]; !script.IsZero() && agent.After(script) {
		out["kernel"] = agent.Sub(script).Seconds()
	}
	return out
}
