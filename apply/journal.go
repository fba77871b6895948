package apply

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deltaup/deltaup/delta"
	"github.com/deltaup/deltaup/internal/tree"
)

// JournalFileName is the swap journal ("need_update" marker) in the backup
// directory; JournalBackupName is its second copy (see Journal).
const (
	JournalFileName   = "need_update"
	JournalBackupName = "need_update.bak"
	journalFormat     = 1
	maxJournalSize    = 256 << 20
)

// Journal errors; each error of this file wraps one of them.
var (
	// ErrJournalCorrupt: neither copy of the journal is complete, parses
	// and matches its checksum (or a field is invalid, e.g. an unsafe path).
	ErrJournalCorrupt = errors.New("apply: swap journal corrupt")
	// ErrJournalState: an operation was asked in a state that does not
	// allow it (e.g. Rollback of a confirmed update).
	ErrJournalState = errors.New("apply: swap journal state")
	// ErrJournalMismatch: the journal was made for other directories than
	// the ones in use (Journal.For); it is refused, never acted on.
	ErrJournalMismatch = errors.New("apply: swap journal is for other directories")
)

// JournalState is the phase of a swap recorded in the journal.
type JournalState string

// Journal states, in order: staged → swapping → swapped → confirmed, or
// from staged, swapping or swapped → rolling-back → rolled-back.
const (
	JournalStaged      JournalState = "staged"
	JournalSwapping    JournalState = "swapping"
	JournalSwapped     JournalState = "swapped"
	JournalConfirmed   JournalState = "confirmed"
	JournalRollingBack JournalState = "rolling-back"
	JournalRolledBack  JournalState = "rolled-back"
)

// OpKind is the kind of a swap operation.
type OpKind string

// Operation kinds. Order in a journal: every OpDisplace, then every
// OpRemove (deepest path first), then every OpMkdir (shallowest first), then
// OpFile and OpSymlink in path order. Removals come first so that a path
// whose type changes (file ↔ dir) is free before the new entry is created.
const (
	// OpDisplace moves an entry that no release installed (a user's file)
	// out of the way of the new release into the displaced area, where it
	// is kept (never deleted by the updater) and reported; a rollback puts
	// it back.
	OpDisplace OpKind = "displace"
	OpRemove   OpKind = "remove"  // move the old entry at Path to the rollback area (empty dirs: delete)
	OpMkdir    OpKind = "mkdir"   // create the directory Path (or set its mode)
	OpFile     OpKind = "file"    // install the staged file Path (old one moved to the rollback area)
	OpSymlink  OpKind = "symlink" // install the symlink Path -> Target (old one moved to the rollback area)
)

// OldEntry is what the old tree had at an operation's path.
type OldEntry struct {
	Type   tree.Type `json:"type"`
	Mode   string    `json:"mode,omitempty"`   // octal, e.g. "0755"
	Size   int64     `json:"size,omitempty"`   // files
	SHA256 string    `json:"sha256,omitempty"` // files, lowercase hex
	Target string    `json:"target,omitempty"` // symlinks
}

// Op is one idempotent, verifiable step of a swap. Whether it is done is
// decided from the disk alone:
//   - OpFile: the app-dir file has SHA256 and Mode;
//   - OpSymlink: the app-dir path is a symlink to Target;
//   - OpMkdir: the app-dir path is a directory with Mode;
//   - OpRemove: the app-dir path is absent.
//
// The old entry (Old, when the old tree had a file or symlink there) is in
// the rollback area at the same relative path iff it was moved.
type Op struct {
	Kind   OpKind    `json:"op"`
	Path   string    `json:"path"`             // relative, slash-separated (tree.CheckPath)
	Mode   string    `json:"mode,omitempty"`   // octal permission bits: files, dirs
	Size   int64     `json:"size,omitempty"`   // files
	SHA256 string    `json:"sha256,omitempty"` // files, lowercase hex
	Target string    `json:"target,omitempty"` // symlinks, slash-separated
	Old    *OldEntry `json:"old,omitempty"`    // the old tree's entry at Path, if any
}

