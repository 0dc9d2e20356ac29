//! TLS on every hop: the trust roots for Postgres and Redis, and the mesh's
//! own private CA for service-to-service gRPC.
//!
//! **Trust roots** ([`TrustRoots`]) are the system's CA bundle plus the PEM
//! files named by `SSL_CERT_FILE` (the OpenSSL convention, here adding to the
//! system bundle rather than replacing it) and `TREVEN_TLS_CA_FILE` (the RDS
//! CA bundle in the image). Postgres (`sslmode=verify-full`) and Redis
//! (`rediss://`) verify their servers against them.
//!
//! **The mesh CA** ([`MeshTls`]) is derived from a random seed held in
//! Secrets Manager (`TREVEN_MESH_CA_SEED`, injected by ECS): the seed hashes
//! to an Ed25519 key, and the CA certificate is built deterministically from
//! it, so every task computes the same CA and CloudFormation can generate the
//! seed (no bootstrap step, no ACM Private CA at $400 a month). Each gRPC
//! server issues itself a short-lived leaf certificate for its Cloud Map
//! names (`TREVEN_MESH_TLS_NAMES`) and re-issues it in-process before it
//! expires; clients trust only the mesh CA (and, during a rotation, the CA of
//! `TREVEN_MESH_CA_SEED_PREVIOUS`) and verify the service's DNS name.
//!
//! The mesh TLS settings are installed once per process ([`install`]), like
//! the crypto provider and the tracing subscriber, so every channel and
//! server built afterwards uses them and no call site can forget.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sha2::{Digest as _, Sha256};

use crate::config::{ConfigError, Env, Environment};

/// How long a leaf certificate is valid, and how often it is re-issued.
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
const LEAF_REISSUE: Duration = Duration::from_secs(24 * 3600);

/// Where distributions keep the system CA bundle (the same list
/// `openssl-probe` and `rustls-native-certs` search). Read directly because
/// `rustls-native-certs` treats `SSL_CERT_FILE` as a replacement for the
/// system bundle, and here it adds to it.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Installs aws-lc-rs (already built for the AWS SDK) as rustls' process-wide
/// crypto provider. Idempotent; crates that build rustls configs with
/// `ClientConfig::builder()` (the Redis client) need one installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Extra trust roots for Postgres and Redis, read at start-up.
#[derive(Clone, Default)]
pub struct TrustRoots {
    /// PEM of the extra bundles (`SSL_CERT_FILE`, `TREVEN_TLS_CA_FILE`).
    extra_pem: Vec<u8>,
}

impl fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustRoots")
            .field("extra_pem_bytes", &self.extra_pem.len())
            .finish()
    }
}

impl TrustRoots {
    /// Reads `SSL_CERT_FILE` and `TREVEN_TLS_CA_FILE` (each optional); a file
    /// that is missing or holds no certificate is an error naming the
    /// variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut extra_pem = Vec::new();
        for variable in ["SSL_CERT_FILE", "TREVEN_TLS_CA_FILE"] {
            if let Some(path) = env.get(variable) {
                let pem = read_bundle(Path::new(&path)).map_err(|e| env.error(variable, e))?;
                extra_pem.extend_from_slice(&pem);
                extra_pem.push(b'\n');
            }
        }
        Ok(Self { extra_pem })
    }

    /// The extra roots only, as PEM; `None` when there are none. Postgres
    /// takes these (sqlx adds them to the public roots it carries).
    pub fn extra_pem(&self) -> Option<&[u8]> {
        (!self.extra_pem.is_empty()).then_some(self.extra_pem.as_slice())
    }

    /// The system bundle plus the extra roots, as PEM (the Redis client uses
    /// exactly the roots it is given).
    pub fn system_and_extra_pem(&self) -> Vec<u8> {
        let mut pem = SYSTEM_BUNDLES
            .iter()
            .find_map(|path| std::fs::read(path).ok())
            .unwrap_or_default();
        pem.push(b'\n');
        pem.extend_from_slice(&self.extra_pem);
        pem
    }
}

