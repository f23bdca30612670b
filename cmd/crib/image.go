package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/term"

	"github.com/crib-dev/crib/internal/config"
)

// imageCommands are the `crib image` subcommands, named "image SUB".
func imageCommands() []command {
	return []command{
		{name: "image ls", run: runImageList},
		{name: "image pull", run: runImagePull},
		{name: "image import", run: runImageImport},
	}
}

// imageSubcommand turns `crib image SUB ARGS` into the command name
// "image SUB" and its arguments.
func imageSubcommand(args []string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, errors.New("crib image: name a subcommand")
	}
	sub := args[0]
	if sub == "list" {
		sub = "ls"
	}
	if _, ok := commands()["image "+sub]; !ok {
		return "", nil, fmt.Errorf("crib image: unknown subcommand %q", args[0])
	}
	return "image " + sub, args[1:], nil
}

func imageCommand(cfg config.Config) ImageCommand {
	width, _, err := term.GetSize(int(os.Stdout.Fd()))
	if err != nil {
		width = 0
	}
	// Only errors unless asked: the store's routine log lines (and its
	// warning for a failed pull, which the command prints itself) would
	// bury the command's output.
	level := slog.LevelError
	if cfg.LogLevel == "debug" {
		level = slog.LevelDebug
	}
	return ImageCommand{
		Config:   cfg,
		Args:     os.Args[1:],
		Stdout:   os.Stdout,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Terminal: term.IsTerminal(int(os.Stdout.Fd())),
		Width:    width,
	}
}

func oneArg(fs *flag.FlagSet, what string) (string, error) {
	if fs.NArg() != 1 {
		return "", fmt.Errorf("crib %s: want exactly one %s, got %d arguments", fs.Name()[len("crib "):], what, fs.NArg())
	}
	return fs.Arg(0), nil
}

func runImageList(ctx context.Context, cfg config.Config, fs *flag.FlagSet) error {
	if fs.NArg() != 0 {
		return fmt.Errorf("crib image ls takes no arguments")
	}
	return ImageList(ctx, imageCommand(cfg))
}

func runImagePull(ctx context.Context, cfg config.Config, fs *flag.FlagSet) error {
	ref, err := oneArg(fs, "image reference")
	if err != nil {
		return err
	}
	return ImagePull(ctx, imageCommand(cfg), ref)
}

func runImageImport(ctx context.Context, cfg config.Config, fs *flag.FlagSet) error {
	path, err := oneArg(fs, "archive (a file, or - for standard input)")
	if err != nil {
		return err
	}
	return ImageImport(ctx, imageCommand(cfg), path)
}
