//! Reading certificates: their validity, serial, subjectAltNames and whether a key is
//! theirs, and when one is due for renewal.

use std::time::{Duration, SystemTime};

use rcgen::KeyPair;

use super::PkiError;

/// When a PEM certificate's validity starts and ends.
pub fn validity_of(pem: &[u8]) -> Result<(SystemTime, SystemTime), PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(PkiError::NotPem)?;
    let cert = pem.parse_x509().map_err(PkiError::NotX509)?;
    let at =
        |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or_default());
    let v = cert.validity();
    Ok((at(v.not_before.timestamp()), at(v.not_after.timestamp())))
}

/// What the controller records of a certificate it issued: serial (lowercase hex), CN,
/// role (OU; "server" for the server certificate), end of validity, issued now.
pub fn cert_info(pem: &[u8]) -> Result<crate::model::CertInfo, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(PkiError::NotPem)?;
    let cert = pem.parse_x509().map_err(PkiError::NotX509)?;
    let subject = cert.subject();
    let first = |a: Option<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
        a.and_then(|a| a.as_str().ok())
            .map(str::to_string)
            .unwrap_or_default()
    };
    let role = first(subject.iter_organizational_unit().next());
    let until = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0));
    Ok(crate::model::CertInfo {
        serial: serial_hex(cert.raw_serial()),
        name: first(subject.iter_common_name().next()),
        role: if role.is_empty() {
            "server".into()
        } else {
            role
        },
        not_after: crate::convert::rfc3339(until),
        issued_at: crate::convert::now_rfc3339(),
        revoked_at: String::new(),
    })
}

/// A certificate serial as lowercase hex, leading zero bytes dropped.
pub fn serial_hex(raw: &[u8]) -> String {
    let s: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let t = s.trim_start_matches("00");
    if t.is_empty() { "00".into() } else { t.into() }
}

/// True when less than a third of the certificate's lifetime is left (or it expired).
pub fn renewal_due(pem: &[u8]) -> Result<bool, PkiError> {
    let (from, to) = validity_of(pem)?;
    let lifetime = to.duration_since(from).unwrap_or_default();
    Ok(match to.duration_since(SystemTime::now()) {
        Ok(left) => left < lifetime / 3,
        Err(_) => true,
    })
}

/// True when the PEM key is the private half of the PEM certificate's public key.
pub fn pair_matches(cert_pem: &[u8], key_pem: &[u8]) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let Ok(key) = KeyPair::from_pem(&String::from_utf8_lossy(key_pem)) else {
        return false;
    };
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

/// The DNS names and IPs in a PEM certificate's subjectAltName.
pub(crate) fn cert_sans(pem: &[u8]) -> Result<Vec<String>, PkiError> {
    use x509_parser::extensions::GeneralName;
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(PkiError::NotPem)?;
    let cert = pem.parse_x509().map_err(PkiError::NotX509)?;
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => out.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        out.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        out.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
