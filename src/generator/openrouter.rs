//! A first OpenRouter client: chat completions with image output.
//!
//! Request: `POST {base_url}/chat/completions` with the model, one user message and
//! `"modalities": ["image", "text"]`. Answer: the picture as a `data:` URL at
//! `choices[0].message.images[0].image_url.url`.

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{GenerateError, GeneratedImage};
use crate::config::{OpenRouterConfig, Secret};

pub const PROVIDER: &str = "openrouter";

#[derive(Clone)]
pub struct OpenRouterClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret,
    http_referer: String,
    x_title: String,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: [ChatMessage<'a>; 1],
    modalities: [&'a str; 2],
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: ResponseMessage,
}

#[derive(Deserialize)]
struct ResponseMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    images: Vec<ResponseImage>,
}

#[derive(Deserialize)]
struct ResponseImage {
    image_url: ImageUrl,
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
}

impl OpenRouterClient {
    pub fn new(config: &OpenRouterConfig, api_key: Secret) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout))
            .timeout(Duration::from_secs(config.timeout))
            .build()?;
        Ok(Self {
            http,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            api_key,
            http_referer: config.http_referer.clone(),
            x_title: config.x_title.clone(),
        })
    }

    pub async fn generate(&self, prompt: &str, model: &str) -> Result<GeneratedImage, GenerateError> {
        let body = ChatRequest {
            model,
            messages: [ChatMessage { role: "user", content: prompt }],
            modalities: ["image", "text"],
        };
        let mut request = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .bearer_auth(self.api_key.expose())
            .header("X-Title", &self.x_title)
            .json(&body);
        if !self.http_referer.is_empty() {
            request = request.header("HTTP-Referer", &self.http_referer);
        }
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() { "timed out" } else { "could not be reached" };
            GenerateError::transient(format!("OpenRouter at {} {what}: {}", self.base_url, error_chain(&e)))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| GenerateError::transient(format!("OpenRouter's answer was cut off: {e}")))?;
        if !status.is_success() {
            let message = provider_message(&text);
            let error = format!("OpenRouter answered {status}: {message}");
            let transient = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
            return Err(if transient { GenerateError::transient(error) } else { GenerateError::permanent(error) });
        }
        let answer: ChatResponse = serde_json::from_str(&text)
            .map_err(|e| GenerateError::permanent(format!("OpenRouter's answer is not the expected JSON: {e}")))?;
        let Some(choice) = answer.choices.into_iter().next() else {
            return Err(GenerateError::permanent(format!(
                "OpenRouter answered no choices: {}",
                provider_message(&text)
            )));
        };
        let Some(image) = choice.message.images.into_iter().next() else {
            let said = choice.message.content.as_ref().and_then(Value::as_str).unwrap_or("").trim().to_string();
            return Err(GenerateError::permanent(format!(
                "model {model} answered without an image{}",
                if said.is_empty() { String::new() } else { format!(": \"{}\"", shorten(&said, 200)) }
            )));
        };
        let (content_type, bytes) = decode_data_url(&image.image_url.url).ok_or_else(|| {
            GenerateError::permanent("OpenRouter returned an image that is not a base64 data: URL".to_string())
        })?;
        Ok(GeneratedImage { bytes, content_type, model: model.to_string(), provider: PROVIDER })
    }
}

/// Splits `data:<mime>;base64,<payload>` into the mime type and the decoded bytes.
fn decode_data_url(url: &str) -> Option<(String, Vec<u8>)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(payload.trim()).ok()?;
    Some((if mime.is_empty() { "application/octet-stream".into() } else { mime.into() }, bytes))
}

/// The provider's own error message when it sent one, else the start of the body.
fn provider_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.pointer("/message")))
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| body.to_string());
    shorten(message.trim(), 300)
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// reqwest hides the useful part ("Connection refused") in the error's sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_url_is_split_into_type_and_bytes() {
        let (mime, bytes) = decode_data_url("data:image/png;base64,aGVsbG8=").unwrap();
        assert_eq!((mime.as_str(), bytes.as_slice()), ("image/png", b"hello".as_slice()));
        assert!(decode_data_url("https://example.com/x.png").is_none());
    }

    #[test]
    fn the_providers_error_message_is_preferred_over_the_raw_body() {
        assert_eq!(
            provider_message(r#"{"error":{"message":"No auth credentials found","code":401}}"#),
            "No auth credentials found"
        );
        assert_eq!(provider_message("plain text"), "plain text");
    }
}
