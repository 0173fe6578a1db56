//! Writing a set of files with care: private keys get mode 0600, nothing is
//! overwritten without `force`, and the set appears whole or not at all.
//!
//! The set's folder (the deepest folder holding every file) is built complete
//! under a hidden name next to it (`.<folder>.certgen-<random>.tmp`), every
//! file and folder synced, and then moved into place with one `rename`: onto
//! the folder's name when it does not exist yet, or swapped with the existing
//! folder in one `renameat2(RENAME_EXCHANGE)` (Linux) when it does, the
//! staged copy holding hard links to the folder's other files. A process
//! killed at any point leaves the folder absent, as it was, or complete.
//!
//! Runs into the same folder are serialized by an exclusive `flock` on the
//! folder's parent, so two runs never interleave their files; the lock dies
//! with its process, and the next run removes the staging folders a killed
//! run left behind.
//!
//! A folder that holds subfolders (a root CA folder with its clusters'
//! intermediates) cannot be swapped without moving them, so there, on other
//! systems and on file systems without `RENAME_EXCHANGE`, each file is
//! replaced on its own with a rename: each file is still whole, but a crash
//! between two files can leave a mix (see the README's guarantees).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;

/// One file to write.
#[derive(Debug, Clone)]
pub struct OutFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    /// Private keys and anything holding one: mode 0600 instead of 0644.
    pub private: bool,
}

impl OutFile {
    /// A world-readable file (certificates, YAML without keys).
    pub fn public(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        OutFile {
            path: path.into(),
            contents: contents.into(),
            private: false,
        }
    }

    /// A file only its owner may read (keys, Secrets that hold keys).
    pub fn private(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        OutFile {
            path: path.into(),
            contents: contents.into(),
            private: true,
        }
    }
}

/// The marker in the names of staging folders and temporary files, so a later
/// run can tell its own leftovers from the user's files.
const MARK: &str = ".certgen-";

/// Writes every file or none.
///
/// `Err(FileExists)` (nothing written) if a target exists and `force` is
/// false; `Err(Io)` if a folder or file cannot be written, after removing
/// what this call had staged.
pub fn write_all(files: &[OutFile], force: bool) -> Result<(), Error> {
    if files.is_empty() {
        return Ok(());
    }
    let files: Vec<OutFile> = files
        .iter()
        .map(|f| {
            std::path::absolute(&f.path)
                .map(|path| OutFile { path, ..f.clone() })
                .map_err(|e| Error::io(&f.path, e))
        })
        .collect::<Result<_, _>>()?;
    let root = common_folder(&files);
    let parent = match root.parent() {
        Some(p) => p.to_path_buf(),
        // The file system's root as the set's folder: nothing to swap.
        None => return replace_each(&files, force),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let _lock = Lock::folder(&parent)?;
    remove_leftovers(&parent, &root, &files);
    if !force {
        if let Some(f) = files.iter().find(|f| f.path.symlink_metadata().is_ok()) {
            return Err(Error::FileExists(f.path.clone()));
        }
    }
    match root.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_folder(&files, &root),
        Err(e) => Err(Error::io(&root, e)),
        Ok(meta) if meta.is_dir() && files.iter().all(|f| f.path.parent() == Some(&root)) => {
            match swap_folder(&files, &root, &meta)? {
                Swapped::Yes => Ok(()),
                Swapped::Unsupported => replace_each(&files, force),
            }
        }
        Ok(_) => replace_each(&files, force),
    }
}

/// The deepest folder that holds every file.
fn common_folder(files: &[OutFile]) -> PathBuf {
    let mut root = files[0]
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for f in files {
        while !f.path.starts_with(&root) {
            if !root.pop() {
                break;
            }
        }
    }
    root
}

fn staging_name(root: &Path) -> Result<PathBuf, Error> {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = random_suffix()?;
    Ok(root.with_file_name(format!(".{name}{MARK}{suffix}.tmp")))
}

