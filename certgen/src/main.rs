//! The `certgen` command line: thin shell over the library, which does the
//! work; this file parses arguments, writes files and chooses exit codes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use certgen::acm::{self, AcmKeyAlgorithm, Store};
use certgen::chain::{self, ChainFiles};
use certgen::files::{write_all, OutFile};
use certgen::verify::{Options, SpiffeLint};
use certgen::{inspect, proxy, secret, verify, Ca, KeyAlgorithm};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use time::OffsetDateTime;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for verify: every check passed)
  1  verification failed (verify found a failing check)
  2  usage or input error (bad argument, missing or malformed file, file exists without --force, …)";

/// Certificates for a service mesh: Istio plug-in CA folders, SPIFFE
/// workload certificates, gateway certificates, ACM-style private
/// certificates, and the checks istiod and Envoy would make on them.
///
/// Key algorithms (--alg): ec-p256 (default), ec-p384, ed25519, rsa-2048,
/// rsa-3072, rsa-4096. All six can be generated: certgen uses rcgen's
/// aws-lc-rs backend, which generates RSA keys (the ring backend cannot).
#[derive(Debug, Parser)]
#[command(name = "certgen", version, after_help = EXIT_CODES)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a self-signed root CA: root-cert.pem and root-key.pem in --out.
    Root(RootArgs),
    /// Create a cluster's intermediate CA in Istio's plug-in layout
    /// (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem).
    Intermediate(IntermediateArgs),
    /// Issue a SPIFFE X.509-SVID for a workload: cert.pem, key.pem, chain.pem, root-cert.pem.
    Workload(WorkloadArgs),
    /// Issue a server certificate for an ingress gateway, plus its kubernetes.io/tls Secret.
    Server(ServerArgs),
    /// Print a Kubernetes Secret as YAML.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// ACM-style private certificates in a local store (mimics AWS Certificate Manager + AWS Private CA).
    Acm(AcmArgs),
    /// Summarize certificates (PEM bundle, DER, or a proxy's secrets dump): subject, issuer, validity, key, SANs, SPIFFE ID, usages, fingerprint.
    Inspect(InspectArgs),
    /// Verify a certificate (or a proxy's dump) against its chain and root, and lint it against the SPIFFE X.509-SVID rules.
    Verify(VerifyArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Alg {
    /// ECDSA P-256 with SHA-256
    #[value(name = "ec-p256")]
    EcP256,
    /// ECDSA P-384 with SHA-384
    #[value(name = "ec-p384")]
    EcP384,
    /// Ed25519
    Ed25519,
    /// RSA 2048 (PKCS#1 v1.5, SHA-256)
    #[value(name = "rsa-2048")]
    Rsa2048,
    /// RSA 3072
    #[value(name = "rsa-3072")]
    Rsa3072,
    /// RSA 4096
    #[value(name = "rsa-4096")]
    Rsa4096,
}

impl From<Alg> for KeyAlgorithm {
    fn from(a: Alg) -> Self {
        match a {
            Alg::EcP256 => KeyAlgorithm::EcdsaP256,
            Alg::EcP384 => KeyAlgorithm::EcdsaP384,
            Alg::Ed25519 => KeyAlgorithm::Ed25519,
            Alg::Rsa2048 => KeyAlgorithm::Rsa2048,
            Alg::Rsa3072 => KeyAlgorithm::Rsa3072,
            Alg::Rsa4096 => KeyAlgorithm::Rsa4096,
        }
    }
}

#[derive(Debug, Args)]
struct RootArgs {
    /// Folder to write root-cert.pem and root-key.pem into.
    #[arg(long, default_value = "certs")]
    out: PathBuf,
    /// Subject organization (O=).
    #[arg(long, default_value = "Istio")]
    org: String,
    /// Subject common name (CN=).
    #[arg(long, default_value = "Root CA")]
    cn: String,
    /// Key algorithm.
    #[arg(long, value_enum, default_value = "ec-p256")]
    alg: Alg,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u32,
    /// basicConstraints pathLenConstraint (unlimited when absent; 0 forbids intermediates).
    #[arg(long)]
    path_len: Option<u8>,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct IntermediateArgs {
    /// Folder of the signing CA: a root folder (root-cert.pem, root-key.pem) or an Istio CA folder.
    #[arg(long, default_value = "certs")]
    root: PathBuf,
    /// Cluster name: becomes L= in the subject and the folder name.
    #[arg(long)]
    cluster: String,
    /// Output folder [default: <ROOT>/<CLUSTER>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Key algorithm.
    #[arg(long, value_enum, default_value = "ec-p256")]
    alg: Alg,
    /// Validity in days (clamped to the root's).
    #[arg(long, default_value_t = 730)]
    days: u32,
    /// Also write the cacerts Secret as cacerts.yaml in the folder (mode 0600: it holds the key).
    #[arg(long)]
    secret_yaml: bool,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct WorkloadArgs {
    /// Issuing CA folder (Istio plug-in layout, or a root folder).
    #[arg(long)]
    ca: PathBuf,
    /// Trust domain of the SPIFFE ID.
    #[arg(long, default_value = "cluster.local", conflicts_with = "spiffe_id")]
    trust_domain: String,
    /// Kubernetes namespace (spiffe://<td>/ns/<namespace>/sa/<sa>).
    #[arg(
        long,
        required_unless_present = "spiffe_id",
        conflicts_with = "spiffe_id"
    )]
    namespace: Option<String>,
    /// Kubernetes service account.
    #[arg(
        long,
        required_unless_present = "spiffe_id",
        conflicts_with = "spiffe_id"
    )]
    service_account: Option<String>,
    /// A full SPIFFE ID instead of --trust-domain/--namespace/--service-account.
    #[arg(long)]
    spiffe_id: Option<String>,
    /// Key algorithm.
    #[arg(long, value_enum, default_value = "ec-p256")]
    alg: Alg,
    /// Validity in hours [default: 24, like istiod].
    #[arg(long, conflicts_with = "days")]
    hours: Option<u64>,
    /// Validity in days.
    #[arg(long)]
    days: Option<u64>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Issuing CA folder (Istio plug-in layout, or a root folder).
    #[arg(long)]
    ca: PathBuf,
    /// DNS name (repeat for more; the first is also the CN).
    #[arg(long = "dns", required_unless_present = "ips")]
    dns: Vec<String>,
    /// IP address SAN (repeatable).
    #[arg(long = "ip")]
    ips: Vec<IpAddr>,
    /// Key algorithm.
    #[arg(long, value_enum, default_value = "ec-p256")]
    alg: Alg,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Name of the kubernetes.io/tls Secret (the Gateway's credentialName) [default: <first DNS name>-credential].
    #[arg(long)]
    secret_name: Option<String>,
    /// Namespace of the Secret (the ingress gateway's).
    #[arg(long, default_value = "istio-system")]
    secret_namespace: String,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Istio's `cacerts` Secret from a CA folder (what `kubectl create secret generic cacerts --from-file=…` makes).
    Cacerts {
        /// CA folder in Istio's plug-in layout.
        #[arg(long)]
        ca: PathBuf,
        /// Namespace.
        #[arg(long, default_value = "istio-system")]
        namespace: String,
        /// Write to this file (mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// A kubernetes.io/tls Secret from cert and key files.
    Tls {
        /// Secret name (the Gateway's credentialName).
        #[arg(long)]
        name: String,
        /// Namespace.
        #[arg(long, default_value = "istio-system")]
        namespace: String,
        /// Certificate (chain) PEM for tls.crt.
        #[arg(long)]
        cert: PathBuf,
        /// Private key PEM for tls.key.
        #[arg(long)]
        key: PathBuf,
        /// CA certificate PEM for ca.crt (for MUTUAL gateways).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Write to this file (mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
struct AcmArgs {
    /// Store folder; created, with its private CA, on first use.
    #[arg(long, default_value = "acm-store", global = true)]
    store: PathBuf,
    /// AWS region in ARNs [default for a new store: us-east-1].
    #[arg(long, global = true)]
    region: Option<String>,
    /// AWS account id in ARNs [default for a new store: 123456789012].
    #[arg(long, global = true)]
    account: Option<String>,
    #[command(subcommand)]
    command: AcmCommand,
}

#[derive(Debug, Subcommand)]
enum AcmCommand {
    /// Request (issue) a private certificate; prints its ARN and the Service annotation.
    Request {
        /// Domain name (CN and first SAN).
        #[arg(long)]
        domain_name: String,
        /// More DNS names (repeatable, or comma-separated).
        #[arg(long = "subject-alternative-names", value_delimiter = ',')]
        sans: Vec<String>,
        /// RSA_2048 (ACM's default), EC_prime256v1 or EC_secp384r1.
        #[arg(long, default_value = "RSA_2048")]
        key_algorithm: String,
        /// Validity in days (ACM private certificates: 395).
        #[arg(long, default_value_t = acm::DEFAULT_DAYS)]
        days: u32,
    },
    /// Describe a certificate (JSON with --json, in the shape of `aws acm describe-certificate`).
    Describe {
        /// Certificate ARN.
        #[arg(long)]
        certificate_arn: String,
    },
    /// Export certificate, chain and passphrase-encrypted PKCS#8 key as JSON (always JSON, like `aws acm export-certificate`).
    Export {
        /// Certificate ARN.
        #[arg(long)]
        certificate_arn: String,
        /// Passphrase for the private key (4–128 characters, no #, $ or %).
        #[arg(
            long,
            required_unless_present = "passphrase_file",
            conflicts_with = "passphrase_file"
        )]
        passphrase: Option<String>,
        /// File holding the passphrase (one trailing newline is ignored).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Write the JSON to this file (mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// List certificates in the store.
    List,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// Certificate files (PEM, possibly several certificates, or DER) or proxy
    /// dumps: `istioctl proxy-config secret <pod> -o json`, Envoy's
    /// /config_dump, `istioctl ztunnel-config certificates -o json`. The
    /// format is told from the content.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Compute time left at this RFC 3339 time instead of now.
    #[arg(long, value_parser = parse_time)]
    at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LintArg {
    /// Lint when the leaf has a spiffe:// URI SAN.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The leaf certificate (more certificates after it in the file count as
    /// intermediates), or a proxy dump (`istioctl proxy-config secret <pod> -o
    /// json`, Envoy's /config_dump, `istioctl ztunnel-config certificates -o
    /// json`), whose workload chain is verified against its own roots.
    #[arg(required_unless_present_any = ["cacerts", "same_root"])]
    leaf: Option<PathBuf>,
    /// Intermediates (may include the root).
    #[arg(long)]
    chain: Option<PathBuf>,
    /// Trusted root certificate(s); for a proxy dump, instead of the dump's ROOTCA / rootCerts.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Take --chain and --root from a CA folder (cert-chain.pem, root-cert.pem).
    #[arg(long, conflicts_with_all = ["chain", "root"])]
    ca: Option<PathBuf>,
    /// Check an Istio cacerts folder as istiod would at start-up, instead of a leaf.
    #[arg(long, conflicts_with_all = ["leaf", "chain", "root", "ca"])]
    cacerts: Option<PathBuf>,
    /// Check validity at this RFC 3339 time instead of now.
    #[arg(long, value_parser = parse_time)]
    at: Option<OffsetDateTime>,
    /// When to apply the SPIFFE X.509-SVID lint.
    #[arg(long, value_enum, default_value = "auto")]
    spiffe: LintArg,
    /// Check that the workload runs as this identity: <namespace>/<serviceaccount> or a SPIFFE ID.
    #[arg(long, value_name = "NS/SA", conflicts_with = "cacerts")]
    expect_identity: Option<String>,
    /// Whether these proxies (dumps, or PEM roots) trust the same root and verify each other's certificates.
    #[arg(long, num_args = 2.., value_name = "DUMP", conflicts_with_all = ["leaf", "chain", "root", "ca", "cacerts", "expect_identity"])]
    same_root: Vec<PathBuf>,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{e}: use RFC 3339, e.g. 2030-01-01T00:00:00Z"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprint!("{e}");
                return ExitCode::from(2);
            }
            // One line that says what to fix, not clap's multi-line block.
            let text = e.render().to_string();
            let line = text
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("For more information")
                        && !l.starts_with("Usage:")
                })
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("certgen: {line}");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("certgen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn show(paths: &[OutFile]) -> Vec<String> {
    paths.iter().map(|f| f.path.display().to_string()).collect()
}

fn wrote_text(files: &[OutFile]) -> String {
    files
        .iter()
        .map(|f| {
            if f.private {
                format!("{} (0600)", f.path.display())
            } else {
                f.path.display().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One command per function; the library does the work, these print it.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::Root(a) => root(a, json)?,
        Command::Intermediate(a) => intermediate(a, json)?,
        Command::Workload(a) => workload(a, json)?,
        Command::Server(a) => server(a, json)?,
        Command::Secret(c) => secret(c)?,
        Command::Acm(a) => return run_acm(a, json),
        Command::Inspect(a) => inspect(a, json)?,
        Command::Verify(a) => return verify(a, json),
    }
    Ok(ExitCode::SUCCESS)
}

fn root(a: RootArgs, json: bool) -> anyhow::Result<()> {
    let ca = Ca::new_root(&a.org, &a.cn, a.alg.into(), a.days, a.path_len)?;
    let files = vec![
        OutFile::public(a.out.join("root-cert.pem"), ca.cert_pem()),
        OutFile::private(a.out.join("root-key.pem"), ca.key_pem()),
    ];
    write_all(&files, a.force)?;
    let s = inspect::summarize(ca.cert_der(), OffsetDateTime::now_utc())?;
    if json {
        print_json(&json!({"dir": a.out, "files": show(&files), "certificate": s}))?;
    } else {
        println!("wrote {}", wrote_text(&files));
        println!(
            "root: {} (valid until {}, {})",
            s.subject, s.not_after, s.key
        );
    }
    Ok(())
}

fn intermediate(a: IntermediateArgs, json: bool) -> anyhow::Result<()> {
    let root = Ca::load_dir(&a.root)?;
    let ca = root.intermediate(&a.cluster, a.alg.into(), a.days)?;
    let out = a.out.unwrap_or_else(|| a.root.join(&a.cluster));
    let mut files = vec![
        OutFile::public(out.join("ca-cert.pem"), ca.cert_pem()),
        OutFile::private(out.join("ca-key.pem"), ca.key_pem()),
        OutFile::public(out.join("root-cert.pem"), ca.root_pem()),
        OutFile::public(out.join("cert-chain.pem"), ca.chain_pem()),
    ];
    if a.secret_yaml {
        files.push(OutFile::private(
            out.join("cacerts.yaml"),
            secret::cacerts_yaml(&ca, "istio-system"),
        ));
    }
    write_all(&files, a.force)?;
    let kubectl = secret::cacerts_kubectl(&out);
    if json {
        print_json(
            &json!({"dir": out, "files": show(&files), "subject": ca.subject(), "kubectl": kubectl}),
        )?;
    } else {
        println!("wrote {}", wrote_text(&files));
        println!("intermediate: {}", ca.subject());
        println!("install it with:\n  kubectl create namespace istio-system\n  {kubectl}");
    }
    Ok(())
}

fn workload(a: WorkloadArgs, json: bool) -> anyhow::Result<()> {
    let id = match a.spiffe_id {
        Some(id) => id,
        None => format!(
            "spiffe://{}/ns/{}/sa/{}",
            a.trust_domain,
            a.namespace.unwrap_or_default(),
            a.service_account.unwrap_or_default()
        ),
    };
    let validity = match (a.hours, a.days) {
        (Some(h), _) => Duration::from_secs(h.saturating_mul(3600)),
        (None, Some(d)) => Duration::from_secs(d.saturating_mul(86_400)),
        (None, None) => Duration::from_secs(24 * 3600),
    };
    let ca = Ca::load_dir(&a.ca)?;
    let leaf = ca.issue_workload(&id, a.alg.into(), validity)?;
    let files = vec![
        OutFile::public(a.out.join("cert.pem"), leaf.cert_pem.clone()),
        OutFile::private(a.out.join("key.pem"), leaf.key_pem),
        OutFile::public(a.out.join("chain.pem"), leaf.chain_pem),
        OutFile::public(a.out.join("root-cert.pem"), ca.root_pem()),
    ];
    write_all(&files, a.force)?;
    let der = inspect::certs_der(leaf.cert_pem.as_bytes(), "new certificate")?;
    let first = der.first().context("the new certificate does not parse")?;
    let s = inspect::summarize(first, OffsetDateTime::now_utc())?;
    if json {
        print_json(&json!({"dir": a.out, "files": show(&files), "certificate": s}))?;
    } else {
        println!("wrote {}", wrote_text(&files));
        println!("workload: {id} (valid until {}, {})", s.not_after, s.key);
    }
    Ok(())
}

fn server(a: ServerArgs, json: bool) -> anyhow::Result<()> {
    let ca = Ca::load_dir(&a.ca)?;
    let leaf = ca.issue_server(&a.dns, &a.ips, a.alg.into(), a.days)?;
    let name = a.secret_name.unwrap_or_else(|| {
        let base = a
            .dns
            .first()
            .map(|d| d.trim_start_matches("*.").replace('.', "-"))
            .unwrap_or_else(|| "ingress".into());
        format!("{base}-credential")
    });
    let yaml = secret::tls_yaml(
        &name,
        &a.secret_namespace,
        &chain::tls_crt(&leaf)?,
        &leaf.key_pem,
        Some(&ca.root_pem()),
    );
    let files = vec![
        OutFile::public(a.out.join("cert.pem"), leaf.cert_pem.clone()),
        OutFile::private(a.out.join("key.pem"), leaf.key_pem.clone()),
        OutFile::public(a.out.join("chain.pem"), leaf.chain_pem.clone()),
        OutFile::public(a.out.join("root-cert.pem"), ca.root_pem()),
        OutFile::private(a.out.join("tls-secret.yaml"), yaml),
    ];
    write_all(&files, a.force)?;
    if json {
        print_json(&json!({"dir": a.out, "files": show(&files), "secret_name": name}))?;
    } else {
        println!("wrote {}", wrote_text(&files));
        println!(
            "apply the Secret with: kubectl apply -f {}",
            a.out.join("tls-secret.yaml").display()
        );
        println!("and set credentialName: {name} on the Gateway's TLS server");
    }
    Ok(())
}

fn secret(command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Cacerts {
            ca,
            namespace,
            out,
            force,
        } => {
            let loaded = Ca::load_dir(&ca)?;
            emit_yaml(secret::cacerts_yaml(&loaded, &namespace), out, force)
        }
        SecretCommand::Tls {
            name,
            namespace,
            cert,
            key,
            ca_cert,
            out,
            force,
        } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let cert_text = read(&cert)?;
            inspect::certs_der(cert_text.as_bytes(), &cert.display().to_string())?;
            let key_text = read(&key)?;
            if !key_text.contains("PRIVATE KEY-----") {
                bail!(
                    "{} holds no PEM private key: pass the key file with --key",
                    key.display()
                );
            }
            let ca_text = ca_cert.as_deref().map(read).transpose()?;
            emit_yaml(
                secret::tls_yaml(&name, &namespace, &cert_text, &key_text, ca_text.as_deref()),
                out,
                force,
            )
        }
    }
}

fn inspect(a: InspectArgs, json: bool) -> anyhow::Result<()> {
    let now = a.at.unwrap_or_else(OffsetDateTime::now_utc);
    let mut all = Vec::new();
    for f in &a.files {
        let input = proxy::read_file(f)?;
        let entries = inspect::inspect_input(&input, now)?;
        all.extend(entries.into_iter().map(|e| (f.clone(), e)));
    }
    if json {
        let v: Vec<_> = all.iter().map(|(_, e)| e).collect();
        return print_json(&v);
    }
    for (i, (f, e)) in all.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match &e.source {
            Some(src) => println!(
                "== {} [{}] {}",
                f.display(),
                i + 1,
                inspect::source_text(src)
            ),
            None => println!("== {} [{}]", f.display(), i + 1),
        }
        print!("{}", inspect::render(&e.summary));
    }
    Ok(())
}

