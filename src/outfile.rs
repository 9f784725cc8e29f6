//! Report files that never clobber what they should not.
//!
//! A report replaced atomically (written beside the target and renamed over it) is what cron
//! readers want from a regular file, and exactly wrong for anything else: renaming over
//! `/dev/null` as root turns the device into a file, over a FIFO cuts off its reader, over a
//! symlink replaces the link. So the kind of file at the path decides:
//!
//! | at the path                         | written how                                          |
//! |-------------------------------------|------------------------------------------------------|
//! | nothing, or a regular file          | temporary file beside it, renamed over it at the end (keeps the old file's mode and owner) |
//! | a symlink                           | the same, at the link's final target (the link stays) |
//! | a device, FIFO or socket; `/dev/*`, `/proc/*` | opened and written in place, never renamed or truncated |
//! | a directory                         | refused                                              |
//!
//! JSONL files are written in place (a line at a time, `--append` adds to them).

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Write};

/// The report's write buffer: records of a fast scan are ~2 KB, and the scan flushes whenever it
/// waits for the next one (and every 100 ms while they pour in), so a bigger buffer saves
/// write(2) calls without holding a record back (issue 14).
const REPORT_BUFFER: usize = 64 << 10;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Symlinks followed before giving up (as the kernel's ELOOP).
const MAX_LINKS: usize = 40;

/// An opened report destination; [`OutFile::commit`] makes it final.
pub enum OutFile {
    Stdout,
    InPlace,
    Atomic {
        tmp: tempfile::NamedTempFile,
        path: PathBuf,
    },
}

/// True for paths that name a stream rather than a file: devices, FIFOs, sockets, and the
/// `/dev/stdout`-style names (which point at whatever the shell connected, even a regular file
/// that must not be renamed over).
pub fn is_stream(path: &Path) -> bool {
    if path.starts_with("/dev") || path.starts_with("/proc") {
        return true;
    }
    std::fs::metadata(path).is_ok_and(|m| is_special(&m))
}

fn is_special(m: &Metadata) -> bool {
    !m.is_file() && !m.is_dir()
}

/// Follows symlinks to the path a rename must replace (the link's final target, which may not
/// exist yet).
fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// Opens `path` (standard output when `None`) for a report. `atomic` asks for the
/// write-then-rename treatment where the path allows it (CSV and JSON documents); otherwise the
/// file is written in place, appended to when `append`.
pub fn open(
    path: Option<&Path>,
    atomic: bool,
    append: bool,
    interrupted: &dyn Fn() -> bool,
) -> anyhow::Result<(OutFile, Box<dyn Write + Send>)> {
    let Some(p) = path else {
        return Ok((
            OutFile::Stdout,
            Box::new(BufWriter::with_capacity(REPORT_BUFFER, io::stdout())),
        ));
    };
    let context = || format!("cannot create output file {}", p.display());
    let existing = std::fs::metadata(p).ok();
    if existing.as_ref().is_some_and(Metadata::is_dir) {
        anyhow::bail!(
            "cannot write the report to {}: it is a directory",
            p.display()
        );
    }
    if is_stream(p) {
        // Never created, truncated or renamed: write to whatever is there. Opening a FIFO
        // blocks until a reader comes; an interrupt meanwhile must still end the run.
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = p.to_path_buf();
        std::thread::Builder::new()
            .name("open-output".into())
            .spawn(move || {
                let _ = tx.send(OpenOptions::new().append(true).open(owned));
            })?;
        let f = loop {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(r) => break r.with_context(context)?,
                Err(_) if interrupted() => return Err(crate::Interrupted.into()),
                Err(_) => {}
            }
        };
        return Ok((
            OutFile::InPlace,
            Box::new(BufWriter::with_capacity(REPORT_BUFFER, f)),
        ));
    }
    if !atomic {
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(p)
            .with_context(context)?;
        return Ok((
            OutFile::InPlace,
            Box::new(BufWriter::with_capacity(REPORT_BUFFER, f)),
        ));
    }
    let real = resolve(p).with_context(context)?;
    let dir = real
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = real
        .file_name()
        .map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{name}.");
    builder.prefix(&prefix).suffix(".tmp");
    // A report is an ordinary file (0666 less the umask), not a private temporary one; one
    // that replaces an existing report keeps that report's mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = existing.as_ref().map_or(0o666, |m| m.permissions().mode());
        builder.permissions(std::fs::Permissions::from_mode(mode & 0o7777));
    }
    let tmp = builder.tempfile_in(dir).with_context(context)?;
    #[cfg(unix)]
    if let Some(m) = &existing {
        keep_owner(tmp.as_file(), m);
    }
    let f = tmp.reopen().with_context(context)?;
    Ok((
        OutFile::Atomic { tmp, path: real },
        Box::new(BufWriter::with_capacity(REPORT_BUFFER, f)),
    ))
}

/// As root, the replacement keeps the old report's owner and group (a cron job's report stays
/// readable by the user who reads it). Elsewhere this fails harmlessly.
#[cfg(unix)]
fn keep_owner(f: &File, old: &Metadata) {
    use std::os::unix::fs::MetadataExt as _;
    let _ = std::os::unix::fs::fchown(f, Some(old.uid()), Some(old.gid()));
    // chown clears set-id bits; put the mode back.
    let _ = f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
        old.mode() & 0o7777,
    ));
}

impl OutFile {
    /// Makes the report final: renames a temporary file over its path (nothing to do for the
    /// others, whose writer has been flushed).
    pub fn commit(self) -> anyhow::Result<()> {
        if let Self::Atomic { tmp, path } = self {
            tmp.persist(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// Whether two paths name the same file: the same device and inode when both exist, else the
/// same absolute path once symlinks are resolved (a store and a report that do not exist yet
/// would still end up in one file).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let absolute = |p: &Path| -> Option<PathBuf> {
        let real = resolve(p).ok()?;
        let dir = real
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Some(std::fs::canonicalize(dir).ok()?.join(real.file_name()?))
    };
    if !(a.exists() && b.exists()) {
        return matches!((absolute(a), absolute(b)), (Some(x), Some(y)) if x == y);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn write_report(path: &Path, atomic: bool, text: &str) {
        let (file, mut w) = open(Some(path), atomic, false, &|| false).unwrap();
        w.write_all(text.as_bytes()).unwrap();
        w.flush().unwrap();
        drop(w);
        file.commit().unwrap();
    }

    #[test]
    fn an_existing_report_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_report(&p, true, "new");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_symlink_is_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.csv");
        let link = dir.path().join("link.csv");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink("real.csv", &link).unwrap();
        write_report(&link, true, "new");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        // A dangling link: the report is created at its target.
        let link2 = dir.path().join("dangling.csv");
        std::os::unix::fs::symlink("later.csv", &link2).unwrap();
        write_report(&link2, true, "x");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("later.csv")).unwrap(),
            "x"
        );
    }

    #[test]
    fn a_fifo_is_written_in_place_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(ok.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        write_report(&fifo, true, "through the pipe");
        assert_eq!(reader.join().unwrap(), "through the pipe");
        let ft = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&ft), "replaced");
        assert!(is_stream(Path::new("/dev/null")));
        assert!(is_stream(Path::new("/dev/stdout")));
        assert!(!is_stream(&dir.path().join("nothing-here.csv")));
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(Some(dir.path()), true, false, &|| false)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("directory"), "{e:#}");
    }
}