fn random_suffix() -> Result<String, Error> {
    Ok(crate::pki::random_bytes::<6>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The folder does not exist: build it whole under another name, then give it
/// its name. `rename` refuses to replace a folder that is not empty, so one
/// that appeared meanwhile (made by something other than certgen) is kept.
fn create_folder(files: &[OutFile], root: &Path) -> Result<(), Error> {
    let staging = staging_name(root)?;
    let result = stage(files, root, &staging).and_then(|()| {
        std::fs::rename(&staging, root).map_err(|e| {
            use std::io::ErrorKind::{AlreadyExists, DirectoryNotEmpty};
            if matches!(e.kind(), AlreadyExists | DirectoryNotEmpty) {
                Error::FileExists(root.to_path_buf())
            } else {
                Error::io(root, e)
            }
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        return result;
    }
    sync_folder(root.parent().unwrap_or(root))
}

enum Swapped {
    Yes,
    /// The folder could not be swapped as a whole (subfolders, another
    /// system, a file system without `RENAME_EXCHANGE`): nothing was changed.
    Unsupported,
}

/// The folder exists and holds only files: a copy with the new files and hard
/// links to the others is swapped with it in one step.
fn swap_folder(files: &[OutFile], root: &Path, meta: &std::fs::Metadata) -> Result<Swapped, Error> {
    // One file is replaced whole by its own rename. A folder holding this
    // process's working directory is not swapped: the process would be left
    // in the old, emptied folder.
    let cwd = std::env::current_dir().ok();
    if !cfg!(target_os = "linux") || files.len() < 2 || cwd.is_some_and(|c| c.starts_with(root)) {
        return Ok(Swapped::Unsupported);
    }
    let mut others = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let path = entry.path();
        if files.iter().any(|f| f.path == path) {
            continue;
        }
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if !kind.is_file() {
            return Ok(Swapped::Unsupported);
        }
        others.push(entry.file_name());
    }
    let staging = staging_name(root)?;
    let staged = stage(files, root, &staging).and_then(|()| {
        for name in &others {
            let to = staging.join(name);
            std::fs::hard_link(root.join(name), &to).map_err(|e| Error::io(&to, e))?;
        }
        std::fs::set_permissions(&staging, meta.permissions())
            .map_err(|e| Error::io(&staging, e))?;
        sync_folder(&staging)
    });
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    match exchange(&staging, root) {
        Ok(()) => {}
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            // A file system without the flag, a mount point: cannot swap here.
            use std::io::ErrorKind::{CrossesDevices, InvalidInput, ResourceBusy, Unsupported};
            return match e.kind() {
                InvalidInput | Unsupported | CrossesDevices | ResourceBusy => {
                    Ok(Swapped::Unsupported)
                }
                _ => Err(Error::io(root, e)),
            };
        }
    }
    sync_folder(root.parent().unwrap_or(root))?;
    // `staging` now holds the folder as it was: the replaced files and links
    // to the kept ones. Only what this call put there is removed, so a file
    // someone else added to the folder meanwhile is left for them to find.
    for f in files {
        if let Some(name) = f.path.file_name() {
            let _ = std::fs::remove_file(staging.join(name));
        }
    }
    for name in &others {
        let _ = std::fs::remove_file(staging.join(name));
    }
    let _ = std::fs::remove_dir(&staging);
    Ok(Swapped::Yes)
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Writes each file into `staging`, at its place relative to `root`, synced.
fn stage(files: &[OutFile], root: &Path, staging: &Path) -> Result<(), Error> {
    std::fs::create_dir(staging).map_err(|e| Error::io(staging, e))?;
    let mut folders = vec![staging.to_path_buf()];
    for f in files {
        let relative = f.path.strip_prefix(root).unwrap_or(&f.path);
        let path = staging.join(relative);
        if let Some(dir) = path.parent() {
            if !folders.iter().any(|d| d == dir) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                folders.push(dir.to_path_buf());
            }
        }
        write_new(&path, f)?;
    }
    for dir in folders.iter().rev() {
        sync_folder(dir)?;
    }
    Ok(())
}

fn write_new(path: &Path, f: &OutFile) -> Result<(), Error> {
    let mut file = open_new(path, f.private).map_err(|e| Error::io(path, e))?;
    file.write_all(&f.contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// File by file: each written to a temporary name next to it and renamed into
/// place (hard-linked without `force`, which fails if the target appeared).
fn replace_each(files: &[OutFile], force: bool) -> Result<(), Error> {
    let mut temps: Vec<PathBuf> = Vec::new();
    let staged = (|| {
        for f in files {
            let dir = f.path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let tmp = temp_name(&f.path)?;
            temps.push(tmp.clone());
            write_new(&tmp, f)?;
        }
        Ok(())
    })();
    if let Err(e) = staged {
        remove_all(&temps);
        return Err(e);
    }
    let mut placed: Vec<PathBuf> = Vec::new();
    for (f, tmp) in files.iter().zip(&temps) {
        let result = if force {
            std::fs::rename(tmp, &f.path)
        } else {
            std::fs::hard_link(tmp, &f.path).and_then(|()| std::fs::remove_file(tmp))
        };
        if let Err(e) = result {
            remove_all(&temps);
            if !force {
                remove_all(&placed);
            }
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::FileExists(f.path.clone())
            } else {
                Error::io(&f.path, e)
            });
        }
        placed.push(f.path.clone());
    }
    let mut dirs: Vec<&Path> = files.iter().filter_map(|f| f.path.parent()).collect();
    dirs.dedup();
    for d in dirs {
        sync_folder(d)?;
    }
    Ok(())
}

fn temp_name(path: &Path) -> Result<PathBuf, Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(path.with_file_name(format!(".{name}{MARK}{}.tmp", random_suffix()?)))
}

/// Staging folders of `root` and temporary files of `files` that a killed run
/// left (never a live run's: the caller holds the lock every run holds while
/// it writes).
fn remove_leftovers(parent: &Path, root: &Path, files: &[OutFile]) {
    let prefix_of = |p: &Path| {
        p.file_name()
            .map(|n| format!(".{}{MARK}", n.to_string_lossy()))
    };
    let Some(root_prefix) = prefix_of(root) else {
        return;
    };
    let is_leftover = |name: &str, prefix: &str| name.starts_with(prefix) && name.ends_with(".tmp");
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.flatten() {
            if is_leftover(&e.file_name().to_string_lossy(), &root_prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    for f in files {
        let (Some(dir), Some(prefix)) = (f.path.parent(), prefix_of(&f.path)) else {
            continue;
        };
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if is_leftover(&e.file_name().to_string_lossy(), &prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// An exclusive `flock` on a folder, released when dropped or when the
/// process dies.
struct Lock {
    _folder: std::fs::File,
}

impl Lock {
    #[cfg(target_os = "linux")]
    fn folder(dir: &Path) -> Result<Lock, Error> {
        use rustix::fs::{flock, FlockOperation};
        let folder = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
        flock(&folder, FlockOperation::LockExclusive)
            .map_err(|e| Error::io(dir, std::io::Error::from(e)))?;
        Ok(Lock { _folder: folder })
    }

    #[cfg(not(target_os = "linux"))]
    fn folder(dir: &Path) -> Result<Lock, Error> {
        let folder = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Lock { _folder: folder })
    }
}

/// Makes a folder's entries (a rename, a new file) durable, not only its files.
fn sync_folder(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(unix)]
fn open_new(path: &Path, private: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
}

#[cfg(not(unix))]
fn open_new(path: &Path, _private: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

fn remove_all(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}
