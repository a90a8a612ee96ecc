//! Reading a stored picture back, by one rule wherever it is needed (ingest's `b64_json`
//! answers and `record:` edit inputs, the mailer's attachment): the file in `[server]
//! images_dir` when a store on this host wrote it, else the link the store gave it (S3 /
//! R2; the store wrote that link, so no download guard stands in front of it), never more
//! than the caller's limit, never longer than [`FETCH_TIMEOUT`].

use std::path::PathBuf;
use std::time::Duration;

/// How long fetching a picture from its link may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a stored picture could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoredPictureError {
    #[error("{0:?} is not the name of a stored picture")]
    NotAFileName(String),
    #[error("the picture is not on this host ({0}) and has no link")]
    NotHere(std::io::Error),
    #[error("the picture is larger than {0} bytes")]
    TooLarge(usize),
    #[error("fetching the picture from its link failed: {0}")]
    Fetch(#[from] reqwest::Error),
}

/// Where stored pictures can be read.
#[derive(Clone)]
pub struct StoredPictures {
    dir: PathBuf,
    http: reqwest::Client,
}

impl StoredPictures {
    pub fn new(images_dir: PathBuf) -> reqwest::Result<Self> {
        Ok(Self { dir: images_dir, http: reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()? })
    }

    /// The bytes of picture `filename` (a plain file name, nothing outside the folder),
    /// from this host or else from `link`, at most `max_bytes`.
    pub async fn read(
        &self,
        filename: &str,
        link: Option<&str>,
        max_bytes: usize,
    ) -> Result<Vec<u8>, StoredPictureError> {
        if filename.is_empty() || filename.contains(['/', '\\']) || filename.contains("..") {
            return Err(StoredPictureError::NotAFileName(filename.into()));
        }
        let local_error = match tokio::fs::read(self.dir.join(filename)).await {
            Ok(bytes) if bytes.len() > max_bytes => return Err(StoredPictureError::TooLarge(max_bytes)),
            Ok(bytes) => return Ok(bytes),
            Err(error) => error,
        };
        let Some(link) = link else { return Err(StoredPictureError::NotHere(local_error)) };
        let mut response = self.http.get(link).send().await?.error_for_status()?;
        if response.content_length().is_some_and(|length| length > max_bytes as u64) {
            return Err(StoredPictureError::TooLarge(max_bytes));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if bytes.len() + chunk.len() > max_bytes {
                return Err(StoredPictureError::TooLarge(max_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_picture_is_read_from_this_host_within_the_limit_and_never_from_outside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"12345").unwrap();
        std::fs::write(dir.path().parent().unwrap().join("outside.png"), b"secret").ok();
        let pictures = StoredPictures::new(dir.path().to_path_buf()).unwrap();
        assert_eq!(pictures.read("a.png", None, 10).await.unwrap(), b"12345");
        assert!(matches!(pictures.read("a.png", None, 4).await, Err(StoredPictureError::TooLarge(4))));
        for name in ["../outside.png", "", "x/a.png"] {
            assert!(matches!(pictures.read(name, None, 10).await, Err(StoredPictureError::NotAFileName(_))), "{name}");
        }
        assert!(matches!(pictures.read("gone.png", None, 10).await, Err(StoredPictureError::NotHere(_))));
    }

    #[tokio::test]
    async fn a_picture_another_host_stored_is_fetched_from_its_link_and_bounded_there_too() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/p.png", axum::routing::get(|| async { vec![7u8; 100] }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let pictures = StoredPictures::new(tempfile::tempdir().unwrap().path().to_path_buf()).unwrap();
        let link = format!("http://{address}/p.png");
        assert_eq!(pictures.read("p.png", Some(&link), 100).await.unwrap(), vec![7u8; 100]);
        assert!(matches!(pictures.read("p.png", Some(&link), 99).await, Err(StoredPictureError::TooLarge(99))));
    }
}
