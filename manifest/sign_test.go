package manifest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"
)

func TestKeys(t *testing.T) {
	pubFile, keyFile, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pubFile), "untrusted comment: minisign public key ") || !strings.HasSuffix(string(keyFile), "\n") {
		t.Errorf("key files:\n%s\n%s", pubFile, keyFile)
	}
	pub, err := ParsePublicKey(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !priv.Public().Equal(pub) {
		t.Fatal("public halves differ")
	}
	if len(pub.ID()) != 16 || !strings.Contains(string(pubFile), pub.ID()) {
		t.Errorf("ID %q not in %q", pub.ID(), pubFile)
	}
	// The bare base64 form, as `minisign -P` takes it.
	bare, err := ParsePublicKey([]byte(pub.String()))
	if err != nil || !bare.Equal(pub) {
		t.Fatalf("bare key: %v", err)
	}
	if _, err := ParsePrivateKey(keyFile, []byte("pw")); err == nil {
		t.Error("password accepted for an unencrypted key")
	}
	if _, _, err := GenerateKey([]byte{}); err == nil {
		t.Error("empty password accepted")
	}
	for _, bad := range []string{"", "untrusted comment: x\n", "RWQ=", "untrusted comment: x\nnot base64!"} {
		if _, err := ParsePublicKey([]byte(bad)); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
		if _, err := ParsePrivateKey([]byte(bad), nil); err == nil {
			t.Errorf("ParsePrivateKey(%q) accepted", bad)
		}
	}
	// The secret key file is in the unencrypted layout of `minisign -G -W`.
	var k minisign.PrivateKey
	if err := k.UnmarshalText(keyFile); err != nil || minisign.IsEncrypted(keyFile) {
		t.Fatalf("library does not read it as unencrypted: %v", err)
	}

	dir := t.TempDir()
	base := filepath.Join(dir, "release")
	wpub, err := WriteKeyFiles(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(base + ".key"); err != nil || st.Mode().Perm()&0o077 != 0 && !isWindows() {
		t.Errorf("key file mode: %v %v", st.Mode(), err)
	}
	b, _ := os.ReadFile(base + ".pub")
	if p, err := ParsePublicKey(b); err != nil || !p.Equal(wpub) {
		t.Errorf("written pub: %v", err)
	}
	if _, err := WriteKeyFiles(base, nil); err == nil {
		t.Error("WriteKeyFiles overwrote existing files")
	}
}

func TestEncryptedKey(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: an encrypted key costs 1 GiB of memory and seconds of scrypt per use")
	}
	t.Parallel()
	pubFile, keyFile, err := GenerateKey([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !minisign.IsEncrypted(keyFile) {
		t.Fatal("key not encrypted")
	}
	if _, err := ParsePrivateKey(keyFile, nil); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("no password: %v", err)
	}
	priv, err := ParsePrivateKey(keyFile, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ParsePublicKey(pubFile)
	raw := readTestdata(t, "golden.json")
	sig, err := Sign(priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(raw, sig, pub, openOpts()); err != nil {
		t.Fatal(err)
	}

	// The CLI takes our encrypted key (password on stdin) and verifies
	// with our public key.
	cli := minisignCLI(t)
	dir := t.TempDir()
	write(t, dir, "k.key", keyFile)
	write(t, dir, "k.pub", pubFile)
	write(t, dir, ManifestName, raw)
	cli.run(t, dir, "correct horse\n", "-S", "-s", "k.key", "-m", ManifestName)
	cli.run(t, dir, "", "-V", "-H", "-p", "k.pub", "-m", ManifestName)
	cliSig, _ := os.ReadFile(filepath.Join(dir, SignatureName))
	if _, err := Open(raw, cliSig, pub, openOpts()); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyReturnsComment(t *testing.T) {
	priv, pub := testKeys(t)
	msg := []byte("any bytes at all")
	sig := signBytes(priv, msg, "hello comment")
	c, err := Verify(pub, msg, sig)
	if err != nil || c != "hello comment" {
		t.Fatalf("Verify = %q, %v", c, err)
	}
	// CRLF line endings (a signature file that went through a Windows
	// checkout) still verify: the signed comment has no CR.
	crlf := bytes.ReplaceAll(sig, []byte("\n"), []byte("\r\n"))
	if c, err := Verify(pub, msg, crlf); err != nil || c != "hello comment" {
		t.Errorf("CRLF: %q, %v", c, err)
	}
	if _, err := Verify(pub, append(bytes.Clone(msg), 'x'), sig); !errors.Is(err, ErrSignature) {
		t.Errorf("other bytes: %v", err)
	}
}

// minisign CLI interop.

type minisignTool struct{ path string }

func minisignCLI(t *testing.T) minisignTool {
	t.Helper()
	p, err := exec.LookPath("minisign")
	if err != nil {
		t.Skip("minisign CLI not found in PATH: skipping interop (install it, e.g. apt-get install minisign, to run this test)")
	}
	return minisignTool{p}
}

func (m minisignTool) run(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	out, err := m.try(dir, stdin, args...)
	if err != nil {
		t.Fatalf("minisign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (m minisignTool) try(dir, stdin string, args ...string) (string, error) {
	cmd := exec.Command(m.path, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "HOME="+dir) // never touch ~/.minisign
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCLIVerifiesOurs: the stock CLI verifies the committed golden pair with
// the committed test key, exactly as the docs tell users to.
func TestCLIVerifiesOurs(t *testing.T) {
	cli := minisignCLI(t)
	dir := t.TempDir()
	raw := readTestdata(t, "golden.json")
	write(t, dir, ManifestName, raw)
	write(t, dir, SignatureName, readTestdata(t, "golden.json.minisig"))
	write(t, dir, "test.pub", readTestdata(t, "test.pub"))
	out := cli.run(t, dir, "", "-Vm", ManifestName, "-p", "test.pub")
	if !strings.Contains(out, "Trusted comment: deltaup manifest app:demo sequence:7") {
		t.Errorf("CLI output: %s", out)
	}
	cli.run(t, dir, "", "-V", "-H", "-m", ManifestName, "-p", "test.pub")
	_, pub := testKeys(t)
	cli.run(t, dir, "", "-V", "-m", ManifestName, "-P", pub.String())

	// A fresh key of ours: the CLI reads our .pub and signs with our
	// unencrypted .key; we verify what it signed.
	pubFile, keyFile, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "fresh.pub", pubFile)
	write(t, dir, "fresh.key", keyFile)
	priv, _ := ParsePrivateKey(keyFile, nil)
	fpub, _ := ParsePublicKey(pubFile)
	sig, err := Sign(priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, SignatureName, sig)
	cli.run(t, dir, "", "-V", "-H", "-m", ManifestName, "-p", "fresh.pub")

	write(t, dir, "note.txt", []byte("signed by the CLI with our key\n"))
	cli.run(t, dir, "", "-S", "-s", "fresh.key", "-m", "note.txt", "-t", "cli-made")
	cliSig, _ := os.ReadFile(filepath.Join(dir, "note.txt.minisig"))
	if c, err := Verify(fpub, []byte("signed by the CLI with our key\n"), cliSig); err != nil || c != "cli-made" {
		t.Errorf("Verify of CLI signature made with our key: %q, %v", c, err)
	}

	// A tampered manifest fails in the CLI too.
	write(t, dir, ManifestName, bytes.Replace(raw, []byte(`"sequence":7`), []byte(`"sequence":8`), 1))
	if out, err := cli.try(dir, "", "-V", "-m", ManifestName, "-p", "fresh.pub"); err == nil {
		t.Errorf("CLI accepted a tampered manifest: %s", out)
	}
}

// TestWeVerifyCLI: a key pair and signatures made by the CLI work here.
func TestWeVerifyCLI(t *testing.T) {
	cli := minisignCLI(t)
	dir := t.TempDir()
	cli.run(t, dir, "", "-G", "-W", "-p", "cli.pub", "-s", "cli.key")
	pubFile, _ := os.ReadFile(filepath.Join(dir, "cli.pub"))
	keyFile, _ := os.ReadFile(filepath.Join(dir, "cli.key"))
	pub, err := ParsePublicKey(pubFile)
	if err != nil {
		t.Fatal(err)
	}

	// The CLI signs a manifest we marshalled; Open accepts it.
	raw, err := Marshal(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, ManifestName, raw)
	cli.run(t, dir, "", "-S", "-s", "cli.key", "-m", ManifestName, "-t", "published by the CLI")
	sig, _ := os.ReadFile(filepath.Join(dir, SignatureName))
	m, err := Open(raw, sig, pub, openOpts())
	if err != nil {
		t.Fatal(err)
	}
	if m.Sequence != 7 {
		t.Errorf("sequence %d", m.Sequence)
	}
	if c, err := Verify(pub, raw, sig); err != nil || c != "published by the CLI" {
		t.Errorf("trusted comment %q, %v", c, err)
	}
	// The CLI's default trusted comment works as well.
	cli.run(t, dir, "", "-S", "-s", "cli.key", "-m", ManifestName)
	sig, _ = os.ReadFile(filepath.Join(dir, SignatureName))
	if _, err := Open(raw, sig, pub, openOpts()); err != nil {
		t.Fatal(err)
	}
	// Its key under another trusted key: refused.
	_, other := testKeys(t)
	if _, err := Open(raw, sig, other, openOpts()); !errors.Is(err, ErrSignature) {
		t.Errorf("other key: %v", err)
	}

	// Legacy signatures (-l) are refused here, as by `minisign -V -H`.
	cli.run(t, dir, "", "-S", "-l", "-s", "cli.key", "-m", ManifestName)
	sig, _ = os.ReadFile(filepath.Join(dir, SignatureName))
	if _, err := Open(raw, sig, pub, openOpts()); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "legacy") {
		t.Errorf("legacy signature: %v", err)
	}
	if _, err := cli.try(dir, "", "-V", "-H", "-m", ManifestName, "-p", "cli.pub"); err == nil {
		t.Error("minisign -V -H accepted a legacy signature")
	}

	// We sign with the CLI's secret key; the CLI verifies.
	priv, err := ParsePrivateKey(keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !priv.Public().Equal(pub) {
		t.Fatal("CLI key pair halves differ here")
	}
	sig, err = Sign(priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, SignatureName, sig)
	cli.run(t, dir, "", "-V", "-H", "-m", ManifestName, "-p", "cli.pub")
}
