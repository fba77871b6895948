package main

import "sort"

// unknownRSS marks a peak-memory figure that could not be measured.
const unknownRSS = -1

// sample is the outcome of one diff+apply run of one tool on one pair.
type sample struct {
	patchBytes int64
	diffSecs   float64
	applySecs  float64
	diffRSS    int64 // bytes, or unknownRSS
	applyRSS   int64 // bytes, or unknownRSS
	roundTrip  bool  // applied output is byte-identical to the new file
}

// Result summarises all runs of one tool on one pair.
type Result struct {
	Tool        string
	Err         string  // non-empty when the tool failed; other fields are then meaningless
	Runs        int     // number of successful runs aggregated
	PatchBytes  int64   // largest patch size seen (tools are expected to be deterministic)
	DiffSecs    float64 // median diff wall time
	ApplySecs   float64 // median apply wall time
	DiffRSS     int64   // max diff peak RSS in bytes, or unknownRSS
	ApplyRSS    int64   // max apply peak RSS in bytes, or unknownRSS
	RoundTripOK bool    // every run reproduced the new file exactly
}

// OK reports whether the tool ran successfully (regardless of round trip).
func (r Result) OK() bool { return r.Err == "" && r.Runs > 0 }

// median returns the median of xs (the mean of the two middle values for an
// even count), or 0 for an empty slice. xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// maxRSS returns the largest known value in xs, or unknownRSS if every
// value is unknown (or xs is empty).
func maxRSS(xs []int64) int64 {
	m := int64(unknownRSS)
	for _, x := range xs {
		if x != unknownRSS && x > m {
			m = x
		}
	}
	return m
}

// aggregate combines the samples of one tool on one pair: median of each
// time, max of each memory figure, and round trip OK only if every run was.
func aggregate(tool string, samples []sample) Result {
	r := Result{Tool: tool, Runs: len(samples), DiffRSS: unknownRSS, ApplyRSS: unknownRSS}
	if len(samples) == 0 {
		r.Err = "no runs"
		return r
	}
	var diffT, applyT []float64
	var diffM, applyM []int64
	r.RoundTripOK = true
	for _, s := range samples {
		diffT = append(diffT, s.diffSecs)
		applyT = append(applyT, s.applySecs)
		diffM = append(diffM, s.diffRSS)
		applyM = append(applyM, s.applyRSS)
		r.PatchBytes = max(r.PatchBytes, s.patchBytes)
		r.RoundTripOK = r.RoundTripOK && s.roundTrip
	}
	r.DiffSecs = median(diffT)
	r.ApplySecs = median(applyT)
	r.DiffRSS = maxRSS(diffM)
	r.ApplyRSS = maxRSS(applyM)
	return r
}
