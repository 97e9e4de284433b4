#!/bin/sh
# Regenerates the checked-in Go code (icmpfwdv1/) from proto/icmpfwd/v1/forwarder.proto.
# Needs Debian's protobuf-compiler, protoc-gen-go (1.28) and protoc-gen-go-grpc (grpc-go 1.33).
# The proto has no go_package option (it would change the other languages' descriptors), so the
# import path is given here with M.
# Usage: clients/go/generate.sh [OUT_DIR]   (default: clients/go/icmpfwdv1)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/icmpfwdv1}
pkg=github.com/icmpfwd/client-go/icmpfwdv1
command -v protoc >/dev/null || { echo "protoc not found (apt-get install protobuf-compiler)" >&2; exit 127; }
command -v protoc-gen-go >/dev/null || { echo "protoc-gen-go not found (apt-get install protoc-gen-go)" >&2; exit 127; }
command -v protoc-gen-go-grpc >/dev/null || { echo "protoc-gen-go-grpc not found (apt-get install protoc-gen-go-grpc)" >&2; exit 127; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc -I "$root/proto" \
  --go_out="$tmp" --go_opt=paths=source_relative --go_opt="Micmpfwd/v1/forwarder.proto=$pkg" \
  --go-grpc_out="$tmp" --go-grpc_opt=paths=source_relative \
  --go-grpc_opt="Micmpfwd/v1/forwarder.proto=$pkg" \
  "$root/proto/icmpfwd/v1/forwarder.proto"
mkdir -p "$out"
cp "$tmp/icmpfwd/v1/forwarder.pb.go" "$tmp/icmpfwd/v1/forwarder_grpc.pb.go" "$out/"
