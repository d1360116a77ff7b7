// Package proto holds the plugin protocol: the .proto files and the Go
// code protoc generates from them (run scripts/gen-proto.sh after editing
// a .proto file). Only the SDK's client and server shims use it; plugins
// and the core see the Go contracts in sdk/base and the kind packages.
package proto
