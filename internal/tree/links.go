package tree

import (
	"fmt"
	"strings"
)

// maxLinkDepth caps how many symlinks resolving one symlink may pass
// through, itself included, like the kernel's limit on one path lookup (40
// on Linux).
const maxLinkDepth = 40

// CheckLinkChains resolves every symlink of a tree the way a POSIX kernel
// would, following the tree's other symlinks along the way, and fails with
// ErrLinkEscape when one resolves outside the root, or when the links form
// a loop or a chain longer than maxLinkDepth.
//
// CheckLink alone is lexical: "d/e/up -> .." and
// "x -> d/e/up/../.." each pass it, but x resolves to the root's parent,
// because the kernel applies ".." after following d/e/up. links maps each
// symlink's path to its target. Cost: each link is resolved once
// (memoized), O(total length of the targets × path depth).
func CheckLinkChains(links map[string]string) error {
	r := linkResolver{links: links, done: make(map[string]resolved, len(links)), busy: map[string]bool{}}
	for p := range links {
		if _, err := r.resolve(p, 1); err != nil {
			return err
		}
	}
	return nil
}

type linkResolver struct {
	links map[string]string
	done  map[string]resolved
	busy  map[string]bool
}

type resolved struct {
	path  string // where the link resolves, relative to the root ("" = the root)
	links int    // symlinks passed through, itself included (saturates at maxLinkDepth+1)
}

// resolve resolves the symlink at p, reached through depth-1 other links
// (which bounds the recursion: the outermost of them passes through at
// least depth links). Whether CheckLinkChains fails does not depend on the
// order links are visited in.
func (r *linkResolver) resolve(p string, depth int) (resolved, error) {
	if d, ok := r.done[p]; ok {
		return d, nil
	}
	if depth > maxLinkDepth {
		return resolved{}, fmt.Errorf("%w: %s: a chain of more than %d symlinks", ErrLinkEscape, p, maxLinkDepth)
	}
	if r.busy[p] {
		return resolved{}, fmt.Errorf("%w: %s: symlink loop", ErrLinkEscape, p)
	}
	r.busy[p] = true
	defer delete(r.busy, p)
	target := r.links[p]
	count := 1
	cur := ""
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		cur = p[:i]
	}
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if cur == "" {
				return resolved{}, fmt.Errorf("%w: %s -> %q resolves outside the tree through other symlinks", ErrLinkEscape, p, target)
			}
			if i := strings.LastIndexByte(cur, '/'); i >= 0 {
				cur = cur[:i]
			} else {
				cur = ""
			}
		default:
			next := c
			if cur != "" {
				next = cur + "/" + c
			}
			if _, ok := r.links[next]; ok {
				d, err := r.resolve(next, depth+1)
				if err != nil {
					return resolved{}, err
				}
				next = d.path
				if count = min(count+d.links, maxLinkDepth+1); count > maxLinkDepth {
					return resolved{}, fmt.Errorf("%w: %s: resolving it passes through more than %d symlinks", ErrLinkEscape, p, maxLinkDepth)
				}
			}
			cur = next
		}
	}
	r.done[p] = resolved{cur, count}
	return r.done[p], nil
}
