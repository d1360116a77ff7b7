// Package e2e holds diskcast's end-to-end test: virtual machines with
// empty disks network-boot from diskcast's own DHCP, TFTP and HTTP in a
// network namespace, run the imaging environment, receive an image by
// multicast through the orchestrator, reboot into it and print a marker.
// It has no code of its own, only tests; they need root and QEMU.
package e2e
