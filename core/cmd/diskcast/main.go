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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
