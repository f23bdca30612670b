// Command imagegen builds, with no network, every image critest v1.37.0 and
// crib's integration tests pull, and pushes them to the local test registry
// (conformance/registry.sh, 127.0.0.1:5000).
//
// The images are described in images.toml (embedded; -spec overrides): shared
// layers made from files of this host — Debian's dynamic busybox with its
// libc and applets as hard links, procps' pgrep, util-linux's ipcs — and the
// static stand-in programs of ./testbin (pause, nginx, httpd, nnp). Layers
// are reproducible (sorted entries, owner root, fixed times, gzip without
// name or time), so the same host gives the same digests on every run and a
// layer shared by many images is stored once.
//
// An image named registry.k8s.io/e2e-test-images/busybox:1.29-2 is pushed to
// 127.0.0.1:5000/registry.k8s.io/e2e-test-images/busybox:1.29-2: the upstream
// host is the first path component, which is what registries.conf maps back
// (prefix "registry.k8s.io" → location "127.0.0.1:5000/registry.k8s.io").
//
// imagegen is test tooling: crib must never need it at run time.
package main

import (
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
)

//go:embed images.toml
var embeddedSpec []byte

type options struct {
	specPath string
	registry string
	testbin  string
	force    bool
	markdown bool
	list     bool
	verbose  bool
}

func main() {
	var o options
	flag.StringVar(&o.specPath, "spec", "", "image spec file (default: the embedded images.toml)")
	flag.StringVar(&o.registry, "registry", "127.0.0.1:5000", "host:port of the local registry (plain HTTP)")
	flag.StringVar(&o.testbin, "testbin", "", "path of the built ./testbin program (${TESTBIN} in the spec)")
	flag.BoolVar(&o.force, "force", false, "push every image even if the registry already has the same manifest")
	flag.BoolVar(&o.markdown, "markdown", false, "print IMAGES.md for the spec and exit")
	flag.BoolVar(&o.list, "list", false, "print every reference and its local repository, then exit")
	flag.BoolVar(&o.verbose, "v", false, "log every reference pushed or found up to date")
	flag.Parse()
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(o, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "imagegen:", err)
		os.Exit(1)
	}
}

func run(o options, out io.Writer, log *slog.Logger) error {
	spec, err := loadSpec(o.specPath)
	if err != nil {
		return err
	}
	switch {
	case o.markdown:
		return writeMarkdown(out, spec, o.registry)
	case o.list:
		return listRefs(out, spec, o.registry)
	}
	if o.testbin == "" {
		return errors.New("-testbin is required to build images")
	}
	images, err := buildAll(spec, map[string]string{"TESTBIN": o.testbin})
	if err != nil {
		return err
	}
	reg, err := newRegistryClient(o.registry)
	if err != nil {
		return err
	}
	s, err := pushAll(reg, images, o.force, log)
	fmt.Fprintf(out, "imagegen: %d images, %d references: %d pushed, %d already up to date, %d failed (registry %s)\n",
		len(images), s.refs, s.pushed, s.upToDate, s.failed, o.registry)
	return err
}

type pushStats struct{ refs, pushed, upToDate, failed int }

// pushAll pushes every reference whose manifest in the registry differs from
// the one built here (all of them with force). "Present" thus means present
// with these exact bytes: a changed spec or host file is pushed again.
func pushAll(reg *registryClient, images []*builtImage, force bool, log *slog.Logger) (pushStats, error) {
	var s pushStats
	var errs []error
	for _, img := range images {
		for _, ref := range img.refs {
			s.refs++
			if !force {
				have, err := reg.manifestDigest(ref.Repo, ref.Tag)
				if err != nil {
					s.failed++
					errs = append(errs, err)
					continue
				}
				if have == img.digest {
					s.upToDate++
					log.Debug("up to date", "ref", ref.Original, "digest", img.digest)
					continue
				}
			}
			if err := reg.push(img, ref); err != nil {
				s.failed++
				errs = append(errs, fmt.Errorf("push %s: %w", ref.Original, err))
				continue
			}
			s.pushed++
			log.Info("pushed", "ref", ref.Original, "to", reg.base.Host+"/"+ref.Repo+":"+ref.Tag, "digest", img.digest)
		}
	}
	return s, errors.Join(errs...)
}

func listRefs(out io.Writer, spec *Spec, registry string) error {
	for _, img := range spec.Images {
		for _, r := range img.Refs {
			ref, err := parseRef(r)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(out, "%s\t%s/%s:%s\n", r, registry, ref.Repo, ref.Tag); err != nil {
				return err
			}
		}
	}
	return nil
}