fn read_bundle(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM bundle: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(pem)
}

/// A mesh CA derived from a seed.
struct MeshCa {
    certificate: CertificateDer<'static>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl MeshCa {
    fn derive(seed: &str) -> Result<Self, String> {
        let secret: [u8; 32] = Sha256::new()
            .chain_update(b"treven mesh tls ca v1\0")
            .chain_update(seed.trim().as_bytes())
            .finalize()
            .into();
        let pkcs8 = ed25519_pkcs8(&secret);
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8),
            &rcgen::PKCS_ED25519,
        )
        .map_err(|e| format!("cannot derive the CA key: {e}"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Treven");
        name.push(DnType::CommonName, "Treven mesh CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // Fixed fields make the certificate the same in every task (Ed25519
        // signatures are deterministic).
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2045, 1, 1);
        params.serial_number = Some(SerialNumber::from_slice(&secret[..16]));
        let certificate = params
            .self_signed(&key)
            .map_err(|e| format!("cannot build the CA certificate: {e}"))?;
        Ok(Self {
            pem: certificate.pem(),
            certificate: certificate.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }
}

/// PKCS#8 v1 of an Ed25519 private key (RFC 8410: a fixed prefix, then the
/// 32-byte seed).
fn ed25519_pkcs8(secret: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(secret);
    der
}

/// The mesh's TLS material: its CA (and the previous one during a rotation)
/// and the names this process's servers answer to.
pub struct MeshTls {
    current: MeshCa,
    previous: Option<MeshCa>,
    names: Vec<String>,
}

impl fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshTls")
            .field("rotating", &self.previous.is_some())
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl MeshTls {
    /// Derives the CA from `seed` (and `previous`, trusted too), for servers
    /// answering to `names`.
    pub fn from_seed(
        seed: &str,
        previous: Option<&str>,
        names: Vec<String>,
    ) -> Result<Self, String> {
        Ok(Self {
            current: MeshCa::derive(seed)?,
            previous: previous.map(MeshCa::derive).transpose()?,
            names,
        })
    }

    /// PEM of the CA certificates clients trust (for `grpcurl -cacert`).
    pub fn ca_pem(&self) -> String {
        let mut pem = self.current.pem.clone();
        if let Some(previous) = &self.previous {
            pem.push_str(&previous.pem);
        }
        pem
    }

    /// The names leaf certificates are issued for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// tonic client settings for a service reached under `domain` (its
    /// Cloud Map name): only the mesh CA is trusted.
    pub fn client_config(&self, domain: &str) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(self.ca_pem()))
            .domain_name(domain)
    }

    /// A rustls client config trusting only the mesh CA (for probes).
    fn rustls_client(&self) -> Result<rustls::ClientConfig, String> {
        client_config_for(self.ca_pem().as_bytes())
    }

    /// Issues a leaf certificate for this process's names, signed by the
    /// current CA, valid for a week.
    fn issue_leaf(&self) -> Result<Arc<CertifiedKey>, String> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot generate a leaf key: {e}"))?;
        let mut params = CertificateParams::new(self.names.clone())
            .map_err(|e| format!("TREVEN_MESH_TLS_NAMES: {e}"))?;
        let now = time::OffsetDateTime::now_utc();
        // An hour of slack for clocks that disagree.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + LEAF_VALIDITY;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            self.names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = name;
        let leaf = params
            .signed_by(&key, &self.current.issuer)
            .map_err(|e| format!("cannot sign the leaf certificate: {e}"))?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = provider()
            .key_provider
            .load_private_key(private)
            .map_err(|e| format!("cannot load the leaf key: {e}"))?;
        Ok(Arc::new(CertifiedKey::new(
            vec![leaf.der().clone(), self.current.certificate.clone()],
            signing,
        )))
    }

    /// A TLS acceptor for a gRPC server (TLS 1.2+, ALPN h2) whose leaf is
    /// re-issued every day until `stop` is cancelled.
    pub fn server_acceptor(
        self: &Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<tokio_rustls::TlsAcceptor, String> {
        if self.names.is_empty() {
            return Err("TREVEN_MESH_TLS_NAMES: a TLS server needs at least one name".into());
        }
        let resolver = Arc::new(LeafResolver(RwLock::new(self.issue_leaf()?)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tls = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(LEAF_REISSUE) => {}
                }
                match tls.issue_leaf() {
                    Ok(leaf) => {
                        if let Ok(mut current) = resolver.0.write() {
                            *current = leaf;
                        }
                        tracing::info!("mesh leaf certificate re-issued");
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot re-issue the mesh leaf certificate")
                    }
                }
            }
        });
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Opens a TLS connection to `address` as `domain` with the mesh CA; see
    /// [`probe`].
    pub async fn probe(
        &self,
        variable: &str,
        domain: &str,
        address: SocketAddr,
        limit: Duration,
    ) -> Result<(), ProbeError> {
        let config = self.rustls_client().map_err(ProbeError::Refused)?;
        probe(config, variable, domain, address, limit).await
    }
}

