package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Resolver returns every address of a name (A and AAAA); the default asks the system.
type Resolver func(ctx context.Context, name string) ([]netip.Addr, error)

// SystemResolver is the default Resolver (net.DefaultResolver, both families).
func SystemResolver(ctx context.Context, name string) ([]netip.Addr, error) {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, err
}

// target is one element of a target list: a service (addr), or a DNS name standing for every
// address it resolves to (name and port set).
type target struct {
	addr string
	name string
	port uint16
}

func (t target) dns() bool { return t.name != "" }

// addrOf is the service target of one resolved address.
func (t target) addrOf(ip netip.Addr) string {
	return netip.AddrPortFrom(ip, t.port).String()
}

// ParseTargets checks a target list (comma-separated host:port, [v6addr]:port, unix:/path,
// dns:///name:port); the error names the first bad element.
func ParseTargets(spec string) error {
	_, err := parseTargets(spec)
	return err
}

func parseTargets(spec string) ([]target, error) {
	var out []target
	for _, raw := range strings.Split(spec, ",") {
		t := strings.TrimSpace(raw)
		switch {
		case t == "":
			return nil, fmt.Errorf("bad target list %q: an empty element", spec)
		case strings.HasPrefix(t, "dns:"):
			if !strings.HasPrefix(t, "dns:///") {
				return nil, fmt.Errorf("bad target %q: want dns:///name:port", t)
			}
			host, port, err := hostPort(strings.TrimPrefix(t, "dns:///"))
			if err != nil {
				return nil, err
			}
			out = append(out, target{name: host, port: port})
		case strings.HasPrefix(t, "unix:"):
			if t == "unix:" {
				return nil, fmt.Errorf("bad target %q: unix: needs a path", t)
			}
			out = append(out, target{addr: t})
		default:
			if _, _, err := hostPort(t); err != nil {
				return nil, err
			}
			out = append(out, target{addr: t})
		}
	}
	return out, nil
}

func hostPort(t string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(t)
	if err != nil || host == "" {
		return "", 0, fmt.Errorf("bad target %q: want host:port, [v6addr]:port, unix:/path or dns:///name:port", t)
	}
	if strings.HasPrefix(t, "[") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return "", 0, fmt.Errorf("bad target %q: %q is not an IPv6 address", t, host)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("bad target %q: bad port %q", t, port)
	}
	return host, uint16(p), nil
}
