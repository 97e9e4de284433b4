package relay

import "encoding/binary"

// message is what one received ICMP message says about a probe.
type message struct {
	kind      Kind
	errorType ErrorType
	// ident and seq of the probe it answers (an error: of the Echo Request it quotes).
	ident, seq uint16
}

const (
	v4EchoReply   = 0
	v4DstUnreach  = 3
	v4EchoRequest = 8
	v4TimeExceed  = 11
	v6DstUnreach  = 1
	v6TimeExceed  = 3
	v6ParamProb   = 4
	v6EchoRequest = 128
	v6EchoReply   = 129
	protoICMP     = 1
	protoICMPv6   = 58
)

// marshalEcho builds an Echo Request; the IPv6 checksum is the kernel's (raw ICMPv6 sockets
// always fill it), the IPv4 one is computed here (the kernel rewrites it for datagram sockets).
func marshalEcho(v6 bool, ident, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = v4EchoRequest
	if v6 {
		b[0] = v6EchoRequest
	}
	binary.BigEndian.PutUint16(b[4:], ident)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	if !v6 {
		binary.BigEndian.PutUint16(b[2:], checksum(b))
	}
	return b
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// parse reads an ICMP message (no IP header) received on a socket of this family.
func parse(b []byte, v6 bool) (message, bool) {
	if len(b) < 8 {
		return message{}, false
	}
	typ, code := b[0], b[1]
	echo := func() (message, bool) {
		return message{kind: EchoReply, ident: be16(b[4:]), seq: be16(b[6:])}, true
	}
	if !v6 {
		switch typ {
		case v4EchoReply:
			return echo()
		case v4TimeExceed:
			if code != 0 {
				return message{}, false
			}
			return quoted(b[8:], false, TimeExceeded)
		case v4DstUnreach:
			return quoted(b[8:], false, v4Unreachable(code))
		}
		return message{}, false
	}
	switch typ {
	case v6EchoReply:
		return echo()
	case v6TimeExceed:
		if code != 0 {
			return message{}, false
		}
		return quoted(b[8:], true, TimeExceeded)
	case v6DstUnreach:
		return quoted(b[8:], true, v6Unreachable(code))
	case v6ParamProb:
		if code != 1 { // unrecognized Next Header: the destination does not speak ICMPv6
			return message{}, false
		}
		return quoted(b[8:], true, ProtocolUnreachable)
	}
	return message{}, false
}

func v4Unreachable(code uint8) ErrorType {
	switch code {
	case 0, 6, 11: // net, net unknown, net for TOS
		return NetUnreachable
	case 2:
		return ProtocolUnreachable
	case 3:
		return PortUnreachable
	case 9, 10, 13: // net / host / communication administratively prohibited
		return AdminProhibited
	}
	return HostUnreachable
}

func v6Unreachable(code uint8) ErrorType {
	switch code {
	case 0: // no route to destination
		return NetUnreachable
	case 1, 5, 6: // administratively prohibited, failed ingress/egress policy, reject route
		return AdminProhibited
	case 4:
		return PortUnreachable
	}
	return HostUnreachable
}

// quoted finds the Echo Request an error quotes: its IP header, then at least 8 bytes of it.
func quoted(q []byte, v6 bool, t ErrorType) (message, bool) {
	var inner []byte
	if !v6 {
		if len(q) < 20 || q[0]>>4 != 4 || q[9] != protoICMP {
			return message{}, false
		}
		ihl := int(q[0]&0x0f) * 4
		if ihl < 20 || len(q) < ihl+8 {
			return message{}, false
		}
		inner = q[ihl:]
		if inner[0] != v4EchoRequest {
			return message{}, false
		}
	} else {
		if len(q) < 40 || q[0]>>4 != 6 {
			return message{}, false
		}
		next, off := q[6], 40
		for next != protoICMPv6 {
			if len(q) < off+8 {
				return message{}, false
			}
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				next, off = q[off], off+(int(q[off+1])+1)*8
			case 44: // fragment: only the first fragment carries the Echo header
				if binary.BigEndian.Uint16(q[off+2:])&^7 != 0 {
					return message{}, false
				}
				next, off = q[off], off+8
			default:
				return message{}, false
			}
		}
		if len(q) < off+8 {
			return message{}, false
		}
		inner = q[off:]
		if inner[0] != v6EchoRequest {
			return message{}, false
		}
	}
	return message{kind: Error, errorType: t, ident: be16(inner[4:]), seq: be16(inner[6:])}, true
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