/// Why a TLS probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No TCP connection (nothing listens yet, or the host is down): worth
    /// trying again later.
    #[error("{0}")]
    Unreachable(String),
    /// A TCP connection, but no TLS session: a plaintext server (its
    /// handshake fails or never completes), a certificate from another CA or
    /// for another name. Retrying cannot fix it.
    #[error("{0}")]
    Refused(String),
}

/// Opens a TLS connection to `address` as `domain` with `config` and says
/// why it fails, naming `variable` and the peer.
pub async fn probe(
    config: rustls::ClientConfig,
    variable: &str,
    domain: &str,
    address: SocketAddr,
    limit: Duration,
) -> Result<(), ProbeError> {
    let peer = format!("{domain} ({address})");
    let name = ServerName::try_from(domain.to_owned()).map_err(|e| {
        ProbeError::Refused(format!("{variable}: {domain:?} is not a TLS name: {e}"))
    })?;
    let tcp = match tokio::time::timeout(limit, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => {
            return Err(ProbeError::Unreachable(format!(
                "{variable}: cannot connect to {peer}: {error}"
            )));
        }
        Err(_) => {
            return Err(ProbeError::Unreachable(format!(
                "{variable}: no TCP connection to {peer} within {limit:?}"
            )));
        }
    };
    let handshake = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp);
    match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(ProbeError::Refused(format!(
            "{variable}: TLS to {peer} failed: {}",
            describe_tls_error(&error)
        ))),
        Err(_) => Err(ProbeError::Refused(format!(
            "{variable}: TLS to {peer} failed: the handshake did not complete within {limit:?} (a plaintext server?)"
        ))),
    }
}

/// A rustls client config trusting `pem`'s certificates only.
pub fn client_config_for(pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem).flatten() {
        // A bundle may hold certificates webpki cannot use; skip those.
        let _ = roots.add(certificate);
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A readable reason for a failed handshake.
pub fn describe_tls_error(error: &std::io::Error) -> String {
    let inner = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(reason)) => {
            format!("the server's certificate is not trusted ({reason:?})")
        }
        Some(rustls::Error::InvalidMessage(_)) => {
            "the peer did not speak TLS (a plaintext server or client?)".into()
        }
        Some(other) => other.to_string(),
        None => error.to_string(),
    }
}

#[derive(Debug)]
struct LeafResolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|leaf| leaf.clone())
    }
}

