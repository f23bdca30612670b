package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// stepsMain prints where crib's CRI calls spent their time, from a crib
// log written at debug level: each call's line carries its total and its
// steps (package internal/steptrace), in microseconds. The table gives,
// per method, the median total and each step's median.
//
//	cribbench steps crib.log [METHOD...]
func stepsMain(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: cribbench steps CRIB_LOG [METHOD...]")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	calls, err := readStepLines(f)
	if err != nil {
		return err
	}
	if len(calls) == 0 {
		return fmt.Errorf("%s has no rpc lines with steps (was crib run with --log-level debug?)", args[0])
	}
	fmt.Print(stepsTable(calls, args[1:]))
	return nil
}

// stepCall is one CRI call's line: its method and its timings by key
// ("total" and each step's name), in microseconds.
type stepCall struct {
	method string
	us     map[string]float64
	order  []string
}

func readStepLines(r io.Reader) ([]stepCall, error) {
	var calls []stepCall
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if c, ok := parseStepLine(sc.Text()); ok {
			calls = append(calls, c)
		}
	}
	return calls, sc.Err()
}

// parseStepLine reads a logfmt line of msg=rpc with total_us. Values with
// spaces are quoted by slog; only the keys read here matter, and none of
// them is quoted.
func parseStepLine(line string) (stepCall, bool) {
	if !strings.Contains(line, " msg=rpc ") || !strings.Contains(line, " total_us=") {
		return stepCall{}, false
	}
	c := stepCall{us: map[string]float64{}}
	for _, field := range strings.Fields(line) {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			continue
		}
		switch {
		case k == "method":
			c.method = path.Base(v)
		case k == "total_us" || strings.HasPrefix(k, "step_") && strings.HasSuffix(k, "_us"):
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			name := strings.TrimSuffix(strings.TrimPrefix(k, "step_"), "_us")
			c.us[name] = n
			if name != "total" {
				c.order = append(c.order, name)
			}
		}
	}
	return c, c.method != ""
}

// stepsTable renders the medians per method (all methods with steps when
// methods is empty), methods in their first-seen order.
func stepsTable(calls []stepCall, methods []string) string {
	byMethod := map[string][]stepCall{}
	var seen []string
	for _, c := range calls {
		if len(c.order) == 0 || len(methods) > 0 && !slices.Contains(methods, c.method) {
			continue
		}
		if _, ok := byMethod[c.method]; !ok {
			seen = append(seen, c.method)
		}
		byMethod[c.method] = append(byMethod[c.method], c)
	}
	var b strings.Builder
	b.WriteString("| call | n | step | median ms |\n|---|--:|---|--:|\n")
	for _, m := range seen {
		cs := byMethod[m]
		fmt.Fprintf(&b, "| %s | %d | **total** | %s |\n", m, len(cs), usAsMs(medianOf(cs, "total")))
		for _, step := range stepOrder(cs) {
			fmt.Fprintf(&b, "| | | %s | %s |\n", strings.ReplaceAll(step, "_", " "), usAsMs(medianOf(cs, step)))
		}
	}
	return b.String()
}

// stepOrder lists every step of the calls, in the order the calls marked
// them.
func stepOrder(cs []stepCall) []string {
	var order []string
	for _, c := range cs {
		for _, s := range c.order {
			if !slices.Contains(order, s) {
				order = append(order, s)
			}
		}
	}
	return order
}

// medianOf is the median of key over the calls; a call that did not mark
// the step counts as 0.
func medianOf(cs []stepCall, key string) float64 {
	v := make(samples, len(cs))
	for i, c := range cs {
		v[i] = c.us[key]
	}
	return v.median()
}

func usAsMs(us float64) string { return strconv.FormatFloat(us/1000, 'f', 2, 64) }
