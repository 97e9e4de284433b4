// Module mode, for users with network access (the offline build here is GOPATH mode: go.sh).
// The versions are the ones Debian bookworm packages and the offline build is tested with;
// go.sum is not checked in (it cannot be written offline): `go mod tidy` writes it.
module github.com/icmpfwd/client-go

go 1.19

require (
	github.com/golang/protobuf v1.5.2
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
