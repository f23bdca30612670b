package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/crib-dev/crib/internal/golden"
)

func sampleFigures() []figure {
	return []figure{
		{Name: "RunPodSandbox", Unit: "ms", Crib: samples{40, 50, 60}, Containerd: samples{100, 120, 140}, Goal: 0.5},
		{Name: "create+start", Unit: "ms", Crib: samples{90, 95}, Containerd: samples{80, 90}, Floor: samples{40, 40}, Goal: 0.6, FloorGoal: 1.3},
		{Name: "helper PSS per pod, 10 pods", Unit: "MiB", Crib: samples{0.4}, Containerd: samples{4.8}, Limit: 1, Note: "crib: conmon×10"},
		{Name: "churn, 4 clients", Unit: "pods/s", Crib: samples{5, 6}, Containerd: samples{3, 3}, HigherIsBetter: true},
		{Name: "ListContainers (100)", Unit: "ms", Crib: samples{1.4}, Containerd: samples{1.1}},
	}
}

func TestMet(t *testing.T) {
	cases := []struct {
		name    string
		f       figure
		met, ok bool
	}{
		{"under the ratio", sampleFigures()[0], true, true},
		{"over the ratio and the floor", sampleFigures()[1], false, true},
		{"under the limit", sampleFigures()[2], true, true},
		{"no goal", sampleFigures()[4], true, false},
		{"higher is better, reached", figure{Crib: samples{6}, Containerd: samples{3}, Goal: 1.5, HigherIsBetter: true}, true, true},
		{"higher is better, missed", figure{Crib: samples{4}, Containerd: samples{3}, Goal: 1.5, HigherIsBetter: true}, false, true},
		{"no containerd figure", figure{Crib: samples{1}, Goal: 0.5}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			met, ok := c.f.met()
			if met != c.met || ok != c.ok {
				t.Errorf("met() = %v, %v; want %v, %v", met, ok, c.met, c.ok)
			}
		})
	}
}

func TestGolden(t *testing.T) {
	cases := []struct {
		file  string
		write func(*bytes.Buffer)
	}{
		{"table.md", func(b *bytes.Buffer) { writeTable(b, sampleFigures()) }},
		{"chart.svg", func(b *bytes.Buffer) { writeChart(b, "test chart", sampleFigures()) }},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			var got bytes.Buffer
			c.write(&got)
			golden.Check(t, filepath.Join("testdata", c.file), got.Bytes())
		})
	}
}
