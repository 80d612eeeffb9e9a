//! PEM files: reading certificate chains and keys, writing files atomically with the right mode.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::CertError;

/// Largest PEM file we read: a chain or bundle of a few certificates is a few KB.
const MAX_PEM_BYTES: u64 = 1 << 20;

fn read_bounded(path: &Path) -> Result<Vec<u8>, CertError> {
    let io = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let len = fs::metadata(path).map_err(io)?.len();
    if len > MAX_PEM_BYTES {
        return Err(CertError::BadPem {
            path: path.to_owned(),
            reason: format!("file is {len} bytes, larger than the {MAX_PEM_BYTES} bytes allowed"),
        });
    }
    fs::read(path).map_err(io)
}

/// Reads every certificate of a PEM file, in order (leaf first for a chain).
pub fn read_certs_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read_bounded(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadPem {
            path: path.to_owned(),
            reason: format!("unreadable PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(CertError::BadPem {
            path: path.to_owned(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Reads the first certificate of a PEM file (the leaf of a chain).
pub fn read_first_cert(path: &Path) -> Result<CertificateDer<'static>, CertError> {
    read_certs_pem(path)?
        .into_iter()
        .next()
        .ok_or_else(|| CertError::BadPem {
            path: path.to_owned(),
            reason: "no certificate".into(),
        })
}

/// Reads the private key of a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn read_key_pem(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read_bounded(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| CertError::BadPem {
        path: path.to_owned(),
        reason: format!("no usable private key: {e}"),
    })
}

/// Reads a private key usable for signing (what rcgen reads: PKCS#8 PEM).
pub fn read_key_pair(path: &Path) -> Result<rcgen::KeyPair, CertError> {
    let bytes = read_bounded(path)?;
    let pem = String::from_utf8(bytes).map_err(|_| CertError::BadPem {
        path: path.to_owned(),
        reason: "not text".into(),
    })?;
    rcgen::KeyPair::from_pem(&pem).map_err(|e| CertError::BadPem {
        path: path.to_owned(),
        reason: format!("not a usable key: {e}"),
    })
}

/// Certificates as PEM, in order (leaf first for a chain).
pub fn pem_certs(certs: &[CertificateDer<'_>]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for cert in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Writes a private file (mode 0600) atomically: a temporary file renamed over the target, so a
/// process watching the path never reads half a key.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    write_atomic(path, contents, 0o600)
}

/// Writes a public file (mode 0644) atomically.
pub fn write_public_file(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    write_atomic(path, contents, 0o644)
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| CertError::Io { path: p, source }
    };
    let tmp = temp_sibling(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(contents).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))
}

fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}
