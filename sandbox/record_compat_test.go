package sandbox

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/golden"
)

// TestEarlierRecordsLoad reads pod records written by crib a728aee
// (testdata/records, produced by that commit's encoder): a crib upgraded
// in place must find the pods its predecessor left.
func TestEarlierRecordsLoad(t *testing.T) {
	created := time.Date(2026, 11, 30, 9, 15, 1, 987654321, time.UTC)
	run := "/run/user/1000/crib/sandboxes/9a8b/"
	golden.CheckDecoded(t, "testdata/records", map[string]*Sandbox{
		"full.json": {
			ID: "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b",
			Config: &runtimeapi.PodSandboxConfig{
				Metadata:     &runtimeapi.PodSandboxMetadata{Name: "pod", Uid: "uid-1", Namespace: "ns", Attempt: 1},
				Hostname:     "pod-host",
				LogDirectory: "/home/u/.local/share/crib/pods/ns_pod_uid",
				DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}},
				PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"}},
				Labels:       map[string]string{"app": "web"},
				Annotations:  map[string]string{"note": "x"},
				Linux: &runtimeapi.LinuxPodSandboxConfig{
					CgroupParent: "kubepods-burstable",
					Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
					SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
						NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
						RunAsUser:        &runtimeapi.Int64Value{Value: 0},
					},
				},
			},
			RuntimeHandler: "runc", CreatedAt: created, State: StateReady,
			NetNSPath: run + "ns/net", IPCNSPath: run + "ns/ipc", UTSNSPath: run + "ns/uts",
			PIDNSPath: "/proc/5151/ns/pid", ReaperPID: 5151, ReaperStartTime: 987654,
			IP: "10.88.0.7", AdditionalIPs: []string{"fd00::7"}, NetworkName: "crib",
			HostsPath: run + "hosts", ResolvPath: run + "resolv.conf", HostnamePath: run + "hostname", ShmPath: run + "shm",
			CgroupParent: "/crib/pods/pod9a8b",
			ProcessLabel: "system_u:system_r:container_t:s0:c1,c2", MountLabel: "system_u:object_r:container_file_t:s0:c1,c2",
		},
		"minimal.json": {ID: "0a1b", CreatedAt: created, State: StateNotReady},
	}, decodeRecord)
}
