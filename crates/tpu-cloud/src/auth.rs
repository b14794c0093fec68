//! Finding credentials. Clients take an `Arc<dyn TokenProvider>`; this
//! module only wraps `gcp_auth::provider` so that its failure says which
//! sources were tried and what to run. Tests never call it.

use std::sync::Arc;

use gcp_auth::TokenProvider;

use crate::Error;

/// Looks for credentials the way `gcp_auth` does (service-account file,
/// gcloud application-default credentials, metadata server, gcloud).
///
/// Off Google Cloud with no credentials this probes the metadata server,
/// which can take a few seconds to fail.
pub async fn default_token_provider() -> Result<Arc<dyn TokenProvider>, Error> {
    gcp_auth::provider()
        .await
        .map_err(|err| Error::NoCredentials {
            detail: flatten(&err),
        })
}

/// One line from a `gcp_auth` error and its causes.
pub(crate) fn flatten(err: &gcp_auth::Error) -> String {
    crate::error::one_line(&crate::error::chain(err))
}

/// Maps a failed token request to the crate error.
pub(crate) fn token_error(err: &gcp_auth::Error) -> Error {
    match err {
        gcp_auth::Error::NoAuthMethod(..) => Error::NoCredentials {
            detail: flatten(err),
        },
        _ => Error::Token {
            detail: flatten(err),
        },
    }
}
