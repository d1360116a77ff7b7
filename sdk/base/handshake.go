package base

import goplugin "github.com/hashicorp/go-plugin"

// APIVersion is the version of the plugin protocol this SDK speaks. The
// core refuses plugins that speak another one, naming both versions.
const APIVersion = 1

// Handshake is what the core and a plugin check before they talk. The
// magic cookie only stops a plugin binary from being run by hand by
// mistake; it is not a security measure (the core checks each
// third-party binary's SHA-256 before starting it).
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  APIVersion,
	MagicCookieKey:   "DISKCAST_PLUGIN",
	MagicCookieValue: "8d3c1a3e6f0b4b7e9a52c4d1f2e07b61",
}