/// Exit 0 when every check passes, 1 when one fails.
fn verdict(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn verify(a: VerifyArgs, json: bool) -> anyhow::Result<ExitCode> {
    let at = a.at;
    let spiffe = match a.spiffe {
        LintArg::Auto => SpiffeLint::Auto,
        LintArg::Always => SpiffeLint::Always,
        LintArg::Never => SpiffeLint::Never,
    };
    let opts = Options { at, spiffe };
    let expect = a
        .expect_identity
        .as_deref()
        .map(verify::ExpectedIdentity::parse)
        .transpose()?;
    if !a.same_root.is_empty() {
        let mut inputs = Vec::new();
        for f in &a.same_root {
            inputs.push((f.display().to_string(), proxy::read_file(f)?));
        }
        let report = verify::same_root(&inputs, opts);
        if json {
            print_json(&report)?;
        } else {
            print!("{}", verify::render_same_root(&report));
        }
        return Ok(verdict(report.ok));
    }
    if let Some(dir) = a.cacerts {
        return print_report(verify::verify_ca_dir(&dir, at)?, json);
    }
    let leaf = a.leaf.context("pass the leaf certificate file")?;
    let input = proxy::read_file(&leaf)?;
    let files = match &a.ca {
        Some(dir) => ChainFiles::from_ca_dir(dir)?,
        None => ChainFiles {
            chain: a.chain,
            root: a.root,
        },
    };
    if input.format.is_proxy() {
        let what = leaf.display().to_string();
        let report = chain::verify_proxy_with(&input, &what, &files, expect.as_ref(), opts)?;
        if json {
            print_json(&report)?;
        } else {
            print!("{}", verify::render_proxy(&report));
        }
        return Ok(verdict(report.ok));
    }
    let root = files.root.context(
        "pass --root or --ca: a certificate file carries no trust anchor (a proxy dump does)",
    )?;
    let report =
        chain::verify_leaf_file(&leaf, files.chain.as_deref(), &root, expect.as_ref(), opts)?;
    print_report(report, json)
}

fn print_report(report: verify::Report, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&report)?;
    } else {
        print!("{}", verify::render(&report));
    }
    Ok(verdict(report.ok))
}

