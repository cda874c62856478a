//! Join tokens and `kcore.v1.JoinService`: a new node trades a one-time token and a CSR for
//! a certificate with the node role. Tokens are 32 random bytes (64 hex digits); the store
//! keeps only their SHA-256, and each works once, until it expires.

use std::path::PathBuf;
use std::sync::Arc;

use kcore_proto::v1 as pb;
use kcore_proto::v1::join_service_server::JoinService;
use ring::rand::SecureRandom;
use tonic::{Request, Response, Status};

use super::Controller;
use super::store::TokenRefusal;
use crate::caller::Requester;
use crate::error::{ApiError, ApiResult};
use crate::model::Issued;

/// The lifetime of a token when none is asked for.
pub const DEFAULT_TTL_SECS: u32 = 3600;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// Make and store a new token valid for `ttl_secs` (0: the default), for `by`.
pub fn create_token(ctl: &Controller, by: &Requester, ttl_secs: u32) -> ApiResult<pb::JoinToken> {
    let ttl = if ttl_secs == 0 {
        DEFAULT_TTL_SECS
    } else {
        ttl_secs
    };
    let mut raw = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| ApiError::Internal("no randomness".into()))?;
    let token = hex(&raw);
    let expires = chrono::Utc::now() + chrono::Duration::seconds(i64::from(ttl));
    ctl.store
        .insert_join_token(&sha256_hex(&token), expires.timestamp())?;
    ctl.emit(
        "node.join_token",
        None,
        format!("join token created by {by}, valid for {ttl} s"),
    );
    Ok(pb::JoinToken {
        token,
        expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// `kcore.v1.JoinService`, served on the TLS port without a client certificate.
#[derive(Debug, Clone)]
pub struct JoinApi {
    ctl: Arc<Controller>,
    pki_dir: PathBuf,
}

impl JoinApi {
    pub fn new(ctl: Arc<Controller>, pki_dir: PathBuf) -> Self {
        JoinApi { ctl, pki_dir }
    }
}

#[tonic::async_trait]
impl JoinService for JoinApi {
    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let r = req.into_inner();
        kcore_types::NodeName::parse(&r.node_name)
            .map_err(|e| ApiError::InvalidArgument(format!("node_name: {e}")))?;
        // A token may not take over a node that exists (its holder would get that node's
        // certificate and could register another address for it).
        if self.ctl.nodes.get(&r.node_name).is_ok()
            || self
                .ctl
                .store
                .list_nodes()?
                .iter()
                .any(|(n, _)| *n == r.node_name)
        {
            return Err(ApiError::AlreadyExists(format!(
                "a node named {} is already in the cluster",
                r.node_name
            ))
            .into());
        }
        // Check the CSR before using up the token.
        rcgen::CertificateSigningRequestParams::from_pem(&r.csr_pem).map_err(|e| {
            ApiError::InvalidArgument(format!("csr_pem is not a valid PKCS#10 request: {e}"))
        })?;
        let refused = |m: &str| {
            tracing::info!(node = %r.node_name, "join refused: {m}");
            ApiError::Unauthenticated(m.to_string())
        };
        match self.ctl.store.redeem_join_token(
            &sha256_hex(r.token.trim()),
            &r.node_name,
            chrono::Utc::now().timestamp(),
        )? {
            Ok(()) => {}
            Err(TokenRefusal::Unknown) => return Err(refused("unknown join token").into()),
            Err(TokenRefusal::Used) => {
                return Err(refused(
                    "this join token was already used: create another with kctl node join-token",
                )
                .into());
            }
            Err(TokenRefusal::Expired) => {
                return Err(refused(
                    "this join token has expired: create another with kctl node join-token",
                )
                .into());
            }
        }
        let resp = sign_for_node(
            self.pki_dir.clone(),
            &r.node_name,
            &r.csr_pem,
            self.ctl.tuning.node_cert_lifetime,
        )
        .await?;
        self.ctl.record_issued(&resp.cert_pem);
        self.ctl.store.set_removed(&r.node_name, false)?;
        tracing::info!(node = %r.node_name, "a node joined: issued its certificate");
        self.ctl.emit(
            "node.joined",
            None,
            format!("node {} redeemed a join token", r.node_name),
        );
        Ok(Response::new(pb::JoinResponse {
            cert_pem: resp.cert_pem,
            ca_pem: resp.ca_pem,
        }))
    }
}

/// Sign a node's CSR for `name` with the CA in `pki_dir`: its certificate and the CA.
pub async fn sign_for_node(
    pki_dir: PathBuf,
    name: &str,
    csr: &str,
    lifetime: std::time::Duration,
) -> ApiResult<Issued> {
    let (name, csr) = (name.to_string(), csr.to_string());
    let (cert_pem, ca_pem) = tokio::task::spawn_blocking(move || {
        let cert = crate::pki::sign_node_csr(&pki_dir, &name, &csr, lifetime)?;
        let ca = crate::pki::Pki { dir: pki_dir }.read_string(crate::pki::CA_CERT)?;
        Ok::<_, crate::pki::PkiError>((cert, ca))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Issued {
        cert_pem,
        key_pem: String::new(),
        ca_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, role_of_cert};
    use crate::caller::Caller;

    fn nobody() -> Requester {
        Requester {
            caller: Caller::Unknown,
            client: None,
        }
    }

    fn csr() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    #[tokio::test]
    async fn a_token_joins_one_node_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::pki::ensure_pki(&dir.path().join("pki"), &[]).expect("pki");
        let store = super::super::store::Store::open(&dir.path().join("c.db")).expect("db");
        let ctl = Controller::new(store, Default::default());
        let api = JoinApi::new(ctl.clone(), pki.dir.clone());
        let t = create_token(&ctl, &nobody(), 0).expect("token");
        assert_eq!(t.token.len(), 64);
        let join = |token: &str, name: &str| {
            api.join(Request::new(pb::JoinRequest {
                token: token.to_string(),
                node_name: name.to_string(),
                csr_pem: csr(),
            }))
        };
        let e = join("nope", "n1").await.expect_err("unknown");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = join(&t.token, "Bad Name").await.expect_err("bad name");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let r = join(&t.token, "n1").await.expect("join").into_inner();
        assert_eq!(
            r.ca_pem.as_bytes(),
            pki.read(crate::pki::CA_CERT).expect("ca")
        );
        let (_, pem) = x509_parser::pem::parse_x509_pem(r.cert_pem.as_bytes()).expect("pem");
        assert_eq!(role_of_cert(&pem.contents), Ok(Role::Node));
        ctl.store
            .upsert_node("n1", "127.0.0.1:1")
            .expect("register");
        let t2 = create_token(&ctl, &nobody(), 0).expect("token");
        let e = join(&t2.token, "n1").await.expect_err("taken name");
        assert_eq!(e.code(), tonic::Code::AlreadyExists);
        let e = join(&t.token, "n2").await.expect_err("reused");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("already used"), "{}", e.message());
    }
}
