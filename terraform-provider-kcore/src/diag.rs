//! Errors as Terraform diagnostics: the server's message (and gRPC code) as the detail,
//! what the provider was doing as the summary.

use kcore_client::{Client, ClientError};
use tf_provider::{AttributePath, Diagnostics};

/// Records a failed API call: "<what>" with the server's message as detail.
pub fn api(diags: &mut Diagnostics, what: impl Into<String>, err: &ClientError) {
    let what = what.into();
    tracing::warn!(%err, "{what}");
    diags.root_error(what, err.to_string());
}

/// Records a configuration error on an attribute.
pub fn attr(diags: &mut Diagnostics, path: &str, summary: impl Into<String>) {
    diags.error_short(summary.into(), AttributePath::new(path.to_string()));
}

/// Whether a failed call means "not there".
pub fn is_not_found(err: &ClientError) -> bool {
    err.code() == Some(tonic::Code::NotFound)
}

/// The end of a delete call: done when it worked or the thing was gone already.
pub fn deleted<T>(
    diags: &mut Diagnostics,
    client: &Client,
    what: String,
    result: Result<T, tonic::Status>,
) -> Option<()> {
    match result {
        Ok(_) => Some(()),
        Err(status) => {
            let e = client.error(status);
            if is_not_found(&e) {
                return Some(());
            }
            api(diags, what, &e);
            None
        }
    }
}
