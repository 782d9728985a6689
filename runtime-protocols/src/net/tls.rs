//! Mutual TLS 1.3 between parties, each party's certificate pinned by its SHA-256
//! fingerprint.
//!
//! There is no certificate authority: `qmpc keygen` makes a self-signed certificate per
//! party, the operators exchange fingerprints, and `parties.toml` pins one certificate per
//! party (and the dealer). A link is accepted only when the peer presents exactly the
//! certificate pinned for the party it claims to be and proves, in the handshake, that it
//! holds its key. Validity dates, names and key usages are not looked at: the pin is the
//! whole trust decision, so a certificate never expires under qmpc (replace a key by
//! changing the pin).
//!
//! Architecture invariant: this is the only module of qmpc that names `rustls`.

use super::NetError;
use crate::PartyId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error,
    SignatureScheme,
};
use std::sync::{Arc, Mutex};

/// SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(cert_der: &[u8]) -> Fingerprint {
        let d = ring::digest::digest(&ring::digest::SHA256, cert_der);
        let mut f = [0u8; 32];
        f.copy_from_slice(d.as_ref());
        Fingerprint(f)
    }

    /// `sha256:` and 64 hex digits, or the same with the digits in colon-separated pairs
    /// (as `openssl x509 -fingerprint -sha256` prints them); case does not matter.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let t = text.trim();
        let hex = t
            .strip_prefix("sha256:")
            .or_else(|| t.strip_prefix("SHA256:"))
            .unwrap_or(t);
        let digits: String = hex.chars().filter(|&c| c != ':').collect();
        let bad = || format!("`{text}` is not a SHA-256 fingerprint (sha256: and 64 hex digits)");
        if digits.len() != 64 || !digits.is_ascii() {
            return Err(bad());
        }
        let mut f = [0u8; 32];
        for (i, b) in f.iter_mut().enumerate() {
            *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(f))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Why key material could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Pem(String),
    #[error("cannot make a key: {0}")]
    Generate(String),
    #[error("TLS set-up: {0}")]
    Config(String),
}

/// A party's key and certificate, as `qmpc keygen` writes them.
pub struct KeyMaterial {
    /// The private key (PKCS#8) and the certificate, both PEM, in one file: what the party
    /// itself reads.
    pub key_pem: String,
    /// The certificate alone, PEM: what the other operators pin.
    pub cert_pem: String,
    pub fingerprint: Fingerprint,
}

/// A fresh ECDSA P-256 key (from the OS's randomness) and its self-signed certificate
/// naming `who`, valid from 2000 to 9999 (pins, not dates, decide).
pub fn generate(who: &str) -> Result<KeyMaterial, TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(vec![format!("{who}.qmpc")]).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("qmpc {who}"));
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    let cert = params.self_signed(&key).map_err(err)?;
    let cert_pem = cert.pem();
    Ok(KeyMaterial {
        key_pem: format!("{}{cert_pem}", key.serialize_pem()),
        cert_pem,
        fingerprint: Fingerprint::of(cert.der()),
    })
}

/// The fingerprint of the first certificate in a PEM text.
pub fn certificate_fingerprint(pem: &[u8]) -> Result<Fingerprint, TlsError> {
    let cert = CertificateDer::from_pem_slice(pem)
        .map_err(|e| TlsError::Pem(format!("no PEM certificate ({e})")))?;
    Ok(Fingerprint::of(&cert))
}

/// This party's key and certificate (the key file `qmpc keygen` writes).
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn from_pem(pem: &[u8]) -> Result<Identity, TlsError> {
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| TlsError::Pem(format!("no PEM private key ({e})")))?;
        let cert = CertificateDer::from_pem_slice(pem).map_err(|e| {
            TlsError::Pem(format!(
                "no PEM certificate beside the key ({e}); use the .key file of qmpc keygen"
            ))
        })?;
        Ok(Identity { cert, key })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }
}

/// What a party needs for TLS links: its identity and every member's pinned certificate,
/// by mesh index (the parties, then the dealer where there is one).
pub struct Tls {
    identity: Identity,
    pins: Vec<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

impl Tls {
    pub fn new(identity: Identity, pins: Vec<Fingerprint>) -> Tls {
        // rustls deprecates *ring* for lacking post-quantum key exchange; its other
        // provider, aws-lc, needs cmake and a C toolchain setup a fresh machine may lack.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        Tls {
            identity,
            pins,
            provider: Arc::new(provider),
        }
    }

    pub fn pins(&self) -> &[Fingerprint] {
        &self.pins
    }

