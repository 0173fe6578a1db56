//! Writing a set of files with care: private keys get mode 0600, nothing is
//! overwritten without `force`, and a failure part-way leaves no
//! half-written file behind (each file is written to a temporary name in the
//! same folder and then moved into place).

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

/// Writes every file or none.
///
/// `Err(FileExists)` (before anything is written) if a target exists and
/// `force` is false; `Err(Io)` if a folder or file cannot be written, after
/// removing what this call had written.
pub fn write_all(files: &[OutFile], force: bool) -> Result<(), Error> {
    if !force {
        if let Some(f) = files.iter().find(|f| f.path.exists()) {
            return Err(Error::FileExists(f.path.clone()));
        }
    }
    let mut temps: Vec<PathBuf> = Vec::new();
    let staged = stage(files, &mut temps);
    if let Err(e) = staged {
        remove_all(&temps);
        return Err(e);
    }
    let mut placed: Vec<PathBuf> = Vec::new();
    for (f, tmp) in files.iter().zip(&temps) {
        let result = if force {
            std::fs::rename(tmp, &f.path)
        } else {
            // A hard link fails if the target appeared meanwhile, so a
            // concurrent writer is never clobbered.
            std::fs::hard_link(tmp, &f.path).and_then(|()| std::fs::remove_file(tmp))
        };
        if let Err(e) = result {
            remove_all(&temps);
            if !force {
                remove_all(&placed);
            }
            let err = if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::FileExists(f.path.clone())
            } else {
                Error::io(&f.path, e)
            };
            return Err(err);
        }
        placed.push(f.path.clone());
    }
    Ok(())
}

fn stage(files: &[OutFile], temps: &mut Vec<PathBuf>) -> Result<(), Error> {
    for f in files {
        let dir = match f.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let suffix = crate::pki::random_bytes::<6>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
        let mut file = open_new(&tmp, f.private).map_err(|e| Error::io(&tmp, e))?;
        temps.push(tmp.clone());
        file.write_all(&f.contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
    }
    Ok(())
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
