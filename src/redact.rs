//! Notification targets as they may be shown and logged: an address masked
//! (`a***@qq.com`), a webhook URL without what could be its credential (the robot URLs
//! of DingTalk, Feishu and WeCom carry theirs in the query or the path).

/// `user@example.com` → `u***@example.com`; anything else → `***`.
pub fn email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".into(),
    }
}

/// Scheme, host, port and path, with a query (whatever it held) and every path segment
/// that looks like a token replaced by `…`; no user or password. Not a URL: `…`.
pub fn url(text: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(text) else { return "…".into() };
    let Some(host) = parsed.host_str() else { return "…".into() };
    let mut shown = format!("{}://{host}", parsed.scheme());
    if let Some(port) = parsed.port() {
        shown.push_str(&format!(":{port}"));
    }
    for segment in parsed.path().split('/').skip(1) {
        shown.push('/');
        shown.push_str(if looks_like_token(segment) { "…" } else { segment });
    }
    if parsed.query().is_some() {
        shown.push_str("?…");
    }
    shown
}

/// `text` (an endpoint's answer, an error) with the parts of `url` that [`url`] hides
/// replaced by `…`: an endpoint may echo its own address back.
pub fn scrub(text: &str, url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else { return text.to_string() };
    let mut hidden: Vec<String> = parsed.path().split('/').filter(|s| looks_like_token(s)).map(String::from).collect();
    hidden.extend(parsed.query_pairs().map(|(_, value)| value.into_owned()).filter(|value| value.len() >= 4));
    hidden.extend(parsed.password().map(String::from));
    hidden.into_iter().fold(text.to_string(), |text, secret| text.replace(&secret, "…"))
}

/// A segment is taken for a token when it is long, or mixes letters with digits at a
/// length no route word has: Feishu's hook UUID, Slack's `T0123ABCD/B0123/XXXX`.
fn looks_like_token(segment: &str) -> bool {
    let digits = segment.chars().filter(char::is_ascii_digit).count();
    let letters = segment.chars().filter(char::is_ascii_alphabetic).count();
    segment.len() >= 20 || (segment.len() >= 8 && digits > 0 && letters > 0) || (segment.len() >= 6 && digits >= 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_their_first_letter_and_domain() {
        assert_eq!(email("alice@qq.com"), "a***@qq.com");
        assert_eq!(email("not an address"), "***");
    }

    #[test]
    fn robot_urls_lose_their_tokens_and_keep_where_they_go() {
        let cases = [
            ("https://oapi.dingtalk.com/robot/send?access_token=abc123", "https://oapi.dingtalk.com/robot/send?…"),
            (
                "https://open.feishu.cn/open-apis/bot/v2/hook/0f2a9b3c-1d4e-4f5a-8b6c-7d8e9f0a1b2c",
                "https://open.feishu.cn/open-apis/bot/v2/hook/…",
            ),
            (
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=secret",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?…",
            ),
            (
                "https://hooks.slack.com/services/T0123ABCD/B0123EFGH/abcdefghijklmnopqrstuvwx",
                "https://hooks.slack.com/services/…/…/…",
            ),
            ("http://user:pw@127.0.0.1:9000/hooks/huiying", "http://127.0.0.1:9000/hooks/huiying"),
            ("not a url", "…"),
        ];
        for (given, shown) in cases {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn an_answer_echoing_the_url_loses_its_token() {
        let hook = "https://open.feishu.cn/open-apis/bot/v2/hook/0f2a9b3c-1d4e-4f5a-8b6c-7d8e9f0a1b2c?sign=abcd1234";
        let echoed = "no such hook: /open-apis/bot/v2/hook/0f2a9b3c-1d4e-4f5a-8b6c-7d8e9f0a1b2c (sign abcd1234)";
        assert_eq!(scrub(echoed, hook), "no such hook: /open-apis/bot/v2/hook/… (sign …)");
    }
}
