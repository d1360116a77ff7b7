// Package pxe network-boots diskcast's nodes: a DHCP server (a full one
// with an address pool, or a proxyDHCP beside the site's own), a
// read-only TFTP server for the iPXE binaries, and an HTTP server for
// per-MAC iPXE scripts and, optionally, the imaging environment's kernel
// and initrd.
//
// The boot goes in two steps. PXE firmware that is not iPXE gets iPXE
// over TFTP (undionly.kpxe for BIOS, snponly.efi for x86-64 UEFI, told apart
// by DHCP option 93). iPXE (user class "iPXE", option 77, or option 175)
// gets the URL of its own script, http://SERVER:PORT/boot.ipxe?mac=MAC.
// The script is made per request from what the core assigns to the MAC
// (boot.Backend.Lookup): a node in a session boots the kernel and initrd
// with the session's command line; any other known node boots its local
// disk; an unknown MAC is reported as "discovered" and then boots locally
// or is held in iPXE, asking again every few seconds, as configured.
//
// Without an interface the DHCP sockets bind to server_ip and answer only
// relayed and unicast requests: they never broadcast. With one, they bind
// to it (SO_BINDTODEVICE) and answer its broadcasts only.
//
// Malformed and hostile packets are dropped and counted (Server.Stats);
// the counts are logged at most every 10 s while drops go on.
package pxe

import "errors"

// Errors of the package.
var (
	ErrConfig        = errors.New("pxe: invalid configuration")
	ErrBadMAC        = errors.New("pxe: bad MAC address")
	ErrLeaseFile     = errors.New("pxe: corrupt lease file")
	ErrPoolExhausted = errors.New("pxe: address pool exhausted")
	ErrNotLeased     = errors.New("pxe: address not leased to this client")
	ErrMalformed     = errors.New("pxe: malformed DHCP packet")
	ErrRefused       = errors.New("pxe: path refused")
)
