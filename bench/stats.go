package main

import (
	"math"
	"slices"
	"time"
)

// samples are the measurements of one figure for one subject.
type samples []float64

// quantile is the nearest-rank quantile (q in (0,1]); NaN when empty.
func (s samples) quantile(q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	c := slices.Clone(s)
	slices.Sort(c)
	rank := int(math.Ceil(q*float64(len(c)))) - 1
	return c[max(rank, 0)]
}

// median is the middle value, or the mean of the two middle values.
func (s samples) median() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	c := slices.Clone(s)
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

func (s samples) p90() float64 { return s.quantile(0.9) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ratio is a/b, NaN when either is missing or b is zero.
func ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}
