package manifest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The release policy of a v2 repository (docs/FORMAT.md, "Release
// policy"): per release a rollout percentage, halted, pulled, critical and
// release notes, and the repository's minimum supported version. It is a
// document of its own, policy/SEQ.json, so that the release index (which
// v1 clients decode strictly) gains no member, and so that halting a
// release or changing its percentage costs one small document and a
// timestamp: no new index, no new patch. The timestamp names it by
// sequence, size and SHA-256 (Timestamp.Policy); it is signed by a
// threshold of the release keys, one DOC.KEYID.minisig per key, like the
// index.
const (
	// PolicyDir holds policy/SEQ.json; PolicyName is the publisher's copy
	// of the current policy (clients never fetch it).
	PolicyDir  = "policy"
	PolicyName = "policy.json"
	// PolicyType is the "type" member of the policy document.
	PolicyType = "policy"

	// MaxPolicySize caps the policy document, MaxPolicyEntries its
	// releases, MaxNotesSize the notes of one release (bytes of UTF-8),
	// MaxNotesURLSize its notes URL.
	MaxPolicySize    = 256 << 10
	MaxPolicyEntries = 512
	MaxNotesSize     = 4 << 10
	MaxNotesURLSize  = 1 << 10

	// FullRollout is the rollout of a release offered to every install.
	FullRollout = 100
)

// PolicyPath returns the repository path of the policy of sequence seq.
func PolicyPath(seq uint64) string {
	return path.Join(PolicyDir, strconv.FormatUint(seq, 10)+".json")
}

// PolicyEntry is the policy of one release.
type PolicyEntry struct {
	Version string // the release's version, normalized (NormalizeVersion)
	// Rollout is the percentage (0..100) of installs offered the release:
	// an install is in when its bucket (RolloutBucket of its install id and
	// the version) is below it. FullRollout offers it to every install;
	// raising the percentage keeps every install already in.
	Rollout int
	// Halted: offered to no install any more (those that installed it keep
	// it); Resume by clearing it. Pulled: never installed, not even as a
	// hop of a patch route, nor with an explicit --to; installs on it are
	// offered the next good release.
	Halted, Pulled bool
	// Critical: offered to every install whatever Rollout says (not when
	// halted), and shown as critical.
	Critical bool
	// Notes is the release notes' text (at most MaxNotesSize bytes; tabs
	// and newlines, no other control characters); NotesURL a page with
	// them (https, at most MaxNotesURLSize bytes).
	Notes, NotesURL string
}

// Policy is a release policy document.
type Policy struct {
	Schema   int    // RolesSchema
	App      string // application name
	Sequence uint64 // grows with every policy
	Expires  time.Time
	// MinimumVersion, when set, is the lowest version supported: an
	// install below it must update to at least it (whatever the rollout).
	MinimumVersion string
	// Releases is sorted by version precedence, one entry per version.
	Releases []PolicyEntry

	hash [32]byte
}

// ContentHash returns the SHA-256 of the bytes the policy was parsed from.
func (p *Policy) ContentHash() [32]byte { return p.hash }

// Entry returns the policy of version v (by precedence), and whether it
// has one; a release without an entry is offered to everyone.
func (p *Policy) Entry(v string) (PolicyEntry, bool) {
	if n, err := NormalizeVersion(v); err == nil {
		v = n
	}
	if p != nil {
		for _, e := range p.Releases {
			if c, err := Compare(e.Version, v); err == nil && c == 0 {
				return e, true
			}
		}
	}
	return PolicyEntry{Version: v, Rollout: FullRollout}, false
}

type wirePolicyEntry struct {
	Critical bool   `json:"critical,omitempty"`
	Halted   bool   `json:"halted,omitempty"`
	Notes    string `json:"notes,omitempty"`
	NotesURL string `json:"notes_url,omitempty"`
	Pulled   bool   `json:"pulled,omitempty"`
	Rollout  *int   `json:"rollout,omitempty"`
	Version  string `json:"version"`
}

type wirePolicy struct {
	App            string            `json:"app"`
	Expires        string            `json:"expires"`
	MinimumVersion string            `json:"minimum_version,omitempty"`
	Releases       []wirePolicyEntry `json:"releases"`
	Schema         int               `json:"schema"`
	Sequence       uint64            `json:"sequence"`
	Type           string            `json:"type"`
}

func (p *Policy) wire() *wirePolicy {
	w := &wirePolicy{App: p.App, Expires: p.Expires.UTC().Format(timeLayout), MinimumVersion: p.MinimumVersion,
		Releases: make([]wirePolicyEntry, 0, len(p.Releases)), Schema: p.Schema, Sequence: p.Sequence, Type: PolicyType}
	for _, e := range p.Releases {
		we := wirePolicyEntry{Critical: e.Critical, Halted: e.Halted, Notes: e.Notes, NotesURL: e.NotesURL, Pulled: e.Pulled, Version: e.Version}
		if e.Rollout != FullRollout {
			r := e.Rollout
			we.Rollout = &r
		}
		w.Releases = append(w.Releases, we)
	}
	return w
}

// normalVersion reports whether v is a version in its normalized form.
func normalVersion(v string) bool {
	n, err := NormalizeVersion(v)
	return err == nil && n == v
}

// CheckNotes checks release-notes text: at most MaxNotesSize bytes of
// UTF-8 without control characters other than tab and newline (the notes
// are printed on terminals: no escape sequences).
func CheckNotes(s string) error {
	if len(s) > MaxNotesSize {
		return fmt.Errorf("%w: release notes of %d bytes, the cap is %d: shorten them or give a URL (--notes-url)", ErrMalformed, len(s), MaxNotesSize)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: release notes are not UTF-8", ErrMalformed)
	}
	for _, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r < 0xa0) || r == 0x2028 || r == 0x2029 || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return fmt.Errorf("%w: release notes hold the control character %U: only tabs and newlines are allowed", ErrMalformed, r)
		}
	}
	return nil
}

