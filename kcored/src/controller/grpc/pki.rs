//! The controller's certificate handlers: issue and renew certificates with the cluster
//! CA, revoke them, and remove a node (revoking its certificates). The
//! [`KcoreService`](kcore_proto::v1::kcore_service_server::KcoreService) impl in
//! [`super`] calls these.

use kcore_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::KcoreApi;
use crate::caller::Requester;
use crate::convert::cert_to_pb;

impl KcoreApi {
    /// `IssueCertificate`: a client certificate signed by the cluster CA.
    pub(super) async fn issue_cert(
        &self,
        req: Request<pb::IssueCertificateRequest>,
    ) -> Result<Response<pb::IssuedCertificate>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        let issued = self
            .ctl
            .issue_certificate(&by, self.pki_dir.clone(), &r.name, &r.role)
            .await?;
        Ok(Response::new(pb::IssuedCertificate {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            ca_pem: issued.ca_pem,
        }))
    }

    /// `RenewNodeCertificate`: a node's new certificate for its new key.
    pub(super) async fn renew_node_cert(
        &self,
        req: Request<pb::RenewNodeCertificateRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        let resp = self
            .ctl
            .renew_node_certificate(&by, self.pki_dir.clone(), &r.csr_pem)
            .await?;
        Ok(Response::new(pb::JoinResponse {
            cert_pem: resp.cert_pem,
            ca_pem: resp.ca_pem,
        }))
    }

    /// `RevokeCertificate`, by name or serial; the certificate asking (the TLS peer's) may
    /// not revoke itself.
    pub(super) async fn revoke_cert(
        &self,
        req: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let caller = req
            .peer_certs()
            .and_then(|c| c.first().and_then(|leaf| crate::auth::serial_of_cert(leaf)));
        let by = Requester::of(&req);
        let r = req.into_inner();
        let revoked = self
            .ctl
            .revoke(&by, &r.name, &r.serial, caller.as_deref())?;
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: revoked.iter().map(cert_to_pb).collect(),
        }))
    }

    /// `RemoveNode`: the node goes, and its certificates are revoked.
    pub(super) async fn remove_node_and_certs(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let by = Requester::of(&req);
        let revoked = self.ctl.remove_node(&by, &req.into_inner().name)?;
        Ok(Response::new(pb::RemoveNodeResponse {
            revoked: revoked.iter().map(cert_to_pb).collect(),
        }))
    }
}
