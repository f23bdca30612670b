// Command testbin is the one static program inside crib's offline test
// images. It stands in for the few upstream binaries that critest needs and
// that this host has no Debian package for: the pause container, the nginx
// and httpd web servers of the e2e images, and the setuid "nnp" probe of the
// nonewprivs image.
//
// It picks its role from the name it is run as (argv[0]), the way busybox
// picks an applet, so one binary copied to /pause, /usr/sbin/nginx,
// /usr/local/apache2/bin/httpd or /usr/local/bin/nnp does the right thing;
// `testbin ROLE [args]` does the same for tests on the host. It must stay
// dependency-free and static (CGO_ENABLED=0): the images carry no libc for it.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	role, args := roleOf(os.Args)
	var err error
	switch role {
	case "pause":
		err = runPause()
	case "nnp":
		err = runNNP()
	case "nginx":
		err = runNginx(args)
	case "httpd":
		err = runHTTPD(args)
	default:
		fmt.Fprintf(os.Stderr, "testbin: unknown role %q (run as pause, nnp, nginx or httpd)\n", role)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		os.Exit(1)
	}
}

// roleOf maps argv to a role and the arguments that follow it. The nginx
// master re-executes itself under its process title, which starts with
// "nginx: " and may contain slashes, so that prefix is checked first.
func roleOf(argv []string) (string, []string) {
	if len(argv) == 0 {
		return "", nil
	}
	if strings.HasPrefix(argv[0], nginxTitlePrefix) {
		return "nginx", argv[1:]
	}
	name := filepath.Base(argv[0])
	if (name == "testbin" || name == "crib-testbin") && len(argv) > 1 {
		return filepath.Base(argv[1]), argv[2:]
	}
	return name, argv[1:]
}

// runNNP reports the effective uid, as the upstream nonewprivs probe does:
// installed setuid root, it prints 0 unless no_new_privs stopped the setuid
// bit from taking effect.
func runNNP() error {
	_, err := fmt.Printf("Effective uid: %d\n", os.Geteuid())
	return err
}
