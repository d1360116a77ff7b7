// Command diskcast captures disks into compact images and writes them onto
// many machines at once. One static binary holds the core, the node agent
// and the built-in plugins.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/diskcast/diskcast/core/cli"
	"github.com/diskcast/diskcast/plugins/boot/pxe"
	"github.com/diskcast/diskcast/plugins/fs/ext4"
	"github.com/diskcast/diskcast/plugins/fs/fat"
	"github.com/diskcast/diskcast/plugins/fs/ntfs"
	"github.com/diskcast/diskcast/plugins/fs/swap"
	"github.com/diskcast/diskcast/plugins/fs/xfs"
	unicast "github.com/diskcast/diskcast/plugins/transport/http"
	"github.com/diskcast/diskcast/plugins/transport/multicast"
	"github.com/diskcast/diskcast/sdk/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], builtins())
	stop()
	os.Exit(code)
}

// builtins lists the plugins compiled into diskcast. This is the one
// place where the core meets the plugins: they run out of process all the
// same, by re-executing this binary.
func builtins() *plugin.Set {
	set := plugin.NewSet()
	set.RegisterFilesystem("ext4", ext4.NewPlugin())
	set.RegisterFilesystem("fat", fat.NewPlugin())
	set.RegisterFilesystem("ntfs", ntfs.NewPlugin())
	set.RegisterFilesystem("swap", swap.NewPlugin())
	set.RegisterFilesystem("xfs", xfs.NewPlugin())
	set.RegisterTransport("multicast", multicast.NewPlugin())
	set.RegisterTransport("http", unicast.NewPlugin())
	set.RegisterBoot("pxe", pxe.NewPlugin())
	set.SetVersion(cli.Version)
	return set
}