fn emit_yaml(yaml: String, out: Option<PathBuf>, force: bool) -> anyhow::Result<()> {
    match out {
        Some(p) => {
            write_all(&[OutFile::private(&p, yaml)], force)?;
            eprintln!("wrote {} (0600)", p.display());
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

fn run_acm(a: AcmArgs, json: bool) -> anyhow::Result<ExitCode> {
    match a.command {
        AcmCommand::Request {
            domain_name,
            sans,
            key_algorithm,
            days,
        } => {
            let alg: AcmKeyAlgorithm = key_algorithm.parse()?;
            let store = Store::open_or_create(&a.store, a.region.as_deref(), a.account.as_deref())?;
            let r = store.request(&domain_name, &sans, alg, days)?;
            if json {
                print_json(&r)?;
            } else {
                println!("{}", r.certificate_arn);
                println!("add this annotation to the LoadBalancer Service:");
                println!("  {}", acm::service_annotation(&r.certificate_arn));
            }
        }
        AcmCommand::Describe { certificate_arn } => {
            let store = Store::open_matching(&a.store, a.region.as_deref(), a.account.as_deref())?;
            let d = store.describe(&certificate_arn)?;
            if json {
                print_json(&d)?;
            } else {
                let c = &d.certificate;
                let t = |s: i64| {
                    OffsetDateTime::from_unix_timestamp(s)
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                };
                println!("ARN:          {}", c.certificate_arn);
                println!("Domain:       {}", c.domain_name);
                println!("SANs:         {}", c.subject_alternative_names.join(", "));
                println!("Status:       {} ({})", c.status, c.kind);
                println!("Serial:       {}", c.serial);
                println!("Key:          {}", c.key_algorithm.name());
                println!("Issuer:       {}", c.issuer);
                println!("Not before:   {}", t(c.not_before));
                println!("Not after:    {}", t(c.not_after));
                println!("CA ARN:       {}", c.certificate_authority_arn);
                println!(
                    "Annotation:   {}",
                    acm::service_annotation(&c.certificate_arn)
                );
            }
        }
        AcmCommand::Export {
            certificate_arn,
            passphrase,
            passphrase_file,
            out,
            force,
        } => {
            let pass = match (passphrase, passphrase_file) {
                (Some(p), _) => p,
                (None, Some(f)) => {
                    let s = std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?;
                    s.strip_suffix('\n').unwrap_or(&s).to_string()
                }
                (None, None) => bail!("pass --passphrase or --passphrase-file"),
            };
            let store = Store::open_matching(&a.store, a.region.as_deref(), a.account.as_deref())?;
            let e = store.export(&certificate_arn, pass.as_bytes())?;
            let text = serde_json::to_string_pretty(&e)?;
            match out {
                Some(p) => {
                    write_all(&[OutFile::private(&p, format!("{text}\n"))], force)?;
                    eprintln!("wrote {} (0600)", p.display());
                }
                None => println!("{text}"),
            }
        }
        AcmCommand::List => {
            let store = Store::open_matching(&a.store, a.region.as_deref(), a.account.as_deref())?;
            let l = store.list()?;
            if json {
                print_json(&l)?;
            } else if l.certificate_summary_list.is_empty() {
                println!("no certificates in {}", a.store.display());
            } else {
                for c in &l.certificate_summary_list {
                    println!(
                        "{}  {}  {}  {}",
                        c.certificate_arn,
                        c.domain_name,
                        c.status,
                        c.key_algorithm.name()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
