package manifest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"

	"aead.dev/minisign"
)

// Keys and signatures are those of minisign (https://jedisct1.github.io/minisign/),
// through aead.dev/minisign: the files this package writes are read by the
// minisign CLI and the other way round. Signatures are always the prehashed
// kind (algorithm "ED", BLAKE2b-512 of the file), the CLI's default since
// 0.10, so clients may verify with `minisign -V -H`.

// PublicKey is a trusted minisign public key. Its zero value is unusable:
// Open and Verify refuse it.
type PublicKey struct {
	k   minisign.PublicKey
	set bool
}

// ParsePublicKey reads a public key from the contents of a minisign .pub
// file (an "untrusted comment:" line, then the base64 key) or from the bare
// base64 string that `minisign -P` takes.
func ParsePublicKey(text []byte) (PublicKey, error) {
	var k minisign.PublicKey
	if err := k.UnmarshalText(bytes.TrimSpace(text)); err != nil {
		return PublicKey{}, fmt.Errorf("manifest: not a minisign public key: %v", err)
	}
	return PublicKey{k: k, set: true}, nil
}

// ID returns the key ID as the minisign CLI prints it: 16 uppercase hex
// digits.
func (p PublicKey) ID() string { return fmt.Sprintf("%016X", p.k.ID()) }

// String returns the base64 form of the key (what `minisign -P` takes).
func (p PublicKey) String() string { return p.k.String() }

// MarshalText returns the contents of a .pub file for the key.
func (p PublicKey) MarshalText() ([]byte, error) {
	return []byte("untrusted comment: minisign public key " + p.ID() + "\n" + p.k.String() + "\n"), nil
}

// Equal reports whether p and q are the same key.
func (p PublicKey) Equal(q PublicKey) bool { return p.set == q.set && p.k.Equal(q.k) }

// PrivateKey is a minisign secret key, decrypted in memory.
type PrivateKey struct {
	k   minisign.PrivateKey
	set bool
}

// ParsePrivateKey reads the contents of a minisign secret key file. An
// encrypted key (the CLI's default) needs its password; an unencrypted one
// (`minisign -G -W`, or GenerateKey(nil)) needs password nil.
//
// Cost of an encrypted key: scrypt with the key's own parameters, which
// for keys made by the CLI or GenerateKey means 1 GiB of memory and a few
// seconds of CPU.
func ParsePrivateKey(text, password []byte) (PrivateKey, error) {
	var k minisign.PrivateKey
	switch {
	case minisign.IsEncrypted(text) && password == nil:
		return PrivateKey{}, errors.New("manifest: the secret key is encrypted: give its password")
	case minisign.IsEncrypted(text):
		var err error
		if k, err = minisign.DecryptKey(string(password), text); err != nil {
			return PrivateKey{}, fmt.Errorf("manifest: cannot decrypt the secret key (wrong password?): %v", err)
		}
	default:
		if password != nil {
			return PrivateKey{}, errors.New("manifest: the secret key is not encrypted, but a password was given")
		}
		if err := k.UnmarshalText(text); err != nil {
			return PrivateKey{}, fmt.Errorf("manifest: not a minisign secret key: %v", err)
		}
	}
	return PrivateKey{k: k, set: true}, nil
}

// Public returns the public half of k.
func (k PrivateKey) Public() PublicKey {
	return PublicKey{k: k.k.Public().(minisign.PublicKey), set: k.set}
}

// GenerateKey creates a key pair and returns the contents of its two files,
// BASE.pub and BASE.key, in the minisign CLI's formats. With password nil
// the secret key is stored unencrypted, byte for byte as `minisign -G -W`
// stores it (KDF "\0\0", zero salt and checksum); otherwise it is
// encrypted as the CLI does (scrypt, 1 GiB of memory and a few seconds,
// here and on every use). An empty non-nil password is refused.
func GenerateKey(password []byte) (pubFile, keyFile []byte, err error) {
	if password != nil && len(password) == 0 {
		return nil, nil, errors.New("manifest: empty password: pass nil for an unencrypted key")
	}
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if password == nil {
		keyFile, err = priv.MarshalText()
	} else {
		keyFile, err = minisign.EncryptKey(string(password), priv)
	}
	if err != nil {
		return nil, nil, err
	}
	pubFile, _ = PublicKey{k: pub, set: true}.MarshalText()
	return pubFile, append(keyFile, '\n'), nil
}

