// Package boot is the contract between diskcast and its boot plugins,
// which answer the network boot of nodes (DHCP or proxyDHCP, TFTP, HTTP)
// and hand each node what the core assigned to it: a kernel, an initrd
// and a command line, or an iPXE script.
//
// Provisional: this contract will change while the PXE plugin is written,
// before it is declared stable. After that, changing anything exported
// here breaks every boot plugin built against an earlier SDK: add, never
// change, or bump base.APIVersion.
package boot

import (
	"context"

	"github.com/diskcast/diskcast/sdk/base"
)

// Network says where a boot plugin serves.
type Network struct {
	Interface string // network interface to serve on
	ServerIP  string // this host's address on it
	HTTPURL   string // base URL of the core's HTTP server for kernels and images
}

// Node is a machine asking to boot.
type Node struct {
	MAC string // lower-case, colon-separated
	IP  string // if known
	// Arch is the client architecture (DHCP option 93) if the plugin
	// saw it: "BIOS", "x86-64 UEFI", "IA32 UEFI", "ARM64 UEFI", or
	// another name from IANA's registry.
	Arch string
}

// Assignment is what a node boots. Known is false for a node the core
// does not know (yet): the plugin then boots it into enrollment, or not
// at all, as its configuration says.
type Assignment struct {
	Known      bool
	KernelURL  string
	InitrdURL  string
	Cmdline    string
	IPXEScript string // if set, served instead of a script made from the fields above
}

// Event is something a boot plugin saw, reported to the core (e.g. a
// DHCP request from a node, a file served).
type Event struct {
	MAC    string
	What   string // short constant, e.g. EventDHCPOffer, EventTFTPDone
	Detail string
}

// Values of Event.What that the core acts on or shows. A plugin may
// report others.
const (
	// EventDiscovered: a MAC the core does not know asked to boot
	// (Detail: its IP and architecture, if known). Reported once per
	// MAC while the plugin serves.
	EventDiscovered = "discovered"
	EventDHCPOffer  = "dhcp-offer"  // Detail: address and boot file
	EventDHCPAck    = "dhcp-ack"    // Detail: address and boot file
	EventDHCPNak    = "dhcp-nak"    // Detail: why
	EventProxyOffer = "proxy-offer" // proxyDHCP offer; Detail: boot file
	EventProxyAck   = "proxy-ack"   // answer on the PXE port (4011); Detail: boot file
	EventTFTPDone   = "tftp-done"   // Detail: file name
	// EventScript: a boot script was served. Detail says which:
	// "session", "local", "hold" or "custom" (Assignment.IPXEScript).
	EventScript = "script"
)

// Backend is the core's side of a boot plugin.
type Backend interface {
	Lookup(ctx context.Context, n Node) (*Assignment, error)
	Report(ctx context.Context, e Event) error
}

// Capabilities lists what a boot plugin serves.
type Capabilities struct {
	DHCP      bool `json:"dhcp"`
	ProxyDHCP bool `json:"proxy_dhcp"`
	TFTP      bool `json:"tftp"`
	HTTP      bool `json:"http"`
}

// Boot is what a boot plugin implements.
type Boot interface {
	base.Plugin
	Capabilities(ctx context.Context) (*Capabilities, error)
	// Serve answers boot requests on the network until ctx ends, asking
	// backend what each node boots. It returns nil when ctx ends.
	Serve(ctx context.Context, n Network, backend Backend) error
}
