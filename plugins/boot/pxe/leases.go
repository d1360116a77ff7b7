package pxe

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// offerHold is how long an offered address stays reserved for the
// client it was offered to while it makes up its mind.
const offerHold = 60 * time.Second

// lease is one address bound to one MAC. A lease whose Expires has
// passed is still remembered, so that a machine gets its old address
// back while nobody else took it.
type lease struct {
	MAC     string    `json:"mac"`
	IP      string    `json:"ip"`
	Expires time.Time `json:"expires"`
	addr    netip.Addr
	offered bool // reserved by an offer, not yet acknowledged
}

// leaseFile is the on-disk form of the leases.
type leaseFile struct {
	Version int      `json:"version"`
	Leases  []*lease `json:"leases"`
}

// leases hands out the addresses of one pool.
type leases struct {
	mu    sync.Mutex
	pool  *pool
	path  string // "" keeps leases in memory only
	now   func() time.Time
	byMAC map[string]*lease
	byIP  map[netip.Addr]*lease
	// declined addresses are skipped until the time given.
	declined map[netip.Addr]time.Time
	reserved map[netip.Addr]bool // never handed out (server, router)
}

// openLeases loads path (if it exists) and drops leases outside the
// pool. A corrupt file is an error: silently starting empty could hand
// out addresses that machines still use.
func openLeases(p *pool, path string, reserved []netip.Addr, now func() time.Time) (*leases, error) {
	l := &leases{pool: p, path: path, now: now, byMAC: map[string]*lease{}, byIP: map[netip.Addr]*lease{},
		declined: map[netip.Addr]time.Time{}, reserved: map[netip.Addr]bool{}}
	for _, a := range reserved {
		l.reserved[a] = true
	}
	if path == "" {
		return l, nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pxe: lease file: %w", err)
	}
	var f leaseFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (move it away to start with no leases)", ErrLeaseFile, path, err)
	}
	for i, le := range f.Leases {
		a, err := netip.ParseAddr(le.IP)
		mac, merr := ParseMAC(le.MAC)
		if err != nil || merr != nil {
			return nil, fmt.Errorf("%w: %s: lease %d: bad mac %q or ip %q (move it away to start with no leases)", ErrLeaseFile, path, i, le.MAC, le.IP)
		}
		if !p.contains(a) || l.reserved[a] || l.byIP[a] != nil {
			continue // the pool changed: forget what no longer fits
		}
		le.MAC, le.addr = mac, a
		l.byMAC[mac] = le
		l.byIP[a] = le
	}
	return l, nil
}

// offer picks an address for mac: its current or past one, the one it
// asked for if free, else the first free address, else the address of
// the lease that expired longest ago. It reserves the address briefly.
func (l *leases) offer(mac string, want netip.Addr) (netip.Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if le := l.byMAC[mac]; le != nil {
		if le.offered || !le.Expires.Before(now) {
			if le.offered {
				le.Expires = now.Add(offerHold)
			}
			return le.addr, nil
		}
		// Expired but still ours: renew as an offer.
		le.offered, le.Expires = true, now.Add(offerHold)
		return le.addr, nil
	}
	if want.IsValid() && l.free(want, now) {
		return l.reserve(mac, want, now), nil
	}
	n := uint32(l.pool.size())
	start := ip4u(l.pool.start)
	for i := uint32(0); i < n; i++ {
		a := u2ip4(start + i)
		if l.byIP[a] == nil && l.usable(a, now) {
			return l.reserve(mac, a, now), nil
		}
	}
	// Take over the lease that expired longest ago.
	var oldest *lease
	for _, le := range l.byIP {
		if le.Expires.Before(now) && l.usable(le.addr, now) && (oldest == nil || le.Expires.Before(oldest.Expires)) {
			oldest = le
		}
	}
	if oldest == nil {
		return netip.Addr{}, fmt.Errorf("%w: %s-%s (%d addresses) all leased", ErrPoolExhausted, l.pool.start, l.pool.end, n)
	}
	delete(l.byMAC, oldest.MAC)
	delete(l.byIP, oldest.addr)
	return l.reserve(mac, oldest.addr, now), nil
}

