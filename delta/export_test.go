package delta

import "runtime"

// FreeSpace exposes freeSpace to the black-box tests.
var FreeSpace = freeSpace

// AllocatedBy returns the bytes of heap f allocates (runtime.MemStats
// TotalAlloc before and after): an upper bound on how much f grows the heap,
// whatever the GC timing.
func AllocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
