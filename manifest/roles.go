package manifest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Repository schema 2: roles (docs/FORMAT.md, "Repository v2: roles").
//
// A v2 repository adds two kinds of signed documents to the release index
// (manifest.json and its history copies manifests/SEQ.json, unchanged):
//
//   - root/N.json, the root document of version N: the public keys and the
//     signature threshold of each role (root, release, timestamp). Version
//     N+1 is signed by a threshold of version N's root keys and by a
//     threshold of its own. Clients ship with one root and walk to the
//     newest, one version at a time.
//   - timestamp.json: a tiny document with a short validity (a day) that
//     names the current release index by sequence, size and SHA-256,
//     re-signed by an online key (`mkdelta refresh`).
//
// Every document keeps its detached minisign signatures, one file per key:
// DOC.KEYID.minisig (SigPath), so that the stock tool verifies each
// (`minisign -V -H -m DOC -x DOC.KEYID.minisig -p KEY.pub`).
const (
	// RolesSchema is the "schema" member of root and timestamp documents.
	RolesSchema = 2

	RoleRoot      = "root"
	RoleRelease   = "release"
	RoleTimestamp = "timestamp"

	// RootDir holds root/N.json; TimestampName is the timestamp document.
	RootDir       = "root"
	TimestampName = "timestamp.json"

	// MaxRootSize and MaxTimestampSize cap those documents.
	MaxRootSize = 64 << 10
	// MaxTimestampSize caps timestamp.json: about 210 bytes with one
	// index, about 125 more per platform (MaxPlatforms of them).
	MaxTimestampSize = 16 << 10
	// MaxRoleKeys caps the keys of one role, MaxRootKeys those of a root.
	MaxRoleKeys = 16
	MaxRootKeys = 48
	// MaxRootWalk caps how many root versions a client walks in one check
	// (a hostile mirror cannot keep it fetching forever; go-tuf's default
	// too). A client further behind than that fails the check: ship a
	// newer root with the application.
	MaxRootWalk = 256
)

// Roles lists the role names in canonical order.
var Roles = []string{RoleRelease, RoleRoot, RoleTimestamp}

// RootPath returns the repository path of root version v: "root/N.json".
func RootPath(v uint64) string { return path.Join(RootDir, strconv.FormatUint(v, 10)+".json") }

// SigPath returns the path of the signature of the document at doc by the
// key with ID id (16 uppercase hex digits): "DOC.ID.minisig".
func SigPath(doc, id string) string { return doc + "." + id + ".minisig" }

// IndexPath returns the repository path of the release index of sequence
// seq, the history copy that v2 clients fetch (immutable, hence cacheable).
func IndexPath(seq uint64) string {
	return path.Join("manifests", strconv.FormatUint(seq, 10)+".json")
}

// Role is a role's keys (IDs, sorted, unique) and threshold: how many
// distinct keys among them must sign a document of the role.
type Role struct {
	KeyIDs    []string
	Threshold int
}

// Root is a root document.
type Root struct {
	Schema  int    // RolesSchema
	App     string // application name
	Version uint64 // 1, 2, ...: root/Version.json
	Expires time.Time
	Keys    map[string]PublicKey // by ID; each used by at least one role
	Roles   map[string]Role      // exactly RoleRoot, RoleRelease, RoleTimestamp

	hash [32]byte
	raw  []byte
}

// Raw returns the bytes a parsed root was read from (nil when built in
// memory).
func (r *Root) Raw() []byte { return r.raw }

// ContentHash returns the SHA-256 of the bytes the root was parsed from.
func (r *Root) ContentHash() [32]byte { return r.hash }

// RoleKeys returns the public keys of a role, in KeyIDs order.
func (r *Root) RoleKeys(role string) []PublicKey {
	var out []PublicKey
	for _, id := range r.Roles[role].KeyIDs {
		out = append(out, r.Keys[id])
	}
	return out
}

