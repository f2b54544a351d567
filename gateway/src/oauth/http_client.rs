//! The token client's HTTP: reqwest, as the `oauth2` crate's client and for `/v1/me`, with
//! every answer's body read as it streams and refused past [`MAX_ANSWER_BYTES`]. `oauth2`'s
//! own reqwest client reads a body whole, however long (48 MiB grew the process by 144 MiB;
//! an endless one would end it).

use std::future::Future;
use std::pin::Pin;

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};

/// The longest answer read from the token endpoint or `/v1/me`. Spotify's are under 2 KiB (a
/// token answer with its scopes, a user object); 64 KiB leaves room for any honest answer and
/// bounds what a broken or hostile endpoint can make the gateway hold.
pub(super) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a request got no answer that can be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum HttpError {
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// The body went past [`MAX_ANSWER_BYTES`]: read no further, and answered as an unreadable
    /// answer is.
    #[error("the answer is longer than {MAX_ANSWER_BYTES} bytes")]
    TooLong,
}

/// The reqwest client as `oauth2`'s HTTP client, reading bodies within the cap.
#[derive(Clone)]
pub(super) struct CappedClient(pub(super) reqwest::Client);

impl<'c> AsyncHttpClient<'c> for CappedClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(request.try_into()?).await?;
            let mut answer = http::Response::builder()
                .status(response.status())
                .version(response.version());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(
                    response
                        .headers()
                        .iter()
                        .map(|(name, value)| (name.clone(), value.clone())),
                );
            }
            let body = read_capped(response).await?;
            // Status, version and headers came from a response: building cannot fail.
            Ok(answer.body(body).unwrap_or_default())
        })
    }
}

/// `response`'s body, chunk by chunk, refused as soon as it is known to pass the cap (by its
/// `Content-Length`, or by what has come): at most the cap and one chunk are ever held.
pub(super) async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(HttpError::TooLong);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(HttpError::TooLong);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