// Journal is the need_update marker: the plan and progress of one swap,
// kept in the backup directory so that a crashed or killed updater can
// finish (or undo) the swap from the disk alone.
//
// On disk it is one JSON object
//
//	{"body":BODY,"sha256":"HEX"}
//
// where BODY is the journal's JSON (the fields below) and HEX the lowercase
// SHA-256 of BODY's exact bytes. Save writes it twice, each time to a
// temporary file that is fsynced, renamed into place and the directory
// fsynced: first need_update.bak, then need_update. Seq grows with every
// Save; LoadJournal returns the valid copy with the highest Seq, and fails
// with ErrJournalCorrupt when neither is valid.
type Journal struct {
	Format    int          `json:"format"` // 1
	Seq       uint64       `json:"seq"`
	AppDir    string       `json:"app_dir"`    // absolute
	BackupDir string       `json:"backup_dir"` // absolute
	From      string       `json:"from"`
	To        string       `json:"to"`
	Staged    string       `json:"staged"`   // absolute: the complete, verified new tree
	Rollback  string       `json:"rollback"` // absolute: where old entries are moved
	OldDigest string       `json:"old_digest,omitempty"`
	NewDigest string       `json:"new_digest"`
	Ops       []Op         `json:"ops"`
	Relaunch  []string     `json:"relaunch,omitempty"` // argv; argv[0] relative to AppDir
	State     JournalState `json:"state"`
	Done      int          `json:"done"` // ops known done (a hint: the disk decides)
	Started   time.Time    `json:"started,omitzero"`
	ConfirmBy time.Time    `json:"confirm_by,omitzero"`
	// Relaunches counts the starts of the new version that Install made
	// for this swap; saved before each start, so that starts that never
	// confirmed (the updater itself killed while waiting, a machine that
	// crashes at each start) are counted too. See MaxRelaunches.
	Relaunches int  `json:"relaunches,omitempty"`
	Recovered  bool `json:"recovered,omitempty"` // rebuilt from the disk after both copies were corrupt
	// Displaced is where OpDisplace keeps the user's entries the new
	// release needed the paths of (absolute, backupDir/displaced/NAME);
	// "" when the plan displaces nothing. Cleanup leaves it in place.
	Displaced string `json:"displaced,omitempty"`
}

func modeString(m fs.FileMode) string { return fmt.Sprintf("%04o", m.Perm()) }

func parseMode(s string) (fs.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("%w: mode %q", ErrJournalCorrupt, s)
	}
	return fs.FileMode(v), nil
}

func oldOf(e tree.Entry) *OldEntry {
	o := &OldEntry{Type: e.Type}
	switch e.Type {
	case tree.File:
		o.Mode, o.Size, o.SHA256 = modeString(e.Mode), e.Size, e.Hex()
	case tree.Dir:
		o.Mode = modeString(e.Mode)
	case tree.Symlink:
		o.Target = e.Target
	}
	return o
}

// unknownVersionDir names the rollback area of an unknown installed version.
const unknownVersionDir = "unknown"

