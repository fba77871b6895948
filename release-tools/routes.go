package releasetools

import (
	"github.com/deltaup/deltaup/manifest"
)

// patchRoutes finds, for every release of m, the fewest patches that take
// it to the newest release of its channel (breadth first over the patch
// graph backwards from the newest). It returns those hop counts and the
// releases that no chain of patches reaches the newest from.
//
// Cost: O(releases + patches).
func patchRoutes(m *manifest.Manifest) (map[string]int, []string) {
	hops := map[string]int{}
	var none []string
	into := map[string][]string{} // version -> the versions with a patch into it
	for i := range m.Releases {
		for _, p := range m.Releases[i].Patches {
			into[p.To] = append(into[p.To], p.From)
		}
	}
	for _, ch := range m.Channels {
		rs := m.Sorted(ch)
		if len(rs) == 0 {
			continue
		}
		newest := rs[len(rs)-1].Version
		dist := map[string]int{newest: 0}
		queue := []string{newest}
		for len(queue) > 0 {
			v := queue[0]
			queue = queue[1:]
			for _, from := range into[v] {
				if _, ok := dist[from]; !ok {
					dist[from] = dist[v] + 1
					queue = append(queue, from)
				}
			}
		}
		for _, r := range rs {
			if d, ok := dist[r.Version]; ok {
				hops[r.Version] = d
			} else {
				none = append(none, r.Version)
			}
		}
	}
	return hops, none
}
