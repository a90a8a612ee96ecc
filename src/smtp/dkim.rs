//! DKIM (RFC 6376; Ed25519 by RFC 8463): every mail that leaves is signed for
//! `[smtp.dkim] domain`. lettre signs; this file reads the keys users have (RSA or
//! Ed25519, PKCS#1 or PKCS#8 PEM, as openssl and `huiying mail dkim-keygen` write them),
//! chooses the headers, and says what DNS record each key needs.

use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm, DkimSigningKey,
};
use lettre::message::header::{HeaderName, HeaderValue, Headers};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;

use crate::config::DkimSettings;

/// The headers signed, when present: a receiver sees at once if any was changed on the
/// way. Listing one a mail lacks (Cc) also keeps anybody from adding it.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// RFC 8301: verifiers ignore RSA keys under 1024 bits; 2048 is what to use.
const MIN_RSA_BITS: usize = 1024;

/// A DKIM private key.
pub enum DkimKey {
    Rsa(rsa::RsaPrivateKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// Which kind of key `huiying mail dkim-keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKind {
    /// RSA-2048: every receiver verifies it.
    Rsa,
    /// Ed25519: short, but Gmail and Outlook do not verify it yet; use beside an RSA key.
    Ed25519,
}

impl DkimKey {
    /// Reads a PEM key: PKCS#8 (`BEGIN PRIVATE KEY`, RSA or Ed25519) or PKCS#1 (`BEGIN
    /// RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self::Ed25519(key));
        }
        let rsa = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            .or_else(|_| rsa::pkcs8::DecodePrivateKey::from_pkcs8_pem(pem))
            .map_err(|_| "not an RSA or Ed25519 private key in PEM".to_string())?;
        let bits = rsa.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "an RSA key of {bits} bits is too short: receivers ignore keys under 1024 bits; make a 2048-bit one"
            ));
        }
        Ok(Self::Rsa(rsa))
    }

    /// A new key of `kind`.
    pub fn generate(kind: KeyKind) -> anyhow::Result<Self> {
        Ok(match kind {
            KeyKind::Rsa => Self::Rsa(rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)?),
            KeyKind::Ed25519 => Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&rand_bytes()?)),
        })
    }

    /// The key as PKCS#8 PEM, for the key file.
    pub fn to_pem(&self) -> anyhow::Result<String> {
        Ok(match self {
            Self::Rsa(key) => rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(key, LineEnding::LF)?.to_string(),
            // PKCS#8 v1, the bare seed: OpenSSL 3.0 cannot read the v2 form with the public key.
            Self::Ed25519(key) => {
                let bytes = ed25519_dalek::pkcs8::KeypairBytes { secret_key: key.to_bytes(), public_key: None };
                bytes.to_pkcs8_pem(LineEnding::LF)?.to_string()
            }
        })
    }

    /// The public key as the `p=` of its DNS record (base64).
    pub fn public_key(&self) -> anyhow::Result<String> {
        let bytes = match self {
            Self::Rsa(key) => key.to_public_key().to_public_key_der()?.into_vec(),
            Self::Ed25519(key) => key.verifying_key().to_bytes().to_vec(),
        };
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> anyhow::Result<String> {
        let kind = match self {
            Self::Rsa(_) => "rsa",
            Self::Ed25519(_) => "ed25519",
        };
        Ok(format!("v=DKIM1; k={kind}; p={}", self.public_key()?))
    }

    /// The key as lettre takes it: PKCS#1 PEM for RSA, the base64 seed for Ed25519
    /// (checked here, once).
    fn for_lettre(&self) -> Result<(String, DkimSigningAlgorithm), String> {
        let (key, algorithm) = match self {
            Self::Rsa(key) => {
                (key.to_pkcs1_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string(), DkimSigningAlgorithm::Rsa)
            }
            Self::Ed25519(key) => {
                (base64::engine::general_purpose::STANDARD.encode(key.to_bytes()), DkimSigningAlgorithm::Ed25519)
            }
        };
        DkimSigningKey::new(&key, algorithm).map_err(|e| e.to_string())?;
        Ok((key, algorithm))
    }
}

fn rand_bytes() -> anyhow::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| anyhow::anyhow!("the system has no random numbers"))?;
    Ok(seed)
}

