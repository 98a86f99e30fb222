//! How the service connects to PostgreSQL: a libpq connection string, as a URL
//! (`postgresql://user@host/db?sslmode=verify-full&sslrootcert=/etc/jifen/db-ca.pem`) or as
//! `key=value` pairs, with libpq's TLS options honoured (tokio-postgres alone knows only
//! `disable`, `prefer` and `require`, and no `sslrootcert`):
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (the default) | if the server offers TLS | no |
//! | `require` | always | no; against `sslrootcert` if one is given (as libpq) |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert`, and the host name |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the system's roots (then
//! `verify-full` by default, and nothing weaker, as libpq 16). Without it, `verify-ca` and
//! `verify-full` use `~/.postgresql/root.crt`, as libpq does. TLS is rustls on ring, as the gRPC
//! server's. `allow` tries TLS first (libpq tries plaintext first): it never ends in
//! plaintext where libpq would have encrypted.

use super::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Not at all (`prefer`, `require`): encrypted against a passive eavesdropper only.
    Nothing,
    /// The chain to a trusted root, not the name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// A parsed connection string: where and as whom, and how TLS is done.
#[derive(Clone)]
pub struct Connection {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    verify: Verify,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("config", &self.config).field("verify", &self.verify).finish()
    }
}

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::ConnectionString(message.into())
}

impl Connection {
    /// Parses a libpq connection string (URL or `key=value`), reading `sslrootcert`.
    pub fn parse(conn: &str) -> Result<Connection, StoreError> {
        let (rest, mode, root) = split_tls_options(conn)?;
        let (pg_mode, verify) = match mode.as_deref() {
            None if root.as_deref() == Some("system") => ("require", Verify::Full),
            None | Some("prefer") | Some("allow") => ("prefer", Verify::Nothing),
            Some("disable") => ("disable", Verify::Nothing),
            Some("require") if root.is_some() => ("require", Verify::Chain),
            Some("require") => ("require", Verify::Nothing),
            Some("verify-ca") => ("require", Verify::Chain),
            Some("verify-full") => ("require", Verify::Full),
            Some(other) => {
                return Err(bad(format!("sslmode \"{other}\" is not one of disable, allow, prefer, require, verify-ca, verify-full")))
            }
        };
        if root.as_deref() == Some("system") && verify != Verify::Full {
            return Err(bad(format!("sslmode \"{}\" may not be used with sslrootcert=system: use verify-full", mode.unwrap_or_default())));
        }
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e| bad(format!("{e}")))?;
        config.ssl_mode(match pg_mode {
            "disable" => tokio_postgres::config::SslMode::Disable,
            "prefer" => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::Nothing => Arc::new(AnyCertificate(provider.clone())),
            Verify::Chain | Verify::Full => {
                let roots = Arc::new(roots(root.as_deref())?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| bad(format!("sslrootcert: {e}")))?;
                if verify == Verify::Full {
                    webpki
                } else {
                    Arc::new(AnyName(webpki))
                }
            }
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Connection { config, tls: MakeRustlsConnect::new(tls), verify })
    }

    /// Where and as whom.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// How the server's certificate is checked.
    pub fn verify(&self) -> Verify {
        self.verify
    }

    /// The same server, password and TLS, as another role.
    pub fn with_user(&self, user: &str) -> Connection {
        let mut config = self.config.clone();
        config.user(user);
        Connection { config, tls: self.tls.clone(), verify: self.verify }
    }

    /// The same connection with this password.
    pub fn with_password(&self, password: &str) -> Connection {
        let mut config = self.config.clone();
        config.password(password);
        Connection { config, tls: self.tls.clone(), verify: self.verify }
    }

    /// Connects one client, driving its connection on a task (which ends with the client).
    pub async fn connect(&self) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), StoreError> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres connection ended");
            }
        });
        Ok((client, task))
    }

    /// A pool's manager for this connection.
    pub fn manager(&self) -> deadpool_postgres::Manager {
        use deadpool_postgres::{ManagerConfig, RecyclingMethod};
        deadpool_postgres::Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        )
    }
}

