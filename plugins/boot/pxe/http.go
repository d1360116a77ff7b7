package pxe

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/diskcast/diskcast/sdk/boot"
)

// Handler serves, asking backend what each node boots:
//
//	GET /boot.ipxe?mac=MAC   the node's iPXE script
//	GET /boot/MAC.ipxe       the same
//	GET /files/PATH          files_dir, read-only (if set)
//
// MAC may be written with colons, dashes, dots or nothing, in any case.
func (s *Server) Handler(backend boot.Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		s.serveScript(w, r, backend, r.URL.Query().Get("mac"))
	})
	mux.HandleFunc("GET /boot/{file}", func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutSuffix(r.PathValue("file"), ".ipxe")
		if !ok {
			s.stats.httpRefused.Add(1)
			http.Error(w, "pxe: want /boot/MAC.ipxe", http.StatusNotFound)
			return
		}
		s.serveScript(w, r, backend, name)
	})
	if s.cfg.FilesDir != "" {
		mux.HandleFunc("GET /files/", s.serveFile)
	}
	return mux
}

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request, backend boot.Backend, rawMAC string) {
	mac, err := ParseMAC(rawMAC)
	if err != nil {
		s.stats.httpRefused.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ip := remoteIP(r)
	node := boot.Node{MAC: mac, Arch: s.archOf(mac)}
	if ip.IsValid() {
		node.IP = ip.String()
		s.remember(client{mac: mac}, ip)
	}
	d := scriptData{MAC: mac, SelfURL: s.scriptURL(mac), Retry: s.cfg.HoldRetry,
		RetryMS: s.cfg.HoldRetry * 1000, Sanboot: s.cfg.LocalBoot == LocalSanboot}
	kind, body := "", ""
	a, err := backend.Lookup(r.Context(), node)
	switch {
	case err != nil:
		// The core may be restarting: keep the node asking rather than
		// let it boot whatever its disk holds.
		s.log.Error("lookup failed: holding the node", "mac", mac, "error", err.Error())
		kind = "hold"
	case !a.Known:
		s.discover(mac, node)
		kind = s.cfg.Unknown
	case a.IPXEScript != "":
		kind, body = "custom", a.IPXEScript
	case a.KernelURL != "":
		kind = "session"
		d.KernelURL, d.InitrdURL, d.Cmdline, d.InitrdName = a.KernelURL, a.InitrdURL, a.Cmdline, imageName(a.InitrdURL)
		if !scriptSafe(a.KernelURL) || !scriptSafe(a.InitrdURL) || !scriptSafe(a.Cmdline) || strings.ContainsAny(a.KernelURL+a.InitrdURL, " \t") {
			s.log.Error("assignment does not fit an iPXE script line", "mac", mac)
			http.Error(w, fmt.Sprintf("pxe: assignment of %s: kernel URL, initrd URL and command line must be single lines without \"||\" or \"&&\", URLs without spaces", mac), http.StatusInternalServerError)
			return
		}
	default:
		kind = UnknownLocal
	}
	if body == "" {
		if body, err = script(kind, d); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	s.stats.httpScripts.Add(1)
	s.event(boot.Event{MAC: mac, What: boot.EventScript, Detail: kind})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, body)
}

// discover reports an unknown MAC, once per Serve.
func (s *Server) discover(mac string, n boot.Node) {
	s.mu.Lock()
	if len(s.discovered) >= maxSeen {
		clear(s.discovered)
	}
	first := !s.discovered[mac]
	s.discovered[mac] = true
	s.mu.Unlock()
	if first {
		s.log.Info("unknown node discovered", "mac", mac, "ip", n.IP, "arch", n.Arch)
		s.event(boot.Event{MAC: mac, What: boot.EventDiscovered, Detail: strings.TrimSpace(n.IP + " " + n.Arch)})
	}
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/files/")
	f, _, err := openConfined(s.cfg.FilesDir, name)
	if err != nil {
		s.stats.httpRefused.Add(1)
		code := http.StatusForbidden
		if errors.Is(err, fs.ErrNotExist) {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.stats.httpFiles.Add(1)
	s.log.Debug("file served", "file", name, "peer", r.RemoteAddr, "range", r.Header.Get("Range"))
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

func remoteIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
