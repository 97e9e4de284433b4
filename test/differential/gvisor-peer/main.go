// gvisor-peer: gVisor's netstack (Debian's golang-gvisor-gvisor-dev, GOPATH mode) fed exact
// bytes for the differential test (test/differential). No device, no socket: the link is a
// channel endpoint; the harness talks to it over stdin/stdout.
//
// Framing (all integers big-endian uint32):
//
//	request:  count, then count × (length, bytes) — the packets of one input
//	response: count, then count × (length, bytes) — every packet the stack wrote
//
// Each input gets a fresh stack shaped as icmpfwd's (test/differential/shape.ts passes the same
// list to both): NIC 1 with the -addr addresses in order (the first of a family is its primary
// address) and on-link -route routes in order (first match wins, so the longest come first),
// ICMP transports for both families. A fresh stack per input means no reassembly state,
// rate-limiter tokens or clock carry over from one input to the next: the comparison cannot
// depend on time.
//
// With -tun NAME the link is instead gVisor's fdbased endpoint on a TUN device (IFF_NO_PI), as
// test/bench/gvisor-echo runs it; the harness injects and captures on that device from the
// kernel side (test/differential/tun-tap). stdin then carries only reset commands:
//
//	request:  1 (reset)
//	response: the Rx packet count of the stack being replaced (0 for the first), then the new
//	          stack is attached to the device
package main

import (
	"bufio"
	"flag"
	"fmt"
	"icmpfwd.test/framed"
	"io"
	"log"
	"net"
	"os"
	"strings"

	"gvisor.dev/gvisor/pkg/bufferv2"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
)

const nicID = 1

// prefixes is a repeatable flag of CIDR prefixes, kept in order.
type prefixes []tcpip.AddressWithPrefix

func (p *prefixes) String() string { return fmt.Sprint(*p) }

func (p *prefixes) Set(v string) error {
	ip, n, err := net.ParseCIDR(v)
	if err != nil {
		return err
	}
	plen, _ := n.Mask.Size()
	if v4 := ip.To4(); v4 != nil && !strings.Contains(v, ":") {
		ip = v4
	}
	*p = append(*p, tcpip.AddressWithPrefix{Address: tcpip.Address(ip), PrefixLen: plen})
	return nil
}

func protocolOf(a tcpip.Address) tcpip.NetworkProtocolNumber {
	if len(a) == 4 {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

var addrs, routes prefixes

// newStack builds the stack for one input on `link`.
func newStack(link stack.LinkEndpoint) *stack.Stack {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{icmp.NewProtocol4, icmp.NewProtocol6},
		// A manual clock that never advances: no timer (reassembly timeout) fires.
		Clock: faketime.NewManualClock(),
	})
	if err := s.CreateNIC(nicID, link); err != nil {
		log.Fatalf("CreateNIC: %v", err)
	}
	for _, a := range addrs {
		pa := tcpip.ProtocolAddress{Protocol: protocolOf(a.Address), AddressWithPrefix: a}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			log.Fatalf("AddProtocolAddress(%s): %v", a, err)
		}
	}
	var table []tcpip.Route
	for _, r := range routes {
		table = append(table, tcpip.Route{Destination: r.Subnet(), NIC: nicID})
	}
	s.SetRouteTable(table)
	return s
}

// serveTUN runs the -tun mode: a fresh stack on a fresh fdbased endpoint per reset command.
func serveTUN(name string, mtu uint32) {
	fd, err := tun.Open(name)
	if err != nil {
		log.Fatalf("tun.Open(%s): %v", name, err)
	}
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	var s *stack.Stack
	fmt.Fprintln(out, "READY")
	if err := out.Flush(); err != nil {
		log.Fatalf("flush: %v", err)
	}
	for {
		cmd, err := framed.ReadU32(in)
		if err == io.EOF {
			return
		}
		if err != nil || cmd != 1 {
			log.Fatalf("read: command %d, %v", cmd, err)
		}
		var rx uint64
		if s != nil {
			rx = s.NICInfo()[nicID].Stats.Rx.Packets.Value()
			s.Close()
			// Wait removes the NIC: the endpoint's dispatcher stops reading the fd.
			s.Wait()
		}
		link, err := fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: mtu})
		if err != nil {
			log.Fatalf("fdbased.New: %v", err)
		}
		s = newStack(link)
		framed.WriteU32(out, uint32(rx))
		if err := out.Flush(); err != nil {
			log.Fatalf("flush: %v", err)
		}
	}
}

func main() {
	flag.Var(&addrs, "addr", "an address of NIC 1 with its prefix length (repeatable, in order)")
	flag.Var(&routes, "route", "an on-link route via NIC 1 (repeatable, first match wins)")
	tunName := flag.String("tun", "", "serve on this TUN device (fdbased) instead of stdin/stdout")
	mtu := flag.Uint("mtu", 1500, "the TUN link's MTU")
	flag.Parse()
	if *tunName != "" {
		serveTUN(*tunName, uint32(*mtu))
		return
	}
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	for {
		count, err := framed.ReadU32(in)
		if err == io.EOF {
			return
		}
		if err != nil {
			log.Fatalf("read: %v", err)
		}
		link := channel.New(1024, 1500, "")
		s := newStack(link)
		link.Drain() // anything written while the NIC came up is not an answer to the input
		for i := uint32(0); i < count; i++ {
			n, err := framed.ReadU32(in)
			if err != nil {
				log.Fatalf("read: %v", err)
			}
			p := make([]byte, n)
			if _, err := io.ReadFull(in, p); err != nil {
				log.Fatalf("read: %v", err)
			}
			// The link has no header: the protocol comes from the version nibble, as a TUN's
			// packet information would give it (fdbased does the same for IFF_NO_PI).
			var proto tcpip.NetworkProtocolNumber
			if len(p) > 0 {
				switch header.IPVersion(p) {
				case header.IPv4Version:
					proto = ipv4.ProtocolNumber
				case header.IPv6Version:
					proto = ipv6.ProtocolNumber
				}
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
				Payload: bufferv2.MakeWithData(p),
			})
			// Delivery is synchronous: every answer is queued on the link when this returns.
			link.InjectInbound(proto, pkt)
			pkt.DecRef()
		}
		var replies [][]byte
		for {
			pkt := link.Read()
			if pkt.IsNil() {
				break
			}
			replies = append(replies, pkt.ToView().AsSlice())
			pkt.DecRef()
		}
		framed.WriteU32(out, uint32(len(replies)))
		for _, r := range replies {
			framed.WriteU32(out, uint32(len(r)))
			if _, err := out.Write(r); err != nil {
				log.Fatalf("write: %v", err)
			}
		}
		if err := out.Flush(); err != nil {
			log.Fatalf("flush: %v", err)
		}
		s.Close()
		s.Wait()
	}
}