/// The trusted roots of `sslrootcert`: `system`, a PEM file, or libpq's default file.
fn roots(root: Option<&str>) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    if root == Some("system") {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(bad("sslrootcert=system: the system has no trusted root certificates"));
        }
        return Ok(store);
    }
    let path = match root {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt")).unwrap_or_default(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .and_then(|certs| certs.collect())
        .map_err(|e| bad(format!("sslrootcert {}: {e} (a PEM file of CA certificates is needed to verify the server)", path.display())))?;
    for cert in certs {
        store.add(cert).map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))?;
    }
    if store.is_empty() {
        return Err(bad(format!("sslrootcert {}: no certificate in the file", path.display())));
    }
    Ok(store)
}

/// Takes `sslmode` and `sslrootcert` out of a connection string: the rest (for
/// tokio-postgres), the mode and the root.
fn split_tls_options(conn: &str) -> Result<(String, Option<String>, Option<String>), StoreError> {
    let (mut mode, mut root) = (None, None);
    let is_url = conn.starts_with("postgres://") || conn.starts_with("postgresql://");
    if is_url {
        let Some((base, query)) = conn.split_once('?') else {
            return Ok((conn.to_owned(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| bad(format!("parameter {key}: not UTF-8 once percent-decoded")))?
                .into_owned();
            match key {
                "sslmode" => mode = Some(decoded),
                "sslrootcert" => root = Some(decoded),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, mode, root));
    }
    let mut kept = Vec::new();
    for (key, value) in key_values(conn)? {
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))),
        }
    }
    Ok((kept.join(" "), mode, root))
}

/// The pairs of a `key=value` connection string, libpq's way: spaces around `=` allowed, a
/// value single-quoted or bare, `\` escaping the next character in either.
fn key_values(conn: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut pairs = Vec::new();
    let mut chars = conn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(format!("\"{key}\" has no \"=\" after it")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(bad(format!("the value of \"{key}\" has no closing quote"))),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// `prefer` and `require` without a root: any certificate (the handshake's signature is still
/// checked, so the session is with whoever holds that certificate's key).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name may be any.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name only once the chain is good: a name error means a good chain.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(conn: &str) -> (String, Option<String>, Option<String>) {
        split_tls_options(conn).unwrap()
    }

    #[test]
    fn tls_options_are_taken_out_of_a_url() {
        let (rest, mode, root) =
            split("postgresql://jifen@db:5432/jifen?sslmode=verify-full&connect_timeout=5&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(rest, "postgresql://jifen@db:5432/jifen?connect_timeout=5");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(split("postgres://db/jifen?sslmode=require").0, "postgres://db/jifen");
        assert_eq!(split("postgres://db/jifen"), ("postgres://db/jifen".into(), None, None));
    }

    #[test]
    fn tls_options_are_taken_out_of_key_values() {
        let (rest, mode, root) = split("host=db  user = jifen password='its' sslmode=verify-ca sslrootcert='/etc/my ca.pem'");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/etc/my ca.pem"));
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_user(), Some("jifen"));
        assert_eq!(config.get_password(), Some(&b"its"[..]));
        let (rest, _, _) = split(r"host=db password='a\'b c\\d'");
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&br"a'b c\d"[..]));
    }

    #[test]
    fn modes_map_to_what_is_checked() {
        let verify = |conn: &str| Connection::parse(conn).map(|c| c.verify());
        assert_eq!(verify("host=db").unwrap(), Verify::Nothing);
        assert_eq!(verify("host=db sslmode=require").unwrap(), Verify::Nothing);
        assert_eq!(verify("host=db sslmode=verify-full sslrootcert=system").unwrap(), Verify::Full);
        assert_eq!(verify("host=db sslrootcert=system").unwrap(), Verify::Full);
        assert_eq!(Connection::parse("host=db sslmode=disable").unwrap().config().get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        let error = |conn: &str| Connection::parse(conn).unwrap_err().to_string();
        assert!(
            error("host=db sslmode=require sslrootcert=system").contains("use verify-full"),
            "{}",
            error("host=db sslmode=require sslrootcert=system")
        );
        assert!(error("host=db sslmode=verify").contains("not one of"));
        assert!(error("host=db sslmode=verify-ca sslrootcert=/nonexistent/ca.pem").contains("/nonexistent/ca.pem"));
        assert!(error("host=db password='open").contains("no closing quote"));
        assert!(error("host").contains("no \"=\""));
    }
}
