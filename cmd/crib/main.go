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
	"log/slog"
	"os"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/logsetup"
	"github.com/crib-dev/crib/server"
	"github.com/crib-dev/crib/server/doctor"
	"github.com/crib-dev/crib/server/rootless"
	"github.com/crib-dev/crib/storage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

type command struct {
	name string
	run  func(ctx context.Context, cfg config.Config, fs *flag.FlagSet) error
	// extra registers flags that are not configuration keys.
	extra func(fs *flag.FlagSet)
}

func main() {
	// crib executed again to enter the node's PID namespace (server/rootless/node.go).
	if code, ok := rootless.NodeStage(); ok {
		os.Exit(code)
	}
	// The storage library re-executes crib to unpack layers in a chroot.
	if storage.ReexecInit() {
		return
	}
	if len(os.Args) < 2 {
		writeShortUsage(os.Stderr)
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[2:]))
}

// commandList is every command that parses flags, in the order the manual
// lists them; help and completion are generated from it.
func commandList() []command {
	cmds := []command{
		{name: "serve", run: runServe},
		{name: "doctor", run: runDoctor, extra: func(fs *flag.FlagSet) { fs.Bool("json", false, "print the report as JSON") }},
		{name: "config", run: runConfig},
		{name: "unshare", run: runUnshare},
	}
	cmds = append(cmds, imageCommands()...)
	return append(cmds,
		command{name: "crictl-config", run: runCrictlConfig, extra: func(fs *flag.FlagSet) {
			fs.Bool("write", false, "write the file instead of printing it")
			fs.String("file", "", "where --write writes (default /etc/crictl.yaml as root, else ~/.config/crib/crictl.yaml)")
		}},
		command{name: "kubelet-config", run: runKubeletConfig, extra: func(fs *flag.FlagSet) {
			fs.Bool("standalone", false, "a kubelet with no API server: anonymous access on crib's loopback")
			fs.String("client-ca-file", "", "CA whose client certificates (the API server's) the kubelet's API accepts")
			fs.Bool("write", false, "write the file and make the directories it names, instead of printing it")
			fs.String("file", "", "where --write writes (default kubelet.yaml beside crib's config file)")
		}},
		command{name: "install-service", run: runInstallService, extra: func(fs *flag.FlagSet) {
			fs.String("dir", "", "where the units go (default ~/.config/systemd/user, or /etc/systemd/system as root)")
			fs.Bool("print", false, "print the units instead of writing them")
		}},
		command{name: "completion", run: runCompletion},
	)
}

func commands() map[string]command {
	m := map[string]command{}
	for _, c := range commandList() {
		m[c.name] = c
	}
	return m
}

func run(name string, args []string) int {
	switch name {
	case "version", "--version", "-v":
		fmt.Printf("crib version %s\nCRI API v1\n", version)
		return 0
	case "help", "--help", "-h":
		return runHelp(args)
	case "image":
		sub, rest, err := imageSubcommand(args)
		if err != nil {
			if len(args) == 1 && isHelpFlag(args[0]) {
				writeHelp(os.Stdout, "image", config.CurrentEnv())
				return 0
			}
			fmt.Fprintf(os.Stderr, "%v\nRun 'crib image --help' for the subcommands.\n", err)
			return 2
		}
		name, args = sub, rest
	}
	cmd, ok := commands()[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "crib: unknown command %q\n", name)
		writeShortUsage(os.Stderr)
		return 2
	}
	env := config.CurrentEnv()
	fs, configPath, overrides := newFlagSet(cmd, env)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeHelp(os.Stdout, name, env)
			return 0
		}
		fmt.Fprintf(os.Stderr, "Run 'crib %s --help' for the options.\n", name)
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

// newFlagSet builds a command's flags: --config, one flag per
// configuration key, and the command's own.
func newFlagSet(cmd command, env config.Env) (*flag.FlagSet, *string, *config.Overrides) {
	fs := flag.NewFlagSet("crib "+cmd.name, flag.ContinueOnError)
	fs.Usage = func() {} // --help prints the manual page (run); errors name --help
	configPath := fs.String("config", "", "configuration file (default "+env.ConfigPath()+")")
	overrides := config.RegisterFlags(fs, config.Default(env))
	if cmd.extra != nil {
		cmd.extra(fs)
	}
	return fs, configPath, overrides
}

func isHelpFlag(s string) bool { return s == "-h" || s == "--help" || s == "-help" }

func flagBool(fs *flag.FlagSet, name string) bool {
	return fs.Lookup(name).Value.(flag.Getter).Get().(bool)
}

func flagString(fs *flag.FlagSet, name string) string {
	return fs.Lookup(name).Value.String()
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

func runServe(ctx context.Context, cfg config.Config, _ *flag.FlagSet) error {
	log := logsetup.New(cfg, os.Stderr, logsetup.StderrIsJournal())
	slog.SetDefault(log)
	return server.Serve(ctx, server.Options{Config: cfg, Version: version, Logger: log, Args: os.Args[1:]})
}

func runDoctor(_ context.Context, cfg config.Config, fs *flag.FlagSet) error {
	report := doctor.Run(doctor.CurrentHost(cfg), cfg)
	if flagBool(fs, "json") {
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
	fmt.Print(server.DescribeImageConfig(cfg.RunRoot))
	return nil
}

func runUnshare(_ context.Context, cfg config.Config, fs *flag.FlagSet) error {
	return rootless.Unshare(cfg, fs.Args())
}