// BuildJournal plans the swap of appDir from the old tree to the new one
// (state "staged", not saved). staged is the directory holding the complete
// new tree, inside backupDir (typically backupDir/staged/TO); the rollback
// area is backupDir/rollback/FROM. relaunch is the command to start after
// the swap (argv[0] relative to appDir), or nil. from is "" when the
// installed tree matches no release (a locally modified app updated from
// the full archive); its rollback area is then backupDir/rollback/unknown
// (no semver version has that name).
//
// oldEntries is the whole app directory as scanned. owned tells which of
// its paths a release installed (the installed release's file list); the
// others are the user's (a settings file, a log, a plugin): they are left
// in place, and a directory of a release that holds one is not removed;
// where the new tree needs the path of a user's entry (or of a directory
// above it), the entry is moved into a displaced area of the backup
// directory (OpDisplace) and kept there, never deleted. owned nil means
// every entry was installed by a release (nothing is the user's).
func BuildJournal(appDir, backupDir, from, to string, oldEntries, newEntries []tree.Entry, staged string, relaunch []string, owned func(path string) bool) (*Journal, error) {
	var err error
	if appDir, err = filepath.Abs(appDir); err != nil {
		return nil, err
	}
	if backupDir, err = filepath.Abs(backupDir); err != nil {
		return nil, err
	}
	if staged, err = filepath.Abs(staged); err != nil {
		return nil, err
	}
	for i, v := range []string{from, to} {
		if i == 0 && v == "" {
			continue // an unknown (locally modified) installed version
		}
		if err := tree.CheckPath(v); err != nil || strings.Contains(v, "/") {
			return nil, fmt.Errorf("apply: version %q is not usable as a directory name", v)
		}
	}
	rollbackName := from
	if from == "" {
		rollbackName = unknownVersionDir
	}
	if staged != filepath.Join(backupDir, stagingDir, to) {
		return nil, fmt.Errorf("apply: staged tree %s is not %s in the backup directory %s", staged, path.Join(stagingDir, to), backupDir)
	}
	if isWithin(appDir, backupDir) || isWithin(backupDir, appDir) {
		return nil, fmt.Errorf("apply: app directory %s and backup directory %s overlap", appDir, backupDir)
	}
	if len(relaunch) > 0 {
		if _, err := relaunchPath(appDir, relaunch[0]); err != nil {
			return nil, err
		}
	}
	if err := tree.CheckEntries(oldEntries); err != nil {
		return nil, fmt.Errorf("apply: old tree: %w", err)
	}
	if err := tree.CheckEntries(newEntries); err != nil {
		return nil, fmt.Errorf("apply: new tree: %w", err)
	}
	olds := make(map[string]tree.Entry, len(oldEntries))
	for _, e := range oldEntries {
		olds[e.Path] = e
	}
	news := make(map[string]tree.Entry, len(newEntries))
	for _, e := range newEntries {
		if e.Type == tree.File && e.SHA256 == ([32]byte{}) {
			return nil, fmt.Errorf("apply: new tree: %s has no SHA-256", e.Path)
		}
		news[e.Path] = e
	}
	j := &Journal{
		Format: journalFormat, AppDir: appDir, BackupDir: backupDir, From: from, To: to,
		Staged: staged, Rollback: filepath.Join(backupDir, "rollback", rollbackName),
		Relaunch: slices.Clone(relaunch), State: JournalStaged,
	}
	nd := tree.Digest(newEntries)
	j.NewDigest = hex.EncodeToString(nd[:])
	if oldEntries != nil {
		od := tree.Digest(oldEntries)
		j.OldDigest = hex.EncodeToString(od[:])
	}
	keep := planUserEntries(j, oldEntries, olds, news, owned)
	// Removals: old entries absent from the new tree or whose type changes.
	var removes []Op
	for _, e := range oldEntries {
		if _, ok := olds[e.Path]; !ok || keep[e.Path] {
			continue // the user's, or a directory holding a user's entry
		}
		if n, ok := news[e.Path]; ok && (n.Type == e.Type || (n.Type != tree.Dir && e.Type != tree.Dir)) {
			continue // same kind (file/symlink swap within the op itself)
		}
		removes = append(removes, Op{Kind: OpRemove, Path: e.Path, Old: oldOf(e)})
	}
	slices.SortFunc(removes, func(a, b Op) int { return strings.Compare(b.Path, a.Path) }) // children before parents
	j.Ops = append(j.Ops, removes...)
	sortedNew := slices.Clone(newEntries)
	tree.Sort(sortedNew)
	var files []Op
	for _, e := range sortedNew {
		o, had := olds[e.Path]
		var old *OldEntry
		if had {
			old = oldOf(o)
		}
		switch e.Type {
		case tree.Dir:
			if had && o.Type == tree.Dir && (o.Mode == e.Mode) {
				continue
			}
			j.Ops = append(j.Ops, Op{Kind: OpMkdir, Path: e.Path, Mode: modeString(e.Mode), Old: old})
		case tree.File:
			if had && o.Type == tree.File && o.Mode == e.Mode && o.SHA256 == e.SHA256 && o.Size == e.Size {
				continue
			}
			files = append(files, Op{Kind: OpFile, Path: e.Path, Mode: modeString(e.Mode), Size: e.Size, SHA256: e.Hex(), Old: old})
		case tree.Symlink:
			if had && o.Type == tree.Symlink && o.Target == e.Target {
				continue
			}
			files = append(files, Op{Kind: OpSymlink, Path: e.Path, Target: e.Target, Old: old})
		}
	}
	j.Ops = append(j.Ops, files...)
	return j, nil
}

