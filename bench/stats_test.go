package main

import (
	"math"
	"testing"
)

func TestSamples(t *testing.T) {
	cases := []struct {
		name        string
		in          samples
		median, p90 float64
	}{
		{"empty", nil, math.NaN(), math.NaN()},
		{"one", samples{7}, 7, 7},
		{"odd unsorted", samples{5, 1, 3}, 3, 5},
		{"even", samples{4, 1, 3, 2}, 2.5, 4},
		{"twenty", samples{20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 10.5, 18},
	}
	same := func(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.in.median(); !same(got, c.median) {
				t.Errorf("median = %v, want %v", got, c.median)
			}
			if got := c.in.p90(); !same(got, c.p90) {
				t.Errorf("p90 = %v, want %v", got, c.p90)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	cases := []struct {
		a, b, want float64
	}{{1, 2, 0.5}, {1, 0, math.NaN()}, {math.NaN(), 1, math.NaN()}}
	for _, c := range cases {
		if got := ratio(c.a, c.b); got != c.want && !(math.IsNaN(got) && math.IsNaN(c.want)) {
			t.Errorf("ratio(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