// WriteKeyFiles generates a key pair (as GenerateKey) and writes BASE.key
// (mode 0600) and BASE.pub (0644). It refuses to overwrite either file.
func WriteKeyFiles(base string, password []byte) (PublicKey, error) {
	pubFile, keyFile, err := GenerateKey(password)
	if err != nil {
		return PublicKey{}, err
	}
	pub, err := ParsePublicKey(pubFile)
	if err != nil {
		return PublicKey{}, err
	}
	if err := writeNew(base+".key", keyFile, 0o600); err != nil {
		return PublicKey{}, err
	}
	if err := writeNew(base+".pub", pubFile, 0o644); err != nil {
		os.Remove(base + ".key")
		return PublicKey{}, err
	}
	return pub, nil
}

func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return err
	}
	return nil
}

// Sign returns the contents of manifest.json.minisig for the manifest bytes
// raw, which must parse (ParseUnverified: canonical and valid). The trusted
// comment, signed too and printed by `minisign -V`, reads
//
//	deltaup manifest app:APP sequence:N issued:TIME sha256:HEX
//
// where HEX is the SHA-256 of raw (Manifest.ContentHash). Signatures are
// deterministic: the same key and bytes give the same file. Cost: one
// BLAKE2b-512 pass over raw and two Ed25519 signatures.
func Sign(priv PrivateKey, raw []byte) ([]byte, error) {
	if !priv.set {
		return nil, errors.New("manifest: Sign: zero PrivateKey")
	}
	m, err := ParseUnverified(raw)
	if err != nil {
		return nil, fmt.Errorf("refusing to sign: %w", err)
	}
	return signBytes(priv, raw, trustedComment(m)), nil
}

func trustedComment(m *Manifest) string {
	return fmt.Sprintf("deltaup manifest app:%s sequence:%d issued:%s sha256:%x",
		m.App, m.Sequence, m.Issued.UTC().Format(timeLayout), m.ContentHash())
}

// signBytes signs msg, prehashed, with the given trusted comment.
func signBytes(priv PrivateKey, msg []byte, trusted string) []byte {
	r := minisign.NewReader(bytes.NewReader(msg))
	io.Copy(io.Discard, r) // a bytes.Reader does not fail
	return r.SignWithComments(priv.k, trusted, "signature from deltaup manifest key "+priv.Public().ID())
}

// Verify checks that sig, the contents of a .minisig file, is a prehashed
// minisign signature of msg by pub, trusted comment included, and returns
// the trusted comment. Every failure wraps ErrSignature: an empty or
// oversized (MaxSignatureSize) file, a malformed one, a legacy signature
// (re-sign without `minisign -l`), another key's, or one that does not
// match msg. Cost: one BLAKE2b-512 pass over msg and two Ed25519
// verifications.
func Verify(pub PublicKey, msg, sig []byte) (string, error) {
	if !pub.set {
		return "", fmt.Errorf("%w: no trusted public key configured", ErrSignature)
	}
	if len(sig) == 0 {
		return "", fmt.Errorf("%w: the signature file is empty or missing: fetch %s next to %s", ErrSignature, SignatureName, ManifestName)
	}
	if len(sig) > MaxSignatureSize {
		return "", fmt.Errorf("%w: the signature file is %d bytes, more than the %d-byte cap: it is not a minisign signature", ErrSignature, len(sig), MaxSignatureSize)
	}
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return "", fmt.Errorf("%w: not a minisign signature file (truncated or damaged?): %v", ErrSignature, err)
	}
	if s.Algorithm != minisign.HashEdDSA {
		return "", fmt.Errorf("%w: legacy (non-prehashed) minisign signature: the publisher must sign without -l", ErrSignature)
	}
	if s.KeyID != pub.k.ID() {
		return "", fmt.Errorf("%w: signed by key %016X, but the trusted key is %s: the repository is signed by someone else (or its key changed); do not use it", ErrSignature, s.KeyID, pub.ID())
	}
	if !minisign.Verify(pub.k, msg, sig) {
		return "", fmt.Errorf("%w: the signature by key %s does not match these bytes (or its trusted comment was altered): the manifest was modified or belongs to another signature; do not use it", ErrSignature, pub.ID())
	}
	return s.TrustedComment, nil
}
