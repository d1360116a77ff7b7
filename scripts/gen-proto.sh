#!/usr/bin/env bash
# Regenerates the Go code of the plugin protocol (sdk/internal/proto) from
# its .proto files. The generated code is committed; run this after editing
# a .proto file. Needs protoc (Debian: protobuf-compiler) and the two Go
# generators at the versions pinned below, which it installs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"

PROTOC_GEN_GO=v1.36.12
PROTOC_GEN_GO_GRPC=v1.6.2

command -v protoc >/dev/null || { echo "gen-proto: protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
want() { "$1" --version 2>/dev/null | grep -q "${2#v}"; }
want protoc-gen-go "$PROTOC_GEN_GO" || go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO"
want protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC" || go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC"

cd sdk/internal/proto
protoc -I . \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  base.proto filesystem.proto transport.proto boot.proto
gofmt -l . | (! grep .) || { echo "gen-proto: generated code is not gofmt clean" >&2; exit 1; }
