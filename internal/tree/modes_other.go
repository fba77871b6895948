//go:build !windows

package tree

const defaultModes = ModesExact