/// Where the mesh CA seed comes from.
#[derive(Debug, Clone)]
pub enum MeshTlsSource {
    /// No mesh TLS (local runs only).
    Off,
    /// The seed itself (`TREVEN_MESH_CA_SEED`, injected by ECS).
    Seed {
        /// The seed.
        seed: String,
        /// `TREVEN_MESH_CA_SEED_PREVIOUS`, trusted during a rotation.
        previous: Option<String>,
        /// `TREVEN_MESH_TLS_NAMES`.
        names: Vec<String>,
    },
    /// A Secrets Manager secret holding the seed
    /// (`TREVEN_MESH_CA_SEED_SECRET_ID`, for the AgentCore runtime whose
    /// environment cannot hold secrets).
    Secret {
        /// Secret id or ARN.
        secret_id: String,
        /// `TREVEN_MESH_CA_SEED_PREVIOUS`.
        previous: Option<String>,
        /// `TREVEN_MESH_TLS_NAMES`.
        names: Vec<String>,
    },
}

impl MeshTlsSource {
    /// Reads the seed variables. `serves_grpc` says whether this process
    /// runs a gRPC server (only then are `TREVEN_MESH_TLS_NAMES` read). In
    /// `dev` and `prod` the mesh is TLS-only: a seed is required.
    pub fn from_env(env: &Env, serves_grpc: bool) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        let seed = env.get("TREVEN_MESH_CA_SEED");
        let secret_id = env.get("TREVEN_MESH_CA_SEED_SECRET_ID");
        if seed.is_none() && secret_id.is_none() {
            if environment != Environment::Local {
                return Err(env.error(
                    "TREVEN_MESH_CA_SEED",
                    "is required outside local runs (or TREVEN_MESH_CA_SEED_SECRET_ID): the mesh is TLS-only in AWS",
                ));
            }
            return Ok(Self::Off);
        }
        let previous = env.get("TREVEN_MESH_CA_SEED_PREVIOUS");
        let names = if serves_grpc {
            let raw = env.get("TREVEN_MESH_TLS_NAMES").ok_or_else(|| {
                env.error(
                    "TREVEN_MESH_TLS_NAMES",
                    "is required when a gRPC server runs with mesh TLS: the DNS names its certificate is issued for",
                )
            })?;
            let names: Vec<String> = raw
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
            CertificateParams::new(names.clone())
                .map_err(|e| env.error("TREVEN_MESH_TLS_NAMES", format!("not DNS names: {e}")))?;
            names
        } else {
            Vec::new()
        };
        if let Some(seed) = seed {
            if seed.trim().len() < 32 {
                return Err(env.error(
                    "TREVEN_MESH_CA_SEED",
                    "must be at least 32 characters of randomness",
                ));
            }
            return Ok(Self::Seed {
                seed,
                previous,
                names,
            });
        }
        Ok(Self::Secret {
            secret_id: secret_id.unwrap_or_default(),
            previous,
            names,
        })
    }

    /// Whether any mesh TLS is configured.
    pub fn is_on(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// Derives the CA (fetching the seed from Secrets Manager if needed).
    pub async fn load(&self) -> anyhow::Result<Option<MeshTls>> {
        let (seed, previous, names) = match self {
            Self::Off => return Ok(None),
            Self::Seed {
                seed,
                previous,
                names,
            } => (seed.clone(), previous, names),
            Self::Secret {
                secret_id,
                previous,
                names,
            } => {
                let (seed, rotated_from) = crate::keys::secret_strings(secret_id)
                    .await
                    .with_context(|| {
                        format!("TREVEN_MESH_CA_SEED_SECRET_ID: cannot read secret {secret_id}")
                    })?;
                let previous = previous.clone().or(rotated_from);
                let tls = MeshTls::from_seed(&seed, previous.as_deref(), names.clone())
                    .map_err(|e| anyhow::anyhow!("TREVEN_MESH_CA_SEED_SECRET_ID: {e}"))?;
                return Ok(Some(tls));
            }
        };
        let tls = MeshTls::from_seed(&seed, previous.as_deref(), names.clone())
            .map_err(|e| anyhow::anyhow!("TREVEN_MESH_CA_SEED: {e}"))?;
        Ok(Some(tls))
    }
}

