package pxe

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"text/template"
)

// ParseMAC normalizes a 6-byte Ethernet MAC written as six pairs of hex
// digits separated by colons or dashes ("52-54-00-12-34-56"), three
// groups of four separated by dots ("5254.0012.3456") or twelve digits
// ("525400123456"), in either case, to lower-case colon-separated form.
func ParseMAC(s string) (string, error) {
	var group int
	var sep byte
	switch len(s) {
	case 12:
	case 17:
		group, sep = 2, s[2]
		if sep != ':' && sep != '-' {
			return "", fmt.Errorf("%w: %q: want ':' or '-' between pairs of hex digits", ErrBadMAC, s)
		}
	case 14:
		group, sep = 4, '.'
	default:
		return "", fmt.Errorf("%w: %.40q: want aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff", ErrBadMAC, s)
	}
	var b strings.Builder
	n := 0 // hex digits so far
	for i := 0; i < len(s); i++ {
		c := s[i]
		if group > 0 && i%(group+1) == group {
			if c != sep {
				return "", fmt.Errorf("%w: %q: want %q at %d", ErrBadMAC, s, sep, i)
			}
			continue
		}
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", fmt.Errorf("%w: %q: unexpected %q at %d", ErrBadMAC, s, c, i)
		}
		if n > 0 && n%2 == 0 {
			b.WriteByte(':')
		}
		b.WriteByte(c)
		n++
	}
	return b.String(), nil
}

// scriptData is what the script templates see.
type scriptData struct {
	MAC        string // aa:bb:cc:dd:ee:ff
	KernelURL  string
	InitrdURL  string
	InitrdName string // the name iPXE gives the initrd image: its URL's last element
	Cmdline    string
	SelfURL    string // this script's URL, for held machines
	Retry      int    // seconds
	RetryMS    int
	Sanboot    bool
}

// The scripts. iPXE names a fetched image after the last element of its
// URL; the EFI stub finds the initrd by that name in initrd=.
var scripts = template.Must(template.New("").Parse(`
{{- define "session" -}}
#!ipxe
echo diskcast: {{.MAC}}: booting the imaging environment
kernel {{.KernelURL}}{{if .InitrdName}} initrd={{.InitrdName}}{{end}}{{if .Cmdline}} {{.Cmdline}}{{end}}
{{if .InitrdURL}}initrd {{.InitrdURL}}
{{end -}}
boot
{{end}}
{{- define "local" -}}
#!ipxe
echo diskcast: {{.MAC}}: booting from the local disk
{{if .Sanboot}}iseq ${platform} efi && exit ||
sanboot --no-describe --drive 0x80 || exit
{{else}}exit
{{end -}}
{{end}}
{{- define "hold" -}}
#!ipxe
echo diskcast: {{.MAC}} is not enrolled: asking again in {{.Retry}} s
sleep {{.Retry}} || prompt --timeout {{.RetryMS}} Press a key to ask now || echo
chain --replace --autofree {{.SelfURL}}
{{end}}
{{- define "ipxe" -}}
{{.}}
{{end}}
`))

// script renders the named script.
func script(name string, d scriptData) (string, error) {
	var b strings.Builder
	if err := scripts.ExecuteTemplate(&b, name, d); err != nil {
		return "", fmt.Errorf("pxe: %s script for %s: %w", name, d.MAC, err)
	}
	return b.String(), nil
}

// imageName is the name iPXE gives an image fetched from u.
func imageName(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Path == "" {
		return ""
	}
	name := path.Base(p.Path)
	if name == "/" || name == "." {
		return ""
	}
	return name
}

// scriptSafe says whether s can go into an iPXE script line as data:
// one line, without the operators that would run other commands. iPXE
// expands ${...} settings in it, which the core may use on purpose.
func scriptSafe(s string) bool {
	return !strings.ContainsAny(s, "\r\n") && !strings.Contains(s, "||") && !strings.Contains(s, "&&")
}
