package manifest

import (
	"fmt"
	"time"
)

// OpenOptions are what a client knows before fetching a manifest.
type OpenOptions struct {
	// App is the application name the manifest must carry (required).
	App string
	// Now is the current time; zero means time.Now().
	Now time.Time
	// MinSequence is the highest sequence number accepted before (0 when
	// none). Store Manifest.Sequence after every successful Open.
	MinSequence uint64
	// SeenHash, optional, is the ContentHash of the manifest accepted with
	// MinSequence. When set, a manifest with sequence MinSequence but other
	// bytes is refused (ErrRollback): the publisher reused a sequence
	// number or someone serves a forked repository.
	SeenHash [32]byte
	// MaxSize caps len(raw); 0 means MaxManifestSize.
	MaxSize int64
}

// Open is the client's only way in: it checks manifest.json (raw) and
// manifest.json.minisig (sig) against the trusted key pub and returns the
// manifest. In order:
//
//  1. size: len(raw) <= opts.MaxSize (ErrTooLarge), before reading further;
//  2. signature over the exact bytes, before any parsing (Verify,
//     ErrSignature);
//  3. canonical JSON, known fields only, schema version (ErrMalformed,
//     ErrSchema);
//  4. App equals opts.App (ErrWrongApp);
//  5. Validate, and the decoded value re-encodes to exactly raw
//     (ErrMalformed);
//  6. sequence >= opts.MinSequence, and equal only with the same content
//     when opts.SeenHash is set (ErrRollback);
//  7. now < Expires and Issued <= now + ClockSkew (ErrExpired).
//
// Cost: one BLAKE2b-512 pass and two Ed25519 verifications, then parsing
// linear in len(raw) (a few times over: canonical check, decode, re-encode)
// plus one tree.Digest per inline file list. Memory: a few times len(raw).
func Open(raw, sig []byte, pub PublicKey, opts OpenOptions) (*Manifest, error) {
	limit := opts.MaxSize
	if limit <= 0 {
		limit = MaxManifestSize
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, the cap is %d: refusing to read it (raise OpenOptions.MaxSize only if the publisher's manifests really are that large)", ErrTooLarge, ManifestName, len(raw), limit)
	}
	if opts.App == "" {
		return nil, fmt.Errorf("%w: OpenOptions.App is empty: set it to the application's name", ErrWrongApp)
	}
	if _, err := Verify(pub, raw, sig); err != nil {
		return nil, err
	}
	return openVerified(raw, limit, opts)
}

// openVerified runs the checks of Open that follow the signature.
func openVerified(raw []byte, limit int64, opts OpenOptions) (*Manifest, error) {
	m, err := parse(raw, limit)
	if err != nil {
		return nil, err
	}
	if m.App != opts.App {
		return nil, fmt.Errorf("%w: the manifest is for %q, this client updates %q: the repository URL points at another application", ErrWrongApp, m.App, opts.App)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := checkRoundTrip(raw, m); err != nil {
		return nil, err
	}
	if err := checkFreshness(m, opts); err != nil {
		return nil, err
	}
	return m, nil
}

// checkFreshness runs Open's sequence and validity checks on m (its
// Sequence, hash, Issued and Expires).
func checkFreshness(m *Manifest, opts OpenOptions) error {
	if m.Sequence < opts.MinSequence {
		return fmt.Errorf("%w: sequence %d is lower than %d, accepted before: an older manifest is being replayed (stale mirror or attack); keep the installed version and retry later", ErrRollback, m.Sequence, opts.MinSequence)
	}
	if m.Sequence == opts.MinSequence && opts.SeenHash != ([32]byte{}) && m.hash != opts.SeenHash {
		return fmt.Errorf("%w: sequence %d was accepted before with other content (sha256 %x, now %x): the publisher reused a sequence number or the repository is forked; report it to the publisher", ErrRollback, m.Sequence, opts.SeenHash, m.hash)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if !now.Before(m.Expires) {
		return fmt.Errorf("%w: the manifest expired at %s (now %s): the repository or mirror serves a stale copy; retry later or tell the publisher, and check the system clock", ErrExpired, m.Expires.UTC().Format(timeLayout), now.UTC().Format(timeLayout))
	}
	if m.Issued.After(now.Add(ClockSkew)) {
		return fmt.Errorf("%w: the manifest is issued at %s, in the future (now %s): check the system clock", ErrExpired, m.Issued.UTC().Format(timeLayout), now.UTC().Format(timeLayout))
	}
	return nil
}
