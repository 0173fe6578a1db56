//! Cross-resource mTLS analysis (the retired `istioctl analyze` IST0113–IST0115
//! checks and Kiali's KIA0xxx mTLS validations).

use crate::diagnostic::Diagnostic;
use crate::mesh::Mesh;

/// Every cross-resource finding for the mesh.
pub fn run(mesh: &Mesh) -> Vec<Diagnostic> {
    let _ = mesh;
    todo!("policy implementation")
}
