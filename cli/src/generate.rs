//! Generated clusters for the scale benchmark (issue 18; `cli/bench/scale.sh`,
//! BENCHMARKS.md "Scale") and the tests that compare the matrix's views on a
//! big mesh: `cargo run --release -p peerauth-cli --example mesh_gen -- 50000 > mesh.yaml`.
//!
//! [`mesh`] writes `workloads / 10` namespaces `ns-00000`, `ns-00001`, … each
//! holding ten Deployments `app-0` … `app-9` (labels `app=app-<j>`,
//! `tier=t<j mod 3>`, container ports 8080 and 9090), each behind a Service of
//! the same name with two ports (80 → 8080, 9090 → 9090). Namespace `i`:
//!
//! * injects sidecars unless `i mod 5 = 4` (one namespace in five has none);
//! * has a namespace-wide policy `default` of STRICT, PERMISSIVE, DISABLE or
//!   none for `i mod 4` = 0, 1, 2, 3;
//! * has a port-level exception, `app-0-ports` selecting `app=app-0`, that
//!   makes port 9090 PERMISSIVE in a STRICT namespace and STRICT elsewhere;
//! * when `i mod 10 = 1`, a DestinationRule `mtls` for `*.ns-<i>.svc.cluster.local`
//!   with ISTIO_MUTUAL and DISABLE on Service port 9090.
//!
//! The root namespace has a PERMISSIVE mesh-wide policy. The output is a pure
//! function of `workloads`, so the numbers can be reproduced.

use std::io::{self, Write};

fn namespace(out: &mut dyn Write, i: usize) -> io::Result<()> {
    let ns = format!("ns-{i:05}");
    let injection = if i % 5 == 4 { "disabled" } else { "enabled" };
    writeln!(
        out,
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    istio-injection: {injection}"
    )?;
    for j in 0..10 {
        writeln!(
            out,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{j}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels:\n      app: app-{j}\n  template:\n    metadata:\n      labels:\n        app: app-{j}\n        tier: t{tier}\n    spec:\n      containers:\n        - name: main\n          image: example/app\n          ports:\n            - containerPort: 8080\n              name: http\n            - containerPort: 9090\n              name: grpc",
            tier = j % 3
        )?;
        writeln!(
            out,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{j}\n  namespace: {ns}\nspec:\n  selector:\n    app: app-{j}\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n    - name: grpc\n      port: 9090\n      targetPort: 9090"
        )?;
    }
    let mode = ["STRICT", "PERMISSIVE", "DISABLE", ""][i % 4];
    if !mode.is_empty() {
        writeln!(
            out,
            "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: {ns}\nspec:\n  mtls:\n    mode: {mode}"
        )?;
    }
    let exception = if mode == "STRICT" {
        "PERMISSIVE"
    } else {
        "STRICT"
    };
    writeln!(
        out,
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: app-0-ports\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels:\n      app: app-0\n  portLevelMtls:\n    9090:\n      mode: {exception}"
    )?;
    if i % 10 == 1 {
        writeln!(
            out,
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: mtls\n  namespace: {ns}\nspec:\n  host: \"*.{ns}.svc.cluster.local\"\n  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL\n    portLevelSettings:\n      - port:\n          number: 9090\n        tls:\n          mode: DISABLE"
        )?;
    }
    Ok(())
}

/// Write the mesh of `workloads` workloads (rounded down to a multiple of 10).
pub fn mesh(out: &mut dyn Write, workloads: usize) -> io::Result<()> {
    writeln!(
        out,
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: PERMISSIVE"
    )?;
    for i in 0..workloads / 10 {
        namespace(out, i)?;
    }
    out.flush()
}

/// [`mesh`] as a string.
pub fn mesh_text(workloads: usize) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = mesh(&mut out, workloads);
    String::from_utf8_lossy(&out).into_owned()
}
