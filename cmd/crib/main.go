// Command crib is a Kubernetes CRI runtime that runs without root.
//
// This file only parses the command line and wires packages together; the
// logic lives in server, server/doctor and the packages they call.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/server"
	"github.com/crib-dev/crib/server/doctor"
	"github.com/crib-dev/crib/storage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `crib - a Kubernetes CRI runtime that runs without root

Usage:
  crib serve   [flags]          serve CRI v1 on a unix socket (rootless unless run as root)
  crib doctor  [--json] [flags] check this host's prerequisites and print fixes
  crib config  [flags]          print the effective configuration as TOML
  crib unshare [flags] [-- CMD] run CMD (default: $SHELL) inside a running crib's namespaces
  crib image ls|pull|import     list, pull or import images in crib's store ('crib image' for help)
  crib version                  print crib's version

Every configuration key is also a flag; 'crib serve --help' lists them.
The configuration file is ~/.config/crib/crib.toml (/etc/crib/crib.toml as
root); --config names another one.
`

type command struct {
	name string
	run  func(ctx context.Context, cfg config.Config, fs *flag.FlagSet) error
	// extra registers flags that are not configuration keys.
	extra func(fs *flag.FlagSet)
}

func main() {
	// The storage library re-executes crib to unpack layers in a chroot.
	if storage.ReexecInit() {
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[2:]))
}

var jsonOut bool

func commands() map[string]command {
	cmds := map[string]command{
		"serve":   {name: "serve", run: runServe},
		"doctor":  {name: "doctor", run: runDoctor, extra: func(fs *flag.FlagSet) { fs.BoolVar(&jsonOut, "json", false, "print the report as JSON") }},
		"config":  {name: "config", run: runConfig},
		"unshare": {name: "unshare", run: runUnshare},
	}
	for name, cmd := range imageCommands() {
		cmds[name] = cmd
	}
	return cmds
}

func run(name string, args []string) int {
	switch name {
	case "version", "--version", "-v":
		fmt.Printf("crib version %s\nCRI API v1\n", version)
		return 0
	case "help", "--help", "-h":
		fmt.Print(usage)
		return 0
	case "image":
		sub, rest, err := imageSubcommand(args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%v\n\n%s", err, imageUsage)
			return 2
		}
		name, args = sub, rest
	}
	cmd, ok := commands()[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "crib: unknown command %q\n\n%s", name, usage)
		return 2
	}
	env := config.CurrentEnv()
	fs := flag.NewFlagSet("crib "+name, flag.ContinueOnError)
	configPath := fs.String("config", "", "configuration file (default "+env.ConfigPath()+")")
	overrides := config.RegisterFlags(fs, config.Default(env))
	if cmd.extra != nil {
		cmd.extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := loadConfig(env, *configPath, overrides)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crib:", err)
		return 2
	}
	if err := cmd.run(context.Background(), cfg, fs); err != nil {
		var exit *server.ExitCodeError
		if errors.As(err, &exit) {
			return exit.Code
		}
		var prereq *server.PrereqError
		if errors.As(err, &prereq) {
			fmt.Fprintln(os.Stderr, "crib: cannot start: a hard requirement is missing.")
			prereq.Report.WriteText(os.Stderr)
			return 1
		}
		fmt.Fprintln(os.Stderr, "crib:", err)
		return 1
	}
	return 0
}

func loadConfig(env config.Env, path string, o *config.Overrides) (config.Config, error) {
	optional := path == ""
	if optional {
		path = env.ConfigPath()
	}
	cfg, err := config.LoadFile(config.Default(env), path, optional)
	if err != nil {
		return cfg, err
	}
	return o.Apply(cfg)
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel)))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runServe(ctx context.Context, cfg config.Config, _ *flag.FlagSet) error {
	log := newLogger(cfg, os.Stderr)
	slog.SetDefault(log)
	return server.Serve(ctx, server.Options{Config: cfg, Version: version, Logger: log, Args: os.Args[1:]})
}

func runDoctor(_ context.Context, cfg config.Config, _ *flag.FlagSet) error {
	report := doctor.Run(doctor.CurrentHost(cfg), cfg)
	if jsonOut {
		if err := report.WriteJSON(os.Stdout); err != nil {
			return err
		}
	} else {
		report.WriteText(os.Stdout)
	}
	if len(report.HardFailures()) > 0 {
		return &server.ExitCodeError{Code: 1}
	}
	return nil
}

func runConfig(_ context.Context, cfg config.Config, _ *flag.FlagSet) error {
	fmt.Print(config.Render(cfg))
	return nil
}

func runUnshare(_ context.Context, cfg config.Config, fs *flag.FlagSet) error {
	return server.Unshare(cfg, fs.Args())
}
