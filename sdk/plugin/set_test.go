package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/diskcast/diskcast/sdk/filesystem"
	"github.com/diskcast/diskcast/sdk/transport"
)

func testSet() *Set {
	s := NewSet()
	s.RegisterFilesystem("zfs", &filesystem.Mock{})
	s.RegisterFilesystem("btrfs", &filesystem.Mock{})
	s.RegisterTransport("multicast", &transport.Mock{})
	s.RegisterBoot("pxe", &boot.Mock{})
	s.SetVersion("2.3.4")
	return s
}

func TestDescribe(t *testing.T) {
	var out bytes.Buffer
	if err := testSet().RunArgs([]string{"describe"}, &out); err != nil {
		t.Fatal(err)
	}
	var d base.Description
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	want := `{1 2.3.4 [{filesystem btrfs} {filesystem zfs} {transport multicast} {boot pxe}]}`
	if got := fmt.Sprint(d); got != want {
		t.Errorf("describe: %s, want %s", got, want)
	}
	if _, ok := testSet().Filesystem("zfs"); !ok {
		t.Error("Filesystem(zfs) not found")
	}
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name string
		reg  func(s *Set)
		msg  string
	}{
		{"duplicate", func(s *Set) { s.RegisterFilesystem("zfs", &filesystem.Mock{}) }, `filesystem "zfs" registered twice`},
		{"bad name", func(s *Set) { s.RegisterFilesystem("Z FS", &filesystem.Mock{}) }, `register filesystem "Z FS"`},
		{"nil", func(s *Set) { s.RegisterBoot("x", nil) }, "nil implementation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(r.(string), tc.msg) {
					t.Errorf("panic %v, want %q", r, tc.msg)
				}
			}()
			tc.reg(testSet())
		})
	}
}

func TestRunArgs(t *testing.T) {
	s := testSet()
	if err := s.RunArgs(nil, &bytes.Buffer{}); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "filesystem btrfs, filesystem zfs") {
		t.Errorf("no arguments: %v", err)
	}
	if err := s.RunArgs([]string{"start", "filesystem", "ext4"}, &bytes.Buffer{}); !errors.Is(err, ErrNoSuchPlugin) {
		t.Errorf("start of an unknown plugin: %v", err)
	}
	t.Setenv(base.Handshake.MagicCookieKey, "")
	if err := s.RunArgs([]string{"start", "filesystem", "zfs"}, &bytes.Buffer{}); !errors.Is(err, ErrNotStarted) {
		t.Errorf("start by hand: %v", err)
	}
}