static INSTALLED: RwLock<Option<Arc<MeshTls>>> = RwLock::new(None);
static TRUST_ROOTS: RwLock<Option<TrustRoots>> = RwLock::new(None);

/// Makes `roots` the trust roots of this process's Redis clients (read once
/// at start with the rest of the configuration).
pub fn install_trust_roots(roots: TrustRoots) {
    if let Ok(mut installed) = TRUST_ROOTS.write() {
        *installed = Some(roots);
    }
}

/// The installed trust roots (the system roots alone when none were).
pub fn trust_roots() -> TrustRoots {
    TRUST_ROOTS
        .read()
        .ok()
        .and_then(|roots| roots.clone())
        .unwrap_or_default()
}

/// Makes `tls` the mesh TLS of this process: servers started and channels
/// built afterwards use it (`None` turns it off, for tests).
pub fn install(tls: Option<MeshTls>) {
    install_crypto_provider();
    if let Ok(mut installed) = INSTALLED.write() {
        *installed = tls.map(Arc::new);
    }
}

/// The installed mesh TLS, if any.
pub fn installed() -> Option<Arc<MeshTls>> {
    INSTALLED.read().ok().and_then(|tls| tls.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01";

    #[test]
    fn every_task_derives_the_same_ca_from_one_seed() {
        let a = MeshTls::from_seed(SEED, None, vec![]).expect("derive");
        let b = MeshTls::from_seed(SEED, None, vec![]).expect("derive");
        assert_eq!(a.ca_pem(), b.ca_pem());
        let other = MeshTls::from_seed(&SEED.replace('0', "1"), None, vec![]).expect("derive");
        assert_ne!(a.ca_pem(), other.ca_pem());
    }

    #[test]
    fn aws_needs_a_seed_and_servers_need_names() {
        let env = Env::from_pairs([("TREVEN_ENV", "prod")]);
        let error = MeshTlsSource::from_env(&env, false).expect_err("no seed in prod");
        assert_eq!(error.variable, "TREVEN_MESH_CA_SEED");
        let env = Env::from_pairs([("TREVEN_ENV", "prod"), ("TREVEN_MESH_CA_SEED", SEED)]);
        let error = MeshTlsSource::from_env(&env, true).expect_err("no names");
        assert_eq!(error.variable, "TREVEN_MESH_TLS_NAMES");
        assert!(
            MeshTlsSource::from_env(&env, false).is_ok(),
            "a client needs no names"
        );
        let env = Env::from_pairs([("TREVEN_MESH_CA_SEED", "short")]);
        let error = MeshTlsSource::from_env(&env, false).expect_err("weak seed");
        assert_eq!(error.variable, "TREVEN_MESH_CA_SEED");
        let env = Env::from_pairs::<&str, &str>([]);
        assert!(!MeshTlsSource::from_env(&env, true).expect("local").is_on());
    }

    #[test]
    fn a_missing_or_empty_ca_file_names_its_variable() {
        let env = Env::from_pairs([("TREVEN_TLS_CA_FILE", "/nonexistent/ca.pem")]);
        assert_eq!(
            TrustRoots::from_env(&env).expect_err("missing").variable,
            "TREVEN_TLS_CA_FILE"
        );
        let dir = std::env::temp_dir().join(format!("treven-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here").expect("write");
        let env = Env::from_pairs([("SSL_CERT_FILE", empty.display().to_string())]);
        assert_eq!(
            TrustRoots::from_env(&env).expect_err("empty").variable,
            "SSL_CERT_FILE"
        );
        let tls = MeshTls::from_seed(SEED, None, vec![]).expect("derive");
        let good = dir.join("ca.pem");
        std::fs::write(&good, tls.ca_pem()).expect("write");
        let env = Env::from_pairs([("TREVEN_TLS_CA_FILE", good.display().to_string())]);
        let roots = TrustRoots::from_env(&env).expect("a bundle");
        assert!(roots.extra_pem().is_some());
        assert!(roots.system_and_extra_pem().len() > tls.ca_pem().len());
    }

    async fn tls_server(tls: Arc<MeshTls>) -> SocketAddr {
        let acceptor = tls
            .server_acceptor(tokio_util::sync::CancellationToken::new())
            .expect("acceptor");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(socket).await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn a_client_accepts_the_mesh_ca_and_refuses_another_or_plaintext() {
        install_crypto_provider();
        let names = vec!["tenants.treven.internal".to_owned()];
        let server = Arc::new(MeshTls::from_seed(SEED, None, names).expect("derive"));
        let address = tls_server(server.clone()).await;
        let limit = Duration::from_secs(5);
        server
            .probe(
                "TREVEN_TENANTS_URL",
                "tenants.treven.internal",
                address,
                limit,
            )
            .await
            .expect("same CA, right name");

        let wrong_name = server
            .probe(
                "TREVEN_TENANTS_URL",
                "reports.treven.internal",
                address,
                limit,
            )
            .await
            .expect_err("name not on the certificate")
            .to_string();
        assert!(wrong_name.contains("not trusted"), "{wrong_name}");

        let stranger = MeshTls::from_seed(&SEED.replace('a', "b"), None, vec![]).expect("derive");
        let other_ca = stranger
            .probe(
                "TREVEN_TENANTS_URL",
                "tenants.treven.internal",
                address,
                limit,
            )
            .await
            .expect_err("another CA")
            .to_string();
        assert!(
            other_ca.starts_with("TREVEN_TENANTS_URL: TLS to tenants.treven.internal (127.0.0.1:"),
            "{other_ca}"
        );
        assert!(other_ca.contains("not trusted"), "{other_ca}");

        // During a rotation a client trusting both CAs reaches either.
        let rotating =
            MeshTls::from_seed(&SEED.replace('a', "b"), Some(SEED), vec![]).expect("derive");
        rotating
            .probe(
                "TREVEN_TENANTS_URL",
                "tenants.treven.internal",
                address,
                limit,
            )
            .await
            .expect("the previous CA is still trusted");

        // A plaintext gRPC server.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let plain_address = plain.local_addr().expect("address");
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok((mut socket, _)) = plain.accept().await {
                // What an HTTP/2 server without TLS answers: a SETTINGS frame.
                let _ = socket.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
            }
        });
        let plaintext = server
            .probe(
                "TREVEN_TENANTS_URL",
                "tenants.treven.internal",
                plain_address,
                limit,
            )
            .await
            .expect_err("plaintext");
        assert!(matches!(plaintext, ProbeError::Refused(_)), "{plaintext:?}");
        let plaintext = plaintext.to_string();
        assert!(plaintext.contains("plaintext"), "{plaintext}");
        assert!(plaintext.contains("TREVEN_TENANTS_URL"), "{plaintext}");

        // A plaintext server that waits for the client to speak first (as
        // Redis and an HTTP/2 server do): the handshake never completes.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let silent_address = silent.local_addr().expect("address");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let waited = server
            .probe(
                "TREVEN_TENANTS_URL",
                "tenants.treven.internal",
                silent_address,
                Duration::from_millis(300),
            )
            .await
            .expect_err("no handshake");
        assert!(matches!(waited, ProbeError::Refused(_)), "{waited:?}");
        assert!(waited.to_string().contains("plaintext"), "{waited}");

        // Nothing listening: worth retrying, not a TLS refusal.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let nobody = server
            .probe(
                "TREVEN_TENANTS_URL",
                "tenants.treven.internal",
                closed,
                limit,
            )
            .await
            .expect_err("nothing listens");
        assert!(matches!(nobody, ProbeError::Unreachable(_)), "{nobody:?}");
    }
}