// planUserEntries sorts the old entries no release installed (owned false)
// into those left in place and those in the new tree's way, which get an
// OpDisplace each (the topmost only: a displaced directory takes its
// contents along) and j.Displaced. Both leave olds, so that nothing else is
// planned for them; a user's directory where the new tree has a directory
// stays in olds (it becomes the release's directory, its contents stay the
// user's). It returns the directories that hold an entry left in place:
// they are not removed.
func planUserEntries(j *Journal, oldEntries []tree.Entry, olds, news map[string]tree.Entry, owned func(string) bool) map[string]bool {
	keep := map[string]bool{}
	if owned == nil {
		return keep
	}
	inWay := func(e tree.Entry) bool {
		if n, ok := news[e.Path]; ok {
			return n.Type != tree.Dir || e.Type != tree.Dir
		}
		for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
			if n, ok := news[d]; ok && n.Type != tree.Dir {
				return true
			}
		}
		return false
	}
	sorted := slices.Clone(oldEntries)
	slices.SortFunc(sorted, func(a, b tree.Entry) int { return strings.Compare(a.Path, b.Path) })
	var moved []string // displaced directories: their contents go along
	for _, e := range sorted {
		if owned(e.Path) {
			continue
		}
		if slices.ContainsFunc(moved, func(m string) bool { return strings.HasPrefix(e.Path, m+"/") }) {
			delete(olds, e.Path)
			continue
		}
		if inWay(e) {
			j.Ops = append(j.Ops, Op{Kind: OpDisplace, Path: e.Path, Old: oldOf(e)})
			if e.Type == tree.Dir {
				moved = append(moved, e.Path)
			}
			delete(olds, e.Path)
			continue
		}
		if n, ok := news[e.Path]; ok && n.Type == tree.Dir && e.Type == tree.Dir {
			continue
		}
		delete(olds, e.Path)
		for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
			keep[d] = true
		}
	}
	if len(j.Ops) > 0 {
		j.Displaced = filepath.Join(displacedDir(j.BackupDir), j.To+"-"+time.Now().UTC().Format("20060102T150405.000000000Z"))
	}
	return keep
}

// isWithin reports whether p is dir or inside it (both absolute, clean).
func isWithin(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)))
}

// For checks that the journal was made for the application directory
// appDir and the backup directory backupDir in use (the same directories,
// also through links), and that appDir is still a real directory: a
// journal naming any other directory (planted, or copied from elsewhere)
// is refused with ErrJournalMismatch and nothing is touched.
func (j *Journal) For(appDir, backupDir string) error {
	a, err := filepath.Abs(appDir)
	if err != nil {
		return err
	}
	b, err := filepath.Abs(backupDir)
	if err != nil {
		return err
	}
	if !sameDir(j.AppDir, a) || !sameDir(j.BackupDir, b) {
		return fmt.Errorf("%w: %s names the application directory %s and the backup directory %s, not %s and %s in use: refusing to act on it; if no update of %s is pending, remove %s and %s",
			ErrJournalMismatch, filepath.Join(b, JournalFileName), j.AppDir, j.BackupDir, a, b, a, filepath.Join(b, JournalFileName), filepath.Join(b, JournalBackupName))
	}
	return checkRealAppDir(j.AppDir)
}

// checkRealAppDir refuses an application directory that is a symbolic
// link (replaced by one since the plan was made, say) or not a directory.
func checkRealAppDir(dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		real, _ := filepath.EvalSymlinks(dir)
		return fmt.Errorf("%w: %s is a symbolic link (to %s): the updater writes only into a real directory; use --app-dir %s", ErrUnsafeAppDir, dir, real, real)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory", ErrUnsafeAppDir, dir)
	}
	return nil
}

// Path returns the journal's file path.
func (j *Journal) Path() string { return filepath.Join(j.BackupDir, JournalFileName) }

// Save writes the journal (Seq incremented) atomically, in both copies.
func (j *Journal) Save() error {
	j.Seq++
	body, err := json.Marshal(j)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	var buf bytes.Buffer
	buf.WriteString(`{"body":`)
	buf.Write(body)
	buf.WriteString(`,"sha256":"`)
	buf.WriteString(hex.EncodeToString(sum[:]))
	buf.WriteString("\"}\n")
	if err := os.MkdirAll(j.BackupDir, 0o700); err != nil {
		return err
	}
	for _, name := range []string{JournalBackupName, JournalFileName} {
		err := delta.WriteFileAtomic(filepath.Join(j.BackupDir, name), 0o644, func(w io.Writer) error {
			_, err := w.Write(buf.Bytes())
			return err
		})
		if err != nil {
			return fmt.Errorf("apply: saving the swap journal: %w", err)
		}
	}
	return nil
}

