package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/crib-dev/crib/cri"
	"github.com/crib-dev/crib/internal/atomicfile"
	"github.com/crib-dev/crib/storage"
)

// registries.conf and policy.json are read at start and again on SIGHUP
// (`systemctl --user reload crib`; the rootless parent relays the signal
// to the daemon). What is in force is shown by `crictl info`
// (imageConfig) and, through RUNROOT/image-config.json, by `crib config`.

// imageConfigFileName holds the running daemon's image configuration in
// force, written at start and after each reload.
const imageConfigFileName = "image-config.json"

// reloadOnHangup publishes the configuration in force and reloads it on
// each SIGHUP until the returned stop is called, which unpublishes it.
// Registering for SIGHUP also keeps the signal from ending crib.
func reloadOnHangup(ctx context.Context, store *storage.Store, runRoot string, log *slog.Logger) (stop func()) {
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	publish := func(c storage.ImageConfigInForce) {
		if err := publishImageConfig(runRoot, c); err != nil {
			log.Warn("`crib config` will not show the image configuration in force", "err", err)
		}
	}
	publish(store.ImageConfigInForce())
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hups:
				c, err := store.Reload()
				if err != nil {
					log.Error("SIGHUP: the image configuration did not reload; the earlier one stays in force", "err", err)
					continue
				}
				publish(c)
			}
		}
	}()
	return func() {
		signal.Stop(hups)
		cancel()
		<-done
		os.Remove(filepath.Join(runRoot, imageConfigFileName))
	}
}

func publishImageConfig(runRoot string, c storage.ImageConfigInForce) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(runRoot, imageConfigFileName), append(data, '\n'), 0o600)
}

// withImageConfig adds the image configuration in force to what
// `crictl info` shows.
func withImageConfig(h cri.Host, store *storage.Store) cri.Host {
	info := h.Info
	h.Info = func() map[string]string {
		m := map[string]string{}
		if info != nil {
			maps.Copy(m, info())
		}
		m["imageConfig"] = mustJSON(store.ImageConfigInForce())
		return m
	}
	return h
}

// DescribeImageConfig says, as TOML comments for `crib config`, which
// registries.conf and policy.json files the daemon on runRoot has in
// force; "" when no daemon published them.
func DescribeImageConfig(runRoot string) string {
	data, err := os.ReadFile(filepath.Join(runRoot, imageConfigFileName))
	if err != nil {
		return ""
	}
	var c storage.ImageConfigInForce
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Sprintf("# %s is unreadable: %v\n", imageConfigFileName, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# In force in the running crib (read %s; SIGHUP reads them again):\n", c.LoadedAt.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(&b, "#   policy.json: %s\n", c.Policy)
	if len(c.RegistriesConf) == 0 {
		b.WriteString("#   registries.conf: none\n")
	}
	for _, f := range c.RegistriesConf {
		fmt.Fprintf(&b, "#   registries.conf: %s\n", f)
	}
	return b.String()
}
