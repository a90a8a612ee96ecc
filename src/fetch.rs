//! Getting a picture someone else named: the link a provider answered with (generator), or
//! an edit's input URL (ingest). Decodes a `data:` URL, or downloads a link carefully:
//! neither may make us fetch from inside the network (loopback, private, link-local,
//! cloud metadata), pull endless bytes, or hang.

use std::time::Duration;

use base64::Engine;
use reqwest::Url;

use crate::config::GeneratorConfig;
use crate::failure::Failure;
use crate::model_api::{error_chain, shorten};
use crate::outbound::{self, Refusal};

const MAX_REDIRECTS: usize = 3;

/// A picture's bytes and the type they turned out to be.
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

#[derive(Clone)]
pub(crate) struct Fetcher {
    /// Who named the link, for messages: "the provider", "the input URL".
    source: &'static str,
    max_bytes: u64,
    timeout: Duration,
    allow_private: bool,
    /// The setting that allows private addresses, for the refusal's advice.
    private_setting: &'static str,
}

impl Fetcher {
    pub(crate) fn new(settings: &GeneratorConfig, source: &'static str) -> Self {
        Self {
            source,
            max_bytes: settings.max_image_bytes,
            timeout: settings.download_timeout,
            allow_private: settings.allow_private_urls,
            private_setting: "[generator] allow_private_urls",
        }
    }

    /// The same fetcher, reaching private and local addresses only when `allow` says so,
    /// as the setting `named` does (an edit's inputs have their own:
    /// `[server] allow_private_edit_inputs`).
    pub(crate) fn allowing_private(self, allow: bool, named: &'static str) -> Self {
        Self { allow_private: allow, private_setting: named, ..self }
    }

    /// The picture behind `url`: a `data:` URL or an http(s) link.
    pub(crate) async fn fetch(&self, url: &str) -> Result<Fetched, Failure> {
        if url.starts_with("data:") {
            let (_, bytes) = decode_data_url(url)
                .ok_or_else(|| Failure::permanent(format!("{}'s data: URL is not valid base64", self.source)))?;
            return self.checked(bytes);
        }
        let mut url = Url::parse(url).map_err(|_| {
            Failure::permanent(format!("{} named an unusable image link: {}", self.source, shorten(url, 120)))
        })?;
        for _ in 0..=MAX_REDIRECTS {
            let response = self.get(&url).await?;
            if response.status().is_redirection() {
                let location = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("");
                url = url.join(location).map_err(|_| Failure::permanent("a bad redirect from the image link"))?;
                continue;
            }
            if !response.status().is_success() {
                let error = format!("downloading the picture from {} answered {}", host_of(&url), response.status());
                return Err(if response.status().is_server_error() {
                    Failure::transient(error)
                } else {
                    Failure::permanent(error)
                });
            }
            return self.checked(self.read_capped(response).await?);
        }
        Err(Failure::permanent(format!("the image link redirected more than {MAX_REDIRECTS} times")))
    }

    /// One GET, without following redirects, to an address checked after DNS resolution
    /// and pinned for the connection (no second lookup that could answer differently).
    async fn get(&self, url: &Url) -> Result<reqwest::Response, Failure> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::permanent(format!("image links must be http or https, not {}:", url.scheme())));
        }
        let host = url.host_str().ok_or_else(|| Failure::permanent("the image link has no host"))?;
        let addresses = outbound::resolve(url, self.allow_private).await.map_err(|refusal| match refusal {
            Refusal::Private(blocked) => Failure::permanent(format!(
                "refused to download the picture from {host}: it resolves to {blocked}, a private or local address \
                     ({} = true allows it)",
                self.private_setting
            )),
            unresolved => Failure::transient(unresolved.to_string()),
        })?;
        let client = outbound::pinned_client(host, &addresses, self.timeout)
            .map_err(|e| Failure::permanent(format!("cannot prepare the download: {e}")))?;
        client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| Failure::transient(format!("downloading the picture from {host} failed: {}", error_chain(&e))))
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
        let too_large = || Failure::permanent(format!("the picture is larger than {} bytes", self.max_bytes));
        if response.content_length().is_some_and(|n| n > self.max_bytes) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| Failure::transient(format!("the download broke off: {e}")))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > self.max_bytes {
                return Err(too_large());
            }
        }
        Ok(bytes)
    }

    /// The bytes must really be a picture, and not too large.
    fn checked(&self, bytes: Vec<u8>) -> Result<Fetched, Failure> {
        if bytes.len() as u64 > self.max_bytes {
            return Err(Failure::permanent(format!("the picture is larger than {} bytes", self.max_bytes)));
        }
        let format =
            image::guess_format(&bytes).map_err(|_| Failure::permanent(format!("{} is not a picture", self.source)))?;
        Ok(Fetched { content_type: format.to_mime_type().to_string(), bytes })
    }
}

/// Splits `data:<mime>;base64,<payload>` into the mime type and the decoded bytes.
pub(crate) fn decode_data_url(url: &str) -> Option<(String, Vec<u8>)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    let payload: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(payload).ok()?;
    Some((if mime.is_empty() { "application/octet-stream".into() } else { mime.into() }, bytes))
}

fn host_of(url: &Url) -> String {
    url.host_str().unwrap_or("?").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_url_is_split_into_type_and_bytes() {
        let (mime, bytes) = decode_data_url("data:image/png;base64,aGVs\nbG8=").unwrap();
        assert_eq!((mime.as_str(), bytes.as_slice()), ("image/png", b"hello".as_slice()));
        assert!(decode_data_url("https://example.com/x.png").is_none());
    }
}