// RoleFingerprint identifies a role's key set and threshold: clients forget
// the sequence numbers they accepted for a role when its fingerprint
// changes (a key rotation undoes a fast-forward made with a stolen key).
func (r *Root) RoleFingerprint(role string) string {
	ro := r.Roles[role]
	h := sha256.Sum256([]byte(strings.Join(ro.KeyIDs, ",") + "/" + strconv.Itoa(ro.Threshold)))
	return hexOf(h)[:32]
}

type wireRole struct {
	Keys      []string `json:"keys"`
	Threshold int      `json:"threshold"`
}

type wireRoles struct {
	Release   wireRole `json:"release"`
	Root      wireRole `json:"root"`
	Timestamp wireRole `json:"timestamp"`
}

type wireRoot struct {
	App     string            `json:"app"`
	Expires string            `json:"expires"`
	Keys    map[string]string `json:"keys"`
	Roles   wireRoles         `json:"roles"`
	Schema  int               `json:"schema"`
	Type    string            `json:"type"`
	Version uint64            `json:"version"`
}

func (r *Root) wire() *wireRoot {
	w := &wireRoot{App: r.App, Expires: r.Expires.UTC().Format(timeLayout), Keys: map[string]string{}, Schema: r.Schema, Type: RoleRoot, Version: r.Version}
	for id, k := range r.Keys {
		w.Keys[id] = k.String()
	}
	role := func(name string) wireRole {
		ro := r.Roles[name]
		return wireRole{Keys: append(make([]string, 0, len(ro.KeyIDs)), ro.KeyIDs...), Threshold: ro.Threshold}
	}
	w.Roles = wireRoles{Release: role(RoleRelease), Root: role(RoleRoot), Timestamp: role(RoleTimestamp)}
	return w
}

// validKeyID reports whether s is 16 uppercase hex digits.
func validKeyID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// checkExpiry checks a document's expiry time: set, whole seconds, in
// years 0001..9999.
func checkExpiry(what string, t time.Time) error {
	if t.IsZero() || t.Nanosecond() != 0 || t.UTC().Year() > 9999 || t.UTC().Year() < 1 {
		return fmt.Errorf("%w: %s: expires must be a whole-second time in years 0001..9999", ErrMalformed, what)
	}
	return nil
}

// Validate checks every rule of a root document that needs no signature:
// schema, app name, 1 <= Version <= 2^53-1, expiry set; 1..MaxRootKeys keys,
// each under its own ID; the three roles, each with 1..MaxRoleKeys sorted
// unique key IDs that the root lists and 1 <= threshold <= keys; no key
// unused.
func (r *Root) Validate() error {
	if r.Schema != RolesSchema {
		return fmt.Errorf("%w: root schema %d, this package knows %d", ErrSchema, r.Schema, RolesSchema)
	}
	if !validName(r.App) {
		return fmt.Errorf("%w: root: app %q is not a valid name", ErrMalformed, r.App)
	}
	if r.Version == 0 || r.Version > MaxSafeInteger {
		return fmt.Errorf("%w: root: version %d outside 1..2^53-1", ErrMalformed, r.Version)
	}
	if err := checkExpiry("root", r.Expires); err != nil {
		return err
	}
	if len(r.Keys) == 0 || len(r.Keys) > MaxRootKeys {
		return fmt.Errorf("%w: root: %d keys, want 1..%d", ErrMalformed, len(r.Keys), MaxRootKeys)
	}
	for id, k := range r.Keys {
		if !validKeyID(id) || !k.set || k.ID() != id {
			return fmt.Errorf("%w: root: key %q is not listed under its own ID (16 uppercase hex digits, as minisign prints it)", ErrMalformed, id)
		}
	}
	if len(r.Roles) != len(Roles) {
		return fmt.Errorf("%w: root: roles must be exactly %s", ErrMalformed, strings.Join(Roles, ", "))
	}
	used := map[string]bool{}
	for _, name := range Roles {
		ro, ok := r.Roles[name]
		if !ok {
			return fmt.Errorf("%w: root: role %q is missing", ErrMalformed, name)
		}
		if len(ro.KeyIDs) == 0 || len(ro.KeyIDs) > MaxRoleKeys {
			return fmt.Errorf("%w: root: role %s has %d keys, want 1..%d", ErrMalformed, name, len(ro.KeyIDs), MaxRoleKeys)
		}
		for i, id := range ro.KeyIDs {
			if i > 0 && ro.KeyIDs[i-1] >= id {
				return fmt.Errorf("%w: root: role %s: key IDs must be sorted and unique (%s after %s)", ErrMalformed, name, id, ro.KeyIDs[i-1])
			}
			if _, ok := r.Keys[id]; !ok {
				return fmt.Errorf("%w: root: role %s names key %s, which the root does not list", ErrMalformed, name, id)
			}
			used[id] = true
		}
		if ro.Threshold < 1 || ro.Threshold > len(ro.KeyIDs) {
			return fmt.Errorf("%w: root: role %s: threshold %d outside 1..%d (its keys)", ErrMalformed, name, ro.Threshold, len(ro.KeyIDs))
		}
	}
	for id := range r.Keys {
		if !used[id] {
			return fmt.Errorf("%w: root: key %s belongs to no role: drop it", ErrMalformed, id)
		}
	}
	return nil
}

