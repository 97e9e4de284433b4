// tun-tap: the kernel side of the differential test's TUN mode. For each TUN device named on
// the command line it holds an AF_PACKET socket bound to that device: a packet sent on it is
// transmitted by the device, i.e. read byte for byte by the stack on the TUN fd (no IP layer,
// no checksum, TTL or option rewriting; the tun driver only queues the skb), and what the stack
// writes to its fd arrives on the socket as an incoming packet before the kernel's IP layer
// sees it. Packets the kernel itself transmits on the device are PACKET_OUTGOING and are never
// counted as a stack's output (the harness also checks each stack read only what was sent).
//
// Framing on stdin/stdout (big-endian uint32):
//
//	request:  sequence number, count, count × (length, bytes)
//	response: for each device in order: count, count × (length, bytes)
//
// The input's packets go to every device, then a sentinel Echo Request (198.18.0.1 →
// 198.18.0.2, identifier 0xd1ff, the sequence number in its payload); a stack answers packets
// in order, so everything it wrote before the sentinel's Echo Reply is its answer to the input.
// Standard library only: built in seconds, run in the test's private network namespace.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"icmpfwd.test/framed"
	"io"
	"log"
	"net"
	"os"
	"syscall"
	"time"
)

const (
	ethPAll        = 0x0003
	ethPIP         = 0x0800
	ethPIPv6       = 0x86dd
	packetOutgoing = 4
	sentinelIdent  = 0xd1ff
	answerTimeout  = 5 * time.Second
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

type device struct {
	name    string
	fd      int
	ifindex int
	buf     []byte
}

func openDevice(name string) *device {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	// Protocol 0 until bound: no packet of another device is queued in between.
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		log.Fatalf("socket: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: ifi.Index}); err != nil {
		log.Fatalf("bind %s: %v", name, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 8<<20); err != nil {
		log.Fatalf("SO_RCVBUF: %v", err)
	}
	tv := syscall.NsecToTimeval(int64(100 * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		log.Fatalf("SO_RCVTIMEO: %v", err)
	}
	return &device{name: name, fd: fd, ifindex: ifi.Index, buf: make([]byte, 1<<16)}
}

func (d *device) send(p []byte) {
	proto := uint16(ethPIP)
	if len(p) > 0 && p[0]>>4 == 6 {
		proto = ethPIPv6
	}
	if err := syscall.Sendto(d.fd, p, 0, &syscall.SockaddrLinklayer{Protocol: htons(proto), Ifindex: d.ifindex}); err != nil {
		log.Fatalf("send %d bytes on %s: %v", len(p), d.name, err)
	}
}

// collect returns what the stack wrote until the Echo Reply to the sentinel `seq`.
func (d *device) collect(seq uint32) [][]byte {
	var out [][]byte
	deadline := time.Now().Add(answerTimeout)
	for {
		n, from, err := syscall.Recvfrom(d.fd, d.buf, 0)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			if time.Now().After(deadline) {
				log.Fatalf("%s: no answer to sentinel %d within %v (%d packets before)", d.name, seq, answerTimeout, len(out))
			}
			continue
		}
		if err != nil {
			log.Fatalf("recv on %s: %v", d.name, err)
		}
		if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == packetOutgoing {
			continue // transmitted on the device (our injections, or the kernel's): not an answer
		}
		p := append([]byte(nil), d.buf[:n]...)
		if isSentinelReply(p, seq) {
			return out
		}
		out = append(out, p)
	}
}

func sentinelPayload(seq uint32) []byte {
	b := []byte("DIFFEND\x00\x00\x00\x00")
	binary.BigEndian.PutUint32(b[7:], seq)
	return b
}

func sum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func sentinel(seq uint32) []byte {
	payload := sentinelPayload(seq)
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = 1
	copy(p[12:], []byte{198, 18, 0, 1})
	copy(p[16:], []byte{198, 18, 0, 2})
	binary.BigEndian.PutUint16(p[10:], sum(p[:20]))
	m := p[20:]
	m[0] = 8
	binary.BigEndian.PutUint16(m[4:], sentinelIdent)
	binary.BigEndian.PutUint16(m[6:], uint16(seq))
	copy(m[8:], payload)
	binary.BigEndian.PutUint16(m[2:], sum(m))
	return p
}

func isSentinelReply(p []byte, seq uint32) bool {
	if len(p) < 28 || p[0]>>4 != 4 || p[9] != 1 {
		return false
	}
	m := p[int(p[0]&0x0f)*4:]
	return len(m) >= 8 && m[0] == 0 && binary.BigEndian.Uint16(m[4:]) == sentinelIdent &&
		bytes.Equal(m[8:], sentinelPayload(seq))
}

func main() {
	if len(os.Args) < 2 {
		log.Fatalf("usage: tun-tap DEVICE...")
	}
	var devices []*device
	for _, name := range os.Args[1:] {
		devices = append(devices, openDevice(name))
	}
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	for {
		seq, err := framed.ReadU32(in)
		if err == io.EOF {
			return
		}
		if err != nil {
			log.Fatalf("read: %v", err)
		}
		count, err := framed.ReadU32(in)
		if err != nil {
			log.Fatalf("read: %v", err)
		}
		packets := make([][]byte, count)
		for i := range packets {
			n, err := framed.ReadU32(in)
			if err != nil {
				log.Fatalf("read: %v", err)
			}
			packets[i] = make([]byte, n)
			if _, err := io.ReadFull(in, packets[i]); err != nil {
				log.Fatalf("read: %v", err)
			}
		}
		for _, d := range devices {
			for _, p := range packets {
				d.send(p)
			}
			d.send(sentinel(seq))
		}
		for _, d := range devices {
			answers := d.collect(seq)
			framed.WriteU32(out, uint32(len(answers)))
			for _, a := range answers {
				framed.WriteU32(out, uint32(len(a)))
				if _, err := out.Write(a); err != nil {
					log.Fatalf("write: %v", err)
				}
			}
		}
		if err := out.Flush(); err != nil {
			log.Fatalf("flush: %v", err)
		}
	}
}
