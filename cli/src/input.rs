//! Turning path arguments into named texts for `policy::check`.
//!
//! Problems reading a file become diagnostics (codes `input-*`) so the other
//! files are still checked and the user sees every problem in one run.

use crate::rules;
use policy::diagnostic::{Diagnostic, Location, Rule};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Same bound as `policy::source::Limits::default().max_bytes`: a file larger than
/// this is refused before it is read into memory.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The source name used for standard input.
pub const STDIN_NAME: &str = "<stdin>";

/// Everything read from the command line's paths.
#[derive(Debug, Default)]
pub struct Inputs {
    /// `(source name, text)`, in argument order, folder contents sorted by path.
    pub sources: Vec<(String, String)>,
    /// Files inside folders that were not read (not `.yaml`, `.yml` or `.json`).
    pub skipped_files: Vec<String>,
    /// One `input-*` diagnostic per path that could not be read.
    pub problems: Vec<Diagnostic>,
}

/// Read every path: files as given (whatever their extension), folders recursively
/// (only `*.yaml`, `*.yml`, `*.json`; hidden entries such as `.git` are not entered),
/// `-` from `stdin` (once). A path is read once even if named twice.
pub fn collect(paths: &[PathBuf], stdin: &mut dyn Read) -> Inputs {
    let mut inputs = Inputs::default();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut stdin_read = false;
    for path in paths {
        if path.as_os_str() == "-" {
            if !stdin_read {
                stdin_read = true;
                read_one(&mut inputs, STDIN_NAME, stdin);
            }
            continue;
        }
        let mut files = Vec::new();
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, &mut files, &mut inputs),
            // Missing or unreadable paths are reported by the read below, with the OS reason.
            _ => files.push(path.clone()),
        }
        for file in files {
            if seen.contains(&file) {
                continue;
            }
            seen.push(file.clone());
            let name = display(&file);
            match fs::File::open(&file) {
                Ok(mut f) => read_one(&mut inputs, &name, &mut f),
                Err(e) => inputs.problems.push(problem(
                    &name,
                    &rules::INPUT_UNREADABLE,
                    format!("cannot read {name}: {}", io_reason(&e)),
                    "check the path and its permissions",
                )),
            }
        }
    }
    inputs
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, inputs: &mut Inputs) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let name = display(dir);
            inputs.problems.push(problem(
                &name,
                &rules::INPUT_UNREADABLE,
                format!("cannot read folder {name}: {}", io_reason(&e)),
                "check the path and its permissions",
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        // `symlink_metadata` so a symlinked folder is not entered (no loops); a
        // symlink to a file is followed by the read.
        let Ok(meta) = fs::symlink_metadata(&path) else {
            files.push(path);
            continue;
        };
        if meta.is_dir() {
            walk(&path, files, inputs);
        } else if meta.file_type().is_symlink() && path.is_dir() {
            inputs.skipped_files.push(display(&path));
        } else if is_manifest(&path) {
            files.push(path);
        } else {
            inputs.skipped_files.push(display(&path));
        }
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("yaml" | "yml" | "json")
    )
}

fn read_one(inputs: &mut Inputs, name: &str, reader: &mut dyn Read) {
    let mut bytes = Vec::new();
    if let Err(e) = reader.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        inputs.problems.push(problem(
            name,
            &rules::INPUT_UNREADABLE,
            format!("cannot read {name}: {}", io_reason(&e)),
            "check the path and its permissions",
        ));
        return;
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        inputs.problems.push(problem(
            name,
            &rules::INPUT_TOO_LARGE,
            format!("{name} is larger than {} MiB", MAX_FILE_BYTES >> 20),
            "split the file into smaller ones",
        ));
        return;
    }
    match String::from_utf8(bytes) {
        Ok(text) => inputs.sources.push((name.to_string(), text)),
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..offset]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            let mut d = problem(
                name,
                &rules::INPUT_NOT_UTF8,
                format!("{name} is not UTF-8 text (invalid byte at offset {offset})"),
                "save the file as UTF-8",
            );
            if let Some(loc) = d.location.as_mut() {
                loc.line = u32::try_from(line).unwrap_or(u32::MAX);
            }
            inputs.problems.push(d);
        }
    }
}

/// A diagnostic about a whole source; line 0 means "no particular line".
fn problem(source: &str, rule: &Rule, message: String, hint: &str) -> Diagnostic {
    rule.diagnostic(message, hint).at(Location {
        source: source.to_string(),
        line: 0,
        document: 0,
    })
}

/// The OS reason without Rust's "(os error N)" suffix, lower case first letter.
fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
