//! `/unsubscribe/{token}`, the link every notification carries (RFC 8058): a `POST` turns
//! notifications to the addresses the token names off at once, with no login (mail
//! programs send it when their reader clicks "unsubscribe"); a `GET` only shows a page
//! with a button that POSTs, since mail scanners follow every link they see.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use time::OffsetDateTime;

use super::AppState;
use crate::config::Language;
use crate::contract::mail::{Suppression, SuppressionReason};

/// The page with its one button.
pub(super) async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let zh = state.settings.language == Language::ZhCn;
    let Some(addresses) = state.links.unsubscribe_addresses(&token) else { return forged(zh) };
    let who = html_escape(&addresses.join(", "));
    let (title, text, button) = match zh {
        true => ("退订绘影通知", format!("不再向 {who} 发送绘影的任务通知邮件？"), "退订"),
        false => ("Unsubscribe from huiying", format!("Stop huiying's job notifications to {who}?"), "Unsubscribe"),
    };
    // The form posts to this very URL, as the mail program's one-click POST does.
    let body = format!("<p>{text}</p><form method=\"post\"><button type=\"submit\">{button}</button></form>");
    Html(document(zh, title, &body)).into_response()
}

/// The one-click POST: on the suppression list at once, until an admin undoes it.
pub(super) async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let zh = state.settings.language == Language::ZhCn;
    let Some(addresses) = state.links.unsubscribe_addresses(&token) else { return forged(zh) };
    for address in &addresses {
        let entry = Suppression {
            address: address.clone(),
            reason: SuppressionReason::Unsubscribed,
            reply: None,
            job_id: None,
            at: OffsetDateTime::now_utc(),
            until: None,
        };
        if let Err(error) = state.suppressed.add(&entry).await {
            tracing::warn!(%error, "the suppression list could not be written");
            let text = if zh {
                "暂时无法退订，请稍后再试。"
            } else {
                "Could not unsubscribe just now; try again."
            };
            return (StatusCode::SERVICE_UNAVAILABLE, Html(document(zh, "huiying", &format!("<p>{text}</p>"))))
                .into_response();
        }
    }
    metrics::counter!("huiying_unsubscribed_total").increment(addresses.len() as u64);
    let text = match zh {
        true => format!("已退订：{} 不会再收到绘影的通知邮件。", html_escape(&addresses.join(", "))),
        false => format!("Unsubscribed: {} gets no more huiying notifications.", html_escape(&addresses.join(", "))),
    };
    Html(document(zh, if zh { "已退订" } else { "Unsubscribed" }, &format!("<p>{text}</p>"))).into_response()
}

/// A token huiying did not sign (or signed with a key since retired).
fn forged(zh: bool) -> Response {
    let text = if zh { "这个退订链接无效。" } else { "This unsubscribe link is not valid." };
    (StatusCode::FORBIDDEN, Html(document(zh, "huiying", &format!("<p>{text}</p>")))).into_response()
}

fn document(zh: bool, title: &str, body: &str) -> String {
    let lang = if zh { "zh-CN" } else { "en" };
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:36em;margin:3em auto\"><h1>{title}</h1>{body}</body></html>"
    )
}

fn html_escape(text: &str) -> String {
    handlebars::html_escape(text)
}
