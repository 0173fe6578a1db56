//! Manifests to the mesh istiod would see: `policy`'s loader, refusing what Istio's
//! admission would refuse, plus every document as raw JSON for what `policy` does not
//! keep.

use crate::LabError;
use policy::mesh::Mesh;
use policy::{MeshConfig, Severity};
use serde_json::Value;

/// Every YAML document of `sources`, as the raw JSON `Topology::from_mesh` reads for
/// what `policy` does not keep (service accounts, `appProtocol`).
pub fn documents(sources: &[(String, String)]) -> Result<Vec<Value>, LabError> {
    let mut out = Vec::new();
    for (path, text) in sources {
        let docs = crate::yaml::yaml_documents(text).map_err(|message| LabError::Manifest {
            path: path.clone(),
            message,
        })?;
        out.extend(docs.into_iter().filter(|d| !d.is_null()));
    }
    Ok(out)
}

/// Build the mesh istiod would see for `sources`, refusing manifests that Istio's
/// admission would refuse.
pub fn mesh_of(sources: &[(String, String)]) -> Result<Mesh, LabError> {
    let pairs: Vec<(&str, &str)> = sources
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let config = MeshConfig::default();
    let mut admission = Vec::new();
    for (name, text) in &pairs {
        let loaded = policy::source::load(text, name);
        admission.extend(loaded.errors.iter().map(ToString::to_string));
        for r in &loaded.resources {
            admission.extend(
                policy::validate::resource(r, &config)
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error)
                    .map(|d| format!("{name}: {}", d.message)),
            );
        }
    }
    if !admission.is_empty() {
        return Err(LabError::Policy(admission.join("; ")));
    }
    Ok(policy::check(&pairs, config).mesh)
}
