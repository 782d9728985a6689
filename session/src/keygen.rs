//! `qmpc keygen`: a party's TLS key and self-signed certificate, for `parties.toml` pins.

use anyhow::{bail, Context, Result};
use qmpc_protocols::net::tls;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What [`keygen`] wrote.
#[derive(Clone, Debug)]
pub struct KeyFiles {
    /// `party-I` or `dealer`.
    pub name: String,
    /// The key and the certificate (secret: this member alone reads it).
    pub key: PathBuf,
    /// The certificate, for the other members to pin.
    pub certificate: PathBuf,
    /// `sha256:…` of the certificate.
    pub fingerprint: String,
}

impl KeyFiles {
    /// What `qmpc keygen` prints.
    pub fn describe(&self) -> String {
        let (name, key, crt) = (&self.name, self.key.display(), self.certificate.display());
        format!(
            "{name}: key {key} (keep it here), certificate {crt}\nfingerprint {fp}\npin it in \
             every parties.toml, in {name}'s entry: certificate = \"{crt}\" or fingerprint = \
             \"{fp}\"",
            fp = self.fingerprint
        )
    }
}

/// Writes `OUT/NAME.key` (key and certificate, readable by the owner alone) and
/// `OUT/NAME.crt` (the certificate), `NAME` being `party-I` or `dealer`. An existing key
/// is never overwritten: its pin is in other parties' files.
pub fn keygen(id: &str, out: &Path) -> Result<KeyFiles> {
    let name = match id {
        "dealer" => "dealer".to_string(),
        n => match n.parse::<usize>() {
            Ok(i) => format!("party-{i}"),
            Err(_) => bail!("--id takes a party number or `dealer`, not `{id}`"),
        },
    };
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let key_path = out.join(format!("{name}.key"));
    let crt_path = out.join(format!("{name}.crt"));
    for p in [&key_path, &crt_path] {
        if p.exists() {
            bail!(
                "{}: exists; a new key changes {name}'s fingerprint, which the other parties \
                 pin (remove it first to replace it)",
                p.display()
            );
        }
    }
    let m = tls::generate(&name)?;
    write_new(&key_path, m.key_pem.as_bytes(), 0o600)?;
    write_new(&crt_path, m.cert_pem.as_bytes(), 0o644)?;
    Ok(KeyFiles {
        name,
        key: key_path,
        certificate: crt_path,
        fingerprint: m.fingerprint.to_string(),
    })
}

/// Create `path` (never replacing a file) with permissions `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}
