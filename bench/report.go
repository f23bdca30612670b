package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// figure is one measured quantity for each subject. Floor is empty where
// runc alone has no counterpart.
type figure struct {
	Name       string  `json:"name"`
	Unit       string  `json:"unit"`
	Crib       samples `json:"crib"`
	Containerd samples `json:"containerd"`
	Floor      samples `json:"floor,omitempty"`
	// Goal, when set, is crib's median over containerd's that must not be
	// exceeded (or, with HigherIsBetter, reached); FloorGoal the same
	// against the floor; Limit an absolute ceiling on crib's median.
	Goal           float64 `json:"goal,omitempty"`
	FloorGoal      float64 `json:"floorGoal,omitempty"`
	Limit          float64 `json:"limit,omitempty"`
	HigherIsBetter bool    `json:"higherIsBetter,omitempty"`
	Note           string  `json:"note,omitempty"`
}

func (f figure) vsContainerd() float64 { return ratio(f.Crib.median(), f.Containerd.median()) }
func (f figure) vsFloor() float64      { return ratio(f.Crib.median(), f.Floor.median()) }

// goalText says what the goal is, or "" when the figure has none.
func (f figure) goalText() string {
	var parts []string
	if f.Goal > 0 {
		op := "≤"
		if f.HigherIsBetter {
			op = "≥"
		}
		parts = append(parts, fmt.Sprintf("%s %.2g× containerd", op, f.Goal))
	}
	if f.FloorGoal > 0 {
		parts = append(parts, fmt.Sprintf("≤ %.2g× floor", f.FloorGoal))
	}
	if f.Limit > 0 {
		parts = append(parts, fmt.Sprintf("≤ %g %s", f.Limit, f.Unit))
	}
	return strings.Join(parts, ", ")
}

// met reports whether every goal of the figure holds; ok is false when the
// figure has no goal.
func (f figure) met() (met, ok bool) {
	met = true
	if f.Goal > 0 {
		ok = true
		r := f.vsContainerd()
		if math.IsNaN(r) || (f.HigherIsBetter && r < f.Goal) || (!f.HigherIsBetter && r > f.Goal) {
			met = false
		}
	}
	if f.FloorGoal > 0 {
		ok = true
		if r := f.vsFloor(); math.IsNaN(r) || r > f.FloorGoal {
			met = false
		}
	}
	if f.Limit > 0 {
		ok = true
		if m := f.Crib.median(); math.IsNaN(m) || m > f.Limit {
			met = false
		}
	}
	return met, ok
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func times(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

// writeTable writes the figures as a Markdown table.
func writeTable(w io.Writer, figs []figure) {
	fmt.Fprintln(w, "| figure | unit | crib median | crib p90 | containerd median | containerd p90 | crib/containerd | floor median | crib/floor | goal | met |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|")
	for _, f := range figs {
		goal, verdict := f.goalText(), ""
		if met, ok := f.met(); ok {
			verdict = "yes"
			if !met {
				verdict = "**no**"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			f.Name, f.Unit, num(f.Crib.median()), num(f.Crib.p90()),
			num(f.Containerd.median()), num(f.Containerd.p90()), times(f.vsContainerd()),
			num(f.Floor.median()), times(f.vsFloor()), goal, verdict)
	}
	for _, f := range figs {
		if f.Note != "" {
			fmt.Fprintf(w, "\n- %s: %s", f.Name, f.Note)
		}
	}
	fmt.Fprintln(w)
}

// writeChart draws one group of horizontal bars per figure: crib,
// containerd and, where measured, the floor, each group scaled to its own
// largest median (units differ between groups) and labelled with the value.
func writeChart(w io.Writer, title string, figs []figure) {
	const (
		width, labelW, barMax = 980, 250, 560
		barH, gap, top        = 14, 12, 56
	)
	type bar struct {
		who   string
		value float64
		color string
	}
	height := top + 20
	for _, f := range figs {
		n := 2
		if len(f.Floor) > 0 {
			n = 3
		}
		height += n*barH + gap
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="10" y="22" font-size="16" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	legend := []bar{{"crib (rootless)", 0, "#2a7ab9"}, {"containerd 1.6 (rootful)", 0, "#e08a2c"}, {"floor: the default handler's runtime alone", 0, "#8a8a8a"}}
	for i, l := range legend {
		x := 10 + i*220
		fmt.Fprintf(w, `<rect x="%d" y="32" width="12" height="12" fill="%s"/><text x="%d" y="42">%s</text>`+"\n", x, l.color, x+16, html.EscapeString(l.who))
	}
	y := top
	for _, f := range figs {
		bars := []bar{{"crib", f.Crib.median(), "#2a7ab9"}, {"containerd", f.Containerd.median(), "#e08a2c"}}
		if len(f.Floor) > 0 {
			bars = append(bars, bar{"floor", f.Floor.median(), "#8a8a8a"})
		}
		biggest := 0.0
		for _, b := range bars {
			if !math.IsNaN(b.value) {
				biggest = math.Max(biggest, b.value)
			}
		}
		groupH := len(bars) * barH
		label := f.Name
		if r := f.vsContainerd(); !math.IsNaN(r) {
			label += " (" + times(r) + ")"
		}
		fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-8, y+groupH/2+4, html.EscapeString(label))
		for i, b := range bars {
			length := 0.0
			if biggest > 0 && !math.IsNaN(b.value) {
				length = b.value / biggest * barMax
			}
			by := y + i*barH
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelW, by+1, length, barH-2, b.color)
			fmt.Fprintf(w, `<text x="%.1f" y="%d" font-size="11">%s %s</text>`+"\n", float64(labelW)+length+4, by+barH-3, num(b.value), html.EscapeString(f.Unit))
		}
		y += groupH + gap
	}
	fmt.Fprintf(w, `<text x="10" y="%d" font-size="11" fill="#555">medians; each group scaled to its own largest bar; ratio in brackets is crib/containerd</text>`+"\n", height-8)
	fmt.Fprintln(w, "</svg>")
}
