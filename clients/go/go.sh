#!/bin/sh
# Runs the go tool in GOPATH mode (GO111MODULE=off) over Debian's /usr/share/gocode
# (golang-google-grpc-dev, golang-google-protobuf-dev), with this directory mounted as the import
# path github.com/icmpfwd/client-go in a throwaway GOPATH. GO111MODULE=off ignores go.mod (which
# is for module-mode users with network access): nothing is fetched.
# Usage (from anywhere): clients/go/go.sh vet ./...
#                        clients/go/go.sh test ./...
#                        clients/go/go.sh build -o /abs/path/icmpfwd-policy-go ./cmd/icmpfwd-policy-go
# The go command runs in this directory (as seen through the GOPATH), so ./... means this package
# tree; give -o an absolute path.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
command -v go >/dev/null || { echo "go not found (apt-get install golang-go)" >&2; exit 127; }
[ -d /usr/share/gocode/src/google.golang.org/grpc ] ||
  { echo "/usr/share/gocode has no grpc (apt-get install golang-google-grpc-dev golang-google-protobuf-dev)" >&2; exit 127; }
gopath=$(mktemp -d "${TMPDIR:-/tmp}/icmpfwd-gopath-XXXXXX")
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/github.com/icmpfwd"
ln -s "$here" "$gopath/src/github.com/icmpfwd/client-go"
export GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS=
# The build cache survives the throwaway GOPATH (keyed by content, so sharing it is safe).
if [ -z "${GOCACHE:-}" ]; then
  if [ -n "${HOME:-}" ]; then GOCACHE="$HOME/.cache/go-build"; else GOCACHE="${TMPDIR:-/tmp}/icmpfwd-gocache"; fi
  export GOCACHE
fi
cd "$gopath/src/github.com/icmpfwd/client-go"
go "$@"
