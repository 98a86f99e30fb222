//! How the client commands reach a server: `--server https://…` is TLS (checked against the
//! system's roots, or `--ca`), `--server http://…` is plaintext, which goes to a loopback
//! address only unless `--plaintext` says the user accepts it elsewhere.

use anyhow::{bail, Context};
use std::path::PathBuf;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

/// The options of a command that talks to a server.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// The jifen server: https://host:port (TLS), or http://host:port (plaintext: to a
    /// loopback address, or elsewhere with --plaintext).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// With https://: trust the CA certificates in this PEM file (a private CA) instead of the
    /// system's roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Accept http:// to an address that is not loopback: tokens, events and answers travel
    /// in clear on the network.
    #[arg(long)]
    pub plaintext: bool,
}

/// Whether `host` (a URI's host: a name, an IPv4 address or a bracketed IPv6 one) is this
/// machine's loopback.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl ServerArgs {
    /// The endpoint `--server` names, with TLS for https://; refuses plaintext off this
    /// machine without --plaintext.
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let server = &self.server;
        let uri: Uri = server.parse().with_context(|| format!("--server {server}: not a URL such as https://jifen.example.cn:50051"))?;
        let host = match (uri.scheme_str(), uri.host()) {
            (Some(_), Some(host)) => host.to_owned(),
            _ => bail!("--server {server}: give the scheme, https:// (TLS) or http:// (plaintext), as in https://{server}"),
        };
        let endpoint = Endpoint::from_shared(server.clone()).with_context(|| format!("--server {server}"))?;
        match uri.scheme_str() {
            Some("https") => {
                let mut tls = ClientTlsConfig::new().domain_name(host.trim_start_matches('[').trim_end_matches(']'));
                tls = match &self.ca {
                    Some(path) => {
                        let pem = std::fs::read(path).with_context(|| format!("--ca {}", path.display()))?;
                        tls.ca_certificate(Certificate::from_pem(pem))
                    }
                    None => tls.with_native_roots(),
                };
                Ok(endpoint.tls_config(tls).context("TLS configuration")?)
            }
            Some("http") => {
                if self.ca.is_some() {
                    bail!("--ca is for an https:// server; --server {server} is plaintext");
                }
                if !is_loopback(&host) && !self.plaintext {
                    bail!(
                        "--server {server} is plaintext to another machine: tokens, events and answers would travel in clear. \
                         Use https:// (a server started with --tls-cert and --tls-key), or pass --plaintext to accept that"
                    );
                }
                Ok(endpoint)
            }
            Some(other) => bail!("--server {server}: scheme {other}:// is neither https:// (TLS) nor http:// (plaintext)"),
            None => unreachable!("checked above"),
        }
    }

    /// A channel to the server, connected.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let endpoint = self.endpoint()?;
        endpoint.connect().await.map_err(|e| {
            // tonic's transport error says only "transport error"; its source says why.
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            anyhow::anyhow!("connecting to {}: {why}", self.server)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: &str) -> ServerArgs {
        ServerArgs { server: server.into(), ca: None, plaintext: false }
    }

    #[test]
    fn plaintext_goes_to_loopback_only_unless_allowed() {
        for ok in ["http://127.0.0.1:50051", "http://localhost:1", "http://[::1]:50051", "http://127.9.9.9:2"] {
            args(ok).endpoint().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for refused in ["http://10.0.0.5:50051", "http://jifen.example.cn:50051", "http://0.0.0.0:1"] {
            let e = args(refused).endpoint().unwrap_err().to_string();
            assert!(e.contains("--plaintext") && e.contains("in clear"), "{refused}: {e}");
            ServerArgs { plaintext: true, ..args(refused) }.endpoint().unwrap();
        }
    }

    #[test]
    fn a_server_without_scheme_or_with_another_is_refused_with_a_hint() {
        let e = args("127.0.0.1:50051").endpoint().unwrap_err().to_string();
        assert!(e.contains("https://127.0.0.1:50051"), "{e}");
        let e = args("ftp://127.0.0.1:50051").endpoint().unwrap_err().to_string();
        assert!(e.contains("ftp://"), "{e}");
        let e = ServerArgs { ca: Some("ca.pem".into()), ..args("http://127.0.0.1:1") }.endpoint().unwrap_err().to_string();
        assert!(e.contains("--ca is for an https://"), "{e}");
    }
}