// CheckNotesURL checks a release-notes URL: https, a host, no user
// information, at most MaxNotesURLSize bytes, no spaces or control
// characters.
func CheckNotesURL(s string) error {
	if len(s) > MaxNotesURLSize {
		return fmt.Errorf("%w: notes URL of %d bytes, the cap is %d", ErrMalformed, len(s), MaxNotesURLSize)
	}
	for _, r := range s {
		if r <= 0x20 || r >= 0x7f {
			return fmt.Errorf("%w: notes URL %q holds a space, a control or a non-ASCII character: percent-encode it", ErrMalformed, s)
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" {
		return fmt.Errorf("%w: notes URL %q: want an https:// URL with a host and no user name", ErrMalformed, s)
	}
	return nil
}

// Validate checks every rule of a policy that needs no signature: schema,
// app, 1 <= Sequence <= 2^53-1, expiry; MinimumVersion normalized when
// set; at most MaxPolicyEntries releases, normalized versions in strictly
// increasing precedence, Rollout in 0..100, notes (CheckNotes,
// CheckNotesURL), pulled not critical, and no entry that says nothing.
func (p *Policy) Validate() error {
	if p.Schema != RolesSchema {
		return fmt.Errorf("%w: policy schema %d, this package knows %d", ErrSchema, p.Schema, RolesSchema)
	}
	if !validName(p.App) {
		return fmt.Errorf("%w: policy: app %q is not a valid name", ErrMalformed, p.App)
	}
	if p.Sequence == 0 || p.Sequence > MaxSafeInteger {
		return fmt.Errorf("%w: policy: sequence %d outside 1..2^53-1", ErrMalformed, p.Sequence)
	}
	if err := checkExpiry("policy", p.Expires); err != nil {
		return err
	}
	if p.MinimumVersion != "" && !normalVersion(p.MinimumVersion) {
		return fmt.Errorf("%w: policy: minimum_version %q is not a normalized semantic version (1.2.3)", ErrMalformed, p.MinimumVersion)
	}
	if len(p.Releases) > MaxPolicyEntries {
		return fmt.Errorf("%w: policy: %d releases, at most %d", ErrMalformed, len(p.Releases), MaxPolicyEntries)
	}
	for i, e := range p.Releases {
		if !normalVersion(e.Version) {
			return fmt.Errorf("%w: policy: version %q is not a normalized semantic version (1.2.3)", ErrMalformed, e.Version)
		}
		if i > 0 {
			if c, _ := Compare(p.Releases[i-1].Version, e.Version); c >= 0 {
				return fmt.Errorf("%w: policy: releases must be in increasing version order, once each (%s after %s)", ErrMalformed, e.Version, p.Releases[i-1].Version)
			}
		}
		if e.Rollout < 0 || e.Rollout > FullRollout {
			return fmt.Errorf("%w: policy: %s: rollout %d outside 0..100", ErrMalformed, e.Version, e.Rollout)
		}
		if e.Pulled && e.Critical {
			return fmt.Errorf("%w: policy: %s is both pulled and critical", ErrMalformed, e.Version)
		}
		if e.Notes != "" {
			if err := CheckNotes(e.Notes); err != nil {
				return fmt.Errorf("policy: %s: %w", e.Version, err)
			}
		}
		if e.NotesURL != "" {
			if err := CheckNotesURL(e.NotesURL); err != nil {
				return fmt.Errorf("policy: %s: %w", e.Version, err)
			}
		}
		if e == (PolicyEntry{Version: e.Version, Rollout: FullRollout}) {
			return fmt.Errorf("%w: policy: the entry of %s changes nothing: drop it", ErrMalformed, e.Version)
		}
	}
	return nil
}

// MarshalPolicy validates p and returns its canonical bytes.
func MarshalPolicy(p *Policy) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return encodeJSON(p.wire(), MaxPolicySize)
}