// usable says whether a may be handed out at all.
func (l *leases) usable(a netip.Addr, now time.Time) bool {
	if l.reserved[a] {
		return false
	}
	if until, ok := l.declined[a]; ok {
		if now.Before(until) {
			return false
		}
		delete(l.declined, a)
	}
	return l.pool.contains(a)
}

// free says whether a is in the pool and nobody holds it.
func (l *leases) free(a netip.Addr, now time.Time) bool {
	if !l.usable(a, now) {
		return false
	}
	le := l.byIP[a]
	return le == nil || le.Expires.Before(now)
}

func (l *leases) reserve(mac string, a netip.Addr, now time.Time) netip.Addr {
	if old := l.byIP[a]; old != nil {
		delete(l.byMAC, old.MAC)
	}
	le := &lease{MAC: mac, IP: a.String(), addr: a, Expires: now.Add(offerHold), offered: true}
	l.byMAC[mac] = le
	l.byIP[a] = le
	return a
}

// ack binds a to mac for d and saves the leases. It fails with
// ErrNotLeased if a is not mac's to take (the caller NAKs).
func (l *leases) ack(mac string, a netip.Addr, d time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	le := l.byMAC[mac]
	switch {
	case le != nil && le.addr == a && !le.offered && le.Expires.Sub(now) > d/2:
		// A renewal of a binding the file already holds: a boot makes
		// several (PXE, iPXE, Linux), and an fsync each would serialize
		// a whole fleet's boot on the disk. After a restart the machine
		// still gets its address back; only the expiry on file is early.
		le.Expires = now.Add(d)
		return nil
	case le != nil && le.addr == a:
	default:
		// INIT-REBOOT after a lost lease file, or a client that wants a
		// new address: grant it if nobody holds it.
		if !l.free(a, now) {
			return fmt.Errorf("%w: %s for %s", ErrNotLeased, a, mac)
		}
		if le != nil {
			delete(l.byIP, le.addr)
		}
		l.reserve(mac, a, now)
		le = l.byMAC[mac]
	}
	le.offered, le.Expires = false, now.Add(d)
	return l.saveLocked()
}

// release ends mac's lease on a (DHCPRELEASE), keeping the memory of
// the address for the machine's next boot.
func (l *leases) release(mac string, a netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.byMAC[mac]
	if le == nil || le.addr != a {
		return nil
	}
	le.offered, le.Expires = false, l.now().Add(-time.Second)
	return l.saveLocked()
}

// decline marks a as in use by someone else (DHCPDECLINE) for a while.
func (l *leases) decline(mac string, a netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.byMAC[mac]
	if le == nil || le.addr != a {
		return nil
	}
	delete(l.byMAC, mac)
	delete(l.byIP, a)
	l.declined[a] = l.now().Add(10 * time.Minute)
	return l.saveLocked()
}

// forget drops an unacknowledged offer (the client took another server's).
func (l *leases) forget(mac string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if le := l.byMAC[mac]; le != nil && le.offered {
		delete(l.byMAC, mac)
		delete(l.byIP, le.addr)
	}
}

// lookup returns mac's bound (acknowledged, unexpired) address.
func (l *leases) lookup(mac string) (netip.Addr, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.byMAC[mac]
	if le == nil || le.offered || le.Expires.Before(l.now()) {
		return netip.Addr{}, false
	}
	return le.addr, true
}

// saveLocked writes the acknowledged leases: temporary file, fsync,
// rename, so that a crash leaves the old file or the new, never half.
func (l *leases) saveLocked() error {
	if l.path == "" {
		return nil
	}
	f := leaseFile{Version: 1, Leases: []*lease{}}
	for _, le := range l.byMAC {
		if !le.offered {
			f.Leases = append(f.Leases, le)
		}
	}
	sort.Slice(f.Leases, func(i, j int) bool { return f.Leases[i].addr.Less(f.Leases[j].addr) })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("pxe: lease file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(l.path), filepath.Base(l.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pxe: lease file: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), l.path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pxe: lease file %s: %w", l.path, werr)
	}
	return nil
}
