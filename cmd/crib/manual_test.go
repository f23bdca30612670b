package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/golden"
)

// testEnv fixes the user so that defaults in the output do not depend on
// who runs the tests.
var testEnv = config.Env{UID: 1000, Home: "/home/ann", XDGRuntimeDir: "/run/user/1000"}

func TestHelpGolden(t *testing.T) {
	for name := range pages {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			writeHelp(&b, name, testEnv)
			file := "help-" + strings.ReplaceAll(name, " ", "-") + ".txt"
			if name == "" {
				file = "help.txt"
			}
			golden.Check(t, filepath.Join("testdata", file), b.Bytes())
		})
	}
}

// Every command has a manual page and every page a command, and each page
// has the sections a reader looks for.
func TestHelpCoversEveryCommand(t *testing.T) {
	for _, cmd := range commandList() {
		if _, ok := pages[cmd.name]; !ok {
			t.Errorf("command %q has no manual page", cmd.name)
		}
	}
	for _, name := range topLevel {
		if _, ok := pages[name]; !ok {
			t.Errorf("top-level command %q has no manual page", name)
		}
	}
	for _, name := range []string{"serve", "crictl-config", "install-service", "image pull"} {
		var b bytes.Buffer
		writeHelp(&b, name, testEnv)
		for _, s := range []string{"NAME\n", "SYNOPSIS\n", "DESCRIPTION\n", "OPTIONS\n", "EXAMPLES\n"} {
			if !strings.Contains(b.String(), s) {
				t.Errorf("crib %s --help lacks %s", name, strings.TrimSpace(s))
			}
		}
	}
	// Every configuration key is documented as its option.
	var b bytes.Buffer
	writeHelp(&b, "serve", testEnv)
	def := config.Default(testEnv)
	for _, k := range config.Keys(&def) {
		if !strings.Contains(b.String(), "--"+k.Flag+" ") || !strings.Contains(b.String(), "["+k.Name+"]") {
			t.Errorf("crib serve --help does not list --%s [%s]", k.Flag, k.Name)
		}
	}
}

func TestCompletionGolden(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeCompletion(&b, shell, testEnv); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "completion."+shell), b.Bytes())
			for _, want := range []string{"serve", "install-service", "metrics-address", "log-level"} {
				if !strings.Contains(b.String(), want) {
					t.Errorf("%s completion lacks %q", shell, want)
				}
			}
		})
	}
	if err := writeCompletion(new(bytes.Buffer), "tcsh", testEnv); err == nil {
		t.Error("unknown shell accepted")
	}
}

// TestBashCompletionWorks loads the script into bash and asks it to
// complete, as bash would on TAB.
func TestBashCompletionWorks(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	var script bytes.Buffer
	writeCompletion(&script, "bash", testEnv)
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"crib", "ser"}, "serve"},
		{[]string{"crib", "serve", "--metrics-a"}, "--metrics-address"},
		{[]string{"crib", "image", "pu"}, "pull"},
		{[]string{"crib", "image", "ls", "--roo"}, "--root"},
		{[]string{"crib", "doctor", "--js"}, "--json"},
		{[]string{"crib", "completion", "fi"}, "fish"},
	} {
		prog := script.String() + `
COMP_WORDS=(` + shellWords(tc.words) + `)
COMP_CWORD=` + itoa(len(tc.words)-1) + `
_crib
printf '%s\n' "${COMPREPLY[@]}"
`
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		if strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("completing %v gave %q, want %q", tc.words, out, tc.want)
		}
	}
}

func shellWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + w + "'"
	}
	return strings.Join(q, " ")
}

func itoa(n int) string { return string(rune('0' + n)) }
