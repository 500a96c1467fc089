// Command cni is the test bed's CNI plugin: each pod gets a veth pair, a /32
// address on its end and a /32 route to it on the host's end. Nothing else:
// no bridge, no NAT, no iptables, no ip_forward and no default route in the
// pod, so a pod address is reachable from this machine only and nothing is
// ever routed off it. It speaks the CNI protocol (ADD, DEL, CHECK, VERSION)
// and shells out to iproute2's ip.
//
// Network configuration (JSON on stdin, from containerd's conf_dir):
//
//	{"cniVersion": "1.0.0", "name": "testbed", "type": "cni",
//	 "subnet": "169.254.77.0/24", "dataDir": "/path/of/the/test/cni-state"}
//
// Addresses are handed out from subnet in turn; dataDir holds the counter
// (a link-local subnet is the default: an address no packet can leave the
// machine for).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

type netConf struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Subnet     string `json:"subnet"`
	DataDir    string `json:"dataDir"`
}

type cniError struct {
	CNIVersion string `json:"cniVersion"`
	Code       int    `json:"code"`
	Msg        string `json:"msg"`
}

func main() {
	if err := run(os.Getenv("CNI_COMMAND"), os.Stdin, os.Stdout); err != nil {
		// The CNI error format, on stdout, with a non-zero exit.
		_ = json.NewEncoder(os.Stdout).Encode(cniError{CNIVersion: "1.0.0", Code: 999, Msg: err.Error()})
		os.Exit(1)
	}
}

func run(command string, stdin io.Reader, stdout io.Writer) error {
	switch command {
	case "VERSION":
		return json.NewEncoder(stdout).Encode(map[string]any{
			"cniVersion": "1.0.0", "supportedVersions": []string{"0.4.0", "1.0.0"},
		})
	case "ADD", "DEL", "CHECK":
	default:
		return fmt.Errorf("CNI_COMMAND %q: want ADD, DEL, CHECK or VERSION", command)
	}
	raw, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("read the network configuration: %w", err)
	}
	var conf netConf
	if err := json.Unmarshal(raw, &conf); err != nil {
		return fmt.Errorf("network configuration: %w", err)
	}
	if conf.Subnet == "" {
		conf.Subnet = "169.254.77.0/24"
	}
	if conf.DataDir == "" {
		return errors.New("network configuration: dataDir is required")
	}
	id := os.Getenv("CNI_CONTAINERID")
	if id == "" {
		return errors.New("CNI_CONTAINERID is not set")
	}
	hostIf := "vkp" + id[:min(len(id), 11)] // at most 15 bytes, the kernel's limit
	switch command {
	case "DEL":
		// Deleting the host's end removes the pair and the route; a pod
		// already gone is not an error (DEL must be idempotent).
		if err := ip("link", "del", hostIf); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			return err
		}
		return nil
	case "CHECK":
		return ip("link", "show", hostIf)
	}
	return add(conf, hostIf, stdout)
}

func add(conf netConf, hostIf string, stdout io.Writer) error {
	netnsPath, ifName := os.Getenv("CNI_NETNS"), os.Getenv("CNI_IFNAME")
	if netnsPath == "" || ifName == "" {
		return errors.New("CNI_NETNS and CNI_IFNAME must be set")
	}
	// ip takes a namespace by its name under /run/netns, where containerd
	// puts the pod's.
	if d := filepath.Dir(netnsPath); d != "/var/run/netns" && d != "/run/netns" {
		return fmt.Errorf("CNI_NETNS %s is not under /run/netns", netnsPath)
	}
	netns := filepath.Base(netnsPath)
	addr, err := nextAddr(conf)
	if err != nil {
		return err
	}
	steps := [][]string{
		{"link", "add", hostIf, "type", "veth", "peer", "name", ifName, "netns", netns},
		{"-n", netns, "addr", "add", addr.String() + "/32", "dev", ifName},
		{"-n", netns, "link", "set", ifName, "up"},
		{"link", "set", hostIf, "up"},
		{"route", "add", addr.String() + "/32", "dev", hostIf},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			_ = ip("link", "del", hostIf)
			return err
		}
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"cniVersion": conf.CNIVersion,
		"interfaces": []map[string]string{{"name": ifName, "sandbox": netnsPath}},
		"ips":        []map[string]any{{"address": addr.String() + "/32", "interface": 0}},
	})
}

// nextAddr hands out the subnet's addresses in turn (skipping its first),
// under a lock: containerd may set up several pods at once.
func nextAddr(conf netConf) (netip.Addr, error) {
	prefix, err := netip.ParsePrefix(conf.Subnet)
	if err != nil || !prefix.Addr().Is4() || prefix.Bits() > 30 {
		return netip.Addr{}, fmt.Errorf("network configuration: subnet %q: want an IPv4 prefix of /30 or larger", conf.Subnet)
	}
	if err := os.MkdirAll(conf.DataDir, 0o700); err != nil {
		return netip.Addr{}, err
	}
	f, err := os.OpenFile(filepath.Join(conf.DataDir, "next"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return netip.Addr{}, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return netip.Addr{}, err
	}
	b, _ := io.ReadAll(f)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	size := 1<<(32-prefix.Bits()) - 2 // without the network and broadcast addresses
	n = n%size + 1
	if _, err := f.WriteAt([]byte(strconv.Itoa(n)+"\n"), 0); err != nil {
		return netip.Addr{}, err
	}
	a := prefix.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

func ip(args ...string) error {
	bin, err := exec.LookPath("ip")
	if err != nil {
		bin = "/usr/sbin/ip"
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