/// One key's signature: lettre's signing key is made anew for each mail, as it signs
/// each mail's own list of headers.
struct Signature {
    domain: String,
    selector: String,
    /// The key as lettre reads it (PKCS#1 PEM, or the Ed25519 seed in base64).
    key: String,
    algorithm: DkimSigningAlgorithm,
}

/// The signatures every mail gets: one per configured key.
pub struct Signer {
    signatures: Vec<Signature>,
}

impl Signer {
    /// Reads the keys of `[smtp.dkim]`; `None` when it is off. A key that cannot be read
    /// stops the service at start, naming the file.
    pub fn from_config(settings: &DkimSettings) -> anyhow::Result<Option<Self>> {
        if !settings.enabled() {
            return Ok(None);
        }
        let mut signatures = Vec::new();
        for (file, selector) in settings.private_key_file.iter().zip(&settings.selector) {
            let problem = |e: &dyn std::fmt::Display| {
                anyhow::anyhow!("bad configuration: smtp.dkim.private_key_file {file}: {e}")
            };
            let pem = std::fs::read_to_string(file).map_err(|e| problem(&e))?;
            let (key, algorithm) = DkimKey::from_pem(&pem).and_then(|key| key.for_lettre()).map_err(|e| problem(&e))?;
            signatures.push(Signature {
                domain: settings.domain.trim().to_string(),
                selector: selector.trim().to_string(),
                key,
                algorithm,
            });
        }
        Ok(Some(Self { signatures }))
    }

    /// The mail as sent: a DKIM-Signature per key, then the message.
    pub fn sign(&self, message: &Message) -> Vec<u8> {
        // lettre keeps the Content-Type of a multipart body inside the body, where its
        // signer cannot see it: such a mail signs without it (compose() puts it on top).
        let headers: Vec<HeaderName> = SIGNED_HEADERS
            .iter()
            .filter(|name| **name != "Content-Type" || message.headers().get_raw(name).is_some())
            .map(|name| HeaderName::new_from_ascii_str(name))
            .collect();
        // relaxed/relaxed: survives the re-folding and re-spacing relays do.
        let canonicalization =
            DkimCanonicalization { header: DkimCanonicalizationType::Relaxed, body: DkimCanonicalizationType::Relaxed };
        let mut bytes = Vec::new();
        for signature in &self.signatures {
            let Ok(key) = DkimSigningKey::new(&signature.key, signature.algorithm) else { continue };
            let config = DkimConfig::new(
                signature.selector.clone(),
                signature.domain.clone(),
                key,
                headers.clone(),
                canonicalization,
            );
            // lettre writes one DKIM-Signature per message: each key signs its own copy.
            let mut copy = message.clone();
            copy.sign(&config);
            if let Some(value) = copy.headers().get_raw("DKIM-Signature") {
                // Folded as lettre folds it, and first, as a signature is added in transit.
                let mut header = Headers::new();
                header.insert_raw(HeaderValue::new(HeaderName::new_from_ascii_str("DKIM-Signature"), value.into()));
                bytes.extend(header.to_string().into_bytes());
            }
        }
        bytes.extend(message.formatted());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_as_openssl_and_dkim_keygen_write_them_and_anything_else_is_named() {
        for kind in [KeyKind::Rsa, KeyKind::Ed25519] {
            let key = DkimKey::generate(kind).unwrap();
            let again = DkimKey::from_pem(&key.to_pem().unwrap()).unwrap();
            assert_eq!(again.dns_record().unwrap(), key.dns_record().unwrap());
        }
        let DkimKey::Rsa(rsa) = DkimKey::generate(KeyKind::Rsa).unwrap() else { unreachable!() };
        let pkcs1 = rsa.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(matches!(DkimKey::from_pem(&pkcs1), Ok(DkimKey::Rsa(_))));
        let short = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 512).unwrap().to_pkcs1_pem(LineEnding::LF).unwrap();
        let Err(why) = DkimKey::from_pem(&short) else { panic!("a 512-bit key was taken") };
        assert!(why.contains("512 bits is too short"), "{why}");
        assert!(DkimKey::from_pem("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").is_err());
    }
}