// ParsePolicy parses policy bytes strictly (size cap, canonical form,
// known members only, schema, type, Validate, re-encoding to the same
// bytes) WITHOUT checking a signature: for publishers and the fuzzer;
// clients use OpenPolicy.
func ParsePolicy(raw []byte) (*Policy, error) {
	var w wirePolicy
	if err := decodeDoc(PolicyType, raw, MaxPolicySize, &w); err != nil {
		return nil, err
	}
	if w.Type != PolicyType {
		return nil, fmt.Errorf("%w: type %q, want %q: this is not a policy document", ErrMalformed, w.Type, PolicyType)
	}
	if len(w.Releases) > MaxPolicyEntries {
		return nil, fmt.Errorf("%w: policy: %d releases, at most %d", ErrMalformed, len(w.Releases), MaxPolicyEntries)
	}
	p := &Policy{Schema: w.Schema, App: w.App, Sequence: w.Sequence, MinimumVersion: w.MinimumVersion}
	var err error
	if p.Expires, err = parseTime("policy expires", w.Expires); err != nil {
		return nil, err
	}
	for _, we := range w.Releases {
		e := PolicyEntry{Version: we.Version, Rollout: FullRollout, Halted: we.Halted, Pulled: we.Pulled, Critical: we.Critical, Notes: we.Notes, NotesURL: we.NotesURL}
		if we.Rollout != nil {
			e.Rollout = *we.Rollout
		}
		p.Releases = append(p.Releases, e)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	enc, err := encodeJSON(p.wire(), MaxPolicySize)
	if err != nil {
		return nil, err
	}
	if err := sameBytes(raw, enc); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p.hash = sha256.Sum256(raw)
	return p, nil
}

// SignPolicy returns the signature file by priv of the policy bytes raw,
// which must parse. Trusted comment: "deltaup policy app:APP sequence:N
// sha256:HEX".
func SignPolicy(priv PrivateKey, raw []byte) ([]byte, error) {
	if !priv.set {
		return nil, errors.New("manifest: SignPolicy: zero PrivateKey")
	}
	p, err := ParsePolicy(raw)
	if err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	return signBytes(priv, raw, fmt.Sprintf("deltaup policy app:%s sequence:%d sha256:%x", p.App, p.Sequence, p.hash)), nil
}

// PolicyOptions are what a client knows before opening a policy.
type PolicyOptions struct {
	App string    // required
	Now time.Time // zero means time.Now()
	// MinSequence is the highest policy sequence accepted before under the
	// same release keys; SeenHash, when set, that policy's hash.
	MinSequence uint64
	SeenHash    [32]byte
}

// OpenPolicy checks a policy fetched by a v2 client against the
// timestamp's reference ref and root's release keys, in order: the exact
// size and SHA-256 of ref (ErrHashMismatch), before anything else; a
// threshold of the release role's signatures (ErrSignature); strict
// parsing (ErrMalformed); the app (ErrWrongApp); its sequence is ref's
// (ErrMalformed), not lower than MinSequence, equal only with the same
// bytes (ErrRollback); now before Expires (ErrExpired).
func OpenPolicy(raw []byte, sigs map[string][]byte, root *Root, ref IndexRef, opts PolicyOptions) (*Policy, error) {
	pp := PolicyPath(ref.Sequence)
	if int64(len(raw)) != ref.Size {
		return nil, fmt.Errorf("%w: %s is %d bytes, the timestamp says %d: the mirror serves another policy; trying another", ErrHashMismatch, pp, len(raw), ref.Size)
	}
	if sha256.Sum256(raw) != ref.SHA256 {
		return nil, fmt.Errorf("%w: %s does not have the SHA-256 the timestamp names: the mirror serves another policy; trying another", ErrHashMismatch, pp)
	}
	if opts.App == "" {
		return nil, fmt.Errorf("%w: PolicyOptions.App is empty", ErrWrongApp)
	}
	if err := root.VerifyRole(RoleRelease, raw, sigs); err != nil {
		return nil, fmt.Errorf("%s: %w", pp, err)
	}
	p, err := ParsePolicy(raw)
	if err != nil {
		return nil, err
	}
	if p.App != opts.App {
		return nil, fmt.Errorf("%w: the policy is for %q, this client updates %q", ErrWrongApp, p.App, opts.App)
	}
	if p.Sequence != ref.Sequence {
		return nil, fmt.Errorf("%w: %s holds sequence %d, the timestamp names %d: the repository is inconsistent", ErrMalformed, pp, p.Sequence, ref.Sequence)
	}
	if p.Sequence < opts.MinSequence {
		return nil, fmt.Errorf("%w: policy sequence %d is lower than %d, accepted before: a mirror replays an old policy (one that un-halts or un-pulls a release); trying another", ErrRollback, p.Sequence, opts.MinSequence)
	}
	if p.Sequence == opts.MinSequence && opts.SeenHash != ([32]byte{}) && p.hash != opts.SeenHash {
		return nil, fmt.Errorf("%w: policy sequence %d was accepted before with other content: the release keys signed two policies with one sequence; report it to the publisher", ErrRollback, p.Sequence)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if !now.Before(p.Expires) {
		return nil, fmt.Errorf("%w: the release policy expired at %s (now %s): the publisher must issue a new one (mkdelta rollout), or this mirror serves a frozen copy; trying another, check the system clock",
			ErrExpired, p.Expires.UTC().Format(timeLayout), now.UTC().Format(timeLayout))
	}
	return p, nil
}

// RolloutBucket returns the bucket (0..99) of an install for version v:
// the first 8 bytes of SHA-256("deltaup-rollout\x00" + installID + "\x00"
// + v), big-endian, modulo 100. The install is in a rollout of P percent
// when its bucket is below P: raising P keeps every install already in,
// and each version draws an independent sample (the same installs are not
// always first). v should be normalized (1.2.3, not v1.2.3).
func RolloutBucket(installID, v string) int {
	h := sha256.Sum256([]byte("deltaup-rollout\x00" + installID + "\x00" + v))
	var n uint64
	for _, b := range h[:8] {
		n = n<<8 | uint64(b)
	}
	return int(n % 100)
}

// InRollout reports whether the install installID is offered release e by
// its rollout percentage (Critical ignores it; Halted and Pulled are the
// caller's to check).
func (e PolicyEntry) InRollout(installID string) bool {
	if e.Critical || e.Rollout >= FullRollout {
		return true
	}
	return RolloutBucket(installID, e.Version) < e.Rollout
}

// String names a release and its policy flags, for messages: "1.2.0 (halted, 10%)".
func (e PolicyEntry) String() string {
	var parts []string
	if e.Pulled {
		parts = append(parts, "pulled")
	}
	if e.Halted {
		parts = append(parts, "halted")
	}
	if e.Critical {
		parts = append(parts, "critical")
	}
	if e.Rollout != FullRollout {
		parts = append(parts, strconv.Itoa(e.Rollout)+"%")
	}
	if len(parts) == 0 {
		parts = append(parts, "100%")
	}
	return e.Version + " (" + strings.Join(parts, ", ") + ")"
}
