//! Certificates: reading what a certificate says, issuing a mesh CA, issuer (intermediate) CAs
//! and leaf certificates, certificate requests, and the PEM files they live in.

mod csr;
mod files;
mod issue;
mod issuer;
mod parse;

pub use csr::{
    CsrError, MAX_CSR_BYTES, ReadRequest, make_request, read_request, request_for, sign_request,
};
pub use files::{
    pem_certs, read_certs_pem, read_first_cert, read_key_pair, read_key_pem, write_private_file,
    write_public_file,
};
pub use issue::{CaInit, CaInitReport, IssueRequest, IssuedFiles, MIN_VALIDITY, init_ca, issue};
pub use issuer::{IssuerFiles, IssuerInit, init_issuer};
pub use parse::{CertInfo, ca_trust_domain, parse_leaf, serial_of};

use std::path::PathBuf;

/// Why a certificate operation failed. Every variant names the file or field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file exists and `--force` was not given.
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// A PEM file holds nothing usable.
    #[error("{path}: {reason}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A request that cannot be met as asked; the message says what to change.
    #[error("{0}")]
    Refused(String),
    /// A certificate does not have the shape Murmuration requires.
    #[error("certificate is not a Murmuration identity: {0}")]
    Shape(String),
    /// A name or trust domain is invalid.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        Self::Generate(e.to_string())
    }
}