    pub(super) fn own_fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    /// The configuration for dialing `peer`: its pin alone is accepted.
    pub(super) fn dialer(&self, peer: PartyId) -> Result<(Arc<ClientConfig>, Arc<Seen>), NetError> {
        let seen = Arc::new(Seen::default());
        let verifier = Arc::new(PinnedServer {
            pin: self.pins[peer],
            seen: seen.clone(),
            algs: self.provider.signature_verification_algorithms,
        });
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(
                vec![self.identity.cert.clone()],
                self.identity.key.clone_key(),
            )
            .map_err(config_error)?;
        Ok((Arc::new(config), seen))
    }

    /// The configuration for accepting: any member's pin; which member is checked against
    /// the id the dialer claims once the handshake is done.
    pub(super) fn acceptor(&self) -> Result<Arc<ServerConfig>, NetError> {
        let verifier = Arc::new(PinnedClients {
            pins: self.pins.clone(),
            algs: self.provider.signature_verification_algorithms,
        });
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.identity.cert.clone()],
                self.identity.key.clone_key(),
            )
            .map_err(config_error)?;
        // Each connection carries one direction of a link; nothing resumes.
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

fn config_error(e: Error) -> NetError {
    NetError::Tls(format!("cannot set up TLS: {e}"))
}

/// The name a dialer gives the server (the pin decides; the name is not checked).
const SERVER_NAME: &str = "party.qmpc";

/// The certificate a peer presented when it was not the pinned one.
#[derive(Debug, Default)]
pub(super) struct Seen(Mutex<Option<Fingerprint>>);

impl Seen {
    pub(super) fn get(&self) -> Option<Fingerprint> {
        self.0.lock().ok().and_then(|g| *g)
    }
    fn set(&self, f: Fingerprint) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(f);
        }
    }
}

#[derive(Debug)]
struct PinnedServer {
    pin: Fingerprint,
    seen: Arc<Seen>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let f = Fingerprint::of(end_entity);
        if f == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            self.seen.set(f);
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[derive(Debug)]
struct PinnedClients {
    pins: Vec<Fingerprint>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if self.pins.contains(&Fingerprint::of(end_entity)) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Whether a failed handshake ended with the peer's alert (it refused this side), rather
/// than this side's own refusal of the peer.
pub(super) fn alert_received(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|r| matches!(r, Error::AlertReceived(_)))
}

/// The fingerprint of the certificate a finished handshake's peer presented.
pub(super) fn peer_fingerprint(conn: &rustls::CommonState) -> Option<Fingerprint> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Fingerprint::of(c))
}

pub(super) use rustls::{ClientConnection, ServerConnection};

/// Plaintext from `conn` (at least one byte) before `deadline`: records are read from
/// `sock` and decrypted until some arrives. A record that fails authentication is
/// `InvalidData`; a close is `UnexpectedEof`.
pub(super) fn read_some<D>(
    conn: &mut rustls::ConnectionCommon<D>,
    sock: &mut std::net::TcpStream,
    buf: &mut [u8],
    deadline: std::time::Instant,
) -> std::io::Result<usize> {
    use std::io::{ErrorKind, Read};
    loop {
        match conn.reader().read(buf) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        super::link::wait_until(sock, deadline)?;
        if conn.read_tls(sock)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        conn.process_new_packets()
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
    }
}

/// The acceptor's configuration.
pub(super) type ServerConfig = rustls::ServerConfig;

/// A client connection to `peer` (not yet handshaken).
pub(super) fn client(config: Arc<ClientConfig>) -> Result<ClientConnection, NetError> {
    let name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| NetError::Tls(format!("cannot set up TLS: {e}")))?;
    let mut c = ClientConnection::new(config, name).map_err(config_error)?;
    c.set_buffer_limit(None);
    Ok(c)
}

pub(super) fn server(config: Arc<ServerConfig>) -> Result<ServerConnection, NetError> {
    ServerConnection::new(config).map_err(config_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_print_and_parse_both_ways() {
        let f = Fingerprint::of(b"a certificate");
        let text = f.to_string();
        assert!(
            text.starts_with("sha256:") && text.len() == 7 + 64,
            "{text}"
        );
        assert_eq!(Fingerprint::parse(&text).unwrap(), f);
        let colons: Vec<String> = f.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(Fingerprint::parse(&colons.join(":")).unwrap(), f);
        assert!(Fingerprint::parse("sha256:abc").is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn generated_keys_read_back_with_their_fingerprint() {
        let m = generate("party-0").unwrap();
        let id = Identity::from_pem(m.key_pem.as_bytes()).unwrap();
        assert_eq!(id.fingerprint(), m.fingerprint);
        assert_eq!(
            certificate_fingerprint(m.cert_pem.as_bytes()).unwrap(),
            m.fingerprint
        );
        // The certificate alone is not an identity.
        assert!(Identity::from_pem(m.cert_pem.as_bytes()).is_err());
        // Two keys are two fingerprints.
        assert_ne!(generate("party-0").unwrap().fingerprint, m.fingerprint);
    }
}
