// gvisor-echo: gVisor's own netstack answering ICMP Echo on a TUN device, the peer the
// benchmark compares icmpfwd's netstack with. Built by the benchmark in GOPATH mode against
// Debian's golang-gvisor-gvisor-dev; run inside a private network namespace.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
)

func main() {
	name := flag.String("tun", "gvisor0", "TUN device to create")
	addr := flag.String("addr", "198.18.0.2", "the netstack's IPv4 address")
	mtu := flag.Uint("mtu", 1500, "MTU")
	flag.Parse()

	fd, err := tun.Open(*name)
	if err != nil {
		log.Fatalf("tun.Open(%s): %v", *name, err)
	}
	link, err := fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: uint32(*mtu)})
	if err != nil {
		log.Fatalf("fdbased.New: %v", err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{icmp.NewProtocol4, icmp.NewProtocol6},
	})
	if err := s.CreateNIC(1, link); err != nil {
		log.Fatalf("CreateNIC: %v", err)
	}
	ip := net.ParseIP(*addr).To4()
	if ip == nil {
		log.Fatalf("not an IPv4 address: %s", *addr)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.Address(ip), PrefixLen: 24},
	}
	if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		log.Fatalf("AddProtocolAddress: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})

	fmt.Println("READY")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	st := s.Stats().ICMP.V4.PacketsSent.EchoReply.Value()
	fmt.Printf("{\"echoReplies\":%d}\n", st)
}
