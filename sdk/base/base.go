// Package base is the part of the plugin contract that every kind of
// diskcast plugin shares: what a plugin says about itself (Info), the
// settings it accepts (Schema) and how it receives them (Configure), the
// handshake and API version, and the errors that keep their identity
// across the process boundary.
//
// Changing anything exported here breaks every plugin built against an
// earlier SDK. Add, never change; when a change cannot be avoided, bump
// APIVersion so that old plugins are refused with a clear message instead
// of misbehaving.
package base

import (
	"context"
	"errors"
)

// Errors shared by every kind of plugin. Test them with errors.Is: they
// keep their identity across the plugin boundary (the client shims map
// gRPC status codes back to them). Their messages start with "plugin:"
// rather than "base:" because operators read them as plugin failures.
var (
	// ErrInvalidConfig means Configure rejected a setting.
	ErrInvalidConfig = errors.New("plugin: invalid configuration")
	// ErrUnsupported means the plugin does not offer the operation.
	ErrUnsupported = errors.New("plugin: operation not supported by this plugin")
	// ErrPluginExited means the plugin process went away during a call.
	ErrPluginExited = errors.New("plugin: plugin process exited")
	// ErrTimeout means the plugin did not answer in time.
	ErrTimeout = errors.New("plugin: plugin did not answer in time")
	// ErrAPIVersion means the plugin speaks another plugin API version.
	ErrAPIVersion = errors.New("plugin: incompatible plugin API version")
)

// Kind is the kind of a plugin.
type Kind string

// The plugin kinds.
const (
	KindFilesystem Kind = "filesystem"
	KindTransport  Kind = "transport"
	KindBoot       Kind = "boot"
)

// Kinds lists every kind, in the order tools show them.
var Kinds = []Kind{KindFilesystem, KindTransport, KindBoot}

// Info describes a running plugin.
type Info struct {
	Kind        Kind   `json:"kind"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	APIVersion  int    `json:"api_version"`
	Description string `json:"description,omitempty"`
}

// Plugin is what every plugin implements, whatever its kind.
type Plugin interface {
	// Info describes the plugin. The SDK fills in Kind, Name, Version and
	// APIVersion from the registration (sdk/plugin.Set), so a plugin
	// usually sets only Description.
	Info(ctx context.Context) (*Info, error)
	// ConfigSchema lists the settings Configure accepts.
	ConfigSchema(ctx context.Context) (*Schema, error)
	// Configure applies settings before any other call. An invalid
	// setting gives an error wrapping ErrInvalidConfig that names it.
	Configure(ctx context.Context, cfg Config) error
}

// Description is what a plugin binary prints for its "describe"
// subcommand, as JSON: every plugin the binary serves.
type Description struct {
	APIVersion int         `json:"api_version"`
	Version    string      `json:"version"`
	Plugins    []Component `json:"plugins"`
}

// Component is one plugin served by a binary.
type Component struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
}

// Mark returns an error with err's message for which errors.Is(e, kind)
// holds, as does errors.Is(e, target) for anything err wraps. Plugins use
// it to classify their own errors (base.Mark(err, filesystem.ErrCorrupt))
// without changing what the operator reads.
func Mark(err, kind error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, kind) {
		return err
	}
	return &marked{err: err, kind: kind}
}

type marked struct{ err, kind error }

func (m *marked) Error() string        { return m.err.Error() }
func (m *marked) Unwrap() []error      { return []error{m.err, m.kind} }
func (m *marked) Is(target error) bool { return target == m.kind }
