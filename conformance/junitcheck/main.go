// Command junitcheck reads a ginkgo JUnit report from critest, prints
// "N passed, M failed, K skipped" with the failing spec names, and checks
// the run against the baseline: every spec the baseline lists for the mode
// must have passed. With -write it rewrites the mode's part of the baseline
// from the report instead (the baseline only grows; review the diff).
//
// usage: junitcheck -report FILE -baseline conformance/baseline.txt -mode MODE [-write]
package main

import (
	"bufio"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
)

type testSuites struct {
	Suites []testSuite `xml:"testsuite"`
}

type testSuite struct {
	Cases []testCase `xml:"testcase"`
}

type testCase struct {
	Name    string    `xml:"name,attr"`
	Status  string    `xml:"status,attr"`
	Skipped *struct{} `xml:"skipped"`
	Failure *struct {
		Message string `xml:"message,attr"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
	} `xml:"error"`
}

// Result sorts the specs of one run.
type Result struct {
	Passed, Failed, Skipped []string
}

func parseReport(path string) (Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Result{}, err
	}
	var ts testSuites
	if err := xml.Unmarshal(data, &ts); err != nil {
		return Result{}, fmt.Errorf("%s: %w", path, err)
	}
	var r Result
	for _, s := range ts.Suites {
		for _, c := range s.Cases {
			name := specName(c.Name)
			if name == "" {
				continue
			}
			switch {
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				r.Skipped = append(r.Skipped, name)
			case c.Failure != nil || c.Error != nil || c.Status == "failed" || c.Status == "panicked" || c.Status == "timedout":
				r.Failed = append(r.Failed, name)
			default:
				r.Passed = append(r.Passed, name)
			}
		}
	}
	for _, l := range [][]string{r.Passed, r.Failed, r.Skipped} {
		sort.Strings(l)
	}
	return r, nil
}

// specName drops ginkgo's leading "[It] " and suite-level nodes
// (BeforeSuite/AfterSuite) that are not specs.
func specName(n string) string {
	n = strings.TrimSpace(n)
	if strings.HasPrefix(n, "[BeforeSuite]") || strings.HasPrefix(n, "[AfterSuite]") ||
		strings.HasPrefix(n, "[SynchronizedBeforeSuite]") || strings.HasPrefix(n, "[SynchronizedAfterSuite]") {
		return ""
	}
	return strings.TrimPrefix(n, "[It] ")
}

// baseline.txt holds lines "MODE<TAB>spec name"; '#' starts a comment.
func readBaseline(path, mode string) ([]string, []string, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var mine, others []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		m, spec, ok := strings.Cut(line, "\t")
		if !ok {
			return nil, nil, fmt.Errorf("%s: line %q lacks MODE<TAB>spec", path, line)
		}
		if m == mode {
			mine = append(mine, spec)
		} else {
			others = append(others, line)
		}
	}
	return mine, others, sc.Err()
}

func writeBaseline(path, mode string, others, passed []string) error {
	var b strings.Builder
	b.WriteString("# critest v1.37.0 specs that pass against crib, per mode (host: critest in the\n")
	b.WriteString("# host namespaces; inside: critest through `crib unshare`). make conformance\n")
	b.WriteString("# fails when a listed spec fails. Regenerate a mode with WRITE_BASELINE=1.\n")
	lines := slices.Clone(others)
	for _, p := range passed {
		lines = append(lines, mode+"\t"+p)
	}
	sort.Strings(lines)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func main() {
	report := flag.String("report", "", "JUnit report written by critest")
	baseline := flag.String("baseline", "", "baseline file")
	mode := flag.String("mode", "", "the mode: host, inside, host-websocket or inside-websocket")
	write := flag.Bool("write", false, "rewrite this mode's baseline from the report")
	partial := flag.Bool("partial", false, "the run was focused: only baseline specs that ran are checked")
	flag.Parse()
	if *report == "" || *baseline == "" || *mode == "" {
		flag.Usage()
		os.Exit(2)
	}
	r, err := parseReport(*report)
	if err != nil {
		fmt.Fprintln(os.Stderr, "junitcheck:", err)
		os.Exit(2)
	}
	fmt.Printf("critest (%s): %d passed, %d failed, %d skipped\n", *mode, len(r.Passed), len(r.Failed), len(r.Skipped))
	for _, f := range r.Failed {
		fmt.Printf("  FAILED: %s\n", f)
	}
	want, others, err := readBaseline(*baseline, *mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "junitcheck:", err)
		os.Exit(2)
	}
	if *write && *partial {
		fmt.Fprintln(os.Stderr, "junitcheck: a focused run cannot rewrite the baseline (it would drop the specs that did not run)")
		os.Exit(2)
	}
	if *write {
		if err := writeBaseline(*baseline, *mode, others, r.Passed); err != nil {
			fmt.Fprintln(os.Stderr, "junitcheck:", err)
			os.Exit(2)
		}
		fmt.Printf("baseline for %s rewritten: %d specs\n", *mode, len(r.Passed))
		return
	}
	var regressed []string
	for _, spec := range want {
		if *partial && !slices.Contains(r.Failed, spec) {
			continue
		}
		if !slices.Contains(r.Passed, spec) {
			regressed = append(regressed, spec)
		}
	}
	if len(regressed) > 0 {
		fmt.Printf("REGRESSION (%s): %d baseline specs did not pass:\n", *mode, len(regressed))
		for _, s := range regressed {
			fmt.Printf("  %s\n", s)
		}
		os.Exit(1)
	}
	fmt.Printf("baseline (%s): all %d listed specs passed\n", *mode, len(want))
}
