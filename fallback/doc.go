// Package fallback writes and extracts the full archives deltaup ships
// beside its deltas: a whole application version as a tar stream compressed
// with zstd (.tar.zst) or gzip (.tar.gz), for clients that have no base to
// patch or whose patch failed.
//
// Write makes deterministic archives of a tree (same tree, same bytes), so
// release builds are reproducible and an archive can be signed by hash.
// Extract is written for archives from the network: it extracts into a new
// directory, never follows symlinks, refuses unsafe names, links that
// escape, special files, duplicates (also case- and normalization-
// insensitive ones) and archives over size caps, can check every entry
// against a signed list, and leaves nothing behind when it fails. The
// archive format is described byte by byte in docs/FORMAT.md, section
// "Full archives (tar.zst, tar.gz)".
package fallback
