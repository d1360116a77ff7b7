// Command diskcast-plugin-squashfs is the squashfs filesystem plugin for
// diskcast. Install it into a plugin directory with its checksum file (see
// the README); diskcast runs it.
package main

import (
	"fmt"
	"os"

	"github.com/diskcast/diskcast/examples/squashfs"
	"github.com/diskcast/diskcast/sdk/plugin"
)

func main() {
	set := plugin.NewSet()
	set.RegisterFilesystem("squashfs", squashfs.New())
	set.SetVersion("1.0.0")
	if err := set.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
