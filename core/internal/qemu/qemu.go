// Package qemu runs virtual machines for tests and watches their serial
// console: a VM boots a disk image, a kernel and initramfs, or (through its
// NICs' iPXE option ROMs) the network, and the test waits for marker lines.
//
// VMs run under TCG (-accel tcg): /dev/kvm exists on the CI machines but does
// not boot guests there. A VM never has a network of its own: QEMU gets
// "-nic none", so its default user-mode network is never created, and the
// only NICs are the ones Options names, each either unconnected or on a tap
// interface that the test made (inside the test's network namespace).
//
// Every VM is registered with t.Cleanup: the QEMU process this package
// started is killed by its PID, and when the test failed the tail of the
// console log is logged. The whole console log is also kept in a file under
// t.TempDir().
package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/internal/testenv"
)

// Binary is the QEMU system emulator this package runs.
const Binary = "qemu-system-x86_64"

var (
	// ErrExited is returned by WaitFor when QEMU exits before the pattern
	// appears on the console.
	ErrExited = errors.New("qemu: vm exited")
	// ErrOptions reports options that cannot describe a VM.
	ErrOptions = errors.New("qemu: bad options")
	// ErrNoFirmware is returned when UEFI is asked for and OVMF is missing.
	ErrNoFirmware = errors.New("qemu: no OVMF firmware (install the Debian package ovmf)")
)

// NIC is one network card of a VM.
type NIC struct {
	// Tap is a tap interface for the NIC's backend, opened with
	// script=no. It must exist in Options.Netns (or the root namespace
	// when that is empty). Empty leaves the NIC unconnected: the guest
	// sees a NIC with a link, and nothing it sends goes anywhere.
	Tap string
	// MAC is the NIC's address, e.g. "52:54:00:00:00:01"; empty lets
	// QEMU choose.
	MAC string
	// Model is the QEMU device; default "virtio-net-pci". Its option ROM
	// is QEMU's default, iPXE from Debian's ipxe-qemu package
	// (efi-virtio.rom, pxe-e1000.rom, ...).
	Model string
	// ROMFile replaces the option ROM (a path to a .rom file).
	ROMFile string
}

// Options describe a VM.
type Options struct {
	// Name labels the log lines and the console log file; default "vm".
	Name string
	// Disk is an image file attached as the VM's hard disk (read-write).
	Disk string
	// DiskFormat is QEMU's format name for Disk; default "raw".
	DiskFormat string
	// Snapshot discards the guest's writes to Disk (QEMU keeps them in a
	// temporary file), so several VMs can boot one image at once.
	Snapshot bool
	// DiskInterface is how the disk is attached: "virtio" (default),
	// "ide", "ahci", "nvme" or "scsi" (virtio-scsi).
	DiskInterface string
	// Kernel, Initrd and Append boot a kernel directly (-kernel, -initrd,
	// -append) instead of the firmware's boot devices.
	Kernel, Initrd, Append string
	// Memory is the guest RAM in MiB; default 512.
	Memory int
	// CPUs is the number of virtual CPUs; default 1.
	CPUs int
	// NICs are the VM's network cards, in PCI order.
	NICs []NIC
	// UEFI boots OVMF (Debian's ovmf package) instead of SeaBIOS, with a
	// private copy of the variable store.
	UEFI bool
	// BootOrder lists boot devices in order: 'n' the NICs (PXE through
	// their iPXE ROMs), 'c' the disk. Empty leaves the firmware's default
	// (the disk).
	BootOrder string
	// Reboot lets a guest reboot; by default (-no-reboot) a reboot ends
	// QEMU like a power-off does.
	Reboot bool
	// Netns runs QEMU in this network namespace (ip netns exec), where
	// the NICs' taps live.
	Netns string
	// Extra are further QEMU arguments.
	Extra []string
}

// Require skips the test unless QEMU can run here: root (taps, network
// namespaces, and the build cache under /var/tmp) and qemu-system-x86_64.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "QEMU virtual machines")
	testenv.RequireCommands(t, Binary)
}