// MarshalRoot validates r and returns its canonical bytes.
func MarshalRoot(r *Root) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return encodeJSON(r.wire(), MaxRootSize)
}

// ParseRoot parses root-document bytes strictly (size cap, canonical form,
// known members only, schema, type, Validate, re-encoding to the same
// bytes) WITHOUT checking any signature: for the root a client ships with
// (trusted because it ships), publishers and the fuzzer. Clients accept
// later versions only through Root.Next.
func ParseRoot(raw []byte) (*Root, error) {
	var w wireRoot
	if err := decodeDoc(RoleRoot, raw, MaxRootSize, &w); err != nil {
		return nil, err
	}
	if w.Type != RoleRoot {
		return nil, fmt.Errorf("%w: type %q, want %q: this is not a root document", ErrMalformed, w.Type, RoleRoot)
	}
	r := &Root{Schema: w.Schema, App: w.App, Version: w.Version, Keys: map[string]PublicKey{}, Roles: map[string]Role{}}
	var err error
	if r.Expires, err = parseTime("root expires", w.Expires); err != nil {
		return nil, err
	}
	if len(w.Keys) > MaxRootKeys {
		return nil, fmt.Errorf("%w: root: %d keys, want 1..%d", ErrMalformed, len(w.Keys), MaxRootKeys)
	}
	for id, text := range w.Keys {
		k, err := ParsePublicKey([]byte(text))
		if err != nil || strings.ContainsAny(text, " \n\r\t") {
			return nil, fmt.Errorf("%w: root: key %s: not a bare base64 minisign public key", ErrMalformed, id)
		}
		r.Keys[id] = k
	}
	for name, wr := range map[string]wireRole{RoleRelease: w.Roles.Release, RoleRoot: w.Roles.Root, RoleTimestamp: w.Roles.Timestamp} {
		r.Roles[name] = Role{KeyIDs: wr.Keys, Threshold: wr.Threshold}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	enc, err := encodeJSON(r.wire(), MaxRootSize)
	if err != nil {
		return nil, err
	}
	if err := sameBytes(raw, enc); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	r.hash, r.raw = sha256.Sum256(raw), slices.Clone(raw)
	return r, nil
}

// decodeDoc checks a v2 document's size cap, canonical form and schema,
// and decodes it strictly into w (a pointer to its wire type).
func decodeDoc(what string, raw []byte, limit int, w any) error {
	if len(raw) > limit {
		return fmt.Errorf("%w: %s document is %d bytes, the cap is %d", ErrTooLarge, what, len(raw), limit)
	}
	if err := checkCanonical(raw, int64(limit)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := checkSchemaOf(raw, RolesSchema); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := decodeStrict(raw, w); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// SignRoot returns the signature file by priv of the root bytes raw, which
// must parse. Trusted comment: "deltaup root app:APP version:N sha256:HEX".
func SignRoot(priv PrivateKey, raw []byte) ([]byte, error) {
	if !priv.set {
		return nil, errors.New("manifest: SignRoot: zero PrivateKey")
	}
	r, err := ParseRoot(raw)
	if err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	return signBytes(priv, raw, fmt.Sprintf("deltaup root app:%s version:%d sha256:%x", r.App, r.Version, r.hash)), nil
}

// VerifyRole checks that at least the role's threshold of distinct keys of
// the role have signed msg: sigs maps a key ID to the contents of that
// key's signature file (missing and foreign entries are ignored). It fails
// with ErrSignature saying how many valid signatures it found. Cost: one
// BLAKE2b-512 pass and two Ed25519 verifications per signature tried; it
// stops at the threshold.
func (r *Root) VerifyRole(role string, msg []byte, sigs map[string][]byte) error {
	ro, ok := r.Roles[role]
	if !ok {
		return fmt.Errorf("%w: root %d has no role %q", ErrSignature, r.Version, role)
	}
	good := 0
	var firstErr error
	for _, id := range ro.KeyIDs {
		sig, ok := sigs[id]
		if !ok {
			continue
		}
		if _, err := Verify(r.Keys[id], msg, sig); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if good++; good >= ro.Threshold {
			return nil
		}
	}
	msgErr := ""
	if firstErr != nil {
		msgErr = " (" + firstErr.Error() + ")"
	}
	return fmt.Errorf("%w: %d valid signature(s) of the %s role of root %d, %d needed%s: the document was not signed by enough of the role's keys; do not use it",
		ErrSignature, good, role, r.Version, ro.Threshold, msgErr)
}

// Next is the only way a client moves from its trusted root r to version
// r.Version+1: raw, the bytes of root/N+1.json, must be signed by a
// threshold of r's root keys (checked before parsing) and, once parsed, by
// a threshold of its own root keys; it must be version r.Version+1 of the
// same app. sigs holds the signature files fetched (by key ID: r's root
// keys, then the new root's). Expiry is not checked here: an intermediate
// root may have expired; the caller checks the newest one (TUF 5.3.10).
func (r *Root) Next(raw []byte, sigs map[string][]byte) (*Root, error) {
	if len(raw) > MaxRootSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, the cap is %d", ErrTooLarge, RootPath(r.Version+1), len(raw), MaxRootSize)
	}
	if err := r.VerifyRole(RoleRoot, raw, sigs); err != nil {
		return nil, fmt.Errorf("%s, by the keys of root %d: %w", RootPath(r.Version+1), r.Version, err)
	}
	n, err := ParseRoot(raw)
	if err != nil {
		return nil, err
	}
	if err := n.VerifyRole(RoleRoot, raw, sigs); err != nil {
		return nil, fmt.Errorf("%s, by its own keys: %w", RootPath(r.Version+1), err)
	}
	if n.App != r.App {
		return nil, fmt.Errorf("%w: %s is for app %q, not %q", ErrWrongApp, RootPath(r.Version+1), n.App, r.App)
	}
	if n.Version != r.Version+1 {
		return nil, fmt.Errorf("%w: %s holds version %d: the repository is inconsistent (or a mirror replays an old root)", ErrRollback, RootPath(r.Version+1), n.Version)
	}
	return n, nil
}

// CheckFresh fails with ErrExpired when the root has expired at now: the
// publisher must issue a new root version (`mkdelta key renew`), or the
// mirror serves a frozen repository.
func (r *Root) CheckFresh(now time.Time) error {
	if !now.Before(r.Expires) {
		return fmt.Errorf("%w: root %d expired at %s (now %s): the mirror serves a frozen repository, or the publisher must renew the root (mkdelta key renew); check the system clock",
			ErrExpired, r.Version, r.Expires.UTC().Format(timeLayout), now.UTC().Format(timeLayout))
	}
	return nil
}

// IndexRef pins a release index from a timestamp: its sequence (the path
// IndexPath(Sequence)), size and SHA-256.
type IndexRef struct {
	Sequence uint64
	Size     int64
	SHA256   [32]byte
}

// Timestamp is a timestamp document.
type Timestamp struct {
	Schema   int    // RolesSchema
	App      string // application name
	Sequence uint64 // grows with every timestamp
	Expires  time.Time
	// Index is the platform-less release index (manifest.json at the
	// repository's top); the zero IndexRef when the repository has
	// platforms only.
	Index IndexRef
	// Platforms names the release index of each platform
	// (PLATFORM/manifests/SEQ.json), by platform name (ValidPlatform); nil
	// or empty when the repository has none. At least one of Index and
	// Platforms is set.
	Platforms map[string]IndexRef
	// Policy, when set, names the release policy (PolicyPath(Sequence)) by
	// sequence, size and SHA-256 (docs/FORMAT.md, "Release policy"): one
	// policy for the whole repository, shared by Index and every platform.
	Policy *IndexRef

	hash [32]byte
}

// ContentHash returns the SHA-256 of the bytes the timestamp was parsed from.
func (t *Timestamp) ContentHash() [32]byte { return t.hash }

type wireIndexRef struct {
	Sequence uint64 `json:"sequence"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
}

type wireTimestamp struct {
	App       string                  `json:"app"`
	Expires   string                  `json:"expires"`
	Index     *wireIndexRef           `json:"index,omitempty"`
	Platforms map[string]wireIndexRef `json:"platforms,omitempty"`
	Policy    *wireIndexRef           `json:"policy,omitempty"`
	Schema    int                     `json:"schema"`
	Sequence  uint64                  `json:"sequence"`
	Type      string                  `json:"type"`
}

func (t *Timestamp) wire() *wireTimestamp {
	w := &wireTimestamp{App: t.App, Expires: t.Expires.UTC().Format(timeLayout), Schema: t.Schema, Sequence: t.Sequence, Type: RoleTimestamp}
	if t.Index != (IndexRef{}) {
		w.Index = &wireIndexRef{Sequence: t.Index.Sequence, SHA256: hexOf(t.Index.SHA256), Size: t.Index.Size}
	}
	if len(t.Platforms) > 0 {
		w.Platforms = map[string]wireIndexRef{}
		for p, ref := range t.Platforms {
			w.Platforms[p] = wireIndexRef{Sequence: ref.Sequence, SHA256: hexOf(ref.SHA256), Size: ref.Size}
		}
	}
	if p := t.Policy; p != nil {
		w.Policy = &wireIndexRef{Sequence: p.Sequence, SHA256: hexOf(p.SHA256), Size: p.Size}
	}
	return w
}

// Validate checks the schema, app name, 1 <= Sequence <= 2^53-1, the
// expiry, and each index reference (sequence in range, 0 < size <=
// MaxManifestSize, a non-zero hash): Index unless it is the zero IndexRef,
// and those of Platforms (checkPlatforms); at least one must be set. The
// Policy reference, when set, needs a sequence in range, 0 < size <=
// MaxPolicySize and a non-zero hash.
func (t *Timestamp) Validate() error {
	if t.Schema != RolesSchema {
		return fmt.Errorf("%w: timestamp schema %d, this package knows %d", ErrSchema, t.Schema, RolesSchema)
	}
	if !validName(t.App) {
		return fmt.Errorf("%w: timestamp: app %q is not a valid name", ErrMalformed, t.App)
	}
	if t.Sequence == 0 || t.Sequence > MaxSafeInteger {
		return fmt.Errorf("%w: timestamp: sequence %d outside 1..2^53-1", ErrMalformed, t.Sequence)
	}
	if err := checkExpiry("timestamp", t.Expires); err != nil {
		return err
	}
	if t.Index == (IndexRef{}) && len(t.Platforms) == 0 {
		return fmt.Errorf("%w: timestamp: names no index: it needs \"index\", \"platforms\" or both", ErrMalformed)
	}
	if t.Index != (IndexRef{}) {
		if err := t.Index.check("index"); err != nil {
			return err
		}
	}
	if err := checkPlatforms(t.Platforms); err != nil {
		return err
	}
	if p := t.Policy; p != nil && (p.Sequence == 0 || p.Sequence > MaxSafeInteger || p.Size <= 0 || p.Size > MaxPolicySize || p.SHA256 == ([32]byte{})) {
		return fmt.Errorf("%w: timestamp: policy reference needs a sequence in 1..2^53-1, a size in 1..%d and a SHA-256", ErrMalformed, MaxPolicySize)
	}
	return nil
}

// check validates one index reference of a timestamp.
func (ix IndexRef) check(what string) error {
	if ix.Sequence == 0 || ix.Sequence > MaxSafeInteger || ix.Size <= 0 || ix.Size > MaxManifestSize || ix.SHA256 == ([32]byte{}) {
		return fmt.Errorf("%w: timestamp: %s reference needs a sequence in 1..2^53-1, a size in 1..%d and a SHA-256", ErrMalformed, what, MaxManifestSize)
	}
	return nil
}

// MarshalTimestamp validates t and returns its canonical bytes.
func MarshalTimestamp(t *Timestamp) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return encodeJSON(t.wire(), MaxTimestampSize)
}

// ParseTimestamp parses timestamp bytes strictly WITHOUT checking a
// signature: for publishers and the fuzzer; clients use OpenTimestamp.
func ParseTimestamp(raw []byte) (*Timestamp, error) {
	var w wireTimestamp
	if err := decodeDoc(RoleTimestamp, raw, MaxTimestampSize, &w); err != nil {
		return nil, err
	}
	if w.Type != RoleTimestamp {
		return nil, fmt.Errorf("%w: type %q, want %q: this is not a timestamp document", ErrMalformed, w.Type, RoleTimestamp)
	}
	t := &Timestamp{Schema: w.Schema, App: w.App, Sequence: w.Sequence}
	var err error
	if t.Expires, err = parseTime("timestamp expires", w.Expires); err != nil {
		return nil, err
	}
	if w.Index != nil {
		t.Index = IndexRef{Sequence: w.Index.Sequence, Size: w.Index.Size}
		if t.Index.SHA256, err = parseHash("timestamp index.sha256", w.Index.SHA256); err != nil {
			return nil, err
		}
		if err := t.Index.check("index"); err != nil {
			return nil, err
		}
	}
	if t.Platforms, err = parsePlatforms(w.Platforms); err != nil {
		return nil, err
	}
	if wp := w.Policy; wp != nil {
		t.Policy = &IndexRef{Sequence: wp.Sequence, Size: wp.Size}
		if t.Policy.SHA256, err = parseHash("timestamp policy.sha256", wp.SHA256); err != nil {
			return nil, err
		}
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	enc, err := encodeJSON(t.wire(), MaxTimestampSize)
	if err != nil {
		return nil, err
	}
	if err := sameBytes(raw, enc); err != nil {
		return nil, fmt.Errorf("timestamp: %w", err)
	}
	t.hash = sha256.Sum256(raw)
	return t, nil
}

// SignTimestamp returns the signature file by priv of the timestamp bytes
// raw, which must parse. Trusted comment: "deltaup timestamp app:APP
// sequence:N index:SEQ sha256:HEX" (index:0 without a platform-less
// index), then " platforms:N" when it names platforms.
func SignTimestamp(priv PrivateKey, raw []byte) ([]byte, error) {
	if !priv.set {
		return nil, errors.New("manifest: SignTimestamp: zero PrivateKey")
	}
	t, err := ParseTimestamp(raw)
	if err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	comment := fmt.Sprintf("deltaup timestamp app:%s sequence:%d index:%d sha256:%x", t.App, t.Sequence, t.Index.Sequence, t.hash)
	if len(t.Platforms) > 0 {
		comment += fmt.Sprintf(" platforms:%d", len(t.Platforms))
	}
	return signBytes(priv, raw, comment), nil
}

// SignIndex returns a signature file by priv of release-index bytes raw
// (as Sign: raw must parse).
func SignIndex(priv PrivateKey, raw []byte) ([]byte, error) { return Sign(priv, raw) }

// TimestampOptions are what a client knows before opening a timestamp.
type TimestampOptions struct {
	App string    // required
	Now time.Time // zero means time.Now()
	// MinSequence is the highest timestamp sequence accepted before under
	// the same timestamp keys; SeenHash, when set, the hash of that
	// timestamp: the same sequence with other bytes is refused.
	MinSequence uint64
	SeenHash    [32]byte
}

// OpenTimestamp checks a timestamp fetched by a client, in order: size
// cap (ErrTooLarge); a threshold of root's timestamp keys over the exact
// bytes, before parsing (ErrSignature); strict parsing (ErrMalformed);
// the app (ErrWrongApp); the sequence against MinSequence/SeenHash
// (ErrRollback); now before Expires (ErrExpired: a frozen mirror).
func OpenTimestamp(raw []byte, sigs map[string][]byte, root *Root, opts TimestampOptions) (*Timestamp, error) {
	if len(raw) > MaxTimestampSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, the cap is %d: the server does not serve a deltaup v2 repository", ErrTooLarge, TimestampName, len(raw), MaxTimestampSize)
	}
	if opts.App == "" {
		return nil, fmt.Errorf("%w: TimestampOptions.App is empty", ErrWrongApp)
	}
	if err := root.VerifyRole(RoleTimestamp, raw, sigs); err != nil {
		return nil, fmt.Errorf("%s: %w", TimestampName, err)
	}
	t, err := ParseTimestamp(raw)
	if err != nil {
		return nil, err
	}
	if t.App != opts.App {
		return nil, fmt.Errorf("%w: the timestamp is for %q, this client updates %q", ErrWrongApp, t.App, opts.App)
	}
	if t.Sequence < opts.MinSequence {
		return nil, fmt.Errorf("%w: timestamp sequence %d is lower than %d, accepted before: a mirror replays an old timestamp; trying another", ErrRollback, t.Sequence, opts.MinSequence)
	}
	if t.Sequence == opts.MinSequence && opts.SeenHash != ([32]byte{}) && t.hash != opts.SeenHash {
		return nil, fmt.Errorf("%w: timestamp sequence %d was accepted before with other content: the timestamp key signed two documents with one sequence (compromised or misused key); report it to the publisher", ErrRollback, t.Sequence)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if !now.Before(t.Expires) {
		return nil, fmt.Errorf("%w: the timestamp expired at %s (now %s): this mirror serves a frozen copy (or the publisher's `mkdelta refresh` job stopped); trying another, check the system clock",
			ErrExpired, t.Expires.UTC().Format(timeLayout), now.UTC().Format(timeLayout))
	}
	return t, nil
}

// OpenIndex checks a release index (manifests/SEQ.json) fetched by a v2
// client against the timestamp's reference ref and root's release keys, in
// order: the exact size and SHA-256 of ref (ErrHashMismatch), before
// anything else; a threshold of the release role's signatures (sigs, by key
// ID; ErrSignature); then every check of Open after the signature (opts:
// app, sequence, expiry), and that the index's sequence is ref.Sequence.
func OpenIndex(raw []byte, sigs map[string][]byte, root *Root, ref IndexRef, opts OpenOptions) (*Manifest, error) {
	if int64(len(raw)) != ref.Size {
		return nil, fmt.Errorf("%w: %s is %d bytes, the timestamp says %d: the mirror serves another index (mix-and-match, or a publish in progress); trying another", ErrHashMismatch, IndexPath(ref.Sequence), len(raw), ref.Size)
	}
	if sha256.Sum256(raw) != ref.SHA256 {
		return nil, fmt.Errorf("%w: %s does not have the SHA-256 the timestamp names: the mirror serves another index; trying another", ErrHashMismatch, IndexPath(ref.Sequence))
	}
	if opts.App == "" {
		return nil, fmt.Errorf("%w: OpenOptions.App is empty", ErrWrongApp)
	}
	if err := root.VerifyRole(RoleRelease, raw, sigs); err != nil {
		return nil, fmt.Errorf("%s: %w", IndexPath(ref.Sequence), err)
	}
	m, err := openVerified(raw, MaxManifestSize, opts)
	if err != nil {
		return nil, err
	}
	if m.Sequence != ref.Sequence {
		return nil, fmt.Errorf("%w: %s holds sequence %d, the timestamp names %d: the repository is inconsistent", ErrMalformed, IndexPath(ref.Sequence), m.Sequence, ref.Sequence)
	}
	return m, nil
}
