// gvisor-peer: gVisor's netstack (Debian's golang-gvisor-gvisor-dev, GOPATH mode) fed exact
// bytes for the differential test (test/differential). No device, no socket: the link is a
// channel endpoint; the harness talks to it over stdin/stdout.
//
// Framing (all integers big-endian uint32):
//
//	request:  count, then count × (length, bytes) — the packets of one input
//	response: count, then count × (length, bytes) — every packet the stack wrote
//
// Each input gets a fresh stack, shaped as icmpfwd's test/helpers/stack.ts testStack: NIC 1
// with 198.18.0.2/24, fd00:1::2/64 and fe80::2/64 and on-link routes to those subnets, ICMP
// transports for both families. A fresh stack per input means no reassembly state, rate-limiter
// tokens or clock carry over from one input to the next: the comparison cannot depend on time.
package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"log"
	"net"
	"os"

	"gvisor.dev/gvisor/pkg/bufferv2"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/faketime"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
)

const nicID = 1

// newStack builds the stack for one input and returns it with its link.
func newStack() (*stack.Stack, *channel.Endpoint) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{icmp.NewProtocol4, icmp.NewProtocol6},
		// A manual clock that never advances: no timer (reassembly timeout) fires.
		Clock: faketime.NewManualClock(),
	})
	link := channel.New(1024, 1500, "")
	if err := s.CreateNIC(nicID, link); err != nil {
		log.Fatalf("CreateNIC: %v", err)
	}
	var routes []tcpip.Route
	for _, a := range []struct {
		addr  string
		plen  int
		proto tcpip.NetworkProtocolNumber
	}{
		{"198.18.0.2", 24, ipv4.ProtocolNumber},
		{"fd00:1::2", 64, ipv6.ProtocolNumber},
		{"fe80::2", 64, ipv6.ProtocolNumber},
	} {
		ip := net.ParseIP(a.addr)
		if a.proto == ipv4.ProtocolNumber {
			ip = ip.To4()
		}
		awp := tcpip.AddressWithPrefix{Address: tcpip.Address(ip), PrefixLen: a.plen}
		pa := tcpip.ProtocolAddress{Protocol: a.proto, AddressWithPrefix: awp}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			log.Fatalf("AddProtocolAddress(%s): %v", a.addr, err)
		}
		routes = append(routes, tcpip.Route{Destination: awp.Subnet(), NIC: nicID})
	}
	s.SetRouteTable(routes)
	link.Drain() // anything written while the NIC came up is not an answer to the input
	return s, link
}

func readU32(r io.Reader) (uint32, error) {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

func writeU32(w io.Writer, v uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	if _, err := w.Write(b[:]); err != nil {
		log.Fatalf("write: %v", err)
	}
}

func main() {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	for {
		count, err := readU32(in)
		if err == io.EOF {
			return
		}
		if err != nil {
			log.Fatalf("read: %v", err)
		}
		s, link := newStack()
		for i := uint32(0); i < count; i++ {
			n, err := readU32(in)
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
		writeU32(out, uint32(len(replies)))
		for _, r := range replies {
			writeU32(out, uint32(len(r)))
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