// LoadJournal reads the journal of backupDir: the valid copy with the
// highest Seq. No journal at all: an error wrapping fs.ErrNotExist. A
// journal present but with no valid copy: ErrJournalCorrupt.
func LoadJournal(backupDir string) (*Journal, error) {
	abs, err := filepath.Abs(backupDir)
	if err != nil {
		return nil, err
	}
	var best *Journal
	var firstErr error
	found := false
	for _, name := range []string{JournalFileName, JournalBackupName} {
		j, err := readJournal(filepath.Join(abs, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		found = true
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if best == nil || j.Seq > best.Seq {
			best = j
		}
	}
	if !found {
		return nil, fmt.Errorf("apply: no swap journal in %s: %w", abs, fs.ErrNotExist)
	}
	if best == nil {
		return nil, firstErr
	}
	return best, nil
}

func readJournal(p string) (*Journal, error) {
	f, err := openNoFollow(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxJournalSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrJournalCorrupt, p, err)
	}
	if len(raw) > maxJournalSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrJournalCorrupt, p, maxJournalSize)
	}
	var outer struct {
		Body   json.RawMessage `json:"body"`
		SHA256 string          `json:"sha256"`
	}
	if err := json.Unmarshal(raw, &outer); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrJournalCorrupt, p, err)
	}
	sum := sha256.Sum256(outer.Body)
	if hex.EncodeToString(sum[:]) != outer.SHA256 {
		return nil, fmt.Errorf("%w: %s: checksum mismatch", ErrJournalCorrupt, p)
	}
	j := new(Journal)
	dec := json.NewDecoder(bytes.NewReader(outer.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(j); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrJournalCorrupt, p, err)
	}
	if err := j.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return j, nil
}

// check validates a loaded journal: paths safe and inside their roots.
func (j *Journal) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrJournalCorrupt}, a...)...)
	}
	if j.Format != journalFormat {
		return bad("format %d", j.Format)
	}
	for _, p := range []string{j.AppDir, j.BackupDir, j.Staged, j.Rollback} {
		if !filepath.IsAbs(p) {
			return bad("path %q is not absolute", p)
		}
	}
	if isWithin(j.AppDir, j.BackupDir) || isWithin(j.BackupDir, j.AppDir) {
		return bad("directories overlap")
	}
	rbName := j.From
	if rbName == "" {
		rbName = unknownVersionDir
	}
	if j.Staged != filepath.Join(j.BackupDir, stagingDir, j.To) || j.Rollback != filepath.Join(j.BackupDir, "rollback", rbName) {
		return bad("staged tree %s or rollback area %s is not where the updater puts them in %s", j.Staged, j.Rollback, j.BackupDir)
	}
	if j.Displaced != "" && (filepath.Dir(j.Displaced) != displacedDir(j.BackupDir) || tree.CheckPath(filepath.Base(j.Displaced)) != nil) {
		return bad("displaced area %s is not in %s", j.Displaced, displacedDir(j.BackupDir))
	}
	switch j.State {
	case JournalStaged, JournalSwapping, JournalSwapped, JournalConfirmed, JournalRollingBack, JournalRolledBack:
	default:
		return bad("state %q", j.State)
	}
	if j.Done < 0 || j.Done > len(j.Ops) {
		return bad("done %d of %d ops", j.Done, len(j.Ops))
	}
	for _, op := range j.Ops {
		if err := tree.CheckPath(op.Path); err != nil {
			return bad("%v", err)
		}
		switch op.Kind {
		case OpRemove, OpDisplace:
			if op.Old == nil {
				return bad("%s %s without old entry", op.Kind, op.Path)
			}
			if op.Kind == OpDisplace && j.Displaced == "" {
				return bad("displace %s without a displaced area", op.Path)
			}
		case OpMkdir, OpFile:
			if _, err := parseMode(op.Mode); err != nil {
				return err
			}
			if op.Kind == OpFile {
				if b, err := hex.DecodeString(op.SHA256); err != nil || len(b) != 32 {
					return bad("sha256 of %s", op.Path)
				}
			}
		case OpSymlink:
			if err := tree.CheckLink(op.Path, op.Target); err != nil {
				return bad("%v", err)
			}
		default:
			return bad("op %q", op.Kind)
		}
		if op.Old != nil && op.Old.Mode != "" {
			if _, err := parseMode(op.Old.Mode); err != nil {
				return err
			}
		}
	}
	if len(j.Relaunch) > 0 {
		if _, err := relaunchPath(j.AppDir, j.Relaunch[0]); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// removeJournal deletes both copies (the primary last).
func removeJournal(fsys FS, backupDir string) error {
	for _, name := range []string{JournalBackupName, JournalFileName} {
		if err := fsys.Remove(filepath.Join(backupDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return fsys.SyncDir(backupDir)
}

// displacedDir is the parent of every displaced area of backupDir.
func displacedDir(backupDir string) string { return filepath.Join(backupDir, "displaced") }

// Displacements lists the entries the plan moves (or moved) out of the new
// release's way into j.Displaced, as slash-separated paths relative to the
// app directory.
func (j *Journal) Displacements() []string {
	var out []string
	for _, op := range j.Ops {
		if op.Kind == OpDisplace {
			out = append(out, op.Path)
		}
	}
	return out
}
