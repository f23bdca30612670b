package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/golden"
	"github.com/crib-dev/crib/internal/record"
)

func TestCheckSysctls(t *testing.T) {
	cases := []struct {
		name           string
		in             map[string]string
		ownNet, ownIPC bool
		want           map[string]string
		wantErr        bool
	}{
		{"net", map[string]string{"net.ipv4.ip_forward": "1"}, true, true, map[string]string{"net/ipv4/ip_forward": "1"}, false},
		{"slashed with dotted interface", map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "0"}, true, true, map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "0"}, false},
		{"ipc", map[string]string{"kernel.shmmax": "1", "kernel.msgmax": "2", "kernel.sem": "1 2 3 4", "fs.mqueue.msg_max": "5"}, true, true,
			map[string]string{"kernel/shmmax": "1", "kernel/msgmax": "2", "kernel/sem": "1 2 3 4", "fs/mqueue/msg_max": "5"}, false},
		{"net on host network", map[string]string{"net.core.somaxconn": "1"}, false, true, nil, true},
		{"ipc on host ipc", map[string]string{"kernel.shmmax": "1"}, true, false, nil, true},
		{"not namespaced", map[string]string{"kernel.pid_max": "1"}, true, true, nil, true},
		{"climbing", map[string]string{"net/../../kernel/pid_max": "1"}, true, true, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkSysctls(tc.in, tc.ownNet, tc.ownIPC)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("got %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v", got, err)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	host := []byte("nameserver 10.0.2.3\nsearch lan\n")
	cases := []struct {
		name string
		dns  *runtimeapi.DNSConfig
		want string
	}{
		{"none: crib's own", nil, string(host)},
		{"full", &runtimeapi.DNSConfig{Servers: []string{"1.1.1.1", "8.8.8.8"}, Searches: []string{"a.b", "b"}, Options: []string{"ndots:5", "edns0"}},
			"nameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch a.b b\noptions ndots:5 edns0\n"},
		{"searches only keep crib's servers", &runtimeapi.DNSConfig{Searches: []string{"x"}}, "nameserver 10.0.2.3\nsearch x\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(resolvConf(tc.dns, host)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseNetDev(t *testing.T) {
	header := "Inter-|   Receive                                                |  Transmit\n" +
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
	cases := []struct {
		name, lines string
		want        []InterfaceCounters
	}{
		{"loopback left out", "" +
			"    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n" +
			"  eth0:    1234      10    2    4    0     0          0         0     5678      20    3    5    0     0       0          0\n",
			[]InterfaceCounters{{Name: "eth0", RxBytes: 1234, RxPackets: 10, RxErrors: 2, RxDropped: 4, TxBytes: 5678, TxPackets: 20, TxErrors: 3, TxDropped: 5}}},
		{"two interfaces, counters past 2^32", "" +
			"  eth0: 5000000000 4000000 0 1 0 0 0 0 6000000000 5000000 0 2 0 0 0 0\n" +
			"  net1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
			[]InterfaceCounters{
				{Name: "eth0", RxBytes: 5000000000, RxPackets: 4000000, RxDropped: 1, TxBytes: 6000000000, TxPackets: 5000000, TxDropped: 2},
				{Name: "net1", RxBytes: 1, RxPackets: 2, RxErrors: 3, RxDropped: 4, TxBytes: 9, TxPackets: 10, TxErrors: 11, TxDropped: 12}}},
		{"truncated line skipped", "  eth0: 1 2 3\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseNetDev([]byte(header + tc.lines)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	cfg := podConfig("rt")
	cfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"1.2.3.4"}}
	cfg.Labels = map[string]string{"app": "x"}
	sb := &Sandbox{ID: "rt", Config: cfg, RuntimeHandler: "runc", CreatedAt: time.Unix(1700000000, 5).UTC(), State: StateReady,
		NetNSPath: "/run/x/ns/net", IP: "10.88.0.2", AdditionalIPs: []string{"fd00::2"}, CgroupParent: "crib-pod-rt", ReaperPID: 42}
	b, err := record.Marshal(sb, sb.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"config": {
    "metadata": {
      "name": "rt"`) {
		t.Errorf("config is not stored as protojson: %s", b)
	}
	back, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back.Config, cfg) || back.IP != sb.IP || back.AdditionalIPs[0] != "fd00::2" || !back.CreatedAt.Equal(sb.CreatedAt) || back.ReaperPID != 42 || back.CgroupParent != sb.CgroupParent {
		t.Fatalf("round trip: %+v", back)
	}
}

// TestDefaultConfList checks the conflist crib writes into an empty conf
// dir against its golden file, and that a non-empty dir is left alone.
func TestDefaultConfList(t *testing.T) {
	dir := t.TempDir()
	if err := writeDefaultConfList(dir, "/ROOT/cni/networks", true); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, defaultConfListName))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "default.conflist.golden"), got)
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "50-mine.conflist"), []byte(`{"cniVersion":"1.0.0","name":"mine","plugins":[{"type":"bridge"}]}`), 0o644)
	if err := writeDefaultConfList(other, "/x", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(other, defaultConfListName)); !os.IsNotExist(err) {
		t.Error("default conflist written into a configured dir")
	}
}

func TestNetworkReadyNamesMissingPlugin(t *testing.T) {
	opts := testOptions(t)
	opts.CNIPluginDirs = []string{t.TempDir()}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ok, reason := m.NetworkReady()
	if ok || !strings.Contains(reason, `"bridge"`) {
		t.Fatalf("NetworkReady = %v, %q", ok, reason)
	}
	opts.CNIPluginDirs = []string{"/usr/lib/cni"}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("CNI plugins not installed")
	}
	m, _ = New(opts)
	if ok, reason := m.NetworkReady(); !ok {
		t.Fatalf("NetworkReady = false: %s", reason)
	}
}
