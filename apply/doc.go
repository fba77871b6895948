// Package apply is the client side of deltaup: it finds out which version
// of an application is installed, fetches and verifies the repository's
// signed manifest, picks the cheapest way to the target version (a chain of
// directory bundles or the full archive), downloads, stages and swaps the
// new tree in, and rolls back when that fails.
//
// The pieces:
//
//   - Config (config.go): what the updater needs to know (application
//     directory, servers, trusted key, channel, ...), with defaults, and
//     deltaup.json, the configuration file that ships inside the
//     application directory.
//   - State (state.go): what the client remembers between runs (highest
//     manifest sequence seen and its hash, installed version, versions
//     marked bad by a rollback), in <BackupDir>/state.json, never inside
//     the application directory.
//   - FetchManifest, DetectVersion, CheckUpdate, Check (check.go): fetch and
//     verify manifest.json (falling back to manifests/N.json after a torn
//     publish), identify the installed tree by its digest, and decide
//     whether and how to update.
//   - Plan (plan.go): the cheapest route by download size over the
//     published patches and the target's full archive.
//   - Status (status.go): the installed version, or the closest release
//     and the files that differ from it.
//   - The downloader (download.go) and the swap journal (journal.go,
//     swap.go).
//
// Every refusal of a manifest (bad or missing signature, expired, replayed
// or forked, another application's, oversized) matches ErrRefused and the
// manifest package's error class, says what to do, and changes nothing on
// disk. The formats are described in docs/FORMAT.md.
package apply