// VM is a running QEMU. Its console lines are kept in memory and in the
// file Log names.
type VM struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	logPath string
	started time.Time

	mu      sync.Mutex
	lines   []string
	partial string
	next    int           // first line WaitFor has not consumed
	changed chan struct{} // closed and replaced when lines or state change
	exited  bool
	exitErr error
	ended   time.Time
	done    chan struct{} // closed when QEMU has exited and the output is read
}

// Args returns the QEMU command line (without the binary) for opts; vars is
// the path of the VM's own copy of the UEFI variable store.
func Args(opts Options, vars string) ([]string, error) {
	mem := opts.Memory
	if mem == 0 {
		mem = 512
	}
	cpus := opts.CPUs
	if cpus == 0 {
		cpus = 1
	}
	args := []string{
		"-accel", "tcg",
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		// -nographic makes SeaBIOS and iPXE print to the serial port too.
		"-nographic", "-monitor", "none",
		"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
		// No default user-mode network, whatever devices follow.
		"-nic", "none",
	}
	if !opts.Reboot {
		args = append(args, "-no-reboot")
	}
	if opts.UEFI {
		code, _ := OVMF()
		if code == "" {
			return nil, ErrNoFirmware
		}
		if vars == "" {
			return nil, fmt.Errorf("%w: UEFI without a variable store", ErrOptions)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,file="+vars)
	}

	// Boot order through bootindex properties, which SeaBIOS and OVMF
	// both honour.
	diskIndex, nicIndex := -1, -1
	for i, c := range opts.BootOrder {
		switch c {
		case 'c':
			if opts.Disk == "" {
				return nil, fmt.Errorf("%w: boot order %q: 'c' without a disk", ErrOptions, opts.BootOrder)
			}
			diskIndex = i
		case 'n':
			if len(opts.NICs) == 0 {
				return nil, fmt.Errorf("%w: boot order %q: 'n' without a NIC", ErrOptions, opts.BootOrder)
			}
			nicIndex = i
		default:
			return nil, fmt.Errorf("%w: boot order %q: unknown device %q (want 'c' disk or 'n' network)", ErrOptions, opts.BootOrder, c)
		}
	}
	// NICs share one slot in the order; give each its own index after
	// every slot's base.
	bootindex := func(slot, sub int) string {
		if slot < 0 {
			return ""
		}
		return ",bootindex=" + strconv.Itoa(slot*100+sub)
	}

	if opts.Disk != "" {
		format := opts.DiskFormat
		if format == "" {
			format = "raw"
		}
		drive := "file=" + opts.Disk + ",format=" + format + ",if=none,id=disk0,cache=writeback"
		if opts.Snapshot {
			drive += ",snapshot=on"
		}
		args = append(args, "-drive", drive)
		bi := bootindex(diskIndex, 0)
		switch opts.DiskInterface {
		case "", "virtio":
			args = append(args, "-device", "virtio-blk-pci,drive=disk0"+bi)
		case "ide":
			args = append(args, "-device", "ide-hd,drive=disk0,bus=ide.0"+bi)
		case "ahci":
			args = append(args, "-device", "ich9-ahci,id=ahci0", "-device", "ide-hd,drive=disk0,bus=ahci0.0"+bi)
		case "nvme":
			args = append(args, "-device", "nvme,drive=disk0,serial=diskcast0"+bi)
		case "scsi":
			args = append(args, "-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=disk0,bus=scsi0.0"+bi)
		default:
			return nil, fmt.Errorf("%w: disk interface %q (want virtio, ide, ahci, nvme or scsi)", ErrOptions, opts.DiskInterface)
		}
	}

	for i, n := range opts.NICs {
		model := n.Model
		if model == "" {
			model = "virtio-net-pci"
		}
		dev := model
		if n.Tap != "" {
			id := "net" + strconv.Itoa(i)
			args = append(args, "-netdev", "tap,id="+id+",ifname="+n.Tap+",script=no,downscript=no")
			dev += ",netdev=" + id
		}
		if n.MAC != "" {
			dev += ",mac=" + n.MAC
		}
		if n.ROMFile != "" {
			dev += ",romfile=" + n.ROMFile
		}
		dev += bootindex(nicIndex, i)
		args = append(args, "-device", dev)
	}

	if opts.Kernel != "" {
		args = append(args, "-kernel", opts.Kernel)
		if opts.Initrd != "" {
			args = append(args, "-initrd", opts.Initrd)
		}
		if opts.Append != "" {
			args = append(args, "-append", opts.Append)
		}
	} else if opts.Initrd != "" || opts.Append != "" {
		return nil, fmt.Errorf("%w: Initrd or Append without Kernel", ErrOptions)
	}
	return append(args, opts.Extra...), nil
}

// OVMF returns the paths of the UEFI firmware code and its variable store
// template, or empty strings when the ovmf package is not installed.
func OVMF() (code, vars string) {
	for _, pair := range [][2]string{
		{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
		{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
	} {
		if fileExists(pair[0]) && fileExists(pair[1]) {
			return pair[0], pair[1]
		}
	}
	return "", ""
}

func hasTap(nics []NIC) bool {
	for _, n := range nics {
		if n.Tap != "" {
			return true
		}
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Start boots a VM and returns at once; the test's cleanup kills it. It
// skips the test when QEMU (or, for UEFI, OVMF) is not installed, and
// fails it on bad options.
func Start(t testing.TB, opts Options) *VM {
	t.Helper()
	testenv.RequireCommands(t, Binary)
	if opts.Netns != "" || hasTap(opts.NICs) {
		testenv.RequireRoot(t, "a VM on a tap interface")
	}
	name := opts.Name
	if name == "" {
		name = "vm"
	}
	dir := t.TempDir()
	vars := ""
	if opts.UEFI {
		code, tmpl := OVMF()
		if code == "" {
			t.Skipf("skipping: %v", ErrNoFirmware)
		}
		vars = filepath.Join(dir, name+"-OVMF_VARS.fd")
		data, err := os.ReadFile(tmpl)
		if err != nil {
			t.Fatalf("qemu %s: %v", name, err)
		}
		if err := os.WriteFile(vars, data, 0o600); err != nil {
			t.Fatalf("qemu %s: %v", name, err)
		}
	}
	args, err := Args(opts, vars)
	if err != nil {
		t.Fatalf("qemu %s: %v", name, err)
	}
	bin, err := testenv.LookPath(Binary)
	if err != nil {
		t.Fatalf("qemu %s: %v", name, err)
	}
	var cmd *exec.Cmd
	if opts.Netns != "" {
		ip, err := testenv.LookPath("ip")
		if err != nil {
			t.Skipf("skipping: Options.Netns needs the ip command (Debian package iproute2): %v", err)
		}
		// ip netns exec execs QEMU itself, so the PID is QEMU's.
		cmd = exec.Command(ip, append([]string{"netns", "exec", opts.Netns, bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	// Own process group: a ^C to the test does not reach QEMU first, and
	// QEMU never reads the test's terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	vm := &VM{
		t:       t,
		name:    name,
		cmd:     cmd,
		logPath: filepath.Join(dir, name+"-console.log"),
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	logFile, err := os.Create(vm.logPath)
	if err != nil {
		t.Fatalf("qemu %s: %v", name, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatalf("qemu %s: %v", name, err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if vm.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatalf("qemu %s: %v", name, err)
	}
	fmt.Fprintf(logFile, "# %s\n", strings.Join(cmd.Args, " "))
	vm.started = time.Now()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		logFile.Close()
		t.Fatalf("qemu %s: start: %v", name, err)
	}
	pw.Close()
	t.Logf("qemu %s: started pid %d: %s", name, cmd.Process.Pid, strings.Join(cmd.Args, " "))
	go vm.read(pr, logFile)
	t.Cleanup(vm.cleanup)
	return vm
}

// read copies QEMU's output into the log file and the line buffer until
// QEMU closes it, then reaps QEMU.
func (vm *VM) read(r io.ReadCloser, logFile *os.File) {
	br := bufio.NewReader(r)
	for {
		chunk, err := br.ReadString('\n')
		if chunk != "" {
			logFile.WriteString(chunk)
			vm.add(chunk)
		}
		if err != nil {
			break
		}
	}
	r.Close()
	logFile.Close()
	werr := vm.cmd.Wait()
	vm.mu.Lock()
	if vm.partial != "" {
		vm.lines = append(vm.lines, vm.partial)
		vm.partial = ""
	}
	vm.exited, vm.exitErr, vm.ended = true, werr, time.Now()
	vm.notifyLocked()
	vm.mu.Unlock()
	close(vm.done)
}

func (vm *VM) add(chunk string) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	s := vm.partial + chunk
	if !strings.HasSuffix(s, "\n") {
		vm.partial = s
		vm.notifyLocked()
		return
	}
	vm.partial = ""
	vm.lines = append(vm.lines, strings.TrimRight(s, "\r\n"))
	vm.notifyLocked()
}

func (vm *VM) notifyLocked() {
	close(vm.changed)
	vm.changed = make(chan struct{})
}

// WaitFor waits until a console line contains s and returns that line.
// Like expect, each match consumes the output up to and including the
// matched line: the next WaitFor looks only at later lines.
func (vm *VM) WaitFor(ctx context.Context, s string) (string, error) {
	m, err := vm.WaitForRegexp(ctx, regexp.MustCompile(regexp.QuoteMeta(s)))
	if err != nil {
		return "", err
	}
	return m[0], nil
}

// WaitForRegexp waits until a console line matches re and returns the
// line followed by re's submatches. It consumes output like WaitFor.
func (vm *VM) WaitForRegexp(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	for {
		vm.mu.Lock()
		for ; vm.next < len(vm.lines); vm.next++ {
			line := vm.lines[vm.next]
			if m := re.FindStringSubmatch(line); m != nil {
				vm.next++
				vm.mu.Unlock()
				return append([]string{line}, m[1:]...), nil
			}
		}
		// A line still being written (a prompt) counts too, without
		// consuming it.
		if vm.partial != "" {
			if m := re.FindStringSubmatch(vm.partial); m != nil {
				line := vm.partial
				vm.mu.Unlock()
				return append([]string{line}, m[1:]...), nil
			}
		}
		exited, exitErr, changed := vm.exited, vm.exitErr, vm.changed
		vm.mu.Unlock()
		if exited {
			return nil, fmt.Errorf("%w before %q appeared on the console (exit: %v; log %s)", ErrExited, re, exitStatus(exitErr), vm.logPath)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qemu %s: waiting %s for %q on the console: %w (log %s)",
				vm.name, time.Since(vm.started).Round(time.Millisecond), re, ctx.Err(), vm.logPath)
		case <-changed:
		}
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// Wait waits until QEMU exits (the guest powered off, or rebooted without
// Options.Reboot) and returns its exit error, nil for status 0.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		vm.mu.Lock()
		defer vm.mu.Unlock()
		return vm.exitErr
	case <-ctx.Done():
		return fmt.Errorf("qemu %s: waiting for exit: %w (log %s)", vm.name, ctx.Err(), vm.logPath)
	}
}

// Send writes s to the serial console's input.
func (vm *VM) Send(s string) error {
	if _, err := io.WriteString(vm.stdin, s); err != nil {
		return fmt.Errorf("qemu %s: console input: %w", vm.name, err)
	}
	return nil
}

// Lines returns a copy of the complete console lines so far.
func (vm *VM) Lines() []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]string(nil), vm.lines...)
}

// Log returns the path of the console log file.
func (vm *VM) Log() string { return vm.logPath }

// PID returns QEMU's process ID.
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// Uptime returns how long QEMU has run (until it exited, if it has).
func (vm *VM) Uptime() time.Duration {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.exited {
		return vm.ended.Sub(vm.started)
	}
	return time.Since(vm.started)
}

// Stop kills QEMU (by its PID, nothing else) and waits for it. It is safe
// to call more than once and after QEMU exited by itself.
func (vm *VM) Stop() {
	select {
	case <-vm.done:
		return
	default:
	}
	vm.cmd.Process.Kill()
	vm.stdin.Close()
	select {
	case <-vm.done:
	case <-time.After(10 * time.Second):
		vm.t.Logf("qemu %s: pid %d did not exit 10 s after SIGKILL", vm.name, vm.PID())
	}
}

// tailLines is how much of the console a failed test logs.
const tailLines = 40

func (vm *VM) cleanup() {
	vm.Stop()
	if !vm.t.Failed() {
		return
	}
	lines := vm.Lines()
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	vm.t.Logf("qemu %s: last %d console lines (all in %s):\n%s", vm.name, len(lines), vm.logPath, strings.Join(lines, "\n"))
}
