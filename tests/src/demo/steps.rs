//! The lab's steps as read from disk: the six seed steps under `manifests/steps/`
//! (applied on top of `manifests/workloads/`) and the scenarios under
//! `manifests/lab/scenarios/` (each brings its own workloads), plus the WasmPlugins a
//! step loads as `manifests/README.md`'s table assigns them.

use crate::demo::crd;
use crate::demo::LabError;
use crate::istiod::{self, WasmPlugin};
use policy::mesh::Mesh;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where a step's manifests come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// `manifests/steps/<name>/`, on top of `manifests/workloads/`.
    Seed,
    /// `manifests/lab/scenarios/<name>/`, which holds its own workloads.
    Scenario,
}

/// One step as read from its folder.
#[derive(Debug, Clone)]
pub struct Step {
    /// Folder name, e.g. `2-mesh-strict` or `hipster-shop-exception`.
    pub name: String,
    pub kind: StepKind,
    /// The first comment block of its first PeerAuthentication file (or README).
    pub title: String,
    /// The folder, relative to the repository.
    pub dir: String,
    /// `(path, text)` of its YAML files.
    pub files: Vec<(String, String)>,
    /// Its PeerAuthentications as JSON objects.
    pub peer_authentications: Vec<Value>,
}

fn read(path: &Path) -> Result<String, LabError> {
    std::fs::read_to_string(path).map_err(|e| LabError::Manifest {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, LabError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LabError::Manifest {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

fn relative(repo: &Path, p: &Path) -> String {
    p.strip_prefix(repo).unwrap_or(p).display().to_string()
}

fn subdirs(root: &Path) -> Result<Vec<PathBuf>, LabError> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| LabError::Manifest {
            path: root.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The seed steps under `<repo>/manifests/steps`, in order.
pub fn load_steps(repo: &Path) -> Result<Vec<Step>, LabError> {
    subdirs(&repo.join("manifests/steps"))?
        .iter()
        .map(|d| load_step(repo, d, StepKind::Seed))
        .collect()
}

/// The scenarios under `<repo>/manifests/lab/scenarios`, in folder order.
pub fn load_scenarios(repo: &Path) -> Result<Vec<Step>, LabError> {
    subdirs(&repo.join("manifests/lab/scenarios"))?
        .iter()
        .map(|d| load_step(repo, d, StepKind::Scenario))
        .collect()
}

/// Seed steps, then scenarios: everything `make demo` runs.
pub fn load_all(repo: &Path) -> Result<Vec<Step>, LabError> {
    let mut all = load_steps(repo)?;
    all.extend(load_scenarios(repo)?);
    Ok(all)
}

fn load_step(repo: &Path, dir: &Path, kind: StepKind) -> Result<Step, LabError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files = Vec::new();
    let mut peer_authentications = Vec::new();
    let mut title = String::new();
    for p in yaml_files(dir)? {
        let text = read(&p)?;
        let docs = crd::yaml_documents(&text).map_err(|message| LabError::Manifest {
            path: relative(repo, &p),
            message,
        })?;
        for d in docs {
            if d["kind"] == "PeerAuthentication" {
                peer_authentications.push(d);
                if title.is_empty() {
                    title = first_comment(&text);
                }
            }
        }
        files.push((relative(repo, &p), text));
    }
    if title.is_empty() {
        title = read(&dir.join("README.md"))
            .map(|t| first_paragraph(&t))
            .unwrap_or_default();
    }
    Ok(Step {
        name,
        kind,
        title,
        dir: relative(repo, dir),
        files,
        peer_authentications,
    })
}

/// The file's leading comment block, joined into one line.
fn first_comment(text: &str) -> String {
    text.lines()
        .map_while(|l| l.strip_prefix("# "))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The README's first paragraph after its heading, joined into one line.
fn first_paragraph(text: &str) -> String {
    text.lines()
        .skip_while(|l| l.starts_with('#') || l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `(path, text)` of `manifests/workloads/*.yaml`.
pub fn workload_sources(repo: &Path) -> Result<Vec<(String, String)>, LabError> {
    yaml_files(&repo.join("manifests/workloads"))?
        .iter()
        .map(|p| Ok((relative(repo, p), read(p)?)))
        .collect()
}

/// The manifests a step's mesh is built from: the seed workloads plus the step's files
/// for a seed step, the scenario's own files for a scenario.
pub fn sources_for(workloads: &[(String, String)], step: &Step) -> Vec<(String, String)> {
    match step.kind {
        StepKind::Seed => workloads.iter().chain(&step.files).cloned().collect(),
        StepKind::Scenario => step.files.clone(),
    }
}

pub use peerauth_lab::load::{documents, mesh_of};

/// [`mesh_of`] the seed workloads plus `step` (what the loopback lab called `mesh_for`).
pub fn mesh_for(workloads: &[(String, String)], step: &Step) -> Result<Mesh, LabError> {
    mesh_of(&sources_for(workloads, step))
}

/// The annotation a step WasmPlugin names its seed step with (`manifests/README.md`).
pub const LAB_STEP_ANNOTATION: &str = "peerauth.dev/lab-step";

/// `manifests/wasmplugin/<file>`'s WasmPlugins, exactly as committed.
pub fn wasm_plugin_file(repo: &Path, file: &str) -> Result<Vec<WasmPlugin>, LabError> {
    let path = repo.join("manifests/wasmplugin").join(file);
    let text = read(&path)?;
    istiod::wasm_plugins(&relative(repo, &path), &text).map_err(|e| LabError::Manifest {
        path: relative(repo, &path),
        message: e.to_string(),
    })
}

/// The WasmPlugins `step` loads, as `manifests/README.md`'s table assigns them: every
/// plugin in `manifests/wasmplugin/` annotated with [`LAB_STEP_ANNOTATION`]` = <step>`.
/// Steps 1–3 and the scenarios have none; the audit plugin belongs to the migration
/// readout ([`wasm_plugin_file`] `peerauth-audit.yaml`), and `peerauth-file.yaml` is
/// step 4's plugin again with a `file://` URL, so loading both would run it twice.
pub fn plugins_for_step(repo: &Path, step: &Step) -> Result<Vec<WasmPlugin>, LabError> {
    let dir = repo.join("manifests/wasmplugin");
    let mut out = Vec::new();
    for p in yaml_files(&dir)? {
        let text = read(&p)?;
        let docs = crd::yaml_documents(&text).map_err(|message| LabError::Manifest {
            path: relative(repo, &p),
            message,
        })?;
        let mine = docs.iter().any(|d| {
            d["kind"] == "WasmPlugin"
                && d["metadata"]["annotations"][LAB_STEP_ANNOTATION] == step.name.as_str()
        });
        if mine {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.extend(wasm_plugin_file(repo, &name)?);
        }
    }
    Ok(out)
}
